/*
 * ctlsock: the control socket's connection layer. See ctlsock.h.
 *
 * Reading order: ctlsock_open() makes the socket; ctlsock_on_accept() checks each peer with
 * SO_PEERCRED and makes a connection; conn_on_read() frames lines (wire_lines, 64 KiB limit)
 * and hands each to the owner while the owner says it is taking; conn_on_write() sends what the
 * owner queued. Every decision to read on, stop reading, time out or close looks at the
 * owner's mode for the connection, asked each time rather than remembered.
 */
#include "ctlsock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "bytebuf.h"
#include "listener.h"
#include "log.h"
#include "wire.h"

#define CTLSOCK_BACKLOG 64
/* Accepts per wakeup, and bytes read per connection per wakeup, so no peer starves the loop. */
#define CTLSOCK_ACCEPT_BUDGET 32
#define CTLCONN_READ_BUDGET (128u * 1024u)
/* After accept() failed for want of descriptors or memory. */
#define CTLSOCK_ACCEPT_PAUSE 0.5

struct ctlconn {
    struct ctlsock *s;
    struct ctlconn *next;
    void *client;               /* the owner's */
    int fd;
    uid_t uid;
    pid_t pid;
    ev_io read_w;
    ev_io write_w;
    ev_timer idle_w;
    ev_tstamp active_at;        /* the last byte read from or written to the peer */
    struct wire_lines in;
    struct bytebuf out;
    bool eof;                   /* the peer sent all it will send */
    bool closing;               /* close once the output is written */
    bool broken;                /* close now: output could not be queued */
};

struct ctlsock {
    struct ev_loop *loop;
    const struct ctlsock_ops *ops;
    void *owner;
    char *path;
    dev_t dev;
    ino_t ino;
    int fd;
    ev_io accept_w;
    ev_timer pause_w;
    struct ctlconn *conns;
    unsigned n_conns;
    ev_tstamp refused_logged_at;
};

static void conn_close(struct ctlconn *cn);

/* ---- output ---- */

size_t ctlconn_pending(const struct ctlconn *cn)
{
    return bytebuf_pending(&cn->out);
}

bool ctlconn_is_going(const struct ctlconn *cn)
{
    return cn->broken || cn->closing;
}

uid_t ctlconn_uid(const struct ctlconn *cn)
{
    return cn->uid;
}

pid_t ctlconn_pid(const struct ctlconn *cn)
{
    return cn->pid;
}

static void conn_kick(struct ctlconn *cn)
{
    if (!ev_is_active(&cn->write_w)) {
        ev_io_start(cn->s->loop, &cn->write_w);
    }
}

int ctlconn_queue(struct ctlconn *cn, const char *data, size_t len, size_t limit)
{
    int r = bytebuf_append(&cn->out, data, len, limit);
    if (r == 0) {
        conn_kick(cn);
    }
    return r;
}

void ctlconn_break(struct ctlconn *cn)
{
    cn->broken = true;
    conn_kick(cn); /* the write callback sees it and closes */
}

void ctlconn_resume(struct ctlconn *cn)
{
    ev_feed_event(cn->s->loop, &cn->read_w, EV_READ);
}

/* ---- input ---- */

static enum ctlconn_mode conn_mode(const struct ctlconn *cn)
{
    return cn->s->ops->mode(cn->client);
}

/* Whether the next request may be taken now: one at a time, and not while the peer leaves a
 * pile of replies unread. */
static bool conn_may_take(const struct ctlconn *cn)
{
    return conn_mode(cn) == CTLCONN_TAKING && !cn->closing && !cn->broken &&
           ctlconn_pending(cn) < CTLCONN_OUT_SOFT;
}

static void conn_too_long(struct ctlconn *cn)
{
    char line[96];
    int n = snprintf(line, sizeof line,
                     "{\"ok\":false,\"error\":\"request too long (over %u bytes)\"}\n",
                     WIRE_CONTROL_LINE_MAX);
    if (ctlconn_queue(cn, line, (size_t)n, CTLCONN_OUT_HARD) < 0) {
        ctlconn_break(cn);
    }
}

/* Hands the complete lines buffered to the owner; a partial line past the limit ends it. */
static void conn_take_lines(struct ctlconn *cn)
{
    while (conn_may_take(cn)) {
        const char *line;
        size_t len;
        int r = wire_lines_next(&cn->in, &line, &len);
        if (r == 0) {
            return;
        }
        if (r < 0) {
            conn_too_long(cn);
            cn->closing = true;
            return;
        }
        cn->s->ops->on_line(cn->client, line, len);
    }
}

/* After EOF: a last request without its newline still counts (echo -n ... | socat). */
static void conn_take_last(struct ctlconn *cn)
{
    struct wire_lines *in = &cn->in;
    if (!conn_may_take(cn) || in->len <= in->start) {
        return;
    }
    const char *line = in->buf + in->start;
    size_t len = in->len - in->start;
    in->start = in->len;
    in->scan = in->len;
    if (len > WIRE_CONTROL_LINE_MAX) {
        conn_too_long(cn);
        return;
    }
    cn->s->ops->on_line(cn->client, line, len);
}

/* Whether the connection has nothing left to do: the peer sent all it will and got all it
 * asked. */
static bool conn_is_done(const struct ctlconn *cn)
{
    if (cn->broken) {
        return true;
    }
    enum ctlconn_mode mode = conn_mode(cn);
    if (ctlconn_pending(cn) > 0 || mode == CTLCONN_WAITING) {
        return false;
    }
    if (cn->closing) {
        return true;
    }
    /* EOF ends a follow (the reader is gone), and a connection whose requests are answered. */
    return cn->eof && (mode == CTLCONN_LISTENING || cn->in.len <= cn->in.start);
}

static void conn_on_read(struct ev_loop *loop, ev_io *io, int revents)
{
    struct ctlconn *cn = io->data;
    size_t budget = CTLCONN_READ_BUDGET;

    conn_take_lines(cn);
    while (budget > 0 && !cn->eof && !cn->closing && !cn->broken) {
        size_t room = 0;
        char *p = wire_lines_space(&cn->in, &room);
        if (!p) {
            enum ctlconn_mode mode = conn_mode(cn);
            if (mode == CTLCONN_LISTENING) {
                /* Input after logs -f or stop is ignored; reading goes on to see EOF. */
                wire_lines_done(&cn->in);
                continue;
            }
            if (mode == CTLCONN_WAITING || ctlconn_pending(cn) >= CTLCONN_OUT_SOFT) {
                /* Requests queued behind a waiting one, or sent by a peer that does not read
                 * its replies: leave the rest in the kernel until it is their turn. */
                ev_io_stop(loop, &cn->read_w);
                break;
            }
            conn_too_long(cn);
            cn->closing = true;
            break;
        }
        if (room > budget) {
            room = budget;
        }
        ssize_t n = read(cn->fd, p, room);
        if (n == -1 && errno == EINTR) {
            continue;
        }
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        if (n <= 0) {
            /* EOF, or an error (ECONNRESET): either way nothing more comes. */
            cn->eof = true;
            ev_io_stop(loop, &cn->read_w);
            if (n < 0) {
                cn->broken = true;
            }
            break;
        }
        wire_lines_commit(&cn->in, (size_t)n);
        cn->active_at = ev_now(loop);
        budget -= (size_t)n;
        conn_take_lines(cn);
    }
    if (cn->eof) {
        conn_take_lines(cn);
        conn_take_last(cn);
    }
    if (conn_is_done(cn)) {
        conn_close(cn);
        return;
    }
    if (!cn->eof && !cn->closing && !ev_is_active(&cn->read_w) &&
        (conn_may_take(cn) || conn_mode(cn) == CTLCONN_LISTENING)) {
        ev_io_start(loop, &cn->read_w);
    }
}

static void conn_on_write(struct ev_loop *loop, ev_io *io, int revents)
{
    struct ctlconn *cn = io->data;
    while (!cn->broken && ctlconn_pending(cn) > 0) {
        ssize_t n = send(cn->fd, bytebuf_head(&cn->out), ctlconn_pending(cn),
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == -1 && errno == EINTR) {
            continue;
        }
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (n <= 0) {
            cn->broken = true; /* EPIPE, ECONNRESET: the reader is gone */
            break;
        }
        bytebuf_consume(&cn->out, (size_t)n);
        cn->active_at = ev_now(loop);
    }
    if (!cn->broken) {
        ev_io_stop(loop, &cn->write_w);
        /* A large reply went out; an idle connection does not keep its buffer. */
        bytebuf_trim(&cn->out, CTLCONN_OUT_SOFT);
    }
    if (conn_is_done(cn)) {
        conn_close(cn);
        return;
    }
    /* The output that held requests back is gone: take the next ones. */
    if (conn_may_take(cn)) {
        ev_feed_event(loop, &cn->read_w, EV_READ);
    }
}

static void conn_on_idle(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct ctlconn *cn = t->data;
    ev_tstamp now = ev_now(loop);
    /* A peer waiting on us (a parked request, a quiet follow) is not idle. */
    if (conn_mode(cn) != CTLCONN_TAKING && ctlconn_pending(cn) == 0) {
        cn->active_at = now;
    }
    ev_tstamp left = cn->active_at + CTLCONN_IDLE_TIMEOUT - now;
    if (left > 0) {
        t->repeat = left;
        ev_timer_again(loop, t);
        return;
    }
    conn_close(cn);
}

static void conn_close(struct ctlconn *cn)
{
    struct ctlsock *s = cn->s;
    for (struct ctlconn **p = &s->conns; *p; p = &(*p)->next) {
        if (*p == cn) {
            *p = cn->next;
            break;
        }
    }
    s->n_conns--;
    /* Stopping a watcher also drops an event fed to it, so nothing fires for a freed one. */
    ev_io_stop(s->loop, &cn->read_w);
    ev_io_stop(s->loop, &cn->write_w);
    ev_timer_stop(s->loop, &cn->idle_w);
    s->ops->on_close(cn->client);
    close(cn->fd);
    wire_lines_done(&cn->in);
    bytebuf_free(&cn->out);
    free(cn);
}

/* ---- accepting ---- */

/* A peer that may not stay: one best-effort line, then the door. */
static void ctlsock_refuse(int fd, const char *error)
{
    char line[128];
    int n = snprintf(line, sizeof line, "{\"ok\":false,\"error\":\"%s\"}\n", error);
    (void)send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    close(fd);
}

static struct ctlconn *ctlsock_conn_new(struct ctlsock *s, int fd, const struct ucred *cred)
{
    struct ev_loop *loop = s->loop;
    struct ctlconn *cn = calloc(1, sizeof *cn);
    if (!cn) {
        ctlsock_refuse(fd, "out of memory");
        return NULL;
    }
    cn->s = s;
    cn->fd = fd;
    cn->uid = cred->uid;
    cn->pid = cred->pid;
    cn->client = s->ops->on_open(s->owner, cn);
    if (!cn->client) {
        free(cn);
        ctlsock_refuse(fd, "out of memory");
        return NULL;
    }
    cn->active_at = ev_now(loop);
    wire_lines_init(&cn->in, WIRE_CONTROL_LINE_MAX);
    ev_io_init(&cn->read_w, conn_on_read, fd, EV_READ);
    cn->read_w.data = cn;
    ev_io_init(&cn->write_w, conn_on_write, fd, EV_WRITE);
    cn->write_w.data = cn;
    ev_init(&cn->idle_w, conn_on_idle);
    cn->idle_w.repeat = CTLCONN_IDLE_TIMEOUT;
    cn->idle_w.data = cn;
    ev_timer_again(loop, &cn->idle_w);
    ev_io_start(loop, &cn->read_w);
    cn->next = s->conns;
    s->conns = cn;
    s->n_conns++;
    return cn;
}

static void ctlsock_on_pause(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct ctlsock *s = t->data;
    ev_io_start(loop, &s->accept_w);
}

static void ctlsock_on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
    struct ctlsock *s = io->data;
    for (int i = 0; i < CTLSOCK_ACCEPT_BUDGET; i++) {
        int fd = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd == -1) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* The connection stays in the backlog; try again shortly rather than spin. */
                log_warn("control socket: accept4() failed: %s; pausing for %.1f s",
                         strerror(errno), CTLSOCK_ACCEPT_PAUSE);
                ev_io_stop(loop, &s->accept_w);
                ev_timer_set(&s->pause_w, CTLSOCK_ACCEPT_PAUSE, 0.);
                ev_timer_start(loop, &s->pause_w);
            }
            return;
        }
        /* Whatever the file's mode says, only our own uid and root may talk. */
        struct ucred cred;
        socklen_t len = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1 || len != sizeof cred) {
            ctlsock_refuse(fd, "permission denied");
            continue;
        }
        if (cred.uid != geteuid() && cred.uid != 0) {
            /* At most one record per few seconds, so a refused peer cannot flood the log. */
            if (ev_now(loop) - s->refused_logged_at >= 5.0) {
                s->refused_logged_at = ev_now(loop);
                log_warn("control socket: refused a client of uid %d (pid %d): permission denied",
                         (int)cred.uid, (int)cred.pid);
            }
            ctlsock_refuse(fd, "permission denied");
            continue;
        }
        if (s->n_conns >= CTLSOCK_CLIENTS_MAX) {
            ctlsock_refuse(fd, "too many control clients");
            continue;
        }
        (void)ctlsock_conn_new(s, fd, &cred);
    }
}

/* ---- the socket ---- */

/* The listening socket fd is c's: accepting from the loop from now on. */
static void ctlsock_watch(struct ctlsock *c, struct ev_loop *loop, int fd,
                          const struct ctlsock_ops *ops, void *owner)
{
    c->loop = loop;
    c->ops = ops;
    c->owner = owner;
    c->fd = fd;
    c->refused_logged_at = -1e9;
    ev_io_init(&c->accept_w, ctlsock_on_accept, fd, EV_READ);
    c->accept_w.data = c;
    ev_io_start(loop, &c->accept_w);
    ev_init(&c->pause_w, ctlsock_on_pause);
    c->pause_w.data = c;
}

/* Creates the missing directories above path, mode 0700: the socket's directory is private. */
static int ctlsock_mkparents(const char *path, char **ret_failed)
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

int ctlsock_open(struct ev_loop *loop, const char *path, const struct ctlsock_ops *ops,
                 void *owner, struct ctlsock **ret)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    struct ctlsock *c = NULL;
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
    r = ctlsock_mkparents(path, &failed_dir);
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
    if (listen(fd, CTLSOCK_BACKLOG) == -1) {
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
    c->dev = st.st_dev;
    c->ino = st.st_ino;
    ctlsock_watch(c, loop, fd, ops, owner);
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

void ctlsock_shutdown(struct ctlsock *s)
{
    if (s->fd == -1) {
        return;
    }
    while (s->conns) {
        struct ctlconn *cn = s->conns;
        s->conns = cn->next; /* unlinked here, so conn_close() finds nothing more to unlink */
        cn->next = NULL;
        if (s->ops->on_shutdown) {
            s->ops->on_shutdown(cn->client);
        }
        /* One last non-blocking try, so an answer already given (`stop`) reaches its reader. */
        if (ctlconn_pending(cn) > 0) {
            (void)send(cn->fd, bytebuf_head(&cn->out), ctlconn_pending(cn),
                       MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        conn_close(cn);
    }
    ev_io_stop(s->loop, &s->accept_w);
    ev_timer_stop(s->loop, &s->pause_w);
    close(s->fd);
    s->fd = -1;
    /* Remove the file only if it is still ours: never another drover's socket. */
    struct stat st;
    if (stat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino) {
        unlink(s->path);
    }
}

void ctlsock_close(struct ctlsock *s)
{
    if (!s) {
        return;
    }
    ctlsock_shutdown(s);
    free(s->path);
    free(s);
}

/* ---- upgrade in place (SPEC section 12) ---- */

int ctlsock_fd(const struct ctlsock *s)
{
    return s->fd;
}

int ctlconn_fd(const struct ctlconn *cn)
{
    return cn->fd;
}

int ctlsock_adopt(struct ev_loop *loop, const char *path, int fd, const struct ctlsock_ops *ops,
                  void *owner, struct ctlsock **ret)
{
    struct stat st;
    struct ctlsock *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(path))) {
        free(c);
        return -ENOMEM;
    }
    /* The file is the previous image's, which is this process: it is ours to remove at the end
     * if it is still the same socket. */
    if (stat(path, &st) == 0) {
        c->dev = st.st_dev;
        c->ino = st.st_ino;
    }
    ctlsock_watch(c, loop, fd, ops, owner);
    *ret = c;
    return 0;
}

int ctlsock_adopt_conn(struct ctlsock *s, int fd, struct ctlconn **ret)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1 || len != sizeof cred) {
        close(fd);
        return -EBADF;
    }
    (void)fcntl(fd, F_SETFL, O_NONBLOCK | fcntl(fd, F_GETFL));
    *ret = ctlsock_conn_new(s, fd, &cred);
    return *ret ? 0 : -ENOMEM;
}

void *ctlconn_client(const struct ctlconn *cn)
{
    return cn->client;
}

bool ctlconn_can_hand_over(const struct ctlconn *cn)
{
    return !cn->eof && !cn->closing && !cn->broken && ctlconn_pending(cn) == 0 &&
           (!cn->in.buf || cn->in.len == cn->in.start);
}

void ctlconn_say_now(struct ctlconn *cn, const char *line, size_t len)
{
    if (ctlconn_queue(cn, line, len, CTLCONN_OUT_HARD) == 0) {
        (void)send(cn->fd, bytebuf_head(&cn->out), ctlconn_pending(cn),
                   MSG_NOSIGNAL | MSG_DONTWAIT);
    }
}
