/*
 * reload: replacing an app's workers without dropping capacity (SPEC section 5, "Rolling
 * reload"). One engine serves a rolling reload to a new config, `droverctl restart`, and the
 * replacement of a worker over its memory limit: for each batch of reload_batch slots, start a
 * new worker beside the old one, wait until it is ready, then retire the old one through the
 * six phases (bounded by kill_timeout). The new worker counts toward capacity before the old one
 * stops counting, so capacity never drops below the configured number.
 *
 * If a new worker exits or misses ready_timeout, the replacement stops: workers of the failed
 * batch are removed, slots not yet replaced keep their old workers, and for a reload the slots
 * already replaced are rolled back to the old config the same surge-then-retire way. The caller
 * gets one JSON result: outcome, generation, duration, and each slot's old and new pid with
 * timings; progress records stream to it on the way.
 *
 * One replacement per app at a time (app->reload); a second request is refused with -EBUSY.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "worker.h"

struct app;
struct config;
struct config_app;
struct reload;

/* Progress (final = false) or the result (final = true, then the reload is gone). msg is
 * borrowed for the call. Always called from the sweeper, never from inside reload_start() or
 * any other call: the requester may act on a result at once. */
typedef void (*reload_report_fn)(json_t *msg, bool final, void *data);

/*
 * Starts replacing slots of app (all slots when slots is NULL). With new_cfg (a section of
 * owner), the app moves to that config and a new generation: a reload. Without, the workers are
 * replaced as they are (restart, memory). Returns 0, -EBUSY when the app is already replacing,
 * -EINVAL when the app is not running, or -errno when a new listen address cannot be bound
 * (then *ret_error names it). report may be NULL.
 */
int reload_start(struct app *app, struct config *owner, const struct config_app *new_cfg,
                 const unsigned *slots, size_t n_slots, enum worker_reason reason,
                 reload_report_fn report, void *data, char **ret_error);

/* What the replacement is, for a person: "reload", "restart", "memory replacement". */
const char *reload_describe(const struct reload *r);

/* The requester data went away: no run reports to it any more, including results already
 * produced and not yet delivered. */
void reload_forget(void *data);

/* The app is being stopped or removed: the replacement ends as failed, killing its surge
 * workers. (The app calls it through its app_replacement_ops.) */
void reload_abort(struct reload *r, const char *why);
