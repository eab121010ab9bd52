/* tests/unit/test_fetch_render.c — core/fetch/fetch_render.c, core/fetch/fetch_section.c,
 * core/fetch/mime_decode.c and core/fetch/mime_encode.c: ENVELOPE,
 * BODY/BODYSTRUCTURE, body sections, BINARY, base64 for APPENDed binary
 * parts, RFC 2047 and charset decoding, against exact expected output
 * (RFC 3501 / RFC 9051 examples included), plus randomized messages that
 * must always render well-formed. */
#include "core/fetch/fetch_render.h"
#include "core/fetch/mime_decode.h"
#include "core/fetch/mime_encode.h"
#include "store/message.h"
#include "store/utf8.h"
#include "testutil.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* ---- helpers ------------------------------------------------------- */

typedef struct msg {
    char *raw;          /* exact-size copy, so ASan sees overreads */
    size_t len;
    store_buf blob;
    store_cache c;
} msg;

static int msg_raw(msg *m, const char *raw, size_t len)
{
    memset(m, 0, sizeof *m);
    m->raw = malloc(len ? len : 1);
    if (len)
        memcpy(m->raw, raw, len);
    m->len = len;
    int r = store_msg_parse(m->raw, len, &m->blob);
    return r ? r : store_cache_open(m->blob.data, m->blob.len, &m->c);
}

/* Test messages are written with "\n"; this makes them CRLF. */
static int msg_crlf(msg *m, const char *text)
{
    size_t n = strlen(text), extra = 0;
    for (size_t i = 0; i < n; i++)
        extra += text[i] == '\n';
    char *d = malloc(n + extra + 1), *w = d;
    for (size_t i = 0; i < n; i++) {
        if (text[i] == '\n')
            *w++ = '\r';
        *w++ = text[i];
    }
    int r = msg_raw(m, d, (size_t)(w - d));
    free(d);
    return r;
}

static void msg_free(msg *m)
{
    free(m->raw);
    free(m->blob.data);
}

static char *out_str(imap_out *o)
{
    char *s = malloc(o->len + 1);
    memcpy(s, o->p ? o->p : "", o->len);
    s[o->len] = 0;
    imap_out_free(o);
    return s;
}

static char *env_str(const msg *m, uint32_t i, bool utf8)
{
    imap_out o = { 0 };
    if (imap_render_envelope(&o, &m->c, i, utf8))
        return strdup("<error>");
    return out_str(&o);
}

static char *body_str(const msg *m, bool ext, bool utf8)
{
    imap_out o = { 0 };
    if (imap_render_body(&o, &m->c, ext, utf8))
        return strdup("<error>");
    return out_str(&o);
}

static bool streq_report(const char *what, const char *got, size_t gotlen,
                         const char *want, size_t wantlen)
{
    if (gotlen == wantlen && !memcmp(got, want, gotlen))
        return true;
    fprintf(stderr, "  %s:\n    got  [%.*s] (%zu)\n    want [%.*s] (%zu)\n",
            what, (int)gotlen, got, gotlen, (int)wantlen, want, wantlen);
    return false;
}

#define CHECK_STR(got, want) do { char *g_ = (got); \
    CHECK(streq_report(#got, g_, strlen(g_), (want), strlen(want))); \
    free(g_); } while (0)

/* Body text of exactly `size` bytes in `lines` lines (CRLF line ends; the
 * last line without one unless final_eol). */
static char *make_body(size_t size, size_t lines, bool final_eol)
{
    size_t neol = final_eol ? lines : lines - 1;
    size_t content = size - 2 * neol, per = content / lines,
           extra = content % lines;
    char *b = malloc(size + 1), *w = b;
    for (size_t l = 0; l < lines; l++) {
        size_t k = per + (l < extra);
        for (size_t j = 0; j < k; j++)
            *w++ = (char)('A' + (l + j) % 26);
        if (l < neol) {
            *w++ = '\r';
            *w++ = '\n';
        }
    }
    *w = 0;
    return b;
}

/* Concatenate a NULL-terminated list of strings. */
static char *cat(const char *first, ...)
{
    va_list ap;
    size_t n = 0;
    va_start(ap, first);
    for (const char *s = first; s; s = va_arg(ap, const char *))
        n += strlen(s);
    va_end(ap);
    char *r = malloc(n + 1), *w = r;
    va_start(ap, first);
    for (const char *s = first; s; s = va_arg(ap, const char *)) {
        size_t k = strlen(s);
        memcpy(w, s, k);
        w += k;
    }
    va_end(ap);
    *w = 0;
    return r;
}

/* Fetch a section given as the FETCH attribute ("BODY[1.MIME]<0.10>") and
 * compare the bytes. */
static bool fetch_is(const msg *m, const char *att, const char *want,
                     size_t wantlen)
{
    imap_section s;
    int r = imap_section_parse(att, strlen(att), &s);
    if (r) {
        fprintf(stderr, "  parse %s: %d\n", att, r);
        return false;
    }
    imap_section_data d;
    r = imap_section_fetch(&s, &m->c, m->raw, m->len, &d);
    imap_section_free(&s);
    if (r) {
        fprintf(stderr, "  fetch %s: %d\n", att, r);
        return false;
    }
    bool ok = streq_report(att, d.p, d.len, want, wantlen);
    imap_section_data_free(&d);
    return ok;
}

#define CHECK_FETCH(m, att, want) CHECK(fetch_is((m), (att), (want), strlen(want)))

static int fetch_err(const msg *m, const char *att)
{
    imap_section s;
    int r = imap_section_parse(att, strlen(att), &s);
    if (r)
        return 1000 + r;
    imap_section_data d;
    r = imap_section_fetch(&s, &m->c, m->raw, m->len, &d);
    imap_section_free(&s);
    if (!r)
        imap_section_data_free(&d);
    return r;
}

static char *echo_str(const char *att)
{
    imap_section s;
    if (imap_section_parse(att, strlen(att), &s))
        return strdup("<parse error>");
    imap_out o = { 0 };
    imap_section_echo(&o, &s);
    imap_section_free(&s);
    return out_str(&o);
}

/* The bytes of a message between two markers (from the start of `from` to
 * the start of `to`, or the end). */
static char *slice(const msg *m, const char *from, const char *to)
{
    const char *a = memmem(m->raw, m->len, from, strlen(from));
    if (!a)
        return strdup("<no such marker>");
    const char *b = to ? memmem(a, m->len - (size_t)(a - m->raw), to, strlen(to))
                       : m->raw + m->len;
    if (!b)
        return strdup("<no such marker>");
    return strndup(a, (size_t)(b - a));
}

/* ---- well-formedness of rendered IMAP data -------------------------- */

/* One value: NIL, a number, a quoted string, a literal, or a list whose
 * elements are separated by one space (lists may also follow each other
 * directly, as bodies and addresses do). */
static bool wf_value(const char *p, size_t n, size_t *i, int depth)
{
    if (*i >= n || depth > 200)
        return false;
    char c = p[*i];
    if (c == '(') {
        (*i)++;
        if (*i < n && p[*i] == ')') {
            (*i)++;
            return true;
        }
        for (;;) {
            if (!wf_value(p, n, i, depth + 1))
                return false;
            if (*i >= n)
                return false;
            if (p[*i] == ')') {
                (*i)++;
                return true;
            }
            if (p[*i] == ' ')
                (*i)++;
            else if (p[*i] != '(' || p[*i - 1] != ')')
                return false;
        }
    }
    if (c == '"') {
        for ((*i)++; *i < n; (*i)++) {
            char q = p[*i];
            if (q == '"') {
                (*i)++;
                return true;
            }
            if (q == '\r' || q == '\n' || q == 0)
                return false;
            if (q == '\\') {
                if (*i + 1 >= n || (p[*i + 1] != '"' && p[*i + 1] != '\\'))
                    return false;
                (*i)++;
            }
        }
        return false;
    }
    if (c == '{') {
        size_t len = 0, j = *i + 1;
        if (j >= n || p[j] < '0' || p[j] > '9')
            return false;
        while (j < n && p[j] >= '0' && p[j] <= '9')
            len = len * 10 + (size_t)(p[j++] - '0');
        if (n - j < 3 || memcmp(p + j, "}\r\n", 3))
            return false;
        j += 3;
        if (n - j < len || memchr(p + j, 0, len))
            return false;
        *i = j + len;
        return true;
    }
    if (c >= '0' && c <= '9') {
        while (*i < n && p[*i] >= '0' && p[*i] <= '9')
            (*i)++;
        return true;
    }
    if (n - *i >= 3 && !memcmp(p + *i, "NIL", 3)) {
        *i += 3;
        return true;
    }
    return false;
}

static bool wellformed(const char *p, size_t n)
{
    size_t i = 0;
    return wf_value(p, n, &i, 0) && i == n;
}

/* ---- RFC examples --------------------------------------------------- */

/* RFC 3501 section 8 (and RFC 9051 section 8): "a003 fetch 12 full" and
 * "a004 fetch 12 body[header]". */
static void test_rfc_sample_message(void)
{
    const char *hdr =
        "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
        "From: Terry Gray <gray@cac.washington.edu>\r\n"
        "Subject: IMAP4rev1 WG mtg summary and minutes\r\n"
        "To: imap@cac.washington.edu\r\n"
        "cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n"
        "Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
        "\r\n";
    CHECK_EQ(strlen(hdr), 342);     /* as in the RFC: BODY[HEADER] {342} */
    char *body = make_body(3028, 92, true);
    char *raw = cat(hdr, body, NULL);
    msg m;
    REQUIRE_OK(msg_raw(&m, raw, strlen(raw)));
    CHECK_STR(env_str(&m, 0, false),
        "(\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" "
        "\"IMAP4rev1 WG mtg summary and minutes\" "
        "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
        "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
        "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
        "((NIL NIL \"imap\" \"cac.washington.edu\")) "
        "((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")"
        "(\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) NIL NIL "
        "\"<B27397-0100000@cac.washington.edu>\")");
    CHECK_STR(body_str(&m, false, false),
        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3028 92)");
    CHECK_STR(body_str(&m, true, true),
        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3028 92"
        " NIL NIL NIL NIL)");
    CHECK_FETCH(&m, "BODY[HEADER]", hdr);
    CHECK_FETCH(&m, "body.peek[header]", hdr);
    CHECK_FETCH(&m, "BODY[TEXT]", body);
    CHECK_FETCH(&m, "BODY[1]", body);       /* non-multipart: 1 is the body */
    CHECK_FETCH(&m, "BODY[]", raw);
    CHECK_FETCH(&m, "RFC822", raw);
    CHECK_FETCH(&m, "RFC822.HEADER", hdr);
    CHECK_FETCH(&m, "RFC822.TEXT", body);
    CHECK_FETCH(&m, "BODY[1.MIME]", hdr);   /* the part's MIME header */
    /* RFC 9051 6.4.5's example request. */
    CHECK_FETCH(&m, "BODY[HEADER.FIELDS (DATE FROM)]",
        "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
        "From: Terry Gray <gray@cac.washington.edu>\r\n\r\n");
    CHECK_STR(echo_str("BODY[HEADER.FIELDS (DATE FROM)]"),
              "BODY[HEADER.FIELDS (DATE FROM)]");
    free(raw);
    free(body);
    msg_free(&m);
}

/* RFC 3501 7.4.2 / RFC 9051 7.5.2: the two-part BODYSTRUCTURE examples. */
static void test_rfc_bodystructure_examples(void)
{
    char *b1 = make_body(1152, 23, false), *b2 = make_body(4554, 73, false);
    char *raw = cat(
        "MIME-Version: 1.0\r\n"
        "Content-Type: MULTIPART/MIXED; BOUNDARY=\"xyz\"\r\n\r\n"
        "--xyz\r\n"
        "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n", b1,
        "\r\n--xyz\r\n"
        "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII; NAME=cc.diff\r\n"
        "Content-ID: <960723163407.20117h@cac.washington.edu>\r\n"
        "Content-Description: Compiler diff\r\n"
        "Content-Transfer-Encoding: BASE64\r\n\r\n", b2,
        "\r\n--xyz--\r\n", NULL);
    msg m;
    REQUIRE_OK(msg_raw(&m, raw, strlen(raw)));
    CHECK_STR(body_str(&m, false, false),
        "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1152 23)"
        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\" \"NAME\" \"cc.diff\") "
        "\"<960723163407.20117h@cac.washington.edu>\" \"Compiler diff\" "
        "\"BASE64\" 4554 73) \"MIXED\")");
    /* The simple one: 48 lines, 2279 octets. */
    char *b3 = make_body(2279, 48, true);
    char *raw3 = cat("Content-Type: text/plain; charset=US-ASCII\r\n\r\n", b3,
                     NULL);
    msg m3;
    REQUIRE_OK(msg_raw(&m3, raw3, strlen(raw3)));
    CHECK_STR(body_str(&m3, false, false),
        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 2279 48)");
    msg_free(&m3);
    free(raw3);
    free(b3);
    msg_free(&m);
    free(raw);
    free(b1);
    free(b2);
}

/* ---- BODYSTRUCTURE ------------------------------------------------- */

static const char *MIXED =
    "From: Ann <ann@example.org>\n"
    "To: bob@example.net\n"
    "Subject: report\n"
    "MIME-Version: 1.0\n"
    "Content-Type: multipart/mixed; boundary=\"=_outer\"\n"
    "Content-Language: en\n"
    "\n"
    "preamble\n"
    "--=_outer\n"
    "Content-Type: text/plain; charset=utf-8; format=flowed\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "\n"
    "Caf=C3=A9 au lait, =\n"
    "please.\n"
    "--=_outer\n"
    "Content-Type: application/pdf; name=\"report.pdf\"\n"
    "Content-Disposition: attachment; filename=\"report.pdf\"; size=12\n"
    "Content-Transfer-Encoding: base64\n"
    "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n"
    "Content-Language: en, de\n"
    "Content-Location: http://example.org/report.pdf\n"
    "Content-Description: The report\n"
    "\n"
    "JVBERi0xLjQK\n"
    "AAECAw==\n"
    "--=_outer\n"
    "Content-Type: text/plain\n"
    "Content-Disposition: inline\n"
    "\n"
    "bare\n"
    "--=_outer--\n"
    "epilogue\n";

static void test_mixed_attachment(void)
{
    msg m;
    REQUIRE_OK(msg_crlf(&m, MIXED));
    CHECK_STR(body_str(&m, true, false),
        "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\" \"FORMAT\" \"flowed\") NIL NIL"
        " \"QUOTED-PRINTABLE\" 29 2 NIL NIL NIL NIL)"
        "(\"APPLICATION\" \"PDF\" (\"NAME\" \"report.pdf\") NIL \"The report\""
        " \"BASE64\" 22 \"Q2hlY2sgSW50ZWdyaXR5IQ==\""
        " (\"ATTACHMENT\" (\"FILENAME\" \"report.pdf\" \"SIZE\" \"12\"))"
        " (\"en\" \"de\") \"http://example.org/report.pdf\")"
        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 4 1"
        " NIL (\"INLINE\" NIL) NIL NIL)"
        " \"MIXED\" (\"BOUNDARY\" \"=_outer\") NIL \"en\" NIL)");
    CHECK_STR(body_str(&m, false, false),
        "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\" \"FORMAT\" \"flowed\") NIL NIL"
        " \"QUOTED-PRINTABLE\" 29 2)"
        "(\"APPLICATION\" \"PDF\" (\"NAME\" \"report.pdf\") NIL \"The report\""
        " \"BASE64\" 22)"
        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 4 1)"
        " \"MIXED\")");
    /* Sections of it. */
    CHECK_FETCH(&m, "BODY[1]", "Caf=C3=A9 au lait, =\r\nplease.");
    CHECK_FETCH(&m, "BODY[1.MIME]",
        "Content-Type: text/plain; charset=utf-8; format=flowed\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
    CHECK_FETCH(&m, "BINARY[1]", "Caf\xc3\xa9 au lait, please.");
    CHECK(fetch_is(&m, "BINARY[2]", "%PDF-1.4\n\x00\x01\x02\x03", 13));
    CHECK_FETCH(&m, "BINARY[3]", "bare");
    CHECK_EQ(fetch_err(&m, "BINARY[]"), 0);
    CHECK_EQ(fetch_err(&m, "BINARY[4]"), -ENOENT);
    CHECK_EQ(fetch_err(&m, "BODY[1.HEADER]"), -EINVAL);  /* not a message */
    CHECK_EQ(fetch_err(&m, "BODY[1.TEXT]"), -EINVAL);
    msg_free(&m);
}

/* multipart/alternative inside mixed, a message/rfc822 with its own
 * multipart inside, and the RFC 9051 6.4.5.1 numbering. */
static const char *NESTED =
    "From: a@example.org\n"
    "Subject: nested\n"
    "Content-Type: multipart/mixed; boundary=b1\n"
    "\n"
    "--b1\n"
    "Content-Type: multipart/alternative; boundary=b2\n"
    "\n"
    "--b2\n"
    "Content-Type: text/plain; charset=us-ascii\n"
    "\n"
    "plain text\n"
    "--b2\n"
    "Content-Type: text/html; charset=us-ascii\n"
    "\n"
    "<p>html</p>\n"
    "--b2--\n"
    "--b1\n"
    "Content-Type: message/rfc822\n"
    "Content-Description: forwarded\n"
    "\n"
    "From: Carl <carl@example.com>\n"
    "To: undisclosed-recipients:;\n"
    "Subject: inner\n"
    "Date: Mon, 1 Jan 2024 10:00:00 +0000\n"
    "Message-ID: <inner@example.com>\n"
    "In-Reply-To: <outer@example.com>\n"
    "X-Folded: first\n"
    " second\n"
    "Content-Type: multipart/mixed; boundary=b3\n"
    "\n"
    "--b3\n"
    "Content-Type: text/plain\n"
    "\n"
    "inner text\n"
    "--b3\n"
    "Content-Type: image/gif\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    "R0lGODlh\n"
    "--b3--\n"
    "--b1--\n";

static void test_nested(void)
{
    msg m;
    REQUIRE_OK(msg_crlf(&m, NESTED));
    const char *inner_env =
        "(\"Mon, 1 Jan 2024 10:00:00 +0000\" \"inner\" "
        "((\"Carl\" NIL \"carl\" \"example.com\")) "
        "((\"Carl\" NIL \"carl\" \"example.com\")) "
        "((\"Carl\" NIL \"carl\" \"example.com\")) "
        "((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) "
        "NIL NIL \"<outer@example.com>\" \"<inner@example.com>\")";
    CHECK_STR(env_str(&m, 1, false), inner_env);
    char *want = cat(
        "(((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 10 1)"
        "(\"TEXT\" \"HTML\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 11 1)"
        " \"ALTERNATIVE\")"
        "(\"MESSAGE\" \"RFC822\" NIL NIL \"forwarded\" \"7BIT\" 384 ", inner_env,
        " ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 10 1)"
        "(\"IMAGE\" \"GIF\" NIL NIL NIL \"BASE64\" 8) \"MIXED\") 20)"
        " \"MIXED\")", NULL);
    CHECK_STR(body_str(&m, false, false), want);
    free(want);
    char *bs = body_str(&m, true, false);
    CHECK(strstr(bs, "\"ALTERNATIVE\" (\"BOUNDARY\" \"b2\") NIL NIL NIL)"));
    CHECK(strstr(bs, "(\"IMAGE\" \"GIF\" NIL NIL NIL \"BASE64\" 8 NIL NIL NIL NIL)"));
    CHECK(wellformed(bs, strlen(bs)));
    free(bs);

    /* Part numbers (RFC 9051 6.4.5.1). */
    CHECK_FETCH(&m, "BODY[1.1]", "plain text");
    CHECK_FETCH(&m, "BODY[1.2]", "<p>html</p>");
    CHECK_FETCH(&m, "BODY[1.2.MIME]",
                "Content-Type: text/html; charset=us-ascii\r\n\r\n");
    CHECK_FETCH(&m, "BODY[2.MIME]",
                "Content-Type: message/rfc822\r\n"
                "Content-Description: forwarded\r\n\r\n");
    char *inner = slice(&m, "From: Carl", "\r\n--b1--");
    CHECK_FETCH(&m, "BODY[2]", inner);
    char *inner_hdr = slice(&m, "From: Carl", "--b3\r\n");
    CHECK_FETCH(&m, "BODY[2.HEADER]", inner_hdr);
    char *inner_text = slice(&m, "--b3\r\n", "\r\n--b1--");
    CHECK_FETCH(&m, "BODY[2.TEXT]", inner_text);
    CHECK_FETCH(&m, "BODY[2.1]", "inner text");
    CHECK_FETCH(&m, "BODY[2.2]", "R0lGODlh");
    CHECK_FETCH(&m, "BINARY[2.2]", "GIF89a");
    CHECK_FETCH(&m, "BODY[2.2.MIME]",
                "Content-Type: image/gif\r\nContent-Transfer-Encoding: base64\r\n\r\n");
    CHECK_FETCH(&m, "BODY[2.HEADER.FIELDS (Subject X-FOLDED)]",
                "Subject: inner\r\nX-Folded: first\r\n second\r\n\r\n");
    CHECK_FETCH(&m, "BODY[2.HEADER.FIELDS.NOT (from to subject date "
                    "message-id in-reply-to content-type)]",
                "X-Folded: first\r\n second\r\n\r\n");
    CHECK_FETCH(&m, "BODY[HEADER.FIELDS (subject)]", "Subject: nested\r\n\r\n");
    CHECK_FETCH(&m, "BODY[HEADER.FIELDS (\"Subject\" x-none)]",
                "Subject: nested\r\n\r\n");
    CHECK_FETCH(&m, "BODY[HEADER.FIELDS (X-NONE)]", "\r\n");
    CHECK_EQ(fetch_err(&m, "BODY[1.HEADER]"), -EINVAL);  /* multipart */
    CHECK_EQ(fetch_err(&m, "BODY[3]"), -ENOENT);
    CHECK_EQ(fetch_err(&m, "BODY[2.3]"), -ENOENT);
    CHECK_EQ(fetch_err(&m, "BODY[1.1.1]"), -ENOENT);
    CHECK_EQ(fetch_err(&m, "BINARY[1]"), -EINVAL);     /* multipart */
    /* An embedded message has no encoding to undo: BINARY gives it as
     * it is, and BINARY.SIZE its length. */
    CHECK_FETCH(&m, "BINARY[2]", inner);
    imap_section s;
    imap_section_data d;
    REQUIRE_OK(imap_section_parse("BINARY.SIZE[2]", 14, &s));
    REQUIRE_OK(imap_section_fetch(&s, &m.c, m.raw, m.len, &d));
    CHECK_EQ(d.size, strlen(inner));
    imap_section_data_free(&d);
    imap_section_free(&s);
    /* Ranges tell the caller what to read. */
    uint64_t off, len;
    REQUIRE_OK(imap_section_parse("BODY[2.HEADER]", 14, &s));
    REQUIRE_OK(imap_section_range(&s, &m.c, &off, &len));
    CHECK_EQ(len, strlen(inner_hdr));
    CHECK(!memcmp(m.raw + off, inner_hdr, len));
    imap_section_free(&s);
    free(inner);
    free(inner_hdr);
    free(inner_text);
    msg_free(&m);
}

/* message/global: expanded for IMAP4rev2 / UTF8=ACCEPT, basic for rev1. */
static void test_message_global(void)
{
    msg m;
    REQUIRE_OK(msg_crlf(&m,
        "Content-Type: message/global\n"
        "\n"
        "Subject: x\n"
        "\n"
        "hi\n"));
    CHECK_STR(body_str(&m, false, false),
              "(\"MESSAGE\" \"GLOBAL\" NIL NIL NIL \"7BIT\" 18)");
    CHECK_STR(body_str(&m, false, true),
              "(\"MESSAGE\" \"GLOBAL\" NIL NIL NIL \"7BIT\" 18 "
              "(NIL \"x\" NIL NIL NIL NIL NIL NIL NIL NIL) "
              "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 4 1) 3)");
    CHECK_FETCH(&m, "BODY[1.HEADER]", "Subject: x\r\n\r\n");
    CHECK_FETCH(&m, "BODY[1.TEXT]", "hi\r\n");
    msg_free(&m);
}

/* ---- ENVELOPE ------------------------------------------------------ */

/* The envelope of a message with just these header lines. */
static char *env_of(const char *headers, bool utf8)
{
    msg m;
    char *raw = cat(headers, "\r\nbody\r\n", NULL);
    if (msg_raw(&m, raw, strlen(raw))) {
        free(raw);
        return strdup("<parse error>");
    }
    char *e = env_str(&m, 0, utf8);
    CHECK(wellformed(e, strlen(e)));
    msg_free(&m);
    free(raw);
    return e;
}

/* The "to" member rendered for a To: value. */
static char *to_of(const char *value)
{
    char *h = cat("To: ", value, "\r\n", NULL);
    char *e = env_of(h, true);
    free(h);
    /* (NIL NIL NIL NIL NIL <to> NIL NIL NIL NIL) */
    size_t n = strlen(e);
    const char *pre = "(NIL NIL NIL NIL NIL ", *post = " NIL NIL NIL NIL)";
    if (n < strlen(pre) + strlen(post) || strncmp(e, pre, strlen(pre)) ||
        strcmp(e + n - strlen(post), post))
        return e;
    char *r = strndup(e + strlen(pre), n - strlen(pre) - strlen(post));
    free(e);
    return r;
}

static void test_addresses(void)
{
    static const struct { const char *in, *out; } t[] = {
        { "a@b", "((NIL NIL \"a\" \"b\"))" },
        { "Ann <a@b.example>", "((\"Ann\" NIL \"a\" \"b.example\"))" },
        { "\"Doe, John\" <jd@x.org>", "((\"Doe, John\" NIL \"jd\" \"x.org\"))" },
        { "\"q\\\"uote\" <q@x>", "((\"q\\\"uote\" NIL \"q\" \"x\"))" },
        { "a@b (Ann Other)", "((\"Ann Other\" NIL \"a\" \"b\"))" },
        { "(Comment First) a@b", "((\"Comment First\" NIL \"a\" \"b\"))" },
        { "Ann (the boss) <a@b>", "((\"Ann\" NIL \"a\" \"b\"))" },
        { "John  Q.   Public <jqp@x>", "((\"John Q. Public\" NIL \"jqp\" \"x\"))" },
        { "undisclosed-recipients:;",
          "((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL))" },
        { "Friends: a@b, Bob <c@d>;, e@f",
          "((NIL NIL \"Friends\" NIL)(NIL NIL \"a\" \"b\")(\"Bob\" NIL \"c\" \"d\")"
          "(NIL NIL NIL NIL)(NIL NIL \"e\" \"f\"))" },
        { "Group: a@b", "((NIL NIL \"Group\" NIL)(NIL NIL \"a\" \"b\")(NIL NIL NIL NIL))" },
        { "Empty Group:;", "((NIL NIL \"Empty Group\" NIL)(NIL NIL NIL NIL))" },
        { "<@r1.example,@r2.example:user@host>",
          "((NIL \"@r1.example,@r2.example\" \"user\" \"host\"))" },
        { "=?utf-8?Q?J=C3=B6rg?= <j@x>", "((\"=?utf-8?Q?J=C3=B6rg?=\" NIL \"j\" \"x\"))" },
        { "\"J\xc3\xb6rg\" <j@x>", "((\"J\xc3\xb6rg\" NIL \"j\" \"x\"))" },
        { "user", "((NIL NIL \"user\" \"\"))" },
        { "<user>", "((NIL NIL \"user\" \"\"))" },
        { "\"john q\"@example.com", "((NIL NIL \"john q\" \"example.com\"))" },
        { "Ann <a@b", "((\"Ann\" NIL \"a\" \"b\"))" },
        { "a@b, , c@d,", "((NIL NIL \"a\" \"b\")(NIL NIL \"c\" \"d\"))" },
        { "a@b c@d", "((NIL NIL \"a\" \"b\")(NIL NIL \"c\" \"d\"))" },
        { "<>", "NIL" },
        { "Name <>", "((\"Name\" NIL \"\" \"\"))" },
        { "a@[192.0.2.1]", "((NIL NIL \"a\" \"[192.0.2.1]\"))" },
        { "", "NIL" },
        { "   ", "NIL" },
        { ",,;", "NIL" },
        { "\"\" <a@b>", "((NIL NIL \"a\" \"b\"))" },
        { "\"unterminated <a@b>", "((NIL NIL \"unterminated <a@b>\" \"\"))" },
        { "Ann <a@b> (unterminated", "((\"Ann\" NIL \"a\" \"b\"))" },
        { "a@b. c", "((NIL NIL \"a\" \"b.c\"))" },
        /* RFC 5322 appendix A. */
        { "Mary Smith <@node.test:mary@example.net>",
          "((\"Mary Smith\" \"@node.test\" \"mary\" \"example.net\"))" },
        { "Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>",
          "((\"Pete\" NIL \"pete\" \"silly.test\"))" },
        { "A Group(Some people)\r\n     :Chris Jones <c@(Chris's host.)public.example>,"
          "\r\n         joe@example.org,\r\n  John <jdoe@one.test> (my dear friend);"
          " (the end of the group)",
          "((NIL NIL \"A Group\" NIL)(\"Chris Jones\" NIL \"c\" \"public.example\")"
          "(NIL NIL \"joe\" \"example.org\")(\"John\" NIL \"jdoe\" \"one.test\")"
          "(NIL NIL NIL NIL))" },
        { "\"Giant; \\\"Big\\\" Box\" <sysservices@example.net>",
          "((\"Giant; \\\"Big\\\" Box\" NIL \"sysservices\" \"example.net\"))" },
        { "jdoe@machine(comment).  example",
          "((\"comment\" NIL \"jdoe\" \"machine.example\"))" },
        /* a comment inside "<...>" is CFWS of the addr-spec, no name */
        { "<user-from (comment)@ (comment) domain.org>",
          "((NIL NIL \"user-from\" \"domain.org\"))" },
        { "(Ann) <a (x)@b>", "((\"Ann\" NIL \"a\" \"b\"))" },
        { "<a@b> (after)", "((\"after\" NIL \"a\" \"b\"))" },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char *got = to_of(t[i].in);
        if (strcmp(got, t[i].out))
            fprintf(stderr, "  To: [%s]\n", t[i].in);
        CHECK_STR(got, t[i].out);
    }
    /* Garbage never breaks the output. */
    static const char *junk[] = {
        "<<>>,@,;:\"", "(((", ")))", "\\", "@", ":", ";", ">", "<", "a:b:c;d;",
        "\"a\\", "[", "a@[", "G: (x) <", "<@a,@b:", "<@", "x <y@z> <w@v>",
        "a@b@c", ":;:;", "G:a@b:c@d;", "\x01\x02\x7f\xff",
    };
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++)
        free(to_of(junk[i]));

    /* The same addresses as SEARCH's text: comments gone. */
    static const struct { const char *in, *out; } txt[] = {
        { "<user-from (comment)@ (comment) domain.org>", "<user-from@domain.org>, " },
        { "Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>",
          "Pete <pete@silly.test>, " },
        { "\"Doe, John\" <jd@x.org>, a@b (Ann)", "Doe, John <jd@x.org>, Ann <a@b>, " },
        { "Friends: a@b, Bob <c@d>;", "Friends: <a@b>, Bob <c@d>, ; " },
        { "user", "<user>, " },
        { "", "" },
    };
    for (size_t i = 0; i < sizeof txt / sizeof txt[0]; i++) {
        imap_out o = {0};
        store_str v = { txt[i].in, (uint32_t)strlen(txt[i].in) };
        CHECK_EQ(imap_render_address_text(&o, v), 0);
        bool same = o.len == strlen(txt[i].out) && (!o.len || !memcmp(o.p, txt[i].out, o.len));
        if (!same)
            fprintf(stderr, "  [%s] -> [%.*s]\n", txt[i].in, (int)o.len, o.p ? o.p : "");
        CHECK(same);
        imap_out_free(&o);
    }
}

/* The envelope rendered at append and kept in the blob must be exactly
 * what rendering at fetch time gives, for clients with and without
 * UTF8=ACCEPT; it is kept only when both would get the same text (7-bit,
 * no literal).  Every case is rendered live first (no hook registered). */
static void test_prerendered(void)
{
    static const char *const heads[] = {
        "From: Ann <a@b.example>\r\nTo: x@y, \"Doe, John\" <jd@x.org>\r\n"
        "Subject: plain ASCII \\ \"quoted\"\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
        "Message-ID: <1@x>\r\nIn-Reply-To: <0@x>\r\nCc: Group: a@b, c@d;\r\n",
        "Subject: =?utf-8?Q?J=C3=B6rg?=\r\n",
        "From: \"J\xc3\xb6rg\" <j@x>\r\nSubject: caf\xc3\xa9\r\n",
        "Subject: bad \xff byte\r\n",
        "Subject: has a\x01control\r\n",
        "Sender: s@x\r\nReply-To: r@x\r\n",
        "",
    };
    for (size_t i = 0; i < sizeof heads / sizeof *heads; i++) {
        char *raw = cat(heads[i], "\r\nbody\r\n", NULL);
        msg live, pre;
        store_msg_set_renderer(NULL);
        REQUIRE_OK(msg_raw(&live, raw, strlen(raw)));
        CHECK(store_cache_envelope_text(&live.c).p == NULL);
        store_msg_set_renderer(imap_envelope_prerender);
        REQUIRE_OK(msg_raw(&pre, raw, strlen(raw)));
        store_msg_set_renderer(NULL);
        bool eight = false;
        for (const char *p = heads[i]; *p; p++)
            eight |= (unsigned char)*p >= 0x80;
        /* 7-bit headers are kept rendered; 8-bit ones are rendered live. */
        CHECK(!store_cache_envelope_text(&pre.c).p == eight);
        for (int u = 0; u < 2; u++) {
            char *want = env_str(&live, 0, u);
            CHECK_STR(env_str(&pre, 0, u), want);
            free(want);
        }
        msg_free(&live);
        msg_free(&pre);
        free(raw);
    }
}

static void test_envelope_defaults(void)
{
    /* Nothing at all. */
    CHECK_STR(env_of("", false), "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
    /* Present but empty strings are "", empty address lists NIL. */
    CHECK_STR(env_of("Subject:\r\nDate: \r\nTo:\r\nMessage-ID:\r\n", false),
              "(\"\" \"\" NIL NIL NIL NIL NIL NIL NIL \"\")");
    /* Sender and Reply-To default to From, also when empty. */
    CHECK_STR(env_of("From: a@b\r\nSender:\r\n", false),
              "(NIL NIL ((NIL NIL \"a\" \"b\")) ((NIL NIL \"a\" \"b\")) "
              "((NIL NIL \"a\" \"b\")) NIL NIL NIL NIL NIL)");
    CHECK_STR(env_of("From: a@b\r\nSender: s@b\r\nReply-To: r@b\r\n"
                     "Bcc: x@y\r\nCc: Z <z@y>\r\n", false),
              "(NIL NIL ((NIL NIL \"a\" \"b\")) ((NIL NIL \"s\" \"b\")) "
              "((NIL NIL \"r\" \"b\")) NIL ((\"Z\" NIL \"z\" \"y\")) "
              "((NIL NIL \"x\" \"y\")) NIL NIL)");
    /* A group-only Sender is not empty. */
    CHECK_STR(env_of("From: a@b\r\nSender: g:;\r\n", false),
              "(NIL NIL ((NIL NIL \"a\" \"b\")) "
              "((NIL NIL \"g\" NIL)(NIL NIL NIL NIL)) "
              "((NIL NIL \"a\" \"b\")) NIL NIL NIL NIL NIL)");
    /* Folded values are unfolded; encoded words stay; 8-bit depends on
     * utf8; first occurrence wins. */
    CHECK_STR(env_of("Subject: =?iso-8859-1?q?caf=e9?=\r\n  and more\r\n"
                     "Subject: second\r\n", false),
              "(NIL \"=?iso-8859-1?q?caf=e9?=  and more\" NIL NIL NIL NIL NIL "
              "NIL NIL NIL)");
    CHECK_STR(env_of("Subject: caf\xc3\xa9\r\n", true),
              "(NIL \"caf\xc3\xa9\" NIL NIL NIL NIL NIL NIL NIL NIL)");
    CHECK_STR(env_of("Subject: caf\xc3\xa9\r\n", false),
              "(NIL {5}\r\ncaf\xc3\xa9 NIL NIL NIL NIL NIL NIL NIL NIL)");
    /* A NUL in a header cannot travel in an IMAP string. */
    msg m;
    static const char nul[] = "Subject: a\0b\r\n\r\nx";
    REQUIRE_OK(msg_raw(&m, nul, sizeof nul - 1));
    CHECK_STR(env_str(&m, 0, false),
              "(NIL \"a b\" NIL NIL NIL NIL NIL NIL NIL NIL)");
    imap_out o = { 0 };
    CHECK_EQ(imap_render_envelope(&o, &m.c, 1, false), -ERANGE);
    imap_out_free(&o);
    msg_free(&m);
}

static void test_body_defaults(void)
{
    msg m;
    /* No header: text/plain us-ascii 7bit. */
    REQUIRE_OK(msg_crlf(&m, "\nline one\nline two"));
    CHECK_STR(body_str(&m, true, false),
              "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 18 2"
              " NIL NIL NIL NIL)");
    msg_free(&m);
    /* Odd values: encoding case and blanks, a parameterless type. */
    REQUIRE_OK(msg_crlf(&m,
        "Content-Type: Application/X-Thing\n"
        "Content-Transfer-Encoding:  Base64 (six bits)\n"
        "Content-ID: <id@x>\n"
        "Content-Disposition: ATTACHMENT\n"
        "\n"
        "AAAA\n"));
    CHECK_STR(body_str(&m, true, false),
              "(\"APPLICATION\" \"X-THING\" NIL \"<id@x>\" NIL \"BASE64\" 6"
              " NIL (\"ATTACHMENT\" NIL) NIL NIL)");
    CHECK(fetch_is(&m, "BINARY[1]", "\0\0\0", 3));
    CHECK(fetch_is(&m, "BINARY[]", m.raw, m.len));
    msg_free(&m);
}

/* ---- sections: parsing and echo ------------------------------------ */

static void test_section_parse(void)
{
    static const struct { const char *in, *echo; } good[] = {
        { "BODY[]", "BODY[]" },
        { "body.peek[]", "BODY[]" },
        { "BODY[HEADER]", "BODY[HEADER]" },
        { "BODY[header.fields (From To)]", "BODY[HEADER.FIELDS (From To)]" },
        { "BODY[HEADER.FIELDS.NOT (X)]", "BODY[HEADER.FIELDS.NOT (X)]" },
        { "BODY[HEADER.FIELDS (\"Sub ject\" \"a\\\\b\" \"\")]",
          "BODY[HEADER.FIELDS (\"Sub ject\" \"a\\\\b\" \"\")]" },
        { "BODY[HEADER.FIELDS  ( A   B )]", "BODY[HEADER.FIELDS (A B)]" },
        { "BODY[TEXT]", "BODY[TEXT]" },
        { "BODY[1]", "BODY[1]" },
        { "BODY[1.2.HEADER]", "BODY[1.2.HEADER]" },
        { "BODY[2.MIME]", "BODY[2.MIME]" },
        { "BODY[3.TEXT]", "BODY[3.TEXT]" },
        { "BODY[4.2.HEADER.FIELDS (A)]", "BODY[4.2.HEADER.FIELDS (A)]" },
        { "BODY[]<0.2048>", "BODY[]<0>" },
        { "BODY.PEEK[1.2]<100.5>", "BODY[1.2]<100>" },
        { "BINARY[1.2]", "BINARY[1.2]" },
        { "binary.peek[1]<7.1>", "BINARY[1]<7>" },
        { "BINARY[]", "BINARY[]" },
        { "BINARY.SIZE[3]", "BINARY.SIZE[3]" },
        { "RFC822", "RFC822" },
        { "rfc822.header", "RFC822.HEADER" },
        { "RFC822.TEXT", "RFC822.TEXT" },
        { "BODY[4294967295]", "BODY[4294967295]" },
        { "BODY[]<9223372036854775807.1>", "BODY[]<9223372036854775807>" },
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CHECK_STR(echo_str(good[i].in), good[i].echo);

    static const char *bad[] = {
        "BODY", "BODY[", "BODY]", "BODY[MIME]", "BODY[0]", "BODY[01]",
        "BODY[1.]", "BODY[.1]", "BODY[1..2]", "BODY[1HEADER]", "BODY[HEADERS]",
        "BODY[HEADER.FIELDS]", "BODY[HEADER.FIELDS ()]", "BODY[HEADER.FIELDS (A]",
        "BODY[HEADER.FIELDS A]", "BODY[HEADER.FIELDS ({1}\r\nA)]",
        "BODY[HEADER.FIELDS (\"A)]", "BODY[HEADER.FIELDS (A\"B\")]",
        "BODY[TEXT.MIME]", "BODY[1.MIME.TEXT]", "BODY[4294967296]",
        "BODY[]<>", "BODY[]<1>", "BODY[]<1.0>", "BODY[]<1.2", "BODY[]<1.2>x",
        "BODY[]<a.2>", "BODY[]<9223372036854775808.1>", "BODY[] ",
        "BINARY[HEADER]", "BINARY[1.MIME]", "BINARY[1.TEXT]",
        "BINARY.SIZE[1]<0.1>", "BINARY.SIZE", "BINARY.PEEK", "RFC822.SIZE",
        "RFC822.PEEK", "BODYSTRUCTURE", "ENVELOPE", "BODY.PEEK[X]", "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        imap_section s;
        int r = imap_section_parse(bad[i], strlen(bad[i]), &s);
        if (r != -EINVAL)
            fprintf(stderr, "  accepted bad section %s (%d)\n", bad[i], r);
        CHECK_EQ(r, -EINVAL);
    }
    /* Depth limit. */
    char deep[400] = "BODY[";
    for (int i = 0; i < IMAP_SECTION_MAX_PATH + 1; i++)
        strcat(deep, i ? ".1" : "1");
    strcat(deep, "]");
    imap_section s;
    CHECK_EQ(imap_section_parse(deep, strlen(deep), &s), -E2BIG);
    deep[strlen(deep) - 3] = ']';
    deep[strlen(deep) - 2] = 0;
    REQUIRE_OK(imap_section_parse(deep, strlen(deep), &s));
    CHECK_EQ(s.npath, IMAP_SECTION_MAX_PATH);
    imap_section_free(&s);

    /* Flags. */
    REQUIRE_OK(imap_section_parse("BODY.PEEK[1]", 12, &s));
    CHECK(s.peek && s.item == IMAP_ITEM_BODY && s.npath == 1 && s.path[0] == 1);
    imap_section_free(&s);
    REQUIRE_OK(imap_section_parse("BODY[HEADER.FIELDS (A \"b c\")]<1.2>", 34, &s));
    CHECK(!s.peek && s.text == IMAP_SECTION_HEADER_FIELDS && s.nfields == 2);
    CHECK(s.partial && s.origin == 1 && s.count == 2);
    CHECK(s.fields[1].len == 3 && !memcmp(s.fields[1].p, "b c", 3));
    imap_section_free(&s);
    REQUIRE_OK(imap_section_parse("BINARY.SIZE[1]", 14, &s));
    CHECK(s.peek && s.item == IMAP_ITEM_BINARY_SIZE);
    imap_section_free(&s);
    REQUIRE_OK(imap_section_parse("RFC822.HEADER", 13, &s));
    CHECK(s.peek && s.legacy == IMAP_LEGACY_RFC822_HEADER &&
          s.text == IMAP_SECTION_HEADER);
    imap_section_free(&s);
    REQUIRE_OK(imap_section_parse("RFC822", 6, &s));
    CHECK(!s.peek);
    imap_section_free(&s);
}

/* ---- sections: bytes ----------------------------------------------- */

static void test_partials(void)
{
    msg m;
    REQUIRE_OK(msg_crlf(&m, "Subject: s\nX-A: 1\n\n0123456789"));
    CHECK_FETCH(&m, "BODY[TEXT]<0.4>", "0123");
    CHECK_FETCH(&m, "BODY[TEXT]<4.3>", "456");
    CHECK_FETCH(&m, "BODY[TEXT]<8.100>", "89");       /* truncated */
    CHECK_FETCH(&m, "BODY[TEXT]<10.1>", "");          /* at the end */
    CHECK_FETCH(&m, "BODY[TEXT]<9999.5>", "");        /* past the end */
    CHECK(fetch_is(&m, "BODY[]<0.2048>", m.raw, m.len));  /* BODY[]<0> */
    CHECK_FETCH(&m, "BODY[]<9223372036854775807.9223372036854775807>", "");
    /* After subsetting (RFC 9051 6.4.5 note). */
    CHECK_FETCH(&m, "BODY[HEADER.FIELDS (X-A)]", "X-A: 1\r\n\r\n");
    CHECK_FETCH(&m, "BODY[HEADER.FIELDS (X-A)]<2.3>", "A: ");
    CHECK_FETCH(&m, "BODY[HEADER.FIELDS (X-A)]<6.10>", "\r\n\r\n");
    /* Sizes are reported before the partial. */
    imap_section s;
    imap_section_data d;
    REQUIRE_OK(imap_section_parse("BODY[TEXT]<2.3>", 15, &s));
    REQUIRE_OK(imap_section_fetch(&s, &m.c, m.raw, m.len, &d));
    CHECK_EQ(d.size, 10);
    CHECK_EQ(d.len, 3);
    CHECK(d.buf.data == NULL);      /* zero-copy */
    CHECK(d.p == m.raw + m.len - 8);
    imap_section_data_free(&d);
    /* Only the header was given: HEADER still works, TEXT is clipped. */
    REQUIRE_OK(imap_section_fetch(&s, &m.c, m.raw, 20, &d));
    CHECK_EQ(d.len, 0);
    imap_section_data_free(&d);
    imap_section_free(&s);
    msg_free(&m);

    /* A message without body and without blank line: no blank line in any
     * header fetch. */
    REQUIRE_OK(msg_crlf(&m, "Subject: only\nX-B: 2"));
    CHECK_FETCH(&m, "BODY[HEADER]", "Subject: only\r\nX-B: 2");
    CHECK_FETCH(&m, "BODY[HEADER.FIELDS (SUBJECT)]", "Subject: only\r\n");
    CHECK_FETCH(&m, "BODY[HEADER.FIELDS (x-b)]", "X-B: 2");
    CHECK_FETCH(&m, "BODY[TEXT]", "");
    msg_free(&m);

    /* HEADER.FIELDS: repeated fields all kept in order, folded lines whole,
     * names matched exactly (no prefix), "Name :" accepted, non-field lines
     * in neither subset; LF-only messages keep their line ends. */
    REQUIRE_OK(msg_raw(&m,
        "Received: one\n"
        "\tfolded\n"
        "Subject : spaced\n"
        "junk line without colon\n"
        "Received: two\n"
        "Received-SPF: pass\n"
        "\n"
        "body", 98));
    CHECK_FETCH(&m, "BODY[HEADER.FIELDS (RECEIVED)]",
                "Received: one\n\tfolded\nReceived: two\n\n");
    CHECK_FETCH(&m, "BODY[HEADER.FIELDS (subject)]", "Subject : spaced\n\n");
    CHECK_FETCH(&m, "BODY[HEADER.FIELDS.NOT (received)]",
                "Subject : spaced\nReceived-SPF: pass\n\n");
    msg_free(&m);
}

/* ---- BINARY -------------------------------------------------------- */

static const char *BIN =
    "Content-Type: multipart/mixed; boundary=x\n"
    "\n"
    "--x\n"
    "Content-Type: text/plain; charset=iso-8859-1\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    "Q2Fm6SBhdSBsYWl0Cmxp\n"
    "Z25lIDIK\n"
    "--x\n"
    "Content-Type: application/octet-stream\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "\n"
    "a=00b=3D=\n"
    "c=ZZ d  \n"
    "e\n"
    "--x\n"
    "Content-Type: application/x-uue\n"
    "Content-Transfer-Encoding: x-uuencode\n"
    "\n"
    "begin 644 f\n"
    "--x\n"
    "Content-Type: text/plain\n"
    "Content-Transfer-Encoding: 8bit\n"
    "\n"
    "8bit \xc3\xa9 text\n"
    "--x--\n";

static void test_binary(void)
{
    msg m;
    REQUIRE_OK(msg_crlf(&m, BIN));
    /* base64 text with LF line ends inside: CRLF on the way out. */
    CHECK(fetch_is(&m, "BINARY[1]", "Caf\xe9 au lait\r\nligne 2\r\n", 23));
    CHECK(fetch_is(&m, "BINARY.PEEK[1]<3.2>", "\xe9 ", 2));
    /* quoted-printable: NUL, =3D, soft break, bad escape kept, trailing
     * blanks dropped. */
    CHECK(fetch_is(&m, "BINARY[2]", "a\0b=c=ZZ d\r\ne", 13));
    CHECK_EQ(fetch_err(&m, "BINARY[3]"), -ENOTSUP);
    CHECK_EQ(fetch_err(&m, "BINARY.SIZE[3]"), -ENOTSUP);
    CHECK_FETCH(&m, "BODY[3]", "begin 644 f");        /* BODY is fine */
    CHECK_FETCH(&m, "BINARY[4]", "8bit \xc3\xa9 text");

    static const struct { const char *att; uint64_t size; bool nul; } t[] = {
        { "BINARY.SIZE[1]", 23, false }, { "BINARY.SIZE[2]", 13, false },
        { "BINARY.SIZE[4]", 12, false }, { "BINARY[2]", 13, true },
        { "BINARY[1]", 23, false }, { "BINARY[2]<2.5>", 13, false },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        imap_section s;
        imap_section_data d;
        REQUIRE_OK(imap_section_parse(t[i].att, strlen(t[i].att), &s));
        REQUIRE_OK(imap_section_fetch(&s, &m.c, m.raw, m.len, &d));
        CHECK_EQ(d.size, t[i].size);
        CHECK_EQ(d.nul, t[i].nul);
        if (s.item == IMAP_ITEM_BINARY_SIZE)
            CHECK(d.p == NULL && d.len == 0 && d.buf.data == NULL);
        imap_section_data_free(&d);
        imap_section_free(&s);
    }
    msg_free(&m);

    /* Identity text with bare LF: converted (and sized) with CRLF;
     * identity binary: zero-copy, unchanged. */
    REQUIRE_OK(msg_raw(&m,
        "Content-Type: multipart/mixed; boundary=y\r\n\r\n"
        "--y\r\nContent-Type: text/plain\r\n\r\na\nb\r\nc\n\r\n"
        "--y\r\nContent-Type: image/x\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        "a\nb\0\r\n--y--\r\n", 165));
    CHECK_FETCH(&m, "BINARY[1]", "a\r\nb\r\nc\r\n");
    CHECK_FETCH(&m, "BODY[1]", "a\nb\r\nc\n");
    CHECK(fetch_is(&m, "BINARY[2]", "a\nb\0", 4));
    imap_section s;
    imap_section_data d;
    REQUIRE_OK(imap_section_parse("BINARY.SIZE[1]", 14, &s));
    REQUIRE_OK(imap_section_fetch(&s, &m.c, m.raw, m.len, &d));
    CHECK_EQ(d.size, 9);
    imap_section_free(&s);
    REQUIRE_OK(imap_section_parse("BINARY[2]", 9, &s));
    REQUIRE_OK(imap_section_fetch(&s, &m.c, m.raw, m.len, &d));
    CHECK(d.buf.data == NULL && d.nul && d.p > m.raw && d.p < m.raw + m.len);
    imap_section_data_free(&d);
    imap_section_free(&s);
    msg_free(&m);
}

/* ---- mime_encode: binary parts of an APPEND as base64 ------------- */

static void test_binary_to_base64(void)
{
    /* 100 octets with NULs: two lines of 76 characters and one of 32 */
    char data[100];
    for (int i = 0; i < 100; i++)
        data[i] = (char)(i * 7);
    store_buf b = {0};
    REQUIRE_OK(mime_encode_base64(data, sizeof data, &b));
    CHECK_EQ(b.len, 76 + 2 + 60);
    CHECK(!memcmp(b.data + 76, "\r\n", 2) && !memchr(b.data + 78, '\n', b.len - 78));
    store_buf d = {0};
    REQUIRE_OK(mime_decode_base64((const char *)b.data, b.len, &d));
    CHECK(d.len == sizeof data && !memcmp(d.data, data, sizeof data));
    free(d.data);
    b.len = 0;
    REQUIRE_OK(mime_encode_base64("ab", 2, &b));
    CHECK(b.len == 4 && !memcmp(b.data, "YWI=", 4));
    free(b.data);

    /* Only the part holding a NUL changes: its (folded) CTE field goes,
     * base64 comes, and the boundary's CRLF stays where it was. */
    static const char raw[] =
        "Subject: bin\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n"
        "--z\r\nContent-Type: text/plain\r\n\r\nplain \xff text\r\n"
        "--z\r\nContent-Type: application/x-data\r\ncontent-transfer-encoding :\r\n"
        " binary\r\nX-After: kept\r\n\r\n\x00\x01" "ab\n\r\n"
        "--z--\r\n";
    store_buf out = {0};
    size_t nconv;
    REQUIRE_OK(mime_binary_to_base64(raw, sizeof raw - 1, &out, &nconv));
    CHECK_EQ(nconv, 1);
    static const char want[] =
        "Subject: bin\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n"
        "--z\r\nContent-Type: text/plain\r\n\r\nplain \xff text\r\n"
        "--z\r\nContent-Type: application/x-data\r\nX-After: kept\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\nAAFhYgo=\r\n"
        "--z--\r\n";
    CHECK(out.len == sizeof want - 1 && !memcmp(out.data, want, out.len));
    if (out.len != sizeof want - 1 || memcmp(out.data, want, out.len))
        fprintf(stderr, "  got %.*s\n", (int)out.len, (const char *)out.data);
    /* what the store parses back: BINARY[2] is the data again */
    msg m;
    REQUIRE_OK(msg_raw(&m, (const char *)out.data, out.len));
    CHECK(fetch_is(&m, "BINARY[2]", "\x00\x01" "ab\n", 5));
    CHECK_FETCH(&m, "BODY[2]", "AAFhYgo=");
    msg_free(&m);

    /* A single-part message: its body ends the message, with a CRLF. */
    out.len = 0;
    REQUIRE_OK(mime_binary_to_base64("Subject: x\r\n\r\na\0b", 17, &out, &nconv));
    static const char one[] = "Subject: x\r\nContent-Transfer-Encoding: base64\r\n\r\nYQBi\r\n";
    CHECK(nconv == 1 && out.len == sizeof one - 1 && !memcmp(out.data, one, out.len));
    /* Nothing to do: an exact copy. */
    out.len = 0;
    REQUIRE_OK(mime_binary_to_base64("Subject: x\r\n\r\nab\xff", 17, &out, &nconv));
    CHECK(nconv == 0 && out.len == 17 && !memcmp(out.data, "Subject: x\r\n\r\nab\xff", 17));
    free(out.data);
}

/* ---- mime_decode --------------------------------------------------- */

static char *dec(int (*fn)(const char *, size_t, store_buf *), const char *in,
                 size_t *len)
{
    store_buf b = { 0 };
    if (fn(in, strlen(in), &b)) {
        *len = 7;
        return strdup("<error>");
    }
    store_buf_append(&b, "", 1);
    *len = b.len - 1;
    return (char *)b.data;
}

static void check_dec(int (*fn)(const char *, size_t, store_buf *),
                      const char *in, const char *want, size_t wantlen)
{
    size_t n = 0;
    char *got = dec(fn, in, &n);
    CHECK(streq_report(in, got, n, want, wantlen));
    free(got);
}

#define DEC(fn, in, want) check_dec(fn, in, want, sizeof(want) - 1)

static void test_base64_qp(void)
{
    DEC(mime_decode_base64, "", "");
    DEC(mime_decode_base64, "aGVsbG8=", "hello");
    DEC(mime_decode_base64, "aGVs\r\nbG8", "hello");          /* no padding */
    DEC(mime_decode_base64, " a G V s b G 8 = \r\n", "hello");
    DEC(mime_decode_base64, "aGk=aGk=", "hihi");              /* concatenated */
    DEC(mime_decode_base64, "aA==", "h");
    DEC(mime_decode_base64, "aGVs*!#bG8", "hello");             /* junk skipped */
    DEC(mime_decode_base64, "a", "");                         /* lone sextet */
    DEC(mime_decode_base64, "AAEC/w==", "\x00\x01\x02\xff");
    DEC(mime_decode_base64, "-_", "");                        /* not base64url */

    DEC(mime_decode_qp, "", "");
    DEC(mime_decode_qp, "a=3Db", "a=b");
    DEC(mime_decode_qp, "a=3db=C3=A9", "a=b\xc3\xa9");        /* lower case hex */
    DEC(mime_decode_qp, "soft=\r\nbreak", "softbreak");
    DEC(mime_decode_qp, "soft=  \r\nbreak", "softbreak");     /* blanks after = */
    DEC(mime_decode_qp, "soft=\nbreak", "softbreak");
    DEC(mime_decode_qp, "trail  \r\nnext\t\r\n", "trail\r\nnext\r\n");
    DEC(mime_decode_qp, "lf\nonly\n", "lf\nonly\n");
    DEC(mime_decode_qp, "bad=G1 =4", "bad=G1 =4");
    DEC(mime_decode_qp, "end=", "end");
    DEC(mime_decode_qp, "=\r\n=\r\n", "");
    DEC(mime_decode_qp, "==41", "=A");
    DEC(mime_decode_qp, "x=0", "x=0");

    CHECK_EQ(mime_cte_parse((store_str){ NULL, 0 }), MIME_CTE_7BIT);
    CHECK_EQ(mime_cte_parse(mime_str("")), MIME_CTE_7BIT);
    CHECK_EQ(mime_cte_parse(mime_str(" Base64 (comment)")), MIME_CTE_BASE64);
    CHECK_EQ(mime_cte_parse(mime_str("QUOTED-PRINTABLE")), MIME_CTE_QP);
    CHECK_EQ(mime_cte_parse(mime_str("8Bit")), MIME_CTE_8BIT);
    CHECK_EQ(mime_cte_parse(mime_str("binary")), MIME_CTE_BINARY);
    CHECK_EQ(mime_cte_parse(mime_str("x-uuencode")), MIME_CTE_UNKNOWN);
    CHECK_EQ(mime_cte_parse(mime_str("base64x")), MIME_CTE_UNKNOWN);

    store_buf b = { 0 };
    store_buf_append(&b, "keep", 4);
    CHECK_EQ(mime_decode_transfer(mime_str("x-uuencode"), "abc", 3, &b), -ENOTSUP);
    CHECK_EQ(b.len, 4);
    REQUIRE_OK(mime_decode_transfer(mime_str("base64"), "aGk=", 4, &b));
    REQUIRE_OK(mime_decode_transfer(mime_str(NULL), "!", 1, &b));
    CHECK(b.len == 7 && !memcmp(b.data, "keephi!", 7));
    uint64_t size = 0;
    REQUIRE_OK(mime_decode_binary(mime_str("base64"), "YQpiCg==", 8, true, NULL,
                                  &size));
    CHECK_EQ(size, 6);      /* "a\r\nb\r\n" */
    free(b.data);
}

static void test_charsets(void)
{
    store_buf b = { 0 };
    REQUIRE_OK(mime_to_utf8(mime_str("ISO-8859-1"), "caf\xe9", 4, &b));
    CHECK(b.len == 5 && !memcmp(b.data, "caf\xc3\xa9", 5));
    b.len = 0;
    REQUIRE_OK(mime_to_utf8(mime_str("\"windows-1252\""), "\x80 \x93q\x94", 5, &b));
    CHECK(streq_report("cp1252", (char *)b.data, b.len,
                       "\xe2\x82\xac \xe2\x80\x9cq\xe2\x80\x9d", 11));
    b.len = 0;
    /* Invalid UTF-8 in a UTF-8 part: U+FFFD per bad byte. */
    REQUIRE_OK(mime_to_utf8(mime_str("utf-8"), "a\xff\xc3\xa9\xc3", 5, &b));
    CHECK(streq_report("utf8", (char *)b.data, b.len,
                       "a\xef\xbf\xbd\xc3\xa9\xef\xbf\xbd", 9));
    b.len = 0;
    /* Unknown charset: like UTF-8.  Hostile names never reach iconv. */
    REQUIRE_OK(mime_to_utf8(mime_str("x-no-such-charset"), "ok \xe9", 4, &b));
    CHECK(streq_report("unknown", (char *)b.data, b.len, "ok \xef\xbf\xbd", 6));
    CHECK(!mime_charset_known(mime_str("utf-8//TRANSLIT")));
    CHECK(!mime_charset_known(mime_str("x-no-such-charset")));
    CHECK(mime_charset_known(mime_str("KOI8-R")));
    CHECK(mime_charset_known(mime_str(NULL)));
    b.len = 0;
    /* Truncated multibyte input in a stateful/multibyte charset. */
    REQUIRE_OK(mime_to_utf8(mime_str("shift_jis"), "\x82\xa0\x82", 3, &b));
    CHECK(streq_report("sjis", (char *)b.data, b.len,
                       "\xe3\x81\x82\xef\xbf\xbd", 6));
    b.len = 0;
    REQUIRE_OK(mime_to_utf8(mime_str("ISO-2022-JP"),
                            "\x1b$B$\"\x1b(B!", 9, &b));
    CHECK(streq_report("iso-2022-jp", (char *)b.data, b.len, "\xe3\x81\x82!", 4));
    b.len = 0;
    /* A UTF-8 label in another spelling goes through iconv, whose UTF-8
     * decoder passes sequences above U+10FFFF: the output is still
     * valid UTF-8 (found by fuzz_message). */
    REQUIRE_OK(mime_to_utf8(mime_str("utf-8("), "\xf7\x8a\xae\xa2z", 5, &b));
    CHECK(store_utf8_valid((char *)b.data, b.len));
    CHECK(b.len >= 1 && b.data[b.len - 1] == 'z');
    b.len = 0;
    REQUIRE_OK(mime_decode_header("=?utf8(?b?94quot?=", 18, &b));
    CHECK(store_utf8_valid((char *)b.data, b.len));
    CHECK(store_utf8_valid("caf\xc3\xa9", 5));
    CHECK(!store_utf8_valid("\xc0\xaf", 2));                 /* overlong */
    CHECK(!store_utf8_valid("\xed\xa0\x80", 3));             /* surrogate */
    CHECK(!store_utf8_valid("\xf4\x90\x80\x80", 4));         /* > U+10FFFF */
    free(b.data);
}

static void test_rfc2047(void)
{
    DEC(mime_decode_header, "plain text", "plain text");
    DEC(mime_decode_header, "=?UTF-8?B?Q2Fmw6k=?=", "Caf\xc3\xa9");
    DEC(mime_decode_header, "=?utf-8?q?Caf=C3=A9?=", "Caf\xc3\xa9");
    DEC(mime_decode_header, "=?ISO-8859-1?Q?Andr=E9?= Pirard",
        "Andr\xc3\xa9 Pirard");
    DEC(mime_decode_header, "=?iso-8859-1?q?this_is_some_text?=",
        "this is some text");
    /* RFC 2047 section 8 examples. */
    DEC(mime_decode_header, "(=?ISO-8859-1?Q?a?=)", "(a)");
    DEC(mime_decode_header, "(=?ISO-8859-1?Q?a?= b)", "(a b)");
    DEC(mime_decode_header, "(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)");
    DEC(mime_decode_header, "(=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=)", "(ab)");
    DEC(mime_decode_header, "(=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=)",
        "(ab)");
    DEC(mime_decode_header, "(=?ISO-8859-1?Q?a_b?=)", "(a b)");
    DEC(mime_decode_header, "(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)", "(a b)");
    /* A character split across two words in one charset. */
    DEC(mime_decode_header, "=?utf-8?B?Q2Fmww==?= =?utf-8?B?qQ==?=", "Caf\xc3\xa9");
    DEC(mime_decode_header, "=?utf-8?q?=E2=82?= =?utf-8?q?=AC?=", "\xe2\x82\xac");
    /* Base64 padding right before "?=". */
    DEC(mime_decode_header, "=?utf-8?b?YWI=?=", "ab");
    /* Word and text: the space is kept. */
    DEC(mime_decode_header, "=?utf-8?q?a?= b =?utf-8?q?c?=", "a b c");
    /* RFC 2231 language suffix; lower-case encoding letter. */
    DEC(mime_decode_header, "=?US-ASCII*EN?Q?Keith_Moore?=", "Keith Moore");
    /* Unknown charset: kept as is, and not joined. */
    DEC(mime_decode_header, "=?x-nope?q?abc?= =?utf-8?q?d?=",
        "=?x-nope?q?abc?= d");
    /* Malformed words are text. */
    DEC(mime_decode_header, "=?utf-8?x?abc?=", "=?utf-8?x?abc?=");
    DEC(mime_decode_header, "=?utf-8?q?abc", "=?utf-8?q?abc");
    DEC(mime_decode_header, "=??q?abc?=", "=??q?abc?=");
    DEC(mime_decode_header, "=?utf-8?q?a =?utf-8?q?b?=", "=?utf-8?q?a b");
    DEC(mime_decode_header, "=?=?=?", "=?=?=?");
    /* Lenient: inside atoms, blanks in the text, bad escapes. */
    DEC(mime_decode_header, "x=?utf-8?q?y?=z", "xyz");
    DEC(mime_decode_header, "=?utf-8?q?a b?=", "a b");
    DEC(mime_decode_header, "=?utf-8?q?a=Zb?=", "a=Zb");
    /* Raw 8-bit: valid UTF-8 kept, the rest U+FFFD; unfolding. */
    DEC(mime_decode_header, "caf\xc3\xa9 \xe9", "caf\xc3\xa9 \xef\xbf\xbd");
    DEC(mime_decode_header, "a\r\n b", "a b");
    /* Decoded bytes that are not valid in their charset. */
    DEC(mime_decode_header, "=?utf-8?q?=FF?=", "\xef\xbf\xbd");
}

/* SEARCH's view: a base64 ISO-8859-1 text part becomes UTF-8. */
static void test_search_text(void)
{
    msg m;
    REQUIRE_OK(msg_crlf(&m, BIN));
    store_buf b = { 0 };
    REQUIRE_OK(mime_part_text(&m.c, 1, m.raw, m.len, &b));
    CHECK(streq_report("part 1", (char *)b.data, b.len,
                       "Caf\xc3\xa9 au lait\nligne 2\n", 22));
    /* The whole message: text parts only (the unknown-CTE part is not
     * text, the 8bit part is). */
    b.len = 0;
    for (uint32_t i = 0; i < m.c.nparts; i++)
        REQUIRE_OK(mime_part_text(&m.c, i, m.raw, m.len, &b));
    CHECK(streq_report("all", (char *)b.data, b.len,
                       "Caf\xc3\xa9 au lait\nligne 2\n8bit \xc3\xa9 text", 34));
    CHECK_EQ(mime_part_text(&m.c, 99, m.raw, m.len, &b), -ERANGE);
    store_part p;
    store_cache_part(&m.c, 0, &p);
    CHECK(!mime_part_is_text(&p));
    store_cache_part(&m.c, 1, &p);
    CHECK(mime_part_is_text(&p));
    msg_free(&m);
    /* QP with a charset, and a part with no Content-Type at all. */
    REQUIRE_OK(msg_crlf(&m, "Content-Type: text/plain; charset=\"iso-8859-15\"\n"
                            "Content-Transfer-Encoding: quoted-printable\n\n"
                            "=A4 price=\n"));
    b.len = 0;
    REQUIRE_OK(mime_part_text(&m.c, 0, m.raw, m.len, &b));
    CHECK(streq_report("qp", (char *)b.data, b.len, "\xe2\x82\xac price", 9));
    msg_free(&m);
    REQUIRE_OK(msg_crlf(&m, "\nplain"));
    b.len = 0;
    REQUIRE_OK(mime_part_text(&m.c, 0, m.raw, m.len, &b));
    CHECK(streq_report("default", (char *)b.data, b.len, "plain", 5));
    msg_free(&m);
    free(b.data);
}

/* Huge hostile header values: every scan must stay linear (a quadratic
 * one would take minutes here; linear ones take milliseconds).  Not timed:
 * a regression shows as a test that hangs. */
static void test_pathological(void)
{
    size_t big = 512u << 10;
    const char *shapes[] = { "a@b%s.c", "%s", "\"%s", "(%s", "<%s", "G:%s",
                             "=?utf-8?q?%s", "a@b.%s" };
    const char *fills[] = { " ", "(", "=?", "<", "\"", "a,", "?=", "@" };
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
        for (size_t f = 0; f < sizeof fills / sizeof *fills; f++) {
            size_t fl = strlen(fills[f]);
            char *fill = malloc(big + 1);
            for (size_t i = 0; i + fl <= big; i += fl)
                memcpy(fill + i, fills[f], fl);
            fill[big - big % fl] = 0;
            size_t hl = strlen(shapes[k]) + big + 16;
            char *h = malloc(hl);
            int n = snprintf(h, hl, "To: ");
            n += snprintf(h + n, hl - (size_t)n, shapes[k], fill);
            char *raw = cat(h, "\r\n\r\nx", NULL);
            msg m;
            if (msg_raw(&m, raw, strlen(raw)) == 0) {
                char *e = env_str(&m, 0, false);
                CHECK(wellformed(e, strlen(e)));
                free(e);
            }
            msg_free(&m);
            store_buf b = { 0 };
            CHECK_EQ(mime_decode_header(h, strlen(h), &b), 0);
            CHECK(store_utf8_valid((char *)b.data, b.len));
            free(b.data);
            free(raw);
            free(h);
            free(fill);
        }
    }
}

/* ---- randomized ---------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static uint32_t rndn(uint32_t n)
{
    return n ? rnd() % n : 0;
}

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

static void g_str(gen *g, const char *s)
{
    g_put(g, s, strlen(s));
}

static const char *const addr_tokens[] = {
    "a@b.example", "<", ">", "\"", "(", ")", ",", ";", ":", "@", " ", "Name",
    "=?utf-8?q?J=C3=B6rg?=", "\\", "[", "]", "\xc3\xa9", "\xff", ".", "<x@y>",
    "group:", "\t", "\"q, r\"", "(c (n) d)", "@r:", "\x01",
};

static void g_addrs(gen *g)
{
    for (int k = (int)rndn(12); k > 0; k--) {
        if (rndn(8) == 0) {
            char c = (char)rnd();
            g_put(g, &c, 1);
        } else {
            g_str(g, addr_tokens[rndn(sizeof addr_tokens / sizeof *addr_tokens)]);
        }
    }
}

static void g_entity(gen *g, int depth);

static void g_header(gen *g, const char *ctype, const char *boundary)
{
    static const char *const names[] = {
        "From", "To", "Cc", "Bcc", "Sender", "Reply-To", "Subject", "Date",
        "Message-ID", "In-Reply-To", "Content-Transfer-Encoding",
        "Content-Disposition", "Content-Language", "Content-Location",
        "Content-ID", "Content-Description", "Content-MD5", "X-Other",
    };
    static const char *const values[] = {
        "base64", "quoted-printable", "8bit", "x-weird", "attachment; filename=a.b",
        "inline", "en, de ,", "", "=?utf-8?b?w6k=?=", "<id@x>", "a\"b\\c",
    };
    for (int n = (int)rndn(7); n > 0; n--) {
        uint32_t k = rndn(sizeof names / sizeof *names);
        g_str(g, names[k]);
        g_str(g, ": ");
        if (k < 6)
            g_addrs(g);
        else
            g_str(g, values[rndn(sizeof values / sizeof *values)]);
        if (rndn(5) == 0) {
            g_str(g, "\r\n ");
            g_addrs(g);
        }
        g_str(g, "\r\n");
    }
    if (ctype) {
        g_str(g, "Content-Type: ");
        g_str(g, ctype);
        if (boundary) {
            g_str(g, "; boundary=\"");
            g_str(g, boundary);
            g_str(g, "\"");
        }
        if (rndn(3) == 0)
            g_str(g, "; charset=iso-8859-1; name*0*=utf-8''%41; name*1=x");
        g_str(g, "\r\n");
    }
    if (rndn(20))
        g_str(g, "\r\n");
}

static void g_entity(gen *g, int depth)
{
    static const char *const leaves[] = { "text/plain", "text/html",
        "application/pdf", "image/png", "garbage", NULL };
    uint32_t kind = depth > 5 ? 3 : rndn(6);
    char b[32];
    if (kind <= 1) {
        snprintf(b, sizeof b, "b%u_%d", rndn(1000), depth);
        g_header(g, rndn(5) ? "multipart/mixed" : "multipart/digest", b);
        for (int i = (int)rndn(4); i >= 0; i--) {
            g_str(g, "--");
            g_str(g, b);
            g_str(g, "\r\n");
            g_entity(g, depth + 1);
            g_str(g, "\r\n");
        }
        if (rndn(4)) {
            g_str(g, "--");
            g_str(g, b);
            g_str(g, "--\r\n");
        }
    } else if (kind == 2) {
        g_header(g, rndn(4) ? "message/rfc822" : "message/global", NULL);
        g_entity(g, depth + 1);
    } else {
        g_header(g, leaves[rndn(sizeof leaves / sizeof *leaves)], NULL);
        for (int n = (int)rndn(60); n > 0; n--) {
            char c = rndn(6) ? "AZaz09+/=\r\n \t."[rndn(15)] : (char)rnd();
            g_put(g, &c, 1);
        }
    }
}

static const char *const sec_tokens[] = {
    "1", "2", "3", ".", "HEADER", "HEADER.FIELDS", ".NOT", " ", "(", ")",
    "FROM", "\"x y\"", "MIME", "TEXT", "<", ">", "0", "]", "10", "4294967296",
};

/* Render everything about a message and check the output's shape. */
static int exercise(const char *raw, size_t len, double *sections)
{
    int bad = 0;
    msg m;
    if (msg_raw(&m, raw, len)) {
        msg_free(&m);
        return 1;
    }
    for (uint32_t e = 0; e < m.c.nenvelopes; e++) {
        for (int u = 0; u < 2; u++) {
            imap_out o = { 0 };
            bad += imap_render_envelope(&o, &m.c, e, u) != 0;
            if (!wellformed(o.p, o.len)) {
                fprintf(stderr, "  bad envelope: %.*s\n", (int)o.len, o.p);
                bad++;
            }
            imap_out_free(&o);
        }
    }
    for (int ext = 0; ext < 2; ext++) {
        for (int u = 0; u < 2; u++) {
            imap_out o = { 0 };
            bad += imap_render_body(&o, &m.c, ext, u) != 0;
            if (!wellformed(o.p, o.len)) {
                fprintf(stderr, "  bad body: %.*s\n", (int)o.len, o.p);
                bad++;
            }
            imap_out_free(&o);
        }
    }
    /* Every part's sections, and some random ones. */
    for (int k = 0; k < 12; k++) {
        char att[200];
        static const char *const kinds[] = { "BODY[", "BINARY[", "BINARY.SIZE[",
                                             "BODY.PEEK[" };
        size_t n = (size_t)snprintf(att, sizeof att, "%s", kinds[rndn(4)]);
        for (int t = (int)rndn(6); t > 0 && n < 150; t--)
            n += (size_t)snprintf(att + n, sizeof att - n, "%s",
                                  sec_tokens[rndn(sizeof sec_tokens / sizeof *sec_tokens)]);
        if (k < 8) {     /* mostly well-formed */
            n = (size_t)snprintf(att, sizeof att, "%s%u%s]%s",
                                 kinds[rndn(4)], 1 + rndn(3),
                                 rndn(2) ? ".1" : "",
                                 rndn(3) ? "" : "<1.5>");
            if (k < 3 && rndn(2))
                n = (size_t)snprintf(att, sizeof att, "BODY[%s]",
                    (const char *[]){ "HEADER", "TEXT", "1.MIME", "2.HEADER",
                                      "HEADER.FIELDS (From TO)",
                                      "1.HEADER.FIELDS.NOT (X)" }[rndn(6)]);
        }
        imap_section s;
        if (imap_section_parse(att, n, &s))
            continue;
        imap_out o = { 0 };
        imap_section_echo(&o, &s);
        /* The echo parses back to the same section. */
        if (!s.partial && !s.legacy) {
            imap_section s2;
            if (imap_section_parse(o.p, o.len, &s2) || s2.npath != s.npath ||
                s2.text != s.text || s2.nfields != s.nfields || s2.item != s.item) {
                fprintf(stderr, "  echo %.*s does not round-trip\n", (int)o.len, o.p);
                bad++;
            } else {
                imap_section_free(&s2);
            }
        }
        imap_out_free(&o);
        imap_section_data d;
        int r = imap_section_fetch(&s, &m.c, m.raw, m.len, &d);
        if (!r) {
            (*sections)++;
            if (d.len && !(d.buf.data ? d.p >= (char *)d.buf.data &&
                                        d.p + d.len <= (char *)d.buf.data + d.buf.len
                                      : d.p >= m.raw && d.p + d.len <= m.raw + m.len))
                bad++;
            if (s.item == IMAP_ITEM_BODY && !s.partial && d.len != d.size)
                bad++;
            imap_section_data_free(&d);
        } else if (r != -ENOENT && r != -EINVAL && r != -ENOTSUP) {
            bad++;
        }
        imap_section_free(&s);
    }
    /* The search view of every part is UTF-8. */
    store_buf t = { 0 };
    for (uint32_t i = 0; i < m.c.nparts; i++) {
        t.len = 0;
        if (mime_part_text(&m.c, i, m.raw, m.len, &t) ||
            !store_utf8_valid((char *)t.data, t.len))
            bad++;
    }
    free(t.data);
    msg_free(&m);
    return bad;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void test_random(void)
{
    int bad = 0, iters = 0;
    double sections = 0, t0 = now();
    gen g = { 0 };
    const char *fixed[] = { MIXED, NESTED, BIN };
    /* The checker itself. */
    static const char *const ok[] = { "NIL", "(NIL)", "((NIL)(NIL) \"a\")",
        "({2}\r\nab 1)", "(\"a\\\"b\")", "()" };
    static const char *const ko[] = { "(", "(NIL", "NIL)", "((NIL)", "\"a",
        "{3}\r\nab", "(NIL  NIL)", "(NIL)(NIL)", "(\"a\rb\")", "nil",
        "(NIL NIL)x", "{2}\nab" };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        CHECK(wellformed(ok[i], strlen(ok[i])));
    for (size_t i = 0; i < sizeof ko / sizeof *ko; i++)
        CHECK(!wellformed(ko[i], strlen(ko[i])));
    /* Bounded by count and by time (sanitizer builds are slow). */
    for (iters = 0; iters < 6000 && now() - t0 < 20; iters++) {
        g.len = 0;
        if (iters % 4 == 3) {
            /* Mutate a fixed message. */
            const char *f = fixed[rndn(3)];
            g_str(&g, f);
            for (int k = (int)rndn(10); k >= 0; k--) {
                static const char noise[] = "<>@,;:\"()\\\r\n \t=?[]\0\xff-";
                size_t at = rndn((uint32_t)g.len);
                g.p[at] = rndn(2) ? (char)rnd() : noise[rndn(sizeof noise - 1)];
            }
            if (rndn(3) == 0)
                g.len = rndn((uint32_t)g.len + 1);
        } else {
            g_entity(&g, 0);
        }
        bad += exercise(g.p, g.len, &sections);
    }
    /* Decoders on noise. */
    for (int k = 0; k < 2000; k++) {
        char buf[200];
        size_t n = rndn(sizeof buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = rndn(3) ? "=?utf-8?qQbB_ \r\n=A3x"[rndn(20)] : (char)rnd();
        store_buf b = { 0 };
        if (mime_decode_header(buf, n, &b) || !store_utf8_valid((char *)b.data, b.len))
            bad++;
        b.len = 0;
        static const char *const cs[] = { "utf-8", "iso-8859-1", "shift_jis",
            "iso-2022-jp", "gb2312", "utf-16", "x-none", "koi8-r", NULL };
        if (mime_to_utf8(mime_str(cs[rndn(9)]), buf, n, &b) ||
            !store_utf8_valid((char *)b.data, b.len))
            bad++;
        b.len = 0;
        uint64_t size;
        if (mime_decode_qp(buf, n, &b) || mime_decode_base64(buf, n, &b) ||
            mime_decode_binary(mime_str("quoted-printable"), buf, n, true, NULL,
                               &size))
            bad++;
        free(b.data);
    }
    free(g.p);
    fprintf(stderr, "     random: %d messages, %.0f sections fetched, %.1fs\n",
            iters, sections, now() - t0);
    CHECK_EQ(bad, 0);
    CHECK(iters >= 500);
    CHECK(sections > 1000);
}

int main(void)
{
    RUN(test_rfc_sample_message);
    RUN(test_rfc_bodystructure_examples);
    RUN(test_mixed_attachment);
    RUN(test_nested);
    RUN(test_message_global);
    RUN(test_addresses);
    RUN(test_prerendered);
    RUN(test_envelope_defaults);
    RUN(test_body_defaults);
    RUN(test_section_parse);
    RUN(test_partials);
    RUN(test_binary);
    RUN(test_binary_to_base64);
    RUN(test_base64_qp);
    RUN(test_charsets);
    RUN(test_rfc2047);
    RUN(test_search_text);
    RUN(test_pathological);
    RUN(test_random);
    return test_summary();
}
