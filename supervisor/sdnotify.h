/*
 * sdnotify: drover as a service of systemd (SPEC section 9). With NOTIFY_SOCKET in drover's own
 * environment it tells systemd READY=1 once every app has its workers ready, RELOADING=1 ...
 * READY=1 around a reload, STOPPING=1 at shutdown, a STATUS= line whenever it changes, and
 * WATCHDOG=1 at half of WATCHDOG_USEC from the loop (a hung loop misses it, as it should).
 *
 * It observes the master (struct master_observer) and is never called by it. Opened before any
 * app exists, it takes NOTIFY_SOCKET and WATCHDOG_* out of the environment, so no worker ever
 * inherits what is drover's own.
 */
#pragma once

struct master;
struct sdnotify;

/* Starts observing m. Without NOTIFY_SOCKET it only cleans the environment. Returns 0 or
 * -ENOMEM. */
int sdnotify_open(struct master *m, struct sdnotify **ret);

/* Stops observing and frees. Safe on NULL. */
void sdnotify_close(struct sdnotify *n);

/* Upgrade in place (SPEC section 12): systemd's socket and watchdog for the next image (the
 * environment no longer has them), and RELOADING=1; the next image sends READY=1. */
struct handover;
int sdnotify_save(struct sdnotify *n, struct handover *h);
