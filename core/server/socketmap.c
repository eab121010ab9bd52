/* core/server/socketmap.c — Postfix's socketmap protocol over the
 * directory (see socketmap.h).
 *
 * A connection lives on a worker like an LMTP one.  Its requests are read
 * one netstring at a time (core/lmtp/netstring.c); each lookup goes to the
 * password pool, and while it runs the connection is paused and whatever
 * else arrived waits in `stash`, so replies keep the order of requests.
 * Postfix's client sends one request and waits for its reply
 * (socketmap_table(5): "the client sends one request, and the server sends
 * one reply"), keeps the connection for more (closing it after 10 s idle
 * or 100 s in all, in dict_sockmap.c), and retries a broken connection
 * once before it defers. */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/auth/abuse.h"
#include "core/auth/authpool.h"
#include "core/base/log.h"
#include "core/lmtp/netstring.h"
#include "core/server/lmtp.h"
#include "core/server/socketmap.h"
#include "store/assert.h"

/* ---- settings ---- */

/* The transport of listen_lmtp's first address, if another process can
 * connect to it as written: a Unix socket, or host:port with a host that
 * is not a wildcard. */
static void local_from_listen(const char *spec, char *out, size_t cap)
{
    out[0] = '\0';
    size_t n = strcspn(spec, ", \t");
    if (!n || n >= 400)
        return;
    char first[400];
    memcpy(first, spec, n);
    first[n] = '\0';
    if (first[0] == '/') {
        snprintf(out, cap, "lmtp:unix:%s", first);
        return;
    }
    const char *colon = strrchr(first, ':');
    if (!colon || colon == first)
        return;
    size_t hl = (size_t)(colon - first);
    static const char *const wild[] = {"0.0.0.0", "[::]", "::", "*", "[0:0:0:0:0:0:0:0]"};
    for (size_t i = 0; i < sizeof wild / sizeof *wild; i++)
        if (hl == strlen(wild[i]) && !strncmp(first, wild[i], hl))
            return;
    snprintf(out, cap, "lmtp:inet:%s", first);
}

static bool printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f)
            return false;
    return true;
}

int socketmap_conf_init(socketmap_conf *c, const config *cfg, char *err, size_t errlen)
{
    long long v = 0;
    memset(c, 0, sizeof *c);
    config_get_int(cfg, "socketmap_lmtp_port", &v);
    c->lmtp_port = (unsigned)v;
    config_get_int(cfg, "socketmap_timeout", &v);
    c->timeout_ms = (unsigned)v * 1000u;
    config_get_int(cfg, "socketmap_max_connections", &v);
    c->max_conn = (unsigned)v;
    const char *d = config_get(cfg, "socketmap_lmtp_default");
    if (*d) {
        /* Postfix's transport_maps value: "transport:nexthop" */
        if (strlen(d) >= sizeof c->local || !strchr(d, ':') || *d == ':' || !printable(d)) {
            snprintf(err, errlen, "socketmap_lmtp_default: '%s' is not transport:nexthop "
                     "(e.g. lmtp:inet:10.0.0.1:24 or lmtp:unix:/run/ringmail/lmtp)", d);
            return -EINVAL;
        }
        snprintf(c->local, sizeof c->local, "%s", d);
    } else {
        local_from_listen(config_get(cfg, "listen_lmtp"), c->local, sizeof c->local);
    }
    const char *doms = config_get(cfg, "socketmap_domains");
    size_t n = 0;
    for (const char *p = doms; *p;) {
        p += strspn(p, ", \t");
        size_t k = strcspn(p, ", \t");
        if (!k)
            break;
        if (n + k + 2 > sizeof c->domains) {
            snprintf(err, errlen, "socketmap_domains: longer than %zu characters",
                     sizeof c->domains - 2);
            return -EINVAL;
        }
        for (size_t i = 0; i < k; i++) {
            unsigned char ch = (unsigned char)p[i];
            if (ch <= ' ' || ch >= 0x7f || ch == '@') {
                snprintf(err, errlen, "socketmap_domains: '%.*s' is not a domain", (int)k, p);
                return -EINVAL;
            }
        }
        if (n)
            c->domains[n++] = ' ';
        memcpy(c->domains + n, p, k);
        n += k;
        c->domains[n] = '\0';
        p += k;
    }
    /* With lmtp_user_domain = strip, a user is any domain's local part:
     * the map would claim every alice@ of the Internet. */
    if (*config_get(cfg, "listen_socketmap") && !n &&
        strcmp(config_get(cfg, "lmtp_user_domain"), "keep")) {
        snprintf(err, errlen, "socketmap_domains: set the domains whose addresses are "
                 "users (with lmtp_user_domain = strip, alice@any.example would be alice, "
                 "and Postfix asks the map about remote recipients too)");
        return -EINVAL;
    }
    return 0;
}

/* Is `dom` one of socketmap_domains (ASCII case folded; none set: any)? */
static bool our_domain(const socketmap_conf *c, const char *dom)
{
    if (!c->domains[0])
        return true;
    size_t dl = strlen(dom);
    for (const char *p = c->domains; *p;) {
        size_t k = strcspn(p, " ");
        if (k == dl && !strncasecmp(p, dom, k))
            return true;
        p += k + (p[k] == ' ');
    }
    return false;
}

/* ---- answering ---- */

static size_t say(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static size_t say(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap)
        /* a cut answer could name the wrong host: none (a directory's
         * host names are far shorter than SOCKETMAP_REPLY_MAX) */
        n = snprintf(out, cap, "PERM the answer is longer than %zu bytes", cap - 1);
    size_t len = (size_t)n < cap ? (size_t)n : cap - 1;
    /* a reason is text on one line (a name from the directory could hold
     * anything) */
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)out[i] < ' ' || (unsigned char)out[i] == 0x7f)
            out[i] = '?';
    return len;
}

/* A port in extra field `key`: 1..65535, 0 when absent, -1 when bad. */
static long field_port(const char *extra, const char *key)
{
    size_t n;
    const char *v = userdb_field(extra, key, &n);
    if (!v)
        return 0;
    if (!n || n > 5)
        return -1;
    long p = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        p = p * 10 + (v[i] - '0');
    }
    return p >= 1 && p <= 65535 ? p : -1;
}

static size_t transport_of(const socketmap_conf *c, const userdb_rec *rec, char *out,
                           size_t cap)
{
    char *host = NULL;
    unsigned imap_port;
    int rc = userdb_route(rec, &host, &imap_port);
    if (rc == -ENOMEM)
        return say(out, cap, "TEMP out of memory");
    if (rc < 0)
        return say(out, cap, "PERM the record of %s has a bad host or port", rec->name);
    if (!host) {
        /* the mail is here */
        if (!c->local[0])
            return say(out, cap, "PERM %s has no host and socketmap_lmtp_default is not set",
                       rec->name);
        return say(out, cap, "OK %s", c->local);
    }
    long port = field_port(rec->extra, "lmtp_port");
    size_t n;
    if (port < 0)
        n = say(out, cap, "PERM the record of %s has a bad lmtp_port", rec->name);
    else if (strchr(host, ':') && host[0] != '[')
        /* an IPv6 address: Postfix's lmtp(8) nexthop form is inet:[addr]:port */
        n = say(out, cap, "OK lmtp:inet:[%s]:%ld", host, port ? port : (long)c->lmtp_port);
    else
        n = say(out, cap, "OK lmtp:inet:%s:%ld", host, port ? port : (long)c->lmtp_port);
    free(host);
    return n;
}

size_t socketmap_answer(const socketmap_conf *c, const lmtp_conf *lc, userdb *db,
                        const char *req, size_t len, char *out, size_t cap)
{
    RM_ASSERT(cap >= 64);
    /* socketmap_table(5): the request is "name <space> key" */
    const char *sp = memchr(req, ' ', len);
    if (!sp)
        return say(out, cap, "PERM a request is \"map key\"");
    size_t mlen = (size_t)(sp - req);
    bool transport = mlen == 9 && !memcmp(req, "transport", 9);
    bool mailbox = mlen == 7 && !memcmp(req, "mailbox", 7);
    if (!transport && !mailbox)
        return say(out, cap, "PERM no map %.*s here (transport, mailbox)",
                   (int)(mlen < 64 ? mlen : 64), req);
    const char *key = sp + 1;
    size_t klen = len - mlen - 1;
    /* Only whole addresses name users: a bare domain (transport_maps asks
     * for the domain after the address) or anything with a control
     * character (a NUL would cut the name short) is no user's.  RFC 5321
     * 2.3.11: the address is local-part "@" domain, and a quoted local part
     * may hold "@", so the domain is after the last one. */
    for (size_t i = 0; i < klen; i++)
        if ((unsigned char)key[i] < ' ' || (unsigned char)key[i] == 0x7f)
            return say(out, cap, "NOTFOUND ");
    const char *at = klen ? memrchr(key, '@', klen) : NULL;
    if (!at || at == key || at == key + klen - 1)
        return say(out, cap, "NOTFOUND ");
    char local[SOCKETMAP_REQUEST_MAX + 1], name[SOCKETMAP_REQUEST_MAX + 1];
    size_t llen = (size_t)(at - key);
    memcpy(local, key, llen);
    local[llen] = '\0';
    const char *domain = at + 1, *detail;
    char dom[SOCKETMAP_REQUEST_MAX + 1];
    memcpy(dom, domain, klen - llen - 1);
    dom[klen - llen - 1] = '\0';
    if (!our_domain(c, dom))
        return say(out, cap, "NOTFOUND ");
    if (lmtp_user_of(lc, local, dom, name, sizeof name, &detail) < 0)
        return say(out, cap, "NOTFOUND ");
    userdb_rec rec = {0};
    /* fold: Postfix lower-cases the keys of some tables and not of others
     * (it asks virtual_mailbox_maps for "b0+x@example.org" and
     * transport_maps for "B0+x@example.org"), and LMTP finds users
     * whatever the case of the address */
    int rc = userdb_lookup(db, name, true, &rec);
    if (rc == -ENOENT)
        return say(out, cap, "NOTFOUND ");
    if (rc < 0)
        return say(out, cap, "TEMP the directory cannot answer: %s", strerror(-rc));
    size_t n = mailbox ? say(out, cap, "OK %s", rec.name) : transport_of(c, &rec, out, cap);
    userdb_rec_free(&rec);
    return n;
}

/* ---- connections ---- */

static imap_server *the_server;
static socketmap_conf the_conf;
static atomic_uint open_conns;

/* Bytes that arrived while a lookup ran: at most what one read brings,
 * since the connection is paused meanwhile; more is a misbehaving client. */
#define SOCKETMAP_STASH_MAX (1u << 20)

typedef struct sm_sess {
    net_conn *conn;
    uint64_t id;
    netstring_dec dec;
    bool busy;          /* a lookup on the pool holds the session */
    bool dead;          /* closed while busy: the lookup's end frees it */
    bool closing;
    uint8_t *stash;
    size_t nstash;
    size_t reqlen;
    size_t replylen;
    char req[SOCKETMAP_REQUEST_MAX + 1];
    char reply[SOCKETMAP_REPLY_MAX];
} sm_sess;

int socketmap_init(imap_server *srv, const config *cfg)
{
    char err[600];
    the_server = srv;
    if (socketmap_conf_init(&the_conf, cfg, err, sizeof err) < 0) {
        fprintf(stderr, "ringmaild: %s\n", err);
        return -EINVAL;
    }
    return 0;
}

static void send_reply(sm_sess *s, const char *text, size_t len)
{
    char buf[SOCKETMAP_REPLY_MAX + NETSTRING_LEN_DIGITS + 2];
    int n = netstring_encode(text, len, buf, sizeof buf);
    RM_ASSERT(n > 0);
    net_conn_send(s->conn, buf, (size_t)n);
}

static void lookup_work(void *arg)
{
    sm_sess *s = arg;
    s->replylen = socketmap_answer(&the_conf, &the_server->lmtp, the_server->users, s->req,
                                   s->reqlen, s->reply, sizeof s->reply);
}

static void feed(sm_sess *s, const uint8_t *p, size_t n);

static void lookup_done(void *arg, int status)
{
    sm_sess *s = arg;
    s->busy = false;
    if (s->dead) {
        free(s->stash);
        free(s);
        return;
    }
    if (status < 0) {
        static const char gone[] = "TEMP server shutting down";
        send_reply(s, gone, sizeof gone - 1);
        s->closing = true;
    } else {
        log_msg(s->reply[0] == 'T' || s->reply[0] == 'P' ? LOGL_WARN : LOGL_DEBUG, s->id, NULL,
                "socketmap %.*s: %.*s", (int)s->reqlen, s->req, (int)s->replylen, s->reply);
        send_reply(s, s->reply, s->replylen);
    }
    net_conn_pause(s->conn, false);
    uint8_t *st = s->stash;
    size_t nst = s->nstash;
    s->stash = NULL;
    s->nstash = 0;
    if (s->closing) {
        free(st);
        net_conn_close(s->conn);
        return;
    }
    feed(s, st ? st : (const uint8_t *)"", nst);
    free(st);
}

static void start_lookup(sm_sess *s)
{
    imap_server *srv = the_server;
    s->busy = true;
    net_conn_pause(s->conn, true);
    int rc = authpool_submit(srv->authpool, lookup_work, s, lookup_done, srv->net,
                             net_conn_worker(s->conn));
    if (rc < 0) {
        /* the pool is full or stopping: Postfix defers and asks again */
        s->busy = false;
        net_conn_pause(s->conn, false);
        char text[100];
        size_t n = say(text, sizeof text, "TEMP lookups are queued up: %s", strerror(-rc));
        send_reply(s, text, n);
    }
}

static void stash(sm_sess *s, const uint8_t *p, size_t n)
{
    if (!n)
        return;
    uint8_t *b = s->nstash + n <= SOCKETMAP_STASH_MAX ? realloc(s->stash, s->nstash + n) : NULL;
    if (!b) {
        s->closing = true;
        return;
    }
    memcpy(b + s->nstash, p, n);
    s->stash = b;
    s->nstash += n;
}

/* Read requests until the input is used up, a lookup starts or the
 * connection is to close; then arm the idle timer or close. */
static void feed(sm_sess *s, const uint8_t *p, size_t n)
{
    size_t at = 0;
    if (s->busy) {
        stash(s, p, n);
        at = n;
    }
    while (at < n && !s->busy && !s->closing) {
        size_t used = 0, len = 0;
        int rc = netstring_feed(&s->dec, p + at, n - at, s->req, &used, &len);
        if (rc == -EMSGSIZE) {
            /* the length says it before the request comes: answer, then
             * close (the rest of it would have to be read to go on) */
            static const char big[] = "PERM request too long";
            log_msg(LOGL_WARN, s->id, NULL, "socketmap: request over %u bytes, closing",
                    SOCKETMAP_REQUEST_MAX);
            send_reply(s, big, sizeof big - 1);
            s->closing = true;
            break;
        }
        if (rc < 0) {
            /* no way to find the next request's start: close */
            log_msg(LOGL_WARN, s->id, NULL, "socketmap: not a netstring, closing");
            s->closing = true;
            break;
        }
        at += used;
        if (rc == 1) {
            s->reqlen = len;
            start_lookup(s);
        }
    }
    if (s->busy && at < n)
        stash(s, p + at, n - at);
    if (s->closing) {
        if (!s->busy)
            net_conn_close(s->conn);
        return;
    }
    if (!s->busy)
        net_conn_timer(s->conn, the_conf.timeout_ms);
}

static void *on_open(net_conn *c)
{
    imap_server *srv = the_server;
    char ip[64];
    abuse_peer_ip(net_conn_peer(c), ip, sizeof ip);
    /* socketmap_table(5): "neither the connection nor the server are
     * authenticated": only the MTA's addresses may ask */
    if (!abuse_trusted(srv->abuse, ip)) {
        log_msg(LOGL_WARN, 0, NULL, "socketmap: refused %s: not in trusted_networks",
                net_conn_peer(c));
        return NULL;
    }
    if (atomic_fetch_add(&open_conns, 1) >= the_conf.max_conn) {
        atomic_fetch_sub(&open_conns, 1);
        log_msg(LOGL_WARN, 0, NULL, "socketmap: refused %s: socketmap_max_connections (%u)",
                net_conn_peer(c), the_conf.max_conn);
        return NULL;
    }
    sm_sess *s = calloc(1, sizeof *s);
    if (!s) {
        atomic_fetch_sub(&open_conns, 1);
        return NULL;
    }
    s->conn = c;
    s->id = atomic_fetch_add(&srv->next_session, 1) + 1;
    netstring_dec_init(&s->dec, SOCKETMAP_REQUEST_MAX);
    log_msg(LOGL_DEBUG, s->id, NULL, "socketmap connect from %s", net_conn_peer(c));
    net_conn_timer(c, the_conf.timeout_ms);
    return s;
}

static void on_data(net_conn *c, void *user, const uint8_t *p, size_t n)
{
    (void)c;
    feed(user, p, n);
}

static void on_timer(net_conn *c, void *user)
{
    sm_sess *s = user;
    if (s->busy)
        return;     /* the lookup's end re-arms it */
    log_msg(LOGL_DEBUG, s->id, NULL, "socketmap: idle, closing");
    net_conn_close(c);
}

static void on_close(net_conn *c, void *user)
{
    (void)c;
    sm_sess *s = user;
    atomic_fetch_sub(&open_conns, 1);
    if (s->busy) {
        s->dead = true;     /* lookup_done frees it */
        return;
    }
    free(s->stash);
    free(s);
}

static void on_shutdown(net_conn *c, void *user)
{
    sm_sess *s = user;
    if (s->busy) {
        s->closing = true;  /* the reply goes out first */
        return;
    }
    net_conn_close(c);
}

const net_conn_ops socketmap_ops = {
    .on_open = on_open,
    .on_data = on_data,
    .on_timer = on_timer,
    .on_close = on_close,
    .on_shutdown = on_shutdown,
};
