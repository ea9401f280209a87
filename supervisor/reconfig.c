/*
 * reconfig: a reload request (SPEC section 5, "Rolling reload"; `droverctl reload`, SIGHUP):
 * re-read the config file and bring the running apps to it. Apps new in the file are added
 * and started, apps gone from it stop and go, a stopped app takes its new config for its next
 * start, and every running app rolls to its new config (reload.c); the request's result
 * gathers each app's. An invalid file changes nothing.
 *
 * It lives above the master and works on it through the master's small public face (add,
 * remove, set the config, tell observers); the master's SIGHUP reaches it through main.c.
 */
#include "reconfig.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "cfgdiff.h"
#include "events.h"
#include "log.h"
#include "master.h"
#include "reload.h"
#include "sweep.h"

/* One reload request, gathering the result of each app it rolls. */
struct reconfig {
    struct reconfig *next;
    struct master *m;
    reconfig_report_fn report;
    void *data;
    size_t pending;
    bool ok;
    json_t *apps;
    struct sweep_node deliver;  /* the result goes out from the sweeper */
};

/* The whole request's result, once every app's is in: from the sweeper, never from inside
 * reconfig_reload(), so a requester may act on it at once. */
static void reconfig_on_deliver(struct sweep_node *node)
{
    struct reconfig *mr =
        (struct reconfig *)(void *)((char *)node - offsetof(struct reconfig, deliver));
    struct master *m = mr->m;
    for (struct reconfig **p = &m->reloads; *p; p = &(*p)->next) {
        if (*p == mr) {
            *p = mr->next;
            break;
        }
    }
    master_tell_reload(m, true);
    json_t *res = json_pack("{s:b, s:O}", "ok", mr->ok, "apps", mr->apps);
    if (mr->report) {
        mr->report(res, true, mr->data);
    }
    json_decref(res);
    json_decref(mr->apps);
    free(mr);
}

static void reconfig_release(struct reconfig *mr)
{
    if (--mr->pending == 0) {
        sweep_add(&mr->m->sweep, &mr->deliver, reconfig_on_deliver);
    }
}

static void reconfig_on_report(json_t *msg, bool final, void *data)
{
    struct reconfig *mr = data;
    if (!final) {
        if (mr->report) {
            mr->report(msg, false, mr->data);
        }
        return;
    }
    json_array_append(mr->apps, msg);
    mr->ok &= json_is_true(json_object_get(msg, "ok"));
    reconfig_release(mr);
}

void reconfig_forget(struct master *m, void *data)
{
    for (struct reconfig *mr = m->reloads; mr; mr = mr->next) {
        if (mr->data == data) {
            mr->report = NULL;
            mr->data = NULL;
        }
    }
}

static void reconfig_app_error(struct reconfig *mr, const char *app, const char *error)
{
    /* error may quote the config file: bytes that need not be UTF-8 */
    json_array_append_new(mr->apps, json_pack("{s:b, s:s, s:s, s:o*}", "ok", 0, "app", app,
                                              "outcome", "refused", "error",
                                              log_json_text(error, strlen(error))));
    mr->ok = false;
}

/*
 * The file a reload would bring, validated as a reload validates it: a new reference in *ret, or
 * -errno with the message in *ret_error (malloc'd). record: a rejected file is a
 * config_rejected event (a real reload), or only a log record (a dry run changes nothing, not
 * even the event ring).
 */
static int reconfig_load(struct master *m, const char *app_name, bool record, struct config **ret,
                         char **ret_error)
{
    struct config *cfg = NULL;
    struct config_error err = {0};
    int r;
    if (m->state != MASTER_RUNNING) {
        log_warn("reload refused: drover is shutting down");
        *ret_error = strdup("drover is shutting down");
        return -ESHUTDOWN;
    }
    if (app_name && !master_app_find(m, app_name)) {
        if (asprintf(ret_error, "no app named '%s'", app_name) < 0) {
            *ret_error = NULL;
        }
        return -ENOENT;
    }
    if (m->cfg->path) {
        r = config_load(m->cfg->path, &cfg, &err);
        if (r < 0) {
            char msg[1024];
            config_error_format(&err, msg, sizeof msg);
            if (record) {
                event_record(EVENT_CONFIG_REJECTED, LOG_ERROR, LOG_MASTER,
                             json_pack("{s:s, s:s, s:i, s:s}", "file", err.file, "key", err.key,
                                       "line", (int)err.line, "error", err.message),
                             "reload rejected, nothing changed: %s", msg);
            } else {
                log_info("reload dry run: the config is invalid: %s", msg);
            }
            *ret_error = strdup(msg);
            return -EINVAL;
        }
    } else {
        cfg = config_ref(m->cfg); /* the quick start: same config, new generation */
    }
    if (app_name && !config_app_find(cfg, app_name)) {
        if (asprintf(ret_error, "app '%s' is no longer in %s; reload without an app name to "
                                "remove it", app_name, m->cfg->path) < 0) {
            *ret_error = NULL;
        }
        config_unref(cfg);
        return -ENOENT;
    }
    *ret = cfg;
    return 0;
}

int reconfig_reload(struct master *m, const char *app_name, reconfig_report_fn report,
                    void *data, char **ret_error)
{
    struct config *cfg = NULL;
    int r = reconfig_load(m, app_name, true, &cfg, ret_error);
    if (r < 0) {
        return r;
    }
    struct reconfig *mr = calloc(1, sizeof *mr);
    if (!mr || !(mr->apps = json_array())) {
        free(mr);
        config_unref(cfg);
        return -ENOMEM;
    }
    mr->m = m;
    mr->report = report;
    mr->data = data;
    mr->ok = true;
    mr->pending = 1; /* held until every app is started, so no early finish */
    mr->next = m->reloads;
    m->reloads = mr;
    master_tell_reload(m, false);
    log_info("reload requested%s%s: %s", app_name ? " for " : "", app_name ? app_name : "",
             m->cfg->path ? m->cfg->path : "(command line)");

    for (size_t i = 0; i < cfg->n_apps; i++) {
        const struct config_app *ca = &cfg->apps[i];
        if (app_name && strcmp(ca->name, app_name) != 0) {
            continue;
        }
        struct app *app = master_app_find(m, ca->name);
        if (!app) {
            const struct address *failed = NULL;
            r = master_add_app(m, cfg, ca, &failed);
            if (r < 0) {
                char msg[512];
                snprintf(msg, sizeof msg, "%s%s%s: %s", failed ? "bind('" : "starting",
                         failed ? failed->text : "", failed ? "') failed" : " failed",
                         strerror(-r));
                reconfig_app_error(mr, ca->name, msg);
                continue;
            }
            json_array_append_new(mr->apps, json_pack("{s:b, s:s, s:s}", "ok", 1, "app",
                                                      ca->name, "outcome", "added"));
            continue;
        }
        enum app_verdict v = app_state_accepts(app->state, app->replacing != NULL,
                                               APP_CMD_RELOAD);
        if (v == APP_KEEP) {
            /* A stopped app takes the new config now and runs it at its next start. */
            app_set_config(app, cfg, ca);
            json_array_append_new(mr->apps, json_pack("{s:b, s:s, s:s}", "ok", 1, "app",
                                                      ca->name, "outcome", "updated"));
            continue;
        }
        if (v != APP_TAKE) {
            char busy[160];
            snprintf(busy, sizeof busy, "busy with a %s; try again when it is done",
                     app_busy_with(app));
            reconfig_app_error(mr, ca->name, busy);
            continue;
        }
        char *why = NULL;
        mr->pending++;
        r = reload_start(app, cfg, ca, NULL, 0, WORKER_REASON_RELOAD, reconfig_on_report,
                         mr, &why);
        if (r < 0) {
            mr->pending--;
            reconfig_app_error(mr, ca->name,
                                    r == -EBUSY ? "a reload or restart of this app is already "
                                                  "running; try again when it is done"
                                    : why       ? why
                                                : strerror(-r));
        }
        free(why);
    }
    if (!app_name) {
        /* Apps gone from the file stop and go: a stopped one now, the others once they have
         * stopped (master_on_app_stopped). From the end, so a removal moves no app not yet
         * looked at. */
        for (size_t i = m->n_apps; i-- > 0;) {
            struct app *app = m->apps[i];
            if (!config_app_find(cfg, app->name) && !app->removed) {
                app->removed = true;
                json_array_append_new(mr->apps, json_pack("{s:b, s:s, s:s}", "ok", 1, "app",
                                                          app->name, "outcome", "removed"));
                if (app->state == APP_STOPPED) {
                    master_remove_app(m, app);
                } else {
                    (void)app_stop(app);
                }
            }
        }
        if (cfg->control_socket && strcmp(cfg->control_socket, m->cfg->control_socket) != 0) {
            log_warn("reload: control_socket changed; it takes effect at the next start");
        }
        if ((cfg->admin_listen == NULL) != (m->cfg->admin_listen == NULL) ||
            (cfg->admin_listen && strcmp(cfg->admin_listen, m->cfg->admin_listen) != 0)) {
            log_warn("reload: admin_listen changed; it takes effect at the next start");
        }
        /* The supervisor's own settings (timeouts) follow the new file; the sockets keep the
         * paths and addresses they were opened with. */
        master_set_config(m, cfg);
    }
    config_unref(cfg);
    reconfig_release(mr);
    return 0;
}

/* One app's entry of a dry run: what reconfig_reload() would do with it, and the changes. */
static json_t *reconfig_dry_app(struct app *app, const struct config_app *ca)
{
    if (!app || !ca) {
        return json_pack("{s:s, s:s, s:[]}", "app", app ? app->name : ca ? ca->name : "?",
                         "action", app ? "remove" : "add", "changes");
    }
    json_t *changes = cfgdiff_app(app->cfg, ca);
    if (!changes) {
        return NULL;
    }
    enum app_verdict v = app_state_accepts(app->state, app->replacing != NULL, APP_CMD_RELOAD);
    const char *action = v == APP_KEEP ? "update" : v == APP_TAKE ? "roll" : "refused";
    json_t *o = json_pack("{s:s, s:s, s:s, s:b, s:I, s:I, s:o}", "app", app->name, "action",
                          action, "state", app_state_to_string(app->state), "rolling",
                          cfgdiff_needs_rolling(changes), "generation",
                          (json_int_t)app->generation, "workers", (json_int_t)app->n_slots,
                          "changes", changes);
    if (o && v == APP_TAKE) {
        /* What a reload does today: every worker is replaced, in-place changes included. */
        json_object_set_new(o, "new_generation", json_integer((json_int_t)app->generation + 1));
    }
    if (o && v != APP_TAKE && v != APP_KEEP) {
        char why[160];
        snprintf(why, sizeof why, "busy with a %s; try again when it is done",
                 app_busy_with(app));
        json_object_set_new(o, "error", json_string(why));
    }
    return o;
}

int reconfig_dry_run(struct master *m, const char *app_name, json_t **ret, char **ret_error)
{
    struct config *cfg = NULL;
    int r = reconfig_load(m, app_name, false, &cfg, ret_error);
    if (r < 0) {
        return r;
    }
    json_t *apps = json_array();
    json_t *res = NULL;
    r = apps ? 0 : -ENOMEM;
    for (size_t i = 0; r == 0 && i < cfg->n_apps; i++) {
        const struct config_app *ca = &cfg->apps[i];
        if (!app_name || strcmp(ca->name, app_name) == 0) {
            r = json_array_append_new(apps, reconfig_dry_app(master_app_find(m, ca->name), ca));
        }
    }
    for (size_t i = 0; r == 0 && !app_name && i < m->n_apps; i++) {
        struct app *app = m->apps[i];
        if (!config_app_find(cfg, app->name) && !app->removed) {
            r = json_array_append_new(apps, reconfig_dry_app(app, NULL));
        }
    }
    if (r == 0) {
        json_t *sup = app_name ? json_array() : cfgdiff_supervisor(m->cfg, cfg);
        res = json_pack("{s:b, s:b, s:s*, s:O, s:o*}", "ok", 1, "dry_run", 1, "file",
                        m->cfg->path, "apps", apps, "supervisor", sup);
    }
    json_decref(apps);
    config_unref(cfg);
    if (!res) {
        *ret_error = strdup("out of memory");
        return -ENOMEM;
    }
    *ret = res;
    return 0;
}
