/*
 * upgrade: `droverctl upgrade [--binary PATH]` and SIGUSR2 (SPEC section 12): the master's
 * program replaced under the same pid, every worker left running.
 *
 * An upgrade is tried in two steps, neither of which touches what runs. First the candidate is
 * asked, as a child on the loop, whether it is a drover that can take over and whether it
 * accepts the config file as it is now (`BINARY --handover-probe ARGS...`, bounded in time): a
 * program that does not exist, exits at once, or refuses the config stops the upgrade here.
 * Then, once the supervisor is quiet (no reload, no phase run, no worker leaving), its state is
 * written (handover.h) and the candidate executed. Should the candidate still fail to take the
 * state, it executes this image again with it; the asker's connection travels along and is
 * answered by whichever image ends up running.
 *
 * A master part: it keeps drover_upgrades_total{result} across upgrades and records the
 * upgrade event in the image that comes up.
 */
#pragma once

#include <jansson.h>
#include <stdint.h>

struct master;
struct upgrade;
struct handover;

/* How an upgrade ended, for drover_upgrades_total{result}. */
enum upgrade_result {
    UPGRADE_DONE,           /* the new image runs */
    UPGRADE_ROLLED_BACK,    /* the candidate failed: this image runs on */
    UPGRADE_REFUSED,        /* not tried: busy, shutting down, an invalid config */
    UPGRADE__COUNT,
};

/* The answer for the asker, borrowed for the call; from a loop callback, never from inside
 * upgrade_request(). */
typedef void (*upgrade_answer_fn)(void *asker, json_t *reply);

int upgrade_open(struct master *m, struct upgrade **ret);
void upgrade_close(struct upgrade *u);
int upgrade_save(struct upgrade *u, struct handover *h);

/*
 * Begins an upgrade to binary (NULL: the path drover was started from). A refusal that needs no
 * look at the candidate (one in progress, shutting down) returns -EBUSY with the reason in
 * *ret_why (malloc'd); otherwise returns 0 and answer is called later, unless the upgrade
 * succeeds, when the next image answers the asker's connection itself. answer may be NULL
 * (SIGUSR2: the outcome is logged).
 */
int upgrade_request(struct master *m, const char *binary, upgrade_answer_fn answer, void *asker,
                    char **ret_why);

/* How this image came up from an upgrade (upgrade_open() found it in the handed-over state):
 * from: the previous version ("?" when not known); took_ms: since the command; given_back: why
 * the next image gave the state back, NULL on a forward upgrade. */
struct upgrade_outcome {
    const char *from;
    double took_ms;
    const char *given_back;
};
void upgrade_outcome(struct upgrade_outcome *ret);

/* The asker is going: nobody is left to answer. */
void upgrade_forget(void *asker);

/* For the metrics page. */
uint64_t upgrade_count(enum upgrade_result result);
const char *upgrade_result_to_string(enum upgrade_result result);
