/*
 * fuzz_config: libFuzzer target for the config parser (SPEC section 3), through
 * config_load_string() so that every input takes the same path as a file: our line reader,
 * inih, the key setters, the whole-config checks. A config either loads and frees cleanly or
 * fails with a complete error; either way nothing may leak, crash or read out of bounds.
 *
 *   clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isupervisor \
 *       tests/fuzz/fuzz_config.c supervisor/config.c supervisor/parse.c -linih -o fuzz_config
 *   mkdir -p /tmp/corpus && ./fuzz_config /tmp/corpus tests/fuzz/corpus/config
 *
 * (The first directory receives what the fuzzer finds; the seeds stay as they are.)
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config *cfg = NULL;
    struct config_error err;
    char text[1024];

    int r = config_load_string("fuzz.ini", (const char *)data, size, &cfg, &err);
    if (r == 0) {
        /* A loaded config is whole: every app has a command and a sane worker count. */
        if (cfg->n_apps == 0 || !cfg->control_socket) {
            abort();
        }
        for (size_t i = 0; i < cfg->n_apps; i++) {
            const struct config_app *a = &cfg->apps[i];
            if (!a->argv || !a->argv[0] || a->workers < 1 || a->workers > 1024 ||
                a->restart_delay_max_ms < a->restart_delay_ms ||
                config_app_find(cfg, a->name) != a) {
                abort();
            }
        }
        config_free(cfg);
    } else {
        if (memchr(err.message, '\0', sizeof err.message) == NULL || err.message[0] == '\0') {
            abort();
        }
        config_error_format(&err, text, sizeof text);
    }
    return 0;
}
