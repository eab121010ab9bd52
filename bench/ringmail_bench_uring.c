/* The io_uring engine of ringmail-bench: one ring per worker thread.  Every
 * client has at most one operation of each kind in flight (CONNECT, RECV,
 * SEND); user_data carries the client's index, its connection generation
 * (c->gen, low 24 bits) and the kind, so completions of a connection that
 * was dropped meanwhile are recognised and only counted.
 *
 * Buffers the kernel holds: RECV writes into bench_conn_rxbuf(c) (not moved
 * while the RECV is in flight: only its completion leads to parsing), SEND
 * reads c->tx, which is swapped with the wire buffer only when no SEND is in
 * flight, so new commands never realloc what the kernel reads.  A client
 * gets no new socket until everything of its previous one completed. */
#include "bench/ringmail_bench_conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <liburing.h>

enum { K_IGNORE, K_CONNECT, K_RECV, K_SEND };

#define RING_ENTRIES 4096

static struct io_uring *ring_of(struct bench_worker *w)
{
    return w->eng_state;
}

static uint64_t ud(struct bench_worker *w, struct bench_client *c, int kind)
{
    uint64_t idx = (uint64_t)(c - w->cl);
    return idx << 32 | (uint64_t)(c->gen & 0xffffff) << 8 | (uint64_t)kind;
}

static struct io_uring_sqe *get_sqe(struct bench_worker *w)
{
    struct io_uring *r = ring_of(w);
    struct io_uring_sqe *sqe;
    while (!(sqe = io_uring_get_sqe(r)))
        io_uring_submit(r);
    return sqe;
}

static void arm(struct bench_worker *w, struct bench_client *c, struct io_uring_sqe *sqe,
                int kind)
{
    io_uring_sqe_set_data64(sqe, ud(w, c, kind));
    c->armed |= 1u << kind;
    c->inflight++;
}

static int uring_init(struct bench_worker *w)
{
    struct io_uring *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    struct io_uring_params p = { .flags = IORING_SETUP_COOP_TASKRUN };
    int e = io_uring_queue_init_params(RING_ENTRIES, r, &p);
    if (e == -EINVAL) {
        memset(&p, 0, sizeof p);
        e = io_uring_queue_init_params(RING_ENTRIES, r, &p);
    }
    if (e < 0) {
        free(r);
        return e;
    }
    w->eng_state = r;
    return 0;
}

/* Ends what is in flight (shutdown) and reaps it, so that no buffer is
 * written after the worker frees it. */
static void uring_fini(struct bench_worker *w)
{
    struct io_uring *r = ring_of(w);
    long inflight = 0;
    for (int i = 0; i < w->ncl; i++) {
        struct bench_client *c = &w->cl[i];
        if (c->inflight && c->fd >= 0)
            shutdown(c->fd, SHUT_RDWR);
        inflight += c->inflight;
    }
    io_uring_submit(r);
    uint64_t give_up = bench_now_ns() + 2000000000ull;
    while (inflight > 0 && bench_now_ns() < give_up) {
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 10000000 };
        if (io_uring_wait_cqe_timeout(r, &cqe, &ts) < 0)
            continue;
        uint64_t data = cqe->user_data;
        if ((data & 0xff) != K_IGNORE) {
            w->cl[data >> 32].inflight--;
            inflight--;
        }
        io_uring_cqe_seen(r, cqe);
    }
    io_uring_queue_exit(r);
    free(w->eng_state);
    w->eng_state = NULL;
}

static int uring_can_connect(struct bench_worker *w, struct bench_client *c)
{
    (void)w;
    return c->inflight ? -EBUSY : 0;
}

static void uring_connect(struct bench_worker *w, struct bench_client *c)
{
    socklen_t alen;
    const struct sockaddr *addr = bench_conn_addr(c, &alen);
    struct io_uring_sqe *sqe = get_sqe(w);
    io_uring_prep_connect(sqe, c->fd, addr, alen);
    arm(w, c, sqe, K_CONNECT);
}

static void arm_recv(struct bench_worker *w, struct bench_client *c)
{
    if (c->fd < 0 || (c->armed & (1u << K_RECV)))
        return;
    size_t cap;
    char *buf = bench_conn_rxbuf(c, &cap);
    struct io_uring_sqe *sqe = get_sqe(w);
    io_uring_prep_recv(sqe, c->fd, buf, cap, 0);
    arm(w, c, sqe, K_RECV);
}

static void arm_send(struct bench_worker *w, struct bench_client *c)
{
    struct io_uring_sqe *sqe = get_sqe(w);
    io_uring_prep_send(sqe, c->fd, c->tx.p + c->tx.off, c->tx.len - c->tx.off, MSG_NOSIGNAL);
    arm(w, c, sqe, K_SEND);
}

static void uring_kick(struct bench_worker *w, struct bench_client *c)
{
    if (c->fd < 0 || c->state == ST_CONNECTING || (c->armed & (1u << K_SEND)))
        return;
    struct bench_obuf *b = bench_conn_wire(c);
    if (b->off >= b->len)
        return;
    struct bench_obuf t = c->tx;
    c->tx = *b;
    t.len = t.off = 0;
    *b = t;
    arm_send(w, c);
}

static void uring_closing(struct bench_worker *w, struct bench_client *c)
{
    /* Prepared operations still name the descriptor by number: submit them
     * before it is closed (and reused).  shutdown() ends what is in flight:
     * RECV sees 0, SEND an error, CONNECT is aborted. */
    if (!c->inflight)
        return;
    io_uring_submit(ring_of(w));
    shutdown(c->fd, SHUT_RDWR);
    c->tx.len = c->tx.off = 0;
}

static void on_cqe(struct bench_worker *w, uint64_t data, int res)
{
    int kind = (int)(data & 0xff);
    if (kind == K_IGNORE)
        return;
    struct bench_client *c = &w->cl[data >> 32];
    c->inflight--;
    c->armed &= ~(1u << kind);
    if (((data >> 8) & 0xffffff) != (c->gen & 0xffffff) || c->fd < 0)
        return;                       /* of a connection dropped meanwhile */
    uint32_t gen = c->gen;
    switch (kind) {
    case K_CONNECT:
        if (res < 0) {
            bench_conn_fail(w, c);
            return;
        }
        bench_conn_connected(w, c);
        if (c->gen != gen)
            return;
        arm_recv(w, c);
        uring_kick(w, c);
        return;
    case K_RECV:
        if (res == -EINTR || res == -EAGAIN || res == -ENOBUFS) {
            arm_recv(w, c);
            return;
        }
        if (res < 0) {
            bench_conn_fail(w, c);
            return;
        }
        if (res == 0) {
            bench_conn_eof(w, c);
            return;
        }
        bench_conn_input(w, c, (size_t)res);
        if (c->gen == gen)
            arm_recv(w, c);
        return;
    case K_SEND:
        if (res == -EINTR || res == -EAGAIN) {
            arm_send(w, c);
            return;
        }
        if (res < 0) {
            bench_conn_fail(w, c);
            return;
        }
        c->tx.off += (size_t)res;
        if (c->tx.off < c->tx.len) {
            arm_send(w, c);
            return;
        }
        c->tx.off = c->tx.len = 0;
        uring_kick(w, c);
        return;
    default:
        return;
    }
}

static void uring_loop(struct bench_worker *w)
{
    struct io_uring *r = ring_of(w);
    while (!bench_conn_stop_all()) {
        bench_conn_tick(w);
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 2000000 };
        int e = io_uring_submit_and_wait_timeout(r, &cqe, 1, &ts, NULL);
        if (e < 0 && e != -ETIME && e != -EINTR && e != -EBUSY)
            break;
        unsigned head, n = 0;
        io_uring_for_each_cqe(r, head, cqe) {
            on_cqe(w, cqe->user_data, cqe->res);
            n++;
        }
        io_uring_cq_advance(r, n);
    }
}

const struct bench_engine bench_engine_uring = {
    .name = "io_uring",
    .init = uring_init,
    .fini = uring_fini,
    .can_connect = uring_can_connect,
    .connect = uring_connect,
    .kick = uring_kick,
    .closing = uring_closing,
    .loop = uring_loop,
};
