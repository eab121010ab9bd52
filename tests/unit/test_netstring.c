/* tests/unit/test_netstring.c — the netstring codec of the socketmap
 * protocol (core/lmtp/netstring.c): strings whole and cut anywhere, several
 * in one buffer, the malformed ones netstrings.txt rules out, the length
 * limit known before the string is read, and encode/decode round trips. */
#include <stdint.h>

#include "core/lmtp/netstring.h"
#include "tests/unit/testutil.h"

static char buf[4097];

/* Feed all of s at once; the result, and *len / *used. */
static int feed_str(netstring_dec *d, const char *s, size_t *used, size_t *len)
{
    return netstring_feed(d, (const uint8_t *)s, strlen(s), buf, used, len);
}

static void test_whole(void)
{
    netstring_dec d;
    size_t used = 99, len = 99;
    netstring_dec_init(&d, 4096);
    CHECK_EQ(feed_str(&d, "5:hello,", &used, &len), 1);
    CHECK_EQ(used, 8);
    CHECK_EQ(len, 5);
    CHECK(!strcmp(buf, "hello"));
    /* the empty string: [len] is exactly "0" */
    CHECK_EQ(feed_str(&d, "0:,", &used, &len), 1);
    CHECK_EQ(len, 0);
    CHECK_EQ(buf[0], '\0');
    /* bytes of any value, NUL included */
    static const uint8_t bin[] = {'3', ':', 0, ',', 0xff, ','};
    CHECK_EQ(netstring_feed(&d, bin, sizeof bin, buf, &used, &len), 1);
    CHECK_EQ(len, 3);
    CHECK(buf[0] == 0 && buf[1] == ',' && (uint8_t)buf[2] == 0xff);
    /* a socketmap request as Postfix sends it */
    CHECK_EQ(feed_str(&d, "27:transport alice@example.org,", &used, &len), 1);
    CHECK(!strcmp(buf, "transport alice@example.org"));
}

static void test_several(void)
{
    netstring_dec d;
    size_t used, len;
    netstring_dec_init(&d, 100);
    const char *s = "3:abc,1:x,0:,";
    size_t at = 0, n = strlen(s);
    CHECK_EQ(netstring_feed(&d, (const uint8_t *)s, n, buf, &used, &len), 1);
    CHECK(used == 6 && len == 3 && !strcmp(buf, "abc"));
    at += used;
    CHECK_EQ(netstring_feed(&d, (const uint8_t *)s + at, n - at, buf, &used, &len), 1);
    CHECK(used == 4 && len == 1 && !strcmp(buf, "x"));
    at += used;
    CHECK_EQ(netstring_feed(&d, (const uint8_t *)s + at, n - at, buf, &used, &len), 1);
    CHECK(used == 3 && len == 0);
    at += used;
    CHECK_EQ(at, n);
    /* nothing, then a part: 0 and everything consumed */
    CHECK_EQ(netstring_feed(&d, (const uint8_t *)"", 0, buf, &used, &len), 0);
    CHECK_EQ(feed_str(&d, "12:hel", &used, &len), 0);
    CHECK_EQ(used, 6);
    CHECK_EQ(feed_str(&d, "lo, world,7:", &used, &len), 1);
    CHECK_EQ(used, 10);
    CHECK(!strcmp(buf, "hello, world"));
}

static void test_byte_by_byte(void)
{
    netstring_dec d;
    netstring_dec_init(&d, 4096);
    const char *s = "28:transport bob+news@b.example,";
    size_t n = strlen(s), len = 0, used;
    for (size_t i = 0; i < n; i++) {
        int rc = netstring_feed(&d, (const uint8_t *)s + i, 1, buf, &used, &len);
        CHECK_EQ(used, 1);
        CHECK_EQ(rc, i + 1 == n ? 1 : 0);
    }
    CHECK(len == 28 && !strcmp(buf, "transport bob+news@b.example"));
}

static void test_malformed(void)
{
    static const char *const bad[] = {
        "05:hello,",    /* "Extra zeros at the front of [len] are prohibited" */
        "00:,",
        ":abc,",        /* no [len] */
        "3:abcd",       /* no comma after the string */
        "3:abc;",
        "a:",
        "3x",
        "-1:a,",
        " 3:abc,",
        "3 :abc,",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        netstring_dec d;
        size_t used, len;
        netstring_dec_init(&d, 100);
        int rc = feed_str(&d, bad[i], &used, &len);
        if (rc != -EPROTO)
            fprintf(stderr, "  %s: %d\n", bad[i], rc);
        CHECK_EQ(rc, -EPROTO);
        /* failed for good: the stream cannot be resynchronised */
        CHECK_EQ(feed_str(&d, "1:a,", &used, &len), -EPROTO);
    }
}

static void test_limit(void)
{
    netstring_dec d;
    size_t used, len;
    netstring_dec_init(&d, 10);
    CHECK_EQ(feed_str(&d, "10:0123456789,", &used, &len), 1);
    CHECK_EQ(len, 10);
    /* refused at the digit that makes it too long, before any string */
    CHECK_EQ(feed_str(&d, "11:", &used, &len), -EMSGSIZE);
    netstring_dec_init(&d, 10);
    CHECK_EQ(feed_str(&d, "1", &used, &len), 0);
    CHECK_EQ(feed_str(&d, "00", &used, &len), -EMSGSIZE);
    netstring_dec_init(&d, 5);
    CHECK_EQ(feed_str(&d, "7", &used, &len), -EMSGSIZE);
    /* no overflow of [len], whatever the limit */
    netstring_dec_init(&d, SIZE_MAX);
    CHECK_EQ(feed_str(&d, "99999999999999999999", &used, &len), -EMSGSIZE);
    netstring_dec_init(&d, SIZE_MAX);
    CHECK_EQ(feed_str(&d, "999999999999999999999:", &used, &len), -EMSGSIZE);
    netstring_dec_init(&d, 0);
    CHECK_EQ(feed_str(&d, "0:,", &used, &len), 1);
    CHECK_EQ(feed_str(&d, "1:", &used, &len), -EMSGSIZE);
}

static void test_encode(void)
{
    char out[64];
    CHECK_EQ(netstring_encode("hello", 5, out, sizeof out), 8);
    CHECK(!memcmp(out, "5:hello,", 8));
    CHECK_EQ(netstring_encode("", 0, out, sizeof out), 3);
    CHECK(!memcmp(out, "0:,", 3));
    CHECK_EQ(netstring_encode("NOTFOUND ", 9, out, sizeof out), 12);
    CHECK(!memcmp(out, "9:NOTFOUND ,", 12));
    CHECK_EQ(netstring_encode("hello", 5, out, 8), 8);
    CHECK_EQ(netstring_encode("hello", 5, out, 7), -ENOSPC);
    CHECK_EQ(netstring_encode("", 0, out, 2), -ENOSPC);
}

/* Random strings encoded, concatenated, and decoded in random cuts: the
 * same strings come out, in order. */
static void test_roundtrip(void)
{
    static char stream[1 << 16], strs[64][600];
    static size_t lens[64];
    unsigned seed = 12345;
    for (int round = 0; round < 200; round++) {
        size_t n = 0, k = 1 + (size_t)(rand_r(&seed) % 64);
        for (size_t i = 0; i < k; i++) {
            lens[i] = (size_t)(rand_r(&seed) % 600);
            for (size_t j = 0; j < lens[i]; j++)
                strs[i][j] = (char)(rand_r(&seed) & 0xff);
            int e = netstring_encode(strs[i], lens[i], stream + n, sizeof stream - n);
            REQUIRE(e > 0);
            n += (size_t)e;
        }
        netstring_dec d;
        netstring_dec_init(&d, 599);
        size_t at = 0, got = 0;
        while (at < n) {
            size_t cut = 1 + (size_t)(rand_r(&seed) % 700);
            if (cut > n - at)
                cut = n - at;
            size_t off = 0;
            while (off < cut) {
                size_t used, len = 0;
                int rc = netstring_feed(&d, (const uint8_t *)stream + at + off, cut - off,
                                        buf, &used, &len);
                REQUIRE(rc >= 0);
                off += used;
                if (rc == 1) {
                    REQUIRE(got < k);
                    CHECK_EQ(len, lens[got]);
                    CHECK(!memcmp(buf, strs[got], len));
                    got++;
                } else {
                    CHECK_EQ(off, cut);
                }
            }
            at += cut;
        }
        CHECK_EQ(got, k);
    }
}

int main(void)
{
    RUN(test_whole);
    RUN(test_several);
    RUN(test_byte_by_byte);
    RUN(test_malformed);
    RUN(test_limit);
    RUN(test_encode);
    RUN(test_roundtrip);
    return test_summary();
}
