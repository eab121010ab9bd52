/* bench/bench_tls.c — TLS record throughput with BoringSSL, the way
 * net/tls.c configures the server.
 *
 *   tls/<version>/<cipher>/record:16384
 *       the server SSL_writes 16 KiB of plaintext (one full record, as
 *       net/tls.c does per SSL_write), the client SSL_reads it back, over a
 *       BIO pair in this thread: encryption + decryption of one record per
 *       iteration, no sockets.  bytes_per_second = plaintext bytes/s.
 *
 *   tls13/aes128gcm   TLS 1.3, TLS_AES_128_GCM_SHA256 (BoringSSL picks the
 *                     TLS 1.3 suite itself: AES-GCM on a CPU with AES
 *                     instructions; the suite is checked)
 *   tls12/aes128gcm   TLS 1.2, ECDHE-ECDSA-AES128-GCM-SHA256
 *   tls12/chacha20    TLS 1.2, ECDHE-ECDSA-CHACHA20-POLY1305 (BoringSSL has
 *                     no API to choose a TLS 1.3 suite, so CHACHA20 is
 *                     measured under 1.2: the record layer is the same AEAD)
 *
 * The certificate is a throwaway P-256 one made with BoringSSL at setup and
 * written to the work directory; net_tls_new() loads it first, so it is one
 * the server accepts.  The server SSL_CTX repeats net/tls.c's ctx_new()
 * settings (versions, cipher list, modes, options, no session cache):
 * net/tls.c keeps its SSL_CTX private, with no accessor.  Checked once per
 * benchmark: the negotiated version and suite, and the first record's bytes.
 */
#include "bench/bench.h"
#include "net/net.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bytestring.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define RECORD 16384
#define BIO_BUF (64 * 1024)

/* As in net/tls.c. */
#define TLS_CIPHERS                                                     \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"        \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"        \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

typedef struct tls_arg {
    const char *name;
    uint16_t version;
    const char *client_ciphers;     /* TLS 1.2 only */
    uint32_t want_cipher;           /* SSL_CIPHER_get_id */
} tls_arg;

static tls_arg g_args[] = {
    {"tls/tls13/aes128gcm/record:16384", TLS1_3_VERSION, NULL, 0x03001301},
    {"tls/tls12/aes128gcm/record:16384", TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256",
     0x0300C02B},
    {"tls/tls12/chacha20/record:16384", TLS1_2_VERSION, "ECDHE-ECDSA-CHACHA20-POLY1305",
     0x0300CCA9},
};

static char g_cert[PATH_MAX], g_key[PATH_MAX];
static bool g_have_cert;

/* A self-signed P-256 certificate for "localhost", valid a day. */
static int make_cert(void)
{
    const char *dir = bench_workdir();
    if (!dir)
        return -errno;
    if ((size_t)snprintf(g_cert, sizeof g_cert, "%s/tls-cert.pem", dir) >= sizeof g_cert ||
        (size_t)snprintf(g_key, sizeof g_key, "%s/tls-key.pem", dir) >= sizeof g_key)
        return -ENAMETOOLONG;
    int r = -EIO;
    EVP_PKEY *pkey = EVP_PKEY_new();
    EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
    X509 *x = X509_new();
    FILE *fc = NULL, *fk = NULL;
    if (!pkey || !ec || !x || !EC_KEY_generate_key(ec) || !EVP_PKEY_set1_EC_KEY(pkey, ec))
        goto out;
    X509_NAME *nm = X509_get_subject_name(x);
    if (!X509_set_version(x, X509_VERSION_3) ||
        !ASN1_INTEGER_set(X509_get_serialNumber(x), 1) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), 86400) || !X509_set_pubkey(x, pkey) ||
        !X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC,
                                    (const uint8_t *)"localhost", -1, -1, 0) ||
        !X509_set_issuer_name(x, nm) || !X509_sign(x, pkey, EVP_sha256()))
        goto out;
    fc = fopen(g_cert, "w");
    fk = fopen(g_key, "w");
    if (!fc || !fk || !PEM_write_X509(fc, x) ||
        !PEM_write_PrivateKey(fk, pkey, NULL, NULL, 0, NULL, NULL))
        goto out;
    r = 0;
out:
    if (fc && fclose(fc) != 0)
        r = -EIO;
    if (fk && fclose(fk) != 0)
        r = -EIO;
    X509_free(x);
    EC_KEY_free(ec);
    EVP_PKEY_free(pkey);
    if (r == 0) {
        /* The server's own loader must accept it. */
        char err[256];
        net_tls *t = NULL;
        if (net_tls_new(g_cert, g_key, NULL, 0, &t, err, sizeof err) < 0) {
            bench_note("net_tls_new: %s", err);
            return -EINVAL;
        }
        net_tls_free(t);
    }
    return r;
}

/* net/tls.c ctx_new(), minus ALPN and the channel-binding hash. */
static SSL_CTX *server_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (!ctx)
        return NULL;
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_strict_cipher_list(ctx, TLS_CIPHERS))
        goto fail;
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_ENABLE_PARTIAL_WRITE);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_use_certificate_chain_file(ctx, g_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, g_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1)
        goto fail;
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static SSL_CTX *client_ctx(const tls_arg *a)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (!ctx)
        return NULL;
    if (!SSL_CTX_set_min_proto_version(ctx, a->version) ||
        !SSL_CTX_set_max_proto_version(ctx, a->version) ||
        (a->client_ciphers && !SSL_CTX_set_strict_cipher_list(ctx, a->client_ciphers))) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static bool want_io(SSL *s, int ret)
{
    int e = SSL_get_error(s, ret);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

/* Read exactly n bytes on the client. */
static int read_all(SSL *c, uint8_t *p, size_t n)
{
    while (n) {
        int k = SSL_read(c, p, (int)n);
        if (k <= 0)
            return -EIO;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static void bm_tls(bench_state *st, void *arg)
{
    const tls_arg *a = arg;
    SSL_CTX *sctx = NULL, *cctx = NULL;
    SSL *srv = NULL, *cli = NULL;
    BIO *bs = NULL, *bc = NULL;
    uint8_t *out = malloc(RECORD), *in = malloc(RECORD);
    if (!g_have_cert) {
        bench_error(st, "no certificate (see the setup error above)");
        goto out;
    }
    if (!out || !in || !(sctx = server_ctx()) || !(cctx = client_ctx(a)) ||
        !(srv = SSL_new(sctx)) || !(cli = SSL_new(cctx)) ||
        !BIO_new_bio_pair(&bs, BIO_BUF, &bc, BIO_BUF)) {
        bench_error(st, "TLS setup failed");
        goto out;
    }
    SSL_set_bio(srv, bs, bs);   /* one reference each, consumed */
    SSL_set_bio(cli, bc, bc);
    SSL_set_accept_state(srv);
    SSL_set_connect_state(cli);
    bool sdone = false, cdone = false;
    for (int round = 0; round < 100 && !(sdone && cdone); round++) {
        int r = 0;
        if (!cdone && (r = SSL_do_handshake(cli)) != 1 && !want_io(cli, r))
            break;
        cdone = cdone || r == 1;
        if (!sdone && (r = SSL_do_handshake(srv)) != 1 && !want_io(srv, r))
            break;
        sdone = sdone || r == 1;
    }
    const SSL_CIPHER *ciph = SSL_get_current_cipher(cli);
    if (!sdone || !cdone || !ciph) {
        bench_error(st, "handshake failed: %s",
                    ERR_reason_error_string(ERR_peek_last_error()));
        goto out;
    }
    if (SSL_version(cli) != a->version || SSL_CIPHER_get_id(ciph) != a->want_cipher) {
        bench_error(st, "negotiated %s with %s, not the suite wanted",
                    SSL_get_version(cli), SSL_CIPHER_get_name(ciph));
        goto out;
    }
    bench_set_label(st, SSL_CIPHER_get_name(ciph));
    for (size_t i = 0; i < RECORD; i++)
        out[i] = (uint8_t)(i * 131 + (i >> 7));
    /* TLS 1.3 tickets and the like reach the client with the first read. */
    if (SSL_write(srv, out, RECORD) != RECORD || read_all(cli, in, RECORD) < 0 ||
        memcmp(in, out, RECORD)) {
        bench_error(st, "first record did not arrive intact");
        goto out;
    }
    bool ok = true;
    while (ok && bench_keep_running(st))
        ok = SSL_write(srv, out, RECORD) == RECORD && read_all(cli, in, RECORD) == 0;
    if (!ok) {
        bench_error(st, "record exchange failed");
        goto out;
    }
    bench_set_bytes_processed(st, bench_iterations(st) * (int64_t)RECORD);
    bench_set_items_processed(st, bench_iterations(st));
out:
    SSL_free(cli);
    SSL_free(srv);
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
    free(out);
    free(in);
}

int bench_suite_tls_register(const bench_opts *o)
{
    (void)o;
    int r = make_cert();
    if (r < 0)
        bench_note("TLS certificate setup failed: %s", strerror(-r));
    g_have_cert = r == 0;
    for (size_t i = 0; i < sizeof g_args / sizeof g_args[0]; i++) {
        bench_bm *b = bench_register(g_args[i].name, bm_tls, &g_args[i]);
        if (!b)
            return -ENOMEM;
        bench_bm_unit(b, BENCH_US);
    }
    return 0;
}

void bench_suite_tls_teardown(void)
{
}
