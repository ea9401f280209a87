/*
 * hooks: the [hook:NAME] sections (SPEC section 11): each one follows the events of the types
 * it names and, for each, runs a command with the event JSON on stdin (exec) or POSTs it to a
 * URL (url), on the master's loop and never blocking it.
 *
 * Containment is the point: a hook that hangs is killed at its timeout, one that floods its
 * output is cut off after a bounded number of lines, one that points at a dead address fails
 * after its retries; none of it can slow the loop or grow the master. Each hook runs one thing
 * at a time from a bounded queue (HOOKS_QUEUE_MAX events); what does not fit is dropped and
 * counted. An exec hook leads its own process group; its stdin is a pipe holding the event, its
 * stdout and stderr go into drover's log under the hook's name, and like every child of drover
 * it inherits no descriptor but those three (no listening socket). A url hook uses libcurl's
 * multi interface on the loop, retrying with a doubling delay.
 *
 * The hooks follow the config: a reload that changes them takes effect for the next events,
 * and what a hook counted survives it (by name).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct master;
struct hooks;

#define HOOKS_QUEUE_MAX 64
/* Lines of one exec run's output that reach the log; the rest is read and dropped. */
#define HOOKS_OUTPUT_LINES_MAX 50

/* Opens the hooks of m->cfg and follows the events. Logs its failure. Returns 0 or -errno. */
int hooks_open(struct master *m, struct hooks **ret);

/* Kills what runs, aborts what is in flight, frees. Safe on NULL. */
void hooks_close(struct hooks *h);

/* What the hooks counted over the master's life, for /metrics: each hook by name, its runs by
 * result ("ok", "failed", "timeout") and the events it dropped. */
struct hooks_stat {
    const char *name;
    uint64_t ok, failed, timeout, dropped;
};
size_t hooks_stats(const struct hooks_stat **ret);

/* Upgrade in place (SPEC section 12): the counters above, for the next image (hook runs queued
 * or under way are not handed over). Returns 0 or -ENOMEM. */
struct handover;
int hooks_save(struct hooks *h, struct handover *ho);
