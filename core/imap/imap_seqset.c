/* core/imap/imap_seqset.c — sequence sets (RFC 9051 sequence-set, RFC 5182 "$"). */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "core/imap/imap_args.h"

/* seq-number: nz-number (1..4294967295) or "*" (UINT32_MAX, *star set). */
static int seq_number(const char *s, size_t len, size_t *i, uint32_t *out, bool *star)
{
    *star = false;
    if (*i < len && s[*i] == '*') {
        (*i)++;
        *out = UINT32_MAX;
        *star = true;
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
        bool lo_star, hi_star;
        if ((rc = seq_number(s, len, &i, &lo, &lo_star)) < 0)
            goto fail;
        hi = lo;
        hi_star = lo_star;
        if (i < len && s[i] == ':') {
            i++;
            if ((rc = seq_number(s, len, &i, &hi, &hi_star)) < 0)
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
        /* '*' sorts above every number, so "*:4" is 4:*; with equal
         * values (4294967295:*) the order does not matter. */
        bool swap = lo > hi || (lo == hi && lo_star && !hi_star);
        imap_seqrange *e = &out->r[out->n++];
        e->lo = swap ? hi : lo;
        e->hi = swap ? lo : hi;
        e->star = ((swap ? hi_star : lo_star) ? IMAP_SEQ_LO_STAR : 0u) |
                  ((swap ? lo_star : hi_star) ? IMAP_SEQ_HI_STAR : 0u);
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

static int range_cmp(const void *a, const void *b)
{
    const imap_range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

size_t imap_seqset_resolve(const imap_seqset *set, uint32_t star, imap_range *out)
{
    bool sorted = true;
    for (size_t i = 0; i < set->n; i++) {
        const imap_seqrange *e = &set->r[i];
        uint32_t lo = (e->star & IMAP_SEQ_LO_STAR) ? star : e->lo;
        uint32_t hi = (e->star & IMAP_SEQ_HI_STAR) ? star : e->hi;
        out[i].lo = lo < hi ? lo : hi;
        out[i].hi = lo < hi ? hi : lo;
        if (i && out[i].lo < out[i - 1].lo)
            sorted = false;
    }
    /* Clients usually send ascending sets: skip the sort then. */
    if (!sorted)
        qsort(out, set->n, sizeof *out, range_cmp);
    size_t w = 0;
    for (size_t i = 0; i < set->n; i++) {
        if (w && out[i].lo <= (uint64_t)out[w - 1].hi + 1) {
            if (out[i].hi > out[w - 1].hi)
                out[w - 1].hi = out[i].hi;
        } else {
            out[w++] = out[i];
        }
    }
    for (size_t i = 1; i < w; i++)
        assert(out[i - 1].hi < out[i].lo);
    return w;
}
