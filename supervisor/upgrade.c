/*
 * upgrade: see upgrade.h.
 *
 * Reading order: upgrade_request() checks what can be judged at once and starts the probe;
 * upgrade_on_probe_exit() judges the candidate's answer; upgrade_commit() writes the state and
 * executes the candidate, which returns here only on failure. In the image that comes up,
 * upgrade_open() finds the outcome in the handed-over state and records it from the loop.
 */
#include "upgrade.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "app.h"
#include "events.h"
#include "handover.h"
#include "log.h"
#include "master.h"
#include "spawn.h"
#include "version.h"

/* How long the candidate may take to answer the probe. */
#define UPGRADE_PROBE_TIMEOUT 5.0
/* What of its answer is kept (the first line names a config error). */
#define UPGRADE_PROBE_OUTPUT 4096

struct upgrade {
    struct master *m;
    char *binary;               /* the candidate, while one is being tried */
    upgrade_answer_fn answer;
    void *asker;
    pid_t probe_pid;
    ev_child probe_w;
    ev_timer probe_timer;
    int probe_out;              /* its stdout and stderr */
    int probe_err;              /* the spawn error pipe */
    bool probe_timed_out;
    ev_timer outcome_w;         /* the image that came up records how it came */
    char *outcome_why;          /* given back: why */
    double outcome_ms;
    char *outcome_from;
    uint64_t counts[UPGRADE__COUNT];
};

static struct upgrade *upgrade_self; /* one per process, as the master */

static const char *const upgrade_result_names[UPGRADE__COUNT] = {"done", "rolled_back",
                                                                 "refused"};

const char *upgrade_result_to_string(enum upgrade_result result)
{
    return (unsigned)result < UPGRADE__COUNT ? upgrade_result_names[result] : NULL;
}

uint64_t upgrade_count(enum upgrade_result result)
{
    return upgrade_self && (unsigned)result < UPGRADE__COUNT ? upgrade_self->counts[result] : 0;
}

/* A try that ends in this image, counted and recorded (one event, which is its log record). */
static void upgrade_record(struct upgrade *u, enum upgrade_result result, const char *binary,
                           const char *why)
{
    u->counts[result]++;
    json_t *f = json_pack("{s:s, s:s, s:s}", "result", upgrade_result_names[result], "binary",
                          binary ? binary : "?", "version", drover_version);
    event_record(EVENT_UPGRADE, LOG_ERROR, (struct log_origin){NULL, -1, 0}, f, "upgrade %s: %s",
                 result == UPGRADE_REFUSED ? "refused" : "rolled back", why);
}

/* ... and, from a loop callback, answered. */
static void upgrade_finish(struct upgrade *u, enum upgrade_result result, const char *why)
{
    upgrade_record(u, result, u->binary, why);
    if (u->answer) {
        char msg[600];
        snprintf(msg, sizeof msg, "upgrade %s: %s",
                 result == UPGRADE_REFUSED ? "refused" : "rolled back", why);
        json_t *reply = json_pack("{s:b, s:s, s:s}", "ok", 0, "error", msg, "result",
                                  upgrade_result_names[result]);
        u->answer(u->asker, reply);
        json_decref(reply);
    }
    u->answer = NULL;
    u->asker = NULL;
    free(u->binary);
    u->binary = NULL;
}

void upgrade_forget(void *asker)
{
    if (upgrade_self && upgrade_self->asker == asker) {
        upgrade_self->answer = NULL;
        upgrade_self->asker = NULL;
    }
}

/* ---- the commit: state out, candidate in ---- */

static void upgrade_commit(struct upgrade *u)
{
    struct master *m = u->m;
    char why[512];
    if (!master_can_hand_over(m, why, sizeof why)) {
        upgrade_finish(u, UPGRADE_REFUSED, why);
        return;
    }
    struct handover *h = NULL;
    int r = handover_new(&h);
    json_t *doc = r == 0 ? handover_doc(h) : NULL;
    if (r == 0 && m->cfg->path && m->cfg->text) {
        r = json_object_set_new(doc, "config",
                                json_pack("{s:s, s:s%}", "path", m->cfg->path, "text",
                                          m->cfg->text, m->cfg->text_len)) < 0 ? -ENOMEM : 0;
    }
    if (r == 0) {
        r = json_object_set_new(doc, "upgrade",
                                json_pack("{s:s, s:f, s:s}", "from", drover_version, "at",
                                          ev_time(), "binary", u->binary)) < 0 ? -ENOMEM : 0;
    }
    if (r == 0) {
        r = master_save(m, h);
    }
    if (r == 0) {
        log_info("upgrade: executing %s (%s -> ?), every worker stays", u->binary,
                 drover_version);
        r = handover_exec(h, u->binary);
        snprintf(why, sizeof why, "cannot execute %s: %s", u->binary, strerror(-r));
    } else {
        snprintf(why, sizeof why, "cannot write the state: %s", strerror(-r));
    }
    /* Still here: nothing was handed over; this image goes on as it was. */
    handover_free(h);
    upgrade_finish(u, UPGRADE_ROLLED_BACK, why);
}

/* ---- the probe ---- */

static void upgrade_probe_close(struct upgrade *u)
{
    ev_timer_stop(u->m->loop, &u->probe_timer);
    ev_child_stop(u->m->loop, &u->probe_w);
    if (u->probe_out >= 0) {
        close(u->probe_out);
        u->probe_out = -1;
    }
    if (u->probe_err >= 0) {
        close(u->probe_err);
        u->probe_err = -1;
    }
    u->probe_pid = 0;
}

static void upgrade_on_probe_exit(struct ev_loop *loop, ev_child *c, int revents)
{
    struct upgrade *u = c->data;
    char out[UPGRADE_PROBE_OUTPUT + 1];
    ssize_t n = read(u->probe_out, out, UPGRADE_PROBE_OUTPUT);
    out[n > 0 ? n : 0] = '\0';
    struct spawn_error se;
    ssize_t en = read(u->probe_err, &se, sizeof se);
    int status = c->rstatus;
    bool timed_out = u->probe_timed_out;
    upgrade_probe_close(u);

    char why[600];
    unsigned version = 0;
    char *hello = strstr(out, "drover-handover ");
    if (en == (ssize_t)sizeof se) {
        snprintf(why, sizeof why, "cannot execute %s: %s", u->binary, strerror(se.err));
    } else if (timed_out) {
        snprintf(why, sizeof why, "%s did not answer --handover-probe within %.0f s", u->binary,
                 UPGRADE_PROBE_TIMEOUT);
    } else if (!hello || sscanf(hello, "drover-handover %u", &version) != 1) {
        char *nl = strchr(out, '\n');
        if (nl) {
            *nl = '\0';
        }
        snprintf(why, sizeof why, "%s is not a drover that can take over (%s%s%.*s)", u->binary,
                 WIFEXITED(status) ? "it exited" : "killed by a signal", *out ? ": " : "", (int)200, out);
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        /* The candidate's own word on the config: "FILE:LINE: message". */
        char *msg = strchr(hello, '\n');
        msg = msg ? msg + 1 : hello;
        char *nl = strchr(msg, '\n');
        if (nl) {
            *nl = '\0';
        }
        snprintf(why, sizeof why, "the config does not pass %s: %.300s", u->binary, msg);
        upgrade_finish(u, UPGRADE_REFUSED, why);
        return;
    } else {
        upgrade_commit(u);
        return;
    }
    upgrade_finish(u, UPGRADE_ROLLED_BACK, why);
}

static void upgrade_on_probe_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct upgrade *u = t->data;
    u->probe_timed_out = true;
    if (u->probe_pid > 0) {
        kill(-u->probe_pid, SIGKILL);
    }
}

static int upgrade_probe_start(struct upgrade *u, char *why, size_t size)
{
    extern char **environ;
    char **argv = handover_argv();
    size_t n = 0;
    while (argv[n]) {
        n++;
    }
    char **pargv = calloc(n + 2, sizeof *pargv);
    int pipefd[2] = {-1, -1};
    if (!pargv || pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) == -1) {
        free(pargv);
        snprintf(why, size, "cannot start the probe: %s", strerror(errno ? errno : ENOMEM));
        return -ENOMEM;
    }
    pargv[0] = u->binary;
    pargv[1] = "--handover-probe";
    for (size_t i = 1; i < n; i++) {
        pargv[i + 1] = argv[i];
    }
    struct spawn_plan plan = {.path = u->binary, .argv = pargv, .envp = environ};
    plan.fds[plan.n_fds++] = u->m->null_fd;
    plan.fds[plan.n_fds++] = pipefd[1];
    plan.fds[plan.n_fds++] = pipefd[1];
    pid_t pid = 0;
    int errfd = -1;
    int r = spawn_start(&plan, &pid, &errfd);
    free(pargv);
    close(pipefd[1]);
    if (r < 0) {
        close(pipefd[0]);
        snprintf(why, size, "cannot start the probe: %s", strerror(-r));
        return r;
    }
    u->probe_pid = pid;
    u->probe_out = pipefd[0];
    u->probe_err = errfd;
    u->probe_timed_out = false;
    ev_child_init(&u->probe_w, upgrade_on_probe_exit, pid, 0);
    u->probe_w.data = u;
    ev_child_start(u->m->loop, &u->probe_w);
    ev_timer_init(&u->probe_timer, upgrade_on_probe_timeout, UPGRADE_PROBE_TIMEOUT, 0.);
    u->probe_timer.data = u;
    ev_timer_start(u->m->loop, &u->probe_timer);
    return 0;
}

int upgrade_request(struct master *m, const char *binary, upgrade_answer_fn answer, void *asker,
                    char **ret_why)
{
    struct upgrade *u = upgrade_self;
    char why[512];
    int r = -EBUSY;
    *ret_why = NULL;
    if (!u) {
        snprintf(why, sizeof why, "upgrades are not available");
        r = -ENOTSUP;
        goto refuse;
    }
    if (u->binary) {
        snprintf(why, sizeof why, "an upgrade to %s is in progress", u->binary);
        goto refuse;
    }
    if (!master_can_hand_over(m, why, sizeof why)) {
        goto refuse;
    }
    const char *path = binary ? binary : handover_default_binary();
    if (!path) {
        snprintf(why, sizeof why, "drover's own path is not known; give --binary");
        r = -ENOENT;
        goto refuse;
    }
    /* A path that does not exist or cannot be executed is the probe's to find (its exec
     * fails): answered, like every other failed candidate, from the loop. */
    u->binary = strdup(path);
    if (!u->binary) {
        snprintf(why, sizeof why, "out of memory");
        r = -ENOMEM;
        goto refuse;
    }
    r = upgrade_probe_start(u, why, sizeof why);
    if (r < 0) {
        free(u->binary);
        u->binary = NULL;
        goto refuse;
    }
    u->answer = answer;
    u->asker = asker;
    log_info("upgrade: asking %s whether it can take over", u->binary);
    return 0;

refuse:
    if (u) {
        upgrade_record(u, UPGRADE_REFUSED, binary, why);
    } else {
        log_warn("upgrade refused: %s", why);
    }
    *ret_why = strdup(why);
    return r;
}

/* ---- the part ---- */

void upgrade_outcome(struct upgrade_outcome *ret)
{
    const struct upgrade *u = upgrade_self;
    *ret = (struct upgrade_outcome){
        .from = u && u->outcome_from ? u->outcome_from : "?",
        .took_ms = u ? u->outcome_ms : 0,
        .given_back = u ? u->outcome_why : NULL,
    };
}

static void upgrade_on_outcome(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct upgrade *u = t->data;
    bool back = u->outcome_why != NULL;
    json_t *f = json_pack("{s:s, s:s, s:s, s:f}", "result", back ? "rolled_back" : "done",
                          "from", u->outcome_from ? u->outcome_from : "?", "version",
                          drover_version, "took_ms", u->outcome_ms);
    if (back) {
        event_record(EVENT_UPGRADE, LOG_ERROR, (struct log_origin){NULL, -1, 0}, f,
                     "upgrade rolled back: %s", u->outcome_why);
    } else {
        event_record(EVENT_UPGRADE, LOG_INFO, (struct log_origin){NULL, -1, 0}, f,
                     "upgrade done: %s -> %s in %.1f ms, every worker kept",
                     u->outcome_from ? u->outcome_from : "?", drover_version, u->outcome_ms);
    }
}

int upgrade_open(struct master *m, struct upgrade **ret)
{
    struct upgrade *u = calloc(1, sizeof *u);
    if (!u) {
        return -ENOMEM;
    }
    u->m = m;
    u->probe_out = u->probe_err = -1;
    ev_init(&u->outcome_w, upgrade_on_outcome);
    u->outcome_w.data = u;
    const json_t *saved = handover_get(handover_incoming(), "upgrade");
    if (saved) {
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(saved, "counts"), i, v) {
            if (i < UPGRADE__COUNT) {
                u->counts[i] = (uint64_t)json_integer_value(v);
            }
        }
        const char *back = handover_given_back();
        u->counts[back ? UPGRADE_ROLLED_BACK : UPGRADE_DONE]++;
        u->outcome_why = back ? strdup(back) : NULL;
        const char *from = json_string_value(json_object_get(saved, "from"));
        u->outcome_from = from ? strdup(from) : NULL;
        u->outcome_ms = (ev_time() - json_real_value(json_object_get(saved, "at"))) * 1000.0;
        /* Recorded once the loop runs: this image may still give the state back. */
        ev_timer_set(&u->outcome_w, 0., 0.);
        ev_timer_start(m->loop, &u->outcome_w);
    }
    upgrade_self = u;
    *ret = u;
    return 0;
}

int upgrade_save(struct upgrade *u, struct handover *h)
{
    json_t *saved = json_object_get(handover_doc(h), "upgrade");
    json_t *counts = json_array();
    for (int i = 0; counts && i < UPGRADE__COUNT; i++) {
        json_array_append_new(counts, json_integer((json_int_t)u->counts[i]));
    }
    return saved && counts && json_object_set_new(saved, "counts", counts) == 0 ? 0 : -ENOMEM;
}

void upgrade_close(struct upgrade *u)
{
    if (!u) {
        return;
    }
    if (u->probe_pid > 0) {
        kill(-u->probe_pid, SIGKILL);
    }
    upgrade_probe_close(u);
    ev_timer_stop(u->m->loop, &u->outcome_w);
    free(u->binary);
    free(u->outcome_why);
    free(u->outcome_from);
    if (upgrade_self == u) {
        upgrade_self = NULL;
    }
    free(u);
}
