/* Folder core/auth/: who may log in — SASL mechanisms (sasl_*.c), the
 * passwd-file and its hash schemes (passwd.c, sasl_crypto.c; the part
 * ringmail-admin links), the thread pool that runs slow hashes off the
 * workers (authpool.c) and the accounting against guessers and floods
 * (abuse.c).  It knows net/ only to post results back to a worker. */
/* core/auth/sasl.h — server-side SASL, independent of I/O.
 *
 * Mechanisms: PLAIN (RFC 4616), LOGIN (the obsolete "Username:" /
 * "Password:" exchange), SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802,
 * RFC 7677; channel bindings tls-exporter and tls-server-end-point).
 *
 * Bytes in and out are raw: the session layer does IMAP's base64.  The
 * exchange never blocks: when a step needs the slow part (verifying a
 * password, looking up or deriving SCRAM keys), sasl_step returns
 * SASL_WORK; the caller then runs sasl_work(s) wherever slow work belongs
 * (authpool_submit(pool, sasl_work, s, ...)) and, back on its own thread,
 * calls sasl_resume for the real outcome.  The object is owned by one
 * session; only one of step/work/resume runs at a time.
 *
 * SCRAM on the wire (what the session sends):
 *   AUTHENTICATE SCRAM-SHA-256 [ir]  ->  step(NULL or ir) ... CONTINUE with
 *   server-first; step(client-final) -> WORK -> resume -> CONTINUE with
 *   "v=..." (send as a "+" challenge); step(empty) -> DONE.
 * On FAIL, *out may hold a SCRAM "e=..." server-final message; an IMAP
 * server may simply answer NO (the error text is then only for logs).
 *
 * No SASLprep: user names and passwords are compared as bytes (as Dovecot
 * does); user names must be UTF-8 without control characters.
 */
#ifndef RINGMAIL_CORE_SASL_H
#define RINGMAIL_CORE_SASL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/auth/passwd.h"

typedef enum sasl_mech {
    SASL_MECH_PLAIN,
    SASL_MECH_LOGIN,
    SASL_MECH_SCRAM_SHA_256,
    SASL_MECH_SCRAM_SHA_256_PLUS,
} sasl_mech;

/* Case-insensitive.  0, or -ENOENT for an unknown name. */
int sasl_mech_parse(const char *name, sasl_mech *out);
const char *sasl_mech_name(sasl_mech m);
/* PLAIN and LOGIN send the password: the session must only offer them
 * where plaintext authentication is allowed. */
bool sasl_mech_is_plaintext(sasl_mech m);

typedef struct sasl_backend {
    /* Slow, called from sasl_work.  0 match; -EACCES wrong password or no
     * such user; other -errno: cannot check now (temporary failure).
     * E.g. passwd_verify or authcache_verify. */
    int (*verify)(void *arg, const char *user, const char *password);
    /* Optional, cheap, called inside sasl_step (the connection's thread)
     * before a password check would need SASL_WORK: 0 the password is
     * known to be right (a cache of verified credentials), and the
     * exchange is DONE without the slow part; anything else: go on with
     * SASL_WORK and verify. */
    int (*verify_cached)(void *arg, const char *user, const char *password);
    /* Slow, called from sasl_work.  0 and *out; -EACCES unknown user or
     * no SCRAM credentials for the user; other -errno temporary.  E.g.
     * passwd_scram_lookup. */
    int (*scram_lookup)(void *arg, const char *user, passwd_scram *out);
    /* Cheap, called inside sasl_step (the connection's thread): channel
     * binding data of `type` ("tls-exporter", "tls-server-end-point"); *len
     * in: size of out, out: length.  NULL or < 0: not available.  E.g.
     * net_conn_tls_binding. */
    int (*binding)(void *arg, const char *type, uint8_t *out, size_t *len);
    void *arg;
} sasl_backend;

typedef enum sasl_status {
    SASL_CONTINUE,  /* send *out (may be empty) as a challenge, then feed
                       the client's response to sasl_step */
    SASL_WORK,      /* run sasl_work(s) (any thread), then sasl_resume */
    SASL_DONE,      /* authenticated as sasl_user(s) */
    SASL_FAIL,      /* see sasl_error(s) */
} sasl_status;

typedef struct sasl sasl;

/* plus_offered: the server advertises SCRAM-SHA-256-PLUS on this
 * connection (so a client saying "y" was downgraded by someone).  be is
 * copied.  0 or -ENOMEM. */
int sasl_new(sasl_mech mech, const sasl_backend *be, bool plus_offered, sasl **out);
void sasl_free(sasl *s);

/* Feed the client's next message.  On the first call, in == NULL means
 * "no initial response" (in != NULL with n == 0 is an empty one).  *out /
 * *outlen: the server's message, owned by s, valid until the next call. */
sasl_status sasl_step(sasl *s, const uint8_t *in, size_t n,
                      const uint8_t **out, size_t *outlen);
/* The slow part; matches authpool's work function type. */
void sasl_work(void *s);
/* After sasl_work: the outcome of the step that returned SASL_WORK. */
sasl_status sasl_resume(sasl *s, const uint8_t **out, size_t *outlen);
/* step, and work + resume inline if needed (tools, tests, fuzzing). */
sasl_status sasl_step_sync(sasl *s, const uint8_t *in, size_t n,
                           const uint8_t **out, size_t *outlen);

/* After DONE: the authenticated user (authzid, if given, equals it). */
const char *sasl_user(const sasl *s);
/* The names the client sent, whatever the outcome (for the log: a failed
 * login must say whom it tried): the authentication identity and the
 * authorization identity; NULL if not (yet) sent or not well-formed. */
const char *sasl_authcid(const sasl *s);
const char *sasl_authzid(const sasl *s);
/* After FAIL: -EACCES authentication failed (tagged NO
 * [AUTHENTICATIONFAILED]); -EPERM authzid is another user
 * ([AUTHORIZATIONFAILED]); -EINVAL malformed client message (BAD or NO);
 * -ENOTSUP channel binding requested but not possible / not supported;
 * other -errno: temporary failure ([UNAVAILABLE]). */
int sasl_error(const sasl *s);

/* Tests and fuzzing: use this server nonce part instead of a random one
 * (printable ASCII except ','; before the first step).  0 or -EINVAL. */
int sasl_set_server_nonce(sasl *s, const char *nonce);

/* Fuzz entry point: drives one full exchange with a fixed fake store
 * (user "user", password "pencil", RFC 7677's salt and 4096 rounds, server
 * nonce "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0" so RFC 7677's transcript is a
 * valid seed; binding data: 32 bytes of 0x42).  data[0]: bits 0-1 the
 * mechanism, bit 2 plus_offered, bit 3 binding available, bit 4 no
 * initial response; the rest: client messages separated by 0xFF.
 * Returns the final status.  Never crashes, leaks nothing. */
int sasl_fuzz_exchange(const uint8_t *data, size_t n);

#endif
