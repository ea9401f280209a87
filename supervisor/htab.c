/*
 * htab: a small intrusive hash table keyed by bytes. See htab.h.
 */
#include "htab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

uint64_t htab_hash(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h ^ (h >> 29);
}

struct hnode *htab_find(const struct htab *t, const char *key, size_t len, uint64_t hash)
{
    if (t->n_slots == 0) {
        return NULL;
    }
    for (struct hnode *n = t->slots[hash & (t->n_slots - 1)]; n; n = n->hnext) {
        if (n->hash == hash && n->key_len == len && memcmp(n->key, key, len) == 0) {
            return n;
        }
    }
    return NULL;
}

int htab_add(struct htab *t, struct hnode *node)
{
    if (t->n >= t->n_slots) {
        size_t n_slots = t->n_slots ? t->n_slots * 2 : 64;
        struct hnode **slots = calloc(n_slots, sizeof *slots);
        if (!slots) {
            return -ENOMEM;
        }
        for (size_t i = 0; i < t->n_slots; i++) {
            struct hnode *next;
            for (struct hnode *n = t->slots[i]; n; n = next) {
                next = n->hnext;
                n->hnext = slots[n->hash & (n_slots - 1)];
                slots[n->hash & (n_slots - 1)] = n;
            }
        }
        free(t->slots);
        t->slots = slots;
        t->n_slots = n_slots;
    }
    struct hnode **head = &t->slots[node->hash & (t->n_slots - 1)];
    node->hnext = *head;
    *head = node;
    t->n++;
    return 0;
}

void htab_del(struct htab *t, struct hnode *node)
{
    for (struct hnode **p = &t->slots[node->hash & (t->n_slots - 1)]; *p; p = &(*p)->hnext) {
        if (*p == node) {
            *p = node->hnext;
            t->n--;
            return;
        }
    }
}

void htab_done(struct htab *t)
{
    free(t->slots);
    t->slots = NULL;
    t->n_slots = t->n = 0;
}
