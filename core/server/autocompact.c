/* core/server/autocompact.c — the server compacts its mailboxes.
 *
 * An expunge or a flag change leaves dead bytes in the mailbox's log (the
 * expunged message, the superseded record), which only compaction gives
 * back (store_compact: the live messages rewritten into a new generation
 * while readers and writers go on).  Waiting for an operator's
 * `ringmail-admin compact` lets logs grow without bound, so after every
 * change a session makes (sess_changed) the mailbox's counters are looked
 * at, and one whose dead bytes pass both autocompact_min_dead and
 * autocompact_dead_percent of its log is queued here.
 *
 * One thread per process works through the queue, at a lower priority
 * (nice 10) so that the workers come first: a compaction reads and writes
 * the whole live mailbox, seconds for a big one, and must cost the
 * sessions nothing but a share of the disk.  The queue holds a handle on
 * each mailbox (store_mbox_dup) and at most AC_QUEUE_MAX of them; a mailbox
 * already queued is not queued twice, and each is looked at again before
 * its turn (another process may have compacted it: store_compact takes the
 * mailbox's compaction lock, so two never run at once).  The compactions
 * show in the metrics (ringmail_compactions_total, the progress gauges). */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/base/log.h"
#include "core/server/autocompact.h"

#define AC_QUEUE_MAX 64

struct ac_job {
    store_mbox *mb;
    char *who;
    struct ac_job *next;
};

struct autocompact {
    uint64_t min_dead;
    unsigned percent;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct ac_job *head, *tail;
    size_t n;
    bool stop;
    pthread_t thr;
};

static bool worth(const autocompact *ac, const store_status *st)
{
    return st->dead_bytes >= ac->min_dead && st->dead_bytes > 0 &&
           st->dead_bytes * 100 >= st->log_bytes * (uint64_t)ac->percent;
}

static long long ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)(t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

static void run_job(autocompact *ac, struct ac_job *j)
{
    store_status st;
    if (store_mbox_status(j->mb, &st) < 0 || !worth(ac, &st))
        return;     /* compacted meanwhile (another process), or gone */
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = store_compact(j->mb, NULL, NULL);
    store_status after;
    if (rc == 0 && store_mbox_status(j->mb, &after) == 0)
        log_msg(LOGL_INFO, 0, NULL,
                "autocompact: %s: log %llu -> %llu bytes, %llu dead bytes freed in %lld ms",
                j->who, (unsigned long long)st.log_bytes, (unsigned long long)after.log_bytes,
                (unsigned long long)st.dead_bytes, ms_since(&t0));
    else if (rc < 0)
        log_msg(LOGL_WARN, 0, NULL, "autocompact: %s: %s", j->who, strerror(-rc));
}

static void job_free(struct ac_job *j)
{
    store_mbox_close(j->mb);
    free(j->who);
    free(j);
}

static void *ac_thread(void *arg)
{
    autocompact *ac = arg;
    /* Linux: a thread's nice value is its own (setpriority on its tid). */
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
    pthread_mutex_lock(&ac->lock);
    for (;;) {
        while (!ac->head && !ac->stop)
            pthread_cond_wait(&ac->cond, &ac->lock);
        if (ac->stop)
            break;
        struct ac_job *j = ac->head;
        ac->head = j->next;
        if (!ac->head)
            ac->tail = NULL;
        ac->n--;
        pthread_mutex_unlock(&ac->lock);
        run_job(ac, j);
        job_free(j);
        pthread_mutex_lock(&ac->lock);
    }
    pthread_mutex_unlock(&ac->lock);
    return NULL;
}

int autocompact_start(uint64_t min_dead, unsigned percent, autocompact **out)
{
    *out = NULL;
    if (percent == 0)
        return 0;
    autocompact *ac = calloc(1, sizeof *ac);
    if (!ac)
        return -ENOMEM;
    ac->min_dead = min_dead;
    ac->percent = percent > 100 ? 100 : percent;
    pthread_mutex_init(&ac->lock, NULL);
    pthread_cond_init(&ac->cond, NULL);
    int rc = pthread_create(&ac->thr, NULL, ac_thread, ac);
    if (rc != 0) {
        pthread_mutex_destroy(&ac->lock);
        pthread_cond_destroy(&ac->cond);
        free(ac);
        return -rc;
    }
    *out = ac;
    return 0;
}

void autocompact_stop(autocompact *ac)
{
    if (!ac)
        return;
    pthread_mutex_lock(&ac->lock);
    ac->stop = true;
    pthread_cond_signal(&ac->cond);
    pthread_mutex_unlock(&ac->lock);
    pthread_join(ac->thr, NULL);
    while (ac->head) {
        struct ac_job *j = ac->head;
        ac->head = j->next;
        job_free(j);
    }
    pthread_mutex_destroy(&ac->lock);
    pthread_cond_destroy(&ac->cond);
    free(ac);
}

void autocompact_consider(autocompact *ac, store_mbox *mb, const char *who)
{
    store_status st;
    if (!ac || !mb || store_mbox_status(mb, &st) < 0 || !worth(ac, &st))
        return;
    pthread_mutex_lock(&ac->lock);
    bool queued = ac->stop || ac->n >= AC_QUEUE_MAX;
    for (struct ac_job *j = ac->head; j && !queued; j = j->next)
        queued = j->mb == mb;
    struct ac_job *j = queued ? NULL : calloc(1, sizeof *j);
    if (j && !(j->who = strdup(who ? who : "?"))) {
        free(j);
        j = NULL;
    }
    if (j) {
        j->mb = store_mbox_dup(mb);
        if (ac->tail)
            ac->tail->next = j;
        else
            ac->head = j;
        ac->tail = j;
        ac->n++;
        pthread_cond_signal(&ac->cond);
    }
    pthread_mutex_unlock(&ac->lock);
}
