/*
 * Unit tests of the app's tables (appstate.h): where each event takes each state, and what each
 * command gets in each state, busy or not. The defect of issue 13 (a scale during a restart left
 * a worker with no slot) is the cell [running][busy][scale].
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include "appstate.h"

static enum app_state after(enum app_state s, enum app_event ev)
{
    return app_state_next(s, ev, NULL);
}

static void test_a_life(void **state)
{
    enum app_state s = APP_STOPPED;
    s = after(s, APP_EV_START);
    assert_int_equal(s, APP_RUNNING);
    s = after(s, APP_EV_RELOAD_BEGIN);
    assert_int_equal(s, APP_RELOADING);
    s = after(s, APP_EV_RELOAD_END);
    assert_int_equal(s, APP_RUNNING);
    s = after(s, APP_EV_LOOPING);
    assert_int_equal(s, APP_ERRORED);
    s = after(s, APP_EV_SERVING);
    assert_int_equal(s, APP_RUNNING);
    s = after(s, APP_EV_HALT);
    assert_int_equal(s, APP_STOPPING);
    s = after(s, APP_EV_GONE);
    assert_int_equal(s, APP_STOPPED);
}

static void test_events_that_mean_nothing_leave_the_state(void **state)
{
    const struct {
        enum app_state s;
        enum app_event ev;
    } stay[] = {
        {APP_STOPPED, APP_EV_HALT},       {APP_STOPPED, APP_EV_GONE},
        {APP_STOPPED, APP_EV_LOOPING},    {APP_RUNNING, APP_EV_START},
        {APP_RUNNING, APP_EV_SERVING},    {APP_RUNNING, APP_EV_RELOAD_END},
        {APP_RELOADING, APP_EV_LOOPING},  {APP_RELOADING, APP_EV_RELOAD_BEGIN},
        {APP_STOPPING, APP_EV_START},     {APP_STOPPING, APP_EV_LOOPING},
        {APP_STOPPING, APP_EV_HALT},      {APP_ERRORED, APP_EV_LOOPING},
    };
    for (size_t i = 0; i < sizeof stay / sizeof stay[0]; i++) {
        bool moved = true;
        assert_int_equal(app_state_next(stay[i].s, stay[i].ev, &moved), stay[i].s);
        assert_false(moved);
    }
}

static void test_errored_is_mended_by_start_reload_or_a_serving_worker(void **state)
{
    assert_int_equal(after(APP_ERRORED, APP_EV_START), APP_RUNNING);
    assert_int_equal(after(APP_ERRORED, APP_EV_RELOAD_BEGIN), APP_RELOADING);
    assert_int_equal(after(APP_ERRORED, APP_EV_SERVING), APP_RUNNING);
    assert_int_equal(after(APP_ERRORED, APP_EV_HALT), APP_STOPPING);
}

static void test_a_busy_app_refuses_what_would_move_its_slots(void **state)
{
    /* issue 13, item 3: scale (and restart, reload) during a restart or memory replacement */
    assert_int_equal(app_state_accepts(APP_RUNNING, true, APP_CMD_SCALE), APP_REFUSE_BUSY);
    assert_int_equal(app_state_accepts(APP_RUNNING, true, APP_CMD_RESTART), APP_REFUSE_BUSY);
    assert_int_equal(app_state_accepts(APP_RUNNING, true, APP_CMD_RELOAD), APP_REFUSE_BUSY);
    assert_int_equal(app_state_accepts(APP_RELOADING, true, APP_CMD_SCALE), APP_REFUSE_BUSY);
    assert_int_equal(app_state_accepts(APP_ERRORED, true, APP_CMD_SCALE), APP_REFUSE_BUSY);
    /* starting a running app is nothing to do, busy or not */
    assert_int_equal(app_state_accepts(APP_RUNNING, true, APP_CMD_START), APP_ALREADY);
    assert_int_equal(app_state_accepts(APP_RUNNING, false, APP_CMD_START), APP_ALREADY);
}

static void test_what_each_state_takes(void **state)
{
    assert_int_equal(app_state_accepts(APP_RUNNING, false, APP_CMD_SCALE), APP_TAKE);
    assert_int_equal(app_state_accepts(APP_RUNNING, false, APP_CMD_RESTART), APP_TAKE);
    assert_int_equal(app_state_accepts(APP_ERRORED, false, APP_CMD_RESTART), APP_TAKE);
    assert_int_equal(app_state_accepts(APP_ERRORED, false, APP_CMD_START), APP_TAKE);
    assert_int_equal(app_state_accepts(APP_STOPPED, false, APP_CMD_SCALE), APP_KEEP);
    assert_int_equal(app_state_accepts(APP_STOPPED, false, APP_CMD_RELOAD), APP_KEEP);
    assert_int_equal(app_state_accepts(APP_STOPPED, false, APP_CMD_RESTART), APP_REFUSE_STOPPED);
    assert_int_equal(app_state_accepts(APP_STOPPED, false, APP_CMD_START), APP_TAKE);
    for (int cmd = 0; cmd < APP_CMD__COUNT; cmd++) {
        enum app_verdict want = cmd == APP_CMD_RELOAD ? APP_KEEP : APP_REFUSE_STOPPING;
        assert_int_equal(app_state_accepts(APP_STOPPING, false, cmd), want);
        assert_int_equal(app_state_accepts(APP_STOPPING, true, cmd), want);
    }
    assert_int_equal(app_state_accepts(APP__COUNT, false, APP_CMD_SCALE), APP_REFUSE_STOPPED);
}

static void test_names(void **state)
{
    assert_string_equal(app_state_to_string(APP_ERRORED), "errored");
    assert_string_equal(app_state_to_string(APP__COUNT), "unknown");
    assert_string_equal(app_event_to_string(APP_EV_RELOAD_BEGIN), "reload_begin");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_life),
        cmocka_unit_test(test_events_that_mean_nothing_leave_the_state),
        cmocka_unit_test(test_errored_is_mended_by_start_reload_or_a_serving_worker),
        cmocka_unit_test(test_a_busy_app_refuses_what_would_move_its_slots),
        cmocka_unit_test(test_what_each_state_takes),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
