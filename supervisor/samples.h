/*
 * samples: the master's own recent history for the status page (SPEC section 6, `/` and
 * `/status/samples.json`): a fixed ring of SAMPLES_MAX samples, one per SAMPLES_INTERVAL_S,
 * so ten minutes of it cost a few kilobytes however long drover runs. Pure: the caller takes the
 * readings and passes the time in.
 *
 * A sample holds cumulative totals (requests, restarts) and a level (memory); rates are derived
 * between neighbours when the ring is written out, so a missed tick only widens one interval.
 * "Requests" is the sum over every app of the merged counters whose name ends in
 * `_requests_total` (http_requests_total from the SDKs' examples, and whatever an app calls its
 * own): the combined page never lets a counter go down, so the rate is never negative.
 */
#pragma once

#include <jansson.h>
#include <stddef.h>

#define SAMPLES_INTERVAL_S 5
#define SAMPLES_MAX 120 /* ten minutes */

struct sample {
    double ts;          /* wall clock, seconds since the epoch */
    double requests;    /* cumulative */
    double restarts;    /* cumulative */
    double rss_bytes;   /* every worker's RSS, summed, now */
    double workers;     /* live workers now */
};

struct samples {
    struct sample ring[SAMPLES_MAX];
    size_t next;        /* where the next one goes */
    size_t n;           /* how many are kept (at most SAMPLES_MAX) */
};

void samples_init(struct samples *s);

/* Keeps one more sample, dropping the oldest when full. */
void samples_add(struct samples *s, const struct sample *sample);

/* The i-th kept sample, oldest first (i < s->n). */
const struct sample *samples_get(const struct samples *s, size_t i);

/*
 * The ring as a new JSON document, oldest first: {"interval_s":5,"max":120,"samples":[{"ts":..,
 * "requests":..,"requests_per_s":..,"restarts":..,"restarts_delta":..,"rss_bytes":..,
 * "workers":..}]}; the first sample's rate and delta are 0. NULL when out of memory.
 */
json_t *samples_to_json(const struct samples *s);
