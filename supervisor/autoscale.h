/*
 * autoscale: when an app with `workers = MIN..MAX` gets a worker more or one less (SPEC section
 * 13), pure: the accept queue's length and the time come in, a change of +1, -1 or 0 goes out.
 *
 *   a queue that stays non-empty for up_after          -> +1  (not past max, not past the
 *                                                             memory budget)
 *   a queue that stays empty for down_after            -> -1  (not below min)
 *   never two changes within cooldown; nothing while blocked (a reload, a pin, not running)
 *
 * Hysteresis: a busy stretch survives a momentary empty reading (the workers took the queue
 * between two samples) until the queue has been empty for AUTOSCALE_QUIET_MS; an idle stretch
 * ends at the first connection that has to wait.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define AUTOSCALE_QUIET_MS 1000

struct autoscale_policy {
    unsigned min, max;
    uint64_t up_after_ms, down_after_ms, cooldown_ms;
    uint64_t max_memory;        /* per worker; 0 = none */
    uint64_t memory_limit;      /* the cgroup's; 0 = none known */
};

/* A machine per app: where the current stretches began (ms; negative = none). */
struct autoscale {
    double busy_since;
    double empty_since;         /* within a busy stretch: since when the queue reads empty */
    double idle_since;
    double last_change;
};

struct autoscale_step {
    int change;                 /* +1, -1 or 0 */
    const char *why;            /* a static phrase for a change, or for a held one; or NULL */
};

void autoscale_init(struct autoscale *a);

/* One sample at now_ms: queue connections waiting, n workers wanted now; blocked = no change
 * may happen now (the stretches start again afterwards). */
struct autoscale_step autoscale_feed(struct autoscale *a, const struct autoscale_policy *p,
                                     double now_ms, unsigned queue, unsigned n, bool blocked);
