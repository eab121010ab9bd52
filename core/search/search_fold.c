/* core/search/search_fold.c — simple Unicode case folding of UTF-8 for SEARCH's
 * case-insensitive substring matching.
 *
 * A small table instead of towlower(): towlower depends on the process's
 * locale (the server runs in "C", where it folds ASCII only), and SEARCH
 * must behave the same everywhere.  Covered (simple folding, one code
 * point to one, as in CaseFolding.txt's C+S mappings): Basic Latin,
 * Latin-1 Supplement (µ -> μ), Latin Extended-A (ſ -> s, İ -> i), Greek
 * and Coptic (ς -> σ), Cyrillic and its supplement, U+1E9E ẞ -> ß, and
 * fullwidth Latin letters.  Everything else compares exactly; bytes that
 * are not UTF-8 are copied as they are. */
#include "core/search/search_internal.h"

#include <errno.h>

static uint32_t fold_cp(uint32_t c)
{
    if (c < 0x80)
        return c >= 'A' && c <= 'Z' ? c + 32 : c;
    if (c < 0x100) {
        if (c == 0xB5)
            return 0x3BC;
        if (c >= 0xC0 && c <= 0xDE && c != 0xD7)
            return c + 32;
        return c;
    }
    if (c < 0x180) {
        if (c == 0x130)
            return 'i';
        if (c == 0x131 || c == 0x138 || c == 0x149)
            return c;
        if (c == 0x178)
            return 0xFF;
        if (c == 0x17F)
            return 's';
        /* pairs: even upper before 0x138 and from 0x14A to 0x177; odd
         * upper from 0x139 to 0x148 and 0x179 to 0x17E */
        if ((c < 0x138 || (c >= 0x14A && c <= 0x177)) && !(c & 1))
            return c + 1;
        if (((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) &&
            (c & 1))
            return c + 1;
        return c;
    }
    if (c >= 0x370 && c < 0x400) {
        if (c == 0x386)
            return 0x3AC;
        if (c >= 0x388 && c <= 0x38A)
            return c + 37;
        if (c == 0x38C)
            return 0x3CC;
        if (c == 0x38E || c == 0x38F)
            return c + 63;
        if (c >= 0x391 && c <= 0x3AB && c != 0x3A2)
            return c + 32;
        if (c == 0x3C2)
            return 0x3C3;
        if (c >= 0x3D8 && c <= 0x3EF && !(c & 1))
            return c + 1;
        return c;
    }
    if (c >= 0x400 && c < 0x530) {
        if (c <= 0x40F)
            return c + 80;
        if (c <= 0x42F)
            return c + 32;
        if (c < 0x460)
            return c;
        if (c <= 0x481 || (c >= 0x48A && c <= 0x4BF) || c >= 0x4D0)
            return (c & 1) ? c : c + 1;
        if (c == 0x4C0)
            return 0x4CF;
        if (c >= 0x4C1 && c <= 0x4CE)
            return (c & 1) ? c + 1 : c;
        return c;
    }
    if (c == 0x1E9E)
        return 0xDF;
    if (c >= 0xFF21 && c <= 0xFF3A)
        return c + 32;
    return c;
}

/* Decode one UTF-8 sequence at p (n > 0 bytes left).  Returns its length,
 * or 0 if it is not valid (overlong, surrogate, truncated, > U+10FFFF). */
static size_t utf8_dec(const unsigned char *p, size_t n, uint32_t *cp)
{
    unsigned char b = p[0];
    size_t len;
    uint32_t c, min;
    if (b < 0xC2 || b > 0xF4)
        return 0;
    if (b < 0xE0) {
        len = 2, c = b & 0x1F, min = 0x80;
    } else if (b < 0xF0) {
        len = 3, c = b & 0x0F, min = 0x800;
    } else {
        len = 4, c = b & 0x07, min = 0x10000;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (p[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return len;
}

static size_t utf8_enc(uint32_t c, unsigned char *o)
{
    if (c < 0x80) {
        o[0] = (unsigned char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (unsigned char)(0xC0 | (c >> 6));
        o[1] = (unsigned char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (c >> 12));
        o[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (c >> 18));
    o[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (c & 0x3F));
    return 4;
}

int srch_fold(const char *src, size_t n, store_buf *out)
{
    /* No mapping in fold_cp() lengthens the UTF-8 (İ, ſ: 2 -> 1, ẞ: 3 -> 2,
     * all others keep their length), so n bytes suffice. */
    int rc = store_buf_reserve(out, n + 1);
    if (rc < 0)
        return rc;
    const unsigned char *p = (const unsigned char *)src;
    unsigned char *o = out->data + out->len;
    size_t i = 0;
    while (i < n) {
        unsigned char b = p[i];
        if (b < 0x80) {
            *o++ = (unsigned char)(b >= 'A' && b <= 'Z' ? b + 32 : b);
            i++;
            continue;
        }
        uint32_t cp;
        size_t len = utf8_dec(p + i, n - i, &cp);
        if (!len) {
            *o++ = b;
            i++;
            continue;
        }
        o += utf8_enc(fold_cp(cp), o);
        i += len;
    }
    out->len = (size_t)(o - out->data);
    return 0;
}
