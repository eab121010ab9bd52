/* core/search/search.c — SEARCH arguments to a program tree (the grammar of RFC
 * 9051 / RFC 3501 search keys, RFC 4731 RETURN options, RFC 7162 MODSEQ,
 * RFC 5182 "$"), the tree's ordering by cost, and the result helpers.
 * Evaluation is in search_eval.c, text handling in search_text.c. */
#include "core/search/search_internal.h"
#include "store/assert.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEF_MAX_DEPTH 32
#define DEF_MAX_KEYS 1000
#define DEF_MAX_RANGES 65536

enum { COST_INDEX = 0, COST_SAVED = 1, COST_CACHE = 2, COST_HEADER = 3,
       COST_BODY = 4, COST_TEXT = 5 };

typedef struct pstate {
    imap_search_limits lim;
    unsigned nkeys;
    const char *err;
    imap_search_prog *prog;
} pstate;

/* ---- nodes ----------------------------------------------------------- */

static void node_free(srch_node *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->nkids; i++)
        node_free(n->kids[i]);
    free(n->kids);
    switch (n->kind) {
    case SK_KEYWORD:
        free(n->u.kw.name);
        break;
    case SK_SEQSET:
    case SK_UIDSET:
        free(n->u.set.set.r);
        free(n->u.set.res);
        break;
    case SK_ENVELOPE:
    case SK_HEADER:
    case SK_BODY:
    case SK_TEXT:
        free(n->u.str.needle);
        free(n->u.str.name);
        sindex_query_free(n->u.str.ixq);
        break;
    default:
        break;
    }
    free(n);
}

static srch_node *node_new(srch_kind kind, unsigned cost)
{
    srch_node *n = calloc(1, sizeof *n);
    if (n) {
        n->kind = kind;
        n->cost = cost;
    }
    return n;
}

static int node_add_kid(srch_node *n, srch_node *kid)
{
    srch_node **k = realloc(n->kids, (n->nkids + 1) * sizeof *k);
    if (!k)
        return -ENOMEM;
    n->kids = k;
    n->kids[n->nkids++] = kid;
    return 0;
}

/* ---- argument helpers ---------------------------------------------- */

static int fail(pstate *ps, int rc, const char *why)
{
    if (!ps->err)
        ps->err = why;
    return rc;
}

/* An astring argument's bytes (NIL is the atom "NIL"). */
static bool arg_astring(const imap_arg *a, const char **s, size_t *len)
{
    switch (a->type) {
    case IMAP_ARG_ATOM:
    case IMAP_ARG_STRING:
    case IMAP_ARG_LITERAL:
        *s = a->s;
        *len = a->len;
        return true;
    case IMAP_ARG_NIL:
        *s = "NIL";
        *len = 3;
        return true;
    default:
        return false;
    }
}

static char *dup_bytes(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

static bool bytes_ieq(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

/* ---- keys ------------------------------------------------------------ */

typedef enum argkind {
    A_NONE, A_STRING, A_DATE, A_NUM, A_SET, A_KEYWORD, A_HEADER, A_NOT,
    A_OR, A_MODSEQ, A_NEW, A_OLD, A_INTERVAL, A_OBJECTID,
} argkind;

static const struct keydef {
    const char *name;
    srch_kind kind;
    argkind arg;
    uint32_t flag;          /* SK_FLAGS: the flag; SK_ENVELOPE: the field */
    bool want_set;          /* SK_FLAGS / SK_KEYWORD */
} keydefs[] = {
    { "ALL", SK_ALL, A_NONE, 0, false },
    { "ANSWERED", SK_FLAGS, A_NONE, STORE_F_ANSWERED, true },
    { "BCC", SK_ENVELOPE, A_STRING, ENV_BCC, false },
    { "BEFORE", SK_BEFORE, A_DATE, 0, false },
    { "BODY", SK_BODY, A_STRING, 0, false },
    { "CC", SK_ENVELOPE, A_STRING, ENV_CC, false },
    { "DELETED", SK_FLAGS, A_NONE, STORE_F_DELETED, true },
    { "DRAFT", SK_FLAGS, A_NONE, STORE_F_DRAFT, true },
    { "EMAILID", SK_EMAILID, A_OBJECTID, 0, false },
    { "FLAGGED", SK_FLAGS, A_NONE, STORE_F_FLAGGED, true },
    { "FROM", SK_ENVELOPE, A_STRING, ENV_FROM, false },
    { "HEADER", SK_HEADER, A_HEADER, 0, false },
    { "KEYWORD", SK_KEYWORD, A_KEYWORD, 0, true },
    { "LARGER", SK_LARGER, A_NUM, 0, false },
    { "MODSEQ", SK_MODSEQ, A_MODSEQ, 0, false },
    { "NEW", SK_AND, A_NEW, 0, false },
    { "NOT", SK_NOT, A_NOT, 0, false },
    { "OLD", SK_NOT, A_OLD, 0, false },
    { "OLDER", SK_OLDER, A_INTERVAL, 0, false },
    { "ON", SK_ON, A_DATE, 0, false },
    { "OR", SK_OR, A_OR, 0, false },
    { "RECENT", SK_RECENT, A_NONE, 0, false },
    /* RFC 8514 4.3: SAVEDATESUPPORTED "Matches all messages in the mailbox
     * when the underlying storage of that mailbox supports the save date
     * attribute": every mailbox of ours does (older messages without one
     * are searched by their internal date, see search_eval.c). */
    { "SAVEDATESUPPORTED", SK_ALL, A_NONE, 0, false },
    { "SAVEDBEFORE", SK_SAVEDBEFORE, A_DATE, 0, false },
    { "SAVEDON", SK_SAVEDON, A_DATE, 0, false },
    { "SAVEDSINCE", SK_SAVEDSINCE, A_DATE, 0, false },
    { "SEEN", SK_FLAGS, A_NONE, STORE_F_SEEN, true },
    { "SENTBEFORE", SK_SENTBEFORE, A_DATE, 0, false },
    { "SENTON", SK_SENTON, A_DATE, 0, false },
    { "SENTSINCE", SK_SENTSINCE, A_DATE, 0, false },
    { "SINCE", SK_SINCE, A_DATE, 0, false },
    { "SMALLER", SK_SMALLER, A_NUM, 0, false },
    { "SUBJECT", SK_ENVELOPE, A_STRING, ENV_SUBJECT, false },
    { "TEXT", SK_TEXT, A_STRING, 0, false },
    { "THREADID", SK_THREADID, A_OBJECTID, 0, false },
    { "TO", SK_ENVELOPE, A_STRING, ENV_TO, false },
    { "UID", SK_UIDSET, A_SET, 0, false },
    { "UNANSWERED", SK_FLAGS, A_NONE, STORE_F_ANSWERED, false },
    { "UNDELETED", SK_FLAGS, A_NONE, STORE_F_DELETED, false },
    { "UNDRAFT", SK_FLAGS, A_NONE, STORE_F_DRAFT, false },
    { "UNFLAGGED", SK_FLAGS, A_NONE, STORE_F_FLAGGED, false },
    { "UNKEYWORD", SK_KEYWORD, A_KEYWORD, 0, false },
    { "UNSEEN", SK_FLAGS, A_NONE, STORE_F_SEEN, false },
    { "YOUNGER", SK_YOUNGER, A_INTERVAL, 0, false },
};

/* Header fields the store cache keeps, in ENV_* order. */
static const char *const env_names[ENV_COUNT] = {
    "date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc",
    "in-reply-to", "message-id", "references",
};

static const struct { const char *name; uint32_t flag; } sysflags[] = {
    { "\\Answered", STORE_F_ANSWERED }, { "\\Flagged", STORE_F_FLAGGED },
    { "\\Deleted", STORE_F_DELETED }, { "\\Seen", STORE_F_SEEN },
    { "\\Draft", STORE_F_DRAFT },
};

static int parse_key(pstate *ps, const imap_arg *a, size_t n, size_t *i,
                     unsigned depth, srch_node **out);

static int set_from_atom(pstate *ps, const imap_arg *arg, srch_kind kind,
                         srch_node **out)
{
    if (arg->type != IMAP_ARG_ATOM)
        return fail(ps, -EINVAL, "sequence set expected");
    imap_seqset set = { 0 };
    bool dollar = false;
    int rc = imap_seqset_parse(arg->s, arg->len, ps->lim.max_ranges, &set,
                               &dollar);
    if (rc == -E2BIG)
        return fail(ps, rc, "sequence set too large");
    if (rc < 0)
        return fail(ps, rc == -ENOMEM ? rc : -EINVAL, "bad sequence set");
    srch_node *nd;
    if (dollar) {
        free(set.r);
        nd = node_new(SK_SAVED, COST_SAVED);
        if (!nd)
            return -ENOMEM;
        ps->prog->uses_saved = true;
        *out = nd;
        return 0;
    }
    nd = node_new(kind, COST_INDEX);
    if (!nd) {
        free(set.r);
        return -ENOMEM;
    }
    nd->u.set.set = set;        /* owned by the node now */
    *out = nd;
    return 0;
}

static int take_string(pstate *ps, const imap_arg *a, size_t n, size_t *i,
                       const char **s, size_t *len)
{
    if (*i >= n || !arg_astring(&a[*i], s, len))
        return fail(ps, -EINVAL, "string argument expected");
    (*i)++;
    return 0;
}

static int make_str_node(srch_kind kind, unsigned cost, const char *s,
                         size_t len, srch_node **out)
{
    srch_node *nd = node_new(kind, cost);
    if (!nd)
        return -ENOMEM;
    store_buf b = { 0 };
    int rc = srch_fold(s, len, &b);
    if (rc == 0)
        rc = store_buf_append(&b, "", 1);
    if (rc < 0) {
        free(b.data);
        free(nd);
        return rc;
    }
    nd->u.str.needle = (char *)b.data;
    nd->u.str.len = b.len - 1;
    nd->u.str.field = -1;
    *out = nd;
    return 0;
}

/* The argument list every key parser below takes: the keys' arguments
 * a[0..n), the next one at *i (advanced past what the key consumes). */

/* HEADER name value: one of the envelope's fields is answered from the
 * cache (SK_ENVELOPE), any other header from the message (SK_HEADER). */
static int key_header(pstate *ps, const imap_arg *a, size_t n, size_t *i,
                      srch_node **out)
{
    const char *name, *s;
    size_t nlen, len;
    int rc;
    if ((rc = take_string(ps, a, n, i, &name, &nlen)) ||
        (rc = take_string(ps, a, n, i, &s, &len)))
        return rc;
    if (nlen == 0 || memchr(name, ':', nlen))
        return fail(ps, -EINVAL, "bad header field name");
    int field = -1;
    for (int k = 0; k < ENV_COUNT; k++)
        if (bytes_ieq(name, nlen, env_names[k]))
            field = k;
    srch_node *nd;
    if (field >= 0) {
        if ((rc = make_str_node(SK_ENVELOPE, COST_CACHE, s, len, &nd)))
            return rc;
        nd->u.str.field = field;
    } else {
        if ((rc = make_str_node(SK_HEADER, COST_HEADER, s, len, &nd)))
            return rc;
        if (!(nd->u.str.name = dup_bytes(name, nlen))) {
            node_free(nd);
            return -ENOMEM;
        }
        nd->u.str.name_len = nlen;
    }
    *out = nd;
    return 0;
}

/* BEFORE/ON/SINCE and their SENT forms: a date (the SENT ones read the
 * Date: header from the cache, the others the index). */
static int key_date(pstate *ps, const struct keydef *kd, const imap_arg *a,
                    size_t n, size_t *i, srch_node **out)
{
    int64_t day;
    if (*i >= n || (a[*i].type != IMAP_ARG_ATOM &&
                    a[*i].type != IMAP_ARG_STRING) ||
        srch_parse_imap_date(a[*i].s, a[*i].len, &day) < 0)
        return fail(ps, -EINVAL, "bad date");
    (*i)++;
    bool sent = kd->kind == SK_SENTBEFORE || kd->kind == SK_SENTON ||
                kd->kind == SK_SENTSINCE;
    bool saved = kd->kind == SK_SAVEDBEFORE || kd->kind == SK_SAVEDON ||
                 kd->kind == SK_SAVEDSINCE;     /* read from the log */
    srch_node *nd = node_new(kd->kind, sent || saved ? COST_CACHE : COST_INDEX);
    if (!nd)
        return -ENOMEM;
    nd->u.day = day;
    *out = nd;
    return 0;
}

/* EMAILID / THREADID objectid (RFC 8474 7: objectid = 1*255(ALPHA / DIGIT
 * / "_" / "-")); anything else is a syntax error.  An id the store never
 * made matches nothing (uid 0, thread 0). */
static int key_objectid(pstate *ps, const struct keydef *kd, const imap_arg *a,
                        size_t n, size_t *i, srch_node **out)
{
    if (*i >= n || (a[*i].type != IMAP_ARG_ATOM && a[*i].type != IMAP_ARG_STRING) ||
        a[*i].len == 0 || a[*i].len > 255)
        return fail(ps, -EINVAL, "object id expected");
    const char *s = a[*i].s;
    for (size_t k = 0; k < a[*i].len; k++)
        if (!((s[k] >= 'a' && s[k] <= 'z') || (s[k] >= 'A' && s[k] <= 'Z') ||
              (s[k] >= '0' && s[k] <= '9') || s[k] == '_' || s[k] == '-'))
            return fail(ps, -EINVAL, "bad object id");
    (*i)++;
    srch_node *nd = node_new(kd->kind, COST_CACHE);
    if (!nd)
        return -ENOMEM;
    if (kd->kind == SK_EMAILID && store_emailid_parse(s, &nd->u.emailid) < 0)
        nd->u.emailid.email_uid = 0;
    if (kd->kind == SK_THREADID && store_threadid_parse(s, &nd->u.threadid) < 0)
        nd->u.threadid = 0;
    *out = nd;
    return 0;
}

/* ATOM-CHAR (RFC 9051 9): any CHAR but atom-specials. */
static bool atom_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("(){%*\"\\]", c);
}

/* RFC 7162 7: entry-flag-name = DQUOTE "/flags/" attr-flag DQUOTE, and
 * attr-flag is a system flag, "\" atom, or a keyword atom. */
static bool modseq_entry_name(const imap_arg *a)
{
    if (a->type != IMAP_ARG_STRING && a->type != IMAP_ARG_LITERAL)
        return false;
    const char *p = a->s;
    size_t len = a->len;
    if (len < 7 || strncasecmp(p, "/flags/", 7))
        return false;
    p += 7;
    len -= 7;
    if (len && *p == '\\')
        p++, len--;
    if (!len)
        return false;
    for (size_t k = 0; k < len; k++)
        if (!atom_char((unsigned char)p[k]))
            return false;
    return true;
}

/* MODSEQ ["/flags/name" priv|shared|all] n: this store keeps one modseq
 * per message, so RFC 7162 says to ignore the entry. */
static int key_modseq(pstate *ps, const imap_arg *a, size_t n, size_t *i,
                      srch_node **out)
{
    uint64_t num;
    if (*i < n && imap_arg_number(&a[*i], &num) < 0) {
        if (!modseq_entry_name(&a[*i]))
            return fail(ps, -EINVAL, "bad MODSEQ entry name (\"/flags/<flag>\" expected)");
        (*i)++;
        if (*i >= n || !(imap_arg_is(&a[*i], "priv") ||
                         imap_arg_is(&a[*i], "shared") ||
                         imap_arg_is(&a[*i], "all")))
            return fail(ps, -EINVAL, "bad MODSEQ entry type");
        (*i)++;
    }
    if (*i >= n || imap_arg_number(&a[*i], &num) < 0 || num > INT64_MAX)
        return fail(ps, -EINVAL, "mod-sequence expected");
    (*i)++;
    srch_node *nd = node_new(SK_MODSEQ, COST_INDEX);
    if (!nd)
        return -ENOMEM;
    nd->u.num = num;
    ps->prog->uses_modseq = true;
    *out = nd;
    return 0;
}

/* KEYWORD/UNKEYWORD flag: a system flag by its bit, any other keyword by
 * name; \Recent is no keyword but the RECENT (or, negated, OLD) test. */
static int key_keyword(pstate *ps, const struct keydef *kd, const imap_arg *a,
                       size_t n, size_t *i, srch_node **out)
{
    const char *s;
    size_t len;
    int rc;
    if ((rc = take_string(ps, a, n, i, &s, &len)))
        return rc;
    if (len == 0)
        return fail(ps, -EINVAL, "keyword expected");
    srch_node *nd;
    if (s[0] == '\\' && bytes_ieq(s, len, "\\Recent")) {
        nd = node_new(SK_RECENT, COST_INDEX);
        if (!nd)
            return -ENOMEM;
        if (!kd->want_set) {
            srch_node *not = node_new(SK_NOT, COST_INDEX);
            if (!not || node_add_kid(not, nd)) {
                free(not);
                free(nd);
                return -ENOMEM;
            }
            nd = not;
        }
        *out = nd;
        return 0;
    }
    nd = node_new(SK_KEYWORD, COST_INDEX);
    if (!nd)
        return -ENOMEM;
    nd->u.kw.want_set = kd->want_set;
    if (s[0] == '\\') {
        for (size_t k = 0; k < sizeof sysflags / sizeof sysflags[0]; k++)
            if (bytes_ieq(s, len, sysflags[k].name))
                nd->u.kw.sysflag = sysflags[k].flag;
    } else if (!(nd->u.kw.name = dup_bytes(s, len))) {
        free(nd);
        return -ENOMEM;
    }
    nd->u.kw.idx = -1;
    *out = nd;
    return 0;
}

/* Append a child made here to nd; on failure both are freed. */
static int add_new_kid(srch_node *nd, srch_node *kid)
{
    if (!kid || node_add_kid(nd, kid)) {
        free(kid);
        node_free(nd);
        return -ENOMEM;
    }
    return 0;
}

/* NOT key, OR key key, and NEW / OLD (spelled as RECENT UNSEEN and NOT
 * RECENT): the nodes with children.  depth is the nesting of this key. */
static int key_compound(pstate *ps, const struct keydef *kd, const imap_arg *a,
                        size_t n, size_t *i, unsigned depth, srch_node **out)
{
    unsigned nk = kd->arg == A_NOT ? 1 : kd->arg == A_OR ? 2 : 0;
    if (nk && depth + 1 > ps->lim.max_depth)
        return fail(ps, -E2BIG, "search keys nested too deeply");
    srch_node *nd = node_new(kd->kind, COST_INDEX);
    if (!nd)
        return -ENOMEM;
    for (unsigned k = 0; k < nk; k++) {
        srch_node *kid = NULL;
        int rc;
        if ((rc = parse_key(ps, a, n, i, depth + 1, &kid)) ||
            (rc = node_add_kid(nd, kid))) {
            node_free(kid);
            node_free(nd);
            return rc;
        }
    }
    if (kd->arg == A_NEW || kd->arg == A_OLD) {
        /* NEW = RECENT UNSEEN (an AND); OLD = NOT RECENT. */
        if (add_new_kid(nd, node_new(SK_RECENT, COST_INDEX)))
            return -ENOMEM;
        if (kd->arg == A_NEW) {
            srch_node *u = node_new(SK_FLAGS, COST_INDEX);
            if (u) {
                u->u.flags.mask = STORE_F_SEEN;
                u->u.flags.want_set = false;
            }
            if (add_new_kid(nd, u))
                return -ENOMEM;
        }
    }
    *out = nd;
    return 0;
}

/* The key kd (its name just consumed) with its arguments: the simple
 * kinds here, the others in the key_* parsers above. */
static int parse_arg_key(pstate *ps, const struct keydef *kd,
                         const imap_arg *a, size_t n, size_t *i,
                         unsigned depth, srch_node **out)
{
    srch_node *nd = NULL;
    const char *s;
    size_t len;
    uint64_t num;
    int rc;

    switch (kd->arg) {
    case A_NONE:
        nd = node_new(kd->kind, COST_INDEX);
        if (!nd)
            return -ENOMEM;
        if (kd->kind == SK_FLAGS) {
            nd->u.flags.mask = kd->flag;
            nd->u.flags.want_set = kd->want_set;
        }
        break;

    case A_STRING:
        if ((rc = take_string(ps, a, n, i, &s, &len)))
            return rc;
        if ((rc = make_str_node(kd->kind, kd->kind == SK_ENVELOPE ? COST_CACHE
                                : kd->kind == SK_BODY ? COST_BODY : COST_TEXT,
                                s, len, &nd)))
            return rc;
        if (kd->kind == SK_ENVELOPE)
            nd->u.str.field = (int)kd->flag;
        break;

    case A_NUM:
        if (*i >= n || imap_arg_number(&a[*i], &num) < 0)
            return fail(ps, -EINVAL, "number expected");
        (*i)++;
        nd = node_new(kd->kind, COST_INDEX);
        if (!nd)
            return -ENOMEM;
        nd->u.num = num;
        break;

    case A_INTERVAL:
        /* RFC 5032 3: ( "OLDER" / "YOUNGER" ) SP nz-number; an interval
         * beyond 2^32 seconds (136 years) would only reach before the
         * epoch, so nz-number's range is the one we take */
        if (*i >= n || imap_arg_number(&a[*i], &num) < 0 || num == 0 ||
            num > UINT32_MAX)
            return fail(ps, -EINVAL, "interval expected (seconds, nz-number)");
        (*i)++;
        nd = node_new(kd->kind, COST_INDEX);
        if (!nd)
            return -ENOMEM;
        nd->u.num = num;
        break;

    case A_SET:
        if (*i >= n)
            return fail(ps, -EINVAL, "sequence set expected");
        if ((rc = set_from_atom(ps, &a[*i], kd->kind, &nd)))
            return rc;
        (*i)++;
        break;

    case A_HEADER:
        return key_header(ps, a, n, i, out);
    case A_DATE:
        return key_date(ps, kd, a, n, i, out);
    case A_OBJECTID:
        return key_objectid(ps, kd, a, n, i, out);
    case A_MODSEQ:
        return key_modseq(ps, a, n, i, out);
    case A_KEYWORD:
        return key_keyword(ps, kd, a, n, i, out);
    case A_NOT:
    case A_OR:
    case A_NEW:
    case A_OLD:
        return key_compound(ps, kd, a, n, i, depth, out);
    }
    *out = nd;
    return 0;
}

static int parse_key(pstate *ps, const imap_arg *a, size_t n, size_t *i,
                     unsigned depth, srch_node **out)
{
    if (*i >= n)
        return fail(ps, -EINVAL, "search key expected");
    if (++ps->nkeys > ps->lim.max_keys)
        return fail(ps, -E2BIG, "too many search keys");
    const imap_arg *k = &a[(*i)++];
    int rc;

    if (k->type == IMAP_ARG_LIST) {
        if (k->nlist == 0)
            return fail(ps, -EINVAL, "empty search key list");
        if (depth + 1 > ps->lim.max_depth)
            return fail(ps, -E2BIG, "search keys nested too deeply");
        srch_node *nd = node_new(SK_AND, COST_INDEX);
        if (!nd)
            return -ENOMEM;
        size_t j = 0;
        while (j < k->nlist) {
            srch_node *kid = NULL;
            if ((rc = parse_key(ps, k->list, k->nlist, &j, depth + 1, &kid)) ||
                (rc = node_add_kid(nd, kid))) {
                node_free(kid);
                node_free(nd);
                return rc;
            }
        }
        *out = nd;
        return 0;
    }
    if (k->type != IMAP_ARG_ATOM || k->len == 0)
        return fail(ps, -EINVAL, "search key expected");
    char c = k->s[0];
    if ((c >= '0' && c <= '9') || c == '*' || c == '$')
        return set_from_atom(ps, k, SK_SEQSET, out);
    for (size_t d = 0; d < sizeof keydefs / sizeof keydefs[0]; d++)
        if (bytes_ieq(k->s, k->len, keydefs[d].name))
            return parse_arg_key(ps, &keydefs[d], a, n, i, depth, out);
    return fail(ps, -EINVAL, "unknown search key");
}

/* ---- ordering by cost -------------------------------------------------- */

/* Fold nested ANDs into their parent, drop ALL from ANDs with other keys,
 * NOT NOT x -> x, and sort the children of AND and OR cheapest first
 * (stable, so equal costs keep the client's order).  Sets each node's cost
 * to the most expensive key it may evaluate. */
static srch_node *optimize(srch_node *n)
{
    for (size_t i = 0; i < n->nkids; i++)
        n->kids[i] = optimize(n->kids[i]);

    if (n->kind == SK_NOT && n->kids[0]->kind == SK_NOT) {
        srch_node *inner = n->kids[0], *x = inner->kids[0];
        inner->nkids = 0;
        node_free(inner);
        n->nkids = 0;
        node_free(n);
        return x;
    }
    if (n->kind == SK_AND) {
        size_t total = 0;
        for (size_t i = 0; i < n->nkids; i++)
            total += n->kids[i]->kind == SK_AND ? n->kids[i]->nkids : 1;
        if (total != n->nkids) {
            srch_node **k = malloc(total * sizeof *k);
            if (k) {    /* on failure keep the nesting: still correct */
                size_t w = 0;
                for (size_t i = 0; i < n->nkids; i++) {
                    srch_node *c = n->kids[i];
                    if (c->kind == SK_AND) {
                        memcpy(k + w, c->kids, c->nkids * sizeof *k);
                        w += c->nkids;
                        c->nkids = 0;
                        node_free(c);
                    } else {
                        k[w++] = c;
                    }
                }
                free(n->kids);
                n->kids = k;
                n->nkids = w;
            }
        }
        /* ALL adds nothing to an AND with other keys. */
        size_t w = 0, nall = 0;
        for (size_t i = 0; i < n->nkids; i++)
            nall += n->kids[i]->kind == SK_ALL;
        for (size_t i = 0; i < n->nkids; i++) {
            bool drop = n->kids[i]->kind == SK_ALL &&
                        (nall < n->nkids || w > 0);
            if (drop)
                node_free(n->kids[i]);
            else
                n->kids[w++] = n->kids[i];
        }
        n->nkids = w;
        if (n->nkids == 1) {
            srch_node *x = n->kids[0];
            n->nkids = 0;
            node_free(n);
            return x;
        }
    }
    if (n->nkids) {
        /* insertion sort: few children, stable */
        for (size_t i = 1; i < n->nkids; i++) {
            srch_node *x = n->kids[i];
            size_t j = i;
            while (j > 0 && n->kids[j - 1]->cost > x->cost) {
                n->kids[j] = n->kids[j - 1];
                j--;
            }
            n->kids[j] = x;
        }
        unsigned c = 0;
        for (size_t i = 0; i < n->nkids; i++)
            if (n->kids[i]->cost > c)
                c = n->kids[i]->cost;
        n->cost = c;
    }
    return n;
}

/* ---- entry points ---------------------------------------------------- */

static void limits_init(pstate *ps, const imap_search_limits *lim)
{
    ps->lim.max_depth = lim && lim->max_depth ? lim->max_depth : DEF_MAX_DEPTH;
    ps->lim.max_keys = lim && lim->max_keys ? lim->max_keys : DEF_MAX_KEYS;
    ps->lim.max_ranges = lim && lim->max_ranges ? lim->max_ranges
                                                 : DEF_MAX_RANGES;
}

static int parse_program(pstate *ps, const imap_arg *a, size_t n, size_t i)
{
    if (i >= n)
        return fail(ps, -EINVAL, "search key expected");
    srch_node *root = node_new(SK_AND, COST_INDEX);
    if (!root)
        return -ENOMEM;
    while (i < n) {
        srch_node *kid = NULL;
        int rc = parse_key(ps, a, n, &i, 0, &kid);
        if (!rc)
            rc = node_add_kid(root, kid);
        if (rc) {
            node_free(kid);
            node_free(root);
            return rc;
        }
    }
    ps->prog->root = optimize(root);
    return 0;
}

static int parse_common(const imap_arg *args, size_t nargs,
                        const imap_search_limits *lim, bool full,
                        imap_search_prog **out, const char **err)
{
    pstate ps = { 0 };
    limits_init(&ps, lim);
    int rc = 0;
    bool charset_ok = true;
    size_t i = 0;

    *out = NULL;
    if (!(ps.prog = calloc(1, sizeof *ps.prog)))
        return -ENOMEM;

    if (full && i < nargs && imap_arg_is(&args[i], "RETURN")) {
        i++;
        if (i >= nargs || args[i].type != IMAP_ARG_LIST) {
            rc = fail(&ps, -EINVAL, "RETURN needs a list of options");
            goto out;
        }
        ps.prog->has_return = true;
        const char *why = NULL;
        if ((rc = imap_search_parse_return(&args[i++], &ps.prog->ret, &why))) {
            rc = fail(&ps, rc, why);
            goto out;
        }
    }
    if (full && i < nargs && imap_arg_is(&args[i], "CHARSET")) {
        const char *cs;
        size_t cslen;
        i++;
        if (i >= nargs || !arg_astring(&args[i], &cs, &cslen)) {
            rc = fail(&ps, -EINVAL, "CHARSET needs a name");
            goto out;
        }
        i++;
        charset_ok = imap_search_charset_ok(cs, cslen);
    }
    if ((rc = parse_program(&ps, args, nargs, i)))
        goto out;
    /* A syntax error outranks the charset: BAD before NO. */
    if (!charset_ok)
        rc = fail(&ps, IMAP_SEARCH_EBADCHARSET, "unsupported charset");
out:
    if (rc) {
        imap_search_free(ps.prog);
        if (err)
            *err = ps.err ? ps.err : "out of memory";
        return rc;
    }
    *out = ps.prog;
    return 0;
}

int imap_search_parse(const imap_arg *args, size_t nargs,
                      const imap_search_limits *lim,
                      imap_search_prog **out, const char **err)
{
    return parse_common(args, nargs, lim, true, out, err);
}

int imap_search_parse_keys(const imap_arg *args, size_t nargs,
                           const imap_search_limits *lim,
                           imap_search_prog **out, const char **err)
{
    return parse_common(args, nargs, lim, false, out, err);
}

/* partial-range-first = nz-number ":" nz-number
 * partial-range-last  = MINUS nz-number ":" MINUS nz-number  (RFC 9394)
 * nz-number being a 32-bit number (RFC 9051 9: "Unsigned 32-bit"). */
static bool parse_partial_end(const char *p, size_t n, int64_t *v)
{
    bool neg = n && p[0] == '-';
    if (neg)
        p++, n--;
    if (n == 0 || n > 10 || p[0] == '0')
        return false;
    uint64_t x = 0;
    for (size_t k = 0; k < n; k++) {
        if (p[k] < '0' || p[k] > '9')
            return false;
        x = x * 10 + (uint64_t)(p[k] - '0');
    }
    if (x > UINT32_MAX)
        return false;
    *v = neg ? -(int64_t)x : (int64_t)x;
    return true;
}

int imap_search_parse_return(const imap_arg *l, imap_search_ret *out,
                             const char **err)
{
    static const struct { const char *name; unsigned bit; } opts[] = {
        { "MIN", IMAP_SEARCH_RET_MIN }, { "MAX", IMAP_SEARCH_RET_MAX },
        { "ALL", IMAP_SEARCH_RET_ALL }, { "COUNT", IMAP_SEARCH_RET_COUNT },
        { "SAVE", IMAP_SEARCH_RET_SAVE }, { "PARTIAL", IMAP_SEARCH_RET_PARTIAL },
        { "UPDATE", IMAP_SEARCH_RET_UPDATE }, { "CONTEXT", IMAP_SEARCH_RET_CONTEXT },
    };
    memset(out, 0, sizeof *out);
    if (l->type != IMAP_ARG_LIST) {
        *err = "RETURN needs a list of options";
        return -EINVAL;
    }
    for (size_t j = 0; j < l->nlist; j++) {
        unsigned bit = 0;
        for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++)
            if (imap_arg_is(&l->list[j], opts[k].name))
                bit = opts[k].bit;
        if (!bit) {
            *err = "unknown RETURN option";
            return -EINVAL;
        }
        if (bit == IMAP_SEARCH_RET_UPDATE && (out->opts & bit)) {
            *err = "UPDATE given twice";
            return -EINVAL;
        }
        if (bit == IMAP_SEARCH_RET_PARTIAL) {
            /* RFC 5267 4.4: "A single command MUST NOT contain more than
             * one PARTIAL or ALL search return option" */
            if (out->opts & IMAP_SEARCH_RET_PARTIAL) {
                *err = "PARTIAL given twice";
                return -EINVAL;
            }
            const imap_arg *r = ++j < l->nlist ? &l->list[j] : NULL;
            const char *colon = r && r->type == IMAP_ARG_ATOM
                                ? memchr(r->s, ':', r->len) : NULL;
            if (!colon ||
                !parse_partial_end(r->s, (size_t)(colon - r->s), &out->partial_lo) ||
                !parse_partial_end(colon + 1, r->len - (size_t)(colon - r->s) - 1,
                                   &out->partial_hi) ||
                (out->partial_lo < 0) != (out->partial_hi < 0)) {
                *err = "PARTIAL needs a range: n:m or -n:-m";
                return -EINVAL;
            }
        }
        out->opts |= bit;
    }
    if ((out->opts & IMAP_SEARCH_RET_ALL) && (out->opts & IMAP_SEARCH_RET_PARTIAL)) {
        *err = "ALL and PARTIAL exclude each other";
        return -EINVAL;
    }
    /* RFC 4731: an empty list "is equivalent to (ALL)"; the CONTEXT hint
     * asks for nothing of its own, so alone it counts as empty (as in
     * Dovecot), while UPDATE alone asks for the updates only */
    if (!(out->opts & ~IMAP_SEARCH_RET_CONTEXT))
        out->opts |= IMAP_SEARCH_RET_ALL;
    return 0;
}

void imap_search_partial_slice(const imap_search_ret *r, size_t n,
                               size_t *from, size_t *to)
{
    int64_t lo = r->partial_lo, hi = r->partial_hi;
    if (lo < 0) {
        lo = -lo;
        hi = -hi;
    }
    if (lo > hi) {      /* "A range 500:400 is the same as 400:500." */
        int64_t t = lo;
        lo = hi;
        hi = t;
    }
    /* lo..hi (1-based, 1 <= lo <= hi) counted from the first result, or,
     * for a negative range, from the last: -1 is the last result */
    size_t a = (size_t)lo, b = (size_t)hi;
    if (r->partial_lo > 0) {
        *from = a - 1 < n ? a - 1 : n;
        *to = b < n ? b : n;
    } else {
        *from = b < n ? n - b : 0;
        *to = a <= n ? n - a + 1 : 0;
    }
    if (*to < *from)
        *to = *from;
}

size_t imap_search_out_set(imap_out *o, const uint32_t *nums, size_t start,
                           size_t i, size_t end, size_t max)
{
    for (size_t k = 0; i < end && k < max; k++) {
        size_t j = i;
        while (j + 1 < end && nums[j + 1] == nums[j] + 1)
            j++;
        if (i > start)
            imap_out_lit(o, ",");
        imap_out_uint(o, nums[i]);
        if (j > i) {
            imap_out_lit(o, ":");
            imap_out_uint(o, nums[j]);
        }
        i = j + 1;
    }
    return i;
}

/* ---- freezing (contexts) ------------------------------------------------ */

/* Append [lo, hi] to r (n, cap), merging with the last range when they
 * touch; ranges come ascending. */
static int ranges_add(imap_range **r, size_t *n, size_t *cap, uint32_t lo, uint32_t hi)
{
    if (*n && (*r)[*n - 1].hi != UINT32_MAX && (*r)[*n - 1].hi + 1 >= lo) {
        if (hi > (*r)[*n - 1].hi)
            (*r)[*n - 1].hi = hi;
        return 0;
    }
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 8;
        imap_range *x = realloc(*r, c * sizeof *x);
        if (!x)
            return -ENOMEM;
        *r = x;
        *cap = c;
    }
    (*r)[(*n)++] = (imap_range){ lo, hi };
    return 0;
}

static int freeze_node(srch_node *n, const imap_search_view *v)
{
    int rc;
    for (size_t i = 0; i < n->nkids; i++)
        if ((rc = freeze_node(n->kids[i], v)))
            return rc;
    imap_range *r = NULL;
    size_t nr = 0, cap = 0;
    rc = 0;
    switch (n->kind) {
    case SK_SEQSET:
    case SK_UIDSET: {
        uint32_t star = n->kind == SK_SEQSET ? v->count
                        : v->count ? v->uids[v->count - 1] : 0;
        imap_range *res = n->u.set.set.n ? malloc(n->u.set.set.n * sizeof *res) : NULL;
        if (n->u.set.set.n && !res)
            return -ENOMEM;
        size_t nres = n->u.set.set.n ? imap_seqset_resolve(&n->u.set.set, star, res) : 0;
        for (size_t k = 0; k < nres && !rc; k++) {
            if (n->kind == SK_UIDSET) {
                rc = ranges_add(&r, &nr, &cap, res[k].lo, res[k].hi);
                continue;
            }
            /* sequence numbers -> the UIDs they name in v */
            uint32_t hi = res[k].hi < v->count ? res[k].hi : v->count;
            for (uint32_t seq = res[k].lo; seq >= 1 && seq <= hi && !rc; seq++)
                rc = ranges_add(&r, &nr, &cap, v->uids[seq - 1], v->uids[seq - 1]);
        }
        free(res);
        break;
    }
    case SK_SAVED:
        for (size_t k = 0; v->saved && k < v->nsaved && !rc; k++)
            rc = ranges_add(&r, &nr, &cap, v->saved[k], v->saved[k]);
        break;
    default:
        return 0;
    }
    if (rc) {
        free(r);
        return rc;
    }
    if (n->kind != SK_SAVED) {
        free(n->u.set.set.r);
        free(n->u.set.res);
    }
    memset(&n->u.set, 0, sizeof n->u.set);
    n->kind = SK_UIDSET;
    n->cost = COST_INDEX;
    n->u.set.res = r;
    n->u.set.nres = nr;
    n->u.set.resolved = n->u.set.frozen = true;
    return 0;
}

int imap_search_freeze(imap_search_prog *p, const imap_search_view *v)
{
    return p->root ? freeze_node(p->root, v) : 0;
}

bool imap_search_charset_ok(const char *name, size_t len)
{
    return bytes_ieq(name, len, "UTF-8") || bytes_ieq(name, len, "US-ASCII");
}

void imap_search_free(imap_search_prog *p)
{
    if (!p)
        return;
    node_free(p->root);
    sindex_close(p->ix);        /* after the queries that use it */
    store_fault_free(p->fault);
    free(p);
}

void imap_search_yield_io(imap_search_prog *p, bool on)
{
    p->io_yield = on;
}

store_fault *imap_search_take_fault(imap_search_prog *p, uint32_t *seq)
{
    store_fault *f = p->fault;
    RM_ASSERT(f);       /* after a run that returned -EWOULDBLOCK */
    p->fault = NULL;
    *seq = p->fault_seq;
    p->faulted_seq = p->fault_seq;
    p->faulted_what = p->fault_what;
    return f;
}

bool imap_search_has_return(const imap_search_prog *p) { return p->has_return; }
unsigned imap_search_return(const imap_search_prog *p) { return p->ret.opts; }
const imap_search_ret *imap_search_return_opts(const imap_search_prog *p) { return &p->ret; }
bool imap_search_uses_modseq(const imap_search_prog *p) { return p->uses_modseq; }
bool imap_search_uses_saved(const imap_search_prog *p) { return p->uses_saved; }

/* ---- results --------------------------------------------------------- */

void imap_search_result_free(imap_search_result *res)
{
    free(res->seqs);
    free(res->uids);
    free(res->modseqs);
    memset(res, 0, sizeof *res);
}

/* MIN and/or MAX without ALL or COUNT: only those messages are "returned"
 * (RFC 4731 3.2, RFC 5182 2.4). */
static bool only_min_max(const imap_search_prog *p)
{
    unsigned r = p->ret.opts;
    return !(r & IMAP_SEARCH_RET_PARTIAL) && (r & (IMAP_SEARCH_RET_MIN | IMAP_SEARCH_RET_MAX)) &&
           !(r & (IMAP_SEARCH_RET_ALL | IMAP_SEARCH_RET_COUNT));
}

uint64_t imap_search_result_modseq(const imap_search_prog *p,
                                   const imap_search_result *res)
{
    if (!p->uses_modseq || !res->n || !res->modseqs)
        return 0;
    if (only_min_max(p)) {
        uint64_t m = 0;
        if (p->ret.opts & IMAP_SEARCH_RET_MIN)
            m = res->modseqs[0];
        if ((p->ret.opts & IMAP_SEARCH_RET_MAX) && res->modseqs[res->n - 1] > m)
            m = res->modseqs[res->n - 1];
        return m;
    }
    uint64_t m = 0;
    for (size_t i = 0; i < res->n; i++)
        if (res->modseqs[i] > m)
            m = res->modseqs[i];
    return m;
}

int imap_search_saved_uids(const imap_search_prog *p,
                           const imap_search_result *res, store_uidlist *out)
{
    unsigned r = p->ret.opts;
    size_t from = 0, to = res->n;
    /* With PARTIAL, $ holds the messages the range returned, as with MIN
     * or MAX it holds those (RFC 5182 2.4): a client paging with
     * "RETURN (SAVE PARTIAL n:m)" then FETCHes $ for that page. */
    if (r & IMAP_SEARCH_RET_PARTIAL)
        imap_search_partial_slice(&p->ret, res->n, &from, &to);
    size_t want = to - from;
    if (only_min_max(p) && res->n)
        want = (r & IMAP_SEARCH_RET_MIN) && (r & IMAP_SEARCH_RET_MAX)
               && res->n > 1 ? 2 : 1;
    free(out->uids);
    memset(out, 0, sizeof *out);
    if (!want)
        return 0;
    if (!(out->uids = malloc(want * sizeof *out->uids)))
        return -ENOMEM;
    out->cap = want;
    if (!only_min_max(p)) {
        memcpy(out->uids, res->uids + from, want * sizeof *out->uids);
    } else if (want == 2) {
        out->uids[0] = res->uids[0];
        out->uids[1] = res->uids[res->n - 1];
    } else {
        out->uids[0] = (r & IMAP_SEARCH_RET_MIN) ? res->uids[0]
                                                 : res->uids[res->n - 1];
    }
    out->n = want;
    return 0;
}
