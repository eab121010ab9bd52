/* tools/migrate/mig_sync.c — copying (or comparing) one mailbox.
 *
 * The plan comes from two listings in UID order: the source's
 * `UID FETCH 1:* (UID FLAGS RFC822.SIZE)` and the copy's snapshot.  A merge
 * of the two says what to do, and the copy itself, not the state file, is
 * the record of what was copied: a run killed at any point leaves appended
 * batches durable (each store_append is atomic) and the next run's plan
 * simply does not contain them.
 *   - source UID >= the copy's UIDNEXT: fetched and appended with that UID;
 *   - in both, flags or keywords differ: set to the source's;
 *   - in the copy only, below the source's UIDNEXT: expunged at the source
 *     since the last run, expunged here;
 *   - in the copy only, at or above the source's UIDNEXT: delivered here,
 *     not at the source (after a cut-over): kept and reported;
 *   - at the source only, below the copy's UIDNEXT: the copy can no longer
 *     take that UID (UIDs only ascend): reported as a difference;
 *   - in both with different RFC822.SIZE: two messages under one UID
 *     (delivered on both sides after a cut-over): reported, left alone.
 * The full listing costs one short line per message and is exact on every
 * server; on a CONDSTORE server a mailbox whose HIGHESTMODSEQ, UIDNEXT and
 * message count are as the last run left them is not listed at all
 * (unchanged() below), so a quiet account's re-run costs one EXAMINE per
 * mailbox, and one changed only at the source is listed from its changes
 * where ESEARCH is offered too (delta_listing() below). */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools/migrate/migrate.h"

#define COPY_CMD_UIDS    500          /* UIDs per UID FETCH command */
#define COPY_CMD_BYTES   (64u << 20)  /* and their RFC822.SIZE at most (one may exceed it) */
/* One UID FETCH at a time: the server streams its messages back to back,
 * and the store takes UIDs only in ascending order.  Two in flight would
 * not do: a server may run pipelined commands concurrently (RFC 9051
 * 5.5) and Dovecot does, interleaving their FETCH responses, so a later
 * command's higher UIDs could arrive before an earlier one's lower UIDs. */
#define COPY_INFLIGHT    1
#define BATCH_MSGS       256          /* messages per store_append */
#define BATCH_BYTES      (32u << 20)  /* bytes per store_append (one message may exceed it) */

/* ---- one message of a listing ---- */

typedef struct lmsg {
    uint32_t uid, flags, size;
    int64_t date;
    char *kw;               /* keywords sorted case-insensitively, ' '-joined; NULL if none */
} lmsg;

typedef struct listing {
    lmsg *v;
    size_t n, cap;
} listing;

static void listing_free(listing *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].kw);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static lmsg *listing_add(listing *l)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        lmsg *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return NULL;
        l->v = v;
        l->cap = cap;
    }
    memset(&l->v[l->n], 0, sizeof *l->v);
    return &l->v[l->n++];
}

static int cmp_lmsg(const void *a, const void *b)
{
    uint32_t x = ((const lmsg *)a)->uid, y = ((const lmsg *)b)->uid;
    return x < y ? -1 : x > y;
}

static int cmp_kwp(const void *a, const void *b)
{
    return strcasecmp(*(char *const *)a, *(char *const *)b);
}

/* Keywords (NUL-terminated names) to the canonical joined form. */
static int kw_join(char **names, size_t n, char **out)
{
    *out = NULL;
    if (n == 0)
        return 0;
    qsort(names, n, sizeof *names, cmp_kwp);
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += strlen(names[i]) + 1;
    char *s = malloc(len);
    if (!s)
        return -ENOMEM;
    char *p = s;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcasecmp(names[i], names[i - 1]) == 0)
            continue;           /* the same keyword twice is one */
        if (p > s)
            *p++ = ' ';
        size_t k = strlen(names[i]);
        memcpy(p, names[i], k);
        p += k;
    }
    *p = '\0';
    *out = s;
    return 0;
}

static bool kw_equal(const char *a, const char *b)
{
    if (!a || !b)
        return !a && !b;
    return strcasecmp(a, b) == 0;
}

/* ---- FETCH responses ---- */

typedef struct fetch_item {
    uint32_t uid;
    bool has_flags, has_date, has_size, has_body;
    bool body_nil;          /* BODY[] NIL: the server could not give it */
    uint32_t flags, size;
    int64_t date;
    int16_t tz;
    size_t nkw;
    char *kw[STORE_MAX_KEYWORDS];
    char kwbuf[STORE_MAX_KEYWORDS * (STORE_MAX_KEYWORD_LEN + 1)];
    const char *body;
    size_t body_len;
} fetch_item;

static const struct { const char *name; uint32_t bit; } sysflags[] = {
    { "\\Answered", STORE_F_ANSWERED }, { "\\Flagged", STORE_F_FLAGGED },
    { "\\Deleted", STORE_F_DELETED }, { "\\Seen", STORE_F_SEEN },
    { "\\Draft", STORE_F_DRAFT },
};

static int parse_flags(mig_cur *cur, fetch_item *it)
{
    const char *s;
    size_t n;
    if (mig_next(cur, &s, &n, NULL) != MIG_T_LPAREN)
        return -EPROTO;
    size_t used = 0;
    it->flags = 0;
    it->nkw = 0;
    for (;;) {
        mig_tok t = mig_next(cur, &s, &n, NULL);
        if (t == MIG_T_RPAREN)
            break;
        if (t != MIG_T_ATOM)
            return -EPROTO;
        if (*s == '\\') {
            bool known = false;
            for (size_t i = 0; i < sizeof sysflags / sizeof *sysflags; i++)
                if (strlen(sysflags[i].name) == n && strncasecmp(s, sysflags[i].name, n) == 0) {
                    it->flags |= sysflags[i].bit;
                    known = true;
                }
            (void)known;    /* \Recent and other system flags are not ours to keep */
            continue;
        }
        if (n > STORE_MAX_KEYWORD_LEN || it->nkw == STORE_MAX_KEYWORDS)
            return -E2BIG;
        char *k = it->kwbuf + used;
        memcpy(k, s, n);
        k[n] = '\0';
        used += n + 1;
        it->kw[it->nkw++] = k;
    }
    it->has_flags = true;
    return 0;
}

/* 1 and *it filled for "* n FETCH (...)", 0 for any other response. */
static int parse_fetch(const mig_resp *r, fetch_item *it)
{
    mig_cur cur = { r->data, r->data + r->len };
    const char *s;
    size_t n;
    if (mig_next(&cur, &s, &n, NULL) != MIG_T_ATOM || n != 1 || *s != '*')
        return 0;
    if (mig_next(&cur, &s, &n, NULL) != MIG_T_ATOM || !isdigit((unsigned char)*s))
        return 0;
    if (mig_next(&cur, &s, &n, NULL) != MIG_T_ATOM || n != 5 || strncasecmp(s, "FETCH", 5) != 0)
        return 0;
    memset(it, 0, offsetof(fetch_item, kwbuf));
    it->body = NULL;
    it->body_len = 0;
    if (mig_next(&cur, &s, &n, NULL) != MIG_T_LPAREN)
        return -EPROTO;
    for (;;) {
        bool q;
        mig_tok t = mig_next(&cur, &s, &n, NULL);
        if (t == MIG_T_RPAREN)
            break;
        if (t != MIG_T_ATOM)
            return -EPROTO;
        const char *name = s;
        size_t nlen = n;
        if (nlen == 3 && strncasecmp(name, "UID", 3) == 0) {
            if (mig_next(&cur, &s, &n, NULL) != MIG_T_ATOM)
                return -EPROTO;
            char *e;
            unsigned long v = strtoul(s, &e, 10);
            if (e != s + n || v == 0 || v > UINT32_MAX)
                return -EPROTO;
            it->uid = (uint32_t)v;
        } else if (nlen == 5 && strncasecmp(name, "FLAGS", 5) == 0) {
            int rc = parse_flags(&cur, it);
            if (rc < 0)
                return rc;
        } else if (nlen == 11 && strncasecmp(name, "RFC822.SIZE", 11) == 0) {
            if (mig_next(&cur, &s, &n, NULL) != MIG_T_ATOM)
                return -EPROTO;
            char *e;
            unsigned long v = strtoul(s, &e, 10);
            if (e != s + n || v > UINT32_MAX)
                return -EPROTO;
            it->size = (uint32_t)v;
            it->has_size = true;
        } else if (nlen == 12 && strncasecmp(name, "INTERNALDATE", 12) == 0) {
            if (mig_next(&cur, &s, &n, &q) != MIG_T_STRING ||
                mig_parse_date(s, n, &it->date, &it->tz) < 0)
                return -EPROTO;
            it->has_date = true;
        } else if (nlen == 6 && strncasecmp(name, "BODY[]", 6) == 0) {
            t = mig_next(&cur, &s, &n, &q);
            if (t == MIG_T_NIL) {
                s = "";
                n = 0;
                it->body_nil = true;
            } else if (t != MIG_T_STRING) {
                return -EPROTO;
            }
            it->body = s;
            it->body_len = n;
            it->has_body = true;
        } else {
            if (mig_skip(&cur) < 0)     /* MODSEQ (n) and the like */
                return -EPROTO;
        }
    }
    return 1;
}

int mig_parse_date(const char *s, size_t n, int64_t *t, int16_t *tz_min)
{
    /* date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP
     *             time SP zone DQUOTE  (RFC 9051 9); the day may be " 7". */
    char buf[40];
    if (n >= sizeof buf)
        return -EINVAL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    const char *p = buf;
    while (*p == ' ')
        p++;
    int day, year, hh, mm, ss, zone;
    char mon[4];
    int used = 0;
    if (sscanf(p, "%2d-%3c-%4d %2d:%2d:%2d %5d%n", &day, mon, &year, &hh, &mm, &ss, &zone,
               &used) != 7 || p[used] != '\0')
        return -EINVAL;
    mon[3] = '\0';
    int m = store_month_parse(mon, 3);
    if (m < 0)
        return -EINVAL;
    int sign = zone < 0 ? -1 : 1;
    int az = zone * sign;
    int off = sign * ((az / 100) * 60 + az % 100);
    struct tm tm = { .tm_year = year - 1900, .tm_mon = m, .tm_mday = day,
                     .tm_hour = hh, .tm_min = mm, .tm_sec = ss };
    int64_t local = (int64_t)timegm(&tm);
    *t = local - (int64_t)off * 60;
    *tz_min = (int16_t)off;
    return 0;
}

/* ---- the source's listing ---- */

/* Read the answers to tag, FETCH lines into l (sorted by UID at the end). */
static int read_listing(mig_run *r, uint32_t tag, listing *l, const char *mbox)
{
    fetch_item *it = malloc(sizeof *it);
    if (!it)
        return -ENOMEM;
    int rc;
    for (;;) {
        mig_resp resp;
        rc = mig_read(r->c, &resp);
        if (rc < 0) {
            admin_err("%s: connection lost while listing '%s': %s", r->user, mbox,
                      strerror(-rc));
            break;
        }
        if (resp.tagged && resp.tag == tag) {
            char err[320];
            rc = mig_tagged_status(&resp, err, sizeof err);
            if (rc < 0)
                admin_err("%s: the source refused to list '%s': %s", r->user, mbox, err);
            break;
        }
        rc = parse_fetch(&resp, it);
        if (rc < 0) {
            admin_err("%s: an answer of the source I cannot read, listing '%s': %.200s",
                      r->user, mbox, resp.data);
            break;
        }
        if (rc == 0 || !it->uid || !it->has_flags)
            continue;           /* not ours, or an unsolicited flag update */
        lmsg *m = listing_add(l);
        if (!m) {
            rc = -ENOMEM;
            break;
        }
        m->uid = it->uid;
        m->flags = it->flags;
        m->size = it->size;
        m->date = it->date;
        if ((rc = kw_join(it->kw, it->nkw, &m->kw)) < 0)
            break;
    }
    free(it);
    if (rc < 0)
        return rc;
    if (l->n)
        qsort(l->v, l->n, sizeof *l->v, cmp_lmsg);
    /* A UID listed twice (a server's odd answer) counts once. */
    size_t k = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (k > 0 && l->v[k - 1].uid == l->v[i].uid) {
            free(l->v[i].kw);
            continue;
        }
        l->v[k++] = l->v[i];
    }
    l->n = k;
    return 0;
}

/* The copy's live messages, in UID order. */
static int target_listing(store_mbox *mb, listing *l, uint32_t *uidnext, uint32_t *uv)
{
    store_snap *sn = store_snap_get(mb);
    if (!sn)
        return -ENOMEM;
    *uidnext = store_snap_uidnext(sn);
    *uv = store_snap_uidvalidity(sn);
    uint32_t ne = store_snap_entries(sn);
    int rc = 0;
    for (uint32_t pos = 0; pos < ne; pos++) {
        store_msg sm;
        if (store_snap_entry(sn, pos, &sm) != 1)
            continue;
        lmsg *m = listing_add(l);
        if (!m) {
            rc = -ENOMEM;
            break;
        }
        m->uid = sm.uid;
        m->flags = sm.flags;
        m->size = sm.size;
        m->date = sm.internal_date;
        char *names[64];
        size_t nk = 0;
        for (unsigned i = 0; i < 64; i++)
            if (sm.keywords & (1ull << i)) {
                const char *kn = store_snap_keyword(sn, i);
                if (kn)
                    names[nk++] = (char *)kn;
            }
        if ((rc = kw_join(names, nk, &m->kw)) < 0)
            break;
    }
    store_snap_put(sn);
    if (rc == 0 && l->n)
        qsort(l->v, l->n, sizeof *l->v, cmp_lmsg);
    return rc;
}

/* ---- EXAMINE ---- */

typedef struct src_status {
    uint32_t uidvalidity, uidnext, exists;
    uint64_t highestmodseq;
    bool nonexistent;
} src_status;

static int examine(mig_run *r, const mig_src_mbox *m, src_status *ss)
{
    memset(ss, 0, sizeof *ss);
    uint32_t tag;
    mig_cmd_begin(r->c, &tag);
    mig_cmd_text(r->c, "EXAMINE ");
    mig_cmd_astring(r->c, m->wire);
    if (mig_has_cap(r->c, "CONDSTORE"))
        mig_cmd_text(r->c, " (CONDSTORE)");
    int rc = mig_cmd_end(r->c);
    for (;;) {
        mig_resp resp;
        if (rc == 0)
            rc = mig_read(r->c, &resp);
        if (rc < 0) {
            admin_err("%s: connection lost at EXAMINE '%s': %s", r->user, m->name,
                      strerror(-rc));
            return rc;
        }
        uint64_t v;
        if (resp.tagged && resp.tag == tag) {
            char err[320];
            rc = mig_tagged_status(&resp, err, sizeof err);
            if (rc == -EACCES) {
                ss->nonexistent = true;
                admin_err("%s: mailbox '%s' vanished at the source during the run (%s): "
                          "skipped; the next run deletes its copy", r->user, m->name, err);
                return 0;
            }
            if (rc < 0) {
                admin_err("%s: EXAMINE '%s' failed: %s", r->user, m->name, err);
                return rc;
            }
            break;
        }
        if (mig_resp_code(&resp, "UIDVALIDITY", &v) && v && v <= UINT32_MAX)
            ss->uidvalidity = (uint32_t)v;
        else if (mig_resp_code(&resp, "UIDNEXT", &v) && v <= UINT32_MAX)
            ss->uidnext = (uint32_t)v;
        else if (mig_resp_code(&resp, "HIGHESTMODSEQ", &v))
            ss->highestmodseq = v;
        else if (resp.len > 2 && resp.data[0] == '*') {
            char *e;
            unsigned long k = strtoul(resp.data + 2, &e, 10);
            if (e > resp.data + 2 && strcasecmp(e, " EXISTS") == 0)
                ss->exists = (uint32_t)k;
        }
    }
    if (!ss->uidvalidity) {
        admin_err("%s: the source gave no UIDVALIDITY for '%s' (RFC 9051 requires it): "
                  "cannot keep UIDs", r->user, m->name);
        return -EPROTO;
    }
    return 0;
}

/* ---- the listing from what changed (CONDSTORE and ESEARCH) ---- */

/* "1:3,5,9:10" into ascending UIDs appended to *v. */
static int parse_uidset(const char *s, size_t n, uint32_t **v, size_t *nv, size_t *cap)
{
    const char *p = s, *end = s + n;
    while (p < end) {
        char *e;
        unsigned long lo = strtoul(p, &e, 10), hi = lo;
        if (e == p || lo == 0 || lo > UINT32_MAX)
            return -EPROTO;
        p = e;
        if (p < end && *p == ':') {
            hi = strtoul(p + 1, &e, 10);
            if (e == p + 1 || hi == 0 || hi > UINT32_MAX)
                return -EPROTO;
            p = e;
            if (hi < lo) {
                unsigned long t = lo;
                lo = hi;
                hi = t;
            }
        }
        if (p < end && *p++ != ',')
            return -EPROTO;
        for (unsigned long u = lo; u <= hi; u++) {
            if (*nv == *cap) {
                size_t c = *cap ? *cap * 2 : 1024;
                uint32_t *q = realloc(*v, c * sizeof *q);
                if (!q)
                    return -ENOMEM;
                *v = q;
                *cap = c;
            }
            (*v)[(*nv)++] = (uint32_t)u;
        }
    }
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* When only the source changed since the last run and it offers CONDSTORE
 * and ESEARCH, the full listing is rebuilt from much less: the UIDs that
 * exist (`UID SEARCH RETURN (ALL) ALL`, RFC 4731: ranges, so a few bytes
 * for a mailbox without many gaps), the messages changed or added since
 * the recorded HIGHESTMODSEQ (`UID FETCH 1:* (...) (CHANGEDSINCE m)`, RFC
 * 7162 3.1.4), and for every other UID the copy's own flags and size,
 * which matched the source's when that run ended and nobody changed since
 * (the copy's HIGHESTMODSEQ is the recorded one).  Returns 1 with *out
 * filled, 0 when the full listing must be used (*out empty), or -errno. */
static int delta_listing(mig_run *r, const mig_src_mbox *m, const src_status *ss,
                         listing *out)
{
    mig_state_mbox *e = mig_state_find(&r->st, m->name);
    store_status st;
    if (!e || !e->highestmodseq || !ss->highestmodseq || !e->copy_modseq ||
        !mig_has_cap(r->c, "ESEARCH") || !mig_has_cap(r->c, "CONDSTORE") ||
        store_mailbox_status(r->u, m->name, &st) < 0 || st.uidvalidity != ss->uidvalidity ||
        st.highestmodseq != e->copy_modseq)
        return 0;
    uint32_t *all = NULL;
    size_t nall = 0, capall = 0;
    listing chg = { 0 }, dst = { 0 };
    store_mbox *mb = NULL;
    uint32_t tag;
    int rc = mig_send(r->c, &tag, "UID SEARCH RETURN (ALL) ALL");
    while (rc == 0) {
        mig_resp resp;
        if ((rc = mig_read(r->c, &resp)) < 0)
            break;
        if (resp.tagged && resp.tag == tag) {
            char err[320];
            rc = mig_tagged_status(&resp, err, sizeof err);
            if (rc < 0)
                admin_err("%s: UID SEARCH in '%s' failed: %s", r->user, m->name, err);
            break;
        }
        /* "* ESEARCH (TAG "x") UID ALL 1:5,7" (RFC 4731 3.1) */
        const char *a = strcasestr(resp.data, " UID ALL ");
        if (strncasecmp(resp.data, "* ESEARCH ", 10) == 0 && a) {
            a += 9;
            rc = parse_uidset(a, strcspn(a, " "), &all, &nall, &capall);
            if (rc < 0)
                admin_err("%s: an ESEARCH answer I cannot read: %.200s", r->user, resp.data);
        }
    }
    if (rc == 0) {
        rc = mig_send(r->c, &tag, "UID FETCH 1:* (UID FLAGS RFC822.SIZE) (CHANGEDSINCE %llu)",
                      (unsigned long long)e->highestmodseq);
        r->s.fetches++;
        if (rc == 0)
            rc = read_listing(r, tag, &chg, m->name);
    }
    if (rc < 0)
        goto out;
    if (nall)
        qsort(all, nall, sizeof *all, cmp_u32);
    uint32_t un, uv;
    if ((rc = store_mbox_open(r->u, m->name, &mb)) < 0 ||
        (rc = target_listing(mb, &dst, &un, &uv)) < 0)
        goto out;
    rc = 1;
    size_t j = 0, k = 0;
    for (size_t i = 0; i < nall; i++) {
        if (i > 0 && all[i] == all[i - 1])
            continue;
        while (j < chg.n && chg.v[j].uid < all[i])
            j++;
        while (k < dst.n && dst.v[k].uid < all[i])
            k++;
        const lmsg *from = j < chg.n && chg.v[j].uid == all[i] ? &chg.v[j]
                         : k < dst.n && dst.v[k].uid == all[i] ? &dst.v[k] : NULL;
        if (!from) {            /* neither changed nor here: take the full listing */
            rc = 0;
            break;
        }
        lmsg *x = listing_add(out);
        if (!x || (from->kw && !(x->kw = strdup(from->kw)))) {
            rc = -ENOMEM;
            break;
        }
        x->uid = all[i];
        x->flags = from->flags;
        x->size = from->size;
        x->date = from->date;
    }
    if (rc <= 0)
        listing_free(out);
    else
        r->s.from_changes++;
out:
    if (mb)
        store_mbox_close(mb);
    listing_free(&chg);
    listing_free(&dst);
    free(all);
    return rc;
}

/* ---- copying ---- */

typedef struct batch {
    store_mbox *mb;
    char *data;
    size_t len, cap;
    struct bmsg {
        uint32_t uid, flags;
        int64_t date;
        int16_t tz;
        size_t off, len, kw_off, nkw;
    } *m;
    size_t n;
    char *kw;               /* keyword names, NUL-separated */
    size_t kw_len, kw_cap;
    uint32_t uidnext;       /* the copy's */
} batch;

static int grow(char **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 65536;
    while (c < need)
        c *= 2;
    char *q = realloc(*p, c);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

static int batch_add(batch *b, const fetch_item *it)
{
    if (grow(&b->data, &b->cap, b->len + it->body_len) < 0)
        return -ENOMEM;
    size_t kwl = 0;
    for (size_t i = 0; i < it->nkw; i++)
        kwl += strlen(it->kw[i]) + 1;
    if (grow(&b->kw, &b->kw_cap, b->kw_len + kwl) < 0)
        return -ENOMEM;
    struct bmsg *m = &b->m[b->n++];
    *m = (struct bmsg){ .uid = it->uid, .flags = it->flags, .date = it->date, .tz = it->tz,
                        .off = b->len, .len = it->body_len, .kw_off = b->kw_len,
                        .nkw = it->nkw };
    memcpy(b->data + b->len, it->body, it->body_len);
    b->len += it->body_len;
    for (size_t i = 0; i < it->nkw; i++) {
        size_t k = strlen(it->kw[i]) + 1;
        memcpy(b->kw + b->kw_len, it->kw[i], k);
        b->kw_len += k;
    }
    return 0;
}

static int cmp_bmsg(const void *a, const void *b)
{
    uint32_t x = ((const struct bmsg *)a)->uid, y = ((const struct bmsg *)b)->uid;
    return x < y ? -1 : x > y;
}

static int batch_flush(mig_run *r, batch *b, const char *name, uint32_t uidvalidity,
                       uint64_t hms)
{
    if (b->n == 0)
        return 0;
    qsort(b->m, b->n, sizeof *b->m, cmp_bmsg);
    store_new_msg *msgs = calloc(b->n, sizeof *msgs);
    const char **kws = calloc(b->kw_len + 1, sizeof *kws);
    uint32_t *uids = calloc(b->n, sizeof *uids);
    int rc = -ENOMEM;
    if (!msgs || !kws || !uids)
        goto out;
    size_t k = 0, nk = 0;
    for (size_t i = 0; i < b->n; i++) {
        struct bmsg *m = &b->m[i];
        /* FETCH answers may come in any order and a server may repeat one:
         * the store takes only ascending UIDs at or above UIDNEXT. */
        if (m->uid < b->uidnext || (k > 0 && msgs[k - 1].uid >= m->uid))
            continue;
        const char *kp = b->kw + m->kw_off;
        const char **karr = kws + nk;
        for (size_t j = 0; j < m->nkw; j++) {
            kws[nk++] = kp;
            kp += strlen(kp) + 1;
        }
        msgs[k++] = (store_new_msg){
            .data = b->data + m->off, .len = m->len,
            .internal_date = m->date, .tz_min = m->tz,
            .flags = m->flags, .keywords = m->nkw ? karr : NULL, .nkeywords = m->nkw,
            .uid = m->uid,
        };
    }
    if (k < b->n) {
        /* Only a server answering out of UID order gets here: those
         * messages cannot keep their UIDs now; the next run reports them. */
        admin_err("%s: %s: %zu message(s) came out of UID order and were not copied",
                  r->user, name, b->n - k);
        r->s.errors++;
    }
    rc = k ? store_append(b->mb, msgs, k, uids) : 0;
    if (rc < 0) {
        admin_err("%s: cannot append to '%s' (UIDs %u..%u): %s", r->user, name,
                  msgs[0].uid, msgs[k - 1].uid, store_strerror(rc));
        goto out;
    }
    if (k) {
        b->uidnext = msgs[k - 1].uid + 1;
        r->s.copied += k;
        for (size_t i = 0; i < k; i++)
            r->s.copied_bytes += msgs[i].len;
        /* Recorded after it is durable (store_append returned): the state
         * never claims more than the store holds. */
        mig_state_mbox *e = mig_state_find(&r->st, name);
        if (!e)
            e = mig_state_add(&r->st, name);
        if (e) {
            e->uidvalidity = uidvalidity;
            e->last_uid = msgs[k - 1].uid;
            e->highestmodseq = hms;
            e->copy_modseq = 0;     /* known when the mailbox is done */
            e->seen = true;
        }
        int sr = mig_state_save(&r->st);
        if (sr < 0)
            admin_err("%s: cannot write the state file %s: %s", r->user, r->st.path,
                      strerror(-sr));
    }
out:
    free(msgs);
    free(kws);
    free(uids);
    b->n = 0;
    b->len = 0;
    b->kw_len = 0;
    return rc;
}

/* "a:b,c,..." of up to COPY_CMD_UIDS UIDs (and COPY_CMD_BYTES) from v[*i];
 * advances *i. */
static void uidset(const uint32_t *v, const uint32_t *sizes, size_t n, size_t *i, char *buf,
                   size_t len)
{
    size_t end = *i + COPY_CMD_UIDS < n ? *i + COPY_CMD_UIDS : n;
    uint64_t bytes = 0;
    for (size_t j = *i; j < end; j++) {
        bytes += sizes[j];
        if (bytes > COPY_CMD_BYTES && j > *i) {
            end = j;
            break;
        }
    }
    size_t o = 0;
    buf[0] = '\0';
    for (size_t j = *i; j < end;) {
        size_t k = j;
        while (k + 1 < end && v[k + 1] == v[k] + 1)
            k++;
        int w = v[k] == v[j] ? snprintf(buf + o, len - o, "%s%u", o ? "," : "", v[j])
                             : snprintf(buf + o, len - o, "%s%u:%u", o ? "," : "", v[j], v[k]);
        o += (size_t)w;
        j = k + 1;
    }
    *i = end;
}

static void show_progress(mig_run *r, uint64_t done_b, uint64_t total_b, uint64_t done_m,
                          uint64_t total_m, double t0)
{
    if (!r->prog.tty)
        return;
    double dt = admin_now() - t0;
    double rate = dt > 0 ? (double)done_b / dt : 0;
    char d[96], rb[32];
    admin_human_bytes((uint64_t)rate, rb, sizeof rb);
    if (rate > 0 && total_b > done_b)
        snprintf(d, sizeof d, "%llu/%llu msgs  %s/s  ETA %.0f s",
                 (unsigned long long)done_m, (unsigned long long)total_m, rb,
                 (double)(total_b - done_b) / rate);
    else
        snprintf(d, sizeof d, "%llu/%llu msgs", (unsigned long long)done_m,
                 (unsigned long long)total_m);
    admin_progress_detail(&r->prog, d);
    admin_progress_update(&r->prog, done_b);
}

static int copy_new(mig_run *r, const mig_src_mbox *m, store_mbox *mb, const uint32_t *v,
                    const uint32_t *sizes, size_t n, uint64_t total_bytes, uint32_t uidnext,
                    const src_status *ss)
{
    batch b = { .mb = mb, .uidnext = uidnext };
    b.m = calloc(BATCH_MSGS, sizeof *b.m);
    fetch_item *it = malloc(sizeof *it);
    char *set = malloc(COPY_CMD_UIDS * 24);
    uint32_t tags[COPY_INFLIGHT];
    size_t ntags = 0, next = 0;
    int rc = 0;
    uint64_t got = 0, got_bytes = 0;
    double t0 = admin_now();
    if (!b.m || !it || !set) {
        rc = -ENOMEM;
        goto out;
    }
    char label[64];
    snprintf(label, sizeof label, "%.40s", m->name);
    admin_progress_start(&r->prog, label, total_bytes, true);
    if (r->quiet)
        r->prog.tty = false;
    while (next < n || ntags > 0) {
        /* The next command once the previous one is answered (see
         * COPY_INFLIGHT); never past a stop request. */
        while (ntags < COPY_INFLIGHT && next < n && !mig_stop) {
            uidset(v, sizes, n, &next, set, COPY_CMD_UIDS * 24);
            rc = mig_send(r->c, &tags[ntags], "UID FETCH %s (UID FLAGS INTERNALDATE BODY.PEEK[])",
                          set);
            if (rc < 0)
                break;
            ntags++;
            r->s.fetches++;
        }
        if (rc < 0 || ntags == 0)
            break;
        mig_resp resp;
        rc = mig_read(r->c, &resp);
        if (rc < 0)
            break;
        if (resp.tagged) {
            if (resp.tag != tags[0]) {
                rc = -EPROTO;
                break;
            }
            char err[320];
            rc = mig_tagged_status(&resp, err, sizeof err);
            if (rc < 0) {
                admin_err("%s: the source refused to send messages of '%s': %s", r->user,
                          m->name, err);
                goto out;
            }
            memmove(tags, tags + 1, (--ntags) * sizeof *tags);
            continue;
        }
        int pf = parse_fetch(&resp, it);
        if (pf < 0) {
            admin_err("%s: an answer of the source I cannot read, copying '%s': %.120s",
                      r->user, m->name, resp.data);
            rc = pf;
            goto out;
        }
        if (pf == 0 || !it->has_body)
            continue;
        if (it->body_nil) {
            /* Not an empty message but one the server could not read:
             * reported, not copied (--check then names it). */
            admin_err("%s: %s: the source sent no body for UID %u (BODY[] NIL): not copied",
                      r->user, m->name, it->uid);
            r->s.errors++;
            got++;
            continue;
        }
        if (!it->uid || !it->has_date) {
            admin_err("%s: the source sent a message of '%s' without its UID or INTERNALDATE",
                      r->user, m->name);
            rc = -EPROTO;
            goto out;
        }
        if ((rc = batch_add(&b, it)) < 0)
            goto out;
        got++;
        got_bytes += it->body_len;
        show_progress(r, got_bytes, total_bytes, got, n, t0);
        if (b.n == BATCH_MSGS || b.len >= BATCH_BYTES) {
            if ((rc = batch_flush(r, &b, m->name, ss->uidvalidity, ss->highestmodseq)) < 0)
                goto out;
        }
    }
    if (rc < 0) {
        admin_err("%s: connection lost while copying '%s': %s", r->user, m->name,
                  strerror(-rc));
        goto out;
    }
    rc = batch_flush(r, &b, m->name, ss->uidvalidity, ss->highestmodseq);
    if (rc == 0 && got < n && !mig_stop)
        printf("%s: %s: %llu message(s) expunged at the source during the copy\n", r->user,
               m->name, (unsigned long long)(n - got));
out:
    if (rc < 0)
        batch_flush(r, &b, m->name, ss->uidvalidity, ss->highestmodseq);
    admin_progress_end(&r->prog);
    free(b.m);
    free(b.data);
    free(b.kw);
    free(it);
    free(set);
    return rc;
}

/* ---- flags and expunges ---- */

typedef struct fchange {
    uint32_t uid, flags;
    const char *kw;
} fchange;

static int cmp_fchange(const void *a, const void *b)
{
    const fchange *x = a, *y = b;
    if (x->flags != y->flags)
        return x->flags < y->flags ? -1 : 1;
    int c = strcasecmp(x->kw ? x->kw : "", y->kw ? y->kw : "");
    if (c)
        return c;
    return x->uid < y->uid ? -1 : x->uid > y->uid;
}

/* Set flags and keywords, one store_flags per distinct combination. */
static int apply_flags(mig_run *r, store_mbox *mb, const char *name, fchange *ch, size_t n)
{
    qsort(ch, n, sizeof *ch, cmp_fchange);
    store_range *rg = malloc((n ? n : 1) * sizeof *rg);
    if (!rg)
        return -ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0;) {
        size_t j = i, nr = 0;
        while (j < n && ch[j].flags == ch[i].flags &&
               strcasecmp(ch[j].kw ? ch[j].kw : "", ch[i].kw ? ch[i].kw : "") == 0) {
            if (nr > 0 && rg[nr - 1].hi + 1 == ch[j].uid)
                rg[nr - 1].hi = ch[j].uid;
            else
                rg[nr++] = (store_range){ ch[j].uid, ch[j].uid };
            j++;
        }
        char *kwcopy = ch[i].kw ? strdup(ch[i].kw) : NULL;
        const char *kws[STORE_MAX_KEYWORDS];
        size_t nk = 0;
        for (char *save = NULL, *t = kwcopy ? strtok_r(kwcopy, " ", &save) : NULL;
             t && nk < STORE_MAX_KEYWORDS; t = strtok_r(NULL, " ", &save))
            kws[nk++] = t;
        uint64_t modseq;
        rc = store_flags(mb, rg, nr, STORE_FLAGS_SET, ch[i].flags, kws, nk, 0, NULL, NULL,
                         &modseq);
        free(kwcopy);
        if (rc < 0)
            admin_err("%s: cannot set flags in '%s': %s", r->user, name, store_strerror(rc));
        else
            r->s.flag_changes += j - i;
        i = j;
    }
    free(rg);
    return rc;
}

static int expunge(mig_run *r, store_mbox *mb, const char *name, const uint32_t *v, size_t n)
{
    store_range *rg = malloc((n ? n : 1) * sizeof *rg);
    if (!rg)
        return -ENOMEM;
    size_t nr = 0;
    for (size_t i = 0; i < n; i++) {
        if (nr > 0 && rg[nr - 1].hi + 1 == v[i])
            rg[nr - 1].hi = v[i];
        else
            rg[nr++] = (store_range){ v[i], v[i] };
    }
    uint64_t modseq;
    int rc = store_expunge(mb, rg, nr, false, NULL, &modseq);
    free(rg);
    if (rc < 0)
        admin_err("%s: cannot expunge in '%s': %s", r->user, name, store_strerror(rc));
    else
        r->s.expunged += n;
    return rc;
}

/* ---- the copy's mailbox ---- */

static int open_target(mig_run *r, const mig_src_mbox *m, const src_status *ss,
                       store_mbox **out)
{
    store_mailbox_info info;
    int rc = store_mailbox_get(r->u, m->name, &info);
    if (rc == 0) {
        free(info.name);
        if (info.uidvalidity != ss->uidvalidity) {
            /* An empty mailbox that never held a message takes the
             * source's (INBOX, made at first use); anything else is
             * somebody's mail: refused. */
            rc = store_mailbox_create_uv(r->u, m->name, m->special, ss->uidvalidity);
            if (rc == -EEXIST) {
                admin_err("%s: mailbox '%s' exists here with UIDVALIDITY %u and holds mail; "
                          "the source's is %u: not touched", r->user, m->name,
                          info.uidvalidity, ss->uidvalidity);
                return rc;
            }
        }
        if (rc == 0 && info.special != m->special)
            rc = store_mailbox_set_special(r->u, m->name, m->special);
    } else if (rc == -ENOENT) {
        rc = store_mailbox_create_uv(r->u, m->name, m->special, ss->uidvalidity);
    }
    if (rc < 0) {
        admin_err("%s: cannot create mailbox '%s': %s", r->user, m->name, store_strerror(rc));
        return rc;
    }
    rc = store_mbox_open(r->u, m->name, out);
    if (rc < 0)
        admin_err("%s: cannot open mailbox '%s': %s", r->user, m->name, store_strerror(rc));
    return rc;
}

/* ---- check ---- */

static void diff(mig_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void diff(mig_run *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s: ", r->user);
    vprintf(fmt, ap);
    putchar('\n');
    va_end(ap);
    r->s.differences++;
}

static const char *flagstr(uint32_t f, const char *kw, char *buf, size_t len)
{
    snprintf(buf, len, "(%s%s%s%s%s%s%s)", f & STORE_F_ANSWERED ? "\\Answered " : "",
             f & STORE_F_FLAGGED ? "\\Flagged " : "", f & STORE_F_DELETED ? "\\Deleted " : "",
             f & STORE_F_SEEN ? "\\Seen " : "", f & STORE_F_DRAFT ? "\\Draft " : "",
             kw ? kw : "", "");
    size_t n = strlen(buf);
    if (n >= 2 && buf[n - 2] == ' ') {
        buf[n - 2] = ')';
        buf[n - 1] = '\0';
    }
    return buf;
}

/* --check=full: every body fetched again and compared byte for byte. */
static int check_bodies(mig_run *r, const mig_src_mbox *m, store_mbox *mb)
{
    uint32_t tag;
    int rc = mig_send(r->c, &tag, "UID FETCH 1:* (UID BODY.PEEK[])");
    fetch_item *it = malloc(sizeof *it);
    store_snap *sn = store_snap_get(mb);
    if (!it || !sn)
        rc = -ENOMEM;
    while (rc == 0) {
        mig_resp resp;
        if ((rc = mig_read(r->c, &resp)) < 0)
            break;
        if (resp.tagged && resp.tag == tag) {
            rc = mig_tagged_status(&resp, NULL, 0);
            break;
        }
        if (parse_fetch(&resp, it) != 1 || !it->has_body || !it->uid)
            continue;
        const char *p;
        size_t got;
        if (store_snap_bytes(sn, it->uid, 0, SIZE_MAX, &p, &got) == 0 &&
            (got != it->body_len || memcmp(p, it->body, got) != 0))
            diff(r, "%s: UID %u: the message's bytes differ", m->name, it->uid);
    }
    if (sn)
        store_snap_put(sn);
    free(it);
    if (rc < 0)
        admin_err("%s: comparing the bodies of '%s' failed: %s", r->user, m->name,
                  strerror(-rc));
    return rc;
}

static int check_mailbox(mig_run *r, const mig_src_mbox *m, const src_status *ss,
                         const listing *src)
{
    store_mbox *mb;
    int rc = store_mbox_open(r->u, m->name, &mb);
    if (rc < 0) {
        diff(r, "%s: missing here", m->name);
        return 0;
    }
    listing dst = { 0 };
    uint32_t uidnext, uv;
    rc = target_listing(mb, &dst, &uidnext, &uv);
    if (rc < 0)
        goto out;
    store_mailbox_info info;
    if (store_mailbox_get(r->u, m->name, &info) == 0) {
        if (info.special != m->special)
            diff(r, "%s: special-use 0x%x here, 0x%x at the source", m->name, info.special,
                 m->special);
        free(info.name);
    }
    if (uv != ss->uidvalidity)
        diff(r, "%s: UIDVALIDITY %u here, %u at the source", m->name, uv, ss->uidvalidity);
    if (ss->uidnext && uidnext != ss->uidnext)
        diff(r, "%s: UIDNEXT %u here, %u at the source", m->name, uidnext, ss->uidnext);
    size_t i = 0, j = 0;
    char a[256], b[256];
    while (i < src->n || j < dst.n) {
        if (j >= dst.n || (i < src->n && src->v[i].uid < dst.v[j].uid)) {
            diff(r, "%s: UID %u missing here", m->name, src->v[i++].uid);
        } else if (i >= src->n || dst.v[j].uid < src->v[i].uid) {
            diff(r, "%s: UID %u here, not at the source", m->name, dst.v[j++].uid);
        } else {
            const lmsg *s = &src->v[i++], *d = &dst.v[j++];
            if (s->flags != d->flags || !kw_equal(s->kw, d->kw))
                diff(r, "%s: UID %u: flags %s here, %s at the source", m->name, s->uid,
                     flagstr(d->flags, d->kw, a, sizeof a), flagstr(s->flags, s->kw, b, sizeof b));
            if (s->date != d->date)
                diff(r, "%s: UID %u: INTERNALDATE %lld here, %lld at the source", m->name,
                     s->uid, (long long)d->date, (long long)s->date);
            if (s->size != d->size)
                diff(r, "%s: UID %u: RFC822.SIZE %u here, %u at the source", m->name, s->uid,
                     d->size, s->size);
        }
    }
    if (r->o->check_full && ss->exists)
        rc = check_bodies(r, m, mb);
out:
    listing_free(&dst);
    store_mbox_close(mb);
    return rc;
}

/* ---- one mailbox ---- */

/* Whether both sides are as the last run left the mailbox, so that its
 * listing can be skipped: the source's HIGHESTMODSEQ as recorded then
 * (CONDSTORE, RFC 7162 3.1.1: any flag change raises it), its UIDNEXT and
 * message count equal to the copy's (no message added, so none expunged
 * either), and the copy's HIGHESTMODSEQ as recorded (nobody changed the
 * copy: a change here is undone by the full comparison).  Special-use is
 * still brought up to date. */
static bool unchanged(mig_run *r, const mig_src_mbox *m, const src_status *ss)
{
    mig_state_mbox *e = mig_state_find(&r->st, m->name);
    store_status st;
    store_mailbox_info info;
    if (!e || !ss->highestmodseq || e->highestmodseq != ss->highestmodseq || !ss->uidnext ||
        store_mailbox_status(r->u, m->name, &st) < 0 || st.uidvalidity != ss->uidvalidity ||
        st.uidnext != ss->uidnext || st.messages != ss->exists || !e->copy_modseq ||
        st.highestmodseq != e->copy_modseq ||
        store_mailbox_get(r->u, m->name, &info) < 0)
        return false;
    if (info.special != m->special)
        store_mailbox_set_special(r->u, m->name, m->special);
    free(info.name);
    e->seen = true;
    r->s.mailboxes++;
    r->s.unchanged++;
    return true;
}

int mig_sync_mailbox(mig_run *r, const mig_src_mbox *m)
{
    src_status ss;
    int rc = examine(r, m, &ss);
    if (rc < 0 || ss.nonexistent)
        return rc;
    mig_state_mbox *e = mig_state_find(&r->st, m->name);
    if (!r->o->check && e && e->uidvalidity != ss.uidvalidity) {
        if (!r->o->reset_mailbox || strcmp(r->o->reset_mailbox, m->name) != 0) {
            admin_err("%s: mailbox '%s': UIDVALIDITY changed at the source (was %u, now %u): "
                      "its UIDs mean other messages now; the copy is not touched "
                      "(--reset-mailbox '%s' deletes the copy and copies it again)",
                      r->user, m->name, e->uidvalidity, ss.uidvalidity, m->name);
            e->seen = true;
            return -ESTALE;
        }
        rc = store_mailbox_delete_ext(r->u, m->name, STORE_DELETE_KEEP_PARENT);
        if (rc < 0 && rc != -ENOENT) {
            admin_err("%s: cannot delete '%s' for --reset-mailbox: %s", r->user, m->name,
                      store_strerror(rc));
            return rc;
        }
        printf("%s: %s: UIDVALIDITY changed at the source: copy deleted, copying again\n",
               r->user, m->name);
        e->uidvalidity = ss.uidvalidity;
        e->last_uid = 0;
    }
    if (!r->o->check && unchanged(r, m, &ss))
        return 0;
    listing src = { 0 }, dst = { 0 };
    uint32_t *copy = NULL, *copy_sizes = NULL, *gone = NULL;
    fchange *ch = NULL;
    store_mbox *mb = NULL;
    if (ss.exists > 0 && !r->o->check) {
        rc = delta_listing(r, m, &ss, &src);
        if (rc < 0)
            goto out;
    }
    if (ss.exists > 0 && (r->o->check || rc == 0)) {
        uint32_t tag;
        rc = mig_send(r->c, &tag, "UID FETCH 1:* (UID FLAGS RFC822.SIZE%s)",
                      r->o->check ? " INTERNALDATE" : "");
        r->s.fetches++;
        if (rc == 0)
            rc = read_listing(r, tag, &src, m->name);
        if (rc < 0)
            goto out;
    }
    rc = 0;
    if (!ss.uidnext)    /* RFC 3501 servers may leave it out: the next is above all */
        ss.uidnext = src.n ? src.v[src.n - 1].uid + 1 : 1;
    if (r->o->check) {
        rc = check_mailbox(r, m, &ss, &src);
        goto out;
    }
    if ((rc = open_target(r, m, &ss, &mb)) < 0)
        goto out;
    uint32_t uidnext, uv;
    if ((rc = target_listing(mb, &dst, &uidnext, &uv)) < 0)
        goto out;
    copy = malloc((src.n + 1) * sizeof *copy);
    copy_sizes = malloc((src.n + 1) * sizeof *copy_sizes);
    gone = malloc((dst.n + 1) * sizeof *gone);
    ch = malloc((src.n + 1) * sizeof *ch);
    if (!copy || !copy_sizes || !gone || !ch) {
        rc = -ENOMEM;
        goto out;
    }
    size_t ncopy = 0, ngone = 0, nch = 0, nlost = 0, nkept = 0, nconflict = 0;
    uint64_t copy_bytes = 0;
    for (size_t i = 0, j = 0; i < src.n || j < dst.n;) {
        if (j >= dst.n || (i < src.n && src.v[i].uid < dst.v[j].uid)) {
            if (src.v[i].uid >= uidnext) {
                copy_sizes[ncopy] = src.v[i].size;
                copy[ncopy++] = src.v[i].uid;
                copy_bytes += src.v[i].size;
            } else {
                nlost++;
            }
            i++;
        } else if (i >= src.n || dst.v[j].uid < src.v[i].uid) {
            if (dst.v[j].uid < ss.uidnext)
                gone[ngone++] = dst.v[j].uid;
            else
                nkept++;
            j++;
        } else if (src.v[i].size != dst.v[j].size) {
            /* One UID, two messages: mail delivered here took a UID the
             * source gave later (delivery went on at both after a
             * cut-over).  Neither is ours to change. */
            nconflict++;
            i++;
            j++;
        } else {
            if (src.v[i].flags != dst.v[j].flags || !kw_equal(src.v[i].kw, dst.v[j].kw))
                ch[nch++] = (fchange){ src.v[i].uid, src.v[i].flags, src.v[i].kw };
            i++;
            j++;
        }
    }
    /* A client that synchronised with the source holds its HIGHESTMODSEQ
     * and asks for the changes since (RFC 7162 3.1.4.1, 3.2.5): every
     * message and change written here must get a greater mod-sequence, so
     * that such a client refetches their flags (never a body) instead of
     * missing them. */
    store_status pre;
    if ((rc = store_mbox_status(mb, &pre)) < 0)
        goto out;
    if (ss.highestmodseq > pre.highestmodseq &&
        (rc = store_mbox_set_highestmodseq(mb, ss.highestmodseq)) < 0) {
        admin_err("%s: cannot set HIGHESTMODSEQ of '%s' to %llu: %s", r->user, m->name,
                  (unsigned long long)ss.highestmodseq, store_strerror(rc));
        goto out;
    }
    if (nch && (rc = apply_flags(r, mb, m->name, ch, nch)) < 0)
        goto out;
    if (ngone && (rc = expunge(r, mb, m->name, gone, ngone)) < 0)
        goto out;
    if (ncopy && (rc = copy_new(r, m, mb, copy, copy_sizes, ncopy, copy_bytes, uidnext, &ss)) < 0)
        goto out;
    if (mig_stop)
        goto out;
    store_status st;
    if ((rc = store_mbox_status(mb, &st)) < 0)
        goto out;
    if (st.uidnext < ss.uidnext && (rc = store_mbox_set_uidnext(mb, ss.uidnext)) < 0) {
        admin_err("%s: cannot set UIDNEXT of '%s' to %u: %s", r->user, m->name, ss.uidnext,
                  store_strerror(rc));
        goto out;
    }
    if (nlost) {
        admin_err("%s: %s: %zu message(s) at the source have UIDs below this copy's UIDNEXT "
                  "and cannot be copied with their UIDs (expunged here?)", r->user, m->name,
                  nlost);
        r->s.errors++;
    }
    if (nconflict) {
        admin_err("%s: %s: %zu UID(s) hold another message here than at the source (mail "
                  "delivered to both after the cut-over?): left alone", r->user, m->name,
                  nconflict);
        r->s.errors++;
    }
    if (nkept)
        printf("%s: %s: %zu message(s) here above the source's UIDNEXT kept (delivered here)\n",
               r->user, m->name, nkept);
    e = mig_state_find(&r->st, m->name);
    if (!e)
        e = mig_state_add(&r->st, m->name);
    if (!e) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = store_mbox_status(mb, &st)) < 0)
        goto out;
    e->uidvalidity = ss.uidvalidity;
    e->highestmodseq = ss.highestmodseq;
    e->copy_modseq = st.highestmodseq;
    e->seen = true;
    if (src.n && src.v[src.n - 1].uid > e->last_uid)
        e->last_uid = src.v[src.n - 1].uid;
    r->s.mailboxes++;
    rc = mig_state_save(&r->st);
    if (rc < 0)
        admin_err("%s: cannot write the state file %s: %s", r->user, r->st.path,
                  strerror(-rc));
out:
    if (mb)
        store_mbox_close(mb);
    listing_free(&src);
    listing_free(&dst);
    free(copy);
    free(copy_sizes);
    free(gone);
    free(ch);
    return rc;
}
