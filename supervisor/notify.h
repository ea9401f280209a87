/*
 * notify: the sd_notify protocol, both directions (SPEC sections 4 and 9).
 *
 * Workers that know systemd but not drover say READY=1 on the datagram socket named by
 * NOTIFY_SOCKET. drover owns one such socket for all its workers and tells who spoke by the
 * sender's credentials (SO_PASSCRED), as systemd does; the message itself names nobody.
 * Parsing is pure, so it can be unit-tested and fuzzed; the socket calls never block.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The part of a datagram drover acts on. status points into the parsed buffer. */
struct notify_msg {
    bool ready;
    bool stopping;
    bool reloading;
    bool watchdog;          /* WATCHDOG=1: alive */
    bool watchdog_trigger;  /* WATCHDOG=trigger: it declares itself hung */
    const char *status;     /* NUL-terminated in the buffer; NULL when absent */
};

/* The largest datagram read; systemd accepts about as much. */
#define NOTIFY_DATAGRAM_MAX 4096

/*
 * Parses newline-separated KEY=VALUE assignments in buf (len bytes; buf must have room for one
 * more byte, which becomes a NUL). Unknown keys are ignored, as systemd ignores them. Returns 0,
 * or -EINVAL for a datagram with an embedded NUL.
 */
int notify_parse(char *buf, size_t len, struct notify_msg *ret);

/*
 * Creates the receiving socket at path (a filesystem path, or "@name" for the abstract
 * namespace): datagram, non-blocking, close-on-exec, SO_PASSCRED. Returns the fd or -errno.
 */
int notify_open(const char *path);

/*
 * Receives one datagram into buf (size NOTIFY_DATAGRAM_MAX + 1) and the sender's pid. Returns
 * its length, -EAGAIN when none is waiting, -EBADMSG when it carried no credentials or file
 * descriptors (which are closed), or -errno.
 */
ssize_t notify_receive(int fd, char *buf, pid_t *ret_pid);

/*
 * Sends one datagram to the socket named in NOTIFY_SOCKET form (path or "@abstract"), without
 * blocking. Returns 0 or -errno.
 */
int notify_send(const char *socket_path, const char *text);
