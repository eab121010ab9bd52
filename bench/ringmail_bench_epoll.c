/* The epoll engine of ringmail-bench: one edge-triggered epoll set per
 * worker thread over its clients' non-blocking sockets; connect() in
 * progress, send() as far as the socket takes it, recv() until EAGAIN. */
#include "bench/ringmail_bench_conn.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static int ep_of(struct bench_worker *w)
{
    return (int)(intptr_t)w->eng_state;
}

static int epoll_init(struct bench_worker *w)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return -errno;
    w->eng_state = (void *)(intptr_t)ep;
    return 0;
}

static void epoll_fini(struct bench_worker *w)
{
    close(ep_of(w));
}

static int epoll_can_connect(struct bench_worker *w, struct bench_client *c)
{
    (void)w;
    (void)c;
    return 0;
}

static void epoll_connect(struct bench_worker *w, struct bench_client *c)
{
    socklen_t alen;
    const struct sockaddr *addr = bench_conn_addr(c, &alen);
    if (connect(c->fd, addr, alen) < 0 &&
        errno != EINPROGRESS) {
        bench_conn_fail(w, c);
        return;
    }
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                              .data.ptr = c };
    if (epoll_ctl(ep_of(w), EPOLL_CTL_ADD, c->fd, &ev) < 0)
        bench_conn_fail(w, c);
}

static void epoll_kick(struct bench_worker *w, struct bench_client *c)
{
    struct bench_obuf *b = bench_conn_wire(c);
    if (c->fd < 0 || c->state == ST_CONNECTING)
        return;
    while (b->off < b->len) {
        ssize_t n = send(c->fd, b->p + b->off, b->len - b->off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;               /* EPOLLOUT comes back */
            if (errno == EINTR)
                continue;
            bench_conn_fail(w, c);
            return;
        }
        b->off += (size_t)n;
    }
    b->off = b->len = 0;
}

static void epoll_closing(struct bench_worker *w, struct bench_client *c)
{
    (void)w;
    (void)c;                          /* close() removes it from the set */
}

static void on_event(struct bench_worker *w, struct bench_client *c, uint32_t ev)
{
    if (c->fd < 0)
        return;
    uint32_t gen = c->gen;
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0 || err) {
            bench_conn_fail(w, c);
            return;
        }
        /* an event of this client's previous socket, in the same batch */
        struct sockaddr_storage peer;
        socklen_t pl = sizeof peer;
        if (getpeername(c->fd, (struct sockaddr *)&peer, &pl) < 0)
            return;
        bench_conn_connected(w, c);
        if (c->gen != gen)
            return;
    }
    if (ev & EPOLLOUT) {
        epoll_kick(w, c);
        if (c->gen != gen)
            return;
    }
    for (;;) {
        size_t cap;
        char *buf = bench_conn_rxbuf(c, &cap);
        ssize_t n = recv(c->fd, buf, cap, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR)
                continue;
            bench_conn_fail(w, c);
            return;
        }
        if (n == 0) {
            bench_conn_eof(w, c);
            return;
        }
        bench_conn_input(w, c, (size_t)n);
        if (c->gen != gen)
            return;
    }
}

static void epoll_loop(struct bench_worker *w)
{
    struct epoll_event evs[256];
    while (!bench_conn_stop_all()) {
        bench_conn_tick(w);
        int n = epoll_wait(ep_of(w), evs, 256, 2);
        for (int i = 0; i < n; i++)
            on_event(w, evs[i].data.ptr, evs[i].events);
    }
}

const struct bench_engine bench_engine_epoll = {
    .name = "epoll",
    .init = epoll_init,
    .fini = epoll_fini,
    .can_connect = epoll_can_connect,
    .connect = epoll_connect,
    .kick = epoll_kick,
    .closing = epoll_closing,
    .loop = epoll_loop,
};
