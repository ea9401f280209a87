/*
 * apporder: depends_on at run time. See apporder.h.
 *
 * Dependencies are found by name in the owner's app list each time: a reload may add or remove
 * apps, and `reload APP` changes one app's config only, so no index computed once stays true. A
 * name that is no longer an app (removed by a reload) waits for nothing.
 */
#include "apporder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deps.h"
#include "log.h"

static struct app *apporder_find(const struct apporder *o, const char *name)
{
    for (size_t i = 0; i < *o->n_apps; i++) {
        if (strcmp((*o->apps)[i]->name, name) == 0) {
            return (*o->apps)[i];
        }
    }
    return NULL;
}

/* The first dependency of app without a ready worker, or NULL when all have one. */
static struct app *apporder_unready(const struct apporder *o, const struct app *app)
{
    for (size_t i = 0; i < app->cfg->n_depends_on; i++) {
        struct app *dep = apporder_find(o, app->cfg->depends_on[i]);
        if (dep && app_ready_count(dep) == 0) {
            return dep;
        }
    }
    return NULL;
}

static void apporder_wait(struct app *app, const struct app *dep)
{
    if (strcmp(app->waiting_for, dep->name) == 0) {
        return; /* said already */
    }
    snprintf(app->waiting_for, sizeof app->waiting_for, "%s", dep->name);
    log_record(LOG_INFO, (struct log_origin){app->name, -1, 0}, NULL,
               "waiting for '%s' to have a ready worker (depends_on) before starting",
               dep->name);
}

/*
 * depth bounds the walk: the config refuses cycles, but apps reloaded one at a time keep
 * configs of different files, and those together could still close one.
 */
static int apporder_start_at(struct apporder *o, struct app *app, unsigned depth,
                             const struct address **ret_failed)
{
    if (depth > *o->n_apps) {
        return 0;
    }
    for (size_t i = 0; i < app->cfg->n_depends_on; i++) {
        struct app *dep = apporder_find(o, app->cfg->depends_on[i]);
        if (dep && dep->state == APP_STOPPED && !dep->waiting_for[0]) {
            const struct address *failed = NULL;
            log_record(LOG_INFO, (struct log_origin){dep->name, -1, 0}, NULL,
                       "starting app: '%s' depends on it", app->name);
            int r = apporder_start_at(o, dep, depth + 1, &failed);
            if (r < 0) {
                log_record(LOG_ERROR, (struct log_origin){dep->name, -1, 0}, NULL,
                           "bind('%s') failed: %s", failed ? failed->text : "?", strerror(-r));
            }
        }
    }
    const struct app *dep = apporder_unready(o, app);
    if (dep) {
        apporder_wait(app, dep);
        return 0;
    }
    app->waiting_for[0] = '\0';
    return app_start(app, ret_failed);
}

int apporder_start(struct apporder *o, struct app *app, const struct address **ret_failed)
{
    return apporder_start_at(o, app, 0, ret_failed);
}

static void apporder_on_review(struct sweep_node *node)
{
    struct apporder *o = SWEEP_OWNER(node, struct apporder, review);
    if (!*o->running) {
        return;
    }
    for (size_t i = 0; i < *o->n_apps; i++) {
        struct app *app = (*o->apps)[i];
        if (!app->waiting_for[0] || app->state != APP_STOPPED) {
            continue;
        }
        const struct app *dep = apporder_unready(o, app);
        if (dep) {
            apporder_wait(app, dep); /* may now wait for another one */
            continue;
        }
        log_record(LOG_INFO, (struct log_origin){app->name, -1, 0}, NULL,
                   "starting app: what it depends on is ready");
        app->waiting_for[0] = '\0';
        const struct address *failed = NULL;
        int r = app_start(app, &failed);
        if (r < 0) {
            log_record(LOG_ERROR, (struct log_origin){app->name, -1, 0}, NULL,
                       "bind('%s') failed: %s", failed ? failed->text : "?", strerror(-r));
        }
    }
}

void apporder_init(struct apporder *o, struct app **const *apps, const size_t *n_apps,
                   const bool *running, struct sweep *sweep)
{
    *o = (struct apporder){.apps = apps, .n_apps = n_apps, .running = running, .sweep = sweep};
}

void apporder_review(struct apporder *o)
{
    sweep_add(o->sweep, &o->review, apporder_on_review);
}

unsigned apporder_stop_tiers(struct app *const *apps, size_t n, unsigned *ret_tier)
{
    size_t **edges = calloc(n ? n : 1, sizeof *edges);
    size_t *n_edges = calloc(n ? n : 1, sizeof *n_edges);
    int top = 0;

    memset(ret_tier, 0, n * sizeof *ret_tier);
    if (!edges || !n_edges) {
        goto out; /* out of memory: one tier, everything at once, as without depends_on */
    }
    for (size_t i = 0; i < n; i++) {
        const struct config_app *ca = apps[i]->cfg;
        edges[i] = calloc(ca->n_depends_on ? ca->n_depends_on : 1, sizeof *edges[i]);
        if (!edges[i]) {
            goto out;
        }
        for (size_t j = 0; j < ca->n_depends_on; j++) {
            for (size_t k = 0; k < n; k++) {
                if (strcmp(apps[k]->name, ca->depends_on[j]) == 0) {
                    edges[i][n_edges[i]++] = k;
                }
            }
        }
    }
    size_t cycle_len = 0;
    size_t *cycle = calloc(n + 1, sizeof *cycle);
    /* A cycle across configs of different reloads (see apporder_start_at): stop all at once. */
    const size_t *const *graph = (const size_t *const *)edges;
    if (cycle && deps_find_cycle(n, graph, n_edges, cycle, &cycle_len) == 0) {
        top = deps_stop_tiers(n, graph, n_edges, ret_tier);
    }
    free(cycle);
    if (top < 0) {
        memset(ret_tier, 0, n * sizeof *ret_tier);
        top = 0;
    }
out:
    for (size_t i = 0; edges && i < n; i++) {
        free(edges[i]);
    }
    free(edges);
    free(n_edges);
    return (unsigned)top;
}
