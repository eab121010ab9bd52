/* Folder core/imap/: the IMAP wire protocol as a library that knows no
 * session, no store and no socket — framing commands (imap_reader.c), the
 * argument tree (imap_tokens.c), sequence sets (imap_seqset.c), LIST
 * patterns (imap_match.c), modified UTF-7 names (imap_mutf7.c) and building
 * responses (imap_out.c).  The fuzzers drive it directly. */
/* core/imap/imap_args.h — reading IMAP commands off the wire.
 *
 * Two layers.  The reader frames: it collects one complete command — its
 * lines and the literals between them — from bytes that arrive in any
 * number of pieces, and says when a synchronizing literal needs a "+"
 * continuation.  The tokenizer turns a complete command into a tree of
 * arguments (atoms, numbers, strings, literals, lists, NIL).  Per-command
 * grammar (FETCH items, SEARCH keys, sequence sets, ...) works on the tree.
 *
 * Ownership: the reader owns its buffer; a finished command's bytes and the
 * tree built over them stay valid until imap_reader_feed() or
 * imap_reader_release() is called again.
 */
#ifndef RINGMAIL_CORE_IMAP_ARGS_H
#define RINGMAIL_CORE_IMAP_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <stdint.h>

/* ---- the reader ---------------------------------------------------------- */

/* A field left 0 takes its default. */
typedef struct imap_reader_limits {
    size_t max_line;        /* bytes of one line outside literals, line end
                               excluded (default 64 KiB) */
    size_t max_literal;     /* bytes of one literal (APPENDLIMIT; default 64 MiB) */
    size_t max_command;     /* total bytes of one command (default 80 MiB);
                               a line crossing it is LINE_TOO_LONG, a literal
                               crossing it LITERAL_TOO_BIG */
    bool literal_minus;     /* only LITERAL- is offered: a {n+} literal above
                               4096 bytes is an error */
} imap_reader_limits;

typedef enum imap_read_status {
    IMAP_READ_MORE = 0,     /* need more bytes */
    IMAP_READ_COMMAND,      /* a complete command is ready: imap_reader_command */
    IMAP_READ_CONTINUE,     /* a synchronizing literal was announced: send
                               "+ ..." and keep feeding */
    IMAP_READ_LINE_TOO_LONG,    /* the line exceeds max_line: answer BAD and
                                   the reader skips to the next line end */
    IMAP_READ_LITERAL_TOO_BIG,  /* a literal exceeds max_literal: answer
                                   "NO [TOOBIG]" (RFC 7889) / BAD; the reader
                                   has discarded the command; for a
                                   non-synchronizing literal it also skips
                                   the literal's bytes as they arrive */
} imap_read_status;

/* After either error the whole command is dropped.  What is skipped:
 *  - LINE_TOO_LONG: bytes up to and including the next line end.  If that
 *    line ends in a non-synchronizing literal {n+}, its n bytes and the
 *    command's following lines are skipped the same way (the client sends
 *    them without waiting).  A synchronizing {n} there ends the skipping:
 *    the client waits for "+", gets the tagged BAD and abandons the command.
 *  - LITERAL_TOO_BIG on {n} / ~{n}: nothing (the announcing line has been
 *    read; the client will not send the literal after the tagged NO/BAD).
 *  - LITERAL_TOO_BIG on {n+} / ~{n+} (too big, or above 4096 with
 *    literal_minus): exactly n bytes, then the rest of the command as for
 *    LINE_TOO_LONG.
 * A literal size that does not fit in 64 bits is "too big"; for {n+} the
 * reader then skips everything (the caller should say BYE). */

typedef struct imap_reader imap_reader;

/* Memory: an idle reader holds no buffer (it is allocated on the first
 * partial command and freed once a completed command has been released —
 * imap_reader_release() or the next feed — and nothing partial is left; a
 * feed that ends with nothing buffered frees it too).  The buffer grows
 * geometrically: large literals cost linear time. */
imap_reader *imap_reader_new(const imap_reader_limits *lim /* NULL: defaults */);
void imap_reader_free(imap_reader *r);
/* Change the limits (NULL: defaults), e.g. from the small ones before login
 * to the full ones after.  Call it between commands (!imap_reader_busy), so
 * no command is framed under two sets of limits. */
void imap_reader_set_limits(imap_reader *r, const imap_reader_limits *lim);

/* Feed bytes; consumes as much as it can and returns the first event.  Call
 * repeatedly with the rest (p + *used) until it returns IMAP_READ_MORE (all
 * of p consumed).  It stops right after each command's last line end, so
 * the caller can switch line mode before the next one.  Line ends are CRLF
 * or a bare LF; CONTINUE comes once per synchronizing literal, right after
 * its announcing line; {n+} gets none. */
imap_read_status imap_reader_feed(imap_reader *r, const uint8_t *p, size_t n,
                                  size_t *used);

/* The complete command (after IMAP_READ_COMMAND): the bytes from the tag to
 * the final CRLF excluded, literals included in place.  Valid until the next
 * feed. */
void imap_reader_command(const imap_reader *r, const uint8_t **p, size_t *n);

/* Line mode (AUTHENTICATE continuations, IDLE's DONE): while on, every line
 * is returned as a "command" without literal processing. */
void imap_reader_line_mode(imap_reader *r, bool on);

/* Is anything buffered (a partial command, or bytes being skipped)? */
bool imap_reader_busy(const imap_reader *r);

/* The caller is done with the command returned last: its bytes are dropped
 * and, when nothing else is buffered, the buffer is freed.  The next feed
 * does the same implicitly; call this when no feed follows soon (an idle
 * connection then holds no buffer). */
void imap_reader_release(imap_reader *r);

/* Bytes of heap the reader holds now (0 when idle and released). */
size_t imap_reader_memory(const imap_reader *r);

/* After LINE_TOO_LONG / LITERAL_TOO_BIG: the tag of the dropped command, if
 * its first line started with a well-formed tag (else false: answer "* BAD").
 * The tag is copied inside the reader: valid until the next feed/release. */
bool imap_reader_error_tag(const imap_reader *r, const char **tag, size_t *len);

/* Where the literals of the complete command are (offsets into the bytes of
 * imap_reader_command), in order.  The reader always stores the line end
 * before a literal's data as CRLF, even when a bare LF was received. */
typedef struct imap_literal_pos {
    size_t ann;             /* offset of the "{" (or "~" of "~{") announcing it */
    size_t off, len;        /* its data */
    bool binary;            /* ~{n} */
} imap_literal_pos;
void imap_reader_literals(const imap_reader *r, const imap_literal_pos **lits,
                          size_t *n);

/* ---- the tokenizer ------------------------------------------------------- */

typedef enum imap_arg_type {
    IMAP_ARG_ATOM,          /* includes numbers and things like BODY[1.2]<0.10>:
                               see imap_args_parse */
    IMAP_ARG_STRING,        /* quoted string, unescaped */
    IMAP_ARG_LITERAL,       /* {n} / {n+} / ~{n} literal */
    IMAP_ARG_LIST,          /* ( ... ) */
    IMAP_ARG_NIL,
} imap_arg_type;

typedef struct imap_arg {
    imap_arg_type type;
    bool binary;            /* literal8 ~{n} */
    const char *s;          /* ATOM/STRING/LITERAL bytes (not NUL-terminated
                               for literals; NUL-terminated otherwise) */
    size_t len;
    struct imap_arg *list;  /* LIST: its elements */
    size_t nlist;
} imap_arg;

typedef struct imap_args imap_args;   /* owns the tree and unescaped strings */

/* Tokenize a complete command (from imap_reader_command) into the tag, the
 * command name (upper-cased; for "UID FETCH" the name is "UID" and FETCH is
 * the first argument, as written) and the argument list.
 *
 * Atoms follow RFC 9051's ATOM-CHAR ('[' included) plus what astrings,
 * sequence sets, LIST patterns and flags need ('*', '%', ']', '\') and
 * 8-bit bytes.  After the name of a fetch attribute that takes a section
 * (BODY, BODY.PEEK, BINARY, BINARY.PEEK, BINARY.SIZE, any case) a '[' opens
 * one: the brackets stay inside the atom together with what they enclose
 * (even spaces, parentheses and quoted strings, kept raw), so
 * BODY[HEADER.FIELDS (A B)]<0.100> is one atom, as is BODY.PEEK[1.2.MIME].
 * Anywhere else '[' is an ordinary atom character: "a[b" is one atom.
 * An atom NIL (any case) is IMAP_ARG_NIL (s = "NIL").  Tokens are separated
 * by one or more spaces.  Nesting of lists is limited (64).
 *
 * *tag points into p (taglen bytes, not NUL-terminated), NULL if the command
 * does not start with a valid tag.  *name and atom/string s are
 * NUL-terminated copies owned by *out; literal s points into p.
 *
 * Returns 0, or -EINVAL with a short reason in *err (a static string) for
 * input that is not a well-formed command (then *out, *args, *name are
 * NULL); the tag is still returned when it could be read (so BAD can be
 * tagged); -ENOMEM.
 *
 * imap_args_parse finds literals from their syntax ("{n}" CRLF at a line
 * end, LF alone accepted); imap_args_parse_framed takes the reader's table
 * (imap_reader_literals) instead, so the framing is exactly the reader's. */
int imap_args_parse(const uint8_t *p, size_t n, imap_args **out,
                    const char **tag, size_t *taglen, const char **name,
                    imap_arg **args, size_t *nargs, const char **err);
int imap_args_parse_framed(const uint8_t *p, size_t n,
                           const imap_literal_pos *lits, size_t nlits,
                           imap_args **out, const char **tag, size_t *taglen,
                           const char **name, imap_arg **args, size_t *nargs,
                           const char **err);
void imap_args_free(imap_args *a);

/* Helpers for command grammar. */
/* astring (atom, NIL as "NIL", string or literal) -> NUL-terminated string
 * owned by args; NULL for a list, a literal containing NUL, or ENOMEM. */
const char *imap_arg_astring(imap_args *a, const imap_arg *arg);
/* An atom (or NIL) equal to atom, case-insensitively. */
bool imap_arg_is(const imap_arg *arg, const char *atom);
/* Parse a non-negative number (number / nz-number / number64) from an atom:
 * digits only (no sign).  -EINVAL, or -ERANGE above 2^63-1. */
int imap_arg_number(const imap_arg *arg, uint64_t *out);

/* ---- sequence sets ------------------------------------------------------- */

/* A range as written: lo <= hi.  '*' is held as UINT32_MAX with its bit in
 * `star`, so an explicit 4294967295 (a valid nz-number) is never taken for
 * '*'. */
#define IMAP_SEQ_LO_STAR 1u
#define IMAP_SEQ_HI_STAR 2u
typedef struct imap_seqrange {
    uint32_t lo, hi;
    unsigned star;                    /* IMAP_SEQ_*_STAR bits */
} imap_seqrange;

typedef struct imap_seqset {
    imap_seqrange *r;                 /* in the client's order */
    size_t n;
} imap_seqset;

/* A resolved range of numbers, inclusive. */
typedef struct imap_range {
    uint32_t lo, hi;
} imap_range;

/* Parse "1,3:5,7:*" (also "$" when allow_dollar: n = 0, dollar = true).
 * Rejects 0, empty elements, more than max_ranges ranges (-E2BIG) and bad
 * syntax (-EINVAL).  r is malloc'd (free(set->r)).
 * "$" is allowed when dollar != NULL (*dollar is set false otherwise);
 * max_ranges 0 means no limit.  Ranges keep the client's order, each with
 * lo <= hi (5:2 is 2:5, *:4 is 4:*); nothing is merged here, since what '*'
 * stands for is known only when the set is used (imap_seqset_resolve).
 * On error set->r is NULL and set->n 0. */
int imap_seqset_parse(const char *s, size_t len, size_t max_ranges,
                      imap_seqset *out, bool *dollar);

/* Normalize a set before any work is done with it: '*' becomes `star` (the
 * largest number in use, 0 when there is none), each range is ordered, and
 * the ranges are sorted and overlapping or adjacent ones merged.  out must
 * hold set->n entries; returns how many it filled (ascending, disjoint,
 * never adjacent).  O(n log n), so a client repeating "1:*" thousands of
 * times costs one range of work.  A range may resolve to include 0 only
 * when star is 0: callers decide what that means. */
size_t imap_seqset_resolve(const imap_seqset *set, uint32_t star, imap_range *out);

/* ---- mailbox names ------------------------------------------------------- */

/* Modified UTF-7 (RFC 3501 5.1.3) <-> UTF-8.  Returns a malloc'd string or
 * NULL (errno EINVAL for invalid input, ENOMEM).  Decoding accepts only the
 * canonical form: printable ASCII never encoded, no empty or adjacent
 * "&...-" runs, zero padding bits, paired surrogates, no U+0000; 8-bit
 * bytes and controls outside "&...-" are invalid.  Encoding rejects invalid
 * UTF-8 (overlong forms, surrogates, above U+10FFFF). */
char *imap_mutf7_to_utf8(const char *s, size_t len);
char *imap_utf8_to_mutf7(const char *s);

/* LIST/LSUB pattern matching: '*' matches any run of bytes, '%' any run
 * without `sep`.  A name whose first level is INBOX matches it
 * case-insensitively.  O(len(name) * len(pattern)), never exponential. */
bool imap_list_match(const char *pattern, const char *name, char sep);

/* ---- writing ------------------------------------------------------------- */

/* Append s as an IMAP string to a malloc'd growing buffer: an atom-safe
 * quoted string when possible, else a literal {n}\r\n...  utf8_ok: 8-bit
 * bytes may be quoted (UTF8=ACCEPT / IMAP4rev2).
 * Quoted when shorter than 1024 bytes, free of NUL, CR and LF, and either
 * 7-bit or (utf8_ok and valid UTF-8); \\ and \" are escaped.  A zeroed
 * imap_out is empty; after a failed allocation err is -ENOMEM and further
 * appends do nothing.  imap_out_free frees p and zeroes the struct. */
typedef struct imap_out {
    char *p;
    size_t len, cap;
    int err;                /* -ENOMEM once an append failed */
} imap_out;
void imap_out_add_slow(imap_out *o, const void *p, size_t n);
/* Append n bytes.  Inline: responses are built from many small pieces. */
static inline void imap_out_add(imap_out *o, const void *p, size_t n)
{
    if (n <= o->cap - o->len && !o->err) {
        if (n)
            memcpy(o->p + o->len, p, n);
        o->len += n;
        return;
    }
    imap_out_add_slow(o, p, n);
}
/* A string constant. */
#define imap_out_lit(o, s) imap_out_add((o), (s), sizeof(s) - 1)
/* A decimal number (without printf: it runs once per message in FETCH). */
void imap_out_uint(imap_out *o, uint64_t v);
void imap_out_printf(imap_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void imap_out_string(imap_out *o, const char *s, size_t n, bool utf8_ok);
/* NIL for s == NULL. */
void imap_out_nstring(imap_out *o, const char *s, size_t n, bool utf8_ok);
void imap_out_free(imap_out *o);
/* Ascending numbers as a compact set: "1:3,7". */
void imap_out_set(imap_out *o, const uint32_t *v, size_t n);

#endif
