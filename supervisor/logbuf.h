/*
 * logbuf: the most recent output lines of one app, in a bounded ring, for `droverctl logs`
 * (SPEC section 2). Bounded both in lines and in bytes; the oldest lines go first. Followers
 * (`logs -f`) register a callback and are told of each line as it is appended.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct logbuf;

struct logbuf_line {
    double ts;          /* wall clock, seconds since the epoch */
    int slot;
    pid_t pid;
    bool is_stderr;
    size_t len;
    const char *text;   /* not NUL-terminated */
};

typedef void (*logbuf_follow_fn)(const struct logbuf_line *line, void *data);

int logbuf_new(size_t max_lines, size_t max_bytes, struct logbuf **ret);
void logbuf_free(struct logbuf *b);

/* Appends a copy of the line, dropping the oldest lines as needed, and tells the followers. */
void logbuf_append(struct logbuf *b, int slot, pid_t pid, bool is_stderr, const char *text,
                   size_t len);

/* The same with the line's time given: lines handed over by an upgrade keep theirs. */
void logbuf_append_at(struct logbuf *b, double ts, int slot, pid_t pid, bool is_stderr,
                      const char *text, size_t len);

/* Calls fn for the last n lines (all when n < 0), oldest first. */
void logbuf_foreach_last(const struct logbuf *b, long n, logbuf_follow_fn fn, void *data);

/* Registers / removes a follower (identified by fn and data). Returns 0 or -ENOMEM. */
int logbuf_follow(struct logbuf *b, logbuf_follow_fn fn, void *data);
void logbuf_unfollow(struct logbuf *b, logbuf_follow_fn fn, void *data);
