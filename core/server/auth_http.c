/* core/server/auth_http.c — nginx's mail auth_http protocol (see auth_http.h).
 *
 * Why on the workers and not on a thread of its own like metrics_http.c:
 * every login through nginx is one request here, and a password check
 * takes tens of milliseconds (Argon2id); requests must not wait behind
 * one another, so they are connections of the runtime (bounded buffers,
 * timers) whose checks go to the auth pool, exactly as LOGIN's do.
 *
 * Who may ask: only trusted_networks (the answer says whether a password
 * is right, so an open endpoint would be a guessing oracle without the
 * per-connection limits of IMAP).  The client's address for penalties is
 * Client-IP, as nginx saw it; a Client-IP inside trusted_networks is not
 * counted, as for IMAP.
 *
 * A user whose record names no host is sent to auth_http_default_backend,
 * or, when that is empty, to this server's first `listen` address (a
 * wildcard address answered as loopback: nginx on this machine).  A host
 * that is a name is resolved here (on the pool: getaddrinfo blocks),
 * because nginx takes only an address in Auth-Server ("sent invalid
 * server address" otherwise). */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "core/auth/abuse.h"
#include "core/auth/authpool.h"
#include "core/base/log.h"
#include "core/server/auth_http.h"

#define REQUEST_TIMEOUT_MS 10000
/* Auth-Wait after a temporary failure (directory down, pool full). */
#define TEMP_WAIT_S 3

static struct {
    imap_server *srv;
    char host[256];             /* the default backend */
    unsigned port;
    char secret[129];           /* proxy_secret */
} conf;

static atomic_uint nconns;

typedef struct ah_conn ah_conn;

struct ah_job {
    ah_conn *c;
    char *user, *pass;
    char ip[64];                /* Client-IP; "" when not counted */
    bool cached;                /* verified within auth_cache_ttl: no hash */
    bool admitted;              /* abuse_check_begin said yes: end it once */
    unsigned attempt;           /* Auth-Login-Attempt */
    authpool_job *handle;
    /* results */
    int rc;
    unsigned answer_delay_ms;
    char server[INET6_ADDRSTRLEN];
    unsigned port;
};

struct ah_conn {
    net_conn *conn;
    uint64_t id;
    char buf[AUTH_HTTP_REQUEST_MAX + 1];
    size_t n;
    bool done;                  /* the request was taken: ignore more input */
    bool busy;                  /* a job runs for us */
    bool dead;                  /* closed while busy: the job frees us */
    char *held;                 /* an answer waiting for its timer */
    struct ah_job *job;
};

/* ---- configuration --------------------------------------------------------- */

static int split_hostport(const char *spec, char *host, size_t hlen, unsigned *port)
{
    const char *colon = strrchr(spec, ':');
    if (!colon)
        return -EINVAL;
    const char *h = spec;
    size_t hl = (size_t)(colon - spec);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    char *end;
    unsigned long p = strtoul(colon + 1, &end, 10);
    if (!hl || hl >= hlen || !colon[1] || *end || p < 1 || p > 65535)
        return -EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (unsigned)p;
    return 0;
}

int auth_http_conf_init(imap_server *srv, const config *cfg)
{
    conf.srv = srv;
    const char *secret = config_get(cfg, "proxy_secret");
    size_t sl = strlen(secret);
    bool printable = true;
    for (size_t i = 0; i < sl; i++)
        printable &= secret[i] > ' ' && secret[i] < 0x7f;
    /* An HTTP header value, and a LOGIN literal nginx sends as is: visible
     * ASCII; long enough not to be guessed. */
    if (sl && (sl < 16 || sl >= sizeof conf.secret || !printable)) {
        fprintf(stderr, "ringmaild: proxy_secret: 16 to 128 visible ASCII characters\n");
        return -EINVAL;
    }
    memcpy(conf.secret, secret, sl + 1);
    const char *spec = config_get(cfg, "auth_http_default_backend");
    if (*spec) {
        if (split_hostport(spec, conf.host, sizeof conf.host, &conf.port) < 0) {
            fprintf(stderr, "ringmaild: auth_http_default_backend = %s: write host:port\n",
                    spec);
            return -EINVAL;
        }
        return 0;
    }
    /* This server's first IMAP listener. */
    char first[300];
    snprintf(first, sizeof first, "%s", config_get(cfg, "listen"));
    first[strcspn(first, ", \t")] = '\0';
    if (!*first || split_hostport(first, conf.host, sizeof conf.host, &conf.port) < 0) {
        conf.host[0] = '\0';    /* none: users without host= get a temporary error */
        conf.port = 0;
        return 0;
    }
    if (!strcmp(conf.host, "0.0.0.0") || !strcmp(conf.host, "*"))
        strcpy(conf.host, "127.0.0.1");
    else if (!strcmp(conf.host, "::"))
        strcpy(conf.host, "::1");
    return 0;
}

/* ---- parsing ----------------------------------------------------------------- */

size_t auth_http_head_end(const char *buf, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (buf[i] != '\n')
            continue;
        if (buf[i + 1] == '\n')
            return i + 2;
        if (buf[i + 1] == '\r' && i + 2 < n && buf[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* nginx escapes Auth-User and Auth-Pass with NGX_ESCAPE_MAIL_AUTH: %XX for
 * blanks, '%', controls and bytes over 0x7e.  Only %XX is decoded ('+' is
 * a plus: this is no form encoding).  -EINVAL for a bad escape or %00. */
static int unescape(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r != '%') {
            *w++ = *r;
            continue;
        }
        int hi = hexval(r[1]), lo = hi < 0 ? -1 : hexval(r[2]);
        if (lo < 0 || (hi == 0 && lo == 0))
            return -EINVAL;
        *w++ = (char)(hi * 16 + lo);
        r += 2;
    }
    *w = '\0';
    return 0;
}

int auth_http_parse(char *buf, size_t n, auth_http_req *r)
{
    memset(r, 0, sizeof *r);
    buf[n] = '\0';
    if (memchr(buf, '\0', n))
        return -EINVAL;
    char *save = NULL;
    char *line = strtok_r(buf, "\n", &save);
    if (!line)
        return -EINVAL;
    line[strcspn(line, "\r")] = '\0';
    /* request-line = method SP request-target SP HTTP-version */
    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || strncmp(sp2 + 1, "HTTP/1.", 7))
        return -EINVAL;
    *sp1 = *sp2 = '\0';
    r->method = line;
    r->target = sp1 + 1;
    unsigned nh = 0;
    while ((line = strtok_r(NULL, "\n", &save))) {
        line[strcspn(line, "\r")] = '\0';
        if (!*line)
            break;
        if (++nh > AUTH_HTTP_MAX_HEADERS)
            return -E2BIG;
        char *colon = strchr(line, ':');
        if (!colon || colon == line)
            return -EINVAL;
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t vl = strlen(v);
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            v[--vl] = '\0';
        if (!strcasecmp(line, "Auth-Method"))
            r->auth_method = v;
        else if (!strcasecmp(line, "Auth-User"))
            r->user = v;
        else if (!strcasecmp(line, "Auth-Pass"))
            r->pass = v;
        else if (!strcasecmp(line, "Auth-Protocol"))
            r->protocol = v;
        else if (!strcasecmp(line, "Client-IP"))
            r->client_ip = v;
        else if (!strcasecmp(line, "Auth-Login-Attempt"))
            r->attempt = (unsigned)strtoul(v, NULL, 10);
    }
    if ((r->user && unescape((char *)r->user) < 0) ||
        (r->pass && unescape((char *)r->pass) < 0))
        return -EINVAL;
    return 0;
}

/* ---- answers ----------------------------------------------------------------- */

static void send_status(ah_conn *c, int code, const char *reason)
{
    char b[256];
    int n = snprintf(b, sizeof b, "HTTP/1.0 %d %s\r\nContent-Length: 0\r\n"
                     "Connection: close\r\n\r\n", code, reason);
    net_conn_send(c->conn, b, (size_t)n);
    net_conn_close(c->conn);
}

/* An answer nginx reads: 200 with the Auth-* headers (the body is
 * ignored).  delay_ms: held that long first (the stand-in time of a hash
 * an unknown user did not cost). */
static void send_auth(ah_conn *c, const char *fields, unsigned delay_ms)
{
    char *a = NULL;
    if (asprintf(&a, "HTTP/1.0 200 OK\r\n%sContent-Length: 0\r\nConnection: close\r\n\r\n",
                 fields) < 0) {
        net_conn_close(c->conn);
        return;
    }
    if (delay_ms) {
        c->held = a;
        net_conn_timer(c->conn, delay_ms);
        return;
    }
    net_conn_send(c->conn, a, strlen(a));
    free(a);
    net_conn_close(c->conn);
}

/* A temporary failure: nginx shows the status to the client ("NO ...")
 * and lets it try again after Auth-Wait. */
static void send_temp(ah_conn *c)
{
    char f[160];
    snprintf(f, sizeof f, "Auth-Status: [UNAVAILABLE] Temporary server problem, try again "
             "later\r\nAuth-Wait: %d\r\n", TEMP_WAIT_S);
    send_auth(c, f, 0);
}

/* ---- the check, on the pool ------------------------------------------------- */

static int resolve(const char *host, char *out, size_t outlen)
{
    struct in6_addr a6;
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1) {
        size_t l = strlen(host);
        if (l >= outlen)
            return -EINVAL;
        memcpy(out, host, l + 1);
        return 0;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int e = getaddrinfo(host, NULL, &hints, &res);
    if (e || !res)
        return -EHOSTUNREACH;
    const void *addr = res->ai_family == AF_INET
        ? (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr
        : (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr;
    int rc = inet_ntop(res->ai_family, addr, out, (socklen_t)outlen) ? 0 : -EINVAL;
    freeaddrinfo(res);
    return rc;
}

static void job_work(void *arg)
{
    struct ah_job *j = arg;
    imap_server *srv = conf.srv;
    userdb_rec rec = {0};
    if (j->cached) {
        j->rc = userdb_lookup(srv->users, j->user, false, &rec);
        if (j->rc == -ENOENT)
            j->rc = -EACCES;    /* removed since it was cached */
    } else {
        uint64_t gen = userdb_generation(srv->users);
        j->rc = userdb_verify(srv->users, j->user, j->pass, &rec, &j->answer_delay_ms);
        if (j->rc == 0 && gen)
            authcache_insert(srv->authcache, j->user, j->pass, gen);
    }
    if (j->rc < 0)
        return;
    char *host = NULL;
    unsigned port = 0;
    int rc = userdb_route(&rec, &host, &port);
    if (rc < 0) {
        log_msg(LOGL_ERROR, 0, j->user, "auth_http: the user's record has a bad host or port");
        j->rc = -EINVAL;
    } else if (!host && !conf.host[0]) {
        log_msg(LOGL_ERROR, 0, j->user, "auth_http: the user's record names no host and "
                "there is no default backend (auth_http_default_backend, listen)");
        j->rc = -EDESTADDRREQ;
    } else if ((rc = resolve(host ? host : conf.host, j->server, sizeof j->server)) < 0) {
        log_msg(LOGL_ERROR, 0, j->user, "auth_http: cannot resolve backend %s",
                host ? host : conf.host);
        j->rc = rc;
    } else {
        j->port = port ? port : conf.port;
    }
    free(host);
    userdb_rec_free(&rec);
}

static void job_free(struct ah_job *j)
{
    if (j->pass)
        memset(j->pass, 0, strlen(j->pass));
    free(j->user);
    free(j->pass);
    free(j);
}

static const char *counted(const struct ah_job *j)
{
    return j->ip[0] ? j->ip : NULL;
}

static void conn_free(ah_conn *c)
{
    free(c->held);
    free(c);
    atomic_fetch_sub(&nconns, 1);
}

static void job_done(void *arg, int status)
{
    struct ah_job *j = arg;
    ah_conn *c = j->c;
    imap_server *srv = conf.srv;
    c->busy = false;
    c->job = NULL;
    if (j->admitted)
        abuse_check_end(srv->abuse, counted(j), j->user);
    if (c->dead) {
        job_free(j);
        conn_free(c);
        return;
    }
    char f[512];
    if (status < 0) {
        send_temp(c);
    } else if (j->rc == 0) {
        abuse_login_ok(srv->abuse, counted(j), j->user);
        log_msg(LOGL_INFO, c->id, j->user, "auth_http: ok for %s, backend %s:%u%s",
                j->ip[0] ? j->ip : "a trusted address", j->server, j->port,
                j->cached ? " (cached)" : "");
        int len = snprintf(f, sizeof f, "Auth-Status: OK\r\nAuth-Server: %s\r\n"
                           "Auth-Port: %u\r\n", j->server, j->port);
        /* nginx logs in to the backend with this instead of the client's
         * password (it takes Auth-Pass from the answer as is) */
        if (conf.secret[0])
            snprintf(f + len, sizeof f - (size_t)len, "Auth-Pass: %s\r\n", conf.secret);
        send_auth(c, f, 0);
    } else if (j->rc == -EACCES) {
        unsigned n;
        unsigned pen = abuse_login_failed(srv->abuse, counted(j), j->user,
                                          srv->auth_failure_delay_ms, j->answer_delay_ms, &n);
        log_msg(LOGL_INFO, c->id, j->user, "auth_http: login failed%s for %s (%u in a row, "
                "wait %u ms)", j->answer_delay_ms ? " (no such user)" : "",
                j->ip[0] ? j->ip : "a trusted address", n, pen);
        /* The penalty is nginx's to wait (Auth-Wait, whole seconds, on its
         * timer); the stand-in time of an unknown user's hash is ours, so
         * that the answer comes as late as a real check's would.  At least
         * 1: nginx takes "Auth-Wait: 0" as no Auth-Wait and closes the
         * client's connection (ngx_mail_auth_http_module: sleep == 0). */
        int len = snprintf(f, sizeof f,
                           "Auth-Status: [AUTHENTICATIONFAILED] Invalid login or password\r\n");
        if (j->attempt < AUTH_HTTP_MAX_ATTEMPTS)
            snprintf(f + len, sizeof f - (size_t)len, "Auth-Wait: %u\r\n",
                     pen > 1000 ? (pen + 999) / 1000 : 1);
        send_auth(c, f, j->answer_delay_ms);
    } else {
        log_msg(LOGL_ERROR, c->id, j->user, "auth_http: directory: %s", strerror(-j->rc));
        send_temp(c);
    }
    job_free(j);
}

/* ---- a request ----------------------------------------------------------------- */

static void handle(ah_conn *c, auth_http_req *r)
{
    imap_server *srv = conf.srv;
    if (strcmp(r->method, "GET")) {
        /* RFC 9110 15.5.6: a 405 "MUST generate an Allow header field" */
        static const char a[] = "HTTP/1.0 405 Method Not Allowed\r\nAllow: GET\r\n"
                                "Content-Length: 0\r\nConnection: close\r\n\r\n";
        net_conn_send(c->conn, a, sizeof a - 1);
        net_conn_close(c->conn);
        return;
    }
    /* Only IMAP has a backend here; "plain" is every login nginx takes
     * from an IMAP client by default (LOGIN, AUTHENTICATE PLAIN/LOGIN).
     * apop and cram-md5 need the clear password on our side, which the
     * passwd-file need not have: refused without Auth-Wait (nginx closes). */
    if (!r->protocol || strcasecmp(r->protocol, "imap")) {
        log_msg(LOGL_WARN, c->id, r->user, "auth_http: protocol %s is not served here",
                r->protocol ? r->protocol : "(none)");
        send_auth(c, "Auth-Status: Only IMAP is served here\r\n", 0);
        return;
    }
    if (!r->auth_method || strcasecmp(r->auth_method, "plain") || !r->user || !r->pass ||
        !*r->user) {
        log_msg(LOGL_WARN, c->id, r->user, "auth_http: method %s not served",
                r->auth_method ? r->auth_method : "(none)");
        send_auth(c, "Auth-Status: [CANNOT] Unsupported authentication mechanism\r\n", 0);
        return;
    }
    struct ah_job *j = calloc(1, sizeof *j);
    if (!j || !(j->user = strdup(r->user)) || !(j->pass = strdup(r->pass))) {
        if (j)
            job_free(j);
        send_temp(c);
        return;
    }
    j->c = c;
    j->attempt = r->attempt;
    /* Client-IP is nginx's word for the client; a client inside
     * trusted_networks (or none given) is not counted, as for IMAP. */
    if (r->client_ip && *r->client_ip && !abuse_trusted(srv->abuse, r->client_ip))
        snprintf(j->ip, sizeof j->ip, "%s", r->client_ip);
    /* Verified within auth_cache_ttl against the directory as it is now:
     * no hash, no penalty, no queue slot (as LOGIN: an account under
     * attack stays open to its owner); the route is still looked up. */
    uint64_t gen = userdb_generation_nowait(srv->users);
    j->cached = gen && authcache_lookup(srv->authcache, j->user, j->pass, gen);
    uint64_t start = 0;
    if (!j->cached) {
        int rc = abuse_check_begin(srv->abuse, counted(j), j->user, srv->auth_failure_delay_ms,
                                   srv->auth_queue_per_ip, &start);
        if (rc < 0) {
            log_msg(LOGL_WARN, c->id, j->user, "auth_http: password check refused: too many "
                    "login attempts from %s or for this user", j->ip[0] ? j->ip : "trusted");
            job_free(j);
            send_temp(c);
            return;
        }
        j->admitted = true;
    }
    c->busy = true;
    c->job = j;
    int rc = authpool_submit_at(srv->authpool, job_work, j, job_done, srv->net,
                                net_conn_worker(c->conn), start, &j->handle);
    if (rc < 0) {
        log_msg(LOGL_WARN, c->id, j->user, "auth_http: password check refused: %s",
                rc == -EAGAIN ? "auth pool queue full" : strerror(-rc));
        if (j->admitted)
            abuse_check_end(srv->abuse, counted(j), j->user);
        c->busy = false;
        c->job = NULL;
        job_free(j);
        send_temp(c);
    }
}

/* ---- net callbacks ----------------------------------------------------------- */

static void *on_open(net_conn *nc)
{
    imap_server *srv = conf.srv;
    char ip[64];
    abuse_peer_ip(net_conn_peer(nc), ip, sizeof ip);
    uint64_t id = atomic_fetch_add(&srv->next_session, 1) + 1;
    if (!abuse_trusted(srv->abuse, ip)) {
        log_msg(LOGL_WARN, id, NULL, "auth_http: refused %s: not in trusted_networks",
                net_conn_peer(nc));
        static const char a[] = "HTTP/1.0 403 Forbidden\r\nContent-Length: 0\r\n"
                                "Connection: close\r\n\r\n";
        net_conn_send(nc, a, sizeof a - 1);
        return NULL;
    }
    if (atomic_fetch_add(&nconns, 1) >= AUTH_HTTP_MAX_CONNS) {
        atomic_fetch_sub(&nconns, 1);
        log_msg(LOGL_WARN, id, NULL, "auth_http: refused %s: %u requests open",
                net_conn_peer(nc), AUTH_HTTP_MAX_CONNS);
        static const char a[] = "HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                "Connection: close\r\n\r\n";
        net_conn_send(nc, a, sizeof a - 1);
        return NULL;
    }
    ah_conn *c = calloc(1, sizeof *c);
    if (!c) {
        atomic_fetch_sub(&nconns, 1);
        return NULL;
    }
    c->conn = nc;
    c->id = id;
    net_conn_timer(nc, REQUEST_TIMEOUT_MS);
    return c;
}

static void on_data(net_conn *nc, void *user, const uint8_t *p, size_t n)
{
    (void)nc;
    ah_conn *c = user;
    if (c->done)
        return;     /* one request per connection; a body is ignored */
    size_t room = AUTH_HTTP_REQUEST_MAX - c->n;
    size_t take = n < room ? n : room;
    memcpy(c->buf + c->n, p, take);
    c->n += take;
    size_t end = auth_http_head_end(c->buf, c->n);
    if (!end) {
        if (c->n == AUTH_HTTP_REQUEST_MAX) {
            c->done = true;
            send_status(c, 431, "Request Header Fields Too Large");
        }
        return;
    }
    c->done = true;
    net_conn_timer(nc, 0);
    auth_http_req r;
    int rc = auth_http_parse(c->buf, end, &r);
    if (rc == -E2BIG)
        send_status(c, 431, "Request Header Fields Too Large");
    else if (rc < 0)
        send_status(c, 400, "Bad Request");
    else
        handle(c, &r);
    /* The password is in the copy the job holds, if any. */
    memset(c->buf, 0, sizeof c->buf);
}

static void on_timer(net_conn *nc, void *user)
{
    ah_conn *c = user;
    if (c->held) {
        net_conn_send(nc, c->held, strlen(c->held));
        free(c->held);
        c->held = NULL;
    }
    /* else: the request did not come in time; no answer */
    net_conn_close(nc);
}

static void on_close(net_conn *nc, void *user)
{
    (void)nc;
    ah_conn *c = user;
    struct ah_job *j = c->job;
    if (c->busy && j && authpool_cancel(conf.srv->authpool, j->handle)) {
        /* nginx gave up (its auth_http_timeout): never run a hash nobody
         * waits for */
        if (j->admitted)
            abuse_check_end(conf.srv->abuse, counted(j), j->user);
        job_free(j);
        c->busy = false;
    }
    if (c->busy) {
        c->dead = true;     /* the job frees us */
        return;
    }
    conn_free(c);
}

static void on_shutdown(net_conn *nc, void *user)
{
    (void)user;
    net_conn_close(nc);
}

const net_conn_ops auth_http_ops = {
    .on_open = on_open,
    .on_data = on_data,
    .on_timer = on_timer,
    .on_close = on_close,
    .on_shutdown = on_shutdown,
};
