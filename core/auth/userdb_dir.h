/* core/auth/userdb_dir.h — a directory server behind userdb.c (internal:
 * userdb_ldap.c, userdb_pg.c).
 *
 * A backend answers in userdb.h's words, with one difference: verify
 * tells -ENOENT (no such user) from -EACCES (wrong password), so that
 * userdb.c can make an unknown user's answer wait like a real check
 * (passwd_unknown_delay_ms) before both become -EACCES.  Every call may
 * block up to the directory's timeout; on -EAGAIN (down, timed out,
 * refused) or -EIO (the directory answered something we cannot use) the
 * backend has said why with userdb_dir_error.
 *
 * rec->name: the name as the directory spells it when it says so (an
 * attribute or column mapped to the field "user"), else the name asked
 * for.  A directory may compare names without regard to case (LDAP's uid
 * does); userdb.c then holds logins to the exact spelling, as the
 * passwd-file does, so that one user's mail is not split over "Alice" and
 * "alice", while delivery (fold) takes any case to the user's name. */
#ifndef RINGMAIL_CORE_USERDB_DIR_H
#define RINGMAIL_CORE_USERDB_DIR_H

#include "core/auth/userdb.h"

typedef struct userdb_dir userdb_dir;

typedef struct userdb_dir_ops {
    int (*verify)(userdb_dir *d, const char *user, const char *password, userdb_rec *rec);
    int (*lookup)(userdb_dir *d, const char *user, userdb_rec *rec);
    int (*set_route)(userdb_dir *d, const char *user, const char *host, unsigned port);
    void (*close)(userdb_dir *d);
} userdb_dir_ops;

/* 0, or -EINVAL (a key missing or malformed: *why says which) or -ENOMEM.
 * No connection is made here: the directory may be down at start. */
int userdb_ldap_open(const userdb_params *p, userdb_dir **out, const userdb_dir_ops **ops,
                     const char **why);
int userdb_pg_open(const userdb_params *p, userdb_dir **out, const userdb_dir_ops **ops,
                   const char **why);

/* Why the last call on this thread failed (printf-like; kept per thread
 * so each pool thread reports its own). */
void userdb_dir_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The LDAP search filter: tmpl with "%u" replaced by user escaped as RFC
 * 4515 3 requires of an assertion value ('*', '(', ')', '\' and NUL as
 * "\2a", "\28", "\29", "\5c", "\00"), "%%" by '%'.  *out malloc'd.
 * -EINVAL for another '%' sequence. */
int userdb_ldap_filter(const char *tmpl, const char *user, char **out);

/* Append " key=value" to a record's extra (*extra malloc'd or NULL); a
 * value with blanks or control characters cannot be an extra field and
 * is left out (-EINVAL; the record stays as it was). */
int userdb_extra_add(char **extra, const char *key, const char *value, size_t vlen);

/* Milliseconds on CLOCK_MONOTONIC. */
uint64_t userdb_now_ms(void);

#endif
