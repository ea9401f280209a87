/*
 * channel: the master's end of the worker channel. See channel.h.
 *
 * Every read and write passes MSG_DONTWAIT rather than relying on O_NONBLOCK on the fd: the
 * flag would take an fcntl() that can fail, and a silently blocking channel would let one
 * worker stop the master. Per-call flags cannot fail to be set, so there is no error for
 * channel_open to report.
 */
#include "channel.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "htab.h"

/* Bytes read per wakeup before yielding to the rest of the loop. */
#define CHANNEL_READ_BUDGET (256u * 1024u)
/* Messages handed to the owner per turn before yielding to the rest of the loop. */
#define CHANNEL_MSG_BUDGET 64u

bool channel_is_open(const struct channel *ch)
{
    return ch->fd != -1;
}

void channel_close(struct channel *ch)
{
    if (ch->fd == -1) {
        return;
    }
    ev_io_stop(ch->loop, &ch->read_w);
    ev_io_stop(ch->loop, &ch->write_w);
    ev_timer_stop(ch->loop, &ch->resume_w);
    close(ch->fd);
    ch->fd = -1;
    wire_lines_done(&ch->in);
    bytebuf_free(&ch->out);
}

static void channel_fail(struct channel *ch, int err)
{
    channel_close(ch);
    if (ch->on_close) {
        ch->on_close(ch, err, ch->data);
    }
}

/* Writes what the worker takes now. Returns 0 or -errno on a broken channel. */
static int channel_flush(struct channel *ch)
{
    while (bytebuf_pending(&ch->out) > 0) {
        ssize_t n = send(ch->fd, bytebuf_head(&ch->out), bytebuf_pending(&ch->out),
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            bytebuf_consume(&ch->out, (size_t)n);
        } else if (n == -1 && errno == EINTR) {
            continue;
        } else if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            return -errno;
        }
    }
    if (bytebuf_pending(&ch->out) > 0) {
        ev_io_start(ch->loop, &ch->write_w);
    } else {
        ev_io_stop(ch->loop, &ch->write_w);
    }
    return 0;
}

size_t channel_pending(const struct channel *ch)
{
    return bytebuf_pending(&ch->out);
}

static void channel_on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    struct channel *ch = w->data;
    int r = channel_flush(ch);
    if (r < 0) {
        channel_fail(ch, r);
        return;
    }
    /* Only from the watcher, never from channel_send(): the owner hears of a drained queue on a
     * loop turn of its own. */
    if (bytebuf_pending(&ch->out) == 0 && ch->on_drained) {
        ch->on_drained(ch, ch->data);
    }
}

void channel_mark_repeatable(struct channel *ch)
{
    ch->repeat_hash = ch->line_hash;
    ch->repeat_len = ch->line_len;
}

/* Parses the lines already read, at most *msgs of them. Returns 1 when the budget ran out
 * (lines may be left over), 0 when every buffered line was taken, or -1 when the channel
 * failed or was closed. */
static int channel_dispatch(struct channel *ch, unsigned *msgs)
{
    const char *line;
    size_t len;
    int r = 0;
    while (*msgs > 0 && (r = wire_lines_next(&ch->in, &line, &len)) == 1) {
        struct wire_msg msg;
        if (len == 0) {
            continue;
        }
        ch->line_hash = htab_hash(line, len); /* tells a repeated line from a changed one */
        ch->line_len = len;
        if (ch->on_repeat && len == ch->repeat_len && ch->line_hash == ch->repeat_hash) {
            (*msgs)--;
            ch->on_repeat(ch, ch->data);
            if (ch->fd == -1) {
                return -1;
            }
            continue;
        }
        r = wire_msg_parse(line, len, &msg);
        if (r < 0) {
            channel_fail(ch, r);
            return -1;
        }
        (*msgs)--;
        ch->on_msg(ch, &msg, ch->data);
        wire_msg_done(&msg);
        /* The handler may have closed the channel (e.g. the worker is being removed). */
        if (ch->fd == -1) {
            return -1;
        }
    }
    if (*msgs == 0) {
        return 1; /* more may be buffered: the next turn looks */
    }
    if (r < 0) {
        channel_fail(ch, r);
        return -1;
    }
    return 0;
}

/*
 * One turn of reading: what is already buffered first, then up to bytes more from the socket,
 * handing at most msgs messages to the owner. Each message may cost the owner real work (a
 * metrics snapshot to merge, a page to render), so a worker that writes faster than the master
 * handles must not keep the loop here: when the message budget runs out with lines still
 * buffered, the rest waits for the resume timer, which fires on the next loop iteration after
 * every other ready watcher (control clients, signals, the admin port) had its turn.
 */
static void channel_process(struct channel *ch, size_t bytes, unsigned msgs)
{
    int left = channel_dispatch(ch, &msgs);
    while (left == 0 && bytes > 0) {
        size_t room;
        char *space = wire_lines_space(&ch->in, &room);
        if (!space) {
            channel_fail(ch, -EMSGSIZE);
            return;
        }
        if (room > bytes) {
            room = bytes;
        }
        ssize_t n = recv(ch->fd, space, room, MSG_DONTWAIT);
        if (n == 0) {
            channel_fail(ch, 0);
            return;
        }
        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            }
            channel_fail(ch, -errno);
            return;
        }
        wire_lines_commit(&ch->in, (size_t)n);
        bytes -= (size_t)n;
        left = channel_dispatch(ch, &msgs);
    }
    if (left < 0) {
        return;
    }
    if (left > 0 && !ev_is_active(&ch->resume_w)) {
        ev_timer_set(&ch->resume_w, 0., 0.);
        ev_timer_start(ch->loop, &ch->resume_w);
    }
}

static void channel_on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    struct channel *ch = w->data;
    if (ev_is_active(&ch->resume_w)) {
        return; /* lines are waiting for their turn; reading more would only pile them up */
    }
    channel_process(ch, CHANNEL_READ_BUDGET, CHANNEL_MSG_BUDGET);
}

static void channel_on_resume(struct ev_loop *loop, ev_timer *t, int revents)
{
    channel_process(t->data, CHANNEL_READ_BUDGET, CHANNEL_MSG_BUDGET);
}

void channel_drain(struct channel *ch)
{
    if (ch->fd != -1) {
        /* The worker is gone: no more turns to come. Its last messages (its final metrics
         * snapshot above all) are taken now, bounded in bytes as any turn. */
        ev_timer_stop(ch->loop, &ch->resume_w);
        channel_process(ch, CHANNEL_READ_BUDGET, UINT_MAX);
    }
    channel_close(ch);
}

void channel_open(struct channel *ch, struct ev_loop *loop, int fd, channel_msg_fn on_msg,
                  channel_close_fn on_close, void *data)
{
    *ch = (struct channel){
        .loop = loop, .fd = fd, .on_msg = on_msg, .on_close = on_close, .data = data};
    wire_lines_init(&ch->in, WIRE_LINE_MAX);
    ev_io_init(&ch->read_w, channel_on_readable, fd, EV_READ);
    ev_io_init(&ch->write_w, channel_on_writable, fd, EV_WRITE);
    ev_init(&ch->resume_w, channel_on_resume);
    ch->read_w.data = ch;
    ch->write_w.data = ch;
    ch->resume_w.data = ch;
    ev_io_start(loop, &ch->read_w);
}

int channel_send(struct channel *ch, const struct wire_msg *msg)
{
    if (ch->fd == -1) {
        return -ENOTCONN;
    }
    size_t len;
    char *line = wire_msg_format(msg, &len);
    if (!line) {
        return -ENOMEM;
    }
    int r = bytebuf_append(&ch->out, line, len, CHANNEL_OUT_LIMIT);
    if (r < 0) {
        goto out;
    }
    if (!ev_is_active(&ch->write_w)) {
        r = channel_flush(ch);
        if (r < 0) {
            /* Report the broken channel from the loop, not from inside the caller's call. */
            ev_feed_event(ch->loop, &ch->write_w, EV_WRITE);
            r = 0;
        }
    }
out:
    free(line);
    return r;
}

int channel_adopt(struct channel *ch, struct ev_loop *loop, int fd, const char *in, size_t in_len,
                  const char *out, size_t out_len, channel_msg_fn on_msg,
                  channel_close_fn on_close, void *data)
{
    channel_open(ch, loop, fd, on_msg, on_close, data);
    while (in_len > 0) {
        size_t room;
        char *space = wire_lines_space(&ch->in, &room);
        if (!space) {
            return -EMSGSIZE;
        }
        size_t n = room < in_len ? room : in_len;
        memcpy(space, in, n);
        wire_lines_commit(&ch->in, n);
        in += n;
        in_len -= n;
    }
    if (out_len > 0) {
        int r = bytebuf_append(&ch->out, out, out_len, CHANNEL_OUT_LIMIT);
        if (r < 0) {
            return r;
        }
        ev_io_start(loop, &ch->write_w);
    }
    /* Lines that were read but not yet taken get their turn from the loop. */
    ev_timer_set(&ch->resume_w, 0., 0.);
    ev_timer_start(loop, &ch->resume_w);
    return 0;
}

void channel_unread(const struct channel *ch, const char **ret_in, size_t *ret_in_len,
                    const char **ret_out, size_t *ret_out_len)
{
    *ret_in = ch->in.buf ? ch->in.buf + ch->in.start : "";
    *ret_in_len = ch->in.buf ? ch->in.len - ch->in.start : 0;
    *ret_out = bytebuf_pending(&ch->out) ? bytebuf_head(&ch->out) : "";
    *ret_out_len = bytebuf_pending(&ch->out);
}
