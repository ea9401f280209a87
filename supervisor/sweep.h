/*
 * sweep: "after the callbacks that are running now have returned", as a loop utility.
 *
 * Two things must never happen inside the call that caused them: freeing an object whose
 * callback is still on the stack (a worker reaped from its own ev_child callback), and
 * delivering a result to whoever asked for it (libuv's rule: a callback never fires from inside
 * the call that started it). Both become a node queued here and run from an ev_prepare watcher,
 * that is once every callback of this loop iteration has returned and before the loop next
 * waits. Nodes are embedded in their objects, so queuing never allocates and cannot fail.
 */
#pragma once

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

/* The object a node is embedded in: SWEEP_OWNER(node, struct worker, swept). */
#define SWEEP_OWNER(node, type, member) ((type *)(void *)((char *)(node) - offsetof(type, member)))

struct sweep_node;
typedef void (*sweep_fn)(struct sweep_node *node);

struct sweep_node {
    struct sweep_node *next;
    sweep_fn fn;
    bool queued;
};

struct sweep {
    struct ev_loop *loop;
    ev_prepare prepare_w;
    struct sweep_node *head;
    struct sweep_node **tail;
};

/* Starts the sweeper on loop. */
void sweep_init(struct sweep *s, struct ev_loop *loop);

/* Runs fn(node) once, after the current callbacks. A node already queued stays queued once
 * (its fn is replaced). The node must stay valid until then. */
void sweep_add(struct sweep *s, struct sweep_node *node, sweep_fn fn);

/* Runs everything queued now (also what the nodes queue while running). */
void sweep_run(struct sweep *s);

/* Runs what is queued and stops the sweeper. */
void sweep_done(struct sweep *s);
