/* core/imap/imap_mutf7.c — modified UTF-7 mailbox names (RFC 3501 5.1.3).
 *
 * Decoding is strict so that every name has exactly one encoded form: two
 * spellings of one mailbox would otherwise reach the store as different
 * names. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/imap/imap_args.h"
#include "store/utf8.h"

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64_value(char c)
{
    const char *p = c ? strchr(b64, c) : NULL;
    return p ? (int)(p - b64) : -1;
}

static bool printable(uint32_t c)
{
    return c >= 0x20 && c <= 0x7e;
}

/* A growing output string. */
struct sbuf {
    char *p;
    size_t len, cap;
};

static int sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int sb_utf8(struct sbuf *b, uint32_t c)
{
    char u[STORE_UTF8_MAX];
    return sb_add(b, u, store_utf8_encode(c, u));
}

/* Decode the base64 run s[0..n) (between "&" and "-") as UTF-16BE. */
static int decode_run(struct sbuf *b, const char *s, size_t n)
{
    uint32_t bits = 0, hi = 0;
    unsigned nbits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value(s[i]);
        if (v < 0)
            return -EINVAL;
        bits = (bits << 6) | (uint32_t)v;
        nbits += 6;
        if (nbits < 16)
            continue;
        nbits -= 16;
        uint32_t u = (bits >> nbits) & 0xffff;
        bits &= (1u << nbits) - 1;
        if (hi) {
            if (u < 0xdc00 || u > 0xdfff)
                return -EINVAL;         /* high surrogate not followed by low */
            u = 0x10000 + ((hi - 0xd800) << 10) + (u - 0xdc00);
            hi = 0;
        } else if (u >= 0xd800 && u <= 0xdbff) {
            hi = u;
            continue;
        } else if (u >= 0xdc00 && u <= 0xdfff) {
            return -EINVAL;             /* lone low surrogate */
        } else if (printable(u) || u == 0) {
            return -EINVAL;             /* must be written as itself */
        }
        if (sb_utf8(b, u) < 0)
            return -ENOMEM;
    }
    /* Leftover bits: fewer than 6, all zero (shortest, canonical encoding). */
    if (hi || nbits >= 6 || bits)
        return -EINVAL;
    return 0;
}

char *imap_mutf7_to_utf8(const char *s, size_t len)
{
    struct sbuf b = {0};
    int rc = sb_add(&b, "", 0);
    bool after_run = false;     /* "&...-" just ended: another would be adjacent */
    for (size_t i = 0; rc == 0 && i < len;) {
        unsigned char c = (unsigned char)s[i];
        if (c != '&') {
            if (!printable(c)) {
                rc = -EINVAL;
                break;
            }
            rc = sb_add(&b, s + i, 1);
            i++;
            after_run = false;
            continue;
        }
        const char *dash = memchr(s + i + 1, '-', len - i - 1);
        if (!dash) {
            rc = -EINVAL;       /* unterminated "&" */
            break;
        }
        size_t runlen = (size_t)(dash - (s + i + 1));
        if (!runlen) {
            rc = sb_add(&b, "&", 1);
            after_run = false;
        } else if (after_run) {
            rc = -EINVAL;       /* "&...-&...-" should have been one run */
        } else {
            rc = decode_run(&b, s + i + 1, runlen);
            after_run = true;
        }
        i += runlen + 2;
    }
    if (rc < 0) {
        free(b.p);
        errno = -rc;
        return NULL;
    }
    return b.p;
}

/* Encode the UTF-16BE units u[0..n) as modified base64 between & and -. */
static int encode_run(struct sbuf *b, const uint16_t *u, size_t n)
{
    uint32_t bits = 0;
    unsigned nbits = 0;
    int rc = sb_add(b, "&", 1);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        bits = (bits << 16) | u[i];
        nbits += 16;
        while (rc == 0 && nbits >= 6) {
            nbits -= 6;
            rc = sb_add(b, &b64[(bits >> nbits) & 0x3f], 1);
        }
        bits &= (1u << nbits) - 1;
    }
    if (rc == 0 && nbits)
        rc = sb_add(b, &b64[(bits << (6 - nbits)) & 0x3f], 1);
    if (rc == 0)
        rc = sb_add(b, "-", 1);
    return rc;
}

char *imap_utf8_to_mutf7(const char *s)
{
    struct sbuf b = {0};
    uint16_t *u = NULL;
    size_t nu = 0, ucap = 0;
    int rc = sb_add(&b, "", 0);
    const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);
    while (rc == 0 && *p) {
        if (printable(*p)) {
            rc = sb_add(&b, *p == '&' ? "&-" : (const char *)p, *p == '&' ? 2 : 1);
            p++;
            continue;
        }
        /* A run of characters that are not printable ASCII. */
        nu = 0;
        while (*p && !printable(*p)) {
            uint32_t c;
            size_t k = store_utf8_decode(p, (size_t)(end - p), &c);
            if (!k) {
                rc = -EINVAL;
                break;
            }
            p += k;
            if (nu + 2 > ucap) {
                size_t nc = ucap ? ucap * 2 : 16;
                uint16_t *nup = realloc(u, nc * sizeof *u);
                if (!nup) {
                    rc = -ENOMEM;
                    break;
                }
                u = nup;
                ucap = nc;
            }
            if (c >= 0x10000) {
                u[nu++] = (uint16_t)(0xd800 + ((c - 0x10000) >> 10));
                u[nu++] = (uint16_t)(0xdc00 + ((c - 0x10000) & 0x3ff));
            } else {
                u[nu++] = (uint16_t)c;
            }
        }
        if (rc == 0)
            rc = encode_run(&b, u, nu);
    }
    free(u);
    if (rc < 0) {
        free(b.p);
        errno = -rc;
        return NULL;
    }
    return b.p;
}
