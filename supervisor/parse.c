/*
 * parse: the value syntaxes of the config file and the command line (SPEC section 3).
 *
 * Every function here is a pure function of its input string: no I/O, no logging, no locale,
 * no name resolution. That keeps `drover -t` deterministic and lets the fuzzer and the unit
 * tests reach every branch. Numbers are parsed digit by digit with explicit overflow checks
 * rather than through strtoull(), which accepts leading blanks, signs and "0x" prefixes that a
 * config value should not silently mean. Reasons for rejection are static strings written to
 * follow the quoted value, so a caller can say "'10' has no unit; expected e.g. 250ms, 30s, 5m".
 */
#include "parse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DURATION_HINT "expected e.g. 250ms, 30s, 5m"
#define ADDRESS_HINT "expected e.g. 127.0.0.1:8080, [::1]:8080 or unix:/path/to.sock"

static void set_why(const char **ret_why, const char *why)
{
    if (ret_why) {
        *ret_why = why;
    }
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/*
 * Reads the run of decimal digits at s into *ret_value and returns how many there were
 * (0 = none). Returns -ERANGE when the value does not fit in 64 bits.
 */
static int parse_digits(const char *s, uint64_t *ret_value)
{
    uint64_t v = 0;
    int n = 0;

    while (is_digit(s[n])) {
        unsigned d = (unsigned)(s[n] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return -ERANGE;
        }
        v = v * 10 + d;
        n++;
    }
    *ret_value = v;
    return n;
}

int parse_duration_ms(const char *s, uint64_t *ret_ms, const char **ret_why)
{
    static const struct {
        const char *suffix;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 60 * 60 * 1000}};
    uint64_t v;

    if (!s || !*s) {
        set_why(ret_why, "is empty; " DURATION_HINT);
        return -EINVAL;
    }
    if (*s == '-') {
        set_why(ret_why, "is negative; " DURATION_HINT);
        return -EINVAL;
    }
    int n = parse_digits(s, &v);
    if (n == -ERANGE) {
        set_why(ret_why, "is too long; the limit is 365 days");
        return -EINVAL;
    }
    if (n == 0) {
        set_why(ret_why, "is not a duration; " DURATION_HINT);
        return -EINVAL;
    }
    const char *unit = s + n;
    if (!*unit) {
        /* A bare zero is unambiguous; any other bare number is a unit forgotten. */
        if (v != 0) {
            set_why(ret_why, "has no unit; " DURATION_HINT);
            return -EINVAL;
        }
        *ret_ms = 0;
        return 0;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(unit, units[i].suffix) != 0) {
            continue;
        }
        /*
         * The cap keeps every later computation safe: callers add durations to clocks and turn
         * them into nanoseconds, which overflows 64 bits only past some 584 years.
         */
        if (v > PARSE_DURATION_MAX_MS / units[i].ms) {
            set_why(ret_why, "is too long; the limit is 365 days");
            return -EINVAL;
        }
        *ret_ms = v * units[i].ms;
        return 0;
    }
    if (is_digit(*unit) || *unit == '.' || *unit == ',') {
        set_why(ret_why, "is not a whole number of a unit; " DURATION_HINT);
    } else {
        set_why(ret_why, "has an unknown unit; expected ms, s, m or h");
    }
    return -EINVAL;
}

int parse_size(const char *s, uint64_t *ret_bytes, const char **ret_why)
{
    static const char prefixes[] = "KMGT";
    uint64_t v;

    if (!s || !*s) {
        set_why(ret_why, "is empty; expected e.g. 512K, 256M, 1G");
        return -EINVAL;
    }
    if (*s == '-') {
        set_why(ret_why, "is negative; expected e.g. 512K, 256M, 1G");
        return -EINVAL;
    }
    int n = parse_digits(s, &v);
    if (n == -ERANGE) {
        set_why(ret_why, "is too large");
        return -EINVAL;
    }
    if (n == 0) {
        set_why(ret_why, "is not a size; expected e.g. 512K, 256M, 1G");
        return -EINVAL;
    }

    /* Accepted suffixes, any case: "", "B", then X, XB, XiB for X in K, M, G, T. */
    const char *u = s + n;
    unsigned shift = 0;
    if (*u) {
        const char *p = strchr(prefixes, u[0] >= 'a' && u[0] <= 'z' ? u[0] - 'a' + 'A' : u[0]);
        if (p && *p) {
            shift = 10 * (unsigned)(p - prefixes + 1);
            u++;
            if (*u == 'i' || *u == 'I') {
                u++;
                if (*u != 'b' && *u != 'B') {
                    u--; /* "Ki" alone is not a unit; fall through to the error */
                }
            }
        }
        if (*u == 'b' || *u == 'B') {
            u++;
        }
        if (*u) {
            set_why(ret_why, "has an unknown unit; expected K, M, G or T (powers of 1024)");
            return -EINVAL;
        }
    }
    if (shift > 0 && v > (UINT64_MAX >> shift)) {
        set_why(ret_why, "is too large");
        return -EINVAL;
    }
    *ret_bytes = v << shift;
    return 0;
}

int parse_bool(const char *s, bool *ret)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};

    if (!s) {
        return -EINVAL;
    }
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *ret = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *ret = false;
            return 0;
        }
    }
    return -EINVAL;
}

int parse_long(const char *s, long min, long max, long *ret, const char **ret_why)
{
    bool negative = false;
    uint64_t v;

    if (!s || !*s) {
        set_why(ret_why, "is empty; expected a whole number");
        return -EINVAL;
    }
    const char *p = s;
    if (*p == '-' || *p == '+') {
        negative = *p == '-';
        p++;
    }
    int n = parse_digits(p, &v);
    if (n == -ERANGE) {
        set_why(ret_why, "is out of range");
        return -EINVAL;
    }
    if (n == 0 || p[n] != '\0') {
        set_why(ret_why, "is not a whole number");
        return -EINVAL;
    }
    /* The magnitude of LONG_MIN is LONG_MAX + 1; anything beyond cannot be in range. */
    if (v > (uint64_t)LONG_MAX + (negative ? 1u : 0u)) {
        set_why(ret_why, "is out of range");
        return -EINVAL;
    }
    long value;
    if (negative) {
        value = v == (uint64_t)LONG_MAX + 1u ? LONG_MIN : -(long)v;
    } else {
        value = (long)v;
    }
    if (value < min || value > max) {
        set_why(ret_why, "is out of range");
        return -EINVAL;
    }
    *ret = value;
    return 0;
}

/* A port: 1 to 5 digits, 0..65535. Port 0 asks the kernel to choose one. */
static int parse_port(const char *s, uint16_t *ret_port, const char **ret_why)
{
    uint64_t v;

    if (!*s) {
        set_why(ret_why, "has no port; " ADDRESS_HINT);
        return -EINVAL;
    }
    int n = parse_digits(s, &v);
    if (n <= 0 || s[n] != '\0') {
        set_why(ret_why, "has an invalid port; expected 0 to 65535");
        return -EINVAL;
    }
    if (v > 65535) {
        set_why(ret_why, "has a port out of range; expected 0 to 65535");
        return -EINVAL;
    }
    *ret_port = (uint16_t)v;
    return 0;
}

static int parse_address_unix(const char *path, struct address *ret, const char **ret_why)
{
    struct address a = {.kind = ADDRESS_UNIX, .family = AF_UNIX};
    struct sockaddr_un *sun = (struct sockaddr_un *)&a.sa;
    size_t len = strlen(path);

    if (len == 0) {
        set_why(ret_why, "has an empty path; expected e.g. unix:/run/app.sock");
        return -EINVAL;
    }
    /* sun_path needs room for the terminating NUL so that every tool can print the name. */
    if (len >= sizeof sun->sun_path) {
        set_why(ret_why, "has a path too long for a Unix socket (at most 107 bytes)");
        return -EINVAL;
    }
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, len + 1);
    a.salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    snprintf(a.text, sizeof a.text, "unix:%s", path);
    *ret = a;
    return 0;
}

int parse_address(const char *s, struct address *ret, const char **ret_why)
{
    struct address a = {.kind = ADDRESS_TCP};
    char host[INET6_ADDRSTRLEN + 1];
    char canon[INET6_ADDRSTRLEN];
    const char *port_text;
    uint16_t port;
    size_t host_len;

    if (!s || !*s) {
        set_why(ret_why, "is empty; " ADDRESS_HINT);
        return -EINVAL;
    }
    if (strncmp(s, "unix:", 5) == 0) {
        return parse_address_unix(s + 5, ret, ret_why);
    }

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close) {
            set_why(ret_why, "has no closing ']'; " ADDRESS_HINT);
            return -EINVAL;
        }
        if (close[1] != ':') {
            set_why(ret_why, "has no port; " ADDRESS_HINT);
            return -EINVAL;
        }
        host_len = (size_t)(close - (s + 1));
        port_text = close + 2;
        if (host_len >= sizeof host) {
            set_why(ret_why, "is not a numeric IPv6 address; " ADDRESS_HINT);
            return -EINVAL;
        }
        memcpy(host, s + 1, host_len);
        host[host_len] = '\0';
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a.sa;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
            set_why(ret_why, "is not a numeric IPv6 address; " ADDRESS_HINT);
            return -EINVAL;
        }
        if (parse_port(port_text, &port, ret_why) < 0) {
            return -EINVAL;
        }
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        a.family = AF_INET6;
        a.salen = sizeof *sin6;
        inet_ntop(AF_INET6, &sin6->sin6_addr, canon, sizeof canon);
        snprintf(a.text, sizeof a.text, "[%s]:%u", canon, (unsigned)port);
        *ret = a;
        return 0;
    }

    const char *colon = strrchr(s, ':');
    if (!colon) {
        set_why(ret_why, "has no port; " ADDRESS_HINT);
        return -EINVAL;
    }
    host_len = (size_t)(colon - s);
    port_text = colon + 1;
    if (host_len == 0 || host_len >= sizeof host) {
        set_why(ret_why, "is not a numeric IPv4 address; " ADDRESS_HINT);
        return -EINVAL;
    }
    memcpy(host, s, host_len);
    host[host_len] = '\0';
    struct sockaddr_in *sin = (struct sockaddr_in *)&a.sa;
    if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
        struct in6_addr probe;
        /* "::1:8080": the port cannot be told from the address without brackets. */
        if (inet_pton(AF_INET6, host, &probe) == 1 || inet_pton(AF_INET6, s, &probe) == 1) {
            set_why(ret_why, "needs brackets around an IPv6 address, e.g. [::1]:8080");
        } else {
            set_why(ret_why,
                    "is not a numeric IPv4 address (names are not resolved); " ADDRESS_HINT);
        }
        return -EINVAL;
    }
    if (parse_port(port_text, &port, ret_why) < 0) {
        return -EINVAL;
    }
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    a.family = AF_INET;
    a.salen = sizeof *sin;
    inet_ntop(AF_INET, &sin->sin_addr, canon, sizeof canon);
    snprintf(a.text, sizeof a.text, "%s:%u", canon, (unsigned)port);
    *ret = a;
    return 0;
}

void parse_argv_free(char **argv)
{
    if (!argv) {
        return;
    }
    for (char **p = argv; *p; p++) {
        free(*p);
    }
    free(argv);
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * The quoting rules are the POSIX shell's, minus every expansion: outside quotes a backslash
 * takes the next character literally (backslash-newline disappears); 'single quotes' take
 * everything literally; inside "double quotes" a backslash escapes only $ ` " \ and newline
 * and is otherwise kept. So a command copied from a shell prompt means the same here.
 *
 * Two passes over the string would avoid the reallocations, but commands are short and this is
 * config time, so the simpler single pass wins: each word is built in a buffer as long as the
 * whole input, which is always enough because unquoting only ever shortens.
 */
int parse_argv(const char *s, char ***ret_argv, const char **ret_why)
{
    char **argv = NULL;
    size_t argc = 0;
    char *word = NULL;
    int r = -EINVAL;

    if (!s) {
        set_why(ret_why, "is empty; expected a command");
        return -EINVAL;
    }
    size_t len = strlen(s);
    word = malloc(len + 1);
    if (!word) {
        r = -ENOMEM;
        goto out;
    }

    const char *p = s;
    for (;;) {
        while (is_blank(*p)) {
            p++;
        }
        if (!*p) {
            break;
        }
        size_t wl = 0;
        while (*p && !is_blank(*p)) {
            if (*p == '\'') {
                const char *end = strchr(p + 1, '\'');
                if (!end) {
                    set_why(ret_why, "has an unterminated ' quote");
                    goto out;
                }
                memcpy(word + wl, p + 1, (size_t)(end - p - 1));
                wl += (size_t)(end - p - 1);
                p = end + 1;
            } else if (*p == '"') {
                p++;
                while (*p && *p != '"') {
                    if (*p == '\\' && p[1] && strchr("$`\"\\\n", p[1])) {
                        if (p[1] != '\n') {
                            word[wl++] = p[1];
                        }
                        p += 2;
                    } else {
                        word[wl++] = *p++;
                    }
                }
                if (!*p) {
                    set_why(ret_why, "has an unterminated \" quote");
                    goto out;
                }
                p++;
            } else if (*p == '\\') {
                if (!p[1]) {
                    set_why(ret_why, "ends with a lone backslash");
                    goto out;
                }
                if (p[1] != '\n') {
                    word[wl++] = p[1];
                }
                p += 2;
            } else {
                word[wl++] = *p++;
            }
        }
        char **grown = realloc(argv, (argc + 2) * sizeof *argv);
        if (!grown) {
            r = -ENOMEM;
            goto out;
        }
        argv = grown;
        argv[argc] = strndup(word, wl);
        if (!argv[argc]) {
            argv[argc] = NULL;
            r = -ENOMEM;
            goto out;
        }
        argv[++argc] = NULL;
    }
    if (argc == 0) {
        set_why(ret_why, "is empty; expected a command");
        goto out;
    }
    *ret_argv = argv;
    argv = NULL;
    r = 0;
out:
    if (argv) {
        argv[argc] = NULL;
        parse_argv_free(argv);
    }
    free(word);
    return r;
}

int parse_env(const char *s, const char **ret_why)
{
    if (!s || !*s) {
        set_why(ret_why, "is empty; expected KEY=VALUE");
        return -EINVAL;
    }
    const char *eq = strchr(s, '=');
    if (!eq) {
        set_why(ret_why, "has no '='; expected KEY=VALUE");
        return -EINVAL;
    }
    if (eq == s) {
        set_why(ret_why, "has an empty name; expected KEY=VALUE");
        return -EINVAL;
    }
    for (const char *p = s; p < eq; p++) {
        bool alpha = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '_';
        if (!alpha && !(p > s && is_digit(*p))) {
            set_why(ret_why, "has an invalid name; expected letters, digits and '_', "
                             "not starting with a digit");
            return -EINVAL;
        }
    }
    return 0;
}
