/*
 * handover: see handover.h.
 *
 * The wire: DROVER_HANDOVER=FD names a memfd holding "drover-handover VERSION LENGTH SUM\n"
 * and then LENGTH bytes of JSON (SUM: their htab_hash(), in hex). DROVER_HANDOVER_EXE=FD is the
 * previous image's binary, for a give-back; DROVER_HANDOVER_FAILED=WHY marks a state given back.
 * The document's "fds" lists every descriptor it names, so whoever reads it can make them
 * inheritable again for a give-back, or close those nobody took.
 */
#include "handover.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "htab.h"
#include "version.h"

#define HANDOVER_ENV "DROVER_HANDOVER"
#define HANDOVER_ENV_EXE "DROVER_HANDOVER_EXE"
#define HANDOVER_ENV_FAILED "DROVER_HANDOVER_FAILED"
/* Far above what 1024 workers' state takes; a bound on what a reader allocates. */
#define HANDOVER_MAX_BYTES (256u * 1024u * 1024u)

struct handover {
    json_t *doc;
    json_t *fds;        /* the doc's "fds": every descriptor named */
    int mem_fd;         /* the memfd it came in or went out through, or -1 */
    bool *taken;        /* reading: parallel to fds */
};

static struct {
    char **argv;
    int self_fd;            /* this image's binary, opened at start */
    int prev_fd;            /* the previous image's, when this one came from an upgrade */
    int state_fd;           /* the memfd this one came with */
    char *binary;           /* the default upgrade target */
    char *given_back;       /* DROVER_HANDOVER_FAILED */
    struct handover *incoming;
} handover_self = {.self_fd = -1, .prev_fd = -1, .state_fd = -1};

static void handover_unsetenv(void)
{
    unsetenv(HANDOVER_ENV);
    unsetenv(HANDOVER_ENV_EXE);
    unsetenv(HANDOVER_ENV_FAILED);
}

static int env_fd(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        return -1;
    }
    char *end;
    errno = 0;
    long fd = strtol(v, &end, 10);
    return errno || *end || fd < 0 || fd > INT_MAX ? -1 : (int)fd;
}

int handover_init(char **argv)
{
    handover_self.argv = argv;
    handover_self.state_fd = env_fd(HANDOVER_ENV);
    handover_self.prev_fd = env_fd(HANDOVER_ENV_EXE);
    const char *failed = getenv(HANDOVER_ENV_FAILED);
    if (failed) {
        handover_self.given_back = strdup(failed);
    }
    /* Nothing of it may reach a worker or the next image by accident. */
    handover_unsetenv();
    if (handover_self.prev_fd >= 0) {
        (void)fcntl(handover_self.prev_fd, F_SETFD, FD_CLOEXEC);
    }
    handover_self.self_fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n > 0) {
        path[n] = '\0';
        handover_self.binary = strdup(path);
    }
    return handover_self.self_fd < 0 ? -errno : 0;
}

const char *handover_default_binary(void)
{
    return handover_self.binary;
}

/* ---- writing ---- */

int handover_new(struct handover **ret)
{
    struct handover *h = calloc(1, sizeof *h);
    if (!h) {
        return -ENOMEM;
    }
    h->mem_fd = -1;
    h->doc = json_object();
    h->fds = json_array();
    if (!h->doc || !h->fds || json_object_set(h->doc, "fds", h->fds) < 0) {
        handover_free(h);
        return -ENOMEM;
    }
    *ret = h;
    return 0;
}

json_t *handover_doc(struct handover *h)
{
    return h->doc;
}

json_t *handover_fd(struct handover *h, int fd)
{
    if (fd < 0 || json_array_append_new(h->fds, json_integer(fd)) < 0) {
        return NULL;
    }
    return json_integer(fd);
}

static void handover_set_inherit(const json_t *fds, bool inherit)
{
    size_t i;
    json_t *v;
    json_array_foreach(fds, i, v) {
        (void)fcntl((int)json_integer_value(v), F_SETFD, inherit ? 0 : FD_CLOEXEC);
    }
}

/* Writes the document into a fresh memfd; returns it (close-on-exec) or -errno. */
static int handover_write(json_t *doc)
{
    char *body = json_dumps(doc, JSON_COMPACT);
    if (!body) {
        return -ENOMEM;
    }
    size_t len = strlen(body);
    char head[96];
    int hn = snprintf(head, sizeof head, "drover-handover %u %zu %016" PRIx64 "\n",
                      drover_handover_version, len, htab_hash(body, len));
    int fd = memfd_create("drover-handover", MFD_CLOEXEC);
    int r = fd < 0 ? -errno : 0;
    const char *parts[2] = {head, body};
    size_t sizes[2] = {(size_t)hn, len};
    for (int p = 0; r == 0 && p < 2; p++) {
        for (size_t off = 0; off < sizes[p];) {
            ssize_t n = write(fd, parts[p] + off, sizes[p] - off);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                r = n < 0 ? -errno : -EIO;
                break;
            }
            off += (size_t)n;
        }
    }
    free(body);
    if (r == 0 && lseek(fd, 0, SEEK_SET) < 0) {
        r = -errno;
    }
    if (r < 0) {
        if (fd >= 0) {
            close(fd);
        }
        return r;
    }
    return fd;
}

/* The handover's variables in our environment, for the exec (removed again should it fail). */
static int handover_setenv(int state_fd, int exe_fd, const char *failed)
{
    char num[24];
    snprintf(num, sizeof num, "%d", state_fd);
    if (setenv(HANDOVER_ENV, num, 1) < 0) {
        return -errno;
    }
    snprintf(num, sizeof num, "%d", exe_fd);
    if ((exe_fd >= 0 && setenv(HANDOVER_ENV_EXE, num, 1) < 0) ||
        (failed && setenv(HANDOVER_ENV_FAILED, failed, 1) < 0)) {
        return -errno;
    }
    return 0;
}

static void handover_cloexec_all(void)
{
    if (close_range(3, ~0u, CLOSE_RANGE_CLOEXEC) == 0) {
        return;
    }
    DIR *d = opendir("/proc/self/fd"); /* kernels before 5.11 */
    if (!d) {
        return;
    }
    int self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        int fd = atoi(e->d_name);
        if (fd > 2 && fd != self) {
            (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
        }
    }
    closedir(d);
}

/* The exec itself: state_fd and the named descriptors inheritable, then execve or fexecve. */
static int handover_do_exec(const json_t *fds, int state_fd, const char *path, int exe_fd,
                            int give_exe_fd, const char *failed, bool sweep)
{
    int r = handover_setenv(state_fd, give_exe_fd, failed);
    if (r < 0) {
        handover_unsetenv();
        return r;
    }
    /* Nothing else survives the exec, whatever a library left inheritable (libcurl's wakeup
     * socketpair is one): everything above stderr becomes close-on-exec first. Not when the
     * state could not even be read: what arrived is then exactly what must go back. */
    if (sweep) {
        handover_cloexec_all();
    }
    handover_set_inherit(fds, true);
    (void)fcntl(state_fd, F_SETFD, 0);
    if (give_exe_fd >= 0) {
        (void)fcntl(give_exe_fd, F_SETFD, 0);
    }
    extern char **environ;
    if (path) {
        execve(path, handover_self.argv, environ);
    } else {
        fexecve(exe_fd, handover_self.argv, environ);
    }
    r = -errno;
    handover_set_inherit(fds, false);
    (void)fcntl(state_fd, F_SETFD, FD_CLOEXEC);
    if (give_exe_fd >= 0) {
        (void)fcntl(give_exe_fd, F_SETFD, FD_CLOEXEC);
    }
    handover_unsetenv();
    return r;
}

int handover_exec(struct handover *h, const char *path)
{
    if (handover_self.binary &&
        json_object_set_new(h->doc, "binary", json_string(handover_self.binary)) < 0) {
        return -ENOMEM;
    }
    if (h->mem_fd < 0) {
        h->mem_fd = handover_write(h->doc);
        if (h->mem_fd < 0) {
            return h->mem_fd;
        }
    }
    if (lseek(h->mem_fd, 0, SEEK_SET) < 0) {
        return -errno;
    }
    /* The next image gets our binary's handle, to give the state back to us. */
    return handover_do_exec(h->fds, h->mem_fd, path, handover_self.self_fd,
                            handover_self.self_fd, NULL, true);
}

void handover_free(struct handover *h)
{
    if (!h) {
        return;
    }
    if (h->mem_fd >= 0) {
        close(h->mem_fd);
    }
    json_decref(h->fds);
    json_decref(h->doc);
    free(h->taken);
    free(h);
}

/* ---- reading ---- */

static int handover_read_all(int fd, char **ret, size_t *ret_len)
{
    off_t end = lseek(fd, 0, SEEK_END);
    if (end < 0 || lseek(fd, 0, SEEK_SET) < 0) {
        return -errno;
    }
    if ((size_t)end > HANDOVER_MAX_BYTES) {
        return -EFBIG;
    }
    char *buf = malloc((size_t)end + 1);
    if (!buf) {
        return -ENOMEM;
    }
    size_t off = 0;
    while (off < (size_t)end) {
        ssize_t n = read(fd, buf + off, (size_t)end - off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            free(buf);
            return n < 0 ? -errno : -EIO;
        }
        off += (size_t)n;
    }
    buf[off] = '\0';
    *ret = buf;
    *ret_len = off;
    return 0;
}

int handover_receive(struct handover **ret, char *why, size_t size)
{
    int fd = handover_self.state_fd;
    if (fd < 0) {
        return 0;
    }
    char *buf = NULL;
    size_t len = 0;
    int r = handover_read_all(fd, &buf, &len);
    if (r == 0 && !buf) {
        r = -EIO;
    }
    if (r < 0) {
        snprintf(why, size, "cannot read the handed-over state: %s", strerror(-r));
        return r;
    }
    unsigned version = 0;
    size_t body_len = 0;
    uint64_t sum = 0;
    int used = 0;
    if (sscanf(buf, "drover-handover %u %zu %" SCNx64 "\n%n", &version, &body_len, &sum,
               &used) != 3 || used == 0) {
        snprintf(why, size, "the handed-over state has no drover-handover header");
        free(buf);
        return -EPROTO;
    }
    if (version != drover_handover_version) {
        snprintf(why, size, "state format %u handed over; this drover (%s) reads format %u",
                 version, drover_version, drover_handover_version);
        free(buf);
        return -EPROTONOSUPPORT;
    }
    if (body_len != len - (size_t)used || htab_hash(buf + used, body_len) != sum) {
        snprintf(why, size, "the handed-over state fails its checksum (%zu of %zu bytes)",
                 len - (size_t)used, body_len);
        free(buf);
        return -EBADMSG;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(buf + used, body_len, 0, &jerr);
    free(buf);
    json_t *fds = json_object_get(doc, "fds");
    struct handover *h = doc && json_is_array(fds) ? calloc(1, sizeof *h) : NULL;
    if (h) {
        h->taken = calloc(json_array_size(fds) + 1, sizeof *h->taken);
    }
    if (!h || !h->taken) {
        snprintf(why, size, "the handed-over state does not parse: %s",
                 doc ? "out of memory" : jerr.text);
        free(h);
        json_decref(doc);
        return -EBADMSG;
    }
    h->doc = doc;
    h->fds = json_incref(fds);
    h->mem_fd = -1; /* the static state_fd stays open for a give-back */
    json_t *binary = json_object_get(doc, "binary");
    if (json_is_string(binary)) {
        free(handover_self.binary);
        handover_self.binary = strdup(json_string_value(binary));
    }
    /* Until each is taken, every named descriptor stays away from whatever we start. */
    handover_set_inherit(fds, false);
    handover_self.incoming = h;
    *ret = h;
    return 1;
}

struct handover *handover_incoming(void)
{
    return handover_self.incoming;
}

json_t *handover_get(const struct handover *h, const char *key)
{
    return h ? json_object_get(h->doc, key) : NULL;
}

int handover_take(struct handover *h, const json_t *v)
{
    if (!h || !json_is_integer(v)) {
        return -EBADF;
    }
    json_int_t fd = json_integer_value(v);
    size_t i;
    json_t *e;
    json_array_foreach(h->fds, i, e) {
        if (json_integer_value(e) == fd && !h->taken[i]) {
            h->taken[i] = true;
            return (int)fd;
        }
    }
    return -EBADF;
}

const char *handover_given_back(void)
{
    return handover_self.given_back;
}

int handover_give_back(struct handover *h, const char *why)
{
    if (handover_self.given_back || handover_self.prev_fd < 0 || handover_self.state_fd < 0) {
        return -ENOEXEC;
    }
    json_t *none = json_array();
    int r = handover_do_exec(h ? h->fds : none, handover_self.state_fd, NULL,
                             handover_self.prev_fd, -1, why, h != NULL);
    json_decref(none);
    return r;
}

void handover_finish(struct handover *h)
{
    if (!h) {
        return;
    }
    size_t i;
    json_t *e;
    json_array_foreach(h->fds, i, e) {
        if (!h->taken[i]) {
            close((int)json_integer_value(e));
        }
    }
    if (handover_self.state_fd >= 0) {
        close(handover_self.state_fd);
        handover_self.state_fd = -1;
    }
    if (handover_self.prev_fd >= 0) {
        close(handover_self.prev_fd);
        handover_self.prev_fd = -1;
    }
    if (handover_self.incoming == h) {
        handover_self.incoming = NULL;
    }
    handover_free(h);
}

json_t *handover_bytes(const char *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char *s = malloc(2 * n + 1);
    if (!s) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        s[2 * i] = hex[(unsigned char)p[i] >> 4];
        s[2 * i + 1] = hex[(unsigned char)p[i] & 15];
    }
    json_t *v = json_stringn(s, 2 * n);
    free(s);
    return v;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int handover_bytes_get(const json_t *v, char **ret, size_t *ret_len)
{
    *ret = NULL;
    *ret_len = 0;
    if (!v) {
        return 0;
    }
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (!s || n % 2) {
        return -EPROTO;
    }
    char *out = malloc(n / 2 + 1);
    if (!out) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(out);
            return -EPROTO;
        }
        out[i] = (char)(hi << 4 | lo);
    }
    *ret = out;
    *ret_len = n / 2;
    return 0;
}

char **handover_argv(void)
{
    return handover_self.argv;
}
