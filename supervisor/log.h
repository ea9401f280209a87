/*
 * log: drover's records, one per line, JSON or text (SPEC section 8).
 *
 * The master must never block on whoever reads its output: a pipe into a slow `journald`,
 * `kubectl logs` or a stopped pager. So records are appended to one bounded buffer and written
 * non-blockingly; when the reader falls behind, the buffer fills and further records are dropped
 * and counted, never queued without bound. Before the loop is attached (startup), and for a
 * regular file, records are written straight through. Non-blocking writing never changes the
 * open file description drover shares with its parent (log.c says how).
 *
 * There is one log per process, so this module keeps its state in a single static struct
 * rather than threading a handle through every call.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "logline.h"

struct ev_loop;

#define LOG_MASTER ((struct log_origin){NULL, -1, 0})

/* Opens the log: path "-" = stdout. Returns 0 or -errno. */
int log_open(enum log_format format, const char *path);

/* Switches to non-blocking, bounded writing driven by the loop: send(MSG_DONTWAIT) to a
 * socket, a private non-blocking reopening of a pipe or terminal on stdout, or per-call
 * non-blocking writes when it cannot be reopened. Never sets O_NONBLOCK on shared stdout. */
void log_attach(struct ev_loop *loop);

/* Reopens the log file (SIGUSR1, for logrotate). Returns 0 or -errno; on error keeps the old. */
int log_reopen(void);

/* Flushes what is buffered (blocking, bounded by a short deadline) and closes. */
void log_close(void);

/*
 * One record. fields, when not NULL, is a JSON object whose members are added to the record
 * (e.g. "phase", "duration_ms"); it is stolen. Returns 0, or -ENOBUFS when the record was
 * dropped because the reader is behind.
 */
int log_record(enum log_level level, struct log_origin origin, json_t *fields, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_info(...) log_record(LOG_INFO, LOG_MASTER, NULL, __VA_ARGS__)
#define log_warn(...) log_record(LOG_WARN, LOG_MASTER, NULL, __VA_ARGS__)
#define log_error(...) log_record(LOG_ERROR, LOG_MASTER, NULL, __VA_ARGS__)

/*
 * Bytes that may not be UTF-8 (worker output) as a JSON string: valid UTF-8 is kept as it is;
 * otherwise every byte outside ASCII (and NUL) becomes '?', so the line stays readable and the
 * document it goes into stays valid JSON. Returns a new reference, or NULL when out of memory.
 */
json_t *log_json_text(const char *text, size_t len);

/*
 * One line of a worker's output (without its newline), made a record by the rules of
 * logline.h: a JSON object is merged into the record with its level normalised, a `<N>` prefix
 * gives the level, any other line is "info"; every record carries "stream". In the text format
 * the same level shows, followed by the message and the worker's other members as key=value.
 * Returns 0 or -ENOBUFS when dropped.
 */
int log_worker_line(struct log_origin origin, bool is_stderr, const char *line, size_t len);

/* Now as a record's "ts" shows it: 2026-01-02T03:04:05.678Z (40 bytes are enough). */
void log_timestamp(char *buf, size_t size);

/* Records drover had to drop because the reader was behind, over the process's life. */
uint64_t log_dropped_total(void);

const char *log_level_to_string(enum log_level level);
