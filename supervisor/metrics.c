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
 * is a plain count of what exists. The merge itself is done at page build time (page.c), over
 * the live snapshots: with max, min and avg gauges there is nothing to keep up to date
 * incrementally, and a scrape of 64 workers x 1000 series is a few tens of thousands of
 * additions.
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

#include "htab.h"
#include "metrics_store.h"

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
    htab_done(&ma->defs);
    htab_done(&ma->series);
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
    const char *key = ma->keys.buf.data + s->key_off;
    uint64_t hash = htab_hash(key, s->key_len);
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
        uint64_t hash = htab_hash(f.name, len);
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

/* ---- upgrade in place (SPEC section 12): the store as channel snapshots, and back ---- */

static json_t *family_json(const struct mdef *d)
{
    json_t *f = json_pack("{s:s, s:s, s:s, s:[]}", "name", d->name, "type",
                          prom_type_to_string(d->type), "help", d->help ? d->help : "",
                          "samples");
    if (f && d->type == PROM_GAUGE) {
        json_object_set_new(f, "agg", json_string(snapshot_agg_to_string(d->agg)));
    }
    if (f && d->type == PROM_HISTOGRAM) {
        json_t *b = json_array();
        for (size_t i = 0; b && i < d->n_buckets; i++) {
            json_array_append_new(b, json_real(d->buckets[i]));
        }
        json_object_set_new(f, "buckets", b);
    }
    return f;
}

static json_t *sample_json(const struct mdef *d, const struct mseries *s, double value,
                           const double *counts, double sum, double count)
{
    json_t *labels = json_object();
    for (size_t i = 0; labels && i < s->n_labels; i++) {
        json_object_set_new(labels, s->labels[i].name, json_string(s->labels[i].value));
    }
    json_t *o = json_pack("{s:o}", "labels", labels);
    if (!o) {
        return NULL;
    }
    if (d->type == PROM_HISTOGRAM) {
        json_t *c = json_array();
        for (size_t b = 0; c && b <= d->n_buckets; b++) {
            json_array_append_new(c, json_real(counts[b]));
        }
        json_object_set_new(o, "counts", c);
        json_object_set_new(o, "sum", json_real(sum));
        json_object_set_new(o, "count", json_real(count));
    } else {
        json_object_set_new(o, "value", json_real(value));
    }
    return o;
}

json_t *metrics_app_save(const struct metrics_app *ma)
{
    json_t *live = json_array(), *retired = json_array();
    json_t *out = json_pack("{s:o, s:o, s:I, s:[I,I,I]}", "live", live, "retired", retired,
                            "accepted", (json_int_t)ma->accepted, "refused",
                            (json_int_t)ma->refused[0], (json_int_t)ma->refused[1],
                            (json_int_t)ma->refused[2]);
    if (!out) {
        return NULL;
    }
    for (const struct msnap *sn = ma->snaps; sn; sn = sn->next) {
        json_t *families = json_array();
        for (size_t i = 0; families && i < sn->snap.n_families; i++) {
            const struct snapshot_family *f = &sn->snap.families[i];
            const struct mdef *d = sn->defs[i];
            json_t *jf = family_json(d);
            json_t *samples = json_object_get(jf, "samples");
            struct mseries **all = snap_series(sn, f);
            for (size_t j = 0; samples && j < f->n_samples; j++) {
                const struct snapshot_sample *s = &f->samples[j];
                json_array_append_new(samples,
                                      sample_json(d, all[j], s->value, s->counts, s->sum, s->count));
            }
            json_array_append_new(families, jf);
        }
        json_array_append_new(live, json_pack("{s:I, s:i, s:f, s:o}", "key", (json_int_t)sn->key,
                                              "slot", sn->slot, "at", sn->at, "families",
                                              families));
    }
    for (const struct mdef *d = ma->def_first; d; d = d->next) {
        json_t *jf = NULL;
        for (const struct mseries *s = d->series; s; s = s->next) {
            if (!s->retired) {
                continue;
            }
            if (!jf && !(jf = family_json(d))) {
                break;
            }
            json_array_append_new(json_object_get(jf, "samples"),
                                  sample_json(d, s, s->r_value, s->r_counts, s->r_sum, s->r_count));
        }
        if (jf) {
            json_array_append_new(retired, jf);
        }
    }
    return out;
}

/* Retired totals come back as snapshots of made-up workers that retire at once, in pieces
 * within the per-worker bounds. Their keys are far from any real worker's. */
static int metrics_restore_retired(struct metrics_app *ma, const json_t *families, double now)
{
    uint64_t key = UINT64_MAX;
    size_t i = 0, n = json_array_size(families);
    int r = 0;
    while (r == 0 && i < n) {
        json_t *piece = json_array();
        size_t samples = 0;
        while (piece && i < n && json_array_size(piece) < METRICS_MAX_FAMILIES / 2) {
            json_t *f = json_array_get(families, i);
            size_t k = json_array_size(json_object_get(f, "samples"));
            size_t cost = k * (1 + json_array_size(json_object_get(f, "buckets")) + 3);
            if (json_array_size(piece) > 0 && samples + cost > METRICS_MAX_SERIES / 2) {
                break;
            }
            samples += cost;
            json_array_append(piece, f);
            i++;
        }
        if (!piece) {
            return -ENOMEM;
        }
        const char *why = NULL;
        r = metrics_app_update(ma, key, -1, piece, now, &why);
        json_decref(piece);
        if (r == 0) {
            metrics_app_retire(ma, key);
        }
        key--;
    }
    return r;
}

int metrics_app_restore(struct metrics_app *ma, const json_t *saved, double now)
{
    int r = metrics_restore_retired(ma, json_object_get(saved, "retired"), now);
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(saved, "live"), i, v) {
        const char *why = NULL;
        json_t *families = json_object_get(v, "families");
        int k = metrics_app_update(ma, (uint64_t)json_integer_value(json_object_get(v, "key")),
                                   (int)json_integer_value(json_object_get(v, "slot")), families,
                                   json_real_value(json_object_get(v, "at")), &why);
        r = r < 0 ? r : k;
    }
    ma->accepted = (uint64_t)json_integer_value(json_object_get(saved, "accepted"));
    for (size_t j = 0; j < METRICS_REFUSED_COUNT; j++) {
        ma->refused[j] = (uint64_t)json_integer_value(
            json_array_get(json_object_get(saved, "refused"), j));
    }
    return r;
}

double metrics_app_counter_sum(const struct metrics_app *ma, const char *suffix)
{
    size_t sl = strlen(suffix);
    double sum = 0;
    /* As the page merges a counter: every live worker's value plus the retired totals. */
    for (const struct mdef *d = ma->def_first; d; d = d->next) {
        size_t n = strlen(d->name);
        if (d->type != PROM_COUNTER || n < sl || strcmp(d->name + n - sl, suffix) != 0) {
            continue;
        }
        for (const struct mseries *s = d->series; s; s = s->next) {
            sum += s->retired ? s->r_value : 0;
        }
    }
    for (const struct msnap *sn = ma->snaps; sn; sn = sn->next) {
        for (size_t i = 0; i < sn->snap.n_families; i++) {
            const struct mdef *d = sn->defs[i];
            size_t n = strlen(d->name);
            if (d->type != PROM_COUNTER || n < sl || strcmp(d->name + n - sl, suffix) != 0) {
                continue;
            }
            const struct snapshot_family *f = &sn->snap.families[i];
            for (size_t j = 0; j < f->n_samples; j++) {
                sum += f->samples[j].value;
            }
        }
    }
    return sum;
}
