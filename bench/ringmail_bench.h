/* ringmail-bench: an IMAP load generator (a client; it speaks IMAP to any
 * server, Ringmail or Dovecot).  First version: one thread per core, each
 * with an epoll set and non-blocking sockets; every client is a small state
 * machine that issues one command at a time and parses the responses as a
 * stream (literals are skipped, never stored).  Two I/O engines run the same
 * client logic: io_uring (default) and epoll (--io epoll).  --tls: BoringSSL
 * on memory BIOs; the server's certificate is not verified.
 *
 * idle-hold: the sessions go to users 1..min(nusers, clients) round robin;
 * one extra appender connection per such user takes turns so that one
 * message a second is appended (to each user in turn), starting once every
 * session idles; "fanout" is the time from sending that APPEND until the
 * last IDLE session of that user has seen its "* n EXISTS".
 *
 *   ringmail_bench.c       command line, phases, report (table / JSON)
 * --procs N: N processes, each with its own threads, share one report
 * through a MAP_SHARED mapping (so that more than one process's descriptor
 * limit of sockets can be held); idle-hold's appenders are all in the first
 * process, and every session stamps when it saw an append, fanout being the
 * latest stamp minus the APPEND's send time (CLOCK_MONOTONIC).
 *
 *   ringmail_bench_conn.c  the client logic (state machines, IMAP parsing, TLS),
 *                          threads and phases (ringmail_bench_conn.h)
 *   ringmail_bench_epoll.c the epoll engine (non-blocking sockets, edge-triggered)
 *   ringmail_bench_uring.c the io_uring engine (CONNECT, RECV, SEND operations)
 *   ringmail_bench_hist.c  fixed-memory log-linear latency histogram
 */
#ifndef RINGMAIL_BENCH_H
#define RINGMAIL_BENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

/* Log-linear histogram of nanosecond values: exact below 128, then 64 linear
 * sub-buckets per power of two (relative error < 1.6%).  Fixed memory. */
#define BENCH_HIST_BUCKETS (128 + 57 * 64)
typedef struct {
    uint64_t count, max;
    uint64_t b[BENCH_HIST_BUCKETS];
} bench_hist;

void bench_hist_add(bench_hist *h, uint64_t ns);
void bench_hist_merge(bench_hist *dst, const bench_hist *src);
/* The value at quantile q (0..1], never above the recorded maximum. */
uint64_t bench_hist_quantile(const bench_hist *h, double q);

enum bench_cmd {
    BC_CONNECT, BC_LOGIN, BC_SELECT, BC_LIST, BC_STATUS, BC_FETCH_HDR, BC_FETCH_BODY,
    BC_STORE, BC_APPEND, BC_EXPUNGE, BC_LOGOUT, BC_IDLE, BC_NOOP, BC_SEARCH, BC_COPY,
    BC_CREATE, BC_STORE_ALL,
    /* resync */
    BC_CAPABILITY, BC_ENABLE, BC_UID_FETCH, BC_UID_SEARCH, BC_UID_STORE, BC_UID_EXPUNGE,
    /* deliver (LMTP): the greeting and LHLO; one whole transaction */
    BC_LHLO, BC_DELIVER,
    /* sort, thread */
    BC_SORT, BC_THREAD,
    BC_NCMD
};
extern const char *const bench_cmd_name[BC_NCMD];

enum bench_workload { BW_LOGIN, BW_HEADERS, BW_BODIES, BW_APPEND, BW_IDLE, BW_MIXED,
                      BW_SEARCH, BW_COPY, BW_STORE, BW_RESYNC, BW_DELIVER, BW_SORT, BW_THREAD,
                      BW_SORT_FRESH, BW_THREAD_FRESH, BW_POPULATE };

/* resync: how a device brings its copy of the INBOX up to date. */
enum bench_resync_mode { RESYNC_AUTO, RESYNC_QRESYNC, RESYNC_CONDSTORE, RESYNC_FULL,
                         RESYNC_NMODES };
extern const char *const bench_resync_mode_name[RESYNC_NMODES];

/* Operations of the mixed workload (--weights NAME=W,...). */
enum bench_op {
    OP_LOGIN, OP_SELECT, OP_LIST, OP_STATUS, OP_HEADERS, OP_BODY, OP_STORE, OP_APPEND,
    OP_EXPUNGE, OP_LOGOUT, OP_N
};
extern const char *const bench_op_name[OP_N];

enum bench_io { BENCH_IO_URING, BENCH_IO_EPOLL };

struct bench_config {
    const char *host;
    int port;
    int tls;
    const char *users;          /* pattern, "%d" replaced by 1..nusers */
    int nusers;
    const char *password;
    int clients;
    double duration;
    enum bench_workload workload;
    const char *workload_name;
    int json;
    unsigned weights[OP_N];
    long populate;
    int threads;
    enum bench_io io;           /* --io: the engine (uring falls back to epoll) */
    int procs;                  /* processes (resolved by main: >= 1) */
    int source_addrs;           /* > 0: bind clients to 127.0.0.1..N in turn */
    int bystanders;             /* --bystander N: NOOP sessions beside the workload */
    int devices;                /* resync: --devices, per user */
    int changes;                /* resync: --changes, messages changed per round */
    enum bench_resync_mode resync_mode;   /* resync: --resync-mode (auto by default) */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    /* deliver: the LMTP server (--lmtp /path or host:port) */
    const char *lmtp;
    struct sockaddr_storage lmtp_addr;
    socklen_t lmtp_addrlen;
    const char *rcpt_domain;    /* --rcpt-domain: RCPT TO:<user@domain> */
    int watchers;               /* --watchers: IDLE sessions per user */
    int max_rcpts;              /* --max-rcpts: 1..N recipients a message */
    uint64_t seed;              /* --seed: the messages and recipients */
};

/* deliver: what the LMTP clients and the IDLE watchers measured. */
struct bench_deliver_stats {
    bench_hist lat;                     /* MAIL written .. last 250 after the data */
    bench_hist exists_lat;              /* that last 250 .. the watcher's EXISTS */
    bench_hist start_exists_lat;        /* MAIL written .. the watcher's EXISTS */
    uint64_t deliveries, rcpts, bytes;  /* completed transactions (every reply right) */
    uint64_t bad_replies;               /* replies not the expected code */
    uint64_t exists_expected, exists_seen, exists_early;  /* early: EXISTS before 250 */
    double elapsed_s;                   /* from the first transaction to the stop */
};

/* resync: what the devices measured.  A resync runs from the device's
 * connect to its state being checked against the writer's; the first sync
 * of each device (it holds nothing yet) is counted apart. */
struct bench_resync_stats {
    bench_hist lat;
    uint64_t resyncs, bytes;            /* bytes received by those resyncs */
    uint64_t initial, initial_bytes;    /* first syncs */
    uint64_t by_mode[RESYNC_NMODES];    /* resyncs done in each mode */
    uint64_t mismatches;                /* messages whose state differed from the truth */
    uint64_t changes, rounds;           /* the writers' */
};

struct bench_stats {
    bench_hist hist[BC_NCMD];
    uint64_t errors[BC_NCMD];
    struct bench_resync_stats rs;
    struct bench_deliver_stats dl;
};

/* dst += src */
void bench_stats_merge(struct bench_stats *dst, const struct bench_stats *src);

struct bench_result {
    struct bench_stats st;       /* merged over threads */
    double elapsed_s;
    long conns_peak, conns_end;  /* established: most at once, at the end */
    /* idle-hold */
    bench_hist fanout;
    long appends_sent, appends_seen, sessions;
    /* populate */
    long populate_done;
    /* --bystander: NOOP round trips of the bystander sessions */
    bench_hist bystander;
    uint64_t bystander_errors;
};

/* Runs one phase: nclients clients of workload w for duration seconds (the
 * populate phase runs until done or duration).  Returns 0, or -errno if
 * threads could not be started. */
int bench_run(const struct bench_config *cfg, enum bench_workload w, int nclients,
              double duration, int progress, struct bench_result *out);

/* --bystander (ringmail_bench_bystander.c): n sessions of their own, logged
 * in before the workload starts, each sending NOOP after NOOP (with a short
 * pause between) and timing the round trip, until bench_bystander_stop.  On a
 * server with one worker they share it with the workload: their latency is
 * what a heavy session costs everyone else.  0 or -errno (could not log in). */
struct bench_bystanders;
int bench_bystander_start(const struct bench_config *cfg, int n, struct bench_bystanders **out);
/* Stops them and adds their round trips to r->bystander. */
void bench_bystander_stop(struct bench_bystanders *b, struct bench_result *r);

/* The login name of user i (0-based) into buf. */
void bench_user_name(const struct bench_config *cfg, int i, char *buf, size_t cap);

#endif
