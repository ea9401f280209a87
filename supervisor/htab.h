/*
 * htab: a small intrusive hash table keyed by bytes, for stores that must not allocate per
 * lookup. The node lives inside the caller's object (first member, so a found node is the
 * object) and points at the object's own key bytes; the table only holds the chains. Chains
 * double when the table is full; nothing ever shrinks it but htab_done().
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct hnode {
    struct hnode *hnext;
    uint64_t hash;
    const char *key;
    size_t key_len;
};

struct htab {
    struct hnode **slots;
    size_t n_slots;     /* a power of two, or 0 */
    size_t n;
};

/* The hash of n bytes (FNV-1a, folded), as a node must carry it. */
uint64_t htab_hash(const char *s, size_t n);

/* The node with this key and hash, or NULL. */
struct hnode *htab_find(const struct htab *t, const char *key, size_t len, uint64_t hash);

/* Links node (hash, key and key_len set; the key not already in t). Returns 0 or -ENOMEM. */
int htab_add(struct htab *t, struct hnode *node);

/* Unlinks node, which must be in t. */
void htab_del(struct htab *t, struct hnode *node);

/* Frees the chains; an empty table (zeroed) is ready again. */
void htab_done(struct htab *t);
