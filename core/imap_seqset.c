/* core/imap_seqset.c — sequence sets (RFC 9051 sequence-set, RFC 5182 "$"). */
#include <errno.h>
#include <stdlib.h>

#include "core/imap_args.h"

/* seq-number: nz-number (1..4294967295) or "*" (UINT32_MAX). */
static int seq_number(const char *s, size_t len, size_t *i, uint32_t *out)
{
    if (*i < len && s[*i] == '*') {
        (*i)++;
        *out = UINT32_MAX;
        return 0;
    }
    if (*i >= len || s[*i] < '1' || s[*i] > '9')
        return -EINVAL;     /* also rejects 0 and leading zeros */
    uint64_t v = 0;
    while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
        v = v * 10 + (uint64_t)(s[*i] - '0');
        if (v > UINT32_MAX)
            return -EINVAL;
        (*i)++;
    }
    *out = (uint32_t)v;
    return 0;
}

int imap_seqset_parse(const char *s, size_t len, size_t max_ranges,
                      imap_seqset *out, bool *dollar)
{
    int rc = 0;
    size_t cap = 0, i = 0;
    out->r = NULL;
    out->n = 0;
    if (dollar) {
        *dollar = false;
        if (len == 1 && s[0] == '$') {
            *dollar = true;
            return 0;
        }
    }
    if (!len)
        return -EINVAL;
    for (;;) {
        uint32_t lo, hi;
        if ((rc = seq_number(s, len, &i, &lo)) < 0)
            goto fail;
        hi = lo;
        if (i < len && s[i] == ':') {
            i++;
            if ((rc = seq_number(s, len, &i, &hi)) < 0)
                goto fail;
        }
        if (max_ranges && out->n == max_ranges) {
            rc = -E2BIG;
            goto fail;
        }
        if (out->n == cap) {
            size_t nc = cap ? cap * 2 : 4;
            void *nr = realloc(out->r, nc * sizeof *out->r);
            if (!nr) {
                rc = -ENOMEM;
                goto fail;
            }
            out->r = nr;
            cap = nc;
        }
        out->r[out->n].lo = lo < hi ? lo : hi;
        out->r[out->n].hi = lo < hi ? hi : lo;
        out->n++;
        if (i == len)
            return 0;
        if (s[i] != ',') {
            rc = -EINVAL;
            goto fail;
        }
        i++;        /* a trailing "," fails in seq_number */
    }
fail:
    free(out->r);
    out->r = NULL;
    out->n = 0;
    return rc;
}
