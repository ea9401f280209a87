/*
 * worker: one worker process and everything the master watches about it: the process (ev_child),
 * the outcome of its exec (the spawn error pipe), its stdout and stderr (read line by line into
 * log records), its channel, its readiness, and its stop deadline.
 *
 * A worker moves through one state enum, changed only by worker_set_state(), which logs each
 * transition once:
 *
 *     starting --ready--> ready --stop--> draining/stopping --exit--> exited
 *         \------------------------exit / ready timeout--------------^
 *     ready --watchdog ran out / WATCHDOG=trigger--> hung --abort (SIGABRT)--> stopping
 *
 * With `watchdog = T` (SPEC section 10) a ready worker's watchdog timer is rearmed by each sign
 * of life (channel heartbeat, sd_notify WATCHDOG=1); when it runs out the worker is hung and
 * its owner is told (on_hung), which replaces it and then aborts it (worker_abort). Every exit
 * leaves its facts in last_exit (code or signal, core, uptime, reason, sender, last lines).
 *
 * A worker knows nothing of the app or the supervisor around it. It is started from a spec (its
 * config, its slot, the fds and paths it gets) and reports what happens through the ops its
 * owner gave it: ready, exit (reaped), phase_done, a metrics snapshot, a request for the
 * combined page. It never decides its own replacement. Every report comes from a loop callback
 * of the worker's own (a pipe, the channel, ev_child, a timer), never from inside a call its
 * owner made. Once exited, the owner frees it with worker_free_later().
 */
#pragma once

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "backoff.h"
#include "channel.h"
#include "wire.h"
#include "config.h"
#include "notify.h"
#include "procstat.h"
#include "sweep.h"
#include "workerstate.h"

struct handover;
struct logbuf;
struct metrics_app;
struct shutdown;
struct worker;

/* What a worker tells its owner. Each is called from the worker's own loop callbacks. */
struct worker_ops {
    void (*on_ready)(void *owner, struct worker *w);
    /* It went silent past its watchdog (or said WATCHDOG=trigger): state hung, no longer ready.
     * The owner starts its replacement and calls worker_abort() once that one is ready; the
     * worker aborts itself after ready_timeout otherwise. */
    void (*on_hung)(void *owner, struct worker *w);
    /* A ready worker asked to be replaced ({"type":"recycle"}); reason borrowed for the call. */
    void (*on_recycle)(void *owner, struct worker *w, const char *reason);
    /* Reaped (w->pid is 0, w->wait_status holds how); the owner takes it from here. */
    void (*on_exit)(void *owner, struct worker *w);
    void (*on_phase_done)(void *owner, struct worker *w, enum wire_phase phase);
    /* Its metrics changed (a snapshot, or its exit): a rendered page is stale. */
    void (*on_metrics)(void *owner, struct worker *w);
    /* The combined page in format ("text" or "json"), borrowed until the loop runs again.
     * Returns 0 or -errno. */
    int (*page)(void *owner, const char *format, const char **ret_body);
};

/* Everything a worker is started with; the worker copies what it keeps. */
struct worker_spec {
    struct ev_loop *loop;
    struct config *cfg_owner;           /* referenced by the worker for its life */
    const struct config_app *cfg;
    unsigned slot;
    unsigned generation;
    const int *listen_fds;              /* one per cfg->listen, in order */
    int null_fd;                        /* its stdin */
    const char *notify_path;            /* its NOTIFY_SOCKET */
    const char *state_dir;              /* where its DROVER_STATE_FILE lives */
    bool set_ids;                       /* user = ...: drop to these */
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    int n_groups;
    struct logbuf *logbuf;              /* its output lines go here ... */
    uint64_t *log_dropped;              /* ... and lines the log had to drop are counted here */
    struct metrics_app *metrics;        /* its snapshots go here */
    /* A surge worker: it replaces one that still serves, so it may boot at cfg->surge_nice
     * (SPEC section 3) and leave the CPU to that one until it is ready. */
    bool surge;
};


/* Why a worker is being stopped or replaced, for logs and restart accounting. */
enum worker_reason {
    WORKER_REASON_CRASH,
    WORKER_REASON_MEMORY,
    WORKER_REASON_RELOAD,
    WORKER_REASON_MANUAL,
    WORKER_REASON_HANG,         /* silent past its watchdog, or WATCHDOG=trigger */
    WORKER_REASON_LIFETIME,     /* max_lifetime reached */
    WORKER_REASON_REQUESTED,    /* it asked: channel {"type":"recycle"} */
    WORKER_REASON_SCALE,        /* autoscaling added or retired a worker */
    WORKER_REASON_COUNT,
    WORKER_REASON_NONE = WORKER_REASON_COUNT,  /* as a worker's `condemned`: not condemned */
};

/* A worker's line of stdout or stderr being assembled; longer lines are split. */
#define WORKER_LINE_MAX 16384

struct worker_output {
    int fd;
    ev_io io_w;
    size_t len;
    size_t cap;                     /* grows to WORKER_LINE_MAX as lines need */
    char *line;
};

struct worker {
    struct ev_loop *loop;
    const struct worker_ops *ops;
    void *owner;
    struct logbuf *logbuf;
    uint64_t *log_dropped;
    struct metrics_app *metrics;
    const struct config_app *cfg;   /* the config it was started with ... */
    struct config *cfg_owner;       /* ... kept alive by this reference */
    uint64_t id;                    /* unique for the master's life: keys metrics snapshots */
    struct worker *next;            /* the owner's list of live workers */
    struct sweep_node swept;        /* freed from the sweeper once exited */
    unsigned slot;
    unsigned generation;
    pid_t pid;                      /* 0 once reaped: never signal it after that */
    pid_t last_pid;                 /* kept for logs and status after reaping */
    enum worker_state state;
    ev_tstamp started_at;
    ev_tstamp ready_at;
    ev_child child_w;
    int errpipe_fd;
    ev_io errpipe_w;
    ev_timer timer_w;               /* ready delay or timeout; hung: abort deadline; aborted:
                                     * kill deadline */
    ev_timer watchdog_w;            /* watchdog = T: rearmed by each sign of life while ready */
    ev_tstamp alive_at;             /* its last sign of life (heartbeat, WATCHDOG=1, ready) */
    unsigned signals_sent;          /* bit (1 << sig) of each signal drover sent it */
    struct worker_output out[2];    /* stdout, stderr */
    struct channel ch;
    int stat_fd;
    struct procstat stat;
    uint64_t cpu_prev_ns;
    ev_tstamp stat_at;
    double cpu_percent;
    char *status_text;              /* the latest STATUS= or channel status */
    int wait_status;                /* as from waitpid, valid once exited */
    json_t *last_exit;              /* once exited: how (SPEC section 10, forensics); owned */
    enum worker_state exited_from;  /* where it was when it exited (worker_was_asked) */
    bool channel_used;              /* it has spoken on its channel: it gets phases, not TERM */
    bool spoke;                     /* it has sent anything (channel or sd_notify) */
    struct shutdown *retire;        /* the phase run it is leaving through, if any */
    bool exec_failed;
    bool niced;                     /* booted at surge_nice, not yet given its priority back */
    bool niced_thread;              /* ... its threads' nice value too, not only its autogroup */
    enum worker_reason stop_reason;
    bool metrics_warned;
    unsigned pages_wanted;          /* get_metrics formats asked for while a page is queued */
    ev_tstamp pages_waiting_since;  /* when the first such request found the queue full */
    bool pages_warned;              /* the get_metrics trouble of this worker was logged */
    /* Why it is being replaced (memory, hang, lifetime, requested), WORKER_REASON_NONE while
     * it is not: a fact found once, after which its replacement is tried until one comes up. */
    enum worker_reason condemned;
    ev_tstamp replace_at;           /* not before then (backoff) */
    struct backoff replace_retry;   /* spacing of further tries, should one fail */
};

/*
 * Spawns a worker as spec says, reporting to owner through ops (which must outlive it). On
 * success stores the new worker in *ret (linked into nothing: the caller links it) and returns
 * 0; on failure to fork or to create its pipes returns -errno (logged here, where the syscall is
 * named). No op is called from inside this call.
 */
int worker_start(const struct worker_spec *spec, const struct worker_ops *ops, void *owner,
                 struct worker **ret);

/* The master asks the worker to go: drain (the first phase, or SIGTERM), then stop (the later
 * phases). Its exit is then no crash. Used by the phase driver. */
void worker_drain(struct worker *w);
void worker_stopping(struct worker *w);

/* The master kills the worker now, without phases (its exit is no crash). */
void worker_stop_now(struct worker *w);

/* Whether an exited worker had been asked to go (draining or stopping when it exited). */
bool worker_was_asked(const struct worker *w);

/* The owner: a hung worker's replacement is ready; SIGABRT it now (SIGKILL kill_timeout later).
 * Does nothing to a worker that is not hung. */
void worker_abort(struct worker *w);

/* Whether drover itself sent sig to the worker. */
bool worker_was_sent(const struct worker *w, int sig);

/* SIGKILL to the worker's process group now (its state as it is). */
void worker_kill(struct worker *w);

/* Sends sig to the worker's process group (or to the worker alone before its setsid). */
void worker_signal(struct worker *w, int sig);

/* The worker said it is ready (channel or sd_notify). */
void worker_on_ready_signal(struct worker *w, const char *via);

/* An sd_notify datagram from the worker (or from a process of its group). */
void worker_on_notify(struct worker *w, const struct notify_msg *msg);

/* A STATUS= line or channel status; copied. */
void worker_set_status(struct worker *w, const char *text);

/* Samples RSS and CPU from /proc; updates w->stat and w->cpu_percent. Returns 0 or -errno. */
int worker_sample(struct worker *w, ev_tstamp now);

/* Frees an exited worker (all watchers already stopped). */
void worker_free(struct worker *w);

/* Frees an exited worker once the running callbacks have returned. */
void worker_free_later(struct worker *w, struct sweep *sweep);

bool worker_is_alive(const struct worker *w);

/* Why an exited worker left, for its exit record: its condemnation, what the master asked
 * ("reload", "stop", ...), or "crash". A static string. */
const char *worker_exit_reason(const struct worker *w);

const char *worker_reason_to_string(enum worker_reason reason);

/*
 * Upgrade in place (SPEC section 12). worker_save() describes a starting or ready worker for
 * the next image, naming its descriptors in h (NULL when out of memory); worker_adopt() makes
 * the worker again in the next image from that, as spec says, watching the same process, pipes
 * and channel, its timers going on from where they were. It stores the worker in *ret even
 * when part of it could not be taken back (then it returns -errno: the caller gives up the
 * upgrade; freeing is its business). worker ids go on from the previous image's.
 */
json_t *worker_save(const struct worker *w, struct handover *h);
int worker_adopt(const struct worker_spec *spec, const json_t *saved, struct handover *h,
                 const struct worker_ops *ops, void *owner, struct worker **ret);
uint64_t worker_ids_next(void);
void worker_ids_continue(uint64_t next);
