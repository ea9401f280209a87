/*
 * procstat: resident memory and CPU time of a worker, from /proc/PID/stat (SPEC section 5).
 *
 * The stat line is "PID (COMM) STATE PPID ...", where COMM is whatever the program named itself
 * and may hold spaces and parentheses; a worker can even call itself ") (" on purpose. The only
 * safe anchor is the LAST ')' in the line: everything after it is kernel-formatted numbers.
 * Parsing walks the bytes it was given and never needs a terminating NUL, so the reader can hand
 * over a raw pread() buffer. Reading keeps one descriptor per worker and rereads it at offset 0,
 * which costs one syscall per sample and no allocation.
 */
#include "procstat.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Field numbers as proc(5) counts them, from 1 = pid. */
#define FIELD_FIRST_AFTER_COMM 3
#define FIELD_UTIME 14
#define FIELD_STIME 15
#define FIELD_STARTTIME 22
#define FIELD_RSS 24

#define NS_PER_SEC 1000000000ULL

/* Parses the unsigned decimal token [s, end); false if empty, not digits or over 64 bits. */
static bool token_to_u64(const char *s, const char *end, uint64_t *ret)
{
    uint64_t v = 0;

    if (s == end) {
        return false;
    }
    for (; s < end; s++) {
        if (*s < '0' || *s > '9') {
            return false;
        }
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    *ret = v;
    return true;
}

int procstat_parse(const char *buf, size_t len, uint64_t page_size, uint64_t ticks_per_sec,
                   struct procstat *ret)
{
    uint64_t utime = 0, stime = 0, starttime = 0, rss = 0;
    unsigned found = 0;

    if (!buf || page_size == 0 || ticks_per_sec == 0) {
        return -EINVAL;
    }
    const char *close = memrchr(buf, ')', len);
    if (!close) {
        return -EINVAL;
    }

    const char *p = close + 1;
    const char *end = buf + len;
    for (unsigned field = FIELD_FIRST_AFTER_COMM; field <= FIELD_RSS; field++) {
        while (p < end && *p == ' ') {
            p++;
        }
        const char *tok = p;
        while (p < end && *p != ' ' && *p != '\n' && *p != '\0') {
            p++;
        }
        if (tok == p) {
            return -EINVAL; /* the line ended early */
        }
        uint64_t *dst = field == FIELD_UTIME       ? &utime
                        : field == FIELD_STIME     ? &stime
                        : field == FIELD_STARTTIME ? &starttime
                        : field == FIELD_RSS       ? &rss
                                                   : NULL;
        if (dst) {
            if (!token_to_u64(tok, p, dst)) {
                return -EINVAL;
            }
            found++;
        }
    }
    if (found != 4) {
        return -EINVAL;
    }

    /*
     * Split the conversion so that no product overflows; the checks only matter for input no
     * kernel writes, which is what the fuzzer feeds.
     */
    if (utime > UINT64_MAX - stime || ticks_per_sec > NS_PER_SEC) {
        return -EINVAL;
    }
    uint64_t ticks = utime + stime;
    if (ticks / ticks_per_sec > UINT64_MAX / NS_PER_SEC - 1) {
        return -EINVAL;
    }
    uint64_t cpu_ns =
        ticks / ticks_per_sec * NS_PER_SEC + ticks % ticks_per_sec * NS_PER_SEC / ticks_per_sec;
    if (rss > UINT64_MAX / page_size) {
        return -EINVAL;
    }
    *ret = (struct procstat){
        .rss_bytes = rss * page_size,
        .cpu_ns = cpu_ns,
        .start_ticks = starttime,
    };
    return 0;
}

int procstat_open(pid_t pid)
{
    char path[32];

    if (pid <= 0) {
        return -EINVAL;
    }
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd == -1) {
        /* No such entry means no such process; say so the way procstat_read() will. */
        return errno == ENOENT ? -ESRCH : -errno;
    }
    return fd;
}

int procstat_read(int fd, struct procstat *ret)
{
    /* 52 fields of at most 20 digits plus a 64-byte comm stay well under this. */
    char buf[2048];
    struct procstat st;

    ssize_t n = pread(fd, buf, sizeof buf, 0);
    if (n == -1) {
        return -errno;
    }
    if (n == 0) {
        /* The task is gone and its entry emptied: the same answer as ESRCH. */
        return -ESRCH;
    }
    long page = sysconf(_SC_PAGESIZE);
    long tck = sysconf(_SC_CLK_TCK);
    if (page <= 0 || tck <= 0) {
        return -EINVAL;
    }
    int r = procstat_parse(buf, (size_t)n, (uint64_t)page, (uint64_t)tck, &st);
    if (r < 0) {
        return r;
    }
    *ret = st;
    return 0;
}
