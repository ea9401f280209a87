/*
 * metrics: families and their merge. See metrics.h.
 *
 * The store of an app has three layers, each pointing to the one below:
 *
 *   snapshots   one per live worker that sent one: its families and samples, as the parser
 *               (snapshot.c) read them
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
 * Replacing a snapshot is transactional: the new one is parsed and checked whole (snapshot.c:
 * the family format and the per-worker limits), then attached (taking references, creating
 * series), and only then is the old one detached. When a check that needs the attached state
 * fails (a duplicate series, a limit), the new snapshot is detached again, which undoes exactly
 * what attaching did, and the old one stays as it was.
 *
 * A series is keyed by the bytes the parser builds for each sample (see snapshot.h): the
 * family name and the non-empty labels in name order, and for gauges merged per worker the
 * slot. What only the store can check is checked here: a family or series given twice in one
 * snapshot, a family that disagrees with the app's definition, the per-app limits.
 */
#include "metrics.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    enum snapshot_agg agg;
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

/*
 * A live worker's snapshot, as snapshot_parse() read it, with what the store adds: the
 * definition of each family and the series of each sample. Once attached, snap.families holds
 * only the families that agree with the app's definitions, and defs[i] is the definition of
 * snap.families[i]; series[] runs parallel to snap.samples (see snap_series). The names the
 * families borrowed from the JSON are only read while attaching.
 */
struct msnap {
    struct msnap *next;         /* sorted by slot, then key */
    uint64_t key;
    int slot;
    double at;
    struct snapshot snap;
    struct mdef **defs;
    struct mseries **series;
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
    struct snapshot_keys keys;      /* series keys of the snapshot being installed */
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
    snapshot_done(&sn->snap);
    free(sn->defs);
    free(sn->series);
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
    snapshot_keys_done(&ma->keys);
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

int metrics_app_touch(struct metrics_app *ma, uint64_t key, double now)
{
    struct msnap *sn = snap_find(ma, key);
    if (!sn) {
        return -ENOENT;
    }
    sn->at = now;
    return 0;
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
static int def_new(struct metrics_app *ma, const struct snapshot_family *f, uint64_t hash,
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

static bool def_agrees(const struct mdef *d, const struct snapshot_family *f)
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
    if (d->agg == SNAPSHOT_AGG_WORKER) {
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

/* ---- installing a snapshot ---- */

/* The series of family f's samples: f->n_samples entries of sn->series. */
static struct mseries **snap_series(const struct msnap *sn, const struct snapshot_family *f)
{
    return sn->series + (f->samples - sn->snap.samples);
}

/* A store snapshot of what the parser read, attached to nothing yet. Takes *parsed (freed on
 * failure too). Returns 0 or -ENOMEM. */
static int snap_new(struct snapshot *parsed, struct msnap **ret)
{
    struct msnap *sn = calloc(1, sizeof *sn);

    if (!sn) {
        snapshot_done(parsed);
        return -ENOMEM;
    }
    sn->snap = *parsed;
    *parsed = (struct snapshot){0};
    sn->defs = calloc(sn->snap.n_families ? sn->snap.n_families : 1, sizeof *sn->defs);
    sn->series = calloc(sn->snap.n_samples ? sn->snap.n_samples : 1, sizeof *sn->series);
    if (!sn->defs || !sn->series) {
        snap_free(sn);
        return -ENOMEM;
    }
    *ret = sn;
    return 0;
}

/* Drops every reference the snapshot's accepted families hold. */
static void snap_detach(struct metrics_app *ma, struct msnap *sn)
{
    for (size_t i = 0; i < sn->snap.n_families; i++) {
        const struct snapshot_family *f = &sn->snap.families[i];
        struct mseries **series = snap_series(sn, f);
        for (size_t j = 0; j < f->n_samples; j++) {
            if (series[j]) {
                series_unref(ma, series[j]);
                series[j] = NULL;
            }
        }
        if (sn->defs[i]) {
            def_unref(ma, sn->defs[i]);
            sn->defs[i] = NULL;
        }
    }
}

/* Finds or creates the series of sample s (of definition d) and takes a reference on it. */
static int sample_attach(struct metrics_app *ma, struct mdef *d, const struct snapshot_sample *s,
                         struct mseries **ret_series, const char **ret_error)
{
    const char *key = ma->keys.buf + s->key_off;
    uint64_t hash = hash_bytes(key, s->key_len);
    struct hnode *node = htab_find(&ma->series, key, s->key_len, hash);
    struct mseries *series = node ? (struct mseries *)node : NULL;
    if (series && series->stamp == ma->stamp) {
        *ret_error = "a series (family and label set) appears twice";
        return -EPROTO;
    }
    if (!series) {
        int r = series_new(ma, d, key, s->key_len, s->n_labels, hash, &series);
        if (r < 0) {
            return r;
        }
    }
    series->stamp = ma->stamp;
    series->refs++;
    *ret_series = series;
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
    for (size_t i = 0; i < sn->snap.n_families; i++) {
        struct snapshot_family f = sn->snap.families[i];
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
        sn->snap.families[kept] = f;
        sn->defs[kept] = d;
        kept++;
        struct mseries **series = snap_series(sn, &f);
        for (size_t j = 0; j < f.n_samples; j++) {
            r = sample_attach(ma, d, &f.samples[j], &series[j], ret_error);
            if (r < 0) {
                break;
            }
            sn->cost += d->type == PROM_HISTOGRAM ? d->n_buckets + 3 : 1;
        }
        if (r < 0) {
            break;
        }
    }
    sn->snap.n_families = kept;
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
    for (size_t i = 0; old && i < old->snap.n_families; i++) {
        const struct snapshot_family *f = &old->snap.families[i];
        struct mseries *const *series = snap_series(old, f);
        for (size_t j = 0; j < f->n_samples; j++) {
            if (series[j]->refs == 1) {
                cost -= series[j]->cost;
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
    struct snapshot parsed;
    const char *why = NULL;
    char slot_text[12];

    snprintf(slot_text, sizeof slot_text, "%d", slot);
    int r = snapshot_parse(families, slot_text, &ma->keys, &parsed, &why);
    if (r < 0) {
        goto out;
    }
    r = snap_new(&parsed, &sn);
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
    for (size_t i = 0; i < sn->snap.n_families; i++) {
        const struct snapshot_family *f = &sn->snap.families[i];
        const struct mdef *d = sn->defs[i];
        if (d->type == PROM_GAUGE) {
            continue;
        }
        struct mseries **all = snap_series(sn, f);
        for (size_t j = 0; j < f->n_samples; j++) {
            const struct snapshot_sample *s = &f->samples[j];
            struct mseries *series = all[j];
            if (!series->retired) {
                series->retired = true;
                series->refs++;
            }
            series->r_value += s->value;
            if (d->type == PROM_HISTOGRAM) {
                for (size_t b = 0; b <= d->n_buckets; b++) {
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
        for (size_t i = 0; i < sn->snap.n_families; i++) {
            const struct snapshot_family *f = &sn->snap.families[i];
            const struct mdef *d = sn->defs[i];
            struct mseries **series = snap_series(sn, f);
            for (size_t j = 0; j < f->n_samples; j++) {
                const struct snapshot_sample *smp = &f->samples[j];
                struct mseries *s = series[j];
                double v = smp->value;
                if (d->type == PROM_HISTOGRAM) {
                    for (size_t b = 0; b <= d->n_buckets; b++) {
                        s->a_counts[b] += smp->counts[b];
                    }
                    s->a_sum += smp->sum;
                    s->a_count += smp->count;
                } else if (d->agg == SNAPSHOT_AGG_MAX) {
                    s->a_value = !s->seen || v > s->a_value ? v : s->a_value;
                } else if (d->agg == SNAPSHOT_AGG_MIN) {
                    s->a_value = !s->seen || v < s->a_value ? v : s->a_value;
                } else if (d->agg == SNAPSHOT_AGG_WORKER) {
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
        for (size_t i = 0; sn->wins && i < sn->snap.n_families; i++) {
            struct mdef *d = sn->defs[i];
            if (d->agg != SNAPSHOT_AGG_WORKER) {
                d->n_out += sn->snap.families[i].n_samples;
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
        *o = (struct prom_sample){.pre = s->pre, .n_pre = d->agg == SNAPSHOT_AGG_WORKER ? 2 : 1,
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
        } else if (d->agg == SNAPSHOT_AGG_AVG) {
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
        for (size_t i = 0; sn->wins && i < sn->snap.n_families; i++) {
            const struct snapshot_family *f = &sn->snap.families[i];
            struct mdef *d = sn->defs[i];
            if (d->agg == SNAPSHOT_AGG_WORKER || !d->out) {
                continue;
            }
            struct mseries *const *series = snap_series(sn, f);
            for (size_t j = 0; j < f->n_samples; j++) {
                const struct snapshot_sample *smp = &f->samples[j];
                d->out[d->out_n++] = (struct prom_sample){
                    .pre = sn->pre, .n_pre = 2, .labels = series[j]->labels,
                    .n_labels = series[j]->n_labels, .value = smp->value,
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
