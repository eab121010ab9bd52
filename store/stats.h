/* store/stats.h — counters the store keeps for whoever watches the process
 * (ringmaild's metrics), and the latency histogram every layer shares.
 *
 * The store knows nothing above it: the caller hands it a store_stats in
 * its own memory (store_stats_attach; ringmaild puts it in a region shared
 * by its processes) and reads it whenever it likes.  Until then nothing is
 * counted.  Counters are relaxed atomics: appends, flushes and compactions
 * already take a mailbox lock or wait for the disk, so one uncontended
 * atomic add beside them costs nothing measurable, and they run on any
 * thread (workers, the flush pool, ringmail-admin).
 *
 * store_hist: fixed buckets from 50 us to 10 s (STORE_HIST_BOUNDS_NS), the
 * count of observations per bucket (not cumulative: a reader sums them),
 * the last one being "above every bound", and the sum in nanoseconds.
 * Header only, so that every layer can use it without linking the store. */
#ifndef RINGMAIL_STORE_STATS_H
#define RINGMAIL_STORE_STATS_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#define STORE_HIST_BOUNDS 17
/* Upper bounds (inclusive), nanoseconds: 50us 100us 250us 500us 1ms 2.5ms
 * 5ms 10ms 25ms 50ms 100ms 250ms 500ms 1s 2.5s 5s 10s. */
#define STORE_HIST_BOUNDS_NS                                                        \
    {50000ull, 100000ull, 250000ull, 500000ull, 1000000ull, 2500000ull, 5000000ull, \
     10000000ull, 25000000ull, 50000000ull, 100000000ull, 250000000ull, 500000000ull, \
     1000000000ull, 2500000000ull, 5000000000ull, 10000000000ull}

typedef struct store_hist {
    _Atomic uint64_t bucket[STORE_HIST_BOUNDS + 1];    /* last: +Inf only */
    _Atomic uint64_t sum_ns;
} store_hist;

static inline unsigned store_hist_bucket(uint64_t ns)
{
    static const uint64_t b[STORE_HIST_BOUNDS] = STORE_HIST_BOUNDS_NS;
    unsigned i = 0;
    while (i < STORE_HIST_BOUNDS && ns > b[i])
        i++;
    return i;
}

/* From any thread (atomic adds). */
static inline void store_hist_add(store_hist *h, uint64_t ns)
{
    atomic_fetch_add_explicit(&h->bucket[store_hist_bucket(ns)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}

/* From the one thread that writes h (a worker's own block): a plain load
 * and store, no locked instruction; readers on other threads still see
 * whole values. */
static inline void store_stat_inc_own(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void store_hist_add_own(store_hist *h, uint64_t ns)
{
    store_stat_inc_own(&h->bucket[store_hist_bucket(ns)], 1);
    store_stat_inc_own(&h->sum_ns, ns);
}

static inline uint64_t store_stat_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

typedef struct store_stats {
    _Atomic uint64_t appended;          /* messages appended (APPEND, COPY, LMTP) */
    _Atomic uint64_t appended_bytes;    /* their sizes as stored */
    _Atomic uint64_t flushes;           /* fdatasync of a mailbox log */
    store_hist fsync;                   /* how long each took */
    _Atomic uint64_t compactions;       /* store_compact runs that finished */
    _Atomic uint64_t compact_reclaimed; /* log bytes they freed */
    _Atomic uint64_t compact_done;      /* the running one: bytes copied ... */
    _Atomic uint64_t compact_total;     /* ... of this many (0: none runs) */
    _Atomic uint64_t faults_moved;      /* cold pages read in off the workers
                                           (store/fault.c) ... */
    _Atomic uint64_t faults_moved_bytes;    /* ... and their bytes */
} store_stats;

/* Count into st from now on (NULL: stop).  st must outlive the counting. */
void store_stats_attach(store_stats *st);
store_stats *store_stats_get(void);

#endif
