/*
 * cfgdiff: one app's config against another's, key by key. See cfgdiff.h.
 *
 * One row per key: how to show its value and where it takes effect. A key added to config.h
 * and forgotten here is a change the dry run would not show, so the table mirrors config.c's
 * app_keys[] in order; the quick start's fields without a key (argv) follow `command`.
 */
#include "cfgdiff.h"

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

enum cfgdiff_kind {
    KIND_STRING,    /* char *, NULL = unset */
    KIND_UINT,      /* unsigned */
    KIND_MS,        /* uint64_t milliseconds */
    KIND_SIZE,      /* uint64_t bytes */
    KIND_BOOL,
    KIND_READY,
    KIND_RESTART,
    KIND_SIGNAL,
    KIND_WORKERS,   /* the whole workers = N | auto | MIN..MAX */
    KIND_LISTEN,
    KIND_ENV,
    KIND_DEPENDS,
};

struct cfgdiff_key {
    const char *name;
    size_t off;
    enum cfgdiff_kind kind;
    bool rolling;
};

#define KEY(name, kind, field, rolling) {name, offsetof(struct config_app, field), kind, rolling}

static const struct cfgdiff_key cfgdiff_keys[] = {
    KEY("command", KIND_STRING, command, true),
    KEY("workers", KIND_WORKERS, workers, false),
    KEY("listen", KIND_LISTEN, listen, true),
    KEY("cwd", KIND_STRING, cwd, true),
    KEY("env", KIND_ENV, env, true),
    KEY("user", KIND_STRING, user, true),
    KEY("group", KIND_STRING, group, true),
    KEY("ready", KIND_READY, ready, true),          /* the worker's protocol from its start */
    KEY("ready_timeout", KIND_MS, ready_timeout_ms, false),
    KEY("ready_delay", KIND_MS, ready_delay_ms, false),
    KEY("max_memory", KIND_SIZE, max_memory, false),
    KEY("memory_check_interval", KIND_MS, memory_check_interval_ms, false),
    KEY("restart", KIND_RESTART, restart, false),
    KEY("restart_delay", KIND_MS, restart_delay_ms, false),
    KEY("restart_delay_max", KIND_MS, restart_delay_max_ms, false),
    KEY("min_uptime", KIND_MS, min_uptime_ms, false),
    KEY("reload_batch", KIND_UINT, reload_batch, false),
    KEY("kill_timeout", KIND_MS, kill_timeout_ms, false),
    KEY("stop_signal", KIND_SIGNAL, stop_signal, false),
    KEY("metrics_per_worker", KIND_BOOL, metrics_per_worker, false),
    KEY("scale_up_after", KIND_MS, scale_up_after_ms, false),
    KEY("scale_down_after", KIND_MS, scale_down_after_ms, false),
    KEY("scale_cooldown", KIND_MS, scale_cooldown_ms, false),
    KEY("watchdog", KIND_MS, watchdog_ms, true),    /* WATCHDOG_USEC is in the worker's env */
    KEY("max_lifetime", KIND_MS, max_lifetime_ms, false),
    KEY("depends_on", KIND_DEPENDS, depends_on, false),
};

static void cfgdiff_ms(uint64_t ms, char *buf, size_t size)
{
    static const struct { uint64_t per; const char *unit; } units[] = {
        {3600000, "h"}, {60000, "m"}, {1000, "s"}};
    for (size_t i = 0; ms > 0 && i < sizeof units / sizeof units[0]; i++) {
        if (ms % units[i].per == 0) {
            snprintf(buf, size, "%llu%s", (unsigned long long)(ms / units[i].per), units[i].unit);
            return;
        }
    }
    snprintf(buf, size, ms ? "%llums" : "%llu", (unsigned long long)ms);
}

static void cfgdiff_size(uint64_t n, char *buf, size_t size)
{
    static const char units[] = "GMK";
    for (int i = 0; n > 0 && i < 3; i++) {
        uint64_t per = 1ull << (10 * (3 - i));
        if (n % per == 0) {
            snprintf(buf, size, "%llu%c", (unsigned long long)(n / per), units[i]);
            return;
        }
    }
    snprintf(buf, size, "%llu", (unsigned long long)n);
}

static const char *cfgdiff_signal(int sig)
{
    switch (sig) {
    case SIGTERM: return "TERM";
    case SIGINT: return "INT";
    case SIGQUIT: return "QUIT";
    case SIGHUP: return "HUP";
    case SIGUSR1: return "USR1";
    case SIGUSR2: return "USR2";
    case SIGWINCH: return "WINCH";
    case SIGKILL: return "KILL";
    default: return "?";
    }
}

static json_t *cfgdiff_strings(char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        json_array_append_new(a, json_string(v[i]));
    }
    return a;
}

/* The value of key k in a, as shown: a new JSON string or array. */
static json_t *cfgdiff_value(const struct cfgdiff_key *k, const struct config_app *a)
{
    const char *p = (const char *)a + k->off;
    char buf[64];
    switch (k->kind) {
    case KIND_STRING: {
        const char *s = *(char *const *)(const void *)p;
        return json_string(s ? s : "");
    }
    case KIND_UINT:
        snprintf(buf, sizeof buf, "%u", *(const unsigned *)(const void *)p);
        break;
    case KIND_MS:
        cfgdiff_ms(*(const uint64_t *)(const void *)p, buf, sizeof buf);
        break;
    case KIND_SIZE:
        cfgdiff_size(*(const uint64_t *)(const void *)p, buf, sizeof buf);
        break;
    case KIND_BOOL:
        snprintf(buf, sizeof buf, "%s", *(const bool *)(const void *)p ? "yes" : "no");
        break;
    case KIND_READY:
        snprintf(buf, sizeof buf, "%s", ready_mode_to_string(a->ready));
        break;
    case KIND_RESTART:
        snprintf(buf, sizeof buf, "%s", restart_policy_to_string(a->restart));
        break;
    case KIND_SIGNAL:
        snprintf(buf, sizeof buf, "%s", cfgdiff_signal(a->stop_signal));
        break;
    case KIND_WORKERS:
        if (a->workers_auto) {
            snprintf(buf, sizeof buf, "auto (%u)", a->workers);
        } else if (a->workers_max > a->workers) {
            snprintf(buf, sizeof buf, "%u..%u", a->workers, a->workers_max);
        } else {
            snprintf(buf, sizeof buf, "%u", a->workers);
        }
        break;
    case KIND_LISTEN: {
        json_t *l = json_array();
        for (size_t i = 0; l && i < a->n_listen; i++) {
            json_array_append_new(l, json_string(a->listen[i].text));
        }
        return l;
    }
    case KIND_ENV:
        return cfgdiff_strings(a->env, a->n_env);
    case KIND_DEPENDS:
        return cfgdiff_strings(a->depends_on, a->n_depends_on);
    }
    return json_string(buf);
}

static int cfgdiff_add(json_t *changes, const char *key, json_t *old, json_t *new,
                       const char *apply)
{
    if (!old || !new) {
        json_decref(old);
        json_decref(new);
        return -1;
    }
    if (json_equal(old, new)) {
        json_decref(old);
        json_decref(new);
        return 0;
    }
    return json_array_append_new(changes, json_pack("{s:s, s:o, s:o, s:s}", "key", key, "old",
                                                    old, "new", new, "apply", apply));
}

json_t *cfgdiff_app(const struct config_app *old, const struct config_app *new)
{
    json_t *changes = json_array();
    for (size_t i = 0; changes && i < sizeof cfgdiff_keys / sizeof cfgdiff_keys[0]; i++) {
        const struct cfgdiff_key *k = &cfgdiff_keys[i];
        if (cfgdiff_add(changes, k->name, cfgdiff_value(k, old), cfgdiff_value(k, new),
                        k->rolling ? "rolling" : "in_place") < 0) {
            json_decref(changes);
            return NULL;
        }
    }
    return changes;
}

static json_t *cfgdiff_ms_value(uint64_t ms)
{
    char buf[32];
    cfgdiff_ms(ms, buf, sizeof buf);
    return json_string(buf);
}

json_t *cfgdiff_supervisor(const struct config *old, const struct config *new)
{
    static const struct { const char *name; size_t off; } timeouts[] = {
        {"shutdown_timeout", offsetof(struct config, shutdown_timeout_ms)},
        {"drain_timeout", offsetof(struct config, drain_timeout_ms)},
        {"save_timeout", offsetof(struct config, save_timeout_ms)},
        {"close_timeout", offsetof(struct config, close_timeout_ms)},
        {"cleanup_timeout", offsetof(struct config, cleanup_timeout_ms)},
    };
    json_t *changes = json_array();
    int r = changes ? 0 : -1;
    r = r < 0 ? r
              : cfgdiff_add(changes, "control_socket", json_string(old->control_socket),
                            json_string(new->control_socket), "next_start");
    r = r < 0 ? r
              : cfgdiff_add(changes, "admin_listen",
                            json_string(old->admin_listen ? old->admin_listen : "off"),
                            json_string(new->admin_listen ? new->admin_listen : "off"),
                            "next_start");
    for (size_t i = 0; r == 0 && i < sizeof timeouts / sizeof timeouts[0]; i++) {
        uint64_t a = *(const uint64_t *)(const void *)((const char *)old + timeouts[i].off);
        uint64_t b = *(const uint64_t *)(const void *)((const char *)new + timeouts[i].off);
        r = cfgdiff_add(changes, timeouts[i].name, cfgdiff_ms_value(a), cfgdiff_ms_value(b),
                        "in_place");
    }
    if (r < 0) {
        json_decref(changes);
        return NULL;
    }
    return changes;
}

int cfgdiff_needs_rolling(const json_t *changes)
{
    size_t i;
    const json_t *c;
    json_array_foreach(changes, i, c) {
        const char *apply = json_string_value(json_object_get(c, "apply"));
        if (apply && strcmp(apply, "rolling") == 0) {
            return 1;
        }
    }
    return 0;
}
