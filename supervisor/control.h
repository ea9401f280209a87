/*
 * control: the control socket (SPEC section 7): a Unix stream socket, mode 0600, answering one
 * JSON request per line with one JSON reply per line, for droverctl.
 *
 * Every client is a non-blocking connection on the master's loop with bounded input (a request
 * over 64 KiB is refused) and bounded output; a client that never speaks, sends half a line or
 * never reads its replies blocks nobody. Only the same uid or root may talk, checked with
 * SO_PEERCRED on every connection whatever the file's mode. Commands that take time (scale,
 * start, stop, reload, restart) park the client until their answer comes, always from a later
 * loop turn (intent.h, reload.h, reconfig.h).
 */
#pragma once

struct master;
struct app;
struct control;

/*
 * Creates the socket at m->cfg->control_socket (its parent directory 0700 if drover creates
 * it). A stale socket file is replaced; a live one means another drover runs there: -EADDRINUSE.
 * Logs the failure naming the path. Returns 0 or -errno.
 */
int control_open(struct master *m, struct control **ret);

/* Upgrade in place (SPEC section 12): the socket and the asker's connection, for the next
 * image, which answers that asker. Returns 0 or -ENOMEM. */
struct handover;
int control_save(struct control *c, struct handover *h);

/* Closes every client and the socket, and removes the socket file. Safe on NULL. */
void control_close(struct control *c);

/* Something about app changed: an app a reload removed and that has stopped is no longer
 * followed by `logs -f` clients. Safe on NULL. */
void control_on_app_changed(struct control *c, struct app *app);
