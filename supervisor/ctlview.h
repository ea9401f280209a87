/*
 * ctlview: how droverctl shows drover's replies to a person (SPEC sections 2, 7, 10, 11): the
 * status table, event lines, log lines, durations and sizes.
 *
 * Principle: one way to say each thing. `droverctl status`, `events` and `logs` and the live
 * `top` view all write through these functions, so a worker's row or an event reads the same
 * wherever it appears. Every function writes to a FILE * it is given (top renders a frame into
 * memory, then fits it to the terminal) and never decides about colour itself: the caller
 * says whether escapes are wanted (a terminal, no NO_COLOR). Pure: no I/O besides f, no logs.
 */
#ifndef DROVER_CTLVIEW_H
#define DROVER_CTLVIEW_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define CTLVIEW_BOLD "\033[1m"
#define CTLVIEW_DIM "\033[2m"
#define CTLVIEW_RED "\033[31m"
#define CTLVIEW_GREEN "\033[32m"
#define CTLVIEW_YELLOW "\033[33m"
#define CTLVIEW_CYAN "\033[36m"
#define CTLVIEW_RESET "\033[0m"

/* The colour escape for an app or worker state word: green ready, yellow on its way, red
 * broken, dim going away. */
const char *ctlview_state_color(const char *state);

/* 3m12s: the two largest units, as a person reads an uptime. */
void ctlview_format_duration(double s, char *buf, size_t size);

/* 5.2M: binary units, one decimal below 100. */
void ctlview_format_bytes(double b, char *buf, size_t size);

/* obj[key] as a number (0 when absent or not a number) or a string (dflt likewise). */
double ctlview_number(json_t *obj, const char *key);
const char *ctlview_string(json_t *obj, const char *key, const char *dflt);

/* The table of a status reply: one row per worker entry (an app without workers gets one
 * row), columns APP SLOT PID STATE GEN UPTIME RESTARTS MEMORY CPU LAST_EXIT QUEUE, aligned.
 * Returns 0, or -ENOMEM with nothing written. */
int ctlview_status_write(json_t *reply, FILE *f, bool color);

/* One lifecycle event (section 11) on one line: time, seq, type, where, what. time_only: the
 * time of day (03:04:05.678Z) instead of the whole timestamp, for a view of the last minutes. */
void ctlview_event_write(json_t *ev, FILE *f, bool color, bool time_only);

/* One record of worker output (section 8) on one line: time, app/slot [pid], stream, text. */
void ctlview_log_write(json_t *rec, FILE *f, bool color);

#endif
