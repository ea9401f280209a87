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
#include "wire.h"

enum ctl_exit { CTL_OK = 0, CTL_FAILED = 1, CTL_USAGE = 2, CTL_NO_DROVER = 3 };

#define CTL_TIMEOUT_DEFAULT 30.0
/* The longest reply line accepted: a status of a thousand workers is a few hundred KiB. */
#define CTL_LINE_MAX (16u * 1024u * 1024u)
/* After `stop`, how long to wait for drover's process to go once it closed the socket. */
#define CTL_EXIT_WAIT 60.0

struct ctl {
    const char *socket;
    bool json;
    double timeout;         /* < 0: not given */
    bool color;
    struct wire_request req;
    int fd;
    char *buf;
    size_t len;
    size_t cap;
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

/* ---- time ---- */

static double ctl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Milliseconds left until deadline for poll(); -1 = no deadline. */
static int ctl_poll_ms(double deadline)
{
    if (deadline < 0) {
        return -1;
    }
    double left = deadline - ctl_now();
    if (left <= 0) {
        return 0;
    }
    /* Rounded up, so a wait never ends a moment before its deadline and spins. */
    return left > 1e6 ? 1000000000 : (int)(left * 1000.0) + 1;
}

static void ctl_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- connection ---- */

/* Connects to the socket; returns 0 or -errno (the caller reports "no drover at PATH"). */
static int ctl_connect(struct ctl *c, double deadline)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(c->socket) >= sizeof sun.sun_path) {
        return -ENAMETOOLONG;
    }
    memcpy(sun.sun_path, c->socket, strlen(c->socket) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd == -1) {
        return -errno;
    }
    for (;;) {
        if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0) {
            break;
        }
        /* EAGAIN: drover's backlog is full. It is there, only busy: try again shortly. */
        if (errno == EAGAIN && (deadline < 0 || ctl_now() < deadline)) {
            ctl_sleep_ms(10);
            continue;
        }
        int r = errno == EAGAIN ? -ETIMEDOUT : -errno;
        close(fd);
        return r;
    }
    c->fd = fd;
    return 0;
}

/* Sends len bytes; returns 0, -ETIMEDOUT or -errno. */
static int ctl_send(struct ctl *c, const char *data, size_t len, double deadline)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(c->fd, data + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n == -1 && errno == EINTR) {
            continue;
        }
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p = {.fd = c->fd, .events = POLLOUT};
            int k = poll(&p, 1, ctl_poll_ms(deadline));
            if (k == 0) {
                return -ETIMEDOUT;
            }
            continue;
        }
        return n == 0 ? -EPIPE : -errno;
    }
    return 0;
}

/*
 * Reads the next line (without its newline) into a malloc'd string. Returns 1, 0 at EOF,
 * -ETIMEDOUT, -EINTR (SIGINT while following), -EMSGSIZE or -errno.
 */
static int ctl_read_line(struct ctl *c, double deadline, char **ret)
{
    size_t scanned = 0;
    for (;;) {
        char *nl = c->len > scanned ? memchr(c->buf + scanned, '\n', c->len - scanned) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - c->buf);
            char *line = strndup(c->buf, n);
            if (!line) {
                return -ENOMEM;
            }
            memmove(c->buf, nl + 1, c->len - n - 1);
            c->len -= n + 1;
            *ret = line;
            return 1;
        }
        scanned = c->len;
        if (c->len >= CTL_LINE_MAX) {
            return -EMSGSIZE;
        }
        if (c->cap - c->len < 4096) {
            size_t cap = c->cap ? c->cap * 2 : 65536;
            char *buf = realloc(c->buf, cap);
            if (!buf) {
                return -ENOMEM;
            }
            c->buf = buf;
            c->cap = cap;
        }
        if (ctl_interrupted) {
            return -EINTR;
        }
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int k = poll(&p, 1, ctl_poll_ms(deadline));
        if (k == -1 && errno == EINTR) {
            continue;
        }
        if (k == 0) {
            return -ETIMEDOUT;
        }
        ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len);
        if (n == -1 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
            continue;
        }
        if (n == 0) {
            return 0;
        }
        if (n < 0) {
            return -errno;
        }
        c->len += (size_t)n;
    }
}

/* ---- human output ---- */

#define CTL_BOLD "\033[1m"
#define CTL_DIM "\033[2m"
#define CTL_RED "\033[31m"
#define CTL_GREEN "\033[32m"
#define CTL_YELLOW "\033[33m"
#define CTL_CYAN "\033[36m"
#define CTL_RESET "\033[0m"

static const char *ctl_state_color(const char *state)
{
    if (strcmp(state, "ready") == 0 || strcmp(state, "running") == 0) {
        return CTL_GREEN;
    }
    if (strcmp(state, "starting") == 0 || strcmp(state, "backoff") == 0 ||
        strcmp(state, "reloading") == 0) {
        return CTL_YELLOW;
    }
    if (strcmp(state, "errored") == 0 || strcmp(state, "hung") == 0) {
        return CTL_RED;
    }
    return CTL_DIM; /* draining, stopping, stopped */
}

/* 3m12s: the two largest units, as a person reads an uptime. */
static void ctl_format_duration(double s, char *buf, size_t size)
{
    unsigned long t = s > 0 ? (unsigned long)s : 0;
    if (t < 60) {
        snprintf(buf, size, "%lus", t);
    } else if (t < 3600) {
        snprintf(buf, size, "%lum%02lus", t / 60, t % 60);
    } else if (t < 86400) {
        snprintf(buf, size, "%luh%02lum", t / 3600, t % 3600 / 60);
    } else {
        snprintf(buf, size, "%lud%02luh", t / 86400, t % 86400 / 3600);
    }
}

/* 5.2M: binary units, one decimal below 100. */
static void ctl_format_bytes(double b, char *buf, size_t size)
{
    static const char units[] = "BKMGTP";
    size_t u = 0;
    while (b >= 1024 && u + 1 < sizeof units - 1) {
        b /= 1024;
        u++;
    }
    if (u == 0) {
        snprintf(buf, size, "%.0f%c", b, units[u]);
    } else if (b < 99.95) {
        snprintf(buf, size, "%.1f%c", b, units[u]);
    } else {
        snprintf(buf, size, "%.0f%c", b, units[u]);
    }
}

#define CTL_COLS 11

struct ctl_table {
    char *(*cells)[CTL_COLS];
    size_t rows;
    size_t cap;
    int state_col;
};

static int ctl_table_add(struct ctl_table *t, const char *const cells[CTL_COLS])
{
    if (t->rows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char *(*c)[CTL_COLS] = realloc(t->cells, cap * sizeof *c);
        if (!c) {
            return -ENOMEM;
        }
        t->cells = c;
        t->cap = cap;
    }
    for (int i = 0; i < CTL_COLS; i++) {
        t->cells[t->rows][i] = strdup(cells[i]);
        if (!t->cells[t->rows][i]) {
            while (i-- > 0) {
                free(t->cells[t->rows][i]);
            }
            return -ENOMEM;
        }
    }
    t->rows++;
    return 0;
}

static void ctl_table_print(const struct ctl_table *t, bool color)
{
    size_t width[CTL_COLS] = {0};
    for (size_t r = 0; r < t->rows; r++) {
        for (int i = 0; i < CTL_COLS; i++) {
            size_t n = strlen(t->cells[r][i]);
            width[i] = n > width[i] ? n : width[i];
        }
    }
    for (size_t r = 0; r < t->rows; r++) {
        const char *row_color = color && r == 0 ? CTL_BOLD : NULL;
        if (row_color) {
            fputs(row_color, stdout);
        }
        for (int i = 0; i < CTL_COLS; i++) {
            const char *cell = t->cells[r][i];
            bool last = i == CTL_COLS - 1;
            /* Colour wraps the text only, so the padding (and the alignment) stays exact. */
            const char *c = color && r > 0 && i == t->state_col ? ctl_state_color(cell) : NULL;
            printf("%s%s%s", c ? c : "", cell, c ? CTL_RESET : "");
            if (!last) {
                printf("%*s", (int)(width[i] - strlen(cell) + 2), "");
            }
        }
        if (row_color) {
            fputs(CTL_RESET, stdout);
        }
        fputc('\n', stdout);
    }
}

static void ctl_table_free(struct ctl_table *t)
{
    for (size_t r = 0; r < t->rows; r++) {
        for (int i = 0; i < CTL_COLS; i++) {
            free(t->cells[r][i]);
        }
    }
    free(t->cells);
}

static double ctl_number(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_number(v) ? json_number_value(v) : 0;
}

static const char *ctl_string(json_t *obj, const char *key, const char *dflt)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : dflt;
}

/* The accept queue of an app's TCP listeners, summed: "3/4096", or "-" when it has none. */
static void ctl_format_queue(json_t *listen, char *buf, size_t size)
{
    double len = 0, limit = 0;
    bool any = false;
    size_t i;
    json_t *l;
    json_array_foreach(listen, i, l) {
        if (json_is_integer(json_object_get(l, "queue"))) {
            any = true;
            len += ctl_number(l, "queue");
            limit += ctl_number(l, "limit");
        }
    }
    if (any) {
        snprintf(buf, size, "%.0f/%.0f", len, limit);
    } else {
        snprintf(buf, size, "-");
    }
}

/* A slot's last exit in one word (SPEC section 10): "SIGABRT/hang", "code=1/crash",
 * "SIGKILL!/crash" (a SIGKILL drover did not send: the OOM killer, an operator), "-" for none;
 * "+core" when it dumped core. The whole record is in --json and the log. */
static void ctl_format_exit(json_t *e, char *buf, size_t size)
{
    if (!json_is_object(e)) {
        snprintf(buf, size, "-");
        return;
    }
    const char *sig = ctl_string(e, "signal", NULL);
    const char *sender = ctl_string(e, "sender", "drover");
    char how[32];
    if (sig) {
        snprintf(how, sizeof how, "SIG%s%s", sig, strcmp(sender, "drover") != 0 ? "!" : "");
    } else {
        snprintf(how, sizeof how, "code=%.0f", ctl_number(e, "exit_code"));
    }
    snprintf(buf, size, "%s/%s%s", how, ctl_string(e, "reason", "?"),
             json_is_true(json_object_get(e, "core_dumped")) ? "+core" : "");
}

static int ctl_print_status(json_t *reply, bool color)
{
    static const char *const header[CTL_COLS] = {"APP",      "SLOT",     "PID",
                                                 "STATE",    "GEN",      "UPTIME",
                                                 "RESTARTS", "MEMORY",   "CPU",
                                                 "LAST_EXIT", "QUEUE"};
    struct ctl_table t = {.state_col = 3};
    int r = ctl_table_add(&t, header);
    json_t *apps = json_object_get(reply, "apps");
    size_t i;
    json_t *app;
    json_array_foreach(apps, i, app) {
        const char *name = ctl_string(app, "name", "?");
        json_t *workers = json_object_get(app, "workers");
        char gen[32], queue[48];
        snprintf(gen, sizeof gen, "%.0f", ctl_number(app, "generation"));
        ctl_format_queue(json_object_get(app, "listen"), queue, sizeof queue);
        if (json_array_size(workers) == 0) {
            const char *row[CTL_COLS] = {name, "-", "-", ctl_string(app, "state", "?"), gen,
                                         "-",  "-", "-", "-", "-", queue};
            r = r < 0 ? r : ctl_table_add(&t, row);
            continue;
        }
        size_t j;
        json_t *w;
        json_array_foreach(workers, j, w) {
            char slot[32], pid[32], wgen[32], up[32], restarts[32], mem[32], cpu[32];
            const char *state = ctl_string(w, "state", "?");
            bool live = ctl_number(w, "pid") > 0;
            snprintf(slot, sizeof slot, "%.0f", ctl_number(w, "slot"));
            snprintf(pid, sizeof pid, live ? "%.0f" : "-", ctl_number(w, "pid"));
            snprintf(wgen, sizeof wgen, "%.0f", ctl_number(w, "generation"));
            snprintf(restarts, sizeof restarts, "%.0f", ctl_number(w, "restarts"));
            if (live) {
                ctl_format_duration(ctl_number(w, "uptime_s"), up, sizeof up);
                ctl_format_bytes(ctl_number(w, "rss_bytes"), mem, sizeof mem);
                snprintf(cpu, sizeof cpu, "%.1f%%", ctl_number(w, "cpu_percent"));
            } else {
                snprintf(up, sizeof up, "-");
                snprintf(mem, sizeof mem, "-");
                snprintf(cpu, sizeof cpu, "-");
            }
            char last[96];
            ctl_format_exit(json_object_get(w, "last_exit"), last, sizeof last);
            /* The queue is the app's, shown once, on its first row. */
            const char *row[CTL_COLS] = {name, slot, pid, state, wgen, up, restarts, mem, cpu,
                                         last, j == 0 ? queue : ""};
            r = r < 0 ? r : ctl_table_add(&t, row);
        }
    }
    if (r == 0) {
        ctl_table_print(&t, color);
    }
    ctl_table_free(&t);
    if (r < 0) {
        fprintf(stderr, "droverctl: out of memory\n");
        return CTL_FAILED;
    }
    return CTL_OK;
}

static void ctl_print_log(json_t *rec, bool color)
{
    bool err = strcmp(ctl_string(rec, "stream", "stdout"), "stderr") == 0;
    const char *msg = ctl_string(rec, "msg", "");
    printf("%s%s%s %s%s/%.0f [%.0f]%s %s%s%s %s\n", color ? CTL_DIM : "",
           ctl_string(rec, "ts", "-"), color ? CTL_RESET : "", color ? CTL_CYAN : "",
           ctl_string(rec, "app", "?"), ctl_number(rec, "worker"), ctl_number(rec, "pid"),
           color ? CTL_RESET : "", color && err ? CTL_RED : "", err ? "err|" : "out|",
           color && err ? CTL_RESET : "", msg);
}

/* One lifecycle event: time, seq, type, where, what. */
static void ctl_print_event(json_t *ev, bool color)
{
    char where[128] = "drover";
    if (json_is_string(json_object_get(ev, "app"))) {
        if (json_is_integer(json_object_get(ev, "worker"))) {
            snprintf(where, sizeof where, "%s/%.0f", ctl_string(ev, "app", "?"),
                     ctl_number(ev, "worker"));
        } else {
            snprintf(where, sizeof where, "%s", ctl_string(ev, "app", "?"));
        }
    }
    printf("%s%s #%.0f%s %s%-15s%s %s %s\n", color ? CTL_DIM : "", ctl_string(ev, "ts", "-"),
           ctl_number(ev, "seq"), color ? CTL_RESET : "", color ? CTL_CYAN : "",
           ctl_string(ev, "type", "?"), color ? CTL_RESET : "", where, ctl_string(ev, "msg", ""));
}

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
    const char *outcome = ctl_string(res, "outcome", "?");
    fprintf(f, "%s: %s %s", ctl_string(res, "app", "?"),
            ctl_replace_verb(ctl_string(res, "reason", "reload")),
            strcmp(outcome, "rolled_back") == 0 ? "rolled back" : outcome);
    if (json_object_get(res, "generation")) {
        fprintf(f, ", generation %.0f", ctl_number(res, "generation"));
    }
    if (json_object_get(res, "duration_s")) {
        fprintf(f, " (%.2f s)", ctl_number(res, "duration_s"));
    }
    fputc('\n', f);
    size_t i;
    json_t *slot;
    json_array_foreach(json_object_get(res, "slots"), i, slot) {
        fprintf(f, "  slot %.0f: %.0f -> %.0f  %s", ctl_number(slot, "slot"),
                ctl_number(slot, "old_pid"), ctl_number(slot, "new_pid"),
                ctl_string(slot, "state", "?"));
        if (ctl_number(slot, "ready_ms") >= 0) {
            fprintf(f, ", ready after %.0f ms", ctl_number(slot, "ready_ms"));
        }
        if (ctl_number(slot, "old_exit_ms") >= 0) {
            fprintf(f, ", old gone after %.0f ms", ctl_number(slot, "old_exit_ms"));
        }
        fputc('\n', f);
    }
    if (json_is_string(json_object_get(res, "error"))) {
        fprintf(f, "  why: %s\n", ctl_string(res, "error", ""));
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
        const char *apply = ctl_string(ch, "apply", "?");
        fprintf(f, "    %-22s ", ctl_string(ch, "key", "?"));
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
        const char *name = ctl_string(a, "app", "?");
        const char *action = ctl_string(a, "action", "?");
        json_t *changes = json_object_get(a, "changes");
        size_t n = json_array_size(changes);
        if (strcmp(action, "add") == 0) {
            fprintf(f, "%s: new app; a reload starts it\n", name);
        } else if (strcmp(action, "remove") == 0) {
            fprintf(f, "%s: no longer in the file; a reload stops and removes it\n", name);
        } else if (strcmp(action, "update") == 0) {
            fprintf(f, "%s: %s; %s\n", name, ctl_string(a, "state", "stopped"),
                    n ? "takes the new config at its next start" : "no change");
        } else if (strcmp(action, "roll") == 0) {
            fprintf(f, "%s: %s; rolling replacement of %.0f worker%s, generation %.0f -> %.0f"
                       "%s\n", name, n ? (json_is_true(json_object_get(a, "rolling"))
                                             ? "changes need new workers"
                                             : "changes apply in place")
                                       : "no change",
                    ctl_number(a, "workers"), ctl_number(a, "workers") == 1 ? "" : "s",
                    ctl_number(a, "generation"), ctl_number(a, "new_generation"),
                    json_is_true(json_object_get(a, "rolling"))
                        ? ""
                        : " (a reload replaces them anyway)");
        } else {
            fprintf(f, "%s: a reload would be refused: %s\n", name, ctl_string(a, "error", "?"));
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
    const char *app = ctl_string(reply, "app", c->req.app ? c->req.app : "?");
    bool already = json_is_true(json_object_get(reply, "already"));
    double took = ctl_number(reply, "duration_s");
    switch (c->req.cmd) {
    case WIRE_CMD_STATUS:
        return ctl_print_status(reply, c->color);
    case WIRE_CMD_SCALE:
        if (json_is_true(json_object_get(reply, "autoscale"))) {
            printf("%s: autoscaling between %.0f and %.0f workers (%.0f now)\n", app,
                   ctl_number(reply, "min"), ctl_number(reply, "max"),
                   ctl_number(reply, "workers"));
            return CTL_OK;
        }
        printf("%s: %.0f worker%s, %.0f ready", app, ctl_number(reply, "workers"),
               ctl_number(reply, "workers") == 1 ? "" : "s", ctl_number(reply, "ready"));
        if (strcmp(ctl_string(reply, "state", "running"), "running") != 0) {
            printf(" (app %s)", ctl_string(reply, "state", "?"));
        }
        printf(json_object_get(reply, "duration_s") ? " (%.1f s)\n" : "\n", took);
        return CTL_OK;
    case WIRE_CMD_START:
        if (already) {
            printf("%s: already running (%.0f workers, %.0f ready)\n", app,
                   ctl_number(reply, "workers"), ctl_number(reply, "ready"));
        } else {
            printf("%s: started, %.0f worker%s ready (%.1f s)\n", app,
                   ctl_number(reply, "ready"), ctl_number(reply, "ready") == 1 ? "" : "s", took);
        }
        return CTL_OK;
    case WIRE_CMD_STOP:
        if (!c->req.app) {
            printf("drover (pid %.0f): stopping\n", ctl_number(reply, "pid"));
        } else if (already) {
            printf("%s: already stopped\n", app);
        } else {
            printf("%s: stopped (%.1f s)\n", app, took);
        }
        return CTL_OK;
    case WIRE_CMD_METRICS:
        if (json_is_string(json_object_get(reply, "body"))) {
            fputs(ctl_string(reply, "body", ""), stdout);
            return CTL_OK;
        }
        break;
    case WIRE_CMD_LOGS:
        return CTL_OK;
    case WIRE_CMD_EVENTS:
        if (ctl_number(reply, "lost") > 0) {
            fprintf(stderr, "droverctl: %.0f earlier events are no longer kept\n",
                    ctl_number(reply, "lost"));
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
    while ((r = ctl_read_line(c, deadline, &line)) == 1) {
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
    double until = deadline >= 0 ? deadline : ctl_now() + CTL_EXIT_WAIT;
    while (pid > 0 && !ctl_pid_gone(pid)) {
        if (ctl_now() >= until) {
            fprintf(stderr, "droverctl: drover (pid %d) closed its socket but has not exited\n",
                    (int)pid);
            return CTL_FAILED;
        }
        ctl_sleep_ms(20);
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
                 c->req.cmd == WIRE_CMD_RESTART;
    double timeout = c->timeout >= 0 ? c->timeout : waits ? 0 : CTL_TIMEOUT_DEFAULT;
    double deadline = timeout > 0 ? ctl_now() + timeout : -1;
    /* Connecting is quick or impossible, whatever the command. */
    double connect_deadline = ctl_now() + (timeout > 0 ? timeout : CTL_TIMEOUT_DEFAULT);
    int r = ctl_connect(c, connect_deadline);
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
    r = ctl_send(c, request, len, deadline);
    free(request);
    /* Any other failure (EPIPE) means drover shut the door at once: a refused peer (another
     * uid, too many clients) still finds the reason waiting to be read below. */
    if (r == -ETIMEDOUT) {
        return ctl_report_io(c, r);
    }

    bool following = false;
    for (;;) {
        char *line = NULL;
        r = ctl_read_line(c, following ? -1 : deadline, &line);
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
                    ctl_print_log(log, c->color);
                } else if (json_is_object(json_object_get(msg, "event"))) {
                    ctl_print_event(json_object_get(msg, "event"), c->color);
                } else if (json_object_get(msg, "lost")) {
                    fprintf(stderr, "droverctl: %.0f events lost (not read fast enough)\n",
                            ctl_number(msg, "lost"));
                } else if (json_object_get(msg, "dropped")) {
                    fprintf(stderr, "droverctl: %.0f lines dropped (not read fast enough)\n",
                            ctl_number(msg, "dropped"));
                } else if (json_is_object(json_object_get(msg, "progress"))) {
                    json_t *p = json_object_get(msg, "progress");
                    printf("%s: slot %.0f %s: pid %.0f (replacing %.0f)\n",
                           ctl_string(p, "app", "?"), ctl_number(p, "slot"),
                           ctl_string(p, "event", "?"), ctl_number(p, "new_pid"),
                           ctl_number(p, "old_pid"));
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
                fprintf(stderr, "droverctl: %s\n", ctl_string(msg, "error", "failed"));
            }
            json_decref(msg);
            return CTL_FAILED;
        }
        int status = c->json ? CTL_OK : ctl_print_ok(c, msg);
        pid_t pid = (pid_t)ctl_number(msg, "pid");
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

int main(int argc, char **argv)
{
    struct ctl c = {.timeout = -1, .fd = -1};
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
    status = ctl_parse_command(&c, argc - i, argv + i);
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
    if (c.fd != -1) {
        close(c.fd);
    }
    wire_request_done(&c.req);
    free(c.buf);
    free(default_socket);
    return status;
}
