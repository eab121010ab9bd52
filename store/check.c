/* store/check.c — verify a mailbox against its log, and repair it.
 *
 * The log is read record by record; a bad record followed by valid ones is
 * corruption inside the log (reported, not repairable without losing the
 * damaged record), a bad stretch reaching the end is a torn tail.  The
 * index is compared field by field with one replayed from the log into
 * scratch files, and every cache entry's checksum and structure is
 * verified.  Repair cuts a torn tail and rebuilds index and cache. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "store/internal.h"

#define A_LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)

/* Next offset >= off (8-aligned) where a valid record starts, or size. */
static uint64_t resync(const uint8_t *base, uint64_t size, uint64_t off)
{
    for (off = ALIGN8(off + 1); off + sizeof(struct log_rec) <= size; off += 8)
        if (log_rec_check(base, size, off) > 0)
            return off;
    return size;
}

static int scan_log(struct gen *g, store_check_report *rep,
                    store_progress_fn progress, void *arg)
{
    struct stat_size { uint64_t v; } sz;
    off_t end = lseek(g->log_fd, 0, SEEK_END);
    if (end < 0)
        return -errno;
    sz.v = (uint64_t)end;
    const uint8_t *base = mapchain_get(&g->log, 0, sz.v);
    if (!base)
        return -ENOMEM;
    uint64_t off = LOG_HDR_SIZE, n = 0;
    while (off < sz.v) {
        int64_t len = log_rec_check(base, sz.v, off);
        if (len > 0) {
            const struct log_rec *r = (const void *)(base + off);
            rep->records++;
            if (r->type == LOG_MESSAGE)
                rep->messages++;
            off += (uint64_t)len;
        } else {
            uint64_t next = resync(base, sz.v, off);
            if (next >= sz.v) {
                rep->torn_bytes = sz.v - off;
                break;
            }
            rep->bad_records++;
            off = next;
        }
        if (progress && (++n & 1023) == 0)
            progress(arg, off, sz.v);
    }
    if (progress)
        progress(arg, sz.v, sz.v);
    return 0;
}

static int compare_index(struct store_mbox *mb, struct gen *g,
                         store_check_report *rep)
{
    char logp[PATH_MAX], idxt[PATH_MAX], cachet[PATH_MAX];
    struct gen *ref = NULL;
    int rc;
    if ((rc = path_in(mb, logp, sizeof logp, "log.%llu",
                      (unsigned long long)g->generation)) < 0 ||
        (rc = path_in(mb, idxt, sizeof idxt, "index.check", 0)) < 0 ||
        (rc = path_in(mb, cachet, sizeof cachet, "cache.check", 0)) < 0)
        return rc;
    if ((rc = gen_open_paths(logp, idxt, cachet, O_CREAT | O_TRUNC, &ref)) < 0)
        goto out;
    struct log_file_hdr lh;
    if ((rc = read_log_hdr(ref->log_fd, &lh)) < 0 ||
        (rc = cache_hdr_write(ref->cache_fd, g->generation)) < 0)
        goto out;
    idx_hdr_init(gen_hdr(ref), &lh);
    uint64_t end;
    if ((rc = gen_catch_up(ref, false, &end)) < 0)
        goto out;
    struct idx_hdr *h = gen_hdr(g), *rh = gen_hdr(ref);
    uint32_t n = A_LOAD(&h->count);
    if (n != rh->count || h->uidnext != rh->uidnext ||
        h->highestmodseq != rh->highestmodseq || h->messages != rh->messages ||
        h->unseen != rh->unseen || h->deleted != rh->deleted ||
        h->size_live != rh->size_live || h->nkeywords != rh->nkeywords)
        rep->index_mismatches++;
    if (n > rh->count)
        n = rh->count;
    for (uint32_t p = 0; p < n; p++) {
        const struct idx_entry *a = gen_entry(g, p), *b = gen_entry(ref, p);
        if (a->uid != b->uid || a->size != b->size || a->fm != b->fm ||
            a->keywords != b->keywords || a->log_off != b->log_off ||
            a->internal_date != b->internal_date || a->hdr_len != b->hdr_len ||
            a->tz_min != b->tz_min || a->crc != entry_crc(a)) {
            rep->index_mismatches++;
            continue;
        }
        /* The cache entry must be intact and describe this message. */
        const uint8_t *c = a->cache_off
            ? mapchain_get(&g->cache, a->cache_off, sizeof(struct cache_rec) + a->cache_len)
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
    }
out:
    gen_put(ref);
    unlink(idxt);
    unlink(cachet);
    return rc;
}

int store_check(store_mbox *mb, bool repair, store_check_report *rep,
                store_progress_fn progress, void *arg)
{
    memset(rep, 0, sizeof *rep);
    /* The lock keeps writers out while we compare; readers go on.  Taking
     * it also cuts a torn tail, so look at the tail before that. */
    pthread_mutex_lock(&mb->wlock);
    struct gen *g0 = mbox_gen_get(mb);
    int rc = scan_log(g0, rep, progress, arg);
    gen_put(g0);
    pthread_mutex_unlock(&mb->wlock);
    if (rc < 0)
        return rc;
    bool torn = rep->torn_bytes > 0;
    if (torn && !repair)
        return -EBADMSG;
    if ((rc = mbox_wlock(mb)) < 0)      /* cuts the torn tail */
        return rc;
    if (torn)
        rep->repaired = true;
    rc = compare_index(mb, mb->gen, rep);
    if (rc == 0 && repair && (rep->index_mismatches || rep->cache_errors)) {
        if ((rc = mbox_rebuild(mb)) == 0)
            rep->repaired = true;
    }
    mbox_wunlock(mb);
    if (rc < 0)
        return rc;
    if (rep->bad_records)
        return -EBADMSG;
    if (!repair && (rep->index_mismatches || rep->cache_errors))
        return -EBADMSG;
    return 0;
}
