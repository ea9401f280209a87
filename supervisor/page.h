/*
 * page: the combined metrics page of several apps' stores (metrics.h), pure: no I/O.
 */
#pragma once

#include <stddef.h>

#include "metrics.h"
#include "prom.h"

/*
 * The merged page of several apps, ready for prom_format_text / prom_format_json: families
 * sorted by name, each printed once with the samples of every app (label app="NAME" first).
 *
 * Two apps can use one name for different things (a counter here, a gauge there, or other
 * histogram buckets); one TYPE line cannot describe both, so the first app (in the order given)
 * keeps the name and the others' family is left out and counted as a conflict of their app. The
 * same goes for a family whose name a histogram's series would also produce (X_bucket, X_sum,
 * X_count next to histogram X).
 *
 * The page points into the apps' stores: it is valid until the next update, retire or page
 * build on any of them, and is released with page_done().
 */
struct page {
    struct prom_family *families;
    size_t n_families;
    struct prom_sample *samples;    /* every family's samples, in one array */
};

/* Builds the page of the n apps. Returns 0 or -ENOMEM (*ret is then empty). */
int page_build(struct metrics_app *const *apps, size_t n, struct page *ret);
void page_done(struct page *page);
