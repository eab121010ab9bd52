/* store/since.c — what changed since a modseq, without reading every entry.
 *
 * Two per-generation structures, each built on first use:
 *
 * The expunge history.  Compaction drops tombstones but writes their UIDs
 * and modseqs into the new log as one LOG_VANISHED record: runs of UIDs
 * that hold no live message, each with the highest expunge modseq in it.
 * A maximal run of non-live UIDs is one run, so the history has at most
 * live + 1 runs however many messages were ever expunged.  A client whose
 * modseq falls between two expunges merged into one run is told about a
 * few UIDs it already knew were gone.  RFC 7162 allows a superset: 5.1, an
 * implementation that remembers no expunge modseqs may "return all
 * expunged messages specified in the UID set ... every time, without
 * paying attention to the specified CHANGEDSINCE mod-sequence"; merged runs
 * sit between that and the exact answer, much closer to the latter.  The
 * record is immutable for its generation, so it is read into memory once
 * and shared by every thread without a lock.
 *
 * The modseq summary: the highest modseq of every block of MS_BLOCK
 * entries, live or tombstone.  A query reads the block maxima and only the
 * entries of blocks above `since`.  Another process may change entries at
 * any time (the index is shared), and every change is a log record, so the
 * summary is kept current by reading the records after the log offset it
 * reflects: a FLAGS or EXPUNGE record raises the blocks its UID ranges
 * cover to its modseq, new entries are read directly.  A block's maximum
 * may be too high (a range covering entries it did not change, a change
 * the first scan already saw), never too low: the writer stores an entry's
 * modseq before it publishes log_applied past the record, so whatever is
 * not in the summary yet is in a record after the offset it reflects. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/internal.h"

#define A_LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define A_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* 64 entries = one 4 KiB page of the index per block: a block above
 * `since` costs one page, the summary 8 bytes per 64 messages. */
#define MS_SHIFT 6u
#define MS_BLOCK (1u << MS_SHIFT)

/* ---- the expunge history ---------------------------------------------- */

struct hist {
    bool have;                  /* the generation has a LOG_VANISHED record */
    uint32_t n;
    uint64_t *bmax;             /* highest modseq of each MS_BLOCK runs: a
                                   query skips the blocks not above since */
    struct log_vrun r[];
};

static struct hist hist_none;  /* no record (or a damaged one) */

/* Read the generation's record; &hist_none without one, NULL when out of
 * memory (not cached: the next call tries again). */
static struct hist *hist_read(struct gen *g)
{
    struct idx_hdr *h = store_gen_hdr(g);
    uint64_t off = A_LOAD(&h->hist_off), applied = A_LOAD(&h->log_applied);
    if (!off || off < LOG_HDR_SIZE || off + sizeof(struct log_rec) > applied)
        return &hist_none;
    const uint8_t *b = store_mapchain_get(&g->log, off, sizeof(struct log_rec));
    if (!b)
        return NULL;
    struct log_rec r;
    memcpy(&r, b, sizeof r);
    uint64_t total = ALIGN8(sizeof r + (uint64_t)r.len);
    if (r.type != LOG_VANISHED || total > applied - off)
        return &hist_none;
    if (!(b = store_mapchain_get(&g->log, off, total)))
        return NULL;
    /* The whole record again (checksum, runs sorted and disjoint): the
     * index that pointed here may be damaged. */
    if (store_log_rec_check(b, total, 0) <= 0)
        return &hist_none;
    struct log_vanished v;
    memcpy(&v, b + sizeof r, sizeof v);
    struct hist *hs = malloc(sizeof *hs + (size_t)v.nruns * sizeof(struct log_vrun));
    if (!hs)
        return NULL;
    hs->have = true;
    hs->n = v.nruns;
    memcpy(hs->r, b + sizeof r + sizeof v, (size_t)v.nruns * sizeof(struct log_vrun));
    hs->bmax = calloc(((size_t)v.nruns + MS_BLOCK - 1) / MS_BLOCK + 1, sizeof *hs->bmax);
    if (!hs->bmax) {
        free(hs);
        return NULL;
    }
    for (uint32_t i = 0; i < hs->n; i++)
        if (hs->r[i].modseq > hs->bmax[i >> MS_SHIFT])
            hs->bmax[i >> MS_SHIFT] = hs->r[i].modseq;
    return hs;
}

static const struct hist *hist_get(struct gen *g)
{
    struct hist *hs = atomic_load_explicit(&g->hist, memory_order_acquire);
    if (hs)
        return hs;
    pthread_mutex_lock(&g->qlock);
    hs = atomic_load_explicit(&g->hist, memory_order_acquire);
    if (!hs && (hs = hist_read(g)))
        atomic_store_explicit(&g->hist, hs, memory_order_release);
    pthread_mutex_unlock(&g->qlock);
    return hs;
}

int64_t store_hist_runs(struct gen *g)
{
    const struct hist *hs = hist_get(g);
    return hs && hs->have ? (int64_t)hs->n : -1;
}

int store_hist_build(struct gen *g, uint32_t n, uint32_t uidnext, store_buf *payload,
                     uint32_t *nruns)
{
    const struct hist *old = hist_get(g);
    if (!old)
        return -ENOMEM;
    /* Without a complete history, an expunge older than tomb_floor left no
     * trace but a non-live UID: its modseq is at most tomb_floor, so
     * counting it there is never too low. */
    uint64_t floor = old->have ? 0 : A_LOAD(&store_gen_hdr(g)->tomb_floor);
    struct log_vanished v = {0};
    int rc = store_buf_append(payload, &v, sizeof v);
    if (rc < 0)
        return rc;
    size_t at = payload->len - sizeof v;
    uint32_t gap = 1, ri = 0;
    uint64_t gm = 0;
    for (uint32_t p = 0; p <= n; p++) {
        uint32_t u = uidnext;   /* past the last entry: the end of the last gap */
        if (p < n) {
            const struct idx_entry *e = store_gen_entry(g, p);
            uint64_t fm = A_LOAD(&e->fm);
            if (FM_FLAGS(fm) & ENT_EXPUNGED) {
                if (FM_MODSEQ(fm) > gm)
                    gm = FM_MODSEQ(fm);
                continue;
            }
            u = e->uid;
        }
        /* A live UID (or UIDNEXT) ends the gap [gap, u - 1].  The old runs
         * lie inside gaps: UIDs only ever stop being live. */
        if (u > gap) {
            while (ri < old->n && old->r[ri].lo < u) {
                if (old->r[ri].modseq > gm)
                    gm = old->r[ri].modseq;
                ri++;
            }
            if (floor > gm)
                gm = floor;
            if (gm) {
                struct log_vrun r = {gap, u - 1, gm};
                if ((rc = store_buf_append(payload, &r, sizeof r)) < 0)
                    return rc;
                v.nruns++;
            }
        }
        gm = 0;
        gap = u + 1;
    }
    memcpy(payload->data + at, &v, sizeof v);
    *nruns = v.nruns;
    return 0;
}

/* ---- the modseq summary ----------------------------------------------- */

/* Two levels: max[] per block of MS_BLOCK entries, smax[] per MS_BLOCK
 * blocks (4096 entries), so a query over 10^6 messages reads 245 words
 * and then only the blocks of the groups above since. */
struct msarr {
    struct msarr *prev;         /* smaller copies a reader may still hold */
    uint32_t cap;               /* blocks, a multiple of MS_BLOCK */
    uint64_t *smax;             /* cap / MS_BLOCK words after max[] */
    uint64_t max[];             /* atomic loads and stores, both levels */
};

static void raise_one(struct msarr *a, uint32_t b, uint64_t modseq)
{
    if (__atomic_load_n(&a->max[b], __ATOMIC_RELAXED) < modseq)
        __atomic_store_n(&a->max[b], modseq, __ATOMIC_RELAXED);
    uint64_t *sm = &a->smax[b >> MS_SHIFT];
    if (__atomic_load_n(sm, __ATOMIC_RELAXED) < modseq)
        __atomic_store_n(sm, modseq, __ATOMIC_RELAXED);
}

struct msum {
    pthread_mutex_t lock;       /* one updater at a time */
    _Atomic(struct msarr *) arr;
    uint64_t log_off;           /* log bytes reflected (atomic) */
    uint32_t count;             /* entries reflected (atomic) */
};

void store_since_free(struct gen *g)
{
    struct hist *hs = atomic_load(&g->hist);
    if (hs && hs != &hist_none) {
        free(hs->bmax);
        free(hs);
    }
    struct msum *m = atomic_load(&g->msum);
    if (m) {
        struct msarr *a = atomic_load(&m->arr);
        while (a) {
            struct msarr *p = a->prev;
            free(a);
            a = p;
        }
        pthread_mutex_destroy(&m->lock);
        free(m);
    }
}

static struct msum *msum_of(struct gen *g)
{
    struct msum *m = atomic_load_explicit(&g->msum, memory_order_acquire);
    if (m)
        return m;
    pthread_mutex_lock(&g->qlock);
    m = atomic_load_explicit(&g->msum, memory_order_acquire);
    if (!m && (m = calloc(1, sizeof *m))) {
        pthread_mutex_init(&m->lock, NULL);
        atomic_store_explicit(&g->msum, m, memory_order_release);
    }
    pthread_mutex_unlock(&g->qlock);
    return m;
}

/* Room for `blocks` (lock held).  The old array stays allocated for
 * readers that loaded it; every update goes to the newest. */
static struct msarr *msum_grow(struct msum *m, uint32_t blocks)
{
    struct msarr *a = atomic_load(&m->arr);
    if (a && a->cap >= blocks)
        return a;
    uint32_t cap = a ? a->cap : 0;
    while (cap < blocks)
        cap = cap ? cap * 2 : MS_BLOCK;
    struct msarr *na = calloc(1, sizeof *na + ((size_t)cap + cap / MS_BLOCK) * sizeof(uint64_t));
    if (!na)
        return NULL;
    na->cap = cap;
    na->prev = a;
    na->smax = na->max + cap;
    for (uint32_t b = 0; a && b < a->cap; b++)
        na->max[b] = __atomic_load_n(&a->max[b], __ATOMIC_RELAXED);
    for (uint32_t b = 0; a && b < a->cap / MS_BLOCK; b++)
        na->smax[b] = __atomic_load_n(&a->smax[b], __ATOMIC_RELAXED);
    atomic_store_explicit(&m->arr, na, memory_order_release);
    return na;
}

static void raise_blocks(struct msarr *a, uint32_t p0, uint32_t p1, uint64_t modseq)
{
    if (p0 >= p1)
        return;
    for (uint32_t b = p0 >> MS_SHIFT; b <= (p1 - 1) >> MS_SHIFT; b++)
        raise_one(a, b, modseq);
}

/* First position among count whose UID is above uid. */
static uint32_t upper_bound(struct gen *g, uint32_t count, uint32_t uid)
{
    return uid == UINT32_MAX ? count : store_gen_lower_bound(g, count, uid + 1);
}

/* Raise the blocks a FLAGS or EXPUNGE record touches among the first n
 * entries; false if the bytes are no such record (then rescan). */
static bool follow_rec(struct gen *g, struct msarr *a, uint32_t n, const uint8_t *b,
                       uint64_t avail)
{
    struct log_rec r;
    memcpy(&r, b, sizeof r);
    uint64_t modseq;
    uint32_t nranges;
    size_t skip;
    if (r.type == LOG_FLAGS) {
        struct log_flags f;
        memcpy(&f, b + sizeof r, sizeof f);
        modseq = f.modseq;
        nranges = f.nranges;
        skip = sizeof f;
    } else {
        struct log_expunge x;
        memcpy(&x, b + sizeof r, sizeof x);
        modseq = x.modseq;
        nranges = x.nranges;
        skip = sizeof x;
    }
    if (sizeof r + skip + (uint64_t)nranges * sizeof(struct log_range) > avail)
        return false;
    for (uint32_t i = 0; i < nranges; i++) {
        struct log_range rg;
        memcpy(&rg, b + sizeof r + skip + (size_t)i * sizeof rg, sizeof rg);
        raise_blocks(a, store_gen_lower_bound(g, n, rg.lo), upper_bound(g, n, rg.hi), modseq);
    }
    return true;
}

/* Bring the summary up to the log as applied now (m->lock held). */
static int msum_follow(struct gen *g, struct msum *m)
{
    struct idx_hdr *h = store_gen_hdr(g);
    uint64_t to = A_LOAD(&h->log_applied);
    uint32_t count = A_LOAD(&h->count);
    struct msarr *a = msum_grow(m, (count + MS_BLOCK - 1) >> MS_SHIFT);
    if (!a)
        return -ENOMEM;
    uint32_t n = m->count;
    uint64_t off = m->log_off;
    if (n && off < to) {
        const uint8_t *base = store_mapchain_get(&g->log, 0, to);
        if (!base)
            return -ENOMEM;
        while (off < to) {
            struct log_rec r;
            if (to - off < sizeof r) {
                n = 0;
                break;
            }
            memcpy(&r, base + off, sizeof r);
            uint64_t len = ALIGN8(sizeof r + (uint64_t)r.len);
            if (r.magic != LOG_REC_MAGIC || r.type < LOG_MESSAGE || r.type > LOG_VANISHED ||
                len > to - off) {
                n = 0;      /* a stretch skipped as damage: read every entry */
                break;
            }
            /* New messages are read from their entries below; a change
             * record is small, so its checksum is cheap insurance. */
            if ((r.type == LOG_FLAGS || r.type == LOG_EXPUNGE) &&
                (store_log_rec_check(base, to, off) <= 0 ||
                 !follow_rec(g, a, n, base + off, len))) {
                n = 0;
                break;
            }
            off += len;
        }
    }
    /* Entries the summary has not seen: their modseq words now are at
     * least as new as the log up to `to` (read before count). */
    for (uint32_t p = n; p < count; p++) {
        raise_one(a, p >> MS_SHIFT, FM_MODSEQ(A_LOAD(&store_gen_entry(g, p)->fm)));
    }
    A_STORE(&m->log_off, to);
    A_STORE(&m->count, count);
    return 0;
}

/* The summary, current at least to s's entries and the log as applied
 * when called; NULL when out of memory. */
static const struct msarr *msum_get(const store_snap *s)
{
    struct msum *m = msum_of(s->g);
    if (!m)
        return NULL;
    uint64_t applied = A_LOAD(&store_gen_hdr(s->g)->log_applied);
    if (A_LOAD(&m->log_off) < applied || A_LOAD(&m->count) < s->count) {
        pthread_mutex_lock(&m->lock);
        int rc = 0;
        if (A_LOAD(&m->log_off) < applied || A_LOAD(&m->count) < s->count)
            rc = msum_follow(s->g, m);
        pthread_mutex_unlock(&m->lock);
        if (rc < 0)
            return NULL;
    }
    return atomic_load_explicit(&m->arr, memory_order_acquire);
}

int store_since_build_scratch(const store_snap *s, size_t *mem)
{
    struct msum m = {.log_off = 0};
    pthread_mutex_init(&m.lock, NULL);
    int rc = msum_follow(s->g, &m);
    struct msarr *a = atomic_load(&m.arr);
    *mem = sizeof m;
    while (a) {
        struct msarr *p = a->prev;
        *mem += sizeof *a + ((size_t)a->cap + a->cap / MS_BLOCK) * sizeof(uint64_t);
        free(a);
        a = p;
    }
    pthread_mutex_destroy(&m.lock);
    return rc;
}

int store_since_prepare(const store_snap *s)
{
    return msum_get(s) ? 0 : -ENOMEM;
}

size_t store_since_mem(const store_snap *s)
{
    struct msum *m = atomic_load(&s->g->msum);
    size_t n = 0;
    if (m) {
        n += sizeof *m;
        for (struct msarr *a = atomic_load(&m->arr); a; a = a->prev)
            n += sizeof *a + ((size_t)a->cap + a->cap / MS_BLOCK) * sizeof(uint64_t);
    }
    struct hist *hs = atomic_load(&s->g->hist);
    if (hs && hs != &hist_none)
        n += sizeof *hs + (size_t)hs->n * sizeof(struct log_vrun) +
             ((size_t)hs->n / MS_BLOCK + 1) * sizeof(uint64_t);
    return n;
}

/* ---- the queries --------------------------------------------------------- */

int store_snap_changed_since(const store_snap *s, uint64_t since, store_uidlist *out)
{
    return store_snap_changed_since_max(s, since, SIZE_MAX, out);
}

int store_snap_changed_since_max(const store_snap *s, uint64_t since, size_t max,
                                 store_uidlist *out)
{
    const struct msarr *a = msum_get(s);
    if (!a)
        return max == SIZE_MAX ? store_snap_changed_since_scan(s, since, out) : -E2BIG;
    uint32_t nb = (s->count + MS_BLOCK - 1) >> MS_SHIFT;
    for (uint32_t b = 0; b < nb; b++) {
        if ((b & (MS_BLOCK - 1)) == 0 &&
            __atomic_load_n(&a->smax[b >> MS_SHIFT], __ATOMIC_RELAXED) <= since) {
            b += MS_BLOCK - 1;  /* no block of this group is above since */
            continue;
        }
        if (__atomic_load_n(&a->max[b], __ATOMIC_RELAXED) <= since)
            continue;
        uint32_t end = (b + 1) << MS_SHIFT;
        if (end > s->count || end == 0)
            end = s->count;
        for (uint32_t p = b << MS_SHIFT; p < end; p++) {
            const struct idx_entry *e = store_gen_entry(s->g, p);
            uint64_t fm = A_LOAD(&e->fm);
            if (!(FM_FLAGS(fm) & ENT_EXPUNGED) && FM_MODSEQ(fm) > since) {
                if (out->n >= max)
                    return -E2BIG;
                int rc = store_uidlist_add(out, e->uid);
                if (rc < 0)
                    return rc;
            }
        }
    }
    return 0;
}

/* The tombstones of s in [lo, hi] with modseq > since, as ranges. */
static int tombs_since(const store_snap *s, const struct msarr *a, uint64_t since,
                       uint32_t lo, uint32_t hi, store_rangelist *out)
{
    uint32_t p0 = store_gen_lower_bound(s->g, s->count, lo);
    uint32_t p1 = upper_bound(s->g, s->count, hi);
    for (uint32_t p = p0; p < p1;) {
        /* Skip a group of blocks, or a block, not above since. */
        uint32_t b = p >> MS_SHIFT;
        bool group = __atomic_load_n(&a->smax[b >> MS_SHIFT], __ATOMIC_RELAXED) > since;
        bool scan = group && __atomic_load_n(&a->max[b], __ATOMIC_RELAXED) > since;
        uint64_t end = group ? (uint64_t)(b + 1) << MS_SHIFT
                             : (uint64_t)((b >> MS_SHIFT) + 1) << (2 * MS_SHIFT);
        if (end > p1)
            end = p1;
        for (; scan && p < end; p++) {
            const struct idx_entry *e = store_gen_entry(s->g, p);
            uint64_t fm = A_LOAD(&e->fm);
            if ((FM_FLAGS(fm) & ENT_EXPUNGED) && FM_MODSEQ(fm) > since) {
                int rc = store_rangelist_push(out, e->uid, e->uid);
                if (rc < 0)
                    return rc;
            }
        }
        p = (uint32_t)end;
    }
    return 0;
}

int store_snap_vanished(const store_snap *s, uint64_t since, uint32_t lo, uint32_t hi,
                        store_rangelist *out)
{
    struct idx_hdr *h = store_gen_hdr(s->g);
    uint32_t uidnext = store_snap_uidnext(s);
    if (hi >= uidnext)
        hi = uidnext - 1;
    if (lo == 0)
        lo = 1;
    if (lo > hi)
        return 0;
    const struct hist *hs = hist_get(s->g);
    const struct msarr *a = msum_get(s);
    if (!hs || !a)
        return store_snap_vanished_scan(s, since, lo, hi, out);
    /* Without a history, tombstones older than tomb_floor are gone: the
     * inexact answer (every non-live UID) is the scan's. */
    if (!hs->have && since < A_LOAD(&h->tomb_floor))
        return store_snap_vanished_scan(s, since, lo, hi, out);
    store_rangelist t = {0};
    int rc = tombs_since(s, a, since, lo, hi, &t);
    /* Merge the history's runs (first one ending at or above lo) with the
     * tombstones, both in UID order; a UID may be in both when it was
     * expunged during the compaction that wrote the history. */
    uint32_t i = 0, j = hs->n;
    while (i < j) {
        uint32_t mid = i + (j - i) / 2;
        if (hs->r[mid].hi < lo)
            i = mid + 1;
        else
            j = mid;
    }
    size_t k = 0;
    while (rc == 0) {
        while (i < hs->n && hs->r[i].lo <= hi && hs->r[i].modseq <= since) {
            if ((i & (MS_BLOCK - 1)) == 0 && hs->bmax[i >> MS_SHIFT] <= since)
                i += MS_BLOCK;  /* no run of this block is above since */
            else
                i++;
        }
        bool run = i < hs->n && hs->r[i].lo <= hi;
        bool tomb = k < t.n;
        if (!run && !tomb)
            break;
        if (run && (!tomb || hs->r[i].lo <= t.r[k].lo)) {
            uint32_t rlo = hs->r[i].lo < lo ? lo : hs->r[i].lo;
            uint32_t rhi = hs->r[i].hi > hi ? hi : hs->r[i].hi;
            rc = store_rangelist_push(out, rlo, rhi);
            i++;
        } else {
            rc = store_rangelist_push(out, t.r[k].lo, t.r[k].hi);
            k++;
        }
    }
    store_rangelist_free(&t);
    return rc;
}
