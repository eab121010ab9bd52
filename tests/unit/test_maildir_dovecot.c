/* tests/unit/test_maildir_dovecot.c — the parsers of Dovecot's Maildir side
 * files and names (tools/admin_dovecot.c): dovecot-uidlist headers and
 * records of both versions, dovecot-keywords lines, message file names
 * (flags, keyword letters, S= and W=), Dovecot's order of new files,
 * Maildir++ folder names and subscriptions lines; each with its malformed
 * forms. */
#include "testutil.h"

#include "tools/admin_dovecot.c"

static int hdr(const char *s, admin_uidlist_hdr *h)
{
    return admin_uidlist_header(s, strlen(s), h);
}

static void t_uidlist_header(void)
{
    admin_uidlist_hdr h;
    REQUIRE_OK(hdr("3 V1796632132 N5 G31f3c705426e166b7e5a000083ecc375", &h));
    CHECK_EQ(h.version, 3);
    CHECK_EQ(h.uidvalidity, 1796632132u);
    CHECK_EQ(h.nextuid, 5);
    /* Fields in another order, unknown ones, no GUID. */
    REQUIRE_OK(hdr("3 G00 N4294967295 X7 V1", &h));
    CHECK_EQ(h.uidvalidity, 1);
    CHECK_EQ(h.nextuid, 4294967295u);
    REQUIRE_OK(hdr("3 V9 N1", &h));
    CHECK_EQ(h.nextuid, 1);
    REQUIRE_OK(hdr("1 1035108000 23", &h));
    CHECK_EQ(h.version, 1);
    CHECK_EQ(h.uidvalidity, 1035108000u);
    CHECK_EQ(h.nextuid, 23);

    CHECK_EQ(hdr("2 V1 N1", &h), -ENOTSUP);
    CHECK_EQ(hdr("4 V1 N1", &h), -ENOTSUP);
    const char *bad[] = {
        "", "3", "3 ", "x V1 N2", "3 V1", "3 N2", "3 V0 N2", "3 V1 N0",
        "3 V N2", "3 Vx N2", "3 V1x N2", "3 V4294967296 N2", "3V1 N2",
        "1", "1 5", "1 5 ", "1 0 5", "1 5 0", "1 5 6 7", "1 a 6", "1  5 6",
        "99999999999999999999999 V1 N1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int r = hdr(bad[i], &h);
        if (r != -EINVAL)
            fprintf(stderr, "header '%s' gave %d\n", bad[i], r);
        CHECK_EQ(r, -EINVAL);
    }
}

static int rec(unsigned v, const char *s, admin_uidlist_rec *r)
{
    return admin_uidlist_record(v, s, strlen(s), r);
}

static bool name_is(const admin_uidlist_rec *r, const char *want)
{
    return r->name_len == strlen(want) && memcmp(r->name, want, r->name_len) == 0;
}

static void t_uidlist_record(void)
{
    admin_uidlist_rec r;
    REQUIRE_OK(rec(3, "1 :1796632130.M105685P23166.vm,S=17,W=20", &r));
    CHECK_EQ(r.uid, 1);
    CHECK(name_is(&r, "1796632130.M105685P23166.vm,S=17,W=20"));
    CHECK(!r.has_size && !r.has_vsize);
    /* Extension fields; the name as written with its info: the base. */
    REQUIRE_OK(rec(3, "4294967294 S1355 W1394 G0a1b Pxyz :17.M1P2.h,S=1355:2,RS", &r));
    CHECK_EQ(r.uid, 4294967294u);
    CHECK(r.has_size && r.size == 1355);
    CHECK(r.has_vsize && r.vsize == 1394);
    CHECK(name_is(&r, "17.M1P2.h,S=1355"));
    REQUIRE_OK(rec(3, "7  W5  :a!2,S", &r));
    CHECK(name_is(&r, "a"));
    CHECK(r.has_vsize && r.vsize == 5 && !r.has_size);
    /* Version 1: "<uid> <filename>"; no extension fields. */
    REQUIRE_OK(rec(1, "12 1035108000.25581_1.host:2,S", &r));
    CHECK_EQ(r.uid, 12);
    CHECK(name_is(&r, "1035108000.25581_1.host"));
    REQUIRE_OK(rec(1, "13  W5", &r));
    CHECK(name_is(&r, "W5") && !r.has_vsize);

    const char *bad3[] = {
        "", "1", "1 ", "0 :a", "x :a", "1:a", "4294967295 :a", "99999999999 :a",
        "1 a", "1 S12", "1 :", "1 ::2,S", "1 :a/b", "1 Sx :a", "1 S1x :a",
        "1 W :a", "-1 :a",
    };
    for (size_t i = 0; i < sizeof bad3 / sizeof *bad3; i++) {
        int x = rec(3, bad3[i], &r);
        if (x != -EINVAL)
            fprintf(stderr, "v3 record '%s' gave %d\n", bad3[i], x);
        CHECK_EQ(x, -EINVAL);
    }
    const char *bad1[] = { "1", "1 ", "0 a", "1 a/b", "1 :2,S" };
    for (size_t i = 0; i < sizeof bad1 / sizeof *bad1; i++)
        CHECK_EQ(rec(1, bad1[i], &r), -EINVAL);
    /* A NUL inside the line is not a name. */
    CHECK_EQ(admin_uidlist_record(3, "1 :a\0b", 6, &r), -EINVAL);
}

static void t_keywords(void)
{
    unsigned idx;
    const char *name;
    size_t len;
    const char *l = "0 $Forwarded";
    REQUIRE_OK(admin_dovecot_keyword(l, strlen(l), &idx, &name, &len));
    CHECK_EQ(idx, 0);
    CHECK(len == 10 && memcmp(name, "$Forwarded", 10) == 0);
    l = "25 foo bar";       /* the rest of the line is the name */
    REQUIRE_OK(admin_dovecot_keyword(l, strlen(l), &idx, &name, &len));
    CHECK_EQ(idx, 25);
    CHECK(len == 7 && memcmp(name, "foo bar", 7) == 0);
    const char *bad[] = { "", "0", "0 ", "a b", " 0 b", "0\tb", "9999999 x" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_EQ(admin_dovecot_keyword(bad[i], strlen(bad[i]), &idx, &name, &len), -EINVAL);
}

static void t_file_names(void)
{
    admin_maildir_name m;
    admin_maildir_name_parse("1796632130.M107167P23166.vm,S=17,W=20:2,Sab", &m);
    CHECK_EQ(m.base_len, strlen("1796632130.M107167P23166.vm,S=17,W=20"));
    CHECK_EQ(m.flags, STORE_F_SEEN);
    CHECK_EQ(m.keywords, 3);
    CHECK(m.has_size && m.size == 17 && m.has_vsize && m.vsize == 20);
    CHECK(!m.passed);

    admin_maildir_name_parse("1.x:2,DFPRSTz", &m);
    CHECK_EQ(m.flags, STORE_F_DRAFT | STORE_F_FLAGGED | STORE_F_ANSWERED |
                      STORE_F_SEEN | STORE_F_DELETED);
    CHECK(m.passed);
    CHECK_EQ(m.keywords, 1u << 25);
    CHECK(!m.has_size && !m.has_vsize);

    admin_maildir_name_parse("1.x", &m);                /* new/: no info */
    CHECK(m.base_len == 3 && m.flags == 0 && m.keywords == 0);
    admin_maildir_name_parse("1.x:2,", &m);
    CHECK(m.base_len == 3 && m.flags == 0);
    admin_maildir_name_parse("1.x!2,S", &m);            /* Windows-safe */
    CHECK(m.base_len == 3 && m.flags == STORE_F_SEEN);
    admin_maildir_name_parse("1.x;2,F", &m);
    CHECK(m.base_len == 3 && m.flags == STORE_F_FLAGGED);
    admin_maildir_name_parse("1.x:1,S", &m);            /* experimental info */
    CHECK(m.base_len == 3 && m.flags == 0);
    admin_maildir_name_parse("1.x:2,S?9%A", &m);        /* unknown letters */
    CHECK(m.flags == STORE_F_SEEN && m.keywords == 0);
    /* Size fields: only ",S=<digits>" ending at ',' or the base's end. */
    admin_maildir_name_parse("1.x,S=12x,W=9:2,S", &m);
    CHECK(!m.has_size && m.has_vsize && m.vsize == 9);
    admin_maildir_name_parse("1.x,S=,W=99999999999999999999999:2,", &m);
    CHECK(!m.has_size && !m.has_vsize);
    admin_maildir_name_parse("1.host,S=5:2,S,W=7", &m); /* W= after the info */
    CHECK(m.has_size && m.size == 5 && !m.has_vsize);
    admin_maildir_name_parse("", &m);
    CHECK(m.base_len == 0 && m.flags == 0);
}

static void t_name_order(void)
{
    /* Numeric time, not text: 999999999 comes before 1000000000. */
    CHECK(admin_maildir_name_cmp("999999999.a", "1000000000.a") < 0);
    CHECK(admin_maildir_name_cmp("1000000000.a", "999999999.a") > 0);
    /* Same second: by microseconds, numerically. */
    CHECK(admin_maildir_name_cmp("5.M9P1.h", "5.M10P1.h") < 0);
    CHECK(admin_maildir_name_cmp("5.M10P1.h", "5.M9P1.h") > 0);
    /* Then the whole name. */
    CHECK(admin_maildir_name_cmp("5.M9P1.a", "5.M9P1.b") < 0);
    CHECK(admin_maildir_name_cmp("5.x", "5.x") == 0);
    CHECK(admin_maildir_name_cmp("5.b", "5.a") > 0);
    CHECK(admin_maildir_name_cmp("abc", "5.a") < 0);     /* no time: 0 */
}

static void t_folder_names(void)
{
    char *n = NULL;
    REQUIRE_OK(admin_maildirpp_name("a", '/', &n));
    CHECK(strcmp(n, "a") == 0);
    free(n);
    REQUIRE_OK(admin_maildirpp_name("a.b.c", '/', &n));
    CHECK(strcmp(n, "a/b/c") == 0);
    free(n);
    REQUIRE_OK(admin_maildirpp_name("a.b", '.', &n));
    CHECK(strcmp(n, "a.b") == 0);
    free(n);
    REQUIRE_OK(admin_maildirpp_name("&AOk-t&AOk-.x", '/', &n));
    CHECK(strcmp(n, "\xc3\xa9t\xc3\xa9/x") == 0);
    free(n);
    REQUIRE_OK(admin_maildirpp_name("&-amp", '/', &n));          /* "&-" is '&' */
    CHECK(strcmp(n, "&amp") == 0);
    free(n);
    REQUIRE_OK(admin_maildirpp_name("caf\xc3\xa9", '/', &n));   /* mailbox_list_utf8 */
    CHECK(strcmp(n, "caf\xc3\xa9") == 0);
    free(n);
    REQUIRE_OK(admin_maildirpp_name("Sent Items", '/', &n));
    CHECK(strcmp(n, "Sent Items") == 0);
    free(n);
    const char *bad[] = {
        "", ".", "a.", ".a", "a..b", "caf\xe9", "&AOk", "&Jjo!-", "a&AOk-\xc3\xa9",
        "a\x01", "a/b",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        n = NULL;
        int r = admin_maildirpp_name(bad[i], '/', &n);
        if (r != -EINVAL)
            fprintf(stderr, "folder '%s' gave %d\n", bad[i], r);
        CHECK_EQ(r, -EINVAL);
        CHECK(n == NULL);
    }
    /* '/' is a plain character when the separator is '.'... but a mailbox
     * name may not hold it then (store.h): the store refuses it later. */
    REQUIRE_OK(admin_maildirpp_name("a/b", '.', &n));
    free(n);
}

static void t_fs_names(void)
{
    char *n = NULL;
    REQUIRE_OK(admin_dovecot_fs_name("&AOk-t&AOk-/x", '/', &n));
    CHECK(strcmp(n, "\xc3\xa9t\xc3\xa9/x") == 0);
    free(n);
    REQUIRE_OK(admin_dovecot_fs_name("a.b/c", '/', &n));  /* '.' is a character */
    CHECK(strcmp(n, "a.b/c") == 0);
    free(n);
    REQUIRE_OK(admin_dovecot_fs_name("a/b", '.', &n));
    CHECK(strcmp(n, "a.b") == 0);
    free(n);
    n = NULL;
    CHECK_EQ(admin_dovecot_fs_name("a.b", '.', &n), -EINVAL);  /* holds the separator */
    CHECK_EQ(admin_dovecot_fs_name("a//b", '/', &n), -EINVAL);
    CHECK_EQ(admin_dovecot_fs_name("", '/', &n), -EINVAL);
    CHECK_EQ(admin_dovecot_fs_name("caf\xe9", '/', &n), -EINVAL);
    CHECK(n == NULL);
}

static void t_subscriptions(void)
{
    char *n = NULL;
    const char *l = "a\tb";
    CHECK_EQ(admin_dovecot_subscription(2, l, strlen(l), '/', &n), 1);
    CHECK(n && strcmp(n, "a/b") == 0);
    free(n);
    l = "&AOk-t&AOk-\tx";
    CHECK_EQ(admin_dovecot_subscription(2, l, strlen(l), '/', &n), 1);
    CHECK(n && strcmp(n, "\xc3\xa9t\xc3\xa9/x") == 0);
    free(n);
    l = "a.b";          /* version 2: '.' is no separator */
    CHECK_EQ(admin_dovecot_subscription(2, l, strlen(l), '/', &n), 1);
    CHECK(n && strcmp(n, "a.b") == 0);
    free(n);
    CHECK_EQ(admin_dovecot_subscription(1, l, strlen(l), '/', &n), 1);
    CHECK(n && strcmp(n, "a/b") == 0);
    free(n);
    n = NULL;
    CHECK_EQ(admin_dovecot_subscription(2, "", 0, '/', &n), 0);
    CHECK(n == NULL);
    CHECK_EQ(admin_dovecot_subscription(2, "a\t", 2, '/', &n), -EINVAL);
    CHECK_EQ(admin_dovecot_subscription(2, "&Jjo", 4, '/', &n), -EINVAL);
    CHECK_EQ(admin_dovecot_subscription(2, "x/y", 3, '/', &n), -EINVAL);
}

int main(void)
{
    RUN(t_uidlist_header);
    RUN(t_uidlist_record);
    RUN(t_keywords);
    RUN(t_file_names);
    RUN(t_name_order);
    RUN(t_folder_names);
    RUN(t_fs_names);
    RUN(t_subscriptions);
    return test_summary();
}
