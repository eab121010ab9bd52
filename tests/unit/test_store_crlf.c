/* tests/unit/test_store_crlf.c — store/crlf.c: bare LF to CRLF, the one
 * conversion IMAP APPEND and ringmail-admin import share. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "store/crlf.h"
#include "testutil.h"

static bool converts(const char *in, size_t n, const char *want)
{
    size_t wl = strlen(want);
    char *out = malloc(store_crlf_len(in, n) + 1);
    if (!out)
        return false;
    size_t got = store_crlf_copy(out, in, n);
    bool ok = got == wl && store_crlf_len(in, n) == wl && memcmp(out, want, wl) == 0;
    if (!ok)
        fprintf(stderr, "  [%.*s] -> [%.*s], want [%s]\n", (int)n, in, (int)got, out, want);
    free(out);
    return ok;
}

static void test_cases(void)
{
    CHECK(converts("", 0, ""));
    CHECK(converts("\n", 1, "\r\n"));
    CHECK(converts("\r\n", 2, "\r\n"));
    CHECK(converts("\n\n", 2, "\r\n\r\n"));
    CHECK(converts("a\nb\r\nc", 6, "a\r\nb\r\nc"));
    CHECK(converts("x\ry\n", 4, "x\ry\r\n"));           /* a lone CR stays */
    CHECK(converts("\r\r\n", 3, "\r\r\n"));
    CHECK(converts("a\n\r", 3, "a\r\n\r"));               /* CR at the end stays */
    char nul[] = {'a', '\0', '\n'};
    char out[8];
    CHECK_EQ(store_crlf_len(nul, 3), 4);
    CHECK_EQ(store_crlf_copy(out, nul, 3), 4);
    CHECK(memcmp(out, "a\0\r\n", 4) == 0);                /* NUL is just a byte */
    CHECK_EQ(store_crlf_len("abc", 3), 3);                 /* nothing to do: n */
}

/* Random input: the output has no bare LF, converting it again changes
 * nothing, and removing every CR that precedes an LF gives back the input
 * with its own CRLFs made LF. */
static void test_random(void)
{
    unsigned seed = 7;
    static const char alphabet[] = "ab\r\n\n\0";
    for (int round = 0; round < 2000; round++) {
        char in[64], out[128], again[128];
        size_t n = (seed = seed * 1103515245 + 12345) >> 16 & 63;
        for (size_t i = 0; i < n; i++)
            in[i] = alphabet[((seed = seed * 1103515245 + 12345) >> 16) % 6];
        size_t l = store_crlf_copy(out, in, n);
        REQUIRE(l == store_crlf_len(in, n) && l <= 2 * n);
        for (size_t i = 0; i < l; i++)
            if (out[i] == '\n')
                CHECK(i > 0 && out[i - 1] == '\r');
        CHECK_EQ(store_crlf_len(out, l), l);
        CHECK_EQ(store_crlf_copy(again, out, l), l);
        CHECK(memcmp(again, out, l) == 0);
        size_t a = 0, b = 0;
        char x[64], y[128];
        for (size_t i = 0; i < n; i++)
            if (!(in[i] == '\r' && i + 1 < n && in[i + 1] == '\n'))
                x[a++] = in[i];
        for (size_t i = 0; i < l; i++)
            if (!(out[i] == '\r' && i + 1 < l && out[i + 1] == '\n'))
                y[b++] = out[i];
        CHECK(a == b && memcmp(x, y, a) == 0);
    }
}

int main(void)
{
    RUN(test_cases);
    RUN(test_random);
    return test_summary();
}
