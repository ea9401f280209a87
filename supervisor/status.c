/*
 * status: the apps part of the status reply (SPEC section 7), built once for the two places
 * that serve it: the control socket's `status` and the admin endpoint's /health/detailed.
 */
#include "status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "listener.h"
#include "log.h"
#include "master.h"
#include "procstat.h"
#include "worker.h"

static double status_round(double v, double unit)
{
    return round(v / unit) * unit;
}

/* One entry of an app's worker list: a live worker, or a slot waiting in backoff. */
struct status_row {
    unsigned slot;
    unsigned generation;
    double started_at;
    struct worker *w;
    struct slot *s;
};

static int status_row_cmp(const void *a, const void *b)
{
    const struct status_row *x = a, *y = b;
    if (x->slot != y->slot) {
        return x->slot < y->slot ? -1 : 1;
    }
    if (x->generation != y->generation) {
        return x->generation < y->generation ? -1 : 1;
    }
    return (x->started_at > y->started_at) - (x->started_at < y->started_at);
}

static struct slot *status_slot(const struct app *app, unsigned id)
{
    return id < app->n_slots ? app->slots[id] : NULL;
}

static json_t *status_worker_json_of(struct app *app, const struct status_row *row, double now)
{
    struct worker *w = row->w;
    if (!w) {
        /* A slot between two workers, waiting out its backoff delay. */
        double in = ev_timer_remaining(app->host->loop, &row->s->restart_w);
        return json_pack("{s:I, s:i, s:s, s:I, s:f, s:I, s:I, s:f, s:f}", "slot",
                         (json_int_t)row->slot, "pid", 0, "state", "backoff", "generation",
                         (json_int_t)app->generation, "uptime_s", 0.0, "restarts",
                         (json_int_t)row->s->restarts, "rss_bytes", (json_int_t)0, "cpu_percent",
                         0.0, "restart_in_s", status_round(in > 0 ? in : 0, 0.001));
    }
    /* Memory is read fresh (one pread): the app's last sample may predate the worker's exec.
     * CPU stays the sampler's, a rate that needs its interval. */
    uint64_t rss = w->stat.rss_bytes;
    struct procstat st;
    if (w->stat_fd != -1 && worker_is_alive(w) && procstat_read(w->stat_fd, &st) == 0) {
        rss = st.rss_bytes;
    }
    struct slot *s = status_slot(app, w->slot);
    json_t *o = json_pack("{s:I, s:I, s:s, s:I, s:f, s:I, s:I, s:f}", "slot", (json_int_t)w->slot,
                          "pid", (json_int_t)w->pid, "state", worker_state_to_string(w->state),
                          "generation", (json_int_t)w->generation, "uptime_s",
                          status_round(now - w->started_at, 0.001), "restarts",
                          (json_int_t)(s ? s->restarts : 0), "rss_bytes", (json_int_t)rss,
                          "cpu_percent", status_round(w->cpu_percent, 0.01));
    if (o && w->status_text) {
        /* sd_notify text is raw bytes, and the 512-byte cut can split a character */
        json_object_set_new(o, "status", log_json_text(w->status_text, strlen(w->status_text)));
    }
    return o;
}

/* Each address the app serves on, with its accept queue (SPEC section 13): TCP only. */
static json_t *status_listen_json(const struct app *app)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < app->n_listeners; i++) {
        const struct listener *l = &app->listeners[i];
        unsigned len = 0, limit = 0;
        json_t *e = json_pack("{s:s}", "address", l->addr.text);
        if (e && listener_queue(l, &len, &limit) == 0) {
            json_object_set_new(e, "queue", json_integer(len));
            json_object_set_new(e, "limit", json_integer(limit));
        }
        json_array_append_new(list, e);
    }
    return list;
}

/* The slot's last exit (SPEC section 10), without its output lines: a status stays short. */
static void status_add_last_exit(json_t *o, const struct slot *s)
{
    if (!o || !s || !s->last_exit) {
        return;
    }
    json_t *e = json_deep_copy(s->last_exit);
    if (e) {
        json_object_del(e, "last_output");
        json_object_set_new(o, "last_exit", e);
    }
}

static json_t *status_worker_json(struct app *app, const struct status_row *row, double now)
{
    json_t *o = status_worker_json_of(app, row, now);
    status_add_last_exit(o, row->s ? row->s : status_slot(app, row->slot));
    return o;
}

json_t *status_app_json(struct app *app, double now)
{
    size_t n = app_live_count(app) + app->n_slots;
    struct status_row *rows = calloc(n ? n : 1, sizeof *rows);
    json_t *workers = json_array();
    json_t *restarts = json_object();
    json_t *o = NULL;
    if (!rows || !workers || !restarts) {
        goto out;
    }
    size_t k = 0;
    for (struct worker *w = app->workers; w && k < n; w = w->next) {
        rows[k++] = (struct status_row){w->slot, w->generation, w->started_at, w, NULL};
    }
    for (unsigned i = 0; i < app->n_slots && k < n; i++) {
        struct slot *s = app->slots[i];
        if (s->fsm.state == SLOT_BACKOFF) {
            rows[k++] = (struct status_row){s->id, app->generation, now, NULL, s};
        }
    }
    qsort(rows, k, sizeof *rows, status_row_cmp);
    for (size_t i = 0; i < k; i++) {
        if (json_array_append_new(workers, status_worker_json(app, &rows[i], now)) < 0) {
            goto out;
        }
    }
    for (int r = 0; r < WORKER_REASON_COUNT; r++) {
        json_object_set_new(restarts, worker_reason_to_string((enum worker_reason)r),
                            json_integer((json_int_t)app->restarts[r]));
    }
    o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:O, s:I, s:O}", "name", app->name, "state",
                  /* depends_on: stopped in the table, "waiting" to a person (apporder.h) */
                  app->waiting_for[0] ? "waiting" : app_state_to_string(app->state),
                  "generation", (json_int_t)app->generation,
                  "wanted", (json_int_t)app->n_slots, "ready",
                  (json_int_t)app_ready_count(app), "restarts", restarts, "log_dropped",
                  (json_int_t)app->log_dropped, "workers", workers);
    if (o) {
        json_object_set_new(o, "listen", status_listen_json(app));
        if (app->waiting_for[0]) {
            json_object_set_new(o, "waiting_for", json_string(app->waiting_for));
        }
        if (app->cfg->n_depends_on > 0) {
            json_t *deps = json_array();
            for (size_t i = 0; deps && i < app->cfg->n_depends_on; i++) {
                json_array_append_new(deps, json_string(app->cfg->depends_on[i]));
            }
            json_object_set_new(o, "depends_on", deps);
        }
        if (app_is_autoscaled(app)) {
            json_object_set_new(o, "autoscale",
                                json_pack("{s:I, s:I, s:b}", "min", (json_int_t)app->cfg->workers,
                                          "max", (json_int_t)app->cfg->workers_max, "pinned",
                                          app->pinned));
        }
    }
out:
    json_decref(workers);
    json_decref(restarts);
    free(rows);
    return o;
}
