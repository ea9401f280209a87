/*
 * deps: cycles and stop tiers of a dependency graph. See deps.h.
 *
 * Both walks are the textbook depth-first search with three colours, iterative with a stack of
 * (node, next edge) so that a long chain cannot overflow the C stack.
 */
#include "deps.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

enum { WHITE, GREY, BLACK };

struct frame {
    size_t node;
    size_t next; /* the next edge of node to follow */
};

int deps_find_cycle(size_t n, const size_t *const *edges, const size_t *n_edges,
                    size_t *ret_cycle, size_t *ret_len)
{
    unsigned char colour[DEPS_NODES_MAX];
    struct frame stack[DEPS_NODES_MAX];
    size_t depth[DEPS_NODES_MAX]; /* where a grey node stands on the stack */

    if (n > DEPS_NODES_MAX) {
        return -E2BIG;
    }
    memset(colour, WHITE, n);
    for (size_t root = 0; root < n; root++) {
        if (colour[root] != WHITE) {
            continue;
        }
        size_t top = 0;
        depth[root] = top;
        stack[top++] = (struct frame){root, 0};
        colour[root] = GREY;
        while (top > 0) {
            struct frame *f = &stack[top - 1];
            if (f->next == n_edges[f->node]) {
                colour[f->node] = BLACK;
                top--;
                continue;
            }
            size_t to = edges[f->node][f->next++];
            if (to >= n || colour[to] == BLACK) {
                continue;
            }
            if (colour[to] == GREY) {
                /* The grey nodes on the stack from `to` up are the cycle. */
                size_t from = depth[to];
                size_t len = 0;
                for (size_t i = from; i < top; i++) {
                    ret_cycle[len++] = stack[i].node;
                }
                ret_cycle[len++] = to;
                *ret_len = len;
                return -ELOOP;
            }
            colour[to] = GREY;
            depth[to] = top;
            stack[top++] = (struct frame){to, 0};
        }
    }
    return 0;
}

int deps_stop_tiers(size_t n, const size_t *const *edges, const size_t *n_edges,
                    unsigned *ret_tier)
{
    if (n > DEPS_NODES_MAX) {
        return -E2BIG;
    }
    /*
     * A node's tier is one more than its dependents' highest, so relax along the edges until
     * nothing moves: with no cycle, a tier is at most n - 1 and n rounds settle it. Graphs here
     * are a handful of apps, so the quadratic walk is the readable one.
     */
    memset(ret_tier, 0, n * sizeof *ret_tier);
    unsigned top = 0;
    for (size_t round = 0; round < n; round++) {
        bool moved = false;
        for (size_t i = 0; i < n; i++) {
            for (size_t e = 0; e < n_edges[i]; e++) {
                size_t to = edges[i][e];
                if (to < n && ret_tier[to] < ret_tier[i] + 1) {
                    ret_tier[to] = ret_tier[i] + 1;
                    top = ret_tier[to] > top ? ret_tier[to] : top;
                    moved = true;
                }
            }
        }
        if (!moved) {
            break;
        }
    }
    return (int)top;
}
