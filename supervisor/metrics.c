/*
 * metrics: families and their merge. See metrics.h.
 *
 * The store of an app has three layers, each pointing to the one below:
 *
 *   snapshots   one per live worker that sent one: its families and samples, as sent
 *   series      one per distinct (family, label set) of the app: what the page shows; also
 *               where an exited worker's counters and histograms live on (the retired totals)
 *   definitions one per family name: type, help, merge mode, histogram buckets
 *
 * Series and definitions are reference counted by what uses them (samples of live snapshots,
 * retired totals, families), so the page never shows a series nobody has, and the per-app limit
 * is a plain count of what exists. The merge itself is done at page build time, over the live
 * snapshots: with max, min and avg gauges there is nothing to keep up to date incrementally, and
 * a scrape of 64 workers x 1000 series is a few tens of thousands of additions.
 *
 * Replacing a snapshot is transactional: the new one is parsed and checked whole, then attached
 * (taking references, creating series), and only then is the old one detached. When a check that
 * needs the attached state fails (a duplicate series, a limit), the new snapshot is detached
 * again, which undoes exactly what attaching did, and the old one stays as it was.
 *
 * A series is keyed by its bytes: the family name, then each label name and value in name
 * order, each ending in NUL (JSON strings from jansson never contain one), and for gauges
 * merged per worker the slot. Labels with an empty value are dropped first, because Prometheus
 * treats code="" exactly as no code label at all.
 */
#include "metrics.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum metrics_agg { AGG_SUM, AGG_MAX, AGG_MIN, AGG_AVG, AGG_WORKER, AGG_COUNT };

static const char *const agg_names[AGG_COUNT] = {"sum", "max", "min", "avg", "worker"};

/* ---- a small intrusive hash table keyed by bytes ---- */

struct hnode {
    struct hnode *hnext;
    uint64_t hash;
    const char *key;
    size_t key_len;
};

struct htab {
    struct hnode **slots;
    size_t n_slots;     /* a power of two, or 0 */
    size_t n;
};

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h ^ (h >> 29);
}

static struct hnode *htab_find(const struct htab *t, const char *key, size_t len, uint64_t hash)
{
    if (t->n_slots == 0) {
        return NULL;
    }
    for (struct hnode *n = t->slots[hash & (t->n_slots - 1)]; n; n = n->hnext) {
        if (n->hash == hash && n->key_len == len && memcmp(n->key, key, len) == 0) {
            return n;
        }
    }
    return NULL;
}

static int htab_add(struct htab *t, struct hnode *node)
{
    if (t->n >= t->n_slots) {
        size_t n_slots = t->n_slots ? t->n_slots * 2 : 64;
        struct hnode **slots = calloc(n_slots, sizeof *slots);
        if (!slots) {
            return -ENOMEM;
        }
        for (size_t i = 0; i < t->n_slots; i++) {
            struct hnode *next;
            for (struct hnode *n = t->slots[i]; n; n = next) {
                next = n->hnext;
                n->hnext = slots[n->hash & (n_slots - 1)];
                slots[n->hash & (n_slots - 1)] = n;
            }
        }
        free(t->slots);
        t->slots = slots;
        t->n_slots = n_slots;
    }
    struct hnode **head = &t->slots[node->hash & (t->n_slots - 1)];
    node->hnext = *head;
    *head = node;
    t->n++;
    return 0;
}

static void htab_del(struct htab *t, struct hnode *node)
{
    for (struct hnode **p = &t->slots[node->hash & (t->n_slots - 1)]; *p; p = &(*p)->hnext) {
        if (*p == node) {
            *p = node->hnext;
            t->n--;
            return;
        }
    }
}

/* ---- the store ---- */

struct mseries;

/* A family definition: the first one seen for its name in this app. */
struct mdef {
    struct hnode h;             /* key: the name */
    struct mdef *prev, *next;   /* the app's definitions */
    char *name;
    char *help;
    enum prom_type type;
    enum metrics_agg agg;
    double *buckets;
    size_t n_buckets;
    size_t refs;                /* families of live snapshots + series */
    struct mseries *series;     /* its series, oldest first */
    struct mseries *series_last;
    uint64_t stamp;             /* the update that last used it: finds a repeated family */
    /* page build */
    size_t n_out;
    struct prom_sample *out;
    size_t out_n;
};

struct mseries {
    struct hnode h;             /* key: see the top of this file */
    struct mseries *prev, *next;
    struct mdef *def;
    char *key;
    struct prom_label *labels;  /* pointing into key */
    size_t n_labels;
    size_t cost;                /* series in Prometheus terms (see metrics.h) */
    size_t refs;                /* samples of live snapshots, + 1 while it holds retired totals */
    uint64_t stamp;             /* the update that last attached it: finds a repeated series */
    char slot_text[12];         /* gauges merged per worker: the slot */
    struct prom_label pre[2];   /* app, and for per-worker gauges worker */
    bool retired;
    double r_value, r_sum, r_count;
    double *r_counts;           /* histograms: n_buckets + 1, then the a_counts of the same size */
    /* page build */
    bool seen;
    size_t n_seen;
    uint64_t seen_key;
    double a_value, a_sum, a_count;
    double *a_counts;
};

/* The hash tables hand back a struct hnode: definitions and series begin with theirs. */
_Static_assert(offsetof(struct mdef, h) == 0 && offsetof(struct mseries, h) == 0,
               "hnode first");

struct msample {
    struct mseries *series;
    size_t key_off;             /* while parsing: the key in the app's scratch buffer */
    size_t key_len;
    size_t n_labels;
    double value, sum, count;
    double *counts;             /* histograms: in the snapshot's pool */
};

struct mfamily {
    struct mdef *def;
    const char *name;           /* while installing: borrowed from the JSON */
    const char *help;
    enum prom_type type;
    enum metrics_agg agg;
    const double *buckets;      /* in the snapshot's pool */
    size_t n_buckets;
    struct msample *samples;
    size_t n_samples;
};

struct msnap {
    struct msnap *next;         /* sorted by slot, then key */
    uint64_t key;
    int slot;
    double at;
    struct mfamily *fams;
    size_t n_fams;
    struct msample *samples;
    size_t n_samples;
    double *pool;
    size_t cost;
    size_t conflicts;
    bool wins;                  /* page build: the newest snapshot of its slot */
    char slot_text[12];
    struct prom_label pre[2];
};

struct metrics_app {
    char *name;
    struct prom_label pre;          /* app="NAME" */
    bool per_worker;
    struct htab defs;
    struct mdef *def_first, *def_last;
    struct htab series;
    size_t series_cost;             /* the per-app limit counts this */
    size_t stored;                  /* cost of every live snapshot */
    struct msnap *snaps;
    uint64_t stamp;
    size_t hidden;                  /* families left off by the last page build */
    uint64_t accepted;
    uint64_t refused[METRICS_REFUSED_COUNT];
    char *scratch;                  /* series keys being parsed */
    size_t scratch_len, scratch_cap;
};

const char *metrics_refusal_to_string(enum metrics_refusal reason)
{
    static const char *const names[METRICS_REFUSED_COUNT] = {"malformed", "worker_limit",
                                                             "app_limit"};
    return (unsigned)reason < METRICS_REFUSED_COUNT ? names[reason] : NULL;
}

int metrics_app_new(const char *app, struct metrics_app **ret)
{
    struct metrics_app *ma = calloc(1, sizeof *ma);
    if (!ma || !(ma->name = strdup(app))) {
        free(ma);
        return -ENOMEM;
    }
    ma->pre = (struct prom_label){"app", ma->name};
    *ret = ma;
    return 0;
}

static void snap_free(struct msnap *sn)
{
    if (!sn) {
        return;
    }
    free(sn->fams);
    free(sn->samples);
    free(sn->pool);
    free(sn);
}

static void series_free(struct mseries *s)
{
    free(s->key);
    free(s->labels);
    free(s->r_counts);
    free(s);
}

static void def_free(struct mdef *d)
{
    free(d->name);
    free(d->help);
    free(d->buckets);
    free(d);
}

void metrics_app_free(struct metrics_app *ma)
{
    if (!ma) {
        return;
    }
    while (ma->snaps) {
        struct msnap *sn = ma->snaps;
        ma->snaps = sn->next;
        snap_free(sn);
    }
    while (ma->def_first) {
        struct mdef *d = ma->def_first;
        ma->def_first = d->next;
        while (d->series) {
            struct mseries *s = d->series;
            d->series = s->next;
            series_free(s);
        }
        def_free(d);
    }
    free(ma->defs.slots);
    free(ma->series.slots);
    free(ma->scratch);
    free(ma->name);
    free(ma);
}

void metrics_app_set_per_worker(struct metrics_app *ma, bool on)
{
    ma->per_worker = on;
}

static struct msnap *snap_find(const struct metrics_app *ma, uint64_t key)
{
    for (struct msnap *sn = ma->snaps; sn; sn = sn->next) {
        if (sn->key == key) {
            return sn;
        }
    }
    return NULL;
}

int metrics_app_snapshot_time(const struct metrics_app *ma, uint64_t key, double *ret_at)
{
    const struct msnap *sn = snap_find(ma, key);
    if (!sn) {
        return -ENOENT;
    }
    *ret_at = sn->at;
    return 0;
}

void metrics_app_stats(const struct metrics_app *ma, struct metrics_stats *ret)
{
    *ret = (struct metrics_stats){.accepted = ma->accepted, .conflicts = ma->hidden,
                                  .series = ma->series_cost};
    memcpy(ret->refused, ma->refused, sizeof ret->refused);
    for (const struct msnap *sn = ma->snaps; sn; sn = sn->next) {
        ret->conflicts += sn->conflicts;
        ret->workers++;
    }
}

/* ---- definitions and series: creation and references ---- */

static void def_unref(struct metrics_app *ma, struct mdef *d)
{
    if (--d->refs > 0) {
        return;
    }
    htab_del(&ma->defs, &d->h);
    if (d->prev) {
        d->prev->next = d->next;
    } else {
        ma->def_first = d->next;
    }
    if (d->next) {
        d->next->prev = d->prev;
    } else {
        ma->def_last = d->prev;
    }
    def_free(d);
}

static void series_unref(struct metrics_app *ma, struct mseries *s)
{
    if (--s->refs > 0) {
        return;
    }
    struct mdef *d = s->def;
    htab_del(&ma->series, &s->h);
    if (s->prev) {
        s->prev->next = s->next;
    } else {
        d->series = s->next;
    }
    if (s->next) {
        s->next->prev = s->prev;
    } else {
        d->series_last = s->prev;
    }
    ma->series_cost -= s->cost;
    series_free(s);
    def_unref(ma, d);
}

/* A definition for family f, taking nothing yet (refs 0). Returns 0, -ENOMEM or -E2BIG. */
static int def_new(struct metrics_app *ma, const struct mfamily *f, uint64_t hash,
                   struct mdef **ret)
{
    if (ma->defs.n >= METRICS_MAX_APP_FAMILIES) {
        return -E2BIG;
    }
    struct mdef *d = calloc(1, sizeof *d);
    if (!d || !(d->name = strdup(f->name)) || !(d->help = strdup(f->help))) {
        goto fail;
    }
    if (f->n_buckets > 0) {
        d->buckets = malloc(sizeof *d->buckets * f->n_buckets);
        if (!d->buckets) {
            goto fail;
        }
        memcpy(d->buckets, f->buckets, sizeof *d->buckets * f->n_buckets);
    }
    d->n_buckets = f->n_buckets;
    d->type = f->type;
    d->agg = f->agg;
    d->h = (struct hnode){.hash = hash, .key = d->name, .key_len = strlen(d->name)};
    if (htab_add(&ma->defs, &d->h) < 0) {
        goto fail;
    }
    d->prev = ma->def_last;
    if (ma->def_last) {
        ma->def_last->next = d;
    } else {
        ma->def_first = d;
    }
    ma->def_last = d;
    *ret = d;
    return 0;
fail:
    if (d) {
        def_free(d);
    }
    return -ENOMEM;
}

static bool def_agrees(const struct mdef *d, const struct mfamily *f)
{
    if (d->type != f->type || d->agg != f->agg || d->n_buckets != f->n_buckets) {
        return false;
    }
    for (size_t i = 0; i < d->n_buckets; i++) {
        if (d->buckets[i] != f->buckets[i]) {
            return false;
        }
    }
    return true;
}

/* A series of d for the key bytes (n_labels label pairs, then the slot for per-worker gauges),
 * taking a reference on d. Returns 0 or -ENOMEM. */
static int series_new(struct metrics_app *ma, struct mdef *d, const char *key, size_t len,
                      size_t n_labels, uint64_t hash, struct mseries **ret)
{
    struct mseries *s = calloc(1, sizeof *s);
    if (!s || !(s->key = malloc(len))) {
        goto fail;
    }
    memcpy(s->key, key, len);
    if (n_labels > 0 && !(s->labels = calloc(n_labels, sizeof *s->labels))) {
        goto fail;
    }
    const char *p = s->key + strlen(s->key) + 1;
    for (size_t i = 0; i < n_labels; i++) {
        s->labels[i].name = p;
        p += strlen(p) + 1;
        s->labels[i].value = p;
        p += strlen(p) + 1;
    }
    s->n_labels = n_labels;
    s->pre[0] = ma->pre;
    if (d->agg == AGG_WORKER) {
        snprintf(s->slot_text, sizeof s->slot_text, "%s", p);
        s->pre[1] = (struct prom_label){"worker", s->slot_text};
    }
    if (d->type == PROM_HISTOGRAM) {
        s->r_counts = calloc(2 * (d->n_buckets + 1), sizeof *s->r_counts);
        if (!s->r_counts) {
            goto fail;
        }
        s->a_counts = s->r_counts + d->n_buckets + 1;
    }
    s->cost = d->type == PROM_HISTOGRAM ? d->n_buckets + 3 : 1;
    s->def = d;
    s->h = (struct hnode){.hash = hash, .key = s->key, .key_len = len};
    if (htab_add(&ma->series, &s->h) < 0) {
        goto fail;
    }
    s->prev = d->series_last;
    if (d->series_last) {
        d->series_last->next = s;
    } else {
        d->series = s;
    }
    d->series_last = s;
    d->refs++;
    ma->series_cost += s->cost;
    *ret = s;
    return 0;
fail:
    if (s) {
        series_free(s);
    }
    return -ENOMEM;
}

/* ---- parsing a snapshot ---- */

static int scratch_put(struct metrics_app *ma, const char *s, size_t n)
{
    if (ma->scratch_len + n > ma->scratch_cap) {
        size_t cap = ma->scratch_cap ? ma->scratch_cap : 4096;
        while (cap < ma->scratch_len + n) {
            cap *= 2;
        }
        char *p = realloc(ma->scratch, cap);
        if (!p) {
            return -ENOMEM;
        }
        ma->scratch = p;
        ma->scratch_cap = cap;
    }
    memcpy(ma->scratch + ma->scratch_len, s, n);
    ma->scratch_len += n;
    return 0;
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

/* Reads an optional string member: NULL (absent or null) or the string; -EPROTO otherwise. */
static int member_string(json_t *obj, const char *key, const char **ret)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *ret = NULL;
        return 0;
    }
    if (!json_is_string(v)) {
        return -EPROTO;
    }
    *ret = json_string_value(v);
    return 0;
}

#define PROTO(why)                                                                                \
    do {                                                                                          \
        *ret_error = (why);                                                                       \
        return -EPROTO;                                                                           \
    } while (0)

/* The sample's key (see the top of this file) appended to the scratch buffer. */
static int parse_labels(struct metrics_app *ma, const struct mfamily *f, json_t *labels,
                        const char *slot, struct msample *out, const char **ret_error)
{
    struct prom_label set[METRICS_MAX_LABELS] = {{0}};
    size_t n = 0;
    if (labels && !json_is_null(labels)) {
        if (!json_is_object(labels)) {
            PROTO("labels is not an object");
        }
        if (json_object_size(labels) > METRICS_MAX_LABELS) {
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
    out->key_off = ma->scratch_len;
    int r = scratch_put(ma, f->name, strlen(f->name) + 1);
    for (size_t i = 0; r == 0 && i < n; i++) {
        r = scratch_put(ma, set[i].name, strlen(set[i].name) + 1);
        if (r == 0) {
            r = scratch_put(ma, set[i].value, strlen(set[i].value) + 1);
        }
    }
    if (r == 0 && f->agg == AGG_WORKER) {
        /* Gauges merged per worker are one series per slot. */
        r = scratch_put(ma, slot, strlen(slot) + 1);
    }
    out->key_len = ma->scratch_len - out->key_off;
    out->n_labels = n;
    return r;
}

static int parse_sample(struct metrics_app *ma, const struct mfamily *f, json_t *js,
                        const char *slot, double *counts, struct msample *out,
                        const char **ret_error)
{
    if (!json_is_object(js)) {
        PROTO("a sample is not an object");
    }
    int r = parse_labels(ma, f, json_object_get(js, "labels"), slot, out, ret_error);
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
 * the pass that sizes a snapshot's storage (snap_measure) and by the pass that fills it
 * (parse_family_head), so that they agree on which families take pool doubles. The filling
 * pass also checks every write against what was sized (snap_parse), so that even a future
 * disagreement refuses the snapshot instead of writing past the storage. Returns 0 or -EINVAL.
 */
static int family_type(json_t *jf, enum prom_type *ret)
{
    const char *s = NULL;
    if (member_string(jf, "type", &s) < 0 || prom_type_from_string(s, ret) < 0) {
        return -EINVAL;
    }
    return 0;
}

/* The family's own fields (not its samples) into f; its buckets into buckets, which has room
 * for room doubles. */
static int parse_family_head(json_t *jf, double *buckets, size_t room, struct mfamily *f,
                             const char **ret_error)
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
    if (member_string(jf, "help", &f->help) < 0) {
        PROTO("a family's help is not a string");
    }
    if (!f->help) {
        f->help = "";
    }
    if (member_string(jf, "agg", &s) < 0) {
        PROTO("a family's agg is not a string");
    }
    f->agg = AGG_SUM;
    if (s) {
        size_t i = 0;
        while (i < AGG_COUNT && strcmp(s, agg_names[i]) != 0) {
            i++;
        }
        if (i == AGG_COUNT) {
            PROTO("agg is not sum, max, min, avg or worker");
        }
        if (f->type != PROM_GAUGE && i != AGG_SUM) {
            PROTO("counters and histograms are always summed (agg applies to gauges)");
        }
        f->agg = (enum metrics_agg)i;
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
static int snap_measure(json_t *families, size_t *ret_samples, size_t *ret_pool,
                        const char **ret_error)
{
    size_t n_samples = 0, pool = 0, cost = 0;
    if (json_array_size(families) > METRICS_MAX_FAMILIES) {
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
            if (nb > METRICS_MAX_BUCKETS) {
                PROTO("a histogram has more than 100 buckets");
            }
            pool += nb + n * (nb + 1);
            cost += n * (nb + 3);
        } else {
            cost += n;
        }
        n_samples += n;
        if (cost > METRICS_MAX_SERIES) {
            *ret_error = "too many series";
            return -E2BIG;
        }
    }
    *ret_samples = n_samples;
    *ret_pool = pool;
    return 0;
}

/* Parses families of a worker in slot into a new snapshot whose keys are in the scratch
 * buffer. Returns 0, -EPROTO or -E2BIG with *ret_error, or -ENOMEM. */
static int snap_parse(struct metrics_app *ma, json_t *families, const char *slot,
                      struct msnap **ret, const char **ret_error)
{
    size_t n_samples = 0, n_pool = 0;
    struct msnap *sn = NULL;
    int r;

    if (!json_is_array(families)) {
        PROTO("families is not an array");
    }
    r = snap_measure(families, &n_samples, &n_pool, ret_error);
    if (r < 0) {
        return r;
    }
    r = -ENOMEM;
    sn = calloc(1, sizeof *sn);
    if (!sn) {
        goto out;
    }
    size_t n_fams = json_array_size(families);
    sn->fams = calloc(n_fams ? n_fams : 1, sizeof *sn->fams);
    sn->samples = calloc(n_samples ? n_samples : 1, sizeof *sn->samples);
    sn->pool = calloc(n_pool ? n_pool : 1, sizeof *sn->pool);
    if (!sn->fams || !sn->samples || !sn->pool) {
        goto out;
    }
    ma->scratch_len = 0;
    size_t k = 0, pool = 0;
    for (size_t i = 0; i < n_fams; i++) {
        json_t *jf = json_array_get(families, i);
        struct mfamily *f = &sn->fams[i];
        r = parse_family_head(jf, sn->pool + pool, n_pool - pool, f, ret_error);
        if (r < 0) {
            goto out;
        }
        pool += f->n_buckets;
        json_t *samples = json_object_get(jf, "samples");
        f->samples = sn->samples + k;
        f->n_samples = json_array_size(samples);
        /* Every write below stays within what snap_measure sized: a family that would not fit
         * refuses the snapshot (see family_type). */
        size_t per_sample = f->type == PROM_HISTOGRAM ? f->n_buckets + 1 : 0;
        if (f->n_samples > n_samples - k || per_sample * f->n_samples > n_pool - pool) {
            *ret_error = "a family's samples do not fit the snapshot's measured size";
            r = -EPROTO;
            goto out;
        }
        for (size_t j = 0; j < f->n_samples; j++) {
            struct msample *s = &f->samples[j];
            r = parse_sample(ma, f, json_array_get(samples, j), slot, sn->pool + pool, s,
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
    sn->n_fams = n_fams;
    sn->n_samples = k;
    *ret = sn;
    sn = NULL;
    r = 0;
out:
    snap_free(sn);
    return r;
}

#undef PROTO

/* ---- installing a snapshot ---- */

/* Drops every reference the snapshot's accepted families hold. */
static void snap_detach(struct metrics_app *ma, struct msnap *sn)
{
    for (size_t i = 0; i < sn->n_fams; i++) {
        struct mfamily *f = &sn->fams[i];
        for (size_t j = 0; j < f->n_samples; j++) {
            if (f->samples[j].series) {
                series_unref(ma, f->samples[j].series);
                f->samples[j].series = NULL;
            }
        }
        if (f->def) {
            def_unref(ma, f->def);
            f->def = NULL;
        }
    }
}

/* Finds or creates the series of sample s of family f and takes a reference on it. */
static int sample_attach(struct metrics_app *ma, struct mfamily *f, struct msample *s,
                         const char **ret_error)
{
    const char *key = ma->scratch + s->key_off;
    uint64_t hash = hash_bytes(key, s->key_len);
    struct hnode *node = htab_find(&ma->series, key, s->key_len, hash);
    struct mseries *series = node ? (struct mseries *)node : NULL;
    if (series && series->stamp == ma->stamp) {
        *ret_error = "a series (family and label set) appears twice";
        return -EPROTO;
    }
    if (!series) {
        int r = series_new(ma, f->def, key, s->key_len, s->n_labels, hash, &series);
        if (r < 0) {
            return r;
        }
    }
    series->stamp = ma->stamp;
    series->refs++;
    s->series = series;
    return 0;
}

/*
 * Resolves every family of sn against the app's definitions (conflicting ones are dropped and
 * counted) and attaches its samples. On failure sn is detached again. Returns 0, -EPROTO with
 * *ret_error (a repeated family or series), -E2BIG (too many families for the app), -ENOMEM.
 */
static int snap_attach(struct metrics_app *ma, struct msnap *sn, const char **ret_error)
{
    size_t kept = 0;
    int r = 0;
    ma->stamp++;
    for (size_t i = 0; i < sn->n_fams; i++) {
        struct mfamily f = sn->fams[i];
        f.def = NULL;
        size_t len = strlen(f.name);
        uint64_t hash = hash_bytes(f.name, len);
        struct hnode *node = htab_find(&ma->defs, f.name, len, hash);
        struct mdef *d = node ? (struct mdef *)node : NULL;
        if (d && d->stamp == ma->stamp) {
            *ret_error = "a family appears twice";
            r = -EPROTO;
            break;
        }
        if (d && !def_agrees(d, &f)) {
            d->stamp = ma->stamp; /* so that a second family of that name is still refused */
            sn->conflicts++;
            continue;
        }
        if (!d && (r = def_new(ma, &f, hash, &d)) < 0) {
            break;
        }
        d->stamp = ma->stamp;
        d->refs++;
        f.def = d;
        sn->fams[kept++] = f;
        for (size_t j = 0; j < f.n_samples; j++) {
            r = sample_attach(ma, &sn->fams[kept - 1], &f.samples[j], ret_error);
            if (r < 0) {
                break;
            }
            sn->cost += f.def->type == PROM_HISTOGRAM ? f.def->n_buckets + 3 : 1;
        }
        if (r < 0) {
            break;
        }
    }
    sn->n_fams = kept;
    if (r < 0) {
        snap_detach(ma, sn);
    }
    return r;
}

/* Keeps the list sorted by slot, then key: the last of a slot is its newest worker. */
static void snap_link(struct metrics_app *ma, struct msnap *sn)
{
    struct msnap **p = &ma->snaps;
    while (*p && ((*p)->slot < sn->slot || ((*p)->slot == sn->slot && (*p)->key < sn->key))) {
        p = &(*p)->next;
    }
    sn->next = *p;
    *p = sn;
}

static void snap_unlink(struct metrics_app *ma, struct msnap *sn)
{
    for (struct msnap **p = &ma->snaps; *p; p = &(*p)->next) {
        if (*p == sn) {
            *p = sn->next;
            return;
        }
    }
}

/* What the app's distinct series would cost once old is gone (old is still attached). */
static size_t cost_without(const struct metrics_app *ma, const struct msnap *old)
{
    size_t cost = ma->series_cost;
    for (size_t i = 0; old && i < old->n_fams; i++) {
        const struct mfamily *f = &old->fams[i];
        for (size_t j = 0; j < f->n_samples; j++) {
            if (f->samples[j].series->refs == 1) {
                cost -= f->samples[j].series->cost;
            }
        }
    }
    return cost;
}

int metrics_app_update(struct metrics_app *ma, uint64_t key, int slot, json_t *families,
                       double now, const char **ret_error)
{
    struct msnap *sn = NULL;
    struct msnap *old = snap_find(ma, key);
    enum metrics_refusal reason = METRICS_REFUSED_WORKER_LIMIT;
    const char *why = NULL;
    char slot_text[12];

    snprintf(slot_text, sizeof slot_text, "%d", slot);
    int r = snap_parse(ma, families, slot_text, &sn, &why);
    if (r < 0) {
        goto out;
    }
    sn->key = key;
    sn->slot = slot;
    sn->at = now;
    memcpy(sn->slot_text, slot_text, sizeof slot_text);
    sn->pre[0] = ma->pre;
    sn->pre[1] = (struct prom_label){"worker", sn->slot_text};
    /* From here on a limit is the app's: the snapshot itself was within the worker's. */
    reason = METRICS_REFUSED_APP_LIMIT;
    r = snap_attach(ma, sn, &why);
    if (r == -E2BIG) {
        why = "over the app's family limit";
    }
    if (r < 0) {
        goto out;
    }
    size_t stored = ma->stored - (old ? old->cost : 0) + sn->cost;
    if (cost_without(ma, old) > METRICS_MAX_APP_SERIES || stored > METRICS_MAX_APP_STORED) {
        snap_detach(ma, sn);
        why = "over the app's series limit";
        r = -E2BIG;
        goto out;
    }
    if (old) {
        snap_unlink(ma, old);
        snap_detach(ma, old);
        ma->stored -= old->cost;
        snap_free(old);
    }
    snap_link(ma, sn);
    ma->stored += sn->cost;
    ma->accepted++;
    sn = NULL;
out:
    snap_free(sn);
    if (r == -EPROTO) {
        ma->refused[METRICS_REFUSED_MALFORMED]++;
    } else if (r == -E2BIG) {
        ma->refused[reason]++;
    }
    if (r < 0 && ret_error) {
        *ret_error = why ? why : "out of memory";
    }
    return r;
}

void metrics_app_retire(struct metrics_app *ma, uint64_t key)
{
    struct msnap *sn = snap_find(ma, key);
    if (!sn) {
        return;
    }
    for (size_t i = 0; i < sn->n_fams; i++) {
        const struct mfamily *f = &sn->fams[i];
        if (f->def->type == PROM_GAUGE) {
            continue;
        }
        for (size_t j = 0; j < f->n_samples; j++) {
            const struct msample *s = &f->samples[j];
            struct mseries *series = s->series;
            if (!series->retired) {
                series->retired = true;
                series->refs++;
            }
            series->r_value += s->value;
            if (f->def->type == PROM_HISTOGRAM) {
                for (size_t b = 0; b <= f->def->n_buckets; b++) {
                    series->r_counts[b] += s->counts[b];
                }
                series->r_sum += s->sum;
                series->r_count += s->count;
            }
        }
    }
    snap_unlink(ma, sn);
    snap_detach(ma, sn);
    ma->stored -= sn->cost;
    snap_free(sn);
}

/* ---- the page ---- */

/* Merges one app's live snapshots into its series (a_*), and counts what each definition will
 * put on the page (n_out). */
static void app_merge(struct metrics_app *ma)
{
    for (struct mdef *d = ma->def_first; d; d = d->next) {
        d->n_out = 0;
        d->out = NULL;
        d->out_n = 0;
        for (struct mseries *s = d->series; s; s = s->next) {
            s->seen = false;
            s->n_seen = 0;
            s->a_value = s->a_sum = s->a_count = 0;
            if (s->a_counts) {
                memset(s->a_counts, 0, sizeof *s->a_counts * (d->n_buckets + 1));
            }
        }
    }
    for (struct msnap *sn = ma->snaps; sn; sn = sn->next) {
        sn->wins = !sn->next || sn->next->slot != sn->slot;
        for (size_t i = 0; i < sn->n_fams; i++) {
            const struct mfamily *f = &sn->fams[i];
            const struct mdef *d = f->def;
            for (size_t j = 0; j < f->n_samples; j++) {
                const struct msample *smp = &f->samples[j];
                struct mseries *s = smp->series;
                double v = smp->value;
                if (d->type == PROM_HISTOGRAM) {
                    for (size_t b = 0; b <= d->n_buckets; b++) {
                        s->a_counts[b] += smp->counts[b];
                    }
                    s->a_sum += smp->sum;
                    s->a_count += smp->count;
                } else if (d->agg == AGG_MAX) {
                    s->a_value = !s->seen || v > s->a_value ? v : s->a_value;
                } else if (d->agg == AGG_MIN) {
                    s->a_value = !s->seen || v < s->a_value ? v : s->a_value;
                } else if (d->agg == AGG_WORKER) {
                    /* Two workers share a slot while one replaces the other: the newest
                     * speaks for the slot. */
                    if (!s->seen || sn->key > s->seen_key) {
                        s->a_value = v;
                        s->seen_key = sn->key;
                    }
                } else {
                    s->a_value += v; /* sum, avg, counters */
                }
                s->seen = true;
                s->n_seen++;
            }
        }
    }
    for (struct mdef *d = ma->def_first; d; d = d->next) {
        for (struct mseries *s = d->series; s; s = s->next) {
            d->n_out += s->seen || s->retired;
        }
    }
    if (!ma->per_worker) {
        return;
    }
    for (struct msnap *sn = ma->snaps; sn; sn = sn->next) {
        for (size_t i = 0; sn->wins && i < sn->n_fams; i++) {
            struct mdef *d = sn->fams[i].def;
            if (d->agg != AGG_WORKER) {
                d->n_out += sn->fams[i].n_samples;
            }
        }
    }
}

/* Writes the definition's merged series into d->out. */
static void def_emit(struct mdef *d)
{
    for (struct mseries *s = d->series; s; s = s->next) {
        if (!s->seen && !s->retired) {
            continue;
        }
        struct prom_sample *o = &d->out[d->out_n++];
        *o = (struct prom_sample){.pre = s->pre, .n_pre = d->agg == AGG_WORKER ? 2 : 1,
                                  .labels = s->labels, .n_labels = s->n_labels};
        if (d->type == PROM_HISTOGRAM) {
            for (size_t b = 0; b <= d->n_buckets; b++) {
                s->a_counts[b] += s->r_counts[b];
            }
            o->counts = s->a_counts;
            o->sum = s->a_sum + s->r_sum;
            o->count = s->a_count + s->r_count;
        } else if (d->type == PROM_COUNTER) {
            o->value = s->a_value + s->r_value;
        } else if (d->agg == AGG_AVG) {
            o->value = s->a_value / (double)s->n_seen;
        } else {
            o->value = s->a_value;
        }
    }
}

/* The per-worker view (metrics_per_worker): each slot's newest worker, its own values. */
static void app_emit_per_worker(struct metrics_app *ma)
{
    for (struct msnap *sn = ma->snaps; sn; sn = sn->next) {
        for (size_t i = 0; sn->wins && i < sn->n_fams; i++) {
            const struct mfamily *f = &sn->fams[i];
            struct mdef *d = f->def;
            if (d->agg == AGG_WORKER || !d->out) {
                continue;
            }
            for (size_t j = 0; j < f->n_samples; j++) {
                const struct msample *smp = &f->samples[j];
                d->out[d->out_n++] = (struct prom_sample){
                    .pre = sn->pre, .n_pre = 2, .labels = smp->series->labels,
                    .n_labels = smp->series->n_labels, .value = smp->value,
                    .counts = smp->counts, .sum = smp->sum, .count = smp->count};
            }
        }
    }
}

struct page_entry {
    const char *name;
    struct mdef *def;           /* NULL once left off the page */
    struct metrics_app *ma;
    size_t app_index;
    size_t group;               /* the index of the first entry of the same name */
};

static int entry_cmp(const void *a, const void *b)
{
    const struct page_entry *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c != 0) {
        return c;
    }
    return (x->app_index > y->app_index) - (x->app_index < y->app_index);
}

/* Leaves the entry off the page, counted as a conflict of its app. */
static void entry_hide(struct page_entry *e)
{
    if (e->def) {
        e->ma->hidden++;
        e->def = NULL;
    }
}

/* Hides every entry named name. Entries are sorted by name. */
static void entries_hide_name(struct page_entry *e, size_t n, const char *name)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(e[mid].name, name) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    for (size_t i = lo; i < n && strcmp(e[i].name, name) == 0; i++) {
        entry_hide(&e[i]);
    }
}

/* Whether the entry may share its name's TYPE line with the group's head. */
static bool entry_agrees(const struct page_entry *head, const struct page_entry *e)
{
    const struct mdef *h = head->def, *d = e->def;
    if (h->type != d->type || h->n_buckets != d->n_buckets) {
        return false;
    }
    for (size_t b = 0; b < d->n_buckets; b++) {
        if (h->buckets[b] != d->buckets[b]) {
            return false;
        }
    }
    return true;
}

void metrics_page_done(struct metrics_page *page)
{
    free(page->families);
    free(page->samples);
    *page = (struct metrics_page){0};
}

int metrics_page_build(struct metrics_app *const *apps, size_t n, struct metrics_page *ret)
{
    struct page_entry *e = NULL;
    struct metrics_page page = {0};
    size_t n_e = 0, cap = 0;
    int r = -ENOMEM;

    for (size_t i = 0; i < n; i++) {
        apps[i]->hidden = 0;
        app_merge(apps[i]);
        for (struct mdef *d = apps[i]->def_first; d; d = d->next) {
            cap += d->n_out > 0;
        }
    }
    e = calloc(cap ? cap : 1, sizeof *e);
    if (!e) {
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        for (struct mdef *d = apps[i]->def_first; d; d = d->next) {
            if (d->n_out > 0) {
                e[n_e++] = (struct page_entry){d->name, d, apps[i], i, 0};
            }
        }
    }
    qsort(e, n_e, sizeof *e, entry_cmp);

    /* One TYPE line per name: the first app's family keeps it; another app's family of that
     * name that does not agree stays off the page. */
    for (size_t i = 0; i < n_e; i++) {
        e[i].group = i > 0 && strcmp(e[i - 1].name, e[i].name) == 0 ? e[i - 1].group : i;
        if (e[i].group != i && !entry_agrees(&e[e[i].group], &e[i])) {
            entry_hide(&e[i]);
        }
    }
    /* A histogram X owns the names X_bucket, X_sum and X_count: a family so named would be
     * read as part of it by a scraper. */
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    for (size_t i = 0; i < n_e; i++) {
        if (e[i].group != i || !e[i].def || e[i].def->type != PROM_HISTOGRAM) {
            continue;
        }
        for (size_t k = 0; k < sizeof suffixes / sizeof suffixes[0]; k++) {
            char name[1024];
            if (snprintf(name, sizeof name, "%s%s", e[i].name, suffixes[k]) < (int)sizeof name) {
                entries_hide_name(e, n_e, name);
            }
        }
    }

    size_t n_samples = 0, n_families = 0;
    for (size_t i = 0; i < n_e; i++) {
        if (e[i].def) {
            n_samples += e[i].def->n_out;
            n_families += e[i].group == i;
        }
    }
    page.samples = calloc(n_samples ? n_samples : 1, sizeof *page.samples);
    page.families = calloc(n_families ? n_families : 1, sizeof *page.families);
    if (!page.samples || !page.families) {
        goto out;
    }
    size_t off = 0;
    struct prom_family *f = NULL;
    for (size_t i = 0; i < n_e; i++) {
        struct mdef *d = e[i].def;
        if (!d) {
            continue;
        }
        /* A visible entry's head is visible: heads are only hidden with their whole name. */
        d->out = page.samples + off;
        off += d->n_out;
        if (e[i].group == i) {
            f = &page.families[page.n_families++];
            *f = (struct prom_family){.name = d->name, .help = d->help, .type = d->type,
                                      .buckets = d->buckets, .n_buckets = d->n_buckets,
                                      .samples = d->out};
        }
        f->n_samples += d->n_out;
        def_emit(d);
    }
    for (size_t i = 0; i < n; i++) {
        if (apps[i]->per_worker) {
            app_emit_per_worker(apps[i]);
        }
    }
    *ret = page;
    page = (struct metrics_page){0};
    r = 0;
out:
    metrics_page_done(&page);
    free(e);
    return r;
}
