/*
 * Unit tests of logline, a worker's output line as a log record (SPEC section 8): levels in
 * pino, syslog and word dialects normalised to drover's six words, `<N>` prefixes, plain lines
 * at info with their stream, JSON objects merged, and drover's own keys keeping their types
 * whatever the worker's JSON says. Each record is checked as the JSON text drover writes.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <jansson.h>

#include "logline.h"

static const struct log_origin origin = {"web", 2, 4242};

/* The record of line as drover would write it (caller frees), and its level. */
static char *record_text(bool is_stderr, const char *line, enum log_level *ret_level)
{
    enum log_level level = LOG_TRACE; /* no record here is at trace */
    json_t *rec =
        logline_record("2026-01-02T03:04:05.678Z", origin, is_stderr, line, strlen(line), &level);
    assert_non_null(rec);
    char *text = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_non_null(text);
    json_decref(rec);
    if (ret_level) {
        *ret_level = level;
    }
    return text;
}

static void assert_record(bool is_stderr, const char *line, const char *want)
{
    char *got = record_text(is_stderr, line, NULL);
    if (strcmp(got, want) != 0) {
        print_error("line:  %s\nwant:  %s\ngot:   %s\n", line, want, got);
    }
    assert_string_equal(got, want);
    free(got);
}

#define HEAD "{\"ts\":\"2026-01-02T03:04:05.678Z\","
#define ORIGIN "\"app\":\"web\",\"worker\":2,\"pid\":4242,"

static void assert_level(json_t *v, int want, bool want_exact)
{
    enum log_level level = LOG_INFO;
    bool exact = !want_exact;
    char *text = json_dumps(v, JSON_ENCODE_ANY);
    int r = logline_level_from_json(v, &level, &exact);
    if (want < 0) {
        if (r != -EINVAL) {
            print_error("%s: want no level, got %s\n", text, logline_level_to_string(level));
        }
        assert_int_equal(r, -EINVAL);
    } else {
        if (r != 0 || (int)level != want || exact != want_exact) {
            print_error("%s: want %s%s, got r=%d %s%s\n", text,
                        logline_level_to_string((enum log_level)want),
                        want_exact ? "" : " (inexact)", r, logline_level_to_string(level),
                        exact ? "" : " (inexact)");
        }
        assert_int_equal(r, 0);
        assert_int_equal(level, want);
        assert_int_equal(exact, want_exact);
    }
    free(text);
    json_decref(v);
}

static void test_level_numbers(void **state)
{
    (void)state;
    /* pino and bunyan. */
    assert_level(json_integer(10), LOG_TRACE, true);
    assert_level(json_integer(20), LOG_DEBUG, true);
    assert_level(json_integer(30), LOG_INFO, true);
    assert_level(json_integer(40), LOG_WARN, true);
    assert_level(json_integer(50), LOG_ERROR, true);
    assert_level(json_integer(60), LOG_FATAL, true);
    assert_level(json_real(30.0), LOG_INFO, true);
    /* Custom levels count as the standard one below them; their number is not lost. */
    assert_level(json_integer(35), LOG_INFO, false);
    assert_level(json_integer(59), LOG_ERROR, false);
    assert_level(json_integer(15), LOG_TRACE, false);
    assert_level(json_integer(70), LOG_FATAL, false);
    assert_level(json_real(45.5), LOG_WARN, false);
    /* syslog severities, as GELF and journald's PRIORITY carry them. */
    assert_level(json_integer(0), LOG_FATAL, false);
    assert_level(json_integer(2), LOG_FATAL, false);
    assert_level(json_integer(3), LOG_ERROR, false);
    assert_level(json_integer(4), LOG_WARN, false);
    assert_level(json_integer(5), LOG_INFO, false);
    assert_level(json_integer(6), LOG_INFO, false);
    assert_level(json_integer(7), LOG_DEBUG, false);
    /* Nothing a logger writes. */
    assert_level(json_integer(8), -1, false);
    assert_level(json_integer(-1), -1, false);
    assert_level(json_real(3.5), -1, false);
}

static void test_level_words(void **state)
{
    (void)state;
    static const struct {
        const char *word;
        enum log_level level;
    } words[] = {
        {"trace", LOG_TRACE},    {"TRACE", LOG_TRACE},   {"debug", LOG_DEBUG},
        {"DEBUG", LOG_DEBUG},    {"verbose", LOG_DEBUG}, {"info", LOG_INFO},
        {"INFO", LOG_INFO},      {"Info", LOG_INFO},     {"notice", LOG_INFO},
        {"warn", LOG_WARN},      {"WARN", LOG_WARN},     {"WARNING", LOG_WARN},
        {"warning", LOG_WARN},   {"error", LOG_ERROR},   {"ERROR", LOG_ERROR},
        {"err", LOG_ERROR},      {"fatal", LOG_FATAL},   {"CRITICAL", LOG_FATAL},
        {"critical", LOG_FATAL}, {"crit", LOG_FATAL},    {"emerg", LOG_FATAL},
        {"alert", LOG_FATAL},    {"panic", LOG_FATAL},
    };
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        assert_level(json_string(words[i].word), (int)words[i].level, true);
    }
    assert_level(json_string("bogus"), -1, false);
    assert_level(json_string(""), -1, false);
    assert_level(json_string("info "), -1, false);
    assert_level(json_string("30"), -1, false);
    assert_level(json_true(), -1, false);
    assert_level(json_null(), -1, false);
    assert_level(json_pack("{s:i}", "level", 30), -1, false);
}

static void test_syslog_prefix(void **state)
{
    (void)state;
    enum log_level level = LOG_INFO;
    assert_int_equal(logline_syslog_prefix("<4>disk low", 11, &level), 3);
    assert_int_equal(level, LOG_WARN);
    assert_int_equal(logline_syslog_prefix("<7>", 3, &level), 3);
    assert_int_equal(level, LOG_DEBUG);
    assert_int_equal(logline_syslog_prefix("<0>x", 4, &level), 3);
    assert_int_equal(level, LOG_FATAL);
    level = LOG_INFO;
    assert_int_equal(logline_syslog_prefix("<8>x", 4, &level), 0);
    assert_int_equal(logline_syslog_prefix("<44>x", 5, &level), 0);
    assert_int_equal(logline_syslog_prefix("<4", 2, &level), 0);
    assert_int_equal(logline_syslog_prefix("<4>x", 2, &level), 0); /* the length is the line */
    assert_int_equal(logline_syslog_prefix(" <4>x", 5, &level), 0);
    assert_int_equal(level, LOG_INFO);
}

static void test_plain_lines_are_info_with_their_stream(void **state)
{
    (void)state;
    enum log_level level = LOG_FATAL;
    char *t = record_text(true, "[2026-01-02 03:04:05 +0000] [7] [INFO] Booting worker", &level);
    assert_string_equal(t, HEAD "\"level\":\"info\"," ORIGIN
                                "\"msg\":\"[2026-01-02 03:04:05 +0000] [7] [INFO] Booting worker\","
                                "\"stream\":\"stderr\"}");
    assert_int_equal(level, LOG_INFO);
    free(t);
    assert_record(false, "hello",
                  HEAD "\"level\":\"info\"," ORIGIN "\"msg\":\"hello\",\"stream\":\"stdout\"}");
    assert_record(false, "",
                  HEAD "\"level\":\"info\"," ORIGIN "\"msg\":\"\",\"stream\":\"stdout\"}");
    /* Not JSON objects: quoted as they are. */
    assert_record(false, "{not json",
                  HEAD "\"level\":\"info\"," ORIGIN "\"msg\":\"{not json\",\"stream\":\"stdout\"}");
    assert_record(false, "[1,2]",
                  HEAD "\"level\":\"info\"," ORIGIN "\"msg\":\"[1,2]\",\"stream\":\"stdout\"}");
    assert_record(false, "{\"a\":1,\"a\":2}",
                  HEAD "\"level\":\"info\"," ORIGIN "\"msg\":\"{\\\"a\\\":1,\\\"a\\\":2}\","
                       "\"stream\":\"stdout\"}");
    /* Bytes that are not UTF-8 stay readable and the record stays JSON. */
    assert_record(true, "caf\xe9",
                  HEAD "\"level\":\"info\"," ORIGIN "\"msg\":\"caf?\",\"stream\":\"stderr\"}");
}

static void test_prefixed_lines(void **state)
{
    (void)state;
    enum log_level level = LOG_INFO;
    char *t = record_text(false, "<3>cannot connect", &level);
    assert_string_equal(t, HEAD "\"level\":\"error\"," ORIGIN
                                "\"msg\":\"cannot connect\",\"stream\":\"stdout\"}");
    assert_int_equal(level, LOG_ERROR);
    free(t);
    assert_record(true, "<4>disk low",
                  HEAD "\"level\":\"warn\"," ORIGIN "\"msg\":\"disk low\",\"stream\":\"stderr\"}");
    assert_record(true, "<9>not a prefix",
                  HEAD "\"level\":\"info\"," ORIGIN
                       "\"msg\":\"<9>not a prefix\",\"stream\":\"stderr\"}");
    /* A prefixed JSON object: merged; its own level, when it states one, wins. */
    assert_record(true, "<4>{\"msg\":\"m\"}",
                  HEAD "\"level\":\"warn\"," ORIGIN "\"msg\":\"m\",\"stream\":\"stderr\"}");
    assert_record(true, "<4>{\"msg\":\"m\",\"level\":50}",
                  HEAD "\"level\":\"error\"," ORIGIN "\"msg\":\"m\",\"stream\":\"stderr\"}");
}

static void test_json_lines_are_merged(void **state)
{
    (void)state;
    enum log_level level = LOG_INFO;
    /* pino's default line: its level replaced by the word, its pid (the worker's) said once. */
    char *t = record_text(true,
                          "{\"level\":50,\"time\":1700000000000,\"pid\":4242,\"hostname\":\"h\","
                          "\"msg\":\"boom\",\"err\":{\"type\":\"Error\"}}",
                          &level);
    assert_string_equal(t, HEAD "\"level\":\"error\"," ORIGIN
                                "\"msg\":\"boom\",\"time\":1700000000000,\"hostname\":\"h\","
                                "\"err\":{\"type\":\"Error\"},\"stream\":\"stderr\"}");
    assert_int_equal(level, LOG_ERROR);
    free(t);
    assert_record(false, "{\"level\":30,\"msg\":\"up\"}",
                  HEAD "\"level\":\"info\"," ORIGIN "\"msg\":\"up\",\"stream\":\"stdout\"}");
    assert_record(true, "{\"level\":\"WARNING\",\"msg\":\"slow\",\"logger\":\"db\"}",
                  HEAD "\"level\":\"warn\"," ORIGIN
                       "\"msg\":\"slow\",\"logger\":\"db\",\"stream\":\"stderr\"}");
    /* A custom level: the word of the level below, the number kept. */
    assert_record(true, "{\"level\":35,\"msg\":\"x\"}",
                  HEAD "\"level\":\"info\"," ORIGIN
                       "\"msg\":\"x\",\"line_level\":35,\"stream\":\"stderr\"}");
    /* No msg: none is invented. */
    assert_record(false, "{\"event\":\"login\",\"user\":\"alice\"}",
                  HEAD "\"level\":\"info\"," ORIGIN
                       "\"event\":\"login\",\"user\":\"alice\",\"stream\":\"stdout\"}");
    assert_record(false, "{}", HEAD "\"level\":\"info\"," ORIGIN "\"stream\":\"stdout\"}");
}

static void test_drovers_keys_keep_their_types(void **state)
{
    (void)state;
    /* Every one of drover's keys contradicted: drover's value stays, the worker's is kept as
     * line_<key>. */
    assert_record(true,
                  "{\"ts\":12345,\"level\":\"bogus\",\"app\":\"other\",\"worker\":\"w-a\","
                  "\"pid\":\"1\",\"msg\":{\"text\":\"hi\"},\"stream\":\"out\",\"n\":1}",
                  HEAD "\"level\":\"info\"," ORIGIN
                       "\"line_ts\":12345,\"line_level\":\"bogus\",\"line_app\":\"other\","
                       "\"line_worker\":\"w-a\",\"line_pid\":\"1\","
                       "\"line_msg\":{\"text\":\"hi\"},\"line_stream\":\"out\",\"n\":1,"
                       "\"stream\":\"stderr\"}");
    /* What agrees with drover is said once; a ts always differs (drover's is its arrival). */
    assert_record(true,
                  "{\"app\":\"web\",\"worker\":2,\"pid\":4242,\"stream\":\"stderr\","
                  "\"ts\":\"2026-01-02T03:04:05.678Z\",\"msg\":\"same\"}",
                  HEAD "\"level\":\"info\"," ORIGIN
                       "\"msg\":\"same\",\"line_ts\":\"2026-01-02T03:04:05.678Z\","
                       "\"stream\":\"stderr\"}");
    /* A worker that uses the line_ name itself keeps it; its contradicting key is dropped. */
    assert_record(false, "{\"pid\":7,\"line_pid\":\"mine\",\"msg\":\"m\"}",
                  HEAD "\"level\":\"info\"," ORIGIN
                       "\"msg\":\"m\",\"line_pid\":\"mine\",\"stream\":\"stdout\"}");
}

static void test_key_is_drovers(void **state)
{
    (void)state;
    const char *ours[] = {"ts", "level", "app", "worker", "pid", "msg", "stream"};
    for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++) {
        assert_true(logline_key_is_drovers(ours[i]));
    }
    assert_false(logline_key_is_drovers("time"));
    assert_false(logline_key_is_drovers("line_pid"));
    assert_false(logline_key_is_drovers(""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_level_numbers),
        cmocka_unit_test(test_level_words),
        cmocka_unit_test(test_syslog_prefix),
        cmocka_unit_test(test_plain_lines_are_info_with_their_stream),
        cmocka_unit_test(test_prefixed_lines),
        cmocka_unit_test(test_json_lines_are_merged),
        cmocka_unit_test(test_drovers_keys_keep_their_types),
        cmocka_unit_test(test_key_is_drovers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
