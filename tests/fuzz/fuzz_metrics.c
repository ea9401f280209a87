/*
 * libFuzzer target for the snapshot parser, metrics and prom: the input is a few lines, each
 * one worker's snapshot as it would arrive on the channel; the first byte of a line picks the
 * app (of two), the worker key and slot, and whether the worker exits after it. Every line is
 * read by snapshot_parse directly, then goes through metrics_app_update, and at the end the
 * page of both apps is built and written in both formats.
 *
 * Beyond "does not crash or leak" it checks what the store relies on from the parser: every
 * family and sample it accepts is within the limits and the family format, and each sample's
 * series key lies in the key buffer, starts with its family's name and holds exactly its
 * labels, sorted and non-empty, then the slot for per-worker gauges; and the store refuses
 * whatever the parser refuses, for the same reason. And what a scraper relies on: the JSON page
 * parses, the text page has one TYPE line per name and ends every line, the stores' series
 * counts stay within their limits, and a refused snapshot changes no page.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isupervisor \
 *       tests/fuzz/fuzz_metrics.c supervisor/snapshot.c supervisor/metrics.c supervisor/prom.c \
 *       -ljansson -lm -o fuzz_metrics
 *   mkdir -p corpus && ./fuzz_metrics -max_len=65536 corpus
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "metrics.h"
#include "page.h"
#include "prom.h"
#include "snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond) {
        abort();
    }
}

/* The page of both apps in the given format (caller frees). */
static char *render(struct metrics_app **apps, bool json)
{
    struct page page;
    struct prom_buf b;
    char *out = NULL;
    size_t len = 0;
    check(page_build(apps, 2, &page) == 0);
    prom_buf_init(&b);
    int r = json ? prom_format_json(&b, page.families, page.n_families)
                 : prom_format_text(&b, page.families, page.n_families);
    check(r == 0);
    check(prom_buf_take(&b, &out, &len) == 0);
    check(strlen(out) == len);
    page_done(&page);
    return out;
}

/* The next NUL-terminated string of a key from *p, within end; NULL if none ends there. */
static const char *key_next(const char **p, const char *end)
{
    const char *s = *p;
    const char *nul = s < end ? memchr(s, '\0', (size_t)(end - s)) : NULL;
    if (!nul) {
        return NULL;
    }
    *p = nul + 1;
    return s;
}

/* One sample as the parser gave it, against its family. */
static void check_sample(const struct snapshot_family *f, const struct snapshot_sample *s,
                         const struct snapshot_keys *keys, const char *slot)
{
    check(s->key_len > 0 && s->key_off <= keys->buf.len &&
          s->key_len <= keys->buf.len - s->key_off);
    const char *p = keys->buf.data + s->key_off, *end = p + s->key_len;
    const char *name = key_next(&p, end);
    check(name != NULL && strcmp(name, f->name) == 0);
    check(s->n_labels <= SNAPSHOT_MAX_LABELS);
    const char *prev = NULL;
    for (size_t i = 0; i < s->n_labels; i++) {
        const char *label = key_next(&p, end);
        const char *value = key_next(&p, end);
        check(label != NULL && value != NULL);
        check(prom_label_name_is_valid(label) && *value != '\0');
        check(strcmp(label, "app") != 0 && strcmp(label, "worker") != 0);
        check(f->type != PROM_HISTOGRAM || strcmp(label, "le") != 0);
        check(!prev || strcmp(prev, label) < 0);
        prev = label;
    }
    if (f->agg == SNAPSHOT_AGG_WORKER) {
        const char *own = key_next(&p, end);
        check(own != NULL && strcmp(own, slot) == 0);
    }
    check(p == end);
    if (f->type == PROM_HISTOGRAM) {
        check(s->counts != NULL);
        for (size_t b = 0; b <= f->n_buckets; b++) {
            check(s->counts[b] >= (b ? s->counts[b - 1] : 0));
        }
        check(s->count == s->counts[f->n_buckets]);
    } else if (f->type == PROM_COUNTER) {
        check(s->value >= 0);
    }
}

/* Reads families with the parser alone and checks what it accepted; returns its result. */
static int check_snapshot(json_t *families, const char *slot, struct snapshot_keys *keys,
                          const char **ret_why)
{
    struct snapshot sn;
    const char *why = NULL;
    int r = snapshot_parse(families, slot, keys, &sn, &why);
    check(r == 0 || r == -EPROTO || r == -E2BIG);
    *ret_why = why;
    if (r < 0) {
        check(why != NULL);
        return r;
    }
    check(sn.n_families == json_array_size(families));
    check(sn.n_families <= SNAPSHOT_MAX_FAMILIES);
    size_t k = 0, cost = 0;
    for (size_t i = 0; i < sn.n_families; i++) {
        const struct snapshot_family *f = &sn.families[i];
        check(prom_metric_name_is_valid(f->name) && strncmp(f->name, "drover_", 7) != 0);
        check(f->help != NULL);
        check(f->type == PROM_GAUGE || f->agg == SNAPSHOT_AGG_SUM);
        check(f->type == PROM_HISTOGRAM || f->n_buckets == 0);
        check(f->n_buckets <= SNAPSHOT_MAX_BUCKETS);
        for (size_t b = 1; b < f->n_buckets; b++) {
            check(f->buckets[b] > f->buckets[b - 1]);
        }
        check(f->samples == sn.samples + k && f->n_samples <= sn.n_samples - k);
        for (size_t j = 0; j < f->n_samples; j++) {
            check_sample(f, &f->samples[j], keys, slot);
        }
        k += f->n_samples;
        cost += f->n_samples * (f->type == PROM_HISTOGRAM ? f->n_buckets + 3 : 1);
    }
    check(k == sn.n_samples);
    check(cost <= SNAPSHOT_MAX_SERIES);
    snapshot_done(&sn);
    return 0;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every line ends; TYPE lines (a line's start: label values escape their newlines) name each
 * family once. */
static void check_text(const char *text)
{
    size_t len = strlen(text);
    check(len == 0 || text[len - 1] == '\n');
    char **names = NULL;
    size_t n = 0;
    for (const char *line = text; *line; line = strchr(line, '\n') + 1) {
        if (strncmp(line, "# TYPE ", 7) != 0) {
            continue;
        }
        const char *end = strchr(line + 7, ' ');
        check(end != NULL && end < strchr(line, '\n'));
        char **grown = realloc(names, sizeof *names * (n + 1));
        check(grown != NULL);
        names = grown;
        names[n] = strndup(line + 7, (size_t)(end - line - 7));
        check(names[n] != NULL);
        n++;
    }
    if (n > 0) {
        qsort(names, n, sizeof *names, str_cmp);
    }
    for (size_t i = 0; i < n; i++) {
        check(i == 0 || strcmp(names[i - 1], names[i]) != 0);
    }
    for (size_t i = 0; i < n; i++) {
        free(names[i]);
    }
    free(names);
}

static void check_json(const char *text)
{
    json_error_t err;
    json_t *doc = json_loads(text, 0, &err);
    check(doc != NULL);
    check(json_is_array(json_object_get(doc, "families")));
    json_decref(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct metrics_app *apps[2] = {NULL, NULL};
    struct snapshot_keys keys = {0};
    check(metrics_app_new("a", &apps[0]) == 0);
    check(metrics_app_new("b", &apps[1]) == 0);
    metrics_app_set_per_worker(apps[1], true);

    const char *p = (const char *)data, *end = p + size;
    double now = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl ? nl : end;
        if (line_end > p) {
            uint8_t ctl = (uint8_t)*p;
            struct metrics_app *ma = apps[ctl & 1];
            uint64_t key = 1 + ((ctl >> 1) & 7);
            int slot = (int)((ctl >> 1) & 3);
            json_error_t err;
            json_t *families = json_loadb(p + 1, (size_t)(line_end - p - 1), 0, &err);
            if (families) {
                char slot_text[12];
                snprintf(slot_text, sizeof slot_text, "%d", slot);
                const char *parse_why = NULL;
                int parsed = check_snapshot(families, slot_text, &keys, &parse_why);

                char *before = render(apps, false);
                const char *why = NULL;
                int r = metrics_app_update(ma, key, slot, families, now++, &why);
                check(r == 0 || r == -EPROTO || r == -E2BIG);
                if (parsed < 0) {
                    check(r == parsed && strcmp(why, parse_why) == 0);
                }
                if (r < 0) {
                    check(why != NULL);
                    /* Refused means refused: the page is what it was. (Conflict counts may
                     * differ, but those are not on this page.) */
                    char *after = render(apps, false);
                    check(strcmp(before, after) == 0);
                    free(after);
                }
                free(before);
                json_decref(families);
            }
            if (ctl & 0x80) {
                metrics_app_retire(ma, key);
            }
        }
        p = nl ? nl + 1 : end;
    }

    char *text = render(apps, false);
    check_text(text);
    free(text);
    char *json = render(apps, true);
    check_json(json);
    free(json);
    for (int i = 0; i < 2; i++) {
        struct metrics_stats st;
        metrics_app_stats(apps[i], &st);
        check(st.series <= METRICS_MAX_APP_SERIES);
        metrics_app_free(apps[i]);
    }
    snapshot_keys_done(&keys);
    return 0;
}
