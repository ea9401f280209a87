/*
 * droverctl: the control CLI (SPEC sections 2 and 7). It turns a command line into one control
 * request (wire_request_format, the same code drover parses it with), sends it over the control
 * socket, and turns the reply lines into a short human answer, or prints them raw with --json.
 *
 * It is a plain blocking client: one connection, poll() with a deadline on every wait. Quick
 * commands give up after --timeout (30 s by default); commands that wait for drover to finish
 * something (scale, start, stop, reload, restart) wait as long as drover takes, which drover
 * bounds itself, unless --timeout is given; `logs -f` follows until SIGINT.
 *
 * Exit status: 0 done, 1 the command failed (drover said ok:false), 2 usage error, 3 no drover
 * answers at the socket. Only main() chooses it.
 */
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "ctlclient.h"
#include "ctlview.h"
#include "top.h"
#include "wire.h"

enum ctl_exit { CTL_OK = 0, CTL_FAILED = 1, CTL_USAGE = 2, CTL_NO_DROVER = 3 };

#define CTL_TIMEOUT_DEFAULT 30.0
/* After `stop`, how long to wait for drover's process to go once it closed the socket. */
#define CTL_EXIT_WAIT 60.0

struct ctl {
    const char *socket;
    bool json;
    double timeout;         /* < 0: not given */
    bool color;
    struct wire_request req;
    struct ctlclient cl;
};

static volatile sig_atomic_t ctl_interrupted;

static void ctl_on_sigint(int sig)
{
    ctl_interrupted = 1;
}

static void ctl_usage(FILE *f)
{
    fprintf(f,
            "usage: droverctl [-s SOCKET] [--json] [--timeout SECONDS] COMMAND [ARGS]\n"
            "\n"
            "commands:\n"
            "  status [APP]            workers of every app (or of APP): pid, state, uptime,\n"
            "                          restarts, memory, CPU\n"
            "  scale APP N|+N|-N|auto  set the number of workers; waits until they are ready\n"
            "                          (auto: an app with workers = MIN..MAX scales itself again)\n"
            "  start APP               start a stopped app; waits until its workers are ready\n"
            "  stop [APP]              stop APP (six phases), or without APP the whole drover\n"
            "  restart APP [SLOT]      replace the workers of APP (or one), one by one\n"
            "  reload [APP] [--dry-run]  re-read the config, then a rolling reload;\n"
            "                          --dry-run: only say what it would change\n"
            "  logs [APP] [-n N] [-f]  the last N (50) lines of worker output; -f follows\n"
            "  events [--since SEQ] [-f]\n"
            "                          lifecycle events (the last 1000, or those after SEQ);\n"
            "                          -f follows\n"
            "  metrics [--json]        the combined metrics page\n"
            "  upgrade [--binary PATH] execute a new drover program under the same pid, every\n"
            "                          worker kept (default: the path drover started from);\n"
            "                          exit 1 when it rolled back\n"
            "  top [--once] [--interval SECONDS]\n"
            "                          a live view of apps, workers and events, refreshed every\n"
            "                          second (q or Ctrl-C quits); --once prints one frame\n"
            "\n"
            "options:\n"
            "  -s, --socket PATH       the control socket; default: $DROVER_SOCKET if set, else\n"
            "                          where drover puts it: $XDG_RUNTIME_DIR/drover.sock,\n"
            "                          else ./drover.sock\n"
            "      --json              print drover's replies as they are (JSON lines)\n"
            "  -t, --timeout SECONDS   give up after this long; 0 = never (default: 30 s, and\n"
            "                          no limit for scale, start, stop, restart, reload)\n"
            "  -h, --help              this text\n"
            "      --version           droverctl's version\n"
            "\n"
            "exit status: 0 done, 1 the command failed, 2 usage error,\n"
            "             3 no drover answers at the socket\n");
}

static int ctl_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int ctl_usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("droverctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n", stderr);
    ctl_usage(stderr);
    return CTL_USAGE;
}

/* ---- human output (the words themselves are ctlview's) ---- */

/* The reply's reason is the restart-accounting word of the metrics (SPEC section 6); a person
 * reads what was done. */
static const char *ctl_replace_verb(const char *reason)
{
    static const char *const verbs[][2] = {
        {"reload", "reload"}, {"manual", "restart"}, {"memory", "memory replacement"}};
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        if (strcmp(reason, verbs[i][0]) == 0) {
            return verbs[i][1];
        }
    }
    return "replacement";
}

/* One app's reload or restart result: the outcome, then each slot's old and new pid. */
static void ctl_print_replace(json_t *res, FILE *f)
{
    const char *outcome = ctlview_string(res, "outcome", "?");
    fprintf(f, "%s: %s %s", ctlview_string(res, "app", "?"),
            ctl_replace_verb(ctlview_string(res, "reason", "reload")),
            strcmp(outcome, "rolled_back") == 0 ? "rolled back" : outcome);
    if (json_object_get(res, "generation")) {
        fprintf(f, ", generation %.0f", ctlview_number(res, "generation"));
    }
    if (json_object_get(res, "duration_s")) {
        fprintf(f, " (%.2f s)", ctlview_number(res, "duration_s"));
    }
    fputc('\n', f);
    size_t i;
    json_t *slot;
    json_array_foreach(json_object_get(res, "slots"), i, slot) {
        fprintf(f, "  slot %.0f: %.0f -> %.0f  %s", ctlview_number(slot, "slot"),
                ctlview_number(slot, "old_pid"), ctlview_number(slot, "new_pid"),
                ctlview_string(slot, "state", "?"));
        if (ctlview_number(slot, "ready_ms") >= 0) {
            fprintf(f, ", ready after %.0f ms", ctlview_number(slot, "ready_ms"));
        }
        if (ctlview_number(slot, "old_exit_ms") >= 0) {
            fprintf(f, ", old gone after %.0f ms", ctlview_number(slot, "old_exit_ms"));
        }
        fputc('\n', f);
    }
    if (json_is_string(json_object_get(res, "error"))) {
        fprintf(f, "  why: %s\n", ctlview_string(res, "error", ""));
    }
    json_t *line;
    json_array_foreach(json_object_get(res, "last_output"), i, line) {
        fprintf(f, "  | %s\n", json_string_value(line) ? json_string_value(line) : "");
    }
}

/* A reload's reply carries one result per app; a restart's is the app's result itself. */
static void ctl_print_replace_reply(json_t *reply, FILE *f)
{
    json_t *apps = json_object_get(reply, "apps");
    if (!json_is_array(apps)) {
        ctl_print_replace(reply, f);
        return;
    }
    size_t i;
    json_t *res;
    json_array_foreach(apps, i, res) {
        ctl_print_replace(res, f);
    }
}

/* A value of a dry run's change: a string, or a list shown as "a, b" ("(none)" when empty). */
static void ctl_print_value(json_t *v, FILE *f)
{
    if (!json_is_array(v)) {
        const char *s = json_string_value(v);
        fprintf(f, "%s", s && s[0] ? s : "(unset)");
        return;
    }
    if (json_array_size(v) == 0) {
        fputs("(none)", f);
    }
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        fprintf(f, "%s%s", i ? ", " : "", json_string_value(e) ? json_string_value(e) : "?");
    }
}

static void ctl_print_changes(json_t *changes, FILE *f)
{
    size_t i;
    json_t *ch;
    json_array_foreach(changes, i, ch) {
        const char *apply = ctlview_string(ch, "apply", "?");
        fprintf(f, "    %-22s ", ctlview_string(ch, "key", "?"));
        ctl_print_value(json_object_get(ch, "old"), f);
        fputs(" -> ", f);
        ctl_print_value(json_object_get(ch, "new"), f);
        fprintf(f, "  [%s]\n", strcmp(apply, "rolling") == 0    ? "needs new workers"
                               : strcmp(apply, "in_place") == 0 ? "applies in place"
                               : strcmp(apply, "next_start") == 0
                                   ? "takes effect at drover's next start"
                                   : apply);
    }
}

/* `reload --dry-run`: per app, what a reload would do and each key it would change. */
static void ctl_print_dry_run(json_t *reply, FILE *f)
{
    size_t i;
    json_t *a;
    fprintf(f, "dry run: nothing was changed\n");
    json_array_foreach(json_object_get(reply, "apps"), i, a) {
        const char *name = ctlview_string(a, "app", "?");
        const char *action = ctlview_string(a, "action", "?");
        json_t *changes = json_object_get(a, "changes");
        size_t n = json_array_size(changes);
        if (strcmp(action, "add") == 0) {
            fprintf(f, "%s: new app; a reload starts it\n", name);
        } else if (strcmp(action, "remove") == 0) {
            fprintf(f, "%s: no longer in the file; a reload stops and removes it\n", name);
        } else if (strcmp(action, "update") == 0) {
            fprintf(f, "%s: %s; %s\n", name, ctlview_string(a, "state", "stopped"),
                    n ? "takes the new config at its next start" : "no change");
        } else if (strcmp(action, "roll") == 0) {
            fprintf(f, "%s: %s; rolling replacement of %.0f worker%s, generation %.0f -> %.0f"
                       "%s\n", name, n ? (json_is_true(json_object_get(a, "rolling"))
                                             ? "changes need new workers"
                                             : "changes apply in place")
                                       : "no change",
                    ctlview_number(a, "workers"), ctlview_number(a, "workers") == 1 ? "" : "s",
                    ctlview_number(a, "generation"), ctlview_number(a, "new_generation"),
                    json_is_true(json_object_get(a, "rolling"))
                        ? ""
                        : " (a reload replaces them anyway)");
        } else {
            fprintf(f, "%s: a reload would be refused: %s\n", name, ctlview_string(a, "error", "?"));
        }
        ctl_print_changes(changes, f);
    }
    json_t *sup = json_object_get(reply, "supervisor");
    if (json_array_size(sup) > 0) {
        fprintf(f, "[supervisor]\n");
        ctl_print_changes(sup, f);
    }
}

static int ctl_print_ok(const struct ctl *c, json_t *reply)
{
    const char *app = ctlview_string(reply, "app", c->req.app ? c->req.app : "?");
    bool already = json_is_true(json_object_get(reply, "already"));
    double took = ctlview_number(reply, "duration_s");
    switch (c->req.cmd) {
    case WIRE_CMD_STATUS:
        if (ctlview_status_write(reply, stdout, c->color) < 0) {
            fprintf(stderr, "droverctl: out of memory\n");
            return CTL_FAILED;
        }
        if (!c->req.app) {
            /* Which drover answered: after an upgrade in place, the version is what changed. */
            char up[32];
            ctlview_format_duration(ctlview_number(reply, "uptime_s"), up, sizeof up);
            printf("drover %s, pid %.0f, up %s\n", ctlview_string(reply, "version", "?"),
                   ctlview_number(reply, "pid"), up);
        }
        return CTL_OK;
    case WIRE_CMD_SCALE:
        if (json_is_true(json_object_get(reply, "autoscale"))) {
            printf("%s: autoscaling between %.0f and %.0f workers (%.0f now)\n", app,
                   ctlview_number(reply, "min"), ctlview_number(reply, "max"),
                   ctlview_number(reply, "workers"));
            return CTL_OK;
        }
        printf("%s: %.0f worker%s, %.0f ready", app, ctlview_number(reply, "workers"),
               ctlview_number(reply, "workers") == 1 ? "" : "s", ctlview_number(reply, "ready"));
        if (strcmp(ctlview_string(reply, "state", "running"), "running") != 0) {
            printf(" (app %s)", ctlview_string(reply, "state", "?"));
        }
        printf(json_object_get(reply, "duration_s") ? " (%.1f s)\n" : "\n", took);
        return CTL_OK;
    case WIRE_CMD_START:
        if (already) {
            printf("%s: already running (%.0f workers, %.0f ready)\n", app,
                   ctlview_number(reply, "workers"), ctlview_number(reply, "ready"));
        } else {
            printf("%s: started, %.0f worker%s ready (%.1f s)\n", app,
                   ctlview_number(reply, "ready"), ctlview_number(reply, "ready") == 1 ? "" : "s",
                   took);
        }
        return CTL_OK;
    case WIRE_CMD_STOP:
        if (!c->req.app) {
            printf("drover (pid %.0f): stopping\n", ctlview_number(reply, "pid"));
        } else if (already) {
            printf("%s: already stopped\n", app);
        } else {
            printf("%s: stopped (%.1f s)\n", app, took);
        }
        return CTL_OK;
    case WIRE_CMD_METRICS:
        if (json_is_string(json_object_get(reply, "body"))) {
            fputs(ctlview_string(reply, "body", ""), stdout);
            return CTL_OK;
        }
        break;
    case WIRE_CMD_LOGS:
        return CTL_OK;
    case WIRE_CMD_EVENTS:
        if (ctlview_number(reply, "lost") > 0) {
            fprintf(stderr, "droverctl: %.0f earlier events are no longer kept\n",
                    ctlview_number(reply, "lost"));
        }
        return CTL_OK;
    case WIRE_CMD_RELOAD:
        if (c->req.dry_run) {
            ctl_print_dry_run(reply, stdout);
            return CTL_OK;
        }
        ctl_print_replace_reply(reply, stdout);
        return CTL_OK;
    case WIRE_CMD_RESTART:
        ctl_print_replace_reply(reply, stdout);
        return CTL_OK;
    case WIRE_CMD_UPGRADE:
        printf("drover (pid %.0f): upgraded %s -> %s in %.1f ms, every worker kept\n",
               ctlview_number(reply, "pid"), ctlview_string(reply, "from", "?"),
               ctlview_string(reply, "version", "?"), ctlview_number(reply, "took_ms"));
        return CTL_OK;
    default:
        break;
    }
    /* A reply this droverctl has no words for: show it as it is. */
    char *text = json_dumps(reply, JSON_COMPACT | JSON_PRESERVE_ORDER);
    printf("%s\n", text ? text : "ok");
    free(text);
    return CTL_OK;
}

/* ---- talking ---- */

static int ctl_report_io(const struct ctl *c, int err)
{
    if (err == -ETIMEDOUT) {
        fprintf(stderr, "droverctl: no answer from drover at %s within %.0f s\n", c->socket,
                c->timeout >= 0 ? c->timeout : CTL_TIMEOUT_DEFAULT);
        return CTL_NO_DROVER;
    }
    if (err == 0) {
        fprintf(stderr, "droverctl: drover at %s closed the connection before answering\n",
                c->socket);
        return CTL_FAILED;
    }
    fprintf(stderr, "droverctl: reading from %s: %s\n", c->socket, strerror(-err));
    return CTL_FAILED;
}

/* Whether the process is gone (or a zombie, which is as good as gone). */
static bool ctl_pid_gone(pid_t pid)
{
    if (kill(pid, 0) == -1) {
        return errno == ESRCH;
    }
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f) {
        return true;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')');
    return paren && (paren[2] == 'Z' || paren[2] == 'X');
}

/* `stop`: drover closes every control connection at its cleanup phase and exits soon after. */
static int ctl_wait_exit(struct ctl *c, pid_t pid, double deadline)
{
    char *line = NULL;
    int r;
    while ((r = ctlclient_read_line(&c->cl, deadline, &line)) == 1) {
        if (c->json) {
            printf("%s\n", line);
        }
        free(line);
        line = NULL;
    }
    if (r == -ETIMEDOUT) {
        fprintf(stderr, "droverctl: drover is still stopping after %.0f s\n", c->timeout);
        return CTL_FAILED;
    }
    double until = deadline >= 0 ? deadline : ctlclient_now() + CTL_EXIT_WAIT;
    while (pid > 0 && !ctl_pid_gone(pid)) {
        if (ctlclient_now() >= until) {
            fprintf(stderr, "droverctl: drover (pid %d) closed its socket but has not exited\n",
                    (int)pid);
            return CTL_FAILED;
        }
        ctlclient_sleep_ms(20);
    }
    if (!c->json) {
        printf("drover: stopped\n");
    }
    return CTL_OK;
}

static int ctl_run(struct ctl *c)
{
    bool waits = c->req.cmd == WIRE_CMD_SCALE || c->req.cmd == WIRE_CMD_START ||
                 c->req.cmd == WIRE_CMD_STOP || c->req.cmd == WIRE_CMD_RELOAD ||
                 c->req.cmd == WIRE_CMD_RESTART || c->req.cmd == WIRE_CMD_UPGRADE;
    double timeout = c->timeout >= 0 ? c->timeout : waits ? 0 : CTL_TIMEOUT_DEFAULT;
    double deadline = timeout > 0 ? ctlclient_now() + timeout : -1;
    /* Connecting is quick or impossible, whatever the command. */
    double connect_deadline = ctlclient_now() + (timeout > 0 ? timeout : CTL_TIMEOUT_DEFAULT);
    int r = ctlclient_open(&c->cl, c->socket, connect_deadline);
    if (r < 0) {
        fprintf(stderr, "droverctl: no drover at %s: %s\n", c->socket, strerror(-r));
        return CTL_NO_DROVER;
    }
    size_t len = 0;
    char *request = wire_request_format(&c->req, &len);
    if (!request) {
        fprintf(stderr, "droverctl: out of memory\n");
        return CTL_FAILED;
    }
    r = ctlclient_send(&c->cl, request, len, deadline);
    free(request);
    /* Any other failure (EPIPE) means drover shut the door at once: a refused peer (another
     * uid, too many clients) still finds the reason waiting to be read below. */
    if (r == -ETIMEDOUT) {
        return ctl_report_io(c, r);
    }

    bool following = false;
    for (;;) {
        char *line = NULL;
        r = ctlclient_read_line(&c->cl, following ? -1 : deadline, &line);
        if (r == -EINTR && following) {
            return CTL_OK;
        }
        if (r == 0 && following) {
            return CTL_OK; /* drover went away (it is stopping) */
        }
        if (r <= 0) {
            return ctl_report_io(c, r);
        }
        json_t *msg = json_loads(line, 0, NULL);
        if (!json_is_object(msg)) {
            fprintf(stderr, "droverctl: drover sent something that is not JSON: %.200s\n", line);
            json_decref(msg);
            free(line);
            return CTL_FAILED;
        }
        if (c->json) {
            printf("%s\n", line);
        }
        free(line);
        json_t *ok = json_object_get(msg, "ok");
        if (!ok) {
            if (!c->json) {
                json_t *log = json_object_get(msg, "log");
                if (json_is_object(log)) {
                    ctlview_log_write(log, stdout, c->color);
                } else if (json_is_object(json_object_get(msg, "event"))) {
                    ctlview_event_write(json_object_get(msg, "event"), stdout, c->color, false);
                } else if (json_object_get(msg, "lost")) {
                    fprintf(stderr, "droverctl: %.0f events lost (not read fast enough)\n",
                            ctlview_number(msg, "lost"));
                } else if (json_object_get(msg, "dropped")) {
                    fprintf(stderr, "droverctl: %.0f lines dropped (not read fast enough)\n",
                            ctlview_number(msg, "dropped"));
                } else if (json_is_object(json_object_get(msg, "progress"))) {
                    json_t *p = json_object_get(msg, "progress");
                    printf("%s: slot %.0f %s: pid %.0f (replacing %.0f)\n",
                           ctlview_string(p, "app", "?"), ctlview_number(p, "slot"),
                           ctlview_string(p, "event", "?"), ctlview_number(p, "new_pid"),
                           ctlview_number(p, "old_pid"));
                }
            }
            fflush(stdout);
            json_decref(msg);
            continue;
        }
        if (!json_is_true(ok)) {
            if (!c->json && (json_object_get(msg, "apps") || json_object_get(msg, "outcome"))) {
                ctl_print_replace_reply(msg, stderr);
            } else {
                fprintf(stderr, "droverctl: %s\n", ctlview_string(msg, "error", "failed"));
            }
            json_decref(msg);
            return CTL_FAILED;
        }
        int status = c->json ? CTL_OK : ctl_print_ok(c, msg);
        pid_t pid = (pid_t)ctlview_number(msg, "pid");
        json_decref(msg);
        fflush(stdout);
        if (status != CTL_OK) {
            return status;
        }
        if (c->req.cmd == WIRE_CMD_STOP && !c->req.app) {
            return ctl_wait_exit(c, pid, deadline);
        }
        if ((c->req.cmd == WIRE_CMD_LOGS || c->req.cmd == WIRE_CMD_EVENTS) && c->req.follow) {
            following = true;
            continue;
        }
        return CTL_OK;
    }
}

/* ---- arguments ---- */

/* A non-negative int, digits only. */
static int ctl_parse_uint(const char *s, int *ret)
{
    if (!*s) {
        return -EINVAL;
    }
    long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') {
            return -EINVAL;
        }
        v = v * 10 + (*p - '0');
        if (v > 1000000000L) {
            return -ERANGE;
        }
    }
    *ret = (int)v;
    return 0;
}

static int ctl_parse_timeout(const char *s, double *ret)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0) || v > 1e7) {
        return -EINVAL;
    }
    *ret = v;
    return 0;
}

/* Parses COMMAND [ARGS] into c->req; returns 0 or CTL_USAGE (already reported). */
static int ctl_parse_command(struct ctl *c, int argc, char **argv)
{
    const char *name = argv[0];
    enum wire_cmd cmd;
    if (wire_cmd_from_string(name, &cmd) < 0) {
        return ctl_usage_error("unknown command '%s'", name);
    }
    wire_request_init(&c->req, cmd);
    const char *pos[3];
    int n_pos = 0;
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool is_option = !options_done && a[0] == '-' && a[1] != '\0' &&
                         !(a[1] >= '0' && a[1] <= '9');
        if (!is_option) {
            if (n_pos == 3) {
                return ctl_usage_error("%s: too many arguments", name);
            }
            pos[n_pos++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            options_done = true;
        } else if (strcmp(a, "--json") == 0) {
            c->json = true;
        } else if (cmd == WIRE_CMD_RELOAD && strcmp(a, "--dry-run") == 0) {
            c->req.dry_run = true;
        } else if ((cmd == WIRE_CMD_LOGS || cmd == WIRE_CMD_EVENTS) &&
                   (strcmp(a, "-f") == 0 || strcmp(a, "--follow") == 0)) {
            c->req.follow = true;
        } else if (cmd == WIRE_CMD_LOGS &&
                   (strcmp(a, "-n") == 0 || strcmp(a, "--lines") == 0 ||
                    strncmp(a, "-n", 2) == 0 || strncmp(a, "--lines=", 8) == 0)) {
            const char *v = strncmp(a, "--lines=", 8) == 0 ? a + 8
                            : strcmp(a, "-n") == 0 || strcmp(a, "--lines") == 0
                                ? (i + 1 < argc ? argv[++i] : NULL)
                                : a + 2;
            if (!v || ctl_parse_uint(v, &c->req.lines) < 0) {
                return ctl_usage_error("logs: -n needs a number of lines");
            }
        } else if (cmd == WIRE_CMD_UPGRADE &&
                   (strcmp(a, "--binary") == 0 || strncmp(a, "--binary=", 9) == 0)) {
            const char *v = a[8] == '=' ? a + 9 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v || !*v) {
                return ctl_usage_error("upgrade: --binary needs a path");
            }
            /* drover runs elsewhere: a relative path is made absolute here. */
            char *abs = realpath(v, NULL);
            c->req.binary = abs ? abs : strdup(v);
            if (!c->req.binary) {
                fprintf(stderr, "droverctl: out of memory\n");
                return CTL_FAILED;
            }
        } else if (cmd == WIRE_CMD_EVENTS &&
                   (strcmp(a, "--since") == 0 || strncmp(a, "--since=", 8) == 0)) {
            const char *v = a[7] == '=' ? a + 8 : (i + 1 < argc ? argv[++i] : NULL);
            int since;
            if (!v || ctl_parse_uint(v, &since) < 0) {
                return ctl_usage_error("events: --since needs an event number (SEQ)");
            }
            c->req.since = since;
        } else {
            return ctl_usage_error("%s: unknown option '%s'", name, a);
        }
    }

    int min = 0, max = 0;
    switch (cmd) {
    case WIRE_CMD_STATUS:
    case WIRE_CMD_STOP:
    case WIRE_CMD_RELOAD:
    case WIRE_CMD_LOGS:
        min = 0;
        max = 1;
        break;
    case WIRE_CMD_START:
        min = max = 1;
        break;
    case WIRE_CMD_RESTART:
        min = 1;
        max = 2;
        break;
    case WIRE_CMD_SCALE:
        min = max = 2;
        break;
    case WIRE_CMD_METRICS:
    case WIRE_CMD_EVENTS:
    case WIRE_CMD_UPGRADE:
    case WIRE_CMD_COUNT:
        break;
    }
    if (n_pos < min) {
        return ctl_usage_error("%s: missing %s", name,
                               n_pos == 0 ? "APP" : cmd == WIRE_CMD_SCALE ? "N" : "argument");
    }
    if (n_pos > max) {
        return ctl_usage_error("%s: too many arguments", name);
    }
    if (n_pos > 0) {
        if (!pos[0][0] || strlen(pos[0]) > WIRE_NAME_MAX) {
            return ctl_usage_error("%s: '%s' is not an app name", name, pos[0]);
        }
        c->req.app = strdup(pos[0]);
        if (!c->req.app) {
            fprintf(stderr, "droverctl: out of memory\n");
            return CTL_FAILED;
        }
    }
    if (cmd == WIRE_CMD_SCALE && strcmp(pos[1], "auto") == 0) {
        c->req.automatic = true;
    } else if (cmd == WIRE_CMD_SCALE) {
        const char *v = pos[1];
        c->req.relative = v[0] == '+' || v[0] == '-';
        int count;
        if (ctl_parse_uint(v + (c->req.relative ? 1 : 0), &count) < 0) {
            return ctl_usage_error("scale: '%s' is not a worker count (N, +N or -N)", v);
        }
        c->req.count = v[0] == '-' ? -count : count;
    }
    if (cmd == WIRE_CMD_RESTART && n_pos == 2 && ctl_parse_uint(pos[1], &c->req.slot) < 0) {
        return ctl_usage_error("restart: '%s' is not a slot number", pos[1]);
    }
    if (cmd == WIRE_CMD_METRICS) {
        c->req.format = strdup(c->json ? "json" : "text");
        if (!c->req.format) {
            fprintf(stderr, "droverctl: out of memory\n");
            return CTL_FAILED;
        }
    }
    return 0;
}

/* top [--once] [--interval SECONDS]; returns 0 or CTL_USAGE (already reported). */
static int ctl_parse_top(const struct ctl *c, int argc, char **argv, struct top_options *opt)
{
    if (c->json) {
        return ctl_usage_error("top: no --json; `status --json` and `events --json` are the data");
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--once") == 0) {
            opt->once = true;
        } else if (strcmp(a, "--interval") == 0 || strncmp(a, "--interval=", 11) == 0 ||
                   strcmp(a, "-d") == 0) {
            const char *v = strncmp(a, "--interval=", 11) == 0 ? a + 11
                            : i + 1 < argc                      ? argv[++i]
                                                                : NULL;
            if (!v || ctl_parse_timeout(v, &opt->interval) < 0 || opt->interval < 0.1) {
                return ctl_usage_error("top: --interval needs a number of seconds, at least 0.1");
            }
        } else {
            return ctl_usage_error("top: unknown %s '%s'", a[0] == '-' ? "option" : "argument",
                                   a);
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct ctl c = {.timeout = -1, .cl = CTLCLIENT_INIT};
    c.cl.interrupted = &ctl_interrupted;
    char *default_socket = NULL;
    int status = CTL_USAGE;
    int i = 1;

    for (; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || a[1] == '\0') {
            break;
        }
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        const char *value = NULL;
        if (strcmp(a, "-s") == 0 || strcmp(a, "--socket") == 0 || strcmp(a, "-t") == 0 ||
            strcmp(a, "--timeout") == 0) {
            if (i + 1 >= argc) {
                status = ctl_usage_error("%s needs a value", a);
                goto out;
            }
            value = argv[++i];
        } else if (strncmp(a, "--socket=", 9) == 0 || strncmp(a, "--timeout=", 10) == 0) {
            value = strchr(a, '=') + 1;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            ctl_usage(stdout);
            status = CTL_OK;
            goto out;
        } else if (strcmp(a, "--version") == 0) {
            printf("droverctl %s\n", DROVER_VERSION);
            status = CTL_OK;
            goto out;
        } else if (strcmp(a, "--json") == 0) {
            c.json = true;
        } else if (value && (a[1] == 's' || strncmp(a, "--socket", 8) == 0)) {
            if (!*value) {
                status = ctl_usage_error("the socket path is empty");
                goto out;
            }
            c.socket = value;
        } else if (value) {
            if (ctl_parse_timeout(value, &c.timeout) < 0) {
                status = ctl_usage_error("--timeout: '%s' is not a number of seconds", value);
                goto out;
            }
        } else {
            status = ctl_usage_error("unknown option '%s'", a);
            goto out;
        }
    }
    if (i >= argc) {
        status = ctl_usage_error("missing command");
        goto out;
    }
    bool top = strcmp(argv[i], "top") == 0;
    struct top_options top_opt = {.interval = 1.0};
    status = top ? ctl_parse_top(&c, argc - i, argv + i, &top_opt)
                 : ctl_parse_command(&c, argc - i, argv + i);
    if (status != 0) {
        goto out;
    }
    if (!c.socket) {
        const char *env = getenv("DROVER_SOCKET");
        if (env && *env) {
            c.socket = env;
        } else if ((default_socket = config_default_control_socket())) {
            c.socket = default_socket;
        } else {
            fprintf(stderr, "droverctl: out of memory\n");
            status = CTL_FAILED;
            goto out;
        }
    }
    /* NO_COLOR (no-color.org), set to anything, turns colour off; so does a pipe. */
    c.color = !c.json && isatty(STDOUT_FILENO) && !getenv("NO_COLOR");
    if (top) {
        top_opt.socket = c.socket;
        top_opt.color = c.color;
        signal(SIGPIPE, SIG_IGN);
        int r = top_run(&top_opt);
        status = r == 0 ? CTL_OK : r == -ENOTTY ? CTL_USAGE : r == -ENOMEM ? CTL_FAILED
                                                                          : CTL_NO_DROVER;
        goto out;
    }

    struct sigaction sa = {.sa_handler = ctl_on_sigint};
    sigemptyset(&sa.sa_mask);
    if ((c.req.cmd == WIRE_CMD_LOGS || c.req.cmd == WIRE_CMD_EVENTS) && c.req.follow) {
        /* No SA_RESTART: poll() returns at once and the follow ends cleanly, exit 0. */
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
    }
    signal(SIGPIPE, SIG_IGN);
    status = ctl_run(&c);
out:
    fflush(stdout);
    ctlclient_close(&c.cl);
    wire_request_done(&c.req);
    free(default_socket);
    return status;
}
