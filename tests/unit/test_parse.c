/*
 * Unit tests of parse (the value syntaxes of SPEC section 3) and of procstat's parser, the
 * other pure text parser among the supervisor's modules. Each case states the exact value or
 * the exact reason expected, so a parser that accepts too much or says too little fails here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "parse.h"
#include "procstat.h"

/* ---- durations ---- */

static uint64_t duration_ok(const char *s)
{
    uint64_t ms = 12345;
    const char *why = NULL;

    int r = parse_duration_ms(s, &ms, &why);
    if (r != 0) {
        print_message("parse_duration_ms('%s') failed: %s\n", s, why ? why : "(no reason)");
    }
    assert_int_equal(r, 0);
    return ms;
}

static void duration_bad(const char *s, const char *why_expected)
{
    uint64_t ms = 12345;
    const char *why = NULL;

    assert_int_equal(parse_duration_ms(s, &ms, &why), -EINVAL);
    assert_int_equal(ms, 12345); /* untouched on failure */
    assert_non_null(why);
    if (why_expected) {
        assert_string_equal(why, why_expected);
    }
}

static void test_duration_valid(void **state)
{
    assert_int_equal(duration_ok("0"), 0);
    assert_int_equal(duration_ok("000"), 0);
    assert_int_equal(duration_ok("0s"), 0);
    assert_int_equal(duration_ok("1ms"), 1);
    assert_int_equal(duration_ok("250ms"), 250);
    assert_int_equal(duration_ok("30s"), 30000);
    assert_int_equal(duration_ok("5m"), 300000);
    assert_int_equal(duration_ok("1h"), 3600000);
    assert_int_equal(duration_ok("8760h"), PARSE_DURATION_MAX_MS);
    assert_int_equal(duration_ok("31536000000ms"), PARSE_DURATION_MAX_MS);
}

static void test_duration_invalid(void **state)
{
    duration_bad("10", "has no unit; expected e.g. 250ms, 30s, 5m");
    duration_bad("1", "has no unit; expected e.g. 250ms, 30s, 5m");
    duration_bad("-5s", "is negative; expected e.g. 250ms, 30s, 5m");
    duration_bad("", "is empty; expected e.g. 250ms, 30s, 5m");
    duration_bad("5x", "has an unknown unit; expected ms, s, m or h");
    duration_bad("5S", "has an unknown unit; expected ms, s, m or h");
    duration_bad("5 s", "has an unknown unit; expected ms, s, m or h");
    duration_bad("5sec", "has an unknown unit; expected ms, s, m or h");
    duration_bad("5d", "has an unknown unit; expected ms, s, m or h");
    duration_bad("1.5s", "is not a whole number of a unit; expected e.g. 250ms, 30s, 5m");
    duration_bad("1m30s", "has an unknown unit; expected ms, s, m or h");
    duration_bad("s", "is not a duration; expected e.g. 250ms, 30s, 5m");
    duration_bad(" 5s", "is not a duration; expected e.g. 250ms, 30s, 5m");
    duration_bad("+5s", "is not a duration; expected e.g. 250ms, 30s, 5m");
    duration_bad("8761h", "is too long; the limit is 365 days");
    duration_bad("31536000001ms", "is too long; the limit is 365 days");
    duration_bad("99999999999999999999s", "is too long; the limit is 365 days");
    duration_bad("18446744073709551615h", "is too long; the limit is 365 days");
    duration_bad(NULL, NULL);
}

/* ---- sizes ---- */

static uint64_t size_ok(const char *s)
{
    uint64_t v = 7;
    const char *why = NULL;

    int r = parse_size(s, &v, &why);
    if (r != 0) {
        print_message("parse_size('%s') failed: %s\n", s, why ? why : "(no reason)");
    }
    assert_int_equal(r, 0);
    return v;
}

static void size_bad(const char *s, const char *why_expected)
{
    uint64_t v = 7;
    const char *why = NULL;

    assert_int_equal(parse_size(s, &v, &why), -EINVAL);
    assert_int_equal(v, 7);
    assert_non_null(why);
    assert_string_equal(why, why_expected);
}

static void test_size_valid(void **state)
{
    assert_int_equal(size_ok("0"), 0);
    assert_int_equal(size_ok("100"), 100);
    assert_int_equal(size_ok("100B"), 100);
    assert_int_equal(size_ok("512K"), 512ULL * 1024);
    assert_int_equal(size_ok("512k"), 512ULL * 1024);
    assert_int_equal(size_ok("512KB"), 512ULL * 1024);
    assert_int_equal(size_ok("512kib"), 512ULL * 1024);
    assert_int_equal(size_ok("512KiB"), 512ULL * 1024);
    assert_int_equal(size_ok("256M"), 256ULL << 20);
    assert_int_equal(size_ok("256mb"), 256ULL << 20);
    assert_int_equal(size_ok("256MiB"), 256ULL << 20);
    assert_int_equal(size_ok("1G"), 1ULL << 30);
    assert_int_equal(size_ok("1gib"), 1ULL << 30);
    assert_int_equal(size_ok("2T"), 2ULL << 40);
    assert_int_equal(size_ok("16777215T"), 16777215ULL << 40);
    assert_int_equal(size_ok("18446744073709551615"), UINT64_MAX);
}

static void test_size_invalid(void **state)
{
    size_bad("", "is empty; expected e.g. 512K, 256M, 1G");
    size_bad("-1M", "is negative; expected e.g. 512K, 256M, 1G");
    size_bad("M", "is not a size; expected e.g. 512K, 256M, 1G");
    size_bad("1.5G", "has an unknown unit; expected K, M, G or T (powers of 1024)");
    size_bad("1X", "has an unknown unit; expected K, M, G or T (powers of 1024)");
    size_bad("1Ki", "has an unknown unit; expected K, M, G or T (powers of 1024)");
    size_bad("1KBB", "has an unknown unit; expected K, M, G or T (powers of 1024)");
    size_bad("1P", "has an unknown unit; expected K, M, G or T (powers of 1024)");
    size_bad("1 M", "has an unknown unit; expected K, M, G or T (powers of 1024)");
    size_bad("16777216T", "is too large");
    size_bad("18446744073709551616", "is too large");
}

/* ---- booleans and integers ---- */

static void test_bool(void **state)
{
    static const char *const yes[] = {"yes", "YES", "true", "True", "on", "ON", "1"};
    static const char *const no[] = {"no", "No", "false", "FALSE", "off", "Off", "0"};
    static const char *const bad[] = {"", "y", "n", "2", "yess", " yes", "enabled"};

    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        bool b = false;
        assert_int_equal(parse_bool(yes[i], &b), 0);
        assert_true(b);
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        bool b = true;
        assert_int_equal(parse_bool(no[i], &b), 0);
        assert_false(b);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bool b = true;
        assert_int_equal(parse_bool(bad[i], &b), -EINVAL);
        assert_true(b);
    }
}

static void test_long(void **state)
{
    const char *why = NULL;
    long v = 0;

    assert_int_equal(parse_long("42", 1, 1024, &v, &why), 0);
    assert_int_equal(v, 42);
    assert_int_equal(parse_long("1", 1, 1024, &v, &why), 0);
    assert_int_equal(v, 1);
    assert_int_equal(parse_long("1024", 1, 1024, &v, &why), 0);
    assert_int_equal(v, 1024);
    assert_int_equal(parse_long("-7", -10, 10, &v, &why), 0);
    assert_int_equal(v, -7);
    assert_int_equal(parse_long("+7", -10, 10, &v, &why), 0);
    assert_int_equal(v, 7);
    assert_int_equal(parse_long("-9223372036854775808", LONG_MIN, 0, &v, &why), 0);
    assert_true(v == LONG_MIN);
    assert_int_equal(parse_long("9223372036854775807", 0, LONG_MAX, &v, &why), 0);
    assert_true(v == LONG_MAX);

    v = 99;
    assert_int_equal(parse_long("0", 1, 1024, &v, &why), -EINVAL);
    assert_string_equal(why, "is out of range");
    assert_int_equal(parse_long("1025", 1, 1024, &v, &why), -EINVAL);
    assert_string_equal(why, "is out of range");
    assert_int_equal(parse_long("9223372036854775808", 0, LONG_MAX, &v, &why), -EINVAL);
    assert_string_equal(why, "is out of range");
    assert_int_equal(parse_long("99999999999999999999999", 0, LONG_MAX, &v, &why), -EINVAL);
    assert_string_equal(why, "is out of range");
    assert_int_equal(parse_long("12a", 1, 1024, &v, &why), -EINVAL);
    assert_string_equal(why, "is not a whole number");
    assert_int_equal(parse_long(" 12", 1, 1024, &v, &why), -EINVAL);
    assert_int_equal(parse_long("12 ", 1, 1024, &v, &why), -EINVAL);
    assert_int_equal(parse_long("0x10", 0, 1024, &v, &why), -EINVAL);
    assert_int_equal(parse_long("-", 0, 1024, &v, &why), -EINVAL);
    assert_int_equal(parse_long("", 0, 1024, &v, &why), -EINVAL);
    assert_int_equal(v, 99);
}

/* ---- addresses ---- */

static struct address address_ok(const char *s)
{
    struct address a;
    const char *why = NULL;

    int r = parse_address(s, &a, &why);
    if (r != 0) {
        print_message("parse_address('%s') failed: %s\n", s, why ? why : "(no reason)");
    }
    assert_int_equal(r, 0);
    return a;
}

static void address_bad(const char *s, const char *why_part)
{
    struct address a = {.kind = ADDRESS_UNIX, .text = "untouched"};
    const char *why = NULL;

    assert_int_equal(parse_address(s, &a, &why), -EINVAL);
    assert_string_equal(a.text, "untouched");
    assert_non_null(why);
    if (!strstr(why, why_part)) {
        print_message("parse_address('%s'): reason '%s' lacks '%s'\n", s, why, why_part);
        fail();
    }
}

static void test_address_ipv4(void **state)
{
    struct address a = address_ok("127.0.0.1:8080");
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&a.sa;

    assert_int_equal(a.kind, ADDRESS_TCP);
    assert_int_equal(a.family, AF_INET);
    assert_int_equal(a.salen, sizeof(struct sockaddr_in));
    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(ntohs(sin->sin_port), 8080);
    assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x7f000001);
    assert_string_equal(a.text, "127.0.0.1:8080");

    a = address_ok("0.0.0.0:0"); /* port 0: the kernel picks one */
    assert_int_equal(ntohs(((const struct sockaddr_in *)&a.sa)->sin_port), 0);
    assert_string_equal(a.text, "0.0.0.0:0");
    a = address_ok("10.1.2.3:65535");
    assert_int_equal(ntohs(((const struct sockaddr_in *)&a.sa)->sin_port), 65535);
    a = address_ok("10.1.2.3:080");
    assert_string_equal(a.text, "10.1.2.3:80");
}

static void test_address_ipv6(void **state)
{
    struct address a = address_ok("[::1]:8080");
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a.sa;

    assert_int_equal(a.kind, ADDRESS_TCP);
    assert_int_equal(a.family, AF_INET6);
    assert_int_equal(a.salen, sizeof(struct sockaddr_in6));
    assert_int_equal(sin6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(sin6->sin6_port), 8080);
    assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
    assert_string_equal(a.text, "[::1]:8080");

    a = address_ok("[::]:80");
    assert_string_equal(a.text, "[::]:80");
    /* The text is canonical, so that equal addresses compare equal as text. */
    a = address_ok("[0:0:0:0:0:0:0:1]:80");
    assert_string_equal(a.text, "[::1]:80");
    a = address_ok("[2001:DB8::1]:443");
    assert_string_equal(a.text, "[2001:db8::1]:443");
}

static void test_address_unix(void **state)
{
    struct address a = address_ok("unix:/run/app.sock");
    const struct sockaddr_un *sun = (const struct sockaddr_un *)&a.sa;

    assert_int_equal(a.kind, ADDRESS_UNIX);
    assert_int_equal(a.family, AF_UNIX);
    assert_int_equal(sun->sun_family, AF_UNIX);
    assert_string_equal(sun->sun_path, "/run/app.sock");
    assert_int_equal(a.salen, offsetof(struct sockaddr_un, sun_path) + strlen("/run/app.sock") + 1);
    assert_string_equal(a.text, "unix:/run/app.sock");

    a = address_ok("unix:relative.sock");
    assert_string_equal(((const struct sockaddr_un *)&a.sa)->sun_path, "relative.sock");

    char longest[5 + 108];
    memcpy(longest, "unix:/", 6);
    memset(longest + 6, 'x', 106);
    longest[112] = '\0'; /* a path of 107 bytes, the most sun_path holds with its NUL */
    a = address_ok(longest);
    assert_string_equal(a.text, longest);

    char too_long[5 + 109];
    memcpy(too_long, "unix:/", 6);
    memset(too_long + 6, 'x', 107);
    too_long[113] = '\0';
    address_bad(too_long, "too long");
    address_bad("unix:", "empty path");
}

static void test_address_invalid(void **state)
{
    address_bad("", "is empty");
    address_bad("127.0.0.1", "has no port");
    address_bad("127.0.0.1:", "has no port");
    address_bad("127.0.0.1:65536", "out of range");
    address_bad("127.0.0.1:99999999999999999999999", "invalid port");
    address_bad("127.0.0.1:-1", "invalid port");
    address_bad("127.0.0.1:80x", "invalid port");
    address_bad("127.0.0.1: 80", "invalid port");
    address_bad("localhost:8080", "names are not resolved");
    address_bad("256.0.0.1:80", "not a numeric IPv4");
    address_bad(":8080", "not a numeric IPv4");
    address_bad("::1:8080", "brackets");
    address_bad("[::1]", "has no port");
    address_bad("[::1]8080", "has no port");
    address_bad("[::1:8080", "no closing ']'");
    address_bad("[127.0.0.1]:80", "not a numeric IPv6");
    address_bad("[fe80::1%eth0]:80", "not a numeric IPv6");
    address_bad("tcp://127.0.0.1:80", "not a numeric IPv4");
}

/* ---- argv ---- */

static void argv_expect(const char *s, const char *const *expected)
{
    char **argv = NULL;
    const char *why = NULL;

    int r = parse_argv(s, &argv, &why);
    if (r != 0) {
        print_message("parse_argv(%s) failed: %s\n", s, why ? why : "(no reason)");
    }
    assert_int_equal(r, 0);
    size_t i = 0;
    for (; expected[i]; i++) {
        assert_non_null(argv[i]);
        assert_string_equal(argv[i], expected[i]);
    }
    assert_null(argv[i]);
    parse_argv_free(argv);
}

static void argv_bad(const char *s, const char *why_expected)
{
    char **argv = (char **)(uintptr_t)1;
    const char *why = NULL;

    assert_int_equal(parse_argv(s, &argv, &why), -EINVAL);
    assert_true(argv == (char **)(uintptr_t)1);
    assert_string_equal(why, why_expected);
}

static void test_argv(void **state)
{
    argv_expect("./server", (const char *const[]){"./server", NULL});
    argv_expect("  ./server   --port 8080\t-v  ",
                (const char *const[]){"./server", "--port", "8080", "-v", NULL});
    argv_expect("sh -c 'echo \"$HOME\" | cat'",
                (const char *const[]){"sh", "-c", "echo \"$HOME\" | cat", NULL});
    argv_expect("echo \"a b\" c\"d e\"f", (const char *const[]){"echo", "a b", "cd ef", NULL});
    argv_expect("echo \"q\\\"uote\" \"back\\\\slash\" \"keep\\n\"",
                (const char *const[]){"echo", "q\"uote", "back\\slash", "keep\\n", NULL});
    argv_expect("echo a\\ b \\'c\\' \\\\", (const char *const[]){"echo", "a b", "'c'", "\\", NULL});
    argv_expect("echo '' \"\"", (const char *const[]){"echo", "", "", NULL});
    argv_expect("echo 'it'\\''s'", (const char *const[]){"echo", "it's", NULL});
    argv_expect("a \\\nb", (const char *const[]){"a", "b", NULL});
    argv_expect("echo $HOME ~ *", (const char *const[]){"echo", "$HOME", "~", "*", NULL});
}

static void test_argv_invalid(void **state)
{
    argv_bad("", "is empty; expected a command");
    argv_bad("   \t ", "is empty; expected a command");
    argv_bad("echo 'oops", "has an unterminated ' quote");
    argv_bad("echo \"oops", "has an unterminated \" quote");
    argv_bad("echo \"oops\\\"", "has an unterminated \" quote");
    argv_bad("echo oops\\", "ends with a lone backslash");
}

/* ---- env ---- */

static void test_env(void **state)
{
    const char *why = NULL;

    assert_int_equal(parse_env("KEY=VALUE", &why), 0);
    assert_int_equal(parse_env("_k1=", &why), 0);
    assert_int_equal(parse_env("A=b=c", &why), 0);
    assert_int_equal(parse_env("PATH=/usr/bin:/bin", &why), 0);

    assert_int_equal(parse_env("KEY", &why), -EINVAL);
    assert_string_equal(why, "has no '='; expected KEY=VALUE");
    assert_int_equal(parse_env("=v", &why), -EINVAL);
    assert_string_equal(why, "has an empty name; expected KEY=VALUE");
    assert_int_equal(parse_env("1A=v", &why), -EINVAL);
    assert_non_null(strstr(why, "invalid name"));
    assert_int_equal(parse_env("A-B=v", &why), -EINVAL);
    assert_int_equal(parse_env("A B=v", &why), -EINVAL);
    assert_int_equal(parse_env("", &why), -EINVAL);
}

/* ---- procstat ---- */

/*
 * A real line from /proc/PID/stat, with a command name built to break naive parsers: it holds
 * spaces, a ") (" and a closing parenthesis of its own.
 */
static const char stat_sample[] =
    "4242 (evil ) (name) S) S 1 4242 4242 0 -1 4194560 1523 0 12 0 250 50 0 0 20 0 1 0 987654 "
    "12345678 300 18446744073709551615 94446018969600 94446018989481 140721850218640 0 0 0 0 0 "
    "0 0 0 0 17 3 0 0 0 0 0 94446019005488 94446019007104 94446252625920 140721850223039 "
    "140721850223059 140721850223059 140721850224619 0\n";

static void test_procstat_parse(void **state)
{
    struct procstat st = {0};

    assert_int_equal(procstat_parse(stat_sample, strlen(stat_sample), 4096, 100, &st), 0);
    assert_int_equal(st.rss_bytes, 300ULL * 4096);
    assert_int_equal(st.cpu_ns, 3000000000ULL); /* (250 + 50) ticks at 100 per second */
    assert_int_equal(st.start_ticks, 987654);

    /* Other units, and ticks that do not divide evenly. */
    assert_int_equal(procstat_parse(stat_sample, strlen(stat_sample), 65536, 1000, &st), 0);
    assert_int_equal(st.rss_bytes, 300ULL * 65536);
    assert_int_equal(st.cpu_ns, 300000000ULL);
    assert_int_equal(procstat_parse(stat_sample, strlen(stat_sample), 4096, 3, &st), 0);
    assert_int_equal(st.cpu_ns, 100000000000ULL);

    /* No NUL needed: the length bounds the parse, and a cut inside field 24 is noticed. */
    char raw[sizeof stat_sample];
    memcpy(raw, stat_sample, sizeof raw);
    const char *rss = strstr(stat_sample, " 300 ") + 1;
    size_t cut = (size_t)(rss - stat_sample) + 3;
    assert_int_equal(procstat_parse(raw, cut, 4096, 100, &st), 0);
    assert_int_equal(st.rss_bytes, 300ULL * 4096);
    assert_int_equal(procstat_parse(raw, cut - 4, 4096, 100, &st), -EINVAL);
}

static void test_procstat_parse_invalid(void **state)
{
    struct procstat st = {.rss_bytes = 1, .cpu_ns = 2, .start_ticks = 3};
    static const char *const bad[] = {
        "",
        "4242 (name S 1 2 3",
        "4242 (name) S 1 4242 4242 0 -1 4194560 1523 0 12 0 250 50 0 0 20 0 1 0 987654\n",
        "4242 (name) S 1 4242 4242 0 -1 4194560 1523 0 12 0 x50 50 0 0 20 0 1 0 987654 1 300\n",
        "4242 (name) S 1 4242 4242 0 -1 4194560 1523 0 12 0 250 50 0 0 20 0 1 0 987654 1 -300\n",
        "4242 (name) S 1 4242 4242 0 -1 4194560 1523 0 12 0 250 50 0 0 20 0 1 0 "
        "99999999999999999999 1 300\n",
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(procstat_parse(bad[i], strlen(bad[i]), 4096, 100, &st), -EINVAL);
    }
    assert_int_equal(procstat_parse(stat_sample, strlen(stat_sample), 0, 100, &st), -EINVAL);
    assert_int_equal(procstat_parse(stat_sample, strlen(stat_sample), 4096, 0, &st), -EINVAL);
    assert_int_equal(st.rss_bytes, 1);
    assert_int_equal(st.cpu_ns, 2);
    assert_int_equal(st.start_ticks, 3);
}

static void test_procstat_read_self(void **state)
{
    struct procstat st = {0};
    int fd = procstat_open(getpid());

    assert_true(fd >= 0);
    assert_int_equal(procstat_read(fd, &st), 0);
    assert_true(st.rss_bytes > 0);
    assert_true(st.start_ticks > 0);
    /* The same descriptor reads again from the start: a fresh sample, not EOF. */
    assert_int_equal(procstat_read(fd, &st), 0);
    assert_true(st.rss_bytes > 0);
    close(fd);

    /* Beyond the kernel's pid_max (at most 2^22): gone, as a process that exited. */
    assert_int_equal(procstat_open(4194305), -ESRCH);
    assert_int_equal(procstat_open(0), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration_valid),
        cmocka_unit_test(test_duration_invalid),
        cmocka_unit_test(test_size_valid),
        cmocka_unit_test(test_size_invalid),
        cmocka_unit_test(test_bool),
        cmocka_unit_test(test_long),
        cmocka_unit_test(test_address_ipv4),
        cmocka_unit_test(test_address_ipv6),
        cmocka_unit_test(test_address_unix),
        cmocka_unit_test(test_address_invalid),
        cmocka_unit_test(test_argv),
        cmocka_unit_test(test_argv_invalid),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_procstat_parse),
        cmocka_unit_test(test_procstat_parse_invalid),
        cmocka_unit_test(test_procstat_read_self),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
