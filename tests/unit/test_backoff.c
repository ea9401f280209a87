/*
 * Unit tests of backoff, the restart policy of SPEC section 5: at once after a worker that ran
 * min_uptime, else restart_delay doubling per fast crash up to restart_delay_max, with +-20%
 * jitter. The random input is chosen to pin the jitter at its low end, its high end and its
 * middle, so the expected waits are exact numbers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include "backoff.h"

#define RANDOM_LOW 0u
#define RANDOM_HIGH UINT32_MAX
#define RANDOM_MID 0x80000000u /* just over half: the offset rounds down to exactly j */

static const struct backoff_policy policy = {
    .delay_ms = 100,
    .delay_max_ms = 1000,
    .min_uptime_ms = 5000,
};

static void test_init(void **state)
{
    struct backoff b = {.delay_ms = 77, .fast_crashes = 9};

    backoff_init(&b);
    assert_int_equal(b.delay_ms, 0);
    assert_int_equal(b.fast_crashes, 0);
}

static void test_immediate_after_min_uptime(void **state)
{
    struct backoff b;

    backoff_init(&b);
    assert_int_equal(backoff_next(&b, &policy, 5000, RANDOM_HIGH), 0);
    assert_int_equal(backoff_next(&b, &policy, 86400000, RANDOM_HIGH), 0);
    assert_int_equal(b.fast_crashes, 0);
    assert_int_equal(b.delay_ms, 0);

    /* One millisecond short of min_uptime is a fast crash. */
    assert_int_equal(backoff_next(&b, &policy, 4999, RANDOM_MID), 100);
    assert_int_equal(b.fast_crashes, 1);
}

static void test_doubling_to_cap(void **state)
{
    static const uint64_t expected[] = {100, 200, 400, 800, 1000, 1000, 1000};
    struct backoff b;

    backoff_init(&b);
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        assert_int_equal(backoff_next(&b, &policy, 10, RANDOM_MID), expected[i]);
        assert_int_equal(b.fast_crashes, i + 1);
    }
    assert_int_equal(b.delay_ms, 1000);
}

static void test_jitter_extremes(void **state)
{
    /* Low end: 80% of the base. High end: 120%, but never over delay_max. */
    static const uint64_t low[] = {80, 160, 320, 640, 800, 800};
    static const uint64_t high[] = {120, 240, 480, 960, 1000, 1000};
    struct backoff b;

    backoff_init(&b);
    for (size_t i = 0; i < sizeof low / sizeof low[0]; i++) {
        assert_int_equal(backoff_next(&b, &policy, 0, RANDOM_LOW), low[i]);
    }
    backoff_init(&b);
    for (size_t i = 0; i < sizeof high / sizeof high[0]; i++) {
        assert_int_equal(backoff_next(&b, &policy, 0, RANDOM_HIGH), high[i]);
    }
}

static void test_jitter_within_bounds(void **state)
{
    const struct backoff_policy p = {.delay_ms = 250, .delay_max_ms = 30000, .min_uptime_ms = 1};
    uint32_t x = 12345;
    uint64_t seen_min = UINT64_MAX, seen_max = 0;

    for (int round = 0; round < 200; round++) {
        struct backoff b;
        backoff_init(&b);
        for (int crash = 0; crash < 10; crash++) {
            uint64_t base = b.delay_ms ? b.delay_ms : p.delay_ms;
            x = x * 1103515245u + 12345u;
            uint64_t wait = backoff_next(&b, &p, 0, x);
            uint64_t hi = base + base / 5 < p.delay_max_ms ? base + base / 5 : p.delay_max_ms;
            assert_in_range(wait, base - base / 5, hi);
            if (crash == 0) {
                seen_min = wait < seen_min ? wait : seen_min;
                seen_max = wait > seen_max ? wait : seen_max;
            }
        }
    }
    /* The jitter really spreads: the first waits cover most of [200, 300]. */
    assert_true(seen_min < 210);
    assert_true(seen_max > 290);
}

static void test_reset_after_long_run(void **state)
{
    struct backoff b;

    backoff_init(&b);
    for (int i = 0; i < 4; i++) {
        backoff_next(&b, &policy, 10, RANDOM_MID);
    }
    assert_int_equal(b.fast_crashes, 4);
    assert_int_equal(b.delay_ms, 1000);

    /* The worker then ran long enough: at once, and the history is forgotten. */
    assert_int_equal(backoff_next(&b, &policy, 6000, RANDOM_MID), 0);
    assert_int_equal(b.fast_crashes, 0);
    assert_int_equal(b.delay_ms, 0);
    assert_int_equal(backoff_next(&b, &policy, 10, RANDOM_MID), 100);
    assert_int_equal(backoff_next(&b, &policy, 10, RANDOM_MID), 200);
}

static void test_degenerate_policies(void **state)
{
    const struct backoff_policy zero = {.delay_ms = 0, .delay_max_ms = 0, .min_uptime_ms = 5000};
    const struct backoff_policy flat = {.delay_ms = 500, .delay_max_ms = 500, .min_uptime_ms = 1};
    const struct backoff_policy huge = {
        .delay_ms = 1ULL << 40, .delay_max_ms = 1ULL << 41, .min_uptime_ms = 1};
    struct backoff b;

    backoff_init(&b);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(backoff_next(&b, &zero, 0, RANDOM_HIGH), 0);
    }
    backoff_init(&b);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(backoff_next(&b, &flat, 0, RANDOM_MID), 500);
    }
    backoff_init(&b);
    /* At this size a 32-bit random no longer pins the offset to the unit: a range, then. */
    assert_in_range(backoff_next(&b, &huge, 0, RANDOM_MID), (1ULL << 40) - (1ULL << 40) / 5,
                    (1ULL << 40) + (1ULL << 40) / 5);
    assert_int_equal(backoff_next(&b, &huge, 0, RANDOM_MID), 1ULL << 41);
    assert_int_equal(backoff_next(&b, &huge, 0, RANDOM_HIGH), 1ULL << 41);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_immediate_after_min_uptime),
        cmocka_unit_test(test_doubling_to_cap),
        cmocka_unit_test(test_jitter_extremes),
        cmocka_unit_test(test_jitter_within_bounds),
        cmocka_unit_test(test_reset_after_long_run),
        cmocka_unit_test(test_degenerate_policies),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
