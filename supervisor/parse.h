/*
 * parse: the value syntaxes of drover's config and command line (SPEC section 3), as pure
 * functions. Durations ("250ms", "30s", "5m", "1h"), sizes ("512K", "256M", "1G"), booleans,
 * bounded integers, listen addresses (IPv4, [IPv6], unix:/path) and command lines split into
 * argv with shell-like quoting. No I/O, no logging, no name resolution: an address is numeric,
 * so that checking a config never waits on DNS.
 *
 * Every function returns 0 or -EINVAL and writes its result only on success; where a reason
 * helps the user, it is a static string in *ret_why (which may be NULL), phrased to follow the
 * quoted value: "'10' has no unit; expected e.g. 250ms, 30s, 5m".
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

/*
 * "0", or digits followed by ms, s, m or h, at most PARSE_DURATION_MAX_MS (365 days): a cap that
 * lets callers add a duration to a clock or turn it into nanoseconds without overflow.
 */
#define PARSE_DURATION_MAX_MS (365ULL * 24 * 60 * 60 * 1000)
int parse_duration_ms(const char *s, uint64_t *ret_ms, const char **ret_why);

/* Digits, optionally followed by K, M, G or T (powers of 1024; "KB", "KiB" also taken). */
int parse_size(const char *s, uint64_t *ret_bytes, const char **ret_why);

/* yes/no/true/false/on/off/1/0, any case. */
int parse_bool(const char *s, bool *ret);

/* A decimal integer within [min, max]. */
int parse_long(const char *s, long min, long max, long *ret, const char **ret_why);

enum address_kind { ADDRESS_TCP, ADDRESS_UNIX };

/* A listen address, ready for socket()/bind(). text is the canonical form for messages. */
struct address {
    enum address_kind kind;
    int family;                 /* AF_INET, AF_INET6 or AF_UNIX */
    struct sockaddr_storage sa;
    socklen_t salen;
    char text[sizeof(((struct sockaddr_un *)0)->sun_path) + 16];
    int backlog;                /* listen = ADDR backlog=N; 0 = the default (SOMAXCONN) */
};

/* "127.0.0.1:8080", "0.0.0.0:80", "[::1]:8080", "[::]:80", "unix:/path/to.sock". */
int parse_address(const char *s, struct address *ret, const char **ret_why);

/*
 * Splits a command line into a NULL-terminated, malloc'd argv (free with parse_argv_free).
 * Handles 'single' and "double" quotes and backslash escapes; no expansion of any kind.
 * Empty commands, unterminated quotes and a trailing lone backslash are errors (-EINVAL);
 * -ENOMEM when out of memory.
 */
int parse_argv(const char *s, char ***ret_argv, const char **ret_why);
void parse_argv_free(char **argv);

/* "KEY=VALUE" with KEY a valid environment name ([A-Za-z_][A-Za-z0-9_]*). */
int parse_env(const char *s, const char **ret_why);
