/*
 * admin: the HTTP endpoint (SPEC section 6). See admin.h.
 *
 * libmicrohttpd runs without threads of its own, inside the master's libev loop: MHD keeps its
 * sockets in one epoll set, whose fd we watch with an ev_io, and tells us through
 * MHD_get_timeout() when it must run even without activity (connection timeouts); an ev_timer
 * keeps that appointment. Every request is therefore answered on the loop thread, where reading
 * the master's state needs no lock, and an answer is built from what the master already has:
 * the latest snapshots in the metrics stores, the /proc samples of each worker. Nothing here
 * waits on a worker, so a hung worker cannot slow a scrape, and a slow client costs only its
 * own connection (bounded in number and in time).
 *
 * The listen socket is bound by us (listener_open, as every other drover socket) and handed to
 * MHD, so a failed bind is reported like any other: "bind('ADDR') failed: ..." and exit 3.
 *
 * drover's own series (SPEC section 6) are described per scrape from the master's structures;
 * drover_worker_* series are per slot, taken from the slot's newest process, so a slot whose
 * worker is being replaced (old one draining, new one starting) still has one series, as the
 * per-worker view of metrics.c does.
 */
#include "admin.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "listener.h"
#include "events.h"
#include "hooks.h"
#include "handover.h"
#include "log.h"
#include "upgrade.h"
#include "version.h"
#include "logbuf.h"
#include "master.h"
#include "metrics.h"
#include "page.h"
#include "prom.h"
#include "samples.h"
#include "shutdown.h"
#include "status.h"
#include "statuspage.h"
#include "worker.h"

/* Concurrent connections and the idle time after which MHD drops one. */
#define ADMIN_CONNECTIONS 64
#define ADMIN_TIMEOUT_S 10
/* Recent stderr lines per app shown as its last errors on /health/detailed. */
#define ADMIN_LAST_ERRORS 5

struct admin {
    struct master *m;
    struct MHD_Daemon *daemon;
    struct listener l;
    ev_io io_w;
    ev_timer timer_w;
    ev_timer sample_w;          /* every SAMPLES_INTERVAL_S: one more sample for the page */
    struct samples samples;     /* the status page's charts (samples.h), bounded */
};

/* How long the last rendering of the page took (also for get_metrics, and without an admin
 * endpoint at all), for drover_scrape_duration_seconds. One master per process. */
static double admin_last_scrape_s;

static double admin_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- drover's own series ---- */

/* The families drover adds to the page, described with storage sized once per scrape. */
struct own {
    struct prom_family fams[32];
    size_t n_fams;
    struct prom_sample *samples;
    size_t n_samples, cap_samples;
    bool overflow;                  /* a family or sample did not fit: the page is refused */
    struct prom_label *labels;      /* two per sample at most */
    char (*texts)[24];              /* numbers used as label values */
    size_t n_texts, cap_texts;
    double *counts;                 /* histogram counts */
    size_t n_counts;
};

/*
 * The storage is sized in own_build from the same counts the families are built from, so it
 * fits by construction; these bounds are the second guard. Past them a family or sample is not
 * written but remembered (o->overflow), and own_build fails, so that a counting mistake shows as
 * a refused page rather than as a write past the end of the heap block or a page quietly
 * missing series.
 */
static void own_family(struct own *o, const char *name, enum prom_type type, const char *help)
{
    if (o->n_fams == sizeof o->fams / sizeof o->fams[0]) {
        o->overflow = true;
        return;
    }
    o->fams[o->n_fams++] = (struct prom_family){.name = name, .help = help, .type = type,
                                                .samples = o->samples + o->n_samples};
}

/* A sample of the current family with up to two labels (name NULL = none). Returns it, or
 * NULL when it does not fit. */
static struct prom_sample *own_sample(struct own *o, double v, const char *k1, const char *v1,
                                      const char *k2, const char *v2)
{
    if (o->overflow || o->n_fams == 0 || o->n_samples == o->cap_samples) {
        o->overflow = true;
        return NULL;
    }
    struct prom_sample *s = &o->samples[o->n_samples];
    struct prom_label *l = &o->labels[2 * o->n_samples];
    o->n_samples++;
    o->fams[o->n_fams - 1].n_samples++;
    *s = (struct prom_sample){.pre = l, .value = v};
    if (k1) {
        l[s->n_pre++] = (struct prom_label){k1, v1};
    }
    if (k2) {
        l[s->n_pre++] = (struct prom_label){k2, v2};
    }
    return s;
}

static const char *own_text(struct own *o, unsigned v)
{
    if (o->n_texts == o->cap_texts) {
        o->overflow = true;
        return "";
    }
    char *t = o->texts[o->n_texts++];
    snprintf(t, sizeof o->texts[0], "%u", v);
    return t;
}

/*
 * The worker's memory and CPU time now: one pread of /proc/PID/stat through the descriptor the
 * worker keeps open (no waiting on the worker itself), so a worker started since the last
 * memory_check_interval sample does not show 0. Falls back to that last sample.
 */
static struct procstat admin_procstat(const struct worker *w)
{
    struct procstat st;
    if (w->stat_fd != -1 && worker_is_alive(w) && procstat_read(w->stat_fd, &st) == 0) {
        return st;
    }
    return w->stat;
}

static int worker_slot_cmp(const void *a, const void *b)
{
    const struct worker *x = *(struct worker *const *)a, *y = *(struct worker *const *)b;
    if (x->slot != y->slot) {
        return x->slot < y->slot ? -1 : 1;
    }
    return (x->id > y->id) - (x->id < y->id);
}

/* The newest live worker of each slot, sorted by slot, into out (app_live_count entries).
 * Returns how many. */
static size_t app_slot_workers(const struct app *app, struct worker **out)
{
    size_t n = app_collect_workers(app, out, app_live_count(app));
    qsort(out, n, sizeof *out, worker_slot_cmp);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + 1 < n && out[i + 1]->slot == out[i]->slot) {
            continue;
        }
        out[k++] = out[i];
    }
    return k;
}

/* 0 while running; 1..6 for initiated..complete once the supervisor's shutdown began. */
static unsigned admin_shutdown_phase(const struct master *m)
{
    if (m->state != MASTER_STOPPING) {
        return 0;
    }
    return (unsigned)(m->shutdown ? shutdown_phase(m->shutdown) : WIRE_PHASE_COMPLETE) + 1;
}

static const char *const worker_states[] = {"starting", "ready", "hung", "draining", "stopping",
                                            "backoff"};

static unsigned app_count_state(const struct app *app, size_t state)
{
    unsigned n = 0;
    /* "backoff" is a slot's state, not a worker's: slots waiting out a delay. */
    if (strcmp(worker_states[state], "backoff") == 0) {
        for (unsigned i = 0; i < app->n_slots; i++) {
            const struct slot *s = app->slots[i];
            n += s->fsm.state == SLOT_BACKOFF;
        }
        return n;
    }
    for (const struct worker *w = app->workers; w; w = w->next) {
        n += strcmp(worker_state_to_string(w->state), worker_states[state]) == 0;
    }
    return n;
}

static size_t admin_listener_count(const struct master *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n_apps; i++) {
        n += m->apps[i]->n_listeners;
    }
    return n;
}

/* Describes drover's own families into o. Returns 0 or -ENOMEM. */
static int own_build(struct master *m, struct own *o)
{
    size_t n_workers = 0;
    for (size_t i = 0; i < m->n_apps; i++) {
        n_workers += app_live_count(m->apps[i]);
    }
    /* Per app: a state count each, a restart count per reason, reloads done and failed, the
     * reload histogram, lines dropped, snapshots, a refusal count per reason, conflicts,
     * series. Per slot's worker: the four drover_worker_* series. Then five single series. */
    size_t per_app = sizeof worker_states / sizeof worker_states[0] + WORKER_REASON_COUNT + 2 +
                     1 + 1 + 1 + METRICS_REFUSED_COUNT + 1 + 1;
    const struct hooks_stat *hooks_seen;
    o->cap_samples = m->n_apps * per_app + 4 * n_workers + 8 + EVENT__COUNT +
                     4 * hooks_stats(&hooks_seen) + 2 * admin_listener_count(m);
    o->samples = calloc(o->cap_samples, sizeof *o->samples);
    o->labels = calloc(2 * o->cap_samples, sizeof *o->labels);
    o->cap_texts = n_workers + 1;
    o->texts = calloc(o->cap_texts, sizeof *o->texts);
    o->counts = calloc(m->n_apps * (APP_RELOAD_BUCKETS + 1) + 1, sizeof *o->counts);
    struct worker **ws = calloc(n_workers + 1, sizeof *ws);
    size_t *n_slot_workers = calloc(m->n_apps + 1, sizeof *n_slot_workers);
    if (!o->samples || !o->labels || !o->texts || !o->counts || !ws || !n_slot_workers) {
        free(ws);
        free(n_slot_workers);
        return -ENOMEM;
    }
    /* The per-slot worker lists of every app, one after the other in ws. */
    size_t off = 0;
    for (size_t i = 0; i < m->n_apps; i++) {
        n_slot_workers[i] = app_slot_workers(m->apps[i], ws + off);
        off += n_slot_workers[i];
    }
    ev_tstamp now = ev_now(m->loop);

    own_family(o, "drover_workers", PROM_GAUGE,
               "Workers by state; backoff counts slots waiting to restart.");
    for (size_t i = 0; i < m->n_apps; i++) {
        for (size_t s = 0; s < sizeof worker_states / sizeof worker_states[0]; s++) {
            own_sample(o, app_count_state(m->apps[i], s), "app", m->apps[i]->name, "state",
                       worker_states[s]);
        }
    }
    own_family(o, "drover_worker_restarts_total", PROM_COUNTER,
               "Workers restarted, by reason.");
    for (size_t i = 0; i < m->n_apps; i++) {
        for (int r = 0; r < WORKER_REASON_COUNT; r++) {
            own_sample(o, (double)m->apps[i]->restarts[r], "app", m->apps[i]->name, "reason",
                       worker_reason_to_string((enum worker_reason)r));
        }
    }

    /* Per slot: memory, CPU, generation, metrics age. */
    static const struct {
        const char *name;
        enum prom_type type;
        const char *help;
    } per_worker[] = {
        {"drover_worker_memory_bytes", PROM_GAUGE, "Resident memory of the slot's worker."},
        {"drover_worker_cpu_seconds_total", PROM_COUNTER,
         "CPU time (user + system) of the slot's worker process."},
        {"drover_worker_generation", PROM_GAUGE, "Generation the slot's worker runs."},
        {"drover_worker_metrics_age_seconds", PROM_GAUGE,
         "Time since the slot's worker last sent a metrics snapshot."},
    };
    const char **slot_text = calloc(n_workers + 1, sizeof *slot_text);
    if (!slot_text) {
        free(ws);
        free(n_slot_workers);
        return -ENOMEM;
    }
    for (size_t f = 0; f < sizeof per_worker / sizeof per_worker[0]; f++) {
        own_family(o, per_worker[f].name, per_worker[f].type, per_worker[f].help);
        off = 0;
        for (size_t i = 0; i < m->n_apps; i++) {
            struct app *app = m->apps[i];
            for (size_t k = 0; k < n_slot_workers[i]; k++, off++) {
                const struct worker *w = ws[off];
                if (!slot_text[off]) {
                    slot_text[off] = own_text(o, w->slot);
                }
                double v = 0;
                double at;
                switch (f) {
                case 0:
                    v = (double)admin_procstat(w).rss_bytes;
                    break;
                case 1:
                    v = (double)admin_procstat(w).cpu_ns / 1e9;
                    break;
                case 2:
                    v = w->generation;
                    break;
                default:
                    if (metrics_app_snapshot_time(app->metrics, w->id, &at) < 0) {
                        continue;
                    }
                    v = now - at > 0 ? round((now - at) * 1e3) / 1e3 : 0;
                    break;
                }
                own_sample(o, v, "app", app->name, "worker", slot_text[off]);
            }
        }
    }
    free(slot_text);
    free(ws);
    free(n_slot_workers);

    own_family(o, "drover_reloads_total", PROM_COUNTER,
               "Config reloads by result: done, or failed (refused or rolled back).");
    for (size_t i = 0; i < m->n_apps; i++) {
        own_sample(o, (double)m->apps[i]->reloads[0], "app", m->apps[i]->name, "result", "done");
        own_sample(o, (double)m->apps[i]->reloads[1], "app", m->apps[i]->name, "result",
                   "failed");
    }
    own_family(o, "drover_reload_duration_seconds", PROM_HISTOGRAM,
               "Duration of config reloads, from request to the last slot replaced.");
    o->fams[o->n_fams - 1].buckets = app_reload_buckets;
    o->fams[o->n_fams - 1].n_buckets = APP_RELOAD_BUCKETS;
    for (size_t i = 0; i < m->n_apps; i++) {
        const struct app *app = m->apps[i];
        double *c = o->counts + o->n_counts;
        o->n_counts += APP_RELOAD_BUCKETS + 1;
        double acc = 0;
        for (size_t b = 0; b <= APP_RELOAD_BUCKETS; b++) {
            acc += (double)app->reload_hist[b];
            c[b] = acc;
        }
        struct prom_sample *s = own_sample(o, 0, "app", app->name, NULL, NULL);
        if (s) {
            s->counts = c;
            s->sum = app->reload_seconds;
            s->count = acc;
        }
    }
    own_family(o, "drover_log_lines_dropped_total", PROM_COUNTER,
               "Worker output lines dropped because drover's log reader was behind.");
    for (size_t i = 0; i < m->n_apps; i++) {
        own_sample(o, (double)m->apps[i]->log_dropped, "app", m->apps[i]->name, NULL, NULL);
    }

    /* What the metrics stores took, refused or keep apart (conflicts as of the page build
     * that precedes this in admin_render_metrics). */
    struct metrics_stats st;
    own_family(o, "drover_metrics_snapshots_total", PROM_COUNTER,
               "Worker metrics snapshots taken into the combined page.");
    for (size_t i = 0; i < m->n_apps; i++) {
        metrics_app_stats(m->apps[i]->metrics, &st);
        own_sample(o, (double)st.accepted, "app", m->apps[i]->name, NULL, NULL);
    }
    own_family(o, "drover_metrics_refused_total", PROM_COUNTER,
               "Worker metrics snapshots refused whole, by reason (the previous one is kept).");
    for (size_t i = 0; i < m->n_apps; i++) {
        metrics_app_stats(m->apps[i]->metrics, &st);
        for (int r = 0; r < METRICS_REFUSED_COUNT; r++) {
            own_sample(o, (double)st.refused[r], "app", m->apps[i]->name, "reason",
                       metrics_refusal_to_string((enum metrics_refusal)r));
        }
    }
    own_family(o, "drover_metrics_conflicts", PROM_GAUGE,
               "Metric families left off the page because they disagree with the definition "
               "in use (type, buckets, agg).");
    for (size_t i = 0; i < m->n_apps; i++) {
        metrics_app_stats(m->apps[i]->metrics, &st);
        own_sample(o, (double)st.conflicts, "app", m->apps[i]->name, NULL, NULL);
    }
    own_family(o, "drover_metrics_series", PROM_GAUGE,
               "Distinct series of the app's workers on the page, retired totals included.");
    for (size_t i = 0; i < m->n_apps; i++) {
        metrics_app_stats(m->apps[i]->metrics, &st);
        own_sample(o, (double)st.series, "app", m->apps[i]->name, NULL, NULL);
    }

    own_family(o, "drover_shutdown_phase", PROM_GAUGE,
               "Shutdown phase: 0 running, 1 initiated, 2 drain, 3 save, 4 close, 5 cleanup, "
               "6 complete.");
    own_sample(o, admin_shutdown_phase(m), NULL, NULL, NULL, NULL);
    own_family(o, "drover_scrape_duration_seconds", PROM_GAUGE,
               "Time the previous rendering of this page took.");
    own_sample(o, round(admin_last_scrape_s * 1e6) / 1e6, NULL, NULL, NULL, NULL);
    own_family(o, "drover_uptime_seconds", PROM_GAUGE, "Time since drover started.");
    own_sample(o, round((now - m->started_at) * 1e3) / 1e3, NULL, NULL, NULL, NULL);
    own_family(o, "drover_log_records_dropped_total", PROM_COUNTER,
               "drover's own log records dropped because the log reader was behind.");
    own_sample(o, (double)log_dropped_total(), NULL, NULL, NULL, NULL);
    own_family(o, "drover_build_info", PROM_GAUGE, "drover's version; always 1.");
    own_sample(o, 1, "version", drover_version, NULL, NULL);
    own_family(o, "drover_upgrades_total", PROM_COUNTER,
               "Upgrades in place (SPEC section 12) by result: done, rolled_back, refused.");
    for (int r = 0; r < UPGRADE__COUNT; r++) {
        own_sample(o, (double)upgrade_count((enum upgrade_result)r), "result",
                   upgrade_result_to_string((enum upgrade_result)r), NULL, NULL);
    }
    own_family(o, "drover_listen_queue_length", PROM_GAUGE,
               "Connections in the accept queue of the app's listening socket (TCP).");
    for (size_t i = 0; i < m->n_apps; i++) {
        for (size_t j = 0; j < m->apps[i]->n_listeners; j++) {
            unsigned len, limit;
            const struct listener *l = &m->apps[i]->listeners[j];
            if (listener_queue(l, &len, &limit) == 0) {
                own_sample(o, len, "app", m->apps[i]->name, "listen", l->addr.text);
            }
        }
    }
    own_family(o, "drover_listen_queue_limit", PROM_GAUGE,
               "The accept queue's limit (the backlog as the kernel applies it).");
    for (size_t i = 0; i < m->n_apps; i++) {
        for (size_t j = 0; j < m->apps[i]->n_listeners; j++) {
            unsigned len, limit;
            const struct listener *l = &m->apps[i]->listeners[j];
            if (listener_queue(l, &len, &limit) == 0) {
                own_sample(o, limit, "app", m->apps[i]->name, "listen", l->addr.text);
            }
        }
    }
    const struct hooks_stat *hs;
    size_t n_hooks = hooks_stats(&hs);
    own_family(o, "drover_hook_runs_total", PROM_COUNTER,
               "Hook runs (a command, or a webhook with its retries) by result.");
    for (size_t i = 0; i < n_hooks; i++) {
        own_sample(o, (double)hs[i].ok, "hook", hs[i].name, "result", "ok");
        own_sample(o, (double)hs[i].failed, "hook", hs[i].name, "result", "failed");
        own_sample(o, (double)hs[i].timeout, "hook", hs[i].name, "result", "timeout");
    }
    own_family(o, "drover_hook_dropped_total", PROM_COUNTER,
               "Events a hook dropped because its queue was full.");
    for (size_t i = 0; i < n_hooks; i++) {
        own_sample(o, (double)hs[i].dropped, "hook", hs[i].name, NULL, NULL);
    }
    own_family(o, "drover_events_total", PROM_COUNTER, "Lifecycle events recorded, by type.");
    for (int t = 0; t < EVENT__COUNT; t++) {
        own_sample(o, (double)events_total((enum event_type)t), "type",
                   event_type_to_string((enum event_type)t), NULL, NULL);
    }
    return o->overflow ? -ENOBUFS : 0;
}

static void own_done(struct own *o)
{
    free(o->samples);
    free(o->labels);
    free(o->texts);
    free(o->counts);
}

int admin_render_metrics(struct master *m, const char *format, char **ret_body, size_t *ret_len)
{
    bool json = format && strcmp(format, "json") == 0;
    if (!json && format && strcmp(format, "text") != 0) {
        return -EINVAL;
    }
    double started = admin_clock();
    struct metrics_app **stores = calloc(m->n_apps + 1, sizeof *stores);
    struct page page = {0};
    struct own own = {0};
    struct prom_family *all = NULL;
    struct prom_buf b;
    int r = -ENOMEM;

    prom_buf_init(&b);
    if (!stores) {
        goto out;
    }
    for (size_t i = 0; i < m->n_apps; i++) {
        stores[i] = m->apps[i]->metrics;
        metrics_app_set_per_worker(stores[i], m->apps[i]->cfg->metrics_per_worker);
    }
    r = page_build(stores, m->n_apps, &page);
    if (r < 0) {
        goto out;
    }
    r = own_build(m, &own);
    if (r < 0) {
        goto out;
    }
    /* One list, so that the JSON document is one array; workers cannot use drover_ names. */
    r = -ENOMEM;
    all = calloc(page.n_families + own.n_fams, sizeof *all);
    if (!all) {
        goto out;
    }
    memcpy(all, page.families, sizeof *all * page.n_families);
    memcpy(all + page.n_families, own.fams, sizeof *all * own.n_fams);
    size_t n = page.n_families + own.n_fams;
    r = json ? prom_format_json(&b, all, n) : prom_format_text(&b, all, n);
    if (r == 0) {
        r = prom_buf_take(&b, ret_body, ret_len);
    }
out:
    prom_buf_done(&b);
    free(all);
    own_done(&own);
    page_done(&page);
    free(stores);
    admin_last_scrape_s = admin_clock() - started;
    return r;
}

/* ---- /health/detailed ---- */

static double admin_round(double v, double unit)
{
    return round(v / unit) * unit;
}

struct last_errors {
    struct logbuf_line lines[ADMIN_LAST_ERRORS];
    size_t n;       /* stderr lines seen; the last ADMIN_LAST_ERRORS are kept, as a ring */
};

static void admin_collect_error(const struct logbuf_line *line, void *data)
{
    struct last_errors *e = data;
    if (line->is_stderr) {
        e->lines[e->n++ % ADMIN_LAST_ERRORS] = *line;
    }
}

static json_t *admin_last_errors(const struct app *app)
{
    struct last_errors e = {0};
    json_t *out = json_array();
    logbuf_foreach_last(app->logbuf, -1, admin_collect_error, &e);
    size_t k = e.n < ADMIN_LAST_ERRORS ? e.n : ADMIN_LAST_ERRORS;
    for (size_t i = 0; out && i < k; i++) {
        const struct logbuf_line *l = &e.lines[(e.n - k + i) % ADMIN_LAST_ERRORS];
        json_t *o = json_pack("{s:f, s:i, s:i, s:o*}", "ts", admin_round(l->ts, 0.001), "slot",
                              l->slot, "pid", (int)l->pid, "text", log_json_text(l->text, l->len));
        json_array_append_new(out, o);
    }
    return out;
}

/* The status reply's entry for the app (status.c), plus what only this page shows. */
static json_t *admin_app_json(struct app *app, ev_tstamp now)
{
    json_t *o = status_app_json(app, now);
    if (!o) {
        return NULL;
    }
    struct metrics_stats st;
    metrics_app_stats(app->metrics, &st);
    json_int_t refused = 0;
    for (int r = 0; r < METRICS_REFUSED_COUNT; r++) {
        refused += (json_int_t)st.refused[r];
    }
    json_t *reloads = json_pack("{s:I, s:I}", "done", (json_int_t)app->reloads[0], "failed",
                                (json_int_t)app->reloads[1]);
    json_t *metrics = json_pack("{s:I, s:I, s:I}", "series", (json_int_t)st.series, "conflicts",
                                (json_int_t)st.conflicts, "refused", refused);
    /* set_new takes (and on failure frees) each value, so all three run before the check */
    int failed = json_object_set_new(o, "reloads", reloads) < 0;
    failed |= json_object_set_new(o, "metrics", metrics) < 0;
    failed |= json_object_set_new(o, "last_errors", admin_last_errors(app)) < 0;
    if (failed) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/*
 * The /health/detailed document: the control socket's status reply (SPEC section 7, same
 * "apps" schema) plus readiness, the shutdown phase, and per app its reloads, metrics store and
 * recent stderr lines. Returns a new reference or NULL when out of memory.
 */
static json_t *admin_status_json(struct master *m)
{
    ev_tstamp now = ev_time();
    json_t *apps = json_array();
    for (size_t i = 0; apps && i < m->n_apps; i++) {
        if (json_array_append_new(apps, admin_app_json(m->apps[i], now)) < 0) {
            json_decref(apps);
            apps = NULL;
        }
    }
    if (!apps) {
        return NULL;
    }
    unsigned phase = admin_shutdown_phase(m);
    return json_pack("{s:b, s:I, s:s, s:s, s:b, s:s*, s:f, s:o}", "ok", 1, "pid",
                     (json_int_t)getpid(), "version", drover_version, "state",
                     m->state == MASTER_STOPPING ? "stopping" : "running", "ready",
                     master_is_ready(m), "shutdown_phase",
                     phase ? wire_phase_to_string((enum wire_phase)(phase - 1)) : NULL,
                     "uptime_s", admin_round(now - m->started_at, 0.001), "apps", apps);
}

/* ---- HTTP ---- */

static enum MHD_Result admin_reply(struct MHD_Connection *c, unsigned status, const char *type,
                                   char *body, size_t len, bool owned)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        if (owned) {
            free(body);
        }
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    }
    enum MHD_Result r = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return r;
}

static enum MHD_Result admin_text_reply(struct MHD_Connection *c, unsigned status,
                                        const char *text)
{
    return admin_reply(c, status, "text/plain; charset=utf-8", (char *)text, strlen(text), false);
}

static enum MHD_Result admin_on_metrics(struct admin *a, struct MHD_Connection *c, bool json)
{
    char *body = NULL;
    size_t len = 0;
    int r = admin_render_metrics(a->m, json ? "json" : "text", &body, &len);
    if (r < 0) {
        log_warn("admin: rendering /metrics failed: %s", strerror(-r));
        return admin_text_reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                r == -ENOMEM ? "out of memory\n" : "rendering failed\n");
    }
    return admin_reply(c, MHD_HTTP_OK,
                       json ? "application/json" : "text/plain; version=0.0.4; charset=utf-8",
                       body, len, true);
}

static enum MHD_Result admin_on_ready(struct admin *a, struct MHD_Connection *c)
{
    struct master *m = a->m;
    if (master_is_ready(m)) {
        return admin_text_reply(c, MHD_HTTP_OK, "ready\n");
    }
    char why[512] = "not ready: starting\n";
    if (m->state == MASTER_STOPPING) {
        snprintf(why, sizeof why, "not ready: shutting down\n");
    }
    for (size_t i = 0; m->state == MASTER_RUNNING && i < m->n_apps; i++) {
        const struct app *app = m->apps[i];
        if (app->waiting_for[0]) {
            snprintf(why, sizeof why, "not ready: app '%s' is waiting for '%s' (depends_on)\n",
                     app->name, app->waiting_for);
            break;
        }
        if (app->state != APP_STOPPED && app_ready_count(app) == 0) {
            snprintf(why, sizeof why, "not ready: app '%s' has no ready worker\n", app->name);
            break;
        }
    }
    char *body = strdup(why);
    if (!body) {
        return MHD_NO;
    }
    return admin_reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", body,
                       strlen(body), true);
}

static enum MHD_Result admin_on_detailed(struct admin *a, struct MHD_Connection *c)
{
    json_t *doc = admin_status_json(a->m);
    char *body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!body) {
        return admin_text_reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    }
    return admin_reply(c, MHD_HTTP_OK, "application/json", body, strlen(body), true);
}

/* ---- the status page (`/`) and its samples ---- */

static void admin_take_sample(struct admin *a)
{
    struct master *m = a->m;
    struct sample s = {.ts = ev_time()};
    for (size_t i = 0; i < m->n_apps; i++) {
        const struct app *app = m->apps[i];
        /* The apps' counters named *_requests_total (samples.h), summed as /metrics sums them. */
        s.requests += metrics_app_counter_sum(app->metrics, "_requests_total");
        for (int r = 0; r < WORKER_REASON_COUNT; r++) {
            s.restarts += (double)app->restarts[r];
        }
        for (const struct worker *w = app->workers; w; w = w->next) {
            s.rss_bytes += (double)w->stat.rss_bytes;
            s.workers += 1;
        }
    }
    samples_add(&a->samples, &s);
}

static void admin_on_sample(struct ev_loop *loop, ev_timer *t, int revents)
{
    admin_take_sample(t->data);
}

static enum MHD_Result admin_on_samples(struct admin *a, struct MHD_Connection *c)
{
    json_t *doc = samples_to_json(&a->samples);
    char *body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!body) {
        return admin_text_reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    }
    return admin_reply(c, MHD_HTTP_OK, "application/json", body, strlen(body), true);
}

/* The page itself, with a policy that lets it run its own inline script and fetch from this
 * endpoint, and nothing else (statuspage.h). */
static enum MHD_Result admin_on_page(struct MHD_Connection *c)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        statuspage_html_len, (void *)statuspage_html, MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "Content-Security-Policy", STATUSPAGE_CSP);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    enum MHD_Result r = MHD_queue_response(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return r;
}

static enum MHD_Result admin_on_request(void *cls, struct MHD_Connection *c, const char *url,
                                        const char *method, const char *version,
                                        const char *upload_data, size_t *upload_data_size,
                                        void **con_cls)
{
    struct admin *a = cls;
    static int headers_seen;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        /* At once: MHD then drops whatever body follows and closes the connection. */
        return admin_text_reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    /* MHD calls once with the headers and again when the request is complete; answering only
     * then lets the connection stay open for the next scrape (keep-alive). */
    if (!*con_cls) {
        *con_cls = &headers_seen;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        *upload_data_size = 0; /* a GET with a body: ignored */
        return MHD_YES;
    }
    if (strcmp(url, "/metrics") == 0) {
        return admin_on_metrics(a, c, false);
    }
    if (strcmp(url, "/metrics/json") == 0) {
        return admin_on_metrics(a, c, true);
    }
    if (strcmp(url, "/health") == 0 || strcmp(url, "/health/live") == 0) {
        return admin_text_reply(c, MHD_HTTP_OK, "ok\n");
    }
    if (strcmp(url, "/health/ready") == 0) {
        return admin_on_ready(a, c);
    }
    if (strcmp(url, "/health/detailed") == 0) {
        return admin_on_detailed(a, c);
    }
    if (strcmp(url, "/") == 0) {
        return admin_on_page(c);
    }
    if (strcmp(url, "/status/samples.json") == 0) {
        return admin_on_samples(a, c);
    }
    return admin_text_reply(c, MHD_HTTP_NOT_FOUND,
                            "not found; try /, /metrics, /metrics/json, /health, /health/live, "
                            "/health/ready, /health/detailed, /status/samples.json\n");
}

/* MHD's own complaints (a connection it had to drop) go to our log. */
static void admin_on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t len = strlen(msg);
    while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' ')) {
        msg[--len] = '\0';
    }
    log_warn("admin: %s", msg);
}

/* ---- the loop ---- */

/* MHD's next appointment: run again within its timeout even if no socket stirs. */
static void admin_rearm(struct admin *a)
{
    struct ev_loop *loop = a->m->loop;
    MHD_UNSIGNED_LONG_LONG ms = 0;
    ev_timer_stop(loop, &a->timer_w);
    if (MHD_get_timeout(a->daemon, &ms) == MHD_YES) {
        ev_timer_set(&a->timer_w, (double)ms / 1000.0, 0.);
        ev_timer_start(loop, &a->timer_w);
    }
}

static void admin_on_io(struct ev_loop *loop, ev_io *io, int revents)
{
    struct admin *a = io->data;
    MHD_run(a->daemon);
    admin_rearm(a);
}

static void admin_on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct admin *a = t->data;
    MHD_run(a->daemon);
    admin_rearm(a);
}

int admin_save(struct admin *a, struct handover *h)
{
    if (!a) {
        return 0;
    }
    json_t *ring = json_array();
    for (size_t i = 0; ring && i < a->samples.n; i++) {
        const struct sample *x = samples_get(&a->samples, i);
        json_array_append_new(ring, json_pack("[f,f,f,f,f]", x->ts, x->requests, x->restarts,
                                              x->rss_bytes, x->workers));
    }
    /* The status page's charts go on across the upgrade too. */
    json_t *saved = json_pack("{s:o, s:b, s:o*}", "fd", handover_fd(h, a->l.fd), "created_path",
                              a->l.created_path, "samples", ring);
    return saved && json_object_set_new(handover_doc(h), "admin", saved) == 0 ? 0 : -ENOMEM;
}

int admin_open(struct master *m, struct admin **ret)
{
    const struct address *addr = &m->cfg->admin;
    int r;

    *ret = NULL;
    if (!m->cfg->admin_listen) {
        return 0;
    }
    struct admin *a = calloc(1, sizeof *a);
    if (!a) {
        return -ENOMEM;
    }
    a->m = m;
    a->l.fd = -1;
    const json_t *saved = handover_get(handover_incoming(), "admin");
    int fd = handover_take(handover_incoming(), json_object_get(saved, "fd"));
    if (fd >= 0) {
        /* The previous image's socket: its backlog held whoever scraped during the exec. */
        a->l = (struct listener){.addr = *addr, .fd = fd,
                                 .created_path = json_is_true(json_object_get(saved, "created_path"))};
        r = 0;
    } else {
        r = listener_open(&a->l, addr);
    }
    if (r < 0) {
        log_error("bind('%s') failed: %s", addr->text, strerror(-r));
        goto out;
    }
    int flags = fcntl(a->l.fd, F_GETFL);
    if (flags == -1 || fcntl(a->l.fd, F_SETFL, flags | O_NONBLOCK) == -1) {
        r = -errno;
        log_error("fcntl('%s', O_NONBLOCK) failed: %s", addr->text, strerror(-r));
        goto out;
    }
    /* The logger first: MHD reports the options that follow through it. */
    a->daemon = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, admin_on_request, a,
        MHD_OPTION_EXTERNAL_LOGGER, admin_on_mhd_log, a, MHD_OPTION_LISTEN_SOCKET,
        (MHD_socket)a->l.fd, MHD_OPTION_CONNECTION_LIMIT, (unsigned)ADMIN_CONNECTIONS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)ADMIN_TIMEOUT_S, MHD_OPTION_END);
    if (!a->daemon) {
        r = errno ? -errno : -EIO;
        log_error("starting the HTTP server on '%s' failed (libmicrohttpd with epoll): %s",
                  addr->text, strerror(-r));
        goto out;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(a->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info) {
        r = -EIO;
        log_error("libmicrohttpd gave no epoll fd for '%s'", addr->text);
        goto out;
    }
    ev_io_init(&a->io_w, admin_on_io, info->epoll_fd, EV_READ);
    a->io_w.data = a;
    ev_io_start(m->loop, &a->io_w);
    ev_init(&a->timer_w, admin_on_timer);
    a->timer_w.data = a;
    admin_rearm(a);
    samples_init(&a->samples);
    size_t si;
    json_t *sv;
    json_array_foreach(json_object_get(saved, "samples"), si, sv) {
        struct sample x = {json_real_value(json_array_get(sv, 0)),
                           json_real_value(json_array_get(sv, 1)),
                           json_real_value(json_array_get(sv, 2)),
                           json_real_value(json_array_get(sv, 3)),
                           json_real_value(json_array_get(sv, 4))};
        samples_add(&a->samples, &x);
    }
    ev_timer_init(&a->sample_w, admin_on_sample, 1., SAMPLES_INTERVAL_S);
    a->sample_w.data = a;
    ev_timer_start(m->loop, &a->sample_w);
    log_info("admin endpoint on http://%s/ (status page; /metrics, /health)", addr->text);
    *ret = a;
    a = NULL;
    r = 0;
out:
    admin_close(a);
    return r;
}

void admin_close(struct admin *a)
{
    if (!a) {
        return;
    }
    if (a->daemon) {
        ev_io_stop(a->m->loop, &a->io_w);
        ev_timer_stop(a->m->loop, &a->timer_w);
        ev_timer_stop(a->m->loop, &a->sample_w);
        /* MHD closes the listen socket it was given; only the unix socket's file is ours. */
        MHD_stop_daemon(a->daemon);
        a->l.fd = -1;
    }
    listener_close(&a->l);
    free(a);
}
