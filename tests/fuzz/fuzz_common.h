/* tests/fuzz/fuzz_common.h — small helpers shared by the fuzz targets. */
#ifndef RINGMAIL_FUZZ_COMMON_H
#define RINGMAIL_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* A contract violation found by a target: report and abort, so libFuzzer
 * records the input as a crash. */
#define FUZZ_CHECK(cond)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: contract violated: %s\n", __FILE__,     \
                    __LINE__, #cond);                                       \
            abort();                                                        \
        }                                                                   \
    } while (0)

/* Deterministic choices derived from the input (xorshift64*). */
typedef struct fuzz_rng {
    uint64_t s;
} fuzz_rng;

static inline uint32_t fuzz_next(fuzz_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return (uint32_t)((r->s * 0x2545F4914F6CDD1DULL) >> 32);
}

static inline fuzz_rng fuzz_seed(const uint8_t *p, size_t n)
{
    fuzz_rng r = { 0x9E3779B97F4A7C15ULL };
    for (size_t i = 0; i < n; i++)
        r.s = (r.s ^ p[i]) * 0x100000001B3ULL;
    if (!r.s)
        r.s = 1;
    return r;
}

static volatile uint64_t fuzz_sink;

#endif
