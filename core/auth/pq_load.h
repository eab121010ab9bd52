/* core/auth/pq_load.h — libpq, loaded when a PostgreSQL directory is
 * configured (private to core/auth/userdb_pg.c).
 *
 * Debian's libpq is built against OpenSSL, ringmaild links BoringSSL:
 * linked at build time, the two libssl and libcrypto would sit in every
 * program that links core/auth (the linker warns that they may conflict),
 * although only a PostgreSQL directory uses libpq.  So libpq is opened
 * with dlopen(RTLD_LOCAL) the first time one is configured, and its
 * functions are called through pq_fn.  Its TLS is never used
 * (userdb_pg.c refuses sslmode and gssencmode), so its SSL_* references,
 * which resolve to the program's BoringSSL first, are never called. */
#ifndef RINGMAIL_CORE_AUTH_PQ_LOAD_H
#define RINGMAIL_CORE_AUTH_PQ_LOAD_H

#include <libpq-fe.h>

typedef struct pq_fns {
    void (*PQclear)(PGresult *);
    char *(*PQcmdTuples)(PGresult *);
    PostgresPollingStatusType (*PQconnectPoll)(PGconn *);
    PGconn *(*PQconnectStart)(const char *);
    void (*PQconninfoFree)(PQconninfoOption *);
    PQconninfoOption *(*PQconninfoParse)(const char *, char **);
    int (*PQconsumeInput)(PGconn *);
    char *(*PQerrorMessage)(const PGconn *);
    void (*PQfinish)(PGconn *);
    int (*PQflush)(PGconn *);
    char *(*PQfname)(const PGresult *, int);
    void (*PQfreemem)(void *);
    PGresult *(*PQgetResult)(PGconn *);
    int (*PQgetisnull)(const PGresult *, int, int);
    char *(*PQgetvalue)(const PGresult *, int, int);
    int (*PQisBusy)(PGconn *);
    int (*PQnfields)(const PGresult *);
    int (*PQntuples)(const PGresult *);
    char *(*PQresultErrorMessage)(const PGresult *);
    ExecStatusType (*PQresultStatus)(const PGresult *);
    int (*PQsendQueryParams)(PGconn *, const char *, int, const Oid *, const char *const *,
                             const int *, const int *, int);
    int (*PQsocket)(const PGconn *);
    ConnStatusType (*PQstatus)(const PGconn *);
} pq_fns;

extern pq_fns pq_fn;

/* Open libpq (once per process; thread-safe).  0, or -ENOENT with *why
 * saying what is missing. */
int pq_load(const char **why);

#endif
