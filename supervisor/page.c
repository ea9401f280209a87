/*
 * page: the combined metrics page of several apps' stores. See page.h.
 *
 * Two steps per build: each app's live snapshots are merged into its series (sums, and max, min
 * or avg for gauges), then the apps' families are sorted by name into one list, from which a
 * name that two apps (or a histogram's own series) would use for different things is left out
 * and counted against the app that came later.
 */
#include "page.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics_store.h"

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

void page_done(struct page *page)
{
    free(page->families);
    free(page->samples);
    *page = (struct page){0};
}

int page_build(struct metrics_app *const *apps, size_t n, struct page *ret)
{
    struct page_entry *e = NULL;
    struct page page = {0};
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
    page = (struct page){0};
    r = 0;
out:
    page_done(&page);
    free(e);
    return r;
}
