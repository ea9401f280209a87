/*
 * Unit tests of cfgdiff, what `reload --dry-run` shows: only keys that differ, values as a
 * person writes them, and which changes need new workers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h> /* after the four above, which it needs */

#include "cfgdiff.h"

static struct config *load(const char *text)
{
    struct config *cfg = NULL;
    struct config_error err;
    assert_int_equal(config_load_string("t.ini", text, strlen(text), &cfg, &err), 0);
    return cfg;
}

static const json_t *change(const json_t *changes, const char *key)
{
    size_t i;
    const json_t *c;
    json_array_foreach(changes, i, c) {
        if (strcmp(json_string_value(json_object_get(c, "key")), key) == 0) {
            return c;
        }
    }
    return NULL;
}

static void test_same_config_no_change(void **state)
{
    struct config *a = load("[app:web]\ncommand = ./w\nlisten = 127.0.0.1:8080\n");
    json_t *d = cfgdiff_app(&a->apps[0], &a->apps[0]);
    assert_int_equal(json_array_size(d), 0);
    assert_int_equal(cfgdiff_needs_rolling(d), 0);
    json_decref(d);
    json_t *sup = cfgdiff_supervisor(a, a);
    assert_int_equal(json_array_size(sup), 0);
    json_decref(sup);
    config_free(a);
}

static void test_changes_and_how_they_apply(void **state)
{
    struct config *a = load("[app:web]\ncommand = ./w\nworkers = 2\nkill_timeout = 30s\n"
                            "max_memory = 256M\nenv = A=1\n");
    struct config *b = load("[supervisor]\ndrain_timeout = 10s\n[app:web]\ncommand = ./w\n"
                            "workers = 2..6\nkill_timeout = 1500ms\nmax_memory = 1G\n"
                            "env = A=1\nenv = B=2\n");
    json_t *d = cfgdiff_app(&a->apps[0], &b->apps[0]);
    assert_int_equal(json_array_size(d), 4);
    const json_t *w = change(d, "workers");
    assert_string_equal(json_string_value(json_object_get(w, "old")), "2");
    assert_string_equal(json_string_value(json_object_get(w, "new")), "2..6");
    assert_string_equal(json_string_value(json_object_get(w, "apply")), "in_place");
    const json_t *k = change(d, "kill_timeout");
    assert_string_equal(json_string_value(json_object_get(k, "old")), "30s");
    assert_string_equal(json_string_value(json_object_get(k, "new")), "1500ms");
    const json_t *m = change(d, "max_memory");
    assert_string_equal(json_string_value(json_object_get(m, "old")), "256M");
    assert_string_equal(json_string_value(json_object_get(m, "new")), "1G");
    const json_t *e = change(d, "env");
    assert_int_equal(json_array_size(json_object_get(e, "new")), 2);
    assert_string_equal(json_string_value(json_object_get(e, "apply")), "rolling");
    assert_int_equal(cfgdiff_needs_rolling(d), 1);
    assert_null(change(d, "command"));
    json_decref(d);

    json_t *sup = cfgdiff_supervisor(a, b);
    assert_int_equal(json_array_size(sup), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(sup, 0), "new")),
                        "10s");
    json_decref(sup);
    config_free(a);
    config_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_config_no_change),
        cmocka_unit_test(test_changes_and_how_they_apply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
