/* core/fetch/fetch_section.c — BODY[...], BINARY[...] and BINARY.SIZE[...]:
 * parsing section specifications, echoing them, and extracting their bytes
 * (contract in core/fetch/fetch_render.h). */
#include "core/fetch/fetch_render.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/fetch/mime_decode.h"

/* ------------------------------------------------------------------ */
/* Parsing                                                             */

typedef struct sp {
    const char *s;
    size_t n, i;
} sp;

static bool at_ci(const sp *p, const char *lit)
{
    size_t k = strlen(lit);
    return p->n - p->i >= k && !strncasecmp(p->s + p->i, lit, k);
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* number64 (RFC 9051: at most 2^63 - 1). */
static int number64(sp *p, uint64_t *out)
{
    if (p->i >= p->n || !is_digit(p->s[p->i]))
        return -EINVAL;
    uint64_t v = 0;
    while (p->i < p->n && is_digit(p->s[p->i])) {
        unsigned d = (unsigned)(p->s[p->i++] - '0');
        if (v > ((uint64_t)INT64_MAX - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* nz-number: 1 .. 2^32 - 1, no leading zero. */
static int part_number(sp *p, uint32_t *out)
{
    if (p->i >= p->n || p->s[p->i] < '1' || p->s[p->i] > '9')
        return -EINVAL;
    uint64_t v = 0;
    while (p->i < p->n && is_digit(p->s[p->i])) {
        v = v * 10 + (unsigned)(p->s[p->i++] - '0');
        if (v > UINT32_MAX)
            return -EINVAL;
    }
    *out = (uint32_t)v;
    return 0;
}

/* ATOM-CHAR of RFC 9051, without ']' (which would end the section). */
static bool name_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '{' &&
           c != '%' && c != '*' && c != '"' && c != '\\' && c != ']';
}

static void skip_blanks(sp *p)
{
    while (p->i < p->n && p->s[p->i] == ' ')
        p->i++;
}

/* "(" astring *(SP astring) ")" into out->fields. */
static int header_list(sp *p, imap_section *out)
{
    store_buf names = { 0 };
    struct { size_t off, len; } *ix = NULL;
    size_t nix = 0, cap = 0;
    int r = -EINVAL;
    skip_blanks(p);
    if (p->i >= p->n || p->s[p->i] != '(')
        goto out;
    p->i++;
    for (;;) {
        skip_blanks(p);
        if (p->i >= p->n)
            goto out;
        if (p->s[p->i] == ')') {
            p->i++;
            break;
        }
        size_t off = names.len;
        if (p->s[p->i] == '"') {
            p->i++;
            for (;;) {
                if (p->i >= p->n)
                    goto out;
                char c = p->s[p->i++];
                if (c == '"')
                    break;
                if (c == '\r' || c == '\n' || c == 0)
                    goto out;
                if (c == '\\') {
                    if (p->i >= p->n || (p->s[p->i] != '"' && p->s[p->i] != '\\'))
                        goto out;
                    c = p->s[p->i++];
                }
                if (store_buf_append(&names, &c, 1)) {
                    r = -ENOMEM;
                    goto out;
                }
            }
        } else {
            size_t a = p->i;
            while (p->i < p->n && name_char((unsigned char)p->s[p->i]))
                p->i++;
            if (p->i == a)
                goto out;   /* a literal, ']' or junk */
            if (store_buf_append(&names, p->s + a, p->i - a)) {
                r = -ENOMEM;
                goto out;
            }
        }
        /* Names are separated by blanks: "(A B)", not "(A"B")". */
        if (p->i < p->n && p->s[p->i] != ' ' && p->s[p->i] != ')')
            goto out;
        if (nix == cap) {
            size_t nc = cap ? cap * 2 : 8;
            void *q = realloc(ix, nc * sizeof *ix);
            if (!q) {
                r = -ENOMEM;
                goto out;
            }
            ix = q;
            cap = nc;
        }
        ix[nix].off = off;
        ix[nix].len = names.len - off;
        nix++;
    }
    if (!nix)
        goto out;
    /* One allocation: the array, then the names. */
    out->fields = malloc(nix * sizeof *out->fields + names.len + 1);
    if (!out->fields) {
        r = -ENOMEM;
        goto out;
    }
    char *base = (char *)(out->fields + nix);
    if (names.len)
        memcpy(base, names.data, names.len);
    for (size_t k = 0; k < nix; k++) {
        out->fields[k].p = base + ix[k].off;
        out->fields[k].len = (uint32_t)ix[k].len;
    }
    out->nfields = nix;
    r = 0;
out:
    free(names.data);
    free(ix);
    return r;
}

/* Inside "[...]", up to and including ']'. */
static int section_spec(sp *p, imap_section *out)
{
    int r;
    bool dot = false;                   /* "1.2." : a keyword must follow */
    while (p->i < p->n && is_digit(p->s[p->i])) {
        uint32_t v;
        if ((r = part_number(p, &v)))
            return r;
        if (out->npath == IMAP_SECTION_MAX_PATH)
            return -E2BIG;
        out->path[out->npath++] = v;
        dot = p->i < p->n && p->s[p->i] == '.';
        if (!dot)
            break;
        p->i++;
    }
    if (out->npath && !dot && p->i < p->n && p->s[p->i] != ']')
        return -EINVAL;                 /* "1HEADER" */
    if (dot || (p->i < p->n && p->s[p->i] != ']')) {
        /* section-binary = "[" [section-part] "]" (RFC 3516 7, RFC 9051
         * 9): BINARY[HEADER] or BINARY[1.MIME] is BAD.  Dovecot answers
         * them as BODY[...]; the grammar has no such form. */
        if (out->item != IMAP_ITEM_BODY)
            return -EINVAL;
        if (at_ci(p, "HEADER.FIELDS.NOT")) {
            out->text = IMAP_SECTION_HEADER_FIELDS_NOT;
            p->i += 17;
        } else if (at_ci(p, "HEADER.FIELDS")) {
            out->text = IMAP_SECTION_HEADER_FIELDS;
            p->i += 13;
        } else if (at_ci(p, "HEADER")) {
            out->text = IMAP_SECTION_HEADER;
            p->i += 6;
        } else if (at_ci(p, "TEXT")) {
            out->text = IMAP_SECTION_TEXT;
            p->i += 4;
        } else if (at_ci(p, "MIME") && out->npath) {
            out->text = IMAP_SECTION_MIME;
            p->i += 4;
        } else {
            return -EINVAL;
        }
        if (out->text == IMAP_SECTION_HEADER_FIELDS ||
            out->text == IMAP_SECTION_HEADER_FIELDS_NOT) {
            if (p->i >= p->n || p->s[p->i] != ' ')
                return -EINVAL;
            if ((r = header_list(p, out)))
                return r;
            skip_blanks(p);
        }
    }
    if (p->i >= p->n || p->s[p->i] != ']')
        return -EINVAL;
    p->i++;
    return 0;
}

int imap_section_parse(const char *s, size_t len, imap_section *out)
{
    memset(out, 0, sizeof *out);
    sp p = { s, len, 0 };
    static const struct {
        const char *name;
        imap_fetch_item item;
        imap_section_legacy legacy;
        imap_section_text text;
        bool peek;
    } names[] = {
        { "BINARY.PEEK[", IMAP_ITEM_BINARY, 0, 0, true },
        { "BINARY.SIZE[", IMAP_ITEM_BINARY_SIZE, 0, 0, true },
        { "BINARY[", IMAP_ITEM_BINARY, 0, 0, false },
        { "BODY.PEEK[", IMAP_ITEM_BODY, 0, 0, true },
        { "BODY[", IMAP_ITEM_BODY, 0, 0, false },
    };
    static const struct {
        const char *name;
        imap_section_legacy legacy;
        imap_section_text text;
        bool peek;
    } legacy[] = {
        { "RFC822", IMAP_LEGACY_RFC822, IMAP_SECTION_CONTENT, false },
        { "RFC822.HEADER", IMAP_LEGACY_RFC822_HEADER, IMAP_SECTION_HEADER, true },
        { "RFC822.TEXT", IMAP_LEGACY_RFC822_TEXT, IMAP_SECTION_TEXT, false },
    };
    for (size_t k = 0; k < sizeof legacy / sizeof legacy[0]; k++)
        if (len == strlen(legacy[k].name) &&
            !strncasecmp(s, legacy[k].name, len)) {
            out->legacy = legacy[k].legacy;
            out->text = legacy[k].text;
            out->peek = legacy[k].peek;
            return 0;
        }
    size_t k;
    for (k = 0; k < sizeof names / sizeof names[0]; k++)
        if (at_ci(&p, names[k].name))
            break;
    if (k == sizeof names / sizeof names[0])
        return -EINVAL;
    out->item = names[k].item;
    out->peek = names[k].peek;
    p.i += strlen(names[k].name);
    int r = section_spec(&p, out);
    if (!r && p.i < p.n) {
        /* "<" number64 "." nz-number64 ">" */
        if (out->item == IMAP_ITEM_BINARY_SIZE || p.s[p.i] != '<') {
            r = -EINVAL;
        } else {
            p.i++;
            r = number64(&p, &out->origin);
            if (!r && (p.i >= p.n || p.s[p.i] != '.'))
                r = -EINVAL;
            if (!r) {
                p.i++;
                r = number64(&p, &out->count);
            }
            if (!r && (out->count == 0 || p.i + 1 != p.n || p.s[p.i] != '>'))
                r = -EINVAL;
            out->partial = r == 0;
        }
    }
    if (r)
        imap_section_free(out);
    return r;
}

void imap_section_free(imap_section *s)
{
    free(s->fields);
    s->fields = NULL;
    s->nfields = 0;
}

/* ------------------------------------------------------------------ */
/* Echo                                                                */

void imap_section_echo(imap_out *o, const imap_section *s)
{
    static const char *const legacy[] = {
        [IMAP_LEGACY_RFC822] = "RFC822",
        [IMAP_LEGACY_RFC822_HEADER] = "RFC822.HEADER",
        [IMAP_LEGACY_RFC822_TEXT] = "RFC822.TEXT",
    };
    if (s->legacy) {
        imap_out_printf(o, "%s", legacy[s->legacy]);
        return;
    }
    static const char *const item[] = {
        [IMAP_ITEM_BODY] = "BODY[", [IMAP_ITEM_BINARY] = "BINARY[",
        [IMAP_ITEM_BINARY_SIZE] = "BINARY.SIZE[",
    };
    static const char *const text[] = {
        [IMAP_SECTION_CONTENT] = "", [IMAP_SECTION_HEADER] = "HEADER",
        [IMAP_SECTION_HEADER_FIELDS] = "HEADER.FIELDS",
        [IMAP_SECTION_HEADER_FIELDS_NOT] = "HEADER.FIELDS.NOT",
        [IMAP_SECTION_TEXT] = "TEXT", [IMAP_SECTION_MIME] = "MIME",
    };
    imap_out_printf(o, "%s", item[s->item]);
    for (size_t i = 0; i < s->npath; i++)
        imap_out_printf(o, i ? ".%u" : "%u", s->path[i]);
    if (s->text != IMAP_SECTION_CONTENT)
        imap_out_printf(o, "%s%s", s->npath ? "." : "", text[s->text]);
    if (s->nfields) {
        imap_out_add(o, " (", 2);
        for (size_t k = 0; k < s->nfields; k++) {
            store_str f = s->fields[k];
            bool atom = f.len > 0;
            for (uint32_t j = 0; j < f.len && atom; j++)
                atom = name_char((unsigned char)f.p[j]);
            if (k)
                imap_out_add(o, " ", 1);
            if (atom)
                imap_out_add(o, f.p, f.len);
            else
                imap_out_string(o, f.p, f.len, false);
        }
        imap_out_add(o, ")", 1);
    }
    imap_out_add(o, "]", 1);
    if (s->partial)
        imap_out_printf(o, "<%llu>", (unsigned long long)s->origin);
}

/* ------------------------------------------------------------------ */
/* Extraction                                                          */

static bool str_is(store_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.p && s.len == n && !memcmp(s.p, lit, n);
}

static bool is_message(const store_part *p)
{
    return str_is(p->type, "message") && p->nchildren == 1 &&
           (str_is(p->subtype, "rfc822") || str_is(p->subtype, "global"));
}

static bool is_leaf(const store_part *p)
{
    return !p->nchildren && !str_is(p->type, "multipart");
}

typedef struct src {
    uint64_t off, len;
    bool leaf;                  /* BINARY of a part: decode p */
    store_part p;
} src;

static int resolve(const imap_section *s, const store_cache *c, src *r)
{
    memset(r, 0, sizeof *r);
    uint32_t idx = 0;
    if (s->npath) {
        int f = store_cache_find(c, s->path, s->npath);
        if (f < 0)
            return -ENOENT;
        idx = (uint32_t)f;
    }
    store_part p;
    if (store_cache_part(c, idx, &p))
        return -ENOENT;
    imap_section_text text = s->text;
    if (s->item != IMAP_ITEM_BODY) {
        if (!s->npath) {                /* BINARY[]: the message as is */
            r->len = p.body_off + p.body_len;
            return 0;
        }
        /* RFC 9051 6.4.5 allows BINARY only for leaf body parts, naming
         * multipart, message/rfc822 and message/global as not leaves; RFC
         * 3516, which defines BINARY, has no such rule.  An embedded message has no encoding to undo
         * (RFC 2046 5.2.1: "No encoding other than "7bit", "8bit", or
         * "binary" is permitted for the body of a "message/rfc822"
         * entity"), so, as Dovecot does, we answer BINARY[n] of one with
         * its bytes as they are (BODY[n]) instead of failing the FETCH.  A
         * multipart still fails: its body is boundaries and headers, not
         * content. */
        if (is_message(&p)) {
            r->off = p.body_off;
            r->len = p.body_len;
            return 0;
        }
        if (!is_leaf(&p))
            return -EINVAL;
        r->off = p.body_off;
        r->len = p.body_len;
        r->leaf = true;
        r->p = p;
        return 0;
    }
    switch (text) {
    case IMAP_SECTION_CONTENT:
        if (!s->npath) {
            r->len = p.body_off + p.body_len;
        } else {
            r->off = p.body_off;
            r->len = p.body_len;
        }
        return 0;
    case IMAP_SECTION_MIME:
        r->off = p.hdr_off;
        r->len = p.hdr_len;
        return 0;
    default:
        break;
    }
    if (s->npath) {
        /* HEADER/TEXT after a part number: the embedded message's. */
        if (!is_message(&p) || p.first_child <= idx ||
            store_cache_part(c, p.first_child, &p))
            return -EINVAL;
    }
    if (text == IMAP_SECTION_TEXT) {
        r->off = p.body_off;
        r->len = p.body_len;
    } else {
        r->off = p.hdr_off;
        r->len = p.hdr_len;
    }
    return 0;
}

int imap_section_range(const imap_section *s, const store_cache *c,
                       uint64_t *off, uint64_t *len)
{
    src r;
    int e = resolve(s, c, &r);
    if (e)
        return e;
    *off = r.off;
    *len = r.len;
    return 0;
}

static bool name_in(const imap_section *s, const char *name, size_t n)
{
    for (size_t k = 0; k < s->nfields; k++)
        if (s->fields[k].len == n && !strncasecmp(s->fields[k].p, name, n))
            return true;
    return false;
}

/* HEADER.FIELDS[.NOT]: the (non-)matching fields of header h, each with its
 * continuation lines, in order, then the blank line if there is one.  Lines
 * that are not fields (no colon) are in neither subset. */
static int header_fields(const imap_section *s, const char *h, size_t n,
                         store_buf *out)
{
    bool want = s->text == IMAP_SECTION_HEADER_FIELDS;
    size_t pos = 0;
    while (pos < n) {
        if (h[pos] == '\n')
            return store_buf_append(out, "\n", 1);
        if (h[pos] == '\r' && pos + 1 < n && h[pos + 1] == '\n')
            return store_buf_append(out, "\r\n", 2);
        const char *nl = memchr(h + pos, '\n', n - pos);
        size_t first = nl ? (size_t)(nl - h) + 1 : n, e = first;
        while (e < n && (h[e] == ' ' || h[e] == '\t')) {
            nl = memchr(h + e, '\n', n - e);
            e = nl ? (size_t)(nl - h) + 1 : n;
        }
        const char *colon = memchr(h + pos, ':', first - pos);
        if (colon) {
            size_t ne = (size_t)(colon - h);
            while (ne > pos && (h[ne - 1] == ' ' || h[ne - 1] == '\t'))
                ne--;
            if (name_in(s, h + pos, ne - pos) == want &&
                store_buf_append(out, h + pos, e - pos))
                return -ENOMEM;
        }
        pos = e;
    }
    return 0;
}

/* Is there a LF without a CR before it? */
static bool bare_lf(const char *p, size_t n)
{
    const char *q = p, *e = p + n;
    while ((q = memchr(q, '\n', (size_t)(e - q)))) {
        if (q == p || q[-1] != '\r')
            return true;
        q++;
    }
    return false;
}

int imap_section_fetch(const imap_section *s, const store_cache *c,
                       const char *msg, size_t msglen,
                       imap_section_data *out)
{
    memset(out, 0, sizeof *out);
    src r;
    int e = resolve(s, c, &r);
    if (e)
        return e;
    /* Clip to the bytes we were given. */
    uint64_t off = r.off < msglen ? r.off : msglen;
    uint64_t len = r.len < msglen - off ? r.len : msglen - off;
    const char *p = msg + off;

    if (s->text == IMAP_SECTION_HEADER_FIELDS ||
        s->text == IMAP_SECTION_HEADER_FIELDS_NOT) {
        if ((e = header_fields(s, p, (size_t)len, &out->buf)))
            goto fail;
        p = (const char *)out->buf.data;
        len = out->buf.len;
    } else if (r.leaf) {
        mime_cte cte = mime_cte_parse(r.p.encoding);
        bool text = str_is(r.p.type, "text");
        bool ident = cte == MIME_CTE_7BIT || cte == MIME_CTE_8BIT ||
                     cte == MIME_CTE_BINARY;
        if (cte == MIME_CTE_UNKNOWN) {
            e = -ENOTSUP;
            goto fail;
        }
        /* RFC 9051 6.4.5: "servers MUST ensure that textual line-oriented
         * sections are always transmitted using the IMAP CRLF line
         * termination syntax": a text part's bare LF goes out as CRLF,
         * also after base64 (BINARY.SIZE counts the CR).  Dovecot 2.3
         * sends decoded base64 text as it is, one octet shorter per bare
         * LF; we follow the RFC. */
        if (!ident || (text && bare_lf(p, (size_t)len))) {
            store_buf *b = s->item == IMAP_ITEM_BINARY ? &out->buf : NULL;
            uint64_t size;
            if ((e = mime_decode_binary(r.p.encoding, p, (size_t)len, text, b,
                                        &size)))
                goto fail;
            p = b ? (const char *)b->data : NULL;
            len = size;
        }
    }
    out->size = len;
    if (s->item == IMAP_ITEM_BINARY_SIZE) {
        out->p = NULL;
        out->len = 0;
        return 0;
    }
    if (s->partial) {
        uint64_t o = s->origin < len ? s->origin : len;
        uint64_t n = len - o < s->count ? len - o : s->count;
        p = p ? p + o : p;
        len = n;
    }
    out->p = p ? p : "";
    out->len = (size_t)len;
    /* RFC 3516 4.3: without a NUL "the server SHOULD return the data in a
     * <string> instead of a <literal8>" (Dovecot always sends literal8). */
    if (s->item == IMAP_ITEM_BINARY)
        out->nul = out->len && memchr(out->p, 0, out->len);
    return 0;
fail:
    free(out->buf.data);
    memset(out, 0, sizeof *out);
    return e;
}

void imap_section_data_free(imap_section_data *d)
{
    free(d->buf.data);
    memset(d, 0, sizeof *d);
}
