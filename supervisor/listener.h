/*
 * listener: the sockets drover binds once, before any worker starts, and keeps for its whole
 * life (SPEC section 5, "Start"). Workers come and go; the listening socket and its backlog stay,
 * so a client that arrives between two workers waits instead of being refused.
 *
 * The descriptors are close-on-exec in the master and placed at fds 3, 4, ... in a worker by
 * spawn. They are left in blocking mode: O_NONBLOCK lives on the open file description that all
 * workers share, and which mode to use is the worker's choice, as under systemd.
 */
#pragma once

#include <stdbool.h>

#include "parse.h"

struct listener {
    struct address addr;
    int fd;
    bool created_path;  /* a unix socket file this process created, removed on close */
    int backlog;        /* what listen() was asked for */
    int somaxconn;      /* net.core.somaxconn when it was opened; the kernel caps backlog there */
};

/*
 * Binds and listens on addr. A unix socket path left behind by a dead process (connect is
 * refused) is replaced; one that answers belongs to a live process and is an error (-EADDRINUSE),
 * as is a path that exists and is not a socket (-EEXIST). Returns 0 or -errno.
 */
int listener_open(struct listener *l, const struct address *addr);

/*
 * The accept queue of a TCP listener now: connections the kernel has completed and no worker
 * has accepted yet, and the most it keeps (the backlog as the kernel applies it), from TCP_INFO.
 * Returns 0, -ENOTSUP for a unix socket (no such reading without netlink), or -errno.
 */
int listener_queue(const struct listener *l, unsigned *ret_len, unsigned *ret_limit);

/* Closes the socket and removes its file if this process created it. */
void listener_close(struct listener *l);

/*
 * The same stale-or-live check for any unix socket path (the control socket uses it too):
 * returns 0 when nothing is there or a stale socket was removed, -EADDRINUSE when something
 * answers, -EEXIST when the path is not a socket, or -errno.
 */
int listener_clear_stale_unix(const char *path);
