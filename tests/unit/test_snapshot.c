/*
 * Unit tests of snapshot, the parser of a worker's metrics snapshot (SPEC section 4), on its
 * own: what it hands the store (families with their merge mode and buckets, samples with their
 * values and series keys), the key layout the store relies on (name, labels sorted with empty
 * ones dropped, the slot for per-worker gauges), the key buffer reused across parses, and the
 * per-worker limits, refused before anything is allocated. What a refusal does to the page is
 * test_metrics' business; here only the parser's answer and its reason are checked.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <jansson.h>

#include "snapshot.h"

static json_t *load(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    if (!j) {
        fail_msg("bad test JSON: %s: %s", err.text, text);
    }
    return j;
}

/* Parses text as slot "3"; returns the result, the reason in *ret_why. */
static int parse(const char *text, struct snapshot_keys *keys, struct snapshot *ret,
                 json_t **ret_json, const char **ret_why)
{
    json_t *j = load(text);
    const char *why = NULL;
    int r = snapshot_parse(j, "3", keys, ret, &why);
    *ret_why = why;
    *ret_json = j; /* the snapshot's names point into it */
    return r;
}

/* Whether the sample's key is exactly the len bytes at want. */
static void assert_key(const struct snapshot_keys *keys, const struct snapshot_sample *s,
                       const char *want, size_t len)
{
    assert_int_equal(s->key_len, len);
    assert_true(s->key_off + s->key_len <= keys->buf.len);
    assert_memory_equal(keys->buf.data + s->key_off, want, len);
}

static void test_families_and_keys(void **state)
{
    struct snapshot_keys keys = {0};
    struct snapshot sn;
    json_t *j;
    const char *why;

    int r = parse("[{\"name\":\"reqs_total\",\"type\":\"counter\",\"help\":\"Requests\","
                  "\"samples\":[{\"labels\":{\"path\":\"/\",\"code\":\"200\",\"x\":\"\"},"
                  "\"value\":7}]},"
                  "{\"name\":\"busy\",\"type\":\"gauge\",\"agg\":\"worker\","
                  "\"samples\":[{\"value\":0.5}]},"
                  "{\"name\":\"lat\",\"type\":\"histogram\",\"buckets\":[0.1,1],"
                  "\"samples\":[{\"counts\":[1,3,4],\"sum\":2.5}]}]",
                  &keys, &sn, &j, &why);
    assert_int_equal(r, 0);
    assert_int_equal(sn.n_families, 3);
    assert_int_equal(sn.n_samples, 3);

    const struct snapshot_family *c = &sn.families[0];
    assert_string_equal(c->name, "reqs_total");
    assert_string_equal(c->help, "Requests");
    assert_int_equal(c->type, PROM_COUNTER);
    assert_int_equal(c->agg, SNAPSHOT_AGG_SUM);
    assert_int_equal(c->n_samples, 1);
    assert_ptr_equal(c->samples, sn.samples);
    assert_true(c->samples[0].value == 7);
    /* Labels sorted by name; the empty one dropped, as Prometheus drops it. */
    assert_int_equal(c->samples[0].n_labels, 2);
    static const char ckey[] = "reqs_total\0code\0" "200\0path\0/";
    assert_key(&keys, &c->samples[0], ckey, sizeof ckey);

    const struct snapshot_family *g = &sn.families[1];
    assert_string_equal(g->help, "");
    assert_int_equal(g->agg, SNAPSHOT_AGG_WORKER);
    /* A per-worker gauge is one series per slot: the slot ends its key. */
    static const char gkey[] = "busy\0" "3";
    assert_key(&keys, &g->samples[0], gkey, sizeof gkey);

    const struct snapshot_family *h = &sn.families[2];
    assert_int_equal(h->type, PROM_HISTOGRAM);
    assert_int_equal(h->n_buckets, 2);
    assert_true(h->buckets[0] == 0.1 && h->buckets[1] == 1);
    const struct snapshot_sample *hs = &h->samples[0];
    assert_true(hs->counts[0] == 1 && hs->counts[1] == 3 && hs->counts[2] == 4);
    assert_true(hs->sum == 2.5);
    assert_true(hs->count == 4); /* not given: the +Inf count */
    static const char hkey[] = "lat";
    assert_key(&keys, hs, hkey, sizeof hkey);

    snapshot_done(&sn);
    json_decref(j);

    /* The next parse empties the key buffer and reuses its memory. */
    char *buf = keys.buf.data;
    r = parse("[{\"name\":\"up\",\"type\":\"gauge\",\"samples\":[{\"value\":1}]}]", &keys, &sn,
              &j, &why);
    assert_int_equal(r, 0);
    assert_ptr_equal(keys.buf.data, buf);
    static const char ukey[] = "up";
    assert_int_equal(sn.samples[0].key_off, 0);
    assert_key(&keys, &sn.samples[0], ukey, sizeof ukey);
    assert_int_equal(keys.buf.len, sizeof ukey);
    snapshot_done(&sn);
    json_decref(j);

    /* An empty snapshot is a snapshot. */
    assert_int_equal(parse("[]", &keys, &sn, &j, &why), 0);
    assert_int_equal(sn.n_families, 0);
    assert_int_equal(sn.n_samples, 0);
    snapshot_done(&sn);
    json_decref(j);
    snapshot_keys_done(&keys);
    assert_null(keys.buf.data);
}

static void bad(const char *text, const char *reason)
{
    struct snapshot_keys keys = {0};
    struct snapshot sn = {.n_families = 99};
    json_t *j;
    const char *why = NULL;

    assert_int_equal(parse(text, &keys, &sn, &j, &why), -EPROTO);
    assert_int_equal(sn.n_families, 99); /* untouched */
    assert_non_null(why);
    if (!strstr(why, reason)) {
        fail_msg("'%s' refused as '%s', expected '%s'", text, why, reason);
    }
    json_decref(j);
    snapshot_keys_done(&keys);
}

static void test_malformed(void **state)
{
    bad("{}", "families is not an array");
    bad("[1]", "a family is not an object");
    bad("[{\"name\":\"drover_x\",\"type\":\"gauge\",\"samples\":[]}]", "drover's own");
    bad("[{\"name\":\"x\",\"type\":\"summary\",\"samples\":[]}]", "type");
    bad("[{\"name\":\"x\",\"type\":\"counter\",\"agg\":\"max\",\"samples\":[]}]",
        "always summed");
    bad("[{\"name\":\"x\",\"type\":\"gauge\",\"agg\":\"median\",\"samples\":[]}]",
        "agg is not");
    bad("[{\"name\":\"x\",\"type\":\"gauge\"}]", "no samples array");
    bad("[{\"name\":\"x\",\"type\":\"counter\",\"samples\":[{\"value\":-1}]}]", "negative");
    /* le is a histogram's own label only: a gauge may have one, not an app label. */
    bad("[{\"name\":\"x\",\"type\":\"gauge\",\"samples\":[{\"labels\":{\"le\":\"1\"},"
        "\"value\":1},{\"labels\":{\"app\":\"a\"},\"value\":1}]}]",
        "reserved label name");
    bad("[{\"name\":\"h\",\"type\":\"histogram\",\"buckets\":[1,1],\"samples\":[]}]",
        "strictly ascending");
    bad("[{\"name\":\"h\",\"type\":\"histogram\",\"buckets\":[1],"
        "\"samples\":[{\"counts\":[2,1],\"sum\":1}]}]",
        "not cumulative");
    bad("[{\"name\":\"h\",\"type\":\"histogram\",\"buckets\":[1],"
        "\"samples\":[{\"counts\":[1,2],\"sum\":1,\"count\":3}]}]",
        "+Inf bucket count");
}

/* A snapshot of n families, each a counter with one sample. */
static char *families_json(size_t n)
{
    size_t size = 64 + n * 80, len = 0;
    char *s = malloc(size);
    assert_non_null(s);
    s[len++] = '[';
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf(s + len, size - len,
                                "%s{\"name\":\"f%zu\",\"type\":\"counter\",\"samples\":"
                                "[{\"value\":1}]}",
                                i ? "," : "", i);
    }
    snprintf(s + len, size - len, "]");
    return s;
}

static void test_limits(void **state)
{
    struct snapshot_keys keys = {0};
    struct snapshot sn;
    json_t *j;
    const char *why;

    char *text = families_json(SNAPSHOT_MAX_FAMILIES);
    assert_int_equal(parse(text, &keys, &sn, &j, &why), 0);
    assert_int_equal(sn.n_families, SNAPSHOT_MAX_FAMILIES);
    snapshot_done(&sn);
    json_decref(j);
    free(text);

    text = families_json(SNAPSHOT_MAX_FAMILIES + 1);
    assert_int_equal(parse(text, &keys, &sn, &j, &why), -E2BIG);
    assert_string_equal(why, "too many families");
    json_decref(j);
    free(text);

    /* A histogram's series: one per bucket, +Inf, _sum and _count, for each sample. */
    char hist[4096];
    size_t len = (size_t)snprintf(hist, sizeof hist,
                                  "[{\"name\":\"h\",\"type\":\"histogram\",\"buckets\":[");
    for (int b = 0; b <= SNAPSHOT_MAX_BUCKETS; b++) {
        len += (size_t)snprintf(hist + len, sizeof hist - len, "%s%d", b ? "," : "", b);
    }
    snprintf(hist + len, sizeof hist - len, "],\"samples\":[]}]");
    assert_int_equal(parse(hist, &keys, &sn, &j, &why), -EPROTO);
    assert_string_equal(why, "a histogram has more than 100 buckets");
    json_decref(j);
    snapshot_keys_done(&keys);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_families_and_keys),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
