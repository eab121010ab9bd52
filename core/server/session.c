/* core/server/session.c — the life of a connection: greeting, reading commands,
 * dispatching them in order, timers, wake-ups and goodbye. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/auth/abuse.h"
#include "core/auth/authpool.h"
#include "core/base/log.h"
#include "core/auth/sasl.h"
#include "core/search/search.h"
#include "core/server/control.h"
#include "core/server/metrics.h"
#include "core/server/search_context.h"
#include "core/server/proxy_proto.h"
#include "core/server/session.h"
#include "store/assert.h"

/* ---- responses ----------------------------------------------------------- */

static void vline(session *s, const char *prefix, const char *status,
                  const char *fmt, va_list ap)
{
    imap_out_printf(&s->out, "%s%s%s", prefix, status ? " " : "", status ? status : "");
    char buf[1024];
    vsnprintf(buf, sizeof buf, fmt, ap);
    imap_out_printf(&s->out, " %s\r\n", buf);
}

void sess_tagged(session *s, const char *tag, const char *status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline(s, tag, status, fmt, ap);
    va_end(ap);
}

void sess_bad(session *s, const char *tag, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline(s, tag ? tag : "*", "BAD", fmt, ap);
    va_end(ap);
    s->bad++;
}

void sess_untagged(session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char buf[1024];
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    imap_out_printf(&s->out, "* %s\r\n", buf);
}

#define SESS_M_CLOSED 0xfe  /* on_close ran: counted nowhere any more */

/* Metrics: move the session to the gauge of its present state, and end
 * the timing of a command whose answer is complete (nothing of it runs
 * on: no steps, no pool job, no delayed answer, no IDLE or SASL wait). */
static void sess_metrics(session *s)
{
    if (s->m_state == SESS_M_CLOSED)
        return;
    unsigned w = net_conn_worker(s->conn);
    metrics_state st = s->state == ST_LOGOUT ? METRICS_LOGOUT
                       : s->wait == WAIT_IDLE ? METRICS_IDLE
                       : s->state == ST_SELECTED ? METRICS_SELECTED
                       : s->state == ST_AUTH ? METRICS_AUTH : METRICS_NOAUTH;
    unsigned idx = metrics_state_index(st, net_conn_is_tls(s->conn));
    if (idx != s->m_state) {
        metrics_session_state(w, s->m_state, idx);
        s->m_state = (uint8_t)idx;
    }
    if (s->m_cmd && !s->cont && !s->cont_then && !s->pool_busy && !s->delayed &&
        s->wait == WAIT_NONE) {
        metrics_command(w, s->m_cmd - 1u, store_stat_now_ns() - s->m_start_ns);
        s->m_cmd = 0;
    }
}

void sess_flush(session *s)
{
    sess_metrics(s);
    if (s->out.err) {
        /* An answer could not be built (out of memory).  The buffer may end
         * in the middle of a response, and everything written after the
         * failure was dropped, so the client would wait for a tagged line
         * that never comes.  End the session with a line that needs no
         * memory; every caller closes a session in ST_LOGOUT. */
        static const char bye[] = "* BYE [SERVERBUG] Out of memory, closing\r\n";
        log_msg(LOGL_ERROR, s->id, s->user, "building an answer failed: %s; dropped %zu bytes",
                strerror(-s->out.err), s->out.len);
        imap_out_free(&s->out);
        memset(&s->out, 0, sizeof s->out);
        net_conn_send(s->conn, bye, sizeof bye - 1);
        s->state = ST_LOGOUT;
        return;
    }
    if (s->out.len)
        net_conn_send(s->conn, s->out.p, s->out.len);
    s->out.len = 0;
    if (s->out.cap > 65536) {   /* do not keep a big buffer on an idle session */
        imap_out_free(&s->out);
        memset(&s->out, 0, sizeof s->out);
    }
}

void sess_capabilities(session *s, imap_out *o)
{
    imap_out_printf(o, "IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE "
                       "NAMESPACE UNSELECT UIDPLUS MOVE CHILDREN SPECIAL-USE CREATE-SPECIAL-USE "
                       "LIST-EXTENDED LIST-STATUS ESEARCH SEARCHRES CONDSTORE QRESYNC "
                       "STATUS=SIZE BINARY UTF8=ACCEPT MULTIAPPEND SORT SORT=DISPLAY THREAD=ORDEREDSUBJECT THREAD=REFERENCES "
                       "ESORT PARTIAL WITHIN CONTEXT=SEARCH CONTEXT=SORT "
                       "APPENDLIMIT=%zu", s->srv->limits.max_literal);
    imap_out_printf(o, " OBJECTID SAVEDATE");     /* RFC 8474, RFC 8514 */
    if (s->state != ST_NOAUTH && s->state != ST_LOGOUT)
        imap_out_printf(o, " COMPRESS=DEFLATE");
    imap_out_printf(o, " PREVIEW");    /* RFC 8970; core/fetch/preview.c */
    if (s->state != ST_NOAUTH && s->state != ST_LOGOUT)    /* RFC 9208; cmd_quota.c */
        imap_out_printf(o, " QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE");
    if (s->state == ST_NOAUTH) {
        if (s->srv->tls && !net_conn_is_tls(s->conn))
            imap_out_printf(o, " STARTTLS");
        if (sess_plaintext_ok(s))
            imap_out_printf(o, " AUTH=PLAIN AUTH=LOGIN");
        else
            imap_out_printf(o, " LOGINDISABLED");
        if (auth_scram_offered(s)) {
            imap_out_printf(o, " AUTH=SCRAM-SHA-256");
            if (net_conn_is_tls(s->conn))
                imap_out_printf(o, " AUTH=SCRAM-SHA-256-PLUS");
        }
    }
}

uint64_t sess_modseq_told(const session *s)
{
    /* RFC 7162 3.2: "if the server sends MODSEQ FETCH data items while
     * EXPUNGE (or VANISHED) replies with lower mod-sequences being
     * delayed, the server MUST send the HIGHESTMODSEQ response code with
     * a lower value than the EXPUNGE's mod-sequence" */
    if (s->qresync && s->modseq_expunged < s->modseq_seen)
        return s->modseq_expunged;
    return s->modseq_seen;
}

bool sess_condstore_enable(session *s, imap_out *o)
{
    if (s->condstore)
        return false;
    s->condstore = true;
    /* The value is what the client was told of so far (modseq_seen), not
     * the mailbox's latest: changes above it are still to be announced, as
     * FETCH with their MODSEQ, and a client that took the latest here
     * would think it had seen them. */
    if (s->state == ST_SELECTED && s->mb)
        imap_out_printf(o, "* OK [HIGHESTMODSEQ %llu] Highest\r\n",
                        (unsigned long long)sess_modseq_told(s));
    return true;
}

bool sess_plaintext_ok(const session *s)
{
    if (net_conn_is_tls(s->conn))
        return true;
    switch (s->srv->plaintext) {
    case PLAINTEXT_YES: return true;
    case PLAINTEXT_NO: return false;
    default: return s->loopback;
    }
}

/* ---- dispatch ------------------------------------------------------------ */

static unsigned state_bit(sess_state st)
{
    return st == ST_NOAUTH ? CMD_IN_NOAUTH : st == ST_AUTH ? CMD_IN_AUTH
         : st == ST_SELECTED ? CMD_IN_SELECTED : 0;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Arm the connection's timer.  Before login never beyond the login
 * deadline, which counts from the connection's start: neither a command
 * trickled in byte by byte, nor NOOPs, nor STARTTLS push it back
 * (slowloris), so an unauthenticated connection lives login_timeout at
 * most. */
static void set_timer(session *s, unsigned ms)
{
    s->timer_login = false;
    if (s->state == ST_NOAUTH && ms) {
        uint64_t now = now_ms();
        uint64_t left = s->login_deadline > now ? s->login_deadline - now : 0;
        if (left <= ms) {
            ms = left ? (unsigned)left : 1;     /* 0 would cancel the timer */
            s->timer_login = true;
        }
    }
    net_conn_timer(s->conn, ms);
}

static void arm_timer(session *s)
{
    set_timer(s, s->state == ST_NOAUTH ? s->srv->login_timeout_ms
                                       : s->srv->idle_timeout_ms);
}

/* ---- answers that wait for the disk ---------------------------------------
 * A command that changed a mailbox has written its records and produced
 * its answer, but the answer may go out only once those records are on
 * disk (fsync = batch/always).  The flush runs on the sync pool, where one
 * fdatasync serves every session that wrote to that log meanwhile; the
 * worker goes on serving the others.  The session reads no further
 * commands until then, so answers keep their order. */

struct sync_job {
    session *s;
    store_defer d;
    int rc;
};

static void sync_work(void *arg)
{
    struct sync_job *j = arg;
    j->rc = store_defer_sync(&j->d);
}

static void sync_done(void *arg, int status)
{
    struct sync_job *j = arg;
    session *s = j->s;
    int rc = status < 0 ? status : j->rc;
    RM_ASSERT(s->pool_busy);    /* this job is what the session waits for */
    store_defer_release(&j->d);
    free(j);
    s->pool_busy = false;
    if (s->dead) {
        sess_free(s);
        return;
    }
    if (rc < 0) {
        s->held.len = 0;
        sess_flush_failed(s, rc);
    } else if (s->held.len) {
        net_conn_send(s->conn, s->held.p, s->held.len);
    }
    imap_out_free(&s->held);
    memset(&s->held, 0, sizeof s->held);
    sess_resume_input(s);
}

int sess_defer_flush(store_defer *d)
{
    store_defer_end();
    int rc = d->n ? store_defer_sync(d) : 0;
    store_defer_release(d);
    return rc;
}

bool sess_flush_failed(session *s, int sync_rc)
{
    if (sync_rc >= 0)
        return false;
    /* Never acknowledge what may not be on disk: the client hears no OK
     * for it and must assume it failed. */
    log_msg(LOGL_ERROR, s->id, s->user, "flushing the mailbox failed: %s", strerror(-sync_rc));
    imap_out_printf(&s->out, "* BYE [UNAVAILABLE] Mail storage failure\r\n");
    s->state = ST_LOGOUT;
    return true;
}

void sess_hold_until_durable(session *s, store_defer *d)
{
    /* One flush at a time: a second would overwrite the held answer. */
    RM_ASSERT(!s->pool_busy && !s->held.len && d->n > 0);
    struct sync_job *j = malloc(sizeof *j);
    if (j) {
        j->s = s;
        j->d = *d;
        j->rc = 0;
        /* What is in s->out (this answer and any earlier pipelined ones)
         * waits for the flush. */
        s->held = s->out;
        memset(&s->out, 0, sizeof s->out);
        if (authpool_submit(s->srv->syncpool, sync_work, j, sync_done, s->srv->net,
                            net_conn_worker(s->conn)) == 0) {
            s->pool_busy = true;
            sess_hold_input(s);
            return;
        }
        s->out = s->held;
        memset(&s->held, 0, sizeof s->held);
        free(j);
    }
    /* No pool (queue full, out of memory): flush here, on the worker. */
    int rc = store_defer_sync(d);
    store_defer_release(d);
    if (rc < 0) {
        s->out.len = 0;
        imap_out_printf(&s->out, "* BYE [UNAVAILABLE] Mail storage failure\r\n");
        s->state = ST_LOGOUT;
    }
}

/* Is there a literal8 among args (lists included), other than a message of
 * APPEND?  RFC 3516 9 and RFC 9051 9 have literal8 only in append-data: an
 * astring is a string, and string = quoted / literal.  Dovecot answers
 * "literal8 not allowed here" too.  In APPEND a literal8 after the mailbox
 * at the top level, or alone in the list after UTF8 (RFC 6855 4:
 * append-data =/ "UTF8" SP "(" literal8 ")"), can only be a message (a flag
 * list or a date is never a literal); cmd_append checks the rest of its
 * grammar. */
static bool misplaced_literal8(const imap_arg *args, size_t nargs, bool append)
{
    for (size_t i = 0; i < nargs; i++) {
        const imap_arg *a = &args[i];
        if (a->type == IMAP_ARG_LITERAL && a->binary && !(append && i > 0))
            return true;
        if (a->type != IMAP_ARG_LIST)
            continue;
        if (append && i > 1 && imap_arg_is(&args[i - 1], "UTF8") && a->nlist == 1 &&
            a->list[0].type == IMAP_ARG_LITERAL)
            continue;
        if (misplaced_literal8(a->list, a->nlist, false))
            return true;
    }
    return false;
}

static void run_command(session *s, const uint8_t *p, size_t n)
{
    imap_args *a = NULL;
    const char *tag = NULL, *name = NULL, *err = NULL;
    size_t taglen = 0, nargs = 0, nlits = 0;
    imap_arg *args = NULL;
    const imap_literal_pos *lits = NULL;
    char tagbuf[128];
    imap_reader_literals(s->rd, &lits, &nlits);
    int rc = imap_args_parse_framed(p, n, lits, nlits, &a, &tag, &taglen, &name,
                                    &args, &nargs, &err);
    if (tag && taglen < sizeof tagbuf) {
        memcpy(tagbuf, tag, taglen);
        tagbuf[taglen] = '\0';
        tag = tagbuf;
    } else {
        tag = NULL;
    }
    if (rc < 0 || !tag) {
        sess_bad(s, tag, "%s", err ? err : "Bad command");
        goto out;
    }
    bool uid = false;
    if (!strcmp(name, "UID")) {
        if (nargs < 1 || args[0].type != IMAP_ARG_ATOM) {
            sess_bad(s, tag, "UID what?");
            goto out;
        }
        uid = true;
        name = args[0].s;
        args++;
        nargs--;
    }
    const cmd_def *def = cmd_find(name);
    if (!def || (uid && !def->uid)) {
        sess_bad(s, tag, "Unknown command");
        goto out;
    }
    if (s->state == ST_NOAUTH && ++s->ncmds > s->srv->max_cmds_preauth) {
        sess_untagged(s, "BYE Too many commands before login");
        s->state = ST_LOGOUT;
        goto out;
    }
    if (!(def->states & state_bit(s->state))) {
        sess_bad(s, tag, "%s", s->state == ST_NOAUTH ? "Log in first"
                         : s->state == ST_SELECTED || def->states == CMD_IN_NOAUTH
                         ? "Already logged in"
                         : "Select a mailbox first");
        goto out;
    }
    if (def->no_args && !uid && nargs) {
        sess_bad(s, tag, "%s takes no arguments", def->name);
        goto out;
    }
    if (misplaced_literal8(args, nargs, !uid && !strcmp(def->name, "APPEND"))) {
        sess_bad(s, tag, "A literal8 is allowed only as APPEND's message");
        goto out;
    }
    log_msg(s->srv->log_commands ? LOGL_INFO : LOGL_DEBUG, s->id, s->user, "command %s%s",
            uid ? "UID " : "", def->name);
    /* A command runs only when nothing of the last one is pending, and a
     * mailbox is open exactly in the selected state. */
    RM_ASSERT(!s->cont && !s->cont_then && !s->pool_busy && !s->delayed &&
              !s->in_yield && s->wait == WAIT_NONE);
    RM_ASSERT((s->state == ST_SELECTED) == (s->mb != NULL) && s->nview <= s->capview);
    unsigned bad = s->bad;
    store_defer d;
    store_defer_begin(&d);
    imap_cmd c = {.s = s, .def = def, .tag = tag, .a = a, .args = args, .nargs = nargs,
                  .uid = uid};
    s->m_cmd = (uint8_t)(def - cmd_table + 1);
    s->m_start_ns = store_stat_now_ns();
    def->fn(&c);
    store_defer_end();
    RM_ASSERT(s->state == ST_LOGOUT || (s->state == ST_SELECTED) == (s->mb != NULL));
    if (d.n)
        sess_hold_until_durable(s, &d);
    sess_metrics(s);    /* a pipeline's commands are timed one by one */
    if (s->bad == bad)
        s->bad = 0;     /* the limit is on BAD answers in a row */
out:
    imap_args_free(a);
}

/* After a tagged answer has been produced (the updates that must precede
 * it went in through cmd_done / cmd_update, as the command's table entry
 * declares): the hook for the BAD limit. */
static bool too_many_bad(session *s)
{
    if (s->srv->max_bad && s->bad >= s->srv->max_bad) {
        sess_untagged(s, "BYE Too many invalid commands");
        s->state = ST_LOGOUT;
        return true;
    }
    return false;
}

static void stash_rest(session *s, const uint8_t *p, size_t n)
{
    uint8_t *b = realloc(s->stash, s->nstash + n);
    if (!b) {
        s->state = ST_LOGOUT;   /* cannot keep the client's bytes: drop it */
        return;
    }
    memcpy(b + s->nstash, p, n);
    s->stash = b;
    s->nstash += n;
}

/* Stop reading commands until the next round of the loop, or until the
 * output drains if it is over its limit; what was received is stashed. */
static void input_yield(session *s)
{
    s->in_yield = true;
    sess_hold_input(s);
    sess_flush(s);
    if (net_conn_pending(s->conn) > s->srv->max_output)
        s->out_paused = true;   /* on_drain yields */
    else
        net_conn_yield(s->conn);
}

static void feed(session *s, const uint8_t *p, size_t n)
{
    sess_slice sl;
    sess_slice_begin(&sl);
    if (s->delayed || s->pool_busy || s->cont || s->in_yield) {
        /* An answer is held back: keep what arrives for later, in order. */
        if (s->nstash + n > s->srv->limits.max_line + 65536)
            s->state = ST_LOGOUT;
        else
            stash_rest(s, p, n);
        if (s->state == ST_LOGOUT)
            net_conn_close(s->conn);
        return;
    }
    while (n && s->state != ST_LOGOUT) {
        if (!s->full_limits && s->state != ST_NOAUTH && !imap_reader_busy(s->rd)) {
            imap_reader_set_limits(s->rd, &s->srv->limits);
            s->full_limits = true;
        }
        size_t used = 0;
        imap_read_status st = imap_reader_feed(s->rd, p, n, &used);
        p += used;
        n -= used;
        switch (st) {
        case IMAP_READ_MORE:
            break;
        case IMAP_READ_CONTINUE:
            imap_out_printf(&s->out, "+ Ready for literal data\r\n");
            break;
        case IMAP_READ_LINE_TOO_LONG:
        case IMAP_READ_LITERAL_TOO_BIG: {
            const char *t;
            size_t tl;
            char tag[128] = "*";
            if (imap_reader_error_tag(s->rd, &t, &tl) && tl && tl < sizeof tag) {
                memcpy(tag, t, tl);
                tag[tl] = '\0';
            }
            if (st == IMAP_READ_LINE_TOO_LONG) {
                sess_bad(s, tag, "[TOOBIG] Line too long");
            } else if (!s->full_limits && imap_reader_busy(s->rd)) {
                /* Before login, a non-synchronizing literal over the limit
                 * (the reader is skipping its bytes): RFC 7888 4 lets the
                 * server "send an untagged BYE response explaining the
                 * reason for rejecting the literal ... and close the
                 * connection", rather than read megabytes from a client
                 * that has not even logged in. */
                sess_untagged(s, "BYE [TOOBIG] Literal too big before login (limit %u)",
                              PREAUTH_MAX_LITERAL);
                s->state = ST_LOGOUT;
            } else if (!s->full_limits) {
                sess_tagged(s, tag, "NO", "[TOOBIG] Literal too big before login (limit %u)",
                            PREAUTH_MAX_LITERAL);
            } else if (strcmp(tag, "*")) {
                sess_tagged(s, tag, "NO", "[TOOBIG] Literal too big (APPENDLIMIT=%zu)",
                            s->srv->limits.max_literal);
            } else {
                sess_bad(s, NULL, "[TOOBIG] Literal too big");
            }
            break;
        }
        case IMAP_READ_COMMAND: {
            const uint8_t *cp;
            size_t cn;
            imap_reader_command(s->rd, &cp, &cn);
            s->last_cmd_ms = now_ms();
            if (s->wait == WAIT_IDLE)
                idle_line(s, cp, cn);
            else if (s->wait == WAIT_AUTH)
                auth_continue(s, cp, cn);
            else
                run_command(s, cp, cn);
            imap_reader_release(s->rd);
            if (s->wait == WAIT_NONE && !s->delayed)
                arm_timer(s);
            break;
        }
        }
        if (too_many_bad(s))
            break;
        if (s->starttls) {
            /* Whatever the client sent after STARTTLS in the clear is
             * dropped, never read as a command (CVE-2011-0411). */
            s->starttls = false;
            sess_flush(s);
            if (net_conn_starttls(s->conn, s->srv->tls) < 0)
                s->state = ST_LOGOUT;
            break;
        }
        if (s->compress) {
            /* The tagged OK goes out uncompressed; what the client sent
             * after the command is compressed (RFC 4978 3: the client
             * "MUST compress starting with the first command after
             * COMPRESS"), so net inflates it along with what follows. */
            s->compress = false;
            sess_flush(s);
            if (net_conn_compress(s->conn, p, n) < 0)
                s->state = ST_LOGOUT;
            break;
        }
        if (s->delayed || s->pool_busy || s->cont) {
            stash_rest(s, p, n);
            sess_flush(s);
            return;
        }
        if (n && st == IMAP_READ_COMMAND &&
            (sess_slice_expired(&sl) ||
             s->out.len + net_conn_pending(s->conn) > s->srv->max_output)) {
            /* A long pipeline: the worker's other sessions get their turn
             * (and a slow client reads) before the next command. */
            stash_rest(s, p, n);
            if (s->state != ST_LOGOUT) {
                input_yield(s);
                return;
            }
            break;
        }
        if (st == IMAP_READ_MORE && used == 0)
            break;
    }
    sess_flush(s);
    control_kick_due(s);
    if (s->state == ST_LOGOUT) {
        net_conn_close(s->conn);
        return;
    }
    /* A half-sent command must make progress (slowloris). */
    if (s->wait == WAIT_NONE && imap_reader_busy(s->rd))
        set_timer(s, s->srv->partial_timeout_ms);
    /* A client that does not read its answers cannot make us buffer
     * without bound: stop reading until the output drains. */
    if (!s->out_paused && net_conn_pending(s->conn) > s->srv->max_output) {
        s->out_paused = true;
        net_conn_pause(s->conn, true);
    }
}

void sess_delay_answer(session *s, unsigned delay_ms)
{
    if (!delay_ms) {
        sess_flush(s);
        return;
    }
    char *held = malloc(s->out.len + 1);
    RM_ASSERT(!s->delayed);     /* one held answer at a time */
    if (!held) {
        sess_flush(s);
        return;
    }
    memcpy(held, s->out.p, s->out.len);
    held[s->out.len] = '\0';
    s->out.len = 0;
    s->delayed = held;
    net_conn_pause(s->conn, true);
    net_conn_timer(s->conn, delay_ms);
}

void sess_hold_input(session *s)
{
    net_conn_pause(s->conn, true);
}

void sess_resume_input(session *s)
{
    sess_flush(s);
    if (s->delayed || s->pool_busy)
        return;
    control_kick_due(s);
    if (s->state == ST_LOGOUT) {
        net_conn_close(s->conn);
        return;
    }
    if (s->cont) {
        sess_cont_next(s);  /* a long command goes on before any other */
        return;
    }
    if (s->wait == WAIT_NONE)
        arm_timer(s);
    uint8_t *st = s->stash;
    size_t n = s->nstash;
    s->stash = NULL;
    s->nstash = 0;
    if (n)
        feed(s, st, n);
    free(st);
    /* Reading goes on only once what was kept is used up: a pipeline that
     * yielded again keeps the rest in the socket meanwhile. */
    if (!s->out_paused && !s->delayed && !s->pool_busy && !s->cont && !s->in_yield &&
        s->state != ST_LOGOUT)
        net_conn_pause(s->conn, false);
}

/* The delay is over: send the held answer and go on with what came
 * meanwhile. */
static void release_delayed(session *s)
{
    net_conn_send(s->conn, s->delayed, strlen(s->delayed));
    free(s->delayed);
    s->delayed = NULL;
    sess_resume_input(s);
}

/* ---- net callbacks ------------------------------------------------------- */

/* The one server of the process (net callbacks carry no context). */
static imap_server *the_server;

void sess_set_server(imap_server *srv)
{
    the_server = srv;
}

/* Count the client's connection against max_connections_per_ip (not for
 * trusted_networks); false: over it, the BYE is queued. */
static bool count_conn(session *s)
{
    imap_server *srv = s->srv;
    if (abuse_trusted(srv->abuse, s->ip))
        return true;
    if (!abuse_conn_open(srv->abuse, s->ip, srv->max_conn_ip)) {
        log_msg(LOGL_WARN, s->id, NULL, "refused %s: max_connections_per_ip", s->ip);
        static const char bye[] = "* BYE Too many connections from your address\r\n";
        net_conn_send(s->conn, bye, sizeof bye - 1);
        return false;
    }
    s->counted_ip = true;
    return true;
}

static void greet(session *s)
{
    imap_out_printf(&s->out, "* OK [CAPABILITY ");
    sess_capabilities(s, &s->out);
    imap_out_printf(&s->out, "] Ringmail ready\r\n");
    sess_flush(s);
}

static void *on_open(net_conn *c)
{
    imap_server *srv = the_server;
    session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->srv = srv;
    s->conn = c;
    s->id = atomic_fetch_add(&srv->next_session, 1) + 1;
    s->m_state = METRICS_NO_STATE;
    snprintf(s->peer, sizeof s->peer, "%s", net_conn_peer(c));
    abuse_peer_ip(s->peer, s->ip, sizeof s->ip);
    /* plaintext_auth = loopback: this machine, and trusted_networks, where
     * a proxy (nginx) logs in with its client's password over its own
     * connection (as Dovecot ignores disable_plaintext_auth for
     * login_trusted_networks).  Judged by the connection itself, not by
     * the address a PROXY header names. */
    s->loopback = net_conn_is_loopback(c) || abuse_trusted(srv->abuse, s->ip);
    if (net_conn_tag(c) == LISTEN_IMAP_PROXY) {
        if (!proxy_proto_from(s->ip)) {
            log_msg(LOGL_WARN, s->id, NULL, "refused %s on listen_proxy: not in "
                    "proxy_protocol_from", s->peer);
            free(s);
            return NULL;
        }
        /* The header comes first: the greeting, the per-address count and
         * the log's address wait for it (proxy_header). */
        s->proxy_wait = true;
    } else if (!count_conn(s)) {
        free(s);
        return NULL;
    }
    s->login_deadline = now_ms() + srv->login_timeout_ms;
    s->rd = imap_reader_new(&srv->preauth_limits);
    if (!s->rd) {
        if (s->counted_ip)
            abuse_conn_close(srv->abuse, s->ip);
        free(s);
        return NULL;
    }
    s->opened_ms = s->last_cmd_ms = now_ms();
    control_reg_add(s);
    if (s->proxy_wait) {
        log_msg(LOGL_DEBUG, s->id, NULL, "proxy connection from %s", s->peer);
    } else {
        log_msg(LOGL_INFO, s->id, NULL, "connect from %s", s->peer);
        greet(s);
    }
    arm_timer(s);
    return s;
}

/* listen_proxy: bytes before the PROXY header is whole.  They are kept in
 * the stash (no command runs before the greeting); once it is parsed, the
 * client's address replaces the proxy's, the connection is counted under
 * it, the greeting goes out and what followed the header is fed on. */
static void proxy_header(session *s, const uint8_t *p, size_t n)
{
    size_t cap = PROXY_PROTO_V2_MAX;
    if (s->nstash + n > cap)
        n = cap - s->nstash;    /* more than a header holds: parse fails */
    uint8_t *b = realloc(s->stash, s->nstash + n + 1);
    if (!b) {
        net_conn_close(s->conn);
        return;
    }
    memcpy(b + s->nstash, p, n);
    s->stash = b;
    s->nstash += n;
    size_t used = 0;
    char peer[sizeof s->peer];
    int rc = proxy_proto_parse(s->stash, s->nstash, &used, peer, sizeof peer);
    if (rc == 0 && s->nstash < cap)
        return;
    if (rc <= 0) {
        log_msg(LOGL_WARN, s->id, NULL, "proxy %s sent no valid PROXY protocol header: "
                "closed", s->peer);
        s->state = ST_LOGOUT;
        net_conn_close(s->conn);
        return;
    }
    s->proxy_wait = false;
    char via[sizeof s->peer];
    snprintf(via, sizeof via, "%s", s->peer);
    if (peer[0]) {
        snprintf(s->peer, sizeof s->peer, "%s", peer);
        abuse_peer_ip(s->peer, s->ip, sizeof s->ip);
    }
    if (!count_conn(s)) {
        s->state = ST_LOGOUT;
        net_conn_close(s->conn);
        return;
    }
    log_msg(LOGL_INFO, s->id, NULL, "connect from %s via proxy %s", s->peer, via);
    uint8_t *rest = s->stash;
    size_t nrest = s->nstash;
    s->stash = NULL;
    s->nstash = 0;
    greet(s);
    if (nrest > used)
        feed(s, rest + used, nrest - used);
    free(rest);
}

static void on_data(net_conn *c, void *user, const uint8_t *p, size_t n)
{
    (void)c;
    session *s = user;
    RM_ASSERT(s->conn == c);
    /* nginx's mail proxy sets no TCP_NODELAY on its connections to the
     * backends: a command it forwards in two writes (a line, then the
     * literal the client sent after it) waits for our ACK of the first,
     * which the kernel delays ~40 ms while we send nothing back. */
    if (net_conn_tag(c) == LISTEN_IMAP_PROXY)
        net_conn_quickack(c);
    if (s->proxy_wait)
        proxy_header(s, p, n);
    else
        feed(s, p, n);
}

static void on_drain(net_conn *c, void *user)
{
    session *s = user;
    if (s->out_paused && net_conn_pending(c) <= s->srv->max_output / 2) {
        s->out_paused = false;
        if (s->in_yield)
            net_conn_yield(c);
        else if (!s->delayed && !s->cont && !s->pool_busy)
            net_conn_pause(c, false);
    }
    /* Not from here (we are inside the send's completion): next round. */
    if (s->cont_drain) {
        s->cont_drain = false;
        net_conn_yield(c);
    }
}

static void on_resume(net_conn *c, void *user)
{
    (void)c;
    session *s = user;
    if (s->cont) {
        sess_cont_run(s);
    } else if (s->in_yield && !s->out_paused) {
        s->in_yield = false;
        sess_resume_input(s);
    }
}

static void on_timer(net_conn *c, void *user)
{
    session *s = user;
    if (s->delayed) {
        release_delayed(s);
        return;
    }
    bool partial = imap_reader_busy(s->rd) && s->wait == WAIT_NONE;
    bool login = s->state == ST_NOAUTH && s->timer_login;
    log_msg(LOGL_INFO, s->id, s->user, "timeout in state %d%s", (int)s->state,
            login ? " (login deadline)" : partial ? " with a half-sent command" : "");
    imap_out_printf(&s->out, "* BYE %s\r\n", login ? "Login timeout"
                    : partial ? "Command not completed in time"
                    : s->state == ST_NOAUTH ? "Login timeout" : "Autologout; idle for too long");
    sess_flush(s);
    s->state = ST_LOGOUT;
    net_conn_close(c);
}

static void on_wake(net_conn *c, void *user)
{
    (void)c;
    session *s = user;
    if (s->kicked && s->state != ST_LOGOUT) {   /* control.c: kick */
        control_kick_due(s);
        if (s->state == ST_LOGOUT) {
            net_conn_close(c);
            return;
        }
    }
    s->woken = true;
    /* While a command runs in steps (an announcement among them) the view
     * is its own: sess_cont_run syncs an IDLE session once it ends. */
    if (s->wait == WAIT_IDLE && s->state == ST_SELECTED && !s->cont) {
        cmd_sync(s, &cmd_table[CMD_IDLE]);
        sess_flush(s);
    }
}

void sess_free(session *s)
{
    /* No pool job points here any more, and on_close let go of the mailbox. */
    RM_ASSERT(!s->pool_busy && !s->mb);
    sess_cont_free(s);
    sasl_free(s->sasl);
    store_user_close(s->su);
    imap_reader_free(s->rd);
    imap_out_free(&s->out);
    free(s->user);
    free(s->wait_tag);
    free(s->auth_mech);
    free(s->saved);
    search_ctx_free_all(s);
    free(s);
}

static void on_close(net_conn *c, void *user)
{
    (void)c;
    session *s = user;
    RM_ASSERT(s->conn == c && !s->dead);
    log_msg(LOGL_INFO, s->id, s->user, "disconnect");
    metrics_session_state(net_conn_worker(c), s->m_state, METRICS_NO_STATE);
    s->m_state = SESS_M_CLOSED;
    control_reg_del(s);
    if (s->counted_ip)
        abuse_conn_close(s->srv->abuse, s->ip);
    if (s->counted_user)
        abuse_user_close(s->srv->abuse, s->user);
    free(s->delayed);
    s->delayed = NULL;
    imap_out_free(&s->held);
    memset(&s->held, 0, sizeof s->held);
    free(s->stash);
    s->stash = NULL;
    sess_cont_free(s);      /* before unselect: it may pin the mailbox */
    sess_unselect(s);
    auth_cancel(s);         /* never run a hash nobody waits for */
    if (s->pool_busy) {
        s->dead = true;     /* the pool job still points here: it frees us */
        return;
    }
    sess_free(s);
}

static void on_shutdown(net_conn *c, void *user)
{
    session *s = user;
    imap_out_printf(&s->out, "* BYE Server shutting down\r\n");
    sess_flush(s);
    s->state = ST_LOGOUT;
    net_conn_close(c);
}

const net_conn_ops imap_session_ops = {
    .on_open = on_open,
    .on_data = on_data,
    .on_drain = on_drain,
    .on_timer = on_timer,
    .on_wake = on_wake,
    .on_resume = on_resume,
    .on_close = on_close,
    .on_shutdown = on_shutdown,
};
