/*
 * wire: the one definition of drover's two wire formats, linked by both the supervisor and the
 * worker SDK so that neither side can drift from the other (SPEC sections 4 and 7).
 *
 * The worker channel carries newline-delimited JSON objects both ways; the control socket
 * carries one JSON request per line and one JSON reply per line. This module turns a line into
 * a typed message and back. It is pure: no I/O, no logging, no global state. A line is never
 * trusted: anything malformed is refused with -EPROTO (not JSON, not an object, a missing or
 * ill-typed field) and nothing is allocated on failure.
 *
 * Its functions are named wire_*, not drover__* as STYLE names the SDK's internal symbols: the
 * supervisor calls them by these names throughout. The shared SDK hides them (it is built with
 * -fvisibility=hidden); the static archive defines them as globals, which a program linking it
 * cannot define again. tests/install/check_symbols allows exactly that exception.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest line either side accepts (SPEC section 4); longer is a protocol error. */
#define WIRE_LINE_MAX (1024u * 1024u)

/* The longest control request the master accepts (a control request is small). */
#define WIRE_CONTROL_LINE_MAX (64u * 1024u)

/* The longest app name a control request may carry. */
#define WIRE_NAME_MAX 255

enum wire_type {
    /* worker -> master */
    WIRE_READY,
    WIRE_STATUS,
    WIRE_HEARTBEAT,
    WIRE_PHASE_DONE,
    WIRE_METRICS,
    WIRE_GET_METRICS,
    WIRE_RECYCLE,
    /* master -> worker */
    WIRE_PHASE,
    WIRE_COLLECT,
    WIRE_METRICS_PAGE,
};

/* The six shutdown phases, in the order the master drives them (SPEC section 5). */
enum wire_phase {
    WIRE_PHASE_INITIATED,
    WIRE_PHASE_DRAIN,
    WIRE_PHASE_SAVE,
    WIRE_PHASE_CLOSE,
    WIRE_PHASE_CLEANUP,
    WIRE_PHASE_COMPLETE,
    WIRE_PHASE_COUNT,
};

/*
 * One channel message. Which fields mean something depends on type:
 *   WIRE_STATUS        text
 *   WIRE_RECYCLE       text (its "reason"; optional, "" when absent)
 *   WIRE_PHASE_DONE    phase
 *   WIRE_PHASE         phase, timeout_ms
 *   WIRE_METRICS       families (a JSON array, owned by the message)
 *   WIRE_GET_METRICS   format ("text" or "json")
 *   WIRE_METRICS_PAGE  format, body
 * Strings and families are owned by the message and released by wire_msg_done().
 */
struct wire_msg {
    enum wire_type type;
    enum wire_phase phase;
    int64_t timeout_ms;
    char *text;
    char *format;
    char *body;
    json_t *families;
};

/*
 * Parses one line (without its newline; len bytes, need not be NUL-terminated) into *ret.
 * Returns 0, or -EPROTO for anything that is not a well-formed message of a known type,
 * or -EMSGSIZE for a line over WIRE_LINE_MAX. *ret is written only on success.
 * Keys a message does not use are ignored, so either side may add fields later. A phase
 * message without "timeout_ms" parses with timeout_ms = -1 (no limit announced); a
 * get_metrics without "format" gets "text".
 */
int wire_msg_parse(const char *line, size_t len, struct wire_msg *ret);

/*
 * Formats a message as one line ending in '\n'. Returns a malloc'd string the caller frees,
 * with its length in *ret_len; NULL on allocation failure or an out-of-range type or phase.
 * Families are referenced, not stolen (NULL families format as []); a NULL string field formats
 * as "". Bytes of a string that are not valid UTF-8 are each replaced by U+FFFD, so text from
 * anywhere (a status built from a file name) still makes a line the other side accepts.
 * The result never contains a newline before the final one.
 */
char *wire_msg_format(const struct wire_msg *msg, size_t *ret_len);

/* Releases what a parsed message owns; the struct itself is the caller's. */
void wire_msg_done(struct wire_msg *msg);

/*
 * Enum names as the wire spells them ("drain", "phase_done"); NULL for a value out of range.
 * from_string returns 0, or -EINVAL for a name it does not know (s may be NULL).
 */
const char *wire_phase_to_string(enum wire_phase phase);
int wire_phase_from_string(const char *s, enum wire_phase *ret);
const char *wire_type_to_string(enum wire_type type);
int wire_type_from_string(const char *s, enum wire_type *ret);

/*
 * The control protocol (SPEC section 7). A request names a command and, depending on it, an
 * app, a slot, a count, a line count or a follow flag. Replies are built by the master from
 * jansson objects, so only requests need a typed form.
 */
enum wire_cmd {
    WIRE_CMD_STATUS,
    WIRE_CMD_RELOAD,
    WIRE_CMD_RESTART,
    WIRE_CMD_SCALE,
    WIRE_CMD_STOP,
    WIRE_CMD_START,
    WIRE_CMD_METRICS,
    WIRE_CMD_LOGS,
    WIRE_CMD_EVENTS,
    WIRE_CMD_UPGRADE,
    WIRE_CMD_COUNT,
};

struct wire_request {
    enum wire_cmd cmd;
    char *app;      /* NULL when not given */
    int slot;       /* -1 when not given */
    int count;      /* scale: the number, or the delta when relative */
    bool relative;  /* scale: "+N" / "-N" */
    bool automatic; /* scale: "auto": back to autoscaling (no count) */
    int lines;      /* logs: how many recent lines; -1 = the default */
    bool follow;    /* logs, events: keep streaming */
    int64_t since;  /* events: only those after this seq; 0 = every one kept */
    char *format;   /* metrics: "text" (default) or "json" */
    char *binary;   /* upgrade: the program to execute; NULL = drover's own path */
    bool dry_run;   /* reload: say what would change, change nothing */
};

/* Sets the defaults: no app, slot -1, count 0, lines -1, no follow, no format. */
void wire_request_init(struct wire_request *req, enum wire_cmd cmd);

/*
 * Parses one control request line. Returns 0, or -EPROTO with a short reason in *ret_error
 * (a static string) for invalid JSON, a missing or unknown "cmd" ("unknown command"), or an
 * ill-typed or missing argument; -EMSGSIZE ("request too long") for a line over
 * WIRE_CONTROL_LINE_MAX. Only the keys the command uses are read; others are ignored.
 *   status, stop           app optional
 *   reload                 app optional, dry_run optional
 *   start                  app required
 *   restart                app required, slot optional (>= 0)
 *   scale                  app and count required (or auto: true, then no count); relative
 *                          optional; count >= 0 unless relative
 *   logs                   app optional, lines optional (>= 0), follow optional
 *   events                 app optional, since optional (>= 0), follow optional
 *   metrics                format optional: "text" (the default, always filled in) or "json"
 * "app" must be a non-empty string of at most WIRE_NAME_MAX bytes; JSON null counts as absent.
 * Integers must be JSON integers that fit an int. The request's strings are released by
 * wire_request_done(). *ret is written only on success; *ret_error only on failure (ret_error
 * may be NULL).
 */
int wire_request_parse(const char *line, size_t len, struct wire_request *ret,
                       const char **ret_error);
void wire_request_done(struct wire_request *req);

/*
 * Formats a request as one line ending in '\n' (for droverctl): only the fields its command
 * uses, and those that are set. Caller frees. NULL on allocation failure or an unknown cmd.
 */
char *wire_request_format(const struct wire_request *req, size_t *ret_len);

/* "status", "reload", ...; NULL out of range. from_string: 0 or -EINVAL. */
const char *wire_cmd_to_string(enum wire_cmd cmd);
int wire_cmd_from_string(const char *s, enum wire_cmd *ret);

/*
 * Frames a stream into lines with a hard limit. The reader appends what arrived and takes
 * complete lines out one at a time; a line longer than the limit (not counting its newline) is
 * an error, and the buffer never grows past limit + 1 bytes. The buffer starts small and grows
 * only as a long line needs; once it drains it shrinks back, so a thousand idle channels do
 * not each hold a megabyte.
 *
 * Use: p = wire_lines_space(); n = read(fd, p, room); wire_lines_commit(n); then call
 * wire_lines_next() until it returns 0 (or an error) before asking for space again.
 */
struct wire_lines {
    char *buf;
    size_t len;     /* bytes in buf, taken lines included until the next compaction */
    size_t cap;
    size_t limit;
    size_t scan;    /* offset up to which buf is known to hold no newline */
    size_t start;   /* offset of the first byte not yet taken as a line */
};

/* Starts empty; nothing is allocated until the first wire_lines_space(). */
void wire_lines_init(struct wire_lines *l, size_t limit);
/* Frees the buffer; l is then empty, as after wire_lines_init with the same limit. */
void wire_lines_done(struct wire_lines *l);

/*
 * Returns where the caller may write up to *ret_room (>= 1) bytes of new input (then calls
 * wire_lines_commit with how many it wrote). Lines handed out before are invalidated here.
 * Returns NULL when the buffer holds a partial line already over the limit (the peer broke the
 * protocol), when complete lines were left untaken and fill the buffer, or on allocation
 * failure.
 */
char *wire_lines_space(struct wire_lines *l, size_t *ret_room);
/* Records that n bytes (at most the room last returned) were written at the space. */
void wire_lines_commit(struct wire_lines *l, size_t n);

/*
 * Takes the next complete line: returns 1 and points *ret_line / *ret_len at it (without the
 * newline; valid until the next call on l), 0 when no complete line is buffered, -EMSGSIZE when
 * the partial line already exceeds the limit.
 */
int wire_lines_next(struct wire_lines *l, const char **ret_line, size_t *ret_len);

/*
 * Reads an optional string member of a JSON object, as every message format here has them.
 * Returns 0 with *ret pointing into obj (NULL when absent or JSON null), or -EPROTO when present
 * with another type.
 */
int wire_member_string(json_t *obj, const char *key, const char **ret);
