/*
 * ctlclient: connect, send and read lines on the control socket, each wait bounded by a
 * deadline (see ctlclient.h). droverctl's commands and its `top` view share it, so both wait,
 * retry and give up the same way.
 */
#include "ctlclient.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* The longest reply line accepted: a status of a thousand workers is a few hundred KiB. */
#define CTLCLIENT_LINE_MAX (16u * 1024u * 1024u)

double ctlclient_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Milliseconds left until deadline for poll(); -1 = no deadline. */
static int ctlclient_poll_ms(double deadline)
{
    if (deadline < 0) {
        return -1;
    }
    double left = deadline - ctlclient_now();
    if (left <= 0) {
        return 0;
    }
    /* Rounded up, so a wait never ends a moment before its deadline and spins. */
    return left > 1e6 ? 1000000000 : (int)(left * 1000.0) + 1;
}

void ctlclient_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int ctlclient_open(struct ctlclient *cl, const char *path, double deadline)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sun.sun_path) {
        return -ENAMETOOLONG;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd == -1) {
        return -errno;
    }
    for (;;) {
        if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0) {
            break;
        }
        /* EAGAIN: drover's backlog is full. It is there, only busy: try again shortly. */
        if (errno == EAGAIN && (deadline < 0 || ctlclient_now() < deadline)) {
            ctlclient_sleep_ms(10);
            continue;
        }
        int r = errno == EAGAIN ? -ETIMEDOUT : -errno;
        close(fd);
        return r;
    }
    cl->fd = fd;
    cl->len = 0;
    return 0;
}

int ctlclient_send(struct ctlclient *cl, const char *data, size_t len, double deadline)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(cl->fd, data + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n == -1 && errno == EINTR) {
            continue;
        }
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p = {.fd = cl->fd, .events = POLLOUT};
            int k = poll(&p, 1, ctlclient_poll_ms(deadline));
            if (k == 0) {
                return -ETIMEDOUT;
            }
            continue;
        }
        return n == 0 ? -EPIPE : -errno;
    }
    return 0;
}

int ctlclient_read_line(struct ctlclient *cl, double deadline, char **ret)
{
    size_t scanned = 0;
    for (;;) {
        char *nl = cl->len > scanned ? memchr(cl->buf + scanned, '\n', cl->len - scanned) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - cl->buf);
            char *line = strndup(cl->buf, n);
            if (!line) {
                return -ENOMEM;
            }
            memmove(cl->buf, nl + 1, cl->len - n - 1);
            cl->len -= n + 1;
            *ret = line;
            return 1;
        }
        scanned = cl->len;
        if (cl->len >= CTLCLIENT_LINE_MAX) {
            return -EMSGSIZE;
        }
        if (cl->cap - cl->len < 4096) {
            size_t cap = cl->cap ? cl->cap * 2 : 65536;
            char *buf = realloc(cl->buf, cap);
            if (!buf) {
                return -ENOMEM;
            }
            cl->buf = buf;
            cl->cap = cap;
        }
        if (cl->interrupted && *cl->interrupted) {
            return -EINTR;
        }
        struct pollfd p = {.fd = cl->fd, .events = POLLIN};
        int k = poll(&p, 1, ctlclient_poll_ms(deadline));
        if (k == -1 && errno == EINTR) {
            continue;
        }
        if (k == 0) {
            return -ETIMEDOUT;
        }
        ssize_t n = read(cl->fd, cl->buf + cl->len, cl->cap - cl->len);
        if (n == -1 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
            continue;
        }
        if (n == 0) {
            return 0;
        }
        if (n < 0) {
            return -errno;
        }
        cl->len += (size_t)n;
    }
}

void ctlclient_close(struct ctlclient *cl)
{
    if (cl->fd != -1) {
        close(cl->fd);
        cl->fd = -1;
    }
    free(cl->buf);
    cl->buf = NULL;
    cl->len = cl->cap = 0;
}
