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
 * Why a reader of our own in front of inih. The library as Debian builds it does not pass
 * line numbers to the handler, reads lines into a buffer of 200 bytes and silently splits a
 * longer one into two lines, and treats an indented line as the continuation of the previous
 * value. Our reader hands inih one line at a time, so the handler knows the current line; it
 * hands a line too long for inih's buffer over by reference (see loader_shorten), so a value
 * may be as long as SPEC section 3 promises; it strips leading blanks, so an indented key is
 * simply a key; and it recognises section headers itself, because inih reports sections only
 * through the keys inside them: an empty or misspelt section would otherwise go unnoticed, and
 * [app:NAME] would have no line to point at.
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

enum section_kind { SECTION_NONE, SECTION_SUPERVISOR, SECTION_APP };

/* Long lines, handed to inih shortened (loader_shorten): the token byte, spans per line, the
 * longest name kept as it is, and the most characters a shortened line can take. */
#define SPAN_MARK '\x01'
#define LOADER_SPANS_MAX 4
#define LOADER_NAME_KEPT_MAX 32
#define LOADER_SHORT_LINE_MAX 64

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

    /* The input: a FILE, or a buffer in memory. */
    FILE *f;
    const char *mem;
    size_t mem_len;
    size_t mem_pos;
    char *buf; /* the current line, read from f */
    size_t buf_size;
    unsigned lineno; /* of the line inih is working on */

    /*
     * A line too long for inih's buffer reaches inih shortened: each stretch of it that inih
     * does not look into is replaced by a token, SPAN_MARK and a digit, that stands for
     * span[digit]. The spans point into the current line; n_spans is 0 for a line handed over
     * as it is. The handler expands the tokens in the name and value inih gives it, into
     * name_buf and value_buf.
     */
    struct {
        const char *text;
        size_t len;
        bool joins; /* the blank and ';' after this token stand for nothing (a continuation) */
    } span[LOADER_SPANS_MAX];
    size_t n_spans;
    bool after_key; /* a key came since the last section: inih would continue its value */
    char *name_buf;
    size_t name_size;
    char *value_buf;
    size_t value_size;

    struct config *cfg;
    struct app_extra *extra; /* parallel to cfg->apps, outliving it on success */
    size_t n_extra;
    unsigned sup_seen[32]; /* line of each key of supervisor_keys[] */
    unsigned sup_line;     /* where [supervisor] stands; 0 = absent */
    unsigned admin_line;   /* where admin_listen was set; 0 = default or command line */
    enum section_kind section;
    size_t app; /* index of the current app when section == SECTION_APP */
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
#define loader_fail(l, ...) loader_fail_at((l), -EINVAL, (l)->lineno, (l)->key, __VA_ARGS__)
#define loader_oom(l) loader_fail_at((l), -ENOMEM, (l)->lineno, (l)->key, "out of memory")

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
    free(cfg->path);
    free(cfg->control_socket);
    free(cfg->admin_listen);
    free(cfg->log_file);
    free(cfg->state_dir);
    free(cfg->pid_file);
    free(cfg->cgroup_cpu_max);
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
    if (!cfg->control_socket || !cfg->admin_listen || !cfg->log_file || !cfg->state_dir ||
        !cfg->cgroup_cpu_max || parse_address(DEFAULT_ADMIN_LISTEN, &cfg->admin, NULL) < 0) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

static void app_defaults(struct config_app *a)
{
    *a = (struct config_app){
        .workers = 1,
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
    if (parse_long(value, 1, WORKERS_MAX, &n, &why) < 0) {
        return loader_fail(l, "'%s' %s; expected 1 to %d or auto", value, why, WORKERS_MAX);
    }
    a->workers_auto = false;
    a->workers = (unsigned)n;
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
    l->admin_line = l->lineno;
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
    if (parse_address(value, &addr, &why) < 0) {
        return loader_fail(l, "'%s' %s", value, why);
    }
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
    x->listen_lines[a->n_listen] = l->lineno;
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
    x->env_lines[a->n_env] = l->lineno;
    a->n_env++;
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
    {"metrics_per_worker", set_bool, offsetof(struct config_app, metrics_per_worker), false},
    {NULL, NULL, 0, false},
};

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
        l->sup_line = l->lineno;
        l->section = SECTION_SUPERVISOR;
        return 0;
    }
    if (len >= 4 && memcmp(name, "app:", 4) == 0) {
        return loader_add_app(l, name + 4, len - 4, l->lineno);
    }
    return loader_fail(l, "unknown section [%.*s]; expected [supervisor] or [app:NAME]", (int)len,
                       name);
}

/* ---- the reader in front of inih ---- */

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/*
 * The next raw line from the file, newline included, into l->buf. Reads no more than
 * CONFIG_LINE_MAX + 1 bytes of a line without a newline: the caller refuses such a line
 * anyway, and a file with no newline at all is then never read whole. False at the end, or on
 * a read error or when out of memory (both recorded).
 */
static bool loader_file_line(struct config_loader *l, const char **ret_line, size_t *ret_len)
{
    size_t n = 0;
    int c = 0;

    errno = 0;
    while (n <= CONFIG_LINE_MAX && (c = getc_unlocked(l->f)) != EOF) {
        if (n + 1 > l->buf_size) {
            size_t size = l->buf_size ? 2 * l->buf_size : 256;
            if (size > CONFIG_LINE_MAX + 2) {
                size = CONFIG_LINE_MAX + 2;
            }
            char *grown = realloc(l->buf, size);
            if (!grown) {
                loader_fail_at(l, -ENOMEM, l->lineno + 1, "", "out of memory");
                return false;
            }
            l->buf = grown;
            l->buf_size = size;
        }
        l->buf[n++] = (char)c;
        if (c == '\n') {
            break;
        }
    }
    if (c == EOF && ferror(l->f)) {
        int e = errno > 0 ? errno : EIO;
        loader_fail_at(l, -e, 0, "", "cannot read: %s", strerror(e));
        return false;
    }
    if (n == 0) {
        return false;
    }
    *ret_line = l->buf;
    *ret_len = n;
    return true;
}

/* The next raw line, newline included; false at the end or on a read error (recorded). */
static bool loader_next_line(struct config_loader *l, const char **ret_line, size_t *ret_len)
{
    if (l->f) {
        return loader_file_line(l, ret_line, ret_len);
    }
    if (l->mem_pos >= l->mem_len) {
        return false;
    }
    const char *start = l->mem + l->mem_pos;
    size_t left = l->mem_len - l->mem_pos;
    const char *nl = memchr(start, '\n', left);
    size_t n = nl ? (size_t)(nl - start) + 1 : left;
    l->mem_pos += n;
    *ret_line = start;
    *ret_len = n;
    return true;
}

/*
 * A section header: "[NAME]", blanks inside the brackets ignored, followed by nothing but
 * blanks or a comment. Returns 0 or the error recorded.
 */
static int loader_header(struct config_loader *l, const char *s, size_t len)
{
    const char *close = memchr(s, ']', len);

    l->key = "";
    if (!close) {
        return loader_fail(l, "section header has no closing ']'");
    }
    for (const char *p = close + 1; p < s + len && *p != ';' && *p != '#'; p++) {
        if (!is_blank(*p)) {
            return loader_fail(l, "unexpected text after the section header; expected [NAME]");
        }
    }
    const char *name = s + 1;
    const char *end = close;
    while (name < end && is_blank(*name)) {
        name++;
    }
    while (end > name && is_blank(end[-1])) {
        end--;
    }
    return loader_begin_section(l, name, (size_t)(end - name));
}

/* Writes a token for the len bytes at text into out; returns the end of what was written. */
static char *loader_add_span(struct config_loader *l, char *out, const char *text, size_t len)
{
    l->span[l->n_spans].text = text;
    l->span[l->n_spans].len = len;
    l->span[l->n_spans].joins = false;
    *out++ = SPAN_MARK;
    *out++ = (char)('0' + l->n_spans);
    l->n_spans++;
    return out;
}

/*
 * Emits one stretch s[a, b) of a long line into out (see loader_shorten): blanks at either end
 * as one blank, since inih strips them or only asks whether there is one, and what lies between
 * as a token. The name of a key (first) is kept as it is when short, so that inih's copy of it,
 * which it hands back for a continuation line, holds no token. Returns the end of what was
 * written.
 */
static char *loader_emit_stretch(struct config_loader *l, char *out, const char *s, size_t a,
                                 size_t b, bool first)
{
    size_t x = a, y = b;

    while (x < y && is_blank(s[x])) {
        x++;
    }
    while (y > x && is_blank(s[y - 1])) {
        y--;
    }
    if (x > a) {
        *out++ = s[a];
    }
    if (y > x) {
        size_t len = y - x;
        if (first && len <= LOADER_NAME_KEPT_MAX && !memchr(s + x, SPAN_MARK, len)) {
            memcpy(out, s + x, len);
            out += len;
        } else {
            out = loader_add_span(l, out, s + x, len);
        }
    }
    if (b > y && y > x) {
        *out++ = s[y];
    }
    return out;
}

/* The index of the first of chars in s[from, end), or end. */
static size_t span_find(const char *s, size_t from, size_t end, const char *chars)
{
    while (from < end && !strchr(chars, s[from])) {
        from++;
    }
    return from;
}

/*
 * Writes into out (room for LOADER_SHORT_LINE_MAX bytes) a short line that inih reads exactly
 * as it would read the len bytes at s, with the stretches it never looks into handed over by
 * reference. inih, given a line, looks at: its first non-blank character (';' or '#': a
 * comment; after leading blanks and a key: a continuation, whose whole rest is more value;
 * '[': a section), on a section line the first ']', otherwise the first '=' or ':' (the end of
 * the name), the first ';' after a blank (an inline comment: the rest of the line is never
 * read), and blanks at the ends of the name and the value, which it strips. Those characters
 * are kept; every stretch between them becomes a token, SPAN_MARK and a digit, that
 * loader_expand() turns back into the stretch's text. At most three stretches are left, so the
 * result always fits.
 */
static void loader_shorten(struct config_loader *l, const char *s, size_t len, char *out)
{
    size_t first = 0, from, cut[2];
    size_t n_cut = 0;

    l->n_spans = 0;
    while (first < len && is_blank(s[first])) {
        first++;
    }
    if (first > 0) {
        *out++ = s[0];
    }
    size_t comment = len;
    for (size_t i = first + 1; i < len; i++) {
        if (s[i] == ';' && is_blank(s[i - 1])) {
            comment = i;
            break;
        }
    }
    /*
     * A continuation line. inih 55 takes its whole rest as more of the value; later versions
     * cut it at an inline comment first. "T0 ;T1" reads right with both: T0 is the text before
     * the comment, T1 the rest from the blanks after T0 on, and the " ;" between them, which a
     * version that cuts there never passes on, expands to nothing.
     */
    if (first > 0 && first < len && s[first] != ';' && s[first] != '#' && l->after_key) {
        if (comment == len) {
            out = loader_emit_stretch(l, out, s, first, len, false);
        } else {
            size_t text_end = comment, end = len;
            while (is_blank(s[text_end - 1])) {
                text_end--; /* s[first] is not blank: it stops this */
            }
            while (is_blank(s[end - 1])) {
                end--; /* nor is the ';' at comment */
            }
            out = loader_add_span(l, out, s + first, text_end - first);
            l->span[l->n_spans - 1].joins = true;
            *out++ = s[text_end];
            *out++ = ';';
            out = loader_add_span(l, out, s + text_end, end - text_end);
        }
        *out++ = '\n';
        *out = '\0';
        return;
    }
    from = first;
    bool section = first < len && s[first] == '[';
    if (first < len && (s[first] == ';' || s[first] == '#' || section)) {
        *out++ = s[first];
        from = first + 1;
    }
    /* The characters that end a stretch: the first '=' or ':', and a section's first ']'. */
    size_t delim = span_find(s, from, comment, "=:");
    size_t close = section ? span_find(s, from, comment, "]") : comment;
    if (delim < comment) {
        cut[n_cut++] = delim;
    }
    if (close < comment && close != delim) {
        cut[n_cut++] = close;
    }
    if (n_cut == 2 && cut[1] < cut[0]) {
        size_t t = cut[0];
        cut[0] = cut[1];
        cut[1] = t;
    }
    for (size_t i = 0; i < n_cut; i++) {
        out = loader_emit_stretch(l, out, s, from, cut[i], from == first);
        *out++ = s[cut[i]];
        from = cut[i] + 1;
    }
    out = loader_emit_stretch(l, out, s, from, comment, from == first);
    if (comment < len) {
        *out++ = ';';
    }
    *out++ = '\n';
    *out = '\0';
}

/* inih's ini_reader: an fgets() that counts lines and vets them first. */
static char *loader_read(char *str, int num, void *stream)
{
    struct config_loader *l = stream;
    const char *line;
    size_t len;

    /* After the first error nothing more is useful: ending the input ends the parse. */
    if (l->failed || num < 2 || !loader_next_line(l, &line, &len)) {
        return NULL;
    }
    l->lineno++;
    l->key = "";
    l->n_spans = 0;

    if (memchr(line, '\0', len)) {
        loader_fail(l, "line holds a NUL byte; expected text");
        return NULL;
    }
    if (len > 0 && line[len - 1] == '\n') {
        len--;
    }
    if (len > CONFIG_LINE_MAX) {
        loader_fail(l, "line is too long; a line may hold at most %d characters", CONFIG_LINE_MAX);
        return NULL;
    }
    if (l->lineno == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
        line += 3; /* a UTF-8 byte order mark, as some editors write */
        len -= 3;
    }
    /* No indented line can be mistaken for a continuation once it is not indented. */
    while (len > 0 && (*line == ' ' || *line == '\t')) {
        line++;
        len--;
    }
    if (len > 0 && line[0] == '[') {
        if (loader_header(l, line, len) < 0) {
            return NULL;
        }
        l->after_key = false; /* inih forgets the last key at a section */
    }
    if (len <= (size_t)num - 2) {
        memcpy(str, line, len);
        str[len] = '\n';
        str[len + 1] = '\0';
        return str;
    }
    if (num < LOADER_SHORT_LINE_MAX) {
        loader_fail(l, "line is too long for this build of inih (%d bytes a line)", num);
        return NULL;
    }
    loader_shorten(l, line, len, str);
    return str;
}

/* Writes s with its tokens expanded into out (NULL: only counts); returns the length. */
static size_t loader_expand_into(const struct config_loader *l, const char *s, char *out)
{
    size_t n = 0;

    for (const char *p = s; *p; p++) {
        size_t i = (size_t)((unsigned char)p[1] - '0');
        if (*p != SPAN_MARK || p[1] < '0' || i >= l->n_spans) {
            if (out) {
                out[n] = *p;
            }
            n++;
            continue;
        }
        if (out) {
            memcpy(out + n, l->span[i].text, l->span[i].len);
        }
        n += l->span[i].len;
        p++;
        if (l->span[i].joins && is_blank(p[1]) && p[2] == ';') {
            p += 2; /* the " ;" of a continuation line, when inih passed it on */
        }
    }
    return n;
}

/*
 * s, a name or value inih took from the current line, with each token of loader_shorten()
 * replaced by the text it stands for, in *buf (grown as needed). s itself when the line was
 * handed over as it is, or NULL when out of memory.
 */
static const char *loader_expand(struct config_loader *l, const char *s, char **buf, size_t *size)
{
    if (l->n_spans == 0) {
        return s;
    }
    size_t need = loader_expand_into(l, s, NULL) + 1;
    if (need > *size || !*buf) {
        char *grown = realloc(*buf, need);
        if (!grown) {
            return NULL;
        }
        *buf = grown;
        *size = need;
    }
    (*buf)[loader_expand_into(l, s, *buf)] = '\0';
    return *buf;
}

/* inih's ini_handler: one KEY = VALUE of the current section. Returns 1 if good. */
static int loader_on_key(void *user, const char *section, const char *name, const char *value)
{
    struct config_loader *l = user;
    const struct key_def *table;
    unsigned *seen;
    void *obj;

    if (l->failed) {
        return 0;
    }
    /* inih keeps this line's name for an indented line after it (see loader_shorten). */
    l->after_key = true;
    const char *given = value;
    name = loader_expand(l, name, &l->name_buf, &l->name_size);
    if (given) {
        value = loader_expand(l, given, &l->value_buf, &l->value_size);
    }
    if (!name || (given && !value)) {
        loader_fail_at(l, -ENOMEM, l->lineno, "", "out of memory");
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
    case SECTION_NONE:
    default:
        loader_fail(l, "key outside any section; expected it under [supervisor] or [app:NAME]");
        return 0;
    }

    unsigned i = key_index(table, name);
    if (!table[i].name) {
        const char *hint = key_suggest(table, name);
        char where[CONFIG_APP_NAME_MAX + 8];
        if (section) {
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
        seen[i] = l->lineno;
    }
    return table[i].set(l, obj, table[i].off, value) == 0;
}

/* ---- whole-config checks, once every line is read ---- */

static int loader_finish(struct config_loader *l)
{
    struct config *cfg = l->cfg;

    if (cfg->n_apps == 0) {
        return loader_fail_at(l, -EINVAL, 0, "",
                              "no app; expected at least one [app:NAME] section with a command");
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
    return 0;
}

/* ---- entry points ---- */

static void loader_done(struct config_loader *l)
{
    for (size_t i = 0; i < l->n_extra; i++) {
        free(l->extra[i].listen_lines);
        free(l->extra[i].env_lines);
    }
    free(l->extra);
    free(l->buf);
    free(l->name_buf);
    free(l->value_buf);
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

    r = ini_parse_stream(loader_read, l, loader_on_key, l);
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

int config_load(const char *path, struct config **ret, struct config_error *reterr)
{
    struct config_loader l = {.file = path};

    l.f = fopen(path, "re");
    if (!l.f) {
        int r = -errno;
        error_set(reterr, path, 0, "", "cannot open: %s", strerror(-r));
        return r;
    }
    int r = loader_run(&l, path, ret, reterr);
    fclose(l.f);
    return r;
}

int config_load_string(const char *name, const char *text, size_t len, struct config **ret,
                       struct config_error *reterr)
{
    struct config_loader l = {.file = name, .mem = text, .mem_len = len};

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
    int r = loader_add_app(l, name, strlen(name), l->lineno);

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
    int r = loader_fail_atv(l, error, l->lineno, key, fmt, ap);
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
