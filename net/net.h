/* net/net.h — Ringmail's thread-per-core network runtime.
 *
 * One worker thread per core, each with its own event loop (io_uring, or
 * epoll where io_uring cannot be set up), its own SO_REUSEPORT listening
 * sockets, its connections and its timers.  A connection lives on one
 * worker for its whole life, so the callbacks of one connection never run
 * concurrently and need no locks.  net knows nothing about IMAP.
 *
 * Ownership: received bytes passed to on_data are valid only during the
 * call (they sit in a shared receive buffer: an idle connection holds no
 * receive memory).  Bytes given to net_conn_send are copied; bytes given to
 * net_conn_send_ref are borrowed until their release callback runs (used to
 * send message bodies straight from the store's mapping).
 *
 * Threads: every net_conn_* function must be called on the connection's
 * worker (from a callback).  net_wake and net_server_stop may be called
 * from any thread.
 */
#ifndef RINGMAIL_NET_NET_H
#define RINGMAIL_NET_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct net_server net_server;
typedef struct net_conn net_conn;

/* A stable name of a connection usable from other threads: the worker
 * index and a per-worker sequence number that is never reused. */
typedef struct net_conn_id {
    uint32_t worker;
    uint64_t seq;
} net_conn_id;

typedef struct net_conn_ops {
    /* A new connection was accepted.  Return a per-connection pointer
     * (passed to every later callback), or NULL to refuse (it is closed). */
    void *(*on_open)(net_conn *c);
    /* Bytes arrived.  Called again with more data later; the callee keeps
     * what it needs (e.g. a partial command). */
    void (*on_data)(net_conn *c, void *user, const uint8_t *p, size_t n);
    /* The output queue drained below net_config.low_water after having
     * been above high_water (backpressure: stop producing until then). */
    void (*on_drain)(net_conn *c, void *user);
    /* The connection's timer (net_conn_timer) fired. */
    void (*on_timer)(net_conn *c, void *user);
    /* Someone called net_wake for this connection. */
    void (*on_wake)(net_conn *c, void *user);
    /* net_conn_yield asked for it: the loop has gone round once since,
     * serving the I/O and timers of the worker's other connections. */
    void (*on_resume)(net_conn *c, void *user);
    /* The connection is gone (peer closed, error, or net_conn_close
     * finished).  Free `user` here.  No callback follows. */
    void (*on_close)(net_conn *c, void *user);
    /* Graceful shutdown (net_server_stop): say goodbye (e.g. "* BYE") and
     * call net_conn_close.  Connections that do not close within
     * net_config.shutdown_ms are closed anyway. */
    void (*on_shutdown)(net_conn *c, void *user);
} net_conn_ops;

typedef enum net_backend {
    NET_BACKEND_AUTO = 0,   /* io_uring if it can be set up, else epoll */
    NET_BACKEND_IO_URING,
    NET_BACKEND_EPOLL,
} net_backend;

typedef struct net_config {
    unsigned workers;           /* 0 = online CPUs */
    net_backend backend;
    size_t high_water;          /* output bytes queued before on_drain is armed
                                   (default 256 KiB) */
    size_t low_water;           /* default 64 KiB */
    unsigned shutdown_ms;       /* default 10000 */
} net_config;

/* Parse "auto" | "io_uring" | "epoll".  Returns 0 or -EINVAL. */
int net_backend_parse(const char *s, net_backend *out);
const char *net_backend_name(net_backend b);

int net_server_new(const net_config *cfg, const net_conn_ops *ops,
                   net_server **out);
/* Listen on "host:port" ("[::1]:143", "127.0.0.1:0").  Each worker gets its
 * own SO_REUSEPORT socket.  Port 0 picks a free port (the same for every
 * worker); net_server_port() tells it.  Call before net_server_start. */
int net_server_listen(net_server *s, const char *hostport);
int net_server_port(const net_server *s, unsigned listener);
/* Listening sockets that outlive a server process: net_server_listen_fds
 * lists the TCP listeners' sockets (workers of each, in the order the
 * listeners were added) so that a supervisor can keep duplicates; a later
 * process of the same configuration passes them to net_server_inherit
 * before it listens, and net_server_listen then takes them in order
 * instead of binding new ones.  Connections waiting in their queues when a
 * process dies are so accepted by its successor instead of being reset.
 * A socket that does not match the address asked for (another
 * configuration) is closed and a new one bound.  inherit takes ownership
 * of the fds (and closes them on error); listen_fds fills at most max and
 * returns how many there are. */
int net_server_inherit(net_server *s, const int *fds, size_t n);
size_t net_server_listen_fds(const net_server *s, int *out, size_t max);
/* Listen on a Unix stream socket at `path` with permission bits `mode`
 * (e.g. 0660; set before the socket accepts).  A stale socket at the path
 * is replaced; any other file there is -EEXIST.  Its port is 0. */
int net_server_listen_unix(net_server *s, const char *path, unsigned mode);
/* Give the listener added last a tag (0 by default), which its connections
 * report (net_conn_tag): one server, several protocols.  Before start. */
int net_server_tag(net_server *s, int tag);
/* Start the workers (threads).  Returns once they are running. */
int net_server_start(net_server *s);
/* How many workers (threads) the server has: net_conn_worker's bound. */
unsigned net_server_workers(const net_server *s);
/* Which backend the workers use (after start). */
net_backend net_server_backend(const net_server *s);
/* Ask for a graceful stop; async-signal-safe.  on_shutdown is called for
 * every connection, listeners close last. */
void net_server_stop(net_server *s);
/* Wait for the workers to finish after a stop. */
void net_server_wait(net_server *s);
void net_server_free(net_server *s);

/* Queue bytes (copied). */
void net_conn_send(net_conn *c, const void *p, size_t n);
/* Queue borrowed bytes; release(arg) runs once they are sent or the
 * connection is gone. */
void net_conn_send_ref(net_conn *c, const void *p, size_t n,
                       void (*release)(void *arg), void *arg);
/* Bytes queued and not yet written to the socket. */
size_t net_conn_pending(const net_conn *c);
/* Stop / resume delivering on_data (while a command waits for the disk or
 * the client is being slow to read). */
void net_conn_pause(net_conn *c, bool pause);
/* Give the worker back to the others and be called again (on_resume)
 * after one round of the loop: long work is done in slices this way, so no
 * other connection on the worker waits for it.  Several calls before the
 * round are one; nothing follows once the connection is closing. */
void net_conn_yield(net_conn *c);
/* Flush what is queued, then close.  on_close follows. */
void net_conn_close(net_conn *c);
/* Arm the connection's one timer (ms from now); 0 cancels. */
void net_conn_timer(net_conn *c, uint32_t ms);
net_conn_id net_conn_get_id(const net_conn *c);
/* "ip:port" of the peer ("unix" on a Unix socket). */
const char *net_conn_peer(const net_conn *c);
/* Loopback, or a Unix socket (a peer on this machine either way). */
bool net_conn_is_loopback(const net_conn *c);
/* Acknowledge what was received now rather than after the delayed-ACK
 * timer (TCP_QUICKACK, which also sends an ACK that is due; the kernel
 * falls back to delaying later, so call it after each receive).  For a
 * peer that holds small writes until its last one is acknowledged
 * (Nagle's algorithm, as nginx's mail proxy has it): without this, a
 * command sent in two writes waits ~40 ms.  Nothing on a Unix socket. */
void net_conn_quickack(net_conn *c);
/* The tag of the listener that accepted the connection (net_server_tag). */
int net_conn_tag(const net_conn *c);
/* The worker index, 0 <= i < workers. */
unsigned net_conn_worker(const net_conn *c);

/* ---- TLS (BoringSSL, through memory BIOs: the loop moves ciphertext) ---- */

typedef struct net_tls net_tls;     /* a server TLS context; thread-safe */

/* TLS 1.2 and 1.3 only, modern AEAD suites, ALPN "imap".  cert/key are PEM
 * files (the cert file may hold a chain).  sni[i] = "domain=certfile:keyfile"
 * adds a pair chosen when the client's SNI matches domain (exactly, or
 * "*.example.com" style).  On error, err gets one line. */
int net_tls_new(const char *cert, const char *key, const char *const *sni,
                size_t nsni, net_tls **out, char *err, size_t errlen);
/* Re-read every file (SIGHUP).  New handshakes use the new certificates;
 * established sessions are untouched.  On error the old ones stay. */
int net_tls_reload(net_tls *t, char *err, size_t errlen);
void net_tls_free(net_tls *t);   /* after the server that uses it is freed */

/* An implicit-TLS listener (port 993).  Call before net_server_start. */
int net_server_listen_tls(net_server *s, const char *hostport, net_tls *tls);

/* STARTTLS: once the output queued so far has been sent in the clear, run
 * a server handshake on the connection.  Bytes the client sent after the
 * command that are already received are discarded (so pipelined plaintext
 * cannot be injected into the TLS session: CVE-2011-0411); the caller must
 * also drop what is left of the buffer passed to its current on_data.
 * -EALREADY if TLS is already on.
 *
 * Use from on_data: queue the tagged OK (net_conn_send) first, then call
 * net_conn_starttls, then return from on_data without looking at the rest
 * of the buffer (and forget any partial command kept from earlier).  Output
 * queued after the call is encrypted once the handshake is done; on_data
 * then sees decrypted bytes only.  A failed handshake closes the
 * connection (on_close as usual).  While the handshake runs (here and on an
 * implicit-TLS listener, where on_open already runs before it) the
 * connection's timer is the owner's: arm the login timeout in on_open. */
int net_conn_starttls(net_conn *c, net_tls *tls);
bool net_conn_is_tls(const net_conn *c);
/* Channel binding for SCRAM-*-PLUS (RFC 5929 / RFC 9266): type
 * "tls-exporter" (TLS 1.3 exporter, 32 bytes) or "tls-server-end-point"
 * (hash of the server certificate).  *len in: size of out, out: bytes.
 * -ENOTCONN without TLS, -EINVAL for an unknown type. */
int net_conn_tls_binding(const net_conn *c, const char *type, uint8_t *out,
                         size_t *len);
/* Also: -ENOTCONN while the handshake is still running, -ENOTSUP for
 * "tls-exporter" on TLS 1.2 (RFC 9266), -ENOSPC if *len is too small
 * (32 bytes for the exporter; up to 64 for the end-point hash, which is
 * SHA-256 unless the certificate's signature hash is stronger). */

/* ---- COMPRESS=DEFLATE (RFC 4978): raw DEFLATE both ways, zlib ---- */

/* Turn compression on: output queued from now on is deflated (then
 * encrypted, under TLS), and input is inflated (after decryption).  Use
 * from on_data like net_conn_starttls: queue the last uncompressed bytes
 * (the tagged OK) first, then call this, and hand over in rest/n the part
 * of the current buffer after the command (it is compressed already; it
 * is copied, and delivered inflated before anything received later); then
 * return without looking at it.  Each batch of output ends with a
 * Z_SYNC_FLUSH, so the peer can always decode everything sent.  Inflated
 * input reaches on_data in pieces of at most 16 KiB, and inflating stops
 * while the connection is paused.  A peer that sends something that is not
 * deflate data is disconnected.  -EALREADY if compression is already on. */
int net_conn_compress(net_conn *c, const void *rest, size_t n);
bool net_conn_is_compressed(const net_conn *c);

/* ---- counters for whoever watches the process ----
 * Bytes as they cross the socket (ciphertext under TLS, compressed under
 * COMPRESS) and connections accepted, counted by worker w into the
 * caller's st (net_server_set_stats, before start; st outlives the
 * workers).  Only worker w writes it, with relaxed atomic loads and stores
 * (no locked instruction); any thread may read it. */
typedef struct net_stats {
    _Atomic uint64_t bytes_in, bytes_out, accepted;
} net_stats;
int net_server_set_stats(net_server *s, unsigned w, net_stats *st);

/* From any thread: have on_wake run for the connection on its worker, if
 * it still exists.  Wakes for the same connection may be coalesced. */
void net_wake(net_server *s, net_conn_id id);
/* From any thread: run fn(arg) on worker w's thread. */
int net_post(net_server *s, unsigned w, void (*fn)(void *arg), void *arg);

#endif
