/*
 * reloadstate: the tables of a replacement run (reload.c; SPEC section 5, "Rolling reload"),
 * pure. Each slot to replace has a record:
 *
 *     pending --begin--> starting --new_ready--> replaced
 *        |                  \--new_exit / killed--> failed
 *        +--skip--> skipped (slot gone, or refilled with the new generation already)
 *        +--begin_failed--> failed
 *
 * and the run itself goes forward, and on the first failure either rolls back (a reload to a
 * new config) or stops (a restart, a memory replacement); a rollback that fails too stops where
 * it is. The run is over once nothing is pending or starting and every old worker is gone.
 */
#pragma once

#include <stdbool.h>

enum reload_rec_state {
    RELOAD_REC_PENDING,
    RELOAD_REC_STARTING,
    RELOAD_REC_REPLACED,
    RELOAD_REC_SKIPPED,
    RELOAD_REC_FAILED,
    RELOAD_REC__COUNT,
};

enum reload_rec_event {
    RELOAD_REC_EV_BEGIN,        /* its new worker was started */
    RELOAD_REC_EV_BEGIN_FAILED, /* starting one failed */
    RELOAD_REC_EV_SKIP,         /* nothing to replace there */
    RELOAD_REC_EV_NEW_READY,    /* its new worker is ready: the old one is retired */
    RELOAD_REC_EV_NEW_EXIT,     /* its new worker exited (before ready: the run fails) */
    RELOAD_REC_EV_KILLED,       /* the run killed its starting worker (failure, abort) */
    RELOAD_REC_EV__COUNT,
};

enum reload_run_state {
    RELOAD_RUN_FORWARD,         /* replacing toward the new config or as they are */
    RELOAD_RUN_ROLLING_BACK,    /* a reload failed: replacing the replaced ones back */
    RELOAD_RUN_STOPPING,        /* failed for good (or aborted): settling */
    RELOAD_RUN__COUNT,
};

/* The record's state after ev; state itself when ev means nothing there. *ret_fails (may be
 * NULL) says whether this makes the run fail. */
enum reload_rec_state reload_rec_next(enum reload_rec_state state, enum reload_rec_event ev,
                                      bool *ret_fails);

enum reload_run_action {
    RELOAD_RUN_DO_ROLL_BACK,    /* replace the replaced slots again, toward the old config */
    RELOAD_RUN_DO_STOP,         /* start nothing more; what serves keeps serving */
};

/* The run failed (a new worker did not come up): a reload going forward rolls back; anything
 * else (a restart, a memory replacement, a rollback) stops. Updates *state. */
enum reload_run_action reload_run_fail(enum reload_run_state *state, bool changes_config);

/* The outcome a finished run reports: "done" (forward, nothing failed), "rolled_back", or
 * "failed". */
const char *reload_run_outcome(enum reload_run_state state, bool failed);

const char *reload_rec_state_to_string(enum reload_rec_state state);
