/* core/imap/imap_tokens.c — turning a complete command into tag, name and a tree
 * of arguments (RFC 9051 section 4 and 9), plus the small accessors command
 * grammar uses on that tree.
 *
 * Everything the tree points to lives in one arena owned by imap_args, so a
 * command is freed with one call; literal data is not copied (it points into
 * the command bytes). */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/imap/imap_args.h"

#define MAX_DEPTH 64
#define CHUNK_MIN 4096

struct chunk {
    struct chunk *next;
    size_t used, cap;
    max_align_t data[];
};

struct imap_args {
    struct chunk *chunks;
};

static void *arena_alloc(imap_args *a, size_t n)
{
    const size_t align = sizeof(max_align_t);
    n = (n + align - 1) / align * align;
    if (!n)
        n = align;
    struct chunk *c = a->chunks;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > CHUNK_MIN ? n : CHUNK_MIN;
        c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = a->chunks;
        a->chunks = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

static char *arena_strndup(imap_args *a, const void *s, size_t n)
{
    char *d = arena_alloc(a, n + 1);
    if (!d)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void imap_args_free(imap_args *a)
{
    if (!a)
        return;
    for (struct chunk *c = a->chunks, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(a);
}

/* ---- tokenizing ---------------------------------------------------------- */

struct parser {
    const uint8_t *p;
    size_t n, pos;
    bool framed;
    const imap_literal_pos *lits;
    size_t nlits, li;
    imap_args *a;
    const char *err;
    int rc;
};

static int fail(struct parser *ps, const char *why)
{
    if (!ps->err)
        ps->err = why;
    ps->rc = -EINVAL;
    return -EINVAL;
}

static int nomem(struct parser *ps)
{
    ps->err = "Out of memory";
    ps->rc = -ENOMEM;
    return -ENOMEM;
}

static bool tag_char(uint8_t c)
{
    return c > 0x20 && c < 0x7f && !strchr("(){%*\"\\+", c);
}

/* ATOM-CHAR, list-wildcards, resp-specials, '\' (flags) and 8-bit.  '['
 * is an ATOM-CHAR too; atom() decides when it opens a section. */
static bool atom_char(uint8_t c)
{
    return c > 0x20 && c != 0x7f && !strchr("(){\"", c);
}

/* Does '[' after these len bytes open a section?  Only after the names of
 * the fetch attributes that take one (RFC 9051 formal syntax: fetch-att
 * "BODY" ["[" section "]"], "BODY.PEEK[", "BINARY[", "BINARY.PEEK[",
 * "BINARY.SIZE[").  Anywhere else '[' is an ATOM-CHAR like any other (atom
 * = 1*ATOM-CHAR; '[' is not among atom-specials), so a mailbox name such
 * as "a[b" or "x[}" is one atom, not an unterminated section. */
static bool section_name(const uint8_t *p, size_t len)
{
    static const char *const names[] = {
        "BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE",
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strlen(names[i]) == len && !strncasecmp((const char *)p, names[i], len))
            return true;
    return false;
}

/* A quoted string starting at ps->pos (the opening quote).  With out NULL
 * it is only skipped (raw, inside a section). */
static int quoted(struct parser *ps, char **out, size_t *outlen)
{
    size_t i = ps->pos + 1, len = 0;
    for (;; i++) {
        if (i >= ps->n)
            return fail(ps, "Unterminated quoted string");
        uint8_t c = ps->p[i];
        if (c == '"')
            break;
        if (c == '\r' || c == '\n')
            return fail(ps, "Line break inside quoted string");
        if (c == '\0')
            return fail(ps, "NUL inside quoted string");
        if (c == '\\') {
            i++;
            if (i >= ps->n)
                return fail(ps, "Unterminated quoted string");
            if (ps->p[i] != '\\' && ps->p[i] != '"')
                return fail(ps, "Invalid escape in quoted string (only \\\\ and \\\")");
        }
        len++;
    }
    size_t end = i;
    if (out) {
        char *d = arena_alloc(ps->a, len + 1);
        if (!d)
            return nomem(ps);
        size_t k = 0;
        for (i = ps->pos + 1; i < end; i++) {
            if (ps->p[i] == '\\')
                i++;
            d[k++] = (char)ps->p[i];
        }
        d[k] = '\0';
        *out = d;
        *outlen = k;
    }
    ps->pos = end + 1;
    return 0;
}

static bool is_literal_start(const struct parser *ps)
{
    uint8_t c = ps->p[ps->pos];
    if (ps->framed)
        return ps->li < ps->nlits && ps->lits[ps->li].ann == ps->pos;
    return c == '{' || (c == '~' && ps->pos + 1 < ps->n && ps->p[ps->pos + 1] == '{');
}

static int literal(struct parser *ps, imap_arg *arg)
{
    if (ps->framed) {
        const imap_literal_pos *l = &ps->lits[ps->li];
        if (l->off < ps->pos || l->off > ps->n || l->len > ps->n - l->off)
            return fail(ps, "Bad literal framing");
        arg->binary = l->binary;
        arg->s = (const char *)ps->p + l->off;
        arg->len = l->len;
        ps->pos = l->off + l->len;
        ps->li++;
        return 0;
    }
    size_t i = ps->pos;
    arg->binary = ps->p[i] == '~';
    if (arg->binary)
        i++;
    i++;    /* '{' */
    uint64_t v = 0;
    size_t digits = 0;
    while (i < ps->n && ps->p[i] >= '0' && ps->p[i] <= '9') {
        unsigned d = ps->p[i] - '0';
        if (v > (UINT64_MAX - d) / 10)
            return fail(ps, "Literal size too large");
        v = v * 10 + d;
        digits++;
        i++;
    }
    if (!digits)
        return fail(ps, "Bad literal");
    if (i < ps->n && ps->p[i] == '+')
        i++;
    if (i >= ps->n || ps->p[i] != '}')
        return fail(ps, "Bad literal");
    i++;
    if (i < ps->n && ps->p[i] == '\r')
        i++;
    if (i >= ps->n || ps->p[i] != '\n')
        return fail(ps, "Literal not at the end of a line");
    i++;
    if (v > ps->n - i)
        return fail(ps, "Literal longer than the command");
    arg->s = (const char *)ps->p + i;
    arg->len = (size_t)v;
    ps->pos = i + (size_t)v;
    return 0;
}

/* A growing copy of a section atom whose literals are rewritten as quoted
 * strings. */
struct atom_buf {
    char *p;
    size_t len, cap;
};

static int atom_buf_add(struct atom_buf *b, const void *s, size_t n)
{
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->len < n)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np)
            return -ENOMEM;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

/* A literal inside a section (BODY[HEADER.FIELDS ({7}CRLF Subject)]): RFC
 * 9051 9 makes header-fld-name an astring, so a literal may stand there.
 * Its bytes go into the atom as a quoted string, the form the section
 * parser reads; a header field name has no CR, LF or NUL (RFC 5322 3.6.8),
 * and a literal8 is no astring. */
static int section_literal(struct parser *ps, struct atom_buf *b)
{
    imap_arg lit = {0};
    if (literal(ps, &lit) < 0)
        return ps->rc;
    if (lit.binary)
        return fail(ps, "A literal8 is allowed only as APPEND's message");
    if (atom_buf_add(b, "\"", 1) < 0)
        return nomem(ps);
    for (size_t i = 0; i < lit.len; i++) {
        char c = lit.s[i];
        if (c == '\r' || c == '\n' || c == '\0')
            return fail(ps, "Bad header field name in a section");
        if ((c == '"' || c == '\\') && atom_buf_add(b, "\\", 1) < 0)
            return nomem(ps);
        if (atom_buf_add(b, &c, 1) < 0)
            return nomem(ps);
    }
    if (atom_buf_add(b, "\"", 1) < 0)
        return nomem(ps);
    return 0;
}

static int atom(struct parser *ps, imap_arg *arg)
{
    size_t start = ps->pos, depth = 0, seg = start;
    struct atom_buf b = {0};
    int rc = 0;
    while (ps->pos < ps->n) {
        uint8_t c = ps->p[ps->pos];
        if (depth) {
            if (c == ']') {
                depth--;
            } else if (c == '[') {
                if (++depth > MAX_DEPTH) {
                    rc = fail(ps, "Sections nested too deeply");
                    goto out;
                }
            } else if (c == '"') {
                if (quoted(ps, NULL, NULL) < 0) {
                    rc = ps->rc;
                    goto out;
                }
                continue;
            } else if (is_literal_start(ps)) {
                if (atom_buf_add(&b, ps->p + seg, ps->pos - seg) < 0) {
                    rc = nomem(ps);
                    goto out;
                }
                if ((rc = section_literal(ps, &b)) < 0)
                    goto out;
                seg = ps->pos;
                continue;
            } else if (c < 0x20 || c == 0x7f) {
                rc = fail(ps, c == '\r' || c == '\n' ? "Missing ] (line break)"
                                                     : "Invalid character in section");
                goto out;
            }
        } else if (c == '[' && section_name(ps->p + start, ps->pos - start)) {
            depth++;
        } else if (!atom_char(c)) {
            break;
        }
        ps->pos++;
    }
    if (depth) {
        rc = fail(ps, "Missing ]");
        goto out;
    }
    if (ps->pos == start) {
        uint8_t c = ps->p[start];
        rc = fail(ps, c == '\r' || c == '\n' ? "Unexpected line break"
                      : c == '{' ? "Bad literal" : "Invalid character");
        goto out;
    }
    if (b.p && atom_buf_add(&b, ps->p + seg, ps->pos - seg) < 0) {
        rc = nomem(ps);
        goto out;
    }
    const char *src = b.p ? b.p : (const char *)ps->p + start;
    size_t len = b.p ? b.len : ps->pos - start;
    char *s = arena_strndup(ps->a, src, len);
    if (!s) {
        rc = nomem(ps);
        goto out;
    }
    arg->type = len == 3 && !strcasecmp(s, "NIL") ? IMAP_ARG_NIL : IMAP_ARG_ATOM;
    arg->s = s;
    arg->len = len;
out:
    free(b.p);
    return rc;
}

/* Items up to the end (top) or the matching ')' (list). */
static int items(struct parser *ps, unsigned depth, bool in_list,
                 imap_arg **out, size_t *nout)
{
    imap_arg *v = NULL;
    size_t nv = 0, cap = 0;
    bool after_atom = false;
    *out = NULL;
    *nout = 0;
    for (;;) {
        size_t spaces = 0;
        while (ps->pos < ps->n && ps->p[ps->pos] == ' ') {
            ps->pos++;
            spaces++;
        }
        if (ps->pos >= ps->n) {
            if (in_list) {
                fail(ps, "Missing )");
                goto out;
            }
            break;
        }
        uint8_t c = ps->p[ps->pos];
        if (c == ')') {
            if (!in_list) {
                fail(ps, "Unexpected )");
                goto out;
            }
            ps->pos++;
            break;
        }
        if (nv && !spaces) {
            fail(ps, c == '\r' || c == '\n' ? "Unexpected line break"
                     : after_atom ? "Invalid character in atom"
                     : "Missing space between arguments");
            goto out;
        }
        if (nv == cap) {
            size_t nc = cap ? cap * 2 : 8;
            imap_arg *nvp = realloc(v, nc * sizeof *v);
            if (!nvp) {
                nomem(ps);
                goto out;
            }
            v = nvp;
            cap = nc;
        }
        imap_arg *arg = &v[nv];
        memset(arg, 0, sizeof *arg);
        after_atom = false;
        if (c == '(') {
            if (depth + 1 > MAX_DEPTH) {
                fail(ps, "Lists nested too deeply");
                goto out;
            }
            ps->pos++;
            arg->type = IMAP_ARG_LIST;
            if (items(ps, depth + 1, true, &arg->list, &arg->nlist) < 0)
                goto out;
        } else if (c == '"') {
            char *s;
            arg->type = IMAP_ARG_STRING;
            if (quoted(ps, &s, &arg->len) < 0)
                goto out;
            arg->s = s;
        } else if (is_literal_start(ps)) {
            arg->type = IMAP_ARG_LITERAL;
            if (literal(ps, arg) < 0)
                goto out;
        } else {
            if (atom(ps, arg) < 0)
                goto out;
            after_atom = true;
        }
        nv++;
    }
    if (nv) {
        *out = arena_alloc(ps->a, nv * sizeof *v);
        if (!*out) {
            nomem(ps);
            goto out;
        }
        memcpy(*out, v, nv * sizeof *v);
        *nout = nv;
    }
out:
    free(v);
    return ps->rc;
}

static int parse(struct parser *ps, imap_args **out, const char **tag,
                 size_t *taglen, const char **name, imap_arg **args,
                 size_t *nargs, const char **err)
{
    *out = NULL;
    *tag = NULL;
    *taglen = 0;
    *name = NULL;
    *args = NULL;
    *nargs = 0;
    *err = NULL;
    ps->a = calloc(1, sizeof *ps->a);
    if (!ps->a) {
        *err = "Out of memory";
        return -ENOMEM;
    }
    if (!ps->n) {
        fail(ps, "Empty command line");
        goto out;
    }
    while (ps->pos < ps->n && tag_char(ps->p[ps->pos]))
        ps->pos++;
    if (ps->pos == 0 || (ps->pos < ps->n && ps->p[ps->pos] != ' ')) {
        fail(ps, "Invalid tag");
        goto out;
    }
    *tag = (const char *)ps->p;
    *taglen = ps->pos;
    while (ps->pos < ps->n && ps->p[ps->pos] == ' ')
        ps->pos++;
    size_t start = ps->pos;
    while (ps->pos < ps->n && atom_char(ps->p[ps->pos]))
        ps->pos++;
    if (ps->pos == start) {
        fail(ps, "Missing command name");
        goto out;
    }
    if (ps->pos < ps->n && ps->p[ps->pos] != ' ') {
        fail(ps, "Invalid command name");
        goto out;
    }
    char *nm = arena_strndup(ps->a, ps->p + start, ps->pos - start);
    if (!nm) {
        nomem(ps);
        goto out;
    }
    for (char *c = nm; *c; c++)
        if (*c >= 'a' && *c <= 'z')
            *c = (char)(*c - 'a' + 'A');
    if (items(ps, 0, false, args, nargs) < 0)
        goto out;
    if (ps->framed && ps->li != ps->nlits) {
        fail(ps, "Literal in an unexpected place");
        goto out;
    }
    *name = nm;
out:
    if (ps->rc < 0) {
        *err = ps->err;
        *args = NULL;
        *nargs = 0;
        imap_args_free(ps->a);
        return ps->rc;
    }
    *out = ps->a;
    return 0;
}

int imap_args_parse(const uint8_t *p, size_t n, imap_args **out,
                    const char **tag, size_t *taglen, const char **name,
                    imap_arg **args, size_t *nargs, const char **err)
{
    struct parser ps = {.p = p, .n = n};
    return parse(&ps, out, tag, taglen, name, args, nargs, err);
}

int imap_args_parse_framed(const uint8_t *p, size_t n,
                           const imap_literal_pos *lits, size_t nlits,
                           imap_args **out, const char **tag, size_t *taglen,
                           const char **name, imap_arg **args, size_t *nargs,
                           const char **err)
{
    struct parser ps = {.p = p, .n = n, .framed = true, .lits = lits, .nlits = nlits};
    return parse(&ps, out, tag, taglen, name, args, nargs, err);
}

/* ---- helpers for command grammar ---------------------------------------- */

const char *imap_arg_astring(imap_args *a, const imap_arg *arg)
{
    switch (arg->type) {
    case IMAP_ARG_ATOM:
    case IMAP_ARG_STRING:
    case IMAP_ARG_NIL:
        return arg->s;
    case IMAP_ARG_LITERAL:
        if (memchr(arg->s, '\0', arg->len))
            return NULL;
        return arena_strndup(a, arg->s, arg->len);
    case IMAP_ARG_LIST:
        break;
    }
    return NULL;
}

bool imap_arg_is(const imap_arg *arg, const char *atom)
{
    return (arg->type == IMAP_ARG_ATOM || arg->type == IMAP_ARG_NIL) &&
           !strcasecmp(arg->s, atom);
}

int imap_arg_number(const imap_arg *arg, uint64_t *out)
{
    if (arg->type != IMAP_ARG_ATOM || !arg->len)
        return -EINVAL;
    uint64_t v = 0;
    int rc = 0;
    for (size_t i = 0; i < arg->len; i++) {
        unsigned char c = (unsigned char)arg->s[i];
        if (c < '0' || c > '9')
            return -EINVAL;     /* even after an overflow */
        if (v > ((uint64_t)INT64_MAX - (c - '0')) / 10)
            rc = -ERANGE;
        else
            v = v * 10 + (c - '0');
    }
    if (rc < 0)
        return rc;
    *out = v;
    return 0;
}
