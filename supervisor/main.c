/*
 * drover: argv -> config -> master -> exit status. The only place exit statuses are chosen
 * (SPEC section 2): 0 clean shutdown, 1 shutdown forced by a timeout, 2 bad config or
 * arguments, 3 startup failure.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "config.h"
#include "control.h"
#include "events.h"
#include "handover.h"
#include "hooks.h"
#include "log.h"
#include "version.h"
#include "master.h"
#include "reconfig.h"
#include "sdnotify.h"
#include "quickstart.h"
#include "upgrade.h"

#define EXIT_USAGE 2

static void usage(FILE *f)
{
    fprintf(f,
            "usage: drover [-c FILE] [-t]                       run the apps of a config file\n"
            "       drover -i N -l ADDR [-a ADMIN] [-s SOCKET] [-r MODE] -- CMD [ARGS...]\n"
            "                                                   quick start, no config file\n"
            "       drover --version\n"
            "\n"
            "  -c, --config FILE    config file (default: ./drover.ini)\n"
            "  -t, --test           check the config and exit: 0 ok, 2 invalid\n"
            "  -i, --instances N    quick start: number of workers (or \"auto\")\n"
            "  -l, --listen ADDR    quick start: listen address (127.0.0.1:8080, [::1]:8080,\n"
            "                       unix:/path)\n"
            "  -a, --admin ADDR     admin HTTP endpoint (default 127.0.0.1:9100; \"off\")\n"
            "  -s, --socket PATH    control socket\n"
            "  -r, --ready MODE     quick start: when a worker counts as ready:\n"
            "                         auto    (default) when it says so (sd_notify READY=1 or\n"
            "                                 the SDK), or after 1 s if it says nothing at all\n"
            "                         notify  only when it says so (10 s, or it is restarted)\n"
            "                         delay   after 1 s of uptime\n"
            "                         none    as soon as it has started\n");
}

/* The parts of drover above the master, in the order they open (SPEC section 7 first: a second
 * drover on the same control socket is told so before it touches any listen address). */
static int main_open_control(struct master *m, void **ret)
{
    struct control *c = NULL;
    int r = control_open(m, &c);
    *ret = c;
    return r;
}

static void main_close_control(void *part)
{
    control_close(part);
}

static int main_save_control(void *part, struct handover *h)
{
    return control_save(part, h);
}

static int main_open_admin(struct master *m, void **ret)
{
    struct admin *a = NULL;
    int r = admin_open(m, &a);
    *ret = a;
    return r;
}

static void main_close_admin(void *part)
{
    admin_close(part);
}

static int main_save_admin(void *part, struct handover *h)
{
    return admin_save(part, h);
}

/* First of all, before any app exists: NOTIFY_SOCKET and WATCHDOG_* leave the environment. */
static int main_open_sdnotify(struct master *m, void **ret)
{
    struct sdnotify *n = NULL;
    int r = sdnotify_open(m, &n);
    *ret = n;
    return r;
}

static void main_close_sdnotify(void *part)
{
    sdnotify_close(part);
}

static int main_save_sdnotify(void *part, struct handover *h)
{
    return sdnotify_save(part, h);
}

static int main_open_hooks(struct master *m, void **ret)
{
    struct hooks *h = NULL;
    int r = hooks_open(m, &h);
    *ret = h;
    return r;
}

static void main_close_hooks(void *part)
{
    hooks_close(part);
}

static int main_save_hooks(void *part, struct handover *h)
{
    return hooks_save(part, h);
}

static int main_open_upgrade(struct master *m, void **ret)
{
    struct upgrade *u = NULL;
    int r = upgrade_open(m, &u);
    *ret = u;
    return r;
}

static void main_close_upgrade(void *part)
{
    upgrade_close(part);
}

static int main_save_upgrade(void *part, struct handover *h)
{
    return upgrade_save(part, h);
}

/* The upgrade part first of all: it counts, and records how this image came up. */
static const struct master_part main_parts[] = {
    {main_open_upgrade, main_close_upgrade, main_save_upgrade},
    {main_open_sdnotify, main_close_sdnotify, main_save_sdnotify},
    {main_open_control, main_close_control, main_save_control},
    {main_open_admin, main_close_admin, main_save_admin},
    {main_open_hooks, main_close_hooks, main_save_hooks},
};

/* SIGHUP: as `droverctl reload` without an app name, with nobody to report to. */
static void main_reload_all(struct master *m)
{
    char *why = NULL;
    (void)reconfig_reload(m, NULL, NULL, NULL, &why); /* a refusal is logged there, once */
    free(why);
}

/* SIGUSR2: as `droverctl upgrade`, with nobody to answer. */
static void main_upgrade(struct master *m)
{
    char *why = NULL;
    (void)upgrade_request(m, NULL, NULL, NULL, &why); /* a refusal is logged there */
    free(why);
}

static const struct master_extensions main_extensions = {
    .parts = main_parts,
    .n_parts = sizeof main_parts / sizeof main_parts[0],
    .page = admin_render_metrics,
    .reload_all = main_reload_all,
    .upgrade = main_upgrade,
};

/* An image started by an upgrade that cannot take the state hands it back at once. */
static int main_give_back(const char *why)
{
    fprintf(stderr, "drover: upgrade: %s; executing the previous drover again\n", why);
    int r = handover_give_back(handover_incoming(), why);
    fprintf(stderr, "drover: upgrade: cannot execute the previous drover: %s\n", strerror(-r));
    return MASTER_EXIT_STARTUP;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},  {"test", no_argument, NULL, 't'},
        {"instances", required_argument, NULL, 'i'}, {"listen", required_argument, NULL, 'l'},
        {"admin", required_argument, NULL, 'a'},   {"socket", required_argument, NULL, 's'},
        {"ready", required_argument, NULL, 'r'},   {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {"handover-probe", no_argument, NULL, 'P'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL, *listen = NULL, *admin = NULL, *socket = NULL;
    const char *instances = NULL, *ready = NULL;
    bool test = false;
    int opt;
    (void)handover_init(argv); /* before anything: a handle on this binary, for a rollback */
    /* '+': stop at the first non-option, so the worker's own flags after "--" are not ours. */
    while ((opt = getopt_long(argc, argv, "+c:ti:l:a:s:r:h", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 't':
            test = true;
            break;
        case 'i':
            instances = optarg;
            break;
        case 'l':
            listen = optarg;
            break;
        case 'a':
            admin = optarg;
            break;
        case 's':
            socket = optarg;
            break;
        case 'r':
            ready = optarg;
            break;
        case 'V':
            printf("drover %s\n", drover_version);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        case 'P':
            /* A running drover asks whether this program can take over from it (SPEC section
             * 12): the state format it reads, then the config check of -t. */
            printf("drover-handover %u %s\n", drover_handover_version, drover_version);
            fflush(stdout);
            test = true;
            break;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    char **cmd = argv + optind;
    bool quick = *cmd != NULL || instances || listen || ready;
    if (quick && config_path) {
        fprintf(stderr, "drover: -c and a quick-start command exclude each other\n");
        return EXIT_USAGE;
    }
    if (quick && !*cmd) {
        fprintf(stderr, "drover: quick start needs a command after --\n");
        usage(stderr);
        return EXIT_USAGE;
    }

    struct config *cfg = NULL;
    struct config_error err = {0};
    char msg[1024];
    int r;
    if (quick) {
        unsigned workers = 1;
        if (instances && strcmp(instances, "auto") == 0) {
            workers = 0; /* quickstart_config reads 0 as "auto" */
        } else if (instances) {
            char *end;
            errno = 0;
            unsigned long n = strtoul(instances, &end, 10);
            if (errno || *end || n < 1 || n > 1024 || instances[0] == '-') {
                fprintf(stderr, "drover: -i: '%s' is not a worker count (1..1024 or auto)\n",
                        instances);
                return EXIT_USAGE;
            }
            workers = (unsigned)n;
        }
        r = quickstart_config(workers, listen, admin, socket, ready, cmd, &cfg, &err);
    } else {
        if (!config_path) {
            config_path = "drover.ini";
        }
        r = config_load(config_path, &cfg, &err);
    }

    /* Started by an upgrade: the state first, and the config the previous image ran on (the
     * file may say something else by now: that is for a reload). */
    struct handover *h = NULL;
    char why[512];
    int got = test ? 0 : handover_receive(&h, why, sizeof why);
    if (got < 0) {
        config_free(cfg);
        return main_give_back(why);
    }
    const json_t *saved_cfg = handover_get(h, "config");
    if (got > 0 && saved_cfg) {
        config_free(cfg);
        cfg = NULL;
        json_t *text = json_object_get(saved_cfg, "text");
        r = config_load_saved(json_string_value(json_object_get(saved_cfg, "path")),
                              json_string_value(text), json_string_length(text), &cfg, &err);
    }
    if (got > 0 && r < 0) {
        config_error_format(&err, msg, sizeof msg);
        return main_give_back(msg);
    }
    if (got > 0 && events_restore(handover_get(h, "events")) < 0) {
        config_free(cfg);
        return main_give_back("the event ring cannot be taken over");
    }
    if (r < 0) {
        config_error_format(&err, msg, sizeof msg);
        fprintf(stderr, "%s\n", msg);
        return EXIT_USAGE;
    }
    if (test) {
        printf("%s: ok\n", quick ? "(command line)" : config_path);
        config_free(cfg);
        return 0;
    }
    r = log_open(cfg->log_format, cfg->log_file);
    if (r < 0) {
        fprintf(stderr, "drover: cannot open log_file '%s': %s\n", cfg->log_file, strerror(-r));
        config_free(cfg);
        return MASTER_EXIT_STARTUP;
    }
    int status = master_run(cfg, &main_extensions);
    events_clear();
    log_close();
    return status;
}
