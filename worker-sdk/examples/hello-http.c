/*
 * hello-http: a small, fast HTTP/1.1 responder that shows the drover worker SDK end to end.
 *
 * Under drover it serves the listening sockets the master passed (socket activation), says
 * ready once it accepts, publishes a request counter as metrics, and walks the shutdown phases
 * (SPEC section 5): at drain it stops accepting and finishes what is in flight, at save it
 * stores its request count (the next worker of the slot resumes from it), at cleanup it exits.
 * Outside drover it binds --listen itself, and SIGTERM drains the same way before exiting 0.
 *
 *   GET /             "<greeting> from pid <pid> slot <slot>"
 *   GET /pid          the pid
 *   GET /count        requests served by this slot, saved state included
 *   GET /sleep?ms=N   answers after N ms (an in-flight request for drain tests)
 *   GET /hang         with --hang-route only: blocks the whole loop for good (a hung worker for
 *                     watchdog tests: its heartbeats stop, since they come from this loop)
 *
 * --max-requests N asks drover to recycle this worker ({"type":"recycle"}) once it has served N
 * requests: gunicorn's max_requests, done without a restart gap (the replacement is ready before
 * this one drains) and without two slots recycled at once (drover replaces one at a time).
 *
 * --extra-series N adds N idle counter series (hello_extra_total{id="0".."N-1"}, the same in
 * every worker) to its metrics, so a benchmark can give the master a realistic page to merge.
 *
 * It is shaped for speed the plain way: a connection is one allocation with fixed buffers,
 * the common responses are formatted once at startup, pipelined responses are batched into
 * one send, and nothing is parsed beyond what the answer needs.
 */
#include <drover/metrics.h>
#include <drover/worker-ev.h>
#include <drover/worker.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* At drain, how long an idle connection may still bring a request (see conn_update). */
#define IDLE_GRACE_MS 200

#define HEADER_MAX 16384    /* a request head longer than this gets 431 */
#define OUT_MAX 8192        /* responses queued per connection */
#define RESPONSE_MAX 1024   /* the longest single response; the greeting is bounded for it */
#define GREETING_MAX 256
#define LISTEN_MAX 16
#define ACCEPT_BATCH 64     /* accepts per wakeup, so one busy socket cannot starve the rest */
#define SLEEP_MS_MAX 600000
#define LINGER_S 2.0        /* how long a closing connection may keep sending what we ignore */
#define EXTRA_SERIES_MAX 9000 /* the master takes 10000 series per worker; ours use 22 */

struct server;

struct conn {
    ev_io io;
    ev_tstamp req_at;       /* when the request being answered was read, for the latency */
    ev_timer timer_w;       /* /sleep's delay, or the lingering close's limit */
    struct server *srv;
    struct conn *prev, *next;
    int fd;
    int events;             /* what io watches now */
    bool close_after;       /* answer what is queued, then close */
    bool sleeping;          /* a /sleep response is pending; later requests wait behind it */
    bool linger;            /* closing with input unread: shut down writing, drain, then close */
    bool lingering;
    bool sleep_keep_alive;
    long sleep_ms;
    uint64_t body_left;     /* request body bytes still to skip */
    size_t in_len;
    size_t out_off, out_len;
    char in[HEADER_MAX];
    char out[OUT_MAX];
};

/* A response formatted at startup, with its length with and without the body (for HEAD). */
struct canned {
    char text[RESPONSE_MAX];
    size_t len, head_len;
};

struct server {
    struct ev_loop *loop;
    struct drover_worker *w;
    struct drover_ev channel;
    ev_io accept_w[LISTEN_MAX];
    int n_listen;
    ev_timer accept_pause_w;
    ev_timer idle_grace_w;  /* at drain: how long idle connections may still send a request */
    bool idle_grace_over;
    ev_signal sigterm_w, sigint_w;
    ev_timer metrics_w;
    struct conn *conns;
    unsigned n_conns;
    bool draining;
    bool listen_closed;
    bool drain_phase;       /* drain came from the master and awaits phase_done */
    bool exit_when_drained; /* drain came from a signal or a lost master */
    bool exiting;
    uint64_t served;        /* by this process, for /count and the saved state */
    /* Metrics through the SDK registry: updated on the hot path without locks or allocation. */
    struct drover_metrics *metrics;
    struct drover_counter *requests[6];     /* by status code, as in http_codes[] */
    struct drover_histogram *latency;
    struct drover_gauge *connections;
    unsigned extra_series;  /* --extra-series */
    uint64_t max_requests;  /* --max-requests; 0 = never recycle */
    bool recycle_asked;
    bool hang_route;        /* --hang-route */
    uint64_t resumed;       /* from the saved state */
    struct canned hello[2], pid[2]; /* [keep_alive] */
};

static void conn_update(struct conn *c);

/* ---- responses ------------------------------------------------------------------------- */

/* Formats a whole response into dst; for HEAD the body is counted but not sent. */
static size_t response_format(char *dst, size_t cap, const char *status, const char *body,
                              bool keep_alive, bool head)
{
    int n = snprintf(dst, cap,
                     "HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: %s\r\n\r\n%s",
                     status, strlen(body), keep_alive ? "keep-alive" : "close", head ? "" : body);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

static void canned_format(struct canned *r, const char *body, bool keep_alive)
{
    r->len = response_format(r->text, sizeof(r->text), "200 OK", body, keep_alive, false);
    r->head_len = r->len - strlen(body);
}

static const int http_codes[] = {200, 400, 431, 501, 505, 0 /* any other */};

static void server_observe(struct server *srv, int code, ev_tstamp started)
{
    srv->served++;
    if (srv->max_requests > 0 && srv->served >= srv->max_requests && !srv->recycle_asked) {
        srv->recycle_asked = true;
        (void)drover_recycle(srv->w, "max_requests");
    }
    if (!srv->metrics) {
        return;
    }
    size_t i = 0;
    while (http_codes[i] != 0 && http_codes[i] != code) {
        i++;
    }
    drover_counter_inc(srv->requests[i]);
    drover_histogram_observe(srv->latency, ev_now(srv->loop) - started);
}

/* Queues a response built now (the rare paths). The caller checked there is RESPONSE_MAX room. */
static void conn_respond(struct conn *c, const char *status, const char *body, bool keep_alive,
                         bool head)
{
    c->out_len += response_format(c->out + c->out_len, OUT_MAX - c->out_len, status, body,
                                  keep_alive, head);
    c->close_after |= !keep_alive;
    server_observe(c->srv, atoi(status), c->req_at);
}

static void conn_respond_canned(struct conn *c, const struct canned *r, bool keep_alive, bool head)
{
    size_t len = head ? r->head_len : r->len;
    memcpy(c->out + c->out_len, r->text, len);
    c->out_len += len;
    c->close_after |= !keep_alive;
    server_observe(c->srv, 200, c->req_at);
}

/* ---- request parsing ------------------------------------------------------------------- */

struct request {
    const char *path;
    size_t path_len;
    const char *query;      /* after '?', or NULL */
    size_t query_len;
    bool head;
    bool keep_alive;
    uint64_t content_length;
    const char *error;      /* a status line when the request cannot be served */
};

static bool token_in_list(const char *v, size_t n, const char *token)
{
    size_t tn = strlen(token);
    for (size_t i = 0; i + tn <= n; i++) {
        bool starts = i == 0 || v[i - 1] == ',' || v[i - 1] == ' ' || v[i - 1] == '\t';
        bool ends = i + tn == n || v[i + tn] == ',' || v[i + tn] == ' ' || v[i + tn] == '\t';
        if (starts && ends && strncasecmp(v + i, token, tn) == 0) {
            return true;
        }
    }
    return false;
}

/* Parses the head in buf[0..len) (it ends with the blank line). Fills *q; q->error on failure. */
static void request_parse(const char *buf, size_t len, struct request *q)
{
    const char *end = buf + len;
    const char *eol = memmem(buf, len, "\r\n", 2);
    const char *sp1 = memchr(buf, ' ', (size_t)(eol - buf));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    bool http11, seen_length = false;

    *q = (struct request){.error = "400 Bad Request"};
    if (!sp2 || sp1 == buf || sp2 == sp1 + 1 || sp1[1] != '/') {
        return;
    }
    if (eol - sp2 - 1 == 8 && memcmp(sp2 + 1, "HTTP/1.1", 8) == 0) {
        http11 = true;
    } else if (eol - sp2 - 1 == 8 && memcmp(sp2 + 1, "HTTP/1.0", 8) == 0) {
        http11 = false;
    } else {
        q->error = "505 HTTP Version Not Supported";
        return;
    }
    q->head = sp1 - buf == 4 && memcmp(buf, "HEAD", 4) == 0;
    q->path = sp1 + 1;
    q->path_len = (size_t)(sp2 - q->path);
    const char *qm = memchr(q->path, '?', q->path_len);
    if (qm) {
        q->query = qm + 1;
        q->query_len = (size_t)(sp2 - q->query);
        q->path_len = (size_t)(qm - q->path);
    }
    /* HTTP/1.1 keeps the connection unless told otherwise; 1.0 closes unless asked to keep. */
    q->keep_alive = http11;

    for (const char *line = eol + 2; line < end;) {
        eol = memmem(line, (size_t)(end - line), "\r\n", 2);
        if (eol == line) {
            break;
        }
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        if (!colon || colon == line || line[0] == ' ' || line[0] == '\t') {
            return;
        }
        size_t name_len = (size_t)(colon - line);
        const char *v = colon + 1, *vend = eol;
        while (v < vend && (*v == ' ' || *v == '\t')) {
            v++;
        }
        while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t')) {
            vend--;
        }
        size_t vn = (size_t)(vend - v);
        if (name_len == 10 && strncasecmp(line, "connection", 10) == 0) {
            if (token_in_list(v, vn, "close")) {
                q->keep_alive = false;
            } else if (token_in_list(v, vn, "keep-alive")) {
                q->keep_alive = true;
            }
        } else if (name_len == 14 && strncasecmp(line, "content-length", 14) == 0) {
            uint64_t n = 0;
            if (vn == 0 || vn > 15) {
                return;
            }
            for (size_t i = 0; i < vn; i++) {
                if (v[i] < '0' || v[i] > '9') {
                    return;
                }
                n = n * 10 + (uint64_t)(v[i] - '0');
            }
            if (seen_length && n != q->content_length) {
                return;
            }
            seen_length = true;
            q->content_length = n;
        } else if (name_len == 17 && strncasecmp(line, "transfer-encoding", 17) == 0) {
            /* Without decoding chunks we cannot tell where the next request starts. */
            q->error = "501 Not Implemented";
            return;
        }
        line = eol + 2;
    }
    q->error = NULL;
}

/* The value of ms= in a query string, or -1 when absent or not a number in range. */
static long query_ms(const char *q, size_t n)
{
    for (size_t i = 0; q && i + 3 <= n; i++) {
        if ((i == 0 || q[i - 1] == '&') && memcmp(q + i, "ms=", 3) == 0) {
            long ms = 0;
            size_t j = i + 3;
            if (j == n || q[j] < '0' || q[j] > '9') {
                return -1;
            }
            for (; j < n && q[j] >= '0' && q[j] <= '9'; j++) {
                ms = ms * 10 + (q[j] - '0');
                if (ms > SLEEP_MS_MAX) {
                    return -1;
                }
            }
            return ms;
        }
    }
    return -1;
}

static bool path_is(const struct request *q, const char *p)
{
    return q->path_len == strlen(p) && memcmp(q->path, p, q->path_len) == 0;
}

/* ---- connections ----------------------------------------------------------------------- */

static void server_check_drained(struct server *srv);

static void conn_close(struct conn *c)
{
    struct server *srv = c->srv;
    ev_io_stop(srv->loop, &c->io);
    ev_timer_stop(srv->loop, &c->timer_w);
    close(c->fd);
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        srv->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    srv->n_conns--;
    free(c);
    server_check_drained(srv);
}

/* Answers every complete request buffered, in order, while there is room for the answers. */
static void conn_process(struct conn *c)
{
    struct server *srv = c->srv;
    size_t off = 0;

    while (!c->sleeping && !c->close_after && OUT_MAX - c->out_len >= RESPONSE_MAX) {
        c->req_at = ev_now(srv->loop);
        if (c->body_left > 0) {
            size_t skip = c->in_len - off < c->body_left ? c->in_len - off : c->body_left;
            off += skip;
            c->body_left -= skip;
            if (c->body_left > 0) {
                break;
            }
        }
        /* Stray CRLFs between requests are allowed (RFC 9112 section 2.2). */
        while (c->in_len - off >= 2 && c->in[off] == '\r' && c->in[off + 1] == '\n') {
            off += 2;
        }
        char *head = c->in + off;
        char *end = memmem(head, c->in_len - off, "\r\n\r\n", 4);
        if (!end) {
            if (off == 0 && c->in_len == HEADER_MAX) {
                conn_respond(c, "431 Request Header Fields Too Large", "headers too large\n",
                             false, false);
                c->linger = true;
            }
            break;
        }
        size_t head_len = (size_t)(end + 4 - head);
        struct request q;
        request_parse(head, head_len, &q);
        off += head_len;
        if (q.error) {
            conn_respond(c, q.error, "bad request\n", false, false);
            c->linger = true;
            break;
        }
        c->body_left = q.content_length;
        /* Draining: this is the connection's last answer, and it says so. */
        bool keep = q.keep_alive && !srv->draining;

        if (path_is(&q, "/pid")) {
            conn_respond_canned(c, &srv->pid[keep], keep, q.head);
        } else if (path_is(&q, "/count")) {
            char body[32];
            snprintf(body, sizeof(body), "%" PRIu64 "\n", srv->resumed + srv->served + 1);
            conn_respond(c, "200 OK", body, keep, q.head);
        } else if (srv->hang_route && path_is(&q, "/hang")) {
            for (;;) {
                sleep(60); /* the loop is stuck: no answer, no heartbeat, no accept */
            }
        } else if (path_is(&q, "/sleep")) {
            long ms = query_ms(q.query, q.query_len);
            if (ms < 0) {
                conn_respond(c, "400 Bad Request", "usage: /sleep?ms=N\n", keep, q.head);
                continue;
            }
            c->sleeping = true;
            c->sleep_keep_alive = q.keep_alive;
            c->sleep_ms = ms;
            ev_timer_set(&c->timer_w, (double)ms / 1000.0, 0.0);
            ev_timer_start(srv->loop, &c->timer_w);
        } else {
            conn_respond_canned(c, &srv->hello[keep], keep, q.head);
        }
    }
    if (off > 0) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
}

/* Sends what is queued, all of it in one call when the socket takes it. Returns false if dead. */
static bool conn_flush(struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno == EAGAIN || errno == EWOULDBLOCK;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    return true;
}

/*
 * Closing a socket that still has unread input makes the kernel send a reset, and a reset can
 * destroy our last answer (the 400 or 431 explaining why) before the client reads it. So such a
 * connection first shuts down its writing side, then reads and drops input until the client
 * closes or LINGER_S passes, as web servers do ("lingering close").
 */
static void conn_linger(struct conn *c)
{
    c->lingering = true;
    (void)shutdown(c->fd, SHUT_WR);
    ev_io_stop(c->srv->loop, &c->io);
    ev_io_set(&c->io, c->fd, EV_READ);
    ev_io_start(c->srv->loop, &c->io);
    c->events = EV_READ;
    ev_timer_stop(c->srv->loop, &c->timer_w);
    ev_timer_set(&c->timer_w, LINGER_S, 0.0);
    ev_timer_start(c->srv->loop, &c->timer_w);
}

static void conn_on_io(struct ev_loop *loop, ev_io *io, int revents)
{
    struct conn *c = (struct conn *)io;
    if (c->lingering) {
        ssize_t n = read(c->fd, c->in, HEADER_MAX);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            conn_close(c);
        }
        return;
    }
    if ((revents & EV_READ) && c->in_len < HEADER_MAX) {
        ssize_t n = read(c->fd, c->in + c->in_len, HEADER_MAX - c->in_len);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            conn_close(c);  /* the client left (or broke): nothing more to answer */
            return;
        }
        if (n > 0) {
            c->in_len += (size_t)n;
        }
    }
    conn_process(c);
    if (!conn_flush(c)) {
        conn_close(c);
        return;
    }
    /* The flush made room: answer requests that waited for it. */
    conn_process(c);
    conn_update(c);
}

static void conn_on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, timer_w));
    char body[64];
    if (c->lingering) {
        conn_close(c);  /* the client kept sending past LINGER_S */
        return;
    }
    bool keep = c->sleep_keep_alive && !c->srv->draining;
    snprintf(body, sizeof(body), "slept %ld ms\n", c->sleep_ms);
    c->sleeping = false;
    conn_respond(c, "200 OK", body, keep, false);
    conn_on_io(loop, &c->io, 0);
}

/* Watches what the connection needs next, or closes it when it needs nothing more. */
static void conn_update(struct conn *c)
{
    bool pending = c->out_off < c->out_len;
    bool idle = !pending && !c->sleeping && c->in_len == 0 && c->body_left == 0;
    if (c->lingering) {
        return;
    }
    if (c->close_after && !pending && !c->sleeping) {
        if (c->linger || c->in_len > 0 || c->body_left > 0) {
            conn_linger(c);
        } else {
            conn_close(c);
        }
        return;
    }
    /* An idle connection may be a client that has just connected, or one about to reuse its
     * keep-alive connection: its request may be on the wire now. Closing it at once would fail
     * that request, so at drain it gets a short grace; a request arriving in time is answered
     * with Connection: close, and what is still idle after it is closed. */
    if (c->srv->draining && idle && c->srv->idle_grace_over) {
        conn_close(c);
        return;
    }
    int events = pending ? EV_WRITE : 0;
    if (!c->sleeping && !c->close_after && c->in_len < HEADER_MAX) {
        events |= EV_READ;
    }
    if (events != c->events) {
        ev_io_stop(c->srv->loop, &c->io);
        ev_io_set(&c->io, c->fd, events);
        if (events) {
            ev_io_start(c->srv->loop, &c->io);
        }
        c->events = events;
    }
}

/* ---- accepting ------------------------------------------------------------------------- */

static void server_accept_stop(struct server *srv)
{
    for (int i = 0; i < srv->n_listen; i++) {
        ev_io_stop(srv->loop, &srv->accept_w[i]);
    }
}

static void server_on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
    struct server *srv = io->data;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of fds: the socket stays readable, so pause rather than spin. */
                fprintf(stderr, "accept4() failed: %s; pausing accepts\n", strerror(errno));
                server_accept_stop(srv);
                ev_timer_start(loop, &srv->accept_pause_w);
            }
            return;     /* EAGAIN: another worker took it, or the queue is empty */
        }
        struct conn *c = malloc(sizeof(*c));
        if (!c) {
            close(fd);
            return;
        }
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* fails on unix */
        c->srv = srv;
        c->fd = fd;
        c->events = EV_READ;
        c->close_after = c->sleeping = c->sleep_keep_alive = c->linger = c->lingering = false;
        c->body_left = 0;
        c->in_len = c->out_off = c->out_len = 0;
        c->prev = NULL;
        c->next = srv->conns;
        if (c->next) {
            c->next->prev = c;
        }
        srv->conns = c;
        srv->n_conns++;
        ev_io_init(&c->io, conn_on_io, fd, EV_READ);
        ev_timer_init(&c->timer_w, conn_on_timer, 0.0, 0.0);
        ev_io_start(loop, &c->io);
    }
}

static void server_on_accept_pause(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct server *srv = t->data;
    for (int i = 0; i < srv->n_listen && !srv->draining; i++) {
        ev_io_start(loop, &srv->accept_w[i]);
    }
}

/* Binds "host:port" or "[v6]:port" ourselves, when no socket was passed. Returns fd or -errno. */
static int listen_bind(const char *addr)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    const char *h = addr;
    size_t hn = colon ? (size_t)(colon - addr) : 0;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int fd = -1, r;

    if (!colon || hn >= sizeof(host)) {
        return -EINVAL;
    }
    if (hn >= 2 && h[0] == '[' && h[hn - 1] == ']') {
        h++;
        hn -= 2;
    }
    memcpy(host, h, hn);
    host[hn] = '\0';
    if (getaddrinfo(hn ? host : NULL, colon + 1, &hints, &ai) != 0) {
        return -EINVAL;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        r = -errno;
        goto out;
    }
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
        r = -errno;
        goto out;
    }
    r = fd;
    fd = -1;
out:
    if (fd >= 0) {
        close(fd);
    }
    freeaddrinfo(ai);
    return r;
}

/* ---- metrics, state, shutdown ---------------------------------------------------------- */

/* A full snapshot: counters count from this process's start (SPEC section 4). */
static void server_metrics_send(struct server *srv)
{
    if (srv->metrics) {
        (void)drover_metrics_flush(srv->metrics);
    }
}

static void server_on_metrics_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    server_metrics_send(t->data);
}

/* Sampled right before each snapshot rather than updated per connection. */
static void server_on_collect(struct drover_metrics *m, void *userdata)
{
    struct server *srv = userdata;
    drover_gauge_set(srv->connections, srv->n_conns);
}

static int server_metrics_init(struct server *srv)
{
    static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                     0.05,   0.1,   0.25,   0.5,   1,    2.5};
    int r = drover_metrics_new(&srv->metrics);
    for (size_t i = 0; r == 0 && i < sizeof http_codes / sizeof http_codes[0]; i++) {
        char code[8];
        snprintf(code, sizeof code, "%d", http_codes[i]);
        r = drover_counter_new(srv->metrics, &srv->requests[i], "http_requests_total",
                               "HTTP requests answered, by status code.", "code",
                               http_codes[i] ? code : "other", (char *)NULL);
    }
    if (r == 0) {
        r = drover_histogram_new(srv->metrics, &srv->latency, "http_request_duration_seconds",
                                 "Time from reading a request to queueing its answer.", buckets,
                                 sizeof buckets / sizeof buckets[0], (char *)NULL);
    }
    if (r == 0) {
        r = drover_gauge_new(srv->metrics, &srv->connections, "http_connections",
                             "Open HTTP connections.", DROVER_AGG_SUM, (char *)NULL);
    }
    for (unsigned i = 0; r == 0 && i < srv->extra_series; i++) {
        struct drover_counter *c;
        char id[16];
        snprintf(id, sizeof id, "%u", i);
        r = drover_counter_new(srv->metrics, &c, "hello_extra_total",
                               "Idle series for benchmarks (--extra-series); value = id.", "id",
                               id, (char *)NULL);
        if (r == 0) {
            drover_counter_add(c, i);
        }
    }
    if (r == 0) {
        drover_metrics_on_collect(srv->metrics, server_on_collect, srv);
        r = drover_metrics_attach(srv->metrics, srv->w);
    }
    if (r < 0) {
        fprintf(stderr, "metrics disabled: %s\n", strerror(-r));
        drover_metrics_free(srv->metrics);
        srv->metrics = NULL;
    }
    return r;
}

static void server_state_save(struct server *srv)
{
    char buf[64];
    int n = snprintf(buf, sizeof(buf), "{\"requests\":%" PRIu64 "}\n", srv->resumed + srv->served);
    int r = drover_state_save(srv->w, buf, (size_t)n);
    if (r < 0 && r != -ENOENT) {
        fprintf(stderr, "saving state to '%s' failed: %s\n", drover_state_file(srv->w),
                strerror(-r));
    }
}

static void server_state_load(struct server *srv)
{
    void *buf;
    size_t len;
    if (drover_state_load(srv->w, &buf, &len) < 0) {
        return;     /* the slot's first worker, or outside drover */
    }
    /* The SDK NUL-terminates, so the state can be read as a string. */
    if (sscanf(buf, "{\"requests\":%" SCNu64 "}", &srv->resumed) != 1) {
        fprintf(stderr, "ignoring unreadable state in '%s'\n", drover_state_file(srv->w));
    }
    drover_free(buf);
}

/* Called whenever a connection closes: the drain is over when the last one is gone. */
static void server_check_drained(struct server *srv)
{
    if (!srv->draining || srv->n_conns > 0) {
        return;
    }
    if (srv->drain_phase) {
        srv->drain_phase = false;
        server_metrics_send(srv);   /* the final counts, kept by the master after we exit */
        drover_phase_done(srv->w, DROVER_PHASE_DRAIN);
    }
    if (srv->exit_when_drained && !srv->exiting) {
        srv->exiting = true;
        server_state_save(srv);
        ev_break(srv->loop, EVBREAK_ALL);
    }
}

static void server_on_idle_grace(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct server *srv = t->data;
    srv->idle_grace_over = true;
    for (struct conn *c = srv->conns, *next; c; c = next) {
        next = c->next;
        conn_update(c);
    }
    server_check_drained(srv);
}

/* Stops accepting; connections close after their last answer, idle ones after a grace. */
static void server_drain(struct server *srv)
{
    if (!srv->draining) {
        srv->draining = true;
        ev_timer_start(srv->loop, &srv->idle_grace_w);
        printf("draining %u connection(s)\n", srv->n_conns);
        server_accept_stop(srv);
        ev_timer_stop(srv->loop, &srv->accept_pause_w);
        /* Our copy only: the master's keeps the socket and its queue for the next worker. */
        for (int i = 0; i < srv->n_listen; i++) {
            close(srv->accept_w[i].fd);
        }
        srv->listen_closed = true;
        for (struct conn *c = srv->conns, *next; c; c = next) {
            next = c->next;
            conn_update(c);
        }
    }
    server_check_drained(srv);
}

static void server_on_phase(struct drover_worker *w, enum drover_phase phase, int64_t timeout_ms,
                            void *userdata)
{
    struct server *srv = userdata;
    switch (phase) {
    case DROVER_PHASE_DRAIN:
        srv->drain_phase = true;
        server_drain(srv);      /* answers phase_done when the last connection is gone */
        break;
    case DROVER_PHASE_SAVE:
        server_state_save(srv);
        drover_phase_done(w, phase);
        break;
    case DROVER_PHASE_CLEANUP:
        drover_phase_done(w, phase);    /* drover_close flushes it on the way out */
        ev_break(srv->loop, EVBREAK_ALL);
        break;
    default:
        drover_phase_done(w, phase);
        break;
    }
}

static void server_on_signal(struct ev_loop *loop, ev_signal *s, int revents)
{
    struct server *srv = s->data;
    if (srv->exit_when_drained) {
        ev_break(loop, EVBREAK_ALL);    /* a second signal: stop waiting for connections */
        return;
    }
    srv->exit_when_drained = true;
    server_drain(srv);
}

static void server_on_channel_closed(struct drover_ev *e, int err, void *userdata)
{
    /* The master is gone; nobody will send the phases, so drain and exit on our own. */
    struct server *srv = userdata;
    fprintf(stderr, "channel to drover closed (%s); exiting\n", strerror(-err));
    srv->exit_when_drained = true;
    server_drain(srv);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: hello-http [--listen HOST:PORT] [--greeting TEXT] [--extra-series N]\n"
               "  --listen        address to bind when no socket is passed (127.0.0.1:8080)\n"
               "  --greeting      first word of the answer (hi)\n"
               "  --extra-series  N more counter series in the metrics, 0..%d (0)\n"
               "  --max-requests  ask drover to recycle this worker after N requests (0: never)\n"
               "  --hang-route    GET /hang blocks the loop for good (watchdog tests)\n",
            EXTRA_SERIES_MAX);
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"listen", required_argument, NULL, 'l'},
        {"greeting", required_argument, NULL, 'g'},
        {"extra-series", required_argument, NULL, 'x'},
        {"max-requests", required_argument, NULL, 'm'},
        {"hang-route", no_argument, NULL, 'H'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    static struct server srv;   /* static: the canned responses make it large */
    const char *listen_addr = "127.0.0.1:8080", *greeting = "hi";
    int opt, r;

    while ((opt = getopt_long(argc, argv, "l:g:x:m:Hh", options, NULL)) != -1) {
        switch (opt) {
        case 'l':
            listen_addr = optarg;
            break;
        case 'g':
            greeting = optarg;
            break;
        case 'x': {
            char *end;
            errno = 0;
            long n = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || n < 0 || n > EXTRA_SERIES_MAX) {
                usage(stderr);
                return 2;
            }
            srv.extra_series = (unsigned)n;
            break;
        }
        case 'm': {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end || optarg[0] == '-') {
                usage(stderr);
                return 2;
            }
            srv.max_requests = n;
            break;
        }
        case 'H':
            srv.hang_route = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc || strlen(greeting) > GREETING_MAX) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* One log record per line, as each happens, even though stdout is a pipe. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    r = drover_init(&srv.w);
    if (r < 0) {
        fprintf(stderr, "drover_init() failed: %s\n", strerror(-r));
        return 1;
    }
    srv.loop = ev_default_loop(0);
    server_state_load(&srv);

    char body[GREETING_MAX + 64];
    snprintf(body, sizeof(body), "%s from pid %d slot %d\n", greeting, (int)getpid(),
             drover_worker_id(srv.w));
    canned_format(&srv.hello[0], body, false);
    canned_format(&srv.hello[1], body, true);
    snprintf(body, sizeof(body), "%d\n", (int)getpid());
    canned_format(&srv.pid[0], body, false);
    canned_format(&srv.pid[1], body, true);

    /* Sockets from drover (or systemd) if any were passed, else our own. */
    int fds[LISTEN_MAX] = {0};
    srv.n_listen = drover_listen_count(srv.w);
    if (srv.n_listen > LISTEN_MAX) {
        srv.n_listen = LISTEN_MAX;
    }
    for (int i = 0; i < srv.n_listen; i++) {
        fds[i] = drover_listen_fd(srv.w, i);
        /*
         * Every worker is woken for each new connection and only one wins the accept: the
         * others must get EAGAIN, not block. O_NONBLOCK is shared by all workers' copies,
         * which is fine: they all want it.
         */
        (void)fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
    }
    if (srv.n_listen == 0) {
        fds[0] = listen_bind(listen_addr);
        if (fds[0] < 0) {
            fprintf(stderr, "bind('%s') failed: %s\n", listen_addr, strerror(-fds[0]));
            drover_close(srv.w);
            return 1;
        }
        srv.n_listen = 1;
    }
    for (int i = 0; i < srv.n_listen; i++) {
        ev_io_init(&srv.accept_w[i], server_on_accept, fds[i], EV_READ);
        srv.accept_w[i].data = &srv;
        ev_io_start(srv.loop, &srv.accept_w[i]);
    }
    ev_timer_init(&srv.accept_pause_w, server_on_accept_pause, 0.1, 0.0);
    srv.accept_pause_w.data = &srv;
    ev_timer_init(&srv.idle_grace_w, server_on_idle_grace, IDLE_GRACE_MS / 1000.0, 0.0);
    srv.idle_grace_w.data = &srv;
    ev_signal_init(&srv.sigterm_w, server_on_signal, SIGTERM);
    ev_signal_init(&srv.sigint_w, server_on_signal, SIGINT);
    srv.sigterm_w.data = srv.sigint_w.data = &srv;
    ev_signal_start(srv.loop, &srv.sigterm_w);
    ev_signal_start(srv.loop, &srv.sigint_w);

    /* The channel: phases we act on, metrics on request and every second. */
    if (drover_ev_start(&srv.channel, srv.loop, srv.w, server_on_channel_closed, &srv) == 0) {
        drover_on_phase(srv.w, DROVER_PHASE_DRAIN, server_on_phase, &srv);
        drover_on_phase(srv.w, DROVER_PHASE_SAVE, server_on_phase, &srv);
        drover_on_phase(srv.w, DROVER_PHASE_CLEANUP, server_on_phase, &srv);
        (void)server_metrics_init(&srv);
        ev_timer_init(&srv.metrics_w, server_on_metrics_timer, 1.0, 1.0);
        srv.metrics_w.data = &srv;
        ev_timer_start(srv.loop, &srv.metrics_w);
    }

    r = drover_ready(srv.w);
    if (r < 0) {
        fprintf(stderr, "drover_ready() failed: %s\n", strerror(-r));
    }
    drover_status(srv.w, "serving on %d socket(s), %" PRIu64 " requests resumed", srv.n_listen,
                  srv.resumed);
    printf("hello-http pid %d slot %d serving on %d socket(s)\n", (int)getpid(),
            drover_worker_id(srv.w), srv.n_listen);

    ev_run(srv.loop, 0);

    /* Leaving: whatever is still open goes now, without drain bookkeeping. */
    srv.draining = false;
    while (srv.conns) {
        /* conn_close() unlinks the head; the analyzer does not follow that. */
        conn_close(srv.conns); /* NOLINT(clang-analyzer-unix.Malloc) */
    }
    if (!srv.listen_closed) {
        for (int i = 0; i < srv.n_listen; i++) {
            close(srv.accept_w[i].fd);
        }
    }
    drover_ev_stop(&srv.channel);
    drover_metrics_free(srv.metrics);   /* first: it detaches from w */
    drover_close(srv.w);
    ev_loop_destroy(srv.loop);
    printf("hello-http pid %d exiting\n", (int)getpid());
    return 0;
}
