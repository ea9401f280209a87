/*
 * quickstart: the config of `drover -i N -l ADDR -- CMD ARGS...` (SPEC section 2), one app and
 * no file.
 *
 * The quick start is not a second config format: it builds the struct config a file would,
 * through config's own loader (config_loader.h), so its values meet the same checks, defaults
 * and messages as the same values in a file. What it adds is only what a command line has and a
 * file has not: an argv instead of a command string, and an app name taken from the program.
 * Pure: no logging, no sockets.
 */
#pragma once

#include "config.h"

/*
 * The quick start: one app running argv with `workers` workers (0 = "auto") on `listen` (may
 * be NULL), admin on `admin` (NULL = the default, "off" = none), control socket at `socket`
 * (NULL = the default), readiness `ready` (a ready mode; NULL = auto, so that an app that
 * never speaks serves too). The app is named after argv[0]'s base name; its command is argv
 * joined and quoted for display, its argv a copy. Same validation and defaults as a file;
 * errors name the file "(command line)", line 0. On success stores a new config in *ret (free
 * with config_free) and returns 0; otherwise returns -EINVAL or -ENOMEM with *reterr, *ret
 * untouched.
 */
int quickstart_config(unsigned workers, const char *listen, const char *admin, const char *socket,
                      const char *ready, char *const *argv, struct config **ret,
                      struct config_error *reterr);
