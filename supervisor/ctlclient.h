/*
 * ctlclient: the client end of the control socket (SPEC section 7), as droverctl and its
 * `top` view use it: connect, send a request, read reply lines.
 *
 * Principle: a plain blocking client with a deadline on every wait. Each wait is a poll() on
 * one fd, so a caller that must also watch a terminal or a signal sets `interrupted` and the
 * wait ends at once with -EINTR instead of running to its deadline. Deadlines are absolute
 * times of ctlclient_now(); a negative deadline means none.
 */
#ifndef DROVER_CTLCLIENT_H
#define DROVER_CTLCLIENT_H

#include <signal.h>
#include <stddef.h>

struct ctlclient {
    int fd;    /* -1 when not connected */
    char *buf; /* bytes read past the last line returned */
    size_t len;
    size_t cap;
    const volatile sig_atomic_t *interrupted; /* optional: set -> waits end with -EINTR */
};

#define CTLCLIENT_INIT                                                                             \
    {                                                                                              \
        .fd = -1                                                                                   \
    }

/* The monotonic clock deadlines are measured on, in seconds. */
double ctlclient_now(void);

void ctlclient_sleep_ms(long ms);

/* Connects to the socket at path; returns 0 or -errno (the caller reports "no drover at
 * PATH"). A full backlog (drover busy, not gone) is retried until deadline. */
int ctlclient_open(struct ctlclient *cl, const char *path, double deadline);

/* Sends len bytes; returns 0, -ETIMEDOUT or -errno (-EPIPE: drover closed its end). */
int ctlclient_send(struct ctlclient *cl, const char *data, size_t len, double deadline);

/*
 * Reads the next line (without its newline) into *ret, a malloc'd string the caller frees.
 * Returns 1, 0 at EOF, -ETIMEDOUT, -EINTR (interrupted), -EMSGSIZE (a line over 16 MiB) or
 * -errno.
 */
int ctlclient_read_line(struct ctlclient *cl, double deadline, char **ret);

/* Closes the connection and drops what was buffered; the struct can be opened again. */
void ctlclient_close(struct ctlclient *cl);

#endif
