/*
 * top: the live view (see top.h). One refresh is two requests on one kept connection: `status`,
 * then `events --since SEQ` for what happened since the last refresh; the events are kept in a
 * small ring here, so a frame shows the latest ones without asking drover for all of them
 * each second. A frame is rendered into memory as full lines first, then fitted: each line
 * cut to the terminal's width (escapes cost no column), the table and the events cut to its
 * height, and the whole frame written at once from the top-left corner, so nothing flickers
 * and a resize only changes where lines are cut.
 *
 * Signals only set flags and wake the loop through a self-pipe (the handlers do nothing else);
 * the loop draws, reads keys and restores the terminal. Only the crash handler touches the
 * terminal itself, with write() and tcsetattr(), both async-signal-safe.
 */
#include "top.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "ctlclient.h"
#include "ctlview.h"
#include "wire.h"

/* Events kept for the view; a terminal taller than this is rare. */
#define TOP_EVENTS_KEPT 256
/* The events --once prints. */
#define TOP_ONCE_EVENTS 10
/* How long one request may take before drover counts as not answering. */
#define TOP_REPLY_TIMEOUT 2.0
/* Below this size the frame is still drawn, only cut harder. */
#define TOP_MIN_ROWS 8

/* Enter: alternate screen, cursor hidden, no autowrap (a line of exactly the width must not
 * wrap and scroll the frame), home, clear. Leave undoes each, in reverse. */
static const char top_enter_seq[] = "\033[?1049h\033[?25l\033[?7l\033[H\033[2J";
static const char top_leave_seq[] = "\033[0m\033[?7h\033[?25h\033[?1049l";

struct top_lines {
    char **v;
    size_t n;
    size_t cap;
};

struct top {
    const struct top_options *opt;
    struct ctlclient cl;
    json_t *status;                  /* the last status reply; kept while drover is away */
    json_t *events[TOP_EVENTS_KEPT]; /* ring, oldest at first */
    size_t first;
    size_t n_events;
    int64_t since;     /* the last event seq seen */
    double drover_pid; /* whose seq numbers `since` counts */
    char error[256];   /* why the last refresh failed; "" when it did not */
    time_t last_seen;  /* when the last refresh succeeded */
    int rows;
    int cols;
};

/* ---- signals and the terminal ---- */

static volatile sig_atomic_t top_quit;
static volatile sig_atomic_t top_resized;
static volatile sig_atomic_t top_suspend;
static int top_wake_fd = -1; /* the self-pipe's write end */
static struct termios top_saved;
static volatile sig_atomic_t top_term_on; /* the terminal is ours: modes changed, alt screen */
static bool top_have_termios;

static void top_write_all(int fd, const char *s, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, s, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return; /* the terminal is gone (SIGHUP, EIO): nothing left to restore it for */
        }
        s += n;
        len -= (size_t)n;
    }
}

static void top_term_leave(void)
{
    if (!top_term_on) {
        return;
    }
    top_term_on = 0;
    top_write_all(STDOUT_FILENO, top_leave_seq, sizeof top_leave_seq - 1);
    if (top_have_termios) {
        tcsetattr(STDIN_FILENO, TCSADRAIN, &top_saved);
    }
}

/* Keys one at a time and unechoed; ISIG stays on, so Ctrl-C, Ctrl-Z and Ctrl-\ still arrive
 * as signals and take the same exits as a kill from elsewhere. */
static void top_term_enter(void)
{
    if (top_have_termios) {
        struct termios raw = top_saved;
        raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
        raw.c_cc[VMIN] = 1;
        raw.c_cc[VTIME] = 0;
        tcsetattr(STDIN_FILENO, TCSADRAIN, &raw);
    }
    top_write_all(STDOUT_FILENO, top_enter_seq, sizeof top_enter_seq - 1);
    top_term_on = 1;
}

static void top_wake(void)
{
    int saved = errno;
    if (top_wake_fd != -1) {
        ssize_t n = write(top_wake_fd, "x", 1);
        (void)n; /* a full pipe already wakes the loop */
    }
    errno = saved;
}

static void top_on_signal(int sig)
{
    if (sig == SIGWINCH) {
        top_resized = 1;
    } else if (sig == SIGTSTP) {
        top_suspend = 1;
    } else {
        top_quit = 1;
    }
    top_wake();
}

/* A crash must not leave the terminal in the alternate screen with echo off: give it back,
 * then die of the same signal (SA_RESETHAND restored the default action). */
static void top_on_crash(int sig)
{
    top_term_leave();
    raise(sig);
}

static void top_signals_install(void)
{
    static const int quit[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH, SIGTSTP};
    static const int crash[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    /* No SA_RESTART: a signal ends a poll() at once (the self-pipe covers the moment before
     * poll() starts). */
    struct sigaction sa = {.sa_handler = top_on_signal};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof quit / sizeof quit[0]; i++) {
        sigaction(quit[i], &sa, NULL);
    }
    struct sigaction sc = {.sa_handler = top_on_crash, .sa_flags = SA_RESETHAND | SA_NODEFER};
    sigemptyset(&sc.sa_mask);
    for (size_t i = 0; i < sizeof crash / sizeof crash[0]; i++) {
        sigaction(crash[i], &sc, NULL);
    }
}

/* The terminal's size; 80x24 when it cannot say (a pipe, a serial line without a size). */
static void top_size_read(struct top *t)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) {
        t->cols = ws.ws_col;
        t->rows = ws.ws_row;
    } else {
        t->cols = 80;
        t->rows = 24;
    }
}

/* ---- talking to drover ---- */

static void top_events_clear(struct top *t)
{
    for (size_t i = 0; i < t->n_events; i++) {
        json_decref(t->events[(t->first + i) % TOP_EVENTS_KEPT]);
    }
    t->first = t->n_events = 0;
}

/* Keeps ev (a new reference is taken), dropping the oldest when the ring is full. */
static void top_events_add(struct top *t, json_t *ev)
{
    if (t->n_events == TOP_EVENTS_KEPT) {
        json_decref(t->events[t->first]);
        t->first = (t->first + 1) % TOP_EVENTS_KEPT;
        t->n_events--;
    }
    t->events[(t->first + t->n_events) % TOP_EVENTS_KEPT] = json_incref(ev);
    t->n_events++;
}

/*
 * Sends req on the kept connection (opening it first when there is none) and reads up to the
 * final reply, keeping the events that come before it. Returns 0 with *ret_reply (the caller's
 * reference), or -errno: -ECONNRESET when drover closed the connection, -EPROTO when it said
 * ok:false or sent something that is not JSON (t->error says which).
 */
static int top_ask(struct top *t, const struct wire_request *req, json_t **ret_reply)
{
    double deadline = ctlclient_now() + TOP_REPLY_TIMEOUT;
    char *request = NULL, *line = NULL;
    json_t *msg = NULL;
    int r = 0;
    if (t->cl.fd == -1 && (r = ctlclient_open(&t->cl, t->opt->socket, deadline)) < 0) {
        goto out;
    }
    size_t len = 0;
    request = wire_request_format(req, &len);
    if (!request) {
        r = -ENOMEM;
        goto out;
    }
    if ((r = ctlclient_send(&t->cl, request, len, deadline)) < 0) {
        goto out;
    }
    for (;;) {
        r = ctlclient_read_line(&t->cl, deadline, &line);
        if (r <= 0) {
            r = r == 0 ? -ECONNRESET : r;
            goto out;
        }
        msg = json_loads(line, 0, NULL);
        free(line);
        line = NULL;
        if (!json_is_object(msg)) {
            snprintf(t->error, sizeof t->error, "drover sent something that is not JSON");
            r = -EPROTO;
            goto out;
        }
        json_t *ev = json_object_get(msg, "event");
        json_t *ok = json_object_get(msg, "ok");
        if (json_is_object(ev) && (int64_t)ctlview_number(ev, "seq") > t->since) {
            top_events_add(t, ev);
        }
        if (ok) {
            break;
        }
        json_decref(msg);
        msg = NULL;
    }
    if (!json_is_true(json_object_get(msg, "ok"))) {
        snprintf(t->error, sizeof t->error, "%s", ctlview_string(msg, "error", "failed"));
        r = -EPROTO;
        goto out;
    }
    *ret_reply = msg;
    msg = NULL;
out:
    json_decref(msg);
    free(line);
    free(request);
    return r;
}

/* One refresh: status, then the events since the last one. On failure the connection is
 * dropped (the next refresh opens a new one), t->error says why, and the last status stays. */
static int top_refresh(struct top *t)
{
    struct wire_request req;
    json_t *status = NULL, *reply = NULL;
    t->error[0] = '\0';
    wire_request_init(&req, WIRE_CMD_STATUS);
    int r = top_ask(t, &req, &status);
    wire_request_done(&req);
    if (r < 0) {
        goto out;
    }
    /* Another drover (restarted, or a second one at the same path) numbers its events anew. */
    if (ctlview_number(status, "pid") != t->drover_pid) {
        top_events_clear(t);
        t->since = 0;
        t->drover_pid = ctlview_number(status, "pid");
    }
    json_decref(t->status);
    t->status = status;
    wire_request_init(&req, WIRE_CMD_EVENTS);
    req.since = t->since;
    r = top_ask(t, &req, &reply);
    wire_request_done(&req);
    if (r < 0) {
        goto out;
    }
    int64_t last = (int64_t)ctlview_number(reply, "last_seq");
    t->since = last > t->since ? last : t->since;
    t->last_seen = time(NULL);
out:
    json_decref(reply);
    if (r < 0) {
        if (!t->error[0]) {
            snprintf(t->error, sizeof t->error, "%s",
                     r == -ECONNRESET ? "drover closed the connection" : strerror(-r));
        }
        ctlclient_close(&t->cl);
    }
    return r;
}

/* ---- frames ---- */

static int top_lines_add(struct top_lines *l, const char *s, size_t len)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            return -ENOMEM;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n] = strndup(s, len);
    if (!l->v[l->n]) {
        return -ENOMEM;
    }
    l->n++;
    return 0;
}

/* Adds each line of text (newline-separated, the last newline optional). */
static int top_lines_split(struct top_lines *l, const char *text, size_t len)
{
    while (len > 0) {
        const char *nl = memchr(text, '\n', len);
        size_t n = nl ? (size_t)(nl - text) : len;
        int r = top_lines_add(l, text, n);
        if (r < 0) {
            return r;
        }
        text += nl ? n + 1 : n;
        len -= nl ? n + 1 : n;
    }
    return 0;
}

static void top_lines_free(struct top_lines *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i]);
    }
    free(l->v);
    *l = (struct top_lines){0};
}

/* The top line: when, which drover, how many workers are ready; or why it does not answer. */
static void top_header_write(const struct top *t, FILE *f, bool color)
{
    char clock[16] = "";
    time_t now = time(NULL);
    struct tm tm;
    if (localtime_r(&now, &tm)) {
        strftime(clock, sizeof clock, "%H:%M:%S", &tm);
    }
    if (t->error[0]) {
        char seen[16] = "never";
        if (localtime_r(&t->last_seen, &tm) && t->last_seen) {
            strftime(seen, sizeof seen, "%H:%M:%S", &tm);
        }
        fprintf(f, "%s  %sdrover is not answering: %s%s; retrying every %gs, last seen %s  %s%s%s",
                clock, color ? CTLVIEW_RED CTLVIEW_BOLD : "", t->error, color ? CTLVIEW_RESET : "",
                t->opt->interval, seen, color ? CTLVIEW_DIM : "", t->opt->socket,
                color ? CTLVIEW_RESET : "");
        return;
    }
    size_t i, j, workers = 0, ready = 0;
    json_t *app, *w;
    json_t *apps = json_object_get(t->status, "apps");
    json_array_foreach(apps, i, app)
    {
        json_array_foreach(json_object_get(app, "workers"), j, w)
        {
            workers++;
            ready += strcmp(ctlview_string(w, "state", ""), "ready") == 0;
        }
    }
    char up[32];
    ctlview_format_duration(ctlview_number(t->status, "uptime_s"), up, sizeof up);
    fprintf(f, "%s  %sdrover%s pid %.0f, up %s: %zu app%s, %zu worker%s, %zu ready  %s%s%s", clock,
            color ? CTLVIEW_BOLD : "", color ? CTLVIEW_RESET : "", t->drover_pid, up,
            json_array_size(apps), json_array_size(apps) == 1 ? "" : "s", workers,
            workers == 1 ? "" : "s", ready, color ? CTLVIEW_DIM : "", t->opt->socket,
            color ? CTLVIEW_RESET : "");
}

/* Runs write(data, f, color) into memory and adds the lines it wrote. */
static int top_render(struct top_lines *l, void (*write)(const void *, FILE *, bool),
                      const void *data, bool color)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) {
        return -errno;
    }
    write(data, f, color);
    int r = fclose(f) == 0 ? top_lines_split(l, text, len) : -ENOMEM;
    free(text);
    return r;
}

static void top_render_header(const void *data, FILE *f, bool color)
{
    top_header_write(data, f, color);
}

static void top_render_status(const void *data, FILE *f, bool color)
{
    const struct top *t = data;
    if (t->status) {
        ctlview_status_write(t->status, f, color);
    }
}

static void top_render_event(const void *data, FILE *f, bool color)
{
    ctlview_event_write((json_t *)data, f, color, true);
}

/*
 * Copies line into f, cut at cols visible columns (cols < 0: not cut). An escape sequence
 * (ESC [ ... final byte) costs no column and is kept, so colours survive the cut; a UTF-8
 * character costs one; any other control character (a tab in an event message) becomes a
 * space, so it cannot move the cursor off the frame.
 */
static void top_clip_write(FILE *f, const char *line, int cols)
{
    int col = 0;
    bool escaped = false;
    for (const unsigned char *p = (const unsigned char *)line; *p; p++) {
        if (*p == 0x1b && p[1] == '[') {
            const unsigned char *q = p + 2;
            while (*q && !(*q >= 0x40 && *q <= 0x7e)) {
                q++;
            }
            if (!*q) {
                break;
            }
            fwrite(p, 1, (size_t)(q - p + 1), f);
            escaped = true;
            p = q;
            continue;
        }
        bool continuation = (*p & 0xc0) == 0x80;
        if (!continuation) {
            if (cols >= 0 && col >= cols) {
                break;
            }
            col++;
        }
        fputc(*p < 0x20 || *p == 0x7f ? ' ' : *p, f);
    }
    if (escaped) {
        fputs(CTLVIEW_RESET, f);
    }
}

/*
 * Composes a frame: header, the status table, the latest events, and in the live view a key
 * line at the bottom. live: fitted to t->rows x t->cols, with the escapes that draw it in
 * place; else (--once) every table row and the last TOP_ONCE_EVENTS events, as plain lines.
 */
static int top_frame(const struct top *t, bool live, char **ret, size_t *ret_len)
{
    bool color = t->opt->color;
    struct top_lines head = {0}, table = {0}, events = {0}, out = {0};
    char *text = NULL;
    size_t len = 0;
    FILE *f = NULL;
    int r = top_render(&head, top_render_header, t, color);
    r = r < 0 ? r : top_render(&table, top_render_status, t, color);
    size_t want =
        live ? t->n_events : (t->n_events < TOP_ONCE_EVENTS ? t->n_events : TOP_ONCE_EVENTS);
    for (size_t i = t->n_events - want; r == 0 && i < t->n_events; i++) {
        r = top_render(&events, top_render_event, t->events[(t->first + i) % TOP_EVENTS_KEPT],
                       color);
    }
    if (r < 0) {
        goto out;
    }

    /* Heights: header, blank, table, blank, EVENTS title, events, keys. The table gets what
     * it needs up to all but three event lines; the events get the rest, newest last. */
    /* A terminal smaller than TOP_MIN_ROWS is laid out as if it had that many rows, and only
     * its own rows are drawn: the top of the frame, and the key line on its last row. */
    size_t rows = live ? (size_t)(t->rows > TOP_MIN_ROWS ? t->rows : TOP_MIN_ROWS) : SIZE_MAX;
    size_t screen_rows = live && t->rows > 0 ? (size_t)t->rows : rows;
    size_t fixed = 5;
    size_t table_rows = table.n, event_rows = events.n, hidden = 0;
    if (live) {
        size_t room = rows - fixed;
        size_t table_max = room > 3 ? room - 3 : 1;
        if (table_rows > table_max) {
            hidden = table_rows - (table_max - 1);
            table_rows = table_max - 1;
        }
        size_t used = table_rows + (hidden ? 1 : 0);
        event_rows = room - used;
    }
    f = open_memstream(&text, &len);
    if (!f) {
        r = -errno;
        goto out;
    }
    struct top_lines *sections[] = {&head, NULL, &table, NULL, NULL, &events};
    char more[64], title[64];
    snprintf(more, sizeof more, "%s... %zu more row%s (a taller terminal shows them)%s",
             color ? CTLVIEW_DIM : "", hidden, hidden == 1 ? "" : "s", color ? CTLVIEW_RESET : "");
    snprintf(title, sizeof title, "%sEVENTS%s", color ? CTLVIEW_BOLD : "",
             color ? CTLVIEW_RESET : "");
    for (size_t s = 0; s < sizeof sections / sizeof sections[0]; s++) {
        struct top_lines *l = sections[s];
        if (!l) {
            r = top_lines_add(&out, s == 4 ? title : "", s == 4 ? strlen(title) : 0);
        } else if (l == &table) {
            for (size_t i = 0; r == 0 && i < table_rows; i++) {
                r = top_lines_add(&out, l->v[i], strlen(l->v[i]));
            }
            r = r < 0 || !hidden ? r : top_lines_add(&out, more, strlen(more));
        } else if (l == &events) {
            size_t shown = event_rows < l->n ? event_rows : l->n;
            for (size_t i = l->n - shown; r == 0 && i < l->n; i++) {
                r = top_lines_add(&out, l->v[i], strlen(l->v[i]));
            }
            if (r == 0 && l->n == 0) {
                r = top_lines_add(&out, "(none yet)", 10);
            }
        } else {
            for (size_t i = 0; r == 0 && i < l->n; i++) {
                r = top_lines_add(&out, l->v[i], strlen(l->v[i]));
            }
        }
        if (r < 0) {
            goto out;
        }
    }
    if (!live) {
        for (size_t i = 0; i < out.n; i++) {
            fprintf(f, "%s\n", out.v[i]);
        }
    } else {
        /* The key line goes on the last row, whatever the events left free above it. */
        char keys[96];
        snprintf(keys, sizeof keys, "%sq quit  r refresh  every %gs%s", color ? CTLVIEW_DIM : "",
                 t->opt->interval, color ? CTLVIEW_RESET : "");
        fputs("\033[H", f);
        for (size_t row = 0; row < screen_rows; row++) {
            const char *line = row + 1 == screen_rows ? keys : row < out.n ? out.v[row] : "";
            top_clip_write(f, line, t->cols);
            /* Erase what the last frame left right of this line; no newline after the last
             * row, which would scroll the screen. */
            fputs(row + 1 == screen_rows ? "\033[K" : "\033[K\r\n", f);
        }
    }
    if (fclose(f) != 0) {
        f = NULL;
        r = -ENOMEM;
        goto out;
    }
    f = NULL;
    *ret = text;
    *ret_len = len;
    text = NULL;
out:
    if (f) {
        fclose(f);
    }
    free(text);
    top_lines_free(&head);
    top_lines_free(&table);
    top_lines_free(&events);
    top_lines_free(&out);
    return r;
}

static int top_draw(const struct top *t, bool live)
{
    char *frame = NULL;
    size_t len = 0;
    int r = top_frame(t, live, &frame, &len);
    if (r == 0) {
        top_write_all(STDOUT_FILENO, frame, len);
    }
    free(frame);
    return r;
}

/* ---- the loop ---- */

/* Reads what was typed; returns false when the user asked to quit (or stdin is gone). */
static bool top_keys_read(double *next)
{
    char keys[64];
    ssize_t n = read(STDIN_FILENO, keys, sizeof keys);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
        return false; /* the terminal hung up */
    }
    for (ssize_t i = 0; i < n; i++) {
        switch (keys[i]) {
        case 'q':
        case 'Q':
            return false;
        case 'r':
        case 'R':
        case ' ':
            *next = 0; /* refresh now */
            break;
        case '\f': /* Ctrl-L: redraw everything, as in every curses program */
            top_write_all(STDOUT_FILENO, "\033[2J", 4);
            break;
        default:
            break;
        }
    }
    return true;
}

static void top_loop(struct top *t, int wake_rd)
{
    double next = ctlclient_now() + t->opt->interval;
    bool keys = top_have_termios;
    top_size_read(t);
    top_draw(t, true);
    while (!top_quit) {
        if (top_suspend) {
            /* Ctrl-Z: give the shell its terminal back, stop, and take it again on fg. */
            top_suspend = 0;
            top_term_leave();
            kill(getpid(), SIGSTOP);
            top_term_enter();
            top_resized = 1;
        }
        if (top_resized) {
            top_resized = 0;
            top_size_read(t);
            top_write_all(STDOUT_FILENO, "\033[2J", 4);
            top_draw(t, true);
        }
        double now = ctlclient_now();
        if (now >= next) {
            top_refresh(t);
            top_draw(t, true);
            next = ctlclient_now() + t->opt->interval;
            continue;
        }
        struct pollfd p[2] = {{.fd = wake_rd, .events = POLLIN},
                              {.fd = keys ? STDIN_FILENO : -1, .events = POLLIN}};
        int k = poll(p, 2, (int)((next - now) * 1000.0) + 1);
        if (k <= 0) {
            continue; /* a signal (its flag is set) or the refresh is due */
        }
        if (p[0].revents) {
            char drain[64];
            while (read(wake_rd, drain, sizeof drain) > 0) {
            }
        }
        if (p[1].revents && !top_keys_read(&next)) {
            break;
        }
    }
}

int top_run(const struct top_options *opt)
{
    struct top t = {.opt = opt, .cl = CTLCLIENT_INIT};
    int pipefd[2] = {-1, -1};
    int r = 0;
    t.cl.interrupted = &top_quit;
    if (!opt->once && !isatty(STDOUT_FILENO)) {
        fprintf(stderr, "droverctl: top needs a terminal on stdout; `top --once` prints one "
                        "frame anywhere\n");
        r = -ENOTTY;
        goto out;
    }
    if ((r = top_refresh(&t)) < 0) {
        fprintf(stderr, "droverctl: no drover at %s: %s\n", opt->socket, t.error);
        goto out;
    }
    if (opt->once) {
        r = top_draw(&t, false);
        goto out;
    }
    if (pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) == -1) {
        r = -errno;
        fprintf(stderr, "droverctl: pipe2() failed: %s\n", strerror(-r));
        goto out;
    }
    top_wake_fd = pipefd[1];
    top_have_termios = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &top_saved) == 0;
    top_signals_install();
    top_term_enter();
    top_loop(&t, pipefd[0]);
    top_term_leave();
    r = 0;
out:
    top_wake_fd = -1;
    for (int i = 0; i < 2; i++) {
        if (pipefd[i] != -1) {
            close(pipefd[i]);
        }
    }
    ctlclient_close(&t.cl);
    top_events_clear(&t);
    json_decref(t.status);
    return r;
}
