/* core/server/cmd_fetch.c — FETCH and UID FETCH.
 *
 * A header listing (FLAGS, UID, RFC822.SIZE, INTERNALDATE, ENVELOPE,
 * BODYSTRUCTURE) reads only the index and the cache.  Message bytes are
 * read only for body sections, and large ones are not copied: they are
 * queued as references into the store's mapping, kept alive by the
 * snapshot until the socket has taken them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/auth/authpool.h"
#include "core/fetch/fetch_render.h"
#include "core/base/log.h"
#include "core/server/session.h"

#define ZERO_COPY_MIN 16384     /* smaller sections are cheaper to copy */

enum {
    F_UID = 1 << 0,
    F_FLAGS = 1 << 1,
    F_INTERNALDATE = 1 << 2,
    F_SIZE = 1 << 3,
    F_ENVELOPE = 1 << 4,
    F_BODY = 1 << 5,
    F_BODYSTRUCTURE = 1 << 6,
};

typedef struct fetch_item {
    imap_section sec;
} fetch_item;

typedef struct fetch_req {
    unsigned simple;        /* F_* */
    fetch_item *items;
    size_t nitems;
    bool sets_seen;         /* a non-peek body item */
} fetch_req;

static void req_free(fetch_req *r)
{
    for (size_t i = 0; i < r->nitems; i++)
        imap_section_free(&r->items[i].sec);
    free(r->items);
}

static int add_item(fetch_req *r, const char *spec, size_t len, const char **err)
{
    fetch_item *n = realloc(r->items, (r->nitems + 1) * sizeof *n);
    if (!n)
        return -ENOMEM;
    r->items = n;
    fetch_item *it = &n[r->nitems];
    memset(it, 0, sizeof *it);
    int rc = imap_section_parse(spec, len, &it->sec);
    if (rc < 0) {
        *err = rc == -E2BIG ? "Part number too deep" : "Bad section";
        return rc == -ENOMEM ? rc : -EINVAL;
    }
    if (!it->sec.peek)
        r->sets_seen = true;
    r->nitems++;
    return 0;
}

static int parse_att(fetch_req *r, const imap_arg *a, bool in_list, const char **err)
{
    if (a->type != IMAP_ARG_ATOM) {
        *err = "Fetch attribute expected";
        return -EINVAL;
    }
    const char *s = a->s;
    static const struct { const char *name; unsigned bits; } simple[] = {
        {"UID", F_UID}, {"FLAGS", F_FLAGS}, {"INTERNALDATE", F_INTERNALDATE},
        {"RFC822.SIZE", F_SIZE}, {"ENVELOPE", F_ENVELOPE}, {"BODY", F_BODY},
        {"BODYSTRUCTURE", F_BODYSTRUCTURE},
        {"ALL", F_FLAGS | F_INTERNALDATE | F_SIZE | F_ENVELOPE},
        {"FAST", F_FLAGS | F_INTERNALDATE | F_SIZE},
        {"FULL", F_FLAGS | F_INTERNALDATE | F_SIZE | F_ENVELOPE | F_BODY},
    };
    for (size_t i = 0; i < sizeof simple / sizeof *simple; i++)
        if (!strcasecmp(s, simple[i].name)) {
            if (in_list && i >= 7) {
                *err = "ALL, FAST and FULL cannot be in a list";
                return -EINVAL;
            }
            r->simple |= simple[i].bits;
            return 0;
        }
    if (strchr(s, '[') || !strncasecmp(s, "RFC822", 6))
        return add_item(r, s, a->len, err);
    *err = "Unknown fetch attribute";
    return -EINVAL;
}

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

static void internaldate(imap_out *o, int64_t t, int16_t tz)
{
    time_t local = (time_t)(t + tz * 60);
    struct tm tm;
    gmtime_r(&local, &tm);
    int z = tz < 0 ? -tz : tz;
    imap_out_printf(o, "\"%02d-%s-%04d %02d:%02d:%02d %c%02d%02d\"", tm.tm_mday,
                    store_month_abbr(tm.tm_mon), tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
                    tz < 0 ? '-' : '+', z / 60, z % 60);
}

/* One message's FETCH response.  Returns 0 or -errno (then nothing useful
 * was added for it). */
static int fetch_one(session *s, snapref *ref, const fetch_req *req, uint32_t seq,
                     uint32_t uid, bool uidcmd, bool seen_changed)
{
    store_snap *snap = ref->snap;
    store_msg m;
    /* Expunged by another session but still in our view: its bytes stay in
     * the log until compaction, so it can still be fetched (RFC 3501 7.4.1
     * forbids telling the client about the expunge during a FETCH). */
    if (store_snap_lookup(snap, uid, &m) < 0)
        return -ENOENT;
    imap_out *o = &s->out;
    imap_out_lit(o, "* ");
    imap_out_uint(o, seq);
    imap_out_lit(o, " FETCH (");
    const char *sp = "";
    if (uidcmd || (req->simple & F_UID)) {
        imap_out_lit(o, "UID ");
        imap_out_uint(o, uid);
        sp = " ";
    }
    if ((req->simple & F_FLAGS) || seen_changed) {
        imap_out_add(o, sp, strlen(sp));
        imap_out_lit(o, "FLAGS ");
        sess_flags(s, o, snap, m.flags, m.keywords, uid >= s->recent_first);
        sp = " ";
    }
    if (req->simple & F_INTERNALDATE) {
        imap_out_printf(o, "%sINTERNALDATE ", sp);
        internaldate(o, m.internal_date, m.tz_min);
        sp = " ";
    }
    if (req->simple & F_SIZE) {
        imap_out_add(o, sp, strlen(sp));
        imap_out_lit(o, "RFC822.SIZE ");
        imap_out_uint(o, m.size);
        sp = " ";
    }
    store_cache cache;
    bool have_cache = false;
    if (req->simple & (F_ENVELOPE | F_BODY | F_BODYSTRUCTURE) || req->nitems) {
        if (store_snap_cache(snap, uid, &cache) < 0) {
            imap_out_printf(o, ")\r\n");
            return -EIO;
        }
        have_cache = true;
    }
    if (req->simple & F_ENVELOPE) {
        imap_out_add(o, sp, strlen(sp));
        imap_out_lit(o, "ENVELOPE ");
        imap_render_envelope(o, &cache, 0, s->utf8);
        sp = " ";
    }
    if (req->simple & F_BODY) {
        imap_out_printf(o, "%sBODY ", sp);
        imap_render_body(o, &cache, false, s->utf8);
        sp = " ";
    }
    if (req->simple & F_BODYSTRUCTURE) {
        imap_out_printf(o, "%sBODYSTRUCTURE ", sp);
        imap_render_body(o, &cache, true, s->utf8);
        sp = " ";
    }
    const char *raw = NULL;
    size_t rawlen = 0;
    if (req->nitems && store_snap_bytes(snap, uid, 0, SIZE_MAX, &raw, &rawlen) < 0)
        return -EIO;
    int result = 0;
    for (size_t i = 0; i < req->nitems && have_cache; i++) {
        const imap_section *sec = &req->items[i].sec;
        imap_section_data d;
        int rc = imap_section_fetch(sec, &cache, raw, rawlen, &d);
        imap_out_add(o, sp, strlen(sp));
        sp = " ";
        imap_section_echo(o, sec);
        imap_out_add(o, " ", 1);
        if (rc == -ENOMEM) {
            imap_out_printf(o, "NIL");
            result = rc;
            continue;
        }
        if (rc < 0) {
            /* A part that does not exist or does not fit the section:
             * NIL for BODY; BINARY makes the command fail (RFC 3516). */
            imap_out_printf(o, "NIL");
            if (sec->item != IMAP_ITEM_BODY)
                result = rc == -ENOTSUP ? -ENOTSUP : -ENOENT;
            continue;
        }
        if (sec->item == IMAP_ITEM_BINARY_SIZE) {
            imap_out_printf(o, "%llu", (unsigned long long)d.size);
        } else if (d.nul) {
            imap_out_printf(o, "~{%zu}\r\n", d.len);
            imap_out_add(o, d.p, d.len);
        } else if (d.len >= ZERO_COPY_MIN && !d.buf.data) {
            imap_out_printf(o, "{%zu}\r\n", d.len);
            sess_flush(s);
            ref->refs++;
            net_conn_send_ref(s->conn, d.p, d.len, snapref_put, ref);
        } else {
            imap_out_printf(o, "{%zu}\r\n", d.len);
            imap_out_add(o, d.p, d.len);
        }
        imap_section_data_free(&d);
    }
    imap_out_lit(o, ")\r\n");
    return result;
}

/* A FETCH in progress: where it is in the set, and what it holds. */
typedef struct fetch_cont {
    fetch_req req;
    store_range *r;             /* the set as UID ranges, owned */
    size_t nr, k;               /* next range */
    uint32_t i;                 /* next view index in range k; UINT32_MAX:
                                   not looked up yet */
    store_uidlist seen;         /* UIDs whose \Seen this FETCH set */
    size_t sj;                  /* seen.uids ascends like the view: merge */
    snapref *ref;               /* the snapshot of the whole command */
    int failed;
    bool uid;
    char tag[];
} fetch_cont;

static void fetch_cont_free(void *arg)
{
    fetch_cont *fc = arg;
    if (fc->ref)
        snapref_put(fc->ref);
    store_uidlist_free(&fc->seen);
    req_free(&fc->req);
    free(fc->r);
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
    for (; fc->k < fc->nr; fc->k++, fc->i = UINT32_MAX) {
        const store_range *rk = &fc->r[fc->k];
        if (fc->i == UINT32_MAX)
            fc->i = sess_view_lower(s, rk->lo);
        for (; fc->i < s->nview && s->view[fc->i] <= rk->hi; fc->i++) {
            if (sess_slice_over(s, &sl))
                return false;
            uint32_t u = s->view[fc->i];
            while (fc->sj < fc->seen.n && fc->seen.uids[fc->sj] < u)
                fc->sj++;
            bool sc = fc->sj < fc->seen.n && fc->seen.uids[fc->sj] == u;
            int frc = fetch_one(s, fc->ref, &fc->req, fc->i + 1, u, fc->uid, sc);
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
    fetch_req req = {0};
    const char *err = "Bad fetch attributes";
    store_range *r = NULL;
    size_t nr = 0;
    if (nargs < 2 || nargs > 3 || args[0].type != IMAP_ARG_ATOM) {
        sess_bad(s, tag, "FETCH takes a set and attributes");
        return;
    }
    if (nargs == 3) {   /* (CHANGEDSINCE n) etc.: not offered */
        sess_bad(s, tag, "Unknown FETCH modifier");
        return;
    }
    int rc = 0;
    if (args[1].type == IMAP_ARG_LIST) {
        for (size_t i = 0; i < args[1].nlist && rc == 0; i++)
            rc = parse_att(&req, &args[1].list[i], true, &err);
    } else {
        rc = parse_att(&req, &args[1], false, &err);
    }
    if (rc < 0) {
        sess_bad(s, tag, "%s", rc == -ENOMEM ? "Out of memory" : err);
        goto out;
    }
    if ((rc = sess_set_to_uids(s, args[0].s, uid, &r, &nr)) < 0) {
        sess_set_error(s, tag, rc);
        goto out;
    }
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
    req_free(&req);
    free(r);
}
