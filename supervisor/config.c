/*
 * config: the INI file of SPEC section 3, read with inih into an immutable struct config.
 *
 * inih does the lexing (sections, KEY = VALUE, comments); everything else happens here, in one
 * pass, through a loader that owns the half-built config. Each key is looked up in a table
 * that says how to parse it and where the value goes, so a key is defined in exactly one place
 * and the "given twice" and "unknown key" checks apply to all of them alike. The first error
 * wins and stops the parse: it carries file, line, key and a message quoting the bad value,
 * and the half-built config is freed, so a config exists whole or not at all.
 *
 * inih reads the lines through cfgread (cfgread.h), which numbers them, refuses what no config
 * may hold, hands inih the long ones by reference, and reports section headers to the loader.
 *
 * The same loader builds a config without a file: config_loader.h lets a builder (the quick
 * start, quickstart.c) add apps and set keys by name through the setters below, then run the
 * same whole-config checks, so there is one definition of every key however it is given.
 *
 * Pure: no logging, no sockets, no user lookups. The only file read besides the config itself
 * is the cgroup's cpu.max, when some app says "workers = auto".
 */
#include "config.h"
#include "config_loader.h"

#include "cfgread.h"
#include "deps.h"

#include <errno.h>
#include <ini.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WORKERS_MAX 1024
#define DEFAULT_ADMIN_LISTEN "127.0.0.1:9100"
#define DEFAULT_CGROUP_CPU_MAX "/sys/fs/cgroup/cpu.max"
#define DEFAULT_CGROUP_MEMORY_MAX "/sys/fs/cgroup/memory.max"

enum section_kind { SECTION_NONE, SECTION_SUPERVISOR, SECTION_APP, SECTION_HOOK };

struct config_loader;

/* Parses value into the field at offset off of obj (a struct config or struct config_app). */
typedef int (*key_setter)(struct config_loader *l, void *obj, size_t off, const char *value);

struct key_def {
    const char *name;
    key_setter set;
    size_t off;
    bool repeatable;
};

/* What the loader remembers about an app beyond struct config_app: where things were said. */
struct app_extra {
    unsigned seen[32];      /* line of each key of app_keys[], 0 = not given */
    unsigned *listen_lines; /* parallel to config_app.listen */
    unsigned *env_lines;    /* parallel to config_app.env */
};

struct config_loader {
    const char *file; /* as errors name it */

    struct cfgread rd;  /* the input, as inih reads it (cfgread.h) */

    struct config *cfg;
    struct app_extra *extra; /* parallel to cfg->apps, outliving it on success */
    size_t n_extra;
    unsigned sup_seen[32]; /* line of each key of supervisor_keys[] */
    unsigned sup_line;     /* where [supervisor] stands; 0 = absent */
    unsigned admin_line;   /* where admin_listen was set; 0 = default or command line */
    enum section_kind section;
    size_t app; /* index of the current app when section == SECTION_APP */
    unsigned hook_seen[CONFIG_HOOKS_MAX][8]; /* line of each key of hook_keys[] per hook */
    const char *key;

    bool failed;
    int error; /* -EINVAL, -ENOMEM, or the -errno of a failed read */
    struct config_error err;
};

/* ---- errors ---- */

static void error_setv(struct config_error *e, const char *file, unsigned line, const char *key,
                       const char *fmt, va_list ap)
{
    snprintf(e->file, sizeof e->file, "%s", file ? file : "");
    e->line = line;
    snprintf(e->key, sizeof e->key, "%s", key ? key : "");
    vsnprintf(e->message, sizeof e->message, fmt, ap);
}

static void error_set(struct config_error *e, const char *file, unsigned line, const char *key,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void error_set(struct config_error *e, const char *file, unsigned line, const char *key,
                      const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    error_setv(e, file, line, key, fmt, ap);
    va_end(ap);
}

/* Records the first error, with its code; later ones are consequences and are dropped. */
static int loader_fail_atv(struct config_loader *l, int error, unsigned line, const char *key,
                           const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));
static int loader_fail_atv(struct config_loader *l, int error, unsigned line, const char *key,
                           const char *fmt, va_list ap)
{
    if (l->failed) {
        return l->error;
    }
    l->failed = true;
    l->error = error;
    cfgread_stop(&l->rd);
    error_setv(&l->err, l->file, line, key, fmt, ap);
    return error;
}

static int loader_fail_at(struct config_loader *l, int error, unsigned line, const char *key,
                          const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int loader_fail_at(struct config_loader *l, int error, unsigned line, const char *key,
                          const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    int r = loader_fail_atv(l, error, line, key, fmt, ap);
    va_end(ap);
    return r;
}

/* An invalid value of the key being handled, on the current line. */
#define loader_fail(l, ...) loader_fail_at((l), -EINVAL, (l)->rd.lineno, (l)->key, __VA_ARGS__)
#define loader_oom(l) loader_fail_at((l), -ENOMEM, (l)->rd.lineno, (l)->key, "out of memory")

void config_error_format(const struct config_error *err, char *buf, size_t size)
{
    char line[16] = "";

    if (size == 0) {
        return;
    }
    if (err->line > 0) {
        snprintf(line, sizeof line, ":%u", err->line);
    }
    snprintf(buf, size, "%s%s%s%s%s%s", err->file, line, err->file[0] ? ": " : "", err->key,
             err->key[0] ? ": " : "", err->message);
}

/* "250ms", "30s", "5m", "2h": the largest unit that states ms exactly, for messages. */
static void format_duration(uint64_t ms, char *buf, size_t size)
{
    if (ms == 0) {
        snprintf(buf, size, "0");
    } else if (ms % (60 * 60 * 1000) == 0) {
        snprintf(buf, size, "%lluh", (unsigned long long)(ms / (60 * 60 * 1000)));
    } else if (ms % (60 * 1000) == 0) {
        snprintf(buf, size, "%llum", (unsigned long long)(ms / (60 * 1000)));
    } else if (ms % 1000 == 0) {
        snprintf(buf, size, "%llus", (unsigned long long)(ms / 1000));
    } else {
        snprintf(buf, size, "%llums", (unsigned long long)ms);
    }
}

/* ---- small helpers ---- */

const char *ready_mode_to_string(enum ready_mode m)
{
    switch (m) {
    case READY_NOTIFY:
        return "notify";
    case READY_DELAY:
        return "delay";
    case READY_NONE:
        return "none";
    case READY_AUTO:
        return "auto";
    }
    return "?";
}

const char *restart_policy_to_string(enum restart_policy p)
{
    switch (p) {
    case RESTART_ALWAYS:
        return "always";
    case RESTART_ON_FAILURE:
        return "on-failure";
    case RESTART_NEVER:
        return "never";
    }
    return "?";
}

char *config_default_control_socket(void)
{
    const char *dir = getenv("XDG_RUNTIME_DIR");
    char *path = NULL;

    /*
     * A relative or over-long runtime dir would give a socket droverctl cannot find or that does
     * not fit sun_path; the working directory is the documented fallback.
     */
    if (dir && dir[0] == '/' &&
        strlen(dir) + sizeof "/drover.sock" <= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        if (asprintf(&path, "%s/drover.sock", dir) < 0) {
            return NULL;
        }
        return path;
    }
    return strdup("./drover.sock");
}

const struct config_app *config_app_find(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_apps; i++) {
        if (strcmp(cfg->apps[i].name, name) == 0) {
            return &cfg->apps[i];
        }
    }
    return NULL;
}

/*
 * The CPUs a cgroup v2 cpu.max file grants: "QUOTA PERIOD" gives QUOTA/PERIOD rounded up;
 * "max PERIOD" (no quota), a missing or unreadable file give 0, meaning "no limit known".
 */
static unsigned cpu_max_quota_cpus(const char *path)
{
    char text[64];
    unsigned long long quota, period;
    unsigned cpus = 0;
    int end = 0;

    if (!path) {
        return 0;
    }
    FILE *f = fopen(path, "re");
    if (!f) {
        return 0;
    }
    if (fgets(text, sizeof text, f) && sscanf(text, "%llu %llu%n", &quota, &period, &end) == 2 &&
        end > 0 && period > 0) {
        /* Round up: 1.5 CPUs of quota keep two workers busy. */
        unsigned long long n = quota / period + (quota % period != 0);
        cpus = n > WORKERS_MAX ? WORKERS_MAX : (unsigned)n;
    }
    fclose(f);
    return cpus;
}

unsigned config_auto_workers(const char *cpu_max_path)
{
    unsigned n = cpu_max_quota_cpus(cpu_max_path);

    if (n == 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        n = online <= 0 ? 1 : online > WORKERS_MAX ? WORKERS_MAX : (unsigned)online;
    }
    return n < 1 ? 1 : n;
}

/* ---- freeing ---- */

static void app_done(struct config_app *a)
{
    free(a->name);
    free(a->command);
    parse_argv_free(a->argv);
    free(a->listen);
    free(a->cwd);
    for (size_t i = 0; i < a->n_env; i++) {
        free(a->env[i]);
    }
    free(a->env);
    free(a->user);
    free(a->group);
    for (size_t i = 0; i < a->n_depends_on; i++) {
        free(a->depends_on[i]);
    }
    free(a->depends_on);
}

void config_free(struct config *cfg)
{
    if (!cfg) {
        return;
    }
    for (size_t i = 0; i < cfg->n_apps; i++) {
        app_done(&cfg->apps[i]);
    }
    free(cfg->apps);
    for (size_t i = 0; i < cfg->n_hooks; i++) {
        struct config_hook *k = &cfg->hooks[i];
        free(k->name);
        free(k->exec);
        parse_argv_free(k->argv);
        free(k->url);
    }
    free(cfg->path);
    free(cfg->text);
    free(cfg->control_socket);
    free(cfg->admin_listen);
    free(cfg->log_file);
    free(cfg->state_dir);
    free(cfg->pid_file);
    free(cfg->cgroup_cpu_max);
    free(cfg->cgroup_memory_max);
    free(cfg);
}

/* ---- defaults (SPEC section 3) ---- */

static struct config *config_new_defaults(void)
{
    struct config *cfg = calloc(1, sizeof *cfg);

    if (!cfg) {
        return NULL;
    }
    cfg->log_format = LOG_FORMAT_JSON;
    cfg->shutdown_timeout_ms = 45000;
    cfg->drain_timeout_ms = 30000;
    cfg->save_timeout_ms = 5000;
    cfg->close_timeout_ms = 5000;
    cfg->cleanup_timeout_ms = 5000;
    cfg->control_socket = config_default_control_socket();
    cfg->admin_listen = strdup(DEFAULT_ADMIN_LISTEN);
    cfg->log_file = strdup("-");
    cfg->state_dir = strdup("./state");
    cfg->cgroup_cpu_max = strdup(DEFAULT_CGROUP_CPU_MAX);
    cfg->cgroup_memory_max = strdup(DEFAULT_CGROUP_MEMORY_MAX);
    if (!cfg->control_socket || !cfg->admin_listen || !cfg->log_file || !cfg->state_dir ||
        !cfg->cgroup_cpu_max || !cfg->cgroup_memory_max || parse_address(DEFAULT_ADMIN_LISTEN, &cfg->admin, NULL) < 0) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

static void app_defaults(struct config_app *a)
{
    *a = (struct config_app){
        .workers = 1,
        .scale_up_after_ms = 3000,
        .scale_down_after_ms = 60000,
        .scale_cooldown_ms = 10000,
        .ready = READY_NOTIFY,
        .ready_timeout_ms = 10000,
        .ready_delay_ms = 1000,
        .max_memory = 0,
        .memory_check_interval_ms = 1000,
        .restart = RESTART_ALWAYS,
        .restart_delay_ms = 100,
        .restart_delay_max_ms = 30000,
        .min_uptime_ms = 5000,
        .reload_batch = 1,
        .kill_timeout_ms = 30000,
        .stop_signal = SIGTERM,
        .metrics_per_worker = false,
    };
}

/* ---- value setters, one per kind of key ---- */

#define FIELD(obj, off, type) ((type *)(void *)((char *)(obj) + (off)))

static int set_duration(struct config_loader *l, void *obj, size_t off, const char *value)
{
    const char *why = "is invalid";
    uint64_t ms;

    if (parse_duration_ms(value, &ms, &why) < 0) {
        return loader_fail(l, "'%s' %s", value, why);
    }
    *FIELD(obj, off, uint64_t) = ms;
    return 0;
}

/* A period or a deadline of zero would spin a timer or fail every start: at least 1ms. */
static int set_duration_positive(struct config_loader *l, void *obj, size_t off, const char *value)
{
    int r = set_duration(l, obj, off, value);

    if (r == 0 && *FIELD(obj, off, uint64_t) == 0) {
        return loader_fail(l, "'%s' must be more than zero; expected e.g. 250ms, 30s, 5m", value);
    }
    return r;
}

static int set_size(struct config_loader *l, void *obj, size_t off, const char *value)
{
    const char *why = "is invalid";
    uint64_t bytes;

    if (parse_size(value, &bytes, &why) < 0) {
        return loader_fail(l, "'%s' %s", value, why);
    }
    *FIELD(obj, off, uint64_t) = bytes;
    return 0;
}

static int set_bool(struct config_loader *l, void *obj, size_t off, const char *value)
{
    bool b;

    if (parse_bool(value, &b) < 0) {
        return loader_fail(l, "'%s' is not a boolean; expected yes/no, true/false or on/off",
                           value);
    }
    *FIELD(obj, off, bool) = b;
    return 0;
}

/* Replaces the string at field with a copy of value. */
static int set_string(struct config_loader *l, char **field, const char *value)
{
    char *copy = strdup(value);

    if (!copy) {
        return loader_oom(l);
    }
    free(*field);
    *field = copy;
    return 0;
}

/* A path that must be given when the key is: an empty value is a mistake, not "default". */
static int set_path(struct config_loader *l, void *obj, size_t off, const char *value)
{
    if (!*value) {
        return loader_fail(l, "is empty; expected a path");
    }
    return set_string(l, FIELD(obj, off, char *), value);
}

/* An optional string: empty means unset (SPEC: "user =" = do not change user). */
static int set_optional(struct config_loader *l, void *obj, size_t off, const char *value)
{
    char **field = FIELD(obj, off, char *);

    if (!*value) {
        free(*field);
        *field = NULL;
        return 0;
    }
    return set_string(l, field, value);
}

static int set_control_socket(struct config_loader *l, void *obj, size_t off, const char *value)
{
    if (*value && strlen(value) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        return loader_fail(l, "'%s' is too long for a Unix socket path (at most 107 bytes)", value);
    }
    return set_path(l, obj, off, value);
}

static int set_log_format(struct config_loader *l, void *obj, size_t off, const char *value)
{
    enum log_format *field = FIELD(obj, off, enum log_format);

    if (strcmp(value, "json") == 0) {
        *field = LOG_FORMAT_JSON;
    } else if (strcmp(value, "text") == 0) {
        *field = LOG_FORMAT_TEXT;
    } else {
        return loader_fail(l, "'%s' is not a log format; expected json or text", value);
    }
    return 0;
}

static int set_ready(struct config_loader *l, void *obj, size_t off, const char *value)
{
    enum ready_mode *field = FIELD(obj, off, enum ready_mode);

    if (strcmp(value, "notify") == 0) {
        *field = READY_NOTIFY;
    } else if (strcmp(value, "delay") == 0) {
        *field = READY_DELAY;
    } else if (strcmp(value, "none") == 0) {
        *field = READY_NONE;
    } else if (strcmp(value, "auto") == 0) {
        *field = READY_AUTO;
    } else {
        return loader_fail(l, "'%s' is not a ready mode; expected notify, delay, none or auto",
                           value);
    }
    return 0;
}

static int set_restart(struct config_loader *l, void *obj, size_t off, const char *value)
{
    enum restart_policy *field = FIELD(obj, off, enum restart_policy);

    if (strcmp(value, "always") == 0) {
        *field = RESTART_ALWAYS;
    } else if (strcmp(value, "on-failure") == 0) {
        *field = RESTART_ON_FAILURE;
    } else if (strcmp(value, "never") == 0) {
        *field = RESTART_NEVER;
    } else {
        return loader_fail(l, "'%s' is not a restart policy; expected always, on-failure or never",
                           value);
    }
    return 0;
}

/* The signals an app may choose to drain on (SPEC section 3, stop_signal): names as systemd's
 * KillSignal= and supervisord's stopsignal take them, with or without SIG. KILL and STOP are
 * not among them: neither lets a worker drain. */
static const struct {
    const char *name;
    int sig;
} stop_signals[] = {
    {"TERM", SIGTERM}, {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"HUP", SIGHUP},
    {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"WINCH", SIGWINCH},
};

static int set_stop_signal(struct config_loader *l, void *obj, size_t off, const char *value)
{
    int *field = FIELD(obj, off, int);
    const char *name = strncmp(value, "SIG", 3) == 0 ? value + 3 : value;

    for (size_t i = 0; i < sizeof stop_signals / sizeof stop_signals[0]; i++) {
        if (strcmp(name, stop_signals[i].name) == 0) {
            *field = stop_signals[i].sig;
            return 0;
        }
    }
    return loader_fail(l, "'%s' is not a stop signal; expected TERM, INT, QUIT, HUP, USR1, USR2 "
                          "or WINCH",
                       value);
}

static int set_command(struct config_loader *l, void *obj, size_t off, const char *value)
{
    struct config_app *a = obj;
    const char *why = "is invalid";
    char **argv = NULL;
    char *copy = NULL;

    (void)off; /* the setter knows its fields */

    int r = parse_argv(value, &argv, &why);
    if (r == -ENOMEM) {
        return loader_oom(l);
    }
    if (r < 0) {
        return loader_fail(l, "'%s' %s", value, why);
    }
    copy = strdup(value);
    if (!copy) {
        parse_argv_free(argv);
        return loader_oom(l);
    }
    free(a->command);
    parse_argv_free(a->argv);
    a->command = copy;
    a->argv = argv;
    return 0;
}

static int set_workers(struct config_loader *l, void *obj, size_t off, const char *value)
{
    struct config_app *a = obj;
    const char *why = "is invalid";
    long n;

    (void)off; /* the setter knows its fields */

    if (strcmp(value, "auto") == 0) {
        /* Resolved once the whole file is read: cgroup_cpu_max may come later. */
        a->workers_auto = true;
        return 0;
    }
    const char *dots = strstr(value, "..");
    if (dots) {
        char min_text[32];
        long max;
        size_t len = (size_t)(dots - value);
        if (len >= sizeof min_text) {
            return loader_fail(l, "'%s' is invalid; expected MIN..MAX, e.g. 2..8", value);
        }
        memcpy(min_text, value, len);
        min_text[len] = '\0';
        if (parse_long(min_text, 1, WORKERS_MAX, &n, &why) < 0 ||
            parse_long(dots + 2, 1, WORKERS_MAX, &max, &why) < 0) {
            return loader_fail(l, "'%s': %s; expected MIN..MAX with 1 <= MIN <= MAX <= %d", value,
                               why, WORKERS_MAX);
        }
        if (max < n) {
            return loader_fail(l, "'%s': MAX is less than MIN; expected MIN..MAX, e.g. 2..8",
                               value);
        }
        a->workers_auto = false;
        a->workers = (unsigned)n;
        a->workers_max = (unsigned)max;
        return 0;
    }
    if (parse_long(value, 1, WORKERS_MAX, &n, &why) < 0) {
        return loader_fail(l, "'%s' %s; expected 1 to %d or auto (or MIN..MAX)", value, why,
                           WORKERS_MAX);
    }
    a->workers_auto = false;
    a->workers = (unsigned)n;
    a->workers_max = 0;
    return 0;
}

static int set_surge_nice(struct config_loader *l, void *obj, size_t off, const char *value)
{
    const char *why = "is invalid";
    long n;

    if (parse_long(value, 0, 19, &n, &why) < 0) {
        return loader_fail(l, "'%s' %s; expected a nice value from 0 (off) to 19", value, why);
    }
    *FIELD(obj, off, int) = (int)n;
    return 0;
}

static int set_reload_batch(struct config_loader *l, void *obj, size_t off, const char *value)
{
    const char *why = "is invalid";
    long n;

    if (parse_long(value, 1, WORKERS_MAX, &n, &why) < 0) {
        return loader_fail(l, "'%s' %s; expected 1 to %d", value, why, WORKERS_MAX);
    }
    *FIELD(obj, off, unsigned) = (unsigned)n;
    return 0;
}

/*
 * Every bound address must be distinct: the master binds each one once (SPEC section 5), and a
 * second bind of the same address would fail at startup, long after `drover -t` said "ok".
 * Returns the line and owner of an earlier use of text among the apps' listen addresses.
 */
static bool listen_find(const struct config_loader *l, const char *text, const char **ret_app,
                        unsigned *ret_line)
{
    for (size_t i = 0; i < l->cfg->n_apps; i++) {
        const struct config_app *a = &l->cfg->apps[i];
        for (size_t j = 0; j < a->n_listen; j++) {
            if (strcmp(a->listen[j].text, text) == 0) {
                *ret_app = a->name;
                *ret_line = l->extra[i].listen_lines[j];
                return true;
            }
        }
    }
    return false;
}

static int set_admin(struct config_loader *l, void *obj, size_t off, const char *value)
{
    struct config *cfg = obj;
    const char *why = "is invalid";
    struct address addr;
    const char *owner;
    unsigned line;

    (void)off; /* the setter knows its fields */

    if (strcmp(value, "off") == 0) {
        free(cfg->admin_listen);
        cfg->admin_listen = NULL;
        return 0;
    }
    if (parse_address(value, &addr, &why) < 0) {
        return loader_fail(l, "'%s' %s, or off", value, why);
    }
    if (listen_find(l, addr.text, &owner, &line)) {
        return loader_fail(l, "'%s' is already a listen address of app '%s' (line %u)", value,
                           owner, line);
    }
    if (set_string(l, &cfg->admin_listen, value) < 0) {
        return l->error;
    }
    cfg->admin = addr;
    l->admin_line = l->rd.lineno;
    return 0;
}

static int set_listen(struct config_loader *l, void *obj, size_t off, const char *value)
{
    struct config_app *a = obj;
    struct app_extra *x = &l->extra[l->app];
    const char *why = "is invalid";
    struct address addr;
    const char *owner;
    unsigned line;

    (void)off; /* the setter knows its fields */

    if (a->n_listen >= CONFIG_LISTEN_MAX) {
        return loader_fail(l,
                           "'%s' is one address too many; an app may listen on at most %d "
                           "(its workers get them as fds 3 to %d)",
                           value, CONFIG_LISTEN_MAX, 3 + CONFIG_LISTEN_MAX - 1);
    }
    /* listen = ADDRESS [backlog=N]: the accept queue the kernel keeps for it (SPEC section 13). */
    char spec[sizeof addr.text + 32] = "";
    const char *opt = strstr(value, " backlog=");
    long backlog = 0;
    if (opt) {
        if (parse_long(opt + strlen(" backlog="), 1, 65535, &backlog, &why) < 0) {
            return loader_fail(l, "'%s': backlog %s; expected 1 to 65535", value, why);
        }
        size_t n = (size_t)(opt - value);
        while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t')) {
            n--;
        }
        if (n >= sizeof spec) {
            return loader_fail(l, "'%s' is too long for an address", value);
        }
        memcpy(spec, value, n);
        spec[n] = '\0';
    }
    if (parse_address(opt ? spec : value, &addr, &why) < 0) {
        return loader_fail(l, "'%s' %s", value, why);
    }
    addr.backlog = (int)backlog;
    if (listen_find(l, addr.text, &owner, &line)) {
        if (strcmp(owner, a->name) == 0) {
            return loader_fail(l, "'%s' is already listed at line %u", value, line);
        }
        return loader_fail(l, "'%s' is already used by app '%s' (line %u)", value, owner, line);
    }
    /* A default admin address is checked at the end, once it is known to stay the default. */
    if (l->admin_line > 0 && l->cfg->admin_listen && strcmp(l->cfg->admin.text, addr.text) == 0) {
        return loader_fail(l, "'%s' is already admin_listen (line %u)", value, l->admin_line);
    }

    struct address *grown = realloc(a->listen, (a->n_listen + 1) * sizeof *grown);
    if (!grown) {
        return loader_oom(l);
    }
    a->listen = grown;
    unsigned *lines = realloc(x->listen_lines, (a->n_listen + 1) * sizeof *lines);
    if (!lines) {
        return loader_oom(l);
    }
    x->listen_lines = lines;
    a->listen[a->n_listen] = addr;
    x->listen_lines[a->n_listen] = l->rd.lineno;
    a->n_listen++;
    return 0;
}

/*
 * A name given twice would leave the worker with two entries, and getenv() answers with the
 * first: the later line, which the user meant as the override, would silently lose.
 */
static int set_env(struct config_loader *l, void *obj, size_t off, const char *value)
{
    struct config_app *a = obj;
    struct app_extra *x = &l->extra[l->app];
    const char *why = "is invalid";

    (void)off; /* the setter knows its fields */

    if (parse_env(value, &why) < 0) {
        return loader_fail(l, "'%s' %s", value, why);
    }
    size_t klen = strcspn(value, "=");
    for (size_t i = 0; i < a->n_env; i++) {
        if (strncmp(a->env[i], value, klen + 1) == 0) {
            return loader_fail(l, "'%s': %.*s is already set at line %u", value, (int)klen, value,
                               x->env_lines[i]);
        }
    }

    char *copy = strdup(value);
    if (!copy) {
        return loader_oom(l);
    }
    char **grown = realloc(a->env, (a->n_env + 1) * sizeof *grown);
    if (!grown) {
        free(copy);
        return loader_oom(l);
    }
    a->env = grown;
    unsigned *lines = realloc(x->env_lines, (a->n_env + 1) * sizeof *lines);
    if (!lines) {
        free(copy);
        return loader_oom(l);
    }
    x->env_lines = lines;
    a->env[a->n_env] = copy;
    x->env_lines[a->n_env] = l->rd.lineno;
    a->n_env++;
    return 0;
}

/*
 * depends_on = a, b: names separated by commas or blanks. Whether each names an app, and whether
 * they close a cycle, is known only at the end (loader_check_depends), since an app may depend
 * on one further down the file.
 */
static int set_depends_on(struct config_loader *l, void *obj, size_t off, const char *value)
{
    struct config_app *a = obj;
    (void)off;
    const char *p = value;
    while (*p) {
        p += strspn(p, ", \t");
        size_t n = strcspn(p, ", \t");
        if (n == 0) {
            break;
        }
        for (size_t i = 0; i < n; i++) {
            if (!config_app_name_char_is_valid(p[i])) {
                return loader_fail(l, "'%.*s' is not an app name (letters, digits, '_', '.', '-')",
                                   (int)n, p);
            }
        }
        if (n > CONFIG_APP_NAME_MAX) {
            return loader_fail(l, "'%.*s...' is longer than an app name may be (%d bytes)", 16,
                               p, CONFIG_APP_NAME_MAX);
        }
        for (size_t i = 0; i < a->n_depends_on; i++) {
            if (strlen(a->depends_on[i]) == n && memcmp(a->depends_on[i], p, n) == 0) {
                return loader_fail(l, "'%.*s' is named twice", (int)n, p);
            }
        }
        char **grown = realloc(a->depends_on, (a->n_depends_on + 1) * sizeof *grown);
        if (!grown) {
            return loader_oom(l);
        }
        a->depends_on = grown;
        if (!(a->depends_on[a->n_depends_on] = strndup(p, n))) {
            return loader_oom(l);
        }
        a->n_depends_on++;
        p += n;
    }
    return 0;
}

/* ---- hooks (SPEC section 11) ---- */

/* events = TYPE TYPE ...  or "*" for every type. */
static int set_hook_events(struct config_loader *l, void *obj, size_t off, const char *value)
{
    struct config_hook *k = obj;
    (void)off;
    k->events = 0;
    const char *p = value;
    while (*p) {
        size_t n = strcspn(p, " \t,");
        if (n > 0) {
            char word[32];
            if (n == 1 && p[0] == '*') {
                k->events = EVENT_MASK_ALL;
            } else if (n >= sizeof word) {
                return loader_fail(l, "'%.*s' is not an event type", (int)n, p);
            } else {
                memcpy(word, p, n);
                word[n] = '\0';
                int t = event_type_from_string(word);
                if (t < 0) {
                    return loader_fail(l, "'%s' is not an event type; expected e.g. crash_loop, "
                                          "worker_exit, reload, or *", word);
                }
                k->events |= (event_mask)1 << t;
            }
        }
        p += n;
        p += strspn(p, " \t,");
    }
    if (!k->events) {
        return loader_fail(l, "no event type; expected e.g. crash_loop worker_hung, or *");
    }
    return 0;
}

static int set_hook_exec(struct config_loader *l, void *obj, size_t off, const char *value)
{
    struct config_hook *k = obj;
    const char *why = "is invalid";
    char **argv = NULL;
    (void)off;
    if (parse_argv(value, &argv, &why) < 0) {
        return loader_fail(l, "'%s' %s", value, why);
    }
    if (!argv[0]) {
        parse_argv_free(argv);
        return loader_fail(l, "is empty; expected a command");
    }
    char *copy = strdup(value);
    if (!copy) {
        parse_argv_free(argv);
        return loader_oom(l);
    }
    free(k->exec);
    parse_argv_free(k->argv);
    k->exec = copy;
    k->argv = argv;
    return 0;
}

static int set_hook_url(struct config_loader *l, void *obj, size_t off, const char *value)
{
    struct config_hook *k = obj;
    (void)off;
    if (strncmp(value, "http://", 7) != 0 && strncmp(value, "https://", 8) != 0) {
        return loader_fail(l, "'%s' is not an http:// or https:// URL", value);
    }
    return set_string(l, &k->url, value);
}

static int set_hook_retries(struct config_loader *l, void *obj, size_t off, const char *value)
{
    const char *why = "is invalid";
    long n;
    if (parse_long(value, 0, 100, &n, &why) < 0) {
        return loader_fail(l, "'%s' %s; expected 0 to 100", value, why);
    }
    *FIELD(obj, off, unsigned) = (unsigned)n;
    return 0;
}

static int loader_add_hook(struct config_loader *l, const char *name, size_t len)
{
    struct config *cfg = l->cfg;
    if (len == 0) {
        return loader_fail(l, "hook name is empty; expected [hook:NAME]");
    }
    if (len > CONFIG_APP_NAME_MAX) {
        return loader_fail(l, "hook name '%.*s' is too long; at most %d characters", (int)len,
                           name, CONFIG_APP_NAME_MAX);
    }
    for (size_t i = 0; i < len; i++) {
        if (!config_app_name_char_is_valid(name[i])) {
            return loader_fail(l,
                               "hook name '%.*s' has '%c'; expected letters, digits, '_', '.', '-'",
                               (int)len, name, name[i]);
        }
    }
    for (size_t i = 0; i < cfg->n_hooks; i++) {
        if (strlen(cfg->hooks[i].name) == len && memcmp(cfg->hooks[i].name, name, len) == 0) {
            return loader_fail(l, "hook '%.*s' is already defined at line %u", (int)len, name,
                               cfg->hooks[i].line);
        }
    }
    if (cfg->n_hooks == CONFIG_HOOKS_MAX) {
        return loader_fail(l, "too many hooks; at most %d", CONFIG_HOOKS_MAX);
    }
    struct config_hook *k = &cfg->hooks[cfg->n_hooks];
    *k = (struct config_hook){.timeout_ms = 10000, .retries = 3, .line = l->rd.lineno};
    k->name = strndup(name, len);
    if (!k->name) {
        return loader_oom(l);
    }
    memset(l->hook_seen[cfg->n_hooks], 0, sizeof l->hook_seen[cfg->n_hooks]);
    cfg->n_hooks++;
    l->section = SECTION_HOOK;
    return 0;
}

/* ---- the keys (SPEC section 3) ---- */

static const struct key_def supervisor_keys[] = {
    {"control_socket", set_control_socket, offsetof(struct config, control_socket), false},
    {"admin_listen", set_admin, offsetof(struct config, admin_listen), false},
    {"log_format", set_log_format, offsetof(struct config, log_format), false},
    {"log_file", set_path, offsetof(struct config, log_file), false},
    {"state_dir", set_path, offsetof(struct config, state_dir), false},
    {"pid_file", set_optional, offsetof(struct config, pid_file), false},
    {"cgroup_cpu_max", set_path, offsetof(struct config, cgroup_cpu_max), false},
    {"cgroup_memory_max", set_path, offsetof(struct config, cgroup_memory_max), false},
    {"shutdown_timeout", set_duration, offsetof(struct config, shutdown_timeout_ms), false},
    {"drain_timeout", set_duration, offsetof(struct config, drain_timeout_ms), false},
    {"save_timeout", set_duration, offsetof(struct config, save_timeout_ms), false},
    {"close_timeout", set_duration, offsetof(struct config, close_timeout_ms), false},
    {"cleanup_timeout", set_duration, offsetof(struct config, cleanup_timeout_ms), false},
    {NULL, NULL, 0, false},
};

static const struct key_def app_keys[] = {
    {"command", set_command, offsetof(struct config_app, command), false},
    {"workers", set_workers, offsetof(struct config_app, workers), false},
    {"listen", set_listen, offsetof(struct config_app, listen), true},
    {"cwd", set_optional, offsetof(struct config_app, cwd), false},
    {"env", set_env, offsetof(struct config_app, env), true},
    {"user", set_optional, offsetof(struct config_app, user), false},
    {"group", set_optional, offsetof(struct config_app, group), false},
    {"ready", set_ready, offsetof(struct config_app, ready), false},
    {"ready_timeout", set_duration_positive, offsetof(struct config_app, ready_timeout_ms), false},
    {"ready_delay", set_duration, offsetof(struct config_app, ready_delay_ms), false},
    {"max_memory", set_size, offsetof(struct config_app, max_memory), false},
    {"memory_check_interval", set_duration_positive,
     offsetof(struct config_app, memory_check_interval_ms), false},
    {"restart", set_restart, offsetof(struct config_app, restart), false},
    {"restart_delay", set_duration, offsetof(struct config_app, restart_delay_ms), false},
    {"restart_delay_max", set_duration, offsetof(struct config_app, restart_delay_max_ms), false},
    {"min_uptime", set_duration, offsetof(struct config_app, min_uptime_ms), false},
    {"reload_batch", set_reload_batch, offsetof(struct config_app, reload_batch), false},
    {"kill_timeout", set_duration, offsetof(struct config_app, kill_timeout_ms), false},
    {"stop_signal", set_stop_signal, offsetof(struct config_app, stop_signal), false},
    {"surge_nice", set_surge_nice, offsetof(struct config_app, surge_nice), false},
    {"metrics_per_worker", set_bool, offsetof(struct config_app, metrics_per_worker), false},
    {"scale_up_after", set_duration_positive, offsetof(struct config_app, scale_up_after_ms),
     false},
    {"scale_down_after", set_duration_positive,
     offsetof(struct config_app, scale_down_after_ms), false},
    {"scale_cooldown", set_duration, offsetof(struct config_app, scale_cooldown_ms), false},
    {"watchdog", set_duration, offsetof(struct config_app, watchdog_ms), false},
    {"max_lifetime", set_duration, offsetof(struct config_app, max_lifetime_ms), false},
    {"depends_on", set_depends_on, offsetof(struct config_app, depends_on), false},
    {NULL, NULL, 0, false},
};

static const struct key_def hook_keys[] = {
    {"events", set_hook_events, offsetof(struct config_hook, events), false},
    {"exec", set_hook_exec, offsetof(struct config_hook, exec), false},
    {"url", set_hook_url, offsetof(struct config_hook, url), false},
    {"timeout", set_duration_positive, offsetof(struct config_hook, timeout_ms), false},
    {"retries", set_hook_retries, offsetof(struct config_hook, retries), false},
    {NULL, NULL, 0, false},
};

_Static_assert(sizeof hook_keys / sizeof hook_keys[0] <=
                   sizeof((struct config_loader *)0)->hook_seen[0] / sizeof(unsigned),
               "hook_seen too small");
_Static_assert(sizeof supervisor_keys / sizeof supervisor_keys[0] <=
                   sizeof((struct config_loader *)0)->sup_seen / sizeof(unsigned),
               "sup_seen too small");
_Static_assert(sizeof app_keys / sizeof app_keys[0] <=
                   sizeof((struct app_extra *)0)->seen / sizeof(unsigned),
               "app_extra.seen too small");

/* The index of name in table; the index of the terminator when absent. */
static unsigned key_index(const struct key_def *table, const char *name)
{
    unsigned i = 0;

    while (table[i].name && strcmp(table[i].name, name) != 0) {
        i++;
    }
    return i;
}

/* Edit distance of two short strings, for "did you mean"; large for long ones. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[64];

    if (la >= 64 || lb >= 64) {
        return SIZE_MAX;
    }
    for (size_t j = 0; j <= lb; j++) {
        row[j] = j;
    }
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) {
                best = up + 1;
            }
            if (row[j - 1] + 1 < best) {
                best = row[j - 1] + 1;
            }
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static const char *key_suggest(const struct key_def *table, const char *name)
{
    const char *best = NULL;
    size_t best_d = 3; /* two typos at most */

    for (const struct key_def *k = table; k->name; k++) {
        size_t d = edit_distance(name, k->name);
        if (d < best_d) {
            best_d = d;
            best = k->name;
        }
    }
    return best;
}

/* ---- sections ---- */

bool config_app_name_char_is_valid(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

/*
 * Appends an app with default values. App names become LISTEN_FDNAMES entries and label
 * values, and name state files: letters, digits, '_', '.' and '-' are safe in all three
 * (systemd forbids ':' in fd names).
 */
static int loader_add_app(struct config_loader *l, const char *name, size_t len, unsigned line)
{
    struct config *cfg = l->cfg;

    if (len == 0) {
        return loader_fail(l, "app name is empty; expected [app:NAME]");
    }
    if (len > CONFIG_APP_NAME_MAX) {
        return loader_fail(l, "app name '%.*s' is too long; at most %d characters", (int)len, name,
                           CONFIG_APP_NAME_MAX);
    }
    for (size_t i = 0; i < len; i++) {
        if (!config_app_name_char_is_valid(name[i])) {
            return loader_fail(l,
                               "app name '%.*s' has '%c'; expected letters, digits, '_', '.', '-'",
                               (int)len, name, name[i]);
        }
    }
    for (size_t i = 0; i < cfg->n_apps; i++) {
        if (strlen(cfg->apps[i].name) == len && memcmp(cfg->apps[i].name, name, len) == 0) {
            return loader_fail(l, "app '%.*s' is already defined at line %u", (int)len, name,
                               cfg->apps[i].line);
        }
    }

    char *copy = strndup(name, len);
    if (!copy) {
        return loader_oom(l);
    }
    struct config_app *apps = realloc(cfg->apps, (cfg->n_apps + 1) * sizeof *apps);
    if (!apps) {
        free(copy);
        return loader_oom(l);
    }
    cfg->apps = apps;
    struct app_extra *extra = realloc(l->extra, (cfg->n_apps + 1) * sizeof *extra);
    if (!extra) {
        free(copy);
        return loader_oom(l);
    }
    l->extra = extra;
    struct config_app *a = &cfg->apps[cfg->n_apps];
    app_defaults(a);
    a->name = copy;
    a->line = line;
    memset(&l->extra[cfg->n_apps], 0, sizeof l->extra[cfg->n_apps]);
    l->app = cfg->n_apps;
    l->section = SECTION_APP;
    cfg->n_apps++;
    l->n_extra++;
    return 0;
}

static int loader_begin_section(struct config_loader *l, const char *name, size_t len)
{
    l->key = "";
    if (len == strlen("supervisor") && memcmp(name, "supervisor", len) == 0) {
        if (l->sup_line > 0) {
            return loader_fail(l, "section [supervisor] is already given at line %u", l->sup_line);
        }
        l->sup_line = l->rd.lineno;
        l->section = SECTION_SUPERVISOR;
        return 0;
    }
    if (len >= 4 && memcmp(name, "app:", 4) == 0) {
        return loader_add_app(l, name + 4, len - 4, l->rd.lineno);
    }
    if (len >= 5 && memcmp(name, "hook:", 5) == 0) {
        return loader_add_hook(l, name + 5, len - 5);
    }
    return loader_fail(l, "unknown section [%.*s]; expected [supervisor], [app:NAME] or "
                          "[hook:NAME]", (int)len, name);
}

/* ---- what the reader tells the loader ---- */

static int loader_on_header(void *owner, const char *name, size_t len)
{
    struct config_loader *l = owner;
    return loader_begin_section(l, name, len);
}

static void loader_on_read_error(void *owner, int error, unsigned line, const char *message)
{
    loader_fail_at(owner, error, line, "", "%s", message);
}

static const struct cfgread_ops loader_reader_ops = {
    .on_header = loader_on_header,
    .on_error = loader_on_read_error,
};

/* inih's ini_handler: one KEY = VALUE of the current section. Returns 1 if good. */
static int loader_on_key(void *user, const char *section, const char *name, const char *value)
{
    struct config_loader *l = user;
    const struct key_def *table;
    unsigned *seen;
    void *obj;
    bool is_hook = false;

    if (l->failed) {
        return 0;
    }
    /* inih keeps this line's name for an indented line after it (see cfgread.c). */
    cfgread_saw_key(&l->rd);
    const char *given = value;
    name = cfgread_expand_name(&l->rd, name);
    if (given) {
        value = cfgread_expand_value(&l->rd, given);
    }
    if (!name || (given && !value)) {
        loader_fail_at(l, -ENOMEM, l->rd.lineno, "", "out of memory");
        return 0;
    }
    l->key = name;
    if (!value) {
        loader_fail(l, "has no value; expected KEY = VALUE");
        return 0;
    }
    if (!*name) {
        loader_fail(l, "a value without a key; expected KEY = VALUE");
        return 0;
    }
    switch (l->section) {
    case SECTION_SUPERVISOR:
        table = supervisor_keys;
        seen = l->sup_seen;
        obj = l->cfg;
        section = "supervisor";
        break;
    case SECTION_APP:
        table = app_keys;
        seen = l->extra[l->app].seen;
        obj = &l->cfg->apps[l->app];
        section = NULL;
        break;
    case SECTION_HOOK:
        table = hook_keys;
        seen = l->hook_seen[l->cfg->n_hooks - 1];
        obj = &l->cfg->hooks[l->cfg->n_hooks - 1];
        section = l->cfg->hooks[l->cfg->n_hooks - 1].name;
        is_hook = true;
        break;
    case SECTION_NONE:
    default:
        loader_fail(l, "key outside any section; expected it under [supervisor] or [app:NAME]");
        return 0;
    }

    unsigned i = key_index(table, name);
    if (!table[i].name) {
        const char *hint = key_suggest(table, name);
        char where[CONFIG_APP_NAME_MAX + 8];
        if (is_hook) {
            snprintf(where, sizeof where, "[hook:%s]", section);
        } else if (section) {
            snprintf(where, sizeof where, "[%s]", section);
        } else {
            snprintf(where, sizeof where, "[app:%s]", l->cfg->apps[l->app].name);
        }
        if (hint) {
            loader_fail(l, "unknown key in %s; did you mean %s?", where, hint);
        } else {
            loader_fail(l, "unknown key in %s", where);
        }
        return 0;
    }
    if (seen[i] > 0 && !table[i].repeatable) {
        loader_fail(l, "given twice in one section (first at line %u)", seen[i]);
        return 0;
    }
    if (seen[i] == 0) {
        seen[i] = l->rd.lineno;
    }
    return table[i].set(l, obj, table[i].off, value) == 0;
}

/* ---- whole-config checks, once every line is read ---- */

/*
 * depends_on, once every app is known: each name is an app, and no chain of them comes back to
 * where it began (an app would wait for itself forever). Errors stand on the depends_on line.
 */
static int loader_check_depends(struct config_loader *l)
{
    struct config *cfg = l->cfg;
    size_t n = cfg->n_apps;
    size_t **edges = calloc(n, sizeof *edges);
    size_t *n_edges = calloc(n, sizeof *n_edges);
    size_t *cycle = calloc(n + 1, sizeof *cycle);
    int r = 0;

    if (!edges || !n_edges || !cycle) {
        r = loader_fail_at(l, -ENOMEM, 0, "", "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const struct config_app *a = &cfg->apps[i];
        unsigned line = l->extra[i].seen[key_index(app_keys, "depends_on")];
        if (a->n_depends_on == 0) {
            continue;
        }
        if (!(edges[i] = calloc(a->n_depends_on, sizeof *edges[i]))) {
            r = loader_fail_at(l, -ENOMEM, line, "depends_on", "out of memory");
            goto out;
        }
        for (size_t j = 0; j < a->n_depends_on; j++) {
            const struct config_app *to = config_app_find(cfg, a->depends_on[j]);
            if (!to) {
                r = loader_fail_at(l, -EINVAL, line, "depends_on",
                                   "app '%s' depends on '%s', which is not an app in this file",
                                   a->name, a->depends_on[j]);
                goto out;
            }
            edges[i][n_edges[i]++] = (size_t)(to - cfg->apps);
        }
    }
    size_t len = 0;
    r = deps_find_cycle(n, (const size_t *const *)edges, n_edges, cycle, &len);
    if (r == -ELOOP) {
        char path[200] = "";
        size_t used = 0;
        for (size_t i = 0; i < len && used < sizeof path; i++) {
            int w = snprintf(path + used, sizeof path - used, "%s%s", i ? " -> " : "",
                             cfg->apps[cycle[i]].name);
            used += w > 0 ? (size_t)w : 0;
        }
        unsigned line = l->extra[cycle[0]].seen[key_index(app_keys, "depends_on")];
        r = loader_fail_at(l, -EINVAL, line, "depends_on",
                           "a dependency cycle: %s; expected an app never to depend on itself, "
                           "directly or through others", path);
    } else if (r < 0) {
        r = loader_fail_at(l, -EINVAL, 0, "depends_on", "too many apps (at most %d)",
                           DEPS_NODES_MAX);
    }
out:
    for (size_t i = 0; edges && i < n; i++) {
        free(edges[i]);
    }
    free(edges);
    free(n_edges);
    free(cycle);
    return r;
}

static int loader_finish(struct config_loader *l)
{
    struct config *cfg = l->cfg;

    if (cfg->n_apps == 0) {
        return loader_fail_at(l, -EINVAL, 0, "",
                              "no app; expected at least one [app:NAME] section with a command");
    }
    for (size_t i = 0; i < cfg->n_hooks; i++) {
        const struct config_hook *k = &cfg->hooks[i];
        if (!k->events) {
            return loader_fail_at(l, -EINVAL, k->line, "events",
                                  "hook '%s' has no events; expected e.g. events = crash_loop",
                                  k->name);
        }
        if (!k->exec == !k->url) {
            unsigned line = l->hook_seen[i][key_index(hook_keys, "url")];
            return loader_fail_at(l, -EINVAL, k->exec ? line : k->line, k->exec ? "url" : "exec",
                                  "hook '%s' needs exactly one of exec = COMMAND and url = URL",
                                  k->name);
        }
    }
    for (size_t i = 0; i < cfg->n_apps; i++) {
        struct config_app *a = &cfg->apps[i];
        const unsigned *seen = l->extra[i].seen;

        if (!a->argv) {
            return loader_fail_at(l, -EINVAL, a->line, "command",
                                  "app '%s' has no command; expected e.g. command = ./server",
                                  a->name);
        }
        if (a->restart_delay_max_ms < a->restart_delay_ms) {
            char min[32], max[32];
            format_duration(a->restart_delay_ms, min, sizeof min);
            format_duration(a->restart_delay_max_ms, max, sizeof max);
            unsigned max_line = seen[key_index(app_keys, "restart_delay_max")];
            unsigned min_line = seen[key_index(app_keys, "restart_delay")];
            if (max_line > 0) {
                return loader_fail_at(l, -EINVAL, max_line, "restart_delay_max",
                                      "%s is less than restart_delay (%s); expected at least "
                                      "restart_delay",
                                      max, min);
            }
            return loader_fail_at(l, -EINVAL, min_line, "restart_delay",
                                  "%s is more than restart_delay_max (%s); expected at most "
                                  "restart_delay_max",
                                  min, max);
        }
        if (a->workers_auto) {
            a->workers = config_auto_workers(cfg->cgroup_cpu_max);
        }
        if (a->workers_max < a->workers) {
            a->workers_max = a->workers; /* a fixed count: no autoscaling */
        }

        /*
         * Addresses that only clash with a value known at the end: the admin endpoint when it
         * kept its default, and the control socket, wherever it was set.
         */
        for (size_t j = 0; j < a->n_listen; j++) {
            const char *text = a->listen[j].text;
            unsigned line = l->extra[i].listen_lines[j];
            if (cfg->admin_listen && strcmp(cfg->admin.text, text) == 0) {
                return loader_fail_at(l, -EINVAL, line, "listen",
                                      "'%s' is also the admin endpoint (admin_listen); expected "
                                      "another address, or admin_listen set elsewhere or off",
                                      text);
            }
            if (a->listen[j].kind == ADDRESS_UNIX &&
                strcmp(text + strlen("unix:"), cfg->control_socket) == 0) {
                return loader_fail_at(l, -EINVAL, line, "listen",
                                      "'%s' is also the control socket; expected another path",
                                      text);
            }
        }
    }
    return loader_check_depends(l);
}

/* ---- entry points ---- */

static void loader_done(struct config_loader *l)
{
    for (size_t i = 0; i < l->n_extra; i++) {
        free(l->extra[i].listen_lines);
        free(l->extra[i].env_lines);
    }
    free(l->extra);
    cfgread_done(&l->rd);
    config_free(l->cfg);
}

/* Parses the loader's input into a new config. path is what cfg->path becomes (may be NULL). */
static int loader_run(struct config_loader *l, const char *path, struct config **ret,
                      struct config_error *reterr)
{
    int r;

    l->cfg = config_new_defaults();
    if (!l->cfg || (path && !(l->cfg->path = strdup(path)))) {
        loader_fail_at(l, -ENOMEM, 0, "", "out of memory");
        goto out;
    }

    r = ini_parse_stream(cfgread_line, &l->rd, loader_on_key, l);
    /*
     * inih reports the first line it could not parse, and goes on after it; an error of ours
     * further down must not hide it. Our errors stop the input, so none lies beyond theirs.
     */
    if (r > 0 && (!l->failed || (unsigned)r < l->err.line)) {
        l->failed = false;
        loader_fail_at(l, -EINVAL, (unsigned)r, "",
                       "syntax error; expected KEY = VALUE, a [section] or a ; comment");
    } else if (r < 0 && !l->failed) {
        loader_fail_at(l, -ENOMEM, 0, "", "out of memory");
    }
    if (!l->failed) {
        loader_finish(l);
    }
out:
    if (l->failed) {
        *reterr = l->err;
        r = l->error;
    } else {
        *ret = l->cfg;
        l->cfg = NULL;
        r = 0;
    }
    loader_done(l);
    return r;
}

/* The whole file, so that what was loaded can be handed to an upgraded image as it was. */
#define CONFIG_FILE_MAX (64u * 1024u * 1024u)

static int config_read_file(FILE *f, char **ret, size_t *ret_len)
{
    size_t len = 0, cap = 0;
    char *buf = NULL;
    errno = 0;
    for (;;) {
        if (len == cap) {
            if (cap >= CONFIG_FILE_MAX) {
                free(buf);
                return -EFBIG;
            }
            cap = cap ? cap * 2 : 8192;
            char *grown = realloc(buf, cap + 1);
            if (!grown) {
                free(buf);
                return -ENOMEM;
            }
            buf = grown;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            break;
        }
    }
    if (ferror(f)) {
        int e = errno ? errno : EIO; /* a directory opens, then reads as EISDIR */
        free(buf);
        return -e;
    }
    buf[len] = '\0';
    *ret = buf;
    *ret_len = len;
    return 0;
}

/* Loads text as the file at path (the text is kept in the config). */
static int config_load_text(const char *path, char *text, size_t len, struct config **ret,
                            struct config_error *reterr)
{
    struct config_loader l = {.file = path};
    cfgread_init(&l.rd, NULL, text, len, CONFIG_LINE_MAX, &loader_reader_ops, &l);
    int r = loader_run(&l, path, ret, reterr);
    if (r == 0) {
        (*ret)->text = text;
        (*ret)->text_len = len;
    } else {
        free(text);
    }
    return r;
}

int config_load(const char *path, struct config **ret, struct config_error *reterr)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        int r = -errno;
        error_set(reterr, path, 0, "", "cannot open: %s", strerror(-r));
        return r;
    }
    char *text = NULL;
    size_t len = 0;
    int r = config_read_file(f, &text, &len);
    fclose(f);
    if (r < 0) {
        error_set(reterr, path, 0, "", "cannot read: %s", strerror(-r));
        return r;
    }
    return config_load_text(path, text, len, ret, reterr);
}

int config_load_saved(const char *path, const char *text, size_t len, struct config **ret,
                      struct config_error *reterr)
{
    char *copy = malloc(len + 1);
    if (!copy) {
        error_set(reterr, path, 0, "", "out of memory");
        return -ENOMEM;
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    return config_load_text(path, copy, len, ret, reterr);
}

int config_load_string(const char *name, const char *text, size_t len, struct config **ret,
                       struct config_error *reterr)
{
    struct config_loader l = {.file = name};

    cfgread_init(&l.rd, NULL, text, len, CONFIG_LINE_MAX, &loader_reader_ops, &l);
    return loader_run(&l, NULL, ret, reterr);
}

/* ---- the loader without a file (config_loader.h) ---- */

int config_loader_new(const char *file, struct config_loader **ret, struct config_error *reterr)
{
    struct config_loader *l = calloc(1, sizeof *l);

    if (!l) {
        error_set(reterr, file, 0, "", "out of memory");
        return -ENOMEM;
    }
    l->file = file;
    l->cfg = config_new_defaults();
    if (!l->cfg) {
        error_set(reterr, file, 0, "", "out of memory");
        config_loader_free(l);
        return -ENOMEM;
    }
    *ret = l;
    return 0;
}

void config_loader_free(struct config_loader *l)
{
    if (!l) {
        return;
    }
    loader_done(l);
    free(l);
}

int config_loader_add_app(struct config_loader *l, const char *name, struct config_app **ret_app)
{
    int r = loader_add_app(l, name, strlen(name), l->rd.lineno);

    if (r < 0) {
        return r;
    }
    *ret_app = &l->cfg->apps[l->app];
    return 0;
}

int config_loader_set(struct config_loader *l, const char *key, const char *value)
{
    unsigned i = key_index(supervisor_keys, key);

    if (l->failed) {
        return l->error;
    }
    l->key = key;
    if (supervisor_keys[i].name) {
        return supervisor_keys[i].set(l, l->cfg, supervisor_keys[i].off, value);
    }
    i = key_index(app_keys, key);
    if (!app_keys[i].name) {
        return loader_fail(l, "unknown key");
    }
    if (l->section != SECTION_APP) {
        return loader_fail(l, "an app's key, and there is no app yet");
    }
    return app_keys[i].set(l, &l->cfg->apps[l->app], app_keys[i].off, value);
}

int config_loader_fail(struct config_loader *l, int error, const char *key, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    int r = loader_fail_atv(l, error, l->rd.lineno, key, fmt, ap);
    va_end(ap);
    return r;
}

int config_loader_finish(struct config_loader *l, struct config **ret, struct config_error *reterr)
{
    if (!l->failed) {
        loader_finish(l);
    }
    if (l->failed) {
        *reterr = l->err;
        return l->error;
    }
    *ret = l->cfg;
    l->cfg = NULL;
    return 0;
}

struct config *config_ref(struct config *cfg)
{
    if (cfg) {
        cfg->refs++;
    }
    return cfg;
}

void config_unref(struct config *cfg)
{
    if (!cfg) {
        return;
    }
    if (cfg->refs > 0) {
        cfg->refs--;
        return;
    }
    config_free(cfg);
}
