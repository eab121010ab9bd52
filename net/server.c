/* net/server.c — the server object: configuration, workers (threads) and
 * their start-up handshake, stop, and the cross-thread entry points
 * (net_wake, net_post). */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "net/internal.h"

int net_backend_parse(const char *s, net_backend *out)
{
    if (!s)
        return -EINVAL;
    if (!strcmp(s, "auto"))
        *out = NET_BACKEND_AUTO;
    else if (!strcmp(s, "io_uring"))
        *out = NET_BACKEND_IO_URING;
    else if (!strcmp(s, "epoll"))
        *out = NET_BACKEND_EPOLL;
    else
        return -EINVAL;
    return 0;
}

const char *net_backend_name(net_backend b)
{
    switch (b) {
    case NET_BACKEND_AUTO: return "auto";
    case NET_BACKEND_IO_URING: return "io_uring";
    case NET_BACKEND_EPOLL: return "epoll";
    }
    return "?";
}

int net_server_new(const net_config *cfg, const net_conn_ops *ops,
                   net_server **out)
{
    net_server *s;
    int rc = 0;

    *out = NULL;
    if (!cfg || !ops || !ops->on_data)
        return -EINVAL;
    s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->cfg = *cfg;
    s->ops = *ops;
    if (!s->cfg.workers) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        s->cfg.workers = n > 0 ? (unsigned)n : 1;
    }
    if (!s->cfg.high_water)
        s->cfg.high_water = 256 * 1024;
    if (!s->cfg.low_water)
        s->cfg.low_water = 64 * 1024;
    if (s->cfg.low_water > s->cfg.high_water)
        s->cfg.low_water = s->cfg.high_water;
    if (!s->cfg.shutdown_ms)
        s->cfg.shutdown_ms = 10000;
    s->nworkers = s->cfg.workers;
    atomic_init(&s->stopping, 0);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);

    s->w = calloc(s->nworkers, sizeof *s->w);
    if (!s->w) {
        rc = -ENOMEM;
        goto fail;
    }
    for (unsigned i = 0; i < s->nworkers; i++) {
        struct net_worker *w = &s->w[i];
        w->s = s;
        w->idx = i;
        w->efd = -1;
        pthread_mutex_init(&w->qlock, NULL);
    }
    /* The eventfds exist before the threads so that net_server_stop (and
     * net_post) work at any time, even before start. */
    for (unsigned i = 0; i < s->nworkers; i++) {
        s->w[i].efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (s->w[i].efd < 0) {
            rc = -errno;
            goto fail;
        }
    }
    *out = s;
    return 0;
fail:
    net_server_free(s);
    return rc;
}

static int start_worker(net_server *s, unsigned i, net_backend want)
{
    struct net_worker *w = &s->w[i];
    sigset_t all, old;
    int rc;

    w->want = want;
    /* Workers take no signals: a handler (SIGTERM -> net_server_stop) runs
     * on the application's thread, never in the middle of a loop. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = -pthread_create(&w->thread, NULL, net_worker_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc < 0)
        return rc;
    w->thread_started = true;
    return 0;
}

static int wait_init(net_server *s, unsigned i)
{
    struct net_worker *w = &s->w[i];
    pthread_mutex_lock(&s->lock);
    while (!w->init_done)
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
    return w->init_err;
}

int net_server_start(net_server *s)
{
    int rc;

    if (s->started)
        return -EALREADY;
    /* Worker 0 first: it finds out which backend works here, and the rest
     * are asked for the same one (a server with mixed backends would be
     * harder to reason about for no gain). */
    rc = start_worker(s, 0, s->cfg.backend);
    if (rc == 0)
        rc = wait_init(s, 0);
    if (rc < 0)
        goto fail;
    s->backend = s->w[0].be->kind;
    for (unsigned i = 1; i < s->nworkers; i++) {
        rc = start_worker(s, i, s->backend);
        if (rc < 0)
            goto fail;
    }
    for (unsigned i = 1; i < s->nworkers; i++) {
        rc = wait_init(s, i);
        if (rc < 0)
            goto fail;
    }
    s->started = true;
    return 0;
fail:
    net_server_stop(s);
    for (unsigned i = 0; i < s->nworkers; i++) {
        if (s->w[i].thread_started) {
            pthread_join(s->w[i].thread, NULL);
            s->w[i].thread_started = false;
        }
    }
    return rc;
}

net_backend net_server_backend(const net_server *s)
{
    return s->backend;
}

void net_server_stop(net_server *s)
{
    /* Async-signal-safe: an atomic store and write(2), no locks. */
    uint64_t one = 1;
    atomic_store(&s->stopping, 1);
    for (unsigned i = 0; i < s->nworkers; i++) {
        ssize_t r = write(s->w[i].efd, &one, sizeof one);
        (void)r;    /* EAGAIN: the counter is already non-zero, fine */
    }
}

void net_server_wait(net_server *s)
{
    if (!s->started || s->joined)
        return;
    for (unsigned i = 0; i < s->nworkers; i++) {
        if (s->w[i].thread_started) {
            pthread_join(s->w[i].thread, NULL);
            s->w[i].thread_started = false;
        }
    }
    s->joined = true;
}

void net_server_free(net_server *s)
{
    if (!s)
        return;
    if (s->started && !s->joined) {
        net_server_stop(s);
        net_server_wait(s);
    }
    for (unsigned l = 0; l < s->nlisteners; l++) {
        for (unsigned i = 0; s->lst[l].fds && i < s->nworkers; i++)
            if (s->lst[l].fds[i] >= 0)
                close(s->lst[l].fds[i]);
        free(s->lst[l].fds);
    }
    while (s->inh && s->inh_pos < s->ninh)
        close(s->inh[s->inh_pos++]);
    free(s->inh);
    for (unsigned i = 0; s->w && i < s->nworkers; i++) {
        struct net_worker *w = &s->w[i];
        if (w->efd >= 0)
            close(w->efd);
        /* Posts queued to a server that never ran are dropped here; their
         * arguments are the poster's to reclaim (net_post said 0). */
        free(w->q);
        free(w->q2);
        pthread_mutex_destroy(&w->qlock);
    }
    free(s->w);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int enqueue(net_server *s, unsigned wi, const struct net_msg *m)
{
    struct net_worker *w;
    bool was_empty;

    if (wi >= s->nworkers)
        return -EINVAL;
    w = &s->w[wi];
    pthread_mutex_lock(&w->qlock);
    if (w->qclosed) {
        pthread_mutex_unlock(&w->qlock);
        return -ESHUTDOWN;
    }
    if (w->qn == w->qcap) {
        size_t cap = w->qcap ? w->qcap * 2 : 64;
        struct net_msg *q = realloc(w->q, cap * sizeof *q);
        if (!q) {
            pthread_mutex_unlock(&w->qlock);
            return -ENOMEM;
        }
        w->q = q;
        w->qcap = cap;
    }
    was_empty = w->qn == 0;
    w->q[w->qn++] = *m;
    pthread_mutex_unlock(&w->qlock);
    /* Only the first message of a batch needs to wake the worker: it
     * takes the whole queue when it wakes. */
    if (was_empty) {
        uint64_t one = 1;
        ssize_t r = write(w->efd, &one, sizeof one);
        (void)r;
    }
    return 0;
}

void net_wake(net_server *s, net_conn_id id)
{
    struct net_msg m = { .fn = NULL, .arg = NULL, .seq = id.seq };
    (void)enqueue(s, id.worker, &m);
}

unsigned net_server_workers(const net_server *s)
{
    return s->nworkers;
}

int net_post(net_server *s, unsigned w, void (*fn)(void *arg), void *arg)
{
    if (!fn)
        return -EINVAL;
    struct net_msg m = { .fn = fn, .arg = arg, .seq = 0 };
    return enqueue(s, w, &m);
}
