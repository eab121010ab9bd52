/* Internal contract between ringmail-bench's client logic
 * (ringmail_bench_conn.c: the IMAP state machines, parsing, TLS) and its two
 * I/O engines (ringmail_bench_epoll.c, ringmail_bench_uring.c).
 *
 * The logic never touches a socket except to create and close it; it asks
 * the engine to connect (bench_engine.connect), to send what is pending
 * (bench_engine.kick) and is told by the engine what happened:
 * bench_conn_connected, bench_conn_input (bytes received into the buffer
 * bench_conn_rxbuf handed out), bench_conn_eof, bench_conn_fail.  Any of
 * these may reset the client (disconnect, c->gen bumped): engines compare
 * c->gen before and after and drop what they were doing if it changed.
 *
 * TLS is done on memory BIOs for both engines: received ciphertext is
 * written into the SSL's read BIO, records it produces are moved into
 * c->wire, which the engine sends like plaintext. */
#ifndef RINGMAIL_BENCH_CONN_H
#define RINGMAIL_BENCH_CONN_H

#include "bench/ringmail_bench.h"

#include <openssl/ssl.h>

/* Bytes [off, len) of p are pending; p is owned by the client. */
struct bench_obuf {
    char *p;
    size_t len, off, cap;
};

enum { ST_WAIT, ST_CONNECTING, ST_HANDSHAKE, ST_GREETING, ST_READY, ST_BUSY, ST_IDLING,
       ST_DONE };

struct bench_client {
    int id, fd, user, role, state;
    SSL *ssl;                 /* --tls: owned, freed by the disconnect */
    BIO *rbio, *wbio;         /* borrowed from ssl */
    int authed, selected, in_conn_count;
    int copy_ready;           /* copy: the target mailbox exists */
    int store_flip;           /* store: the next STORE removes \Flagged */
    unsigned fresh;           /* sort-fresh, thread-fresh: queries sent */
    long exists, exists0, seen;
    long status_messages, to_append;
    int cmd, pending_op;
    uint32_t tag, gen;        /* gen: bumped by every disconnect */
    uint64_t t0, wake_at;
    struct bench_obuf out;    /* commands (plaintext); the wire without TLS */
    struct bench_obuf wire;   /* TLS records to send */
    struct bench_obuf tx;     /* io_uring: the buffer a SEND is reading */
    char *in;                 /* plaintext received, parsed in place */
    size_t inlen, incap;
    char *rx;                 /* TLS: ciphertext received (BENCH_RX_CAP) */
    size_t lit;
    int contline;
    int src;                  /* source address index (0: none bound) */
    int inflight;             /* io_uring: operations the kernel holds */
    unsigned armed;           /* io_uring: bit per operation kind in flight */
    uint64_t conn_t0;         /* when the socket of this connection was made */
    uint64_t rxbytes;         /* bytes received on this connection */
    struct bench_resync *rs;  /* resync: the writer's or device's state (owned) */
    struct bench_deliver *dl; /* deliver: an LMTP client's state (owned) */
};

struct bench_worker;

struct bench_engine {
    const char *name;
    /* Sets up the worker's epoll set / ring; 0 or -errno. */
    int (*init)(struct bench_worker *w);
    void (*fini)(struct bench_worker *w);
    /* 0 if the engine can take a new socket for c now (io_uring: nothing of
     * the previous connection is still in flight). */
    int (*can_connect)(struct bench_worker *w, struct bench_client *c);
    /* Starts connecting c->fd (non-blocking socket) to the server; on failure
     * calls bench_conn_fail. */
    void (*connect)(struct bench_worker *w, struct bench_client *c);
    /* bench_conn_wire(c) has bytes: send them (now or when possible). */
    void (*kick)(struct bench_worker *w, struct bench_client *c);
    /* c->fd is about to be closed. */
    void (*closing)(struct bench_worker *w, struct bench_client *c);
    /* Runs the worker's clients until bench_conn_stop_all(). */
    void (*loop)(struct bench_worker *w);
};

extern const struct bench_engine bench_engine_epoll, bench_engine_uring;

struct bench_worker {
    pthread_t th;
    const struct bench_engine *eng;
    void *eng_state;          /* owned by the engine */
    struct bench_client *cl;
    int ncl;
    uint64_t rng, last_tick, next_due;
    int opening;              /* clients connecting, up to the greeting */
    struct bench_stats *st;
    char *msgbuf;
};

#define BENCH_RX_CAP 16384

uint64_t bench_now_ns(void);
const struct bench_config *bench_conn_config(void);
int bench_conn_stop_all(void);
/* Wakes the clients whose back-off or wait is over (at most every ms). */
void bench_conn_tick(struct bench_worker *w);
void bench_conn_connected(struct bench_worker *w, struct bench_client *c);
/* Where the engine receives raw bytes for c, at least 4096 bytes. */
char *bench_conn_rxbuf(struct bench_client *c, size_t *cap);
/* n > 0 bytes arrived in the buffer of bench_conn_rxbuf. */
void bench_conn_input(struct bench_worker *w, struct bench_client *c, size_t n);
void bench_conn_eof(struct bench_worker *w, struct bench_client *c);
void bench_conn_fail(struct bench_worker *w, struct bench_client *c);
struct bench_obuf *bench_conn_wire(struct bench_client *c);
void bench_conn_step(struct bench_worker *w, struct bench_client *c);

/* Closes c's connection (no error counted); c waits in ST_WAIT for
 * backoff_ns, then goes on (bench_conn_step). */
void bench_conn_close(struct bench_worker *w, struct bench_client *c, uint64_t backoff_ns);
/* The command buffer (plaintext; sent by flush after the command). */
__attribute__((format(printf, 2, 3)))
void bench_out_printf(struct bench_client *c, const char *fmt, ...);
void bench_out_bytes(struct bench_client *c, const char *p, size_t n);

/* ---- the resync workload (ringmail_bench_resync.c) ----
 * Every user has one writer (client index 0 of its group) and D devices;
 * the clients of one user run on one worker thread, so the per-user state
 * needs no locking.  Processes: one (--procs is ignored). */
/* Sets up c as client k (0: the writer) of user u.  0 or -ENOMEM. */
int bench_resync_attach(struct bench_client *c, int u, int k);
void bench_resync_detach(struct bench_client *c);
/* 0: c (no socket) must wait for the next round; 1: it may connect. */
int bench_resync_may_connect(struct bench_client *c);
/* The next command of c, or -1 to wait (c->wake_at is set). */
int bench_resync_next(struct bench_worker *w, struct bench_client *c);
/* Writes the text of cmd for c (tag written already). */
void bench_resync_format(struct bench_worker *w, struct bench_client *c, int cmd);
/* An untagged response line (without CRLF). */
void bench_resync_untagged(struct bench_client *c, const char *line, size_t len);
/* The tagged response of c's command ("OK ..." from resp on); returns 1 if c
 * was disconnected (done with its resync), 0 if the client goes on. */
int bench_resync_tagged(struct bench_worker *w, struct bench_client *c, int cmd, int ok,
                        const char *resp, size_t len);

/* ---- the deliver workload (ringmail_bench_deliver.c) ----
 * LMTP clients (c->dl set) connect to cfg->lmtp_addr; IDLE watchers are
 * ordinary sessions (one process). */
/* The address c connects to (the LMTP server for LMTP clients). */
const struct sockaddr *bench_conn_addr(const struct bench_client *c, socklen_t *len);
/* The greeting was good: counts the connection, c becomes ST_READY. */
void bench_conn_greeted(struct bench_worker *w, struct bench_client *c);
/* Hands what bench_out_* queued to the engine. */
void bench_conn_flush(struct bench_worker *w, struct bench_client *c);
/* 1 once every IDLE watcher idles (or half the run has passed). */
int bench_conn_watchers_ready(void);

int bench_deliver_init(int nusers);
void bench_deliver_fini(void);
int bench_deliver_attach(struct bench_client *c, int k);
void bench_deliver_detach(struct bench_client *c);
/* The connection of c is gone (whatever was in flight is lost). */
void bench_deliver_reset(struct bench_client *c);
/* Sends c's next command, or returns -1 (c->wake_at set) to wait. */
int bench_deliver_next(struct bench_worker *w, struct bench_client *c);
/* A reply line of c's LMTP server (without CRLF). */
void bench_deliver_line(struct bench_worker *w, struct bench_client *c, const char *line,
                        size_t len);
/* A watcher of user u sees that n messages arrived since its SELECT. */
void bench_deliver_exists(int u, long n);
/* Transactions in flight plus copies answered 250 and not yet seen. */
long bench_deliver_outstanding(void);
/* Fills the EXISTS figures of s (after the run). */
void bench_deliver_collect(struct bench_deliver_stats *s, uint64_t stop_ns);

#endif
