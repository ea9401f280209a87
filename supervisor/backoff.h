/*
 * backoff: the restart policy for a slot whose worker exits unasked (SPEC section 5), as a pure
 * function of what happened. A worker that ran at least min_uptime is replaced at once and the
 * delay resets; one that died sooner waits restart_delay, doubling per fast crash, with jitter so
 * that many slots crashing together do not restart in lockstep, up to restart_delay_max.
 * Time and randomness are passed in, so tests need no clock.
 */
#pragma once

#include <stdint.h>

struct backoff_policy {
    uint64_t delay_ms;
    uint64_t delay_max_ms;
    uint64_t min_uptime_ms;
};

struct backoff {
    uint64_t delay_ms;      /* the base delay of the next fast crash; 0 = first */
    unsigned fast_crashes;  /* consecutive exits before min_uptime */
};

void backoff_init(struct backoff *b);

/*
 * A worker of this slot exited after uptime_ms. Returns how long to wait before starting its
 * replacement (0 = at once) and updates *b. random is any 32-bit value; the jitter is within
 * +-20% of the base delay and never exceeds delay_max_ms.
 */
uint64_t backoff_next(struct backoff *b, const struct backoff_policy *p, uint64_t uptime_ms,
                      uint32_t random);
