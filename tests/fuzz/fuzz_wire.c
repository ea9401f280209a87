/*
 * libFuzzer target for wire: every input is tried as a channel message, as a control request,
 * and as a byte stream through the line framer. Beyond "does not crash or leak" it checks the
 * properties the two sides rely on: whatever parses formats again, and the formatted line parses
 * back to the same thing; the framer never holds more than limit + 1 bytes and hands out
 * exactly the lines that went in.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iworker-sdk/src \
 *       tests/fuzz/fuzz_wire.c worker-sdk/src/wire.c -ljansson -o fuzz_wire
 *   ./fuzz_wire tests/fuzz/corpus/wire
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond) {
        abort();
    }
}

static void fuzz_msg(const char *line, size_t len)
{
    struct wire_msg m, again;
    size_t out_len;

    if (wire_msg_parse(line, len, &m) < 0) {
        return;
    }
    char *out = wire_msg_format(&m, &out_len);
    check(out != NULL);
    check(out_len > 0 && out[out_len - 1] == '\n');
    check(memchr(out, '\n', out_len - 1) == NULL);
    check(wire_msg_parse(out, out_len - 1, &again) == 0);
    check(again.type == m.type && again.phase == m.phase && again.timeout_ms == m.timeout_ms);
    check((m.text == NULL) == (again.text == NULL) && (!m.text || !strcmp(m.text, again.text)));
    check((m.body == NULL) == (again.body == NULL) && (!m.body || !strcmp(m.body, again.body)));
    check((m.format == NULL) == (again.format == NULL) &&
          (!m.format || !strcmp(m.format, again.format)));
    check(json_equal(m.families, again.families) || (!m.families && !again.families));
    wire_msg_done(&again);
    wire_msg_done(&m);
    free(out);
}

static void fuzz_request(const char *line, size_t len)
{
    struct wire_request q, again;
    const char *error = NULL;
    size_t out_len;

    if (wire_request_parse(line, len, &q, &error) < 0) {
        check(error != NULL);
        return;
    }
    char *out = wire_request_format(&q, &out_len);
    check(out != NULL);
    check(wire_request_parse(out, out_len - 1, &again, &error) == 0);
    check(again.cmd == q.cmd && again.slot == q.slot && again.count == q.count &&
          again.relative == q.relative && again.lines == q.lines && again.follow == q.follow);
    check((q.app == NULL) == (again.app == NULL) && (!q.app || !strcmp(q.app, again.app)));
    check((q.format == NULL) == (again.format == NULL) &&
          (!q.format || !strcmp(q.format, again.format)));
    wire_request_done(&again);
    wire_request_done(&q);
    free(out);
}

/*
 * The first byte picks the framer's limit and chunk sizes, so the fuzzer reaches the over-limit
 * paths with small inputs. Lines taken out are compared with the input, in order.
 */
static void fuzz_lines(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return;
    }
    size_t limit = data[0] & 0x3f;
    size_t chunk = 1 + (data[0] >> 6) * 7;
    const char *in = (const char *)data + 1;
    size_t n = size - 1, pos = 0, expect = 0;
    struct wire_lines l;

    wire_lines_init(&l, limit);
    while (pos < n) {
        size_t room;
        char *p = wire_lines_space(&l, &room);
        if (!p) {
            break;
        }
        size_t k = chunk < room ? chunk : room;
        if (k > n - pos) {
            k = n - pos;
        }
        memcpy(p, in + pos, k);
        wire_lines_commit(&l, k);
        pos += k;
        check(l.cap <= limit + 1 && l.len <= l.cap);

        const char *line;
        size_t len;
        int r;
        while ((r = wire_lines_next(&l, &line, &len)) == 1) {
            check(len <= limit);
            check(expect + len < n && in[expect + len] == '\n');
            check(memcmp(line, in + expect, len) == 0);
            check(memchr(line, '\n', len) == NULL);
            expect += len + 1;
        }
        if (r < 0) {
            check(r == -EMSGSIZE);
            break;
        }
    }
    wire_lines_done(&l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_msg((const char *)data, size);
    fuzz_request((const char *)data, size);
    fuzz_lines(data, size);
    return 0;
}
