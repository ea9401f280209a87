/*
 * orphans: the leftovers of workers. See orphans.h.
 */
#include "orphans.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/*
 * After the last worker has gone, descendants that left their worker's process group may still
 * be ours (we are their subreaper). None may outlive the master: they get SIGKILL, and as the
 * master exits right after, whoever inherits them next reaps them.
 */
static void orphans_kill_one(pid_t pid)
{
    log_warn("killing leftover process %d (a descendant of a worker)", (int)pid);
    (void)kill(pid, SIGKILL);
}

/* Our children by scanning /proc, for kernels built without /proc/PID/task/TID/children. */
static void orphans_kill_by_scan(void)
{
    DIR *d = opendir("/proc");
    if (!d) {
        return;
    }
    pid_t self = getpid();
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0) {
            continue;
        }
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd == -1) {
            continue;
        }
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) {
            continue;
        }
        buf[n] = '\0';
        /* "pid (comm) state ppid ...": comm may hold anything, so parse after the last ')'. */
        char *rp = strrchr(buf, ')');
        char state;
        int ppid;
        if (rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == self) {
            orphans_kill_one((pid_t)pid);
        }
    }
    closedir(d);
}

void orphans_kill(void)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)getpid());
    FILE *f = fopen(path, "re");
    if (!f) {
        orphans_kill_by_scan();
        return;
    }
    char line[4096];
    if (fgets(line, sizeof line, f)) {
        char *p = line;
        for (;;) {
            char *end;
            long pid = strtol(p, &end, 10);
            if (end == p) {
                break;
            }
            if (pid > 0) {
                orphans_kill_one((pid_t)pid);
            }
            p = end;
        }
    }
    fclose(f);
}
