/* core/server/lmtp_deliver.c — delivering an LMTP transaction's message.
 *
 * The job runs on the sync pool: for each recipient it prepends
 * Return-Path, Delivered-To and a Received line, appends the copy to the
 * recipient's mailbox, wakes the mailbox's IDLE sessions, and records the
 * recipient's reply; then it flushes every mailbox it wrote at once
 * (deferred durability: concurrent deliveries and IMAP writers of one
 * mailbox share a flush) before any reply goes out.  Back on the worker the replies go out in recipient
 * order (RFC 2033 4.2), so a 250 always means "on disk" and a copy that
 * failed is never on disk.
 *
 * Where the message goes is decided in one place (target_mailbox), so that
 * a filter (Sieve) can take that decision later. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/auth/authpool.h"
#include "core/base/log.h"
#include "core/server/metrics.h"
#include "core/server/lmtp.h"
#include "core/server/quota.h"
#include "store/assert.h"
#include "store/crlf.h"
#include "store/message.h"

struct result {
    int code;
    const char *status;
    char text[200];
};

struct job {
    lmtp_sess *ls;
    imap_server *srv;
    char peer[64];
    struct result *res;     /* one per recipient */
};

static void set(struct result *r, int code, const char *status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set(struct result *r, int code, const char *status, const char *fmt, ...)
{
    va_list ap;
    r->code = code;
    r->status = status;
    va_start(ap, fmt);
    vsnprintf(r->text, sizeof r->text, fmt, ap);
    va_end(ap);
}

/* The mailbox a copy goes to: user+folder@ into that folder when it
 * exists, else INBOX.  (The place for a filter's decision.) */
static int target_mailbox(store_user *su, const lmtp_rcpt *r, store_mbox **mb,
                          const char **name)
{
    if (r->folder) {
        int rc = store_mbox_open(su, r->folder, mb);
        *name = r->folder;
        if (rc == 0)
            return 0;
        if (rc != -ENOENT && rc != -EINVAL)
            return rc;
    }
    *name = "INBOX";
    return store_mbox_open(su, "INBOX", mb);
}

/* The header fields a delivered copy starts with (RFC 5321 4.4: Return-Path
 * and the Received line; Delivered-To as Postfix and Dovecot write it, which
 * MTAs use to break forwarding loops). */
static int trace_fields(const struct job *j, const lmtp_rcpt *r, char *buf, size_t cap)
{
    const lmtp_sess *ls = j->ls;
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    long off = tm.tm_gmtoff / 60;
    snprintf(date, sizeof date, "%s, %d %s %d %02d:%02d:%02d %c%02ld%02ld", days[tm.tm_wday],
             tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
             off < 0 ? '-' : '+', labs(off) / 60, labs(off) % 60);
    int n = snprintf(buf, cap,
                     "Return-Path: <%s>\r\n"
                     "Delivered-To: %s\r\n"
                     "Received: from %s (%s)\r\n"
                     "\tby %s (Ringmail) with %s id %llx\r\n"
                     "\tfor <%s>; %s\r\n",
                     ls->from, r->addr, ls->helo ? ls->helo : "unknown", j->peer,
                     j->srv->lmtp.hostname, ls->smtputf8 ? "UTF8LMTP" : "LMTP",
                     (unsigned long long)ls->id, r->addr, date);
    return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

/* body's parsed blob (or NULL): each copy's is made from it by moving its
 * offsets past the trace fields (store_msg_prefixed), so the message is
 * parsed once however many recipients it has. */
static void deliver_one(struct job *j, const lmtp_rcpt *r, const char *body, size_t blen,
                        const store_buf *parsed, struct result *res)
{
    char head[2048];
    int hl = trace_fields(j, r, head, sizeof head);
    char *copy = NULL;
    store_user *su = NULL;
    store_mbox *mb = NULL;
    store_buf blob = { 0 };
    if (hl < 0 || !(copy = malloc((size_t)hl + blen))) {
        set(res, 451, "4.3.0", "<%s> Out of memory", r->addr);
        goto out;
    }
    memcpy(copy, head, (size_t)hl);
    memcpy(copy + hl, body, blen);
    int rc = store_user_open(j->srv->mail_root, r->user, &j->srv->sopts, &su);
    const char *name = "INBOX";
    if (rc == 0)
        rc = target_mailbox(su, r, &mb, &name);
    uint32_t uid = 0;
    bool over = false;
    if (rc == 0) {
        store_new_msg m = { .data = copy, .len = (size_t)hl + blen };
        if (parsed && store_msg_prefixed(parsed->data, parsed->len, (size_t)hl, &blob) == 0) {
            m.cache = blob.data;
            m.cache_len = blob.len;
        }
        time_t now = time(NULL);
        struct tm lt;
        localtime_r(&now, &lt);
        m.internal_date = now;
        m.tz_min = (int16_t)(lt.tm_gmtoff / 60);
        /* this copy must fit the quota, or none is written */
        over = quota_check_add(j->srv, su, r->user, 1, m.len, NULL, NULL) == -EDQUOT;
        rc = over ? -EDQUOT : store_append(mb, &m, 1, &uid);
    }
    if (rc == 0) {
        notify_changed(j->srv, mb, (net_conn_id){ 0, 0 });
        set(res, 250, "2.0.0", "<%s> Saved as UID %u in %s", r->addr, uid, name);
        log_msg(LOGL_INFO, j->ls->id, r->user, "lmtp: delivered UID %u to %s (%zu bytes)", uid,
                name, (size_t)hl + blen);
    } else if (over) {
        bool t = j->srv->quota_tempfail;
        set(res, t ? 452 : 552, t ? "4.2.2" : "5.2.2", "<%s> Mailbox is full", r->addr);
    } else if (rc == -ENOSPC) {
        set(res, 452, "4.3.1", "<%s> Insufficient system storage", r->addr);
    } else if (rc == -EROFS) {
        /* Frozen for a move (store_user_freeze): RFC 5321 4.2.5, a 4yz
         * reply makes the MTA keep the message and retry, by then at the
         * backend that the directory names. */
        log_msg(LOGL_INFO, j->ls->id, r->user, "lmtp: deferred: the user is being moved");
        set(res, 451, "4.3.0", "<%s> Mailbox is being moved; try again later", r->addr);
    } else {
        log_msg(LOGL_ERROR, j->ls->id, r->user, "lmtp: delivery failed: %s", strerror(-rc));
        set(res, 451, "4.3.0", "<%s> Temporary failure storing the message", r->addr);
    }
out:
    if (mb)
        store_mbox_close(mb);
    if (su)
        store_user_close(su);
    free(copy);
    free(blob.data);
}

static void work(void *arg)
{
    struct job *j = arg;
    lmtp_sess *ls = j->ls;
    if (ls->msize > j->srv->lmtp.max_size) {
        /* RFC 1870 6.2: 552 when the message turned out too big */
        for (size_t i = 0; i < ls->nrcpt; i++)
            set(&j->res[i], 552, "5.3.4", "<%s> Message too big (%llu bytes, at most %llu)",
                ls->rcpt[i].addr, (unsigned long long)ls->msize,
                (unsigned long long)j->srv->lmtp.max_size);
        return;
    }
    /* Stored messages have CRLF line ends (store/crlf.h). */
    size_t blen = store_crlf_len(ls->msg, ls->mlen);
    char *body = blen == ls->mlen ? NULL : malloc(blen ? blen : 1);
    if (body)
        store_crlf_copy(body, ls->msg, ls->mlen);
    const char *text = body ? body : ls->msg;
    store_buf parsed = { 0 };
    bool once = (blen == ls->mlen || body) && store_msg_prefix_safe(text, blen) &&
                store_msg_parse(text, blen, &parsed) == 0;
    /* The copies are written one after the other but flushed together:
     * the store defers each mailbox's flush (up to STORE_DEFER_MAX logs,
     * more are flushed as they are written), and one store_defer_sync
     * makes them all durable before any 250 is sent. */
    store_defer d;
    store_defer_begin(&d);
    for (size_t i = 0; i < ls->nrcpt; i++) {
        if (blen != ls->mlen && !body)
            set(&j->res[i], 451, "4.3.0", "<%s> Out of memory", ls->rcpt[i].addr);
        else
            deliver_one(j, &ls->rcpt[i], text, blen, once ? &parsed : NULL, &j->res[i]);
    }
    store_defer_end();
    int rc = d.n ? store_defer_sync(&d) : 0;
    store_defer_release(&d);
    if (rc < 0) {
        /* Not known to be on disk: no 250 (the MTA retries) */
        log_msg(LOGL_ERROR, ls->id, NULL, "lmtp: flushing the delivery failed: %s",
                strerror(-rc));
        for (size_t i = 0; i < ls->nrcpt; i++)
            if (j->res[i].code == 250)
                set(&j->res[i], 451, "4.3.0", "<%s> Temporary failure storing the message",
                    ls->rcpt[i].addr);
    }
    free(parsed.data);
    free(body);
}

static void finish(struct job *j)
{
    lmtp_sess *ls = j->ls;
    for (size_t i = 0; i < ls->nrcpt; i++) {
        imap_out_printf(&ls->out, "%d %s %s\r\n", j->res[i].code, j->res[i].status,
                        j->res[i].text);
        metrics_lmtp(net_conn_worker(ls->conn), j->res[i].code);
    }
    free(j->res);
    free(j);
    /* the transaction is over; LHLO's state stays */
    for (size_t i = 0; i < ls->nrcpt; i++)
        lmtp_rcpt_free(&ls->rcpt[i]);
    ls->nrcpt = 0;
    free(ls->from);
    ls->from = NULL;
    ls->in_mail = false;
    ls->smtputf8 = false;
    ls->mlen = 0;
    ls->msize = 0;
    if (ls->mcap > (1u << 20)) {    /* do not keep a big buffer on an idle session */
        free(ls->msg);
        ls->msg = NULL;
        ls->mcap = 0;
    }
}

static void done(void *arg, int status)
{
    struct job *j = arg;
    lmtp_sess *ls = j->ls;
    RM_ASSERT(ls->busy);
    ls->busy = false;
    if (status < 0)     /* the pool shut down before the job ran */
        for (size_t i = 0; i < ls->nrcpt; i++)
            set(&j->res[i], 421, "4.3.2", "<%s> Server shutting down", ls->rcpt[i].addr);
    finish(j);
    if (ls->dead) {
        lmtp_free(ls);
        return;
    }
    lmtp_resume(ls);
}

void lmtp_deliver(lmtp_sess *ls)
{
    RM_ASSERT(!ls->busy && ls->nrcpt > 0);
    struct job *j = calloc(1, sizeof *j);
    if (j)
        j->res = calloc(ls->nrcpt, sizeof *j->res);
    if (!j || !j->res) {
        for (size_t i = 0; i < ls->nrcpt; i++)
            imap_out_printf(&ls->out, "451 4.3.0 <%s> Out of memory\r\n", ls->rcpt[i].addr);
        if (j)
            free(j);
        return;
    }
    j->ls = ls;
    j->srv = ls->srv;
    snprintf(j->peer, sizeof j->peer, "%s", net_conn_peer(ls->conn));
    ls->busy = true;
    net_conn_pause(ls->conn, true);
    if (authpool_submit(ls->srv->syncpool, work, j, done, ls->srv->net,
                        net_conn_worker(ls->conn)) < 0) {
        ls->busy = false;
        for (size_t i = 0; i < ls->nrcpt; i++)
            set(&j->res[i], 451, "4.3.0", "<%s> Server busy, try again later", ls->rcpt[i].addr);
        finish(j);
        net_conn_pause(ls->conn, false);
    }
}
