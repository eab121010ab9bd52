/* net/conn.c — a connection's life on its worker, shared by both backends:
 * the public net_conn_* calls, delivery of received bytes, completion of
 * sends, backpressure, closing and finalization.
 *
 * Rule that keeps callbacks safe: nothing here frees a connection or calls
 * on_close while one of its callbacks may be on the stack.  net_conn_*
 * calls only set flags and put the connection on the worker's attention
 * list; the worker acts on it (net_conn_service) after the callback
 * returned. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/internal.h"

static const net_conn_ops *ops_of(const struct net_conn *c)
{
    return &c->w->s->ops;
}

struct net_conn *net_conn_accepted(struct net_worker *w, int fd,
                                   const struct sockaddr *sa, unsigned l)
{
    RM_ASSERT(fd >= 0 && w == net_worker_self);
    struct net_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return NULL;
    }
    c->w = w;
    c->fd = fd;
    c->seq = ++w->next_seq;
    RM_ASSERT(l < NET_MAX_LISTENERS && NET_MAX_LISTENERS <= 256);
    c->listener = (uint8_t)l;
    net_addr_store(c, sa);
    if (net_tab_put(&w->tab, c) < 0) {
        close(fd);
        free(c);
        return NULL;
    }
    w->nconns++;
    if (w->stats)
        net_stat_add(&w->stats->accepted, 1);

    /* Implicit TLS: the filter is in place before on_open, so a greeting
     * queued there goes out encrypted once the handshake is done. */
    net_tls *tls = l < w->s->nlisteners ? w->s->lst[l].tls : NULL;
    if (tls && net_tls_conn_start(c, tls) < 0) {
        net_conn_abort(c);      /* no on_open, hence no on_close */
        net_worker_attend(w, c);
        return c;
    }

    const net_conn_ops *ops = ops_of(c);
    void *user = ops->on_open ? ops->on_open(c) : NULL;
    if (ops->on_open && !user) {
        /* Refused: flush what on_open queued (a "BYE"), then close.  No
         * on_close, since there is no per-connection state to free. */
        net_conn_begin_close(c);
    } else {
        c->user = user;
        c->flags |= NC_OPEN;
    }
    net_worker_attend(w, c);
    return c;
}

int net_stash_add(struct net_conn *c, const uint8_t *p, size_t n)
{
    struct net_stash *st = c->stash;
    size_t len = st ? st->len : 0;
    size_t cap = st ? st->cap : 0;
    if (len + n > cap) {
        size_t ncap = cap ? cap * 2 : 4096;
        while (ncap < len + n)
            ncap *= 2;
        st = realloc(st, sizeof *st + ncap);
        if (!st)
            return -ENOMEM;
        st->len = len;
        st->cap = ncap;
        c->stash = st;
    }
    RM_ASSERT(st && st->len + n <= st->cap);
    memcpy(st->data + st->len, p, n);
    st->len += n;
    return 0;
}

size_t net_conn_outbytes(const struct net_conn *c)
{
    return (c->out ? c->out->pending : 0) + (c->tls ? net_tls_pending(c) : 0) +
           (c->z ? net_z_pending(c) : 0);
}

/* Decrypted bytes to the owner, through the inflater once compression is
 * on (which stops, and stashes the compressed rest, if the owner pauses). */
static void deliver_owner(struct net_conn *c, const uint8_t *p, size_t n)
{
    if (c->z)
        net_z_input(c, p, n);
    else
        ops_of(c)->on_data(c, c->user, p, n);
}

void net_conn_deliver(struct net_conn *c, const uint8_t *p, size_t n)
{
    /* After a close request input is read only to notice the peer going
     * away (and to avoid a reset from unread bytes); nobody wants it. */
    if (c->w->stats)
        net_stat_add(&c->w->stats->bytes_in, n);
    if (c->flags & (NC_CLOSING | NC_ABORT | NC_DEAD))
        return;
    if (c->tls) {
        net_tls_input(c, p, n);     /* calls net_conn_deliver_plain */
        return;
    }
    net_conn_deliver_plain(c, p, n);
}

void net_conn_deliver_plain(struct net_conn *c, const uint8_t *p, size_t n)
{
    if (c->flags & (NC_CLOSING | NC_ABORT | NC_DEAD))
        return;
    if ((c->flags & NC_PAUSED) || c->stash) {
        /* Keep order: while anything is stashed, new bytes queue behind. */
        if (net_stash_add(c, p, n) < 0)
            net_conn_abort(c);
        else
            net_worker_attend(c->w, c);
        return;
    }
    deliver_owner(c, p, n);
}

void net_conn_sent(struct net_conn *c, size_t n)
{
    const net_config *cfg = &c->w->s->cfg;
    if (c->w->stats)
        net_stat_add(&c->w->stats->bytes_out, n);
    net_out_advance(c, n);
    if ((c->flags & NC_HIGH) && net_conn_outbytes(c) <= cfg->low_water) {
        c->flags &= ~NC_HIGH;
        if (!(c->flags & (NC_CLOSING | NC_ABORT | NC_DEAD)) && ops_of(c)->on_drain)
            ops_of(c)->on_drain(c, c->user);
    }
    /* An idle connection keeps no output structure. */
    if (c->out && !c->out->head && !(c->flags & NC_SEND_BUSY)) {
        free(c->out);
        c->out = NULL;
    }
}

void net_conn_abort(struct net_conn *c)
{
    if (c->flags & NC_DEAD)
        return;
    c->flags |= NC_ABORT;
    net_worker_attend(c->w, c);
}

void net_conn_begin_close(struct net_conn *c)
{
    struct net_worker *w = c->w;
    RM_ASSERT_MSG(w == net_worker_self, "connection used off its worker");
    if (c->flags & (NC_CLOSING | NC_DEAD))
        return;
    c->flags |= NC_CLOSING;
    /* The connection's own timer is of no more use to its owner (no
     * callback follows a close but on_close); it now bounds the flush. */
    uint64_t dl = net_now_ms() + NET_CLOSE_FLUSH_MS;
    if (w->state == NW_DRAINING && w->drain_deadline < dl)
        dl = w->drain_deadline;
    if (net_heap_set(&w->heap, c, dl) < 0)
        c->flags |= NC_ABORT;
    net_worker_attend(w, c);
}

void net_conn_on_timer(struct net_conn *c)
{
    if (c->flags & NC_CLOSING) {
        net_conn_abort(c);
        return;
    }
    if (!(c->flags & (NC_ABORT | NC_DEAD)) && ops_of(c)->on_timer)
        ops_of(c)->on_timer(c, c->user);
}

static void zombie_add(struct net_worker *w, struct net_conn *c)
{
    if (w->nzombies == w->zcap) {
        size_t cap = w->zcap ? w->zcap * 2 : 64;
        struct net_conn **z = realloc(w->zombies, cap * sizeof *z);
        if (!z)
            return;     /* untracked: freed by its last completion only */
        w->zombies = z;
        w->zcap = cap;
    }
    RM_ASSERT(!c->tidx);    /* off the timer heap: tidx now means this array */
    w->zombies[w->nzombies] = c;
    c->tidx = (uint32_t)++w->nzombies;
}

static void zombie_del(struct net_worker *w, struct net_conn *c)
{
    if (!c->tidx)
        return;
    RM_ASSERT(c->tidx <= w->nzombies && w->zombies[c->tidx - 1] == c);
    size_t i = c->tidx - 1;
    struct net_conn *last = w->zombies[--w->nzombies];
    w->zombies[i] = last;
    last->tidx = (uint32_t)i + 1;
    c->tidx = 0;
}

static void conn_free(struct net_conn *c)
{
    net_z_conn_free(c);
    net_tls_conn_free(c);
    free(c->out);
    free(c->stash);
    free(c->peer);
    free(c);
}

void net_conn_reap(struct net_conn *c)
{
    if (!(c->flags & NC_DEAD) || c->refs || (c->flags & NC_QUEUED))
        return;
    /* Finalized: out of the table, on_close delivered, input dropped. */
    RM_ASSERT(!c->hnext && !(c->flags & NC_OPEN) && !c->stash);
    zombie_del(c->w, c);
    conn_free(c);
}

void net_conn_put(struct net_conn *c)
{
    RM_ASSERT(c->refs > 0);
    c->refs--;
    net_conn_reap(c);
}

void net_conn_finalize(struct net_conn *c)
{
    struct net_worker *w = c->w;
    if (c->flags & NC_DEAD)
        return;
    /* First make sure the kernel stops reading borrowed bytes, then give
     * them back, then tell the owner. */
    w->be->quiesce(w, c);
    c->flags |= NC_DEAD;
    net_heap_del(&w->heap, c);
    net_tab_del(&w->tab, c);
    RM_ASSERT(w->nconns > 0 && !c->tidx);
    w->nconns--;
    net_out_release_all(c);
    if (c->z)
        net_z_release_plain(c);
    if (c->tls)
        net_tls_release_plain(c);
    free(c->stash);
    c->stash = NULL;
    if (c->flags & NC_OPEN) {
        c->flags &= ~NC_OPEN;
        if (ops_of(c)->on_close)
            ops_of(c)->on_close(c, c->user);
    }
    net_z_conn_free(c);
    net_tls_conn_free(c);
    w->be->release(w, c);
    if (c->refs)
        zombie_add(w, c);
    else
        net_conn_reap(c);
}

void net_conn_service(struct net_conn *c)
{
    struct net_worker *w = c->w;
    const net_conn_ops *ops = ops_of(c);
    RM_ASSERT(w == net_worker_self && !(c->flags & NC_QUEUED));

    if (c->flags & NC_DEAD) {
        net_conn_reap(c);
        return;
    }
    if (!(c->flags & NC_ABORT)) {
        if (c->flags & NC_WAKE) {
            c->flags &= ~NC_WAKE;
            if (!(c->flags & NC_CLOSING) && ops->on_wake)
                ops->on_wake(c, c->user);
        }
        if (c->flags & NC_RESUME) {
            c->flags &= ~NC_RESUME;
            if (!(c->flags & NC_CLOSING) && ops->on_resume)
                ops->on_resume(c, c->user);
        }
        if (c->stash && !(c->flags & (NC_PAUSED | NC_CLOSING | NC_ABORT))) {
            struct net_stash *st = c->stash;
            c->stash = NULL;
            deliver_owner(c, st->data, st->len);
            free(st);
        } else if (net_z_input_more(c) &&
                   !(c->flags & (NC_PAUSED | NC_CLOSING | NC_ABORT))) {
            net_z_input(c, NULL, 0);
        }
        if ((c->flags & NC_PEER_EOF) && !c->stash && !net_z_input_more(c) &&
            !(c->flags & (NC_PAUSED | NC_CLOSING)))
            net_conn_begin_close(c);
    }
    if (c->z && !(c->flags & NC_ABORT))
        net_z_service(c);
    if (c->tls && !(c->flags & NC_ABORT))
        net_tls_service(c);
    if (!(c->flags & NC_ABORT))
        w->be->service(w, c);
    if ((c->flags & NC_ABORT) ||
        ((c->flags & NC_CLOSING) && !(c->flags & NC_SEND_BUSY) &&
         !net_conn_outbytes(c)))
        net_conn_finalize(c);
    else if ((c->tls && net_tls_more(c)) || (c->z && net_z_more(c)))
        net_worker_attend(w, c);    /* the wire queue drained at once */
}

/* ---- the public calls ---- */

void net_conn_send(net_conn *c, const void *p, size_t n)
{
    RM_ASSERT_MSG(c->w == net_worker_self, "connection used off its worker");
    if (!n || (c->flags & (NC_DEAD | NC_ABORT)))
        return;
    if ((c->z ? net_z_send(c, p, n, NULL, NULL, true)
         : c->tls ? net_tls_send(c, p, n, NULL, NULL, true)
                  : net_out_copy(c, p, n)) < 0) {
        /* A hole in the stream would be worse than losing the connection. */
        net_conn_abort(c);
        return;
    }
    if (net_conn_outbytes(c) > c->w->s->cfg.high_water)
        c->flags |= NC_HIGH;
    net_worker_attend(c->w, c);
}

void net_conn_send_ref(net_conn *c, const void *p, size_t n,
                       void (*release)(void *arg), void *arg)
{
    RM_ASSERT_MSG(c->w == net_worker_self, "connection used off its worker");
    if (!n || (c->flags & (NC_DEAD | NC_ABORT))) {
        if (release)
            release(arg);
        return;
    }
    int rc = c->z ? net_z_send(c, p, n, release, arg, false)
           : c->tls ? net_tls_send(c, p, n, release, arg, false)
                    : net_out_ref(c, p, n, release, arg);
    if (rc < 0) {
        if (release)
            release(arg);
        net_conn_abort(c);
        return;
    }
    if (net_conn_outbytes(c) > c->w->s->cfg.high_water)
        c->flags |= NC_HIGH;
    net_worker_attend(c->w, c);
}

size_t net_conn_pending(const net_conn *c)
{
    return net_conn_outbytes(c);
}

void net_conn_pause(net_conn *c, bool pause)
{
    RM_ASSERT_MSG(c->w == net_worker_self, "connection used off its worker");
    if (c->flags & NC_DEAD)
        return;
    if (pause) {
        /* Nothing else now: the io_uring receive is cancelled only if bytes
         * actually arrive while paused, so a short pause (a command waiting
         * for the disk) costs no system call. */
        c->flags |= NC_PAUSED;
    } else if (c->flags & NC_PAUSED) {
        c->flags &= ~NC_PAUSED;
        net_worker_attend(c->w, c);
    }
}

void net_conn_yield(net_conn *c)
{
    struct net_worker *w = c->w;
    RM_ASSERT_MSG(w == net_worker_self, "connection used off its worker");
    if (c->flags & (NC_DEAD | NC_ABORT | NC_CLOSING | NC_YIELD))
        return;
    if (w->nyield == w->yieldcap) {
        size_t cap = w->yieldcap ? w->yieldcap * 2 : 16;
        uint64_t *y = realloc(w->yield, cap * sizeof *y);
        if (!y) {
            /* Cannot wait for the next round: resume at once rather than
             * never (the caller's slice bounds the delay anyway). */
            c->flags |= NC_RESUME;
            net_worker_attend(w, c);
            return;
        }
        w->yield = y;
        w->yieldcap = cap;
    }
    w->yield[w->nyield++] = c->seq;
    c->flags |= NC_YIELD;
}

void net_conn_close(net_conn *c)
{
    net_conn_begin_close(c);
}

void net_conn_timer(net_conn *c, uint32_t ms)
{
    struct net_worker *w = c->w;
    RM_ASSERT_MSG(w == net_worker_self, "connection used off its worker");
    if (c->flags & (NC_DEAD | NC_CLOSING))
        return;
    if (!ms) {
        net_heap_del(&w->heap, c);
        return;
    }
    if (net_heap_set(&w->heap, c, net_now_ms() + ms) < 0)
        net_conn_abort(c);
}

net_conn_id net_conn_get_id(const net_conn *c)
{
    return (net_conn_id){ .worker = c->w->idx, .seq = c->seq };
}

unsigned net_conn_worker(const net_conn *c)
{
    return c->w->idx;
}
