/*
 * eventtype: the kinds of lifecycle event (SPEC section 11) and their names, pure, so that the
 * config (a hook's `events` list) and the event ring (events.h) speak of the same set.
 */
#pragma once

#include <stdint.h>

enum event_type {
    EVENT_WORKER_START,
    EVENT_WORKER_READY,
    EVENT_WORKER_EXIT,
    EVENT_WORKER_HUNG,
    EVENT_CRASH_LOOP,       /* a slot entered backoff after repeated fast crashes */
    EVENT_CRASH_LOOP_END,   /* its worker lived past min_uptime again */
    EVENT_MEMORY_LIMIT,
    EVENT_RECYCLE,
    EVENT_RELOAD,           /* result: started, done, failed */
    EVENT_SCALE,
    EVENT_CONFIG_REJECTED,
    EVENT_SHUTDOWN_PHASE,
    EVENT_UPGRADE,
    EVENT__COUNT,
};

/* A set of types, bit t for type t. */
typedef uint32_t event_mask;
#define EVENT_MASK_ALL ((event_mask)((1u << EVENT__COUNT) - 1))
_Static_assert(EVENT__COUNT <= 32, "event_mask too small");

/* "worker_exit", ...; NULL out of range. */
const char *event_type_to_string(enum event_type type);

/* The type named s, or -1. */
int event_type_from_string(const char *s);
