/*
 * apporder: depends_on at run time (SPEC section 3): an app's workers start only once every app
 * it depends on has at least one ready worker, and the supervisor's shutdown stops dependents
 * before what they depend on.
 *
 * "Ready" means what /health/ready means for drover itself: at least one ready worker, that is
 * an app that serves. It is docker compose's `condition: service_healthy` and systemd's
 * After= + Requires= on a Type=notify unit, the start-up of the dependency complete; waiting
 * for every worker would let one crash-looping slot of a database hold the whole site down.
 *
 * An app that waits is stopped in the state table (nothing runs) with app->waiting_for naming
 * the dependency it waits for; status shows it as "waiting". Its listen sockets are bound
 * already, so clients wait in the backlog as they do during any start. Starting an app
 * (`droverctl start APP`) starts first what it depends on that is stopped, as `systemctl start`
 * pulls in Requires= units; stopping an app leaves its dependents running (they may retry their
 * connections, and stopping them is one more command away).
 *
 * The app list is the master's; this module reads it through the pointers it is given.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "app.h"
#include "sweep.h"

struct apporder {
    struct app **const *apps;   /* the owner's app array and its length, read at each use */
    const size_t *n_apps;
    const bool *running;        /* the supervisor runs: nothing starts once it stops */
    struct sweep *sweep;
    struct sweep_node review;   /* waiting apps are looked at from the sweeper */
};

void apporder_init(struct apporder *o, struct app **const *apps, const size_t *n_apps,
                   const bool *running, struct sweep *sweep);

/*
 * Starts app now if every app it depends on is ready, else marks it waiting; first starts (the
 * same way) each dependency that is stopped and not waiting itself. Returns 0, or -errno from
 * app_start() of app (a failed bind: *ret_failed names the address); a dependency that cannot
 * start is logged and leaves app waiting.
 */
int apporder_start(struct apporder *o, struct app *app, const struct address **ret_failed);

/* Something changed among the apps: waiting apps whose dependencies are ready now start, once
 * the running callbacks have returned. */
void apporder_review(struct apporder *o);

/*
 * The stop tier of each of the n apps into ret_tier (see deps_stop_tiers: 0 for an app no other
 * app depends on). Returns the highest tier (0 when nothing depends on anything).
 */
unsigned apporder_stop_tiers(struct app *const *apps, size_t n, unsigned *ret_tier);
