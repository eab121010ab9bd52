/* tools/migrate/mig_imap.h — a small, strict IMAP client for migration.
 *
 * Blocking, one connection, plain TCP or TLS (BoringSSL; the peer's
 * certificate is always verified, against a given CA file or the system's
 * store, and its name checked).  A response is read whole, literals
 * included, into a buffer with bounded sizes: a line (without literals) of
 * at most MIG_MAX_LINE bytes, a literal of at most MIG_MAX_LITERAL; a
 * server sending more is an error, never an allocation without limit.
 * Everything a response holds is then read with the cursor functions
 * (atoms, strings, NIL, parentheses) over that buffer.
 */
#ifndef RINGMAIL_TOOLS_MIGRATE_MIG_IMAP_H
#define RINGMAIL_TOOLS_MIGRATE_MIG_IMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MIG_MAX_LINE    (1u << 20)            /* text of a response, literals apart */
#define MIG_MAX_LITERAL (512u << 20)          /* one literal: a message */

typedef struct mig_conn mig_conn;

typedef struct mig_url {
    bool tls;               /* imaps:// */
    bool starttls;          /* imap:// with --starttls */
    char host[256];
    char port[8];
} mig_url;

/* "imaps://host[:port]" or "imap://host[:port]" (an IPv6 host in [...]). */
int mig_url_parse(const char *s, mig_url *out);

/* Connect, read the greeting, STARTTLS if asked, learn the capabilities.
 * ca: a PEM file of trusted certificates, or NULL for the system's store.
 * On failure *err says why in words (no connection is left open). */
int mig_connect(const mig_url *url, const char *ca, mig_conn **out,
                char *err, size_t errlen);
void mig_close(mig_conn *c);          /* LOGOUT (best effort) and free */
/* A connection over an already connected socket, no TLS, nothing read yet
 * (the tests drive the reader through a socketpair). */
int mig_conn_fd(int fd, mig_conn **out);

/* LOGIN with the name and password as IMAP strings.  -EACCES for NO. */
int mig_login(mig_conn *c, const char *user, const char *password,
              char *err, size_t errlen);

/* Whether the capability (case-insensitive, e.g. "UIDPLUS") was announced. */
bool mig_has_cap(const mig_conn *c, const char *cap);

/* ---- responses ---- */

typedef struct mig_resp {
    char *data;             /* the whole response, literals inline; owned by the conn */
    size_t len;
    bool tagged;            /* "TAG ..." of our command */
    uint32_t tag;
} mig_resp;

/* Send a command line ("TAG " is prepended, CRLF appended); returns its tag
 * number.  The line must not hold literals (mig_cmd_begin/astring do). */
int mig_send(mig_conn *c, uint32_t *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Build a command piece by piece: begin, add text and astrings, end. */
void mig_cmd_begin(mig_conn *c, uint32_t *tag);
void mig_cmd_text(mig_conn *c, const char *s);
void mig_cmd_astring(mig_conn *c, const char *s);   /* quoted or literal */
int mig_cmd_end(mig_conn *c);
/* Read the next response.  Valid until the next call. */
int mig_read(mig_conn *c, mig_resp *r);
/* Bytes received and sent so far. */
uint64_t mig_bytes_in(const mig_conn *c);

/* For a tagged response: 0 OK, -EACCES NO, -EPROTO BAD (the text after
 * the status goes to err). */
int mig_tagged_status(const mig_resp *r, char *err, size_t errlen);

/* ---- reading a response ---- */

typedef enum mig_tok {
    MIG_T_END = 0, MIG_T_ATOM, MIG_T_STRING, MIG_T_NIL, MIG_T_LPAREN,
    MIG_T_RPAREN, MIG_T_ERR,
} mig_tok;

typedef struct mig_cur {
    const char *p, *end;
} mig_cur;

/* The next token; for atoms and strings *s and *n are its bytes (a quoted
 * string still escaped: mig_unquote copies it out).  Atoms include '\'
 * and '[...]' (so "BODY[]" and "\Seen" are one atom each). */
mig_tok mig_next(mig_cur *c, const char **s, size_t *n, bool *quoted);
/* A malloc'd, NUL-terminated copy of a string token, unescaped. */
char *mig_strdup_tok(const char *s, size_t n, bool quoted);
/* Skip one value: an atom, string, NIL or a parenthesized list. */
int mig_skip(mig_cur *c);
/* "[CODE arg]" of a status response, if any: its text, within r. */
bool mig_resp_code(const mig_resp *r, const char *code, uint64_t *num);

#endif
