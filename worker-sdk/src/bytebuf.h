/*
 * bytebuf: a growable byte queue with a limit, and the JSON-line writer: what every output of
 * drover's, supervisor and SDK alike, is made of (a worker's channel both ways, the control
 * socket's connections, drover's own log). Appending past the limit refuses the whole append
 * (-ENOBUFS) rather than part of it, so a queue never holds half a line; what has been written
 * is consumed from the front, and the space is reused before the queue grows.
 *
 * Linked into both sides through the wire object library. In the SDK its symbols are internal
 * (drover__*, hidden in the shared library); the short names below are what the code calls.
 */
#pragma once

#include <jansson.h>
#include <stddef.h>

struct bytebuf {
    char *data;
    size_t start;   /* first byte not yet consumed */
    size_t len;     /* bytes in data, consumed ones included */
    size_t cap;
};

#define bytebuf_append drover__bytebuf_append
#define bytebuf_consume drover__bytebuf_consume
#define bytebuf_trim drover__bytebuf_trim
#define bytebuf_free drover__bytebuf_free
#define json_line_dump drover__json_line_dump

/* Bytes waiting at the front. */
static inline size_t bytebuf_pending(const struct bytebuf *b)
{
    return b->len - b->start;
}

static inline const char *bytebuf_head(const struct bytebuf *b)
{
    return b->data + b->start;
}

/* Appends n bytes unless the queue would then hold more than limit. Returns 0, -ENOBUFS
 * (nothing appended) or -ENOMEM. */
int bytebuf_append(struct bytebuf *b, const void *p, size_t n, size_t limit);

/* n bytes at the front have been written. */
void bytebuf_consume(struct bytebuf *b, size_t n);

/* Once empty, gives back a buffer grown past keep bytes (a large reply went out). */
void bytebuf_trim(struct bytebuf *b, size_t keep);

void bytebuf_free(struct bytebuf *b);

/* obj as one line of JSON (json_dumps flags), newline included, NUL-terminated; malloc'd, its
 * length in *ret_len. NULL when out of memory. */
char *json_line_dump(const json_t *obj, size_t flags, size_t *ret_len);
