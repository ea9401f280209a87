/*
 * Unit tests of the slot machine (slot.h): every cell that matters, driven with events and
 * facts only, no process and no clock. The jitter is pinned at its middle (random = 2^31), where
 * the wait is exactly the base delay.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include "slot.h"

#define RANDOM_MID 0x80000000u

static struct slot_facts facts(enum restart_policy restart, uint64_t uptime_ms, bool clean)
{
    return (struct slot_facts){
        .uptime_ms = uptime_ms,
        .clean_exit = clean,
        .restart = restart,
        .policy = {.delay_ms = 100, .delay_max_ms = 400, .min_uptime_ms = 5000},
        .random = RANDOM_MID,
    };
}

static struct slot_machine filled(void)
{
    struct slot_machine m;
    slot_machine_init(&m);
    struct slot_step st = slot_machine_step(&m, SLOT_EV_FILL, NULL);
    assert_int_equal(st.from, SLOT_EMPTY);
    assert_int_equal(st.to, SLOT_FILLED);
    assert_int_equal(st.action, SLOT_DO_NOTHING);
    return m;
}

/* A first fast crash in a row is replaced at once (issue 15): a second one backs off. Leaves m
 * in backoff after two young crashes. */
static void into_backoff(struct slot_machine *m, const struct slot_facts *f)
{
    struct slot_step st = slot_machine_step(m, SLOT_EV_CRASH, f);
    assert_int_equal(st.to, SLOT_EMPTY);
    assert_int_equal(st.action, SLOT_DO_SPAWN);
    assert_int_equal(st.delay_ms, 0);
    assert_true(st.counts_restart);
    assert_false(slot_machine_is_looping(m));
    assert_int_equal(slot_machine_step(m, SLOT_EV_FILL, NULL).to, SLOT_FILLED);
    st = slot_machine_step(m, SLOT_EV_CRASH, f);
    assert_int_equal(st.to, SLOT_BACKOFF);
    assert_int_equal(st.delay_ms, 100); /* restart_delay: the first wait */
    assert_true(slot_machine_is_looping(m));
}

static void test_first_fast_crash_is_replaced_at_once(void **state)
{
    struct slot_machine m = filled();
    struct slot_facts f = facts(RESTART_ALWAYS, 10, false);
    into_backoff(&m, &f);
}

static void test_young_crashes_back_off_doubling_up_to_the_cap(void **state)
{
    struct slot_machine m = filled();
    struct slot_facts f = facts(RESTART_ALWAYS, 10, false);
    /* the first fast crash in a row: at once */
    struct slot_step first = slot_machine_step(&m, SLOT_EV_CRASH, &f);
    assert_int_equal(first.action, SLOT_DO_SPAWN);
    (void)slot_machine_step(&m, SLOT_EV_FILL, NULL);
    const uint64_t waits[] = {100, 200, 400, 400};
    for (size_t i = 0; i < sizeof waits / sizeof waits[0]; i++) {
        struct slot_step st = slot_machine_step(&m, SLOT_EV_CRASH, &f);
        assert_int_equal(st.from, SLOT_FILLED);
        assert_int_equal(st.to, SLOT_BACKOFF);
        assert_int_equal(st.action, SLOT_DO_WAIT);
        assert_int_equal(st.delay_ms, waits[i]);
        assert_true(st.counts_restart);
        /* the timer fires: start again; the start succeeds */
        st = slot_machine_step(&m, SLOT_EV_TIMER, NULL);
        assert_int_equal(st.to, SLOT_EMPTY);
        assert_int_equal(st.action, SLOT_DO_SPAWN);
        assert_int_equal(slot_machine_step(&m, SLOT_EV_FILL, NULL).to, SLOT_FILLED);
    }
    assert_true(slot_machine_is_looping(&m));
}

static void test_a_crash_after_min_uptime_restarts_at_once_and_forgets(void **state)
{
    struct slot_machine m = filled();
    struct slot_facts young = facts(RESTART_ALWAYS, 10, false);
    (void)slot_machine_step(&m, SLOT_EV_CRASH, &young);
    (void)slot_machine_step(&m, SLOT_EV_TIMER, NULL);
    (void)slot_machine_step(&m, SLOT_EV_FILL, NULL);
    struct slot_facts old = facts(RESTART_ALWAYS, 6000, false);
    struct slot_step st = slot_machine_step(&m, SLOT_EV_CRASH, &old);
    assert_int_equal(st.to, SLOT_EMPTY);
    assert_int_equal(st.action, SLOT_DO_SPAWN);
    assert_int_equal(st.delay_ms, 0);
    assert_true(st.counts_restart);
    assert_false(slot_machine_is_looping(&m));
    assert_int_equal(m.backoff.fast_crashes, 0);
}

static void test_restart_policies(void **state)
{
    struct slot_machine m = filled();
    struct slot_facts never = facts(RESTART_NEVER, 10, false);
    struct slot_step st = slot_machine_step(&m, SLOT_EV_CRASH, &never);
    assert_int_equal(st.to, SLOT_EMPTY);
    assert_int_equal(st.action, SLOT_DO_NOTHING);
    assert_false(st.counts_restart);

    m = filled();
    struct slot_facts clean = facts(RESTART_ON_FAILURE, 10, true);
    st = slot_machine_step(&m, SLOT_EV_CRASH, &clean);
    assert_int_equal(st.to, SLOT_EMPTY);
    assert_false(st.counts_restart);

    m = filled();
    struct slot_facts failed = facts(RESTART_ON_FAILURE, 10, false);
    st = slot_machine_step(&m, SLOT_EV_CRASH, &failed);
    assert_int_equal(st.to, SLOT_EMPTY);
    assert_int_equal(st.action, SLOT_DO_SPAWN);
    assert_true(st.counts_restart);
    (void)slot_machine_step(&m, SLOT_EV_FILL, NULL);
    st = slot_machine_step(&m, SLOT_EV_CRASH, &failed);
    assert_int_equal(st.to, SLOT_BACKOFF);
    assert_true(st.counts_restart);
}

static void test_a_failed_start_backs_off(void **state)
{
    struct slot_machine m;
    slot_machine_init(&m);
    struct slot_facts f = facts(RESTART_ALWAYS, 0, false);
    struct slot_step st = slot_machine_step(&m, SLOT_EV_FILL_FAILED, &f);
    assert_int_equal(st.to, SLOT_BACKOFF);
    assert_int_equal(st.action, SLOT_DO_WAIT);
    assert_int_equal(st.delay_ms, 100);
    st = slot_machine_step(&m, SLOT_EV_FILL_FAILED, &f); /* it failed again after the timer */
    assert_int_equal(st.to, SLOT_BACKOFF);
    assert_int_equal(st.delay_ms, 200);
}

static void test_halt_cancels_a_backoff_and_stale_events_do_nothing(void **state)
{
    struct slot_machine m = filled();
    struct slot_facts f = facts(RESTART_ALWAYS, 10, false);
    into_backoff(&m, &f);
    struct slot_step st = slot_machine_step(&m, SLOT_EV_HALT, NULL);
    assert_int_equal(st.from, SLOT_BACKOFF);
    assert_int_equal(st.to, SLOT_EMPTY);
    assert_int_equal(st.action, SLOT_DO_CANCEL);
    /* a timer that fired anyway, an exit of nobody's, a second halt: nothing */
    const enum slot_event stale[] = {SLOT_EV_TIMER, SLOT_EV_CRASH, SLOT_EV_LEFT, SLOT_EV_HALT};
    for (size_t i = 0; i < sizeof stale / sizeof stale[0]; i++) {
        st = slot_machine_step(&m, stale[i], &f);
        assert_int_equal(st.to, SLOT_EMPTY);
        assert_int_equal(st.action, SLOT_DO_NOTHING);
    }
    /* A filled slot's halt waits for its worker to leave. */
    m = filled();
    assert_int_equal(slot_machine_step(&m, SLOT_EV_HALT, NULL).to, SLOT_FILLED);
    assert_int_equal(slot_machine_step(&m, SLOT_EV_LEFT, NULL).to, SLOT_EMPTY);
}

static void test_a_replacement_takes_the_slot_from_any_state(void **state)
{
    struct slot_machine m;
    slot_machine_init(&m);
    assert_int_equal(slot_machine_step(&m, SLOT_EV_REPLACED, NULL).to, SLOT_FILLED);
    assert_int_equal(slot_machine_step(&m, SLOT_EV_REPLACED, NULL).to, SLOT_FILLED);
    struct slot_facts f = facts(RESTART_ALWAYS, 10, false);
    (void)slot_machine_step(&m, SLOT_EV_FILL, NULL);
    into_backoff(&m, &f);
    struct slot_step st = slot_machine_step(&m, SLOT_EV_REPLACED, NULL);
    assert_int_equal(st.from, SLOT_BACKOFF);
    assert_int_equal(st.to, SLOT_FILLED);
    assert_int_equal(st.action, SLOT_DO_CANCEL); /* the restart timer would start a second */
}

static void test_start_again_in_backoff_starts_now(void **state)
{
    struct slot_machine m = filled();
    struct slot_facts f = facts(RESTART_ALWAYS, 10, false);
    into_backoff(&m, &f);
    struct slot_step st = slot_machine_step(&m, SLOT_EV_FILL, NULL);
    assert_int_equal(st.to, SLOT_FILLED);
    assert_int_equal(st.action, SLOT_DO_CANCEL);
}

static void test_a_memory_breach_right_after_start_waits_the_backoff(void **state)
{
    struct slot_machine m = filled();
    struct slot_facts young = facts(RESTART_ALWAYS, 300, false);
    struct slot_step st = slot_machine_step(&m, SLOT_EV_MEMORY, &young);
    assert_int_equal(st.to, SLOT_FILLED); /* it serves on meanwhile */
    assert_int_equal(st.action, SLOT_DO_NOTHING);
    assert_int_equal(st.delay_ms, 100);
    st = slot_machine_step(&m, SLOT_EV_MEMORY, &young);
    assert_int_equal(st.delay_ms, 200);
    struct slot_facts old = facts(RESTART_ALWAYS, 9000, false);
    assert_int_equal(slot_machine_step(&m, SLOT_EV_MEMORY, &old).delay_ms, 0);
}

static void test_names(void **state)
{
    assert_string_equal(slot_state_to_string(SLOT_BACKOFF), "backoff");
    assert_string_equal(slot_state_to_string(SLOT__COUNT), "unknown");
    assert_string_equal(slot_event_to_string(SLOT_EV_MEMORY), "memory");
    assert_string_equal(slot_event_to_string(SLOT_EV__COUNT), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_fast_crash_is_replaced_at_once),
        cmocka_unit_test(test_young_crashes_back_off_doubling_up_to_the_cap),
        cmocka_unit_test(test_a_crash_after_min_uptime_restarts_at_once_and_forgets),
        cmocka_unit_test(test_restart_policies),
        cmocka_unit_test(test_a_failed_start_backs_off),
        cmocka_unit_test(test_halt_cancels_a_backoff_and_stale_events_do_nothing),
        cmocka_unit_test(test_a_replacement_takes_the_slot_from_any_state),
        cmocka_unit_test(test_start_again_in_backoff_starts_now),
        cmocka_unit_test(test_a_memory_breach_right_after_start_waits_the_backoff),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
