/* tests/failalloc/failalloc.c — an LD_PRELOAD library that makes ringmaild's
 * allocations of one exact size fail, so that the integration tests can
 * check what the server answers when memory runs out at a known place
 * (tests/integration/test_imap_exact_a.py: the view of a SELECT).
 *
 * Active only in a process named "ringmaild" with RINGMAIL_FAILALLOC_SIZE
 * set: then every malloc, calloc and realloc of exactly that many bytes
 * returns NULL with errno ENOMEM; everything else goes to the allocator
 * underneath (glibc's or jemalloc).  Not built with the sanitizers, whose
 * runtime must come first. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static size_t fail_size;        /* 0: inactive */

/* dlsym may allocate while the real functions are being looked up: from
 * here, never freed. */
static _Alignas(max_align_t) char boot[8192];
static size_t boot_used;
static int resolving;

static void *boot_alloc(size_t n)
{
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (n > sizeof boot - boot_used)
        return NULL;
    void *p = boot + boot_used;
    boot_used += n;
    return p;
}

static int in_boot(const void *p)
{
    return (const char *)p >= boot && (const char *)p < boot + sizeof boot;
}

static void resolve(void)
{
    if (real_malloc || resolving)
        return;
    resolving = 1;
    real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    resolving = 0;
}

__attribute__((constructor)) static void failalloc_init(void)
{
    resolve();
    const char *v = getenv("RINGMAIL_FAILALLOC_SIZE");
    if (v && !strcmp(program_invocation_short_name, "ringmaild"))
        fail_size = strtoull(v, NULL, 10);
}

static int fails(size_t n)
{
    if (fail_size && n == fail_size) {
        errno = ENOMEM;
        return 1;
    }
    return 0;
}

void *malloc(size_t n)
{
    if (!real_malloc) {
        resolve();
        if (!real_malloc)
            return boot_alloc(n);
    }
    return fails(n) ? NULL : real_malloc(n);
}

void *calloc(size_t k, size_t n)
{
    if (!real_calloc) {
        resolve();
        if (!real_calloc) {
            void *p = n && k > SIZE_MAX / n ? NULL : boot_alloc(k * n);
            return p;   /* boot is zeroed and never reused */
        }
    }
    if (n && k <= SIZE_MAX / n && fails(k * n))
        return NULL;
    return real_calloc(k, n);
}

void *realloc(void *p, size_t n)
{
    if (!real_realloc)
        resolve();
    if (in_boot(p) || !real_realloc) {
        void *q = malloc(n);
        if (q && p) {
            /* a boot block's size is not kept: copy what boot holds after it */
            size_t room = (size_t)(boot + sizeof boot - (char *)p);
            memcpy(q, p, n < room ? n : room);
        }
        return q;
    }
    return fails(n) ? NULL : real_realloc(p, n);
}

void free(void *p)
{
    if (!p || in_boot(p))
        return;
    if (!real_free)
        resolve();
    if (real_free)
        real_free(p);
}
