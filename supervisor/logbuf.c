/*
 * logbuf: one app's recent output lines. See logbuf.h.
 *
 * The ring is an array of max_lines entries, each holding its own copy of a line: a worker's
 * line is at most WORKER_LINE_MAX bytes, so one allocation per line is cheap, and dropping the
 * oldest line frees exactly its bytes, which keeps the byte bound exact. A line longer than the
 * whole byte budget is cut to fit rather than refused: the start of a line is what a reader
 * needs to see.
 *
 * Followers are told of each line from inside logbuf_append(), that is from inside the worker's
 * output callback. A follower may unfollow (itself or another) while being told, so removal
 * during notification only blanks the entry; the array is compacted once the notification is
 * over. A follower added during a notification hears from the next line on.
 */
#include "logbuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct logbuf_entry {
    double ts;
    int slot;
    pid_t pid;
    bool is_stderr;
    size_t len;
    char *text;
};

struct logbuf_follower {
    logbuf_follow_fn fn; /* NULL: removed during a notification, compacted after */
    void *data;
};

struct logbuf {
    struct logbuf_entry *ring;
    size_t max_lines;
    size_t max_bytes;
    size_t head;    /* index of the oldest line */
    size_t count;
    size_t bytes;   /* text bytes held */
    struct logbuf_follower *followers;
    size_t n_followers;
    size_t cap_followers;
    unsigned notifying;
    bool dirty;     /* some follower was blanked during a notification */
};

int logbuf_new(size_t max_lines, size_t max_bytes, struct logbuf **ret)
{
    if (max_lines == 0 || max_bytes == 0) {
        return -EINVAL;
    }
    struct logbuf *b = calloc(1, sizeof *b);
    if (!b) {
        return -ENOMEM;
    }
    b->ring = calloc(max_lines, sizeof *b->ring);
    if (!b->ring) {
        free(b);
        return -ENOMEM;
    }
    b->max_lines = max_lines;
    b->max_bytes = max_bytes;
    *ret = b;
    return 0;
}

void logbuf_free(struct logbuf *b)
{
    if (!b) {
        return;
    }
    for (size_t i = 0; i < b->count; i++) {
        free(b->ring[(b->head + i) % b->max_lines].text);
    }
    free(b->ring);
    free(b->followers);
    free(b);
}

static void logbuf_drop_oldest(struct logbuf *b)
{
    struct logbuf_entry *e = &b->ring[b->head];
    b->bytes -= e->len;
    free(e->text);
    e->text = NULL;
    b->head = (b->head + 1) % b->max_lines;
    b->count--;
}

static double logbuf_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void logbuf_compact_followers(struct logbuf *b)
{
    size_t k = 0;
    for (size_t i = 0; i < b->n_followers; i++) {
        if (b->followers[i].fn) {
            b->followers[k++] = b->followers[i];
        }
    }
    b->n_followers = k;
    b->dirty = false;
}

void logbuf_append(struct logbuf *b, int slot, pid_t pid, bool is_stderr, const char *text,
                   size_t len)
{
    logbuf_append_at(b, logbuf_now(), slot, pid, is_stderr, text, len);
}

void logbuf_append_at(struct logbuf *b, double ts, int slot, pid_t pid, bool is_stderr,
                      const char *text, size_t len)
{
    if (len > b->max_bytes) {
        len = b->max_bytes;
    }
    /* Copy first: when memory is short the line is lost, not the lines already held. */
    char *copy = malloc(len ? len : 1);
    if (!copy) {
        return;
    }
    memcpy(copy, text, len);
    while (b->count > 0 && (b->count == b->max_lines || b->bytes + len > b->max_bytes)) {
        logbuf_drop_oldest(b);
    }
    struct logbuf_entry *e = &b->ring[(b->head + b->count) % b->max_lines];
    *e = (struct logbuf_entry){.ts = ts, .slot = slot, .pid = pid,
                               .is_stderr = is_stderr, .len = len, .text = copy};
    b->count++;
    b->bytes += len;

    if (b->n_followers == 0) {
        return;
    }
    /* The text handed out lives in the ring: a follower must not append to the buffer it
     * follows, or the line could be dropped under it. */
    struct logbuf_line line = {.ts = e->ts, .slot = slot, .pid = pid, .is_stderr = is_stderr,
                               .len = len, .text = copy};
    size_t n = b->n_followers;
    b->notifying++;
    for (size_t i = 0; i < n && i < b->n_followers; i++) {
        struct logbuf_follower f = b->followers[i];
        if (f.fn) {
            f.fn(&line, f.data);
        }
    }
    b->notifying--;
    if (b->notifying == 0 && b->dirty) {
        logbuf_compact_followers(b);
    }
}

void logbuf_foreach_last(const struct logbuf *b, long n, logbuf_follow_fn fn, void *data)
{
    size_t take = b->count;
    if (n >= 0 && (size_t)n < take) {
        take = (size_t)n;
    }
    for (size_t i = b->count - take; i < b->count; i++) {
        const struct logbuf_entry *e = &b->ring[(b->head + i) % b->max_lines];
        struct logbuf_line line = {.ts = e->ts, .slot = e->slot, .pid = e->pid,
                                   .is_stderr = e->is_stderr, .len = e->len, .text = e->text};
        fn(&line, data);
    }
}

int logbuf_follow(struct logbuf *b, logbuf_follow_fn fn, void *data)
{
    if (b->n_followers == b->cap_followers) {
        size_t cap = b->cap_followers ? b->cap_followers * 2 : 4;
        struct logbuf_follower *f = realloc(b->followers, cap * sizeof *f);
        if (!f) {
            return -ENOMEM;
        }
        b->followers = f;
        b->cap_followers = cap;
    }
    b->followers[b->n_followers++] = (struct logbuf_follower){fn, data};
    return 0;
}

void logbuf_unfollow(struct logbuf *b, logbuf_follow_fn fn, void *data)
{
    for (size_t i = 0; i < b->n_followers; i++) {
        struct logbuf_follower *f = &b->followers[i];
        if (f->fn == fn && f->data == data) {
            f->fn = NULL;
            b->dirty = true;
        }
    }
    if (b->notifying == 0 && b->dirty) {
        logbuf_compact_followers(b);
    }
}
