/*
 * shutdown: the six phases over a set of workers. See shutdown.h.
 *
 * A run is a small state machine with two timers: phase_w bounds the current phase, total_w
 * bounds the whole run. Members leave the run only by exiting; their slot in the member array
 * is then cleared. The run advances in shutdown_on_check(), which is either the phase timer
 * expiring or a check fed to the loop by an acknowledgement or an exit.
 */
#include "shutdown.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "events.h"
#include "log.h"
#include "worker.h"

/* A worker in a run, and whether it answered the run's current phase: a fact of the run, so it
 * lives here and not in the worker. */
struct shutdown_member {
    struct worker *w;   /* NULL once it has exited */
    bool acked;
};

struct shutdown {
    struct shutdown *next;      /* the set's list of runs in progress */
    struct shutdown_set *set;
    char *scope;
    struct shutdown_member *members;
    size_t n;
    enum wire_phase phase;
    bool started;
    bool forced;
    bool killed;
    struct shutdown_timeouts t;
    ev_tstamp started_at;
    ev_tstamp phase_started_at;
    ev_timer phase_w;
    ev_timer total_w;
    shutdown_phase_fn on_phase;
    shutdown_done_fn done;
    void *data;
};

enum wire_phase shutdown_phase(const struct shutdown *s)
{
    return s->phase;
}

void shutdown_timeouts_from_config(struct shutdown_timeouts *t, const struct config *cfg,
                                   uint64_t total_ms)
{
    memset(t, 0, sizeof *t);
    t->phase_ms[WIRE_PHASE_DRAIN] = cfg->drain_timeout_ms;
    t->phase_ms[WIRE_PHASE_SAVE] = cfg->save_timeout_ms;
    t->phase_ms[WIRE_PHASE_CLOSE] = cfg->close_timeout_ms;
    t->phase_ms[WIRE_PHASE_CLEANUP] = cfg->cleanup_timeout_ms;
    t->total_ms = total_ms;
}

/* The origin of a run's records: its app, or for a single worker that worker. */
static struct log_origin shutdown_origin(const struct shutdown *s)
{
    if (s->n == 1 && s->members[0].w) {
        const struct worker *w = s->members[0].w;
        return (struct log_origin){w->cfg->name, (int)w->slot, w->pid};
    }
    return (struct log_origin){s->scope, -1, 0};
}

static size_t shutdown_alive(const struct shutdown *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++) {
        n += s->members[i].w != NULL;
    }
    return n;
}

/* Every member has answered the current phase or is gone. */
static bool shutdown_phase_is_done(const struct shutdown *s)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->members[i].w && !s->members[i].acked) {
            return false;
        }
    }
    return true;
}

static void shutdown_schedule_check(struct shutdown *s)
{
    ev_feed_event(s->set->loop, &s->phase_w, EV_CUSTOM);
}

static void shutdown_log_phase(struct shutdown *s, bool end, const char *extra)
{
    json_t *f = json_pack("{s:s}", "phase", wire_phase_to_string(s->phase));
    if (end) {
        double ms = (ev_now(s->set->loop) - s->phase_started_at) * 1000.0;
        json_object_set_new(f, "duration_ms", json_integer((json_int_t)(ms + 0.5)));
    }
    if (!s->scope) { /* the supervisor's own: an app's stop and a retirement are not events */
        json_object_set_new(f, "result", json_string(end ? "done" : "started"));
        event_record(EVENT_SHUTDOWN_PHASE, LOG_INFO, shutdown_origin(s), f,
                     "shutdown phase %s %s%s", wire_phase_to_string(s->phase),
                     end ? "done" : "started", extra ? extra : "");
        return;
    }
    log_record(LOG_INFO, shutdown_origin(s), f, "shutdown phase %s %s%s",
               wire_phase_to_string(s->phase), end ? "done" : "started", extra ? extra : "");
}

/* Sends the current phase to a member, or, for a member that never used its channel, does what
 * the phase means for a signal-only app. Marks it acked when nothing is to be awaited. */
static void shutdown_tell(struct shutdown *s, struct shutdown_member *m)
{
    struct worker *w = m->w;
    enum wire_phase p = s->phase;
    m->acked = false;
    if (p == WIRE_PHASE_DRAIN) {
        worker_drain(w);
    } else if (p >= WIRE_PHASE_SAVE && w->state == WORKER_DRAINING) {
        worker_stopping(w);
    }
    if (w->channel_used && channel_is_open(&w->ch)) {
        struct wire_msg msg = {.type = WIRE_PHASE, .phase = p,
                               .timeout_ms = (int64_t)s->t.phase_ms[p]};
        if (channel_send(&w->ch, &msg) == 0) {
            /* initiated and complete are announcements: nobody answers them. */
            m->acked = p == WIRE_PHASE_INITIATED;
            return;
        }
    }
    switch (p) {
    case WIRE_PHASE_DRAIN:
        worker_signal(w, w->cfg->stop_signal); /* the app's stop_signal, TERM by default */
        break; /* drain then waits for its exit */
    case WIRE_PHASE_COMPLETE:
        break; /* complete waits for every exit */
    default:
        m->acked = true;
        break;
    }
}

static void shutdown_unlink(struct shutdown *s)
{
    for (struct shutdown **p = &s->set->runs; *p; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            return;
        }
    }
}

static void shutdown_finish(struct shutdown *s)
{
    struct ev_loop *loop = s->set->loop;
    ev_timer_stop(loop, &s->phase_w);
    ev_timer_stop(loop, &s->total_w);
    double ms = (ev_now(loop) - s->started_at) * 1000.0;
    json_t *f = json_pack("{s:s, s:I}", "phase", "complete", "duration_ms",
                          (json_int_t)(ms + 0.5));
    log_record(s->forced ? LOG_WARN : LOG_INFO, shutdown_origin(s), f,
               "shutdown complete after %.0f ms%s", ms, s->forced ? " (forced)" : "");
    shutdown_done_fn done = s->done;
    void *data = s->data;
    bool forced = s->forced;
    for (size_t i = 0; i < s->n; i++) {
        if (s->members[i].w) {
            s->members[i].w->retire = NULL;
        }
    }
    shutdown_unlink(s);
    if (done) {
        done(s, forced, data);
    }
    free(s->members);
    free(s->scope);
    free(s);
}

void shutdown_abandon_all(struct shutdown_set *set)
{
    while (set->runs) {
        struct shutdown *s = set->runs;
        ev_timer_stop(set->loop, &s->phase_w);
        ev_timer_stop(set->loop, &s->total_w);
        for (size_t i = 0; i < s->n; i++) {
            if (s->members[i].w) {
                s->members[i].w->retire = NULL;
            }
        }
        set->runs = s->next;
        free(s->members);
        free(s->scope);
        free(s);
    }
}

static void shutdown_begin_phase(struct shutdown *s, enum wire_phase p)
{
    struct ev_loop *loop = s->set->loop;
    s->phase = p;
    s->phase_started_at = ev_now(loop);
    shutdown_log_phase(s, false, NULL);
    if (s->on_phase) {
        s->on_phase(s, p, s->data);
    }
    for (size_t i = 0; i < s->n; i++) {
        if (s->members[i].w) {
            shutdown_tell(s, &s->members[i]);
        }
    }
    ev_timer_stop(loop, &s->phase_w);
    if (s->t.phase_ms[p] > 0) {
        ev_timer_set(&s->phase_w, (double)s->t.phase_ms[p] / 1000.0, 0.);
        ev_timer_start(loop, &s->phase_w);
    }
    shutdown_schedule_check(s);
}

/* Moves through every phase whose work is done; stops at the first that must wait. */
static void shutdown_on_check(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct shutdown *s = t->data;
    bool timed_out = (revents & EV_TIMER) != 0;
    for (;;) {
        if (s->phase == WIRE_PHASE_COMPLETE) {
            if (shutdown_alive(s) == 0) {
                shutdown_finish(s);
            }
            return;
        }
        if (!timed_out && !shutdown_phase_is_done(s)) {
            return;
        }
        if (timed_out) {
            size_t late = 0;
            for (size_t i = 0; i < s->n; i++) {
                late += s->members[i].w && !s->members[i].acked;
            }
            char extra[96];
            snprintf(extra, sizeof extra, " (timed out after %" PRIu64 " ms; %zu not done)",
                     s->t.phase_ms[s->phase], late);
            s->forced = true;
            shutdown_log_phase(s, true, extra);
            timed_out = false;
        } else {
            shutdown_log_phase(s, true, NULL);
        }
        shutdown_begin_phase(s, (enum wire_phase)(s->phase + 1));
        ev_timer_stop(loop, &s->phase_w);
        if (s->phase != WIRE_PHASE_COMPLETE && s->t.phase_ms[s->phase] > 0) {
            ev_timer_start(loop, &s->phase_w);
        }
        if (s->phase == WIRE_PHASE_COMPLETE) {
            /* What is still alive after cleanup was told to go and has not: prod it once. */
            for (size_t i = 0; i < s->n; i++) {
                if (s->members[i].w) {
                    worker_signal(s->members[i].w, SIGTERM);
                }
            }
        }
    }
}

void shutdown_force(struct shutdown *s)
{
    if (s->killed) {
        return;
    }
    s->killed = true;
    s->forced = true;
    for (size_t i = 0; i < s->n; i++) {
        if (s->members[i].w) {
            worker_kill(s->members[i].w);
        }
    }
}

static void shutdown_on_total(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct shutdown *s = t->data;
    log_record(LOG_WARN, shutdown_origin(s), NULL,
               "shutdown took longer than %" PRIu64 " ms in phase %s; killing %zu worker(s)",
               s->t.total_ms, wire_phase_to_string(s->phase), shutdown_alive(s));
    shutdown_force(s);
}

int shutdown_start(struct shutdown_set *set, const char *scope, struct worker *const *workers,
                   size_t n, const struct shutdown_timeouts *t, shutdown_phase_fn on_phase,
                   shutdown_done_fn done, void *data, struct shutdown **ret)
{
    struct shutdown *s = calloc(1, sizeof *s);
    if (!s) {
        return -ENOMEM;
    }
    s->members = calloc(n ? n : 1, sizeof *s->members);
    s->scope = scope ? strdup(scope) : NULL;
    if (!s->members || (scope && !s->scope)) {
        free(s->members);
        free(s->scope);
        free(s);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        struct worker *w = workers[i];
        if (w->retire || !worker_is_alive(w)) {
            continue;
        }
        w->retire = s;
        s->members[s->n++] = (struct shutdown_member){w, false};
    }
    s->set = set;
    s->next = set->runs;
    set->runs = s;
    s->t = *t;
    s->on_phase = on_phase;
    s->done = done;
    s->data = data;
    s->started_at = ev_now(set->loop);
    ev_init(&s->phase_w, shutdown_on_check);
    s->phase_w.data = s;
    ev_timer_init(&s->total_w, shutdown_on_total, (double)t->total_ms / 1000.0, 0.);
    s->total_w.data = s;
    ev_timer_start(set->loop, &s->total_w);
    if (ret) {
        *ret = s;
    }
    shutdown_begin_phase(s, WIRE_PHASE_INITIATED);
    return 0;
}

void shutdown_on_phase_done(struct worker *w, enum wire_phase phase)
{
    struct shutdown *s = w->retire;
    if (!s || phase != s->phase) {
        return; /* late or confused answers are harmless */
    }
    for (size_t i = 0; i < s->n; i++) {
        if (s->members[i].w == w) {
            s->members[i].acked = true;
        }
    }
    shutdown_schedule_check(s);
}

void shutdown_on_worker_exit(struct worker *w)
{
    struct shutdown *s = w->retire;
    if (!s) {
        return;
    }
    for (size_t i = 0; i < s->n; i++) {
        if (s->members[i].w == w) {
            s->members[i].w = NULL;
        }
    }
    w->retire = NULL;
    shutdown_schedule_check(s);
}

int shutdown_retire(struct shutdown_set *set, struct worker *w, const struct config *cfg,
                    uint64_t total_ms)
{
    struct shutdown_timeouts t;
    shutdown_timeouts_from_config(&t, cfg, total_ms);
    for (int p = 0; p < WIRE_PHASE_COUNT; p++) {
        if (t.phase_ms[p] > total_ms) {
            t.phase_ms[p] = total_ms;
        }
    }
    return shutdown_start(set, w->cfg->name, &w, 1, &t, NULL, NULL, NULL, NULL);
}
