/*
 * worker: one worker process. See worker.h for the state machine.
 *
 * Spawning builds the worker's whole world in the parent, in this order: pipes for stdout and
 * stderr, the channel socketpair, the environment of SPEC section 4, the fd plan (stdin from
 * /dev/null, the two pipes, the listen sockets at 3.., the channel after them), then spawn. The
 * parent's copies of the child's ends are closed right after fork, so a worker's exit is seen
 * as EOF on its pipes and channel.
 */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "events.h"
#include "handover.h"
#include "log.h"
#include "logbuf.h"
#include "metrics.h"
#include "spawn.h"

extern char **environ;

/* Worker ids key metrics snapshots: unique for the master's life, across upgrades too. */
static uint64_t worker_next_id = 1;

/* How long merged get_metrics requests may wait on a worker that does not read its channel
 * before that is logged. */
#define WORKER_PAGE_PATIENCE 1.0

/* Output lines of an exited worker quoted in its exit record. */
#define WORKER_EXIT_LINES 5

/* Output bytes read per wakeup from one pipe, so a chatty worker cannot starve the loop. */
#define WORKER_OUTPUT_BUDGET (64u * 1024u)

const char *worker_reason_to_string(enum worker_reason reason)
{
    switch (reason) {
    case WORKER_REASON_CRASH:
        return "crash";
    case WORKER_REASON_MEMORY:
        return "memory";
    case WORKER_REASON_RELOAD:
        return "reload";
    case WORKER_REASON_MANUAL:
        return "manual";
    case WORKER_REASON_HANG:
        return "hang";
    case WORKER_REASON_LIFETIME:
        return "lifetime";
    case WORKER_REASON_REQUESTED:
        return "requested";
    case WORKER_REASON_SCALE:
        return "scale";
    case WORKER_REASON_COUNT:
        break;
    }
    return "unknown";
}

bool worker_is_alive(const struct worker *w)
{
    return w->pid > 0;
}

static struct log_origin worker_origin(const struct worker *w)
{
    return (struct log_origin){w->cfg->name, (int)w->slot, w->pid ? w->pid : w->last_pid};
}

static struct ev_loop *worker_loop(const struct worker *w)
{
    return w->loop;
}

/* The one place a worker's state changes, and the one log record for it. */
static void worker_set_state(struct worker *w, enum worker_state state, const char *why)
{
    if (w->state == state) {
        return;
    }
    w->state = state;
    json_t *f = json_pack("{s:s, s:i}", "state", worker_state_to_string(state), "generation",
                          (int)w->generation);
    enum log_level level =
        (state == WORKER_EXITED && !worker_was_asked(w)) || state == WORKER_HUNG ? LOG_WARN
                                                                                : LOG_INFO;
    if (state == WORKER_EXITED && f) {
        if (w->last_exit) {
            json_object_update(f, w->last_exit);
        }
        json_object_set_new(f, "asked", json_boolean(worker_was_asked(w)));
    }
    if (state == WORKER_READY || state == WORKER_EXITED || state == WORKER_HUNG) {
        enum event_type type = state == WORKER_READY  ? EVENT_WORKER_READY
                               : state == WORKER_HUNG ? EVENT_WORKER_HUNG
                                                      : EVENT_WORKER_EXIT;
        event_record(type, level, worker_origin(w), f, "worker %s%s%s",
                     worker_state_to_string(state), why ? ": " : "", why ? why : "");
        return;
    }
    log_record(level, worker_origin(w), f, "worker %s%s%s", worker_state_to_string(state),
               why ? ": " : "", why ? why : "");
}

void worker_signal(struct worker *w, int sig)
{
    if (w->pid <= 0) {
        return;
    }
    if (sig > 0 && sig < 32) {
        w->signals_sent |= 1u << sig;
    }
    /* The worker leads its own process group from its setsid() on; in the instant between fork
     * and setsid the group does not exist yet, and the pid alone is the target. */
    if (kill(-w->pid, sig) == -1 && errno == ESRCH) {
        (void)kill(w->pid, sig);
    }
}

void worker_kill(struct worker *w)
{
    worker_signal(w, SIGKILL);
}

bool worker_was_sent(const struct worker *w, int sig)
{
    return sig > 0 && sig < 32 && (w->signals_sent & (1u << sig));
}

/* ---- output: stdout and stderr lines become log records ---- */

static void worker_output_line(struct worker *w, int stream, const char *line, size_t len)
{
    if (len > 0 && line[len - 1] == '\r') {
        len--;
    }
    struct log_origin origin = worker_origin(w);
    logbuf_append(w->logbuf, origin.slot, origin.pid, stream == 1, line, len);
    if (log_worker_line(origin, stream == 1, line, len) == -ENOBUFS) {
        (*w->log_dropped)++;
    }
}

/* Reads what is there; returns false at EOF or on error (the pipe is then closed). */
static bool worker_output_read(struct worker *w, int stream, size_t budget)
{
    struct worker_output *o = &w->out[stream];
    while (budget > 0) {
        if (o->len == o->cap && o->cap < WORKER_LINE_MAX) {
            /* Grown on demand: most workers print little, and 512 of them holding 32 KiB
             * each would be most of the master's memory. */
            size_t cap = o->cap ? o->cap * 4 : 1024;
            char *line = realloc(o->line, cap < WORKER_LINE_MAX ? cap : WORKER_LINE_MAX);
            if (line) {
                o->line = line;
                o->cap = cap < WORKER_LINE_MAX ? cap : WORKER_LINE_MAX;
            } else if (o->cap == 0) {
                return true; /* out of memory: the pipe waits; the worker blocks, not us */
            } else {
                worker_output_line(w, stream, o->line, o->len); /* a piece, to make room */
                o->len = 0;
            }
        }
        ssize_t n = read(o->fd, o->line + o->len, o->cap - o->len);
        if (n == -1 && errno == EINTR) {
            continue;
        }
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return true;
        }
        if (n <= 0) {
            if (o->len > 0) {
                worker_output_line(w, stream, o->line, o->len);
                o->len = 0;
            }
            return false;
        }
        budget = (size_t)n >= budget ? 0 : budget - (size_t)n;
        size_t end = o->len + (size_t)n;
        size_t start = 0;
        for (size_t i = o->len; i < end; i++) {
            if (o->line[i] == '\n') {
                worker_output_line(w, stream, o->line + start, i - start);
                start = i + 1;
            }
        }
        if (start == 0 && end == o->cap && o->cap == WORKER_LINE_MAX) {
            /* A line longer than the buffer is emitted in pieces rather than held. */
            worker_output_line(w, stream, o->line, end);
            start = end;
        }
        memmove(o->line, o->line + start, end - start);
        o->len = end - start;
    }
    return true;
}

static void worker_output_close(struct worker *w, int stream)
{
    struct worker_output *o = &w->out[stream];
    if (o->fd == -1) {
        return;
    }
    ev_io_stop(worker_loop(w), &o->io_w);
    close(o->fd);
    o->fd = -1;
    free(o->line);
    o->line = NULL;
    o->len = o->cap = 0;
}

static void worker_on_output(struct ev_loop *loop, ev_io *io, int revents)
{
    struct worker *w = io->data;
    int stream = io == &w->out[0].io_w ? 0 : 1;
    if (!worker_output_read(w, stream, WORKER_OUTPUT_BUDGET)) {
        worker_output_close(w, stream);
    }
}

/* ---- the state table's decisions (workerstate.h) ---- */

static struct worker_facts worker_facts_of(const struct worker *w)
{
    return (struct worker_facts){
        .ready = w->cfg->ready,
        .spoke = w->spoke,
        .uptime_s = ev_now(w->loop) - w->started_at,
        .ready_delay_s = (double)w->cfg->ready_delay_ms / 1000.0,
        .ready_timeout_s = (double)w->cfg->ready_timeout_ms / 1000.0,
        .kill_timeout_s = (double)w->cfg->kill_timeout_ms / 1000.0,
    };
}

static void worker_unnice(struct worker *w);

/* Feeds ev to the worker's table and carries out what it decides; via says how it came (for
 * the ready record). One log record per transition (worker_set_state). */
static void worker_feed(struct worker *w, enum worker_event ev, const char *via)
{
    struct worker_facts f = worker_facts_of(w);
    struct worker_step st = worker_state_step(w->state, ev, &f);
    char why[128];
    const char *said = via ? via : st.why;
    switch (st.action) {
    case WORKER_DO_NOTHING:
        break;
    case WORKER_DO_READY:
        ev_timer_stop(w->loop, &w->timer_w);
        w->ready_at = ev_now(w->loop);
        snprintf(why, sizeof why, "via %s after %.0f ms", said ? said : "?",
                 (w->ready_at - w->started_at) * 1000);
        said = why;
        break;
    case WORKER_DO_WAIT:
        ev_timer_set(&w->timer_w, st.delay_s, 0.);
        ev_timer_start(w->loop, &w->timer_w);
        break;
    case WORKER_DO_CANCEL:
        ev_timer_stop(w->loop, &w->timer_w);
        break;
    case WORKER_DO_KILL:
        log_record(LOG_ERROR, worker_origin(w), NULL,
                   "worker not ready after %" PRIu64 " ms (ready_timeout); killing it",
                   w->cfg->ready_timeout_ms);
        worker_kill(w);
        break;
    case WORKER_DO_HANG:
        snprintf(why, sizeof why, "%s, %.0f ms after its last sign of life (watchdog %" PRIu64
                 " ms)", said ? said : "silent", (ev_now(w->loop) - w->alive_at) * 1000,
                 w->cfg->watchdog_ms);
        said = why;
        __attribute__((fallthrough)); /* to the abort deadline */
    case WORKER_DO_ABORT:
        ev_timer_stop(w->loop, &w->timer_w);
        ev_timer_set(&w->timer_w, st.delay_s, 0.);
        ev_timer_start(w->loop, &w->timer_w);
        if (st.action == WORKER_DO_ABORT) {
            worker_signal(w, SIGABRT);
        }
        break;
    case WORKER_DO_FORCE:
        log_record(LOG_WARN, worker_origin(w), NULL,
                   "worker still there %" PRIu64 " ms (kill_timeout) after SIGABRT; SIGKILL",
                   w->cfg->kill_timeout_ms);
        worker_kill(w);
        break;
    }
    if (st.to != st.from) {
        if (st.to == WORKER_EXITED) {
            w->exited_from = st.from;
        }
        if (st.from == WORKER_READY) {
            ev_timer_stop(w->loop, &w->watchdog_w);
        }
        worker_set_state(w, st.to, st.action == WORKER_DO_READY || st.to == WORKER_EXITED ||
                                           st.action == WORKER_DO_HANG ||
                                           st.action == WORKER_DO_ABORT
                                       ? said
                                       : NULL);
    }
    if (st.action == WORKER_DO_READY) {
        w->alive_at = w->ready_at;
        if (w->cfg->watchdog_ms > 0) {
            /* Counted from readiness: booting is ready_timeout's business (SPEC section 10). */
            double t = (double)w->cfg->watchdog_ms / 1000.0;
            ev_timer_set(&w->watchdog_w, t, t);
            ev_timer_start(w->loop, &w->watchdog_w);
        }
        worker_unnice(w);
        w->ops->on_ready(w->owner, w);
    } else if (st.action == WORKER_DO_HANG) {
        w->ops->on_hung(w->owner, w);
    }
}

/* A surge worker that booted at surge_nice is ready: its priority back. Called again from
 * worker_sample while the kernel's rate limit on autogroup changes says "later". */
static void worker_unnice(struct worker *w)
{
    if (!w->niced || w->pid <= 0) {
        return;
    }
    int r = spawn_priority_restore(w->pid, w->niced_thread);
    if (r == -EAGAIN) {
        return; /* still niced: the next sample tries again */
    }
    w->niced = false;
    if (r < 0 && r != -ESRCH) {
        log_record(LOG_WARN, worker_origin(w), NULL,
                   "setpriority/autogroup of pid %d back from surge_nice failed: %s", (int)w->pid,
                   strerror(-r));
    }
}

bool worker_was_asked(const struct worker *w)
{
    return worker_state_is_leaving(w->state == WORKER_EXITED ? w->exited_from : w->state);
}

void worker_drain(struct worker *w)
{
    worker_feed(w, WORKER_EV_DRAIN, NULL);
}

void worker_stopping(struct worker *w)
{
    worker_feed(w, WORKER_EV_STOP, NULL);
}

void worker_abort(struct worker *w)
{
    worker_feed(w, WORKER_EV_ABORT, NULL);
}

void worker_stop_now(struct worker *w)
{
    worker_feed(w, WORKER_EV_KILL, NULL);
    worker_kill(w);
}

/* ---- readiness ---- */

void worker_on_ready_signal(struct worker *w, const char *via)
{
    worker_feed(w, WORKER_EV_WORD, via);
}

/* A sign of life (heartbeat, WATCHDOG=1): the watchdog starts counting again. */
static void worker_on_life(struct worker *w)
{
    w->alive_at = ev_now(w->loop);
    if (ev_is_active(&w->watchdog_w)) {
        ev_timer_again(w->loop, &w->watchdog_w);
    }
}

static void worker_on_watchdog(struct ev_loop *loop, ev_timer *t, int revents)
{
    worker_feed(t->data, WORKER_EV_SILENT, NULL);
}

void worker_on_notify(struct worker *w, const struct notify_msg *msg)
{
    w->spoke = true;
    if (msg->watchdog) {
        worker_on_life(w);
    }
    if (msg->watchdog_trigger) {
        worker_feed(w, WORKER_EV_SILENT, "WATCHDOG=trigger");
    }
    if (msg->status) {
        worker_set_status(w, msg->status);
    }
    if (msg->ready) {
        worker_on_ready_signal(w, "sd_notify");
    }
}

void worker_set_status(struct worker *w, const char *text)
{
    char *copy = strndup(text, 512);
    if (copy) {
        free(w->status_text);
        w->status_text = copy;
    }
}

static void worker_on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    worker_feed(t->data, WORKER_EV_TIMER, NULL);
}

/* ---- the channel ---- */

/* get_metrics formats, as bits of pages_wanted. */
enum { WORKER_PAGE_TEXT = 1u, WORKER_PAGE_JSON = 2u };

static void worker_page_trouble(struct worker *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Once per worker: a worker that misuses get_metrics does so thousands of times a second. */
static void worker_page_trouble(struct worker *w, const char *fmt, ...)
{
    if (w->pages_warned) {
        return;
    }
    w->pages_warned = true;
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    log_record(LOG_WARN, worker_origin(w), NULL, "get_metrics: %s (logged once per worker)",
               text);
}

static void worker_send_page(struct worker *w, const char *format)
{
    const char *body = NULL;
    int r = w->ops->page(w->owner, format, &body);
    if (r == 0) {
        struct wire_msg msg = {.type = WIRE_METRICS_PAGE, .format = (char *)format,
                               .body = (char *)body};
        r = channel_send(&w->ch, &msg);
    }
    if (r == -ENOBUFS) {
        worker_page_trouble(w, "the page does not fit the channel's %u-byte queue; dropped",
                            CHANNEL_OUT_LIMIT);
    } else if (r < 0 && r != -ENOTCONN) {
        worker_page_trouble(w, "%s", r == -EINVAL ? "unknown format" : strerror(-r));
    }
}

/*
 * A worker may ask for the combined page as often as it likes, but the master renders and
 * queues at most one answer at a time per worker (SPEC section 4): while an answer still waits
 * in the channel, further requests are merged into one, sent when the worker has read the
 * queue (worker_on_channel_drained). A worker that asks and never reads so costs one page, not
 * one page per request.
 */
static void worker_want_page(struct worker *w, const char *format)
{
    unsigned bit = format && strcmp(format, "json") == 0 ? WORKER_PAGE_JSON : WORKER_PAGE_TEXT;
    if (format && strcmp(format, "json") != 0 && strcmp(format, "text") != 0) {
        worker_page_trouble(w, "unknown format");
        return;
    }
    if (channel_pending(&w->ch) == 0) {
        worker_send_page(w, bit == WORKER_PAGE_JSON ? "json" : "text");
        return;
    }
    ev_tstamp now = ev_now(worker_loop(w));
    if (!w->pages_wanted) {
        w->pages_waiting_since = now;
    } else if (now - w->pages_waiting_since > WORKER_PAGE_PATIENCE) {
        worker_page_trouble(w, "the worker has not read its channel for %.0f s; its requests "
                               "are dropped until it does",
                            WORKER_PAGE_PATIENCE);
    }
    w->pages_wanted |= bit;
}

static void worker_on_channel_drained(struct channel *ch, void *data)
{
    struct worker *w = data;
    unsigned wanted = w->pages_wanted;
    w->pages_wanted = 0;
    if (wanted & WORKER_PAGE_TEXT) {
        worker_send_page(w, "text");
    }
    if (wanted & WORKER_PAGE_JSON) {
        worker_send_page(w, "json");
    }
}

static void worker_on_channel_msg(struct channel *ch, struct wire_msg *msg, void *data)
{
    struct worker *w = data;
    if (w->pid == 0 && msg->type != WIRE_METRICS) {
        return; /* read after the worker's exit: only its last counts still matter */
    }
    w->channel_used = true;
    w->spoke = true;
    switch (msg->type) {
    case WIRE_PHASE_DONE:
        w->ops->on_phase_done(w->owner, w, msg->phase);
        break;
    case WIRE_READY:
        worker_on_ready_signal(w, "channel");
        break;
    case WIRE_STATUS:
        worker_set_status(w, msg->text ? msg->text : "");
        break;
    case WIRE_METRICS: {
        const char *why = NULL;
        int r = metrics_app_update(w->metrics, w->id, (int)w->slot, msg->families,
                                   ev_now(worker_loop(w)), &why);
        if (r == 0) {
            channel_mark_repeatable(&w->ch);
        }
        w->ops->on_metrics(w->owner, w);
        if (r < 0 && !w->metrics_warned) {
            /* Once per worker: a broken exporter would otherwise flood the log every second. */
            w->metrics_warned = true;
            log_record(LOG_WARN, worker_origin(w), NULL, "metrics snapshot refused: %s",
                       r == -E2BIG ? "over the series limit" : why ? why : "malformed");
        }
        break;
    }
    case WIRE_GET_METRICS:
        worker_want_page(w, msg->format);
        break;
    case WIRE_HEARTBEAT:
        worker_on_life(w);
        break;
    case WIRE_RECYCLE:
        if (w->state == WORKER_READY) {
            w->ops->on_recycle(w->owner, w, msg->text ? msg->text : "");
        }
        break;
    case WIRE_PHASE:
    case WIRE_COLLECT:
    case WIRE_METRICS_PAGE:
        /* Master-to-worker messages coming the wrong way: the worker is confused. */
        log_record(LOG_WARN, worker_origin(w), NULL, "channel: unexpected '%s' from worker",
                   wire_type_to_string(msg->type));
        break;
    }
}

/* The same snapshot again: as fresh as now, nothing else changed. */
static void worker_on_channel_repeat(struct channel *ch, void *data)
{
    struct worker *w = data;
    w->channel_used = true;
    w->spoke = true;
    (void)metrics_app_touch(w->metrics, w->id, ev_now(w->loop));
}

static void worker_on_channel_close(struct channel *ch, int err, void *data)
{
    struct worker *w = data;
    if (err == 0 || w->pid == 0) {
        return;
    }
    log_record(LOG_WARN, worker_origin(w), NULL, "channel closed: %s",
               err == -EPROTO     ? "protocol error (not a valid message)"
               : err == -EMSGSIZE ? "line over 1 MiB"
                                  : strerror(-err));
}

/* ---- exec outcome and exit ---- */

/* Reads the spawn error pipe: 4+4 bytes = a step failed, EOF = exec succeeded. Returns true when
 * the outcome is known (the pipe is then closed). */
static bool worker_read_errpipe(struct worker *w)
{
    struct spawn_error e;
    ssize_t n = read(w->errpipe_fd, &e, sizeof e);
    if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
        return false;
    }
    ev_io_stop(worker_loop(w), &w->errpipe_w);
    close(w->errpipe_fd);
    w->errpipe_fd = -1;
    if (n == (ssize_t)sizeof e) {
        w->exec_failed = true;
        log_record(LOG_ERROR, worker_origin(w), NULL, "%s('%s') failed: %s",
                   spawn_step_to_string((enum spawn_step)e.step),
                   e.step == SPAWN_STEP_CHDIR ? w->cfg->cwd : w->cfg->argv[0],
                   strerror(e.err));
    }
    return true;
}

static void worker_on_errpipe(struct ev_loop *loop, ev_io *io, int revents)
{
    struct worker *w = io->data;
    if (!worker_read_errpipe(w) || w->exec_failed) {
        return;
    }
    worker_feed(w, WORKER_EV_EXEC, "exec");
}

static void worker_describe_exit(int status, char *buf, size_t size)
{
    if (WIFEXITED(status)) {
        snprintf(buf, size, "exit code %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        snprintf(buf, size, "killed by signal %d (%s)", WTERMSIG(status),
                 sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?");
    } else {
        snprintf(buf, size, "status 0x%x", status);
    }
}

const char *worker_exit_reason(const struct worker *w)
{
    if (w->condemned != WORKER_REASON_NONE) {
        return worker_reason_to_string(w->condemned);
    }
    if (w->exec_failed) {
        return "exec failed";
    }
    if (worker_was_asked(w)) {
        return w->stop_reason != WORKER_REASON_CRASH ? worker_reason_to_string(w->stop_reason)
                                                     : "stop";
    }
    return "crash";
}

struct worker_lines {
    pid_t pid;
    json_t *lines;
};

static void worker_collect_line(const struct logbuf_line *line, void *data)
{
    struct worker_lines *c = data;
    if (line->pid == c->pid) {
        json_array_append_new(c->lines, log_json_text(line->text, line->len));
        if (json_array_size(c->lines) > WORKER_EXIT_LINES) {
            json_array_remove(c->lines, 0);
        }
    }
}

/*
 * The facts of an exit (SPEC section 10): exit code or signal, core or not, uptime, reason,
 * and, for a signal, who sent it. libev reaps with waitpid, which does not say who sent a
 * signal (si_pid), so drover says what it knows: whether it sent that signal itself. A SIGKILL
 * it did not send is the kernel's OOM killer or an operator, and is called so.
 */
static json_t *worker_exit_facts(const struct worker *w, double uptime_s)
{
    int st = w->wait_status;
    json_t *o = json_pack("{s:f, s:s, s:f}", "uptime_s", round(uptime_s * 1000) / 1000,
                          "reason", worker_exit_reason(w), "at", ev_now(w->loop));
    if (!o) {
        return NULL;
    }
    if (WIFEXITED(st)) {
        json_object_set_new(o, "exit_code", json_integer(WEXITSTATUS(st)));
        json_object_set_new(o, "core_dumped", json_false());
    } else if (WIFSIGNALED(st)) {
        int sig = WTERMSIG(st);
        const char *name = sigabbrev_np(sig);
        json_object_set_new(o, "signal", json_string(name ? name : "?"));
        json_object_set_new(o, "core_dumped", json_boolean(WCOREDUMP(st)));
        const char *sender = worker_was_sent(w, sig) ? "drover"
                             : sig == SIGKILL ? "not sent by drover (usually the kernel's OOM "
                                                "killer, or an operator)"
                                              : "not sent by drover";
        json_object_set_new(o, "sender", json_string(sender));
    }
    struct worker_lines c = {w->last_pid, json_array()};
    logbuf_foreach_last(w->logbuf, 200, worker_collect_line, &c);
    json_object_set_new(o, "last_output", c.lines);
    return o;
}

static void worker_on_exit(struct ev_loop *loop, ev_child *c, int revents)
{
    struct worker *w = c->data;
    /* Reaped: the pid may be reused from now on, so forget it before anything else. */
    w->last_pid = w->pid;
    w->pid = 0;
    w->wait_status = c->rstatus;
    ev_child_stop(loop, c);

    /* Descendants left in the worker's process group would keep its listen socket and pipes.
     * While any member lives, the kernel hands the number out to no new process, so the group
     * is still the worker's. Once the group is empty the number is free: a new process may
     * have it already and may lead a group of its own by now, which is why a live process
     * with that pid means "not ours": then the worker's group is empty and nothing is sent.
     * (Left open: a new process taking the number between the check and the kill, and making
     * itself a group leader in that instant.) */
    if (kill(w->last_pid, 0) == -1 && errno == ESRCH) {
        (void)kill(-w->last_pid, SIGKILL);
    }

    ev_timer_stop(loop, &w->timer_w);
    ev_timer_stop(loop, &w->watchdog_w);
    if (w->errpipe_fd != -1 && !worker_read_errpipe(w)) {
        ev_io_stop(loop, &w->errpipe_w);
        close(w->errpipe_fd);
        w->errpipe_fd = -1;
    }
    /* Take what the worker wrote before it died, without waiting for a writer that may be a
     * descendant that escaped the group. */
    for (int s = 0; s < 2; s++) {
        if (w->out[s].fd != -1) {
            worker_output_read(w, s, WORKER_LINE_MAX * 4);
            if (w->out[s].len > 0) {
                worker_output_line(w, s, w->out[s].line, w->out[s].len);
                w->out[s].len = 0;
            }
            worker_output_close(w, s);
        }
    }
    channel_drain(&w->ch);
    if (w->stat_fd != -1) {
        close(w->stat_fd);
        w->stat_fd = -1;
    }
    char why[160];
    worker_describe_exit(w->wait_status, why, sizeof why);
    json_decref(w->last_exit);
    w->last_exit = worker_exit_facts(w, ev_now(loop) - w->started_at);
    json_t *sender = w->last_exit ? json_object_get(w->last_exit, "sender") : NULL;
    size_t len = strlen(why);
    snprintf(why + len, sizeof why - len, "%s%s, after %.1f s (%s)",
             WIFSIGNALED(w->wait_status) && WCOREDUMP(w->wait_status) ? ", core dumped" : "",
             sender && strcmp(json_string_value(sender), "drover") != 0 ? ", not sent by drover"
                                                                       : "",
             ev_now(loop) - w->started_at, worker_exit_reason(w));
    worker_feed(w, WORKER_EV_EXIT, why);
    metrics_app_retire(w->metrics, w->id);
    w->ops->on_metrics(w->owner, w);
    w->ops->on_exit(w->owner, w);
}

/* ---- stopping ---- */


/* ---- sampling ---- */

int worker_sample(struct worker *w, ev_tstamp now)
{
    if (w->stat_fd == -1) {
        return -ESRCH;
    }
    struct procstat st;
    int r = procstat_read(w->stat_fd, &st);
    if (r < 0) {
        return r;
    }
    if (w->stat_at > 0 && now > w->stat_at && st.cpu_ns >= w->cpu_prev_ns) {
        w->cpu_percent = (double)(st.cpu_ns - w->cpu_prev_ns) / 1e9 / (now - w->stat_at) * 100.0;
    }
    w->cpu_prev_ns = st.cpu_ns;
    w->stat_at = now;
    w->stat = st;
    /* Ready, but the restore was refused by the rate limit: again. Or not ready after half its
     * ready_timeout: on a saturated machine a nice boot may starve, and a reload must not fail
     * for that, so the rest of its boot runs at full priority. */
    if (w->niced && (w->ready_at > 0 ||
                     (now - w->started_at) * 2000 >= (double)w->cfg->ready_timeout_ms)) {
        worker_unnice(w);
    }
    return 0;
}

/* ---- spawning ---- */

/* Appends a malloc'd "KEY=VALUE" to env. */
static int env_add(char ***env, size_t *n, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int env_add(char ***env, size_t *n, const char *key, const char *fmt, ...)
{
    char value[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(value, sizeof value, fmt, ap);
    va_end(ap);
    char *entry = NULL;
    if (asprintf(&entry, "%s=%s", key, value) == -1) {
        return -ENOMEM;
    }
    (*env)[(*n)++] = entry;
    return 0;
}

static bool env_is_ours(const char *entry)
{
    static const char *const ours[] = {"LISTEN_FDS=", "LISTEN_PID=", "LISTEN_FDNAMES=",
                                       "NOTIFY_SOCKET=", "DROVER_", "WATCHDOG_USEC=",
                                       "WATCHDOG_PID="};
    for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++) {
        if (strncmp(entry, ours[i], strlen(ours[i])) == 0) {
            return true;
        }
    }
    return false;
}

/* Whether a config env entry overrides (has the same key as) the inherited entry. */
static bool env_overridden(const struct config_app *cfg, const char *entry)
{
    size_t klen = strcspn(entry, "=");
    for (size_t i = 0; i < cfg->n_env; i++) {
        if (strncmp(cfg->env[i], entry, klen) == 0 && cfg->env[i][klen] == '=') {
            return true;
        }
    }
    return false;
}

static void env_free(char **env)
{
    if (!env) {
        return;
    }
    for (char **e = env; *e; e++) {
        free(*e);
    }
    free(env);
}

/*
 * The worker's environment (SPEC section 4): drover's own minus what belongs to drover's
 * supervisor (its NOTIFY_SOCKET, LISTEN_*, WATCHDOG_*), the app's env lines, then drover's
 * variables. *ret_pid_digits points into the LISTEN_PID entry for the child to fill, and
 * *ret_watchdog_digits into WATCHDOG_PID's (NULL without a watchdog; set before success).
 */
static int worker_build_env(const struct worker *w, const struct worker_spec *spec,
                            int channel_fd, char ***ret_env, char **ret_pid_digits,
                            char **ret_watchdog_digits)
{
    const struct config_app *cfg = w->cfg;
    size_t cap = 16 + cfg->n_env;
    for (char **e = environ; *e; e++) {
        cap++;
    }
    char **env = calloc(cap, sizeof *env);
    size_t n = 0;
    int r = -ENOMEM;
    char *pid_digits = NULL;
    if (!env) {
        return -ENOMEM;
    }
    for (char **e = environ; *e; e++) {
        if (env_is_ours(*e) || env_overridden(cfg, *e)) {
            continue;
        }
        if (!(env[n] = strdup(*e))) {
            goto out;
        }
        n++;
    }
    for (size_t i = 0; i < cfg->n_env; i++) {
        if (!(env[n] = strdup(cfg->env[i]))) {
            goto out;
        }
        n++;
    }
    if (cfg->n_listen > 0) {
        /* Reserve room for any pid; the child writes the digits after fork. */
        if (env_add(&env, &n, "LISTEN_PID", "%-20s", "") < 0) {
            goto out;
        }
        pid_digits = env[n - 1] + strlen("LISTEN_PID=");
        if (env_add(&env, &n, "LISTEN_FDS", "%zu", cfg->n_listen) < 0) {
            goto out;
        }
        /* Each fd is named after its app, as systemd names fds after their unit. */
        char names[4096];
        size_t off = 0;
        names[0] = '\0';
        for (size_t i = 0; i < cfg->n_listen && off < sizeof names; i++) {
            off += (size_t)snprintf(names + off, sizeof names - off, "%s%s", i ? ":" : "",
                                    cfg->name);
        }
        if (env_add(&env, &n, "LISTEN_FDNAMES", "%s", names) < 0) {
            goto out;
        }
    }
    if (env_add(&env, &n, "NOTIFY_SOCKET", "%s", spec->notify_path) < 0 ||
        env_add(&env, &n, "DROVER_CHANNEL_FD", "%d", channel_fd) < 0 ||
        env_add(&env, &n, "DROVER_APP", "%s", cfg->name) < 0 ||
        env_add(&env, &n, "DROVER_WORKER_ID", "%u", w->slot) < 0 ||
        env_add(&env, &n, "DROVER_GENERATION", "%u", w->generation) < 0 ||
        env_add(&env, &n, "DROVER_STATE_FILE", "%s/%s.%u.state", spec->state_dir, cfg->name,
                w->slot) < 0) {
        goto out;
    }
    if (cfg->watchdog_ms > 0) {
        /* As systemd passes them to a service (SPEC section 4): WATCHDOG_PID is the worker's
         * own pid, written by the child after fork like LISTEN_PID. */
        if (env_add(&env, &n, "WATCHDOG_USEC", "%" PRIu64, cfg->watchdog_ms * 1000) < 0 ||
            env_add(&env, &n, "WATCHDOG_PID", "%-20s", "") < 0) {
            goto out;
        }
        *ret_watchdog_digits = env[n - 1] + strlen("WATCHDOG_PID=");
    }
    env[n] = NULL;
    *ret_env = env;
    *ret_pid_digits = pid_digits;
    env = NULL;
    r = 0;
out:
    if (env) {
        env[n] = NULL;
        env_free(env);
    }
    return r;
}

/* A close-on-exec pipe whose read end (ours) is non-blocking. */
static int worker_pipe(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC) == -1) {
        return -errno;
    }
    /* Only our end: the worker's stdout stays blocking, as any program expects of it. */
    int flags = fcntl(fds[0], F_GETFL);
    if (flags == -1 || fcntl(fds[0], F_SETFL, flags | O_NONBLOCK) == -1) {
        int r = -errno;
        close(fds[0]);
        close(fds[1]);
        fds[0] = fds[1] = -1;
        return r;
    }
    return 0;
}

static const char *worker_path_env(const struct config_app *cfg)
{
    for (size_t i = cfg->n_env; i > 0; i--) {
        if (strncmp(cfg->env[i - 1], "PATH=", 5) == 0) {
            return cfg->env[i - 1] + 5;
        }
    }
    return getenv("PATH");
}

/* A worker of spec with nothing open yet: starting, not condemned, every fd -1. */
static struct worker *worker_new(const struct worker_spec *spec, const struct worker_ops *ops,
                                 void *owner)
{
    struct worker *w = calloc(1, sizeof *w);
    if (!w) {
        return NULL;
    }
    w->ops = ops;
    w->owner = owner;
    w->loop = spec->loop;
    w->logbuf = spec->logbuf;
    w->metrics = spec->metrics;
    w->log_dropped = spec->log_dropped;
    w->cfg_owner = config_ref(spec->cfg_owner);
    w->cfg = spec->cfg;
    w->slot = spec->slot;
    w->generation = spec->generation;
    w->errpipe_fd = -1;
    w->stat_fd = -1;
    w->out[0].fd = w->out[1].fd = -1;
    w->ch.fd = -1;
    w->state = WORKER_STARTING;
    w->condemned = WORKER_REASON_NONE;
    return w;
}

/* The watchers every worker has: its process (w->pid), the spawn error pipe and its output
 * pipes (each -1 when it has none), its /proc readings, its timers (not started). */
static void worker_watch(struct worker *w, int errfd, int out_fd, int err_fd)
{
    struct ev_loop *loop = w->loop;
    /* Watch the child before the loop can run again, so its exit is never missed. */
    ev_child_init(&w->child_w, worker_on_exit, w->pid, 0);
    w->child_w.data = w;
    ev_child_start(loop, &w->child_w);
    w->errpipe_fd = errfd;
    if (errfd >= 0) {
        ev_io_init(&w->errpipe_w, worker_on_errpipe, errfd, EV_READ);
        w->errpipe_w.data = w;
        ev_io_start(loop, &w->errpipe_w);
    }
    int read_ends[2] = {out_fd, err_fd};
    for (int s = 0; s < 2; s++) {
        w->out[s].fd = read_ends[s];
        if (read_ends[s] >= 0) {
            ev_io_init(&w->out[s].io_w, worker_on_output, read_ends[s], EV_READ);
            w->out[s].io_w.data = w;
            ev_io_start(loop, &w->out[s].io_w);
        }
    }
    int sfd = procstat_open(w->pid);
    w->stat_fd = sfd >= 0 ? sfd : -1;
    ev_init(&w->timer_w, worker_on_timer);
    w->timer_w.data = w;
    ev_init(&w->watchdog_w, worker_on_watchdog);
    w->watchdog_w.data = w;
}

int worker_start(const struct worker_spec *spec, const struct worker_ops *ops, void *owner,
                 struct worker **ret)
{
    struct ev_loop *loop = spec->loop;
    const struct config_app *cfg = spec->cfg;
    int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1}, chan[2] = {-1, -1};
    char **env = NULL;
    char *path = NULL;
    int errfd = -1;
    pid_t pid = 0;
    const char *what = "malloc";
    int r = -ENOMEM;

    struct worker *w = worker_new(spec, ops, owner);
    if (!w) {
        goto out;
    }
    w->id = worker_next_id++;

    what = "pipe2";
    if ((r = worker_pipe(out_pipe)) < 0 || (r = worker_pipe(err_pipe)) < 0) {
        goto out;
    }
    what = "socketpair";
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, chan) == -1) {
        r = -errno;
        goto out;
    }

    struct spawn_plan plan = {.argv = cfg->argv, .cwd = cfg->cwd};
    /* stdio, the listen sockets, the channel: config refuses more than fit, this never runs. */
    _Static_assert(3 + CONFIG_LISTEN_MAX + 1 == SPAWN_FDS_MAX, "a worker's fds fit its plan");
    if (cfg->n_listen > SPAWN_FDS_MAX - 4) {
        r = -E2BIG;
        what = "listen sockets";
        goto out;
    }
    plan.fds[plan.n_fds++] = spec->null_fd;
    plan.fds[plan.n_fds++] = out_pipe[1];
    plan.fds[plan.n_fds++] = err_pipe[1];
    for (size_t i = 0; i < cfg->n_listen; i++) {
        if (spec->listen_fds[i] < 0) {
            r = -ENOTSOCK; /* the owner binds every address first; never expected */
            what = "listen socket";
            goto out;
        }
        plan.fds[plan.n_fds++] = spec->listen_fds[i];
    }
    int channel_target = plan.n_fds;
    plan.fds[plan.n_fds++] = chan[1];

    what = "environment";
    if ((r = worker_build_env(w, spec, channel_target, &env, &plan.listen_pid_digits,
                              &plan.watchdog_pid_digits)) < 0) {
        goto out;
    }
    plan.envp = env;
    r = spawn_resolve(cfg->argv[0], worker_path_env(cfg), &path);
    if (r < 0) {
        /* A command not found is reported like a failed exec: the slot backs off and retries,
         * since the file may appear (a deploy in progress). */
        path = strdup(cfg->argv[0]);
        if (!path) {
            r = -ENOMEM;
            goto out;
        }
    }
    plan.path = path;
    if (spec->surge && cfg->surge_nice > 0) {
        plan.boot_nice = cfg->surge_nice;
        /* Lowered only where it can be raised back: a worker left nice for good would serve
         * at a fraction of its share. */
        plan.boot_nice_thread = spawn_can_restore_nice();
        w->niced = true;
        w->niced_thread = plan.boot_nice_thread;
    }
    if (spec->set_ids) {
        plan.set_ids = true;
        plan.uid = spec->uid;
        plan.gid = spec->gid;
        plan.groups = spec->groups;
        plan.n_groups = spec->n_groups;
    }

    what = "fork";
    r = spawn_start(&plan, &pid, &errfd);
    if (r < 0) {
        goto out;
    }
    w->pid = pid;
    w->last_pid = pid;
    w->started_at = ev_now(loop);

    worker_watch(w, errfd, out_pipe[0], err_pipe[0]);
    errfd = out_pipe[0] = err_pipe[0] = -1;
    channel_open(&w->ch, loop, chan[0], worker_on_channel_msg, worker_on_channel_close, w);
    w->ch.on_drained = worker_on_channel_drained;
    w->ch.on_repeat = worker_on_channel_repeat;
    chan[0] = -1;

    struct worker_facts facts = worker_facts_of(w);
    double wait = worker_state_first_wait(&facts);
    if (wait >= 0) {
        ev_timer_set(&w->timer_w, wait, 0.);
        ev_timer_start(loop, &w->timer_w);
    }
    json_t *f = json_pack("{s:s, s:i}", "state", "starting", "generation", (int)w->generation);
    event_record(EVENT_WORKER_START, LOG_INFO, worker_origin(w), f, "worker starting: %s",
                 cfg->command);
    *ret = w;
    w = NULL;
    r = 0;
out:
    if (r < 0) {
        log_record(LOG_ERROR, (struct log_origin){cfg->name, (int)spec->slot, 0}, NULL,
                   "starting worker failed: %s: %s", what, strerror(-r));
    }
    int *fds[] = {&out_pipe[0], &out_pipe[1], &err_pipe[0], &err_pipe[1], &chan[0], &chan[1],
                  &errfd};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) {
        if (*fds[i] != -1) {
            close(*fds[i]);
        }
    }
    env_free(env);
    free(path);
    worker_free(w);
    return r;
}

static void worker_on_swept(struct sweep_node *node)
{
    worker_free(SWEEP_OWNER(node, struct worker, swept));
}

void worker_free_later(struct worker *w, struct sweep *sweep)
{
    sweep_add(sweep, &w->swept, worker_on_swept);
}

void worker_free(struct worker *w)
{
    if (!w) {
        return;
    }
    free(w->out[0].line);
    free(w->out[1].line);
    free(w->status_text);
    json_decref(w->last_exit);
    config_unref(w->cfg_owner);
    free(w);
}

/* ---- upgrade in place (SPEC section 12) ---- */

uint64_t worker_ids_next(void)
{
    return worker_next_id;
}

void worker_ids_continue(uint64_t next)
{
    if (next > worker_next_id) {
        worker_next_id = next;
    }
}

static const char *const worker_saved_fields[] = {"channel", "out", "err", "errpipe"};

json_t *worker_save(const struct worker *w, struct handover *h)
{
    const char *in, *out;
    size_t in_len, out_len;
    channel_unread(&w->ch, &in, &in_len, &out, &out_len);
    json_t *o = json_pack(
        "{s:I, s:I, s:i, s:i, s:s, s:f, s:f, s:f, s:I, s:b, s:b, s:I, s:o*, s:o, s:o, s:o, s:o}",
        "pid", (json_int_t)w->pid, "id", (json_int_t)w->id, "slot", (int)w->slot, "generation",
        (int)w->generation, "state", worker_state_to_string(w->state), "started_at",
        w->started_at, "ready_at", w->ready_at, "alive_at", w->alive_at, "signals_sent",
        (json_int_t)w->signals_sent, "channel_used", w->channel_used, "spoke", w->spoke,
        "cpu_prev_ns", (json_int_t)w->cpu_prev_ns, "status_text",
        w->status_text ? json_string(w->status_text) : NULL, "ch_in",
        handover_bytes(in, in_len), "ch_out", handover_bytes(out, out_len), "out_line",
        handover_bytes(w->out[0].line ? w->out[0].line : "", w->out[0].len), "err_line",
        handover_bytes(w->out[1].line ? w->out[1].line : "", w->out[1].len));
    if (!o || json_object_set_new(o, "niced", json_pack("[b,b]", w->niced, w->niced_thread)) < 0) {
        json_decref(o);
        return NULL;
    }
    int fds[4] = {w->ch.fd, w->out[0].fd, w->out[1].fd, w->errpipe_fd};
    for (size_t i = 0; i < 4; i++) {
        if (fds[i] >= 0 && json_object_set_new(o, worker_saved_fields[i], handover_fd(h, fds[i])) < 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

static enum worker_state worker_state_parse(const char *s)
{
    for (int i = 0; i < WORKER__COUNT; i++) {
        if (s && strcmp(worker_state_to_string((enum worker_state)i), s) == 0) {
            return (enum worker_state)i;
        }
    }
    return WORKER__COUNT;
}

/* The partial line the previous image had read from a pipe. */
static int worker_adopt_output(struct worker *w, int stream, const json_t *line)
{
    struct worker_output *o = &w->out[stream];
    if (o->fd < 0) {
        return 0;
    }
    char *bytes;
    size_t n;
    int r = handover_bytes_get(line, &bytes, &n);
    if (r < 0 || n == 0) {
        free(bytes);
        return r;
    }
    if (n > WORKER_LINE_MAX) {
        free(bytes);
        return -EPROTO;
    }
    o->line = realloc(bytes, WORKER_LINE_MAX);
    if (!o->line) {
        free(bytes);
        return -ENOMEM;
    }
    o->len = n;
    o->cap = WORKER_LINE_MAX;
    return 0;
}

int worker_adopt(const struct worker_spec *spec, const json_t *saved, struct handover *h,
                 const struct worker_ops *ops, void *owner, struct worker **ret)
{
    struct ev_loop *loop = spec->loop;
    json_int_t pid = json_integer_value(json_object_get(saved, "pid"));
    enum worker_state state =
        worker_state_parse(json_string_value(json_object_get(saved, "state")));
    if (pid <= 0 || (state != WORKER_STARTING && state != WORKER_READY)) {
        return -EPROTO;
    }
    struct worker *w = worker_new(spec, ops, owner);
    if (!w) {
        return -ENOMEM;
    }
    w->id = (uint64_t)json_integer_value(json_object_get(saved, "id"));
    worker_ids_continue(w->id + 1);
    w->pid = w->last_pid = (pid_t)pid;
    w->state = state;
    w->started_at = json_real_value(json_object_get(saved, "started_at"));
    w->ready_at = json_real_value(json_object_get(saved, "ready_at"));
    w->alive_at = json_real_value(json_object_get(saved, "alive_at"));
    w->signals_sent = (unsigned)json_integer_value(json_object_get(saved, "signals_sent"));
    w->channel_used = json_is_true(json_object_get(saved, "channel_used"));
    w->spoke = json_is_true(json_object_get(saved, "spoke"));
    w->cpu_prev_ns = (uint64_t)json_integer_value(json_object_get(saved, "cpu_prev_ns"));
    /* A surge worker still waiting for its priority back gets it from this image. */
    w->niced = json_is_true(json_array_get(json_object_get(saved, "niced"), 0));
    w->niced_thread = json_is_true(json_array_get(json_object_get(saved, "niced"), 1));
    const char *status = json_string_value(json_object_get(saved, "status_text"));
    w->status_text = status ? strdup(status) : NULL;

    int fds[4];
    for (size_t i = 0; i < 4; i++) {
        fds[i] = handover_take(h, json_object_get(saved, worker_saved_fields[i]));
    }
    worker_watch(w, fds[3], fds[1], fds[2]);
    int r = worker_adopt_output(w, 0, json_object_get(saved, "out_line"));
    if (r == 0) {
        r = worker_adopt_output(w, 1, json_object_get(saved, "err_line"));
    }
    if (fds[0] >= 0) {
        char *in = NULL, *out = NULL;
        size_t in_len = 0, out_len = 0;
        if (r == 0) {
            r = handover_bytes_get(json_object_get(saved, "ch_in"), &in, &in_len);
        }
        if (r == 0) {
            r = handover_bytes_get(json_object_get(saved, "ch_out"), &out, &out_len);
        }
        int cr = channel_adopt(&w->ch, loop, fds[0], in ? in : "", in_len, out ? out : "",
                               out_len, worker_on_channel_msg, worker_on_channel_close, w);
        w->ch.on_drained = worker_on_channel_drained;
        w->ch.on_repeat = worker_on_channel_repeat;
        r = r < 0 ? r : cr;
        free(in);
        free(out);
    }
    ev_tstamp now = ev_now(loop);
    if (state == WORKER_STARTING) {
        /* The ready timer goes on from where it was: the same deadline as before the exec. */
        struct worker_facts facts = worker_facts_of(w);
        double wait = worker_state_first_wait(&facts);
        if (wait >= 0) {
            double left = wait - (now - w->started_at);
            ev_timer_set(&w->timer_w, left > 0.001 ? left : 0.001, 0.);
            ev_timer_start(loop, &w->timer_w);
        }
    } else if (w->cfg->watchdog_ms > 0) {
        double t = (double)w->cfg->watchdog_ms / 1000.0;
        double left = t - (now - w->alive_at);
        ev_timer_set(&w->watchdog_w, left > 0.001 ? left : 0.001, t);
        ev_timer_start(loop, &w->watchdog_w);
    }
    *ret = w;
    return r;
}
