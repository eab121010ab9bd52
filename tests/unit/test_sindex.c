/* tests/unit/test_sindex.c — the search index (core/search/sindex.c): its
 * posting lists through its own interface, and SEARCH with the index
 * against SEARCH without it (the scan is the oracle) on a generated corpus
 * (multibyte text, case, RFC 2047 words, base64 and QP bodies in other
 * charsets, embedded messages) with random needles: whole runs and slices,
 * after appends (the small last segment merged), after every kind of
 * damage to a segment (wrong answers never; the segment removed and built
 * again), after expunge and compaction, and with search_index off (no file
 * written). */
#include "core/search/search.h"
#include "core/search/sindex.h"
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- posting lists through the module's interface -------------------- */

static size_t count_segments(const char *dir, char *first, size_t cap)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *de;
    if (first && cap)
        first[0] = 0;
    while (d && (de = readdir(d))) {
        unsigned a, b;
        char c;
        if (sscanf(de->d_name, "sindex.%u.%u%c", &a, &b, &c) == 2) {
            if (first && (!first[0] || strcmp(de->d_name, first) < 0))
                snprintf(first, cap, "%s", de->d_name);
            n++;
        }
    }
    if (d)
        closedir(d);
    return n;
}

static void test_postings(void)
{
    const char *dir = test_tmpdir("sindex-post");
    sindex *x = sindex_open(dir, 7, true);
    REQUIRE(x);
    /* uid 3: "hello world", uid 9: "yellow", uid 10: "", uid 12 two texts */
    CHECK(sindex_wants(x, 3));
    REQUIRE_OK(sindex_doc(x, 3));
    REQUIRE_OK(sindex_add(x, "hello world", 11));
    CHECK(!sindex_wants(x, 3));
    REQUIRE_OK(sindex_doc(x, 9));
    REQUIRE_OK(sindex_add(x, "yellow\0low", 10));
    REQUIRE_OK(sindex_doc(x, 10));
    REQUIRE_OK(sindex_doc(x, 12));
    REQUIRE_OK(sindex_add(x, "wor", 3));
    REQUIRE_OK(sindex_add(x, "ld\xc3\xa4", 4));
    REQUIRE_OK(sindex_flush(x));
    sindex_close(x);
    char first[256];
    CHECK_EQ(count_segments(dir, first, sizeof first), 1);
    CHECK(!strcmp(first, "sindex.3.12"));

    x = sindex_open(dir, 7, false);
    REQUIRE(x);
    CHECK(!sindex_wants(x, 13));        /* not the builder */
    CHECK(!sindex_query(x, "lo", 2));   /* too short: scan */
    CHECK(!sindex_query(x, "a\0b", 3)); /* a NUL: scan */
    sindex_q *q = sindex_query(x, "llo", 3);
    REQUIRE(q);
    CHECK_EQ(sindex_maybe(q, 1), 1);    /* below every segment: scan */
    CHECK_EQ(sindex_maybe(q, 3), 1);
    CHECK_EQ(sindex_maybe(q, 5), 1);    /* in the range, not indexed */
    CHECK_EQ(sindex_maybe(q, 9), 1);
    CHECK_EQ(sindex_maybe(q, 10), 0);
    CHECK_EQ(sindex_maybe(q, 12), 0);
    CHECK_EQ(sindex_maybe(q, 13), 1);   /* above: scan */
    CHECK_EQ(sindex_maybe(q, 3), 1);    /* out of order still right */
    sindex_query_free(q);
    q = sindex_query(x, "world", 5);
    REQUIRE(q);
    CHECK_EQ(sindex_maybe(q, 3), 1);
    CHECK_EQ(sindex_maybe(q, 9), 0);
    CHECK_EQ(sindex_maybe(q, 12), 0);   /* "wor" and "ld" apart: no "rld" */
    sindex_query_free(q);
    q = sindex_query(x, "owl", 3);      /* across the NUL: not a trigram */
    REQUIRE(q);
    CHECK_EQ(sindex_maybe(q, 9), 0);
    sindex_query_free(q);
    q = sindex_query(x, "d\xc3\xa4", 3);  /* multibyte, inside one text */
    REQUIRE(q);
    CHECK_EQ(sindex_maybe(q, 12), 1);
    CHECK_EQ(sindex_maybe(q, 3), 0);
    sindex_query_free(q);
    sindex_close(x);

    /* another UIDVALIDITY: the segment is not this mailbox's */
    x = sindex_open(dir, 8, false);
    q = sindex_query(x, "zzz", 3);
    CHECK_EQ(sindex_maybe(q, 10), 1);
    sindex_stats st;
    sindex_get_stats(x, &st);
    CHECK_EQ(st.bad, 1);
    sindex_query_free(q);
    sindex_close(x);

    /* a segment written in steps: nothing is there until the last */
    x = sindex_open(dir, 7, true);
    REQUIRE(x);
    unsigned seed = 1;
    for (uint32_t uid = 100; uid < 400; uid++) {
        char text[600];
        for (size_t i = 0; i < sizeof text; i++)
            text[i] = (char)('a' + rand_r(&seed) % 26);
        REQUIRE_OK(sindex_doc(x, uid));
        REQUIRE_OK(sindex_add(x, text, sizeof text));
    }
    CHECK_EQ(sindex_seal(x, 1), 1);
    unsigned steps = 1;
    int rc;
    while ((rc = sindex_work(x, 1)) == 1) {
        CHECK_EQ(count_segments(dir, NULL, 0), 1);
        steps++;
    }
    CHECK_EQ(rc, 0);
    CHECK(steps > 10);      /* 300 x ~590 pairs, 32768 a step, 3 passes */
    /* the small segment before took them in */
    CHECK_EQ(count_segments(dir, first, sizeof first), 1);
    CHECK(!strcmp(first, "sindex.3.399"));
    sindex_close(x);

    /* a budget of messages per handle; a seal while a segment is still
     * being written waits for it instead of finishing it at once */
    x = sindex_open(dir, 7, true);
    REQUIRE(x);
    sindex_set_budget(x, 2);
    CHECK(sindex_wants(x, 1000));
    REQUIRE_OK(sindex_doc(x, 1000));
    REQUIRE_OK(sindex_add(x, "budget one", 10));
    REQUIRE_OK(sindex_doc(x, 1001));
    REQUIRE_OK(sindex_add(x, "budget two", 10));
    CHECK(!sindex_wants(x, 1002));
    sindex_set_budget(x, 0);
    for (uint32_t uid = 1002; uid < 1300; uid++) {
        char text[600];
        for (size_t i = 0; i < sizeof text; i++)
            text[i] = (char)('a' + rand_r(&seed) % 26);
        REQUIRE_OK(sindex_doc(x, uid));
        REQUIRE_OK(sindex_add(x, text, sizeof text));
    }
    CHECK_EQ(sindex_seal(x, 1), 1);
    REQUIRE_OK(sindex_doc(x, 1400));
    REQUIRE_OK(sindex_add(x, "later", 5));
    CHECK_EQ(sindex_seal(x, 1), 1);    /* waits for the first */
    while ((rc = sindex_work(x, 1)) == 1)
        ;
    CHECK_EQ(rc, 0);
    /* 3..399 (too big to take in), 1000..1299 and 1400 */
    CHECK_EQ(count_segments(dir, NULL, 0), 3);
    sindex_close(x);
    x = sindex_open(dir, 7, false);
    q = sindex_query(x, "later", 5);
    CHECK_EQ(sindex_maybe(q, 1400), 1);
    CHECK_EQ(sindex_maybe(q, 1001), 0);
    sindex_query_free(q);
    q = sindex_query(x, "budget two", 10);
    CHECK_EQ(sindex_maybe(q, 1001), 1);
    CHECK_EQ(sindex_maybe(q, 1000), 0);
    sindex_query_free(q);
    sindex_close(x);

    /* a second builder waits for nobody: it does not build */
    sindex *b1 = sindex_open(dir, 7, true), *b2 = sindex_open(dir, 7, true);
    CHECK(sindex_wants(b1, 1500));
    CHECK(!sindex_wants(b1, 20));       /* covered */
    CHECK(!sindex_wants(b2, 1500));
    sindex_close(b2);
    sindex_close(b1);
    test_rm_rf(dir);
}

/* ---- the corpus ------------------------------------------------------- */

typedef struct fixture {
    char root[512];
    store_user *u;
    store_mbox *mb;
    uint32_t *uids;
    uint32_t n, cap;
} fixture;

static const char *const words[] = {
    "apple", "Banana", "cherry", "Dattel", "STRA\xc3\x9f" "E", "stra\xc3\x9f" "e",
    "\xc3\x9c" "bermut", "\xc3\xbc" "BERMUT", "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82",
    "\xd0\xbf\xd0\xa0\xd0\x98\xd0\x92\xd0\x95\xd0\xa2", "\xce\xa3\xce\x9f\xce\xa6\xce\x99\xce\x91",
    "\xcf\x83\xce\xbf\xcf\x86\xce\xb9\xce\xb1", "\xe1\xba\x9e" "ig", "caf\xc3\xa9", "CAF\xc3\x89",
    "meeting", "Budget", "qx-7731", "zeta", "Quartal", "x", "ab", "\xef\xbc\xa1\xef\xbc\xa2",
    "na\xc3\xafve", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "ma\xc3\xb1" "ana",
};
#define NWORDS (sizeof words / sizeof words[0])

static void add_text(char *b, size_t *w, size_t cap, unsigned *seed, int nwords)
{
    for (int i = 0; i < nwords && *w + 64 < cap; i++)
        *w += (size_t)snprintf(b + *w, cap - *w, "%s%s", i ? (i % 9 ? " " : "\r\n") : "",
                               words[rand_r(seed) % NWORDS]);
    *w += (size_t)snprintf(b + *w, cap - *w, "\r\n");
}

static void b64(const unsigned char *in, size_t n, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t w = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = in[i] << 16 | (i + 1 < n ? in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[w++] = t[v >> 18 & 63];
        out[w++] = t[v >> 12 & 63];
        out[w++] = i + 1 < n ? t[v >> 6 & 63] : '=';
        out[w++] = i + 2 < n ? t[v & 63] : '=';
        if (w % 78 == 76) {
            out[w++] = '\r';
            out[w++] = '\n';
        }
    }
    out[w] = 0;
}

/* One message of kind k (0 plain, 1 base64 UTF-8, 2 QP Latin-1,
 * 3 multipart with an embedded message, 4 encoded-word headers). */
static size_t make_msg(char *b, size_t cap, unsigned *seed, unsigned k)
{
    size_t w = 0;
    char body[4096], enc[6000];
    size_t bw = 0;
    add_text(body, &bw, sizeof body, seed, 5 + (int)(rand_r(seed) % 40));
    const char *subj = words[rand_r(seed) % NWORDS];
    switch (k % 5) {
    case 0:
        w = (size_t)snprintf(b, cap, "From: a@example.org\r\nSubject: %s plain\r\n\r\n%s",
                             subj, body);
        break;
    case 1:
        b64((const unsigned char *)body, bw, enc);
        w = (size_t)snprintf(b, cap, "From: b@example.org\r\nSubject: b64\r\nMIME-Version: 1.0\r\n"
                             "Content-Type: text/plain; charset=utf-8\r\n"
                             "Content-Transfer-Encoding: base64\r\n\r\n%s\r\n", enc);
        break;
    case 2: {
        /* Latin-1 in QP: only the words with a Latin-1 form */
        static const char *const l1[] = { "=DCbermut", "stra=DFe", "caf=E9", "CAF=C9",
                                          "na=EFve", "ma=F1ana", "apple", "=FCBERMUT" };
        w = (size_t)snprintf(b, cap, "From: c@example.org\r\nSubject: qp\r\nMIME-Version: 1.0\r\n"
                             "Content-Type: text/plain; charset=iso-8859-1\r\n"
                             "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
        for (int i = 0; i < 12; i++)
            w += (size_t)snprintf(b + w, cap - w, "%s%s", l1[rand_r(seed) % 8],
                                  i % 4 == 3 ? "=\r\n" : " ");
        w += (size_t)snprintf(b + w, cap - w, "\r\n");
        break;
    }
    case 3: {
        char inner[1024];
        size_t iw = 0;
        add_text(inner, &iw, sizeof inner, seed, 6);
        w = (size_t)snprintf(b, cap, "From: d@example.org\r\nSubject: multi\r\n"
                             "MIME-Version: 1.0\r\n"
                             "Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n"
                             "preamble zeta\r\n--XX\r\nContent-Type: text/plain\r\n\r\n%s"
                             "--XX\r\nContent-Type: message/rfc822\r\n\r\n"
                             "Subject: inner %s\r\nFrom: e@example.org\r\n\r\n%s"
                             "--XX\r\nContent-Type: application/octet-stream\r\n"
                             "X-Part: %s\r\n\r\nmeeting binary\r\n--XX--\r\n",
                             body, words[rand_r(seed) % NWORDS], inner,
                             words[rand_r(seed) % NWORDS]);
        break;
    }
    default:
        b64((const unsigned char *)subj, strlen(subj), enc);
        w = (size_t)snprintf(b, cap, "From: =?UTF-8?B?%s?= <f@example.org>\r\n"
                             "Subject: =?ISO-8859-1?Q?caf=E9_Quartal?=\r\n"
                             "X-Note: =?UTF-8?B?%s?=\r\n\r\n%s", enc, enc, body);
        break;
    }
    return w < cap ? w : cap - 1;
}

static int append_corpus(fixture *f, unsigned n, unsigned *seed)
{
    static char buf[16384];
    if (f->n + n > f->cap) {
        f->cap = f->n + n + 64;
        f->uids = realloc(f->uids, f->cap * sizeof *f->uids);
        if (!f->uids)
            return -ENOMEM;
    }
    for (unsigned i = 0; i < n; i++) {
        size_t len = make_msg(buf, sizeof buf, seed, rand_r(seed));
        store_new_msg m = { .data = buf, .len = len, .internal_date = 1700000000 };
        int rc = store_append(f->mb, &m, 1, &f->uids[f->n]);
        if (rc < 0)
            return rc;
        f->n++;
    }
    return 0;
}

static int fixture_open(fixture *f, const char *tag, unsigned n, unsigned *seed)
{
    memset(f, 0, sizeof *f);
    store_opts o;
    store_opts_default(&o);
    o.fsync = STORE_FSYNC_NEVER;
    snprintf(f->root, sizeof f->root, "%s", test_tmpdir(tag));
    int rc = store_user_open(f->root, "u", &o, &f->u);
    if (rc == 0)
        rc = store_mbox_open(f->u, "INBOX", &f->mb);
    if (rc == 0)
        rc = append_corpus(f, n, seed);
    return rc;
}

static void fixture_close(fixture *f)
{
    if (f->mb)
        store_mbox_close(f->mb);
    if (f->u)
        store_user_close(f->u);
    free(f->uids);
    test_rm_rf(f->root);
}

/* The view: every live message (the fixture's list, minus expunged). */
static uint32_t live_view(fixture *f, store_snap *snap)
{
    uint32_t w = 0;
    for (uint32_t i = 0; i < f->n; i++) {
        store_msg m;
        if (store_snap_msg(snap, f->uids[i], &m) == 0)
            f->uids[w++] = f->uids[i];
    }
    f->n = w;
    return w;
}

/* Run keys over the mailbox, in slices of chunk messages (0: at once), with
 * the index on or off.  Returns a hash of the answer's UIDs and their
 * number in *n; ~0 on failure. */
static uint64_t run(fixture *f, const char *keys, bool index, unsigned chunk, size_t *n)
{
    imap_search_set_index(index);
    char line[2048];
    snprintf(line, sizeof line, "t SEARCH CHARSET UTF-8 %s", keys);
    imap_args *a = NULL;
    imap_search_prog *p = NULL;
    const char *tag, *name, *err;
    size_t taglen, nargs;
    imap_arg *args;
    uint64_t h = 1469598103934665603ull;
    int rc = imap_args_parse((const uint8_t *)line, strlen(line), &a, &tag, &taglen, &name,
                             &args, &nargs, &err);
    if (rc == 0)
        rc = imap_search_parse(args, nargs, NULL, &p, &err);
    store_snap *snap = rc == 0 ? store_snap_get(f->mb) : NULL;
    imap_search_result res = {0};
    if (snap) {
        imap_search_view v = {.snap = snap, .uids = f->uids, .count = live_view(f, snap)};
        if (!chunk)
            rc = imap_search_run(p, &v, &res);
        /* as SEARCH runs it: skip what the index rules out, a slice,
         * and at the end the index written in steps */
        for (uint32_t s = 1; chunk && rc == 0 && s <= v.count; s += chunk) {
            if ((s = imap_search_skip(p, &v, s)) > v.count)
                break;
            rc = imap_search_run_range(p, &v, s, s + chunk - 1, &res);
        }
        while (chunk && rc == 0 && imap_search_finish(p))
            ;
        store_snap_put(snap);
    }
    for (size_t i = 0; i < res.n; i++)
        h = (h ^ res.uids[i]) * 1099511628211ull;
    *n = res.n;
    imap_search_result_free(&res);
    imap_search_free(p);
    imap_args_free(a);
    imap_search_set_index(true);
    return rc < 0 ? ~0ull : h;
}

/* keys with the index (as it is now) and without agree. */
static bool same(fixture *f, const char *keys, unsigned chunk)
{
    size_t n1, n2;
    uint64_t off = run(f, keys, false, 0, &n1);
    uint64_t on = run(f, keys, true, chunk, &n2);
    if (off == ~0ull || on != off) {
        fprintf(stderr, "%s: index %zu hits, scan %zu\n", keys, n2, n1);
        return false;
    }
    return true;
}

/* A needle: a word (in another case), a piece of one, or a piece across
 * two words, quoted for the command. */
static void make_needle(char *out, size_t cap, unsigned *seed)
{
    char raw[128];
    const char *w1 = words[rand_r(seed) % NWORDS], *w2 = words[rand_r(seed) % NWORDS];
    int kind = (int)(rand_r(seed) % 4);
    if (kind == 0)
        snprintf(raw, sizeof raw, "%s", w1);
    else if (kind == 1)
        snprintf(raw, sizeof raw, "%s %s", w1, w2);
    else {
        size_t l = strlen(w1), s = l > 1 ? rand_r(seed) % (l - 1) : 0;
        size_t e = s + 1 + rand_r(seed) % (l - s);
        snprintf(raw, sizeof raw, "%.*s", (int)(e - s), w1 + s);
    }
    if (kind == 3)      /* random case of the ASCII letters */
        for (char *c = raw; *c; c++)
            if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z'))
                *c = (char)(rand_r(seed) & 1 ? *c & ~0x20 : *c | 0x20);
    snprintf(out, cap, "\"%s\"", raw);
}

static void check_random(fixture *f, unsigned *seed, int rounds, const char *what)
{
    int bad = 0;
    for (int i = 0; i < rounds && bad < 5; i++) {
        char n1[160], n2[160], keys[400];
        make_needle(n1, sizeof n1, seed);
        make_needle(n2, sizeof n2, seed);
        switch (i % 6) {
        case 0: snprintf(keys, sizeof keys, "BODY %s", n1); break;
        case 1: snprintf(keys, sizeof keys, "TEXT %s", n1); break;
        case 2: snprintf(keys, sizeof keys, "BODY %s TEXT %s", n1, n2); break;
        case 3: snprintf(keys, sizeof keys, "OR BODY %s NOT TEXT %s", n1, n2); break;
        case 4: snprintf(keys, sizeof keys, "NOT BODY %s", n1); break;
        default: snprintf(keys, sizeof keys, "SUBJECT %s TEXT %s", n1, n2); break;
        }
        if (!same(f, keys, i % 3 == 0 ? 7 : 0))
            bad++;
    }
    if (bad) {
        fprintf(stderr, "%s: %d answers differ\n", what, bad);
        test_failures_ += bad;
    }
}

/* Words of the body: a word in enough of a segment's messages answers
 * "certainly in the body" for them, exactly and only for the word as a
 * whole; a word only in header text, a piece of a word, a rare word and a
 * segment written before words were kept answer "maybe". */
static void test_words(void)
{
    const char *dir = test_tmpdir("sindex-words");
    sindex *x = sindex_open(dir, 7, true);
    REQUIRE(x);
    for (uint32_t uid = 1; uid <= 40; uid++) {
        char body[128];
        int n = snprintf(body, sizeof body, "dear sir,\r\nthe invoice%s is late. rare%u",
                         uid % 2 ? " \xc3\xa4rger" : "", uid);
        REQUIRE_OK(sindex_doc(x, uid));
        REQUIRE_OK(sindex_add_body(x, body, (size_t)n));
        REQUIRE_OK(sindex_add(x, "subject: headerword\0", 20));
    }
    REQUIRE_OK(sindex_flush(x));
    sindex_close(x);

    x = sindex_open(dir, 7, false);
    REQUIRE(x);
    sindex_q *q = sindex_query(x, "invoice", 7);
    REQUIRE(q);
    for (uint32_t uid = 1; uid <= 40; uid++)
        CHECK_EQ(sindex_state(q, uid), SINDEX_BODY_HAS);
    CHECK_EQ(sindex_state(q, 41), SINDEX_MAYBE);    /* not indexed */
    sindex_query_free(q);
    q = sindex_query(x, "\xc3\xa4rger", 6);           /* multibyte word, odd UIDs */
    REQUIRE(q);
    CHECK_EQ(sindex_state(q, 1), SINDEX_BODY_HAS);
    CHECK_EQ(sindex_state(q, 2), SINDEX_NO);
    sindex_query_free(q);
    const char *maybe[] = {"nvoic", "headerword", "rare7", "the invoice"};
    for (size_t i = 0; i < sizeof maybe / sizeof *maybe; i++) {
        q = sindex_query(x, maybe[i], strlen(maybe[i]));
        REQUIRE(q);
        CHECK_EQ(sindex_state(q, 7), SINDEX_MAYBE);
        CHECK_EQ(sindex_maybe(q, 7), 1);
        sindex_query_free(q);
    }
    q = sindex_query(x, "invoicex", 8);
    REQUIRE(q);
    CHECK_EQ(sindex_state(q, 7), SINDEX_NO);
    sindex_query_free(q);
    sindex_close(x);

    /* a merge keeps the words: one more message absorbs the small segment */
    x = sindex_open(dir, 7, true);
    REQUIRE(x);
    REQUIRE_OK(sindex_doc(x, 41));
    REQUIRE_OK(sindex_add_body(x, "no such word here", 17));
    REQUIRE_OK(sindex_flush(x));
    sindex_close(x);
    char first[256];
    CHECK_EQ(count_segments(dir, first, sizeof first), 1);
    CHECK(!strcmp(first, "sindex.1.41"));
    x = sindex_open(dir, 7, false);
    q = sindex_query(x, "invoice", 7);
    REQUIRE(q);
    CHECK_EQ(sindex_state(q, 3), SINDEX_BODY_HAS);
    CHECK_EQ(sindex_state(q, 41), SINDEX_NO);
    sindex_query_free(q);
    sindex_close(x);
    test_rm_rf(dir);
}

static void test_exact(void)
{
    unsigned seed = 4242;
    fixture f;
    unsigned n = test_quick() ? 300 : 1500;
    REQUIRE_OK(fixture_open(&f, "sindex-exact", n, &seed));
    const char *dir = store_mbox_dir(f.mb);
    /* the first body search builds the index in slices, and is exact */
    CHECK(same(&f, "BODY \"apple\"", 5));
    CHECK(count_segments(dir, NULL, 0) >= 1);
    size_t hits;
    CHECK(run(&f, "BODY \"STRASSE\"", true, 0, &hits) != ~0ull);
    CHECK_EQ(hits, 0);                          /* ß is not "ss" here */
    CHECK(run(&f, "BODY \"stra\xc3\x9f" "e\"", true, 0, &hits) != ~0ull && hits > 0);
    CHECK(run(&f, "TEXT \"caf\xc3\xa9 quartal\"", true, 0, &hits) != ~0ull && hits > 0);
    CHECK(same(&f, "TEXT \"caf\xc3\xa9 quartal\"", 0));     /* encoded words */
    CHECK(same(&f, "BODY \"=DC\"", 0));         /* QP is decoded: no match */
    CHECK(same(&f, "BODY \"\xc3\xbc" "bermut\"", 0));  /* ISO-8859-1 Ü, folded */
    CHECK(same(&f, "BODY \"inner\"", 0));       /* embedded message header */
    CHECK(same(&f, "BODY \"x-part\"", 0));      /* a part header: TEXT only */
    CHECK(same(&f, "TEXT \"x-part\"", 0));
    CHECK(same(&f, "BODY \"binary\"", 0));      /* not a text part */
    CHECK(same(&f, "BODY \"preamble\"", 0));
    check_random(&f, &seed, test_quick() ? 150 : 600, "exact");
    fixture_close(&f);
}

/* Appends: new messages are found before they are indexed, and the small
 * last segment takes them in instead of new files piling up. */
static void test_appends(void)
{
    unsigned seed = 99;
    fixture f;
    REQUIRE_OK(fixture_open(&f, "sindex-append", 200, &seed));
    const char *dir = store_mbox_dir(f.mb);
    CHECK(same(&f, "BODY \"zeta\"", 0));
    CHECK_EQ(count_segments(dir, NULL, 0), 1);
    for (int i = 0; i < 10; i++) {
        REQUIRE_OK(append_corpus(&f, 1 + (unsigned)i % 3, &seed));
        CHECK(same(&f, "BODY \"banana\"", i % 2 ? 3 : 0));
        CHECK(same(&f, "TEXT \"meeting budget\"", 0));
    }
    char first[256];
    CHECK_EQ(count_segments(dir, first, sizeof first), 1);
    CHECK(!strncmp(first, "sindex.1.", 9));
    check_random(&f, &seed, 60, "appends");
    fixture_close(&f);
}

static void corrupt(const char *path, long off, int whence)
{
    int fd = open(path, O_RDWR);
    REQUIRE(fd >= 0);
    unsigned char c;
    off_t at = lseek(fd, off, whence);
    REQUIRE(pread(fd, &c, 1, at) == 1);
    c ^= 0x5a;
    REQUIRE(pwrite(fd, &c, 1, at) == 1);
    close(fd);
}

/* Damage of every kind: the answers stay the scan's; the segment is
 * found bad, removed, and the next search builds it again. */
static void test_damage(void)
{
    unsigned seed = 7;
    fixture f;
    REQUIRE_OK(fixture_open(&f, "sindex-damage", 250, &seed));
    const char *dir = store_mbox_dir(f.mb);
    struct { long off; int whence; const char *what; } cases[] = {
        {3, SEEK_SET, "magic"}, {20, SEEK_SET, "lo"}, {30, SEEK_SET, "ndocs"},
        {61, SEEK_SET, "header crc"}, {70, SEEK_SET, "docs"},
        {-1, SEEK_END, "last posting"}, {-3000, SEEK_END, "postings"},
        {0, -1, "table"}, {0, -2, "truncated"}, {0, -3, "empty"},
        {0, -4, "extended"}, {0, -5, "list of a needle's trigram"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        CHECK(same(&f, "BODY \"cherry\"", 0));     /* builds, if needed */
        char name[256], path[1024];
        REQUIRE(count_segments(dir, name, sizeof name) == 1);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        struct stat st;
        REQUIRE(stat(path, &st) == 0);
        if (cases[c].whence >= 0) {
            corrupt(path, cases[c].off, cases[c].whence);
        } else if (cases[c].whence == -1) {
            /* a table entry in the middle: where binary searches go */
            int fd = open(path, O_RDONLY);
            unsigned char h[64];
            REQUIRE(pread(fd, h, 64, 0) == 64);
            close(fd);
            uint32_t docs_len = h[36] | h[37] << 8 | h[38] << 16 | (uint32_t)h[39] << 24;
            uint32_t nterms = h[32] | h[33] << 8 | h[34] << 16 | (uint32_t)h[35] << 24;
            corrupt(path, 64 + docs_len + (long)(nterms / 2) * 32 + 1, SEEK_SET);
        } else if (cases[c].whence == -5) {
            /* the first UID of the list of "che" (of "cherry") one less:
             * still a valid list, only its checksum tells */
            int fd = open(path, O_RDWR);
            unsigned char h[64], e[32];
            REQUIRE(pread(fd, h, 64, 0) == 64);
            uint32_t docs_len = h[36] | h[37] << 8 | h[38] << 16 | (uint32_t)h[39] << 24;
            uint32_t nterms = h[32] | h[33] << 8 | h[34] << 16 | (uint32_t)h[35] << 24;
            long table = 64 + (long)docs_len, post = table + (long)nterms * 32;
            bool done = false;
            for (uint32_t t = 0; t < nterms && !done; t++) {
                REQUIRE(pread(fd, e, 32, table + (long)t * 32) == 32);
                if ((e[0] | e[1] << 8 | e[2] << 16) != 0x636865)
                    continue;
                long off = post + (long)(e[8] | e[9] << 8 | e[10] << 16);
                unsigned char b;
                REQUIRE(pread(fd, &b, 1, off) == 1);
                REQUIRE(b > 1 && b < 0x80);
                b--;
                REQUIRE(pwrite(fd, &b, 1, off) == 1);
                done = true;
            }
            close(fd);
            CHECK(done);
        } else {
            REQUIRE(truncate(path, cases[c].whence == -2 ? st.st_size - 5
                                   : cases[c].whence == -3 ? 0 : st.st_size + 8) == 0);
        }
        /* answers over the damage: the scan's (a query of every kind, so
         * that the damaged part is read) */
        bool ok = same(&f, "BODY \"cherry\"", 0) && same(&f, "TEXT \"apple banana\"", 4) &&
                  same(&f, "BODY \"\xd0\xbf\xd1\x80\xd0\xb8\"", 0) && same(&f, "BODY \"zzzq\"", 0);
        for (int i = 0; ok && i < 40; i++) {
            char n1[160], keys[200];
            make_needle(n1, sizeof n1, &seed);
            snprintf(keys, sizeof keys, "TEXT %s", n1);
            ok = same(&f, keys, 0);
        }
        if (!ok) {
            fprintf(stderr, "damage: %s\n", cases[c].what);
            test_failures_++;
        }
        /* the damaged file was removed (by a builder) and built again */
        CHECK(same(&f, "BODY \"dattel\"", 0));
        char again[256];
        CHECK_EQ(count_segments(dir, again, sizeof again), 1);
        struct stat st2;
        char p2[1024];
        snprintf(p2, sizeof p2, "%s/%s", dir, again);
        if (stat(p2, &st2) != 0 || st2.st_size != st.st_size) {
            fprintf(stderr, "damage %s: not rebuilt (%s)\n", cases[c].what, again);
            test_failures_++;
        }
    }
    fixture_close(&f);
}

/* Expunge and compaction keep UIDs: the segments stay true. */
static void test_expunge_compact(void)
{
    unsigned seed = 31337;
    fixture f;
    REQUIRE_OK(fixture_open(&f, "sindex-compact", 300, &seed));
    CHECK(same(&f, "BODY \"meeting\"", 0));
    store_range r[] = {{f.uids[10], f.uids[60]}, {f.uids[200], f.uids[299]}};
    REQUIRE_OK(store_expunge(f.mb, r, 2, false, NULL, NULL));
    check_random(&f, &seed, 60, "expunged");
    REQUIRE_OK(store_compact(f.mb, NULL, NULL));
    check_random(&f, &seed, 60, "compacted");
    REQUIRE_OK(append_corpus(&f, 40, &seed));
    check_random(&f, &seed, 60, "compacted+appended");
    fixture_close(&f);
}

static long long index_bytes(const char *dir, size_t *nseg)
{
    DIR *d = opendir(dir);
    long long total = 0;
    struct dirent *de;
    *nseg = 0;
    while (d && (de = readdir(d))) {
        unsigned a, b;
        char c, p[1024];
        struct stat st;
        if (sscanf(de->d_name, "sindex.%u.%u%c", &a, &b, &c) != 2)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        if (stat(p, &st) == 0)
            total += st.st_size;
        (*nseg)++;
    }
    if (d)
        closedir(d);
    return total;
}

/* Segments mostly expunged are written again with what is left. */
static void test_shrink(void)
{
    unsigned seed = 77;
    fixture f;
    sindex_test_max_pairs(4000);        /* many small segments */
    REQUIRE_OK(fixture_open(&f, "sindex-shrink", 400, &seed));
    const char *dir = store_mbox_dir(f.mb);
    CHECK(same(&f, "BODY \"apple\"", 5));
    size_t nseg0, nseg;
    long long bytes0 = index_bytes(dir, &nseg0);
    CHECK(nseg0 >= 5);
    store_range r[] = {{f.uids[20], f.uids[379]}};
    REQUIRE_OK(store_expunge(f.mb, r, 1, false, NULL, NULL));
    long long bytes = bytes0;
    for (int i = 0; i < 40; i++) {          /* one segment a search */
        CHECK(same(&f, "BODY \"cherry\"", i % 2 ? 4 : 0));
        bytes = index_bytes(dir, &nseg);
    }
    if (bytes * 4 > bytes0) {
        fprintf(stderr, "shrink: %lld bytes of %lld left, %zu of %zu segments\n", bytes, bytes0,
                nseg, nseg0);
        test_failures_++;
    }
    check_random(&f, &seed, 80, "shrunk");
    REQUIRE_OK(store_compact(f.mb, NULL, NULL));
    check_random(&f, &seed, 40, "shrunk and compacted");
    sindex_test_max_pairs(0);
    fixture_close(&f);
}

/* search_index = no: nothing is written. */
static void test_off(void)
{
    unsigned seed = 5;
    fixture f;
    REQUIRE_OK(fixture_open(&f, "sindex-off", 50, &seed));
    size_t n;
    CHECK(run(&f, "BODY \"apple\"", false, 0, &n) != ~0ull);
    CHECK_EQ(count_segments(store_mbox_dir(f.mb), NULL, 0), 0);
    fixture_close(&f);
}

int main(void)
{
    RUN(test_postings);
    RUN(test_words);
    RUN(test_exact);
    RUN(test_appends);
    RUN(test_damage);
    RUN(test_expunge_compact);
    RUN(test_shrink);
    RUN(test_off);
    return test_summary();
}
