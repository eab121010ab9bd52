/* store/seen.c — the cache blobs of a generation this process has validated.
 *
 * store_cache_open checks a blob completely (its CRC, every count, string
 * reference and tree link) because the accessors must stay in bounds even on
 * a damaged or hostile file.  A header listing reads the blob of every
 * message, often many times over (each client's FETCH, each device), so that
 * check is paid once per blob per generation per process: the first read
 * validates the bytes and sets the entry's bit here, later reads take the
 * blob as validated (store_cache_reopen, O(1) header checks only).  This is
 * sound because a published entry's cache blob never changes within a
 * generation (the cache file is append-only, an entry's cache_off is
 * immutable, and a repair or compaction writes a new generation, which
 * starts with an empty set).  Damage is still caught: by the first read in
 * every process, and by `ringmail-admin check`.
 *
 * The set is a bitmap by entry position, grown by doubling.  Readers take no
 * lock; a bigger map replaces a smaller one under g->seenlock, and the old
 * one stays until the generation is freed (a reader may hold it).  A bit set
 * in the old map while the new one is being copied may be lost: that only
 * costs one more validation of that blob. */
#include <errno.h>
#include <stdlib.h>

#include "store/internal.h"

struct store_seen {
    uint64_t nbits;
    struct store_seen *older;
    _Atomic uint64_t words[];
};

bool store_seen_test(struct gen *g, uint32_t pos)
{
    struct store_seen *m = atomic_load_explicit(&g->seen, memory_order_acquire);
    return m && pos < m->nbits &&
           (atomic_load_explicit(&m->words[pos / 64], memory_order_relaxed) >> (pos % 64) & 1);
}

static struct store_seen *seen_grow(struct gen *g, uint32_t pos)
{
    pthread_mutex_lock(&g->seenlock);
    struct store_seen *old = atomic_load(&g->seen);
    if (old && pos < old->nbits) {
        pthread_mutex_unlock(&g->seenlock);
        return old;
    }
    uint64_t nbits = old ? (uint64_t)old->nbits * 2 : 1024;
    while (nbits <= pos)
        nbits *= 2;
    if (nbits > (uint64_t)UINT32_MAX + 1)
        nbits = (uint64_t)UINT32_MAX + 1;
    size_t nwords = (size_t)(nbits / 64);
    struct store_seen *m = calloc(1, sizeof *m + nwords * sizeof m->words[0]);
    if (m) {
        m->nbits = nbits;
        for (size_t i = 0; old && i < old->nbits / 64; i++)
            atomic_init(&m->words[i], atomic_load_explicit(&old->words[i], memory_order_relaxed));
        m->older = old;
        atomic_store_explicit(&g->seen, m, memory_order_release);
    }
    pthread_mutex_unlock(&g->seenlock);
    return m;
}

void store_seen_mark(struct gen *g, uint32_t pos)
{
    struct store_seen *m = atomic_load_explicit(&g->seen, memory_order_acquire);
    if (!m || pos >= m->nbits)
        m = seen_grow(g, pos);
    if (m && pos < m->nbits)    /* no memory: the blob is validated again next time */
        atomic_fetch_or_explicit(&m->words[pos / 64], (uint64_t)1 << (pos % 64),
                                 memory_order_relaxed);
}

void store_seen_free(struct gen *g)
{
    struct store_seen *m = atomic_load(&g->seen);
    while (m) {
        struct store_seen *o = m->older;
        free(m);
        m = o;
    }
    atomic_store(&g->seen, NULL);
}
