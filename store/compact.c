/* store/compact.c — online compaction.
 *
 * Phase 1, without the writer lock: copy every live message of a snapshot
 * into log.<gen+1>.tmp (keyword slots first, so keyword bits keep their
 * meaning) and build its index and cache.  Phase 2, with the lock: bring the
 * new log up to date with what happened meanwhile (new messages, flag
 * changes as FLAGS records carrying the same modseq, expunges as EXPUNGE
 * records), make it durable, and swap: cache and log renames, then the
 * index rename — the commit point — and the old index is marked superseded.
 * Readers keep their snapshots of the old files; writers wait only for
 * phase 2.  UIDs, UIDVALIDITY, flags and modseqs do not change. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/internal.h"
#include "store/stats.h"

#define A_LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)

struct seen {                   /* what phase 1 wrote for an old entry */
    uint64_t fm, keywords;
};

struct cw {                     /* the new log being written */
    int fd;
    uint64_t end;
    store_buf buf;              /* records waiting to be written */
};

static int cw_flush(struct cw *w)
{
    if (!w->buf.len)
        return 0;
    int rc = store_fs_pwrite_all(w->fd, w->buf.data, w->buf.len, w->end);
    w->end += w->buf.len;
    w->buf.len = 0;
    return rc;
}

static int cw_rec(struct cw *w, uint16_t type, const void *a, size_t an,
                  const void *b, size_t bn)
{
    size_t at = w->buf.len;
    struct log_rec r = {0};
    static const uint8_t zero[8];
    int rc;
    if ((rc = store_buf_append(&w->buf, &r, sizeof r)) < 0 ||
        (rc = store_buf_append(&w->buf, a, an)) < 0 ||
        (bn && (rc = store_buf_append(&w->buf, b, bn)) < 0))
        return rc;
    store_log_rec_seal((struct log_rec *)(w->buf.data + at), type, 0,
                       (uint32_t)(an + bn));
    rc = store_buf_append(&w->buf, zero, ALIGN8(w->buf.len) - w->buf.len);
    if (rc == 0 && w->buf.len >= (4u << 20))
        rc = cw_flush(w);
    return rc;
}

static int cw_keywords(struct cw *w, struct idx_hdr *h, unsigned from)
{
    unsigned n = A_LOAD(&h->nkeywords);
    for (unsigned i = from; i < n; i++) {
        struct log_keyword k = {.slot = i, .len = (uint32_t)strlen(h->keywords[i])};
        if (!k.len)
            continue;
        int rc = cw_rec(w, LOG_KEYWORD, &k, sizeof k, h->keywords[i], k.len);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Copy the message of old entry e with the given flags. */
static int cw_message(struct cw *w, struct gen *old, const struct idx_entry *e,
                      uint64_t fm, uint64_t keywords)
{
    const uint8_t *rec = store_mapchain_get(&old->log, e->log_off,
                                            sizeof(struct log_rec) +
                                          sizeof(struct log_message));
    if (!rec)
        return -ENOMEM;
    struct log_message m;
    memcpy(&m, rec + sizeof(struct log_rec), sizeof m);
    if (m.uid != e->uid || m.size != e->size || m.ext_len > LOG_MSG_EXT_MAX)
        return -EBADMSG;
    /* The message and its extension (EMAILID, save date) go over as they
     * are: both stay the message's in this mailbox (RFC 8514 3: the save
     * date "MUST NOT change as long as the message is contained within the
     * same mailbox"). */
    rec = store_mapchain_get(&old->log, e->log_off, sizeof(struct log_rec) + sizeof m +
                                                        e->size + m.ext_len);
    if (!rec)
        return -ENOMEM;
    m.flags = FM_FLAGS(fm) & STORE_F_ALL;
    m.modseq = FM_MODSEQ(fm);
    m.keywords = keywords;
    return cw_rec(w, LOG_MESSAGE, &m, sizeof m,
                  rec + sizeof(struct log_rec) + sizeof m, (size_t)e->size + m.ext_len);
}

static int cw_flags(struct cw *w, uint32_t uid, uint64_t fm, uint64_t kw)
{
    struct {
        struct log_flags f;
        struct log_range r;
    } p = {{.modseq = FM_MODSEQ(fm), .op = STORE_FLAGS_SET,
            .flags = FM_FLAGS(fm) & STORE_F_ALL, .keywords = kw, .nranges = 1},
           {uid, uid}};
    return cw_rec(w, LOG_FLAGS, &p, sizeof p, NULL, 0);
}

static int cw_expunge(struct cw *w, uint32_t uid, uint64_t modseq)
{
    struct {
        struct log_expunge x;
        struct log_range r;
    } p = {{.modseq = modseq, .nranges = 1}, {uid, uid}};
    return cw_rec(w, LOG_EXPUNGE, &p, sizeof p, NULL, 0);
}

/* One compaction of generation G-1 into G.  Owns the temporary files, the
 * new generation until it is installed, `seen` and the log buffer; the
 * snapshot and the compaction lock are the caller's. */
struct compaction {
    store_mbox *mb;
    store_snap *s;
    struct gen *old;            /* the snapshot's generation */
    struct idx_hdr *oh;         /* and its index header */
    struct gen *ng;             /* the new one, NULL once installed */
    uint64_t G;
    char logt[PATH_MAX], logp[PATH_MAX], idxt[PATH_MAX], idxp[PATH_MAX];
    char cachet[PATH_MAX], cachep[PATH_MAX];
    struct cw w;
    struct log_file_hdr lh;     /* the new log's header; final at the swap */
    struct seen *seen;          /* per entry of the snapshot */
    uint32_t n0;                /* entries in the snapshot */
    unsigned nkw0;              /* keyword slots phase 1 wrote */
    uint64_t total;             /* message bytes to copy, for progress */
    uint64_t nend;              /* the new log's end as its index knows it */
    bool locked;                /* writer lock held (phase 2) */
    int renamed;                /* how many of log, cache were renamed */
};

/* A tombstone dropped from the new log still bounds its modseqs. */
static void raise_tomb_floor(struct log_file_hdr *lh, uint64_t fm)
{
    if (FM_MODSEQ(fm) > lh->tomb_floor)
        lh->tomb_floor = FM_MODSEQ(fm);
}

static int compact_paths(struct compaction *c)
{
    store_mbox *mb = c->mb;
    uint64_t G = c->G;
    int rc;
    if ((rc = store_mbox_path(mb, c->logt, PATH_MAX, "log.%" PRIu64 ".tmp", G)) < 0 ||
        (rc = store_mbox_path(mb, c->logp, PATH_MAX, "log.%" PRIu64, G)) < 0 ||
        (rc = store_mbox_path(mb, c->idxt, PATH_MAX, "index.compact", 0)) < 0 ||
        (rc = store_mbox_path(mb, c->idxp, PATH_MAX, "index", 0)) < 0 ||
        (rc = store_mbox_path(mb, c->cachet, PATH_MAX, "cache.%" PRIu64 ".tmp", G)) < 0 ||
        (rc = store_mbox_path(mb, c->cachep, PATH_MAX, "cache.%" PRIu64, G)) < 0)
        return rc;
    return 0;
}

/* Phase 1: create log.<G>.tmp with a provisional header (the counters of
 * the snapshot) and the keyword slots known now. */
static int compact_start_log(struct compaction *c)
{
    struct idx_hdr *oh = c->oh;
    c->w.fd = open(c->logt, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (c->w.fd < 0)
        return -errno;
    struct log_file_hdr *lh = &c->lh;
    memcpy(lh->magic, LOG_MAGIC, 8);
    lh->version = LOG_VERSION_EXT;    /* it may get MESSAGE extensions and
                                         the history: both allowed there */
    lh->hdr_size = LOG_HDR_SIZE;
    lh->mailbox_id = oh->mailbox_id;
    lh->generation = c->G;
    lh->uidvalidity = oh->uidvalidity;
    lh->base_uidnext = A_LOAD(&oh->uidnext);
    lh->base_modseq = A_LOAD(&oh->highestmodseq);
    lh->tomb_floor = oh->tomb_floor;
    store_log_hdr_seal(lh);
    int rc = store_fs_pwrite_all(c->w.fd, lh, sizeof *lh, 0);
    if (rc < 0)
        return rc;
    c->nkw0 = A_LOAD(&oh->nkeywords);
    return cw_keywords(&c->w, oh, 0);
}

/* Phase 1: copy every live message of the snapshot with the flags it has
 * now, and remember those flags for phase 2. */
static int compact_copy_live(struct compaction *c, store_progress_fn progress,
                             void *arg)
{
    struct gen *old = c->old;
    uint32_t n0 = c->n0 = c->s->count;
    c->seen = calloc(n0 ? n0 : 1, sizeof *c->seen);
    if (!c->seen)
        return -ENOMEM;
    uint64_t done = 0;
    for (uint32_t p = 0; p < n0; p++)
        c->total += store_gen_entry(old, p)->size;
    for (uint32_t p = 0; p < n0; p++) {
        const struct idx_entry *e = store_gen_entry(old, p);
        uint64_t fm = A_LOAD(&e->fm), kw = A_LOAD(&e->keywords);
        c->seen[p] = (struct seen){fm, kw};
        if (FM_FLAGS(fm) & ENT_EXPUNGED) {
            raise_tomb_floor(&c->lh, fm);
            continue;
        }
        int rc = cw_message(&c->w, old, e, fm, kw);
        if (rc < 0)
            return rc;
        done += e->size;
        if ((p & 255) == 0) {
            if (progress)
                progress(arg, done, c->total);
            store_stats *st = store_stats_get();
            if (st) {
                atomic_store_explicit(&st->compact_total, c->total, memory_order_relaxed);
                atomic_store_explicit(&st->compact_done, done, memory_order_relaxed);
            }
        }
    }
    return cw_flush(&c->w);
}

/* Phase 1: build the new generation's index and cache from the copied log
 * (fresh files: a crashed compaction's leftovers are overwritten). */
static int compact_open_new(struct compaction *c)
{
    unlink(c->idxt);
    unlink(c->cachet);
    int rc = store_gen_open_paths(c->logt, c->idxt, c->cachet,
                                  O_CREAT | O_TRUNC, &c->ng);
    if (rc < 0)
        return rc;
    c->ng->generation = c->G;
    if ((rc = store_cache_hdr_write(c->ng->cache_fd, c->G)) < 0)
        return rc;
    store_idx_hdr_init(store_gen_hdr(c->ng), &c->lh);
    return store_gen_catch_up(c->ng, CU_KEEP, &c->nend, NULL);
}

/* Phase 2 (writer held): the expunge history of the new generation, as one
 * LOG_VANISHED record (see since.c), built from the old one's and every
 * tombstone as they are now: the tombstones this compaction drops live on
 * in it.  Written after the replay, since expunges during phase 1 belong
 * in it too (the new log is of LOG_VERSION_EXT, which allows it). */
static int compact_history(struct compaction *c, uint32_t n1)
{
    store_buf pl = {0};
    uint32_t nruns = 0;
    int rc = store_hist_build(c->old, n1, A_LOAD(&c->oh->uidnext), &pl, &nruns);
    if (rc == 0 && nruns) {
        rc = cw_rec(&c->w, LOG_VANISHED, pl.data, pl.len, NULL, 0);
    }
    free(pl.data);
    if (rc < 0)
        return rc;
    return cw_flush(&c->w);
}

/* Phase 2 (writer held): append what changed since the snapshot —
 * keyword slots, flag changes as FLAGS records with the same modseq,
 * expunges as EXPUNGE records, and the messages added meanwhile. */
static int compact_replay(struct compaction *c)
{
    struct gen *old = c->old;
    int rc;
    if ((rc = cw_keywords(&c->w, c->oh, c->nkw0)) < 0)
        return rc;
    for (uint32_t p = 0; p < c->n0; p++) {
        const struct idx_entry *e = store_gen_entry(old, p);
        uint64_t fm = A_LOAD(&e->fm), kw = A_LOAD(&e->keywords);
        const struct seen *was = &c->seen[p];
        if (FM_FLAGS(was->fm) & ENT_EXPUNGED)
            continue;
        if (FM_FLAGS(fm) & ENT_EXPUNGED)
            rc = cw_expunge(&c->w, e->uid, FM_MODSEQ(fm));
        else if (fm != was->fm || kw != was->keywords)
            rc = cw_flags(&c->w, e->uid, fm, kw);
        if (rc < 0)
            return rc;
    }
    uint32_t n1 = A_LOAD(&c->oh->count);
    for (uint32_t p = c->n0; p < n1; p++) {
        const struct idx_entry *e = store_gen_entry(old, p);
        uint64_t fm = A_LOAD(&e->fm);
        if (FM_FLAGS(fm) & ENT_EXPUNGED)
            raise_tomb_floor(&c->lh, fm);
        else if ((rc = cw_message(&c->w, old, e, fm, A_LOAD(&e->keywords))) < 0)
            return rc;
    }
    return compact_history(c, n1);
}

/* Phase 2: the final header (the counters as they are now), the new index
 * caught up to the whole log, and the log on disk. */
static int compact_seal(struct compaction *c)
{
    struct idx_hdr *oh = c->oh;
    struct log_file_hdr *lh = &c->lh;
    lh->base_uidnext = A_LOAD(&oh->uidnext);
    lh->base_modseq = A_LOAD(&oh->highestmodseq);
    store_log_hdr_seal(lh);
    int rc;
    if ((rc = store_fs_pwrite_all(c->w.fd, lh, sizeof *lh, 0)) < 0 ||
        (rc = store_gen_catch_up(c->ng, CU_KEEP, &c->nend, NULL)) < 0)
        return rc;
    struct idx_hdr *nh = store_gen_hdr(c->ng);
    if (lh->base_uidnext > nh->uidnext)
        nh->uidnext = lh->base_uidnext;
    if (lh->base_modseq > nh->highestmodseq)
        nh->highestmodseq = lh->base_modseq;
    nh->tomb_floor = lh->tomb_floor;
    nh->recent_uid = A_LOAD(&oh->recent_uid);  /* final hand-over later */
    nh->dead_bytes = 0;
    if (fdatasync(c->w.fd) < 0)
        return -errno;
    return 0;
}

/* Phase 2: checkpoint the new index, then rename cache and log into place
 * and the index last: its rename is the commit point.  On failure
 * c->renamed says what compact_cleanup() must take back. */
static int compact_swap(struct compaction *c)
{
    int rc = store_mbox_checkpoint(c->mb, c->ng);
    if (rc < 0)
        return rc;
    if (rename(c->logt, c->logp) < 0)
        return -errno;
    c->renamed = 1;
    if (rename(c->cachet, c->cachep) < 0)
        return -errno;
    c->renamed = 2;
    if (rename(c->idxt, c->idxp) < 0)
        return -errno;
    c->renamed = 0;     /* committed */
    return 0;
}

/* After the commit point the new files are the mailbox, whatever the
 * directory fsync (whose result this returns) said: hand the \Recent
 * claims over, install the generation and drop the old log and cache. */
static int compact_install(struct compaction *c)
{
    store_mbox *mb = c->mb;
    int rc = store_fs_fsync_dir(mb->dir);
    store_gen_recent_handover(c->old, c->ng);
    mb->log_end = c->nend;
    /* Still the generation this compaction started from (checked under
     * the lock held since), followed by the next one. */
    RM_ASSERT(mb->gen == c->old && c->ng->generation == c->old->generation + 1);
    store_mbox_gen_install(mb, c->ng);
    c->ng = NULL;
    char p[PATH_MAX];
    store_mbox_path(mb, p, sizeof p, "log.%" PRIu64, c->G - 1);
    unlink(p);
    store_mbox_path(mb, p, sizeof p, "cache.%" PRIu64, c->G - 1);
    unlink(p);
    return rc;
}

static void compact_cleanup(struct compaction *c, int rc)
{
    if (c->renamed) {
        /* The index rename did not happen: the old generation is still the
         * mailbox, and a log.<G+1> left beside it would be taken for the
         * newest if the index were lost later, without what is appended
         * to the old log from now on. */
        unlink(c->logp);
        if (c->renamed > 1)
            unlink(c->cachep);
    }
    if (c->locked)
        store_mbox_wunlock(c->mb);
    if (c->ng) {
        store_gen_put(c->ng);
        unlink(c->logt);
        unlink(c->idxt);
        unlink(c->cachet);
    } else if (rc < 0 && c->w.fd >= 0) {
        unlink(c->logt);
    }
    if (c->w.fd >= 0)
        close(c->w.fd);
    free(c->w.buf.data);
    free(c->seen);
}

int store_compact(store_mbox *mb, store_progress_fn progress, void *arg)
{
    /* One compaction at a time, and its temporary files are its own while
     * it runs: recovery in another process sweeps them only when it can
     * take this lock (see store_mbox_sweep).  Taken before the snapshot, so a
     * compaction that waited here compacts what the previous one left. */
    int cfd = store_mbox_compact_lock(mb, true);
    if (cfd < 0)
        return cfd;
    store_snap *s = store_snap_get(mb);
    if (!s) {
        store_mbox_compact_unlock(cfd);
        return -ENOMEM;
    }
    struct compaction c = {
        .mb = mb, .s = s, .old = s->g, .oh = store_gen_hdr(s->g),
        .G = s->g->generation + 1, .w = {.fd = -1, .end = LOG_HDR_SIZE},
    };
    int rc;
    /* Phase 1, without the writer lock. */
    if ((rc = compact_paths(&c)) < 0 ||
        (rc = compact_start_log(&c)) < 0 ||
        (rc = compact_copy_live(&c, progress, arg)) < 0 ||
        (rc = compact_open_new(&c)) < 0)
        goto out;
    /* Phase 2, with it. */
    if ((rc = store_mbox_wlock(mb)) < 0)
        goto out;
    c.locked = true;
    /* A frozen user's files are being copied away: no new generation. */
    if ((rc = store_user_check_frozen(mb->user->root)) < 0)
        goto out;
    if (mb->gen != c.old) {
        rc = -EAGAIN;   /* someone else compacted meanwhile */
        goto out;
    }
    if ((rc = compact_replay(&c)) < 0 ||
        (rc = compact_seal(&c)) < 0 ||
        (rc = compact_swap(&c)) < 0)
        goto out;
    uint64_t before = mb->log_end;
    rc = compact_install(&c);
    if (progress)
        progress(arg, c.total, c.total);
    store_stats *st = store_stats_get();
    if (st) {
        atomic_fetch_add_explicit(&st->compactions, 1, memory_order_relaxed);
        if (before > c.nend)
            atomic_fetch_add_explicit(&st->compact_reclaimed, before - c.nend,
                                      memory_order_relaxed);
    }
out:
    if (store_stats_get()) {
        atomic_store_explicit(&store_stats_get()->compact_total, 0, memory_order_relaxed);
        atomic_store_explicit(&store_stats_get()->compact_done, 0, memory_order_relaxed);
    }
    compact_cleanup(&c, rc);
    store_snap_put(s);
    store_mbox_compact_unlock(cfd);
    return rc;
}
