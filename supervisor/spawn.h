/*
 * spawn: fork and exec one worker from a plan prepared entirely in the parent.
 *
 * Everything that allocates, formats or may fail for an ordinary reason (argv, envp, the fd
 * plan, the executable's path, the user to become) is done before fork. Between fork and exec
 * the child only makes async-signal-safe calls: reset signal dispositions and the mask, start a
 * new session (the worker leads its own process group, so a signal to the group reaches its
 * children too), place the fds, close the rest, chdir, drop privileges, execve. If any of these
 * fails, the child writes which step and errno to a close-on-exec pipe and exits 127; the parent
 * learns the outcome by reading that pipe on its loop (EOF = exec succeeded), never by waiting.
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

/*
 * Workers get at most this many fds (stdio + listen sockets + channel). The config's limit on
 * listen addresses (CONFIG_LISTEN_MAX) is this minus those four; worker.c asserts it.
 */
#define SPAWN_FDS_MAX 64

/* The step that failed in the child, as reported through the error pipe. */
enum spawn_step {
    SPAWN_STEP_SETSID,
    SPAWN_STEP_FDS,
    SPAWN_STEP_CHDIR,
    SPAWN_STEP_SETGROUPS,
    SPAWN_STEP_SETGID,
    SPAWN_STEP_SETUID,
    SPAWN_STEP_EXEC,
};

struct spawn_error {
    int step;   /* enum spawn_step */
    int err;    /* errno */
};

struct spawn_plan {
    const char *path;       /* the executable; relative paths resolve against cwd */
    char *const *argv;
    char *const *envp;
    /*
     * LISTEN_PID must be the worker's own pid, known only after fork. When not NULL, this points
     * at the digits part of a "LISTEN_PID=" entry of envp with room for 20 digits and a NUL; the
     * child writes its pid there (formatting an integer is async-signal-safe).
     */
    char *listen_pid_digits;
    char *watchdog_pid_digits;  /* the same for WATCHDOG_PID (watchdog = T), or NULL */
    int fds[SPAWN_FDS_MAX]; /* fds[i] becomes fd i in the worker */
    int n_fds;
    const char *cwd;        /* NULL = inherit */
    bool set_ids;
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    int n_groups;
    /*
     * surge_nice (SPEC section 3): > 0 boots the worker at a lower CPU priority, restored by
     * spawn_priority_restore() once it is ready. The child writes it to its new autogroup
     * (/proc/self/autogroup: the scheduler weighs sessions against each other when autogroup
     * is on, and setsid gave the worker a session of its own) and, when boot_nice_thread, adds
     * it to its own nice value too (what counts when autogroup is off, or inside a cgroup).
     */
    int boot_nice;
    bool boot_nice_thread;
};

/*
 * Forks and execs. On success stores the child's pid and the read end of the error pipe
 * (non-blocking, close-on-exec; the caller owns it) and returns 0. Returns -E2BIG when the plan
 * holds more than SPAWN_FDS_MAX fds, -errno when fork or pipe creation fails; then there is no
 * child.
 */
int spawn_start(const struct spawn_plan *plan, pid_t *ret_pid, int *ret_errfd);

/*
 * Resolves the executable for argv0 as execvp would, in the parent: a name with a '/' is taken
 * as it is; a bare name is searched in the colon-separated path_env (PATH). Stores a malloc'd
 * path in *ret. Returns 0, -ENOENT when no executable is found, or -ENOMEM.
 */
int spawn_resolve(const char *argv0, const char *path_env, char **ret);

const char *spawn_step_to_string(enum spawn_step step);

/*
 * Whether this process may give a worker its nice value back after boot_nice_thread lowered
 * it: that needs CAP_SYS_NICE, or an RLIMIT_NICE that reaches our own nice value. Without it
 * only the autogroup's nice is lowered (its owner may set it back to 0 without privilege).
 */
bool spawn_can_restore_nice(void);

/*
 * Undoes boot_nice for the worker that leads process group pgid: every thread of the group
 * gets our own nice value back (when thread is true), its autogroup nice 0. Returns 0, or the
 * first -errno; -EAGAIN when the kernel's rate limit on autogroup changes (ten a second without
 * CAP_SYS_ADMIN) refused it: try again later.
 */
int spawn_priority_restore(pid_t pgid, bool thread);
