/*
 * spawn: the fork/exec sequence. See spawn.h for the rules the child follows.
 */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <linux/close_range.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *spawn_step_to_string(enum spawn_step step)
{
    switch (step) {
    case SPAWN_STEP_SETSID:
        return "setsid";
    case SPAWN_STEP_FDS:
        return "dup2";
    case SPAWN_STEP_CHDIR:
        return "chdir";
    case SPAWN_STEP_SETGROUPS:
        return "setgroups";
    case SPAWN_STEP_SETGID:
        return "setgid";
    case SPAWN_STEP_SETUID:
        return "setuid";
    case SPAWN_STEP_EXEC:
        return "execve";
    }
    return "spawn";
}

int spawn_resolve(const char *argv0, const char *path_env, char **ret)
{
    if (strchr(argv0, '/')) {
        char *copy = strdup(argv0);
        if (!copy) {
            return -ENOMEM;
        }
        *ret = copy;
        return 0;
    }
    if (!path_env || !*path_env) {
        path_env = "/usr/local/bin:/usr/bin:/bin";
    }
    size_t name_len = strlen(argv0);
    const char *p = path_env;
    while (*p) {
        const char *end = strchrnul(p, ':');
        size_t dir_len = (size_t)(end - p);
        char *cand = malloc(dir_len + name_len + 3);
        if (!cand) {
            return -ENOMEM;
        }
        /* An empty PATH element means the current directory, as for execvp. */
        if (dir_len == 0) {
            memcpy(cand, ".", 1);
            dir_len = 1;
        } else {
            memcpy(cand, p, dir_len);
        }
        cand[dir_len] = '/';
        memcpy(cand + dir_len + 1, argv0, name_len + 1);
        if (access(cand, X_OK) == 0) {
            *ret = cand;
            return 0;
        }
        free(cand);
        p = *end ? end + 1 : end;
    }
    return -ENOENT;
}

/* Async-signal-safe: reports the failed step to the parent and ends the child. */
static _Noreturn void spawn_child_fail(int errfd, enum spawn_step step)
{
    struct spawn_error e = {.step = step, .err = errno};
    ssize_t n;
    do {
        n = write(errfd, &e, sizeof e);
    } while (n == -1 && errno == EINTR);
    _exit(127);
}

/* Async-signal-safe decimal formatting of a pid. */
static void spawn_format_pid(char *out, pid_t pid)
{
    char tmp[24];
    int n = 0;
    unsigned long v = (unsigned long)pid;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    for (int i = 0; i < n; i++) {
        out[i] = tmp[n - 1 - i];
    }
    out[n] = '\0';
}

/* In the child, async-signal-safe: boots the worker at a lower CPU priority (spawn.h). Best
 * effort: a kernel without autogroup has no such file, and a nice value is a wish anyway. */
static void spawn_child_lower_priority(const struct spawn_plan *p)
{
    if (p->boot_nice_thread) {
        errno = 0;
        int now = getpriority(PRIO_PROCESS, 0);
        if (errno == 0) {
            (void)setpriority(PRIO_PROCESS, 0, now + p->boot_nice); /* the kernel caps it at 19 */
        }
    }
    int fd = open("/proc/self/autogroup", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        char digits[2];
        size_t n = 0;
        int v = p->boot_nice > 19 ? 19 : p->boot_nice;
        if (v >= 10) {
            digits[n++] = (char)('0' + v / 10);
        }
        digits[n++] = (char)('0' + v % 10);
        ssize_t wrote = write(fd, digits, n);
        (void)wrote;
        close(fd);
    }
}

bool spawn_can_restore_nice(void)
{
    struct __user_cap_header_struct head = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    if (syscall(SYS_capget, &head, data) == 0 &&
        (data[CAP_SYS_NICE / 32].effective & (1U << (CAP_SYS_NICE % 32)))) {
        return true;
    }
    /* RLIMIT_NICE r allows nice values down to 20 - r. */
    errno = 0;
    int own = getpriority(PRIO_PROCESS, 0);
    struct rlimit rl;
    return errno == 0 && getrlimit(RLIMIT_NICE, &rl) == 0 &&
           (rl.rlim_cur == RLIM_INFINITY || 20 - own <= (long long)rl.rlim_cur);
}

int spawn_priority_restore(pid_t pgid, bool thread)
{
    int ret = 0;
    if (thread) {
        errno = 0;
        int own = getpriority(PRIO_PROCESS, 0);
        /* PRIO_PGRP reaches every thread of every process in the group: the threads a runtime
         * started while booting inherited the lowered value. */
        if ((own == -1 && errno != 0) || setpriority(PRIO_PGRP, (id_t)pgid, own) == -1) {
            ret = -errno;
        }
    }
    char path[48];
    snprintf(path, sizeof path, "/proc/%d/autogroup", (int)pgid);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd == -1) {
        return ret < 0 || errno == ENOENT ? ret : -errno;
    }
    if (write(fd, "0", 1) == -1 && ret == 0) {
        ret = -errno;
    }
    close(fd);
    return ret;
}

/* Runs in the child, between fork and exec: async-signal-safe calls only. */
static _Noreturn void spawn_child(const struct spawn_plan *p, int errfd, pid_t parent)
{
    /* Handlers installed by the master (libev's) must not run in the child: reset them all
     * while every signal is still blocked, then open the mask. */
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    for (int sig = 1; sig < NSIG; sig++) {
        (void)sigaction(sig, &dfl, NULL);
    }
    sigset_t none;
    sigemptyset(&none);

    if (setsid() == -1) {
        spawn_child_fail(errfd, SPAWN_STEP_SETSID);
    }
    /* After setsid, whose new session brought a new autogroup, and before the privilege drop,
     * so the write needs no permission the worker's user may lack. */
    if (p->boot_nice > 0) {
        spawn_child_lower_priority(p);
    }

    /* Sources may sit where targets go (the master's listen socket may be fd 3 and belong at
     * fd 4). Move every source above the target range first, then place each one; dup2 clears
     * close-on-exec on the placed copy, and the moved copies keep it. */
    int moved[SPAWN_FDS_MAX];
    int n = p->n_fds;
    if (errfd < n) {
        int e = fcntl(errfd, F_DUPFD_CLOEXEC, n);
        if (e == -1) {
            spawn_child_fail(errfd, SPAWN_STEP_FDS);
        }
        errfd = e;
    }
    for (int i = 0; i < n; i++) {
        moved[i] = fcntl(p->fds[i], F_DUPFD_CLOEXEC, n);
        if (moved[i] == -1) {
            spawn_child_fail(errfd, SPAWN_STEP_FDS);
        }
    }
    for (int i = 0; i < n; i++) {
        if (dup2(moved[i], i) == -1) {
            spawn_child_fail(errfd, SPAWN_STEP_FDS);
        }
    }
    /* Every master fd is close-on-exec already; this is the second guard, so that an fd some
     * library opened without O_CLOEXEC still does not reach the worker. CLOEXEC rather than
     * close, so the error pipe stays usable until exec succeeds. */
    (void)close_range((unsigned)n, ~0U, CLOSE_RANGE_CLOEXEC);

    if (p->cwd && chdir(p->cwd) == -1) {
        spawn_child_fail(errfd, SPAWN_STEP_CHDIR);
    }
    if (p->set_ids) {
        if (setgroups((size_t)p->n_groups, p->groups) == -1) {
            spawn_child_fail(errfd, SPAWN_STEP_SETGROUPS);
        }
        if (setgid(p->gid) == -1) {
            spawn_child_fail(errfd, SPAWN_STEP_SETGID);
        }
        if (setuid(p->uid) == -1) {
            spawn_child_fail(errfd, SPAWN_STEP_SETUID);
        }
    }
    /* A worker must not outlive a master that was killed outright (SIGKILL, a crash): the
     * kernel kills it when its parent dies. Set after the privilege drop, which clears it, and
     * checked against a master that died already before this line. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid() != parent) {
        _exit(127);
    }
    if (p->listen_pid_digits) {
        spawn_format_pid(p->listen_pid_digits, getpid());
    }
    if (p->watchdog_pid_digits) {
        spawn_format_pid(p->watchdog_pid_digits, getpid());
    }
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    execve(p->path, p->argv, p->envp);
    spawn_child_fail(errfd, SPAWN_STEP_EXEC);
}

int spawn_start(const struct spawn_plan *plan, pid_t *ret_pid, int *ret_errfd)
{
    int errpipe[2] = {-1, -1};
    if (plan->n_fds < 0 || plan->n_fds > SPAWN_FDS_MAX) {
        return -E2BIG;
    }
    /* Non-blocking from its creation, so no later fcntl can fail to make it so: the master
     * reads it from the loop. The child's end is non-blocking too, which costs nothing: the
     * one record it may write is far smaller than an empty pipe's room. */
    if (pipe2(errpipe, O_CLOEXEC | O_NONBLOCK) == -1) {
        return -errno;
    }
    /* Block every signal across fork: a signal arriving in the child before its handlers are
     * reset would run the master's handler there, writing into the master's wakeup pipe. */
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        close(errpipe[0]);
        spawn_child(plan, errpipe[1], parent);
    }
    int err = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(errpipe[1]);
    if (pid == -1) {
        close(errpipe[0]);
        return -err;
    }
    *ret_pid = pid;
    *ret_errfd = errpipe[0];
    return 0;
}
