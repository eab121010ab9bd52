/* store/mapchain.c — maps of a growing file that stay valid while it grows.
 *
 * Readers hold raw pointers into the map without locks, so a map can never
 * move or shrink under them: each map reserves address space past the end
 * of the file (pages beyond EOF become readable once the file grows), and a
 * file that outgrows its reservation gets a new, larger map while the old
 * ones stay until the chain is destroyed. */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "store/internal.h"

#define MAP_MIN_RESERVE (1u << 20)

static size_t reserve_for(uint64_t need)
{
    size_t r = MAP_MIN_RESERVE;
    while (r < need * 2 && r < ((size_t)1 << 46))
        r <<= 1;
    return r;
}

static int seg_push(struct mapchain *mc, uint64_t need)
{
    size_t len = reserve_for(need);
    void *p = mmap(NULL, len, mc->prot, MAP_SHARED, mc->fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    struct mapseg *s = malloc(sizeof *s);
    if (!s) {
        munmap(p, len);
        return -ENOMEM;
    }
    s->base = p;
    s->len = len;
    s->prev = atomic_load(&mc->cur);
    atomic_store_explicit(&mc->cur, s, memory_order_release);
    return 0;
}

int store_mapchain_init(struct mapchain *mc, int fd, int prot, size_t need)
{
    RM_ASSERT(fd >= 0);
    mc->fd = fd;
    mc->prot = prot;
    atomic_init(&mc->cur, NULL);
    pthread_mutex_init(&mc->lock, NULL);
    int rc = seg_push(mc, need ? need : 1);
    if (rc < 0)
        pthread_mutex_destroy(&mc->lock);
    return rc;
}

void store_mapchain_destroy(struct mapchain *mc)
{
    struct mapseg *s = atomic_load(&mc->cur);
    while (s) {
        struct mapseg *p = s->prev;
        munmap(s->base, s->len);
        free(s);
        s = p;
    }
    atomic_store(&mc->cur, NULL);
    pthread_mutex_destroy(&mc->lock);
}

uint8_t *store_mapchain_get(struct mapchain *mc, uint64_t off, uint64_t len)
{
    struct mapseg *s = atomic_load_explicit(&mc->cur, memory_order_acquire);
    if (off + len <= s->len)
        return s->base + off;
    pthread_mutex_lock(&mc->lock);
    s = atomic_load(&mc->cur);
    if (off + len > s->len && seg_push(mc, off + len) < 0) {
        pthread_mutex_unlock(&mc->lock);
        return NULL;
    }
    s = atomic_load(&mc->cur);
    pthread_mutex_unlock(&mc->lock);
    /* A damaged offset can ask for more than any reservation holds. */
    return off + len <= s->len ? s->base + off : NULL;
}
