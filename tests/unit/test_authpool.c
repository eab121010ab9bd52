/* tests/unit/test_authpool.c — the auth pool (jobs off the caller's
 * thread, completions on the right worker of a real net_server, the
 * bounded queue, shutdown) and the verified-credentials cache. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "core/auth/authpool.h"
#include "testutil.h"

/* ---- a real net server with 2 workers ---- */

static void *nop_open(net_conn *c) { (void)c; return NULL; }
static void nop_data(net_conn *c, void *u, const uint8_t *p, size_t n) { (void)c; (void)u; (void)p; (void)n; }
static void nop_close(net_conn *c, void *u) { (void)c; (void)u; }
static void nop_shutdown(net_conn *c, void *u) { (void)u; net_conn_close(c); }
static const net_conn_ops OPS = {.on_open = nop_open, .on_data = nop_data,
                                 .on_close = nop_close, .on_shutdown = nop_shutdown};

static pthread_t g_worker_tid[2];
static atomic_int g_tid_known;

static void record_tid(void *arg)
{
    g_worker_tid[(uintptr_t)arg] = pthread_self();
    atomic_fetch_add(&g_tid_known, 1);
}

static void wait_until(atomic_int *v, int want)
{
    for (int i = 0; i < 20000 && atomic_load(v) < want; i++)
        usleep(1000);
}

static net_server *start_server(void)
{
    net_config cfg = {.workers = 2};
    net_server *s;
    if (net_server_new(&cfg, &OPS, &s) < 0)
        return NULL;
    if (net_server_listen(s, "127.0.0.1:0") < 0 || net_server_start(s) < 0) {
        net_server_free(s);
        return NULL;
    }
    atomic_store(&g_tid_known, 0);
    net_post(s, 0, record_tid, (void *)(uintptr_t)0);
    net_post(s, 1, record_tid, (void *)(uintptr_t)1);
    wait_until(&g_tid_known, 2);
    return s;
}

static void stop_server(net_server *s)
{
    net_server_stop(s);
    net_server_wait(s);
    net_server_free(s);
}

struct job {
    unsigned worker;
    pthread_t caller;
    pthread_t work_tid, done_tid;
    int status;
    bool worked;
    atomic_int *done_count;
    atomic_int *gate;           /* work waits until it is nonzero, if set */
    atomic_int *started;
};

static void job_work(void *arg)
{
    struct job *j = arg;
    j->work_tid = pthread_self();
    j->worked = true;
    if (j->started)
        atomic_fetch_add(j->started, 1);
    while (j->gate && !atomic_load(j->gate))
        usleep(500);
}

static void job_done(void *arg, int status)
{
    struct job *j = arg;
    j->done_tid = pthread_self();
    j->status = status;
    atomic_fetch_add(j->done_count, 1);
}

static void t_runs_off_thread_done_on_worker(void)
{
    net_server *s = start_server();
    REQUIRE(s && atomic_load(&g_tid_known) == 2);
    authpool *p;
    REQUIRE_OK(authpool_new(0, 0, &p));
    enum { N = 64 };
    struct job jobs[N];
    atomic_int done = 0;
    for (int i = 0; i < N; i++) {
        jobs[i] = (struct job){.worker = (unsigned)i % 2, .caller = pthread_self(),
                               .status = 99, .done_count = &done};
        REQUIRE_OK(authpool_submit(p, job_work, &jobs[i], job_done, s, jobs[i].worker));
    }
    wait_until(&done, N);
    CHECK_EQ(atomic_load(&done), N);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        struct job *j = &jobs[i];
        if (!j->worked || j->status != 0 ||
            pthread_equal(j->work_tid, j->caller) ||
            pthread_equal(j->work_tid, g_worker_tid[0]) ||
            pthread_equal(j->work_tid, g_worker_tid[1]) ||
            !pthread_equal(j->done_tid, g_worker_tid[j->worker]))
            bad++;
    }
    CHECK_EQ(bad, 0);
    /* an invalid worker: net_post refuses, done runs on the pool thread */
    atomic_store(&done, 0);
    CHECK_EQ(authpool_submit(p, job_work, &jobs[0], job_done, s, 7), 0);
    wait_until(&done, 1);
    CHECK(!pthread_equal(jobs[0].done_tid, g_worker_tid[0]) &&
          !pthread_equal(jobs[0].done_tid, g_worker_tid[1]));
    authpool_free(p);
    stop_server(s);
}

static void t_queue_full(void)
{
    authpool *p;
    REQUIRE_OK(authpool_new(1, 2, &p));
    atomic_int gate = 0, started = 0, done = 0;
    struct job blocker = {.gate = &gate, .started = &started, .done_count = &done};
    struct job q[3];
    REQUIRE_OK(authpool_submit(p, job_work, &blocker, job_done, NULL, 0));
    wait_until(&started, 1);        /* the one thread is busy now */
    for (int i = 0; i < 3; i++)
        q[i] = (struct job){.done_count = &done};
    CHECK_EQ(authpool_submit(p, job_work, &q[0], job_done, NULL, 0), 0);
    CHECK_EQ(authpool_submit(p, job_work, &q[1], job_done, NULL, 0), 0);
    CHECK_EQ(authpool_queued(p), 2);
    CHECK_EQ(authpool_submit(p, job_work, &q[2], job_done, NULL, 0), -EAGAIN);
    CHECK_EQ(authpool_submit(p, NULL, &q[2], job_done, NULL, 0), -EINVAL);
    atomic_store(&gate, 1);
    wait_until(&done, 3);
    CHECK_EQ(atomic_load(&done), 3);
    CHECK(!q[2].worked);
    /* with srv == NULL, done runs on the pool thread, after the work */
    CHECK(pthread_equal(q[0].done_tid, q[0].work_tid));
    CHECK_EQ(authpool_submit(p, job_work, &q[2], job_done, NULL, 0), 0);
    wait_until(&done, 4);
    CHECK_EQ(atomic_load(&done), 4);
    authpool_free(p);
}

static void *freer(void *arg)
{
    authpool_free(arg);
    return NULL;
}

static void t_shutdown(void)
{
    net_server *s = start_server();
    REQUIRE(s);
    authpool *p;
    REQUIRE_OK(authpool_new(1, 1000, &p));
    atomic_int gate = 0, started = 0, done = 0;
    struct job blocker = {.gate = &gate, .started = &started, .done_count = &done,
                          .status = 99, .worker = 1};
    enum { MAXQ = 300 };
    static struct job q[MAXQ];
    REQUIRE_OK(authpool_submit(p, job_work, &blocker, job_done, s, 1));
    wait_until(&started, 1);        /* the one pool thread is busy */
    int nq = 0, rc = 0;
    for (; nq < 3; nq++) {
        q[nq] = (struct job){.done_count = &done, .status = 99, .worker = (unsigned)nq % 2};
        REQUIRE_OK(authpool_submit(p, job_work, &q[nq], job_done, s, q[nq].worker));
    }
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, freer, p) == 0);
    /* Until the pool says it is closing, jobs still queue behind the
     * blocker; then let the running job finish. */
    while (nq < MAXQ) {
        q[nq] = (struct job){.done_count = &done, .status = 99, .worker = (unsigned)nq % 2};
        rc = authpool_submit(p, job_work, &q[nq], job_done, s, q[nq].worker);
        if (rc < 0)
            break;
        nq++;
        usleep(1000);
    }
    CHECK_EQ(rc, -ESHUTDOWN);
    atomic_store(&gate, 1);
    pthread_join(t, NULL);
    wait_until(&done, 1 + nq);
    CHECK_EQ(atomic_load(&done), 1 + nq);
    CHECK_EQ(blocker.status, 0);            /* the running job completed */
    CHECK(blocker.worked);
    CHECK(pthread_equal(blocker.done_tid, g_worker_tid[1]));
    int bad = 0;
    for (int i = 0; i < nq; i++)
        if (q[i].status != -ECANCELED || q[i].worked ||
            !pthread_equal(q[i].done_tid, g_worker_tid[q[i].worker]))
            bad++;
    CHECK_EQ(bad, 0);
    stop_server(s);
}

/* ---- the cache ---- */

static void t_cache(void)
{
    authcache *c;
    REQUIRE_OK(authcache_new(0, 0, &c));
    authcache_insert(c, "u", "p", 1);
    CHECK(!authcache_lookup(c, "u", "p", 1));      /* ttl 0: disabled */
    CHECK_EQ(authcache_size(c), 0);
    authcache_free(c);

    REQUIRE_OK(authcache_new(60, 4, &c));
    authcache_insert(c, "u", "p", 1);
    CHECK(authcache_lookup(c, "u", "p", 1));
    CHECK(!authcache_lookup(c, "u", "q", 1));
    CHECK(!authcache_lookup(c, "v", "p", 1));
    CHECK(!authcache_lookup(c, "u", "p", 2));      /* the file changed */
    CHECK(!authcache_lookup(c, "up", "", 1));      /* no ambiguity in the key */
    CHECK(!authcache_lookup(c, "u", "p", 0));
    authcache_insert(c, "u", "p", 1);              /* refresh, no duplicate */
    CHECK_EQ(authcache_size(c), 1);
    char u[16];
    for (int i = 0; i < 4; i++) {
        snprintf(u, sizeof u, "user%d", i);
        authcache_insert(c, u, "pw", 1);
    }
    CHECK_EQ(authcache_size(c), 4);                /* bounded */
    CHECK(!authcache_lookup(c, "u", "p", 1));      /* the oldest went */
    for (int i = 0; i < 4; i++) {
        snprintf(u, sizeof u, "user%d", i);
        CHECK(authcache_lookup(c, u, "pw", 1));
    }
    for (int i = 0; i < 100; i++) {                /* churn */
        snprintf(u, sizeof u, "x%d", i);
        authcache_insert(c, u, "pw", 1);
        CHECK(authcache_lookup(c, u, "pw", 1));
    }
    CHECK_EQ(authcache_size(c), 4);
    authcache_free(c);

    REQUIRE_OK(authcache_new(1, 0, &c));
    authcache_insert(c, "u", "p", 1);
    CHECK(authcache_lookup(c, "u", "p", 1));
    sleep(2);
    CHECK(!authcache_lookup(c, "u", "p", 1));      /* expired */
    authcache_free(c);
}

static void t_cache_verify(void)
{
    const char *dir = test_tmpdir("authpool");
    char path[600];
    snprintf(path, sizeof path, "%s/passwd", dir);
    char *h;
    REQUIRE_OK(passwd_hash("SHA512-CRYPT", "old", &h));
    REQUIRE_OK(passwd_file_set(path, "ann", h, false));
    free(h);
    passwd_db *db;
    REQUIRE_OK(passwd_open(path, &db));
    authcache *c;
    REQUIRE_OK(authcache_new(300, 100, &c));
    CHECK_EQ(authcache_verify(c, db, "ann", "bad"), -EACCES);
    CHECK_EQ(authcache_size(c), 0);                /* failures never cached */
    CHECK_EQ(authcache_verify(c, db, "ann", "old"), 0);
    CHECK_EQ(authcache_size(c), 1);
    CHECK(authcache_lookup(c, "ann", "old", passwd_generation(db)));
    CHECK_EQ(authcache_verify(c, db, "ann", "old"), 0);
    /* a password change takes effect at once despite the cache */
    REQUIRE_OK(passwd_hash("SHA256-CRYPT", "new", &h));
    REQUIRE_OK(passwd_file_set(path, "ann", h, true));
    free(h);
    CHECK_EQ(authcache_verify(c, db, "ann", "old"), -EACCES);
    CHECK_EQ(authcache_verify(c, db, "ann", "new"), 0);
    CHECK_EQ(authcache_verify(NULL, db, "ann", "new"), 0);
    CHECK_EQ(authcache_verify(c, db, "nobody", "new"), -EACCES);
    authcache_free(c);
    passwd_close(db);
}

/* A queued job dropped by authpool_cancel never runs, and its done never
 * comes; a running one cannot be dropped. */
static void t_cancel(void)
{
    authpool *p;
    REQUIRE_OK(authpool_new(1, 100, &p));
    atomic_int gate = 0, started = 0, done = 0;
    struct job blocker = {.gate = &gate, .started = &started, .done_count = &done};
    authpool_job *hb = NULL, *h[4] = {NULL};
    struct job q[4];
    REQUIRE_OK(authpool_submit_at(p, job_work, &blocker, job_done, NULL, 0, 0, &hb));
    wait_until(&started, 1);
    for (int i = 0; i < 4; i++) {
        q[i] = (struct job){.done_count = &done, .status = 99};
        REQUIRE_OK(authpool_submit_at(p, job_work, &q[i], job_done, NULL, 0, 0, &h[i]));
    }
    CHECK_EQ(authpool_queued(p), 4);
    CHECK(!authpool_cancel(p, hb));         /* running: its done comes */
    CHECK(authpool_cancel(p, h[1]));
    CHECK(authpool_cancel(p, h[3]));
    CHECK_EQ(authpool_queued(p), 2);
    atomic_store(&gate, 1);
    wait_until(&done, 3);
    usleep(50000);                          /* nothing else may come */
    CHECK_EQ(atomic_load(&done), 3);
    CHECK(blocker.worked && q[0].worked && q[2].worked);
    CHECK(!q[1].worked && !q[3].worked);
    CHECK_EQ(q[1].status, 99);
    CHECK_EQ(q[3].status, 99);
    uint64_t ran = 0, cancelled = 0;
    authpool_counts(p, &ran, &cancelled);
    CHECK_EQ(ran, 3);
    CHECK_EQ(cancelled, 2);
    authpool_free(p);
}

static void stamp_work(void *arg)
{
    struct job *j = arg;
    j->worked = true;
    j->status = (int)authpool_now_ms();     /* reused: when it ran (low bits) */
    if (j->started)
        atomic_fetch_add(j->started, 1);
}

/* A job told to wait does not start early and holds no thread meanwhile:
 * with one thread, a job submitted later without a wait runs first. */
static void t_not_before(void)
{
    authpool *p;
    REQUIRE_OK(authpool_new(1, 100, &p));
    atomic_int started = 0, done = 0;
    struct job late = {.started = &started, .done_count = &done};
    struct job now = {.started = &started, .done_count = &done};
    struct job gone = {.started = &started, .done_count = &done};
    uint64_t t0 = authpool_now_ms();
    authpool_job *hg;
    REQUIRE_OK(authpool_submit_at(p, stamp_work, &late, NULL, NULL, 0, t0 + 300, NULL));
    REQUIRE_OK(authpool_submit_at(p, stamp_work, &gone, NULL, NULL, 0, t0 + 200, &hg));
    REQUIRE_OK(authpool_submit_at(p, stamp_work, &now, NULL, NULL, 0, 0, NULL));
    wait_until(&started, 1);
    CHECK(now.worked);
    CHECK(!late.worked);
    CHECK(authpool_cancel(p, hg));          /* a waiting job can be dropped too */
    CHECK_EQ(authpool_queued(p), 1);
    wait_until(&started, 2);
    CHECK(late.worked);
    CHECK(!gone.worked);
    CHECK(authpool_now_ms() - t0 >= 300);
    /* the late one ran no earlier than asked (compare the low 31 bits) */
    CHECK(((uint32_t)late.status - (uint32_t)(t0 + 300)) < 0x40000000u);
    authpool_free(p);
}

int main(void)
{
    RUN(t_runs_off_thread_done_on_worker);
    RUN(t_queue_full);
    RUN(t_shutdown);
    RUN(t_cancel);
    RUN(t_not_before);
    RUN(t_cache);
    RUN(t_cache_verify);
    return test_summary();
}
