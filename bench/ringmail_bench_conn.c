/* The client logic of ringmail-bench, shared by both I/O engines
 * (ringmail_bench_conn.h): a client has at most one command in flight;
 * responses are parsed as a stream of lines, literals skipped.  Tagged NO/BAD
 * and dropped connections are errors of the command in flight (CONNECT if
 * none); the client then reconnects after a short back-off and goes on. */
#include "bench/ringmail_bench_conn.h"

#include <errno.h>
#include <stdarg.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>

const char *const bench_cmd_name[BC_NCMD] = {
    "CONNECT", "LOGIN", "SELECT", "LIST", "STATUS", "FETCH_HEADERS", "FETCH_BODY",
    "STORE", "APPEND", "EXPUNGE", "LOGOUT", "IDLE", "NOOP", "SEARCH_BODY", "COPY",
    "CREATE", "STORE_ALL", "CAPABILITY", "ENABLE", "UID_FETCH_FLAGS", "UID_SEARCH",
    "UID_STORE", "UID_EXPUNGE", "LHLO", "DELIVER", "SORT", "THREAD"
};
const char *const bench_op_name[OP_N] = {
    "login", "select", "list", "status", "headers", "body", "store", "append",
    "expunge", "logout"
};

enum { ROLE_NORMAL, ROLE_SESSION, ROLE_APPENDER, ROLE_POPULATE, ROLE_LMTP };
#define OP_EXPUNGE2 OP_N          /* internal: EXPUNGE after STORE \Deleted */
#define OP_NONE (-1)

#define BACKOFF_NS 20000000ull    /* 20 ms before reconnecting after an error */
/* Connections a worker opens at once: a storm of thousands of SYNs overflows
 * the server's accept queue and turns into retransmits and resets. */
#define MAX_OPENING 64
#define MAX_EVENTS 65536          /* idle-hold appends remembered */

/* One idle-hold APPEND: every session of that user that sees its EXISTS
 * raises last_seen and decrements remaining; fanout = last_seen - start once
 * remaining is 0 (CLOCK_MONOTONIC is one clock for all processes). */
struct fan_event {
    int user;
    long seq;
    uint64_t start;
    _Atomic uint64_t last_seen;
    _Atomic int remaining;
};

/* What the processes of one phase share: a MAP_SHARED anonymous mapping
 * made before the fork (lock-free atomics only).  Behind it: events,
 * per-process statistics, per-user counters (see phase_map). */
struct bench_shared {
    _Atomic int stop_new, stop_all, failed;
    _Atomic long conns_now, conns_peak, done;
    _Atomic uint64_t ops;
    /* idle-hold */
    _Atomic int idling, appending_started;
    _Atomic long append_seq;
    _Atomic uint64_t next_append_ns;
    _Atomic long nevents, seen_events;
};

static struct {
    const struct bench_config *cfg;
    const struct bench_engine *eng;
    enum bench_workload w;
    int nclients, nsessions, nappenders;
    struct bench_shared *sh;
    uint64_t start_ns, force_append_ns;
    struct fan_event *events;     /* MAX_EVENTS, shared */
    struct bench_stats *pstats;   /* one per process, shared */
    _Atomic long *user_seq;       /* per user: appends created, shared */
    _Atomic int *user_sessions;   /* per user: sessions idling, shared */
    SSL_CTX *tls;                 /* per process */
} g;

static void oom(void)
{
    fprintf(stderr, "ringmail-bench: out of memory\n");
    exit(1);
}

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

const struct bench_config *bench_conn_config(void)
{
    return g.cfg;
}

int bench_conn_stop_all(void)
{
    return atomic_load(&g.sh->stop_all);
}

static uint64_t rnd(struct bench_worker *w)
{
    uint64_t x = w->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return w->rng = x;
}

void bench_user_name(const struct bench_config *cfg, int i, char *buf, size_t cap)
{
    const char *p = strstr(cfg->users, "%d");
    if (!p) {
        snprintf(buf, cap, "%s", cfg->users);
        return;
    }
    snprintf(buf, cap, "%.*s%d%s", (int)(p - cfg->users), cfg->users, i + 1, p + 2);
}

/* ---- output buffers ---- */

static void obuf_reserve(struct bench_obuf *b, size_t n)
{
    if (b->off && b->off == b->len)
        b->off = b->len = 0;
    if (b->len + n <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        oom();
    b->p = p;
    b->cap = cap;
}

__attribute__((format(printf, 2, 3)))
static void out_printf(struct bench_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    obuf_reserve(&c->out, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(c->out.p + c->out.len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    c->out.len += (size_t)n;
}

static void out_bytes(struct bench_client *c, const char *p, size_t n)
{
    obuf_reserve(&c->out, n);
    memcpy(c->out.p + c->out.len, p, n);
    c->out.len += n;
}

static void out_quoted(struct bench_client *c, const char *s)
{
    out_bytes(c, "\"", 1);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            out_bytes(c, "\\", 1);
        out_bytes(c, s, 1);
    }
    out_bytes(c, "\"", 1);
}

void bench_out_printf(struct bench_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    obuf_reserve(&c->out, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(c->out.p + c->out.len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    c->out.len += (size_t)n;
}

void bench_out_bytes(struct bench_client *c, const char *p, size_t n)
{
    out_bytes(c, p, n);
}

void bench_stats_merge(struct bench_stats *dst, const struct bench_stats *src)
{
    for (int k = 0; k < BC_NCMD; k++) {
        bench_hist_merge(&dst->hist[k], &src->hist[k]);
        dst->errors[k] += src->errors[k];
    }
    struct bench_resync_stats *d = &dst->rs;
    const struct bench_resync_stats *s = &src->rs;
    bench_hist_merge(&d->lat, &s->lat);
    d->resyncs += s->resyncs;
    d->bytes += s->bytes;
    d->initial += s->initial;
    d->initial_bytes += s->initial_bytes;
    for (int m = 0; m < RESYNC_NMODES; m++)
        d->by_mode[m] += s->by_mode[m];
    d->mismatches += s->mismatches;
    d->changes += s->changes;
    d->rounds += s->rounds;
    struct bench_deliver_stats *dd = &dst->dl;
    const struct bench_deliver_stats *ds = &src->dl;
    bench_hist_merge(&dd->lat, &ds->lat);
    bench_hist_merge(&dd->exists_lat, &ds->exists_lat);
    bench_hist_merge(&dd->start_exists_lat, &ds->start_exists_lat);
    dd->deliveries += ds->deliveries;
    dd->rcpts += ds->rcpts;
    dd->bytes += ds->bytes;
    dd->bad_replies += ds->bad_replies;
    dd->exists_expected += ds->exists_expected;
    dd->exists_seen += ds->exists_seen;
    dd->exists_early += ds->exists_early;
}

struct bench_obuf *bench_conn_wire(struct bench_client *c)
{
    return c->ssl ? &c->wire : &c->out;
}

/* A plausible text/plain message of 4-40 KB into w->msgbuf; returns its
 * length. */
static size_t gen_message(struct bench_worker *w)
{
    static const char *const words[] = {
        "the", "meeting", "report", "quarterly", "numbers", "please", "review", "attached",
        "server", "mailbox", "deadline", "project", "update", "thanks", "regards", "budget",
        "schedule", "customer", "release", "notes", "about", "tomorrow", "question", "and",
        "with", "for", "from", "our", "team", "will", "have", "been", "this", "that"
    };
    size_t nwords = sizeof words / sizeof words[0];
    size_t target = 4096 + (size_t)(rnd(w) % (36 * 1024));
    char date[64];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    char *b = w->msgbuf;
    int n = snprintf(b, 1024,
                     "From: Bench Sender <sender%u@example.com>\r\n"
                     "To: Bench Reader <reader@example.org>\r\n"
                     "Subject: %s %s %s #%u\r\n"
                     "Date: %s\r\n"
                     "Message-ID: <%016llx@ringmail-bench>\r\n"
                     "MIME-Version: 1.0\r\n"
                     "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
                     (unsigned)(rnd(w) % 1000), words[rnd(w) % nwords], words[rnd(w) % nwords],
                     words[rnd(w) % nwords], (unsigned)(rnd(w) % 100000), date,
                     (unsigned long long)rnd(w));
    size_t len = (size_t)n, line = 0;
    while (len < target) {
        const char *wd = words[rnd(w) % nwords];
        size_t wl = strlen(wd);
        if (line + wl + 1 > 72) {
            memcpy(b + len, "\r\n", 2);
            len += 2;
            line = 0;
        } else if (line) {
            b[len++] = ' ';
            line++;
        }
        memcpy(b + len, wd, wl);
        len += wl;
        line += wl;
    }
    memcpy(b + len, "\r\n", 2);
    return len + 2;
}

/* ---- connection life ---- */

static void count_error(struct bench_worker *w, int cmd)
{
    w->st->errors[cmd]++;
}

static int opening(const struct bench_client *c)
{
    return c->state == ST_CONNECTING || c->state == ST_HANDSHAKE || c->state == ST_GREETING;
}

static void disconnect(struct bench_worker *w, struct bench_client *c, uint64_t backoff)
{
    if (opening(c))
        w->opening--;
    c->gen++;
    if (c->fd >= 0) {
        g.eng->closing(w, c);
        close(c->fd);
        c->fd = -1;
    }
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
        c->rbio = c->wbio = NULL;
    }
    if (c->in_conn_count) {
        atomic_fetch_sub(&g.sh->conns_now, 1);
        c->in_conn_count = 0;
    }
    if (c->state == ST_IDLING && c->role == ROLE_SESSION) {
        atomic_fetch_sub(&g.sh->idling, 1);
        atomic_fetch_sub(&g.user_sessions[c->user], 1);
    }
    if (c->dl)
        bench_deliver_reset(c);
    c->authed = c->selected = 0;
    c->exists = 0;
    c->out.len = c->out.off = 0;
    c->wire.len = c->wire.off = 0;
    c->inlen = 0;
    c->lit = 0;
    c->contline = 0;
    c->status_messages = -1;
    c->state = ST_WAIT;
    c->wake_at = bench_now_ns() + backoff;
}

void bench_conn_close(struct bench_worker *w, struct bench_client *c, uint64_t backoff_ns)
{
    disconnect(w, c, backoff_ns);
}

/* The connection failed or dropped: an error of the command in flight. */
void bench_conn_fail(struct bench_worker *w, struct bench_client *c)
{
    if (c->state == ST_DONE || c->state == ST_WAIT)
        return;
    count_error(w, c->state == ST_BUSY || c->state == ST_IDLING ? c->cmd : BC_CONNECT);
    disconnect(w, c, BACKOFF_NS);
}

/* TLS: moves the records the SSL produced into c->wire. */
static void tls_drain(struct bench_client *c)
{
    size_t n;
    while ((n = BIO_pending(c->wbio)) > 0) {
        obuf_reserve(&c->wire, n);
        int r = BIO_read(c->wbio, c->wire.p + c->wire.len, (int)n);
        if (r <= 0)
            break;
        c->wire.len += (size_t)r;
    }
}

/* Hands what is queued to the engine (through the SSL first with TLS). */
static void flush_out(struct bench_worker *w, struct bench_client *c)
{
    if (c->ssl) {
        while (c->state != ST_HANDSHAKE && c->out.off < c->out.len) {
            int n = SSL_write(c->ssl, c->out.p + c->out.off, (int)(c->out.len - c->out.off));
            if (n <= 0) {
                ERR_clear_error();
                bench_conn_fail(w, c);
                return;
            }
            c->out.off += (size_t)n;
        }
        if (c->out.off == c->out.len)
            c->out.off = c->out.len = 0;
        tls_drain(c);
    }
    struct bench_obuf *b = bench_conn_wire(c);
    if (b->off < b->len)
        g.eng->kick(w, c);
}

static void start_connect(struct bench_worker *w, struct bench_client *c)
{
    if (w->opening >= MAX_OPENING || g.eng->can_connect(w, c) < 0) {
        c->state = ST_WAIT;
        c->wake_at = bench_now_ns() + 1000000ull;
        return;
    }
    socklen_t alen;
    const struct sockaddr *addr = bench_conn_addr(c, &alen);
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        count_error(w, BC_CONNECT);
        c->state = ST_WAIT;
        c->wake_at = bench_now_ns() + 100000000ull;
        return;
    }
    int one = 1;
    if (addr->sa_family != AF_UNIX)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (c->src > 0 && addr->sa_family == AF_INET) {
        /* 127.0.0.src, the port chosen by connect() for the whole 4-tuple */
        struct sockaddr_in sin = { .sin_family = AF_INET,
                                   .sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)c->src) };
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
            close(fd);
            count_error(w, BC_CONNECT);
            c->state = ST_WAIT;
            c->wake_at = bench_now_ns() + 100000000ull;
            return;
        }
    }
    c->fd = fd;
    c->cmd = BC_CONNECT;
    c->t0 = bench_now_ns();
    c->conn_t0 = c->t0;
    c->rxbytes = 0;
    c->state = ST_CONNECTING;
    w->opening++;
    g.eng->connect(w, c);
}

const struct sockaddr *bench_conn_addr(const struct bench_client *c, socklen_t *len)
{
    if (c->dl) {
        *len = g.cfg->lmtp_addrlen;
        return (const struct sockaddr *)&g.cfg->lmtp_addr;
    }
    *len = g.cfg->addrlen;
    return (const struct sockaddr *)&g.cfg->addr;
}

void bench_conn_flush(struct bench_worker *w, struct bench_client *c)
{
    flush_out(w, c);
}

int bench_conn_watchers_ready(void)
{
    return atomic_load(&g.sh->idling) >= g.nsessions || bench_now_ns() >= g.force_append_ns;
}

void bench_conn_connected(struct bench_worker *w, struct bench_client *c)
{
    c->state = ST_GREETING;
    if (!g.tls || c->dl)          /* LMTP is spoken in clear (loopback or a socket) */
        return;
    c->ssl = SSL_new(g.tls);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (!c->ssl || !c->rbio || !c->wbio) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        c->rbio = c->wbio = NULL;
        bench_conn_fail(w, c);
        return;
    }
    BIO_set_mem_eof_return(c->rbio, -1);    /* empty: "retry", not EOF */
    SSL_set_bio(c->ssl, c->rbio, c->wbio);  /* the SSL owns both */
    SSL_set_connect_state(c->ssl);
    SSL_set_tlsext_host_name(c->ssl, g.cfg->host);
    c->state = ST_HANDSHAKE;
    int r = SSL_do_handshake(c->ssl);
    if (r != 1 && SSL_get_error(c->ssl, r) != SSL_ERROR_WANT_READ) {
        ERR_clear_error();
        bench_conn_fail(w, c);
        return;
    }
    flush_out(w, c);
}

static void send_cmd(struct bench_worker *w, struct bench_client *c, int cmd, int op)
{
    char user[256];
    c->tag++;
    out_printf(c, "a%u ", c->tag);
    if (g.w == BW_RESYNC && cmd != BC_LOGIN)
        bench_resync_format(w, c, cmd);
    else switch (cmd) {
    case BC_LOGIN:
        bench_user_name(g.cfg, c->user, user, sizeof user);
        out_printf(c, "LOGIN ");
        out_quoted(c, user);
        out_printf(c, " ");
        out_quoted(c, g.cfg->password);
        out_printf(c, "\r\n");
        break;
    case BC_SELECT:
        out_printf(c, "SELECT INBOX\r\n");
        break;
    case BC_LIST:
        out_printf(c, "LIST \"\" \"*\"\r\n");
        break;
    case BC_STATUS:
        out_printf(c, "STATUS INBOX (MESSAGES UIDNEXT UNSEEN)\r\n");
        break;
    case BC_FETCH_HDR:
        out_printf(c, "UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)\r\n");
        break;
    case BC_FETCH_BODY:
        out_printf(c, "FETCH %ld BODY.PEEK[]\r\n", 1 + (long)(rnd(w) % (uint64_t)c->exists));
        break;
    case BC_STORE: {
        long n = 1 + (long)(rnd(w) % (uint64_t)c->exists);
        if (op == OP_EXPUNGE) {
            out_printf(c, "STORE %ld +FLAGS.SILENT (\\Deleted)\r\n", n);
        } else {
            static const char *const v[] = { "+FLAGS.SILENT (\\Seen)", "-FLAGS.SILENT (\\Seen)",
                                             "+FLAGS.SILENT (\\Flagged)",
                                             "-FLAGS.SILENT (\\Flagged)" };
            out_printf(c, "STORE %ld %s\r\n", n, v[rnd(w) % 4]);
        }
        break;
    }
    case BC_APPEND: {
        size_t len = gen_message(w);
        out_printf(c, "APPEND INBOX {%zu+}\r\n", len);
        out_bytes(c, w->msgbuf, len);
        out_printf(c, "\r\n");
        break;
    }
    case BC_EXPUNGE:
        out_printf(c, "EXPUNGE\r\n");
        break;
    case BC_SEARCH:
        /* a word no generated message has: every body is read */
        out_printf(c, "SEARCH BODY \"ringmail-bench-absent\"\r\n");
        break;
    case BC_SORT:
    case BC_THREAD: {
        /* what a webmail's folder view sends (SORT: newest first); the
         * fresh workloads change the set every time */
        const char *q = cmd == BC_SORT ? "SORT (REVERSE DATE)" : "THREAD REFERENCES";
        if (g.w == BW_SORT_FRESH || g.w == BW_THREAD_FRESH)
            out_printf(c, "UID %s UTF-8 UID %u:*\r\n", q, 1 + (unsigned)(c->fresh++ % 997));
        else
            out_printf(c, "%s UTF-8 ALL\r\n", q);
        break;
    }
    case BC_CREATE:
        out_printf(c, "CREATE bench-copy-%d\r\n", c->id);
        break;
    case BC_COPY:
        out_printf(c, "COPY 1:* bench-copy-%d\r\n", c->id);
        break;
    case BC_STORE_ALL:
        /* not .SILENT: the answer has a FETCH line per message */
        out_printf(c, "STORE 1:* %cFLAGS (\\Flagged)\r\n", c->store_flip ? '-' : '+');
        c->store_flip = !c->store_flip;
        break;
    case BC_LOGOUT:
        out_printf(c, "LOGOUT\r\n");
        break;
    case BC_IDLE:
        out_printf(c, "IDLE\r\n");
        break;
    default:
        out_printf(c, "NOOP\r\n");
        break;
    }
    c->cmd = cmd;
    c->state = ST_BUSY;
    c->t0 = bench_now_ns();
    flush_out(w, c);
}

static int pick_op(struct bench_worker *w)
{
    unsigned total = 0;
    for (int i = 0; i < OP_N; i++)
        total += g.cfg->weights[i];
    unsigned r = (unsigned)(rnd(w) % total);
    for (int i = 0; i < OP_N; i++) {
        if (r < g.cfg->weights[i])
            return i;
        r -= g.cfg->weights[i];
    }
    return OP_SELECT;
}

/* The mixed workload: the command that brings the client closer to its
 * pending operation (prerequisites first: LOGIN, SELECT). */
static int mixed_next(struct bench_worker *w, struct bench_client *c, int *op_out)
{
    for (int tries = 0; tries < 8; tries++) {
        if (c->pending_op == OP_NONE)
            c->pending_op = pick_op(w);
        int op = c->pending_op;
        *op_out = op;
        if (op == OP_EXPUNGE2) {
            c->pending_op = OP_NONE;
            return BC_EXPUNGE;
        }
        if (op == OP_LOGIN) {              /* a fresh session: LOGIN is issued next */
            c->pending_op = OP_NONE;
            return BC_LOGOUT;
        }
        if (op == OP_LOGOUT) {
            c->pending_op = OP_NONE;
            return BC_LOGOUT;
        }
        if (op == OP_LIST || op == OP_STATUS || op == OP_APPEND || op == OP_SELECT) {
            c->pending_op = OP_NONE;
            return op == OP_LIST ? BC_LIST : op == OP_STATUS ? BC_STATUS
                 : op == OP_APPEND ? BC_APPEND : BC_SELECT;
        }
        if (!c->selected)
            return BC_SELECT;              /* pending op stays */
        if (op == OP_HEADERS) {
            c->pending_op = OP_NONE;
            return BC_FETCH_HDR;
        }
        if ((op == OP_BODY || op == OP_STORE) && c->exists > 0) {
            c->pending_op = OP_NONE;
            return op == OP_BODY ? BC_FETCH_BODY : BC_STORE;
        }
        if (op == OP_EXPUNGE && c->exists > 1) {
            c->pending_op = OP_EXPUNGE2;
            return BC_STORE;
        }
        c->pending_op = OP_NONE;           /* not possible now: pick again */
    }
    *op_out = OP_NONE;
    return BC_NOOP;
}

/* The idle-hold appender: one APPEND a second, users in turn, once every
 * session idles (or half the run has passed). */
static int appender_next(struct bench_client *c)
{
    uint64_t now = bench_now_ns();
    if (!atomic_load(&g.sh->appending_started)) {
        if (atomic_load(&g.sh->idling) < g.nsessions && now < g.force_append_ns) {
            c->wake_at = now + 2000000ull;
            return -1;
        }
        int z = 0;
        if (atomic_compare_exchange_strong(&g.sh->appending_started, &z, 1))
            atomic_store(&g.sh->next_append_ns, now);
    }
    long seq = atomic_load(&g.sh->append_seq);
    uint64_t due = atomic_load(&g.sh->next_append_ns);
    if (now < due || seq % g.nappenders != c->user ||
        atomic_load(&g.sh->nevents) >= MAX_EVENTS) {
        c->wake_at = now + 2000000ull;
        return -1;
    }
    if (!atomic_compare_exchange_strong(&g.sh->append_seq, &seq, seq + 1)) {
        c->wake_at = now + 1000000ull;
        return -1;
    }
    atomic_store(&g.sh->next_append_ns, now + 1000000000ull);
    long k = atomic_load(&g.sh->nevents);
    struct fan_event *e = &g.events[k];
    e->user = c->user;
    e->seq = atomic_load(&g.user_seq[c->user]) + 1;
    e->start = now;
    atomic_store(&e->remaining, atomic_load(&g.user_sessions[c->user]));
    atomic_store(&g.sh->nevents, k + 1);
    atomic_store(&g.user_seq[c->user], e->seq);
    if (atomic_load(&e->remaining) == 0)
        atomic_fetch_add(&g.sh->seen_events, 1);
    return BC_APPEND;
}

/* Next command for a ready client, or -1 to wait until c->wake_at. */
static int next_cmd(struct bench_worker *w, struct bench_client *c, int *op)
{
    *op = OP_NONE;
    if (c->role == ROLE_POPULATE) {
        if (!c->authed)
            return BC_LOGIN;
        if (c->status_messages < 0)
            return BC_STATUS;
        if (c->to_append > 0)
            return BC_APPEND;
        return BC_LOGOUT;
    }
    if (g.w == BW_RESYNC)
        return bench_resync_next(w, c);
    if (!c->authed)
        return BC_LOGIN;
    if (c->role == ROLE_APPENDER)
        return appender_next(c);
    switch (g.w) {
    case BW_LOGIN:
        return BC_LOGOUT;
    case BW_HEADERS:
        return c->selected ? BC_FETCH_HDR : BC_SELECT;
    case BW_BODIES:
        if (!c->selected)
            return BC_SELECT;
        return c->exists > 0 ? BC_FETCH_BODY : BC_APPEND;
    case BW_APPEND:
        return BC_APPEND;
    case BW_IDLE:
    case BW_DELIVER:
        return c->selected ? BC_IDLE : BC_SELECT;
    case BW_MIXED:
        return mixed_next(w, c, op);
    case BW_SEARCH:
        return c->selected ? BC_SEARCH : BC_SELECT;
    case BW_SORT:
    case BW_SORT_FRESH:
        return c->selected ? BC_SORT : BC_SELECT;
    case BW_THREAD:
    case BW_THREAD_FRESH:
        return c->selected ? BC_THREAD : BC_SELECT;
    case BW_COPY:
        if (!c->copy_ready)
            return BC_CREATE;
        return c->selected ? BC_COPY : BC_SELECT;
    case BW_STORE:
        return c->selected ? BC_STORE_ALL : BC_SELECT;
    default:
        return BC_NOOP;
    }
}

void bench_conn_step(struct bench_worker *w, struct bench_client *c)
{
    if (atomic_load(&g.sh->stop_new) || c->state == ST_DONE) {
        if (c->state != ST_DONE)
            c->state = ST_WAIT;
        c->wake_at = UINT64_MAX;
        return;
    }
    if (c->fd < 0) {
        if (g.w == BW_RESYNC && !bench_resync_may_connect(c)) {
            c->state = ST_WAIT;      /* woken by its writer's next round */
            c->wake_at = UINT64_MAX;
            return;
        }
        start_connect(w, c);
        return;
    }
    if (c->dl) {
        if (bench_deliver_next(w, c) < 0)
            c->state = ST_WAIT;
        return;
    }
    int op;
    int cmd = next_cmd(w, c, &op);
    if (cmd < 0) {
        c->state = ST_WAIT;
        return;
    }
    send_cmd(w, c, cmd, op);
}

/* ---- responses ---- */

static void fanout_seen(struct bench_client *c, long n)
{
    long have = n - c->exists0;
    uint64_t now = bench_now_ns();
    long nev = atomic_load(&g.sh->nevents);
    for (long k = c->seen + 1; k <= have; k++) {
        for (long i = nev - 1; i >= 0; i--) {
            struct fan_event *e = &g.events[i];
            if (e->user != c->user || e->seq != k)
                continue;
            uint64_t last = atomic_load(&e->last_seen);
            while (now > last && !atomic_compare_exchange_weak(&e->last_seen, &last, now))
                ;
            if (atomic_fetch_sub(&e->remaining, 1) == 1)
                atomic_fetch_add(&g.sh->seen_events, 1);
            break;
        }
    }
    if (have > c->seen)
        c->seen = have;
}

static void complete(struct bench_worker *w, struct bench_client *c, int ok)
{
    uint64_t lat = bench_now_ns() - c->t0;
    int cmd = c->cmd;
    if (ok) {
        bench_hist_add(&w->st->hist[cmd], lat);
        atomic_fetch_add_explicit(&g.sh->ops, 1, memory_order_relaxed);
    } else {
        count_error(w, cmd);
    }
    c->state = ST_READY;
    switch (cmd) {
    case BC_LOGIN:
        if (!ok) {
            disconnect(w, c, BACKOFF_NS * 5);
            return;
        }
        c->authed = 1;
        break;
    case BC_SELECT:
        if (!ok) {
            disconnect(w, c, BACKOFF_NS * 5);
            return;
        }
        c->selected = 1;
        c->exists0 = c->exists;
        c->seen = 0;
        break;
    case BC_STATUS:
        if (c->role == ROLE_POPULATE) {
            if (!ok || c->status_messages < 0) {
                disconnect(w, c, BACKOFF_NS * 5);
                return;
            }
            c->to_append = g.cfg->populate - c->status_messages;
        }
        break;
    case BC_APPEND:
        if (c->role == ROLE_POPULATE && ok)
            c->to_append--;
        break;
    case BC_CREATE:
        c->copy_ready = 1;
        break;
    case BC_CAPABILITY: case BC_ENABLE: case BC_UID_FETCH: case BC_UID_SEARCH:
    case BC_UID_STORE: case BC_UID_EXPUNGE:
        break;
    case BC_LOGOUT:
        if (c->role == ROLE_POPULATE) {
            disconnect(w, c, 0);
            c->state = ST_DONE;
            atomic_fetch_add(&g.sh->done, 1);
            return;
        }
        disconnect(w, c, 0);
        bench_conn_step(w, c);
        return;
    default:
        break;
    }
    bench_conn_step(w, c);
}

void bench_conn_greeted(struct bench_worker *w, struct bench_client *c)
{
    bench_hist_add(&w->st->hist[BC_CONNECT], bench_now_ns() - c->t0);
    atomic_fetch_add_explicit(&g.sh->ops, 1, memory_order_relaxed);
    c->in_conn_count = 1;
    w->opening--;
    long now = atomic_fetch_add(&g.sh->conns_now, 1) + 1;
    long peak = atomic_load(&g.sh->conns_peak);
    while (now > peak && !atomic_compare_exchange_weak(&g.sh->conns_peak, &peak, now))
        ;
    c->state = ST_READY;
}

/* One response line (without CRLF); returns -1 if the client was reset. */
static int on_line(struct bench_worker *w, struct bench_client *c, const char *line, size_t len)
{
    if (c->dl) {
        uint32_t gen = c->gen;
        bench_deliver_line(w, c, line, len);
        return c->gen != gen ? -1 : 0;
    }
    if (c->state == ST_GREETING) {
        if (len >= 4 && (!strncmp(line, "* OK", 4) || !strncmp(line, "* PREAUTH", 9))) {
            bench_conn_greeted(w, c);
            if (!strncmp(line, "* PREAUTH", 9))
                c->authed = 1;
            uint32_t gen = c->gen;
            bench_conn_step(w, c);
            return c->gen != gen ? -1 : 0;
        }
        bench_conn_fail(w, c);
        return -1;
    }
    if (len >= 2 && line[0] == '*' && line[1] == ' ') {
        if (g.w == BW_RESYNC)
            bench_resync_untagged(c, line, len);
        const char *p = line + 2, *end = line + len;
        if (p < end && *p >= '0' && *p <= '9') {
            long n = 0;
            while (p < end && *p >= '0' && *p <= '9')
                n = n * 10 + (*p++ - '0');
            if ((size_t)(end - p) >= 7 && !strncmp(p, " EXISTS", 7)) {
                c->exists = n;
                if (c->role == ROLE_SESSION && c->state == ST_IDLING) {
                    if (g.w == BW_DELIVER)
                        bench_deliver_exists(c->user, n - c->exists0);
                    else
                        fanout_seen(c, n);
                }
            } else if ((size_t)(end - p) >= 8 && !strncmp(p, " EXPUNGE", 8)) {
                if (c->exists > 0)
                    c->exists--;
            }
        } else if (c->cmd == BC_STATUS && len > 9 && !strncmp(p, "STATUS ", 7)) {
            const char *m = memmem(line, len, "MESSAGES ", 9);
            if (m)
                c->status_messages = strtol(m + 9, NULL, 10);
        }
        return 0;
    }
    if (len >= 1 && line[0] == '+') {
        if (c->state == ST_BUSY && c->cmd == BC_IDLE) {
            bench_hist_add(&w->st->hist[BC_IDLE], bench_now_ns() - c->t0);
            atomic_fetch_add_explicit(&g.sh->ops, 1, memory_order_relaxed);
            c->state = ST_IDLING;
            if (c->role == ROLE_SESSION) {
                atomic_fetch_add(&g.user_sessions[c->user], 1);
                atomic_fetch_add(&g.sh->idling, 1);
            }
        }
        return 0;
    }
    if (c->state != ST_BUSY || len < 2 || line[0] != 'a')
        return 0;
    const char *p = line + 1, *end = line + len;
    uint32_t tag = 0;
    while (p < end && *p >= '0' && *p <= '9')
        tag = tag * 10 + (uint32_t)(*p++ - '0');
    if (tag != c->tag || p >= end || *p != ' ')
        return 0;
    p++;
    int ok = (size_t)(end - p) >= 2 && !strncmp(p, "OK", 2);
    /* the copy target of an earlier run */
    if (c->cmd == BC_CREATE && memmem(p, (size_t)(end - p), "[ALREADYEXISTS]", 15))
        ok = 1;
    uint32_t gen = c->gen;
    if (g.w == BW_RESYNC) {
        int cmd = c->cmd;
        if (ok)
            bench_hist_add(&w->st->hist[cmd], bench_now_ns() - c->t0);
        else
            count_error(w, cmd);
        atomic_fetch_add_explicit(&g.sh->ops, 1, memory_order_relaxed);
        c->state = ST_READY;
        if (cmd == BC_LOGIN && ok)
            c->authed = 1;
        if (!bench_resync_tagged(w, c, cmd, ok, p, (size_t)(end - p)) && c->gen == gen)
            bench_conn_step(w, c);
        return c->gen != gen ? -1 : 0;
    }
    complete(w, c, ok);
    return c->gen != gen ? -1 : 0;
}

/* Parses what is buffered; returns -1 if the client was reset. */
static int parse(struct bench_worker *w, struct bench_client *c)
{
    size_t pos = 0;
    int rc = 0;
    while (pos < c->inlen) {
        if (c->lit) {
            size_t k = c->inlen - pos < c->lit ? c->inlen - pos : c->lit;
            pos += k;
            c->lit -= k;
            continue;
        }
        char *nl = memchr(c->in + pos, '\n', c->inlen - pos);
        if (!nl)
            break;
        char *line = c->in + pos;
        size_t len = (size_t)(nl - line);
        pos += len + 1;
        if (len && line[len - 1] == '\r')
            len--;
        int cont = c->contline;
        c->contline = 0;
        if (len && line[len - 1] == '}' && !c->dl) {   /* IMAP literals only */
            size_t i = len - 1;
            while (i > 0 && line[i - 1] != '{')
                i--;
            if (i > 0) {
                c->lit = (size_t)strtoull(line + i, NULL, 10);
                c->contline = 1;
            }
        }
        if (!cont && on_line(w, c, line, len) < 0) {
            rc = -1;
            break;
        }
    }
    if (rc == 0) {
        memmove(c->in, c->in + pos, c->inlen - pos);
        c->inlen -= pos;
    }
    return rc;
}


/* ---- input, from the engines ---- */

static void in_reserve(struct bench_client *c)
{
    if (c->incap - c->inlen >= 4096)
        return;
    size_t cap = c->incap ? c->incap * 2 : 16384;
    char *p = realloc(c->in, cap);
    if (!p)
        oom();
    c->in = p;
    c->incap = cap;
}

char *bench_conn_rxbuf(struct bench_client *c, size_t *cap)
{
    if (c->ssl) {
        if (!c->rx && !(c->rx = malloc(BENCH_RX_CAP)))
            oom();
        *cap = BENCH_RX_CAP;
        return c->rx;
    }
    in_reserve(c);
    *cap = c->incap - c->inlen;
    return c->in + c->inlen;
}

void bench_conn_eof(struct bench_worker *w, struct bench_client *c)
{
    bench_conn_fail(w, c);
}

void bench_conn_input(struct bench_worker *w, struct bench_client *c, size_t n)
{
    c->rxbytes += n;
    if (!c->ssl) {
        c->inlen += n;
        parse(w, c);
        return;
    }
    if (BIO_write(c->rbio, c->rx, (int)n) != (int)n) {
        bench_conn_fail(w, c);
        return;
    }
    uint32_t gen = c->gen;
    if (c->state == ST_HANDSHAKE) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            if (SSL_get_error(c->ssl, r) == SSL_ERROR_WANT_READ) {
                flush_out(w, c);
                return;
            }
            ERR_clear_error();
            bench_conn_fail(w, c);
            return;
        }
        c->state = ST_GREETING;
    }
    for (;;) {
        in_reserve(c);
        int r = SSL_read(c->ssl, c->in + c->inlen, (int)(c->incap - c->inlen));
        if (r <= 0) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ)
                break;
            ERR_clear_error();
            bench_conn_fail(w, c);   /* close_notify included: the server went away */
            return;
        }
        c->inlen += (size_t)r;
        if (parse(w, c) < 0)
            return;
    }
    if (c->gen == gen)
        flush_out(w, c);
}

void bench_conn_tick(struct bench_worker *w)
{
    /* A scan of every client costs O(clients): with 18,000 idle sessions a
     * thread every millisecond it burnt most of a core that the server
     * under test needs.  Scan when the earliest wake-up seen by the last
     * scan is due, and at least every 5 ms for wake-ups set since. */
    uint64_t now = bench_now_ns();
    if (now - w->last_tick < 1000000ull ||
        (now < w->next_due && now - w->last_tick < 5000000ull))
        return;
    w->last_tick = now;
    uint64_t next = UINT64_MAX;
    for (int i = 0; i < w->ncl; i++) {
        struct bench_client *c = &w->cl[i];
        if (c->state != ST_WAIT)
            continue;
        if (now >= c->wake_at)
            bench_conn_step(w, c);
        if (c->state == ST_WAIT && c->wake_at < next)
            next = c->wake_at;
    }
    w->next_due = next;
}

/* ---- threads and phases ---- */

static void *worker_main(void *arg)
{
    struct bench_worker *w = arg;
    g.eng->loop(w);
    g.eng->fini(w);          /* nothing of the kernel's reads a buffer any more */
    for (int i = 0; i < w->ncl; i++) {
        struct bench_client *c = &w->cl[i];
        if (c->ssl)
            SSL_free(c->ssl);
        if (c->fd >= 0)
            close(c->fd);
        free(c->in);
        free(c->rx);
        free(c->out.p);
        free(c->wire.p);
        free(c->tx.p);
        bench_resync_detach(c);
        bench_deliver_detach(c);
    }
    return NULL;
}

/* The clients of process p (of nprocs): sessions and normal clients round
 * robin, every idle-hold appender in process 0. */
static int proc_of(int i, int nprocs)
{
    return i >= g.nsessions ? 0 : i % nprocs;
}

struct proc {
    struct bench_worker *ws;
    int nth, started;
};

/* Sets up and starts the worker threads of process p.  0 or -errno. */
static int proc_start(int p, int nprocs, struct proc *pr)
{
    const struct bench_config *cfg = g.cfg;
    int mine = 0;
    for (int i = 0; i < g.nclients; i++)
        mine += proc_of(i, nprocs) == p;
    int threads = (cfg->threads + nprocs - 1) / nprocs;
    int nth = threads < mine ? threads : mine;
    if (nth < 1)
        nth = 1;
    pr->nth = nth;
    pr->started = 0;
    pr->ws = calloc((size_t)nth, sizeof *pr->ws);
    if (!pr->ws)
        return -ENOMEM;
    if (cfg->tls) {
        /* A load generator: the server's certificate is not verified. */
        g.tls = SSL_CTX_new(TLS_method());
        if (!g.tls)
            return -ENOMEM;
        SSL_CTX_set_verify(g.tls, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_mode(g.tls, SSL_MODE_ENABLE_PARTIAL_WRITE);
    }
    uint64_t seed = (bench_now_ns() ^ (uint64_t)getpid() << 32) | 1;
    g.eng = cfg->io == BENCH_IO_EPOLL ? &bench_engine_epoll : &bench_engine_uring;
    for (int t = 0; t < nth; t++) {
        struct bench_worker *w = &pr->ws[t];
        w->st = calloc(1, sizeof *w->st);
        w->msgbuf = malloc(48 * 1024);
        /* resync: a user's clients share a thread, so the counts differ */
        w->cl = calloc((size_t)(g.w == BW_RESYNC ? mine : mine / nth + 1), sizeof *w->cl);
        w->rng = seed * (uint64_t)(t + 1) * 0x9e3779b97f4a7c15ull | 1;
        if (!w->st || !w->msgbuf || !w->cl)
            return -ENOMEM;
        int e = g.eng->init(w);
        if (e < 0 && g.eng == &bench_engine_uring && t == 0) {
            if (p == 0)
                fprintf(stderr, "ringmail-bench: io_uring unavailable (%s), using epoll\n",
                        strerror(-e));
            g.eng = &bench_engine_epoll;
            e = g.eng->init(w);
        }
        if (e < 0)
            return e;
        w->eng = g.eng;
    }
    int k = 0;
    for (int i = 0; i < g.nclients; i++) {
        if (proc_of(i, nprocs) != p)
            continue;
        struct bench_worker *w = &pr->ws[k++ % nth];
        if (g.w == BW_RESYNC)
            w = &pr->ws[(i / (cfg->devices + 1)) % nth];
        struct bench_client *c = &w->cl[w->ncl++];
        c->id = i;
        c->fd = -1;
        c->state = ST_WAIT;
        c->wake_at = 0;
        c->pending_op = OP_NONE;
        c->status_messages = -1;
        c->src = cfg->source_addrs > 0 ? 1 + i % cfg->source_addrs : 0;
        if (i < g.nsessions) {
            c->user = i % cfg->nusers;
            c->role = g.w == BW_POPULATE ? ROLE_POPULATE
                    : g.w == BW_IDLE || g.w == BW_DELIVER ? ROLE_SESSION : ROLE_NORMAL;
            if (g.w == BW_IDLE)     /* sessions only on users that get appends */
                c->user = i % g.nappenders;
        } else if (g.w == BW_DELIVER) {
            c->user = i - g.nsessions;
            c->role = ROLE_LMTP;
            c->src = 0;
            if (bench_deliver_attach(c, i - g.nsessions) < 0)
                return -ENOMEM;
        } else {
            c->user = i - g.nsessions;
            c->role = ROLE_APPENDER;
        }
        if (g.w == BW_RESYNC) {
            c->user = i / (cfg->devices + 1);
            if (bench_resync_attach(c, c->user, i % (cfg->devices + 1)) < 0)
                return -ENOMEM;
        }
    }
    for (int t = 0; t < nth; t++) {
        if (pthread_create(&pr->ws[t].th, NULL, worker_main, &pr->ws[t]) != 0)
            return -EAGAIN;
        pr->started++;
    }
    return 0;
}

/* Joins the threads (after stop_all) and adds their statistics to
 * process p's slot. */
static void proc_finish(int p, struct proc *pr)
{
    for (int t = 0; t < pr->started; t++)
        pthread_join(pr->ws[t].th, NULL);
    for (int t = 0; pr->ws && t < pr->nth; t++) {
        struct bench_worker *w = &pr->ws[t];
        if (w->st)
            bench_stats_merge(&g.pstats[p], w->st);
        if (w->eng && w->eng_state && t >= pr->started)
            w->eng->fini(w);
        free(w->st);
        free(w->msgbuf);
        free(w->cl);
    }
    free(pr->ws);
    pr->ws = NULL;
    if (g.tls)
        SSL_CTX_free(g.tls);
    g.tls = NULL;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
    nanosleep(&ts, NULL);
}

/* A forked process: runs its clients until the parent says stop. */
static void proc_child(int p, int nprocs)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    struct proc pr = { 0 };
    if (proc_start(p, nprocs, &pr) < 0) {
        atomic_store(&g.sh->failed, 1);
        atomic_store(&g.sh->stop_all, 1);
    }
    while (!atomic_load(&g.sh->stop_all))
        sleep_ms(5);
    proc_finish(p, &pr);
    _exit(0);
}

int bench_run(const struct bench_config *cfg, enum bench_workload wl, int nclients,
              double duration, int progress, struct bench_result *out)
{
    int rc = 0;
    memset(&g, 0, sizeof g);
    g.cfg = cfg;
    g.w = wl;
    g.nsessions = nclients;
    g.nappenders = 0;
    int total = nclients;
    if (wl == BW_IDLE) {
        g.nappenders = cfg->nusers < nclients ? cfg->nusers : nclients;
        total += g.nappenders;
    }
    if (wl == BW_DELIVER) {
        /* the watchers first (sessions), then the LMTP clients */
        g.nsessions = cfg->nusers * cfg->watchers;
        total = g.nsessions + nclients;
        if (bench_deliver_init(cfg->nusers) < 0)
            return -ENOMEM;
    }
    g.nclients = total;
    /* resync: a user's writer and devices share their state in memory;
     * deliver: the recipients' 250 and EXISTS times */
    int nprocs = wl == BW_POPULATE || wl == BW_RESYNC || wl == BW_DELIVER || cfg->procs < 1
               ? 1 : cfg->procs;
    if (nprocs > nclients)
        nprocs = nclients;

    /* The shared mapping: header, events, per-process stats, per-user
     * counters; anonymous memory is zeroed. */
    size_t off_ev = (sizeof(struct bench_shared) + 63) & ~(size_t)63;
    size_t off_st = off_ev + MAX_EVENTS * sizeof(struct fan_event);
    size_t off_us = off_st + (size_t)nprocs * sizeof(struct bench_stats);
    size_t off_ss = off_us + (size_t)cfg->nusers * sizeof(_Atomic long);
    size_t maplen = off_ss + (size_t)cfg->nusers * sizeof(_Atomic int);
    char *map = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
        return -errno;
    g.sh = (struct bench_shared *)map;
    g.events = (struct fan_event *)(map + off_ev);
    g.pstats = (struct bench_stats *)(map + off_st);
    g.user_seq = (_Atomic long *)(map + off_us);
    g.user_sessions = (_Atomic int *)(map + off_ss);

    uint64_t start = bench_now_ns();
    g.start_ns = start;
    uint64_t end = start + (uint64_t)(duration * 1e9);
    g.force_append_ns = start + (end - start) / 2;

    struct proc pr = { 0 };
    pid_t *pids = calloc((size_t)nprocs, sizeof *pids);
    if (!pids) {
        munmap(map, maplen);
        return -ENOMEM;
    }
    if (nprocs == 1) {
        rc = proc_start(0, 1, &pr);
    } else {
        fflush(stdout);
        fflush(stderr);
        for (int p = 0; p < nprocs; p++) {
            pids[p] = fork();
            if (pids[p] == 0)
                proc_child(p, nprocs);
            if (pids[p] < 0) {
                rc = -errno;
                break;
            }
        }
    }
    if (rc < 0)
        atomic_store(&g.sh->stop_all, 1);

    uint64_t last_print = start;
    int tty_line = 0;
    while (rc == 0 && !atomic_load(&g.sh->failed)) {
        uint64_t now = bench_now_ns();
        if (now >= end)
            break;
        if (wl == BW_POPULATE && atomic_load(&g.sh->done) >= nclients)
            break;
        if (progress && now - last_print >= 1000000000ull) {
            uint64_t ops = atomic_load_explicit(&g.sh->ops, memory_order_relaxed);
            double el = (double)(now - start) / 1e9;
            fprintf(stderr, "\r%s %5.1f/%gs  ops %llu (%.0f/s)  conns %ld%s   ",
                    wl == BW_POPULATE ? "populate" : cfg->workload_name, el, duration,
                    (unsigned long long)ops, ops / el, atomic_load(&g.sh->conns_now),
                    wl == BW_IDLE ? (atomic_load(&g.sh->appending_started) ? "  appending"
                                                                            : "  holding")
                                  : "");
            tty_line = 1;
            last_print = now;
        }
        sleep_ms(20);
    }
    uint64_t stop = bench_now_ns();
    atomic_store(&g.sh->stop_new, 1);
    if (wl == BW_IDLE) {
        /* grace: let the sessions see the last appends */
        uint64_t grace = bench_now_ns() + 3000000000ull;
        while (bench_now_ns() < grace &&
               atomic_load(&g.sh->seen_events) < atomic_load(&g.sh->nevents))
            sleep_ms(5);
    }
    if (wl == BW_DELIVER) {
        /* grace: the transactions in flight end, the watchers see them */
        uint64_t grace = bench_now_ns() + 5000000000ull;
        while (bench_now_ns() < grace && bench_deliver_outstanding() > 0)
            sleep_ms(5);
    }
    out->conns_end = atomic_load(&g.sh->conns_now);
    out->sessions = atomic_load(&g.sh->idling);
    atomic_store(&g.sh->stop_all, 1);
    if (nprocs == 1) {
        proc_finish(0, &pr);
    } else {
        for (int p = 0; p < nprocs; p++) {
            int status;
            if (pids[p] > 0 && (waitpid(pids[p], &status, 0) < 0 || !WIFEXITED(status) ||
                                WEXITSTATUS(status) != 0))
                rc = rc ? rc : -ECHILD;
        }
    }
    if (atomic_load(&g.sh->failed) && rc == 0)
        rc = -EAGAIN;
    if (tty_line)
        fprintf(stderr, "\n");
    out->elapsed_s = (double)(stop - start) / 1e9;
    out->conns_peak = atomic_load(&g.sh->conns_peak);
    out->appends_sent = atomic_load(&g.sh->nevents);
    out->appends_seen = atomic_load(&g.sh->seen_events);
    out->populate_done = atomic_load(&g.sh->done);
    for (long k = 0; k < out->appends_sent; k++) {
        struct fan_event *e = &g.events[k];
        if (atomic_load(&e->remaining) == 0 && atomic_load(&e->last_seen))
            bench_hist_add(&out->fanout, atomic_load(&e->last_seen) - e->start);
    }
    for (int p = 0; p < nprocs; p++)
        bench_stats_merge(&out->st, &g.pstats[p]);
    if (wl == BW_DELIVER) {
        bench_deliver_collect(&out->st.dl, stop);
        bench_deliver_fini();
    }
    free(pids);
    munmap(map, maplen);
    g.sh = NULL;
    return rc;
}
