/* tests/unit/test_message.c — store/message.c: parsing messages into cache
 * blobs, reading them back, IMAP section numbering, and blob validation
 * against damaged and hostile input. */
#include "store/message.h"
#include "testutil.h"

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* ---- helpers ------------------------------------------------------- */

typedef struct parsed {
    char *msg;          /* the message bytes (owned) */
    size_t len;
    store_buf buf;      /* the blob (owned) */
    store_cache c;
} parsed;

/* Test messages are written with "\n"; most tests want CRLF. */
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

static int parse_bytes(parsed *p, const char *msg, size_t len)
{
    memset(p, 0, sizeof *p);
    p->msg = malloc(len ? len : 1);
    if (len)
        memcpy(p->msg, msg, len);
    p->len = len;
    int r = store_msg_parse(p->msg, len, &p->buf);
    if (r)
        return r;
    return store_cache_open(p->buf.data, p->buf.len, &p->c);
}

static int parse_crlf(parsed *p, const char *text)
{
    size_t len;
    char *m = to_crlf(text, &len);
    int r = parse_bytes(p, m, len);
    free(m);
    return r;
}

static void parsed_free(parsed *p)
{
    free(p->msg);
    free(p->buf.data);
}

static bool str_eq(store_str s, const char *lit)
{
    return s.p && s.len == strlen(lit) && !memcmp(s.p, lit, s.len);
}

static bool str_eqn(store_str s, const char *lit, size_t n)
{
    return s.p && s.len == n && !memcmp(s.p, lit, n);
}

static size_t off_of(const parsed *p, const char *needle)
{
    const char *q = memmem(p->msg, p->len, needle, strlen(needle));
    return q ? (size_t)(q - p->msg) : (size_t)-1;
}

static store_part part(const parsed *p, uint32_t i)
{
    store_part sp;
    memset(&sp, 0xee, sizeof sp);
    int r = store_cache_part(&p->c, i, &sp);
    CHECK_EQ(r, 0);
    return sp;
}

static store_envelope env(const parsed *p, uint32_t i)
{
    store_envelope e;
    int r = store_cache_envelope(&p->c, i, &e);
    CHECK_EQ(r, 0);
    return e;
}

/* Section "2.1" -> part index or -ENOENT. */
static int find(const parsed *p, const char *sec)
{
    uint32_t path[64];
    size_t n = 0;
    for (const char *s = sec; *s;) {
        path[n++] = (uint32_t)strtoul(s, (char **)&s, 10);
        if (*s == '.')
            s++;
    }
    return store_cache_find(&p->c, path, n);
}

/* Body and header bytes of part i as strings for comparisons. */
static bool body_is(const parsed *p, uint32_t i, const char *text)
{
    store_part sp = part(p, i);
    return sp.body_len == strlen(text) &&
           !memcmp(p->msg + sp.body_off, text, sp.body_len);
}

static bool param_is(const parsed *p, uint32_t i, int disp, uint32_t j,
                     const char *name, const char *value)
{
    store_str n, v;
    if (store_cache_param(&p->c, i, disp, j, &n, &v))
        return false;
    return str_eq(n, name) && str_eq(v, value);
}

/* CRC32C, bit by bit, to re-seal mutated blobs (format: crc at offset 12
 * covering everything but itself). */
static uint32_t crc32c_ref(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = crc & 1 ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
    }
    return ~crc;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void reseal(uint8_t *b, size_t len)
{
    if (len < 40)
        return;
    uint32_t total = get32(b + 8);
    if (total < 16 || total > len)
        return;
    uint32_t crc = crc32c_ref(0, b, 12);
    put32(b + 12, crc32c_ref(crc, b + 16, total - 16));
}

/* Make a version 4 blob a version 3 one of the same length, as an older
 * parser would have written it: the header loses field 40 (the preview)
 * and the pool gains 4 unused bytes at its end. */
static void to_v3(uint8_t *b, size_t len)
{
    memmove(b + 40, b + 44, len - 44);
    memset(b + len - 4, 0, 4);
    b[4] = 3;
    b[6] = 40;
    put32(b + 32, get32(b + 32) + 4);
    reseal(b, len);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}
static uint32_t rndn(uint32_t n) { return n ? rnd() % n : 0; }

static bool is_kind(const store_part *sp, const char *t, const char *s)
{
    return str_eq(sp->type, t) && (!s || str_eq(sp->subtype, s));
}

static bool is_message(const store_part *sp)
{
    return is_kind(sp, "message", "rfc822") || is_kind(sp, "message", "global");
}

/* Read everything a validated cache offers, check what the validator
 * promises, and return the number of failures (so hostile-blob loops can
 * stay quiet).  msg_len is the message size, or 0 to skip offset checks
 * against it. */
static int touch_all(const store_cache *c, size_t msg_len, bool check_msg)
{
    int bad = 0;
    volatile uint64_t sink = 0;
    store_envelope e;
    for (uint32_t i = 0; i < c->nenvelopes; i++) {
        if (store_cache_envelope(c, i, &e)) {
            bad++;
            continue;
        }
        store_str *f[] = { &e.date, &e.subject, &e.from, &e.sender,
                           &e.reply_to, &e.to, &e.cc, &e.bcc, &e.in_reply_to,
                           &e.message_id, &e.references };
        for (size_t k = 0; k < sizeof f / sizeof f[0]; k++)
            for (uint32_t j = 0; f[k]->p && j < f[k]->len; j++)
                sink += (uint8_t)f[k]->p[j];
    }
    bad += store_cache_envelope(c, c->nenvelopes, &e) != -ERANGE;
    store_part sp;
    bad += store_cache_part(c, c->nparts, &sp) != -ERANGE;
    for (uint32_t i = 0; i < c->nparts; i++) {
        if (store_cache_part(c, i, &sp)) {
            bad++;
            continue;
        }
        store_str *f[] = { &sp.type, &sp.subtype, &sp.id, &sp.description,
                           &sp.encoding, &sp.md5, &sp.disposition,
                           &sp.language, &sp.location };
        for (size_t k = 0; k < sizeof f / sizeof f[0]; k++)
            for (uint32_t j = 0; f[k]->p && j < f[k]->len; j++)
                sink += (uint8_t)f[k]->p[j];
        bad += !sp.type.p || !sp.subtype.p;
        for (int d = 0; d < 2; d++) {
            uint32_t n = d ? sp.ndisp_params : sp.nparams;
            store_str nm, v;
            for (uint32_t j = 0; j < n; j++) {
                if (store_cache_param(c, i, d, j, &nm, &v)) {
                    bad++;
                    continue;
                }
                bad += !nm.p || !v.p;
                for (uint32_t k = 0; k < nm.len; k++)
                    sink += (uint8_t)nm.p[k];
                for (uint32_t k = 0; k < v.len; k++)
                    sink += (uint8_t)v.p[k];
            }
            bad += store_cache_param(c, i, d, n, &nm, &v) != -ERANGE;
        }
        if (check_msg && sp.body_off + sp.body_len > msg_len)
            bad++;
        bad += sp.body_off != sp.hdr_off + sp.hdr_len;
        if (i == 0) {
            bad += sp.hdr_off != 0 || sp.parent != 0;
            if (check_msg)
                bad += sp.body_off + sp.body_len != msg_len;
        } else {
            store_part pp;
            if (sp.parent >= i || store_cache_part(c, sp.parent, &pp)) {
                bad++;
                continue;
            }
            bad += sp.hdr_off < pp.body_off ||
                   sp.body_off + sp.body_len > pp.body_off + pp.body_len;
            /* depth */
            uint32_t d = 0, q = i;
            while (q && d <= STORE_MIME_MAX_DEPTH + 1) {
                store_part qp;
                store_cache_part(c, q, &qp);
                q = qp.parent;
                d++;
            }
            bad += d > STORE_MIME_MAX_DEPTH;
        }
        /* children chain */
        uint32_t n = 0;
        for (uint32_t q = sp.first_child; q && n <= c->nparts; n++) {
            store_part qp;
            if (q >= c->nparts || store_cache_part(c, q, &qp) ||
                qp.parent != i) {
                bad++;
                break;
            }
            q = qp.next_sibling;
        }
        bad += n != sp.nchildren;
        if (is_kind(&sp, "multipart", NULL))
            bad += sp.nchildren < 1;
        else if (is_message(&sp))
            bad += sp.nchildren != 1 || sp.envelope < 1 ||
                   (uint32_t)sp.envelope >= c->nenvelopes;
        else
            bad += sp.nchildren != 0 || sp.envelope != -1;
    }
    /* Random section paths must not misbehave. */
    for (int k = 0; k < 20; k++) {
        uint32_t path[6];
        size_t n = 1 + rndn(6);
        for (size_t j = 0; j < n; j++)
            path[j] = rndn(5) == 0 ? rnd() : rndn(5);
        int r = store_cache_find(c, path, n);
        bad += !(r == -ENOENT || (r >= 0 && (uint32_t)r < c->nparts));
    }
    (void)sink;
    return bad;
}

/* Walk the tree assigning IMAP section numbers the way RFC 3501 does and
 * check store_cache_find agrees.  Returns failures; *seen counts parts. */
static int check_sections_part(const store_cache *c, uint32_t i,
                               uint32_t *path, size_t n, uint32_t *seen);

static int check_sections_msg(const store_cache *c, uint32_t root,
                              uint32_t *path, size_t n, uint32_t *seen)
{
    store_part rp;
    store_cache_part(c, root, &rp);
    if (n >= 60)
        return 0;
    if (is_kind(&rp, "multipart", NULL)) {
        int bad = 0;
        (*seen)++;  /* the root of a multipart message has no number */
        uint32_t k = 1;
        for (uint32_t q = rp.first_child; q; k++) {
            store_part qp;
            store_cache_part(c, q, &qp);
            path[n] = k;
            bad += check_sections_part(c, q, path, n + 1, seen);
            q = qp.next_sibling;
        }
        path[n] = k;
        bad += store_cache_find(c, path, n + 1) != -ENOENT;
        path[n] = 0;
        bad += store_cache_find(c, path, n + 1) != -ENOENT;
        return bad;
    }
    path[n] = 1;
    int bad = check_sections_part(c, root, path, n + 1, seen);
    path[n] = 2;
    bad += store_cache_find(c, path, n + 1) != -ENOENT;
    return bad;
}

static int check_sections_part(const store_cache *c, uint32_t i,
                               uint32_t *path, size_t n, uint32_t *seen)
{
    int bad = store_cache_find(c, path, n) != (int)i;
    store_part sp;
    store_cache_part(c, i, &sp);
    (*seen)++;
    if (n >= 60)
        return bad;
    if (is_kind(&sp, "multipart", NULL)) {
        uint32_t k = 1;
        for (uint32_t q = sp.first_child; q; k++) {
            store_part qp;
            store_cache_part(c, q, &qp);
            path[n] = k;
            bad += check_sections_part(c, q, path, n + 1, seen);
            q = qp.next_sibling;
        }
        path[n] = k;
        bad += store_cache_find(c, path, n + 1) != -ENOENT;
    } else if (is_message(&sp)) {
        bad += check_sections_msg(c, sp.first_child, path, n, seen);
    } else {
        path[n] = 1;
        bad += store_cache_find(c, path, n + 1) != -ENOENT;
    }
    return bad;
}

static int check_sections(const store_cache *c)
{
    uint32_t path[64];
    uint32_t seen = 0;
    int bad = check_sections_msg(c, 0, path, 0, &seen);
    bad += store_cache_find(c, path, 0) != 0;
    if (c->nparts < 2000)   /* deep trees: recursion capped above */
        bad += seen != c->nparts;
    return bad;
}

/* ---- tests --------------------------------------------------------- */

static void test_buf(void)
{
    store_buf b = { 0 };
    REQUIRE_OK(store_buf_append(&b, "abc", 3));
    REQUIRE_OK(store_buf_append(&b, NULL, 0));
    for (int i = 0; i < 1000; i++)
        REQUIRE_OK(store_buf_append(&b, "0123456789", 10));
    CHECK_EQ(b.len, 10003);
    CHECK(b.cap >= b.len);
    CHECK(!memcmp(b.data, "abc0123", 7));
    REQUIRE_OK(store_buf_reserve(&b, 100000));
    CHECK(b.cap >= b.len + 100000);
    CHECK_EQ(store_buf_reserve(&b, SIZE_MAX), -ENOMEM);
    free(b.data);
}

static void test_simple(void)
{
    parsed p;
    REQUIRE_OK(parse_crlf(&p,
        "Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\n"
        "From: Fred Foobar <foobar@Blurdybloop.example>\n"
        "Subject: afternoon meeting\n"
        "To: mooch@owatagu.siam.edu.example\n"
        "Message-Id: <B27397-0100000@Blurdybloop.example>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\n"
        "\n"
        "Hello Joe, do you think we can meet at 3:30 tomorrow?\n"));
    CHECK_EQ(p.c.nparts, 1);
    CHECK_EQ(p.c.nenvelopes, 1);
    store_envelope e = env(&p, 0);
    CHECK(str_eq(e.date, "Mon, 7 Feb 1994 21:52:25 -0800 (PST)"));
    CHECK(str_eq(e.from, "Fred Foobar <foobar@Blurdybloop.example>"));
    CHECK(str_eq(e.subject, "afternoon meeting"));
    CHECK(str_eq(e.to, "mooch@owatagu.siam.edu.example"));
    CHECK(str_eq(e.message_id, "<B27397-0100000@Blurdybloop.example>"));
    CHECK(!e.sender.p && !e.reply_to.p && !e.cc.p && !e.bcc.p);
    CHECK(!e.in_reply_to.p && !e.references.p);
    /* only the fields asked for are filled; the rest keep what they held */
    store_envelope some;
    memset(&some, 0, sizeof some);
    some.from.p = "untouched";
    some.from.len = 9;
    CHECK_EQ(store_cache_envelope_fields(&p.c, 0, STORE_ENV_DATE | STORE_ENV_MESSAGE_ID, &some), 0);
    CHECK(str_eq(some.date, "Mon, 7 Feb 1994 21:52:25 -0800 (PST)"));
    CHECK(str_eq(some.message_id, "<B27397-0100000@Blurdybloop.example>"));
    CHECK(str_eq(some.from, "untouched") && !some.subject.p && !some.to.p);
    CHECK_EQ(store_cache_envelope_fields(&p.c, 1, STORE_ENV_ALL, &some), -ERANGE);
    store_part sp = part(&p, 0);
    size_t body = off_of(&p, "Hello Joe");
    CHECK_EQ(sp.hdr_off, 0);
    CHECK_EQ(sp.hdr_len, body);
    CHECK_EQ(sp.body_off, body);
    CHECK_EQ(sp.body_len, p.len - body);
    CHECK_EQ(sp.lines, 1);
    CHECK(str_eq(sp.type, "text") && str_eq(sp.subtype, "plain"));
    CHECK_EQ(sp.nparams, 1);
    CHECK(param_is(&p, 0, 0, 0, "charset", "US-ASCII"));
    CHECK(!sp.id.p && !sp.description.p && !sp.encoding.p && !sp.md5.p);
    CHECK(!sp.disposition.p && !sp.language.p && !sp.location.p);
    CHECK_EQ(sp.ndisp_params, 0);
    CHECK_EQ(sp.parent, 0);
    CHECK_EQ(sp.first_child, 0);
    CHECK_EQ(sp.nchildren, 0);
    CHECK_EQ(sp.envelope, -1);
    CHECK_EQ(find(&p, ""), 0);
    CHECK_EQ(find(&p, "1"), 0);
    CHECK_EQ(find(&p, "2"), -ENOENT);
    CHECK_EQ(find(&p, "0"), -ENOENT);
    CHECK_EQ(find(&p, "1.1"), -ENOENT);
    CHECK_EQ(touch_all(&p.c, p.len, true), 0);
    CHECK_EQ(check_sections(&p.c), 0);
    parsed_free(&p);

    /* A blob may follow other data in the buffer, and may be opened with
     * bytes after it. */
    store_buf b = { 0 };
    REQUIRE_OK(store_buf_append(&b, "prefix", 6));
    REQUIRE_OK(store_msg_parse("Subject: x\r\n\r\nbody\r\n", 20, &b));
    size_t blob_len = b.len - 6;
    REQUIRE_OK(store_buf_append(&b, "trailing", 8));
    store_cache c;
    REQUIRE_OK(store_cache_open(b.data + 6, b.len - 6, &c));
    CHECK_EQ(c.len, blob_len);
    store_envelope e2;
    REQUIRE_OK(store_cache_envelope(&c, 0, &e2));
    CHECK(str_eq(e2.subject, "x"));
    free(b.data);
}

static void test_folded(void)
{
    parsed p;
    REQUIRE_OK(parse_crlf(&p,
        "Subject: this is\n"
        " a folded\n"
        "\tsubject  \n"
        "TO: a@b,\n"
        "  c@d\n"
        "Cc : x@y\n"
        "Subject: second subject loses\n"
        "Content-Type: text/plain;\n"
        " charset=\"utf-8\";\n"
        "\tformat=flowed (a comment); delsp=\"y\\\"es\"\n"
        "References: <a@b>\n"
        "   <c@d>\n"
        "In-Reply-To:<c@d>\n"
        "Bcc:\n"
        "\n"
        "body\n"));
    store_envelope e = env(&p, 0);
    CHECK(str_eq(e.subject, "this is a folded\tsubject"));
    CHECK(str_eq(e.to, "a@b,  c@d"));
    CHECK(str_eq(e.cc, "x@y"));
    CHECK(str_eq(e.references, "<a@b>   <c@d>"));
    CHECK(str_eq(e.in_reply_to, "<c@d>"));
    CHECK(e.bcc.p && e.bcc.len == 0);       /* present but empty: "" */
    store_part sp = part(&p, 0);
    CHECK_EQ(sp.nparams, 3);
    CHECK(param_is(&p, 0, 0, 0, "charset", "utf-8"));
    CHECK(param_is(&p, 0, 0, 1, "format", "flowed"));
    CHECK(param_is(&p, 0, 0, 2, "delsp", "y\"es"));
    parsed_free(&p);
}

static void test_multipart_mixed(void)
{
    parsed p;
    REQUIRE_OK(parse_crlf(&p,
        "From: a@b\n"
        "Subject: mixed\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=\"XyZ\"\n"
        "\n"
        "This is the preamble.\n"
        "--XyZ\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "\n"
        "Hello\n"
        "world\n"
        "--XyZ\n"
        "Content-Type: Application/PDF; name*0*=utf-8''%E2%82%AC%20rates;\n"
        " name*1=\" 2024.pdf\"\n"
        "Content-Transfer-Encoding: base64\n"
        "Content-Disposition: ATTACHMENT;\n"
        " filename*0=\"very long \";\n"
        " filename*1=\"file name.pdf\";\n"
        " size=1234\n"
        "Content-ID: <id1@x>\n"
        "Content-Description: the report\n"
        "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n"
        "Content-Language: en, de\n"
        "Content-Location: http://x/y.pdf\n"
        "\n"
        "SGVsbG8=\n"
        "--XyZ--\n"
        "epilogue\n"));
    REQUIRE(p.c.nparts == 3);
    store_part p0 = part(&p, 0), p1 = part(&p, 1), p2 = part(&p, 2);
    CHECK(is_kind(&p0, "multipart", "mixed"));
    CHECK(param_is(&p, 0, 0, 0, "boundary", "XyZ"));
    CHECK_EQ(p0.nchildren, 2);
    CHECK_EQ(p0.first_child, 1);
    CHECK_EQ(p0.lines, 0);
    CHECK_EQ(p0.body_off + p0.body_len, p.len);
    CHECK(is_kind(&p1, "text", "plain"));
    CHECK_EQ(p1.parent, 0);
    CHECK_EQ(p1.next_sibling, 2);
    CHECK_EQ(p1.hdr_off, off_of(&p, "Content-Type: text/plain"));
    CHECK(body_is(&p, 1, "Hello\r\nworld"));
    CHECK_EQ(p1.lines, 2);
    CHECK(is_kind(&p2, "application", "pdf"));
    CHECK_EQ(p2.next_sibling, 0);
    CHECK(str_eq(p2.encoding, "base64"));
    CHECK(str_eq(p2.id, "<id1@x>"));
    CHECK(str_eq(p2.description, "the report"));
    CHECK(str_eq(p2.md5, "Q2hlY2sgSW50ZWdyaXR5IQ=="));
    CHECK(str_eq(p2.language, "en, de"));
    CHECK(str_eq(p2.location, "http://x/y.pdf"));
    CHECK(str_eq(p2.disposition, "attachment"));
    CHECK(body_is(&p, 2, "SGVsbG8="));
    CHECK_EQ(p2.lines, 0);
    CHECK_EQ(p2.nparams, 1);
    CHECK(param_is(&p, 2, 0, 0, "name*", "utf-8''%E2%82%AC%20rates%202024.pdf"));
    CHECK_EQ(p2.ndisp_params, 2);
    CHECK(param_is(&p, 2, 1, 0, "filename", "very long file name.pdf"));
    CHECK(param_is(&p, 2, 1, 1, "size", "1234"));
    CHECK_EQ(find(&p, "1"), 1);
    CHECK_EQ(find(&p, "2"), 2);
    CHECK_EQ(find(&p, "3"), -ENOENT);
    CHECK_EQ(find(&p, "1.1"), -ENOENT);
    CHECK_EQ(check_sections(&p.c), 0);
    CHECK_EQ(touch_all(&p.c, p.len, true), 0);
    parsed_free(&p);
}

static void test_rfc2231(void)
{
    parsed p;
    REQUIRE_OK(parse_crlf(&p,
        "Content-Type: text/plain; title*0=abc; TITLE*1*=%41%42%zz;\n"
        " x*0=a; x*2=c; y*1=only; z*=us-ascii'en'hi%20there;\n"
        " w*1=second; w*0=first; w*0=dup; q*00=lead;\n"
        " noval; =novalue; r=\"unterminated\n"
        "\n"));
    store_part sp = part(&p, 0);
    CHECK_EQ(sp.nparams, 9);
    CHECK(param_is(&p, 0, 0, 0, "title", "abcAB%zz"));
    CHECK(param_is(&p, 0, 0, 1, "x", "a"));
    CHECK(param_is(&p, 0, 0, 2, "x*2", "c"));
    CHECK(param_is(&p, 0, 0, 3, "y*1", "only"));
    CHECK(param_is(&p, 0, 0, 4, "z*", "us-ascii'en'hi%20there"));
    CHECK(param_is(&p, 0, 0, 5, "w", "firstsecond"));
    CHECK(param_is(&p, 0, 0, 6, "w*0", "dup"));
    CHECK(param_is(&p, 0, 0, 7, "q*00", "lead"));
    CHECK(param_is(&p, 0, 0, 8, "r", "unterminated"));
    parsed_free(&p);
}

static void test_nested_alternative(void)
{
    parsed p;
    REQUIRE_OK(parse_crlf(&p,
        "Content-Type: multipart/mixed; boundary=outer\n"
        "\n"
        "--outer\n"
        "Content-Type: multipart/alternative; boundary=\"outer-inner\"\n"
        "\n"
        "--outer-inner\n"
        "Content-Type: text/plain\n"
        "\n"
        "plain\n"
        "--outer-inner\n"
        "Content-Type: text/html\n"
        "\n"
        "<p>html</p>\n"
        "--outer-inner--\n"
        "\n"
        "--outer  \n"
        "Content-Type: image/png\n"
        "Content-Transfer-Encoding: base64\n"
        "\n"
        "iVBOR\n"
        "--outer--\n"));
    REQUIRE(p.c.nparts == 5);
    store_part p1 = part(&p, 1), p2 = part(&p, 2), p3 = part(&p, 3),
               p4 = part(&p, 4);
    CHECK(is_kind(&p1, "multipart", "alternative"));
    CHECK_EQ(p1.parent, 0);
    CHECK_EQ(p1.nchildren, 2);
    CHECK_EQ(p1.next_sibling, 4);
    CHECK(is_kind(&p2, "text", "plain") && p2.parent == 1 && p2.next_sibling == 3);
    CHECK(is_kind(&p3, "text", "html") && p3.parent == 1 && p3.next_sibling == 0);
    CHECK(is_kind(&p4, "image", "png") && p4.parent == 0);
    CHECK(body_is(&p, 2, "plain"));
    CHECK(body_is(&p, 3, "<p>html</p>"));
    CHECK(body_is(&p, 4, "iVBOR"));
    /* The alternative's body runs to the CRLF before "--outer". */
    CHECK_EQ(p1.body_off + p1.body_len, off_of(&p, "\r\n--outer  "));
    CHECK_EQ(find(&p, "1"), 1);
    CHECK_EQ(find(&p, "1.1"), 2);
    CHECK_EQ(find(&p, "1.2"), 3);
    CHECK_EQ(find(&p, "1.3"), -ENOENT);
    CHECK_EQ(find(&p, "2"), 4);
    CHECK_EQ(find(&p, "2.1"), -ENOENT);
    CHECK_EQ(find(&p, "3"), -ENOENT);
    CHECK_EQ(check_sections(&p.c), 0);
    parsed_free(&p);
}

static void test_message_rfc822(void)
{
    parsed p;
    REQUIRE_OK(parse_crlf(&p,
        "From: outer@x\n"
        "Subject: fwd\n"
        "Content-Type: multipart/mixed; boundary=b1\n"
        "\n"
        "--b1\n"
        "Content-Type: text/plain\n"
        "\n"
        "see attached\n"
        "--b1\n"
        "Content-Type: message/RFC822\n"
        "Content-Disposition: attachment\n"
        "\n"
        "From: inner@y\n"
        "Subject: inner subj\n"
        "Message-ID: <inner@y>\n"
        "Content-Type: multipart/alternative; boundary=b2\n"
        "\n"
        "--b2\n"
        "Content-Type: text/plain\n"
        "\n"
        "inner plain\n"
        "--b2\n"
        "Content-Type: text/html\n"
        "\n"
        "inner html\n"
        "--b2--\n"
        "--b1--\n"));
    REQUIRE(p.c.nparts == 6);
    CHECK_EQ(p.c.nenvelopes, 2);
    store_part p2 = part(&p, 2), p3 = part(&p, 3);
    CHECK(is_kind(&p2, "message", "rfc822"));
    CHECK_EQ(p2.envelope, 1);
    CHECK_EQ(p2.nchildren, 1);
    CHECK_EQ(p2.first_child, 3);
    CHECK(str_eq(p2.disposition, "attachment"));
    CHECK(is_kind(&p3, "multipart", "alternative"));
    CHECK_EQ(p3.parent, 2);
    CHECK_EQ(p3.envelope, -1);
    CHECK_EQ(p3.hdr_off, p2.body_off);
    CHECK_EQ(p3.hdr_off, off_of(&p, "From: inner@y"));
    CHECK_EQ(p3.body_off + p3.body_len, p2.body_off + p2.body_len);
    /* Lines of the whole embedded message (header too); the CRLF before
     * "--b1--" is the delimiter's. */
    CHECK_EQ(p2.lines, 14);
    store_envelope e1 = env(&p, 1);
    CHECK(str_eq(e1.subject, "inner subj"));
    CHECK(str_eq(e1.from, "inner@y"));
    CHECK(str_eq(e1.message_id, "<inner@y>"));
    CHECK(str_eq(env(&p, 0).subject, "fwd"));
    CHECK_EQ(find(&p, "2"), 2);
    CHECK_EQ(find(&p, "2.1"), 4);
    CHECK_EQ(find(&p, "2.2"), 5);
    CHECK_EQ(find(&p, "2.3"), -ENOENT);
    CHECK_EQ(find(&p, "2.1.1"), -ENOENT);
    CHECK_EQ(find(&p, "2.0"), -ENOENT);
    CHECK(body_is(&p, 4, "inner plain"));
    CHECK(body_is(&p, 5, "inner html"));
    CHECK_EQ(check_sections(&p.c), 0);
    CHECK_EQ(touch_all(&p.c, p.len, true), 0);
    parsed_free(&p);

    /* Embedded message that is not multipart: its section 1 is its root. */
    REQUIRE_OK(parse_crlf(&p,
        "Content-Type: multipart/mixed; boundary=b\n"
        "\n"
        "--b\n"
        "\n"
        "first\n"
        "--b\n"
        "Content-Type: message/rfc822\n"
        "\n"
        "Subject: inner\n"
        "\n"
        "inner body\n"
        "--b--\n"));
    REQUIRE(p.c.nparts == 4);
    CHECK_EQ(part(&p, 1).hdr_len, 2);   /* just the empty line */
    CHECK(body_is(&p, 1, "first"));
    CHECK_EQ(find(&p, "2"), 2);
    CHECK_EQ(find(&p, "2.1"), 3);
    CHECK_EQ(find(&p, "2.2"), -ENOENT);
    CHECK_EQ(find(&p, "2.1.1"), -ENOENT);
    CHECK(body_is(&p, 3, "inner body"));
    CHECK(str_eq(env(&p, 1).subject, "inner"));
    CHECK_EQ(check_sections(&p.c), 0);
    parsed_free(&p);

    /* A top-level message/rfc822: "1" is part 0, "1.1" the embedded body. */
    REQUIRE_OK(parse_crlf(&p,
        "Subject: outer\n"
        "Content-Type: message/rfc822\n"
        "\n"
        "Subject: inner\n"
        "\n"
        "text\n"));
    REQUIRE(p.c.nparts == 2);
    CHECK_EQ(part(&p, 0).envelope, 1);
    CHECK_EQ(find(&p, "1"), 0);
    CHECK_EQ(find(&p, "1.1"), 1);
    CHECK_EQ(find(&p, "1.2"), -ENOENT);
    CHECK_EQ(find(&p, "2"), -ENOENT);
    CHECK_EQ(check_sections(&p.c), 0);
    parsed_free(&p);

    /* base64-encoded message/rfc822 is not a readable message: opaque. */
    REQUIRE_OK(parse_crlf(&p,
        "Content-Type: message/rfc822\n"
        "Content-Transfer-Encoding: base64\n"
        "\n"
        "U3ViamVjdDogeA0KDQpib2R5DQo=\n"));
    CHECK_EQ(p.c.nparts, 1);
    CHECK_EQ(p.c.nenvelopes, 1);
    store_part o = part(&p, 0);
    CHECK(is_kind(&o, "application", "octet-stream"));
    CHECK_EQ(o.envelope, -1);
    parsed_free(&p);

    /* message/global is an embedded message too (RFC 9051). */
    REQUIRE_OK(parse_crlf(&p,
        "Content-Type: message/global\n"
        "\n"
        "Subject: g\n"
        "\n"
        "x\n"));
    CHECK_EQ(p.c.nparts, 2);
    CHECK(str_eq(env(&p, 1).subject, "g"));
    parsed_free(&p);
}

/* Lines as the contract defines them, counted the slow way. */
static uint32_t slow_lines(const char *p, size_t n)
{
    uint32_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += p[i] == '\n';
    return c + (n && p[n - 1] != '\n');
}

static void test_lines(void)
{
    /* Nested messages reuse the inner count; check every level, with and
     * without a final line end, and a text body longer than the word loop's
     * batch (255 x 8 bytes). */
    for (int variant = 0; variant < 4; variant++) {
        size_t cap = 20000, o = 0;
        char *m = malloc(cap);
        for (int i = 0; i < 3; i++)
            o += (size_t)sprintf(m + o, "Subject: %d\r\nContent-Type: message/rfc822\r\n\r\n", i);
        o += (size_t)sprintf(m + o, "Content-Type: %s\r\n\r\n",
                             variant & 1 ? "text/plain" : "image/gif");
        for (int i = 0; i < 300; i++)
            o += (size_t)sprintf(m + o, "%.*s\n", i % 60, "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghij");
        if (variant & 2)
            o += (size_t)sprintf(m + o, "no final newline");
        parsed p;
        REQUIRE_OK(parse_bytes(&p, m, o));
        free(m);
        REQUIRE(p.c.nparts == 4);
        for (uint32_t i = 0; i < 4; i++) {
            store_part sp = part(&p, i);
            uint32_t want = i < 3 || (variant & 1)
                ? slow_lines(p.msg + sp.body_off, sp.body_len) : 0;
            CHECK_EQ(sp.lines, want);
        }
        parsed_free(&p);
    }
}

static void test_digest(void)
{
    parsed p;
    REQUIRE_OK(parse_crlf(&p,
        "Content-Type: multipart/digest; boundary=d\n"
        "\n"
        "--d\n"
        "\n"
        "From: a@b\n"
        "Subject: one\n"
        "\n"
        "body one\n"
        "--d\n"
        "Content-Type: text/plain\n"
        "\n"
        "not a message\n"
        "--d\n"
        "Content-Type: multipart/mixed; boundary=m\n"
        "\n"
        "--m\n"
        "\n"
        "default is text here\n"
        "--m--\n"
        "--d--\n"));
    REQUIRE(p.c.nparts == 6);
    store_part p1 = part(&p, 1), p2 = part(&p, 2), p3 = part(&p, 3),
               p5 = part(&p, 5);
    CHECK(is_kind(&p1, "message", "rfc822"));
    CHECK_EQ(p1.envelope, 1);
    CHECK_EQ(p2.parent, 1);
    CHECK(is_kind(&p2, "text", "plain"));
    CHECK(str_eq(env(&p, 1).subject, "one"));
    CHECK(body_is(&p, 2, "body one"));
    CHECK(is_kind(&p3, "text", "plain"));
    CHECK(is_kind(&p5, "text", "plain"));
    CHECK_EQ(find(&p, "1.1"), 2);
    CHECK_EQ(find(&p, "3.1"), 5);
    CHECK_EQ(check_sections(&p.c), 0);
    parsed_free(&p);
}

static void test_missing_close(void)
{
    parsed p;
    REQUIRE_OK(parse_crlf(&p,
        "Content-Type: multipart/mixed; boundary=b\n"
        "\n"
        "--b\n"
        "Content-Type: text/plain\n"
        "\n"
        "first\n"
        "--b\n"
        "\n"
        "last part\n"
        "runs to the end\n"));
    REQUIRE(p.c.nparts == 3);
    CHECK(body_is(&p, 1, "first"));
    CHECK(body_is(&p, 2, "last part\r\nruns to the end\r\n"));
    CHECK_EQ(part(&p, 2).lines, 2);
    CHECK_EQ(part(&p, 2).body_off + part(&p, 2).body_len, p.len);
    parsed_free(&p);

    /* An inner multipart without close ends at the outer delimiter. */
    REQUIRE_OK(parse_crlf(&p,
        "Content-Type: multipart/mixed; boundary=o\n"
        "\n"
        "--o\n"
        "Content-Type: multipart/mixed; boundary=i\n"
        "\n"
        "--i\n"
        "\n"
        "inner\n"
        "--o\n"
        "\n"
        "second\n"
        "--o--\n"));
    REQUIRE(p.c.nparts == 4);
    CHECK(body_is(&p, 2, "inner"));
    CHECK(body_is(&p, 3, "second"));
    CHECK_EQ(part(&p, 3).parent, 0);
    parsed_free(&p);

    /* Delimiters back to back give empty parts; a delimiter at the very
     * end gives an empty last part. */
    REQUIRE_OK(parse_crlf(&p,
        "Content-Type: multipart/mixed; boundary=b\n"
        "\n"
        "--b\n"
        "--b\n"
        "\n"
        "x\n"
        "--b"));
    REQUIRE(p.c.nparts == 4);
    CHECK_EQ(part(&p, 1).hdr_len, 0);
    CHECK_EQ(part(&p, 1).body_len, 0);
    CHECK(body_is(&p, 2, "x"));
    CHECK_EQ(part(&p, 3).body_len, 0);
    CHECK_EQ(part(&p, 3).hdr_off, p.len);
    parsed_free(&p);
}

static void test_boundary_never_found(void)
{
    parsed p;
    REQUIRE_OK(parse_crlf(&p,
        "Content-Type: multipart/mixed; boundary=zzz\n"
        "\n"
        "--zzzz not a delimiter\n"
        "--zz\n"
        " --zzz\n"
        "text\n"));
    CHECK_EQ(p.c.nparts, 1);
    store_part sp = part(&p, 0);
    CHECK(is_kind(&sp, "application", "octet-stream"));
    CHECK(param_is(&p, 0, 0, 0, "boundary", "zzz"));
    CHECK_EQ(sp.nchildren, 0);
    CHECK_EQ(find(&p, "1"), 0);
    CHECK_EQ(check_sections(&p.c), 0);
    parsed_free(&p);

    /* No boundary parameter at all. */
    REQUIRE_OK(parse_crlf(&p,
        "Content-Type: multipart/mixed\n\n--x\n\nbody\n--x--\n"));
    CHECK_EQ(p.c.nparts, 1);
    sp = part(&p, 0);
    CHECK(is_kind(&sp, "application", "octet-stream"));
    parsed_free(&p);

    /* Empty boundary parameter. */
    REQUIRE_OK(parse_crlf(&p,
        "Content-Type: multipart/mixed; boundary=\"\"\n\n--\n\nbody\n"));
    CHECK_EQ(p.c.nparts, 1);
    parsed_free(&p);

    /* Garbage Content-Type: the default. */
    REQUIRE_OK(parse_crlf(&p, "Content-Type: ;;; / ; charset=x\n\nbody\n"));
    sp = part(&p, 0);
    CHECK(is_kind(&sp, "text", "plain"));
    CHECK(param_is(&p, 0, 0, 0, "charset", "x"));
    parsed_free(&p);
}

static void test_lf_only(void)
{
    const char *m =
        "From: a@b\n"
        "Subject: lf\n"
        " folded\n"
        "Content-Type: multipart/mixed; boundary=b\n"
        "\n"
        "--b\n"
        "Content-Type: text/plain\n"
        "\n"
        "one\n"
        "two\n"
        "--b\n"
        "Content-Type: message/rfc822\n"
        "\n"
        "Subject: inner\n"
        "\n"
        "body\n"
        "--b--\n";
    parsed p;
    REQUIRE_OK(parse_bytes(&p, m, strlen(m)));
    REQUIRE(p.c.nparts == 4);
    CHECK(str_eq(env(&p, 0).subject, "lf folded"));
    store_part p0 = part(&p, 0);
    CHECK_EQ(p0.hdr_len, off_of(&p, "--b\n"));
    CHECK(body_is(&p, 1, "one\ntwo"));
    CHECK_EQ(part(&p, 1).lines, 2);
    CHECK(body_is(&p, 3, "body"));
    CHECK(str_eq(env(&p, 1).subject, "inner"));
    CHECK_EQ(find(&p, "2.1"), 3);
    parsed_free(&p);
}

static void test_header_only(void)
{
    parsed p;
    const char *m = "From: a@b\r\nSubject: no body\r\n";
    REQUIRE_OK(parse_bytes(&p, m, strlen(m)));
    store_part sp = part(&p, 0);
    CHECK_EQ(sp.hdr_len, p.len);
    CHECK_EQ(sp.body_off, p.len);
    CHECK_EQ(sp.body_len, 0);
    CHECK_EQ(sp.lines, 0);
    CHECK(str_eq(env(&p, 0).subject, "no body"));
    parsed_free(&p);

    m = "Subject: no newline at all";
    REQUIRE_OK(parse_bytes(&p, m, strlen(m)));
    CHECK_EQ(part(&p, 0).hdr_len, p.len);
    CHECK(str_eq(env(&p, 0).subject, "no newline at all"));
    parsed_free(&p);

    /* Only the blank line: header is that line, body empty. */
    REQUIRE_OK(parse_bytes(&p, "\r\n", 2));
    CHECK_EQ(part(&p, 0).hdr_len, 2);
    CHECK_EQ(part(&p, 0).body_len, 0);
    parsed_free(&p);

    /* Body without a header. */
    REQUIRE_OK(parse_bytes(&p, "\r\nbody", 6));
    CHECK_EQ(part(&p, 0).hdr_len, 2);
    CHECK_EQ(part(&p, 0).body_len, 4);
    CHECK_EQ(part(&p, 0).lines, 1);
    parsed_free(&p);
}

static void test_empty(void)
{
    parsed p;
    REQUIRE_OK(parse_bytes(&p, "", 0));
    CHECK_EQ(p.c.nparts, 1);
    CHECK_EQ(p.c.nenvelopes, 1);
    store_part sp = part(&p, 0);
    CHECK_EQ(sp.hdr_len, 0);
    CHECK_EQ(sp.body_off, 0);
    CHECK_EQ(sp.body_len, 0);
    CHECK_EQ(sp.lines, 0);
    CHECK(is_kind(&sp, "text", "plain"));
    store_envelope e = env(&p, 0);
    CHECK(!e.date.p && !e.subject.p && !e.from.p && !e.message_id.p);
    CHECK_EQ(find(&p, "1"), 0);
    CHECK_EQ(touch_all(&p.c, 0, true), 0);
    parsed_free(&p);

    store_buf b = { 0 };
    REQUIRE_OK(store_msg_parse(NULL, 0, &b));
    store_cache c;
    CHECK_EQ(store_cache_open(b.data, b.len, &c), 0);
    CHECK_EQ(store_cache_open(NULL, 0, &c), -EBADMSG);
    free(b.data);
}

static void test_nul_8bit(void)
{
    static const char m[] =
        "Subject: a\0b\xff\xfe\r\n"
        "From: \xc3\xa9t\xc3\xa9 <x@y>\r\n"
        "X-\0Weird\0: \0\r\n"
        "\0\xff: no name\r\n"
        "Content-Type: text/plain; name=\"\xe9\0z\"\r\n"
        "\r\n"
        "body\0with nul\r\n\xff\r\n";
    parsed p;
    REQUIRE_OK(parse_bytes(&p, m, sizeof m - 1));
    store_envelope e = env(&p, 0);
    CHECK(str_eqn(e.subject, "a\0b\xff\xfe", 5));
    CHECK(str_eq(e.from, "\xc3\xa9t\xc3\xa9 <x@y>"));
    store_str n, v;
    REQUIRE_OK(store_cache_param(&p.c, 0, 0, 0, &n, &v));
    CHECK(str_eq(n, "name") && str_eqn(v, "\xe9\0z", 3));
    CHECK_EQ(part(&p, 0).lines, 2);
    CHECK_EQ(part(&p, 0).body_off, off_of(&p, "body"));
    parsed_free(&p);
}

/* Build a chain of n nested containers. */
static char *nested_multipart(int n, size_t *len)
{
    size_t cap = (size_t)n * 200 + 100, o = 0;
    char *m = malloc(cap);
    for (int i = 0; i < n; i++)
        o += (size_t)sprintf(m + o, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i);
    o += (size_t)sprintf(m + o, "\r\ninnermost\r\n");
    for (int i = n - 1; i >= 0; i--)
        o += (size_t)sprintf(m + o, "\r\n--b%d--\r\n", i);
    *len = o;
    return m;
}

static void test_deep_nesting(void)
{
    size_t len;
    char *m = nested_multipart(1000, &len);
    parsed p;
    REQUIRE_OK(parse_bytes(&p, m, len));
    free(m);
    /* Depths 0..STORE_MIME_MAX_DEPTH are recorded; the deepest is opaque. */
    CHECK_EQ(p.c.nparts, STORE_MIME_MAX_DEPTH + 1);
    store_part last = part(&p, p.c.nparts - 1);
    CHECK(is_kind(&last, "application", "octet-stream"));
    CHECK_EQ(last.nchildren, 0);
    CHECK_EQ(touch_all(&p.c, p.len, true), 0);
    CHECK_EQ(check_sections(&p.c), 0);
    /* "1.1.1...": 32 levels below part 0 */
    uint32_t path[STORE_MIME_MAX_DEPTH + 1];
    for (int i = 0; i < STORE_MIME_MAX_DEPTH + 1; i++)
        path[i] = 1;
    CHECK_EQ(store_cache_find(&p.c, path, STORE_MIME_MAX_DEPTH), STORE_MIME_MAX_DEPTH);
    CHECK_EQ(store_cache_find(&p.c, path, STORE_MIME_MAX_DEPTH + 1), -ENOENT);
    parsed_free(&p);

    /* 1000 nested message/rfc822. */
    size_t cap = 1000 * 80 + 100, o = 0;
    m = malloc(cap);
    for (int i = 0; i < 1000; i++)
        o += (size_t)sprintf(m + o, "Subject: level %d\r\nContent-Type: message/rfc822\r\n\r\n", i);
    o += (size_t)sprintf(m + o, "Subject: bottom\r\n\r\nbottom\r\n");
    REQUIRE_OK(parse_bytes(&p, m, o));
    free(m);
    CHECK_EQ(p.c.nparts, STORE_MIME_MAX_DEPTH + 1);
    CHECK_EQ(p.c.nenvelopes, STORE_MIME_MAX_DEPTH + 1);
    CHECK(str_eq(env(&p, 5).subject, "level 5"));
    CHECK_EQ(touch_all(&p.c, p.len, true), 0);
    CHECK_EQ(check_sections(&p.c), 0);
    parsed_free(&p);
}

static void test_many_parts(void)
{
    size_t cap = 10000 * 60 + 200, o = 0;
    char *m = malloc(cap);
    o += (size_t)sprintf(m, "Content-Type: multipart/mixed; boundary=b\r\n\r\n");
    for (int i = 0; i < 10000; i++)
        o += (size_t)sprintf(m + o, "--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n", i);
    o += (size_t)sprintf(m + o, "--b--\r\n");
    parsed p;
    REQUIRE_OK(parse_bytes(&p, m, o));
    CHECK_EQ(p.c.nparts, STORE_MIME_MAX_PARTS);
    CHECK_EQ(part(&p, 0).nchildren, STORE_MIME_MAX_PARTS - 1);
    CHECK(body_is(&p, 1, "part 0"));
    CHECK(body_is(&p, STORE_MIME_MAX_PARTS - 1, "part 4094"));
    CHECK_EQ(touch_all(&p.c, p.len, true), 0);
    CHECK_EQ(check_sections(&p.c), 0);
    CHECK_EQ(find(&p, "4095"), STORE_MIME_MAX_PARTS - 1);
    CHECK_EQ(find(&p, "4096"), -ENOENT);
    parsed_free(&p);

    /* The limit reached inside nested multiparts: containers that cannot
     * get a child become opaque, the rest stays consistent. */
    o = (size_t)sprintf(m, "Content-Type: multipart/mixed; boundary=o\r\n\r\n");
    for (int i = 0; i < 3000; i++)
        o += (size_t)sprintf(m + o,
            "--o\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n"
            "--i\r\n\r\nx\r\n--i--\r\n");
    o += (size_t)sprintf(m + o, "--o--\r\n");
    REQUIRE_OK(parse_bytes(&p, m, o));
    CHECK_EQ(p.c.nparts, STORE_MIME_MAX_PARTS);
    CHECK_EQ(touch_all(&p.c, p.len, true), 0);
    CHECK_EQ(check_sections(&p.c), 0);
    parsed_free(&p);
    free(m);
}

static void test_find_edges(void)
{
    parsed p;
    REQUIRE_OK(parse_crlf(&p,
        "Content-Type: multipart/mixed; boundary=b\n"
        "\n"
        "--b\n"
        "\n"
        "a\n"
        "--b--\n"));
    uint32_t path[3] = { 1, 1, 1 };
    CHECK_EQ(store_cache_find(&p.c, path, 0), 0);
    CHECK_EQ(store_cache_find(&p.c, path, 1), 1);
    CHECK_EQ(store_cache_find(&p.c, path, 2), -ENOENT);
    uint32_t big[2] = { UINT32_MAX, 1 };
    CHECK_EQ(store_cache_find(&p.c, big, 1), -ENOENT);
    uint32_t zero[1] = { 0 };
    CHECK_EQ(store_cache_find(&p.c, zero, 1), -ENOENT);
    CHECK_EQ(find(&p, "2"), -ENOENT);
    store_part sp;
    CHECK_EQ(store_cache_part(&p.c, 2, &sp), -ERANGE);
    CHECK_EQ(store_cache_part(&p.c, UINT32_MAX, &sp), -ERANGE);
    store_envelope e;
    CHECK_EQ(store_cache_envelope(&p.c, 1, &e), -ERANGE);
    store_str n, v;
    CHECK_EQ(store_cache_param(&p.c, 1, 0, 0, &n, &v), -ERANGE);
    CHECK_EQ(store_cache_param(&p.c, 0, 1, 0, &n, &v), -ERANGE);
    CHECK_EQ(store_cache_param(&p.c, 9, 0, 0, &n, &v), -ERANGE);
    parsed_free(&p);
}

static const char *sample_messages[] = {
    ("From: a@b\nSubject: s\nContent-Type: multipart/mixed; boundary=b1\n\n"
    "pre\n--b1\nContent-Type: text/plain; charset=utf-8\n\nhello\n"
    "--b1\nContent-Type: message/rfc822\n\nFrom: c@d\nSubject: inner\n"
    "Content-Type: multipart/alternative; boundary=b2\n\n--b2\n\nalt1\n"
    "--b2\nContent-Type: text/html\n\n<b>x</b>\n--b2--\n"
    "--b1\nContent-Type: application/octet-stream; name*0=a; name*1=b\n"
    "Content-Disposition: attachment; filename*=utf-8''x%20y\n"
    "Content-Transfer-Encoding: base64\n\nAAAA\n--b1--\nepi\n"),
    "Subject: plain\n\nline\nline\n",
    ("Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: m1\n\nb\n"
    "--d\n\nSubject: m2\n\nb2\n--d--\n"),
};

static void test_blob_truncation(void)
{
    for (size_t s = 0; s < sizeof sample_messages / sizeof *sample_messages; s++) {
        parsed p;
        REQUIRE_OK(parse_crlf(&p, sample_messages[s]));
        size_t full = p.buf.len;
        int accepted = 0;
        for (size_t l = 0; l < full; l++) {
            uint8_t *copy = malloc(l ? l : 1);
            memcpy(copy, p.buf.data, l);
            store_cache c;
            accepted += store_cache_open(copy, l, &c) == 0;
            free(copy);
        }
        CHECK_EQ(accepted, 0);
        /* Wrong magic and version. */
        uint8_t *copy = malloc(full);
        memcpy(copy, p.buf.data, full);
        store_cache c;
        copy[0] ^= 1;
        CHECK_EQ(store_cache_open(copy, full, &c), -EBADMSG);
        copy[0] ^= 1;
        copy[4] = 5;
        reseal(copy, full);
        CHECK_EQ(store_cache_open(copy, full, &c), -EBADMSG);
        copy[4] = 4;
        reseal(copy, full);
        /* The test's CRC32C agrees with the blob's. */
        CHECK(!memcmp(copy, p.buf.data, full));
        CHECK_EQ(store_cache_open(copy, full, &c), 0);
        CHECK(store_cache_is_current(&c));
        /* A version 4 header of 40 bytes, or an older one of 44: refused. */
        copy[6] = 40;
        reseal(copy, full);
        CHECK_EQ(store_cache_open(copy, full, &c), -EBADMSG);
        copy[6] = 44;
        copy[4] = 3;
        reseal(copy, full);
        CHECK_EQ(store_cache_open(copy, full, &c), -EBADMSG);
        /* Version 3 (no preview field, a 40-byte header) is read. */
        memcpy(copy, p.buf.data, full);
        to_v3(copy, full);
        CHECK_EQ(store_cache_open(copy, full, &c), 0);
        CHECK(!store_cache_is_current(&c));
        store_str pv;
        CHECK(!store_cache_preview(&c, &pv));
        /* Version 2's rendered envelope came from an older rendering: the
         * blob is read, its rendered text is not. */
        copy[4] = 2;
        reseal(copy, full);
        CHECK_EQ(store_cache_open(copy, full, &c), 0);
        CHECK(store_cache_envelope_text(&c).p == NULL);
        /* Version 1 (no rendered envelope; field 36 must be 0) is read. */
        copy[4] = 1;
        memset(copy + 36, 0, 4);
        reseal(copy, full);
        CHECK_EQ(store_cache_open(copy, full, &c), 0);
        CHECK(store_cache_envelope_text(&c).p == NULL);
        copy[36] = 1;
        reseal(copy, full);
        CHECK_EQ(store_cache_open(copy, full, &c), -EBADMSG);
        free(copy);
        parsed_free(&p);
    }
}

/* Specific lies in a correctly sealed blob. */
static void test_blob_hostile(void)
{
    parsed p;
    REQUIRE_OK(parse_crlf(&p, sample_messages[0]));
    size_t full = p.buf.len;
    uint32_t nparts = get32(p.buf.data + 20);
    REQUIRE(nparts >= 4);
    /* u32 field index k of part i */
    #define PF(i, k) (44 + 88 * (size_t)(i) + 4 * (size_t)(k))
    struct { size_t at; uint32_t v; const char *what; size_t at2; } lies[] = {
        { PF(1, 19), 1, "next_sibling points to itself", 0 },
        { PF(2, 19), 1, "next_sibling points backwards", 0 },
        { PF(1, 19), nparts, "next_sibling out of range", 0 },
        { PF(0, 18), 0, "first_child of part 0 is itself", 0 },
        { PF(0, 20), 7, "nchildren too large", 0 },
        { PF(1, 17), 1, "parent is itself", 0 },
        { PF(1, 0), 0xfffffff0u, "type ref past the pool", 0 },
        { PF(1, 0), 0xffffffffu, "type NIL", 0 },
        { PF(1, 14), 0xffffff00u, "params past the table", 0 },
        { PF(1, 12), 0xfffffff0u, "body length past the message", 0 },
        { PF(1, 9), 0, "part before its parent's body", PF(1, 11) },
        { PF(1, 10), 0, "header length not matching body offset", 0 },
        { PF(1, 21), 3, "envelope on a text part", 0 },
        { PF(1, 13), 0xffffffffu, "more lines than bytes", 0 },
        { 20, 0, "no parts", 0 },
        { 20, 5000, "too many parts", 0 },
        { 24, 0, "no envelopes", 0 },
        { 32, 0xffffffffu, "pool length", 0 },
        { 8, 43, "total below the header", 0 },
        { 40, 0xfffffff0u, "preview ref past the pool", 0 },
    };
    for (size_t k = 0; k < sizeof lies / sizeof *lies; k++) {
        uint8_t *copy = malloc(full);
        memcpy(copy, p.buf.data, full);
        put32(copy + lies[k].at, lies[k].v);
        if (lies[k].at2) {
            /* Keep body_off = hdr_off + hdr_len, so that the containment
             * check has to catch it. */
            put32(copy + lies[k].at2, lies[k].v + get32(copy + lies[k].at + 4));
        }
        reseal(copy, full);
        store_cache c;
        int r = store_cache_open(copy, full, &c);
        if (r != -EBADMSG)
            fprintf(stderr, "accepted: %s\n", lies[k].what);
        CHECK_EQ(r, -EBADMSG);
        free(copy);
    }
    #undef PF
    parsed_free(&p);
}

static void test_blob_mutation(void)
{
    int rejected_plain = 0, tries_plain = 0, accepted_sealed = 0, bad = 0;
    for (size_t s = 0; s < sizeof sample_messages / sizeof *sample_messages; s++) {
        parsed p;
        REQUIRE_OK(parse_crlf(&p, sample_messages[s]));
        size_t full = p.buf.len;
        for (int iter = 0; iter < 3000; iter++) {
            uint8_t *copy = malloc(full);
            memcpy(copy, p.buf.data, full);
            int nflip = 1 + (int)rndn(4);
            for (int k = 0; k < nflip; k++) {
                size_t at = rndn((uint32_t)full);
                switch (rndn(4)) {
                case 0:
                    copy[at] ^= (uint8_t)(1u << rndn(8));
                    break;
                case 1:
                    copy[at] = (uint8_t)rnd();
                    break;
                default: {
                    /* Interesting u32 values in the structured part. */
                    at = 16 + 4 * rndn((uint32_t)(full - 16) / 4);
                    static const uint32_t vals[] = { 0, 1, 2, 3, 4, 5,
                        0xffffffffu, 0x7fffffffu, 0x80000000u, 0xfffffffeu,
                        4096, 4097 };
                    uint32_t v = vals[rndn(sizeof vals / sizeof *vals)];
                    if (rndn(3) == 0)
                        v = get32(copy + at) + rndn(9) - 4;
                    if (at + 4 <= full)
                        put32(copy + at, v);
                }
                }
            }
            store_cache c;
            bool sealed = rndn(4) != 0;
            if (sealed)
                reseal(copy, full);
            int r = store_cache_open(copy, full, &c);
            if (!sealed) {
                tries_plain++;
                rejected_plain += r == -EBADMSG ||
                                  !memcmp(copy, p.buf.data, full);
            }
            if (r == 0) {
                accepted_sealed += sealed;
                bad += touch_all(&c, 0, false);
            } else {
                CHECK_EQ(r, -EBADMSG);
            }
            free(copy);
        }
        parsed_free(&p);
    }
    CHECK_EQ(rejected_plain, tries_plain);      /* the checksum catches these */
    CHECK_EQ(bad, 0);
    fprintf(stderr, "     mutation: %d resealed blobs passed validation\n",
            accepted_sealed);
}

/* ---- random messages ------------------------------------------------ */

typedef struct gen {
    char *p;
    size_t len, cap;
} gen;

static void g_put(gen *g, const char *s, size_t n)
{
    if (g->len + n + 1 > g->cap) {
        g->cap = (g->len + n + 1) * 2;
        g->p = realloc(g->p, g->cap);
    }
    memcpy(g->p + g->len, s, n);
    g->len += n;
}

static void g_str(gen *g, const char *s) { g_put(g, s, strlen(s)); }

static void g_eol(gen *g)
{
    switch (rndn(8)) {
    case 0: g_str(g, "\n"); break;
    case 1: g_str(g, " \r\n"); break;
    default: g_str(g, "\r\n");
    }
}

static void g_junk(gen *g, int max)
{
    int n = (int)rndn((uint32_t)max);
    for (int i = 0; i < n; i++) {
        char c;
        switch (rndn(10)) {
        case 0: c = (char)rnd(); break;
        case 1: c = '\n'; break;
        case 2: c = '-'; break;
        case 3: c = ' '; break;
        default: c = (char)('a' + rndn(26));
        }
        g_put(g, &c, 1);
    }
}

static void g_entity(gen *g, int depth, const char *parent_b);

static void g_header(gen *g, const char *ctype, const char *b)
{
    static const char *names[] = { "From", "subject", "TO", "Cc",
        "Message-ID", "Date", "References", "Content-ID",
        "Content-Transfer-Encoding", "Content-Disposition", "X-Junk" };
    int n = (int)rndn(5);
    for (int i = 0; i < n; i++) {
        g_str(g, names[rndn(sizeof names / sizeof *names)]);
        g_str(g, rndn(10) ? ": " : ":");
        g_junk(g, 20);
        if (rndn(4) == 0) {
            g_eol(g);
            g_str(g, "\t");
            g_junk(g, 10);
        }
        g_eol(g);
    }
    if (ctype) {
        g_str(g, "Content-Type: ");
        g_str(g, ctype);
        if (b) {
            g_str(g, rndn(2) ? "; boundary=\"" : ";\r\n boundary*0=\"");
            g_str(g, b);
            g_str(g, "\"");
        }
        if (rndn(3) == 0)
            g_str(g, "; name*0*=utf-8''%41; name*1=x");
        g_eol(g);
    }
    if (rndn(20))
        g_eol(g);       /* the blank line, usually */
}

static void g_entity(gen *g, int depth, const char *parent_b)
{
    static const char *leaf_types[] = { "text/plain", "text/html",
        "application/pdf", "image/png", "garbage", NULL };
    uint32_t kind = depth > 6 ? 3 : rndn(6);
    char b[40];
    if (kind <= 1) {
        /* multipart; sometimes the boundary extends the parent's */
        if (parent_b && rndn(4) == 0)
            snprintf(b, sizeof b, "%s-%u", parent_b, rndn(100));
        else
            snprintf(b, sizeof b, "b%u", rndn(1000));
        const char *sub = rndn(5) == 0 ? "multipart/digest" : "multipart/mixed";
        g_header(g, sub, rndn(15) ? b : NULL);
        if (rndn(2))
            g_junk(g, 30);      /* preamble */
        int nparts = (int)rndn(5);
        for (int i = 0; i < nparts; i++) {
            g_str(g, "--");
            g_str(g, b);
            if (rndn(10) == 0)
                g_str(g, "  ");
            g_eol(g);
            g_entity(g, depth + 1, b);
            g_eol(g);
        }
        if (rndn(4)) {
            g_str(g, "--");
            g_str(g, b);
            g_str(g, "--");
            g_eol(g);
            g_junk(g, 20);      /* epilogue */
        }
    } else if (kind == 2) {
        g_header(g, rndn(8) ? "message/rfc822" : "message/global", NULL);
        g_entity(g, depth + 1, parent_b);
    } else {
        g_header(g, leaf_types[rndn(sizeof leaf_types / sizeof *leaf_types)], NULL);
        g_junk(g, 80);
        if (parent_b && rndn(6) == 0) {
            g_str(g, "\r\n--");
            g_str(g, parent_b);
            g_junk(g, 3);
            g_eol(g);
        }
    }
}

static void check_message(const char *m, size_t len, int *bad, int *parts)
{
    /* An exact-size copy so ASan sees any read past the end. */
    char *copy = malloc(len ? len : 1);
    memcpy(copy, m, len);
    store_buf b = { 0 };
    int r = store_msg_parse(copy, len, &b);
    store_cache c;
    if (r || store_cache_open(b.data, b.len, &c)) {
        (*bad)++;
    } else {
        *parts += (int)c.nparts;
        *bad += touch_all(&c, len, true);
        *bad += check_sections(&c);
        store_part sp;
        store_cache_part(&c, 0, &sp);
        *bad += sp.hdr_off != 0 || sp.body_off + sp.body_len != len;
    }
    free(b.data);
    free(copy);
}

static void test_random_messages(void)
{
    int bad = 0, parts = 0;
    gen g = { 0 };
    for (int iter = 0; iter < 4000; iter++) {
        g.len = 0;
        g_entity(&g, 0, NULL);
        check_message(g.p, g.len, &bad, &parts);
        /* Mutations: truncation, byte noise, spliced delimiters. */
        if (g.len) {
            check_message(g.p, rndn((uint32_t)g.len), &bad, &parts);
            char *m = malloc(g.len);
            memcpy(m, g.p, g.len);
            for (int k = (int)rndn(8); k >= 0; k--) {
                size_t at = rndn((uint32_t)g.len);
                static const char noise[] = "\r\n-\0: \t\";=*(";
                m[at] = rndn(2) ? (char)rnd() : noise[rndn(sizeof noise - 1)];
            }
            check_message(m, g.len, &bad, &parts);
            free(m);
        }
    }
    /* Pure noise. */
    for (int iter = 0; iter < 1000; iter++) {
        size_t n = rndn(400);
        char *m = malloc(n ? n : 1);
        for (size_t i = 0; i < n; i++)
            m[i] = rndn(3) ? "ab:\r\n -;=\"*"[rndn(12)] : (char)rnd();
        check_message(m, n, &bad, &parts);
        free(m);
    }
    free(g.p);
    CHECK_EQ(bad, 0);
    CHECK(parts > 20000);   /* the generator does make trees */
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* 50 MB, 4000 parts: reported, not asserted (timing never decides). */
static void test_big_message(void)
{
    size_t target = 50u << 20, per = target / 4000;
    char *m = malloc(target + 1000000);
    size_t o = (size_t)sprintf(m, "Subject: big\r\nContent-Type: multipart/mixed; boundary=\"=_big\"\r\n\r\n");
    for (int i = 0; i < 4000; i++) {
        o += (size_t)sprintf(m + o, "--=_big\r\nContent-Type: %s\r\n\r\n",
                             i % 2 ? "text/plain" : "application/octet-stream");
        size_t end = o + per;
        while (o + 78 < end) {
            memset(m + o, 'A' + i % 26, 76);
            m[o] = '-';     /* lines that start like a delimiter */
            m[o + 1] = '-';
            memcpy(m + o + 76, "\r\n", 2);
            o += 78;
        }
    }
    o += (size_t)sprintf(m + o, "--=_big--\r\n");
    store_buf b = { 0 };
    double t0 = now();
    int r = store_msg_parse(m, o, &b);
    double t1 = now();
    CHECK_EQ(r, 0);
    store_cache c;
    REQUIRE_OK(store_cache_open(b.data, b.len, &c));
    double t2 = now();
    CHECK_EQ(c.nparts, 4001);
    CHECK_EQ(touch_all(&c, o, true), 0);
    store_part sp;
    store_cache_part(&c, 2, &sp);
    CHECK_EQ(sp.lines, slow_lines(m + sp.body_off, sp.body_len));
    CHECK(sp.lines > 100);
    fprintf(stderr, "     big: %.1f MB, %u parts, parse %.3f s, open %.6f s, blob %zu bytes\n",
            o / 1048576.0, c.nparts, t1 - t0, t2 - t1, b.len);
    free(b.data);
    free(m);
}

/* store_msg_prefixed: the blob of prefix + message, made from the message's
 * own blob, is byte for byte what parsing prefix + message gives, for every
 * message that starts with a field or an empty line (store_msg_prefix_safe)
 * — generated trees, their mutations and noise. */
static int prefixed_one(const char *m, size_t n, int *bad, int *checked)
{
    static const char prefix[] = "Return-Path: <s@example.org>\r\n"
                                 "Delivered-To: u@example.org\r\n"
                                 "Received: from mx (unix)\r\n\tby host (Ringmail) with LMTP id 1\r\n"
                                 "\tfor <u@example.org>; Mon, 7 Dec 2026 02:47:48 +0000\r\n";
    size_t k = sizeof prefix - 1;
    if (!store_msg_prefix_safe(m, n))
        return 0;
    store_buf whole = { 0 }, own = { 0 }, shifted = { 0 };
    char *pm = malloc(k + n + 1);
    memcpy(pm, prefix, k);
    if (n)
        memcpy(pm + k, m, n);
    int r1 = store_msg_parse(pm, k + n, &whole);
    int r2 = store_msg_parse(m, n, &own);
    int r3 = r2 ? r2 : store_msg_prefixed(own.data, own.len, k, &shifted);
    if (r1 || r2 || r3 || whole.len != shifted.len || memcmp(whole.data, shifted.data, whole.len)) {
        if (++*bad <= 3)
            fprintf(stderr, "  prefixed blob differs (%d %d %d, %zu/%zu bytes) for %zu-byte "
                    "message %.40s\n", r1, r2, r3, whole.len, shifted.len, n, m);
    }
    ++*checked;
    free(pm);
    free(whole.data);
    free(own.data);
    free(shifted.data);
    return 0;
}

static void test_prefixed(void)
{
    int bad = 0, checked = 0;
    gen g = { 0 };
    for (int iter = 0; iter < 3000; iter++) {
        g.len = 0;
        g_entity(&g, 0, NULL);
        prefixed_one(g.p, g.len, &bad, &checked);
        if (g.len) {
            char *m = malloc(g.len);
            memcpy(m, g.p, g.len);
            for (int k = (int)rndn(8); k >= 0; k--) {
                size_t at = rndn((uint32_t)g.len);
                static const char noise[] = "\r\n-\0: \t\";=*(";
                m[at] = rndn(2) ? (char)rnd() : noise[rndn(sizeof noise - 1)];
            }
            prefixed_one(m, g.len, &bad, &checked);
            prefixed_one(m, rndn((uint32_t)g.len), &bad, &checked);
            free(m);
        }
    }
    for (int iter = 0; iter < 1000; iter++) {
        size_t n = rndn(400);
        char *m = malloc(n + 8);
        memcpy(m, "X-A: b\r\n", 8);
        for (size_t i = 8; i < n + 8; i++)
            m[i] = rndn(3) ? "ab:\r\n -;=\"*"[rndn(12)] : (char)rnd();
        prefixed_one(m, n + 8, &bad, &checked);
        free(m);
    }
    prefixed_one("", 0, &bad, &checked);
    prefixed_one("\r\nbody only\r\n", 14, &bad, &checked);
    free(g.p);
    CHECK_EQ(bad, 0);
    CHECK(checked > 4000);
    /* the condition itself */
    CHECK(store_msg_prefix_safe("Subject: x\r\n", 12));
    CHECK(store_msg_prefix_safe("\r\nbody", 6));
    CHECK(!store_msg_prefix_safe(" folded\r\n", 9));
    CHECK(!store_msg_prefix_safe("From me\r\n", 9));
    CHECK(!store_msg_prefix_safe(":x\r\n", 4));
    CHECK(!store_msg_prefix_safe("Subject", 7));
}

int main(void)
{
    RUN(test_buf);
    RUN(test_simple);
    RUN(test_folded);
    RUN(test_multipart_mixed);
    RUN(test_rfc2231);
    RUN(test_nested_alternative);
    RUN(test_message_rfc822);
    RUN(test_lines);
    RUN(test_digest);
    RUN(test_missing_close);
    RUN(test_boundary_never_found);
    RUN(test_lf_only);
    RUN(test_header_only);
    RUN(test_empty);
    RUN(test_nul_8bit);
    RUN(test_deep_nesting);
    RUN(test_many_parts);
    RUN(test_find_edges);
    RUN(test_blob_truncation);
    RUN(test_blob_hostile);
    RUN(test_blob_mutation);
    RUN(test_random_messages);
    RUN(test_prefixed);
    RUN(test_big_message);
    return test_summary();
}
