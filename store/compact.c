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
                                          sizeof(struct log_message) + e->size);
    if (!rec)
        return -ENOMEM;
    struct log_message m;
    memcpy(&m, rec + sizeof(struct log_rec), sizeof m);
    if (m.uid != e->uid || m.size != e->size)
        return -EBADMSG;
    m.flags = FM_FLAGS(fm) & STORE_F_ALL;
    m.modseq = FM_MODSEQ(fm);
    m.keywords = keywords;
    return cw_rec(w, LOG_MESSAGE, &m, sizeof m,
                  rec + sizeof(struct log_rec) + sizeof m, e->size);
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
    struct gen *old = s->g, *ng = NULL;
    struct idx_hdr *oh = store_gen_hdr(old);
    uint64_t G = old->generation + 1;
    char logt[PATH_MAX], logp[PATH_MAX], idxt[PATH_MAX], idxp[PATH_MAX];
    char cachet[PATH_MAX], cachep[PATH_MAX];
    struct cw w = {.fd = -1, .end = LOG_HDR_SIZE};
    struct seen *seen = NULL;
    bool locked = false;
    int renamed = 0;            /* how many of log, cache were renamed */
    int rc;
    if ((rc = store_mbox_path(mb, logt, sizeof logt, "log.%" PRIu64 ".tmp", G)) < 0 ||
        (rc = store_mbox_path(mb, logp, sizeof logp, "log.%" PRIu64, G)) < 0 ||
        (rc = store_mbox_path(mb, idxt, sizeof idxt, "index.compact", 0)) < 0 ||
        (rc = store_mbox_path(mb, idxp, sizeof idxp, "index", 0)) < 0 ||
        (rc = store_mbox_path(mb, cachet, sizeof cachet, "cache.%" PRIu64 ".tmp", G)) < 0 ||
        (rc = store_mbox_path(mb, cachep, sizeof cachep, "cache.%" PRIu64, G)) < 0)
        goto out;

    /* ---- phase 1 ---- */
    w.fd = open(logt, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (w.fd < 0) {
        rc = -errno;
        goto out;
    }
    struct log_file_hdr lh = {0};
    memcpy(lh.magic, LOG_MAGIC, 8);
    lh.version = FMT_VERSION;
    lh.hdr_size = LOG_HDR_SIZE;
    lh.mailbox_id = oh->mailbox_id;
    lh.generation = G;
    lh.uidvalidity = oh->uidvalidity;
    lh.base_uidnext = A_LOAD(&oh->uidnext);
    lh.base_modseq = A_LOAD(&oh->highestmodseq);
    lh.tomb_floor = oh->tomb_floor;
    store_log_hdr_seal(&lh);
    if ((rc = store_fs_pwrite_all(w.fd, &lh, sizeof lh, 0)) < 0)
        goto out;
    unsigned nkw0 = A_LOAD(&oh->nkeywords);
    if ((rc = cw_keywords(&w, oh, 0)) < 0)
        goto out;
    uint32_t n0 = s->count;
    seen = calloc(n0 ? n0 : 1, sizeof *seen);
    if (!seen) {
        rc = -ENOMEM;
        goto out;
    }
    uint64_t total = 0, done = 0;
    for (uint32_t p = 0; p < n0; p++)
        total += store_gen_entry(old, p)->size;
    for (uint32_t p = 0; p < n0; p++) {
        const struct idx_entry *e = store_gen_entry(old, p);
        uint64_t fm = A_LOAD(&e->fm), kw = A_LOAD(&e->keywords);
        seen[p] = (struct seen){fm, kw};
        if (FM_FLAGS(fm) & ENT_EXPUNGED) {
            if (FM_MODSEQ(fm) > lh.tomb_floor)
                lh.tomb_floor = FM_MODSEQ(fm);
            continue;
        }
        if ((rc = cw_message(&w, old, e, fm, kw)) < 0)
            goto out;
        done += e->size;
        if (progress && (p & 255) == 0)
            progress(arg, done, total);
    }
    if ((rc = cw_flush(&w)) < 0)
        goto out;
    unlink(idxt);
    unlink(cachet);
    if ((rc = store_gen_open_paths(logt, idxt, cachet, O_CREAT | O_TRUNC, &ng)) < 0)
        goto out;
    ng->generation = G;
    if ((rc = store_cache_hdr_write(ng->cache_fd, G)) < 0)
        goto out;
    store_idx_hdr_init(store_gen_hdr(ng), &lh);
    uint64_t nend;
    if ((rc = store_gen_catch_up(ng, CU_KEEP, &nend, NULL)) < 0)
        goto out;

    /* ---- phase 2 ---- */
    if ((rc = store_mbox_wlock(mb)) < 0)
        goto out;
    locked = true;
    if (mb->gen != old) {
        rc = -EAGAIN;   /* someone else compacted meanwhile */
        goto out;
    }
    if ((rc = cw_keywords(&w, oh, nkw0)) < 0)
        goto out;
    for (uint32_t p = 0; p < n0; p++) {
        const struct idx_entry *e = store_gen_entry(old, p);
        uint64_t fm = A_LOAD(&e->fm), kw = A_LOAD(&e->keywords);
        if (FM_FLAGS(seen[p].fm) & ENT_EXPUNGED)
            continue;
        if (FM_FLAGS(fm) & ENT_EXPUNGED)
            rc = cw_expunge(&w, e->uid, FM_MODSEQ(fm));
        else if (fm != seen[p].fm || kw != seen[p].keywords)
            rc = cw_flags(&w, e->uid, fm, kw);
        if (rc < 0)
            goto out;
    }
    uint32_t n1 = A_LOAD(&oh->count);
    for (uint32_t p = n0; p < n1; p++) {
        const struct idx_entry *e = store_gen_entry(old, p);
        uint64_t fm = A_LOAD(&e->fm);
        if (FM_FLAGS(fm) & ENT_EXPUNGED) {
            if (FM_MODSEQ(fm) > lh.tomb_floor)
                lh.tomb_floor = FM_MODSEQ(fm);
        } else if ((rc = cw_message(&w, old, e, fm, A_LOAD(&e->keywords))) < 0) {
            goto out;
        }
    }
    if ((rc = cw_flush(&w)) < 0)
        goto out;
    /* Final header: the counters as they are now. */
    lh.base_uidnext = A_LOAD(&oh->uidnext);
    lh.base_modseq = A_LOAD(&oh->highestmodseq);
    store_log_hdr_seal(&lh);
    if ((rc = store_fs_pwrite_all(w.fd, &lh, sizeof lh, 0)) < 0 ||
        (rc = store_gen_catch_up(ng, CU_KEEP, &nend, NULL)) < 0)
        goto out;
    struct idx_hdr *nh = store_gen_hdr(ng);
    if (lh.base_uidnext > nh->uidnext)
        nh->uidnext = lh.base_uidnext;
    if (lh.base_modseq > nh->highestmodseq)
        nh->highestmodseq = lh.base_modseq;
    nh->tomb_floor = lh.tomb_floor;
    nh->recent_uid = A_LOAD(&oh->recent_uid);  /* final hand-over below */
    nh->dead_bytes = 0;
    if (fdatasync(w.fd) < 0) {
        rc = -errno;
        goto out;
    }
    if ((rc = store_mbox_checkpoint(mb, ng)) < 0)
        goto out;
    if (rename(logt, logp) < 0) {
        rc = -errno;
        goto out;
    }
    renamed = 1;
    if (rename(cachet, cachep) < 0) {
        rc = -errno;
        goto out;
    }
    renamed = 2;
    if (rename(idxt, idxp) < 0) {
        rc = -errno;
        goto out;
    }
    renamed = 0;    /* committed */
    rc = store_fs_fsync_dir(mb->dir);
    /* The index rename was the commit point; from here on the new files
     * are the mailbox, whatever the directory fsync said. */
    store_gen_recent_handover(old, ng);
    mb->log_end = nend;
    /* Still the generation this compaction started from (checked under
     * the lock held since), followed by the next one. */
    RM_ASSERT(mb->gen == old && ng->generation == old->generation + 1);
    store_mbox_gen_install(mb, ng);
    ng = NULL;
    char p[PATH_MAX];
    store_mbox_path(mb, p, sizeof p, "log.%" PRIu64, G - 1);
    unlink(p);
    store_mbox_path(mb, p, sizeof p, "cache.%" PRIu64, G - 1);
    unlink(p);
    if (progress)
        progress(arg, total, total);
out:
    if (renamed) {
        /* The index rename did not happen: the old generation is still the
         * mailbox, and a log.<G+1> left beside it would be taken for the
         * newest if the index were lost later, without what is appended
         * to the old log from now on. */
        unlink(logp);
        if (renamed > 1)
            unlink(cachep);
    }
    if (locked)
        store_mbox_wunlock(mb);
    if (ng) {
        store_gen_put(ng);
        unlink(logt);
        unlink(idxt);
        unlink(cachet);
    } else if (rc < 0 && w.fd >= 0) {
        unlink(logt);
    }
    if (w.fd >= 0)
        close(w.fd);
    free(w.buf.data);
    free(seen);
    store_snap_put(s);
    store_mbox_compact_unlock(cfd);
    return rc;
}
