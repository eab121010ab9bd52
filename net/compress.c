/* net/compress.c — DEFLATE (RFC 1951, raw: no zlib header) as a filter
 * inside the runtime, between the owner and TLS (or the socket): the
 * owner's bytes are deflated, then encrypted; received bytes are
 * decrypted, then inflated.  The owner decides when to turn it on
 * (net_conn_compress); from then on it sees and sends plain bytes only.
 *
 * Output: what the owner sends waits in its own queue (copied blocks and
 * borrowed chunks, like the wire queue) and is deflated in net_z_service,
 * at most Z_OUT_MAX bytes of compressed output ahead of the socket, so a
 * large borrowed message body is never compressed all at once and the
 * owner's backpressure (high/low water) still works.  Whenever the queue
 * runs empty the stream gets a Z_SYNC_FLUSH: the peer can decode every
 * byte sent so far and never waits for data we hold back.
 *
 * Memory: an idle connection must stay small.  The deflater exists only
 * while output is being compressed: once the queue is empty and flushed,
 * the stream is byte-aligned at a block boundary, so we keep the last
 * Z_DICT bytes of what we sent, free the deflater, and when output comes
 * again start a new one primed with those bytes (deflateSetDictionary).
 * The peer sees one continuous raw deflate stream (blocks that refer back
 * into data it has already decoded); we pay a dictionary of Z_DICT bytes
 * instead of a deflater while idle.  The inflater cannot be shed: the
 * peer's matches may reach 32 KiB back (RFC 1951 3.2.5), and we must
 * accept any window it picked, so it is created with windowBits -15.
 *
 * Input: inflated in bounded steps (Z_CHUNK bytes of output at a time),
 * each handed to on_data before the next is made; if the owner pauses or
 * closes in between, the compressed rest goes to the connection's stash,
 * so a small compressed input never becomes a large buffer here: a
 * "compression bomb" meets the owner's own line and literal limits one
 * chunk at a time, exactly as uncompressed input does. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <zlib.h>

#include "net/internal.h"

/* Our deflater's parameters.  RFC 4978 3 leaves the rate of compression
 * to each sender; its section 4 suggests a level of 1-5.  Measured on a
 * header listing (FETCH FLAGS ENVELOPE BODY.PEEK[HEADER.FIELDS ...] of
 * 3,000 varied messages, flushed every 64 KiB): windowBits 12 / memLevel 5
 * at level 5 gave 20% of the size for 23 ms of CPU per 1.9 MB; windowBits
 * 15 / memLevel 7 at level 1 gave 16% for 9-13 ms: similar headers repeat
 * further apart than 4 KiB, and small hash tables cost time in collisions.
 * The bigger deflater (about 200 KiB) exists only while output is being
 * compressed (see "Memory" above), so the idle cost does not depend on
 * it.  Every client inflater must accept 32 KiB distances (RFC 1951). */
#define Z_WBITS 15
#define Z_MEMLEVEL 7
#define Z_LEVEL 1
/* A batch smaller than this (most answers: a tagged OK, a few untagged
 * lines) gets a small deflater (a 4 KiB window, memLevel 5: about 40 KiB
 * to set up instead of 200), which is all it can use: it holds the batch
 * and the Z_DICT bytes before it. */
#define Z_SMALL_BATCH 4096
#define Z_SMALL_WBITS 12
#define Z_SMALL_MEMLEVEL 5
/* Bytes of our past output kept as the next deflater's dictionary. */
#define Z_DICT 2048
_Static_assert(Z_DICT <= (1 << Z_SMALL_WBITS) / 2, "the dictionary fits any deflater");
/* Compressed bytes queued ahead of the socket before deflating waits. */
#define Z_OUT_MAX (64 * 1024)
/* Bytes per deflate/inflate step (a stack buffer). */
#define Z_CHUNK 16384

struct net_zc {
    z_stream inf;
    z_stream *def;                  /* NULL while idle */
    struct net_out *pq;             /* owner's bytes waiting to be deflated */
    uint8_t *dict;                  /* idle: the tail of what we sent */
    uint16_t ndict;
    bool dirty;                     /* deflated since the last flush */
    bool inf_more;                  /* inflate may have output without input */
    bool inf_end;                   /* the peer ended its stream */
};

/* ---- output ---- */

/* Compressed bytes go where the owner's bytes went before: TLS, or the
 * wire queue. */
static int down_copy(struct net_conn *c, const uint8_t *p, size_t n)
{
    if (!n)
        return 0;
    return c->tls ? net_tls_send(c, p, n, NULL, NULL, true)
                  : net_out_copy(c, p, n);
}

static size_t down_pending(const struct net_conn *c)
{
    return (c->out ? c->out->pending : 0) + (c->tls ? net_tls_pending(c) : 0);
}

static int def_open(struct net_zc *z, size_t batch)
{
    bool small = batch < Z_SMALL_BATCH;
    z_stream *d = calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    if (deflateInit2(d, Z_LEVEL, Z_DEFLATED, small ? -Z_SMALL_WBITS : -Z_WBITS,
                     small ? Z_SMALL_MEMLEVEL : Z_MEMLEVEL,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        free(d);
        return -ENOMEM;
    }
    if (z->ndict && deflateSetDictionary(d, z->dict, z->ndict) != Z_OK) {
        deflateEnd(d);
        free(d);
        return -EINVAL;
    }
    free(z->dict);
    z->dict = NULL;
    z->ndict = 0;
    z->def = d;
    return 0;
}

/* After a flush: keep the tail of the window, shed the deflater.  Losing
 * the dictionary (no memory for it) costs compression, not correctness. */
static void def_park(struct net_zc *z)
{
    z_stream *d = z->def;
    uint8_t win[1u << Z_WBITS];     /* 32 KiB: the worker's stack has room */
    uInt n = 0;
    if (deflateGetDictionary(d, win, &n) == Z_OK && n) {
        uInt k = n < Z_DICT ? n : Z_DICT;
        z->dict = malloc(k);
        if (z->dict) {
            memcpy(z->dict, win + (n - k), k);
            z->ndict = (uint16_t)k;
        }
    }
    deflateEnd(d);
    free(d);
    z->def = NULL;
}

/* Run the deflater over [p, p+n) (may be empty) with `flush`, passing all
 * it makes downstream.  Returns the input bytes consumed, or -errno. */
static ssize_t def_run(struct net_conn *c, const uint8_t *p, size_t n,
                       int flush)
{
    z_stream *d = c->z->def;
    uint8_t buf[Z_CHUNK];
    d->next_in = (Bytef *)p;
    d->avail_in = (uInt)n;
    for (;;) {
        d->next_out = buf;
        d->avail_out = sizeof buf;
        int r = deflate(d, flush);
        if (r != Z_OK && r != Z_BUF_ERROR)
            return -EIO;
        if (down_copy(c, buf, sizeof buf - d->avail_out) < 0)
            return -ENOMEM;
        /* A full buffer may mean more to come (zlib's rule for flushes). */
        if (d->avail_out || r == Z_BUF_ERROR)
            break;
    }
    return (ssize_t)(n - d->avail_in);
}

void net_z_service(struct net_conn *c)
{
    struct net_zc *z = c->z;
    while (z->pq && z->pq->head && down_pending(c) < Z_OUT_MAX) {
        struct net_chunk *ch = z->pq->head;
        if (!ch->len) {
            net_outq_advance(z->pq, 0);
            continue;
        }
        if (!z->def && def_open(z, z->pq->pending) < 0)
            goto fail;
        size_t k = ch->len < Z_OUT_MAX ? ch->len : Z_OUT_MAX;
        ssize_t used = def_run(c, ch->p, k, Z_NO_FLUSH);
        if (used < 0)
            goto fail;
        z->dirty = true;
        net_outq_advance(z->pq, (size_t)used);
        if (c->flags & NC_ABORT)
            return;
    }
    if (z->pq && !z->pq->head) {
        free(z->pq);
        z->pq = NULL;
    }
    if (!z->pq && z->dirty) {
        /* The end of a batch: everything we were given must reach the
         * peer now, decodable (RFC 4978 4: the peer must not wait). */
        if (def_run(c, NULL, 0, Z_SYNC_FLUSH) < 0)
            goto fail;
        z->dirty = false;
        def_park(z);
    }
    return;
fail:
    /* A hole in the stream would be worse than losing the connection. */
    net_conn_abort(c);
}

int net_z_send(struct net_conn *c, const void *p, size_t n,
               void (*release)(void *), void *arg, bool copy)
{
    struct net_zc *z = c->z;
    int rc = copy ? net_outq_copy(&z->pq, p, n)
                  : net_outq_ref(&z->pq, p, n, release, arg);
    if (rc == 0)
        net_worker_attend(c->w, c);
    return rc;
}

size_t net_z_pending(const struct net_conn *c)
{
    return c->z && c->z->pq ? c->z->pq->pending : 0;
}

bool net_z_more(const struct net_conn *c)
{
    const struct net_zc *z = c->z;
    return z->pq && z->pq->pending && down_pending(c) < Z_OUT_MAX &&
           !(c->flags & (NC_ABORT | NC_DEAD));
}

void net_z_release_plain(struct net_conn *c)
{
    struct net_zc *z = c->z;
    if (!z || !z->pq)
        return;
    struct net_out *o = z->pq;
    z->pq = NULL;
    net_outq_release_all(o);
    free(o);
}

void net_z_conn_free(struct net_conn *c)
{
    struct net_zc *z = c->z;
    if (!z)
        return;
    net_z_release_plain(c);
    if (z->def) {
        deflateEnd(z->def);
        free(z->def);
    }
    inflateEnd(&z->inf);
    free(z->dict);
    free(z);
    c->z = NULL;
}

/* ---- input ---- */

bool net_z_input_more(const struct net_conn *c)
{
    return c->z && c->z->inf_more;
}

void net_z_input(struct net_conn *c, const uint8_t *p, size_t n)
{
    struct net_zc *z = c->z;
    uint8_t buf[Z_CHUNK];

    z->inf.next_in = (Bytef *)p;
    z->inf.avail_in = (uInt)n;
    for (;;) {
        if (c->flags & (NC_CLOSING | NC_ABORT | NC_DEAD))
            return;         /* nobody wants the rest */
        if (c->flags & NC_PAUSED) {
            /* Keep the compressed rest, not what it inflates to. */
            if (z->inf.avail_in &&
                net_stash_add(c, z->inf.next_in, z->inf.avail_in) < 0)
                net_conn_abort(c);
            net_worker_attend(c->w, c);
            return;
        }
        if (z->inf_end) {
            /* RFC 4978 has no end of the compressed stream but the end of
             * the connection: bytes after a final block are not IMAP. */
            if (z->inf.avail_in)
                net_conn_abort(c);
            return;
        }
        if (!z->inf.avail_in && !z->inf_more)
            return;
        z->inf.next_out = buf;
        z->inf.avail_out = sizeof buf;
        int r = inflate(&z->inf, Z_SYNC_FLUSH);
        if (r == Z_STREAM_END) {
            z->inf_end = true;
            c->flags |= NC_PEER_EOF;
        } else if (r != Z_OK && r != Z_BUF_ERROR) {
            /* Not deflate: the stream cannot be resynchronized. */
            net_conn_abort(c);
            return;
        }
        z->inf_more = z->inf.avail_out == 0;
        size_t got = sizeof buf - z->inf.avail_out;
        if (got) {
            /* The owner may pause or close here: checked at the top. */
            c->w->s->ops.on_data(c, c->user, buf, got);
        } else if (r == Z_BUF_ERROR || !z->inf.avail_in) {
            z->inf_more = false;
            return;         /* needs more input */
        }
    }
}

/* ---- public ---- */

int net_conn_compress(net_conn *c, const void *rest, size_t n)
{
    RM_ASSERT_MSG(c->w == net_worker_self, "connection used off its worker");
    if (c->z)
        return -EALREADY;
    if (c->flags & (NC_CLOSING | NC_ABORT | NC_DEAD))
        return -ENOTCONN;
    struct net_zc *z = calloc(1, sizeof *z);
    if (!z)
        return -ENOMEM;
    /* Any window the peer picked, up to the largest (RFC 1951 allows
     * distances up to 32 KiB; RFC 4978 4 lets each side choose). */
    if (inflateInit2(&z->inf, -15) != Z_OK) {
        free(z);
        return -ENOMEM;
    }
    /* What the owner received after the command is already compressed,
     * and comes before anything stashed since: put it in front. */
    if (n) {
        struct net_stash *old = c->stash;
        c->stash = NULL;
        if (net_stash_add(c, rest, n) < 0 ||
            (old && net_stash_add(c, old->data, old->len) < 0)) {
            free(c->stash);
            c->stash = old;
            inflateEnd(&z->inf);
            free(z);
            return -ENOMEM;
        }
        free(old);
    }
    c->z = z;
    net_worker_attend(c->w, c);
    return 0;
}

bool net_conn_is_compressed(const net_conn *c)
{
    return c->z != NULL;
}
