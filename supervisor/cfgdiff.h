/*
 * cfgdiff: what a reload would change in one app's config (`droverctl reload --dry-run`), key by
 * key, and how each change takes effect. Pure: two configs in, JSON out; no app, no master.
 *
 * Each change says where it lives. "rolling": a running worker cannot take it (its command,
 * environment, sockets, identity, readiness protocol); only a new worker can, so it needs the
 * rolling replacement a reload performs. "in_place": the master applies it to the app itself
 * (restart policy, limits, timeouts, the worker count, the start order), with no new worker
 * needed. Values are shown as a person writes them in the file.
 */
#pragma once

#include <jansson.h>

#include "config.h"

/*
 * The changes from old to new, as a new JSON array of {"key", "old", "new", "apply"} in the
 * order of SPEC section 3's keys; empty when nothing differs. old/new are strings, or arrays of
 * strings for listen, env and depends_on. NULL when out of memory.
 */
json_t *cfgdiff_app(const struct config_app *old, const struct config_app *new);

/* The same for the [supervisor] section: the timeouts apply in place; control_socket and
 * admin_listen keep what they were opened with, "apply" then says "next_start". */
json_t *cfgdiff_supervisor(const struct config *old, const struct config *new);

/* Whether any change in changes (from cfgdiff_app) has "apply": "rolling". */
int cfgdiff_needs_rolling(const json_t *changes);
