/*
 * config_loader: config.c's loader, for the modules that build a config from something other
 * than a file (SPEC section 3). Internal to config: the rest of drover includes config.h.
 *
 * A config built elsewhere must still be a config: every value checked, defaulted and reported
 * exactly as the same value written in a file. So the builder (quickstart.c) does not fill a
 * struct config itself; it drives config.c's loader, setting keys by name through the setters a
 * file's lines go through, and the whole-config checks run at the end as they do after a file's
 * last line. Errors carry the file name the loader was given and line 0, since no line was read.
 * The loader owns the half-built config until config_loader_finish() hands it over, so a config
 * exists whole or not at all. Pure, as config.c: no logging.
 */
#pragma once

#include <stdbool.h>

#include "config.h"

/* The longest app name, in bytes (SPEC section 3). */
#define CONFIG_APP_NAME_MAX 64

struct config_loader;

/*
 * A loader over no input, holding a config of defaults; its errors name `file` (borrowed: it
 * must outlive the loader). Stores it in *ret (free with config_loader_free) and returns 0, or
 * returns -ENOMEM with *reterr filled.
 */
int config_loader_new(const char *file, struct config_loader **ret, struct config_error *reterr);

/* Frees the loader and the config it still holds (none after a successful finish). NULL is ok. */
void config_loader_free(struct config_loader *l);

/*
 * Appends an app named name, with default values, as an [app:NAME] header would, and makes it
 * the app later app keys go to. Stores the app in *ret_app, for fields no key sets (the quick
 * start's argv): what the caller puts there belongs to the config then, and config_free()
 * frees it. *ret_app is valid until the next config_loader_add_app(). Returns 0, or -EINVAL
 * (an invalid or repeated name) / -ENOMEM with the error recorded.
 */
int config_loader_add_app(struct config_loader *l, const char *name, struct config_app **ret_app);

/*
 * Sets key to value as a line "key = value" would: a [supervisor] key on the config, an app's
 * key on the app added last. The same parsing, checks and messages as in a file; what is not
 * checked is that a key is given only once. Returns 0, or -EINVAL / -ENOMEM with the error
 * recorded (after an earlier error, that error's code, and nothing is set).
 */
int config_loader_set(struct config_loader *l, const char *key, const char *value);

/*
 * Records an error of the caller's about key (e.g. "command"), unless one is recorded already:
 * the first error wins. Returns error (or the earlier error's code).
 */
int config_loader_fail(struct config_loader *l, int error, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Runs the whole-config checks (as after a file's last line) unless an error is recorded, then
 * hands over the config: stores it in *ret and returns 0, or returns the first error's code with
 * *reterr filled (*ret untouched). Call it once; free the loader after it either way.
 */
int config_loader_finish(struct config_loader *l, struct config **ret, struct config_error *reterr);

/* Whether c may appear in an app name: letters, digits, '_', '.' and '-'. */
bool config_app_name_char_is_valid(char c);
