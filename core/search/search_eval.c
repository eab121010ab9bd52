/* core/search/search_eval.c — running a SEARCH program over a session's view.
 *
 * Per message, the tree is evaluated with short-circuiting (children are
 * already ordered cheapest first), and what a key needs is loaded lazily
 * and at most once per message: the index entry (always; the walk reads
 * it), the cache blob (envelope keys, sent date, MIME tree), the message
 * bytes (HEADER, BODY, TEXT), and the decoded, folded text of the body and
 * of the headers.  The scratch buffers live for one run call and are
 * reused from message to message. */
#include "core/fetch/fetch_render.h"
#include "core/fetch/mime_decode.h"
#include "core/search/search_internal.h"
#include "store/assert.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

typedef struct ev {
    imap_search_prog *p;
    const imap_search_view *v;
    store_cursor cur;       /* at the current message's entry */

    /* the current message */
    uint32_t seq, uid;
    store_msg m;
    int cache_st;           /* 0 not loaded, 1 loaded, -1 unavailable */
    int ext_st;             /* the same for ext */
    store_msg_ext ext;
    store_cache cache;
    store_envelope env;
    const char *msg;        /* whole message, when loaded */
    size_t msglen;
    bool have_msg;
    bool have_body, have_text;
    store_buf body;         /* folded text parts + embedded headers */
    store_buf text;         /* folded top header + MIME part headers */
    store_buf tmp, tmp2;
    imap_out addr;          /* an address field as plain text */
    int64_t now;            /* OLDER/YOUNGER count back from this */
    int err;
} ev;

/* ---- per-run preparation ------------------------------------------- */

/* Substitute '*', order each range, sort and merge (imap_seqset_resolve). */
static int resolve_set(srch_node *n, uint32_t star)
{
    if (n->u.set.frozen || (n->u.set.resolved && n->u.set.star == star))
        return 0;
    free(n->u.set.res);
    n->u.set.res = NULL;
    n->u.set.nres = 0;
    n->u.set.resolved = false;
    if (n->u.set.set.n) {
        imap_range *r = malloc(n->u.set.set.n * sizeof *r);
        if (!r)
            return -ENOMEM;
        n->u.set.res = r;
        n->u.set.nres = imap_seqset_resolve(&n->u.set.set, star, r);
    }
    n->u.set.star = star;
    n->u.set.resolved = true;
    return 0;
}

static int prepare(srch_node *n, const imap_search_view *v)
{
    int rc;
    for (size_t i = 0; i < n->nkids; i++)
        if ((rc = prepare(n->kids[i], v)))
            return rc;
    switch (n->kind) {
    case SK_SEQSET:
        return resolve_set(n, v->count);
    case SK_UIDSET:
        return resolve_set(n, v->count ? v->uids[v->count - 1] : 0);
    case SK_KEYWORD:
        if (n->u.kw.name) {
            /* The keyword table only grows, but resolve per run: a
             * keyword created since the last run must be seen. */
            int k = store_snap_keyword_index(v->snap, n->u.kw.name);
            n->u.kw.idx = k >= 0 && k < 64 ? k : -1;
        }
        return 0;
    default:
        return 0;
    }
}

/* ---- cheap keys ------------------------------------------------------ */

static bool in_ranges(const imap_range *r, size_t n, uint32_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {       /* first range with r.lo > x */
        size_t mid = lo + (hi - lo) / 2;
        if (r[mid].lo <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 && x <= r[lo - 1].hi;
}

static bool in_saved(const imap_search_view *v, uint32_t uid)
{
    size_t lo = 0, hi = v->saved ? v->nsaved : 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->saved[mid] < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < (v->saved ? v->nsaved : 0) && v->saved[lo] == uid;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* The INTERNALDATE's calendar day in the view's chosen zone. */
static int64_t internal_day(const ev *e)
{
    int zone = e->v->date_zone_fixed ? e->v->date_zone_min : e->m.tz_min;
    return floor_div(e->m.internal_date + (int64_t)zone * 60, 86400);
}

/* ---- lazily loaded message data ------------------------------------- */

/* EMAILID and save date, from the message's log record. */
static bool load_ext(ev *e)
{
    if (e->ext_st == 0) {
        int rc = store_cursor_ext(&e->cur, &e->ext);
        if (rc == -ENOMEM)
            e->err = rc;
        e->ext_st = rc == 0 ? 1 : -1;   /* else unreadable: no id, no date */
    }
    return e->ext_st == 1;
}

/* The save date's day, in the view's fixed zone if it has one, else UTC
 * (a save date has no zone of its own).  RFC 8514 4.3: where the save date
 * is not supported the SAVED* keys "MUST use the internal date attribute
 * instead"; so for a message saved before the store kept save dates. */
static int64_t saved_day(ev *e)
{
    if (!load_ext(e) || !e->ext.save_date)
        return internal_day(e);
    int zone = e->v->date_zone_fixed ? e->v->date_zone_min : 0;
    return floor_div(e->ext.save_date + (int64_t)zone * 60, 86400);
}

/* Whether the run may read `what` of the message now: not when it is to
 * stop for the disk first (imap_search_yield_io). */
static bool in_memory(ev *e, unsigned what)
{
    imap_search_prog *p = e->p;
    if (!p->io_yield || e->err || (e->seq == p->faulted_seq && what == p->faulted_what))
        return !e->err;
    store_fault *f;
    int rc = store_cursor_resident(&e->cur, what, STORE_ALL_BYTES,
                                   what == STORE_RA_BODY ? &p->res_body : &p->res_cache, &f);
    if (rc == -EWOULDBLOCK) {
        RM_ASSERT(!p->fault);
        p->fault = f;
        p->fault_seq = e->seq;
        p->fault_what = what;
    }
    if (rc < 0)
        e->err = rc;
    return rc == 0;
}

static bool load_cache(ev *e)
{
    if (e->cache_st == 0) {
        if (!in_memory(e, STORE_RA_CACHE))
            return false;       /* e->err says why */
        int rc = store_cursor_cache(&e->cur, &e->cache);
        if (rc == 0)
            rc = store_cache_envelope(&e->cache, 0, &e->env);
        if (rc == -ENOMEM)
            e->err = rc;
        /* Otherwise the message is gone or unreadable: it has no fields,
         * it does not fail the whole search. */
        e->cache_st = rc == 0 ? 1 : -1;
    }
    return e->cache_st == 1;
}

static bool match_thread(ev *e, uint64_t want)
{
    uint64_t t;
    int rc = store_threadid(&e->cache, &e->ext, &t);
    if (rc < 0)
        e->err = rc;
    return rc == 0 && t == want;
}

static bool load_msg(ev *e)
{
    if (!e->have_msg) {
        /* a scan of bodies reads the log in order: ask for what comes
         * next while this is looked at, half a window ahead */
        if (e->cur.pos >= e->p->ra_pos) {
            uint32_t n = store_cursor_readahead(&e->cur, STORE_RA_BODY, STORE_RA_WINDOW);
            e->p->ra_pos = e->cur.pos + (n > 1 ? n / 2 : 1);
        }
        if (!in_memory(e, STORE_RA_BODY))
            return false;       /* e->err says why */
        int rc = store_cursor_bytes(&e->cur, 0, SIZE_MAX, &e->msg, &e->msglen);
        if (rc < 0) {
            if (rc == -ENOMEM)
                e->err = rc;
            e->msg = NULL;
            e->msglen = 0;
        }
        e->have_msg = true;
    }
    return e->msg != NULL;
}

static store_str env_field(const store_envelope *env, int f)
{
    switch (f) {
    case ENV_DATE: return env->date;
    case ENV_SUBJECT: return env->subject;
    case ENV_FROM: return env->from;
    case ENV_SENDER: return env->sender;
    case ENV_REPLY_TO: return env->reply_to;
    case ENV_TO: return env->to;
    case ENV_CC: return env->cc;
    case ENV_BCC: return env->bcc;
    case ENV_IN_REPLY_TO: return env->in_reply_to;
    case ENV_MESSAGE_ID: return env->message_id;
    case ENV_REFERENCES: return env->references;
    default: { store_str none = { NULL, 0 }; return none; }
    }
}

/* Decode a header value (or block), fold it and append it to out. */
static int add_header_text(ev *e, const char *p, size_t n, store_buf *out)
{
    e->tmp.len = 0;
    int rc = mime_decode_header(p, n, &e->tmp);
    if (rc == 0)
        rc = srch_fold((const char *)e->tmp.data, e->tmp.len, out);
    return rc;
}

/* Does the decoded, folded header value contain the needle? */
static bool value_has(ev *e, const srch_node *n, const char *p, size_t len)
{
    if (n->u.str.len == 0)
        return true;
    e->tmp2.len = 0;
    int rc = add_header_text(e, p, len, &e->tmp2);
    if (rc < 0) {
        e->err = rc;
        return false;
    }
    return e->tmp2.len &&
           memmem(e->tmp2.data, e->tmp2.len, n->u.str.needle, n->u.str.len);
}

/* ---- string keys ----------------------------------------------------- */

/* FROM, TO, CC, BCC (and HEADER of Sender or Reply-To) match the
 * addresses as ENVELOPE gives them, "name <local@domain>", not the raw
 * value: "From: <user (c)@ (c) example.org>" is user@example.org, and its
 * comments are nothing to search for (imap_render_address_text).  RFC 9051
 * 6.4.4 only says the field "contains the specified string"; what the
 * field contains is its addresses. */
static bool is_address_field(int f)
{
    return f == ENV_FROM || f == ENV_SENDER || f == ENV_REPLY_TO || f == ENV_TO ||
           f == ENV_CC || f == ENV_BCC;
}

static bool match_envelope(ev *e, const srch_node *n)
{
    if (!load_cache(e))
        return false;
    store_str f = env_field(&e->env, n->u.str.field);
    if (!f.p)
        return false;
    if (!is_address_field(n->u.str.field))
        return value_has(e, n, f.p, f.len);
    e->addr.len = 0;
    int rc = imap_render_address_text(&e->addr, f);
    if (rc < 0) {
        e->err = rc;
        return false;
    }
    return value_has(e, n, e->addr.p ? e->addr.p : "", e->addr.len);
}

static bool is_wsp(char c) { return c == ' ' || c == '\t'; }

/* HEADER name value over the raw header: every occurrence of the field. */
static bool match_header(ev *e, const srch_node *n)
{
    if (!load_msg(e))
        return false;
    const char *h = e->msg;
    size_t end = e->m.hdr_len < e->msglen ? e->m.hdr_len : e->msglen;
    size_t i = 0;
    while (i < end) {
        size_t ls = i;
        const char *nl = memchr(h + i, '\n', end - i);
        size_t le = nl ? (size_t)(nl - h) + 1 : end;
        /* the field runs on over continuation lines */
        size_t fe = le;
        while (fe < end && is_wsp(h[fe])) {
            nl = memchr(h + fe, '\n', end - fe);
            fe = nl ? (size_t)(nl - h) + 1 : end;
        }
        i = fe;
        const char *colon = memchr(h + ls, ':', le - ls);
        if (!colon || is_wsp(h[ls]))
            continue;
        size_t ne = (size_t)(colon - h);
        while (ne > ls && is_wsp(h[ne - 1]))
            ne--;
        if (ne - ls != n->u.str.name_len ||
            strncasecmp(h + ls, n->u.str.name, ne - ls) != 0)
            continue;
        size_t vs = (size_t)(colon - h) + 1;
        if (value_has(e, n, h + vs, fe - vs))
            return true;
        if (e->err)
            return false;
    }
    return false;
}

static int sep(store_buf *b)
{
    return store_buf_append(b, "", 1);  /* no match spans two parts */
}

/* The body's searchable text: decoded text leaves (text/...) and the headers of
 * embedded messages. */
static int build_body(ev *e)
{
    int rc = 0;
    e->body.len = 0;
    if (!load_cache(e) || !load_msg(e))
        return e->err;
    for (uint32_t i = 0; i < e->cache.nparts && !rc; i++) {
        store_part pt, parent;
        if ((rc = store_cache_part(&e->cache, i, &pt)) < 0)
            break;
        /* the root of an embedded message: its header is body text */
        if (i > 0 && pt.hdr_len && pt.hdr_off < e->msglen &&
            store_cache_part(&e->cache, pt.parent, &parent) == 0 &&
            parent.envelope >= 0) {
            size_t len = pt.hdr_len < e->msglen - pt.hdr_off
                         ? (size_t)pt.hdr_len : e->msglen - pt.hdr_off;
            rc = add_header_text(e, e->msg + pt.hdr_off, len, &e->body);
            if (!rc)
                rc = sep(&e->body);
        }
        if (!rc && mime_part_is_text(&pt)) {
            e->tmp.len = 0;
            rc = mime_part_text(&e->cache, i, e->msg, e->msglen, &e->tmp);
            if (!rc)
                rc = srch_fold((const char *)e->tmp.data, e->tmp.len,
                               &e->body);
            if (!rc)
                rc = sep(&e->body);
        }
    }
    return rc == -ERANGE ? 0 : rc;
}

/* What TEXT searches besides the body: the top-level header and the MIME
 * headers of the parts (embedded messages' headers are in the body). */
static int build_text(ev *e)
{
    int rc = 0;
    e->text.len = 0;
    if (!load_msg(e))
        return e->err;
    size_t hl = e->m.hdr_len < e->msglen ? e->m.hdr_len : e->msglen;
    if ((rc = add_header_text(e, e->msg, hl, &e->text)) || (rc = sep(&e->text)))
        return rc;
    if (!load_cache(e))
        return e->err;
    for (uint32_t i = 1; i < e->cache.nparts && !rc; i++) {
        store_part pt, parent;
        if ((rc = store_cache_part(&e->cache, i, &pt)) < 0 ||
            (rc = store_cache_part(&e->cache, pt.parent, &parent)) < 0)
            break;
        if (!pt.hdr_len || parent.envelope >= 0 || pt.hdr_off >= e->msglen)
            continue;
        size_t len = pt.hdr_len < e->msglen - pt.hdr_off
                     ? (size_t)pt.hdr_len : e->msglen - pt.hdr_off;
        if (!(rc = add_header_text(e, e->msg + pt.hdr_off, len, &e->text)))
            rc = sep(&e->text);
    }
    return rc == -ERANGE ? 0 : rc;
}

static bool buf_has(const store_buf *b, const srch_node *n)
{
    return b->len && memmem(b->data, b->len, n->u.str.needle, n->u.str.len);
}

static bool match_body(ev *e, const srch_node *n)
{
    if (n->u.str.len == 0)
        return true;
    int st = n->u.str.ixq ? sindex_state(n->u.str.ixq, e->uid) : SINDEX_MAYBE;
    if (st != SINDEX_MAYBE)
        return st == SINDEX_BODY_HAS;
    if (!e->have_body) {
        int rc = build_body(e);
        if (rc < 0) {
            e->err = rc;
            return false;
        }
        e->have_body = true;
    }
    return buf_has(&e->body, n);
}

static bool match_text(ev *e, const srch_node *n)
{
    if (n->u.str.len == 0)
        return true;
    /* the index holds the header text's trigrams too; a word of the body
     * is a match of TEXT as well */
    int st = n->u.str.ixq ? sindex_state(n->u.str.ixq, e->uid) : SINDEX_MAYBE;
    if (st != SINDEX_MAYBE)
        return st == SINDEX_BODY_HAS;
    if (!e->have_text) {
        int rc = build_text(e);
        if (rc < 0) {
            e->err = rc;
            return false;
        }
        e->have_text = true;
    }
    return buf_has(&e->text, n) || (!e->err && match_body(e, n));
}

static int64_t sent_day(ev *e)
{
    int64_t d;
    if (load_cache(e) && e->env.date.p &&
        srch_parse_rfc5322_date(e->env.date.p, e->env.date.len, &d) == 0)
        return d;
    return internal_day(e);
}

/* ---- the tree ---------------------------------------------------------- */

static bool eval(ev *e, const srch_node *n)
{
    switch (n->kind) {
    case SK_ALL:
        return true;
    case SK_AND:
        for (size_t i = 0; i < n->nkids; i++)
            if (!eval(e, n->kids[i]) || e->err)
                return false;
        return true;
    case SK_OR:
        for (size_t i = 0; i < n->nkids; i++) {
            bool r = eval(e, n->kids[i]);
            if (e->err)
                return false;
            if (r)
                return true;
        }
        return false;
    case SK_NOT:
        return !eval(e, n->kids[0]);
    case SK_FLAGS:
        return n->u.flags.want_set
               ? (e->m.flags & n->u.flags.mask) == n->u.flags.mask
               : !(e->m.flags & n->u.flags.mask);
    case SK_KEYWORD: {
        bool set;
        if (n->u.kw.name)
            set = n->u.kw.idx >= 0 && ((e->m.keywords >> n->u.kw.idx) & 1);
        else
            set = n->u.kw.sysflag && (e->m.flags & n->u.kw.sysflag);
        return set == n->u.kw.want_set;
    }
    case SK_RECENT:
        return e->v->recent_first && e->uid >= e->v->recent_first;
    case SK_SEQSET:
        return in_ranges(n->u.set.res, n->u.set.nres, e->seq);
    case SK_UIDSET:
        return in_ranges(n->u.set.res, n->u.set.nres, e->uid);
    case SK_SAVED:
        return in_saved(e->v, e->uid);
    case SK_LARGER:
        return e->m.size > n->u.num;
    case SK_SMALLER:
        return e->m.size < n->u.num;
    case SK_BEFORE:
        return internal_day(e) < n->u.day;
    case SK_ON:
        return internal_day(e) == n->u.day;
    case SK_SINCE:
        return internal_day(e) >= n->u.day;
    case SK_SENTBEFORE:
        return sent_day(e) < n->u.day;
    case SK_SENTON:
        return sent_day(e) == n->u.day;
    case SK_SENTSINCE:
        return sent_day(e) >= n->u.day;
    case SK_MODSEQ:
        return e->m.modseq >= n->u.num;
    case SK_OLDER:
        return e->m.internal_date <= e->now - (int64_t)n->u.num;
    case SK_YOUNGER:
        return e->m.internal_date >= e->now - (int64_t)n->u.num;
    case SK_SAVEDBEFORE:
        return saved_day(e) < n->u.day;
    case SK_SAVEDON:
        return saved_day(e) == n->u.day;
    case SK_SAVEDSINCE:
        return saved_day(e) >= n->u.day;
    case SK_EMAILID:
        return n->u.emailid.email_uid && load_ext(e) &&
               e->ext.email_uid == n->u.emailid.email_uid &&
               e->ext.email_mbox == n->u.emailid.email_mbox &&
               e->ext.email_uv == n->u.emailid.email_uv;
    case SK_THREADID:
        return n->u.threadid && load_ext(e) && load_cache(e) && match_thread(e, n->u.threadid);
    case SK_ENVELOPE:
        return match_envelope(e, n);
    case SK_HEADER:
        return match_header(e, n);
    case SK_BODY:
        return match_body(e, n);
    case SK_TEXT:
        return match_text(e, n);
    }
    return false;
}

/* ---- the search index --------------------------------------------------- */

static atomic_bool index_on = true;

void imap_search_set_index(bool on)
{
    atomic_store(&index_on, on);
}

/* Give every BODY/TEXT key the index can narrow its query. */
static bool attach_queries(srch_node *n, sindex *x)
{
    bool any = false;
    for (size_t i = 0; i < n->nkids; i++)
        any |= attach_queries(n->kids[i], x);
    if ((n->kind == SK_BODY || n->kind == SK_TEXT) && !n->u.str.ixq && x)
        n->u.str.ixq = sindex_query(x, n->u.str.needle, n->u.str.len);
    return any || ((n->kind == SK_BODY || n->kind == SK_TEXT) && n->u.str.ixq);
}

static bool wants_index(const srch_node *n)
{
    for (size_t i = 0; i < n->nkids; i++)
        if (wants_index(n->kids[i]))
            return true;
    return (n->kind == SK_BODY || n->kind == SK_TEXT) && n->u.str.len >= 3;
}

#define INDEX_PER_RUN 65536u

/* The first run of a program with a BODY/TEXT key opens the mailbox's
 * index (segments are true for ever, so later runs over other snapshots
 * of the same mailbox may use it too). */
static void index_attach(imap_search_prog *p, const imap_search_view *v)
{
    p->ix_tried = true;
    if (!atomic_load(&index_on) || !wants_index(p->root))
        return;
    p->ix = sindex_open(store_snap_dir(v->snap), store_snap_uidvalidity(v->snap), true);
    /* Indexing costs ~10 times the scan of a message: one search indexes
     * a quarter of a large mailbox (at least INDEX_PER_RUN messages), so
     * the first costs some 3.5 scans, not 10, and the fourth finds it all
     * indexed. */
    if (p->ix)
        sindex_set_budget(p->ix, v->count / 4 > INDEX_PER_RUN ? v->count / 4 : INDEX_PER_RUN);
    if (p->ix && !attach_queries(p->root, p->ix)) {
        sindex_close(p->ix);
        p->ix = NULL;
        return;
    }
    /* A BODY/TEXT key that every match must satisfy gates the walk. */
    srch_node *r = p->root;
    if (r && (r->kind == SK_BODY || r->kind == SK_TEXT))
        p->gate = r->u.str.ixq;
    for (size_t i = 0; r && r->kind == SK_AND && !p->gate && i < r->nkids; i++)
        if (r->kids[i]->kind == SK_BODY || r->kids[i]->kind == SK_TEXT)
            p->gate = r->kids[i]->u.str.ixq;
}

/* Segments a skip may work through per call (each costs at most a few
 * hundred microseconds: a map, a check, a few lists). */
#define SKIP_BUDGET 1

uint32_t imap_search_skip(imap_search_prog *p, const imap_search_view *v, uint32_t seq)
{
    if (seq < 1)
        seq = 1;
    if (!p->root || seq > v->count)
        return seq;
    if (!p->ix_tried)
        index_attach(p, v);
    if (!p->gate)
        return seq;
    unsigned budget = SKIP_BUDGET;
    seq = sindex_next(p->gate, v->uids, v->count, seq, &budget);
    if (seq > v->count && p->ix)
        (void)sindex_seal(p->ix, 2);   /* the walk is over (see run_range) */
    return seq;
}

bool imap_search_finish(imap_search_prog *p)
{
    return p->ix && sindex_work(p->ix, 4) > 0;
}

/* Index the current message: its body and text, built here once and then
 * used by the evaluation too.  A message whose text cannot be built is
 * left out (it stays scanned); so is everything if the index fails. */
static void index_message(ev *e, sindex *x)
{
    if (!load_cache(e) || !load_msg(e))
        return;
    int rc = build_body(e);
    if (rc < 0)
        return;     /* the evaluation meets it again if it needs it */
    e->have_body = true;
    if ((rc = build_text(e)) < 0)
        return;
    e->have_text = true;
    if (sindex_doc(x, e->uid) == 0 && sindex_add_body(x, e->body.data, e->body.len) == 0)
        (void)sindex_add(x, e->text.data, e->text.len);
}

/* ---- the walk ---------------------------------------------------------- */

static int res_add(imap_search_result *r, bool modseqs, uint32_t seq,
                   uint32_t uid, uint64_t modseq)
{
    if (r->n == r->cap) {
        size_t c = r->cap ? r->cap * 2 : 64;
        uint32_t *s = realloc(r->seqs, c * sizeof *s);
        if (!s)
            return -ENOMEM;
        r->seqs = s;
        uint32_t *u = realloc(r->uids, c * sizeof *u);
        if (!u)
            return -ENOMEM;
        r->uids = u;
        if (modseqs || r->modseqs) {
            uint64_t *m = realloc(r->modseqs, c * sizeof *m);
            if (!m)
                return -ENOMEM;
            r->modseqs = m;
        }
        r->cap = c;
    }
    r->seqs[r->n] = seq;
    r->uids[r->n] = uid;
    if (r->modseqs)
        r->modseqs[r->n] = modseq;
    r->n++;
    return 0;
}

int imap_search_run_range(imap_search_prog *p, const imap_search_view *v,
                          uint32_t first, uint32_t last,
                          imap_search_result *res)
{
    if (first < 1)
        first = 1;
    if (last > v->count)
        last = v->count;
    if (first > last || !p->root)
        return 0;

    ev e = { .p = p, .v = v, .now = v->now ? v->now : (int64_t)time(NULL) };
    int rc = prepare(p->root, v);
    if (rc < 0)
        return rc;
    if (!p->ix_tried)
        index_attach(p, v);
    /* modseqs is all-or-nothing over the result */
    if (p->uses_modseq && !res->modseqs) {
        if (res->n)
            return -EINVAL;
        if (res->cap && !(res->modseqs = malloc(res->cap * sizeof(uint64_t))))
            return -ENOMEM;
    }

    /* The view ascends like the index: each message is at most a few
     * entries (tombstones) past the last. */
    store_cursor_init(&e.cur, v->snap);
    unsigned budget = SKIP_BUDGET;     /* for the whole call */
    for (uint32_t seq = first; seq <= last; seq++) {
        if (p->gate && (seq = sindex_next(p->gate, v->uids, last, seq, &budget)) > last)
            break;
        uint32_t uid = v->uids[seq - 1];
        store_msg cur;
        if (store_cursor_seek(&e.cur, uid, &cur) < 0)
            continue;       /* gone from the snapshot: matches nothing */

        e.seq = seq;
        e.uid = uid;
        e.m = cur;
        e.cache_st = e.ext_st = 0;
        e.have_msg = e.have_body = e.have_text = false;
        if (p->ix && sindex_wants(p->ix, uid))
            index_message(&e, p->ix);
        bool hit = !e.err && eval(&e, p->root);
        if (e.err) {
            rc = e.err;
            break;
        }
        if (hit && (rc = res_add(res, p->uses_modseq, seq, uid, cur.modseq)))
            break;
    }
    /* the walk is over: write what was indexed */
    if (p->ix && rc == 0 && last == v->count)
        (void)sindex_seal(p->ix, 2);
    free(e.body.data);
    free(e.text.data);
    free(e.tmp.data);
    free(e.tmp2.data);
    imap_out_free(&e.addr);
    return rc;
}

int imap_search_run(imap_search_prog *p, const imap_search_view *v,
                    imap_search_result *res)
{
    res->n = 0;
    if (!p->uses_modseq) {
        free(res->modseqs);
        res->modseqs = NULL;
    }
    if (!v->count)
        return 0;
    int rc = imap_search_run_range(p, v, 1, v->count, res);
    if (p->ix)
        (void)sindex_work(p->ix, 0);    /* unsliced anyway: write it now */
    return rc;
}
