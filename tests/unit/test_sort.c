/* tests/unit/test_sort.c — SORT's pieces (core/search/sort.h): the base subject
 * of RFC 5256 section 2.1 rule by rule, the string preparation for
 * comparison, the sent date of section 2.2, Message-ID normalization and
 * the sort criteria grammar.  On the wire: tests/integration/test_imap_sort.py. */
#include "core/fetch/fetch_render.h"
#include "core/search/sort.h"
#include "store/msgid.h"
#include "tests/unit/testutil.h"

/* base subject of s equals want, with the reply/forward flag rep */
static void bs(const char *s, const char *want, bool rep)
{
    store_buf b = {0};
    bool r = !rep;
    REQUIRE_OK(imap_base_subject(s, strlen(s), &b, &r));
    bool ok = b.len == strlen(want) && (!b.len || !memcmp(b.data, want, b.len)) && r == rep;
    if (!ok)
        fprintf(stderr, "base subject of \"%s\": \"%.*s\" reply %d, want \"%s\" reply %d\n",
                s, (int)b.len, b.data ? (const char *)b.data : "", r, want, rep);
    CHECK(ok);
    free(b.data);
}

static void test_base_subject(void)
{
    /* nothing to remove */
    bs("Hello", "Hello", false);
    bs("", "", false);
    bs("Rebus: x", "Rebus: x", false);      /* "re" must be followed by ':' */
    bs("Fwdx: y", "Fwdx: y", false);
    /* (1) tabs and runs of spaces become one space */
    bs("  Hello \t  world\tx  ", "Hello world x", false);
    /* (2) subj-trailer: "(fwd)" and WSP, repeatedly */
    bs("Hello (fwd)", "Hello", true);
    bs("Hello (FWD)  (fwd) ", "Hello", true);
    bs("Hello(fwd)", "Hello", true);
    /* (3) subj-leader: subj-refwd, any case, with WSP and a blob before ':' */
    bs("Re: Hello", "Hello", true);
    bs("RE:Hello", "Hello", true);
    bs("Re:  Re: re: Hello", "Hello", true);
    bs("Fwd: Hello", "Hello", true);
    bs("FW: Hello", "Hello", true);
    bs("fw : Hello", "Hello", true);
    bs("Re [2]: Hello", "Hello", true);
    bs("Re[list]: Hello", "Hello", true);
    /* *subj-blob subj-refwd */
    bs("[list] Re: Hello", "Hello", true);
    bs("[a][b] Fwd: Hello", "Hello", true);
    bs("Re:", "", true);
    /* (4) a subj-blob goes only if a non-empty subj-base remains */
    bs("[list] Hello", "Hello", false);
    bs("[list]", "[list]", false);
    bs("[a][b]", "[b]", false);
    bs("[a] [b] x", "x", false);
    bs("[unclosed Hello", "[unclosed Hello", false);
    /* (5) (3) and (4) repeat */
    bs("[list] Re: [list] Re: Hello", "Hello", true);
    bs("Re: [list] Hello", "Hello", true);
    /* (6) [fwd: ...] and again from (2) */
    bs("[fwd: Hello]", "Hello", true);
    bs("[Fwd: Re: [list] Hello (fwd)]", "Hello", true);
    bs("Re: [fwd: Hello]", "Hello", true);
    bs("re: [fwd: re: hi]", "hi", true);
    bs("[fwd: Hello", "[fwd: Hello", false);   /* no subj-fwd-trl */
    /* RFC 2047 words are decoded first */
    bs("=?UTF-8?Q?Re=3A_caf=C3=A9?=", "café", true);
    bs("=?ISO-8859-1?Q?=E9t=E9?=", "été", false);
    bs("Fwd: [blob] =?ISO-8859-1?Q?=E9t=E9?= (fwd)", "été", true);
    bs("=?UTF-8?B?UmU6IEhlbGxv?=", "Hello", true);
    bs("Re: =?UTF-8?Q?a?= =?UTF-8?Q?b?=", "ab", true);
    /* NULL reply pointer is allowed */
    store_buf b = {0};
    REQUIRE_OK(imap_base_subject("Re: x", 5, &b, NULL));
    CHECK(b.len == 1 && b.data[0] == 'x');
    free(b.data);
}

static int cmp_mapped(const char *a, const char *b)
{
    store_buf x = {0}, y = {0};
    CHECK(imap_sort_casemap(a, strlen(a), &x) == 0);
    CHECK(imap_sort_casemap(b, strlen(b), &y) == 0);
    size_t n = x.len < y.len ? x.len : y.len;
    int r = n ? memcmp(x.data, y.data, n) : 0;
    if (!r)
        r = x.len < y.len ? -1 : x.len > y.len;
    free(x.data);
    free(y.data);
    return r < 0 ? -1 : r > 0;
}

static void test_casemap(void)
{
    CHECK(cmp_mapped("hello", "HELLO") == 0);
    CHECK(cmp_mapped("Ärger", "äRGER") == 0);
    CHECK(cmp_mapped("Σίσυφος", "ΣΊΣΥΦΟΣ") == 0);
    /* neither ß nor ẞ has a titlecase mapping in UnicodeData.txt */
    CHECK(cmp_mapped("straße", "STRAẞE") != 0);
    /* step 2(b): decomposition; "Été" is "E\u0301TE\u0301": after "EZ"
     * (U+0301 > 'Z'), before "F" */
    CHECK(cmp_mapped("Été", "été") == 0);
    CHECK(cmp_mapped("Été", "e\xcc\x81te\xcc\x81") == 0);
    CHECK(cmp_mapped("Été", "ez") > 0);
    CHECK(cmp_mapped("Été", "f") < 0);
    /* RFC 5051's example: U+01C4 -> U+01C5 -> U+0044 U+017E -> D z U+030C */
    store_buf b = {0};
    CHECK(imap_sort_casemap("\u01C4", 2, &b) == 0);
    CHECK(b.len == 4 && !memcmp(b.data, "Dz\xcc\x8c", 4));
    free(b.data);
    CHECK(cmp_mapped("\u01C4", "\u01C6") == 0);
    CHECK(cmp_mapped("\u01C4", "\u01C5") == 0);
    /* the decomposition is not mapped again: "D\u017E" is D Z U+030C */
    CHECK(cmp_mapped("\u01C4", "D\u017E") > 0);
    /* Hangul syllables decompose: U+AC00 is U+1100 U+1161 */
    CHECK(cmp_mapped("\uAC00", "\u1100\u1161") == 0);
    CHECK(cmp_mapped("µ", "\u039C") == 0);
    CHECK(cmp_mapped("", "a") < 0);          /* the empty string first */
    CHECK(cmp_mapped("a", "ab") < 0);
    CHECK(cmp_mapped("apple", "Banana") < 0);
    /* titlecase, not lower case: '_' (0x5F) after 'Z' (0x5A) */
    CHECK(cmp_mapped("a_", "az") > 0);
    CHECK(cmp_mapped("a[", "AZ") > 0);
}

static void date_is(const char *s, int64_t want)
{
    int64_t t = -1;
    int rc = imap_sort_parse_date(s, strlen(s), &t);
    if (rc || t != want)
        fprintf(stderr, "date \"%s\": rc %d, %lld, want %lld\n", s, rc, (long long)t,
                (long long)want);
    CHECK(rc == 0 && t == want);
}

static void test_dates(void)
{
    const int64_t jan2 = 1704153600;        /* 2024-01-02 00:00:00 UTC */
    date_is("Tue, 2 Jan 2024 13:00:00 +0100", jan2 + 12 * 3600);
    date_is("2 Jan 2024 12:00 -0000", jan2 + 12 * 3600);
    date_is("Tue, 2 Jan 2024 12:00:00 EST", jan2 + 17 * 3600);
    date_is("(c) Tue , 2 Jan 24 12:00:00 +0000 (UTC)", jan2 + 12 * 3600);
    /* RFC 5256 2.2's example */
    date_is("31 Dec 2000 16:01:33 -0800", 978307293);
    /* "If the time zone is invalid, the date and time SHOULD be treated as
     * UTC.  If the time is also invalid, the time SHOULD be treated as
     * 00:00:00." */
    date_is("2 Jan 2024 12:00:00 +9999", jan2 + 12 * 3600);
    date_is("2 Jan 2024 12:00:00 XYZ", jan2 + 12 * 3600);
    date_is("2 Jan 2024 12:00:00", jan2 + 12 * 3600);
    date_is("2 Jan 2024 25:00:00 +0100", jan2);
    date_is("2 Jan 2024 noon", jan2);
    int64_t t;
    CHECK(imap_sort_parse_date("not a date", 10, &t) == -EINVAL);
    CHECK(imap_sort_parse_date("", 0, &t) == -EINVAL);
    CHECK(imap_sort_parse_date("31 Feb 2024 00:00:00 +0000", 26, &t) == -EINVAL);
}

/* the msg-ids of s, joined by spaces */
static void ids_are(const char *s, const char *want)
{
    store_buf b = {0};
    size_t pos = 0;
    int rc;
    while ((rc = store_msgid_next(s, strlen(s), &pos, &b)) == 1)
        REQUIRE_OK(store_buf_append(&b, " ", 1));
    REQUIRE_OK(rc);
    REQUIRE_OK(store_buf_append(&b, "", 1));
    if (strcmp((const char *)b.data, want))
        fprintf(stderr, "ids of \"%s\": \"%s\", want \"%s\"\n", s, b.data, want);
    CHECK(!strcmp((const char *)b.data, want));
    free(b.data);
}

static void test_msgids(void)
{
    ids_are("<a@b>", "<a@b> ");
    /* RFC 5256's example of one Message ID written two ways */
    ids_are("<\"01KF8JCEOCBS0045PS\"@xxx.yyy.com>", "<01KF8JCEOCBS0045PS@xxx.yyy.com> ");
    ids_are("junk <a@b>\t<c@d> (x <e@f>) <g@h>", "<a@b> <c@d> <g@h> ");
    ids_are("<nope> <x@y>", "<x@y> ");
    ids_are("<@b> <a@> <> <a@b", "");
    ids_are("<a (comment) @ b>", "<a@b> ");
    ids_are("<a<b@c>", "<b@c> ");
    ids_are("<\"a b\\\"\"@c>", "<a b\"@c> ");
    ids_are("", "");
}

static int crit(const char *names, imap_sort_crit *out)
{
    /* build a LIST arg of atoms from a space-separated string */
    imap_arg items[40];
    char buf[400];
    size_t n = 0;
    snprintf(buf, sizeof buf, "%s", names);
    for (char *save = NULL, *t = strtok_r(buf, " ", &save); t && n < 40;
         t = strtok_r(NULL, " ", &save))
        items[n++] = (imap_arg){ .type = IMAP_ARG_ATOM, .s = t, .len = strlen(t) };
    imap_arg list = { .type = IMAP_ARG_LIST, .list = items, .nlist = n };
    const char *err = NULL;
    int rc = imap_sort_parse_criteria(&list, out, IMAP_SORT_MAX_CRIT, &err);
    if (rc < 0)
        CHECK(err != NULL);
    return rc;
}

static void test_criteria(void)
{
    imap_sort_crit c[IMAP_SORT_MAX_CRIT];
    CHECK(crit("ARRIVAL cc Date FROM SIZE SUBJECT TO DISPLAYFROM DISPLAYTO", c) == 9);
    CHECK(c[0].key == IMAP_SORT_ARRIVAL && c[1].key == IMAP_SORT_CC &&
          c[8].key == IMAP_SORT_DISPLAYTO && !c[8].reverse);
    CHECK(crit("REVERSE DATE SUBJECT", c) == 2);
    CHECK(c[0].key == IMAP_SORT_DATE && c[0].reverse && !c[1].reverse);
    CHECK(crit("", c) == -EINVAL);
    CHECK(crit("REVERSE", c) == -EINVAL);
    CHECK(crit("REVERSE REVERSE DATE", c) == -EINVAL);
    CHECK(crit("DATE NOPE", c) == -EINVAL);
    imap_arg atom = { .type = IMAP_ARG_ATOM, .s = "DATE", .len = 4 };
    const char *err;
    CHECK(imap_sort_parse_criteria(&atom, c, 4, &err) == -EINVAL);
    CHECK(crit("DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE "
               "DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE "
               "DATE DATE DATE", c) == -EINVAL);
    imap_thread_alg alg;
    imap_arg a1 = { .type = IMAP_ARG_ATOM, .s = "references", .len = 10 };
    imap_arg a2 = { .type = IMAP_ARG_ATOM, .s = "ORDEREDSUBJECT", .len = 14 };
    imap_arg a3 = { .type = IMAP_ARG_ATOM, .s = "JWZ", .len = 3 };
    CHECK(imap_thread_parse_alg(&a1, &alg) == 0 && alg == IMAP_THREAD_REFERENCES);
    CHECK(imap_thread_parse_alg(&a2, &alg) == 0 && alg == IMAP_THREAD_ORDEREDSUBJECT);
    CHECK(imap_thread_parse_alg(&a3, &alg) == -EINVAL);
}

static void first_is(const char *v, bool found, const char *name, const char *local,
                     const char *domain)
{
    imap_address_parts a = {0};
    store_str s = { v, (uint32_t)strlen(v) };
    REQUIRE_OK(imap_first_address(s, &a));
    bool ok = a.found == found && a.name.len == strlen(name) &&
              !memcmp(a.name.p ? a.name.p : "", name, a.name.len) &&
              a.local.len == strlen(local) && !memcmp(a.local.p ? a.local.p : "", local, a.local.len) &&
              a.domain.len == strlen(domain) &&
              !memcmp(a.domain.p ? a.domain.p : "", domain, a.domain.len);
    if (!ok)
        fprintf(stderr, "first address of \"%s\": %d \"%.*s\" \"%.*s\" \"%.*s\"\n", v, a.found,
                (int)a.name.len, a.name.p, (int)a.local.len, a.local.p, (int)a.domain.len,
                a.domain.p);
    CHECK(ok);
    imap_out_free(&a.name);
    imap_out_free(&a.local);
    imap_out_free(&a.domain);
}

static void test_first_address(void)
{
    first_is("Anna <anna@ex.org>, bob@ex.org", true, "Anna", "anna", "ex.org");
    first_is("\"Zed, Z.\" <z@ex.org>", true, "Zed, Z.", "z", "ex.org");
    first_is("mike@ex.org (Mike)", true, "Mike", "mike", "ex.org");
    first_is("=?UTF-8?Q?B=C3=A9a?= <bea@ex.org>", true, "=?UTF-8?Q?B=C3=A9a?=", "bea", "ex.org");
    /* a group's start marker comes first, as in ENVELOPE */
    first_is("undisclosed-recipients:;", true, "", "undisclosed-recipients", "");
    first_is("grp: a@ex.org;", true, "", "grp", "");
    first_is("user", true, "", "user", "");
    first_is("", false, "", "", "");
    first_is(" , ", false, "", "", "");
}

/* The reference order for one numeric criterion: the key (reversed or
 * not), then the sequence number. */
static const imap_sort_set *ref_set;
static imap_sort_crit ref_crit;

static int ref_cmp(const void *x, const void *y)
{
    const imap_sort_msg *a = &ref_set->m[*(const uint32_t *)x];
    const imap_sort_msg *b = &ref_set->m[*(const uint32_t *)y];
    int64_t ka, kb;
    switch (ref_crit.key) {
    case IMAP_SORT_ARRIVAL: ka = a->arrival; kb = b->arrival; break;
    case IMAP_SORT_DATE: ka = a->date; kb = b->date; break;
    default: ka = a->size; kb = b->size; break;
    }
    int r = ka < kb ? -1 : ka > kb;
    if (ref_crit.reverse)
        r = -r;
    return r ? r : (a->seq < b->seq ? -1 : a->seq > b->seq);
}

/* DATE, ARRIVAL and SIZE alone take the radix path: the same order as the
 * comparison sort, ties, negative and far-future dates, INT64 extremes,
 * REVERSE included. */
static void test_numeric_order(void)
{
    static const size_t sizes[] = {2, 3, 100, 5000};
    uint64_t rnd = 88172645463325252ull;
    for (size_t z = 0; z < sizeof sizes / sizeof *sizes; z++) {
        size_t n = sizes[z];
        imap_sort_set set = {0};
        set.m = calloc(n, sizeof *set.m);
        REQUIRE(set.m);
        set.n = set.cap = n;
        for (size_t i = 0; i < n; i++) {
            rnd ^= rnd << 13, rnd ^= rnd >> 7, rnd ^= rnd << 17;
            imap_sort_msg *m = &set.m[i];
            m->seq = (uint32_t)(i + 1);
            m->uid = (uint32_t)(i * 3 + 7);
            /* few distinct values, so ties are common */
            m->date = (int64_t)(rnd % 50) * 86400 - 40 * 86400;
            m->arrival = (rnd >> 8) % 7 == 0 ? INT64_MIN + (int64_t)(rnd % 3)
                       : (rnd >> 8) % 7 == 1 ? INT64_MAX - (int64_t)(rnd % 3)
                                             : (int64_t)(rnd >> 20) - (1ll << 42);
            m->size = (uint32_t)((rnd >> 30) % 4 ? (rnd >> 33) % 1000 : UINT32_MAX);
        }
        static const imap_sort_key keys[] = {IMAP_SORT_DATE, IMAP_SORT_ARRIVAL, IMAP_SORT_SIZE};
        for (size_t k = 0; k < 3; k++)
            for (int rev = 0; rev < 2; rev++) {
                imap_sort_crit c = {keys[k], rev};
                uint32_t *got = NULL, *want = malloc(n * sizeof *want);
                REQUIRE(want);
                REQUIRE_OK(imap_sort_order(&set, &c, 1, &got));
                for (size_t i = 0; i < n; i++)
                    want[i] = (uint32_t)i;
                ref_set = &set;
                ref_crit = c;
                qsort(want, n, sizeof *want, ref_cmp);
                CHECK(memcmp(got, want, n * sizeof *got) == 0);
                free(got);
                free(want);
            }
        free(set.m);
    }
}

int main(void)
{
    RUN(test_base_subject);
    RUN(test_casemap);
    RUN(test_dates);
    RUN(test_msgids);
    RUN(test_criteria);
    RUN(test_first_address);
    RUN(test_numeric_order);
    return test_summary();
}
