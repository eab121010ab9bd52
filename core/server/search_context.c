/* core/server/search_context.c — CONTEXT=SEARCH and CONTEXT=SORT: live
 * contexts and their ADDTO / REMOVEFROM updates (see search_context.h), and
 * CANCELUPDATE. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/search/sort.h"
#include "core/server/search_context.h"
#include "core/server/session.h"

struct search_ctx {
    char *tag;
    bool uid;                   /* UID SEARCH: updates carry UIDs */
    imap_search_prog *prog;     /* frozen */
    uint32_t *m;                /* the matches: UIDs, ascending */
    size_t n, cap;
    uint64_t modseq;            /* flag changes up to here were evaluated */
    uint64_t xmodseq;           /* expunges up to here were looked for */
    uint32_t last;              /* the view's messages up to this UID were
                                   evaluated */
    /* CONTEXT=SORT: the sort keys of every message that matched once
     * (set.m[k].seq holds the UID: same order as sequence numbers, and it
     * stays true while they shift), the matches in sort order as indexes
     * into set.m, and UID -> index (ku ascending, ki alongside) */
    bool sorted;
    imap_sort_crit crit[IMAP_SORT_MAX_CRIT];
    size_t ncrit;
    imap_sort_set set;
    uint32_t *ord;
    size_t nord;
    uint32_t *ku, *ki;
    size_t nk;
};

/* Changed messages evaluated again one by one; past this many (a change
 * of most of a big mailbox) the whole view is evaluated instead. */
#define CTX_CHANGES_MAX 16384

static void ctx_free(struct search_ctx *c)
{
    free(c->tag);
    imap_search_free(c->prog);
    free(c->m);
    imap_sort_set_free(&c->set);
    free(c->ord);
    free(c->ku);
    free(c->ki);
    memset(c, 0, sizeof *c);
}

static struct search_ctx *ctx_find(const session *s, const char *tag)
{
    for (unsigned i = 0; i < s->nctxs; i++)
        if (!strcmp(s->ctxs[i].tag, tag))
            return &s->ctxs[i];
    return NULL;
}

bool search_ctx_exists(const session *s, const char *tag)
{
    return ctx_find(s, tag) != NULL;
}

int search_ctx_add(session *s, const char *tag, bool uid, imap_search_prog **prog,
                   const imap_search_view *v, const uint32_t *matches, size_t n,
                   uint64_t modseq)
{
    if (s->nctxs >= SEARCH_CONTEXT_MAX)
        return -ENOSPC;
    if (!s->ctxs && !(s->ctxs = calloc(SEARCH_CONTEXT_MAX, sizeof *s->ctxs)))
        return -ENOMEM;
    struct search_ctx c = { .uid = uid, .modseq = modseq,
                            .last = v->count ? v->uids[v->count - 1] : 0 };
    /* expunges not yet announced may still be in the view, and so in the
     * matches: look for those too */
    c.xmodseq = s->modseq_expunged < modseq ? s->modseq_expunged : modseq;
    if (!(c.tag = strdup(tag)))
        return -ENOMEM;
    if (n && !(c.m = malloc(n * sizeof *c.m))) {
        free(c.tag);
        return -ENOMEM;
    }
    if (n)
        memcpy(c.m, matches, n * sizeof *c.m);
    c.n = c.cap = n;
    c.prog = *prog;
    *prog = NULL;
    s->ctxs[s->nctxs++] = c;
    return 0;
}

int search_ctx_add_sorted(session *s, const char *tag, bool uid, imap_search_prog **prog,
                          const imap_search_view *v, uint64_t modseq,
                          const imap_sort_crit *crit, size_t ncrit, imap_sort_set *set,
                          uint32_t **order)
{
    size_t n = set->n;
    uint32_t *m = malloc((n ? n : 1) * sizeof *m);
    uint32_t *ku = malloc((n ? n : 1) * sizeof *ku), *ki = malloc((n ? n : 1) * sizeof *ki);
    int rc = -ENOMEM;
    if (m && ku && ki) {
        /* set->m was filled in the search's order: ascending UIDs */
        for (size_t k = 0; k < n; k++) {
            m[k] = ku[k] = set->m[k].uid;
            ki[k] = (uint32_t)k;
            set->m[k].seq = set->m[k].uid;
        }
        rc = search_ctx_add(s, tag, uid, prog, v, m, n, modseq);
    }
    free(m);
    if (rc < 0) {
        free(ku);
        free(ki);
        return rc;
    }
    struct search_ctx *c = &s->ctxs[s->nctxs - 1];
    c->sorted = true;
    memcpy(c->crit, crit, ncrit * sizeof *crit);
    c->ncrit = ncrit;
    c->set = *set;
    memset(set, 0, sizeof *set);
    c->ord = *order;
    *order = NULL;
    c->nord = n;
    c->ku = ku;
    c->ki = ki;
    c->nk = n;
    return 0;
}

int search_ctx_cancel(session *s, const char *tag)
{
    struct search_ctx *c = ctx_find(s, tag);
    if (!c)
        return -ENOENT;
    ctx_free(c);
    *c = s->ctxs[--s->nctxs];
    memset(&s->ctxs[s->nctxs], 0, sizeof s->ctxs[0]);
    return 0;
}

void search_ctx_free_all(session *s)
{
    for (unsigned i = 0; i < s->nctxs; i++)
        ctx_free(&s->ctxs[i]);
    free(s->ctxs);
    s->ctxs = NULL;
    s->nctxs = 0;
}

/* ---- updates ------------------------------------------------------------ */

/* A list of UIDs (ascending) as the update's numbers. */
typedef struct uvec {
    uint32_t *v;
    size_t n, cap;
} uvec;

static int uvec_add(uvec *u, uint32_t x)
{
    if (u->n == u->cap) {
        size_t c = u->cap ? u->cap * 2 : 32;
        uint32_t *p = realloc(u->v, c * sizeof *p);
        if (!p)
            return -ENOMEM;
        u->v = p;
        u->cap = c;
    }
    u->v[u->n++] = x;
    return 0;
}

/* " REMOVEFROM (0 set)" / " ADDTO (0 set)": UIDs as they are, or their
 * sequence numbers in the view now (a UID not in the view is left out:
 * the client has no number for it). */
static void write_item(session *s, const struct search_ctx *c, const char *what, uvec *u)
{
    if (!u->n)
        return;
    size_t w = 0;
    for (size_t i = 0; i < u->n; i++) {
        if (c->uid) {
            u->v[w++] = u->v[i];
            continue;
        }
        uint32_t j = sess_view_lower(s, u->v[i]);
        if (j < s->nview && s->view[j] == u->v[i])
            u->v[w++] = j + 1;
    }
    if (!w)
        return;
    imap_out_printf(&s->out, " %s (0 ", what);
    imap_out_set(&s->out, u->v, w);
    imap_out_lit(&s->out, ")");
}

static void write_update(session *s, const struct search_ctx *c, uvec *rm, uvec *add)
{
    if (!rm->n && !add->n)
        return;
    size_t at = s->out.len;
    imap_out_printf(&s->out, "* ESEARCH (TAG \"%s\")%s", c->tag, c->uid ? " UID" : "");
    size_t items = s->out.len;
    write_item(s, c, "REMOVEFROM", rm);
    write_item(s, c, "ADDTO", add);
    if (s->out.len == items)
        s->out.len = at;    /* nothing the client can number */
    else
        imap_out_lit(&s->out, "\r\n");
}

/* The index into c->set of a UID that has keys, or UINT32_MAX. */
static uint32_t key_of(const struct search_ctx *c, uint32_t uid)
{
    size_t lo = 0, hi = c->nk;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->ku[mid] < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < c->nk && c->ku[lo] == uid ? c->ki[lo] : UINT32_MAX;
}

/* The position (0-based) of set index k in c->ord, which holds it. */
static size_t ord_find(const struct search_ctx *c, uint32_t k)
{
    size_t lo = 0, hi = c->nord;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (imap_sort_cmp(&c->set, c->crit, c->ncrit, c->ord[mid], k) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int cmp_sorted(const void *x, const void *y, void *arg)
{
    const struct search_ctx *c = arg;
    return imap_sort_cmp(&c->set, c->crit, c->ncrit, *(const uint32_t *)x,
                         *(const uint32_t *)y);
}

static int cmp_size(const void *x, const void *y)
{
    size_t a = *(const size_t *)x, b = *(const size_t *)y;
    return a < b ? -1 : a > b;
}

/* " pos number": the number of UID u (its sequence number in the view, or
 * the UID); false if the client has no number for it. */
static bool put_pair(session *s, const struct search_ctx *c, size_t pos, uint32_t u,
                     bool first)
{
    uint32_t num = u;
    if (!c->uid) {
        uint32_t j = sess_view_lower(s, u);
        if (j >= s->nview || s->view[j] != u)
            return false;
        num = j + 1;
    }
    imap_out_printf(&s->out, "%s%zu %u", first ? "" : " ", pos, num);
    return true;
}

/* CONTEXT=SORT: the changes as REMOVEFROM / ADDTO pairs with their context
 * positions (1-based), c->ord updated.  RFC 5267 4.3.3/4.3.4: "Each pair
 * is processed in the order that it appears": removals go from the first
 * position on, each position counted after the removals before it;
 * additions in the order of their final positions, each inserted where it
 * ends up.  The sort keys of a message never change (header fields, size,
 * arrival): only the set of matches does. */
static int write_sorted(session *s, struct search_ctx *c, store_snap *snap, uvec *rm,
                        uvec *add)
{
    (void)snap;
    if (!rm->n && !add->n)
        return 0;
    size_t *rpos = malloc((rm->n ? rm->n : 1) * sizeof *rpos);
    uint32_t *ak = malloc((add->n ? add->n : 1) * sizeof *ak);
    uint32_t *nord = malloc((c->nord + add->n + 1) * sizeof *nord);
    if (!rpos || !ak || !nord) {
        free(rpos);
        free(ak);
        free(nord);
        return -ENOMEM;
    }
    size_t nr = 0;
    for (size_t i = 0; i < rm->n; i++) {
        uint32_t k = key_of(c, rm->v[i]);
        size_t p = k == UINT32_MAX ? c->nord : ord_find(c, k);
        if (p < c->nord && c->ord[p] == k)
            rpos[nr++] = p;
    }
    qsort(rpos, nr, sizeof *rpos, cmp_size);
    for (size_t i = 0; i < add->n; i++)
        ak[i] = key_of(c, add->v[i]);
    qsort_r(ak, add->n, sizeof *ak, cmp_sorted, c);

    size_t at = s->out.len;
    imap_out_printf(&s->out, "* ESEARCH (TAG \"%s\")%s", c->tag, c->uid ? " UID" : "");
    size_t items = s->out.len;
    if (nr) {
        imap_out_lit(&s->out, " REMOVEFROM (");
        size_t mark = s->out.len;
        for (size_t i = 0; i < nr; i++)
            put_pair(s, c, rpos[i] - i + 1, c->set.m[c->ord[rpos[i]]].uid, s->out.len == mark);
        if (s->out.len == mark)
            s->out.len = mark - strlen(" REMOVEFROM (");
        else
            imap_out_lit(&s->out, ")");
    }
    /* the order without the removed, merged with the added */
    size_t w = 0, r = 0, a = 0, i = 0;
    size_t mark = 0;
    bool open = false;
    while (i < c->nord || a < add->n) {
        if (r < nr && i < c->nord && rpos[r] == i) {
            r++;
            i++;
            continue;
        }
        if (a < add->n &&
            (i == c->nord || imap_sort_cmp(&c->set, c->crit, c->ncrit, ak[a], c->ord[i]) < 0)) {
            if (!open) {
                imap_out_lit(&s->out, " ADDTO (");
                mark = s->out.len;
                open = true;
            }
            put_pair(s, c, w + 1, c->set.m[ak[a]].uid, s->out.len == mark);
            nord[w++] = ak[a++];
            continue;
        }
        nord[w++] = c->ord[i++];
    }
    if (open) {
        if (s->out.len == mark)
            s->out.len = mark - strlen(" ADDTO (");
        else
            imap_out_lit(&s->out, ")");
    }
    if (s->out.len == items)
        s->out.len = at;
    else
        imap_out_lit(&s->out, "\r\n");
    free(c->ord);
    c->ord = nord;
    c->nord = w;
    free(rpos);
    free(ak);
    return 0;
}

/* Replace the matches by the merge of the matches and the evaluated UIDs
 * `eval` (ascending) whose result is res (ascending, a subset): each UID of
 * eval matches iff it is in res.  What changed goes to rm / add. */
static int apply(struct search_ctx *c, const uint32_t *eval, size_t ne,
                 const imap_search_result *res, uvec *rm, uvec *add)
{
    uint32_t *out = malloc((c->n + res->n + 1) * sizeof *out);
    if (!out)
        return -ENOMEM;
    size_t i = 0, k = 0, r = 0, w = 0;
    int rc = 0;
    while (!rc && (i < c->n || k < ne)) {
        if (k == ne || (i < c->n && c->m[i] < eval[k])) {
            out[w++] = c->m[i++];       /* not evaluated: unchanged */
            continue;
        }
        uint32_t u = eval[k++];
        bool was = i < c->n && c->m[i] == u;
        if (was)
            i++;
        while (r < res->n && res->uids[r] < u)
            r++;
        bool now = r < res->n && res->uids[r] == u;
        if (now)
            out[w++] = u;
        if (was && !now)
            rc = uvec_add(rm, u);
        else if (!was && now)
            rc = uvec_add(add, u);
    }
    if (rc) {
        free(out);
        return rc;
    }
    free(c->m);
    c->m = out;
    c->n = w;
    c->cap = c->n + res->n + 1;
    return 0;
}

static imap_search_view ctx_view(session *s, store_snap *snap, const uint32_t *uids,
                                 uint32_t n, int64_t now)
{
    return (imap_search_view){
        .snap = snap, .uids = uids, .count = n,
        .recent_first = s->recent_first == UINT32_MAX ? 0 : s->recent_first,
        .now = now,
    };
}

/* Drop the matches the snapshot no longer has (expunged since xmodseq). */
static int ctx_expunged(struct search_ctx *c, store_snap *snap, uvec *rm)
{
    if (!c->n)
        return 0;
    store_rangelist gone = {0};
    int rc = store_snap_vanished(snap, c->xmodseq, 1, c->last ? c->last : 1, &gone);
    size_t w = 0, g = 0;
    for (size_t i = 0; rc == 0 && i < c->n; i++) {
        uint32_t u = c->m[i];
        while (g < gone.n && gone.r[g].hi < u)
            g++;
        if (g < gone.n && gone.r[g].lo <= u) {
            rc = uvec_add(rm, u);
            continue;
        }
        c->m[w++] = u;
    }
    if (rc == 0)
        c->n = w;
    store_rangelist_free(&gone);
    return rc;
}

/* One sync's evaluation, in slices (it runs inside the view sync's steps:
 * a change of a whole big mailbox is evaluated a few messages at a time,
 * the worker's other sessions served in between). */
struct search_ctx_sync {
    bool started;
    unsigned ci;                /* the context being evaluated */
    bool prepared;              /* its list is made */
    store_uidlist chg;          /* changed UIDs (owned) */
    const uint32_t *eval;       /* what is evaluated: chg's, or the view's */
    size_t ne, pos;
    imap_search_result res;
    uvec rm, add;
    int64_t now;
    bool applied;               /* the matches were updated from res */
    /* CONTEXT=SORT: reading the keys of the added messages */
    size_t kpos;                /* next in add */
    store_cursor cur;
    uvec nu, ni;                /* UIDs given keys, their indexes */
};

/* Messages evaluated between two looks at the slice. */
#define CTX_EVAL_CHUNK 8

void search_ctx_sync_free(search_ctx_sync *st)
{
    if (!st)
        return;
    store_uidlist_free(&st->chg);
    imap_search_result_free(&st->res);
    free(st->rm.v);
    free(st->add.v);
    free(st->nu.v);
    free(st->ni.v);
    free(st);
}

/* CONTEXT=SORT: read the sort keys of the added messages that have none
 * yet (a few cache reads per unit of the slice), then enter them in the
 * UID -> index map.  false: the slice ran out (call again). */
static bool add_keys_step(session *s, struct search_ctx *c, search_ctx_sync *st,
                          store_snap *snap, sess_slice *sl, int *rc)
{
    if (st->kpos == 0)
        store_cursor_init(&st->cur, snap);
    for (; st->kpos < st->add.n && *rc == 0; st->kpos++) {
        uint32_t u = st->add.v[st->kpos];
        if (key_of(c, u) != UINT32_MAX)
            continue;
        if (sess_slice_over(s, sl))
            return false;
        uint32_t idx = (uint32_t)c->set.n;
        /* seq = the UID: see struct search_ctx */
        if ((*rc = imap_sort_set_add(&c->set, &st->cur, u, u)) == 0 &&
            (*rc = uvec_add(&st->nu, u)) == 0)
            *rc = uvec_add(&st->ni, idx);
    }
    if (*rc || !st->nu.n)
        return true;
    /* merge: both ascend */
    size_t n = c->nk + st->nu.n;
    uint32_t *ku = malloc(n * sizeof *ku), *ki = malloc(n * sizeof *ki);
    if (!ku || !ki) {
        free(ku);
        free(ki);
        *rc = -ENOMEM;
        return true;
    }
    size_t a = 0, b = 0, w = 0;
    while (a < c->nk || b < st->nu.n) {
        if (b == st->nu.n || (a < c->nk && c->ku[a] < st->nu.v[b])) {
            ku[w] = c->ku[a];
            ki[w++] = c->ki[a++];
        } else {
            ku[w] = st->nu.v[b];
            ki[w++] = st->ni.v[b++];
        }
    }
    free(c->ku);
    free(c->ki);
    c->ku = ku;
    c->ki = ki;
    c->nk = w;
    return true;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The list of context c to evaluate at the start of a sync: its messages
 * in the view whose modseq passed c->modseq (new ones are left to the
 * step after the EXISTS); when more than CTX_CHANGES_MAX changed, the
 * whole of the view it evaluated before.  Expunged matches go to rm. */
static int prepare_begin(session *s, search_ctx_sync *st, struct search_ctx *c,
                         store_snap *snap, uint64_t hms)
{
    int rc = 0;
    if (c->xmodseq < hms && (rc = ctx_expunged(c, snap, &st->rm)) == 0)
        c->xmodseq = hms;
    if (rc < 0 || c->modseq >= hms)
        return rc;
    rc = store_snap_changed_since_max(snap, c->modseq, CTX_CHANGES_MAX, &st->chg);
    if (rc == -E2BIG) {
        st->eval = s->view;
        st->ne = sess_view_lower(s, c->last + 1);
        return 0;
    }
    size_t w = 0;
    for (size_t i = 0; rc == 0 && i < st->chg.n; i++) {
        uint32_t u = st->chg.uids[i], j = sess_view_lower(s, u);
        if (u <= c->last && j < s->nview && s->view[j] == u)
            st->chg.uids[w++] = u;
    }
    st->chg.n = w;
    st->eval = st->chg.uids;
    st->ne = w;
    return rc;
}

/* The list after the EXISTS: the view's messages above c->last. */
static void prepare_new(session *s, search_ctx_sync *st, struct search_ctx *c)
{
    uint32_t j = c->last == UINT32_MAX ? s->nview : sess_view_lower(s, c->last + 1);
    st->eval = s->view + j;
    st->ne = s->nview - j;
}

bool search_ctx_sync_step(session *s, store_snap *snap, search_ctx_sync **stp, bool new,
                          sess_slice *sl)
{
    search_ctx_sync *st = *stp;
    if (!s->nctxs)
        return true;
    if (!st) {
        if (!(st = *stp = calloc(1, sizeof *st)))
            return true;    /* no memory: these updates are not sent */
        st->now = (int64_t)time(NULL);
    }
    uint64_t hms = store_snap_highestmodseq(snap);
    for (; st->ci < s->nctxs; st->ci++) {
        struct search_ctx *c = &s->ctxs[st->ci];
        int rc = 0;
        if (!st->prepared) {
            st->prepared = true;
            st->pos = st->ne = 0;
            st->eval = NULL;
            if (new)
                prepare_new(s, st, c);
            else
                rc = prepare_begin(s, st, c, snap, hms);
        }
        imap_search_view v = ctx_view(s, snap, st->eval, (uint32_t)st->ne, st->now);
        while (rc == 0 && st->pos < st->ne) {
            if (sess_slice_over(s, sl))
                return false;
            uint32_t first = (uint32_t)st->pos + 1;
            uint32_t last = st->ne - st->pos < CTX_EVAL_CHUNK ? (uint32_t)st->ne
                                                             : first + CTX_EVAL_CHUNK - 1;
            rc = imap_search_run_range(c->prog, &v, first, last, &st->res);
            st->pos = last;
        }
        if (rc == 0 && st->ne && !st->applied)
            rc = apply(c, st->eval, st->ne, &st->res, &st->rm, &st->add);
        st->applied = true;
        if (rc == 0 && c->sorted && !add_keys_step(s, c, st, snap, sl, &rc))
            return false;
        if (rc == 0) {
            if (new) {
                if (s->nview)
                    c->last = s->view[s->nview - 1];
            } else {
                c->modseq = hms;
            }
            /* the expunged and the changed each ascend and are disjoint
             * (the changed are live): one set */
            if (st->rm.n > 1)
                qsort(st->rm.v, st->rm.n, sizeof *st->rm.v, cmp_u32);
            if (c->sorted)
                write_sorted(s, c, snap, &st->rm, &st->add);
            else
                write_update(s, c, &st->rm, &st->add);
        }
        /* on failure (no memory) the context is looked at again at the
         * next sync: its watermarks did not move */
        st->prepared = st->applied = false;
        st->kpos = st->nu.n = st->ni.n = 0;
        st->rm.n = st->add.n = 0;
        st->res.n = 0;
        store_uidlist_free(&st->chg);
    }
    /* the next call (the other phase) starts over */
    st->ci = 0;
    return true;
}

/* CANCELUPDATE "tag" ... (RFC 5267 4.3.5, command-select). */
void cmd_cancelupdate(imap_cmd *c)
{
    session *s = c->s;
    if (!c->nargs) {
        sess_bad(s, c->tag, "CANCELUPDATE needs the tags of searches");
        return;
    }
    /* command-select =/ "CANCELUPDATE" 1*(SP quoted); every tag is checked
     * before any context ends, so a bad one cancels nothing */
    for (size_t i = 0; i < c->nargs; i++) {
        const imap_arg *a = &c->args[i];
        if (a->type != IMAP_ARG_STRING) {
            sess_bad(s, c->tag, "CANCELUPDATE takes quoted tags");
            return;
        }
        char t[256];
        if (a->len >= sizeof t || memchr(a->s, 0, a->len)) {
            sess_bad(s, c->tag, "No such update context");
            return;
        }
        memcpy(t, a->s, a->len);
        t[a->len] = 0;
        if (!ctx_find(s, t)) {
            sess_bad(s, c->tag, "No such update context");
            return;
        }
    }
    for (size_t i = 0; i < c->nargs; i++) {
        char t[256];
        memcpy(t, c->args[i].s, c->args[i].len);
        t[c->args[i].len] = 0;
        search_ctx_cancel(s, t);
    }
    cmd_done(s, c->def, c->tag, "OK", "No further updates");
}
