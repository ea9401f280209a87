/*
 * The long-line path of config's reader (cfgread.c), checked against inih itself. A line too
 * long for inih's buffer reaches inih shortened, its stretches handed over by reference
 * (cfgread_shorten), and the key handler expands them again (cfgread_expand_name/value). That is only right
 * if inih reads the short line exactly as it would read the long one. Here inih reads random
 * lines both ways, lines short enough for it to take whole, full of the characters its syntax
 * is made of, after a key (so an indented line continues its value) and after a section: the
 * names, values and errors it reports must be the same. Run against the system's inih, this
 * also notices when a new inih version reads lines differently than cfgread_shorten expects.
 *
 * The functions under test are static, so this file includes cfgread.c; it links inih, and
 * not cfgread's own object.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <ini.h>

#include "../../supervisor/cfgread.c" // NOLINT(bugprone-suspicious-include)

#define CALLS_MAX 4
#define LINE_CHARS 120

/* What inih reported for one input: each handler call, and its return value. */
struct outcome {
    char calls[CALLS_MAX][3 * LINE_CHARS];
    int n_calls;
    int error;
};

/* Two lines, as an fgets() would give them to inih. */
struct input {
    const char *lines[2];
    int next;
};

static char *input_read(char *str, int num, void *stream)
{
    struct input *in = stream;

    if (in->next == 2) {
        return NULL;
    }
    snprintf(str, (size_t)num, "%s\n", in->lines[in->next++]);
    return str;
}

/* The reader whose spans the handler expands; NULL while inih reads the line whole. */
static struct cfgread *expanding;

static int record(void *user, const char *section, const char *name, const char *value)
{
    struct outcome *o = user;

    (void)section; /* the reader follows sections itself (cfgread_header) */
    if (expanding) {
        name = cfgread_expand_name(expanding, name);
        if (value) {
            value = cfgread_expand_value(expanding, value);
        }
        assert_non_null(name);
    }
    if (o->n_calls < CALLS_MAX) {
        snprintf(o->calls[o->n_calls++], sizeof o->calls[0], "{%s}={%s}", name,
                 value ? value : "(none)");
    }
    return 1;
}

static void print_bytes(const char *what, const char *s)
{
    print_message("%s: ", what);
    for (; *s; s++) {
        print_message(*s >= 0x20 && *s < 0x7f ? "%c" : "\\x%02x", (unsigned char)*s);
    }
    print_message("\n");
}

/* xorshift64: the same lines on every run. */
static uint64_t next_random(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

static void test_short_form_reads_alike(void **state)
{
    /* inih's syntax, blanks of every kind, quotes, and the token byte itself. */
    static const char syntax[] = " \t\v\f\r;#=:[]\"'\x01";
    uint64_t seed = 0x9E3779B97F4A7C15u;
    char text[LINE_CHARS + 1];
    char shortened[CFGREAD_SHORT_LINE_MAX];

    for (int iter = 0; iter < 200000; iter++) {
        size_t len = next_random(&seed) % LINE_CHARS;
        for (size_t i = 0; i < len; i++) {
            uint64_t r = next_random(&seed);
            text[i] = r % 100 < 60 ? syntax[(r >> 8) % (sizeof syntax - 1)] : (char)('a' + r % 6);
        }
        text[len] = '\0';
        /* The reader strips leading spaces and tabs before anything else. */
        const char *line = text + strspn(text, " \t");
        bool after_key = next_random(&seed) & 1;
        const char *before = after_key ? "k = v" : "[s]";

        struct outcome whole = {0}, by_ref = {0};
        struct input in = {{before, line}, 0};
        expanding = NULL;
        whole.error = ini_parse_stream(input_read, &in, record, &whole);

        struct cfgread l = {.after_key = after_key};
        cfgread_shorten(&l, line, strlen(line), shortened);
        assert_true(strlen(shortened) < CFGREAD_SHORT_LINE_MAX);
        shortened[strlen(shortened) - 1] = '\0'; /* input_read adds the newline */
        struct input in2 = {{before, shortened}, 0};
        expanding = &l;
        by_ref.error = ini_parse_stream(input_read, &in2, record, &by_ref);
        expanding = NULL;
        free(l.name_buf);
        free(l.value_buf);

        bool same = whole.error == by_ref.error && whole.n_calls == by_ref.n_calls;
        for (int i = 0; same && i < whole.n_calls; i++) {
            same = strcmp(whole.calls[i], by_ref.calls[i]) == 0;
        }
        if (!same) {
            print_message("after '%s':\n", before);
            print_bytes("line     ", line);
            print_bytes("shortened", shortened);
            print_message("whole: error %d, %d calls; by reference: error %d, %d calls\n",
                          whole.error, whole.n_calls, by_ref.error, by_ref.n_calls);
            for (int i = 0; i < whole.n_calls; i++) {
                print_bytes("  whole ", whole.calls[i]);
            }
            for (int i = 0; i < by_ref.n_calls; i++) {
                print_bytes("  by ref", by_ref.calls[i]);
            }
            fail();
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_short_form_reads_alike),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
