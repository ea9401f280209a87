/*
 * fuzz_notify: libFuzzer target for the sd_notify datagram parser (notify_parse), which reads
 * whatever any process that can reach NOTIFY_SOCKET sends. Any input parses or is refused;
 * nothing may read past the datagram, and a status, when found, lies inside it.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "notify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > NOTIFY_DATAGRAM_MAX) {
        return 0;
    }
    /* Exactly as received: the datagram plus the one byte of room notify_parse may use. */
    char *buf = malloc(size + 1);
    if (!buf) {
        return 0;
    }
    memcpy(buf, data, size);
    struct notify_msg msg;
    if (notify_parse(buf, size, &msg) == 0 && msg.status) {
        if (msg.status < buf || msg.status > buf + size) {
            abort();
        }
    }
    free(buf);
    return 0;
}
