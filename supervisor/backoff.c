/*
 * backoff: how long a slot waits before replacing a worker that exited unasked (SPEC section 5).
 *
 * The state is two numbers per slot and the decision a pure function of (state, policy,
 * uptime, random), so the unit tests drive it without a clock and the master keeps no timers
 * beyond the one that fires when the wait ends. A worker that lived at least min_uptime proves
 * the app can run: its replacement starts at once and the history is forgotten. A worker that
 * died sooner is probably crashing on start, so each such exit doubles the wait, up to the cap,
 * to keep a broken app from spinning the CPU and flooding the log. Jitter spreads the restarts
 * of slots that crashed together (a bad deploy kills them all at once) so they do not hit
 * shared resources in lockstep.
 */
#include "backoff.h"

#define JITTER_DIVISOR 5 /* +-20% */

void backoff_init(struct backoff *b)
{
    b->delay_ms = 0;
    b->fast_crashes = 0;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

uint64_t backoff_next(struct backoff *b, const struct backoff_policy *p, uint64_t uptime_ms,
                      uint32_t random)
{
    if (uptime_ms >= p->min_uptime_ms) {
        backoff_init(b);
        return 0;
    }

    uint64_t base = b->delay_ms != 0 ? b->delay_ms : p->delay_ms;
    base = min_u64(base, p->delay_max_ms);

    /*
     * random spreads the wait uniformly over [base - j, base + j]. Doubles keep the scaling
     * free of overflow; durations are capped far below 2^53 ms, so the result is exact enough.
     */
    uint64_t j = base / JITTER_DIVISOR;
    uint64_t offset = (uint64_t)((double)random / (double)UINT32_MAX * (double)(2 * j));
    if (offset > 2 * j) {
        offset = 2 * j;
    }
    uint64_t wait = min_u64(base - j + offset, p->delay_max_ms);

    b->delay_ms = base > p->delay_max_ms / 2 ? p->delay_max_ms : base * 2;
    if (b->fast_crashes < UINT32_MAX) {
        b->fast_crashes++;
    }
    return wait;
}
