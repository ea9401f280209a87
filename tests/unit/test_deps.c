/*
 * Unit tests of deps, the graph behind depends_on (SPEC section 3): a cycle is found with the
 * path that closes it, an acyclic graph passes, and the stop tiers put every dependent before
 * what it depends on.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include "deps.h"

/* Graphs as rows of edges: row i lists what node i depends on. */
#define ROW(...) ((const size_t[]){__VA_ARGS__})

static void test_no_edges(void **state)
{
    const size_t *edges[3] = {NULL, NULL, NULL};
    size_t n_edges[3] = {0, 0, 0};
    size_t cycle[4];
    size_t len = 99;
    unsigned tier[3];

    assert_int_equal(deps_find_cycle(3, edges, n_edges, cycle, &len), 0);
    assert_int_equal(len, 99); /* untouched */
    assert_int_equal(deps_stop_tiers(3, edges, n_edges, tier), 0);
    assert_int_equal(tier[0], 0);
    assert_int_equal(tier[2], 0);
}

static void test_self_cycle(void **state)
{
    const size_t *edges[1] = {ROW(0)};
    size_t n_edges[1] = {1};
    size_t cycle[2];
    size_t len = 0;

    assert_int_equal(deps_find_cycle(1, edges, n_edges, cycle, &len), -ELOOP);
    assert_int_equal(len, 2);
    assert_int_equal(cycle[0], 0);
    assert_int_equal(cycle[1], 0);
}

static void test_three_cycle_behind_a_tail(void **state)
{
    /* 0 -> 1 -> 2 -> 3 -> 1: the cycle is 1 2 3 1, not the tail through 0. */
    const size_t *edges[4] = {ROW(1), ROW(2), ROW(3), ROW(1)};
    size_t n_edges[4] = {1, 1, 1, 1};
    size_t cycle[5];
    size_t len = 0;

    assert_int_equal(deps_find_cycle(4, edges, n_edges, cycle, &len), -ELOOP);
    assert_int_equal(len, 4);
    assert_int_equal(cycle[0], 1);
    assert_int_equal(cycle[1], 2);
    assert_int_equal(cycle[2], 3);
    assert_int_equal(cycle[3], 1);
}

static void test_diamond_is_no_cycle(void **state)
{
    /* web -> api, web -> cache, api -> db, cache -> db: db is reached twice, not a cycle. */
    const size_t *edges[4] = {ROW(1, 2), ROW(3), ROW(3), NULL};
    size_t n_edges[4] = {2, 1, 1, 0};
    size_t cycle[5];
    size_t len = 0;
    unsigned tier[4];

    assert_int_equal(deps_find_cycle(4, edges, n_edges, cycle, &len), 0);
    assert_int_equal(deps_stop_tiers(4, edges, n_edges, tier), 2);
    assert_int_equal(tier[0], 0); /* web: nothing depends on it, stops first */
    assert_int_equal(tier[1], 1);
    assert_int_equal(tier[2], 1);
    assert_int_equal(tier[3], 2); /* db: last */
}

static void test_chain_tiers_follow_the_longest_path(void **state)
{
    /* 0 -> 3 directly and 0 -> 1 -> 2 -> 3: 3 stops after 2, so its tier is 3, not 1. */
    const size_t *edges[4] = {ROW(3, 1), ROW(2), ROW(3), NULL};
    size_t n_edges[4] = {2, 1, 1, 0};
    unsigned tier[4];

    assert_int_equal(deps_stop_tiers(4, edges, n_edges, tier), 3);
    assert_int_equal(tier[0], 0);
    assert_int_equal(tier[1], 1);
    assert_int_equal(tier[2], 2);
    assert_int_equal(tier[3], 3);
}

static void test_edges_out_of_range_are_ignored(void **state)
{
    const size_t *edges[2] = {ROW(7), ROW(0)};
    size_t n_edges[2] = {1, 1};
    size_t cycle[3];
    size_t len = 0;
    unsigned tier[2];

    assert_int_equal(deps_find_cycle(2, edges, n_edges, cycle, &len), 0);
    assert_int_equal(deps_stop_tiers(2, edges, n_edges, tier), 1);
    assert_int_equal(tier[0], 1);
    assert_int_equal(tier[1], 0);
}

static void test_too_many_nodes(void **state)
{
    size_t cycle[1];
    size_t len = 0;
    unsigned tier[1];

    assert_int_equal(deps_find_cycle(DEPS_NODES_MAX + 1, NULL, NULL, cycle, &len), -E2BIG);
    assert_int_equal(deps_stop_tiers(DEPS_NODES_MAX + 1, NULL, NULL, tier), -E2BIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_edges),
        cmocka_unit_test(test_self_cycle),
        cmocka_unit_test(test_three_cycle_behind_a_tail),
        cmocka_unit_test(test_diamond_is_no_cycle),
        cmocka_unit_test(test_chain_tiers_follow_the_longest_path),
        cmocka_unit_test(test_edges_out_of_range_are_ignored),
        cmocka_unit_test(test_too_many_nodes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
