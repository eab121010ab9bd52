/* tests/unit/test_store_utf8.c — store/utf8.h: the one UTF-8 decoder,
 * encoder and validator, against RFC 3629 section 4's table: every
 * boundary of it, truncated sequences, overlongs, surrogates and the end of
 * Unicode (U+10FFFF / U+110000); then exhaustively against a reference
 * written the other way round (decode by arithmetic, then range checks). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/utf8.h"
#include "testutil.h"

/* Decode s[0..n) from a heap copy of exactly n bytes, so that ASan catches
 * a read past the end.  Returns the length; *cp is set (to ~0 if not). */
static size_t dec(const char *s, size_t n, uint32_t *cp)
{
    unsigned char *p = malloc(n ? n : 1);
    if (!p)
        abort();
    memcpy(p, s, n);
    *cp = UINT32_MAX;
    size_t k = store_utf8_decode(p, n, cp);
    free(p);
    return k;
}

static bool decodes(const char *s, uint32_t want)
{
    uint32_t cp;
    size_t n = strlen(s), k = dec(s, n, &cp);
    if (k != n || cp != want) {
        fprintf(stderr, "  decode of %zu bytes: length %zu, U+%04X; want %zu, U+%04X\n",
                n, k, (unsigned)cp, n, (unsigned)want);
        return false;
    }
    return true;
}

static bool rejects(const char *s, size_t n)
{
    uint32_t cp;
    size_t k = dec(s, n, &cp);
    if (k != 0 || cp != UINT32_MAX) {
        fprintf(stderr, "  %zu bytes from \\x%02x accepted (length %zu)\n",
                n, (unsigned char)s[0], k);
        return false;
    }
    return true;
}

#define REJECTS(lit) rejects(lit, sizeof lit - 1)

/* Each row of RFC 3629's table, at both ends. */
static void test_table_boundaries(void)
{
    uint32_t cp;
    CHECK_EQ(dec("\0", 1, &cp), 1);
    CHECK_EQ(cp, 0);                                   /* U+0000 is one byte */
    CHECK(decodes("\x7f", 0x7f));
    CHECK(decodes("\xc2\x80", 0x80));                  /* UTF8-2 */
    CHECK(decodes("\xdf\xbf", 0x7ff));
    CHECK(decodes("\xe0\xa0\x80", 0x800));             /* %xE0 %xA0-BF UTF8-tail */
    CHECK(decodes("\xe0\xbf\xbf", 0xfff));
    CHECK(decodes("\xe1\x80\x80", 0x1000));            /* %xE1-EC 2( UTF8-tail ) */
    CHECK(decodes("\xec\xbf\xbf", 0xcfff));
    CHECK(decodes("\xed\x80\x80", 0xd000));            /* %xED %x80-9F UTF8-tail */
    CHECK(decodes("\xed\x9f\xbf", 0xd7ff));
    CHECK(decodes("\xee\x80\x80", 0xe000));            /* %xEE-EF 2( UTF8-tail ) */
    CHECK(decodes("\xef\xbf\xbf", 0xffff));
    CHECK(decodes("\xf0\x90\x80\x80", 0x10000));       /* %xF0 %x90-BF 2( tail ) */
    CHECK(decodes("\xf0\xbf\xbf\xbf", 0x3ffff));
    CHECK(decodes("\xf1\x80\x80\x80", 0x40000));       /* %xF1-F3 3( tail ) */
    CHECK(decodes("\xf3\xbf\xbf\xbf", 0xfffff));
    CHECK(decodes("\xf4\x80\x80\x80", 0x100000));      /* %xF4 %x80-8F 2( tail ) */
    CHECK(decodes("\xf4\x8f\xbf\xbf", 0x10ffff));
    CHECK(decodes("\xc3\xa9" "abc", 0xe9) == false);   /* length is 2, not 5 */
    CHECK_EQ(dec("\xc3\xa9" "abc", 5, &cp), 2);
    CHECK_EQ(cp, 0xe9);
}

static void test_rejected(void)
{
    /* Continuation bytes alone, and leads that never start anything. */
    CHECK(REJECTS("\x80"));
    CHECK(REJECTS("\xbf"));
    CHECK(REJECTS("\xf5\x80\x80\x80"));
    CHECK(REJECTS("\xf7\xbf\xbf\xbf"));
    CHECK(REJECTS("\xf8\x88\x80\x80\x80"));
    CHECK(REJECTS("\xfe"));
    CHECK(REJECTS("\xff"));
    /* Overlong forms of every length. */
    CHECK(REJECTS("\xc0\x80"));
    CHECK(REJECTS("\xc0\xaf"));
    CHECK(REJECTS("\xc1\xbf"));
    CHECK(REJECTS("\xe0\x80\x80"));
    CHECK(REJECTS("\xe0\x9f\xbf"));                    /* U+07FF in three */
    CHECK(REJECTS("\xf0\x80\x80\x80"));
    CHECK(REJECTS("\xf0\x8f\xbf\xbf"));                /* U+FFFF in four */
    /* Surrogates, both ends of both halves. */
    CHECK(REJECTS("\xed\xa0\x80"));                    /* U+D800 */
    CHECK(REJECTS("\xed\xaf\xbf"));                    /* U+DBFF */
    CHECK(REJECTS("\xed\xb0\x80"));                    /* U+DC00 */
    CHECK(REJECTS("\xed\xbf\xbf"));                    /* U+DFFF */
    CHECK(REJECTS("\xed\xa0\xbd\xed\xb2\xa9"));        /* CESU-8 pair */
    /* Beyond Unicode. */
    CHECK(REJECTS("\xf4\x90\x80\x80"));                /* U+110000 */
    CHECK(REJECTS("\xf4\xbf\xbf\xbf"));
    /* A bad tail byte in each position. */
    CHECK(REJECTS("\xc3\x28"));
    CHECK(REJECTS("\xc3\xc3"));
    CHECK(REJECTS("\xe2\x28\xa1"));
    CHECK(REJECTS("\xe2\x82\x28"));
    CHECK(REJECTS("\xf0\x28\x8c\xbc"));
    CHECK(REJECTS("\xf0\x90\x28\xbc"));
    CHECK(REJECTS("\xf0\x90\x8c\x28"));
    CHECK(REJECTS("\xf0\x90\x8c\x00"));
    /* Nothing at all. */
    uint32_t cp;
    CHECK_EQ(dec("", 0, &cp), 0);
}

/* Every proper prefix of a multi-byte sequence is refused, whether the
 * buffer ends there or something else follows. */
static void test_truncated(void)
{
    static const char *const seqs[] = {
        "\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf", "\xef\xbf\xbf",
        "\xf0\x90\x80\x80", "\xf3\xbf\xbf\xbf", "\xf4\x8f\xbf\xbf",
    };
    for (size_t i = 0; i < sizeof seqs / sizeof *seqs; i++) {
        size_t n = strlen(seqs[i]);
        for (size_t k = 1; k < n; k++) {
            char buf[8];
            memcpy(buf, seqs[i], k);
            CHECK(rejects(buf, k));
            buf[k] = 'a';
            CHECK(rejects(buf, k + 1));
            CHECK(!store_utf8_valid(buf, k));
            CHECK(!store_utf8_valid(buf, k + 1));
        }
        CHECK(store_utf8_valid(seqs[i], n));
    }
}

/* The reference: take the bits by the lead byte's pattern, then check the
 * range and surrogates on the code point (the way RFC 3629 section 3
 * words it), where the decoder checks the second byte's range instead. */
static size_t ref_decode(const unsigned char *p, size_t n, uint32_t *cp)
{
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    unsigned c = p[0];
    size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
               : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (!len || n < len)
        return 0;
    uint32_t v = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (p[i] & 0x3f);
    }
    if (v < min[len] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

static void test_against_reference(void)
{
    /* Every input of one to three bytes; four bytes with every lead and
     * second byte and tails at the edges of the tail range and beyond. */
    static const unsigned char tails[] = {0x00, 0x7f, 0x80, 0x9f, 0xa0, 0xbf, 0xc0, 0xff};
    long bad = 0;
    for (unsigned a = 0; a < 256; a++)
        for (unsigned b = 0; b < 256; b++) {
            for (unsigned c = 0; c < 256; c++) {
                unsigned char p[3] = {(unsigned char)a, (unsigned char)b, (unsigned char)c};
                for (size_t n = 1; n <= 3; n++) {
                    uint32_t x = 1, y = 1;
                    size_t k = store_utf8_decode(p, n, &x), r = ref_decode(p, n, &y);
                    bad += k != r || (k && x != y);
                }
                for (size_t t = 0; a >= 0xf0 && t < sizeof tails; t++) {
                    unsigned char q[4] = {p[0], p[1], p[2], tails[t]};
                    uint32_t x = 1, y = 1;
                    size_t k = store_utf8_decode(q, 4, &x), r = ref_decode(q, 4, &y);
                    bad += k != r || (k && x != y);
                }
            }
        }
    CHECK_EQ(bad, 0);
}

/* Encoding every code point and decoding it again is the identity; the
 * code points with no sequence encode to nothing. */
static void test_encode_roundtrip(void)
{
    long bad = 0;
    for (uint32_t c = 0; c <= 0x110001; c++) {
        unsigned char buf[STORE_UTF8_MAX + 1];
        memset(buf, 0xaa, sizeof buf);
        size_t k = store_utf8_encode(c, buf);
        if ((c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff) {
            bad += k != 0 || buf[0] != 0xaa;
            continue;
        }
        size_t want = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
        uint32_t back = UINT32_MAX;
        bad += k != want || buf[k] != 0xaa || store_utf8_decode(buf, k, &back) != k ||
               back != c || !store_utf8_valid(buf, k);
    }
    CHECK_EQ(bad, 0);
    unsigned char b[4];
    CHECK_EQ(store_utf8_encode(0x20ac, b), 3);
    CHECK(memcmp(b, "\xe2\x82\xac", 3) == 0);
    CHECK_EQ(store_utf8_encode(0x1f600, b), 4);
    CHECK(memcmp(b, "\xf0\x9f\x98\x80", 4) == 0);
    CHECK_EQ(store_utf8_encode(UINT32_MAX, b), 0);
}

static void test_valid(void)
{
    CHECK(store_utf8_valid("", 0));
    CHECK(store_utf8_valid(NULL, 0));
    CHECK(store_utf8_valid("plain ASCII, long enough for the fast path", 42));
    CHECK(store_utf8_valid("a\0b", 3));                   /* NUL is a code point */
    CHECK(store_utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14));
    CHECK(!store_utf8_valid("caf\xc3", 4));               /* truncated at the end */
    CHECK(!store_utf8_valid("\xed\xa0\x80", 3));
    /* One bad byte at every offset of an ASCII run, across the 8-byte
     * steps of the ASCII fast path, is found. */
    char s[40];
    for (size_t i = 0; i < sizeof s; i++) {
        memset(s, 'x', sizeof s);
        s[i] = (char)0xc0;
        CHECK(!store_utf8_valid(s, sizeof s));
        CHECK(store_utf8_valid(s, i));                    /* the run before it */
        s[i] = (char)0xc3;                                /* a lead with no tail */
        if (i + 1 < sizeof s) {
            CHECK(!store_utf8_valid(s, sizeof s));
            s[i + 1] = (char)0xa9;
            CHECK(store_utf8_valid(s, sizeof s));
        }
    }
}

int main(void)
{
    RUN(test_table_boundaries);
    RUN(test_rejected);
    RUN(test_truncated);
    RUN(test_against_reference);
    RUN(test_encode_roundtrip);
    RUN(test_valid);
    return test_summary();
}
