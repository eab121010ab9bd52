/* core/server/view.c — a session's view of its selected mailbox.
 *
 * IMAP sequence numbers belong to the session: they change only when this
 * session is told of an EXPUNGE.  The view is the array of UIDs the client
 * knows, in order.  sess_update compares it with the store and announces
 * the difference (core/server/view_sync.c, in steps): new messages (EXISTS,
 * RECENT), flag changes (FETCH) and, where the command's table entry allows
 * it (RFC 9051 7.5.1), expunges (EXPUNGE, highest sequence number first so
 * that each one is still valid when read). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/fetch/fetch_engine.h"
#include "core/server/autocompact.h"
#include "core/server/search_context.h"
#include "core/server/session.h"
#include "store/assert.h"
#include "store/utf8.h"

void sess_changed(session *s, store_mbox *mb)
{
    notify_changed(s->srv, mb, net_conn_get_id(s->conn));
    autocompact_consider(s->srv->autocompact, mb, s->user);
}

void sess_unselect(session *s)
{
    if (s->mb) {
        notify_unwatch(s->srv, s->mb, net_conn_get_id(s->conn));
        store_mbox_close(s->mb);
    }
    s->mb = NULL;
    free(s->view);
    s->view = NULL;
    s->nview = s->capview = 0;
    free(s->mbname);
    s->mbname = NULL;
    free(s->saved);
    s->saved = NULL;
    search_ctx_free_all(s);     /* RFC 5267 4.3: until the mailbox is closed */
    s->kw_announced = 0;
    s->kw_announced_once = false;
    s->nsaved = 0;
    s->nrecent = 0;
    RM_ASSERT(!s->cont);        /* a running command would still use the view */
    if (s->state == ST_SELECTED)
        s->state = ST_AUTH;
}

uint32_t sess_view_lower(const session *s, uint32_t uid)
{
    return sess_view_lower_n(s, uid, s->nview);
}

uint32_t sess_view_lower_n(const session *s, uint32_t uid, uint32_t n)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->view[mid] < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

uint32_t sess_seq_of_uid(const session *s, uint32_t uid)
{
    uint32_t i = sess_view_lower(s, uid);
    return i < s->nview && s->view[i] == uid ? i + 1 : 0;
}

void sess_flags(session *s, imap_out *o, const store_snap *snap, uint32_t flags,
                uint64_t keywords, bool recent)
{
    imap_fetch_flags(o, snap, flags, keywords & s->kw_announced, recent);
}

/* The keywords the mailbox's table holds now.  The table only grows (a
 * slot, once named, keeps its name for the life of the mailbox), and a
 * message's keyword bit is set after the slot it names: a bit read
 * before this call is covered by its answer. */
static uint64_t snap_keyword_mask(const store_snap *snap, imap_out *names)
{
    uint64_t mask = 0;
    for (unsigned k = 0; k < STORE_MAX_KEYWORDS; k++) {
        const char *n = store_snap_keyword(snap, k);
        if (!n)
            continue;
        mask |= 1ull << k;
        if (names)
            imap_out_printf(names, " %s", n);
    }
    return mask;
}

void sess_announce_flags(session *s, imap_out *o, const store_snap *snap)
{
    imap_out kw = {0};
    uint64_t mask = snap_keyword_mask(snap, &kw);
    const char *kws = kw.p ? kw.p : "";
    int kwl = (int)kw.len;
    imap_out_printf(o, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%.*s)\r\n",
                    kwl, kws);
    /* Read-only: PERMANENTFLAGS () was said at EXAMINE and stays true. */
    if (s->readonly && !s->kw_announced_once)
        imap_out_lit(o, "* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
    else if (!s->readonly)
        imap_out_printf(o, "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted "
                        "\\Seen \\Draft%.*s \\*)] Flags permitted\r\n", kwl, kws);
    if (kw.err || o->err)
        mask = 0;       /* not said: say it again next time */
    imap_out_free(&kw);
    s->kw_announced = mask;
    s->kw_announced_once = true;
}

uint64_t sess_keywords_announce(session *s, imap_out *o, const store_snap *snap,
                                uint64_t keywords)
{
    if (keywords & ~s->kw_announced)
        sess_announce_flags(s, o, snap);
    return keywords & s->kw_announced;
}

bool sess_keywords_new(session *s, const store_snap *snap)
{
    return (snap_keyword_mask(snap, NULL) & ~s->kw_announced) != 0;
}

int sess_set_to_uids(session *s, const char *spec, bool uid, store_range **out,
                     size_t *nout)
{
    imap_seqset set = {0};
    bool dollar = false;
    int rc = imap_seqset_parse(spec, strlen(spec), s->srv->max_seqset_ranges, &set, &dollar);
    if (rc < 0)
        return rc;
    store_range *r = NULL;
    size_t n = 0;
    if (dollar) {
        r = malloc((s->nsaved ? s->nsaved : 1) * sizeof *r);
        if (!r)
            return -ENOMEM;
        for (uint32_t i = 0; i < s->nsaved; i++)
            r[n++] = (store_range){s->saved[i], s->saved[i]};
        *out = r;
        *nout = n;
        return 0;
    }
    /* Normalized first (sorted, merged): a set naming the same messages
     * many times costs the work of naming them once. */
    imap_range *res = malloc((set.n ? set.n : 1) * sizeof *res);
    r = malloc((set.n ? set.n : 1) * sizeof *r);
    if (!res || !r) {
        free(res);
        free(r);
        free(set.r);
        return -ENOMEM;
    }
    uint32_t last = s->nview ? s->view[s->nview - 1] : 0;
    size_t nres = imap_seqset_resolve(&set, uid ? last : s->nview, res);
    free(set.r);
    for (size_t i = 0; i < nres; i++) {
        uint32_t lo = res[i].lo, hi = res[i].hi;
        if (!uid) {
            if (hi > s->nview || lo == 0) {
                rc = -ERANGE;   /* a message number that does not exist */
                break;
            }
            /* the view is ascending, so mapped ranges stay sorted and disjoint */
            lo = s->view[lo - 1];
            hi = s->view[hi - 1];
            RM_ASSERT(lo <= hi);    /* the view ascends */
        } else if (hi > last) {
            hi = last;
        }
        if (lo && lo <= hi)
            r[n++] = (store_range){lo, hi};
    }
    free(res);
    if (rc < 0) {
        free(r);
        return rc;
    }
    *out = r;
    *nout = n;
    return 0;
}

void sess_set_error(session *s, const char *tag, int rc)
{
    if (rc == -E2BIG)
        sess_tagged(s, tag, "NO", "[LIMIT] Too many ranges in the sequence set");
    else if (rc == -ERANGE)
        sess_bad(s, tag, "Invalid message number");
    else
        sess_bad(s, tag, "Bad sequence set");
}

void sess_store_error(session *s, const char *tag, int rc, const char *what)
{
    const char *code;
    switch (rc) {
    case -ENOENT: code = "[NONEXISTENT] No such mailbox"; break;
    case -EEXIST: code = "[ALREADYEXISTS] Mailbox already exists"; break;
    case -EINVAL: code = "[CANNOT] Invalid mailbox name"; break;
    case -EPERM: code = "[CANNOT] Not allowed on INBOX"; break;
    case -ENOTEMPTY: code = "[HASCHILDREN] Mailbox has children; delete them first"; break;
    case -EMLINK: code = "[LIMIT] Too many keywords in this mailbox"; break;
    /* A full file system (or a file-system quota).  RFC 5530 has no code
     * for "the server's disk is full"; OVERQUOTA ("the user would be over
     * quota after the operation") is the one whose remedy is right for the
     * client: the write was refused for want of space, nothing of it was
     * stored, deleting mail or retrying later helps, and reading goes on.
     * UNAVAILABLE means a subsystem is down (reads would fail too), LIMIT an
     * implementation limit that retrying never lifts.  Dovecot answers the
     * same "NO [OVERQUOTA] Not enough disk space", so clients already know
     * it.  The operator must hear of it: it is logged as an error. */
    case -ENOSPC:
    case -EDQUOT: code = "[OVERQUOTA] Not enough disk space"; break;
    case -EFBIG: code = "[TOOBIG] Message too large"; break;
    /* The user is frozen (store_user_freeze): being moved to another
     * backend.  RFC 5530 3: UNAVAILABLE is for a command the server cannot
     * process "due to an administrative action"; reading goes on, and the
     * client is told BYE [UNAVAILABLE] once the move is done. */
    case -EROFS: code = "[UNAVAILABLE] Mailbox is being moved; try again shortly"; break;
    case -EOVERFLOW: code = "[LIMIT] UIDs exhausted"; break;
    /* A subsystem that cannot answer now (the user directory): RFC 5530
     * 3, UNAVAILABLE, "a failure of some subsystem" that "may be
     * temporary", logged where it happened. */
    case -EAGAIN: code = "[UNAVAILABLE] Temporarily unavailable, try again"; break;
    default: code = "[SERVERBUG] Internal error; the event is logged"; break;
    }
    if (!strncmp(code, "[SERVERBUG]", 11) || rc == -ENOSPC || rc == -EDQUOT)
        log_msg(LOGL_ERROR, s->id, s->user, "%s failed: %s", what, strerror(-rc));
    sess_tagged(s, tag, "NO", "%s", code);
}

/* ---- mailbox names ------------------------------------------------------------ */

char *sess_mbox_from_client(session *s, const char *name)
{
    if (s->utf8) {
        if (!store_utf8_valid(name, strlen(name)))
            return NULL;
        return strdup(name);
    }
    return imap_mutf7_to_utf8(name, strlen(name));
}

void sess_mbox_to_client(session *s, imap_out *o, const char *utf8name)
{
    if (s->utf8) {
        imap_out_string(o, utf8name, strlen(utf8name), true);
        return;
    }
    char *m = imap_utf8_to_mutf7(utf8name);
    if (m) {
        imap_out_string(o, m, strlen(m), false);
        free(m);
    } else {
        imap_out_string(o, utf8name, strlen(utf8name), false);
    }
}

int sess_uidset_raw(session *s, const char *spec, uint32_t star, store_range **out,
                    size_t *nout)
{
    imap_seqset set = {0};
    bool dollar = false;
    int rc = imap_seqset_parse(spec, strlen(spec), s->srv->max_seqset_ranges, &set, &dollar);
    if (rc < 0)
        return rc;
    /* SEARCHRES: the saved UIDs, which lose the expunged ones (RFC 5182
     * 2.1): what they name is in the view */
    if (dollar)
        return sess_set_to_uids(s, spec, true, out, nout);
    imap_range *res = malloc((set.n ? set.n : 1) * sizeof *res);
    store_range *r = malloc((set.n ? set.n : 1) * sizeof *r);
    if (!res || !r) {
        free(res);
        free(r);
        free(set.r);
        return -ENOMEM;
    }
    size_t nres = imap_seqset_resolve(&set, star, res), n = 0;
    free(set.r);
    for (size_t i = 0; i < nres; i++) {
        uint32_t lo = res[i].lo ? res[i].lo : 1;
        if (lo <= res[i].hi)
            r[n++] = (store_range){lo, res[i].hi};
    }
    free(res);
    *out = r;
    *nout = n;
    return 0;
}

/* "lo:hi" or "lo". */
static void out_range(imap_out *o, uint32_t lo, uint32_t hi)
{
    imap_out_uint(o, lo);
    if (hi != lo) {
        imap_out_lit(o, ":");
        imap_out_uint(o, hi);
    }
}

int sess_vanished_collect(const store_snap *snap, uint64_t since, const store_range *known,
                          size_t nknown, uint32_t from, store_rangelist *out)
{
    /* One call per range, each into a list of its own that is then
     * appended: the contract says what a call gives, not what it does to
     * ranges already in its list. */
    store_rangelist one = {0};
    int rc = 0;
    for (size_t k = 0; k < nknown && rc == 0; k++) {
        uint32_t lo = known[k].lo > from ? known[k].lo : from;
        if (lo > known[k].hi)
            continue;
        one.n = 0;
        rc = store_snap_vanished(snap, since, lo, known[k].hi, &one);
        for (size_t i = 0; i < one.n && rc == 0; i++) {
            store_range r = one.r[i];
            if (out->n && r.lo <= out->r[out->n - 1].hi + 1) {
                RM_ASSERT(r.lo > out->r[out->n - 1].hi);    /* known ascends */
                out->r[out->n - 1].hi = r.hi;
                continue;
            }
            if (out->n == out->cap) {
                size_t cap = out->cap ? out->cap * 2 : 16;
                store_range *nr = realloc(out->r, cap * sizeof *nr);
                if (!nr) {
                    rc = -ENOMEM;
                    break;
                }
                out->r = nr;
                out->cap = cap;
            }
            out->r[out->n++] = r;
        }
    }
    store_rangelist_free(&one);
    return rc;
}

size_t sess_vanished_write(imap_out *o, const store_rangelist *v, size_t i, size_t max)
{
    size_t end = v->n - i > max ? i + max : v->n;
    if (i == end)
        return i;
    imap_out_lit(o, "* VANISHED (EARLIER) ");
    for (size_t k = i; k < end; k++) {
        if (k > i)
            imap_out_lit(o, ",");
        out_range(o, v->r[k].lo, v->r[k].hi);
    }
    imap_out_lit(o, "\r\n");
    return end;
}
