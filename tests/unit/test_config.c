/*
 * Unit tests of config: the INI file of SPEC section 3. Good files check every value, the
 * defaults included; bad files check the exact line, key and message of the first error, since
 * "FILE:LINE: key: message" is what `drover -t` and a rejected reload show the user. Files under
 * $DROVER_TEST_DATA are the examples a reader can open; short cases are strings in memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "quickstart.h"

/* ---- helpers ---- */

static const char *data_dir(void)
{
    static char dir[PATH_MAX];
    const char *env = getenv("DROVER_TEST_DATA");

    if (env && *env) {
        return env;
    }
    /* Run by hand, outside ctest: the data lives beside this source file. */
    snprintf(dir, sizeof dir, "%s", __FILE__);
    char *slash = strrchr(dir, '/');
    snprintf(slash ? slash + 1 : dir, sizeof dir - (size_t)(slash ? slash + 1 - dir : 0), "data");
    return dir;
}

static const char *data_path(const char *name)
{
    static char path[PATH_MAX];

    int n = snprintf(path, sizeof path, "%s/%s", data_dir(), name);
    assert_true(n > 0 && (size_t)n < sizeof path); /* a cut path would test the wrong file */
    return path;
}

static void show_error(const struct config_error *err)
{
    char buf[1024];

    config_error_format(err, buf, sizeof buf);
    print_message("config error: %s\n", buf);
}

static struct config *load_file_ok(const char *name)
{
    struct config *cfg = NULL;
    struct config_error err;

    int r = config_load(data_path(name), &cfg, &err);
    if (r != 0) {
        show_error(&err);
    }
    assert_int_equal(r, 0);
    assert_non_null(cfg);
    return cfg;
}

static struct config *load_ok(const char *text)
{
    struct config *cfg = NULL;
    struct config_error err;

    int r = config_load_string("test.ini", text, strlen(text), &cfg, &err);
    if (r != 0) {
        show_error(&err);
    }
    assert_int_equal(r, 0);
    assert_non_null(cfg);
    assert_null(cfg->path);
    return cfg;
}

/* Checks the first error: its line, its key, and a part of its message (NULL: any). */
static void check_error(const struct config_error *err, const char *file, unsigned line,
                        const char *key, const char *message_part)
{
    if (strcmp(err->file, file) != 0 || err->line != line || strcmp(err->key, key) != 0 ||
        (message_part && !strstr(err->message, message_part))) {
        print_message("expected %s:%u: %s: ...%s...\n", file, line, key,
                      message_part ? message_part : "");
        show_error(err);
        fail();
    }
}

static void load_bad(const char *text, unsigned line, const char *key, const char *message_part)
{
    struct config *cfg = (struct config *)(uintptr_t)1;
    struct config_error err;

    memset(&err, 0, sizeof err);
    int r = config_load_string("test.ini", text, strlen(text), &cfg, &err);
    if (r == 0) {
        print_message("loaded, but expected test.ini:%u: %s: %s\n", line, key, message_part);
        config_free(cfg);
        fail();
    }
    assert_int_equal(r, -EINVAL);
    assert_true(cfg == (struct config *)(uintptr_t)1); /* untouched on failure */
    check_error(&err, "test.ini", line, key, message_part);
}

/* ---- good files ---- */

static void test_defaults(void **state)
{
    struct config *cfg = load_file_ok("minimal.ini");
    char *sock = config_default_control_socket();

    assert_string_equal(cfg->path, data_path("minimal.ini"));
    assert_string_equal(cfg->control_socket, sock);
    assert_string_equal(cfg->admin_listen, "127.0.0.1:9100");
    assert_string_equal(cfg->admin.text, "127.0.0.1:9100");
    assert_int_equal(cfg->admin.family, AF_INET);
    assert_int_equal(cfg->log_format, LOG_FORMAT_JSON);
    assert_string_equal(cfg->log_file, "-");
    assert_string_equal(cfg->state_dir, "./state");
    assert_null(cfg->pid_file);
    assert_string_equal(cfg->cgroup_cpu_max, "/sys/fs/cgroup/cpu.max");
    assert_int_equal(cfg->shutdown_timeout_ms, 45000);
    assert_int_equal(cfg->drain_timeout_ms, 30000);
    assert_int_equal(cfg->save_timeout_ms, 5000);
    assert_int_equal(cfg->close_timeout_ms, 5000);
    assert_int_equal(cfg->cleanup_timeout_ms, 5000);

    assert_int_equal(cfg->n_apps, 1);
    const struct config_app *a = &cfg->apps[0];
    assert_string_equal(a->name, "web");
    assert_int_equal(a->line, 1);
    assert_string_equal(a->command, "./server");
    assert_string_equal(a->argv[0], "./server");
    assert_null(a->argv[1]);
    assert_int_equal(a->workers, 1);
    assert_false(a->workers_auto);
    assert_int_equal(a->n_listen, 0);
    assert_null(a->cwd);
    assert_int_equal(a->n_env, 0);
    assert_null(a->user);
    assert_null(a->group);
    assert_int_equal(a->ready, READY_NOTIFY);
    assert_int_equal(a->ready_timeout_ms, 10000);
    assert_int_equal(a->ready_delay_ms, 1000);
    assert_int_equal(a->max_memory, 0);
    assert_int_equal(a->memory_check_interval_ms, 1000);
    assert_int_equal(a->restart, RESTART_ALWAYS);
    assert_int_equal(a->restart_delay_ms, 100);
    assert_int_equal(a->restart_delay_max_ms, 30000);
    assert_int_equal(a->min_uptime_ms, 5000);
    assert_int_equal(a->reload_batch, 1);
    assert_int_equal(a->kill_timeout_ms, 30000);
    assert_int_equal(a->stop_signal, SIGTERM);
    assert_false(a->metrics_per_worker);

    free(sock);
    config_free(cfg);
}

static void test_spec_example(void **state)
{
    struct config *cfg = load_file_ok("spec_example.ini");

    assert_string_equal(cfg->control_socket, "/run/drover/control.sock");
    assert_string_equal(cfg->admin_listen, "127.0.0.1:9100");
    assert_int_equal(cfg->n_apps, 1);
    const struct config_app *a = &cfg->apps[0];
    assert_string_equal(a->name, "web");
    assert_int_equal(a->line, 14);
    assert_string_equal(a->command, "./build/worker-sdk/examples/hello-http --greeting hi");
    assert_string_equal(a->argv[0], "./build/worker-sdk/examples/hello-http");
    assert_string_equal(a->argv[1], "--greeting");
    assert_string_equal(a->argv[2], "hi");
    assert_null(a->argv[3]);
    assert_int_equal(a->workers, 4);
    assert_int_equal(a->n_listen, 1);
    assert_string_equal(a->listen[0].text, "127.0.0.1:8080");
    assert_string_equal(a->cwd, ".");
    assert_int_equal(a->n_env, 1);
    assert_string_equal(a->env[0], "KEY=VALUE");
    assert_null(a->user); /* "user =" followed by a comment: unset */
    assert_int_equal(a->max_memory, 256ULL << 20);
    assert_int_equal(a->restart_delay_ms, 100);
    assert_false(a->metrics_per_worker);
    config_free(cfg);
}

static void test_full(void **state)
{
    struct config *cfg = load_file_ok("full.ini");

    assert_string_equal(cfg->control_socket, "/tmp/drover-test/control.sock");
    assert_string_equal(cfg->admin_listen, "[::1]:9200");
    assert_int_equal(cfg->admin.family, AF_INET6);
    assert_int_equal(cfg->log_format, LOG_FORMAT_TEXT);
    assert_string_equal(cfg->log_file, "/var/log/drover.log");
    assert_string_equal(cfg->state_dir, "/var/lib/drover");
    assert_string_equal(cfg->pid_file, "/run/drover.pid");
    assert_string_equal(cfg->cgroup_cpu_max, "/nonexistent/cpu.max");
    assert_int_equal(cfg->shutdown_timeout_ms, 120000);
    assert_int_equal(cfg->drain_timeout_ms, 20000);
    assert_int_equal(cfg->save_timeout_ms, 3000);
    assert_int_equal(cfg->close_timeout_ms, 2000);
    assert_int_equal(cfg->cleanup_timeout_ms, 1500);

    assert_int_equal(cfg->n_apps, 2);
    const struct config_app *a = &cfg->apps[0];
    assert_string_equal(a->name, "api.v2-x_1");
    assert_int_equal(a->line, 16);
    assert_string_equal(a->command, "\"/opt/my app/bin/server\" --name 'a b' \\\"q\\\"");
    assert_string_equal(a->argv[0], "/opt/my app/bin/server");
    assert_string_equal(a->argv[1], "--name");
    assert_string_equal(a->argv[2], "a b");
    assert_string_equal(a->argv[3], "\"q\"");
    assert_null(a->argv[4]);
    assert_int_equal(a->workers, 8);
    assert_false(a->workers_auto);
    assert_int_equal(a->n_listen, 3);
    assert_string_equal(a->listen[0].text, "0.0.0.0:8080");
    assert_string_equal(a->listen[1].text, "[::]:8080");
    assert_string_equal(a->listen[2].text, "unix:/run/api.sock");
    assert_int_equal(a->listen[2].kind, ADDRESS_UNIX);
    assert_string_equal(a->cwd, "/srv/api");
    assert_int_equal(a->n_env, 3);
    assert_string_equal(a->env[0], "A=1");
    assert_string_equal(a->env[1], "B=two words");
    assert_string_equal(a->env[2], "C=");
    assert_string_equal(a->user, "www-data");
    assert_string_equal(a->group, "www-data");
    assert_int_equal(a->ready, READY_DELAY);
    assert_int_equal(a->ready_timeout_ms, 20000);
    assert_int_equal(a->ready_delay_ms, 2000);
    assert_int_equal(a->max_memory, 512ULL << 20);
    assert_int_equal(a->memory_check_interval_ms, 250);
    assert_int_equal(a->restart, RESTART_ON_FAILURE);
    assert_int_equal(a->restart_delay_ms, 1000);
    assert_int_equal(a->restart_delay_max_ms, 60000);
    assert_int_equal(a->min_uptime_ms, 10000);
    assert_int_equal(a->reload_batch, 2);
    assert_int_equal(a->kill_timeout_ms, 3600000);
    assert_true(a->metrics_per_worker);

    const struct config_app *b = &cfg->apps[1];
    assert_string_equal(b->name, "jobs");
    assert_int_equal(b->line, 41);
    assert_int_equal(b->restart, RESTART_NEVER);
    assert_int_equal(b->ready, READY_NONE);
    assert_int_equal(b->workers, 1);

    assert_ptr_equal(config_app_find(cfg, "jobs"), b);
    assert_ptr_equal(config_app_find(cfg, "api.v2-x_1"), a);
    assert_null(config_app_find(cfg, "job"));
    assert_null(config_app_find(cfg, ""));
    config_free(cfg);
}

/* ---- bad files: the first error, exactly ---- */

static void test_bad_files(void **state)
{
    static const struct {
        const char *file;
        unsigned line;
        const char *key;
        const char *message;
    } cases[] = {
        {"bad_unknown_key.ini", 7, "wrokers", "unknown key in [app:web]; did you mean workers?"},
        {"bad_unknown_section.ini", 4, "",
         "unknown section [sevrer]; expected [supervisor], [app:NAME] or [hook:NAME]"},
        {"bad_duration.ini", 4, "restart_delay", "'10' has no unit; expected e.g. 250ms, 30s, 5m"},
        {"bad_duplicate_key.ini", 5, "workers", "given twice in one section (first at line 3)"},
        {"bad_duplicate_app.ini", 7, "", "app 'web' is already defined at line 1"},
        {"bad_missing_command.ini", 4, "command",
         "app 'web' has no command; expected e.g. command = ./server"},
        {"bad_address.ini", 4, "listen",
         "'localhost:8081' is not a numeric IPv4 address (names are not resolved); expected e.g. "
         "127.0.0.1:8080, [::1]:8080 or unix:/path/to.sock"},
        {"bad_syntax.ini", 3, "", "syntax error; expected KEY = VALUE, a [section] or a ; comment"},
        {"bad_no_app.ini", 0, "",
         "no app; expected at least one [app:NAME] section with a command"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct config *cfg = (struct config *)(uintptr_t)1;
        struct config_error err;
        char path[PATH_MAX];

        snprintf(path, sizeof path, "%s", data_path(cases[i].file));
        int r = config_load(path, &cfg, &err);
        if (r != -EINVAL) {
            print_message("%s: expected -EINVAL, got %d\n", cases[i].file, r);
            fail();
        }
        assert_true(cfg == (struct config *)(uintptr_t)1);
        check_error(&err, path, cases[i].line, cases[i].key, NULL);
        if (strcmp(err.message, cases[i].message) != 0) {
            print_message("%s: message '%s', expected '%s'\n", cases[i].file, err.message,
                          cases[i].message);
            fail();
        }
    }
}

static void test_error_text_of_a_file(void **state)
{
    struct config *cfg = NULL;
    struct config_error err;
    char expected[PATH_MAX + 128];
    char buf[1024];
    char path[PATH_MAX];

    snprintf(path, sizeof path, "%s", data_path("bad_duration.ini"));
    assert_int_equal(config_load(path, &cfg, &err), -EINVAL);
    config_error_format(&err, buf, sizeof buf);
    snprintf(expected, sizeof expected,
             "%s:4: restart_delay: '10' has no unit; expected e.g. 250ms, 30s, 5m", path);
    assert_string_equal(buf, expected);

    snprintf(path, sizeof path, "%s", data_path("bad_no_app.ini"));
    assert_int_equal(config_load(path, &cfg, &err), -EINVAL);
    config_error_format(&err, buf, sizeof buf);
    snprintf(expected, sizeof expected,
             "%s: no app; expected at least one [app:NAME] section with a command", path);
    assert_string_equal(buf, expected);
}

static void test_missing_file(void **state)
{
    struct config *cfg = (struct config *)(uintptr_t)1;
    struct config_error err;
    char path[PATH_MAX];

    snprintf(path, sizeof path, "%s", data_path("does-not-exist.ini"));
    assert_int_equal(config_load(path, &cfg, &err), -ENOENT);
    assert_true(cfg == (struct config *)(uintptr_t)1);
    check_error(&err, path, 0, "", NULL);
    assert_string_equal(err.message, "cannot open: No such file or directory");

    /* A directory opens, but does not read. */
    assert_int_equal(config_load(data_dir(), &cfg, &err), -EISDIR);
    check_error(&err, data_dir(), 0, "", NULL);
    assert_string_equal(err.message, "cannot read: Is a directory");
}

/* ---- keys ---- */

static void test_repeatable(void **state)
{
    struct config *cfg = load_ok("[app:web]\n"
                                 "listen = 127.0.0.1:8001\n"
                                 "env = A=1\n"
                                 "command = ./server\n"
                                 "listen = [::1]:8001\n"
                                 "env = B=2\n"
                                 "listen = unix:./web.sock\n"
                                 "env = PATH=/bin:/usr/bin\n"
                                 "\n"
                                 "[app:other]\n"
                                 "command = ./other\n"
                                 "listen = 127.0.0.1:8002\n");

    const struct config_app *a = &cfg->apps[0];
    assert_int_equal(a->n_listen, 3);
    assert_string_equal(a->listen[0].text, "127.0.0.1:8001");
    assert_string_equal(a->listen[1].text, "[::1]:8001");
    assert_string_equal(a->listen[2].text, "unix:./web.sock");
    assert_int_equal(a->n_env, 3);
    assert_string_equal(a->env[0], "A=1");
    assert_string_equal(a->env[1], "B=2");
    assert_string_equal(a->env[2], "PATH=/bin:/usr/bin");
    assert_int_equal(cfg->apps[1].n_listen, 1);
    assert_string_equal(cfg->apps[1].listen[0].text, "127.0.0.1:8002");
    config_free(cfg);
}

static void test_duplicate_keys(void **state)
{
    load_bad("[supervisor]\nlog_format = json\nlog_format = text\n[app:a]\ncommand = x\n", 3,
             "log_format", "given twice in one section (first at line 2)");
    load_bad("[app:a]\ncommand = x\ncommand = y\n", 3, "command",
             "given twice in one section (first at line 2)");
    load_bad("[app:a]\ncommand = x\nuser = a\nuser =\n", 4, "user", "given twice");
    /* A key given once in each of two apps is fine. */
    struct config *cfg = load_ok("[app:a]\ncommand = x\nworkers = 2\n"
                                 "[app:b]\ncommand = y\nworkers = 3\n");
    assert_int_equal(cfg->apps[0].workers, 2);
    assert_int_equal(cfg->apps[1].workers, 3);
    config_free(cfg);
}

static void test_duplicate_listen(void **state)
{
    load_bad("[app:a]\ncommand = x\nlisten = 127.0.0.1:8000\nlisten = 127.0.0.1:8000\n", 4,
             "listen", "'127.0.0.1:8000' is already listed at line 3");
    load_bad("[app:a]\ncommand = x\nlisten = [::1]:8000\n"
             "[app:b]\ncommand = y\nlisten = [0:0::1]:8000\n",
             6, "listen", "'[0:0::1]:8000' is already used by app 'a' (line 3)");
    load_bad("[app:a]\ncommand = x\nlisten = unix:/tmp/a.sock\n"
             "[app:b]\ncommand = y\nlisten = unix:/tmp/a.sock\n",
             6, "listen", "already used by app 'a' (line 3)");
    /* The admin endpoint, set before the app, after it, or left at its default. */
    load_bad("[supervisor]\nadmin_listen = 127.0.0.1:9000\n"
             "[app:a]\ncommand = x\nlisten = 127.0.0.1:9000\n",
             5, "listen", "'127.0.0.1:9000' is already admin_listen (line 2)");
    load_bad("[app:a]\ncommand = x\nlisten = 127.0.0.1:9000\n"
             "[supervisor]\nadmin_listen = 127.0.0.1:9000\n",
             5, "admin_listen", "'127.0.0.1:9000' is already a listen address of app 'a' (line 3)");
    load_bad("[app:a]\ncommand = x\nlisten = 127.0.0.1:9100\n", 3, "listen",
             "'127.0.0.1:9100' is also the admin endpoint (admin_listen)");
    load_bad("[supervisor]\ncontrol_socket = /tmp/d.sock\n"
             "[app:a]\ncommand = x\nlisten = unix:/tmp/d.sock\n",
             5, "listen", "'unix:/tmp/d.sock' is also the control socket");

    /* With admin off, or moved, the same addresses are free. */
    struct config *cfg = load_ok("[app:a]\ncommand = x\nlisten = 127.0.0.1:9100\n"
                                 "[supervisor]\nadmin_listen = off\n");
    assert_null(cfg->admin_listen);
    config_free(cfg);
    cfg = load_ok("[supervisor]\nadmin_listen = 127.0.0.1:9101\n"
                  "[app:a]\ncommand = x\nlisten = 127.0.0.1:9100\nlisten = 0.0.0.0:9101\n");
    assert_string_equal(cfg->admin_listen, "127.0.0.1:9101");
    config_free(cfg);
}

/* An app with n listen lines on ports 20000, 20001, ...; the first listen is on line 3. */
static char *listen_lines(int n)
{
    size_t size = 64 + (size_t)n * 32;
    char *text = malloc(size);
    assert_non_null(text);
    size_t off = (size_t)snprintf(text, size, "[app:a]\ncommand = x\n");
    for (int i = 0; i < n; i++) {
        off += (size_t)snprintf(text + off, size - off, "listen = 127.0.0.1:%d\n", 20000 + i);
    }
    assert_true(off < size);
    return text;
}

/*
 * A worker gets fds 0-2, the listen sockets, then its channel, and spawn's plan holds 64 fds:
 * the line that asks for one more is refused, where `drover -t` can show it, instead of
 * overflowing the plan at the first start.
 */
static void test_listen_limit(void **state)
{
    char *text = listen_lines(CONFIG_LISTEN_MAX);
    struct config *cfg = load_ok(text);
    assert_int_equal(cfg->apps[0].n_listen, CONFIG_LISTEN_MAX);
    assert_string_equal(cfg->apps[0].listen[CONFIG_LISTEN_MAX - 1].text, "127.0.0.1:20059");
    config_free(cfg);
    free(text);

    text = listen_lines(CONFIG_LISTEN_MAX + 1);
    load_bad(text, 3 + CONFIG_LISTEN_MAX, "listen",
             "'127.0.0.1:20060' is one address too many; an app may listen on at most 60 "
             "(its workers get them as fds 3 to 62)");
    free(text);

    /* 65 lines: the first one past the limit is the one named. */
    text = listen_lines(65);
    load_bad(text, 3 + CONFIG_LISTEN_MAX, "listen", "at most 60");
    free(text);

    /* The limit is per app. */
    text = listen_lines(CONFIG_LISTEN_MAX);
    size_t len = strlen(text);
    char *two = malloc(len + 64);
    assert_non_null(two);
    snprintf(two, len + 64, "%s[app:b]\ncommand = y\nlisten = 127.0.0.1:21000\n", text);
    cfg = load_ok(two);
    assert_int_equal(cfg->apps[1].n_listen, 1);
    config_free(cfg);
    free(two);
    free(text);
}

static void test_hooks(void **state)
{
    (void)state;
    struct config *cfg = load_ok("[app:a]\ncommand = x\n"
                                 "[hook:pager]\nevents = crash_loop, worker_hung reload\n"
                                 "exec = /usr/local/bin/page-me --team web\ntimeout = 2s\n"
                                 "[hook:hook.all]\nevents = *\nurl = http://127.0.0.1:9/a\n");
    assert_int_equal(cfg->n_hooks, 2);
    const struct config_hook *k = &cfg->hooks[0];
    assert_string_equal(k->name, "pager");
    assert_int_equal(k->events, (1u << EVENT_CRASH_LOOP) | (1u << EVENT_WORKER_HUNG) |
                                    (1u << EVENT_RELOAD));
    assert_string_equal(k->argv[0], "/usr/local/bin/page-me");
    assert_string_equal(k->argv[2], "web");
    assert_null(k->url);
    assert_int_equal(k->timeout_ms, 2000);
    assert_int_equal(k->retries, 3);
    assert_int_equal(k->line, 3);
    assert_int_equal(cfg->hooks[1].events, EVENT_MASK_ALL);
    assert_string_equal(cfg->hooks[1].url, "http://127.0.0.1:9/a");
    assert_null(cfg->hooks[1].exec);
    assert_int_equal(cfg->hooks[1].timeout_ms, 10000);
    config_free(cfg);

    load_bad("[app:a]\ncommand = x\n[hook:p]\nevents = crash_lop\nexec = y\n", 4, "events",
             "'crash_lop' is not an event type");
    load_bad("[app:a]\ncommand = x\n[hook:p]\nexec = y\n", 3, "events", "has no events");
    load_bad("[app:a]\ncommand = x\n[hook:p]\nevents = *\n", 3, "exec",
             "needs exactly one of exec = COMMAND and url = URL");
    load_bad("[app:a]\ncommand = x\n[hook:p]\nevents = *\nexec = y\nurl = http://h/\n", 6,
             "url", "needs exactly one of exec");
    load_bad("[app:a]\ncommand = x\n[hook:p]\nevents = *\nurl = ftp://h/\n", 5, "url",
             "is not an http:// or https:// URL");
    load_bad("[app:a]\ncommand = x\n[hook:p]\nevents = *\nexec = y\nretrys = 2\n", 6, "retrys",
             "unknown key in [hook:p]; did you mean retries?");
    load_bad("[app:a]\ncommand = x\n[hook:p]\nevents = *\nexec = y\n[hook:p]\n", 6, "",
             "hook 'p' is already defined at line 3");
    load_bad("[app:a]\ncommand = x\n[hook:]\n", 3, "", "hook name is empty");
}

static void test_bad_values(void **state)
{
    static const struct {
        const char *line;
        const char *key;
        const char *message;
    } cases[] = {
        {"workers = 0", "workers", "'0' is out of range; expected 1 to 1024 or auto"},
        {"workers = 1025", "workers", "'1025' is out of range; expected 1 to 1024 or auto"},
        {"workers = four", "workers", "'four' is not a whole number; expected 1 to 1024 or auto"},
        {"workers = Auto", "workers", "not a whole number"},
        {"ready = yes", "ready", "'yes' is not a ready mode; expected notify, delay, none or auto"},
        {"restart = sometimes", "restart",
         "'sometimes' is not a restart policy; expected always, on-failure or never"},
        {"reload_batch = 0", "reload_batch", "'0' is out of range; expected 1 to 1024"},
        {"max_memory = 1PB", "max_memory", "'1PB' has an unknown unit"},
        {"max_memory = -1", "max_memory", "'-1' is negative"},
        {"metrics_per_worker = maybe", "metrics_per_worker",
         "'maybe' is not a boolean; expected yes/no, true/false or on/off"},
        {"ready_timeout = 0", "ready_timeout", "'0' must be more than zero"},
        {"memory_check_interval = 0ms", "memory_check_interval", "'0ms' must be more than zero"},
        {"min_uptime = 5", "min_uptime", "'5' has no unit; expected e.g. 250ms, 30s, 5m"},
        {"kill_timeout = 1d", "kill_timeout", "'1d' has an unknown unit; expected ms, s, m or h"},
        {"stop_signal = KILL", "stop_signal",
         "'KILL' is not a stop signal; expected TERM, INT, QUIT, HUP, USR1, USR2 or WINCH"},
        {"stop_signal = 15", "stop_signal", "'15' is not a stop signal"},
        {"stop_signal = int", "stop_signal", "'int' is not a stop signal"},
        {"stop_signal =", "stop_signal", "'' is not a stop signal"},
        {"listen = ::1:80", "listen", "'::1:80' needs brackets around an IPv6 address"},
        {"listen = 127.0.0.1:70000", "listen", "'127.0.0.1:70000' has a port out of range"},
        {"listen = unix:", "listen", "'unix:' has an empty path"},
        {"listen =", "listen", "'' is empty"},
        {"env = NOEQUALS", "env", "'NOEQUALS' has no '='; expected KEY=VALUE"},
        {"env = 1X=y", "env", "'1X=y' has an invalid name"},
        {"env = A=1\nenv = A=2", "env", "'A=2': A is already set at line 3"},
        {"command = sh -c 'a ; b'", "command", "unterminated ' quote"},
        {"command = \"\"\"", "command", "unterminated \" quote"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[512];
        bool has_command = strncmp(cases[i].line, "command", 7) == 0;
        snprintf(text, sizeof text, "[app:web]\n%s%s\n", has_command ? "" : "command = ./x\n",
                 cases[i].line);
        unsigned line = has_command ? 2 : 3;
        if (strchr(cases[i].line, '\n')) {
            line++;
        }
        load_bad(text, line, cases[i].key, cases[i].message);
    }

    load_bad("[supervisor]\nlog_format = yaml\n", 2, "log_format",
             "'yaml' is not a log format; expected json or text");
    load_bad("[supervisor]\nadmin_listen = localhost:9100\n", 2, "admin_listen",
             "'localhost:9100' is not a numeric IPv4 address");
    load_bad("[supervisor]\nadmin_listen =\n", 2, "admin_listen", "'' is empty");
    load_bad("[supervisor]\nstate_dir =\n", 2, "state_dir", "is empty; expected a path");
    load_bad("[supervisor]\nlog_file =\n", 2, "log_file", "is empty; expected a path");
    load_bad("[supervisor]\ncontrol_socket =\n", 2, "control_socket", "is empty");
    load_bad("[supervisor]\ncontrol_socket = /tmp/"
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
             "aaaaaaaaaaaaaaaaaaaa.sock\n",
             2, "control_socket", "is too long for a Unix socket path");
    load_bad("[supervisor]\nshutdown_timeout = 45\n", 2, "shutdown_timeout", "has no unit");
    load_bad("[supervisor]\ndrain_timeout = 30 s\n", 2, "drain_timeout", "unknown unit");
}

static void test_restart_delay_order(void **state)
{
    load_bad("[app:a]\ncommand = x\nrestart_delay = 5s\nrestart_delay_max = 1s\n", 4,
             "restart_delay_max",
             "1s is less than restart_delay (5s); expected at least restart_delay");
    /* Only restart_delay given, over the default maximum of 30s: the error is on its line. */
    load_bad("[app:a]\ncommand = x\nrestart_delay = 1m\n", 3, "restart_delay",
             "1m is more than restart_delay_max (30s); expected at most restart_delay_max");
    load_bad("[app:a]\ncommand = x\nrestart_delay_max = 50ms\n", 3, "restart_delay_max",
             "50ms is less than restart_delay (100ms)");

    struct config *cfg = load_ok("[app:a]\ncommand = x\nrestart_delay = 2s\n"
                                 "restart_delay_max = 2s\nkill_timeout = 0\nready_delay = 0\n");
    assert_int_equal(cfg->apps[0].restart_delay_ms, 2000);
    assert_int_equal(cfg->apps[0].restart_delay_max_ms, 2000);
    assert_int_equal(cfg->apps[0].kill_timeout_ms, 0);
    assert_int_equal(cfg->apps[0].ready_delay_ms, 0);
    config_free(cfg);
}

/* stop_signal: every accepted name, with and without SIG. */
static void test_stop_signal(void **state)
{
    (void)state;
    static const struct {
        const char *value;
        int sig;
    } cases[] = {{"TERM", SIGTERM},   {"INT", SIGINT},    {"SIGINT", SIGINT},
                 {"QUIT", SIGQUIT},   {"SIGQUIT", SIGQUIT}, {"HUP", SIGHUP},
                 {"USR1", SIGUSR1},   {"USR2", SIGUSR2},  {"WINCH", SIGWINCH},
                 {"SIGWINCH", SIGWINCH}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "[app:a]\ncommand = x\nstop_signal = %s\n", cases[i].value);
        struct config *cfg = load_ok(text);
        assert_int_equal(cfg->apps[0].stop_signal, cases[i].sig);
        config_free(cfg);
    }
}

static void test_optional_values(void **state)
{
    struct config *cfg = load_ok("[supervisor]\npid_file =\n"
                                 "[app:a]\ncommand = x\nuser =\ngroup =\ncwd =\n");
    assert_null(cfg->pid_file);
    assert_null(cfg->apps[0].user);
    assert_null(cfg->apps[0].group);
    assert_null(cfg->apps[0].cwd);
    config_free(cfg);
}

/* ---- workers = auto ---- */

static unsigned online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 1024 ? 1024 : (unsigned)n;
}

static void test_auto_workers(void **state)
{
    char path[PATH_MAX];

    snprintf(path, sizeof path, "%s", data_path("cpu.max.quota")); /* 150000 100000 */
    assert_int_equal(config_auto_workers(path), 2);
    snprintf(path, sizeof path, "%s", data_path("cpu.max.half")); /* 50000 100000 */
    assert_int_equal(config_auto_workers(path), 1);
    snprintf(path, sizeof path, "%s", data_path("cpu.max.none")); /* max 100000 */
    assert_int_equal(config_auto_workers(path), online_cpus());
    assert_int_equal(config_auto_workers("/nonexistent/cpu.max"), online_cpus());
    assert_int_equal(config_auto_workers(NULL), online_cpus());
}

static void test_auto_workers_in_config(void **state)
{
    char text[PATH_MAX + 256];
    char tmp[] = "/tmp/drover-test-cpu.max-XXXXXX";

    /* A fake cgroup of our own: 2.5 CPUs of quota make 3 workers. */
    int fd = mkstemp(tmp);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "250000 100000\n", 14), 14);
    close(fd);

    /* cgroup_cpu_max may follow the app that reads it. */
    snprintf(text, sizeof text,
             "[app:a]\ncommand = x\nworkers = auto\n[app:b]\ncommand = y\n"
             "[supervisor]\ncgroup_cpu_max = %s\n",
             tmp);
    struct config *cfg = load_ok(text);
    assert_int_equal(cfg->apps[0].workers, 3);
    assert_true(cfg->apps[0].workers_auto);
    assert_int_equal(cfg->apps[1].workers, 1);
    assert_false(cfg->apps[1].workers_auto);
    config_free(cfg);
    unlink(tmp);

    snprintf(text, sizeof text,
             "[app:a]\ncommand = x\nworkers = auto\n"
             "[supervisor]\ncgroup_cpu_max = %s\n",
             data_path("cpu.max.quota"));
    cfg = load_ok(text);
    assert_int_equal(cfg->apps[0].workers, 2);
    config_free(cfg);

    snprintf(text, sizeof text,
             "[app:a]\ncommand = x\nworkers = auto\n"
             "[supervisor]\ncgroup_cpu_max = %s\n",
             data_path("cpu.max.none"));
    cfg = load_ok(text);
    assert_int_equal(cfg->apps[0].workers, online_cpus());
    config_free(cfg);

    cfg = load_ok("[app:a]\ncommand = x\nworkers = 1024\n");
    assert_int_equal(cfg->apps[0].workers, 1024);
    config_free(cfg);
}

/* ---- sections and lexing ---- */

static void test_sections(void **state)
{
    load_bad("command = x\n[app:a]\ncommand = x\n", 1, "command",
             "key outside any section; expected it under [supervisor] or [app:NAME]");
    load_bad("[supervisor]\n[app:a]\ncommand = x\n[supervisor]\n", 4, "",
             "section [supervisor] is already given at line 1");
    load_bad("[app:a]\ncommand = x\n[supervisor\n", 3, "", "section header has no closing ']'");
    load_bad("[app:a] extra\ncommand = x\n", 1, "",
             "unexpected text after the section header; expected [NAME]");
    load_bad("[Supervisor]\n", 1, "", "unknown section [Supervisor]");
    load_bad("[app]\ncommand = x\n", 1, "", "unknown section [app]");
    load_bad("[]\n", 1, "", "unknown section []");
    load_bad("[app:]\ncommand = x\n", 1, "", "app name is empty; expected [app:NAME]");
    load_bad("[app:a:b]\ncommand = x\n", 1, "", "app name 'a:b' has ':'");
    load_bad("[app:a b]\ncommand = x\n", 1, "", "app name 'a b' has ' '");
    load_bad("[app:"
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\ncommand = x\n",
             1, "", "is too long; at most 64 characters");
    /* An empty app section is still an app, and still needs its command. */
    load_bad("[app:a]\ncommand = x\n\n[app:b]\n; nothing here\n", 4, "command",
             "app 'b' has no command");
    /* A section that does nothing is still checked. */
    load_bad("[app:a]\ncommand = x\n[metrics]\n", 3, "", "unknown section [metrics]");

    struct config *cfg = load_ok("[ app:a ]  ; blanks inside the brackets are not the name\n"
                                 "command = x\n"
                                 "[app:"
                                 "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb]"
                                 " # 64 characters\n"
                                 "command = y\n"
                                 "[supervisor]\n");
    assert_string_equal(cfg->apps[0].name, "a");
    assert_int_equal(strlen(cfg->apps[1].name), 64);
    assert_int_equal(cfg->apps[1].line, 3);
    config_free(cfg);
}

static void test_lexing(void **state)
{
    /* Indented lines are keys, not continuations of the previous value. */
    struct config *cfg = load_ok("\xEF\xBB\xBF[app:web]\r\n"
                                 "    command = ./server --port 1\r\n"
                                 "\tworkers=3\r\n"
                                 "  ; an indented comment\r\n"
                                 "# a hash comment\r\n"
                                 "\r\n"
                                 "restart: never\r\n"
                                 "min_uptime   =   2s   ; inline comment\r\n"
                                 "env = A=x;y\r\n"
                                 "cwd = /srv/x # not a comment");
    const struct config_app *a = &cfg->apps[0];
    assert_string_equal(a->command, "./server --port 1");
    assert_int_equal(a->workers, 3);
    assert_int_equal(a->restart, RESTART_NEVER);
    assert_int_equal(a->min_uptime_ms, 2000);
    assert_string_equal(a->env[0], "A=x;y");
    assert_string_equal(a->cwd, "/srv/x # not a comment");
    config_free(cfg);

    load_bad("[app:a]\ncommand = x\n  = 5\n", 3, "", "a value without a key");
    load_bad("[app:a]\ncommand = x\nworkers = 2\n    bogus = 1\n", 4, "bogus",
             "unknown key in [app:a]");
    load_bad("[supervisor]\nlogformat = json\n", 2, "logformat",
             "unknown key in [supervisor]; did you mean log_format?");
    load_bad("[supervisor]\nfrobnicate = 1\n", 2, "frobnicate", "unknown key in [supervisor]");
}

/* A malloc'd string of n bytes: pattern repeated, cut at n. */
static char *repeat(const char *pattern, size_t n)
{
    size_t plen = strlen(pattern);
    char *s = malloc(n + 1);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++) {
        s[i] = pattern[i % plen];
    }
    s[n] = '\0';
    return s;
}

/* printf into a malloc'd string. */
static char *format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *format(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;

    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    return s;
}

/* Writes text to a new temporary file, whose path is stored in path (PATH_MAX bytes). */
static void write_temp(char *path, const char *text)
{
    snprintf(path, PATH_MAX, "/tmp/drover-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    for (size_t off = 0; off < len;) {
        ssize_t n = write(fd, text + off, len - off);
        assert_true(n > 0);
        off += (size_t)n;
    }
    close(fd);
}

/* Loads text both from memory and from a file: the two read lines differently. */
static struct config *load_both_ok(const char *text)
{
    char path[PATH_MAX];
    struct config *cfg = NULL;
    struct config_error err;

    write_temp(path, text);
    int r = config_load(path, &cfg, &err);
    if (r != 0) {
        show_error(&err);
    }
    unlink(path);
    assert_int_equal(r, 0);
    config_free(cfg);
    return load_ok(text);
}

static void load_both_bad(const char *text, unsigned line, const char *key, const char *message)
{
    char path[PATH_MAX];
    struct config *cfg = NULL;
    struct config_error err;

    load_bad(text, line, key, message);
    write_temp(path, text);
    assert_int_equal(config_load(path, &cfg, &err), -EINVAL);
    check_error(&err, path, line, key, message);
    unlink(path);
}

/*
 * SPEC section 3: a value may be as long as a person writes it, whatever inih's line buffer
 * (200 bytes in Debian's build). The 241-character command of issue 13 first.
 */
static void test_long_lines(void **state)
{
    static const char python[] =
        "/usr/bin/python3 -c \"import http.server as h, os; s = h.HTTPServer(('127.0.0.1', "
        "int(os.environ.get('PORT', '8000'))), h.SimpleHTTPRequestHandler); "
        "print('drover worker serving on', s.server_address, flush=True); s.serve_forever()\"";
    char *line = format("command = %s", python);
    assert_int_equal(strlen(line), 241);
    char *text = format("[app:py]\n%s\nworkers = 2\n", line);
    struct config *cfg = load_both_ok(text);
    const struct config_app *a = &cfg->apps[0];
    assert_string_equal(a->command, python);
    assert_string_equal(a->argv[0], "/usr/bin/python3");
    assert_string_equal(a->argv[1], "-c");
    const char *script = strchr(python, '"') + 1;
    assert_int_equal(strlen(a->argv[2]), strlen(script) - 1);
    assert_true(strncmp(a->argv[2], script, strlen(script) - 1) == 0);
    assert_null(a->argv[3]);
    assert_int_equal(a->workers, 2);
    config_free(cfg);
    free(text);
    free(line);

    /* 64 KiB, every character a person might type in a command, comes back exactly. */
    static const char words[] = "--opt=a:b,c=d \"x y\" 'z;w' #h [i] \\; ";
    size_t whole = (64 * 1024 - 2) / strlen(words) * strlen(words);
    char *big = repeat("a", 64 * 1024);
    big[0] = '.';
    big[1] = '/';
    char *body = repeat(words, whole);
    memcpy(big + 2, body, whole);
    free(body);
    text = format("[app:a]\ncommand = %s\n", big);
    cfg = load_both_ok(text);
    assert_int_equal(strlen(cfg->apps[0].command), strlen(big));
    assert_string_equal(cfg->apps[0].command, big);
    config_free(cfg);
    free(text);

    /* An error after a long line names its own line; one inside a long line names that line
     * and its key, and quotes no more of the value than a message holds. */
    text = format("[app:a]\ncommand = %s\n\nbogus = 1\n", big);
    load_both_bad(text, 4, "bogus", "unknown key in [app:a]");
    free(text);
    char *digits = repeat("1234567890", 100 * 1000);
    text = format("[app:a]\ncommand = x\n; comment\nworkers = %s\n", digits);
    load_both_bad(text, 4, "workers", "'1234567890");
    free(text);
    text = format("[app:a]\ncommand = x\n%s = 1\n", big + 2);
    load_both_bad(text, 3, "--opt", "unknown key in [app:a]");
    free(text);
    free(digits);
    free(big);
}

/* inih reads a long line as it reads a short one: comments, ':' and '=', blanks, sections. */
static void test_long_lines_lex_alike(void **state)
{
    char *pad = repeat("abcdefghij", 5000);
    char *text = format("[app:web]   ; %s\n"
                        "command = ./server --pad %s ; the comment is not the command %s\n"
                        "restart: never ; %s\n"
                        "   env   =   A=%s;x   \r\n"
                        "env = B=%s # not a comment\n"
                        "; %s = not a key\n"
                        "# %s\n"
                        "cwd = /srv/%s:%s=%s\n",
                        pad, pad, pad, pad, pad, pad, pad, pad, pad, pad, pad);
    struct config *cfg = load_both_ok(text);
    const struct config_app *a = &cfg->apps[0];
    char *want = format("./server --pad %s", pad);
    assert_string_equal(a->command, want);
    free(want);
    assert_int_equal(a->restart, RESTART_NEVER);
    assert_int_equal(a->n_env, 2);
    want = format("A=%s;x", pad);
    assert_string_equal(a->env[0], want);
    free(want);
    want = format("B=%s # not a comment", pad);
    assert_string_equal(a->env[1], want);
    free(want);
    want = format("/srv/%s:%s=%s", pad, pad, pad);
    assert_string_equal(a->cwd, want);
    free(want);
    config_free(cfg);
    free(text);

    /* The tokens standing for long stretches are bytes a file may hold too. */
    /* \x01 then 0 spells a token; the 0 goes in through %c, or it would join the hex escape. */
    char *marked = format("./x \x01%s\x01%c \x01", pad, '0');
    text = format("[app:a]\ncommand = %s\n", marked);
    cfg = load_both_ok(text);
    assert_string_equal(cfg->apps[0].command, marked);
    config_free(cfg);
    free(text);
    free(marked);

    /* What fails short fails long, on the same line. */
    text = format("[app:a]\ncommand = x\nno equals sign %s\nworkers = 2\n", pad);
    load_both_bad(text, 3, "", "syntax error");
    free(text);
    text = format("[app:a]\ncommand = x\nworkers ; %s = 2\n", pad);
    load_both_bad(text, 3, "", "syntax error");
    free(text);
    text = format("[app:a]\ncommand = x\n[app:b] %s\n", pad);
    load_both_bad(text, 3, "", "unexpected text after the section header");
    free(text);
    text = format("[app:a]\ncommand = x\n = %s\n", pad);
    load_both_bad(text, 3, "", "a value without a key");
    free(text);

    /*
     * A line indented with other blanks than spaces and tabs (which the reader strips) is, to
     * inih, more of the previous key's value: long or short, the same. (inih 55 reads all of
     * it, later versions cut it at an inline comment; test_config_inih covers both readings.)
     */
    cfg = load_both_ok("[app:a]\ncommand = x\nenv = A=1\n\fB=2 ; all of it?\n");
    assert_int_equal(cfg->apps[0].n_env, 2);
    const char *tail = cfg->apps[0].env[1] + strlen("B=2");
    assert_true(strncmp(cfg->apps[0].env[1], "B=2", 3) == 0);
    want = format("B=%s%s", pad, tail);
    config_free(cfg);
    text = format("[app:a]\ncommand = x\nenv = A=1\n\fB=%s ; all of it?\n", pad);
    cfg = load_both_ok(text);
    assert_int_equal(cfg->apps[0].n_env, 2);
    assert_string_equal(cfg->apps[0].env[1], want);
    free(want);
    config_free(cfg);
    free(text);
    /* Right after a section header there is no value to continue: a key, long or short. */
    cfg = load_both_ok("[app:a]\n\fcommand = ./x ; comment\n");
    assert_string_equal(cfg->apps[0].command, "./x");
    config_free(cfg);
    text = format("[app:a]\n\fcommand = ./%s ; comment\n", pad);
    cfg = load_both_ok(text);
    assert_int_equal(strlen(cfg->apps[0].command), 2 + strlen(pad));
    config_free(cfg);
    free(text);
    free(pad);
}

static void test_line_limits(void **state)
{
    /* A line may hold CONFIG_LINE_MAX characters, the newline not counted... */
    size_t fill = CONFIG_LINE_MAX - strlen("command = ./");
    char *pad = repeat("a", fill);
    char *text = format("[app:a]\ncommand = ./%s\nworkers = 2\n", pad);
    struct config *cfg = load_both_ok(text);
    assert_int_equal(strlen(cfg->apps[0].command), CONFIG_LINE_MAX - strlen("command = "));
    assert_int_equal(cfg->apps[0].workers, 2);
    config_free(cfg);
    free(text);

    /* ...and a CR before it; leading blanks and a byte order mark count. */
    text = format("[app:a]\ncommand = ./%s\r\n", pad);
    load_both_bad(text, 2, "", "line is too long; a line may hold at most 1048576 characters");
    free(text);
    text = format("[app:a]\n command = ./%s\n", pad);
    load_both_bad(text, 2, "", "line is too long");
    free(text);
    free(pad);

    /* One more is refused, naming the line, with or without a final newline. */
    pad = repeat("a", fill + 1);
    text = format("[app:a]\ncommand = ./%s\nworkers = 2\n", pad);
    load_both_bad(text, 2, "", "line is too long; a line may hold at most 1048576 characters");
    free(text);
    text = format("[app:a]\ncommand = ./%s", pad);
    load_both_bad(text, 2, "", "line is too long");
    free(text);
    free(pad);

    /* Far longer, with no newline at all: refused all the same, without reading it whole. */
    pad = repeat("x", 3 * CONFIG_LINE_MAX);
    load_both_bad(pad, 1, "", "line is too long");
    free(pad);
}

static void test_long_line_file(void **state)
{
    struct config *cfg = load_file_ok("long_line.ini");
    assert_int_equal(strlen(cfg->apps[0].command), 338);
    assert_string_equal(cfg->apps[0].argv[30], "--flag-029");
    assert_null(cfg->apps[0].argv[31]);
    assert_int_equal(cfg->apps[0].workers, 2);
    config_free(cfg);
}

static void test_first_error_wins(void **state)
{
    /* inih's syntax error comes first in the file: it is the one reported. */
    load_bad("[app:a]\ncommand = x\nno equals here\nbogus = 1\n", 3, "", "syntax error");
    /* Our error comes first: inih never sees the later lines. */
    load_bad("[app:a]\nbogus = 1\nno equals here\n", 2, "bogus", "unknown key");
    load_bad("[app:a]\nworkers = 0\n[app:a]\n", 2, "workers", "out of range");
}

static void test_nul_byte(void **state)
{
    static const char text[] = "[app:a]\ncommand = x\0y\nworkers = 2\n";
    struct config *cfg = NULL;
    struct config_error err;

    assert_int_equal(config_load_string("mem", text, sizeof text - 1, &cfg, &err), -EINVAL);
    check_error(&err, "mem", 2, "", "line holds a NUL byte");

    /* The length bounds the input; the text needs no terminator. */
    static const char cut[] = "[app:a]\ncommand = x\nworkers = 20";
    assert_int_equal(config_load_string("mem", cut, sizeof cut - 2, &cfg, &err), 0);
    assert_int_equal(cfg->apps[0].workers, 2);
    config_free(cfg);

    assert_int_equal(config_load_string("empty", "", 0, &cfg, &err), -EINVAL);
    check_error(&err, "empty", 0, "", "no app");
}

/* ---- formatting and small functions ---- */

static void test_error_format(void **state)
{
    struct config_error err = {
        .file = "drover.ini", .line = 12, .key = "workers", .message = "'0' is out of range"};
    char buf[256];

    config_error_format(&err, buf, sizeof buf);
    assert_string_equal(buf, "drover.ini:12: workers: '0' is out of range");
    err.line = 0;
    config_error_format(&err, buf, sizeof buf);
    assert_string_equal(buf, "drover.ini: workers: '0' is out of range");
    err.key[0] = '\0';
    config_error_format(&err, buf, sizeof buf);
    assert_string_equal(buf, "drover.ini: '0' is out of range");
    err.line = 3;
    config_error_format(&err, buf, sizeof buf);
    assert_string_equal(buf, "drover.ini:3: '0' is out of range");

    char small[8];
    config_error_format(&err, small, sizeof small);
    assert_string_equal(small, "drover.");
}

static void test_default_control_socket(void **state)
{
    const char *saved = getenv("XDG_RUNTIME_DIR");
    char *keep = saved ? strdup(saved) : NULL;
    char *s;

    setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
    s = config_default_control_socket();
    assert_string_equal(s, "/run/user/1000/drover.sock");
    free(s);

    /* The default lands in a config that does not set it. */
    struct config *cfg = load_ok("[app:a]\ncommand = x\n");
    assert_string_equal(cfg->control_socket, "/run/user/1000/drover.sock");
    config_free(cfg);

    setenv("XDG_RUNTIME_DIR", "", 1);
    s = config_default_control_socket();
    assert_string_equal(s, "./drover.sock");
    free(s);

    setenv("XDG_RUNTIME_DIR", "relative/dir", 1);
    s = config_default_control_socket();
    assert_string_equal(s, "./drover.sock");
    free(s);

    unsetenv("XDG_RUNTIME_DIR");
    s = config_default_control_socket();
    assert_string_equal(s, "./drover.sock");
    free(s);

    if (keep) {
        setenv("XDG_RUNTIME_DIR", keep, 1);
        free(keep);
    }
}

static void test_enum_strings(void **state)
{
    assert_string_equal(ready_mode_to_string(READY_NOTIFY), "notify");
    assert_string_equal(ready_mode_to_string(READY_DELAY), "delay");
    assert_string_equal(ready_mode_to_string(READY_NONE), "none");
    assert_string_equal(restart_policy_to_string(RESTART_ALWAYS), "always");
    assert_string_equal(restart_policy_to_string(RESTART_ON_FAILURE), "on-failure");
    assert_string_equal(restart_policy_to_string(RESTART_NEVER), "never");
}

/* ---- quick start ---- */

static void test_quick(void **state)
{
    char *const argv[] = {"/usr/local/bin/my app!", "--say", "it's", "a b", "", NULL};
    struct config *cfg = NULL;
    struct config_error err;
    char *sock = config_default_control_socket();

    int r = quickstart_config(4, "127.0.0.1:8080", NULL, NULL, NULL, argv, &cfg, &err);
    if (r != 0) {
        show_error(&err);
    }
    assert_int_equal(r, 0);
    assert_null(cfg->path);
    assert_string_equal(cfg->control_socket, sock);
    assert_string_equal(cfg->admin_listen, "127.0.0.1:9100");
    assert_int_equal(cfg->shutdown_timeout_ms, 45000);
    assert_int_equal(cfg->n_apps, 1);
    const struct config_app *a = &cfg->apps[0];
    assert_string_equal(a->name, "my_app_");
    assert_int_equal(a->line, 0);
    assert_int_equal(a->workers, 4);
    assert_int_equal(a->n_listen, 1);
    assert_string_equal(a->listen[0].text, "127.0.0.1:8080");
    assert_int_equal(a->restart_delay_ms, 100);
    /* auto: an app that never speaks serves too (issue 13, item 9) */
    assert_int_equal(a->ready, READY_AUTO);
    for (int i = 0; argv[i]; i++) {
        assert_string_equal(a->argv[i], argv[i]);
        assert_ptr_not_equal(a->argv[i], argv[i]); /* copied */
    }
    assert_null(a->argv[5]);

    /* The display command quotes what needs it, so it splits back into the same argv. */
    assert_string_equal(a->command, "'/usr/local/bin/my app!' --say 'it'\\''s' 'a b' ''");
    char **back = NULL;
    assert_int_equal(parse_argv(a->command, &back, NULL), 0);
    for (int i = 0; argv[i]; i++) {
        assert_string_equal(back[i], argv[i]);
    }
    assert_null(back[5]);
    parse_argv_free(back);
    config_free(cfg);
    free(sock);

    /* No listen address, admin off, an explicit socket, workers = auto. */
    char *const plain[] = {"./worker", NULL};
    assert_int_equal(quickstart_config(0, NULL, "off", "/tmp/q.sock", NULL, plain, &cfg, &err), 0);
    assert_string_equal(cfg->apps[0].name, "worker");
    assert_string_equal(cfg->apps[0].command, "./worker");
    assert_int_equal(cfg->apps[0].n_listen, 0);
    assert_true(cfg->apps[0].workers_auto);
    assert_int_equal(cfg->apps[0].workers, config_auto_workers(cfg->cgroup_cpu_max));
    assert_null(cfg->admin_listen);
    assert_string_equal(cfg->control_socket, "/tmp/q.sock");
    config_free(cfg);

    char *const odd[] = {"bin/", NULL};
    assert_int_equal(
        quickstart_config(1, "unix:/tmp/x.sock", "[::1]:9300", NULL, NULL, odd, &cfg, &err), 0);
    assert_string_equal(cfg->apps[0].name, "bin");
    assert_string_equal(cfg->admin.text, "[::1]:9300");
    config_free(cfg);

    char *const root[] = {"/", NULL};
    assert_int_equal(quickstart_config(1, NULL, NULL, NULL, "notify", root, &cfg, &err), 0);
    assert_string_equal(cfg->apps[0].name, "app");
    assert_int_equal(cfg->apps[0].ready, READY_NOTIFY);
    config_free(cfg);
}

static void quick_bad(unsigned workers, const char *listen, const char *admin, const char *socket,
                      char *const *argv, const char *key, const char *message_part)
{
    struct config *cfg = (struct config *)(uintptr_t)1;
    struct config_error err;

    assert_int_equal(quickstart_config(workers, listen, admin, socket, NULL, argv, &cfg, &err),
                     -EINVAL);
    assert_true(cfg == (struct config *)(uintptr_t)1);
    check_error(&err, "(command line)", 0, key, message_part);
}

static void test_quick_errors(void **state)
{
    char *const argv[] = {"./server", NULL};
    char *const none[] = {NULL};
    struct config_error err;
    char buf[512];

    quick_bad(4, "localhost:80", NULL, NULL, argv, "listen", "'localhost:80' is not a numeric");
    quick_bad(2000, NULL, NULL, NULL, argv, "workers",
              "'2000' is out of range; expected 1 to 1024 or auto");
    quick_bad(1, NULL, "nowhere", NULL, argv, "admin_listen", "'nowhere' has no port");
    quick_bad(1, NULL, NULL, "", argv, "control_socket", "is empty");
    quick_bad(1, "127.0.0.1:9100", NULL, NULL, argv, "listen", "is also the admin endpoint");
    quick_bad(1, "127.0.0.1:9000", "127.0.0.1:9000", NULL, argv, "listen",
              "is also the admin endpoint");
    quick_bad(1, NULL, NULL, NULL, none, "command", "no command given");
    quick_bad(1, NULL, NULL, NULL, NULL, "command", "no command given");

    struct config *cfg = NULL;
    assert_int_equal(quickstart_config(1, NULL, NULL, NULL, "soon", argv, &cfg, &err), -EINVAL);
    check_error(&err, "(command line)", 0, "ready", "'soon' is not a ready mode");
    assert_int_equal(quickstart_config(1, "127.0.0.1:99999", NULL, NULL, NULL, argv, &cfg, &err),
                     -EINVAL);
    config_error_format(&err, buf, sizeof buf);
    assert_string_equal(buf, "(command line): listen: '127.0.0.1:99999' has a port out of range; "
                             "expected 0 to 65535");
}

/* ---- depends_on ---- */

static void test_depends_on(void **state)
{
    struct config *cfg = load_ok("[app:web]\ncommand = ./web\ndepends_on = db, cache\n"
                                 "[app:db]\ncommand = ./db\n[app:cache]\ncommand = ./c\n"
                                 "depends_on = db\n");
    const struct config_app *web = config_app_find(cfg, "web");
    assert_int_equal(web->n_depends_on, 2);
    assert_string_equal(web->depends_on[0], "db");
    assert_string_equal(web->depends_on[1], "cache");
    assert_int_equal(config_app_find(cfg, "db")->n_depends_on, 0);
    config_free(cfg);
    cfg = load_ok("[app:a]\ncommand = ./a\ndepends_on =\n");
    assert_int_equal(cfg->apps[0].n_depends_on, 0);
    config_free(cfg);

    load_bad("[app:web]\ncommand = ./web\n\ndepends_on = db\n", 4, "depends_on",
             "app 'web' depends on 'db', which is not an app in this file");
    load_bad("[app:a]\ncommand = ./a\ndepends_on = b\n[app:b]\ncommand = ./b\n"
             "depends_on = c\n[app:c]\ncommand = ./c\ndepends_on = a\n", 3, "depends_on",
             "a dependency cycle: a -> b -> c -> a");
    load_bad("[app:a]\ncommand = ./a\ndepends_on = a\n", 3, "depends_on",
             "a dependency cycle: a -> a");
    load_bad("[app:a]\ncommand = ./a\ndepends_on = b, b\n[app:b]\ncommand = ./b\n", 3,
             "depends_on", "'b' is named twice");
    load_bad("[app:a]\ncommand = ./a\ndepends_on = b/c\n", 3, "depends_on",
             "'b/c' is not an app name");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_spec_example),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_error_text_of_a_file),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_repeatable),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_duplicate_listen),
        cmocka_unit_test(test_listen_limit),
        cmocka_unit_test(test_hooks),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_restart_delay_order),
        cmocka_unit_test(test_stop_signal),
        cmocka_unit_test(test_optional_values),
        cmocka_unit_test(test_auto_workers),
        cmocka_unit_test(test_auto_workers_in_config),
        cmocka_unit_test(test_sections),
        cmocka_unit_test(test_lexing),
        cmocka_unit_test(test_long_lines),
        cmocka_unit_test(test_long_lines_lex_alike),
        cmocka_unit_test(test_line_limits),
        cmocka_unit_test(test_long_line_file),
        cmocka_unit_test(test_first_error_wins),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_error_format),
        cmocka_unit_test(test_default_control_socket),
        cmocka_unit_test(test_enum_strings),
        cmocka_unit_test(test_quick),
        cmocka_unit_test(test_quick_errors),
        cmocka_unit_test(test_depends_on),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
