/* net/epoll.c — the epoll backend, for where io_uring cannot be set up
 * (containers often forbid it) or io_backend = epoll.
 *
 * Sockets are registered once, edge-triggered, for input and output, so
 * pausing, resuming and queueing output never cost an epoll_ctl.  The
 * connection remembers what the last edge said (NC_READABLE/NC_WRITABLE)
 * until a read or write shows otherwise.  Input is read into one 64 KiB
 * buffer per worker (an idle connection holds none); a connection that
 * filled it is read again next round, after the others had their turn.
 * Output goes out with sendmsg (MSG_NOSIGNAL: no SIGPIPE) over the queue's
 * chunks. */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "net/internal.h"

#define EP_RBUF (64 * 1024)
#define EP_EVENTS 256
#define EP_ACCEPT_BATCH 64

/* epoll_event.data tags (low bits; connections are 8-byte aligned). */
enum { EP_CONN = 0, EP_LISTENER = 1, EP_EVENTFD = 2 };

struct ep_state {
    int epfd;
    uint8_t *rbuf;
    uint64_t *later, *later2;       /* seqs to read again next round */
    size_t nlater, later_cap, later2_cap;
    bool registered[NET_MAX_LISTENERS];
    bool ready[NET_MAX_LISTENERS];
};

static int ep_init(struct net_worker *w)
{
    struct ep_state *st = calloc(1, sizeof *st);
    int rc = 0;
    if (!st)
        return -ENOMEM;
    st->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (st->epfd < 0) {
        rc = -errno;
        goto fail;
    }
    st->rbuf = malloc(EP_RBUF);
    if (!st->rbuf) {
        rc = -ENOMEM;
        goto fail;
    }
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = EP_EVENTFD };
    if (epoll_ctl(st->epfd, EPOLL_CTL_ADD, w->efd, &ev) < 0) {
        rc = -errno;
        goto fail;
    }
    w->bes = st;
    return 0;
fail:
    if (st->epfd >= 0)
        close(st->epfd);
    free(st->rbuf);
    free(st);
    return rc;
}

static void ep_fini(struct net_worker *w)
{
    struct ep_state *st = w->bes;
    close(st->epfd);
    free(st->rbuf);
    free(st->later);
    free(st->later2);
    free(st);
    w->bes = NULL;
}

static void later_push(struct ep_state *st, struct net_conn *c)
{
    if (c->flags & NC_LATER)
        return;
    if (st->nlater == st->later_cap) {
        size_t cap = st->later_cap ? st->later_cap * 2 : 64;
        uint64_t *a = realloc(st->later, cap * sizeof *a);
        if (!a) {
            net_conn_abort(c);
            return;
        }
        st->later = a;
        st->later_cap = cap;
    }
    st->later[st->nlater++] = c->seq;
    c->flags |= NC_LATER;
}

/* One read.  A short read means the socket is empty for now: with
 * edge-triggered epoll any later arrival raises a new edge, so there is no
 * need to confirm with a read that returns EAGAIN.  Except for the FIN:
 * its edge may have come and gone (say, while paused) with data ahead of
 * it, so once it was seen, read until the 0. */
static void ep_read(struct net_worker *w, struct net_conn *c)
{
    struct ep_state *st = w->bes;
    if (c->flags & NC_PAUSED)
        return;         /* stays NC_READABLE: read on resume */
    if (c->flags & (NC_DEAD | NC_ABORT | NC_PEER_EOF)) {
        c->flags &= ~NC_READABLE;
        return;
    }
    ssize_t n = read(c->fd, st->rbuf, EP_RBUF);
    if (n > 0) {
        if (n < EP_RBUF && !(c->flags & NC_RDHUP))
            c->flags &= ~NC_READABLE;
        else
            later_push(st, c);
        net_conn_deliver(c, st->rbuf, (size_t)n);
    } else if (n == 0) {
        c->flags &= ~NC_READABLE;
        c->flags |= NC_PEER_EOF;
        net_worker_attend(w, c);
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        c->flags &= ~NC_READABLE;
    } else if (errno == EINTR) {
        later_push(st, c);
    } else {
        net_conn_abort(c);
    }
}

static void ep_write(struct net_worker *w, struct net_conn *c)
{
    (void)w;
    while (c->out && c->out->pending && !(c->flags & (NC_ABORT | NC_DEAD))) {
        struct iovec *iov = c->out->iov;
        int k = net_out_iov(c->out, iov, NET_IOV_MAX);
        size_t want = 0;
        for (int i = 0; i < k; i++)
            want += iov[i].iov_len;
        struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)k };
        ssize_t n = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                c->flags &= ~NC_WRITABLE;
            else
                net_conn_abort(c);
            return;
        }
        net_conn_sent(c, (size_t)n);
        if ((size_t)n < want) {
            /* The socket buffer is full; the next EPOLLOUT edge says when
             * there is room again. */
            c->flags &= ~NC_WRITABLE;
            return;
        }
    }
}

static void ep_accept(struct net_worker *w, unsigned l)
{
    struct ep_state *st = w->bes;
    int lfd = w->s->lst[l].fds[w->idx];

    for (int i = 0; i < EP_ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(lfd, (struct sockaddr *)&ss, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPERM)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                /* EMFILE and friends: stop, and try again a bit later
                 * (the pending connections wait in the backlog). */
                w->accept_retry_at = w->now + NET_ACCEPT_RETRY_MS;
            else
                st->ready[l] = false;
            return;
        }
        struct net_conn *c = net_conn_accepted(w, fd, (struct sockaddr *)&ss, l);
        if (!c)
            continue;
        c->flags |= NC_WRITABLE;
        struct epoll_event ev = {
            .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
            .data.ptr = c,
        };
        if (epoll_ctl(st->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
            net_conn_abort(c);
    }
    w->more = true;     /* batch used up: more may be waiting */
}

static void ep_wait(struct net_worker *w, int timeout_ms)
{
    struct ep_state *st = w->bes;
    struct epoll_event ev[EP_EVENTS];

    int n = epoll_wait(st->epfd, ev, EP_EVENTS, timeout_ms);
    w->more = false;
    w->now = net_now_ms();

    /* Connections that filled the buffer last round go first, before this
     * round's edges add new ones. */
    uint64_t *later = st->later;
    size_t nlater = st->nlater, cap = st->later_cap;
    st->later = st->later2;
    st->later_cap = st->later2_cap;
    st->nlater = 0;
    st->later2 = later;
    st->later2_cap = cap;
    for (size_t i = 0; i < nlater; i++) {
        struct net_conn *c = net_tab_get(&w->tab, later[i]);
        if (!c)
            continue;
        c->flags &= ~NC_LATER;
        if (c->flags & NC_READABLE)
            ep_read(w, c);
    }

    for (int i = 0; i < n; i++) {
        uint64_t d = ev[i].data.u64;
        uint32_t e = ev[i].events;
        if (d == EP_EVENTFD) {
            uint64_t v;
            ssize_t r = read(w->efd, &v, sizeof v);
            (void)r;
            w->signaled = true;
            continue;
        }
        if ((d & 7) == EP_LISTENER) {
            st->ready[d >> 3] = true;
            continue;
        }
        struct net_conn *c = ev[i].data.ptr;
        if (c->flags & NC_DEAD)
            continue;
        if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
            c->flags |= NC_WRITABLE;
            if (c->out && c->out->pending)
                net_worker_attend(w, c);
        }
        if (e & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) {
            c->flags |= NC_READABLE;
            if (e & (EPOLLRDHUP | EPOLLERR | EPOLLHUP))
                c->flags |= NC_RDHUP;
            if (!(c->flags & NC_LATER))
                ep_read(w, c);
        }
    }

    if (w->accepting && !w->accept_retry_at)
        for (unsigned l = 0; l < w->s->nlisteners; l++)
            if (st->ready[l])
                ep_accept(w, l);
    if (st->nlater)
        w->more = true;
}

static void ep_service(struct net_worker *w, struct net_conn *c)
{
    struct ep_state *st = w->bes;
    if (c->out && c->out->pending && (c->flags & NC_WRITABLE))
        ep_write(w, c);
    /* Resumed, or still holding unread bytes: read next round. */
    if ((c->flags & NC_READABLE) && !(c->flags & (NC_PAUSED | NC_ABORT)))
        later_push(st, c);
    if (st->nlater)
        w->more = true;
}

static void ep_quiesce(struct net_worker *w, struct net_conn *c)
{
    (void)w;
    (void)c;    /* writes are synchronous: nothing in flight */
}

static void ep_release(struct net_worker *w, struct net_conn *c)
{
    (void)w;
    /* close() also takes the socket out of the epoll set. */
    close(c->fd);
    c->fd = -1;
}

static void ep_accept_on(struct net_worker *w)
{
    struct ep_state *st = w->bes;
    w->accepting = true;
    for (unsigned l = 0; l < w->s->nlisteners; l++) {
        if (!st->registered[l]) {
            struct epoll_event ev = {
                .events = EPOLLIN | EPOLLET,
                .data.u64 = EP_LISTENER | ((uint64_t)l << 3),
            };
            int fd = w->s->lst[l].fds[w->idx];
            if (epoll_ctl(st->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
                st->registered[l] = true;
        }
        /* Edges may have passed while we were not accepting. */
        st->ready[l] = true;
    }
    w->more = true;
}

static void ep_accept_off(struct net_worker *w)
{
    struct ep_state *st = w->bes;
    w->accepting = false;
    for (unsigned l = 0; l < w->s->nlisteners; l++) {
        if (st->registered[l]) {
            epoll_ctl(st->epfd, EPOLL_CTL_DEL, w->s->lst[l].fds[w->idx], NULL);
            st->registered[l] = false;
        }
        st->ready[l] = false;
    }
}

const struct net_be net_be_epoll = {
    .kind = NET_BACKEND_EPOLL,
    .init = ep_init,
    .wait = ep_wait,
    .service = ep_service,
    .quiesce = ep_quiesce,
    .release = ep_release,
    .accept_on = ep_accept_on,
    .accept_off = ep_accept_off,
    .fini = ep_fini,
};
