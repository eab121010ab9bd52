/* net/worker.c — one worker thread: pick and set up the backend, then run
 * the loop (act on connections that need it, wait for I/O, run timers and
 * cross-thread work) until a graceful stop has closed every connection.
 * Listeners close last, after the connections, so that with SO_REUSEPORT
 * no accept queue is dropped while other workers still serve. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "net/internal.h"

atomic_uint net_hard_stops;
__thread struct net_worker *net_worker_self;

uint64_t net_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void net_worker_attend(struct net_worker *w, struct net_conn *c)
{
    RM_ASSERT_MSG(w == net_worker_self && c->w == w, "connection used off its worker");
    if (c->flags & (NC_QUEUED | NC_DEAD))
        return;
    c->flags |= NC_QUEUED;
    c->anext = NULL;
    if (w->att_tail)
        w->att_tail->anext = c;
    else
        w->att_head = c;
    w->att_tail = c;
}

/* Act on every connection that asked for it.  Callbacks run from here may
 * queue more (including the same connection again); the list is drained
 * until empty. */
static void attend_all(struct net_worker *w)
{
    struct net_conn *c;
    while ((c = w->att_head)) {
        w->att_head = c->anext;
        if (!w->att_head)
            w->att_tail = NULL;
        RM_ASSERT(c->flags & NC_QUEUED);
        c->flags &= ~NC_QUEUED;
        net_conn_service(c);
    }
}

/* Swap the producers' queue for the worker's spare one, then act on it
 * without holding the lock. */
static void drain_queue(struct net_worker *w)
{
    pthread_mutex_lock(&w->qlock);
    struct net_msg *m = w->q;
    size_t n = w->qn, cap = w->qcap;
    w->q = w->q2;
    w->qcap = w->q2cap;
    w->qn = 0;
    w->q2 = m;
    w->q2cap = cap;
    pthread_mutex_unlock(&w->qlock);

    for (size_t i = 0; i < n; i++) {
        if (m[i].fn) {
            m[i].fn(m[i].arg);
            continue;
        }
        /* A flag, not a queue entry per wake: any number of wakes before
         * the connection's turn becomes one on_wake.  A stale id finds
         * nothing (sequence numbers are never reused). */
        struct net_conn *c = net_tab_get(&w->tab, m[i].seq);
        if (c && !(c->flags & (NC_DEAD | NC_CLOSING))) {
            c->flags |= NC_WAKE;
            net_worker_attend(w, c);
        }
    }
}

/* After a wait: the connections that yielded get their on_resume, behind
 * whatever the wait brought in for the others. */
static void resume_yielded(struct net_worker *w)
{
    size_t n = w->nyield;
    w->nyield = 0;
    for (size_t i = 0; i < n; i++) {
        struct net_conn *c = net_tab_get(&w->tab, w->yield[i]);
        if (!c || !(c->flags & NC_YIELD))
            continue;
        c->flags &= ~NC_YIELD;
        if (c->flags & (NC_DEAD | NC_CLOSING | NC_ABORT))
            continue;
        c->flags |= NC_RESUME;
        net_worker_attend(w, c);
    }
}

static struct net_conn **snapshot(struct net_worker *w, size_t *n)
{
    struct net_conn **a = malloc((w->tab.n ? w->tab.n : 1) * sizeof *a);
    size_t k = 0;
    if (!a)
        return NULL;
    for (size_t i = 0; w->tab.b && i <= w->tab.mask; i++)
        for (struct net_conn *c = w->tab.b[i]; c; c = c->hnext)
            a[k++] = c;
    *n = k;
    return a;
}

static void begin_drain(struct net_worker *w)
{
    const net_conn_ops *ops = &w->s->ops;
    w->state = NW_DRAINING;
    w->drain_deadline = w->now + w->s->cfg.shutdown_ms;
    w->accept_retry_at = 0;
    w->be->accept_off(w);

    /* By id, not by pointer: on_shutdown of one connection may close
     * (but never free: see conn.c) others. */
    size_t n = 0;
    struct net_conn **a = snapshot(w, &n);
    uint64_t *seqs = a ? malloc((n ? n : 1) * sizeof *seqs) : NULL;
    if (!seqs) {
        free(a);
        w->drain_deadline = w->now;     /* cannot ask nicely: force */
        return;
    }
    for (size_t i = 0; i < n; i++)
        seqs[i] = a[i]->seq;
    free(a);
    for (size_t i = 0; i < n; i++) {
        struct net_conn *c = net_tab_get(&w->tab, seqs[i]);
        if (!c || (c->flags & (NC_CLOSING | NC_ABORT)))
            continue;
        if (ops->on_shutdown && (c->flags & NC_OPEN))
            ops->on_shutdown(c, c->user);
        else
            net_conn_close(c);
        /* Whatever on_shutdown did, the flush is bounded by the deadline. */
        if ((c->flags & NC_CLOSING) && c->deadline > w->drain_deadline)
            net_heap_set(&w->heap, c, w->drain_deadline);
    }
    free(seqs);
}

static void force_close_all(struct net_worker *w)
{
    size_t n = 0;
    struct net_conn **a = snapshot(w, &n);
    if (!a)
        return;
    for (size_t i = 0; i < n; i++)
        net_conn_finalize(a[i]);
    free(a);
}

static int next_timeout(struct net_worker *w)
{
    if (w->att_head || w->more || w->signaled || w->nyield)
        return 0;
    uint64_t until = UINT64_MAX;
    struct net_conn *top = net_heap_top(&w->heap);
    if (top)
        until = top->deadline;
    if (w->accept_retry_at && w->accept_retry_at < until)
        until = w->accept_retry_at;
    if (w->state == NW_DRAINING && w->drain_deadline < until)
        until = w->drain_deadline;
    if (until == UINT64_MAX)
        return -1;
    if (until <= w->now)
        return 0;
    uint64_t d = until - w->now;
    return d > INT_MAX ? INT_MAX : (int)d;
}

static void run_timers(struct net_worker *w)
{
    struct net_conn *c;
    /* Re-arming from on_timer lands at >= now + 1 ms: no endless loop. */
    while ((c = net_heap_top(&w->heap)) && c->deadline <= w->now) {
        net_heap_del(&w->heap, c);
        net_conn_on_timer(c);
    }
}

static void loop(struct net_worker *w)
{
    net_server *s = w->s;
    uint64_t hard_stop = 0;

    w->now = net_now_ms();
    for (;;) {
        attend_all(w);
        if (w->state == NW_DRAINING) {
            if (!w->nconns && !w->nzombies)
                break;
            if (w->now >= w->drain_deadline && w->nconns) {
                force_close_all(w);
                attend_all(w);
            }
            /* Zombies finish as soon as their sockets are shut down; if
             * the kernel says nothing for a second, tear down anyway. */
            if (!w->nconns) {
                if (!hard_stop)
                    hard_stop = w->now + 1000;
                else if (w->now >= hard_stop) {
                    atomic_fetch_add(&net_hard_stops, 1);
                    break;
                }
            }
        }
        int timeout = next_timeout(w);
        if (hard_stop && (timeout < 0 || timeout > 50))
            timeout = 50;
        w->be->wait(w, timeout);
        w->now = net_now_ms();
        if (w->signaled) {
            w->signaled = false;
            drain_queue(w);
        }
        if (w->state == NW_RUNNING && atomic_load(&s->stopping))
            begin_drain(w);
        run_timers(w);
        resume_yielded(w);
        if (w->accept_retry_at && w->now >= w->accept_retry_at) {
            w->accept_retry_at = 0;
            if (w->state == NW_RUNNING)
                w->be->accept_on(w);
        }
    }
}

static void report_init(struct net_worker *w, int err)
{
    net_server *s = w->s;
    pthread_mutex_lock(&s->lock);
    w->init_err = err;
    w->init_done = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

void *net_worker_main(void *arg)
{
    struct net_worker *w = arg;
    net_server *s = w->s;
    int rc = -EINVAL;
    net_worker_self = w;

    if (w->want != NET_BACKEND_EPOLL) {
        w->be = &net_be_uring;
        rc = w->be->init(w);
    }
    if (rc < 0 && w->want != NET_BACKEND_IO_URING) {
        w->be = &net_be_epoll;
        rc = w->be->init(w);
    }
    report_init(w, rc);
    if (rc < 0)
        return NULL;

    w->state = NW_RUNNING;
    if (!atomic_load(&s->stopping))
        w->be->accept_on(w);
    loop(w);
    /* The loop ends once every connection is finalized. */
    RM_ASSERT(w->nconns == 0 && w->tab.n == 0);

    /* Posts that raced with the stop still run, exactly once, here. */
    pthread_mutex_lock(&w->qlock);
    w->qclosed = true;
    pthread_mutex_unlock(&w->qlock);
    drain_queue(w);
    attend_all(w);

    w->be->fini(w);
    /* Zombies the kernel never completed: the ring is gone, so nothing
     * refers to them any more. */
    for (size_t i = 0; i < w->nzombies; i++) {
        struct net_conn *c = w->zombies[i];
        c->tidx = 0;
        c->refs = 0;
        c->flags &= ~NC_QUEUED;
        net_conn_reap(c);
    }
    w->nzombies = 0;
    free(w->zombies);
    free(w->yield);
    w->yield = NULL;
    w->nyield = w->yieldcap = 0;
    w->zombies = NULL;
    net_heap_free(&w->heap);
    net_tab_free(&w->tab);

    for (unsigned l = 0; l < s->nlisteners; l++) {
        if (s->lst[l].fds[w->idx] >= 0) {
            close(s->lst[l].fds[w->idx]);
            s->lst[l].fds[w->idx] = -1;
        }
    }
    w->state = NW_EXIT;
    return NULL;
}
