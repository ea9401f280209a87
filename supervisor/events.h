/*
 * events: every lifecycle change as one event (SPEC section 11), and the same change as one log
 * record, from one call, so the two can never disagree: the record carries the event's seq and
 * its type (as "event_type").
 *
 * An event is a JSON object: seq (increasing for the master's life), ts, type, the origin (app,
 * worker, pid), msg, and the facts of its type. The last EVENTS_RING_MAX are kept in a ring for
 * `droverctl events`; followers (a `droverctl events -f`, the hooks) are handed each one as it
 * is recorded and must only queue it: an event is recorded from deep inside the lifecycle, so a
 * follower never acts from inside that call.
 *
 * One per process, like the log: the state is static.
 */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "eventtype.h"
#include "logline.h"

#define EVENTS_RING_MAX 1000



struct event {
    uint64_t seq;
    enum event_type type;
    char *line;             /* the JSON object, one line with its newline */
    size_t len;
};

/*
 * Records one change: a log record (level, origin, fields, message: as log_record) and the
 * event of type with the same facts, plus seq and type in the record. fields is stolen (may be
 * NULL). Returns the event's seq, or 0 when it could not be kept (out of memory; the log record
 * is written all the same).
 */
uint64_t event_record(enum event_type type, enum log_level level, struct log_origin origin,
                      json_t *fields, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

typedef void (*event_fn)(const struct event *ev, void *data);

/* A follower is told of every event from now on, from inside event_record(): it may only queue
 * what it is given. The node is the caller's, embedded where it likes. */
struct event_follower {
    struct event_follower *next;
    event_fn fn;
    void *data;
};
void events_follow(struct event_follower *f);
void events_unfollow(struct event_follower *f);

/* The kept events with seq > since, oldest first. Returns how many newer ones the ring has
 * lost already (0 when since is still in it). */
uint64_t events_foreach_since(uint64_t since, event_fn fn, void *data);

/* Events of type recorded over the master's life. */
uint64_t events_total(enum event_type type);

/* The newest seq recorded (0: none yet). */
uint64_t events_last_seq(void);

/* Frees the ring (at exit; followers must be gone). */
void events_clear(void);

/* Upgrade in place (SPEC section 12): the ring, the totals and the last seq as JSON (NULL when
 * out of memory), and the same taken back in the next image before any event is recorded there
 * (0, or -EINVAL when events were recorded already), so seqs go on where they were. */
json_t *events_save(void);
int events_restore(const json_t *saved);
