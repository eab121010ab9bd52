/* core/fetch/mime_decode.c — transfer encodings, charsets and RFC 2047 encoded
 * words (contract in core/fetch/mime_decode.h). */
#include "core/fetch/mime_decode.h"
#include "store/utf8.h"

#include <errno.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ */
/* Output: a small staging buffer in front of a store_buf, so decoders can
 * write a byte at a time cheaply.  With b == NULL only the size is counted
 * (BINARY.SIZE).  With crlf, a LF not preceded by CR gets one (RFC 3516
 * section 6: textual sections go out with CRLF line ends). */

typedef struct sink {
    store_buf *b;
    uint64_t n;             /* bytes produced */
    bool crlf, prev_cr;
    int err;
    size_t fill;
    uint8_t stage[4096];
} sink;

static void sink_init(sink *s, store_buf *b, bool crlf)
{
    s->b = b;
    s->n = 0;
    s->crlf = crlf;
    s->prev_cr = false;
    s->err = 0;
    s->fill = 0;
}

static void sink_raw(sink *s, const void *p, size_t n)
{
    s->n += n;
    if (s->b && !s->err && store_buf_append(s->b, p, n))
        s->err = -ENOMEM;
}

/* Write through the CRLF rule. */
static void sink_write(sink *s, const uint8_t *p, size_t n)
{
    if (!n)
        return;
    if (!s->crlf) {
        sink_raw(s, p, n);
        return;
    }
    while (n) {
        const uint8_t *lf = memchr(p, '\n', n);
        if (!lf) {
            sink_raw(s, p, n);
            s->prev_cr = p[n - 1] == '\r';
            return;
        }
        size_t run = (size_t)(lf - p);
        bool has_cr = run ? p[run - 1] == '\r' : s->prev_cr;
        sink_raw(s, p, run);
        sink_raw(s, has_cr ? "\n" : "\r\n", has_cr ? 1 : 2);
        s->prev_cr = false;
        p += run + 1;
        n -= run + 1;
    }
}

static void sink_flush(sink *s)
{
    if (s->fill) {
        sink_write(s, s->stage, s->fill);
        s->fill = 0;
    }
}

static inline void sink_byte(sink *s, uint8_t c)
{
    if (s->fill == sizeof s->stage)
        sink_flush(s);
    s->stage[s->fill++] = c;
}

static void sink_bytes(sink *s, const void *p, size_t n)
{
    if (n > sizeof s->stage - s->fill) {
        sink_flush(s);
        sink_write(s, p, n);
        return;
    }
    memcpy(s->stage + s->fill, p, n);
    s->fill += n;
}

/* ------------------------------------------------------------------ */
/* Transfer encodings                                                  */

static const int8_t b64_val[256] = {
#define X -1
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, 62, X, X, X, 63,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, X, X, X, X, X, X,
    X, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, X, X, X, X, X,
    X, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
#undef X
};

/* Emit the 2 or 3 sextets of an unfinished quantum (1 or 2 bytes). */
static void b64_tail(sink *s, uint32_t acc, int k)
{
    if (k == 2) {
        sink_byte(s, (uint8_t)(acc >> 4));
    } else if (k == 3) {
        sink_byte(s, (uint8_t)(acc >> 10));
        sink_byte(s, (uint8_t)(acc >> 2));
    }
}

static void b64_decode(sink *s, const uint8_t *p, size_t n)
{
    uint32_t acc = 0;
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_val[p[i]];
        if (v < 0) {
            if (p[i] == '=' && k) {
                b64_tail(s, acc, k);
                acc = 0;
                k = 0;
            }
            continue;
        }
        acc = acc << 6 | (uint32_t)v;
        if (++k == 4) {
            sink_byte(s, (uint8_t)(acc >> 16));
            sink_byte(s, (uint8_t)(acc >> 8));
            sink_byte(s, (uint8_t)acc);
            acc = 0;
            k = 0;
        }
    }
    b64_tail(s, acc, k);
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static void qp_decode(sink *s, const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        const uint8_t *nl = memchr(p + i, '\n', n - i);
        size_t eol = nl ? (size_t)(nl - p) : n;     /* the LF, or n */
        bool cr = nl && eol > i && p[eol - 1] == '\r';
        size_t end = cr ? eol - 1 : eol;
        /* Trailing blanks are transport padding (RFC 2045 6.7 (3)). */
        while (end > i && (p[end - 1] == ' ' || p[end - 1] == '\t'))
            end--;
        /* A final '=' cannot end an escape (no hex digit is '='). */
        bool soft = end > i && p[end - 1] == '=';
        if (soft)
            end--;
        for (size_t j = i; j < end; j++) {
            int h, l;
            if (p[j] == '=' && end - j >= 3 && (h = hexval(p[j + 1])) >= 0 &&
                (l = hexval(p[j + 2])) >= 0) {
                sink_byte(s, (uint8_t)(h << 4 | l));
                j += 2;
            } else {
                sink_byte(s, p[j]);
            }
        }
        if (!nl)
            break;
        if (!soft) {
            if (cr)
                sink_bytes(s, "\r\n", 2);
            else
                sink_byte(s, '\n');
        }
        i = eol + 1;
    }
}

mime_cte mime_cte_parse(store_str e)
{
    if (!e.p)
        return MIME_CTE_7BIT;
    size_t a = 0, n = e.len;
    while (a < n && (e.p[a] == ' ' || e.p[a] == '\t' || e.p[a] == '\r' ||
                     e.p[a] == '\n' || e.p[a] == '"'))
        a++;
    size_t b = a;
    while (b < n && e.p[b] != ' ' && e.p[b] != '\t' && e.p[b] != '(' &&
           e.p[b] != ';' && e.p[b] != '"' && e.p[b] != '\r' && e.p[b] != '\n')
        b++;
    const char *t = e.p + a;
    size_t tl = b - a;
    static const struct { const char *name; mime_cte cte; } tab[] = {
        { "7bit", MIME_CTE_7BIT }, { "8bit", MIME_CTE_8BIT },
        { "binary", MIME_CTE_BINARY }, { "base64", MIME_CTE_BASE64 },
        { "quoted-printable", MIME_CTE_QP },
    };
    if (tl == 0)
        return MIME_CTE_7BIT;
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strlen(tab[i].name) == tl && !strncasecmp(t, tab[i].name, tl))
            return tab[i].cte;
    return MIME_CTE_UNKNOWN;
}

/* Decode into a sink; -ENOTSUP for an unknown encoding. */
static int decode_cte(sink *s, mime_cte cte, const char *in, size_t len)
{
    const uint8_t *p = (const uint8_t *)in;
    switch (cte) {
    case MIME_CTE_BASE64:
        b64_decode(s, p, len);
        break;
    case MIME_CTE_QP:
        qp_decode(s, p, len);
        break;
    case MIME_CTE_UNKNOWN:
        return -ENOTSUP;
    default:
        sink_flush(s);
        sink_write(s, p, len);
        break;
    }
    sink_flush(s);
    return s->err;
}

static int decode_to(store_buf *out, mime_cte cte, const char *in, size_t len,
                     bool crlf, uint64_t *size)
{
    sink *s = malloc(sizeof *s);
    if (!s)
        return -ENOMEM;
    size_t old = out ? out->len : 0;
    sink_init(s, out, crlf);
    if (out && cte == MIME_CTE_BASE64 && store_buf_reserve(out, len / 4 * 3 + 3))
        s->err = -ENOMEM;
    int r = s->err ? s->err : decode_cte(s, cte, in, len);
    if (size)
        *size = s->n;
    free(s);
    if (r && out)
        out->len = old;
    return r;
}

int mime_decode_base64(const char *in, size_t len, store_buf *out)
{
    return decode_to(out, MIME_CTE_BASE64, in, len, false, NULL);
}

int mime_decode_qp(const char *in, size_t len, store_buf *out)
{
    return decode_to(out, MIME_CTE_QP, in, len, false, NULL);
}

int mime_decode_transfer(store_str encoding, const char *in, size_t len,
                         store_buf *out)
{
    return decode_to(out, mime_cte_parse(encoding), in, len, false, NULL);
}

int mime_decode_binary(store_str encoding, const char *in, size_t len,
                       bool crlf, store_buf *out, uint64_t *size)
{
    return decode_to(out, mime_cte_parse(encoding), in, len, crlf, size);
}

/* ------------------------------------------------------------------ */
/* UTF-8                                                               */

static const char REPL[3] = { (char)0xef, (char)0xbf, (char)0xbd };

/* Append p as UTF-8: valid runs copied, each invalid byte -> U+FFFD.  CR
 * and LF are dropped when drop_crlf. */
static int utf8_copy(store_buf *out, const char *s, size_t n, bool drop_crlf)
{
    if (n == 0)
        return 0;   /* s may be NULL (an empty decoded part) */
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0, run = 0;
    while (i < n) {
        size_t k;
        if (p[i] < 0x80 && !(drop_crlf && (p[i] == '\r' || p[i] == '\n'))) {
            i++;
            continue;
        }
        uint32_t cp;
        k = p[i] < 0x80 ? 0 : store_utf8_decode(p + i, n - i, &cp);
        if (k) {
            i += k;
            continue;
        }
        if (store_buf_append(out, p + run, i - run))
            return -ENOMEM;
        if (!(p[i] == '\r' || p[i] == '\n') &&
            store_buf_append(out, REPL, sizeof REPL))
            return -ENOMEM;
        run = ++i;
    }
    return store_buf_append(out, p + run, i - run) ? -ENOMEM : 0;
}

/* ------------------------------------------------------------------ */
/* Charsets                                                            */

/* Normalize a MIME charset name into buf (NUL-terminated) for iconv.
 * Returns 1 for "treat as UTF-8" (absent, us-ascii, utf-8), 0 for a name
 * to try with iconv, -1 for a name iconv must not see. */
static int charset_name(store_str cs, char *buf, size_t bufsz)
{
    if (!cs.p)
        return 1;
    size_t a = 0, n = cs.len;
    while (a < n && (cs.p[a] == ' ' || cs.p[a] == '\t' || cs.p[a] == '"' ||
                     cs.p[a] == '\''))
        a++;
    while (n > a && (cs.p[n - 1] == ' ' || cs.p[n - 1] == '\t' ||
                     cs.p[n - 1] == '"' || cs.p[n - 1] == '\''))
        n--;
    const char *star = memchr(cs.p + a, '*', n - a);   /* RFC 2231 lang */
    if (star)
        n = (size_t)(star - cs.p);
    if (n == a)
        return 1;
    if (n - a >= bufsz)
        return -1;
    for (size_t i = a; i < n; i++) {
        char c = cs.p[i];
        /* '/' would let a message pick iconv's //TRANSLIT-style options. */
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
              c == ':' || c == '+' || c == '(' || c == ')'))
            return -1;
        buf[i - a] = c;
    }
    buf[n - a] = 0;
    static const char *const utf8ish[] = {
        "utf-8", "utf8", "us-ascii", "ascii", "us_ascii", "ansi_x3.4-1968",
        "iso-646-us", "646", "x-unknown", "unknown-8bit", "default",
    };
    for (size_t i = 0; i < sizeof utf8ish / sizeof utf8ish[0]; i++)
        if (!strcasecmp(buf, utf8ish[i]))
            return 1;
    /* Labels that mean a superset in practice. */
    static const struct { const char *from, *to; } alias[] = {
        { "ks_c_5601-1987", "CP949" }, { "gb2312", "GB18030" },
        { "gbk", "GB18030" }, { "x-gbk", "GB18030" },
        { "iso-8859-8-i", "ISO-8859-8" }, { "x-sjis", "SHIFT_JIS" },
    };
    for (size_t i = 0; i < sizeof alias / sizeof alias[0]; i++)
        if (!strcasecmp(buf, alias[i].from) && strlen(alias[i].to) < bufsz)
            strcpy(buf, alias[i].to);
    return 0;
}

static iconv_t open_conv(store_str cs, int *kind)
{
    char name[64];
    *kind = charset_name(cs, name, sizeof name);
    if (*kind != 0)
        return (iconv_t)-1;
    iconv_t cd = iconv_open("UTF-8", name);
    if (cd == (iconv_t)-1)
        *kind = -1;
    return cd;
}

bool mime_charset_known(store_str charset)
{
    int kind;
    iconv_t cd = open_conv(charset, &kind);
    if (cd != (iconv_t)-1)
        iconv_close(cd);
    return kind >= 0;
}

static int iconv_all(iconv_t cd, const char *in, size_t len, store_buf *out)
{
    char *ip = (char *)in;
    size_t il = len;
    bool flushing = false;
    for (;;) {
        size_t want = (flushing ? 0 : il) * 2 + 64;
        if (store_buf_reserve(out, want))
            return -ENOMEM;
        char *op = (char *)out->data + out->len;
        size_t ol = out->cap - out->len;
        size_t r = flushing ? iconv(cd, NULL, NULL, &op, &ol)
                            : iconv(cd, &ip, &il, &op, &ol);
        int err = errno;        /* before anything can change it */
        out->len = (size_t)(op - (char *)out->data);
        if (r != (size_t)-1) {
            if (flushing)
                return 0;
            flushing = true;
            continue;
        }
        if (err == E2BIG)
            continue;
        if (flushing)       /* nothing sensible left to do */
            return 0;
        if (store_buf_append(out, REPL, sizeof REPL))
            return -ENOMEM;
        if (err == EILSEQ && il > 0) {
            ip++;
            il--;
            /* Reset the shift state after a bad sequence. */
            iconv(cd, NULL, NULL, NULL, NULL);
            continue;
        }
        /* EINVAL: an incomplete sequence at the end. */
        il = 0;
        flushing = true;
    }
}

int mime_to_utf8(store_str charset, const char *in, size_t len,
                 store_buf *out)
{
    size_t old = out->len;
    int kind, r;
    iconv_t cd = open_conv(charset, &kind);
    if (cd == (iconv_t)-1) {
        r = utf8_copy(out, in, len, false);
    } else {
        r = iconv_all(cd, in, len, out);
        iconv_close(cd);
        /* The output must be UTF-8, but glibc's UTF-8 decoder lets
         * sequences above U+10FFFF through (a UTF-8 label iconv knows
         * under another spelling, "utf-8(", sends such input there):
         * those are cleaned like any other bad bytes. */
        if (!r && !store_utf8_valid((const char *)out->data + old, out->len - old)) {
            store_buf t = { 0 };
            r = utf8_copy(&t, (const char *)out->data + old, out->len - old, false);
            if (!r) {
                out->len = old;
                r = store_buf_append(out, t.data, t.len);
            }
            free(t.data);
        }
    }
    if (r)
        out->len = old;
    return r;
}

/* ------------------------------------------------------------------ */
/* RFC 2047                                                            */

typedef struct ew {
    size_t end;                 /* index just past "?=" */
    store_str charset;
    char enc;                   /* 'B' or 'Q' */
    const char *text;
    size_t text_len;
} ew;

typedef struct hdr_dec {
    const char *in;
    size_t len;
    size_t close;               /* first "?=" at or after some earlier
                                   position, or len (none) */
    size_t open;                /* same for "=?" */
    store_buf pend;             /* decoded bytes of adjacent words */
    char pend_cs[64];
    size_t pend_cs_len;
    bool have_pend;
    char known_cs[64];          /* one-entry cache for charset checks */
    size_t known_cs_len;
    bool known;
} hdr_dec;

/* First occurrence of the two bytes a b at or after from, or len. */
static size_t find2(const char *s, size_t len, size_t from, char a, char b)
{
    if (from >= len)
        return len;
    const char t[2] = { a, b };
    const char *q = memmem(s + from, len - from, t, 2);
    return q ? (size_t)(q - s) : len;
}

/* An encoded word starting at i ("=?" already seen). */
static bool parse_ew(hdr_dec *d, size_t i, ew *w)
{
    const char *s = d->in;
    size_t n = d->len, j = i + 2, cs = j;
    while (j < n && s[j] != '?' && j - cs < 64 && s[j] != ' ' &&
           s[j] != '\t' && s[j] != '\r' && s[j] != '\n')
        j++;
    if (j == cs || j >= n || s[j] != '?' || j + 2 >= n || s[j + 2] != '?')
        return false;
    char e = s[j + 1];
    if (e == 'b')
        e = 'B';
    else if (e == 'q')
        e = 'Q';
    if (e != 'B' && e != 'Q')
        return false;
    size_t ts = j + 3;
    /* "?=" and "=?" positions only move forward, so these stay linear. */
    if (d->close < ts || d->close == SIZE_MAX)
        d->close = find2(s, n, ts, '?', '=');
    if (d->close >= n)
        return false;
    if (d->open < ts || d->open == SIZE_MAX)
        d->open = find2(s, n, ts, '=', '?');
    /* Another word starting inside the text: this one is not closed.  (An
     * "=?" right before the "?=" is base64 padding: "YWI=?=".) */
    if (d->open + 1 < d->close)
        return false;
    w->charset.p = s + cs;
    w->charset.len = (uint32_t)(j - cs);
    w->enc = e;
    w->text = s + ts;
    w->text_len = d->close - ts;
    w->end = d->close + 2;
    return true;
}

static int flush_pend(hdr_dec *d, store_buf *out)
{
    if (!d->have_pend)
        return 0;
    d->have_pend = false;
    store_str cs = { d->pend_cs, (uint32_t)d->pend_cs_len };
    int r = mime_to_utf8(cs, (const char *)d->pend.data, d->pend.len, out);
    d->pend.len = 0;
    return r;
}

static bool cs_known(hdr_dec *d, store_str cs)
{
    if (d->known_cs_len == cs.len && cs.len <= sizeof d->known_cs &&
        !memcmp(d->known_cs, cs.p, cs.len))
        return d->known;
    d->known = mime_charset_known(cs);
    if (cs.len <= sizeof d->known_cs) {
        memcpy(d->known_cs, cs.p, cs.len);
        d->known_cs_len = cs.len;
    }
    return d->known;
}

static int decode_word(hdr_dec *d, const ew *w, store_buf *out, bool *joined)
{
    int r;
    *joined = false;
    if (!cs_known(d, w->charset)) {
        if ((r = flush_pend(d, out)))
            return r;
        return utf8_copy(out, w->charset.p - 2,
                         (size_t)(d->in + w->end - (w->charset.p - 2)), true);
    }
    if (d->have_pend && (d->pend_cs_len != w->charset.len ||
                         strncasecmp(d->pend_cs, w->charset.p, w->charset.len)))
        if ((r = flush_pend(d, out)))
            return r;
    if (!d->have_pend) {
        memcpy(d->pend_cs, w->charset.p, w->charset.len);
        d->pend_cs_len = w->charset.len;
        d->have_pend = true;
    }
    *joined = true;
    if (w->enc == 'B')
        return mime_decode_base64(w->text, w->text_len, &d->pend);
    const uint8_t *t = (const uint8_t *)w->text;
    for (size_t i = 0; i < w->text_len; i++) {
        uint8_t c = t[i];
        if (c == '_') {
            c = ' ';
        } else if (c == '=' && w->text_len - i >= 3) {
            int h = hexval(t[i + 1]), l = hexval(t[i + 2]);
            if (h >= 0 && l >= 0) {
                c = (uint8_t)(h << 4 | l);
                i += 2;
            }
        }
        if (store_buf_append(&d->pend, &c, 1))
            return -ENOMEM;
    }
    return 0;
}

static bool all_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

int mime_decode_header(const char *in, size_t len, store_buf *out)
{
    size_t old = out->len;
    hdr_dec d;
    memset(&d, 0, sizeof d);
    d.in = in;
    d.len = len;
    d.close = d.open = SIZE_MAX;
    d.known_cs_len = SIZE_MAX;
    int r = 0;
    size_t run = 0, i = 0;
    bool last_ew = false;
    while (i + 1 < len) {
        const char *q = memchr(in + i, '=', len - i - 1);
        if (!q)
            break;
        i = (size_t)(q - in);
        ew w;
        if (in[i + 1] != '?' || !parse_ew(&d, i, &w)) {
            i++;
            continue;
        }
        if (!(last_ew && all_blank(in + run, i - run))) {
            if ((r = flush_pend(&d, out)) ||
                (r = utf8_copy(out, in + run, i - run, true)))
                goto out;
        }
        if ((r = decode_word(&d, &w, out, &last_ew)))
            goto out;
        i = run = w.end;
    }
    if ((r = flush_pend(&d, out)) ||
        (r = utf8_copy(out, in + run, len - run, true)))
        goto out;
out:
    free(d.pend.data);
    if (r)
        out->len = old;
    return r;
}

/* ------------------------------------------------------------------ */
/* Search text                                                         */

bool mime_part_is_text(const store_part *p)
{
    return p->type.p && p->type.len == 4 && !memcmp(p->type.p, "text", 4);
}

int mime_part_text(const store_cache *c, uint32_t part, const char *msg,
                   size_t msglen, store_buf *out)
{
    store_part p;
    if (store_cache_part(c, part, &p))
        return -ERANGE;
    if (!mime_part_is_text(&p))
        return 0;
    uint64_t off = p.body_off, len = p.body_len;
    if (off > msglen)
        off = msglen;
    if (len > msglen - off)
        len = msglen - off;
    store_str charset = { NULL, 0 };
    for (uint32_t j = 0; j < p.nparams; j++) {
        store_str name, value;
        if (!store_cache_param(c, part, 0, j, &name, &value) &&
            name.len == 7 && !memcmp(name.p, "charset", 7)) {
            charset = value;
            break;
        }
    }
    mime_cte cte = mime_cte_parse(p.encoding);
    if (cte != MIME_CTE_BASE64 && cte != MIME_CTE_QP)
        return mime_to_utf8(charset, msg + off, (size_t)len, out);
    store_buf tmp = { 0 };
    int r = decode_to(&tmp, cte, msg + off, (size_t)len, false, NULL);
    if (!r)
        r = mime_to_utf8(charset, (const char *)tmp.data, tmp.len, out);
    free(tmp.data);
    return r;
}
