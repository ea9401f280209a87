/*
 * handover: the state one drover image hands to the next across execve, for an upgrade in
 * place (SPEC section 12).
 *
 * The old image writes one JSON document (apps, slots, workers, metric totals, events, the
 * control client that asked) into a memfd behind a header line that carries the format version,
 * the length and a checksum. Every descriptor the next image must keep is named by number in
 * the document, and those are the only ones left without close-on-exec at the exec. The next
 * image reads the document before it builds anything, takes each descriptor it has a use for
 * (close-on-exec again), and closes what nobody took.
 *
 * When the next image cannot take the state (another format, a bad checksum, an address it
 * cannot bind), it executes the previous image again with the same document and descriptors,
 * saying why in the environment: the previous image's file was opened when it started, so a
 * package manager replacing it on disk does not matter. An image that receives a state given
 * back in this way never gives it back again.
 *
 * One per process, like the log: what arrived is kept in static state.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>

struct handover;

/* Before anything else in main(): keeps argv (an upgrade executes the new image with it) and a
 * handle on the running binary, for a rollback to it. Returns 0 or -errno. */
int handover_init(char **argv);

/* The binary `upgrade` executes by default: this one's path when drover first started (the
 * package manager's file), carried across upgrades. */
const char *handover_default_binary(void);

/* ---- writing: the old image ---- */

int handover_new(struct handover **ret);

/* The document; callers add their sections to it. */
json_t *handover_doc(struct handover *h);

/* A JSON number naming fd, which the next image will have open under that number. NULL when
 * out of memory. */
json_t *handover_fd(struct handover *h, int fd);

/*
 * Executes path (the running binary's own handle when NULL) with the state, the original argv
 * and this environment. Returns only on failure: -errno, every descriptor close-on-exec again,
 * so the caller carries on as before.
 */
int handover_exec(struct handover *h, const char *path);

void handover_free(struct handover *h);

/* ---- reading: the new image ---- */

/*
 * Reads the state this image was started with, if any, and checks its header (format version,
 * length, checksum). Returns 1 with the state in *ret, 0 when drover was started afresh, or
 * -errno with the reason in why: the caller then gives the state back (handover_give_back).
 */
int handover_receive(struct handover **ret, char *why, size_t size);

/* The state received by this process, NULL when it started afresh (or once finished). */
struct handover *handover_incoming(void);

/* A member of the document, or NULL. */
json_t *handover_get(const struct handover *h, const char *key);

/* The descriptor v names (from handover_fd()), now close-on-exec and the caller's; -EBADF when
 * v names none or it was taken already. */
int handover_take(struct handover *h, const json_t *v);

/* Why the next image gave this state back: NULL on a forward upgrade. */
const char *handover_given_back(void);

/*
 * This image cannot go on with the state: executes the previous image with it again, why in
 * its environment. Returns only when that is impossible (no previous image, this one is the
 * rollback already, or the exec failed): -errno.
 */
int handover_give_back(struct handover *h, const char *why);

/* The new image is up: closes every descriptor nobody took and frees the state. */
void handover_finish(struct handover *h);

/* Bytes that need not be text (a partial output line), as a JSON string, and back: 0 with a
 * malloc'd copy (NULL and 0 for a missing v), or -EPROTO / -ENOMEM. */
json_t *handover_bytes(const char *p, size_t n);
int handover_bytes_get(const json_t *v, char **ret, size_t *ret_len);

/* The argv drover was started with (the candidate of an upgrade is probed with it). */
char **handover_argv(void);
