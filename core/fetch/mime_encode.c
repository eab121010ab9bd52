/* core/fetch/mime_encode.c — binary parts re-encoded as base64 (contract in
 * core/fetch/mime_encode.h). */
#include "core/fetch/mime_encode.h"
#include "store/base64.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int mime_encode_base64(const void *p, size_t n, store_buf *out)
{
    enum { LINE = 57 };                 /* bytes that make 76 characters */
    const uint8_t *s = p;
    size_t lines = (n + LINE - 1) / LINE;
    if (store_buf_reserve(out, store_b64_enc_len(n) + (lines ? lines - 1 : 0) * 2 + 1))
        return -ENOMEM;
    char *o = (char *)out->data + out->len;
    for (size_t i = 0; i < n; i += LINE) {
        if (i) {
            *o++ = '\r';
            *o++ = '\n';
        }
        o += store_b64_encode(s + i, n - i < LINE ? n - i : LINE, o);
    }
    out->len = (size_t)((uint8_t *)o - out->data);
    return 0;
}

/* Is the header line at h (up to its end e) a Content-Transfer-Encoding
 * field?  Field names are case-insensitive; blanks before the colon are
 * tolerated as the parser tolerates them. */
static bool is_cte_field(const char *h, size_t n)
{
    static const char name[] = "content-transfer-encoding";
    size_t k = sizeof name - 1;
    if (n < k || strncasecmp(h, name, k))
        return false;
    while (k < n && (h[k] == ' ' || h[k] == '\t'))
        k++;
    return k < n && h[k] == ':';
}

/* The part's header h/n without its Content-Transfer-Encoding fields, with
 * "Content-Transfer-Encoding: base64" before the blank line. */
static int rewrite_header(const char *h, size_t n, store_buf *out)
{
    size_t pos = 0;
    while (pos < n) {
        const char *nl = memchr(h + pos, '\n', n - pos);
        size_t e = nl ? (size_t)(nl - h) + 1 : n;
        if (h[pos] == '\n' || (h[pos] == '\r' && e - pos == 2))
            break;                              /* the blank line */
        /* the field with its continuation lines */
        while (e < n && (h[e] == ' ' || h[e] == '\t')) {
            nl = memchr(h + e, '\n', n - e);
            e = nl ? (size_t)(nl - h) + 1 : n;
        }
        if (!is_cte_field(h + pos, e - pos) && store_buf_append(out, h + pos, e - pos))
            return -ENOMEM;
        pos = e;
    }
    static const char cte[] = "Content-Transfer-Encoding: base64\r\n";
    if (store_buf_append(out, cte, sizeof cte - 1) ||
        store_buf_append(out, h + pos, n - pos))
        return -ENOMEM;
    return 0;
}

int mime_binary_to_base64(const char *raw, size_t len, store_buf *out, size_t *nconv)
{
    store_buf blob = {0};
    size_t old = out->len, done = 0, pos = 0;
    *nconv = 0;
    store_cache c = {0};
    int rc = store_msg_parse(raw, len, &blob);
    if (!rc)
        rc = store_cache_open(blob.data, blob.len, &c);
    if (rc && rc != -ENOMEM) {
        c.nparts = 0;       /* unparsable (it never is today): copied as it is */
        rc = 0;
    }
    for (uint32_t i = 0; !rc && i < c.nparts; i++) {
        store_part p;
        if (store_cache_part(&c, i, &p) || p.nchildren ||
            (p.type.len == 9 && !memcmp(p.type.p, "multipart", 9)))
            continue;
        /* A leaf with a header of its own, after what was copied. */
        if (!p.hdr_len || p.hdr_off < pos || p.hdr_off + p.hdr_len != p.body_off ||
            p.body_off + p.body_len > len || !p.body_len ||
            !memchr(raw + p.body_off, '\0', p.body_len))
            continue;
        if (store_buf_append(out, raw + pos, p.hdr_off - pos) ||
            rewrite_header(raw + p.hdr_off, p.hdr_len, out) ||
            mime_encode_base64(raw + p.body_off, p.body_len, out)) {
            rc = -ENOMEM;
            break;
        }
        pos = p.body_off + p.body_len;
        /* Inside a multipart the CRLF before the next boundary follows;
         * the body of a single-part message gets a line end of its own. */
        if (pos == len && store_buf_append(out, "\r\n", 2)) {
            rc = -ENOMEM;
            break;
        }
        done++;
    }
    if (!rc && store_buf_append(out, raw + pos, len - pos))
        rc = -ENOMEM;
    free(blob.data);
    if (rc) {
        out->len = old;
        return rc;
    }
    *nconv = done;
    return 0;
}
