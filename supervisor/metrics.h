/*
 * metrics: every worker's latest snapshot, merged per app (SPEC section 6). Pure: no I/O.
 *
 * Counters and histograms are summed over live workers plus what every exited worker had
 * counted when it left, so a counter on the combined page never goes down through crashes,
 * reloads and scale-downs; gauges follow their merge mode. Every store is bounded (families and
 * series per worker and per app); what does not fit is refused and counted. A snapshot is read
 * and checked against the family format and the per-worker bounds by snapshot.h first.
 *
 * A family (name) has one definition per app: the first one seen. A worker whose family
 * disagrees with it (another type, other histogram buckets, another gauge merge mode) has that
 * family kept apart: it is not merged into nonsense but left off the page and counted as a
 * conflict, while the rest of its snapshot counts. A definition is forgotten once nothing uses
 * it (no live snapshot, no retired totals), so a gauge may change type across a reload.
 *
 * "Series" in the limits means what Prometheus stores: one per counter or gauge sample, and for
 * a histogram sample one per bucket plus +Inf, _sum and _count.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "prom.h"
#include "snapshot.h"

/* Per worker snapshot: checked by the parser (snapshot.h) before the store sees it. */
#define METRICS_MAX_FAMILIES SNAPSHOT_MAX_FAMILIES
#define METRICS_MAX_SERIES SNAPSHOT_MAX_SERIES
#define METRICS_MAX_BUCKETS SNAPSHOT_MAX_BUCKETS
#define METRICS_MAX_LABELS SNAPSHOT_MAX_LABELS
/* Per app: distinct series on the page (retired totals included), family definitions, and
 * series held across all live snapshots (the memory bound: up to METRICS_MAX_SERIES each). */
#define METRICS_MAX_APP_SERIES 20000
#define METRICS_MAX_APP_FAMILIES 2000
#define METRICS_MAX_APP_STORED 1000000

/* Why a whole snapshot was refused (the previous one is kept). */
enum metrics_refusal {
    METRICS_REFUSED_MALFORMED,      /* not the family format of SPEC section 4 */
    METRICS_REFUSED_WORKER_LIMIT,   /* over METRICS_MAX_FAMILIES or METRICS_MAX_SERIES */
    METRICS_REFUSED_APP_LIMIT,      /* would take the app over its limits */
    METRICS_REFUSED_COUNT,
};

struct metrics_stats {
    uint64_t accepted;                          /* snapshots taken */
    uint64_t refused[METRICS_REFUSED_COUNT];    /* snapshots refused, by reason */
    size_t conflicts;   /* families kept apart now: in live workers' latest snapshots, plus those
                         * the last page build had to leave out (see page.h) */
    size_t series;      /* distinct series, retired totals included */
    size_t workers;     /* live workers with a snapshot */
};

struct metrics_app;

/* A store for one app. Returns 0 or -ENOMEM. */
int metrics_app_new(const char *app, struct metrics_app **ret);
void metrics_app_free(struct metrics_app *ma);

/*
 * Replaces the snapshot of worker `key` (unique per worker process for the master's life) in
 * slot `slot` with families (a JSON array as sent on the channel; borrowed). Returns 0, or
 * -EPROTO with a static reason in *ret_error when the snapshot is malformed (the previous
 * snapshot is kept), or -E2BIG when it is over the bounds (the previous one is kept too).
 * Families in conflict with the app's definitions are left out and counted, without error.
 */
int metrics_app_update(struct metrics_app *ma, uint64_t key, int slot, json_t *families,
                       double now, const char **ret_error);

/* The worker exited: its counters and histograms are folded into the app's retired totals and
 * its gauges dropped. Unknown keys are ignored. */
void metrics_app_retire(struct metrics_app *ma, uint64_t key);

/* metrics_per_worker (SPEC section 3): also show each live worker's own series with
 * worker="SLOT". */
void metrics_app_set_per_worker(struct metrics_app *ma, bool on);

/* Worker `key` sent again the very snapshot it sent last: it is as fresh as now. Returns 0 or
 * -ENOENT. */
int metrics_app_touch(struct metrics_app *ma, uint64_t key, double now);

/* When worker `key` last had a snapshot accepted (the `now` of that update): 0 and *ret_at, or
 * -ENOENT when it has none. */
int metrics_app_snapshot_time(const struct metrics_app *ma, uint64_t key, double *ret_at);

void metrics_app_stats(const struct metrics_app *ma, struct metrics_stats *ret);

/* The sum of every counter whose name ends in suffix, merged as the page merges it (live workers
 * plus the retired totals), read from the store without rendering anything. */
double metrics_app_counter_sum(const struct metrics_app *ma, const char *suffix);

/* "malformed", "worker_limit", "app_limit"; NULL out of range. */
const char *metrics_refusal_to_string(enum metrics_refusal reason);

/*
 * Upgrade in place (SPEC section 12): the store as JSON (each live worker's snapshot as it would
 * send it, keyed as before, and the retired totals as families), and the store filled again
 * from that in the next image, so that no counter on the page moves. Returns NULL when out of
 * memory / 0 or the first error (what could be taken is taken).
 */
json_t *metrics_app_save(const struct metrics_app *ma);
int metrics_app_restore(struct metrics_app *ma, const json_t *saved, double now);
