/*
 * sdnotify: drover's own sd_notify to systemd. See sdnotify.h.
 */
#include "sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "handover.h"
#include "log.h"
#include "master.h"
#include "notify.h"

struct sdnotify {
    struct master *m;
    struct master_observer observer;
    char *socket;           /* systemd's NOTIFY_SOCKET; NULL = not under systemd */
    bool ready_sent;
    char *status_line;      /* the last STATUS= sent, to send only changes */
    ev_timer watchdog_w;
    double watchdog_s;
    ev_timer upgraded_w;    /* READY=1 after an upgrade, once this image's loop runs */
};

static struct sdnotify *sdnotify_of(struct master_observer *o)
{
    return (struct sdnotify *)(void *)((char *)o - offsetof(struct sdnotify, observer));
}

static void sdnotify_tell(struct sdnotify *n, const char *text)
{
    int r = notify_send(n->socket, text);
    if (r < 0 && r != -EAGAIN) {
        log_warn("sd_notify('%s') failed: %s", n->socket, strerror(-r));
    }
}

/* "web: 4/4 ready, gen 3; api: 1/2 ready, gen 1 (reloading)", as `systemctl status` shows it. */
static void sdnotify_update_status(struct sdnotify *n)
{
    const struct master *m = n->m;
    char line[1024] = "STATUS=";
    size_t off = strlen(line);
    for (size_t i = 0; i < m->n_apps && off < sizeof line; i++) {
        const struct app *app = m->apps[i];
        bool running = app->state == APP_RUNNING;
        off += (size_t)snprintf(line + off, sizeof line - off, "%s%s: %u/%u ready, gen %u%s%s%s",
                                i ? "; " : "", app->name, app_ready_count(app), app->n_slots,
                                app->generation, running ? "" : " (",
                                running ? "" : app_state_to_string(app->state),
                                running ? "" : ")");
    }
    if (n->status_line && strcmp(n->status_line, line) == 0) {
        return;
    }
    free(n->status_line);
    n->status_line = strdup(line);
    sdnotify_tell(n, line);
}

static void sdnotify_on_app_changed(struct master_observer *o, struct app *app)
{
    struct sdnotify *n = sdnotify_of(o);
    if (!n->ready_sent && master_is_ready(n->m)) {
        n->ready_sent = true;
        sdnotify_tell(n, "READY=1");
    }
    sdnotify_update_status(n);
}

static void sdnotify_on_phase(struct master_observer *o, enum wire_phase phase)
{
    if (phase == WIRE_PHASE_INITIATED) {
        sdnotify_tell(sdnotify_of(o), "STOPPING=1");
    }
}

static void sdnotify_on_reload(struct master_observer *o, bool done)
{
    struct sdnotify *n = sdnotify_of(o);
    if (done) {
        sdnotify_tell(n, "READY=1");
        sdnotify_update_status(n);
        return;
    }
    /* systemd wants the time of the reload with RELOADING=1 (Type=notify-reload semantics). */
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    char reloading[96];
    snprintf(reloading, sizeof reloading, "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)now.tv_sec * 1000000ULL + (unsigned long long)now.tv_nsec / 1000);
    sdnotify_tell(n, reloading);
}

static void sdnotify_on_watchdog(struct ev_loop *loop, ev_timer *t, int revents)
{
    /* The timer firing is itself the proof that the loop turns. */
    sdnotify_tell(t->data, "WATCHDOG=1");
}

/* The reload pair of systemd's Type=notify-reload, for an upgrade: RELOADING=1 now, READY=1
 * from the image that comes up. */
int sdnotify_save(struct sdnotify *n, struct handover *h)
{
    if (!n) {
        return 0;
    }
    json_t *saved = json_pack("{s:s, s:f, s:b}", "socket", n->socket, "watchdog_s",
                              n->watchdog_s, "ready_sent", n->ready_sent);
    if (!saved || json_object_set_new(handover_doc(h), "sdnotify", saved) < 0) {
        return -ENOMEM;
    }
    sdnotify_on_reload(&n->observer, false);
    return 0;
}

static void sdnotify_on_upgraded(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct sdnotify *n = t->data;
    sdnotify_tell(n, "READY=1");
    sdnotify_update_status(n);
}

int sdnotify_open(struct master *m, struct sdnotify **ret)
{
    *ret = NULL;
    const json_t *saved = handover_get(handover_incoming(), "sdnotify");
    const char *sock = saved ? json_string_value(json_object_get(saved, "socket"))
                             : getenv("NOTIFY_SOCKET");
    const char *usec = getenv("WATCHDOG_USEC");
    const char *wpid = getenv("WATCHDOG_PID");
    bool for_us = !wpid || strtol(wpid, NULL, 10) == (long)getpid();
    double secs = usec && for_us ? (double)strtoull(usec, NULL, 10) / 1e6 : 0;
    if (saved) {
        secs = json_real_value(json_object_get(saved, "watchdog_s"));
    }
    int r = 0;
    if (sock && *sock) {
        struct sdnotify *n = calloc(1, sizeof *n);
        if (!n || !(n->socket = strdup(sock))) {
            free(n);
            r = -ENOMEM;
        } else {
            n->m = m;
            n->observer.on_app_changed = sdnotify_on_app_changed;
            n->observer.on_phase = sdnotify_on_phase;
            n->observer.on_reload = sdnotify_on_reload;
            master_observe(m, &n->observer);
            ev_timer_init(&n->watchdog_w, sdnotify_on_watchdog, secs / 2, secs / 2);
            n->watchdog_w.data = n;
            n->watchdog_s = secs;
            if (secs > 0) {
                ev_timer_start(m->loop, &n->watchdog_w);
            }
            ev_timer_init(&n->upgraded_w, sdnotify_on_upgraded, 0., 0.);
            n->upgraded_w.data = n;
            if (saved) {
                /* systemd saw READY long ago: only the upgrade's own READY=1 follows. */
                n->ready_sent = json_is_true(json_object_get(saved, "ready_sent"));
                if (n->ready_sent) {
                    ev_timer_start(m->loop, &n->upgraded_w);
                }
            }
            *ret = n;
        }
    }
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    if (r < 0) {
        log_error("sd_notify: out of memory");
    }
    return r;
}

void sdnotify_close(struct sdnotify *n)
{
    if (!n) {
        return;
    }
    ev_timer_stop(n->m->loop, &n->watchdog_w);
    ev_timer_stop(n->m->loop, &n->upgraded_w);
    master_unobserve(n->m, &n->observer);
    free(n->status_line);
    free(n->socket);
    free(n);
}
