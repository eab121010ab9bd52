/* core/imap/imap_out.c — building responses: a growing buffer and IMAP strings. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/imap/imap_args.h"
#include "store/utf8.h"

#define QUOTED_MAX 1024

static int grow(imap_out *o, size_t add)
{
    if (o->err)
        return o->err;
    if (add <= o->cap - o->len)
        return 0;
    if (add > SIZE_MAX / 2 - o->len) {
        o->err = -ENOMEM;
        return o->err;
    }
    size_t cap = o->cap ? o->cap : 256;
    while (cap - o->len < add)
        cap *= 2;
    char *p = realloc(o->p, cap);
    if (!p) {
        o->err = -ENOMEM;
        return o->err;
    }
    o->p = p;
    o->cap = cap;
    return 0;
}

void imap_out_add_slow(imap_out *o, const void *p, size_t n)
{
    if (!n || grow(o, n) < 0)
        return;
    memcpy(o->p + o->len, p, n);
    o->len += n;
}

void imap_out_uint(imap_out *o, uint64_t v)
{
    char b[20], *e = b + sizeof b, *d = e;
    do {
        *--d = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    imap_out_add(o, d, (size_t)(e - d));
}

void imap_out_printf(imap_out *o, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        if (!o->err)
            o->err = -EINVAL;
        return;
    }
    if ((size_t)n < sizeof small) {
        imap_out_add(o, small, (size_t)n);
        return;
    }
    /* Format straight into the buffer (room for vsnprintf's NUL). */
    if (grow(o, (size_t)n + 1) < 0)
        return;
    va_start(ap, fmt);
    vsnprintf(o->p + o->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    o->len += (size_t)n;
}

/* Byte classes for quoted strings: 0 copied as is, 1 escaped with a
 * backslash, 2 forces a literal (NUL CR LF), 3 8-bit (UTF-8 when allowed). */
static const uint8_t qclass[256] = {
    [0] = 2, ['\r'] = 2, ['\n'] = 2, ['"'] = 1, ['\\'] = 1,
    [0x80 ... 0xff] = 3,
};

static void out_literal(imap_out *o, const char *s, size_t n)
{
    imap_out_add(o, "{", 1);
    imap_out_uint(o, n);
    imap_out_add(o, "}\r\n", 3);
    imap_out_add(o, s, n);
}

/* A quoted string when the bytes allow one, else a literal.  One pass: the
 * bytes are copied (escaped) while they are classified, and the copy is
 * dropped for the rare string that turns out to need a literal. */
void imap_out_string(imap_out *o, const char *s, size_t n, bool utf8_ok)
{
    if (n >= QUOTED_MAX) {
        out_literal(o, s, n);
        return;
    }
    /* Worst case every byte escaped. */
    if (grow(o, 2 * n + 2) < 0)
        return;
    char *d = o->p + o->len;
    bool eight = false;
    *d++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (qclass[c]) {
        case 0:
            break;
        case 1:
            *d++ = '\\';
            break;
        case 2:
            out_literal(o, s, n);
            return;
        default:
            eight = true;
        }
        *d++ = (char)c;
    }
    if (eight && !(utf8_ok && store_utf8_valid(s, n))) {
        out_literal(o, s, n);
        return;
    }
    *d++ = '"';
    o->len = (size_t)(d - o->p);
}

void imap_out_nstring(imap_out *o, const char *s, size_t n, bool utf8_ok)
{
    if (!s)
        imap_out_add(o, "NIL", 3);
    else
        imap_out_string(o, s, n, utf8_ok);
}

void imap_out_free(imap_out *o)
{
    free(o->p);
    memset(o, 0, sizeof *o);
}

void imap_out_set(imap_out *o, const uint32_t *v, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j + 1 < n && v[j + 1] == v[j] + 1)
            j++;
        imap_out_printf(o, "%s%u", i ? "," : "", v[i]);
        if (j > i)
            imap_out_printf(o, ":%u", v[j]);
        i = j + 1;
    }
}
