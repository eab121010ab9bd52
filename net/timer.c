/* net/timer.c — each worker's connection timers: a binary min-heap of
 * connections ordered by deadline.  A connection has at most one timer, so
 * the heap holds each at most once and the connection remembers where
 * (tidx), which makes re-arming and cancelling O(log n) without search.
 * The loop waits until the top deadline; no kernel timer per connection. */
#include <errno.h>
#include <stdlib.h>

#include "net/internal.h"

static void heap_place(struct net_heap *h, size_t i, struct net_conn *c)
{
    h->a[i] = c;
    c->tidx = (uint32_t)i + 1;
}

static void sift_up(struct net_heap *h, size_t i)
{
    struct net_conn *c = h->a[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h->a[parent]->deadline <= c->deadline)
            break;
        heap_place(h, i, h->a[parent]);
        i = parent;
    }
    heap_place(h, i, c);
}

static void sift_down(struct net_heap *h, size_t i)
{
    struct net_conn *c = h->a[i];
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        uint64_t best = c->deadline;
        if (l < h->n && h->a[l]->deadline < best) {
            m = l;
            best = h->a[l]->deadline;
        }
        if (l + 1 < h->n && h->a[l + 1]->deadline < best)
            m = l + 1;
        if (m == i)
            break;
        heap_place(h, i, h->a[m]);
        i = m;
    }
    heap_place(h, i, c);
}

int net_heap_set(struct net_heap *h, struct net_conn *c, uint64_t deadline)
{
    /* A set tidx must be this heap's slot (a zombie's is not: it left). */
    RM_ASSERT(!c->tidx || (c->tidx <= h->n && h->a[c->tidx - 1] == c));
    if (c->tidx) {
        uint64_t old = c->deadline;
        c->deadline = deadline;
        if (deadline < old)
            sift_up(h, c->tidx - 1);
        else
            sift_down(h, c->tidx - 1);
        return 0;
    }
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct net_conn **a = realloc(h->a, cap * sizeof *a);
        if (!a)
            return -ENOMEM;
        h->a = a;
        h->cap = cap;
    }
    c->deadline = deadline;
    h->a[h->n] = c;
    sift_up(h, h->n++);
    return 0;
}

void net_heap_del(struct net_heap *h, struct net_conn *c)
{
    if (!c->tidx)
        return;
    size_t i = c->tidx - 1;
    c->tidx = 0;
    RM_ASSERT(i < h->n && h->a[i] == c);
    struct net_conn *last = h->a[--h->n];
    if (i == h->n)
        return;
    heap_place(h, i, last);
    if (i > 0 && h->a[(i - 1) / 2]->deadline > last->deadline)
        sift_up(h, i);
    else
        sift_down(h, i);
}

void net_heap_free(struct net_heap *h)
{
    free(h->a);
    h->a = NULL;
    h->n = h->cap = 0;
}
