/*
 * prom: the exposition formats. See prom.h.
 *
 * The text format has three escaping rules that are easy to mix up: label values escape
 * backslash, double quote and newline; HELP text escapes only backslash and newline; metric and
 * label names are never escaped, because they are validated before they get here. Numbers are
 * read back by Go's strconv.ParseFloat, which takes "+Inf", "-Inf" and "NaN" and any %g form;
 * counters print as plain integers as long as that is exact, which is what people grep for.
 */
#include "prom.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- buffer ---- */

void prom_buf_init(struct prom_buf *b)
{
    *b = (struct prom_buf){0};
}

void prom_buf_done(struct prom_buf *b)
{
    bytebuf_free(&b->out);
    *b = (struct prom_buf){0};
}

int prom_buf_take(struct prom_buf *b, char **ret, size_t *ret_len)
{
    /* The NUL makes the text a string; it also gives an empty page a buffer of its own. */
    if (!b->err && bytebuf_append(&b->out, "", 1, SIZE_MAX) < 0) {
        b->err = -ENOMEM;
    }
    if (b->err) {
        int err = b->err;
        prom_buf_done(b);
        return err;
    }
    *ret = b->out.data;
    *ret_len = b->out.len - 1;
    *b = (struct prom_buf){0};
    return 0;
}

/* Appends n bytes; the first failure sticks, and what follows it is not written. */
static void buf_put(struct prom_buf *b, const char *s, size_t n)
{
    if (!b->err && bytebuf_append(&b->out, s, n, SIZE_MAX) < 0) {
        b->err = -ENOMEM;
    }
}

static void buf_puts(struct prom_buf *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

static void buf_putc(struct prom_buf *b, char c)
{
    buf_put(b, &c, 1);
}

static void buf_double(struct prom_buf *b, double v)
{
    char num[PROM_DOUBLE_MAX];
    buf_put(b, num, prom_format_double(v, num));
}

/*
 * Appends s with the characters in special replaced: each special character c becomes a
 * backslash and repl[i] where special[i] == c. Runs without special characters are copied in
 * one piece.
 */
static void buf_escaped(struct prom_buf *b, const char *s, const char *special, const char *repl)
{
    const char *run = s;
    for (const char *p = s; *p; p++) {
        const char *hit = strchr(special, *p);
        if (!hit) {
            continue;
        }
        buf_put(b, run, (size_t)(p - run));
        char esc[2] = {'\\', repl[hit - special]};
        buf_put(b, esc, 2);
        run = p + 1;
    }
    buf_puts(b, run);
}

/* ---- names and numbers ---- */

static bool name_char(char c, bool first, bool colon)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') {
        return true;
    }
    if (colon && c == ':') {
        return true;
    }
    return !first && c >= '0' && c <= '9';
}

bool prom_metric_name_is_valid(const char *s)
{
    if (!s || !*s) {
        return false;
    }
    for (const char *p = s; *p; p++) {
        if (!name_char(*p, p == s, true)) {
            return false;
        }
    }
    return true;
}

bool prom_label_name_is_valid(const char *s)
{
    if (!s || !*s || (s[0] == '_' && s[1] == '_')) {
        return false;
    }
    for (const char *p = s; *p; p++) {
        if (!name_char(*p, p == s, false)) {
            return false;
        }
    }
    return true;
}

static const char *const type_names[] = {
    [PROM_COUNTER] = "counter",
    [PROM_GAUGE] = "gauge",
    [PROM_HISTOGRAM] = "histogram",
};

const char *prom_type_to_string(enum prom_type type)
{
    return (unsigned)type < sizeof type_names / sizeof type_names[0] ? type_names[type] : NULL;
}

int prom_type_from_string(const char *s, enum prom_type *ret)
{
    for (size_t i = 0; s && i < sizeof type_names / sizeof type_names[0]; i++) {
        if (strcmp(s, type_names[i]) == 0) {
            *ret = (enum prom_type)i;
            return 0;
        }
    }
    return -EINVAL;
}

size_t prom_format_double(double v, char *buf)
{
    int n;
    if (isnan(v)) {
        n = snprintf(buf, PROM_DOUBLE_MAX, "NaN");
    } else if (isinf(v)) {
        n = snprintf(buf, PROM_DOUBLE_MAX, "%s", v > 0 ? "+Inf" : "-Inf");
    } else if (v == 0) {
        n = snprintf(buf, PROM_DOUBLE_MAX, "0"); /* also -0: nobody wants to read "-0" */
    } else if (v == trunc(v) && fabs(v) < 1e18) {
        /* Exact: every integral double below 1e18 prints in at most 19 digits. */
        n = snprintf(buf, PROM_DOUBLE_MAX, "%.0f", v);
    } else {
        /* The shortest precision that reads back as the same double. */
        for (int prec = 15;; prec++) {
            n = snprintf(buf, PROM_DOUBLE_MAX, "%.*g", prec, v);
            if (prec == 17 || strtod(buf, NULL) == v) {
                break;
            }
        }
    }
    return (size_t)n;
}

/* ---- text format ---- */

static void text_labels(struct prom_buf *b, const struct prom_sample *s, const char *le)
{
    size_t n = s->n_pre + s->n_labels + (le != NULL);
    if (n == 0) {
        return;
    }
    buf_putc(b, '{');
    size_t k = 0;
    for (size_t i = 0; i < s->n_pre + s->n_labels; i++) {
        const struct prom_label *l = i < s->n_pre ? &s->pre[i] : &s->labels[i - s->n_pre];
        if (k++) {
            buf_putc(b, ',');
        }
        buf_puts(b, l->name);
        buf_put(b, "=\"", 2);
        buf_escaped(b, l->value, "\\\"\n", "\\\"n");
        buf_putc(b, '"');
    }
    if (le) {
        if (k) {
            buf_putc(b, ',');
        }
        buf_put(b, "le=\"", 4);
        buf_puts(b, le);
        buf_putc(b, '"');
    }
    buf_putc(b, '}');
}

static void text_line(struct prom_buf *b, const char *name, const char *suffix,
                      const struct prom_sample *s, const char *le, double v)
{
    buf_puts(b, name);
    buf_puts(b, suffix);
    text_labels(b, s, le);
    buf_putc(b, ' ');
    buf_double(b, v);
    buf_putc(b, '\n');
}

static void text_family(struct prom_buf *b, const struct prom_family *f)
{
    if (f->n_samples == 0) {
        return;
    }
    if (f->help && *f->help) {
        buf_puts(b, "# HELP ");
        buf_puts(b, f->name);
        buf_putc(b, ' ');
        buf_escaped(b, f->help, "\\\n", "\\n");
        buf_putc(b, '\n');
    }
    buf_puts(b, "# TYPE ");
    buf_puts(b, f->name);
    buf_putc(b, ' ');
    buf_puts(b, prom_type_to_string(f->type));
    buf_putc(b, '\n');
    for (size_t i = 0; i < f->n_samples; i++) {
        const struct prom_sample *s = &f->samples[i];
        if (f->type != PROM_HISTOGRAM) {
            text_line(b, f->name, "", s, NULL, s->value);
            continue;
        }
        char le[PROM_DOUBLE_MAX];
        for (size_t j = 0; j < f->n_buckets; j++) {
            prom_format_double(f->buckets[j], le);
            text_line(b, f->name, "_bucket", s, le, s->counts[j]);
        }
        text_line(b, f->name, "_bucket", s, "+Inf", s->counts[f->n_buckets]);
        text_line(b, f->name, "_sum", s, NULL, s->sum);
        text_line(b, f->name, "_count", s, NULL, s->count);
    }
}

int prom_format_text(struct prom_buf *b, const struct prom_family *families, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        text_family(b, &families[i]);
    }
    return b->err;
}

/* ---- JSON ---- */

/* A JSON string. Input is UTF-8 (jansson checked what came from workers), passed through. */
static void json_str(struct prom_buf *b, const char *s)
{
    buf_putc(b, '"');
    const char *run = s;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }
        buf_put(b, run, (size_t)(p - run));
        char esc[8];
        if (c == '"' || c == '\\') {
            snprintf(esc, sizeof esc, "\\%c", c);
        } else if (c == '\n') {
            snprintf(esc, sizeof esc, "\\n");
        } else {
            snprintf(esc, sizeof esc, "\\u%04x", c);
        }
        buf_puts(b, esc);
        run = p + 1;
    }
    buf_puts(b, run);
    buf_putc(b, '"');
}

static void json_num(struct prom_buf *b, double v)
{
    if (isfinite(v)) {
        buf_double(b, v);
        return;
    }
    char num[PROM_DOUBLE_MAX];
    prom_format_double(v, num);
    json_str(b, num);
}

static void json_sample(struct prom_buf *b, const struct prom_family *f,
                        const struct prom_sample *s)
{
    buf_puts(b, "{\"labels\":{");
    for (size_t i = 0; i < s->n_pre + s->n_labels; i++) {
        const struct prom_label *l = i < s->n_pre ? &s->pre[i] : &s->labels[i - s->n_pre];
        if (i) {
            buf_putc(b, ',');
        }
        json_str(b, l->name);
        buf_putc(b, ':');
        json_str(b, l->value);
    }
    buf_putc(b, '}');
    if (f->type != PROM_HISTOGRAM) {
        buf_puts(b, ",\"value\":");
        json_num(b, s->value);
    } else {
        buf_puts(b, ",\"counts\":[");
        for (size_t j = 0; j <= f->n_buckets; j++) {
            if (j) {
                buf_putc(b, ',');
            }
            json_num(b, s->counts[j]);
        }
        buf_puts(b, "],\"sum\":");
        json_num(b, s->sum);
        buf_puts(b, ",\"count\":");
        json_num(b, s->count);
    }
    buf_putc(b, '}');
}

int prom_format_json(struct prom_buf *b, const struct prom_family *families, size_t n)
{
    buf_puts(b, "{\"families\":[");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const struct prom_family *f = &families[i];
        if (f->n_samples == 0) {
            continue;
        }
        buf_puts(b, k++ ? ",\n{\"name\":" : "\n{\"name\":");
        json_str(b, f->name);
        buf_puts(b, ",\"type\":");
        json_str(b, prom_type_to_string(f->type));
        buf_puts(b, ",\"help\":");
        json_str(b, f->help ? f->help : "");
        if (f->type == PROM_HISTOGRAM) {
            buf_puts(b, ",\"buckets\":[");
            for (size_t j = 0; j < f->n_buckets; j++) {
                if (j) {
                    buf_putc(b, ',');
                }
                json_num(b, f->buckets[j]);
            }
            buf_putc(b, ']');
        }
        buf_puts(b, ",\"samples\":[");
        for (size_t j = 0; j < f->n_samples; j++) {
            if (j) {
                buf_putc(b, ',');
            }
            json_sample(b, f, &f->samples[j]);
        }
        buf_puts(b, "]}");
    }
    buf_puts(b, "\n]}\n");
    return b->err;
}
