/* core/server/cmd_fetch.c — FETCH and UID FETCH.
 *
 * The command around the FETCH engine (core/fetch/fetch_engine.h): the
 * set over the session's view, the implicit \Seen (on the sync pool when
 * large), answering in slices, and the zero-copy hand-off of large
 * sections to the connection, kept alive by the snapshot until the socket
 * has taken them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/auth/authpool.h"
#include "core/fetch/fetch_engine.h"
#include "core/base/log.h"
#include "core/server/session.h"

/* The snapshot shared by the zero-copy chunks of one FETCH.  Released on
 * the connection's worker, so a plain counter is enough. */
typedef struct snapref {
    store_snap *snap;
    unsigned refs;
} snapref;

static void snapref_put(void *arg)
{
    snapref *r = arg;
    if (--r->refs == 0) {
        store_snap_put(r->snap);
        free(r);
    }
}

/* A FETCH in progress: where it is in the set, and what it holds. */
typedef struct fetch_cont {
    imap_fetch_req req;
    store_range *r;             /* the set as UID ranges, owned */
    size_t nr, k;               /* next range */
    uint32_t i;                 /* next view index in range k; UINT32_MAX:
                                   not looked up yet */
    store_uidlist seen;         /* UIDs whose \Seen this FETCH set */
    size_t sj;                  /* seen.uids ascends like the view: merge */
    snapref *ref;               /* the snapshot of the whole command */
    imap_fetch_ctx fx;          /* the engine's, over ref->snap */
    session *s;
    int failed;
    bool uid;
    /* UID FETCH (CHANGEDSINCE n VANISHED), RFC 7162 3.2.6: the UID set as
     * written (owned), then the VANISHED (EARLIER) ranges to write before
     * any FETCH line */
    store_range *vset;
    size_t nvset;
    bool vanished;
    store_rangelist van;
    size_t vk;
    /* the message whose pages a fault brought in, and which of its files
     * (1u << STORE_RA_*): not looked at again */
    uint32_t fault_uid;
    unsigned fault_skip;
    char tag[];
} fetch_cont;

static void fetch_cont_free(void *arg)
{
    fetch_cont *fc = arg;
    if (fc->ref)
        snapref_put(fc->ref);
    store_uidlist_free(&fc->seen);
    imap_fetch_req_free(&fc->req);
    free(fc->r);
    free(fc->vset);
    store_rangelist_free(&fc->van);
    free(fc);
}

/* One slice of the FETCH: messages until the slice is over, then the
 * tagged answer once the set is done.  The view does not change between
 * steps: the session runs nothing else meanwhile. */
static bool fetch_step(session *s, void *arg)
{
    fetch_cont *fc = arg;
    sess_slice sl;
    sess_slice_begin(&sl);
    /* RFC 7162 3.2.6: "Any VANISHED (EARLIER) responses MUST be returned
     * before any FETCH responses" */
    while (fc->vk < fc->van.n) {
        if (sess_slice_over(s, &sl))
            return false;
        fc->vk = sess_vanished_write(&s->out, &fc->van, fc->vk, SESS_VANISHED_LINE);
        if (s->out.len > (1u << 18))
            sess_flush(s);
    }
    for (; fc->k < fc->nr; fc->k++, fc->i = UINT32_MAX) {
        const store_range *rk = &fc->r[fc->k];
        if (fc->i == UINT32_MAX)
            fc->i = sess_view_lower(s, rk->lo);
        for (; fc->i < s->nview && s->view[fc->i] <= rk->hi; fc->i++) {
            if (sess_slice_over(s, &sl))
                return false;
            uint32_t u = s->view[fc->i];
            /* what the message needs read from the disk is read on the
             * sync pool first, not in a page fault on the worker */
            unsigned skip = fc->fault_uid == u ? fc->fault_skip : 0, what;
            store_fault *f;
            if (imap_fetch_resident(&fc->fx, &fc->req, u, skip, &f, &what) == -EWOULDBLOCK) {
                fc->fault_uid = u;
                fc->fault_skip = skip | 1u << what;
                if (sess_cont_fault_in(s, f) == 0)
                    return false;
            }
            while (fc->sj < fc->seen.n && fc->seen.uids[fc->sj] < u)
                fc->sj++;
            bool sc = fc->sj < fc->seen.n && fc->seen.uids[fc->sj] == u;
            int frc = imap_fetch_one(&fc->fx, &s->out, &fc->req, fc->i + 1, u, fc->uid, sc);
            if (frc < 0 && (!fc->failed || frc == -ENOTSUP))
                fc->failed = frc;
            if (s->out.len > (1u << 18))
                sess_flush(s);
        }
    }
    const char *tag = fc->tag;
    const cmd_def *def = &cmd_table[CMD_FETCH];
    if (fc->failed == -ENOTSUP)
        cmd_done(s, def, tag, "NO", "[UNKNOWN-CTE] Unknown Content-Transfer-Encoding");
    else if (fc->failed == -ENOENT)
        cmd_done(s, def, tag, "NO", "[CANNOT] No such part for BINARY");
    else if (fc->failed)
        cmd_done(s, def, tag, "NO", "[SERVERBUG] Some messages could not be fetched");
    else
        cmd_done(s, def, tag, "OK", "FETCH completed");
    return true;
}

/* A large section goes to the socket by reference into the snapshot's
 * mapping, after what is queued before it. */
static void send_ref(void *arg, imap_out *o, const char *p, size_t len)
{
    fetch_cont *fc = arg;
    (void)o;    /* o is s->out, which sess_flush empties */
    sess_flush(fc->s);
    fc->ref->refs++;
    net_conn_send_ref(fc->s->conn, p, len, snapref_put, fc->ref);
}

/* A message's FLAGS never shows a keyword before the untagged FLAGS that
 * announces it (sess_keywords_announce). */
static uint64_t fetch_keywords(void *arg, imap_out *o, uint64_t keywords)
{
    fetch_cont *fc = arg;
    return sess_keywords_announce(fc->s, o, fc->ref->snap, keywords);
}

/* FETCH (CHANGEDSINCE n): the set narrowed to the messages whose modseq
 * is above n, from the store's list of them (store_snap_changed_since), so
 * that a resync costs what changed rather than the set's size; and with
 * VANISHED, the UIDs of the set expunged since n.  0 or -ENOMEM. */
#define CHANGES_NARROW_MIN 4096     /* messages */

static int fetch_changes(fetch_cont *fc)
{
    const store_snap *snap = fc->ref->snap;
    uint64_t since = fc->req.changedsince;
    if (!since)
        return 0;
    if (fc->vanished &&
        sess_vanished_collect(snap, since, fc->vset, fc->nvset, 1, &fc->van) < 0)
        return -ENOMEM;
    /* A small set is cheaper to walk (a cursor step per message) than the
     * list of every change in the mailbox is to build */
    size_t count = 0;
    for (size_t k = 0; k < fc->nr && count < CHANGES_NARROW_MIN; k++)
        count += sess_view_lower(fc->s, fc->r[k].hi == UINT32_MAX ? fc->r[k].hi
                                                                  : fc->r[k].hi + 1) -
                 sess_view_lower(fc->s, fc->r[k].lo);
    if (count < CHANGES_NARROW_MIN)
        return 0;
    store_uidlist ch = {0};
    int rc = store_snap_changed_since_max(snap, since, SESS_CHANGES_MAX, &ch);
    if (rc < 0) {
        store_uidlist_free(&ch);
        /* more changed than is listed at once: the set is walked whole,
         * in slices, the engine skipping what did not change */
        return rc == -E2BIG ? 0 : -ENOMEM;
    }
    /* both ascend: a merge keeps the changed UIDs inside the set */
    store_range *r = malloc((ch.n ? ch.n : 1) * sizeof *r);
    if (!r) {
        store_uidlist_free(&ch);
        return -ENOMEM;
    }
    size_t n = 0, k = 0;
    for (size_t i = 0; i < ch.n; i++) {
        uint32_t u = ch.uids[i];
        while (k < fc->nr && fc->r[k].hi < u)
            k++;
        if (k == fc->nr)
            break;
        if (u < fc->r[k].lo)
            continue;
        if (n && r[n - 1].hi + 1 == u)
            r[n - 1].hi = u;
        else
            r[n++] = (store_range){u, u};
    }
    store_uidlist_free(&ch);
    free(fc->r);
    fc->r = r;
    fc->nr = n;
    fc->k = 0;
    fc->i = UINT32_MAX;
    return 0;
}

/* The FETCH with its \Seen written (or none to write): pin the snapshot
 * and run the first step, the rest in steps.  fc is taken over. */
static void fetch_go(session *s, fetch_cont *fc)
{
    snapref *ref = malloc(sizeof *ref);
    store_snap *snap = ref && s->mb ? store_snap_get(s->mb) : NULL;
    if (!snap) {
        free(ref);
        sess_tagged(s, fc->tag, "NO", "[SERVERBUG] Out of memory");
        fetch_cont_free(fc);
        return;
    }
    ref->snap = snap;
    ref->refs = 1;
    fc->ref = ref;
    fc->s = s;
    imap_fetch_ctx_init(&fc->fx, snap, s->utf8, s->recent_first);
    fc->fx.send = send_ref;
    fc->fx.send_arg = fc;
    fc->fx.keywords = fetch_keywords;
    fc->fx.keywords_arg = fc;
    fc->fx.condstore = s->condstore;
    fc->fx.qresync = s->qresync;
    if (fetch_changes(fc) < 0) {
        sess_tagged(s, fc->tag, "NO", "[SERVERBUG] Out of memory");
        fetch_cont_free(fc);
        return;
    }
    sess_cont_begin(s, fetch_step, fetch_cont_free, fc);
}

static void seen_written(session *s, uint64_t modseq)
{
    if (!modseq)
        return;
    if (modseq == s->modseq_seen + 1)
        s->modseq_seen = modseq;
    sess_changed(s, s->mb);
}

/* ---- the implicit \Seen of a big FETCH, off the worker ----
 * Setting \Seen on 10^6 messages is one atomic store_flags call of ~10-50
 * ms: as a big STORE (core/server/cmd_message.c), it runs on the sync pool,
 * durability included, and the FETCH goes on in steps once it is done.
 * The session reads nothing meanwhile; if it goes away, the job's
 * completion frees it. */
#define SEEN_POOL_MIN 16384     /* messages */

typedef struct seen_job {
    session *s;
    store_mbox *mb;             /* owned reference to the selected mailbox */
    fetch_cont *fc;             /* owned until the job ends */
    uint64_t modseq;
    int rc, sync_rc;
} seen_job;

static void seen_work(void *arg)
{
    seen_job *j = arg;
    store_defer d;
    store_defer_begin(&d);
    j->rc = store_flags(j->mb, j->fc->r, j->fc->nr, STORE_FLAGS_ADD, STORE_F_SEEN, NULL, 0, 0,
                        &j->fc->seen, NULL, &j->modseq);
    j->sync_rc = sess_defer_flush(&d);
}

static void seen_done(void *arg, int status)
{
    seen_job *j = arg;
    session *s = j->s;
    fetch_cont *fc = j->fc;
    store_mbox_close(j->mb);
    s->pool_busy = false;
    if (s->dead) {
        fetch_cont_free(fc);
        free(j);
        sess_free(s);
        return;
    }
    if (sess_flush_failed(s, j->sync_rc)) {
        fetch_cont_free(fc);
    } else {
        if (status == 0 && j->rc == 0)
            seen_written(s, j->modseq);
        fetch_go(s, fc);    /* a failed \Seen write leaves the flags as they were */
    }
    free(j);
    sess_resume_input(s);
}

/* 0 if the \Seen write went to the pool (fc is the job's), or -errno to
 * write it here. */
static int seen_submit(session *s, fetch_cont *fc)
{
    size_t count = 0;
    for (size_t k = 0; k < fc->nr && count < SEEN_POOL_MIN; k++)
        count += sess_view_lower(s, fc->r[k].hi == UINT32_MAX ? fc->r[k].hi : fc->r[k].hi + 1) -
                 sess_view_lower(s, fc->r[k].lo);
    if (count < SEEN_POOL_MIN)
        return -EAGAIN;
    seen_job *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    /* our own reference, checked to be the selected mailbox (its name may
     * have been given to another meanwhile) */
    if (store_mbox_open(s->su, s->mbname, &j->mb) < 0 || j->mb != s->mb) {
        if (j->mb)
            store_mbox_close(j->mb);
        free(j);
        return -ESTALE;
    }
    j->s = s;
    j->fc = fc;
    int rc = authpool_submit(s->srv->syncpool, seen_work, j, seen_done, s->srv->net,
                             net_conn_worker(s->conn));
    if (rc < 0) {
        store_mbox_close(j->mb);
        free(j);
        return rc;
    }
    s->pool_busy = true;
    sess_hold_input(s);
    return 0;
}

void cmd_fetch(imap_cmd *c)
{
    session *s = c->s;
    const char *tag = c->tag;
    imap_arg *args = c->args;
    size_t nargs = c->nargs;
    bool uid = c->uid;
    imap_fetch_req req = {0};
    const char *err = "Bad fetch attributes";
    store_range *r = NULL;
    size_t nr = 0;
    /* FETCH n PREVIEW (LAZY): the attribute's own modifier list (RFC 8970
     * 6), told from FETCH modifiers by its content */
    size_t natt = nargs >= 3 && imap_fetch_is_preview_mod(&args[1], &args[2]) ? 2 : 1;
    if (nargs < 2 || nargs > 2 + natt || args[0].type != IMAP_ARG_ATOM) {
        sess_bad(s, tag, "FETCH takes a set and attributes");
        return;
    }
    /* RFC 4466 2.4: fetch-modifiers = SP "(" fetch-modifier *(SP
     * fetch-modifier) ")".  The ones offered are RFC 7162's CHANGEDSINCE
     * mod-sequence-value (1*DIGIT, nonzero: mod-sequence-valzer is
     * UNCHANGEDSINCE's), so (CHANGEDSINCE 0) is BAD: RFC 7162 9,
     * "mod-sequence-value = 1*DIGIT ;; Positive unsigned 63-bit integer"
     * (Dovecot 2.3 takes 0 as "everything"), and VANISHED (3.2.6). */
    uint64_t changedsince = 0;
    bool vanished = false;
    if (nargs == natt + 2) {
        const imap_arg *l = &args[natt + 1];
        if (l->type != IMAP_ARG_LIST || !l->nlist) {
            sess_bad(s, tag, "Unknown FETCH modifier");
            return;
        }
        for (size_t k = 0; k < l->nlist; k++) {
            if (imap_arg_is(&l->list[k], "CHANGEDSINCE") && !changedsince &&
                k + 1 < l->nlist && imap_arg_number(&l->list[k + 1], &changedsince) == 0 &&
                changedsince) {
                k++;
            } else if (imap_arg_is(&l->list[k], "VANISHED") && !vanished) {
                vanished = true;
            } else {
                sess_bad(s, tag, "Unknown FETCH modifier");
                return;
            }
        }
        /* RFC 7162 3.2.6: "the VANISHED UID FETCH modifier is NOT allowed
         * with a FETCH command.  The server MUST return a tagged BAD
         * response"; "MUST respond with a tagged BAD response if the
         * VANISHED UID FETCH modifier is specified and the client hasn't
         * issued "ENABLE QRESYNC""; "If the VANISHED UID FETCH modifier is
         * used without the CHANGEDSINCE UID FETCH modifier, the server
         * MUST respond with a tagged BAD response." */
        if (vanished && !uid) {
            sess_bad(s, tag, "VANISHED is only allowed with UID FETCH");
            return;
        }
        if (vanished && !s->qresync) {
            sess_bad(s, tag, "VANISHED needs ENABLE QRESYNC");
            return;
        }
        if (vanished && !changedsince) {
            sess_bad(s, tag, "VANISHED needs CHANGEDSINCE");
            return;
        }
    }
    store_range *vset = NULL;
    size_t nvset = 0;
    int rc = natt == 2 ? imap_fetch_parse_preview(&args[2], &req, &err)
                       : imap_fetch_parse(&args[1], &req, &err);
    if (rc < 0) {
        sess_bad(s, tag, "%s", rc == -ENOMEM ? "Out of memory" : err);
        goto out;
    }
    /* RFC 7162 3.1.4.1: CHANGEDSINCE "implicitly adds the MODSEQ FETCH
     * message data item" */
    if (changedsince) {
        req.changedsince = changedsince;
        req.simple |= IMAP_FETCH_MODSEQ;
    }
    if ((rc = sess_set_to_uids(s, args[0].s, uid, &r, &nr)) < 0) {
        sess_set_error(s, tag, rc);
        goto out;
    }
    /* The UIDs VANISHED looks at are the set as written, not only the
     * messages it names now.  '*' stands for every UID from its other end
     * up: the expunged UIDs above the last message are "messages from the
     * UID set parameter that have been expunged" (3.2.6) for a client
     * whose cache went up to there, and the store never reports a UID at
     * or above UIDNEXT. */
    if (vanished && (rc = sess_uidset_raw(s, args[0].s, UINT32_MAX, &vset, &nvset)) < 0) {
        sess_set_error(s, tag, rc);
        goto out;
    }
    /* RFC 7162 3.1: FETCH MODSEQ and FETCH (CHANGEDSINCE) are CONDSTORE
     * enabling commands (the first one writes HIGHESTMODSEQ) */
    if (req.simple & IMAP_FETCH_MODSEQ)
        sess_condstore_enable(s, &s->out);
    size_t taglen = strlen(tag);
    fetch_cont *fc = calloc(1, sizeof *fc + taglen + 1);
    if (!fc) {
        sess_tagged(s, tag, "NO", "[SERVERBUG] Out of memory");
        goto out;
    }
    fc->req = req;
    fc->r = r;
    fc->nr = nr;
    fc->i = UINT32_MAX;
    fc->uid = uid;
    fc->vanished = vanished;
    fc->vset = vset;
    fc->nvset = nvset;
    vset = NULL;
    memcpy(fc->tag, tag, taglen + 1);
    if (req.sets_seen && !s->readonly && nr) {
        if (seen_submit(s, fc) == 0)
            return;     /* the job's completion goes on */
        /* Implicit \Seen first, so the responses show it. */
        uint64_t modseq = 0;
        if (store_flags(s->mb, r, nr, STORE_FLAGS_ADD, STORE_F_SEEN, NULL, 0, 0, &fc->seen,
                        NULL, &modseq) == 0)
            seen_written(s, modseq);
    }
    fetch_go(s, fc);
    return;
out:
    imap_fetch_req_free(&req);
    free(r);
    free(vset);
}
