/* tests/unit/test_net.c — the runtime (net/) against real sockets on
 * 127.0.0.1, every test once per backend (io_uring, epoll).  Servers have
 * two workers; clients are plain blocking sockets in the test's threads,
 * with receive/send timeouts so that no test can hang; an alarm bounds
 * each test as a whole. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "net/internal.h"
#include "net/net.h"
#include "tests/unit/testutil.h"

static net_backend g_be;
static const char *g_test;

/* ---- helpers ---- */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* Wait until *v >= want (polling), at most ms. */
static bool wait_atleast(atomic_int *v, int want, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    while (atomic_load(v) < want) {
        if (now_ms() > end)
            return false;
        sleep_ms(2);
    }
    return true;
}

static int client_at(int family, int port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = { 5, 0 };
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc;
    if (family == AF_INET) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    } else {
        struct sockaddr_in6 sa = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port) };
        sa.sin6_addr = in6addr_loopback;
        rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    }
    if (rc < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int client(int port)
{
    return client_at(AF_INET, port);
}

static bool write_all(int fd, const void *p_, size_t n)
{
    const uint8_t *p = p_;
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

static bool write_str(int fd, const char *s)
{
    return write_all(fd, s, strlen(s));
}

/* Read exactly n bytes; returns how many arrived before EOF/error. */
static size_t read_exact(int fd, void *p_, size_t n)
{
    uint8_t *p = p_;
    size_t got = 0;
    while (got < n) {
        ssize_t k = recv(fd, p + got, n - got, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    return got;
}

/* Read a line (up to '\n', not included). */
static bool read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        char ch;
        ssize_t k = recv(fd, &ch, 1, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return false;
        if (ch == '\n')
            break;
        buf[n++] = ch;
    }
    buf[n] = '\0';
    return true;
}

/* True if the peer closed (EOF or reset) within the receive timeout,
 * after any bytes (discarded). */
static bool read_eof(int fd)
{
    char buf[4096];
    for (;;) {
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k == 0)
            return true;
        if (k < 0)
            return errno == ECONNRESET;
    }
}

static bool nothing_to_read(int fd)
{
    char ch;
    ssize_t k = recv(fd, &ch, 1, MSG_DONTWAIT);
    return k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static uint8_t pat(size_t off)
{
    return (uint8_t)((off * 2654435761u) >> 13);
}

/* ---- what the servers record, per connection ---- */

struct rec {
    net_conn_id id;
    pthread_t thread;
    atomic_int opens, closes, shutdowns, wakes, timers, drains, datas;
    atomic_int releases;
    char peer[80];
    bool loopback;
    int tag;
    atomic_llong resumed_at, late_data_at;
    atomic_long stash_at_resume;
    atomic_llong max_pending;
};

#define MAXREC 4096
static struct rec g_recs[MAXREC];
static atomic_int g_nrecs, g_opens, g_closes, g_shutdowns, g_timers,
    g_wakes, g_releases, g_drains;
static net_server *g_srv;

static void reset_recs(void)
{
    memset(g_recs, 0, sizeof g_recs);
    atomic_store(&g_nrecs, 0);
    atomic_store(&g_opens, 0);
    atomic_store(&g_closes, 0);
    atomic_store(&g_shutdowns, 0);
    atomic_store(&g_timers, 0);
    atomic_store(&g_wakes, 0);
    atomic_store(&g_releases, 0);
    atomic_store(&g_drains, 0);
}

/* Per-connection user state: freed in on_close (so ASan sees a second
 * on_close as a use after free), pointing at its record (kept). */
struct sess {
    struct rec *r;
    char line[256];
    size_t linelen;
    size_t sent;          /* backpressure producer */
    int mode;
};

static void *common_open(net_conn *c)
{
    int i = atomic_fetch_add(&g_nrecs, 1);
    if (i >= MAXREC)
        return NULL;
    struct rec *r = &g_recs[i];
    r->id = net_conn_get_id(c);
    r->thread = pthread_self();
    snprintf(r->peer, sizeof r->peer, "%s", net_conn_peer(c));
    r->loopback = net_conn_is_loopback(c);
    r->tag = net_conn_tag(c);
    atomic_fetch_add(&r->opens, 1);
    struct sess *s = calloc(1, sizeof *s);
    s->r = r;
    atomic_fetch_add(&g_opens, 1);
    return s;
}

static void common_close(net_conn *c, void *u)
{
    struct sess *s = u;
    (void)c;
    atomic_fetch_add(&s->r->closes, 1);
    free(s);
    atomic_fetch_add(&g_closes, 1);
}

static void common_shutdown(net_conn *c, void *u)
{
    struct sess *s = u;
    atomic_fetch_add(&s->r->shutdowns, 1);
    atomic_fetch_add(&g_shutdowns, 1);
    net_conn_send(c, "BYE\n", 4);
    net_conn_close(c);
}

static void check_exactly_once_closed(int n)
{
    CHECK_EQ(atomic_load(&g_nrecs), n);
    int bad = 0;
    for (int i = 0; i < atomic_load(&g_nrecs) && i < MAXREC; i++)
        if (atomic_load(&g_recs[i].closes) != 1 || atomic_load(&g_recs[i].opens) != 1)
            bad++;
    CHECK_EQ(bad, 0);
}

static net_server *srv_start_cfg(const net_conn_ops *ops, net_config cfg, int *port)
{
    net_server *s = NULL;
    cfg.backend = g_be;
    if (!cfg.workers)
        cfg.workers = 2;
    reset_recs();
    if (net_server_new(&cfg, ops, &s) < 0)
        return NULL;
    if (net_server_listen(s, "127.0.0.1:0") < 0 || net_server_start(s) < 0) {
        net_server_free(s);
        return NULL;
    }
    *port = net_server_port(s, 0);
    g_srv = s;
    return s;
}

static net_server *srv_start(const net_conn_ops *ops, int *port)
{
    net_config cfg = { 0 };
    return srv_start_cfg(ops, cfg, port);
}

static void srv_stop(net_server *s)
{
    net_server_stop(s);
    net_server_wait(s);
    net_server_free(s);
    g_srv = NULL;
}

/* ---- the echo server ---- */

static void echo_data(net_conn *c, void *u, const uint8_t *p, size_t n)
{
    struct sess *s = u;
    atomic_fetch_add(&s->r->datas, 1);
    net_conn_send(c, p, n);
}

static const net_conn_ops echo_ops = {
    .on_open = common_open,
    .on_data = echo_data,
    .on_close = common_close,
    .on_shutdown = common_shutdown,
};

static void t_backend(void)
{
    net_backend b;
    CHECK(net_backend_parse("auto", &b) == 0 && b == NET_BACKEND_AUTO);
    CHECK(net_backend_parse("io_uring", &b) == 0 && b == NET_BACKEND_IO_URING);
    CHECK(net_backend_parse("epoll", &b) == 0 && b == NET_BACKEND_EPOLL);
    CHECK(net_backend_parse("kqueue", &b) == -EINVAL);
    CHECK(net_backend_parse(NULL, &b) == -EINVAL);
    CHECK(!strcmp(net_backend_name(NET_BACKEND_IO_URING), "io_uring"));
    CHECK(!strcmp(net_backend_name(NET_BACKEND_EPOLL), "epoll"));
    CHECK(!strcmp(net_backend_name(NET_BACKEND_AUTO), "auto"));

    int port;
    net_server *s = srv_start(&echo_ops, &port);
    REQUIRE(s);
    /* io_uring works on this machine: asking for it must get it. */
    CHECK_EQ(net_server_backend(s), g_be);
    CHECK(port > 0);
    srv_stop(s);

    /* auto picks io_uring here. */
    net_backend save = g_be;
    g_be = NET_BACKEND_AUTO;
    s = srv_start(&echo_ops, &port);
    g_be = save;
    REQUIRE(s);
    CHECK_EQ(net_server_backend(s), NET_BACKEND_IO_URING);
    srv_stop(s);
}

static void t_echo_small(void)
{
    int port;
    net_server *s = srv_start(&echo_ops, &port);
    REQUIRE(s);
    for (int i = 0; i < 8; i++) {
        int fd = client(port);
        REQUIRE(fd >= 0);
        char msg[64], buf[64];
        int n = snprintf(msg, sizeof msg, "hello %d\r\n", i);
        CHECK(write_all(fd, msg, (size_t)n));
        CHECK_EQ(read_exact(fd, buf, (size_t)n), n);
        CHECK(!memcmp(buf, msg, (size_t)n));
        /* Several writes in a row come back in order. */
        CHECK(write_str(fd, "a") && write_str(fd, "bc") && write_str(fd, "def"));
        CHECK_EQ(read_exact(fd, buf, 6), 6);
        CHECK(!memcmp(buf, "abcdef", 6));
        close(fd);
    }
    CHECK(wait_atleast(&g_closes, 8, 3000));
    srv_stop(s);
    check_exactly_once_closed(8);
}

struct writer {
    int fd;
    size_t n;
    bool ok;
};

static void *writer_main(void *arg)
{
    struct writer *wr = arg;
    uint8_t buf[65536];
    size_t off = 0;
    wr->ok = true;
    while (off < wr->n) {
        size_t k = wr->n - off < sizeof buf ? wr->n - off : sizeof buf;
        for (size_t i = 0; i < k; i++)
            buf[i] = pat(off + i);
        if (!write_all(wr->fd, buf, k)) {
            wr->ok = false;
            break;
        }
        off += k;
    }
    return NULL;
}

/* Read n bytes of pat(); returns bytes that matched before a mismatch. */
static size_t read_pattern(int fd, size_t n, unsigned slow_us)
{
    static __thread uint8_t buf[65536];
    size_t off = 0;
    while (off < n) {
        size_t want = n - off < sizeof buf ? n - off : sizeof buf;
        if (slow_us && want > 16384)
            want = 16384;
        ssize_t k = recv(fd, buf, want, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        for (ssize_t i = 0; i < k; i++)
            if (buf[i] != pat(off + (size_t)i))
                return off + (size_t)i;
        off += (size_t)k;
        if (slow_us)
            usleep(slow_us);
    }
    return off;
}

static void t_echo_big(void)
{
    int port;
    net_server *s = srv_start(&echo_ops, &port);
    REQUIRE(s);
    int fd = client(port);
    REQUIRE(fd >= 0);
    struct writer wr = { .fd = fd, .n = 10u << 20 };
    pthread_t th;
    pthread_create(&th, NULL, writer_main, &wr);
    size_t got = read_pattern(fd, wr.n, 0);
    pthread_join(th, NULL);
    CHECK(wr.ok);
    CHECK_EQ(got, wr.n);
    close(fd);
    CHECK(wait_atleast(&g_closes, 1, 3000));
    srv_stop(s);
    check_exactly_once_closed(1);
}

static void t_bytewise(void)
{
    int port;
    net_server *s = srv_start(&echo_ops, &port);
    REQUIRE(s);
    int fd = client(port);
    REQUIRE(fd >= 0);
    const char *msg = "a command that arrives one byte at a time\r\n"
                      "and another one, with a {5}\r\nliteral\r\n";
    size_t n = strlen(msg);
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        char ch;
        ok = write_all(fd, msg + i, 1) && read_exact(fd, &ch, 1) == 1 && ch == msg[i];
    }
    CHECK(ok);
    close(fd);
    CHECK(wait_atleast(&g_closes, 1, 3000));
    /* Each byte was its own on_data: nothing waited for more. */
    CHECK_EQ(atomic_load(&g_recs[0].datas), (int)n);
    srv_stop(s);
    check_exactly_once_closed(1);
}

static void t_many(void)
{
    enum { N = 1000 };
    static int fds[N];
    int port;
    net_server *s = srv_start(&echo_ops, &port);
    REQUIRE(s);
    int ok = 0;
    for (int i = 0; i < N; i++)
        fds[i] = client(port);
    /* All send before any reads: the server sees a burst of receives
     * (on io_uring more than its buffer ring holds, so ENOBUFS re-arms). */
    for (int i = 0; i < N; i++) {
        char msg[32];
        int n = snprintf(msg, sizeof msg, "conn %04d\n", i);
        if (fds[i] >= 0)
            write_all(fds[i], msg, (size_t)n);
    }
    for (int i = 0; i < N; i++) {
        char msg[32], buf[32];
        int n = snprintf(msg, sizeof msg, "conn %04d\n", i);
        if (fds[i] >= 0 && read_exact(fds[i], buf, (size_t)n) == (size_t)n &&
            !memcmp(buf, msg, (size_t)n))
            ok++;
    }
    CHECK_EQ(ok, N);
    CHECK_EQ(atomic_load(&g_opens), N);
    /* Both workers got some (SO_REUSEPORT spreads by hash). */
    int per[2] = { 0, 0 };
    for (int i = 0; i < atomic_load(&g_nrecs); i++)
        per[g_recs[i].id.worker & 1]++;
    CHECK(per[0] > 0 && per[1] > 0);
    for (int i = 0; i < N; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    CHECK(wait_atleast(&g_closes, N, 5000));
    srv_stop(s);
    check_exactly_once_closed(N);
}

/* io_uring with a buffer ring of 2: receives run dry all the time (ENOBUFS
 * ends the multishot receive, which must be re-armed), data still flows. */
static void t_tiny_ring(void)
{
    unsigned save = net_uring_bufs;
    net_uring_bufs = 2;
    t_many();
    t_echo_big();
    net_uring_bufs = save;
}

/* Out of descriptors (EMFILE): the worker backs off and accepts the
 * waiting connections once descriptors are available again. */
static void t_emfile(void)
{
    enum { N = 8 };
    int port, fds[N];
    net_server *s = srv_start(&echo_ops, &port);
    REQUIRE(s);
    for (int i = 0; i < N; i++)
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    /* Use up every descriptor (io_uring's accept checks the limit that
     * was in force when it was armed, so lowering the limit would not do). */
    static int fill[1 << 20];
    int nfill = 0;
    while (nfill < (1 << 20) && (fill[nfill] = dup(2)) >= 0)
        nfill++;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int connected = 0;
    for (int i = 0; i < N; i++)
        connected += connect(fds[i], (struct sockaddr *)&sa, sizeof sa) == 0;
    sleep_ms(300);
    int opened_while_low = atomic_load(&g_opens);
    while (nfill)
        close(fill[--nfill]);
    CHECK_EQ(connected, N);
    CHECK_EQ(opened_while_low, 0);
    struct timeval tv = { 5, 0 };
    int ok = 0;
    for (int i = 0; i < N; i++) {
        char buf[4];
        setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (write_all(fds[i], "emf", 3) && read_exact(fds[i], buf, 3) == 3)
            ok++;
        close(fds[i]);
    }
    CHECK_EQ(ok, N);
    CHECK(wait_atleast(&g_closes, N, 3000));
    srv_stop(s);
    check_exactly_once_closed(N);
}

/* ---- send_ref ---- */

#define REF_SIZE (8u << 20)
static uint8_t *g_big;

static void big_init(void)
{
    if (g_big)
        return;
    g_big = malloc(REF_SIZE);
    for (size_t i = 0; i < REF_SIZE; i++)
        g_big[i] = pat(i);
}

static void ref_release(void *arg)
{
    struct rec *r = arg;
    atomic_fetch_add(&r->releases, 1);
    atomic_fetch_add(&g_releases, 1);
}

/* Line commands: GET (REF_SIZE borrowed bytes), MIX (copied and borrowed
 * pieces interleaved), BIG (4 MiB copied, then close). */
static void ref_data(net_conn *c, void *u, const uint8_t *p, size_t n)
{
    struct sess *s = u;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\n') {
            if (s->linelen < sizeof s->line - 1)
                s->line[s->linelen++] = (char)p[i];
            continue;
        }
        s->line[s->linelen] = '\0';
        s->linelen = 0;
        if (!strcmp(s->line, "GET")) {
            net_conn_send_ref(c, g_big, REF_SIZE, ref_release, s->r);
        } else if (!strcmp(s->line, "MIX")) {
            net_conn_send(c, g_big, 10);
            net_conn_send_ref(c, g_big + 10, 5000, ref_release, s->r);
            net_conn_send(c, g_big + 5010, 3);
            net_conn_send_ref(c, g_big + 5013, 1, ref_release, s->r);
            net_conn_send_ref(c, g_big + 5014, 0, ref_release, s->r);
            net_conn_send(c, g_big + 5014, 100000);
        } else if (!strcmp(s->line, "BIG")) {
            net_conn_send(c, g_big, 4u << 20);
            net_conn_close(c);
        }
    }
}

static const net_conn_ops ref_ops = {
    .on_open = common_open,
    .on_data = ref_data,
    .on_close = common_close,
    .on_shutdown = common_shutdown,
};

static void t_send_ref(void)
{
    big_init();
    int port;
    net_server *s = srv_start(&ref_ops, &port);
    REQUIRE(s);

    /* Fully sent: released once. */
    int fd = client(port);
    REQUIRE(fd >= 0);
    CHECK(write_str(fd, "GET\n"));
    CHECK_EQ(read_pattern(fd, REF_SIZE, 0), REF_SIZE);
    CHECK(wait_atleast(&g_releases, 1, 3000));
    CHECK(nothing_to_read(fd));
    /* Interleaved with copies, in order; zero-length released at once. */
    CHECK(write_str(fd, "MIX\n"));
    CHECK_EQ(read_pattern(fd, 5014 + 100000, 0), 5014 + 100000);
    CHECK(wait_atleast(&g_releases, 4, 3000));
    close(fd);

    /* The peer goes away mid-send (reset): released once all the same. */
    fd = client(port);
    REQUIRE(fd >= 0);
    CHECK(write_str(fd, "GET\n"));
    CHECK_EQ(read_pattern(fd, 100000, 0), 100000);
    struct linger lg = { 1, 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
    CHECK(wait_atleast(&g_closes, 2, 5000));
    CHECK(wait_atleast(&g_releases, 5, 3000));

    /* Peer closes politely without reading. */
    fd = client(port);
    REQUIRE(fd >= 0);
    CHECK(write_str(fd, "GET\n"));
    sleep_ms(20);
    close(fd);
    CHECK(wait_atleast(&g_closes, 3, 5000));
    CHECK(wait_atleast(&g_releases, 6, 3000));

    /* Close after a big copied send: everything arrives, then EOF. */
    fd = client(port);
    REQUIRE(fd >= 0);
    CHECK(write_str(fd, "BIG\n"));
    CHECK_EQ(read_pattern(fd, 4u << 20, 0), 4u << 20);
    CHECK(read_eof(fd));
    close(fd);
    CHECK(wait_atleast(&g_closes, 4, 5000));

    srv_stop(s);
    check_exactly_once_closed(4);
    CHECK_EQ(atomic_load(&g_recs[0].releases), 4);
    CHECK_EQ(atomic_load(&g_recs[1].releases), 1);
    CHECK_EQ(atomic_load(&g_recs[2].releases), 1);
    CHECK_EQ(atomic_load(&g_releases), 6);
}

/* ---- a line-command server for timers, wakes, posts ---- */

static void cmd_timer(net_conn *c, void *u)
{
    struct sess *s = u;
    atomic_fetch_add(&s->r->timers, 1);
    atomic_fetch_add(&g_timers, 1);
    net_conn_send(c, "T\n", 2);
}

static void cmd_wake(net_conn *c, void *u)
{
    struct sess *s = u;
    atomic_fetch_add(&s->r->wakes, 1);
    atomic_fetch_add(&g_wakes, 1);
    net_conn_send(c, "W\n", 2);
}

static void cmd_data(net_conn *c, void *u, const uint8_t *p, size_t n)
{
    struct sess *s = u;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\n') {
            if (s->linelen < sizeof s->line - 1)
                s->line[s->linelen++] = (char)p[i];
            continue;
        }
        s->line[s->linelen] = '\0';
        s->linelen = 0;
        char out[64];
        if (!strcmp(s->line, "ID")) {
            int n2 = snprintf(out, sizeof out, "%d\n", (int)(s->r - g_recs));
            net_conn_send(c, out, (size_t)n2);
        } else if (s->line[0] == 'A') {          /* A<ms>: arm the timer */
            net_conn_timer(c, (uint32_t)atoi(s->line + 1));
            net_conn_send(c, "ok\n", 3);
        } else if (!strcmp(s->line, "QUIT")) {
            net_conn_send(c, "bye\n", 4);
            net_conn_close(c);
        }
    }
}

static const net_conn_ops cmd_ops = {
    .on_open = common_open,
    .on_data = cmd_data,
    .on_timer = cmd_timer,
    .on_wake = cmd_wake,
    .on_close = common_close,
    .on_shutdown = common_shutdown,
};

static int rec_of(int fd)
{
    char line[32];
    if (!write_str(fd, "ID\n") || !read_line(fd, line, sizeof line))
        return -1;
    return atoi(line);
}

static void t_timer(void)
{
    int port;
    net_server *s = srv_start(&cmd_ops, &port);
    REQUIRE(s);
    char line[32];

    /* Fires, once, not early. */
    int fd = client(port);
    REQUIRE(fd >= 0);
    uint64_t t0 = now_ms();
    CHECK(write_str(fd, "A50\n") && read_line(fd, line, sizeof line) && !strcmp(line, "ok"));
    CHECK(read_line(fd, line, sizeof line) && !strcmp(line, "T"));
    CHECK(now_ms() - t0 >= 45);
    sleep_ms(100);
    CHECK(nothing_to_read(fd));

    /* Cancel: armed, then 0 before it fires. */
    CHECK(write_str(fd, "A100\nA0\n"));
    CHECK(read_line(fd, line, sizeof line) && !strcmp(line, "ok"));
    CHECK(read_line(fd, line, sizeof line) && !strcmp(line, "ok"));
    sleep_ms(250);
    CHECK(nothing_to_read(fd));

    /* Re-arming replaces: 5000 then 30 fires once, at ~30. */
    t0 = now_ms();
    CHECK(write_str(fd, "A5000\nA30\n"));
    CHECK(read_line(fd, line, sizeof line) && read_line(fd, line, sizeof line));
    CHECK(read_line(fd, line, sizeof line) && !strcmp(line, "T"));
    CHECK(now_ms() - t0 < 2000);
    CHECK_EQ(atomic_load(&g_timers), 2);
    close(fd);

    /* Many connections, many deadlines: all fire. */
    enum { N = 200 };
    static int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = client(port);
        char cmd[32];
        snprintf(cmd, sizeof cmd, "A%d\n", 10 + (i * 37) % 200);
        if (fds[i] >= 0)
            write_str(fds[i], cmd);
    }
    int fired = 0;
    for (int i = 0; i < N; i++)
        if (fds[i] >= 0 && read_line(fds[i], line, sizeof line) &&
            read_line(fds[i], line, sizeof line) && !strcmp(line, "T"))
            fired++;
    CHECK_EQ(fired, N);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    CHECK(wait_atleast(&g_closes, N + 1, 5000));
    srv_stop(s);
    check_exactly_once_closed(N + 1);
}

/* The heap directly: random arm/re-arm/cancel against a reference. */
static void t_timer_heap(void)
{
    enum { N = 500 };
    static struct net_conn cs[N];
    static bool armed[N];
    struct net_heap h = { 0 };
    memset(cs, 0, sizeof cs);
    memset(armed, 0, sizeof armed);
    unsigned seed = 12345;
    int bad = 0;
    for (int step = 0; step < 20000; step++) {
        seed = seed * 1103515245u + 12345u;
        int i = (int)((seed >> 8) % N);
        int op = (int)((seed >> 20) % 4);
        if (op < 2) {
            net_heap_set(&h, &cs[i], (seed >> 4) % 100000);
            armed[i] = true;
        } else if (op == 2) {
            net_heap_del(&h, &cs[i]);
            armed[i] = false;
        } else if (h.n) {
            struct net_conn *t = net_heap_top(&h);
            for (int k = 0; k < N; k++)
                if (armed[k] && cs[k].deadline < t->deadline)
                    bad++;
            net_heap_del(&h, t);
            armed[t - cs] = false;
        }
    }
    size_t n = 0;
    for (int k = 0; k < N; k++)
        n += armed[k];
    CHECK_EQ(n, h.n);
    uint64_t last = 0;
    while (h.n) {
        struct net_conn *t = net_heap_top(&h);
        if (t->deadline < last)
            bad++;
        last = t->deadline;
        net_heap_del(&h, t);
    }
    CHECK_EQ(bad, 0);
    net_heap_free(&h);
}

struct waker {
    net_server *s;
    net_conn_id id;
    int times;
};

static void *waker_main(void *arg)
{
    struct waker *wk = arg;
    for (int i = 0; i < wk->times; i++)
        net_wake(wk->s, wk->id);
    return NULL;
}

static void t_wake(void)
{
    int port;
    net_server *s = srv_start(&cmd_ops, &port);
    REQUIRE(s);
    enum { N = 6 };
    int fds[N], idx[N];
    for (int i = 0; i < N; i++) {
        fds[i] = client(port);
        REQUIRE(fds[i] >= 0);
        idx[i] = rec_of(fds[i]);
        REQUIRE(idx[i] >= 0 && idx[i] < N);
    }
    char line[32];
    /* From another thread, to the right connection only. */
    for (int i = 0; i < N; i++) {
        struct waker wk = { s, g_recs[idx[i]].id, 1 };
        pthread_t th;
        pthread_create(&th, NULL, waker_main, &wk);
        pthread_join(th, NULL);
        CHECK(read_line(fds[i], line, sizeof line) && !strcmp(line, "W"));
        CHECK_EQ(atomic_load(&g_recs[idx[i]].wakes), 1);
    }
    sleep_ms(50);
    for (int i = 0; i < N; i++)
        CHECK(nothing_to_read(fds[i]));

    /* Many wakes at once coalesce (at least one, at most as many). */
    struct waker wk = { s, g_recs[idx[0]].id, 1000 };
    pthread_t th;
    pthread_create(&th, NULL, waker_main, &wk);
    pthread_join(th, NULL);
    CHECK(read_line(fds[0], line, sizeof line) && !strcmp(line, "W"));
    sleep_ms(50);
    int w0 = atomic_load(&g_recs[idx[0]].wakes);
    CHECK(w0 >= 2 && w0 <= 1001);

    /* Stale ids and nonsense are ignored. */
    int before = atomic_load(&g_wakes);
    net_conn_id gone = g_recs[idx[1]].id;
    close(fds[1]);
    CHECK(wait_atleast(&g_closes, 1, 3000));
    net_wake(s, gone);
    net_conn_id never = { .worker = 0, .seq = 999999 };
    net_wake(s, never);
    net_conn_id badw = { .worker = 77, .seq = 1 };
    net_wake(s, badw);
    sleep_ms(100);
    CHECK_EQ(atomic_load(&g_wakes), before);
    for (int i = 2; i < N; i++)
        CHECK(nothing_to_read(fds[i]));

    for (int i = 0; i < N; i++)
        if (i != 1)
            close(fds[i]);
    CHECK(wait_atleast(&g_closes, N, 3000));
    srv_stop(s);
    check_exactly_once_closed(N);
}

struct posted {
    atomic_int ran;
    pthread_t thread;
    unsigned worker;
};

static void post_fn(void *arg)
{
    struct posted *p = arg;
    p->thread = pthread_self();
    atomic_fetch_add(&p->ran, 1);
}

static void t_post(void)
{
    int port;
    net_server *s = srv_start(&cmd_ops, &port);
    REQUIRE(s);
    enum { N = 24 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = client(port);
        REQUIRE(fds[i] >= 0);
    }
    CHECK(wait_atleast(&g_opens, N, 3000));
    struct posted p[2] = { 0 };
    for (unsigned w = 0; w < 2; w++) {
        p[w].worker = w;
        CHECK_EQ(net_post(s, w, post_fn, &p[w]), 0);
    }
    CHECK(wait_atleast(&p[0].ran, 1, 3000));
    CHECK(wait_atleast(&p[1].ran, 1, 3000));
    CHECK(!pthread_equal(p[0].thread, p[1].thread));
    CHECK(!pthread_equal(p[0].thread, pthread_self()));
    /* Each ran on the thread that runs that worker's connections. */
    int matched = 0;
    for (int i = 0; i < N; i++) {
        struct rec *r = &g_recs[i];
        if (pthread_equal(r->thread, p[r->id.worker].thread))
            matched++;
    }
    CHECK_EQ(matched, N);
    CHECK_EQ(net_post(s, 2, post_fn, &p[0]), -EINVAL);
    CHECK_EQ(net_post(s, 0, NULL, NULL), -EINVAL);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    CHECK(wait_atleast(&g_closes, N, 3000));
    net_server_stop(s);
    net_server_wait(s);
    CHECK_EQ(net_post(s, 0, post_fn, &p[0]), -ESHUTDOWN);
    net_server_free(s);
    CHECK_EQ(atomic_load(&p[0].ran), 1);
    check_exactly_once_closed(N);
}

/* ---- pause / resume ---- */

/* Echo; a lone "P" (the first one) pauses for 100 ms, resumed by the
 * timer.  No on_data may run in between. */
static void pause_data(net_conn *c, void *u, const uint8_t *p, size_t n)
{
    struct sess *s = u;
    if (s->mode == 1)
        atomic_fetch_add(&s->r->wakes, 1);      /* here: a violation */
    if (s->mode == 2 && !atomic_load(&s->r->late_data_at))
        atomic_store(&s->r->late_data_at, (long long)now_ms());
    net_conn_send(c, p, n);
    if (!s->mode && n == 1 && p[0] == 'P') {
        s->mode = 1;
        net_conn_pause(c, true);
        net_conn_timer(c, 100);
    }
}

static void pause_timer(net_conn *c, void *u)
{
    struct sess *s = u;
    /* What io_uring had to keep while paused: only what was in flight
     * before the receive was cancelled, not everything the client sent. */
    atomic_store(&s->r->stash_at_resume, c->stash ? (long)c->stash->len : 0);
    atomic_store(&s->r->resumed_at, (long long)now_ms());
    s->mode = 2;
    net_conn_pause(c, false);
}

static const net_conn_ops pause_ops = {
    .on_open = common_open,
    .on_data = pause_data,
    .on_timer = pause_timer,
    .on_close = common_close,
    .on_shutdown = common_shutdown,
};

static void t_pause(void)
{
    int port;
    net_server *s = srv_start(&pause_ops, &port);
    REQUIRE(s);

    int fd = client(port);
    REQUIRE(fd >= 0);
    char buf[64];
    struct rec *r = &g_recs[0];
    CHECK(write_str(fd, "P"));
    CHECK_EQ(read_exact(fd, buf, 1), 1);
    sleep_ms(20);
    CHECK(write_str(fd, "hello"));
    sleep_ms(20);
    CHECK(write_str(fd, " world"));
    CHECK_EQ(read_exact(fd, buf, 11), 11);
    CHECK(!memcmp(buf, "hello world", 11));
    CHECK(atomic_load(&r->resumed_at) > 0);
    CHECK(atomic_load(&r->late_data_at) >= atomic_load(&r->resumed_at));
    CHECK_EQ(atomic_load(&r->wakes), 0);
    /* After resuming, data flows as usual. */
    CHECK(write_str(fd, "again") && read_exact(fd, buf, 5) == 5 && !memcmp(buf, "again", 5));
    close(fd);

    /* Paused while the client sends a lot: little is held by the server,
     * and everything arrives after the resume. */
    fd = client(port);
    REQUIRE(fd >= 0);
    CHECK(write_str(fd, "P"));
    CHECK_EQ(read_exact(fd, buf, 1), 1);
    struct writer wr = { .fd = fd, .n = 4u << 20 };
    pthread_t th;
    pthread_create(&th, NULL, writer_main, &wr);
    /* The pattern may contain 'P' (pausing again): read it all anyway. */
    size_t got = read_pattern(fd, wr.n, 0);
    pthread_join(th, NULL);
    CHECK(wr.ok);
    CHECK_EQ(got, wr.n);
    CHECK(atomic_load(&g_recs[1].stash_at_resume) <= 1024 * 1024);
    CHECK_EQ(atomic_load(&g_recs[1].wakes), 0);
    close(fd);

    /* Peer closes while paused: the pending bytes are still delivered
     * (and echoed) before the close. */
    fd = client(port);
    REQUIRE(fd >= 0);
    CHECK(write_str(fd, "P"));
    CHECK_EQ(read_exact(fd, buf, 1), 1);
    CHECK(write_str(fd, "xyz"));
    shutdown(fd, SHUT_WR);
    CHECK_EQ(read_exact(fd, buf, 3), 3);
    CHECK(!memcmp(buf, "xyz", 3));
    CHECK(read_eof(fd));
    close(fd);

    CHECK(wait_atleast(&g_closes, 3, 3000));
    srv_stop(s);
    check_exactly_once_closed(3);
}

/* ---- backpressure ---- */

#define BP_TOTAL (8u << 20)
#define BP_CHUNK 65536

static void bp_produce(net_conn *c, struct sess *s)
{
    /* Produce until the queue is above high water, then wait for on_drain. */
    while (s->sent < BP_TOTAL && net_conn_pending(c) <= 256 * 1024) {
        size_t k = BP_TOTAL - s->sent < BP_CHUNK ? BP_TOTAL - s->sent : BP_CHUNK;
        net_conn_send(c, g_big + s->sent, k);
        s->sent += k;
        long long p = (long long)net_conn_pending(c);
        if (p > atomic_load(&s->r->max_pending))
            atomic_store(&s->r->max_pending, p);
    }
}

static void bp_data(net_conn *c, void *u, const uint8_t *p, size_t n)
{
    struct sess *s = u;
    if (memchr(p, '\n', n) && !s->mode) {
        s->mode = 1;
        bp_produce(c, s);
    }
}

static void bp_drain(net_conn *c, void *u)
{
    struct sess *s = u;
    atomic_fetch_add(&s->r->drains, 1);
    atomic_fetch_add(&g_drains, 1);
    /* on_drain promises the queue is at or below low water. */
    if (net_conn_pending(c) > 64 * 1024)
        atomic_store(&s->r->max_pending, 1LL << 40);
    bp_produce(c, s);
}

static const net_conn_ops bp_ops = {
    .on_open = common_open,
    .on_data = bp_data,
    .on_drain = bp_drain,
    .on_close = common_close,
    .on_shutdown = common_shutdown,
};

static void t_backpressure(void)
{
    big_init();
    int port;
    net_config cfg = { .high_water = 256 * 1024, .low_water = 64 * 1024 };
    net_server *s = srv_start_cfg(&bp_ops, cfg, &port);
    REQUIRE(s);
    int fd = client(port);
    REQUIRE(fd >= 0);
    int small = 32 * 1024;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    CHECK(write_str(fd, "GO\n"));
    /* A slow reader: 16 KiB per 300 us. */
    CHECK_EQ(read_pattern(fd, BP_TOTAL, 300), BP_TOTAL);
    CHECK(atomic_load(&g_recs[0].drains) >= 1);
    CHECK(atomic_load(&g_recs[0].max_pending) <= 256 * 1024 + BP_CHUNK);
    close(fd);
    CHECK(wait_atleast(&g_closes, 1, 3000));
    srv_stop(s);
    check_exactly_once_closed(1);
}

/* ---- graceful stop ---- */

static void stop_sig(int sig)
{
    (void)sig;
    if (g_srv)
        net_server_stop(g_srv);
}

static void t_stop(void)
{
    /* More than a ring's worth of SQEs per worker to close them all. */
    enum { N = 1200 };
    static int fds[N];
    int port;
    net_server *s = srv_start(&echo_ops, &port);
    REQUIRE(s);
    for (int i = 0; i < N; i++) {
        fds[i] = client(port);
        REQUIRE(fds[i] >= 0);
    }
    CHECK(wait_atleast(&g_opens, N, 3000));
    /* From a signal handler: net_server_stop is async-signal-safe. */
    struct sigaction sa = { .sa_handler = stop_sig }, old;
    sigaction(SIGUSR1, &sa, &old);
    raise(SIGUSR1);
    sigaction(SIGUSR1, &old, NULL);
    int byes = 0, eofs = 0;
    for (int i = 0; i < N; i++) {
        char line[16];
        if (read_line(fds[i], line, sizeof line) && !strcmp(line, "BYE"))
            byes++;
        if (read_eof(fds[i]))
            eofs++;
        close(fds[i]);
    }
    uint64_t t0 = now_ms();
    net_server_wait(s);
    CHECK(now_ms() - t0 < 3000);
    net_server_free(s);
    g_srv = NULL;
    CHECK_EQ(byes, N);
    CHECK_EQ(eofs, N);
    CHECK_EQ(atomic_load(&net_hard_stops), 0);
    CHECK_EQ(atomic_load(&g_shutdowns), N);
    for (int i = 0; i < N; i++)
        CHECK_EQ(atomic_load(&g_recs[i].shutdowns), 1);
    check_exactly_once_closed(N);
}

/* No on_shutdown: net closes them itself, all in the same round (on
 * io_uring more SQEs than the ring holds: links must not be split). */
static const net_conn_ops quiet_ops = {
    .on_open = common_open,
    .on_data = echo_data,
    .on_close = common_close,
};

static void t_stop_quiet(void)
{
    enum { N = 1200 };
    static int fds[N];
    int port;
    net_server *s = srv_start(&quiet_ops, &port);
    REQUIRE(s);
    for (int i = 0; i < N; i++) {
        fds[i] = client(port);
        REQUIRE(fds[i] >= 0);
    }
    CHECK(wait_atleast(&g_opens, N, 3000));
    net_server_stop(s);
    net_server_wait(s);
    net_server_free(s);
    g_srv = NULL;
    int eofs = 0;
    for (int i = 0; i < N; i++) {
        eofs += read_eof(fds[i]);
        close(fds[i]);
    }
    CHECK_EQ(eofs, N);
    CHECK_EQ(atomic_load(&net_hard_stops), 0);
    check_exactly_once_closed(N);
}

/* on_shutdown that ignores the request; a borrowed send the client never
 * reads: closed anyway after shutdown_ms, release still runs once. */
static void ignore_shutdown(net_conn *c, void *u)
{
    struct sess *s = u;
    (void)c;
    atomic_fetch_add(&s->r->shutdowns, 1);
    atomic_fetch_add(&g_shutdowns, 1);
}

static const net_conn_ops stubborn_ops = {
    .on_open = common_open,
    .on_data = ref_data,
    .on_close = common_close,
    .on_shutdown = ignore_shutdown,
};

static void t_stop_forced(void)
{
    big_init();
    enum { N = 10 };
    int fds[N], port;
    net_config cfg = { .shutdown_ms = 300 };
    net_server *s = srv_start_cfg(&stubborn_ops, cfg, &port);
    REQUIRE(s);
    for (int i = 0; i < N; i++) {
        fds[i] = client(port);
        REQUIRE(fds[i] >= 0);
        if (i < 3)
            write_str(fds[i], "GET\n");
    }
    CHECK(wait_atleast(&g_opens, N, 3000));
    sleep_ms(50);
    uint64_t t0 = now_ms();
    net_server_stop(s);
    net_server_stop(s);     /* twice is fine */
    net_server_wait(s);
    uint64_t took = now_ms() - t0;
    CHECK(took >= 250 && took < 3000);
    CHECK_EQ(atomic_load(&net_hard_stops), 0);
    net_server_free(s);
    g_srv = NULL;
    CHECK_EQ(atomic_load(&g_shutdowns), N);
    CHECK_EQ(atomic_load(&g_releases), 3);
    for (int i = 0; i < N; i++) {
        CHECK(read_eof(fds[i]));
        close(fds[i]);
    }
    check_exactly_once_closed(N);
}

/* ---- refusing, addresses ---- */

static void *refuse_open(net_conn *c)
{
    atomic_fetch_add(&g_opens, 1);
    net_conn_send(c, "NO\n", 3);
    return NULL;
}

static const net_conn_ops refuse_ops = {
    .on_open = refuse_open,
    .on_data = echo_data,
    .on_close = common_close,
};

static void t_refuse(void)
{
    int port;
    net_server *s = srv_start(&refuse_ops, &port);
    REQUIRE(s);
    int fd = client(port);
    REQUIRE(fd >= 0);
    char line[16];
    CHECK(read_line(fd, line, sizeof line) && !strcmp(line, "NO"));
    CHECK(read_eof(fd));
    close(fd);
    srv_stop(s);
    CHECK_EQ(atomic_load(&g_opens), 1);
    CHECK_EQ(atomic_load(&g_closes), 0);
}

static bool have_ipv6_loopback(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in6 sa = { .sin6_family = AF_INET6 };
    sa.sin6_addr = in6addr_loopback;
    bool ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

static void t_addresses(void)
{
    net_config cfg = { .workers = 2, .backend = g_be };
    net_server *s;
    reset_recs();
    REQUIRE_OK(net_server_new(&cfg, &cmd_ops, &s));
    CHECK_EQ(net_server_listen(s, "127.0.0.1"), -EINVAL);
    CHECK_EQ(net_server_listen(s, "nosuchhost:1"), -EINVAL);
    CHECK_EQ(net_server_listen(s, "127.0.0.1:99999"), -EINVAL);
    CHECK_EQ(net_server_listen(s, "[::1:5"), -EINVAL);
    REQUIRE_OK(net_server_listen(s, "127.0.0.1:0"));
    bool v6 = have_ipv6_loopback();
    if (v6)
        REQUIRE_OK(net_server_listen(s, "[::1]:0"));
    CHECK_EQ(net_server_port(s, 7), -EINVAL);
    REQUIRE_OK(net_server_start(s));
    CHECK_EQ(net_server_listen(s, "127.0.0.1:0"), -EBUSY);
    int p4 = net_server_port(s, 0);
    CHECK(p4 > 0);
    /* Every worker's socket is on that port: all connections succeed and
     * both workers see some. */
    int fds[16], n = 0;
    for (int i = 0; i < 12; i++) {
        fds[n] = client(p4);
        if (fds[n] >= 0 && rec_of(fds[n]) >= 0)
            n++;
    }
    CHECK_EQ(n, 12);
    if (v6) {
        int p6 = net_server_port(s, 1);
        CHECK(p6 > 0);
        fds[n] = client_at(AF_INET6, p6);
        CHECK(fds[n] >= 0 && rec_of(fds[n]) >= 0);
        n++;
    }
    CHECK(wait_atleast(&g_opens, n, 3000));
    bool w0 = false, w1 = false;
    for (int i = 0; i < 12; i++) {
        CHECK(!strncmp(g_recs[i].peer, "127.0.0.1:", 10));
        CHECK(g_recs[i].loopback);
        w0 |= g_recs[i].id.worker == 0;
        w1 |= g_recs[i].id.worker == 1;
    }
    CHECK(w0 && w1);
    if (v6) {
        CHECK(!strncmp(g_recs[12].peer, "[::1]:", 6));
        CHECK(g_recs[12].loopback);
    }
    /* QUIT: the response is flushed, then the connection closes. */
    char line[16];
    CHECK(write_str(fds[0], "QUIT\n") && read_line(fds[0], line, sizeof line) &&
          !strcmp(line, "bye"));
    CHECK(read_eof(fds[0]));
    for (int i = 0; i < n; i++)
        close(fds[i]);
    CHECK(wait_atleast(&g_closes, n, 3000));
    net_server_stop(s);
    net_server_wait(s);
    net_server_free(s);
    check_exactly_once_closed(n);

    /* The loopback test itself, on crafted addresses. */
    struct net_conn c = { 0 };
    struct sockaddr_in in4 = { .sin_family = AF_INET, .sin_port = htons(143) };
    inet_pton(AF_INET, "127.1.2.3", &in4.sin_addr);
    net_addr_store(&c, (struct sockaddr *)&in4);
    CHECK(net_conn_is_loopback(&c));
    inet_pton(AF_INET, "10.0.0.1", &in4.sin_addr);
    net_addr_store(&c, (struct sockaddr *)&in4);
    CHECK(!net_conn_is_loopback(&c));
    struct sockaddr_in6 in6 = { .sin6_family = AF_INET6, .sin6_port = htons(993) };
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &in6.sin6_addr);
    net_addr_store(&c, (struct sockaddr *)&in6);
    CHECK(net_conn_is_loopback(&c));
    inet_pton(AF_INET6, "::ffff:10.0.0.1", &in6.sin6_addr);
    net_addr_store(&c, (struct sockaddr *)&in6);
    CHECK(!net_conn_is_loopback(&c));
    inet_pton(AF_INET6, "2001:db8::1", &in6.sin6_addr);
    net_addr_store(&c, (struct sockaddr *)&in6);
    CHECK(!net_conn_is_loopback(&c));
    CHECK(!strcmp(net_conn_peer(&c), "[2001:db8::1]:993"));
    free(c.peer);
}

/* Where io_uring is forbidden (a container's seccomp profile: EPERM from
 * io_uring_setup), auto falls back to epoll and io_uring fails to start.
 * In a child process, since the filter cannot be removed. */
static int forbid_io_uring(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof f / sizeof f[0], .filter = f };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -errno;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
        return -errno;
    return 0;
}

static void t_no_io_uring(void)
{
#if defined(__x86_64__)
    fflush(stderr);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int fails = 0;
        if (forbid_io_uring() < 0)
            _exit(77);
        net_config cfg = { .workers = 2, .backend = NET_BACKEND_IO_URING };
        net_server *s;
        if (net_server_new(&cfg, &echo_ops, &s) < 0 ||
            net_server_listen(s, "127.0.0.1:0") < 0)
            _exit(2);
        fails += net_server_start(s) != -EPERM;
        net_server_free(s);

        g_be = NET_BACKEND_AUTO;
        int port;
        s = srv_start(&echo_ops, &port);
        if (!s)
            _exit(3);
        fails += net_server_backend(s) != NET_BACKEND_EPOLL;
        int fd = client(port);
        char buf[8];
        fails += !(fd >= 0 && write_all(fd, "ping", 4) && read_exact(fd, buf, 4) == 4 &&
                   !memcmp(buf, "ping", 4));
        close(fd);
        srv_stop(s);
        _exit(fails ? 1 : 0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
        fprintf(stderr, "t_no_io_uring: cannot install seccomp filter, skipped\n");
        return;
    }
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
#endif
}

static void t_conn_size(void)
{
    /* The headline number: an idle connection is this plus a table slot. */
    CHECK(sizeof(struct net_conn) <= 128);
}

/* ---- running ---- */

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "test_net: time limit exceeded in ";
    ssize_t r = write(2, msg, sizeof msg - 1);
    if (g_test)
        r = write(2, g_test, strlen(g_test));
    r = write(2, "\n", 1);
    (void)r;
    _exit(3);
}

/* ---- yield: long work in slices ---- */

/* "Y<n>\n" starts work of n slices: each on_resume is one, and yields
 * again until the last, which answers "done <resumes>".  "ID\n" is
 * answered at once (cmd_data), also while another connection yields. */
static atomic_int g_resumes;

static void yield_resume(net_conn *c, void *u)
{
    struct sess *s = u;
    atomic_fetch_add(&g_resumes, 1);
    atomic_fetch_add(&s->r->wakes, 1);
    if (--s->mode > 0) {
        net_conn_yield(c);
        net_conn_yield(c);      /* twice before the round: still one resume */
        return;
    }
    char out[64];
    int n = snprintf(out, sizeof out, "done %d\n", atomic_load(&s->r->wakes));
    net_conn_send(c, out, (size_t)n);
}

static void yield_data(net_conn *c, void *u, const uint8_t *p, size_t n)
{
    struct sess *s = u;
    if (n > 1 && p[0] == 'Y') {
        s->mode = atoi((const char *)p + 1);     /* "Y<n>\n" arrives whole here */
        net_conn_yield(c);
        return;
    }
    cmd_data(c, u, p, n);
}

static const net_conn_ops yield_ops = {
    .on_open = common_open,
    .on_data = yield_data,
    .on_resume = yield_resume,
    .on_close = common_close,
    .on_shutdown = common_shutdown,
};

static void t_yield(void)
{
    int port;
    net_config cfg = { .workers = 1 };
    atomic_store(&g_resumes, 0);
    net_server *s = srv_start_cfg(&yield_ops, cfg, &port);
    REQUIRE(s);
    char line[64];
    int a = client(port), b = client(port);
    REQUIRE(a >= 0 && b >= 0);
    CHECK(rec_of(b) >= 0);
    /* A yields 200000 times: far longer than B's round trips below,
     * which are answered meanwhile on the same (only) worker. */
    CHECK(write_str(a, "Y200000\n"));
    CHECK(wait_atleast(&g_resumes, 1000, 5000));
    int answered = 0;
    for (int i = 0; i < 20; i++)
        if (rec_of(b) >= 0)
            answered++;
    CHECK_EQ(answered, 20);
    CHECK(atomic_load(&g_resumes) < 200000);   /* A was still at it */
    /* The rest of A's yields may take a while on a loaded machine under
     * the sanitizers: wait for them longer than client()'s 5 s. */
    struct timeval tv = { 120, 0 };
    setsockopt(a, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    CHECK(read_line(a, line, sizeof line) && !strcmp(line, "done 200000"));
    CHECK_EQ(atomic_load(&g_resumes), 200000);
    /* Closed while yielding: no on_resume after on_close (ASan would see
     * the freed state), nothing leaks. */
    int c = client(port);
    REQUIRE(c >= 0);
    CHECK(write_str(c, "Y100000000\n"));
    CHECK(wait_atleast(&g_resumes, 200000 + 100, 5000));
    close(c);
    CHECK(wait_atleast(&g_closes, 1, 5000));
    close(a);
    close(b);
    CHECK(wait_atleast(&g_closes, 3, 5000));
    srv_stop(s);
    check_exactly_once_closed(3);
}

static int client_unix(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = { 5, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path) {
        close(fd);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A Unix socket listener beside a TCP one: its mode is set, a stale socket
 * is replaced but no other file, every worker accepts on it, and each
 * connection tells which listener (tag) took it. */
static void t_unix(void)
{
    char dir[] = "/tmp/rm-net-unix-XXXXXX";
    REQUIRE(mkdtemp(dir));
    char path[128], file[128];
    snprintf(path, sizeof path, "%s/lmtp", dir);
    snprintf(file, sizeof file, "%s/plain", dir);
    FILE *f = fopen(file, "w");
    REQUIRE(f);
    fclose(f);

    net_config cfg = { .workers = 2, .backend = g_be };
    net_server *s;
    reset_recs();
    REQUIRE_OK(net_server_new(&cfg, &cmd_ops, &s));
    CHECK_EQ(net_server_tag(s, 1), -EINVAL);            /* no listener yet */
    REQUIRE_OK(net_server_listen(s, "127.0.0.1:0"));
    CHECK_EQ(net_server_listen_unix(s, file, 0600), -EEXIST);   /* not a socket */
    CHECK_EQ(net_server_listen_unix(s, "", 0600), -EINVAL);
    CHECK_EQ(net_server_listen_unix(s, path, 01777), -EINVAL);
    REQUIRE_OK(net_server_listen_unix(s, path, 0600));
    REQUIRE_OK(net_server_tag(s, 7));
    struct stat st;
    REQUIRE(lstat(path, &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK_EQ(st.st_mode & 0777, 0600);
    CHECK_EQ(net_server_port(s, 1), 0);
    REQUIRE_OK(net_server_start(s));
    CHECK_EQ(net_server_tag(s, 1), -EBUSY);
    int port = net_server_port(s, 0);

    int fds[13], n = 0;
    for (int i = 0; i < 12; i++) {
        fds[n] = client_unix(path);
        if (fds[n] >= 0 && rec_of(fds[n]) >= 0)
            n++;
    }
    CHECK_EQ(n, 12);
    fds[n] = client(port);
    CHECK(fds[n] >= 0 && rec_of(fds[n]) >= 0);
    n++;
    CHECK(wait_atleast(&g_opens, n, 3000));
    int by_tag[2] = { 0, 0 };
    for (int i = 0; i < n; i++) {
        int u = !strcmp(g_recs[i].peer, "unix");
        CHECK(g_recs[i].loopback);
        CHECK_EQ(g_recs[i].tag, u ? 7 : 0);
        by_tag[u]++;
    }
    CHECK_EQ(by_tag[1], 12);
    CHECK_EQ(by_tag[0], 1);
    char line[16];
    CHECK(write_str(fds[0], "QUIT\n") && read_line(fds[0], line, sizeof line) &&
          !strcmp(line, "bye"));
    CHECK(read_eof(fds[0]));
    for (int i = 0; i < n; i++)
        close(fds[i]);
    CHECK(wait_atleast(&g_closes, n, 3000));
    net_server_stop(s);
    net_server_wait(s);
    net_server_free(s);
    check_exactly_once_closed(n);

    /* The next run replaces the stale socket. */
    REQUIRE_OK(net_server_new(&cfg, &cmd_ops, &s));
    CHECK_EQ(net_server_listen_unix(s, path, 0660), 0);
    REQUIRE(lstat(path, &st) == 0);
    CHECK_EQ(st.st_mode & 0777, 0660);
    net_server_free(s);
    unlink(path);
    unlink(file);
    rmdir(dir);
}

#define BOTH(fn)                                                          \
    static void fn##_io_uring(void) { g_be = NET_BACKEND_IO_URING; g_test = #fn "_io_uring"; alarm(60); fn(); alarm(0); } \
    static void fn##_epoll(void) { g_be = NET_BACKEND_EPOLL; g_test = #fn "_epoll"; alarm(60); fn(); alarm(0); }

BOTH(t_backend)
BOTH(t_echo_small)
BOTH(t_echo_big)
BOTH(t_bytewise)
BOTH(t_many)
static void t_tiny_ring_io_uring(void) { g_be = NET_BACKEND_IO_URING; g_test = "t_tiny_ring_io_uring"; alarm(60); t_tiny_ring(); alarm(0); }
BOTH(t_send_ref)
BOTH(t_emfile)
BOTH(t_timer)
BOTH(t_wake)
BOTH(t_post)
BOTH(t_yield)
BOTH(t_pause)
BOTH(t_backpressure)
BOTH(t_stop)
BOTH(t_stop_forced)
BOTH(t_stop_quiet)
BOTH(t_refuse)
BOTH(t_addresses)
BOTH(t_unix)

/* net_server_inherit: sockets bound to the address asked for are taken
 * over (the same descriptors, no new bind, the queue kept); for another
 * address they are closed and new ones bound. */
static void t_inherit(void)
{
    net_config cfg = { .workers = 2, .backend = NET_BACKEND_EPOLL };
    net_server *a, *b, *c;
    REQUIRE_OK(net_server_new(&cfg, &cmd_ops, &a));
    REQUIRE_OK(net_server_listen(a, "127.0.0.1:0"));
    int port = net_server_port(a, 0);
    int fds[2];
    CHECK_EQ(net_server_listen_fds(a, NULL, 0), 2);
    CHECK_EQ(net_server_listen_fds(a, fds, 2), 2);
    int keep[2] = { dup(fds[0]), dup(fds[1]) };
    REQUIRE(keep[0] >= 0 && keep[1] >= 0);
    net_server_free(a);
    /* no server holds them now, the kept descriptors do: a connection
     * waits in a queue */
    int waiting = client(port);
    CHECK(waiting >= 0);

    REQUIRE_OK(net_server_new(&cfg, &cmd_ops, &b));
    REQUIRE_OK(net_server_inherit(b, keep, 2));
    CHECK_EQ(net_server_inherit(b, NULL, 0), -EBUSY);
    char hp[64];
    snprintf(hp, sizeof hp, "127.0.0.1:%d", port);
    REQUIRE_OK(net_server_listen(b, hp));
    CHECK_EQ(net_server_port(b, 0), port);
    int got[2];
    CHECK_EQ(net_server_listen_fds(b, got, 2), 2);
    CHECK(got[0] == keep[0] && got[1] == keep[1]);
    int again[2] = { dup(got[0]), dup(got[1]) };
    REQUIRE(again[0] >= 0 && again[1] >= 0);
    net_server_free(b);

    REQUIRE_OK(net_server_new(&cfg, &cmd_ops, &c));
    REQUIRE_OK(net_server_inherit(c, again, 2));
    REQUIRE_OK(net_server_listen(c, "127.0.0.2:0"));
    /* the new sockets are on 127.0.0.2; the old ones are gone (nobody
     * listens on the old port), the connection that waited in them with
     * them (the descriptors' numbers may be reused by the new sockets) */
    int now[2];
    CHECK_EQ(net_server_listen_fds(c, now, 2), 2);
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    CHECK(getsockname(now[0], (struct sockaddr *)&sa, &len) == 0 &&
          sa.sin_addr.s_addr == htonl(0x7f000002));
    CHECK(net_server_port(c, 0) > 0);
    CHECK_EQ(client(port), -1);
    net_server_free(c);
    if (waiting >= 0)
        close(waiting);
}

#define RUN_BOTH(fn) do { RUN(fn##_io_uring); RUN(fn##_epoll); } while (0)

int main(void)
{
    signal(SIGALRM, on_alarm);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096) {
        rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    RUN(t_conn_size);
    RUN(t_timer_heap);
    RUN(t_no_io_uring);
    RUN_BOTH(t_backend);
    RUN_BOTH(t_echo_small);
    RUN_BOTH(t_echo_big);
    RUN_BOTH(t_bytewise);
    RUN_BOTH(t_many);
    RUN(t_tiny_ring_io_uring);
    RUN_BOTH(t_send_ref);
    RUN_BOTH(t_emfile);
    RUN_BOTH(t_timer);
    RUN_BOTH(t_wake);
    RUN_BOTH(t_post);
    RUN_BOTH(t_yield);
    RUN_BOTH(t_pause);
    RUN_BOTH(t_backpressure);
    RUN_BOTH(t_stop);
    RUN_BOTH(t_stop_forced);
    RUN_BOTH(t_stop_quiet);
    RUN_BOTH(t_refuse);
    RUN_BOTH(t_addresses);
    RUN_BOTH(t_unix);
    RUN(t_inherit);
    free(g_big);
    return test_summary();
}
