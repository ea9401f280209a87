/*
 * master: the loop root. See master.h.
 *
 * Reading order: master_run() sets the process up (subreaper, signals, the notify socket, the
 * state dir), creates every app (binding every listen address before any worker starts, so a
 * failed bind stops drover before anything runs), starts the apps, and runs the loop. Signals
 * become calls to master_stop() and friends. The loop ends when the last app has stopped.
 */
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "events.h"
#include "handover.h"
#include "log.h"
#include "version.h"
#include "notify.h"
#include "orphans.h"
#include "reload.h"
#include "shutdown.h"
#include "worker.h"

/* What master_tell_observers() tells besides a shutdown phase. */
enum { MASTER_TELL_RELOAD_BEGIN = 100, MASTER_TELL_RELOAD_DONE };

/* After SIGKILL, how long to wait for the kernel to deliver the last exits before giving up. */
#define MASTER_KILL_GRACE 5.0

static const int master_signals[] = {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGTTIN,
                                     SIGTTOU};

struct app *master_app_find(struct master *m, const char *name)
{
    for (size_t i = 0; i < m->n_apps; i++) {
        if (strcmp(m->apps[i]->name, name) == 0) {
            return m->apps[i];
        }
    }
    return NULL;
}

struct worker *master_worker_by_pid(struct master *m, pid_t pid)
{
    for (size_t i = 0; i < m->n_apps; i++) {
        struct worker *w = app_worker_by_pid(m->apps[i], pid);
        if (w) {
            return w;
        }
    }
    return NULL;
}

bool master_is_ready(const struct master *m)
{
    if (m->state != MASTER_RUNNING) {
        return false;
    }
    for (size_t i = 0; i < m->n_apps; i++) {
        /* An app stopped on purpose (`droverctl stop APP`) does not make drover unready. */
        /* ... but one waiting for what it depends on (apporder.h) does. */
        if ((m->apps[i]->state != APP_STOPPED || m->apps[i]->waiting_for[0]) &&
            app_ready_count(m->apps[i]) == 0) {
            return false;
        }
    }
    return true;
}

void master_observe(struct master *m, struct master_observer *o)
{
    o->next = m->observers;
    m->observers = o;
}

void master_unobserve(struct master *m, struct master_observer *o)
{
    for (struct master_observer **p = &m->observers; *p; p = &(*p)->next) {
        if (*p == o) {
            *p = o->next;
            return;
        }
    }
}

/* Tells every observer: of app's change (app not NULL), else of what (a shutdown phase, or
 * MASTER_TELL_RELOAD_*). */
static void master_tell_observers(struct master *m, struct app *app, int what)
{
    struct master_observer *next;
    for (struct master_observer *o = m->observers; o; o = next) {
        next = o->next; /* o may unobserve itself */
        if (app) {
            if (o->on_app_changed) {
                o->on_app_changed(o, app);
            }
        } else if (what == MASTER_TELL_RELOAD_BEGIN || what == MASTER_TELL_RELOAD_DONE) {
            if (o->on_reload) {
                o->on_reload(o, what == MASTER_TELL_RELOAD_DONE);
            }
        } else if (o->on_phase) {
            o->on_phase(o, (enum wire_phase)what);
        }
    }
}

/* An app removed from the config has stopped: out of the list, freed by the sweeper. */
void master_remove_app(struct master *m, struct app *app)
{
    size_t i = 0;
    while (i < m->n_apps && m->apps[i] != app) {
        i++;
    }
    if (i == m->n_apps) {
        return; /* removed already (its "stopped" arrived after a reload took it out) */
    }
    memmove(&m->apps[i], &m->apps[i + 1], sizeof *m->apps * (m->n_apps - i - 1));
    m->n_apps--;
    log_record(LOG_INFO, (struct log_origin){app->name, -1, 0}, NULL,
               "app removed (no longer in the config)");
    master_tell_observers(m, app, 0); /* removed and stopped: nothing may point at it now */
    app_free_later(app, &m->sweep);
    apporder_review(&m->order); /* an app that waited for it waits for nothing now */
}

/* ---- what a reload request (reconfig.c) does to the master ---- */

int master_add_app(struct master *m, struct config *owner, const struct config_app *ca,
                   const struct address **ret_failed)
{
    struct app **apps = realloc(m->apps, sizeof *apps * (m->n_apps + 1));
    if (!apps) {
        return -ENOMEM;
    }
    m->apps = apps;
    int r = app_new(&m->host, owner, ca, &m->apps[m->n_apps], ret_failed);
    if (r < 0) {
        return r;
    }
    (void)apporder_start(&m->order, m->apps[m->n_apps++], NULL); /* bound by app_new */
    return 0;
}

void master_set_config(struct master *m, struct config *cfg)
{
    config_ref(cfg);
    config_unref(m->cfg);
    m->cfg = cfg;
}

void master_tell_reload(struct master *m, bool done)
{
    master_tell_observers(m, NULL, done ? MASTER_TELL_RELOAD_DONE : MASTER_TELL_RELOAD_BEGIN);
}

static void master_on_app_changed(struct master *m, struct app *app)
{
    apporder_review(&m->order); /* a dependency may have become ready */
    if (!m->ready_logged && master_is_ready(m)) {
        m->ready_logged = true;
        log_info("every app has its workers ready");
    }
    master_tell_observers(m, app, 0);
}

static bool master_all_stopped(const struct master *m)
{
    for (size_t i = 0; i < m->n_apps; i++) {
        if (m->apps[i]->workers) {
            return false;
        }
    }
    return true;
}

static void master_on_app_stopped(struct master *m, struct app *app)
{
    log_record(LOG_INFO, (struct log_origin){app->name, -1, 0}, NULL, "app stopped");
    master_tell_observers(m, app, 0);
    if (app->removed && m->state == MASTER_RUNNING) {
        master_remove_app(m, app);
    }
    if (m->state == MASTER_STOPPING && master_all_stopped(m)) {
        ev_break(m->loop, EVBREAK_ALL);
    }
}

/* ---- shutdown ---- */

static void master_kill_all(struct master *m)
{
    for (size_t i = 0; i < m->n_apps; i++) {
        app_kill(m->apps[i]);
    }
}

/* The last resort: the phase runs have their own deadlines; this fires only when, past all of
 * them, some worker still has not been reaped. */
static void master_on_shutdown_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct master *m = t->data;
    if (!m->killed) {
        log_warn("shutdown_timeout (%" PRIu64 " ms) passed; killing what is left",
                 m->cfg->shutdown_timeout_ms);
        m->forced = true;
        m->killed = true;
        master_kill_all(m);
        ev_timer_set(t, MASTER_KILL_GRACE, 0.);
        ev_timer_start(loop, t);
        return;
    }
    /* SIGKILL was sent and still some worker has not been reaped (stuck in the kernel).
     * Nothing more can be done from here; exit and let our own supervisor see status 1. */
    log_error("workers still not reaped %.0f s after SIGKILL; exiting anyway", MASTER_KILL_GRACE);
    ev_break(loop, EVBREAK_ALL);
}

/* cleanup: the master removes what it created in the file system while workers clean up. The
 * listen sockets themselves stay open until exit: only their names go. */
static void master_on_phase(struct shutdown *s, enum wire_phase phase, void *data)
{
    struct master *m = data;
    master_tell_observers(m, NULL, (int)phase);
    if (phase != WIRE_PHASE_CLEANUP) {
        return;
    }
    for (size_t i = 0; i < m->n_apps; i++) {
        struct app *app = m->apps[i];
        for (size_t j = 0; j < app->n_listeners; j++) {
            struct listener *l = &app->listeners[j];
            if (l->created_path) {
                unlink(((const struct sockaddr_un *)&l->addr.sa)->sun_path);
                l->created_path = false;
            }
        }
    }
    if (m->cfg->pid_file) {
        unlink(m->cfg->pid_file);
    }
}

static void master_stop_tier(struct master *m);

static void master_on_shutdown_done(struct shutdown *s, bool forced, void *data)
{
    struct master *m = data;
    m->shutdown = NULL;
    m->forced |= forced;
    if (m->stop_tier < m->stop_tier_last && !m->killed) {
        m->stop_tier++; /* the dependents are gone: now what they depended on */
        master_stop_tier(m);
        return;
    }
    if (master_all_stopped(m)) {
        ev_break(m->loop, EVBREAK_ALL);
    }
}

/*
 * One phase run over the workers of the apps in the current stop tier (depends_on: dependents
 * first, apporder.h), within what is left of shutdown_timeout. Without depends_on there is one
 * tier, every worker, and the run is the supervisor's shutdown as SPEC section 5 tells it. With
 * tiers, each tier goes through all six phases before the next begins, so a database keeps
 * serving until the apps using it have closed their connections; the observers (and the
 * master's cleanup of its files) follow the last tier's run, the one that ends the supervisor.
 */
static void master_stop_tier(struct master *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n_apps; i++) {
        n += app_live_count(m->apps[i]);
    }
    struct worker **ws = calloc(n ? n : 1, sizeof *ws);
    size_t k = 0;
    for (size_t i = 0; ws && i < m->n_apps; i++) {
        if (!m->stop_tiers || m->stop_tiers[i] == m->stop_tier) {
            k += app_collect_workers(m->apps[i], ws + k, n - k);
        }
    }
    bool last = m->stop_tier == m->stop_tier_last;
    if (m->stop_tier_last > 0) {
        log_info("shutdown: stopping depends_on tier %u of %u", m->stop_tier + 1,
                 m->stop_tier_last + 1);
    }
    uint64_t spent = (uint64_t)((ev_now(m->loop) - m->stop_began) * 1000.0);
    uint64_t total = m->cfg->shutdown_timeout_ms;
    struct shutdown_timeouts t;
    shutdown_timeouts_from_config(&t, m->cfg, spent < total ? total - spent : 1);
    if (!ws || shutdown_start(&m->shutdowns, NULL, ws, k, &t, last ? master_on_phase : NULL,
                              master_on_shutdown_done, m, &m->shutdown) < 0) {
        log_error("cannot start the shutdown phases: out of memory; killing the workers");
        m->forced = true;
        m->killed = true;
        master_kill_all(m);
    }
    free(ws);
}

/* The shutdown itself (see master_stop()), run from the sweeper. */
static void master_do_stop(struct master *m, bool fast)
{
    if (m->state == MASTER_STOPPING) {
        if (fast && !m->killed) {
            log_warn("fast shutdown: killing every worker now");
            m->forced = true;
            m->killed = true;
            master_kill_all(m);
            ev_timer_stop(m->loop, &m->shutdown_w);
            ev_timer_set(&m->shutdown_w, MASTER_KILL_GRACE, 0.);
            ev_timer_start(m->loop, &m->shutdown_w);
        }
        return;
    }
    /* initiated: from here on the master reports not-ready. */
    m->state = MASTER_STOPPING;
    m->running = false;
    m->stop_began = ev_now(m->loop);
    log_info("shutdown initiated%s", fast ? " (fast)" : "");
    for (size_t i = 0; i < m->n_apps; i++) {
        app_halt(m->apps[i]);
    }
    /* Out of memory for the tiers: one tier, all at once, as without depends_on. */
    m->stop_tiers = calloc(m->n_apps ? m->n_apps : 1, sizeof *m->stop_tiers);
    m->stop_tier = 0;
    m->stop_tier_last = m->stop_tiers ? apporder_stop_tiers(m->apps, m->n_apps, m->stop_tiers)
                                      : 0;
    master_stop_tier(m);
    ev_timer_set(&m->shutdown_w, (double)m->cfg->shutdown_timeout_ms / 1000.0 + MASTER_KILL_GRACE,
                 0.);
    ev_timer_start(m->loop, &m->shutdown_w);
    if (fast) {
        m->forced = true;
        m->killed = true;
        master_kill_all(m);
    }
}

static void master_on_stop_intent(struct sweep_node *node)
{
    struct master *m = (struct master *)(void *)((char *)node - offsetof(struct master, stop_node));
    bool fast = m->stop_asked > 1;
    m->stop_asked = 0;
    master_do_stop(m, fast);
}

void master_stop(struct master *m, bool fast)
{
    unsigned want = fast ? 2 : 1;
    if (want > m->stop_asked) {
        m->stop_asked = want;
    }
    sweep_add(&m->sweep, &m->stop_node, master_on_stop_intent);
}

/* ---- signals ---- */

static void master_scale_all(struct master *m, int delta)
{
    for (size_t i = 0; i < m->n_apps; i++) {
        struct app *app = m->apps[i];
        if (app->state != APP_RUNNING) {
            continue;
        }
        if (delta < 0 && app->n_slots <= 1) {
            log_record(LOG_WARN, (struct log_origin){app->name, -1, 0}, NULL,
                       "SIGTTOU: already at one worker; not scaling below it");
            continue;
        }
        if (app_scale_to(app, app->n_slots + (unsigned)delta) == -EBUSY) {
            log_record(LOG_WARN, (struct log_origin){app->name, -1, 0}, NULL,
                       "%s: the app is busy with a %s; not scaled",
                       delta > 0 ? "SIGTTIN" : "SIGTTOU", app_busy_with(app));
        }
    }
}

static void master_on_signal(struct ev_loop *loop, ev_signal *s, int revents)
{
    struct master *m = s->data;
    switch (s->signum) {
    case SIGTERM:
    case SIGINT:
        /* A second TERM or INT while stopping is the impatient operator: force it. */
        master_stop(m, m->state == MASTER_STOPPING || m->stop_asked > 0);
        break;
    case SIGQUIT:
        master_stop(m, true);
        break;
    case SIGHUP:
        m->ext->reload_all(m); /* a refusal is logged there, once */
        break;
    case SIGUSR1: {
        int r = log_reopen();
        if (r < 0) {
            log_error("reopening log_file '%s' failed: %s", m->cfg->log_file, strerror(-r));
        } else {
            log_info("log file reopened");
        }
        break;
    }
    case SIGUSR2:
        if (m->ext->upgrade) {
            m->ext->upgrade(m); /* a refusal is logged there, once */
        }
        break;
    case SIGTTIN:
        if (m->state == MASTER_RUNNING) {
            master_scale_all(m, +1);
        }
        break;
    case SIGTTOU:
        if (m->state == MASTER_RUNNING) {
            master_scale_all(m, -1);
        }
        break;
    }
}

static void master_metrics_changed(struct master *m)
{
    for (size_t i = 0; i < 2; i++) {
        m->pages[i].at = 0;
    }
}

static int master_page(struct master *m, const char *format, const char **ret_body)
{
    bool json = strcmp(format, "json") == 0;
    if (!json && strcmp(format, "text") != 0) {
        return -EINVAL;
    }
    struct master_page *p = &m->pages[json];
    ev_tstamp now = ev_now(m->loop);
    if (!p->body || p->at != now) {
        char *body = NULL;
        size_t len = 0;
        int r = m->ext->page(m, format, &body, &len);
        if (r < 0) {
            return r;
        }
        free(p->body);
        *p = (struct master_page){body, len, now};
    }
    *ret_body = p->body;
    return 0;
}

/* ---- sd_notify from workers ---- */

static void master_on_notify(struct ev_loop *loop, ev_io *io, int revents)
{
    struct master *m = io->data;
    char buf[NOTIFY_DATAGRAM_MAX + 1];
    /* A bounded number per wakeup, so a worker spamming datagrams cannot starve the loop. */
    for (int i = 0; i < 64; i++) {
        pid_t pid = 0;
        ssize_t n = notify_receive(m->notify_fd, buf, &pid);
        if (n == -EAGAIN || n == -EWOULDBLOCK) {
            return;
        }
        if (n < 0) {
            continue;
        }
        struct worker *w = master_worker_by_pid(m, pid);
        if (!w) {
            /* A worker's child in the worker's process group speaks for it, as systemd's
             * NotifyAccess=all allows for the unit's processes. */
            pid_t pgid = getpgid(pid);
            w = pgid > 0 ? master_worker_by_pid(m, pgid) : NULL;
        }
        struct notify_msg msg;
        if (!w || notify_parse(buf, (size_t)n, &msg) < 0) {
            continue;
        }
        worker_on_notify(w, &msg);
    }
}

/* ---- setup ---- */

/* mkdir -p for the state directory; returns 0 or -errno. */
static int master_mkdirs(const char *path)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        return -ENAMETOOLONG;
    }
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) == -1 && errno != EEXIST) {
                return -errno;
            }
            *p = '/';
        }
    }
    if (mkdir(buf, 0755) == -1 && errno != EEXIST) {
        return -errno;
    }
    return 0;
}

static int master_write_pid_file(const char *path)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        return -ENAMETOOLONG;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd == -1) {
        return -errno;
    }
    char line[32];
    int n = snprintf(line, sizeof line, "%d\n", (int)getpid());
    int r = write(fd, line, (size_t)n) == n ? 0 : -EIO;
    close(fd);
    if (r == 0 && rename(tmp, path) == -1) {
        r = -errno;
    }
    if (r < 0) {
        unlink(tmp);
    }
    return r;
}


/* ---- what the apps tell the master ---- */

static void master_app_changed(void *owner, struct app *app)
{
    master_on_app_changed(owner, app);
}

static void master_app_stopped(void *owner, struct app *app)
{
    master_on_app_stopped(owner, app);
}

static int master_app_replace(void *owner, struct app *app, struct worker *w,
                              enum worker_reason reason)
{
    unsigned slot = w->slot;
    return reload_start(app, NULL, NULL, &slot, 1, reason, NULL, NULL, NULL);
}

static void master_app_metrics(void *owner)
{
    master_metrics_changed(owner);
}

static int master_app_page(void *owner, const char *format, const char **ret_body)
{
    return master_page(owner, format, ret_body);
}

static const struct app_ops master_app_ops = {
    .on_changed = master_app_changed,
    .on_stopped = master_app_stopped,
    .replace = master_app_replace,
    .on_metrics = master_app_metrics,
    .page = master_app_page,
};

static int master_setup(struct master *m)
{
    struct config *cfg = m->cfg;
    int r;


    /* Orphaned descendants of workers are reparented to us, not to init, so we reap them and
     * they never become zombies, also when drover is PID 1 in a container. */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) == -1) {
        log_warn("prctl(PR_SET_CHILD_SUBREAPER) failed: %s", strerror(errno));
    }
    signal(SIGPIPE, SIG_IGN);

    m->null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (m->null_fd == -1) {
        r = -errno;
        log_error("open('/dev/null') failed: %s", strerror(-r));
        return r;
    }

    r = master_mkdirs(cfg->state_dir);
    if (r < 0) {
        log_error("mkdir('%s') failed: %s", cfg->state_dir, strerror(-r));
        return r;
    }
    m->state_dir = realpath(cfg->state_dir, NULL);
    if (!m->state_dir) {
        r = -errno;
        log_error("realpath('%s') failed: %s", cfg->state_dir, strerror(-r));
        return r;
    }

    /* The abstract namespace: no file to clean up or to leave behind, and a worker that runs as
     * another user can still send to it. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    const json_t *saved = handover_get(handover_incoming(), "master");
    const char *saved_path = json_string_value(json_object_get(saved, "notify_path"));
    if (saved_path) {
        /* The workers have this path in their environment: it must stay what it was. */
        m->notify_path = strdup(saved_path);
        m->notify_fd = handover_take(handover_incoming(), json_object_get(saved, "notify_fd"));
        m->started_at = json_real_value(json_object_get(saved, "started_at"));
        m->ready_logged = json_is_true(json_object_get(saved, "ready_logged"));
        worker_ids_continue((uint64_t)json_integer_value(json_object_get(saved, "next_worker")));
        if (!m->notify_path) {
            return -ENOMEM;
        }
    } else if (asprintf(&m->notify_path, "@drover/%d/%lx/notify", (int)getpid(),
                        (unsigned long)ts.tv_nsec) == -1) {
        m->notify_path = NULL;
        return -ENOMEM;
    }
    if (!saved_path) {
        m->notify_fd = notify_open(m->notify_path);
    }
    if (m->notify_fd < 0) {
        r = m->notify_fd;
        log_error("bind('%s') failed: %s", m->notify_path, strerror(-r));
        return r;
    }
    ev_io_init(&m->notify_w, master_on_notify, m->notify_fd, EV_READ);
    m->notify_w.data = m;
    ev_io_start(m->loop, &m->notify_w);

    /* The control socket first (the first part): if another drover runs with the same socket,
     * say that, rather than fail later on its listen addresses. */
    for (size_t i = 0; i < m->ext->n_parts; i++) {
        r = m->ext->parts[i].open(m, &m->parts[i]);
        if (r < 0) {
            return r;
        }
    }

    m->host = (struct app_host){
        .loop = m->loop,
        .sweep = &m->sweep,
        .shutdowns = &m->shutdowns,
        .cfg = &m->cfg,
        .null_fd = m->null_fd,
        .notify_path = m->notify_path,
        .state_dir = m->state_dir,
        .running = &m->running,
        .ops = &master_app_ops,
        .owner = m,
    };

    /* Every listen address of every app is bound before any worker starts. */
    m->apps = calloc(cfg->n_apps, sizeof *m->apps);
    if (!m->apps) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < cfg->n_apps; i++) {
        const struct address *failed = NULL;
        r = app_new(&m->host, cfg, &cfg->apps[i], &m->apps[i], &failed);
        if (r < 0) {
            if (failed) {
                log_record(LOG_ERROR, (struct log_origin){cfg->apps[i].name, -1, 0}, NULL,
                           "bind('%s') failed: %s", failed->text, strerror(-r));
            } else if (r != -ESRCH && r != -EPERM) {
                log_record(LOG_ERROR, (struct log_origin){cfg->apps[i].name, -1, 0}, NULL,
                           "creating app failed: %s", strerror(-r));
            }
            return r;
        }
        m->n_apps++;
    }

    if (cfg->pid_file) {
        r = master_write_pid_file(cfg->pid_file);
        if (r < 0) {
            log_error("writing pid_file '%s' failed: %s", cfg->pid_file, strerror(-r));
            return r;
        }
    }

    for (size_t i = 0; i < sizeof master_signals / sizeof master_signals[0]; i++) {
        ev_signal_init(&m->signal_w[i], master_on_signal, master_signals[i]);
        m->signal_w[i].data = m;
        ev_signal_start(m->loop, &m->signal_w[i]);
    }
    ev_init(&m->shutdown_w, master_on_shutdown_timer);
    m->shutdown_w.data = m;
    return 0;
}

static void master_teardown(struct master *m)
{
    for (size_t i = 0; i < sizeof master_signals / sizeof master_signals[0]; i++) {
        ev_signal_stop(m->loop, &m->signal_w[i]);
    }
    ev_timer_stop(m->loop, &m->shutdown_w);
    shutdown_abandon_all(&m->shutdowns);
    sweep_run(&m->sweep); /* what is owed to the apps and their askers, while they all exist */
    /* Before any app goes: a `logs -f` client of the control socket is registered with the
     * apps' log rings. */
    for (size_t i = m->ext->n_parts; i > 0; i--) {
        if (m->parts[i - 1]) {
            m->ext->parts[i - 1].close(m->parts[i - 1]);
            m->parts[i - 1] = NULL;
        }
    }
    for (size_t i = 0; i < m->n_apps; i++) {
        struct app *app = m->apps[i];
        /* Workers still listed here could not be reaped in time; they are SIGKILLed already
         * and are not ours to wait for any longer. */
        while (app->workers) {
            struct worker *w = app->workers;
            app->workers = w->next;
            ev_child_stop(m->loop, &w->child_w);
            worker_kill(w);
            channel_close(&w->ch);
            worker_free(w);
        }
        app_free(app);
    }
    sweep_done(&m->sweep);
    free(m->apps);
    if (m->notify_fd >= 0) {
        ev_io_stop(m->loop, &m->notify_w);
        close(m->notify_fd);
    }
    if (m->null_fd >= 0) {
        close(m->null_fd);
    }
    if (m->cfg->pid_file) {
        unlink(m->cfg->pid_file);
    }
    free(m->notify_path);
    free(m->pages[0].body);
    free(m->pages[1].body);
    free(m->state_dir);
    free(m->stop_tiers);
    config_unref(m->cfg);
}

/* ---- upgrade in place (SPEC section 12) ---- */

bool master_can_hand_over(const struct master *m, char *why, size_t size)
{
    if (m->state != MASTER_RUNNING || m->stop_asked) {
        snprintf(why, size, "drover is shutting down");
        return false;
    }
    if (m->reloads) {
        snprintf(why, size, "a reload is in progress; upgrade when it is done");
        return false;
    }
    if (m->shutdowns.runs) {
        snprintf(why, size, "workers are leaving through their phases; upgrade when they are gone");
        return false;
    }
    for (size_t i = 0; i < m->n_apps; i++) {
        if (!app_can_hand_over(m->apps[i], why, size)) {
            return false;
        }
    }
    return true;
}

int master_save(struct master *m, struct handover *h)
{
    json_t *doc = handover_doc(h);
    json_t *apps = json_array();
    json_t *saved = json_pack("{s:s, s:o, s:f, s:b, s:I}", "notify_path", m->notify_path,
                              "notify_fd", handover_fd(h, m->notify_fd), "started_at",
                              m->started_at, "ready_logged", m->ready_logged, "next_worker",
                              (json_int_t)worker_ids_next());
    if (!apps || !saved || json_object_set_new(doc, "master", saved) < 0 ||
        json_object_set_new(doc, "apps", apps) < 0 ||
        json_object_set_new(doc, "events", events_save()) < 0) {
        json_decref(apps);
        return -ENOMEM;
    }
    for (size_t i = 0; i < m->n_apps; i++) {
        if (json_array_append_new(apps, app_save(m->apps[i], h)) < 0) {
            return -ENOMEM;
        }
    }
    for (size_t i = 0; i < m->ext->n_parts; i++) {
        if (m->ext->parts[i].save && m->parts[i]) {
            int r = m->ext->parts[i].save(m->parts[i], h);
            if (r < 0) {
                return r;
            }
        }
    }
    return 0;
}

/* This image cannot take what it was handed: the previous one runs again with it. */
static void master_give_back(struct master *m, const char *why)
{
    struct handover *h = handover_incoming();
    if (!h) {
        return;
    }
    log_error("upgrade: %s; executing the previous drover again", why);
    int r = handover_give_back(h, why);
    log_error("upgrade: cannot execute the previous drover again: %s; the workers are left "
              "to themselves", strerror(-r));
}

/* Every app where the previous image left it; then a look for children that exited while no
 * image was watching (their SIGCHLD may have been lost across the exec). */
static int master_resume(struct master *m)
{
    for (size_t i = 0; i < m->n_apps; i++) {
        int r = app_resume(m->apps[i]);
        if (r < 0) {
            char why[160];
            snprintf(why, sizeof why, "app %s could not be taken over: %s", m->apps[i]->name,
                     strerror(-r));
            master_give_back(m, why);
            return r;
        }
    }
    handover_finish(handover_incoming());
    ev_feed_signal_event(m->loop, SIGCHLD);
    return 0;
}

int master_run(struct config *cfg, const struct master_extensions *ext)
{
    struct master master = {.cfg = cfg, .ext = ext, .notify_fd = -1, .null_fd = -1};
    struct master *m = &master;
    int status = MASTER_EXIT_STARTUP;

    m->loop = ext->n_parts <= MASTER_PARTS_MAX ? ev_default_loop(EVFLAG_AUTO) : NULL;
    if (!m->loop) {
        fprintf(stderr, "drover: cannot create the event loop\n");
        config_free(cfg);
        return MASTER_EXIT_STARTUP;
    }
    m->started_at = ev_now(m->loop); /* or the first image's, when one hands over */
    log_attach(m->loop);
    sweep_init(&m->sweep, m->loop);
    m->shutdowns = (struct shutdown_set){m->loop, NULL};
    m->state = MASTER_STARTING;
    apporder_init(&m->order, &m->apps, &m->n_apps, &m->running, &m->sweep);
    if (master_setup(m) < 0) {
        master_give_back(m, "the new image could not set up what it was handed");
        goto out;
    }
    log_info("drover %s %s (pid %d, %zu app%s)", drover_version,
             handover_incoming() ? (handover_given_back() ? "is back" : "took over") : "started",
             (int)getpid(), m->n_apps, m->n_apps == 1 ? "" : "s");
    m->state = MASTER_RUNNING;
    m->running = true;
    if (handover_incoming()) {
        if (master_resume(m) < 0) {
            goto out;
        }
    } else {
        for (size_t i = 0; i < m->n_apps; i++) {
            if (m->apps[i]->state == APP_STOPPED && !m->apps[i]->waiting_for[0]) {
                /* bound by app_new: nothing can fail; a dependency may have started it */
                (void)apporder_start(&m->order, m->apps[i], NULL);
            }
        }
    }
    ev_run(m->loop, 0);
    orphans_kill();
    status = m->forced ? MASTER_EXIT_FORCED : MASTER_EXIT_CLEAN;
    log_info("drover stopped%s", m->forced ? " (forced)" : "");
out:
    master_teardown(m);
    return status;
}
