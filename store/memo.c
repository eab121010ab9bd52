/* store/memo.c — values derived from a message's immutable content,
 * remembered per generation in this process.
 *
 * SORT (DATE) needs every message's sent date: the Date header, read from
 * the message's cache blob and parsed.  The blobs of a big mailbox lie all
 * over the cache file, so that read is a few cache misses per message, most
 * of a SORT's time, and a webmail client sends the same SORT on every view
 * of the folder.  The parsed value never changes for an entry of a
 * generation (its blob is immutable, as seen.c explains), so the first
 * SORT stores it here by entry position and later ones read one array.
 * Only the store's readers fill it, with what the caller derived (the
 * store does not parse dates: core/search does); a value that two threads
 * compute at once is the same value.
 *
 * Memory: 8 bytes per entry of each generation sorted by date in this
 * process, freed with the generation (when no session has the mailbox
 * open, or after compaction).  The array grows by doubling under
 * g->memolock; readers take no lock, and an old array stays until the
 * generation is freed (a reader may hold it).  A value stored in the old
 * array while the new one is being copied may be lost: it is derived again
 * next time. */
#include <errno.h>
#include <stdlib.h>

#include "store/internal.h"

/* "Not known yet": no date a message can have (sort dates are seconds of
 * years 1..9999 and internal dates). */
#define MEMO_NONE INT64_MIN

struct store_memo {
    uint64_t n;
    struct store_memo *older;
    _Atomic int64_t v[];
};

static struct store_memo *memo_grow(struct gen *g, uint32_t pos)
{
    pthread_mutex_lock(&g->memolock);
    struct store_memo *old = atomic_load(&g->memo);
    if (old && pos < old->n) {
        pthread_mutex_unlock(&g->memolock);
        return old;
    }
    uint64_t n = old ? old->n * 2 : 1024;
    while (n <= pos)
        n *= 2;
    struct store_memo *m = malloc(sizeof *m + n * sizeof m->v[0]);
    if (m) {
        m->n = n;
        uint64_t i = 0;
        for (; old && i < old->n; i++)
            atomic_init(&m->v[i], atomic_load_explicit(&old->v[i], memory_order_relaxed));
        for (; i < n; i++)
            atomic_init(&m->v[i], MEMO_NONE);
        m->older = old;
        atomic_store_explicit(&g->memo, m, memory_order_release);
    }
    pthread_mutex_unlock(&g->memolock);
    return m;
}

bool store_cursor_memo_get(const store_cursor *c, int64_t *v)
{
    struct gen *g = c->snap->g;
    struct store_memo *m = atomic_load_explicit(&g->memo, memory_order_acquire);
    if (!m || c->pos >= c->count_ || c->pos >= m->n)
        return false;
    int64_t x = atomic_load_explicit(&m->v[c->pos], memory_order_relaxed);
    if (x == MEMO_NONE)
        return false;
    *v = x;
    return true;
}

void store_cursor_memo_put(const store_cursor *c, int64_t v)
{
    struct gen *g = c->snap->g;
    if (c->pos >= c->count_ || v == MEMO_NONE)
        return;
    struct store_memo *m = atomic_load_explicit(&g->memo, memory_order_acquire);
    if (!m || c->pos >= m->n)
        m = memo_grow(g, c->pos);
    if (m && c->pos < m->n)     /* no memory: derived again next time */
        atomic_store_explicit(&m->v[c->pos], v, memory_order_relaxed);
}

void store_memo_free(struct gen *g)
{
    struct store_memo *m = atomic_load(&g->memo);
    while (m) {
        struct store_memo *o = m->older;
        free(m);
        m = o;
    }
    atomic_store(&g->memo, NULL);
}
