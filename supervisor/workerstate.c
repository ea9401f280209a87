/*
 * workerstate: the worker's table. See workerstate.h.
 *
 * The starting row is where the ready modes differ (SPEC section 3, `ready`): notify waits for
 * the word until ready_timeout; delay takes ready_delay of uptime; none takes the exec; auto
 * takes the word of a worker that speaks and the delay of one that never does.
 */
#include "workerstate.h"

#include <stddef.h>

typedef struct worker_step (*worker_cell)(const struct worker_facts *f);

static struct worker_step go(enum worker_state to, enum worker_action action, const char *why)
{
    return (struct worker_step){.to = to, .action = action, .why = why};
}

static struct worker_step cell_exec(const struct worker_facts *f)
{
    return f->ready == READY_NONE ? go(WORKER_READY, WORKER_DO_READY, "exec")
                                  : go(WORKER_STARTING, WORKER_DO_NOTHING, NULL);
}

static struct worker_step cell_word(const struct worker_facts *f)
{
    return f->ready == READY_NOTIFY || f->ready == READY_AUTO
               ? go(WORKER_READY, WORKER_DO_READY, NULL)
               : go(WORKER_STARTING, WORKER_DO_NOTHING, NULL);
}

static struct worker_step cell_timer(const struct worker_facts *f)
{
    if (f->ready == READY_DELAY) {
        return go(WORKER_READY, WORKER_DO_READY, "ready_delay");
    }
    if (f->ready == READY_AUTO) {
        /* A worker silent for ready_delay is an app that never speaks; one that spoke has
         * promised a READY and is held to ready_timeout like notify. */
        if (!f->spoke) {
            return go(WORKER_READY, WORKER_DO_READY, "ready_delay (it said nothing)");
        }
        double left = f->ready_timeout_s - f->uptime_s;
        if (left > 0.01) {
            struct worker_step st = go(WORKER_STARTING, WORKER_DO_WAIT, NULL);
            st.delay_s = left;
            return st;
        }
    }
    /* Not ready in time is a failed start: killed, its exit goes the crash path, so a worker
     * that never becomes ready backs off like one that crashes. */
    return go(WORKER_STARTING, WORKER_DO_KILL, "not ready in time");
}

static struct worker_step cell_drain_starting(const struct worker_facts *f)
{
    return go(WORKER_DRAINING, WORKER_DO_CANCEL, NULL);
}

static struct worker_step cell_drain(const struct worker_facts *f)
{
    return go(WORKER_DRAINING, WORKER_DO_NOTHING, NULL);
}

static struct worker_step cell_stop(const struct worker_facts *f)
{
    return go(WORKER_STOPPING, WORKER_DO_NOTHING, NULL);
}

static struct worker_step cell_stop_starting(const struct worker_facts *f)
{
    return go(WORKER_STOPPING, WORKER_DO_CANCEL, NULL);
}

static struct worker_step cell_exit(const struct worker_facts *f)
{
    return go(WORKER_EXITED, WORKER_DO_CANCEL, NULL);
}

/* Hung: out of the ready count at once; the owner starts its replacement, and after
 * ready_timeout at the latest (a replacement that never comes up) the hung worker is aborted. */
static struct worker_step cell_silent(const struct worker_facts *f)
{
    struct worker_step st = go(WORKER_HUNG, WORKER_DO_HANG, "silent past its watchdog");
    st.delay_s = f->ready_timeout_s;
    return st;
}

/* SIGABRT, so it leaves a core or a stack dump; kill_timeout later, SIGKILL. */
static struct worker_step cell_abort(const struct worker_facts *f)
{
    struct worker_step st = go(WORKER_STOPPING, WORKER_DO_ABORT, "aborted (SIGABRT)");
    st.delay_s = f->kill_timeout_s;
    return st;
}

/* Only an aborted worker has a timer while stopping: it outlived kill_timeout. */
static struct worker_step cell_force(const struct worker_facts *f)
{
    return go(WORKER_STOPPING, WORKER_DO_FORCE, NULL);
}

static const worker_cell worker_table[WORKER__COUNT][WORKER_EV__COUNT] = {
    [WORKER_STARTING] = {[WORKER_EV_EXEC] = cell_exec, [WORKER_EV_WORD] = cell_word,
                         [WORKER_EV_TIMER] = cell_timer, [WORKER_EV_DRAIN] = cell_drain_starting,
                         [WORKER_EV_STOP] = cell_stop_starting,
                         [WORKER_EV_KILL] = cell_stop_starting, [WORKER_EV_EXIT] = cell_exit},
    [WORKER_READY] = {[WORKER_EV_DRAIN] = cell_drain, [WORKER_EV_STOP] = cell_stop,
                      [WORKER_EV_KILL] = cell_stop, [WORKER_EV_EXIT] = cell_exit,
                      [WORKER_EV_SILENT] = cell_silent},
    [WORKER_HUNG] = {[WORKER_EV_ABORT] = cell_abort, [WORKER_EV_TIMER] = cell_abort,
                     [WORKER_EV_DRAIN] = cell_drain_starting, [WORKER_EV_STOP] = cell_stop_starting,
                     [WORKER_EV_KILL] = cell_stop_starting, [WORKER_EV_EXIT] = cell_exit},
    [WORKER_DRAINING] = {[WORKER_EV_STOP] = cell_stop, [WORKER_EV_KILL] = cell_stop,
                         [WORKER_EV_EXIT] = cell_exit},
    [WORKER_STOPPING] = {[WORKER_EV_EXIT] = cell_exit, [WORKER_EV_TIMER] = cell_force},
};

double worker_state_first_wait(const struct worker_facts *f)
{
    switch (f->ready) {
    case READY_NOTIFY:
        return f->ready_timeout_s;
    case READY_DELAY:
    case READY_AUTO:
        return f->ready_delay_s;
    case READY_NONE:
        break;
    }
    return -1;
}

struct worker_step worker_state_step(enum worker_state state, enum worker_event ev,
                                     const struct worker_facts *f)
{
    static const struct worker_facts none = {0};
    worker_cell cell = (unsigned)state < WORKER__COUNT && (unsigned)ev < WORKER_EV__COUNT
                           ? worker_table[state][ev]
                           : NULL;
    struct worker_step st = cell ? cell(f ? f : &none) : go(state, WORKER_DO_NOTHING, NULL);
    st.from = state;
    return st;
}

bool worker_state_is_leaving(enum worker_state state)
{
    return state == WORKER_DRAINING || state == WORKER_STOPPING;
}

const char *worker_state_to_string(enum worker_state state)
{
    static const char *const names[WORKER__COUNT] = {"starting", "ready", "hung",
                                                     "draining", "stopping", "exited"};
    return (unsigned)state < WORKER__COUNT ? names[state] : "unknown";
}
