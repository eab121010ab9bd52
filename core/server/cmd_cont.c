/* core/server/cmd_cont.c — long commands in steps.
 *
 * A worker serves thousands of sessions from one thread, so a command that
 * runs for a second (FETCH 1:* over a million messages, SEARCH BODY over a
 * large mailbox, LIST with STATUS over many mailboxes) would stall every
 * other session on it for that second, and a client that does not read
 * would have the whole answer buffered for it.  Such a command does at
 * most one slice of work (SESS_SLICE_NS, or until max_output_buffer bytes
 * wait for the client) and then gives the worker back: net_conn_yield
 * brings it back after one round of the loop, or on_drain once a slow
 * client has read what was queued.
 *
 * While a command is in steps the session reads no further command (the
 * connection is paused; bytes that were already received are kept in the
 * stash), so pipelined commands keep their order and nothing else changes
 * the session's view under the command.  A step that writes (FETCH setting
 * \Seen) has its answer held until the write is durable, as any command. */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "core/auth/authpool.h"
#include "core/server/session.h"
#include "store/assert.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void sess_slice_begin(sess_slice *sl)
{
    sl->deadline_ns = now_ns() + SESS_SLICE_NS;
    sl->n = 0;
}

bool sess_slice_expired(const sess_slice *sl)
{
    return now_ns() >= sl->deadline_ns;
}

bool sess_slice_over(session *s, sess_slice *sl)
{
    if (sl->n++ == 0)
        return false;
    if (s->out.len + net_conn_pending(s->conn) > s->srv->max_output)
        return true;
    /* The clock is cheap (vDSO) but not free: look every few units. */
    return (sl->n & 7) == 0 && now_ns() >= sl->deadline_ns;
}

bool sess_slice_over_each(session *s, sess_slice *sl)
{
    bool first = sl->n == 0;
    if (sess_slice_over(s, sl))
        return true;
    return !first && now_ns() >= sl->deadline_ns;
}

struct sess_cont {
    sess_step_fn step;
    void (*free)(void *state);
    void *state;                /* owned */
};

static void cont_drop(struct sess_cont *c)
{
    if (!c)
        return;
    if (c->free)
        c->free(c->state);
    free(c);
}

void sess_cont_start(session *s, sess_step_fn step, void (*freefn)(void *), void *state)
{
    struct sess_cont *c = malloc(sizeof *c);
    if (!c) {
        /* No memory to go on later: finish now, unsliced.  Every step
         * makes progress (sess_slice_over), so this ends. */
        while (!step(s, state))
            ;
        if (freefn)
            freefn(state);
        return;
    }
    *c = (struct sess_cont){step, freefn, state};
    if (s->cont) {
        /* A step ends its command with another (FETCH, then the updates
         * before its tagged answer): that one runs next. */
        RM_ASSERT_MSG(!s->cont_then, "one follower: a step finishes with one call");
        s->cont_then = c;
        return;
    }
    RM_ASSERT(!s->cont_then);   /* a follower only exists behind a running command */
    s->cont = c;
    s->cont_drain = false;
    sess_hold_input(s);
    net_conn_yield(s->conn);
}

void sess_cont_begin(session *s, sess_step_fn step, void (*freefn)(void *), void *state)
{
    if (step(s, state))
        freefn(state);
    else
        sess_cont_start(s, step, freefn, state);
}

void sess_cont_free(session *s)
{
    struct sess_cont *then = s->cont_then, *c = s->cont;
    s->cont_then = NULL;
    s->cont = NULL;
    s->cont_drain = false;
    cont_drop(then);
    cont_drop(c);
}

void sess_cont_next(session *s)
{
    if (!s->cont || s->pool_busy || s->delayed)
        return;     /* whoever holds the session calls us again */
    if (net_conn_pending(s->conn) > s->srv->max_output)
        s->cont_drain = true;   /* on_drain: the client has read */
    else
        net_conn_yield(s->conn);
}

/* A step that met pages of the store not in memory (store/fault.c): they
 * are read in on the sync pool, and the command goes on once they are. */
struct fault_job {
    session *s;
    store_fault *f;
};

static void fault_work(void *arg)
{
    store_fault_run(((struct fault_job *)arg)->f);
}

static void fault_done(void *arg, int status)
{
    struct fault_job *j = arg;
    session *s = j->s;
    (void)status;       /* not run: the step reads them itself */
    store_fault_free(j->f);
    free(j);
    RM_ASSERT(s->pool_busy);    /* this job is what the session waits for */
    s->pool_busy = false;
    if (s->dead) {
        sess_free(s);
        return;
    }
    sess_cont_next(s);
}

int sess_cont_fault_in(session *s, store_fault *f)
{
    RM_ASSERT(f);
    /* pool_busy only where sess_cont_start, out of memory, runs the steps
     * back to back: then here too */
    struct fault_job *j = s->pool_busy ? NULL : malloc(sizeof *j);
    if (j) {
        j->s = s;
        j->f = f;
        if (authpool_submit(s->srv->syncpool, fault_work, j, fault_done, s->srv->net,
                            net_conn_worker(s->conn)) == 0) {
            s->pool_busy = true;
            return 0;
        }
        free(j);
    }
    /* no job: read them here, as without the look */
    store_fault_run(f);
    store_fault_free(f);
    return -EAGAIN;
}

void sess_cont_run(session *s)
{
    if (!s->cont || s->pool_busy || s->delayed || s->cont_drain ||
        s->state == ST_LOGOUT)
        return;
    store_defer d;
    store_defer_begin(&d);
    bool done = s->cont->step(s, s->cont->state);
    store_defer_end();
    /* A step that goes on cannot have handed over to another. */
    RM_ASSERT(done || !s->cont_then);
    if (done) {
        struct sess_cont *then = s->cont_then;
        s->cont_then = NULL;
        sess_cont_free(s);
        if (then) {
            s->cont = then;
            done = false;
        } else if (s->woken && s->wait == WAIT_IDLE && s->state == ST_SELECTED) {
            /* a wake-up came while we ran: IDLE hears of it now */
            cmd_sync(s, &cmd_table[CMD_IDLE]);
            done = s->cont == NULL;
        }
    }
    if (d.n)
        sess_hold_until_durable(s, &d);     /* its completion resumes us */
    if (s->pool_busy) {
        sess_flush(s);
        return;
    }
    if (done) {
        sess_resume_input(s);   /* sends the answer, reads what came */
        return;
    }
    sess_flush(s);
    if (s->state == ST_LOGOUT) {
        net_conn_close(s->conn);    /* may free s */
        return;
    }
    sess_cont_next(s);
}
