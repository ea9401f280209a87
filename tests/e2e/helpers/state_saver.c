/*
 * state_saver: saves state through the SDK as fast as it can, for the test that kills it in the
 * middle of a save. Each state is "N <N repeated to fill 64 KiB> END N\n": a torn or mixed file
 * would not read back as one consistent record. Runs without drover: only DROVER_STATE_FILE is
 * needed. Prints "saved N" after the first save so the test knows it is under way.
 */
#include <drover/worker.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATE_SIZE (64 * 1024)

int main(void)
{
    struct drover_worker *w = NULL;
    if (drover_init(&w) < 0) {
        return 1;
    }
    static char buf[STATE_SIZE];
    for (unsigned long n = 1;; n++) {
        int len = snprintf(buf, sizeof buf, "%lu ", n);
        char unit[24];
        int ulen = snprintf(unit, sizeof unit, "%lu,", n);
        while (len + ulen + 32 < STATE_SIZE) {
            memcpy(buf + len, unit, (size_t)ulen);
            len += ulen;
        }
        len += snprintf(buf + len, sizeof buf - (size_t)len, " END %lu\n", n);
        if (drover_state_save(w, buf, (size_t)len) < 0) {
            return 1;
        }
        if (n == 1) {
            printf("saved 1\n");
            fflush(stdout);
        }
    }
}
