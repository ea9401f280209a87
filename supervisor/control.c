/*
 * control: the control socket. See control.h.
 *
 * Reading order: control_open() makes the socket; control_on_accept() checks each peer with
 * SO_PEERCRED and makes a client; client_on_read() frames lines (wire_lines, 64 KiB limit) and
 * hands each to client_handle(), which answers at once (status, logs, errors) or parks the
 * client (scale, start, stop APP) until control_on_app_changed() finds the app where it was
 * asked to be. Replies only ever go into the client's output buffer; client_on_write() sends
 * them. That split is what keeps this module safe to call from anywhere: a handler, a parked
 * check or a log follower never writes to a socket and so never meets an error that would free
 * a client under its caller. A client is freed only from its own watcher callbacks, or by
 * control_close().
 *
 * Bounds: at most CONTROL_CLIENTS_MAX clients; input per client bounded by the framer; output
 * per client bounded (a reply that cannot be queued ends the client; a `logs -f` line that
 * cannot be queued is dropped and counted, and the follower is told how many it missed); a
 * client that neither asks nor reads for CONTROL_IDLE_TIMEOUT seconds is disconnected. A client
 * that waits on us (a parked request, a quiet follow) is not idle.
 */
#include "control.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "app.h"
#include "listener.h"
#include "log.h"
#include "logbuf.h"
#include "master.h"
#include "reload.h"
#include "status.h"
#include "wire.h"
#include "worker.h"

#define CONTROL_CLIENTS_MAX 256
#define CONTROL_BACKLOG 64
/* Connections accepted and bytes read per wakeup, so one busy client cannot starve the loop. */
#define CONTROL_ACCEPT_BUDGET 32
#define CONTROL_READ_BUDGET (128u * 1024u)
/* Output a client may leave unread: past SOFT no further request is taken from it (the next
 * waits in the kernel), past FOLLOW log lines for it are dropped, past HARD it is given up. */
#define CONTROL_OUT_SOFT (64u * 1024u)
#define CONTROL_OUT_FOLLOW (1024u * 1024u)
#define CONTROL_OUT_HARD (16u * 1024u * 1024u)
/* The recent lines one `logs` reply carries at most, whatever N asked for. */
#define CONTROL_LOGS_BYTES_MAX (8u * 1024u * 1024u)
#define CONTROL_LOGS_DEFAULT 50
#define CONTROL_IDLE_TIMEOUT 60.0
/* After running out of descriptors, accepting pauses this long instead of spinning. */
#define CONTROL_ACCEPT_PAUSE 0.5
/* As config's `workers`: a typo must not fork a million processes. */
#define CONTROL_WORKERS_MAX 1024

enum client_wait {
    WAIT_NONE,
    WAIT_SCALE_UP,      /* every slot below target has a ready worker */
    WAIT_SCALE_DOWN,    /* every worker of a slot at or above target has exited */
    WAIT_START,         /* every slot has a ready worker */
    WAIT_STOP,          /* the app is stopped */
    WAIT_FOLLOW,        /* streaming log lines until the client goes */
    WAIT_SHUTDOWN,      /* `stop` answered: held until drover closes the socket at cleanup */
    WAIT_RELOAD,        /* a reload or restart streams progress until its result */
};

struct client;

/* One followed app of a client: what logbuf hands back to client_on_log_line(). */
struct client_tap {
    struct client *cl;
    struct app *app;
};

struct client {
    struct control *c;
    struct client *next;
    int fd;
    uid_t uid;
    pid_t pid;
    ev_io read_w;
    ev_io write_w;
    ev_timer idle_w;
    ev_tstamp active_at;        /* the last byte read from or written to the client */
    struct wire_lines in;
    char *out;
    size_t out_off;             /* bytes of out already sent */
    size_t out_len;
    size_t out_cap;
    enum client_wait wait;
    struct app *app;            /* what a parked request is about */
    unsigned target;            /* scale: the slot count asked for */
    ev_tstamp wait_started;
    struct client_tap *taps;    /* logs -f: one per followed app */
    size_t n_taps;
    uint64_t dropped;           /* logs -f lines not queued since the last notice */
    bool eof;                   /* the client sent all it will send */
    bool closing;               /* close once the output is written */
    bool broken;                /* close now: output could not be queued */
};

struct control {
    struct master *m;
    struct master_observer observer;
    char *path;
    dev_t dev;
    ino_t ino;
    int fd;
    ev_io accept_w;
    ev_timer pause_w;
    struct client *clients;
    unsigned n_clients;
    ev_tstamp refused_logged_at;
};

static void client_close(struct client *cl);
static void client_check_wait(struct client *cl);
static void control_observe_app(struct master_observer *o, struct app *app);
static void control_observe_phase(struct master_observer *o, enum wire_phase phase);

static struct control *control_of(struct master_observer *o)
{
    return (struct control *)(void *)((char *)o - offsetof(struct control, observer));
}
static void client_on_log_line(const struct logbuf_line *line, void *data);

/* ---- output ---- */

static size_t client_pending(const struct client *cl)
{
    return cl->out_len - cl->out_off;
}

static void client_kick(struct client *cl)
{
    if (!ev_is_active(&cl->write_w)) {
        ev_io_start(cl->c->m->loop, &cl->write_w);
    }
}

/*
 * Appends len bytes to the client's output. Returns 0, or -ENOBUFS when that would pass limit
 * (nothing is queued), or -ENOMEM.
 */
static int client_queue(struct client *cl, const char *data, size_t len, size_t limit)
{
    if (client_pending(cl) + len > limit) {
        return -ENOBUFS;
    }
    if (cl->out_off > 0 && cl->out_len + len > cl->out_cap) {
        memmove(cl->out, cl->out + cl->out_off, client_pending(cl));
        cl->out_len -= cl->out_off;
        cl->out_off = 0;
    }
    if (cl->out_len + len > cl->out_cap) {
        size_t cap = cl->out_cap ? cl->out_cap : 4096;
        while (cap < cl->out_len + len) {
            cap *= 2;
        }
        char *out = realloc(cl->out, cap);
        if (!out) {
            return -ENOMEM;
        }
        cl->out = out;
        cl->out_cap = cap;
    }
    memcpy(cl->out + cl->out_len, data, len);
    cl->out_len += len;
    client_kick(cl);
    return 0;
}

/* One JSON object as one line; NULL on allocation failure. */
static char *control_dump(const json_t *obj, size_t *ret_len)
{
    char *text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
    if (!text) {
        return NULL;
    }
    size_t n = strlen(text);
    char *line = realloc(text, n + 2);
    if (!line) {
        free(text);
        return NULL;
    }
    line[n] = '\n';
    line[n + 1] = '\0';
    *ret_len = n + 1;
    return line;
}

/* Queues obj (stolen) as a reply line. A reply that cannot be queued ends the client: it would
 * otherwise wait for an answer that never comes. */
static void client_reply(struct client *cl, json_t *obj)
{
    size_t len = 0;
    char *line = obj ? control_dump(obj, &len) : NULL;
    json_decref(obj);
    if (!line || client_queue(cl, line, len, CONTROL_OUT_HARD) < 0) {
        cl->broken = true;
        client_kick(cl);
    }
    free(line);
}

static void client_fail(struct client *cl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void client_fail(struct client *cl, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* The message may quote the config file or a request, bytes that need not be UTF-8. */
    client_reply(cl, json_pack("{s:b, s:o*}", "ok", 0, "error", log_json_text(msg, strlen(msg))));
}

/* ---- status ---- */

static double control_round(double v, double unit)
{
    return round(v / unit) * unit;
}

static void control_status(struct client *cl, const struct wire_request *req)
{
    struct master *m = cl->c->m;
    ev_tstamp now = ev_time();
    json_t *apps = json_array();
    for (size_t i = 0; apps && i < m->n_apps; i++) {
        struct app *app = m->apps[i];
        if (req->app && strcmp(req->app, app->name) != 0) {
            continue;
        }
        if (json_array_append_new(apps, status_app_json(app, now)) < 0) {
            json_decref(apps);
            apps = NULL;
        }
    }
    if (!apps) {
        client_fail(cl, "out of memory");
        return;
    }
    client_reply(cl, json_pack("{s:b, s:I, s:s, s:s, s:f, s:o}", "ok", 1, "pid",
                               (json_int_t)getpid(), "version", DROVER_VERSION, "state",
                               m->state == MASTER_STOPPING ? "stopping" : "running", "uptime_s",
                               control_round(ev_now(m->loop) - m->started_at, 0.001), "apps",
                               apps));
}

/* ---- parked requests: scale, start, stop APP ---- */

static void client_park(struct client *cl, enum client_wait wait, struct app *app,
                        unsigned target)
{
    cl->wait = wait;
    cl->app = app;
    cl->target = target;
    cl->wait_started = ev_now(cl->c->m->loop);
    client_check_wait(cl);
}

/* The parked request is answered: the client may send its next one. */
static void client_unpark(struct client *cl)
{
    cl->wait = WAIT_NONE;
    cl->app = NULL;
    ev_feed_event(cl->c->m->loop, &cl->read_w, EV_READ);
}

/*
 * Whether every slot below n has a ready worker: 1 yes, 0 not yet, -1 never without help (a
 * slot waits out a backoff delay after a failed start, or has given up: restart = never), with
 * the slot in *ret_slot.
 */
static int control_slots_ready(const struct app *app, unsigned n, unsigned *ret_slot)
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

static bool control_slots_gone(const struct app *app, unsigned n)
{
    for (const struct worker *w = app->workers; w; w = w->next) {
        if (w->slot >= n) {
            return false;
        }
    }
    return true;
}

static double client_waited(const struct client *cl)
{
    return control_round(ev_now(cl->c->m->loop) - cl->wait_started, 0.001);
}

/* A request waiting for an app to get somewhere (scale, start, stop APP). */
static bool client_is_parked(const struct client *cl)
{
    return cl->wait == WAIT_SCALE_UP || cl->wait == WAIT_SCALE_DOWN || cl->wait == WAIT_START ||
           cl->wait == WAIT_STOP || cl->wait == WAIT_RELOAD;
}

/* A client that only listens from now on (logs -f, a finished `stop`): its input is ignored and
 * its EOF ends it. */
static bool client_is_listening(const struct client *cl)
{
    return cl->wait == WAIT_FOLLOW || cl->wait == WAIT_SHUTDOWN;
}

static void client_check_wait(struct client *cl)
{
    struct app *app = cl->app;
    unsigned slot = 0;
    int r;
    switch (cl->wait) {
    case WAIT_NONE:
    case WAIT_FOLLOW:
    case WAIT_SHUTDOWN:
    case WAIT_RELOAD:   /* answered by control_on_reload_report() */
        return;
    case WAIT_SCALE_UP:
    case WAIT_START:
        if (cl->c->m->state == MASTER_STOPPING) {
            client_fail(cl, "drover is shutting down");
            break;
        }
        if (app->state == APP_STOPPING || app->state == APP_STOPPED) {
            client_fail(cl, "app '%s' was stopped before its workers were ready", app->name);
            break;
        }
        if (cl->wait == WAIT_SCALE_UP && app->n_slots != cl->target) {
            client_fail(cl, "app '%s' was scaled to %u meanwhile", app->name, app->n_slots);
            break;
        }
        r = control_slots_ready(app, app->n_slots, &slot);
        if (r == 0) {
            return;
        }
        if (r < 0) {
            struct slot *s = app->slots[slot];
            if (s->fsm.state == SLOT_BACKOFF) {
                client_fail(cl, "app '%s': worker %u failed to start; restarting in %.1f s",
                            app->name, slot, ev_timer_remaining(app->host->loop, &s->restart_w));
            } else {
                client_fail(cl, "app '%s': worker %u failed to start and is not restarted",
                            app->name, slot);
            }
            break;
        }
        client_reply(cl, json_pack("{s:b, s:s, s:s, s:I, s:I, s:f}", "ok", 1, "app", app->name,
                                   "state", app_state_to_string(app->state), "workers",
                                   (json_int_t)app->n_slots, "ready",
                                   (json_int_t)app_ready_count(app), "duration_s",
                                   client_waited(cl)));
        break;
    case WAIT_SCALE_DOWN:
        if (app->n_slots == cl->target && !control_slots_gone(app, cl->target)) {
            return;
        }
        client_reply(cl, json_pack("{s:b, s:s, s:s, s:I, s:I, s:f}", "ok", 1, "app", app->name,
                                   "state", app_state_to_string(app->state), "workers",
                                   (json_int_t)app->n_slots, "ready",
                                   (json_int_t)app_ready_count(app), "duration_s",
                                   client_waited(cl)));
        break;
    case WAIT_STOP:
        if (app->state == APP_STOPPING) {
            return;
        }
        if (app->state != APP_STOPPED) {
            client_fail(cl, "app '%s' was started again before it stopped", app->name);
            break;
        }
        client_reply(cl, json_pack("{s:b, s:s, s:s, s:f}", "ok", 1, "app", app->name, "state",
                                   "stopped", "duration_s", client_waited(cl)));
        break;
    }
    client_unpark(cl);
}

void control_on_app_changed(struct control *c, struct app *app)
{
    if (!c) {
        return;
    }
    /* An app a reload removed is freed once it has stopped: nothing here may point at it. */
    bool going = app->removed && app->state == APP_STOPPED;
    for (struct client *cl = c->clients; cl; cl = cl->next) {
        if (cl->app == app && client_is_parked(cl)) {
            client_check_wait(cl);
        }
        for (size_t i = 0; going && i < cl->n_taps; i++) {
            if (cl->taps[i].app == app) {
                logbuf_unfollow(app->logbuf, client_on_log_line, &cl->taps[i]);
                cl->taps[i].app = NULL;
            }
        }
    }
}

/* ---- commands ---- */

static struct app *client_find_app(struct client *cl, const char *name)
{
    struct app *app = master_app_find(cl->c->m, name);
    if (!app) {
        client_fail(cl, "no app named '%s'", name);
    }
    return app;
}

static bool client_check_running(struct client *cl)
{
    if (cl->c->m->state != MASTER_RUNNING) {
        client_fail(cl, "drover is shutting down");
        return false;
    }
    return true;
}

/*
 * What app's state table (appstate.h) says of cmd: a refusal is answered here, with what to do
 * instead. Returns the verdict.
 */
static enum app_verdict client_verdict(struct client *cl, struct app *app, enum app_command cmd,
                                       const char *verb)
{
    enum app_verdict v = app_state_accepts(app->state, app->replacing != NULL, cmd);
    switch (v) {
    case APP_TAKE:
    case APP_ALREADY:
    case APP_KEEP:
        break;
    case APP_REFUSE_BUSY:
        client_fail(cl, "app '%s' is busy with a %s; %s it once that is done", app->name,
                    app_busy_with(app), verb);
        break;
    case APP_REFUSE_STOPPING:
        client_fail(cl, "app '%s' is stopping; %s it once it has stopped", app->name, verb);
        break;
    case APP_REFUSE_STOPPED:
        client_fail(cl, "app '%s' is not running; start it first", app->name);
        break;
    }
    return v;
}

static void control_scale(struct client *cl, const struct wire_request *req)
{
    struct app *app = client_find_app(cl, req->app);
    if (!app || !client_check_running(cl)) {
        return;
    }
    long long want = req->relative ? (long long)app->n_slots + req->count : req->count;
    if (want < 1) {
        client_fail(cl, "cannot scale app '%s' to %lld workers: at least 1 (stop it instead)",
                    app->name, want);
        return;
    }
    if (want > CONTROL_WORKERS_MAX) {
        client_fail(cl, "cannot scale app '%s' to %lld workers: at most %d", app->name, want,
                    CONTROL_WORKERS_MAX);
        return;
    }
    enum app_verdict v = client_verdict(cl, app, APP_CMD_SCALE, "scale");
    if (v != APP_TAKE && v != APP_KEEP) {
        return;
    }
    unsigned old = app->n_slots;
    int r = app_scale_to(app, (unsigned)want);
    if (r == -EBUSY) {
        client_fail(cl, "app '%s' is busy with a %s; scale it once that is done", app->name,
                    app_busy_with(app));
        return;
    }
    if (r < 0) {
        client_fail(cl, "scaling app '%s' failed: %s", app->name, strerror(-r));
        return;
    }
    if (v == APP_KEEP) {
        /* A stopped app keeps the new count for its next start. */
        client_reply(cl, json_pack("{s:b, s:s, s:s, s:I, s:I}", "ok", 1, "app", app->name,
                                   "state", app_state_to_string(app->state), "workers",
                                   (json_int_t)app->n_slots, "ready", (json_int_t)0));
        return;
    }
    client_park(cl, (unsigned)want >= old ? WAIT_SCALE_UP : WAIT_SCALE_DOWN, app,
                (unsigned)want);
}

static void control_start(struct client *cl, const struct wire_request *req)
{
    struct app *app = client_find_app(cl, req->app);
    if (!app || !client_check_running(cl)) {
        return;
    }
    enum app_verdict v = client_verdict(cl, app, APP_CMD_START, "start");
    if (v == APP_ALREADY) {
        client_reply(cl, json_pack("{s:b, s:s, s:s, s:b, s:I, s:I}", "ok", 1, "app", app->name,
                                   "state", app_state_to_string(app->state), "already", 1,
                                   "workers", (json_int_t)app->n_slots, "ready",
                                   (json_int_t)app_ready_count(app)));
        return;
    }
    if (v != APP_TAKE) {
        return;
    }
    log_record(LOG_INFO, (struct log_origin){app->name, -1, 0}, NULL,
               "starting app (droverctl, uid %d)", (int)cl->uid);
    const struct address *failed = NULL;
    int r = app_start(app, &failed);
    if (r < 0) {
        log_record(LOG_ERROR, (struct log_origin){app->name, -1, 0}, NULL,
                   "bind('%s') failed: %s", failed ? failed->text : "?", strerror(-r));
        client_fail(cl, "app '%s' cannot start: bind('%s') failed: %s", app->name,
                    failed ? failed->text : "?", strerror(-r));
        return;
    }
    client_park(cl, WAIT_START, app, app->n_slots);
}

static void control_stop_app(struct client *cl, struct app *app)
{
    if (!client_check_running(cl)) {
        return;
    }
    if (app->state == APP_STOPPED) {
        client_reply(cl, json_pack("{s:b, s:s, s:s, s:b}", "ok", 1, "app", app->name, "state",
                                   "stopped", "already", 1));
        return;
    }
    if (app->state != APP_STOPPING) {
        log_record(LOG_INFO, (struct log_origin){app->name, -1, 0}, NULL,
                   "stopping app (droverctl, uid %d)", (int)cl->uid);
        int r = app_stop(app);
        if (r < 0) {
            client_fail(cl, "stopping app '%s' failed: %s", app->name, strerror(-r));
            return;
        }
    }
    client_park(cl, WAIT_STOP, app, 0);
}

static void control_stop(struct client *cl, const struct wire_request *req)
{
    struct control *c = cl->c;
    if (req->app) {
        struct app *app = client_find_app(cl, req->app);
        if (app) {
            control_stop_app(cl, app);
        }
        return;
    }
    client_reply(cl, json_pack("{s:b, s:b, s:I}", "ok", 1, "stopping", 1, "pid",
                               (json_int_t)getpid()));
    /* droverctl waits for the end: the socket closing at cleanup tells it. Until then the client
     * is waiting on us, not idle. */
    cl->wait = WAIT_SHUTDOWN;
    if (c->m->state != MASTER_STOPPING) {
        log_info("shutdown requested (droverctl, uid %d, pid %d)", (int)cl->uid, (int)cl->pid);
        master_stop(c->m, false);
    }
}

/* ---- logs ---- */

static void control_timestamp(double ts, char *buf, size_t size)
{
    time_t sec = (time_t)ts;
    long ms = (long)((ts - (double)sec) * 1000.0);
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, size - n, ".%03ldZ", ms < 0 ? 0 : ms > 999 ? 999 : ms);
}

/* {"log":{ts, app, worker, pid, stream, msg}} as one line; NULL on allocation failure. */
static char *control_log_line(const struct app *app, const struct logbuf_line *line,
                              size_t *ret_len)
{
    char ts[40];
    control_timestamp(line->ts, ts, sizeof ts);
    json_t *rec = json_pack("{s:{s:s, s:s, s:i, s:I, s:s, s:o*}}", "log", "ts", ts, "app",
                            app->name, "worker", line->slot, "pid", (json_int_t)line->pid,
                            "stream", line->is_stderr ? "stderr" : "stdout", "msg",
                            log_json_text(line->text, line->len));
    char *text = rec ? control_dump(rec, ret_len) : NULL;
    json_decref(rec);
    return text;
}

struct control_log_item {
    double ts;
    size_t seq;
    char *text;
    size_t len;
};

struct control_log_collect {
    struct app *app;
    struct control_log_item *items;
    size_t n;
    size_t cap;
    bool failed;
};

static void control_collect_line(const struct logbuf_line *line, void *data)
{
    struct control_log_collect *lc = data;
    if (lc->failed) {
        return;
    }
    if (lc->n == lc->cap) {
        size_t cap = lc->cap ? lc->cap * 2 : 64;
        struct control_log_item *items = realloc(lc->items, cap * sizeof *items);
        if (!items) {
            lc->failed = true;
            return;
        }
        lc->items = items;
        lc->cap = cap;
    }
    struct control_log_item *it = &lc->items[lc->n];
    it->text = control_log_line(lc->app, line, &it->len);
    if (!it->text) {
        lc->failed = true;
        return;
    }
    it->ts = line->ts;
    it->seq = lc->n;
    lc->n++;
}

static int control_log_item_cmp(const void *a, const void *b)
{
    const struct control_log_item *x = a, *y = b;
    if (x->ts != y->ts) {
        return x->ts < y->ts ? -1 : 1;
    }
    return (x->seq > y->seq) - (x->seq < y->seq);
}

static void client_on_log_line(const struct logbuf_line *line, void *data)
{
    struct client_tap *tap = data;
    struct client *cl = tap->cl;
    if (cl->broken || cl->closing) {
        return;
    }
    if (cl->dropped > 0) {
        char notice[64];
        int n = snprintf(notice, sizeof notice, "{\"dropped\":%llu}\n",
                         (unsigned long long)cl->dropped);
        if (client_queue(cl, notice, (size_t)n, CONTROL_OUT_FOLLOW) < 0) {
            cl->dropped++;
            return;
        }
        cl->dropped = 0;
    }
    size_t len = 0;
    char *text = control_log_line(tap->app, line, &len);
    /* A follower that does not keep up loses lines, never the master's memory. */
    if (!text || client_queue(cl, text, len, CONTROL_OUT_FOLLOW) < 0) {
        cl->dropped++;
    }
    free(text);
}

static void client_unfollow(struct client *cl)
{
    for (size_t i = 0; i < cl->n_taps; i++) {
        struct app *app = cl->taps[i].app;
        if (app) { /* a removed app's taps are dropped when the master says so */
            logbuf_unfollow(app->logbuf, client_on_log_line, &cl->taps[i]);
        }
    }
    free(cl->taps);
    cl->taps = NULL;
    cl->n_taps = 0;
}

static void control_logs(struct client *cl, const struct wire_request *req)
{
    struct master *m = cl->c->m;
    struct app *only = NULL;
    struct control_log_collect lc = {0};
    long n = req->lines >= 0 ? req->lines : CONTROL_LOGS_DEFAULT;

    if (req->app && !(only = client_find_app(cl, req->app))) {
        return;
    }
    for (size_t i = 0; i < m->n_apps && !lc.failed; i++) {
        if (!only || m->apps[i] == only) {
            lc.app = m->apps[i];
            logbuf_foreach_last(m->apps[i]->logbuf, n, control_collect_line, &lc);
        }
    }
    if (lc.failed) {
        client_fail(cl, "out of memory");
        goto out;
    }
    /* Several apps: interleave by time and keep the last n overall. */
    if (lc.n > 1) {
        qsort(lc.items, lc.n, sizeof *lc.items, control_log_item_cmp);
    }
    size_t first = lc.n > (size_t)n ? lc.n - (size_t)n : 0;
    size_t bytes = 0;
    size_t from = lc.n;
    while (from > first && bytes + lc.items[from - 1].len <= CONTROL_LOGS_BYTES_MAX) {
        bytes += lc.items[from - 1].len;
        from--;
    }
    for (size_t i = from; i < lc.n; i++) {
        if (client_queue(cl, lc.items[i].text, lc.items[i].len, CONTROL_OUT_HARD) < 0) {
            cl->broken = true;
            goto out;
        }
    }
    if (req->follow) {
        size_t k = only ? 1 : m->n_apps;
        cl->taps = calloc(k ? k : 1, sizeof *cl->taps);
        if (!cl->taps) {
            client_fail(cl, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < m->n_apps; i++) {
            if (only && m->apps[i] != only) {
                continue;
            }
            struct client_tap *tap = &cl->taps[cl->n_taps];
            *tap = (struct client_tap){cl, m->apps[i]};
            if (logbuf_follow(m->apps[i]->logbuf, client_on_log_line, tap) < 0) {
                client_unfollow(cl);
                client_fail(cl, "out of memory");
                goto out;
            }
            cl->n_taps++;
        }
        cl->wait = WAIT_FOLLOW;
    }
    client_reply(cl, json_pack("{s:b, s:I, s:I, s:b}", "ok", 1, "lines",
                               (json_int_t)(lc.n - from), "truncated", (json_int_t)(from - first),
                               "follow", req->follow));
out:
    for (size_t i = 0; i < lc.n; i++) {
        free(lc.items[i].text);
    }
    free(lc.items);
}

/* ---- reload, restart, metrics ---- */

/* Progress lines stream to the client; the final result is its reply. A progress line that
 * does not fit the client's buffer is dropped rather than ending the client: the result is
 * what matters. */
static void control_on_reload_report(json_t *msg, bool final, void *data)
{
    struct client *cl = data;
    if (!final) {
        size_t len = 0;
        char *line = control_dump(msg, &len);
        if (line) {
            (void)client_queue(cl, line, len, CONTROL_OUT_SOFT);
        }
        free(line);
        return;
    }
    client_reply(cl, json_incref(msg));
    client_unpark(cl);
}

/* The client is going: nobody is left to report to. */
static void control_forget_reports(struct client *cl)
{
    master_forget(cl->c->m, cl);
    reload_forget(cl);
}

static void control_reload(struct client *cl, const struct wire_request *req)
{
    if (!client_check_running(cl)) {
        return;
    }
    char *why = NULL;
    int r = master_reload(cl->c->m, req->app, control_on_reload_report, cl, &why);
    if (r < 0) {
        client_fail(cl, "%s", why ? why : strerror(-r));
    } else {
        cl->wait = WAIT_RELOAD; /* the reports come from a later loop turn */
        cl->wait_started = ev_now(cl->c->m->loop);
    }
    free(why);
}

static void control_restart(struct client *cl, const struct wire_request *req)
{
    struct app *app = client_find_app(cl, req->app);
    if (!app || !client_check_running(cl)) {
        return;
    }
    unsigned slot = req->slot >= 0 ? (unsigned)req->slot : 0;
    if (req->slot >= 0 && slot >= app->n_slots) {
        client_fail(cl, "app '%s' has no slot %d (it has %u)", app->name, req->slot,
                    app->n_slots);
        return;
    }
    if (client_verdict(cl, app, APP_CMD_RESTART, "restart") != APP_TAKE) {
        return;
    }
    log_record(LOG_INFO, (struct log_origin){app->name, req->slot, 0}, NULL,
               "restart requested (droverctl, uid %d)", (int)cl->uid);
    int r = reload_start(app, NULL, NULL, req->slot >= 0 ? &slot : NULL, req->slot >= 0 ? 1 : 0,
                         WORKER_REASON_MANUAL, control_on_reload_report, cl, NULL);
    if (r < 0) {
        client_fail(cl, "%s", r == -EBUSY ? "a reload or restart of this app is already running"
                              : r == -EINVAL ? "the app is not running"
                                             : strerror(-r));
        return;
    }
    cl->wait = WAIT_RELOAD; /* the reports come from a later loop turn */
    cl->wait_started = ev_now(cl->c->m->loop);
}

static void control_metrics(struct client *cl, const struct wire_request *req)
{
    const char *format = req->format ? req->format : "text";
    char *body = NULL;
    size_t len = 0;
    int r = admin_render_metrics(cl->c->m, format, &body, &len);
    if (r < 0) {
        client_fail(cl, "%s", r == -EINVAL ? "format must be text or json" : strerror(-r));
        return;
    }
    client_reply(cl, json_pack("{s:b, s:s, s:s%}", "ok", 1, "format", format, "body", body,
                               len));
    free(body);
}

static bool control_is_blank(const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r') {
            return false;
        }
    }
    return true;
}

static void client_handle(struct client *cl, const char *line, size_t len)
{
    struct wire_request req;
    const char *error = NULL;
    if (control_is_blank(line, len)) {
        return; /* someone typing at socat pressed enter */
    }
    int r = wire_request_parse(line, len, &req, &error);
    if (r < 0) {
        client_fail(cl, "%s", error ? error : "invalid request");
        return;
    }
    switch (req.cmd) {
    case WIRE_CMD_STATUS:
        if (!req.app || client_find_app(cl, req.app)) {
            control_status(cl, &req);
        }
        break;
    case WIRE_CMD_SCALE:
        control_scale(cl, &req);
        break;
    case WIRE_CMD_START:
        control_start(cl, &req);
        break;
    case WIRE_CMD_STOP:
        control_stop(cl, &req);
        break;
    case WIRE_CMD_LOGS:
        control_logs(cl, &req);
        break;
    case WIRE_CMD_RELOAD:
        control_reload(cl, &req);
        break;
    case WIRE_CMD_RESTART:
        control_restart(cl, &req);
        break;
    case WIRE_CMD_METRICS:
        control_metrics(cl, &req);
        break;
    case WIRE_CMD_COUNT:
        client_fail(cl, "invalid request");
        break;
    }
    wire_request_done(&req);
}

/* ---- client I/O ---- */

/* Whether the client's next request may be taken now: one at a time, and not while it leaves
 * a pile of replies unread. */
static bool client_may_take(const struct client *cl)
{
    return cl->wait == WAIT_NONE && !cl->closing && !cl->broken &&
           client_pending(cl) < CONTROL_OUT_SOFT;
}

/* Handles the complete lines buffered; a partial line past the limit ends the client. */
static void client_take_lines(struct client *cl)
{
    while (client_may_take(cl)) {
        const char *line;
        size_t len;
        int r = wire_lines_next(&cl->in, &line, &len);
        if (r == 0) {
            return;
        }
        if (r < 0) {
            client_fail(cl, "request too long (over %u bytes)", WIRE_CONTROL_LINE_MAX);
            cl->closing = true;
            return;
        }
        client_handle(cl, line, len);
    }
}

/* After EOF: a last request without its newline still counts (echo -n ... | socat). */
static void client_take_last(struct client *cl)
{
    struct wire_lines *in = &cl->in;
    if (!client_may_take(cl) || in->len <= in->start) {
        return;
    }
    const char *line = in->buf + in->start;
    size_t len = in->len - in->start;
    in->start = in->len;
    in->scan = in->len;
    if (len > WIRE_CONTROL_LINE_MAX) {
        client_fail(cl, "request too long (over %u bytes)", WIRE_CONTROL_LINE_MAX);
        return;
    }
    client_handle(cl, line, len);
}

/* Whether the client has nothing left to do here: it sent all it will and got all it asked. */
static bool client_is_done(const struct client *cl)
{
    if (cl->broken) {
        return true;
    }
    if (client_pending(cl) > 0 || client_is_parked(cl)) {
        return false;
    }
    if (cl->closing) {
        return true;
    }
    /* EOF ends a follow (the reader is gone), and a client whose requests are all answered. */
    return cl->eof && (client_is_listening(cl) || cl->in.len <= cl->in.start);
}

static void client_on_read(struct ev_loop *loop, ev_io *io, int revents)
{
    struct client *cl = io->data;
    size_t budget = CONTROL_READ_BUDGET;

    client_take_lines(cl);
    while (budget > 0 && !cl->eof && !cl->closing && !cl->broken) {
        size_t room = 0;
        char *p = wire_lines_space(&cl->in, &room);
        if (!p) {
            if (client_is_listening(cl)) {
                /* Input after logs -f or stop is ignored; reading goes on to see EOF. */
                wire_lines_done(&cl->in);
                continue;
            }
            if (client_is_parked(cl) || client_pending(cl) >= CONTROL_OUT_SOFT) {
                /* Requests queued behind a parked one, or sent by a client that does not read
                 * its replies: leave the rest in the kernel until it is their turn. */
                ev_io_stop(loop, &cl->read_w);
                break;
            }
            client_fail(cl, "request too long (over %u bytes)", WIRE_CONTROL_LINE_MAX);
            cl->closing = true;
            break;
        }
        if (room > budget) {
            room = budget;
        }
        ssize_t n = read(cl->fd, p, room);
        if (n == -1 && errno == EINTR) {
            continue;
        }
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        if (n <= 0) {
            /* EOF, or an error (ECONNRESET): either way nothing more comes. */
            cl->eof = true;
            ev_io_stop(loop, &cl->read_w);
            if (n < 0) {
                cl->broken = true;
            }
            break;
        }
        wire_lines_commit(&cl->in, (size_t)n);
        cl->active_at = ev_now(loop);
        budget -= (size_t)n;
        client_take_lines(cl);
    }
    if (cl->eof) {
        client_take_lines(cl);
        client_take_last(cl);
    }
    if (client_is_done(cl)) {
        client_close(cl);
        return;
    }
    if (!cl->eof && !cl->closing && !ev_is_active(&cl->read_w) &&
        (client_may_take(cl) || client_is_listening(cl))) {
        ev_io_start(loop, &cl->read_w);
    }
}

static void client_on_write(struct ev_loop *loop, ev_io *io, int revents)
{
    struct client *cl = io->data;
    while (!cl->broken && client_pending(cl) > 0) {
        ssize_t n = send(cl->fd, cl->out + cl->out_off, client_pending(cl),
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == -1 && errno == EINTR) {
            continue;
        }
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (n <= 0) {
            cl->broken = true; /* EPIPE, ECONNRESET: the reader is gone */
            break;
        }
        cl->out_off += (size_t)n;
        cl->active_at = ev_now(loop);
    }
    if (!cl->broken) {
        cl->out_off = cl->out_len = 0;
        ev_io_stop(loop, &cl->write_w);
        if (cl->out_cap > CONTROL_OUT_SOFT) {
            /* A large reply went out; an idle client does not keep its buffer. */
            free(cl->out);
            cl->out = NULL;
            cl->out_cap = 0;
        }
    }
    if (client_is_done(cl)) {
        client_close(cl);
        return;
    }
    /* The output that held requests back is gone: take the next ones. */
    if (client_may_take(cl)) {
        ev_feed_event(loop, &cl->read_w, EV_READ);
    }
}

static void client_on_idle(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct client *cl = t->data;
    ev_tstamp now = ev_now(loop);
    bool waiting_on_us = cl->wait != WAIT_NONE && client_pending(cl) == 0;
    if (waiting_on_us) {
        cl->active_at = now;
    }
    ev_tstamp left = cl->active_at + CONTROL_IDLE_TIMEOUT - now;
    if (left > 0) {
        t->repeat = left;
        ev_timer_again(loop, t);
        return;
    }
    client_close(cl);
}

static void client_close(struct client *cl)
{
    struct control *c = cl->c;
    struct ev_loop *loop = c->m->loop;
    for (struct client **p = &c->clients; *p; p = &(*p)->next) {
        if (*p == cl) {
            *p = cl->next;
            break;
        }
    }
    c->n_clients--;
    /* Stopping a watcher also drops an event fed to it, so nothing fires for a freed client. */
    ev_io_stop(loop, &cl->read_w);
    ev_io_stop(loop, &cl->write_w);
    ev_timer_stop(loop, &cl->idle_w);
    client_unfollow(cl);
    if (cl->wait == WAIT_RELOAD) {
        control_forget_reports(cl);
    }
    close(cl->fd);
    wire_lines_done(&cl->in);
    free(cl->out);
    free(cl);
}

/* ---- accepting ---- */

/* A peer that may not stay: one best-effort line, then the door. */
static void control_refuse(int fd, const char *error)
{
    char line[128];
    int n = snprintf(line, sizeof line, "{\"ok\":false,\"error\":\"%s\"}\n", error);
    (void)send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    close(fd);
}

static void control_client_new(struct control *c, int fd, const struct ucred *cred)
{
    struct ev_loop *loop = c->m->loop;
    struct client *cl = calloc(1, sizeof *cl);
    if (!cl) {
        control_refuse(fd, "out of memory");
        return;
    }
    cl->c = c;
    cl->fd = fd;
    cl->uid = cred->uid;
    cl->pid = cred->pid;
    cl->active_at = ev_now(loop);
    wire_lines_init(&cl->in, WIRE_CONTROL_LINE_MAX);
    ev_io_init(&cl->read_w, client_on_read, fd, EV_READ);
    cl->read_w.data = cl;
    ev_io_init(&cl->write_w, client_on_write, fd, EV_WRITE);
    cl->write_w.data = cl;
    ev_init(&cl->idle_w, client_on_idle);
    cl->idle_w.repeat = CONTROL_IDLE_TIMEOUT;
    cl->idle_w.data = cl;
    ev_timer_again(loop, &cl->idle_w);
    ev_io_start(loop, &cl->read_w);
    cl->next = c->clients;
    c->clients = cl;
    c->n_clients++;
}

static void control_on_pause(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct control *c = t->data;
    ev_io_start(loop, &c->accept_w);
}

static void control_on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
    struct control *c = io->data;
    for (int i = 0; i < CONTROL_ACCEPT_BUDGET; i++) {
        int fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd == -1) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* The connection stays in the backlog; try again shortly rather than spin. */
                log_warn("control socket: accept4() failed: %s; pausing for %.1f s",
                         strerror(errno), CONTROL_ACCEPT_PAUSE);
                ev_io_stop(loop, &c->accept_w);
                ev_timer_set(&c->pause_w, CONTROL_ACCEPT_PAUSE, 0.);
                ev_timer_start(loop, &c->pause_w);
            }
            return;
        }
        /* Whatever the file's mode says, only our own uid and root may talk. */
        struct ucred cred;
        socklen_t len = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1 || len != sizeof cred) {
            control_refuse(fd, "permission denied");
            continue;
        }
        if (cred.uid != geteuid() && cred.uid != 0) {
            /* At most one record per few seconds, so a refused peer cannot flood the log. */
            if (ev_now(loop) - c->refused_logged_at >= 5.0) {
                c->refused_logged_at = ev_now(loop);
                log_warn("control socket: refused a client of uid %d (pid %d): permission denied",
                         (int)cred.uid, (int)cred.pid);
            }
            control_refuse(fd, "permission denied");
            continue;
        }
        if (c->n_clients >= CONTROL_CLIENTS_MAX) {
            control_refuse(fd, "too many control clients");
            continue;
        }
        control_client_new(c, fd, &cred);
    }
}

/* ---- the socket ---- */

/* Creates the missing directories above path, mode 0700: the socket's directory is private. */
static int control_mkparents(const char *path, char **ret_failed)
{
    char *dir = strdup(path);
    int r = 0;
    if (!dir) {
        return -ENOMEM;
    }
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) {
        goto out; /* the working directory or / */
    }
    *slash = '\0';
    struct stat st;
    if (stat(dir, &st) == 0) {
        r = S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
        goto out;
    }
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/') {
            continue;
        }
        *p = '\0';
        if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
            r = -errno;
            goto out;
        }
        *p = '/';
    }
    if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
        r = -errno;
    }
out:
    if (r < 0) {
        *ret_failed = dir;
        dir = NULL;
    }
    free(dir);
    return r;
}

int control_open(struct master *m, struct control **ret)
{
    const char *path = m->cfg->control_socket;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    struct control *c = NULL;
    char *failed_dir = NULL;
    bool bound = false;
    int fd = -1;
    int r;

    if (strlen(path) >= sizeof sun.sun_path) {
        r = -ENAMETOOLONG;
        log_error("control socket '%s': path too long for a Unix socket", path);
        goto out;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    r = control_mkparents(path, &failed_dir);
    if (r < 0) {
        log_error("mkdir('%s') for the control socket failed: %s",
                  failed_dir ? failed_dir : path, strerror(-r));
        goto out;
    }
    r = listener_clear_stale_unix(path);
    if (r == -EADDRINUSE) {
        log_error("another drover is running at %s", path);
        goto out;
    }
    if (r < 0) {
        log_error("control socket '%s': %s", path,
                  r == -EEXIST ? "the path exists and is not a socket" : strerror(-r));
        goto out;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd == -1) {
        r = -errno;
        log_error("socket(AF_UNIX) for the control socket failed: %s", strerror(-r));
        goto out;
    }
    /* The file is born 0600: no moment exists in which another user could connect. drover is
     * single-threaded here, so borrowing the process umask is safe. */
    mode_t old_mask = umask(0177);
    int b = bind(fd, (struct sockaddr *)&sun, sizeof sun);
    int bind_errno = errno;
    umask(old_mask);
    if (b == -1) {
        r = -bind_errno;
        /* Two drovers starting at once both found the path free; the second loses here. */
        if (r == -EADDRINUSE) {
            log_error("another drover is running at %s", path);
        } else {
            log_error("bind('%s') failed: %s", path, strerror(-r));
        }
        goto out;
    }
    bound = true;
    struct stat st;
    if (chmod(path, 0600) == -1 || stat(path, &st) == -1) {
        r = -errno;
        log_error("chmod('%s', 0600) failed: %s", path, strerror(-r));
        goto out;
    }
    if (listen(fd, CONTROL_BACKLOG) == -1) {
        r = -errno;
        log_error("listen('%s') failed: %s", path, strerror(-r));
        goto out;
    }
    c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(path))) {
        r = -ENOMEM;
        log_error("control socket: out of memory");
        goto out;
    }
    c->m = m;
    c->fd = fd;
    c->dev = st.st_dev;
    c->ino = st.st_ino;
    c->refused_logged_at = -1e9;
    ev_io_init(&c->accept_w, control_on_accept, fd, EV_READ);
    c->accept_w.data = c;
    ev_io_start(m->loop, &c->accept_w);
    ev_init(&c->pause_w, control_on_pause);
    c->pause_w.data = c;
    c->observer.on_app_changed = control_observe_app;
    c->observer.on_phase = control_observe_phase;
    master_observe(m, &c->observer);
    *ret = c;
    c = NULL;
    fd = -1;
    bound = false;
    r = 0;
out:
    if (c) {
        free(c->path);
        free(c);
    }
    if (bound) {
        unlink(path);
    }
    if (fd != -1) {
        close(fd);
    }
    free(failed_dir);
    return r;
}

/* Closes every client and the socket, and removes the socket file; the struct stays until
 * control_close(). Idempotent. */
static void control_shutdown(struct control *c)
{
    if (c->fd == -1) {
        return;
    }
    struct ev_loop *loop = c->m->loop;
    while (c->clients) {
        struct client *cl = c->clients;
        /* client_close() below unlinks the head; the analyzer does not follow that. */
        if (client_is_parked(cl)) { /* NOLINT(clang-analyzer-unix.Malloc) */
            client_fail(cl, "drover is shutting down");
        }
        /* One last non-blocking try, so an answer already given (`stop`) reaches its reader. */
        if (client_pending(cl) > 0) {
            (void)send(cl->fd, cl->out + cl->out_off, client_pending(cl),
                       MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        client_close(cl);
    }
    ev_io_stop(loop, &c->accept_w);
    ev_timer_stop(loop, &c->pause_w);
    close(c->fd);
    c->fd = -1;
    /* Remove the file only if it is still ours: never another drover's socket. */
    struct stat st;
    if (stat(c->path, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino) {
        unlink(c->path);
    }
}

void control_close(struct control *c)
{
    if (!c) {
        return;
    }
    control_shutdown(c);
    master_unobserve(c->m, &c->observer);
    free(c->path);
    free(c);
}

static void control_observe_app(struct master_observer *o, struct app *app)
{
    control_on_app_changed(control_of(o), app);
}

/* cleanup (SPEC section 5): the master's sockets and files go. droverctl stop sees the socket
 * close and knows the shutdown has come this far. */
static void control_observe_phase(struct master_observer *o, enum wire_phase phase)
{
    if (phase == WIRE_PHASE_CLEANUP) {
        control_shutdown(control_of(o));
    }
}
