/*
 * log: drover's records. See log.h for why the buffer is bounded and writes never block.
 *
 * A record is formatted completely (one line, newline included) before it touches the buffer,
 * so a record is either written whole or dropped whole; a reader never sees half a line.
 *
 * Writing without blocking, without touching what others share. O_NONBLOCK is a flag of the
 * open file description, not of the descriptor: drover's stdout is usually the very
 * description its parent holds (the shell's terminal, the pipe into `tee`, the container
 * runtime's FIFO), so setting the flag there would make the parent's own writes fail with
 * EAGAIN. drover therefore never sets it on stdout. Instead, once the loop runs:
 *
 *   - a socket (journald's stdout stream, a socketpair) is written with send(MSG_DONTWAIT),
 *     non-blocking per call;
 *   - a pipe, FIFO or terminal is reopened through /proc/self/fd/1, which makes a new open
 *     file description of the same pipe or terminal, drover's alone, and O_NONBLOCK is set on
 *     that one;
 *   - when that reopening is refused (no /proc, or a pipe created by another user, as when a
 *     container runtime's FIFO outlives a privilege drop), a pipe is written with
 *     pwritev2(RWF_NOWAIT), non-blocking per call; on kernels that do not take RWF_NOWAIT on
 *     pipes, drover writes at most PIPE_BUF bytes and only when poll() says the pipe has room:
 *     a pipe with a free slot takes that much without waiting. (Another process writing into
 *     the same pipe between the poll and the write could take the room; drover is the only
 *     writer of its stdout in every setup it documents.) A terminal that cannot be reopened
 *     is written through, as are regular files and /dev/null, which never wait on a reader.
 *
 * A log_file that drover opened itself is its own description, and gets O_NONBLOCK directly.
 */
#include "log.h"

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
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "bytebuf.h"

/* What the master holds for a reader that fell behind, before it starts dropping. */
#define LOG_BUFFER_LIMIT (1024u * 1024u)
/* The longest message drover formats for itself; worker lines are bounded by their reader. */
#define LOG_MSG_MAX 4096

/* How records reach the reader once the loop runs (see the top of this file). */
enum log_sink {
    LOG_SINK_DIRECT,   /* blocking writes: a file, /dev/null, or before the loop */
    LOG_SINK_NONBLOCK, /* write() on a description of drover's own, with O_NONBLOCK */
    LOG_SINK_SEND,     /* a socket: send(MSG_DONTWAIT) */
    LOG_SINK_NOWAIT,   /* a shared pipe or terminal: pwritev2(RWF_NOWAIT) */
    LOG_SINK_POLLED,   /* a shared pipe, older kernel: PIPE_BUF bytes when poll() says room */
};

static struct {
    enum log_format format;
    char *path;             /* NULL = stdout */
    int fd;                 /* the log file, stdout, or drover's own reopening of stdout */
    bool fd_owned;          /* fd is drover's to close */
    enum log_sink sink;
    bool sink_is_pipe;      /* for NOWAIT: what to fall back to when the kernel refuses it */
    struct ev_loop *loop;
    ev_io write_w;
    struct bytebuf out;     /* bounded by LOG_BUFFER_LIMIT */
    uint64_t dropped;
} L = {.format = LOG_FORMAT_TEXT, .fd = STDOUT_FILENO};

const char *log_level_to_string(enum log_level level)
{
    return logline_level_to_string(level);
}

static int log_fd_open(const char *path, int *ret_fd)
{
    if (!path) {
        *ret_fd = STDOUT_FILENO;
        return 0;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd == -1) {
        return -errno;
    }
    *ret_fd = fd;
    return 0;
}

int log_open(enum log_format format, const char *path)
{
    char *copy = NULL;
    int fd = -1;
    if (path && strcmp(path, "-") != 0) {
        copy = strdup(path);
        if (!copy) {
            return -ENOMEM;
        }
    }
    int r = log_fd_open(copy, &fd);
    if (r < 0) {
        free(copy);
        return r;
    }
    free(L.path);
    L.path = copy;
    L.fd = fd;
    L.fd_owned = copy != NULL;
    L.sink = LOG_SINK_DIRECT;
    L.format = format;
    return 0;
}

/*
 * Writes what the sink takes now without blocking (unless the sink is DIRECT). Returns the bytes
 * written, or -1 with errno (EAGAIN: the reader is behind).
 */
static ssize_t log_write_some(const char *buf, size_t len)
{
    switch (L.sink) {
    case LOG_SINK_SEND:
        return send(L.fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    case LOG_SINK_NOWAIT: {
        struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
        ssize_t n = pwritev2(L.fd, &iov, 1, -1, RWF_NOWAIT);
        if (n != -1 || (errno != EOPNOTSUPP && errno != EINVAL)) {
            return n;
        }
        /* This kernel does not take RWF_NOWAIT here: fall back for good. */
        L.sink = L.sink_is_pipe ? LOG_SINK_POLLED : LOG_SINK_DIRECT;
        return log_write_some(buf, len);
    }
    case LOG_SINK_POLLED: {
        struct pollfd p = {.fd = L.fd, .events = POLLOUT};
        int k = poll(&p, 1, 0);
        if (k == -1) {
            return -1;
        }
        if (k == 0 || !(p.revents & (POLLOUT | POLLERR | POLLHUP))) {
            errno = EAGAIN;
            return -1;
        }
        /* With POLLERR (no reader left) the write fails at once with EPIPE. */
        return write(L.fd, buf, len < PIPE_BUF ? len : PIPE_BUF);
    }
    case LOG_SINK_DIRECT:
    case LOG_SINK_NONBLOCK:
        break;
    }
    return write(L.fd, buf, len);
}

/* Writes as much of the buffer as the reader takes now; returns -errno on a hard error. */
static int log_flush_some(void)
{
    while (bytebuf_pending(&L.out) > 0) {
        ssize_t n = log_write_some(bytebuf_head(&L.out), bytebuf_pending(&L.out));
        if (n > 0) {
            bytebuf_consume(&L.out, (size_t)n);
            continue;
        }
        if (n == -1 && errno == EINTR) {
            continue;
        }
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        /* The reader is gone (EPIPE) or the disk is full: drop what is buffered rather than
         * retry forever, and count it. */
        L.dropped++;
        bytebuf_consume(&L.out, bytebuf_pending(&L.out));
        break;
    }
    return 0;
}

static void log_update_watcher(void)
{
    if (!L.loop) {
        return;
    }
    if (bytebuf_pending(&L.out) > 0 && !ev_is_active(&L.write_w)) {
        ev_io_start(L.loop, &L.write_w);
    } else if (bytebuf_pending(&L.out) == 0 && ev_is_active(&L.write_w)) {
        ev_io_stop(L.loop, &L.write_w);
    }
}

static void log_on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    log_flush_some();
    log_update_watcher();
}

static int log_fd_set_nonblock(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags == -1 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1) {
        return -errno;
    }
    return 0;
}

/* A new open file description of the pipe or terminal behind fd, non-blocking, close-on-exec,
 * never becoming a controlling terminal. Returns 0 or -errno. */
static int log_fd_reopen_private(int fd, const struct stat *st, int *ret_fd)
{
    char path[40];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int nfd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (nfd == -1) {
        return -errno;
    }
    /* The same pipe or terminal, not something that replaced the name meanwhile. */
    struct stat nst;
    if (fstat(nfd, &nst) == -1 || nst.st_dev != st->st_dev || nst.st_ino != st->st_ino ||
        nst.st_rdev != st->st_rdev) {
        close(nfd);
        return -ENXIO;
    }
    *ret_fd = nfd;
    return 0;
}

/* Chooses how L.fd is written from now on (see the top of this file); may replace L.fd with
 * drover's own reopening of it. */
static void log_sink_setup(void)
{
    struct stat st;
    L.sink = LOG_SINK_DIRECT;
    if (fstat(L.fd, &st) == -1) {
        return;
    }
    if (S_ISSOCK(st.st_mode)) {
        L.sink = LOG_SINK_SEND;
        return;
    }
    /* Opening the pty multiplexer again would make a new terminal, not reach this one. */
    bool ptmx = S_ISCHR(st.st_mode) && major(st.st_rdev) == 5 && minor(st.st_rdev) == 2;
    bool tty = S_ISCHR(st.st_mode) && !ptmx && isatty(L.fd);
    L.sink_is_pipe = S_ISFIFO(st.st_mode);
    if (!L.sink_is_pipe && !tty) {
        return; /* a file or /dev/null: never waits on a reader */
    }
    if (L.fd_owned) {
        if (log_fd_set_nonblock(L.fd) == 0) {
            L.sink = LOG_SINK_NONBLOCK;
        }
        return;
    }
    int fd = -1;
    if (log_fd_reopen_private(L.fd, &st, &fd) == 0) {
        L.fd = fd;
        L.fd_owned = true;
        L.sink = LOG_SINK_NONBLOCK;
        return;
    }
    L.sink = LOG_SINK_NOWAIT;
}

void log_attach(struct ev_loop *loop)
{
    L.loop = loop;
    log_sink_setup();
    ev_io_init(&L.write_w, log_on_writable, L.fd, EV_WRITE);
}

int log_reopen(void)
{
    if (!L.path) {
        return 0;
    }
    int fd = -1;
    int r = log_fd_open(L.path, &fd);
    if (r < 0) {
        return r;
    }
    /* What is buffered belongs to the old file's reader only in spirit; write it to the new. */
    if (L.loop && ev_is_active(&L.write_w)) {
        ev_io_stop(L.loop, &L.write_w);
    }
    close(L.fd);
    L.fd = fd;
    L.fd_owned = true;
    L.sink = LOG_SINK_DIRECT;
    if (L.loop) {
        log_sink_setup();
        ev_io_set(&L.write_w, L.fd, EV_WRITE);
    }
    log_flush_some();
    log_update_watcher();
    return 0;
}

void log_close(void)
{
    /* At exit a pipe reader gets up to a second to take the rest; then it is dropped. */
    if (L.loop && ev_is_active(&L.write_w)) {
        ev_io_stop(L.loop, &L.write_w);
    }
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (bytebuf_pending(&L.out) > 0) {
        log_flush_some();
        if (bytebuf_pending(&L.out) == 0) {
            break;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long elapsed_ms =
            (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (elapsed_ms >= 1000) {
            break;
        }
        struct pollfd p = {.fd = L.fd, .events = POLLOUT};
        (void)poll(&p, 1, (int)(1000 - elapsed_ms));
    }
    if (L.fd_owned) {
        close(L.fd);
    }
    bytebuf_free(&L.out);
    free(L.path);
    L.path = NULL;
    L.fd = STDOUT_FILENO;
    L.fd_owned = false;
    L.sink = LOG_SINK_DIRECT;
    L.loop = NULL;
}

uint64_t log_dropped_total(void)
{
    return L.dropped;
}

/* Appends one complete line; drops it whole when the buffer would pass its limit. */
static int log_emit(const char *line, size_t len)
{
    if (!L.loop || L.sink == LOG_SINK_DIRECT) {
        /* Before the loop, or to a file: write through. Anything still buffered
         * from a reopen goes first so order is kept. */
        if (bytebuf_pending(&L.out) > 0) {
            log_flush_some();
        }
        size_t off = 0;
        while (off < len) {
            ssize_t n = write(L.fd, line + off, len - off);
            if (n == -1 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                L.dropped++;
                return -EIO;
            }
            off += (size_t)n;
        }
        return 0;
    }
    int r = bytebuf_append(&L.out, line, len, LOG_BUFFER_LIMIT);
    if (r < 0) {
        L.dropped++;
        return r;
    }
    if (!ev_is_active(&L.write_w)) {
        log_flush_some();
        log_update_watcher();
    }
    return 0;
}

void log_timestamp(char *buf, size_t size)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, size - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* Adds the origin to a JSON record; the master's values win over a worker's own keys. */
static void log_json_origin(json_t *rec, struct log_origin origin)
{
    if (origin.app) {
        json_object_set_new(rec, "app", json_string(origin.app));
    }
    if (origin.slot >= 0) {
        json_object_set_new(rec, "worker", json_integer(origin.slot));
    }
    if (origin.pid > 0) {
        json_object_set_new(rec, "pid", json_integer(origin.pid));
    }
}

static int log_emit_json(json_t *rec)
{
    char *text = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(rec);
    if (!text) {
        L.dropped++;
        return -ENOMEM;
    }
    size_t n = strlen(text);
    text[n] = '\n'; /* json_dumps leaves room for the NUL it wrote */
    int r = log_emit(text, n + 1);
    free(text);
    return r;
}

/* Writes s to f with newlines and carriage returns escaped, so that a message decoded from a
 * worker's JSON ("a\nb") still makes one line. */
static void log_text_escaped(FILE *f, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\n') {
            fputs("\\n", f);
        } else if (s[i] == '\r') {
            fputs("\\r", f);
        } else {
            fputc(s[i], f);
        }
    }
}

/*
 * The text form: "TS LEVEL [app/slot pid] msg key=value ...". For a worker's line
 * (worker_line), fields is the whole record: drover's own members are left out of the tail
 * (they are in the head already), except a stream that is not stdout, and the text that came
 * from the worker is escaped.
 */
static int log_emit_text(const char *ts, enum log_level level, struct log_origin origin,
                         const char *msg, size_t msg_len, json_t *fields, bool worker_line)
{
    char head[256];
    int n = snprintf(head, sizeof head, "%s %-5s ", ts, log_level_to_string(level));
    if (origin.app) {
        if (origin.slot >= 0) {
            n += snprintf(head + n, sizeof head - (size_t)n, "%s/%d ", origin.app, origin.slot);
        } else {
            n += snprintf(head + n, sizeof head - (size_t)n, "%s ", origin.app);
        }
    }
    if (origin.pid > 0 && (size_t)n < sizeof head) {
        n += snprintf(head + n, sizeof head - (size_t)n, "[%d] ", (int)origin.pid);
    }
    if ((size_t)n >= sizeof head) {
        n = (int)sizeof head - 1;
    }
    char *tail = NULL;
    size_t tail_len = 0;
    FILE *f = open_memstream(&tail, &tail_len);
    if (!f) {
        L.dropped++;
        return -ENOMEM;
    }
    fwrite(head, 1, (size_t)n, f);
    if (worker_line) {
        log_text_escaped(f, msg, msg_len);
    } else {
        fwrite(msg, 1, msg_len, f);
    }
    if (fields) {
        const char *key;
        json_t *value;
        json_object_foreach(fields, key, value) {
            if (worker_line && logline_key_is_drovers(key) &&
                (strcmp(key, "stream") != 0 || strcmp(json_string_value(value), "stdout") == 0)) {
                continue;
            }
            if (json_is_string(value)) {
                fprintf(f, " %s=", key);
                if (worker_line) {
                    log_text_escaped(f, json_string_value(value), json_string_length(value));
                } else {
                    fputs(json_string_value(value), f);
                }
            } else {
                char *v = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
                fprintf(f, " %s=%s", key, v ? v : "?");
                free(v);
            }
        }
    }
    fputc('\n', f);
    fclose(f);
    int r = log_emit(tail, tail_len);
    free(tail);
    return r;
}

json_t *log_json_text(const char *text, size_t len)
{
    return logline_json_text(text, len);
}

int log_record(enum log_level level, struct log_origin origin, json_t *fields, const char *fmt, ...)
{
    char msg[LOG_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (len < 0) {
        len = 0;
    } else if ((size_t)len >= sizeof msg) {
        len = (int)sizeof msg - 1;
    }
    char ts[40];
    log_timestamp(ts, sizeof ts);

    if (L.format == LOG_FORMAT_TEXT) {
        int r = log_emit_text(ts, level, origin, msg, (size_t)len, fields, false);
        json_decref(fields);
        return r;
    }
    json_t *rec = json_object();
    if (!rec) {
        json_decref(fields);
        L.dropped++;
        return -ENOMEM;
    }
    json_object_set_new(rec, "ts", json_string(ts));
    json_object_set_new(rec, "level", json_string(log_level_to_string(level)));
    log_json_origin(rec, origin);
    /* A message may quote worker output (a failed reload's last lines): never drop it. */
    json_object_set_new(rec, "msg", log_json_text(msg, (size_t)len));
    if (fields) {
        json_object_update(rec, fields);
        json_decref(fields);
    }
    return log_emit_json(rec);
}

int log_worker_line(struct log_origin origin, bool is_stderr, const char *line, size_t len)
{
    char ts[40];
    log_timestamp(ts, sizeof ts);
    enum log_level level = LOG_INFO;
    json_t *rec = logline_record(ts, origin, is_stderr, line, len, &level);
    if (!rec) {
        L.dropped++;
        return -ENOMEM;
    }
    if (L.format == LOG_FORMAT_TEXT) {
        json_t *msg = json_object_get(rec, "msg");
        int r = log_emit_text(ts, level, origin, json_is_string(msg) ? json_string_value(msg) : "",
                              json_is_string(msg) ? json_string_length(msg) : 0, rec, true);
        json_decref(rec);
        return r;
    }
    return log_emit_json(rec);
}
