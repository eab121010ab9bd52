/* store/internal.h — in-memory structures shared by the store's files.
 *
 * Functions here link across the store's files, so they carry the store_
 * prefix like the public API (ctest 'symbols' checks it); a helper one file
 * uses stays static there. */
#ifndef RINGMAIL_STORE_INTERNAL_H
#define RINGMAIL_STORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "store/format.h"
#include "store/assert.h"
#include "store/names.h"
#include "store/store.h"

/* ---- fsutil.c ---------------------------------------------------------- */

int store_fs_mkdirs(const char *path, mode_t mode);
int store_fs_rmtree(const char *path);
int store_fs_fsync_dir(const char *dir);
/* Write data to path atomically: path.tmp, fdatasync, rename, fsync dir. */
int store_fs_write_atomic(const char *path, const void *data, size_t len);
int store_fs_pwrite_all(int fd, const void *p, size_t n, uint64_t off);
/* fdatasync, counted and timed in the attached store_stats (stats.c). */
int store_stat_fdatasync(int fd);
int store_fs_pread_all(int fd, void *p, size_t n, uint64_t off);
/* The kernel's boot id (16 bytes), zero if unknown. */
void store_fs_boot_id(uint8_t out[16]);

/* ---- freeze.c ---------------------------------------------------------- */

/* -EROFS if the user whose directory is user_root is frozen, else 0.  Call
 * it holding the lock the write takes (see freeze.c). */
int store_user_check_frozen(const char *user_root);

/* ---- mapchain: growing read-only maps of a growing file ---------------- */

/* A file is mapped with a reservation larger than it, so growth needs no
 * remap; when it outgrows the reservation a larger map is made and the old
 * one kept (readers may still hold pointers into it) until the chain is
 * destroyed. */
struct mapseg {
    uint8_t *base;
    size_t len;
    struct mapseg *prev;
};

struct mapchain {
    _Atomic(struct mapseg *) cur;
    pthread_mutex_t lock;
    int fd;
    int prot;
};

int store_mapchain_init(struct mapchain *mc, int fd, int prot, size_t need);
void store_mapchain_destroy(struct mapchain *mc);
/* Pointer to [off, off+len); the caller knows those bytes exist in the file.
 * NULL on mmap failure. */
uint8_t *store_mapchain_get(struct mapchain *mc, uint64_t off, uint64_t len);

/* ---- a generation: one set of log/index/cache files -------------------- */

struct tombcache {
    uint32_t count;             /* entry count it was built for */
    uint64_t expunge_seq;       /* and expunge sequence */
    uint32_t n;
    uint32_t *pos;              /* sorted entry positions of tombstones */
    atomic_int refs;
};

struct gen {
    atomic_int refs;
    uint64_t generation;
    int log_fd, idx_fd, cache_fd;
    struct mapchain log, idx, cache;
    uint64_t idx_alloc;         /* index bytes known allocated (idx_alloc()):
                                   only those may be stored to via the map */
    bool log_ext;               /* the log is known to be LOG_VERSION_EXT
                                   (writer; see write.c log_ext_ready) */
    uint32_t pend;              /* entries written but not yet published:
                                   a transaction becomes visible at once */
    struct {
        uint32_t unseen, deleted;
        uint64_t size;
    } pend_messages;            /* their counter deltas */
    pthread_mutex_t tlock;      /* guards tomb */
    struct tombcache *tomb;
    /* Deferred durability (store_defer_*): how far the log has been
     * written and how far it is known to be on disk. */
    _Atomic uint64_t written, synced;
    atomic_int sync_failed;     /* -EIO once a deferred flush failed */
    pthread_mutex_t slock;      /* one flush of this log at a time */
    /* Entries whose cache blob this process has validated (seen.c). */
    _Atomic(struct store_seen *) seen;
    pthread_mutex_t seenlock;   /* guards growing `seen` */
    /* Values derived by SORT and THREAD, per kind by entry position
     * (memo.c); the bytes of byte values in memo_arena. */
    _Atomic(struct store_memo *) memo[STORE_MEMO_KINDS];
    struct store_memo_chunk *memo_arena;
    store_names memo_names;     /* numbers for THREAD's Message-IDs */
    pthread_mutex_t memolock;   /* guards growing `memo`, memo_arena */
    /* since.c, each built on first use and freed with the generation:
     * the expunge history (LOG_VANISHED, immutable) and the per-block
     * modseq maxima.  qlock guards their creation. */
    pthread_mutex_t qlock;
    _Atomic(struct hist *) hist;
    _Atomic(struct msum *) msum;
};

struct store_snap {
    struct store_mbox *mb;
    struct gen *g;
    struct tombcache *tomb;     /* built on first use by a seq function */
    bool has_tombs;
    uint32_t count;
    uint32_t live;
    uint32_t uidnext;
    uint64_t highestmodseq;
    struct reparse *reparse;    /* blobs re-parsed for damaged cache entries */
};

/* A queued write; see write.c (group commit). */
struct wop;

struct store_mbox {
    struct store_user *user;
    uint64_t id;
    char *dir;                  /* owned */
    int lock_fd;                /* flock()ed by writers */
    atomic_int refs;            /* guarded by user->lock for open/close */

    pthread_mutex_t glock;      /* guards `gen` swaps */
    struct gen *gen;

    pthread_mutex_t wlock;      /* one writer in the process */
    /* The append being written (under wlock): its messages' cache blobs,
     * parsed before the lock; hint[i] is the message of UID hint_uids[i]
     * (ascending, not always consecutive: a migration keeps the source's
     * gaps), and hint_next the next one the apply step will meet. */
    const store_new_msg *hint;
    const uint32_t *hint_uids;
    size_t nhint, hint_next;
    int failed;                 /* -errno after a failed fsync: read-only */
    uint64_t log_end;           /* writer's view of the log size */
    uint64_t ckpt_log;          /* log offset of the last checkpoint */

    pthread_mutex_t qlock;      /* group commit queue */
    pthread_cond_t qcond;
    struct wop *qhead, **qtail;
    int leader;

    bool lingering;             /* refs 0, kept open for the next user */
    struct store_mbox *next;    /* in user->open list */
};

struct mbox_entry {             /* the mailbox list */
    char *name;
    uint64_t id;                /* 0 for a \Noselect name */
    uint32_t uidvalidity;
    uint32_t special;
    bool noselect;              /* a name kept for its children, no files */
};

struct store_user {
    char *root;                 /* <mail_root>/<user>, owned */
    char *key;                  /* registry key */
    store_opts opts;
    int refs;                   /* guarded by the registry lock */
    pthread_mutex_t lock;       /* guards everything below */
    int lock_fd;                /* flock()ed around list changes */
    struct mbox_entry *boxes;
    size_t nboxes;
    char **subs;
    size_t nsubs;
    uint64_t next_id;
    uint32_t last_uidvalidity;
    struct timespec list_mtime;
    ino_t list_ino;
    off_t list_size;
    struct store_mbox *open;
    unsigned nlinger;           /* mailboxes in `open` with refs 0 */
    struct store_user *next;
    /* quota.c: the index headers of the user's mailboxes, mapped for
     * store_user_usage; guarded by qlock, built on first use. */
    pthread_mutex_t qlock;
    struct qmap *qmaps;
    size_t nqmaps;
};

/* ---- seen.c: cache blobs already validated ----------------------------- */

/* Open a blob that store_cache_open already accepted at this address in this
 * process (see seen.c): only its header and counts are checked. */
int store_cache_reopen(const void *blob, size_t len, store_cache *c);

bool store_seen_test(struct gen *g, uint32_t pos);
void store_seen_mark(struct gen *g, uint32_t pos);
void store_seen_free(struct gen *g);
void store_memo_free(struct gen *g);

/* Tests only (NULL otherwise): called as a transaction is published, just
 * before its entries become visible (test_store_concurrency widens that
 * moment with it). */
extern void (*store_test_publish_hook)(void);

/* ---- mbox.c ------------------------------------------------------------ */

static inline struct idx_hdr *store_gen_hdr(struct gen *g)
{
    return (struct idx_hdr *)store_mapchain_get(&g->idx, 0, IDX_HDR_SIZE);
}
struct idx_entry *store_gen_entry(struct gen *g, uint32_t pos);
struct gen *store_mbox_gen_get(struct store_mbox *mb);
void store_gen_put(struct gen *g);
/* Binary search: position of uid among the first count entries, or -1. */
int64_t store_gen_find(struct gen *g, uint32_t count, uint32_t uid);
/* First position with entry uid >= uid. */
uint32_t store_gen_lower_bound(struct gen *g, uint32_t count, uint32_t uid);

/* Take the write lock (mutex + flock), switch to a newer generation if one
 * was swapped in, and apply log records other processes wrote. */
int store_mbox_wlock(struct store_mbox *mb);
void store_mbox_wunlock(struct store_mbox *mb);

/* How catch-up treats a bad stretch of log: CU_KEEP leaves a torn tail,
 * CU_CUT truncates a torn tail, CU_SALVAGE also skips damage inside the log
 * (counted in *skipped) instead of failing with -EBADMSG. */
enum { CU_KEEP, CU_CUT, CU_SALVAGE };
int store_gen_catch_up(struct gen *g, int mode, uint64_t *log_end, uint64_t *skipped);
void store_idx_hdr_init(struct idx_hdr *h, const struct log_file_hdr *lh);
int store_cache_hdr_write(int fd, uint64_t generation);
int store_gen_open_paths(const char *logp, const char *idxp,
                         const char *cachep, int oflags, struct gen **out);
int store_log_hdr_read(int fd, struct log_file_hdr *lh);
void store_mbox_gen_install(struct store_mbox *mb, struct gen *g);
int store_mbox_path(const struct store_mbox *mb, char *buf, size_t n,
                    const char *fmt, uint64_t arg);

/* Rebuild index and cache from the log into a new index file and swap it in
 * (writer held). */
int store_mbox_rebuild(struct store_mbox *mb);

/* The compaction lock: a locked fd, or -EWOULDBLOCK (!wait) / -errno. */
int store_mbox_compact_lock(struct store_mbox *mb, bool wait);
void store_mbox_compact_unlock(int fd);
/* Remove every file of the mailbox directory that is not part of
 * generation `keep`: stale generations, and temporary files unless a live
 * compaction owns them (writer held).  *removed (may be NULL) counts. */
int store_mbox_sweep(struct store_mbox *mb, uint64_t keep, unsigned *removed);

/* recent_uid of an index whose claims moved to a newer one. */
#define RECENT_MOVED UINT32_MAX
/* Mark old superseded and carry its \Recent claims over to ng, which is
 * not yet installed (writer held). */
void store_gen_recent_handover(struct gen *old, struct gen *ng);

/* Write a checkpoint (writer held). */
int store_mbox_checkpoint(struct store_mbox *mb, struct gen *g);

/* Apply one valid record at log offset `off` to the index (writer held).
 * Used by the writer, catch-up and rebuild alike. */
int store_idx_apply(struct store_mbox *mb, struct gen *g,
                    const struct log_rec *r, uint64_t off);
uint32_t store_entry_crc(const struct idx_entry *e);

/* ---- log.c ------------------------------------------------------------- */

/* Validate the record at off (within size): its aligned length, 0 at a
 * clean end, -EBADMSG for a torn or corrupt one. */
int64_t store_log_rec_check(const uint8_t *base, uint64_t size, uint64_t off);

/* Fill rec header fields and crc over header+payload (payload follows rec
 * in memory). */
void store_log_rec_seal(struct log_rec *r, uint16_t type, uint16_t rflags,
                        uint32_t len);
int store_log_hdr_check(const struct log_file_hdr *h);
void store_log_hdr_seal(struct log_file_hdr *h);

/* Valid end of the log: the end of the last complete transaction. */
int store_log_scan_end(const uint8_t *base, uint64_t size, uint64_t from,
                       uint64_t *end);
/* The first offset after off where a complete transaction starts, or size
 * if there is none (then everything from off on is a torn tail). */
uint64_t store_log_resync(const uint8_t *base, uint64_t size, uint64_t off);

/* An entry as a store_msg; its flag and keyword words are read atomically
 * (the writer changes them in place). */
static inline void store_entry_msg(const struct idx_entry *e, store_msg *m)
{
    uint64_t fm = __atomic_load_n(&e->fm, __ATOMIC_ACQUIRE);
    m->uid = e->uid;
    m->flags = FM_FLAGS(fm) & STORE_F_ALL;
    m->modseq = FM_MODSEQ(fm);
    m->keywords = __atomic_load_n(&e->keywords, __ATOMIC_ACQUIRE);
    m->internal_date = e->internal_date;
    m->tz_min = e->tz_min;
    m->size = e->size;
    m->hdr_len = e->hdr_len;
}

/* ---- snap.c: reading one entry (snap.c, cursor.c) --------------------- */

/* Is the entry sound: its checksum holds and its offsets stay inside what
 * the snapshot's log and cache hold?  A damaged entry's offsets are never
 * followed. */
bool store_snap_entry_sound(const store_snap *s, const struct idx_entry *e);
/* store_snap_bytes and store_snap_cache for an entry of s found sound. */
int store_snap_entry_bytes(const store_snap *s, const struct idx_entry *e, uint64_t off,
                           size_t len, const char **ptr, size_t *got);
int store_snap_entry_cache(store_snap *s, uint32_t pos, const struct idx_entry *e,
                           store_cache *c);

/* objid.c: the ids and save date of an entry of s found sound. */
int store_snap_entry_ext(const store_snap *s, const struct idx_entry *e, store_msg_ext *out);

/* ---- since.c: what changed since a modseq --------------------------- */

struct hist;
struct msum;
void store_since_free(struct gen *g);
/* The payload of the LOG_VANISHED record for the generation after g: every
 * maximal run of UIDs below uidnext holding no live message among g's first
 * n entries, with the highest expunge modseq known in it (from g's
 * tombstones and history; a UID whose expunge was forgotten by an older
 * format counts at tomb_floor).  *nruns = 0: nothing to write.  Writer
 * held, so n covers every entry. */
int store_hist_build(struct gen *g, uint32_t n, uint32_t uidnext, store_buf *payload,
                     uint32_t *nruns);
/* How many runs g's history holds; -1 if g has none (an older format, or a
 * damaged record: VANISHED falls back to every non-live UID below
 * tomb_floor). */
int64_t store_hist_runs(struct gen *g);
/* The answers by a scan of every entry (snap.c): the fallback when memory
 * runs out, and the reference for tests and benchmarks. */
int store_snap_changed_since_scan(const store_snap *s, uint64_t since, store_uidlist *out);
int store_snap_vanished_scan(const store_snap *s, uint64_t since, uint32_t lo, uint32_t hi,
                             store_rangelist *out);
/* Bytes of memory the modseq summary of s's generation holds (0 before its
 * first use). */
size_t store_since_mem(const store_snap *s);
/* Build or bring up to date the modseq summary of s's generation now
 * (normally done by the first query).  0 or -ENOMEM. */
int store_since_prepare(const store_snap *s);
/* Build a summary of s's generation from nothing and throw it away: what
 * the first query in a process costs (benchmarks).  *mem = its bytes. */
int store_since_build_scratch(const store_snap *s, size_t *mem);

/* ---- write.c ----------------------------------------------------------- */

/* Append a UID to a growable list (l may be NULL: nothing to do). */
int store_uidlist_add(store_uidlist *l, uint32_t uid);
/* Append [lo, hi] to l, whose ranges all start at or below lo: merged with
 * the last range when they overlap or touch. */
int store_rangelist_push(store_rangelist *l, uint32_t lo, uint32_t hi);

/* ---- user.c ------------------------------------------------------------ */

/* Lock the mailbox list (mutex + flock) and load it; unlock.  While held,
 * no CREATE, DELETE or RENAME runs in any process. */
int store_user_list_lock(struct store_user *u);
void store_user_list_unlock(struct store_user *u);
bool store_user_list_has_id(const struct store_user *u, uint64_t id);

/* The mailboxes of the list with files (no \\Noselect names): ids and
 * canonical names, copied (free each name and both arrays), under the
 * list lock, the list reloaded first if another process changed it. */
int store_user_box_ids(struct store_user *u, uint64_t **ids, char ***names, size_t *n);
/* quota.c: drop the mapped headers (the user is being freed). */
void store_quota_free(struct store_user *u);
/* quota.c: how many index headers a process keeps mapped for
 * store_user_usage (tests; the default keeps clear of vm.max_map_count). */
void store_quota_map_max(unsigned n);

/* mbox.c: create a new mailbox's directory and empty log. */
int store_mbox_create_files(const char *dir, uint64_t id, uint32_t uidvalidity);
int store_mbox_open_dir(struct store_user *u, uint64_t id, const char *dir,
                        struct store_mbox **out);
void store_mbox_destroy(struct store_mbox *mb);

#endif
