/* net/internal.h — what the files of net/ share: the server, worker and
 * connection structures, the output queue, the timer heap, the connection
 * table and the backend interface.  Only net/ and its unit tests use it.
 *
 * Threads: everything reachable from a net_worker belongs to that worker's
 * thread, except the message queue (qlock) and the eventfd, which other
 * threads use to hand it work (net_wake, net_post, net_server_stop).
 */
#ifndef RINGMAIL_NET_INTERNAL_H
#define RINGMAIL_NET_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "net/net.h"
#include "store/assert.h"

#define NET_MAX_LISTENERS 8
/* iovecs per sendmsg: enough to cover a response made of a few copied
 * blocks and borrowed message bodies in one system call. */
#define NET_IOV_MAX 32
/* Copied output goes into blocks of this size (or of the one write, if it
 * is larger); the first block of an empty queue is small because most
 * responses are. */
#define NET_BLOCK_FIRST 4096
#define NET_BLOCK 16384
/* A connection closed with output still queued gets this long to flush. */
#define NET_CLOSE_FLUSH_MS 10000
/* After EMFILE/ENFILE/ENOMEM from accept, try again this much later
 * rather than spinning on a listener we cannot serve. */
#define NET_ACCEPT_RETRY_MS 100

/* Connection flags. */
enum {
    NC_OPEN        = 1u << 0,  /* on_open accepted it: on_close is owed */
    NC_QUEUED      = 1u << 1,  /* on the worker's attention list */
    NC_PAUSED      = 1u << 2,  /* net_conn_pause(true) */
    NC_CLOSING     = 1u << 3,  /* close requested: flush, then finalize */
    NC_ABORT       = 1u << 4,  /* finalize now, drop output (error, timeout) */
    NC_DEAD        = 1u << 5,  /* finalized: only waits for in-flight ops */
    NC_WAKE        = 1u << 6,  /* on_wake owed (coalesces net_wake) */
    NC_PEER_EOF    = 1u << 7,  /* the peer closed its side */
    NC_HIGH        = 1u << 8,  /* output went above high_water: on_drain owed */
    NC_RECV_ARMED  = 1u << 9,  /* io_uring: multishot recv in flight */
    NC_SEND_BUSY   = 1u << 10, /* io_uring: a send in flight */
    NC_CANCELING   = 1u << 11, /* io_uring: recv cancel submitted */
    NC_READABLE    = 1u << 12, /* epoll: the socket may have bytes */
    NC_WRITABLE    = 1u << 13, /* epoll: the socket may take bytes */
    NC_LATER       = 1u << 14, /* epoll: on the read-again-next-round list */
    NC_RDHUP       = 1u << 15, /* epoll: the peer's FIN was seen */
    NC_YIELD       = 1u << 16, /* net_conn_yield: on the worker's yield list */
    NC_RESUME      = 1u << 17, /* on_resume owed (this round) */
};

/* One piece of queued output.  A copied chunk owns data[] (cap bytes); a
 * borrowed one points at the caller's bytes and calls release once. */
struct net_chunk {
    struct net_chunk *next;
    const uint8_t *p;               /* first byte not yet written */
    size_t len;                     /* bytes not yet written */
    void (*release)(void *arg);     /* borrowed chunk; NULL if copied */
    void *arg;
    size_t cap;                     /* copied chunk: size of data[] */
    uint8_t data[];
};

/* A connection's output, allocated only while something is queued (or a
 * send is in flight), so an idle connection pays one pointer for it.  The
 * msghdr/iovecs live here because io_uring may read them after submit. */
struct net_out {
    struct net_chunk *head, *tail;
    size_t pending;                 /* bytes queued, not yet written */
    struct msghdr msg;
    struct iovec iov[NET_IOV_MAX];
};

/* Bytes received while paused (io_uring only: the recv is cancelled
 * lazily, so what was already in flight must be kept somewhere). */
struct net_stash {
    size_t len, cap;
    uint8_t data[];
};

struct net_worker;

/* Kept small on purpose: this, the table slot and the kernel socket are
 * all an idle connection costs. */
struct net_conn {
    struct net_worker *w;
    void *user;
    uint64_t seq;
    struct net_out *out;            /* NULL when nothing is queued */
    struct net_conn *hnext;         /* table chain */
    struct net_conn *anext;         /* attention list */
    uint64_t deadline;              /* timer, worker clock (ms) */
    struct net_stash *stash;        /* paused: received bytes, decrypted
                                       but still compressed */
    struct net_tlsc *tls;           /* TLS state (tls.c); NULL: cleartext */
    struct net_zc *z;               /* DEFLATE (compress.c); NULL: none */
    char *peer;                     /* formatted lazily */
    uint32_t flags;
    int fd;
    uint32_t tidx;                  /* timer heap position + 1; 0 = none */
    uint8_t refs;                   /* io_uring ops in flight */
    uint8_t family;                 /* AF_INET / AF_INET6 / AF_UNIX */
    uint8_t listener;               /* index into the server's lst[] */
    uint16_t port;                  /* peer port, host order */
    uint8_t addr[16];               /* peer address (4 or 16 bytes) */
};

/* Work handed to a worker from another thread. */
struct net_msg {
    void (*fn)(void *arg);          /* NULL: a wake for `seq` */
    void *arg;
    uint64_t seq;
};

struct net_conntab {
    struct net_conn **b;
    size_t mask;                    /* buckets - 1 (power of two) */
    size_t n;
};

struct net_heap {
    struct net_conn **a;
    size_t n, cap;
};

/* The backend: how a worker waits for and performs I/O.  The loop, the
 * callbacks and all bookkeeping are shared (worker.c, conn.c). */
struct net_be {
    net_backend kind;
    /* Set up in the worker thread; 0 or -errno. */
    int (*init)(struct net_worker *w);
    /* Wait up to timeout_ms (-1: no limit) and dispatch what happened. */
    void (*wait)(struct net_worker *w, int timeout_ms);
    /* Do the I/O a connection needs now (send, (re)arm receive, read). */
    void (*service)(struct net_worker *w, struct net_conn *c);
    /* The connection is finalizing: stop I/O that may touch its buffers
     * (called before borrowed chunks are released). */
    void (*quiesce)(struct net_worker *w, struct net_conn *c);
    /* After on_close: close the socket; free c now or once in-flight
     * operations complete (net_conn_free). */
    void (*release)(struct net_worker *w, struct net_conn *c);
    /* Start / stop accepting (also used for the EMFILE retry). */
    void (*accept_on)(struct net_worker *w);
    void (*accept_off)(struct net_worker *w);
    /* Tear down in the worker thread (connections are gone). */
    void (*fini)(struct net_worker *w);
};

extern const struct net_be net_be_uring;
/* Provided receive buffers per io_uring worker (a power of two); tests
 * shrink it to make ENOBUFS happen. */
extern unsigned net_uring_bufs;
extern const struct net_be net_be_epoll;

enum net_wstate { NW_RUNNING, NW_DRAINING, NW_EXIT };

struct net_worker {
    struct net_server *s;
    unsigned idx;
    pthread_t thread;
    bool thread_started;
    int efd;                        /* eventfd: wakes, posts, stop */
    net_backend want;               /* requested backend for this worker */
    const struct net_be *be;
    void *bes;                      /* backend state */
    int init_err;                   /* reported to net_server_start */
    bool init_done;

    /* Cross-thread queue (MPSC).  Producers append under qlock and write
     * the eventfd only when the queue was empty: one wakeup per batch. */
    pthread_mutex_t qlock;
    struct net_msg *q;
    size_t qn, qcap;
    bool qclosed;                   /* the worker has exited: refuse posts */
    struct net_msg *q2;             /* the worker's swap buffer */
    size_t q2cap;
    bool signaled;                  /* the eventfd fired: drain the queue */

    struct net_conntab tab;
    struct net_heap heap;
    uint64_t next_seq;
    size_t nconns;                  /* in the table */
    struct net_conn *att_head, *att_tail;
    /* Finalized connections whose io_uring operations are still in flight;
     * a zombie's tidx is its position here + 1 (it has left the heap). */
    struct net_conn **zombies;
    size_t nzombies, zcap;
    bool more;                      /* work left for the next round (epoll
                                       readers holding more bytes) */
    /* Connections that yielded (net_conn_yield), by sequence number so a
     * closed one is simply not found: resumed after the next wait. */
    uint64_t *yield;
    size_t nyield, yieldcap;

    uint64_t now;                   /* ms, CLOCK_MONOTONIC, per round */
    enum net_wstate state;
    uint64_t drain_deadline;
    uint64_t accept_retry_at;       /* 0: none */
    net_stats *stats;               /* net_server_set_stats; NULL: none */
    bool accepting;
};

struct net_listener {
    int family;
    int port;
    int tag;                        /* the owner's: net_conn_tag() */
    net_tls *tls;                   /* implicit TLS; NULL: cleartext */
    int *fds;                       /* one per worker, -1 once closed */
};

struct net_server {
    net_config cfg;
    net_conn_ops ops;
    unsigned nworkers;
    struct net_worker *w;           /* nworkers of them */
    struct net_listener lst[NET_MAX_LISTENERS];
    unsigned nlisteners;
    /* Listening sockets handed down by an earlier process of the same
     * configuration (net_server_inherit): net_server_listen takes them in
     * order instead of binding; what is left is closed at free. */
    int *inh;
    size_t ninh, inh_pos;
    net_backend backend;            /* what worker 0 runs */
    atomic_int stopping;
    bool started, joined;
    pthread_mutex_t lock;           /* start-up handshake */
    pthread_cond_t cond;
};

/* Add n to a counter only this worker writes (net_stats). */
static inline void net_stat_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* worker.c */
uint64_t net_now_ms(void);
/* Times a worker gave up waiting for in-flight operations at exit (the
 * kernel never completed them): a bug if it is not 0, which tests check. */
extern atomic_uint net_hard_stops;
void *net_worker_main(void *arg);
void net_worker_attend(struct net_worker *w, struct net_conn *c);
/* The worker whose thread this is (NULL on any other thread): a connection
 * is touched by its own worker only, which the public calls assert. */
extern __thread struct net_worker *net_worker_self;

/* conn.c */
struct net_conn *net_conn_accepted(struct net_worker *w, int fd,
                                   const struct sockaddr *sa, unsigned l);
/* Received bytes from the socket (ciphertext on a TLS connection). */
void net_conn_deliver(struct net_conn *c, const uint8_t *p, size_t n);
/* Decrypted bytes: to the owner (inflated if compressed), or to the stash
 * while paused. */
void net_conn_deliver_plain(struct net_conn *c, const uint8_t *p, size_t n);
/* Output bytes not yet on the wire: ciphertext/cleartext queue plus TLS
 * plaintext waiting for encryption plus bytes waiting for deflate. */
size_t net_conn_outbytes(const struct net_conn *c);
void net_conn_sent(struct net_conn *c, size_t n);
void net_conn_abort(struct net_conn *c);
void net_conn_begin_close(struct net_conn *c);
void net_conn_finalize(struct net_conn *c);
void net_conn_service(struct net_conn *c);
void net_conn_put(struct net_conn *c);
void net_conn_reap(struct net_conn *c);
void net_conn_on_timer(struct net_conn *c);
int net_stash_add(struct net_conn *c, const uint8_t *p, size_t n);

/* outq.c.  The net_outq_* forms work on any queue (the TLS plaintext
 * queue too); the net_out_* ones on the connection's wire queue. */
int net_outq_copy(struct net_out **op, const void *p, size_t n);
int net_outq_ref(struct net_out **op, const void *p, size_t n,
                 void (*release)(void *), void *arg);
void net_outq_advance(struct net_out *o, size_t n);
void net_outq_release_all(struct net_out *o);
int net_out_copy(struct net_conn *c, const void *p, size_t n);
int net_out_ref(struct net_conn *c, const void *p, size_t n,
                void (*release)(void *), void *arg);
int net_out_iov(struct net_out *o, struct iovec *iov, int max);
void net_out_advance(struct net_conn *c, size_t n);
void net_out_release_all(struct net_conn *c);

/* tls.c: TLS as a filter between the socket and the owner. */
int net_tls_conn_start(struct net_conn *c, net_tls *tls);
void net_tls_input(struct net_conn *c, const uint8_t *p, size_t n);
int net_tls_send(struct net_conn *c, const void *p, size_t n,
                 void (*release)(void *), void *arg, bool copy);
/* Before the backend's service: encrypt queued plaintext, close_notify. */
void net_tls_service(struct net_conn *c);
/* Plaintext still to be encrypted (0 once the handshake failed). */
size_t net_tls_pending(const struct net_conn *c);
/* More plaintext could be encrypted now if the wire queue were polled
 * again (epoll writes synchronously and may drain it in one go). */
bool net_tls_more(const struct net_conn *c);
void net_tls_release_plain(struct net_conn *c);
void net_tls_conn_free(struct net_conn *c);

/* compress.c: DEFLATE as a filter between the owner and TLS/the socket. */
/* Inflate received (decrypted) bytes and hand them to on_data. */
void net_z_input(struct net_conn *c, const uint8_t *p, size_t n);
/* Inflate has output left without more input (stopped by a pause). */
bool net_z_input_more(const struct net_conn *c);
int net_z_send(struct net_conn *c, const void *p, size_t n,
               void (*release)(void *), void *arg, bool copy);
/* Before TLS's service: deflate queued bytes, flush at the end of a batch. */
void net_z_service(struct net_conn *c);
/* Owner's bytes still to be deflated. */
size_t net_z_pending(const struct net_conn *c);
/* More could be deflated now if the service ran again. */
bool net_z_more(const struct net_conn *c);
void net_z_release_plain(struct net_conn *c);
void net_z_conn_free(struct net_conn *c);

/* timer.c */
int net_heap_set(struct net_heap *h, struct net_conn *c, uint64_t deadline);
void net_heap_del(struct net_heap *h, struct net_conn *c);
static inline struct net_conn *net_heap_top(const struct net_heap *h)
{
    return h->n ? h->a[0] : NULL;
}
void net_heap_free(struct net_heap *h);

/* conntab.c */
int net_tab_put(struct net_conntab *t, struct net_conn *c);
struct net_conn *net_tab_get(const struct net_conntab *t, uint64_t seq);
void net_tab_del(struct net_conntab *t, struct net_conn *c);
void net_tab_free(struct net_conntab *t);

/* addr.c */
int net_addr_parse(const char *hostport, struct sockaddr_storage *ss,
                   socklen_t *len);
void net_addr_store(struct net_conn *c, const struct sockaddr *sa);

#endif
