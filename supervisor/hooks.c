/*
 * hooks: exec and url hooks over the event ring. See hooks.h.
 *
 * Reading order: hooks_on_event() (an event follower, so it only queues) puts the event's line
 * in the queue of every hook whose types match and asks for a kick; hooks_on_kick() (an
 * ev_idle, so from a later loop turn) starts the next run of every idle hook: hook_exec_start()
 * or hook_url_start(). A run ends in hook_run_end(), which counts its result and kicks again.
 * libcurl is driven by the two callbacks of its multi socket interface, which turn into ev_io
 * and ev_timer watchers.
 */
#include "hooks.h"

#include <curl/curl.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "events.h"
#include "handover.h"
#include "log.h"
#include "master.h"
#include "spawn.h"

extern char **environ;

/* The counters of every hook that ever was, by name (bounded: hooks are few). */
#define HOOKS_STATS_MAX 64
static struct hooks_stat hook_stats[HOOKS_STATS_MAX];
static char *hook_stat_names[HOOKS_STATS_MAX];
static size_t n_hook_stats;

#define HOOK_OUT_LINE_MAX 4096

struct hook;

/* One run: a process or a request, for the event at the head of its hook's queue. */
struct hook_run {
    struct hook *hook;
    /* exec */
    pid_t pid;
    int in_fd;                  /* the write end of the hook's stdin, while the event goes in */
    ev_io in_w;
    const char *in_data;        /* the event, in the hook's queue until the run ends */
    size_t in_len, in_off;
    ev_child child_w;
    int out_fd;
    ev_io out_w;
    char line[HOOK_OUT_LINE_MAX];
    size_t line_len;
    unsigned lines;             /* output lines logged */
    bool truncated;
    bool exited;
    int status;
    ev_timer timeout_w;
    bool timed_out;
    /* url */
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    unsigned attempt;
    ev_timer retry_w;
};

struct hook {
    struct hooks *set;
    const struct config_hook *cfg;  /* in set->cfg; NULL once the hook left the config */
    char *name;
    struct hooks_stat *stat;
    char *queue[HOOKS_QUEUE_MAX];   /* event lines, oldest at head */
    size_t head, n;
    struct hook_run *run;           /* NULL when idle */
    bool drop_logged;
};

struct hooks {
    struct master *m;
    struct ev_loop *loop;
    struct config *cfg;             /* a reference: the hooks' settings */
    struct hook *hooks[HOOKS_STATS_MAX];
    size_t n;
    struct event_follower follower;
    struct master_observer observer;
    ev_idle kick_w;
    CURLM *multi;
    ev_timer curl_w;
};

static void hook_next(struct hook *k);
static void hook_stdin_close(struct hook_run *run, struct ev_loop *loop);

static struct hooks_stat *hook_stat_for(const char *name)
{
    for (size_t i = 0; i < n_hook_stats; i++) {
        if (strcmp(hook_stat_names[i], name) == 0) {
            return &hook_stats[i];
        }
    }
    if (n_hook_stats == HOOKS_STATS_MAX) {
        return NULL;
    }
    char *copy = strdup(name);
    if (!copy) {
        return NULL;
    }
    hook_stat_names[n_hook_stats] = copy;
    hook_stats[n_hook_stats] = (struct hooks_stat){.name = copy};
    return &hook_stats[n_hook_stats++];
}

size_t hooks_stats(const struct hooks_stat **ret)
{
    *ret = hook_stats;
    return n_hook_stats;
}

static struct log_origin hook_origin(void)
{
    return LOG_MASTER;
}

/* ---- upgrade in place (SPEC section 12): the counters go on ---- */

int hooks_save(struct hooks *h, struct handover *ho)
{
    (void)h;
    json_t *saved = json_array();
    for (size_t i = 0; saved && i < n_hook_stats; i++) {
        const struct hooks_stat *st = &hook_stats[i];
        json_array_append_new(saved, json_pack("{s:s, s:I, s:I, s:I, s:I}", "name", st->name,
                                               "ok", (json_int_t)st->ok, "failed",
                                               (json_int_t)st->failed, "timeout",
                                               (json_int_t)st->timeout, "dropped",
                                               (json_int_t)st->dropped));
    }
    return saved && json_object_set_new(handover_doc(ho), "hooks", saved) == 0 ? 0 : -ENOMEM;
}

static void hooks_restore_stats(void)
{
    size_t i;
    json_t *v;
    json_array_foreach(handover_get(handover_incoming(), "hooks"), i, v) {
        const char *name = json_string_value(json_object_get(v, "name"));
        struct hooks_stat *st = name ? hook_stat_for(name) : NULL;
        if (st) {
            st->ok = (uint64_t)json_integer_value(json_object_get(v, "ok"));
            st->failed = (uint64_t)json_integer_value(json_object_get(v, "failed"));
            st->timeout = (uint64_t)json_integer_value(json_object_get(v, "timeout"));
            st->dropped = (uint64_t)json_integer_value(json_object_get(v, "dropped"));
        }
    }
}

/* ---- the end of a run ---- */

static void hook_kick(struct hooks *h)
{
    ev_idle_start(h->loop, &h->kick_w);
}

static void hook_pop(struct hook *k)
{
    free(k->queue[k->head]);
    k->queue[k->head] = NULL;
    k->head = (k->head + 1) % HOOKS_QUEUE_MAX;
    k->n--;
}

/* result: "ok", "failed" or "timeout"; why says more for a failure. */
static void hook_run_end(struct hook *k, const char *result, const char *why)
{
    struct hook_run *run = k->run;
    struct hooks *h = k->set;
    if (run->easy) {
        curl_multi_remove_handle(h->multi, run->easy);
        curl_easy_cleanup(run->easy);
    }
    curl_slist_free_all(run->headers);
    free(run->body);
    ev_timer_stop(h->loop, &run->timeout_w);
    ev_timer_stop(h->loop, &run->retry_w);
    hook_stdin_close(run, h->loop);
    if (run->out_fd >= 0) {
        ev_io_stop(h->loop, &run->out_w);
        close(run->out_fd);
    }
    ev_child_stop(h->loop, &run->child_w);
    free(run);
    k->run = NULL;
    if (k->stat) {
        if (strcmp(result, "ok") == 0) {
            k->stat->ok++;
        } else if (strcmp(result, "timeout") == 0) {
            k->stat->timeout++;
        } else {
            k->stat->failed++;
        }
    }
    json_t *f = json_pack("{s:s, s:s}", "hook", k->name, "result", result);
    log_record(strcmp(result, "ok") == 0 ? LOG_DEBUG : LOG_WARN, hook_origin(), f,
               "hook '%s': %s%s%s", k->name, result, why ? ": " : "", why ? why : "");
    hook_pop(k);
    hook_kick(h);
}

/* ---- exec ---- */

static void hook_exec_line(struct hook_run *run, const char *s, size_t len)
{
    struct hook *k = run->hook;
    if (run->lines == HOOKS_OUTPUT_LINES_MAX) {
        if (!run->truncated) {
            run->truncated = true;
            log_record(LOG_WARN, hook_origin(), json_pack("{s:s}", "hook", k->name),
                       "hook '%s': more than %d lines of output; the rest is dropped", k->name,
                       HOOKS_OUTPUT_LINES_MAX);
        }
        return;
    }
    run->lines++;
    json_t *f = json_pack("{s:s}", "hook", k->name);
    json_t *msg = log_json_text(s, len);
    log_record(LOG_INFO, hook_origin(), f, "hook '%s': %s", k->name,
               msg ? json_string_value(msg) : "?");
    json_decref(msg);
}

/* Ends the run once both the process and its output are done. */
static void hook_exec_check(struct hook_run *run)
{
    if (!run->exited || run->out_fd >= 0) {
        return;
    }
    struct hook *k = run->hook;
    char why[64];
    if (run->timed_out) {
        snprintf(why, sizeof why, "killed after %llu ms",
                 (unsigned long long)(k->cfg ? k->cfg->timeout_ms : 0));
        hook_run_end(k, "timeout", why);
    } else if (WIFEXITED(run->status) && WEXITSTATUS(run->status) == 0) {
        hook_run_end(k, "ok", NULL);
    } else if (WIFEXITED(run->status)) {
        snprintf(why, sizeof why, "exit code %d", WEXITSTATUS(run->status));
        hook_run_end(k, "failed", why);
    } else {
        const char *sig = WIFSIGNALED(run->status) ? sigabbrev_np(WTERMSIG(run->status)) : NULL;
        snprintf(why, sizeof why, "killed by SIG%s", sig ? sig : "?");
        hook_run_end(k, "failed", why);
    }
}

static void hook_on_output(struct ev_loop *loop, ev_io *io, int revents)
{
    struct hook_run *run = io->data;
    (void)revents;
    char buf[16384];
    /* A bounded read per turn: a flooding hook shares the loop, it does not take it. */
    for (int round = 0; round < 4; round++) {
        ssize_t n = read(run->out_fd, buf, sizeof buf);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            return;
        }
        if (n <= 0) {
            if (run->line_len > 0) {
                hook_exec_line(run, run->line, run->line_len);
            }
            ev_io_stop(loop, io);
            close(run->out_fd);
            run->out_fd = -1;
            hook_exec_check(run);
            return;
        }
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n' || run->line_len == sizeof run->line) {
                hook_exec_line(run, run->line, run->line_len);
                run->line_len = 0;
                if (buf[i] == '\n') {
                    continue;
                }
            }
            run->line[run->line_len++] = buf[i];
        }
    }
}

static void hook_on_exit(struct ev_loop *loop, ev_child *c, int revents)
{
    struct hook_run *run = c->data;
    (void)revents;
    ev_child_stop(loop, c);
    run->exited = true;
    run->status = c->rstatus;
    /* What is left in the group (a backgrounded child holding the pipe) goes with it. */
    (void)kill(-run->pid, SIGKILL);
    run->pid = 0;
    ev_timer_stop(loop, &run->timeout_w);
    hook_exec_check(run);
}

static void hook_on_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct hook_run *run = t->data;
    (void)loop;
    (void)revents;
    if (run->pid > 0) {
        run->timed_out = true;
        (void)kill(-run->pid, SIGKILL);
    }
}

static void hook_stdin_close(struct hook_run *run, struct ev_loop *loop)
{
    if (run->in_fd >= 0) {
        ev_io_stop(loop, &run->in_w);
        close(run->in_fd);
        run->in_fd = -1;
    }
}

static void hook_on_stdin(struct ev_loop *loop, ev_io *io, int revents)
{
    struct hook_run *run = io->data;
    (void)revents;
    while (run->in_off < run->in_len) {
        ssize_t n = write(run->in_fd, run->in_data + run->in_off, run->in_len - run->in_off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            ev_io_start(loop, io); /* the rest when the hook has read some */
            return;
        }
        if (n <= 0) {
            break; /* the hook closed its stdin (EPIPE): what it read is what it gets */
        }
        run->in_off += (size_t)n;
    }
    hook_stdin_close(run, loop); /* EOF: the whole event is in */
}

static int hook_exec_start(struct hook *k, const char *event, struct hook_run *run)
{
    struct hooks *h = k->set;
    int in[2] = {-1, -1}, out[2] = {-1, -1}, errfd = -1;
    char *path = NULL;
    int r = spawn_resolve(k->cfg->argv[0], getenv("PATH"), &path);
    if (r < 0) {
        return r;
    }
    /* Only drover's ends are non-blocking: the hook reads and writes as any program does. */
    if (pipe2(in, O_CLOEXEC) == -1 || pipe2(out, O_CLOEXEC) == -1 ||
        fcntl(out[0], F_SETFL, O_NONBLOCK) == -1 || fcntl(in[1], F_SETFL, O_NONBLOCK) == -1) {
        r = -errno;
        goto out;
    }
    struct spawn_plan plan = {
        .path = path,
        .argv = k->cfg->argv,
        .envp = environ,
        .fds = {in[0], out[1], out[1]},
        .n_fds = 3,
    };
    r = spawn_start(&plan, &run->pid, &errfd);
    if (r < 0) {
        goto out;
    }
    close(errfd); /* an exec failure shows as exit code 127 */
    ev_child_init(&run->child_w, hook_on_exit, run->pid, 0);
    run->child_w.data = run;
    ev_child_start(h->loop, &run->child_w);
    run->out_fd = out[0];
    out[0] = -1;
    ev_io_init(&run->out_w, hook_on_output, run->out_fd, EV_READ);
    run->out_w.data = run;
    ev_io_start(h->loop, &run->out_w);
    ev_timer_init(&run->timeout_w, hook_on_timeout, (double)k->cfg->timeout_ms / 1000.0, 0.);
    run->timeout_w.data = run;
    ev_timer_start(h->loop, &run->timeout_w);
    /* The event goes in as the hook reads it: most fit the pipe at once, a large one (a
     * reload's record of many slots) follows as there is room; never a blocking write. */
    run->in_fd = in[1];
    in[1] = -1;
    run->in_data = event;
    run->in_len = strlen(event);
    ev_io_init(&run->in_w, hook_on_stdin, run->in_fd, EV_WRITE);
    run->in_w.data = run;
    hook_on_stdin(h->loop, &run->in_w, EV_WRITE);
    r = 0;
out:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0) {
            close(in[i]);
        }
    }
    if (out[1] >= 0) {
        close(out[1]);
    }
    if (out[0] >= 0) {
        close(out[0]);
    }
    free(path);
    return r;
}

/* ---- url: libcurl's multi socket interface on the loop ---- */

static size_t hook_discard(char *p, size_t size, size_t n, void *data)
{
    (void)p;
    (void)data;
    return size * n;
}

static int hook_url_attempt(struct hook *k, struct hook_run *run)
{
    struct hooks *h = k->set;
    run->easy = curl_easy_init();
    if (!run->easy) {
        return -ENOMEM;
    }
    CURL *e = run->easy;
    curl_easy_setopt(e, CURLOPT_URL, k->cfg->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, run->body);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, run->headers);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)k->cfg->timeout_ms);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, hook_discard);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "drover/" DROVER_VERSION);
    curl_easy_setopt(e, CURLOPT_PRIVATE, run);
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        run->easy = NULL;
        return -ENOMEM;
    }
    return 0;
}

static void hook_on_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct hook_run *run = t->data;
    (void)loop;
    (void)revents;
    if (hook_url_attempt(run->hook, run) < 0) {
        hook_run_end(run->hook, "failed", "out of memory");
    }
}

/* A transfer is over: done, or tried again after 0.2 s, 0.4 s, ... up to `retries` times. */
static void hook_url_done(struct hook_run *run, CURLcode code)
{
    struct hook *k = run->hook;
    long status = 0;
    curl_easy_getinfo(run->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(k->set->multi, run->easy);
    curl_easy_cleanup(run->easy);
    run->easy = NULL;
    if (code == CURLE_OK && status >= 200 && status < 300) {
        hook_run_end(k, "ok", NULL);
        return;
    }
    char why[160];
    if (code != CURLE_OK) {
        snprintf(why, sizeof why, "%s", curl_easy_strerror(code));
    } else {
        snprintf(why, sizeof why, "HTTP %ld", status);
    }
    unsigned retries = k->cfg ? k->cfg->retries : 0;
    if (run->attempt >= retries) {
        char more[200];
        snprintf(more, sizeof more, "%s (after %u tries)", why, run->attempt + 1);
        hook_run_end(k, code == CURLE_OPERATION_TIMEDOUT ? "timeout" : "failed", more);
        return;
    }
    double delay = 0.2 * (double)(1u << (run->attempt < 6 ? run->attempt : 6));
    run->attempt++;
    ev_timer_set(&run->retry_w, delay, 0.);
    ev_timer_start(k->set->loop, &run->retry_w);
}

static void hooks_curl_results(struct hooks *h)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(h->multi, &left))) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        struct hook_run *run = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&run);
        if (run) {
            hook_url_done(run, msg->data.result);
        }
    }
}

static void hooks_on_curl_io(struct ev_loop *loop, ev_io *io, int revents)
{
    struct hooks *h = io->data;
    (void)loop;
    int flags = (revents & EV_READ ? CURL_CSELECT_IN : 0) | (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(h->multi, io->fd, flags, &running);
    hooks_curl_results(h);
}

static void hooks_on_curl_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct hooks *h = t->data;
    (void)loop;
    (void)revents;
    int running;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    hooks_curl_results(h);
}

/* curl tells which sockets to watch for what; each gets an ev_io of its own. */
static int hooks_curl_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct hooks *h = userp;
    ev_io *io = socketp;
    (void)e;
    if (what == CURL_POLL_REMOVE) {
        if (io) {
            ev_io_stop(h->loop, io);
            free(io);
            curl_multi_assign(h->multi, s, NULL);
        }
        return 0;
    }
    int events = (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
    if (!io) {
        io = calloc(1, sizeof *io);
        if (!io) {
            return -1;
        }
        ev_io_init(io, hooks_on_curl_io, s, events);
        io->data = h;
        curl_multi_assign(h->multi, s, io);
    } else {
        ev_io_stop(h->loop, io);
        ev_io_set(io, s, events);
    }
    ev_io_start(h->loop, io);
    return 0;
}

static int hooks_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct hooks *h = userp;
    (void)multi;
    ev_timer_stop(h->loop, &h->curl_w);
    if (timeout_ms >= 0) {
        /* 0 means at once: from the loop, not from inside curl's call. */
        ev_timer_set(&h->curl_w, (double)timeout_ms / 1000.0, 0.);
        ev_timer_start(h->loop, &h->curl_w);
    }
    return 0;
}

static int hook_url_start(struct hook *k, const char *event, struct hook_run *run)
{
    run->body = strdup(event);
    run->headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (!run->body || !run->headers) {
        return -ENOMEM;
    }
    ev_timer_init(&run->retry_w, hook_on_retry, 0., 0.);
    run->retry_w.data = run;
    return hook_url_attempt(k, run);
}

/* ---- the queue ---- */

static void hook_next(struct hook *k)
{
    if (k->run || k->n == 0) {
        return;
    }
    if (!k->cfg) { /* gone from the config: what it still held is dropped */
        while (k->n > 0) {
            hook_pop(k);
        }
        return;
    }
    struct hook_run *run = calloc(1, sizeof *run);
    if (!run) {
        return; /* tried again at the next kick */
    }
    run->hook = k;
    run->out_fd = -1;
    run->in_fd = -1;
    ev_timer_init(&run->timeout_w, hook_on_timeout, 0., 0.);
    ev_timer_init(&run->retry_w, hook_on_retry, 0., 0.);
    ev_child_init(&run->child_w, hook_on_exit, 0, 0);
    k->run = run;
    const char *event = k->queue[k->head];
    int r = k->cfg->exec ? hook_exec_start(k, event, run) : hook_url_start(k, event, run);
    if (r < 0) {
        char why[128];
        snprintf(why, sizeof why, "%s: %s", k->cfg->exec ? "cannot start" : "cannot send",
                 strerror(-r));
        hook_run_end(k, "failed", why);
    }
}

static void hooks_on_kick(struct ev_loop *loop, ev_idle *w, int revents)
{
    struct hooks *h = w->data;
    (void)revents;
    ev_idle_stop(loop, w);
    for (size_t i = 0; i < h->n; i++) {
        hook_next(h->hooks[i]);
    }
}

/* An event follower: only queues (see events.h). */
static int hooks_configure(struct hooks *h, struct config *cfg);

static void hooks_on_event(const struct event *ev, void *data)
{
    struct hooks *h = data;
    /* A reload switches the config before its last events: those already go to the new hooks. */
    if (h->m->cfg != h->cfg && hooks_configure(h, h->m->cfg) < 0) {
        log_error("hooks: out of memory taking the new config; keeping the old hooks");
    }
    for (size_t i = 0; i < h->n; i++) {
        struct hook *k = h->hooks[i];
        if (!k->cfg || !(k->cfg->events & ((event_mask)1 << ev->type))) {
            continue;
        }
        char *copy = k->n < HOOKS_QUEUE_MAX ? strndup(ev->line, ev->len) : NULL;
        if (!copy) {
            if (k->stat) {
                k->stat->dropped++;
            }
            if (!k->drop_logged) {
                k->drop_logged = true; /* once per hook: a flood would only flood the log */
                log_record(LOG_WARN, hook_origin(), json_pack("{s:s}", "hook", k->name),
                           "hook '%s' is behind: events dropped (see drover_hook_dropped_total)",
                           k->name);
            }
            continue;
        }
        k->queue[(k->head + k->n) % HOOKS_QUEUE_MAX] = copy;
        k->n++;
        hook_kick(h);
    }
}

/* ---- following the config ---- */

static struct hook *hooks_find(struct hooks *h, const char *name)
{
    for (size_t i = 0; i < h->n; i++) {
        if (strcmp(h->hooks[i]->name, name) == 0) {
            return h->hooks[i];
        }
    }
    return NULL;
}

/* Takes the hooks of cfg: known names keep their queue, run and counters. */
static int hooks_configure(struct hooks *h, struct config *cfg)
{
    for (size_t i = 0; i < h->n; i++) {
        h->hooks[i]->cfg = NULL;
    }
    for (size_t i = 0; i < cfg->n_hooks; i++) {
        const struct config_hook *c = &cfg->hooks[i];
        struct hook *k = hooks_find(h, c->name);
        if (!k) {
            if (h->n == HOOKS_STATS_MAX) {
                continue;
            }
            k = calloc(1, sizeof *k);
            if (!k || !(k->name = strdup(c->name))) {
                free(k);
                return -ENOMEM;
            }
            k->set = h;
            k->stat = hook_stat_for(c->name);
            h->hooks[h->n++] = k;
        }
        k->cfg = c;
        k->drop_logged = false;
    }
    config_ref(cfg);
    config_unref(h->cfg);
    h->cfg = cfg;
    hook_kick(h);
    return 0;
}

static void hooks_on_reload(struct master_observer *o, bool done)
{
    struct hooks *h = (struct hooks *)(void *)((char *)o - offsetof(struct hooks, observer));
    if (done && h->m->cfg != h->cfg && hooks_configure(h, h->m->cfg) < 0) {
        log_error("hooks: out of memory taking the new config; keeping the old hooks");
    }
}

int hooks_open(struct master *m, struct hooks **ret)
{
    struct hooks *h = calloc(1, sizeof *h);
    if (!h) {
        log_error("hooks: out of memory");
        return -ENOMEM;
    }
    h->m = m;
    h->loop = m->loop;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(h->multi = curl_multi_init())) {
        log_error("hooks: libcurl cannot start");
        free(h);
        return -ENOMEM;
    }
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, hooks_curl_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, hooks_curl_timer);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    ev_timer_init(&h->curl_w, hooks_on_curl_timer, 0., 0.);
    h->curl_w.data = h;
    ev_idle_init(&h->kick_w, hooks_on_kick);
    h->kick_w.data = h;
    if (hooks_configure(h, m->cfg) < 0) {
        log_error("hooks: out of memory");
        hooks_close(h);
        return -ENOMEM;
    }
    hooks_restore_stats();
    h->follower = (struct event_follower){.fn = hooks_on_event, .data = h};
    events_follow(&h->follower);
    h->observer.on_reload = hooks_on_reload;
    master_observe(m, &h->observer);
    *ret = h;
    return 0;
}

void hooks_close(struct hooks *h)
{
    if (!h) {
        return;
    }
    events_unfollow(&h->follower);
    master_unobserve(h->m, &h->observer);
    ev_idle_stop(h->loop, &h->kick_w);
    for (size_t i = 0; i < h->n; i++) {
        struct hook *k = h->hooks[i];
        if (k->run) {
            if (k->run->pid > 0) {
                (void)kill(-k->run->pid, SIGKILL);
            }
            hook_run_end(k, "failed", "drover is stopping");
        }
        while (k->n > 0) {
            hook_pop(k);
        }
        free(k->name);
        free(k);
    }
    ev_idle_stop(h->loop, &h->kick_w);
    ev_timer_stop(h->loop, &h->curl_w);
    curl_multi_cleanup(h->multi);
    curl_global_cleanup();
    config_unref(h->cfg);
    free(h);
}
