/* core/cmd_cont.c — long commands in steps.
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
#include <stdlib.h>
#include <time.h>

#include "core/session.h"

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

void sess_cont_start(session *s, sess_step_fn step, void (*freefn)(void *), void *state)
{
    if (s->cont_step) {
        /* A step ends its command with another (FETCH, then the updates
         * before its tagged answer): that one runs next. */
        if (s->cont_then)
            abort();    /* one follower: a step finishes with one call */
        s->cont_then = step;
        s->cont_then_free = freefn;
        s->cont_then_state = state;
        return;
    }
    s->cont_step = step;
    s->cont_free = freefn;
    s->cont = state;
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
    if (s->cont_then) {
        void *st = s->cont_then_state;
        void (*freefn)(void *) = s->cont_then_free;
        s->cont_then = NULL;
        s->cont_then_free = NULL;
        s->cont_then_state = NULL;
        if (freefn)
            freefn(st);
    }
    if (!s->cont_step)
        return;
    void *st = s->cont;
    void (*freefn)(void *) = s->cont_free;
    s->cont_step = NULL;
    s->cont_free = NULL;
    s->cont = NULL;
    s->cont_drain = false;
    if (freefn)
        freefn(st);
}

void sess_cont_next(session *s)
{
    if (!s->cont_step || s->pool_busy || s->delayed)
        return;     /* whoever holds the session calls us again */
    if (net_conn_pending(s->conn) > s->srv->max_output)
        s->cont_drain = true;   /* on_drain: the client has read */
    else
        net_conn_yield(s->conn);
}

void sess_cont_run(session *s)
{
    if (!s->cont_step || s->pool_busy || s->delayed || s->cont_drain ||
        s->state == ST_LOGOUT)
        return;
    store_defer d;
    store_defer_begin(&d);
    bool done = s->cont_step(s, s->cont);
    store_defer_end();
    /* A step that goes on cannot have handed over to another. */
    if (!done && s->cont_then)
        abort();
    if (done) {
        sess_step_fn then = s->cont_then;
        void (*then_free)(void *) = s->cont_then_free;
        void *then_state = s->cont_then_state;
        s->cont_then = NULL;
        s->cont_then_free = NULL;
        s->cont_then_state = NULL;
        sess_cont_free(s);
        if (then) {
            s->cont_step = then;
            s->cont_free = then_free;
            s->cont = then_state;
            done = false;
        } else if (s->woken && s->wait == WAIT_IDLE && s->state == ST_SELECTED) {
            /* a wake-up came while we ran: IDLE hears of it now */
            sess_sync(s, true);
            done = s->cont_step == NULL;
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
    sess_cont_next(s);
}
