/* net/tls.c — TLS (BoringSSL) as a filter inside the runtime: the backends
 * move ciphertext, the owner's callbacks see plaintext only.
 *
 * Per connection: one SSL and one custom BIO used for both directions.
 * The BIO reads from the receive buffer the backend is delivering (a window
 * set for the duration of net_tls_input, always consumed completely: the
 * SSL keeps a partial record in its own buffer) and writes straight into
 * the connection's wire queue (net_out_copy): no memory BIO, no extra copy,
 * and nothing held while idle (BoringSSL frees its record buffers when they
 * are empty; the handshake configuration is shed once it is done).
 *
 * Plaintext to send waits in its own queue (copied blocks and borrowed
 * chunks, like the wire queue) and is encrypted in net_tls_service, at most
 * TLS_OUT_MAX bytes of ciphertext ahead of the socket, so a large borrowed
 * message body is never encrypted all at once.
 *
 * Contexts: a net_tls holds a refcounted "set" (the default SSL_CTX plus
 * one per SNI pair).  A handshake takes a reference for its duration (the
 * servername callback looks names up in it); net_tls_reload builds a new
 * set and swaps the pointer under a mutex, so handshakes in progress keep
 * the set they started with and sessions keep their SSL_CTX (refcounted by
 * BoringSSL). */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/nid.h>
#include <openssl/obj.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "net/internal.h"

/* Ciphertext queued ahead of the socket before encryption waits. */
#define TLS_OUT_MAX (128 * 1024)
/* Plaintext per SSL_write: one full record. */
#define TLS_RECORD 16384

#define TLS_CIPHERS                                                     \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"        \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"        \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

enum { TS_HANDSHAKE, TS_OPEN, TS_FAILED };

struct tls_set {
    atomic_int refs;
    SSL_CTX *def;
    size_t n;
    struct {
        char *domain;
        SSL_CTX *ctx;
    } e[];
};

struct tls_pair {
    char *domain, *cert, *key;
};

struct net_tls {
    pthread_mutex_t lock;           /* guards cur (swap vs. take a ref) */
    struct tls_set *cur;
    char *cert, *key;
    size_t nsni;
    struct tls_pair *sni;
};

/* Per connection; allocated by net_tls_conn_start. */
struct net_tlsc {
    SSL *ssl;
    struct tls_set *set;            /* held during the handshake only */
    struct net_out *pq;             /* plaintext waiting for encryption */
    const uint8_t *in;              /* ciphertext window for the BIO */
    size_t inlen;
    uint8_t state;
    bool shut_sent;
};

/* tls-server-end-point of an SSL_CTX's certificate, kept as ex_data. */
struct tls_ep {
    unsigned len;
    uint8_t h[EVP_MAX_MD_SIZE];
};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static BIO_METHOD *g_bio_method;
static int g_ep_idx = -1;

/* ---- the BIO: reads the delivery window, writes the wire queue ---- */

static int bio_write(BIO *b, const char *p, int n)
{
    struct net_conn *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (n <= 0)
        return 0;
    if (net_out_copy(c, p, (size_t)n) < 0) {
        net_conn_abort(c);
        return -1;
    }
    return n;
}

static int bio_read(BIO *b, char *p, int n)
{
    struct net_conn *c = BIO_get_data(b);
    struct net_tlsc *t = c->tls;
    BIO_clear_retry_flags(b);
    if (n <= 0)
        return 0;
    if (!t->inlen) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t k = t->inlen < (size_t)n ? t->inlen : (size_t)n;
    memcpy(p, t->in, k);
    t->in += k;
    t->inlen -= k;
    return (int)k;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static void ep_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int index,
                    long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)index;
    (void)argl;
    (void)argp;
    free(ptr);
}

static void once_init(void)
{
    g_bio_method = BIO_meth_new(BIO_TYPE_SOURCE_SINK | 0x80, "ringmail");
    if (g_bio_method) {
        BIO_meth_set_write(g_bio_method, bio_write);
        BIO_meth_set_read(g_bio_method, bio_read);
        BIO_meth_set_ctrl(g_bio_method, bio_ctrl);
    }
    g_ep_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, ep_free);
}

/* ---- contexts ---- */

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    unsigned long e = ERR_get_error();
    if (e) {
        size_t k = strlen(err);
        if (k + 3 < errlen) {
            memcpy(err + k, ": ", 2);
            ERR_error_string_n(e, err + k + 2, errlen - k - 2);
        }
    }
    ERR_clear_error();
}

static int alpn_select(SSL *ssl, const uint8_t **out, uint8_t *out_len,
                       const uint8_t *in, unsigned in_len, void *arg)
{
    (void)ssl;
    (void)arg;
    for (unsigned i = 0; i < in_len;) {
        unsigned l = in[i];
        if (i + 1 + l > in_len)
            break;
        if (l == 4 && !memcmp(in + i + 1, "imap", 4)) {
            *out = in + i + 1;
            *out_len = 4;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + l;
    }
    /* The client wants some other protocol: no_application_protocol. */
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static bool name_match(const char *pat, const char *name)
{
    if (!strcasecmp(pat, name))
        return true;
    if (pat[0] == '*' && pat[1] == '.') {
        const char *dot = strchr(name, '.');
        return dot && dot != name && !strcasecmp(dot + 1, pat + 2);
    }
    return false;
}

static int servername_cb(SSL *ssl, int *alert, void *arg)
{
    struct tls_set *set = arg;
    (void)alert;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name || !set)
        return SSL_TLSEXT_ERR_OK;
    /* Exact names win over wildcards. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < set->n; i++) {
            const char *d = set->e[i].domain;
            bool wild = d[0] == '*';
            if (wild != (pass == 1))
                continue;
            if (name_match(d, name)) {
                SSL_set_SSL_CTX(ssl, set->e[i].ctx);
                return SSL_TLSEXT_ERR_OK;
            }
        }
    }
    return SSL_TLSEXT_ERR_OK;   /* unknown name: the default certificate */
}

/* RFC 5929 4.1: the certificate's signature hash, but SHA-256 for MD5
 * and SHA-1 (and for signatures without a separate hash, e.g. Ed25519). */
static int endpoint_hash(X509 *x, struct tls_ep *ep)
{
    int md_nid = NID_undef, pk_nid = NID_undef;
    const EVP_MD *md = NULL;
    if (OBJ_find_sigid_algs(X509_get_signature_nid(x), &md_nid, &pk_nid) &&
        md_nid != NID_md5 && md_nid != NID_sha1 && md_nid != NID_undef)
        md = EVP_get_digestbynid(md_nid);
    if (!md)
        md = EVP_sha256();
    return X509_digest(x, md, ep->h, &ep->len) ? 0 : -EINVAL;
}

static SSL_CTX *ctx_new(const char *cert, const char *key, char *err,
                        size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    struct tls_ep *ep = NULL;
    if (!ctx) {
        seterr(err, errlen, "SSL_CTX_new");
        return NULL;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_strict_cipher_list(ctx, TLS_CIPHERS)) {
        seterr(err, errlen, "TLS settings");
        goto fail;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS |
                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                          SSL_MODE_ENABLE_PARTIAL_WRITE);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE |
                             SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        seterr(err, errlen, "%s", cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        seterr(err, errlen, "%s", key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        seterr(err, errlen, "%s does not match %s", key, cert);
        goto fail;
    }
    ep = calloc(1, sizeof *ep);
    X509 *x = SSL_CTX_get0_certificate(ctx);
    if (!ep || !x || endpoint_hash(x, ep) < 0 ||
        !SSL_CTX_set_ex_data(ctx, g_ep_idx, ep)) {
        free(ep);
        seterr(err, errlen, "%s: certificate hash", cert);
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static void set_put(struct tls_set *set)
{
    if (!set || atomic_fetch_sub(&set->refs, 1) != 1)
        return;
    SSL_CTX_free(set->def);
    for (size_t i = 0; i < set->n; i++) {
        SSL_CTX_free(set->e[i].ctx);
        free(set->e[i].domain);
    }
    free(set);
}

static struct tls_set *set_get(net_tls *t)
{
    pthread_mutex_lock(&t->lock);
    struct tls_set *set = t->cur;
    atomic_fetch_add(&set->refs, 1);
    pthread_mutex_unlock(&t->lock);
    return set;
}

static struct tls_set *set_build(const net_tls *t, char *err, size_t errlen)
{
    struct tls_set *set = calloc(1, sizeof *set + t->nsni * sizeof set->e[0]);
    if (!set) {
        seterr(err, errlen, "out of memory");
        return NULL;
    }
    atomic_init(&set->refs, 1);
    set->def = ctx_new(t->cert, t->key, err, errlen);
    if (!set->def)
        goto fail;
    for (size_t i = 0; i < t->nsni; i++) {
        set->e[i].ctx = ctx_new(t->sni[i].cert, t->sni[i].key, err, errlen);
        set->e[i].domain = strdup(t->sni[i].domain);
        set->n++;
        if (!set->e[i].ctx || !set->e[i].domain) {
            if (set->e[i].ctx)
                seterr(err, errlen, "out of memory");
            goto fail;
        }
    }
    for (size_t i = 0; i <= set->n; i++) {
        SSL_CTX *ctx = i < set->n ? set->e[i].ctx : set->def;
        SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
        SSL_CTX_set_tlsext_servername_arg(ctx, set);
    }
    return set;
fail:
    set_put(set);
    return NULL;
}

int net_tls_new(const char *cert, const char *key, const char *const *sni,
                size_t nsni, net_tls **out, char *err, size_t errlen)
{
    net_tls *t;
    *out = NULL;
    pthread_once(&g_once, once_init);
    if (!g_bio_method || g_ep_idx < 0) {
        seterr(err, errlen, "BoringSSL initialization");
        return -ENOMEM;
    }
    if (!cert || !key) {
        seterr(err, errlen, "no certificate or key");
        return -EINVAL;
    }
    t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    pthread_mutex_init(&t->lock, NULL);
    t->cert = strdup(cert);
    t->key = strdup(key);
    t->sni = nsni ? calloc(nsni, sizeof *t->sni) : NULL;
    if (!t->cert || !t->key || (nsni && !t->sni)) {
        net_tls_free(t);
        seterr(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < nsni; i++) {
        /* "domain=certfile:keyfile" */
        const char *eq = strchr(sni[i], '=');
        const char *colon = eq ? strchr(eq + 1, ':') : NULL;
        if (!eq || eq == sni[i] || !colon || colon == eq + 1 || !colon[1]) {
            seterr(err, errlen, "bad SNI entry '%s' (want domain=cert:key)",
                   sni[i]);
            net_tls_free(t);
            return -EINVAL;
        }
        struct tls_pair *p = &t->sni[t->nsni++];
        p->domain = strndup(sni[i], (size_t)(eq - sni[i]));
        p->cert = strndup(eq + 1, (size_t)(colon - eq - 1));
        p->key = strdup(colon + 1);
        if (!p->domain || !p->cert || !p->key) {
            net_tls_free(t);
            seterr(err, errlen, "out of memory");
            return -ENOMEM;
        }
    }
    t->cur = set_build(t, err, errlen);
    if (!t->cur) {
        net_tls_free(t);
        return -EINVAL;
    }
    *out = t;
    return 0;
}

int net_tls_reload(net_tls *t, char *err, size_t errlen)
{
    struct tls_set *set = set_build(t, err, errlen);
    if (!set)
        return -EINVAL;
    pthread_mutex_lock(&t->lock);
    struct tls_set *old = t->cur;
    t->cur = set;
    pthread_mutex_unlock(&t->lock);
    set_put(old);
    return 0;
}

void net_tls_free(net_tls *t)
{
    if (!t)
        return;
    set_put(t->cur);
    for (size_t i = 0; i < t->nsni; i++) {
        free(t->sni[i].domain);
        free(t->sni[i].cert);
        free(t->sni[i].key);
    }
    free(t->sni);
    free(t->cert);
    free(t->key);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* ---- connections ---- */

int net_tls_conn_start(struct net_conn *c, net_tls *tls)
{
    struct net_tlsc *t = calloc(1, sizeof *t);
    BIO *bio = NULL;
    if (!t)
        return -ENOMEM;
    t->set = set_get(tls);
    t->ssl = SSL_new(t->set->def);
    bio = BIO_new(g_bio_method);
    if (!t->ssl || !bio) {
        BIO_free(bio);
        SSL_free(t->ssl);
        set_put(t->set);
        free(t);
        ERR_clear_error();
        return -ENOMEM;
    }
    BIO_set_data(bio, c);
    BIO_set_init(bio, 1);
    SSL_set_bio(t->ssl, bio, bio);      /* one reference for both */
    SSL_set_accept_state(t->ssl);
    SSL_set_shed_handshake_config(t->ssl, 1);
    t->state = TS_HANDSHAKE;
    c->tls = t;
    return 0;
}

static void tls_fail(struct net_conn *c)
{
    struct net_tlsc *t = c->tls;
    ERR_clear_error();
    t->state = TS_FAILED;
    t->shut_sent = true;    /* no close_notify after a fatal alert */
    set_put(t->set);
    t->set = NULL;
    net_tls_release_plain(c);
    /* Flush the alert BoringSSL queued, then close; on_close as usual. */
    net_conn_begin_close(c);
}

void net_tls_input(struct net_conn *c, const uint8_t *p, size_t n)
{
    struct net_tlsc *t = c->tls;
    uint8_t buf[TLS_RECORD];

    if (t->state == TS_FAILED)
        return;
    t->in = p;
    t->inlen = n;
    if (t->state == TS_HANDSHAKE) {
        int r = SSL_do_handshake(t->ssl);
        if (r == 1) {
            t->state = TS_OPEN;
            set_put(t->set);
            t->set = NULL;
        } else if (SSL_get_error(t->ssl, r) != SSL_ERROR_WANT_READ) {
            tls_fail(c);
        }
    }
    while (t->state == TS_OPEN &&
           !(c->flags & (NC_CLOSING | NC_ABORT | NC_DEAD))) {
        int r = SSL_read(t->ssl, buf, sizeof buf);
        if (r > 0) {
            net_conn_deliver_plain(c, buf, (size_t)r);
            continue;
        }
        int e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_ZERO_RETURN) {
            /* close_notify: as good as a FIN. */
            c->flags |= NC_PEER_EOF;
        } else if (e != SSL_ERROR_WANT_READ) {
            tls_fail(c);
        }
        break;
    }
    t->in = NULL;
    t->inlen = 0;
    /* Handshake messages, tickets or an alert may be queued now. */
    net_worker_attend(c->w, c);
}

int net_tls_send(struct net_conn *c, const void *p, size_t n,
                 void (*release)(void *), void *arg, bool copy)
{
    struct net_tlsc *t = c->tls;
    if (t->state == TS_FAILED) {
        if (release)
            release(arg);
        return 0;
    }
    int rc = copy ? net_outq_copy(&t->pq, p, n)
                  : net_outq_ref(&t->pq, p, n, release, arg);
    if (rc == 0)
        net_worker_attend(c->w, c);
    return rc;
}

size_t net_tls_pending(const struct net_conn *c)
{
    return c->tls && c->tls->pq ? c->tls->pq->pending : 0;
}

bool net_tls_more(const struct net_conn *c)
{
    const struct net_tlsc *t = c->tls;
    return t->state == TS_OPEN && t->pq && t->pq->pending &&
           (!c->out || !c->out->pending) &&
           !(c->flags & (NC_ABORT | NC_DEAD));
}

void net_tls_service(struct net_conn *c)
{
    struct net_tlsc *t = c->tls;

    if (t->state == TS_HANDSHAKE && (c->flags & NC_CLOSING)) {
        /* Nobody will finish the handshake for us: drop what waits. */
        net_tls_release_plain(c);
        return;
    }
    if (t->state != TS_OPEN)
        return;
    while (t->pq && t->pq->head && (!c->out || c->out->pending < TLS_OUT_MAX)) {
        struct net_chunk *ch = t->pq->head;
        if (!ch->len) {
            net_outq_advance(t->pq, 0);
            continue;
        }
        size_t k = ch->len < TLS_RECORD ? ch->len : TLS_RECORD;
        int r = SSL_write(t->ssl, ch->p, (int)k);
        if (r <= 0) {
            if (SSL_get_error(t->ssl, r) != SSL_ERROR_WANT_READ) {
                ERR_clear_error();
                net_conn_abort(c);
            }
            return;
        }
        net_outq_advance(t->pq, (size_t)r);
        if (c->flags & NC_ABORT)
            return;
    }
    if (t->pq && !t->pq->head) {
        free(t->pq);
        t->pq = NULL;
    }
    /* close_notify only once nothing waits above us (the deflater). */
    if ((c->flags & NC_CLOSING) && !t->pq && !t->shut_sent &&
        !net_z_pending(c)) {
        t->shut_sent = true;
        if (SSL_shutdown(t->ssl) < 0)
            ERR_clear_error();
    }
}

void net_tls_release_plain(struct net_conn *c)
{
    struct net_tlsc *t = c->tls;
    if (!t || !t->pq)
        return;
    struct net_out *o = t->pq;
    t->pq = NULL;
    net_outq_release_all(o);
    free(o);
}

void net_tls_conn_free(struct net_conn *c)
{
    struct net_tlsc *t = c->tls;
    if (!t)
        return;
    net_tls_release_plain(c);
    set_put(t->set);
    SSL_free(t->ssl);
    free(t);
    c->tls = NULL;
    ERR_clear_error();
}

/* ---- public ---- */

int net_conn_starttls(net_conn *c, net_tls *tls)
{
    if (!tls)
        return -EINVAL;
    if (c->tls)
        return -EALREADY;
    if (c->flags & (NC_CLOSING | NC_ABORT | NC_DEAD))
        return -ENOTCONN;
    /* The stash below would be compressed bytes, and the handshake would
     * be read through the inflater: TLS goes on before compression. */
    if (c->z)
        return -EINVAL;
    int rc = net_tls_conn_start(c, tls);
    if (rc < 0)
        return rc;
    /* Plaintext received after the command is never delivered (nor fed to
     * the handshake): CVE-2011-0411.  The cleartext output queued so far
     * stays ahead of anything the handshake writes in the wire queue. */
    free(c->stash);
    c->stash = NULL;
    return 0;
}

bool net_conn_is_tls(const net_conn *c)
{
    return c->tls != NULL;
}

int net_conn_tls_binding(const net_conn *c, const char *type, uint8_t *out,
                         size_t *len)
{
    bool exporter = type && !strcmp(type, "tls-exporter");
    bool endpoint = type && !strcmp(type, "tls-server-end-point");
    if (!exporter && !endpoint)
        return -EINVAL;
    if (!c->tls || c->tls->state != TS_OPEN)
        return -ENOTCONN;
    SSL *ssl = c->tls->ssl;
    if (exporter) {
        static const char label[] = "EXPORTER-Channel-Binding";
        if (SSL_version(ssl) != TLS1_3_VERSION)
            return -ENOTSUP;    /* RFC 9266: TLS 1.3 only */
        if (*len < 32)
            return -ENOSPC;
        if (!SSL_export_keying_material(ssl, out, 32, label, sizeof label - 1,
                                        NULL, 0, 0)) {
            ERR_clear_error();
            return -EIO;
        }
        *len = 32;
        return 0;
    }
    const struct tls_ep *ep = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), g_ep_idx);
    if (!ep)
        return -EIO;
    if (*len < ep->len)
        return -ENOSPC;
    memcpy(out, ep->h, ep->len);
    *len = ep->len;
    return 0;
}
