/*
 * config: the INI file (SPEC section 3), read with inih into an immutable struct config.
 *
 * A config is built whole or not at all: every key is validated where it stands, and the first
 * error carries file, line, key and a message, so `drover -t` and a rejected reload say exactly
 * what to fix. Unknown sections and keys are errors. Defaults are filled in here, so the rest of
 * drover never sees an unset value. The quick start (`drover -i N -l ADDR -- CMD`, quickstart.h)
 * builds the same struct through the same loader (config_loader.h), with the same validation.
 * Pure: no logging, no sockets.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eventtype.h"
#include "parse.h"

/*
 * The most `listen` lines an app may have. A worker's descriptors are 0-2, one per listen
 * address from fd 3 on, then its channel (SPEC section 4), and all of them must fit spawn's fd
 * plan: worker.c asserts 3 + CONFIG_LISTEN_MAX + 1 == SPAWN_FDS_MAX. A file asking for more is
 * refused here, with its line, rather than failing every start.
 */
#define CONFIG_LISTEN_MAX 60

/*
 * The longest line a config file may hold, in bytes, its newline not counted. SPEC section 3:
 * a value may be as long as a person writes it, whatever the line buffer of the system's inih;
 * the bound only keeps a file that is not a config at all (no newline for gigabytes) from
 * being read into memory whole.
 */
#define CONFIG_LINE_MAX (1024 * 1024)

/* notify: READY=1 or the channel's ready; delay: ready_delay of uptime; none: at exec; auto:
 * as notify for a worker that speaks (sd_notify or channel) within ready_delay, else as delay. */
enum ready_mode { READY_NOTIFY, READY_DELAY, READY_NONE, READY_AUTO };
enum restart_policy { RESTART_ALWAYS, RESTART_ON_FAILURE, RESTART_NEVER };
enum log_format { LOG_FORMAT_JSON, LOG_FORMAT_TEXT };

struct config_app {
    char *name;
    char *command;              /* as written */
    char **argv;                /* split from command, NULL-terminated */
    unsigned workers;           /* resolved: "auto" is already the CPU count here; MIN..MAX: MIN */
    bool workers_auto;
    unsigned workers_max;       /* workers = MIN..MAX: autoscaling up to MAX (SPEC section 13);
                                 * otherwise equal to workers */
    uint64_t scale_up_after_ms;
    uint64_t scale_down_after_ms;
    uint64_t scale_cooldown_ms;
    struct address *listen;     /* in `listen` order: fds 3, 4, ... */
    size_t n_listen;
    char *cwd;                  /* NULL = drover's own */
    char **env;                 /* "KEY=VALUE", in file order */
    size_t n_env;
    char *user;                 /* NULL = do not change */
    char *group;                /* NULL = the user's primary group */
    enum ready_mode ready;
    uint64_t ready_timeout_ms;
    uint64_t ready_delay_ms;
    uint64_t max_memory;        /* bytes; 0 = no limit */
    uint64_t memory_check_interval_ms;
    enum restart_policy restart;
    uint64_t restart_delay_ms;
    uint64_t restart_delay_max_ms;
    uint64_t min_uptime_ms;
    unsigned reload_batch;
    uint64_t kill_timeout_ms;
    int stop_signal;            /* what a worker without a channel gets at drain; SIGTERM */
    int surge_nice;             /* 0..19: a surge worker boots this much nicer until ready */
    bool metrics_per_worker;
    uint64_t watchdog_ms;       /* 0 = none; else silent this long = hung (SPEC section 10) */
    uint64_t max_lifetime_ms;   /* 0 = none; else recycled after about this uptime */
    char **depends_on;          /* names of apps started (ready) before it, stopped after it */
    size_t n_depends_on;
    unsigned line;              /* where [app:NAME] stands (0 for the quick start) */
};

/* A [hook:NAME] section (SPEC section 11): what runs for which events. */
struct config_hook {
    char *name;
    event_mask events;          /* the types it acts on */
    char *exec;                 /* as written; NULL for a webhook */
    char **argv;                /* split from exec */
    char *url;                  /* http:// or https://; NULL for a command */
    uint64_t timeout_ms;        /* per run or request */
    unsigned retries;           /* url: further tries after a failed one */
    unsigned line;
};

/* The most hooks a config may name, and the most a hook's events may queue. */
#define CONFIG_HOOKS_MAX 16

struct config {
    char *path;                 /* NULL for the quick start */
    char *text;                 /* the file as it was loaded (NULL for the quick start) ... */
    size_t text_len;            /* ... handed as it is to an upgraded image */
    char *control_socket;       /* resolved, never NULL */
    char *admin_listen;         /* as written; NULL when "off" */
    struct address admin;       /* valid when admin_listen != NULL */
    enum log_format log_format;
    char *log_file;             /* "-" = stdout */
    char *state_dir;
    char *pid_file;             /* NULL = none */
    char *cgroup_cpu_max;       /* where "workers = auto" reads a CPU quota */
    char *cgroup_memory_max;    /* where autoscaling reads the memory limit it stays within */
    uint64_t shutdown_timeout_ms;
    uint64_t drain_timeout_ms;
    uint64_t save_timeout_ms;
    uint64_t close_timeout_ms;
    uint64_t cleanup_timeout_ms;
    struct config_app *apps;
    size_t n_apps;
    struct config_hook hooks[CONFIG_HOOKS_MAX];
    size_t n_hooks;
    unsigned refs;              /* extra references; see config_ref() */
};

/* What went wrong, for "FILE:LINE: key: message". line 0 = not tied to a line. */
struct config_error {
    char file[256];
    unsigned line;
    char key[64];
    char message[256];
};

/*
 * Reads and validates the file at path. On success stores a new config in *ret (free with
 * config_free) and returns 0. On failure returns -EINVAL (invalid content) or -errno (cannot
 * read the file) and fills *reterr; *ret is untouched.
 */
int config_load(const char *path, struct config **ret, struct config_error *reterr);

/* As config_load(), of the file at path as it was when text was read from it: an upgraded
 * image (SPEC section 12) runs on the config its predecessor ran on, whatever the file says
 * now; path is what a later reload reads. */
int config_load_saved(const char *path, const char *text, size_t len, struct config **ret,
                      struct config_error *reterr);

/*
 * As config_load(), from the len bytes at text (no terminating NUL needed); name stands for the
 * file in errors. The config's path is NULL: there is no file to re-read on reload. For tests
 * and the fuzzer. Returns 0 or -EINVAL / -ENOMEM with *reterr.
 */
int config_load_string(const char *name, const char *text, size_t len, struct config **ret,
                       struct config_error *reterr);

void config_free(struct config *cfg);

/*
 * Configs are shared. A reload creates a new one while workers started under the old one are
 * still running and still read it (their readiness mode, command, timeouts), so each app and
 * worker holds a reference. A fresh config counts as one reference; config_unref() on the last
 * frees it. Both accept NULL.
 */
struct config *config_ref(struct config *cfg);
void config_unref(struct config *cfg);

/* Formats *err as "FILE:LINE: key: message" (parts left out when unknown) into buf. */
void config_error_format(const struct config_error *err, char *buf, size_t size);

/* The default control socket path: $XDG_RUNTIME_DIR/drover.sock, else ./drover.sock. */
char *config_default_control_socket(void);

/* Finds an app by name; NULL if none. */
const struct config_app *config_app_find(const struct config *cfg, const char *name);

/*
 * The CPUs "workers = auto" means: the cgroup v2 quota in the cpu.max file at path (when it
 * holds "QUOTA PERIOD" rather than "max"), rounded up, else the online CPU count; at least 1,
 * at most 1024 (the most workers an app may have).
 */
unsigned config_auto_workers(const char *cpu_max_path);

const char *ready_mode_to_string(enum ready_mode m);
const char *restart_policy_to_string(enum restart_policy p);
