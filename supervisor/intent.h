/*
 * intent: an operator's command on one app (scale, start, stop APP) as an object with a life
 * of its own, between whoever asks (the control socket) and the app.
 *
 *     submitted --sweeper--> taken: the app's table judges it, the app is told
 *         |                    |--refused, failed, or already there--> answered
 *         |                    +--waiting: every app change looks again--> answered
 *         +--cancelled (the asker went): still taken, never answered
 *
 * The answer is the command's reply, an object {"ok":true,...} or {"ok":false,"error":...}
 * (SPEC section 7), handed to the asker's done callback. It always comes from a later loop
 * turn: from the sweeper, or from a change of the app, never from inside intent_submit(). A
 * command that has begun is carried out even when its asker goes away, as a signal would be.
 *
 * reload and restart need no intent of their own: a reload run (reload.h) and a reload request
 * (reconfig.h) are such objects already, with progress reports besides the result.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>

struct app;
struct master;
struct intent;
struct intents;

enum intent_kind { INTENT_SCALE, INTENT_START, INTENT_STOP };

struct intent_request {
    enum intent_kind kind;
    struct app *app;
    long long count;    /* scale: the slot count, or the change with relative */
    bool relative;
    bool automatic;     /* scale: back to autoscaling (workers = MIN..MAX) */
    const char *who;    /* for the log: "droverctl, uid 1000"; copied */
};

/* The reply, borrowed for the call. */
typedef void (*intent_done_fn)(json_t *reply, void *data);

/* As config's `workers`: a typo must not fork a million processes. */
#define INTENT_WORKERS_MAX 1024

/* The pending intents of one asker set, observing the master. Returns 0 or -ENOMEM. */
int intents_open(struct master *m, struct intents **ret);

/* Forgets every pending intent without an answer. Safe on NULL. */
void intents_close(struct intents *set);

/* Queues req; done(reply, data) comes from a later loop turn. Returns the intent, or NULL when
 * out of memory (done is then never called). */
struct intent *intent_submit(struct intents *set, const struct intent_request *req,
                             intent_done_fn done, void *data);

/* The asker is gone: the intent is never answered (and freed once carried out). */
void intent_cancel(struct intent *in);
