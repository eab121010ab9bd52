/* store/utf8.h — UTF-8 as RFC 3629 defines it, one implementation for
 * every layer.
 *
 * Mailbox names (the store's, IMAP's modified UTF-7 and UTF8=ACCEPT forms),
 * user names, SASL identities, MIME text and SEARCH's case folding all
 * decide what valid UTF-8 is: they must agree, or a name accepted in one
 * place is refused in the next.  The rule is RFC 3629 section 4's table:
 * shortest form only (no C0, C1, E0 80..9F, F0 80..8F), no surrogates
 * (ED A0..BF), nothing above U+10FFFF (F4 90.., F5..FF), every sequence
 * complete.  The store is the lowest layer that needs it, so it lives here;
 * core/imap/ may include this header and nothing else of store/.
 *
 * The decoder and encoder are inline: SEARCH's folding and MIME cleaning
 * call them once per character.
 */
#ifndef RINGMAIL_STORE_UTF8_H
#define RINGMAIL_STORE_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decode the code point at p[0..n).  Returns the length of its sequence
 * (1..4) and stores the code point in *cp, or returns 0 (and leaves *cp
 * alone) if p does not start with a complete, well-formed sequence; n may
 * be 0.  Never reads past p[n - 1]. */
static inline size_t store_utf8_decode(const void *p, size_t n, uint32_t *cp)
{
    const unsigned char *s = p;
    if (n == 0)
        return 0;
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    /* The second byte's range depends on the first (RFC 3629 section 4):
     * that excludes overlongs, surrogates and > U+10FFFF in one test. */
    unsigned lo = 0x80, hi = 0xbf;
    size_t len;
    uint32_t v;
    if (c < 0xc2) {
        return 0;               /* continuation byte, or C0/C1 (overlong) */
    } else if (c < 0xe0) {
        len = 2, v = c & 0x1f;
    } else if (c < 0xf0) {
        len = 3, v = c & 0x0f;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c < 0xf5) {
        len = 4, v = c & 0x07;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    v = v << 6 | (s[1] & 0x3fu);
    for (size_t i = 2; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3fu);
    }
    *cp = v;
    return len;
}

/* Bytes store_utf8_encode() writes at most. */
#define STORE_UTF8_MAX 4

/* Write the UTF-8 sequence of cp to out (room for STORE_UTF8_MAX bytes).
 * Returns its length (1..4), or 0 and writes nothing if cp is a surrogate
 * or above U+10FFFF (no valid sequence exists). */
static inline size_t store_utf8_encode(uint32_t cp, void *out)
{
    unsigned char *o = out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xc0 | cp >> 6);
        o[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        if (cp >= 0xd800 && cp <= 0xdfff)
            return 0;
        o[0] = (unsigned char)(0xe0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    if (cp > 0x10ffff)
        return 0;
    o[0] = (unsigned char)(0xf0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
    o[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Is p[0..n) well-formed UTF-8 from end to end?  (NUL is a valid code
 * point here; callers that hold C strings pass strlen.) */
bool store_utf8_valid(const void *p, size_t n);

#endif
