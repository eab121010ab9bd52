/* tests/unit/test_preview.c — core/fetch/preview.c: the text of FETCH
 * PREVIEW (RFC 8970) from whole messages: plain text, HTML, quoted-printable,
 * base64, charsets through iconv, multipart/alternative, attachments,
 * embedded messages, no text at all, long words, CJK cut at a character
 * boundary, white space and control characters, the bound on what is read;
 * and the preview kept in the cache blob by the store's parser. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/fetch/preview.h"
#include "store/message.h"
#include "store/utf8.h"
#include "tests/unit/testutil.h"

/* The preview of raw (LF line ends become CRLF unless keep_lf). */
static char *preview_of(const char *raw, size_t len)
{
    store_buf blob = { 0 }, out = { 0 };
    store_cache c;
    char *r = NULL;
    if (store_msg_parse(raw, len, &blob) == 0 &&
        store_cache_open(blob.data, blob.len, &c) == 0 &&
        imap_preview(&c, raw, len, &out) == 0) {
        r = malloc(out.len + 1);
        if (r) {
            if (out.len)
                memcpy(r, out.data, out.len);
            r[out.len] = 0;
        }
    }
    free(blob.data);
    free(out.data);
    return r;
}

static char *crlf(const char *s)
{
    size_t n = strlen(s), k = 0;
    char *d = malloc(2 * n + 1);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n')
            d[k++] = '\r';
        d[k++] = s[i];
    }
    d[k] = 0;
    return d;
}

static void expect_at(const char *file, int line, const char *msg, const char *want)
{
    char *m = crlf(msg);
    char *got = preview_of(m, strlen(m));
    if (!got || strcmp(got, want)) {
        fprintf(stderr, "%s:%d: preview \"%s\", want \"%s\"\n", file, line,
                got ? got : "(error)", want);
        test_failures_++;
    }
    free(got);
    free(m);
}
#define EXPECT(msg, want) expect_at(__FILE__, __LINE__, msg, want)

static size_t utf8_chars(const char *s)
{
    size_t n = 0, len = strlen(s);
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = store_utf8_decode(s + i, len - i, &cp);
        if (!k)
            return SIZE_MAX;    /* not valid UTF-8 */
        i += k;
        n++;
    }
    return n;
}

static void test_plain(void)
{
    EXPECT("Subject: x\n\nHello   world\n\n  second\tline  \n", "Hello world second line");
    EXPECT("Subject: x\n\n", "");
    EXPECT("Subject: x\n\n \n\t\n", "");
    /* no Content-Type is text/plain; us-ascii: 8-bit bytes are U+FFFD */
    EXPECT("Subject: x\n\ncaf\xe9\n", "caf\xef\xbf\xbd");
    /* quoted lines and signatures stay (RFC 8970 asks nothing about them) */
    EXPECT("Subject: x\n\n> quoted\nreply\n-- \nsig\n", "> quoted reply -- sig");
    /* controls, NBSP and zero-width characters */
    EXPECT("Content-Type: text/plain; charset=utf-8\n\na\x01\x7f" "b\xc2\xa0" "c\xe2\x80\x8b" "d\xef\xbb\xbf" "e\n",
           "a b cde");
}

static void test_encodings(void)
{
    EXPECT("Content-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: quoted-printable\n\n"
           "Caf=C3=A9 au lait=\n soft break\n", "Caf\xc3\xa9 au lait soft break");
    EXPECT("Content-Transfer-Encoding: base64\n\nSGVsbG8gYmFzZTY0\n", "Hello base64");
    EXPECT("Content-Type: text/plain; charset=\"iso-8859-1\"\n\n\xe9t\xe9\n", "\xc3\xa9t\xc3\xa9");
    EXPECT("Content-Type: text/plain; charset=windows-1252\n\n\x93quoted\x94\n",
           "\xe2\x80\x9cquoted\xe2\x80\x9d");
    /* こんにちは in Shift_JIS, and in ISO-2022-JP */
    EXPECT("Content-Type: text/plain; charset=Shift_JIS\n\n\x82\xb1\x82\xf1\x82\xc9\x82\xbf\x82\xcd\n",
           "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf");
    EXPECT("Content-Type: text/plain; charset=iso-2022-jp\n\n\x1b$B$3$s$K$A$O\x1b(B\n",
           "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf");
    /* base64 of UTF-8 "héllo" */
    EXPECT("Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: BASE64\n\naMOpbGxv\n",
           "h\xc3\xa9llo");
    /* an encoding we cannot undo: no text */
    EXPECT("Content-Transfer-Encoding: x-uuencode\n\nbegin 644 f\n", "");
}

static void test_html(void)
{
    EXPECT("Content-Type: text/html\n\n<html><head><title>T</title><style>p { color: red }</style>"
           "</head><body><p>Hello&nbsp;<b>wo</b>rld &amp; all</p><!-- a comment -->"
           "<script>var x = '<p>no</p>';</script><div>next&#233;&#x4E2D;</div></body></html>\n",
           "Hello wo" "rld & all next\xc3\xa9\xe4\xb8\xad");
    EXPECT("Content-Type: text/html\n\n<p>a<br>b</p><table><tr><td>c</td><td>d</td></tr></table>\n",
           "a b c d");
    EXPECT("Content-Type: text/html\n\ncaf&eacute; &Auml;rger &frac12; &hellip;&euro;\n",
           "caf\xc3\xa9 \xc3\x84rger \xc2\xbd \xe2\x80\xa6\xe2\x82\xac");
    /* not tags: a lone '<', an unknown entity, &#0; */
    EXPECT("Content-Type: text/html\n\n1 < 2 &foo; &#0; <a href=\"x>y\">link</a>\n",
           "1 < 2 &foo; \xef\xbf\xbd link");
    EXPECT("Content-Type: text/html; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n"
           "<p>=E9t=E9</p>\n", "\xc3\xa9t\xc3\xa9");
    /* an unterminated <style> hides the rest, an unterminated tag too */
    EXPECT("Content-Type: text/html\n\n<style>x\n", "");
    EXPECT("Content-Type: text/html\n\nvisible <b\n", "visible");
}

static void test_structure(void)
{
    /* alternative: text/plain wins, whichever comes first */
    EXPECT("Content-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/html\n\n"
           "<p>html</p>\n--b\nContent-Type: text/plain\n\nplain\n--b--\n", "plain");
    EXPECT("Content-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\n\n"
           "plain\n--b\nContent-Type: text/html\n\n<p>html</p>\n--b--\n", "plain");
    /* alternative of related html and plain */
    EXPECT("Content-Type: multipart/alternative; boundary=b\n\n--b\n"
           "Content-Type: multipart/related; boundary=c\n\n--c\nContent-Type: text/html\n\n"
           "<p>html</p>\n--c\nContent-Type: image/png\n\nPNG\n--c--\n"
           "--b\nContent-Type: text/plain\n\nplain\n--b--\n", "plain");
    /* html only, in mixed with an attachment */
    EXPECT("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/html\n\n"
           "<p>html</p>\n--b\nContent-Type: text/plain\nContent-Disposition: attachment\n\n"
           "attached\n--b--\n", "html");
    /* the first text part of mixed, after an image */
    EXPECT("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: image/gif\n\nGIF\n"
           "--b\nContent-Type: text/plain\n\nsecond\n--b\nContent-Type: text/plain\n\nthird\n--b--\n",
           "second");
    /* no text part: attachments only, encrypted, a lone PDF, a forwarded
     * message (its text is not this message's) */
    EXPECT("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n"
           "Content-Disposition: attachment; filename=a.txt\n\nattached\n--b\n"
           "Content-Type: image/png\n\nPNG\n--b--\n", "");
    EXPECT("Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=b\n\n"
           "--b\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n--b\n"
           "Content-Type: application/octet-stream\n\n-----BEGIN PGP MESSAGE-----\n--b--\n", "");
    EXPECT("Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0=\n", "");
    EXPECT("Content-Type: message/rfc822\n\nSubject: inner\n\ninner text\n", "");
    EXPECT("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nsee below\n"
           "--b\nContent-Type: message/rfc822\n\nSubject: inner\n\ninner text\n--b--\n", "see below");
    /* text/calendar is not text to preview */
    EXPECT("Content-Type: text/calendar\n\nBEGIN:VCALENDAR\n", "");
}

static void test_lengths(void)
{
    /* a long word is cut at 200 characters */
    char *msg = malloc(1000);
    strcpy(msg, "Subject: x\n\n");
    memset(msg + strlen(msg), 'a', 500);
    strcpy(msg + 12 + 500, "\n");
    char want[201];
    memset(want, 'a', 200);
    want[200] = 0;
    EXPECT(msg, want);
    free(msg);

    /* CJK: 300 x U+6F22 (3 bytes each) give 200 characters, 600 bytes */
    size_t cap = 64 + 300 * 3;
    msg = malloc(cap);
    strcpy(msg, "Content-Type: text/plain; charset=utf-8\n\n");
    for (int i = 0; i < 300; i++)
        strcat(msg, "\xe6\xbc\xa2");
    strcat(msg, "\n");
    char *m = crlf(msg);
    char *got = preview_of(m, strlen(m));
    REQUIRE(got);
    CHECK_EQ(utf8_chars(got), 200);
    CHECK_EQ(strlen(got), 600);
    free(got);
    free(m);
    free(msg);

    /* words: the cut never leaves a space at the end, and the count
     * includes the spaces */
    msg = malloc(2000);
    strcpy(msg, "Subject: x\n\n");
    for (int i = 0; i < 100; i++)
        strcat(msg, "abcdefghi ");       /* 10 characters a word */
    got = preview_of(msg, strlen(msg));
    REQUIRE(got);
    CHECK_EQ(strlen(got), 199);         /* 20 words, the 20th's space not written */
    CHECK(got[198] == 'i');
    free(got);
    free(msg);

    /* the space before a character that would be the 201st is not written */
    msg = malloc(400);
    strcpy(msg, "Subject: x\n\n");
    memset(msg + 12, 'b', 199);
    strcpy(msg + 12 + 199, " c\n");
    got = preview_of(msg, strlen(msg));
    REQUIRE(got);
    CHECK_EQ(strlen(got), 199);
    free(got);
    free(msg);
}

/* A huge or hostile body costs bounded work: only a prefix is read. */
static void test_bounds(void)
{
    size_t big = 50u << 20;
    char *msg = malloc(big + 200);
    size_t h = (size_t)sprintf(msg, "Content-Type: text/plain\r\n\r\n");
    memset(msg + h, ' ', IMAP_PREVIEW_PLAIN_MAX);
    memcpy(msg + h + IMAP_PREVIEW_PLAIN_MAX, "late", 4);
    memset(msg + h + IMAP_PREVIEW_PLAIN_MAX + 4, 'x', big - IMAP_PREVIEW_PLAIN_MAX - 4 - h);
    size_t len = big;
    char *got = preview_of(msg, len);
    REQUIRE(got);
    CHECK_EQ(strlen(got), 0);           /* "late" is past the prefix read */
    free(got);

    /* 50 MB of HTML inside one unterminated comment, base64-encoded: the
     * time is that of the prefix, not of the message */
    h = (size_t)sprintf(msg, "Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n");
    for (size_t i = h; i + 4 <= len; i += 4)
        memcpy(msg + i, "PCEt", 4);     /* "<!-" */
    store_buf blob = { 0 }, out = { 0 };
    store_cache c;
    REQUIRE_OK(store_msg_parse(msg, len, &blob));
    REQUIRE_OK(store_cache_open(blob.data, blob.len, &c));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 10; i++) {
        out.len = 0;
        REQUIRE_OK(imap_preview(&c, msg, len, &out));
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = ((double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6) / 10;
    fprintf(stderr, "     50 MB html part: preview in %.3f ms\n", ms);
    CHECK(ms < 50);
    CHECK_EQ(out.len, 0);
    free(out.data);
    free(blob.data);
    free(msg);
}

/* With the previewer registered the parser keeps the preview in the blob,
 * and the delivery prefix (store_msg_prefixed) keeps it. */
static void test_in_blob(void)
{
    char *m = crlf("Subject: s\nContent-Type: text/plain\n\nkept  in\nthe blob\n");
    store_buf blob = { 0 }, shifted = { 0 };
    store_cache c;
    store_str pv;
    REQUIRE_OK(store_msg_parse(m, strlen(m), &blob));
    REQUIRE_OK(store_cache_open(blob.data, blob.len, &c));
    CHECK(!store_cache_preview(&c, &pv));       /* no previewer yet */
    CHECK(store_cache_is_current(&c));
    blob.len = 0;

    store_msg_set_previewer(imap_preview);
    uint64_t runs = imap_preview_runs();
    REQUIRE_OK(store_msg_parse(m, strlen(m), &blob));
    CHECK_EQ(imap_preview_runs() - runs, 1);
    REQUIRE_OK(store_cache_open(blob.data, blob.len, &c));
    CHECK(store_cache_is_current(&c));
    REQUIRE(store_cache_preview(&c, &pv));
    CHECK(pv.len == 16 && !memcmp(pv.p, "kept in the blob", 16));
    REQUIRE_OK(store_msg_prefixed(blob.data, blob.len, 20, &shifted));
    REQUIRE_OK(store_cache_open(shifted.data, shifted.len, &c));
    REQUIRE(store_cache_preview(&c, &pv));
    CHECK(pv.len == 16 && !memcmp(pv.p, "kept in the blob", 16));
    CHECK_EQ(imap_preview_runs() - runs, 1);

    /* the empty preview is kept as such, not as "none" */
    free(m);
    m = crlf("Content-Type: image/png\n\nPNG\n");
    blob.len = 0;
    REQUIRE_OK(store_msg_parse(m, strlen(m), &blob));
    REQUIRE_OK(store_cache_open(blob.data, blob.len, &c));
    REQUIRE(store_cache_preview(&c, &pv));
    CHECK_EQ(pv.len, 0);
    /* a blob without one is not current while a previewer is registered */
    free(blob.data);
    blob = (store_buf){ 0 };
    store_msg_set_previewer(NULL);
    REQUIRE_OK(store_msg_parse(m, strlen(m), &blob));
    store_msg_set_previewer(imap_preview);
    REQUIRE_OK(store_cache_open(blob.data, blob.len, &c));
    CHECK(!store_cache_preview(&c, &pv));
    CHECK(!store_cache_is_current(&c));
    store_msg_set_previewer(NULL);
    free(blob.data);
    free(shifted.data);
    free(m);
}

/* Random bytes and random MIME never break the output's promises: valid
 * UTF-8, no control characters, at most 200 characters. */
static void test_random(void)
{
    srand(8970);
    static const char *const heads[] = {
        "Content-Type: text/html; charset=utf-8\r\n\r\n",
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
        "Content-Type: text/plain; charset=gb2312\r\n\r\n",
        "Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n",
    };
    static const char alpha[] = "<>&;#x/!-abcdeEF01 \t\r\n=\x80\xc3\xa9\xe6\xff\x00";
    char msg[2048];
    for (int it = 0; it < 20000; it++) {
        const char *hd = heads[it % 4];
        size_t h = strlen(hd), n = h + (size_t)(rand() % 1500);
        memcpy(msg, hd, h);
        for (size_t i = h; i < n; i++)
            msg[i] = alpha[rand() % (int)(sizeof alpha - 1)];
        char *got = preview_of(msg, n);
        REQUIRE(got);
        size_t chars = utf8_chars(got);
        CHECK(chars <= IMAP_PREVIEW_CHARS);
        CHECK(strlen(got) <= STORE_PREVIEW_MAX);
        for (const char *p = got; *p; p++)
            CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
        if (got[0])
            CHECK(got[0] != ' ' && got[strlen(got) - 1] != ' ');
        free(got);
    }
}

int main(void)
{
    RUN(test_plain);
    RUN(test_encodings);
    RUN(test_html);
    RUN(test_structure);
    RUN(test_lengths);
    RUN(test_bounds);
    RUN(test_in_blob);
    RUN(test_random);
    return test_summary();
}
