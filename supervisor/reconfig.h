/*
 * reconfig: re-reading the config file and applying it to the running master (see reconfig.c).
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>

struct master;

/* Progress (final = false) or the result {"ok":..,"apps":[..]} (final = true). msg is borrowed
 * for the call, which always comes from the sweeper, never from inside reconfig_reload(). */
typedef void (*reconfig_report_fn)(json_t *msg, bool final, void *data);

/*
 * Re-reads the config file (the quick start reuses its config), then rolls every app (or
 * app_name only) to it; without app_name, apps new in the file start and apps gone from it
 * stop. An invalid file changes nothing: returns -EINVAL with the file:line message in
 * *ret_error (malloc'd). Every refusal is logged once, here. report may be NULL (SIGHUP).
 * Returns 0 or -errno.
 */
int reconfig_reload(struct master *m, const char *app_name, reconfig_report_fn report,
                    void *data, char **ret_error);

/* The requester data went away: no more reports to it. */
void reconfig_forget(struct master *m, void *data);

/*
 * What reconfig_reload() would do, changing nothing (`droverctl reload --dry-run`): the file is
 * read and validated the same way (the same -errno and *ret_error for an invalid one), then
 * *ret gets {"ok":true,"dry_run":true,"apps":[..],"supervisor":[..]} with, per app, its
 * "action" (roll, add, remove, update: a stopped app takes the config at its next start,
 * refused: busy) and its "changes" (cfgdiff.h). Returns 0 or -errno.
 */
int reconfig_dry_run(struct master *m, const char *app_name, json_t **ret, char **ret_error);
