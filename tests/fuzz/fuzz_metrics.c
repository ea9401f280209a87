/*
 * libFuzzer target for metrics and prom: the input is a few lines, each one worker's snapshot
 * as it would arrive on the channel; the first byte of a line picks the app (of two), the
 * worker key and slot, and whether the worker exits after it. Every line goes through
 * metrics_app_update, then the page of both apps is built and written in both formats.
 * Beyond "does not crash or leak" it checks what a scraper relies on: the JSON page parses,
 * the text page has one TYPE line per name and ends every line, the stores' series counts stay
 * within their limits, and a refused snapshot changes no page.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isupervisor \
 *       tests/fuzz/fuzz_metrics.c supervisor/metrics.c supervisor/prom.c -ljansson -lm \
 *       -o fuzz_metrics
 *   mkdir -p corpus && ./fuzz_metrics -max_len=65536 corpus
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "metrics.h"
#include "prom.h"

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
    struct metrics_page page;
    struct prom_buf b;
    char *out = NULL;
    size_t len = 0;
    check(metrics_page_build(apps, 2, &page) == 0);
    prom_buf_init(&b);
    int r = json ? prom_format_json(&b, page.families, page.n_families)
                 : prom_format_text(&b, page.families, page.n_families);
    check(r == 0);
    check(prom_buf_take(&b, &out, &len) == 0);
    check(strlen(out) == len);
    metrics_page_done(&page);
    return out;
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
                char *before = render(apps, false);
                const char *why = NULL;
                int r = metrics_app_update(ma, key, slot, families, now++, &why);
                check(r == 0 || r == -EPROTO || r == -E2BIG);
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
    return 0;
}
