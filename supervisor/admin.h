/*
 * admin: the HTTP endpoint on admin_listen (SPEC section 6): /metrics, /metrics/json, /health,
 * /health/live, /health/ready, /health/detailed. Served by libmicrohttpd driven from the master's
 * libev loop, so a scrape never blocks the master and never waits on a worker.
 */
#pragma once

struct master;
struct admin;

#include <stddef.h>

/* Binds admin_listen (nothing when it is "off"). Logs a failed bind naming the address and
 * errno. Returns 0 or -errno. */
int admin_open(struct master *m, struct admin **ret);
void admin_close(struct admin *a);
/* Upgrade in place (SPEC section 12): the listening socket, for the next image. */
struct handover;
int admin_save(struct admin *a, struct handover *h);

/*
 * Renders the combined page as served on /metrics ("text", Prometheus 0.0.4) or /metrics/json
 * ("json"), from the latest snapshots; never waits on a worker. Stores a malloc'd body and its
 * length. Returns 0, -EINVAL for an unknown format, or -ENOMEM.
 */
int admin_render_metrics(struct master *m, const char *format, char **ret_body, size_t *ret_len);
