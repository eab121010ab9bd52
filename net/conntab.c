/* net/conntab.c — a worker's connections by sequence number, for net_wake
 * (which names a connection from another thread by id, and must find
 * nothing once it is gone).  Sequence numbers are handed out in order, so
 * seq & mask spreads them evenly; chains are intrusive (net_conn.hnext),
 * which costs a connection one pointer and a share of a bucket. */
#include <errno.h>
#include <stdlib.h>

#include "net/internal.h"

static int grow(struct net_conntab *t)
{
    size_t nb = t->b ? (t->mask + 1) * 2 : 256;
    struct net_conn **b = calloc(nb, sizeof *b);
    if (!b)
        return -ENOMEM;
    if (t->b) {
        for (size_t i = 0; i <= t->mask; i++) {
            struct net_conn *c = t->b[i], *next;
            for (; c; c = next) {
                next = c->hnext;
                size_t k = c->seq & (nb - 1);
                c->hnext = b[k];
                b[k] = c;
            }
        }
        free(t->b);
    }
    t->b = b;
    t->mask = nb - 1;
    return 0;
}

int net_tab_put(struct net_conntab *t, struct net_conn *c)
{
    if (!t->b || t->n >= t->mask + 1) {
        int rc = grow(t);
        /* A full table still works (longer chains); only an empty one
         * cannot take the connection. */
        if (rc < 0 && !t->b)
            return rc;
    }
    size_t k = c->seq & t->mask;
    c->hnext = t->b[k];
    t->b[k] = c;
    t->n++;
    return 0;
}

struct net_conn *net_tab_get(const struct net_conntab *t, uint64_t seq)
{
    if (!t->b)
        return NULL;
    struct net_conn *c = t->b[seq & t->mask];
    while (c && c->seq != seq)
        c = c->hnext;
    return c;
}

void net_tab_del(struct net_conntab *t, struct net_conn *c)
{
    struct net_conn **pp = &t->b[c->seq & t->mask];
    while (*pp && *pp != c)
        pp = &(*pp)->hnext;
    if (*pp) {
        *pp = c->hnext;
        c->hnext = NULL;
        RM_ASSERT(t->n > 0);
        t->n--;
    }
}

void net_tab_free(struct net_conntab *t)
{
    free(t->b);
    t->b = NULL;
    t->mask = 0;
    t->n = 0;
}
