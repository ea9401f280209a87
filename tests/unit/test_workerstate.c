/*
 * Unit tests of the worker's table (workerstate.h): the ready modes in the starting row, the
 * master's asking it to go, and exits from every state. Time is a number passed in.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include "workerstate.h"

static struct worker_facts facts(enum ready_mode ready, bool spoke, double uptime_s)
{
    return (struct worker_facts){.ready = ready, .spoke = spoke, .uptime_s = uptime_s,
                                 .ready_delay_s = 1, .ready_timeout_s = 10,
                                 .kill_timeout_s = 30};
}

static void expect(struct worker_step st, enum worker_state to, enum worker_action action)
{
    assert_int_equal(st.to, to);
    assert_int_equal(st.action, action);
}

static void test_first_wait_by_ready_mode(void **state)
{
    struct worker_facts f = facts(READY_NOTIFY, false, 0);
    assert_true(worker_state_first_wait(&f) == 10);
    f.ready = READY_DELAY;
    assert_true(worker_state_first_wait(&f) == 1);
    f.ready = READY_AUTO;
    assert_true(worker_state_first_wait(&f) == 1);
    f.ready = READY_NONE;
    assert_true(worker_state_first_wait(&f) < 0);
}

static void test_notify_waits_for_the_word_until_ready_timeout(void **state)
{
    struct worker_facts f = facts(READY_NOTIFY, false, 0.1);
    expect(worker_state_step(WORKER_STARTING, WORKER_EV_EXEC, &f), WORKER_STARTING,
           WORKER_DO_NOTHING);
    expect(worker_state_step(WORKER_STARTING, WORKER_EV_WORD, &f), WORKER_READY,
           WORKER_DO_READY);
    f.uptime_s = 10;
    expect(worker_state_step(WORKER_STARTING, WORKER_EV_TIMER, &f), WORKER_STARTING,
           WORKER_DO_KILL);
}

static void test_delay_and_none_ignore_the_word(void **state)
{
    struct worker_facts f = facts(READY_DELAY, true, 0.5);
    expect(worker_state_step(WORKER_STARTING, WORKER_EV_WORD, &f), WORKER_STARTING,
           WORKER_DO_NOTHING);
    expect(worker_state_step(WORKER_STARTING, WORKER_EV_TIMER, &f), WORKER_READY,
           WORKER_DO_READY);
    f.ready = READY_NONE;
    expect(worker_state_step(WORKER_STARTING, WORKER_EV_WORD, &f), WORKER_STARTING,
           WORKER_DO_NOTHING);
    expect(worker_state_step(WORKER_STARTING, WORKER_EV_EXEC, &f), WORKER_READY,
           WORKER_DO_READY);
}

static void test_auto_takes_a_silent_worker_after_the_delay(void **state)
{
    /* issue 13, item 9: an app that never speaks serves */
    struct worker_facts f = facts(READY_AUTO, false, 1);
    struct worker_step st = worker_state_step(WORKER_STARTING, WORKER_EV_TIMER, &f);
    expect(st, WORKER_READY, WORKER_DO_READY);
    assert_string_equal(st.why, "ready_delay (it said nothing)");
}

static void test_auto_holds_a_speaking_worker_to_ready_timeout(void **state)
{
    struct worker_facts f = facts(READY_AUTO, true, 1);
    struct worker_step st = worker_state_step(WORKER_STARTING, WORKER_EV_TIMER, &f);
    expect(st, WORKER_STARTING, WORKER_DO_WAIT);
    assert_true(st.delay_s > 8.99 && st.delay_s < 9.01);
    expect(worker_state_step(WORKER_STARTING, WORKER_EV_WORD, &f), WORKER_READY,
           WORKER_DO_READY);
    f.uptime_s = 10;
    expect(worker_state_step(WORKER_STARTING, WORKER_EV_TIMER, &f), WORKER_STARTING,
           WORKER_DO_KILL);
}

static void test_asked_to_go(void **state)
{
    struct worker_facts f = facts(READY_NOTIFY, true, 3);
    /* a starting worker asked to go stops waiting for its word */
    expect(worker_state_step(WORKER_STARTING, WORKER_EV_DRAIN, &f), WORKER_DRAINING,
           WORKER_DO_CANCEL);
    expect(worker_state_step(WORKER_READY, WORKER_EV_DRAIN, &f), WORKER_DRAINING,
           WORKER_DO_NOTHING);
    expect(worker_state_step(WORKER_DRAINING, WORKER_EV_STOP, &f), WORKER_STOPPING,
           WORKER_DO_NOTHING);
    expect(worker_state_step(WORKER_READY, WORKER_EV_KILL, &f), WORKER_STOPPING,
           WORKER_DO_NOTHING);
    expect(worker_state_step(WORKER_STARTING, WORKER_EV_KILL, &f), WORKER_STOPPING,
           WORKER_DO_CANCEL);
    /* once leaving, the word and the timer mean nothing */
    expect(worker_state_step(WORKER_DRAINING, WORKER_EV_WORD, &f), WORKER_DRAINING,
           WORKER_DO_NOTHING);
    expect(worker_state_step(WORKER_DRAINING, WORKER_EV_TIMER, &f), WORKER_DRAINING,
           WORKER_DO_NOTHING);
    expect(worker_state_step(WORKER_STOPPING, WORKER_EV_DRAIN, &f), WORKER_STOPPING,
           WORKER_DO_NOTHING);
    assert_true(worker_state_is_leaving(WORKER_DRAINING));
    assert_true(worker_state_is_leaving(WORKER_STOPPING));
    assert_false(worker_state_is_leaving(WORKER_READY));
    assert_false(worker_state_is_leaving(WORKER_STARTING));
}

/* SPEC section 10: a ready worker that falls silent is hung; it is aborted when its owner says
 * (its replacement is ready) or after ready_timeout; kill_timeout after the SIGABRT, SIGKILL. */
static void test_silent_ready_worker_is_hung_then_aborted_then_killed(void **state)
{
    struct worker_facts f = facts(READY_NOTIFY, true, 60);
    struct worker_step st = worker_state_step(WORKER_READY, WORKER_EV_SILENT, &f);
    expect(st, WORKER_HUNG, WORKER_DO_HANG);
    assert_true(st.delay_s == 10); /* the abort deadline: ready_timeout */
    assert_false(worker_state_is_leaving(WORKER_HUNG)); /* its exit on its own is a crash */

    st = worker_state_step(WORKER_HUNG, WORKER_EV_ABORT, &f);
    expect(st, WORKER_STOPPING, WORKER_DO_ABORT);
    assert_true(st.delay_s == 30); /* the kill deadline: kill_timeout */
    st = worker_state_step(WORKER_HUNG, WORKER_EV_TIMER, &f);
    expect(st, WORKER_STOPPING, WORKER_DO_ABORT);
    assert_true(st.delay_s == 30);
    /* an aborted worker's timer is its kill deadline */
    expect(worker_state_step(WORKER_STOPPING, WORKER_EV_TIMER, &f), WORKER_STOPPING,
           WORKER_DO_FORCE);
    expect(worker_state_step(WORKER_STOPPING, WORKER_EV_ABORT, &f), WORKER_STOPPING,
           WORKER_DO_NOTHING);

    /* once hung, always hung: neither the word nor more silence changes it */
    expect(worker_state_step(WORKER_HUNG, WORKER_EV_WORD, &f), WORKER_HUNG, WORKER_DO_NOTHING);
    expect(worker_state_step(WORKER_HUNG, WORKER_EV_SILENT, &f), WORKER_HUNG,
           WORKER_DO_NOTHING);
    /* a hung worker asked to go by a shutdown leaves through the phases, its timer cancelled */
    expect(worker_state_step(WORKER_HUNG, WORKER_EV_DRAIN, &f), WORKER_DRAINING,
           WORKER_DO_CANCEL);
    expect(worker_state_step(WORKER_HUNG, WORKER_EV_KILL, &f), WORKER_STOPPING,
           WORKER_DO_CANCEL);
    assert_string_equal(worker_state_to_string(WORKER_HUNG), "hung");
}

/* A worker slow to boot is governed by ready_timeout, not by the watchdog; one leaving is not
 * hung either (it may be busy draining). */
static void test_silence_means_nothing_outside_ready(void **state)
{
    struct worker_facts f = facts(READY_NOTIFY, false, 0.5);
    expect(worker_state_step(WORKER_STARTING, WORKER_EV_SILENT, &f), WORKER_STARTING,
           WORKER_DO_NOTHING);
    expect(worker_state_step(WORKER_DRAINING, WORKER_EV_SILENT, &f), WORKER_DRAINING,
           WORKER_DO_NOTHING);
    expect(worker_state_step(WORKER_STOPPING, WORKER_EV_SILENT, &f), WORKER_STOPPING,
           WORKER_DO_NOTHING);
    expect(worker_state_step(WORKER_READY, WORKER_EV_ABORT, &f), WORKER_READY,
           WORKER_DO_NOTHING);
    expect(worker_state_step(WORKER_STARTING, WORKER_EV_ABORT, &f), WORKER_STARTING,
           WORKER_DO_NOTHING);
}

static void test_exit_from_every_state(void **state)
{
    struct worker_facts f = facts(READY_NOTIFY, false, 1);
    for (int s = WORKER_STARTING; s < WORKER_EXITED; s++) {
        struct worker_step st = worker_state_step((enum worker_state)s, WORKER_EV_EXIT, &f);
        assert_int_equal(st.from, s);
        expect(st, WORKER_EXITED, WORKER_DO_CANCEL);
    }
    for (int ev = 0; ev < WORKER_EV__COUNT; ev++) {
        expect(worker_state_step(WORKER_EXITED, (enum worker_event)ev, &f), WORKER_EXITED,
               WORKER_DO_NOTHING);
    }
    assert_string_equal(worker_state_to_string(WORKER_DRAINING), "draining");
    assert_string_equal(worker_state_to_string(WORKER__COUNT), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_wait_by_ready_mode),
        cmocka_unit_test(test_notify_waits_for_the_word_until_ready_timeout),
        cmocka_unit_test(test_delay_and_none_ignore_the_word),
        cmocka_unit_test(test_auto_takes_a_silent_worker_after_the_delay),
        cmocka_unit_test(test_auto_holds_a_speaking_worker_to_ready_timeout),
        cmocka_unit_test(test_asked_to_go),
        cmocka_unit_test(test_silent_ready_worker_is_hung_then_aborted_then_killed),
        cmocka_unit_test(test_silence_means_nothing_outside_ready),
        cmocka_unit_test(test_exit_from_every_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
