/* core/server/cmd_mailbox.c — SELECT, EXAMINE, CREATE, DELETE, RENAME, SUBSCRIBE,
 * UNSUBSCRIBE, LIST, LSUB and STATUS. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/base/log.h"
#include "core/server/session.h"
#include "store/assert.h"

/* The mailbox argument in UTF-8, or NULL after answering. */
static char *mbox_arg(session *s, const char *tag, imap_args *a, const imap_arg *arg)
{
    if (arg->type == IMAP_ARG_LIST) {
        sess_bad(s, tag, "Mailbox name expected");
        return NULL;
    }
    const char *raw = imap_arg_astring(a, arg);
    char *name = raw && strlen(raw) == arg->len ? sess_mbox_from_client(s, raw) : NULL;
    if (!name && s->utf8)
        sess_bad(s, tag, "Mailbox name is not valid UTF-8");   /* RFC 6855 3 */
    else if (!name)
        sess_tagged(s, tag, "NO", "[CANNOT] Invalid mailbox name encoding");
    return name;
}

static const char *special_name(uint32_t sp)
{
    switch (sp) {
    case STORE_SPECIAL_SENT: return "\\Sent";
    case STORE_SPECIAL_DRAFTS: return "\\Drafts";
    case STORE_SPECIAL_TRASH: return "\\Trash";
    case STORE_SPECIAL_JUNK: return "\\Junk";
    case STORE_SPECIAL_ARCHIVE: return "\\Archive";
    }
    return NULL;
}

/* Append the special-use attributes of sp (any number of them) to the
 * attribute list attrs (room for all five is needed: 160 bytes are). */
static void special_attrs(char *attrs, uint32_t sp)
{
    for (uint32_t b = 1; b <= STORE_SPECIAL_ARCHIVE; b <<= 1) {
        if (!(sp & b))
            continue;
        if (*attrs)
            strcat(attrs, " ");
        strcat(attrs, special_name(b));
    }
}

static uint32_t special_parse(const char *s)
{
    for (uint32_t b = 1; b <= STORE_SPECIAL_ARCHIVE; b <<= 1)
        if (!strcasecmp(s, special_name(b)))
            return b;
    return 0;
}

/* ---- SELECT / EXAMINE -------------------------------------------------------- */

/* What the select-params asked for; filled by parse_select_params. */
struct select_opts {
    bool condstore;         /* (CONDSTORE): RFC 7162 3.1.8 */
    /* (QRESYNC (uidvalidity modseq [known-uids] [(seqs uids)])): RFC
     * 7162 3.2.5; the sets are the atoms as written, checked by
     * qresync_sets */
    bool qresync;
    uint32_t uidvalidity;
    uint64_t modseq;
    const char *known;      /* NULL: 1:<UIDNEXT-1> */
    const char *mseq, *muid;    /* seq-match-data, or NULL */
};

static bool param_condstore(const imap_arg *args, size_t n, size_t *i, struct select_opts *o)
{
    (void)args;
    (void)n;
    (void)i;
    o->condstore = true;
    return true;
}

/* RFC 7162 3.2.5: "QRESYNC" SP "(" uidvalidity SP mod-sequence-value
 * [SP known-uids] [SP seq-match-data] ")", seq-match-data = "("
 * known-sequence-set SP known-uid-set ")".  The sets' syntax is checked
 * later (qresync_sets). */
static bool param_qresync(const imap_arg *args, size_t n, size_t *i, struct select_opts *o)
{
    if (*i >= n || args[*i].type != IMAP_ARG_LIST || o->qresync)
        return false;
    const imap_arg *l = &args[(*i)++];
    uint64_t v;
    if (l->nlist < 2 || l->nlist > 4 || l->list[0].type != IMAP_ARG_ATOM ||
        imap_arg_number(&l->list[0], &v) < 0 || v == 0 || v > UINT32_MAX)
        return false;
    o->uidvalidity = (uint32_t)v;
    /* mod-sequence-value is "Positive" (RFC 7162 7), as in CHANGEDSINCE */
    if (l->list[1].type != IMAP_ARG_ATOM || imap_arg_number(&l->list[1], &o->modseq) < 0 ||
        o->modseq == 0)
        return false;
    size_t k = 2;
    if (k < l->nlist && l->list[k].type == IMAP_ARG_ATOM)
        o->known = l->list[k++].s;
    if (k < l->nlist) {
        const imap_arg *m = &l->list[k++];
        if (m->type != IMAP_ARG_LIST || m->nlist != 2 || m->list[0].type != IMAP_ARG_ATOM ||
            m->list[1].type != IMAP_ARG_ATOM)
            return false;
        o->mseq = m->list[0].s;
        o->muid = m->list[1].s;
    }
    if (k != l->nlist)
        return false;
    o->qresync = true;
    return true;
}

/* The parameters this server supports, by the extension that defines them:
 * CONDSTORE (no value), QRESYNC (a list). */
static const struct select_param {
    const char *name;
    /* Reads the value at args[*i] if the parameter takes one (advancing
     * *i); returns false for a bad value. */
    bool (*parse)(const imap_arg *args, size_t n, size_t *i, struct select_opts *o);
} select_params[] = {
    {"CONDSTORE", param_condstore},
    {"QRESYNC", param_qresync},
    {NULL, NULL},
};

/* RFC 4466 2.1: select-params = SP "(" select-param *(SP select-param) ")",
 * select-param = select-param-name [SP select-param-value], and "Any
 * parameter not defined by extensions that the server supports must be
 * rejected with a BAD response."  Returns NULL, or the reason for BAD. */
static const char *parse_select_params(const imap_arg *list, struct select_opts *o)
{
    if (list->nlist == 0)
        return "Empty SELECT parameter list";
    for (size_t i = 0; i < list->nlist;) {
        const imap_arg *p = &list->list[i++];
        if (p->type != IMAP_ARG_ATOM)
            return "SELECT parameter name expected";
        const struct select_param *sp = select_params;
        while (sp->name && strcasecmp(sp->name, p->s))
            sp++;
        if (!sp->name)
            return "Unknown parameter in SELECT command";
        if (sp->parse && !sp->parse(list->list, list->nlist, &i, o))
            return "Bad SELECT parameter value";
    }
    return NULL;
}

/* A QRESYNC known-sequence-set or known-uid-set walked in the client's
 * order (which the RFC says ascends), one number at a time. */
typedef struct set_iter {
    imap_seqset set;            /* owned */
    size_t k;
    uint64_t next;              /* in set.r[k] */
} set_iter;

static bool set_iter_next(set_iter *it, uint32_t *v)
{
    while (it->k < it->set.n) {
        const imap_seqrange *r = &it->set.r[it->k];
        if (it->next < r->lo)
            it->next = r->lo;
        if (it->next <= r->hi) {
            *v = (uint32_t)it->next++;
            return true;
        }
        it->k++;
    }
    return false;
}

/* The view of a big mailbox is built in steps (10^6 messages take ~10 ms
 * in one go, during which the worker's other sessions would wait); the
 * answer is written once it is whole.  The session is in the selected
 * state meanwhile but runs nothing else, so nobody sees the view half
 * built; the snapshot it is built from is pinned, and whatever changes
 * after it is announced at the next sync, as after any SELECT.
 *
 * With QRESYNC (RFC 7162 3.2.5) the usual responses are followed, in
 * steps too, by VANISHED (EARLIER) and the FETCH of what changed; both
 * come from the store's answers for "since n" (store_snap_vanished,
 * store_snap_changed_since), so their cost follows what changed, not the
 * mailbox. */
enum { SEL_VIEW, SEL_MATCH, SEL_VANISHED, SEL_CHANGED, SEL_DONE };

typedef struct select_cont {
    store_snap *snap;           /* owned */
    int phase;
    uint32_t p, entries;        /* next snapshot position, their count */
    uint32_t first_unseen, recent;
    bool readonly;
    /* QRESYNC */
    bool qresync;
    uint64_t since;
    store_range *known;         /* known-uids, sorted (owned) */
    size_t nknown;
    set_iter mseq, muid;        /* seq-match-data (owned sets) */
    uint32_t from;              /* VANISHED starts here (3.2.5.2) */
    store_rangelist van;        /* VANISHED (EARLIER) ranges */
    size_t vk;                  /* next one to write */
    store_uidlist changed;      /* live UIDs with modseq > since */
    size_t ck, kk;              /* next changed UID (or view position when
                                   walking); known range (merge) */
    bool walk;                  /* more changed than SESS_CHANGES_MAX: the
                                   view is walked instead of the list */
    store_cursor cur;           /* for the walk */
    session *unselect;          /* the SELECT failed late: unselect once
                                   the step is over (not under it) */
    store_resident res;         /* the index entries known in memory */
    uint32_t faulted;           /* 1 + the block a fault brought in */
    char tag[];
} select_cont;

static void select_cont_free(void *arg)
{
    select_cont *sc = arg;
    if (sc->unselect)
        sess_unselect(sc->unselect);
    if (sc->snap)
        store_snap_put(sc->snap);
    free(sc->known);
    free(sc->mseq.set.r);
    free(sc->muid.set.r);
    store_rangelist_free(&sc->van);
    store_uidlist_free(&sc->changed);
    free(sc);
}

/* RFC 8474 4: the mailbox's MAILBOXID.  The store's mailbox id names the
 * mailbox's files and is kept by RENAME, so "the same MAILBOXID for the
 * source and destination when renaming"; RENAME INBOX gives INBOX a new
 * id (RFC 3501 6.3.5: a new, empty INBOX) and the new name keeps INBOX's
 * messages, UIDs and UIDVALIDITY, hence its MAILBOXID too. */
static int mailboxid_of(session *s, const char *name, char *out)
{
    store_mailbox_info mi;
    int rc = store_mailbox_get(s->su, name, &mi);
    if (rc < 0)
        return rc;
    store_mailboxid_format(mi.id, mi.uidvalidity, out);
    free(mi.name);
    return 0;
}

/* The untagged responses of every SELECT/EXAMINE. */
static void select_head(session *s, select_cont *sc)
{
    store_snap *snap = sc->snap;
    bool readonly = sc->readonly;
    uint32_t recent = sc->recent, first_unseen = sc->first_unseen;
    if (readonly) {
        store_status st;
        if (store_mbox_status(s->mb, &st) == 0)
            recent = st.recent;
    }
    s->nrecent = recent;
    s->modseq_seen = s->modseq_expunged = store_snap_highestmodseq(snap);
    sess_announce_flags(s, &s->out, snap);
    imap_out_printf(&s->out, "* %u EXISTS\r\n", s->nview);
    if (!s->rev2) {
        imap_out_printf(&s->out, "* %u RECENT\r\n", recent);
        if (first_unseen)
            imap_out_printf(&s->out, "* OK [UNSEEN %u] First unseen\r\n", first_unseen);
    }
    imap_out_printf(&s->out, "* OK [UIDVALIDITY %u] UIDs valid\r\n", store_snap_uidvalidity(snap));
    imap_out_printf(&s->out, "* OK [UIDNEXT %u] Predicted next UID\r\n", store_snap_uidnext(snap));
    /* RFC 7162 3.1.2.1: once CONDSTORE is enabled, HIGHESTMODSEQ "with
     * every successful SELECT or EXAMINE command".  Every mailbox keeps
     * modseqs, so NOMODSEQ (3.1.2.2) is never sent.  Before an enabling
     * command it is not sent (Dovecot 2.3 sends it always): 3.1.2 asks
     * for it on a SELECT "issued after a CONDSTORE enabling command", and
     * the first enabling command with a mailbox selected sends it then
     * (sess_condstore_enable). */
    if (s->condstore)
        imap_out_printf(&s->out, "* OK [HIGHESTMODSEQ %llu] Highest\r\n",
                        (unsigned long long)s->modseq_seen);
    /* RFC 8474 4.2: "MUST return an untagged OK response with the
     * MAILBOXID response code on all successful SELECT and EXAMINE". */
    char mid[STORE_OBJECTID_MAX];
    if (mailboxid_of(s, s->mbname, mid) == 0)
        imap_out_printf(&s->out, "* OK [MAILBOXID (%s)] Ok\r\n", mid);
    if (s->rev2) {
        imap_out_printf(&s->out, "* LIST () \"%c\" ", store_user_separator(s->su));
        sess_mbox_to_client(s, &s->out, s->mbname);
        imap_out_printf(&s->out, "\r\n");
    }
    if (notify_watch(s->srv, s->mb, net_conn_get_id(s->conn)) < 0)
        log_msg(LOGL_WARN, s->id, s->user, "no memory to watch the mailbox");
}

static void select_tagged(session *s, select_cont *sc)
{
    sess_tagged(s, sc->tag, "OK", "[%s] %s completed", sc->readonly ? "READ-ONLY" : "READ-WRITE",
                sc->readonly ? "EXAMINE" : "SELECT");
}

/* RFC 7162 3.2.5.2: "If a pair matches, then the client knows of any
 * expunges up to, and including, the message"; the first pair that does
 * not match ends the walk ("the lowest UID included in the VANISHED
 * response would be" the last matching UID + 1). */
static bool qresync_match(session *s, select_cont *sc, sess_slice *sl)
{
    uint32_t seq, uid;
    for (;;) {
        if ((sl->n & 255) == 0 && sess_slice_over(s, sl))
            return false;
        sl->n++;
        if (!set_iter_next(&sc->mseq, &seq) || !set_iter_next(&sc->muid, &uid))
            break;
        if (seq == 0 || seq > s->nview || s->view[seq - 1] != uid)
            break;
        sc->from = uid == UINT32_MAX ? UINT32_MAX : uid + 1;
    }
    return true;
}

/* The changed messages the client knows of (known-uids): "* n FETCH (UID
 * u FLAGS (...) MODSEQ (m))", in UID order, as Example 3.2.5.1 shows. */
/* Whether UID u is in known-uids (the UIDs asked about ascend). */
static bool qresync_known(select_cont *sc, uint32_t u, bool *past)
{
    while (sc->kk < sc->nknown && sc->known[sc->kk].hi < u)
        sc->kk++;
    *past = sc->kk == sc->nknown;
    return !*past && u >= sc->known[sc->kk].lo;
}

static void qresync_fetch(session *s, select_cont *sc, uint32_t seq, store_msg *m)
{
    m->keywords = sess_keywords_announce(s, &s->out, sc->snap, m->keywords);
    imap_out_printf(&s->out, "* %u FETCH (UID %u FLAGS ", seq, m->uid);
    sess_flags(s, &s->out, sc->snap, m->flags, m->keywords, m->uid >= s->recent_first);
    imap_out_printf(&s->out, " MODSEQ (%llu))\r\n", (unsigned long long)m->modseq);
    if (s->out.len > (1u << 18))
        sess_flush(s);
}

/* The changed messages from more than SESS_CHANGES_MAX: the view in UID
 * order, 256 messages a unit of work, each read through a cursor. */
static bool qresync_walk(session *s, select_cont *sc, sess_slice *sl)
{
    while (sc->ck < s->nview) {
        if (sess_slice_over(s, sl))
            return false;
        size_t end = s->nview - sc->ck > 256 ? sc->ck + 256 : s->nview;
        for (; sc->ck < end; sc->ck++) {
            uint32_t u = s->view[sc->ck];
            bool past;
            store_msg m;
            if (!qresync_known(sc, u, &past)) {
                if (past)
                    return true;
                continue;
            }
            if (store_cursor_seek(&sc->cur, u, &m) >= 0 && m.modseq > sc->since)
                qresync_fetch(s, sc, (uint32_t)sc->ck + 1, &m);
        }
    }
    return true;
}

static bool qresync_changed(session *s, select_cont *sc, sess_slice *sl)
{
    if (sc->walk)
        return qresync_walk(s, sc, sl);
    for (; sc->ck < sc->changed.n; sc->ck++) {
        uint32_t u = sc->changed.uids[sc->ck];
        bool past;
        if (!qresync_known(sc, u, &past)) {
            if (past)
                break;
            continue;
        }
        if (sess_slice_over(s, sl))
            return false;
        /* the view holds every live message of the snapshot */
        uint32_t seq = sess_seq_of_uid(s, u);
        store_msg m;
        if (!seq || store_snap_msg(sc->snap, u, &m) < 0)
            continue;
        qresync_fetch(s, sc, seq, &m);
    }
    return true;
}

static bool select_step(session *s, void *arg)
{
    select_cont *sc = arg;
    sess_slice sl;
    sess_slice_begin(&sl);
    switch (sc->phase) {
    case SEL_VIEW:
        while (sc->p < sc->entries) {
            /* a unit of work is a block of 1024 entries (a few us) */
            if (sess_slice_over(s, &sl))
                return false;
            uint32_t p0 = sc->p, flags[1024];
            uint32_t end = sc->entries - p0 > 1024 ? p0 + 1024 : sc->entries;
            /* entries the kernel has dropped are read in on the sync
             * pool, not in page faults on the worker (store/fault.c) */
            store_fault *f;
            if (sc->faulted != p0 + 1 &&
                store_snap_entries_resident(sc->snap, p0, end, &sc->res, &f) == -EWOULDBLOCK) {
                sc->faulted = p0 + 1;
                if (sess_cont_fault_in(s, f) == 0)
                    return false;
            }
            /* The view was sized for every entry of the snapshot: a message
             * dropped here would be answered OK with a wrong EXISTS. */
            RM_ASSERT(s->capview - s->nview >= end - p0);
            size_t k = store_snap_live(sc->snap, &sc->p, end, s->view + s->nview, flags,
                                       end - p0);
            if (sc->p == p0) {
                /* the index could not be mapped: no mailbox is selected
                 * after a NO (RFC 3501 6.3.1) */
                imap_out_printf(&s->out, "%s NO [SERVERBUG] Cannot read the index\r\n", sc->tag);
                sc->unselect = s;
                return true;
            }
            for (size_t i = 0; i < k; i++) {
                uint32_t u = s->view[s->nview + i];
                if (!sc->first_unseen && !(flags[i] & STORE_F_SEEN))
                    sc->first_unseen = s->nview + (uint32_t)i + 1;
                if (u >= s->recent_first)
                    sc->recent++;
            }
            s->nview += (uint32_t)k;
        }
        select_head(s, sc);
        sc->phase = SEL_MATCH;
        /* fall through */
    case SEL_MATCH:
        if (!sc->qresync) {
            sc->phase = SEL_DONE;
            break;
        }
        if (!qresync_match(s, sc, &sl))
            return false;
        int crc = store_snap_changed_since_max(sc->snap, sc->since, SESS_CHANGES_MAX,
                                               &sc->changed);
        if (crc == -E2BIG) {
            store_uidlist_free(&sc->changed);
            memset(&sc->changed, 0, sizeof sc->changed);
            sc->walk = true;
            store_cursor_init(&sc->cur, sc->snap);
            crc = 0;
        }
        if (sess_vanished_collect(sc->snap, sc->since, sc->known, sc->nknown, sc->from,
                                  &sc->van) < 0 || crc < 0) {
            /* Nothing of it was written: the SELECT fails (RFC 3501
             * 6.3.1: no mailbox is selected after a NO) rather than
             * answering OK with part of what changed */
            imap_out_printf(&s->out, "%s NO [SERVERBUG] Out of memory\r\n", sc->tag);
            sc->unselect = s;
            return true;
        }
        sc->phase = SEL_VANISHED;
        /* fall through */
    case SEL_VANISHED:
        /* "Any VANISHED (EARLIER) responses MUST be returned before any
         * FETCH responses" (3.2.6, which 3.2.5.1 says applies) */
        while (sc->vk < sc->van.n) {
            if (sess_slice_over(s, &sl))
                return false;
            sc->vk = sess_vanished_write(&s->out, &sc->van, sc->vk, SESS_VANISHED_LINE);
            if (s->out.len > (1u << 18))
                sess_flush(s);
        }
        sc->phase = SEL_CHANGED;
        /* fall through */
    case SEL_CHANGED:
        if (!qresync_changed(s, sc, &sl))
            return false;
        sc->phase = SEL_DONE;
        break;
    }
    select_tagged(s, sc);
    return true;
}

/* The sets of a QRESYNC parameter into sc.  Returns 0; -EINVAL with *why
 * the reason for BAD; -E2BIG (more ranges than max_seqset_ranges) or
 * -ENOMEM for a NO. */
static int qresync_sets(session *s, const struct select_opts *o, select_cont *sc,
                        const char **why)
{
    size_t maxr = s->srv->max_seqset_ranges;
    int rc;
    if (o->known) {
        imap_seqset k = {0};
        *why = "Bad known-uids in QRESYNC";
        if ((rc = imap_seqset_parse(o->known, strlen(o->known), maxr, &k, NULL)) < 0)
            return rc;
        imap_range *res = malloc((k.n ? k.n : 1) * sizeof *res);
        sc->known = malloc((k.n ? k.n : 1) * sizeof *sc->known);
        rc = res && sc->known ? 0 : -ENOMEM;
        for (size_t i = 0; i < k.n && rc == 0; i++)
            if (k.r[i].star) {
                *why = "known-uids: \"*\" is not allowed";    /* RFC 7162 7 */
                rc = -EINVAL;
            }
        if (rc == 0) {
            sc->nknown = imap_seqset_resolve(&k, 0, res);
            for (size_t i = 0; i < sc->nknown; i++)
                sc->known[i] = (store_range){res[i].lo, res[i].hi};
        }
        free(res);
        free(k.r);
        if (rc < 0)
            return rc;
    }
    if (o->mseq) {
        set_iter *its[2] = {&sc->mseq, &sc->muid};
        const char *sets[2] = {o->mseq, o->muid};
        uint64_t count[2] = {0, 0};
        for (int j = 0; j < 2; j++) {
            *why = "Bad seq-match-data in QRESYNC";
            if ((rc = imap_seqset_parse(sets[j], strlen(sets[j]), maxr, &its[j]->set, NULL)) < 0)
                return rc;
            for (size_t i = 0; i < its[j]->set.n; i++) {
                if (its[j]->set.r[i].star) {
                    *why = "seq-match-data: \"*\" is not allowed";
                    return -EINVAL;
                }
                count[j] += its[j]->set.r[i].hi - its[j]->set.r[i].lo + 1;
            }
        }
        /* known-sequence-set: "Set of message numbers corresponding to the
         * UIDs in known-uid-set": a pair for every number */
        if (count[0] != count[1]) {
            *why = "seq-match-data: the two sets differ in size";
            return -EINVAL;
        }
    }
    return 0;
}

static void do_select(imap_cmd *c, bool readonly)
{
    session *s = c->s;
    const char *tag = c->tag;
    imap_args *a = c->a;
    imap_arg *args = c->args;
    size_t nargs = c->nargs;
    if (nargs < 1 || nargs > 2 || (nargs == 2 && args[1].type != IMAP_ARG_LIST)) {
        sess_bad(s, tag, "%s takes a mailbox name", readonly ? "EXAMINE" : "SELECT");
        return;
    }
    struct select_opts opts = {0};
    const char *perr = nargs == 2 ? parse_select_params(&args[1], &opts) : NULL;
    /* RFC 7162 3.2.5: "A server MUST respond with a tagged BAD response if
     * the Quick Resynchronization parameter to the SELECT/EXAMINE command
     * is specified and the client hasn't issued "ENABLE QRESYNC"" */
    if (!perr && opts.qresync && !s->qresync)
        perr = "QRESYNC is not enabled";
    /* A BAD leaves the selected mailbox as it was: the command was not
     * run (Dovecot 2.3 closes it first and says [CLOSED]) */
    if (perr) {
        sess_bad(s, tag, "%s", perr);
        return;
    }
    size_t taglen = strlen(tag);
    select_cont *sc = calloc(1, sizeof *sc + taglen + 1);
    if (!sc) {
        sess_tagged(s, tag, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    /* "Before opening the specified mailbox, the server verifies all
     * arguments for syntactic validity" */
    int qrc = opts.qresync ? qresync_sets(s, &opts, sc, &perr) : 0;
    if (qrc < 0) {
        select_cont_free(sc);
        if (qrc == -E2BIG)
            sess_tagged(s, tag, "NO", "[LIMIT] Too many ranges in a QRESYNC set");
        else if (qrc == -ENOMEM)
            sess_tagged(s, tag, "NO", "[SERVERBUG] Out of memory");
        else
            sess_bad(s, tag, "%s", perr);
        return;
    }
    char *name = mbox_arg(s, tag, a, &args[0]);
    if (!name) {
        select_cont_free(sc);
        return;
    }
    /* RFC 7162 3.1: SELECT/EXAMINE (CONDSTORE) is a CONDSTORE enabling
     * command; its HIGHESTMODSEQ is that of the mailbox it selects (the
     * previous one is closed first, so nothing is written for it). */
    bool was_selected = s->state == ST_SELECTED;
    if (opts.condstore)
        s->condstore = true;
    sess_unselect(s);
    /* RFC 7162 3.2.11: "A server that advertises "QRESYNC" or "CONDSTORE"
     * in the capability string must return the CLOSED response code in
     * this case, whether or not a CONDSTORE enabling command was issued"
     * (and RFC 9051 7.1 asks the same of IMAP4rev2): one rule for all. */
    if (was_selected)
        sess_untagged(s, "OK [CLOSED] Previous mailbox closed");
    store_mbox *mb;
    int rc = store_mbox_open(s->su, name, &mb);
    if (rc < 0) {
        sess_store_error(s, tag, rc, "select");
        free(name);
        select_cont_free(sc);
        return;
    }
    uint32_t recent_first = UINT32_MAX;
    if (!readonly && store_mbox_claim_recent(mb, &recent_first) < 0)
        recent_first = UINT32_MAX;
    store_snap *snap = store_snap_get(mb);
    if (!snap) {
        store_mbox_close(mb);
        free(name);
        select_cont_free(sc);
        sess_tagged(s, tag, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    s->mb = mb;
    s->mbname = name;
    s->readonly = readonly;
    s->recent_first = recent_first;
    s->state = ST_SELECTED;
    uint32_t entries = store_snap_entries(snap);
    s->view = malloc((entries + 1) * sizeof *s->view);
    sc->snap = snap;
    if (!s->view) {
        select_cont_free(sc);
        sess_unselect(s);
        sess_tagged(s, tag, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    s->capview = entries + 1;
    sc->entries = entries;
    sc->readonly = readonly;
    /* RFC 7162 3.2.5: a UIDVALIDITY that does not match: "the server MUST
     * ignore the remaining parameters and behave as if no dynamic message
     * data changed" */
    if (opts.qresync && opts.uidvalidity == store_snap_uidvalidity(snap)) {
        sc->qresync = true;
        sc->since = opts.modseq;
        sc->from = 1;
        /* 3.2.5.1: "If the client did not provide the list of UIDs, the
         * server acts as if the client has specified "1:<maxuid>", where
         * <maxuid> is the mailbox's UIDNEXT value minus 1" (none if the
         * mailbox never had a message) */
        if (!opts.known && store_snap_uidnext(snap) > 1) {
            free(sc->known);
            sc->known = malloc(sizeof *sc->known);
            if (!sc->known) {
                select_cont_free(sc);
                sess_unselect(s);
                sess_tagged(s, tag, "NO", "[SERVERBUG] Out of memory");
                return;
            }
            sc->known[0] = (store_range){1, store_snap_uidnext(snap) - 1};
            sc->nknown = 1;
        }
    }
    memcpy(sc->tag, tag, taglen + 1);
    sess_cont_begin(s, select_step, select_cont_free, sc);
}

void cmd_select(imap_cmd *c)
{
    do_select(c, false);
}

void cmd_examine(imap_cmd *c)
{
    do_select(c, true);
}

/* ---- CREATE / DELETE / RENAME / SUBSCRIBE ----------------------------------- */

void cmd_create(imap_cmd *c)
{
    session *s = c->s;
    const char *tag = c->tag;
    imap_args *a = c->a;
    imap_arg *args = c->args;
    size_t nargs = c->nargs;
    if (nargs < 1 || nargs > 2 || (nargs == 2 && args[1].type != IMAP_ARG_LIST)) {
        sess_bad(s, tag, "CREATE takes a mailbox name and optional parameters");
        return;
    }
    uint32_t special = 0;
    if (nargs == 2) {
        /* RFC 6154 CREATE-SPECIAL-USE: (USE (\Sent ...)).  Several
         * attributes are kept together, as in RFC 6154 5.3's example
         * ("CREATE MySpecial (USE (\Drafts \Sent))" answered OK), and
         * LIST shows each of them. */
        const imap_arg *l = &args[1];
        for (size_t i = 0; i < l->nlist; i += 2) {
            if (!imap_arg_is(&l->list[i], "USE") || i + 1 >= l->nlist ||
                l->list[i + 1].type != IMAP_ARG_LIST) {
                sess_bad(s, tag, "Unknown CREATE parameter");
                return;
            }
            for (size_t k = 0; k < l->list[i + 1].nlist; k++) {
                const imap_arg *u = &l->list[i + 1].list[k];
                uint32_t b = u->type == IMAP_ARG_ATOM ? special_parse(u->s) : 0;
                if (!b) {
                    sess_tagged(s, tag, "NO", "[USEATTR] Unsupported special-use attribute");
                    return;
                }
                special |= b;
            }
        }
    }
    char *name = mbox_arg(s, tag, a, &args[0]);
    if (!name)
        return;
    size_t n = strlen(name);
    char sep = store_user_separator(s->su);
    if (n > 1 && name[n - 1] == sep)    /* "foo/" creates "foo" (RFC 3501) */
        name[n - 1] = '\0';
    int rc = store_mailbox_create(s->su, name, special);
    char mid[STORE_OBJECTID_MAX];
    if (rc < 0)
        sess_store_error(s, tag, rc, "create");
    else if (mailboxid_of(s, name, mid) == 0)
        /* RFC 8474 4.1: "MUST include the MAILBOXID response code in the
         * tagged OK response to all successful CREATE commands". */
        sess_tagged(s, tag, "OK", "[MAILBOXID (%s)] CREATE completed", mid);
    else    /* removed again by another session meanwhile */
        sess_tagged(s, tag, "OK", "CREATE completed");
    free(name);
}

void cmd_delete(imap_cmd *c)
{
    session *s = c->s;
    const char *tag = c->tag;
    imap_args *a = c->a;
    imap_arg *args = c->args;
    size_t nargs = c->nargs;
    if (nargs != 1) {
        sess_bad(s, tag, "DELETE takes a mailbox name");
        return;
    }
    char *name = mbox_arg(s, tag, a, &args[0]);
    if (!name)
        return;
    /* RFC 3501 6.3.4: a parent loses its messages and stays as \Noselect;
     * RFC 3501 clients (neomutt, alpine, offlineimap) count on it, and RFC
     * 9051 allows it. */
    int rc = store_mailbox_delete_ext(s->su, name, STORE_DELETE_KEEP_PARENT);
    if (rc < 0)
        sess_store_error(s, tag, rc, "delete");
    else
        sess_tagged(s, tag, "OK", "DELETE completed");
    free(name);
}

void cmd_rename(imap_cmd *c)
{
    session *s = c->s;
    const char *tag = c->tag;
    imap_args *a = c->a;
    imap_arg *args = c->args;
    size_t nargs = c->nargs;
    if (nargs != 2) {
        sess_bad(s, tag, "RENAME takes two mailbox names");
        return;
    }
    char *from = mbox_arg(s, tag, a, &args[0]);
    if (!from)
        return;
    char *to = mbox_arg(s, tag, a, &args[1]);
    if (!to) {
        free(from);
        return;
    }
    int rc = store_mailbox_rename(s->su, from, to);
    if (rc == -ENOENT)
        sess_tagged(s, tag, "NO", "[NONEXISTENT] No such mailbox");
    else if (rc < 0)
        sess_store_error(s, tag, rc, "rename");
    else
        sess_tagged(s, tag, "OK", "RENAME completed");
    free(from);
    free(to);
}

static void do_subscribe(imap_cmd *c, bool on)
{
    session *s = c->s;
    const char *tag = c->tag;
    imap_args *a = c->a;
    imap_arg *args = c->args;
    size_t nargs = c->nargs;
    if (nargs != 1) {
        sess_bad(s, tag, "%s takes a mailbox name", on ? "SUBSCRIBE" : "UNSUBSCRIBE");
        return;
    }
    char *name = mbox_arg(s, tag, a, &args[0]);
    if (!name)
        return;
    int rc = store_mailbox_subscribe(s->su, name, on);
    if (rc < 0)
        sess_store_error(s, tag, rc, "subscribe");
    else
        sess_tagged(s, tag, "OK", "%s completed", on ? "SUBSCRIBE" : "UNSUBSCRIBE");
    free(name);
}

void cmd_subscribe(imap_cmd *c)
{
    do_subscribe(c, true);
}

void cmd_unsubscribe(imap_cmd *c)
{
    do_subscribe(c, false);
}

/* ---- STATUS -------------------------------------------------------------------- */

enum { ST_MESSAGES = 1, ST_UIDNEXT = 2, ST_UIDVALIDITY = 4, ST_UNSEEN = 8,
       ST_RECENT = 16, ST_SIZE = 32, ST_DELETED = 64, ST_HIGHESTMODSEQ = 128,
       ST_DELETED_STORAGE = 256, ST_MAILBOXID = 512 };

static int status_items(const imap_arg *l, unsigned *items)
{
    static const char *const names[] = {"MESSAGES", "UIDNEXT", "UIDVALIDITY",
                                        "UNSEEN", "RECENT", "SIZE", "DELETED",
                                        "HIGHESTMODSEQ", "DELETED-STORAGE", "MAILBOXID"};
    *items = 0;
    if (l->type != IMAP_ARG_LIST || !l->nlist)
        return -EINVAL;
    for (size_t i = 0; i < l->nlist; i++) {
        unsigned bit = 0;
        for (unsigned k = 0; k < sizeof names / sizeof *names; k++)
            if (imap_arg_is(&l->list[i], names[k]))
                bit = 1u << k;
        if (!bit)
            return -EINVAL;
        *items |= bit;
    }
    return 0;
}

/* RFC 9208 4.1.4: DELETED-STORAGE, "the amount of storage space that can
 * be reclaimed by performing EXPUNGE": in KiB like STORAGE, rounded up, of
 * the sum of RFC822.SIZE of the \\Deleted messages, which is what the
 * STORAGE usage (cmd_quota.c) loses by that EXPUNGE. */
static void status_deleted_storage(session *s, const char *name, const char *sp)
{
    store_mbox *mb;
    store_usage d = {0};
    if (store_mbox_open(s->su, name, &mb) == 0) {
        store_mbox_deleted_usage(mb, &d);
        store_mbox_close(mb);
    }
    imap_out_printf(&s->out, "%sDELETED-STORAGE %llu", sp,
                    (unsigned long long)((d.bytes + 1023) / 1024));
}

static int status_line(session *s, const char *name, unsigned items)
{
    store_status st;
    int rc = store_mailbox_status(s->su, name, &st);
    if (rc < 0)
        return rc;
    imap_out_printf(&s->out, "* STATUS ");
    sess_mbox_to_client(s, &s->out, name);
    imap_out_printf(&s->out, " (");
    const char *sp = "";
    if (items & ST_MESSAGES) { imap_out_printf(&s->out, "%sMESSAGES %u", sp, st.messages); sp = " "; }
    if (items & ST_UIDNEXT) { imap_out_printf(&s->out, "%sUIDNEXT %u", sp, st.uidnext); sp = " "; }
    if (items & ST_UIDVALIDITY) { imap_out_printf(&s->out, "%sUIDVALIDITY %u", sp, st.uidvalidity); sp = " "; }
    if (items & ST_UNSEEN) { imap_out_printf(&s->out, "%sUNSEEN %u", sp, st.unseen); sp = " "; }
    if (items & ST_RECENT) { imap_out_printf(&s->out, "%sRECENT %u", sp, st.recent); sp = " "; }
    if (items & ST_SIZE) { imap_out_printf(&s->out, "%sSIZE %llu", sp, (unsigned long long)st.size); sp = " "; }
    if (items & ST_DELETED) { imap_out_printf(&s->out, "%sDELETED %u", sp, st.deleted); sp = " "; }
    if (items & ST_HIGHESTMODSEQ) {
        imap_out_printf(&s->out, "%sHIGHESTMODSEQ %llu", sp, (unsigned long long)st.highestmodseq);
        sp = " ";
    }
    if (items & ST_DELETED_STORAGE) {
        status_deleted_storage(s, name, sp);
        sp = " ";
    }
    char mid[STORE_OBJECTID_MAX];
    if ((items & ST_MAILBOXID) && mailboxid_of(s, name, mid) == 0)
        imap_out_printf(&s->out, "%sMAILBOXID (%s)", sp, mid);     /* RFC 8474 4.3 */
    imap_out_printf(&s->out, ")\r\n");
    return 0;
}

void cmd_status(imap_cmd *c)
{
    session *s = c->s;
    const char *tag = c->tag;
    imap_args *a = c->a;
    imap_arg *args = c->args;
    size_t nargs = c->nargs;
    unsigned items;
    if (nargs != 2 || status_items(&args[1], &items) < 0) {
        sess_bad(s, tag, "STATUS takes a mailbox and a list of items");
        return;
    }
    char *name = mbox_arg(s, tag, a, &args[0]);
    if (!name)
        return;
    /* RFC 7162 3.1: "a STATUS (HIGHESTMODSEQ) command" enables CONDSTORE */
    if (items & ST_HIGHESTMODSEQ)
        sess_condstore_enable(s, &s->out);
    int rc = status_line(s, name, items);
    if (rc < 0)
        sess_store_error(s, tag, rc, "status");
    else
        sess_tagged(s, tag, "OK", "STATUS completed");
    free(name);
}

/* ---- LIST / LSUB ------------------------------------------------------------------ */

/* "inbox..." in a pattern means INBOX. */
static void canon_inbox(char *p, char sep)
{
    if (!strncasecmp(p, "INBOX", 5) && (p[5] == '\0' || p[5] == sep))
        memcpy(p, "INBOX", 5);
}

enum { RET_SUBSCRIBED = 1, RET_CHILDREN = 2, RET_SPECIAL = 4, RET_STATUS = 8 };
enum { SEL_SUBSCRIBED = 1, SEL_SPECIAL = 2, SEL_RECURSIVE = 4 };

/* Names sorted by strcmp, so that a LIST of n mailboxes costs n log n,
 * not n^2: each one looks up its children and its subscription. */
static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first of the n sorted names that is >= key. */
static size_t name_lower(const char *const *sorted, size_t n, const char *key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(sorted[mid], key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool is_subscribed(const char *const *sorted_subs, size_t nsubs, const char *name)
{
    size_t i = name_lower(sorted_subs, nsubs, name);
    return i < nsubs && !strcmp(sorted_subs[i], name);
}

/* Is there a mailbox "name<sep>..."?  Those sort together, from name+sep. */
static bool has_children(const char *const *sorted, size_t n, const char *name, char sep)
{
    size_t l = strlen(name);
    char key[STORE_MAX_NAME_LEN + 2];
    if (l + 1 >= sizeof key)
        return false;   /* a longer name cannot have children */
    memcpy(key, name, l);
    key[l] = sep;
    key[l + 1] = '\0';
    size_t i = name_lower(sorted, n, key);
    return i < n && !strncmp(sorted[i], key, l + 1);
}

static void list_line_ext(session *s, const char *verb, const char *attrs, char sep,
                          const char *name, size_t namelen, const char *ext)
{
    imap_out_printf(&s->out, "* %s (%s) \"%c\" ", verb, attrs, sep);
    char buf[STORE_MAX_NAME_LEN + 1];
    if (name[namelen] != '\0' && namelen < sizeof buf) {
        memcpy(buf, name, namelen);
        buf[namelen] = '\0';
        name = buf;
    }
    sess_mbox_to_client(s, &s->out, name);
    if (ext)
        imap_out_printf(&s->out, " %s", ext);
    imap_out_printf(&s->out, "\r\n");
}

static void list_line(session *s, const char *verb, const char *attrs, char sep,
                      const char *name)
{
    list_line_ext(s, verb, attrs, sep, name, strlen(name), NULL);
}

/* A LIST or LSUB in progress: one mailbox (with its STATUS, if asked) is
 * a unit of work, so a long list, or one with STATUS for every mailbox,
 * runs in slices and stops while the client is slow to read. */
typedef struct list_cont {
    bool lsub;
    unsigned sel, ret, status_items;
    char sep;
    store_mailbox_info *v;
    size_t n;
    char **subs;
    size_t nsubs;
    const char **names;         /* v's names, sorted (strcmp) */
    size_t *names_at;           /* names_at[i]: the index in v of names[i] */
    const char **ssubs;         /* subs, sorted */
    char **pats;                /* full patterns; NULL: LIST "" "" */
    size_t npats;
    size_t pi, k;               /* next pattern, next mailbox or subscription */
    /* Parents listed for the subscriptions (LSUB, LIST (SUBSCRIBED
     * RECURSIVEMATCH)), walking the sorted subscriptions: the lengths of
     * those that are prefixes of `prev`, the subscription last looked at.
     * Names under one parent sort together, so a parent still on this
     * stack is one already listed, and is listed once. */
    const char *prev;
    size_t nanc;
    size_t anc[STORE_MAX_NAME_LEN / 2 + 1];
    char tag[];
} list_cont;

static void list_cont_free(void *arg)
{
    list_cont *lc = arg;
    store_mailbox_info_free(lc->v, lc->n);
    for (size_t k = 0; k < lc->nsubs; k++)
        free(lc->subs[k]);
    free(lc->subs);
    for (size_t k = 0; k < lc->npats; k++)
        free(lc->pats[k]);
    free(lc->pats);
    free(lc->names);
    free(lc->names_at);
    free(lc->ssubs);
    free(lc);
}

static int list_index(list_cont *lc)
{
    lc->names = malloc((lc->n ? lc->n : 1) * sizeof *lc->names);
    lc->names_at = malloc((lc->n ? lc->n : 1) * sizeof *lc->names_at);
    lc->ssubs = malloc((lc->nsubs ? lc->nsubs : 1) * sizeof *lc->ssubs);
    if (!lc->names || !lc->names_at || !lc->ssubs)
        return -ENOMEM;
    for (size_t i = 0; i < lc->n; i++)
        lc->names[i] = lc->v[i].name;
    qsort(lc->names, lc->n, sizeof *lc->names, cmp_name);
    /* Names are unique: each of v's is found at its sorted place. */
    for (size_t i = 0; i < lc->n; i++)
        lc->names_at[i] = SIZE_MAX;
    for (size_t k = 0; k < lc->n; k++) {
        size_t i = name_lower(lc->names, lc->n, lc->v[k].name);
        while (i < lc->n && lc->names_at[i] != SIZE_MAX)
            i++;    /* equal names cannot happen; stay safe if they do */
        if (i < lc->n)
            lc->names_at[i] = k;
    }
    for (size_t i = 0; i < lc->nsubs; i++)
        lc->ssubs[i] = lc->subs[i];
    qsort(lc->ssubs, lc->nsubs, sizeof *lc->ssubs, cmp_name);
    return 0;
}

/* Before the subscription `name` when the pattern does not match it: its
 * parents that the pattern matches and that are not subscribed themselves,
 * each once (lc->anc).
 *  - LSUB: RFC 3501 6.3.9: 'if "foo/bar" ... is subscribed but "foo" is
 *    not.  A "%" wildcard to LSUB must return foo, not foo/bar, in the LSUB
 *    response, and it MUST be flagged with the \Noselect attribute.'
 *  - LIST (SUBSCRIBED RECURSIVEMATCH): RFC 5258 3.5, example 8: "Foo" with
 *    the CHILDINFO extended data item ("CHILDINFO" ("SUBSCRIBED")),
 *    \NonExistent if there is no such mailbox.  Only for a subscription
 *    the pattern does not match: "Servers SHOULD ONLY return a
 *    non-matching mailbox name along with CHILDINFO if at least one
 *    matching child is not also being returned" (3.5; example 9's "*"
 *    listing does otherwise, the SHOULD is what we follow, as Dovecot 2.3
 *    does). */
static void list_parents(session *s, list_cont *lc, const char *pat, const char *name,
                         bool match)
{
    char sep = lc->sep;
    bool lsub = lc->lsub;
    /* parents listed for an earlier name that are parents of this one */
    while (lc->nanc) {
        size_t l = lc->anc[lc->nanc - 1];
        if (lc->prev && !strncmp(lc->prev, name, l) && name[l] == sep)
            break;
        lc->nanc--;
    }
    lc->prev = name;
    if (match)
        return;
    size_t top = lc->nanc ? lc->anc[lc->nanc - 1] : 0;
    char buf[STORE_MAX_NAME_LEN + 1];
    for (size_t l = 0; name[l]; l++) {
        if (name[l] != sep || l == 0 || l <= top || l >= sizeof buf)
            continue;
        memcpy(buf, name, l);
        buf[l] = '\0';
        if (!imap_list_match(pat, buf, sep) || is_subscribed(lc->ssubs, lc->nsubs, buf))
            continue;
        size_t m = name_lower(lc->names, lc->n, buf);
        m = m < lc->n && !strcmp(lc->names[m], buf) ? lc->names_at[m] : lc->n;
        char attrs[160] = "";
        if (lsub)
            strcat(attrs, "\\Noselect");
        else if (m == lc->n)
            strcat(attrs, "\\NonExistent");
        else if (lc->v[m].noselect)
            strcat(attrs, "\\Noselect");
        if (!lsub && m < lc->n)
            special_attrs(attrs, lc->v[m].special);
        list_line_ext(s, lsub ? "LSUB" : "LIST", attrs, sep, buf, l,
                      lsub ? NULL : "(\"CHILDINFO\" (\"SUBSCRIBED\"))");
        if (lc->nanc < sizeof lc->anc / sizeof *lc->anc)
            lc->anc[lc->nanc++] = l;
    }
}

static bool list_step(session *s, void *arg)
{
    list_cont *lc = arg;
    const store_mailbox_info *v = lc->v;
    size_t n = lc->n, nsubs = lc->nsubs;
    char **subs = lc->subs;
    char sep = lc->sep;
    bool lsub = lc->lsub;
    sess_slice sl;
    sess_slice_begin(&sl);
    for (; lc->pi < lc->npats; lc->pi++, lc->k = 0) {
        const char *full = lc->pats[lc->pi];
        if (!full) {
            if (sess_slice_over(s, &sl))
                return false;
            /* LIST "" "": the hierarchy delimiter and the root. */
            imap_out_printf(&s->out, "* LIST (\\Noselect) \"%c\" \"\"\r\n", sep);
            continue;
        }
        if (lsub || (lc->sel & SEL_SUBSCRIBED)) {
            bool recursive = !lsub && (lc->sel & SEL_RECURSIVE);
            /* LSUB and RECURSIVEMATCH list parents with the subscriptions
             * below them: in sorted order, so each parent comes once,
             * before its children. */
            const char *const *sv = lsub || recursive ? lc->ssubs
                                                      : (const char *const *)subs;
            if (lc->k == 0) {
                lc->prev = NULL;
                lc->nanc = 0;
            }
            for (; lc->k < nsubs; lc->k++) {
                size_t k = lc->k;
                if (sess_slice_over(s, &sl))
                    return false;
                const char *name = sv[k];
                bool match = imap_list_match(full, name, sep);
                if (lsub || recursive)
                    list_parents(s, lc, full, name, match);
                if (!match)
                    continue;
                size_t m = name_lower(lc->names, n, name);
                m = m < n && !strcmp(lc->names[m], name) ? lc->names_at[m] : n;
                char attrs[160] = "";
                if (m == n)
                    strcat(attrs, lsub ? "\\Noselect" : "\\NonExistent");
                else if (v[m].noselect)
                    strcat(attrs, "\\Noselect");
                if (!lsub) {
                    strcat(attrs, *attrs ? " \\Subscribed" : "\\Subscribed");
                    if (m < n)
                        special_attrs(attrs, v[m].special);
                }
                /* RFC 5258 3.5: with RECURSIVEMATCH, a subscribed name
                 * with subscribed children says so too (example 9). */
                bool childinfo = recursive && has_children(lc->ssubs, nsubs, name, sep);
                list_line_ext(s, lsub ? "LSUB" : "LIST", attrs, sep, name, strlen(name),
                              childinfo ? "(\"CHILDINFO\" (\"SUBSCRIBED\"))" : NULL);
            }
        } else {
            for (; lc->k < n; lc->k++) {
                size_t k = lc->k;
                if (sess_slice_over(s, &sl))
                    return false;
                if (!imap_list_match(full, v[k].name, sep))
                    continue;
                if ((lc->sel & SEL_SPECIAL) && !v[k].special)
                    continue;
                char attrs[160];
                strcpy(attrs, has_children(lc->names, n, v[k].name, sep) ? "\\HasChildren"
                                                                         : "\\HasNoChildren");
                if (v[k].noselect)
                    strcat(attrs, " \\Noselect");
                if (lc->ret & RET_SUBSCRIBED && is_subscribed(lc->ssubs, nsubs, v[k].name))
                    strcat(attrs, " \\Subscribed");
                special_attrs(attrs, v[k].special);
                list_line(s, "LIST", attrs, sep, v[k].name);
                /* RFC 5819: no STATUS for a \Noselect name */
                if ((lc->ret & RET_STATUS) && !v[k].noselect)
                    status_line(s, v[k].name, lc->status_items);
            }
        }
    }
    sess_tagged(s, lc->tag, "OK", "%s completed", lsub ? "LSUB" : "LIST");
    return true;
}

/* What LIST's or LSUB's arguments asked for (RFC 5258, 5819, 6154). */
typedef struct list_args {
    unsigned sel, ret, status_items;    /* SEL_*, RET_*, ST_* */
    const imap_arg *ref;                /* the reference name */
    const imap_arg *pats;               /* the patterns, npats of them */
    size_t npats;
} list_args;

/* The selection options "(SUBSCRIBED ...)" into *sel: NULL, or why BAD. */
static const char *list_selection(const imap_arg *l, unsigned *sel)
{
    for (size_t k = 0; k < l->nlist; k++) {
        const imap_arg *o = &l->list[k];
        if (imap_arg_is(o, "SUBSCRIBED")) *sel |= SEL_SUBSCRIBED;
        else if (imap_arg_is(o, "SPECIAL-USE")) *sel |= SEL_SPECIAL;
        else if (imap_arg_is(o, "RECURSIVEMATCH")) *sel |= SEL_RECURSIVE;
        else if (imap_arg_is(o, "REMOTE")) ;
        else
            return "Unknown LIST selection option";
    }
    if ((*sel & SEL_RECURSIVE) && !(*sel & ~SEL_RECURSIVE))
        return "RECURSIVEMATCH needs another selection option";
    return NULL;
}

/* The return options "(CHILDREN STATUS (...) ...)" into *ret and *items:
 * NULL, or why BAD. */
static const char *list_return(const imap_arg *l, unsigned *ret, unsigned *items)
{
    for (size_t k = 0; k < l->nlist; k++) {
        if (imap_arg_is(&l->list[k], "SUBSCRIBED")) *ret |= RET_SUBSCRIBED;
        else if (imap_arg_is(&l->list[k], "CHILDREN")) *ret |= RET_CHILDREN;
        else if (imap_arg_is(&l->list[k], "SPECIAL-USE")) *ret |= RET_SPECIAL;
        else if (imap_arg_is(&l->list[k], "STATUS") && k + 1 < l->nlist &&
                 status_items(&l->list[k + 1], items) == 0) {
            *ret |= RET_STATUS;
            k++;
        } else {
            return "Unknown LIST return option";
        }
    }
    return NULL;
}

/* LIST [(selection)] reference pattern(s) [RETURN (options)], or LSUB
 * reference pattern, into *la: NULL, or why BAD (the first fault in that
 * order). */
static const char *list_parse(const imap_cmd *c, bool lsub, list_args *la)
{
    const imap_arg *args = c->args;
    size_t nargs = c->nargs, i = 0;
    *la = (list_args){0};
    if (!lsub && nargs && args[0].type == IMAP_ARG_LIST) {
        const char *err = list_selection(&args[0], &la->sel);
        if (err)
            return err;
        i = 1;
    }
    if (nargs < i + 2)
        return lsub ? "LSUB takes a reference and a pattern"
                    : "LIST takes a reference and a pattern";
    const imap_arg *pat = &args[i + 1];
    la->ref = &args[i];
    i += 2;
    if (!lsub && i < nargs) {
        if (!imap_arg_is(&args[i], "RETURN") || i + 1 >= nargs ||
            args[i + 1].type != IMAP_ARG_LIST || i + 2 != nargs)
            return "Bad LIST return options";
        const char *err = list_return(&args[i + 1], &la->ret, &la->status_items);
        if (err)
            return err;
    } else if (i != nargs) {
        return "Too many arguments";
    }
    if (la->ref->type == IMAP_ARG_LIST)
        return "Bad reference name";
    /* Several patterns are allowed in LIST-EXTENDED. */
    la->pats = pat->type == IMAP_ARG_LIST && !lsub ? pat->list : pat;
    la->npats = pat->type == IMAP_ARG_LIST && !lsub ? pat->nlist : 1;
    return NULL;
}

/* Each pattern joined to the reference, in UTF-8, into lc->pats (NULL
 * for LIST's empty pattern: the delimiter).  Copied now: the arguments
 * are gone once the command yields.  false after answering. */
static bool list_patterns(imap_cmd *c, const list_args *la, const char *refname,
                          list_cont *lc)
{
    session *s = c->s;
    for (size_t pi = 0; pi < la->npats; pi++) {
        char *pname = mbox_arg(s, c->tag, c->a, &la->pats[pi]);
        if (!pname)
            return false;
        lc->npats++;
        if (!*pname && !lc->lsub) {
            free(pname);
            continue;
        }
        size_t fl = strlen(refname) + strlen(pname) + 1;
        char *full = malloc(fl);
        if (!full) {
            free(pname);
            sess_tagged(s, c->tag, "NO", "[SERVERBUG] Out of memory");
            return false;
        }
        snprintf(full, fl, "%s%s", refname, pname);
        free(pname);
        canon_inbox(full, lc->sep);
        lc->pats[pi] = full;
    }
    return true;
}

/* The listing to run: the patterns, the user's mailboxes (\Noselect names
 * too) and subscriptions, indexed.  NULL after answering. */
static list_cont *list_prepare(imap_cmd *c, bool lsub, const list_args *la,
                               const char *refname)
{
    session *s = c->s;
    size_t taglen = strlen(c->tag);
    list_cont *lc = calloc(1, sizeof *lc + taglen + 1);
    if (!lc || !(lc->pats = calloc(la->npats ? la->npats : 1, sizeof *lc->pats))) {
        sess_tagged(s, c->tag, "NO", "[SERVERBUG] Out of memory");
        goto fail;
    }
    lc->lsub = lsub;
    lc->sel = la->sel;
    lc->ret = la->ret;
    lc->status_items = la->status_items;
    lc->sep = store_user_separator(s->su);
    memcpy(lc->tag, c->tag, taglen + 1);
    if (!list_patterns(c, la, refname, lc))
        goto fail;
    int rc = store_mailbox_list_all(s->su, &lc->v, &lc->n);
    if (rc == 0)
        rc = store_subscriptions(s->su, &lc->subs, &lc->nsubs);
    if (rc < 0) {
        sess_store_error(s, c->tag, rc, "list");
        goto fail;
    }
    if (list_index(lc) < 0) {
        sess_tagged(s, c->tag, "NO", "[SERVERBUG] Out of memory");
        goto fail;
    }
    return lc;
fail:
    if (lc)
        list_cont_free(lc);
    return NULL;
}

static void do_list(imap_cmd *c, bool lsub)
{
    list_args la;
    const char *err = list_parse(c, lsub, &la);
    if (err) {
        sess_bad(c->s, c->tag, "%s", err);
        return;
    }
    char *refname = mbox_arg(c->s, c->tag, c->a, la.ref);
    if (!refname)
        return;
    list_cont *lc = list_prepare(c, lsub, &la, refname);
    free(refname);
    if (lc)
        sess_cont_begin(c->s, list_step, list_cont_free, lc);
}

void cmd_list(imap_cmd *c)
{
    do_list(c, false);
}

void cmd_lsub(imap_cmd *c)
{
    do_list(c, true);
}
