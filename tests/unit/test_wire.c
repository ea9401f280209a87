/*
 * Unit tests of wire, the channel and control formats of SPEC sections 4 and 7. Every message
 * is formatted to the exact text the SPEC shows and parsed back; malformed lines of every kind
 * are refused without touching the output; the framer is driven through partial lines, many
 * lines per chunk, lines at and over the limit, and a long random stream checked against what
 * went in, with the buffer never growing past limit + 1.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

/* ---- channel messages -------------------------------------------------------------------- */

/* Formats msg, expects exactly `expected` (with its newline), parses it back into *ret. */
static void round_trip(const struct wire_msg *msg, const char *expected, struct wire_msg *ret)
{
    size_t len = 0;
    char *line = wire_msg_format(msg, &len);

    assert_non_null(line);
    assert_string_equal(line, expected);
    assert_int_equal(len, strlen(expected));
    assert_int_equal(wire_msg_parse(line, len - 1, ret), 0);
    assert_int_equal(ret->type, msg->type);
    free(line);
}

static void test_msg_round_trip_simple(void **state)
{
    static const struct {
        enum wire_type type;
        const char *text;
    } cases[] = {
        {WIRE_READY, "{\"type\":\"ready\"}\n"},
        {WIRE_HEARTBEAT, "{\"type\":\"heartbeat\"}\n"},
        {WIRE_COLLECT, "{\"type\":\"collect\"}\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct wire_msg m = {.type = cases[i].type}, back;
        round_trip(&m, cases[i].text, &back);
        wire_msg_done(&back);
    }
}

static void test_msg_round_trip_status(void **state)
{
    struct wire_msg m = {.type = WIRE_STATUS, .text = "serving \"web\"\n\ttab"}, back;

    round_trip(&m, "{\"type\":\"status\",\"text\":\"serving \\\"web\\\"\\n\\ttab\"}\n", &back);
    assert_string_equal(back.text, m.text);
    wire_msg_done(&back);
    assert_null(back.text);
}

/* SPEC section 4/10: {"type":"recycle","reason":"..."}; the reason is optional. */
static void test_msg_round_trip_recycle(void **state)
{
    struct wire_msg m = {.type = WIRE_RECYCLE, .text = "max_requests"}, back;

    round_trip(&m, "{\"type\":\"recycle\",\"reason\":\"max_requests\"}\n", &back);
    assert_string_equal(back.text, "max_requests");
    wire_msg_done(&back);

    const char *bare = "{\"type\":\"recycle\"}";
    assert_int_equal(wire_msg_parse(bare, strlen(bare), &back), 0);
    assert_int_equal(back.type, WIRE_RECYCLE);
    assert_string_equal(back.text, "");
    wire_msg_done(&back);

    const char *bad = "{\"type\":\"recycle\",\"reason\":7}";
    assert_int_equal(wire_msg_parse(bad, strlen(bad), &back), -EPROTO);
}

static void test_msg_round_trip_phases(void **state)
{
    for (int p = 0; p < WIRE_PHASE_COUNT; p++) {
        char expected[128];
        struct wire_msg m = {.type = WIRE_PHASE, .phase = (enum wire_phase)p, .timeout_ms = 30000};
        struct wire_msg back;

        snprintf(expected, sizeof expected,
                 "{\"type\":\"phase\",\"phase\":\"%s\",\"timeout_ms\":30000}\n",
                 wire_phase_to_string(m.phase));
        round_trip(&m, expected, &back);
        assert_int_equal(back.phase, p);
        assert_int_equal(back.timeout_ms, 30000);
        wire_msg_done(&back);

        struct wire_msg done = {.type = WIRE_PHASE_DONE, .phase = (enum wire_phase)p};
        snprintf(expected, sizeof expected, "{\"type\":\"phase_done\",\"phase\":\"%s\"}\n",
                 wire_phase_to_string(m.phase));
        round_trip(&done, expected, &back);
        assert_int_equal(back.phase, p);
        wire_msg_done(&back);
    }

    /* No timeout announced: the key is left out, and reads back as -1. */
    struct wire_msg m = {.type = WIRE_PHASE, .phase = WIRE_PHASE_DRAIN, .timeout_ms = -1}, back;
    round_trip(&m, "{\"type\":\"phase\",\"phase\":\"drain\"}\n", &back);
    assert_int_equal(back.timeout_ms, -1);
    wire_msg_done(&back);
}

static void test_msg_round_trip_metrics(void **state)
{
    json_error_t error;
    json_t *families = json_loads("[{\"name\":\"http_requests_total\",\"type\":\"counter\","
                                  "\"help\":\"h\",\"agg\":\"sum\",\"samples\":[{\"labels\":"
                                  "{\"code\":\"200\"},\"value\":12}]}]",
                                  0, &error);
    struct wire_msg m = {.type = WIRE_METRICS, .families = families}, back;

    assert_non_null(families);
    round_trip(&m,
               "{\"type\":\"metrics\",\"families\":[{\"name\":\"http_requests_total\","
               "\"type\":\"counter\",\"help\":\"h\",\"agg\":\"sum\",\"samples\":[{\"labels\":"
               "{\"code\":\"200\"},\"value\":12}]}]}\n",
               &back);
    assert_true(json_equal(back.families, families));
    /* Formatting referenced the families, it did not steal them. */
    assert_int_equal(families->refcount, 1);
    wire_msg_done(&back);
    json_decref(families);

    struct wire_msg empty = {.type = WIRE_METRICS};
    round_trip(&empty, "{\"type\":\"metrics\",\"families\":[]}\n", &back);
    assert_int_equal(json_array_size(back.families), 0);
    wire_msg_done(&back);
}

static void test_msg_round_trip_metrics_page(void **state)
{
    struct wire_msg get = {.type = WIRE_GET_METRICS, .format = "text"}, back;

    round_trip(&get, "{\"type\":\"get_metrics\",\"format\":\"text\"}\n", &back);
    assert_string_equal(back.format, "text");
    wire_msg_done(&back);

    struct wire_msg page = {.type = WIRE_METRICS_PAGE, .format = "json", .body = "# a\nb 1\n"};
    round_trip(&page, "{\"type\":\"metrics_page\",\"format\":\"json\",\"body\":\"# a\\nb 1\\n\"}\n",
               &back);
    assert_string_equal(back.format, "json");
    assert_string_equal(back.body, page.body);
    wire_msg_done(&back);

    /* get_metrics without a format asks for text. */
    const char *line = "{\"type\":\"get_metrics\"}";
    assert_int_equal(wire_msg_parse(line, strlen(line), &back), 0);
    assert_string_equal(back.format, "text");
    wire_msg_done(&back);
}

static void test_msg_unknown_keys_ignored(void **state)
{
    const char *line = "{\"x\":[1,{\"y\":null}],\"type\":\"phase\",\"phase\":\"save\","
                       "\"timeout_ms\":5000,\"future\":true}";
    struct wire_msg m;

    assert_int_equal(wire_msg_parse(line, strlen(line), &m), 0);
    assert_int_equal(m.type, WIRE_PHASE);
    assert_int_equal(m.phase, WIRE_PHASE_SAVE);
    assert_int_equal(m.timeout_ms, 5000);
    wire_msg_done(&m);

    /* Not NUL-terminated: only len bytes count. */
    const char buf[] = "{\"type\":\"ready\"}garbage";
    assert_int_equal(wire_msg_parse(buf, 16, &m), 0);
    assert_int_equal(m.type, WIRE_READY);
    wire_msg_done(&m);
}

static void test_msg_rejects_malformed(void **state)
{
    static const char *const bad[] = {
        "",
        " ",
        "{",
        "null",
        "42",
        "\"ready\"",
        "[{\"type\":\"ready\"}]",
        "{}",
        "{\"type\":null}",
        "{\"type\":1}",
        "{\"type\":\"READY\"}",
        "{\"type\":\"launch\"}",
        "{\"type\":\"ready\"} {\"type\":\"ready\"}",
        "{\"type\":\"ready\",\"type\":\"heartbeat\"}",
        "{\"type\":\"status\"}",
        "{\"type\":\"status\",\"text\":null}",
        "{\"type\":\"status\",\"text\":7}",
        "{\"type\":\"status\",\"text\":\"a\\u0000b\"}",
        "{\"type\":\"status\",\"text\":\"\\ud800\"}",
        "{\"type\":\"phase_done\"}",
        "{\"type\":\"phase_done\",\"phase\":\"Drain\"}",
        "{\"type\":\"phase_done\",\"phase\":3}",
        "{\"type\":\"phase\",\"phase\":\"drain\",\"timeout_ms\":-1}",
        "{\"type\":\"phase\",\"phase\":\"drain\",\"timeout_ms\":1.5}",
        "{\"type\":\"phase\",\"phase\":\"drain\",\"timeout_ms\":\"30s\"}",
        "{\"type\":\"phase\",\"phase\":\"drain\",\"timeout_ms\":99999999999999999999999}",
        "{\"type\":\"phase\",\"phase\":\"drain\",\"timeout_ms\":1e999}",
        "{\"type\":\"phase\",\"timeout_ms\":1}",
        "{\"type\":\"metrics\"}",
        "{\"type\":\"metrics\",\"families\":{}}",
        "{\"type\":\"metrics\",\"families\":\"[]\"}",
        "{\"type\":\"get_metrics\",\"format\":\"xml\"}",
        "{\"type\":\"get_metrics\",\"format\":1}",
        "{\"type\":\"metrics_page\",\"format\":\"text\"}",
        "{\"type\":\"metrics_page\",\"format\":\"text\",\"body\":[]}",
        "\xff{\"type\":\"ready\"}",
        "{\"type\":\"status\",\"text\":\"\xc3\x28\"}",
    };
    struct wire_msg sentinel = {.type = WIRE_COLLECT, .timeout_ms = 77};

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct wire_msg m = sentinel;
        int r = wire_msg_parse(bad[i], strlen(bad[i]), &m);
        if (r != -EPROTO) {
            print_error("accepted or misjudged: %s (%d)\n", bad[i], r);
        }
        assert_int_equal(r, -EPROTO);
        assert_memory_equal(&m, &sentinel, sizeof m);
    }

    /* Raw NUL bytes inside and after the object. */
    static const char nul_inside[] = "{\"type\":\"sta\0tus\",\"text\":\"x\"}";
    static const char nul_after[] = "{\"type\":\"ready\"}\0";
    struct wire_msg m = sentinel;
    assert_int_equal(wire_msg_parse(nul_inside, sizeof nul_inside - 1, &m), -EPROTO);
    assert_int_equal(wire_msg_parse(nul_after, sizeof nul_after - 1, &m), -EPROTO);
    assert_memory_equal(&m, &sentinel, sizeof m);
}

static void test_msg_deep_nesting(void **state)
{
    /* A family list nested far deeper than any parser stack should follow. */
    size_t depth = 100000;
    size_t n = strlen("{\"type\":\"metrics\",\"families\":") + 2 * depth + 1;
    char *line = malloc(n + 1);
    char *p = line;
    struct wire_msg m;

    assert_non_null(line);
    p += sprintf(p, "{\"type\":\"metrics\",\"families\":");
    memset(p, '[', depth);
    memset(p + depth, ']', depth);
    p[2 * depth] = '}';
    p[2 * depth + 1] = '\0';
    assert_int_equal(wire_msg_parse(line, strlen(line), &m), -EPROTO);
    free(line);
}

static void test_msg_too_long(void **state)
{
    size_t n = WIRE_LINE_MAX + 1;
    char *line = malloc(n);
    struct wire_msg m;

    assert_non_null(line);
    memset(line, ' ', n);
    memcpy(line, "{\"type\":\"ready\"}", 16);
    assert_int_equal(wire_msg_parse(line, n, &m), -EMSGSIZE);
    /* Exactly at the limit is fine (trailing whitespace is valid JSON). */
    assert_int_equal(wire_msg_parse(line, n - 1, &m), 0);
    wire_msg_done(&m);
    free(line);
}

static void test_msg_format_lossy_utf8(void **state)
{
    struct wire_msg m = {.type = WIRE_STATUS,
                         .text = "caf\xe9 \xc3\xa9 \xf0\x9f\x98\x80 \xed\xa0\x80"};
    struct wire_msg back;
    size_t len;
    char *line = wire_msg_format(&m, &len);

    assert_non_null(line);
    /* Latin-1 é and the encoded surrogate become U+FFFD; valid sequences pass untouched. */
    assert_string_equal(line, "{\"type\":\"status\",\"text\":\"caf\xef\xbf\xbd \xc3\xa9 "
                              "\xf0\x9f\x98\x80 \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"}\n");
    assert_int_equal(wire_msg_parse(line, len - 1, &back), 0);
    wire_msg_done(&back);
    free(line);

    /* A NULL string formats as "". */
    struct wire_msg null_text = {.type = WIRE_STATUS};
    line = wire_msg_format(&null_text, &len);
    assert_string_equal(line, "{\"type\":\"status\",\"text\":\"\"}\n");
    free(line);
}

static void test_msg_format_out_of_range(void **state)
{
    size_t len = 1234;
    struct wire_msg bad_type = {.type = (enum wire_type)99};
    struct wire_msg bad_phase = {.type = WIRE_PHASE_DONE, .phase = WIRE_PHASE_COUNT};

    assert_null(wire_msg_format(&bad_type, &len));
    assert_null(wire_msg_format(&bad_phase, &len));
    assert_int_equal(len, 1234);
}

static void test_enum_strings(void **state)
{
    static const char *const phases[] = {"initiated", "drain", "save", "close", "cleanup",
                                         "complete"};
    static const char *const cmds[] = {"status", "reload", "restart", "scale",
                                       "stop",   "start",  "metrics", "logs", "events", "upgrade"};
    enum wire_phase p;
    enum wire_cmd c;
    enum wire_type t;

    assert_int_equal(sizeof phases / sizeof phases[0], WIRE_PHASE_COUNT);
    for (int i = 0; i < WIRE_PHASE_COUNT; i++) {
        assert_string_equal(wire_phase_to_string((enum wire_phase)i), phases[i]);
        assert_int_equal(wire_phase_from_string(phases[i], &p), 0);
        assert_int_equal(p, i);
    }
    assert_int_equal(sizeof cmds / sizeof cmds[0], WIRE_CMD_COUNT);
    for (int i = 0; i < WIRE_CMD_COUNT; i++) {
        assert_string_equal(wire_cmd_to_string((enum wire_cmd)i), cmds[i]);
        assert_int_equal(wire_cmd_from_string(cmds[i], &c), 0);
        assert_int_equal(c, i);
    }
    for (int i = WIRE_READY; i <= WIRE_METRICS_PAGE; i++) {
        assert_int_equal(wire_type_from_string(wire_type_to_string((enum wire_type)i), &t), 0);
        assert_int_equal(t, i);
    }
    assert_null(wire_phase_to_string(WIRE_PHASE_COUNT));
    assert_null(wire_phase_to_string((enum wire_phase)-1));
    assert_null(wire_cmd_to_string(WIRE_CMD_COUNT));
    assert_null(wire_type_to_string((enum wire_type)(WIRE_METRICS_PAGE + 1)));
    p = WIRE_PHASE_SAVE;
    assert_int_equal(wire_phase_from_string("", &p), -EINVAL);
    assert_int_equal(wire_phase_from_string(NULL, &p), -EINVAL);
    assert_int_equal(wire_cmd_from_string("Status", &c), -EINVAL);
    assert_int_equal(p, WIRE_PHASE_SAVE);
}

/* ---- control requests -------------------------------------------------------------------- */

static void request_round_trip(const struct wire_request *req, const char *expected)
{
    struct wire_request back;
    const char *error = "untouched";
    size_t len;
    char *line = wire_request_format(req, &len);

    assert_non_null(line);
    assert_string_equal(line, expected);
    assert_int_equal(len, strlen(expected));
    assert_int_equal(wire_request_parse(line, len - 1, &back, &error), 0);
    assert_string_equal(error, "untouched");
    assert_int_equal(back.cmd, req->cmd);
    if (req->app) {
        assert_string_equal(back.app, req->app);
    } else {
        assert_null(back.app);
    }
    assert_int_equal(back.slot, req->slot);
    assert_int_equal(back.count, req->count);
    assert_int_equal(back.relative, req->relative);
    assert_int_equal(back.automatic, req->automatic);
    assert_int_equal(back.lines, req->lines);
    assert_int_equal(back.follow, req->follow);
    assert_int_equal(back.since, req->since);
    if (req->cmd == WIRE_CMD_METRICS) {
        assert_string_equal(back.format, req->format ? req->format : "text");
    } else {
        assert_null(back.format);
    }
    wire_request_done(&back);
    free(line);
}

static void test_request_round_trips(void **state)
{
    struct wire_request q;

    wire_request_init(&q, WIRE_CMD_STATUS);
    request_round_trip(&q, "{\"cmd\":\"status\"}\n");
    q.app = "web";
    request_round_trip(&q, "{\"cmd\":\"status\",\"app\":\"web\"}\n");

    wire_request_init(&q, WIRE_CMD_SCALE);
    q.app = "web";
    q.count = 3;
    request_round_trip(&q, "{\"cmd\":\"scale\",\"app\":\"web\",\"count\":3}\n");
    q.count = 1;
    q.relative = true;
    request_round_trip(&q, "{\"cmd\":\"scale\",\"app\":\"web\",\"count\":1,\"relative\":true}\n");
    q.count = -1;
    request_round_trip(&q, "{\"cmd\":\"scale\",\"app\":\"web\",\"count\":-1,\"relative\":true}\n");
    wire_request_init(&q, WIRE_CMD_SCALE);
    q.app = "web";
    q.automatic = true;
    request_round_trip(&q, "{\"cmd\":\"scale\",\"app\":\"web\",\"auto\":true}\n");

    wire_request_init(&q, WIRE_CMD_RESTART);
    q.app = "web";
    q.slot = 2;
    request_round_trip(&q, "{\"cmd\":\"restart\",\"app\":\"web\",\"slot\":2}\n");
    q.slot = -1;
    request_round_trip(&q, "{\"cmd\":\"restart\",\"app\":\"web\"}\n");

    wire_request_init(&q, WIRE_CMD_LOGS);
    q.app = "web";
    q.lines = 50;
    q.follow = true;
    request_round_trip(&q, "{\"cmd\":\"logs\",\"app\":\"web\",\"lines\":50,\"follow\":true}\n");
    wire_request_init(&q, WIRE_CMD_LOGS);
    request_round_trip(&q, "{\"cmd\":\"logs\"}\n");

    wire_request_init(&q, WIRE_CMD_EVENTS);
    q.since = 4000000000LL;
    q.follow = true;
    request_round_trip(&q, "{\"cmd\":\"events\",\"since\":4000000000,\"follow\":true}\n");
    wire_request_init(&q, WIRE_CMD_EVENTS);
    request_round_trip(&q, "{\"cmd\":\"events\"}\n");

    wire_request_init(&q, WIRE_CMD_METRICS);
    q.format = "json";
    request_round_trip(&q, "{\"cmd\":\"metrics\",\"format\":\"json\"}\n");
    q.format = NULL;
    request_round_trip(&q, "{\"cmd\":\"metrics\"}\n");

    static const enum wire_cmd optional_app[] = {WIRE_CMD_RELOAD, WIRE_CMD_STOP};
    for (size_t i = 0; i < 2; i++) {
        char expected[64];
        wire_request_init(&q, optional_app[i]);
        snprintf(expected, sizeof expected, "{\"cmd\":\"%s\"}\n", wire_cmd_to_string(q.cmd));
        request_round_trip(&q, expected);
        q.app = "api";
        snprintf(expected, sizeof expected, "{\"cmd\":\"%s\",\"app\":\"api\"}\n",
                 wire_cmd_to_string(q.cmd));
        request_round_trip(&q, expected);
    }
    wire_request_init(&q, WIRE_CMD_START);
    q.app = "api";
    request_round_trip(&q, "{\"cmd\":\"start\",\"app\":\"api\"}\n");
}

static void test_request_ignores_other_keys(void **state)
{
    /* Keys another command uses, or that a later version adds, are not this command's business. */
    const char *line =
        "{\"cmd\":\"status\",\"count\":\"x\",\"slot\":[],\"future\":{},\"app\":null}";
    struct wire_request q;
    const char *error = NULL;

    assert_int_equal(wire_request_parse(line, strlen(line), &q, &error), 0);
    assert_int_equal(q.cmd, WIRE_CMD_STATUS);
    assert_null(q.app);
    assert_int_equal(q.slot, -1);
    assert_int_equal(q.lines, -1);
    wire_request_done(&q);

    line = "{\"cmd\":\"scale\",\"app\":\"web\",\"count\":0}";
    assert_int_equal(wire_request_parse(line, strlen(line), &q, NULL), 0);
    assert_int_equal(q.count, 0);
    assert_false(q.relative);
    wire_request_done(&q);
}

static void test_request_rejects(void **state)
{
    static const struct {
        const char *line;
        const char *error;
    } cases[] = {
        {"", "request is not a JSON object"},
        {"[]", "request is not a JSON object"},
        {"{\"cmd\":\"status\"", "request is not a JSON object"},
        {"{}", "missing \"cmd\""},
        {"{\"cmd\":null}", "missing \"cmd\""},
        {"{\"cmd\":5}", "\"cmd\" must be a string"},
        {"{\"cmd\":\"x\"}", "unknown command"},
        {"{\"cmd\":\"STATUS\"}", "unknown command"},
        {"{\"cmd\":\"status\",\"app\":3}", "\"app\" must be a string"},
        {"{\"cmd\":\"status\",\"app\":\"\"}", "invalid \"app\""},
        {"{\"cmd\":\"start\"}", "missing \"app\""},
        {"{\"cmd\":\"restart\"}", "missing \"app\""},
        {"{\"cmd\":\"restart\",\"app\":\"web\",\"slot\":-1}", "\"slot\" must be an integer >= 0"},
        {"{\"cmd\":\"restart\",\"app\":\"web\",\"slot\":\"2\"}",
         "\"slot\" must be an integer >= 0"},
        {"{\"cmd\":\"restart\",\"app\":\"web\",\"slot\":2147483648}",
         "\"slot\" must be an integer >= 0"},
        {"{\"cmd\":\"scale\",\"app\":\"web\"}", "\"count\" must be an integer >= 0"},
        {"{\"cmd\":\"scale\",\"app\":\"web\",\"count\":-1}", "\"count\" must be an integer >= 0"},
        {"{\"cmd\":\"scale\",\"app\":\"web\",\"count\":2.0}", "\"count\" must be an integer >= 0"},
        {"{\"cmd\":\"scale\",\"app\":\"web\",\"count\":\"+1\"}",
         "\"count\" must be an integer >= 0"},
        {"{\"cmd\":\"scale\",\"app\":\"web\",\"count\":-2147483648,\"relative\":true}",
         "\"count\" must be an integer"},
        {"{\"cmd\":\"scale\",\"app\":\"web\",\"count\":1,\"relative\":1}",
         "\"relative\" must be a boolean"},
        {"{\"cmd\":\"scale\",\"count\":1}", "missing \"app\""},
        {"{\"cmd\":\"logs\",\"lines\":-5}", "\"lines\" must be an integer >= 0"},
        {"{\"cmd\":\"logs\",\"follow\":\"yes\"}", "\"follow\" must be a boolean"},
        {"{\"cmd\":\"events\",\"since\":-1}", "\"since\" must be an integer >= 0"},
        {"{\"cmd\":\"events\",\"since\":1.5}", "\"since\" must be an integer >= 0"},
        {"{\"cmd\":\"events\",\"follow\":1}", "\"follow\" must be a boolean"},
        {"{\"cmd\":\"metrics\",\"format\":\"xml\"}", "\"format\" must be \"text\" or \"json\""},
        {"{\"cmd\":\"metrics\",\"format\":false}", "\"format\" must be \"text\" or \"json\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct wire_request q = {.slot = 1234};
        const char *error = NULL;
        int r = wire_request_parse(cases[i].line, strlen(cases[i].line), &q, &error);
        if (r != -EPROTO || !error || strcmp(error, cases[i].error) != 0) {
            print_error("%s -> %d %s\n", cases[i].line, r, error ? error : "(null)");
        }
        assert_int_equal(r, -EPROTO);
        assert_string_equal(error, cases[i].error);
        assert_int_equal(q.slot, 1234);
        assert_null(q.app);
    }

    /* An app name of 256 bytes is one too many. */
    char line[400];
    char name[WIRE_NAME_MAX + 2];
    memset(name, 'a', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    snprintf(line, sizeof line, "{\"cmd\":\"stop\",\"app\":\"%s\"}", name);
    const char *error = NULL;
    struct wire_request q;
    assert_int_equal(wire_request_parse(line, strlen(line), &q, &error), -EPROTO);
    name[WIRE_NAME_MAX] = '\0';
    snprintf(line, sizeof line, "{\"cmd\":\"stop\",\"app\":\"%s\"}", name);
    assert_int_equal(wire_request_parse(line, strlen(line), &q, &error), 0);
    wire_request_done(&q);

    /* Too long to be a request, whatever it holds. */
    size_t n = WIRE_CONTROL_LINE_MAX + 1;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, ' ', n);
    memcpy(big, "{\"cmd\":\"status\"}", 16);
    assert_int_equal(wire_request_parse(big, n, &q, &error), -EMSGSIZE);
    assert_string_equal(error, "request too long");
    free(big);
}

static void test_request_format_unknown_cmd(void **state)
{
    struct wire_request q;
    size_t len;

    wire_request_init(&q, WIRE_CMD_COUNT);
    assert_null(wire_request_format(&q, &len));
}

/* ---- the framer -------------------------------------------------------------------------- */

/* Appends all of s, which must fit; checks the buffer bound after each step. */
static void feed(struct wire_lines *l, const char *s, size_t n)
{
    while (n > 0) {
        size_t room = 0;
        char *p = wire_lines_space(l, &room);
        assert_non_null(p);
        assert_true(room >= 1);
        size_t k = n < room ? n : room;
        memcpy(p, s, k);
        wire_lines_commit(l, k);
        assert_true(l->cap <= l->limit + 1);
        s += k;
        n -= k;
        if (n > 0) {
            /* Only legal when no complete line waits; the tests below feed in that shape. */
            const char *line;
            size_t len;
            assert_int_equal(wire_lines_next(l, &line, &len), 0);
        }
    }
}

static void expect_line(struct wire_lines *l, const char *expected)
{
    const char *line;
    size_t len;
    assert_int_equal(wire_lines_next(l, &line, &len), 1);
    assert_int_equal(len, strlen(expected));
    assert_memory_equal(line, expected, len);
}

static void expect_none(struct wire_lines *l)
{
    const char *line = NULL;
    size_t len = 99;
    assert_int_equal(wire_lines_next(l, &line, &len), 0);
    assert_null(line);
    assert_int_equal(len, 99);
}

static void test_lines_partial(void **state)
{
    struct wire_lines l;

    wire_lines_init(&l, 64);
    expect_none(&l);
    feed(&l, "{\"type\":", 8);
    expect_none(&l);
    feed(&l, "\"ready\"", 7);
    expect_none(&l);
    feed(&l, "}\n{\"ty", 6);
    expect_line(&l, "{\"type\":\"ready\"}");
    expect_none(&l);
    feed(&l, "pe\":1}\n", 7);
    expect_line(&l, "{\"type\":1}");
    expect_none(&l);
    wire_lines_done(&l);
    assert_null(l.buf);
    assert_int_equal(l.limit, 64);
}

static void test_lines_many_in_one_chunk(void **state)
{
    struct wire_lines l;
    const char *chunk = "a\n\nbb\nccc\ndd";

    wire_lines_init(&l, 64);
    feed(&l, chunk, strlen(chunk));
    expect_line(&l, "a");
    expect_line(&l, "");
    expect_line(&l, "bb");
    expect_line(&l, "ccc");
    expect_none(&l);
    feed(&l, "d\n", 2);
    expect_line(&l, "ddd");
    expect_none(&l);
    wire_lines_done(&l);
}

static void test_lines_embedded_nul(void **state)
{
    struct wire_lines l;
    static const char chunk[] = "a\0b\n";
    const char *line;
    size_t len;

    wire_lines_init(&l, 16);
    feed(&l, chunk, sizeof chunk - 1);
    assert_int_equal(wire_lines_next(&l, &line, &len), 1);
    assert_int_equal(len, 3);
    assert_memory_equal(line, "a\0b", 3);
    wire_lines_done(&l);
}

static void test_lines_limit(void **state)
{
    struct wire_lines l;
    char buf[64];
    size_t room;

    /* A line of exactly the limit, then its newline, fits. */
    wire_lines_init(&l, 16);
    memset(buf, 'x', 16);
    buf[16] = '\n';
    feed(&l, buf, 16);
    expect_none(&l);
    feed(&l, buf + 16, 1);
    assert_int_equal(l.cap, 17);
    expect_line(&l, "xxxxxxxxxxxxxxxx");
    expect_none(&l);

    /* One byte more without a newline is over: refused now and from then on. */
    feed(&l, buf, 16);
    expect_none(&l);
    feed(&l, "y", 1);
    const char *line;
    size_t len;
    assert_int_equal(wire_lines_next(&l, &line, &len), -EMSGSIZE);
    assert_null(wire_lines_space(&l, &room));
    assert_int_equal(wire_lines_next(&l, &line, &len), -EMSGSIZE);
    assert_true(l.cap <= l.limit + 1);
    assert_true(l.len <= l.limit + 1);
    wire_lines_done(&l);

    /* The overflow is seen when the long line started behind a complete one. */
    wire_lines_init(&l, 4);
    feed(&l, "a\nbcd", 5);
    expect_line(&l, "a");
    expect_none(&l);
    feed(&l, "ef", 2);
    assert_int_equal(wire_lines_next(&l, &line, &len), -EMSGSIZE);
    assert_true(l.len <= l.limit + 1);
    wire_lines_done(&l);

    /* A zero limit still frames empty lines. */
    wire_lines_init(&l, 0);
    feed(&l, "\n", 1);
    expect_line(&l, "");
    feed(&l, "x", 1);
    assert_int_equal(wire_lines_next(&l, &line, &len), -EMSGSIZE);
    wire_lines_done(&l);
}

static void test_lines_untaken_lines_fill(void **state)
{
    struct wire_lines l;
    size_t room;

    /* A caller that stops taking lines cannot make the buffer grow past the limit. */
    wire_lines_init(&l, 4);
    char *p = wire_lines_space(&l, &room);
    assert_non_null(p);
    assert_int_equal(room, 5);
    memcpy(p, "a\nb\nc", 5);
    wire_lines_commit(&l, 99);  /* over-claiming is clamped */
    assert_int_equal(l.len, 5);
    assert_null(wire_lines_space(&l, &room));
    expect_line(&l, "a");
    expect_line(&l, "b");
    expect_none(&l);
    p = wire_lines_space(&l, &room);
    assert_non_null(p);
    assert_int_equal(room, 4);
    assert_int_equal(l.len, 1);
    wire_lines_done(&l);
}

static void test_lines_big_limit_grows_and_shrinks(void **state)
{
    struct wire_lines l;
    size_t big = 300 * 1024;
    char *line = malloc(big + 1);
    size_t room;

    assert_non_null(line);
    memset(line, 'z', big);
    line[big] = '\n';
    wire_lines_init(&l, WIRE_LINE_MAX);
    assert_non_null(wire_lines_space(&l, &room));
    assert_true(l.cap <= 8192);     /* a fresh channel does not hold a megabyte */
    feed(&l, line, big + 1);
    assert_true(l.cap >= big + 1 && l.cap <= WIRE_LINE_MAX + 1);
    const char *got;
    size_t len;
    assert_int_equal(wire_lines_next(&l, &got, &len), 1);
    assert_int_equal(len, big);
    expect_none(&l);
    assert_non_null(wire_lines_space(&l, &room));
    assert_true(l.cap <= 8192);     /* drained: the big buffer went back */
    wire_lines_done(&l);
    free(line);
}

/* A deterministic generator, so a failure reproduces. */
static uint32_t rng_next(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*s >> 33);
}

static void test_lines_random_stream(void **state)
{
    enum { LIMIT = 300, LINES = 5000 };
    uint64_t seed = 42;
    size_t total = 0;
    size_t *lens = malloc(LINES * sizeof(size_t));
    char *stream;
    struct wire_lines l;

    assert_non_null(lens);
    for (int i = 0; i < LINES; i++) {
        lens[i] = rng_next(&seed) % (LIMIT + 1);
        total += lens[i] + 1;
    }
    stream = malloc(total);
    assert_non_null(stream);
    size_t o = 0;
    for (int i = 0; i < LINES; i++) {
        for (size_t k = 0; k < lens[i]; k++) {
            stream[o++] = (char)('a' + (i + (int)k) % 26);
        }
        stream[o++] = '\n';
    }

    /* Chunks of random size, from 1 byte to several lines, as a socket delivers them. */
    wire_lines_init(&l, LIMIT);
    int next_line = 0;
    size_t pos = 0, expect_pos = 0;
    while (pos < total) {
        size_t room;
        char *p = wire_lines_space(&l, &room);
        assert_non_null(p);
        size_t want = 1 + rng_next(&seed) % 700;
        size_t k = want < room ? want : room;
        if (k > total - pos) {
            k = total - pos;
        }
        memcpy(p, stream + pos, k);
        wire_lines_commit(&l, k);
        pos += k;
        assert_true(l.cap <= LIMIT + 1);
        const char *line;
        size_t len;
        int r;
        while ((r = wire_lines_next(&l, &line, &len)) == 1) {
            assert_true(next_line < LINES);
            assert_int_equal(len, lens[next_line]);
            assert_memory_equal(line, stream + expect_pos, len);
            expect_pos += len + 1;
            next_line++;
        }
        assert_int_equal(r, 0);
    }
    assert_int_equal(next_line, LINES);
    wire_lines_done(&l);
    free(stream);
    free(lens);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msg_round_trip_simple),
        cmocka_unit_test(test_msg_round_trip_status),
        cmocka_unit_test(test_msg_round_trip_recycle),
        cmocka_unit_test(test_msg_round_trip_phases),
        cmocka_unit_test(test_msg_round_trip_metrics),
        cmocka_unit_test(test_msg_round_trip_metrics_page),
        cmocka_unit_test(test_msg_unknown_keys_ignored),
        cmocka_unit_test(test_msg_rejects_malformed),
        cmocka_unit_test(test_msg_deep_nesting),
        cmocka_unit_test(test_msg_too_long),
        cmocka_unit_test(test_msg_format_lossy_utf8),
        cmocka_unit_test(test_msg_format_out_of_range),
        cmocka_unit_test(test_enum_strings),
        cmocka_unit_test(test_request_round_trips),
        cmocka_unit_test(test_request_ignores_other_keys),
        cmocka_unit_test(test_request_rejects),
        cmocka_unit_test(test_request_format_unknown_cmd),
        cmocka_unit_test(test_lines_partial),
        cmocka_unit_test(test_lines_many_in_one_chunk),
        cmocka_unit_test(test_lines_embedded_nul),
        cmocka_unit_test(test_lines_limit),
        cmocka_unit_test(test_lines_untaken_lines_fill),
        cmocka_unit_test(test_lines_big_limit_grows_and_shrinks),
        cmocka_unit_test(test_lines_random_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
