/* core/auth/passwd.h — users from a passwd-file in Dovecot's format.
 *
 * Lines are `user:{SCHEME}secret[:uid:gid:gecos:home:shell:extra]`; blank
 * lines and lines starting with '#' are ignored.  Schemes:
 *   {PLAIN}, {CLEAR}            the password itself
 *   {SHA512-CRYPT}, {SHA256-CRYPT}, {BLF-CRYPT}, {CRYPT}, {MD5-CRYPT}
 *                               crypt(3) through libxcrypt
 *   {ARGON2ID} (and {ARGON2I}, verify only)
 *                               "$argon2id$v=19$m=..,t=..,p=..$salt$hash",
 *                               libsodium (built with RINGMAIL_HAVE_SODIUM)
 *   {SCRAM-SHA-256}             "iterations,b64(salt),b64(StoredKey),
 *                               b64(ServerKey)" (Dovecot's layout)
 * A secret without a scheme is taken as crypt(3) output.
 *
 * The file is re-read when its mtime, size or inode change (one stat per
 * verification), so `ringmail-admin user add` takes effect without a
 * restart.  Thread-safe.  Verification is slow on purpose (ARGON2ID: 64 MiB
 * and ~50 ms): call it on the auth pool (core/auth/authpool.h), never on a
 * worker's loop.
 */
#ifndef RINGMAIL_CORE_PASSWD_H
#define RINGMAIL_CORE_PASSWD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ARGON2ID where libsodium is linked: memory-hard (64 MiB per guess), the
 * current recommendation against GPU/ASIC cracking, and what Dovecot
 * writes; SHA512-CRYPT otherwise. */
#ifdef RINGMAIL_HAVE_SODIUM
#define PASSWD_DEFAULT_SCHEME "ARGON2ID"
#else
#define PASSWD_DEFAULT_SCHEME "SHA512-CRYPT"
#endif
/* PBKDF2 rounds for new SCRAM-SHA-256 secrets and for SCRAM keys derived
 * from {PLAIN} secrets: RFC 7677's minimum and Dovecot's default (clients
 * pay this cost on every login). */
#define PASSWD_SCRAM_ITERATIONS 4096
#define PASSWD_SCRAM_MAX_ITERATIONS (1u << 24)
#define PASSWD_SCRAM_SALT_MAX 64

typedef struct passwd_db passwd_db;

int passwd_open(const char *path, passwd_db **out);
void passwd_close(passwd_db *db);

/* 0 if user exists and password matches; -EACCES wrong password or no such
 * user (the caller must not tell the two apart to the client); -EIO etc.
 * if the file cannot be read.  Constant-time comparisons. */
int passwd_verify(passwd_db *db, const char *user, const char *password);
/* passwd_verify without the cost of a hash for a user that does not
 * exist: -EACCES at once, and *answer_delay_ms a duration drawn from
 * recent real verifications of PASSWD_DEFAULT_SCHEME secrets.  The caller
 * must wait that long (on a timer, burning no CPU) before it answers, so
 * that neither the answer nor its timing tells who exists; a flood of
 * made-up names then costs the server almost nothing.  *answer_delay_ms is
 * 0 for users that exist. */
int passwd_verify_timed(passwd_db *db, const char *user, const char *password,
                        unsigned *answer_delay_ms);

/* A number that changes whenever the file is re-read (stats the file,
 * re-reads it if changed).  0 if it cannot be read.  The auth cache keys
 * its entries on it. */
uint64_t passwd_generation(passwd_db *db);
/* The same for a worker's loop: never reads the file and never waits for
 * the lock; 0 (not known now) if the file changed since it was read or
 * another thread holds the lock. */
uint64_t passwd_generation_nowait(passwd_db *db);

/* Check password against one secret in the passwd-file's form
 * ("{SCHEME}..." or bare crypt(3) output), as a directory server hands it
 * over (an LDAP userPassword, a SQL column).  Besides the schemes above,
 * {SSHA} and {SHA} (base64 SHA-1 with and without salt: slappasswd's
 * default; verify only).  0 match, -EACCES no match or an unknown scheme,
 * -ENOMEM.  Slow (the hash): on the pool. */
int passwd_check_secret(const char *secret, const char *password);
/* How long an answer about a user that does not exist must wait: a
 * duration drawn from recent real checks (see passwd_verify_timed). */
unsigned passwd_unknown_delay_ms(const char *password);

/* Make a passwd-file entry's secret for `scheme` (one of passwd_schemes,
 * case-sensitive).  *out is malloc'd "{SCHEME}secret".  -EINVAL unknown
 * scheme, -ENOTSUP scheme not built in (ARGON2ID without libsodium). */
int passwd_hash(const char *scheme, const char *password, char **out);
/* The schemes passwd_hash accepts, space-separated (for messages). */
const char *passwd_schemes(void);

/* ---- SCRAM-SHA-256 credentials ---- */
typedef struct passwd_scram {
    unsigned iterations;
    size_t salt_len;
    uint8_t salt[PASSWD_SCRAM_SALT_MAX];
    uint8_t stored_key[32];
    uint8_t server_key[32];
} passwd_scram;

/* SaltedPassword = PBKDF2(password, salt, i); ClientKey = HMAC(SP, "Client
 * Key"); StoredKey = H(ClientKey); ServerKey = HMAC(SP, "Server Key").
 * -EINVAL for a salt longer than PASSWD_SCRAM_SALT_MAX or bad iterations. */
int passwd_scram_derive(const char *password, size_t pwlen, const uint8_t *salt,
                        size_t salt_len, unsigned iterations, passwd_scram *out);
/* Parse the part after "{SCRAM-SHA-256}".  0 or -EINVAL. */
int passwd_scram_parse(const char *s, passwd_scram *out);
/* A user's credentials for SCRAM-SHA-256: from a {SCRAM-SHA-256} secret,
 * or derived from a {PLAIN}/{CLEAR} one (PASSWD_SCRAM_ITERATIONS rounds,
 * salt from passwd_scram_salt: see there).  -EACCES no such user, or a
 * one-way scheme from which SCRAM keys cannot be made (SCRAM must then
 * fail as an authentication failure); -EIO etc. file unreadable.  Slow
 * for {PLAIN} users (PBKDF2): call on the pool. */
int passwd_scram_lookup(passwd_db *db, const char *user, passwd_scram *out);
/* The salt used for users without a stored one (plaintext secrets, and
 * the fake credentials of unknown users): HMAC(process key, user), 16
 * bytes.  The key is random per process, so the salt is stable for a user
 * while the server runs (clients that cache SaltedPassword by salt keep
 * working, and asking twice for an unknown user gives the same answer, so
 * salts do not reveal who exists) but is not predictable across restarts,
 * so nobody can precompute keys for it. */
void passwd_scram_salt(const char *user, uint8_t salt[16]);
/* Whether AUTH=SCRAM-SHA-256 can be offered: SCRAM needs keys that a
 * one-way hash such as {ARGON2ID} cannot give, and a client offered SCRAM
 * may not fall back (mbsync does not), so it is offered only while every
 * user has {SCRAM-SHA-256}, {PLAIN} or {CLEAR} credentials.  For the
 * capability list, called on a worker's loop: never reads the file and
 * never waits for the lock.  1 yes; 0 no; -EAGAIN not known now (the file
 * changed since it was read, or was never read, or another thread holds
 * the lock): answer "no" and have passwd_generation run on a pool. */
int passwd_scram_everyone(passwd_db *db);

/* NULL if `name` can be a user name, else why not (for messages).  A
 * user name must be able to log in with LOGIN and with every SASL
 * mechanism, fit a passwd-file line and name a store directory: 1 to
 * PASSWD_USER_MAX bytes of UTF-8 without control characters (TAB
 * included), without ':' (the file's separator) or '/', not starting with
 * '#' (a comment line), not "." or "..". */
#define PASSWD_USER_MAX 255
const char *passwd_user_name_problem(const char *name);

/* Does `user` exist?  0 with *name (the name as the file spells it) and, if
 * extra is not NULL, *extra (the line's extra fields, or NULL if it has
 * none), both malloc'd; -ENOENT if not; -EIO etc. if the file cannot be
 * read.  With fold, a name that differs only in ASCII case is found too
 * (mail delivery: RFC 5321 2.4 leaves case in local parts to the receiving
 * host, and people write addresses as they please); an exact match wins. */
int passwd_lookup(passwd_db *db, const char *user, bool fold, char **name, char **extra);

/* Add (replace = false: -EEXIST if present) or replace (replace = true:
 * -ENOENT if absent) a user's line, or delete it (entry NULL: -ENOENT if
 * absent), rewriting the file atomically.  -EINVAL: a user name
 * passwd_user_name_problem refuses (when adding or replacing), or a line
 * break in entry. */
int passwd_file_set(const char *path, const char *user, const char *entry,
                    bool replace);
/* The line of `user` (exact name) after "user:", malloc'd in *entry:
 * "secret:uid:gid:gecos:home:shell:extra" as far as the line goes.
 * -ENOENT no such line; -EIO etc. */
int passwd_file_entry(const char *path, const char *user, char **entry);
/* User names, one per element; free each and the array. */
int passwd_file_users(const char *path, char ***names, size_t *n);

#endif
