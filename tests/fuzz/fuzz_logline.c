/*
 * fuzz_logline: libFuzzer target for logline_record, which reads every line a worker writes to
 * stdout or stderr. Any input makes a record; the record is a JSON object whose drover keys keep
 * their types (ts, level, msg, stream strings; app a string; worker, pid integers), and its level
 * is one of drover's six words.
 */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "logline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_string(json_t *rec, const char *key, bool required)
{
    json_t *v = json_object_get(rec, key);
    if ((required && !v) || (v && !json_is_string(v))) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct log_origin origin = {"web", 3, 4242};
    enum log_level level = LOG_INFO;
    json_t *rec = logline_record("2026-01-02T03:04:05.678Z", origin, size & 1,
                                 (const char *)data, size, &level);
    if (!rec) {
        return 0; /* out of memory only */
    }
    check_string(rec, "ts", true);
    check_string(rec, "level", true);
    check_string(rec, "stream", true);
    check_string(rec, "msg", false);
    if (strcmp(json_string_value(json_object_get(rec, "level")),
               logline_level_to_string(level)) != 0 ||
        json_integer_value(json_object_get(rec, "worker")) != 3 ||
        json_integer_value(json_object_get(rec, "pid")) != 4242 ||
        strcmp(json_string_value(json_object_get(rec, "app")), "web") != 0) {
        abort();
    }
    char *text = json_dumps(rec, JSON_COMPACT);
    if (!text) {
        abort();
    }
    free(text);
    json_decref(rec);
    return 0;
}
