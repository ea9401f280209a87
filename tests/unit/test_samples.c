/*
 * Unit tests of samples, the status page's ring: bounded, oldest first, rates derived between
 * neighbours and never negative.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include "samples.h"

static void test_rates_between_neighbours(void **state)
{
    struct samples s;
    samples_init(&s);
    samples_add(&s, &(struct sample){.ts = 100, .requests = 10, .restarts = 1, .rss_bytes = 5});
    samples_add(&s, &(struct sample){.ts = 105, .requests = 60, .restarts = 3, .rss_bytes = 7});
    samples_add(&s, &(struct sample){.ts = 110, .requests = 40, .restarts = 3, .rss_bytes = 6});
    json_t *doc = samples_to_json(&s);
    assert_non_null(doc);
    json_t *arr = json_object_get(doc, "samples");
    assert_int_equal(json_array_size(arr), 3);
    assert_int_equal(json_integer_value(json_object_get(doc, "interval_s")), SAMPLES_INTERVAL_S);
    json_t *first = json_array_get(arr, 0);
    assert_true(json_real_value(json_object_get(first, "requests_per_s")) == 0);
    json_t *second = json_array_get(arr, 1);
    assert_true(json_real_value(json_object_get(second, "requests_per_s")) == 10);
    assert_true(json_real_value(json_object_get(second, "restarts_delta")) == 2);
    /* a counter that went down (an app removed) is no negative traffic */
    json_t *third = json_array_get(arr, 2);
    assert_true(json_real_value(json_object_get(third, "requests_per_s")) == 0);
    assert_true(json_real_value(json_object_get(third, "rss_bytes")) == 6);
    json_decref(doc);
}

static void test_ring_keeps_the_newest(void **state)
{
    struct samples s;
    samples_init(&s);
    for (int i = 0; i < SAMPLES_MAX + 7; i++) {
        samples_add(&s, &(struct sample){.ts = i});
    }
    assert_int_equal(s.n, SAMPLES_MAX);
    assert_true(samples_get(&s, 0)->ts == 7);
    assert_true(samples_get(&s, SAMPLES_MAX - 1)->ts == SAMPLES_MAX + 6);
}

static void test_empty(void **state)
{
    struct samples s;
    samples_init(&s);
    json_t *doc = samples_to_json(&s);
    assert_non_null(doc);
    assert_int_equal(json_array_size(json_object_get(doc, "samples")), 0);
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rates_between_neighbours),
        cmocka_unit_test(test_ring_keeps_the_newest),
        cmocka_unit_test(test_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
