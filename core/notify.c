/* core/notify.c — cross-session change notification.
 *
 * Sessions register the mailbox they have selected; a session that changes
 * a mailbox wakes every other watcher through net_wake, which runs their
 * on_wake on their own worker.  The store object of a mailbox is shared by
 * all sessions of the process, so its address is the key. */
#include <errno.h>
#include <stdlib.h>

#include "core/server.h"

struct watch {
    const store_mbox *mb;
    net_conn_id id;
    struct watch *next;
};

#define NBUCKETS 4096

static size_t bucket(const store_mbox *mb)
{
    uintptr_t x = (uintptr_t)mb;
    x ^= x >> 17;
    x *= 0x9e3779b97f4a7c15ull;
    return (size_t)(x >> 40) % NBUCKETS;
}

static struct watch **table(imap_server *srv)
{
    if (!srv->watches) {
        srv->watches = calloc(NBUCKETS, sizeof(struct watch *));
        srv->nbuckets = NBUCKETS;
    }
    return srv->watches;
}

int notify_watch(imap_server *srv, const store_mbox *mb, net_conn_id id)
{
    struct watch *w = malloc(sizeof *w);
    if (!w)
        return -ENOMEM;
    w->mb = mb;
    w->id = id;
    pthread_mutex_lock(&srv->nlock);
    struct watch **t = table(srv);
    if (!t) {
        pthread_mutex_unlock(&srv->nlock);
        free(w);
        return -ENOMEM;
    }
    size_t b = bucket(mb);
    w->next = t[b];
    t[b] = w;
    pthread_mutex_unlock(&srv->nlock);
    return 0;
}

void notify_unwatch(imap_server *srv, const store_mbox *mb, net_conn_id id)
{
    pthread_mutex_lock(&srv->nlock);
    struct watch **t = table(srv);
    if (t) {
        for (struct watch **pp = &t[bucket(mb)]; *pp; pp = &(*pp)->next) {
            struct watch *w = *pp;
            if (w->mb == mb && w->id.worker == id.worker && w->id.seq == id.seq) {
                *pp = w->next;
                free(w);
                break;
            }
        }
    }
    pthread_mutex_unlock(&srv->nlock);
}

void notify_changed(imap_server *srv, const store_mbox *mb, net_conn_id self)
{
    net_conn_id stack[64], *ids = stack;
    size_t n = 0, cap = 64;
    pthread_mutex_lock(&srv->nlock);
    struct watch **t = table(srv);
    for (struct watch *w = t ? t[bucket(mb)] : NULL; w; w = w->next) {
        if (w->mb != mb || (w->id.worker == self.worker && w->id.seq == self.seq))
            continue;
        if (n == cap) {
            net_conn_id *nids = malloc(cap * 2 * sizeof *nids);
            if (!nids)
                break;
            for (size_t i = 0; i < n; i++)
                nids[i] = ids[i];
            if (ids != stack)
                free(ids);
            ids = nids;
            cap *= 2;
        }
        ids[n++] = w->id;
    }
    pthread_mutex_unlock(&srv->nlock);
    for (size_t i = 0; i < n; i++)
        net_wake(srv->net, ids[i]);
    if (ids != stack)
        free(ids);
}

void notify_fini(imap_server *srv);
void notify_fini(imap_server *srv)
{
    struct watch **t = srv->watches;
    if (!t)
        return;
    for (size_t b = 0; b < srv->nbuckets; b++)
        for (struct watch *w = t[b], *n; w; w = n) {
            n = w->next;
            free(w);
        }
    free(t);
    srv->watches = NULL;
}
