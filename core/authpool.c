/* core/authpool.c — the auth thread pool and the verified-credentials
 * cache. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/authpool.h"
#include "core/sasl_crypto.h"

struct job {
    authpool_work_fn work;
    authpool_done_fn done;
    void *arg;
    net_server *srv;
    unsigned worker;
    int status;
    struct job *next;
};

struct authpool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct job *head, *tail;
    size_t queued, queue_max;
    bool closing;
    unsigned nthreads;
    pthread_t *threads;
};

static void run_done(void *arg)
{
    struct job *j = arg;
    j->done(j->arg, j->status);
    free(j);
}

/* Hand the job's completion to its worker (or run it here: see header). */
static void deliver(struct job *j)
{
    if (!j->done) {
        free(j);
        return;
    }
    if (!j->srv || net_post(j->srv, j->worker, run_done, j) < 0)
        run_done(j);
}

static void *pool_main(void *arg)
{
    authpool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (!p->head && !p->closing)
            pthread_cond_wait(&p->cond, &p->lock);
        if (p->closing) {
            /* authpool_free cancels what is still queued. */
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        struct job *j = p->head;
        p->head = j->next;
        if (!p->head)
            p->tail = NULL;
        p->queued--;
        pthread_mutex_unlock(&p->lock);
        j->work(j->arg);
        j->status = 0;
        deliver(j);
    }
}

int authpool_new(unsigned threads, unsigned queue_max, authpool **out)
{
    authpool *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->nthreads = threads ? threads : AUTHPOOL_DEFAULT_THREADS;
    p->queue_max = queue_max ? queue_max : AUTHPOOL_DEFAULT_QUEUE;
    p->threads = calloc(p->nthreads, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return -ENOMEM;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    for (unsigned i = 0; i < p->nthreads; i++) {
        int rc = pthread_create(&p->threads[i], NULL, pool_main, p);
        if (rc) {
            p->nthreads = i;
            authpool_free(p);
            return -rc;
        }
    }
    *out = p;
    return 0;
}

int authpool_submit(authpool *p, authpool_work_fn work, void *arg,
                    authpool_done_fn done, net_server *srv, unsigned worker)
{
    if (!work)
        return -EINVAL;
    struct job *j = malloc(sizeof *j);
    if (!j)
        return -ENOMEM;
    *j = (struct job){.work = work, .done = done, .arg = arg, .srv = srv,
                      .worker = worker};
    int rc = 0;
    pthread_mutex_lock(&p->lock);
    if (p->closing)
        rc = -ESHUTDOWN;
    else if (p->queued >= p->queue_max)
        rc = -EAGAIN;
    else {
        if (p->tail)
            p->tail->next = j;
        else
            p->head = j;
        p->tail = j;
        p->queued++;
        pthread_cond_signal(&p->cond);
    }
    pthread_mutex_unlock(&p->lock);
    if (rc < 0)
        free(j);
    return rc;
}

size_t authpool_queued(authpool *p)
{
    pthread_mutex_lock(&p->lock);
    size_t n = p->queued;
    pthread_mutex_unlock(&p->lock);
    return n;
}

void authpool_free(authpool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->closing = true;
    struct job *j = p->head;
    p->head = p->tail = NULL;
    p->queued = 0;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    while (j) {
        struct job *next = j->next;
        j->status = -ECANCELED;
        deliver(j);
        j = next;
    }
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p->threads);
    free(p);
}

/* ---- the cache ---- */

struct centry {
    uint8_t digest[RM_SHA256_LEN];
    uint64_t gen;
    int64_t expires;            /* monotonic seconds */
    int32_t next;               /* bucket chain, -1 ends */
    bool used;
};

struct authcache {
    pthread_mutex_t lock;
    unsigned ttl;
    size_t max, nbuckets, ring;  /* ring: the slot to reuse next (oldest) */
    struct centry *e;
    int32_t *bucket;
    size_t count;
    uint8_t key[32];
};

static int64_t now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

int authcache_new(unsigned ttl_s, size_t max_entries, authcache **out)
{
    authcache *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->ttl = ttl_s;
    c->max = max_entries ? max_entries : 10000;
    if (c->max > (1u << 30))
        c->max = 1u << 30;
    c->nbuckets = 1;
    while (c->nbuckets < c->max)
        c->nbuckets <<= 1;
    int rc = 0;
    if (ttl_s) {
        c->e = calloc(c->max, sizeof *c->e);
        c->bucket = malloc(c->nbuckets * sizeof *c->bucket);
        if (!c->e || !c->bucket)
            rc = -ENOMEM;
        else if ((rc = rm_random(c->key, sizeof c->key)) == 0)
            for (size_t i = 0; i < c->nbuckets; i++)
                c->bucket[i] = -1;
    }
    if (rc < 0) {
        free(c->e);
        free(c->bucket);
        free(c);
        return rc;
    }
    pthread_mutex_init(&c->lock, NULL);
    *out = c;
    return 0;
}

void authcache_free(authcache *c)
{
    if (!c)
        return;
    if (c->e)
        memset(c->e, 0, c->max * sizeof *c->e);
    free(c->e);
    free(c->bucket);
    pthread_mutex_destroy(&c->lock);
    memset(c->key, 0, sizeof c->key);
    free(c);
}

static bool digest(const authcache *c, const char *user, const char *password,
                   uint8_t out[RM_SHA256_LEN])
{
    size_t ul = strlen(user), pl = strlen(password);
    char *buf = malloc(ul + pl + 1);
    if (!buf)
        return false;       /* out of memory: a miss, nothing inserted */
    memcpy(buf, user, ul + 1);
    memcpy(buf + ul + 1, password, pl);
    rm_hmac_sha256(c->key, sizeof c->key, buf, ul + pl + 1, out);
    memset(buf, 0, ul + pl + 1);
    free(buf);
    return true;
}

static size_t bucket_of(const authcache *c, const uint8_t *d)
{
    uint64_t h;
    memcpy(&h, d, sizeof h);
    return (size_t)(h & (c->nbuckets - 1));
}

static int32_t find(const authcache *c, const uint8_t *d)
{
    for (int32_t i = c->bucket[bucket_of(c, d)]; i >= 0; i = c->e[i].next)
        if (rm_memeq(c->e[i].digest, d, RM_SHA256_LEN))
            return i;
    return -1;
}

bool authcache_lookup(authcache *c, const char *user, const char *password,
                      uint64_t generation)
{
    if (!c || !c->ttl || !generation)
        return false;
    uint8_t d[RM_SHA256_LEN];
    if (!digest(c, user, password, d))
        return false;
    pthread_mutex_lock(&c->lock);
    int32_t i = find(c, d);
    bool hit = i >= 0 && c->e[i].gen == generation && now_s() < c->e[i].expires;
    pthread_mutex_unlock(&c->lock);
    return hit;
}

void authcache_insert(authcache *c, const char *user, const char *password,
                      uint64_t generation)
{
    if (!c || !c->ttl || !generation)
        return;
    uint8_t d[RM_SHA256_LEN];
    if (!digest(c, user, password, d))
        return;
    int64_t exp = now_s() + c->ttl;
    pthread_mutex_lock(&c->lock);
    int32_t i = find(c, d);
    if (i < 0) {
        i = (int32_t)c->ring;
        c->ring = (c->ring + 1) % c->max;
        struct centry *e = &c->e[i];
        if (e->used) {      /* evict the oldest: unlink it from its chain */
            int32_t *pp = &c->bucket[bucket_of(c, e->digest)];
            while (*pp != i)
                pp = &c->e[*pp].next;
            *pp = e->next;
        } else {
            c->count++;
        }
        memcpy(e->digest, d, sizeof d);
        e->used = true;
        size_t b = bucket_of(c, d);
        e->next = c->bucket[b];
        c->bucket[b] = i;
    }
    c->e[i].gen = generation;
    c->e[i].expires = exp;
    pthread_mutex_unlock(&c->lock);
}

size_t authcache_size(authcache *c)
{
    if (!c || !c->ttl)
        return 0;
    pthread_mutex_lock(&c->lock);
    size_t n = c->count;
    pthread_mutex_unlock(&c->lock);
    return n;
}

int authcache_verify(authcache *c, passwd_db *db, const char *user,
                     const char *password)
{
    uint64_t gen = c && c->ttl ? passwd_generation(db) : 0;
    if (gen && authcache_lookup(c, user, password, gen))
        return 0;
    int rc = passwd_verify(db, user, password);
    if (rc == 0 && gen)
        authcache_insert(c, user, password, gen);
    return rc;
}
