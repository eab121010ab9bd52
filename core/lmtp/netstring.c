/* core/lmtp/netstring.c — netstrings (see netstring.h). */
#include "core/lmtp/netstring.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

enum { NS_LEN, NS_STRING, NS_COMMA, NS_FAILED };

void netstring_dec_init(netstring_dec *d, size_t max)
{
    memset(d, 0, sizeof *d);
    d->max = max;
    d->state = NS_LEN;
}

static int fail(netstring_dec *d, int err)
{
    d->state = NS_FAILED;
    return err;
}

int netstring_feed(netstring_dec *d, const uint8_t *p, size_t n, char *buf,
                   size_t *used, size_t *len)
{
    size_t at = 0;
    *used = 0;
    if (d->state == NS_FAILED)
        return -EPROTO;
    while (at < n) {
        switch (d->state) {
        case NS_LEN: {
            uint8_t c = p[at++];
            if (c == ':') {
                if (!d->digits)
                    return fail(d, -EPROTO);
                d->state = d->len ? NS_STRING : NS_COMMA;
                d->have = 0;
                break;
            }
            if (c < '0' || c > '9')
                return fail(d, -EPROTO);
            /* "Extra zeros at the front of [len] are prohibited: [len]
             * begins with <30> exactly when [string] is empty." */
            if (d->digits == 1 && d->len == 0)
                return fail(d, -EPROTO);
            if (++d->digits > NETSTRING_LEN_DIGITS)
                return fail(d, -EPROTO);
            /* Past max already: say so now rather than read the rest
             * (and no overflow: max * 10 + 9 is checked against max
             * before it is computed). */
            size_t v = (size_t)(c - '0');
            if (v > d->max || d->len > (d->max - v) / 10)
                return fail(d, -EMSGSIZE);
            d->len = d->len * 10 + v;
            break;
        }
        case NS_STRING: {
            size_t k = n - at < d->len - d->have ? n - at : d->len - d->have;
            memcpy(buf + d->have, p + at, k);
            d->have += k;
            at += k;
            if (d->have == d->len)
                d->state = NS_COMMA;
            break;
        }
        case NS_COMMA:
            if (p[at++] != ',')
                return fail(d, -EPROTO);
            buf[d->len] = '\0';
            *len = d->len;
            *used = at;
            netstring_dec_init(d, d->max);
            return 1;
        default:
            return fail(d, -EPROTO);
        }
    }
    *used = at;
    return 0;
}

int netstring_encode(const void *s, size_t n, char *out, size_t cap)
{
    char head[NETSTRING_LEN_DIGITS + 2];
    int h = snprintf(head, sizeof head, "%zu:", n);
    if (h < 0 || (size_t)h + n + 1 > cap || (size_t)h + n + 1 > (size_t)INT32_MAX)
        return -ENOSPC;
    memcpy(out, head, (size_t)h);
    if (n)
        memcpy(out + h, s, n);
    out[(size_t)h + n] = ',';
    return (int)((size_t)h + n + 1);
}
