/* core/auth/authpool.h — a small thread pool for slow authentication work
 * (password hashing), so a slow hash never stalls a worker's loop, and a
 * cache of verified credentials.
 *
 * authpool_submit runs work(arg) on a pool thread, then done(arg, status)
 * on worker `worker` of `srv` through net_post (so session code stays
 * lock-free).  status: 0 the work ran; -ECANCELED the pool was shut down
 * before the job started (work did not run).
 *
 * Shutdown (authpool_free): no new jobs; jobs already running finish and
 * their done runs normally; queued jobs that have not started are
 * cancelled (done with -ECANCELED).  Call it while the net server still
 * runs (before net_server_stop), so every done can still be delivered to
 * its worker.  If net_post fails (the worker has stopped), done runs on the
 * pool thread (or the thread calling authpool_free) instead: by then no
 * worker loop runs, so nothing races with it.  With srv == NULL, done
 * always runs on the pool thread (tools, tests).
 */
#ifndef RINGMAIL_CORE_AUTHPOOL_H
#define RINGMAIL_CORE_AUTHPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/auth/passwd.h"
#include "core/auth/userdb.h"
#include "net/net.h"
#include "store/stats.h"

typedef struct authpool authpool;
typedef void (*authpool_work_fn)(void *arg);
typedef void (*authpool_done_fn)(void *arg, int status);

#define AUTHPOOL_DEFAULT_THREADS 2
/* A reconnect storm (every client of a restarted server at once, a cold
 * auth cache) queues one check per connection; refusing them would only
 * make the clients retry.  A waiting job is ~100 bytes; the per-address
 * connection limit and failed-login delays bound what an attacker queues. */
#define AUTHPOOL_DEFAULT_QUEUE 65536

/* threads 0: AUTHPOOL_DEFAULT_THREADS; queue_max 0: AUTHPOOL_DEFAULT_QUEUE
 * (jobs waiting, not counting running ones).  0 or -errno. */
int authpool_new(unsigned threads, unsigned queue_max, authpool **out);
/* 0; -EAGAIN queue full (answer the client "NO [UNAVAILABLE]", do not
 * block); -ESHUTDOWN pool shutting down; -ENOMEM.  On error neither work
 * nor done is called. */
int authpool_submit(authpool *p, authpool_work_fn work, void *arg,
                    authpool_done_fn done, net_server *srv, unsigned worker);
/* A queued job, named for authpool_cancel. */
typedef struct authpool_job authpool_job;
/* CLOCK_MONOTONIC in milliseconds: the clock of not_before_ms. */
uint64_t authpool_now_ms(void);
/* authpool_submit, and: the job does not start before not_before_ms
 * (authpool_now_ms() time; 0 or a past time: as soon as a thread is free)
 * without holding a thread while it waits, so a penalty delay costs no
 * CPU; *handle (if not NULL) names the job for authpool_cancel.  A waiting
 * job counts against queue_max. */
int authpool_submit_at(authpool *p, authpool_work_fn work, void *arg,
                       authpool_done_fn done, net_server *srv, unsigned worker,
                       uint64_t not_before_ms, authpool_job **handle);
/* Drop a job nobody waits for any more (its client left).  true: it had
 * not started and never will; neither work nor done runs, the caller owns
 * arg again.  false: it is running or ran; done comes as usual.  The
 * handle is valid until done starts: call this on the thread done is
 * delivered to (the worker), before done ran. */
bool authpool_cancel(authpool *p, authpool_job *job);
/* Jobs queued and not yet started, waiting ones included (for stats and
 * tests). */
size_t authpool_queued(authpool *p);
/* Jobs whose work ran, and jobs authpool_cancel dropped, since the start. */
void authpool_counts(authpool *p, uint64_t *ran, uint64_t *cancelled);
/* Counters for whoever watches the process, in the caller's memory (it
 * outlives the pool): the jobs queued now (waiting ones included), and how
 * long each job waited for a thread from when it could start. */
typedef struct authpool_stats {
    _Atomic uint64_t queued;
    store_hist wait;
} authpool_stats;
void authpool_set_stats(authpool *p, authpool_stats *st);
void authpool_free(authpool *p);

/* ---- verified-credentials cache ----
 * Entries are (user, password) pairs that passwd_verify accepted, stored
 * as HMAC-SHA-256(per-process random key, user NUL password) (so memory
 * never holds a plain or unsalted password hash), with the passwd-file
 * generation they were verified against: any change to the file drops
 * them all.  Failures are never cached.  Thread-safe.  Oldest entries are
 * evicted first when full. */
typedef struct authcache authcache;

/* ttl_s 0: disabled (every lookup misses, inserts are ignored);
 * max_entries 0: 10000.  0 or -ENOMEM. */
int authcache_new(unsigned ttl_s, size_t max_entries, authcache **out);
void authcache_free(authcache *c);
bool authcache_lookup(authcache *c, const char *user, const char *password,
                      uint64_t generation);
void authcache_insert(authcache *c, const char *user, const char *password,
                      uint64_t generation);
size_t authcache_size(authcache *c);
/* Drop every entry (the control socket's flush-auth-cache): the next login
 * of everyone is checked against the passwd-file again.  Returns how many
 * entries went. */
size_t authcache_flush(authcache *c);
/* passwd_verify with the cache in front (c may be NULL).  Same results as
 * passwd_verify; slow on a miss: call it on the pool. */
int authcache_verify(authcache *c, passwd_db *db, const char *user,
                     const char *password);
/* The same with passwd_verify_timed: an unknown user costs no hash, and
 * *answer_delay_ms says how long to wait before answering (see there). */
int authcache_verify_timed(authcache *c, passwd_db *db, const char *user,
                           const char *password, unsigned *answer_delay_ms);
/* The same over the directory of users (userdb_verify), keyed on
 * userdb_generation: for a directory server only flush-auth-cache ends
 * an entry before the TTL.  -EAGAIN (directory unavailable) is never
 * cached; userdb_error() says why. */
int authcache_verify_userdb(authcache *c, userdb *db, const char *user,
                            const char *password, unsigned *answer_delay_ms);

#endif
