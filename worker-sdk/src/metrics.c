/*
 * metrics: the worker-side registry. See <drover/metrics.h>.
 *
 * Two kinds of work with opposite needs meet here. Updates run on the app's hot paths, on any
 * thread, millions of times: each is one relaxed atomic operation on the series' own words,
 * with no lock and no allocation, and no ordering between series is promised (a snapshot is a
 * sample of each value, not of one instant). Creating a series and taking a snapshot are rare:
 * they take the registry's mutex, which protects the lists only, never the values.
 *
 * Values: a counter keeps whole increments in a 64-bit integer (exact, one fetch_add) and
 * fractional additions in a double updated by compare-and-swap; a gauge is a double; a
 * histogram keeps one integer per bucket (not cumulative, so an observation touches one word)
 * and the sum as a double. A snapshot makes the bucket counts cumulative and takes count from
 * them, so what it sends is always consistent in itself, whatever the other threads do.
 *
 * Doubles live in _Atomic uint64_t words holding their bits: C11 has no atomic add for
 * floating point, and a 64-bit integer CAS is lock-free on every platform we care about.
 */
#include "drover/metrics.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* What the master accepts from one worker (supervisor/metrics.h). */
#define MAX_FAMILIES 1000
#define MAX_SERIES 10000
#define MAX_BUCKETS 100
#define MAX_LABELS 32
#define DEFAULT_INTERVAL_MS 1000

enum kind { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM };

static const char *const kind_names[] = {"counter", "gauge", "histogram"};
static const char *const agg_names[] = {"sum", "max", "min", "avg", "worker"};

struct family;

struct series {
    struct series *next;
    struct family *fam;
    char **labels;              /* name, value, name, value...: sorted by name */
    size_t n_labels;
    _Atomic uint64_t count;     /* counter: whole increments */
    _Atomic uint64_t bits;      /* counter: fractional part; gauge: value; histogram: sum */
    _Atomic uint64_t *buckets;  /* histogram: per bucket (not cumulative), then +Inf */
};

/* The public handles are the series themselves, typed so a counter cannot be set. */
struct drover_counter {
    struct series s;
};
struct drover_gauge {
    struct series s;
};
struct drover_histogram {
    struct series s;
};

struct family {
    struct family *next;
    char *name;
    char *help;
    enum kind kind;
    enum drover_agg agg;
    double *buckets;
    size_t n_buckets;
    struct series *series;
    struct series *last;
};

struct drover_metrics {
    pthread_mutex_t lock;       /* the lists, and cost */
    struct family *families;
    struct family *last;
    size_t n_families;
    size_t cost;                /* series as the master counts them */
    /* Sending: only on the thread that owns w. */
    struct drover_worker *w;
    uint32_t interval_ms;
    int64_t last_sent_ms;       /* 0 = never */
    drover_metrics_collect_fn collect_fn;
    void *collect_userdata;
};

/* ---- atomics on doubles ---- */

static double bits_to_double(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static uint64_t double_to_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

static double atomic_double_load(const _Atomic uint64_t *p)
{
    return bits_to_double(atomic_load_explicit((_Atomic uint64_t *)p, memory_order_relaxed));
}

static void atomic_double_add(_Atomic uint64_t *p, double v)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(p, &old,
                                                  double_to_bits(bits_to_double(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

/* ---- registry ---- */

int drover_metrics_new(struct drover_metrics **ret)
{
    struct drover_metrics *m = calloc(1, sizeof *m);
    if (!m) {
        return -ENOMEM;
    }
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return -ENOMEM;
    }
    m->interval_ms = DEFAULT_INTERVAL_MS;
    *ret = m;
    return 0;
}

static void series_free(struct series *s)
{
    for (size_t i = 0; s->labels && i < 2 * s->n_labels; i++) {
        free(s->labels[i]);
    }
    free(s->labels);
    free((void *)s->buckets);
    free(s);
}

static void family_free(struct family *f)
{
    while (f->series) {
        struct series *s = f->series;
        f->series = s->next;
        series_free(s);
    }
    free(f->name);
    free(f->help);
    free(f->buckets);
    free(f);
}

void drover_metrics_free(struct drover_metrics *m)
{
    if (!m) {
        return;
    }
    if (m->w) {
        drover_on_collect(m->w, NULL, NULL);
    }
    while (m->families) {
        struct family *f = m->families;
        m->families = f->next;
        family_free(f);
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* ---- validation ---- */

static bool name_char(char c, bool first, bool colon)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':')) {
        return true;
    }
    return !first && c >= '0' && c <= '9';
}

static bool name_is_valid(const char *s, bool colon)
{
    if (!s || !*s) {
        return false;
    }
    for (const char *p = s; *p; p++) {
        if (!name_char(*p, p == s, colon)) {
            return false;
        }
    }
    return true;
}

/* Text the master can receive: JSON strings must be UTF-8. */
static bool text_is_valid(const char *s)
{
    json_t *t = json_string(s);
    json_decref(t);
    return t != NULL;
}

/* One label pair, by pointers into the caller's array. */
struct pair {
    const char *name;
    const char *value;
};

static int pair_cmp(const void *a, const void *b)
{
    return strcmp(((const struct pair *)a)->name, ((const struct pair *)b)->name);
}

/*
 * Checks the pairs and stores them sorted by name in out, leaving out pairs with an empty
 * value: the master, like Prometheus, takes code="" as no code label at all, so both spellings
 * must be one series here too. Returns how many were kept, or -EINVAL.
 */
static int pairs_read(const char *const *pairs, enum kind kind, struct pair *out)
{
    size_t n = 0;
    for (size_t i = 0; pairs && pairs[i]; i += 2) {
        const char *name = pairs[i], *value = pairs[i + 1];
        if (!value || n == MAX_LABELS || !name_is_valid(name, false) ||
            (name[0] == '_' && name[1] == '_') || strcmp(name, "app") == 0 ||
            strcmp(name, "worker") == 0 || (kind == KIND_HISTOGRAM && strcmp(name, "le") == 0) ||
            !text_is_valid(value)) {
            return -EINVAL;
        }
        for (size_t j = 0; j < n; j++) {
            if (strcmp(out[j].name, name) == 0) {
                return -EINVAL;
            }
        }
        out[n++] = (struct pair){name, value};
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (*out[i].value) {
            out[k++] = out[i];
        }
    }
    qsort(out, k, sizeof *out, pair_cmp);
    return (int)k;
}

/* Checks the bucket bounds; a last +Inf is dropped (it is implied). Returns how many or
 * -EINVAL. */
static int buckets_read(const double *b, size_t n)
{
    if (n > 0 && isinf(b[n - 1]) && b[n - 1] > 0) {
        n--;
    }
    if (n > MAX_BUCKETS || (n > 0 && !b)) {
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(b[i]) || (i > 0 && !(b[i] > b[i - 1]))) {
            return -EINVAL;
        }
    }
    return (int)n;
}

/* ---- creating series ---- */

static struct family *family_find(struct drover_metrics *m, const char *name)
{
    for (struct family *f = m->families; f; f = f->next) {
        if (strcmp(f->name, name) == 0) {
            return f;
        }
    }
    return NULL;
}

static bool series_matches(const struct series *s, const struct pair *p, size_t n)
{
    if (s->n_labels != n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s->labels[2 * i], p[i].name) != 0 ||
            strcmp(s->labels[2 * i + 1], p[i].value) != 0) {
            return false;
        }
    }
    return true;
}

static struct family *family_new(const char *name, const char *help, enum kind kind,
                                 enum drover_agg agg, const double *buckets, size_t n_buckets)
{
    struct family *f = calloc(1, sizeof *f);
    if (!f || !(f->name = strdup(name)) || !(f->help = strdup(help))) {
        goto fail;
    }
    if (n_buckets > 0) {
        if (!(f->buckets = malloc(sizeof *f->buckets * n_buckets))) {
            goto fail;
        }
        memcpy(f->buckets, buckets, sizeof *f->buckets * n_buckets);
    }
    f->n_buckets = n_buckets;
    f->kind = kind;
    f->agg = agg;
    return f;
fail:
    if (f) {
        family_free(f);
    }
    return NULL;
}

static struct series *series_new(struct family *f, const struct pair *p, size_t n)
{
    struct series *s = calloc(1, sizeof *s);
    if (!s || !(s->labels = calloc(2 * n + 1, sizeof *s->labels))) {
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        s->n_labels = i + 1;
        if (!(s->labels[2 * i] = strdup(p[i].name)) ||
            !(s->labels[2 * i + 1] = strdup(p[i].value))) {
            goto fail;
        }
    }
    s->n_labels = n;
    if (f->kind == KIND_HISTOGRAM) {
        s->buckets = calloc(f->n_buckets + 1, sizeof *s->buckets);
        if (!s->buckets) {
            goto fail;
        }
    }
    s->fam = f;
    return s;
fail:
    if (s) {
        series_free(s);
    }
    return NULL;
}

/* The series of family name with these labels: found, or created (and the family with it). */
static int series_get(struct drover_metrics *m, enum kind kind, const char *name,
                      const char *help, enum drover_agg agg, const double *buckets,
                      size_t n_buckets, const char *const *pairs, struct series **ret)
{
    struct pair p[MAX_LABELS + 1];
    size_t n_pairs = 0;
    while (pairs && pairs[n_pairs]) {
        n_pairs++;
    }
    if (!m || !ret || !name_is_valid(name, true) || strncmp(name, "drover_", 7) == 0 ||
        (help && !text_is_valid(help)) || n_pairs % 2 != 0 || (unsigned)agg > DROVER_AGG_WORKER ||
        (kind != KIND_GAUGE && agg != DROVER_AGG_SUM)) {
        return -EINVAL;
    }
    int n = pairs_read(pairs, kind, p);
    int nb = kind == KIND_HISTOGRAM ? buckets_read(buckets, n_buckets) : 0;
    if (n < 0 || nb < 0) {
        return -EINVAL;
    }
    size_t cost = kind == KIND_HISTOGRAM ? (size_t)nb + 3 : 1;
    int r = 0;

    pthread_mutex_lock(&m->lock);
    struct family *f = family_find(m, name);
    if (f) {
        bool same = f->kind == kind && f->agg == agg && f->n_buckets == (size_t)nb;
        for (size_t i = 0; same && i < f->n_buckets; i++) {
            same = f->buckets[i] == buckets[i];
        }
        if (!same) {
            r = -EINVAL;
            goto out;
        }
        for (struct series *s = f->series; s; s = s->next) {
            if (series_matches(s, p, (size_t)n)) {
                *ret = s;
                goto out;
            }
        }
    }
    if (m->cost + cost > MAX_SERIES || (!f && m->n_families == MAX_FAMILIES)) {
        r = -E2BIG;
        goto out;
    }
    if (!f) {
        f = family_new(name, help ? help : "", kind, agg, buckets, (size_t)nb);
        if (!f) {
            r = -ENOMEM;
            goto out;
        }
        if (m->last) {
            m->last->next = f;
        } else {
            m->families = f;
        }
        m->last = f;
        m->n_families++;
    }
    struct series *s = series_new(f, p, (size_t)n);
    if (!s) {
        r = -ENOMEM;
        goto out;
    }
    if (f->last) {
        f->last->next = s;
    } else {
        f->series = s;
    }
    f->last = s;
    m->cost += cost;
    *ret = s;
out:
    pthread_mutex_unlock(&m->lock);
    return r;
}

/* Collects the variadic label pairs (up to the NULL) into an array. Returns 0 or -EINVAL. */
static int pairs_from_va(va_list ap, const char **out)
{
    size_t n = 0;
    const char *s;
    while ((s = va_arg(ap, const char *)) != NULL) {
        if (n == 2 * MAX_LABELS + 1) {
            return -EINVAL;
        }
        out[n++] = s;
    }
    out[n] = NULL;
    return 0;
}

int drover_counter_newv(struct drover_metrics *m, struct drover_counter **ret, const char *name,
                        const char *help, const char *const *label_pairs)
{
    struct series *s;
    int r = series_get(m, KIND_COUNTER, name, help, DROVER_AGG_SUM, NULL, 0, label_pairs, &s);
    if (r == 0) {
        *ret = (struct drover_counter *)s;
    }
    return r;
}

int drover_counter_new(struct drover_metrics *m, struct drover_counter **ret, const char *name,
                       const char *help, ...)
{
    const char *pairs[2 * MAX_LABELS + 2];
    va_list ap;
    va_start(ap, help);
    int r = pairs_from_va(ap, pairs);
    va_end(ap);
    return r < 0 ? r : drover_counter_newv(m, ret, name, help, pairs);
}

int drover_gauge_newv(struct drover_metrics *m, struct drover_gauge **ret, const char *name,
                      const char *help, enum drover_agg agg, const char *const *label_pairs)
{
    struct series *s;
    int r = series_get(m, KIND_GAUGE, name, help, agg, NULL, 0, label_pairs, &s);
    if (r == 0) {
        *ret = (struct drover_gauge *)s;
    }
    return r;
}

int drover_gauge_new(struct drover_metrics *m, struct drover_gauge **ret, const char *name,
                     const char *help, enum drover_agg agg, ...)
{
    const char *pairs[2 * MAX_LABELS + 2];
    va_list ap;
    va_start(ap, agg);
    int r = pairs_from_va(ap, pairs);
    va_end(ap);
    return r < 0 ? r : drover_gauge_newv(m, ret, name, help, agg, pairs);
}

int drover_histogram_newv(struct drover_metrics *m, struct drover_histogram **ret,
                          const char *name, const char *help, const double *buckets,
                          size_t n_buckets, const char *const *label_pairs)
{
    struct series *s;
    int r = series_get(m, KIND_HISTOGRAM, name, help, DROVER_AGG_SUM, buckets, n_buckets,
                       label_pairs, &s);
    if (r == 0) {
        *ret = (struct drover_histogram *)s;
    }
    return r;
}

int drover_histogram_new(struct drover_metrics *m, struct drover_histogram **ret,
                         const char *name, const char *help, const double *buckets,
                         size_t n_buckets, ...)
{
    const char *pairs[2 * MAX_LABELS + 2];
    va_list ap;
    va_start(ap, n_buckets);
    int r = pairs_from_va(ap, pairs);
    va_end(ap);
    return r < 0 ? r : drover_histogram_newv(m, ret, name, help, buckets, n_buckets, pairs);
}

/* ---- updates: one atomic operation, no lock, no allocation ---- */

void drover_counter_inc(struct drover_counter *c)
{
    atomic_fetch_add_explicit(&c->s.count, 1, memory_order_relaxed);
}

void drover_counter_add(struct drover_counter *c, uint64_t n)
{
    atomic_fetch_add_explicit(&c->s.count, n, memory_order_relaxed);
}

void drover_counter_add_float(struct drover_counter *c, double v)
{
    if (!(v >= 0)) {
        return;
    }
    /* Whole amounts stay exact in the integer, however large the total grows. */
    if (v == floor(v) && v < 9007199254740992.0) {
        atomic_fetch_add_explicit(&c->s.count, (uint64_t)v, memory_order_relaxed);
        return;
    }
    atomic_double_add(&c->s.bits, v);
}

double drover_counter_value(const struct drover_counter *c)
{
    uint64_t n = atomic_load_explicit((_Atomic uint64_t *)&c->s.count, memory_order_relaxed);
    return (double)n + atomic_double_load(&c->s.bits);
}

void drover_gauge_set(struct drover_gauge *g, double v)
{
    atomic_store_explicit(&g->s.bits, double_to_bits(v), memory_order_relaxed);
}

void drover_gauge_add(struct drover_gauge *g, double v)
{
    atomic_double_add(&g->s.bits, v);
}

void drover_gauge_inc(struct drover_gauge *g)
{
    atomic_double_add(&g->s.bits, 1);
}

void drover_gauge_dec(struct drover_gauge *g)
{
    atomic_double_add(&g->s.bits, -1);
}

double drover_gauge_value(const struct drover_gauge *g)
{
    return atomic_double_load(&g->s.bits);
}

void drover_histogram_observe(struct drover_histogram *h, double v)
{
    const struct family *f = h->s.fam;
    if (!isfinite(v)) {
        return; /* an infinite sum could never be sent again */
    }
    /* The first bucket whose bound is >= v (Prometheus buckets are "less or equal"). */
    size_t lo = 0, hi = f->n_buckets;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->buckets[mid] < v) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    atomic_fetch_add_explicit(&h->s.buckets[lo], 1, memory_order_relaxed);
    atomic_double_add(&h->s.bits, v);
}

/* ---- snapshots ---- */

/* A JSON number for v: an integer when it is one (jansson would print 3 as 3.0). */
static json_t *number(double v)
{
    if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        return json_integer((json_int_t)v);
    }
    return json_real(v);
}

/* The sample of one series, or NULL when its value cannot be sent (not finite) or on ENOMEM. */
static json_t *series_json(const struct series *s)
{
    const struct family *f = s->fam;
    json_t *labels = json_object();
    json_t *o = NULL;
    if (!labels) {
        return NULL;
    }
    for (size_t i = 0; i < s->n_labels; i++) {
        if (json_object_set_new(labels, s->labels[2 * i], json_string(s->labels[2 * i + 1])) < 0) {
            goto out;
        }
    }
    if (f->kind == KIND_COUNTER) {
        uint64_t n = atomic_load_explicit((_Atomic uint64_t *)&s->count, memory_order_relaxed);
        double frac = atomic_double_load(&s->bits);
        json_t *v = frac == 0 && n <= (uint64_t)INT64_MAX ? json_integer((json_int_t)n)
                    : isfinite((double)n + frac)           ? json_real((double)n + frac)
                                                           : NULL;
        o = v ? json_pack("{s:O, s:o}", "labels", labels, "value", v) : NULL;
    } else if (f->kind == KIND_GAUGE) {
        double v = atomic_double_load(&s->bits);
        o = isfinite(v) ? json_pack("{s:O, s:o}", "labels", labels, "value", number(v)) : NULL;
    } else {
        double sum = atomic_double_load(&s->bits);
        json_t *counts = json_array();
        uint64_t acc = 0;
        for (size_t b = 0; counts && b <= f->n_buckets; b++) {
            acc += atomic_load_explicit(&s->buckets[b], memory_order_relaxed);
            if (json_array_append_new(counts, json_integer((json_int_t)acc)) < 0) {
                json_decref(counts);
                counts = NULL;
            }
        }
        if (counts && isfinite(sum)) {
            /* json_pack takes the "o" references, also when it fails. */
            o = json_pack("{s:O, s:o, s:o, s:I}", "labels", labels, "counts", counts, "sum",
                          number(sum), "count", (json_int_t)acc);
        } else {
            json_decref(counts);
        }
    }
out:
    json_decref(labels);
    return o;
}

static json_t *family_json(const struct family *f)
{
    json_t *samples = json_array();
    json_t *o = json_pack("{s:s, s:s, s:s}", "name", f->name, "type", kind_names[f->kind], "help",
                          f->help);
    if (!samples || !o) {
        goto fail;
    }
    if (f->kind == KIND_GAUGE && json_object_set_new(o, "agg", json_string(agg_names[f->agg]))) {
        goto fail;
    }
    if (f->kind == KIND_HISTOGRAM) {
        json_t *b = json_array();
        for (size_t i = 0; b && i < f->n_buckets; i++) {
            json_array_append_new(b, number(f->buckets[i]));
        }
        if (!b || json_array_size(b) != f->n_buckets || json_object_set_new(o, "buckets", b)) {
            goto fail;
        }
    }
    for (const struct series *s = f->series; s; s = s->next) {
        json_t *js = series_json(s);
        if (js) {
            json_array_append_new(samples, js);
        }
    }
    if (json_object_set_new(o, "samples", samples) < 0) {
        samples = NULL;
        goto fail;
    }
    return o;
fail:
    json_decref(samples);
    json_decref(o);
    return NULL;
}

int drover_metrics_format(struct drover_metrics *m, char **ret_json, size_t *ret_len)
{
    json_t *families = json_array();
    int r = -ENOMEM;
    if (!families) {
        return -ENOMEM;
    }
    pthread_mutex_lock(&m->lock);
    for (const struct family *f = m->families; f; f = f->next) {
        if (!f->series) {
            continue;
        }
        json_t *jf = family_json(f);
        if (!jf || json_array_append_new(families, jf) < 0) {
            pthread_mutex_unlock(&m->lock);
            goto out;
        }
    }
    pthread_mutex_unlock(&m->lock);
    char *text = json_dumps(families, JSON_COMPACT);
    if (!text) {
        goto out;
    }
    *ret_json = text;
    if (ret_len) {
        *ret_len = strlen(text);
    }
    r = 0;
out:
    json_decref(families);
    return r;
}

/* ---- sending ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int drover_metrics_flush(struct drover_metrics *m)
{
    char *json = NULL;
    if (!m->w) {
        return -ENOTCONN;
    }
    /* Whatever happens, this counts as the interval's send: a failing channel must not turn
     * tick into a busy loop. */
    m->last_sent_ms = now_ms();
    if (m->collect_fn) {
        m->collect_fn(m, m->collect_userdata);
    }
    int r = drover_metrics_format(m, &json, NULL);
    if (r == 0) {
        r = drover_metrics_send(m->w, json);
    }
    free(json);
    return r;
}

static void metrics_on_collect(struct drover_worker *w, void *userdata)
{
    (void)w;
    (void)drover_metrics_flush(userdata);
}

int drover_metrics_attach(struct drover_metrics *m, struct drover_worker *w)
{
    m->w = w;
    m->last_sent_ms = 0;
    drover_on_collect(w, metrics_on_collect, m);
    return 0;
}

void drover_metrics_on_collect(struct drover_metrics *m, drover_metrics_collect_fn fn,
                               void *userdata)
{
    m->collect_fn = fn;
    m->collect_userdata = userdata;
}

void drover_metrics_set_interval(struct drover_metrics *m, uint32_t interval_ms)
{
    m->interval_ms = interval_ms;
}

int64_t drover_metrics_tick(struct drover_metrics *m)
{
    if (!m->w || m->interval_ms == 0) {
        return -1;
    }
    int64_t now = now_ms();
    if (m->last_sent_ms == 0 || now - m->last_sent_ms >= (int64_t)m->interval_ms) {
        (void)drover_metrics_flush(m);
        return m->interval_ms;
    }
    return (int64_t)m->interval_ms - (now - m->last_sent_ms);
}
