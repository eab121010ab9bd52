/* store/write.c — appends, flag changes and expunges, with group commit.
 *
 * Every change is a log transaction written with one pwrite under the
 * writer lock, then applied to the index.  Writers queue up per mailbox;
 * whoever finds no leader becomes it, runs every queued operation and
 * issues one fdatasync for all of them (fsync = batch), so many sessions
 * appending at once share a disk flush.  Nobody is answered before the
 * flush that covers their records has returned.  A failed flush makes the
 * mailbox refuse writes: the kernel may have dropped the pages, and we
 * never claim durability we do not have. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "store/internal.h"
#include "store/stats.h"

#define A_LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define A_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

enum wop_kind { WOP_APPEND, WOP_FLAGS, WOP_EXPUNGE, WOP_RAISE };

struct wop {
    enum wop_kind kind;
    const store_new_msg *msgs;
    size_t n;
    uint32_t *uids_out;
    const store_range *set;
    size_t nset;
    store_flag_op op;
    uint32_t flags;
    const char *const *keywords;
    size_t nkeywords;
    uint64_t unchangedsince;
    uint32_t uidnext;           /* WOP_RAISE (and modseq) */
    bool only_deleted;
    store_uidlist *changed, *modified;
    uint64_t modseq;
    int rc;
    bool done;
    bool defer;                 /* skip the flush: the caller defers it */
    struct gen *dgen;           /* deferred: the log it must flush, to dend */
    uint64_t dend;
    struct wop *next;
};

void store_uidlist_free(store_uidlist *l)
{
    free(l->uids);
    l->uids = NULL;
    l->n = l->cap = 0;
}

int store_uidlist_add(store_uidlist *l, uint32_t uid)
{
    if (!l)
        return 0;
    if (l->n == l->cap) {
        size_t c = l->cap ? l->cap * 2 : 64;
        uint32_t *p = realloc(l->uids, c * sizeof *p);
        if (!p)
            return -ENOMEM;
        l->uids = p;
        l->cap = c;
    }
    l->uids[l->n++] = uid;
    return 0;
}

/* ---- building records ------------------------------------------------------ */

static int rec_begin(store_buf *b, size_t *at)
{
    static const uint8_t zero[8];
    size_t pad = ALIGN8(b->len) - b->len;
    int rc = store_buf_append(b, zero, pad);
    if (rc == 0) {
        *at = b->len;
        struct log_rec r = {0};
        rc = store_buf_append(b, &r, sizeof r);
    }
    return rc;
}

static void rec_end(store_buf *b, size_t at, uint16_t type, uint16_t rflags)
{
    struct log_rec *r = (struct log_rec *)(b->data + at);
    store_log_rec_seal(r, type, rflags, (uint32_t)(b->len - at - sizeof *r));
}

/* Slot of a keyword, adding a KEYWORD record to the transaction for a new
 * one.  pending[] holds names added earlier in this transaction. */
static int keyword_slot(struct idx_hdr *h, const char *name, store_buf *b,
                        const char **pending, unsigned *npending, int *slot)
{
    size_t len = strlen(name);
    if (len == 0 || len > STORE_MAX_KEYWORD_LEN)
        return -EINVAL;
    unsigned nk = A_LOAD(&h->nkeywords);
    for (unsigned i = 0; i < nk; i++)
        if (!strcasecmp(h->keywords[i], name)) {
            *slot = (int)i;
            return 0;
        }
    for (unsigned i = 0; i < *npending; i++)
        if (!strcasecmp(pending[i], name)) {
            *slot = (int)(nk + i);
            return 0;
        }
    if (nk + *npending >= STORE_MAX_KEYWORDS)
        return -EMLINK;     /* not -ENOSPC: that is a full disk (store.h) */
    size_t at = 0;
    struct log_keyword k = {.slot = nk + *npending, .len = (uint32_t)len};
    int rc;
    if ((rc = rec_begin(b, &at)) < 0 || (rc = store_buf_append(b, &k, sizeof k)) < 0 ||
        (rc = store_buf_append(b, name, len)) < 0)
        return rc;
    rec_end(b, at, LOG_KEYWORD, LOGF_CONT);
    *slot = (int)k.slot;
    pending[(*npending)++] = name;
    return 0;
}

static int keywords_mask(struct idx_hdr *h, const char *const *kw, size_t n,
                         store_buf *b, const char **pending, unsigned *npending,
                         uint64_t *mask)
{
    *mask = 0;
    for (size_t i = 0; i < n; i++) {
        int slot, rc = keyword_slot(h, kw[i], b, pending, npending, &slot);
        if (rc < 0)
            return rc;
        *mask |= 1ull << slot;
    }
    return 0;
}

/* What applying a transaction changes in the index header before the
 * transaction is published, so that a failed apply can be taken back. */
struct txn_undo {
    uint32_t uidnext, nkeywords, kw_crc;
    uint64_t highestmodseq, cache_end;
    char (*keywords)[IDX_KW_SLOT];  /* owned; a copy, if the txn adds any */
};

static int undo_save(struct idx_hdr *h, const store_buf *b, struct txn_undo *u)
{
    u->uidnext = A_LOAD(&h->uidnext);
    u->nkeywords = A_LOAD(&h->nkeywords);
    u->kw_crc = h->kw_crc;
    u->highestmodseq = A_LOAD(&h->highestmodseq);
    u->cache_end = A_LOAD(&h->cache_end);
    u->keywords = NULL;
    for (size_t off = 0; off < b->len;) {
        const struct log_rec *r = (const void *)(b->data + off);
        if (r->type == LOG_KEYWORD) {
            if (!(u->keywords = malloc(sizeof h->keywords)))
                return -ENOMEM;
            memcpy(u->keywords, h->keywords, sizeof h->keywords);
            break;
        }
        off += ALIGN8(sizeof *r + (uint64_t)r->len);
    }
    return 0;
}

static void undo_apply(struct idx_hdr *h, const struct txn_undo *u)
{
    if (u->keywords) {
        A_STORE(&h->nkeywords, u->nkeywords);
        memcpy(h->keywords, u->keywords, sizeof h->keywords);
        h->kw_crc = u->kw_crc;
    }
    A_STORE(&h->uidnext, u->uidnext);
    A_STORE(&h->highestmodseq, u->highestmodseq);
    A_STORE(&h->cache_end, u->cache_end);
}

/* Write a built transaction at the end of the log and apply it.
 *
 * All or nothing: a transaction the index could not take (no room for its
 * cache entries or index entries, a message the parser refuses) is cut from
 * the log again, so the caller's error stands.  Left in the log, it would
 * be applied by the next catch-up, and a client told NO would find the
 * message later, or twice after retrying.  The cut is flushed unless the
 * policy is `never`, or a power loss could bring the record back; if
 * it cannot be cut or flushed, the mailbox refuses writes (mb->failed),
 * as after a failed fsync. */
static int txn_commit(struct store_mbox *mb, store_buf *b)
{
    struct gen *g = mb->gen;
    struct idx_hdr *h = store_gen_hdr(g);
    uint64_t at = mb->log_end;
    static const uint8_t zero[8];
    struct txn_undo undo = {0};
    int rc = store_buf_append(b, zero, ALIGN8(b->len) - b->len);
    /* The writer lock is held, the mailbox still takes writes (run_batch
     * checks mb->failed before every operation) and the log ends on a
     * record boundary. */
    RM_ASSERT(pthread_mutex_trylock(&mb->wlock) == EBUSY);
    RM_ASSERT(!mb->failed && at % 8 == 0 && at >= LOG_HDR_SIZE);
    if (rc == 0)
        rc = undo_save(h, b, &undo);
    if (rc < 0)
        return rc;
    rc = store_fs_pwrite_all(g->log_fd, b->data, b->len, at);
    if (rc < 0)
        goto cut;
    mb->log_end = at + b->len;
    const uint8_t *base = store_mapchain_get(&g->log, 0, mb->log_end);
    if (!base) {
        rc = -ENOMEM;
        goto cut;
    }
    for (uint64_t off = at; off < mb->log_end;) {
        const struct log_rec *r = (const void *)(base + off);
        RM_ASSERT(off + ALIGN8(sizeof *r + (uint64_t)r->len) <= mb->log_end);
        if ((rc = store_idx_apply(mb, g, r, off)) < 0)
            goto cut;
        off += ALIGN8(sizeof *r + (uint64_t)r->len);
    }
    free(undo.keywords);
    return 0;
cut:
    /* Nothing of the transaction was published (store_idx_apply publishes at
     * its last record and forgot the pending entries), so no reader has
     * seen it; take back what reached the header and the files. */
    undo_apply(store_gen_hdr(g), &undo);
    free(undo.keywords);
    mb->log_end = at;
    if (ftruncate(g->log_fd, (off_t)at) < 0 ||
        (mb->user->opts.fsync != STORE_FSYNC_NEVER && fdatasync(g->log_fd) < 0))
        mb->failed = -EIO;
    uint64_t cend = undo.cache_end < CACHE_HDR_SIZE ? CACHE_HDR_SIZE : undo.cache_end;
    if (ftruncate(g->cache_fd, (off_t)cend) < 0) {
        /* harmless: bytes past cache_end are overwritten by the next entry */
    }
    return rc;
}

/* Mark the last record of a transaction as its end. */
static void txn_close(store_buf *b, size_t last_at)
{
    struct log_rec *r = (struct log_rec *)(b->data + last_at);
    store_log_rec_seal(r, r->type, r->rflags & ~LOGF_CONT, r->len);
}

/* ---- the operations (writer lock held) --------------------------------------- */

static size_t header_len(const char *p, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (p[i] != '\n')
            continue;
        if (p[i + 1] == '\n')
            return i + 2;
        if (p[i + 1] == '\r' && i + 2 < n && p[i + 2] == '\n')
            return i + 3;
    }
    if (n >= 2 && p[0] == '\r' && p[1] == '\n')
        return 2;
    return n;
}

/* Before the first MESSAGE record with an extension goes into a log of
 * version 1 or 2, raise its version (writer held).  The header is flushed
 * first, whatever the fsync policy: a binary that knows only the older
 * versions must find a version it refuses, never a record it would take
 * for damage.  Once per log; new logs start at LOG_VERSION_EXT. */
static int log_ext_ready(struct store_mbox *mb)
{
    struct gen *g = mb->gen;
    if (g->log_ext)
        return 0;
    struct log_file_hdr lh;
    int rc = store_log_hdr_read(g->log_fd, &lh);
    if (rc < 0)
        return rc;
    if (lh.version != LOG_VERSION_EXT) {
        lh.version = LOG_VERSION_EXT;
        store_log_hdr_seal(&lh);
        if ((rc = store_fs_pwrite_all(g->log_fd, &lh, sizeof lh, 0)) < 0)
            return rc;
        if (fdatasync(g->log_fd) < 0)
            return mb->failed = -EIO;   /* as any failed flush (write.c top) */
    }
    g->log_ext = true;
    return 0;
}

static int do_append(struct store_mbox *mb, struct wop *op)
{
    struct idx_hdr *h = store_gen_hdr(mb->gen);
    store_buf b = {0};
    const char *pending[STORE_MAX_KEYWORDS];
    unsigned npending = 0;
    uint32_t uid = A_LOAD(&h->uidnext);
    uint64_t modseq = A_LOAD(&h->highestmodseq) + 1;
    size_t last = 0;
    /* RFC 8514 3: the save date is "the current date and time at the
     * moment the message is saved in the mailbox", however it came. */
    int64_t now = time(NULL);
    uint32_t *uids = malloc(op->n * sizeof *uids);
    int rc = uids ? log_ext_ready(mb) : -ENOMEM;
    if (rc < 0)
        goto out;
    for (size_t i = 0; i < op->n; i++) {
        const store_new_msg *m = &op->msgs[i];
        if (m->len > UINT32_MAX - 4096) {
            rc = -EFBIG;
            goto out;
        }
        /* A given UID (a migration keeping the source's) may skip UIDs,
         * never go back: UIDs are strictly ascending (RFC 9051 2.3.1.1). */
        if (m->uid) {
            if (m->uid < uid) {
                rc = -ERANGE;
                goto out;
            }
            uid = m->uid;
        }
        if (uid == UINT32_MAX) {
            rc = -EOVERFLOW;    /* UIDs exhausted: needs a new UIDVALIDITY */
            goto out;
        }
        struct log_message lm = {0};
        if ((rc = keywords_mask(h, m->keywords, m->nkeywords, &b, pending,
                                &npending, &lm.keywords)) < 0)
            goto out;
        lm.uid = uid;
        lm.flags = m->flags & STORE_F_ALL;
        lm.modseq = modseq;
        lm.internal_date = m->internal_date ? m->internal_date : time(NULL);
        lm.tz_min = m->tz_min;
        lm.size = (uint32_t)m->len;
        lm.hdr_len = (uint32_t)header_len(m->data, m->len);
        lm.ext_len = sizeof(struct log_msg_ext);
        struct log_msg_ext x = {.email_mbox = m->email_uid ? m->email_mbox : mb->id,
                                .email_uid = m->email_uid ? m->email_uid : uid,
                                .email_uv = m->email_uid ? m->email_uv : h->uidvalidity,
                                .save_date = now};
        if ((rc = rec_begin(&b, &last)) < 0 ||
            (rc = store_buf_append(&b, &lm, sizeof lm)) < 0 ||
            (rc = store_buf_append(&b, m->data, m->len)) < 0 ||
            (rc = store_buf_append(&b, &x, sizeof x)) < 0)
            goto out;
        rec_end(&b, last, LOG_MESSAGE, LOGF_CONT);
        uids[i] = uid++;
    }
    if (op->n == 0)
        goto out;
    txn_close(&b, last);
    mb->hint = op->msgs;
    mb->hint_uids = uids;
    mb->nhint = op->n;
    mb->hint_next = 0;
    rc = txn_commit(mb, &b);
    mb->hint = NULL;
    mb->hint_uids = NULL;
    mb->nhint = 0;
    if (rc == 0 && op->uids_out)
        memcpy(op->uids_out, uids, op->n * sizeof *uids);
out:
    free(uids);
    free(b.data);
    return rc;
}

/* Raise UIDNEXT and HIGHESTMODSEQ without a message (a migrated mailbox
 * takes its source's UIDNEXT, UIDs being never reused, and at least its
 * HIGHESTMODSEQ: a client that synchronised with the source asks for the
 * changes since the value it holds (RFC 7162 3.1.4 CHANGEDSINCE, 3.2.5
 * QRESYNC), so every change made here after the move must get a greater
 * mod-sequence to be reported).  The log header's base_uidnext and base_modseq carry them: a
 * rebuild of the index starts from there, compaction copies the index's
 * values into the next log's header, and opening an index that a crash
 * left behind raises it (mbox.c).  The header is flushed unless the policy
 * is `never`.  0 leaves a value as it is. */
static int do_raise(struct store_mbox *mb, struct wop *op)
{
    struct gen *g = mb->gen;
    struct idx_hdr *h = store_gen_hdr(g);
    uint32_t cur = A_LOAD(&h->uidnext);
    uint64_t curm = A_LOAD(&h->highestmodseq);
    if ((op->uidnext && op->uidnext < cur) || (op->modseq && op->modseq < curm))
        return -ERANGE;     /* never down: UIDs and mod-sequences are not reused */
    bool up_uid = op->uidnext > cur, up_ms = op->modseq > curm;
    if (!up_uid && !up_ms)
        return 0;
    struct log_file_hdr lh;
    int rc = store_log_hdr_read(g->log_fd, &lh);
    if (rc < 0)
        return rc;
    if (up_uid)
        lh.base_uidnext = op->uidnext;
    if (up_ms)
        lh.base_modseq = op->modseq;
    store_log_hdr_seal(&lh);
    if ((rc = store_fs_pwrite_all(g->log_fd, &lh, sizeof lh, 0)) < 0)
        return rc;
    if (mb->user->opts.fsync != STORE_FSYNC_NEVER && fdatasync(g->log_fd) < 0)
        return mb->failed = -EIO;   /* as any failed flush (top of this file) */
    if (up_uid)
        A_STORE(&h->uidnext, op->uidnext);
    if (up_ms)
        A_STORE(&h->highestmodseq, op->modseq);
    return 0;
}

static int range_cmp(const void *a, const void *b)
{
    const store_range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Sort a client's UID set into ascending, disjoint, non-adjacent ranges.
 * O(n log n), and run before the writer lock is taken: the lock is held
 * only for the O(n) clip in norm_set.  NULL set (every UID) stays NULL.
 * *out is malloc'd, owned by the caller. */
static int sort_set(const store_range *set, size_t nset, store_range **out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    if (!set)
        return 0;
    store_range *r = malloc((nset ? nset : 1) * sizeof *r);
    if (!r)
        return -ENOMEM;
    bool sorted = true;
    for (size_t i = 0; i < nset; i++) {
        r[i].lo = set[i].lo < set[i].hi ? set[i].lo : set[i].hi;
        r[i].hi = set[i].lo < set[i].hi ? set[i].hi : set[i].lo;
        if (r[i].lo == 0)
            r[i].lo = 1;        /* UIDs start at 1; a 0:0 range stays empty */
        if (i && r[i].lo < r[i - 1].lo)
            sorted = false;
    }
    if (!sorted)
        qsort(r, nset, sizeof *r, range_cmp);
    size_t m = 0;
    for (size_t i = 0; i < nset; i++) {
        if (r[i].lo > r[i].hi)
            continue;
        if (m && (uint64_t)r[m - 1].hi + 1 >= r[i].lo) {
            if (r[i].hi > r[m - 1].hi)
                r[m - 1].hi = r[i].hi;
        } else {
            r[m++] = r[i];
        }
    }
    *out = r;
    *nout = m;
    return 0;
}

/* Clip a sorted set (sort_set's output, or NULL for every UID) to
 * [1, uidnext).  O(n): this runs under the writer lock. */
static int norm_set(const store_range *set, size_t nset, uint32_t uidnext,
                    struct log_range **out, size_t *nout)
{
    struct log_range *r = malloc((nset ? nset : 1) * sizeof *r);
    if (!r)
        return -ENOMEM;
    size_t n = 0;
    if (!set) {
        r[n++] = (struct log_range){1, uidnext ? uidnext - 1 : 0};
    } else {
        for (size_t i = 0; i < nset && set[i].lo < uidnext; i++) {
            RM_ASSERT(set[i].lo <= set[i].hi && (!i || set[i - 1].hi < set[i].lo));
            r[n++] = (struct log_range){set[i].lo,
                                        set[i].hi < uidnext ? set[i].hi : uidnext - 1};
        }
    }
    *out = r;
    *nout = n;
    return 0;
}

/* Append a UID to a growing range list (UIDs come in increasing order). */
static int ranges_add(store_buf *b, uint32_t uid, uint32_t *n)
{
    if (*n) {
        struct log_range *last = (struct log_range *)(b->data + b->len) - 1;
        if (last->hi + 1 == uid) {
            last->hi = uid;
            return 0;
        }
    }
    struct log_range r = {uid, uid};
    (*n)++;
    return store_buf_append(b, &r, sizeof r);
}

static int do_flags(struct store_mbox *mb, struct wop *op)
{
    struct gen *g = mb->gen;
    struct idx_hdr *h = store_gen_hdr(g);
    store_buf b = {0};
    const char *pending[STORE_MAX_KEYWORDS];
    unsigned npending = 0;
    struct log_range *set = NULL;
    size_t nset = 0;
    uint64_t kwmask;
    int rc = keywords_mask(h, op->keywords, op->nkeywords, &b, pending,
                           &npending, &kwmask);
    if (rc < 0)
        goto out;
    if ((rc = norm_set(op->set, op->nset, A_LOAD(&h->uidnext), &set, &nset)) < 0)
        goto out;
    size_t at = 0;
    struct log_flags lf = {0};
    lf.modseq = A_LOAD(&h->highestmodseq) + 1;
    lf.op = op->op;
    lf.flags = op->flags & STORE_F_ALL;
    lf.keywords = kwmask;
    if ((rc = rec_begin(&b, &at)) < 0 || (rc = store_buf_append(&b, &lf, sizeof lf)) < 0)
        goto out;
    uint32_t nr = 0, count = h->count;
    for (size_t i = 0; i < nset; i++) {
        for (uint32_t p = store_gen_lower_bound(g, count, set[i].lo); p < count; p++) {
            struct idx_entry *e = store_gen_entry(g, p);
            if (e->uid > set[i].hi)
                break;
            uint64_t fm = e->fm;
            uint32_t fl = FM_FLAGS(fm);
            if (fl & ENT_EXPUNGED)
                continue;
            if (op->unchangedsince && FM_MODSEQ(fm) > op->unchangedsince) {
                if ((rc = store_uidlist_add(op->modified, e->uid)) < 0)
                    goto out;
                continue;
            }
            uint32_t nf;
            uint64_t nk;
            switch (op->op) {
            case STORE_FLAGS_SET: nf = lf.flags; nk = kwmask; break;
            case STORE_FLAGS_ADD: nf = fl | lf.flags; nk = e->keywords | kwmask; break;
            default: nf = fl & ~lf.flags; nk = e->keywords & ~kwmask; break;
            }
            if (nf == fl && nk == e->keywords)
                continue;
            if ((rc = ranges_add(&b, e->uid, &nr)) < 0 ||
                (rc = store_uidlist_add(op->changed, e->uid)) < 0)
                goto out;
        }
    }
    if (nr == 0) {
        op->modseq = 0;     /* nothing changed: no record, no new modseq */
        goto out;
    }
    RM_ASSERT(at + sizeof(struct log_rec) + sizeof lf <= b.len);
    ((struct log_flags *)(b.data + at + sizeof(struct log_rec)))->nranges = nr;
    rec_end(&b, at, LOG_FLAGS, 0);
    if ((rc = txn_commit(mb, &b)) == 0)
        op->modseq = lf.modseq;
out:
    free(set);
    free(b.data);
    return rc;
}

static int do_expunge(struct store_mbox *mb, struct wop *op)
{
    struct gen *g = mb->gen;
    struct idx_hdr *h = store_gen_hdr(g);
    store_buf b = {0};
    struct log_range *set = NULL;
    size_t nset = 0, at = 0;
    int rc = norm_set(op->set, op->nset, A_LOAD(&h->uidnext), &set, &nset);
    if (rc < 0)
        goto out;
    struct log_expunge lx = {.modseq = A_LOAD(&h->highestmodseq) + 1};
    if ((rc = rec_begin(&b, &at)) < 0 || (rc = store_buf_append(&b, &lx, sizeof lx)) < 0)
        goto out;
    uint32_t nr = 0, count = h->count;
    for (size_t i = 0; i < nset; i++) {
        for (uint32_t p = store_gen_lower_bound(g, count, set[i].lo); p < count; p++) {
            struct idx_entry *e = store_gen_entry(g, p);
            if (e->uid > set[i].hi)
                break;
            uint32_t fl = FM_FLAGS(e->fm);
            if ((fl & ENT_EXPUNGED) || (op->only_deleted && !(fl & STORE_F_DELETED)))
                continue;
            if ((rc = ranges_add(&b, e->uid, &nr)) < 0 ||
                (rc = store_uidlist_add(op->changed, e->uid)) < 0)
                goto out;
        }
    }
    if (nr == 0) {
        op->modseq = 0;
        goto out;
    }
    RM_ASSERT(at + sizeof(struct log_rec) + sizeof lx <= b.len);
    ((struct log_expunge *)(b.data + at + sizeof(struct log_rec)))->nranges = nr;
    rec_end(&b, at, LOG_EXPUNGE, 0);
    if ((rc = txn_commit(mb, &b)) == 0)
        op->modseq = lx.modseq;
out:
    free(set);
    free(b.data);
    return rc;
}

/* ---- group commit -------------------------------------------------------------- */

static int run_op(struct store_mbox *mb, struct wop *op)
{
    switch (op->kind) {
    case WOP_APPEND: return do_append(mb, op);
    case WOP_RAISE: return do_raise(mb, op);
    case WOP_FLAGS: return do_flags(mb, op);
    default: return do_expunge(mb, op);
    }
}

static void run_batch(struct store_mbox *mb, struct wop *batch)
{
    int rc = mb->failed ? mb->failed : store_mbox_wlock(mb);
    /* A frozen user (freeze.c) writes nothing; looked for under the lock,
     * which the freezer's barrier takes after making the file. */
    if (rc == 0 && (rc = store_user_check_frozen(mb->user->root)) < 0)
        store_mbox_wunlock(mb);
    if (rc < 0) {
        for (struct wop *o = batch; o; o = o->next)
            o->rc = rc;
        return;
    }
    struct gen *g = mb->gen;    /* stable: swapped only under the lock */
    if (!mb->failed && atomic_load(&g->sync_failed))
        mb->failed = atomic_load(&g->sync_failed);
    store_fsync pol = mb->user->opts.fsync;
    uint64_t start = mb->log_end;
    bool inline_sync = false;   /* somebody in the batch waits for the disk */
    for (struct wop *o = batch; o; o = o->next) {
        o->rc = mb->failed ? mb->failed : run_op(mb, o);
        if (o->rc == 0 && pol == STORE_FSYNC_ALWAYS && !o->defer &&
            mb->log_end != start && store_stat_fdatasync(g->log_fd) < 0)
            mb->failed = o->rc = -EIO;
        inline_sync |= !o->defer;
    }
    RM_ASSERT(mb->log_end >= start);    /* a cut transaction goes back to its start */
    RM_ASSERT(g == mb->gen);            /* swapped only under the lock we hold */
    atomic_store(&g->written, mb->log_end);
    if (pol != STORE_FSYNC_NEVER && mb->log_end != start) {
        if (inline_sync && !mb->failed) {
            if (store_stat_fdatasync(g->log_fd) < 0) {
                mb->failed = -EIO;
                for (struct wop *o = batch; o; o = o->next)
                    o->rc = -EIO;
            } else {
                atomic_store(&g->synced, mb->log_end);
            }
        }
        for (struct wop *o = batch; o; o = o->next) {
            if (o->rc == 0 && o->defer) {
                atomic_fetch_add(&g->refs, 1);
                o->dgen = g;
                o->dend = mb->log_end;
            }
        }
    }
    store_mbox_wunlock(mb);
}

/* The store_defer of this thread between store_defer_begin and _end. */
static __thread store_defer *tls_defer;

void store_defer_begin(store_defer *d)
{
    d->n = 0;
    tls_defer = d;
}

void store_defer_end(void)
{
    tls_defer = NULL;
}

static void defer_add(store_defer *d, struct gen *g, uint64_t end)
{
    for (size_t i = 0; i < d->n; i++) {
        if (d->e[i].gen == g) {
            if (d->e[i].end < end)
                d->e[i].end = end;
            store_gen_put(g);
            return;
        }
    }
    RM_ASSERT(d->n < STORE_DEFER_MAX);
    d->e[d->n].gen = g;        /* submit checked there is room */
    d->e[d->n++].end = end;
}

int store_defer_sync(store_defer *d)
{
    int rc = 0;
    for (size_t i = 0; i < d->n; i++) {
        struct gen *g = d->e[i].gen;
        if (atomic_load(&g->synced) >= d->e[i].end)
            continue;
        pthread_mutex_lock(&g->slock);
        /* Whoever flushed while we waited may have covered us; otherwise
         * one flush covers everything written so far (group commit). */
        if (atomic_load(&g->synced) < d->e[i].end) {
            int failed = atomic_load(&g->sync_failed);
            uint64_t target = atomic_load(&g->written);
            if (failed)
                rc = failed;
            else if (store_stat_fdatasync(g->log_fd) < 0)
                atomic_store(&g->sync_failed, rc = -EIO);
            else if (atomic_load(&g->synced) < target)
                atomic_store(&g->synced, target);
        }
        pthread_mutex_unlock(&g->slock);
    }
    return rc;
}

void store_defer_release(store_defer *d)
{
    for (size_t i = 0; i < d->n; i++)
        store_gen_put(d->e[i].gen);
    d->n = 0;
}

static int submit(struct store_mbox *mb, struct wop *op)
{
    store_defer *d = tls_defer;
    op->defer = d && d->n < STORE_DEFER_MAX;
    pthread_mutex_lock(&mb->qlock);
    op->next = NULL;
    *mb->qtail = op;
    mb->qtail = &op->next;
    while (!op->done) {
        if (mb->leader) {
            pthread_cond_wait(&mb->qcond, &mb->qlock);
            continue;
        }
        mb->leader = 1;
        struct wop *batch = mb->qhead;
        mb->qhead = NULL;
        mb->qtail = &mb->qhead;
        pthread_mutex_unlock(&mb->qlock);
        run_batch(mb, batch);
        pthread_mutex_lock(&mb->qlock);
        for (struct wop *o = batch, *nx; o; o = nx) {
            nx = o->next;
            o->done = true;
        }
        mb->leader = 0;
        pthread_cond_broadcast(&mb->qcond);
    }
    pthread_mutex_unlock(&mb->qlock);
    RM_ASSERT(op->done && (!op->dgen || d));    /* a deferred op had a collector */
    if (op->dgen)
        defer_add(d, op->dgen, op->dend);
    return op->rc;
}

int store_append(store_mbox *mb, const store_new_msg *msgs, size_t n,
                 uint32_t *uids_out)
{
    if (!n)
        return 0;
    /* Parse here, in the caller's thread, so that the mailbox's writers do
     * not wait for it under the lock (the apply step takes these blobs). */
    store_new_msg *own = malloc(n * sizeof *own);
    store_buf *blobs = calloc(n, sizeof *blobs);
    int rc = 0;
    if (!own || !blobs) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        own[i] = msgs[i];
        if (own[i].cache || msgs[i].len > UINT32_MAX)
            continue;
        if (store_msg_parse(msgs[i].data, msgs[i].len, &blobs[i]) == 0) {
            own[i].cache = blobs[i].data;
            own[i].cache_len = blobs[i].len;
        }   /* else the apply step parses it and reports the error */
    }
    struct wop op = {.kind = WOP_APPEND, .msgs = own, .n = n, .uids_out = uids_out};
    rc = submit(mb, &op);
    store_stats *st = store_stats_get();
    if (rc == 0 && st) {
        uint64_t bytes = 0;
        for (size_t i = 0; i < n; i++)
            bytes += msgs[i].len;
        atomic_fetch_add_explicit(&st->appended, n, memory_order_relaxed);
        atomic_fetch_add_explicit(&st->appended_bytes, bytes, memory_order_relaxed);
    }
out:
    for (size_t i = 0; blobs && i < n; i++)
        free(blobs[i].data);
    free(blobs);
    free(own);
    return rc;
}

int store_mbox_set_uidnext(store_mbox *mb, uint32_t uidnext)
{
    if (uidnext == 0 || uidnext == UINT32_MAX)
        return -ERANGE;
    struct wop op = {.kind = WOP_RAISE, .uidnext = uidnext};
    return submit(mb, &op);
}

int store_mbox_set_highestmodseq(store_mbox *mb, uint64_t modseq)
{
    /* an index entry keeps 56 bits of modseq (FM_MAKE); RFC 7162 allows 63 */
    if (modseq == 0 || modseq >= (1ull << 56))
        return -ERANGE;
    struct wop op = {.kind = WOP_RAISE, .modseq = modseq};
    return submit(mb, &op);
}

int store_flags(store_mbox *mb, const store_range *set, size_t nset,
                store_flag_op fop, uint32_t flags, const char *const *keywords,
                size_t nkeywords, uint64_t unchangedsince,
                store_uidlist *changed, store_uidlist *modified,
                uint64_t *modseq)
{
    if (fop > STORE_FLAGS_REMOVE || (!set && nset))
        return -EINVAL;
    store_range *sorted;
    size_t nsorted;
    int rc = sort_set(set, nset, &sorted, &nsorted);
    if (rc < 0)
        return rc;
    struct wop op = {.kind = WOP_FLAGS, .set = sorted, .nset = nsorted, .op = fop,
                     .flags = flags, .keywords = keywords, .nkeywords = nkeywords,
                     .unchangedsince = unchangedsince, .changed = changed,
                     .modified = modified};
    rc = set ? submit(mb, &op) : 0;
    free(sorted);
    if (modseq)
        *modseq = rc == 0 ? op.modseq : 0;
    return rc;
}

int store_expunge(store_mbox *mb, const store_range *set, size_t nset,
                  bool only_deleted, store_uidlist *expunged, uint64_t *modseq)
{
    store_range *sorted;
    size_t nsorted;
    int rc = sort_set(set, nset, &sorted, &nsorted);
    if (rc < 0)
        return rc;
    struct wop op = {.kind = WOP_EXPUNGE, .set = sorted, .nset = nsorted,
                     .only_deleted = only_deleted, .changed = expunged};
    rc = submit(mb, &op);
    free(sorted);
    if (modseq)
        *modseq = rc == 0 ? op.modseq : 0;
    return rc;
}

/* The messages a COPY reads from its source snapshot.  Owns the arrays;
 * message bytes and keyword names point into the snapshot.  While it is
 * being filled, msgs[i].keywords holds an offset into kwv (kwv may move as
 * it grows), resolved to a pointer by copy_collect(). */
struct copy_batch {
    store_new_msg *msgs;
    uint32_t *srcv;             /* source UID of each message */
    size_t n, cap;
    const char **kwv;           /* keyword names of all messages in a row */
    size_t nkw, kwcap;
};

static void copy_batch_free(struct copy_batch *b)
{
    free(b->msgs);
    free(b->srcv);
    free(b->kwv);
}

/* Keywords go by name: slots differ between mailboxes. */
static int copy_batch_keywords(struct copy_batch *b, store_snap *s,
                               uint64_t keywords)
{
    for (unsigned k = 0; k < STORE_MAX_KEYWORDS; k++) {
        if (!(keywords & (1ull << k)) || !store_snap_keyword(s, k))
            continue;
        if (b->nkw == b->kwcap) {
            size_t cap = b->kwcap ? b->kwcap * 2 : 64;
            const char **nk = realloc(b->kwv, cap * sizeof *nk);
            if (!nk)
                return -ENOMEM;
            b->kwv = nk;
            b->kwcap = cap;
        }
        b->kwv[b->nkw++] = store_snap_keyword(s, k);
    }
    return 0;
}

static int copy_batch_add(struct copy_batch *b, store_snap *s,
                          const store_msg *m, bool same_user)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 16;
        store_new_msg *nm = realloc(b->msgs, b->cap * sizeof *nm);
        uint32_t *ns = realloc(b->srcv, b->cap * sizeof *ns);
        if (nm)
            b->msgs = nm;
        if (ns)
            b->srcv = ns;
        if (!nm || !ns)
            return -ENOMEM;
    }
    const char *ptr;
    size_t got;
    int rc = store_snap_bytes(s, m->uid, 0, SIZE_MAX, &ptr, &got);
    if (rc < 0)
        return rc;
    size_t kw0 = b->nkw;
    if ((rc = copy_batch_keywords(b, s, m->keywords)) < 0)
        return rc;
    b->msgs[b->n] = (store_new_msg){.data = ptr, .len = got,
                                    .internal_date = m->internal_date,
                                    .tz_min = m->tz_min, .flags = m->flags,
                                    .keywords = (const char *const *)(uintptr_t)kw0,
                                    .nkeywords = b->nkw - kw0};
    /* The copy's cache entry is the original's (no second parse); the apply
     * step checks it and parses if it is of an older version. */
    store_cache c;
    if (store_snap_cache(s, m->uid, &c) == 0) {
        b->msgs[b->n].cache = c.blob;
        b->msgs[b->n].cache_len = c.len;
    }
    /* RFC 8474 5.1: "The server MUST return the same EMAILID as the
     * source message for the matching destination message in the COPYUID
     * pairing after a COPY or MOVE command".  Only within one user: ids
     * are unique per user, and another user's store may hold the same
     * triple (UIDVALIDITY may repeat across users) for another message. */
    store_msg_ext x;
    if (same_user && store_snap_msg_ext(s, m->uid, &x) == 0) {
        b->msgs[b->n].email_mbox = x.email_mbox;
        b->msgs[b->n].email_uid = x.email_uid;
        b->msgs[b->n].email_uv = x.email_uv;
    }
    b->srcv[b->n++] = m->uid;
    return 0;
}

/* Every live message of the set in the snapshot, in UID order. */
static int copy_collect(store_snap *s, const store_range *set, size_t nset,
                        bool same_user, struct copy_batch *b)
{
    struct log_range *rs = NULL;
    size_t nrs = 0, nsorted = 0;
    store_range *sorted = NULL;
    int rc = sort_set(set, nset, &sorted, &nsorted);
    if (rc < 0)
        goto out;
    if ((rc = norm_set(sorted, nsorted, store_snap_uidnext(s), &rs, &nrs)) < 0)
        goto out;
    uint32_t count = store_snap_entries(s);
    for (size_t i = 0; i < nrs; i++) {
        for (uint32_t p = store_gen_lower_bound(s->g, count, rs[i].lo); p < count; p++) {
            store_msg m;
            int live = store_snap_entry(s, p, &m);
            if (m.uid > rs[i].hi)
                break;
            if (live && (rc = copy_batch_add(b, s, &m, same_user)) < 0)
                goto out;
        }
    }
    for (size_t i = 0; i < b->n; i++) {
        store_new_msg *nm = &b->msgs[i];
        nm->keywords = nm->nkeywords ? b->kwv + (uintptr_t)nm->keywords : NULL;
    }
out:
    free(sorted);
    free(rs);
    return rc;
}

/* MOVE, after the copies are durable: expunge the originals.  If that
 * fails, take the copies back and the UID lists to their lengths before
 * (src0, dst0). */
static int move_expunge_originals(store_mbox *src, store_mbox *dst,
                                  const struct copy_batch *b,
                                  const uint32_t *uids,
                                  store_uidlist *src_uids, size_t src0,
                                  store_uidlist *dst_uids, size_t dst0)
{
    size_t n = b->n;
    store_range *xs = malloc(n * sizeof *xs);
    if (!xs)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        xs[i] = (store_range){b->srcv[i], b->srcv[i]};
    int rc = store_expunge(src, xs, n, false, NULL, NULL);
    if (rc < 0) {
        /* RFC 6851 3.3: a failed MOVE should leave no message in both
         * mailboxes (a retry would duplicate them): take the copies
         * back.  If that fails too, both stay: never neither. */
        for (size_t i = 0; i < n; i++)
            xs[i] = (store_range){uids[i], uids[i]};
        store_expunge(dst, xs, n, false, NULL, NULL);
        if (src_uids)
            src_uids->n = src0;
        if (dst_uids)
            dst_uids->n = dst0;
    }
    free(xs);
    return rc;
}

/* COPY and MOVE: read the source through a snapshot, append to the target
 * as one transaction, and for MOVE expunge the originals once the copies
 * are durable. */
int store_copy(store_mbox *src, const store_range *set, size_t nset,
               store_mbox *dst, bool move, store_uidlist *src_uids,
               store_uidlist *dst_uids)
{
    store_snap *s = store_snap_get(src);
    if (!s)
        return -ENOMEM;
    struct copy_batch b = {0};
    uint32_t *uids = NULL;
    int rc = copy_collect(s, set, nset, src->user == dst->user, &b);
    if (rc < 0 || b.n == 0)
        goto out;
    if (!(uids = malloc(b.n * sizeof *uids))) {
        rc = -ENOMEM;
        goto out;
    }
    /* MOVE: the copies must be on disk before the originals go, so their
     * flush is never deferred (a crash in between must not lose both). */
    store_defer *d = tls_defer;
    if (move)
        tls_defer = NULL;
    rc = store_append(dst, b.msgs, b.n, uids);
    tls_defer = d;
    if (rc < 0)
        goto out;
    size_t su0 = src_uids ? src_uids->n : 0, du0 = dst_uids ? dst_uids->n : 0;
    for (size_t i = 0; i < b.n; i++) {
        if ((src_uids && (rc = store_uidlist_add(src_uids, b.srcv[i])) < 0) ||
            (dst_uids && (rc = store_uidlist_add(dst_uids, uids[i])) < 0))
            goto out;
    }
    if (move)
        rc = move_expunge_originals(src, dst, &b, uids, src_uids, su0,
                                    dst_uids, du0);
out:
    store_snap_put(s);
    copy_batch_free(&b);
    free(uids);
    return rc;
}
