/* core/server/view_sync.c — announcing changes to a session's view, in steps.
 *
 * What a session is told after a command can be as large as the mailbox:
 * another session (or ringmail-admin) flagged or expunged a million
 * messages, this one stored flags on 1:* without .SILENT, or expunged
 * them.  Written in one go, that is a million lines buffered for a client
 * that may not read, and tens of milliseconds during which the worker's
 * other sessions wait.  So the announcement is a long command of its own
 * (core/server/cmd_cont.c): it writes its lines in slices, stops while the output
 * queue is over max_output_buffer, and the command's tagged answer (the
 * "tail") goes out once everything before it has.
 *
 * The view stays right at every line sent.  EXPUNGEs are announced from the
 * highest sequence number down, so that the entries below the one announced
 * are untouched and each number is exact when the client reads it; the
 * survivors above are moved to the top of the array as the walk goes
 * (view[0..lo) not yet looked at, view[w..top) kept) and the array is
 * closed up once the walk ends, which costs O(n) for the whole walk where
 * removing each entry in place would cost O(n) per EXPUNGE.  In between,
 * nothing else reads the view: the session runs no other command while a
 * step is pending, and a wake-up during IDLE only marks the session
 * (the sync runs again once this one ends).
 *
 * Expunges (EXPUNGE, or VANISHED once QRESYNC is enabled) go before the
 * flag changes, whose numbers are then those after them; Dovecot 2.3 does
 * the reverse.  Either is exact, each number being right when it is read
 * (RFC 7162 3.2.10.2: VANISHED "adjusts the message sequence numbers for
 * the messages remaining").
 *
 * One snapshot is pinned for the whole announcement.  Flags are read live
 * from it, so a change made meanwhile may be announced now and again at
 * the next sync: harmless, where missing one would not be. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/server/search_context.h"
#include "core/server/session.h"
#include "store/assert.h"

enum {
    PH_CTX,         /* CONTEXT=SEARCH updates for messages of the view */
    PH_ECHO,        /* STORE's FETCH responses for the messages it named */
    PH_GONE,        /* EXPUNGE/MOVE: the UIDs the command removed */
    PH_EXPUNGE,     /* others' expunges, found by comparing with the snapshot */
    PH_NEW,         /* EXISTS, RECENT */
    PH_CTX_NEW,     /* CONTEXT=SEARCH updates for the new messages */
    PH_FLAGS,       /* others' flag changes */
    PH_DONE,
};

typedef struct view_sync {
    store_snap *snap;           /* owned */
    int phase;
    bool allow_expunge;
    uint32_t last;              /* highest UID the view had at the start */
    uint32_t first_new, nnew;   /* snapshot positions of new messages */
    /* PH_ECHO */
    store_range *echo;          /* owned */
    size_t necho, k;
    uint32_t i;                 /* view index in echo[k]; UINT32_MAX: not looked up */
    bool echo_uid, echo_modseq_only;
    uint32_t *echo_skip;        /* owned, ascending */
    size_t nechoskip, sk;
    /* PH_GONE */
    uint32_t *gone;             /* owned, ascending */
    size_t ngone;               /* gone[0..ngone) not announced yet */
    /* PH_GONE and PH_EXPUNGE: the walk down the view */
    bool walking;
    uint32_t lo, w, top;
    uint32_t need;              /* PH_EXPUNGE: entries still to find gone */
    /* PH_FLAGS */
    uint64_t since, hms;
    bool held;                  /* others' expunges are held back */
    uint32_t pos, vj;           /* snapshot position; view index (merge) */
    store_uidlist chg;          /* the store's list of what changed (owned) */
    size_t ci;                  /* next in chg */
    int chg_state;              /* 0 not asked, 1 have it, -1 scan instead */
    size_t ek;                  /* echo range (merge): FLAGS echoed already */
    uint64_t known_modseq;      /* sess_update_req.echo_known_modseq */
    /* with QRESYNC: the UIDs the walk removed in this step, descending,
     * written as one VANISHED line when the step ends (owned) */
    uint32_t *van;
    size_t nvan, capvan;
    struct search_ctx_sync *ctx;    /* PH_CTX, PH_CTX_NEW (owned) */
    imap_out tail;              /* the command's answer, owned */
    bool tail_hms;              /* sess_update_req.tail_hms */
    size_t tail_hms_at;
} view_sync;

static void view_sync_free(void *arg)
{
    view_sync *vs = arg;
    if (vs->snap)
        store_snap_put(vs->snap);
    free(vs->echo);
    free(vs->echo_skip);
    free(vs->gone);
    free(vs->van);
    store_uidlist_free(&vs->chg);
    search_ctx_sync_free(vs->ctx);
    imap_out_free(&vs->tail);
    free(vs);
}

/* Big answers go to the connection as they grow, so that the output limit
 * sees them (sess_slice_over counts what the connection holds). */
static void out_spill(session *s)
{
    if (s->out.len > (1u << 18))
        sess_flush(s);
}

static void walk_begin(session *s, view_sync *vs)
{
    vs->walking = true;
    vs->lo = vs->w = vs->top = s->nview;
}

/* Close the gap between the entries not looked at and the kept ones. */
static void walk_end(session *s, view_sync *vs)
{
    if (!vs->walking)
        return;
    /* view[0..lo) not looked at, [lo..w) the gap, [w..top) kept */
    RM_ASSERT(vs->lo <= vs->w && vs->w <= vs->top && vs->top <= s->nview);
    if (vs->w > vs->lo)
        memmove(&s->view[vs->lo], &s->view[vs->w], (vs->top - vs->w) * sizeof *s->view);
    s->nview = vs->lo + (vs->top - vs->w);
    vs->walking = false;
}

/* Keep view[lo - 1 .. from) (above an entry going away): to the top. */
static void walk_keep_above(session *s, view_sync *vs, uint32_t from)
{
    RM_ASSERT(vs->walking && from <= vs->lo && vs->lo <= vs->w && vs->w <= vs->top);
    uint32_t n = vs->lo - from;
    vs->w -= n;
    memmove(&s->view[vs->w], &s->view[from], n * sizeof *s->view);
    vs->lo = from;
}

/* RFC 7162 3.2.10.2: once QRESYNC is enabled, "the server MUST use the
 * VANISHED response without the EARLIER tag instead of the EXPUNGE
 * response".  The walk collects what it removes and writes one VANISHED
 * line per step: the UIDs are all in the view the client knows (never a
 * message it was not told of, never one told gone already), and the line
 * goes out before anything that follows the step. */
static void van_flush(session *s, view_sync *vs)
{
    if (!vs->nvan)
        return;
    /* collected from the top of the view down: ascending for the set */
    for (size_t i = 0, j = vs->nvan - 1; i < j; i++, j--) {
        uint32_t t = vs->van[i];
        vs->van[i] = vs->van[j];
        vs->van[j] = t;
    }
    imap_out_lit(&s->out, "* VANISHED ");
    imap_out_set(&s->out, vs->van, vs->nvan);
    imap_out_lit(&s->out, "\r\n");
    vs->nvan = 0;
    out_spill(s);
}

/* Announce that the view entry at index i (UID uid) is gone. */
static void announce_gone(session *s, view_sync *vs, uint32_t i, uint32_t uid)
{
    if (!s->qresync) {
        imap_out_printf(&s->out, "* %u EXPUNGE\r\n", i + 1);
        out_spill(s);
        return;
    }
    if (vs->nvan == vs->capvan) {
        size_t cap = vs->capvan ? vs->capvan * 2 : 64;
        uint32_t *v = realloc(vs->van, cap * sizeof *v);
        if (!v) {
            /* no room to gather them: the ones so far go out now, and
             * this one on a line of its own */
            van_flush(s, vs);
            imap_out_printf(&s->out, "* VANISHED %u\r\n", uid);
            return;
        }
        vs->van = v;
        vs->capvan = cap;
    }
    vs->van[vs->nvan++] = uid;
    /* a line of bounded length */
    if (vs->nvan == 8192)
        van_flush(s, vs);
}

static bool step_echo(session *s, view_sync *vs, sess_slice *sl)
{
    for (; vs->k < vs->necho; vs->k++, vs->i = UINT32_MAX) {
        const store_range *rk = &vs->echo[vs->k];
        if (vs->i == UINT32_MAX)
            vs->i = sess_view_lower(s, rk->lo);
        for (; vs->i < s->nview && s->view[vs->i] <= rk->hi; vs->i++) {
            if (sess_slice_over(s, sl))
                return false;
            uint32_t u = s->view[vs->i];
            while (vs->sk < vs->nechoskip && vs->echo_skip[vs->sk] < u)
                vs->sk++;
            if (vs->sk < vs->nechoskip && vs->echo_skip[vs->sk] == u)
                continue;
            store_msg m;
            if (store_snap_msg(vs->snap, u, &m) < 0)
                continue;
            if (vs->echo_modseq_only) {
                imap_out_printf(&s->out, "* %u FETCH (", vs->i + 1);
            } else {
                m.keywords = sess_keywords_announce(s, &s->out, vs->snap, m.keywords);
                imap_out_printf(&s->out, "* %u FETCH (FLAGS ", vs->i + 1);
                sess_flags(s, &s->out, vs->snap, m.flags, m.keywords, u >= s->recent_first);
                if (s->condstore)
                    imap_out_lit(&s->out, " ");
            }
            if (s->condstore)
                imap_out_printf(&s->out, "MODSEQ (%llu)", (unsigned long long)m.modseq);
            /* RFC 7162 3.2.4: with QRESYNC, "both UID and mod-sequence
             * data in all subsequent untagged FETCH responses" caused by
             * a STORE.  CONDSTORE alone keeps 3.1.3's form (Example 14's
             * "* 7 FETCH (MODSEQ (...))"): the client asked for no UIDs. */
            if (vs->echo_uid || s->qresync)
                imap_out_printf(&s->out, " UID %u", u);
            imap_out_lit(&s->out, ")\r\n");
            out_spill(s);
        }
    }
    return true;
}

static bool step_gone(session *s, view_sync *vs, sess_slice *sl)
{
    if (!vs->walking)
        walk_begin(s, vs);
    while (vs->ngone) {
        if (sess_slice_over(s, sl))
            return false;
        uint32_t u = vs->gone[--vs->ngone];
        /* binary search in the part not looked at yet */
        uint32_t a = sess_view_lower_n(s, u, vs->lo);
        if (a == vs->lo || s->view[a] != u)
            continue;   /* announced already (or never in the view) */
        walk_keep_above(s, vs, a + 1);
        vs->lo = a;
        announce_gone(s, vs, a, u);
    }
    walk_end(s, vs);
    return true;
}

static bool step_expunge(session *s, view_sync *vs, sess_slice *sl)
{
    if (!vs->walking) {
        uint32_t live = store_snap_messages(vs->snap) - vs->nnew;
        if (!vs->allow_expunge || live >= s->nview)
            return true;
        vs->need = s->nview - live;
        walk_begin(s, vs);
    }
    /* Every live message up to `last` is in the view, so once `need`
     * entries were found gone the rest are live: the walk stops there. */
    while (vs->lo > 0 && vs->need) {
        if (sess_slice_over(s, sl))
            return false;
        uint32_t i = vs->lo - 1;
        store_msg m;
        if (store_snap_msg(vs->snap, s->view[i], &m) == -ENOENT) {
            vs->lo = i;
            vs->need--;
            announce_gone(s, vs, i, s->view[i]);
        } else {
            walk_keep_above(s, vs, i);
        }
    }
    walk_end(s, vs);
    return true;
}

static int view_push(session *s, uint32_t uid)
{
    if (s->nview == s->capview) {
        uint32_t cap = s->capview ? s->capview * 2 : 16;
        uint32_t *v = realloc(s->view, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        s->view = v;
        s->capview = cap;
    }
    /* The view ascends: every binary search over it relies on that. */
    RM_ASSERT(!s->nview || s->view[s->nview - 1] < uid);
    s->view[s->nview++] = uid;
    return 0;
}

/* New messages: one EXISTS whatever their number, so in one go. */
static void step_new(session *s, view_sync *vs)
{
    if (!vs->nnew)
        return;
    if (!s->readonly) {
        uint32_t first;
        if (store_mbox_claim_recent(s->mb, &first) == 0 && first < s->recent_first)
            s->recent_first = first;
    }
    uint32_t entries = store_snap_entries(vs->snap);
    for (uint32_t p = vs->first_new; p < entries; p++) {
        store_msg m;
        if (store_snap_entry(vs->snap, p, &m) == 1 && view_push(s, m.uid) < 0)
            break;
    }
    imap_out_printf(&s->out, "* %u EXISTS\r\n", s->nview);
    uint32_t recent = 0;
    for (uint32_t i = s->nview; i-- > 0 && s->view[i] >= s->recent_first;)
        recent++;
    if (!s->rev2 && recent != s->nrecent)
        imap_out_printf(&s->out, "* %u RECENT\r\n", recent);
    s->nrecent = recent;
}

/* One changed message m (modseq above since, live) at view index vj: its
 * FETCH, unless the STORE's echo showed it already. */
static void announce_flags(session *s, view_sync *vs, store_msg *m, uint32_t vj)
{
    /* The STORE's echo showed this message's FLAGS from the same
     * snapshot a moment ago: saying it again tells nothing.  (A
     * MODSEQ-only echo showed no FLAGS: those are announced here.) */
    if (vs->known_modseq && m->modseq == vs->known_modseq)
        return;
    if (!vs->echo_modseq_only) {
        while (vs->ek < vs->necho && vs->echo[vs->ek].hi < m->uid)
            vs->ek++;
        if (vs->ek < vs->necho && vs->echo[vs->ek].lo <= m->uid)
            return;
    }
    m->keywords = sess_keywords_announce(s, &s->out, vs->snap, m->keywords);
    imap_out_printf(&s->out, "* %u FETCH (", vj + 1);
    /* RFC 7162 3.2.4: UID in every unsolicited FETCH once QRESYNC
     * is on (IMAP4rev2 asks for it too, RFC 9051 7.5.2) */
    if (s->rev2 || s->qresync)
        imap_out_printf(&s->out, "UID %u ", m->uid);
    imap_out_lit(&s->out, "FLAGS ");
    sess_flags(s, &s->out, vs->snap, m->flags, m->keywords, m->uid >= s->recent_first);
    /* RFC 7162 3.1.4.2: flag changes made elsewhere reach a
     * CONDSTORE-aware client with the message's mod-sequence */
    if (s->condstore)
        imap_out_printf(&s->out, " MODSEQ (%llu)", (unsigned long long)m->modseq);
    imap_out_lit(&s->out, ")\r\n");
    out_spill(s);
}

/* Flag changes since the last sync, in UID order.  The store lists the
 * messages changed since a modseq at the cost of what changed (its modseq
 * summary), so a session of a big mailbox pays for the changes, not for
 * the mailbox, after every command; each UID's sequence number is a binary
 * search in the view.  Without that list (no memory) the snapshot's
 * entries and the view are merged instead, as they ascend together. */
static bool step_flags(session *s, view_sync *vs, sess_slice *sl)
{
    if (vs->hms > vs->since && vs->chg_state == 0) {
        /* bounded: after a change of most of a big mailbox the list would
         * be built in one go; the walk below goes in slices instead */
        vs->chg_state = store_snap_changed_since_max(vs->snap, vs->since, SESS_CHANGES_MAX,
                                                     &vs->chg) == 0 ? 1 : -1;
        if (vs->chg_state < 0)
            store_uidlist_free(&vs->chg);
    }
    if (vs->chg_state == 1) {
        for (; vs->ci < vs->chg.n; vs->ci++) {
            uint32_t u = vs->chg.uids[vs->ci];
            if (u > vs->last)
                break;      /* new messages: told by EXISTS, not FETCH */
            if (sess_slice_over(s, sl))
                return false;
            uint32_t vj = sess_view_lower(s, u);
            store_msg m;
            if (vj == s->nview || s->view[vj] != u || store_snap_msg(vs->snap, u, &m) < 0 ||
                m.modseq <= vs->since)
                continue;
            announce_flags(s, vs, &m, vj);
        }
    } else {
        for (; vs->hms > vs->since && vs->pos < vs->first_new; vs->pos++) {
            if (sess_slice_over(s, sl))
                return false;
            store_msg m;
            if (store_snap_entry(vs->snap, vs->pos, &m) != 1 || m.modseq <= vs->since)
                continue;
            while (vs->vj < s->nview && s->view[vs->vj] < m.uid)
                vs->vj++;
            if (vs->vj == s->nview || s->view[vs->vj] != m.uid)
                continue;
            announce_flags(s, vs, &m, vs->vj);
        }
    }
    if (s->modseq_seen < vs->hms)
        s->modseq_seen = vs->hms;
    /* RFC 7162 3.2: MODSEQ values were (or may have been) shown while
     * expunges wait: a HIGHESTMODSEQ below those expunges' mod-sequence
     * tells a QRESYNC client where to resume from should it go away
     * before they are announced */
    if (vs->held && s->qresync)
        imap_out_printf(&s->out, "* OK [HIGHESTMODSEQ %llu] Expunges pending\r\n",
                        (unsigned long long)sess_modseq_told(s));
    return true;
}

static bool view_sync_step(session *s, void *arg)
{
    view_sync *vs = arg;
    sess_slice sl;
    sess_slice_begin(&sl);
    /* the mailbox went away under us (it cannot while we run, but a
     * session without one has nothing to announce) */
    if (!s->mb)
        vs->phase = PH_DONE;
    switch (vs->phase) {
    case PH_CTX:
        /* RFC 5267 4.3.4: REMOVEFROM for expunged messages "prior to the
         * expunge notification itself" */
        if (!search_ctx_sync_step(s, vs->snap, &vs->ctx, false, &sl))
            return false;
        vs->phase = PH_ECHO;
        /* fall through */
    case PH_ECHO:
        if (!step_echo(s, vs, &sl))
            return false;
        vs->phase = PH_GONE;
        /* fall through */
    case PH_GONE:
        if (!step_gone(s, vs, &sl)) {
            van_flush(s, vs);
            return false;
        }
        vs->phase = PH_EXPUNGE;
        /* fall through */
    case PH_EXPUNGE:
        if (!step_expunge(s, vs, &sl)) {
            van_flush(s, vs);
            return false;
        }
        van_flush(s, vs);
        vs->phase = PH_NEW;
        /* fall through */
    case PH_NEW:
        step_new(s, vs);
        vs->phase = PH_CTX_NEW;
        /* fall through */
    case PH_CTX_NEW:
        /* RFC 5267 4.3.3: ADDTO for new messages "after the EXISTS" */
        if (!search_ctx_sync_step(s, vs->snap, &vs->ctx, true, &sl))
            return false;
        vs->phase = PH_FLAGS;
        /* fall through */
    case PH_FLAGS:
        if (!step_flags(s, vs, &sl))
            return false;
        if (vs->allow_expunge && s->modseq_expunged < vs->hms)
            s->modseq_expunged = vs->hms;   /* every expunge in snap told */
        vs->phase = PH_DONE;
        /* fall through */
    default:
        break;
    }
    /* The view is closed up before the answer that follows it. */
    RM_ASSERT(!vs->walking && s->nview <= s->capview);
    if (vs->tail_hms && vs->tail_hms_at <= vs->tail.len) {
        /* everything up to the snapshot's modseq has been told now */
        imap_out_add(&s->out, vs->tail.p, vs->tail_hms_at);
        imap_out_printf(&s->out, "[HIGHESTMODSEQ %llu] ", (unsigned long long)vs->hms);
        imap_out_add(&s->out, vs->tail.p + vs->tail_hms_at, vs->tail.len - vs->tail_hms_at);
    } else if (vs->tail.len) {
        imap_out_add(&s->out, vs->tail.p, vs->tail.len);
    }
    return true;
}

void sess_update(session *s, sess_update_req *u)
{
    view_sync *vs = calloc(1, sizeof *vs);
    store_snap *snap = vs && s->mb ? store_snap_get(s->mb) : NULL;
    if (!snap) {
        /* Nothing to announce, or no memory to announce it with: what
         * was not announced stays due (the view and modseq_seen are
         * untouched), and the next sync tells it. */
        free(vs);
        if (u->tail.len)
            imap_out_add(&s->out, u->tail.p, u->tail.len);
        goto out;
    }
    if (s->mb)
        s->woken = false;
    vs->snap = snap;
    vs->allow_expunge = u->allow_expunge;
    vs->echo = u->echo;
    vs->necho = u->necho;
    vs->echo_uid = u->echo_uid;
    vs->echo_modseq_only = u->echo_modseq_only;
    vs->echo_skip = u->echo_skip;
    vs->nechoskip = u->nechoskip;
    vs->known_modseq = u->echo_known_modseq;
    vs->i = UINT32_MAX;
    vs->gone = u->gone;
    vs->ngone = u->ngone;
    vs->tail = u->tail;
    vs->tail_hms = u->tail_hms;
    vs->tail_hms_at = u->tail_hms_at;
    memset(u, 0, sizeof *u);
    vs->last = s->nview ? s->view[s->nview - 1] : 0;
    /* New messages sit at the end of the index. */
    uint32_t entries = store_snap_entries(snap);
    vs->first_new = entries;
    while (vs->first_new > 0) {
        store_msg m;
        store_snap_entry(snap, vs->first_new - 1, &m);
        if (m.uid <= vs->last)
            break;
        vs->first_new--;
    }
    for (uint32_t p = vs->first_new; p < entries; p++) {
        store_msg m;
        if (store_snap_entry(snap, p, &m) == 1)
            vs->nnew++;
    }
    vs->since = s->modseq_seen;
    vs->held = !vs->allow_expunge && store_snap_messages(snap) - vs->nnew < s->nview;
    vs->hms = store_snap_highestmodseq(snap);
    /* New keywords are announced at once, before anything that could show
     * them, even when no message in the view carries one yet: the writer
     * of APPEND (keyword) and every other session learn of it here. */
    if (sess_keywords_new(s, snap))
        sess_announce_flags(s, &s->out, snap);
    sess_cont_begin(s, view_sync_step, view_sync_free, vs);
out:
    free(u->echo);
    free(u->echo_skip);
    free(u->gone);
    imap_out_free(&u->tail);
    memset(u, 0, sizeof *u);
}
