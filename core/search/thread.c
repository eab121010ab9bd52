/* core/search/thread.c — THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256
 * section 3) over prepared keys (core/search/sort.h); the steps are numbered
 * as in the RFC. */
#include "core/search/sort.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NIL UINT32_MAX

typedef struct tnode {
    uint32_t msg;               /* index into set->m; NIL for a dummy */
    uint32_t parent, first, last, prev, next;
    int64_t kdate;              /* sort key: sent date, then sequence */
    uint32_t kseq;
} tnode;

typedef struct tslot {
    uint32_t off, len, val;     /* key in the set's pool; val NIL: empty */
    uint32_t h;                 /* the key's hash (low bits): most keys that
                                   differ are told apart without reading
                                   the pool, which is the cache miss */
} tslot;

typedef struct ttab {
    tslot *slot;
    size_t cap, n;
} ttab;

typedef struct thr {
    const imap_sort_set *s;
    tnode *nd;
    size_t n, cap;
    ttab ids, subj;
    uint32_t *stack;            /* traversal scratch */
    size_t nstack, capstack;
} thr;

/* ---- string table ------------------------------------------------------ */

/* Eight bytes a step (Message IDs are some 40 bytes): multiply and fold. */
static uint64_t hash(const uint8_t *p, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ n, v;
    for (; n >= 8; p += 8, n -= 8) {
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    v = 0;
    memcpy(&v, p, n);
    h = (h ^ v) * 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 29);
}

static int tab_init(ttab *t, size_t entries)
{
    size_t cap = 16;
    while (cap < entries * 2)
        cap *= 2;
    t->slot = malloc(cap * sizeof *t->slot);
    if (!t->slot)
        return -ENOMEM;
    for (size_t i = 0; i < cap; i++)
        t->slot[i].val = NIL;
    t->cap = cap;
    t->n = 0;
    return 0;
}

static tslot *tab_find_h(const thr *t, const ttab *tb, uint32_t off, uint32_t len,
                         uint64_t h)
{
    const uint8_t *pool = t->s->pool.data;
    size_t mask = tb->cap - 1, i = (size_t)(h >> 32) & mask;
    for (;;) {
        tslot *sl = &tb->slot[i];
        if (sl->val == NIL) {
            sl->h = (uint32_t)h;    /* for the caller's tab_set */
            return sl;
        }
        if (sl->h == (uint32_t)h && sl->len == len &&
            memcmp(pool + sl->off, pool + off, len) == 0)
            return sl;
        i = (i + 1) & mask;
    }
}

/* The slot of the key: its entry, or the empty slot to fill (tab_set). */
static tslot *tab_find(const thr *t, const ttab *tb, uint32_t off, uint32_t len)
{
    return tab_find_h(t, tb, off, len, hash(t->s->pool.data + off, len));
}

/* Fill the empty slot tab_find gave (it holds the key's hash already). */
static void tab_set(tslot *sl, uint32_t off, uint32_t len, uint32_t val)
{
    sl->off = off;
    sl->len = len;
    sl->val = val;
}

static uint64_t full_hash(const thr *t, const tslot *sl)
{
    return hash(t->s->pool.data + sl->off, sl->len);
}

/* Room for one more entry (at most half full). */
static int tab_room(thr *t, ttab *tb)
{
    if ((tb->n + 1) * 2 <= tb->cap)
        return 0;
    ttab nt;
    if (tab_init(&nt, tb->cap) < 0)
        return -ENOMEM;
    for (size_t i = 0; i < tb->cap; i++)
        if (tb->slot[i].val != NIL)
            tab_set(tab_find_h(t, &nt, tb->slot[i].off, tb->slot[i].len,
                               full_hash(t, &tb->slot[i])),
                    tb->slot[i].off, tb->slot[i].len, tb->slot[i].val);
    nt.n = tb->n;
    free(tb->slot);
    *tb = nt;
    return 0;
}

/* ---- the tree ----------------------------------------------------------- */

static uint32_t node_new(thr *t, uint32_t msg)
{
    if (t->n == t->cap) {
        size_t c = t->cap ? t->cap * 2 : 64;
        tnode *p = realloc(t->nd, c * sizeof *p);
        if (!p)
            return NIL;
        t->nd = p;
        t->cap = c;
    }
    tnode *x = &t->nd[t->n];
    *x = (tnode){ .msg = msg, .parent = NIL, .first = NIL, .last = NIL,
                  .prev = NIL, .next = NIL };
    if (msg != NIL) {
        x->kdate = t->s->m[msg].date;
        x->kseq = t->s->m[msg].seq;
    }
    return (uint32_t)t->n++;
}

static void unlink_node(thr *t, uint32_t c)
{
    tnode *x = &t->nd[c];
    if (x->parent == NIL)
        return;
    tnode *p = &t->nd[x->parent];
    if (x->prev != NIL)
        t->nd[x->prev].next = x->next;
    else
        p->first = x->next;
    if (x->next != NIL)
        t->nd[x->next].prev = x->prev;
    else
        p->last = x->prev;
    x->parent = x->prev = x->next = NIL;
}

/* Append c (without a parent) to p's children. */
static void link_node(thr *t, uint32_t p, uint32_t c)
{
    tnode *x = &t->nd[c], *pp = &t->nd[p];
    x->parent = p;
    x->prev = pp->last;
    x->next = NIL;
    if (pp->last != NIL)
        t->nd[pp->last].next = c;
    else
        pp->first = c;
    pp->last = c;
}

/* Put c (without a parent) where `at` is in its parent's list, and take
 * `at` out. */
static void replace_node(thr *t, uint32_t at, uint32_t c)
{
    tnode *a = &t->nd[at], *x = &t->nd[c], *p = &t->nd[a->parent];
    x->parent = a->parent;
    x->prev = a->prev;
    x->next = a->next;
    if (a->prev != NIL)
        t->nd[a->prev].next = c;
    else
        p->first = c;
    if (a->next != NIL)
        t->nd[a->next].prev = c;
    else
        p->last = c;
    a->parent = a->prev = a->next = NIL;
}

/* "before making message A the parent of B, make sure that A is not a
 * descendent of B" (nor B itself). */
static bool would_loop(const thr *t, uint32_t parent, uint32_t child)
{
    /* a childless node has no descendants: the usual case, a message not
     * yet referenced, costs nothing instead of a walk up a long chain */
    if (t->nd[child].first == NIL)
        return parent == child;
    for (uint32_t x = parent; x != NIL; x = t->nd[x].parent)
        if (x == child)
            return true;
    return false;
}

static int push(thr *t, uint32_t x)
{
    if (t->nstack == t->capstack) {
        size_t c = t->capstack ? t->capstack * 2 : 256;
        uint32_t *p = realloc(t->stack, c * sizeof *p);
        if (!p)
            return -ENOMEM;
        t->stack = p;
        t->capstack = c;
    }
    t->stack[t->nstack++] = x;
    return 0;
}

/* The nodes under root (root included) with every node after all of its
 * descendants: reversed preorder, in *out (n entries, the caller frees). */
static int postorder(thr *t, uint32_t root, uint32_t **out, size_t *n)
{
    uint32_t *ord = malloc(t->n * sizeof *ord);
    size_t k = 0;
    int rc = 0;
    if (!ord)
        return -ENOMEM;
    t->nstack = 0;
    if ((rc = push(t, root)) < 0)
        goto fail;
    while (t->nstack) {
        uint32_t x = t->stack[--t->nstack];
        ord[k++] = x;
        for (uint32_t c = t->nd[x].first; c != NIL; c = t->nd[c].next)
            if ((rc = push(t, c)) < 0)
                goto fail;
    }
    for (size_t i = 0; i < k / 2; i++) {
        uint32_t tmp = ord[i];
        ord[i] = ord[k - 1 - i];
        ord[k - 1 - i] = tmp;
    }
    *out = ord;
    *n = k;
    return 0;
fail:
    free(ord);
    return rc;
}

static int cmp_nodes(const void *a, const void *b, void *arg)
{
    const tnode *nd = arg;
    const tnode *x = &nd[*(const uint32_t *)a], *y = &nd[*(const uint32_t *)b];
    if (x->kdate != y->kdate)
        return x->kdate < y->kdate ? -1 : 1;
    return x->kseq < y->kseq ? -1 : x->kseq > y->kseq;
}

/* Sort p's children by their keys, then give p (a dummy) its first
 * child's key: "In the case of a dummy message, sort its children by sent
 * date and then use the first child". */
static int sort_children(thr *t, uint32_t p)
{
    size_t k = 0;
    for (uint32_t c = t->nd[p].first; c != NIL; c = t->nd[c].next)
        k++;
    if (k > 1) {
        uint32_t *a = malloc(k * sizeof *a);
        if (!a)
            return -ENOMEM;
        k = 0;
        for (uint32_t c = t->nd[p].first; c != NIL; c = t->nd[c].next)
            a[k++] = c;
        qsort_r(a, k, sizeof *a, cmp_nodes, t->nd);
        for (size_t i = 0; i < k; i++) {
            t->nd[a[i]].prev = i ? a[i - 1] : NIL;
            t->nd[a[i]].next = i + 1 < k ? a[i + 1] : NIL;
        }
        t->nd[p].first = a[0];
        t->nd[p].last = a[k - 1];
        free(a);
    }
    tnode *x = &t->nd[p];
    if (x->msg == NIL && x->first != NIL) {
        x->kdate = t->nd[x->first].kdate;
        x->kseq = t->nd[x->first].kseq;
    }
    return 0;
}

/* The message whose base subject a node's thread has ("either the
 * current message or its first child if the current message is a
 * dummy"), or NIL. */
static uint32_t subject_msg(const thr *t, uint32_t x)
{
    while (x != NIL && t->nd[x].msg == NIL)
        x = t->nd[x].first;
    return x == NIL ? NIL : t->nd[x].msg;
}

/* ---- REFERENCES ---------------------------------------------------------- */

static int references(thr *t)
{
    const imap_sort_set *s = t->s;
    int rc;
    uint32_t root = node_new(t, NIL);
    if (root == NIL || (rc = tab_init(&t->ids, s->n)) < 0)
        return -ENOMEM;
    /* (1) for each searched message, in sequence order */
    for (size_t i = 0; i < s->n; i++) {
        const imap_sort_msg *m = &s->m[i];
        uint32_t self = NIL;
        if (m->len[IMAP_SORT_S_MSGID]) {
            if ((rc = tab_room(t, &t->ids)) < 0)
                return rc;
            tslot *sl = tab_find(t, &t->ids, m->off[IMAP_SORT_S_MSGID],
                                 m->len[IMAP_SORT_S_MSGID]);
            if (sl->val == NIL) {
                if ((self = node_new(t, (uint32_t)i)) == NIL)
                    return -ENOMEM;
                tab_set(sl, m->off[IMAP_SORT_S_MSGID], m->len[IMAP_SORT_S_MSGID], self);
                t->ids.n++;
            } else if (t->nd[sl->val].msg == NIL) {
                /* a dummy made for a reference becomes this message */
                self = sl->val;
                t->nd[self].msg = (uint32_t)i;
                t->nd[self].kdate = m->date;
                t->nd[self].kseq = m->seq;
            }
            /* else: "If two or more messages have the same Message ID,
             * then only use that Message ID in the first (lowest sequence
             * number) message, and assign a unique Message ID to each of
             * the subsequent messages" */
        }
        /* no valid Message-ID: a unique one, i.e. a node no reference
         * can find */
        if (self == NIL && (self = node_new(t, (uint32_t)i)) == NIL)
            return -ENOMEM;

        /* (1)(A) link the references as parent/child */
        uint32_t prev = NIL;
        const char *r = (const char *)s->pool.data + m->off[IMAP_SORT_S_REFS];
        size_t rl = m->len[IMAP_SORT_S_REFS];
        for (size_t at = 0; at < rl;) {
            size_t l = strlen(r + at);
            uint32_t off = m->off[IMAP_SORT_S_REFS] + (uint32_t)at;
            if ((rc = tab_room(t, &t->ids)) < 0)
                return rc;
            tslot *sl = tab_find(t, &t->ids, off, (uint32_t)l);
            uint32_t cur = sl->val;
            if (cur == NIL) {
                /* "If no message can be found with a given Message ID,
                 * create a dummy message with this ID." */
                if ((cur = node_new(t, NIL)) == NIL)
                    return -ENOMEM;
                tab_set(sl, off, (uint32_t)l, cur);
                t->ids.n++;
            }
            /* "If a message already has a parent, don't change the
             * existing link." ... "Do not create a parent/child link if
             * creating that link would introduce a loop." */
            if (prev != NIL && t->nd[cur].parent == NIL && !would_loop(t, prev, cur))
                link_node(t, prev, cur);
            prev = cur;
            at += l + 1;
        }
        /* (1)(B) the last reference is the parent: an existing parent
         * (from a truncated References elsewhere) gives way to it; with no
         * references the message has no parent */
        unlink_node(t, self);
        if (prev != NIL && !would_loop(t, prev, self))
            link_node(t, prev, self);
    }
    free(t->ids.slot);
    t->ids.slot = NULL;

    /* (2) the parentless are the root's children */
    for (uint32_t x = 1; x < t->n; x++)
        if (t->nd[x].parent == NIL)
            link_node(t, root, x);

    /* (3) prune dummies, deepest first */
    uint32_t *ord;
    size_t nord;
    if ((rc = postorder(t, root, &ord, &nord)) < 0)
        return rc;
    for (size_t i = 0; i < nord; i++) {
        uint32_t x = ord[i];
        tnode *d = &t->nd[x];
        if (x == root || d->msg != NIL)
            continue;
        if (d->first == NIL) {
            unlink_node(t, x);      /* "a dummy message with NO children" */
            continue;
        }
        /* "Do not promote the children if doing so would make them
         * children of the root, unless there is only one child." */
        if (d->parent == root && t->nd[d->first].next != NIL)
            continue;
        /* splice the children in where the dummy was */
        uint32_t p = d->parent, before = d->next;
        unlink_node(t, x);
        uint32_t c = d->first;
        while (c != NIL) {
            uint32_t nx = t->nd[c].next;
            tnode *cc = &t->nd[c];
            cc->parent = p;
            cc->next = before;
            if (before != NIL) {
                cc->prev = t->nd[before].prev;
                t->nd[before].prev = c;
            } else {
                cc->prev = t->nd[p].last;
                t->nd[p].last = c;
            }
            if (cc->prev != NIL)
                t->nd[cc->prev].next = c;
            else
                t->nd[p].first = c;
            c = nx;
        }
        d->first = d->last = NIL;
    }
    free(ord);

    /* (4) sort the root's children by sent date (a dummy by its first
     * child, after sorting its children) */
    for (uint32_t x = t->nd[root].first; x != NIL; x = t->nd[x].next)
        if (t->nd[x].msg == NIL && (rc = sort_children(t, x)) < 0)
            return rc;
    if ((rc = sort_children(t, root)) < 0)
        return rc;

    /* (5) gather the root's children by base subject */
    if ((rc = tab_init(&t->subj, t->n)) < 0)
        return rc;
    /* (5)(B) one message per base subject */
    for (uint32_t x = t->nd[root].first; x != NIL; x = t->nd[x].next) {
        uint32_t sm = subject_msg(t, x);
        if (sm == NIL || !s->m[sm].len[IMAP_SORT_S_SUBJECT])
            continue;       /* (ii) an empty thread subject */
        tslot *sl = tab_find(t, &t->subj, s->m[sm].off[IMAP_SORT_S_SUBJECT],
                             s->m[sm].len[IMAP_SORT_S_SUBJECT]);
        if (sl->val == NIL) {
            tab_set(sl, s->m[sm].off[IMAP_SORT_S_SUBJECT], s->m[sm].len[IMAP_SORT_S_SUBJECT], x);
            t->subj.n++;
            continue;
        }
        const tnode *in = &t->nd[sl->val];
        /* "if the message in the subject table is not a dummy, AND either
         * ... The current message is a dummy, OR The message in the
         * subject table is a reply or forward and the current message is
         * not." */
        if (in->msg != NIL &&
            (t->nd[x].msg == NIL || (s->m[in->msg].reply && !s->m[t->nd[x].msg].reply)))
            sl->val = x;
    }
    /* (5)(C) merge threads with the same subject */
    for (uint32_t x = t->nd[root].first, nx; x != NIL; x = nx) {
        nx = t->nd[x].next;
        uint32_t sm = subject_msg(t, x);
        if (sm == NIL || !s->m[sm].len[IMAP_SORT_S_SUBJECT])
            continue;
        tslot *sl = tab_find(t, &t->subj, s->m[sm].off[IMAP_SORT_S_SUBJECT],
                             s->m[sm].len[IMAP_SORT_S_SUBJECT]);
        uint32_t in = sl->val;
        if (in == x)
            continue;
        bool xd = t->nd[x].msg == NIL, id = t->nd[in].msg == NIL;
        if (xd && id) {
            /* "append the current message's children to the children of
             * the message in the subject table ... and then delete the
             * current message" */
            for (uint32_t c = t->nd[x].first, cn; c != NIL; c = cn) {
                cn = t->nd[c].next;
                unlink_node(t, c);
                link_node(t, in, c);
            }
            unlink_node(t, x);
        } else if (id || (!xd && s->m[t->nd[x].msg].reply && !s->m[t->nd[in].msg].reply)) {
            /* a child of the message in the subject table */
            unlink_node(t, x);
            link_node(t, in, x);
        } else {
            /* "create a new dummy message and make both the current
             * message and the message in the subject table children of
             * the dummy.  Then replace the message in the subject table
             * with the dummy message." */
            uint32_t d = node_new(t, NIL);
            if (d == NIL)
                return -ENOMEM;
            unlink_node(t, x);
            replace_node(t, in, d);
            link_node(t, d, in);
            link_node(t, d, x);
            sl->val = d;
        }
    }

    /* (6) sort every set of siblings, the youngest first */
    if ((rc = postorder(t, root, &ord, &nord)) < 0)
        return rc;
    for (size_t i = 0; i < nord && !rc; i++)
        rc = sort_children(t, ord[i]);
    free(ord);
    return rc;
}

/* ---- output ------------------------------------------------------------ */

static void put_num(const thr *t, imap_out *o, uint32_t x, bool uid)
{
    const imap_sort_msg *m = &t->s->m[t->nd[x].msg];
    imap_out_uint(o, uid ? m->uid : m->seq);
}

/* The inside of the thread-list that starts at x: "3 6 (4 23)(44 7 96)"
 * (thread-members), or for a dummy its children's lists "(3)(5)". */
static int render_members(thr *t, imap_out *o, uint32_t x, bool uid, unsigned depth)
{
    int rc;
    /* Deep branches nest; chains do not (they loop here). */
    if (depth > 100000)
        return -ELOOP;
    for (;;) {
        const tnode *nd = &t->nd[x];
        if (nd->msg == NIL) {
            for (uint32_t c = nd->first; c != NIL; c = t->nd[c].next) {
                imap_out_lit(o, "(");
                if ((rc = render_members(t, o, c, uid, depth + 1)) < 0)
                    return rc;
                imap_out_lit(o, ")");
            }
            return 0;
        }
        put_num(t, o, x, uid);
        if (nd->first == NIL)
            return 0;
        imap_out_lit(o, " ");
        if (t->nd[nd->first].next == NIL) {
            x = nd->first;
            continue;
        }
        for (uint32_t c = nd->first; c != NIL; c = t->nd[c].next) {
            imap_out_lit(o, "(");
            if ((rc = render_members(t, o, c, uid, depth + 1)) < 0)
                return rc;
            imap_out_lit(o, ")");
        }
        return 0;
    }
}

/* ---- ORDEREDSUBJECT ------------------------------------------------------ */

static int cmp_subj_date(const void *a, const void *b, void *arg)
{
    const imap_sort_set *s = arg;
    const imap_sort_msg *x = &s->m[*(const uint32_t *)a], *y = &s->m[*(const uint32_t *)b];
    uint32_t lx = x->len[IMAP_SORT_S_SUBJECT], ly = y->len[IMAP_SORT_S_SUBJECT];
    int r = lx && ly ? memcmp(s->pool.data + x->off[IMAP_SORT_S_SUBJECT],
                              s->pool.data + y->off[IMAP_SORT_S_SUBJECT], lx < ly ? lx : ly)
                     : 0;
    if (r)
        return r;
    if (lx != ly)
        return lx < ly ? -1 : 1;
    if (x->date != y->date)
        return x->date < y->date ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* "The searched messages are sorted by base subject and then by the sent
 * date.  The messages are then split into separate threads, with each
 * thread containing messages with the same base subject text.  Finally,
 * the threads are sorted by the sent date of the first message in the
 * thread."  As a tree: the first message of each thread under the root,
 * the others its children (no grandchildren). */
static int orderedsubject(thr *t)
{
    const imap_sort_set *s = t->s;
    uint32_t root = node_new(t, NIL);
    if (root == NIL)
        return -ENOMEM;
    uint32_t *o = malloc((s->n ? s->n : 1) * sizeof *o);
    if (!o)
        return -ENOMEM;
    for (size_t i = 0; i < s->n; i++)
        o[i] = (uint32_t)i;
    qsort_r(o, s->n, sizeof *o, cmp_subj_date, (void *)s);
    uint32_t head = NIL;
    for (size_t i = 0; i < s->n; i++) {
        uint32_t x = node_new(t, o[i]);
        if (x == NIL) {
            free(o);
            return -ENOMEM;
        }
        const imap_sort_msg *a = &s->m[o[i]], *h = head == NIL ? NULL : &s->m[t->nd[head].msg];
        if (h && h->len[IMAP_SORT_S_SUBJECT] == a->len[IMAP_SORT_S_SUBJECT] &&
            (!a->len[IMAP_SORT_S_SUBJECT] || memcmp(s->pool.data + h->off[IMAP_SORT_S_SUBJECT],
                   s->pool.data + a->off[IMAP_SORT_S_SUBJECT], a->len[IMAP_SORT_S_SUBJECT]) == 0)) {
            link_node(t, head, x);
        } else {
            link_node(t, root, x);
            head = x;
        }
    }
    free(o);
    return sort_children(t, root);
}

int imap_thread_render(const imap_sort_set *s, imap_thread_alg alg, bool uid,
                       imap_out *o)
{
    thr t = { .s = s };
    int rc = alg == IMAP_THREAD_REFERENCES ? references(&t) : orderedsubject(&t);
    for (uint32_t x = rc == 0 ? t.nd[0].first : NIL; x != NIL; x = t.nd[x].next) {
        if (x == t.nd[0].first)
            imap_out_lit(o, " ");
        imap_out_lit(o, "(");
        if ((rc = render_members(&t, o, x, uid, 0)) < 0)
            break;
        imap_out_lit(o, ")");
    }
    free(t.nd);
    free(t.ids.slot);
    free(t.subj.slot);
    free(t.stack);
    if (rc == 0 && o->err)
        rc = o->err;
    return rc;
}
