/* store/snap.c — lock-free reading through snapshots.
 *
 * A snapshot pins a generation (its maps stay valid even if compaction
 * swaps in new files) and an entry count.  Entries below the count never
 * move; their flag and modseq words are read with atomic loads.  Sequence
 * numbers need the positions of tombstones; those are collected once per
 * (count, expunge) state and shared by every snapshot of that state. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "store/internal.h"

#define A_LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)

struct reparse {
    struct reparse *next;
    store_buf buf;
};

static void tomb_put(struct tombcache *t)
{
    if (t && atomic_fetch_sub(&t->refs, 1) == 1) {
        free(t->pos);
        free(t);
    }
}

static struct tombcache *tomb_get(struct gen *g, uint32_t count)
{
    struct idx_hdr *h = store_gen_hdr(g);
    uint64_t xseq = A_LOAD(&h->expunge_seq);
    pthread_mutex_lock(&g->tlock);
    struct tombcache *t = g->tomb;
    if (t && t->count == count && t->expunge_seq == xseq) {
        atomic_fetch_add(&t->refs, 1);
        pthread_mutex_unlock(&g->tlock);
        return t;
    }
    t = calloc(1, sizeof *t);
    if (!t) {
        pthread_mutex_unlock(&g->tlock);
        return NULL;
    }
    t->count = count;
    t->expunge_seq = xseq;
    size_t cap = 0;
    for (uint32_t p = 0; p < count; p++) {
        if (!(FM_FLAGS(A_LOAD(&store_gen_entry(g, p)->fm)) & ENT_EXPUNGED))
            continue;
        if (t->n == cap) {
            cap = cap ? cap * 2 : 256;
            uint32_t *np = realloc(t->pos, cap * sizeof *np);
            if (!np) {
                free(t->pos);
                free(t);
                pthread_mutex_unlock(&g->tlock);
                return NULL;
            }
            t->pos = np;
        }
        t->pos[t->n++] = p;
    }
    atomic_init(&t->refs, 2);   /* the cache's and the caller's */
    tomb_put(g->tomb);
    g->tomb = t;
    pthread_mutex_unlock(&g->tlock);
    return t;
}

store_snap *store_snap_get(store_mbox *mb)
{
    struct gen *g = store_mbox_gen_get(mb);
    if (A_LOAD(&store_gen_hdr(g)->superseded)) {
        store_gen_put(g);
        if (store_mbox_refresh(mb) < 0)
            return NULL;
        g = store_mbox_gen_get(mb);
    }
    store_snap *s = calloc(1, sizeof *s);
    if (!s) {
        store_gen_put(g);
        return NULL;
    }
    s->mb = mb;
    s->g = g;
    struct idx_hdr *h = store_gen_hdr(g);
    s->count = A_LOAD(&h->count);
    s->uidnext = A_LOAD(&h->uidnext);
    s->highestmodseq = A_LOAD(&h->highestmodseq);
    /* The entry pages must be mapped before anyone dereferences them. */
    if (s->count && !store_gen_entry(g, s->count - 1)) {
        store_snap_put(s);
        return NULL;
    }
    /* The tombstone positions cost a scan: only sequence-number lookups
     * need them, so they are collected on first use. */
    s->has_tombs = A_LOAD(&h->tombstones) != 0;
    s->live = s->has_tombs ? A_LOAD(&h->messages) : s->count;
    if (s->live > s->count)
        s->live = s->count;
    return s;
}

void store_snap_put(store_snap *s)
{
    if (!s)
        return;
    struct reparse *r = s->reparse;
    while (r) {
        struct reparse *n = r->next;
        free(r->buf.data);
        free(r);
        r = n;
    }
    tomb_put(s->tomb);
    store_gen_put(s->g);
    free(s);
}

uint32_t store_snap_messages(const store_snap *s) { return s->live; }
uint32_t store_snap_entries(const store_snap *s) { return s->count; }
uint32_t store_snap_uidnext(const store_snap *s) { return s->uidnext; }
uint64_t store_snap_highestmodseq(const store_snap *s) { return s->highestmodseq; }
uint32_t store_snap_uidvalidity(const store_snap *s) { return store_gen_hdr(s->g)->uidvalidity; }
const char *store_snap_dir(const store_snap *s) { return s->mb->dir; }

const char *store_snap_keyword(const store_snap *s, unsigned i)
{
    struct idx_hdr *h = store_gen_hdr(s->g);
    if (i >= A_LOAD(&h->nkeywords) || !h->keywords[i][0])
        return NULL;
    return h->keywords[i];
}

int store_snap_keyword_index(const store_snap *s, const char *name)
{
    struct idx_hdr *h = store_gen_hdr(s->g);
    unsigned n = A_LOAD(&h->nkeywords);
    for (unsigned i = 0; i < n; i++)
        if (!strcasecmp(h->keywords[i], name))
            return (int)i;
    return -ENOENT;
}

int store_snap_entry(const store_snap *s, uint32_t pos, store_msg *m)
{
    if (pos >= s->count)
        return -ERANGE;
    const struct idx_entry *e = store_gen_entry(s->g, pos);
    store_entry_msg(e, m);
    return (FM_FLAGS(A_LOAD(&e->fm)) & ENT_EXPUNGED) ? 0 : 1;
}

size_t store_snap_live(const store_snap *s, uint32_t *pos, uint32_t end, uint32_t *uids,
                       uint32_t *flags, size_t n)
{
    uint32_t p = *pos;
    if (end > s->count)
        end = s->count;
    size_t k = 0;
    if (p < end && n) {
        /* the entries of a block are contiguous in the index's map */
        const struct idx_entry *e = (const struct idx_entry *)store_mapchain_get(
            &s->g->idx, IDX_HDR_SIZE + (uint64_t)p * sizeof *e,
            (uint64_t)(end - p) * sizeof *e);
        if (!e)
            return 0;   /* no map: *pos stays, the caller sees no progress */
        for (; p < end && k < n; p++, e++) {
            uint64_t fm = A_LOAD(&e->fm);
            if (FM_FLAGS(fm) & ENT_EXPUNGED)
                continue;
            uids[k] = e->uid;
            if (flags)
                flags[k] = FM_FLAGS(fm) & STORE_F_ALL;
            k++;
        }
    }
    *pos = p;
    return k;
}

/* Tombstones at positions < pos. */
static uint32_t tombs_below(const struct tombcache *t, uint32_t pos)
{
    if (!t)
        return 0;
    uint32_t lo = 0, hi = t->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (t->pos[mid] < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool is_tomb(const struct tombcache *t, uint32_t pos)
{
    uint32_t i = tombs_below(t, pos);
    return t && i < t->n && t->pos[i] == pos;
}

/* The snapshot's tombstone positions, collected on first use.  The
 * snapshot is used by one thread at a time, so no lock. */
static const struct tombcache *snap_tombs(const store_snap *cs)
{
    store_snap *s = (store_snap *)cs;
    if (s->has_tombs && !s->tomb) {
        s->tomb = tomb_get(s->g, s->count);
        RM_ASSERT(!s->tomb || (s->tomb->count == s->count && s->tomb->n <= s->count));
        if (s->tomb)
            s->live = s->count - s->tomb->n;
    }
    return s->tomb;
}

uint32_t store_snap_seq_of_uid(const store_snap *s, uint32_t uid)
{
    snap_tombs(s);
    int64_t p = store_gen_find(s->g, s->count, uid);
    if (p < 0 || is_tomb(s->tomb, (uint32_t)p))
        return 0;
    return (uint32_t)p - tombs_below(s->tomb, (uint32_t)p) + 1;
}

uint32_t store_snap_uid_of_seq(const store_snap *s, uint32_t seq)
{
    snap_tombs(s);
    if (seq == 0 || seq > s->live)
        return 0;
    if (!s->tomb)
        return store_gen_entry(s->g, seq - 1)->uid;
    /* Smallest pos whose live rank (pos + 1 - tombs_below(pos + 1)) is seq. */
    uint32_t lo = seq - 1, hi = s->count - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (mid + 1 - tombs_below(s->tomb, mid + 1) < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    RM_ASSERT(lo < s->count);
    return store_gen_entry(s->g, lo)->uid;
}

static const struct idx_entry *find_live(const store_snap *s, uint32_t uid)
{
    int64_t p = store_gen_find(s->g, s->count, uid);
    if (p < 0)
        return NULL;
    const struct idx_entry *e = store_gen_entry(s->g, (uint32_t)p);
    if (FM_FLAGS(A_LOAD(&e->fm)) & ENT_EXPUNGED)
        return NULL;
    return e;
}

int store_snap_lookup(const store_snap *s, uint32_t uid, store_msg *m)
{
    int64_t p = store_gen_find(s->g, s->count, uid);
    if (p < 0)
        return -ENOENT;
    return store_snap_entry(s, (uint32_t)p, m);
}

int store_snap_msg(const store_snap *s, uint32_t uid, store_msg *m)
{
    const struct idx_entry *e = find_live(s, uid);
    if (!e)
        return -ENOENT;
    store_entry_msg(e, m);
    return 0;
}

/* An entry whose immutable fields fail their checksum, or point outside
 * what the log and cache hold, is damage (bit rot, a stray write): never
 * follow its offsets. */
static bool entry_sound(const store_snap *s, const struct idx_entry *e)
{
    const struct idx_hdr *h = store_gen_hdr(s->g);
    return e->crc == store_entry_crc(e) &&
           e->log_off + sizeof(struct log_rec) + sizeof(struct log_message) + e->size <=
               A_LOAD(&h->log_applied) &&
           (!e->cache_off || e->cache_off + sizeof(struct cache_rec) + e->cache_len <=
                                 A_LOAD(&h->cache_end));
}

bool store_snap_entry_sound(const store_snap *s, const struct idx_entry *e)
{
    return entry_sound(s, e);
}

int store_snap_entry_bytes(const store_snap *s, const struct idx_entry *e, uint64_t off,
                           size_t len, const char **ptr, size_t *got)
{
    if (off > e->size)
        off = e->size;
    uint64_t n = e->size - off;
    if (len < n)
        n = len;
    uint64_t at = e->log_off + sizeof(struct log_rec) + sizeof(struct log_message) + off;
    const uint8_t *b = store_mapchain_get(&s->g->log, at, n);
    if (!b)
        return -ENOMEM;
    *ptr = (const char *)b;
    *got = (size_t)n;
    return 0;
}

int store_snap_entry_cache(store_snap *s, uint32_t pos, const struct idx_entry *e,
                           store_cache *c)
{
    RM_ASSERT(pos < s->count && store_gen_entry(s->g, pos) == e);
    if (e->cache_off) {
        const uint8_t *b = store_mapchain_get(&s->g->cache, e->cache_off,
                                              sizeof(struct cache_rec) + e->cache_len);
        struct cache_rec cr;
        if (b) {
            /* The blob carries its own CRC, which store_cache_open checks
             * the first time this process reads it (seen.c); the record's
             * CRC is for check, not for every read. */
            memcpy(&cr, b, sizeof cr);
            if (cr.len == e->cache_len) {
                if (store_seen_test(s->g, pos) &&
                    store_cache_reopen(b + sizeof cr, cr.len, c) == 0)
                    return 0;
                if (store_cache_open(b + sizeof cr, cr.len, c) == 0) {
                    store_seen_mark(s->g, pos);
                    return 0;
                }
            }
        }
    }
    /* Damaged or missing cache entry: parse the message again.  Each parse
     * gets its own buffer so earlier views stay valid. */
    const char *raw;
    size_t got;
    int rc = store_snap_entry_bytes(s, e, 0, SIZE_MAX, &raw, &got);
    if (rc < 0)
        return rc;
    struct reparse *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    if ((rc = store_msg_parse(raw, got, &r->buf)) < 0 ||
        (rc = store_cache_open(r->buf.data, r->buf.len, c)) < 0) {
        free(r->buf.data);
        free(r);
        return rc;
    }
    r->next = s->reparse;
    s->reparse = r;
    return 0;
}

/* Expunged messages stay readable in the snapshot's files until the next
 * compaction, so a session may still fetch what it was told exists. */
int store_snap_bytes(const store_snap *s, uint32_t uid, uint64_t off,
                     size_t len, const char **ptr, size_t *got)
{
    int64_t p = store_gen_find(s->g, s->count, uid);
    if (p < 0)
        return -ENOENT;
    const struct idx_entry *e = store_gen_entry(s->g, (uint32_t)p);
    if (!entry_sound(s, e))
        return -EBADMSG;
    return store_snap_entry_bytes(s, e, off, len, ptr, got);
}

int store_snap_cache(store_snap *s, uint32_t uid, store_cache *c)
{
    int64_t p = store_gen_find(s->g, s->count, uid);
    if (p < 0)
        return -ENOENT;
    const struct idx_entry *e = store_gen_entry(s->g, (uint32_t)p);
    if (!entry_sound(s, e))
        return -EBADMSG;
    return store_snap_entry_cache(s, (uint32_t)p, e, c);
}

/* The reference answers by a scan of every entry (see since.c for the
 * ones queries use). */
int store_snap_changed_since_scan(const store_snap *s, uint64_t since,
                                  store_uidlist *out)
{
    for (uint32_t p = 0; p < s->count; p++) {
        const struct idx_entry *e = store_gen_entry(s->g, p);
        uint64_t fm = A_LOAD(&e->fm);
        if (!(FM_FLAGS(fm) & ENT_EXPUNGED) && FM_MODSEQ(fm) > since) {
            int rc = store_uidlist_add(out, e->uid);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

int store_snap_expunged_since(const store_snap *s, uint64_t since,
                              store_uidlist *out, bool *exact)
{
    struct idx_hdr *h = store_gen_hdr(s->g);
    bool ex = since >= h->tomb_floor;
    int rc = 0;
    if (ex) {
        for (uint32_t p = 0; p < s->count && rc == 0; p++) {
            const struct idx_entry *e = store_gen_entry(s->g, p);
            uint64_t fm = A_LOAD(&e->fm);
            if ((FM_FLAGS(fm) & ENT_EXPUNGED) && FM_MODSEQ(fm) > since)
                rc = store_uidlist_add(out, e->uid);
        }
    } else {
        /* Tombstones were dropped: every UID below UIDNEXT that is not
         * live now.  Gaps can be huge, so callers get ranges implied by
         * consecutive UIDs; we still list each, bounded by UIDNEXT. */
        uint32_t next = 1, uidnext = store_snap_uidnext(s);
        for (uint32_t p = 0; p <= s->count && rc == 0; p++) {
            uint32_t upto = uidnext;
            bool live = false;
            if (p < s->count) {
                const struct idx_entry *e = store_gen_entry(s->g, p);
                upto = e->uid;
                live = !(FM_FLAGS(A_LOAD(&e->fm)) & ENT_EXPUNGED);
            }
            for (uint32_t u = next; u < upto && rc == 0; u++)
                rc = store_uidlist_add(out, u);
            if (p < s->count) {
                if (!live && rc == 0)
                    rc = store_uidlist_add(out, upto);
                next = upto + 1;
            }
        }
    }
    if (exact)
        *exact = ex;
    return rc;
}

void store_rangelist_free(store_rangelist *l)
{
    free(l->r);
    l->r = NULL;
    l->n = l->cap = 0;
}

/* Append [lo, hi] to l, whose ranges all start at or below lo: merged with
 * the last range when they overlap or touch. */
int store_rangelist_push(store_rangelist *l, uint32_t lo, uint32_t hi)
{
    RM_ASSERT(lo <= hi);
    if (l->n) {
        store_range *last = &l->r[l->n - 1];
        RM_ASSERT(lo >= last->lo);
        if (lo <= last->hi || lo - last->hi == 1) {
            if (hi > last->hi)
                last->hi = hi;
            return 0;
        }
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        store_range *r = realloc(l->r, cap * sizeof *r);
        if (!r)
            return -ENOMEM;
        l->r = r;
        l->cap = cap;
    }
    l->r[l->n++] = (store_range){lo, hi};
    return 0;
}

/* Tombstones only (no history), or every non-live UID in [lo, hi] when
 * since is below tomb_floor: since.c uses it for a generation without
 * history. */
int store_snap_vanished_scan(const store_snap *s, uint64_t since, uint32_t lo,
                             uint32_t hi, store_rangelist *out)
{
    struct idx_hdr *h = store_gen_hdr(s->g);
    uint32_t uidnext = store_snap_uidnext(s);
    if (hi >= uidnext)
        hi = uidnext - 1;
    if (lo == 0)
        lo = 1;
    if (lo > hi)
        return 0;
    int rc = 0;
    if (since >= A_LOAD(&h->tomb_floor)) {
        for (uint32_t p = store_gen_lower_bound(s->g, s->count, lo); p < s->count && rc == 0; p++) {
            const struct idx_entry *e = store_gen_entry(s->g, p);
            if (e->uid > hi)
                break;
            uint64_t fm = A_LOAD(&e->fm);
            if ((FM_FLAGS(fm) & ENT_EXPUNGED) && FM_MODSEQ(fm) > since)
                rc = store_rangelist_push(out, e->uid, e->uid);
        }
        return rc;
    }
    /* Tombstones older than `since` were dropped: every UID in [lo, hi]
     * that is not live now, as ranges between live messages. */
    uint32_t next = lo;
    for (uint32_t p = store_gen_lower_bound(s->g, s->count, lo); p < s->count && rc == 0; p++) {
        const struct idx_entry *e = store_gen_entry(s->g, p);
        if (e->uid > hi)
            break;
        if (FM_FLAGS(A_LOAD(&e->fm)) & ENT_EXPUNGED)
            continue;
        if (e->uid > next)
            rc = store_rangelist_push(out, next, e->uid - 1);
        next = e->uid + 1;
    }
    if (rc == 0 && next <= hi && next != 0)
        rc = store_rangelist_push(out, next, hi);
    return rc;
}
