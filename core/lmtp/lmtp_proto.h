/* Folder core/lmtp/: the LMTP wire protocol (RFC 2033 on RFC 5321's
 * syntax) — command lines, addresses and ESMTP parameters (lmtp_cmd.c),
 * and the DATA stream with its dot-stuffing (lmtp_data.c).  It knows no
 * session, no socket and no store, so it can be fuzzed alone; deliveries
 * are the server's business. */
/* core/lmtp/lmtp_proto.h — parsing what an LMTP client sends. */
#ifndef RINGMAIL_LMTP_PROTO_H
#define RINGMAIL_LMTP_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 5321 4.5.3.1: a command line is at most 512 octets with its CRLF,
 * "SMTP extensions may be used to increase this limit": SIZE, BODY,
 * SMTPUTF8 and the DSN parameters an MTA adds fit well within this. */
#define LMTP_LINE_MAX 2048
/* RFC 5321 4.5.3.1.1-3 */
#define LMTP_LOCAL_MAX 64
#define LMTP_DOMAIN_MAX 255
#define LMTP_PATH_MAX 256
#define LMTP_PARAMS_MAX 16

typedef enum lmtp_verb {
    LMTP_LHLO,
    LMTP_MAIL,
    LMTP_RCPT,
    LMTP_DATA,
    LMTP_BDAT,
    LMTP_RSET,
    LMTP_NOOP,
    LMTP_QUIT,
    LMTP_VRFY,
    LMTP_HELO,      /* HELO and EHLO: recognised to be refused (RFC 2033 4.1) */
    LMTP_STARTTLS,
    LMTP_UNKNOWN,
} lmtp_verb;

typedef struct lmtp_param {
    const char *key;        /* upper-cased */
    const char *value;      /* NULL when the parameter has no "=" */
} lmtp_param;

/* A parsed command.  Its strings point into the line buffer given to
 * lmtp_parse_command, which writes NULs into it: valid while that buffer
 * is. */
typedef struct lmtp_cmd {
    lmtp_verb verb;
    const char *arg;        /* LHLO's domain, VRFY's argument */
    /* MAIL's reverse-path / RCPT's forward-path: the local part with its
     * quoting undone, and the domain (NULL for MAIL FROM:<> and for RCPT
     * TO:<Postmaster>).  `null_path` is MAIL FROM:<>. */
    const char *local;
    const char *domain;
    bool null_path;
    bool utf8;              /* the path holds non-ASCII (needs SMTPUTF8) */
    lmtp_param params[LMTP_PARAMS_MAX];
    size_t nparams;
    uint64_t bdat_size;     /* BDAT */
    bool bdat_last;
} lmtp_cmd;

/* A reply to a command that could not be parsed: the code, the enhanced
 * status code (RFC 3463) and a text. */
typedef struct lmtp_error {
    int code;
    const char *status;
    const char *text;
} lmtp_error;

/* Parse one command line line[0..len) (without its CRLF; a NUL in it is an
 * error).  `line` is modified in place and line[len] must be writable (it
 * becomes a NUL).  Returns 0, or -EINVAL with *err set: 500
 * for an unknown command or a line the grammar cannot split, 501 for bad
 * arguments, 555 for a bad MAIL/RCPT parameter (RFC 5321 4.1.1.11). */
int lmtp_parse_command(char *line, size_t len, lmtp_cmd *cmd, lmtp_error *err);

/* The value of parameter `key` (upper case) or NULL; *present tells a
 * parameter without value from an absent one. */
const char *lmtp_param_get(const lmtp_cmd *cmd, const char *key, bool *present);

/* ---- DATA (RFC 5321 4.5.2) ---- */

/* The decoder undoes dot-stuffing and finds the end of the data.  Only
 * <CRLF>.<CRLF> ends it, and only a dot after a CRLF is a stuffed dot: a
 * bare LF is data (RFC 5321 2.3.8 forbids it in SMTP; reading "<LF>.<LF>"
 * as an end is what "SMTP smuggling" exploits), kept as it came. */
typedef struct lmtp_data {
    int state;
    uint64_t size;          /* decoded bytes so far (counted past max too) */
    uint64_t max;           /* above this, bytes are counted, not kept */
} lmtp_data;

void lmtp_data_init(lmtp_data *d, uint64_t max);

/* Decode what arrived: p[0..n).  Decoded bytes go to out[0..*nout) — out
 * must hold n + 1 bytes (a CR held back at the end of the last call may
 * come out now); bytes past `max` are dropped (size still counts them).
 * *used is how much of p was consumed.  Returns 1 when the end line was
 * read (bytes after it are the next command, not consumed), else 0.  The
 * final CRLF before the dot belongs to the message. */
int lmtp_data_feed(lmtp_data *d, const char *p, size_t n, char *out, size_t *nout,
                   size_t *used);

#endif
