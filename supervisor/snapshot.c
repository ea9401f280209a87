/*
 * snapshot: a worker's JSON snapshot into checked families. See snapshot.h.
 *
 * Two passes. The first (snapshot_measure) trusts nothing and only counts: families, samples and
 * the doubles that bucket bounds and histogram counts take, checking the per-worker limits on
 * the way, so that a snapshot over them is refused before anything is allocated. The second
 * (snapshot_parse) allocates exactly that much and fills it, checking every field; it also
 * checks each write against what the first pass sized, so that the two passes reading a
 * family differently refuses the snapshot rather than writing past the storage.
 */
#include "snapshot.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

static const char *const agg_names[SNAPSHOT_AGG__COUNT] = {"sum", "max", "min", "avg", "worker"};

const char *snapshot_agg_to_string(enum snapshot_agg agg)
{
    return (unsigned)agg < SNAPSHOT_AGG__COUNT ? agg_names[agg] : NULL;
}

static int keys_put(struct snapshot_keys *keys, const char *s, size_t n)
{
    return bytebuf_append(&keys->buf, s, n, SIZE_MAX);
}

static bool name_is_reserved_label(const char *name, enum prom_type type)
{
    /* drover adds app (always) and worker (per-worker series); le belongs to histograms. */
    return strcmp(name, "app") == 0 || strcmp(name, "worker") == 0 ||
           (type == PROM_HISTOGRAM && strcmp(name, "le") == 0);
}

static int label_cmp(const void *a, const void *b)
{
    return strcmp(((const struct prom_label *)a)->name, ((const struct prom_label *)b)->name);
}

#define PROTO(why)                                                                                \
    do {                                                                                          \
        *ret_error = (why);                                                                       \
        return -EPROTO;                                                                           \
    } while (0)

/* The sample's key (see snapshot.h) appended to keys. */
static int parse_labels(struct snapshot_keys *keys, const struct snapshot_family *f,
                        json_t *labels, const char *slot, struct snapshot_sample *out,
                        const char **ret_error)
{
    struct prom_label set[SNAPSHOT_MAX_LABELS] = {{0}};
    size_t n = 0;
    if (labels && !json_is_null(labels)) {
        if (!json_is_object(labels)) {
            PROTO("labels is not an object");
        }
        if (json_object_size(labels) > SNAPSHOT_MAX_LABELS) {
            PROTO("too many labels on a sample");
        }
        const char *name;
        json_t *value;
        json_object_foreach(labels, name, value) {
            if (!json_is_string(value)) {
                PROTO("a label value is not a string");
            }
            if (!prom_label_name_is_valid(name)) {
                PROTO("invalid label name");
            }
            if (name_is_reserved_label(name, f->type)) {
                PROTO("reserved label name (app, worker, or le on a histogram)");
            }
            if (*json_string_value(value) != '\0') {
                set[n++] = (struct prom_label){name, json_string_value(value)};
            }
        }
    }
    qsort(set, n, sizeof set[0], label_cmp);
    out->key_off = keys->buf.len;
    int r = keys_put(keys, f->name, strlen(f->name) + 1);
    for (size_t i = 0; r == 0 && i < n; i++) {
        r = keys_put(keys, set[i].name, strlen(set[i].name) + 1);
        if (r == 0) {
            r = keys_put(keys, set[i].value, strlen(set[i].value) + 1);
        }
    }
    if (r == 0 && f->agg == SNAPSHOT_AGG_WORKER) {
        /* Gauges merged per worker are one series per slot. */
        r = keys_put(keys, slot, strlen(slot) + 1);
    }
    out->key_len = keys->buf.len - out->key_off;
    out->n_labels = n;
    return r;
}

static int parse_sample(struct snapshot_keys *keys, const struct snapshot_family *f, json_t *js,
                        const char *slot, double *counts, struct snapshot_sample *out,
                        const char **ret_error)
{
    if (!json_is_object(js)) {
        PROTO("a sample is not an object");
    }
    int r = parse_labels(keys, f, json_object_get(js, "labels"), slot, out, ret_error);
    if (r < 0) {
        return r;
    }
    if (f->type != PROM_HISTOGRAM) {
        json_t *v = json_object_get(js, "value");
        if (!json_is_number(v)) {
            PROTO("a sample's value is missing or not a number");
        }
        out->value = json_number_value(v);
        if (f->type == PROM_COUNTER && !(out->value >= 0)) {
            PROTO("a counter is negative");
        }
        return 0;
    }
    json_t *jc = json_object_get(js, "counts");
    if (!json_is_array(jc) || json_array_size(jc) != f->n_buckets + 1) {
        PROTO("a histogram sample's counts are missing or not one per bucket plus +Inf");
    }
    for (size_t i = 0; i <= f->n_buckets; i++) {
        json_t *c = json_array_get(jc, i);
        if (!json_is_number(c)) {
            PROTO("a histogram count is not a number");
        }
        counts[i] = json_number_value(c);
        if (!(counts[i] >= (i ? counts[i - 1] : 0))) {
            PROTO("histogram counts are negative or not cumulative");
        }
    }
    out->counts = counts;
    json_t *sum = json_object_get(js, "sum");
    if (!json_is_number(sum)) {
        PROTO("a histogram sample's sum is missing or not a number");
    }
    out->sum = json_number_value(sum);
    json_t *count = json_object_get(js, "count");
    out->count = counts[f->n_buckets];
    if (count && !json_is_null(count)) {
        if (!json_is_number(count) || json_number_value(count) != out->count) {
            PROTO("a histogram sample's count is not its +Inf bucket count");
        }
    }
    return 0;
}

/*
 * The family's type as its JSON states it: the one reading of a family's type, used both by
 * the pass that sizes a snapshot's storage (snapshot_measure) and by the pass that fills it
 * (parse_family_head), so that they agree on which families take pool doubles. The filling
 * pass also checks every write against what was sized (snapshot_parse), so that even a future
 * disagreement refuses the snapshot instead of writing past the storage. Returns 0 or -EINVAL.
 */
static int family_type(json_t *jf, enum prom_type *ret)
{
    const char *s = NULL;
    if (wire_member_string(jf, "type", &s) < 0 || prom_type_from_string(s, ret) < 0) {
        return -EINVAL;
    }
    return 0;
}

/* The family's own fields (not its samples) into f; its buckets into buckets, which has room
 * for room doubles. */
static int parse_family_head(json_t *jf, double *buckets, size_t room,
                             struct snapshot_family *f, const char **ret_error)
{
    if (!json_is_object(jf)) {
        PROTO("a family is not an object");
    }
    json_t *name = json_object_get(jf, "name");
    if (!json_is_string(name) || !prom_metric_name_is_valid(json_string_value(name))) {
        PROTO("a family name is missing or not a valid metric name");
    }
    f->name = json_string_value(name);
    if (strncmp(f->name, "drover_", 7) == 0) {
        PROTO("family names starting with drover_ are drover's own");
    }
    if (family_type(jf, &f->type) < 0) {
        PROTO("a family type is missing or not counter, gauge or histogram");
    }
    const char *s;
    if (wire_member_string(jf, "help", &f->help) < 0) {
        PROTO("a family's help is not a string");
    }
    if (!f->help) {
        f->help = "";
    }
    if (wire_member_string(jf, "agg", &s) < 0) {
        PROTO("a family's agg is not a string");
    }
    f->agg = SNAPSHOT_AGG_SUM;
    if (s) {
        size_t i = 0;
        while (i < SNAPSHOT_AGG__COUNT && strcmp(s, agg_names[i]) != 0) {
            i++;
        }
        if (i == SNAPSHOT_AGG__COUNT) {
            PROTO("agg is not sum, max, min, avg or worker");
        }
        if (f->type != PROM_GAUGE && i != SNAPSHOT_AGG_SUM) {
            PROTO("counters and histograms are always summed (agg applies to gauges)");
        }
        f->agg = (enum snapshot_agg)i;
    }
    f->n_buckets = 0;
    f->buckets = buckets;
    if (f->type == PROM_HISTOGRAM) {
        json_t *jb = json_object_get(jf, "buckets");
        if (!json_is_array(jb)) {
            PROTO("a histogram has no buckets array");
        }
        if (json_array_size(jb) > room) {
            PROTO("a histogram's buckets do not fit the snapshot's measured size");
        }
        for (size_t i = 0; i < json_array_size(jb); i++) {
            json_t *b = json_array_get(jb, i);
            if (!json_is_number(b)) {
                PROTO("a histogram bucket is not a number");
            }
            buckets[i] = json_number_value(b);
            if (i > 0 && !(buckets[i] > buckets[i - 1])) {
                PROTO("histogram buckets are not strictly ascending");
            }
        }
        f->n_buckets = json_array_size(jb);
    }
    if (!json_is_array(json_object_get(jf, "samples"))) {
        PROTO("a family has no samples array");
    }
    return 0;
}

/*
 * First pass over the JSON, trusting nothing: how many families, samples and pool doubles the
 * snapshot needs, and whether it is within the per-worker limits before anything is allocated.
 */
static int snapshot_measure(json_t *families, size_t *ret_samples, size_t *ret_pool,
                            const char **ret_error)
{
    size_t n_samples = 0, pool = 0, cost = 0;
    if (json_array_size(families) > SNAPSHOT_MAX_FAMILIES) {
        *ret_error = "too many families";
        return -E2BIG;
    }
    size_t i;
    json_t *jf;
    json_array_foreach(families, i, jf) {
        json_t *samples = json_object_get(jf, "samples");
        size_t n = json_is_array(samples) ? json_array_size(samples) : 0;
        size_t nb = 0;
        enum prom_type type;
        if (family_type(jf, &type) == 0 && type == PROM_HISTOGRAM) {
            nb = json_array_size(json_object_get(jf, "buckets"));
            if (nb > SNAPSHOT_MAX_BUCKETS) {
                PROTO("a histogram has more than 100 buckets");
            }
            pool += nb + n * (nb + 1);
            cost += n * (nb + 3);
        } else {
            cost += n;
        }
        n_samples += n;
        if (cost > SNAPSHOT_MAX_SERIES) {
            *ret_error = "too many series";
            return -E2BIG;
        }
    }
    *ret_samples = n_samples;
    *ret_pool = pool;
    return 0;
}

void snapshot_done(struct snapshot *sn)
{
    free(sn->families);
    free(sn->samples);
    free(sn->pool);
    *sn = (struct snapshot){0};
}

void snapshot_keys_done(struct snapshot_keys *keys)
{
    bytebuf_free(&keys->buf);
}

int snapshot_parse(json_t *families, const char *slot, struct snapshot_keys *keys,
                   struct snapshot *ret, const char **ret_error)
{
    size_t n_samples = 0, n_pool = 0;
    struct snapshot sn = {0};
    int r;

    if (!json_is_array(families)) {
        PROTO("families is not an array");
    }
    r = snapshot_measure(families, &n_samples, &n_pool, ret_error);
    if (r < 0) {
        return r;
    }
    r = -ENOMEM;
    size_t n_fams = json_array_size(families);
    sn.families = calloc(n_fams ? n_fams : 1, sizeof *sn.families);
    sn.samples = calloc(n_samples ? n_samples : 1, sizeof *sn.samples);
    sn.pool = calloc(n_pool ? n_pool : 1, sizeof *sn.pool);
    if (!sn.families || !sn.samples || !sn.pool) {
        goto out;
    }
    bytebuf_consume(&keys->buf, bytebuf_pending(&keys->buf));
    size_t k = 0, pool = 0;
    for (size_t i = 0; i < n_fams; i++) {
        json_t *jf = json_array_get(families, i);
        struct snapshot_family *f = &sn.families[i];
        r = parse_family_head(jf, sn.pool + pool, n_pool - pool, f, ret_error);
        if (r < 0) {
            goto out;
        }
        pool += f->n_buckets;
        json_t *samples = json_object_get(jf, "samples");
        f->samples = sn.samples + k;
        f->n_samples = json_array_size(samples);
        /* Every write below stays within what snapshot_measure sized: a family that would not
         * fit refuses the snapshot (see family_type). */
        size_t per_sample = f->type == PROM_HISTOGRAM ? f->n_buckets + 1 : 0;
        if (f->n_samples > n_samples - k || per_sample * f->n_samples > n_pool - pool) {
            *ret_error = "a family's samples do not fit the snapshot's measured size";
            r = -EPROTO;
            goto out;
        }
        for (size_t j = 0; j < f->n_samples; j++) {
            struct snapshot_sample *s = &f->samples[j];
            r = parse_sample(keys, f, json_array_get(samples, j), slot, sn.pool + pool, s,
                             ret_error);
            if (r < 0) {
                goto out;
            }
            if (f->type == PROM_HISTOGRAM) {
                pool += f->n_buckets + 1;
            }
        }
        k += f->n_samples;
    }
    sn.n_families = n_fams;
    sn.n_samples = k;
    *ret = sn;
    sn = (struct snapshot){0};
    r = 0;
out:
    snapshot_done(&sn);
    return r;
}

#undef PROTO
