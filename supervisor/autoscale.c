/*
 * autoscale: the decision of SPEC section 13 as one function. See autoscale.h.
 */
#include "autoscale.h"

#include <stddef.h>

void autoscale_init(struct autoscale *a)
{
    *a = (struct autoscale){-1, -1, -1, -1e18};
}

static bool autoscale_cooled(const struct autoscale *a, const struct autoscale_policy *p,
                             double now)
{
    return now - a->last_change >= (double)p->cooldown_ms;
}

/* Would n + 1 workers at max_memory each still fit the memory limit? */
static bool autoscale_fits(const struct autoscale_policy *p, unsigned n)
{
    return p->max_memory == 0 || p->memory_limit == 0 ||
           (uint64_t)(n + 1) * p->max_memory <= p->memory_limit;
}

struct autoscale_step autoscale_feed(struct autoscale *a, const struct autoscale_policy *p,
                                     double now, unsigned queue, unsigned n, bool blocked)
{
    struct autoscale_step st = {0, NULL};
    if (blocked || p->max <= p->min) {
        a->busy_since = a->empty_since = a->idle_since = -1;
        return st;
    }
    if (queue > 0) {
        a->idle_since = -1;
        a->empty_since = -1;
        if (a->busy_since < 0) {
            a->busy_since = now;
        }
    } else {
        if (a->busy_since >= 0) {
            if (a->empty_since < 0) {
                a->empty_since = now;
            }
            if (now - a->empty_since >= AUTOSCALE_QUIET_MS) {
                a->busy_since = a->empty_since = -1; /* the busy stretch is over */
            }
        }
        if (a->busy_since < 0 && a->idle_since < 0) {
            a->idle_since = now;
        }
    }
    if (a->busy_since >= 0 && now - a->busy_since >= (double)p->up_after_ms) {
        if (n >= p->max) {
            st.why = "at its maximum";
        } else if (!autoscale_fits(p, n)) {
            st.why = "the memory limit holds no more workers at max_memory";
        } else if (autoscale_cooled(a, p, now)) {
            st = (struct autoscale_step){+1, "connections waited in the accept queue"};
            a->last_change = now;
            a->busy_since = now; /* the next one needs a whole stretch of its own */
        }
    } else if (a->idle_since >= 0 && now - a->idle_since >= (double)p->down_after_ms &&
               n > p->min && autoscale_cooled(a, p, now)) {
        st = (struct autoscale_step){-1, "the accept queue stayed empty"};
        a->last_change = now;
        a->idle_since = now;
    }
    return st;
}
