/* tests/unit/test_lmtp_proto.c — the LMTP wire protocol (core/lmtp):
 * command lines and paths as RFC 5321 4.1.2 writes them (with RFC 6531's
 * UTF-8), the replies for what does not parse, and the DATA decoder against
 * a reference decoder on random streams cut at random places. */
#include <stdint.h>

#include "core/lmtp/lmtp_proto.h"
#include "tests/unit/testutil.h"

static char line_buf[LMTP_LINE_MAX + 64];

/* Parse `text`; returns the reply code (0 when it parsed). */
static int parse(const char *text, lmtp_cmd *cmd, lmtp_error *err)
{
    size_t n = strlen(text);
    memcpy(line_buf, text, n);
    line_buf[n] = 'X';      /* the parser must write its own NUL there */
    lmtp_error e = { 0 };
    int rc = lmtp_parse_command(line_buf, n, cmd, &e);
    if (err)
        *err = e;
    return rc == 0 ? 0 : e.code;
}

static bool streq(const char *a, const char *b)
{
    return a && b && !strcmp(a, b);
}

static void test_verbs(void)
{
    lmtp_cmd c;
    lmtp_error e;
    CHECK_EQ(parse("LHLO mx.example.org", &c, NULL), 0);
    CHECK_EQ(c.verb, LMTP_LHLO);
    CHECK(streq(c.arg, "mx.example.org"));
    CHECK_EQ(parse("lhlo [127.0.0.1]", &c, NULL), 0);
    CHECK(streq(c.arg, "[127.0.0.1]"));
    CHECK_EQ(parse("LHLO", &c, NULL), 501);
    CHECK_EQ(parse("LHLO ", &c, NULL), 501);
    CHECK_EQ(parse("DATA", &c, NULL), 0);
    CHECK_EQ(c.verb, LMTP_DATA);
    CHECK_EQ(parse("data", &c, NULL), 0);
    CHECK_EQ(parse("RSET", &c, NULL), 0);
    CHECK_EQ(c.verb, LMTP_RSET);
    CHECK_EQ(parse("QUIT", &c, NULL), 0);
    CHECK_EQ(c.verb, LMTP_QUIT);
    /* RFC 5321 4.3.2: DATA, RSET, QUIT with arguments: 501 */
    CHECK_EQ(parse("DATA now", &c, &e), 501);
    CHECK(streq(e.status, "5.5.4"));
    CHECK_EQ(parse("QUIT please", &c, NULL), 501);
    CHECK_EQ(parse("RSET x", &c, NULL), 501);
    CHECK_EQ(parse("NOOP", &c, NULL), 0);
    CHECK_EQ(parse("NOOP anything at all", &c, NULL), 0);
    CHECK_EQ(c.verb, LMTP_NOOP);
    CHECK_EQ(parse("VRFY user", &c, NULL), 0);
    CHECK_EQ(c.verb, LMTP_VRFY);
    /* RFC 2033 4.1: HELO and EHLO are recognised, to be refused */
    CHECK_EQ(parse("EHLO x", &c, NULL), 0);
    CHECK_EQ(c.verb, LMTP_HELO);
    CHECK_EQ(parse("HELO x", &c, NULL), 0);
    CHECK_EQ(c.verb, LMTP_HELO);
    CHECK_EQ(parse("FROB x", &c, &e), 500);
    CHECK(streq(e.status, "5.5.1"));
    CHECK_EQ(parse("", &c, NULL), 500);
    CHECK_EQ(parse("DATAX", &c, NULL), 500);
    CHECK_EQ(parse("LHLO a\tb", &c, NULL), 501);
}

static void test_limits(void)
{
    lmtp_cmd c;
    char nul[] = "NOOP a\0b";
    lmtp_error e;
    CHECK_EQ(lmtp_parse_command(nul, 8, &c, &e), -EINVAL);
    CHECK_EQ(e.code, 500);
    static char big[LMTP_LINE_MAX + 8];
    memset(big, 'a', sizeof big);
    memcpy(big, "NOOP ", 5);
    CHECK_EQ(lmtp_parse_command(big, LMTP_LINE_MAX + 1, &c, &e), -EINVAL);
    CHECK_EQ(e.code, 500);
    CHECK_EQ(lmtp_parse_command(big, LMTP_LINE_MAX, &c, &e), 0);
}

static void test_mail(void)
{
    lmtp_cmd c;
    bool present;
    CHECK_EQ(parse("MAIL FROM:<alice@example.org> SIZE=1024 body=8BITMIME", &c, NULL), 0);
    CHECK_EQ(c.verb, LMTP_MAIL);
    CHECK(streq(c.local, "alice"));
    CHECK(streq(c.domain, "example.org"));
    CHECK(!c.null_path && !c.utf8);
    CHECK_EQ(c.nparams, 2);
    CHECK(streq(lmtp_param_get(&c, "SIZE", &present), "1024") && present);
    CHECK(streq(lmtp_param_get(&c, "BODY", NULL), "8BITMIME"));   /* keys upper-cased */
    CHECK(lmtp_param_get(&c, "RET", &present) == NULL && !present);
    CHECK_EQ(parse("mail from:<> SMTPUTF8", &c, NULL), 0);
    CHECK(c.null_path);
    CHECK(streq(c.local, "") && c.domain == NULL);
    CHECK(lmtp_param_get(&c, "SMTPUTF8", &present) == NULL && present);
    /* one space after the colon is read (RFC 5321 3.3 forbids it; clients send it) */
    CHECK_EQ(parse("MAIL FROM: <a@b.c>", &c, NULL), 0);
    CHECK(streq(c.local, "a"));
    CHECK_EQ(parse("MAIL FROM:<a@b.c>  SIZE=1  ", &c, NULL), 0);
    CHECK_EQ(c.nparams, 1);
    CHECK_EQ(parse("MAIL FROM:a@b.c", &c, NULL), 501);
    CHECK_EQ(parse("MAIL TO:<a@b.c>", &c, NULL), 501);
    CHECK_EQ(parse("MAIL", &c, NULL), 501);
    CHECK_EQ(parse("MAIL FROM:<a@b.c>SIZE=1", &c, NULL), 501);
    CHECK_EQ(parse("MAIL FROM:<a@b.c> SIZE=", &c, NULL), 501);
    CHECK_EQ(parse("MAIL FROM:<a@b.c> =1", &c, NULL), 501);
    CHECK_EQ(parse("MAIL FROM:<a@b.c> SIZE=1=2", &c, NULL), 501);
    CHECK_EQ(parse("MAIL FROM:<a@b.c> SI_ZE=1", &c, NULL), 501);
    CHECK_EQ(parse("MAIL FROM:<a@b.c> A B C D E F G H I J K L M N O P", &c, NULL), 0);
    CHECK_EQ(parse("MAIL FROM:<a@b.c> A B C D E F G H I J K L M N O P Q", &c, NULL), 501);
    lmtp_error e;
    CHECK_EQ(parse("MAIL FROM:<a b@c>", &c, &e), 501);
    CHECK(streq(e.status, "5.1.7"));        /* bad sender address syntax */
}

static void test_rcpt(void)
{
    lmtp_cmd c;
    lmtp_error e;
    CHECK_EQ(parse("RCPT TO:<bob+work@Example.ORG>", &c, NULL), 0);
    CHECK_EQ(c.verb, LMTP_RCPT);
    CHECK(streq(c.local, "bob+work"));
    CHECK(streq(c.domain, "Example.ORG"));      /* as sent: lookups fold */
    CHECK_EQ(parse("RCPT TO:<\"john doe\"@example.org>", &c, NULL), 0);
    CHECK(streq(c.local, "john doe"));
    CHECK_EQ(parse("RCPT TO:<\"a\\\"b\\\\c\"@x.org>", &c, NULL), 0);
    CHECK(streq(c.local, "a\"b\\c"));
    CHECK_EQ(parse("RCPT TO:<Postmaster>", &c, NULL), 0);
    CHECK(streq(c.local, "Postmaster") && c.domain == NULL);
    CHECK_EQ(parse("RCPT TO:<postmaster>", &c, NULL), 0);
    CHECK_EQ(parse("RCPT TO:<>", &c, &e), 501);
    CHECK(streq(e.status, "5.1.3"));
    /* the source route is read and dropped (RFC 5321 4.1.1.3) */
    CHECK_EQ(parse("RCPT TO:<@relay.one,@relay.two:u@final.org>", &c, NULL), 0);
    CHECK(streq(c.local, "u") && streq(c.domain, "final.org"));
    CHECK_EQ(parse("RCPT TO:<u@[192.0.2.1]>", &c, NULL), 0);
    CHECK(streq(c.domain, "[192.0.2.1]"));
    CHECK_EQ(parse("RCPT TO:<u@[IPv6:2001:db8::1]>", &c, NULL), 0);
    CHECK_EQ(parse("RCPT TO:<u@a-b.c-d.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;u@x", &c, NULL), 0);
    CHECK(streq(lmtp_param_get(&c, "ORCPT", NULL), "rfc822;u@x"));
    /* RFC 6531: UTF-8 in local part and domain */
    CHECK_EQ(parse("RCPT TO:<j\xc3\xb6ran@ex\xc3\xa4mple.org>", &c, NULL), 0);
    CHECK(c.utf8);
    CHECK(streq(c.local, "j\xc3\xb6ran"));
    CHECK_EQ(parse("RCPT TO:<\"j\xc3\xb6 r\"@x.org>", &c, NULL), 0);
    CHECK(c.utf8);

    static const char *bad[] = {
        "RCPT TO:<a..b@x.org>", "RCPT TO:<.a@x.org>", "RCPT TO:<a.@x.org>",
        "RCPT TO:<a@>", "RCPT TO:<a@-x.org>", "RCPT TO:<a@x-.org>",
        "RCPT TO:<a@x..org>", "RCPT TO:<a@x.org", "RCPT TO:<ab.org>",
        "RCPT TO:<a@x.org>>", "RCPT TO:<a@[]>", "RCPT TO:<a@[1.2.3.4>",
        "RCPT TO:<\"a@x.org>", "RCPT TO:<\"a\x01\"@x.org>", "RCPT TO:<a\xff@x.org>",
        "RCPT TO:<a\xc3@x.org>", "RCPT TO:<a@x\xed\xa0\x80.org>", "RCPT TO:<@x.org:>",
        "RCPT TO:<@x.org,a@b.org>", "RCPT TO:<a(b)@x.org>", "RCPT TO:<a@x.org.>",
        "RCPT TO:<a@x_y.org>", "RCPT TO:<\"a\\\x01\"@x.org>",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int code = parse(bad[i], &c, &e);
        if (code != 501)
            fprintf(stderr, "  accepted or wrong code %d: %s\n", code, bad[i]);
        CHECK_EQ(code, 501);
    }

    /* RFC 5321 4.5.3.1: 64 octets of local part, 255 of domain, 256 of path */
    char buf[600];
    char local[70], dom[300];
    memset(local, 'l', 64);
    local[64] = '\0';
    snprintf(buf, sizeof buf, "RCPT TO:<%s@x.org>", local);
    CHECK_EQ(parse(buf, &c, NULL), 0);
    memset(local, 'l', 65);
    local[65] = '\0';
    snprintf(buf, sizeof buf, "RCPT TO:<%s@x.org>", local);
    CHECK_EQ(parse(buf, &c, NULL), 501);
    local[64] = '\0';
    snprintf(buf, sizeof buf, "RCPT TO:<\"%s\"@x.org>", local);
    CHECK_EQ(parse(buf, &c, NULL), 0);
    local[64] = 'l';
    snprintf(buf, sizeof buf, "RCPT TO:<\"%s\"@x.org>", local);
    CHECK_EQ(parse(buf, &c, NULL), 501);
    for (int i = 0; i < 256; i += 2)
        dom[i] = 'd', dom[i + 1] = '.';
    dom[255] = 'd';
    dom[256] = '\0';    /* 256 octets */
    snprintf(buf, sizeof buf, "RCPT TO:<a@%s>", dom);
    CHECK_EQ(parse(buf, &c, NULL), 501);
    dom[253] = '\0';    /* "a@" + 253 + "<>" = 257 > 256 */
    snprintf(buf, sizeof buf, "RCPT TO:<ab@%s>", dom);
    CHECK_EQ(parse(buf, &c, NULL), 501);
    dom[251] = '\0';
    snprintf(buf, sizeof buf, "RCPT TO:<ab@%s>", dom);
    CHECK_EQ(parse(buf, &c, NULL), 0);
}

static void test_bdat(void)
{
    lmtp_cmd c;
    CHECK_EQ(parse("BDAT 1000", &c, NULL), 0);
    CHECK_EQ(c.verb, LMTP_BDAT);
    CHECK_EQ(c.bdat_size, 1000);
    CHECK(!c.bdat_last);
    CHECK_EQ(parse("BDAT 0 LAST", &c, NULL), 0);
    CHECK_EQ(c.bdat_size, 0);
    CHECK(c.bdat_last);
    CHECK_EQ(parse("bdat 7 last", &c, NULL), 0);
    CHECK(c.bdat_last);
    CHECK_EQ(parse("BDAT 999999999999999999", &c, NULL), 0);
    CHECK_EQ(parse("BDAT 1000000000000000000", &c, NULL), 501);
    CHECK_EQ(parse("BDAT", &c, NULL), 501);
    CHECK_EQ(parse("BDAT x", &c, NULL), 501);
    CHECK_EQ(parse("BDAT -1", &c, NULL), 501);
    CHECK_EQ(parse("BDAT 10 FIRST", &c, NULL), 501);
    CHECK_EQ(parse("BDAT 10 LAST ", &c, NULL), 501);
    CHECK_EQ(parse("BDAT 10x", &c, NULL), 501);
}

/* ---- DATA ---- */

/* The reference: the data ends at the first CRLF "." CRLF counted from a
 * CRLF assumed before the first byte; inside, a "." right after a CRLF is
 * removed. */
static int ref_decode(const char *in, size_t n, char *out, size_t *nout, size_t *used)
{
    static char s[4096];
    if (n + 2 > sizeof s)
        return -1;
    s[0] = '\r', s[1] = '\n';
    memcpy(s + 2, in, n);
    size_t m = n + 2, end = SIZE_MAX;
    for (size_t i = 0; i + 5 <= m; i++)
        if (!memcmp(s + i, "\r\n.\r\n", 5)) {
            end = i;
            break;
        }
    size_t stop = end == SIZE_MAX ? m : end + 2;    /* keep that CRLF */
    *nout = 0;
    for (size_t i = 2; i < stop; i++) {
        if (s[i] == '.' && s[i - 1] == '\n' && s[i - 2] == '\r')
            continue;
        out[(*nout)++] = s[i];
    }
    if (end == SIZE_MAX) {
        /* not ended: a trailing CRLF"." or CRLF".\r" is held back */
        if (m >= 4 && !memcmp(s + m - 4, "\r\n.\r", 4))
            (*nout)--;      /* its CR is not out yet */
        *used = n;
        return 0;
    }
    *used = end + 5 - 2;
    return 1;
}

static int feed_cut(const char *in, size_t n, const size_t *cuts, size_t ncuts, char *out,
                    size_t *nout, size_t *used, uint64_t max)
{
    lmtp_data d;
    lmtp_data_init(&d, max);
    *nout = 0;
    size_t at = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t to = k < ncuts ? cuts[k] : n;
        if (to < at)
            continue;
        size_t got, u;
        int r = lmtp_data_feed(&d, in + at, to - at, out + *nout, &got, &u);
        *nout += got;
        if (r == 1) {
            *used = at + u;
            return 1;
        }
        if (u != to - at)
            return -1;
        at = to;
    }
    *used = n;
    return 0;
}

static void expect_data(const char *in, const char *want, int want_end, size_t want_used)
{
    char out[256];
    size_t nout, used;
    size_t n = strlen(in);
    int r = feed_cut(in, n, NULL, 0, out, &nout, &used, UINT64_MAX);
    CHECK_EQ(r, want_end);
    CHECK_EQ(used, want_used);
    CHECK(nout == strlen(want) && !memcmp(out, want, nout));
}

static void test_data_cases(void)
{
    expect_data("Hello\r\n.\r\n", "Hello\r\n", 1, 10);
    expect_data(".\r\n", "", 1, 3);
    expect_data("\r\n.\r\n", "\r\n", 1, 5);
    expect_data("..x\r\n.\r\n", ".x\r\n", 1, 8);
    expect_data("a\r\n..\r\n.\r\n", "a\r\n.\r\n", 1, 10);
    expect_data("x\r\n.\r\nQUIT\r\n", "x\r\n", 1, 6);     /* the next command stays */
    /* a bare LF is data: neither "\n.\n" nor "\r\n.\n" nor "\n.\r\n" ends it
     * (SMTP smuggling) */
    expect_data("a\n.\nb\r\n.\r\n", "a\n.\nb\r\n", 1, 10);
    expect_data("a\r\n.\nb\r\n.\r\n", "a\r\n\nb\r\n", 1, 11);
    expect_data("a\n.\r\nb\r\n.\r\n", "a\n.\r\nb\r\n", 1, 11);
    expect_data(".\rX\r\n.\r\n", "\rX\r\n", 1, 8);
    expect_data("a\r\r\n.\r\n", "a\r\r\n", 1, 7);
    expect_data("abc", "abc", 0, 3);
    expect_data("abc\r\n.", "abc\r\n", 0, 6);

    /* over the limit: counted, not kept */
    lmtp_data d;
    lmtp_data_init(&d, 4);
    char out[64];
    size_t nout, used;
    CHECK_EQ(lmtp_data_feed(&d, "123456789\r\n.\r\n", 14, out, &nout, &used), 1);
    CHECK_EQ(nout, 4);
    CHECK(!memcmp(out, "1234", 4));
    CHECK_EQ(d.size, 11);
    CHECK_EQ(used, 14);
}

static uint64_t rng = 88172645463325252ull;
static uint64_t xorshift(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void test_data_random(void)
{
    static const char alphabet[] = ".\r\na";
    int rounds = test_quick() ? 20000 : 200000, bad = 0;
    for (int r = 0; r < rounds && bad < 5; r++) {
        char in[64];
        size_t n = (size_t)(xorshift() % sizeof in);
        for (size_t i = 0; i < n; i++)
            in[i] = alphabet[xorshift() % 4];
        char want[128], got[128];
        size_t nwant, uwant, ngot, ugot;
        int ew = ref_decode(in, n, want, &nwant, &uwant);
        size_t cuts[8], ncuts = (size_t)(xorshift() % 8);
        for (size_t k = 0; k < ncuts; k++)
            cuts[k] = n ? (size_t)(xorshift() % (n + 1)) : 0;
        for (size_t a = 1; a < ncuts; a++)         /* sorted */
            for (size_t b = a; b > 0 && cuts[b - 1] > cuts[b]; b--) {
                size_t t = cuts[b];
                cuts[b] = cuts[b - 1];
                cuts[b - 1] = t;
            }
        int eg = feed_cut(in, n, cuts, ncuts, got, &ngot, &ugot, UINT64_MAX);
        if (ew != eg || uwant != ugot || nwant != ngot || memcmp(want, got, nwant)) {
            fprintf(stderr, "  data decoder differs on %zu bytes (end %d/%d, used %zu/%zu, "
                    "out %zu/%zu)\n", n, ew, eg, uwant, ugot, nwant, ngot);
            bad++;
        }
    }
    CHECK_EQ(bad, 0);
}

int main(void)
{
    RUN(test_verbs);
    RUN(test_limits);
    RUN(test_mail);
    RUN(test_rcpt);
    RUN(test_bdat);
    RUN(test_data_cases);
    RUN(test_data_random);
    return test_summary();
}
