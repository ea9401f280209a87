/*
 * prom: the combined metrics page as text, in the Prometheus exposition format 0.0.4 (/metrics)
 * and as JSON (/metrics/json), from one description of families and samples (SPEC section 6).
 * Pure: no I/O, no logging.
 *
 * The caller describes what to print (struct prom_family with its samples) and owns every string
 * and array in it; this module only formats. Both formats are written from the same description,
 * so /metrics and /metrics/json cannot disagree. Output goes into a growable buffer whose first
 * allocation failure sticks: the formatters then return -ENOMEM and the partial text is dropped.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "bytebuf.h"

enum prom_type { PROM_COUNTER, PROM_GAUGE, PROM_HISTOGRAM };

struct prom_label {
    const char *name;
    const char *value;
};

/*
 * One series. Labels are printed pre first (drover's own: app, worker), then labels. Counters
 * and gauges use value; histograms use counts (cumulative, one per bucket of the family and a
 * last one for +Inf), sum and count.
 */
struct prom_sample {
    const struct prom_label *pre;
    size_t n_pre;
    const struct prom_label *labels;
    size_t n_labels;
    double value;
    const double *counts;
    double sum;
    double count;
};

/* A family: its samples all share the name, type, help and (histograms) bucket bounds. */
struct prom_family {
    const char *name;
    const char *help;               /* "" or NULL: no HELP line */
    enum prom_type type;
    const double *buckets;          /* histogram upper bounds, ascending, without +Inf */
    size_t n_buckets;
    const struct prom_sample *samples;
    size_t n_samples;
};

struct prom_buf {
    struct bytebuf out;             /* the text so far (bytebuf.h) */
    int err;                        /* 0, or -ENOMEM once an allocation failed */
};

/* The longest text prom_format_double writes, with its NUL. */
#define PROM_DOUBLE_MAX 32

void prom_buf_init(struct prom_buf *b);
void prom_buf_done(struct prom_buf *b);

/* Hands the text over (malloc'd, NUL-terminated, caller frees) and empties b. Returns 0, or the
 * sticky error (then nothing is handed over). */
int prom_buf_take(struct prom_buf *b, char **ret, size_t *ret_len);

/*
 * Appends the n families in exposition format 0.0.4: "# HELP" (when there is help text) and
 * "# TYPE" once per family, then one line per sample (histograms: _bucket lines with le, _sum,
 * _count). Families without samples are left out. Returns 0 or -ENOMEM.
 */
int prom_format_text(struct prom_buf *b, const struct prom_family *families, size_t n);

/*
 * Appends the n families as one JSON document, the channel's family format (SPEC section 4)
 * with drover's labels merged into each sample's labels:
 *   {"families":[{"name":..,"type":..,"help":..,"buckets":[..],
 *                 "samples":[{"labels":{..},"value":..} or {"labels":{..},"counts":[..],
 *                             "sum":..,"count":..}]}]}
 * JSON has no infinities or NaN: those values are written as the strings "+Inf", "-Inf", "NaN".
 * Returns 0 or -ENOMEM.
 */
int prom_format_json(struct prom_buf *b, const struct prom_family *families, size_t n);

/*
 * Formats v as Prometheus expects it: "+Inf", "-Inf", "NaN"; integral values below 1e18 as
 * plain digits (no exponent); anything else in the shortest %g form that reads back as the
 * same double. buf has PROM_DOUBLE_MAX bytes. Returns the length written.
 */
size_t prom_format_double(double v, char *buf);

/* [a-zA-Z_:][a-zA-Z0-9_:]* */
bool prom_metric_name_is_valid(const char *s);
/* [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" (reserved by Prometheus). */
bool prom_label_name_is_valid(const char *s);

/* "counter", "gauge", "histogram"; from_string returns 0 or -EINVAL. */
const char *prom_type_to_string(enum prom_type type);
int prom_type_from_string(const char *s, enum prom_type *ret);
