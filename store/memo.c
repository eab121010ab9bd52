/* store/memo.c — values derived from a message's immutable content,
 * remembered per generation in this process.
 *
 * SORT (DATE) needs every message's sent date: the Date header, read from
 * the message's cache blob and parsed.  The blobs of a big mailbox lie all
 * over the cache file, so that read is a few cache misses per message, most
 * of a SORT's time, and a webmail client sends the same SORT on every view
 * of the folder.  THREAD needs every message's Message-ID and references
 * and its base subject: reading and normalizing them is most of its time,
 * and it is the same work for every set of messages a THREAD is asked
 * about.  The derived value never changes for an entry of a generation
 * (its blob is immutable, as seen.c explains), so the first SORT or THREAD
 * stores it here by entry position and later ones read one array.  Only
 * the store's readers fill it, with what the caller derived (the store
 * parses no dates nor subjects: core/search does); a value that two
 * threads compute at once is the same value.
 *
 * One array per kind (STORE_MEMO_*).  A date is the array's value itself;
 * bytes are copied into the generation's arena (chunks that never move)
 * and the array holds a pointer to their length and bytes.
 *
 * Memory: 8 bytes per entry of each generation and kind used in this
 * process, and the bytes (some 100 per message for THREAD's), freed with
 * the generation (when no session has the mailbox open, or after
 * compaction).  Bytes stop being remembered once the process's arenas
 * hold MEMO_BUDGET: the values are then derived each time, as before.  The
 * arrays grow by doubling under g->memolock; readers take no lock, and an
 * old array stays until the generation is freed (a reader may hold it).  A
 * value stored in the old array while the new one is being copied may be
 * lost: it is derived again next time. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/internal.h"

/* "Not known yet": no date a message can have (sort dates are seconds of
 * years 1..9999 and internal dates), and no pointer.  Values are kept
 * XORed with it, so that "not known" is 0 and a new array comes zeroed
 * from calloc: its pages are mapped as they are first written, instead
 * of all at once by a loop on the caller's thread. */
#define MEMO_NONE INT64_MIN
#define MEMO_ENC(v) ((int64_t)((uint64_t)(v) ^ (uint64_t)MEMO_NONE))
#define MEMO_CHUNK (1u << 20)
/* Bytes all generations' arenas and numbers of this process may hold. */
static _Atomic uint64_t memo_budget = (uint64_t)512 << 20;

struct store_memo {
    uint64_t n;
    struct store_memo *older;
    _Atomic int64_t v[];
};

struct store_memo_chunk {
    struct store_memo_chunk *next;
    size_t used, cap;
    uint8_t data[];
};

static _Atomic uint64_t arena_bytes;

/* The array grows to hold pos; a first one holds every entry of the
 * caller's snapshot at once (count), so that filling a big mailbox does
 * not copy the array again and again. */
static struct store_memo *memo_grow(struct gen *g, unsigned kind, uint32_t pos, uint32_t count)
{
    pthread_mutex_lock(&g->memolock);
    struct store_memo *old = atomic_load(&g->memo[kind]);
    if (old && pos < old->n) {
        pthread_mutex_unlock(&g->memolock);
        return old;
    }
    uint64_t n = old ? old->n * 2 : 1024;
    while (n <= pos || (!old && n < count))
        n *= 2;
    struct store_memo *m = calloc(1, sizeof *m + n * sizeof m->v[0]);
    if (m) {
        m->n = n;
        for (uint64_t i = 0; old && i < old->n; i++)
            atomic_init(&m->v[i], atomic_load_explicit(&old->v[i], memory_order_relaxed));
        m->older = old;
        atomic_store_explicit(&g->memo[kind], m, memory_order_release);
    }
    pthread_mutex_unlock(&g->memolock);
    return m;
}

static bool get(const store_cursor *c, unsigned kind, int64_t *v)
{
    RM_ASSERT(kind < STORE_MEMO_KINDS);
    struct gen *g = c->snap->g;
    struct store_memo *m = atomic_load_explicit(&g->memo[kind], memory_order_acquire);
    if (!m || c->pos >= c->count_ || c->pos >= m->n)
        return false;
    int64_t x = atomic_load_explicit(&m->v[c->pos], memory_order_acquire);
    if (x == 0)
        return false;
    *v = MEMO_ENC(x);
    return true;
}

static void put(const store_cursor *c, unsigned kind, int64_t v)
{
    struct gen *g = c->snap->g;
    if (c->pos >= c->count_ || v == MEMO_NONE)
        return;
    struct store_memo *m = atomic_load_explicit(&g->memo[kind], memory_order_acquire);
    if (!m || c->pos >= m->n)
        m = memo_grow(g, kind, c->pos, c->count_);
    if (m && c->pos < m->n)     /* no memory: derived again next time */
        atomic_store_explicit(&m->v[c->pos], MEMO_ENC(v), memory_order_release);
}

bool store_cursor_memo_get(const store_cursor *c, int64_t *v)
{
    return get(c, STORE_MEMO_DATE, v);
}

void store_cursor_memo_put(const store_cursor *c, int64_t v)
{
    put(c, STORE_MEMO_DATE, v);
}

bool store_cursor_memo_bytes(const store_cursor *c, unsigned kind, const uint8_t **p,
                             size_t *len)
{
    RM_ASSERT(kind != STORE_MEMO_DATE);
    int64_t v;
    if (!get(c, kind, &v))
        return false;
    const uint8_t *rec = (const uint8_t *)(uintptr_t)v;
    uint32_t l;
    memcpy(&l, rec, sizeof l);
    *p = rec + sizeof l;
    *len = l;
    return true;
}

/* Room for n bytes in g's arena, under g->memolock; NULL when out of
 * memory or budget. */
static uint8_t *arena_alloc(struct gen *g, size_t n)
{
    struct store_memo_chunk *ch = g->memo_arena;
    if (!ch || ch->cap - ch->used < n) {
        size_t cap = n > MEMO_CHUNK ? n : MEMO_CHUNK;
        if (atomic_fetch_add(&arena_bytes, cap) + cap > atomic_load(&memo_budget)) {
            atomic_fetch_sub(&arena_bytes, cap);
            return NULL;
        }
        if (!(ch = malloc(sizeof *ch + cap))) {
            atomic_fetch_sub(&arena_bytes, cap);
            return NULL;
        }
        ch->used = 0;
        ch->cap = cap;
        ch->next = g->memo_arena;
        g->memo_arena = ch;
    }
    uint8_t *p = ch->data + ch->used;
    ch->used += (n + 7) & ~(size_t)7;       /* the next record aligned */
    if (ch->used > ch->cap)
        ch->used = ch->cap;
    return p;
}

void store_cursor_memo_put_bytes(const store_cursor *c, unsigned kind, const void *p,
                                 size_t len)
{
    RM_ASSERT(kind != STORE_MEMO_DATE && kind < STORE_MEMO_KINDS);
    int64_t v;
    if (len > STORE_MEMO_MAX_BYTES || c->pos >= c->count_ || get(c, kind, &v))
        return;
    struct gen *g = c->snap->g;
    pthread_mutex_lock(&g->memolock);
    uint32_t l = (uint32_t)len;
    uint8_t *rec = arena_alloc(g, sizeof l + len);
    if (rec) {
        memcpy(rec, &l, sizeof l);
        if (len)
            memcpy(rec + sizeof l, p, len);
    }
    pthread_mutex_unlock(&g->memolock);
    if (rec)    /* published with release: a reader sees the bytes */
        put(c, kind, (int64_t)(uintptr_t)rec);
}

/* The numbers live in g->memo_names, under g->memolock, within the
 * process's budget like the arenas: once it is spent, strings numbered
 * before are still found, new ones get -ENOSPC and the caller numbers them
 * itself. */
int store_cursor_memo_name(const store_cursor *c, const void *p, size_t len, uint32_t *num)
{
    struct gen *g = c->snap->g;
    pthread_mutex_lock(&g->memolock);
    int rc = store_names_find(&g->memo_names, p, len, false, num);
    if (rc == -ENOENT) {
        size_t cost = store_names_cost(&g->memo_names, len), before = g->memo_names.bytes;
        if (atomic_fetch_add(&arena_bytes, cost) + cost > atomic_load(&memo_budget)) {
            rc = -ENOSPC;
        } else {
            rc = store_names_find(&g->memo_names, p, len, true, num);
            if (rc == -E2BIG)
                rc = -ENOSPC;
        }
        /* what it really cost (at most `cost`) stays counted */
        atomic_fetch_sub(&arena_bytes, cost - (g->memo_names.bytes - before));
    }
    pthread_mutex_unlock(&g->memolock);
    return rc;
}

bool store_cursor_memo_named(const store_cursor *c, uint32_t num, const uint8_t **p,
                             size_t *len)
{
    struct gen *g = c->snap->g;
    pthread_mutex_lock(&g->memolock);
    bool ok = store_names_get(&g->memo_names, num, p, len);
    pthread_mutex_unlock(&g->memolock);
    return ok;
}

void store_memo_set_budget(uint64_t bytes)
{
    atomic_store(&memo_budget, bytes);
}

void store_memo_free(struct gen *g)
{
    atomic_fetch_sub(&arena_bytes, g->memo_names.bytes);
    store_names_free(&g->memo_names);
    for (unsigned k = 0; k < STORE_MEMO_KINDS; k++) {
        struct store_memo *m = atomic_load(&g->memo[k]);
        while (m) {
            struct store_memo *o = m->older;
            free(m);
            m = o;
        }
        atomic_store(&g->memo[k], NULL);
    }
    while (g->memo_arena) {
        struct store_memo_chunk *ch = g->memo_arena;
        g->memo_arena = ch->next;
        atomic_fetch_sub(&arena_bytes, ch->cap);
        free(ch);
    }
}
