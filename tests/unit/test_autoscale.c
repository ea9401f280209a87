/*
 * Unit tests of autoscale, the decision of SPEC section 13, fed samples every 250 ms as the app
 * does: up after a sustained queue, down after sustained idleness, held at MAX, by the memory
 * budget and by the cooldown, and nothing while blocked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include "autoscale.h"

static const struct autoscale_policy policy = {
    .min = 1, .max = 3, .up_after_ms = 3000, .down_after_ms = 60000, .cooldown_ms = 10000,
};

/* Feeds the same reading every 250 ms for ms (samples at *t, *t + 250, ..., before *t + ms);
 * returns the sum of the changes and leaves *t at the next sample's time. */
static int feed(struct autoscale *a, const struct autoscale_policy *p, double *t, double ms,
                unsigned queue, unsigned *n, bool blocked)
{
    int sum = 0;
    for (long step = 0; step * 250 < (long)ms; step++) {
        struct autoscale_step st = autoscale_feed(a, p, *t, queue, *n, blocked);
        sum += st.change;
        *n = (unsigned)((int)*n + st.change);
        *t += 250;
    }
    return sum;
}

static void test_up_after_a_sustained_queue_only(void **state)
{
    (void)state;
    struct autoscale a;
    autoscale_init(&a);
    double t = 0;
    unsigned n = 1;
    assert_int_equal(feed(&a, &policy, &t, 3000, 5, &n, false), 0); /* up to 2.75 s */
    assert_int_equal(feed(&a, &policy, &t, 250, 5, &n, false), 1);  /* 3 s */
    assert_int_equal(n, 2);
    /* The next one waits out the cooldown, however long the queue stays. */
    assert_int_equal(feed(&a, &policy, &t, 9750, 5, &n, false), 0);
    assert_int_equal(feed(&a, &policy, &t, 250, 5, &n, false), 1);  /* 13 s */
    assert_int_equal(n, 3);
    /* At MAX: held, with the reason. */
    t += 20000;
    struct autoscale_step st = autoscale_feed(&a, &policy, t, 5, n, false);
    assert_int_equal(st.change, 0);
    assert_string_equal(st.why, "at its maximum");
}

static void test_a_momentary_empty_reading_keeps_the_busy_stretch(void **state)
{
    (void)state;
    struct autoscale a;
    autoscale_init(&a);
    double t = 0;
    unsigned n = 1;
    int sum = 0;
    for (int i = 0; i < 6; i++) { /* 500 ms busy, 250 ms empty: a saturated app */
        sum += feed(&a, &policy, &t, 500, 3, &n, false);
        sum += feed(&a, &policy, &t, 250, 0, &n, false);
    }
    assert_int_equal(sum, 1);
    /* Empty for AUTOSCALE_QUIET_MS ends the stretch: the next needs 3 s again. */
    autoscale_init(&a);
    t = 0;
    n = 1;
    assert_int_equal(feed(&a, &policy, &t, 2000, 3, &n, false), 0);
    assert_int_equal(feed(&a, &policy, &t, 1250, 0, &n, false), 0);
    assert_int_equal(feed(&a, &policy, &t, 2750, 3, &n, false), 0);
}

static void test_down_after_sustained_idleness_not_below_min(void **state)
{
    (void)state;
    struct autoscale a;
    autoscale_init(&a);
    double t = 0;
    unsigned n = 3;
    assert_int_equal(feed(&a, &policy, &t, 60000, 0, &n, false), 0);
    assert_int_equal(feed(&a, &policy, &t, 250, 0, &n, false), -1); /* 60 s */
    /* One waiting connection restarts the idle stretch, once its busy stretch is over (1 s
     * of empty readings): the next -1 comes 60 s after that. */
    assert_int_equal(feed(&a, &policy, &t, 250, 1, &n, false), 0);
    assert_int_equal(feed(&a, &policy, &t, 60750, 0, &n, false), 0);
    assert_int_equal(feed(&a, &policy, &t, 500, 0, &n, false), -1);
    assert_int_equal(n, 1);
    assert_int_equal(feed(&a, &policy, &t, 120000, 0, &n, false), 0); /* MIN */
}

static void test_memory_budget_and_blocked(void **state)
{
    (void)state;
    struct autoscale_policy p = policy;
    p.max_memory = 256u << 20;
    p.memory_limit = 512u << 20; /* two workers fit, a third does not */
    struct autoscale a;
    autoscale_init(&a);
    double t = 0;
    unsigned n = 1;
    assert_int_equal(feed(&a, &p, &t, 3250, 5, &n, false), 1);
    t += 20000;
    assert_int_equal(feed(&a, &p, &t, 10000, 5, &n, false), 0);
    struct autoscale_step st = autoscale_feed(&a, &p, t, 5, n, false);
    assert_string_equal(st.why, "the memory limit holds no more workers at max_memory");

    /* Blocked (a reload, a pin): nothing, and the stretch starts again after it. */
    autoscale_init(&a);
    t = 0;
    n = 1;
    assert_int_equal(feed(&a, &policy, &t, 10000, 5, &n, true), 0);
    assert_int_equal(feed(&a, &policy, &t, 3000, 5, &n, false), 0);
    assert_int_equal(feed(&a, &policy, &t, 250, 5, &n, false), 1);
    /* A fixed count (MIN == MAX) never changes. */
    struct autoscale_policy fixed = policy;
    fixed.max = fixed.min;
    autoscale_init(&a);
    n = 1;
    assert_int_equal(feed(&a, &fixed, &t, 10000, 5, &n, false), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_up_after_a_sustained_queue_only),
        cmocka_unit_test(test_a_momentary_empty_reading_keeps_the_busy_stretch),
        cmocka_unit_test(test_down_after_sustained_idleness_not_below_min),
        cmocka_unit_test(test_memory_budget_and_blocked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
