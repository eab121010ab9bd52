/* core/passwd.h — users from a passwd-file in Dovecot's format.
 *
 * Lines are `user:{SCHEME}secret[:uid:gid:gecos:home:shell:extra]`; blank
 * lines and lines starting with '#' are ignored.  Schemes: {PLAIN},
 * {CLEAR}, and the crypt(3) family through libxcrypt: {SHA512-CRYPT},
 * {SHA256-CRYPT}, {BLF-CRYPT}, {CRYPT} (whatever crypt() understands).
 * A secret without a scheme is taken as crypt(3) output.
 *
 * The file is re-read when its mtime, size or inode change (one stat per
 * verification), so `ringmail-admin user add` takes effect without a
 * restart.  Thread-safe.
 */
#ifndef RINGMAIL_CORE_PASSWD_H
#define RINGMAIL_CORE_PASSWD_H

#include <stdbool.h>
#include <stddef.h>

typedef struct passwd_db passwd_db;

int passwd_open(const char *path, passwd_db **out);
void passwd_close(passwd_db *db);

/* 0 if user exists and password matches; -EACCES wrong password or no such
 * user (the caller must not tell the two apart to the client); -EIO etc.
 * if the file cannot be read.  Constant-time comparison for PLAIN. */
int passwd_verify(passwd_db *db, const char *user, const char *password);

/* Make a passwd-file entry's secret for `scheme` ("PLAIN",
 * "SHA512-CRYPT", "SHA256-CRYPT", "BLF-CRYPT").  *out is malloc'd
 * "{SCHEME}secret".  -EINVAL unknown scheme. */
int passwd_hash(const char *scheme, const char *password, char **out);

/* Add (replace = false: -EEXIST if present) or replace (replace = true:
 * -ENOENT if absent) a user's line, or delete it (entry NULL: -ENOENT if
 * absent), rewriting the file atomically. */
int passwd_file_set(const char *path, const char *user, const char *entry,
                    bool replace);
/* User names, one per element; free each and the array. */
int passwd_file_users(const char *path, char ***names, size_t *n);

#endif
