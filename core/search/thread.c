/* core/search/thread.c — THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256
 * section 3) over prepared keys (core/search/sort.h); the steps are numbered
 * as in the RFC. */
#include "core/search/search_internal.h"
#include "core/search/sort.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NIL UINT32_MAX

/* What threading reads of a message is in its node, so that walking the
 * tree touches nodes only (the set's entries are twice their size). */
typedef struct tnode {
    uint32_t msg;               /* index into set->m; NIL for a dummy */
    uint32_t parent, first, last, prev, next;
    int64_t kdate;              /* sort key: sent date, then num */
    uint32_t num;               /* the number to send, UID or sequence
                                   number: the two ascend together, so
                                   either is the sequence-number tie-break */
    uint32_t subj;              /* REFERENCES: the base subject's number
                                   (imap_sort_set.ids) with SUBJ_REPLY, NIL
                                   if empty */
} tnode;

#define SUBJ_REPLY (1u << 31)   /* subject numbers stay below 2^31 */

/* A child of the root, from (4) on: the root's list is read once into an
 * array of these, which (4), (5) and (6) sort and go through instead of
 * walking the list (a cache miss a thread, each time). */
typedef struct troot {
    int64_t date;               /* the node's sort key */
    uint32_t num;
    uint32_t node;              /* NIL: no longer the root's child */
    uint32_t subj;              /* its thread's, as tnode.subj */
    bool dummy;
} troot;

typedef struct thr {
    const imap_sort_set *s;
    bool uid;                   /* UIDs are sent, not sequence numbers */
    bool refs;                  /* REFERENCES: the set has ids */
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

/* Make x message msg. */
static void node_msg(const thr *t, tnode *x, uint32_t msg)
{
    const imap_sort_msg *m = &t->s->m[msg];
    x->msg = msg;
    x->kdate = m->date;
    x->num = t->uid ? m->uid : m->seq;
    x->subj = NIL;
    if (t->refs) {
        uint32_t sn = t->s->ids[m->ids_at];
        if (sn != IMAP_SORT_NO_ID)
            x->subj = sn | (m->reply ? SUBJ_REPLY : 0);
    }
}

static uint32_t node_new(thr *t, uint32_t msg)
{
    if (srch_grow(&t->nd, &t->cap, t->n + 1, sizeof *t->nd, 64) < 0)
        return NIL;
    tnode *x = &t->nd[t->n];
    *x = (tnode){ .msg = msg, .parent = NIL, .first = NIL, .last = NIL,
                  .prev = NIL, .next = NIL, .subj = NIL };
    if (msg != NIL)
        node_msg(t, x, msg);
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

/* The dummies under root, every one after the dummies below it (deepest
 * first), in *out (*n of them; the caller frees).  Only the dummies: a
 * walk of the whole tree is a cache miss per node, and most dummies are
 * the root's children, whose depth is known without a walk.  A dummy's
 * depth is found by going up to a node whose depth is known; every node
 * passed learns its own, so no node is climbed twice. */
static int dummies_deepest_first(thr *t, uint32_t root, uint32_t **out, size_t *n)
{
    size_t nd = 0, maxd = 0;
    uint32_t *depth = calloc(t->n, sizeof *depth);     /* 0: not known yet */
    uint32_t *ord = NULL, *count = NULL;
    int rc = -ENOMEM;
    if (!depth)
        return rc;
    depth[root] = 1;
    for (uint32_t x = 1; x < t->n; x++) {
        if (t->nd[x].msg != NIL)
            continue;
        nd++;
        /* up to a known depth, stacking the way */
        t->nstack = 0;
        uint32_t y = x;
        while (!depth[y]) {
            if (srch_grow(&t->stack, &t->capstack, t->nstack + 1, sizeof *t->stack, 256) < 0)
                goto out;
            t->stack[t->nstack++] = y;
            y = t->nd[y].parent;    /* every node is under root after (2) */
        }
        while (t->nstack) {
            uint32_t z = t->stack[--t->nstack];
            depth[z] = depth[t->nd[z].parent] + 1;
        }
        if (depth[x] > maxd)
            maxd = depth[x];
    }
    /* by depth, deepest first: a counting sort */
    if (!(ord = malloc((nd ? nd : 1) * sizeof *ord)) ||
        !(count = calloc(maxd + 2, sizeof *count)))
        goto out;
    for (uint32_t x = 1; x < t->n; x++)
        if (t->nd[x].msg == NIL)
            count[maxd - depth[x] + 1]++;
    for (size_t d = 1; d <= maxd + 1; d++)
        count[d] += count[d - 1];
    for (uint32_t x = 1; x < t->n; x++)
        if (t->nd[x].msg == NIL)
            ord[count[maxd - depth[x]]++] = x;
    *out = ord;
    *n = nd;
    ord = NULL;
    rc = 0;
out:
    free(ord);
    free(count);
    free(depth);
    return rc;
}

static int cmp_nodes(const void *a, const void *b, void *arg)
{
    const tnode *nd = arg;
    const tnode *x = &nd[*(const uint32_t *)a], *y = &nd[*(const uint32_t *)b];
    if (x->kdate != y->kdate)
        return x->kdate < y->kdate ? -1 : 1;
    return x->num < y->num ? -1 : x->num > y->num;
}

/* A big set of siblings is sorted by copies of their keys, side by side:
 * comparing in place reads two nodes from all over the array. */
typedef struct tkey {
    int64_t date;
    uint32_t num, node;
} tkey;

static int cmp_keys(const void *a, const void *b)
{
    const tkey *x = a, *y = b;
    if (x->date != y->date)
        return x->date < y->date ? -1 : 1;
    return x->num < y->num ? -1 : x->num > y->num;
}

#define SORT_BY_KEYS 64

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
    if (k > SORT_BY_KEYS && !sorted) {
        tkey *keys = malloc(k * sizeof *keys);
        if (!keys)
            return -ENOMEM;
        k = 0;
        for (uint32_t c = t->nd[p].first; c != NIL; c = t->nd[c].next)
            keys[k++] = (tkey){.date = t->nd[c].kdate, .num = t->nd[c].num, .node = c};
        qsort(keys, k, sizeof *keys, cmp_keys);
        for (size_t i = 0; i < k; i++) {
            t->nd[keys[i].node].prev = i ? keys[i - 1].node : NIL;
            t->nd[keys[i].node].next = i + 1 < k ? keys[i + 1].node : NIL;
        }
        t->nd[p].first = keys[0].node;
        t->nd[p].last = keys[k - 1].node;
        free(keys);
    } else if (k > 1 && !sorted) {
        /* one scratch for every call: most sets of siblings are small */
        if (srch_grow(&t->kids, &t->capkids, k, sizeof *t->kids, 64) < 0)
            return -ENOMEM;
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
        x->num = t->nd[x->first].num;
    }
    return 0;
}

/* The base subject a node's thread has ("either the current message or
 * its first child if the current message is a dummy"), as tnode.subj. */
static uint32_t thread_subj(const thr *t, uint32_t x)
{
    while (x != NIL && t->nd[x].msg == NIL)
        x = t->nd[x].first;
    return x == NIL ? NIL : t->nd[x].subj;
}

static int cmp_roots(const void *a, const void *b)
{
    const troot *x = a, *y = b;
    if (x->date != y->date)
        return x->date < y->date ? -1 : 1;
    return x->num < y->num ? -1 : x->num > y->num;
}

/* Put the root's children in the order of r (n entries, those with a
 * node), sorting r first unless it is in order already; r keeps those,
 * and their number is returned. */
static size_t root_order(thr *t, uint32_t root, troot *r, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (r[i].node != NIL)
            r[k++] = r[i];
    bool sorted = true;
    for (size_t i = 1; i < k && sorted; i++)
        sorted = cmp_roots(&r[i - 1], &r[i]) < 0;
    if (!sorted)
        qsort(r, k, sizeof *r, cmp_roots);
    uint32_t prev = NIL;
    for (size_t i = 0; i < k; i++) {
        tnode *x = &t->nd[r[i].node];
        x->prev = prev;
        x->next = NIL;
        if (prev != NIL)
            t->nd[prev].next = r[i].node;
        prev = r[i].node;
    }
    t->nd[root].first = k ? r[0].node : NIL;
    t->nd[root].last = prev;
    return k;
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
                node_msg(t, &t->nd[self], (uint32_t)i);
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

    /* (3) prune dummies, deepest first: a dummy's fate depends on its
     * children only once the dummies below it are pruned (the RFC's
     * recursion), and pruning never changes a shallower node's depth */
    uint32_t *ord;
    size_t nord;
    if ((rc = dummies_deepest_first(t, root, &ord, &nord)) < 0)
        return rc;
    for (size_t i = 0; i < nord; i++) {
        uint32_t x = ord[i];
        tnode *d = &t->nd[x];
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
     * child, after sorting its children); the dummies among them found
     * in array order, not by walking the root's list */
    for (uint32_t x = 1; x < t->n; x++)
        if (t->nd[x].msg == NIL && t->nd[x].parent == root &&
            (rc = sort_children(t, x)) < 0)
            return rc;
    size_t nroots = 0, caproots = 0;
    troot *r = NULL;
    /* in array order (a sequential read), then sorted */
    for (uint32_t x = 1; x < t->n; x++) {
        if (t->nd[x].parent != root)
            continue;
        if (srch_grow(&r, &caproots, nroots + 1, sizeof *r, 1024) < 0) {
            free(r);
            return -ENOMEM;
        }
        const tnode *nd = &t->nd[x];
        r[nroots++] = (troot){.date = nd->kdate, .num = nd->num, .node = x,
                              .subj = thread_subj(t, x), .dummy = nd->msg == NIL};
    }
    nroots = root_order(t, root, r, nroots);

    /* (5) gather the root's children by base subject: the subjects are
     * numbers too (imap_sort_set.ids), the table an array.  The root's
     * children are read once, in their order, into an array that (B) and
     * (C) go through: walking the list twice is two cache misses a thread.
     * (C) visits them in that order as the list would: it moves only the
     * current thread and the one in the table, which comes before it
     * (a later one enters the table in (B) only as a dummy, or as a
     * non-reply over a reply: the current one then joins it, and nothing
     * is moved in the list after the current one). */
    for (size_t i = 0; i < s->id_bound; i++)
        t->node_of[i] = NIL;
    /* (5)(B) one message per base subject; node_of holds indexes into r */
    for (uint32_t k = 0; k < nroots; k++) {
        if (r[k].subj == NIL)
            continue;       /* (ii) an empty thread subject */
        uint32_t *sl = &t->node_of[r[k].subj & ~SUBJ_REPLY];
        if (*sl == NIL) {
            *sl = k;
            continue;
        }
        const troot *in = &r[*sl];
        /* "if the message in the subject table is not a dummy, AND either
         * ... The current message is a dummy, OR The message in the
         * subject table is a reply or forward and the current message is
         * not." */
        if (!in->dummy &&
            (r[k].dummy || ((in->subj & SUBJ_REPLY) && !(r[k].subj & SUBJ_REPLY))))
            *sl = k;
    }
    /* (5)(C) merge threads with the same subject */
    for (uint32_t k = 0; k < nroots; k++) {
        if (r[k].subj == NIL)
            continue;
        troot *tin = &r[t->node_of[r[k].subj & ~SUBJ_REPLY]];
        if (tin == &r[k])
            continue;
        uint32_t x = r[k].node, in = tin->node;
        bool xd = r[k].dummy, id = tin->dummy;
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
            r[k].node = NIL;
        } else if (id || (!xd && (r[k].subj & SUBJ_REPLY) && !(tin->subj & SUBJ_REPLY))) {
            /* a child of the message in the subject table */
            unlink_node(t, x);
            link_node(t, in, x);
            r[k].node = NIL;
        } else {
            /* "create a new dummy message and make both the current
             * message and the message in the subject table children of
             * the dummy.  Then replace the message in the subject table
             * with the dummy message." */
            uint32_t d = node_new(t, NIL);
            if (d == NIL) {
                free(r);
                return -ENOMEM;
            }
            unlink_node(t, x);
            replace_node(t, in, d);
            link_node(t, d, in);
            link_node(t, d, x);
            tin->node = d;
            tin->dummy = true;
            r[k].node = NIL;
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
    /* the root's: a dummy's key is its first child's, as just sorted */
    if (rc == 0) {
        for (size_t k = 0; k < nroots; k++)
            if (r[k].node != NIL && r[k].dummy) {
                r[k].date = t->nd[r[k].node].kdate;
                r[k].num = t->nd[r[k].node].num;
            }
        nroots = root_order(t, root, r, nroots);
    }
    free(r);
    return rc;
}

/* ---- output ------------------------------------------------------------ */

static void put_num(const thr *t, imap_out *o, uint32_t x)
{
    imap_out_uint(o, t->nd[x].num);
}

/* The inside of the thread-list that starts at x: "3 6 (4 23)(44 7 96)"
 * (thread-members), or for a dummy its children's lists "(3)(5)". */
static int render_members(thr *t, imap_out *o, uint32_t x, unsigned depth)
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
                if ((rc = render_members(t, o, c, depth + 1)) < 0)
                    return rc;
                imap_out_lit(o, ")");
            }
            return 0;
        }
        put_num(t, o, x);
        if (nd->first == NIL)
            return 0;
        imap_out_lit(o, " ");
        if (t->nd[nd->first].next == NIL) {
            x = nd->first;
            continue;
        }
        for (uint32_t c = nd->first; c != NIL; c = t->nd[c].next) {
            imap_out_lit(o, "(");
            if ((rc = render_members(t, o, c, depth + 1)) < 0)
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
    thr t = { .s = s, .uid = uid, .refs = alg == IMAP_THREAD_REFERENCES && s->n };
    int rc = alg == IMAP_THREAD_REFERENCES ? references(&t) : orderedsubject(&t);
    for (uint32_t x = rc == 0 ? t.nd[0].first : NIL; x != NIL; x = t.nd[x].next) {
        if (x == t.nd[0].first)
            imap_out_lit(o, " ");
        imap_out_lit(o, "(");
        if ((rc = render_members(&t, o, x, 0)) < 0)
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
