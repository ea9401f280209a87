/*
 * logline: a worker's output line as a log record's parts. See logline.h for the rules.
 *
 * Levels arrive in many dialects: pino and bunyan write numbers (30 = info), Python's logging
 * and gunicorn write "INFO"/"WARNING"/"CRITICAL", syslog-minded code writes "err", "crit" or a
 * `<3>` prefix. All of them land on drover's six words so that one field has one type and one
 * vocabulary in the whole stream, and a reader can filter on "level":"error" and mean it.
 */
#include "logline.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const level_names[] = {
    [LOG_TRACE] = "trace", [LOG_DEBUG] = "debug", [LOG_INFO] = "info",
    [LOG_WARN] = "warn",   [LOG_ERROR] = "error", [LOG_FATAL] = "fatal",
};

const char *logline_level_to_string(enum log_level level)
{
    if ((unsigned)level < sizeof level_names / sizeof level_names[0]) {
        return level_names[level];
    }
    return "info";
}

/* syslog severities 0 (emerg) .. 7 (debug), as sd-daemon.h's SD_EMERG .. SD_DEBUG. */
static const enum log_level syslog_levels[8] = {
    LOG_FATAL, LOG_FATAL, LOG_FATAL, LOG_ERROR, LOG_WARN, LOG_INFO, LOG_INFO, LOG_DEBUG,
};

static const struct {
    const char *word;
    enum log_level level;
} level_words[] = {
    {"trace", LOG_TRACE},      {"silly", LOG_TRACE},        {"debug", LOG_DEBUG},
    {"dbg", LOG_DEBUG},        {"verbose", LOG_DEBUG},      {"info", LOG_INFO},
    {"information", LOG_INFO}, {"informational", LOG_INFO}, {"notice", LOG_INFO},
    {"http", LOG_INFO},        {"warn", LOG_WARN},          {"warning", LOG_WARN},
    {"error", LOG_ERROR},      {"err", LOG_ERROR},          {"fatal", LOG_FATAL},
    {"critical", LOG_FATAL},   {"crit", LOG_FATAL},         {"alert", LOG_FATAL},
    {"emerg", LOG_FATAL},      {"emergency", LOG_FATAL},    {"panic", LOG_FATAL},
};

int logline_level_from_json(const json_t *value, enum log_level *ret, bool *ret_exact)
{
    if (json_is_string(value)) {
        const char *s = json_string_value(value);
        for (size_t i = 0; i < sizeof level_words / sizeof level_words[0]; i++) {
            if (strcasecmp(s, level_words[i].word) == 0) {
                *ret = level_words[i].level;
                *ret_exact = true;
                return 0;
            }
        }
        return -EINVAL;
    }
    if (!json_is_number(value)) {
        return -EINVAL;
    }
    double v = json_number_value(value);
    if (!isfinite(v)) {
        return -EINVAL;
    }
    if (v >= 0 && v <= 7 && v == trunc(v)) {
        *ret = syslog_levels[(int)v];
        *ret_exact = false;
        return 0;
    }
    if (v < 10) {
        return -EINVAL;
    }
    /* pino and bunyan: 10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal; a custom level
     * in between counts as the standard level below it. */
    enum log_level level = v >= 60   ? LOG_FATAL
                           : v >= 50 ? LOG_ERROR
                           : v >= 40 ? LOG_WARN
                           : v >= 30 ? LOG_INFO
                           : v >= 20 ? LOG_DEBUG
                                     : LOG_TRACE;
    *ret = level;
    *ret_exact = v <= 60 && v == trunc(v) && (int)v % 10 == 0;
    return 0;
}

size_t logline_syslog_prefix(const char *line, size_t len, enum log_level *ret)
{
    if (len < 3 || line[0] != '<' || line[1] < '0' || line[1] > '7' || line[2] != '>') {
        return 0;
    }
    *ret = syslog_levels[line[1] - '0'];
    return 3;
}

json_t *logline_json_text(const char *text, size_t len)
{
    json_t *s = json_stringn(text, len);
    if (s) {
        return s;
    }
    /* Not UTF-8: keep the bytes readable rather than lose the line. */
    char *copy = malloc(len ? len : 1);
    if (!copy) {
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        copy[i] = c >= 0x80 || c == 0 ? '?' : (char)c;
    }
    s = json_stringn(copy, len);
    free(copy);
    return s;
}

static const char *const drovers_keys[] = {"ts", "level", "app", "worker", "pid", "msg", "stream"};

bool logline_key_is_drovers(const char *key)
{
    for (size_t i = 0; i < sizeof drovers_keys / sizeof drovers_keys[0]; i++) {
        if (strcmp(key, drovers_keys[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* A worker's member that cannot go in under its own name: kept as "line_<key>" when the worker
 * does not use that name itself, else dropped. Returns 0 or -ENOMEM. */
static int logline_keep_renamed(json_t *rec, json_t *obj, const char *key, json_t *value)
{
    char name[32];
    snprintf(name, sizeof name, "line_%s", key); /* key is one of drovers_keys: it fits */
    if (json_object_get(obj, name)) {
        return 0;
    }
    return json_object_set(rec, name, value) == 0 ? 0 : -ENOMEM;
}

/* Merges the worker's object into rec, which holds drover's members already. */
static int logline_merge(json_t *rec, json_t *obj, enum log_level *level)
{
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value) {
        int r = 0;
        if (strcmp(key, "level") == 0) {
            bool exact = false;
            if (logline_level_from_json(value, level, &exact) < 0 || !exact) {
                r = logline_keep_renamed(rec, obj, key, value);
            }
        } else if (strcmp(key, "msg") == 0) {
            r = json_is_string(value) ? (json_object_set(rec, key, value) == 0 ? 0 : -ENOMEM)
                                      : logline_keep_renamed(rec, obj, key, value);
        } else if (logline_key_is_drovers(key)) {
            /* ts is always the master's (when the line arrived); the origin and the stream are
             * what drover saw, and a worker cannot pose as another. */
            json_t *ours = json_object_get(rec, key);
            if (!ours || !json_equal(ours, value) || strcmp(key, "ts") == 0) {
                r = logline_keep_renamed(rec, obj, key, value);
            }
        } else if (json_object_set(rec, key, value) < 0) {
            r = -ENOMEM;
        }
        if (r < 0) {
            return r;
        }
    }
    return 0;
}

json_t *logline_record(const char *ts, struct log_origin origin, bool is_stderr, const char *line,
                       size_t len, enum log_level *ret_level)
{
    enum log_level level = LOG_INFO;
    size_t skip = logline_syslog_prefix(line, len, &level);
    line += skip;
    len -= skip;

    json_t *obj = NULL;
    if (len > 1 && line[0] == '{') {
        obj = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
        if (obj && !json_is_object(obj)) {
            json_decref(obj);
            obj = NULL;
        }
    }
    json_t *rec = json_object();
    const char *stream = is_stderr ? "stderr" : "stdout";
    bool ok = rec && json_object_set_new(rec, "ts", json_string(ts)) == 0 &&
              json_object_set_new(rec, "level", json_string("info")) == 0;
    if (ok && origin.app) {
        ok = json_object_set_new(rec, "app", json_string(origin.app)) == 0;
    }
    if (ok && origin.slot >= 0) {
        ok = json_object_set_new(rec, "worker", json_integer(origin.slot)) == 0;
    }
    if (ok && origin.pid > 0) {
        ok = json_object_set_new(rec, "pid", json_integer(origin.pid)) == 0;
    }
    if (ok && obj) {
        /* msg goes where drover's own records have it, before the worker's other members. */
        json_t *msg = json_object_get(obj, "msg");
        if (json_is_string(msg)) {
            ok = json_object_set(rec, "msg", msg) == 0;
        }
        /* The stream is set now so that a worker's "stream" is compared with it, and set
         * again below to come last. */
        ok = ok && json_object_set_new(rec, "stream", json_string(stream)) == 0 &&
             logline_merge(rec, obj, &level) == 0 && json_object_del(rec, "stream") == 0;
    } else if (ok) {
        ok = json_object_set_new(rec, "msg", logline_json_text(line, len)) == 0;
    }
    ok = ok && json_object_set_new(rec, "stream", json_string(stream)) == 0 &&
         json_object_set_new(rec, "level", json_string(logline_level_to_string(level))) == 0;
    json_decref(obj);
    if (!ok) {
        json_decref(rec);
        return NULL;
    }
    *ret_level = level;
    return rec;
}
