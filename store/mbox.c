/* store/mbox.c — opening a mailbox, recovery, and applying log records to
 * the index.
 *
 * The log is the truth; the index and cache are derived.  Opening trusts
 * the index when its header is sane and was written in this boot (or was
 * checkpointed to disk after its last change), applies any log records
 * beyond what it has seen, and cuts a torn tail.  Anything else — a missing,
 * truncated or inconsistent index, a power loss since the last checkpoint —
 * rebuilds index and cache from the log. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/internal.h"

#define A_LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define A_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

int store_mbox_path(const struct store_mbox *mb, char *buf, size_t n,
                   const char *fmt, uint64_t arg)
{
    char name[64];
    snprintf(name, sizeof name, fmt, arg);
    if ((size_t)snprintf(buf, n, "%s/%s", mb->dir, name) >= n)
        return -ENAMETOOLONG;
    return 0;
}

uint32_t store_entry_crc(const struct idx_entry *e)
{
    struct idx_entry c = *e;
    c.fm = 0;
    c.keywords = 0;
    c.crc = 0;
    return store_crc32c(0, &c, sizeof c);
}

struct idx_entry *store_gen_entry(struct gen *g, uint32_t pos)
{
    return (struct idx_entry *)store_mapchain_get(
        &g->idx, IDX_HDR_SIZE + (uint64_t)pos * sizeof(struct idx_entry),
        sizeof(struct idx_entry));
}

uint32_t store_gen_lower_bound(struct gen *g, uint32_t count, uint32_t uid)
{
    uint32_t lo = 0, hi = count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (store_gen_entry(g, mid)->uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int64_t store_gen_find(struct gen *g, uint32_t count, uint32_t uid)
{
    uint32_t p = store_gen_lower_bound(g, count, uid);
    if (p < count && store_gen_entry(g, p)->uid == uid)
        return p;
    return -1;
}

/* ---- generations -------------------------------------------------------- */

static void gen_free(struct gen *g)
{
    if (!g)
        return;
    if (g->tomb && atomic_fetch_sub(&g->tomb->refs, 1) == 1) {
        free(g->tomb->pos);
        free(g->tomb);
    }
    if (atomic_load(&g->log.cur))
        store_mapchain_destroy(&g->log);
    if (atomic_load(&g->idx.cur))
        store_mapchain_destroy(&g->idx);
    if (atomic_load(&g->cache.cur))
        store_mapchain_destroy(&g->cache);
    if (g->log_fd >= 0)
        close(g->log_fd);
    if (g->idx_fd >= 0)
        close(g->idx_fd);
    if (g->cache_fd >= 0)
        close(g->cache_fd);
    store_seen_free(g);
    store_memo_free(g);
    store_since_free(g);
    pthread_mutex_destroy(&g->tlock);
    pthread_mutex_destroy(&g->slock);
    pthread_mutex_destroy(&g->seenlock);
    pthread_mutex_destroy(&g->memolock);
    pthread_mutex_destroy(&g->qlock);
    free(g);
}

void store_gen_put(struct gen *g)
{
    RM_ASSERT(!g || atomic_load(&g->refs) > 0);     /* the caller's reference */
    if (g && atomic_fetch_sub(&g->refs, 1) == 1)
        gen_free(g);
}

struct gen *store_mbox_gen_get(struct store_mbox *mb)
{
    pthread_mutex_lock(&mb->glock);
    struct gen *g = mb->gen;
    RM_ASSERT(g && atomic_load(&g->refs) > 0);      /* the mailbox holds one */
    atomic_fetch_add(&g->refs, 1);
    pthread_mutex_unlock(&mb->glock);
    return g;
}

void store_mbox_gen_install(struct store_mbox *mb, struct gen *g)
{
    pthread_mutex_lock(&mb->glock);
    struct gen *old = mb->gen;
    mb->gen = g;
    /* Installing the current one again would drop its last reference. */
    RM_ASSERT(g && g != old && atomic_load(&g->refs) > 0);
    pthread_mutex_unlock(&mb->glock);
    store_gen_put(old);
}

static int file_size(int fd, uint64_t *size)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    *size = (uint64_t)st.st_size;
    return 0;
}

/* Allocate the index file's blocks up to `size` (growing the file) before
 * anything is stored through its shared writable mapping.  A store into a
 * page the file system cannot back (a sparse hole on a full disk) is a
 * SIGBUS, not an error: the file must never be grown with ftruncate and then
 * written through the map.  posix_fallocate reports ENOSPC instead; it also
 * fills the holes of an index grown sparsely by an earlier version, since it
 * covers the file from 0.  Blocks already allocated cost nothing. */
static int idx_alloc(struct gen *g, uint64_t size)
{
    if (size <= g->idx_alloc)
        return 0;
    int e;
    do
        e = posix_fallocate(g->idx_fd, 0, (off_t)size);
    while (e == EINTR);
    if (e)
        return -e;
    g->idx_alloc = size;
    return 0;
}

/* Open (or with O_CREAT in flags, create) a generation's three files at
 * explicit paths and map them. */
int store_gen_open_paths(const char *logp, const char *idxp,
                          const char *cachep, int oflags, struct gen **out)
{
    struct gen *g = calloc(1, sizeof *g);
    if (!g)
        return -ENOMEM;
    atomic_init(&g->refs, 1);
    g->log_fd = g->idx_fd = g->cache_fd = -1;
    pthread_mutex_init(&g->tlock, NULL);
    pthread_mutex_init(&g->seenlock, NULL);
    pthread_mutex_init(&g->memolock, NULL);
    pthread_mutex_init(&g->slock, NULL);
    pthread_mutex_init(&g->qlock, NULL);
    int rc = 0;
    uint64_t lsz, isz, csz;
    g->log_fd = open(logp, O_RDWR | O_CLOEXEC);
    if (g->log_fd < 0) {
        rc = -errno;
        goto fail;
    }
    g->idx_fd = open(idxp, O_RDWR | O_CLOEXEC | oflags, 0600);
    g->cache_fd = open(cachep, O_RDWR | O_CLOEXEC | oflags, 0600);
    if (g->idx_fd < 0 || g->cache_fd < 0) {
        rc = -errno;
        goto fail;
    }
    if ((rc = file_size(g->log_fd, &lsz)) < 0 ||
        (rc = file_size(g->idx_fd, &isz)) < 0 ||
        (rc = file_size(g->cache_fd, &csz)) < 0)
        goto fail;
    if (isz < IDX_HDR_SIZE) {
        if (!(oflags & O_CREAT)) {
            rc = -EBADMSG;
            goto fail;
        }
        if ((rc = idx_alloc(g, IDX_HDR_SIZE + 64 * sizeof(struct idx_entry))) < 0)
            goto fail;
        isz = IDX_HDR_SIZE;
    }
    if ((rc = store_mapchain_init(&g->log, g->log_fd, PROT_READ, lsz)) < 0 ||
        (rc = store_mapchain_init(&g->idx, g->idx_fd, PROT_READ | PROT_WRITE, isz)) < 0 ||
        (rc = store_mapchain_init(&g->cache, g->cache_fd, PROT_READ, csz)) < 0)
        goto fail;
    *out = g;
    return 0;
fail:
    gen_free(g);
    return rc;
}

/* Open a generation's files; create = make fresh ones. */
static int gen_open(struct store_mbox *mb, uint64_t generation,
                    struct gen **out)
{
    char logp[PATH_MAX], idxp[PATH_MAX], cachep[PATH_MAX];
    int rc;
    if ((rc = store_mbox_path(mb, logp, sizeof logp, "log.%" PRIu64, generation)) < 0 ||
        (rc = store_mbox_path(mb, idxp, sizeof idxp, "index", 0)) < 0 ||
        (rc = store_mbox_path(mb, cachep, sizeof cachep, "cache.%" PRIu64, generation)) < 0)
        return rc;
    rc = store_gen_open_paths(logp, idxp, cachep, 0, out);
    if (rc == 0)
        (*out)->generation = generation;
    return rc;
}

/* ---- index and cache growth --------------------------------------------- */

/* Make room in the index file for `count` entries. */
static int idx_reserve(struct gen *g, uint32_t count)
{
    uint64_t need = IDX_HDR_SIZE + (uint64_t)count * sizeof(struct idx_entry);
    if (need <= g->idx_alloc)
        return 0;
    uint64_t size = 0;          /* inlined static, gcc cannot see -errno < 0 */
    int rc = file_size(g->idx_fd, &size);
    if (rc < 0)
        return rc;
    uint64_t n = size < 4096 ? 4096 : size;
    while (n < need)
        n = n < (64u << 20) ? n * 2 : n + (64u << 20);
    if ((rc = idx_alloc(g, n)) < 0)
        return rc;
    return store_mapchain_get(&g->idx, 0, need) ? 0 : -ENOMEM;
}

/* Append a cache entry for the message; returns offset in *off. */
static int cache_add(struct gen *g, const char *raw, size_t len, const store_new_msg *hint,
                     uint64_t *off, uint32_t *clen)
{
    struct idx_hdr *h = store_gen_hdr(g);
    store_buf b = {0};
    struct cache_rec cr = {0};
    int rc = store_buf_append(&b, &cr, sizeof cr);
    store_cache view;
    /* A blob made before the lock is used when it opens and describes a
     * message of this length (a wrong one is parsed again, not trusted). */
    if (rc == 0 && hint && hint->cache &&
        store_cache_open(hint->cache, hint->cache_len, &view) == 0 &&
        store_cache_is_current(&view) && store_cache_msg_len(&view) == len)
        rc = store_buf_append(&b, hint->cache, view.len);
    else if (rc == 0)
        rc = store_msg_parse(raw, len, &b);
    if (rc < 0)
        goto out;
    cr.len = (uint32_t)(b.len - sizeof cr);
    cr.crc = store_crc32c(0, b.data + sizeof cr, cr.len);
    memcpy(b.data, &cr, sizeof cr);
    static const uint8_t zero[8];
    size_t pad = ALIGN8(b.len) - b.len;
    if ((rc = store_buf_append(&b, zero, pad)) < 0)
        goto out;
    uint64_t at = h->cache_end;
    if (at < CACHE_HDR_SIZE)
        at = CACHE_HDR_SIZE;
    if ((rc = store_fs_pwrite_all(g->cache_fd, b.data, b.len, at)) < 0)
        goto out;
    *off = at;
    *clen = cr.len;
    A_STORE(&h->cache_end, at + b.len);
out:
    free(b.data);
    return rc;
}

/* ---- applying records ------------------------------------------------------ */

static void count_flags(struct idx_hdr *h, uint32_t flags, int dir)
{
    if (!(flags & STORE_F_SEEN))
        A_STORE(&h->unseen, h->unseen + (uint32_t)dir);
    if (flags & STORE_F_DELETED)
        A_STORE(&h->deleted, h->deleted + (uint32_t)dir);
}

static void bump_modseq(struct idx_hdr *h, uint64_t m)
{
    if (m > h->highestmodseq)
        A_STORE(&h->highestmodseq, m);
}

static int apply_message(struct store_mbox *mb, struct gen *g, struct idx_hdr *h,
                         const struct log_rec *r, uint64_t off)
{
    struct log_message m;
    memcpy(&m, r + 1, sizeof m);
    uint32_t count = h->count + g->pend;
    RM_ASSERT(m.uid != 0 && m.hdr_len <= m.size);   /* log_rec_check */
    if (count && store_gen_entry(g, count - 1)->uid >= m.uid)
        return 0;   /* already applied (replay after a crash) */
    const char *raw = (const char *)(r + 1) + sizeof m;
    struct idx_entry e = {0};
    const store_new_msg *hint = NULL;
    if (mb && mb->hint && mb->hint_next < mb->nhint && mb->hint_uids[mb->hint_next] == m.uid)
        hint = &mb->hint[mb->hint_next++];
    int rc = cache_add(g, raw, m.size, hint, &e.cache_off, &e.cache_len);
    if (rc < 0)
        return rc;
    if ((rc = idx_reserve(g, count + 1)) < 0)
        return rc;
    h = store_gen_hdr(g);
    e.uid = m.uid;
    e.size = m.size;
    e.fm = FM_MAKE(m.modseq, m.flags & STORE_F_ALL);
    e.keywords = m.keywords;
    e.log_off = off;
    e.internal_date = m.internal_date;
    e.hdr_len = m.hdr_len;
    e.tz_min = m.tz_min;
    e.crc = store_entry_crc(&e);
    *store_gen_entry(g, count) = e;
    g->pend++;
    if (m.uid >= h->uidnext)
        A_STORE(&h->uidnext, m.uid + 1);
    bump_modseq(h, m.modseq);
    /* Counters move with the count, at publication (see store_idx_apply). */
    g->pend_messages.unseen += !(m.flags & STORE_F_SEEN);
    g->pend_messages.deleted += !!(m.flags & STORE_F_DELETED);
    g->pend_messages.size += m.size;
    return 0;
}

static uint64_t rec_bytes(const struct log_rec *r)
{
    return ALIGN8(sizeof *r + (uint64_t)r->len);
}

static void apply_flags(struct gen *g, struct idx_hdr *h,
                        const struct log_rec *r)
{
    struct log_flags f;
    memcpy(&f, r + 1, sizeof f);
    const uint8_t *rp = (const uint8_t *)(r + 1) + sizeof f;
    uint32_t count = h->count;
    for (uint32_t i = 0; i < f.nranges; i++) {
        struct log_range rg;
        memcpy(&rg, rp + i * sizeof rg, sizeof rg);
        for (uint32_t p = store_gen_lower_bound(g, count, rg.lo); p < count; p++) {
            struct idx_entry *e = store_gen_entry(g, p);
            if (e->uid > rg.hi)
                break;
            uint64_t fm = A_LOAD(&e->fm);
            uint32_t fl = FM_FLAGS(fm);
            if (fl & ENT_EXPUNGED)
                continue;
            uint32_t nf = fl;
            uint64_t kw = A_LOAD(&e->keywords), nk = kw;
            switch (f.op) {
            case STORE_FLAGS_SET: nf = f.flags; nk = f.keywords; break;
            case STORE_FLAGS_ADD: nf = fl | f.flags; nk = kw | f.keywords; break;
            default: nf = fl & ~f.flags; nk = kw & ~f.keywords; break;
            }
            count_flags(h, fl, -1);
            count_flags(h, nf, 1);
            A_STORE(&e->keywords, nk);
            A_STORE(&e->fm, FM_MAKE(f.modseq, nf));
        }
    }
    bump_modseq(h, f.modseq);
    A_STORE(&h->dead_bytes, h->dead_bytes + rec_bytes(r));
}

/* The log bytes of an entry's MESSAGE record, its extension included
 * (read from the record; without it, as an older record). */
static uint64_t msg_rec_bytes(struct gen *g, const struct idx_entry *e)
{
    uint64_t n = sizeof(struct log_rec) + sizeof(struct log_message) + e->size;
    const uint8_t *p = store_mapchain_get(&g->log, e->log_off + sizeof(struct log_rec),
                                          sizeof(struct log_message));
    if (p) {
        struct log_message m;
        memcpy(&m, p, sizeof m);
        if (m.uid == e->uid && m.ext_len <= LOG_MSG_EXT_MAX)
            n += m.ext_len;
    }
    return ALIGN8(n);
}

static void apply_expunge(struct gen *g, struct idx_hdr *h,
                          const struct log_rec *r)
{
    struct log_expunge x;
    memcpy(&x, r + 1, sizeof x);
    const uint8_t *rp = (const uint8_t *)(r + 1) + sizeof x;
    uint32_t count = h->count;
    for (uint32_t i = 0; i < x.nranges; i++) {
        struct log_range rg;
        memcpy(&rg, rp + i * sizeof rg, sizeof rg);
        for (uint32_t p = store_gen_lower_bound(g, count, rg.lo); p < count; p++) {
            struct idx_entry *e = store_gen_entry(g, p);
            if (e->uid > rg.hi)
                break;
            uint64_t fm = A_LOAD(&e->fm);
            uint32_t fl = FM_FLAGS(fm);
            if (fl & ENT_EXPUNGED)
                continue;
            count_flags(h, fl, -1);
            A_STORE(&e->fm, FM_MAKE(x.modseq, fl | ENT_EXPUNGED));
            A_STORE(&h->messages, h->messages - 1);
            A_STORE(&h->tombstones, h->tombstones + 1);
            A_STORE(&h->size_live, h->size_live - e->size);
            A_STORE(&h->dead_bytes, h->dead_bytes + msg_rec_bytes(g, e));
        }
    }
    bump_modseq(h, x.modseq);
    A_STORE(&h->dead_bytes, h->dead_bytes + rec_bytes(r));
    A_STORE(&h->expunge_seq, h->expunge_seq + 1);
}

static uint32_t idx_kw_crc(const struct idx_hdr *h)
{
    return store_crc32c(0, h->keywords, sizeof h->keywords);
}

static void apply_keyword(struct idx_hdr *h, const struct log_rec *r)
{
    struct log_keyword k;
    memcpy(&k, r + 1, sizeof k);
    /* log_rec_check let only records in these bounds through; the slot
     * array is in the shared index header. */
    RM_ASSERT(k.slot < STORE_MAX_KEYWORDS && k.len <= STORE_MAX_KEYWORD_LEN);
    char *slot = h->keywords[k.slot];
    memcpy(slot, (const char *)(r + 1) + sizeof k, k.len);
    slot[k.len] = '\0';
    h->kw_crc = idx_kw_crc(h);
    if (k.slot + 1 > h->nkeywords)
        A_STORE(&h->nkeywords, k.slot + 1);
}

/* Why the index can be trusted after a power loss, and what that costs.
 *
 * The index is written through a shared mapping, so the kernel writes its
 * pages back whenever it likes and in any order: after a power loss, any
 * page may be older or newer than any other.  A checkpoint (page 0 of the
 * header, synced last) says "every page was on disk, matching this header,
 * when I was written".  It stays true only while no page changes: an entry
 * page changed after it (a flag, an expunge, a new entry) can reach the
 * disk while page 0 still holds the matching checkpoint, and that entry
 * then carries a change whose log record may be lost (the log is synced
 * only for acknowledged writes) or will be applied again on top of it, so
 * counters drift and a message can look expunged that the log says is
 * live.  Hence the order:
 *
 *   1. checkpoint: msync every page, fdatasync log and cache, write the
 *      checkpoint slot, msync the header (store_mbox_checkpoint);
 *   2. before the first change after it, clear both slots and msync the
 *      header (here): a checkpoint on disk is now never older than a page
 *      beside it, because no page changes until the retraction is on disk;
 *   3. at open after a reboot, the index is trusted only with a matching
 *      checkpoint (idx_sane), else it is rebuilt from the log.
 *
 * The price is one header flush at the first change after each
 * checkpoint, and checkpoints are written when a process lets go of the
 * mailbox, not per write.  (The same boot needs none of this: the page
 * cache survived and holds every page at its newest.) */
static int ckpt_retract(struct idx_hdr *h)
{
    if (!h->ckpt[0].seq && !h->ckpt[1].seq)
        return 0;
    memset(h->ckpt, 0, sizeof h->ckpt);
    if (msync(h, IDX_HDR_SIZE, MS_SYNC) < 0)
        return -errno;
    return 0;
}

void (*store_test_publish_hook)(void);

int store_idx_apply(struct store_mbox *mb, struct gen *g,
                    const struct log_rec *r, uint64_t off)
{
    struct idx_hdr *h = store_gen_hdr(g);
    int rc = ckpt_retract(h);
    RM_ASSERT(r->type >= LOG_MESSAGE && r->type <= LOG_VANISHED);
    if (rc < 0)
        return rc;
    switch (r->type) {
    case LOG_MESSAGE: rc = apply_message(mb, g, h, r, off); break;
    case LOG_FLAGS: apply_flags(g, h, r); break;
    case LOG_EXPUNGE: apply_expunge(g, h, r); break;
    case LOG_KEYWORD: apply_keyword(h, r); break;
    /* The history changes no entry: the index only remembers where it is
     * (read on first use, see since.c), so a rebuilt index finds it too. */
    case LOG_VANISHED: A_STORE(&h->hist_off, off); break;
    }
    if (rc < 0) {
        /* Forget the transaction's unpublished entries; log_applied still
         * points at its start, so the next catch-up applies it again. */
        g->pend = 0;
        memset(&g->pend_messages, 0, sizeof g->pend_messages);
        return rc;
    }
    h = store_gen_hdr(g);
    if (!(r->rflags & LOGF_CONT)) {
        /* The end of a transaction: publish its messages together.  The
         * log offset first: a reader that sees an entry (the count) checks
         * its record against log_applied (snap.c entry_sound, objid.c), so
         * the record must be covered by then.  The other way round, a
         * reader between the two stores took a new message for damage.
         * Nothing needs the count to move first: since.c's summary reads
         * entries past its own count directly. */
        A_STORE(&h->log_applied, off + rec_bytes(r));
        if (g->pend) {
            if (store_test_publish_hook)
                store_test_publish_hook();
            A_STORE(&h->unseen, h->unseen + g->pend_messages.unseen);
            A_STORE(&h->deleted, h->deleted + g->pend_messages.deleted);
            A_STORE(&h->size_live, h->size_live + g->pend_messages.size);
            A_STORE(&h->count, h->count + g->pend);
            A_STORE(&h->messages, h->messages + g->pend);
            g->pend = 0;
            memset(&g->pend_messages, 0, sizeof g->pend_messages);
        }
    }
    return 0;
}

/* ---- catch-up, checkpoint, rebuild --------------------------------------- */

static uint32_t ckpt_crc(const struct idx_ckpt *c);

/* Does a transaction start (or the log end) at `at`?  Found by hopping
 * record headers from a boundary known good: the newest sound checkpoint's
 * log offset at or before `at`, else the log's header.  Index damage can
 * move log_applied into the middle of the last transaction, whose rest
 * then looks like a torn tail: cutting it there would lose an
 * acknowledged write.  Hopping reads one header per record, and runs
 * only when a catch-up finds nothing it can apply. */
static bool log_boundary(struct gen *g, const uint8_t *base, uint64_t size, uint64_t at)
{
    const struct idx_hdr *h = store_gen_hdr(g);
    uint64_t p = LOG_HDR_SIZE;
    for (int i = 0; i < 2; i++) {
        const struct idx_ckpt *c = &h->ckpt[i];
        if (c->seq && c->crc == ckpt_crc(c) && c->log_applied % 8 == 0 &&
            c->log_applied > p && c->log_applied <= at)
            p = c->log_applied;
    }
    bool cont = false;
    while (p < at) {
        const struct log_rec *r = (const void *)(base + p);
        if (size - p < sizeof *r || r->magic != LOG_REC_MAGIC || rec_bytes(r) > size - p)
            return false;
        cont = r->rflags & LOGF_CONT;
        p += rec_bytes(r);
    }
    return p == at && !cont;
}

int store_gen_catch_up(struct gen *g, int mode, uint64_t *log_end, uint64_t *skipped)
{
    uint64_t size;
    int rc = file_size(g->log_fd, &size);
    if (rc < 0)
        return rc;
    struct idx_hdr *h = store_gen_hdr(g);
    uint64_t off = h->log_applied;
    if (off < LOG_HDR_SIZE)
        off = LOG_HDR_SIZE;
    if (off > size)
        return -EBADMSG;    /* the index is ahead of the log */
    const uint64_t start = off;
    const uint8_t *base = size > off ? store_mapchain_get(&g->log, 0, size) : NULL;
    if (size > off && !base)
        return -ENOMEM;
    while (off < size) {
        uint64_t end;
        store_log_scan_end(base, size, off, &end);
        while (off < end) {
            const struct log_rec *r = (const void *)(base + off);
            RM_ASSERT(off + rec_bytes(r) <= end);   /* store_log_scan_end checked it */
            if ((rc = store_idx_apply(NULL, g, r, off)) < 0)
                return rc;
            off += rec_bytes(r);
        }
        A_STORE(&h->log_applied, ALIGN8(off));
        if (off >= size)
            break;
        uint64_t next = store_log_resync(base, size, off);
        if (next >= size) {
            /* A torn tail: a write that was never acknowledged; unless
             * the index's log offset was damaged into a transaction. */
            if (off == start && mode == CU_CUT && !log_boundary(g, base, size, off))
                return -EBADMSG;    /* the caller rebuilds the index */
            if (mode != CU_KEEP) {
                if (ftruncate(g->log_fd, (off_t)off) < 0)
                    return -errno;
                size = off;
            }
            break;
        }
        /* Damage with intact transactions after it. */
        if (mode != CU_SALVAGE)
            return -EBADMSG;
        if (skipped)
            (*skipped)++;
        A_STORE(&h->dead_bytes, h->dead_bytes + (next - off));
        off = next;
        A_STORE(&h->log_applied, off);
    }
    *log_end = ALIGN8(size);
    return 0;
}

/* Apply the log from hdr->log_applied to the end (writer held), cutting a
 * torn tail; -EBADMSG for damage inside the log. */
static int mbox_catch_up(struct store_mbox *mb, struct gen *g)
{
    return store_gen_catch_up(g, CU_CUT, &mb->log_end, NULL);
}

static uint32_t ckpt_crc(const struct idx_ckpt *c)
{
    return store_crc32c(0, c, offsetof(struct idx_ckpt, crc));
}

int store_mbox_checkpoint(struct store_mbox *mb, struct gen *g)
{
    (void)mb;
    struct idx_hdr *h = store_gen_hdr(g);
    uint64_t isz = IDX_HDR_SIZE + (uint64_t)h->count * sizeof(struct idx_entry);
    uint8_t *base = store_mapchain_get(&g->idx, 0, isz);
    if (!base)
        return -ENOMEM;
    if (fdatasync(g->cache_fd) < 0 || fdatasync(g->log_fd) < 0 ||
        msync(base, isz, MS_SYNC) < 0)
        return -errno;
    struct idx_ckpt c = {0};
    int slot = h->ckpt[0].seq <= h->ckpt[1].seq ? 0 : 1;
    c.seq = (slot == 0 ? h->ckpt[1].seq : h->ckpt[0].seq) + 1;
    c.log_applied = h->log_applied;
    c.cache_end = h->cache_end;
    c.count = h->count;
    c.crc = ckpt_crc(&c);
    h->ckpt[slot] = c;
    if (msync(base, IDX_HDR_SIZE, MS_SYNC) < 0)
        return -errno;
    return 0;
}

static bool ckpt_current(const struct idx_hdr *h)
{
    for (int i = 0; i < 2; i++) {
        const struct idx_ckpt *c = &h->ckpt[i];
        if (c->seq && c->crc == ckpt_crc(c) && c->log_applied == h->log_applied &&
            c->count == h->count && c->cache_end == h->cache_end)
            return true;
    }
    return false;
}

static uint32_t idx_static_crc(const struct idx_hdr *h)
{
    return store_crc32c(0, h, offsetof(struct idx_hdr, static_crc));
}

void store_idx_hdr_init(struct idx_hdr *h, const struct log_file_hdr *lh)
{
    memset(h, 0, sizeof *h);
    memcpy(h->magic, IDX_MAGIC, 8);
    h->version = FMT_VERSION;
    h->hdr_size = IDX_HDR_SIZE;
    h->entry_size = sizeof(struct idx_entry);
    h->uidvalidity = lh->uidvalidity;
    h->mailbox_id = lh->mailbox_id;
    h->generation = lh->generation;
    h->static_crc = idx_static_crc(h);
    h->uidnext = lh->base_uidnext ? lh->base_uidnext : 1;
    h->highestmodseq = lh->base_modseq ? lh->base_modseq : 1;
    h->tomb_floor = lh->tomb_floor;
    h->recent_uid = h->uidnext;
    h->kw_crc = idx_kw_crc(h);
    h->log_applied = LOG_HDR_SIZE;
    h->cache_end = CACHE_HDR_SIZE;
    store_fs_boot_id(h->boot_id);
}

int store_cache_hdr_write(int fd, uint64_t generation)
{
    struct cache_file_hdr ch = {0};
    memcpy(ch.magic, CACHE_MAGIC, 8);
    ch.version = FMT_VERSION;
    ch.hdr_size = CACHE_HDR_SIZE;
    ch.generation = generation;
    return store_fs_pwrite_all(fd, &ch, sizeof ch, 0);
}

int store_log_hdr_read(int fd, struct log_file_hdr *lh)
{
    int rc = store_fs_pread_all(fd, lh, sizeof *lh, 0);
    if (rc == -EIO)
        return -EBADMSG;
    return rc < 0 ? rc : store_log_hdr_check(lh);
}

/* Build a fresh index + cache for log.<generation> from the log alone and
 * swap them in.  Writer held (or the mailbox not yet shared). */
static int rebuild_gen(struct store_mbox *mb, uint64_t generation,
                       struct gen **out)
{
    char logp[PATH_MAX], idxp[PATH_MAX], cachep[PATH_MAX];
    char idxt[PATH_MAX + 8], cachet[PATH_MAX + 8];
    struct gen *g = NULL;
    int rc;
    if ((rc = store_mbox_path(mb, logp, sizeof logp, "log.%" PRIu64, generation)) < 0 ||
        (rc = store_mbox_path(mb, idxp, sizeof idxp, "index", 0)) < 0 ||
        (rc = store_mbox_path(mb, cachep, sizeof cachep, "cache.%" PRIu64, generation)) < 0)
        return rc;
    snprintf(idxt, sizeof idxt, "%s.tmp", idxp);
    snprintf(cachet, sizeof cachet, "%s.tmp", cachep);
    unlink(idxt);
    unlink(cachet);
    if ((rc = store_gen_open_paths(logp, idxt, cachet, O_CREAT | O_TRUNC, &g)) < 0)
        return rc;
    g->generation = generation;
    struct log_file_hdr lh;
    if ((rc = store_log_hdr_read(g->log_fd, &lh)) < 0)
        goto fail;
    if ((rc = store_cache_hdr_write(g->cache_fd, generation)) < 0)
        goto fail;
    store_idx_hdr_init(store_gen_hdr(g), &lh);
    {
        uint64_t skipped = 0;
        if ((rc = store_gen_catch_up(g, CU_SALVAGE, &mb->log_end, &skipped)) < 0)
            goto fail;
    }
    if ((rc = store_mbox_checkpoint(mb, g)) < 0)
        goto fail;
    if (rename(cachet, cachep) < 0 || rename(idxt, idxp) < 0) {
        rc = -errno;
        goto fail;
    }
    if ((rc = store_fs_fsync_dir(mb->dir)) < 0)
        goto fail;
    *out = g;
    return 0;
fail:
    store_gen_put(g);
    unlink(idxt);
    unlink(cachet);
    return rc;
}

/* No room on the disk for a new index and cache: build them in memory
 * (memfd), from the log alone, without writing anything to the mailbox, and
 * open the mailbox read-only (mb->failed: writes get -ENOSPC, the close
 * leaves no checkpoint and does not linger, so the next open tries the disk
 * again).  Reading a mailbox must not depend on free space. */
static int rebuild_in_memory(struct store_mbox *mb, uint64_t generation,
                             struct gen **out)
{
    char logp[PATH_MAX], idxp[64], cachep[64];
    struct gen *g = NULL;
    int rc = store_mbox_path(mb, logp, sizeof logp, "log.%" PRIu64, generation);
    if (rc < 0)
        return rc;
    int ifd = memfd_create("ringmail-index", MFD_CLOEXEC);
    int cfd = memfd_create("ringmail-cache", MFD_CLOEXEC);
    if (ifd < 0 || cfd < 0) {
        rc = -errno;
        goto out;
    }
    /* store_gen_open_paths opens by name: the memfds' names in /proc. */
    snprintf(idxp, sizeof idxp, "/proc/self/fd/%d", ifd);
    snprintf(cachep, sizeof cachep, "/proc/self/fd/%d", cfd);
    if ((rc = store_gen_open_paths(logp, idxp, cachep, O_CREAT, &g)) < 0)
        goto out;
    g->generation = generation;
    struct log_file_hdr lh;
    uint64_t end;
    if ((rc = store_log_hdr_read(g->log_fd, &lh)) < 0 ||
        (rc = store_cache_hdr_write(g->cache_fd, generation)) < 0)
        goto out;
    store_idx_hdr_init(store_gen_hdr(g), &lh);
    if ((rc = store_gen_catch_up(g, CU_KEEP, &end, NULL)) < 0)
        goto out;
    mb->failed = -ENOSPC;
    *out = g;
    g = NULL;
out:
    store_gen_put(g);
    if (ifd >= 0)
        close(ifd);
    if (cfd >= 0)
        close(cfd);
    return rc;
}

void store_gen_recent_handover(struct gen *old, struct gen *ng)
{
    /* Claims are lock-free compare-and-swaps on the old header (see
     * store_mbox_claim_recent), from this process and others, right up to
     * the moment they see `superseded`.  Copying recent_uid and then
     * setting superseded would lose a claim made in between: the next
     * session would get the same messages as \Recent again.  So the old
     * value is taken with an exchange that leaves RECENT_MOVED behind: a
     * claim before it is in the value we carry over, a claim after it fails
     * its compare-and-swap and goes to the new header.  Nobody can claim
     * on the new header yet: it is not installed here, and other processes
     * reach it only through the writer lock, which the caller holds. */
    struct idx_hdr *oh = store_gen_hdr(old), *nh = store_gen_hdr(ng);
    A_STORE(&oh->superseded, 1);
    uint32_t v = __atomic_exchange_n(&oh->recent_uid, RECENT_MOVED, __ATOMIC_ACQ_REL);
    if (v == RECENT_MOVED)
        return;     /* handed over before (cannot happen twice) */
    if (v > nh->uidnext)
        v = nh->uidnext;
    if (v > A_LOAD(&nh->recent_uid))
        A_STORE(&nh->recent_uid, v);
}

int store_mbox_rebuild(struct store_mbox *mb)
{
    struct gen *old = mb->gen, *g;
    int rc = rebuild_gen(mb, old->generation, &g);
    if (rc < 0)
        return rc;
    /* A rebuilt index starts with nothing claimed; what was claimed in the
     * old one stays claimed. */
    store_gen_recent_handover(old, g);
    store_mbox_gen_install(mb, g);
    return 0;
}

/* "log.<N>" or "cache.<N>" with N a generation number (no suffix): the
 * number, else 0. */
static uint64_t gen_of_name(const char *name, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(name, prefix, n) || name[n] < '1' || name[n] > '9')
        return 0;
    char *end;
    errno = 0;
    unsigned long long g = strtoull(name + n, &end, 10);
    return *end || errno ? 0 : (uint64_t)g;
}

/* Highest N with a log.N in the directory, or 0.  Found by listing the
 * directory: generations are not dense (each compaction removes the old
 * one), so probing log.1, log.2, ... would give up after a gap. */
static int newest_log(const char *dir, uint64_t *out)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    uint64_t best = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        uint64_t g = gen_of_name(de->d_name, "log.");
        if (g > best)
            best = g;
    }
    closedir(d);
    *out = best;
    return 0;
}

/* The compaction lock (see store_compact): held by a running compaction
 * for its whole run, so that its temporary files, written without the
 * writer lock, are never taken for the leftovers of a dead one.  Returns
 * the locked fd, -EWOULDBLOCK if a compaction holds it and !wait. */
int store_mbox_compact_lock(struct store_mbox *mb, bool wait)
{
    char p[PATH_MAX];
    int rc = store_mbox_path(mb, p, sizeof p, "compact.lock", 0);
    if (rc < 0)
        return rc;
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    while (flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) < 0) {
        if (errno == EINTR)
            continue;
        rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

void store_mbox_compact_unlock(int fd)
{
    if (fd >= 0)
        close(fd);  /* drops the flock */
}

/* Is this the name of a temporary file of compaction, rebuild or check? */
static bool tmp_name(const char *name)
{
    size_t n = strlen(name);
    return (n > 4 && !strcmp(name + n - 4, ".tmp") &&
            (!strncmp(name, "log.", 4) || !strncmp(name, "cache.", 6) ||
             !strncmp(name, "index.", 6))) ||
           !strcmp(name, "index.compact") || !strcmp(name, "index.check") ||
           !strcmp(name, "cache.check");
}

int store_mbox_sweep(struct store_mbox *mb, uint64_t keep, unsigned *removed)
{
    /* Writer lock held: no rebuild or check of another process is running,
     * and compaction renames its files to their final names only under it.
     * So every log.N and cache.N but the current generation's is dead (an
     * old generation whose unlink was lost, or a new one whose index rename
     * never happened), and so is every temporary file, unless a compaction
     * is running right now: its phase 1 works without the writer lock, and
     * then its files are left alone (they are swept at a later open). */
    int cfd = store_mbox_compact_lock(mb, false);
    bool tmp_ok = cfd >= 0;
    DIR *d = opendir(mb->dir);
    if (!d) {
        store_mbox_compact_unlock(cfd);
        return -errno;
    }
    unsigned n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        uint64_t g = gen_of_name(de->d_name, "log.");
        if (!g)
            g = gen_of_name(de->d_name, "cache.");
        bool dead = (g && g != keep) || (tmp_ok && tmp_name(de->d_name));
        char p[PATH_MAX];
        if (dead && (size_t)snprintf(p, sizeof p, "%s/%s", mb->dir, de->d_name) < sizeof p &&
            unlink(p) == 0)
            n++;
    }
    closedir(d);
    store_mbox_compact_unlock(cfd);
    if (removed)
        *removed = n;
    return 0;
}

/* Is the index usable as it is?  Cheap checks only: opening must not scan. */
static int idx_sane(struct gen *g, uint64_t log_size, const struct log_file_hdr *lh)
{
    uint64_t isz = 0;
    if (file_size(g->idx_fd, &isz) < 0 || isz < IDX_HDR_SIZE)
        return 0;
    struct idx_hdr *h = store_gen_hdr(g);
    if (memcmp(h->magic, IDX_MAGIC, 8) || h->version != FMT_VERSION ||
        h->hdr_size != IDX_HDR_SIZE || h->entry_size != sizeof(struct idx_entry) ||
        h->static_crc != idx_static_crc(h) || h->generation != lh->generation ||
        h->uidvalidity != lh->uidvalidity)
        return 0;
    uint64_t csz = 0;
    if (file_size(g->cache_fd, &csz) < 0 || csz < h->cache_end)
        return 0;   /* cache entries would point past its end */
    if (IDX_HDR_SIZE + (uint64_t)h->count * sizeof(struct idx_entry) > isz ||
        h->log_applied > log_size || h->log_applied < LOG_HDR_SIZE ||
        h->nkeywords > STORE_MAX_KEYWORDS || h->messages + h->tombstones != h->count ||
        h->unseen > h->messages || h->deleted > h->messages ||
        h->kw_crc != idx_kw_crc(h) || h->recent_uid > h->uidnext)
        return 0;
    uint8_t boot[16];
    store_fs_boot_id(boot);
    if (memcmp(boot, h->boot_id, 16) != 0 && !ckpt_current(h))
        return 0;   /* the machine went down since unsynced changes */
    /* Spot-check entries: the last, and a few spread over the file.  Each
     * is on a page of its own: asked for all at once first, the 16 reads
     * of a cold index wait for the disk together, not one after another
     * (a cold 10^6-message index held the opening thread ~50 ms). */
    uint32_t n = h->count;
    for (uint32_t k = 0; k < 16 && n; k++) {
        uint32_t p = k == 0 ? n - 1 : (uint32_t)((uint64_t)n * k / 16);
        (void)posix_fadvise(g->idx_fd,
                            (off_t)(IDX_HDR_SIZE + (uint64_t)(p ? p - 1 : 0) *
                                                       sizeof(struct idx_entry)),
                            2 * sizeof(struct idx_entry), POSIX_FADV_WILLNEED);
    }
    for (uint32_t k = 0; k < 16 && n; k++) {
        uint32_t p = k == 0 ? n - 1 : (uint32_t)((uint64_t)n * k / 16);
        const struct idx_entry *e = store_gen_entry(g, p);
        if (e->crc != store_entry_crc(e) || e->uid == 0 || e->uid >= h->uidnext ||
            e->log_off + sizeof(struct log_rec) + sizeof(struct log_message) +
                e->size > log_size)
            return 0;
        if (p && store_gen_entry(g, p - 1)->uid >= e->uid)
            return 0;
    }
    return 1;
}

/* Recovery at first open in this process, with the flock held. */
static int mbox_recover(struct store_mbox *mb)
{
    char idxp[PATH_MAX];
    int rc = store_mbox_path(mb, idxp, sizeof idxp, "index", 0);
    if (rc < 0)
        return rc;
    uint64_t generation = 0;
    int fd = open(idxp, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        struct idx_hdr h;
        if (store_fs_pread_all(fd, &h, offsetof(struct idx_hdr, static_crc) + 4, 0) == 0 &&
            memcmp(h.magic, IDX_MAGIC, 8) == 0 && h.static_crc == idx_static_crc(&h))
            generation = h.generation;
        close(fd);
    }
    char logp[PATH_MAX];
    if (generation) {
        store_mbox_path(mb, logp, sizeof logp, "log.%" PRIu64, generation);
        if (access(logp, F_OK) != 0)
            generation = 0;
    }
    if (!generation && (rc = newest_log(mb->dir, &generation)) < 0)
        return rc;
    if (!generation)
        return -EBADMSG;    /* no log at all: nothing to recover from */

    struct gen *g = NULL;
    rc = gen_open(mb, generation, &g);
    bool ok = false;
    if (rc == 0) {
        struct log_file_hdr lh;
        uint64_t lsz = 0;
        if ((rc = store_log_hdr_read(g->log_fd, &lh)) < 0 ||
            (rc = file_size(g->log_fd, &lsz)) < 0) {
            store_gen_put(g);
            return rc;
        }
        ok = idx_sane(g, lsz, &lh);
        if (ok) {
            struct idx_hdr *h = store_gen_hdr(g);
            /* store_mbox_set_uidnext and _set_highestmodseq write the log
             * header first: a crash before the index took it leaves the
             * index behind. */
            if (h->uidnext < lh.base_uidnext)
                __atomic_store_n(&h->uidnext, lh.base_uidnext, __ATOMIC_RELEASE);
            if (h->highestmodseq < lh.base_modseq)
                __atomic_store_n(&h->highestmodseq, lh.base_modseq, __ATOMIC_RELEASE);
            rc = mbox_catch_up(mb, g);
            if (rc == -EBADMSG)
                ok = false;
            else if (rc == -ENOSPC || rc == -EDQUOT)
                /* Records another process wrote need room that the disk
                 * lacks: open the index as it stands, so reading goes on;
                 * the next write applies them first (or fails alike). */
                rc = 0;
            else if (rc < 0) {
                store_gen_put(g);
                return rc;
            }
            store_fs_boot_id(h->boot_id);
        }
        if (!ok)
            store_gen_put(g);
    }
    if (!ok) {
        rc = rebuild_gen(mb, generation, &g);
        if (rc == -ENOSPC || rc == -EDQUOT)
            rc = rebuild_in_memory(mb, generation, &g);
        if (rc < 0)
            return rc;
        uint64_t lsz = 0;
        file_size(g->log_fd, &lsz);
        mb->log_end = ALIGN8(lsz);
    }
    mb->gen = g;
    /* Leftovers of an interrupted compaction or rebuild. */
    store_mbox_sweep(mb, generation, NULL);
    return 0;
}

int store_mbox_create_files(const char *dir, uint64_t id, uint32_t uidvalidity)
{
    char p[PATH_MAX];
    int rc = store_fs_mkdirs(dir, 0700);
    if (rc < 0)
        return rc;
    struct log_file_hdr lh = {0};
    memcpy(lh.magic, LOG_MAGIC, 8);
    lh.version = LOG_VERSION_EXT;
    lh.hdr_size = LOG_HDR_SIZE;
    lh.mailbox_id = id;
    lh.generation = 1;
    lh.uidvalidity = uidvalidity;
    lh.base_uidnext = 1;
    lh.base_modseq = 1;
    store_log_hdr_seal(&lh);
    snprintf(p, sizeof p, "%s/log.1", dir);
    if ((rc = store_fs_write_atomic(p, &lh, sizeof lh)) < 0)
        return rc;
    snprintf(p, sizeof p, "%s/lock", dir);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    close(fd);
    return store_fs_fsync_dir(dir);
}

/* ---- locking --------------------------------------------------------------- */

static int same_file(int fd, const char *path)
{
    struct stat a, b;
    if (fstat(fd, &a) < 0 || stat(path, &b) < 0)
        return 0;
    return a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

int store_mbox_wlock(struct store_mbox *mb)
{
    pthread_mutex_lock(&mb->wlock);
    if (flock(mb->lock_fd, LOCK_EX) < 0) {
        int rc = -errno;
        pthread_mutex_unlock(&mb->wlock);
        return rc;
    }
    int rc = 0;
    struct gen *g = mb->gen;
    char idxp[PATH_MAX];
    store_mbox_path(mb, idxp, sizeof idxp, "index", 0);
    if (A_LOAD(&store_gen_hdr(g)->superseded) || !same_file(g->idx_fd, idxp)) {
        /* Another process compacted or rebuilt: move to its files. */
        struct idx_hdr h;
        int fd = open(idxp, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || store_fs_pread_all(fd, &h, sizeof h.magic + 64, 0) < 0) {
            rc = fd < 0 ? -errno : -EBADMSG;
        } else {
            struct gen *ng;
            rc = gen_open(mb, h.generation, &ng);
            if (rc == 0)
                store_mbox_gen_install(mb, ng);
        }
        if (fd >= 0)
            close(fd);
        if (rc < 0)
            goto fail;
        g = mb->gen;
    }
    rc = mbox_catch_up(mb, g);
    if (rc == -EBADMSG)
        rc = store_mbox_rebuild(mb);
    if (rc < 0)
        goto fail;
    return 0;
fail:
    flock(mb->lock_fd, LOCK_UN);
    pthread_mutex_unlock(&mb->wlock);
    return rc;
}

void store_mbox_wunlock(struct store_mbox *mb)
{
    RM_ASSERT(pthread_mutex_trylock(&mb->wlock) == EBUSY);     /* held */
    flock(mb->lock_fd, LOCK_UN);
    pthread_mutex_unlock(&mb->wlock);
}

/* ---- open / close ------------------------------------------------------------ */

int store_mbox_open_dir(struct store_user *u, uint64_t id, const char *dir,
                        struct store_mbox **out)
{
    struct store_mbox *mb = calloc(1, sizeof *mb);
    if (!mb)
        return -ENOMEM;
    mb->user = u;
    mb->id = id;
    mb->lock_fd = -1;
    atomic_init(&mb->refs, 1);
    pthread_mutex_init(&mb->glock, NULL);
    pthread_mutex_init(&mb->wlock, NULL);
    pthread_mutex_init(&mb->qlock, NULL);
    pthread_cond_init(&mb->qcond, NULL);
    mb->qtail = &mb->qhead;
    int rc = 0;
    char p[PATH_MAX];
    mb->dir = strdup(dir);
    if (!mb->dir) {
        rc = -ENOMEM;
        goto fail;
    }
    snprintf(p, sizeof p, "%s/lock", dir);
    mb->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (mb->lock_fd < 0) {
        rc = errno == ENOENT ? -ENOENT : -errno;
        goto fail;
    }
    if (flock(mb->lock_fd, LOCK_EX) < 0) {
        rc = -errno;
        goto fail;
    }
    rc = mbox_recover(mb);
    flock(mb->lock_fd, LOCK_UN);
    if (rc < 0)
        goto fail;
    *out = mb;
    return 0;
fail:
    store_mbox_destroy(mb);
    return rc;
}

void store_mbox_destroy(struct store_mbox *mb)
{
    if (!mb)
        return;
    if (mb->gen && mb->lock_fd >= 0 && !mb->failed) {
        /* Leave a checkpoint so that a reboot does not force a rebuild. */
        if (flock(mb->lock_fd, LOCK_EX) == 0) {
            /* ... unless the last one still describes the index: closing
             * a mailbox that was only read costs no disk flush. */
            struct idx_hdr *h = store_gen_hdr(mb->gen);
            if (!A_LOAD(&h->superseded) && h->log_applied == mb->log_end &&
                !ckpt_current(h))
                store_mbox_checkpoint(mb, mb->gen);
            flock(mb->lock_fd, LOCK_UN);
        }
    }
    store_gen_put(mb->gen);
    if (mb->lock_fd >= 0)
        close(mb->lock_fd);
    pthread_mutex_destroy(&mb->glock);
    pthread_mutex_destroy(&mb->wlock);
    pthread_mutex_destroy(&mb->qlock);
    pthread_cond_destroy(&mb->qcond);
    free(mb->dir);
    free(mb);
}

int store_mbox_refresh(struct store_mbox *mb)
{
    int rc = store_mbox_wlock(mb);
    if (rc == 0)
        store_mbox_wunlock(mb);
    return rc;
}

const char *store_mbox_dir(const struct store_mbox *mb)
{
    return mb->dir;
}

int store_mbox_claim_recent(struct store_mbox *mb, uint32_t *first)
{
    /* Every session that sees a new message claims it, so this must not
     * take the writer lock: with a hundred IDLE sessions of one mailbox in
     * several processes, each append made them queue on the flock, and a
     * worker blocked there stalls all its sessions.  The index header is
     * shared memory: a compare-and-swap gives each new UID to exactly one
     * claimant, across processes too.  An index that compaction or a
     * rebuild replaced (superseded, or its claims already handed over:
     * RECENT_MOVED) sends us through the writer lock, which moves to the
     * new files, and we claim there. */
    for (;;) {
        struct gen *g = store_mbox_gen_get(mb);
        struct idx_hdr *hh = store_gen_hdr(g);
        bool moved = A_LOAD(&hh->superseded);
        if (!moved) {
            uint32_t next = A_LOAD(&hh->uidnext);
            uint32_t old = A_LOAD(&hh->recent_uid);
            while (old < next && old != RECENT_MOVED &&
                   !__atomic_compare_exchange_n(&hh->recent_uid, &old, next, false,
                                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                ;
            /* RECENT_MOVED is also a legal UIDNEXT; then nothing is recent
             * unless the index was replaced. */
            moved = old == RECENT_MOVED && A_LOAD(&hh->superseded);
            if (!moved)
                *first = old;
        }
        store_gen_put(g);
        if (!moved)
            return 0;
        int rc = store_mbox_refresh(mb);
        if (rc < 0)
            return rc;
    }
}

int store_mbox_status(struct store_mbox *mb, store_status *st)
{
    struct gen *g = store_mbox_gen_get(mb);
    if (A_LOAD(&store_gen_hdr(g)->superseded)) {
        store_gen_put(g);
        int rc = store_mbox_refresh(mb);
        if (rc < 0)
            return rc;
        g = store_mbox_gen_get(mb);
    }
    struct idx_hdr *h = store_gen_hdr(g);
    memset(st, 0, sizeof *st);
    st->messages = A_LOAD(&h->messages);
    st->unseen = A_LOAD(&h->unseen);
    st->deleted = A_LOAD(&h->deleted);
    st->uidnext = A_LOAD(&h->uidnext);
    st->uidvalidity = h->uidvalidity;
    st->highestmodseq = A_LOAD(&h->highestmodseq);
    st->size = A_LOAD(&h->size_live);
    st->dead_bytes = A_LOAD(&h->dead_bytes);
    st->generation = g->generation;
    uint64_t lsz = 0;
    file_size(g->log_fd, &lsz);
    st->log_bytes = lsz;
    uint32_t count = A_LOAD(&h->count);
    uint32_t recent = A_LOAD(&h->recent_uid);
    if (recent == RECENT_MOVED && A_LOAD(&h->superseded)) {
        /* Replaced while we read: ask the new index. */
        store_gen_put(g);
        return store_mbox_status(mb, st);
    }
    uint32_t p = store_gen_lower_bound(g, count, recent);
    if (p == 0) {
        st->recent = st->messages;  /* nobody has claimed any yet */
    } else {
        for (; p < count; p++)
            if (!(FM_FLAGS(A_LOAD(&store_gen_entry(g, p)->fm)) & ENT_EXPUNGED))
                st->recent++;
    }
    store_gen_put(g);
    return 0;
}
