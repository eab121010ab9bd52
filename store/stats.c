/* store/stats.c — where the store counts (store/stats.h). */
#include <errno.h>
#include <unistd.h>

#include "store/internal.h"
#include "store/stats.h"

static _Atomic(store_stats *) attached;

void store_stats_attach(store_stats *st)
{
    atomic_store(&attached, st);
}

store_stats *store_stats_get(void)
{
    return atomic_load_explicit(&attached, memory_order_relaxed);
}

int store_stat_fdatasync(int fd)
{
    store_stats *st = store_stats_get();
    if (!st)
        return fdatasync(fd);
    uint64_t t0 = store_stat_now_ns();
    int rc = fdatasync(fd);
    atomic_fetch_add_explicit(&st->flushes, 1, memory_order_relaxed);
    store_hist_add(&st->fsync, store_stat_now_ns() - t0);
    return rc;
}
