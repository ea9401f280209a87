/*
 * quickstart: the config of a command line. See quickstart.h.
 *
 * Every value goes through config_loader_set() under the key a file would use, so a bad -l
 * reads "listen: '...' is not a numeric address" exactly as a bad listen line does, only with
 * the file "(command line)" and no line number. The two things set here directly are the app's
 * argv, which a file spells as one command string, and that command string itself, written
 * back from argv with the quoting parse_argv() reads: status shows the command a config file
 * would need.
 */
#include "quickstart.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_loader.h"

/* What the quick start's errors name as their file. */
#define QUICKSTART_FILE "(command line)"

/* Whether an argument reads back as itself through parse_argv() without quotes. */
static bool arg_is_plain(const char *s)
{
    if (!*s) {
        return false;
    }
    for (; *s; s++) {
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./=:,@%+-",
                    *s)) {
            return false;
        }
    }
    return true;
}

/*
 * argv joined into one command line, quoted so that parse_argv() gives argv back: what status
 * shows and logs print is then also what a config file would need. NULL when out of memory.
 */
static char *argv_join(char *const *argv)
{
    char *out = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&out, &size);

    if (!f) {
        return NULL;
    }
    for (size_t i = 0; argv[i]; i++) {
        if (i > 0) {
            fputc(' ', f);
        }
        if (arg_is_plain(argv[i])) {
            fputs(argv[i], f);
            continue;
        }
        fputc('\'', f);
        for (const char *p = argv[i]; *p; p++) {
            if (*p == '\'') {
                fputs("'\\''", f);
            } else {
                fputc(*p, f);
            }
        }
        fputc('\'', f);
    }
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* The app name of the quick start: argv[0]'s base name, made safe. */
static void quickstart_app_name(const char *argv0, char *buf, size_t size)
{
    const char *base = argv0;
    size_t n = 0;

    for (const char *p = argv0; *p; p++) {
        if (*p == '/' && p[1]) {
            base = p + 1;
        }
    }
    for (; base[n] && base[n] != '/' && n + 1 < size; n++) {
        buf[n] = config_app_name_char_is_valid(base[n]) ? base[n] : '_';
    }
    buf[n] = '\0';
    if (n == 0) {
        snprintf(buf, size, "app");
    }
}

/* The app's argv, a copy of argv, and its command, argv joined. Returns 0 or -ENOMEM; what
 * was set belongs to the app (and so to the config) either way. */
static int quickstart_set_argv(struct config_app *a, char *const *argv)
{
    size_t argc = 0;

    while (argv[argc]) {
        argc++;
    }
    a->argv = calloc(argc + 1, sizeof *a->argv);
    if (!a->argv) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < argc; i++) {
        a->argv[i] = strdup(argv[i]);
        if (!a->argv[i]) {
            return -ENOMEM;
        }
    }
    a->command = argv_join(argv);
    if (!a->command) {
        return -ENOMEM;
    }
    return 0;
}

int quickstart_config(unsigned workers, const char *listen, const char *admin, const char *socket,
                      const char *ready, char *const *argv, struct config **ret,
                      struct config_error *reterr)
{
    struct config_loader *l = NULL;
    struct config_app *a = NULL;
    char name[CONFIG_APP_NAME_MAX + 1];
    char count[16];

    int r = config_loader_new(QUICKSTART_FILE, &l, reterr);
    if (r < 0) {
        return r;
    }
    if (!argv || !argv[0]) {
        config_loader_fail(l, -EINVAL, "command",
                           "no command given; expected drover [OPTIONS] -- CMD ARGS...");
        goto out;
    }
    quickstart_app_name(argv[0], name, sizeof name);
    if (config_loader_add_app(l, name, &a) < 0) {
        goto out;
    }
    /* admin_listen before listen: a -l equal to -a is then listen's error, found by the
     * whole-config checks, as for a listen line equal to the default admin address. */
    if (socket && config_loader_set(l, "control_socket", socket) < 0) {
        goto out;
    }
    if (admin && config_loader_set(l, "admin_listen", admin) < 0) {
        goto out;
    }
    snprintf(count, sizeof count, "%u", workers);
    if (config_loader_set(l, "workers", workers == 0 ? "auto" : count) < 0) {
        goto out;
    }
    if (listen && config_loader_set(l, "listen", listen) < 0) {
        goto out;
    }
    if (config_loader_set(l, "ready", ready ? ready : "auto") < 0) {
        goto out;
    }
    if (quickstart_set_argv(a, argv) < 0) {
        config_loader_fail(l, -ENOMEM, "command", "out of memory");
    }
out:
    r = config_loader_finish(l, ret, reterr);
    config_loader_free(l);
    return r;
}
