/* tests/unit/test_mig_imap.c — ringmail-migrate's IMAP client: responses
 * read whole with their literals, the tokens inside them, the bounds a
 * hostile or broken server runs into, and the --from URL. */
#include <sys/socket.h>

#include "testutil.h"
#include "tools/migrate/mig_imap.h"

/* A client over one end of a socketpair; the test writes the server's
 * bytes to *srv. */
static mig_conn *pair(int *srv)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        return NULL;
    mig_conn *c;
    if (mig_conn_fd(sv[0], &c) < 0)
        return NULL;
    *srv = sv[1];
    return c;
}

static void say(int fd, const char *s)
{
    size_t n = strlen(s);
    CHECK_EQ(write(fd, s, n), (long long)n);
}

static void t_literal_inline(void)
{
    int srv;
    mig_conn *c = pair(&srv);
    REQUIRE(c);
    say(srv, "* 3 FETCH (UID 7 FLAGS (\\Seen $Junk) BODY[] {12}\r\nab\r\n{1}\r\n)x) "
             "INTERNALDATE \"01-Jul-2024 12:00:00 +0200\")\r\nm1 OK done\r\n");
    mig_resp r;
    REQUIRE_OK(mig_read(c, &r));
    CHECK(!r.tagged);
    mig_cur cur = { r.data, r.data + r.len };
    const char *s;
    size_t n;
    bool q;
    CHECK_EQ(mig_next(&cur, &s, &n, NULL), MIG_T_ATOM);             /* * */
    CHECK_EQ(mig_next(&cur, &s, &n, NULL), MIG_T_ATOM);             /* 3 */
    CHECK_EQ(mig_next(&cur, &s, &n, NULL), MIG_T_ATOM);             /* FETCH */
    CHECK_EQ(mig_next(&cur, &s, &n, NULL), MIG_T_LPAREN);
    CHECK_EQ(mig_next(&cur, &s, &n, NULL), MIG_T_ATOM);
    CHECK(n == 3 && memcmp(s, "UID", 3) == 0);
    CHECK_EQ(mig_next(&cur, &s, &n, NULL), MIG_T_ATOM);
    CHECK_EQ(mig_next(&cur, &s, &n, NULL), MIG_T_ATOM);             /* FLAGS */
    CHECK_EQ(mig_skip(&cur), 0);                                     /* (...) */
    CHECK_EQ(mig_next(&cur, &s, &n, NULL), MIG_T_ATOM);
    CHECK(n == 6 && memcmp(s, "BODY[]", 6) == 0);
    /* the literal's bytes may look like a literal or a parenthesis */
    CHECK_EQ(mig_next(&cur, &s, &n, &q), MIG_T_STRING);
    CHECK(n == 12 && memcmp(s, "ab\r\n{1}\r\n)x) ", 12) == 0);
    CHECK(!q);
    CHECK_EQ(mig_next(&cur, &s, &n, NULL), MIG_T_ATOM);
    CHECK_EQ(mig_next(&cur, &s, &n, &q), MIG_T_STRING);
    CHECK(q && n == 26);
    CHECK_EQ(mig_next(&cur, &s, &n, NULL), MIG_T_RPAREN);
    CHECK_EQ(mig_next(&cur, &s, &n, NULL), MIG_T_END);
    REQUIRE_OK(mig_read(c, &r));
    CHECK(r.tagged && r.tag == 1);
    char err[64];
    CHECK_EQ(mig_tagged_status(&r, err, sizeof err), 0);
    CHECK(strcmp(err, "done") == 0);
    close(srv);
    CHECK_EQ(mig_read(c, &r), -ECONNRESET);
    mig_close(c);
}

static void t_quoted_and_codes(void)
{
    int srv;
    mig_conn *c = pair(&srv);
    REQUIRE(c);
    say(srv, "* LIST (\\HasNoChildren) \".\" \"a \\\"b\\\\c\"\r\n"
             "* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"
             "m2 NO [NONEXISTENT] no such mailbox\r\n"
             "m3 BAD what\r\n");
    mig_resp r;
    REQUIRE_OK(mig_read(c, &r));
    mig_cur cur = { r.data, r.data + r.len };
    const char *s;
    size_t n;
    bool q;
    for (int i = 0; i < 2; i++)
        mig_next(&cur, &s, &n, NULL);
    CHECK_EQ(mig_skip(&cur), 0);
    CHECK_EQ(mig_next(&cur, &s, &n, &q), MIG_T_STRING);
    CHECK_EQ(mig_next(&cur, &s, &n, &q), MIG_T_STRING);
    char *name = mig_strdup_tok(s, n, q);
    CHECK(name && strcmp(name, "a \"b\\c") == 0);
    free(name);
    REQUIRE_OK(mig_read(c, &r));
    uint64_t v = 0;
    CHECK(mig_resp_code(&r, "UIDVALIDITY", &v));
    CHECK_EQ(v, 3857529045ull);
    CHECK(!mig_resp_code(&r, "UIDNEXT", &v));
    REQUIRE_OK(mig_read(c, &r));
    CHECK_EQ(mig_tagged_status(&r, NULL, 0), -EACCES);
    CHECK(mig_resp_code(&r, "NONEXISTENT", NULL));
    REQUIRE_OK(mig_read(c, &r));
    CHECK_EQ(mig_tagged_status(&r, NULL, 0), -EPROTO);
    close(srv);
    mig_close(c);
}

/* Bounds: a literal over MIG_MAX_LITERAL is refused before any allocation,
 * a line without CR is a protocol error, an unterminated quoted string or
 * a literal longer than the response is a bad token. */
static void t_bounds(void)
{
    int srv;
    mig_conn *c = pair(&srv);
    REQUIRE(c);
    say(srv, "* 1 FETCH (BODY[] {99999999999}\r\n");
    mig_resp r;
    CHECK_EQ(mig_read(c, &r), -EFBIG);
    close(srv);
    mig_close(c);

    c = pair(&srv);
    REQUIRE(c);
    say(srv, "* 1 FETCH (BODY[] {600000000}\r\n");
    CHECK_EQ(mig_read(c, &r), -EFBIG);
    close(srv);
    mig_close(c);

    c = pair(&srv);
    REQUIRE(c);
    say(srv, "* OK bare line feed\n");
    CHECK_EQ(mig_read(c, &r), -EPROTO);
    close(srv);
    mig_close(c);

    const char *bad[] = { "(\"open", "{5}\r\nabc", "{x}\r\n", "\"a\\qb\"" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        mig_cur cur = { bad[i], bad[i] + strlen(bad[i]) };
        const char *s;
        size_t n;
        mig_tok t;
        while ((t = mig_next(&cur, &s, &n, NULL)) != MIG_T_END && t != MIG_T_ERR)
            ;
        CHECK_EQ(t, MIG_T_ERR);
    }
}

static void t_long_line(void)
{
    int srv;
    mig_conn *c = pair(&srv);
    REQUIRE(c);
    /* more than MIG_MAX_LINE without a line end: refused, not buffered */
    if (fork() == 0) {
        char buf[65536];
        memset(buf, 'a', sizeof buf);
        for (size_t sent = 0; sent < MIG_MAX_LINE + sizeof buf; sent += sizeof buf)
            if (write(srv, buf, sizeof buf) < 0)
                break;
        _exit(0);
    }
    mig_resp r;
    CHECK_EQ(mig_read(c, &r), -E2BIG);
    close(srv);
    mig_close(c);
    wait(NULL);
}

static void t_url(void)
{
    mig_url u;
    CHECK_EQ(mig_url_parse("imaps://mail.example.net", &u), 0);
    CHECK(u.tls && strcmp(u.host, "mail.example.net") == 0 && strcmp(u.port, "993") == 0);
    CHECK_EQ(mig_url_parse("imap://127.0.0.1:1143/", &u), 0);
    CHECK(!u.tls && strcmp(u.host, "127.0.0.1") == 0 && strcmp(u.port, "1143") == 0);
    CHECK_EQ(mig_url_parse("imaps://[::1]:9993", &u), 0);
    CHECK(strcmp(u.host, "::1") == 0 && strcmp(u.port, "9993") == 0);
    CHECK_EQ(mig_url_parse("pop3://x", &u), -EINVAL);
    CHECK_EQ(mig_url_parse("imap://", &u), -EINVAL);
    CHECK_EQ(mig_url_parse("imap://h:99999999", &u), -EINVAL);
    CHECK_EQ(mig_url_parse("imap://h:12x", &u), -EINVAL);
}

int main(void)
{
    RUN(t_literal_inline);
    RUN(t_quoted_and_codes);
    RUN(t_bounds);
    RUN(t_long_line);
    RUN(t_url);
    return test_summary();
}
