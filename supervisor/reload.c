/*
 * reload: surge-then-retire replacement of an app's workers. See reload.h.
 *
 * Each slot to replace has a record that moves pending -> starting -> replaced (or skipped, or
 * failed). At most reload_batch records are starting at a time. A record is replaced when its
 * new worker is ready: the new worker becomes the slot's worker and the old one is retired
 * through the phases. The run completes when no record is pending or starting and every old
 * worker has exited, so the result can report when each old worker was gone.
 *
 * Rollback reuses the same run: the replaced records become pending again, the app's config
 * and generation go back, and the batches run once more toward the old config.
 */
#include "reload.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "app.h"
#include "events.h"
#include "log.h"
#include "logbuf.h"
#include "reloadstate.h"
#include "shutdown.h"
#include "sweep.h"

/* Lines of a failed worker's output quoted in the log record and the result. */
#define RELOAD_LAST_LINES 10


struct reload_rec {
    unsigned slot;
    enum reload_rec_state state;
    struct worker *old;     /* alive until it has left */
    struct worker *new;     /* the surge worker */
    pid_t old_pid;
    pid_t new_pid;
    ev_tstamp started;
    ev_tstamp ready;
    ev_tstamp old_gone;
};

struct reload {
    struct app_replacement base;    /* how the app sees it: first, so the two convert */
    struct app *app;
    enum worker_reason reason;
    bool changes_config;
    enum reload_run_state run;      /* forward, rolling back, stopping (reloadstate.h) */
    struct config *old_owner;
    const struct config_app *old_cfg;
    unsigned old_generation;
    unsigned old_n_slots;
    unsigned target_n_slots;
    struct reload_rec *recs;
    size_t n;
    size_t next;
    size_t starting;
    ev_tstamp started_at;
    char *error;
    json_t *failed_slots;   /* the first pass's records, kept when a rollback follows */
    json_t *last_output;
    reload_report_fn report;
    void *data;
    json_t *outbox;         /* reports not yet delivered: [msg, final] pairs */
    struct sweep_node deliver;
    bool finished;          /* the final report is in the outbox: freed once delivered */
    struct reload *next_all;
};

/* Every run whose reports are not all delivered, so that a requester that goes away can be
 * forgotten by all of them (reload_forget). One master per process, so one list. */
static struct reload *reload_all;

static void reload_free(struct reload *r)
{
    for (struct reload **p = &reload_all; *p; p = &(*p)->next_all) {
        if (*p == r) {
            *p = r->next_all;
            break;
        }
    }
    json_decref(r->outbox);
    json_decref(r->failed_slots);
    json_decref(r->last_output);
    config_unref(r->old_owner);
    free(r->error);
    free(r->recs);
    free(r);
}

/* Delivers the reports queued so far, in order: never from inside the call that produced them
 * (reload_start, a worker's event), always from the sweeper, once those calls have returned. */
static void reload_on_deliver(struct sweep_node *node)
{
    struct reload *r = (struct reload *)(void *)((char *)node - offsetof(struct reload, deliver));
    json_t *box = r->outbox;
    r->outbox = json_array();
    size_t i;
    json_t *pair;
    json_array_foreach(box, i, pair) {
        /* looked up each time: a report may make the requester forget us */
        if (r->report) {
            r->report(json_array_get(pair, 0), json_is_true(json_array_get(pair, 1)), r->data);
        }
    }
    json_decref(box);
    if (r->finished) {
        reload_free(r);
    }
}

static void reload_emit(struct reload *r, json_t *msg, bool final)
{
    if (r->report && msg) {
        json_array_append_new(r->outbox, json_pack("[o, b]", msg, final));
    } else {
        json_decref(msg);
    }
    sweep_add(r->app->host->sweep, &r->deliver, reload_on_deliver);
}

static struct log_origin reload_origin(const struct reload *r)
{
    return (struct log_origin){r->app->name, -1, 0};
}

static ev_tstamp reload_now(const struct reload *r)
{
    return ev_now(r->app->host->loop);
}

static const char *reload_verb(const struct reload *r)
{
    switch (r->reason) {
    case WORKER_REASON_RELOAD:
        return "reload";
    case WORKER_REASON_MANUAL:
    case WORKER_REASON_CRASH:
    case WORKER_REASON_COUNT:
        return "restart";
    default:
        return reload_describe(r);
    }
}

const char *reload_describe(const struct reload *r)
{
    switch (r->reason) {
    case WORKER_REASON_RELOAD:
        return "reload";
    case WORKER_REASON_MANUAL:
        return "restart";
    case WORKER_REASON_MEMORY:
        return "memory replacement";
    case WORKER_REASON_HANG:
        return "hang replacement";
    case WORKER_REASON_LIFETIME:
    case WORKER_REASON_REQUESTED:
        return "recycle";
    case WORKER_REASON_CRASH:
    case WORKER_REASON_SCALE:
    case WORKER_REASON_COUNT:
        break;
    }
    return "replacement";
}

static json_int_t reload_ms(ev_tstamp from, ev_tstamp to)
{
    return from > 0 && to > 0 ? (json_int_t)((to - from) * 1000.0 + 0.5) : -1;
}

static json_t *reload_slots_json(const struct reload *r)
{
    json_t *slots = json_array();
    for (size_t i = 0; i < r->n; i++) {
        const struct reload_rec *rec = &r->recs[i];
        json_t *s = json_pack("{s:i, s:i, s:i, s:s}", "slot", (int)rec->slot, "old_pid",
                              (int)rec->old_pid, "new_pid", (int)rec->new_pid, "state",
                              reload_rec_state_to_string(rec->state));
        json_object_set_new(s, "ready_ms", json_integer(reload_ms(rec->started, rec->ready)));
        json_object_set_new(s, "old_exit_ms",
                            json_integer(reload_ms(rec->started, rec->old_gone)));
        json_array_append_new(slots, s);
    }
    return slots;
}

static void reload_progress(struct reload *r, const struct reload_rec *rec, const char *event)
{
    json_t *f = json_pack("{s:s, s:i, s:i, s:i}", "event", event, "slot", (int)rec->slot,
                          "old_pid", (int)rec->old_pid, "new_pid", (int)rec->new_pid);
    if (r->report) {
        reload_emit(r,
                    json_pack("{s:{s:s, s:s, s:i, s:i, s:i, s:i}}", "progress", "app",
                              r->app->name, "event", event, "slot", (int)rec->slot, "old_pid",
                              (int)rec->old_pid, "new_pid", (int)rec->new_pid, "generation",
                              (int)r->app->generation),
                    false);
    }
    log_record(LOG_INFO, (struct log_origin){r->app->name, (int)rec->slot, rec->new_pid}, f,
               "%s%s: slot %u %s", reload_verb(r), r->run == RELOAD_RUN_ROLLING_BACK ? " (rollback)" : "",
               rec->slot, event);
}

/* Ends the run: detaches from the app and queues the result; the run is freed once that is
 * delivered. ok = every slot replaced. */
static void reload_finish(struct reload *r, bool ok)
{
    struct app *app = r->app;
    double secs = reload_now(r) - r->started_at;
    const char *outcome = reload_run_outcome(r->run, !ok);
    app->replacing = NULL;
    if (ok) {
        /* A reload that shrank the app retires the slots above the new count last, once the
         * new generation serves in full. */
        if (app->n_slots > r->target_n_slots) {
            (void)app_scale_to(app, r->target_n_slots);
        }
    }
    if (r->changes_config) {
        app->reloads[ok ? 0 : 1]++;
        app_observe_reload(app, secs);
    }
    app_feed(app, APP_EV_RELOAD_END, NULL);
    app_listeners_prune(app);

    json_t *res = json_pack("{s:b, s:s, s:s, s:s, s:i, s:f}", "ok", ok, "app", app->name,
                            "reason", worker_reason_to_string(r->reason), "outcome", outcome,
                            "generation", (int)app->generation, "duration_s", secs);
    json_object_set_new(res, "slots",
                        r->failed_slots ? json_incref(r->failed_slots) : reload_slots_json(r));
    if (r->run == RELOAD_RUN_ROLLING_BACK) {
        json_object_set_new(res, "rollback_slots", reload_slots_json(r));
    }
    if (r->error) {
        json_object_set_new(res, "error", log_json_text(r->error, strlen(r->error)));
    }
    if (r->last_output) {
        json_object_set_new(res, "last_output", json_incref(r->last_output));
    }
    json_t *f = json_pack("{s:s, s:i, s:I}", "outcome", outcome, "generation",
                          (int)app->generation, "duration_ms", (json_int_t)(secs * 1000 + 0.5));
    if (f) {
        json_object_set_new(f, "result", json_string(ok ? "done" : "failed"));
        json_object_set_new(f, "kind", json_string(reload_verb(r)));
        json_object_set_new(f, "record", json_incref(res));
    }
    event_record(EVENT_RELOAD, ok ? LOG_INFO : LOG_ERROR, reload_origin(r), f,
                 "%s %s after %.0f ms%s%s", reload_verb(r), ok ? "done" : outcome, secs * 1000,
                 r->error ? ": " : "", r->error ? r->error : "");
    r->finished = true;
    reload_emit(r, res, true);
    app->host->ops->on_changed(app->host->owner, app);
}

static bool reload_is_settled(const struct reload *r)
{
    if (r->next < r->n || r->starting > 0) {
        return false;
    }
    for (size_t i = 0; i < r->n; i++) {
        if (r->recs[i].old) {
            return false;
        }
    }
    return true;
}

static void reload_fail(struct reload *r, char *why);

/* A record's one way to change state: its table (reloadstate.h). */
static void reload_rec_feed(struct reload_rec *rec, enum reload_rec_event ev)
{
    rec->state = reload_rec_next(rec->state, ev, NULL);
}

/* Forward, and no record failed. */
static bool reload_run_succeeded(const struct reload *r)
{
    return strcmp(reload_run_outcome(r->run, r->error != NULL), "done") == 0;
}

/* Starts records until the batch is full. Returns false when the run has ended. */
static bool reload_next_batch(struct reload *r)
{
    struct app *app = r->app;
    unsigned batch = app->cfg->reload_batch ? app->cfg->reload_batch : 1;
    while (r->starting < batch && r->next < r->n) {
        struct reload_rec *rec = &r->recs[r->next++];
        if (rec->slot >= app->n_slots) {
            reload_rec_feed(rec, RELOAD_REC_EV_SKIP);
            continue;
        }
        struct slot *s = app->slots[rec->slot];
        struct worker *old = s->worker;
        /* A slot whose worker crashed during this reload was refilled by the app with the new
         * generation already: nothing left to replace there. */
        if (r->changes_config && old && old->generation == app->generation) {
            reload_rec_feed(rec, RELOAD_REC_EV_SKIP);
            continue;
        }
        rec->old = old && !old->retire ? old : NULL;
        rec->old_pid = rec->old ? rec->old->pid : 0;
        rec->new_pid = 0;
        rec->ready = rec->old_gone = 0;
        rec->started = reload_now(r);
        struct worker *w = NULL;
        /* A surge worker while the old one serves: it may boot at surge_nice and leave the CPU
         * to the workers carrying the load. Not for a hung worker's replacement: that one
         * replaces nothing that serves, and may have to share the CPU with a spinning loop. */
        bool surge = rec->old && rec->old->state == WORKER_READY && r->reason != WORKER_REASON_HANG;
        int e = app_spawn_extra(app, rec->slot, surge, &w);
        if (e < 0) {
            char *why = NULL;
            if (asprintf(&why, "cannot start a worker for slot %u: %s", rec->slot,
                         strerror(-e)) < 0) {
                why = NULL;
            }
            reload_rec_feed(rec, RELOAD_REC_EV_BEGIN_FAILED);
            rec->old = NULL;
            reload_fail(r, why);
            return false;
        }
        rec->new = w;
        rec->new_pid = w->pid;
        reload_rec_feed(rec, RELOAD_REC_EV_BEGIN);
        r->starting++;
        reload_progress(r, rec, "starting");
    }
    if (reload_is_settled(r)) {
        reload_finish(r, reload_run_succeeded(r));
        return false;
    }
    return true;
}

static bool reload_on_worker_ready(struct reload *r, struct worker *w)
{
    struct app *app = r->app;
    for (size_t i = 0; i < r->n; i++) {
        struct reload_rec *rec = &r->recs[i];
        if (rec->new != w || rec->state != RELOAD_REC_STARTING) {
            continue;
        }
        reload_rec_feed(rec, RELOAD_REC_EV_NEW_READY);
        rec->ready = reload_now(r);
        r->starting--;
        struct slot *s = rec->slot < app->n_slots ? app->slots[rec->slot] : NULL;
        if (s) {
            if (s->worker && s->worker != rec->old && s->worker != w && !s->worker->retire) {
                /* The slot refilled itself meanwhile (its old worker crashed): that refill is
                 * surplus now. */
                (void)app_retire(app, s->worker);
            }
            app_slot_replaced(app, rec->slot, w);
            s->restarts++;
        } else {
            /* The slot is gone (never expected: slots cannot move while a replacement owns
             * them). A worker without a slot would serve on with nothing to retire it. */
            (void)app_retire(app, w);
        }
        app->restarts[r->reason]++;
        reload_progress(r, rec, "ready");
        if (rec->old) {
            rec->old->stop_reason = r->reason;
            (void)app_retire(app, rec->old);
        } else if (rec->old_gone == 0) {
            rec->old_gone = rec->ready;
        }
        reload_next_batch(r);
        return true;
    }
    return false;
}

/* Collects the last output lines of one pid from the app's ring. */
struct reload_lines {
    pid_t pid;
    json_t *lines;
};

static void reload_collect_line(const struct logbuf_line *line, void *data)
{
    struct reload_lines *c = data;
    if (line->pid == c->pid) {
        json_array_append_new(c->lines, log_json_text(line->text, line->len));
        if (json_array_size(c->lines) > RELOAD_LAST_LINES) {
            json_array_remove(c->lines, 0);
        }
    }
}

static bool reload_on_worker_exit(struct reload *r, struct worker *w)
{
    for (size_t i = 0; i < r->n; i++) {
        struct reload_rec *rec = &r->recs[i];
        if (rec->new == w) {
            rec->new = NULL;
            if (rec->state != RELOAD_REC_STARTING) {
                return false; /* serving already: an ordinary crash for the app to handle */
            }
            reload_rec_feed(rec, RELOAD_REC_EV_NEW_EXIT);
            r->starting--;
            char status[64];
            if (WIFEXITED(w->wait_status)) {
                snprintf(status, sizeof status, "exit code %d", WEXITSTATUS(w->wait_status));
            } else {
                snprintf(status, sizeof status, "signal %d", WTERMSIG(w->wait_status));
            }
            struct reload_lines c = {w->last_pid, json_array()};
            logbuf_foreach_last(r->app->logbuf, 200, reload_collect_line, &c);
            json_decref(r->last_output);
            r->last_output = c.lines;
            char *why = NULL;
            if (asprintf(&why, "new worker for slot %u (pid %d) %s before it was ready (%s)",
                         rec->slot, (int)w->last_pid,
                         w->exec_failed ? "could not be started" : "exited", status) < 0) {
                why = NULL;
            }
            if (json_array_size(c.lines) > 0) {
                for (size_t k = 0; k < json_array_size(c.lines); k++) {
                    log_record(LOG_ERROR, (struct log_origin){r->app->name, (int)rec->slot,
                                                              w->last_pid},
                               NULL, "last output: %s",
                               json_string_value(json_array_get(c.lines, k)));
                }
            }
            reload_fail(r, why);
            return true;
        }
        if (rec->old == w) {
            rec->old = NULL;
            rec->old_gone = reload_now(r);
            if (!worker_was_asked(w)) {
                /* The old worker crashed while its replacement was coming up: the replacement
                 * fills the slot; no restart of the old generation. */
                r->app->restarts[WORKER_REASON_CRASH]++;
            }
            if (reload_is_settled(r)) {
                reload_finish(r, reload_run_succeeded(r));
            }
            return true;
        }
    }
    return false;
}

static void reload_kill_starting(struct reload *r)
{
    for (size_t i = 0; i < r->n; i++) {
        struct reload_rec *rec = &r->recs[i];
        if (rec->state == RELOAD_REC_STARTING && rec->new) {
            worker_stop_now(rec->new);
            rec->new = NULL;
            rec->old = NULL; /* it was never retired: it keeps serving its slot */
            reload_rec_feed(rec, RELOAD_REC_EV_KILLED);
        }
    }
    r->starting = 0;
}

static void reload_fail(struct reload *r, char *why)
{
    struct app *app = r->app;
    if (!r->error) {
        r->error = why ? why : strdup("replacement failed");
    } else {
        free(why);
    }
    reload_kill_starting(r);
    if (reload_run_fail(&r->run, r->changes_config) == RELOAD_RUN_DO_STOP) {
        /* A rollback that fails, or a restart: stop here; what serves keeps serving. */
        r->next = r->n;
        if (reload_is_settled(r)) {
            reload_finish(r, false);
        }
        return;
    }
    /* Back to the old config and generation. Slots not started keep their old workers; slots
     * already replaced are replaced again, toward the old config. */
    r->failed_slots = reload_slots_json(r);
    app_set_config(app, r->old_owner, r->old_cfg);
    app->generation = r->old_generation;
    if (app->n_slots > r->old_n_slots) {
        for (unsigned i = r->old_n_slots; i < app->n_slots; i++) {
            struct worker *extra = app->slots[i]->worker;
            if (extra) {
                (void)app_retire(app, extra);
            }
        }
        (void)app_slots_resize(app, r->old_n_slots);
    }
    r->target_n_slots = r->old_n_slots;
    /* The rollback pass tracks only the slots to replace again; old workers of the first pass
     * are retiring through their own phase runs and need no watching. */
    size_t k = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (r->recs[i].state == RELOAD_REC_REPLACED && r->recs[i].slot < app->n_slots) {
            r->recs[k++] = (struct reload_rec){.slot = r->recs[i].slot,
                                               .state = RELOAD_REC_PENDING};
        }
    }
    r->n = k;
    r->next = 0;
    log_record(LOG_WARN, reload_origin(r), NULL,
               "reload failed: %s; rolling back %zu replaced slot(s) to generation %u",
               r->error, k, app->generation);
    reload_next_batch(r);
}

void reload_abort(struct reload *r, const char *why)
{
    reload_kill_starting(r);
    free(r->error);
    r->error = strdup(why);
    r->run = RELOAD_RUN_STOPPING;
    for (size_t i = 0; i < r->n; i++) {
        r->recs[i].old = NULL;
    }
    r->next = r->n;
    reload_finish(r, false);
}

void reload_forget(void *data)
{
    for (struct reload *r = reload_all; r; r = r->next_all) {
        if (r->data == data) {
            r->report = NULL;
            r->data = NULL;
        }
    }
}

/* ---- as the app sees it ---- */

static struct reload *reload_of(struct app_replacement *base)
{
    return (struct reload *)(void *)base;
}

static bool reload_app_worker_ready(struct app_replacement *base, struct worker *w)
{
    return reload_on_worker_ready(reload_of(base), w);
}

static bool reload_app_worker_exit(struct app_replacement *base, struct worker *w)
{
    return reload_on_worker_exit(reload_of(base), w);
}

static void reload_app_abort(struct app_replacement *base, const char *why)
{
    reload_abort(reload_of(base), why);
}

static const char *reload_app_describe(const struct app_replacement *base)
{
    return reload_describe((const struct reload *)(const void *)base);
}

static const struct app_replacement_ops reload_replacement_ops = {
    .on_worker_ready = reload_app_worker_ready,
    .on_worker_exit = reload_app_worker_exit,
    .abort = reload_app_abort,
    .describe = reload_app_describe,
};

int reload_start(struct app *app, struct config *owner, const struct config_app *new_cfg,
                 const unsigned *slots, size_t n_slots, enum worker_reason reason,
                 reload_report_fn report, void *data, char **ret_error)
{
    if (app->replacing) {
        return -EBUSY;
    }
    /* An errored app may be reloaded or restarted: that is how it is mended. */
    if (app->state != APP_RUNNING && app->state != APP_ERRORED) {
        return -EINVAL;
    }
    struct reload *r = calloc(1, sizeof *r);
    if (!r) {
        return -ENOMEM;
    }
    unsigned target = new_cfg ? new_cfg->workers : app->n_slots;
    /* An autoscaled app keeps the count the load gave it, within the new MIN..MAX. */
    if (new_cfg && new_cfg->workers_max > new_cfg->workers) {
        target = app->n_slots < new_cfg->workers       ? new_cfg->workers
                 : app->n_slots > new_cfg->workers_max ? new_cfg->workers_max
                                                       : app->n_slots;
    }
    size_t n = slots ? n_slots : target;
    r->recs = calloc(n ? n : 1, sizeof *r->recs);
    if (!r->recs) {
        free(r);
        return -ENOMEM;
    }
    if (new_cfg) {
        const struct address *failed = NULL;
        int e = app_listeners_add(app, new_cfg, &failed);
        if (e < 0) {
            if (ret_error && failed &&
                asprintf(ret_error, "bind('%s') failed: %s", failed->text, strerror(-e)) < 0) {
                *ret_error = NULL;
            }
            free(r->recs);
            free(r);
            return e;
        }
    }
    r->app = app;
    r->reason = reason;
    r->report = report;
    r->data = data;
    r->outbox = json_array();
    r->next_all = reload_all;
    reload_all = r;
    r->started_at = ev_now(app->host->loop);
    r->old_owner = config_ref(app->cfg_owner);
    r->old_cfg = app->cfg;
    r->old_generation = app->generation;
    r->old_n_slots = app->n_slots;
    r->target_n_slots = target;
    for (size_t i = 0; i < n; i++) {
        r->recs[i].slot = slots ? slots[i] : (unsigned)i;
        r->recs[i].state = RELOAD_REC_PENDING;
    }
    r->n = n;
    if (new_cfg) {
        r->changes_config = true;
        app_set_config(app, owner, new_cfg);
        app->generation++;
        app_feed(app, APP_EV_RELOAD_BEGIN, NULL);
        if (target > app->n_slots && app_slots_resize(app, target) < 0) {
            app_set_config(app, r->old_owner, r->old_cfg);
            app->generation--;
            app_feed(app, APP_EV_RELOAD_END, NULL);
            reload_free(r);
            return -ENOMEM;
        }
    }
    r->base.ops = &reload_replacement_ops;
    app->replacing = &r->base;
    event_record(EVENT_RELOAD, LOG_INFO, reload_origin(r),
                 json_pack("{s:s, s:s, s:s, s:I, s:i}", "result", "started", "kind",
                           reload_verb(r), "reason", worker_reason_to_string(r->reason), "slots",
                           (json_int_t)n, "generation", (int)app->generation),
                 "%s started: %zu slot(s), batch %u, generation %u", reload_verb(r), n,
                 app->cfg->reload_batch, app->generation);
    reload_next_batch(r);
    return 0;
}
