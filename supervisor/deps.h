/*
 * deps: the order of apps that depend on each other (`depends_on`, SPEC section 3), as a graph
 * of indices: node i depends on the nodes edges[i][0 .. n_edges[i]-1].
 *
 * Pure and tiny on purpose: the config uses it to refuse a cycle with the path that closes it,
 * the master to stop dependents before what they depend on. Names stay with the callers; here a
 * node is a number, so a unit test can drive every shape of graph.
 */
#pragma once

#include <stddef.h>

/* The most nodes deps works on: the most apps a config can hold is far fewer in practice; the
 * bound keeps the walks' stacks fixed. */
#define DEPS_NODES_MAX 1024

/*
 * Looks for a cycle among the n nodes. Returns 0 when there is none; -ELOOP when there is one,
 * with its nodes in ret_cycle (room for n + 1) in dependency order, the first repeated at the
 * end (a -> b -> a), and their count, the repeat included, in *ret_len; -E2BIG when n is over
 * DEPS_NODES_MAX. An edge to a node >= n is ignored (the caller reports unknown names).
 */
int deps_find_cycle(size_t n, const size_t *const *edges, const size_t *n_edges,
                    size_t *ret_cycle, size_t *ret_len);

/*
 * The stop tier of each node, into ret_tier (room for n): 0 for a node nothing depends on,
 * else one more than the highest tier of the nodes that depend on it. Stopping tier 0 first,
 * then 1, and so on stops every dependent before what it depends on. The graph must have no
 * cycle. Returns the highest tier, or -E2BIG when n is over DEPS_NODES_MAX.
 */
int deps_stop_tiers(size_t n, const size_t *const *edges, const size_t *n_edges,
                    unsigned *ret_tier);
