/* core/auth/userdb_pg.c — users in PostgreSQL (libpq).
 *
 * Queries are the operator's, with the user name as $1, always sent as a
 * parameter (PQsendQueryParams: the name never becomes SQL text):
 *   pgsql_password_query  first column the password in the passwd-file's
 *                         form ("{SHA512-CRYPT}$6$...", "{SSHA}...",
 *                         "{PLAIN}x"), the other columns extra fields by
 *                         their names ("SELECT password, host, port FROM
 *                         users WHERE name = $1"); NULLs are left out; a
 *                         column named "user" is the name as the table
 *                         spells it (see userdb_dir.h);
 *   pgsql_user_query      every column an extra field (LMTP, quota);
 *   pgsql_route_query     $2 the host, $3 the port (NULL when none):
 *                         "UPDATE users SET host = $2, port = $3 WHERE
 *                         name = $1"; no row changed is "no such user".
 * No row: no such user.  More than one: the first counts.
 *
 * Connections: a small pool, made on demand (non-blocking connect, polled
 * against directory_timeout) and reused; each query is sent and its
 * answer polled against the same bound, and the server is asked to stop
 * a statement that takes longer (statement_timeout).  A connection that
 * failed or timed out is closed and the next call makes a new one.  (A
 * host name in pgsql_connect is resolved by libpq without that bound:
 * give an address or a socket directory.)
 *
 * TLS to PostgreSQL is refused (sslmode other than disable, and
 * gssencmode): libpq's TLS is OpenSSL's, and ringmaild's libssl is
 * BoringSSL, whose symbols libpq's calls would reach in the same process.
 * Reach PostgreSQL over its Unix socket or a trusted network. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/auth/passwd.h"
#include "core/auth/pq_load.h"
#include "core/auth/userdb_dir.h"

/* libpq's functions as loaded at run time (pq_load.h) */
#define PQclear pq_fn.PQclear
#define PQcmdTuples pq_fn.PQcmdTuples
#define PQconnectPoll pq_fn.PQconnectPoll
#define PQconnectStart pq_fn.PQconnectStart
#define PQconninfoFree pq_fn.PQconninfoFree
#define PQconninfoParse pq_fn.PQconninfoParse
#define PQconsumeInput pq_fn.PQconsumeInput
#define PQerrorMessage pq_fn.PQerrorMessage
#define PQfinish pq_fn.PQfinish
#define PQflush pq_fn.PQflush
#define PQfname pq_fn.PQfname
#define PQfreemem pq_fn.PQfreemem
#define PQgetResult pq_fn.PQgetResult
#define PQgetisnull pq_fn.PQgetisnull
#define PQgetvalue pq_fn.PQgetvalue
#define PQisBusy pq_fn.PQisBusy
#define PQnfields pq_fn.PQnfields
#define PQntuples pq_fn.PQntuples
#define PQresultErrorMessage pq_fn.PQresultErrorMessage
#define PQresultStatus pq_fn.PQresultStatus
#define PQsendQueryParams pq_fn.PQsendQueryParams
#define PQsocket pq_fn.PQsocket
#define PQstatus pq_fn.PQstatus

struct userdb_dir {
    char *conninfo;         /* the operator's, with our settings after it */
    char *q_password, *q_user, *q_route;
    unsigned timeout_ms;
    pthread_mutex_t lock;
    PGconn **idle;
    size_t nidle, capidle;
};

/* Wait until the connection's socket is readable (or writable), up to
 * deadline.  0 ready, -EAGAIN timed out or failed. */
static int wait_sock(PGconn *c, bool write, uint64_t deadline)
{
    int fd = PQsocket(c);
    if (fd < 0)
        return -EAGAIN;
    for (;;) {
        uint64_t now = userdb_now_ms();
        if (now >= deadline)
            return -EAGAIN;
        struct pollfd pfd = {.fd = fd, .events = write ? POLLOUT : POLLIN};
        int r = poll(&pfd, 1, (int)(deadline - now));
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -EAGAIN;
    }
}

static PGconn *conn_new(userdb_dir *d, uint64_t deadline)
{
    PGconn *c = PQconnectStart(d->conninfo);
    if (!c)
        return NULL;
    if (PQstatus(c) == CONNECTION_BAD) {
        userdb_dir_error("pgsql: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (st != PGRES_POLLING_OK) {
        if (st == PGRES_POLLING_FAILED) {
            userdb_dir_error("pgsql: connect: %s", PQerrorMessage(c));
            PQfinish(c);
            return NULL;
        }
        if (wait_sock(c, st == PGRES_POLLING_WRITING, deadline) < 0) {
            userdb_dir_error("pgsql: connect: no answer within directory_timeout");
            PQfinish(c);
            return NULL;
        }
        st = PQconnectPoll(c);
    }
    return c;
}

static void conn_put(userdb_dir *d, PGconn *c)
{
    pthread_mutex_lock(&d->lock);
    if (d->nidle == d->capidle) {
        size_t cap = d->capidle ? d->capidle * 2 : 4;
        PGconn **v = realloc(d->idle, cap * sizeof *v);
        if (!v) {
            pthread_mutex_unlock(&d->lock);
            PQfinish(c);
            return;
        }
        d->idle = v;
        d->capidle = cap;
    }
    d->idle[d->nidle++] = c;
    pthread_mutex_unlock(&d->lock);
}

/* Send query on c and wait for its one result.  0; -EAGAIN the server
 * said no (c still usable if PQstatus says so) or timed out; -EPIPE the
 * connection broke before an answer. */
static int run_once(PGconn *c, const char *query, int n, const char *const *params,
                    uint64_t deadline, PGresult **res)
{
    if (!PQsendQueryParams(c, query, n, NULL, params, NULL, NULL, 0)) {
        userdb_dir_error("pgsql: %s", PQerrorMessage(c));
        return -EPIPE;
    }
    while (PQflush(c) > 0)
        if (wait_sock(c, true, deadline) < 0)
            goto timeout;
    PGresult *r, *keep = NULL;
    for (;;) {
        while (PQisBusy(c)) {
            if (wait_sock(c, false, deadline) < 0) {
                PQclear(keep);
                goto timeout;
            }
            if (!PQconsumeInput(c)) {
                userdb_dir_error("pgsql: %s", PQerrorMessage(c));
                PQclear(keep);
                return -EPIPE;
            }
        }
        if (!(r = PQgetResult(c)))
            break;
        if (keep)
            PQclear(r);
        else
            keep = r;
    }
    ExecStatusType st = keep ? PQresultStatus(keep) : PGRES_FATAL_ERROR;
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        userdb_dir_error("pgsql: %s", keep ? PQresultErrorMessage(keep) : PQerrorMessage(c));
        PQclear(keep);
        return PQstatus(c) == CONNECTION_OK ? -EAGAIN : -EPIPE;
    }
    *res = keep;
    return 0;
timeout:
    userdb_dir_error("pgsql: no answer within directory_timeout");
    return -ETIMEDOUT;
}

/* Run query with params on a pooled or new connection; *res the one
 * result (PQclear), *cp the connection to give back (done).  0, or
 * -EAGAIN with *cp NULL when the connection could not be kept. */
static int run(userdb_dir *d, PGconn **cp, const char *query, int n, const char *const *params,
               PGresult **res)
{
    uint64_t deadline = userdb_now_ms() + d->timeout_ms;
    *res = NULL;
    *cp = NULL;
    pthread_mutex_lock(&d->lock);
    PGconn *c = d->nidle ? d->idle[--d->nidle] : NULL;
    pthread_mutex_unlock(&d->lock);
    bool reused = c != NULL;
    if (c && PQstatus(c) != CONNECTION_OK) {
        PQfinish(c);
        c = NULL;
        reused = false;
    }
    for (;;) {
        if (!c && !(c = conn_new(d, deadline)))
            return -EAGAIN;
        int rc = run_once(c, query, n, params, deadline, res);
        if (rc == 0 || rc == -EAGAIN) {
            *cp = c;        /* answered, or a refusal on a sound connection */
            return rc;
        }
        PQfinish(c);
        c = NULL;
        /* A pooled connection the server dropped while it sat idle (a
         * restart): once more on a new one.  A timeout is not retried. */
        if (rc != -EPIPE || !reused)
            return -EAGAIN;
        reused = false;
    }
}

static void done(userdb_dir *d, PGconn *c)
{
    if (c)
        conn_put(d, c);
}

/* Columns from `first` on, by name, into rec->extra; the name too. */
static int to_rec(PGresult *r, int first, const char *user, userdb_rec *rec)
{
    if (!(rec->name = strdup(user)))
        return -ENOMEM;
    for (int i = first; i < PQnfields(r); i++) {
        if (PQgetisnull(r, 0, i))
            continue;
        const char *v = PQgetvalue(r, 0, i);
        if (!strcmp(PQfname(r, i), "user")) {     /* the name as spelt there */
            char *n = strdup(v);
            if (!n) {
                userdb_rec_free(rec);
                return -ENOMEM;
            }
            free(rec->name);
            rec->name = n;
            continue;
        }
        if (userdb_extra_add(&rec->extra, PQfname(r, i), v, strlen(v)) == -ENOMEM) {
            userdb_rec_free(rec);
            return -ENOMEM;
        }
    }
    return 0;
}

static int p_lookup(userdb_dir *d, const char *user, userdb_rec *rec)
{
    PGconn *c;
    PGresult *r;
    const char *params[1] = {user};
    int rc = run(d, &c, d->q_user, 1, params, &r);
    if (rc < 0) {
        done(d, c);
        return rc;
    }
    rc = PQntuples(r) ? to_rec(r, 0, user, rec) : -ENOENT;
    PQclear(r);
    done(d, c);
    return rc;
}

static int p_verify(userdb_dir *d, const char *user, const char *password, userdb_rec *rec)
{
    PGconn *c;
    PGresult *r;
    const char *params[1] = {user};
    int rc = run(d, &c, d->q_password, 1, params, &r);
    if (rc < 0) {
        done(d, c);
        return rc;
    }
    done(d, c);
    if (!PQntuples(r)) {
        rc = -ENOENT;
    } else if (PQnfields(r) < 1 || PQgetisnull(r, 0, 0)) {
        rc = -EACCES;           /* no password: no login */
    } else {
        char *secret = PQgetvalue(r, 0, 0);
        rc = passwd_check_secret(secret, password);
        memset(secret, 0, strlen(secret));
        if (rc == 0)
            rc = to_rec(r, 1, user, rec);
    }
    PQclear(r);
    return rc;
}

static int p_set_route(userdb_dir *d, const char *user, const char *host, unsigned port)
{
    if (!*d->q_route) {
        userdb_dir_error("pgsql: no pgsql_route_query");
        return -EINVAL;
    }
    char pbuf[12];
    snprintf(pbuf, sizeof pbuf, "%u", port);
    const char *params[3] = {user, host, port ? pbuf : NULL};
    PGconn *c;
    PGresult *r;
    int rc = run(d, &c, d->q_route, 3, params, &r);
    if (rc < 0) {
        done(d, c);
        return rc;
    }
    const char *n = PQcmdTuples(r);
    rc = n && *n && strcmp(n, "0") ? 0 : -ENOENT;
    PQclear(r);
    done(d, c);
    return rc;
}

static void p_close(userdb_dir *d)
{
    for (size_t i = 0; i < d->nidle; i++)
        PQfinish(d->idle[i]);
    free(d->idle);
    if (d->conninfo)
        memset(d->conninfo, 0, strlen(d->conninfo));
    free(d->conninfo);
    free(d->q_password);
    free(d->q_user);
    free(d->q_route);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

static const userdb_dir_ops pg_ops = {
    .verify = p_verify, .lookup = p_lookup, .set_route = p_set_route, .close = p_close,
};

/* The operator's conninfo must be one libpq reads, and must not ask for
 * TLS (see the top). */
static int check_conninfo(const char *ci, const char **why)
{
    char *err = NULL;
    PQconninfoOption *o = PQconninfoParse(ci, &err);
    if (!o) {
        PQfreemem(err);
        *why = "pgsql_connect: not a libpq connection string";
        return -EINVAL;
    }
    int rc = 0;
    for (PQconninfoOption *k = o; k->keyword; k++)
        if (k->val && ((!strcmp(k->keyword, "sslmode") && strcmp(k->val, "disable")) ||
                       (!strcmp(k->keyword, "gssencmode") && strcmp(k->val, "disable")))) {
            *why = "pgsql_connect: TLS and GSS encryption to PostgreSQL are not supported "
                   "(libpq's OpenSSL cannot share ringmaild with BoringSSL): use a Unix "
                   "socket or a trusted network";
            rc = -EINVAL;
        }
    PQconninfoFree(o);
    return rc;
}

int userdb_pg_open(const userdb_params *p, userdb_dir **out, const userdb_dir_ops **ops,
                   const char **why)
{
    *out = NULL;
    *ops = &pg_ops;
    int lrc = pq_load(why);
    if (lrc < 0)
        return lrc;
    userdb_dir *d = calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    pthread_mutex_init(&d->lock, NULL);
    d->timeout_ms = p->timeout_ms ? p->timeout_ms : 5000;
    const char *ci = p->pgsql_connect ? p->pgsql_connect : "";
    int rc = 0;
    if (!*ci) {
        *why = "pgsql_connect: empty";
        rc = -EINVAL;
    } else if ((rc = check_conninfo(ci, why)) == 0) {
        /* Ours after the operator's (a later keyword wins in libpq), in
         * the key=value form, which a URI cannot be followed by: a URI is
         * taken as dbname=URI, which libpq expands the same way. */
        unsigned st = d->timeout_ms;
        size_t n = strlen(ci) * 2 + 200;
        if ((d->conninfo = malloc(n))) {
            char *w = d->conninfo;
            if (strstr(ci, "://")) {
                w += sprintf(w, "dbname='");
                for (const char *s = ci; *s; s++) {
                    if (*s == '\'' || *s == '\\')
                        *w++ = '\\';
                    *w++ = *s;
                }
                *w++ = '\'';
                *w = '\0';
            } else {
                w += sprintf(w, "%s", ci);
            }
            sprintf(w, " sslmode=disable gssencmode=disable connect_timeout=%u "
                    "options='-c statement_timeout=%u' application_name=ringmail",
                    (st + 999) / 1000 < 2 ? 2 : (st + 999) / 1000, st);
        }
    }
    d->q_password = strdup(p->pgsql_password_query ? p->pgsql_password_query : "");
    d->q_user = strdup(p->pgsql_user_query ? p->pgsql_user_query : "");
    d->q_route = strdup(p->pgsql_route_query ? p->pgsql_route_query : "");
    if (rc == 0 && (!d->conninfo || !d->q_password || !d->q_user || !d->q_route))
        rc = -ENOMEM;
    if (rc == 0 && (!strstr(d->q_password, "$1") || !strstr(d->q_user, "$1"))) {
        *why = "pgsql_password_query and pgsql_user_query must take the user as $1";
        rc = -EINVAL;
    }
    if (rc < 0) {
        p_close(d);
        return rc;
    }
    *out = d;
    return 0;
}
