/* store/fault.c — bringing a scan's pages into memory off the thread that
 * will read them.
 *
 * The store is read through mmap, so a page the kernel has dropped (or
 * never read) is read from the disk by whichever thread touches it first,
 * stopped in a page fault for as long as the disk takes.  On a worker
 * every other session of that worker waits meanwhile: a SEARCH BODY over
 * a cold 10^6-message mailbox held them 40-75 ms at a time, once 449 ms,
 * although it runs in slices (posix_fadvise's read-ahead starts the reads
 * early, but a scan soon catches up with the disk).
 *
 * So a long scan asks, before it reads an entry's bytes, whether they are
 * in memory: mincore(2) on the mapping, a look at the page cache that
 * starts no I/O.  One look covers LOOK_AHEAD bytes and its answer is kept
 * (store_resident), so most entries cost no system call.  If the entry's
 * pages are not all there, the scan stops before it, and a store_fault
 * brings them in (MADV_POPULATE_READ, at least FAULT_MIN bytes) on a
 * thread that may wait: the session waits for it, the worker serves the
 * others, then the scan goes on where it stopped.
 *
 * The kernel may drop a page again between the look and the read; then
 * that read faults on the worker as before.  The look makes the stall
 * rare, not impossible. */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "store/assert.h"
#include "store/internal.h"
#include "store/stats.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22   /* Linux 5.14 */
#endif

#define LOOK_AHEAD ((uint64_t)1 << 20)  /* bytes per mincore: 256 pages */
#define FAULT_MIN ((uint64_t)128 << 10) /* bytes per fault at least: what
                                           the kernel's read-ahead reads */

struct store_fault {
    struct gen *g;              /* held: its mappings stay */
    uint8_t *addr;              /* page aligned, inside one mapping */
    size_t len;
    size_t sure;                /* of which the file surely holds these
                                   (the entry's pages) */
};

static uint64_t page_size(void)
{
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (uint64_t)p : 4096;
}

/* The first byte offset in [a, b) (page aligned) whose page is not in
 * memory, b if none; a if that cannot be told (mincore failed). */
static uint64_t first_absent(const uint8_t *base, uint64_t a, uint64_t b, uint64_t pg,
                             bool *known)
{
    unsigned char vec[LOOK_AHEAD / 4096];
    *known = true;
    for (uint64_t p = a; p < b;) {
        uint64_t n = b - p < LOOK_AHEAD ? b - p : LOOK_AHEAD;
        if (mincore((void *)(base + p), n, vec) < 0) {
            *known = false;
            return a;
        }
        for (uint64_t i = 0; i < (n + pg - 1) / pg; i++)
            if (!(vec[i] & 1))
                return p + i * pg;
        p += n;
    }
    return b;
}

/* Whether the last look found [off, end) of the map s in memory. */
static bool known_has(const store_resident *known, const struct mapseg *s, uint64_t off,
                      uint64_t end)
{
    return known->map_ == s->base && off >= known->lo_ && end <= known->hi_;
}

/* The look at [off, end) of a file of g mapped by s, reading on to
 * LOOK_AHEAD; not all there, *f brings in from the first absent page at
 * least `min` bytes. */
static int look(struct gen *g, struct mapseg *s, uint64_t off, uint64_t end, uint64_t min,
                store_resident *known, store_fault **f)
{
    if (known_has(known, s, off, end))
        return 0;
    uint64_t pg = page_size();
    uint64_t a = off & ~(pg - 1), b = a + LOOK_AHEAD;
    if (b < end)
        b = end;
    b = (b + pg - 1) & ~(pg - 1);
    if (b > s->len)
        b = s->len;     /* a mapping's length is whole pages */
    bool told;
    uint64_t absent = first_absent(s->base, a, b, pg, &told);
    if (!told)
        return 0;       /* cannot tell: read as before */
    known->map_ = s->base;
    known->lo_ = a;
    known->hi_ = absent;
    if (absent >= end)
        return 0;
    /* Bring in from the first absent page what is asked for, and at least
     * `min`, since a scan reads on (within the mapping; past the file's
     * end MADV_POPULATE_READ stops with EFAULT, harmlessly). */
    uint64_t to = absent + min;
    if (to < end)
        to = end;
    to = (to + pg - 1) & ~(pg - 1);
    if (to > s->len)
        to = s->len;
    store_fault *x = malloc(sizeof *x);
    if (!x)
        return -ENOMEM;
    atomic_fetch_add(&g->refs, 1);
    x->g = g;
    x->addr = s->base + absent;
    x->len = (size_t)(to - absent);
    x->sure = (size_t)(((end + pg - 1) & ~(pg - 1)) - absent);
    *f = x;
    return -EWOULDBLOCK;
}

int store_cursor_resident(const store_cursor *c, unsigned what, uint64_t upto,
                          store_resident *known, store_fault **f)
{
    *f = NULL;
    if (c->pos >= c->count_)
        return 0;
    const struct idx_entry *e = (const struct idx_entry *)c->ents_ + c->pos;
    bool body = what == STORE_RA_BODY;
    struct gen *g = c->snap->g;
    uint64_t off, end;
    if (body) {
        off = e->log_off;
        end = off + sizeof(struct log_rec) + sizeof(struct log_message) +
              (upto < e->size ? upto : e->size);
    } else {
        off = e->cache_off;
        end = off + sizeof(struct cache_rec) + e->cache_len;
    }
    struct mapseg *s = atomic_load_explicit(body ? &g->log.cur : &g->cache.cur,
                                            memory_order_acquire);
    if (!off || end > s->len || end <= off)
        return 0;       /* nothing to read, or a damaged entry: the read says so */
    if (known_has(known, s, off, end))
        return 0;       /* the common case: no CRC, no system call */
    /* an entry the read will refuse (damaged) is not read in either; the
     * read checks it once more, as always */
    if (!store_snap_entry_sound(c->snap, e))
        return 0;
    return look(g, s, off, end, FAULT_MIN, known, f);
}

int store_snap_entries_resident(const store_snap *sn, uint32_t pos, uint32_t end,
                                store_resident *known, store_fault **f)
{
    *f = NULL;
    if (end > sn->count)
        end = sn->count;
    if (pos >= end)
        return 0;
    struct gen *g = sn->g;
    struct mapseg *s = atomic_load_explicit(&g->idx.cur, memory_order_acquire);
    uint64_t off = IDX_HDR_SIZE + (uint64_t)pos * sizeof(struct idx_entry);
    uint64_t to = IDX_HDR_SIZE + (uint64_t)end * sizeof(struct idx_entry);
    if (to > s->len)
        return 0;       /* not mapped yet: the read maps it */
    /* entries are read in order, 48 bytes each: a look's worth at once */
    return look(g, s, off, to, LOOK_AHEAD, known, f);
}

void store_fault_run(store_fault *f)
{
    RM_ASSERT(f && f->len > 0);
    /* MADV_POPULATE_READ faults the pages in as a read of each would,
     * and says EFAULT where a read would raise SIGBUS (past the file's
     * end). */
    if (madvise(f->addr, f->len, MADV_POPULATE_READ) < 0 && errno == EINVAL) {
        /* a kernel before 5.14: read them, only those surely in the file */
        uint64_t pg = page_size();
        for (size_t i = 0; i < f->sure; i += pg)
            (void)*(volatile const uint8_t *)(f->addr + i);
    }
    store_stats *st = store_stats_get();
    if (st) {
        atomic_fetch_add_explicit(&st->faults_moved, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&st->faults_moved_bytes, f->len, memory_order_relaxed);
    }
}

uint64_t store_fault_bytes(const store_fault *f)
{
    return f->len;
}

void store_fault_free(store_fault *f)
{
    if (!f)
        return;
    store_gen_put(f->g);
    free(f);
}
