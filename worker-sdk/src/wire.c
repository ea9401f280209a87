/*
 * wire: channel messages, control requests and line framing (SPEC sections 4 and 7).
 *
 * Every line that reaches this file came from another process and may be hostile: a worker
 * that sends garbage, a fuzzer, a half-written request. So parsing is strict about what it
 * uses (each field's JSON type and range is checked before it is read) and lenient about what
 * it does not (unknown keys are ignored, so either side can grow the protocol). jansson does
 * the JSON: it rejects invalid UTF-8, "\u0000" inside strings (so every string we hand out is
 * a proper C string), integers that overflow, and nesting deeper than its fixed limit.
 * Formatting goes the other way through jansson too, so the two directions cannot disagree on
 * escaping. Nothing here does I/O, logs, or keeps state between calls.
 */
#include "wire.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bytebuf.h"

static const char *const type_names[] = {
    [WIRE_READY] = "ready",
    [WIRE_STATUS] = "status",
    [WIRE_HEARTBEAT] = "heartbeat",
    [WIRE_PHASE_DONE] = "phase_done",
    [WIRE_METRICS] = "metrics",
    [WIRE_GET_METRICS] = "get_metrics",
    [WIRE_RECYCLE] = "recycle",
    [WIRE_PHASE] = "phase",
    [WIRE_COLLECT] = "collect",
    [WIRE_METRICS_PAGE] = "metrics_page",
};
#define TYPE_COUNT (sizeof(type_names) / sizeof(type_names[0]))

static const char *const phase_names[WIRE_PHASE_COUNT] = {
    [WIRE_PHASE_INITIATED] = "initiated",
    [WIRE_PHASE_DRAIN] = "drain",
    [WIRE_PHASE_SAVE] = "save",
    [WIRE_PHASE_CLOSE] = "close",
    [WIRE_PHASE_CLEANUP] = "cleanup",
    [WIRE_PHASE_COMPLETE] = "complete",
};

static const char *const cmd_names[WIRE_CMD_COUNT] = {
    [WIRE_CMD_STATUS] = "status",
    [WIRE_CMD_RELOAD] = "reload",
    [WIRE_CMD_RESTART] = "restart",
    [WIRE_CMD_SCALE] = "scale",
    [WIRE_CMD_STOP] = "stop",
    [WIRE_CMD_START] = "start",
    [WIRE_CMD_METRICS] = "metrics",
    [WIRE_CMD_LOGS] = "logs",
    [WIRE_CMD_EVENTS] = "events",
    [WIRE_CMD_UPGRADE] = "upgrade",
};

/* Looks s up in a table of names; the index is the enum value. */
static int name_lookup(const char *const *names, size_t n, const char *s)
{
    if (!s) {
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (names[i] && strcmp(names[i], s) == 0) {
            return (int)i;
        }
    }
    return -EINVAL;
}

const char *wire_type_to_string(enum wire_type type)
{
    return (unsigned)type < TYPE_COUNT ? type_names[type] : NULL;
}

int wire_type_from_string(const char *s, enum wire_type *ret)
{
    int i = name_lookup(type_names, TYPE_COUNT, s);
    if (i < 0) {
        return i;
    }
    *ret = (enum wire_type)i;
    return 0;
}

const char *wire_phase_to_string(enum wire_phase phase)
{
    return (unsigned)phase < WIRE_PHASE_COUNT ? phase_names[phase] : NULL;
}

int wire_phase_from_string(const char *s, enum wire_phase *ret)
{
    int i = name_lookup(phase_names, WIRE_PHASE_COUNT, s);
    if (i < 0) {
        return i;
    }
    *ret = (enum wire_phase)i;
    return 0;
}

const char *wire_cmd_to_string(enum wire_cmd cmd)
{
    return (unsigned)cmd < WIRE_CMD_COUNT ? cmd_names[cmd] : NULL;
}

int wire_cmd_from_string(const char *s, enum wire_cmd *ret)
{
    int i = name_lookup(cmd_names, WIRE_CMD_COUNT, s);
    if (i < 0) {
        return i;
    }
    *ret = (enum wire_cmd)i;
    return 0;
}

/* ---- helpers shared by both formats ---------------------------------------------------- */

/*
 * Parses a line that must be a JSON object. Duplicate keys are refused: a line that says two
 * things at once has no honest reading. Returns a new reference or NULL.
 */
static json_t *object_load(const char *line, size_t len)
{
    json_error_t error;
    json_t *root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &error);
    if (root && !json_is_object(root)) {
        json_decref(root);
        return NULL;
    }
    return root;
}

/* See wire.h. */
int wire_member_string(json_t *obj, const char *key, const char **ret)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *ret = NULL;
        return 0;
    }
    if (!json_is_string(v)) {
        return -EPROTO;
    }
    *ret = json_string_value(v);
    return 0;
}

/*
 * Reads an optional integer member into [min, max]. Returns 1 with *ret set, 0 when absent
 * (or null), -EPROTO when it is not an integer (1.0 is not) or out of range.
 */
static int member_int(json_t *obj, const char *key, json_int_t min, json_int_t max,
                      json_int_t *ret)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        return 0;
    }
    if (!json_is_integer(v)) {
        return -EPROTO;
    }
    json_int_t i = json_integer_value(v);
    if (i < min || i > max) {
        return -EPROTO;
    }
    *ret = i;
    return 1;
}

/* Reads an optional boolean member. Returns 0 (absent: *ret = false) or -EPROTO. */
static int member_bool(json_t *obj, const char *key, bool *ret)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *ret = false;
        return 0;
    }
    if (!json_is_boolean(v)) {
        return -EPROTO;
    }
    *ret = json_is_true(v);
    return 0;
}

static bool format_is_valid(const char *s)
{
    return strcmp(s, "text") == 0 || strcmp(s, "json") == 0;
}

/*
 * Length of the valid UTF-8 sequence at s (at most n bytes), or 0 if the bytes there do not
 * start one. Overlong forms, surrogates and code points past U+10FFFF are invalid, exactly as
 * jansson's decoder judges them, so whatever we emit the other side accepts.
 */
static size_t utf8_sequence(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t need;
    unsigned int cp;
    if (c < 0x80) {
        return 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
        need = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < need) {
        return 0;
    }
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((need == 3 && cp < 0x800) || (need == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return need;
}

/*
 * A JSON string from a C string that may not be UTF-8: each byte that does not start a valid
 * sequence becomes U+FFFD. NULL counts as "". Returns a new reference or NULL (no memory).
 */
static json_t *string_lossy(const char *s)
{
    if (!s) {
        return json_string("");
    }
    size_t n = strlen(s);
    size_t bad = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_sequence((const unsigned char *)s + i, n - i);
        if (k == 0) {
            bad++;
            k = 1;
        }
        i += k;
    }
    if (bad == 0) {
        return json_stringn(s, n);
    }
    /* Each bad byte grows to three; n + 2 * bad cannot overflow for a string in memory. */
    char *copy = malloc(n + 2 * bad + 1);
    if (!copy) {
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_sequence((const unsigned char *)s + i, n - i);
        if (k == 0) {
            memcpy(copy + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(copy + o, s + i, k);
            o += k;
            i += k;
        }
    }
    json_t *v = json_stringn(copy, o);
    free(copy);
    return v;
}

/* Sets obj[key] to a new value, taking the reference; a NULL value (no memory) fails. */
static int set_new(json_t *obj, const char *key, json_t *value)
{
    if (!value) {
        return -ENOMEM;
    }
    return json_object_set_new(obj, key, value) == 0 ? 0 : -ENOMEM;
}

/* ---- channel messages ------------------------------------------------------------------- */

/* Copies a string member that must be present into *ret (malloc'd). */
static int take_string(json_t *obj, const char *key, char **ret)
{
    const char *s;
    int r = wire_member_string(obj, key, &s);
    if (r < 0) {
        return r;
    }
    if (!s) {
        return -EPROTO;
    }
    char *copy = strdup(s);
    if (!copy) {
        return -ENOMEM;
    }
    *ret = copy;
    return 0;
}

/* Reads "format" ("text" or "json"); absent means "text" when optional. */
static int take_format(json_t *obj, bool optional, char **ret)
{
    const char *s;
    int r = wire_member_string(obj, "format", &s);
    if (r < 0) {
        return r;
    }
    if (!s) {
        if (!optional) {
            return -EPROTO;
        }
        s = "text";
    }
    if (!format_is_valid(s)) {
        return -EPROTO;
    }
    char *copy = strdup(s);
    if (!copy) {
        return -ENOMEM;
    }
    *ret = copy;
    return 0;
}

static int take_phase(json_t *obj, enum wire_phase *ret)
{
    const char *s;
    int r = wire_member_string(obj, "phase", &s);
    if (r < 0) {
        return r;
    }
    return wire_phase_from_string(s, ret) == 0 ? 0 : -EPROTO;
}

int wire_msg_parse(const char *line, size_t len, struct wire_msg *ret)
{
    struct wire_msg m = {.timeout_ms = -1};
    json_t *root = NULL;
    const char *type;
    int r;

    if (len > WIRE_LINE_MAX) {
        return -EMSGSIZE;
    }
    root = object_load(line, len);
    if (!root) {
        return -EPROTO;
    }
    r = wire_member_string(root, "type", &type);
    if (r < 0) {
        goto out;
    }
    if (wire_type_from_string(type, &m.type) < 0) {
        r = -EPROTO;
        goto out;
    }

    switch (m.type) {
    case WIRE_READY:
    case WIRE_HEARTBEAT:
    case WIRE_COLLECT:
        break;
    case WIRE_STATUS:
        r = take_string(root, "text", &m.text);
        break;
    case WIRE_RECYCLE: {
        const char *reason = NULL;
        r = wire_member_string(root, "reason", &reason);
        if (r == 0 && !(m.text = strdup(reason ? reason : ""))) {
            r = -ENOMEM;
        }
        break;
    }
    case WIRE_PHASE_DONE:
        r = take_phase(root, &m.phase);
        break;
    case WIRE_PHASE: {
        json_int_t t;
        r = take_phase(root, &m.phase);
        if (r < 0) {
            break;
        }
        r = member_int(root, "timeout_ms", 0, INT64_MAX, &t);
        if (r == 1) {
            m.timeout_ms = t;
            r = 0;
        }
        break;
    }
    case WIRE_METRICS: {
        json_t *families = json_object_get(root, "families");
        if (!json_is_array(families)) {
            r = -EPROTO;
            break;
        }
        m.families = json_incref(families);
        break;
    }
    case WIRE_GET_METRICS:
        r = take_format(root, true, &m.format);
        break;
    case WIRE_METRICS_PAGE:
        r = take_format(root, true, &m.format);
        if (r == 0) {
            r = take_string(root, "body", &m.body);
        }
        break;
    }
    if (r < 0) {
        goto out;
    }

    *ret = m;
    m = (struct wire_msg){0};
out:
    wire_msg_done(&m);
    json_decref(root);
    return r;
}

char *wire_msg_format(const struct wire_msg *msg, size_t *ret_len)
{
    const char *type = wire_type_to_string(msg->type);
    char *line = NULL;
    json_t *obj = NULL;
    int r;

    if (!type) {
        return NULL;
    }
    obj = json_object();
    if (!obj) {
        return NULL;
    }
    r = set_new(obj, "type", json_string(type));
    if (r < 0) {
        goto out;
    }

    switch (msg->type) {
    case WIRE_READY:
    case WIRE_HEARTBEAT:
    case WIRE_COLLECT:
        break;
    case WIRE_STATUS:
        r = set_new(obj, "text", string_lossy(msg->text));
        break;
    case WIRE_RECYCLE:
        r = set_new(obj, "reason", string_lossy(msg->text ? msg->text : ""));
        break;
    case WIRE_PHASE_DONE:
    case WIRE_PHASE: {
        const char *phase = wire_phase_to_string(msg->phase);
        if (!phase) {
            r = -EINVAL;
            break;
        }
        r = set_new(obj, "phase", json_string(phase));
        if (r == 0 && msg->type == WIRE_PHASE && msg->timeout_ms >= 0) {
            r = set_new(obj, "timeout_ms", json_integer(msg->timeout_ms));
        }
        break;
    }
    case WIRE_METRICS:
        if (msg->families) {
            r = json_object_set(obj, "families", msg->families) == 0 ? 0 : -ENOMEM;
        } else {
            r = set_new(obj, "families", json_array());
        }
        break;
    case WIRE_GET_METRICS:
    case WIRE_METRICS_PAGE:
        r = set_new(obj, "format", string_lossy(msg->format ? msg->format : "text"));
        if (r == 0 && msg->type == WIRE_METRICS_PAGE) {
            r = set_new(obj, "body", string_lossy(msg->body));
        }
        break;
    }
    if (r < 0) {
        goto out;
    }
    line = json_line_dump(obj, JSON_COMPACT, ret_len);
out:
    json_decref(obj);
    return line;
}

void wire_msg_done(struct wire_msg *msg)
{
    free(msg->text);
    free(msg->format);
    free(msg->body);
    json_decref(msg->families);
    msg->text = msg->format = msg->body = NULL;
    msg->families = NULL;
}

/* ---- control requests ------------------------------------------------------------------- */

void wire_request_init(struct wire_request *req, enum wire_cmd cmd)
{
    *req = (struct wire_request){.cmd = cmd, .slot = -1, .lines = -1};
}

/* Reads "app": required or optional, non-empty, bounded. */
static int take_app(json_t *obj, bool required, char **ret, const char **ret_error)
{
    const char *s;
    if (wire_member_string(obj, "app", &s) < 0) {
        *ret_error = "\"app\" must be a string";
        return -EPROTO;
    }
    if (!s) {
        if (required) {
            *ret_error = "missing \"app\"";
            return -EPROTO;
        }
        return 0;
    }
    if (s[0] == '\0' || strlen(s) > WIRE_NAME_MAX) {
        *ret_error = "invalid \"app\"";
        return -EPROTO;
    }
    char *copy = strdup(s);
    if (!copy) {
        *ret_error = "out of memory";
        return -ENOMEM;
    }
    *ret = copy;
    return 0;
}

int wire_request_parse(const char *line, size_t len, struct wire_request *ret,
                       const char **ret_error)
{
    struct wire_request q;
    const char *error = NULL;
    const char *cmd;
    json_t *root = NULL;
    json_int_t i;
    int r;

    wire_request_init(&q, WIRE_CMD_STATUS);
    if (len > WIRE_CONTROL_LINE_MAX) {
        r = -EMSGSIZE;
        error = "request too long";
        goto out;
    }
    root = object_load(line, len);
    if (!root) {
        r = -EPROTO;
        error = "request is not a JSON object";
        goto out;
    }
    r = wire_member_string(root, "cmd", &cmd);
    if (r < 0 || !cmd) {
        error = r < 0 ? "\"cmd\" must be a string" : "missing \"cmd\"";
        r = -EPROTO;
        goto out;
    }
    if (wire_cmd_from_string(cmd, &q.cmd) < 0) {
        r = -EPROTO;
        error = "unknown command";
        goto out;
    }

    bool app_required = q.cmd == WIRE_CMD_START || q.cmd == WIRE_CMD_RESTART ||
                        q.cmd == WIRE_CMD_SCALE;
    if (q.cmd != WIRE_CMD_METRICS && q.cmd != WIRE_CMD_UPGRADE) {
        r = take_app(root, app_required, &q.app, &error);
        if (r < 0) {
            goto out;
        }
    }

    switch (q.cmd) {
    case WIRE_CMD_RELOAD:
        if (member_bool(root, "dry_run", &q.dry_run) < 0) {
            r = -EPROTO;
            error = "\"dry_run\" must be a boolean";
            goto out;
        }
        break;
    case WIRE_CMD_STATUS:
    case WIRE_CMD_STOP:
    case WIRE_CMD_START:
    case WIRE_CMD_COUNT:
        break;
    case WIRE_CMD_RESTART:
        r = member_int(root, "slot", 0, INT_MAX, &i);
        if (r < 0) {
            error = "\"slot\" must be an integer >= 0";
            goto out;
        }
        if (r == 1) {
            q.slot = (int)i;
        }
        break;
    case WIRE_CMD_SCALE:
        if (member_bool(root, "auto", &q.automatic) < 0) {
            r = -EPROTO;
            error = "\"auto\" must be a boolean";
            goto out;
        }
        if (q.automatic) {
            break;
        }
        if (member_bool(root, "relative", &q.relative) < 0) {
            r = -EPROTO;
            error = "\"relative\" must be a boolean";
            goto out;
        }
        r = member_int(root, "count", q.relative ? -INT_MAX : 0, INT_MAX, &i);
        if (r <= 0) {
            r = -EPROTO;
            error = q.relative ? "\"count\" must be an integer"
                               : "\"count\" must be an integer >= 0";
            goto out;
        }
        q.count = (int)i;
        break;
    case WIRE_CMD_LOGS:
        r = member_int(root, "lines", 0, INT_MAX, &i);
        if (r < 0) {
            error = "\"lines\" must be an integer >= 0";
            goto out;
        }
        if (r == 1) {
            q.lines = (int)i;
        }
        if (member_bool(root, "follow", &q.follow) < 0) {
            r = -EPROTO;
            error = "\"follow\" must be a boolean";
            goto out;
        }
        break;
    case WIRE_CMD_EVENTS:
        r = member_int(root, "since", 0, INT64_MAX, &i);
        if (r < 0) {
            error = "\"since\" must be an integer >= 0";
            goto out;
        }
        if (r == 1) {
            q.since = (int64_t)i;
        }
        if (member_bool(root, "follow", &q.follow) < 0) {
            r = -EPROTO;
            error = "\"follow\" must be a boolean";
            goto out;
        }
        break;
    case WIRE_CMD_UPGRADE: {
        const char *b = NULL;
        if (wire_member_string(root, "binary", &b) < 0 || (b && !*b)) {
            r = -EPROTO;
            error = "\"binary\" must be a path";
            goto out;
        }
        if (b && !(q.binary = strdup(b))) {
            r = -ENOMEM;
            error = "out of memory";
            goto out;
        }
        break;
    }
    case WIRE_CMD_METRICS:
        r = take_format(root, true, &q.format);
        if (r < 0) {
            error = r == -ENOMEM ? "out of memory" : "\"format\" must be \"text\" or \"json\"";
            goto out;
        }
        break;
    }
    r = 0;

    *ret = q;
    wire_request_init(&q, WIRE_CMD_STATUS);
out:
    if (r < 0 && ret_error) {
        *ret_error = error;
    }
    wire_request_done(&q);
    json_decref(root);
    return r;
}

void wire_request_done(struct wire_request *req)
{
    free(req->app);
    free(req->format);
    free(req->binary);
    req->app = NULL;
    req->format = NULL;
    req->binary = NULL;
}

char *wire_request_format(const struct wire_request *req, size_t *ret_len)
{
    const char *cmd = wire_cmd_to_string(req->cmd);
    char *line = NULL;
    json_t *obj = NULL;
    int r;

    if (!cmd) {
        return NULL;
    }
    obj = json_object();
    if (!obj) {
        return NULL;
    }
    r = set_new(obj, "cmd", json_string(cmd));
    if (r == 0 && req->app && req->cmd != WIRE_CMD_METRICS) {
        r = set_new(obj, "app", string_lossy(req->app));
    }
    if (r < 0) {
        goto out;
    }
    switch (req->cmd) {
    case WIRE_CMD_RELOAD:
        if (req->dry_run) {
            r = set_new(obj, "dry_run", json_true());
        }
        break;
    case WIRE_CMD_RESTART:
        if (req->slot >= 0) {
            r = set_new(obj, "slot", json_integer(req->slot));
        }
        break;
    case WIRE_CMD_SCALE:
        if (req->automatic) {
            r = set_new(obj, "auto", json_true());
            break;
        }
        r = set_new(obj, "count", json_integer(req->count));
        if (r == 0 && req->relative) {
            r = set_new(obj, "relative", json_true());
        }
        break;
    case WIRE_CMD_LOGS:
        if (req->lines >= 0) {
            r = set_new(obj, "lines", json_integer(req->lines));
        }
        if (r == 0 && req->follow) {
            r = set_new(obj, "follow", json_true());
        }
        break;
    case WIRE_CMD_EVENTS:
        if (req->since > 0) {
            r = set_new(obj, "since", json_integer((json_int_t)req->since));
        }
        if (r == 0 && req->follow) {
            r = set_new(obj, "follow", json_true());
        }
        break;
    case WIRE_CMD_METRICS:
        if (req->format) {
            r = set_new(obj, "format", string_lossy(req->format));
        }
        break;
    case WIRE_CMD_UPGRADE:
        if (req->binary) {
            r = set_new(obj, "binary", string_lossy(req->binary));
        }
        break;
    default:
        break;
    }
    if (r < 0) {
        goto out;
    }
    line = json_line_dump(obj, JSON_COMPACT, ret_len);
out:
    json_decref(obj);
    return line;
}

/* ---- line framing ----------------------------------------------------------------------- */

/* The first allocation, and the least room a read is offered. */
#define LINES_SMALL 4096u
/* A drained buffer larger than this is released: only a rare long line needed it. */
#define LINES_KEEP (64u * 1024u)

void wire_lines_init(struct wire_lines *l, size_t limit)
{
    /* limit + 1 must not wrap around. */
    *l = (struct wire_lines){.limit = limit < SIZE_MAX / 2 ? limit : SIZE_MAX / 2};
}

void wire_lines_done(struct wire_lines *l)
{
    free(l->buf);
    wire_lines_init(l, l->limit);
}

char *wire_lines_space(struct wire_lines *l, size_t *ret_room)
{
    /* The largest buffer ever needed: a line of exactly limit bytes and its newline. */
    size_t max = l->limit + 1;

    /* Drop the lines already taken, so that the pending partial line starts at 0. */
    if (l->start > 0) {
        memmove(l->buf, l->buf + l->start, l->len - l->start);
        l->len -= l->start;
        l->scan = l->scan > l->start ? l->scan - l->start : 0;
        l->start = 0;
    }
    if (l->len == 0 && l->cap > LINES_KEEP) {
        free(l->buf);
        l->buf = NULL;
        l->cap = 0;
    }
    if (l->len >= max) {
        /* Either an over-long partial line or untaken lines: both leave no room. */
        return NULL;
    }

    /* Grow geometrically while there is less than a small buffer's worth of room. */
    if (l->cap - l->len < LINES_SMALL && l->cap < max) {
        size_t cap = l->cap ? l->cap : LINES_SMALL;
        while (cap - l->len < LINES_SMALL && cap < max) {
            cap = cap > max / 2 ? max : cap * 2;
        }
        if (cap > max) {
            cap = max;
        }
        char *buf = realloc(l->buf, cap);
        if (!buf) {
            return NULL;
        }
        l->buf = buf;
        l->cap = cap;
    }
    *ret_room = l->cap - l->len;
    return l->buf + l->len;
}

void wire_lines_commit(struct wire_lines *l, size_t n)
{
    /* A caller that claims more than it was given must not push len past the buffer. */
    if (n > l->cap - l->len) {
        n = l->cap - l->len;
    }
    l->len += n;
}

int wire_lines_next(struct wire_lines *l, const char **ret_line, size_t *ret_len)
{
    size_t from = l->scan > l->start ? l->scan : l->start;
    char *nl = from < l->len ? memchr(l->buf + from, '\n', l->len - from) : NULL;

    if (!nl) {
        l->scan = l->len;
        return l->len - l->start > l->limit ? -EMSGSIZE : 0;
    }
    size_t end = (size_t)(nl - l->buf);
    if (end - l->start > l->limit) {
        return -EMSGSIZE;
    }
    *ret_line = l->buf + l->start;
    *ret_len = end - l->start;
    l->start = end + 1;
    l->scan = l->start;
    return 1;
}
