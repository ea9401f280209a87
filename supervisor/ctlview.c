/*
 * ctlview: the human words for drover's replies (see ctlview.h). A row is built as cells first
 * and printed once every width is known, so columns line up whatever the values are; colour
 * wraps a cell's text only, never its padding, so escapes do not move the alignment.
 */
#include "ctlview.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const char *ctlview_state_color(const char *state)
{
    if (strcmp(state, "ready") == 0 || strcmp(state, "running") == 0) {
        return CTLVIEW_GREEN;
    }
    if (strcmp(state, "starting") == 0 || strcmp(state, "backoff") == 0 ||
        strcmp(state, "reloading") == 0) {
        return CTLVIEW_YELLOW;
    }
    if (strcmp(state, "errored") == 0 || strcmp(state, "hung") == 0) {
        return CTLVIEW_RED;
    }
    return CTLVIEW_DIM; /* draining, stopping, stopped */
}

void ctlview_format_duration(double s, char *buf, size_t size)
{
    unsigned long t = s > 0 ? (unsigned long)s : 0;
    if (t < 60) {
        snprintf(buf, size, "%lus", t);
    } else if (t < 3600) {
        snprintf(buf, size, "%lum%02lus", t / 60, t % 60);
    } else if (t < 86400) {
        snprintf(buf, size, "%luh%02lum", t / 3600, t % 3600 / 60);
    } else {
        snprintf(buf, size, "%lud%02luh", t / 86400, t % 86400 / 3600);
    }
}

void ctlview_format_bytes(double b, char *buf, size_t size)
{
    static const char units[] = "BKMGTP";
    size_t u = 0;
    while (b >= 1024 && u + 1 < sizeof units - 1) {
        b /= 1024;
        u++;
    }
    if (u == 0) {
        snprintf(buf, size, "%.0f%c", b, units[u]);
    } else if (b < 99.95) {
        snprintf(buf, size, "%.1f%c", b, units[u]);
    } else {
        snprintf(buf, size, "%.0f%c", b, units[u]);
    }
}

#define CTLVIEW_COLS 11

struct ctlview_table {
    char *(*cells)[CTLVIEW_COLS];
    size_t rows;
    size_t cap;
    int state_col;
};

static int ctlview_table_add(struct ctlview_table *t, const char *const cells[CTLVIEW_COLS])
{
    if (t->rows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char *(*c)[CTLVIEW_COLS] = realloc(t->cells, cap * sizeof *c);
        if (!c) {
            return -ENOMEM;
        }
        t->cells = c;
        t->cap = cap;
    }
    for (int i = 0; i < CTLVIEW_COLS; i++) {
        t->cells[t->rows][i] = strdup(cells[i]);
        if (!t->cells[t->rows][i]) {
            while (i-- > 0) {
                free(t->cells[t->rows][i]);
            }
            return -ENOMEM;
        }
    }
    t->rows++;
    return 0;
}

static void ctlview_table_write(const struct ctlview_table *t, FILE *f, bool color)
{
    size_t width[CTLVIEW_COLS] = {0};
    for (size_t r = 0; r < t->rows; r++) {
        for (int i = 0; i < CTLVIEW_COLS; i++) {
            size_t n = strlen(t->cells[r][i]);
            width[i] = n > width[i] ? n : width[i];
        }
    }
    for (size_t r = 0; r < t->rows; r++) {
        const char *row_color = color && r == 0 ? CTLVIEW_BOLD : NULL;
        if (row_color) {
            fputs(row_color, f);
        }
        /* A row ends at its last non-empty cell: no trailing blanks (the queue is on an app's
         * first row only). */
        int end = CTLVIEW_COLS;
        while (end > 1 && !t->cells[r][end - 1][0]) {
            end--;
        }
        for (int i = 0; i < end; i++) {
            const char *cell = t->cells[r][i];
            bool last = i == end - 1;
            /* Colour wraps the text only, so the padding (and the alignment) stays exact. */
            const char *c = color && r > 0 && i == t->state_col ? ctlview_state_color(cell) : NULL;
            fprintf(f, "%s%s%s", c ? c : "", cell, c ? CTLVIEW_RESET : "");
            if (!last) {
                fprintf(f, "%*s", (int)(width[i] - strlen(cell) + 2), "");
            }
        }
        if (row_color) {
            fputs(CTLVIEW_RESET, f);
        }
        fputc('\n', f);
    }
}

static void ctlview_table_free(struct ctlview_table *t)
{
    for (size_t r = 0; r < t->rows; r++) {
        for (int i = 0; i < CTLVIEW_COLS; i++) {
            free(t->cells[r][i]);
        }
    }
    free(t->cells);
}

double ctlview_number(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_number(v) ? json_number_value(v) : 0;
}

const char *ctlview_string(json_t *obj, const char *key, const char *dflt)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : dflt;
}

/* The accept queue of an app's TCP listeners, summed: "3/4096", or "-" when it has none. */
static void ctlview_format_queue(json_t *listen, char *buf, size_t size)
{
    double len = 0, limit = 0;
    bool any = false;
    size_t i;
    json_t *l;
    json_array_foreach(listen, i, l)
    {
        if (json_is_integer(json_object_get(l, "queue"))) {
            any = true;
            len += ctlview_number(l, "queue");
            limit += ctlview_number(l, "limit");
        }
    }
    if (any) {
        snprintf(buf, size, "%.0f/%.0f", len, limit);
    } else {
        snprintf(buf, size, "-");
    }
}

/* A slot's last exit in one word (SPEC section 10): "SIGABRT/hang", "code=1/crash",
 * "SIGKILL!/crash" (a SIGKILL drover did not send: the OOM killer, an operator), "-" for none;
 * "+core" when it dumped core. The whole record is in --json and the log. */
static void ctlview_format_exit(json_t *e, char *buf, size_t size)
{
    if (!json_is_object(e)) {
        snprintf(buf, size, "-");
        return;
    }
    const char *sig = ctlview_string(e, "signal", NULL);
    const char *sender = ctlview_string(e, "sender", "drover");
    char how[32];
    if (sig) {
        snprintf(how, sizeof how, "SIG%s%s", sig, strcmp(sender, "drover") != 0 ? "!" : "");
    } else {
        snprintf(how, sizeof how, "code=%.0f", ctlview_number(e, "exit_code"));
    }
    snprintf(buf, size, "%s/%s%s", how, ctlview_string(e, "reason", "?"),
             json_is_true(json_object_get(e, "core_dumped")) ? "+core" : "");
}

int ctlview_status_write(json_t *reply, FILE *f, bool color)
{
    static const char *const header[CTLVIEW_COLS] = {"APP", "SLOT",      "PID",      "STATE",
                                                     "GEN", "UPTIME",    "RESTARTS", "MEMORY",
                                                     "CPU", "LAST_EXIT", "QUEUE"};
    struct ctlview_table t = {.state_col = 3};
    int r = ctlview_table_add(&t, header);
    json_t *apps = json_object_get(reply, "apps");
    size_t i;
    json_t *app;
    json_array_foreach(apps, i, app)
    {
        const char *name = ctlview_string(app, "name", "?");
        json_t *workers = json_object_get(app, "workers");
        char gen[32], queue[48];
        snprintf(gen, sizeof gen, "%.0f", ctlview_number(app, "generation"));
        ctlview_format_queue(json_object_get(app, "listen"), queue, sizeof queue);
        if (json_array_size(workers) == 0) {
            const char *row[CTLVIEW_COLS] = {name, "-", "-",  ctlview_string(app, "state", "?"),
                                             gen,  "-", "-",  "-",
                                             "-",  "-", queue};
            r = r < 0 ? r : ctlview_table_add(&t, row);
            continue;
        }
        size_t j;
        json_t *w;
        json_array_foreach(workers, j, w)
        {
            char slot[32], pid[32], wgen[32], up[32], restarts[32], mem[32], cpu[32];
            const char *state = ctlview_string(w, "state", "?");
            bool live = ctlview_number(w, "pid") > 0;
            snprintf(slot, sizeof slot, "%.0f", ctlview_number(w, "slot"));
            snprintf(pid, sizeof pid, live ? "%.0f" : "-", ctlview_number(w, "pid"));
            snprintf(wgen, sizeof wgen, "%.0f", ctlview_number(w, "generation"));
            snprintf(restarts, sizeof restarts, "%.0f", ctlview_number(w, "restarts"));
            if (live) {
                ctlview_format_duration(ctlview_number(w, "uptime_s"), up, sizeof up);
                ctlview_format_bytes(ctlview_number(w, "rss_bytes"), mem, sizeof mem);
                snprintf(cpu, sizeof cpu, "%.1f%%", ctlview_number(w, "cpu_percent"));
            } else {
                snprintf(up, sizeof up, "-");
                snprintf(mem, sizeof mem, "-");
                snprintf(cpu, sizeof cpu, "-");
            }
            char last[96];
            ctlview_format_exit(json_object_get(w, "last_exit"), last, sizeof last);
            /* The queue is the app's, shown once, on its first row. */
            const char *row[CTLVIEW_COLS] = {
                name, slot, pid, state, wgen, up, restarts, mem, cpu, last, j == 0 ? queue : ""};
            r = r < 0 ? r : ctlview_table_add(&t, row);
        }
    }
    if (r == 0) {
        ctlview_table_write(&t, f, color);
    }
    ctlview_table_free(&t);
    return r;
}

void ctlview_log_write(json_t *rec, FILE *f, bool color)
{
    bool err = strcmp(ctlview_string(rec, "stream", "stdout"), "stderr") == 0;
    const char *msg = ctlview_string(rec, "msg", "");
    fprintf(f, "%s%s%s %s%s/%.0f [%.0f]%s %s%s%s %s\n", color ? CTLVIEW_DIM : "",
            ctlview_string(rec, "ts", "-"), color ? CTLVIEW_RESET : "", color ? CTLVIEW_CYAN : "",
            ctlview_string(rec, "app", "?"), ctlview_number(rec, "worker"),
            ctlview_number(rec, "pid"), color ? CTLVIEW_RESET : "", color && err ? CTLVIEW_RED : "",
            err ? "err|" : "out|", color && err ? CTLVIEW_RESET : "", msg);
}

/* One lifecycle event: time, seq, type, where, what. */
void ctlview_event_write(json_t *ev, FILE *f, bool color, bool time_only)
{
    char where[128] = "drover";
    const char *ts = ctlview_string(ev, "ts", "-");
    /* 2026-01-02T03:04:05.678Z: the time of day starts after the 'T'. */
    const char *tod = strchr(ts, 'T');
    if (time_only && tod) {
        ts = tod + 1;
    }
    if (json_is_string(json_object_get(ev, "app"))) {
        if (json_is_integer(json_object_get(ev, "worker"))) {
            snprintf(where, sizeof where, "%s/%.0f", ctlview_string(ev, "app", "?"),
                     ctlview_number(ev, "worker"));
        } else {
            snprintf(where, sizeof where, "%s", ctlview_string(ev, "app", "?"));
        }
    }
    fprintf(f, "%s%s #%.0f%s %s%-15s%s %s %s\n", color ? CTLVIEW_DIM : "", ts,
            ctlview_number(ev, "seq"), color ? CTLVIEW_RESET : "", color ? CTLVIEW_CYAN : "",
            ctlview_string(ev, "type", "?"), color ? CTLVIEW_RESET : "", where,
            ctlview_string(ev, "msg", ""));
}
