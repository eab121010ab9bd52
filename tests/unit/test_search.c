/* tests/unit/test_search.c — core/search/: parsing SEARCH arguments
 * (keys, RETURN options, CHARSET, limits, errors) and running programs over
 * a session view of a real store: flags, keywords, sizes, dates in zones,
 * decoded headers and bodies (RFC 2047, base64, QP, ISO-8859-1), case
 * folding, NOT/OR/nesting, sequence and UID sets with '*', $, MODSEQ,
 * views with gaps and expunged messages, slices, and a large mailbox. */
#include "core/search/search.h"
#include "testutil.h"

#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* ---- fixture ----------------------------------------------------------- */

typedef struct fixture {
    char root[512];
    store_user *u;
    store_mbox *mb;
    uint32_t uids[16];
    uint32_t n;
} fixture;

static char *to_crlf(const char *s, size_t *len)
{
    size_t n = strlen(s), extra = 0;
    for (size_t i = 0; i < n; i++)
        extra += s[i] == '\n';
    char *d = malloc(n + extra + 1), *w = d;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n')
            *w++ = '\r';
        *w++ = s[i];
    }
    *w = 0;
    *len = (size_t)(w - d);
    return d;
}

static const char msg1[] =
    "From: Alice Example <alice@example.com>\n"
    "To: Bob <bob@example.org>\n"
    "Subject: Hello world\n"
    "Message-ID: <m1@example.com>\n"
    "Date: Mon, 1 Jan 2024 10:00:00 +0000\n"
    "\n"
    "The quick brown fox jumps over the lazy dog.\n";

static const char msg2[] =
    "From: =?ISO-8859-1?Q?J=F6rg_M=FCller?= <jm@example.de>\n"
    "To: alice@example.com\n"
    "Cc: Carol <carol@example.net>\n"
    "Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgTcO8bmNoZW4=?=\n"
    "Date: Thu, 15 Feb 2024 23:30:00 -0800\n"
    "MIME-Version: 1.0\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: 8bit\n"
    "\n"
    "Stra\xc3\x9f" "e und \xc3\x9c" "bermut\n";

static const char msg3[] =
    "From: dave@example.com\n"
    "To: Eve <eve@example.org>\n"
    "Bcc: secret@example.com\n"
    "Subject: Multipart test\n"
    "X-Custom: Foo Bar\n"
    "MIME-Version: 1.0\n"
    "Content-Type: multipart/alternative; boundary=\"b1\"\n"
    "\n"
    "preamble words\n"
    "--b1\n"
    "Content-Type: text/plain; charset=ISO-8859-1\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    "Q2Fm6SBjcuhtZSDgIGxhIGZyYW7nYWlzZQ0KyVTJIMdBIFZBDQo=\n"
    "--b1\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "\n"
    "=CE=95=CE=BB=CE=BB=CE=B7=CE=BD=CE=B9=CE=BA=CE=AC =CE=BA=CE=B5=CE=AF=CE=BC=\n"
    "=CE=B5=CE=BD=CE=BF =CE=A3=CE=9F=CE=A6=CE=99=CE=91\n"
    "soft=\n"
    "break\n"
    "--b1\n"
    "Content-Type: text/html\n"
    "\n"
    "<p>html only words</p>\n"
    "--b1--\n"
    "epilogue words\n";

static const char msg5[] =
    "From: Frank <frank@example.com>\n"
    "To: Bob <bob@example.org>\n"
    "Subject: Fwd: something\n"
    "Date: Sat, 1 Jun 2024 08:00:00 GMT\n"
    "MIME-Version: 1.0\n"
    "Content-Type: multipart/mixed; boundary=\"b2\"\n"
    "\n"
    "--b2\n"
    "Content-Type: text/plain\n"
    "\n"
    "See attached message.\n"
    "--b2\n"
    "Content-Type: message/rfc822\n"
    "\n"
    "From: inner@example.com\n"
    "Subject: Inner subject\n"
    "\n"
    "inner body text\n"
    "--b2\n"
    "Content-Type: application/octet-stream\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    "YXR0YWNobWVudHNlY3JldCBkYXRhDQo=\n"
    "--b2--\n";

static const char msg6[] =
    "From: Grace (Hopper) <grace (work)@ (main office) example.com>\n"
    "To: bob@example.org\n"
    "Subject: a folded\n"
    " subject line\n"
    "X-Custom: first\n"
    "X-Custom: second\n"
    " value\n"
    "Date: garbage\n"
    "\n"
    "\xce\xa3\xce\x99\xce\xa3\xce\xa5\xce\xa6\xce\x9f\xce\xa3 was here\n";

static uint32_t size4;

static int fixture_open(fixture *f, const char *tag)
{
    memset(f, 0, sizeof *f);
    store_opts o;
    store_opts_default(&o);
    o.fsync = STORE_FSYNC_NEVER;
    snprintf(f->root, sizeof f->root, "%s", test_tmpdir(tag));
    int rc = store_user_open(f->root, "u", &o, &f->u);
    if (rc < 0)
        return rc;
    if ((rc = store_mbox_open(f->u, "INBOX", &f->mb)) < 0)
        return rc;

    /* message 4: big, Cyrillic subject in raw UTF-8, 2-digit year */
    static char msg4[8192];
    int w = snprintf(msg4, sizeof msg4,
        "From: Ivan <ivan@example.ru>\n"
        "To: bob@example.org\n"
        "Subject: \xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 "
        "\xd0\xbc\xd0\xb8\xd1\x80\n"
        "Date: 31 Dec 23 23:00 +0100\n"
        "\n");
    for (int i = 0; i < 100; i++)
        w += snprintf(msg4 + w, sizeof msg4 - (size_t)w, "%.60s\n",
                      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");

    static const char *const kw2[] = { "$Important" };
    static const char *const kw4[] = { "$Junk" };
    static const char *const kw5[] = { "$Important", "$Junk" };
    struct { const char *text; int64_t date; int16_t tz; uint32_t flags;
             const char *const *kw; size_t nkw; } spec[] = {
        { msg1, 1704103200, 0, STORE_F_SEEN, NULL, 0 },
        { msg2, 1708068600, -480,
          STORE_F_FLAGGED | STORE_F_ANSWERED | STORE_F_SEEN, kw2, 1 },
        { msg3, 1710072000, 60, STORE_F_DELETED, NULL, 0 },
        { msg4, 1704060000, 120, STORE_F_DRAFT, kw4, 1 },
        { msg5, 1717228800, 0, STORE_F_SEEN, kw5, 2 },
        { msg6, 1717315200, 0, 0, NULL, 0 },
    };
    store_new_msg nm[6];
    char *bufs[6];
    for (int i = 0; i < 6; i++) {
        size_t len;
        bufs[i] = to_crlf(spec[i].text, &len);
        nm[i] = (store_new_msg){ .data = bufs[i], .len = len,
                                 .internal_date = spec[i].date,
                                 .tz_min = spec[i].tz, .flags = spec[i].flags,
                                 .keywords = spec[i].kw,
                                 .nkeywords = spec[i].nkw };
        if (i == 3)
            size4 = (uint32_t)len;
    }
    rc = store_append(f->mb, nm, 6, f->uids);
    for (int i = 0; i < 6; i++)
        free(bufs[i]);
    f->n = 6;
    return rc;
}

static void fixture_close(fixture *f)
{
    if (f->mb)
        store_mbox_close(f->mb);
    if (f->u)
        store_user_close(f->u);
    test_rm_rf(f->root);
}

/* ---- running searches ------------------------------------------------ */

static int parse_cmd(const char *keys, bool keys_only, imap_args **a,
                     imap_search_prog **p, const char **err)
{
    char line[8192];
    snprintf(line, sizeof line, "t SEARCH %s", keys);
    const char *tag, *name;
    size_t taglen, nargs;
    imap_arg *args;
    int rc = imap_args_parse((const uint8_t *)line, strlen(line), a, &tag,
                             &taglen, &name, &args, &nargs, err);
    if (rc < 0)
        return -1000;       /* the tokenizer's error, not ours */
    return keys_only ? imap_search_parse_keys(args, nargs, NULL, p, err)
                     : imap_search_parse(args, nargs, NULL, p, err);
}

static int parse_rc(const char *keys)
{
    imap_args *a = NULL;
    imap_search_prog *p = NULL;
    const char *err = NULL;
    int rc = parse_cmd(keys, false, &a, &p, &err);
    if (rc < 0 && rc != -1000 && (!err || !*err)) {
        fprintf(stderr, "no error text for: %s\n", keys);
        rc = -9999;
    }
    imap_search_free(p);
    imap_args_free(a);
    return rc;
}

static void join(char *out, size_t cap, const uint32_t *v, size_t n)
{
    size_t w = 0;
    out[0] = 0;
    for (size_t i = 0; i < n && w < cap; i++)
        w += (size_t)snprintf(out + w, cap - w, "%s%u", i ? "," : "", v[i]);
}

/* The UIDs matching keys in the view, "1,3,5"; "ERR<rc>" on failure.  The
 * sequence numbers go to seqs_out when given. */
static const char *search_v(const imap_search_view *v, const char *keys,
                            char *seqs_out)
{
    static char out[4096];
    imap_args *a = NULL;
    imap_search_prog *p = NULL;
    const char *err = NULL;
    imap_search_result res = { 0 };
    int rc = parse_cmd(keys, false, &a, &p, &err);
    if (rc == 0)
        rc = imap_search_run(p, v, &res);
    if (rc < 0)
        snprintf(out, sizeof out, "ERR%d", rc);
    else
        join(out, sizeof out, res.uids, res.n);
    if (seqs_out && rc == 0)
        join(seqs_out, 512, res.seqs, res.n);
    imap_search_result_free(&res);
    imap_search_free(p);
    imap_args_free(a);
    return out;
}

#define CHECK_STR(a, b) do { const char *a_ = (a), *b_ = (b); \
    if (strcmp(a_, b_)) { fprintf(stderr, "%s:%d: %s = \"%s\", expected \"%s\"\n", \
    __FILE__, __LINE__, #a, a_, b_); test_failures_++; } } while (0)

/* A view of the whole mailbox, in sequence order. */
static imap_search_view full_view(fixture *f, store_snap *snap)
{
    imap_search_view v = { .snap = snap, .uids = f->uids, .count = f->n,
                           .recent_first = f->uids[5] };
    return v;
}

#define S(keys) search_v(&v, keys, NULL)

/* ---- parsing ------------------------------------------------------- */

static void test_parse_errors(void)
{
    CHECK_EQ(parse_rc("ALL"), 0);
    CHECK_EQ(parse_rc("all seen unseen"), 0);
    CHECK_EQ(parse_rc(""), -EINVAL);
    CHECK_EQ(parse_rc("FOO"), -EINVAL);
    CHECK_EQ(parse_rc("SUBJECT"), -EINVAL);
    CHECK_EQ(parse_rc("SUBJECT (a)"), -EINVAL);
    CHECK_EQ(parse_rc("HEADER X-A"), -EINVAL);
    CHECK_EQ(parse_rc("HEADER \"\" x"), -EINVAL);
    CHECK_EQ(parse_rc("OR SEEN"), -EINVAL);
    CHECK_EQ(parse_rc("NOT"), -EINVAL);
    CHECK_EQ(parse_rc("()"), -EINVAL);
    CHECK_EQ(parse_rc("(SEEN"), -1000);     /* the tokenizer's */
    CHECK_EQ(parse_rc("\"SEEN\""), -EINVAL);
    CHECK_EQ(parse_rc("BEFORE 32-Jan-2024"), -EINVAL);
    CHECK_EQ(parse_rc("BEFORE 29-Feb-2023"), -EINVAL);
    CHECK_EQ(parse_rc("BEFORE 29-Feb-2024"), 0);
    CHECK_EQ(parse_rc("BEFORE \"1-Feb-2024\""), 0);
    CHECK_EQ(parse_rc("BEFORE 01-feb-2024"), 0);
    CHECK_EQ(parse_rc("BEFORE 1-Foo-2024"), -EINVAL);
    CHECK_EQ(parse_rc("BEFORE 1-Feb-24"), -EINVAL);
    CHECK_EQ(parse_rc("BEFORE 1-Feb-2024x"), -EINVAL);
    CHECK_EQ(parse_rc("SINCE"), -EINVAL);
    CHECK_EQ(parse_rc("LARGER abc"), -EINVAL);
    CHECK_EQ(parse_rc("LARGER -1"), -EINVAL);
    CHECK_EQ(parse_rc("SMALLER"), -EINVAL);
    CHECK_EQ(parse_rc("UID abc"), -EINVAL);
    CHECK_EQ(parse_rc("UID"), -EINVAL);
    CHECK_EQ(parse_rc("0"), -EINVAL);
    CHECK_EQ(parse_rc("1:0"), -EINVAL);
    CHECK_EQ(parse_rc("1,,2"), -EINVAL);
    CHECK_EQ(parse_rc("1:*,$"), -EINVAL);
    CHECK_EQ(parse_rc("KEYWORD"), -EINVAL);
    CHECK_EQ(parse_rc("MODSEQ"), -EINVAL);
    CHECK_EQ(parse_rc("MODSEQ x"), -EINVAL);
    CHECK_EQ(parse_rc("MODSEQ \"/flags/\\\\seen\" bogus 5"), -EINVAL);
    CHECK_EQ(parse_rc("MODSEQ \"/flags/\\\\seen\" all"), -EINVAL);
    CHECK_EQ(parse_rc("MODSEQ \"/flags/\\\\seen\" priv 5"), 0);
    /* RFC 7162 7: entry-flag-name = DQUOTE "/flags/" attr-flag DQUOTE */
    CHECK_EQ(parse_rc("MODSEQ /flags/\\seen shared 5"), -EINVAL);
    CHECK_EQ(parse_rc("MODSEQ \"/other/x\" shared 5"), -EINVAL);
    CHECK_EQ(parse_rc("MODSEQ \"/flags/$Junk\" shared 5"), 0);
    CHECK_EQ(parse_rc("MODSEQ (x) all 5"), -EINVAL);
    CHECK_EQ(parse_rc("MODSEQ 5 all"), 0);     /* MODSEQ 5, then ALL */
    CHECK_EQ(parse_rc("MODSEQ x all"), -EINVAL);
    CHECK_EQ(parse_rc("MODSEQ 9223372036854775808"), -EINVAL);
    CHECK_EQ(parse_rc("RETURN (BOGUS) ALL"), -EINVAL);
    CHECK_EQ(parse_rc("RETURN ALL"), -EINVAL);
    CHECK_EQ(parse_rc("RETURN (ALL)"), -EINVAL);
    CHECK_EQ(parse_rc("CHARSET"), -EINVAL);
    CHECK_EQ(parse_rc("CHARSET UTF-8"), -EINVAL);
    CHECK_EQ(parse_rc("SEEN CHARSET UTF-8"), -EINVAL);
    CHECK_EQ(parse_rc("CHARSET UTF-8 RETURN (ALL) SEEN"), -EINVAL);
}

static void test_charset(void)
{
    CHECK_EQ(parse_rc("CHARSET UTF-8 ALL"), 0);
    CHECK_EQ(parse_rc("CHARSET utf-8 ALL"), 0);
    CHECK_EQ(parse_rc("CHARSET \"US-ASCII\" ALL"), 0);
    CHECK_EQ(parse_rc("RETURN (COUNT) CHARSET us-ascii SUBJECT x"), 0);
    CHECK_EQ(parse_rc("CHARSET ISO-8859-1 ALL"), IMAP_SEARCH_EBADCHARSET);
    CHECK_EQ(parse_rc("CHARSET KOI8-R SUBJECT x"), IMAP_SEARCH_EBADCHARSET);
    /* bad syntax outranks the charset: BAD, not NO */
    CHECK_EQ(parse_rc("CHARSET KOI8-R FOO"), -EINVAL);
    CHECK(imap_search_charset_ok("UTF-8", 5));
    CHECK(imap_search_charset_ok("us-ascii", 8));
    CHECK(!imap_search_charset_ok("UTF-7", 5));
    CHECK(!imap_search_charset_ok("UTF-8x", 6));
}

static void test_limits(void)
{
    char buf[8192];
    size_t w = 0;
    /* 32 levels of NOT are fine, 33 are not */
    for (int i = 0; i < 32; i++)
        w += (size_t)snprintf(buf + w, sizeof buf - w, "NOT ");
    snprintf(buf + w, sizeof buf - w, "SEEN");
    CHECK_EQ(parse_rc(buf), 0);
    w = 0;
    for (int i = 0; i < 33; i++)
        w += (size_t)snprintf(buf + w, sizeof buf - w, "NOT ");
    snprintf(buf + w, sizeof buf - w, "SEEN");
    CHECK_EQ(parse_rc(buf), -E2BIG);

    /* nested lists */
    w = 0;
    for (int i = 0; i < 33; i++)
        buf[w++] = '(';
    w += (size_t)snprintf(buf + w, sizeof buf - w, "SEEN");
    for (int i = 0; i < 33; i++)
        buf[w++] = ')';
    buf[w] = 0;
    CHECK_EQ(parse_rc(buf), -E2BIG);
    CHECK_EQ(parse_rc("((((SEEN))))"), 0);

    /* OR chains nest too */
    w = 0;
    for (int i = 0; i < 40; i++)
        w += (size_t)snprintf(buf + w, sizeof buf - w, "OR SEEN ");
    snprintf(buf + w, sizeof buf - w, "SEEN");
    CHECK_EQ(parse_rc(buf), -E2BIG);

    /* 1000 keys are fine, 1001 are not */
    w = 0;
    for (int i = 0; i < 1000; i++)
        w += (size_t)snprintf(buf + w, sizeof buf - w, "%sSEEN", i ? " " : "");
    CHECK_EQ(parse_rc(buf), 0);
    snprintf(buf + w, sizeof buf - w, " SEEN");
    CHECK_EQ(parse_rc(buf), -E2BIG);

    /* limits of the caller's choosing */
    imap_search_limits lim = { .max_depth = 2, .max_keys = 3, .max_ranges = 2 };
    const char *cases[][2] = {
        { "NOT NOT SEEN", "0" }, { "NOT NOT NOT SEEN", "E" },
        { "SEEN SEEN SEEN", "0" }, { "SEEN SEEN SEEN SEEN", "E" },
        { "1,2", "0" }, { "1,2,3", "E" }, { "UID 1,2,3", "E" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char line[256];
        snprintf(line, sizeof line, "t SEARCH %s", cases[i][0]);
        imap_args *a;
        imap_arg *args;
        size_t nargs, taglen;
        const char *tag, *name, *err = NULL;
        REQUIRE_OK(imap_args_parse((const uint8_t *)line, strlen(line), &a,
                                   &tag, &taglen, &name, &args, &nargs, &err));
        imap_search_prog *p = NULL;
        int rc = imap_search_parse(args, nargs, &lim, &p, &err);
        CHECK_EQ(rc, cases[i][1][0] == '0' ? 0 : -E2BIG);
        if (rc)
            CHECK(err != NULL);
        imap_search_free(p);
        imap_args_free(a);
    }
}

static void test_return_options(void)
{
    struct { const char *keys; int rc; bool has; unsigned ret; } c[] = {
        { "ALL", 0, false, 0 },
        { "RETURN () ALL", 0, true, IMAP_SEARCH_RET_ALL },
        { "RETURN (MIN) SEEN", 0, true, IMAP_SEARCH_RET_MIN },
        { "RETURN (min max) SEEN", 0, true,
          IMAP_SEARCH_RET_MIN | IMAP_SEARCH_RET_MAX },
        { "RETURN (ALL COUNT SAVE) SEEN", 0, true,
          IMAP_SEARCH_RET_ALL | IMAP_SEARCH_RET_COUNT | IMAP_SEARCH_RET_SAVE },
        { "RETURN (SAVE) SEEN", 0, true, IMAP_SEARCH_RET_SAVE },
        { "RETURN (COUNT COUNT) CHARSET UTF-8 SEEN", 0, true,
          IMAP_SEARCH_RET_COUNT },
        { "RETURN (PARTIAL 1:10) SEEN", 0, true, IMAP_SEARCH_RET_PARTIAL },
        { "RETURN (partial -1:-100 MIN COUNT) SEEN", 0, true,
          IMAP_SEARCH_RET_PARTIAL | IMAP_SEARCH_RET_MIN | IMAP_SEARCH_RET_COUNT },
        { "RETURN (SAVE PARTIAL 4294967295:1) SEEN", 0, true,
          IMAP_SEARCH_RET_PARTIAL | IMAP_SEARCH_RET_SAVE },
        /* RFC 5267 4.4: "either one PARTIAL, one ALL, or neither" */
        { "RETURN (ALL PARTIAL 1:2) SEEN", -EINVAL, false, 0 },
        { "RETURN (PARTIAL 1:2 ALL) SEEN", -EINVAL, false, 0 },
        { "RETURN (PARTIAL 1:2 PARTIAL 3:4) SEEN", -EINVAL, false, 0 },
        { "RETURN (PARTIAL) SEEN", -EINVAL, false, 0 },
        { "RETURN (PARTIAL 0:10) SEEN", -EINVAL, false, 0 },
        { "RETURN (PARTIAL 1:-10) SEEN", -EINVAL, false, 0 },
        { "RETURN (PARTIAL -1:10) SEEN", -EINVAL, false, 0 },
        { "RETURN (PARTIAL 1:*) SEEN", -EINVAL, false, 0 },
        { "RETURN (PARTIAL 5) SEEN", -EINVAL, false, 0 },
        { "RETURN (PARTIAL 1:4294967296) SEEN", -EINVAL, false, 0 },
        { "RETURN (PARTIAL -0:-1) SEEN", -EINVAL, false, 0 },
        { "RETURN (PARTIAL 01:2) SEEN", -EINVAL, false, 0 },
        { "RETURN (PARTIAL \"1:2\") SEEN", -EINVAL, false, 0 },
        { "RETURN (PARTIAL (1:2)) SEEN", -EINVAL, false, 0 },
        /* RFC 5267 4.2, 4.3 */
        { "RETURN (UPDATE) SEEN", 0, true, IMAP_SEARCH_RET_UPDATE },
        { "RETURN (UPDATE COUNT) SEEN", 0, true,
          IMAP_SEARCH_RET_UPDATE | IMAP_SEARCH_RET_COUNT },
        { "RETURN (CONTEXT) SEEN", 0, true,
          IMAP_SEARCH_RET_CONTEXT | IMAP_SEARCH_RET_ALL },
        { "RETURN (CONTEXT COUNT) SEEN", 0, true,
          IMAP_SEARCH_RET_CONTEXT | IMAP_SEARCH_RET_COUNT },
        { "RETURN (UPDATE UPDATE) SEEN", -EINVAL, false, 0 },
        { "RETURN (UPDATE (FLAGS)) SEEN", -EINVAL, false, 0 },
        { "RETURN (MIN", -1000, false, 0 },
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        imap_args *a = NULL;
        imap_search_prog *p = NULL;
        const char *err = NULL;
        int rc = parse_cmd(c[i].keys, false, &a, &p, &err);
        CHECK_EQ(rc, c[i].rc);
        if (rc == 0) {
            CHECK_EQ(imap_search_has_return(p), c[i].has);
            CHECK_EQ(imap_search_return(p), c[i].ret);
            CHECK(!imap_search_uses_modseq(p));
            CHECK(!imap_search_uses_saved(p));
        }
        imap_search_free(p);
        imap_args_free(a);
    }

    /* keys only (SORT/THREAD): no RETURN, no CHARSET */
    imap_args *a = NULL;
    imap_search_prog *p = NULL;
    const char *err = NULL;
    CHECK_EQ(parse_cmd("RETURN (MIN) SEEN", true, &a, &p, &err), -EINVAL);
    imap_args_free(a);
    a = NULL;
    CHECK_EQ(parse_cmd("CHARSET UTF-8 SEEN", true, &a, &p, &err), -EINVAL);
    imap_args_free(a);
    a = NULL;
    CHECK_EQ(parse_cmd("SEEN OR $ MODSEQ 5", true, &a, &p, &err), 0);
    CHECK(imap_search_uses_modseq(p));
    CHECK(imap_search_uses_saved(p));
    imap_search_free(p);
    imap_args_free(a);
}

/* ---- evaluation ------------------------------------------------------ */

/* PARTIAL's range over n results (RFC 5267 4.4, RFC 9394), and the
 * sequence-set writer of ESEARCH ALL / PARTIAL / ESORT. */
static void test_partial(void)
{
    struct { int64_t lo, hi; size_t n, from, to; } c[] = {
        { 1, 3, 10, 0, 3 }, { 3, 1, 10, 0, 3 }, { 8, 15, 10, 7, 10 },
        { 10, 10, 10, 9, 10 }, { 11, 20, 10, 10, 10 }, { 1, 1, 0, 0, 0 },
        { -1, -3, 10, 7, 10 }, { -3, -1, 10, 7, 10 }, { -1, -1, 10, 9, 10 },
        { -10, -20, 10, 0, 1 }, { -11, -20, 10, 0, 0 }, { -1, -1, 0, 0, 0 },
        { -5, -5, 10, 5, 6 }, { 4294967295, 4294967295, 10, 10, 10 },
        { -4294967295, -1, 10, 0, 10 },
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        imap_search_ret r = { .opts = IMAP_SEARCH_RET_PARTIAL,
                              .partial_lo = c[i].lo, .partial_hi = c[i].hi };
        size_t from = 99, to = 99;
        imap_search_partial_slice(&r, c[i].n, &from, &to);
        if (from != c[i].from || to != c[i].to)
            fprintf(stderr, "case %zu: [%zu,%zu)\n", i, from, to);
        CHECK_EQ(from, c[i].from);
        CHECK_EQ(to, c[i].to);
    }

    /* the range as written, both ends */
    imap_args *a = NULL;
    imap_search_prog *p = NULL;
    const char *err = NULL;
    REQUIRE_OK(parse_cmd("RETURN (PARTIAL -100:-1) ALL", false, &a, &p, &err));
    CHECK_EQ(imap_search_return_opts(p)->partial_lo, -100);
    CHECK_EQ(imap_search_return_opts(p)->partial_hi, -1);
    imap_search_free(p);
    imap_args_free(a);

    uint32_t nums[] = { 5, 6, 7, 3, 4, 9, 8, 10 };
    imap_out o = { 0 };
    CHECK_EQ(imap_search_out_set(&o, nums, 0, 0, 8, 100), 8);
    imap_out_add(&o, "", 1);
    CHECK_STR(o.p, "5:7,3:4,9,8,10");
    o.len = 0;
    /* in pieces: max items per call, the comma before all but start's */
    size_t i = 1;
    i = imap_search_out_set(&o, nums, 1, i, 7, 1);
    CHECK_EQ(i, 3);
    i = imap_search_out_set(&o, nums, 1, i, 7, 2);
    CHECK_EQ(i, 6);
    i = imap_search_out_set(&o, nums, 1, i, 7, 2);
    CHECK_EQ(i, 7);
    imap_out_add(&o, "", 1);
    CHECK_STR(o.p, "6:7,3:4,9,8");
    imap_out_free(&o);
}

/* OLDER / YOUNGER (RFC 5032) against the view's time, to the second:
 * "For OLDER, messages match if the INTERNALDATE is less recent than or
 * equal to the target time.  For YOUNGER, ... more recent than or equal". */
static void test_within(void)
{
    CHECK_EQ(parse_rc("OLDER 1"), 0);
    CHECK_EQ(parse_rc("younger 4294967295"), 0);
    CHECK_EQ(parse_rc("OLDER 0"), -EINVAL);         /* nz-number */
    CHECK_EQ(parse_rc("OLDER"), -EINVAL);
    CHECK_EQ(parse_rc("YOUNGER -5"), -EINVAL);
    CHECK_EQ(parse_rc("YOUNGER x"), -EINVAL);
    CHECK_EQ(parse_rc("YOUNGER 4294967296"), -EINVAL);
    CHECK_EQ(parse_rc("YOUNGER \"60\""), -EINVAL);  /* a number, not a string */

    fixture f;
    REQUIRE_OK(fixture_open(&f, "search-within"));
    store_snap *snap = store_snap_get(f.mb);
    REQUIRE(snap);
    imap_search_view v = full_view(&f, snap);
    /* #6 arrived at 1717315200, #5 one day before; now is one day after #6 */
    v.now = 1717315200 + 86400;
    CHECK_STR(S("YOUNGER 86400"), "6");             /* at the target: both */
    CHECK_STR(S("OLDER 86400"), "1,2,3,4,5,6");
    CHECK_STR(S("YOUNGER 86399"), "");
    CHECK_STR(S("OLDER 86401"), "1,2,3,4,5");
    CHECK_STR(S("YOUNGER 172800"), "5,6");
    CHECK_STR(S("YOUNGER 172799"), "6");
    CHECK_STR(S("NOT YOUNGER 172800 OLDER 172800"), "1,2,3,4");
    CHECK_STR(S("OR YOUNGER 1 OLDER 13255200"), "1,4");
    CHECK_STR(S("SEEN YOUNGER 100000000"), "1,2,5");
    store_snap_put(snap);
    fixture_close(&f);
}

/* imap_search_freeze: sequence numbers, '*' and $ keep what they named
 * in the view of the command when the program runs over other views (a
 * CONTEXT=SEARCH context evaluating changed messages). */
static void test_freeze(void)
{
    fixture f;
    REQUIRE_OK(fixture_open(&f, "search-freeze"));
    store_snap *snap = store_snap_get(f.mb);
    REQUIRE(snap);
    imap_search_view full = full_view(&f, snap);
    uint32_t saved[] = { 4 };
    full.saved = saved;
    full.nsaved = 1;
    const uint32_t sub[] = { 1, 3 }, sub2[] = { 2, 5 }, sub3[] = { 4, 6 };
    struct { const char *keys; const uint32_t *uids; uint32_t n; const char *plain, *frozen; } c[] = {
        { "1:2", sub2, 2, "2,5", "2" },
        { "UID 5:*", sub, 2, "3", "" },
        { "UID 5:*", sub3, 2, "6", "6" },
        { "NOT 2:*", sub3, 2, "4", "" },
        { "OR $ 6", sub3, 2, "", "4,6" },
        { "$", sub3, 2, "", "4" },
        { "*", sub2, 2, "5", "" },
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        imap_search_view v = full;
        v.uids = c[i].uids;
        v.count = c[i].n;
        v.saved = NULL;
        v.nsaved = 0;
        CHECK_STR(search_v(&v, c[i].keys, NULL), c[i].plain);
        imap_args *a = NULL;
        imap_search_prog *p = NULL;
        const char *err = NULL;
        imap_search_result res = { 0 };
        char out[256];
        REQUIRE_OK(parse_cmd(c[i].keys, false, &a, &p, &err));
        REQUIRE_OK(imap_search_freeze(p, &full));
        REQUIRE_OK(imap_search_run(p, &v, &res));
        join(out, sizeof out, res.uids, res.n);
        CHECK_STR(out, c[i].frozen);
        /* over the view of the command: the same answer as before */
        char before[256];
        snprintf(before, sizeof before, "%s", search_v(&full, c[i].keys, NULL));
        REQUIRE_OK(imap_search_run(p, &full, &res));
        join(out, sizeof out, res.uids, res.n);
        CHECK_STR(out, before);
        imap_search_result_free(&res);
        imap_search_free(p);
        imap_args_free(a);
    }
    store_snap_put(snap);
    fixture_close(&f);
}

static void test_flags_sizes(void)
{
    fixture f;
    REQUIRE_OK(fixture_open(&f, "search-flags"));
    store_snap *snap = store_snap_get(f.mb);
    REQUIRE(snap);
    imap_search_view v = full_view(&f, snap);

    CHECK_STR(S("ALL"), "1,2,3,4,5,6");
    CHECK_STR(S("SEEN"), "1,2,5");
    CHECK_STR(S("UNSEEN"), "3,4,6");
    CHECK_STR(S("ANSWERED"), "2");
    CHECK_STR(S("UNANSWERED"), "1,3,4,5,6");
    CHECK_STR(S("FLAGGED"), "2");
    CHECK_STR(S("UNFLAGGED"), "1,3,4,5,6");
    CHECK_STR(S("DELETED"), "3");
    CHECK_STR(S("UNDELETED"), "1,2,4,5,6");
    CHECK_STR(S("DRAFT"), "4");
    CHECK_STR(S("UNDRAFT"), "1,2,3,5,6");
    CHECK_STR(S("KEYWORD $Important"), "2,5");
    CHECK_STR(S("keyword $junk"), "4,5");
    CHECK_STR(S("UNKEYWORD $Important"), "1,3,4,6");
    CHECK_STR(S("KEYWORD $Nope"), "");
    CHECK_STR(S("UNKEYWORD $Nope"), "1,2,3,4,5,6");
    CHECK_STR(S("KEYWORD \\Seen"), "1,2,5");
    CHECK_STR(S("UNKEYWORD \\Flagged"), "1,3,4,5,6");
    CHECK_STR(S("KEYWORD \\Bogus"), "");
    CHECK_STR(S("KEYWORD \\Recent"), "6");
    CHECK_STR(S("UNKEYWORD \\Recent"), "1,2,3,4,5");
    CHECK_STR(S("RECENT"), "6");
    CHECK_STR(S("NEW"), "6");
    CHECK_STR(S("OLD"), "1,2,3,4,5");
    v.recent_first = f.uids[4];
    CHECK_STR(S("RECENT"), "5,6");
    CHECK_STR(S("NEW"), "6");
    v.recent_first = 0;
    CHECK_STR(S("RECENT"), "");
    CHECK_STR(S("OLD"), "1,2,3,4,5,6");
    v.recent_first = f.uids[5];

    char k[64];
    CHECK_STR(S("LARGER 5000"), "4");
    CHECK_STR(S("SMALLER 5000"), "1,2,3,5,6");
    snprintf(k, sizeof k, "LARGER %u", size4);
    CHECK_STR(S(k), "");
    snprintf(k, sizeof k, "LARGER %u", size4 - 1);
    CHECK_STR(S(k), "4");
    snprintf(k, sizeof k, "SMALLER %u", size4);
    CHECK_STR(S(k), "1,2,3,5,6");
    snprintf(k, sizeof k, "SMALLER %u", size4 + 1);
    CHECK_STR(S(k), "1,2,3,4,5,6");
    CHECK_STR(S("SMALLER 0"), "");
    CHECK_STR(S("LARGER 0"), "1,2,3,4,5,6");
    CHECK_STR(S("LARGER 9223372036854775807"), "");

    store_snap_put(snap);
    fixture_close(&f);
}

static void test_dates(void)
{
    fixture f;
    REQUIRE_OK(fixture_open(&f, "search-dates"));
    store_snap *snap = store_snap_get(f.mb);
    REQUIRE(snap);
    imap_search_view v = full_view(&f, snap);

    /* each message's own zone: #2 is 15-Feb local (16-Feb UTC), #4 is
     * 1-Jan-2024 local (31-Dec-2023 UTC) */
    CHECK_STR(S("ON 15-Feb-2024"), "2");
    CHECK_STR(S("ON 16-Feb-2024"), "");
    CHECK_STR(S("ON 1-Jan-2024"), "1,4");
    CHECK_STR(S("BEFORE 1-Jan-2024"), "");
    CHECK_STR(S("BEFORE 2-Jan-2024"), "1,4");
    CHECK_STR(S("SINCE 1-Jun-2024"), "5,6");
    CHECK_STR(S("SINCE 2-Jun-2024"), "6");
    CHECK_STR(S("SINCE 3-Jun-2024"), "");
    CHECK_STR(S("SINCE 1-Jan-2024 BEFORE 1-Mar-2024"), "1,2,4");
    CHECK_STR(S("ON 10-Mar-2024"), "3");

    /* one fixed zone (UTC) for all */
    v.date_zone_fixed = true;
    v.date_zone_min = 0;
    CHECK_STR(S("ON 16-Feb-2024"), "2");
    CHECK_STR(S("ON 1-Jan-2024"), "1");
    CHECK_STR(S("BEFORE 1-Jan-2024"), "4");
    /* UTC-11: #1 (10:00 UTC) is 31-Dec 23:00, #4 is 31-Dec 11:00 */
    v.date_zone_min = -660;
    CHECK_STR(S("ON 1-Jan-2024"), "");
    CHECK_STR(S("ON 31-Dec-2023"), "1,4");
    v.date_zone_fixed = false;

    /* Date: header; #3 has none and #6 an unparseable one: INTERNALDATE */
    CHECK_STR(S("SENTON 15-Feb-2024"), "2");
    CHECK_STR(S("SENTON 1-Jan-2024"), "1");
    CHECK_STR(S("SENTBEFORE 1-Jan-2024"), "4");
    CHECK_STR(S("SENTON 31-Dec-2023"), "4");
    CHECK_STR(S("SENTSINCE 1-Jun-2024"), "5,6");
    CHECK_STR(S("SENTON 2-Jun-2024"), "6");
    CHECK_STR(S("SENTON 10-Mar-2024"), "3");
    CHECK_STR(S("SENTSINCE 1-Feb-2024 SENTBEFORE 1-Apr-2024"), "2,3");

    store_snap_put(snap);
    fixture_close(&f);
}

/* RFC 8514 SAVED* (the save date: the time of the append, now, not the
 * internal dates of 2024) and RFC 8474 EMAILID / THREADID. */
static void test_objectid_savedate(void)
{
    fixture f;
    REQUIRE_OK(fixture_open(&f, "search-objid"));
    store_snap *snap = store_snap_get(f.mb);
    REQUIRE(snap);
    imap_search_view v = full_view(&f, snap);
    store_msg_ext x;
    REQUIRE_OK(store_snap_msg_ext(snap, f.uids[2], &x));
    time_t now = (time_t)x.save_date;
    struct tm tm;
    gmtime_r(&now, &tm);
    char today[32], tomorrow[32], q[512];
    snprintf(today, sizeof today, "%d-%s-%d", tm.tm_mday, store_month_abbr(tm.tm_mon),
             tm.tm_year + 1900);
    time_t t2 = now + 86400;
    gmtime_r(&t2, &tm);
    snprintf(tomorrow, sizeof tomorrow, "%d-%s-%d", tm.tm_mday, store_month_abbr(tm.tm_mon),
             tm.tm_year + 1900);
    v.date_zone_fixed = true;       /* UTC, as the save date's own day */
    v.date_zone_min = 0;
    snprintf(q, sizeof q, "SAVEDON %s", today);
    CHECK_STR(S(q), "1,2,3,4,5,6");
    snprintf(q, sizeof q, "SAVEDBEFORE %s", today);
    CHECK_STR(S(q), "");
    snprintf(q, sizeof q, "SAVEDSINCE %s", tomorrow);
    CHECK_STR(S(q), "");
    snprintf(q, sizeof q, "SAVEDBEFORE %s", tomorrow);
    CHECK_STR(S(q), "1,2,3,4,5,6");
    CHECK_STR(S("SAVEDSINCE 1-Jan-2025 NOT SINCE 1-Jan-2025"), "1,2,3,4,5,6");
    CHECK_STR(S("SAVEDATESUPPORTED"), "1,2,3,4,5,6");
    CHECK_STR(S("NOT SAVEDATESUPPORTED"), "");
    char id[STORE_OBJECTID_MAX];
    store_emailid_format(&x, id);
    snprintf(q, sizeof q, "EMAILID %s", id);
    CHECK_STR(S(q), "3");
    snprintf(q, sizeof q, "OR EMAILID %s FLAGGED", id);
    CHECK_STR(S(q), "2,3");
    CHECK_STR(S("EMAILID M0_3"), "");
    x.email_uv++;                   /* the same mailbox id and UID, another store */
    store_emailid_format(&x, id);
    snprintf(q, sizeof q, "EMAILID %s", id);
    CHECK_STR(S(q), "");
    CHECK_STR(S("EMAILID x"), "");
    CHECK_STR(S("THREADID T1"), "");
    CHECK_STR(S("NOT THREADID T1"), "1,2,3,4,5,6");
    CHECK_EQ(parse_rc("EMAILID"), -EINVAL);
    CHECK_EQ(parse_rc("EMAILID a.b"), -EINVAL);
    CHECK_EQ(parse_rc("EMAILID \"\""), -EINVAL);
    CHECK_EQ(parse_rc("THREADID"), -EINVAL);
    CHECK_EQ(parse_rc("SAVEDON"), -EINVAL);
    CHECK_EQ(parse_rc("SAVEDON 1-Foo-2024"), -EINVAL);
    CHECK_EQ(parse_rc("saveddatesupported"), -EINVAL);
    CHECK_EQ(parse_rc("savedatesupported"), 0);
    char big[300];
    memset(big, 'a', 256);
    big[256] = '\0';
    snprintf(q, sizeof q, "EMAILID %.255s", big);     /* 7: 1*255 */
    CHECK_EQ(parse_rc(q), 0);
    snprintf(q, sizeof q, "EMAILID %s", big);
    CHECK_EQ(parse_rc(q), -EINVAL);
    store_snap_put(snap);
    fixture_close(&f);
}

static void test_headers(void)
{
    fixture f;
    REQUIRE_OK(fixture_open(&f, "search-headers"));
    store_snap *snap = store_snap_get(f.mb);
    REQUIRE(snap);
    imap_search_view v = full_view(&f, snap);

    CHECK_STR(S("FROM alice"), "1");
    CHECK_STR(S("FROM ALICE@EXAMPLE.COM"), "1");
    CHECK_STR(S("FROM example.com"), "1,3,5,6");
    /* RFC 2047 Q in ISO-8859-1, matched in UTF-8 and case-folded */
    CHECK_STR(S("FROM \"J\xc3\xb6rg\""), "2");
    CHECK_STR(S("FROM \"M\xc3\x9cLLER\""), "2");
    CHECK_STR(S("FROM \"=?ISO-8859-1?Q?\""), "");
    /* comments are not part of an address (RFC 5322 3.2.2): #6's From is
     * "Grace <grace@example.com>" */
    CHECK_STR(S("FROM grace@example.com"), "6");
    CHECK_STR(S("FROM \"Grace <grace@\""), "6");
    CHECK_STR(S("FROM work"), "");
    CHECK_STR(S("FROM office"), "");
    CHECK_STR(S("FROM Hopper"), "");
    CHECK_STR(S("TO bob"), "1,4,5,6");
    CHECK_STR(S("TO alice"), "2");
    CHECK_STR(S("CC carol"), "2");
    CHECK_STR(S("CC bob"), "");
    CHECK_STR(S("BCC secret"), "3");
    /* RFC 2047 B in UTF-8 */
    CHECK_STR(S("SUBJECT \"gr\xc3\xbc\xc3\x9f" "e\""), "2");
    CHECK_STR(S("SUBJECT \"GR\xc3\x9c\xc3\x9f" "E AUS M\xc3\x9cNCHEN\""), "2");
    CHECK_STR(S("SUBJECT \"aus m\xc3\xbcnchen\""), "2");
    /* raw UTF-8 Cyrillic, searched in capitals */
    CHECK_STR(S("SUBJECT \"\xd0\x9f\xd0\xa0\xd0\x98\xd0\x92\xd0\x95\xd0\xa2\""), "4");
    /* as a literal */
    CHECK_STR(S("CHARSET UTF-8 SUBJECT {6}\r\n\xd0\xbc\xd0\xb8\xd1\x80"), "4");
    /* unfolded */
    CHECK_STR(S("SUBJECT \"folded subject\""), "6");
    CHECK_STR(S("SUBJECT \"\""), "1,2,3,4,5,6");
    CHECK_STR(S("SUBJECT inner"), "");
    CHECK_STR(S("SUBJECT NIL"), "");
    CHECK_STR(S("BCC \"\""), "3");

    /* HEADER: raw header fields, every occurrence, "" = has the field */
    CHECK_STR(S("HEADER X-Custom \"\""), "3,6");
    CHECK_STR(S("HEADER x-custom foo"), "3");
    CHECK_STR(S("HEADER X-CUSTOM \"second value\""), "6");
    CHECK_STR(S("HEADER X-Custom first"), "6");
    CHECK_STR(S("HEADER X-Custom custom"), "");
    CHECK_STR(S("HEADER X-Nothing \"\""), "");
    CHECK_STR(S("HEADER Content-Type multipart"), "3,5");
    CHECK_STR(S("HEADER Content-Transfer-Encoding \"\""), "2");
    CHECK_STR(S("HEADER MIME-Version 1.0"), "2,3,5");
    /* HEADER on cached fields */
    CHECK_STR(S("HEADER Message-ID m1@"), "1");
    CHECK_STR(S("HEADER Message-ID \"\""), "1");
    CHECK_STR(S("HEADER Date \"\""), "1,2,4,5,6");
    CHECK_STR(S("HEADER Subject \"gr\xc3\xbc\""), "2");
    CHECK_STR(S("HEADER Cc \"\""), "2");

    store_snap_put(snap);
    fixture_close(&f);
}

static void test_body_text(void)
{
    fixture f;
    REQUIRE_OK(fixture_open(&f, "search-body"));
    store_snap *snap = store_snap_get(f.mb);
    REQUIRE(snap);
    imap_search_view v = full_view(&f, snap);

    CHECK_STR(S("BODY fox"), "1");
    CHECK_STR(S("BODY \"QUICK BROWN\""), "1");
    CHECK_STR(S("BODY \"hello world\""), "");
    CHECK_STR(S("BODY \"\""), "1,2,3,4,5,6");
    /* 8bit UTF-8 body */
    CHECK_STR(S("BODY \"stra\xc3\x9f" "e\""), "2");
    CHECK_STR(S("BODY \"\xc3\xbc" "bermut\""), "2");
    /* base64 ISO-8859-1 part */
    CHECK_STR(S("BODY \"caf\xc3\xa9 cr\xc3\xa8me\""), "3");
    CHECK_STR(S("BODY \"CAF\xc3\x89\""), "3");
    CHECK_STR(S("BODY \"\xc3\xa9t\xc3\xa9 \xc3\xa7" "a\""), "3");
    CHECK_STR(S("BODY \"fran\xc3\xa7" "aise\""), "3");
    CHECK_STR(S("BODY Q2Fm6SBj"), "");
    /* QP UTF-8 part, Greek folding, soft line breaks */
    CHECK_STR(S("BODY \"\xce\xb5\xce\xbb\xce\xbb\xce\xb7\xce\xbd\xce\xb9\xce\xba\xce\xac\""), "3");
    CHECK_STR(S("BODY \"\xcf\x83\xce\xbf\xcf\x86\xce\xb9\xce\xb1\""), "3");
    CHECK_STR(S("BODY \"\xce\xba\xce\xb5\xce\xaf\xce\xbc\xce\xb5\xce\xbd\xce\xbf\""), "3");
    CHECK_STR(S("BODY softbreak"), "3");
    CHECK_STR(S("BODY =CE"), "");
    CHECK_STR(S("BODY \"html only\""), "3");
    /* preamble, epilogue and MIME headers are not body text */
    CHECK_STR(S("BODY preamble"), "");
    CHECK_STR(S("BODY epilogue"), "");
    CHECK_STR(S("BODY text/html"), "");
    /* final sigma in the needle folds like sigma */
    CHECK_STR(S("BODY \"\xcf\x83\xce\xb9\xcf\x83\xcf\x85\xcf\x86\xce\xbf\xcf\x82\""), "6");
    /* embedded message: its header and body are body text; a non-text
     * attachment is not */
    CHECK_STR(S("BODY \"inner body\""), "5");
    CHECK_STR(S("BODY \"inner subject\""), "5");
    CHECK_STR(S("BODY \"see attached\""), "5");
    CHECK_STR(S("BODY attachmentsecret"), "");

    CHECK_STR(S("TEXT \"hello world\""), "1");
    CHECK_STR(S("TEXT fox"), "1");
    CHECK_STR(S("TEXT x-custom"), "3,6");
    CHECK_STR(S("TEXT text/html"), "3");
    CHECK_STR(S("TEXT \"gr\xc3\xbc\xc3\x9f" "e\""), "2");
    CHECK_STR(S("TEXT \"caf\xc3\xa9\""), "3");
    CHECK_STR(S("TEXT \"inner subject\""), "5");
    CHECK_STR(S("TEXT attachmentsecret"), "");
    CHECK_STR(S("TEXT \"\""), "1,2,3,4,5,6");
    CHECK_STR(S("TEXT example"), "1,2,3,4,5,6");
    CHECK_STR(S("TEXT ivan"), "4");

    store_snap_put(snap);
    fixture_close(&f);
}

static void test_logic(void)
{
    fixture f;
    REQUIRE_OK(fixture_open(&f, "search-logic"));
    store_snap *snap = store_snap_get(f.mb);
    REQUIRE(snap);
    imap_search_view v = full_view(&f, snap);

    CHECK_STR(S("NOT SEEN"), "3,4,6");
    CHECK_STR(S("NOT NOT SEEN"), "1,2,5");
    CHECK_STR(S("OR SEEN FLAGGED"), "1,2,5");
    CHECK_STR(S("OR DELETED DRAFT"), "3,4");
    CHECK_STR(S("OR OR DELETED DRAFT RECENT"), "3,4,6");
    CHECK_STR(S("OR (DELETED) (DRAFT KEYWORD $Junk)"), "3,4");
    CHECK_STR(S("(SEEN KEYWORD $Important)"), "2,5");
    CHECK_STR(S("NOT (SEEN KEYWORD $Important)"), "1,3,4,6");
    CHECK_STR(S("SEEN NOT FROM \"j\xc3\xb6rg\""), "1,5");
    CHECK_STR(S("SEEN (OR BODY fox BODY \"inner body\")"), "1,5");
    CHECK_STR(S("SEEN (BODY fox OR BODY \"inner body\" DELETED)"), "");
    CHECK_STR(S("OR BODY fox SUBJECT \"gr\xc3\xbc\""), "1,2");
    CHECK_STR(S("NOT OR BODY fox SUBJECT \"gr\xc3\xbc\""), "3,4,5,6");
    CHECK_STR(S("((SEEN) (NOT (UNSEEN)) ((ALL)))"), "1,2,5");
    CHECK_STR(S("ALL ALL"), "1,2,3,4,5,6");
    CHECK_STR(S("NOT ALL"), "");
    CHECK_STR(S("OR ALL BODY nothing-here"), "1,2,3,4,5,6");
    CHECK_STR(S("TEXT example SMALLER 5000 UNDELETED OR KEYWORD $Junk UNSEEN"),
              "5,6");

    store_snap_put(snap);
    fixture_close(&f);
}

static void test_sets(void)
{
    fixture f;
    REQUIRE_OK(fixture_open(&f, "search-sets"));
    store_snap *snap = store_snap_get(f.mb);
    REQUIRE(snap);
    imap_search_view v = full_view(&f, snap);
    char seqs[512];

    CHECK_STR(S("1:3"), "1,2,3");
    CHECK_STR(S("*"), "6");
    CHECK_STR(S("2,4:*"), "2,4,5,6");
    CHECK_STR(S("5:3"), "3,4,5");
    CHECK_STR(S("*:5"), "5,6");
    CHECK_STR(S("7:9"), "");
    CHECK_STR(S("1,1,1:2,2:1"), "1,2");
    CHECK_STR(S("UID 2:4"), "2,3,4");
    CHECK_STR(S("UID *"), "6");
    CHECK_STR(S("UID 100:*"), "6");
    CHECK_STR(S("UID 100"), "");
    CHECK_STR(S("NOT 2:5"), "1,6");
    CHECK_STR(S("OR 1 UID 6"), "1,6");
    CHECK_STR(S("1:4 SEEN"), "1,2");

    /* $ is a set of UIDs, whether written as "$" or "UID $" */
    uint32_t saved[] = { 2, 5 };
    v.saved = saved;
    v.nsaved = 2;
    CHECK_STR(S("$"), "2,5");
    CHECK_STR(S("UID $"), "2,5");
    CHECK_STR(S("NOT $"), "1,3,4,6");
    CHECK_STR(S("OR $ DRAFT"), "2,4,5");
    v.saved = NULL;
    v.nsaved = 0;
    CHECK_STR(S("$"), "");
    CHECK_STR(S("NOT $"), "1,2,3,4,5,6");

    /* a view with a gap: the session has been told 3 was expunged, so
     * sequence numbers no longer equal UIDs */
    uint32_t gap[] = { 1, 2, 4, 5, 6 };
    imap_search_view g = v;
    g.uids = gap;
    g.count = 5;
    CHECK_STR(search_v(&g, "3", seqs), "4");
    CHECK_STR(seqs, "3");
    CHECK_STR(search_v(&g, "*", seqs), "6");
    CHECK_STR(seqs, "5");
    CHECK_STR(search_v(&g, "UID 3", NULL), "");
    CHECK_STR(search_v(&g, "UID 3:*", seqs), "4,5,6");
    CHECK_STR(seqs, "3,4,5");
    CHECK_STR(search_v(&g, "SEEN", seqs), "1,2,5");
    CHECK_STR(seqs, "1,2,4");
    CHECK_STR(search_v(&g, "ALL", seqs), "1,2,4,5,6");
    CHECK_STR(seqs, "1,2,3,4,5");
    /* a view that has not seen the last message yet: * is its own last */
    g.uids = f.uids;
    g.count = 4;
    CHECK_STR(search_v(&g, "*", NULL), "4");
    CHECK_STR(search_v(&g, "UID *", NULL), "4");
    CHECK_STR(search_v(&g, "UID 5:*", NULL), "4");
    /* an empty view */
    g.count = 0;
    CHECK_STR(search_v(&g, "ALL", NULL), "");
    CHECK_STR(search_v(&g, "1:*", NULL), "");

    store_snap_put(snap);
    fixture_close(&f);
}

static void test_modseq(void)
{
    fixture f;
    REQUIRE_OK(fixture_open(&f, "search-modseq"));
    store_snap *snap = store_snap_get(f.mb);
    REQUIRE(snap);
    uint64_t h0 = store_snap_highestmodseq(snap);
    store_snap_put(snap);

    store_range r = { f.uids[2], f.uids[2] };
    static const char *const kw[] = { "$Later" };
    uint64_t ms = 0;
    REQUIRE_OK(store_flags(f.mb, &r, 1, STORE_FLAGS_ADD, 0, kw, 1, 0, NULL,
                           NULL, &ms));
    CHECK(ms > h0);
    r.lo = r.hi = f.uids[4];
    uint64_t ms2 = 0;
    REQUIRE_OK(store_flags(f.mb, &r, 1, STORE_FLAGS_ADD, STORE_F_FLAGGED,
                           NULL, 0, 0, NULL, NULL, &ms2));
    CHECK(ms2 > ms);

    snap = store_snap_get(f.mb);
    REQUIRE(snap);
    imap_search_view v = full_view(&f, snap);
    char k[128];
    snprintf(k, sizeof k, "MODSEQ %llu", (unsigned long long)h0 + 1);
    CHECK_STR(S(k), "3,5");
    snprintf(k, sizeof k, "MODSEQ %llu", (unsigned long long)ms2);
    CHECK_STR(S(k), "5");
    snprintf(k, sizeof k, "MODSEQ \"/flags/\\\\Seen\" all %llu",
             (unsigned long long)h0 + 1);
    CHECK_STR(S(k), "3,5");
    CHECK_STR(S("MODSEQ 0"), "1,2,3,4,5,6");
    snprintf(k, sizeof k, "MODSEQ %llu", (unsigned long long)ms2 + 1);
    CHECK_STR(S(k), "");
    /* a keyword created after the fixture is seen by the next run */
    CHECK_STR(S("KEYWORD $Later"), "3");
    CHECK_STR(S("FLAGGED"), "2,5");

    /* the modseq values reported for the result */
    struct { const char *ret; uint64_t want; size_t nsaved; } c[] = {
        { "", ms2, 6 },
        { "RETURN (MIN SAVE)", 0 /* #1's */, 1 },
        { "RETURN (MAX SAVE)", 0 /* #6's */, 1 },
        { "RETURN (MIN MAX SAVE)", 0 /* the higher of #1's, #6's */, 2 },
        { "RETURN (MIN COUNT SAVE)", ms2, 6 },
        { "RETURN (ALL SAVE)", ms2, 6 },
    };
    store_msg m1, m6;
    REQUIRE_OK(store_snap_msg(snap, f.uids[0], &m1));
    REQUIRE_OK(store_snap_msg(snap, f.uids[5], &m6));
    c[1].want = m1.modseq;
    c[2].want = m6.modseq;
    c[3].want = m1.modseq > m6.modseq ? m1.modseq : m6.modseq;
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        snprintf(k, sizeof k, "%s MODSEQ 0", c[i].ret);
        imap_args *a = NULL;
        imap_search_prog *p = NULL;
        const char *err = NULL;
        imap_search_result res = { 0 };
        REQUIRE_OK(parse_cmd(k, false, &a, &p, &err));
        REQUIRE_OK(imap_search_run(p, &v, &res));
        CHECK(imap_search_uses_modseq(p));
        CHECK_EQ(res.n, 6);
        REQUIRE(res.modseqs != NULL);
        CHECK_EQ(res.modseqs[4], ms2);
        CHECK_EQ(imap_search_result_modseq(p, &res), c[i].want);
        store_uidlist l = { 0 };
        REQUIRE_OK(imap_search_saved_uids(p, &res, &l));
        CHECK_EQ(l.n, c[i].nsaved);
        if (c[i].nsaved == 1)
            CHECK_EQ(l.uids[0], strstr(c[i].ret, "MIN") ? f.uids[0] : f.uids[5]);
        if (c[i].nsaved == 2) {
            CHECK_EQ(l.uids[0], f.uids[0]);
            CHECK_EQ(l.uids[1], f.uids[5]);
        }
        store_uidlist_free(&l);
        /* no MODSEQ key: nothing to report, no modseqs kept */
        imap_search_free(p);
        imap_args_free(a);
        a = NULL;
        p = NULL;
        REQUIRE_OK(parse_cmd("RETURN (MIN MAX) SEEN", false, &a, &p, &err));
        REQUIRE_OK(imap_search_run(p, &v, &res));
        CHECK(res.modseqs == NULL);
        CHECK_EQ(imap_search_result_modseq(p, &res), 0);
        REQUIRE_OK(imap_search_saved_uids(p, &res, &l));
        CHECK_EQ(l.n, 2);
        store_uidlist_free(&l);
        imap_search_result_free(&res);
        imap_search_free(p);
        imap_args_free(a);
    }

    /* an empty result saves nothing and reports no modseq */
    {
        imap_args *a = NULL;
        imap_search_prog *p = NULL;
        const char *err = NULL;
        imap_search_result res = { 0 };
        REQUIRE_OK(parse_cmd("RETURN (MIN SAVE) MODSEQ 0 NOT ALL", false, &a,
                             &p, &err));
        REQUIRE_OK(imap_search_run(p, &v, &res));
        CHECK_EQ(res.n, 0);
        CHECK_EQ(imap_search_result_modseq(p, &res), 0);
        store_uidlist l = { 0 };
        REQUIRE_OK(imap_search_saved_uids(p, &res, &l));
        CHECK_EQ(l.n, 0);
        store_uidlist_free(&l);
        imap_search_result_free(&res);
        imap_search_free(p);
        imap_args_free(a);
    }

    store_snap_put(snap);
    fixture_close(&f);
}

/* Messages the session still has in its view after another session
 * expunged them: evaluated while the snapshot has the entry, never after
 * compaction dropped it. */
static void test_expunged_in_view(void)
{
    fixture f;
    REQUIRE_OK(fixture_open(&f, "search-expunged"));
    store_range r = { f.uids[3], f.uids[3] };
    REQUIRE_OK(store_expunge(f.mb, &r, 1, false, NULL, NULL));
    store_snap *snap = store_snap_get(f.mb);
    REQUIRE(snap);
    imap_search_view v = full_view(&f, snap);
    CHECK_STR(S("DRAFT"), "4");
    CHECK_STR(S("SUBJECT \"\xd0\xbc\xd0\xb8\xd1\x80\""), "4");
    CHECK_STR(S("UNDRAFT"), "1,2,3,5,6");
    store_snap_put(snap);

    REQUIRE_OK(store_compact(f.mb, NULL, NULL));
    snap = store_snap_get(f.mb);
    REQUIRE(snap);
    v = full_view(&f, snap);
    char seqs[512];
    CHECK_STR(S("DRAFT"), "");
    CHECK_STR(search_v(&v, "NOT DRAFT", seqs), "1,2,3,5,6");
    CHECK_STR(seqs, "1,2,3,5,6");
    CHECK_STR(S("ALL"), "1,2,3,5,6");
    CHECK_STR(S("BODY fox"), "1");
    store_snap_put(snap);
    fixture_close(&f);
}

/* Running in slices gives the same result as one run. */
static void test_slices(void)
{
    fixture f;
    REQUIRE_OK(fixture_open(&f, "search-slices"));
    store_snap *snap = store_snap_get(f.mb);
    REQUIRE(snap);
    imap_search_view v = full_view(&f, snap);
    const char *progs[] = {
        "ALL", "OR BODY fox SEEN", "TEXT example NOT DELETED",
        "UID 2:* SMALLER 5000", "MODSEQ 0 UNSEEN",
    };
    for (size_t i = 0; i < sizeof progs / sizeof progs[0]; i++) {
        imap_args *a = NULL;
        imap_search_prog *p = NULL;
        const char *err = NULL;
        imap_search_result whole = { 0 }, parts = { 0 };
        REQUIRE_OK(parse_cmd(progs[i], false, &a, &p, &err));
        REQUIRE_OK(imap_search_run(p, &v, &whole));
        REQUIRE_OK(imap_search_run_range(p, &v, 0, 2, &parts));
        REQUIRE_OK(imap_search_run_range(p, &v, 3, 3, &parts));
        REQUIRE_OK(imap_search_run_range(p, &v, 4, 100, &parts));
        REQUIRE_OK(imap_search_run_range(p, &v, 7, 9, &parts));
        CHECK_EQ(whole.n, parts.n);
        for (size_t k = 0; k < whole.n && k < parts.n; k++) {
            CHECK_EQ(whole.seqs[k], parts.seqs[k]);
            CHECK_EQ(whole.uids[k], parts.uids[k]);
        }
        CHECK_EQ(whole.modseqs != NULL, parts.modseqs != NULL);
        /* a result reused for another run is replaced */
        REQUIRE_OK(imap_search_run(p, &v, &parts));
        CHECK_EQ(whole.n, parts.n);
        imap_search_result_free(&whole);
        imap_search_result_free(&parts);
        imap_search_free(p);
        imap_args_free(a);
    }
    store_snap_put(snap);
    fixture_close(&f);
}

/* Folding and dates on their own, through searches on a message built for
 * it. */
static void test_folding(void)
{
    fixture f;
    REQUIRE_OK(fixture_open(&f, "search-fold"));
    const char *body =
        "Subject: fold\r\n"
        "\r\n"
        /* ÀÉÎÕÜ Ÿ Ł ŒŸ ΆΈΉ ЁЖЯ Ӂ Ａ ẞ µ ſ */
        "\xc3\x80\xc3\x89\xc3\x8e\xc3\x95\xc3\x9c \xc5\xb8 \xc5\x81 "
        "\xc5\x92 \xce\x86\xce\x88\xce\x89 \xd0\x81\xd0\x96\xd0\xaf "
        "\xd3\x81 \xef\xbc\xa1 \xe1\xba\x9e \xc2\xb5 \xc5\xbf "
        "\xff\xfe bytes\r\n";
    store_new_msg nm = { .data = body, .len = strlen(body),
                         .internal_date = 1704103200 };
    uint32_t uid;
    REQUIRE_OK(store_append(f.mb, &nm, 1, &uid));
    f.uids[f.n++] = uid;
    store_snap *snap = store_snap_get(f.mb);
    REQUIRE(snap);
    imap_search_view v = full_view(&f, snap);
    char want[16];
    snprintf(want, sizeof want, "%u", uid);
    const char *needles[] = {
        "\xc3\xa0\xc3\xa9\xc3\xae\xc3\xb5\xc3\xbc",     /* àéîõü */
        "\xc3\xbf",                                     /* ÿ */
        "\xc5\x82",                                     /* ł */
        "\xc5\x93",                                     /* œ */
        "\xce\xac\xce\xad\xce\xae",                     /* άέή */
        "\xd1\x91\xd0\xb6\xd1\x8f",                     /* ёжя */
        "\xd3\x82",                                     /* ӂ */
        "\xef\xbd\x81",                                 /* ａ */
        "\xc3\x9f \xce\xbc s",                           /* ß μ s */
        "\xc3\x80\xc3\x89",                             /* ÀÉ as is */
        "\xd0\x81\xd0\x96",                             /* ЁЖ as is */
    };
    for (size_t i = 0; i < sizeof needles / sizeof needles[0]; i++) {
        char k[128];
        snprintf(k, sizeof k, "BODY \"%s\"", needles[i]);
        CHECK_STR(S(k), want);
    }
    /* invalid UTF-8 bytes were turned into U+FFFD by decoding; the ASCII
     * around them still matches */
    CHECK_STR(S("BODY BYTES"), want);
    CHECK_STR(S("BODY \"\xc3\xa0\xc3\xa8\""), "");
    store_snap_put(snap);
    fixture_close(&f);
}

static void gen_key(char *b, size_t *w, size_t cap, unsigned *seed, int depth)
{
    static const char *const simple[] = {
        "ALL", "SEEN", "UNSEEN", "1:*", "2:4", "*", "UID 3:*", "$",
        "BODY fox", "SUBJECT \"\"", "HEADER X-Custom \"\"", "KEYWORD $Junk",
        "LARGER 100", "BEFORE 1-Jan-2024", "SENTSINCE 1-Jun-2024",
        "MODSEQ 0", "TEXT example", "NEW", "OLD", "RECENT", "DRAFT",
        "FLAGGED", "CC carol", "FROM \"j\xc3\xb6rg\"", "SMALLER 5000",
        "ON 15-Feb-2024", "UNKEYWORD \\Seen", "3,5", "BODY \"caf\xc3\xa9\"",
        "SUBJECT NIL", "ANSWERED", "DELETED", "UNDELETED", "BCC secret",
        "TO bob", "HEADER Message-ID m1", "SINCE 1-Jun-2024",
    };
    unsigned r = rand_r(seed) % 10;
    if (depth < 4 && r == 0) {
        *w += (size_t)snprintf(b + *w, cap - *w, "NOT ");
        gen_key(b, w, cap, seed, depth + 1);
    } else if (depth < 4 && r == 1) {
        *w += (size_t)snprintf(b + *w, cap - *w, "OR ");
        gen_key(b, w, cap, seed, depth + 1);
        *w += (size_t)snprintf(b + *w, cap - *w, " ");
        gen_key(b, w, cap, seed, depth + 1);
    } else if (depth < 4 && r == 2) {
        *w += (size_t)snprintf(b + *w, cap - *w, "(");
        gen_key(b, w, cap, seed, depth + 1);
        *w += (size_t)snprintf(b + *w, cap - *w, " ");
        gen_key(b, w, cap, seed, depth + 1);
        *w += (size_t)snprintf(b + *w, cap - *w, ")");
    } else {
        *w += (size_t)snprintf(b + *w, cap - *w, "%s",
                               simple[rand_r(seed) % (sizeof simple / sizeof simple[0])]);
    }
}

/* Random programs and token soup: whatever parses must run, NOT (P) must give the
 * complement of P, and OR P P / (P P) must give P.  Under the sanitizers
 * this is also a memory-safety check of the parser and evaluator. */
static void test_random(void)
{
    fixture f;
    REQUIRE_OK(fixture_open(&f, "search-random"));
    store_snap *snap = store_snap_get(f.mb);
    REQUIRE(snap);
    imap_search_view v = full_view(&f, snap);
    uint32_t saved[] = { 1, 4 };
    v.saved = saved;
    v.nsaved = 2;
    static const char *const vocab[] = {
        "ALL", "SEEN", "UNSEEN", "NOT", "OR", "(", ")", "1:*", "2:4", "*",
        "UID", "$", "BODY", "fox", "SUBJECT", "\"\"", "HEADER", "X-Custom",
        "KEYWORD", "$Junk", "LARGER", "100", "BEFORE", "1-Jan-2024",
        "SENTSINCE", "1-Jun-2024", "MODSEQ", "0", "TEXT", "example", "NEW",
        "OLD", "RECENT", "DRAFT", "FLAGGED", "CC", "carol", "FROM", "SMALLER",
        "5000", "ON", "15-Feb-2024", "UNKEYWORD", "\\Seen", "3,5", "CHARSET",
        "UTF-8", "RETURN", "(MIN)", "\"caf\xc3\xa9\"", "NIL",
    };
    const size_t nv = sizeof vocab / sizeof vocab[0];
    unsigned seed = 12345, ok = 0;
    for (int iter = 0; iter < 3000; iter++) {
        char keys[1024];
        size_t w = 0;
        if (iter % 2) {     /* soup */
            int ntok = 1 + (int)(rand_r(&seed) % 12);
            for (int t = 0; t < ntok; t++)
                w += (size_t)snprintf(keys + w, sizeof keys - w, "%s%s",
                                      t ? " " : "", vocab[rand_r(&seed) % nv]);
        } else {            /* well-formed */
            int nkeys = 1 + (int)(rand_r(&seed) % 3);
            for (int t = 0; t < nkeys; t++) {
                if (t)
                    keys[w++] = ' ';
                gen_key(keys, &w, sizeof keys, &seed, 0);
            }
        }
        char a1[4096], a2[4096], a3[4096], both[2100];
        snprintf(a1, sizeof a1, "%s", search_v(&v, keys, NULL));
        if (strncmp(a1, "ERR", 3) == 0)
            continue;
        ok++;
        if (strncmp(keys, "RETURN", 6) == 0 || strncmp(keys, "CHARSET", 7) == 0)
            continue;
        snprintf(both, sizeof both, "NOT (%s)", keys);
        snprintf(a2, sizeof a2, "%s", search_v(&v, both, NULL));
        /* complement of a1 over 1..6 */
        char want[64] = "";
        size_t ww = 0;
        for (uint32_t u = 1; u <= 6; u++) {
            char num[8];
            snprintf(num, sizeof num, "%u", u);
            bool in = false;
            for (const char *q = a1; *q;) {
                if ((size_t)atoi(q) == u)
                    in = true;
                q = strchr(q, ',');
                if (!q)
                    break;
                q++;
            }
            if (!in)
                ww += (size_t)snprintf(want + ww, sizeof want - ww, "%s%u",
                                       ww ? "," : "", u);
        }
        if (strcmp(a2, want)) {
            fprintf(stderr, "NOT (%s): %s, complement of %s\n", keys, a2, a1);
            test_failures_++;
        }
        snprintf(both, sizeof both, "OR (%s) (%s)", keys, keys);
        snprintf(a3, sizeof a3, "%s", search_v(&v, both, NULL));
        if (strcmp(a3, a1)) {
            fprintf(stderr, "%s: %s vs %s\n", both, a3, a1);
            test_failures_++;
        }
    }
    CHECK(ok > 1500);
    store_snap_put(snap);
    fixture_close(&f);
}

/* A large mailbox: index keys over 10^5 messages, checked against a
 * direct computation.  Timing is printed, never asserted. */
static void test_large(void)
{
    fixture f;
    REQUIRE_OK(fixture_open(&f, "search-large"));
    const uint32_t N = 100000;
    store_new_msg *nm = calloc(N, sizeof *nm);
    uint32_t *uids = malloc((N + 6) * sizeof *uids);
    char (*bodies)[96] = malloc(N * sizeof *bodies);
    REQUIRE(nm && uids && bodies);
    static const char *const kw[] = { "$Big" };
    for (uint32_t i = 0; i < N; i++) {
        int len = snprintf(bodies[i], sizeof bodies[i],
                           "Subject: m%u\r\n\r\n%.*s\r\n", i, (int)(i % 50),
                           "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy");
        nm[i] = (store_new_msg){ .data = bodies[i], .len = (size_t)len,
                                 .internal_date = 1704067200 + (int64_t)i * 600,
                                 .flags = (i % 3 == 0 ? STORE_F_SEEN : 0) |
                                          (i % 7 == 0 ? STORE_F_FLAGGED : 0),
                                 .keywords = kw, .nkeywords = i % 11 == 0 };
    }
    for (uint32_t done = 0; done < N; done += 10000)
        REQUIRE_OK(store_append(f.mb, nm + done, 10000, uids + 6 + done));
    memcpy(uids, f.uids, 6 * sizeof *uids);
    /* the view skips every 13th message (expunged as far as the session
     * knows) */
    uint32_t nview = 0;
    for (uint32_t i = 0; i < N + 6; i++)
        if (i % 13 != 5)
            uids[nview++] = uids[i];

    store_snap *snap = store_snap_get(f.mb);
    REQUIRE(snap);
    imap_search_view v = { .snap = snap, .uids = uids, .count = nview };
    imap_args *a = NULL;
    imap_search_prog *p = NULL;
    const char *err = NULL;
    imap_search_result res = { 0 };
    REQUIRE_OK(parse_cmd("UNSEEN NOT FLAGGED LARGER 40 SINCE 2-Jan-2024 "
                         "KEYWORD $Big", false, &a, &p, &err));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    REQUIRE_OK(imap_search_run(p, &v, &res));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    size_t want = 0;
    int64_t day2 = 1704153600;  /* 2-Jan-2024 00:00 UTC */
    for (uint32_t s = 0; s < nview; s++) {
        uint32_t uid = uids[s];
        if (uid <= f.uids[5])
            continue;
        uint32_t i = uid - f.uids[5] - 1;
        bool hit = i % 3 && i % 7 && i % 11 == 0 &&
                   strlen(bodies[i]) > 40 &&
                   1704067200 + (int64_t)i * 600 >= day2;
        if (hit) {
            CHECK(want < res.n && res.uids[want] == uid &&
                  res.seqs[want] == s + 1);
            want++;
        }
    }
    CHECK_EQ(res.n, want);
    fprintf(stderr, "  index keys over %u messages: %zu matches in %.1f ms\n",
            nview, res.n,
            (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
            (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    imap_search_free(p);
    imap_args_free(a);
    a = NULL;
    p = NULL;

    /* a cache key over all of them */
    REQUIRE_OK(parse_cmd("SUBJECT m9999", false, &a, &p, &err));
    clock_gettime(CLOCK_MONOTONIC, &t0);
    REQUIRE_OK(imap_search_run(p, &v, &res));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* m9999 and m99990..m99999, less those outside the view */
    size_t n = 0;
    for (uint32_t s = 0; s < nview; s++) {
        uint32_t uid = uids[s];
        if (uid <= f.uids[5])
            continue;
        uint32_t i = uid - f.uids[5] - 1;
        char name[16];
        snprintf(name, sizeof name, "m%u", i);
        n += strstr(name, "m9999") != NULL;
    }
    CHECK_EQ(res.n, n);
    fprintf(stderr, "  SUBJECT over %u messages: %zu matches in %.1f ms\n",
            nview, res.n,
            (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
            (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);

    imap_search_result_free(&res);
    imap_search_free(p);
    imap_args_free(a);
    store_snap_put(snap);
    free(nm);
    free(uids);
    free(bodies);
    fixture_close(&f);
}

int main(void)
{
    RUN(test_parse_errors);
    RUN(test_charset);
    RUN(test_limits);
    RUN(test_return_options);
    RUN(test_partial);
    RUN(test_within);
    RUN(test_freeze);
    RUN(test_flags_sizes);
    RUN(test_dates);
    RUN(test_objectid_savedate);
    RUN(test_headers);
    RUN(test_body_text);
    RUN(test_logic);
    RUN(test_sets);
    RUN(test_modseq);
    RUN(test_expunged_in_view);
    RUN(test_slices);
    RUN(test_folding);
    RUN(test_random);
    RUN(test_large);
    return test_summary();
}
