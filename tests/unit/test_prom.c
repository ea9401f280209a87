/*
 * Unit tests of prom, the exposition formats of SPEC section 6: number formatting as Go's
 * ParseFloat reads it back, the three escaping rules of the text format (label values, HELP,
 * none for names), histogram lines, and the JSON rendering, checked by parsing it with jansson.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <jansson.h>

#include "prom.h"

static void check_double(double v, const char *want)
{
    char buf[PROM_DOUBLE_MAX];
    size_t n = prom_format_double(v, buf);
    assert_string_equal(buf, want);
    assert_int_equal(n, strlen(want));
}

static void test_double(void **state)
{
    check_double(0, "0");
    check_double(-0.0, "0");
    check_double(1, "1");
    check_double(-3, "-3");
    check_double(12345678901234.0, "12345678901234");
    check_double(9007199254740993.0, "9007199254740992"); /* 2^53 + 1 is not a double */
    check_double(123456789012345678.0, "123456789012345680");
    check_double(1e18, "1e+18");
    check_double(0.5, "0.5");
    check_double(0.1, "0.1");
    check_double(1.0 / 3, "0.3333333333333333");
    check_double(2.5e-7, "2.5e-07");
    check_double(INFINITY, "+Inf");
    check_double(-INFINITY, "-Inf");
    check_double(NAN, "NaN");
    check_double(-1.5, "-1.5");

    /* Whatever is printed reads back as the same double. */
    double tricky[] = {0.1 + 0.2, 1e300, 5e-324, 123.456, -9.87654321e-12, 4.35, 1e17 + 8};
    for (size_t i = 0; i < sizeof tricky / sizeof tricky[0]; i++) {
        char buf[PROM_DOUBLE_MAX];
        prom_format_double(tricky[i], buf);
        assert_true(strtod(buf, NULL) == tricky[i]);
    }
}

static void test_names(void **state)
{
    assert_true(prom_metric_name_is_valid("http_requests_total"));
    assert_true(prom_metric_name_is_valid("a:b_c:d"));
    assert_true(prom_metric_name_is_valid("_x9"));
    assert_false(prom_metric_name_is_valid(""));
    assert_false(prom_metric_name_is_valid(NULL));
    assert_false(prom_metric_name_is_valid("9x"));
    assert_false(prom_metric_name_is_valid("a-b"));
    assert_false(prom_metric_name_is_valid("a b"));
    assert_false(prom_metric_name_is_valid("é"));

    assert_true(prom_label_name_is_valid("code"));
    assert_true(prom_label_name_is_valid("_x"));
    assert_false(prom_label_name_is_valid("__name__"));
    assert_false(prom_label_name_is_valid("a:b"));
    assert_false(prom_label_name_is_valid("1a"));
    assert_false(prom_label_name_is_valid(""));

    enum prom_type t;
    assert_int_equal(prom_type_from_string("histogram", &t), 0);
    assert_int_equal(t, PROM_HISTOGRAM);
    assert_int_equal(prom_type_from_string("summary", &t), -EINVAL);
    assert_int_equal(prom_type_from_string(NULL, &t), -EINVAL);
    assert_string_equal(prom_type_to_string(PROM_GAUGE), "gauge");
}

/* Formats and returns the text (caller frees). */
static char *text_of(const struct prom_family *f, size_t n)
{
    struct prom_buf b;
    char *out = NULL;
    size_t len = 0;
    prom_buf_init(&b);
    assert_int_equal(prom_format_text(&b, f, n), 0);
    assert_int_equal(prom_buf_take(&b, &out, &len), 0);
    assert_int_equal(strlen(out), len);
    return out;
}

static void test_text_counter_escaping(void **state)
{
    struct prom_label pre[] = {{"app", "web"}};
    struct prom_label labels[] = {{"path", "a\\b\"c\nd"}, {"code", "200"}};
    struct prom_sample s[] = {
        {.pre = pre, .n_pre = 1, .labels = labels, .n_labels = 2, .value = 12},
        {.value = 0.25},
    };
    struct prom_family f[] = {
        {.name = "reqs_total", .help = "Requests \\ served\nso far", .type = PROM_COUNTER,
         .samples = s, .n_samples = 2},
        {.name = "empty", .help = "left out", .type = PROM_GAUGE},
        {.name = "nohelp", .type = PROM_GAUGE, .samples = s + 1, .n_samples = 1},
    };
    char *out = text_of(f, 3);
    assert_string_equal(out, "# HELP reqs_total Requests \\\\ served\\nso far\n"
                             "# TYPE reqs_total counter\n"
                             "reqs_total{app=\"web\",path=\"a\\\\b\\\"c\\nd\",code=\"200\"} 12\n"
                             "reqs_total 0.25\n"
                             "# TYPE nohelp gauge\n"
                             "nohelp 0.25\n");
    free(out);
}

static void test_text_histogram(void **state)
{
    static const double buckets[] = {0.1, 1, 2.5};
    static const double counts[] = {1, 3, 3, 4};
    struct prom_label pre[] = {{"app", "api"}};
    struct prom_sample s = {.pre = pre, .n_pre = 1, .counts = counts, .sum = 7.5, .count = 4};
    struct prom_sample bare = {.counts = counts, .sum = INFINITY, .count = 4};
    struct prom_family f = {.name = "lat_seconds", .help = "Latency", .type = PROM_HISTOGRAM,
                            .buckets = buckets, .n_buckets = 3, .samples = &s, .n_samples = 1};
    char *out = text_of(&f, 1);
    assert_string_equal(out, "# HELP lat_seconds Latency\n"
                             "# TYPE lat_seconds histogram\n"
                             "lat_seconds_bucket{app=\"api\",le=\"0.1\"} 1\n"
                             "lat_seconds_bucket{app=\"api\",le=\"1\"} 3\n"
                             "lat_seconds_bucket{app=\"api\",le=\"2.5\"} 3\n"
                             "lat_seconds_bucket{app=\"api\",le=\"+Inf\"} 4\n"
                             "lat_seconds_sum{app=\"api\"} 7.5\n"
                             "lat_seconds_count{app=\"api\"} 4\n");
    free(out);
    f.samples = &bare;
    out = text_of(&f, 1);
    assert_non_null(strstr(out, "lat_seconds_bucket{le=\"0.1\"} 1\n"));
    assert_non_null(strstr(out, "lat_seconds_sum +Inf\n"));
    free(out);
}

static void test_json(void **state)
{
    static const double buckets[] = {1, 5};
    static const double counts[] = {2, 2, 3};
    struct prom_label pre[] = {{"app", "web"}, {"worker", "1"}};
    struct prom_label labels[] = {{"msg", "tab\there \"q\" \x01"}};
    struct prom_sample g[] = {
        {.pre = pre, .n_pre = 2, .labels = labels, .n_labels = 1, .value = -INFINITY},
        {.pre = pre, .n_pre = 1, .value = 1.5},
    };
    struct prom_sample h = {.pre = pre, .n_pre = 1, .counts = counts, .sum = 9, .count = 3};
    struct prom_family f[] = {
        {.name = "g", .help = "a \"gauge\"", .type = PROM_GAUGE, .samples = g, .n_samples = 2},
        {.name = "none", .type = PROM_COUNTER},
        {.name = "h", .type = PROM_HISTOGRAM, .buckets = buckets, .n_buckets = 2, .samples = &h,
         .n_samples = 1},
    };
    struct prom_buf b;
    char *out = NULL;
    size_t len;
    prom_buf_init(&b);
    assert_int_equal(prom_format_json(&b, f, 3), 0);
    assert_int_equal(prom_buf_take(&b, &out, &len), 0);

    json_error_t err;
    json_t *doc = json_loads(out, 0, &err);
    assert_non_null(doc);
    json_t *fams = json_object_get(doc, "families");
    assert_int_equal(json_array_size(fams), 2);
    json_t *jg = json_array_get(fams, 0);
    assert_string_equal(json_string_value(json_object_get(jg, "name")), "g");
    assert_string_equal(json_string_value(json_object_get(jg, "type")), "gauge");
    assert_string_equal(json_string_value(json_object_get(jg, "help")), "a \"gauge\"");
    json_t *s0 = json_array_get(json_object_get(jg, "samples"), 0);
    json_t *l0 = json_object_get(s0, "labels");
    assert_string_equal(json_string_value(json_object_get(l0, "app")), "web");
    assert_string_equal(json_string_value(json_object_get(l0, "worker")), "1");
    assert_string_equal(json_string_value(json_object_get(l0, "msg")), "tab\there \"q\" \x01");
    assert_string_equal(json_string_value(json_object_get(s0, "value")), "-Inf");
    json_t *s1 = json_array_get(json_object_get(jg, "samples"), 1);
    assert_true(json_number_value(json_object_get(s1, "value")) == 1.5);
    assert_int_equal(json_object_size(json_object_get(s1, "labels")), 1);

    json_t *jh = json_array_get(fams, 1);
    assert_string_equal(json_string_value(json_object_get(jh, "type")), "histogram");
    assert_int_equal(json_array_size(json_object_get(jh, "buckets")), 2);
    json_t *hs = json_array_get(json_object_get(jh, "samples"), 0);
    assert_int_equal(json_array_size(json_object_get(hs, "counts")), 3);
    assert_true(json_number_value(json_array_get(json_object_get(hs, "counts"), 2)) == 3);
    assert_true(json_number_value(json_object_get(hs, "sum")) == 9);
    assert_true(json_number_value(json_object_get(hs, "count")) == 3);
    json_decref(doc);
    free(out);

    /* Nothing at all is still a valid document. */
    prom_buf_init(&b);
    assert_int_equal(prom_format_json(&b, NULL, 0), 0);
    assert_int_equal(prom_buf_take(&b, &out, &len), 0);
    doc = json_loads(out, 0, &err);
    assert_non_null(doc);
    assert_int_equal(json_array_size(json_object_get(doc, "families")), 0);
    json_decref(doc);
    free(out);
}

static void test_buf_empty(void **state)
{
    struct prom_buf b;
    char *out = NULL;
    size_t len = 99;
    prom_buf_init(&b);
    assert_int_equal(prom_format_text(&b, NULL, 0), 0);
    assert_int_equal(prom_buf_take(&b, &out, &len), 0);
    assert_string_equal(out, "");
    assert_int_equal(len, 0);
    free(out);
    prom_buf_done(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_double),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_text_counter_escaping),
        cmocka_unit_test(test_text_histogram),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_buf_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
