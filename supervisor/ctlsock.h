/*
 * ctlsock: the control socket's connection layer (SPEC section 7): a Unix stream socket, mode
 * 0600, in a directory created 0700, whose peers must be of our uid or root (SO_PEERCRED on
 * every connection, whatever the file's mode), each a non-blocking connection on the loop with
 * bounded line input, bounded output and an idle timeout. What a line means is the owner's
 * business (control.c); this module only frames, buffers, paces and closes.
 *
 * Pacing follows the owner's word on each connection (struct ctlsock_ops.mode): a connection
 * that is taking requests gets its next line once the previous one is answered and its output
 * has drained below CTLCONN_OUT_SOFT; one the owner owes an answer (waiting) is neither read
 * further nor timed out for idleness; one the owner streams to (listening) has its input
 * ignored and its EOF ends it. Replies only ever go into the connection's buffer, written by
 * the connection's own watcher: the owner never meets a socket error under its feet, and a
 * connection is freed only from its own callbacks or by ctlsock_shutdown().
 *
 * Bounds: at most CTLSOCK_CLIENTS_MAX connections; accept() paused for a moment when out of
 * descriptors rather than spinning; a refused peer is logged at most once per few seconds.
 */
#pragma once

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define CTLSOCK_CLIENTS_MAX 256
/* Output a connection may pile up: a reply or progress past SOFT waits for the reader before
 * the next request is taken; a reply that cannot be queued within HARD ends the connection. */
#define CTLCONN_OUT_SOFT (64u * 1024u)
#define CTLCONN_OUT_FOLLOW (1024u * 1024u)
#define CTLCONN_OUT_HARD (16u * 1024u * 1024u)
#define CTLCONN_IDLE_TIMEOUT 60.0

struct ctlsock;
struct ctlconn;

enum ctlconn_mode {
    CTLCONN_TAKING,     /* answer the next request */
    CTLCONN_WAITING,    /* the owner owes it an answer: read nothing more, never idle */
    CTLCONN_LISTENING,  /* the owner streams to it: input ignored, EOF ends it */
};

/* What the connection layer tells its owner. client is what on_open returned. */
struct ctlsock_ops {
    /* A peer passed the checks. Returns the owner's state for it, or NULL to refuse it (out of
     * memory). */
    void *(*on_open)(void *owner, struct ctlconn *cn);
    /* One complete request line (without its newline). */
    void (*on_line)(void *client, const char *line, size_t len);
    enum ctlconn_mode (*mode)(const void *client);
    /* The socket is closing (drover's shutdown): a last word may be queued. May be NULL. */
    void (*on_shutdown)(void *client);
    /* The connection is going, once: forget it. */
    void (*on_close)(void *client);
};

/*
 * Creates the socket at path (its parent directory 0700 if this creates it). A stale socket
 * file is replaced; a live one means another drover runs there: -EADDRINUSE. Logs the failure
 * naming the path. Returns 0 or -errno.
 */
int ctlsock_open(struct ev_loop *loop, const char *path, const struct ctlsock_ops *ops,
                 void *owner, struct ctlsock **ret);

/* Closes every connection (on_shutdown, a last non-blocking write, on_close) and the socket, and
 * removes the socket file if it is still ours. Idempotent; the struct stays. */
void ctlsock_shutdown(struct ctlsock *s);

/* ctlsock_shutdown() and free. Safe on NULL. */
void ctlsock_close(struct ctlsock *s);

/* Appends len bytes to the connection's output. Returns 0, or -ENOBUFS when that would pass
 * limit (nothing is queued), or -ENOMEM. */
int ctlconn_queue(struct ctlconn *cn, const char *data, size_t len, size_t limit);

/* Ends the connection as soon as its callbacks allow: its output could not be queued. */
void ctlconn_break(struct ctlconn *cn);

/* Bytes queued and not yet written. */
size_t ctlconn_pending(const struct ctlconn *cn);

/* Whether the connection is on its way out (broken, or closing after a last reply). */
bool ctlconn_is_going(const struct ctlconn *cn);

/* The owner's wait is over: the next request may be taken (from the loop, not from here). */
void ctlconn_resume(struct ctlconn *cn);

uid_t ctlconn_uid(const struct ctlconn *cn);
pid_t ctlconn_pid(const struct ctlconn *cn);

/*
 * Upgrade in place (SPEC section 12): the descriptors of the socket and of a connection, for the
 * next image; there, the socket taken up from its descriptor (path: what it was created at),
 * and a connection of the previous image taken up from its own, as if just accepted (on_open is
 * called). Return 0 or -errno.
 */
int ctlsock_fd(const struct ctlsock *s);
int ctlconn_fd(const struct ctlconn *cn);
void *ctlconn_client(const struct ctlconn *cn);
int ctlsock_adopt(struct ev_loop *loop, const char *path, int fd, const struct ctlsock_ops *ops,
                  void *owner, struct ctlsock **ret);
int ctlsock_adopt_conn(struct ctlsock *s, int fd, struct ctlconn **ret);
/* Whether a connection can go to the next image as it is: nothing of it read but not taken,
 * nothing queued for it. Otherwise ctlconn_say_now() gives it a last word, written at once
 * (as far as the socket takes it) since the exec closes it. */
bool ctlconn_can_hand_over(const struct ctlconn *cn);
void ctlconn_say_now(struct ctlconn *cn, const char *line, size_t len);
