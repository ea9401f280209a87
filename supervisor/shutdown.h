/*
 * shutdown: the six phases (SPEC section 5) driven over a set of workers:
 *
 *   initiated -> drain -> save -> close -> cleanup -> complete
 *
 * One mechanism serves three scopes: the whole supervisor (SIGTERM), one app (`droverctl stop
 * APP`), and one worker leaving during a reload, a memory replacement or a scale-down. A run
 * sends each phase to every member that speaks the channel and moves on when every member has
 * answered phase_done, has exited, or the phase's timeout ran out. A member that never spoke on
 * its channel is taken for an app that knows only signals (SPEC: "Workers without a channel"):
 * it gets SIGTERM at drain, and drain waits for its exit. When the run's total time runs out,
 * what is left gets SIGKILL. Each phase is one log record as it starts and one as it ends.
 *
 * A worker belongs to at most one run (w->retire). Progress is never made from inside the call
 * that reported it: acknowledgements and exits schedule a check on the loop, so a run never
 * finishes under a caller's feet.
 */
#pragma once

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

struct config;
struct worker;
struct shutdown;

/* Every run in progress on one loop (the supervisor's, one per stopping app, one per retiring
 * worker), owned by whoever owns the loop. */
struct shutdown_set {
    struct ev_loop *loop;
    struct shutdown *runs;
};

struct shutdown_timeouts {
    uint64_t phase_ms[WIRE_PHASE_COUNT];    /* drain, save, close, cleanup; others unused */
    uint64_t total_ms;
};

/* The run ended; forced = a phase timed out or something had to be killed. The run is freed
 * right after this returns. */
typedef void (*shutdown_done_fn)(struct shutdown *s, bool forced, void *data);
/* A phase begins (e.g. the master removes its files at cleanup). May be NULL. */
typedef void (*shutdown_phase_fn)(struct shutdown *s, enum wire_phase phase, void *data);

/*
 * Starts a run in set over the n workers (those already in another run or already exited are
 * left out). scope names it in log records (an app's name; NULL = the supervisor). Returns 0 and
 * the run in *ret (may be NULL), or -ENOMEM; done is never called from inside this call.
 */
int shutdown_start(struct shutdown_set *set, const char *scope, struct worker *const *workers,
                   size_t n, const struct shutdown_timeouts *t, shutdown_phase_fn on_phase,
                   shutdown_done_fn done, void *data, struct shutdown **ret);

/* The supervisor's per-phase timeouts from its config, with total as given. */
void shutdown_timeouts_from_config(struct shutdown_timeouts *t, const struct config *cfg,
                                   uint64_t total_ms);

/* SIGKILL to every member now (the fast path); the run completes as they exit. */
void shutdown_force(struct shutdown *s);

/* From the worker: it answered phase_done / it exited. */
void shutdown_on_phase_done(struct worker *w, enum wire_phase phase);
void shutdown_on_worker_exit(struct worker *w);

/* Retires one worker through the phases of cfg, each and all bounded by total_ms
 * (kill_timeout). */
int shutdown_retire(struct shutdown_set *set, struct worker *w, const struct config *cfg,
                    uint64_t total_ms);

enum wire_phase shutdown_phase(const struct shutdown *s);

/* At the master's exit: frees every run still in progress without calling back. */
void shutdown_abandon_all(struct shutdown_set *set);
