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
 * (core/auth knows no config file).  Strings are copied. */
typedef struct userdb_params {
    const char *passwd_file;    /* the passwd-file (always: local users,
                                   and SCRAM credentials) */
} userdb_params;

/* A user as the directory has it.  Every pointer malloc'd (or NULL);
 * userdb_rec_free frees them. */
typedef struct userdb_rec {
    char *name;         /* the name as the directory spells it */
    char *extra;        /* blank-separated key=value fields, or NULL */
} userdb_rec;

int userdb_open(const userdb_params *p, userdb **out);
void userdb_close(userdb *db);

/* Check user's password; on 0, *rec (if not NULL) is the user's record.
 * *answer_delay_ms as passwd_verify_timed: an unknown user costs no hash,
 * and the answer must wait that long (0 for users that exist). */
int userdb_verify(userdb *db, const char *user, const char *password, userdb_rec *rec,
                  unsigned *answer_delay_ms);
/* Does user exist?  *rec its record.  fold: ASCII case of the name does
 * not matter (mail delivery; an exact match wins). */
int userdb_lookup(userdb *db, const char *user, bool fold, userdb_rec *rec);
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

/* Make the user's record name host and port as its backend (a user moved
 * to another backend: ringmail-admin user move).  For the passwd-file the
 * line's host= and port= extra fields are replaced (the file rewritten
 * atomically; the rest of the line kept byte for byte), so every server
 * reading it routes the user there from its next lookup.  -ENOENT no such
 * user, -EINVAL a bad host or port. */
int userdb_set_route(userdb *db, const char *user, const char *host, unsigned port);

/* The passwd-file behind the directory: SCRAM credentials and the
 * generation that the auth cache keys on. */
passwd_db *userdb_passwd(userdb *db);

#endif
