/*
 * master: the loop root. It owns the config, the apps, the signal watchers, the NOTIFY_SOCKET
 * shared by all workers, and the supervisor's own lifecycle: starting -> running -> stopping.
 *
 * Everything the master does happens in libev callbacks on one loop; nothing blocks. Signals
 * arrive as ev_signal events (never work in a handler), children as ev_child events (libev
 * reaps, including orphans reparented to us as child subreaper). Objects whose callback is
 * running are never freed in place: they go on a sweep list that an ev_prepare watcher empties
 * before the loop next waits.
 */
#pragma once

#include <ev.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "app.h"
#include "apporder.h"
#include "config.h"
#include "wire.h"
#include "shutdown.h"
#include "sweep.h"

struct address;
struct app;
struct handover;
struct config_app;
struct master;
struct reconfig;
struct shutdown;
struct worker;

/*
 * Who watches the master (the control socket, for one): told of every app change and of every
 * phase of the supervisor's own shutdown, from the master's loop callbacks. An observer may
 * unobserve itself from inside its callback.
 */
struct master_observer {
    struct master_observer *next;
    void (*on_app_changed)(struct master_observer *o, struct app *app);
    void (*on_phase)(struct master_observer *o, enum wire_phase phase);
    /* A reload request begins (done = false) / every app's result is in (done = true). */
    void (*on_reload)(struct master_observer *o, bool done);
};

/* A part of drover that lives above the master and as long as it (the control socket, the
 * admin endpoint): opened after the master's own sockets and before any app binds its
 * addresses, closed before the apps go. open logs its own failure. */
struct master_part {
    int (*open)(struct master *m, void **ret);
    void (*close)(void *part);
    /* An upgrade in place (SPEC section 12): what the part hands to the next image, as a
     * member of h's document under its own name (may be NULL). Returns 0 or -errno. In the next
     * image, open finds it in handover_incoming(). */
    int (*save)(void *part, struct handover *h);
};

/* Renders the combined metrics page in format ("text" or "json"). Returns 0 or -errno. */
typedef int (*master_page_fn)(struct master *m, const char *format, char **ret_body,
                              size_t *ret_len);

#define MASTER_PARTS_MAX 5

/* What main.c adds to the master from the layers above it. */
struct master_extensions {
    const struct master_part *parts;
    size_t n_parts;
    master_page_fn page;
    void (*reload_all)(struct master *m);  /* SIGHUP: a reload of every app */
    void (*upgrade)(struct master *m);     /* SIGUSR2: an upgrade in place */
};

enum master_state { MASTER_STARTING, MASTER_RUNNING, MASTER_STOPPING };

/* The supervisor's exit status (SPEC section 2); main() maps errors to these. */
enum master_exit { MASTER_EXIT_CLEAN = 0, MASTER_EXIT_FORCED = 1, MASTER_EXIT_STARTUP = 3 };

struct master {
    struct ev_loop *loop;
    struct config *cfg;
    struct app **apps;
    size_t n_apps;
    enum master_state state;
    int exit_status;
    int notify_fd;
    int null_fd;                /* /dev/null, a worker's stdin */
    unsigned stop_asked;        /* a shutdown asked for: 0 none, 1 graceful, 2 fast */
    bool forced;                /* a phase timed out or something had to be killed */
    bool killed;                /* SIGKILL went to every worker (fast path or last resort) */
    bool running;               /* state == MASTER_RUNNING, for the apps */
    bool ready_logged;          /* "every app has its workers ready", said once */
    struct shutdown *shutdown;  /* the supervisor's phase run, while it lasts */
    unsigned *stop_tiers;       /* depends_on: each app's stop tier (apporder.h), while stopping */
    ev_tstamp stop_began;       /* when the shutdown was initiated */
    unsigned stop_tier;         /* the tier whose phase run is in progress ... */
    unsigned stop_tier_last;    /* ... and the last one, which the observers are told of */
    struct apporder order;      /* depends_on: who starts when */
    struct shutdown_set shutdowns;  /* every phase run in progress */
    struct app_host host;       /* what every app gets of the master */
    ev_tstamp started_at;
    ev_signal signal_w[10];
    char *notify_path;          /* what workers get as NOTIFY_SOCKET */
    ev_io notify_w;
    struct sweep sweep;         /* frees and results, after the running callbacks */
    struct sweep_node stop_node;    /* a shutdown asked for, begun from the sweeper */
    struct reconfig *reloads;   /* reload requests in progress (reconfig.c) */
    ev_timer shutdown_w;        /* shutdown_timeout */
    char *state_dir;            /* absolute */
    const struct master_extensions *ext;
    void *parts[MASTER_PARTS_MAX];  /* what ext->parts[i].open gave */
    struct master_observer *observers;
    struct master_page {        /* the last combined page a worker asked for, per format */
        char *body;
        size_t len;
        ev_tstamp at;           /* the loop turn it was rendered in */
    } pages[2];                 /* text, json */
};

/*
 * Runs the supervisor for cfg (taking ownership of it) with the extensions ext until it stops.
 * Returns the exit status (MASTER_EXIT_*). Startup failures are logged here, naming the address
 * or path and the errno.
 */
int master_run(struct config *cfg, const struct master_extensions *ext);

/* Adds or removes an observer (see struct master_observer). */
void master_observe(struct master *m, struct master_observer *o);
void master_unobserve(struct master *m, struct master_observer *o);

/* Asks for the supervisor's shutdown (fast = kill everything now). It begins once the running
 * callbacks have returned, so any caller may ask from anywhere, the control socket included. */
void master_stop(struct master *m, bool fast);

/* For a reload request (reconfig.c): adds and starts an app of owner (binding its addresses;
 * -errno and *ret_failed on a failed bind); removes an app that has stopped (freed by the
 * sweeper; nothing happens when it is gone already); switches the supervisor's own config
 * (timeouts; the sockets keep what they were opened with); tells the observers a reload began
 * or every app's result is in. */
int master_add_app(struct master *m, struct config *owner, const struct config_app *ca,
                   const struct address **ret_failed);
void master_remove_app(struct master *m, struct app *app);
void master_set_config(struct master *m, struct config *cfg);
void master_tell_reload(struct master *m, bool done);

struct app *master_app_find(struct master *m, const char *name);
struct worker *master_worker_by_pid(struct master *m, pid_t pid);


/* Every app has at least one ready worker and no shutdown began. */
bool master_is_ready(const struct master *m);

/*
 * Upgrade in place (SPEC section 12). master_can_hand_over(): whether the supervisor is in a
 * state the next image can take as it is: running, no reload or phase run in progress, every
 * app quiet (why names what to wait for). master_save(): the supervisor, its apps and its
 * parts into h. In the next image master_run() takes it all up from handover_incoming()
 * instead of starting afresh, and gives it back (the previous image runs again) if it cannot.
 */
bool master_can_hand_over(const struct master *m, char *why, size_t size);
int master_save(struct master *m, struct handover *h);
