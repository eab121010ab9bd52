/* tests/unit/test_fetch_engine.c — core/fetch/fetch_engine.c: FETCH
 * attribute lists parsed from real command text into requests (and the
 * BAD reasons), and the exact bytes of each message's response rendered
 * from a store mailbox: simple items, ENVELOPE, sections, BINARY errors,
 * \Recent, MODSEQ and CHANGEDSINCE (RFC 7162), an expunged message, a
 * missing one, a damaged index entry,
 * large sections handed off by reference, and responses that run out of
 * memory (withdrawn or closed, never left open). */
#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/fetch/fetch_engine.h"
#include "core/fetch/preview.h"
#include "core/imap/imap_args.h"
#include "store/format.h"
#include "store/store.h"
#include "tests/unit/store_testutil.h"

/* ---- requests -------------------------------------------------------- */

/* Parse "t FETCH 1 <atts>" and the attribute argument into *req. */
static int parse(const char *atts, imap_fetch_req *req, const char **err)
{
    char line[1024];
    int n = snprintf(line, sizeof line, "t FETCH 1 %s", atts);
    imap_args *a;
    const char *tag, *name, *perr;
    size_t taglen, nargs;
    imap_arg *args;
    int rc = imap_args_parse((const uint8_t *)line, (size_t)n, &a, &tag, &taglen, &name,
                             &args, &nargs, &perr);
    if (rc < 0)
        return -EPROTO;
    *err = NULL;
    rc = nargs == 2 ? imap_fetch_parse(&args[1], req, err) : -EPROTO;
    imap_args_free(a);  /* the request keeps nothing of the arguments */
    return rc;
}

static void test_parse(void)
{
    imap_fetch_req r;
    const char *err;
    REQUIRE_OK(parse("ALL", &r, &err));
    CHECK_EQ(r.simple, IMAP_FETCH_FLAGS | IMAP_FETCH_INTERNALDATE | IMAP_FETCH_SIZE |
                           IMAP_FETCH_ENVELOPE);
    CHECK_EQ(r.nsecs, 0);
    CHECK(!r.sets_seen);
    imap_fetch_req_free(&r);
    REQUIRE_OK(parse("fast", &r, &err));
    CHECK_EQ(r.simple, IMAP_FETCH_FLAGS | IMAP_FETCH_INTERNALDATE | IMAP_FETCH_SIZE);
    imap_fetch_req_free(&r);
    REQUIRE_OK(parse("FULL", &r, &err));
    CHECK_EQ(r.simple, IMAP_FETCH_FLAGS | IMAP_FETCH_INTERNALDATE | IMAP_FETCH_SIZE |
                           IMAP_FETCH_ENVELOPE | IMAP_FETCH_BODY);
    imap_fetch_req_free(&r);
    REQUIRE_OK(parse("(uid Flags BODYSTRUCTURE body.peek[header] RFC822.HEADER)", &r, &err));
    CHECK_EQ(r.simple, IMAP_FETCH_UID | IMAP_FETCH_FLAGS | IMAP_FETCH_BODYSTRUCTURE);
    REQUIRE(r.nsecs == 2);
    CHECK_EQ(r.secs[0].text, IMAP_SECTION_HEADER);
    CHECK_EQ(r.secs[1].legacy, IMAP_LEGACY_RFC822_HEADER);
    CHECK(!r.sets_seen);
    imap_fetch_req_free(&r);
    CHECK_EQ(r.nsecs, 0);
    REQUIRE_OK(parse("(BODY.PEEK[1] BINARY[2]<0.10> RFC822.SIZE)", &r, &err));
    CHECK(r.sets_seen);     /* BINARY without .PEEK */
    CHECK_EQ(r.simple, IMAP_FETCH_SIZE);
    REQUIRE(r.nsecs == 2);
    CHECK_EQ(r.secs[1].item, IMAP_ITEM_BINARY);
    CHECK(r.secs[1].partial);
    imap_fetch_req_free(&r);
    REQUIRE_OK(parse("RFC822", &r, &err));
    CHECK(r.sets_seen);
    imap_fetch_req_free(&r);
    REQUIRE_OK(parse("(modseq FLAGS)", &r, &err));
    CHECK_EQ(r.simple, IMAP_FETCH_MODSEQ | IMAP_FETCH_FLAGS);
    CHECK_EQ(r.changedsince, 0);
    imap_fetch_req_free(&r);

    static const struct { const char *atts, *why; } bad[] = {
        {"()", "Empty fetch attribute list"},
        {"(UID ALL)", "ALL, FAST and FULL cannot be in a list"},
        {"(FAST)", "ALL, FAST and FULL cannot be in a list"},
        {"(MODSEQ FAST)", "ALL, FAST and FULL cannot be in a list"},
        {"MODSEQ.X", "Unknown fetch attribute"},
        {"FOO", "Unknown fetch attribute"},
        {"(UID BODY.PEEK[HEADER] X)", "Unknown fetch attribute"},
        {"\"UID\"", "Fetch attribute expected"},
        {"(UID (FLAGS))", "Fetch attribute expected"},
        {"BODY[MIME]", "Bad section"},
        {"(UID BODY[1]<0.0>)", "Bad section"},
        {"RFC822.BOGUS", "Bad section"},
        {"BODY[1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24.25.26.27.28."
         "29.30.31.32.33.34.35.36.37.38.39.40.41.42.43.44.45.46.47.48.49.50.51.52.53.54.55."
         "56.57.58.59.60.61.62.63.64.65]",
         "Part number too deep"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = parse(bad[i].atts, &r, &err);
        if (rc != -EINVAL || !err || strcmp(err, bad[i].why)) {
            fprintf(stderr, "  %s: rc %d, err %s\n", bad[i].atts, rc, err ? err : "-");
            CHECK(0);
        }
        CHECK(r.secs == NULL && r.nsecs == 0 && r.simple == 0);
    }
}

/* ---- responses ------------------------------------------------------- */

typedef struct env {
    char root[512];
    store_user *u;
    store_mbox *mb;
    store_snap *snap;
    char *big;          /* message 4 */
    size_t biglen;
} env;

#define M1 "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nFrom: Ann <ann@example.com>\r\n" \
           "Subject: hi\r\n\r\nhello\r\n"
#define M2 "Subject: odd\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: x-foo\r\n" \
           "\r\n!!!\r\n"
#define M3 "Subject: gone\r\n\r\nbye\r\n"

/* UIDs 1-5: M1 (\Seen $Label, +0200), M2, M3 (expunged), a big message,
 * M3 again. */
static int env_open(env *e, const char *tag)
{
    snprintf(e->root, sizeof e->root, "%s", test_tmpdir(tag));
    int rc = test_inbox_open(e->root, "user", STORE_FSYNC_NEVER, &e->u, &e->mb);
    if (rc < 0)
        return rc;
    static const char hdr[] = "Subject: big\r\n\r\n";
    e->biglen = sizeof hdr - 1 + 40000;
    e->big = malloc(e->biglen);
    if (!e->big)
        return -ENOMEM;
    memcpy(e->big, hdr, sizeof hdr - 1);
    for (size_t i = sizeof hdr - 1; i < e->biglen; i++)
        e->big[i] = (i % 80 == 78) ? '\r' : (i % 80 == 79) ? '\n' : (char)('a' + i % 26);
    const char *kw[] = {"$Label"};
    store_new_msg m[5] = {
        {.data = M1, .len = sizeof M1 - 1, .internal_date = 1600000000, .tz_min = 120,
         .flags = STORE_F_SEEN, .keywords = kw, .nkeywords = 1},
        {.data = M2, .len = sizeof M2 - 1, .internal_date = 1600000000, .tz_min = -330,
         .flags = STORE_F_FLAGGED | STORE_F_DELETED},
        {.data = M3, .len = sizeof M3 - 1, .internal_date = 1600000000},
        {.data = e->big, .len = e->biglen, .internal_date = 1600000000},
        {.data = M3, .len = sizeof M3 - 1, .internal_date = 1600000000},
    };
    uint32_t uids[5];
    if ((rc = store_append(e->mb, m, 5, uids)) < 0)
        return rc;
    store_range r = {3, 3};
    if ((rc = store_expunge(e->mb, &r, 1, false, NULL, NULL)) < 0)
        return rc;
    e->snap = store_snap_get(e->mb);
    return e->snap ? 0 : -ENOMEM;
}

static void env_close(env *e)
{
    store_snap_put(e->snap);
    test_inbox_close(e->u, e->mb);
    free(e->big);
    test_rm_rf(e->root);
}

/* One response as a string (static buffer); *rc gets imap_fetch_one's. */
static const char *one(imap_fetch_ctx *x, const char *atts, uint32_t seq, uint32_t uid,
                       bool uidcmd, bool changed, int *rc)
{
    static char buf[65536];
    imap_fetch_req r;
    const char *err;
    imap_out o = {0};
    buf[0] = 0;
    if ((*rc = parse(atts, &r, &err)) < 0)
        return "(parse failed)";
    *rc = imap_fetch_one(x, &o, &r, seq, uid, uidcmd, changed);
    if (o.len && o.len < sizeof buf) {
        memcpy(buf, o.p, o.len);
        buf[o.len] = 0;
    }
    imap_out_free(&o);
    imap_fetch_req_free(&r);
    return buf;
}

#define EXPECT(x, atts, seq, uid, uidcmd, changed, want_rc, want) do { \
    int rc_; \
    const char *got_ = one((x), (atts), (seq), (uid), (uidcmd), (changed), &rc_); \
    if (rc_ != (want_rc) || strcmp(got_, (want))) { \
        fprintf(stderr, "%s:%d: %s on %u: rc %d (want %d)\n  got  [%s]\n  want [%s]\n", \
                __FILE__, __LINE__, (atts), (unsigned)(uid), rc_, (int)(want_rc), got_, \
                (want)); \
        test_failures_++; \
    } \
} while (0)

#define ENV1 "(\"Mon, 1 Jan 2024 00:00:00 +0000\" \"hi\" ((\"Ann\" NIL \"ann\" " \
             "\"example.com\")) ((\"Ann\" NIL \"ann\" \"example.com\")) ((\"Ann\" NIL " \
             "\"ann\" \"example.com\")) NIL NIL NIL NIL NIL)"

static void test_render(void)
{
    env e = {0};
    REQUIRE_OK(env_open(&e, "fetch-engine"));
    imap_fetch_ctx x;
    imap_fetch_ctx_init(&x, e.snap, false, 5);  /* UID 5 is \Recent */
    char want[512];

    snprintf(want, sizeof want,
             "* 1 FETCH (UID 1 FLAGS (\\Seen $Label) INTERNALDATE "
             "\"13-Sep-2020 14:26:40 +0200\" RFC822.SIZE %zu)\r\n", sizeof M1 - 1);
    EXPECT(&x, "(RFC822.SIZE INTERNALDATE FLAGS UID)", 1, 1, false, false, 0, want);
    snprintf(want, sizeof want,
             "* 2 FETCH (FLAGS (\\Flagged \\Deleted) INTERNALDATE "
             "\"13-Sep-2020 06:56:40 -0530\" RFC822.SIZE %zu)\r\n", sizeof M2 - 1);
    EXPECT(&x, "FAST", 2, 2, false, false, 0, want);
    /* UID FETCH: the UID first, unasked; FLAGS because \Seen was just set */
    EXPECT(&x, "RFC822.SIZE", 4, 5, true, true, 0,
           "* 4 FETCH (UID 5 FLAGS (\\Recent) RFC822.SIZE 22)\r\n");
    EXPECT(&x, "ENVELOPE", 1, 1, false, false, 0, "* 1 FETCH (ENVELOPE " ENV1 ")\r\n");
    EXPECT(&x, "(BODY UID)", 1, 1, false, false, 0,
           "* 1 FETCH (UID 1 BODY (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL "
           "\"7BIT\" 7 1))\r\n");
    EXPECT(&x, "BODYSTRUCTURE", 1, 1, false, false, 0,
           "* 1 FETCH (BODYSTRUCTURE (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL "
           "\"7BIT\" 7 1 NIL NIL NIL NIL))\r\n");
    EXPECT(&x, "(BODY.PEEK[TEXT] BODY[HEADER.FIELDS (subject)] UID)", 1, 1, false, false, 0,
           "* 1 FETCH (UID 1 BODY[TEXT] {7}\r\nhello\r\n BODY[HEADER.FIELDS (subject)] "
           "{15}\r\nSubject: hi\r\n\r\n)\r\n");
    EXPECT(&x, "(BODY[]<0.4> RFC822.HEADER BINARY.SIZE[1])", 1, 1, false, false, 0,
           "* 1 FETCH (BODY[]<0> {4}\r\nDate RFC822.HEADER {82}\r\n"
           "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nFrom: Ann <ann@example.com>\r\n"
           "Subject: hi\r\n\r\n BINARY.SIZE[1] 7)\r\n");
    /* a part that does not exist: NIL for BODY, the command fails for
     * BINARY; an unknown encoding fails BINARY with its own code */
    EXPECT(&x, "BODY[2]", 1, 1, false, false, 0, "* 1 FETCH (BODY[2] NIL)\r\n");
    EXPECT(&x, "(BINARY[2] UID)", 1, 1, false, false, -ENOENT,
           "* 1 FETCH (UID 1 BINARY[2] NIL)\r\n");
    EXPECT(&x, "(BINARY.PEEK[1] BODY[TEXT])", 2, 2, false, false, -ENOTSUP,
           "* 2 FETCH (BINARY[1] NIL BODY[TEXT] {5}\r\n!!!\r\n)\r\n");
    /* expunged but still in the snapshot: answered */
    EXPECT(&x, "(FLAGS BODY[TEXT])", 3, 3, false, false, 0,
           "* 3 FETCH (FLAGS () BODY[TEXT] {5}\r\nbye\r\n)\r\n");
    /* not in the snapshot at all: nothing */
    EXPECT(&x, "ALL", 9, 6, true, false, -ENOENT, "");
    /* UTF-8 mode reaches the renderer: nothing to change for ASCII */
    x.utf8 = true;
    EXPECT(&x, "ENVELOPE", 1, 1, false, false, 0, "* 1 FETCH (ENVELOPE " ENV1 ")\r\n");
    x.utf8 = false;

    /* MODSEQ (RFC 7162 3.1.4.2): after UID, before FLAGS; with CONDSTORE
     * on, every response with FLAGS carries it, asked or not */
    store_msg m1, m2;
    store_range two = {2, 2};
    REQUIRE_OK(store_flags(e.mb, &two, 1, STORE_FLAGS_ADD, STORE_F_ANSWERED, NULL, 0, 0, NULL,
                           NULL, NULL));
    REQUIRE(store_snap_msg(e.snap, 1, &m1) == 0 && store_snap_msg(e.snap, 2, &m2) == 0);
    REQUIRE(m1.modseq < m2.modseq);
    snprintf(want, sizeof want, "* 1 FETCH (MODSEQ (%llu))\r\n", (unsigned long long)m1.modseq);
    EXPECT(&x, "MODSEQ", 1, 1, false, false, 0, want);
    snprintf(want, sizeof want, "* 1 FETCH (UID 1 MODSEQ (%llu) FLAGS (\\Seen $Label))\r\n",
             (unsigned long long)m1.modseq);
    EXPECT(&x, "(FLAGS MODSEQ)", 1, 1, true, false, 0, want);
    EXPECT(&x, "FLAGS", 1, 1, false, false, 0, "* 1 FETCH (FLAGS (\\Seen $Label))\r\n");
    EXPECT(&x, "RFC822.SIZE", 4, 5, false, true, 0,
           "* 4 FETCH (FLAGS (\\Recent) RFC822.SIZE 22)\r\n");
    x.condstore = true;
    snprintf(want, sizeof want, "* 1 FETCH (MODSEQ (%llu) FLAGS (\\Seen $Label))\r\n",
             (unsigned long long)m1.modseq);
    EXPECT(&x, "FLAGS", 1, 1, false, false, 0, want);
    snprintf(want, sizeof want, "* 1 FETCH (RFC822.SIZE %zu)\r\n", sizeof M1 - 1);
    EXPECT(&x, "RFC822.SIZE", 1, 1, false, false, 0, want);
    x.condstore = false;
    /* CHANGEDSINCE (3.1.4.1): only messages whose modseq is above it */
    imap_fetch_req r;
    const char *err;
    REQUIRE_OK(parse("UID", &r, &err));
    r.changedsince = m1.modseq;
    imap_out o = {0};
    CHECK_EQ(imap_fetch_one(&x, &o, &r, 1, 1, false, false), 0);
    CHECK_EQ(o.len, 0);
    CHECK_EQ(imap_fetch_one(&x, &o, &r, 2, 2, false, false), 0);
    const char *w2 = "* 2 FETCH (UID 2)\r\n";
    CHECK(o.len == strlen(w2) && !memcmp(o.p, w2, o.len));
    imap_out_free(&o);
    imap_fetch_req_free(&r);
    env_close(&e);
}

/* PREVIEW and PREVIEW (LAZY), RFC 8970: parsed, answered from the blob
 * with no parse and no preview made at FETCH time; from a blob of an older
 * parser (no preview) computed from the message, or NIL under LAZY. */
static void test_preview(void)
{
    imap_fetch_req r;
    const char *err;
    REQUIRE_OK(parse("PREVIEW", &r, &err));
    CHECK(r.simple == IMAP_FETCH_PREVIEW && !r.preview_lazy);
    imap_fetch_req_free(&r);
    REQUIRE_OK(parse("(UID preview (lazy))", &r, &err));
    CHECK(r.simple == (IMAP_FETCH_UID | IMAP_FETCH_PREVIEW) && r.preview_lazy);
    imap_fetch_req_free(&r);
    REQUIRE_OK(parse("(PREVIEW (LAZY) FLAGS PREVIEW)", &r, &err));
    CHECK(r.simple == (IMAP_FETCH_FLAGS | IMAP_FETCH_PREVIEW) && !r.preview_lazy);
    imap_fetch_req_free(&r);
    CHECK_EQ(parse("(PREVIEW (FOO))", &r, &err), -EINVAL);
    CHECK(err && !strcmp(err, "Unknown PREVIEW modifier"));
    CHECK_EQ(parse("(PREVIEW ())", &r, &err), -EINVAL);
    CHECK_EQ(parse("(PREVIEW (LAZY) (LAZY))", &r, &err), -EINVAL);

    /* the big message's text: lines of letters */
    env e = {0};
    store_msg_set_previewer(imap_preview);
    REQUIRE_OK(env_open(&e, "fetch-preview"));
    store_buf bigp = {0};
    REQUIRE_OK(imap_preview_plain(e.big + 16, e.biglen - 16, &bigp));
    REQUIRE(bigp.len > 190 && bigp.len <= 200);
    char want[512];
    snprintf(want, sizeof want, "* 4 FETCH (UID 4 PREVIEW \"%.*s\")\r\n", (int)bigp.len,
             (const char *)bigp.data);
    imap_fetch_ctx x;
    imap_fetch_ctx_init(&x, e.snap, false, UINT32_MAX);
    uint64_t runs = imap_preview_runs(), parses = store_msg_parses();
    EXPECT(&x, "PREVIEW", 1, 1, false, false, 0, "* 1 FETCH (PREVIEW \"hello\")\r\n");
    EXPECT(&x, "(UID PREVIEW (LAZY) RFC822.SIZE)", 1, 1, false, false, 0,
           "* 1 FETCH (UID 1 RFC822.SIZE 89 PREVIEW \"hello\")\r\n");
    /* an encoding that cannot be undone: no text, the empty string (RFC
     * 8970 3.2), never NIL without LAZY */
    EXPECT(&x, "PREVIEW", 2, 2, false, false, 0, "* 2 FETCH (PREVIEW \"\")\r\n");
    EXPECT(&x, "PREVIEW", 4, 5, true, false, 0, "* 4 FETCH (UID 5 PREVIEW \"bye\")\r\n");
    EXPECT(&x, "(UID PREVIEW)", 4, 4, false, false, 0, want);
    CHECK_EQ(imap_preview_runs() - runs, 0);    /* made at append */
    CHECK_EQ(store_msg_parses() - parses, 0);
    env_close(&e);

    /* blobs made without a previewer, as an older parser's */
    store_msg_set_previewer(NULL);
    REQUIRE_OK(env_open(&e, "fetch-preview-old"));
    store_msg_set_previewer(imap_preview);
    imap_fetch_ctx_init(&x, e.snap, false, UINT32_MAX);
    runs = imap_preview_runs();
    parses = store_msg_parses();
    EXPECT(&x, "(PREVIEW (LAZY))", 1, 1, false, false, 0, "* 1 FETCH (PREVIEW NIL)\r\n");
    CHECK_EQ(imap_preview_runs() - runs, 0);
    EXPECT(&x, "(PREVIEW UID)", 1, 1, false, false, 0, "* 1 FETCH (UID 1 PREVIEW \"hello\")\r\n");
    CHECK_EQ(imap_preview_runs() - runs, 1);
    CHECK_EQ(store_msg_parses() - parses, 0);   /* the tree is the blob's */
    store_msg_set_previewer(NULL);
    free(bigp.data);
    env_close(&e);
}

/* A listing in UID order, backwards and with a gap answers as lookups by
 * UID would (the cursor is the engine's only way in). */
static void test_listing(void)
{
    env e = {0};
    REQUIRE_OK(env_open(&e, "fetch-listing"));
    imap_fetch_ctx x;
    imap_fetch_ctx_init(&x, e.snap, false, UINT32_MAX);
    static const uint32_t order[] = {1, 2, 3, 4, 5, 2, 5, 1, 4, 4};
    for (size_t i = 0; i < sizeof order / sizeof *order; i++) {
        uint32_t u = order[i];
        store_msg m;
        REQUIRE(store_snap_lookup(e.snap, u, &m) >= 0);
        char want[96];
        snprintf(want, sizeof want, "* %zu FETCH (UID %u RFC822.SIZE %u)\r\n", i + 1, u, m.size);
        EXPECT(&x, "RFC822.SIZE", (uint32_t)(i + 1), u, true, false, 0, want);
    }
    env_close(&e);
}

/* What the hand-off got. */
typedef struct sent {
    char before[64];
    const char *p;
    size_t len;
    int calls;
} sent;

static void take(void *arg, imap_out *o, const char *p, size_t len)
{
    sent *s = arg;
    snprintf(s->before, sizeof s->before, "%.*s", (int)o->len, o->p);
    o->len = 0;
    s->p = p;
    s->len = len;
    s->calls++;
}

static void test_zero_copy(void)
{
    env e = {0};
    REQUIRE_OK(env_open(&e, "fetch-zerocopy"));
    imap_fetch_ctx x;
    imap_fetch_ctx_init(&x, e.snap, false, UINT32_MAX);
    int rc;
    /* without a send function: copied */
    const char *got = one(&x, "BODY.PEEK[]", 4, 4, false, false, &rc);
    CHECK_EQ(rc, 0);
    char head[64];
    int hn = snprintf(head, sizeof head, "* 4 FETCH (BODY[] {%zu}\r\n", e.biglen);
    CHECK(!strncmp(got, head, (size_t)hn));
    CHECK(strlen(got) == (size_t)hn + e.biglen + 3);
    CHECK(!memcmp(got + hn, e.big, e.biglen));
    CHECK(!strcmp(got + hn + e.biglen, ")\r\n"));
    /* with one: the bytes by reference, into the store's mapping */
    sent s = {0};
    x.send = take;
    x.send_arg = &s;
    got = one(&x, "(UID BODY.PEEK[])", 4, 4, false, false, &rc);
    CHECK_EQ(rc, 0);
    CHECK_EQ(s.calls, 1);
    snprintf(head, sizeof head, "* 4 FETCH (UID 4 BODY[] {%zu}\r\n", e.biglen);
    CHECK(!strcmp(s.before, head));
    const char *raw;
    size_t rawlen;
    REQUIRE_OK(store_snap_bytes(e.snap, 4, 0, SIZE_MAX, &raw, &rawlen));
    CHECK(s.p == raw && s.len == e.biglen);
    CHECK(!strcmp(got, ")\r\n"));
    /* small sections and built ones are still copied */
    got = one(&x, "(BODY[TEXT]<0.100> BODY.PEEK[HEADER.FIELDS.NOT (X)])", 4, 4, false, false,
              &rc);
    CHECK_EQ(rc, 0);
    CHECK_EQ(s.calls, 1);
    static const char small[] = "* 4 FETCH (BODY[TEXT]<0> {100}\r\n";
    CHECK(!strncmp(got, small, sizeof small - 1));
    CHECK(strstr(got, " BODY[HEADER.FIELDS.NOT (X)] {16}\r\nSubject: big\r\n\r\n)\r\n"));
    env_close(&e);
}

/* A damaged index entry: the simple items from the entry's flag word, then
 * the response closed and -EIO (the cache and bytes are never read). */
static void test_damaged(void)
{
    env e = {0};
    REQUIRE_OK(env_open(&e, "fetch-damaged"));
    char path[1024];
    snprintf(path, sizeof path, "%s/index", store_mbox_dir(e.mb));
    int fd = open(path, O_RDWR);
    REQUIRE(fd >= 0);
    off_t at = IDX_HDR_SIZE + 1 * sizeof(struct idx_entry) + offsetof(struct idx_entry, log_off);
    unsigned char b;
    REQUIRE(pread(fd, &b, 1, at) == 1);
    b ^= 0x40;
    REQUIRE(pwrite(fd, &b, 1, at) == 1);
    close(fd);
    imap_fetch_ctx x;
    imap_fetch_ctx_init(&x, e.snap, false, UINT32_MAX);
    EXPECT(&x, "(UID ENVELOPE)", 2, 2, false, false, -EIO, "* 2 FETCH (UID 2)\r\n");
    EXPECT(&x, "(FLAGS BODY.PEEK[])", 2, 2, false, false, -EIO,
           "* 2 FETCH (FLAGS (\\Flagged \\Deleted))\r\n");
    EXPECT(&x, "FLAGS", 2, 2, false, false, 0, "* 2 FETCH (FLAGS (\\Flagged \\Deleted))\r\n");
    EXPECT(&x, "BODY[TEXT]", 1, 1, false, false, 0, "* 1 FETCH (BODY[TEXT] {7}\r\nhello\r\n)\r\n");
    env_close(&e);
}

/* ---- responses that cannot be built ---------------------------------- */

/* A real allocation failure: in a child whose address space is capped a
 * few MiB above what it uses, a section too big to copy into the output
 * buffer.  ASan's allocator must then return NULL as malloc does. */
#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifdef TEST_ASAN
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}
#endif

#define HUGE_LEN (16u << 20)            /* message 6: copied into o: fails */
#define PART2_LEN (6u << 20)            /* message 7, part 2 decoded: fits */
#define HEADROOM (10u << 20)

typedef struct oom_run {
    env *e;
} oom_run;

static void cap_address_space(size_t headroom)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (!f || fscanf(f, "%lu", &pages) != 1)
        _exit(3);
    fclose(f);
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + headroom;
    if (setrlimit(RLIMIT_AS, &rl) < 0)
        _exit(4);
}

/* In the child: report what the engine did as "rc len err|bytes". */
static void oom_child(void *arg)
{
    oom_run *r = arg;
    imap_fetch_ctx x;
    imap_fetch_ctx_init(&x, r->e->snap, false, UINT32_MAX);
    const char *raw;
    size_t rawlen;
    /* the mappings exist before the cap (they are the store's, not ours) */
    if (store_snap_bytes(r->e->snap, 6, 0, SIZE_MAX, &raw, &rawlen) < 0 ||
        store_snap_bytes(r->e->snap, 7, 0, SIZE_MAX, &raw, &rawlen) < 0)
        _exit(5);
    imap_fetch_req q1, q2;
    const char *err;
    if (parse("(UID BODY.PEEK[])", &q1, &err) < 0 ||
        parse("(UID BODY.PEEK[1] BINARY.PEEK[2] RFC822.SIZE)", &q2, &err) < 0)
        _exit(6);
    imap_out o = {0};
    imap_out_lit(&o, "* 1 FETCH (UID 1)\r\n");
    cap_address_space(HEADROOM);

    /* 1: nothing goes out by reference: the response is withdrawn whole */
    int rc = imap_fetch_one(&x, &o, &q1, 6, 6, false, false);
    fprintf(stderr, "1 %d %d [%.*s]\n", rc, o.err, (int)o.len, o.p);
    /* the buffer still works for the next message */
    rc = imap_fetch_one(&x, &o, &q1, 1, 1, false, false);
    fprintf(stderr, "2 %d %d [%.*s]\n", rc, o.err, (int)o.len, o.p);

    /* 3: part 1 went out by reference, part 2 cannot be copied: closed
     * after part 1 */
    sent sn = {0};
    x.send = take;
    x.send_arg = &sn;
    o.len = 0;
    rc = imap_fetch_one(&x, &o, &q2, 7, 7, false, false);
    fprintf(stderr, "3 %d %d %d [%s] [%.*s]\n", rc, o.err, sn.calls, sn.before, (int)o.len,
            o.p);
    _exit(0);
}

static void test_out_of_memory(void)
{
    env e = {0};
    REQUIRE_OK(env_open(&e, "fetch-oom"));
    static const char h6[] = "Subject: huge\r\n\r\n";
    static const char h7[] =
        "Subject: parts\r\nContent-Type: multipart/mixed; boundary=q\r\n\r\n"
        "--q\r\nContent-Type: text/plain\r\n\r\n";
    static const char h7b[] =
        "\r\n--q\r\nContent-Type: application/octet-stream\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n";
    size_t p1 = 40000, b64 = PART2_LEN / 3 * 4;
    size_t l6 = sizeof h6 - 1 + HUGE_LEN;
    size_t l7 = sizeof h7 - 1 + p1 + sizeof h7b - 1 + b64 + b64 / 76 * 2 + 9;
    char *m6 = malloc(l6), *m7 = malloc(l7);
    REQUIRE(m6 && m7);
    memcpy(m6, h6, sizeof h6 - 1);
    for (size_t i = sizeof h6 - 1; i < l6; i++)
        m6[i] = i % 64 == 62 ? '\r' : i % 64 == 63 ? '\n' : 'x';
    size_t n = 0;
    memcpy(m7, h7, sizeof h7 - 1);
    n += sizeof h7 - 1;
    for (size_t i = 0; i < p1; i++)
        m7[n++] = i % 50 == 48 ? '\r' : i % 50 == 49 ? '\n' : 'y';
    memcpy(m7 + n, h7b, sizeof h7b - 1);
    n += sizeof h7b - 1;
    for (size_t i = 0; i < b64; i++) {
        m7[n++] = "QUJD"[i % 4];            /* "ABC" repeated */
        if (i % 76 == 75) {
            m7[n++] = '\r';
            m7[n++] = '\n';
        }
    }
    memcpy(m7 + n, "\r\n--q--\r\n", 9);
    n += 9;
    store_new_msg m[2] = {
        {.data = m6, .len = l6, .internal_date = 1600000000},
        {.data = m7, .len = n, .internal_date = 1600000000},
    };
    uint32_t uids[2];
    REQUIRE_OK(store_append(e.mb, m, 2, uids));
    REQUIRE(uids[0] == 6 && uids[1] == 7);
    store_snap_put(e.snap);
    e.snap = store_snap_get(e.mb);
    REQUIRE(e.snap);

    oom_run r = {&e};
    int sig = -1;
    static char out[4096];
    REQUIRE_OK(test_run_child(oom_child, &r, &sig, out, sizeof out));
    CHECK_EQ(sig, 0);
    char want[512];
    snprintf(want, sizeof want,
             "1 %d 0 [* 1 FETCH (UID 1)\r\n]\n"
             "2 0 0 [* 1 FETCH (UID 1)\r\n* 1 FETCH (UID 1 BODY[] {%zu}\r\n%s)\r\n]\n"
             "3 %d 0 1 [* 7 FETCH (UID 7 RFC822.SIZE %zu BODY[1] {%zu}\r\n] [)\r\n]\n",
             -ENOMEM, sizeof M1 - 1, M1, -ENOMEM, n, p1);
    if (strcmp(out, want))
        fprintf(stderr, "  child said:\n%s  want:\n%s", out, want);
    CHECK(!strcmp(out, want));
    free(m6);
    free(m7);
    env_close(&e);
}

int main(void)
{
    RUN(test_parse);
    RUN(test_render);
    RUN(test_listing);
    RUN(test_preview);
    RUN(test_zero_copy);
    RUN(test_damaged);
    RUN(test_out_of_memory);
    return test_summary();
}
