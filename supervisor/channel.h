/*
 * channel: the master's end of a worker's socketpair, carrying newline-delimited JSON both ways
 * (SPEC section 4). Both directions are bounded: a line over WIRE_LINE_MAX from the worker is a
 * protocol error, and output the worker does not read piles up only to CHANNEL_OUT_LIMIT, past
 * which a message is refused rather than queued. A worker that breaks the protocol gets its
 * channel closed; the worker itself goes on and is judged by the rest of its behaviour.
 *
 * The channel reads at most a fixed budget of bytes and hands over at most a fixed number of
 * messages per loop iteration, so a flooding worker cannot starve the loop.
 */
#pragma once

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

#include "bytebuf.h"
#include "wire.h"

#define CHANNEL_OUT_LIMIT (4u * 1024u * 1024u)

struct channel;

/* A message arrived; msg is the callee's to read and is released after the call returns. */
typedef void (*channel_msg_fn)(struct channel *ch, struct wire_msg *msg, void *data);
/* The channel closed: err is 0 for EOF, or -EPROTO / -EMSGSIZE / -errno. Not called from
 * channel_close(). The channel is already closed when this runs. */
typedef void (*channel_close_fn)(struct channel *ch, int err, void *data);
/* Everything queued has been written after the worker made us wait (optional). */
typedef void (*channel_drained_fn)(struct channel *ch, void *data);
/* The worker sent again, byte for byte, the line the owner last marked repeatable (optional):
 * it is not parsed again. */
typedef void (*channel_repeat_fn)(struct channel *ch, void *data);

struct channel {
    struct ev_loop *loop;
    int fd;
    ev_io read_w;
    ev_io write_w;
    ev_timer resume_w;          /* the rest of a turn whose message budget ran out */
    struct wire_lines in;
    struct bytebuf out;         /* bounded by CHANNEL_OUT_LIMIT */
    channel_msg_fn on_msg;
    channel_close_fn on_close;
    channel_drained_fn on_drained;
    channel_repeat_fn on_repeat;
    void *data;
    uint64_t line_hash;         /* of the line being handed over */
    size_t line_len;
    uint64_t repeat_hash;       /* of the line marked repeatable; repeat_len 0 = none */
    size_t repeat_len;
};

/* Takes ownership of fd, a stream socket, and starts reading. The fd's own flags are left as
 * they are: every read and write on it is non-blocking by itself (MSG_DONTWAIT). */
void channel_open(struct channel *ch, struct ev_loop *loop, int fd, channel_msg_fn on_msg,
                  channel_close_fn on_close, void *data);

/* Takes what the peer sent before it went (bounded by the read budget), then closes: a worker's
 * last metrics snapshot, written just before it exited, still counts. */
void channel_drain(struct channel *ch);

/* Stops the watchers and closes the fd; safe on a closed channel. */
void channel_close(struct channel *ch);

bool channel_is_open(const struct channel *ch);

/*
 * From inside the message callback: the line just handed over may come again unchanged (a
 * metrics snapshot of a worker with nothing new to count, sent every second), and when it does
 * on_repeat is called instead of parsing it again: jansson's tree of a 100-series snapshot
 * costs more than everything else the master does for an idle worker. Lines are compared by
 * length and a 64-bit hash.
 */
void channel_mark_repeatable(struct channel *ch);

/* Bytes queued for the worker and not yet written. */
size_t channel_pending(const struct channel *ch);

/* Queues one message. Returns 0, -ENOTCONN when closed, -ENOBUFS when the worker is not
 * reading and the limit is reached, or -ENOMEM. */
int channel_send(struct channel *ch, const struct wire_msg *msg);

/*
 * An upgrade in place (SPEC section 12): what the channel holds and has not handed over yet,
 * the input read but not taken as lines and the output queued but not written (both borrowed,
 * valid until the channel is used again) ...
 */
void channel_unread(const struct channel *ch, const char **ret_in, size_t *ret_in_len,
                    const char **ret_out, size_t *ret_out_len);
/* ... and, in the next image, a channel on fd that picks up there: as channel_open(), the
 * buffered input handed over from a loop turn. Returns 0 or -EMSGSIZE / -ENOBUFS / -ENOMEM (the
 * channel is open all the same; the caller closes it). */
int channel_adopt(struct channel *ch, struct ev_loop *loop, int fd, const char *in, size_t in_len,
                  const char *out, size_t out_len, channel_msg_fn on_msg,
                  channel_close_fn on_close, void *data);
