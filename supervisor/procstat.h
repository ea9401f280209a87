/*
 * procstat: what /proc tells about a worker: resident memory and CPU time (SPEC section 5,
 * "Memory"). Parsing is pure; reading is one pread() of /proc/PID/stat into a stack buffer
 * through a descriptor kept open for the worker's life, so a sample costs one syscall and no
 * allocation however often it is taken.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct procstat {
    uint64_t rss_bytes;
    uint64_t cpu_ns;        /* utime + stime */
    uint64_t start_ticks;   /* since boot, in clock ticks: tells a recycled pid apart */
};

/*
 * Parses the text of /proc/PID/stat (len bytes). page_size and ticks_per_sec convert units.
 * The command name field may hold spaces and parentheses; parsing starts after the last ')'.
 * Returns 0 or -EINVAL.
 */
int procstat_parse(const char *buf, size_t len, uint64_t page_size, uint64_t ticks_per_sec,
                   struct procstat *ret);

/* Opens /proc/PID/stat close-on-exec; returns the fd or -errno. */
int procstat_open(pid_t pid);

/* Reads and parses through fd from procstat_open. Returns 0 or -errno (-ESRCH once gone). */
int procstat_read(int fd, struct procstat *ret);
