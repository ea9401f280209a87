/*
 * bytebuf: the byte queue and the JSON-line writer. See bytebuf.h.
 */
#include "bytebuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int bytebuf_append(struct bytebuf *b, const void *p, size_t n, size_t limit)
{
    size_t pending = bytebuf_pending(b);
    if (n > limit || pending > limit - n) {
        return -ENOBUFS;
    }
    if (n == 0) {
        return 0; /* and no memcpy to a buffer not yet allocated */
    }
    if (b->start > 0 && b->len + n > b->cap) {
        memmove(b->data, b->data + b->start, pending);
        b->len = pending;
        b->start = 0;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) {
            cap *= 2;
        }
        char *data = realloc(b->data, cap);
        if (!data) {
            return -ENOMEM;
        }
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void bytebuf_consume(struct bytebuf *b, size_t n)
{
    b->start += n < bytebuf_pending(b) ? n : bytebuf_pending(b);
    if (b->start == b->len) {
        b->start = b->len = 0;
    }
}

void bytebuf_trim(struct bytebuf *b, size_t keep)
{
    if (bytebuf_pending(b) == 0 && b->cap > keep) {
        bytebuf_free(b);
    }
}

void bytebuf_free(struct bytebuf *b)
{
    free(b->data);
    *b = (struct bytebuf){0};
}

char *json_line_dump(const json_t *obj, size_t flags, size_t *ret_len)
{
    char *text = json_dumps(obj, flags);
    if (!text) {
        return NULL;
    }
    size_t n = strlen(text);
    char *line = realloc(text, n + 2);
    if (!line) {
        free(text);
        return NULL;
    }
    line[n] = '\n';
    line[n + 1] = '\0';
    *ret_len = n + 1;
    return line;
}
