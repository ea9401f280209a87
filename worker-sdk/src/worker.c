/*
 * worker: libdrover-worker, the worker's side of SPEC sections 4 and 5. See <drover/worker.h>.
 *
 * The SDK owns no event loop and no thread: the app's loop tells us when the channel fd is
 * ready, and we do a bounded amount of non-blocking work and return. Everything that could
 * grow without bound is capped instead: input is framed by wire_lines (1 MiB per line, the
 * protocol's limit), queued output stops at DROVER_OUT_MAX with -ENOBUFS. A master that
 * closes the channel is gone for good (it never reconnects), so the first EOF or reset is
 * remembered and every later call reports the same -EPIPE.
 *
 * Where a channel and NOTIFY_SOCKET are both present the channel wins: it is drover's native
 * protocol, and sd_notify cannot carry phases or metrics. NOTIFY_SOCKET alone serves programs
 * that run under systemd, or under drover with a worker that prefers sd_notify.
 */
#include "drover/worker.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "bytebuf.h"
#include "wire.h"

/* systemd passes the first socket at fd 3 (SD_LISTEN_FDS_START). */
#define LISTEN_FDS_START 3
/* Queued output beyond this means the master stopped reading: refuse instead of growing. */
#define DROVER_OUT_MAX (4u * 1024u * 1024u)
/* Reads per drover_process call, so a chatty master cannot starve the app's own work. */
#define READS_PER_PROCESS 16
/* A status line is one short human sentence; longer text is cut. */
#define STATUS_MAX 4096
/* A temporary of a state save untouched this long was abandoned by a killed save. */
#define STATE_TEMP_STALE_S 60
/* State beyond this is not what the state file is for. */
#define STATE_MAX (64u * 1024u * 1024u)
/* How long drover_close waits for queued output (a last phase_done) to leave. */
#define CLOSE_FLUSH_MS 1000

_Static_assert((int)DROVER_PHASE_COMPLETE == (int)WIRE_PHASE_COMPLETE &&
                   (int)DROVER_PHASE_INITIATED == (int)WIRE_PHASE_INITIATED &&
                   (int)DROVER_PHASE_DRAIN == (int)WIRE_PHASE_DRAIN &&
                   (int)DROVER_PHASE_SAVE == (int)WIRE_PHASE_SAVE &&
                   (int)DROVER_PHASE_CLOSE == (int)WIRE_PHASE_CLOSE &&
                   (int)DROVER_PHASE_CLEANUP == (int)WIRE_PHASE_CLEANUP,
               "drover_phase and wire_phase must agree");
_Static_assert(DROVER_LINE_MAX == WIRE_LINE_MAX, "one line limit");

struct phase_handler {
    drover_phase_fn fn;
    void *userdata;
};

struct drover_worker {
    /* The channel: fd, and once broken the error every later call returns. */
    int channel_fd;
    int channel_err;
    struct wire_lines in;
    struct bytebuf out; /* queued output, at most DROVER_OUT_MAX */

    /* NOTIFY_SOCKET; the datagram socket is opened on first use. */
    bool has_notify;
    int notify_fd;
    struct sockaddr_un notify_addr;
    socklen_t notify_addr_len;

    int listen_n;
    char **listen_names;

    char *app;
    int worker_id;
    int64_t generation;
    char *state_file;
    uint64_t watchdog_usec;     /* WATCHDOG_USEC addressed to us (WATCHDOG_PID), else 0 */
    bool supervised;
    bool stopping;

    struct phase_handler phase_handlers[WIRE_PHASE_COUNT];
    drover_collect_fn collect_fn;
    void *collect_userdata;
    drover_metrics_page_fn page_fn;
    void *page_userdata;
};

/* ---- environment ------------------------------------------------------------------------ */

/* Parses a whole decimal string into [min, max]. Returns 0 or -EINVAL. */
static int parse_integer(const char *s, long long min, long long max, long long *ret)
{
    char *end;
    if (!s || !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9'))) {
        return -EINVAL;
    }
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) {
        return -EINVAL;
    }
    *ret = v;
    return 0;
}

/* Marks fd close-on-exec, optionally non-blocking. Returns 0, -EBADF when not open, -errno. */
static int fd_prepare(int fd, bool nonblock)
{
    int fdflags = fcntl(fd, F_GETFD);
    if (fdflags == -1) {
        return -errno;
    }
    if (!(fdflags & FD_CLOEXEC) && fcntl(fd, F_SETFD, fdflags | FD_CLOEXEC) == -1) {
        return -errno;
    }
    if (nonblock) {
        int flags = fcntl(fd, F_GETFL);
        if (flags == -1) {
            return -errno;
        }
        if (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1) {
            return -errno;
        }
    }
    return 0;
}

/*
 * Socket activation, as sd_listen_fds does it: the variables are addressed to LISTEN_PID, so
 * a process that merely inherited them (the child of an activated daemon) must ignore them.
 * Returns 1 when they were ours (drover_init removes them once nothing else can fail), 0 when
 * there were none for us, or -errno.
 */
static int listen_fds_read(struct drover_worker *w)
{
    const char *e = getenv("LISTEN_PID");
    long long pid, n;
    int r;

    if (!e) {
        return 0;
    }
    r = parse_integer(e, 1, INT_MAX, &pid);
    if (r < 0) {
        return r;
    }
    if ((pid_t)pid != getpid()) {
        return 0;
    }
    r = parse_integer(getenv("LISTEN_FDS"), 0, INT_MAX - LISTEN_FDS_START, &n);
    if (r < 0) {
        return r;
    }
    for (int i = 0; i < (int)n; i++) {
        r = fd_prepare(LISTEN_FDS_START + i, false);
        if (r < 0) {
            return r;
        }
    }

    /* Names are colon-separated; missing ones read "unknown", as under systemd. */
    w->listen_names = calloc(n > 0 ? (size_t)n : 1, sizeof(char *));
    if (!w->listen_names) {
        return -ENOMEM;
    }
    w->listen_n = (int)n;
    const char *names = getenv("LISTEN_FDNAMES");
    for (int i = 0; i < (int)n; i++) {
        const char *name = "unknown";
        size_t len = strlen(name);
        if (names && *names != '\0') {
            const char *colon = strchr(names, ':');
            len = colon ? (size_t)(colon - names) : strlen(names);
            name = names;
            names = colon ? colon + 1 : NULL;
        }
        w->listen_names[i] = strndup(name, len);
        if (!w->listen_names[i]) {
            return -ENOMEM;
        }
    }
    return 1;
}

/* NOTIFY_SOCKET: "/path" or "@abstract"; other kinds (vsock) are not ours to speak. */
static void notify_read(struct drover_worker *w)
{
    const char *e = getenv("NOTIFY_SOCKET");
    if (!e || (e[0] != '/' && e[0] != '@')) {
        return;
    }
    size_t len = strlen(e);
    if (len < 2 || len >= sizeof(w->notify_addr.sun_path)) {
        return;
    }
    w->notify_addr.sun_family = AF_UNIX;
    memcpy(w->notify_addr.sun_path, e, len);
    if (e[0] == '@') {
        /* An abstract name is exactly its bytes, the leading NUL included, no terminator. */
        w->notify_addr.sun_path[0] = '\0';
        w->notify_addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    } else {
        w->notify_addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    }
    w->has_notify = true;
}

/* Copies an optional, non-empty variable. Returns 0 or -ENOMEM. */
static int env_string(const char *name, char **ret)
{
    const char *e = getenv(name);
    if (!e || *e == '\0') {
        return 0;
    }
    *ret = strdup(e);
    return *ret ? 0 : -ENOMEM;
}

int drover_init(struct drover_worker **ret)
{
    struct drover_worker *w = calloc(1, sizeof(*w));
    bool listen_honoured = false;
    const char *e;
    long long v;
    int r;

    if (!w) {
        return -ENOMEM;
    }
    w->channel_fd = -1;
    w->notify_fd = -1;
    w->worker_id = -1;
    w->generation = -1;
    wire_lines_init(&w->in, WIRE_LINE_MAX);

    r = listen_fds_read(w);
    if (r < 0) {
        goto out;
    }
    listen_honoured = r == 1;
    notify_read(w);

    e = getenv("DROVER_CHANNEL_FD");
    if (e) {
        r = parse_integer(e, 0, INT_MAX, &v);
        if (r < 0) {
            goto out;
        }
        r = fd_prepare((int)v, true);
        if (r < 0) {
            goto out;
        }
        w->channel_fd = (int)v;
    }

    r = env_string("DROVER_APP", &w->app);
    if (r < 0) {
        goto out;
    }
    r = env_string("DROVER_STATE_FILE", &w->state_file);
    if (r < 0) {
        goto out;
    }
    e = getenv("DROVER_WORKER_ID");
    if (e) {
        r = parse_integer(e, 0, INT_MAX, &v);
        if (r < 0) {
            goto out;
        }
        w->worker_id = (int)v;
    }
    e = getenv("DROVER_GENERATION");
    if (e) {
        r = parse_integer(e, 0, LLONG_MAX, &v);
        if (r < 0) {
            goto out;
        }
        w->generation = v;
    }
    /* The watchdog as sd_watchdog_enabled() reads it: honoured when WATCHDOG_PID is ours (or
     * absent). A malformed value means no watchdog, never a failed init. */
    e = getenv("WATCHDOG_USEC");
    if (e && parse_integer(e, 1, LLONG_MAX, &v) == 0) {
        const char *wpid = getenv("WATCHDOG_PID");
        long long pid = 0;
        if (!wpid || (parse_integer(wpid, 1, INT_MAX, &pid) == 0 && pid == (long long)getpid())) {
            w->watchdog_usec = (uint64_t)v;
        }
    }
    w->supervised = w->app || w->channel_fd >= 0;

    /* Only now, with nothing left to fail, take the variables out of the environment. */
    if (listen_honoured) {
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_FDNAMES");
    }
    if (w->channel_fd >= 0) {
        unsetenv("DROVER_CHANNEL_FD");
    }
    *ret = w;
    w = NULL;
out:
    if (w) {
        /* A failed init never owned the channel fd: leave it to the caller. */
        w->channel_fd = -1;
        drover_close(w);
    }
    return r;
}

/* ---- output ------------------------------------------------------------------------------ */

/* Marks the channel broken. EOF, EPIPE and a reset all mean the same: the master is gone. */
static int channel_fail(struct drover_worker *w, int err)
{
    if (err == -ECONNRESET || err == 0) {
        err = -EPIPE;
    }
    w->channel_err = err;
    return err;
}

/* Writes queued output until done or the socket is full. Returns 0 or the channel's error. */
static int channel_flush(struct drover_worker *w)
{
    while (bytebuf_pending(&w->out) > 0) {
        ssize_t n = send(w->channel_fd, bytebuf_head(&w->out), bytebuf_pending(&w->out),
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0) {
            bytebuf_consume(&w->out, (size_t)n);
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 0;
        } else {
            return channel_fail(w, -errno);
        }
    }
    return 0;
}

/* Appends one line to the queue and writes what the socket takes now. */
static int channel_queue(struct drover_worker *w, const char *line, size_t len)
{
    if (w->channel_fd < 0) {
        return -ENOTCONN;
    }
    if (w->channel_err) {
        return w->channel_err;
    }
    if (len > WIRE_LINE_MAX + 1) {
        return -EMSGSIZE;
    }
    int r = bytebuf_append(&w->out, line, len, DROVER_OUT_MAX);
    if (r < 0) {
        return r;
    }
    return channel_flush(w);
}

static int channel_send(struct drover_worker *w, const struct wire_msg *msg)
{
    size_t len;
    char *line = wire_msg_format(msg, &len);
    if (!line) {
        return -ENOMEM;
    }
    int r = channel_queue(w, line, len);
    free(line);
    return r;
}

/* One sd_notify datagram. Returns 0 (also when there is no NOTIFY_SOCKET) or -errno. */
static int notify_send(struct drover_worker *w, const char *text)
{
    if (!w->has_notify) {
        return 0;
    }
    if (w->notify_fd < 0) {
        w->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (w->notify_fd < 0) {
            return -errno;
        }
    }
    ssize_t n = sendto(w->notify_fd, text, strlen(text), MSG_NOSIGNAL,
                       (const struct sockaddr *)&w->notify_addr, w->notify_addr_len);
    return n < 0 ? -errno : 0;
}

/* A message without fields on the channel, else its sd_notify equivalent. */
static int signal_simple(struct drover_worker *w, enum wire_type type, const char *notify)
{
    if (w->channel_fd >= 0) {
        return channel_send(w, &(struct wire_msg){.type = type});
    }
    return notify_send(w, notify);
}

int drover_ready(struct drover_worker *w)
{
    return signal_simple(w, WIRE_READY, "READY=1");
}

uint64_t drover_watchdog_usec(const struct drover_worker *w)
{
    return w->watchdog_usec;
}

int drover_heartbeat(struct drover_worker *w)
{
    return signal_simple(w, WIRE_HEARTBEAT, "WATCHDOG=1");
}

int drover_recycle(struct drover_worker *w, const char *reason)
{
    if (w->channel_fd < 0) {
        return 0; /* outside drover there is no one to replace us */
    }
    struct wire_msg msg = {.type = WIRE_RECYCLE, .text = (char *)(reason ? reason : "")};
    return channel_send(w, &msg);
}

int drover_status(struct drover_worker *w, const char *fmt, ...)
{
    char buf[sizeof("STATUS=") - 1 + STATUS_MAX + 1] = "STATUS=";
    char *text = buf + sizeof("STATUS=") - 1;
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(text, STATUS_MAX + 1, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return -EINVAL;
    }
    if (w->channel_fd >= 0) {
        return channel_send(w, &(struct wire_msg){.type = WIRE_STATUS, .text = text});
    }
    /* sd_notify is one assignment per line: a newline would start a new one. */
    for (char *p = text; *p; p++) {
        if (*p == '\n') {
            *p = ' ';
        }
    }
    return notify_send(w, buf);
}

int drover_phase_done(struct drover_worker *w, enum drover_phase phase)
{
    if (!wire_phase_to_string((enum wire_phase)phase)) {
        return -EINVAL;
    }
    if (w->channel_fd < 0) {
        return 0;
    }
    return channel_send(w, &(struct wire_msg){.type = WIRE_PHASE_DONE,
                                              .phase = (enum wire_phase)phase});
}

int drover_metrics_send(struct drover_worker *w, const char *families_json)
{
    json_error_t error;
    json_t *families = NULL;
    int r;

    if (!families_json) {
        return -EINVAL;
    }
    if (w->channel_fd < 0) {
        return -ENOTCONN;
    }
    families = json_loads(families_json, 0, &error);
    if (!json_is_array(families)) {
        r = -EINVAL;
        goto out;
    }
    r = channel_send(w, &(struct wire_msg){.type = WIRE_METRICS, .families = families});
out:
    json_decref(families);
    return r;
}

int drover_metrics_request(struct drover_worker *w, const char *format)
{
    if (!format || (strcmp(format, "text") != 0 && strcmp(format, "json") != 0)) {
        return -EINVAL;
    }
    if (w->channel_fd < 0) {
        return -ENOTCONN;
    }
    return channel_send(w, &(struct wire_msg){.type = WIRE_GET_METRICS, .format = (char *)format});
}

/* ---- input ------------------------------------------------------------------------------- */

static void dispatch(struct drover_worker *w, const struct wire_msg *msg)
{
    switch (msg->type) {
    case WIRE_PHASE: {
        struct phase_handler *h = &w->phase_handlers[msg->phase];
        w->stopping = true;
        if (msg->phase == WIRE_PHASE_CLEANUP && w->collect_fn) {
            /* The final counts: the master keeps an exited worker's last snapshot in its sums. */
            w->collect_fn(w, w->collect_userdata);
        }
        if (h->fn) {
            h->fn(w, (enum drover_phase)msg->phase, msg->timeout_ms, h->userdata);
        } else {
            /* Nothing to do for this phase: say so now, or the master waits out the timeout. */
            (void)drover_phase_done(w, (enum drover_phase)msg->phase);
        }
        break;
    }
    case WIRE_COLLECT:
        if (w->collect_fn) {
            w->collect_fn(w, w->collect_userdata);
        }
        break;
    case WIRE_METRICS_PAGE:
        if (w->page_fn) {
            w->page_fn(w, msg->format, msg->body, w->page_userdata);
        }
        break;
    default:
        /* Worker-to-master types have no meaning here. */
        break;
    }
}

/* Takes every complete line out of the buffer and dispatches it. Returns 0 or -EMSGSIZE. */
static int channel_dispatch_lines(struct drover_worker *w)
{
    const char *line;
    size_t len;
    int r;

    while ((r = wire_lines_next(&w->in, &line, &len)) == 1) {
        struct wire_msg msg;
        /* Unknown or malformed lines are skipped: a newer master may send what we don't know. */
        if (len == 0 || wire_msg_parse(line, len, &msg) < 0) {
            continue;
        }
        dispatch(w, &msg);
        wire_msg_done(&msg);
        if (w->channel_err) {
            return 0;
        }
    }
    return r;
}

int drover_process(struct drover_worker *w)
{
    int r;

    if (w->channel_fd < 0) {
        return 0;
    }
    if (w->channel_err) {
        return w->channel_err;
    }
    for (int i = 0; i < READS_PER_PROCESS; i++) {
        size_t room;
        char *space = wire_lines_space(&w->in, &room);
        if (!space) {
            return -ENOMEM;
        }
        ssize_t n = read(w->channel_fd, space, room);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        if (n <= 0) {
            /* EOF: what arrived before it still counts, then the master is gone. */
            int err = n == 0 ? 0 : -errno;
            (void)channel_dispatch_lines(w);
            return channel_fail(w, err);
        }
        wire_lines_commit(&w->in, (size_t)n);
        r = channel_dispatch_lines(w);
        if (r < 0) {
            return channel_fail(w, r);
        }
        if (w->channel_err) {
            return w->channel_err;
        }
        if ((size_t)n < room) {
            /* A short read: the socket is drained for now; skip the EAGAIN round trip. */
            break;
        }
    }
    return channel_flush(w);
}

int drover_fd(const struct drover_worker *w)
{
    return w->channel_fd;
}

bool drover_wants_write(const struct drover_worker *w)
{
    return w->channel_fd >= 0 && !w->channel_err && bytebuf_pending(&w->out) > 0;
}

/* ---- registration and accessors --------------------------------------------------------- */

int drover_on_phase(struct drover_worker *w, enum drover_phase phase, drover_phase_fn fn,
                    void *userdata)
{
    if ((unsigned)phase >= WIRE_PHASE_COUNT) {
        return -EINVAL;
    }
    w->phase_handlers[phase] = (struct phase_handler){.fn = fn, .userdata = userdata};
    return 0;
}

void drover_on_collect(struct drover_worker *w, drover_collect_fn fn, void *userdata)
{
    w->collect_fn = fn;
    w->collect_userdata = userdata;
}

void drover_on_metrics_page(struct drover_worker *w, drover_metrics_page_fn fn, void *userdata)
{
    w->page_fn = fn;
    w->page_userdata = userdata;
}

bool drover_stopping(const struct drover_worker *w)
{
    return w->stopping;
}

const char *drover_phase_to_string(enum drover_phase phase)
{
    return wire_phase_to_string((enum wire_phase)phase);
}

bool drover_is_supervised(const struct drover_worker *w)
{
    return w->supervised;
}

int drover_listen_count(const struct drover_worker *w)
{
    return w->listen_n;
}

int drover_listen_fd(const struct drover_worker *w, int i)
{
    return i >= 0 && i < w->listen_n ? LISTEN_FDS_START + i : -1;
}

const char *drover_listen_name(const struct drover_worker *w, int i)
{
    return i >= 0 && i < w->listen_n ? w->listen_names[i] : NULL;
}

const char *drover_app(const struct drover_worker *w)
{
    return w->app;
}

int drover_worker_id(const struct drover_worker *w)
{
    return w->worker_id;
}

int64_t drover_generation(const struct drover_worker *w)
{
    return w->generation;
}

const char *drover_state_file(const struct drover_worker *w)
{
    return w->state_file;
}

void drover_free(void *p)
{
    free(p);
}

/* ---- saved state ------------------------------------------------------------------------- */

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * Removes temporaries of this state file (".base.XXXXXX") left by saves that were killed. Only
 * this file's own temporaries: the state_dir is shared with other slots and apps, whose files
 * are theirs to judge. Only stale ones: during a reload the old worker of this slot may be in
 * the middle of a save, but a live save writes, syncs and renames within moments, so a
 * temporary nobody has modified for STATE_TEMP_STALE_S seconds has no writer left.
 */
static void state_sweep(const char *dir, const char *base)
{
    DIR *d = opendir(dir);
    if (!d) {
        return;
    }
    size_t blen = strlen(base);
    time_t now = time(NULL);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        if (n[0] != '.' || strncmp(n + 1, base, blen) != 0 || n[1 + blen] != '.' ||
            strlen(n + 2 + blen) != 6) { /* mkostemp's six characters */
            continue;
        }
        struct stat st;
        if (fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
            now - st.st_mtime < STATE_TEMP_STALE_S) {
            continue;
        }
        (void)unlinkat(dirfd(d), n, 0); /* best effort: a leftover costs disk, not state */
    }
    closedir(d);
}

/*
 * The atomic-replace sequence. A unique temporary name (mkostemp), not a fixed "file.tmp": during
 * a reload the old worker of a slot may still be saving while nothing else should touch its
 * file, and two writers sharing one temporary would produce exactly the torn file this avoids.
 * A worker killed mid-save leaves a ".name.XXXXXX" file behind but never a damaged state file;
 * a later save of the same file sweeps it (state_sweep).
 */
int drover_state_save(struct drover_worker *w, const void *buf, size_t len)
{
    const char *path = w->state_file;
    char *dir = NULL, *tmp = NULL;
    int fd = -1, dfd = -1;
    int r;

    if (!path) {
        return -ENOENT;
    }
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (*base == '\0') {
        return -EISDIR;
    }
    dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) {
        r = -ENOMEM;
        goto out;
    }
    state_sweep(dir, base);
    if (asprintf(&tmp, "%s/.%s.XXXXXX", dir, base) < 0) {
        tmp = NULL;
        r = -ENOMEM;
        goto out;
    }
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        r = -errno;
        free(tmp);
        tmp = NULL;
        goto out;
    }
    r = write_all(fd, buf, len);
    if (r < 0) {
        goto out;
    }
    /* The data must be on disk before the name points at it, or a crash can expose zeros. */
    if (fsync(fd) < 0) {
        r = -errno;
        goto out;
    }
    r = close(fd);
    fd = -1;
    if (r < 0) {
        r = -errno;
        goto out;
    }
    if (rename(tmp, path) < 0) {
        r = -errno;
        goto out;
    }
    free(tmp);
    tmp = NULL;
    /* And the rename itself must survive a power cut. Some file systems cannot sync a dir. */
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        r = -errno;
        goto out;
    }
    r = 0;
    if (fsync(dfd) < 0 && errno != EINVAL) {
        r = -errno;
    }
out:
    if (fd >= 0) {
        close(fd);
    }
    if (dfd >= 0) {
        close(dfd);
    }
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    free(dir);
    return r;
}

int drover_state_load(struct drover_worker *w, void **ret_buf, size_t *ret_len)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    struct stat st;
    int fd = -1;
    int r;

    if (!w->state_file) {
        return -ENOENT;
    }
    fd = open(w->state_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    if (fstat(fd, &st) < 0) {
        r = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        r = -EINVAL;
        goto out;
    }
    if ((uint64_t)st.st_size > STATE_MAX) {
        r = -EFBIG;
        goto out;
    }
    /* Read to EOF rather than trust st_size: the size is only a first guess for the buffer. */
    cap = (size_t)st.st_size + 1;
    buf = malloc(cap);
    if (!buf) {
        r = -ENOMEM;
        goto out;
    }
    for (;;) {
        if (len + 1 == cap) {
            if (cap > STATE_MAX) {
                r = -EFBIG;
                goto out;
            }
            char *b = realloc(buf, cap * 2);
            if (!b) {
                r = -ENOMEM;
                goto out;
            }
            buf = b;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            r = -errno;
            goto out;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
    }
    buf[len] = '\0';
    *ret_buf = buf;
    *ret_len = len;
    buf = NULL;
    r = 0;
out:
    free(buf);
    close(fd);
    return r;
}

/* ---- teardown ---------------------------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * The usual end of a worker is drover_phase_done(cleanup) and then exit: if the socket was
 * momentarily full, that answer is still queued. Waiting a bounded moment for it to leave
 * saves the master from waiting out the whole phase timeout.
 */
static void channel_flush_before_close(struct drover_worker *w)
{
    int64_t deadline = now_ms() + CLOSE_FLUSH_MS;
    while (drover_wants_write(w)) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            return;
        }
        struct pollfd p = {.fd = w->channel_fd, .events = POLLOUT};
        if (poll(&p, 1, (int)left) < 0 && errno != EINTR) {
            return;
        }
        (void)channel_flush(w);
    }
}

void drover_close(struct drover_worker *w)
{
    if (!w) {
        return;
    }
    if (w->channel_fd >= 0) {
        channel_flush_before_close(w);
        close(w->channel_fd);
    }
    if (w->notify_fd >= 0) {
        close(w->notify_fd);
    }
    wire_lines_done(&w->in);
    bytebuf_free(&w->out);
    for (int i = 0; w->listen_names && i < w->listen_n; i++) {
        free(w->listen_names[i]);
    }
    free(w->listen_names);
    free(w->app);
    free(w->state_file);
    free(w);
}
