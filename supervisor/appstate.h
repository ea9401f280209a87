/*
 * appstate: an app's state (SPEC section 7) as one table of states by events, and which commands
 * an app takes in which state: pure, so a unit test drives every cell.
 *
 *     stopped --start--> running --reload_begin--> reloading --reload_end--> running
 *                          |  ^--serving--+                                    |
 *                          +--looping--> errored                  halt (any but stopped)
 *                                                                  --> stopping --gone--> stopped
 *
 * A command that arrives while another operation owns the app's slots (a reload, a restart or a
 * memory replacement: "busy") is refused with a clear reason rather than run under it: the
 * defect of a scale during a restart, which left a worker no slot would ever retire, is the
 * cell [running][busy][scale].
 */
#pragma once

#include <stdbool.h>

enum app_state { APP_RUNNING, APP_RELOADING, APP_STOPPING, APP_STOPPED, APP_ERRORED, APP__COUNT };

enum app_event {
    APP_EV_START,           /* start it (at drover's start, or `droverctl start`) */
    APP_EV_RELOAD_BEGIN,    /* a rolling reload to a new config begins */
    APP_EV_RELOAD_END,      /* it ended, whatever its outcome */
    APP_EV_HALT,            /* stop it (`droverctl stop`, drover's shutdown, removal) */
    APP_EV_GONE,            /* its last worker has gone while stopping */
    APP_EV_LOOPING,         /* every slot is crash-looping */
    APP_EV_SERVING,         /* not every slot is (a worker outlived min_uptime) */
    APP_EV__COUNT,
};

enum app_command { APP_CMD_SCALE, APP_CMD_RESTART, APP_CMD_RELOAD, APP_CMD_START, APP_CMD__COUNT };

enum app_verdict {
    APP_TAKE,               /* go ahead */
    APP_ALREADY,            /* nothing to do: answer ok (start of a running app) */
    APP_KEEP,               /* take it as a setting for the next start (scale of a stopped app) */
    APP_REFUSE_BUSY,        /* another operation owns the slots: try again when it is done */
    APP_REFUSE_STOPPING,    /* wait until it has stopped */
    APP_REFUSE_STOPPED,     /* it is not running */
};

/* The state after ev, or state itself when ev means nothing there. *ret_moved (may be NULL)
 * says whether the state changed. */
enum app_state app_state_next(enum app_state state, enum app_event ev, bool *ret_moved);

/* Whether an app in state, with (busy) or without a replacement in progress, takes cmd. */
enum app_verdict app_state_accepts(enum app_state state, bool busy, enum app_command cmd);

const char *app_state_to_string(enum app_state state);
const char *app_event_to_string(enum app_event ev);
