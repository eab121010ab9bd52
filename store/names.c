/* store/names.c — see names.h. */
#include "store/names.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>


#define NAMES_MAX (1u << 31)
/* Numbers per block of the number -> bytes map: blocks never move, only
 * the small array of blocks is copied when it grows. */
#define REC_BLOCK (1u << 14)
#define CHUNK (256u << 10)

struct store_names_slot {
    uint64_t h;             /* the string's hash: most strings that differ
                               are told apart without reading them, and a
                               table grows without hashing them again */
    uint32_t num1;          /* its number + 1; 0: empty */
};

struct store_names_chunk {
    struct store_names_chunk *next;
    size_t used, cap;
    uint8_t data[];
};

/* Slots of the old table moved into the new one per string added: the
 * old one is empty before the new one is half full (it was half full
 * and is half the size), so growing never moves a whole table in one
 * call. */
#define MOVE_PER_ADD 8

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

static const uint8_t *rec_of(const store_names *t, uint32_t num)
{
    return t->rec[num / REC_BLOCK][num % REC_BLOCK];
}

static bool same(const store_names *t, uint32_t num, const void *p, uint32_t len)
{
    uint32_t l;
    const uint8_t *r = rec_of(t, num);
    memcpy(&l, r, sizeof l);
    return l == len && (!len || memcmp(r + sizeof l, p, len) == 0);
}

/* The slot of the string in one table: its entry, or the empty slot where
 * it would go. */
static struct store_names_slot *probe(const store_names *t, struct store_names_slot *slot,
                                      size_t cap, const void *p, uint32_t len, uint64_t h)
{
    size_t mask = cap - 1, i = (size_t)(h >> 32) & mask;
    for (;; i = (i + 1) & mask) {
        struct store_names_slot *s = &slot[i];
        if (!s->num1 || (s->h == h && same(t, s->num1 - 1, p, len)))
            return s;
    }
}

static struct store_names_slot *probe_h(struct store_names_slot *slot, size_t cap, uint64_t h)
{
    size_t mask = cap - 1, i = (size_t)(h >> 32) & mask;
    while (slot[i].num1)
        i = (i + 1) & mask;
    return &slot[i];
}

/* Move up to k slots of the old table into the new one. */
static void move_old(store_names *t, size_t k)
{
    for (; t->old && k; k--) {
        const struct store_names_slot *o = &t->old[t->moved++];
        if (o->num1)
            *probe_h(t->slot, t->cap, o->h) = *o;
        if (t->moved == t->oldcap) {
            t->bytes -= t->oldcap * sizeof *t->old;
            free(t->old);
            t->old = NULL;
            t->oldcap = t->moved = 0;
        }
    }
}

/* A new table twice the size; the current one becomes the old one, whose
 * slots move a few at a time (an entry is found in either meanwhile). */
static int grow_slots(store_names *t)
{
    move_old(t, SIZE_MAX);      /* cannot be needed: MOVE_PER_ADD */
    size_t cap = t->cap ? t->cap * 2 : 1024;
    struct store_names_slot *ns = calloc(cap, sizeof *ns);
    if (!ns)
        return -ENOMEM;
    t->bytes += cap * sizeof *ns;
    t->old = t->slot;
    t->oldcap = t->cap;
    t->moved = 0;
    t->slot = ns;
    t->cap = cap;
    return 0;
}

size_t store_names_cost(const store_names *t, size_t len)
{
    size_t c = sizeof(uint32_t) + len + 8;
    if (t->n % REC_BLOCK == 0)
        c += REC_BLOCK * sizeof **t->rec + sizeof *t->rec;
    if ((t->n + 1) * 2 > t->cap)
        c += (t->cap ? t->cap * 2 : 1024) * sizeof *t->slot;
    if (!t->chunk || t->chunk->cap - t->chunk->used < len + sizeof(uint32_t))
        c += CHUNK > len + sizeof(uint32_t) ? CHUNK : len + sizeof(uint32_t);
    return c;
}

int store_names_find(store_names *t, const void *p, size_t len, bool add, uint32_t *num)
{
    if (len > UINT32_MAX)
        return add ? -E2BIG : -ENOENT;
    uint64_t h = store_names_hash(p, len);
    struct store_names_slot *s = t->cap ? probe(t, t->slot, t->cap, p, (uint32_t)len, h) : NULL;
    if (!(s && s->num1) && t->old) {
        const struct store_names_slot *o = probe(t, t->old, t->oldcap, p, (uint32_t)len, h);
        if (o->num1)
            s = (struct store_names_slot *)o;
    }
    if (s && s->num1) {
        *num = s->num1 - 1;
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
        s = probe(t, t->slot, t->cap, p, (uint32_t)len, h);
    }
    if (t->n % REC_BLOCK == 0) {
        size_t b = t->n / REC_BLOCK;
        if (b == t->caprec) {
            size_t c = t->caprec ? t->caprec * 2 : 16;
            const uint8_t ***r = realloc(t->rec, c * sizeof *r);
            if (!r)
                return -ENOMEM;
            t->bytes += (c - t->caprec) * sizeof *r;
            t->rec = r;
            t->caprec = c;
        }
        if (!(t->rec[b] = malloc(REC_BLOCK * sizeof **t->rec)))
            return -ENOMEM;
        t->bytes += REC_BLOCK * sizeof **t->rec;
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
    t->rec[t->n / REC_BLOCK][t->n % REC_BLOCK] = rec;
    *s = (struct store_names_slot){ .h = h, .num1 = (uint32_t)t->n + 1 };
    *num = (uint32_t)t->n++;
    move_old(t, MOVE_PER_ADD);
    return 0;
}

bool store_names_get(const store_names *t, uint32_t num, const uint8_t **p, size_t *len)
{
    if (num >= t->n)
        return false;
    uint32_t l;
    const uint8_t *r = rec_of(t, num);
    memcpy(&l, r, sizeof l);
    *p = r + sizeof l;
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
    free(t->old);
    for (size_t b = 0; b * REC_BLOCK < t->n; b++)
        free(t->rec[b]);
    free(t->rec);
    memset(t, 0, sizeof *t);
}
