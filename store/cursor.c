/* store/cursor.c — walking a snapshot by position.
 *
 * A listing (FETCH 1:*, a SEARCH over the view) visits UIDs in ascending
 * order, mostly consecutive entries.  Looking each one up by UID costs a
 * binary search per read (entry, cache, bytes: three per message); the
 * cursor keeps the position, so the next UID is found by looking one or a
 * few entries ahead, and the cache and bytes are read at that position. */
#include <errno.h>

#include "store/internal.h"

/* A seek first looks this many entries ahead before it searches: a
 * listing's next UID is usually the next entry, or just past a few
 * tombstones. */
#define SEEK_PROBE 8

void store_cursor_init(store_cursor *c, store_snap *s)
{
    c->snap = s;
    c->pos = 0;
    c->sound_ = NULL;
}

static void move_to(store_cursor *c, uint32_t pos)
{
    if (pos != c->pos) {
        c->pos = pos;
        c->sound_ = NULL;
    }
}

int store_cursor_seek(store_cursor *c, uint32_t uid)
{
    struct gen *g = c->snap->g;
    uint32_t count = c->snap->count;
    uint32_t lo = 0, hi = count;
    if (c->pos < count) {
        uint32_t here = gen_entry(g, c->pos)->uid;
        if (here < uid)
            lo = c->pos + 1;
        else if (here > uid)
            hi = c->pos;
        else
            lo = hi = c->pos;
    } else if (count && gen_entry(g, count - 1)->uid < uid) {
        lo = count;     /* past the last entry: stay at the end */
    }
    for (unsigned k = 0; k < SEEK_PROBE && lo < hi; k++, lo++)
        if (gen_entry(g, lo)->uid >= uid) {
            hi = lo;
            break;
        }
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (gen_entry(g, mid)->uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    move_to(c, lo);
    store_msg m;
    int rc = store_cursor_msg(c, &m);
    return rc >= 0 && m.uid != uid ? -ENOENT : rc;
}

int store_cursor_next(store_cursor *c)
{
    if (c->pos < c->snap->count)
        move_to(c, c->pos + 1);
    store_msg m;
    return store_cursor_msg(c, &m);
}

int store_cursor_msg(const store_cursor *c, store_msg *m)
{
    int rc = store_snap_entry(c->snap, c->pos, m);
    return rc == -ERANGE ? -ENOENT : rc;
}

/* The entry here, checked once per position. */
static int sound(store_cursor *c, const struct idx_entry **e)
{
    if (c->pos >= c->snap->count)
        return -ENOENT;
    if (!c->sound_)
        c->sound_ = store_snap_sound_entry(c->snap, c->pos);
    if (!c->sound_)
        return -EBADMSG;
    *e = c->sound_;
    return 0;
}

int store_cursor_cache(store_cursor *c, store_cache *out)
{
    const struct idx_entry *e;
    int rc = sound(c, &e);
    return rc < 0 ? rc : store_snap_entry_cache(c->snap, e, out);
}

int store_cursor_bytes(store_cursor *c, uint64_t off, size_t len, const char **ptr,
                       size_t *got)
{
    const struct idx_entry *e;
    int rc = sound(c, &e);
    return rc < 0 ? rc : store_snap_entry_bytes(c->snap, e, off, len, ptr, got);
}
