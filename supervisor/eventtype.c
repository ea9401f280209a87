/*
 * eventtype: names of the event types. See eventtype.h.
 */
#include "eventtype.h"

#include <string.h>

static const char *const event_names[EVENT__COUNT] = {
    [EVENT_WORKER_START] = "worker_start",
    [EVENT_WORKER_READY] = "worker_ready",
    [EVENT_WORKER_EXIT] = "worker_exit",
    [EVENT_WORKER_HUNG] = "worker_hung",
    [EVENT_CRASH_LOOP] = "crash_loop",
    [EVENT_CRASH_LOOP_END] = "crash_loop_end",
    [EVENT_MEMORY_LIMIT] = "memory_limit",
    [EVENT_RECYCLE] = "recycle",
    [EVENT_RELOAD] = "reload",
    [EVENT_SCALE] = "scale",
    [EVENT_CONFIG_REJECTED] = "config_rejected",
    [EVENT_SHUTDOWN_PHASE] = "shutdown_phase",
    [EVENT_UPGRADE] = "upgrade",
};

const char *event_type_to_string(enum event_type type)
{
    return (unsigned)type < EVENT__COUNT ? event_names[type] : NULL;
}

int event_type_from_string(const char *s)
{
    for (int i = 0; i < EVENT__COUNT; i++) {
        if (strcmp(s, event_names[i]) == 0) {
            return i;
        }
    }
    return -1;
}
