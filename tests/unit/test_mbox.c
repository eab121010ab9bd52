/* tests/unit/test_mbox.c — ringmail-admin's pure parsers: mboxrd reading
 * and writing, line-end conversion, Status/Maildir flags and UID sets.
 *
 * Those live in tools/ (they belong to ringmail-admin, not to a library),
 * so the test compiles their sources in directly. */
#include "tools/admin_maildir.c"
#include "tools/admin_mbox.c"
#include "tools/admin_uidset.c"

#include "testutil.h"

static bool buf_is(const admin_buf *b, const char *s)
{
    size_t l = strlen(s);
    if (b->len == l && memcmp(b->data, s, l) == 0)
        return true;
    fprintf(stderr, "  got  [%.*s]\n  want [%s]\n", (int)b->len, b->data, s);
    return false;
}

static int64_t date_of(const char *line)
{
    int64_t d = -1;
    if (admin_mbox_from_date(line, strlen(line), &d) < 0)
        return -1;
    return d;
}

static void test_from_dates(void)
{
    CHECK_EQ(date_of("From MAILER-DAEMON Thu Jan  1 00:00:01 1970"), 1);
    CHECK_EQ(date_of("From alice@example.com Sat Jan  3 01:05:34 1996"), 820631134);
    CHECK_EQ(date_of("From alice@example.com Sat Jan 03 01:05:34 1996"), 820631134);
    CHECK_EQ(date_of("From alice@example.com Sat Jan  3 01:05:34 1996\r"), 820631134);
    CHECK_EQ(date_of("From alice@example.com Sat Jan  3 01:05 1996"), 820631100);
    /* A numeric zone is honoured, before or after the year. */
    CHECK_EQ(date_of("From a@b Sat Jan  3 02:05:34 +0100 1996"), 820631134);
    CHECK_EQ(date_of("From a@b Sat Jan  3 02:05:34 1996 +0100"), 820631134);
    CHECK_EQ(date_of("From a@b Fri Jan  2 20:05:34 1996 -0500"), 820631134);
    CHECK_EQ(date_of("From a@b Sat Jan  3 01:05:34 GMT 1996"), 820631134);
    /* No sender, or a sender with blanks. */
    CHECK_EQ(date_of("From  Sat Jan  3 01:05:34 1996"), 820631134);
    CHECK_EQ(date_of("From \"a b\"@c Sat Jan  3 01:05:34 1996"), 820631134);
    CHECK_EQ(date_of("From a@b Sat Jan  3 01:05:34 1996 remote from x"), 820631134);
    /* Body text that only looks like a From_ line. */
    CHECK_EQ(date_of("From here on, everything changes."), -1);
    CHECK_EQ(date_of("From the desk of Mon Jan"), -1);
    CHECK_EQ(date_of("From a@b Sat Jan 32 01:05:34 1996"), -1);
    CHECK_EQ(date_of("From a@b Sat Foo  3 01:05:34 1996"), -1);
    CHECK_EQ(date_of("From a@b Sat Jan  3 25:05:34 1996"), -1);
    CHECK_EQ(date_of("From a@b Sat Jan  3 01:05:34"), -1);
    CHECK_EQ(date_of("From "), -1);
    CHECK_EQ(date_of("Fro"), -1);

    char line[128];
    CHECK_EQ(admin_mbox_from_line(1, line, sizeof line), 44);
    CHECK(strcmp(line, "From MAILER-DAEMON Thu Jan  1 00:00:01 1970\n") == 0);
    CHECK(admin_mbox_from_line(1700000000, line, sizeof line) > 0);
    CHECK(strcmp(line, "From MAILER-DAEMON Tue Nov 14 22:13:20 2023\n") == 0);
    CHECK_EQ(admin_mbox_from_line(1, line, 10), -EINVAL);
    /* Formatting and parsing agree over a range of dates. */
    for (int64_t t = 1; t < 4102444800; t += 86400 * 37 + 3671) {
        int n = admin_mbox_from_line(t, line, sizeof line);
        REQUIRE(n > 0);
        CHECK_EQ(date_of(line), t);
    }
}

static void test_crlf(void)
{
    admin_buf b = { 0 };
    REQUIRE_OK(admin_mbox_to_crlf("a\nb\r\nc", 6, false, &b));
    CHECK(buf_is(&b, "a\r\nb\r\nc"));
    b.len = 0;
    REQUIRE_OK(admin_mbox_to_crlf("\n\n", 2, false, &b));
    CHECK(buf_is(&b, "\r\n\r\n"));
    b.len = 0;
    REQUIRE_OK(admin_mbox_to_crlf("x\ry\n", 4, false, &b));   /* a bare CR stays */
    CHECK(buf_is(&b, "x\ry\r\n"));
    b.len = 0;
    const char *q = ">From a\n>>From b\n>Fro c\n> From d\nFrom e\n>From";
    REQUIRE_OK(admin_mbox_to_crlf(q, strlen(q), true, &b));
    CHECK(buf_is(&b, "From a\r\n>From b\r\n>Fro c\r\n> From d\r\nFrom e\r\n>From"));
    b.len = 0;
    REQUIRE_OK(admin_mbox_to_crlf(q, strlen(q), false, &b));
    CHECK(buf_is(&b, ">From a\r\n>>From b\r\n>Fro c\r\n> From d\r\nFrom e\r\n>From"));
    b.len = 0;
    REQUIRE_OK(admin_mbox_to_crlf("", 0, true, &b));
    CHECK_EQ(b.len, 0);
    free(b.data);
}

static void test_quote(void)
{
    admin_buf b = { 0 };
    const char *m = "Subject: x\r\n\r\nFrom a\r\n>From b\r\n>>From c\r\n>Fro d\r\nFromage\r\n";
    REQUIRE_OK(admin_mbox_quote(m, strlen(m), &b));
    CHECK(buf_is(&b, "Subject: x\n\n>From a\n>>From b\n>>>From c\n>Fro d\nFromage\n\n"));
    b.len = 0;
    REQUIRE_OK(admin_mbox_quote("no newline", 10, &b));
    CHECK(buf_is(&b, "no newline\n\n"));
    b.len = 0;
    REQUIRE_OK(admin_mbox_quote("", 0, &b));        /* empty message */
    CHECK(buf_is(&b, "\n"));
    b.len = 0;
    REQUIRE_OK(admin_mbox_quote("a\r\n\r\n", 5, &b));
    CHECK(buf_is(&b, "a\n\n\n"));
    free(b.data);
}

struct got {
    char text[256];
    int64_t date;
    unsigned long line;
};

/* Split an mbox text; returns the number of messages (or -1). */
static int split(const char *mbox, struct got *g, int max)
{
    admin_mbox_reader r;
    if (admin_mbox_reader_init(&r, mbox, strlen(mbox)) < 0)
        return -1;
    const char *m;
    size_t l;
    int n = 0;
    while (n < max && admin_mbox_next(&r, &m, &l, &g[n].date, &g[n].line) == 1) {
        snprintf(g[n].text, sizeof g[n].text, "%.*s", (int)l, m);
        n++;
    }
    return n;
}

static void test_reader(void)
{
    struct got g[8];
    const char *mbox =
        "From a@b Thu Jan  1 00:00:01 1970\n"
        "Subject: one\n"
        "\n"
        ">From quoted\n"
        "From here on, not a separator.\n"
        "\n"
        "From MAILER-DAEMON Thu Jan  1 00:00:02 1970\n"
        "Subject: two\n"
        "\n"
        "\n"                                    /* empty body + separator */
        "From MAILER-DAEMON Thu Jan  1 00:00:03 1970\n"
        "\n"                                    /* empty message */
        "From MAILER-DAEMON Thu Jan  1 00:00:04 1970\n"
        "Subject: last, no final blank line\n";
    int n = split(mbox, g, 8);
    REQUIRE(n == 4);
    CHECK(strcmp(g[0].text, "Subject: one\n\n>From quoted\nFrom here on, not a separator.\n") == 0);
    CHECK(strcmp(g[1].text, "Subject: two\n\n") == 0);
    CHECK(strcmp(g[2].text, "") == 0);
    CHECK(strcmp(g[3].text, "Subject: last, no final blank line\n") == 0);
    CHECK_EQ(g[0].date, 1);
    CHECK_EQ(g[3].date, 4);
    CHECK_EQ(g[0].line, 1);
    CHECK_EQ(g[1].line, 7);
    CHECK_EQ(g[2].line, 11);
    CHECK_EQ(g[3].line, 13);

    /* CRLF mbox: the separator's blank line is CRLF too. */
    n = split("From a Thu Jan  1 00:00:01 1970\r\nA: 1\r\n\r\nb\r\n\r\n"
              "From a Thu Jan  1 00:00:02 1970\r\nA: 2\r\n\r\n", g, 8);
    REQUIRE(n == 2);
    CHECK(strcmp(g[0].text, "A: 1\r\n\r\nb\r\n") == 0);
    CHECK(strcmp(g[1].text, "A: 2\r\n") == 0);

    /* A first From_ line without a date still starts a message. */
    n = split("From nobody\nX: 1\n\n", g, 8);
    REQUIRE(n == 1);
    CHECK_EQ(g[0].date, 0);
    CHECK(strcmp(g[0].text, "X: 1\n") == 0);

    CHECK_EQ(split("Subject: not an mbox\n", g, 8), -1);
    CHECK_EQ(split("", g, 8), 0);
    n = split("From a Thu Jan  1 00:00:01 1970", g, 8);   /* no newline at all */
    REQUIRE(n == 1);
    CHECK(strcmp(g[0].text, "") == 0);
}

/* Write random messages as mboxrd, read them back: the bytes (as CRLF) and
 * dates must survive, whatever "From " lines and quoting they contain. */
static void test_round_trip(void)
{
    static const char *const pieces[] = {
        "From ", ">From ", ">>From x", "From", "text", ">", "\n", "\n", "\n",
        "\r\n", "Status: RO\n", " ", "F", "rom ",
    };
    unsigned seed = 12345;
    admin_buf mbox = { 0 }, back = { 0 }, want = { 0 };
    char msgs[200][300];
    int64_t dates[200];
    for (int i = 0; i < 200; i++) {
        char *m = msgs[i];
        m[0] = '\0';
        size_t l = 0;
        int parts = (int)((seed = seed * 1103515245 + 12345) >> 16) % 30;
        for (int k = 0; k < parts; k++) {
            const char *p = pieces[((seed = seed * 1103515245 + 12345) >> 16) %
                                   (sizeof pieces / sizeof *pieces)];
            if (l + strlen(p) + 2 >= sizeof msgs[i])
                break;
            strcpy(m + l, p);
            l += strlen(p);
        }
        /* Export always ends a message with a newline: test that form
         * (admin_mbox_quote's missing-newline case is tested above). */
        if (l && m[l - 1] != '\n')
            strcpy(m + l, "\n");
        dates[i] = 1000000 + i * 7919;
        char line[128];
        int fl = admin_mbox_from_line(dates[i], line, sizeof line);
        REQUIRE(fl > 0);
        REQUIRE_OK(admin_buf_reserve(&mbox, (size_t)fl));
        memcpy(mbox.data + mbox.len, line, (size_t)fl);
        mbox.len += (size_t)fl;
        REQUIRE_OK(admin_mbox_quote(m, strlen(m), &mbox));
    }
    admin_mbox_reader r;
    REQUIRE_OK(admin_mbox_reader_init(&r, mbox.data, mbox.len));
    const char *m;
    size_t l;
    int64_t d;
    unsigned long line;
    int i = 0;
    for (; admin_mbox_next(&r, &m, &l, &d, &line) == 1; i++) {
        REQUIRE(i < 200);
        back.len = want.len = 0;
        REQUIRE_OK(admin_mbox_to_crlf(m, l, true, &back));
        REQUIRE_OK(admin_mbox_to_crlf(msgs[i], strlen(msgs[i]), false, &want));
        if (back.len != want.len || memcmp(back.data, want.data, back.len) != 0) {
            fprintf(stderr, "  message %d differs: [%s]\n", i, msgs[i]);
            CHECK(0);
        }
        CHECK_EQ(d, dates[i]);
    }
    CHECK_EQ(i, 200);
    free(mbox.data);
    free(back.data);
    free(want.data);
}

static void test_flags(void)
{
    const char *m1 = "Subject: x\nStatus: RO\nX-Status: AF\n\nStatus: D\n";
    CHECK_EQ(admin_mbox_flags(m1, strlen(m1)), STORE_F_SEEN | STORE_F_ANSWERED | STORE_F_FLAGGED);
    const char *m2 = "status: O\r\nx-status: DT\r\n\r\n";
    CHECK_EQ(admin_mbox_flags(m2, strlen(m2)), STORE_F_DELETED | STORE_F_DRAFT);
    const char *m3 = "X-Status-Note: R\nSubject: Status: R\n";
    CHECK_EQ(admin_mbox_flags(m3, strlen(m3)), 0);
    CHECK_EQ(admin_mbox_flags("", 0), 0);

    /* The fields that became flags leave the header; nothing else does. */
    char d1[] = "Subject: x\nStatus: RO\nX-Status: AF\n\tfolded\nTo: y\n\nStatus: D\n";
    size_t l1 = admin_mbox_drop_status(d1, strlen(d1));
    CHECK(l1 == strlen("Subject: x\nTo: y\n\nStatus: D\n") &&
          memcmp(d1, "Subject: x\nTo: y\n\nStatus: D\n", l1) == 0);
    char d2[] = "status: O\r\nX-Status-Note: R\r\nSubject: Status: R\r\n x\r\n\r\nX-Status: A\r\n";
    const char *w2 = "X-Status-Note: R\r\nSubject: Status: R\r\n x\r\n\r\nX-Status: A\r\n";
    size_t l2 = admin_mbox_drop_status(d2, strlen(d2));
    CHECK(l2 == strlen(w2) && memcmp(d2, w2, l2) == 0);
    char d3[] = "Status: RO";                   /* a header without a line end */
    CHECK_EQ(admin_mbox_drop_status(d3, strlen(d3)), 0);
    char d4[] = "\nStatus: RO\n";               /* empty header: all body */
    CHECK_EQ(admin_mbox_drop_status(d4, strlen(d4)), strlen("\nStatus: RO\n"));
    CHECK_EQ(admin_mbox_drop_status(d4, 0), 0);

    CHECK_EQ(admin_maildir_flags("1700000000.M1P2.host:2,FRS"),
             STORE_F_FLAGGED | STORE_F_ANSWERED | STORE_F_SEEN);
    CHECK_EQ(admin_maildir_flags("1700000000.M1P2.host:2,DT"), STORE_F_DRAFT | STORE_F_DELETED);
    CHECK_EQ(admin_maildir_flags("1700000000.M1P2.host!2,S"), STORE_F_SEEN);
    CHECK_EQ(admin_maildir_flags("1700000000.M1P2.host:2,Pab"), 0);
    CHECK_EQ(admin_maildir_flags("1700000000.M1P2.host:2,"), 0);
    CHECK_EQ(admin_maildir_flags("1700000000.M1P2.host"), 0);
    CHECK_EQ(admin_maildir_flags("FRS"), 0);
}

static void test_maildir_scan(void)
{
    const char *d = test_tmpdir("maildir");
    char p[600];
    snprintf(p, sizeof p, "%s/cur", d);
    REQUIRE(mkdir(p, 0700) == 0);
    CHECK(!admin_is_maildir(d));
    snprintf(p, sizeof p, "%s/new", d);
    REQUIRE(mkdir(p, 0700) == 0);
    CHECK(admin_is_maildir(d));
    const struct { const char *name; int64_t mtime; } files[] = {
        { "cur/200.b:2,S", 200 }, { "new/100.c", 100 }, { "cur/200.a:2,F", 200 },
        { "cur/.hidden", 50 },
    };
    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", d, files[i].name);
        FILE *f = fopen(p, "w");
        REQUIRE(f);
        fputs("Subject: x\n\nbody\n", f);
        fclose(f);
        struct timespec ts[2] = { { files[i].mtime, 0 }, { files[i].mtime, 0 } };
        REQUIRE(utimensat(AT_FDCWD, p, ts, 0) == 0);
    }
    admin_maildir_entry *v;
    size_t n;
    REQUIRE_OK(admin_maildir_scan(d, &v, &n));
    REQUIRE(n == 3);
    CHECK(strstr(v[0].path, "/new/100.c") != NULL);
    CHECK(strstr(v[1].path, "/cur/200.a:2,F") != NULL);
    CHECK(strstr(v[2].path, "/cur/200.b:2,S") != NULL);
    CHECK_EQ(v[0].mtime, 100);
    CHECK_EQ(v[1].flags, STORE_F_FLAGGED);
    CHECK_EQ(v[2].flags, STORE_F_SEEN);
    CHECK_EQ(v[0].size, 17);
    admin_maildir_free(v, n);
    snprintf(p, sizeof p, "%s/none", d);
    CHECK_EQ(admin_maildir_scan(p, &v, &n), -ENOENT);
}

static void test_uidset(void)
{
    store_range *r;
    size_t n;
    REQUIRE_OK(admin_uidset_parse("1,3:5,7:*", &r, &n));
    REQUIRE(n == 3);
    CHECK(r[0].lo == 1 && r[0].hi == 1);
    CHECK(r[1].lo == 3 && r[1].hi == 5);
    CHECK(r[2].lo == 7 && r[2].hi == UINT32_MAX);
    free(r);
    /* sorted and merged, as the server's sets are */
    REQUIRE_OK(admin_uidset_parse("9:2,*,4294967295", &r, &n));
    REQUIRE(n == 2);
    CHECK(r[0].lo == 2 && r[0].hi == 9);
    CHECK(r[1].lo == UINT32_MAX && r[1].hi == UINT32_MAX);
    free(r);
    REQUIRE_OK(admin_uidset_parse("7:9,1,3:4,5,2", &r, &n));
    REQUIRE(n == 2);
    CHECK(r[0].lo == 1 && r[0].hi == 5);
    CHECK(r[1].lo == 7 && r[1].hi == 9);
    free(r);
    REQUIRE_OK(admin_uidset_parse("*:3", &r, &n));
    CHECK(n == 1 && r[0].lo == 3 && r[0].hi == UINT32_MAX);
    free(r);
    const char *bad[] = { "", "0", "01", "1,", ",1", "1::2", "1:", ":1", "a", "1-3",
                          "4294967296", "1 ,2", "1,,2", "**", "3:*:4", "-1" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        r = NULL;
        int rc = admin_uidset_parse(bad[i], &r, &n);
        if (rc != -EINVAL)
            fprintf(stderr, "  '%s' was accepted\n", bad[i]);
        CHECK_EQ(rc, -EINVAL);
        CHECK(r == NULL);
    }
}

int main(void)
{
    RUN(test_from_dates);
    RUN(test_crlf);
    RUN(test_quote);
    RUN(test_reader);
    RUN(test_round_trip);
    RUN(test_flags);
    RUN(test_maildir_scan);
    RUN(test_uidset);
    return test_summary();
}
