/* store/check.c — verify a mailbox against its log, and repair it.
 *
 * The log is read record by record; a bad record followed by valid ones is
 * corruption inside the log (reported, not repairable without losing the
 * damaged record), a bad stretch reaching the end is a torn tail.  The
 * index is compared field by field with one replayed from the log into
 * scratch files, and every cache entry's checksum and structure is
 * verified.  Repair cuts a torn tail and rebuilds index and cache. */
#include <dirent.h>
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

static int scan_log(struct gen *g, store_check_report *rep,
                    store_progress_fn progress, void *arg)
{
    off_t fend = lseek(g->log_fd, 0, SEEK_END);
    if (fend < 0)
        return -errno;
    uint64_t size = (uint64_t)fend;
    const uint8_t *base = store_mapchain_get(&g->log, 0, size);
    if (!base)
        return -ENOMEM;
    uint64_t off = LOG_HDR_SIZE, n = 0;
    while (off < size) {
        uint64_t end;
        store_log_scan_end(base, size, off, &end);
        while (off < end) {
            const struct log_rec *r = (const void *)(base + off);
            rep->records++;
            if (r->type == LOG_MESSAGE) {
                struct log_message m;
                memcpy(&m, r + 1, sizeof m);
                rep->messages++;
                rep->legacy_messages += m.ext_len == 0;
            }
            if (r->type == LOG_VANISHED) {
                /* store_log_scan_end validated its runs. */
                struct log_vanished v;
                memcpy(&v, r + 1, sizeof v);
                rep->history_runs += v.nruns;
            }
            off += ALIGN8(sizeof *r + (uint64_t)r->len);
            if (progress && (++n & 1023) == 0)
                progress(arg, off, size);
        }
        if (off >= size)
            break;
        uint64_t next = store_log_resync(base, size, off);
        if (next >= size) {
            rep->torn_bytes = size - off;
            break;
        }
        rep->bad_records++;     /* a damaged stretch inside the log */
        off = next;
    }
    if (progress)
        progress(arg, size, size);
    return 0;
}

static int compare_index(struct store_mbox *mb, struct gen *g,
                         store_check_report *rep)
{
    char logp[PATH_MAX], idxt[PATH_MAX], cachet[PATH_MAX];
    struct gen *ref = NULL;
    int rc;
    if ((rc = store_mbox_path(mb, logp, sizeof logp, "log.%llu",
                              (unsigned long long)g->generation)) < 0 ||
        (rc = store_mbox_path(mb, idxt, sizeof idxt, "index.check", 0)) < 0 ||
        (rc = store_mbox_path(mb, cachet, sizeof cachet, "cache.check", 0)) < 0)
        return rc;
    if ((rc = store_gen_open_paths(logp, idxt, cachet, O_CREAT | O_TRUNC, &ref)) < 0)
        goto out;
    struct log_file_hdr lh;
    if ((rc = store_log_hdr_read(ref->log_fd, &lh)) < 0 ||
        (rc = store_cache_hdr_write(ref->cache_fd, g->generation)) < 0)
        goto out;
    store_idx_hdr_init(store_gen_hdr(ref), &lh);
    uint64_t end;
    if ((rc = store_gen_catch_up(ref, CU_SALVAGE, &end, NULL)) < 0)
        goto out;
    struct idx_hdr *h = store_gen_hdr(g), *rh = store_gen_hdr(ref);
    uint32_t n = A_LOAD(&h->count);
    if (n != rh->count || h->uidnext != rh->uidnext ||
        h->highestmodseq != rh->highestmodseq || h->messages != rh->messages ||
        h->unseen != rh->unseen || h->deleted != rh->deleted ||
        h->size_live != rh->size_live || h->nkeywords != rh->nkeywords ||
        h->tombstones != rh->tombstones || h->hist_off != rh->hist_off ||
        memcmp(h->keywords, rh->keywords, sizeof h->keywords))
        rep->index_mismatches++;
    if (n > rh->count)
        n = rh->count;
    for (uint32_t p = 0; p < n; p++) {
        const struct idx_entry *a = store_gen_entry(g, p), *b = store_gen_entry(ref, p);
        if (a->uid != b->uid || a->size != b->size || a->fm != b->fm ||
            a->keywords != b->keywords || a->log_off != b->log_off ||
            a->internal_date != b->internal_date || a->hdr_len != b->hdr_len ||
            a->tz_min != b->tz_min || a->crc != store_entry_crc(a)) {
            rep->index_mismatches++;
            continue;
        }
        /* The cache entry must be intact and describe this message. */
        const uint8_t *c = a->cache_off
            ? store_mapchain_get(&g->cache, a->cache_off, sizeof(struct cache_rec) + a->cache_len)
            : NULL;
        struct cache_rec cr;
        store_cache view;
        if (!c) {
            rep->cache_errors++;
            continue;
        }
        memcpy(&cr, c, sizeof cr);
        if (cr.len != a->cache_len || cr.crc != store_crc32c(0, c + sizeof cr, cr.len) ||
            store_cache_open(c + sizeof cr, cr.len, &view) < 0)
            rep->cache_errors++;
        else if (!store_cache_is_current(&view))
            rep->cache_stale++;     /* an older parser's: readable, but without
                                       what this one adds (the preview) */
    }
out:
    store_gen_put(ref);
    unlink(idxt);
    unlink(cachet);
    return rc;
}

int store_check(store_mbox *mb, bool repair, store_check_report *rep,
                store_progress_fn progress, void *arg)
{
    memset(rep, 0, sizeof *rep);
    /* Scan before taking the writer lock: taking it cuts a torn tail, and
     * the report should say there was one.  The mutex keeps this
     * process's writers out meanwhile. */
    pthread_mutex_lock(&mb->wlock);
    struct gen *g0 = store_mbox_gen_get(mb);
    int rc = scan_log(g0, rep, progress, arg);
    store_gen_put(g0);
    pthread_mutex_unlock(&mb->wlock);
    if (rc < 0)
        return rc;
    if ((rep->torn_bytes || rep->bad_records) && !repair)
        return -EBADMSG;
    /* Damage inside the log makes the writer lock rebuild the index with
     * every intact record (salvage); a torn tail is cut. */
    if ((rc = store_mbox_wlock(mb)) < 0)
        return rc;
    /* Files of a dead compaction, rebuild or check and stale generations
     * are garbage whatever we are asked: opening removes them too. */
    unsigned swept = 0;
    if ((rc = store_mbox_sweep(mb, mb->gen->generation, &swept)) < 0) {
        store_mbox_wunlock(mb);
        return rc;
    }
    rep->leftovers = swept;
    rc = compare_index(mb, mb->gen, rep);
    if (rc == 0 && repair && (rep->index_mismatches || rep->cache_errors || rep->cache_stale))
        rc = store_mbox_rebuild(mb);
    store_mbox_wunlock(mb);
    if (rc < 0)
        return rc;
    if (!repair)
        return rep->index_mismatches || rep->cache_errors ? -EBADMSG : 0;
    /* Rewrite the log without its damaged stretches, so that what is left
     * checks clean.  Everything intact is kept. */
    if (rep->bad_records && (rc = store_compact(mb, NULL, NULL)) < 0)
        return rc;
    rep->repaired = rep->torn_bytes || rep->bad_records ||
                    rep->index_mismatches || rep->cache_errors || rep->cache_stale;
    return 0;
}

/* A mailbox directory's name is its id in canonical decimal. */
static bool id_of_name(const char *name, uint64_t *id)
{
    if (name[0] < '1' || name[0] > '9')
        return false;
    uint64_t v = 0;
    for (const char *p = name; *p; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *id = v;
    return true;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int store_user_orphans(store_user *u, bool reclaim, uint64_t **ids, size_t *n)
{
    char mdir[PATH_MAX];
    uint64_t *v = NULL;
    size_t nv = 0, cap = 0;
    if ((size_t)snprintf(mdir, sizeof mdir, "%s/m", u->root) >= sizeof mdir)
        return -ENAMETOOLONG;
    /* With the list locked no CREATE (files first, then the list), DELETE
     * (the list first, then the files) or RENAME of INBOX is half done in
     * any process, so a directory the list does not name is dead: its
     * DELETE was committed and crashed before removing it. */
    int rc = store_user_list_lock(u);
    if (rc < 0)
        return rc;
    DIR *d = opendir(mdir);
    if (!d) {
        rc = errno == ENOENT ? 0 : -errno;
        goto out;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        uint64_t id;
        if (!id_of_name(de->d_name, &id) || store_user_list_has_id(u, id))
            continue;
        if (nv == cap) {
            cap = cap ? cap * 2 : 8;
            uint64_t *nw = realloc(v, cap * sizeof *nw);
            if (!nw) {
                rc = -ENOMEM;
                break;
            }
            v = nw;
        }
        v[nv++] = id;
    }
    closedir(d);
    if (rc < 0)
        goto out;
    if (nv > 1)
        qsort(v, nv, sizeof *v, cmp_u64);
    for (size_t i = 0; reclaim && i < nv; i++) {
        char p[PATH_MAX + 24];
        snprintf(p, sizeof p, "%s/%" PRIu64, mdir, v[i]);
        if ((rc = store_fs_rmtree(p)) < 0)
            goto out;
    }
    if (reclaim && nv && (rc = store_fs_fsync_dir(mdir)) < 0)
        goto out;
    rc = (int)nv;
out:
    store_user_list_unlock(u);
    if (rc >= 0 && ids) {
        *ids = v;
        v = NULL;
    }
    if (n)
        *n = rc >= 0 ? nv : 0;
    free(v);
    return rc;
}
