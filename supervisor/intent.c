/*
 * intent: scale, start and stop APP as queued commands. See intent.h.
 *
 * Reading order: intent_submit() queues the intent on the master's sweeper; intent_take() runs
 * from there, asks the app's state table whether the command applies now, tells the app, and
 * then intent_check() decides whether the app is where the command takes it. Every change of
 * the app brings intent_check() again (intents_on_app), until the answer goes to the asker.
 */
#include "intent.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "log.h"
#include "master.h"
#include "sweep.h"
#include "worker.h"

enum intent_state {
    INTENT_SUBMITTED,   /* queued: taken from the sweeper */
    INTENT_WAITING,     /* told to the app: answered when the app got there */
};

/* Where the app must get for the answer. */
enum intent_goal {
    GOAL_SCALED_UP,     /* every slot below target has a ready worker */
    GOAL_SCALED_DOWN,   /* every worker of a slot at or above target has exited */
    GOAL_STARTED,       /* every slot has a ready worker */
    GOAL_STOPPED,       /* the app is stopped */
};

struct intent {
    struct intents *set;        /* NULL once the set was closed under it */
    struct ev_loop *loop;
    struct intent *next;
    struct sweep_node taken;
    enum intent_state state;
    enum intent_goal goal;
    struct intent_request req;
    char who[64];
    char *app_name;             /* for the answer, should the app be removed meanwhile */
    unsigned target;
    ev_tstamp submitted_at;
    intent_done_fn done;        /* NULL once the asker went */
    void *data;
};

struct intents {
    struct master *m;
    struct master_observer observer;
    struct intent *list;
};

static struct intents *intents_of(struct master_observer *o)
{
    return (struct intents *)(void *)((char *)o - offsetof(struct intents, observer));
}

static void intent_unlink(struct intent *in)
{
    if (!in->set) {
        return;
    }
    for (struct intent **p = &in->set->list; *p; p = &(*p)->next) {
        if (*p == in) {
            *p = in->next;
            break;
        }
    }
}

static void intent_free(struct intent *in)
{
    free(in->app_name);
    free(in);
}

/* The one way out: reply (stolen) to the asker, if it is still there, and the intent goes. */
static void intent_answer(struct intent *in, json_t *reply)
{
    intent_unlink(in);
    if (in->done) {
        if (!reply) {
            reply = json_pack("{s:b, s:s}", "ok", 0, "error", "out of memory");
        }
        in->done(reply, in->data);
    }
    json_decref(reply);
    intent_free(in);
}

static void intent_fail(struct intent *in, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void intent_fail(struct intent *in, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* The message may quote an app name from a request, bytes that need not be UTF-8. */
    intent_answer(in, json_pack("{s:b, s:o*}", "ok", 0, "error", log_json_text(msg, strlen(msg))));
}

static double intent_waited(const struct intent *in)
{
    return round((ev_now(in->loop) - in->submitted_at) / 0.001) * 0.001;
}

static void intent_answer_scaled(struct intent *in)
{
    struct app *app = in->req.app;
    intent_answer(in, json_pack("{s:b, s:s, s:s, s:I, s:I, s:f}", "ok", 1, "app", app->name,
                                "state", app_state_to_string(app->state), "workers",
                                (json_int_t)app->n_slots, "ready",
                                (json_int_t)app_ready_count(app), "duration_s",
                                intent_waited(in)));
}

/*
 * Whether every slot below n has a ready worker: 1 yes, 0 not yet, -1 never without help (a
 * slot waits out a backoff delay after a failed start, or has given up: restart = never), with
 * the slot in *ret_slot.
 */
static int intent_slots_ready(const struct app *app, unsigned n, unsigned *ret_slot)
{
    int r = 1;
    for (unsigned i = 0; i < n && i < app->n_slots; i++) {
        const struct slot *s = app->slots[i];
        if (!s->worker) {
            *ret_slot = i;
            return -1;
        }
        if (s->worker->state != WORKER_READY) {
            r = 0;
        }
    }
    return r;
}

static bool intent_slots_gone(const struct app *app, unsigned n)
{
    for (const struct worker *w = app->workers; w; w = w->next) {
        if (w->slot >= n) {
            return false;
        }
    }
    return true;
}

/* Is the app there? Answers when it is, or when it never will be. */
static void intent_check(struct intent *in)
{
    struct app *app = in->req.app;
    unsigned slot = 0;
    int r;
    switch (in->goal) {
    case GOAL_SCALED_UP:
    case GOAL_STARTED:
        if (in->set->m->state == MASTER_STOPPING) {
            intent_fail(in, "drover is shutting down");
            return;
        }
        if (app->waiting_for[0]) {
            /* depends_on: waiting is progress while the dependency comes up; once that is
             * crash-looping or stopped, the answer is why, and the app goes on waiting. */
            const struct app *dep = master_app_find(in->set->m, app->waiting_for);
            if (dep && (dep->state == APP_ERRORED ||
                        (dep->state == APP_STOPPED && !dep->waiting_for[0]) ||
                        dep->state == APP_STOPPING)) {
                intent_fail(in, "app '%s' is waiting for '%s' (%s); it starts once '%s' has a "
                                "ready worker", app->name, dep->name,
                            app_state_to_string(dep->state), dep->name);
            }
            return;
        }
        if (app->state == APP_STOPPING || app->state == APP_STOPPED) {
            intent_fail(in, "app '%s' was stopped before its workers were ready", app->name);
            return;
        }
        if (in->goal == GOAL_SCALED_UP && app->n_slots != in->target) {
            intent_fail(in, "app '%s' was scaled to %u meanwhile", app->name, app->n_slots);
            return;
        }
        r = intent_slots_ready(app, app->n_slots, &slot);
        if (r == 0) {
            return;
        }
        if (r < 0) {
            struct slot *s = app->slots[slot];
            if (s->fsm.state == SLOT_BACKOFF) {
                intent_fail(in, "app '%s': worker %u failed to start; restarting in %.1f s",
                            app->name, slot, ev_timer_remaining(app->host->loop, &s->restart_w));
            } else {
                intent_fail(in, "app '%s': worker %u failed to start and is not restarted",
                            app->name, slot);
            }
            return;
        }
        intent_answer_scaled(in);
        return;
    case GOAL_SCALED_DOWN:
        if (app->n_slots == in->target && !intent_slots_gone(app, in->target)) {
            return;
        }
        intent_answer_scaled(in);
        return;
    case GOAL_STOPPED:
        if (app->state == APP_STOPPING) {
            return;
        }
        if (app->state != APP_STOPPED) {
            intent_fail(in, "app '%s' was started again before it stopped", app->name);
            return;
        }
        intent_answer(in, json_pack("{s:b, s:s, s:s, s:f}", "ok", 1, "app", app->name, "state",
                                    "stopped", "duration_s", intent_waited(in)));
        return;
    }
}

/* What app's state table (appstate.h) says of cmd; a refusal is answered here. Returns
 * whether to go on, with the verdict in *ret. */
static bool intent_judge(struct intent *in, enum app_command cmd, const char *verb,
                         enum app_verdict *ret)
{
    char why[256];
    *ret = app_judge(in->req.app, cmd, verb, why, sizeof why);
    if (*ret == APP_REFUSE_BUSY || *ret == APP_REFUSE_STOPPING || *ret == APP_REFUSE_STOPPED) {
        intent_fail(in, "%s", why);
        return false;
    }
    return true;
}

static void intent_take_scale(struct intent *in)
{
    struct app *app = in->req.app;
    if (in->req.automatic) {
        if (!app_is_autoscaled(app)) {
            intent_fail(in, "app '%s' does not scale itself; expected workers = MIN..MAX in its "
                            "config", app->name);
            return;
        }
        app_set_pinned(app, false);
        intent_answer(in, json_pack("{s:b, s:s, s:s, s:b, s:I, s:I, s:I}", "ok", 1, "app",
                                    app->name, "state", app_state_to_string(app->state),
                                    "autoscale", 1, "workers", (json_int_t)app->n_slots, "min",
                                    (json_int_t)app->cfg->workers, "max",
                                    (json_int_t)app->cfg->workers_max));
        return;
    }
    long long want = in->req.relative ? (long long)app->n_slots + in->req.count : in->req.count;
    if (want < 1) {
        intent_fail(in, "cannot scale app '%s' to %lld workers: at least 1 (stop it instead)",
                    app->name, want);
        return;
    }
    if (want > INTENT_WORKERS_MAX) {
        intent_fail(in, "cannot scale app '%s' to %lld workers: at most %d", app->name, want,
                    INTENT_WORKERS_MAX);
        return;
    }
    enum app_verdict v;
    if (!intent_judge(in, APP_CMD_SCALE, "scale", &v)) {
        return;
    }
    unsigned old = app->n_slots;
    if (app_is_autoscaled(app)) {
        app_set_pinned(app, true); /* the operator's count holds until `scale APP auto` */
    }
    int r = app_scale_to(app, (unsigned)want);
    if (r == -EBUSY) {
        intent_fail(in, "app '%s' is busy with a %s; scale it once that is done", app->name,
                    app_busy_with(app));
        return;
    }
    if (r < 0) {
        intent_fail(in, "scaling app '%s' failed: %s", app->name, strerror(-r));
        return;
    }
    if (v == APP_KEEP) {
        /* A stopped app keeps the new count for its next start. */
        intent_answer(in, json_pack("{s:b, s:s, s:s, s:I, s:I}", "ok", 1, "app", app->name,
                                    "state", app_state_to_string(app->state), "workers",
                                    (json_int_t)app->n_slots, "ready", (json_int_t)0));
        return;
    }
    in->goal = (unsigned)want >= old ? GOAL_SCALED_UP : GOAL_SCALED_DOWN;
    in->target = (unsigned)want;
    in->state = INTENT_WAITING;
    intent_check(in);
}

static void intent_take_start(struct intent *in)
{
    struct app *app = in->req.app;
    enum app_verdict v;
    if (!intent_judge(in, APP_CMD_START, "start", &v)) {
        return;
    }
    if (v == APP_ALREADY) {
        intent_answer(in, json_pack("{s:b, s:s, s:s, s:b, s:I, s:I}", "ok", 1, "app", app->name,
                                    "state", app_state_to_string(app->state), "already", 1,
                                    "workers", (json_int_t)app->n_slots, "ready",
                                    (json_int_t)app_ready_count(app)));
        return;
    }
    log_record(LOG_INFO, (struct log_origin){app->name, -1, 0}, NULL, "starting app (%s)",
               in->who);
    const struct address *failed = NULL;
    int r = apporder_start(&in->set->m->order, app, &failed); /* what it depends on first */
    if (r < 0) {
        log_record(LOG_ERROR, (struct log_origin){app->name, -1, 0}, NULL,
                   "bind('%s') failed: %s", failed ? failed->text : "?", strerror(-r));
        intent_fail(in, "app '%s' cannot start: bind('%s') failed: %s", app->name,
                    failed ? failed->text : "?", strerror(-r));
        return;
    }
    in->goal = GOAL_STARTED;
    in->target = app->n_slots;
    in->state = INTENT_WAITING;
    intent_check(in);
}

static void intent_take_stop(struct intent *in)
{
    struct app *app = in->req.app;
    if (app->state == APP_STOPPED) {
        intent_answer(in, json_pack("{s:b, s:s, s:s, s:b}", "ok", 1, "app", app->name, "state",
                                    "stopped", "already", 1));
        return;
    }
    if (app->state != APP_STOPPING) {
        log_record(LOG_INFO, (struct log_origin){app->name, -1, 0}, NULL, "stopping app (%s)",
                   in->who);
        int r = app_stop(app);
        if (r < 0) {
            intent_fail(in, "stopping app '%s' failed: %s", app->name, strerror(-r));
            return;
        }
    }
    in->goal = GOAL_STOPPED;
    in->state = INTENT_WAITING;
    intent_check(in);
}

/* From the sweeper: the intent meets the app. */
static void intent_take(struct sweep_node *node)
{
    struct intent *in = SWEEP_OWNER(node, struct intent, taken);
    if (!in->set) {
        intent_free(in); /* the set closed: the master is going */
        return;
    }
    if (!in->req.app) {
        intent_fail(in, "app '%s' was removed by a reload", in->app_name);
        return;
    }
    if (in->set->m->state != MASTER_RUNNING) {
        intent_fail(in, "drover is shutting down");
        return;
    }
    switch (in->req.kind) {
    case INTENT_SCALE:
        intent_take_scale(in);
        return;
    case INTENT_START:
        intent_take_start(in);
        return;
    case INTENT_STOP:
        intent_take_stop(in);
        return;
    }
}

struct intent *intent_submit(struct intents *set, const struct intent_request *req,
                             intent_done_fn done, void *data)
{
    struct intent *in = calloc(1, sizeof *in);
    if (!in) {
        return NULL;
    }
    in->app_name = strdup(req->app->name);
    if (!in->app_name) {
        free(in);
        return NULL;
    }
    in->set = set;
    in->loop = set->m->loop;
    in->req = *req;
    snprintf(in->who, sizeof in->who, "%s", req->who ? req->who : "?");
    in->req.who = in->who;
    in->submitted_at = ev_now(set->m->loop);
    in->done = done;
    in->data = data;
    in->state = INTENT_SUBMITTED;
    in->next = set->list;
    set->list = in;
    sweep_add(&set->m->sweep, &in->taken, intent_take);
    return in;
}

void intent_cancel(struct intent *in)
{
    in->done = NULL;
    if (in->state == INTENT_WAITING) {
        intent_unlink(in);
        intent_free(in);
    }
    /* A submitted one is still taken (its command was given) and freed then. */
}

static void intents_on_app(struct master_observer *o, struct app *app)
{
    struct intents *set = intents_of(o);
    /* An app a reload removed is freed once it has stopped: nothing here may point at it. */
    bool going = app->removed && app->state == APP_STOPPED;
    struct intent *next;
    for (struct intent *in = set->list; in; in = next) {
        next = in->next; /* in may be answered, and go */
        if (in->req.app != app) {
            /* A start waiting for app (depends_on) hears of app's changes too. */
            if (in->state == INTENT_WAITING && in->req.app &&
                strcmp(in->req.app->waiting_for, app->name) == 0) {
                intent_check(in);
            }
            continue;
        }
        if (in->state == INTENT_SUBMITTED) {
            if (going) {
                in->req.app = NULL;
            }
            continue;
        }
        intent_check(in);
    }
    /* Whatever still waits on an app that goes can never be answered by it. */
    for (struct intent *in = set->list; going && in; in = next) {
        next = in->next;
        if (in->req.app == app && in->state == INTENT_WAITING) {
            intent_fail(in, "app '%s' was removed by a reload", in->app_name);
        }
    }
}

int intents_open(struct master *m, struct intents **ret)
{
    struct intents *set = calloc(1, sizeof *set);
    if (!set) {
        return -ENOMEM;
    }
    set->m = m;
    set->observer.on_app_changed = intents_on_app;
    master_observe(m, &set->observer);
    *ret = set;
    return 0;
}

void intents_close(struct intents *set)
{
    if (!set) {
        return;
    }
    master_unobserve(set->m, &set->observer);
    struct intent *next;
    for (struct intent *in = set->list; in; in = next) {
        next = in->next;
        if (in->state == INTENT_SUBMITTED) {
            in->set = NULL; /* queued on the sweeper: freed from there */
            in->done = NULL;
        } else {
            intent_free(in);
        }
    }
    free(set);
}
