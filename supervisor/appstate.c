/*
 * appstate: the app's tables. See appstate.h.
 *
 * Two tables, read on one screen each: where an event takes each state, and what each command
 * gets in each state. An empty transition cell means "stays where it is"; the command table is
 * complete, every cell spelled out.
 */
#include "appstate.h"

#include <stddef.h>

/* 0 = no move; otherwise the new state + 1, so that the table's empty cells mean "stay". */
#define TO(s) ((unsigned char)((s) + 1))

static const unsigned char app_moves[APP__COUNT][APP_EV__COUNT] = {
    [APP_STOPPED] = {[APP_EV_START] = TO(APP_RUNNING)},
    [APP_RUNNING] = {[APP_EV_RELOAD_BEGIN] = TO(APP_RELOADING), [APP_EV_HALT] = TO(APP_STOPPING),
                     [APP_EV_LOOPING] = TO(APP_ERRORED)},
    [APP_RELOADING] = {[APP_EV_RELOAD_END] = TO(APP_RUNNING), [APP_EV_HALT] = TO(APP_STOPPING)},
    [APP_ERRORED] = {[APP_EV_START] = TO(APP_RUNNING), [APP_EV_RELOAD_BEGIN] = TO(APP_RELOADING),
                     [APP_EV_HALT] = TO(APP_STOPPING), [APP_EV_SERVING] = TO(APP_RUNNING)},
    [APP_STOPPING] = {[APP_EV_GONE] = TO(APP_STOPPED)},
};

/* [state][busy][command] */
static const enum app_verdict app_verdicts[APP__COUNT][2][APP_CMD__COUNT] = {
    [APP_RUNNING] = {{APP_TAKE, APP_TAKE, APP_TAKE, APP_ALREADY},
                     {APP_REFUSE_BUSY, APP_REFUSE_BUSY, APP_REFUSE_BUSY, APP_ALREADY}},
    [APP_RELOADING] = {{APP_REFUSE_BUSY, APP_REFUSE_BUSY, APP_REFUSE_BUSY, APP_ALREADY},
                       {APP_REFUSE_BUSY, APP_REFUSE_BUSY, APP_REFUSE_BUSY, APP_ALREADY}},
    [APP_ERRORED] = {{APP_TAKE, APP_TAKE, APP_TAKE, APP_TAKE},
                     {APP_REFUSE_BUSY, APP_REFUSE_BUSY, APP_REFUSE_BUSY, APP_REFUSE_BUSY}},
    /* a stopping app takes a new config for its next start */
    [APP_STOPPING] = {{APP_REFUSE_STOPPING, APP_REFUSE_STOPPING, APP_KEEP, APP_REFUSE_STOPPING},
                      {APP_REFUSE_STOPPING, APP_REFUSE_STOPPING, APP_KEEP, APP_REFUSE_STOPPING}},
    [APP_STOPPED] = {{APP_KEEP, APP_REFUSE_STOPPED, APP_KEEP, APP_TAKE},
                     {APP_KEEP, APP_REFUSE_STOPPED, APP_KEEP, APP_TAKE}},
};

enum app_state app_state_next(enum app_state state, enum app_event ev, bool *ret_moved)
{
    unsigned char to = (unsigned)state < APP__COUNT && (unsigned)ev < APP_EV__COUNT
                           ? app_moves[state][ev]
                           : 0;
    if (ret_moved) {
        *ret_moved = to != 0;
    }
    return to ? (enum app_state)(to - 1) : state;
}

enum app_verdict app_state_accepts(enum app_state state, bool busy, enum app_command cmd)
{
    if ((unsigned)state >= APP__COUNT || (unsigned)cmd >= APP_CMD__COUNT) {
        return APP_REFUSE_STOPPED;
    }
    return app_verdicts[state][busy][cmd];
}

const char *app_state_to_string(enum app_state state)
{
    static const char *const names[APP__COUNT] = {"running", "reloading", "stopping", "stopped",
                                                  "errored"};
    return (unsigned)state < APP__COUNT ? names[state] : "unknown";
}

const char *app_event_to_string(enum app_event ev)
{
    static const char *const names[APP_EV__COUNT] = {"start", "reload_begin", "reload_end",
                                                     "halt", "gone", "looping", "serving"};
    return (unsigned)ev < APP_EV__COUNT ? names[ev] : "unknown";
}
