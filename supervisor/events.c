/*
 * events: the ring of lifecycle events and their followers. See events.h.
 */
#include "events.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytebuf.h"
#include "log.h"



static struct {
    struct event ring[EVENTS_RING_MAX];   /* seq s at ring[(s - 1) % EVENTS_RING_MAX] */
    uint64_t last;                        /* the newest seq */
    uint64_t totals[EVENT__COUNT];
    struct event_follower *followers;
} E;

/* The event as a line: seq, ts, type and the origin first, then msg and the facts. */
static char *event_line(uint64_t seq, enum event_type type, struct log_origin origin,
                        const char *msg, json_t *fields, size_t *ret_len)
{
    char ts[40];
    log_timestamp(ts, sizeof ts);
    json_t *obj = json_pack("{s:I, s:s, s:s}", "seq", (json_int_t)seq, "ts", ts, "type",
                            event_type_to_string(type));
    if (!obj) {
        return NULL;
    }
    if (origin.app) {
        json_object_set_new(obj, "app", json_string(origin.app));
    }
    if (origin.slot >= 0) {
        json_object_set_new(obj, "worker", json_integer(origin.slot));
    }
    if (origin.pid > 0) {
        json_object_set_new(obj, "pid", json_integer(origin.pid));
    }
    json_object_set_new(obj, "msg", log_json_text(msg, strlen(msg)));
    if (fields) {
        json_object_update_missing(obj, fields);
    }
    char *line = json_line_dump(obj, JSON_COMPACT | JSON_PRESERVE_ORDER, ret_len);
    json_decref(obj);
    return line;
}

uint64_t event_record(enum event_type type, enum log_level level, struct log_origin origin,
                      json_t *fields, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    uint64_t seq = ++E.last;
    E.totals[type]++;
    size_t len = 0;
    char *line = event_line(seq, type, origin, msg, fields, &len);
    struct event *slot = &E.ring[(seq - 1) % EVENTS_RING_MAX];
    free(slot->line);
    *slot = (struct event){seq, type, line, len};

    json_t *rec = fields ? fields : json_object();
    if (rec) {
        /* "event" alone already names a state machine's input in other records. */
        json_object_set_new(rec, "event_type", json_string(event_type_to_string(type)));
        json_object_set_new(rec, "seq", json_integer((json_int_t)seq));
    }
    log_record(level, origin, rec, "%s", msg);
    if (!line) {
        return 0;
    }
    struct event_follower *next;
    for (struct event_follower *f = E.followers; f; f = next) {
        next = f->next; /* f may unfollow itself */
        f->fn(slot, f->data);
    }
    return seq;
}

void events_follow(struct event_follower *f)
{
    f->next = E.followers;
    E.followers = f;
}

void events_unfollow(struct event_follower *f)
{
    for (struct event_follower **p = &E.followers; *p; p = &(*p)->next) {
        if (*p == f) {
            *p = f->next;
            return;
        }
    }
}

uint64_t events_foreach_since(uint64_t since, event_fn fn, void *data)
{
    uint64_t first = E.last > EVENTS_RING_MAX ? E.last - EVENTS_RING_MAX + 1 : 1;
    uint64_t lost = since + 1 < first ? first - (since + 1) : 0;
    for (uint64_t s = since + 1 > first ? since + 1 : first; s <= E.last; s++) {
        const struct event *ev = &E.ring[(s - 1) % EVENTS_RING_MAX];
        if (ev->line) {
            fn(ev, data);
        }
    }
    return lost;
}

uint64_t events_total(enum event_type type)
{
    return (unsigned)type < EVENT__COUNT ? E.totals[type] : 0;
}

uint64_t events_last_seq(void)
{
    return E.last;
}

void events_clear(void)
{
    for (size_t i = 0; i < EVENTS_RING_MAX; i++) {
        free(E.ring[i].line);
        E.ring[i] = (struct event){0};
    }
}

json_t *events_save(void)
{
    json_t *ring = json_array(), *totals = json_array();
    json_t *o = json_pack("{s:I, s:o, s:o}", "last", (json_int_t)E.last, "ring", ring, "totals",
                          totals);
    if (!o) {
        return NULL;
    }
    for (int t = 0; t < EVENT__COUNT; t++) {
        json_array_append_new(totals, json_integer((json_int_t)E.totals[t]));
    }
    uint64_t first = E.last > EVENTS_RING_MAX ? E.last - EVENTS_RING_MAX + 1 : 1;
    for (uint64_t s = first; s <= E.last; s++) {
        const struct event *ev = &E.ring[(s - 1) % EVENTS_RING_MAX];
        if (ev->line && ev->seq == s) {
            json_array_append_new(ring, json_pack("{s:I, s:i, s:s%}", "seq", (json_int_t)s,
                                                  "type", (int)ev->type, "line", ev->line,
                                                  ev->len));
        }
    }
    return o;
}

int events_restore(const json_t *saved)
{
    if (E.last != 0 || !json_is_object(saved)) {
        return -EINVAL;
    }
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(saved, "totals"), i, v) {
        if (i < EVENT__COUNT) {
            E.totals[i] = (uint64_t)json_integer_value(v);
        }
    }
    json_array_foreach(json_object_get(saved, "ring"), i, v) {
        uint64_t seq = (uint64_t)json_integer_value(json_object_get(v, "seq"));
        json_int_t type = json_integer_value(json_object_get(v, "type"));
        json_t *line = json_object_get(v, "line");
        if (seq == 0 || type < 0 || type >= EVENT__COUNT || !json_is_string(line)) {
            continue;
        }
        struct event *ev = &E.ring[(seq - 1) % EVENTS_RING_MAX];
        free(ev->line);
        ev->line = strndup(json_string_value(line), json_string_length(line));
        ev->len = ev->line ? json_string_length(line) : 0;
        ev->seq = seq;
        ev->type = (enum event_type)type;
    }
    E.last = (uint64_t)json_integer_value(json_object_get(saved, "last"));
    return 0;
}
