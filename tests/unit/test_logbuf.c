/*
 * Unit tests of logbuf, the ring of recent worker output behind `droverctl logs`: bounded in
 * lines and in bytes with the oldest lines going first, read back oldest first, and followers
 * told of every new line, including followers that come and go while being told.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "logbuf.h"

/* What a foreach or a follower saw, in order. */
struct seen {
    char text[32][64];
    int slot[32];
    pid_t pid[32];
    bool is_stderr[32];
    double ts[32];
    size_t n;
};

static void seen_line(const struct logbuf_line *line, void *data)
{
    struct seen *s = data;
    assert_true(s->n < 32);
    assert_true(line->len < sizeof s->text[0]);
    memcpy(s->text[s->n], line->text, line->len);
    s->text[s->n][line->len] = '\0';
    s->slot[s->n] = line->slot;
    s->pid[s->n] = line->pid;
    s->is_stderr[s->n] = line->is_stderr;
    s->ts[s->n] = line->ts;
    s->n++;
}

static void append(struct logbuf *b, const char *text)
{
    logbuf_append(b, 1, 100, false, text, strlen(text));
}

static struct seen last(const struct logbuf *b, long n)
{
    struct seen s = {0};
    logbuf_foreach_last(b, n, seen_line, &s);
    return s;
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_new_refuses_zero_bounds(void **state)
{
    struct logbuf *b = (struct logbuf *)0x1;
    assert_int_equal(logbuf_new(0, 100, &b), -EINVAL);
    assert_int_equal(logbuf_new(10, 0, &b), -EINVAL);
    assert_ptr_equal(b, (struct logbuf *)0x1);
    logbuf_free(NULL);
}

static void test_order_and_fields(void **state)
{
    struct logbuf *b;
    assert_int_equal(logbuf_new(10, 1000, &b), 0);
    struct seen s = last(b, -1);
    assert_int_equal(s.n, 0);

    double before = wall_now();
    logbuf_append(b, 0, 41, false, "first", 5);
    logbuf_append(b, 2, 42, true, "second line", 11);
    logbuf_append(b, 1, 43, false, "", 0);
    /* The text is copied: the caller's buffer may change at once. */
    char scratch[] = "third";
    logbuf_append(b, 3, 44, false, scratch, 5);
    scratch[0] = 'X';
    double after = wall_now();

    s = last(b, -1);
    assert_int_equal(s.n, 4);
    assert_string_equal(s.text[0], "first");
    assert_string_equal(s.text[1], "second line");
    assert_string_equal(s.text[2], "");
    assert_string_equal(s.text[3], "third");
    assert_int_equal(s.slot[1], 2);
    assert_int_equal(s.pid[1], 42);
    assert_true(s.is_stderr[1]);
    assert_false(s.is_stderr[0]);
    for (size_t i = 0; i < s.n; i++) {
        assert_true(s.ts[i] >= before - 0.001 && s.ts[i] <= after + 0.001);
        if (i > 0) {
            assert_true(s.ts[i] >= s.ts[i - 1]);
        }
    }
    logbuf_free(b);
}

static void test_foreach_last_n(void **state)
{
    struct logbuf *b;
    assert_int_equal(logbuf_new(10, 1000, &b), 0);
    append(b, "a");
    append(b, "b");
    append(b, "c");

    struct seen s = last(b, 2);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.text[0], "b");
    assert_string_equal(s.text[1], "c");
    assert_int_equal(last(b, 0).n, 0);
    assert_int_equal(last(b, 3).n, 3);
    s = last(b, 1000);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.text[0], "a");
    logbuf_free(b);
}

static void test_bounded_in_lines(void **state)
{
    struct logbuf *b;
    char line[16];
    assert_int_equal(logbuf_new(3, 1000, &b), 0);
    /* Many times around the ring: the last three are always the ones held. */
    for (int i = 0; i < 20; i++) {
        snprintf(line, sizeof line, "line %d", i);
        append(b, line);
        struct seen s = last(b, -1);
        assert_int_equal(s.n, i < 3 ? i + 1 : 3);
        snprintf(line, sizeof line, "line %d", i);
        assert_string_equal(s.text[s.n - 1], line);
        snprintf(line, sizeof line, "line %d", i < 2 ? 0 : i - 2);
        assert_string_equal(s.text[0], line);
    }
    logbuf_free(b);
}

static void test_bounded_in_bytes(void **state)
{
    struct logbuf *b;
    assert_int_equal(logbuf_new(100, 10, &b), 0);
    append(b, "aaaa");
    append(b, "bbbb");
    append(b, "cc");
    struct seen s = last(b, -1);
    assert_int_equal(s.n, 3); /* exactly 10 bytes: all fit */

    append(b, "d");
    s = last(b, -1);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.text[0], "bbbb");
    assert_string_equal(s.text[2], "d");

    /* A line that needs room for itself pushes out as many old lines as it takes. */
    append(b, "eeeeeeeee");
    s = last(b, -1);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.text[0], "d");
    assert_string_equal(s.text[1], "eeeeeeeee");

    /* A line over the whole budget is cut to it, and it is the only line left. */
    append(b, "0123456789abcdef");
    s = last(b, -1);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.text[0], "0123456789");
    logbuf_free(b);
}

static void test_followers(void **state)
{
    struct logbuf *b;
    struct seen one = {0}, two = {0};
    assert_int_equal(logbuf_new(2, 100, &b), 0);
    append(b, "before");
    assert_int_equal(logbuf_follow(b, seen_line, &one), 0);
    assert_int_equal(logbuf_follow(b, seen_line, &two), 0);
    logbuf_append(b, 5, 55, true, "x", 1);
    append(b, "y");
    assert_int_equal(one.n, 2);
    assert_int_equal(two.n, 2);
    assert_string_equal(one.text[0], "x");
    assert_int_equal(one.slot[0], 5);
    assert_int_equal(one.pid[0], 55);
    assert_true(one.is_stderr[0]);
    assert_string_equal(two.text[1], "y");

    logbuf_unfollow(b, seen_line, &one);
    append(b, "z");
    assert_int_equal(one.n, 2);
    assert_int_equal(two.n, 3);
    /* Unfollowing what is not followed is harmless. */
    logbuf_unfollow(b, seen_line, &one);
    logbuf_unfollow(b, seen_line, &two);
    append(b, "w");
    assert_int_equal(two.n, 3);
    logbuf_free(b);
}

/* A follower that, when told, unfollows itself and another, and adds a third. */
struct meddler {
    struct logbuf *b;
    struct seen seen;
    void *victim;
    struct seen *newcomer;
};

static void meddle(const struct logbuf_line *line, void *data)
{
    struct meddler *m = data;
    seen_line(line, &m->seen);
    logbuf_unfollow(m->b, meddle, m);
    if (m->victim) {
        logbuf_unfollow(m->b, seen_line, m->victim);
    }
    if (m->newcomer) {
        assert_int_equal(logbuf_follow(m->b, seen_line, m->newcomer), 0);
        m->newcomer = NULL;
    }
}

static void test_follow_changes_while_telling(void **state)
{
    struct logbuf *b;
    struct seen before = {0}, after = {0}, newcomer = {0};
    assert_int_equal(logbuf_new(4, 100, &b), 0);
    struct meddler m = {.b = b, .victim = &after, .newcomer = &newcomer};
    assert_int_equal(logbuf_follow(b, seen_line, &before), 0);
    assert_int_equal(logbuf_follow(b, meddle, &m), 0);
    assert_int_equal(logbuf_follow(b, seen_line, &after), 0);

    append(b, "one");
    assert_int_equal(before.n, 1);
    assert_int_equal(m.seen.n, 1);
    assert_int_equal(after.n, 0);    /* removed before its turn came */
    assert_int_equal(newcomer.n, 0); /* added during the line: hears from the next one */

    append(b, "two");
    assert_int_equal(before.n, 2);
    assert_int_equal(m.seen.n, 1);
    assert_int_equal(after.n, 0);
    assert_int_equal(newcomer.n, 1);
    assert_string_equal(newcomer.text[0], "two");
    logbuf_free(b);
}

static void test_many_followers(void **state)
{
    struct logbuf *b;
    static struct seen s[40];
    memset(s, 0, sizeof s);
    assert_int_equal(logbuf_new(4, 100, &b), 0);
    for (int i = 0; i < 40; i++) {
        assert_int_equal(logbuf_follow(b, seen_line, &s[i]), 0);
    }
    for (int i = 0; i < 40; i += 2) {
        logbuf_unfollow(b, seen_line, &s[i]);
    }
    append(b, "hello");
    for (int i = 0; i < 40; i++) {
        assert_int_equal(s[i].n, i % 2 ? 1 : 0);
    }
    logbuf_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_refuses_zero_bounds),
        cmocka_unit_test(test_order_and_fields),
        cmocka_unit_test(test_foreach_last_n),
        cmocka_unit_test(test_bounded_in_lines),
        cmocka_unit_test(test_bounded_in_bytes),
        cmocka_unit_test(test_followers),
        cmocka_unit_test(test_follow_changes_while_telling),
        cmocka_unit_test(test_many_followers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
