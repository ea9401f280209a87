/*
 * workerstate: one worker's life as a table of states by events (SPEC sections 4, 5), pure: the
 * facts of an event (the ready mode, whether the worker has spoken, how long it has lived, its
 * ready_delay and ready_timeout) come in, the next state and what to do go out. worker.c owns
 * the process, the pipes and the timer, and carries the decisions out.
 *
 *     starting --word / delay / exec (by ready mode)--> ready --drain--> draining --stop-->
 *        |  \--timer: not ready in time --> (kill; the exit is a failed start)      stopping
 *        +--drain--> draining      any --kill--> stopping             any --exit--> exited
 *
 *     ready --silent (watchdog ran out, or WATCHDOG=trigger)--> hung --abort / timer-->
 *        stopping (SIGABRT sent; its timer fires kill_timeout later: SIGKILL)
 *
 * A hung worker is no longer ready: its owner starts its replacement and aborts it once that one
 * is ready (abort), or the hung worker's own timer does so after ready_timeout (SPEC section 10).
 * A worker still starting is held to ready_timeout, never to the watchdog: silent has no cell in
 * the starting row.
 *
 * Whether the master asked a worker to go is not a flag but where it was when it exited:
 * draining or stopping (worker_state_is_leaving()).
 */
#pragma once

#include <stdbool.h>

#include "config.h"

enum worker_state {
    WORKER_STARTING,
    WORKER_READY,
    WORKER_HUNG,        /* silent past its watchdog: being replaced, then aborted */
    WORKER_DRAINING,
    WORKER_STOPPING,
    WORKER_EXITED,
    WORKER__COUNT,
};

enum worker_event {
    WORKER_EV_EXEC,     /* the exec succeeded */
    WORKER_EV_WORD,     /* it said READY (channel ready, or sd_notify READY=1) */
    WORKER_EV_TIMER,    /* its ready timer fired */
    WORKER_EV_DRAIN,    /* the master asks it to go: the drain phase (or SIGTERM) */
    WORKER_EV_STOP,     /* a later phase of its going (save, close, cleanup) */
    WORKER_EV_KILL,     /* the master kills it at once, no phases */
    WORKER_EV_EXIT,     /* reaped */
    WORKER_EV_SILENT,   /* its watchdog ran out, or it said WATCHDOG=trigger */
    WORKER_EV_ABORT,    /* the owner: its replacement is ready, abort it now */
    WORKER_EV__COUNT,
};

enum worker_action {
    WORKER_DO_NOTHING,
    WORKER_DO_READY,    /* it is ready: tell the owner */
    WORKER_DO_WAIT,     /* (re)arm the ready timer for delay_s */
    WORKER_DO_CANCEL,   /* stop the ready timer */
    WORKER_DO_KILL,     /* not ready in time: a failed start; kill it */
    WORKER_DO_HANG,     /* it is hung: tell the owner; arm the timer for delay_s (abort then) */
    WORKER_DO_ABORT,    /* SIGABRT now; arm the timer for delay_s (kill_timeout: SIGKILL then) */
    WORKER_DO_FORCE,    /* SIGKILL now: it outlived kill_timeout after its SIGABRT */
};

struct worker_facts {
    enum ready_mode ready;
    bool spoke;             /* it has sent anything, on its channel or by sd_notify */
    double uptime_s;
    double ready_delay_s;
    double ready_timeout_s;
    double kill_timeout_s;
};

struct worker_step {
    enum worker_state from;
    enum worker_state to;
    enum worker_action action;
    double delay_s;
    const char *why;        /* a static phrase, or NULL */
};

/* The ready timer a new worker starts with (seconds), or a negative number for none. */
double worker_state_first_wait(const struct worker_facts *f);

/* Feeds ev in state; an event that means nothing there leaves it (to == from, no action). */
struct worker_step worker_state_step(enum worker_state state, enum worker_event ev,
                                     const struct worker_facts *f);

/* Draining or stopping: the master asked it to go, so its exit is no crash. */
bool worker_state_is_leaving(enum worker_state state);

const char *worker_state_to_string(enum worker_state state);
