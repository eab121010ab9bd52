/* core/server/cmd_message.c — APPEND, CLOSE, UNSELECT, EXPUNGE, STORE, COPY and
 * MOVE (a big COPY/MOVE runs on the sync pool). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/auth/authpool.h"
#include "core/base/log.h"
#include "core/fetch/mime_encode.h"
#include "core/server/session.h"
#include "store/crlf.h"

/* ---- flags ------------------------------------------------------------------- */

static const struct { const char *name; uint32_t bit; } sysflags[] = {
    {"\\Seen", STORE_F_SEEN}, {"\\Answered", STORE_F_ANSWERED},
    {"\\Flagged", STORE_F_FLAGGED}, {"\\Deleted", STORE_F_DELETED},
    {"\\Draft", STORE_F_DRAFT},
};

/* Parse flags (a list, or bare flags) into system bits and keyword names
 * (pointers into args).  -EINVAL for something that is not a flag. */
static int parse_flags(const imap_arg *v, size_t n, uint32_t *flags,
                       const char ***kw, size_t *nkw)
{
    *flags = 0;
    *nkw = 0;
    *kw = calloc(n ? n : 1, sizeof **kw);
    if (!*kw)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        /* In a flag position NIL is no nil: flag-keyword = atom (RFC 9051
         * formal syntax), and "NIL" is an atom there like any other. */
        if (v[i].type != IMAP_ARG_ATOM && v[i].type != IMAP_ARG_NIL)
            return -EINVAL;
        const char *f = v[i].s;
        if (f[0] == '\\') {
            size_t k;
            for (k = 0; k < sizeof sysflags / sizeof *sysflags; k++)
                if (!strcasecmp(f, sysflags[k].name))
                    break;
            if (k == sizeof sysflags / sizeof *sysflags)
                return -EINVAL;     /* \Recent cannot be stored, nor unknown \x */
            *flags |= sysflags[k].bit;
            continue;
        }
        if (strlen(f) > STORE_MAX_KEYWORD_LEN || strpbrk(f, "(){%*\"\\]"))
            return -EINVAL;
        (*kw)[(*nkw)++] = f;
    }
    return 0;
}

/* Digits s[0..n) as a number, or -1 if any is not a digit. */
static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int days_in_month(int y, int m)
{
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 1 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0) ? 29 : dm[m];
}

/* APPEND's date-time, exactly RFC 9051's grammar:
 *   date-day-fixed "-" date-month "-" date-year SP time SP zone
 *   date-day-fixed = (SP DIGIT) / 2DIGIT, date-year = 4DIGIT,
 *   time = 2DIGIT ":" 2DIGIT ":" 2DIGIT, zone = ("+" / "-") 4DIGIT
 * -> seconds and zone minutes.  The month name is case-insensitive, as
 * every literal string of the grammar is (RFC 5234 2.3), so "01-jan-2024"
 * is valid; a day the month does not have (31-Feb-2024) is not a date and
 * gets BAD, where mktime-style normalization would store 2-Mar. */
static int parse_datetime(const char *s, int64_t *t, int16_t *tz)
{
    if (strlen(s) != 26 || s[2] != '-' || s[6] != '-' || s[11] != ' ' || s[14] != ':' ||
        s[17] != ':' || s[20] != ' ' || (s[21] != '+' && s[21] != '-'))
        return -EINVAL;
    int d = s[0] == ' ' ? digits(s + 1, 1) : digits(s, 2);
    int month = store_month_parse(s + 3, 3);
    int y = digits(s + 7, 4), hh = digits(s + 12, 2), mm = digits(s + 15, 2);
    int ss = digits(s + 18, 2), z = digits(s + 22, 4);
    if (d < 1 || month < 0 || y < 1970 || hh < 0 || mm < 0 || ss < 0 || z < 0 ||
        d > days_in_month(y, month) || hh > 23 || mm > 59 || ss > 60 || z % 100 > 59 ||
        z > 2359)
        return -EINVAL;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = month, .tm_mday = d,
                    .tm_hour = hh, .tm_min = mm, .tm_sec = ss};
    int zm = (z / 100) * 60 + z % 100;
    if (s[21] == '-')
        zm = -zm;
    *t = (int64_t)timegm(&tm) - (int64_t)zm * 60;
    *tz = (int16_t)zm;
    return 0;
}

/* ---- APPEND ------------------------------------------------------------------- */

void cmd_append(imap_cmd *c)
{
    session *s = c->s;
    const char *tag = c->tag;
    imap_args *a = c->a;
    imap_arg *args = c->args;
    size_t nargs = c->nargs;
    if (nargs < 2) {
        sess_bad(s, tag, "APPEND takes a mailbox and a message");
        return;
    }
    const char *raw = imap_arg_astring(a, &args[0]);
    char *name = raw ? sess_mbox_from_client(s, raw) : NULL;
    if (!name) {
        sess_tagged(s, tag, "NO", "[CANNOT] Invalid mailbox name");
        return;
    }
    store_new_msg *msgs = calloc(nargs, sizeof *msgs);
    const char ***kws = calloc(nargs, sizeof *kws);
    uint32_t *uids = calloc(nargs, sizeof *uids);
    char **conv = calloc(nargs, sizeof *conv);     /* CRLF copies; owned */
    size_t n = 0;
    store_mbox *mb = NULL;
    if (!msgs || !kws || !uids || !conv) {
        sess_tagged(s, tag, "NO", "[SERVERBUG] Out of memory");
        goto out;
    }
    for (size_t i = 1; i < nargs;) {
        store_new_msg *m = &msgs[n];
        if (args[i].type == IMAP_ARG_LIST) {
            if (parse_flags(args[i].list, args[i].nlist, &m->flags, &kws[n], &m->nkeywords) < 0) {
                sess_bad(s, tag, "Bad flag list");
                goto out;
            }
            m->keywords = kws[n];
            i++;
        }
        if (i < nargs && args[i].type == IMAP_ARG_STRING) {
            if (parse_datetime(args[i].s, &m->internal_date, &m->tz_min) < 0) {
                sess_bad(s, tag, "Bad date-time");
                goto out;
            }
            i++;
        }
        const imap_arg *lit = i < nargs ? &args[i] : NULL;
        /* RFC 6855: UTF8 (~{n}) carries a message with UTF-8 headers. */
        if (lit && lit->type == IMAP_ARG_ATOM && imap_arg_is(lit, "UTF8") && i + 1 < nargs &&
            args[i + 1].type == IMAP_ARG_LIST && args[i + 1].nlist == 1) {
            i++;
            lit = &args[i].list[0];
        }
        if (!lit || lit->type != IMAP_ARG_LITERAL) {
            sess_bad(s, tag, "Message literal expected");
            goto out;
        }
        if (lit->len == 0) {
            sess_tagged(s, tag, "NO", "[CANNOT] Empty messages are not accepted");
            goto out;
        }
        /* RFC 3516 4.4: "The APPEND command is extended to allow the client
         * to append data containing NULs by using the <literal8> syntax";
         * a plain literal is *CHAR8, "any OCTET except NUL" (RFC 9051 9,
         * RFC 3501 9), so a NUL there is a syntax error: BAD, and the
         * client learns to use ~{n} (BINARY is offered). */
        if (!lit->binary && memchr(lit->s, '\0', lit->len)) {
            sess_bad(s, tag, "NUL octets in a message literal: use a literal8 ~{n}");
            goto out;
        }
        m->data = lit->s;
        m->len = lit->len;
        /* Store CRLF, as import does: BODY[], RFC822.SIZE ("the number of
         * octets in the message when the message is expressed in [RFC5322]
         * format", RFC 9051 2.3.4), BODYSTRUCTURE and BINARY.SIZE then all
         * describe the same bytes.  A literal8 may hold binary parts whose
         * LF bytes are data, and RFC 3516 4.4 forbids a transformation
         * that loses data: it is stored as sent. */
        size_t clen = lit->binary ? lit->len : store_crlf_len(lit->s, lit->len);
        if (lit->binary && memchr(lit->s, '\0', lit->len)) {
            /* Parts holding NULs could reach a client only through BINARY:
             * they are stored re-encoded as base64 (core/fetch/mime_encode.h
             * says why this is allowed and why at APPEND). */
            store_buf b = {0};
            size_t nconv;
            if (mime_binary_to_base64(lit->s, lit->len, &b, &nconv) < 0) {
                sess_tagged(s, tag, "NO", "[SERVERBUG] Out of memory");
                goto out;
            }
            conv[n] = (char *)b.data;
            m->data = conv[n];
            m->len = b.len;
            if (b.len > s->srv->limits.max_literal) {
                sess_tagged(s, tag, "NO", "[TOOBIG] Message too big once its binary parts are "
                            "encoded as base64 (APPENDLIMIT=%zu)", s->srv->limits.max_literal);
                goto out;
            }
        } else if (clen != lit->len) {
            /* APPENDLIMIT bounds what is stored, the safe reading: RFC 4469
             * 4.2 answers TOOBIG when "the resulting message exceeds a
             * server-specific message size limit", and every message in a
             * mailbox then fits the limit a client or a copy relies on. */
            if (clen > s->srv->limits.max_literal) {
                sess_tagged(s, tag, "NO", "[TOOBIG] Message too big once stored with CRLF "
                            "line ends (APPENDLIMIT=%zu)", s->srv->limits.max_literal);
                goto out;
            }
            conv[n] = malloc(clen);
            if (!conv[n]) {
                sess_tagged(s, tag, "NO", "[SERVERBUG] Out of memory");
                goto out;
            }
            m->len = store_crlf_copy(conv[n], lit->s, lit->len);
            m->data = conv[n];
        }
        if (!m->internal_date) {
            m->internal_date = time(NULL);
            struct tm lt;
            time_t now = (time_t)m->internal_date;
            localtime_r(&now, &lt);
            m->tz_min = (int16_t)(lt.tm_gmtoff / 60);
        }
        n++;
        i++;
    }
    int rc = store_mbox_open(s->su, name, &mb);
    if (rc == -ENOENT) {
        sess_tagged(s, tag, "NO", "[TRYCREATE] No such mailbox");
        goto out;
    }
    if (rc < 0) {
        sess_store_error(s, tag, rc, "append");
        goto out;
    }
    if (quota_refuse_append(s, tag, msgs, n))
        goto out;
    rc = store_append(mb, msgs, n, uids);
    if (rc < 0) {
        sess_store_error(s, tag, rc, "append");
        goto out;
    }
    sess_changed(s, mb);
    store_status st;
    uint32_t uv = store_mbox_status(mb, &st) == 0 ? st.uidvalidity : 0;
    sess_update_req u = {0};
    imap_out_printf(&u.tail, "%s OK [APPENDUID %u ", tag, uv);
    imap_out_set(&u.tail, uids, n);
    imap_out_printf(&u.tail, "] APPEND completed\r\n");
    if (mb == s->mb) {
        cmd_update(s, c->def, &u);     /* RFC 9051 6.3.12: EXISTS, at least */
    } else {
        imap_out_add(&s->out, u.tail.p, u.tail.len);
        imap_out_free(&u.tail);
    }
out:
    if (mb)
        store_mbox_close(mb);
    if (kws)
        for (size_t i = 0; i < nargs; i++)
            free(kws[i]);
    free(kws);
    if (conv)
        for (size_t i = 0; i < nargs; i++)
            free(conv[i]);
    free(conv);
    free(msgs);
    free(uids);
    free(name);
}

/* ---- a big STORE / EXPUNGE off the worker ----
 * Changing the flags of a million messages, or expunging half a million, is
 * one atomic store call of tens of milliseconds (measured: ~50 ms for
 * STORE 1:* on 10^6, and every other session on the worker waited that
 * long).  It cannot be cut (the write is all or nothing), so, as a big
 * COPY, it runs on the sync pool, durability included, with its own
 * reference to the mailbox; the session reads no further command until
 * the answer is out (the answer itself then goes out in steps), and a
 * session that goes away meanwhile is freed when the job ends. */
#define WRITE_POOL_MIN 16384    /* messages; fewer take well under 1 ms */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The store lists UIDs in index order, which is ascending: qsort of
 * 500,000 sorted UIDs still took ~10 ms on the worker, the check is O(n). */
static void sort_uids(uint32_t *v, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (v[i - 1] > v[i]) {
            qsort(v, n, sizeof *v, cmp_u32);
            return;
        }
}

typedef struct write_job {
    session *s;
    store_mbox *mb;             /* owned reference */
    bool expunge;               /* else STORE */
    bool close;                 /* EXPUNGE for CLOSE: then unselect */
    store_range *r;             /* owned; NULL for EXPUNGE of all \Deleted */
    size_t nr;
    store_flag_op fop;
    uint32_t flags;
    const char **kw;            /* owned array, strings in kwbuf */
    size_t nkw;
    char *kwbuf;                /* owned */
    uint64_t unchangedsince;
    bool silent, uid;
    int rc, sync_rc;
    uint64_t modseq;
    store_uidlist changed, modified, expunged;
    char tag[];
} write_job;

static void write_job_free(write_job *j)
{
    if (j->mb)
        store_mbox_close(j->mb);
    free(j->r);
    free(j->kw);
    free(j->kwbuf);
    store_uidlist_free(&j->changed);
    store_uidlist_free(&j->modified);
    store_uidlist_free(&j->expunged);
    free(j);
}

/* Messages of the view in the ranges, counted up to `enough`. */
static size_t view_count(session *s, const store_range *r, size_t nr, size_t enough)
{
    size_t count = 0;
    for (size_t k = 0; k < nr && count < enough; k++)
        count += sess_view_lower(s, r[k].hi == UINT32_MAX ? r[k].hi : r[k].hi + 1) -
                 sess_view_lower(s, r[k].lo);
    return count;
}

/* A reference of our own to the selected mailbox, checked to be that one
 * (its name may have been given to another meanwhile), or NULL. */
static store_mbox *selected_ref(session *s)
{
    store_mbox *mb = NULL;
    if (store_mbox_open(s->su, s->mbname, &mb) < 0)
        return NULL;
    if (mb != s->mb) {
        store_mbox_close(mb);
        return NULL;
    }
    return mb;
}

static void write_work(void *arg)
{
    write_job *j = arg;
    store_defer d;
    store_defer_begin(&d);
    if (j->expunge)
        j->rc = store_expunge(j->mb, j->r, j->nr, true, &j->expunged, NULL);
    else
        j->rc = store_flags(j->mb, j->r, j->nr, j->fop, j->flags, j->kw, j->nkw,
                            j->unchangedsince, &j->changed, &j->modified, &j->modseq);
    j->sync_rc = sess_defer_flush(&d);
}

static void store_answer(session *s, const char *tag, int rc, uint64_t modseq,
                         store_uidlist *changed, store_uidlist *modified, store_range *r,
                         size_t nr, bool silent, bool uid, bool cond,
                         uint64_t unchangedsince);
static void expunge_answer(session *s, const char *tag, int rc, store_uidlist *x);
static void close_answer(session *s, const char *tag, int rc, const store_uidlist *x);

static void write_done(void *arg, int status)
{
    write_job *j = arg;
    session *s = j->s;
    s->pool_busy = false;
    if (s->dead) {
        write_job_free(j);
        sess_free(s);
        return;
    }
    if (sess_flush_failed(s, j->sync_rc)) {
        /* BYE said: no answer for what may not be on disk */
    } else if (j->close) {
        close_answer(s, j->tag, status < 0 ? status : j->rc, &j->expunged);
    } else if (j->expunge) {
        expunge_answer(s, j->tag, status < 0 ? status : j->rc, &j->expunged);
    } else {
        store_answer(s, j->tag, status < 0 ? status : j->rc, j->modseq, &j->changed,
                     &j->modified, j->r, j->nr, j->silent, j->uid, j->unchangedsince != 0,
                     j->unchangedsince);
        j->r = NULL;    /* the answer's */
    }
    write_job_free(j);
    sess_resume_input(s);
}

/* Hand a big write to the pool: 0 if taken (the job owns what it was
 * given: r, and copies of the keywords), or -errno to write inline. */
static int write_submit(session *s, write_job *j)
{
    j->s = s;
    j->mb = selected_ref(s);
    if (!j->mb)
        return -ESTALE;
    int rc = authpool_submit(s->srv->syncpool, write_work, j, write_done, s->srv->net,
                             net_conn_worker(s->conn));
    if (rc < 0) {
        store_mbox_close(j->mb);
        j->mb = NULL;
        return rc;
    }
    s->pool_busy = true;
    sess_hold_input(s);
    return 0;
}

static write_job *write_job_new(const char *tag)
{
    size_t taglen = strlen(tag);
    write_job *j = calloc(1, sizeof *j + taglen + 1);
    if (j)
        memcpy(j->tag, tag, taglen + 1);
    return j;
}

/* ---- CLOSE / UNSELECT / EXPUNGE -------------------------------------------- */

void cmd_close(imap_cmd *c)
{
    session *s = c->s;
    const char *tag = c->tag;
    store_uidlist x = {0};
    int rc = 0;
    if (!s->readonly) {
        if (s->nview >= WRITE_POOL_MIN) {
            write_job *j = write_job_new(tag);
            if (j) {
                j->expunge = j->close = true;
                if (write_submit(s, j) == 0)
                    return;
                write_job_free(j);
            }
        }
        rc = store_expunge(s->mb, NULL, 0, true, &x, NULL);
    }
    close_answer(s, tag, rc, &x);
    store_uidlist_free(&x);
}

/* CLOSE announces nothing (RFC 3501 6.4.2): the expunge, then unselect.  A
 * failed expunge closes the mailbox all the same, as before. */
static void close_answer(session *s, const char *tag, int rc, const store_uidlist *x)
{
    if (rc == 0 && x->n)
        sess_changed(s, s->mb);
    sess_unselect(s);
    sess_tagged(s, tag, "OK", "CLOSE completed");
}

void cmd_unselect(imap_cmd *c)
{
    session *s = c->s;
    const char *tag = c->tag;
    sess_unselect(s);
    sess_tagged(s, tag, "OK", "UNSELECT completed");
}

/* The answer of an EXPUNGE whose store_expunge returned rc and x. */
static void expunge_answer(session *s, const char *tag, int rc, store_uidlist *x)
{
    if (rc < 0) {
        sess_store_error(s, tag, rc, "expunge");
        return;
    }
    if (x->n) {
        sort_uids(x->uids, x->n);
        sess_changed(s, s->mb);
    }
    sess_update_req u = {.gone = x->uids, .ngone = x->n};
    /* RFC 7162 3.2.7, 3.2.9: "If at least one message got expunged and
     * QRESYNC was enabled, the server MUST send the updated per-mailbox
     * modification sequence using the HIGHESTMODSEQ response code ... in
     * the tagged OK response" (the value once the updates before it are
     * out: sess_update_req.tail_hms) */
    u.tail_hms = s->qresync && x->n;
    u.tail_hms_at = strlen(tag) + 4;
    x->uids = NULL;
    x->n = 0;
    imap_out_printf(&u.tail, "%s OK EXPUNGE completed\r\n", tag);
    cmd_update(s, &cmd_table[CMD_EXPUNGE], &u);
}

void cmd_expunge(imap_cmd *c)
{
    session *s = c->s;
    const char *tag = c->tag;
    imap_arg *args = c->args;
    size_t nargs = c->nargs;
    bool uid = c->uid;
    /* the plain form's arguments are refused by the dispatcher (no_args) */
    if (uid && (nargs != 1 || args[0].type != IMAP_ARG_ATOM)) {
        sess_bad(s, tag, "UID EXPUNGE takes a UID set");
        return;
    }
    if (cmd_read_only(c))
        return;
    store_range *r = NULL;
    size_t nr = 0;
    if (uid && sess_set_to_uids(s, args[0].s, true, &r, &nr) < 0) {
        sess_bad(s, tag, "Bad UID set");
        return;
    }
    if (uid && !nr) {
        free(r);
        expunge_answer(s, tag, 0, &(store_uidlist){0});
        return;
    }
    if ((uid ? view_count(s, r, nr, WRITE_POOL_MIN) : s->nview) >= WRITE_POOL_MIN) {
        write_job *j = write_job_new(tag);
        if (j) {
            j->expunge = true;
            j->r = r;
            j->nr = nr;
            if (write_submit(s, j) == 0)
                return;
            j->r = NULL;
            write_job_free(j);
        }
    }
    store_uidlist x = {0};
    int rc = store_expunge(s->mb, uid ? r : NULL, nr, true, &x, NULL);
    expunge_answer(s, tag, rc, &x);
    store_uidlist_free(&x);
    free(r);
}

/* ---- STORE ----------------------------------------------------------------------- */

/* Sorted UIDs as one-UID ranges (malloc'd), for the echo of a STORE. */
static store_range *uids_ranges(const store_uidlist *l)
{
    store_range *r = malloc((l->n ? l->n : 1) * sizeof *r);
    if (r)
        for (size_t i = 0; i < l->n; i++)
            r[i] = (store_range){l->uids[i], l->uids[i]};
    return r;
}

/* The answer of a STORE whose store_flags returned rc, modseq, changed
 * and modified; cond: it had UNCHANGEDSINCE.  r (the ranges named, nr of
 * them) is taken over. */
static void store_answer(session *s, const char *tag, int rc, uint64_t modseq,
                         store_uidlist *changed, store_uidlist *modified, store_range *r,
                         size_t nr, bool silent, bool uid, bool cond,
                         uint64_t unchangedsince)
{
    if (rc < 0) {
        sess_store_error(s, tag, rc, "store");
        free(r);
        return;
    }
    /* Every message the conditional STORE changed had a modseq no newer
     * than UNCHANGEDSINCE; if the client had been told everything up to
     * there, it knew their flags, and the MODSEQ line below is all it
     * needs of them (not their FLAGS again among the others' changes). */
    uint64_t known = cond && unchangedsince <= s->modseq_seen ? modseq : 0;
    if (modseq) {
        if (modseq == s->modseq_seen + 1)
            s->modseq_seen = modseq;    /* only our own change: announced here */
        sess_changed(s, s->mb);
    }
    sort_uids(modified->uids, modified->n);
    /* The FETCH lines of the messages named (a line each: in steps), the
     * others' changes, then the answer. */
    sess_update_req u = {.echo_uid = uid};
    bool skip_modified = false;     /* the echo leaves out MODIFIED's */
    if (!silent && nr) {
        u.echo = r;
        u.necho = nr;
        r = NULL;
    } else if (silent && s->condstore && cond && nr) {
        /* RFC 7162 3.1.3: for each message the conditional operation was
         * performed on, "An untagged FETCH response MUST be sent, even if
         * the .SILENT suffix is specified, and the response MUST include
         * the MODSEQ message data item"; the ones that failed the test
         * are in MODIFIED instead.  A message the operation left as it
         * was (+FLAGS of a flag it has) keeps its mod-sequence (3.1.11)
         * and is still answered with it; Dovecot 2.3 leaves it out. */
        u.echo = r;
        u.necho = nr;
        r = NULL;
        u.echo_modseq_only = true;
        u.echo_known_modseq = known;
        skip_modified = true;
    } else if (silent && s->condstore && changed->n) {
        /* RFC 7162 Example 14: once CONDSTORE is enabled, STORE
         * +FLAGS.SILENT answers "* 7 FETCH (MODSEQ (...))" for what it
         * changed, so the client's cache learns the new mod-sequence. */
        sort_uids(changed->uids, changed->n);
        u.echo = uids_ranges(changed);
        u.necho = u.echo ? changed->n : 0;
        u.echo_modseq_only = true;
    }
    free(r);
    if (modified->n) {
        /* RFC 7162 3.1.3: "the message set (for STORE) or set of UIDs (for
         * UID STORE) of all messages that failed the UNCHANGEDSINCE test".
         * The view does not lose messages before this answer (no EXPUNGE
         * while answering STORE), so the numbers hold. */
        size_t n = modified->n;
        if (skip_modified) {
            u.echo_skip = malloc(n * sizeof *u.echo_skip);
            if (u.echo_skip) {
                memcpy(u.echo_skip, modified->uids, n * sizeof *u.echo_skip);
                u.nechoskip = n;
            } else {
                /* no MODSEQ lines rather than some for messages it did
                 * not write: the tagged answer below stays exact */
                free(u.echo);
                u.echo = NULL;
                u.necho = 0;
            }
        }
        if (!uid) {     /* UIDs to message numbers, in place: both ascend */
            size_t k = 0;
            for (size_t i = 0; i < n; i++) {
                uint32_t q = sess_seq_of_uid(s, modified->uids[i]);
                if (q)
                    modified->uids[k++] = q;
            }
            n = k;
        }
        if (n) {
            imap_out_printf(&u.tail, "%s OK [MODIFIED ", tag);
            imap_out_set(&u.tail, modified->uids, n);
            imap_out_printf(&u.tail, "] Conditional STORE failed for some\r\n");
        } else {
            imap_out_printf(&u.tail, "%s OK STORE completed\r\n", tag);
        }
    } else {
        imap_out_printf(&u.tail, "%s OK STORE completed\r\n", tag);
    }
    cmd_update(s, &cmd_table[CMD_STORE], &u);
}

void cmd_store(imap_cmd *c)
{
    session *s = c->s;
    const char *tag = c->tag;
    imap_arg *args = c->args;
    size_t nargs = c->nargs;
    bool uid = c->uid;
    size_t i = 1;
    uint64_t unchangedsince = 0;
    bool cond = false;
    if (nargs >= 2 && args[1].type == IMAP_ARG_LIST) {
        const imap_arg *l = &args[1];
        if (l->nlist != 2 || !imap_arg_is(&l->list[0], "UNCHANGEDSINCE") ||
            imap_arg_number(&l->list[1], &unchangedsince) < 0) {
            sess_bad(s, tag, "Bad STORE modifier");
            return;
        }
        i = 2;
        cond = true;
    }
    if (nargs < i + 2 || args[0].type != IMAP_ARG_ATOM || args[i].type != IMAP_ARG_ATOM) {
        sess_bad(s, tag, "STORE takes a set, an operation and flags");
        return;
    }
    const char *op = args[i].s;
    store_flag_op fop;
    if (*op == '+') {
        fop = STORE_FLAGS_ADD;
        op++;
    } else if (*op == '-') {
        fop = STORE_FLAGS_REMOVE;
        op++;
    } else {
        fop = STORE_FLAGS_SET;
    }
    bool silent;
    if (!strcasecmp(op, "FLAGS"))
        silent = false;
    else if (!strcasecmp(op, "FLAGS.SILENT"))
        silent = true;
    else {
        sess_bad(s, tag, "Unknown STORE operation");
        return;
    }
    const imap_arg *fl = &args[i + 1];
    size_t nfl = nargs - i - 1;
    if (fl->type == IMAP_ARG_LIST) {
        if (nfl != 1) {
            sess_bad(s, tag, "Bad flag list");
            return;
        }
        nfl = fl->nlist;
        fl = fl->list;
    }
    uint32_t flags;
    const char **kw = NULL;
    size_t nkw;
    store_range *r = NULL;
    size_t nr = 0;
    store_uidlist changed = {0}, modified = {0};
    if (parse_flags(fl, nfl, &flags, &kw, &nkw) < 0) {
        sess_bad(s, tag, "Bad flags");
        goto out;
    }
    int rc = sess_set_to_uids(s, args[0].s, uid, &r, &nr);
    if (rc < 0) {
        sess_set_error(s, tag, rc);
        goto out;
    }
    if (cmd_read_only(c))
        goto out;
    /* RFC 7162 3.1: STORE (UNCHANGEDSINCE) is a CONDSTORE enabling
     * command */
    if (cond)
        sess_condstore_enable(s, &s->out);
    if (cond && !unchangedsince) {
        /* RFC 7162 3.1.3: "Use of UNCHANGEDSINCE with a modification
         * sequence of 0 always fails if the metadata item exists.  A
         * system flag MUST always be considered existent": every message
         * named fails (every modseq here is at least 1), nothing is
         * written. */
        for (size_t k = 0; k < nr; k++)
            for (uint32_t v = sess_view_lower(s, r[k].lo); v < s->nview && s->view[v] <= r[k].hi;
                 v++) {
                if (modified.n == modified.cap) {
                    size_t cap = modified.cap ? modified.cap * 2 : 16;
                    uint32_t *nu = realloc(modified.uids, cap * sizeof *nu);
                    if (!nu) {
                        sess_tagged(s, tag, "NO", "[SERVERBUG] Out of memory");
                        goto out;
                    }
                    modified.uids = nu;
                    modified.cap = cap;
                }
                modified.uids[modified.n++] = s->view[v];
            }
        store_answer(s, tag, 0, 0, &changed, &modified, r, nr, silent, uid, cond, 0);
        r = NULL;
        goto out;
    }
    char *kwcopy = NULL;
    if (nr && view_count(s, r, nr, WRITE_POOL_MIN) >= WRITE_POOL_MIN) {
        write_job *j = write_job_new(tag);
        size_t kwlen = 0;
        for (size_t k = 0; k < nkw; k++)
            kwlen += strlen(kw[k]) + 1;
        char *kwbuf = j ? malloc(kwlen ? kwlen : 1) : NULL;
        if (kwbuf) {
            /* the keywords point into the command's arguments, freed
             * when the handler returns: the job has its own copies */
            char *p = kwbuf;
            for (size_t k = 0; k < nkw; k++) {
                size_t n = strlen(kw[k]) + 1;
                memcpy(p, kw[k], n);
                kw[k] = p;
                p += n;
            }
            *j = (write_job){.r = r, .nr = nr, .fop = fop, .flags = flags, .kw = kw,
                             .nkw = nkw, .kwbuf = kwbuf, .unchangedsince = unchangedsince,
                             .silent = silent, .uid = uid};
            memcpy(j->tag, tag, strlen(tag) + 1);
            if (write_submit(s, j) == 0)
                return;
            kwcopy = kwbuf;     /* kw points there now: freed at the end */
            j->r = NULL;
            j->kw = NULL;
            j->kwbuf = NULL;
            write_job_free(j);
        } else {
            free(j);
        }
    }
    uint64_t modseq = 0;
    if (nr)
        rc = store_flags(s->mb, r, nr, fop, flags, kw, nkw, unchangedsince, &changed,
                         &modified, &modseq);
    store_answer(s, tag, rc, modseq, &changed, &modified, r, nr, silent, uid, cond,
                 unchangedsince);
    r = NULL;
    free(kwcopy);
out:
    store_uidlist_free(&changed);
    store_uidlist_free(&modified);
    free(kw);
    free(r);
}

/* ---- COPY / MOVE -------------------------------------------------------------- */

/* The answer of a COPY or MOVE whose store_copy returned rc. */
static void copy_answer(session *s, const char *tag, bool move, store_mbox *dst, int rc,
                        const store_uidlist *su, const store_uidlist *du)
{
    const char *verb = move ? "MOVE" : "COPY";
    if (rc < 0) {
        sess_store_error(s, tag, rc, verb);
        return;
    }
    if (du->n)
        sess_changed(s, dst);
    imap_out cu = {0};
    if (su->n) {
        store_status st;
        imap_out_printf(&cu, "[COPYUID %u ", store_mbox_status(dst, &st) == 0 ? st.uidvalidity : 0);
        imap_out_set(&cu, su->uids, su->n);
        imap_out_printf(&cu, " ");
        imap_out_set(&cu, du->uids, du->n);
        imap_out_printf(&cu, "] ");
    }
    sess_update_req u = {0};
    if (move) {
        /* resp-text = ["[" resp-text-code "]" SP] text (RFC 3501 formal
         * syntax): the code alone is not a response; cu ends with "] ". */
        if (su->n)
            imap_out_printf(&s->out, "* OK %.*sMoved\r\n", (int)cu.len, cu.p);
        /* The source UIDs come in the order of the COPYUID answer. */
        u.gone = su->n ? malloc(su->n * sizeof *u.gone) : NULL;
        if (u.gone) {
            memcpy(u.gone, su->uids, su->n * sizeof *u.gone);
            sort_uids(u.gone, su->n);
            u.ngone = su->n;
        }   /* else: the expunges are found as another session's would be */
        if (su->n)
            sess_changed(s, s->mb);
        /* RFC 6851 4.4: "If at least one message was moved, the server
         * MUST send the updated per-mailbox modification sequence using
         * the HIGHESTMODSEQ response code ... in the tagged or untagged
         * OK response" (under QRESYNC, as for EXPUNGE: RFC 7162 3.2.7) */
        u.tail_hms = s->qresync && su->n;
        u.tail_hms_at = strlen(tag) + 4;
        imap_out_printf(&u.tail, "%s OK MOVE completed\r\n", tag);
    } else {
        imap_out_printf(&u.tail, "%s OK %.*sCOPY completed\r\n", tag, (int)cu.len,
                        cu.p ? cu.p : "");
    }
    cmd_update(s, &cmd_table[move ? CMD_MOVE : CMD_COPY], &u);
    imap_out_free(&cu);
}

/* ---- a big COPY / MOVE off the worker ----
 * Copying many messages is seconds of disk work that cannot be cut into
 * slices (the copy is atomic: all of it is acknowledged or none), so it runs
 * on the sync pool, durability included, while the worker serves the other
 * sessions; this one reads no further command until the answer is out.  The
 * job holds its own references to both mailboxes: the session may go away
 * meanwhile (then the job's completion frees it). */
#define COPY_POOL_MIN 256       /* messages; smaller copies run inline */

typedef struct copy_job {
    session *s;
    store_mbox *src, *dst;      /* owned references */
    store_range *r;             /* owned */
    size_t nr;
    bool move;
    int rc, sync_rc;
    store_uidlist su, du;
    char tag[];
} copy_job;

static void copy_job_free(copy_job *j)
{
    store_mbox_close(j->src);
    store_mbox_close(j->dst);
    store_uidlist_free(&j->su);
    store_uidlist_free(&j->du);
    free(j->r);
    free(j);
}

static void copy_work(void *arg)
{
    copy_job *j = arg;
    store_defer d;
    store_defer_begin(&d);
    j->rc = store_copy(j->src, j->r, j->nr, j->dst, j->move, &j->su, &j->du);
    j->sync_rc = sess_defer_flush(&d);
}

static void copy_done(void *arg, int status)
{
    copy_job *j = arg;
    session *s = j->s;
    s->pool_busy = false;
    if (s->dead) {
        copy_job_free(j);
        sess_free(s);
        return;
    }
    if (!sess_flush_failed(s, j->sync_rc))
        copy_answer(s, j->tag, j->move, j->dst, status < 0 ? status : j->rc, &j->su, &j->du);
    copy_job_free(j);
    sess_resume_input(s);
}

/* Hand a big copy to the pool.  Returns 0 if it was taken (ownership of
 * r and dst passes to the job), or -errno to copy inline instead. */
static int copy_submit(session *s, const char *tag, store_range *r, size_t nr,
                       store_mbox *dst, bool move)
{
    size_t count = 0;
    for (size_t k = 0; k < nr && count < COPY_POOL_MIN; k++)
        count += sess_view_lower(s, r[k].hi == UINT32_MAX ? r[k].hi : r[k].hi + 1) -
                 sess_view_lower(s, r[k].lo);
    if (count < COPY_POOL_MIN)
        return -EAGAIN;
    /* Our own reference to the selected mailbox, checked to be that one
     * (its name may have been given to another meanwhile). */
    store_mbox *src = NULL;
    if (store_mbox_open(s->su, s->mbname, &src) < 0)
        return -ENOENT;
    if (src != s->mb) {
        store_mbox_close(src);
        return -ESTALE;
    }
    size_t taglen = strlen(tag);
    copy_job *j = calloc(1, sizeof *j + taglen + 1);
    if (!j) {
        store_mbox_close(src);
        return -ENOMEM;
    }
    j->s = s;
    j->src = src;
    j->dst = dst;
    j->r = r;
    j->nr = nr;
    j->move = move;
    memcpy(j->tag, tag, taglen + 1);
    int rc = authpool_submit(s->srv->syncpool, copy_work, j, copy_done, s->srv->net,
                             net_conn_worker(s->conn));
    if (rc < 0) {
        store_mbox_close(src);
        free(j);
        return rc;
    }
    s->pool_busy = true;
    sess_hold_input(s);
    return 0;
}

static void do_copy(imap_cmd *c, bool move)
{
    session *s = c->s;
    const char *tag = c->tag;
    imap_args *a = c->a;
    imap_arg *args = c->args;
    size_t nargs = c->nargs;
    bool uid = c->uid;
    const char *verb = move ? "MOVE" : "COPY";
    if (nargs != 2 || args[0].type != IMAP_ARG_ATOM) {
        sess_bad(s, tag, "%s takes a set and a mailbox", verb);
        return;
    }
    store_range *r = NULL;
    size_t nr = 0;
    int rc = sess_set_to_uids(s, args[0].s, uid, &r, &nr);
    if (rc < 0) {
        sess_set_error(s, tag, rc);
        return;
    }
    const char *raw = imap_arg_astring(a, &args[1]);
    char *name = raw ? sess_mbox_from_client(s, raw) : NULL;
    store_mbox *dst = NULL;
    store_uidlist su = {0}, du = {0};
    if (!name) {
        sess_tagged(s, tag, "NO", "[CANNOT] Invalid mailbox name");
        goto out;
    }
    if (cmd_read_only(c))     /* MOVE; COPY writes elsewhere */
        goto out;
    rc = store_mbox_open(s->su, name, &dst);
    if (rc == -ENOENT) {
        sess_tagged(s, tag, "NO", "[TRYCREATE] No such mailbox");
        goto out;
    }
    if (rc < 0) {
        sess_store_error(s, tag, rc, verb);
        goto out;
    }
    /* MOVE into the selected mailbox itself is a move like any other: RFC
     * 6851 forbids nothing here, and the client learns the new UIDs from
     * COPYUID, the expunge of the old ones and EXISTS of the new. */
    if (quota_refuse_copy(s, tag, r, nr, move))
        goto out;
    if (nr && copy_submit(s, tag, r, nr, dst, move) == 0) {
        r = NULL;       /* the job's now */
        dst = NULL;
        goto out;
    }
    rc = nr ? store_copy(s->mb, r, nr, dst, move, &su, &du) : 0;
    copy_answer(s, tag, move, dst, rc, &su, &du);
out:
    if (dst)
        store_mbox_close(dst);
    store_uidlist_free(&su);
    store_uidlist_free(&du);
    free(name);
    free(r);
}

void cmd_copy(imap_cmd *c)
{
    do_copy(c, false);
}

void cmd_move(imap_cmd *c)
{
    do_copy(c, true);
}
