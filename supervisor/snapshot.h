/*
 * snapshot: one worker's metrics snapshot (the "families" of a channel message, SPEC section 4)
 * read from its JSON into checked families and samples. Pure: no I/O, no logging.
 *
 * A snapshot comes from a worker, so nothing in it is trusted: every family, sample, label and
 * number is checked against the family format, and its size against the per-worker limits
 * before anything is allocated (a first pass only counts). What comes out is what the metrics
 * store (metrics.c) merges: each sample with its series key already built, histogram counts
 * checked cumulative, the merge mode of each family known. The store decides the rest, which
 * needs what it holds: whether a family or series appears twice, whether a family agrees with
 * the app's definition, the per-app limits.
 *
 * A series is keyed by its bytes: the family name, then each label name and value in name
 * order, each ending in NUL (JSON strings from jansson never contain one), and for gauges
 * merged per worker the slot. Labels with an empty value are dropped first, because Prometheus
 * treats code="" exactly as no code label at all.
 */
#pragma once

#include <jansson.h>
#include <stddef.h>

#include "bytebuf.h"
#include "prom.h"

/* Per worker snapshot: families, series (see metrics.h), buckets per histogram, labels per
 * sample. */
#define SNAPSHOT_MAX_FAMILIES 1000
#define SNAPSHOT_MAX_SERIES 10000
#define SNAPSHOT_MAX_BUCKETS 100
#define SNAPSHOT_MAX_LABELS 32

/* How the workers' values of a gauge combine; counters and histograms are always summed. */
enum snapshot_agg {
    SNAPSHOT_AGG_SUM,
    SNAPSHOT_AGG_MAX,
    SNAPSHOT_AGG_MIN,
    SNAPSHOT_AGG_AVG,
    SNAPSHOT_AGG_WORKER, /* never merged: one series per worker slot */
    SNAPSHOT_AGG__COUNT,
};

struct snapshot_sample {
    size_t key_off;             /* the series key: keys->buf.data + key_off (see snapshot_parse) */
    size_t key_len;             /* with its last NUL */
    size_t n_labels;            /* label pairs in the key (empty ones dropped) */
    double value;               /* counters and gauges; a counter's is >= 0 */
    const double *counts;       /* histograms: n_buckets + 1, cumulative, the last for +Inf */
    double sum;
    double count;               /* histograms: counts[n_buckets] */
};

struct snapshot_family {
    const char *name;           /* a valid metric name, not drover_*; borrowed from the JSON */
    const char *help;           /* "" when not given; borrowed from the JSON */
    enum prom_type type;
    enum snapshot_agg agg;      /* SNAPSHOT_AGG_SUM unless a gauge says otherwise */
    const double *buckets;      /* histograms: strictly ascending upper bounds, without +Inf */
    size_t n_buckets;
    struct snapshot_sample *samples;    /* into the snapshot's samples */
    size_t n_samples;
};

/* A snapshot, owning its arrays (free with snapshot_done). */
struct snapshot {
    struct snapshot_family *families;
    size_t n_families;
    struct snapshot_sample *samples;    /* every family's samples, in family order */
    size_t n_samples;
    double *pool;                       /* every bucket bound and histogram count */
};

/*
 * Where snapshot_parse writes series keys. The caller keeps one across parses, so that its
 * memory is reused rather than allocated per snapshot: each parse empties it first. Zero it to
 * begin; release with snapshot_keys_done.
 */
struct snapshot_keys {
    struct bytebuf buf;         /* never consumed: a key is at buf.data + key_off */
};

/*
 * Reads families (a JSON array as sent on the channel; borrowed, and it must outlive the
 * snapshot, whose names point into it) of the worker in slot `slot` (its decimal text, part of
 * the keys of per-worker gauges). The samples' keys go to keys, emptied first; they stay valid
 * until keys is used for another parse. On success stores the snapshot in *ret and returns 0.
 * Otherwise returns -EPROTO (not the family format) or -E2BIG (over the per-worker limits),
 * each with a static reason in *ret_error, or -ENOMEM; *ret is untouched.
 */
int snapshot_parse(json_t *families, const char *slot, struct snapshot_keys *keys,
                   struct snapshot *ret, const char **ret_error);

/* Frees the snapshot's arrays (not what it borrowed) and zeroes it. */
void snapshot_done(struct snapshot *sn);

void snapshot_keys_done(struct snapshot_keys *keys);

/* "sum", "max", "min", "avg", "worker" (the family format's agg); NULL out of range. */
const char *snapshot_agg_to_string(enum snapshot_agg agg);
