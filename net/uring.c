/* net/uring.c — the io_uring backend.
 *
 * Per worker: one ring created in the worker thread (SINGLE_ISSUER and
 * DEFER_TASKRUN when the kernel has them: completions are then processed
 * only when the worker asks, with no interrupts of its work), one provided
 * buffer ring for all receives, one multishot accept per listener, one
 * multishot receive per connection, at most one send per connection in
 * flight, and one read on the worker's eventfd for cross-thread work.
 * Timers cost no SQE: the loop waits with io_uring_submit_and_wait_timeout,
 * which passes the timeout to io_uring_enter itself (IORING_FEAT_EXT_ARG).
 * A steady request/response loop is then one io_uring_enter per round.
 *
 * Receive buffers come from the buffer ring only while bytes are being
 * handed to on_data and go back right after, so an idle connection holds
 * none.  If the ring runs dry the kernel ends the multishot receive with
 * ENOBUFS; it is re-armed after the batch, when the buffers are back.
 *
 * Pausing: the receive stays armed (a pause that ends before the client
 * sends more costs nothing); bytes that do arrive while paused are kept in
 * a small per-connection stash and the receive is cancelled, so from then
 * on the kernel's socket buffer and TCP flow control hold the client back.
 * Resuming delivers the stash first, then re-arms. */
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "net/internal.h"

#define UR_SQ 1024
#define UR_CQ 8192
/* Receive buffers: net_uring_bufs (128) x 16 KiB per worker.  Only touched
 * pages count, and a batch of completions rarely needs more; running out
 * is handled (ENOBUFS, re-arm), not fatal. */
#define UR_BUFSZ 16384
#define UR_BGID 0

/* user_data tags (low 3 bits; connections are 8-byte aligned). */
enum { UD_IGNORE = 0, UD_RECV = 1, UD_SEND = 2, UD_ACCEPT = 3, UD_EVENTFD = 4 };

struct ur_state {
    struct io_uring ring;
    bool ring_ok;
    struct io_uring_buf_ring *br;
    size_t br_len;
    uint8_t *bufs;
    size_t bufs_len;
    unsigned nadd;                  /* buffers given back this batch */
    uint64_t efd_val;
    bool efd_armed;
    bool accept_armed[NET_MAX_LISTENERS];
    unsigned nbufs;                 /* power of two */
};

unsigned net_uring_bufs = 128;

/* An SQE, submitting what is queued if the ring is full.  need > 1 makes
 * room for a linked chain first: a link split by a submission leaves its
 * head dangling (the kernel punts it to a worker thread), where it runs
 * after the next SQEs, e.g. a shutdown after the close of its fd. */
static struct io_uring_sqe *get_sqes(struct ur_state *st, unsigned need)
{
    if (io_uring_sq_space_left(&st->ring) < need)
        io_uring_submit(&st->ring);
    return io_uring_get_sqe(&st->ring);
}

static struct io_uring_sqe *get_sqe(struct ur_state *st)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&st->ring);
    if (!sqe) {
        io_uring_submit(&st->ring);
        sqe = io_uring_get_sqe(&st->ring);
    }
    return sqe;
}

static void ur_fini(struct net_worker *w);

static int ur_init(struct net_worker *w)
{
    static const unsigned flagsets[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN |
            IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    static const int need_ops[] = {
        IORING_OP_ACCEPT, IORING_OP_RECV, IORING_OP_SEND, IORING_OP_SENDMSG,
        IORING_OP_READ, IORING_OP_ASYNC_CANCEL, IORING_OP_SHUTDOWN,
        IORING_OP_CLOSE,
        /* Not used; its presence means kernel >= 6.0, which multishot
         * receive needs and no opcode probe can show. */
        IORING_OP_SEND_ZC,
    };
    struct ur_state *st = calloc(1, sizeof *st);
    struct io_uring_params p;
    int rc = -EINVAL;

    if (!st)
        return -ENOMEM;
    w->bes = st;
    st->nbufs = net_uring_bufs;
    if (!st->nbufs || (st->nbufs & (st->nbufs - 1)) || st->nbufs > 32768)
        st->nbufs = 128;
    st->br = MAP_FAILED;
    st->bufs = MAP_FAILED;
    for (size_t i = 0; i < sizeof flagsets / sizeof flagsets[0]; i++) {
        memset(&p, 0, sizeof p);
        p.flags = flagsets[i] | IORING_SETUP_CQSIZE;
        p.cq_entries = UR_CQ;
        rc = io_uring_queue_init_params(UR_SQ, &st->ring, &p);
        if (rc != -EINVAL)
            break;      /* success, or EPERM/ENOSYS/ENOMEM: no use trying */
    }
    if (rc < 0)
        goto fail;
    st->ring_ok = true;
    if (!(p.features & IORING_FEAT_FAST_POLL) || !(p.features & IORING_FEAT_NODROP)) {
        rc = -EOPNOTSUPP;
        goto fail;
    }
    struct io_uring_probe *probe = io_uring_get_probe_ring(&st->ring);
    if (!probe) {
        rc = -EOPNOTSUPP;
        goto fail;
    }
    for (size_t i = 0; i < sizeof need_ops / sizeof need_ops[0]; i++) {
        if (!io_uring_opcode_supported(probe, need_ops[i])) {
            rc = -EOPNOTSUPP;
            break;
        }
    }
    io_uring_free_probe(probe);
    if (rc < 0)
        goto fail;
    (void)io_uring_register_ring_fd(&st->ring);     /* an optimization */

    /* liburing 2.3 has no io_uring_setup_buf_ring: map the ring ourselves
     * (page-aligned, as the kernel requires) and register it. */
    st->br_len = st->nbufs * sizeof(struct io_uring_buf);
    st->br = mmap(NULL, st->br_len, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    st->bufs_len = (size_t)st->nbufs * UR_BUFSZ;
    st->bufs = mmap(NULL, st->bufs_len, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (st->br == MAP_FAILED || st->bufs == MAP_FAILED) {
        rc = -ENOMEM;
        goto fail;
    }
    struct io_uring_buf_reg reg = {
        .ring_addr = (uint64_t)(uintptr_t)st->br,
        .ring_entries = st->nbufs,
        .bgid = UR_BGID,
    };
    rc = io_uring_register_buf_ring(&st->ring, &reg, 0);
    if (rc < 0)
        goto fail;
    io_uring_buf_ring_init(st->br);
    for (unsigned i = 0; i < st->nbufs; i++)
        io_uring_buf_ring_add(st->br, st->bufs + (size_t)i * UR_BUFSZ,
                              UR_BUFSZ, (unsigned short)i,
                              io_uring_buf_ring_mask(st->nbufs), (int)i);
    io_uring_buf_ring_advance(st->br, st->nbufs);
    return 0;
fail:
    ur_fini(w);
    return rc;
}

static void recycle(struct ur_state *st, unsigned bid)
{
    io_uring_buf_ring_add(st->br, st->bufs + (size_t)bid * UR_BUFSZ, UR_BUFSZ,
                          (unsigned short)bid, io_uring_buf_ring_mask(st->nbufs),
                          (int)st->nadd++);
}

static void arm_recv(struct ur_state *st, struct net_conn *c)
{
    struct io_uring_sqe *sqe = get_sqe(st);
    if (!sqe) {
        net_conn_abort(c);
        return;
    }
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = UR_BGID;
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | UD_RECV);
    c->flags |= NC_RECV_ARMED;
    c->refs++;
}

static void start_send(struct ur_state *st, struct net_conn *c)
{
    struct net_out *o = c->out;
    struct io_uring_sqe *sqe = get_sqe(st);
    if (!sqe) {
        net_conn_abort(c);
        return;
    }
    int k = net_out_iov(o, o->iov, NET_IOV_MAX);
    if (k == 1) {
        io_uring_prep_send(sqe, c->fd, o->iov[0].iov_base, o->iov[0].iov_len,
                           MSG_NOSIGNAL);
    } else {
        memset(&o->msg, 0, sizeof o->msg);
        o->msg.msg_iov = o->iov;
        o->msg.msg_iovlen = (size_t)k;
        io_uring_prep_sendmsg(sqe, c->fd, &o->msg, MSG_NOSIGNAL);
    }
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | UD_SEND);
    c->flags |= NC_SEND_BUSY;
    c->refs++;
}

static void on_accept(struct net_worker *w, int fd, unsigned l)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;

    if (!w->accepting || w->state != NW_RUNNING) {
        close(fd);
        return;
    }
    /* A multishot accept cannot hand back addresses (one buffer for many
     * completions), so ask.  A peer already gone fails here: drop it. */
    if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0) {
        close(fd);
        return;
    }
    net_conn_accepted(w, fd, (struct sockaddr *)&ss, l);
}

static void on_cqe(struct net_worker *w, struct ur_state *st,
                   const struct io_uring_cqe *cqe)
{
    uint64_t ud = cqe->user_data;
    int res = cqe->res;
    bool more = cqe->flags & IORING_CQE_F_MORE;
    struct net_conn *c = (struct net_conn *)(uintptr_t)(ud & ~(uint64_t)7);

    switch (ud & 7) {
    case UD_IGNORE:
        return;
    case UD_EVENTFD:
        st->efd_armed = false;
        w->signaled = true;
        return;
    case UD_ACCEPT:
        if (!more)
            st->accept_armed[ud >> 3] = false;
        if (res >= 0)
            on_accept(w, res, (unsigned)(ud >> 3));
        else if (res == -EMFILE || res == -ENFILE || res == -ENOMEM ||
                 res == -ENOBUFS)
            w->accept_retry_at = w->now + NET_ACCEPT_RETRY_MS;
        return;
    case UD_RECV:
        if (!more)
            c->flags &= ~(NC_RECV_ARMED | NC_CANCELING);
        if (cqe->flags & IORING_CQE_F_BUFFER) {
            unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
            if (res > 0)
                net_conn_deliver(c, st->bufs + (size_t)bid * UR_BUFSZ,
                                 (size_t)res);
            recycle(st, bid);
        }
        if (!more) {
            if (res == 0)
                c->flags |= NC_PEER_EOF;
            else if (res < 0 && res != -ENOBUFS && res != -ECANCELED &&
                     res != -EINTR)
                net_conn_abort(c);
            /* Re-arm, close on EOF, or both: the service decides. */
            net_worker_attend(w, c);
            net_conn_put(c);
        }
        return;
    case UD_SEND:
        c->flags &= ~NC_SEND_BUSY;
        if (!(c->flags & NC_DEAD)) {
            if (res > 0)
                net_conn_sent(c, (size_t)res);
            else if (res < 0 && res != -EINTR && res != -EAGAIN)
                net_conn_abort(c);
            if (c->out && !c->out->head) {
                free(c->out);
                c->out = NULL;
            }
            net_worker_attend(w, c);
        }
        net_conn_put(c);
        return;
    }
}

static void reap(struct net_worker *w, struct ur_state *st)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;

    io_uring_for_each_cqe(&st->ring, head, cqe) {
        on_cqe(w, st, cqe);
        n++;
    }
    io_uring_cq_advance(&st->ring, n);
    if (st->nadd) {
        io_uring_buf_ring_advance(st->br, (int)st->nadd);
        st->nadd = 0;
    }
}

static void arm_accepts(struct net_worker *w, struct ur_state *st)
{
    for (unsigned l = 0; l < w->s->nlisteners; l++) {
        if (st->accept_armed[l])
            continue;
        struct io_uring_sqe *sqe = get_sqe(st);
        if (!sqe)
            return;
        io_uring_prep_multishot_accept(sqe, w->s->lst[l].fds[w->idx], NULL,
                                       NULL, SOCK_CLOEXEC);
        io_uring_sqe_set_data64(sqe, UD_ACCEPT | ((uint64_t)l << 3));
        st->accept_armed[l] = true;
    }
}

static void ur_wait(struct net_worker *w, int timeout_ms)
{
    struct ur_state *st = w->bes;
    struct __kernel_timespec ts, *tsp = NULL;
    struct io_uring_cqe *cqe;

    if (!st->efd_armed) {
        struct io_uring_sqe *sqe = get_sqe(st);
        if (sqe) {
            io_uring_prep_read(sqe, w->efd, &st->efd_val, sizeof st->efd_val, 0);
            io_uring_sqe_set_data64(sqe, UD_EVENTFD);
            st->efd_armed = true;
        }
    }
    if (w->accepting && !w->accept_retry_at)
        arm_accepts(w, st);
    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
        tsp = &ts;
    }
    /* -ETIME and -EINTR are normal; on anything else there may still be
     * completions to reap, and the loop comes back here anyway. */
    (void)io_uring_submit_and_wait_timeout(&st->ring, &cqe, 1, tsp, NULL);
    w->now = net_now_ms();
    reap(w, st);
}

static void ur_service(struct net_worker *w, struct net_conn *c)
{
    struct ur_state *st = w->bes;

    if (c->out && c->out->pending && !(c->flags & NC_SEND_BUSY))
        start_send(st, c);
    if (c->flags & NC_RECV_ARMED) {
        if ((c->flags & NC_PAUSED) && c->stash && !(c->flags & NC_CANCELING)) {
            struct io_uring_sqe *sqe = get_sqe(st);
            if (sqe) {
                io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)c | UD_RECV, 0);
                io_uring_sqe_set_data64(sqe, UD_IGNORE);
                c->flags |= NC_CANCELING;
            }
        }
    } else if (!(c->flags & (NC_PAUSED | NC_CLOSING | NC_PEER_EOF | NC_ABORT))) {
        arm_recv(st, c);
    }
}

static void ur_quiesce(struct net_worker *w, struct net_conn *c)
{
    (void)w;
    /* A send in flight may still read borrowed bytes, which are released
     * right after this.  The retry of a pending socket send runs only in
     * this thread (task work, never io-wq, for sockets), and after
     * shutdown(2) it fails before copying anything: so shut down now,
     * synchronously. */
    if (c->flags & NC_SEND_BUSY)
        shutdown(c->fd, SHUT_RDWR);
}

static void ur_release(struct net_worker *w, struct net_conn *c)
{
    struct ur_state *st = w->bes;
    struct io_uring_sqe *sqe;
    int fd = c->fd;

    c->fd = -1;
    /* A pending receive holds the socket open past close(2); a shutdown
     * ends it (it completes with 0).  Hard-linked, so the close happens
     * even if the shutdown fails (ENOTCONN after a reset). */
    if ((c->flags & NC_RECV_ARMED) && !(c->flags & NC_SEND_BUSY)) {
        sqe = get_sqes(st, 2);
        if (!sqe)
            goto sync;
        io_uring_prep_shutdown(sqe, fd, SHUT_RDWR);
        io_uring_sqe_set_data64(sqe, UD_IGNORE);
        sqe->flags |= IOSQE_IO_HARDLINK | IOSQE_CQE_SKIP_SUCCESS;
    }
    sqe = get_sqe(st);
    if (!sqe)
        goto sync;
    io_uring_prep_close(sqe, fd);
    io_uring_sqe_set_data64(sqe, UD_IGNORE);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    return;
sync:
    shutdown(fd, SHUT_RDWR);
    close(fd);
}

static void ur_accept_on(struct net_worker *w)
{
    w->accepting = true;
    arm_accepts(w, w->bes);
}

static void ur_accept_off(struct net_worker *w)
{
    struct ur_state *st = w->bes;
    w->accepting = false;
    for (unsigned l = 0; l < w->s->nlisteners; l++) {
        if (!st->accept_armed[l])
            continue;
        struct io_uring_sqe *sqe = get_sqe(st);
        if (!sqe)
            continue;
        io_uring_prep_cancel64(sqe, UD_ACCEPT | ((uint64_t)l << 3), 0);
        io_uring_sqe_set_data64(sqe, UD_IGNORE);
    }
}

static bool busy(const struct net_worker *w, const struct ur_state *st)
{
    if (st->efd_armed || w->nzombies)
        return true;
    for (unsigned l = 0; l < w->s->nlisteners; l++)
        if (st->accept_armed[l])
            return true;
    return false;
}

static void ur_fini(struct net_worker *w)
{
    struct ur_state *st = w->bes;
    if (!st)
        return;
    if (st->ring_ok) {
        /* Cancel what is left and collect the completions, so that no
         * request outlives the memory it points at (the eventfd value,
         * zombie connections).  Bounded: one second at most. */
        struct io_uring_sqe *sqe = get_sqe(st);
        if (sqe) {
            io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
            io_uring_sqe_set_data64(sqe, UD_IGNORE);
        }
        uint64_t until = net_now_ms() + 1000;
        while (busy(w, st)) {
            if (net_now_ms() >= until) {
                atomic_fetch_add(&net_hard_stops, 1);
                break;
            }
            struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 50000000 };
            struct io_uring_cqe *cqe;
            (void)io_uring_submit_and_wait_timeout(&st->ring, &cqe, 1, &ts, NULL);
            reap(w, st);
        }
        io_uring_queue_exit(&st->ring);
    }
    if (st->br != MAP_FAILED)
        munmap(st->br, st->br_len);
    if (st->bufs != MAP_FAILED)
        munmap(st->bufs, st->bufs_len);
    free(st);
    w->bes = NULL;
}

const struct net_be net_be_uring = {
    .kind = NET_BACKEND_IO_URING,
    .init = ur_init,
    .wait = ur_wait,
    .service = ur_service,
    .quiesce = ur_quiesce,
    .release = ur_release,
    .accept_on = ur_accept_on,
    .accept_off = ur_accept_off,
    .fini = ur_fini,
};
