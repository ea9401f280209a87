/*
 * app: one [app:NAME]: its listening sockets, its slots and the workers filling them, and the
 * restart policy (SPEC section 5).
 *
 * A slot is a stable position 0..N-1 (DROVER_WORKER_ID); workers come and go in it. Normally a
 * slot holds one worker; while a replacement is being brought up it can briefly hold two (the
 * old one draining, the new one starting), which is why the app also keeps a flat list of every
 * live worker. When a worker exits unasked, its slot restarts it at once or after a backoff
 * delay, on a timer, so the loop never waits.
 */
#pragma once

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "appstate.h"
#include "autoscale.h"
#include "backoff.h"
#include "config.h"
#include "listener.h"
#include "slot.h"
#include "sweep.h"
#include "worker.h"

struct app;
struct shutdown_set;
struct sweep;

/* What an app tells the supervisor that runs it. Called from loop callbacks, never from inside
 * a call the supervisor made. */
struct app_ops {
    /* Something about its workers changed (one became ready or exited, its state changed). */
    void (*on_changed)(void *owner, struct app *app);
    /* It reached stopped (every worker gone after app_stop or app_halt). */
    void (*on_stopped)(void *owner, struct app *app);
    /* w is condemned (over max_memory, hung, recycled: reason) and its turn has come: start its
     * replacement. Returns 0 or -errno (it is then tried again later). */
    int (*replace)(void *owner, struct app *app, struct worker *w, enum worker_reason reason);
    /* As worker_ops: a worker's metrics changed; the combined page. */
    void (*on_metrics)(void *owner);
    int (*page)(void *owner, const char *format, const char **ret_body);
};

/* What every app needs of the supervisor that runs it, filled in once by that supervisor. */
struct app_host {
    struct ev_loop *loop;
    struct sweep *sweep;                /* exited workers are freed through it */
    struct shutdown_set *shutdowns;     /* where phase runs go */
    struct config *const *cfg;          /* the supervisor's current config: phase timeouts */
    int null_fd;
    const char *notify_path;
    const char *state_dir;              /* absolute */
    const bool *running;                /* the supervisor is running (not stopping) */
    const struct app_ops *ops;
    void *owner;
};

/*
 * A replacement of the app's workers in progress (reload.c's rolling reload, restart, memory):
 * it attaches itself to the app and sees the app's worker events first. An app has at most one.
 */
struct app_replacement;
struct app_replacement_ops {
    /* Return true when the event belongs to the replacement, which then handles it (the app
     * does not apply its restart policy). */
    bool (*on_worker_ready)(struct app_replacement *r, struct worker *w);
    bool (*on_worker_exit)(struct app_replacement *r, struct worker *w);
    /* The app is stopping: the replacement ends as failed. */
    void (*abort)(struct app_replacement *r, const char *why);
    /* For a person: "reload", "restart", "memory replacement". */
    const char *(*describe)(const struct app_replacement *r);
};
struct app_replacement {
    const struct app_replacement_ops *ops;
};

/* Upper bounds (seconds) of the reload duration histogram; one more bucket is +Inf. */
#define APP_RELOAD_BUCKETS 8
extern const double app_reload_buckets[APP_RELOAD_BUCKETS];


struct slot {
    struct app *app;
    unsigned id;
    struct worker *worker;      /* the slot's current worker, or NULL */
    struct slot_machine fsm;    /* its state and backoff (slot.h) */
    ev_timer restart_w;         /* armed while fsm.state is SLOT_BACKOFF */
    unsigned restarts;
    bool crash_looping;         /* a crash_loop event was told, its end not yet */
    json_t *last_exit;          /* the facts of its last worker's exit (SPEC section 10), or NULL */
};

struct app {
    const struct app_host *host;
    const struct config_app *cfg;   /* the current config: what new workers start with ... */
    struct config *cfg_owner;       /* ... kept alive by this reference */
    struct app_replacement *replacing;  /* the replacement in progress, if any */
    struct sweep_node swept;        /* freed from the sweeper once removed */
    struct sweep_node stopped;      /* "stopped" is reported from the sweeper */
    char *name;
    struct listener *listeners;     /* every address any live worker uses (a reload may add) */
    size_t n_listeners;
    unsigned generation;
    struct slot **slots;            /* pointers: a slot's timer must not move on resize */
    unsigned n_slots;               /* the configured worker count */
    struct worker *workers;         /* every live worker, any generation */
    enum app_state state;
    uint64_t restarts[WORKER_REASON_COUNT];
    uint64_t reloads[2];            /* config reloads: [0] done, [1] failed or rolled back */
    uint64_t reload_hist[APP_RELOAD_BUCKETS + 1];   /* durations, per bucket (not cumulative) */
    double reload_seconds;          /* their sum */
    uint64_t log_dropped;
    struct logbuf *logbuf;          /* recent output, for droverctl logs */
    struct metrics_app *metrics;    /* the workers' snapshots, merged */
    ev_timer stats_w;               /* /proc sampling every memory_check_interval */
    ev_timer scale_w;               /* workers = MIN..MAX: the accept queue, sampled */
    struct autoscale autoscale;
    uint64_t memory_limit;          /* the cgroup's, read when autoscaling starts; 0 = none */
    bool removed;                   /* gone from the config: freed once stopped */
    char waiting_for[72];           /* depends_on: the app it waits for to be ready before it
                                     * starts (apporder.h); "" = not waiting */
    bool pinned;                    /* `droverctl scale APP N` holds the count until `auto` */
    bool set_ids;                   /* user = ...: resolved once, before any spawn */
    uid_t uid;
    gid_t gid;
    gid_t *groups;
    int n_groups;
    char *state_dir;                /* absolute */
};

/*
 * Creates the app under cfg (a section of owner, which the app references) and binds its
 * listen addresses. On failure returns -errno and, when a bind
 * failed, points *ret_failed at the address (for "bind('ADDR') failed: ..."); nothing is left
 * open. Resolves `user` (refusing an unknown one with -ESRCH).
 */
int app_new(const struct app_host *host, struct config *owner, const struct config_app *cfg,
            struct app **ret, const struct address **ret_failed);

/* The listener bound to addr, or NULL. */
const struct listener *app_listener_find(const struct app *app, const struct address *addr);

/*
 * Binds every address of cfg the app does not have yet (a reload adding listen lines). On
 * failure closes what it bound and points *ret_failed at the address. Returns 0 or -errno.
 */
int app_listeners_add(struct app *app, const struct config_app *cfg,
                      const struct address **ret_failed);

/* Closes every listener that neither the current config nor any live worker uses. */
void app_listeners_prune(struct app *app);

/* Switches the config new workers start with (taking a reference on owner). */
void app_set_config(struct app *app, struct config *owner, const struct config_app *cfg);

/* Starts a worker of the app's current config and generation in an existing slot, outside the
 * slot's restart policy (a replacement). surge: the worker it replaces still serves, so it may
 * boot at the app's surge_nice. Returns 0 or -errno. */
int app_spawn_extra(struct app *app, unsigned slot, bool surge, struct worker **ret);

/* A replacement's new worker w is slot's worker from now on. */
void app_slot_replaced(struct app *app, unsigned slot, struct worker *w);

/* Resizes the slot array without starting or stopping anything: new slots are empty, removed
 * slots forget their workers (which keep running until retired). Returns 0 or -ENOMEM. */
int app_slots_resize(struct app *app, unsigned n);

/* Starts a worker in every slot, binding first the listen addresses a stop closed. On a failed
 * bind returns -errno with *ret_failed at the address; nothing is started. */
int app_start(struct app *app, const struct address **ret_failed);

/* Stops the app: its workers leave through the six phases; the app reports on_stopped once none
 * is left (from a later callback, or right away when it had none). Returns 0 or -ENOMEM. */
int app_stop(struct app *app);

/* Marks the app stopping and cancels pending restarts, without touching its workers (the
 * supervisor's own shutdown drives them). */
void app_halt(struct app *app);

/* Stores up to max live workers in out; returns how many there are. */
size_t app_collect_workers(const struct app *app, struct worker **out, size_t max);

/* Kills every worker now. */
void app_kill(struct app *app);

/* Closes listeners and frees the app; every worker must be gone. */
void app_free(struct app *app);

/* The same, once the running callbacks have returned. */
void app_free_later(struct app *app, struct sweep *sweep);

/* Changes the slot count: new slots start, the highest slots drain. Returns 0, -EBUSY while a
 * replacement (reload, restart, memory) owns the app's slots, or -errno. */
int app_scale_to(struct app *app, unsigned n);

/* An operator's count for an autoscaled app holds until app_set_pinned(app, false) (`droverctl
 * scale APP auto`). */
void app_set_pinned(struct app *app, bool pinned);

/* Whether the app scales itself (workers = MIN..MAX). */
bool app_is_autoscaled(const struct app *app);

/* From the worker: it became ready / it exited (reaped; the app takes it from here). */
void app_on_worker_ready(struct app *app, struct worker *w);
void app_on_worker_exit(struct app *app, struct worker *w);
/* From the worker: it is hung; its replacement is started (SPEC section 10). */
void app_on_worker_hung(struct app *app, struct worker *w);

/* Counts one finished config reload's duration in the histogram. */
void app_observe_reload(struct app *app, double seconds);

/* Retires w through the six phases, bounded by the app's kill_timeout. Returns 0 or -ENOMEM. */
int app_retire(struct app *app, struct worker *w);

/* Running in any form (running, reloading, errored): its slots keep workers in them. */
bool app_is_up(const struct app *app);

/* Feeds ev to the app's state table (appstate.h), logging the transition once (why may be
 * NULL). */
void app_feed(struct app *app, enum app_event ev, const char *why);

/* The operation that owns the app's slots now ("reload", "restart", ...), for messages. */
const char *app_busy_with(const struct app *app);

/* What the app's command table (appstate.h) says of cmd now; a refusal comes with its reason,
 * naming what to do instead, in why ("" otherwise). verb names the command in it. */
enum app_verdict app_judge(const struct app *app, enum app_command cmd, const char *verb,
                           char *why, size_t size);

unsigned app_ready_count(const struct app *app);
unsigned app_live_count(const struct app *app);
struct worker *app_worker_by_pid(const struct app *app, pid_t pid);

/*
 * Upgrade in place (SPEC section 12). app_can_hand_over(): whether the app is in a state the
 * next image can take as it is (no replacement, no worker leaving or hung; why says what to wait
 * for). app_save(): the app, its slots, workers, listening sockets (named in h), log ring and
 * metric store as JSON, NULL when out of memory. In the next image, app_new() takes the app's
 * listening sockets from the incoming handover before it binds anything, and app_resume()
 * takes up the rest where the previous image left it, instead of app_start() (which it is for
 * an app the previous image did not have). Returns 0 or -errno.
 */
struct handover;
bool app_can_hand_over(const struct app *app, char *why, size_t size);
json_t *app_save(const struct app *app, struct handover *h);
int app_resume(struct app *app);
