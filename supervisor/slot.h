/*
 * slot: the life of one slot of an app (a stable position 0..N-1, DROVER_WORKER_ID) as a table of
 * states by events, in the manner of s6-supervise: what happens next is one cell, and the cells
 * are pure functions of the event's facts (how long the worker lived, how it exited, the restart
 * policy, a random number for the jitter), so a unit test drives the whole machine without a
 * process or a clock.
 *
 *     empty --fill--> filled --crash (lived long enough)--> empty + spawn now
 *       ^               |  \---crash (died young)-------> backoff --timer--> empty + spawn
 *       |               |   \--crash (restart = never)--> empty, given up
 *       +-----left------+                                 backoff --halt--> empty
 *
 * The machine decides; app.c carries the decision out (start a worker, arm or stop the restart
 * timer) and feeds the outcome back as the next event (fill, fill_failed). A replacement that
 * brings its own worker in is the event `replaced`, from any state.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "backoff.h"
#include "config.h"

enum slot_state {
    SLOT_EMPTY,     /* no worker, nothing pending: not started, halted, or given up */
    SLOT_FILLED,    /* its worker is starting or serving */
    SLOT_BACKOFF,   /* its worker died young: waiting restart_delay (doubling) to start again */
    SLOT__COUNT,
};

enum slot_event {
    SLOT_EV_FILL,           /* a worker was started in it */
    SLOT_EV_FILL_FAILED,    /* starting one failed (fork, descriptors) */
    SLOT_EV_CRASH,          /* its worker exited unasked; facts say how */
    SLOT_EV_LEFT,           /* its worker left as asked (retired, or a replacement's business) */
    SLOT_EV_REPLACED,       /* a replacement's new worker is its worker now */
    SLOT_EV_TIMER,          /* the backoff delay is over */
    SLOT_EV_HALT,           /* the app stops: no more restarts */
    SLOT_EV_MEMORY,         /* its worker is over max_memory: when may it be replaced? */
    SLOT_EV__COUNT,
};

/* What app.c is to do. */
enum slot_action {
    SLOT_DO_NOTHING,
    SLOT_DO_SPAWN,          /* start a worker now (then feed fill or fill_failed) */
    SLOT_DO_WAIT,           /* arm the restart timer for delay_ms */
    SLOT_DO_CANCEL,         /* stop the restart timer */
};

/* The facts an event carries; only crash, fill_failed and memory read them. */
struct slot_facts {
    uint64_t uptime_ms;             /* how long the worker lived */
    bool clean_exit;                /* exit code 0 */
    enum restart_policy restart;
    struct backoff_policy policy;
    uint32_t random;                /* for the jitter */
};

struct slot_machine {
    enum slot_state state;
    struct backoff backoff;
};

/* One step: where the machine was and is now, what to do, and why (for the one log record). */
struct slot_step {
    enum slot_state from;
    enum slot_state to;
    enum slot_action action;
    uint64_t delay_ms;      /* SLOT_DO_WAIT; for SLOT_EV_MEMORY, the wait before replacing */
    const char *why;        /* a static phrase, or NULL */
    bool counts_restart;    /* a crash that will be followed by a new worker */
};

void slot_machine_init(struct slot_machine *m);

/* Feeds ev (with its facts; NULL where the event has none) and returns the step taken. An event
 * that means nothing in the current state leaves it as it is (to == from, no action). */
struct slot_step slot_machine_step(struct slot_machine *m, enum slot_event ev,
                                   const struct slot_facts *f);

/* Whether the slot fails fast again and again: at least two fast crashes in a row. */
bool slot_machine_is_looping(const struct slot_machine *m);

const char *slot_state_to_string(enum slot_state state);
const char *slot_event_to_string(enum slot_event ev);
