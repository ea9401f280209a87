/*
 * Unit tests of spawn, the fork/exec sequence (SPEC section 4), on real processes: the error
 * pipe the master keeps is non-blocking and close-on-exec from the start, EOF on it means the
 * exec succeeded, and a failed step arrives as (step, errno).
 *
 * The test is linked with -Wl,--wrap=fcntl: every fcntl of spawn.c goes through
 * __wrap_fcntl below, which can make F_SETFL fail, so that the error pipe is shown not to
 * depend on a flag change that can fail (had it been left blocking, a read of it would stop the
 * master's loop).
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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h> /* after the four above, which it needs */

#include "spawn.h"

int __real_fcntl(int fd, int cmd, ...);
int __wrap_fcntl(int fd, int cmd, ...);

static volatile int fail_setfl;

/* Async-signal-safe: the child calls it between fork and exec. */
int __wrap_fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *); /* as glibc's own fcntl reads its optional argument */
    va_end(ap);
    if (fail_setfl && cmd == F_SETFL) {
        errno = EINVAL;
        return -1;
    }
    return __real_fcntl(fd, cmd, arg);
}

static char *const no_env[] = {NULL};

/* Starts path with no fds, waits for it, and returns what its error pipe said: 0 for EOF
 * (exec succeeded), else the bytes read into *e. */
static ssize_t run(const char *path, const char *cwd, struct spawn_error *e, int *ret_flags,
                   int *ret_fd_flags, int *ret_status)
{
    char *argv[] = {(char *)path, NULL};
    struct spawn_plan plan = {.path = path, .argv = argv, .envp = no_env, .cwd = cwd};
    pid_t pid = 0;
    int errfd = -1;
    assert_int_equal(spawn_start(&plan, &pid, &errfd), 0);
    assert_true(pid > 0);
    assert_true(errfd > STDERR_FILENO);
    *ret_flags = __real_fcntl(errfd, F_GETFL);
    *ret_fd_flags = __real_fcntl(errfd, F_GETFD);
    assert_int_equal(waitpid(pid, ret_status, 0), pid);
    ssize_t n = read(errfd, e, sizeof *e);
    close(errfd);
    return n;
}

static void test_exec_success_is_eof(void **state)
{
    (void)state;
    struct spawn_error e;
    int flags, fd_flags, status;
    assert_int_equal(run("/bin/true", NULL, &e, &flags, &fd_flags, &status), 0);
    assert_true(flags & O_NONBLOCK);
    assert_true(fd_flags & FD_CLOEXEC);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_failed_steps_are_reported(void **state)
{
    (void)state;
    struct spawn_error e;
    int flags, fd_flags, status;
    assert_int_equal(run("/nonexistent/drover-test", NULL, &e, &flags, &fd_flags, &status),
                     (ssize_t)sizeof e);
    assert_int_equal(e.step, SPAWN_STEP_EXEC);
    assert_int_equal(e.err, ENOENT);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 127);

    assert_int_equal(run("/bin/true", "/nonexistent/dir", &e, &flags, &fd_flags, &status),
                     (ssize_t)sizeof e);
    assert_int_equal(e.step, SPAWN_STEP_CHDIR);
    assert_int_equal(e.err, ENOENT);
}

static void test_error_pipe_needs_no_flag_change(void **state)
{
    (void)state;
    struct spawn_error e;
    int flags, fd_flags, status;
    fail_setfl = 1;
    ssize_t n = run("/bin/true", NULL, &e, &flags, &fd_flags, &status);
    fail_setfl = 0;
    assert_int_equal(n, 0);
    assert_true(flags & O_NONBLOCK);
    assert_true(fd_flags & FD_CLOEXEC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exec_success_is_eof),
        cmocka_unit_test(test_failed_steps_are_reported),
        cmocka_unit_test(test_error_pipe_needs_no_flag_change),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
