/*
 * Unit tests of metrics, the merge of SPEC section 6: counters and histograms summed over live
 * workers plus the retired totals of exited ones (monotonic through crashes, restarts and
 * scale-down), gauges by their agg mode over live workers, the per-worker view, conflicts kept
 * apart, malformed snapshots refused whole, and the bounds. Each check reads the page the way a
 * scraper does: built, formatted as text, and a series looked up by its exact line.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <jansson.h>

#include "metrics.h"
#include "page.h"
#include "prom.h"

/* The page of the n apps as text (caller frees). */
static char *page_text(struct metrics_app **apps, size_t n)
{
    struct page page;
    struct prom_buf b;
    char *out = NULL;
    size_t len;
    assert_int_equal(page_build(apps, n, &page), 0);
    prom_buf_init(&b);
    assert_int_equal(prom_format_text(&b, page.families, page.n_families), 0);
    assert_int_equal(prom_buf_take(&b, &out, &len), 0);
    page_done(&page);
    return out;
}

/* The value of the series spelled exactly as on the page ("name{labels}"), NAN if absent. */
static double value_in(struct metrics_app **apps, size_t n, const char *series)
{
    char *text = page_text(apps, n);
    size_t len = strlen(text);
    char *lines = malloc(len + 2); /* a newline first: every line starts after one */
    char needle[1024];
    assert_non_null(lines);
    lines[0] = '\n';
    memcpy(lines + 1, text, len + 1);
    snprintf(needle, sizeof needle, "\n%s ", series);
    const char *at = strstr(lines, needle);
    double v = at ? strtod(at + strlen(needle), NULL) : NAN;
    free(lines);
    free(text);
    return v;
}

static double value_of(struct metrics_app *ma, const char *series)
{
    return value_in(&ma, 1, series);
}

static int update(struct metrics_app *ma, uint64_t key, int slot, const char *json)
{
    json_error_t err;
    json_t *families = json_loads(json, 0, &err);
    if (!families) {
        fail_msg("bad test JSON: %s: %s", err.text, json);
    }
    const char *why = NULL;
    int r = metrics_app_update(ma, key, slot, families, 1000.0 + (double)key, &why);
    if (r < 0) {
        assert_non_null(why);
    }
    json_decref(families);
    return r;
}

static int update_fmt(struct metrics_app *ma, uint64_t key, int slot, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int update_fmt(struct metrics_app *ma, uint64_t key, int slot, const char *fmt, ...)
{
    char json[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(json, sizeof json, fmt, ap);
    va_end(ap);
    return update(ma, key, slot, json);
}

static int counter(struct metrics_app *ma, uint64_t key, int slot, double ok, double err)
{
    return update_fmt(ma, key, slot,
                      "[{\"name\":\"reqs_total\",\"type\":\"counter\",\"help\":\"Requests\","
                      "\"samples\":[{\"labels\":{\"code\":\"200\"},\"value\":%.17g},"
                      "{\"labels\":{\"code\":\"500\"},\"value\":%.17g}]}]",
                      ok, err);
}

static struct metrics_app *app_new(const char *name)
{
    struct metrics_app *ma = NULL;
    assert_int_equal(metrics_app_new(name, &ma), 0);
    return ma;
}

static void test_counter_sum_and_retire(void **state)
{
    struct metrics_app *ma = app_new("web");
    assert_int_equal(counter(ma, 1, 0, 10, 1), 0);
    assert_int_equal(counter(ma, 2, 1, 20, 2), 0);
    assert_int_equal(counter(ma, 3, 2, 30, 3), 0);
    assert_true(value_of(ma, "reqs_total{app=\"web\",code=\"200\"}") == 60);
    assert_true(value_of(ma, "reqs_total{app=\"web\",code=\"500\"}") == 6);

    /* A newer snapshot of the same worker replaces its older one. */
    assert_int_equal(counter(ma, 2, 1, 25, 2), 0);
    assert_true(value_of(ma, "reqs_total{app=\"web\",code=\"200\"}") == 65);

    /* The worker in slot 1 dies: what it had counted stays. Its successor (a new key in the
     * same slot) counts from zero, and the sum only grows. */
    metrics_app_retire(ma, 2);
    assert_true(value_of(ma, "reqs_total{app=\"web\",code=\"200\"}") == 65);
    /* The status page's sum reads the same merge from the store: live plus retired. */
    assert_true(metrics_app_counter_sum(ma, "reqs_total") == 65 + 6);
    assert_true(metrics_app_counter_sum(ma, "_requests_total") == 0);
    assert_int_equal(counter(ma, 4, 1, 0, 0), 0);
    assert_true(value_of(ma, "reqs_total{app=\"web\",code=\"200\"}") == 65);
    assert_int_equal(counter(ma, 4, 1, 5, 0), 0);
    assert_true(value_of(ma, "reqs_total{app=\"web\",code=\"200\"}") == 70);

    /* Scale down to nothing: every count remains. Unknown keys are ignored. */
    metrics_app_retire(ma, 1);
    metrics_app_retire(ma, 3);
    metrics_app_retire(ma, 4);
    metrics_app_retire(ma, 99);
    assert_true(value_of(ma, "reqs_total{app=\"web\",code=\"200\"}") == 70);
    assert_true(value_of(ma, "reqs_total{app=\"web\",code=\"500\"}") == 6);

    struct metrics_stats st;
    metrics_app_stats(ma, &st);
    assert_int_equal(st.workers, 0);
    assert_int_equal(st.series, 2);
    assert_int_equal(st.accepted, 6);
    metrics_app_free(ma);
}

static void test_text_page(void **state)
{
    struct metrics_app *ma = app_new("web");
    assert_int_equal(counter(ma, 1, 0, 3, 0), 0);
    char *text = page_text(&ma, 1);
    assert_string_equal(text, "# HELP reqs_total Requests\n"
                              "# TYPE reqs_total counter\n"
                              "reqs_total{app=\"web\",code=\"200\"} 3\n"
                              "reqs_total{app=\"web\",code=\"500\"} 0\n");
    free(text);
    metrics_app_free(ma);
}

static int gauge(struct metrics_app *ma, uint64_t key, int slot, const char *agg, double v)
{
    return update_fmt(ma, key, slot,
                      "[{\"name\":\"g_%s\",\"type\":\"gauge\",\"help\":\"G\",\"agg\":\"%s\","
                      "\"samples\":[{\"value\":%.17g}]}]",
                      agg, agg, v);
}

static void test_gauge_modes(void **state)
{
    static const char *const aggs[] = {"sum", "max", "min", "avg", "worker"};
    struct metrics_app *apps[5];
    for (size_t i = 0; i < 5; i++) {
        apps[i] = app_new(aggs[i]);
        assert_int_equal(gauge(apps[i], 1, 0, aggs[i], 4), 0);
        assert_int_equal(gauge(apps[i], 2, 1, aggs[i], -2), 0);
        assert_int_equal(gauge(apps[i], 3, 2, aggs[i], 10), 0);
    }
    assert_true(value_of(apps[0], "g_sum{app=\"sum\"}") == 12);
    assert_true(value_of(apps[1], "g_max{app=\"max\"}") == 10);
    assert_true(value_of(apps[2], "g_min{app=\"min\"}") == -2);
    assert_true(value_of(apps[3], "g_avg{app=\"avg\"}") == 4);
    assert_true(value_of(apps[4], "g_worker{app=\"worker\",worker=\"0\"}") == 4);
    assert_true(value_of(apps[4], "g_worker{app=\"worker\",worker=\"1\"}") == -2);
    assert_true(value_of(apps[4], "g_worker{app=\"worker\",worker=\"2\"}") == 10);
    assert_true(isnan(value_of(apps[4], "g_worker{app=\"worker\"}")));

    /* Gauges are over live workers only. */
    for (size_t i = 0; i < 5; i++) {
        metrics_app_retire(apps[i], 3);
    }
    assert_true(value_of(apps[0], "g_sum{app=\"sum\"}") == 2);
    assert_true(value_of(apps[1], "g_max{app=\"max\"}") == 4);
    assert_true(value_of(apps[3], "g_avg{app=\"avg\"}") == 1);
    assert_true(isnan(value_of(apps[4], "g_worker{app=\"worker\",worker=\"2\"}")));

    /* Two workers in one slot (a replacement in progress): the newest speaks for it. */
    assert_int_equal(gauge(apps[4], 7, 0, "worker", 70), 0);
    assert_true(value_of(apps[4], "g_worker{app=\"worker\",worker=\"0\"}") == 70);
    assert_int_equal(gauge(apps[4], 1, 0, "worker", 5), 0);
    assert_true(value_of(apps[4], "g_worker{app=\"worker\",worker=\"0\"}") == 70);
    metrics_app_retire(apps[4], 7);
    assert_true(value_of(apps[4], "g_worker{app=\"worker\",worker=\"0\"}") == 5);

    /* Everything gone: the family leaves the page. */
    metrics_app_retire(apps[0], 1);
    metrics_app_retire(apps[0], 2);
    char *text = page_text(&apps[0], 1);
    assert_string_equal(text, "");
    free(text);
    for (size_t i = 0; i < 5; i++) {
        metrics_app_free(apps[i]);
    }
}

static int histogram(struct metrics_app *ma, uint64_t key, int slot, int a, int b, int c,
                     double sum)
{
    return update_fmt(ma, key, slot,
                      "[{\"name\":\"lat_seconds\",\"type\":\"histogram\",\"help\":\"L\","
                      "\"buckets\":[0.1,1],\"samples\":[{\"labels\":{\"op\":\"get\"},"
                      "\"counts\":[%d,%d,%d],\"sum\":%.17g,\"count\":%d}]}]",
                      a, b, c, sum, c);
}

static void test_histogram(void **state)
{
    struct metrics_app *ma = app_new("api");
    assert_int_equal(histogram(ma, 1, 0, 1, 2, 3, 1.5), 0);
    assert_int_equal(histogram(ma, 2, 1, 0, 4, 4, 2.0), 0);
    assert_true(value_of(ma, "lat_seconds_bucket{app=\"api\",op=\"get\",le=\"0.1\"}") == 1);
    assert_true(value_of(ma, "lat_seconds_bucket{app=\"api\",op=\"get\",le=\"1\"}") == 6);
    assert_true(value_of(ma, "lat_seconds_bucket{app=\"api\",op=\"get\",le=\"+Inf\"}") == 7);
    assert_true(value_of(ma, "lat_seconds_sum{app=\"api\",op=\"get\"}") == 3.5);
    assert_true(value_of(ma, "lat_seconds_count{app=\"api\",op=\"get\"}") == 7);
    metrics_app_retire(ma, 1);
    assert_int_equal(histogram(ma, 3, 0, 1, 1, 1, 0.05), 0);
    assert_true(value_of(ma, "lat_seconds_bucket{app=\"api\",op=\"get\",le=\"0.1\"}") == 2);
    assert_true(value_of(ma, "lat_seconds_count{app=\"api\",op=\"get\"}") == 8);
    /* A page built twice gives the same numbers (the retired totals are not added twice). */
    assert_true(value_of(ma, "lat_seconds_count{app=\"api\",op=\"get\"}") == 8);

    struct metrics_stats st;
    metrics_app_stats(ma, &st);
    assert_int_equal(st.series, 2 + 3); /* two buckets, +Inf, _sum, _count */
    metrics_app_free(ma);
}

static void test_per_worker(void **state)
{
    struct metrics_app *ma = app_new("web");
    metrics_app_set_per_worker(ma, true);
    assert_int_equal(counter(ma, 1, 0, 10, 0), 0);
    assert_int_equal(counter(ma, 2, 1, 20, 0), 0);
    assert_int_equal(histogram(ma, 1, 0, 1, 1, 1, 1), 0); /* replaces key 1's snapshot */
    assert_int_equal(counter(ma, 1, 0, 11, 0), 0);
    assert_true(value_of(ma, "reqs_total{app=\"web\",code=\"200\"}") == 31);
    assert_true(value_of(ma, "reqs_total{app=\"web\",worker=\"0\",code=\"200\"}") == 11);
    assert_true(value_of(ma, "reqs_total{app=\"web\",worker=\"1\",code=\"200\"}") == 20);
    /* Exited workers are in the total, not in the per-worker view. */
    metrics_app_retire(ma, 2);
    assert_true(value_of(ma, "reqs_total{app=\"web\",code=\"200\"}") == 31);
    assert_true(isnan(value_of(ma, "reqs_total{app=\"web\",worker=\"1\",code=\"200\"}")));
    metrics_app_set_per_worker(ma, false);
    assert_true(isnan(value_of(ma, "reqs_total{app=\"web\",worker=\"0\",code=\"200\"}")));

    /* Histograms too. */
    metrics_app_set_per_worker(ma, true);
    assert_int_equal(histogram(ma, 5, 3, 2, 2, 2, 1), 0);
    assert_true(value_of(ma, "lat_seconds_count{app=\"web\",worker=\"3\",op=\"get\"}") == 2);
    metrics_app_free(ma);
}

static void test_conflicts(void **state)
{
    struct metrics_app *ma = app_new("web");
    struct metrics_stats st;
    assert_int_equal(counter(ma, 1, 0, 10, 0), 0);
    /* Worker 2 says reqs_total is a gauge: that family is kept apart, the rest counts. */
    assert_int_equal(update(ma, 2, 1,
                            "[{\"name\":\"reqs_total\",\"type\":\"gauge\",\"samples\":"
                            "[{\"labels\":{\"code\":\"200\"},\"value\":1000}]},"
                            "{\"name\":\"up\",\"type\":\"gauge\",\"samples\":[{\"value\":1}]}]"),
                     0);
    assert_true(value_of(ma, "reqs_total{app=\"web\",code=\"200\"}") == 10);
    assert_true(value_of(ma, "up{app=\"web\"}") == 1);
    metrics_app_stats(ma, &st);
    assert_int_equal(st.conflicts, 1);

    /* Other buckets, another gauge agg: conflicts too. */
    assert_int_equal(histogram(ma, 3, 2, 1, 1, 1, 1), 0);
    assert_int_equal(update(ma, 4, 3,
                            "[{\"name\":\"lat_seconds\",\"type\":\"histogram\",\"buckets\":[1,2],"
                            "\"samples\":[{\"counts\":[1,1,1],\"sum\":1,\"count\":1}]},"
                            "{\"name\":\"up\",\"type\":\"gauge\",\"agg\":\"max\","
                            "\"samples\":[{\"value\":5}]}]"),
                     0);
    metrics_app_stats(ma, &st);
    assert_int_equal(st.conflicts, 3);
    assert_true(value_of(ma, "lat_seconds_count{app=\"web\",op=\"get\"}") == 1);
    assert_true(value_of(ma, "up{app=\"web\"}") == 1);

    /* The conflicting workers leave: the count follows. */
    metrics_app_retire(ma, 2);
    metrics_app_retire(ma, 4);
    metrics_app_stats(ma, &st);
    assert_int_equal(st.conflicts, 0);

    /* A definition nobody uses any more is forgotten: "up" may come back as a counter. */
    assert_int_equal(update(ma, 5, 1, "[{\"name\":\"up_total\",\"type\":\"counter\","
                                      "\"samples\":[{\"value\":1}]}]"),
                     0);
    assert_int_equal(update(ma, 6, 1, "[{\"name\":\"up\",\"type\":\"counter\","
                                      "\"samples\":[{\"value\":7}]}]"),
                     0);
    assert_true(value_of(ma, "up{app=\"web\"}") == 7);
    /* But a retired counter keeps its definition. */
    metrics_app_retire(ma, 1);
    assert_int_equal(update(ma, 7, 1, "[{\"name\":\"reqs_total\",\"type\":\"gauge\","
                                      "\"samples\":[{\"value\":1}]}]"),
                     0);
    metrics_app_stats(ma, &st);
    assert_int_equal(st.conflicts, 1);
    assert_true(value_of(ma, "reqs_total{app=\"web\",code=\"200\"}") == 10);
    metrics_app_free(ma);
}

static void test_malformed(void **state)
{
    static const char *const bad[] = {
        "{}",
        "[1]",
        "[{\"type\":\"counter\",\"samples\":[]}]",
        "[{\"name\":\"9x\",\"type\":\"counter\",\"samples\":[]}]",
        "[{\"name\":\"drover_x\",\"type\":\"counter\",\"samples\":[]}]",
        "[{\"name\":\"x\",\"type\":\"summary\",\"samples\":[]}]",
        "[{\"name\":\"x\",\"type\":\"counter\"}]",
        "[{\"name\":\"x\",\"type\":\"counter\",\"help\":5,\"samples\":[]}]",
        "[{\"name\":\"x\",\"type\":\"counter\",\"agg\":\"max\",\"samples\":[]}]",
        "[{\"name\":\"x\",\"type\":\"gauge\",\"agg\":\"median\",\"samples\":[]}]",
        "[{\"name\":\"x\",\"type\":\"counter\",\"samples\":[{\"value\":-1}]}]",
        "[{\"name\":\"x\",\"type\":\"counter\",\"samples\":[{\"value\":\"1\"}]}]",
        "[{\"name\":\"x\",\"type\":\"gauge\",\"samples\":[{}]}]",
        "[{\"name\":\"x\",\"type\":\"gauge\",\"samples\":[5]}]",
        "[{\"name\":\"x\",\"type\":\"gauge\",\"samples\":[{\"labels\":[],\"value\":1}]}]",
        "[{\"name\":\"x\",\"type\":\"gauge\",\"samples\":[{\"labels\":{\"a\":1},\"value\":1}]}]",
        "[{\"name\":\"x\",\"type\":\"gauge\",\"samples\":[{\"labels\":{\"a-b\":\"1\"},"
        "\"value\":1}]}]",
        "[{\"name\":\"x\",\"type\":\"gauge\",\"samples\":[{\"labels\":{\"__a\":\"1\"},"
        "\"value\":1}]}]",
        "[{\"name\":\"x\",\"type\":\"gauge\",\"samples\":[{\"labels\":{\"app\":\"1\"},"
        "\"value\":1}]}]",
        "[{\"name\":\"x\",\"type\":\"gauge\",\"samples\":[{\"labels\":{\"worker\":\"1\"},"
        "\"value\":1}]}]",
        "[{\"name\":\"h\",\"type\":\"histogram\",\"samples\":[]}]",
        "[{\"name\":\"h\",\"type\":\"histogram\",\"buckets\":[2,1],\"samples\":[]}]",
        "[{\"name\":\"h\",\"type\":\"histogram\",\"buckets\":[1,1],\"samples\":[]}]",
        "[{\"name\":\"h\",\"type\":\"histogram\",\"buckets\":[\"1\"],\"samples\":[]}]",
        "[{\"name\":\"h\",\"type\":\"histogram\",\"buckets\":[1],\"samples\":"
        "[{\"counts\":[1],\"sum\":1,\"count\":1}]}]",
        "[{\"name\":\"h\",\"type\":\"histogram\",\"buckets\":[1],\"samples\":"
        "[{\"counts\":[2,1],\"sum\":1,\"count\":1}]}]",
        "[{\"name\":\"h\",\"type\":\"histogram\",\"buckets\":[1],\"samples\":"
        "[{\"counts\":[1,2],\"count\":2}]}]",
        "[{\"name\":\"h\",\"type\":\"histogram\",\"buckets\":[1],\"samples\":"
        "[{\"counts\":[1,2],\"sum\":1,\"count\":3}]}]",
        "[{\"name\":\"h\",\"type\":\"histogram\",\"buckets\":[1],\"samples\":"
        "[{\"labels\":{\"le\":\"1\"},\"counts\":[1,2],\"sum\":1}]}]",
        /* The same series twice; code="" is the same as no code label. */
        "[{\"name\":\"x\",\"type\":\"gauge\",\"samples\":[{\"value\":1},{\"value\":2}]}]",
        "[{\"name\":\"x\",\"type\":\"gauge\",\"samples\":[{\"value\":1},"
        "{\"labels\":{\"code\":\"\"},\"value\":2}]}]",
        /* The same family twice. */
        "[{\"name\":\"x\",\"type\":\"gauge\",\"samples\":[]},"
        "{\"name\":\"x\",\"type\":\"gauge\",\"samples\":[]}]",
        "[{\"name\":\"reqs_total\",\"type\":\"gauge\",\"samples\":[]},"
        "{\"name\":\"reqs_total\",\"type\":\"counter\",\"samples\":[]}]",
    };
    struct metrics_app *ma = app_new("web");
    assert_int_equal(counter(ma, 1, 0, 10, 0), 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (update(ma, 1, 0, bad[i]) != -EPROTO) {
            fail_msg("accepted: %s", bad[i]);
        }
        /* The previous snapshot is kept, whole. */
        assert_true(value_of(ma, "reqs_total{app=\"web\",code=\"200\"}") == 10);
    }
    struct metrics_stats st;
    metrics_app_stats(ma, &st);
    assert_int_equal(st.refused[METRICS_REFUSED_MALFORMED], sizeof bad / sizeof bad[0]);
    assert_int_equal(st.series, 2);
    assert_int_equal(st.workers, 1);
    assert_int_equal(st.conflicts, 0);
    assert_string_equal(metrics_refusal_to_string(METRICS_REFUSED_APP_LIMIT), "app_limit");

    /* The good: a count missing (taken from +Inf), unknown keys ignored, an empty snapshot. */
    assert_int_equal(update(ma, 2, 1,
                            "[{\"name\":\"h\",\"type\":\"histogram\",\"buckets\":[1],"
                            "\"extra\":true,\"samples\":[{\"counts\":[1,2],\"sum\":3}]}]"),
                     0);
    assert_true(value_of(ma, "h_count{app=\"web\"}") == 2);
    assert_int_equal(update(ma, 3, 2, "[]"), 0);
    double at = 0;
    assert_int_equal(metrics_app_snapshot_time(ma, 3, &at), 0);
    assert_true(at == 1003.0);
    assert_int_equal(metrics_app_snapshot_time(ma, 42, &at), -ENOENT);
    metrics_app_free(ma);
}

/* A snapshot of n gauge families, or one family of n series (caller frees). */
static char *big_snapshot(size_t n, bool families, const char *prefix)
{
    size_t cap = 64 + n * 96;
    char *s = malloc(cap);
    size_t off = 0;
    off += (size_t)snprintf(s + off, cap - off, "[");
    if (!families) {
        off += (size_t)snprintf(s + off, cap - off,
                                "{\"name\":\"%s\",\"type\":\"counter\",\"samples\":[", prefix);
    }
    for (size_t i = 0; i < n; i++) {
        if (families) {
            off += (size_t)snprintf(s + off, cap - off,
                                    "%s{\"name\":\"%s%zu\",\"type\":\"gauge\","
                                    "\"samples\":[{\"value\":1}]}",
                                    i ? "," : "", prefix, i);
        } else {
            off += (size_t)snprintf(s + off, cap - off,
                                    "%s{\"labels\":{\"id\":\"%zu\"},\"value\":1}", i ? "," : "",
                                    i);
        }
    }
    snprintf(s + off, cap - off, families ? "]" : "]}]");
    return s;
}

static void test_limits(void **state)
{
    struct metrics_app *ma = app_new("web");
    struct metrics_stats st;
    char *s;

    s = big_snapshot(METRICS_MAX_FAMILIES + 1, true, "f");
    assert_int_equal(update(ma, 1, 0, s), -E2BIG);
    free(s);
    s = big_snapshot(METRICS_MAX_FAMILIES, true, "f");
    assert_int_equal(update(ma, 1, 0, s), 0);
    free(s);
    s = big_snapshot(METRICS_MAX_SERIES + 1, false, "c");
    assert_int_equal(update(ma, 2, 1, s), -E2BIG);
    free(s);
    metrics_app_stats(ma, &st);
    assert_int_equal(st.refused[METRICS_REFUSED_WORKER_LIMIT], 2);

    /* A histogram sample costs its buckets + 3. */
    assert_int_equal(update_fmt(ma, 2, 1,
                                "[{\"name\":\"h\",\"type\":\"histogram\",\"buckets\":[%s],"
                                "\"samples\":[]}]",
                                "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,"
                                "25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,"
                                "46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,"
                                "67,68,69,70,71,72,73,74,75,76,77,78,79,80,81,82,83,84,85,86,87,"
                                "88,89,90,91,92,93,94,95,96,97,98,99,100,101"),
                     -EPROTO);

    /* The app: 20000 distinct series at most, retired included. Worker 1 holds 1000. */
    s = big_snapshot(METRICS_MAX_SERIES, false, "a_total");
    assert_int_equal(update(ma, 2, 1, s), 0);
    free(s);
    s = big_snapshot(METRICS_MAX_SERIES, false, "b_total");
    assert_int_equal(update(ma, 3, 2, s), -E2BIG);
    free(s);
    metrics_app_stats(ma, &st);
    assert_int_equal(st.refused[METRICS_REFUSED_APP_LIMIT], 1);
    assert_int_equal(st.series, METRICS_MAX_FAMILIES + METRICS_MAX_SERIES);

    /* Replacing a snapshot by a different one of the same size fits: the old one's series
     * do not count twice. */
    s = big_snapshot(METRICS_MAX_SERIES, false, "b_total");
    assert_int_equal(update(ma, 2, 1, s), 0);
    free(s);
    metrics_app_stats(ma, &st);
    assert_int_equal(st.series, METRICS_MAX_FAMILIES + METRICS_MAX_SERIES);
    assert_true(value_of(ma, "b_total{app=\"web\",id=\"9999\"}") == 1);
    assert_true(isnan(value_of(ma, "a_total{app=\"web\",id=\"9999\"}")));

    /* Retired totals stay in the count: after worker 2 exits, 9000 new series do not fit. */
    metrics_app_retire(ma, 2);
    s = big_snapshot(9000, false, "c_total");
    assert_int_equal(update(ma, 4, 1, s), 0);
    free(s);
    s = big_snapshot(1, false, "d_total");
    assert_int_equal(update(ma, 5, 3, s), -E2BIG);
    free(s);
    metrics_app_free(ma);
}

static void test_apps_share_names(void **state)
{
    struct metrics_app *apps[3] = {app_new("a"), app_new("b"), app_new("c")};
    assert_int_equal(counter(apps[0], 1, 0, 1, 0), 0);
    assert_int_equal(counter(apps[1], 2, 0, 2, 0), 0);
    /* c calls reqs_total a gauge: the page cannot say both; a (first) wins. */
    assert_int_equal(update(apps[2], 3, 0, "[{\"name\":\"reqs_total\",\"type\":\"gauge\","
                                           "\"samples\":[{\"value\":9}]},"
                                           "{\"name\":\"lat_seconds_count\",\"type\":\"gauge\","
                                           "\"samples\":[{\"value\":9}]}]"),
                     0);
    assert_int_equal(histogram(apps[1], 2, 0, 1, 1, 1, 1), 0);
    char *text = page_text(apps, 3);
    /* One TYPE line per name, every agreeing app under it. */
    assert_non_null(strstr(text, "# TYPE reqs_total counter\n"
                                 "reqs_total{app=\"a\",code=\"200\"} 1\n"
                                 "reqs_total{app=\"a\",code=\"500\"} 0\n"));
    assert_null(strstr(text, "reqs_total{app=\"c\""));
    assert_null(strstr(text, "# TYPE lat_seconds_count"));
    assert_non_null(strstr(text, "lat_seconds_count{app=\"b\",op=\"get\"} 1\n"));
    const char *first = strstr(text, "# TYPE reqs_total");
    assert_null(strstr(first + 1, "# TYPE reqs_total"));
    free(text);
    struct metrics_stats st;
    metrics_app_stats(apps[2], &st);
    assert_int_equal(st.conflicts, 2);
    metrics_app_stats(apps[0], &st);
    assert_int_equal(st.conflicts, 0);

    /* b's own replacement (a histogram instead of the counter) puts b under reqs_total no
     * more; c is still a gauge. */
    assert_int_equal(counter(apps[1], 2, 0, 5, 0), 0);
    assert_true(value_in(apps, 3, "reqs_total{app=\"b\",code=\"200\"}") == 5);
    for (size_t i = 0; i < 3; i++) {
        metrics_app_free(apps[i]);
    }
}

/*
 * A snapshot is sized by one pass and filled by a second; both read a family's type through one
 * function, and the filling pass checks each write against the size. These shapes sit where a
 * disagreement between the passes would write past the storage (run under ASan to see it):
 * histogram-looking members on a family that is not a histogram, type spellings that are not a
 * type, and histograms that fill the storage to the last double.
 */
static void test_histogram_storage_is_sized_by_one_reading(void **state)
{
    char *json = malloc(1 << 20);
    assert_non_null(json);

    /* A gauge carrying 150 "buckets" and per-sample "counts": a gauge, the extra members
     * ignored (no 100-bucket limit, no pool), next to a real histogram. */
    size_t n = (size_t)sprintf(json, "[{\"name\":\"g\",\"type\":\"gauge\",\"buckets\":[");
    for (int i = 0; i < 150; i++) {
        n += (size_t)sprintf(json + n, "%s%d", i ? "," : "", i + 1);
    }
    sprintf(json + n, "],\"samples\":[{\"value\":7,\"counts\":[1,2,3]}]},"
                      "{\"name\":\"h\",\"type\":\"histogram\",\"buckets\":[1],"
                      "\"samples\":[{\"counts\":[1,2],\"sum\":3,\"count\":2}]}]");
    struct metrics_app *ma = app_new("s");
    assert_int_equal(update(ma, 1, 0, json), 0);
    assert_true(value_of(ma, "g{app=\"s\"}") == 7);
    assert_true(value_of(ma, "h_bucket{app=\"s\",le=\"+Inf\"}") == 2);

    /* Spellings that are not a type are refused whole, however histogram-like the rest. */
    static const char *const not_types[] = {"\"Histogram\"", "\"histogram \"", "\"histo\"",
                                            "5", "null", "[\"histogram\"]", "{}"};
    for (size_t i = 0; i < sizeof not_types / sizeof not_types[0]; i++) {
        assert_int_equal(update_fmt(ma, 1, 0,
                                    "[{\"name\":\"h\",\"type\":%s,\"buckets\":[1,2],"
                                    "\"samples\":[{\"counts\":[1,2,3],\"sum\":1}]}]",
                                    not_types[i]),
                         -EPROTO);
    }
    assert_true(value_of(ma, "g{app=\"s\"}") == 7); /* the previous snapshot stays */

    /* Histograms of 100 buckets (the most) with several samples each, between counters: the
     * storage filled to its last double, every count where it belongs. */
    n = (size_t)sprintf(json, "[");
    for (int f = 0; f < 5; f++) {
        n += (size_t)sprintf(json + n, "%s{\"name\":\"c%d\",\"type\":\"counter\",\"samples\":"
                                       "[{\"value\":%d}]},{\"name\":\"h%d\",\"type\":"
                                       "\"histogram\",\"buckets\":[",
                             f ? "," : "", f, f, f);
        for (int b = 0; b < 100; b++) {
            n += (size_t)sprintf(json + n, "%s%d", b ? "," : "", b + 1);
        }
        n += (size_t)sprintf(json + n, "],\"samples\":[");
        for (int smp = 0; smp < 4; smp++) {
            n += (size_t)sprintf(json + n, "%s{\"labels\":{\"k\":\"%d\"},\"counts\":[",
                                 smp ? "," : "", smp);
            for (int b = 0; b <= 100; b++) {
                n += (size_t)sprintf(json + n, "%s%d", b ? "," : "", b * (f + smp + 1));
            }
            n += (size_t)sprintf(json + n, "],\"sum\":1}");
        }
        n += (size_t)sprintf(json + n, "]}");
    }
    sprintf(json + n, "]");
    assert_int_equal(update(ma, 2, 1, json), 0);
    assert_true(value_of(ma, "c4{app=\"s\"}") == 4);
    assert_true(value_of(ma, "h4_bucket{app=\"s\",k=\"3\",le=\"+Inf\"}") == 100 * 8);
    assert_true(value_of(ma, "h0_bucket{app=\"s\",k=\"0\",le=\"1\"}") == 0);
    assert_true(value_of(ma, "h2_bucket{app=\"s\",k=\"1\",le=\"50\"}") == 49 * 4);
    metrics_app_free(ma);
    free(json);
}

static void test_empty_page(void **state)
{
    struct page page;
    assert_int_equal(page_build(NULL, 0, &page), 0);
    assert_int_equal(page.n_families, 0);
    page_done(&page);
    metrics_app_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_sum_and_retire),
        cmocka_unit_test(test_text_page),
        cmocka_unit_test(test_gauge_modes),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_per_worker),
        cmocka_unit_test(test_conflicts),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_apps_share_names),
        cmocka_unit_test(test_histogram_storage_is_sized_by_one_reading),
        cmocka_unit_test(test_empty_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
