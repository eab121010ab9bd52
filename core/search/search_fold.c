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
#include "store/utf8.h"

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
        size_t len = store_utf8_decode(p + i, n - i, &cp);
        if (!len) {
            *o++ = b;
            i++;
            continue;
        }
        o += store_utf8_encode(fold_cp(cp), o);
        i += len;
    }
    out->len = (size_t)(o - out->data);
    return 0;
}
