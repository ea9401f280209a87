/*
 * status: the apps part of the status reply (SPEC section 7), shared by the control socket and
 * the admin endpoint's /health/detailed, so the two can never drift apart.
 */
#pragma once

#include <jansson.h>

struct app;

/*
 * One app's entry: name, state, generation, wanted, ready, restarts by reason, log_dropped, and
 * its workers by slot (old and new side by side during a reload), including slots waiting out
 * a backoff delay. Memory is read fresh from /proc. `now` is the wall clock (ev_time()).
 * Returns a new reference, or NULL when out of memory.
 */
json_t *status_app_json(struct app *app, double now);
