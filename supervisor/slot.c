/*
 * slot: the slot machine's table. See slot.h.
 *
 * Every cell is a small function of the machine and the event's facts; a missing cell means
 * "nothing to do here" (a timer that fired after a halt, an exit reported for an empty slot).
 * The restart policy of SPEC section 5 is the crash cell of a filled slot.
 */
#include "slot.h"

#include <stddef.h>

/* Fast crashes in a row after which a slot counts as crash-looping (SPEC section 7, errored). */
#define SLOT_LOOPING 2

typedef struct slot_step (*slot_cell)(struct slot_machine *m, const struct slot_facts *f);

static struct slot_step slot_go(enum slot_state to, enum slot_action action, const char *why)
{
    return (struct slot_step){.to = to, .action = action, .why = why};
}

static struct slot_step cell_filled(struct slot_machine *m, const struct slot_facts *f)
{
    return slot_go(SLOT_FILLED, SLOT_DO_NOTHING, "worker started");
}

static struct slot_step cell_filled_cancel(struct slot_machine *m, const struct slot_facts *f)
{
    return slot_go(SLOT_FILLED, SLOT_DO_CANCEL, "worker started without waiting");
}

static struct slot_step cell_replaced(struct slot_machine *m, const struct slot_facts *f)
{
    return slot_go(SLOT_FILLED, m->state == SLOT_BACKOFF ? SLOT_DO_CANCEL : SLOT_DO_NOTHING,
                   "a replacement's worker took it");
}

/* Starting a worker failed (out of descriptors or memory): a condition that may pass, retried
 * on the backoff schedule as if the worker had died at once. */
static struct slot_step cell_fill_failed(struct slot_machine *m, const struct slot_facts *f)
{
    struct slot_step st = slot_go(SLOT_BACKOFF, SLOT_DO_WAIT, "starting a worker failed");
    st.delay_ms = backoff_next(&m->backoff, &f->policy, 0, f->random);
    return st;
}

/* The restart policy (SPEC section 5, "Crash"). */
static struct slot_step cell_crash(struct slot_machine *m, const struct slot_facts *f)
{
    if (f->restart == RESTART_NEVER || (f->restart == RESTART_ON_FAILURE && f->clean_exit)) {
        return slot_go(SLOT_EMPTY, SLOT_DO_NOTHING, "not restarted (restart policy)");
    }
    /* The first fast crash in a row is replaced at once, like any other crash: a sporadic
     * crash then costs only the app's boot (issue 15). Backoff starts at the second fast crash
     * in a row, whose wait is restart_delay; the slot is crash-looping from then on. */
    if (f->uptime_ms < f->policy.min_uptime_ms && m->backoff.fast_crashes == 0) {
        m->backoff.fast_crashes = 1;
        struct slot_step st = slot_go(SLOT_EMPTY, SLOT_DO_SPAWN,
                                      "restarted at once (first fast crash)");
        st.counts_restart = true;
        return st;
    }
    uint64_t delay = backoff_next(&m->backoff, &f->policy, f->uptime_ms, f->random);
    struct slot_step st = delay == 0 ? slot_go(SLOT_EMPTY, SLOT_DO_SPAWN, "restarted at once")
                                     : slot_go(SLOT_BACKOFF, SLOT_DO_WAIT, "died young: backing off");
    st.delay_ms = delay;
    st.counts_restart = true;
    return st;
}

static struct slot_step cell_left(struct slot_machine *m, const struct slot_facts *f)
{
    return slot_go(SLOT_EMPTY, SLOT_DO_NOTHING, "worker left");
}

static struct slot_step cell_timer(struct slot_machine *m, const struct slot_facts *f)
{
    return slot_go(SLOT_EMPTY, SLOT_DO_SPAWN, "backoff over");
}

static struct slot_step cell_halt_backoff(struct slot_machine *m, const struct slot_facts *f)
{
    return slot_go(SLOT_EMPTY, SLOT_DO_CANCEL, "halted");
}

/* A memory breach is judged like a crash for its timing (SPEC section 10): a worker over the
 * limit soon after its start waits the backoff before it is replaced. The slot stays filled. */
static struct slot_step cell_memory(struct slot_machine *m, const struct slot_facts *f)
{
    struct slot_step st = slot_go(SLOT_FILLED, SLOT_DO_NOTHING, NULL);
    st.delay_ms = backoff_next(&m->backoff, &f->policy, f->uptime_ms, f->random);
    return st;
}

static const slot_cell slot_table[SLOT__COUNT][SLOT_EV__COUNT] = {
    [SLOT_EMPTY][SLOT_EV_FILL] = cell_filled,
    [SLOT_EMPTY][SLOT_EV_FILL_FAILED] = cell_fill_failed,
    [SLOT_EMPTY][SLOT_EV_REPLACED] = cell_replaced,

    [SLOT_FILLED][SLOT_EV_CRASH] = cell_crash,
    [SLOT_FILLED][SLOT_EV_LEFT] = cell_left,
    [SLOT_FILLED][SLOT_EV_REPLACED] = cell_replaced,
    [SLOT_FILLED][SLOT_EV_MEMORY] = cell_memory,

    [SLOT_BACKOFF][SLOT_EV_TIMER] = cell_timer,
    [SLOT_BACKOFF][SLOT_EV_HALT] = cell_halt_backoff,
    [SLOT_BACKOFF][SLOT_EV_FILL] = cell_filled_cancel,
    [SLOT_BACKOFF][SLOT_EV_FILL_FAILED] = cell_fill_failed,
    [SLOT_BACKOFF][SLOT_EV_REPLACED] = cell_replaced,
};

void slot_machine_init(struct slot_machine *m)
{
    m->state = SLOT_EMPTY;
    backoff_init(&m->backoff);
}

struct slot_step slot_machine_step(struct slot_machine *m, enum slot_event ev,
                                   const struct slot_facts *f)
{
    static const struct slot_facts none = {0};
    slot_cell cell = (unsigned)m->state < SLOT__COUNT && (unsigned)ev < SLOT_EV__COUNT
                         ? slot_table[m->state][ev]
                         : NULL;
    struct slot_step st = cell ? cell(m, f ? f : &none) : slot_go(m->state, SLOT_DO_NOTHING, NULL);
    st.from = m->state;
    m->state = st.to;
    return st;
}

bool slot_machine_is_looping(const struct slot_machine *m)
{
    return m->backoff.fast_crashes >= SLOT_LOOPING;
}

const char *slot_state_to_string(enum slot_state state)
{
    static const char *const names[SLOT__COUNT] = {"empty", "filled", "backoff"};
    return (unsigned)state < SLOT__COUNT ? names[state] : "unknown";
}

const char *slot_event_to_string(enum slot_event ev)
{
    static const char *const names[SLOT_EV__COUNT] = {
        "fill", "fill_failed", "crash", "left", "replaced", "timer", "halt", "memory"};
    return (unsigned)ev < SLOT_EV__COUNT ? names[ev] : "unknown";
}
