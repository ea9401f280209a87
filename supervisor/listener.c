/*
 * listener: bind once, keep for life. See listener.h.
 */
#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int listener_clear_stale_unix(const char *path)
{
    struct stat st;
    if (lstat(path, &st) == -1) {
        return errno == ENOENT ? 0 : -errno;
    }
    if (!S_ISSOCK(st.st_mode)) {
        return -EEXIST;
    }
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sun.sun_path) {
        return -ENAMETOOLONG;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        return -errno;
    }
    /* A blocking connect to a unix socket never waits on the network: it succeeds at once,
     * or fails with ECONNREFUSED when nobody listens (or EAGAIN when the backlog is full, which
     * still means somebody is there). */
    int r = connect(fd, (struct sockaddr *)&sun, sizeof sun);
    int err = errno;
    close(fd);
    if (r == 0 || err == EAGAIN) {
        return -EADDRINUSE;
    }
    if (err != ECONNREFUSED) {
        return -err;
    }
    if (unlink(path) == -1 && errno != ENOENT) {
        return -errno;
    }
    return 0;
}

/* net.core.somaxconn, or 0 when it cannot be read. */
static int listener_somaxconn(void)
{
    int fd = open("/proc/sys/net/core/somaxconn", O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        return 0;
    }
    char buf[32];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) {
        return 0;
    }
    buf[n] = '\0';
    return atoi(buf);
}

int listener_open(struct listener *l, const struct address *addr)
{
    int fd = -1;
    int r;
    bool created = false;

    if (addr->kind == ADDRESS_UNIX) {
        const struct sockaddr_un *sun = (const struct sockaddr_un *)&addr->sa;
        r = listener_clear_stale_unix(sun->sun_path);
        if (r < 0) {
            goto out;
        }
    }
    fd = socket(addr->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        r = -errno;
        goto out;
    }
    if (addr->kind == ADDRESS_TCP) {
        int one = 1;
        /* SO_REUSEADDR lets a restarted drover bind while old connections sit in TIME_WAIT. */
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == -1) {
            r = -errno;
            goto out;
        }
        /* [::]:80 means IPv6 only, as nginx does; an IPv4 wildcard is listed separately. */
        if (addr->family == AF_INET6 &&
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) == -1) {
            r = -errno;
            goto out;
        }
    }
    if (bind(fd, (const struct sockaddr *)&addr->sa, addr->salen) == -1) {
        r = -errno;
        goto out;
    }
    created = addr->kind == ADDRESS_UNIX;
    l->backlog = addr->backlog > 0 ? addr->backlog : SOMAXCONN;
    l->somaxconn = listener_somaxconn();
    if (listen(fd, l->backlog) == -1) {
        r = -errno;
        goto out;
    }
    l->addr = *addr;
    l->fd = fd;
    l->created_path = created;
    fd = -1;
    r = 0;
out:
    if (fd != -1) {
        if (created) {
            unlink(((const struct sockaddr_un *)&addr->sa)->sun_path);
        }
        close(fd);
    }
    return r;
}

int listener_queue(const struct listener *l, unsigned *ret_len, unsigned *ret_limit)
{
    if (l->addr.kind != ADDRESS_TCP) {
        return -ENOTSUP;
    }
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (getsockopt(l->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == -1) {
        return -errno;
    }
    /* For a socket in LISTEN, the kernel reports the accept queue in these two fields. */
    *ret_len = ti.tcpi_unacked;
    *ret_limit = ti.tcpi_sacked;
    return 0;
}

void listener_close(struct listener *l)
{
    if (l->fd != -1) {
        close(l->fd);
        l->fd = -1;
    }
    if (l->created_path) {
        unlink(((const struct sockaddr_un *)&l->addr.sa)->sun_path);
        l->created_path = false;
    }
}
