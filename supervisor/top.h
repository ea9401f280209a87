/*
 * top: `droverctl top`, a live terminal view of a running drover (SPEC section 2, like
 * `pm2 monit` or htop): every app's workers with state, pid, generation, uptime, restarts,
 * last exit, memory, CPU and accept queue, the latest lifecycle events below, refreshed about
 * once a second and fitted to the terminal's size.
 *
 * Principle: the terminal is borrowed and always given back. The view draws with plain
 * VT100/ANSI escapes (alternate screen, hidden cursor, no autowrap), so it works over ssh and
 * in tmux without a terminal database or a TUI library; and every way out (q, Ctrl-C,
 * SIGTERM, SIGHUP, Ctrl-Z, and a crash) restores the saved termios and the normal screen. The
 * words of each row are ctlview's, the same as `droverctl status` and `events` print.
 *
 * When drover goes away while the view runs, the view says so in its top line, keeps the last
 * table it had, and retries every refresh, as a monitor left open on a second screen should:
 * drover coming back (a restart, an upgrade) shows up by itself. Only the first refresh must
 * succeed: a wrong socket path fails at once.
 */
#ifndef DROVER_TOP_H
#define DROVER_TOP_H

#include <stdbool.h>

struct top_options {
    const char *socket; /* the control socket's path; borrowed */
    double interval;    /* seconds between refreshes, > 0 */
    bool once;          /* one frame, printed as plain lines, no screen switching */
    bool color;         /* colour escapes in the frame */
};

/*
 * Runs the view until the user quits, or prints one frame with opt->once. Reports its own
 * failures on stderr. Returns 0 (quit, or the frame printed), -ENOTTY when the live view has
 * no terminal on stdout, or the -errno of the first exchange with drover that failed (no
 * drover answers at the socket: droverctl's exit 3).
 */
int top_run(const struct top_options *opt);

#endif
