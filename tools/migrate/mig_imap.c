/* tools/migrate/mig_imap.c — the migration's IMAP client (see mig_imap.h).
 *
 * Blocking I/O on one socket, TLS through BoringSSL.  A response is read
 * in the wire's own form (line, "{n}" CRLF, n bytes, rest of the line...)
 * into one buffer, so the tokenizer below sees literals exactly as RFC 9051
 * 4.3 writes them and needs no second representation. */
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tools/migrate/mig_imap.h"

/* Debian's bundle of the system's trusted certificates (ca-certificates). */
#define MIG_SYSTEM_CA "/etc/ssl/certs/ca-certificates.crt"
#define MIG_TIMEOUT_S 120   /* a server silent this long is gone */

struct mig_conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    char rbuf[65536];       /* bytes read, not yet consumed */
    size_t roff, rlen;
    char *resp;             /* the response being assembled */
    size_t resp_len, resp_cap;
    char *out;              /* the command being built */
    size_t out_len, out_cap;
    bool out_oom;
    uint32_t next_tag, cur_tag;
    char *caps;             /* " CAP1 CAP2 ... " upper-cased */
    uint64_t bytes_in, bytes_out;
};

/* ---- URL ---------------------------------------------------------------- */

int mig_url_parse(const char *s, mig_url *out)
{
    memset(out, 0, sizeof *out);
    const char *h;
    if (strncmp(s, "imaps://", 8) == 0) {
        out->tls = true;
        h = s + 8;
        snprintf(out->port, sizeof out->port, "993");
    } else if (strncmp(s, "imap://", 7) == 0) {
        h = s + 7;
        snprintf(out->port, sizeof out->port, "143");
    } else {
        return -EINVAL;
    }
    const char *hend, *port = NULL;
    if (*h == '[') {
        hend = strchr(h, ']');
        if (!hend)
            return -EINVAL;
        h++;
        if (hend[1] == ':')
            port = hend + 2;
        else if (hend[1] && strcmp(hend + 1, "/") != 0)
            return -EINVAL;
    } else {
        hend = h + strcspn(h, ":/");
        if (*hend == ':')
            port = hend + 1;
        else if (*hend && strcmp(hend, "/") != 0)
            return -EINVAL;
    }
    if (hend == h || (size_t)(hend - h) >= sizeof out->host)
        return -EINVAL;
    memcpy(out->host, h, (size_t)(hend - h));
    if (port) {
        size_t n = strspn(port, "0123456789");
        if (n == 0 || n >= sizeof out->port || (port[n] && strcmp(port + n, "/") != 0))
            return -EINVAL;
        memcpy(out->port, port, n);
        out->port[n] = '\0';
    }
    return 0;
}

/* ---- raw I/O ------------------------------------------------------------- */

static void tls_error(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256];
    if (e) {
        ERR_error_string_n(e, buf, sizeof buf);
        snprintf(err, errlen, "%s: %s", what, buf);
    } else {
        snprintf(err, errlen, "%s", what);
    }
}

/* Whether a failed SSL_read/SSL_write was only a signal (SIGINT asking to
 * stop after this batch): the socket blocks, so a "retry" answer
 * (BoringSSL's socket BIO turns EINTR into one) means exactly that.  A
 * timeout (SO_RCVTIMEO: EAGAIN) is not retried. */
static bool interrupted(SSL *ssl, int k)
{
    int e = SSL_get_error(ssl, k);
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return false;
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ||
           (e == SSL_ERROR_SYSCALL && errno == EINTR);
}

static int raw_write(mig_conn *c, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w;
        if (c->ssl) {
            int k = SSL_write(c->ssl, p, n > 1u << 30 ? 1 << 30 : (int)n);
            if (k <= 0) {
                if (interrupted(c->ssl, k))
                    continue;
                return -EPIPE;
            }
            w = k;
        } else {
            w = send(c->fd, p, n, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                return -errno;
        }
        c->bytes_out += (uint64_t)w;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Refill rbuf; -ECONNRESET at end of stream. */
static int fill(mig_conn *c)
{
    if (c->roff > 0 && c->roff == c->rlen)
        c->roff = c->rlen = 0;
    if (c->roff > 0) {
        memmove(c->rbuf, c->rbuf + c->roff, c->rlen - c->roff);
        c->rlen -= c->roff;
        c->roff = 0;
    }
    for (;;) {
        ssize_t n;
        if (c->ssl) {
            int k = SSL_read(c->ssl, c->rbuf + c->rlen, (int)(sizeof c->rbuf - c->rlen));
            if (k <= 0) {
                if (interrupted(c->ssl, k))
                    continue;
                return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -ECONNRESET;
            }
            n = k;
        } else {
            n = recv(c->fd, c->rbuf + c->rlen, sizeof c->rbuf - c->rlen, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return errno == EAGAIN ? -ETIMEDOUT : -errno;
            if (n == 0)
                return -ECONNRESET;
        }
        c->rlen += (size_t)n;
        c->bytes_in += (uint64_t)n;
        return 0;
    }
}

static int resp_reserve(mig_conn *c, size_t more)
{
    if (c->resp_len + more + 1 <= c->resp_cap)
        return 0;
    size_t cap = c->resp_cap ? c->resp_cap : 4096;
    while (cap < c->resp_len + more + 1)
        cap *= 2;
    char *p = realloc(c->resp, cap);
    if (!p)
        return -ENOMEM;
    c->resp = p;
    c->resp_cap = cap;
    return 0;
}

/* ---- reading responses --------------------------------------------------- */

/* Append one line (without CRLF) to resp; the text part of a response is
 * bounded by MIG_MAX_LINE in total. */
static int read_line(mig_conn *c, size_t *text)
{
    for (;;) {
        char *s = c->rbuf + c->roff;
        size_t avail = c->rlen - c->roff;
        char *nl = memchr(s, '\n', avail);
        size_t take = nl ? (size_t)(nl - s) + 1 : avail;
        if (*text + take > MIG_MAX_LINE)
            return -E2BIG;
        if (resp_reserve(c, take) < 0)
            return -ENOMEM;
        memcpy(c->resp + c->resp_len, s, take);
        c->resp_len += take;
        *text += take;
        c->roff += take;
        if (nl) {
            /* RFC 9051 2.2: lines end with CRLF. */
            if (c->resp_len < 2 || c->resp[c->resp_len - 2] != '\r')
                return -EPROTO;
            c->resp_len -= 2;
            return 0;
        }
        int r = fill(c);
        if (r < 0)
            return r;
    }
}

/* If the response so far ends with "{n}" or "{n+}", n; else -1. */
static int64_t literal_at_end(const mig_conn *c)
{
    const char *e = c->resp + c->resp_len;
    if (c->resp_len < 3 || e[-1] != '}')
        return -1;
    const char *p = e - 2;
    if (*p == '+')
        p--;
    const char *d = p;
    while (d >= c->resp && isdigit((unsigned char)*d))
        d--;
    if (d < c->resp || *d != '{' || d == p)
        return -1;
    if (p - d > 10)             /* more digits than any size we take */
        return INT64_MAX;
    uint64_t n = 0;
    for (const char *q = d + 1; q <= p; q++)
        n = n * 10 + (uint64_t)(*q - '0');
    return (int64_t)n;
}

int mig_read(mig_conn *c, mig_resp *r)
{
    c->resp_len = 0;
    size_t text = 0;
    for (;;) {
        int rc = read_line(c, &text);
        if (rc < 0)
            return rc;
        int64_t lit = literal_at_end(c);
        if (lit < 0)
            break;
        if ((uint64_t)lit > MIG_MAX_LITERAL)
            return -EFBIG;
        /* Keep the CRLF after "{n}": the tokenizer expects the wire form. */
        if (resp_reserve(c, (size_t)lit + 2) < 0)
            return -ENOMEM;
        c->resp[c->resp_len++] = '\r';
        c->resp[c->resp_len++] = '\n';
        size_t need = (size_t)lit;
        while (need > 0) {
            if (c->roff == c->rlen) {
                rc = fill(c);
                if (rc < 0)
                    return rc;
            }
            size_t k = c->rlen - c->roff;
            if (k > need)
                k = need;
            memcpy(c->resp + c->resp_len, c->rbuf + c->roff, k);
            c->resp_len += k;
            c->roff += k;
            need -= k;
        }
    }
    c->resp[c->resp_len] = '\0';
    r->data = c->resp;
    r->len = c->resp_len;
    r->tagged = false;
    r->tag = 0;
    if (c->resp_len > 1 && c->resp[0] == 'm') {
        char *end;
        unsigned long t = strtoul(c->resp + 1, &end, 10);
        if (end > c->resp + 1 && *end == ' ') {
            r->tagged = true;
            r->tag = (uint32_t)t;
        }
    }
    return 0;
}

uint64_t mig_bytes_in(const mig_conn *c)
{
    return c->bytes_in;
}

int mig_tagged_status(const mig_resp *r, char *err, size_t errlen)
{
    const char *p = strchr(r->data, ' ');
    if (!p)
        return -EPROTO;
    p++;
    int rc;
    if (strncasecmp(p, "OK", 2) == 0 && (p[2] == ' ' || !p[2]))
        rc = 0;
    else if (strncasecmp(p, "NO", 2) == 0 && (p[2] == ' ' || !p[2]))
        rc = -EACCES;
    else
        rc = -EPROTO;
    if (err && errlen) {
        const char *t = p + strcspn(p, " ");
        t += *t == ' ';
        snprintf(err, errlen, "%.300s", t);
    }
    return rc;
}

bool mig_resp_code(const mig_resp *r, const char *code, uint64_t *num)
{
    /* "* OK [CODE n] text" or "TAG OK [CODE n] ...": the code follows the
     * status word (RFC 9051 7.1). */
    const char *p = strchr(r->data, ' ');
    if (!p)
        return false;
    p = strchr(p + 1, ' ');
    if (!p || p[1] != '[')
        return false;
    p += 2;
    size_t n = strlen(code);
    if (strncasecmp(p, code, n) != 0 || (p[n] != ' ' && p[n] != ']'))
        return false;
    if (num) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p + n, &end, 10);
        if (end == p + n || errno || (*end != ']' && *end != ' '))
            return false;
        *num = v;
    }
    return true;
}

/* ---- tokens -------------------------------------------------------------- */

mig_tok mig_next(mig_cur *c, const char **s, size_t *n, bool *quoted)
{
    while (c->p < c->end && *c->p == ' ')
        c->p++;
    if (c->p >= c->end)
        return MIG_T_END;
    if (quoted)
        *quoted = false;
    char ch = *c->p;
    if (ch == '(') {
        c->p++;
        return MIG_T_LPAREN;
    }
    if (ch == ')') {
        c->p++;
        return MIG_T_RPAREN;
    }
    if (ch == '"') {
        const char *q = ++c->p;
        while (q < c->end && *q != '"') {
            if (*q == '\\') {
                if (q + 1 >= c->end || (q[1] != '"' && q[1] != '\\'))
                    return MIG_T_ERR;
                q++;
            } else if (*q == '\r' || *q == '\n') {
                return MIG_T_ERR;
            }
            q++;
        }
        if (q >= c->end)
            return MIG_T_ERR;
        *s = c->p;
        *n = (size_t)(q - c->p);
        c->p = q + 1;
        if (quoted)
            *quoted = true;
        return MIG_T_STRING;
    }
    if (ch == '{' || (ch == '~' && c->p + 1 < c->end && c->p[1] == '{')) {
        const char *q = c->p + (ch == '~') + 1;
        uint64_t len = 0;
        const char *d = q;
        while (q < c->end && isdigit((unsigned char)*q) && q - d < 11)
            len = len * 10 + (uint64_t)(*q++ - '0');
        if (q == d || q >= c->end)
            return MIG_T_ERR;
        if (*q == '+')
            q++;
        if (c->end - q < 3 || q[0] != '}' || q[1] != '\r' || q[2] != '\n')
            return MIG_T_ERR;
        q += 3;
        if ((uint64_t)(c->end - q) < len)
            return MIG_T_ERR;
        *s = q;
        *n = (size_t)len;
        c->p = q + len;
        return MIG_T_STRING;
    }
    const char *q = c->p;
    int depth = 0;
    while (q < c->end) {
        char x = *q;
        if (x == '[')
            depth++;
        else if (x == ']' && depth > 0)
            depth--;
        else if (depth == 0 && (x == ' ' || x == '(' || x == ')' || x == '"' || x == '{'))
            break;
        else if ((unsigned char)x < 0x20 || x == 0x7f)
            return MIG_T_ERR;
        q++;
    }
    *s = c->p;
    *n = (size_t)(q - c->p);
    c->p = q;
    if (*n == 3 && strncasecmp(*s, "NIL", 3) == 0)
        return MIG_T_NIL;
    return MIG_T_ATOM;
}

char *mig_strdup_tok(const char *s, size_t n, bool quoted)
{
    char *o = malloc(n + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (quoted && s[i] == '\\' && i + 1 < n)
            i++;
        o[k++] = s[i];
    }
    o[k] = '\0';
    return o;
}

int mig_skip(mig_cur *c)
{
    const char *s;
    size_t n;
    int depth = 0;
    do {
        mig_tok t = mig_next(c, &s, &n, NULL);
        if (t == MIG_T_ERR || t == MIG_T_END)
            return -EPROTO;
        if (t == MIG_T_LPAREN)
            depth++;
        else if (t == MIG_T_RPAREN && --depth < 0)
            return -EPROTO;
    } while (depth > 0);
    return 0;
}

/* ---- commands ------------------------------------------------------------ */

static void out_add(mig_conn *c, const char *s, size_t n)
{
    if (c->out_len + n + 1 > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 1024;
        while (cap < c->out_len + n + 1)
            cap *= 2;
        char *p = realloc(c->out, cap);
        if (!p) {
            c->out_oom = true;
            return;
        }
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, s, n);
    c->out_len += n;
}

void mig_cmd_begin(mig_conn *c, uint32_t *tag)
{
    c->out_len = 0;
    c->out_oom = false;
    c->cur_tag = ++c->next_tag;
    char t[16];
    int n = snprintf(t, sizeof t, "m%u ", c->cur_tag);
    out_add(c, t, (size_t)n);
    if (tag)
        *tag = c->cur_tag;
}

void mig_cmd_text(mig_conn *c, const char *s)
{
    out_add(c, s, strlen(s));
}

static bool quotable(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++, n++)
        if (*p < 0x20 || *p >= 0x7f)
            return false;
    return n < 1000;
}

/* Wait for "+ " after a synchronizing literal's "{n}" (RFC 9051 7.5);
 * untagged responses meanwhile are not ours to interpret here. */
static int wait_continuation(mig_conn *c)
{
    for (;;) {
        mig_resp r;
        int rc = mig_read(c, &r);
        if (rc < 0)
            return rc;
        if (r.len >= 1 && r.data[0] == '+')
            return 0;
        if (r.tagged)
            return -EPROTO;
    }
}

void mig_cmd_astring(mig_conn *c, const char *s)
{
    if (quotable(s)) {
        out_add(c, "\"", 1);
        for (const char *p = s; *p; p++) {
            if (*p == '"' || *p == '\\')
                out_add(c, "\\", 1);
            out_add(c, p, 1);
        }
        out_add(c, "\"", 1);
        return;
    }
    size_t n = strlen(s);
    char hdr[32];
    /* LITERAL+ (RFC 7888) spares the round trip; without it the literal
     * waits for the server's continuation. */
    bool plus = mig_has_cap(c, "LITERAL+");
    int k = snprintf(hdr, sizeof hdr, "{%zu%s}\r\n", n, plus ? "+" : "");
    out_add(c, hdr, (size_t)k);
    if (!plus && !c->out_oom) {
        if (raw_write(c, c->out, c->out_len) < 0 || wait_continuation(c) < 0) {
            c->out_oom = true;  /* reported by mig_cmd_end */
            return;
        }
        c->out_len = 0;
    }
    out_add(c, s, n);
}

int mig_cmd_end(mig_conn *c)
{
    out_add(c, "\r\n", 2);
    if (c->out_oom)
        return -EIO;
    return raw_write(c, c->out, c->out_len);
}

int mig_send(mig_conn *c, uint32_t *tag, const char *fmt, ...)
{
    char line[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line)
        return -E2BIG;
    mig_cmd_begin(c, tag);
    mig_cmd_text(c, line);
    return mig_cmd_end(c);
}

/* Run a command and wait for its tagged answer, handing untagged responses
 * to `each` (may be NULL). */
static int run(mig_conn *c, const char *cmd, void (*each)(mig_conn *, const mig_resp *),
               char *err, size_t errlen)
{
    uint32_t tag;
    int rc = mig_send(c, &tag, "%s", cmd);
    if (rc < 0) {
        snprintf(err, errlen, "connection lost");
        return rc;
    }
    for (;;) {
        mig_resp r;
        rc = mig_read(c, &r);
        if (rc < 0) {
            snprintf(err, errlen, "connection lost (%s)", strerror(-rc));
            return rc;
        }
        if (r.tagged && r.tag == tag)
            return mig_tagged_status(&r, err, errlen);
        if (each)
            each(c, &r);
    }
}

/* ---- capabilities -------------------------------------------------------- */

static void set_caps(mig_conn *c, const char *s, size_t n)
{
    free(c->caps);
    c->caps = malloc(n + 3);
    if (!c->caps)
        return;
    c->caps[0] = ' ';
    for (size_t i = 0; i < n; i++)
        c->caps[i + 1] = (char)toupper((unsigned char)s[i]);
    c->caps[n + 1] = ' ';
    c->caps[n + 2] = '\0';
}

static void caps_from(mig_conn *c, const mig_resp *r)
{
    /* "* CAPABILITY ..." or "* OK [CAPABILITY ...] ..." */
    const char *d = r->data;
    if (strncasecmp(d, "* CAPABILITY ", 13) == 0) {
        set_caps(c, d + 13, strlen(d + 13));
        return;
    }
    const char *p = strstr(d, "[CAPABILITY ");
    if (p && (p == d + 5 || p == d + 10 || strchr(d, ' ') + 4 == p)) {
        const char *e = strchr(p, ']');
        if (e)
            set_caps(c, p + 12, (size_t)(e - p - 12));
    }
}

static void caps_each(mig_conn *c, const mig_resp *r)
{
    caps_from(c, r);
}

bool mig_has_cap(const mig_conn *c, const char *cap)
{
    if (!c->caps)
        return false;
    char want[64];
    int n = snprintf(want, sizeof want, " %s ", cap);
    if (n < 0 || (size_t)n >= sizeof want)
        return false;
    for (char *p = want; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    return strstr(c->caps, want) != NULL;
}

/* ---- connecting ---------------------------------------------------------- */

static int tcp_connect(const mig_url *u, char *err, size_t errlen)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
    int g = getaddrinfo(u->host, u->port, &hints, &ai);
    if (g != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", u->host, gai_strerror(g));
        return -EHOSTUNREACH;
    }
    int fd = -1, e = ECONNREFUSED;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            e = errno;
            continue;
        }
        struct timeval tv = { .tv_sec = MIG_TIMEOUT_S };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        e = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        snprintf(err, errlen, "cannot connect to %s port %s: %s", u->host, u->port,
                 strerror(e));
        return -e;
    }
    return fd;
}

static int tls_start(mig_conn *c, const mig_url *u, const char *ca, char *err,
                     size_t errlen)
{
    c->ctx = SSL_CTX_new(TLS_method());
    if (!c->ctx) {
        tls_error(err, errlen, "TLS setup failed");
        return -ENOMEM;
    }
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    const char *bundle = ca ? ca : MIG_SYSTEM_CA;
    if (SSL_CTX_load_verify_locations(c->ctx, bundle, NULL) != 1) {
        tls_error(err, errlen, ca ? "cannot load --ca file" : "cannot load the system's CA bundle "
                  MIG_SYSTEM_CA " (give --ca FILE)");
        return -EINVAL;
    }
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    c->ssl = SSL_new(c->ctx);
    if (!c->ssl) {
        tls_error(err, errlen, "TLS setup failed");
        return -ENOMEM;
    }
    SSL_set_tlsext_host_name(c->ssl, u->host);
    /* The certificate must name the host we were told to connect to. */
    X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    X509_VERIFY_PARAM_set1_host(vp, u->host, strlen(u->host));
    SSL_set_fd(c->ssl, c->fd);
    if (SSL_connect(c->ssl) != 1) {
        long v = SSL_get_verify_result(c->ssl);
        if (v != X509_V_OK) {
            snprintf(err, errlen, "TLS: the certificate of %s is not trusted: %s", u->host,
                     X509_verify_cert_error_string(v));
            ERR_clear_error();
        } else {
            tls_error(err, errlen, "TLS handshake failed");
        }
        SSL_free(c->ssl);
        c->ssl = NULL;
        return -EPROTO;
    }
    return 0;
}

int mig_conn_fd(int fd, mig_conn **out)
{
    mig_conn *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->fd = fd;
    *out = c;
    return 0;
}

int mig_connect(const mig_url *url, const char *ca, mig_conn **out, char *err,
                size_t errlen)
{
    mig_conn *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    c->fd = tcp_connect(url, err, errlen);
    int rc = c->fd;
    if (rc < 0)
        goto fail;
    if (url->tls && (rc = tls_start(c, url, ca, err, errlen)) < 0)
        goto fail;
    mig_resp r;
    rc = mig_read(c, &r);
    if (rc < 0) {
        snprintf(err, errlen, "no greeting from %s: %s", url->host, strerror(-rc));
        goto fail;
    }
    if (strncasecmp(r.data, "* OK", 4) != 0) {
        snprintf(err, errlen, "%s greets with: %.200s", url->host, r.data);
        rc = -EPROTO;
        goto fail;
    }
    caps_from(c, &r);
    if (url->starttls) {
        rc = run(c, "STARTTLS", NULL, err, errlen);
        if (rc < 0) {
            char why[256];
            snprintf(why, sizeof why, "%s", err);
            snprintf(err, errlen, "STARTTLS refused: %s", why);
            goto fail;
        }
        /* RFC 9051 6.2.1: buffered plaintext after the OK is an attack. */
        if (c->roff != c->rlen) {
            snprintf(err, errlen, "data after STARTTLS's OK: refusing the connection");
            rc = -EPROTO;
            goto fail;
        }
        free(c->caps);
        c->caps = NULL;
        if ((rc = tls_start(c, url, ca, err, errlen)) < 0)
            goto fail;
    }
    if (!c->caps && (rc = run(c, "CAPABILITY", caps_each, err, errlen)) < 0)
        goto fail;
    *out = c;
    return 0;
fail:
    mig_close(c);
    return rc < 0 ? rc : -EPROTO;
}

int mig_login(mig_conn *c, const char *user, const char *password, char *err,
              size_t errlen)
{
    if (mig_has_cap(c, "LOGINDISABLED")) {
        snprintf(err, errlen, "the server refuses LOGIN on this connection "
                 "(LOGINDISABLED: use imaps:// or --starttls)");
        return -EACCES;
    }
    uint32_t tag;
    mig_cmd_begin(c, &tag);
    mig_cmd_text(c, "LOGIN ");
    mig_cmd_astring(c, user);
    mig_cmd_text(c, " ");
    mig_cmd_astring(c, password);
    int rc = mig_cmd_end(c);
    if (rc < 0) {
        snprintf(err, errlen, "connection lost during LOGIN");
        return rc;
    }
    for (;;) {
        mig_resp r;
        rc = mig_read(c, &r);
        if (rc < 0) {
            snprintf(err, errlen, "connection lost during LOGIN (%s)", strerror(-rc));
            return rc;
        }
        if (!r.tagged || r.tag != tag) {
            caps_from(c, &r);
            continue;
        }
        rc = mig_tagged_status(&r, err, errlen);
        if (rc < 0)
            return rc;
        caps_from(c, &r);   /* "OK [CAPABILITY ...]" */
        break;
    }
    /* Capabilities may change after login (RFC 9051 6.2.3): ask again. */
    return run(c, "CAPABILITY", caps_each, err, errlen);
}

void mig_close(mig_conn *c)
{
    if (!c)
        return;
    if (c->fd >= 0 && c->next_tag > 0) {
        uint32_t tag;
        mig_send(c, &tag, "LOGOUT");
    }
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    if (c->ctx)
        SSL_CTX_free(c->ctx);
    if (c->fd > 0)
        close(c->fd);
    free(c->resp);
    free(c->out);
    free(c->caps);
    free(c);
}
