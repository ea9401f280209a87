/*
 * sweep: deferred work, run before the loop waits. See sweep.h.
 *
 * A FIFO, so results reach their askers in the order they were produced. Work queued while the
 * queue runs is run in the same sweep: it is still "after" whatever queued it, and leaving it
 * for the next iteration would only add a loop turn of latency.
 */
#include "sweep.h"

#include <stddef.h>

static void sweep_on_prepare(struct ev_loop *loop, ev_prepare *p, int revents)
{
    sweep_run(p->data);
}

void sweep_init(struct sweep *s, struct ev_loop *loop)
{
    s->loop = loop;
    s->head = NULL;
    s->tail = &s->head;
    ev_prepare_init(&s->prepare_w, sweep_on_prepare);
    s->prepare_w.data = s;
    ev_prepare_start(loop, &s->prepare_w);
}

void sweep_add(struct sweep *s, struct sweep_node *node, sweep_fn fn)
{
    node->fn = fn;
    if (node->queued) {
        return;
    }
    node->queued = true;
    node->next = NULL;
    *s->tail = node;
    s->tail = &node->next;
}

void sweep_run(struct sweep *s)
{
    while (s->head) {
        struct sweep_node *node = s->head;
        s->head = node->next;
        if (!s->head) {
            s->tail = &s->head;
        }
        node->queued = false;
        node->fn(node); /* may free node's object, or queue more */
    }
}

void sweep_done(struct sweep *s)
{
    sweep_run(s);
    ev_prepare_stop(s->loop, &s->prepare_w);
}
