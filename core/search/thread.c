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
    uint32_t kuid;              /* the message's UID: what rendering needs
                                   is in the node, not in the set */
} tnode;

typedef struct thr {
    const imap_sort_set *s;
    tnode *nd;
    size_t n, cap;
    uint32_t *node_of;          /* Message-ID number -> node, or NIL;
                                   in (5) base subject number -> node */
    uint32_t *stack;            /* traversal scratch */
    size_t nstack, capstack;
    uint32_t *kids;             /* sort_children's scratch */
    size_t capkids;
} thr;

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
        x->kuid = t->s->m[msg].uid;
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
    /* siblings were linked in sequence order, and most mail arrives in
     * the order it was sent: a set already in order is left as it is */
    size_t k = 0;
    bool sorted = true;
    for (uint32_t c = t->nd[p].first, prev = NIL; c != NIL; prev = c, c = t->nd[c].next) {
        k++;
        if (prev != NIL && sorted && cmp_nodes(&prev, &c, t->nd) > 0)
            sorted = false;
    }
    if (k > 1 && !sorted) {
        if (k > t->capkids) {
            /* one scratch for every call: most sets of siblings are small */
            size_t c = t->capkids ? t->capkids : 64;
            while (c < k)
                c *= 2;
            uint32_t *p = realloc(t->kids, c * sizeof *p);
            if (!p)
                return -ENOMEM;
            t->kids = p;
            t->capkids = c;
        }
        uint32_t *a = t->kids;
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
    if (root == NIL)
        return -ENOMEM;
    /* the IDs are numbers (imap_sort_set.ids): the node of each is found
     * in an array, not by hashing its bytes */
    if (s->id_bound && !(t->node_of = malloc((size_t)s->id_bound * sizeof *t->node_of)))
        return -ENOMEM;
    for (size_t i = 0; i < s->id_bound; i++)
        t->node_of[i] = NIL;
    /* (1) for each searched message, in sequence order */
    for (size_t i = 0; i < s->n; i++) {
        const imap_sort_msg *m = &s->m[i];
        const uint32_t *ids = s->ids + m->ids_at + 1;   /* after the subject */
        uint32_t self = NIL;
        if (ids[0] != IMAP_SORT_NO_ID) {
            uint32_t *slot = &t->node_of[ids[0]];
            if (*slot == NIL) {
                if ((self = node_new(t, (uint32_t)i)) == NIL)
                    return -ENOMEM;
                *slot = self;
            } else if (t->nd[*slot].msg == NIL) {
                /* a dummy made for a reference becomes this message */
                self = *slot;
                t->nd[self].msg = (uint32_t)i;
                t->nd[self].kdate = m->date;
                t->nd[self].kseq = m->seq;
                t->nd[self].kuid = m->uid;
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
        for (uint32_t k = 1; k <= m->nrefs; k++) {
            uint32_t *slot = &t->node_of[ids[k]];
            uint32_t cur = *slot;
            if (cur == NIL) {
                /* "If no message can be found with a given Message ID,
                 * create a dummy message with this ID." */
                if ((cur = node_new(t, NIL)) == NIL)
                    return -ENOMEM;
                *slot = cur;
            }
            /* "If a message already has a parent, don't change the
             * existing link." ... "Do not create a parent/child link if
             * creating that link would introduce a loop." */
            if (prev != NIL && t->nd[cur].parent == NIL && !would_loop(t, prev, cur))
                link_node(t, prev, cur);
            prev = cur;
        }
        /* (1)(B) the last reference is the parent: an existing parent
         * (from a truncated References elsewhere) gives way to it; with no
         * references the message has no parent */
        unlink_node(t, self);
        if (prev != NIL && !would_loop(t, prev, self))
            link_node(t, prev, self);
    }

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

    /* (5) gather the root's children by base subject: the subjects are
     * numbers too (imap_sort_set.ids), the table an array */
    for (size_t i = 0; i < s->id_bound; i++)
        t->node_of[i] = NIL;
    /* (5)(B) one message per base subject */
    for (uint32_t x = t->nd[root].first; x != NIL; x = t->nd[x].next) {
        uint32_t sm = subject_msg(t, x);
        uint32_t num = sm == NIL ? IMAP_SORT_NO_ID : s->ids[s->m[sm].ids_at];
        if (num == IMAP_SORT_NO_ID)
            continue;       /* (ii) an empty thread subject */
        uint32_t *sl = &t->node_of[num];
        if (*sl == NIL) {
            *sl = x;
            continue;
        }
        const tnode *in = &t->nd[*sl];
        /* "if the message in the subject table is not a dummy, AND either
         * ... The current message is a dummy, OR The message in the
         * subject table is a reply or forward and the current message is
         * not." */
        if (in->msg != NIL &&
            (t->nd[x].msg == NIL || (s->m[in->msg].reply && !s->m[t->nd[x].msg].reply)))
            *sl = x;
    }
    /* (5)(C) merge threads with the same subject */
    for (uint32_t x = t->nd[root].first, nx; x != NIL; x = nx) {
        nx = t->nd[x].next;
        uint32_t sm = subject_msg(t, x);
        uint32_t num = sm == NIL ? IMAP_SORT_NO_ID : s->ids[s->m[sm].ids_at];
        if (num == IMAP_SORT_NO_ID)
            continue;
        uint32_t *sl = &t->node_of[num];
        uint32_t in = *sl;
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
            *sl = d;
        }
    }

    /* (6) "sort each set of siblings by sent date ... grandchildren are
     * sorted before children, etc.  In the case of a dummy message (which
     * can only occur with top-level siblings), use its first child for
     * sorting."  Only a dummy's key depends on its children's order, so
     * the dummies go first, then the messages' children, then the root's
     * (in array order, not by a walk of the tree).  A dummy under a dummy
     * comes from (5)(C), which made the outer one after the inner one: in
     * array order the inner one is sorted first. */
    for (uint32_t x = 1; x < t->n && !rc; x++)
        if (t->nd[x].msg == NIL && t->nd[x].first != NIL)
            rc = sort_children(t, x);
    for (uint32_t x = 1; x < t->n && !rc; x++)
        if (t->nd[x].msg != NIL && t->nd[x].first != NIL &&
            t->nd[t->nd[x].first].next != NIL)
            rc = sort_children(t, x);
    if (rc == 0)
        rc = sort_children(t, root);
    return rc;
}

/* ---- output ------------------------------------------------------------ */

static void put_num(const thr *t, imap_out *o, uint32_t x, bool uid)
{
    imap_out_uint(o, uid ? t->nd[x].kuid : t->nd[x].kseq);
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
    free(t.node_of);
    free(t.stack);
    free(t.kids);
    if (rc == 0 && o->err)
        rc = o->err;
    return rc;
}
