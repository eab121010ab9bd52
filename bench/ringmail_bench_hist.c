/* Fixed-memory log-linear latency histogram (see ringmail_bench.h). */
#include "bench/ringmail_bench.h"

static unsigned index_of(uint64_t v)
{
    if (v < 128)
        return (unsigned)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - 6;                    /* v >> shift is in [64, 127] */
    return 128 + (unsigned)(shift - 1) * 64 + (unsigned)((v >> shift) - 64);
}

static uint64_t upper_of(unsigned i)
{
    if (i < 128)
        return i;
    unsigned shift = (i - 128) / 64 + 1;
    uint64_t sub = (i - 128) % 64 + 64;
    return ((sub + 1) << shift) - 1;
}

void bench_hist_add(bench_hist *h, uint64_t ns)
{
    h->b[index_of(ns)]++;
    h->count++;
    if (ns > h->max)
        h->max = ns;
}

void bench_hist_merge(bench_hist *dst, const bench_hist *src)
{
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++)
        dst->b[i] += src->b[i];
    dst->count += src->count;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t bench_hist_quantile(const bench_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t want = (uint64_t)(q * (double)h->count + 0.999999);
    if (want < 1)
        want = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want) {
            uint64_t v = upper_of(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}
