/*
 * Unit tests of channel, the master's end of a worker's socketpair (SPEC section 4), on a real
 * socketpair and a private libev loop. The point of these checks: the channel never blocks the
 * master, whatever the fd's own O_NONBLOCK flag says (the flag needs an fcntl that may fail, and
 * any holder of the description may clear it). Each test clears the flag after channel_open, as
 * an fcntl that failed would have left it, and an alarm turns a blocked read or write into a
 * failed test instead of a hang.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h> /* after the four above, which it needs */

#include "channel.h"

struct seen {
    int msgs;
    enum wire_type last;
    int closes;
    int close_err;
};

static void on_msg(struct channel *ch, struct wire_msg *msg, void *data)
{
    struct seen *s = data;
    s->msgs++;
    s->last = msg->type;
}

static void on_close(struct channel *ch, int err, void *data)
{
    struct seen *s = data;
    s->closes++;
    s->close_err = err;
}

struct fixture {
    struct ev_loop *loop;
    int peer;
    struct channel ch;
    struct seen seen;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    int sv[2];
    assert_non_null(f);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(f->loop);
    f->peer = sv[1];
    channel_open(&f->ch, f->loop, sv[0], on_msg, on_close, &f->seen);
    /* As an fcntl(F_SETFL, O_NONBLOCK) that failed would have left it. */
    int flags = fcntl(sv[0], F_GETFL);
    assert_int_not_equal(flags, -1);
    assert_int_equal(fcntl(sv[0], F_SETFL, flags & ~O_NONBLOCK), 0);
    alarm(10); /* a blocked channel ends the test (SIGALRM) rather than hanging it */
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    alarm(0);
    channel_close(&f->ch);
    if (f->peer != -1) {
        close(f->peer);
    }
    ev_loop_destroy(f->loop);
    free(f);
    return 0;
}

static void peer_write(struct fixture *f, const char *s)
{
    assert_int_equal(write(f->peer, s, strlen(s)), (ssize_t)strlen(s));
}

static void test_reading_never_waits_for_more(void **state)
{
    struct fixture *f = *state;
    /* A whole message, then half of one: after taking what is there, the channel goes back to
     * the loop instead of waiting in read() for the rest. */
    peer_write(f, "{\"type\":\"ready\"}\n{\"type\":\"heart");
    ev_run(f->loop, EVRUN_ONCE);
    assert_int_equal(f->seen.msgs, 1);
    assert_int_equal(f->seen.last, WIRE_READY);
    peer_write(f, "beat\"}\n");
    ev_run(f->loop, EVRUN_ONCE);
    assert_int_equal(f->seen.msgs, 2);
    assert_int_equal(f->seen.last, WIRE_HEARTBEAT);
    assert_int_equal(f->seen.closes, 0);
    assert_true(channel_is_open(&f->ch));
}

static void test_draining_takes_what_is_there(void **state)
{
    struct fixture *f = *state;
    peer_write(f, "{\"type\":\"status\",\"text\":\"last words\"}\n");
    channel_drain(&f->ch); /* the worker may still hold its end open */
    assert_int_equal(f->seen.msgs, 1);
    assert_int_equal(f->seen.last, WIRE_STATUS);
    assert_false(channel_is_open(&f->ch));
}

static void test_sending_never_waits_for_the_reader(void **state)
{
    struct fixture *f = *state;
    /* The peer reads nothing: the socket buffer fills, the rest is queued up to the limit, and
     * past it a message is refused; no send() waits for the peer. */
    size_t len = 256 * 1024;
    char *body = malloc(len + 1);
    assert_non_null(body);
    memset(body, 'x', len);
    body[len] = '\0';
    struct wire_msg msg = {.type = WIRE_METRICS_PAGE, .format = "text", .body = body};
    int r = 0;
    size_t sent = 0;
    while ((r = channel_send(&f->ch, &msg)) == 0) {
        sent += len;
        assert_true(sent <= 2 * (size_t)CHANNEL_OUT_LIMIT);
    }
    assert_int_equal(r, -ENOBUFS);
    assert_true(sent >= (size_t)CHANNEL_OUT_LIMIT - len);
    ev_run(f->loop, EVRUN_NOWAIT); /* the write watcher finds the peer still not reading */
    assert_int_equal(f->seen.closes, 0);
    free(body);
}

static void test_peer_gone_is_reported_from_the_loop(void **state)
{
    struct fixture *f = *state;
    close(f->peer);
    f->peer = -1;
    ev_run(f->loop, EVRUN_ONCE);
    assert_int_equal(f->seen.closes, 1);
    assert_int_equal(f->seen.close_err, 0);
    assert_false(channel_is_open(&f->ch));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reading_never_waits_for_more, setup, teardown),
        cmocka_unit_test_setup_teardown(test_draining_takes_what_is_there, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sending_never_waits_for_the_reader, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_gone_is_reported_from_the_loop, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
