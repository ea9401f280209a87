/*
 * Unit tests of a replacement run's tables (reloadstate.h): a record's life, which moves make
 * the run fail, and where a failure takes the run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h> /* after the four above, which it needs */

#include "reloadstate.h"

static enum reload_rec_state step(enum reload_rec_state s, enum reload_rec_event ev,
                                  bool want_fails)
{
    bool fails = !want_fails;
    enum reload_rec_state to = reload_rec_next(s, ev, &fails);
    assert_int_equal(fails, want_fails);
    return to;
}

static void test_a_record_replaced(void **state)
{
    enum reload_rec_state s = RELOAD_REC_PENDING;
    s = step(s, RELOAD_REC_EV_BEGIN, false);
    assert_int_equal(s, RELOAD_REC_STARTING);
    s = step(s, RELOAD_REC_EV_NEW_READY, false);
    assert_int_equal(s, RELOAD_REC_REPLACED);
    /* its new worker crashing later is the app's business, not the run's */
    assert_int_equal(step(s, RELOAD_REC_EV_NEW_EXIT, false), RELOAD_REC_REPLACED);
    assert_string_equal(reload_rec_state_to_string(s), "replaced");
}

static void test_what_fails_a_run(void **state)
{
    assert_int_equal(step(RELOAD_REC_PENDING, RELOAD_REC_EV_BEGIN_FAILED, true),
                     RELOAD_REC_FAILED);
    assert_int_equal(step(RELOAD_REC_STARTING, RELOAD_REC_EV_NEW_EXIT, true), RELOAD_REC_FAILED);
    /* killed by the run itself (another record failed, or an abort): failed, not a cause */
    assert_int_equal(step(RELOAD_REC_STARTING, RELOAD_REC_EV_KILLED, false), RELOAD_REC_FAILED);
    assert_int_equal(step(RELOAD_REC_PENDING, RELOAD_REC_EV_SKIP, false), RELOAD_REC_SKIPPED);
}

static void test_events_that_mean_nothing(void **state)
{
    assert_int_equal(step(RELOAD_REC_PENDING, RELOAD_REC_EV_NEW_READY, false),
                     RELOAD_REC_PENDING);
    assert_int_equal(step(RELOAD_REC_SKIPPED, RELOAD_REC_EV_BEGIN, false), RELOAD_REC_SKIPPED);
    assert_int_equal(step(RELOAD_REC_FAILED, RELOAD_REC_EV_NEW_EXIT, false), RELOAD_REC_FAILED);
    assert_int_equal(step(RELOAD_REC_STARTING, RELOAD_REC_EV_BEGIN, false), RELOAD_REC_STARTING);
}

static void test_a_failed_reload_rolls_back_once(void **state)
{
    enum reload_run_state run = RELOAD_RUN_FORWARD;
    assert_string_equal(reload_run_outcome(run, false), "done");
    assert_int_equal(reload_run_fail(&run, true), RELOAD_RUN_DO_ROLL_BACK);
    assert_int_equal(run, RELOAD_RUN_ROLLING_BACK);
    /* the rollback fails too: it stops where it is, and says it rolled back */
    assert_int_equal(reload_run_fail(&run, true), RELOAD_RUN_DO_STOP);
    assert_int_equal(run, RELOAD_RUN_ROLLING_BACK);
    assert_string_equal(reload_run_outcome(run, true), "rolled_back");
}

static void test_a_failed_restart_stops(void **state)
{
    enum reload_run_state run = RELOAD_RUN_FORWARD;
    assert_int_equal(reload_run_fail(&run, false), RELOAD_RUN_DO_STOP);
    assert_int_equal(run, RELOAD_RUN_STOPPING);
    assert_string_equal(reload_run_outcome(run, true), "failed");
    assert_string_equal(reload_run_outcome(RELOAD_RUN_FORWARD, true), "failed");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_record_replaced),
        cmocka_unit_test(test_what_fails_a_run),
        cmocka_unit_test(test_events_that_mean_nothing),
        cmocka_unit_test(test_a_failed_reload_rolls_back_once),
        cmocka_unit_test(test_a_failed_restart_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
