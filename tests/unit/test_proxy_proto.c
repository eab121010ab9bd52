/* tests/unit/test_proxy_proto.c — the PROXY protocol header parser
 * (core/server/proxy_proto.c) and the auth_http request parser
 * (core/server/auth_http.c): complete, partial and malformed input. */
#include "testutil.h"

#include "core/server/auth_http.h"
#include "core/server/proxy_proto.h"

static int parse(const void *p, size_t n, size_t *used, char *peer)
{
    return proxy_proto_parse(p, n, used, peer, 64);
}

static void test_v1(void)
{
    const char *h = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 143\r\nA1 LOGIN x y\r\n";
    size_t used;
    char peer[64];
    CHECK_EQ(parse(h, strlen(h), &used, peer), 1);
    CHECK_EQ(used, strlen("PROXY TCP4 192.0.2.7 198.51.100.1 56324 143\r\n"));
    CHECK(!strcmp(peer, "192.0.2.7:56324"));
    const char *h6 = "PROXY TCP6 2001:db8::1 2001:db8::2 1000 143\r\n";
    CHECK_EQ(parse(h6, strlen(h6), &used, peer), 1);
    CHECK(!strcmp(peer, "[2001:db8::1]:1000"));
    /* byte by byte: incomplete until the LF */
    for (size_t i = 0; i < strlen(h6) - 1; i++)
        CHECK_EQ(parse(h6, i, &used, peer), 0);
    const char *unk = "PROXY UNKNOWN whatever\r\n";
    CHECK_EQ(parse(unk, strlen(unk), &used, peer), 1);
    CHECK(peer[0] == '\0');
    CHECK_EQ(used, strlen(unk));
}

static void test_v1_bad(void)
{
    size_t used;
    char peer[64];
    const char *bad[] = {
        "A1 LOGIN x y\r\n",                                  /* no header at all */
        "PROXY TCP4 192.0.2.7 198.51.100.1 56324 143\n",     /* no CR */
        "PROXY TCP4 300.0.2.7 198.51.100.1 56324 143\r\n",   /* bad address */
        "PROXY TCP4 192.0.2.7 198.51.100.1 70000 143\r\n",   /* bad port */
        "PROXY TCP5 192.0.2.7 198.51.100.1 1 143\r\n",       /* bad family */
        "PROXY TCP6 192.0.2.7 198.51.100.1 1 143\r\n",       /* v4 in TCP6 */
        "proxy TCP4 192.0.2.7 198.51.100.1 1 143\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_EQ(parse(bad[i], strlen(bad[i]), &used, peer), -EINVAL);
    char longline[200];
    memset(longline, 'x', sizeof longline);
    memcpy(longline, "PROXY ", 6);
    CHECK_EQ(parse(longline, sizeof longline, &used, peer), -EINVAL);
}

static void test_v2(void)
{
    uint8_t h[64] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
                     0x21, 0x11, 0x00, 12 + 4,
                     192, 0, 2, 9, 10, 0, 0, 1, 0xC3, 0x50, 0x00, 143,
                     /* a TLV (NOOP, type 4) that is skipped */ 0x04, 0x00, 0x01, 0x00};
    size_t n = 16 + 16, used;
    char peer[64];
    CHECK_EQ(parse(h, n, &used, peer), 1);
    CHECK_EQ(used, n);
    CHECK(!strcmp(peer, "192.0.2.9:50000"));
    for (size_t i = 0; i < n; i++)
        CHECK_EQ(parse(h, i, &used, peer), 0);
    /* LOCAL: the connection's own address */
    h[12] = 0x20;
    CHECK_EQ(parse(h, n, &used, peer), 1);
    CHECK(peer[0] == '\0');
    /* version 3: refused */
    h[12] = 0x31;
    CHECK_EQ(parse(h, n, &used, peer), -EINVAL);
    /* TCP4 with too few address bytes */
    h[12] = 0x21;
    h[15] = 8;
    CHECK_EQ(parse(h, 16 + 8, &used, peer), -EINVAL);
    /* over the bound */
    h[14] = 0x10;
    h[15] = 0;
    CHECK_EQ(parse(h, 16, &used, peer), -EINVAL);
}

static void test_auth_http_request(void)
{
    char req[] = "GET /auth HTTP/1.0\r\nHost: localhost\r\nAuth-Method: plain\r\n"
                 "Auth-User: al%20ice\r\nAuth-Pass: p%25w+d\r\nAuth-Protocol: imap\r\n"
                 "Auth-Login-Attempt: 3\r\nClient-IP: 192.0.2.42\r\n"
                 "Client-Host: [UNAVAILABLE]\r\n\r\nbody";
    size_t end = auth_http_head_end(req, strlen(req));
    CHECK_EQ(end, strlen(req) - 4);
    CHECK_EQ(auth_http_head_end(req, end - 1), 0);
    auth_http_req r;
    REQUIRE(auth_http_parse(req, end, &r) == 0);
    CHECK(!strcmp(r.method, "GET") && !strcmp(r.target, "/auth"));
    CHECK(!strcmp(r.user, "al ice"));
    CHECK(!strcmp(r.pass, "p%w+d"));
    CHECK(!strcmp(r.protocol, "imap") && !strcmp(r.auth_method, "plain"));
    CHECK(!strcmp(r.client_ip, "192.0.2.42"));
    CHECK_EQ(r.attempt, 3);

    char bad1[] = "GET /auth\r\n\r\n";
    CHECK_EQ(auth_http_parse(bad1, strlen(bad1), &r), -EINVAL);
    char bad2[] = "GET /auth HTTP/1.0\r\nAuth-Pass: %zz\r\n\r\n";
    CHECK_EQ(auth_http_parse(bad2, strlen(bad2), &r), -EINVAL);
    char bad3[] = "GET /auth HTTP/1.0\r\nAuth-Pass: a%00b\r\n\r\n";
    CHECK_EQ(auth_http_parse(bad3, strlen(bad3), &r), -EINVAL);
    char bad4[] = "GET /auth HTTP/1.0\r\nno colon here\r\n\r\n";
    CHECK_EQ(auth_http_parse(bad4, strlen(bad4), &r), -EINVAL);
    char many[4096] = "GET / HTTP/1.0\r\n";
    for (int i = 0; i < AUTH_HTTP_MAX_HEADERS + 1; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "X-%d: y\r\n", i);
    strcat(many, "\r\n");
    CHECK_EQ(auth_http_parse(many, strlen(many), &r), -E2BIG);
}

int main(void)
{
    RUN(test_v1);
    RUN(test_v1_bad);
    RUN(test_v2);
    RUN(test_auth_http_request);
    return test_summary();
}
