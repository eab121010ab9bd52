/* tests/unit/test_net_tls.c — TLS in the runtime (net/tls.c) against real
 * sockets on 127.0.0.1, every test once per backend (io_uring, epoll).
 * Certificates are made at start with BoringSSL (no openssl CLI needed).
 * Clients are BoringSSL clients in the test thread over memory BIOs, so a
 * test controls exactly what goes on the wire and in how many writes.
 *
 * RINGMAIL_TLS_BENCH=1 also measures memory per idle TLS connection (the
 * server in a child process, RSS delta / connections) and the throughput
 * of a 100 MB echo on one connection; figures only, never pass/fail. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/digest.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/obj.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "net/internal.h"
#include "net/net.h"
#include "tests/unit/testutil.h"

static net_backend g_be;
static const char *g_test;
static char g_dir[512];
static char g_cert[600], g_key[600];          /* CN=localhost */
static char g_cert_b[600], g_key_b[600];      /* CN=mail.example.com, SHA-384 */
static char g_cert_c[600], g_key_c[600];      /* CN=wild.test */

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

static int tcp_client(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = { 5, 0 };
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    return fd;
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

static bool read_line_fd(int fd, char *buf, size_t cap)
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

static uint8_t pat(size_t off)
{
    return (uint8_t)((off * 2654435761u) >> 13);
}

/* ---- certificates ---- */

static bool make_cert(const char *certpath, const char *keypath,
                      const char *cn, const EVP_MD *md)
{
    static long serial = 1;
    bool ok = false;
    EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
    EVP_PKEY *pk = EVP_PKEY_new();
    X509 *x = X509_new();
    FILE *f = NULL;
    if (!ec || !pk || !x || !EC_KEY_generate_key(ec) ||
        !EVP_PKEY_set1_EC_KEY(pk, ec))
        goto out;
    if (!X509_set_version(x, X509_VERSION_3) ||
        !ASN1_INTEGER_set(X509_get_serialNumber(x), serial++) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), 2 * 86400) ||
        !X509_set_pubkey(x, pk))
        goto out;
    X509_NAME *nm = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC,
                                    (const uint8_t *)cn, -1, -1, 0) ||
        !X509_set_issuer_name(x, nm) || !X509_sign(x, pk, md))
        goto out;
    f = fopen(certpath, "w");
    if (!f || !PEM_write_X509(f, x))
        goto out;
    fclose(f);
    f = fopen(keypath, "w");
    if (!f || !PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL))
        goto out;
    ok = true;
out:
    if (f)
        fclose(f);
    X509_free(x);
    EVP_PKEY_free(pk);
    EC_KEY_free(ec);
    return ok;
}

/* ---- the client: an SSL over memory BIOs, pumped by hand ---- */

struct tcl {
    int fd;
    SSL *ssl;
    BIO *rb, *wb;
    size_t chunk;           /* bytes per send(); 0 = all at once */
    bool eof;
};

static SSL_CTX *g_cctx;

static SSL_CTX *client_ctx(int minv, int maxv)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    SSL_CTX_set_min_proto_version(ctx, (uint16_t)minv);
    SSL_CTX_set_max_proto_version(ctx, (uint16_t)maxv);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    return ctx;
}

static bool tcl_flush(struct tcl *cl)
{
    uint8_t buf[16384];
    while (BIO_pending(cl->wb)) {
        int want = (int)sizeof buf;
        if (cl->chunk && cl->chunk < sizeof buf)
            want = (int)cl->chunk;
        int k = BIO_read(cl->wb, buf, want);
        if (k <= 0)
            return false;
        if (cl->chunk) {
            for (int i = 0; i < k; i += (int)cl->chunk) {
                size_t m = (size_t)(k - i) < cl->chunk ? (size_t)(k - i) : cl->chunk;
                if (!write_all(cl->fd, buf + i, m))
                    return false;
            }
        } else if (!write_all(cl->fd, buf, (size_t)k)) {
            return false;
        }
    }
    return true;
}

static bool tcl_fill(struct tcl *cl)
{
    uint8_t buf[65536];
    ssize_t k;
    do
        k = recv(cl->fd, buf, sizeof buf, 0);
    while (k < 0 && errno == EINTR);
    if (k <= 0) {
        cl->eof = true;
        return false;
    }
    BIO_write(cl->rb, buf, (int)k);
    return true;
}

/* Connect TCP to port and set up (not run) a TLS client. */
static bool tcl_open(struct tcl *cl, SSL_CTX *ctx, int port, const char *sni,
                     const char *alpn_wire, size_t alpn_len)
{
    memset(cl, 0, sizeof *cl);
    cl->fd = tcp_client(port);
    if (cl->fd < 0)
        return false;
    cl->ssl = SSL_new(ctx ? ctx : g_cctx);
    cl->rb = BIO_new(BIO_s_mem());
    cl->wb = BIO_new(BIO_s_mem());
    SSL_set_bio(cl->ssl, cl->rb, cl->wb);
    SSL_set_connect_state(cl->ssl);
    if (sni)
        SSL_set_tlsext_host_name(cl->ssl, sni);
    if (alpn_wire)
        SSL_set_alpn_protos(cl->ssl, (const uint8_t *)alpn_wire, alpn_len);
    return true;
}

static bool tcl_handshake(struct tcl *cl)
{
    for (;;) {
        int r = SSL_do_handshake(cl->ssl);
        if (!tcl_flush(cl))
            return false;
        if (r == 1)
            return true;
        if (SSL_get_error(cl->ssl, r) != SSL_ERROR_WANT_READ) {
            ERR_clear_error();
            return false;
        }
        if (!tcl_fill(cl))
            return false;
    }
}

static bool tcl_connect(struct tcl *cl, SSL_CTX *ctx, int port, const char *sni)
{
    return tcl_open(cl, ctx, port, sni, NULL, 0) && tcl_handshake(cl);
}

static bool tcl_write(struct tcl *cl, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        int k = n > (1u << 20) ? 1 << 20 : (int)n;
        int r = SSL_write(cl->ssl, b, k);
        if (r <= 0)
            return false;
        b += r;
        n -= (size_t)r;
    }
    return tcl_flush(cl);
}

/* Up to n bytes (at least 1); 0 on close_notify/EOF, -1 on error. */
static int tcl_read_some(struct tcl *cl, void *p, size_t n)
{
    for (;;) {
        int r = SSL_read(cl->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
        if (r > 0)
            return r;
        int e = SSL_get_error(cl->ssl, r);
        if (e == SSL_ERROR_ZERO_RETURN)
            return 0;
        if (e != SSL_ERROR_WANT_READ) {
            ERR_clear_error();
            return -1;
        }
        if (!tcl_flush(cl))
            return -1;
        if (!tcl_fill(cl))
            return 0;
    }
}

static bool tcl_read_exact(struct tcl *cl, void *p_, size_t n)
{
    uint8_t *p = p_;
    while (n) {
        int r = tcl_read_some(cl, p, n);
        if (r <= 0)
            return false;
        p += r;
        n -= (size_t)r;
    }
    return true;
}

static bool tcl_read_line(struct tcl *cl, char *buf, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        char ch;
        if (tcl_read_some(cl, &ch, 1) != 1)
            return false;
        if (ch == '\n')
            break;
        buf[n++] = ch;
    }
    buf[n] = '\0';
    return true;
}

/* True if a clean close_notify (not just a TCP EOF) arrives. */
static bool tcl_read_close_notify(struct tcl *cl)
{
    char buf[256];
    for (;;) {
        int r = SSL_read(cl->ssl, buf, sizeof buf);
        if (r > 0)
            continue;
        int e = SSL_get_error(cl->ssl, r);
        if (e == SSL_ERROR_ZERO_RETURN)
            return true;
        if (e != SSL_ERROR_WANT_READ) {
            ERR_clear_error();
            return false;
        }
        if (!tcl_fill(cl))
            return false;
    }
}

static void tcl_close(struct tcl *cl)
{
    if (cl->ssl)
        SSL_free(cl->ssl);      /* frees the BIOs */
    if (cl->fd >= 0)
        close(cl->fd);
    memset(cl, 0, sizeof *cl);
    cl->fd = -1;
}

static uint8_t *g_big;              /* pat() over BIG_SIZE bytes */
#define BIG_SIZE (8u << 20)

/* Echo n bytes (g_big, cyclically) through the server, at most `window`
 * ahead; returns how many came back intact. */
static size_t tcl_echo(struct tcl *cl, size_t n, size_t piece, size_t window)
{
    static __thread uint8_t buf[65536];
    size_t wr = 0, rd = 0;
    while (rd < n) {
        while (wr < n && wr - rd < window) {
            size_t k = n - wr < piece ? n - wr : piece;
            size_t off = wr % BIG_SIZE;
            if (k > BIG_SIZE - off)
                k = BIG_SIZE - off;
            if (!tcl_write(cl, g_big + off, k))
                return rd;
            wr += k;
        }
        size_t off = rd % BIG_SIZE;
        size_t want = BIG_SIZE - off < sizeof buf ? BIG_SIZE - off : sizeof buf;
        int r = tcl_read_some(cl, buf, want);
        if (r <= 0)
            return rd;
        if (memcmp(buf, g_big + off, (size_t)r)) {
            for (int i = 0; i < r; i++)
                if (buf[i] != g_big[off + (size_t)i])
                    return rd + (size_t)i;
        }
        rd += (size_t)r;
    }
    return rd;
}

/* ---- the server ---- */

enum { MODE_ECHO, MODE_CMD };
static int g_mode;
static bool g_greet;                /* on_open queues "HELLO\n" */
static net_tls *g_tls;              /* the listeners' context */
static atomic_int g_opens, g_closes, g_shutdowns, g_evil, g_refs, g_releases,
    g_starttls_fail;
static int g_tls_port, g_plain_port;

struct sess {
    char line[512];
    size_t n;
    size_t flood;           /* FLOOD: bytes of g_big still to produce */
    size_t flood_off;
};

static atomic_int g_drains, g_max_over;

static void reset_counts(void)
{
    atomic_store(&g_opens, 0);
    atomic_store(&g_closes, 0);
    atomic_store(&g_shutdowns, 0);
    atomic_store(&g_evil, 0);
    atomic_store(&g_refs, 0);
    atomic_store(&g_releases, 0);
    atomic_store(&g_starttls_fail, 0);
}

static void *s_open(net_conn *c)
{
    struct sess *s = calloc(1, sizeof *s);
    atomic_fetch_add(&g_opens, 1);
    if (g_greet)
        net_conn_send(c, "HELLO\n", 6);
    return s;
}

static void s_close(net_conn *c, void *u)
{
    (void)c;
    free(u);
    atomic_fetch_add(&g_closes, 1);
}

static void s_shutdown(net_conn *c, void *u)
{
    (void)u;
    atomic_fetch_add(&g_shutdowns, 1);
    net_conn_send(c, "BYE\n", 4);
    net_conn_close(c);
}

static void rel(void *arg)
{
    (void)arg;
    atomic_fetch_add(&g_releases, 1);
}

static void hex(char *out, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
    out[2 * n] = '\0';
}

static void binding_reply(net_conn *c)
{
    char msg[512], hx[200];
    uint8_t b[64];
    size_t len = sizeof b;
    int rc = net_conn_tls_binding(c, "tls-exporter", b, &len);
    if (rc == 0)
        hex(hx, b, len);
    else
        snprintf(hx, sizeof hx, "E%d", -rc);
    int k = snprintf(msg, sizeof msg, "EXP %s\n", hx);
    net_conn_send(c, msg, (size_t)k);
    len = sizeof b;
    rc = net_conn_tls_binding(c, "tls-server-end-point", b, &len);
    if (rc == 0)
        hex(hx, b, len);
    else
        snprintf(hx, sizeof hx, "E%d", -rc);
    k = snprintf(msg, sizeof msg, "EP %s\n", hx);
    net_conn_send(c, msg, (size_t)k);
    len = sizeof b;
    rc = net_conn_tls_binding(c, "tls-unique", b, &len);
    k = snprintf(msg, sizeof msg, "X %d\n", rc);
    net_conn_send(c, msg, (size_t)k);
}

/* Returns false if the rest of the buffer must be dropped (STARTTLS). */
/* Produce until above high water, go on from on_drain (backpressure). */
static void flood(net_conn *c, struct sess *ss)
{
    while (ss->flood && net_conn_pending(c) <= 256 * 1024) {
        size_t k = ss->flood < 65536 ? ss->flood : 65536;
        net_conn_send(c, g_big + ss->flood_off, k);
        ss->flood_off += k;
        ss->flood -= k;
    }
    if (net_conn_pending(c) > 256 * 1024 + 65536 + 65536)
        atomic_fetch_add(&g_max_over, 1);
}

static void s_drain(net_conn *c, void *u)
{
    atomic_fetch_add(&g_drains, 1);
    flood(c, u);
}

static bool s_line(net_conn *c, struct sess *ss, const char *line)
{
    char msg[600];
    if (strstr(line, "EVIL"))
        atomic_fetch_add(&g_evil, 1);
    if (!strcmp(line, "STARTTLS")) {
        if (net_conn_is_tls(c)) {
            if (net_conn_starttls(c, g_tls) == -EALREADY)
                net_conn_send(c, "ALREADY\n", 8);
            return true;
        }
        /* The reply first (it must go out in the clear), then the switch. */
        net_conn_send(c, "OK begin\r\n", 10);
        if (net_conn_starttls(c, g_tls) < 0)
            atomic_fetch_add(&g_starttls_fail, 1);
        return false;
    }
    if (!strcmp(line, "CB")) {
        binding_reply(c);
    } else if (!strncmp(line, "REF ", 4)) {
        size_t n = strtoul(line + 4, NULL, 10);
        atomic_fetch_add(&g_refs, 1);
        net_conn_send_ref(c, g_big, n, rel, NULL);
    } else if (!strncmp(line, "FLOOD ", 6)) {
        ss->flood = strtoul(line + 6, NULL, 10);
        ss->flood_off = 0;
        flood(c, ss);
    } else if (!strcmp(line, "PAUSE")) {
        /* Paused for 200 ms: what arrives meanwhile waits (decrypted). */
        net_conn_send(c, "PAUSED\n", 7);
        net_conn_pause(c, true);
        net_conn_timer(c, 200);
    } else if (!strncmp(line, "REFCLOSE ", 9)) {
        size_t n = strtoul(line + 9, NULL, 10);
        atomic_fetch_add(&g_refs, 1);
        net_conn_send_ref(c, g_big, n, rel, NULL);
        net_conn_close(c);
    } else {
        int k = snprintf(msg, sizeof msg, "ECHO %s\n", line);
        net_conn_send(c, msg, (size_t)k);
    }
    return true;
}

static void s_data(net_conn *c, void *u, const uint8_t *p, size_t n)
{
    struct sess *s = u;
    /* Bytes the session takes in: raw echo, or a line it acts on. */
    if (g_mode == MODE_ECHO && net_conn_is_tls(c)) {
        if (memmem(p, n, "EVIL", 4))
            atomic_fetch_add(&g_evil, 1);
        net_conn_send(c, p, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\n') {
            if (s->n + 1 < sizeof s->line)
                s->line[s->n++] = (char)p[i];
            continue;
        }
        if (s->n && s->line[s->n - 1] == '\r')
            s->n--;
        s->line[s->n] = '\0';
        s->n = 0;
        if (!s_line(c, s, s->line))
            return;     /* STARTTLS: the rest of p is dropped */
        if (g_mode == MODE_ECHO && net_conn_is_tls(c)) {
            if (i + 1 < n) {
                if (memmem(p + i + 1, n - i - 1, "EVIL", 4))
                    atomic_fetch_add(&g_evil, 1);
                net_conn_send(c, p + i + 1, n - i - 1);
            }
            return;
        }
    }
}

static void s_timer(net_conn *c, void *u)
{
    (void)u;
    net_conn_pause(c, false);
}

static const net_conn_ops g_ops = {
    .on_timer = s_timer,
    .on_drain = s_drain,
    .on_open = s_open,
    .on_data = s_data,
    .on_close = s_close,
    .on_shutdown = s_shutdown,
};

static net_server *srv_start_tls(net_tls *tls, int mode)
{
    net_server *s = NULL;
    net_config cfg = { .workers = 2, .backend = g_be };
    reset_counts();
    g_mode = mode;
    g_greet = false;
    if (net_server_new(&cfg, &g_ops, &s) < 0)
        return NULL;
    if (net_server_listen_tls(s, "127.0.0.1:0", tls) < 0 ||
        net_server_listen(s, "127.0.0.1:0") < 0 || net_server_start(s) < 0) {
        net_server_free(s);
        return NULL;
    }
    g_tls_port = net_server_port(s, 0);
    g_plain_port = net_server_port(s, 1);
    return s;
}

static void srv_stop(net_server *s)
{
    net_server_stop(s);
    net_server_wait(s);
    net_server_free(s);
    CHECK_EQ(atomic_load(&g_opens), atomic_load(&g_closes));
    CHECK_EQ(atomic_load(&net_hard_stops), 0);
}

static bool peer_cn(struct tcl *cl, char *cn, size_t cap)
{
    X509 *x = SSL_get_peer_certificate(cl->ssl);
    if (!x)
        return false;
    int k = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName,
                                      cn, (int)cap);
    X509_free(x);
    return k > 0;
}

/* ---- tests ---- */

static SSL_SESSION *g_sess;

static int new_session(SSL *ssl, SSL_SESSION *sess)
{
    (void)ssl;
    if (g_sess)
        SSL_SESSION_free(g_sess);
    g_sess = sess;
    return 1;       /* we keep the reference */
}

static void t_echo(void)
{
    net_server *s = srv_start_tls(g_tls, MODE_ECHO);
    REQUIRE(s);
    struct tcl cl;
    char buf[256];

    /* TLS 1.3, greeting queued in on_open before the handshake. */
    g_greet = true;
    REQUIRE(tcl_connect(&cl, NULL, g_tls_port, NULL));
    g_greet = false;
    CHECK_EQ(SSL_version(cl.ssl), TLS1_3_VERSION);
    CHECK(tcl_read_line(&cl, buf, sizeof buf) && !strcmp(buf, "HELLO"));
    const uint8_t *alpn;
    unsigned alpn_len;
    SSL_get0_alpn_selected(cl.ssl, &alpn, &alpn_len);
    CHECK_EQ(alpn_len, 0);      /* not offered: none */
    CHECK(tcl_write(&cl, "hello\n", 6));
    CHECK(tcl_read_line(&cl, buf, sizeof buf) && !strcmp(buf, "hello"));
    CHECK_EQ(tcl_echo(&cl, 10u << 20, 16384, 256 * 1024), 10u << 20);
    tcl_close(&cl);

    /* Session tickets: a second connection resumes. */
    SSL_CTX *cr = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION);
    SSL_CTX_set_session_cache_mode(cr, SSL_SESS_CACHE_CLIENT);
    SSL_CTX_sess_set_new_cb(cr, new_session);
    REQUIRE(tcl_connect(&cl, cr, g_tls_port, NULL));
    CHECK(tcl_write(&cl, "first\n", 6));
    CHECK(tcl_read_line(&cl, buf, sizeof buf) && !strcmp(buf, "first"));
    tcl_close(&cl);
    CHECK(g_sess != NULL);
    REQUIRE(tcl_open(&cl, cr, g_tls_port, NULL, NULL, 0));
    SSL_set_session(cl.ssl, g_sess);
    SSL_SESSION_free(g_sess);
    g_sess = NULL;
    CHECK(tcl_handshake(&cl));
    CHECK(SSL_session_reused(cl.ssl));
    CHECK(tcl_write(&cl, "resumed\n", 8));
    CHECK(tcl_read_line(&cl, buf, sizeof buf) && !strcmp(buf, "resumed"));
    tcl_close(&cl);
    SSL_SESSION_free(g_sess);
    g_sess = NULL;
    SSL_CTX_free(cr);

    /* Forced TLS 1.2: an ECDHE AEAD suite. */
    SSL_CTX *c12 = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION);
    REQUIRE(tcl_connect(&cl, c12, g_tls_port, NULL));
    CHECK_EQ(SSL_version(cl.ssl), TLS1_2_VERSION);
    const SSL_CIPHER *ci = SSL_get_current_cipher(cl.ssl);
    CHECK(ci && SSL_CIPHER_is_aead(ci) && SSL_CIPHER_get_kx_nid(ci) == NID_kx_ecdhe);
    CHECK(tcl_write(&cl, "twelve\n", 7));
    CHECK(tcl_read_line(&cl, buf, sizeof buf) && !strcmp(buf, "twelve"));
    CHECK_EQ(tcl_echo(&cl, 10u << 20, 16384, 256 * 1024), 10u << 20);
    tcl_close(&cl);
    SSL_CTX_free(c12);

    /* Every ciphertext byte in its own write, handshake included. */
    REQUIRE(tcl_open(&cl, NULL, g_tls_port, NULL, NULL, 0));
    cl.chunk = 1;
    CHECK(tcl_handshake(&cl));
    CHECK(tcl_write(&cl, "bytewise\n", 9));
    CHECK(tcl_read_line(&cl, buf, sizeof buf) && !strcmp(buf, "bytewise"));
    CHECK_EQ(tcl_echo(&cl, 4096, 1000, 4096), 4096);
    tcl_close(&cl);

    CHECK(wait_atleast(&g_closes, 5, 3000));
    srv_stop(s);
}

static void t_starttls(void)
{
    net_server *s = srv_start_tls(g_tls, MODE_ECHO);
    REQUIRE(s);
    struct tcl cl;
    char buf[256];

    /* Plaintext, then STARTTLS, then an encrypted echo. */
    REQUIRE(tcl_open(&cl, NULL, g_plain_port, NULL, NULL, 0));
    CHECK(write_all(cl.fd, "hi\r\n", 4));
    CHECK(read_line_fd(cl.fd, buf, sizeof buf) && !strcmp(buf, "ECHO hi"));
    CHECK(write_all(cl.fd, "STARTTLS\r\n", 10));
    CHECK(read_line_fd(cl.fd, buf, sizeof buf) && !strcmp(buf, "OK begin\r"));
    CHECK(tcl_handshake(&cl));
    CHECK(tcl_write(&cl, "secret\n", 7));
    CHECK(tcl_read_line(&cl, buf, sizeof buf) && !strcmp(buf, "secret"));
    CHECK_EQ(tcl_echo(&cl, 1u << 20, 16384, 256 * 1024), 1u << 20);
    tcl_close(&cl);

    /* Plaintext pipelined behind STARTTLS in the same write never reaches
     * on_data, neither as plaintext nor inside the TLS session. */
    REQUIRE(tcl_open(&cl, NULL, g_plain_port, NULL, NULL, 0));
    CHECK(write_all(cl.fd, "STARTTLS\r\nEVIL injected\r\n", 26));
    CHECK(read_line_fd(cl.fd, buf, sizeof buf) && !strcmp(buf, "OK begin\r"));
    CHECK(tcl_handshake(&cl));
    CHECK(tcl_write(&cl, "after\n", 6));
    CHECK(tcl_read_line(&cl, buf, sizeof buf) && !strcmp(buf, "after"));
    CHECK(tcl_write(&cl, "again\n", 6));
    CHECK(tcl_read_line(&cl, buf, sizeof buf) && !strcmp(buf, "again"));
    tcl_close(&cl);
    CHECK_EQ(atomic_load(&g_evil), 0);

    /* STARTTLS then garbage instead of a ClientHello: closed. */
    int fd = tcp_client(g_plain_port);
    REQUIRE(fd >= 0);
    CHECK(write_all(fd, "STARTTLS\r\n", 10));
    CHECK(read_line_fd(fd, buf, sizeof buf) && !strcmp(buf, "OK begin\r"));
    CHECK(write_all(fd, "a001 LOGIN x y\r\n", 16));
    char junk[512];
    ssize_t k;
    while ((k = recv(fd, junk, sizeof junk, 0)) > 0)
        ;
    CHECK(k == 0 || (k < 0 && errno == ECONNRESET));
    close(fd);

    /* STARTTLS on a TLS connection: -EALREADY. */
    g_mode = MODE_CMD;
    REQUIRE(tcl_connect(&cl, NULL, g_tls_port, NULL));
    CHECK(tcl_write(&cl, "STARTTLS\n", 9));
    CHECK(tcl_read_line(&cl, buf, sizeof buf) && !strcmp(buf, "ALREADY"));
    tcl_close(&cl);

    CHECK(wait_atleast(&g_closes, 4, 3000));
    CHECK_EQ(atomic_load(&g_starttls_fail), 0);
    srv_stop(s);
}

static void t_alpn(void)
{
    net_server *s = srv_start_tls(g_tls, MODE_ECHO);
    REQUIRE(s);
    struct tcl cl;
    const uint8_t *a;
    unsigned alen;

    REQUIRE(tcl_open(&cl, NULL, g_tls_port, NULL, "\x04imap", 5));
    CHECK(tcl_handshake(&cl));
    SSL_get0_alpn_selected(cl.ssl, &a, &alen);
    CHECK(alen == 4 && !memcmp(a, "imap", 4));
    tcl_close(&cl);

    REQUIRE(tcl_open(&cl, NULL, g_tls_port, NULL, "\x02h2\x04imap", 8));
    CHECK(tcl_handshake(&cl));
    SSL_get0_alpn_selected(cl.ssl, &a, &alen);
    CHECK(alen == 4 && !memcmp(a, "imap", 4));
    tcl_close(&cl);

    /* Only other protocols: no_application_protocol. */
    REQUIRE(tcl_open(&cl, NULL, g_tls_port, NULL, "\x02h2\x08http/1.1", 12));
    CHECK(!tcl_handshake(&cl));
    tcl_close(&cl);

    CHECK(wait_atleast(&g_closes, 3, 3000));
    srv_stop(s);
}

static void t_sni(void)
{
    net_server *s = srv_start_tls(g_tls, MODE_ECHO);
    REQUIRE(s);
    static const struct {
        const char *sni, *cn;
    } cases[] = {
        { NULL, "localhost" },
        { "mail.example.com", "mail.example.com" },
        { "MAIL.Example.COM", "mail.example.com" },
        { "imap.wild.test", "wild.test" },
        { "a.b.wild.test", "localhost" },
        { "unknown.org", "localhost" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct tcl cl;
        char cn[128] = "";
        REQUIRE(tcl_connect(&cl, NULL, g_tls_port, cases[i].sni));
        CHECK(peer_cn(&cl, cn, sizeof cn));
        if (strcmp(cn, cases[i].cn))
            fprintf(stderr, "  sni %s: got CN %s, want %s\n",
                    cases[i].sni ? cases[i].sni : "(none)", cn, cases[i].cn);
        CHECK(!strcmp(cn, cases[i].cn));
        char buf[64];
        CHECK(tcl_write(&cl, "x\n", 2));
        CHECK(tcl_read_line(&cl, buf, sizeof buf) && !strcmp(buf, "x"));
        tcl_close(&cl);
    }
    CHECK(wait_atleast(&g_closes, 6, 3000));
    srv_stop(s);
}

static void t_reload(void)
{
    char cert[600], key[600], err[256];
    snprintf(cert, sizeof cert, "%s/reload.crt", g_dir);
    snprintf(key, sizeof key, "%s/reload.key", g_dir);
    REQUIRE(make_cert(cert, key, "before", EVP_sha256()));
    net_tls *tls = NULL;
    REQUIRE_OK(net_tls_new(cert, key, NULL, 0, &tls, err, sizeof err));
    net_server *s = srv_start_tls(tls, MODE_ECHO);
    REQUIRE(s);

    struct tcl a, b, half, d;
    char cn[128], buf[64];
    REQUIRE(tcl_connect(&a, NULL, g_tls_port, NULL));
    CHECK(peer_cn(&a, cn, sizeof cn) && !strcmp(cn, "before"));
    /* One handshake in progress across the reload: ClientHello sent. */
    REQUIRE(tcl_open(&half, NULL, g_tls_port, NULL, NULL, 0));
    CHECK(SSL_do_handshake(half.ssl) <= 0 && tcl_flush(&half));
    sleep_ms(50);

    REQUIRE(make_cert(cert, key, "after", EVP_sha256()));
    CHECK_EQ(net_tls_reload(tls, err, sizeof err), 0);
    REQUIRE(tcl_connect(&b, NULL, g_tls_port, NULL));
    CHECK(peer_cn(&b, cn, sizeof cn) && !strcmp(cn, "after"));
    CHECK(tcl_handshake(&half));
    CHECK(peer_cn(&half, cn, sizeof cn) && !strcmp(cn, "before"));
    /* The old sessions keep working. */
    CHECK(tcl_write(&a, "old\n", 4));
    CHECK(tcl_read_line(&a, buf, sizeof buf) && !strcmp(buf, "old"));
    CHECK(tcl_write(&half, "half\n", 5));
    CHECK(tcl_read_line(&half, buf, sizeof buf) && !strcmp(buf, "half"));
    CHECK(tcl_write(&b, "new\n", 4));
    CHECK(tcl_read_line(&b, buf, sizeof buf) && !strcmp(buf, "new"));

    /* A broken key: reload fails, says why, the current set stays. */
    FILE *f = fopen(key, "w");
    REQUIRE(f);
    fputs("not a key\n", f);
    fclose(f);
    err[0] = '\0';
    CHECK(net_tls_reload(tls, err, sizeof err) < 0);
    CHECK(err[0] != '\0');
    REQUIRE(tcl_connect(&d, NULL, g_tls_port, NULL));
    CHECK(peer_cn(&d, cn, sizeof cn) && !strcmp(cn, "after"));

    tcl_close(&a);
    tcl_close(&b);
    tcl_close(&half);
    tcl_close(&d);
    CHECK(wait_atleast(&g_closes, 4, 3000));
    srv_stop(s);
    net_tls_free(tls);
}

static bool client_endpoint(struct tcl *cl, char *hx)
{
    X509 *x = SSL_get_peer_certificate(cl->ssl);
    if (!x)
        return false;
    int md_nid = NID_undef, pk_nid = NID_undef;
    const EVP_MD *md = EVP_sha256();
    if (OBJ_find_sigid_algs(X509_get_signature_nid(x), &md_nid, &pk_nid) &&
        md_nid == NID_sha384)
        md = EVP_sha384();
    uint8_t h[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    bool ok = X509_digest(x, md, h, &len);
    X509_free(x);
    hex(hx, h, len);
    return ok;
}

static void t_binding(void)
{
    net_server *s = srv_start_tls(g_tls, MODE_CMD);
    REQUIRE(s);
    struct tcl cl;
    char buf[300], want[300], hx[200];

    /* TLS 1.3: both bindings, computed on both sides. */
    REQUIRE(tcl_connect(&cl, NULL, g_tls_port, NULL));
    CHECK(tcl_write(&cl, "CB\n", 3));
    uint8_t e[32];
    static const char label[] = "EXPORTER-Channel-Binding";
    CHECK(SSL_export_keying_material(cl.ssl, e, 32, label, sizeof label - 1,
                                     NULL, 0, 0));
    hex(hx, e, 32);
    snprintf(want, sizeof want, "EXP %s", hx);
    CHECK(tcl_read_line(&cl, buf, sizeof buf) && !strcmp(buf, want));
    CHECK(client_endpoint(&cl, hx));
    snprintf(want, sizeof want, "EP %s", hx);
    CHECK(tcl_read_line(&cl, buf, sizeof buf) && !strcmp(buf, want));
    CHECK_EQ(strlen(buf), 3 + 64);
    snprintf(want, sizeof want, "X %d", -EINVAL);
    CHECK(tcl_read_line(&cl, buf, sizeof buf) && !strcmp(buf, want));
    tcl_close(&cl);

    /* A certificate signed with SHA-384: the end-point hash is SHA-384. */
    REQUIRE(tcl_connect(&cl, NULL, g_tls_port, "mail.example.com"));
    CHECK(tcl_write(&cl, "CB\n", 3));
    CHECK(tcl_read_line(&cl, buf, sizeof buf) && !strncmp(buf, "EXP ", 4));
    CHECK(client_endpoint(&cl, hx));
    snprintf(want, sizeof want, "EP %s", hx);
    CHECK(tcl_read_line(&cl, buf, sizeof buf) && !strcmp(buf, want));
    CHECK_EQ(strlen(buf), 3 + 96);
    CHECK(tcl_read_line(&cl, buf, sizeof buf));
    tcl_close(&cl);

    /* TLS 1.2: no exporter binding (RFC 9266), the end-point one works. */
    SSL_CTX *c12 = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION);
    REQUIRE(tcl_connect(&cl, c12, g_tls_port, NULL));
    CHECK(tcl_write(&cl, "CB\n", 3));
    snprintf(want, sizeof want, "EXP E%d", ENOTSUP);
    CHECK(tcl_read_line(&cl, buf, sizeof buf) && !strcmp(buf, want));
    CHECK(client_endpoint(&cl, hx));
    snprintf(want, sizeof want, "EP %s", hx);
    CHECK(tcl_read_line(&cl, buf, sizeof buf) && !strcmp(buf, want));
    CHECK(tcl_read_line(&cl, buf, sizeof buf));
    tcl_close(&cl);
    SSL_CTX_free(c12);

    /* No TLS: -ENOTCONN. */
    int fd = tcp_client(g_plain_port);
    REQUIRE(fd >= 0);
    CHECK(write_all(fd, "CB\n", 3));
    snprintf(want, sizeof want, "EXP E%d", ENOTCONN);
    CHECK(read_line_fd(fd, buf, sizeof buf) && !strcmp(buf, want));
    close(fd);

    CHECK(wait_atleast(&g_closes, 4, 3000));
    srv_stop(s);
}

static void t_refuse(void)
{
    net_server *s = srv_start_tls(g_tls, MODE_ECHO);
    REQUIRE(s);
    struct tcl cl;
    char buf[64];

    SSL_CTX *c11 = client_ctx(TLS1_1_VERSION, TLS1_1_VERSION);
    REQUIRE(tcl_open(&cl, c11, g_tls_port, NULL, NULL, 0));
    CHECK(!tcl_handshake(&cl));
    tcl_close(&cl);
    SSL_CTX_free(c11);

    /* Cleartext IMAP on the TLS port. */
    int fd = tcp_client(g_tls_port);
    REQUIRE(fd >= 0);
    CHECK(write_all(fd, "a001 CAPABILITY\r\n", 17));
    char junk[512];
    ssize_t k;
    while ((k = recv(fd, junk, sizeof junk, 0)) > 0)
        ;
    CHECK(k == 0 || (k < 0 && errno == ECONNRESET));
    close(fd);

    /* A handshake cut in the middle. */
    REQUIRE(tcl_open(&cl, NULL, g_tls_port, NULL, NULL, 0));
    CHECK(SSL_do_handshake(cl.ssl) <= 0 && tcl_flush(&cl));
    tcl_close(&cl);

    /* Still serving. */
    REQUIRE(tcl_connect(&cl, NULL, g_tls_port, NULL));
    CHECK(tcl_write(&cl, "fine\n", 5));
    CHECK(tcl_read_line(&cl, buf, sizeof buf) && !strcmp(buf, "fine"));
    tcl_close(&cl);

    CHECK(wait_atleast(&g_closes, 4, 3000));
    CHECK_EQ(atomic_load(&g_opens), 4);
    srv_stop(s);
}

#define MANY 500

static void t_many(void)
{
    net_server *s = srv_start_tls(g_tls, MODE_ECHO);
    REQUIRE(s);
    struct tcl *cl = calloc(MANY, sizeof *cl);
    REQUIRE(cl);
    int ok = 0;
    for (int i = 0; i < MANY; i++) {
        cl[i].fd = -1;
        if (tcl_open(&cl[i], NULL, g_tls_port, NULL, NULL, 0))
            ok++;
    }
    CHECK_EQ(ok, MANY);
    /* All ClientHellos first, so the handshakes are in flight together. */
    for (int i = 0; i < MANY; i++)
        if (cl[i].ssl && SSL_do_handshake(cl[i].ssl) <= 0)
            tcl_flush(&cl[i]);
    int hs = 0, echoed = 0;
    for (int i = 0; i < MANY; i++)
        if (cl[i].ssl && tcl_handshake(&cl[i]))
            hs++;
    CHECK_EQ(hs, MANY);
    for (int i = 0; i < MANY; i++) {
        char msg[32], buf[32];
        int n = snprintf(msg, sizeof msg, "conn %d\n", i);
        if (cl[i].ssl && tcl_write(&cl[i], msg, (size_t)n) &&
            tcl_read_exact(&cl[i], buf, (size_t)n) && !memcmp(buf, msg, (size_t)n))
            echoed++;
    }
    CHECK_EQ(echoed, MANY);
    for (int i = 0; i < MANY; i++)
        tcl_close(&cl[i]);
    free(cl);
    CHECK(wait_atleast(&g_closes, MANY, 10000));
    srv_stop(s);
}

static void t_pause(void)
{
    net_server *s = srv_start_tls(g_tls, MODE_CMD);
    REQUIRE(s);
    struct tcl cl;
    char buf[600];
    REQUIRE(tcl_connect(&cl, NULL, g_tls_port, NULL));
    CHECK(tcl_write(&cl, "PAUSE\n", 6));
    CHECK(tcl_read_line(&cl, buf, sizeof buf) && !strcmp(buf, "PAUSED"));
    uint64_t t0 = now_ms();
    /* Many records while paused: all wait, in order. */
    for (int i = 0; i < 200; i++) {
        char msg[64];
        int n = snprintf(msg, sizeof msg, "line %d\n", i);
        CHECK(tcl_write(&cl, msg, (size_t)n));
    }
    int good = 0;
    for (int i = 0; i < 200; i++) {
        char want[64];
        snprintf(want, sizeof want, "ECHO line %d", i);
        if (tcl_read_line(&cl, buf, sizeof buf) && !strcmp(buf, want))
            good++;
    }
    CHECK_EQ(good, 200);
    CHECK(now_ms() - t0 >= 150);
    tcl_close(&cl);
    CHECK(wait_atleast(&g_closes, 1, 3000));
    srv_stop(s);
}

static bool check_big(struct tcl *cl, size_t n);

static void t_backpressure(void)
{
    net_server *s = srv_start_tls(g_tls, MODE_CMD);
    REQUIRE(s);
    atomic_store(&g_drains, 0);
    atomic_store(&g_max_over, 0);
    struct tcl cl;
    REQUIRE(tcl_connect(&cl, NULL, g_tls_port, NULL));
    CHECK(tcl_write(&cl, "FLOOD 8000000\n", 14));
    /* A slow reader at first: the server must wait for on_drain. */
    sleep_ms(200);
    CHECK(check_big(&cl, 8000000));
    CHECK(atomic_load(&g_drains) > 0);
    CHECK_EQ(atomic_load(&g_max_over), 0);
    tcl_close(&cl);
    CHECK(wait_atleast(&g_closes, 1, 3000));
    srv_stop(s);
}

static bool check_big(struct tcl *cl, size_t n)
{
    static __thread uint8_t buf[65536];
    size_t off = 0;
    while (off < n) {
        size_t want = n - off < sizeof buf ? n - off : sizeof buf;
        int r = tcl_read_some(cl, buf, want);
        if (r <= 0)
            return false;
        if (memcmp(buf, g_big + off, (size_t)r))
            return false;
        off += (size_t)r;
    }
    return true;
}

static void t_send_ref(void)
{
    net_server *s = srv_start_tls(g_tls, MODE_CMD);
    REQUIRE(s);
    struct tcl cl;

    REQUIRE(tcl_connect(&cl, NULL, g_tls_port, NULL));
    CHECK(tcl_write(&cl, "REF 1000000\n", 12));
    CHECK(check_big(&cl, 1000000));
    CHECK(tcl_write(&cl, "REF 7\nREF 8000000\n", 18));
    CHECK(check_big(&cl, 7));
    CHECK(check_big(&cl, 8000000));
    /* Sent, then closed: all of it, then a close_notify. */
    CHECK(tcl_write(&cl, "REFCLOSE 3000000\n", 17));
    CHECK(check_big(&cl, 3000000));
    CHECK(tcl_read_close_notify(&cl));
    tcl_close(&cl);

    /* The client goes away with most of it unsent. */
    REQUIRE(tcl_connect(&cl, NULL, g_tls_port, NULL));
    CHECK(tcl_write(&cl, "REF 8000000\nREF 8000000\n", 24));
    uint8_t b[100];
    CHECK(tcl_read_exact(&cl, b, sizeof b));
    tcl_close(&cl);

    CHECK(wait_atleast(&g_closes, 2, 5000));
    srv_stop(s);
    CHECK_EQ(atomic_load(&g_refs), 6);
    CHECK_EQ(atomic_load(&g_releases), 6);
}

static void t_stop(void)
{
    net_server *s = srv_start_tls(g_tls, MODE_ECHO);
    REQUIRE(s);
    struct tcl cl[4], half;
    char buf[64];
    for (int i = 0; i < 4; i++) {
        REQUIRE(tcl_connect(&cl[i], NULL, g_tls_port, NULL));
        CHECK(tcl_write(&cl[i], "x\n", 2));
        CHECK(tcl_read_line(&cl[i], buf, sizeof buf) && !strcmp(buf, "x"));
    }
    REQUIRE(tcl_open(&half, NULL, g_tls_port, NULL, NULL, 0));
    CHECK(SSL_do_handshake(half.ssl) <= 0 && tcl_flush(&half));
    int plain = tcp_client(g_plain_port);
    REQUIRE(plain >= 0);
    CHECK(wait_atleast(&g_opens, 6, 3000));

    net_server_stop(s);
    for (int i = 0; i < 4; i++) {
        CHECK(tcl_read_line(&cl[i], buf, sizeof buf) && !strcmp(buf, "BYE"));
        CHECK(tcl_read_close_notify(&cl[i]));
    }
    CHECK(read_line_fd(plain, buf, sizeof buf) && !strcmp(buf, "BYE"));
    net_server_wait(s);
    CHECK_EQ(atomic_load(&g_shutdowns), 6);
    for (int i = 0; i < 4; i++)
        tcl_close(&cl[i]);
    tcl_close(&half);
    close(plain);
    net_server_free(s);
    CHECK_EQ(atomic_load(&g_opens), atomic_load(&g_closes));
}

static void t_api(void)
{
    char err[256];
    net_tls *t = NULL;
    const char *bad_sni[] = { "nodomain" };
    CHECK(net_tls_new(g_cert, g_key, bad_sni, 1, &t, err, sizeof err) == -EINVAL);
    CHECK(!t && strstr(err, "nodomain"));
    CHECK(net_tls_new("/nonexistent.crt", g_key, NULL, 0, &t, err, sizeof err) < 0);
    CHECK(!t && strstr(err, "/nonexistent.crt"));
    CHECK(net_tls_new(g_cert, g_key_b, NULL, 0, &t, err, sizeof err) < 0);
    CHECK(!t);
    net_tls_free(NULL);
}

/* ---- figures (RINGMAIL_TLS_BENCH=1) ---- */

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6))
            kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

static void bench_idle_memory(void)
{
    enum { N = 2000 };
    int pfd[2], qfd[2];
    REQUIRE(pipe(pfd) == 0 && pipe(qfd) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        close(qfd[1]);
        net_server *s = srv_start_tls(g_tls, MODE_ECHO);
        int port = s ? g_tls_port : -1;
        ssize_t w = write(pfd[1], &port, sizeof port);
        (void)w;
        char ch;
        ssize_t r = read(qfd[0], &ch, 1);     /* until the parent says */
        (void)r;
        if (s) {
            net_server_stop(s);
            net_server_wait(s);
            net_server_free(s);
        }
        _exit(0);
    }
    close(pfd[1]);
    close(qfd[0]);
    int port = -1;
    REQUIRE(read(pfd[0], &port, sizeof port) == sizeof port && port > 0);
    struct tcl *cl = calloc(N, sizeof *cl);
    /* Warm up: allocator arenas, the first handshakes' one-time costs. */
    for (int i = 0; i < 50; i++) {
        struct tcl w;
        if (tcl_connect(&w, NULL, port, NULL)) {
            char b[4];
            tcl_write(&w, "w\n", 2);
            tcl_read_exact(&w, b, 2);
        }
        tcl_close(&w);
    }
    sleep_ms(200);
    long before = rss_kb(pid);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        char b[4];
        if (tcl_connect(&cl[i], NULL, port, NULL) && tcl_write(&cl[i], "i\n", 2) &&
            tcl_read_exact(&cl[i], b, 2))
            ok++;
    }
    sleep_ms(300);
    long after = rss_kb(pid);
    printf("tls bench (%s): memory per idle TLS connection: %.1f KiB "
           "(server RSS %ld -> %ld KiB over %d connections, glibc malloc)\n",
           net_backend_name(g_be), (double)(after - before) / ok, before, after, ok);
    for (int i = 0; i < N; i++)
        tcl_close(&cl[i]);
    free(cl);
    ssize_t w = write(qfd[1], "q", 1);
    (void)w;
    close(qfd[1]);
    close(pfd[0]);
    waitpid(pid, NULL, 0);
}

static void bench_throughput(void)
{
    net_server *s = srv_start_tls(g_tls, MODE_ECHO);
    REQUIRE(s);
    struct tcl cl;
    REQUIRE(tcl_connect(&cl, NULL, g_tls_port, NULL));
    size_t n = 100u << 20;
    uint64_t t0 = now_ms();
    size_t got = tcl_echo(&cl, n, 16384, 1u << 20);
    uint64_t t1 = now_ms();
    CHECK_EQ(got, n);
    printf("tls bench (%s): 100 MB echo over one TLS 1.3 connection: %.0f MB/s "
           "(client in the same process, %s)\n",
           net_backend_name(g_be), (double)n / 1e6 / ((double)(t1 - t0) / 1000.0),
           SSL_CIPHER_get_name(SSL_get_current_cipher(cl.ssl)));
    tcl_close(&cl);
    CHECK(wait_atleast(&g_closes, 1, 3000));
    srv_stop(s);
}

/* ---- running ---- */

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "test_net_tls: time limit exceeded in ";
    ssize_t r = write(2, msg, sizeof msg - 1);
    if (g_test)
        r = write(2, g_test, strlen(g_test));
    r = write(2, "\n", 1);
    (void)r;
    _exit(3);
}

#define BOTH(fn)                                                          \
    static void fn##_io_uring(void) { g_be = NET_BACKEND_IO_URING; g_test = #fn "_io_uring"; alarm(120); fn(); alarm(0); } \
    static void fn##_epoll(void) { g_be = NET_BACKEND_EPOLL; g_test = #fn "_epoll"; alarm(120); fn(); alarm(0); }

BOTH(t_echo)
BOTH(t_starttls)
BOTH(t_alpn)
BOTH(t_sni)
BOTH(t_reload)
BOTH(t_binding)
BOTH(t_refuse)
BOTH(t_many)
BOTH(t_pause)
BOTH(t_backpressure)
BOTH(t_send_ref)
BOTH(t_stop)
BOTH(bench_idle_memory)
BOTH(bench_throughput)

#define RUN_BOTH(fn) do { RUN(fn##_io_uring); RUN(fn##_epoll); } while (0)

int main(void)
{
    signal(SIGALRM, on_alarm);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IONBF, 0);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 8192) {
        rl.rlim_cur = rl.rlim_max < 8192 ? rl.rlim_max : 8192;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    snprintf(g_dir, sizeof g_dir, "%s", test_tmpdir("net_tls"));
    snprintf(g_cert, sizeof g_cert, "%s/a.crt", g_dir);
    snprintf(g_key, sizeof g_key, "%s/a.key", g_dir);
    snprintf(g_cert_b, sizeof g_cert_b, "%s/b.crt", g_dir);
    snprintf(g_key_b, sizeof g_key_b, "%s/b.key", g_dir);
    snprintf(g_cert_c, sizeof g_cert_c, "%s/c.crt", g_dir);
    snprintf(g_key_c, sizeof g_key_c, "%s/c.key", g_dir);
    if (!make_cert(g_cert, g_key, "localhost", EVP_sha256()) ||
        !make_cert(g_cert_b, g_key_b, "mail.example.com", EVP_sha384()) ||
        !make_cert(g_cert_c, g_key_c, "wild.test", EVP_sha256())) {
        fprintf(stderr, "cannot make certificates\n");
        return 2;
    }
    char sni_b[1300], sni_c[1300], err[256];
    snprintf(sni_b, sizeof sni_b, "mail.example.com=%s:%s", g_cert_b, g_key_b);
    snprintf(sni_c, sizeof sni_c, "*.wild.test=%s:%s", g_cert_c, g_key_c);
    const char *sni[] = { sni_b, sni_c };
    if (net_tls_new(g_cert, g_key, sni, 2, &g_tls, err, sizeof err) < 0) {
        fprintf(stderr, "net_tls_new: %s\n", err);
        return 2;
    }
    g_cctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION);
    g_big = malloc(BIG_SIZE);
    for (size_t i = 0; i < BIG_SIZE; i++)
        g_big[i] = pat(i);

    RUN(t_api);
    RUN_BOTH(t_echo);
    RUN_BOTH(t_starttls);
    RUN_BOTH(t_alpn);
    RUN_BOTH(t_sni);
    RUN_BOTH(t_reload);
    RUN_BOTH(t_binding);
    RUN_BOTH(t_refuse);
    RUN_BOTH(t_many);
    RUN_BOTH(t_pause);
    RUN_BOTH(t_backpressure);
    RUN_BOTH(t_send_ref);
    RUN_BOTH(t_stop);
    const char *bench = getenv("RINGMAIL_TLS_BENCH");
    if (bench && *bench == '1') {
        RUN_BOTH(bench_idle_memory);
        RUN_BOTH(bench_throughput);
    }

    net_tls_free(g_tls);
    SSL_CTX_free(g_cctx);
    free(g_big);
    return test_summary();
}
