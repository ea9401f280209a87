/*
 * reloadstate: the replacement run's tables. See reloadstate.h.
 */
#include "reloadstate.h"

#include <stddef.h>

/* 0 = no move; otherwise the new state + 1. */
#define TO(s) ((unsigned char)((s) + 1))

static const unsigned char rec_moves[RELOAD_REC__COUNT][RELOAD_REC_EV__COUNT] = {
    [RELOAD_REC_PENDING] = {[RELOAD_REC_EV_BEGIN] = TO(RELOAD_REC_STARTING),
                            [RELOAD_REC_EV_BEGIN_FAILED] = TO(RELOAD_REC_FAILED),
                            [RELOAD_REC_EV_SKIP] = TO(RELOAD_REC_SKIPPED)},
    [RELOAD_REC_STARTING] = {[RELOAD_REC_EV_NEW_READY] = TO(RELOAD_REC_REPLACED),
                             [RELOAD_REC_EV_NEW_EXIT] = TO(RELOAD_REC_FAILED),
                             [RELOAD_REC_EV_KILLED] = TO(RELOAD_REC_FAILED)},
};

/* The moves that make the run fail: a new worker that could not start or did not come up. */
static bool rec_move_fails(enum reload_rec_state from, enum reload_rec_event ev)
{
    return ev == RELOAD_REC_EV_BEGIN_FAILED ||
           (from == RELOAD_REC_STARTING && ev == RELOAD_REC_EV_NEW_EXIT);
}

enum reload_rec_state reload_rec_next(enum reload_rec_state state, enum reload_rec_event ev,
                                      bool *ret_fails)
{
    unsigned char to = (unsigned)state < RELOAD_REC__COUNT && (unsigned)ev < RELOAD_REC_EV__COUNT
                           ? rec_moves[state][ev]
                           : 0;
    if (ret_fails) {
        *ret_fails = to != 0 && rec_move_fails(state, ev);
    }
    return to ? (enum reload_rec_state)(to - 1) : state;
}

enum reload_run_action reload_run_fail(enum reload_run_state *state, bool changes_config)
{
    if (*state == RELOAD_RUN_FORWARD && changes_config) {
        *state = RELOAD_RUN_ROLLING_BACK;
        return RELOAD_RUN_DO_ROLL_BACK;
    }
    if (*state == RELOAD_RUN_FORWARD) {
        *state = RELOAD_RUN_STOPPING;
    }
    return RELOAD_RUN_DO_STOP;
}

const char *reload_run_outcome(enum reload_run_state state, bool failed)
{
    if (state == RELOAD_RUN_ROLLING_BACK) {
        return "rolled_back";
    }
    return state == RELOAD_RUN_FORWARD && !failed ? "done" : "failed";
}

const char *reload_rec_state_to_string(enum reload_rec_state state)
{
    static const char *const names[RELOAD_REC__COUNT] = {"not started", "starting", "replaced",
                                                         "skipped", "failed"};
    return (unsigned)state < RELOAD_REC__COUNT ? names[state] : "unknown";
}
