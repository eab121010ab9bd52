/* store/cursor.c — walking a snapshot by position.
 *
 * A listing (FETCH 1:*, a SEARCH over the view) visits UIDs in ascending
 * order, mostly consecutive entries.  Looking each one up by UID costs a
 * binary search per read (entry, cache, bytes: three per message); the
 * cursor keeps the position, so the next UID is found by looking one or a
 * few entries ahead, and the cache and bytes are read at that position.
 *
 * The entries are read in place: the snapshot made sure its `count`
 * entries are mapped (store_snap_get), a mapping is never moved or
 * unmapped while its generation is pinned, and entries below the count
 * never move (their flag and keyword words are read atomically). */
#include <fcntl.h>
#include <errno.h>

#include "store/internal.h"

/* A seek first looks this many entries ahead before it searches: a
 * listing's next UID is usually the next entry, or just past a few
 * tombstones. */
#define SEEK_PROBE 8

static const struct idx_entry *ent(const store_cursor *c, uint32_t pos)
{
    return (const struct idx_entry *)c->ents_ + pos;
}

void store_cursor_init(store_cursor *c, store_snap *s)
{
    c->snap = s;
    c->pos = 0;
    c->count_ = s->count;
    /* one mapping covers entry 0 up to the last one of the snapshot */
    c->ents_ = s->count ? store_gen_entry(s->g, s->count - 1) - (s->count - 1) : NULL;
    c->sound_ = NULL;
}

static int at(store_cursor *c, uint32_t pos, store_msg *m)
{
    if (pos != c->pos) {
        c->pos = pos;
        c->sound_ = NULL;
    }
    if (pos >= c->count_)
        return -ENOENT;
    const struct idx_entry *e = ent(c, pos);
    if (m)
        store_entry_msg(e, m);
    return (FM_FLAGS(__atomic_load_n(&e->fm, __ATOMIC_ACQUIRE)) & ENT_EXPUNGED) ? 0 : 1;
}

int store_cursor_seek(store_cursor *c, uint32_t uid, store_msg *m)
{
    uint32_t count = c->count_;
    uint32_t lo = 0, hi = count;
    if (c->pos < count) {
        uint32_t here = ent(c, c->pos)->uid;
        if (here == uid)
            return at(c, c->pos, m);
        if (here < uid)
            lo = c->pos + 1;
        else
            hi = c->pos;
    } else if (count && ent(c, count - 1)->uid < uid) {
        lo = count;     /* past the last entry: stay at the end */
    }
    for (unsigned k = 0; k < SEEK_PROBE && lo < hi; k++, lo++)
        if (ent(c, lo)->uid >= uid) {
            hi = lo;
            break;
        }
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (ent(c, mid)->uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < count && ent(c, lo)->uid == uid)
        return at(c, lo, m);
    at(c, lo, NULL);
    return -ENOENT;
}

int store_cursor_next(store_cursor *c, store_msg *m)
{
    return at(c, c->pos < c->count_ ? c->pos + 1 : c->pos, m);
}

int store_cursor_msg(const store_cursor *c, store_msg *m)
{
    if (c->pos >= c->count_)
        return -ENOENT;
    const struct idx_entry *e = ent(c, c->pos);
    store_entry_msg(e, m);
    return (FM_FLAGS(__atomic_load_n(&e->fm, __ATOMIC_ACQUIRE)) & ENT_EXPUNGED) ? 0 : 1;
}

/* The entry here, checked once per position. */
static int sound(store_cursor *c, const struct idx_entry **e)
{
    if (c->pos >= c->count_)
        return -ENOENT;
    if (!c->sound_) {
        const struct idx_entry *x = ent(c, c->pos);
        if (!store_snap_entry_sound(c->snap, x))
            return -EBADMSG;
        c->sound_ = x;
    }
    *e = c->sound_;
    return 0;
}

int store_cursor_cache(store_cursor *c, store_cache *out)
{
    const struct idx_entry *e;
    int rc = sound(c, &e);
    return rc < 0 ? rc : store_snap_entry_cache(c->snap, c->pos, e, out);
}

int store_cursor_bytes(store_cursor *c, uint64_t off, size_t len, const char **ptr,
                       size_t *got)
{
    const struct idx_entry *e;
    int rc = sound(c, &e);
    return rc < 0 ? rc : store_snap_entry_bytes(c->snap, e, off, len, ptr, got);
}

int store_cursor_ext(store_cursor *c, store_msg_ext *out)
{
    const struct idx_entry *e;
    int rc = sound(c, &e);
    return rc < 0 ? rc : store_snap_entry_ext(c->snap, e, out);
}

/* The bytes of the entries from the cursor on, up to `window` of them in
 * the chosen file: the log is in message order, and so is most of the
 * cache (a message's blob is written with it). */
uint32_t store_cursor_readahead(const store_cursor *c, unsigned what, uint64_t window)
{
    if (c->pos >= c->count_)
        return 0;
    const struct idx_entry *first = ent(c, c->pos);
    bool body = what == STORE_RA_BODY;
    uint64_t lo = body ? first->log_off : first->cache_off, hi = lo;
    uint32_t p = c->pos;
    for (; p < c->count_; p++) {
        const struct idx_entry *e = ent(c, p);
        uint64_t off = body ? e->log_off : e->cache_off;
        uint64_t end = off + (body ? e->size + 64 : e->cache_len + 64);
        if (!off || off < lo || end - lo > window)
            break;      /* out of order (or none): stop the window here */
        hi = end;
    }
    if (hi > lo)
        (void)posix_fadvise(body ? c->snap->g->log.fd : c->snap->g->cache.fd, (off_t)lo,
                            (off_t)(hi - lo), POSIX_FADV_WILLNEED);
    return p - c->pos;
}
