/*
 * metrics_store: the inside of metrics.c's store, shared with the page builder (page.c), which
 * merges what the store holds. Nothing else includes it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "htab.h"
#include "metrics.h"
#include "prom.h"
#include "snapshot.h"

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

/* The series of family f's samples: f->n_samples entries of sn->series. */
static inline struct mseries **snap_series(const struct msnap *sn, const struct snapshot_family *f)
{
    return sn->series + (f->samples - sn->snap.samples);
}
