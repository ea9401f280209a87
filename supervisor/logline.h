/*
 * logline: one line of a worker's output read as the parts of a log record (SPEC section 8), as
 * pure functions: no I/O, no clock (the timestamp is passed in), so the rules are unit-tested.
 *
 * The rules, in the order they apply:
 *
 *  - A `<N>` prefix (N = 0..7, as sd-daemon's SD_ERR etc. write it) sets the level from the
 *    syslog severity and is stripped: `<4>disk low` is a "warn" record with msg "disk low".
 *  - A line (after the prefix) that is a JSON object is merged into the record. Its "level" is
 *    normalised to drover's words: pino/bunyan numbers (10 trace .. 60 fatal; in between, the
 *    level below), syslog severities 0..7, and the usual spellings ("WARNING", "warn", "err",
 *    "critical", "notice", ...), case-insensitively. Its "msg", when a string, is the record's.
 *  - Any other line keeps level "info": stderr is not an error.
 *  - Every record says where the line came from: "stream":"stdout"|"stderr".
 *
 * drover's own keys keep one type in every record: "ts", "level", "msg", "stream" are strings,
 * "app" a string, "worker" and "pid" integers. A worker's member of one of those names that
 * would replace drover's value is kept under "line_" + its name ("line_ts", "line_pid", ...)
 * unless the worker's object already uses that name, in which case it is dropped. A member that
 * says exactly what drover says (pino's "pid" is usually the worker's own pid) and a level in a
 * standard spelling are dropped, since nothing is lost.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* drover's level words, least severe first. */
enum log_level { LOG_TRACE, LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_FATAL };

/* Where a record comes from: an app, a slot and a pid (NULL / -1 / 0 when not applicable). */
struct log_origin {
    const char *app;
    int slot;
    pid_t pid;
};

/* "trace", "debug", "info", "warn", "error" or "fatal". */
const char *logline_level_to_string(enum log_level level);

/*
 * A level as a worker's JSON states it: a number (pino/bunyan 10..60 and above, or a syslog
 * severity 0..7) or a word in any case. *ret_exact tells whether replacing the value by drover's
 * word loses nothing: true for every recognised word (a spelling of the level) and for pino's
 * six numbers, false for the numbers in between (custom levels) and for syslog severities.
 * Returns 0, or -EINVAL when the value means no level.
 */
int logline_level_from_json(const json_t *value, enum log_level *ret, bool *ret_exact);

/*
 * The length of a `<N>` prefix (N = 0..7) at the start of line and its level in *ret, or 0 (and
 * *ret untouched) when the line has none.
 */
size_t logline_syslog_prefix(const char *line, size_t len, enum log_level *ret);

/*
 * Bytes that may not be UTF-8 as a JSON string: valid UTF-8 is kept as it is; otherwise every
 * byte outside ASCII (and NUL) becomes '?'. Returns a new reference, or NULL when out of memory.
 */
json_t *logline_json_text(const char *text, size_t len);

/*
 * The record of one worker line (without its newline): ts, level, app, worker, pid, msg, then
 * the worker's own members when the line is a JSON object, then stream (see the top of this
 * file). ts is the master's reception time, as text. The level goes to *ret_level too. Returns
 * a new object, or NULL when out of memory.
 */
json_t *logline_record(const char *ts, struct log_origin origin, bool is_stderr, const char *line,
                       size_t len, enum log_level *ret_level);

/* Whether key is one of the record's members that drover itself states (ts, level, app, worker,
 * pid, msg, stream), e.g. to leave them out of the text format's key=value tail. */
bool logline_key_is_drovers(const char *key);
