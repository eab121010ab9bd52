/* store/quota.c — what a user's mailboxes hold, for quotas (store.h).
 *
 * Usage is not a counter of its own: every mailbox's index header already
 * keeps `messages` and `size_live` exactly, updated by the writer of any
 * process in the same transaction that changes the messages (a shared
 * mapping, atomic stores), rebuilt from the log by recovery and by
 * store_check.  A second, per-user counter would have to be kept in step
 * with those across crashes, compactions and repairs; summing the headers
 * cannot drift from them.
 *
 * To keep the sum cheap, the first 8 KiB (the header) of each mailbox's
 * index file is mapped read-only once per process and kept while the user
 * is open: a sum is then one lock of the mailbox list (to see CREATE,
 * DELETE and RENAME of any process) and two atomic loads per mailbox; no
 * mailbox is opened and no file descriptor is held.  A header whose index
 * was replaced (compaction, rebuild) says so (`superseded`) and is mapped
 * again from the new file.
 *
 * Each map is one VMA, and a process has at most vm.max_map_count of them
 * (65530 by default) for everything it maps: past QMAP_MAX headers in the
 * process (1000 users of 100 mailboxes each), a mailbox's header is read
 * with pread instead, a few system calls more per mailbox and sum. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/internal.h"

#define A_LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)

#define QMAP_MAX 16384
static atomic_uint qmaps_mapped;    /* in the process */
static atomic_uint qmaps_max = QMAP_MAX;

void store_quota_map_max(unsigned n)
{
    atomic_store(&qmaps_max, n);
}

struct qmap {
    uint64_t id;
    const struct idx_hdr *h;    /* IDX_HDR_SIZE bytes, read-only; NULL: none */
};

static void qmap_drop(struct qmap *q)
{
    if (q->h) {
        munmap((void *)q->h, IDX_HDR_SIZE);
        atomic_fetch_sub(&qmaps_mapped, 1);
    }
    q->h = NULL;
}

void store_quota_free(struct store_user *u)
{
    for (size_t i = 0; i < u->nqmaps; i++)
        qmap_drop(&u->qmaps[i]);
    free(u->qmaps);
    u->qmaps = NULL;
    u->nqmaps = 0;
}

static bool hdr_current(const struct idx_hdr *h, uint64_t id)
{
    return memcmp(h->magic, IDX_MAGIC, 8) == 0 && h->mailbox_id == id &&
           h->static_crc == store_crc32c(0, h, offsetof(struct idx_hdr, static_crc)) &&
           !A_LOAD(&h->superseded);
}

static int index_path(struct store_user *u, uint64_t id, char *path, size_t n)
{
    if ((size_t)snprintf(path, n, "%s/m/%" PRIu64 "/index", u->root, id) >= n)
        return -ENAMETOOLONG;
    return 0;
}

/* Past QMAP_MAX: the header read once.  -EAGAIN as for qmap_open. */
static int usage_by_pread(struct store_user *u, uint64_t id, store_usage *acc)
{
    char path[PATH_MAX];
    int rc = index_path(u, id, path, sizeof path);
    if (rc < 0)
        return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -EAGAIN;
    /* the header up to the fields read (the keyword table is most of it) */
    struct idx_hdr h;
    memset(&h, 0, sizeof h);
    rc = store_fs_pread_all(fd, &h, offsetof(struct idx_hdr, dead_bytes), 0);
    close(fd);
    if (rc < 0 || !hdr_current(&h, id))
        return -EAGAIN;
    acc->messages += h.messages;
    acc->bytes += h.size_live;
    return 0;
}

/* Map the header of mailbox id's current index.  Only a header that is the
 * mailbox's own, valid and current is kept: -EAGAIN otherwise (the caller
 * then asks the mailbox itself, which recovers or rebuilds it); -ENFILE
 * when the process holds QMAP_MAX maps already. */
static int qmap_open(struct store_user *u, uint64_t id, const struct idx_hdr **out)
{
    char path[PATH_MAX];
    int rc = index_path(u, id, path, sizeof path);
    if (rc < 0)
        return rc;
    if (atomic_load(&qmaps_mapped) >= atomic_load(&qmaps_max))
        return -ENFILE;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -EAGAIN;
    /* A file shorter than the header would SIGBUS on the loads below; an
     * index is created at its full header size before it is renamed into
     * place (mbox.c) and never shrinks, so a short one is never current. */
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size < (off_t)IDX_HDR_SIZE) {
        close(fd);
        return -EAGAIN;
    }
    void *p = mmap(NULL, IDX_HDR_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return -EAGAIN;
    const struct idx_hdr *h = p;
    if (!hdr_current(h, id)) {
        munmap(p, IDX_HDR_SIZE);
        return -EAGAIN;
    }
    atomic_fetch_add(&qmaps_mapped, 1);
    *out = h;
    return 0;
}

/* The slow path: open the mailbox (recovery, catch-up) and ask it. */
static int usage_by_open(struct store_user *u, const char *name, store_usage *acc)
{
    store_status st;
    int rc = store_mailbox_status(u, name, &st);
    if (rc == -ENOENT)
        return 0;   /* deleted meanwhile */
    if (rc < 0)
        return rc;
    acc->messages += st.messages;
    acc->bytes += st.size;
    return 0;
}

int store_user_usage(store_user *u, store_usage *out)
{
    uint64_t *ids;
    char **names;
    size_t n;
    memset(out, 0, sizeof *out);
    int rc = store_user_box_ids(u, &ids, &names, &n);
    if (rc < 0)
        return rc;
    struct qmap *nv = calloc(n ? n : 1, sizeof *nv);
    if (!nv) {
        rc = -ENOMEM;
        goto out;
    }
    pthread_mutex_lock(&u->qlock);
    /* Carry over the maps of mailboxes still listed (both lists are in
     * list order, by name; ids are matched by a merge-free search since a
     * user has few mailboxes and RENAME reorders them). */
    size_t hint = 0;
    for (size_t i = 0; i < n; i++) {
        nv[i].id = ids[i];
        for (size_t k = 0; k < u->nqmaps; k++) {
            size_t j = (hint + k) % u->nqmaps;
            if (u->qmaps[j].id == ids[i] && u->qmaps[j].h) {
                nv[i].h = u->qmaps[j].h;
                u->qmaps[j].h = NULL;
                hint = j + 1;
                break;
            }
        }
    }
    store_quota_free(u);
    u->qmaps = nv;
    u->nqmaps = n;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct qmap *q = &nv[i];
        if (q->h && A_LOAD(&q->h->superseded))
            qmap_drop(q);   /* compacted or rebuilt: the new file's */
        int mrc = 0;
        if (!q->h && (mrc = qmap_open(u, q->id, &q->h)) == -ENFILE &&
            usage_by_pread(u, q->id, out) == 0)
            continue;
        if (!q->h && mrc < 0) {
            /* No usable index on disk (never opened since a crash left it
             * behind, or being rebuilt): open the mailbox, which repairs
             * it, and map the result next time. */
            pthread_mutex_unlock(&u->qlock);
            rc = usage_by_open(u, names[i], out);
            pthread_mutex_lock(&u->qlock);
            if (u->qmaps != nv)
                break;  /* another thread replaced the maps meanwhile */
            if (rc == 0 && qmap_open(u, q->id, &q->h) < 0)
                q->h = NULL;
            continue;
        }
        out->messages += A_LOAD(&q->h->messages);
        out->bytes += A_LOAD(&q->h->size_live);
    }
    if (u->qmaps != nv && rc == 0) {
        /* Raced with another sum: start over on its maps (rare). */
        pthread_mutex_unlock(&u->qlock);
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
        free(ids);
        return store_user_usage(u, out);
    }
    pthread_mutex_unlock(&u->qlock);
out:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(ids);
    return rc;
}

static int range_cmp(const void *a, const void *b)
{
    const store_range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Sum the live messages of s in [lo, hi] (with `flag` set, if not 0). */
static void sum_range(store_snap *s, uint32_t lo, uint32_t hi, uint32_t flag,
                      store_usage *acc)
{
    store_cursor c;
    store_cursor_init(&c, s);
    store_msg m;
    int r = store_cursor_seek(&c, lo, &m);
    if (r == -ENOENT)
        r = store_cursor_msg(&c, &m);
    while (r >= 0 && m.uid <= hi) {
        if (r == 1 && (!flag || (m.flags & flag))) {
            acc->messages++;
            acc->bytes += m.size;
        }
        if (m.uid == UINT32_MAX)
            break;
        r = store_cursor_next(&c, &m);
    }
}

int store_mbox_set_usage(store_mbox *mb, const store_range *set, size_t nset,
                         store_usage *out)
{
    memset(out, 0, sizeof *out);
    if (!nset)
        return 0;
    /* The set may overlap itself (store.h): count each message once. */
    store_range *r = malloc(nset * sizeof *r);
    if (!r)
        return -ENOMEM;
    memcpy(r, set, nset * sizeof *r);
    qsort(r, nset, sizeof *r, range_cmp);
    store_snap *s = store_snap_get(mb);
    if (!s) {
        free(r);
        return -ENOMEM;
    }
    uint32_t lo = r[0].lo, hi = r[0].hi;
    for (size_t i = 1; i <= nset; i++) {
        if (i < nset && (hi == UINT32_MAX || r[i].lo <= hi + 1)) {
            if (r[i].hi > hi)
                hi = r[i].hi;
            continue;
        }
        if (lo <= hi)
            sum_range(s, lo, hi, 0, out);
        if (i < nset) {
            lo = r[i].lo;
            hi = r[i].hi;
        }
    }
    store_snap_put(s);
    free(r);
    return 0;
}

int store_mbox_deleted_usage(store_mbox *mb, store_usage *out)
{
    memset(out, 0, sizeof *out);
    store_snap *s = store_snap_get(mb);
    if (!s)
        return -ENOMEM;
    sum_range(s, 1, UINT32_MAX, STORE_F_DELETED, out);
    store_snap_put(s);
    return 0;
}
