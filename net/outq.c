/* net/outq.c — a connection's output queue: a list of chunks, either
 * copied bytes (packed into blocks, so many small writes become one
 * sendmsg) or borrowed bytes (message bodies sent straight from the
 * store's mapping, released once written or once the connection is gone).
 *
 * Ownership: the queue owns copied blocks; borrowed bytes belong to the
 * caller until release(arg) runs, exactly once. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "net/internal.h"

static struct net_out *out_get(struct net_out **op)
{
    if (!*op)
        *op = calloc(1, sizeof **op);
    return *op;
}

static void out_link(struct net_out *o, struct net_chunk *ch)
{
    ch->next = NULL;
    if (o->tail)
        o->tail->next = ch;
    else
        o->head = ch;
    o->tail = ch;
    o->pending += ch->len;
}

int net_outq_copy(struct net_out **op, const void *p_, size_t n)
{
    const uint8_t *p = p_;
    struct net_out *o = out_get(op);
    if (!o)
        return -ENOMEM;

    /* Appending behind bytes that an in-flight send is writing is safe:
     * the kernel was given [p, p+len) as it was at submission. */
    struct net_chunk *t = o->tail;
    if (t && !t->release) {
        size_t used = (size_t)(t->p - t->data) + t->len;
        size_t k = t->cap - used < n ? t->cap - used : n;
        RM_ASSERT(used <= t->cap && t->len <= o->pending);
        memcpy(t->data + used, p, k);
        t->len += k;
        o->pending += k;
        p += k;
        n -= k;
    }
    if (!n)
        return 0;

    size_t cap = o->head ? NET_BLOCK : NET_BLOCK_FIRST;
    cap -= sizeof(struct net_chunk);
    if (cap < n)
        cap = n;
    struct net_chunk *ch = malloc(sizeof *ch + cap);
    if (!ch)
        return -ENOMEM;
    memcpy(ch->data, p, n);
    ch->p = ch->data;
    ch->len = n;
    ch->release = NULL;
    ch->arg = NULL;
    ch->cap = cap;
    out_link(o, ch);
    return 0;
}

int net_outq_ref(struct net_out **op, const void *p, size_t n,
                 void (*release)(void *), void *arg)
{
    struct net_out *o = out_get(op);
    if (!o)
        return -ENOMEM;
    struct net_chunk *ch = malloc(sizeof *ch);
    if (!ch)
        return -ENOMEM;
    ch->p = p;
    ch->len = n;
    ch->release = release;
    ch->arg = arg;
    ch->cap = 0;
    out_link(o, ch);
    return 0;
}

int net_out_iov(struct net_out *o, struct iovec *iov, int max)
{
    RM_ASSERT(max > 0 && (o->head || !o->pending));
    int k = 0;
    for (struct net_chunk *ch = o->head; ch && k < max; ch = ch->next) {
        if (!ch->len)
            continue;
        iov[k].iov_base = (void *)ch->p;
        /* io_uring's send takes a 32-bit length; short sends are normal. */
        iov[k].iov_len = ch->len < (1u << 30) ? ch->len : (1u << 30);
        k++;
    }
    return k;
}

static void chunk_done(struct net_chunk *ch)
{
    if (ch->release)
        ch->release(ch->arg);
    free(ch);
}

void net_outq_advance(struct net_out *o, size_t n)
{
    RM_ASSERT(n <= o->pending);     /* sent no more than was queued */
    while (o->head) {
        struct net_chunk *ch = o->head;
        size_t k = ch->len < n ? ch->len : n;
        ch->p += k;
        ch->len -= k;
        o->pending -= k;
        n -= k;
        if (ch->len)
            break;
        o->head = ch->next;
        if (!o->head)
            o->tail = NULL;
        chunk_done(ch);
    }
}

void net_outq_release_all(struct net_out *o)
{
    if (!o)
        return;
    /* Unlink first: a release callback may reach back into net (say, to
     * log net_conn_pending) and must see a consistent, empty queue. */
    struct net_chunk *ch = o->head;
    o->head = o->tail = NULL;
    o->pending = 0;
    while (ch) {
        struct net_chunk *next = ch->next;
        chunk_done(ch);
        ch = next;
    }
}

int net_out_copy(struct net_conn *c, const void *p, size_t n)
{
    return net_outq_copy(&c->out, p, n);
}

int net_out_ref(struct net_conn *c, const void *p, size_t n,
                void (*release)(void *), void *arg)
{
    return net_outq_ref(&c->out, p, n, release, arg);
}

void net_out_advance(struct net_conn *c, size_t n)
{
    net_outq_advance(c->out, n);
}

void net_out_release_all(struct net_conn *c)
{
    net_outq_release_all(c->out);
}
