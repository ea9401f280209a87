/*
 * notify: sd_notify datagrams. See notify.h.
 */
#include "notify.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int notify_parse(char *buf, size_t len, struct notify_msg *ret)
{
    struct notify_msg m = {0};
    if (memchr(buf, '\0', len)) {
        return -EINVAL;
    }
    buf[len] = '\0';
    char *line = buf;
    while (line < buf + len) {
        char *end = strchrnul(line, '\n');
        char *next = *end ? end + 1 : end;
        *end = '\0';
        if (strcmp(line, "READY=1") == 0) {
            m.ready = true;
        } else if (strcmp(line, "STOPPING=1") == 0) {
            m.stopping = true;
        } else if (strcmp(line, "RELOADING=1") == 0) {
            m.reloading = true;
        } else if (strcmp(line, "WATCHDOG=1") == 0) {
            m.watchdog = true;
        } else if (strcmp(line, "WATCHDOG=trigger") == 0) {
            m.watchdog_trigger = true;
        } else if (strncmp(line, "STATUS=", 7) == 0) {
            m.status = line + 7;
        }
        line = next;
    }
    *ret = m;
    return 0;
}

/* Fills a sockaddr_un from NOTIFY_SOCKET syntax; returns its length or -errno. */
static int notify_address(const char *path, struct sockaddr_un *sun)
{
    size_t len = strlen(path);
    memset(sun, 0, sizeof *sun);
    sun->sun_family = AF_UNIX;
    if (len == 0 || len >= sizeof sun->sun_path) {
        return -EINVAL;
    }
    memcpy(sun->sun_path, path, len);
    if (path[0] == '@') {
        /* The abstract namespace: a leading NUL, and the length says where the name ends. */
        sun->sun_path[0] = '\0';
        return (int)(offsetof(struct sockaddr_un, sun_path) + len);
    }
    return (int)(offsetof(struct sockaddr_un, sun_path) + len + 1);
}

int notify_open(const char *path)
{
    struct sockaddr_un sun;
    int salen = notify_address(path, &sun);
    if (salen < 0) {
        return salen;
    }
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd == -1) {
        return -errno;
    }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) == -1 ||
        bind(fd, (struct sockaddr *)&sun, (socklen_t)salen) == -1) {
        int err = errno;
        close(fd);
        return -err;
    }
    /* Datagrams from many workers may arrive in a burst at startup; give the queue room. */
    int size = 1 << 20;
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    return fd;
}

ssize_t notify_receive(int fd, char *buf, pid_t *ret_pid)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int) * 16)];
    } control;
    struct iovec iov = {.iov_base = buf, .iov_len = NOTIFY_DATAGRAM_MAX};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = sizeof control};
    ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
    if (n == -1) {
        return -errno;
    }
    bool have_cred = false;
    pid_t pid = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET) {
            continue;
        }
        if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len == CMSG_LEN(sizeof(struct ucred))) {
            struct ucred cred;
            memcpy(&cred, CMSG_DATA(c), sizeof cred);
            pid = cred.pid;
            have_cred = true;
        } else if (c->cmsg_type == SCM_RIGHTS) {
            /* FDSTORE is not supported; never keep a descriptor somebody pushed at us. */
            size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < nfds; i++) {
                int passed;
                memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof passed);
                close(passed);
            }
        }
    }
    if (!have_cred || pid <= 0 || (mh.msg_flags & MSG_TRUNC)) {
        return -EBADMSG;
    }
    *ret_pid = pid;
    return n;
}

int notify_send(const char *socket_path, const char *text)
{
    struct sockaddr_un sun;
    int salen = notify_address(socket_path, &sun);
    if (salen < 0) {
        return salen;
    }
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd == -1) {
        return -errno;
    }
    ssize_t n = sendto(fd, text, strlen(text), MSG_NOSIGNAL, (struct sockaddr *)&sun,
                       (socklen_t)salen);
    int err = errno;
    close(fd);
    return n == -1 ? -err : 0;
}
