/*
 * app: one [app:NAME], its slots and the restart policy. See app.h.
 */
#include "app.h"

#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "events.h"
#include "handover.h"
#include "log.h"
#include "logbuf.h"
#include "metrics.h"
#include "shutdown.h"
#include "sweep.h"

const double app_reload_buckets[APP_RELOAD_BUCKETS] = {0.5, 1, 2.5, 5, 10, 30, 60, 120};

void app_observe_reload(struct app *app, double seconds)
{
    size_t i = 0;
    while (i < APP_RELOAD_BUCKETS && seconds > app_reload_buckets[i]) {
        i++;
    }
    app->reload_hist[i]++;
    app->reload_seconds += seconds;
}

static struct log_origin app_origin(const struct app *app, int slot)
{
    return (struct log_origin){app->name, slot, 0};
}

bool app_is_up(const struct app *app)
{
    return app->state == APP_RUNNING || app->state == APP_RELOADING ||
           app->state == APP_ERRORED;
}

int app_retire(struct app *app, struct worker *w)
{
    if (w->state == WORKER_HUNG) {
        /* A hung worker answers no phase: it is aborted, to leave a core or a stack dump,
         * and killed kill_timeout later (SPEC section 10). */
        worker_abort(w);
        return 0;
    }
    return shutdown_retire(app->host->shutdowns, w, *app->host->cfg, app->cfg->kill_timeout_ms);
}

const char *app_busy_with(const struct app *app)
{
    return app->replacing ? app->replacing->ops->describe(app->replacing) : "nothing";
}

enum app_verdict app_judge(const struct app *app, enum app_command cmd, const char *verb,
                           char *why, size_t size)
{
    enum app_verdict v = app_state_accepts(app->state, app->replacing != NULL, cmd);
    switch (v) {
    case APP_TAKE:
    case APP_ALREADY:
    case APP_KEEP:
        snprintf(why, size, "%s", "");
        break;
    case APP_REFUSE_BUSY:
        snprintf(why, size, "app '%s' is busy with a %s; %s it once that is done", app->name,
                 app_busy_with(app), verb);
        break;
    case APP_REFUSE_STOPPING:
        snprintf(why, size, "app '%s' is stopping; %s it once it has stopped", app->name, verb);
        break;
    case APP_REFUSE_STOPPED:
        snprintf(why, size, "app '%s' is not running; start it first", app->name);
        break;
    }
    return v;
}

/* The one place an app's state changes, and the one log record for it. */
void app_feed(struct app *app, enum app_event ev, const char *why)
{
    bool moved = false;
    enum app_state from = app->state;
    enum app_state to = app_state_next(from, ev, &moved);
    if (!moved) {
        return;
    }
    app->state = to;
    json_t *f = json_pack("{s:s, s:s, s:s}", "state", app_state_to_string(to), "from",
                          app_state_to_string(from), "event", app_event_to_string(ev));
    log_record(to == APP_ERRORED ? LOG_ERROR : LOG_INFO, app_origin(app, -1), f, "app %s%s%s",
               app_state_to_string(to), why ? ": " : "", why ? why : "");
}

/* A slot that keeps failing fast: it waits out a backoff delay, or its next try is starting or
 * has not yet lived min_uptime (ready = none makes every try "ready" at once). */
static bool slot_is_crash_looping(const struct slot *s, ev_tstamp now)
{
    if (!slot_machine_is_looping(&s->fsm)) {
        return false;
    }
    const struct worker *w = s->worker;
    if (s->fsm.state != SLOT_FILLED || !w) {
        return s->fsm.state == SLOT_BACKOFF;
    }
    return w->state == WORKER_STARTING ||
           (w->state == WORKER_READY &&
            (now - w->started_at) * 1000.0 < (double)s->app->cfg->min_uptime_ms);
}

/*
 * errored (SPEC section 7): every slot of a running app is crash-looping. It is a judgement, not
 * a mode: the slots go on retrying on their backoff, and once one of them holds a worker that
 * has lived min_uptime the app is running again. Reviewed at every exit and ready, and at each
 * stats tick (a worker's uptime passes min_uptime without an event).
 */
static void app_review_health(struct app *app)
{
    if (app->state != APP_RUNNING && app->state != APP_ERRORED) {
        return;
    }
    ev_tstamp now = ev_now(app->host->loop);
    bool looping = app->n_slots > 0;
    for (unsigned i = 0; looping && i < app->n_slots; i++) {
        looping = slot_is_crash_looping(app->slots[i], now);
    }
    if (looping && app->state == APP_RUNNING) {
        app_feed(app, APP_EV_LOOPING, "every worker is crash-looping (in backoff after "
                                        "repeated fast crashes)");
    } else if (!looping && app->state == APP_ERRORED) {
        app_feed(app, APP_EV_SERVING, "a worker serves again");
    }
}

unsigned app_ready_count(const struct app *app)
{
    unsigned n = 0;
    for (const struct worker *w = app->workers; w; w = w->next) {
        n += w->state == WORKER_READY;
    }
    return n;
}

unsigned app_live_count(const struct app *app)
{
    unsigned n = 0;
    for (const struct worker *w = app->workers; w; w = w->next) {
        n++;
    }
    return n;
}

struct worker *app_worker_by_pid(const struct app *app, pid_t pid)
{
    for (struct worker *w = app->workers; w; w = w->next) {
        if (w->pid == pid) {
            return w;
        }
    }
    return NULL;
}

static void app_link(struct app *app, struct worker *w)
{
    w->next = app->workers;
    app->workers = w;
}

static void app_unlink(struct app *app, struct worker *w)
{
    for (struct worker **p = &app->workers; *p; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            w->next = NULL;
            return;
        }
    }
}


/* ---- what the app's workers report ---- */

static void app_try_replace(struct app *app, struct worker *w);

static void app_worker_ready(void *owner, struct worker *w)
{
    app_on_worker_ready(owner, w);
}

static void app_worker_hung(void *owner, struct worker *w)
{
    app_on_worker_hung(owner, w);
}

/* It asked to be replaced (SPEC section 10, reason requested): gracefully, through the same
 * surge path, at most one replacement per app at a time. */
static void app_worker_recycle(void *owner, struct worker *w, const char *reason)
{
    struct app *app = owner;
    if (w->condemned != WORKER_REASON_NONE) {
        return;
    }
    w->condemned = WORKER_REASON_REQUESTED;
    w->replace_at = 0;
    json_t *f = json_pack("{s:s, s:s}", "reason", "requested", "request", reason);
    event_record(EVENT_RECYCLE, LOG_INFO, (struct log_origin){app->name, (int)w->slot, w->pid},
                 f, "worker asked to be recycled ('%s'); replacing it", reason);
    app_try_replace(app, w);
}

static void app_worker_exit(void *owner, struct worker *w)
{
    shutdown_on_worker_exit(w);
    app_on_worker_exit(owner, w);
}

static void app_worker_phase_done(void *owner, struct worker *w, enum wire_phase phase)
{
    shutdown_on_phase_done(w, phase);
}

static void app_worker_metrics(void *owner, struct worker *w)
{
    struct app *app = owner;
    app->host->ops->on_metrics(app->host->owner);
}

static int app_worker_page(void *owner, const char *format, const char **ret_body)
{
    struct app *app = owner;
    return app->host->ops->page(app->host->owner, format, ret_body);
}

static const struct worker_ops app_worker_ops = {
    .on_ready = app_worker_ready,
    .on_hung = app_worker_hung,
    .on_recycle = app_worker_recycle,
    .on_exit = app_worker_exit,
    .on_phase_done = app_worker_phase_done,
    .on_metrics = app_worker_metrics,
    .page = app_worker_page,
};

/* Starts a worker of the app's current config and generation in slot. */
/* What a worker of the app's current config in slot is started (or taken over) with; fds: one
 * per listen address, or NULL for a worker that is not being spawned. */
static struct worker_spec app_spec(struct app *app, unsigned slot, unsigned generation,
                                   const int *fds)
{
    return (struct worker_spec){
        .loop = app->host->loop,
        .cfg_owner = app->cfg_owner,
        .cfg = app->cfg,
        .slot = slot,
        .generation = generation,
        .listen_fds = fds,
        .null_fd = app->host->null_fd,
        .notify_path = app->host->notify_path,
        .state_dir = app->state_dir,
        .set_ids = app->set_ids,
        .uid = app->uid,
        .gid = app->gid,
        .groups = app->groups,
        .n_groups = app->n_groups,
        .logbuf = app->logbuf,
        .log_dropped = &app->log_dropped,
        .metrics = app->metrics,
    };
}

static int app_spawn(struct app *app, unsigned slot, bool surge, struct worker **ret)
{
    const struct config_app *cfg = app->cfg;
    int fds[CONFIG_LISTEN_MAX];
    for (size_t i = 0; i < cfg->n_listen && i < CONFIG_LISTEN_MAX; i++) {
        const struct listener *l = app_listener_find(app, &cfg->listen[i]);
        fds[i] = l ? l->fd : -1;
    }
    struct worker_spec spec = app_spec(app, slot, app->generation, fds);
    spec.surge = surge;
    struct worker *w = NULL;
    int r = worker_start(&spec, &app_worker_ops, app, &w);
    if (r < 0) {
        return r;
    }
    app_link(app, w);
    *ret = w;
    return 0;
}

static struct slot_facts slot_facts_of(const struct slot *s)
{
    const struct config_app *cfg = s->app->cfg;
    return (struct slot_facts){
        .restart = cfg->restart,
        .policy = {cfg->restart_delay_ms, cfg->restart_delay_max_ms, cfg->min_uptime_ms},
        .random = (uint32_t)random(),
    };
}

static void slot_spawn(struct slot *s);

/*
 * Feeds ev to the slot's machine (slot.h) and carries out what it decides. One log record per
 * transition; the crash cells say more (delay, fast crashes) since that is what an operator
 * looks for.
 */
static struct slot_step slot_feed(struct slot *s, enum slot_event ev, const struct slot_facts *f)
{
    struct app *app = s->app;
    struct slot_step st = slot_machine_step(&s->fsm, ev, f);
    if (st.from != st.to && ev != SLOT_EV_CRASH) {
        json_t *fields = json_pack("{s:s, s:s, s:s}", "slot_state", slot_state_to_string(st.to),
                                   "from", slot_state_to_string(st.from), "event",
                                   slot_event_to_string(ev));
        log_record(LOG_DEBUG, app_origin(app, (int)s->id), fields, "slot %s: %s",
                   slot_state_to_string(st.to), st.why ? st.why : slot_event_to_string(ev));
    }
    switch (st.action) {
    case SLOT_DO_NOTHING:
        break;
    case SLOT_DO_SPAWN:
        slot_spawn(s);
        break;
    case SLOT_DO_WAIT:
        ev_timer_stop(app->host->loop, &s->restart_w);
        ev_timer_set(&s->restart_w, (double)st.delay_ms / 1000.0, 0.);
        ev_timer_start(app->host->loop, &s->restart_w);
        break;
    case SLOT_DO_CANCEL:
        ev_timer_stop(app->host->loop, &s->restart_w);
        break;
    }
    return st;
}

/* Starts the slot's worker of the app's current generation; on failure the machine retries it
 * on the backoff schedule. */
static void slot_spawn(struct slot *s)
{
    struct worker *w = NULL;
    if (app_spawn(s->app, s->id, false, &w) < 0) {
        struct slot_facts f = slot_facts_of(s);
        (void)slot_feed(s, SLOT_EV_FILL_FAILED, &f);
        return;
    }
    s->worker = w;
    (void)slot_feed(s, SLOT_EV_FILL, NULL);
}

static void slot_on_restart_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct slot *s = t->data;
    if (app_is_up(s->app)) {
        (void)slot_feed(s, SLOT_EV_TIMER, NULL);
        s->app->host->ops->on_changed(s->app->host->owner, s->app);
    }
}

void app_slot_replaced(struct app *app, unsigned slot, struct worker *w)
{
    struct slot *s = app->slots[slot];
    s->worker = w;
    (void)slot_feed(s, SLOT_EV_REPLACED, NULL);
}

static struct slot *slot_new(struct app *app, unsigned id)
{
    struct slot *s = calloc(1, sizeof *s);
    if (!s) {
        return NULL;
    }
    s->app = app;
    s->id = id;
    slot_machine_init(&s->fsm);
    ev_init(&s->restart_w, slot_on_restart_timer);
    s->restart_w.data = s;
    return s;
}

static void slot_free(struct slot *s)
{
    if (!s) {
        return;
    }
    ev_timer_stop(s->app->host->loop, &s->restart_w);
    json_decref(s->last_exit);
    free(s);
}

/* ---- stats ---- */

/*
 * max_memory (SPEC sections 5 and 10, "Memory"): a serving worker over the limit is replaced
 * gracefully, its successor ready first, one replacement per app at a time, however soon after
 * its start: killing it would cut the very request that made it grow. What backs off is the
 * replacement: a worker over the limit before min_uptime counts as a fast failure of its slot,
 * and its replacement waits the slot's backoff delay, as after a crash loop, while it serves on.
 * A replacement that could not be started (or whose new worker failed) is tried again on a
 * backoff of its own.
 */
static void app_check_memory(struct app *app, struct worker *w)
{
    const struct config_app *cfg = w->cfg;
    if (cfg->max_memory == 0 || w->stat.rss_bytes <= cfg->max_memory || w->retire ||
        app->state != APP_RUNNING) {
        return;
    }
    struct slot *s = w->slot < app->n_slots ? app->slots[w->slot] : NULL;
    if (!s || s->worker != w) {
        return;
    }
    ev_tstamp now = ev_now(app->host->loop);
    struct log_origin origin = {app->name, (int)w->slot, w->pid};
    if (w->condemned == WORKER_REASON_NONE) {
        w->condemned = WORKER_REASON_MEMORY;
        double uptime = now - w->started_at;
        struct slot_facts sf = slot_facts_of(s);
        sf.uptime_ms = (uint64_t)(uptime * 1000.0);
        uint64_t delay = slot_feed(s, SLOT_EV_MEMORY, &sf).delay_ms;
        w->replace_at = now + (double)delay / 1000.0;
        json_t *f = json_pack("{s:I, s:I, s:I}", "rss_bytes", (json_int_t)w->stat.rss_bytes,
                              "max_memory", (json_int_t)cfg->max_memory, "delay_ms",
                              (json_int_t)delay);
        if (delay > 0) {
            event_record(EVENT_MEMORY_LIMIT, LOG_WARN, origin, f,
                         "worker over max_memory (%" PRIu64 " > %" PRIu64 " bytes) %.1f s after "
                         "start; replacing it in %" PRIu64 " ms (backing off)",
                         w->stat.rss_bytes, cfg->max_memory, uptime, delay);
        } else {
            event_record(EVENT_MEMORY_LIMIT, LOG_WARN, origin, f,
                         "worker over max_memory (%" PRIu64 " > %" PRIu64 " bytes); replacing it",
                         w->stat.rss_bytes, cfg->max_memory);
        }
    }
    app_try_replace(app, w);
}

/*
 * A condemned worker (w->condemned: memory, hang, lifetime, requested) is replaced through the
 * host's surge path once its time has come and no other replacement owns the app's slots
 * (one at a time per app); otherwise, or should this one fail, a later stats tick tries again.
 */
static void app_try_replace(struct app *app, struct worker *w)
{
    ev_tstamp now = ev_now(app->host->loop);
    struct slot *s = w->slot < app->n_slots ? app->slots[w->slot] : NULL;
    if (w->condemned == WORKER_REASON_NONE || !s || s->worker != w || w->retire ||
        app->state != APP_RUNNING || now < w->replace_at || app->replacing) {
        return; /* its turn comes at a later check */
    }
    const struct config_app *cfg = w->cfg;
    struct backoff_policy p = {cfg->restart_delay_ms, cfg->restart_delay_max_ms,
                               cfg->min_uptime_ms};
    int r = app->host->ops->replace(app->host->owner, app, w, w->condemned);
    /* Should this one fail, or its new worker not come up, the next try waits. */
    uint64_t retry = backoff_next(&w->replace_retry, &p, 0, (uint32_t)random());
    w->replace_at = now + (double)retry / 1000.0;
    if (r < 0) {
        log_record(LOG_WARN, (struct log_origin){app->name, (int)w->slot, w->pid}, NULL,
                   "replacing the worker (%s) failed: %s; trying again in %" PRIu64 " ms",
                   worker_reason_to_string(w->condemned), strerror(-r), retry);
    }
}

/* A slot that was crash-looping is out of it once its worker has lived min_uptime. */
static void app_check_crash_loops(struct app *app, ev_tstamp now)
{
    for (unsigned i = 0; i < app->n_slots; i++) {
        struct slot *s = app->slots[i];
        const struct worker *w = s->worker;
        if (!s->crash_looping || !w || w->state != WORKER_READY ||
            (now - w->started_at) * 1000.0 < (double)app->cfg->min_uptime_ms) {
            continue;
        }
        s->crash_looping = false;
        event_record(EVENT_CRASH_LOOP_END, LOG_INFO, app_origin(app, (int)s->id),
                     json_pack("{s:I}", "restarts", (json_int_t)s->restarts),
                     "worker up for min_uptime (%" PRIu64 " ms) again: the crash loop is over",
                     app->cfg->min_uptime_ms);
    }
}

/* From the worker: hung (SPEC section 10). Its replacement starts at once; the reload's surge
 * path retires it through app_retire(), which aborts a hung worker. */
void app_on_worker_hung(struct app *app, struct worker *w)
{
    if (w->condemned == WORKER_REASON_NONE) {
        w->condemned = WORKER_REASON_HANG;
    }
    w->replace_at = 0;
    app_try_replace(app, w);
    app->host->ops->on_changed(app->host->owner, app);
}

/*
 * max_lifetime (SPEC section 10, "Recycling"): a worker is recycled after about T of uptime,
 * through the same surge path (its replacement ready first, so capacity never drops below
 * `workers`). The slots' lifetimes differ, T * (1 + slot / 2N), so workers started together
 * (the app's start, a reload) come due one after another and stay apart; should two come due
 * together anyway, the app's one-replacement-at-a-time rule recycles them in turn.
 */
static void app_check_lifetime(struct app *app, struct worker *w, ev_tstamp now)
{
    const struct config_app *cfg = w->cfg;
    if (cfg->max_lifetime_ms == 0 || w->condemned != WORKER_REASON_NONE || w->retire ||
        app->n_slots == 0) {
        return;
    }
    double life = (double)cfg->max_lifetime_ms / 1000.0 *
                  (1.0 + (double)w->slot / (2.0 * (double)app->n_slots));
    double uptime = now - w->started_at;
    if (uptime < life) {
        return;
    }
    w->condemned = WORKER_REASON_LIFETIME;
    w->replace_at = 0;
    json_t *f = json_pack("{s:s, s:f, s:I}", "reason", "lifetime", "uptime_s", uptime,
                          "max_lifetime_ms", (json_int_t)cfg->max_lifetime_ms);
    event_record(EVENT_RECYCLE, LOG_INFO, (struct log_origin){app->name, (int)w->slot, w->pid},
                 f, "worker reached its lifetime (%.1f s, max_lifetime %" PRIu64
                 " ms); recycling it", uptime, cfg->max_lifetime_ms);
}

static void app_on_stats_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct app *app = t->data;
    ev_tstamp now = ev_now(loop);
    struct worker *next;
    for (struct worker *w = app->workers; w; w = next) {
        next = w->next;
        if (worker_sample(w, now) == 0 && w->state == WORKER_READY) {
            app_check_memory(app, w);
        }
        if (w->state == WORKER_READY && app->state == APP_RUNNING) {
            app_check_lifetime(app, w, now);
        }
        if (w->condemned != WORKER_REASON_NONE) {
            app_try_replace(app, w); /* one whose turn did not come at once */
        }
    }
    app_check_crash_loops(app, now);
    app_review_health(app);
}

/* ---- lifecycle ---- */

/* user = NAME: resolved once at creation, so a typo fails the start, not every spawn. */
static int app_resolve_user(struct app *app)
{
    const struct config_app *cfg = app->cfg;
    if (!cfg->user) {
        return 0;
    }
    struct passwd *pw = getpwnam(cfg->user);
    if (!pw) {
        log_record(LOG_ERROR, app_origin(app, -1), NULL, "user '%s' does not exist", cfg->user);
        return -ESRCH;
    }
    gid_t gid = pw->pw_gid;
    if (cfg->group) {
        struct group *gr = getgrnam(cfg->group);
        if (!gr) {
            log_record(LOG_ERROR, app_origin(app, -1), NULL, "group '%s' does not exist",
                       cfg->group);
            return -ESRCH;
        }
        gid = gr->gr_gid;
    }
    if (geteuid() != 0) {
        if (pw->pw_uid == geteuid()) {
            return 0; /* already that user: nothing to drop */
        }
        log_record(LOG_ERROR, app_origin(app, -1), NULL,
                   "user = %s needs drover to be started as root", cfg->user);
        return -EPERM;
    }
    int n = 32;
    gid_t *groups = NULL;
    for (;;) {
        gid_t *g = realloc(groups, sizeof *g * (size_t)n);
        if (!g) {
            free(groups);
            return -ENOMEM;
        }
        groups = g;
        int want = n;
        if (getgrouplist(pw->pw_name, gid, groups, &want) != -1) {
            n = want;
            break;
        }
        n = want > n ? want : n * 2;
    }
    app->set_ids = true;
    app->uid = pw->pw_uid;
    app->gid = gid;
    app->groups = groups;
    app->n_groups = n;
    return 0;
}

const struct listener *app_listener_find(const struct app *app, const struct address *addr)
{
    for (size_t i = 0; i < app->n_listeners; i++) {
        if (strcmp(app->listeners[i].addr.text, addr->text) == 0) {
            return &app->listeners[i];
        }
    }
    return NULL;
}

int app_listeners_add(struct app *app, const struct config_app *cfg,
                      const struct address **ret_failed)
{
    size_t before = app->n_listeners;
    struct listener *grown = realloc(app->listeners,
                                     sizeof *grown * (app->n_listeners + cfg->n_listen + 1));
    if (!grown) {
        return -ENOMEM;
    }
    app->listeners = grown;
    for (size_t i = 0; i < cfg->n_listen; i++) {
        if (app_listener_find(app, &cfg->listen[i])) {
            continue;
        }
        int r = listener_open(&app->listeners[app->n_listeners], &cfg->listen[i]);
        if (r < 0) {
            while (app->n_listeners > before) {
                listener_close(&app->listeners[--app->n_listeners]);
            }
            if (ret_failed) {
                *ret_failed = &cfg->listen[i];
            }
            return r;
        }
        const struct listener *nl = &app->listeners[app->n_listeners];
        if (nl->somaxconn > 0 && nl->backlog > nl->somaxconn) {
            log_record(LOG_WARN, app_origin(app, -1),
                       json_pack("{s:s, s:i, s:i}", "listen", nl->addr.text, "backlog",
                                 nl->backlog, "somaxconn", nl->somaxconn),
                       "listen %s: backlog %d is cut to %d by net.core.somaxconn; raise it "
                       "(sysctl) for a longer accept queue", nl->addr.text, nl->backlog,
                       nl->somaxconn);
        }
        app->n_listeners++;
    }
    return 0;
}

static bool app_config_uses(const struct config_app *cfg, const struct address *addr)
{
    for (size_t i = 0; i < cfg->n_listen; i++) {
        if (strcmp(cfg->listen[i].text, addr->text) == 0) {
            return true;
        }
    }
    return false;
}

void app_listeners_prune(struct app *app)
{
    size_t keep = 0;
    for (size_t i = 0; i < app->n_listeners; i++) {
        struct listener *l = &app->listeners[i];
        bool used = app_config_uses(app->cfg, &l->addr);
        for (struct worker *w = app->workers; w && !used; w = w->next) {
            used = app_config_uses(w->cfg, &l->addr);
        }
        if (used) {
            app->listeners[keep++] = *l;
        } else {
            log_record(LOG_INFO, app_origin(app, -1), NULL, "closing listen address %s",
                       l->addr.text);
            listener_close(l);
        }
    }
    app->n_listeners = keep;
}

/* ---- autoscaling (SPEC section 13; the decision is autoscale.c's) ---- */

#define APP_SCALE_SAMPLE_S 0.25

bool app_is_autoscaled(const struct app *app)
{
    return app->cfg->workers_max > app->cfg->workers;
}

void app_set_pinned(struct app *app, bool pinned)
{
    if (app->pinned != pinned) {
        app->pinned = pinned;
        log_record(LOG_INFO, app_origin(app, -1), NULL, "autoscaling %s",
                   pinned ? "paused: the count is pinned (droverctl scale APP auto resumes)"
                          : "resumed");
    }
}

/* The memory limit of drover's cgroup (cgroup v2 memory.max), 0 when none is set or known. */
static uint64_t app_memory_limit(const struct app *app)
{
    const char *path = (*app->host->cfg)->cgroup_memory_max;
    FILE *f = path ? fopen(path, "re") : NULL;
    unsigned long long v = 0;
    if (f) {
        if (fscanf(f, "%llu", &v) != 1) {
            v = 0; /* "max" */
        }
        fclose(f);
    }
    return v;
}

static void app_on_scale_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct app *app = t->data;
    (void)revents;
    const struct config_app *cfg = app->cfg;
    unsigned queue = 0;
    for (size_t i = 0; i < app->n_listeners; i++) {
        unsigned len, limit;
        if (listener_queue(&app->listeners[i], &len, &limit) == 0) {
            queue += len;
        }
    }
    struct autoscale_policy p = {cfg->workers, cfg->workers_max, cfg->scale_up_after_ms,
                                 cfg->scale_down_after_ms, cfg->scale_cooldown_ms,
                                 cfg->max_memory, app->memory_limit};
    bool blocked = app->pinned || app->replacing || app->state != APP_RUNNING;
    struct autoscale_step st = autoscale_feed(&app->autoscale, &p, ev_now(loop) * 1000.0, queue,
                                              app->n_slots, blocked);
    if (st.change == 0) {
        return;
    }
    unsigned old = app->n_slots;
    if (app_scale_to(app, (unsigned)((int)old + st.change)) == 0) {
        app->restarts[WORKER_REASON_SCALE]++;
        log_record(LOG_INFO, app_origin(app, -1),
                   json_pack("{s:I, s:I, s:I}", "from", (json_int_t)old, "to",
                             (json_int_t)app->n_slots, "queue", (json_int_t)queue),
                   "autoscale: %s to %u workers: %s", st.change > 0 ? "up" : "down",
                   app->n_slots, st.why);
    }
}

/* Starts or stops the sampling as the config says. */
static void app_autoscale_follow(struct app *app)
{
    struct ev_loop *loop = app->host->loop;
    bool want = app_is_autoscaled(app) && app_is_up(app);
    if (want && !ev_is_active(&app->scale_w)) {
        autoscale_init(&app->autoscale);
        app->memory_limit = app_memory_limit(app);
        ev_timer_set(&app->scale_w, APP_SCALE_SAMPLE_S, APP_SCALE_SAMPLE_S);
        ev_timer_start(loop, &app->scale_w);
    } else if (!want && ev_is_active(&app->scale_w)) {
        ev_timer_stop(loop, &app->scale_w);
    }
}

void app_set_config(struct app *app, struct config *owner, const struct config_app *cfg)
{
    config_ref(owner);
    config_unref(app->cfg_owner);
    app->cfg_owner = owner;
    app->cfg = cfg;
    /* The sampling interval may have changed. */
    if (ev_is_active(&app->stats_w)) {
        double every = (double)cfg->memory_check_interval_ms / 1000.0;
        ev_timer_stop(app->host->loop, &app->stats_w);
        ev_timer_set(&app->stats_w, every, every);
        ev_timer_start(app->host->loop, &app->stats_w);
    }
    app_autoscale_follow(app); /* MIN..MAX may have come or gone */
}

int app_spawn_extra(struct app *app, unsigned slot, bool surge, struct worker **ret)
{
    return app_spawn(app, slot, surge, ret);
}

/* ---- upgrade in place (SPEC section 12) ---- */

static const json_t *app_saved(const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(handover_get(handover_incoming(), "apps"), i, v) {
        const char *n = json_string_value(json_object_get(v, "name"));
        if (n && strcmp(n, name) == 0) {
            return v;
        }
    }
    return NULL;
}

/* The listening sockets the previous image had for this app, before anything is bound. */
static int app_take_listeners(struct app *app, const struct config_app *cfg)
{
    const json_t *saved = app_saved(app->name);
    struct handover *h = handover_incoming();
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(saved, "listeners"), i, v) {
        const char *text = json_string_value(json_object_get(v, "addr"));
        const struct address *addr = NULL;
        for (size_t k = 0; text && k < cfg->n_listen && !addr; k++) {
            if (strcmp(cfg->listen[k].text, text) == 0) {
                addr = &cfg->listen[k];
            }
        }
        int fd = handover_take(h, json_object_get(v, "fd"));
        if (!addr || fd < 0) {
            if (fd >= 0) {
                close(fd); /* the config no longer has it */
            }
            continue;
        }
        struct listener *grown =
            realloc(app->listeners, sizeof *grown * (app->n_listeners + 1));
        if (!grown) {
            close(fd);
            return -ENOMEM;
        }
        app->listeners = grown;
        app->listeners[app->n_listeners++] = (struct listener){
            .addr = *addr,
            .fd = fd,
            .created_path = json_is_true(json_object_get(v, "created_path")),
            .backlog = (int)json_integer_value(json_object_get(v, "backlog")),
            .somaxconn = (int)json_integer_value(json_object_get(v, "somaxconn")),
        };
    }
    return 0;
}

static json_t *app_u64_array(const uint64_t *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        json_array_append_new(a, json_integer((json_int_t)v[i]));
    }
    return a;
}

static void app_u64_restore(uint64_t *v, size_t n, const json_t *a)
{
    for (size_t i = 0; i < n && i < json_array_size(a); i++) {
        v[i] = (uint64_t)json_integer_value(json_array_get(a, i));
    }
}

static void app_save_line(const struct logbuf_line *line, void *data)
{
    json_array_append_new(data, json_pack("{s:f, s:i, s:I, s:b, s:o}", "ts", line->ts, "slot",
                                          line->slot, "pid", (json_int_t)line->pid, "stderr",
                                          line->is_stderr, "text",
                                          handover_bytes(line->text, line->len)));
}

json_t *app_save(const struct app *app, struct handover *h)
{
    json_t *slots = json_array(), *workers = json_array(), *listeners = json_array();
    json_t *logs = json_array();
    json_t *o = json_pack(
        "{s:s, s:i, s:s, s:o, s:o, s:o, s:f, s:I, s:b, s:o, s:o, s:o, s:o, s:o*}", "name",
        app->name, "generation", (int)app->generation, "state", app_state_to_string(app->state),
        "restarts", app_u64_array(app->restarts, WORKER_REASON_COUNT), "reloads",
        app_u64_array(app->reloads, 2), "reload_hist",
        app_u64_array(app->reload_hist, APP_RELOAD_BUCKETS + 1), "reload_seconds",
        app->reload_seconds, "log_dropped", (json_int_t)app->log_dropped, "pinned", app->pinned,
        "slots", slots, "workers", workers, "listeners", listeners, "logs", logs, "metrics",
        metrics_app_save(app->metrics));
    if (!o) {
        return NULL;
    }
    for (unsigned i = 0; i < app->n_slots; i++) {
        const struct slot *s = app->slots[i];
        double left = ev_is_active(&s->restart_w)
                          ? ev_timer_remaining(app->host->loop, (ev_timer *)&s->restart_w)
                          : -1;
        json_array_append_new(
            slots, json_pack("{s:i, s:s, s:I, s:i, s:i, s:b, s:O*, s:I, s:f}", "id", (int)s->id,
                             "state", slot_state_to_string(s->fsm.state), "delay_ms",
                             (json_int_t)s->fsm.backoff.delay_ms, "fast_crashes",
                             (int)s->fsm.backoff.fast_crashes, "restarts", (int)s->restarts,
                             "crash_looping", s->crash_looping, "last_exit", s->last_exit,
                             "worker", (json_int_t)(s->worker ? s->worker->pid : 0), "restart_in",
                             left));
    }
    for (const struct worker *w = app->workers; w; w = w->next) {
        json_t *jw = worker_save(w, h);
        if (!jw || json_array_append_new(workers, jw) < 0) {
            json_decref(o);
            return NULL;
        }
    }
    for (size_t i = 0; i < app->n_listeners; i++) {
        const struct listener *l = &app->listeners[i];
        json_array_append_new(listeners,
                              json_pack("{s:s, s:o, s:b, s:i, s:i}", "addr", l->addr.text, "fd",
                                        handover_fd(h, l->fd), "created_path", l->created_path,
                                        "backlog", l->backlog, "somaxconn", l->somaxconn));
    }
    logbuf_foreach_last(app->logbuf, -1, app_save_line, logs);
    return o;
}

static int app_state_parse(const char *s, enum app_state *ret)
{
    for (int i = 0; i < APP__COUNT; i++) {
        if (s && strcmp(app_state_to_string((enum app_state)i), s) == 0) {
            *ret = (enum app_state)i;
            return 0;
        }
    }
    return -EPROTO;
}

static int slot_state_parse(const char *s, enum slot_state *ret)
{
    for (int i = 0; i < SLOT__COUNT; i++) {
        if (s && strcmp(slot_state_to_string((enum slot_state)i), s) == 0) {
            *ret = (enum slot_state)i;
            return 0;
        }
    }
    return -EPROTO;
}

bool app_can_hand_over(const struct app *app, char *why, size_t size)
{
    if (app->replacing) {
        snprintf(why, size, "app %s is busy with a %s; upgrade when it is done", app->name,
                 app_busy_with(app));
        return false;
    }
    if (app->waiting_for[0]) {
        snprintf(why, size, "app %s is waiting for %s (depends_on); upgrade when it is up",
                 app->name, app->waiting_for);
        return false;
    }
    if (app->state != APP_RUNNING && app->state != APP_STOPPED && app->state != APP_ERRORED) {
        snprintf(why, size, "app %s is %s; upgrade when it is done", app->name,
                 app_state_to_string(app->state));
        return false;
    }
    for (const struct worker *w = app->workers; w; w = w->next) {
        if (w->state != WORKER_STARTING && w->state != WORKER_READY) {
            snprintf(why, size, "app %s has a worker %s (slot %u, pid %d); upgrade when it is "
                     "gone", app->name, worker_state_to_string(w->state), w->slot, (int)w->pid);
            return false;
        }
        if (w->condemned != WORKER_REASON_NONE) {
            snprintf(why, size, "app %s has a worker about to be replaced (%s, slot %u); upgrade "
                     "when that is done", app->name, worker_reason_to_string(w->condemned),
                     w->slot);
            return false;
        }
    }
    return true;
}

int app_resume(struct app *app)
{
    const json_t *saved = app_saved(app->name);
    struct handover *h = handover_incoming();
    struct ev_loop *loop = app->host->loop;
    if (!saved) {
        return app_start(app, NULL); /* new in this config: as at any start */
    }
    enum app_state state;
    int r = app_state_parse(json_string_value(json_object_get(saved, "state")), &state);
    if (r < 0) {
        return r;
    }
    app->generation = (unsigned)json_integer_value(json_object_get(saved, "generation"));
    app_u64_restore(app->restarts, WORKER_REASON_COUNT, json_object_get(saved, "restarts"));
    app_u64_restore(app->reloads, 2, json_object_get(saved, "reloads"));
    app_u64_restore(app->reload_hist, APP_RELOAD_BUCKETS + 1,
                    json_object_get(saved, "reload_hist"));
    app->reload_seconds = json_real_value(json_object_get(saved, "reload_seconds"));
    app->log_dropped = (uint64_t)json_integer_value(json_object_get(saved, "log_dropped"));
    app->pinned = json_is_true(json_object_get(saved, "pinned"));
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(saved, "logs"), i, v) {
        char *text;
        size_t len;
        if (handover_bytes_get(json_object_get(v, "text"), &text, &len) == 0) {
            logbuf_append_at(app->logbuf, json_real_value(json_object_get(v, "ts")),
                             (int)json_integer_value(json_object_get(v, "slot")),
                             (pid_t)json_integer_value(json_object_get(v, "pid")),
                             json_is_true(json_object_get(v, "stderr")), text ? text : "", len);
            free(text);
        }
    }
    r = metrics_app_restore(app->metrics, json_object_get(saved, "metrics"), ev_now(loop));
    if (r < 0) {
        log_record(LOG_WARN, app_origin(app, -1), NULL,
                   "some handed-over metrics could not be taken back: %s", strerror(-r));
    }
    const json_t *slots = json_object_get(saved, "slots");
    unsigned n = (unsigned)json_array_size(slots);
    if (n != app->n_slots && (r = app_slots_resize(app, n)) < 0) {
        return r;
    }
    json_array_foreach(json_object_get(saved, "workers"), i, v) {
        struct worker_spec spec =
            app_spec(app, (unsigned)json_integer_value(json_object_get(v, "slot")),
                     (unsigned)json_integer_value(json_object_get(v, "generation")), NULL);
        struct worker *w = NULL;
        r = worker_adopt(&spec, v, h, &app_worker_ops, app, &w);
        if (w) {
            app_link(app, w);
        }
        if (r < 0) {
            return r;
        }
    }
    json_array_foreach(slots, i, v) {
        struct slot *s = i < app->n_slots ? app->slots[i] : NULL;
        if (!s || slot_state_parse(json_string_value(json_object_get(v, "state")),
                                   &s->fsm.state) < 0) {
            return -EPROTO;
        }
        s->fsm.backoff.delay_ms = (uint64_t)json_integer_value(json_object_get(v, "delay_ms"));
        s->fsm.backoff.fast_crashes =
            (unsigned)json_integer_value(json_object_get(v, "fast_crashes"));
        s->restarts = (unsigned)json_integer_value(json_object_get(v, "restarts"));
        s->crash_looping = json_is_true(json_object_get(v, "crash_looping"));
        s->last_exit = json_incref(json_object_get(v, "last_exit"));
        json_int_t pid = json_integer_value(json_object_get(v, "worker"));
        s->worker = pid > 0 ? app_worker_by_pid(app, (pid_t)pid) : NULL;
        double left = json_real_value(json_object_get(v, "restart_in"));
        if (s->fsm.state == SLOT_BACKOFF) {
            ev_timer_set(&s->restart_w, left > 0.001 ? left : 0.001, 0.);
            ev_timer_start(loop, &s->restart_w);
        }
    }
    app->state = state; /* where it was: not a transition */
    if (app_is_up(app)) {
        double every = (double)app->cfg->memory_check_interval_ms / 1000.0;
        ev_timer_set(&app->stats_w, every, every);
        ev_timer_start(loop, &app->stats_w);
        app_autoscale_follow(app);
    }
    return 0;
}

int app_new(const struct app_host *host, struct config *owner, const struct config_app *cfg,
            struct app **ret, const struct address **ret_failed)
{
    int r = -ENOMEM;
    struct app *app = calloc(1, sizeof *app);
    if (!app) {
        return -ENOMEM;
    }
    app->host = host;
    app->cfg = cfg;
    app->cfg_owner = config_ref(owner);
    app->generation = 1;
    app->state = APP_STOPPED; /* born stopped: not a transition */
    app->name = strdup(cfg->name);
    app->state_dir = strdup(host->state_dir);
    app->slots = calloc(cfg->workers, sizeof *app->slots);
    if (!app->name || !app->state_dir || !app->slots) {
        goto out;
    }
    /* Enough to see why a worker died, small enough for hundreds of apps. */
    r = logbuf_new(1000, 1024 * 1024, &app->logbuf);
    if (r < 0) {
        goto out;
    }
    r = metrics_app_new(app->name, &app->metrics);
    if (r < 0) {
        goto out;
    }
    r = -ENOMEM;
    app->n_slots = cfg->workers;
    for (unsigned i = 0; i < app->n_slots; i++) {
        if (!(app->slots[i] = slot_new(app, i))) {
            goto out;
        }
    }
    r = app_take_listeners(app, cfg);
    if (r < 0) {
        goto out;
    }
    r = app_listeners_add(app, cfg, ret_failed);
    if (r < 0) {
        goto out;
    }
    r = app_resolve_user(app);
    if (r < 0) {
        goto out;
    }
    ev_init(&app->stats_w, app_on_stats_timer);
    app->stats_w.data = app;
    ev_init(&app->scale_w, app_on_scale_timer);
    app->scale_w.data = app;
    *ret = app;
    app = NULL;
    r = 0;
out:
    app_free(app);
    return r;
}

/*
 * An app left stopped closes its listening sockets (SPEC section 5, "Start"): with no worker to
 * come, a backlog would only hang its clients, so they are refused until `start` binds again.
 * Everywhere else (reloads, restarts, crashes) the sockets stay, and a client waits a moment
 * in the backlog instead.
 */
static void app_on_stopped_swept(struct sweep_node *node)
{
    struct app *app = SWEEP_OWNER(node, struct app, stopped);
    if (app->state == APP_STOPPED) { /* not started again meanwhile */
        app->host->ops->on_stopped(app->host->owner, app);
    }
}

static void app_become_stopped(struct app *app)
{
    app_feed(app, APP_EV_GONE, NULL);
    if (app->n_listeners > 0 && *app->host->running) {
        log_record(LOG_INFO, app_origin(app, -1), NULL,
                   "closing %zu listen address%s: clients are refused until the app starts",
                   app->n_listeners, app->n_listeners == 1 ? "" : "es");
    }
    for (size_t i = 0; i < app->n_listeners; i++) {
        listener_close(&app->listeners[i]);
    }
    app->n_listeners = 0;
    /* Reported from the sweeper: the caller of app_stop() may be going through its apps. */
    sweep_add(app->host->sweep, &app->stopped, app_on_stopped_swept);
}

int app_start(struct app *app, const struct address **ret_failed)
{
    struct ev_loop *loop = app->host->loop;
    /* Bound already at creation; bound again after a stop closed them. */
    int r = app_listeners_add(app, app->cfg, ret_failed);
    if (r < 0) {
        return r;
    }
    app_feed(app, APP_EV_START, NULL);
    for (unsigned i = 0; i < app->n_slots; i++) {
        struct slot *s = app->slots[i];
        backoff_init(&s->fsm.backoff);
        /* A slot waiting out a backoff (an errored app started again) tries now instead. */
        if (!s->worker) {
            slot_spawn(s);
        }
    }
    double every = (double)app->cfg->memory_check_interval_ms / 1000.0;
    ev_timer_set(&app->stats_w, every, every);
    ev_timer_start(loop, &app->stats_w);
    app_autoscale_follow(app);
    return 0;
}

void app_halt(struct app *app)
{
    app->waiting_for[0] = '\0'; /* a waiting app is stopped now, not waiting any more */
    if (app->replacing) {
        app->replacing->ops->abort(app->replacing, "the app is stopping");
    }
    app_feed(app, APP_EV_HALT, NULL);
    for (unsigned i = 0; i < app->n_slots; i++) {
        (void)slot_feed(app->slots[i], SLOT_EV_HALT, NULL);
    }
    app_autoscale_follow(app);
}

size_t app_collect_workers(const struct app *app, struct worker **out, size_t max)
{
    size_t n = 0;
    for (struct worker *w = app->workers; w; w = w->next) {
        if (n < max) {
            out[n] = w;
        }
        n++;
    }
    return n;
}

int app_stop(struct app *app)
{
    app->waiting_for[0] = '\0';
    if (app->state == APP_STOPPED || app->state == APP_STOPPING) {
        return 0;
    }
    app_halt(app);
    if (!app->workers) {
        app_become_stopped(app);
        return 0;
    }
    size_t n = app_live_count(app);
    struct worker **ws = calloc(n, sizeof *ws);
    if (!ws) {
        return -ENOMEM;
    }
    app_collect_workers(app, ws, n);
    struct shutdown_timeouts t;
    const struct config *sup = *app->host->cfg;
    shutdown_timeouts_from_config(&t, sup, sup->shutdown_timeout_ms);
    int r = shutdown_start(app->host->shutdowns, app->name, ws, n, &t, NULL, NULL, NULL, NULL);
    free(ws);
    return r;
}

void app_kill(struct app *app)
{
    for (struct worker *w = app->workers; w; w = w->next) {
        worker_stop_now(w);
    }
}

static void app_on_swept(struct sweep_node *node)
{
    app_free(SWEEP_OWNER(node, struct app, swept));
}

void app_free_later(struct app *app, struct sweep *sweep)
{
    sweep_add(sweep, &app->swept, app_on_swept);
}

void app_free(struct app *app)
{
    if (!app) {
        return;
    }
    if (app->host && app->host->loop) {
        ev_timer_stop(app->host->loop, &app->stats_w);
        ev_timer_stop(app->host->loop, &app->scale_w);
    }
    for (size_t i = 0; i < app->n_listeners; i++) {
        listener_close(&app->listeners[i]);
    }
    if (app->slots) {
        for (unsigned i = 0; i < app->n_slots; i++) {
            slot_free(app->slots[i]);
        }
    }
    logbuf_free(app->logbuf);
    metrics_app_free(app->metrics);
    free(app->slots);
    free(app->listeners);
    free(app->groups);
    free(app->state_dir);
    free(app->name);
    config_unref(app->cfg_owner);
    free(app);
}

int app_slots_resize(struct app *app, unsigned n)
{
    struct ev_loop *loop = app->host->loop;
    if (n > app->n_slots) {
        struct slot **slots = realloc(app->slots, sizeof *slots * n);
        if (!slots) {
            return -ENOMEM;
        }
        app->slots = slots;
        for (unsigned i = app->n_slots; i < n; i++) {
            if (!(slots[i] = slot_new(app, i))) {
                return -ENOMEM;
            }
            app->n_slots = i + 1;
        }
        return 0;
    }
    for (unsigned i = n; i < app->n_slots; i++) {
        ev_timer_stop(loop, &app->slots[i]->restart_w);
        slot_free(app->slots[i]);
        app->slots[i] = NULL;
    }
    app->n_slots = n;
    return 0;
}

int app_scale_to(struct app *app, unsigned n)
{
    unsigned old = app->n_slots;
    if (n == old) {
        return 0;
    }
    /* A replacement (reload, restart, memory) works through the slots it found when it began
     * and counts on them to stay: a slot that vanished under it would leave its surge worker
     * with no slot, serving on and never retired. */
    if (app->replacing) {
        return -EBUSY;
    }
    if (n > old) {
        int r = app_slots_resize(app, n);
        if (app_is_up(app)) {
            for (unsigned i = old; i < app->n_slots; i++) {
                slot_spawn(app->slots[i]);
            }
        }
        event_record(EVENT_SCALE, LOG_INFO, app_origin(app, -1),
                     json_pack("{s:I, s:I}", "from", (json_int_t)old, "to",
                               (json_int_t)app->n_slots),
                     "scaled up from %u to %u workers", old, app->n_slots);
        return r;
    }
    /* Scale down from the top: the highest slots leave through the phases. Their workers stay
     * on the app's list until they exit; their slot is gone, so nothing restarts them. */
    for (unsigned i = n; i < old; i++) {
        struct slot *s = app->slots[i];
        if (s->worker) {
            (void)app_retire(app, s->worker);
        }
    }
    app_slots_resize(app, n);
    event_record(EVENT_SCALE, LOG_INFO, app_origin(app, -1),
                 json_pack("{s:I, s:I}", "from", (json_int_t)old, "to", (json_int_t)n),
                 "scaled down from %u to %u workers", old, n);
    return 0;
}

void app_on_worker_ready(struct app *app, struct worker *w)
{
    if (app->replacing) {
        (void)app->replacing->ops->on_worker_ready(app->replacing, w);
    }
    app_review_health(app);
    app->host->ops->on_changed(app->host->owner, app);
}

/* The restart policy of SPEC section 5 for an exit nobody asked for: the slot machine's crash
 * cell decides; this says what it decided. */
static void app_handle_crash(struct app *app, struct slot *s, struct worker *w)
{
    const struct config_app *cfg = app->cfg;
    struct slot_facts f = slot_facts_of(s);
    f.uptime_ms = (uint64_t)((ev_now(app->host->loop) - w->started_at) * 1000.0);
    f.clean_exit = WIFEXITED(w->wait_status) && WEXITSTATUS(w->wait_status) == 0;
    struct slot_step st = slot_feed(s, SLOT_EV_CRASH, &f);
    if (!st.counts_restart) {
        log_record(LOG_INFO, app_origin(app, (int)s->id), NULL,
                   "not restarting (restart = %s)", restart_policy_to_string(cfg->restart));
        return;
    }
    app->restarts[w->condemned != WORKER_REASON_NONE ? w->condemned : WORKER_REASON_CRASH]++;
    s->restarts++;
    if (st.action == SLOT_DO_WAIT) {
        json_t *fields = json_pack("{s:I, s:i, s:s, s:s}", "delay_ms", (json_int_t)st.delay_ms,
                                   "fast_crashes", (int)s->fsm.backoff.fast_crashes,
                                   "slot_state", slot_state_to_string(st.to), "from",
                                   slot_state_to_string(st.from));
        /* One fast crash is bad luck; from the second in a row on, the slot is in a loop. */
        if (s->fsm.backoff.fast_crashes >= 2 && !s->crash_looping) {
            s->crash_looping = true;
            event_record(EVENT_CRASH_LOOP, LOG_WARN, app_origin(app, (int)s->id), fields,
                         "worker died after %" PRIu64 " ms (min_uptime %" PRIu64
                         " ms); restarting in %" PRIu64 " ms",
                         f.uptime_ms, cfg->min_uptime_ms, st.delay_ms);
        } else {
            log_record(LOG_WARN, app_origin(app, (int)s->id), fields,
                       "worker died after %" PRIu64 " ms (min_uptime %" PRIu64
                       " ms); restarting in %" PRIu64 " ms",
                       f.uptime_ms, cfg->min_uptime_ms, st.delay_ms);
        }
    }
}

void app_on_worker_exit(struct app *app, struct worker *w)
{
    app_unlink(app, w);
    ev_timer_stop(app->host->loop, &w->timer_w);
    struct slot *s = w->slot < app->n_slots ? app->slots[w->slot] : NULL;
    bool was_current = s && s->worker == w;
    if (was_current) {
        s->worker = NULL;
    }
    if (s && w->last_exit) {
        json_decref(s->last_exit);
        s->last_exit = json_incref(w->last_exit);
    }
    /* A replacement in progress owns the exits of its own workers (a new one failing, an old
     * one whose successor is already coming up). */
    bool handled = app->replacing && app->replacing->ops->on_worker_exit(app->replacing, w);
    /* A condemned worker that leaves while still its slot's worker never saw its replacement
     * (a hung one aborted after ready_timeout): the slot is refilled as after a crash. */
    bool unreplaced = was_current && w->condemned != WORKER_REASON_NONE;
    if (was_current && !handled && (!worker_was_asked(w) || unreplaced) && app_is_up(app)) {
        app_handle_crash(app, s, w);
    } else if (was_current) {
        (void)slot_feed(s, SLOT_EV_LEFT, NULL);
    }
    app_review_health(app);
    worker_free_later(w, app->host->sweep);
    if (!app->replacing) {
        app_listeners_prune(app);
    }
    if (app->state == APP_STOPPING && !app->workers) {
        app_become_stopped(app);
        return;
    }
    app->host->ops->on_changed(app->host->owner, app);
}
