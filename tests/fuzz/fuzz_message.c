/* tests/fuzz/fuzz_message.c — the message parser and cache blob
 * (store/message.h), the FETCH renderers and sections
 * (core/fetch/fetch_render.h), the MIME decoders (core/fetch/mime_decode.h)
 * and the preview (core/fetch/preview.h).
 *
 * Input: the raw message.  Section paths are derived from the message's
 * own bytes and part tree.  Contract checks abort. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fetch/fetch_render.h"
#include "core/imap/imap_args.h"
#include "core/fetch/mime_decode.h"
#include "core/fetch/preview.h"
#include "store/message.h"
#include "store/utf8.h"
#include "fuzz_common.h"

static void touch(store_str s)
{
    uint64_t sum = 0;
    for (uint32_t i = 0; s.p && i < s.len; i++)
        sum += (uint8_t)s.p[i];
    fuzz_sink += sum;
}

static void check_utf8_out(const store_buf *b, size_t from)
{
    FUZZ_CHECK(b->len >= from);
    if (b->len == from)
        return;
    FUZZ_CHECK(store_utf8_valid((const char *)b->data + from, b->len - from));
}

/* Decoders on an arbitrary byte string. */
static void decoders(const char *p, size_t n, uint32_t pick)
{
    static const char *const ctes[] = {
        "base64", "quoted-printable", "7bit", "8bit", "binary", " BASE64 ",
        "Quoted-Printable (comment)", "x-uuencode", "", NULL,
    };
    static const char *const charsets[] = {
        "utf-8", "us-ascii", "ISO-8859-1", "windows-1252", "\"koi8-r\"",
        "iso-2022-jp", "UTF-16", "shift_jis*ja", "x-unknown-charset", NULL,
    };
    store_buf b = { 0 };
    int rc = mime_decode_base64(p, n, &b);
    FUZZ_CHECK(rc == 0 || rc == -ENOMEM);
    FUZZ_CHECK(rc || b.len <= n / 4 * 3 + 3);
    b.len = 0;
    rc = mime_decode_qp(p, n, &b);
    FUZZ_CHECK(rc == 0 || rc == -ENOMEM);
    FUZZ_CHECK(rc || b.len <= n);

    store_str cte = mime_str(ctes[pick % (sizeof ctes / sizeof *ctes)]);
    (void)mime_cte_parse(cte);
    b.len = 3;                               /* decoders append */
    if (b.cap < 3 && store_buf_reserve(&b, 3))
        goto out;
    rc = mime_decode_transfer(cte, p, n, &b);
    FUZZ_CHECK(rc == 0 || rc == -ENOMEM || rc == -ENOTSUP);
    if (rc)
        FUZZ_CHECK(b.len == 3);
    for (int crlf = 0; crlf < 2; crlf++) {
        uint64_t size = 0, size2 = 0;
        b.len = 0;
        rc = mime_decode_binary(cte, p, n, crlf, &b, &size);
        int rc2 = mime_decode_binary(cte, p, n, crlf, NULL, &size2);
        FUZZ_CHECK(rc == 0 || rc == -ENOMEM || rc == -ENOTSUP);
        if (rc == 0) {
            FUZZ_CHECK(rc2 == 0);
            FUZZ_CHECK(size == b.len && size2 == size);
        }
    }

    store_str cs = mime_str(charsets[(pick >> 8) % (sizeof charsets / sizeof *charsets)]);
    (void)mime_charset_known(cs);
    b.len = 0;
    rc = mime_to_utf8(cs, p, n, &b);
    FUZZ_CHECK(rc == 0 || rc == -ENOMEM);
    if (!rc)
        check_utf8_out(&b, 0);
    size_t mark = b.len;
    rc = mime_decode_header(p, n, &b);
    FUZZ_CHECK(rc == 0 || rc == -ENOMEM);
    if (!rc && b.len > mark) {
        check_utf8_out(&b, mark);
        /* raw CR/LF are dropped (an encoded word may decode to them) */
        if (!memmem(p, n, "=?", 2))
            FUZZ_CHECK(!memchr(b.data + mark, '\r', b.len - mark) &&
                       !memchr(b.data + mark, '\n', b.len - mark));
    } else if (rc) {
        FUZZ_CHECK(b.len == mark);
    }
out:
    free(b.data);
}

static void section(const char *spec, const store_cache *c, const char *msg,
                    size_t len)
{
    imap_section s;
    memset(&s, 0, sizeof s);
    int rc = imap_section_parse(spec, strlen(spec), &s);
    FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -E2BIG || rc == -ENOMEM);
    if (rc)
        return;
    imap_out o = { 0 };
    imap_section_echo(&o, &s);
    FUZZ_CHECK(o.err || o.len > 0);
    imap_out_free(&o);

    uint64_t roff = 0, rlen = 0;
    int rrc = imap_section_range(&s, c, &roff, &rlen);
    FUZZ_CHECK(rrc == 0 || rrc == -ENOENT || rrc == -EINVAL);
    if (rrc == 0)
        FUZZ_CHECK(roff <= len && rlen <= len - roff);

    imap_section_data d;
    rc = imap_section_fetch(&s, c, msg, len, &d);
    FUZZ_CHECK(rc == 0 || rc == -ENOENT || rc == -EINVAL || rc == -ENOTSUP ||
               rc == -ENOMEM);
    if (rc != -ENOMEM && rc != -ENOTSUP)
        FUZZ_CHECK(rc == rrc);
    if (rc == 0) {
        if (s.item == IMAP_ITEM_BINARY_SIZE) {
            FUZZ_CHECK(d.p == NULL);
        } else {
            FUZZ_CHECK(d.p != NULL || d.len == 0);
            uint64_t sum = 0;
            for (size_t i = 0; i < d.len; i++)
                sum += (uint8_t)d.p[i];
            fuzz_sink += sum;
            if (!s.partial)
                FUZZ_CHECK(d.len == d.size);
            else
                FUZZ_CHECK(d.len <= s.count && d.len <= d.size);
            if (d.nul)
                FUZZ_CHECK(s.item == IMAP_ITEM_BINARY);
        }
        imap_section_data_free(&d);
    }
    imap_section_free(&s);
}

/* The section path of part i ("1.2.3"), built upwards from the tree
 * following IMAP's numbering; best effort (an odd tree gives some path). */
static size_t part_path(const store_cache *c, uint32_t i, char *buf,
                        size_t cap)
{
    uint32_t nums[STORE_MIME_MAX_DEPTH + 2];
    size_t n = 0;
    store_part p;
    while (i && n < sizeof nums / sizeof *nums &&
           !store_cache_part(c, i, &p)) {
        store_part par;
        if (store_cache_part(c, p.parent, &par))
            break;
        uint32_t k = 1;
        for (uint32_t q = par.first_child; q && q != i && k < 100000; k++) {
            store_part qp;
            if (store_cache_part(c, q, &qp))
                break;
            q = qp.next_sibling;
        }
        bool multi = par.type.p && par.type.len == 9 &&
                     !memcmp(par.type.p, "multipart", 9);
        if (multi)
            nums[n++] = k;
        else if (p.parent == 0)
            nums[n++] = 1;
        i = p.parent;
    }
    size_t len = 0;
    buf[0] = '\0';
    for (size_t j = n; j-- > 0 && len + 12 < cap;)
        len += (size_t)snprintf(buf + len, cap - len, "%s%u",
                                len ? "." : "", nums[j]);
    return len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *msg = (const char *)data;
    fuzz_rng rng = fuzz_seed(data, size < 64 ? size : 64);
    store_buf blob = { 0 };
    /* the blob may be appended to a buffer that already holds data */
    size_t pre = fuzz_next(&rng) & 1 ? 0 : 5;
    if (pre && store_buf_append(&blob, "XXXXX", pre))
        return 0;
    int rc = store_msg_parse(msg, size, &blob);
    FUZZ_CHECK(rc == 0 || rc == -ENOMEM);
    if (rc) {
        free(blob.data);
        return 0;
    }
    FUZZ_CHECK(blob.len > pre);
    store_cache c;
    rc = store_cache_open(blob.data + pre, blob.len - pre, &c);
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(c.nparts >= 1 && c.nparts <= STORE_MIME_MAX_PARTS);
    FUZZ_CHECK(c.nenvelopes >= 1);

    /* the preview, of the message and of its bytes taken as HTML: valid
     * UTF-8 of at most IMAP_PREVIEW_CHARS characters, no controls, no
     * space at either end */
    for (int html = 0; html < 2; html++) {
        store_buf pv = { 0 };
        rc = html ? imap_preview_html(msg, size, &pv) : imap_preview(&c, msg, size, &pv);
        FUZZ_CHECK(rc == 0 || rc == -ENOMEM);
        if (rc == 0 && pv.len) {
            check_utf8_out(&pv, 0);
            FUZZ_CHECK(pv.len <= STORE_PREVIEW_MAX);
            size_t chars = 0;
            for (size_t i = 0; i < pv.len; i++) {
                FUZZ_CHECK(pv.data[i] >= 0x20 && pv.data[i] != 0x7f);
                chars += (pv.data[i] & 0xc0) != 0x80;
            }
            FUZZ_CHECK(chars <= IMAP_PREVIEW_CHARS);
            FUZZ_CHECK(pv.data[0] != ' ' && pv.data[pv.len - 1] != ' ');
        }
        free(pv.data);
    }

    /* every part, parameter and envelope */
    for (uint32_t i = 0; i < c.nparts; i++) {
        store_part p;
        FUZZ_CHECK(store_cache_part(&c, i, &p) == 0);
        FUZZ_CHECK(p.type.p && p.subtype.p);
        touch(p.type), touch(p.subtype), touch(p.id), touch(p.description);
        touch(p.encoding), touch(p.md5), touch(p.disposition);
        touch(p.language), touch(p.location);
        FUZZ_CHECK(p.body_off == p.hdr_off + p.hdr_len);
        FUZZ_CHECK(p.body_off + p.body_len <= size);
        if (i == 0) {
            FUZZ_CHECK(p.hdr_off == 0 && p.parent == 0);
            FUZZ_CHECK(p.body_off + p.body_len == size);
        } else {
            store_part pp;
            FUZZ_CHECK(p.parent < i);
            FUZZ_CHECK(store_cache_part(&c, p.parent, &pp) == 0);
            FUZZ_CHECK(p.hdr_off >= pp.body_off &&
                       p.body_off + p.body_len <= pp.body_off + pp.body_len);
        }
        uint32_t nch = 0;
        for (uint32_t q = p.first_child; q && nch <= c.nparts; nch++) {
            store_part qp;
            FUZZ_CHECK(q < c.nparts && store_cache_part(&c, q, &qp) == 0);
            FUZZ_CHECK(qp.parent == i);
            q = qp.next_sibling;
        }
        FUZZ_CHECK(nch == p.nchildren);
        if (p.envelope != -1)
            FUZZ_CHECK(p.envelope >= 1 &&
                       (uint32_t)p.envelope < c.nenvelopes);
        for (int disp = 0; disp < 2; disp++) {
            uint32_t np = disp ? p.ndisp_params : p.nparams;
            store_str nm, v;
            for (uint32_t j = 0; j < np; j++) {
                FUZZ_CHECK(store_cache_param(&c, i, disp, j, &nm, &v) == 0);
                FUZZ_CHECK(nm.p && v.p);
                touch(nm), touch(v);
            }
            FUZZ_CHECK(store_cache_param(&c, i, disp, np, &nm, &v) ==
                       -ERANGE);
        }
        (void)mime_part_is_text(&p);
        store_buf t = { 0 };
        rc = mime_part_text(&c, i, msg, size, &t);
        FUZZ_CHECK(rc == 0 || rc == -ENOMEM);
        if (!rc)
            check_utf8_out(&t, 0);
        free(t.data);
        /* decoders on this leaf's body with its own encoding */
        if (!p.first_child && (fuzz_next(&rng) & 3) == 0) {
            store_buf b = { 0 };
            uint64_t bs = 0;
            rc = mime_decode_binary(p.encoding, msg + p.body_off,
                                    (size_t)p.body_len, true, &b, &bs);
            FUZZ_CHECK(rc == 0 || rc == -ENOMEM || rc == -ENOTSUP);
            if (!rc)
                FUZZ_CHECK(bs == b.len);
            free(b.data);
        }
    }
    store_part tmp;
    FUZZ_CHECK(store_cache_part(&c, c.nparts, &tmp) == -ERANGE);
    for (uint32_t e = 0; e < c.nenvelopes; e++) {
        store_envelope env;
        FUZZ_CHECK(store_cache_envelope(&c, e, &env) == 0);
        touch(env.date), touch(env.subject), touch(env.from);
        touch(env.sender), touch(env.reply_to), touch(env.to), touch(env.cc);
        touch(env.bcc), touch(env.in_reply_to), touch(env.message_id);
        touch(env.references);
        for (int utf8 = 0; utf8 < 2; utf8++) {
            imap_out o = { 0 };
            rc = imap_render_envelope(&o, &c, e, utf8);
            FUZZ_CHECK(rc == 0 || rc == -ENOMEM);
            if (!rc)
                FUZZ_CHECK(o.len >= 2 && o.p[0] == '(' && o.p[o.len - 1] == ')');
            imap_out_free(&o);
        }
    }
    store_envelope env;
    FUZZ_CHECK(store_cache_envelope(&c, c.nenvelopes, &env) == -ERANGE);
    {
        imap_out o = { 0 };
        FUZZ_CHECK(imap_render_envelope(&o, &c, c.nenvelopes, false) == -ERANGE);
        FUZZ_CHECK(o.len == 0);
        imap_out_free(&o);
    }
    for (int ext = 0; ext < 2; ext++)
        for (int utf8 = 0; utf8 < 2; utf8++) {
            imap_out o = { 0 };
            rc = imap_render_body(&o, &c, ext, utf8);
            FUZZ_CHECK(rc == 0 || rc == -ENOMEM);
            if (!rc) {
                FUZZ_CHECK(o.len >= 2 && o.p[0] == '(' && o.p[o.len - 1] == ')');
                FUZZ_CHECK(!memchr(o.p, '\0', o.len));
            }
            imap_out_free(&o);
        }

    /* store_cache_find with paths from the input and from the tree */
    uint32_t path[8];
    for (int k = 0; k < 4; k++) {
        size_t n = fuzz_next(&rng) % 5;
        for (size_t j = 0; j < n; j++)
            path[j] = fuzz_next(&rng) % 5;     /* 0 and too big included */
        int f = store_cache_find(&c, path, n);
        FUZZ_CHECK(f == -ENOENT || (f >= 0 && (uint32_t)f < c.nparts));
        if (n == 0)
            FUZZ_CHECK(f == 0);
    }

    /* sections */
    static const char *const fixed[] = {
        "BODY[]", "BODY.PEEK[HEADER]", "BODY[TEXT]", "RFC822", "RFC822.HEADER",
        "RFC822.TEXT", "BINARY[]", "BINARY.SIZE[1]", "BINARY.PEEK[1]<0.10>",
        "BODY[1]", "BODY[1.MIME]", "BODY[2.1]", "BODY[1.TEXT]",
        "BODY[HEADER.FIELDS (From To \"Subject\")]<0.100>",
        "BODY[HEADER.FIELDS.NOT (Content-Type Received)]",
        "BODY[1.HEADER.FIELDS (Subject)]", "BINARY[2]<5.3>", "BODY[]<7.1>",
        "BINARY.SIZE[2.1]",
    };
    for (size_t k = 0; k < sizeof fixed / sizeof *fixed; k++)
        section(fixed[k], &c, msg, size);
    char pbuf[512], spec[600];
    uint32_t nsec = c.nparts < 24 ? c.nparts : 24;
    for (uint32_t k = 0; k < nsec; k++) {
        uint32_t i = c.nparts <= 24 ? k : fuzz_next(&rng) % c.nparts;
        size_t pl = part_path(&c, i, pbuf, sizeof pbuf);
        static const char *const forms[] = {
            "BODY[%s]", "BINARY[%s]", "BINARY.SIZE[%s]", "BODY[%s.MIME]",
            "BODY.PEEK[%s.HEADER]", "BODY[%s.TEXT]<1.20>",
            "BODY[%s.HEADER.FIELDS (content-type)]",
        };
        const char *form = forms[fuzz_next(&rng) % (sizeof forms / sizeof *forms)];
        if (!pl && strstr(form, "%s."))
            continue;
        snprintf(spec, sizeof spec, form, pbuf);
        section(spec, &c, msg, size);
        /* the tree's own path must find the part */
        if (pl) {
            uint32_t pth[STORE_MIME_MAX_DEPTH + 2];
            size_t np = 0;
            for (char *s = pbuf; *s && np < sizeof pth / sizeof *pth;) {
                pth[np++] = (uint32_t)strtoul(s, &s, 10);
                if (*s == '.')
                    s++;
            }
            fuzz_sink += (uint64_t)store_cache_find(&c, pth, np);
        }
    }
    /* a section string taken from the input itself */
    if (size > 0) {
        size_t sl = size < 200 ? size : 200;
        char s2[220];
        memcpy(s2, "BODY[", 5);
        memcpy(s2 + 5, data, sl);
        s2[5 + sl] = '\0';
        section(s2, &c, msg, size);
    }

    decoders(msg, size, fuzz_next(&rng));
    free(blob.data);
    return 0;
}
