/*
 * <drover/metrics.h>: a metrics registry for workers run by drover (SPEC sections 4 and 6).
 *
 * Counters, gauges and histograms, each series created once with its label values and then
 * updated on hot paths with one atomic operation: no lock, no allocation, safe from any number
 * of threads. The registry turns itself into the channel's snapshot (a JSON array of families,
 * cumulative since the worker started) and sends it to the master, which merges every worker's
 * snapshot into one /metrics page.
 *
 *     struct drover_metrics *reg;
 *     struct drover_counter *ok;
 *     drover_metrics_new(&reg);
 *     drover_counter_new(reg, &ok, "http_requests_total", "Requests answered.", "code", "200",
 *                        (char *)NULL);
 *     drover_metrics_attach(reg, w);           answers the master's collect
 *     ...
 *     drover_counter_inc(ok);                  any thread, any time
 *     ...
 *     timeout = drover_metrics_tick(reg);      from the app's loop: sends once per interval
 *     ...
 *     drover_metrics_flush(reg);               in the cleanup phase: the final counts
 *
 * Sending belongs to the thread that owns the struct drover_worker (as every call of
 * <drover/worker.h>); creating series may happen on any thread (it takes a lock, once per
 * series); updates anywhere. A registry works without drover too: attach, tick and flush are
 * then harmless, and drover_metrics_format still gives the snapshot.
 *
 * Names follow Prometheus: metric names [a-zA-Z_:][a-zA-Z0-9_:]*, label names
 * [a-zA-Z_][a-zA-Z0-9_]* not starting with "__". drover adds the labels app and worker, and
 * histograms add le, so those names are refused, as are metric names starting with drover_.
 * Bounds match what the master accepts per worker: 1000 families, 10000 series (a histogram
 * series counts its buckets + 3), 100 buckets, 32 labels.
 */
#ifndef DROVER_METRICS_H
#define DROVER_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include <drover/worker.h>

#ifdef __cplusplus
extern "C" {
#endif

struct drover_metrics;
struct drover_counter;
struct drover_gauge;
struct drover_histogram;

/* How the master merges a gauge over the workers of an app (SPEC section 4, "agg"). */
enum drover_agg {
    DROVER_AGG_SUM,     /* the default */
    DROVER_AGG_MAX,
    DROVER_AGG_MIN,
    DROVER_AGG_AVG,
    DROVER_AGG_WORKER,  /* never merged: one series per worker, labelled worker="SLOT" */
};

/* A new, empty registry in *ret. Returns 0 or -ENOMEM. */
DROVER_API int drover_metrics_new(struct drover_metrics **ret);

/* Frees the registry and every series handle it gave out. No update may run concurrently or
 * after. NULL is allowed. */
DROVER_API void drover_metrics_free(struct drover_metrics *m);

/*
 * Series. Each _new takes the family name and help, then label names and values in pairs,
 * ended by a NULL: ("code", "200", "method", "GET", (char *)NULL). The _newv forms take the
 * pairs as an array ended by NULL. The first call for a name defines the family (its kind,
 * help, agg, buckets); later calls with the same name add series to it and must agree. Asking
 * again for an existing series (same name and label set, in any order) returns the same handle.
 * Handles live as long as the registry. Returns 0, -EINVAL (a name or label is invalid or
 * reserved, the pairs are odd, the family exists with another kind, agg or buckets), -E2BIG
 * (over the bounds above), or -ENOMEM. *ret is written only on success.
 */
DROVER_API int drover_counter_new(struct drover_metrics *m, struct drover_counter **ret,
                                  const char *name, const char *help, ...)
    __attribute__((sentinel));
DROVER_API int drover_counter_newv(struct drover_metrics *m, struct drover_counter **ret,
                                   const char *name, const char *help,
                                   const char *const *label_pairs);

DROVER_API int drover_gauge_new(struct drover_metrics *m, struct drover_gauge **ret,
                                const char *name, const char *help, enum drover_agg agg, ...)
    __attribute__((sentinel));
DROVER_API int drover_gauge_newv(struct drover_metrics *m, struct drover_gauge **ret,
                                 const char *name, const char *help, enum drover_agg agg,
                                 const char *const *label_pairs);

/* buckets: the upper bounds, strictly ascending and finite (a last +Inf may be given; it is
 * implied anyway). The values are copied. */
DROVER_API int drover_histogram_new(struct drover_metrics *m, struct drover_histogram **ret,
                                    const char *name, const char *help, const double *buckets,
                                    size_t n_buckets, ...) __attribute__((sentinel));
DROVER_API int drover_histogram_newv(struct drover_metrics *m, struct drover_histogram **ret,
                                     const char *name, const char *help, const double *buckets,
                                     size_t n_buckets, const char *const *label_pairs);

/*
 * Updates: one atomic operation each (a compare-and-swap loop for floating-point additions);
 * never lock, allocate or fail. A counter only goes up: a negative or NaN amount is ignored.
 * A histogram ignores NaN observations. Non-finite gauge values are kept but left out of
 * snapshots (JSON cannot carry them).
 */
DROVER_API void drover_counter_inc(struct drover_counter *c);
DROVER_API void drover_counter_add(struct drover_counter *c, uint64_t n);
DROVER_API void drover_counter_add_float(struct drover_counter *c, double v);
DROVER_API double drover_counter_value(const struct drover_counter *c);

DROVER_API void drover_gauge_set(struct drover_gauge *g, double v);
DROVER_API void drover_gauge_add(struct drover_gauge *g, double v);
DROVER_API void drover_gauge_inc(struct drover_gauge *g);
DROVER_API void drover_gauge_dec(struct drover_gauge *g);
DROVER_API double drover_gauge_value(const struct drover_gauge *g);

DROVER_API void drover_histogram_observe(struct drover_histogram *h, double v);

/*
 * The snapshot: a JSON array of families in the channel's format (SPEC section 4), as a
 * malloc'd string freed with drover_free, its length in *ret_len (may be NULL). Families
 * without series are left out. Returns 0 or -ENOMEM.
 */
DROVER_API int drover_metrics_format(struct drover_metrics *m, char **ret_json, size_t *ret_len);

/*
 * Ties the registry to w: from now on a {"type":"collect"} from the master is answered with a
 * fresh snapshot, and tick and flush send over w. This takes w's collect callback
 * (drover_on_collect); to refresh gauges before each snapshot use drover_metrics_on_collect.
 * Returns 0.
 */
DROVER_API int drover_metrics_attach(struct drover_metrics *m, struct drover_worker *w);

/* Called right before every snapshot is taken (collect, tick, flush): the place to set gauges
 * that are sampled rather than updated (queue lengths, cache sizes). fn may be NULL. */
typedef void (*drover_metrics_collect_fn)(struct drover_metrics *m, void *userdata);
DROVER_API void drover_metrics_on_collect(struct drover_metrics *m, drover_metrics_collect_fn fn,
                                          void *userdata);

/* Sends a snapshot now. Returns 0, -ENOTCONN when not attached or without a channel, or the
 * error of drover_metrics_send (-EMSGSIZE, -ENOBUFS, -EPIPE, ...). */
DROVER_API int drover_metrics_flush(struct drover_metrics *m);

/* How often tick sends: every interval_ms (default 1000); 0 = only on collect and flush. */
DROVER_API void drover_metrics_set_interval(struct drover_metrics *m, uint32_t interval_ms);

/*
 * Sends a snapshot if the interval has passed since the last one (by any of collect, tick or
 * flush). Returns the milliseconds until the next one is due (0 = call again now), or -1 when
 * nothing is periodic (interval 0, or not attached). Call it from the app's loop, e.g. from a
 * timer re-armed with the returned delay.
 */
DROVER_API int64_t drover_metrics_tick(struct drover_metrics *m);

#ifdef __cplusplus
}
#endif

#endif /* DROVER_METRICS_H */
