/* core/fetch/fetch_render.c — ENVELOPE, BODY and BODYSTRUCTURE from the parsed
 * cache (contract in core/fetch/fetch_render.h). */
#include "core/fetch/fetch_render.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct rctx {
    imap_out *o;
    const store_cache *c;
    bool utf8;
    store_buf tmp;              /* upper-casing and NUL replacement */
    /* address parsing scratch */
    store_buf phrase, local, domain, adl, comment;
    size_t count;               /* addresses written in the current list */
    bool plain;                 /* addresses as search text, not IMAP data
                                   (imap_render_address_text) */
    bool in_angle;              /* inside "<...>": comments are no name */
    imap_address_parts *first;  /* imap_first_address: keep the first
                                   mailbox here and write nothing */
} rctx;

static void oom(rctx *x)
{
    if (!x->o->err)
        x->o->err = -ENOMEM;
}

static void add(rctx *x, const char *s)
{
    imap_out_add(x->o, s, strlen(s));
}

static bool buf_put(rctx *x, store_buf *b, const void *p, size_t n)
{
    if (store_buf_append(b, p, n)) {
        oom(x);
        return false;
    }
    return true;
}

/* A string (never NIL).  NUL cannot travel in an IMAP string. */
static void put_string(rctx *x, const char *p, size_t n)
{
    if (n && memchr(p, 0, n)) {
        x->tmp.len = 0;
        if (!buf_put(x, &x->tmp, p, n))
            return;
        for (size_t i = 0; i < n; i++)
            if (!x->tmp.data[i])
                x->tmp.data[i] = ' ';
        p = (const char *)x->tmp.data;
    }
    imap_out_string(x->o, p ? p : "", n, x->utf8);
}

static void put_nstr(rctx *x, store_str s)
{
    if (!s.p)
        add(x, "NIL");
    else
        put_string(x, s.p, s.len);
}

static void put_upper(rctx *x, const char *p, size_t n)
{
    x->tmp.len = 0;
    if (!buf_put(x, &x->tmp, p, n))
        return;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = x->tmp.data[i];
        if (c >= 'a' && c <= 'z')
            x->tmp.data[i] = (uint8_t)(c - 32);
        else if (!c)
            x->tmp.data[i] = ' ';
    }
    imap_out_string(x->o, (const char *)x->tmp.data, n, x->utf8);
}

/* ------------------------------------------------------------------ */
/* RFC 5322 address lists                                              */

static inline bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Index past the comment starting at s[i] == '(' (nested, with quoted
 * pairs), or n if unterminated (*closed false). */
static size_t comment_end(const char *s, size_t n, size_t i, bool *closed)
{
    int depth = 0;
    *closed = false;
    for (; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n) {
            i++;
        } else if (s[i] == '(') {
            depth++;
        } else if (s[i] == ')' && --depth == 0) {
            *closed = true;
            return i + 1;
        }
    }
    return n;
}

/* Index past the quoted string starting at s[i] == '"', or n if
 * unterminated (*closed false). */
static size_t quoted_end(const char *s, size_t n, size_t i, bool *closed)
{
    *closed = false;
    for (i++; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n) {
            i++;
        } else if (s[i] == '"') {
            *closed = true;
            return i + 1;
        }
    }
    return n;
}

/* Append s[a, e) removing quoted-pair backslashes and CR/LF. */
static void unquote(rctx *x, store_buf *b, const char *s, size_t a, size_t e)
{
    for (size_t i = a; i < e; i++) {
        if (s[i] == '\\' && i + 1 < e)
            i++;
        if (s[i] == '\r' || s[i] == '\n')
            continue;
        if (!buf_put(x, b, s + i, 1))
            return;
    }
}

/* Record the comment at s[i] as the fallback display name; return its
 * end. */
static size_t take_comment(rctx *x, const char *s, size_t n, size_t i)
{
    bool closed;
    size_t e = comment_end(s, n, i, &closed);
    size_t a = i + 1, z = closed ? e - 1 : e;
    while (a < z && is_ws(s[a]))
        a++;
    while (z > a && is_ws(s[z - 1]))
        z--;
    if (z > a && !x->in_angle) {
        x->comment.len = 0;
        unquote(x, &x->comment, s, a, z);
    }
    return e;
}

/* Skip blanks and comments, remembering the last comment. */
static size_t skip_cfws(rctx *x, const char *s, size_t n, size_t i)
{
    while (i < n) {
        if (is_ws(s[i]))
            i++;
        else if (s[i] == '(')
            i = take_comment(x, s, n, i);
        else
            break;
    }
    return i;
}

static bool addr_special(char c)
{
    return c == '<' || c == '>' || c == '@' || c == ',' || c == ';' ||
           c == ':';
}

/* Words (atoms, quoted strings, dots) up to a special.  spaced gets them
 * joined by single spaces (a display name or group name), tight gets them
 * joined without (a local part); either may be NULL.  Returns the index of
 * the stop character (or n); *any says whether a word was seen. */
static size_t scan_words(rctx *x, const char *s, size_t n, size_t i,
                         store_buf *spaced, store_buf *tight, bool *any)
{
    bool gap = false;
    *any = false;
    while (i < n) {
        char c = s[i];
        if (is_ws(c)) {
            gap = true;
            i++;
            continue;
        }
        if (c == '(') {
            i = take_comment(x, s, n, i);
            gap = true;
            continue;
        }
        if (addr_special(c))
            break;
        if (gap && spaced && spaced->len)
            buf_put(x, spaced, " ", 1);
        gap = false;
        *any = true;
        if (c == '"') {
            bool closed;
            size_t e = quoted_end(s, n, i, &closed);
            size_t z = closed ? e - 1 : e;
            if (spaced)
                unquote(x, spaced, s, i + 1, z);
            if (tight)
                unquote(x, tight, s, i + 1, z);
            i = e;
            continue;
        }
        size_t j = i;
        while (j < n && !is_ws(s[j]) && s[j] != '(' && s[j] != '"' &&
               !addr_special(s[j]))
            j++;
        if (spaced)
            buf_put(x, spaced, s + i, j - i);
        if (tight)
            buf_put(x, tight, s + i, j - i);
        i = j;
    }
    return i;
}

/* Does a '.' come after the blanks and comments at i ("a@b (c) .d")? */
static bool dot_follows(const char *s, size_t n, size_t i)
{
    while (i < n) {
        if (is_ws(s[i])) {
            i++;
        } else if (s[i] == '(') {
            bool closed;
            i = comment_end(s, n, i, &closed);
        } else {
            return s[i] == '.';
        }
    }
    return false;
}

/* Is c one of stops (or NUL, which also ends a domain)? */
static inline bool in_stops(const char *stops, char c)
{
    for (const char *p = stops; *p; p++)
        if (*p == c)
            return true;
    return c == '\0';
}

/* A domain (or route) up to a stop character; blanks and comments are
 * dropped, domain literals kept whole.  stop_ws: a blank or comment ends it
 * too, unless a dot is next to it (obsolete "host . example"), so that a
 * missing comma between addr-specs still separates them. */
static size_t scan_domain(rctx *x, const char *s, size_t n, size_t i,
                          store_buf *b, bool stop_ws, const char *stops)
{
    while (i < n) {
        char c = s[i];
        if (stop_ws && b->len && (is_ws(c) || c == '(')) {
            if (b->data[b->len - 1] != '.' && !dot_follows(s, n, i))
                break;
            /* In one go, so a long run of blanks is scanned twice at most. */
            i = skip_cfws(x, s, n, i);
            continue;
        }
        if (is_ws(c)) {
            i++;
        } else if (c == '(') {
            i = take_comment(x, s, n, i);
        } else if (in_stops(stops, c)) {
            break;
        } else if (c == '[') {
            size_t e = i + 1;
            while (e < n && s[e] != ']') {
                if (s[e] == '\\' && e + 1 < n)
                    e++;
                e++;
            }
            e = e < n ? e + 1 : n;
            unquote(x, b, s, i, e);
            i = e;
        } else {
            /* A run of plain characters in one append. */
            size_t j = i + 1;
            while (j < n && !is_ws(s[j]) && s[j] != '(' && s[j] != '[' &&
                   !in_stops(stops, s[j]))
                j++;
            buf_put(x, b, s + i, j - i);
            i = j;
        }
    }
    return i;
}

static void put_buf_nstr(rctx *x, const store_buf *b, bool nil_if_empty)
{
    if (!b->len && nil_if_empty)
        add(x, "NIL");
    else
        put_string(x, (const char *)b->data, b->len);
}

static void begin_addr(rctx *x)
{
    if (x->count++ == 0)
        add(x, "(");
    add(x, "(");
}

/* One address: name (phrase, else a comment, else NIL), route, mailbox,
 * host. */
static void emit_addr(rctx *x, const store_buf *name)
{
    if (!name->len && !x->local.len && !x->domain.len && !x->adl.len)
        return;
    if (x->first) {
        const store_buf *nm = name->len ? name : &x->comment;
        if (!x->first->found) {
            x->first->found = true;
            imap_out_add(&x->first->name, nm->data, nm->len);
            imap_out_add(&x->first->local, x->local.data, x->local.len);
            imap_out_add(&x->first->domain, x->domain.data, x->domain.len);
        }
        x->count++;
        return;
    }
    if (x->plain) {
        /* "name <local@domain>, ": what the ENVELOPE says, in the form
         * the address is written in a header */
        const store_buf *nm = name->len ? name : &x->comment;
        imap_out_add(x->o, nm->data, nm->len);
        add(x, nm->len ? " <" : "<");
        imap_out_add(x->o, x->local.data, x->local.len);
        if (x->domain.len) {
            add(x, "@");
            imap_out_add(x->o, x->domain.data, x->domain.len);
        }
        add(x, ">, ");
        x->count++;
        return;
    }
    begin_addr(x);
    put_buf_nstr(x, name->len ? name : &x->comment, true);
    add(x, " ");
    put_buf_nstr(x, &x->adl, true);
    add(x, " ");
    put_buf_nstr(x, &x->local, false);
    add(x, " ");
    put_buf_nstr(x, &x->domain, false);
    add(x, ")");
}

static void emit_group(rctx *x, const store_buf *name)
{
    if (x->first) {
        /* the group's start marker is an address of ENVELOPE's list: NIL
         * name and host, the group's name as addr-mailbox */
        if (name && !x->first->found) {
            x->first->found = true;
            imap_out_add(&x->first->local, name->data, name->len);
        }
        return;
    }
    if (x->plain) {
        if (name) {
            imap_out_add(x->o, name->data, name->len);
            add(x, ": ");
        } else {
            add(x, "; ");
        }
        return;
    }
    begin_addr(x);
    add(x, "NIL NIL ");
    if (name)
        put_buf_nstr(x, name, false);
    else
        add(x, "NIL");
    add(x, " NIL)");
}

/* One mailbox, or (outside a group) a whole group.  Always consumes at
 * least one byte. */
static size_t parse_mailbox(rctx *x, const char *s, size_t n, size_t i,
                            bool in_group)
{
    size_t start = i;
    bool any;
    x->phrase.len = x->local.len = x->domain.len = x->adl.len = 0;
    x->comment.len = 0;
    i = scan_words(x, s, n, i, &x->phrase, &x->local, &any);
    char c = i < n ? s[i] : 0;

    if (c == '<') {
        /* A comment inside the angle-addr is CFWS between its tokens
         * (RFC 5322 3.4), never the display name: "<a (x)@b>" has none. */
        x->in_angle = true;
        x->local.len = 0;
        i = skip_cfws(x, s, n, i + 1);
        if (i < n && s[i] == '@') {     /* obs-route "@a,@b:" */
            i = scan_domain(x, s, n, i, &x->adl, false, ":>");
            if (i < n && s[i] == ':')
                i++;
        }
        bool w;
        i = scan_words(x, s, n, i, NULL, &x->local, &w);
        if (i < n && s[i] == '@')
            i = scan_domain(x, s, n, i + 1, &x->domain, false, "<>,;:");
        /* Anything else before '>' is junk inside the brackets. */
        while (i < n && s[i] != '>' && s[i] != ',' && s[i] != ';')
            i++;
        if (i < n && s[i] == '>')
            i++;
        x->in_angle = false;
        i = skip_cfws(x, s, n, i);
        emit_addr(x, &x->phrase);
    } else if (c == '@') {
        x->phrase.len = 0;
        i = scan_domain(x, s, n, i + 1, &x->domain, true, "<>,;:");
        i = skip_cfws(x, s, n, i);
        emit_addr(x, &x->phrase);
    } else if (c == ':' && !in_group) {
        emit_group(x, &x->phrase);
        i++;
        for (;;) {
            while (i < n && (is_ws(s[i]) || s[i] == ',' || s[i] == ':'))
                i++;
            if (i >= n)
                break;
            if (s[i] == ';') {
                i++;
                break;
            }
            i = parse_mailbox(x, s, n, i, true);
        }
        emit_group(x, NULL);
    } else {
        /* Bare words: a local part without a domain ("user", or a broken
         * "Undisclosed recipients"). */
        if (any) {
            store_buf t = x->local;
            x->local = x->phrase;
            x->phrase = t;
            x->phrase.len = 0;
            emit_addr(x, &x->phrase);
        }
        if (c == '>' || (c == ':' && in_group))
            i++;
    }
    return i > start ? i : start + 1;
}

/* Write the address list of a header value, without the NIL for an empty
 * list; returns the number of addresses written. */
static size_t addr_list(rctx *x, store_str v)
{
    x->count = 0;
    if (!v.p)
        return 0;
    const char *s = v.p;
    size_t n = v.len, i = 0;
    while (i < n) {
        if (is_ws(s[i]) || s[i] == ',' || s[i] == ';') {
            i++;
            continue;
        }
        i = parse_mailbox(x, s, n, i, false);
    }
    if (x->count && !x->plain)
        add(x, ")");
    return x->count;
}

static void put_addr_list(rctx *x, store_str v, store_str fallback)
{
    if (addr_list(x, v))
        return;
    if (fallback.p && addr_list(x, fallback))
        return;
    add(x, "NIL");
}

static void envelope(rctx *x, uint32_t idx)
{
    store_envelope e;
    store_str none = { NULL, 0 };
    if (store_cache_envelope(x->c, idx, &e)) {
        add(x, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
        return;
    }
    add(x, "(");
    put_nstr(x, e.date);
    add(x, " ");
    put_nstr(x, e.subject);
    add(x, " ");
    put_addr_list(x, e.from, none);
    add(x, " ");
    put_addr_list(x, e.sender, e.from);
    add(x, " ");
    put_addr_list(x, e.reply_to, e.from);
    add(x, " ");
    put_addr_list(x, e.to, none);
    add(x, " ");
    put_addr_list(x, e.cc, none);
    add(x, " ");
    put_addr_list(x, e.bcc, none);
    add(x, " ");
    put_nstr(x, e.in_reply_to);
    add(x, " ");
    put_nstr(x, e.message_id);
    add(x, ")");
}

static void rctx_init(rctx *x, imap_out *o, const store_cache *c, bool utf8)
{
    memset(x, 0, sizeof *x);
    x->o = o;
    x->c = c;
    x->utf8 = utf8;
}

static int rctx_done(rctx *x)
{
    free(x->tmp.data);
    free(x->phrase.data);
    free(x->local.data);
    free(x->domain.data);
    free(x->adl.data);
    free(x->comment.data);
    return x->o->err ? x->o->err : 0;
}

int imap_render_envelope(imap_out *o, const store_cache *c,
                         uint32_t env_index, bool utf8)
{
    if (env_index >= c->nenvelopes)
        return -ERANGE;
    if (env_index == 0) {
        store_str t = store_cache_envelope_text(c);
        if (t.p) {
            imap_out_add(o, t.p, t.len);
            return o->err ? o->err : 0;
        }
    }
    rctx x;
    rctx_init(&x, o, c, utf8);
    envelope(&x, env_index);
    return rctx_done(&x);
}

/* ------------------------------------------------------------------ */
/* Body structure                                                      */

static bool str_is(store_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.p && s.len == n && !memcmp(s.p, lit, n);
}

/* ("NAME" "value" ...) or NIL; disp selects Content-Disposition's. */
static void params(rctx *x, uint32_t idx, const store_part *p, int disp)
{
    uint32_t np = disp ? p->ndisp_params : p->nparams;
    if (!np) {
        if (!disp && str_is(p->type, "text"))
            add(x, "(\"CHARSET\" \"US-ASCII\")");
        else
            add(x, "NIL");
        return;
    }
    add(x, "(");
    for (uint32_t j = 0; j < np; j++) {
        store_str name, value;
        if (store_cache_param(x->c, idx, disp, j, &name, &value)) {
            name = (store_str){ "", 0 };
            value = name;
        }
        if (j)
            add(x, " ");
        put_upper(x, name.p, name.len);
        add(x, " ");
        put_string(x, value.p, value.len);
    }
    add(x, ")");
}

/* The Content-Transfer-Encoding token, without blanks, quotes or a
 * trailing comment (what mime_cte_parse reads). */
static void encoding(rctx *x, store_str e)
{
    size_t a = 0, n = e.p ? e.len : 0;
    while (a < n && (is_ws(e.p[a]) || e.p[a] == '"'))
        a++;
    size_t z = a;
    while (z < n && !is_ws(e.p[z]) && e.p[z] != '(' && e.p[z] != ';' &&
           e.p[z] != '"')
        z++;
    if (z == a)
        add(x, "\"7BIT\"");
    else
        put_upper(x, e.p + a, z - a);
}

/* Content-Language: one tag a string, several a list. */
static void language(rctx *x, store_str l)
{
    if (!l.p) {
        add(x, "NIL");
        return;
    }
    size_t ntags = 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t i = 0, k = 0;
        while (i < l.len) {
            size_t e = i;
            while (e < l.len && l.p[e] != ',')
                e++;
            size_t a = i, z = e;
            while (a < z && is_ws(l.p[a]))
                a++;
            while (z > a && is_ws(l.p[z - 1]))
                z--;
            if (z > a) {
                if (pass == 0) {
                    ntags++;
                } else {
                    if (ntags > 1)
                        add(x, k ? " " : "(");
                    put_string(x, l.p + a, z - a);
                    k++;
                }
            }
            i = e + 1;
        }
        if (pass == 0 && ntags == 0) {
            add(x, "NIL");
            return;
        }
    }
    if (ntags > 1)
        add(x, ")");
}

static void disposition(rctx *x, uint32_t idx, const store_part *p)
{
    if (!p->disposition.p) {
        add(x, "NIL");
        return;
    }
    add(x, "(");
    put_upper(x, p->disposition.p, p->disposition.len);
    add(x, " ");
    params(x, idx, p, 1);
    add(x, ")");
}

enum { K_LEAF, K_MULTIPART, K_MESSAGE };

static int kind(const rctx *x, const store_part *p)
{
    if (str_is(p->type, "multipart") && p->nchildren)
        return K_MULTIPART;
    if (str_is(p->type, "message") && p->nchildren == 1 && p->envelope >= 1 &&
        (str_is(p->subtype, "rfc822") ||
         (x->utf8 && str_is(p->subtype, "global"))))
        return K_MESSAGE;
    return K_LEAF;
}

static void body(rctx *x, uint32_t idx, bool ext)
{
    store_part p;
    if (store_cache_part(x->c, idx, &p)) {
        add(x, "(\"APPLICATION\" \"OCTET-STREAM\" NIL NIL NIL \"7BIT\" 0)");
        return;
    }
    int k = kind(x, &p);
    add(x, "(");
    if (k == K_MULTIPART) {
        /* The cache guarantees children come after their parent, so the
         * walk ends. */
        for (uint32_t ch = p.first_child; ch; ) {
            body(x, ch, ext);
            store_part cp;
            if (store_cache_part(x->c, ch, &cp) || cp.next_sibling <= ch)
                break;
            ch = cp.next_sibling;
        }
        add(x, " ");
        put_upper(x, p.subtype.p, p.subtype.len);
        if (ext) {
            add(x, " ");
            params(x, idx, &p, 0);
            add(x, " ");
            disposition(x, idx, &p);
            add(x, " ");
            language(x, p.language);
            add(x, " ");
            put_nstr(x, p.location);
        }
        add(x, ")");
        return;
    }
    put_upper(x, p.type.p, p.type.len);
    add(x, " ");
    put_upper(x, p.subtype.p, p.subtype.len);
    add(x, " ");
    params(x, idx, &p, 0);
    add(x, " ");
    put_nstr(x, p.id);
    add(x, " ");
    put_nstr(x, p.description);
    add(x, " ");
    encoding(x, p.encoding);
    imap_out_printf(x->o, " %llu", (unsigned long long)p.body_len);
    if (k == K_MESSAGE) {
        add(x, " ");
        envelope(x, (uint32_t)p.envelope);
        add(x, " ");
        if (p.first_child > idx)
            body(x, p.first_child, ext);
        else
            add(x, "NIL");
        imap_out_printf(x->o, " %u", p.lines);
    } else if (str_is(p.type, "text")) {
        imap_out_printf(x->o, " %u", p.lines);
    }
    if (ext) {
        add(x, " ");
        put_nstr(x, p.md5);
        add(x, " ");
        disposition(x, idx, &p);
        add(x, " ");
        language(x, p.language);
        add(x, " ");
        put_nstr(x, p.location);
    }
    add(x, ")");
}

int imap_render_address_text(imap_out *o, store_str value)
{
    rctx x;
    rctx_init(&x, o, NULL, true);
    x.plain = true;
    addr_list(&x, value);
    return rctx_done(&x);
}

int imap_first_address(store_str value, imap_address_parts *out)
{
    imap_out scratch = {0};     /* group names: not mailboxes */
    rctx x;
    rctx_init(&x, &scratch, NULL, true);
    x.plain = true;
    x.first = out;
    out->found = false;
    out->name.len = out->local.len = out->domain.len = 0;
    addr_list(&x, value);
    int rc = rctx_done(&x);
    imap_out_free(&scratch);
    if (!rc)
        rc = out->name.err ? out->name.err : out->local.err ? out->local.err : out->domain.err;
    return rc;
}

int imap_render_body(imap_out *o, const store_cache *c, bool extensible,
                     bool utf8)
{
    rctx x;
    rctx_init(&x, o, c, utf8);
    body(&x, 0, extensible);
    return rctx_done(&x);
}

int imap_envelope_prerender(const store_cache *c, store_buf *out)
{
    imap_out o = { 0 };
    rctx x;
    rctx_init(&x, &o, c, false);
    envelope(&x, 0);
    int rc = rctx_done(&x);
    if (!rc && store_buf_append(out, o.p, o.len))
        rc = -ENOMEM;
    imap_out_free(&o);
    return rc;
}
