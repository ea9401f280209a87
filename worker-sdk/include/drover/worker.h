/*
 * <drover/worker.h>: the worker SDK of the drover process supervisor.
 *
 * A program run by drover learns everything from its environment (listening sockets, identity,
 * a channel back to the master; SPEC section 4) and talks back over that channel: "I am ready",
 * status lines, metrics, and the answers to the six shutdown phases (SPEC section 5). This
 * library reads that environment once and speaks the channel protocol, so an app only deals
 * with callbacks. The same program also runs outside drover: there is then no channel, listen
 * count is 0 (the app binds its own address), and every call below is a harmless no-op.
 *
 * The SDK plugs into any event loop without owning one: watch drover_fd() for reading (and for
 * writing while drover_wants_write()), and call drover_process() when it is ready. Apps on
 * libev can use the helper in <drover/worker-ev.h> instead.
 *
 * Conventions: functions returning int return 0 (or a documented non-negative value) on
 * success and a negative errno on failure; ret_* outputs are written only on success. A
 * struct drover_worker belongs to one thread. Callbacks run inside drover_process(); they may
 * call any function here except drover_process() and drover_close().
 */
#ifndef DROVER_WORKER_H
#define DROVER_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DROVER_API __attribute__((visibility("default")))

/* The longest line the channel carries (SPEC section 4); longer messages are refused. */
#define DROVER_LINE_MAX (1024u * 1024u)

struct drover_worker;

/* The six shutdown phases, in the order the master drives them (SPEC section 5). */
enum drover_phase {
    DROVER_PHASE_INITIATED, /* shutdown began; keep serving */
    DROVER_PHASE_DRAIN,     /* stop accepting, finish in-flight requests */
    DROVER_PHASE_SAVE,      /* save state for the next worker in this slot */
    DROVER_PHASE_CLOSE,     /* close connections to databases, queues, clients */
    DROVER_PHASE_CLEANUP,   /* free resources and exit */
    DROVER_PHASE_COMPLETE,  /* every worker has exited (rarely seen by a worker) */
};

/*
 * Reads the environment and returns a new handle in *ret:
 *   LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES  socket activation, as systemd passes it: honoured
 *       only when LISTEN_PID is this process; the fds (from 3) are made close-on-exec and the
 *       three variables are removed, so children do not claim sockets meant for us.
 *   NOTIFY_SOCKET       sd_notify datagrams ("/path" or "@abstract"), used when no channel.
 *   DROVER_CHANNEL_FD   the channel; made non-blocking and close-on-exec, and the variable is
 *       removed (a child would only see a number naming some other fd).
 *   DROVER_APP, DROVER_WORKER_ID, DROVER_GENERATION, DROVER_STATE_FILE  identity and state.
 * Call it early, before starting threads (it edits the environment). Returns 0, -ENOMEM,
 * -EINVAL for a malformed variable, or -EBADF when a passed fd is not open.
 */
DROVER_API int drover_init(struct drover_worker **ret);

/*
 * Frees the handle. Output still pending on the channel (a phase_done just before exit) is
 * given up to one second to leave. Closes the channel and notify socket, not the listen fds
 * (those belong to the app once it asked for them). NULL is allowed.
 */
DROVER_API void drover_close(struct drover_worker *w);

/* True when started by drover (DROVER_APP or a channel was passed). */
DROVER_API bool drover_is_supervised(const struct drover_worker *w);

/* The number of inherited listening sockets; 0 outside drover or systemd. */
DROVER_API int drover_listen_count(const struct drover_worker *w);

/* The i-th listening fd (3 + i), or -1 when i is out of range. */
DROVER_API int drover_listen_fd(const struct drover_worker *w, int i);

/* The i-th fd's name from LISTEN_FDNAMES ("unknown" when none was given), NULL out of range. */
DROVER_API const char *drover_listen_name(const struct drover_worker *w, int i);

/* DROVER_APP, or NULL outside drover. */
DROVER_API const char *drover_app(const struct drover_worker *w);

/* DROVER_WORKER_ID: the slot 0..N-1, stable across restarts; -1 outside drover. */
DROVER_API int drover_worker_id(const struct drover_worker *w);

/* DROVER_GENERATION: bumped by every reload; -1 outside drover. */
DROVER_API int64_t drover_generation(const struct drover_worker *w);

/* DROVER_STATE_FILE (the file may not exist yet), or NULL. */
DROVER_API const char *drover_state_file(const struct drover_worker *w);

/*
 * Tells the supervisor the worker is ready to serve: {"type":"ready"} on the channel, else
 * READY=1 on NOTIFY_SOCKET, else nothing. Returns 0 or -errno.
 */
DROVER_API int drover_ready(struct drover_worker *w);

/* A one-line, printf-style status (cut at 4 KiB), sent like drover_ready (STATUS=...). */
DROVER_API int drover_status(struct drover_worker *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Liveness: {"type":"heartbeat"} on the channel, else WATCHDOG=1. Returns 0 or -errno. */
DROVER_API int drover_heartbeat(struct drover_worker *w);

/*
 * The watchdog interval in microseconds (WATCHDOG_USEC, when WATCHDOG_PID is this process), 0
 * when none is set. An app on its own loop sends drover_heartbeat() about twice per interval,
 * from that loop, so that a blocked loop stops the heartbeats (SPEC section 10); the libev
 * helper in <drover/worker-ev.h> does so by itself.
 */
DROVER_API uint64_t drover_watchdog_usec(const struct drover_worker *w);

/*
 * Asks the supervisor to replace this worker gracefully ({"type":"recycle","reason":...}): a
 * new worker is started in its slot, and once it is ready this one is drained through the usual
 * phases. reason (may be NULL) is for the log, e.g. "max_requests". Returns 0 or -errno; a
 * no-op outside drover.
 */
DROVER_API int drover_recycle(struct drover_worker *w, const char *reason);

/* ---- the channel in the app's event loop ----------------------------------------------- */

/* The fd to watch for reading, -1 without a channel. It stays the same until drover_close. */
DROVER_API int drover_fd(const struct drover_worker *w);

/* True while output is queued: then also watch drover_fd() for writing. */
DROVER_API bool drover_wants_write(const struct drover_worker *w);

/*
 * Handles whatever arrived (reading without blocking, dispatching each message to its
 * callback) and writes queued output. Returns 0; -EPIPE once the master closed the channel
 * (the master is gone: finish up and exit); -EMSGSIZE when the master broke the protocol; or
 * another -errno. After a negative return stop watching the fd; later calls return the same.
 * Without a channel it returns 0. Lines the SDK does not understand are skipped, so a newer
 * master can add messages.
 */
DROVER_API int drover_process(struct drover_worker *w);

/* ---- graceful shutdown (SPEC section 5) ------------------------------------------------- */

/*
 * Called when the master enters phase. timeout_ms is the master's limit for this phase (-1 if
 * it gave none); past it the master moves on (and after the last one, kills). The app answers
 * with drover_phase_done(w, phase), from the callback or later, when the work is finished.
 */
typedef void (*drover_phase_fn)(struct drover_worker *w, enum drover_phase phase,
                                int64_t timeout_ms, void *userdata);

/*
 * Registers fn for phase (NULL unregisters). A phase without a callback is acknowledged by the
 * SDK at once. Returns 0 or -EINVAL for an unknown phase.
 */
DROVER_API int drover_on_phase(struct drover_worker *w, enum drover_phase phase,
                               drover_phase_fn fn, void *userdata);

/* Reports phase finished ({"type":"phase_done",...}). No-op without a channel. */
DROVER_API int drover_phase_done(struct drover_worker *w, enum drover_phase phase);

/* True once any shutdown phase arrived. */
DROVER_API bool drover_stopping(const struct drover_worker *w);

/* "initiated", "drain", ...; NULL out of range. */
DROVER_API const char *drover_phase_to_string(enum drover_phase phase);

/* ---- saved state, handed from one worker of a slot to the next ------------------------- */

/*
 * Replaces the state file with len bytes of buf atomically: a temporary file in the same
 * directory (mode 0600) is written and fsync'd, renamed over DROVER_STATE_FILE, and the
 * directory is fsync'd, so a reader sees the old content or the new, never a mix, even if the
 * worker is killed mid-save. A save killed that way leaves its temporary behind; a later save
 * removes this file's temporaries that are over a minute old. Returns 0, -ENOENT when no state
 * file is configured, or -errno.
 */
DROVER_API int drover_state_save(struct drover_worker *w, const void *buf, size_t len);

/*
 * Reads the saved state into a new buffer (*ret_buf, freed with drover_free) of *ret_len
 * bytes, followed by a NUL that is not counted, so text state can be used as a string.
 * Returns 0, -ENOENT when there is none (or none is configured), -EFBIG past 64 MiB, or -errno.
 */
DROVER_API int drover_state_load(struct drover_worker *w, void **ret_buf, size_t *ret_len);

/* Frees memory the SDK returned. */
DROVER_API void drover_free(void *p);

/* ---- metrics (SPEC section 4) ----------------------------------------------------------- */

/*
 * Sends a full, cumulative metrics snapshot: families_json is a JSON array of families as
 * SPEC section 4 describes them. Returns 0, -EINVAL when it is not a JSON array, -EMSGSIZE
 * when the message would exceed DROVER_LINE_MAX, -ENOTCONN without a channel, or -errno.
 */
DROVER_API int drover_metrics_send(struct drover_worker *w, const char *families_json);

/* Called when the master asks for a fresh snapshot ({"type":"collect"}). */
typedef void (*drover_collect_fn)(struct drover_worker *w, void *userdata);
DROVER_API void drover_on_collect(struct drover_worker *w, drover_collect_fn fn, void *userdata);

/*
 * Asks the master for the combined metrics page in format "text" or "json"; the answer comes
 * to the drover_on_metrics_page callback. Returns 0, -EINVAL, -ENOTCONN or -errno.
 */
DROVER_API int drover_metrics_request(struct drover_worker *w, const char *format);

/* Receives a combined page: body is valid only during the call. */
typedef void (*drover_metrics_page_fn)(struct drover_worker *w, const char *format,
                                       const char *body, void *userdata);
DROVER_API void drover_on_metrics_page(struct drover_worker *w, drover_metrics_page_fn fn,
                                       void *userdata);

#ifdef __cplusplus
}
#endif

#endif /* DROVER_WORKER_H */
