/*
 * <drover/worker-ev.h>: the drover channel on a libev loop, header-only.
 *
 * <drover/worker.h> stays free of any event loop; this is the glue for apps that already run
 * libev. It watches drover_fd() for reading, and for writing only while output is queued: a
 * socket is nearly always writable, so watching it all the time would spin the loop.
 *
 * Output can be queued from anywhere in the app (drover_phase_done from a timer, long after the
 * phase arrived), not only from inside drover_process. So rather than ask the app to remember
 * to re-arm the watcher after every call, an ev_prepare watcher checks drover_wants_write()
 * each time the loop is about to block and adjusts the io watcher's events. The prepare watcher
 * does not keep the loop alive (ev_unref), so it never stops ev_run from returning.
 *
 * With a watchdog set (WATCHDOG_USEC, SPEC section 10), a timer on the same loop sends a
 * heartbeat at half the interval. It runs on the app's own loop on purpose: a loop blocked by an
 * endless request or a deadlock stops the heartbeats, and drover sees the worker hung. Like the
 * prepare watcher it does not keep the loop alive.
 *
 *     struct drover_ev dev;
 *     drover_ev_start(&dev, loop, w, on_channel_closed, app);
 *     ...
 *     drover_ev_stop(&dev);           before drover_close(w)
 */
#ifndef DROVER_WORKER_EV_H
#define DROVER_WORKER_EV_H

#include <errno.h>
#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <drover/worker.h>

struct drover_ev;

/* Called once when the channel ends (err is -EPIPE when the master went away). */
typedef void (*drover_ev_close_fn)(struct drover_ev *e, int err, void *userdata);

struct drover_ev {
    ev_io io;
    ev_prepare prepare;
    ev_timer heartbeat;
    bool beating;   /* heartbeat is started (and unref'd) */
    struct ev_loop *loop;
    struct drover_worker *w;
    drover_ev_close_fn on_close;
    void *userdata;
    int events;     /* what io currently watches */
    bool active;
};

/* Points the io watcher at the events it should wait for now. */
static inline void drover_ev__arm(struct drover_ev *e)
{
    int events = EV_READ | (drover_wants_write(e->w) ? EV_WRITE : 0);
    if (events == e->events) {
        return;
    }
    /* libev forbids changing an active watcher's events: stop, set, start. */
    ev_io_stop(e->loop, &e->io);
    ev_io_set(&e->io, drover_fd(e->w), events);
    ev_io_start(e->loop, &e->io);
    e->events = events;
}

/* Stops both watchers. Safe to call twice, and from the on_close callback. */
static inline void drover_ev_stop(struct drover_ev *e)
{
    if (!e->active) {
        return;
    }
    e->active = false;
    ev_io_stop(e->loop, &e->io);
    /* Undo the ev_unref of start before stopping, as libev requires. */
    ev_ref(e->loop);
    ev_prepare_stop(e->loop, &e->prepare);
    if (e->beating) {
        e->beating = false;
        ev_ref(e->loop);
        ev_timer_stop(e->loop, &e->heartbeat);
    }
}

static inline void drover_ev__on_heartbeat(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct drover_ev *e = (struct drover_ev *)((char *)t - offsetof(struct drover_ev, heartbeat));
    (void)loop;
    (void)revents;
    (void)drover_heartbeat(e->w);
    drover_ev__arm(e);
}

static inline void drover_ev__on_io(struct ev_loop *loop, ev_io *io, int revents)
{
    struct drover_ev *e = (struct drover_ev *)((char *)io - offsetof(struct drover_ev, io));
    int r = drover_process(e->w);
    (void)loop;
    (void)revents;
    if (r < 0) {
        drover_ev_stop(e);
        if (e->on_close) {
            e->on_close(e, r, e->userdata);
        }
        return;
    }
    drover_ev__arm(e);
}

static inline void drover_ev__on_prepare(struct ev_loop *loop, ev_prepare *p, int revents)
{
    struct drover_ev *e = (struct drover_ev *)((char *)p - offsetof(struct drover_ev, prepare));
    (void)loop;
    (void)revents;
    drover_ev__arm(e);
}

/*
 * Starts watching w's channel on loop. on_close (may be NULL) gets userdata. Returns 0, or
 * -ENOTCONN when w has no channel (nothing is started; the app simply runs without one).
 * e must stay put (not be moved or freed) until drover_ev_stop.
 */
static inline int drover_ev_start(struct drover_ev *e, struct ev_loop *loop,
                                  struct drover_worker *w, drover_ev_close_fn on_close,
                                  void *userdata)
{
    int fd = drover_fd(w);
    *e = (struct drover_ev){.loop = loop, .w = w, .on_close = on_close, .userdata = userdata};
    if (fd < 0) {
        return -ENOTCONN;
    }
    e->events = EV_READ;
    ev_io_init(&e->io, drover_ev__on_io, fd, EV_READ);
    ev_io_start(loop, &e->io);
    ev_prepare_init(&e->prepare, drover_ev__on_prepare);
    ev_prepare_start(loop, &e->prepare);
    ev_unref(loop);
    e->active = true;
    uint64_t usec = drover_watchdog_usec(w);
    if (usec > 0) {
        double every = (double)usec / 2e6;
        ev_timer_init(&e->heartbeat, drover_ev__on_heartbeat, every, every);
        ev_timer_start(loop, &e->heartbeat);
        ev_unref(loop);
        e->beating = true;
        (void)drover_heartbeat(w);
    }
    /* Something may already be queued (a drover_ready before start, a full socket). */
    drover_ev__arm(e);
    return 0;
}

#endif /* DROVER_WORKER_EV_H */
