/*
 * The worker SDK from the worker's side: a socketpair stands in for the master's end of the
 * channel, so every message the SDK sends is read back and decoded with the master's own
 * parser (wire.c), and every message the master could send is written into it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>

#include <drover/metrics.h>
#include <drover/worker.h>

#include "wire.h"

static const char *const sdk_vars[] = {
    "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "DROVER_CHANNEL_FD",
    "DROVER_APP", "DROVER_WORKER_ID", "DROVER_GENERATION", "DROVER_STATE_FILE",
    "WATCHDOG_USEC", "WATCHDOG_PID",
};

static void env_clear(void)
{
    for (size_t i = 0; i < sizeof sdk_vars / sizeof sdk_vars[0]; i++) {
        unsetenv(sdk_vars[i]);
    }
}

/* The master's end of a channel, and a worker handle initialised on the other end. */
struct fixture {
    int master;
    struct drover_worker *w;
};

static int setup_channel(void **state)
{
    int sv[2];
    char fd[16];
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    env_clear();
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    snprintf(fd, sizeof fd, "%d", sv[1]);
    setenv("DROVER_CHANNEL_FD", fd, 1);
    setenv("DROVER_APP", "web", 1);
    setenv("DROVER_WORKER_ID", "2", 1);
    setenv("DROVER_GENERATION", "7", 1);
    assert_int_equal(drover_init(&f->w), 0);
    f->master = sv[0];
    *state = f;
    return 0;
}

static int teardown_channel(void **state)
{
    struct fixture *f = *state;
    drover_close(f->w);
    if (f->master >= 0) {
        close(f->master);
    }
    free(f);
    env_clear();
    return 0;
}

/* Reads one line the worker sent (waiting up to a second) and parses it as the master does. */
static void master_read(struct fixture *f, struct wire_msg *msg)
{
    char line[4096];
    size_t len = 0;
    for (;;) {
        char c;
        struct pollfd p = {f->master, POLLIN, 0};
        assert_int_equal(poll(&p, 1, 1000), 1);
        assert_int_equal(read(f->master, &c, 1), 1); /* byte by byte: never past one line */
        if (c == '\n') {
            break;
        }
        assert_true(len < sizeof line);
        line[len++] = c;
    }
    assert_int_equal(wire_msg_parse(line, len, msg), 0);
}

static void master_write(struct fixture *f, const char *line)
{
    assert_int_equal(write(f->master, line, strlen(line)), (ssize_t)strlen(line));
}

static void test_outside_drover_everything_is_a_no_op(void **state)
{
    (void)state;
    struct drover_worker *w = NULL;
    env_clear();
    assert_int_equal(drover_init(&w), 0);
    assert_false(drover_is_supervised(w));
    assert_int_equal(drover_listen_count(w), 0);
    assert_int_equal(drover_listen_fd(w, 0), -1);
    assert_int_equal(drover_fd(w), -1);
    assert_int_equal(drover_worker_id(w), -1);
    assert_null(drover_app(w));
    assert_int_equal(drover_ready(w), 0);
    assert_int_equal(drover_process(w), 0);
    assert_int_equal(drover_state_save(w, "x", 1), -ENOENT);
    drover_close(w);
}

static void test_malformed_environment_is_refused(void **state)
{
    (void)state;
    struct drover_worker *w = NULL;
    env_clear();
    setenv("DROVER_WORKER_ID", "two", 1);
    assert_int_equal(drover_init(&w), -EINVAL);
    assert_null(w);
    env_clear();
    setenv("DROVER_CHANNEL_FD", "999", 1); /* not an open descriptor */
    assert_int_equal(drover_init(&w), -EBADF);
    env_clear();
}

/* WATCHDOG_USEC as sd_watchdog_enabled() reads it: only when WATCHDOG_PID is ours or absent. */
static void test_watchdog_from_the_environment(void **state)
{
    (void)state;
    struct drover_worker *w = NULL;
    char pid[32];
    env_clear();
    assert_int_equal(drover_init(&w), 0);
    assert_int_equal(drover_watchdog_usec(w), 0);
    assert_int_equal(drover_recycle(w, "x"), 0); /* no channel: a no-op */
    drover_close(w);

    snprintf(pid, sizeof pid, "%d", (int)getpid());
    setenv("WATCHDOG_USEC", "400000", 1);
    setenv("WATCHDOG_PID", pid, 1);
    assert_int_equal(drover_init(&w), 0);
    assert_int_equal(drover_watchdog_usec(w), 400000);
    drover_close(w);

    unsetenv("WATCHDOG_PID");
    assert_int_equal(drover_init(&w), 0);
    assert_int_equal(drover_watchdog_usec(w), 400000);
    drover_close(w);

    snprintf(pid, sizeof pid, "%d", (int)getpid() + 1); /* meant for another process */
    setenv("WATCHDOG_PID", pid, 1);
    assert_int_equal(drover_init(&w), 0);
    assert_int_equal(drover_watchdog_usec(w), 0);
    drover_close(w);

    setenv("WATCHDOG_USEC", "soon", 1); /* malformed: no watchdog, never a failed init */
    unsetenv("WATCHDOG_PID");
    assert_int_equal(drover_init(&w), 0);
    assert_int_equal(drover_watchdog_usec(w), 0);
    drover_close(w);
    env_clear();
}

static void test_recycle_reaches_the_master(void **state)
{
    struct fixture *f = *state;
    struct wire_msg msg;
    assert_int_equal(drover_recycle(f->w, "max_requests"), 0);
    master_read(f, &msg);
    assert_int_equal(msg.type, WIRE_RECYCLE);
    assert_string_equal(msg.text, "max_requests");
    wire_msg_done(&msg);
}

static void test_identity_comes_from_the_environment(void **state)
{
    struct fixture *f = *state;
    assert_true(drover_is_supervised(f->w));
    assert_string_equal(drover_app(f->w), "web");
    assert_int_equal(drover_worker_id(f->w), 2);
    assert_int_equal(drover_generation(f->w), 7);
    assert_true(drover_fd(f->w) >= 0);
    /* A child of the worker must not think the channel is its own. */
    assert_null(getenv("DROVER_CHANNEL_FD"));
    int flags = fcntl(drover_fd(f->w), F_GETFD);
    assert_true(flags & FD_CLOEXEC);
}

static void test_ready_and_status_reach_the_master(void **state)
{
    struct fixture *f = *state;
    struct wire_msg msg;
    assert_int_equal(drover_ready(f->w), 0);
    master_read(f, &msg);
    assert_int_equal(msg.type, WIRE_READY);
    wire_msg_done(&msg);

    assert_int_equal(drover_status(f->w, "serving %d clients", 12), 0);
    master_read(f, &msg);
    assert_int_equal(msg.type, WIRE_STATUS);
    assert_string_equal(msg.text, "serving 12 clients");
    wire_msg_done(&msg);
}

struct seen {
    int calls;
    enum drover_phase phase;
    int64_t timeout_ms;
};

static void on_drain(struct drover_worker *w, enum drover_phase phase, int64_t timeout_ms,
                     void *userdata)
{
    struct seen *s = userdata;
    s->calls++;
    s->phase = phase;
    s->timeout_ms = timeout_ms;
    drover_phase_done(w, phase);
}

static void test_phases_reach_their_callbacks_and_get_answers(void **state)
{
    struct fixture *f = *state;
    struct seen seen = {0};
    struct wire_msg msg;
    assert_int_equal(drover_on_phase(f->w, DROVER_PHASE_DRAIN, on_drain, &seen), 0);
    assert_false(drover_stopping(f->w));

    master_write(f, "{\"type\":\"phase\",\"phase\":\"drain\",\"timeout_ms\":500}\n");
    assert_int_equal(drover_process(f->w), 0);
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.phase, DROVER_PHASE_DRAIN);
    assert_int_equal(seen.timeout_ms, 500);
    assert_true(drover_stopping(f->w));
    master_read(f, &msg);
    assert_int_equal(msg.type, WIRE_PHASE_DONE);
    assert_int_equal(msg.phase, WIRE_PHASE_DRAIN);
    wire_msg_done(&msg);

    /* A phase nobody registered for is acknowledged by the SDK itself; an unknown message
     * type (from a newer master) is skipped. */
    master_write(f, "{\"type\":\"from_the_future\"}\n{\"type\":\"phase\",\"phase\":\"save\"}\n");
    assert_int_equal(drover_process(f->w), 0);
    master_read(f, &msg);
    assert_int_equal(msg.type, WIRE_PHASE_DONE);
    assert_int_equal(msg.phase, WIRE_PHASE_SAVE);
    wire_msg_done(&msg);
    assert_int_equal(seen.calls, 1);
}

static void test_master_gone_is_epipe(void **state)
{
    struct fixture *f = *state;
    close(f->master);
    f->master = -1;
    assert_int_equal(drover_process(f->w), -EPIPE);
    assert_int_equal(drover_process(f->w), -EPIPE); /* and stays so */
}

static void test_metrics_snapshot_reaches_the_master(void **state)
{
    struct fixture *f = *state;
    struct drover_metrics *m = NULL;
    struct drover_counter *c = NULL;
    struct wire_msg msg;
    assert_int_equal(drover_metrics_new(&m), 0);
    assert_int_equal(drover_counter_new(m, &c, "jobs_total", "Jobs done.", "queue", "fast",
                                        (const char *)NULL),
                     0);
    drover_counter_add(c, 3);
    drover_counter_inc(c);
    assert_int_equal(drover_metrics_attach(m, f->w), 0);

    /* The master asks; the registry answers with a snapshot in the channel's format. */
    master_write(f, "{\"type\":\"collect\"}\n");
    assert_int_equal(drover_process(f->w), 0);
    master_read(f, &msg);
    assert_int_equal(msg.type, WIRE_METRICS);
    assert_non_null(msg.families);
    json_t *fam = json_array_get(msg.families, 0);
    assert_string_equal(json_string_value(json_object_get(fam, "name")), "jobs_total");
    assert_string_equal(json_string_value(json_object_get(fam, "type")), "counter");
    json_t *sample = json_array_get(json_object_get(fam, "samples"), 0);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(sample, "labels"), "queue")), "fast");
    assert_true(json_number_value(json_object_get(sample, "value")) == 4.0);
    wire_msg_done(&msg);

    /* Reserved names are refused at the source. */
    struct drover_counter *bad = NULL;
    assert_int_equal(drover_counter_new(m, &bad, "drover_jobs_total", "no", (const char *)NULL),
                     -EINVAL);
    drover_metrics_free(m);
}

static void test_state_round_trip_and_stale_temporaries(void **state)
{
    (void)state;
    char dir[] = "/tmp/drover-test-sdk-XXXXXX";
    char path[256], stale[256], fresh[256];
    struct drover_worker *w = NULL;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/web.0.state", dir);
    snprintf(stale, sizeof stale, "%s/.web.0.state.Ab12Cd", dir);
    snprintf(fresh, sizeof fresh, "%s/.web.0.state.Ef34Gh", dir);
    for (const char *p = stale; p; p = p == stale ? fresh : NULL) {
        FILE *t = fopen(p, "w");
        assert_non_null(t);
        fputs("partial", t);
        fclose(t);
    }
    struct utimbuf old = {time(NULL) - 3600, time(NULL) - 3600};
    assert_int_equal(utime(stale, &old), 0);

    env_clear();
    setenv("DROVER_STATE_FILE", path, 1);
    assert_int_equal(drover_init(&w), 0);
    void *buf = NULL;
    size_t len = 0;
    assert_int_equal(drover_state_load(w, &buf, &len), -ENOENT); /* nothing saved yet */
    assert_int_equal(drover_state_save(w, "count=41", 8), 0);
    assert_int_equal(drover_state_save(w, "count=42", 8), 0);
    assert_int_equal(drover_state_load(w, &buf, &len), 0);
    assert_int_equal(len, 8);
    assert_string_equal((char *)buf, "count=42"); /* NUL-terminated for text state */
    drover_free(buf);

    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(stale, &st), -1); /* swept: an hour without a writer */
    assert_int_equal(stat(fresh, &st), 0);  /* kept: a save may still be writing it */
    drover_close(w);
    env_clear();
    unlink(fresh);
    unlink(path);
    assert_int_equal(rmdir(dir), 0); /* nothing else was left behind */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outside_drover_everything_is_a_no_op),
        cmocka_unit_test(test_malformed_environment_is_refused),
        cmocka_unit_test(test_watchdog_from_the_environment),
        cmocka_unit_test_setup_teardown(test_identity_comes_from_the_environment, setup_channel,
                                        teardown_channel),
        cmocka_unit_test_setup_teardown(test_recycle_reaches_the_master, setup_channel,
                                        teardown_channel),
        cmocka_unit_test_setup_teardown(test_ready_and_status_reach_the_master, setup_channel,
                                        teardown_channel),
        cmocka_unit_test_setup_teardown(test_phases_reach_their_callbacks_and_get_answers,
                                        setup_channel, teardown_channel),
        cmocka_unit_test_setup_teardown(test_master_gone_is_epipe, setup_channel,
                                        teardown_channel),
        cmocka_unit_test_setup_teardown(test_metrics_snapshot_reaches_the_master, setup_channel,
                                        teardown_channel),
        cmocka_unit_test(test_state_round_trip_and_stale_temporaries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
