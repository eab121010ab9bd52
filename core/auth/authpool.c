/* core/auth/authpool.c — the auth thread pool and the verified-credentials
 * cache. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/auth/authpool.h"
#include "core/auth/sasl_crypto.h"

/* A job is in exactly one place: the ready list (FIFO), the waiting list
 * (sorted by not_before), or with a thread (RUNNING) until its done. */
enum job_where { IN_READY, IN_WAITING, RUNNING };

struct authpool_job {
    authpool_work_fn work;
    authpool_done_fn done;
    void *arg;
    net_server *srv;
    unsigned worker;
    int status;
    enum job_where where;
    uint64_t not_before;        /* authpool_now_ms() time */
    uint64_t submitted_ns;      /* store_stat_now_ns(), for the wait */
    struct authpool_job *prev, *next;
};

struct jlist {
    struct authpool_job *head, *tail;
};

struct authpool {
    pthread_mutex_t lock;
    pthread_cond_t cond;        /* on CLOCK_MONOTONIC, for the waiting list */
    struct jlist ready, waiting;
    size_t queued, queue_max;   /* queued: both lists */
    uint64_t ran, cancelled;
    authpool_stats *stats;      /* authpool_set_stats; NULL: none */
    bool closing;
    unsigned nthreads;
    pthread_t *threads;
};

/* The queue depth for whoever watches (lock held). */
static void publish(authpool *p)
{
    if (p->stats)
        atomic_store_explicit(&p->stats->queued, p->queued, memory_order_relaxed);
}

void authpool_set_stats(authpool *p, authpool_stats *st)
{
    pthread_mutex_lock(&p->lock);
    p->stats = st;
    publish(p);
    pthread_mutex_unlock(&p->lock);
}

uint64_t authpool_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void list_unlink(struct jlist *l, struct authpool_job *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        l->head = j->next;
    if (j->next)
        j->next->prev = j->prev;
    else
        l->tail = j->prev;
    j->prev = j->next = NULL;
}

/* Insert after `after` (NULL: at the head). */
static void list_insert_after(struct jlist *l, struct authpool_job *after,
                              struct authpool_job *j)
{
    j->prev = after;
    j->next = after ? after->next : l->head;
    if (j->next)
        j->next->prev = j;
    else
        l->tail = j;
    if (after)
        after->next = j;
    else
        l->head = j;
}

static void run_done(void *arg)
{
    struct authpool_job *j = arg;
    j->done(j->arg, j->status);
    free(j);
}

/* Hand the job's completion to its worker (or run it here: see header). */
static void deliver(struct authpool_job *j)
{
    if (!j->done) {
        free(j);
        return;
    }
    if (!j->srv || net_post(j->srv, j->worker, run_done, j) < 0)
        run_done(j);
}

/* Move the waiting jobs that are due to the ready list (lock held).
 * Returns the time the first still waiting job is due, 0 if none. */
static uint64_t promote_due(authpool *p)
{
    uint64_t now = 0;
    while (p->waiting.head) {
        struct authpool_job *j = p->waiting.head;
        if (!now)
            now = authpool_now_ms();
        if (j->not_before > now)
            return j->not_before;
        list_unlink(&p->waiting, j);
        j->where = IN_READY;
        list_insert_after(&p->ready, p->ready.tail, j);
    }
    return 0;
}

static void *pool_main(void *arg)
{
    authpool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        if (p->closing) {
            /* authpool_free cancels what is still queued. */
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        uint64_t due = promote_due(p);
        struct authpool_job *j = p->ready.head;
        if (!j) {
            if (due) {
                struct timespec ts = {.tv_sec = (time_t)(due / 1000),
                                      .tv_nsec = (long)(due % 1000) * 1000000L};
                pthread_cond_timedwait(&p->cond, &p->lock, &ts);
            } else {
                pthread_cond_wait(&p->cond, &p->lock);
            }
            continue;
        }
        list_unlink(&p->ready, j);
        j->where = RUNNING;
        p->queued--;
        p->ran++;
        publish(p);
        if (p->stats) {
            /* The wait counts from when the job could start: a penalty
             * delay (not_before) is deliberate, not the pool's queue. */
            uint64_t now = store_stat_now_ns(), from = j->submitted_ns;
            if (j->not_before && j->not_before * 1000000ull > from)
                from = j->not_before * 1000000ull;
            store_hist_add(&p->stats->wait, now > from ? now - from : 0);
        }
        pthread_mutex_unlock(&p->lock);
        j->work(j->arg);
        j->status = 0;
        deliver(j);
        pthread_mutex_lock(&p->lock);
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
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);
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

int authpool_submit_at(authpool *p, authpool_work_fn work, void *arg,
                       authpool_done_fn done, net_server *srv, unsigned worker,
                       uint64_t not_before_ms, authpool_job **handle)
{
    if (!work)
        return -EINVAL;
    struct authpool_job *j = malloc(sizeof *j);
    if (!j)
        return -ENOMEM;
    *j = (struct authpool_job){.work = work, .done = done, .arg = arg, .srv = srv,
                               .worker = worker, .not_before = not_before_ms,
                               .submitted_ns = store_stat_now_ns()};
    int rc = 0;
    pthread_mutex_lock(&p->lock);
    if (p->closing) {
        rc = -ESHUTDOWN;
    } else if (p->queued >= p->queue_max) {
        rc = -EAGAIN;
    } else {
        if (not_before_ms && not_before_ms > authpool_now_ms()) {
            /* Sorted by time, equal times in submission order; most
             * penalties end after the ones already waiting, so the scan
             * from the tail is short. */
            struct authpool_job *after = p->waiting.tail;
            while (after && after->not_before > not_before_ms)
                after = after->prev;
            j->where = IN_WAITING;
            list_insert_after(&p->waiting, after, j);
        } else {
            j->where = IN_READY;
            list_insert_after(&p->ready, p->ready.tail, j);
        }
        p->queued++;
        publish(p);
        if (handle)
            *handle = j;
        /* A waiting thread recomputes its wake-up time, so one is enough
         * even for a job that is due earlier than the others. */
        pthread_cond_signal(&p->cond);
    }
    pthread_mutex_unlock(&p->lock);
    if (rc < 0)
        free(j);
    return rc;
}

int authpool_submit(authpool *p, authpool_work_fn work, void *arg,
                    authpool_done_fn done, net_server *srv, unsigned worker)
{
    return authpool_submit_at(p, work, arg, done, srv, worker, 0, NULL);
}

bool authpool_cancel(authpool *p, authpool_job *j)
{
    if (!j)
        return false;
    pthread_mutex_lock(&p->lock);
    bool queued = j->where != RUNNING;
    if (queued) {
        list_unlink(j->where == IN_READY ? &p->ready : &p->waiting, j);
        p->queued--;
        p->cancelled++;
        publish(p);
    }
    pthread_mutex_unlock(&p->lock);
    if (queued)
        free(j);
    return queued;
}

size_t authpool_queued(authpool *p)
{
    pthread_mutex_lock(&p->lock);
    size_t n = p->queued;
    pthread_mutex_unlock(&p->lock);
    return n;
}

void authpool_counts(authpool *p, uint64_t *ran, uint64_t *cancelled)
{
    pthread_mutex_lock(&p->lock);
    if (ran)
        *ran = p->ran;
    if (cancelled)
        *cancelled = p->cancelled;
    pthread_mutex_unlock(&p->lock);
}

static void cancel_list(struct authpool_job *j)
{
    while (j) {
        struct authpool_job *next = j->next;
        j->status = -ECANCELED;
        deliver(j);
        j = next;
    }
}

void authpool_free(authpool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->closing = true;
    struct authpool_job *ready = p->ready.head, *waiting = p->waiting.head;
    /* Taken from the lists: authpool_cancel must no longer unlink them
     * (their done runs with -ECANCELED). */
    for (struct authpool_job *j = ready; j; j = j->next)
        j->where = RUNNING;
    for (struct authpool_job *j = waiting; j; j = j->next)
        j->where = RUNNING;
    p->ready.head = p->ready.tail = p->waiting.head = p->waiting.tail = NULL;
    p->queued = 0;
    publish(p);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    cancel_list(ready);
    cancel_list(waiting);
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

size_t authcache_flush(authcache *c)
{
    if (!c || !c->ttl)
        return 0;
    pthread_mutex_lock(&c->lock);
    size_t n = c->count;
    memset(c->e, 0, c->max * sizeof *c->e);
    for (size_t i = 0; i < c->nbuckets; i++)
        c->bucket[i] = -1;
    c->count = 0;
    c->ring = 0;
    pthread_mutex_unlock(&c->lock);
    return n;
}

static int verify_cached(authcache *c, passwd_db *db, const char *user,
                         const char *password, unsigned *answer_delay_ms)
{
    uint64_t gen = c && c->ttl ? passwd_generation(db) : 0;
    if (gen && authcache_lookup(c, user, password, gen))
        return 0;
    int rc = answer_delay_ms ? passwd_verify_timed(db, user, password, answer_delay_ms)
                             : passwd_verify(db, user, password);
    if (rc == 0 && gen)
        authcache_insert(c, user, password, gen);
    return rc;
}

int authcache_verify(authcache *c, passwd_db *db, const char *user,
                     const char *password)
{
    return verify_cached(c, db, user, password, NULL);
}

int authcache_verify_timed(authcache *c, passwd_db *db, const char *user,
                           const char *password, unsigned *answer_delay_ms)
{
    *answer_delay_ms = 0;
    return verify_cached(c, db, user, password, answer_delay_ms);
}

int authcache_verify_userdb(authcache *c, userdb *db, const char *user,
                            const char *password, unsigned *answer_delay_ms)
{
    *answer_delay_ms = 0;
    uint64_t gen = c && c->ttl ? userdb_generation(db) : 0;
    if (gen && authcache_lookup(c, user, password, gen))
        return 0;
    int rc = userdb_verify(db, user, password, NULL, answer_delay_ms);
    if (rc == 0 && gen)
        authcache_insert(c, user, password, gen);
    return rc;
}
