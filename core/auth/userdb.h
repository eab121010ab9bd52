/* core/auth/userdb.h — the directory of users: who exists, their password,
 * their quota rules, and the backend that holds their mail.
 *
 * One interface over the places users can live: the passwd-file
 * (core/auth/passwd.h, Dovecot's format), and, where configured, a
 * directory server (LDAP, PostgreSQL).  A user's record is kept in
 * Dovecot's words: the passwd-file line's extra fields, blank-separated
 * key=value ("host=10.0.0.2 port=143 userdb_quota_rule=*:storage=1G");
 * a directory server's attributes or columns are mapped onto the same
 * keys, so quota and routing read one form whatever the source.
 *
 * Every call here may block (a hash, a file read, a network round trip):
 * call them on a pool thread (core/auth/authpool.h), never on a worker's
 * loop.  Thread-safe.  No event loop, no socket of the server's: the
 * admin tool links this too.
 *
 * Results: 0 found / verified; -EACCES wrong password or no such user
 * (verify: the caller must not tell the two apart to a client); -ENOENT
 * no such user (lookup); -EAGAIN the directory cannot answer now (down,
 * timed out, overloaded): answer "NO [UNAVAILABLE]" and log, never a
 * false yes or no; -EIO etc. the passwd-file cannot be read.
 */
#ifndef RINGMAIL_CORE_USERDB_H
#define RINGMAIL_CORE_USERDB_H

#include <stdbool.h>
#include <stdint.h>

#include "core/auth/passwd.h"

typedef struct userdb userdb;

/* What userdb_open needs; the server fills it from its configuration
 * (core/auth knows no config file).  Strings are copied; NULL is "". */
typedef struct userdb_params {
    const char *passwd_file;    /* the passwd-file (always: local users,
                                   and SCRAM credentials) */
    const char *kind;           /* userdb: "passwd-file" (or NULL), "ldap",
                                   "pgsql" */
    unsigned timeout_ms;        /* directory_timeout: every directory call */
    unsigned cache_ttl_s;       /* auth_cache_ttl: how long a directory's
                                   records are answered without asking it
                                   (0: always asked; see
                                   userdb_lookup_cached) */
    /* userdb = ldap */
    const char *ldap_uri, *ldap_base, *ldap_bind_dn, *ldap_bind_password;
    const char *ldap_filter;    /* "%u": the user name, RFC 4515-escaped */
    const char *ldap_auth;      /* "search" (compare userPassword) or "bind" */
    const char *ldap_attrs;     /* "attr=field,...": attributes into extra */
    /* userdb = pgsql: libpq conninfo; queries get the user as $1 */
    const char *pgsql_connect;
    const char *pgsql_password_query;  /* password, then extra fields */
    const char *pgsql_user_query;      /* extra fields */
    const char *pgsql_route_query;     /* $2 host, $3 port (NULL: none) */
} userdb_params;

/* A user as the directory has it.  Every pointer malloc'd (or NULL);
 * userdb_rec_free frees them. */
typedef struct userdb_rec {
    char *name;         /* the name as the directory spells it */
    char *extra;        /* blank-separated key=value fields, or NULL */
} userdb_rec;

/* 0; -EINVAL a directory setting is missing or malformed (*why, if not
 * NULL, says which); the passwd-file's errors.  No directory connection
 * is made here: a directory that is down at start is an -EAGAIN later. */
int userdb_open(const userdb_params *p, userdb **out, const char **why);
void userdb_close(userdb *db);

/* Check user's password; on 0, *rec (if not NULL) is the user's record.
 * *answer_delay_ms as passwd_verify_timed: an unknown user costs no hash,
 * and the answer must wait that long (0 for users that exist). */
int userdb_verify(userdb *db, const char *user, const char *password, userdb_rec *rec,
                  unsigned *answer_delay_ms);
/* Does user exist?  *rec its record.  fold: ASCII case of the name does
 * not matter (mail delivery; an exact match wins; a directory server
 * compares names as its schema or query says).  A directory's records
 * are cached for cache_ttl_s: a fresh one is answered without asking. */
int userdb_lookup(userdb *db, const char *user, bool fold, userdb_rec *rec);
/* userdb_lookup for a worker's loop, which must not wait for a directory:
 * 0 a record cached within the TTL (the passwd-file: always, as
 * userdb_lookup); 1 a record older than the TTL, still the best there is
 * (have userdb_lookup run on a pool to refresh it); -EWOULDBLOCK none
 * cached (run userdb_lookup on a pool); -ENOENT (passwd-file only). */
int userdb_lookup_cached(userdb *db, const char *user, bool fold, userdb_rec *rec);
void userdb_rec_free(userdb_rec *rec);

/* The value of extra field `key` in `extra` (NULL-safe), with or without
 * Dovecot's "userdb_" prefix: a pointer into extra and its length, or
 * NULL if absent. */
const char *userdb_field(const char *extra, const char *key, size_t *len);

/* Where the user's mail is: the "host" and "port" fields (the backend's
 * IMAP address, as Dovecot's proxy fields say it).  *host malloc'd, or
 * NULL when the record names no host (the mail is here); *port 0 when no
 * port is given.  -EINVAL for a port that is not 1..65535 or a host with
 * blanks or control characters. */
int userdb_route(const userdb_rec *rec, char **host, unsigned *port);

/* Point the user's record at another backend (moving a user): the
 * "host" and "port" fields become host and port (host NULL: the mail is
 * here, both fields go; port 0: no port field).  The passwd-file: the
 * user's line is rewritten (passwd_file_set) keeping its secret, its
 * other fields and the other extra fields, "userdb_"-prefixed ones
 * included.  Servers holding the record in their cache see the change
 * once it expires (auth_cache_ttl) or `ringmail-admin flush-auth-cache`
 * drops it; this process's own cached record goes at once.  0; -ENOENT no
 * such user; -EINVAL a host with blanks or control characters, or a port
 * over 65535; -EAGAIN the directory cannot answer now; -EIO etc. */
int userdb_set_route(userdb *db, const char *user, const char *host, unsigned port);

/* The passwd-file behind the directory: SCRAM credentials and the
 * generation that the auth cache keys on. */
passwd_db *userdb_passwd(userdb *db);
/* Whether users come from a directory server (ldap, pgsql).  Then SCRAM
 * cannot be offered: its keys come from the passwd-file only, and a
 * directory holds one-way hashes at best (callers of
 * passwd_scram_everyone must ask this first). */
bool userdb_is_directory(const userdb *db);
/* The number the auth cache keys verified credentials on: the passwd-
 * file's generation (a changed file drops them), or for a directory a
 * number only userdb_flush changes, so auth_cache_ttl rules.  0: not
 * known (do not use the cache).  _nowait: for a worker's loop. */
uint64_t userdb_generation(userdb *db);
uint64_t userdb_generation_nowait(userdb *db);
/* Drop every cached record and change the generation (flush-auth-cache,
 * reload).  Returns how many records went. */
size_t userdb_flush(userdb *db);
/* Why the last call of this thread answered -EAGAIN or -EIO (for the
 * log: which directory, what it said), or "". */
const char *userdb_error(void);

#endif
