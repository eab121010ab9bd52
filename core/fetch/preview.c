/* core/fetch/preview.c — the text of FETCH PREVIEW (RFC 8970; contract in
 * core/fetch/preview.h).
 *
 * RFC 8970 leaves the algorithm to the server ("The server SHOULD remove any
 * formatting markup and do whatever processing might be useful in
 * rendering the preview as plain text", 3.3).  Choices:
 *   - The text is the message's own: parts of an embedded message/rfc822
 *     (a forwarded message) and parts with Content-Disposition attachment
 *     are not read.
 *   - Quoted lines ("> ...") and signatures are kept: the RFC asks nothing
 *     about them.  Dovecot 2.3 drops lines starting with '>' (its
 *     message-snippet.c); we differ, the preview being "a contextual
 *     preview of the entire message" (3.2) and a reply's quote being part
 *     of it.
 *   - Every run of white space (Unicode White_Space and control
 *     characters) becomes one space, none at either end; zero-width
 *     characters with no text of their own (U+200B, U+FEFF, soft hyphen)
 *     are dropped.  Dovecot 2.3 keeps NBSP, U+200B and control characters
 *     as they are; we render "as plain text" (3.3: "do whatever processing
 *     might be useful in rendering the preview as plain text"), where they
 *     show as nothing or as a space.
 *   - The cut is at IMAP_PREVIEW_CHARS code points, a "preview character"
 *     being "a single Universal Character Set (UCS) character encoded in
 *     UTF-8" (3.3), so never inside a character's bytes.
 *   - HTML: tags and comments are dropped (block-level tags count as white
 *     space, inline ones as nothing, so "a<b>b</b>" stays one word), the
 *     contents of <script>, <style> and <title> are dropped, character
 *     references (&amp; &#233; &#xE9; and common names) are decoded; an
 *     unknown one is kept as written. */
#include "core/fetch/preview.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/fetch/mime_decode.h"
#include "store/utf8.h"

static _Atomic uint64_t runs;

uint64_t imap_preview_runs(void)
{
    return atomic_load_explicit(&runs, memory_order_relaxed);
}

/* ---- white space and the cut ------------------------------------------ */

/* The characters a run of white space is made of: Unicode White_Space, and
 * the controls (which must not reach the client). */
static bool is_space(uint32_t cp)
{
    return cp <= 0x20 || (cp >= 0x7f && cp <= 0xa0) || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

/* Invisible characters that are dropped outright. */
static bool is_dropped(uint32_t cp)
{
    return cp == 0xad || cp == 0x200b || cp == 0xfeff;
}

/* The writer of the final text: collapses white space, counts characters
 * and stops at IMAP_PREVIEW_CHARS. */
typedef struct pw {
    store_buf *out;
    size_t start;
    unsigned chars;
    bool space;         /* a space is pending (only written before text) */
    int err;
} pw;

static bool pw_full(const pw *w)
{
    return w->chars >= IMAP_PREVIEW_CHARS || w->err;
}

static void pw_put(pw *w, uint32_t cp)
{
    if (pw_full(w) || is_dropped(cp))
        return;
    if (is_space(cp)) {
        w->space = w->out->len > w->start;
        return;
    }
    uint8_t b[8];
    size_t n = 0;
    if (w->space) {
        if (w->chars + 1 >= IMAP_PREVIEW_CHARS) {
            w->chars = IMAP_PREVIEW_CHARS;  /* no trailing space */
            return;
        }
        b[n++] = ' ';
        w->chars++;
        w->space = false;
    }
    n += store_utf8_encode(cp, b + n);
    w->chars++;
    if (store_buf_append(w->out, b, n) < 0)
        w->err = -ENOMEM;
}

/* Feed UTF-8 (valid: mime_to_utf8's output, or what we made) to w. */
static void pw_text(pw *w, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && !pw_full(w)) {
        uint32_t cp;
        size_t k = store_utf8_decode(s + i, n - i, &cp);
        if (k == 0) {
            cp = 0xfffd;
            k = 1;
        }
        pw_put(w, cp);
        i += k;
    }
}

int imap_preview_plain(const char *s, size_t n, store_buf *out)
{
    pw w = { .out = out, .start = out->len };
    pw_text(&w, s, n);
    if (w.err)
        out->len = w.start;
    return w.err;
}

static void html_to(pw *w, const char *s, size_t n);

/* ---- HTML -------------------------------------------------------------- */

static bool name_is(const char *p, size_t n, const char *lit)
{
    return strlen(lit) == n && !strncasecmp(p, lit, n);
}

/* Tags that break the text (block level, line breaks, cells). */
static bool is_block(const char *p, size_t n)
{
    static const char *const block[] = {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4",
        "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section",
        "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul", "body", "html",
        "img", "option", "select", "textarea", "button", "center",
    };
    for (size_t i = 0; i < sizeof block / sizeof *block; i++)
        if (name_is(p, n, block[i]))
            return true;
    return false;
}

/* Find lit (lowercase ASCII) case-insensitively in s[i..n); n if absent. */
static size_t find_ci(const char *s, size_t i, size_t n, const char *lit)
{
    size_t m = strlen(lit);
    /* lit starts with punctuation ('<', '-', '>'): memchr finds candidates */
    while (i + m <= n) {
        const char *p = memchr(s + i, lit[0], n - m + 1 - i);
        if (!p)
            break;
        i = (size_t)(p - s);
        if (!strncasecmp(p, lit, m))
            return i;
        i++;
    }
    return n;
}

/* A character reference at s[i] == '&': its code point and length, or 0. */
static size_t entity(const char *s, size_t i, size_t n, uint32_t *cp)
{
    /* the XML five, Latin-1's (HTML 4, U+00A0 to U+00FF) and punctuation */
    static const struct { const char *name; uint32_t cp; } named[] = {
        {"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''},
        {"nbsp", 0xa0}, {"iexcl", 0xa1}, {"cent", 0xa2}, {"pound", 0xa3}, {"curren", 0xa4},
        {"yen", 0xa5}, {"brvbar", 0xa6}, {"sect", 0xa7}, {"uml", 0xa8}, {"copy", 0xa9},
        {"ordf", 0xaa}, {"laquo", 0xab}, {"not", 0xac}, {"shy", 0xad}, {"reg", 0xae},
        {"macr", 0xaf}, {"deg", 0xb0}, {"plusmn", 0xb1}, {"sup2", 0xb2}, {"sup3", 0xb3},
        {"acute", 0xb4}, {"micro", 0xb5}, {"para", 0xb6}, {"middot", 0xb7},
        {"cedil", 0xb8}, {"sup1", 0xb9}, {"ordm", 0xba}, {"raquo", 0xbb}, {"frac14", 0xbc},
        {"frac12", 0xbd}, {"frac34", 0xbe}, {"iquest", 0xbf}, {"Agrave", 0xc0},
        {"Aacute", 0xc1}, {"Acirc", 0xc2}, {"Atilde", 0xc3}, {"Auml", 0xc4},
        {"Aring", 0xc5}, {"AElig", 0xc6}, {"Ccedil", 0xc7}, {"Egrave", 0xc8},
        {"Eacute", 0xc9}, {"Ecirc", 0xca}, {"Euml", 0xcb}, {"Igrave", 0xcc},
        {"Iacute", 0xcd}, {"Icirc", 0xce}, {"Iuml", 0xcf}, {"ETH", 0xd0}, {"Ntilde", 0xd1},
        {"Ograve", 0xd2}, {"Oacute", 0xd3}, {"Ocirc", 0xd4}, {"Otilde", 0xd5},
        {"Ouml", 0xd6}, {"times", 0xd7}, {"Oslash", 0xd8}, {"Ugrave", 0xd9},
        {"Uacute", 0xda}, {"Ucirc", 0xdb}, {"Uuml", 0xdc}, {"Yacute", 0xdd},
        {"THORN", 0xde}, {"szlig", 0xdf}, {"agrave", 0xe0}, {"aacute", 0xe1},
        {"acirc", 0xe2}, {"atilde", 0xe3}, {"auml", 0xe4}, {"aring", 0xe5},
        {"aelig", 0xe6}, {"ccedil", 0xe7}, {"egrave", 0xe8}, {"eacute", 0xe9},
        {"ecirc", 0xea}, {"euml", 0xeb}, {"igrave", 0xec}, {"iacute", 0xed},
        {"icirc", 0xee}, {"iuml", 0xef}, {"eth", 0xf0}, {"ntilde", 0xf1}, {"ograve", 0xf2},
        {"oacute", 0xf3}, {"ocirc", 0xf4}, {"otilde", 0xf5}, {"ouml", 0xf6},
        {"divide", 0xf7}, {"oslash", 0xf8}, {"ugrave", 0xf9}, {"uacute", 0xfa},
        {"ucirc", 0xfb}, {"uuml", 0xfc}, {"yacute", 0xfd}, {"thorn", 0xfe}, {"yuml", 0xff},
        {"trade", 0x2122}, {"hellip", 0x2026}, {"mdash", 0x2014}, {"ndash", 0x2013},
        {"lsquo", 0x2018}, {"rsquo", 0x2019}, {"ldquo", 0x201c}, {"rdquo", 0x201d},
        {"sbquo", 0x201a}, {"bdquo", 0x201e}, {"euro", 0x20ac}, {"bull", 0x2022},
        {"zwnj", 0x200c}, {"zwj", 0x200d}, {"ensp", 0x2002}, {"emsp", 0x2003},
        {"thinsp", 0x2009}, {"dagger", 0x2020}, {"permil", 0x2030}, {"oelig", 0x153},
        {"OElig", 0x152}, {"scaron", 0x161}, {"Scaron", 0x160},
    };
    size_t j = i + 1;
    if (j < n && s[j] == '#') {
        j++;
        bool hex = j < n && (s[j] == 'x' || s[j] == 'X');
        j += hex;
        uint32_t v = 0;
        size_t digits = 0;
        for (; j < n && digits < 8; j++, digits++) {
            int d;
            if (s[j] >= '0' && s[j] <= '9')
                d = s[j] - '0';
            else if (hex && (s[j] | 0x20) >= 'a' && (s[j] | 0x20) <= 'f')
                d = (s[j] | 0x20) - 'a' + 10;
            else
                break;
            v = v * (hex ? 16 : 10) + (uint32_t)d;
        }
        if (!digits)
            return 0;
        if (j < n && s[j] == ';')
            j++;
        /* HTML: NUL, surrogates and values past Unicode are U+FFFD */
        *cp = v == 0 || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff) ? 0xfffd : v;
        return j - i;
    }
    size_t k = j;
    while (k < n && k - j < 8 && (((s[k] | 0x20) >= 'a' && (s[k] | 0x20) <= 'z') ||
                                  (k > j && s[k] >= '0' && s[k] <= '9')))
        k++;
    if (k >= n || s[k] != ';')
        return 0;
    for (size_t e = 0; e < sizeof named / sizeof *named; e++)
        if (strlen(named[e].name) == k - j && !memcmp(s + j, named[e].name, k - j)) {
            *cp = named[e].cp;
            return k + 1 - i;
        }
    return 0;
}

static void html_to(pw *w, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && !pw_full(w)) {
        char ch = s[i];
        if (ch == '&') {
            uint32_t cp;
            size_t k = entity(s, i, n, &cp);
            if (k) {
                pw_put(w, cp);
                i += k;
                continue;
            }
        }
        if (ch != '<') {
            size_t j = i + 1;
            while (j < n && s[j] != '<' && s[j] != '&')
                j++;
            pw_text(w, s + i, j - i);
            i = j;
            continue;
        }
        if (i + 4 <= n && !memcmp(s + i, "<!--", 4)) {
            size_t e = find_ci(s, i + 4, n, "-->");
            i = e < n ? e + 3 : n;
            continue;
        }
        size_t j = i + 1;
        bool close = j < n && s[j] == '/';
        j += close;
        if (j >= n || !(((s[j] | 0x20) >= 'a' && (s[j] | 0x20) <= 'z') || s[j] == '!' ||
                        s[j] == '?')) {
            pw_put(w, '<');         /* not a tag: a literal '<' */
            i++;
            continue;
        }
        size_t name = j;
        while (j < n && s[j] != '>' && s[j] != '/' && !is_space((unsigned char)s[j]))
            j++;
        size_t namelen = j - name;
        /* to the tag's end, past quoted attribute values */
        char q = 0;
        for (; j < n; j++) {
            if (q) {
                if (s[j] == q)
                    q = 0;
            } else if (s[j] == '"' || s[j] == '\'') {
                q = s[j];
            } else if (s[j] == '>') {
                break;
            }
        }
        i = j < n ? j + 1 : n;
        const char *nm = s + name;
        if (!close && (name_is(nm, namelen, "script") || name_is(nm, namelen, "style") ||
                       name_is(nm, namelen, "title"))) {
            char end[16] = "</";
            memcpy(end + 2, nm, namelen);
            end[2 + namelen] = 0;
            size_t e = find_ci(s, i, n, end);
            size_t gt = e < n ? find_ci(s, e, n, ">") : n;
            i = gt < n ? gt + 1 : n;
            continue;
        }
        if (is_block(nm, namelen))
            pw_put(w, ' ');
    }
}

int imap_preview_html(const char *s, size_t n, store_buf *out)
{
    pw w = { .out = out, .start = out->len };
    html_to(&w, s, n);
    if (w.err)
        out->len = w.start;
    return w.err;
}

/* ---- choosing the part --------------------------------------------------- */

static bool str_eq(store_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.p && s.len == n && !strncasecmp(s.p, lit, n);
}

/* Is part i inside an embedded message (a message/rfc822 ancestor)?  The
 * validator bounds the depth, so this walk is short. */
static bool in_message(const store_cache *c, uint32_t i)
{
    store_part p;
    while (i != 0 && store_cache_part(c, i, &p) == 0) {
        i = p.parent;
        store_part a;
        if (store_cache_part(c, i, &a) == 0 && a.envelope >= 1)
            return true;
    }
    return false;
}

/* 1: text/plain, 2: text/html, 0: another kind, an attachment, a
 * container, or inside an embedded message. */
static int text_kind(const store_cache *c, uint32_t i, store_part *p)
{
    if (store_cache_part(c, i, p) < 0 || p->nchildren || !str_eq(p->type, "text") ||
        str_eq(p->disposition, "attachment") || in_message(c, i))
        return 0;
    return str_eq(p->subtype, "plain") ? 1 : str_eq(p->subtype, "html") ? 2 : 0;
}

/* Is part i part a (or a itself)? */
static bool under(const store_cache *c, uint32_t i, uint32_t a)
{
    store_part p;
    while (i != a && i != 0 && store_cache_part(c, i, &p) == 0)
        i = p.parent;
    return i == a;
}

static int pick(const store_cache *c)
{
    store_part p;
    for (uint32_t i = 0; i < c->nparts; i++) {
        int k = text_kind(c, i, &p);
        if (k == 1)
            return (int)i;
        if (k != 2)
            continue;
        /* HTML first: a text/plain alternative to it is taken instead (RFC
         * 2046 5.1.4: the alternatives are the same content) */
        uint32_t a = i;
        bool alt = false;
        while (a != 0 && !alt) {
            store_part ap;
            if (store_cache_part(c, a, &ap) < 0 || store_cache_part(c, ap.parent, &p) < 0)
                break;
            a = ap.parent;
            alt = str_eq(p.type, "multipart") && str_eq(p.subtype, "alternative");
        }
        for (uint32_t j = a + 1; alt && j < c->nparts && under(c, j, a); j++)
            if (text_kind(c, j, &p) == 1)
                return (int)j;
        return (int)i;
    }
    return -1;
}

int imap_preview(const store_cache *c, const char *msg, size_t msglen, store_buf *out)
{
    atomic_fetch_add_explicit(&runs, 1, memory_order_relaxed);
    int i = pick(c);
    if (i < 0)
        return 0;
    store_part p;
    int kind = text_kind(c, (uint32_t)i, &p);
    uint64_t off = p.body_off, len = p.body_len;
    if (off > msglen)
        off = msglen;
    if (len > msglen - off)
        len = msglen - off;
    uint64_t max = kind == 2 ? IMAP_PREVIEW_HTML_MAX : IMAP_PREVIEW_PLAIN_MAX;
    if (len > max)
        len = max;
    store_str charset = { NULL, 0 };
    for (uint32_t j = 0; j < p.nparams; j++) {
        store_str name, value;
        if (!store_cache_param(c, (uint32_t)i, 0, j, &name, &value) && str_eq(name, "charset")) {
            charset = value;
            break;
        }
    }
    /* 200 characters rarely need more than the first 2 KiB: decode that,
     * and only if it does not fill the preview take 4 times as much, up to
     * the bound (at most 4/3 of the bound's work in all) */
    store_buf dec = { 0 }, utf = { 0 };
    size_t start = out->len;
    int r = 0;
    for (uint64_t lim = 2048;; lim *= 4) {
        uint64_t take = lim < len ? lim : len;
        dec.len = utf.len = 0;
        out->len = start;
        r = mime_decode_transfer(p.encoding, msg + off, (size_t)take, &dec);
        if (r == -ENOTSUP) {
            r = 0;      /* an encoding we cannot undo: no text to show */
            break;
        }
        if (r < 0 || (r = mime_to_utf8(charset, dec.data ? (const char *)dec.data : "",
                                       dec.len, &utf)) < 0)
            break;
        /* a character cut by the prefix is not shown as U+FFFD */
        if (take < (uint64_t)p.body_len && utf.len >= 3 &&
            !memcmp(utf.data + utf.len - 3, "\xef\xbf\xbd", 3))
            utf.len -= 3;
        pw w = { .out = out, .start = start };
        const char *t = utf.data ? (const char *)utf.data : "";
        if (kind == 2)
            html_to(&w, t, utf.len);
        else
            pw_text(&w, t, utf.len);
        if ((r = w.err) < 0 || pw_full(&w) || take == len)
            break;
    }
    if (r < 0)
        out->len = start;
    free(dec.data);
    free(utf.data);
    return r;
}
