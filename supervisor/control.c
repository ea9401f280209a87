/*
 * control: the control socket's commands. See control.h.
 *
 * Reading order: control_open() opens the socket through ctlsock (the connection layer: peers,
 * framing, buffers, pacing); each request line comes to client_handle(), which answers at once
 * (status, logs, metrics, a request naming no app) or hands the command to the object that
 * carries it out and parks the client until that object answers from a later loop turn: an
 * intent (scale, start, stop APP; intent.h), a reload run (restart; reload.h) or a reload
 * request (reload; reconfig.h).
 * Replies only ever go into the connection's output buffer: no handler meets a socket error
 * that would free a client under its caller.
 *
 * Bounds: the connection layer's (clients, input, output, idleness); a `logs -f` line that
 * cannot be queued is dropped and counted, and the follower is told how many it missed.
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
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "app.h"
#include "bytebuf.h"
#include "ctlsock.h"
#include "events.h"
#include "intent.h"
#include "log.h"
#include "version.h"
#include "logbuf.h"
#include "master.h"
#include "reconfig.h"
#include "reload.h"
#include "handover.h"
#include "upgrade.h"
#include "status.h"
#include "wire.h"
#include "worker.h"

/* The recent lines one `logs` reply carries at most, whatever N asked for. */
#define CONTROL_LOGS_BYTES_MAX (8u * 1024u * 1024u)
#define CONTROL_LOGS_DEFAULT 50

enum client_wait {
    WAIT_NONE,
    WAIT_INTENT,        /* scale, start or stop APP: its intent answers */
    WAIT_FOLLOW,        /* streaming log lines until the client goes */
    WAIT_SHUTDOWN,      /* `stop` answered: held until drover closes the socket at cleanup */
    WAIT_RELOAD,        /* a reload or restart streams progress until its result */
    WAIT_UPGRADE,       /* an upgrade: answered by this image or by the next one */
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
    struct ctlconn *cn;         /* its connection (ctlsock.h) */
    enum client_wait wait;
    struct intent *intent;      /* WAIT_INTENT: what the client waits for */
    struct client_tap *taps;    /* logs -f: one per followed app */
    size_t n_taps;
    uint64_t dropped;           /* logs -f lines not queued since the last notice */
    struct event_follower events_tap;   /* events -f, when events_tap.fn is set */
    uint64_t events_lost;       /* events -f: not queued since the last notice */
};

struct control {
    struct master *m;
    struct master_observer observer;
    struct ctlsock *sock;
    struct intents *intents;
    struct client *clients;
};

static void control_observe_app(struct master_observer *o, struct app *app);
static void control_observe_phase(struct master_observer *o, enum wire_phase phase);

static struct control *control_of(struct master_observer *o)
{
    return (struct control *)(void *)((char *)o - offsetof(struct control, observer));
}
static void client_on_log_line(const struct logbuf_line *line, void *data);

/* ---- output ---- */

static int client_queue(struct client *cl, const char *data, size_t len, size_t limit)
{
    return ctlconn_queue(cl->cn, data, len, limit);
}

/* One JSON object as one line; NULL on allocation failure. */
static char *control_dump(const json_t *obj, size_t *ret_len)
{
    return json_line_dump(obj, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12),
                          ret_len);
}

/* Queues obj (stolen) as a reply line. A reply that cannot be queued ends the client: it would
 * otherwise wait for an answer that never comes. */
static void client_reply(struct client *cl, json_t *obj)
{
    size_t len = 0;
    char *line = obj ? control_dump(obj, &len) : NULL;
    json_decref(obj);
    if (!line || client_queue(cl, line, len, CTLCONN_OUT_HARD) < 0) {
        ctlconn_break(cl->cn);
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
                               (json_int_t)getpid(), "version", drover_version, "state",
                               m->state == MASTER_STOPPING ? "stopping" : "running", "uptime_s",
                               control_round(ev_now(m->loop) - m->started_at, 0.001), "apps",
                               apps));
}

/* ---- scale, start, stop APP: intents (intent.h) ---- */

/* The request is answered: the client may send its next one. */
static void client_unpark(struct client *cl)
{
    cl->wait = WAIT_NONE;
    ctlconn_resume(cl->cn);
}

/* A request waiting for its answer (an intent, a reload or restart). */
static bool client_is_parked(const struct client *cl)
{
    return cl->wait == WAIT_INTENT || cl->wait == WAIT_RELOAD || cl->wait == WAIT_UPGRADE;
}

/* A client that only listens from now on (logs -f, a finished `stop`): its input is ignored and
 * its EOF ends it. */
static bool client_is_listening(const struct client *cl)
{
    return cl->wait == WAIT_FOLLOW || cl->wait == WAIT_SHUTDOWN;
}

static void client_on_intent_done(json_t *reply, void *data)
{
    struct client *cl = data;
    cl->intent = NULL;
    client_reply(cl, json_incref(reply));
    client_unpark(cl);
}

static void client_submit(struct client *cl, const struct intent_request *req)
{
    char who[64];
    snprintf(who, sizeof who, "droverctl, uid %d", (int)ctlconn_uid(cl->cn));
    struct intent_request r = *req;
    r.who = who;
    cl->intent = intent_submit(cl->c->intents, &r, client_on_intent_done, cl);
    if (!cl->intent) {
        client_fail(cl, "out of memory");
        return;
    }
    cl->wait = WAIT_INTENT;
}

void control_on_app_changed(struct control *c, struct app *app)
{
    if (!c) {
        return;
    }
    /* An app a reload removed is freed once it has stopped: nothing here may point at it. */
    if (!app->removed || app->state != APP_STOPPED) {
        return;
    }
    for (struct client *cl = c->clients; cl; cl = cl->next) {
        for (size_t i = 0; i < cl->n_taps; i++) {
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

static void control_scale(struct client *cl, const struct wire_request *req)
{
    struct app *app = client_find_app(cl, req->app);
    if (app && client_check_running(cl)) {
        client_submit(cl, &(struct intent_request){.kind = INTENT_SCALE, .app = app,
                                                   .count = req->count,
                                                   .relative = req->relative,
                                                   .automatic = req->automatic});
    }
}

static void control_start(struct client *cl, const struct wire_request *req)
{
    struct app *app = client_find_app(cl, req->app);
    if (app && client_check_running(cl)) {
        client_submit(cl, &(struct intent_request){.kind = INTENT_START, .app = app});
    }
}

static void control_stop(struct client *cl, const struct wire_request *req)
{
    struct control *c = cl->c;
    if (req->app) {
        struct app *app = client_find_app(cl, req->app);
        if (app && client_check_running(cl)) {
            client_submit(cl, &(struct intent_request){.kind = INTENT_STOP, .app = app});
        }
        return;
    }
    client_reply(cl, json_pack("{s:b, s:b, s:I}", "ok", 1, "stopping", 1, "pid",
                               (json_int_t)getpid()));
    /* droverctl waits for the end: the socket closing at cleanup tells it. Until then the client
     * is waiting on us, not idle. */
    cl->wait = WAIT_SHUTDOWN;
    if (c->m->state != MASTER_STOPPING) {
        log_info("shutdown requested (droverctl, uid %d, pid %d)", (int)ctlconn_uid(cl->cn), (int)ctlconn_pid(cl->cn));
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

/* A follower that missed *missed lines is told so ({"KEY":N}) before the next one. Returns
 * whether the notice is queued (or none was owed); when it cannot be, the line that follows is
 * missed too and counted. */
static bool client_tell_missed(struct client *cl, const char *key, uint64_t *missed)
{
    if (*missed == 0) {
        return true;
    }
    char notice[64];
    int n = snprintf(notice, sizeof notice, "{\"%s\":%llu}\n", key,
                     (unsigned long long)*missed);
    if (client_queue(cl, notice, (size_t)n, CTLCONN_OUT_FOLLOW) < 0) {
        (*missed)++;
        return false;
    }
    *missed = 0;
    return true;
}

static void client_on_log_line(const struct logbuf_line *line, void *data)
{
    struct client_tap *tap = data;
    struct client *cl = tap->cl;
    if (ctlconn_is_going(cl->cn)) {
        return;
    }
    if (!client_tell_missed(cl, "dropped", &cl->dropped)) {
        return;
    }
    size_t len = 0;
    char *text = control_log_line(tap->app, line, &len);
    /* A follower that does not keep up loses lines, never the master's memory. */
    if (!text || client_queue(cl, text, len, CTLCONN_OUT_FOLLOW) < 0) {
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
        if (client_queue(cl, lc.items[i].text, lc.items[i].len, CTLCONN_OUT_HARD) < 0) {
            ctlconn_break(cl->cn);
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

/* ---- events ---- */

/* {"event":EVENT}, one line. */
static int client_queue_event(struct client *cl, const struct event *ev, size_t limit)
{
    static const char head[] = "{\"event\":";
    size_t body = ev->len - 1; /* without its newline */
    char *line = malloc(sizeof head - 1 + body + 2);
    if (!line) {
        return -ENOMEM;
    }
    memcpy(line, head, sizeof head - 1);
    memcpy(line + sizeof head - 1, ev->line, body);
    memcpy(line + sizeof head - 1 + body, "}\n", 2);
    int r = client_queue(cl, line, sizeof head - 1 + body + 2, limit);
    free(line);
    return r;
}

static void client_on_event(const struct event *ev, void *data)
{
    struct client *cl = data;
    if (ctlconn_is_going(cl->cn)) {
        return;
    }
    if (!client_tell_missed(cl, "lost", &cl->events_lost)) {
        return;
    }
    /* A follower that does not keep up loses events, and is told how many; never the master's
     * memory. */
    if (client_queue_event(cl, ev, CTLCONN_OUT_FOLLOW) < 0) {
        cl->events_lost++;
    }
}

struct control_events_replay {
    struct client *cl;
    size_t n;
    bool failed;
};

static void control_replay_event(const struct event *ev, void *data)
{
    struct control_events_replay *er = data;
    if (!er->failed && client_queue_event(er->cl, ev, CTLCONN_OUT_HARD) < 0) {
        er->failed = true;
    }
    er->n++;
}

static void control_events(struct client *cl, const struct wire_request *req)
{
    struct control_events_replay er = {cl, 0, false};
    uint64_t lost = events_foreach_since((uint64_t)req->since, control_replay_event, &er);
    if (er.failed) {
        ctlconn_break(cl->cn);
        return;
    }
    if (req->follow) {
        cl->events_tap = (struct event_follower){.fn = client_on_event, .data = cl};
        events_follow(&cl->events_tap);
        cl->wait = WAIT_FOLLOW;
    }
    client_reply(cl, json_pack("{s:b, s:I, s:I, s:I, s:b}", "ok", 1, "events", (json_int_t)er.n,
                               "lost", (json_int_t)lost, "last_seq",
                               (json_int_t)events_last_seq(), "follow", req->follow));
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
            (void)client_queue(cl, line, len, CTLCONN_OUT_SOFT);
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
    reconfig_forget(cl->c->m, cl);
    reload_forget(cl);
}

static void control_reload(struct client *cl, const struct wire_request *req)
{
    if (!client_check_running(cl)) {
        return;
    }
    char *why = NULL;
    if (req->dry_run) {
        json_t *res = NULL;
        int r = reconfig_dry_run(cl->c->m, req->app, &res, &why);
        if (r < 0) {
            client_fail(cl, "%s", why ? why : strerror(-r));
        } else {
            client_reply(cl, res);
        }
        free(why);
        return;
    }
    int r = reconfig_reload(cl->c->m, req->app, control_on_reload_report, cl, &why);
    if (r < 0) {
        client_fail(cl, "%s", why ? why : strerror(-r));
    } else {
        cl->wait = WAIT_RELOAD; /* the reports come from a later loop turn */
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
    char why[256];
    if (app_judge(app, APP_CMD_RESTART, "restart", why, sizeof why) != APP_TAKE) {
        client_fail(cl, "%s", why);
        return;
    }
    log_record(LOG_INFO, (struct log_origin){app->name, req->slot, 0}, NULL,
               "restart requested (droverctl, uid %d)", (int)ctlconn_uid(cl->cn));
    int r = reload_start(app, NULL, NULL, req->slot >= 0 ? &slot : NULL, req->slot >= 0 ? 1 : 0,
                         WORKER_REASON_MANUAL, control_on_reload_report, cl, NULL);
    if (r < 0) {
        client_fail(cl, "%s", r == -EBUSY ? "a reload or restart of this app is already running"
                              : r == -EINVAL ? "the app is not running"
                                             : strerror(-r));
        return;
    }
    cl->wait = WAIT_RELOAD; /* the reports come from a later loop turn */
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

/* ---- upgrade in place (SPEC section 12) ---- */

static void control_on_upgrade_answer(void *asker, json_t *reply)
{
    struct client *cl = asker;
    client_reply(cl, json_incref(reply));
    client_unpark(cl);
}

static void control_upgrade(struct client *cl, const struct wire_request *req)
{
    char *why = NULL;
    int r = upgrade_request(cl->c->m, req->binary, control_on_upgrade_answer, cl, &why);
    if (r < 0) {
        client_fail(cl, "%s", why ? why : strerror(-r));
    } else {
        cl->wait = WAIT_UPGRADE;
    }
    free(why);
}

int control_save(struct control *c, struct handover *h)
{
    json_t *keep = json_array();
    json_t *saved = json_pack("{s:o, s:o}", "listen", handover_fd(h, ctlsock_fd(c->sock)),
                              "clients", keep);
    for (struct client *cl = c->clients; saved && cl; cl = cl->next) {
        if (cl->wait == WAIT_UPGRADE) {
            json_object_set_new(saved, "asker", handover_fd(h, ctlconn_fd(cl->cn)));
        } else if (cl->wait == WAIT_NONE && ctlconn_can_hand_over(cl->cn)) {
            /* Between requests, or with one not read yet: the next image reads it. */
            json_array_append_new(keep, handover_fd(h, ctlconn_fd(cl->cn)));
        } else if (client_is_parked(cl)) {
            static const char line[] =
                "{\"ok\":false,\"error\":\"drover is being upgraded in place; ask again\"}\n";
            ctlconn_say_now(cl->cn, line, sizeof line - 1);
        }
        /* A follower (logs -f, events -f) sees its connection end, and can follow again. */
    }
    return saved && json_object_set_new(handover_doc(h), "control", saved) == 0 ? 0 : -ENOMEM;
}

/* The asker of the upgrade that brought this image up: its answer, sent once the loop runs
 * (should this image give the state back before, the previous one answers instead). */
static void control_answer_upgrade(struct control *c, int fd)
{
    struct ctlconn *cn = NULL;
    if (fd < 0 || ctlsock_adopt_conn(c->sock, fd, &cn) < 0) {
        return;
    }
    struct client *cl = ctlconn_client(cn);
    struct upgrade_outcome o;
    upgrade_outcome(&o);
    if (o.given_back) {
        char msg[600];
        snprintf(msg, sizeof msg, "upgrade rolled back: %s", o.given_back);
        client_reply(cl, json_pack("{s:b, s:s, s:s}", "ok", 0, "error", msg, "result",
                                   "rolled_back"));
    } else {
        client_reply(cl, json_pack("{s:b, s:s, s:s, s:s, s:I, s:f}", "ok", 1, "result", "done",
                                   "from", o.from, "version", drover_version, "pid",
                                   (json_int_t)getpid(), "took_ms", o.took_ms));
    }
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
    case WIRE_CMD_EVENTS:
        control_events(cl, &req);
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
    case WIRE_CMD_UPGRADE:
        control_upgrade(cl, &req);
        break;
    case WIRE_CMD_COUNT:
        client_fail(cl, "invalid request");
        break;
    }
    wire_request_done(&req);
}

/* ---- what the connection layer tells us ---- */

static void *control_on_open(void *owner, struct ctlconn *cn)
{
    struct control *c = owner;
    struct client *cl = calloc(1, sizeof *cl);
    if (!cl) {
        return NULL;
    }
    cl->c = c;
    cl->cn = cn;
    cl->next = c->clients;
    c->clients = cl;
    return cl;
}

static void control_on_line(void *client, const char *line, size_t len)
{
    client_handle(client, line, len);
}

static enum ctlconn_mode control_mode(const void *client)
{
    const struct client *cl = client;
    if (client_is_listening(cl)) {
        return CTLCONN_LISTENING;
    }
    return cl->wait == WAIT_NONE ? CTLCONN_TAKING : CTLCONN_WAITING;
}

static void control_on_shutdown(void *client)
{
    struct client *cl = client;
    if (cl->intent) {
        intent_cancel(cl->intent);
        cl->intent = NULL;
    }
    if (client_is_parked(cl)) {
        client_fail(cl, "drover is shutting down");
    }
}

static void control_on_close(void *client)
{
    struct client *cl = client;
    struct control *c = cl->c;
    for (struct client **p = &c->clients; *p; p = &(*p)->next) {
        if (*p == cl) {
            *p = cl->next;
            break;
        }
    }
    client_unfollow(cl);
    if (cl->events_tap.fn) {
        events_unfollow(&cl->events_tap);
    }
    if (cl->intent) {
        intent_cancel(cl->intent);
    }
    if (cl->wait == WAIT_RELOAD) {
        control_forget_reports(cl);
    }
    if (cl->wait == WAIT_UPGRADE) {
        upgrade_forget(cl);
    }
    free(cl);
}

static const struct ctlsock_ops control_ops = {
    .on_open = control_on_open,
    .on_line = control_on_line,
    .mode = control_mode,
    .on_shutdown = control_on_shutdown,
    .on_close = control_on_close,
};

int control_open(struct master *m, struct control **ret)
{
    struct control *c = calloc(1, sizeof *c);
    if (!c) {
        log_error("control socket: out of memory");
        return -ENOMEM;
    }
    c->m = m;
    int r = intents_open(m, &c->intents);
    if (r < 0) {
        free(c);
        return r;
    }
    const json_t *saved = handover_get(handover_incoming(), "control");
    int fd = handover_take(handover_incoming(), json_object_get(saved, "listen"));
    if (fd >= 0) {
        r = ctlsock_adopt(m->loop, m->cfg->control_socket, fd, &control_ops, c, &c->sock);
    } else {
        r = ctlsock_open(m->loop, m->cfg->control_socket, &control_ops, c, &c->sock);
    }
    if (r == 0 && saved) {
        control_answer_upgrade(c, handover_take(handover_incoming(),
                                                json_object_get(saved, "asker")));
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(saved, "clients"), i, v) {
            struct ctlconn *cn = NULL;
            int cfd = handover_take(handover_incoming(), v);
            if (cfd >= 0) {
                (void)ctlsock_adopt_conn(c->sock, cfd, &cn);
            }
        }
    }
    if (r < 0) {
        intents_close(c->intents);
        free(c);
        return r;
    }
    c->observer.on_app_changed = control_observe_app;
    c->observer.on_phase = control_observe_phase;
    master_observe(m, &c->observer);
    *ret = c;
    return 0;
}

void control_close(struct control *c)
{
    if (!c) {
        return;
    }
    ctlsock_close(c->sock);
    intents_close(c->intents);
    master_unobserve(c->m, &c->observer);
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
        ctlsock_shutdown(control_of(o)->sock);
    }
}
