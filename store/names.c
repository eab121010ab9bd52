/* store/names.c — see names.h. */
#include "store/names.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>


#define NAMES_MAX (1u << 31)
#define CHUNK (256u << 10)

struct store_names_slot {
    const uint8_t *rec;     /* NULL: empty */
    uint32_t h;             /* low bits of the hash: most strings that
                               differ are told apart without reading rec */
    uint32_t num;
};

struct store_names_chunk {
    struct store_names_chunk *next;
    size_t used, cap;
    uint8_t data[];
};

uint64_t store_names_hash(const void *p0, size_t n)
{
    const uint8_t *p = p0;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ n, v;
    for (; n >= 8; p += 8, n -= 8) {
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    v = 0;
    if (n)
        memcpy(&v, p, n);
    h = (h ^ v) * 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 29);
}

static struct store_names_slot *probe(struct store_names_slot *slot, size_t cap,
                                      const void *p, uint32_t len, uint64_t h)
{
    size_t mask = cap - 1, i = (size_t)(h >> 32) & mask;
    for (;; i = (i + 1) & mask) {
        struct store_names_slot *s = &slot[i];
        if (!s->rec)
            return s;
        uint32_t l;
        if (s->h != (uint32_t)h)
            continue;
        memcpy(&l, s->rec, sizeof l);
        if (l == len && (!len || memcmp(s->rec + sizeof l, p, len) == 0))
            return s;
    }
}

static int grow_slots(store_names *t)
{
    size_t cap = t->cap ? t->cap * 2 : 1024;
    struct store_names_slot *ns = calloc(cap, sizeof *ns);
    if (!ns)
        return -ENOMEM;
    for (size_t i = 0; i < t->cap; i++) {
        const struct store_names_slot *o = &t->slot[i];
        if (!o->rec)
            continue;
        uint32_t l;
        memcpy(&l, o->rec, sizeof l);
        *probe(ns, cap, o->rec + sizeof l, l, store_names_hash(o->rec + sizeof l, l)) = *o;
    }
    t->bytes += (cap - t->cap) * sizeof *ns;
    free(t->slot);
    t->slot = ns;
    t->cap = cap;
    return 0;
}

size_t store_names_cost(const store_names *t, size_t len)
{
    size_t c = sizeof(uint32_t) + len + 8 + sizeof *t->rec;
    if ((t->n + 1) * 2 > t->cap)
        c += (t->cap ? t->cap : 1024) * sizeof *t->slot;
    if (!t->chunk || t->chunk->cap - t->chunk->used < len + sizeof(uint32_t))
        c += CHUNK > len + sizeof(uint32_t) ? CHUNK : len + sizeof(uint32_t);
    return c;
}

int store_names_find(store_names *t, const void *p, size_t len, bool add, uint32_t *num)
{
    if (len > UINT32_MAX)
        return add ? -E2BIG : -ENOENT;
    uint64_t h = store_names_hash(p, len);
    struct store_names_slot *s = t->cap ? probe(t->slot, t->cap, p, (uint32_t)len, h) : NULL;
    if (s && s->rec) {
        *num = s->num;
        return 0;
    }
    if (!add)
        return -ENOENT;
    if (t->n >= NAMES_MAX)
        return -E2BIG;
    int rc;
    if ((t->n + 1) * 2 > t->cap) {
        if ((rc = grow_slots(t)) < 0)
            return rc;
        s = probe(t->slot, t->cap, p, (uint32_t)len, h);
    }
    if (t->n == t->caprec) {
        size_t c = t->caprec ? t->caprec * 2 : 1024;
        const uint8_t **r = realloc(t->rec, c * sizeof *r);
        if (!r)
            return -ENOMEM;
        t->bytes += (c - t->caprec) * sizeof *r;
        t->rec = r;
        t->caprec = c;
    }
    size_t need = sizeof(uint32_t) + len;
    struct store_names_chunk *ch = t->chunk;
    if (!ch || ch->cap - ch->used < need) {
        size_t cap = need > CHUNK ? need : CHUNK;
        if (!(ch = malloc(sizeof *ch + cap)))
            return -ENOMEM;
        ch->used = 0;
        ch->cap = cap;
        ch->next = t->chunk;
        t->chunk = ch;
        t->bytes += sizeof *ch + cap;
    }
    uint8_t *rec = ch->data + ch->used;
    uint32_t l = (uint32_t)len;
    memcpy(rec, &l, sizeof l);
    if (len)
        memcpy(rec + sizeof l, p, len);
    ch->used += (need + 3) & ~(size_t)3;    /* the next length aligned */
    if (ch->used > ch->cap)
        ch->used = ch->cap;
    *s = (struct store_names_slot){ .rec = rec, .h = (uint32_t)h, .num = (uint32_t)t->n };
    t->rec[t->n] = rec;
    *num = (uint32_t)t->n++;
    return 0;
}

bool store_names_get(const store_names *t, uint32_t num, const uint8_t **p, size_t *len)
{
    if (num >= t->n)
        return false;
    uint32_t l;
    memcpy(&l, t->rec[num], sizeof l);
    *p = t->rec[num] + sizeof l;
    *len = l;
    return true;
}

void store_names_free(store_names *t)
{
    while (t->chunk) {
        struct store_names_chunk *ch = t->chunk;
        t->chunk = ch->next;
        free(ch);
    }
    free(t->slot);
    free(t->rec);
    memset(t, 0, sizeof *t);
}
