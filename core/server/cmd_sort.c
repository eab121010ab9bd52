/* core/server/cmd_sort.c — SORT, UID SORT, THREAD and UID THREAD (RFC 5256,
 * RFC 5957): SEARCH, then order the result (core/search/sort.h).
 *
 * In steps, like SEARCH: the search program runs over the view a few
 * messages at a time, then the keys of the matching messages are read from
 * the cache a few messages at a time (no message is parsed), then the
 * order or the thread tree is computed in one go from the prepared keys
 * (O(n log n) comparisons, no I/O; on the sync pool from SORT_POOL_MIN
 * messages on, so the worker's other sessions are not kept waiting), and
 * the answer is written out a slice at a time.  The snapshot and the view stay the same throughout: the
 * session runs nothing else meanwhile. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/auth/authpool.h"
#include "core/search/search.h"
#include "core/search/sort.h"
#include "core/server/qmemo.h"
#include "core/server/search_context.h"
#include "core/server/session.h"
#include "net/net.h"

typedef struct sort_cont {
    imap_search_prog *prog;
    imap_search_result res;
    imap_search_view v;
    store_snap *snap;           /* pinned for the whole command */
    store_cursor cur;
    imap_sort_set set;
    imap_sort_crit crit[IMAP_SORT_MAX_CRIT];
    size_t ncrit;
    imap_thread_alg alg;
    bool thread, uid;
    bool esort;                 /* SORT RETURN (...): answer with ESEARCH */
    imap_search_ret ret;
    uint32_t *nums;             /* ESORT: the numbers in sort order */
    size_t lfrom, lto;          /* ESORT: the ones listed (ALL / PARTIAL) */
    int phase;                  /* 0 search, 1 keys, 2 order, 3 its result, 4 output */
    int order_rc;               /* of the order step when it ran on the pool */
    uint32_t next;              /* search: next sequence number */
    size_t at;                  /* keys: next result; output: next item */
    uint32_t *order;            /* SORT: the numbers to send, in order */
    size_t norder;
    imap_out text;              /* THREAD's rendered data */
    /* The answer kept from an earlier SORT/THREAD of the same messages
     * (qmemo.c), or NULL; its bytes stand for `order` or `text`. */
    qmemo_entry *memo;
    const void *memo_data;
    size_t memo_len;
    bool memo_put;              /* the answer was kept already (on the pool) */
    char scope[2 + 2 * IMAP_SORT_MAX_CRIT];  /* the memo key's question part */
    size_t scope_len;
    char tag[];
} sort_cont;

#define SORT_CHUNK 8            /* messages per evaluation call */
#define SORT_KEYS_CHUNK 16      /* key extractions per unit of work */
#define SORT_OUT_CHUNK 2048     /* numbers per unit of output */
#define THREAD_OUT_CHUNK 16384  /* bytes per unit of output */
/* From this many messages on, the order step (one go, O(n log n): ~60 ms
 * for SORT (DATE) of 10^6 messages, ~0.7 s for SUBJECT, ~1.5 s for THREAD
 * REFERENCES) runs on the sync pool, so the worker goes on serving its
 * other sessions meanwhile. */
#define SORT_POOL_MIN 2000

static void sort_cont_free(void *arg)
{
    sort_cont *sc = arg;
    if (sc->snap)
        store_snap_put(sc->snap);
    imap_search_result_free(&sc->res);
    imap_search_free(sc->prog);
    imap_sort_set_free(&sc->set);
    free(sc->order);
    free(sc->nums);
    imap_out_free(&sc->text);
    qmemo_release(sc->memo);
    free(sc);
}

/* The memo key of this query's answer: the mailbox (its directory names
 * the user and the mailbox; a UID's message is fixed under one
 * UIDVALIDITY), the question, and the messages the search matched. */
static qmemo_key sort_memo_key(session *s, sort_cont *sc, char *buf, size_t cap)
{
    const char *dir = store_mbox_dir(s->mb);
    size_t dl = strlen(dir), n = 0;
    if (dl + 1 + 4 + sc->scope_len <= cap) {
        memcpy(buf, dir, dl + 1);   /* with its NUL: no dir is a prefix of another's key */
        uint32_t uv = store_snap_uidvalidity(sc->snap);
        memcpy(buf + dl + 1, &uv, 4);
        memcpy(buf + dl + 5, sc->scope, sc->scope_len);
        n = dl + 5 + sc->scope_len;
    }
    return (qmemo_key){.scope = buf, .scope_len = n, .seqs = sc->res.seqs,
                       .uids = sc->res.uids, .n = n ? sc->res.n : 0};
}

/* What the answer depends on besides the messages: SORT or THREAD, UID
 * or not, the algorithm or every criterion in order. */
static void sort_memo_scope(sort_cont *sc)
{
    size_t n = 0;
    sc->scope[n++] = sc->thread ? 'T' : 'S';
    sc->scope[n++] = sc->uid ? 'U' : 'N';
    if (sc->thread) {
        sc->scope[n++] = (char)sc->alg;
    } else {
        for (size_t i = 0; i < sc->ncrit; i++) {
            sc->scope[n++] = (char)sc->crit[i].key;
            sc->scope[n++] = sc->crit[i].reverse ? 'R' : '+';
        }
    }
    sc->scope_len = n;
}

static const cmd_def *sort_def(const sort_cont *sc)
{
    return &cmd_table[sc->thread ? CMD_THREAD : CMD_SORT];
}

static bool sort_failed(session *s, sort_cont *sc, int rc)
{
    sess_tagged(s, sc->tag, "NO", "%s",
                rc == -E2BIG ? "[LIMIT] Too much to sort"
                             : sc->thread ? "[SERVERBUG] Thread failed"
                                          : "[SERVERBUG] Sort failed");
    return true;
}

/* The order step on the pool: the job owns the keys and the result while
 * it runs (a session closed meanwhile frees its command state at once; the
 * job's completion frees the rest and the session). */
typedef struct sort_job {
    session *s;
    sort_cont *sc;
    imap_sort_set set;
    const imap_sort_crit *crit;     /* sc's: read only, freed after us */
    size_t ncrit;
    bool thread, uid, esort;
    imap_thread_alg alg;
    uint32_t *order;
    imap_out text;
    int rc;
    /* SORT and THREAD: the answer is kept (qmemo_put) here on the pool,
     * not on the worker (it copies the answer and the search result, ~10
     * ms at 10^6 messages); the job holds the result meanwhile */
    imap_search_result res;
    char *key;                  /* sort_memo_key's scope, or NULL */
    size_t key_len;
} sort_job;

/* The order step: THREAD's text, or SORT's order.  For SORT and THREAD
 * it consumes the set: the order becomes the numbers to send (UIDs or
 * sequence numbers) and the set is freed here, on the pool for a big one
 * (freeing some 100 MB of keys is itself milliseconds of work).  ESORT
 * keeps the set and the order as indexes into it: its answer needs their
 * MODSEQs, and a CONTEXT=SORT takes both over. */
static int sort_compute(imap_sort_set *set, bool thread, bool esort, imap_thread_alg alg,
                        bool uid, const imap_sort_crit *crit, size_t ncrit, uint32_t **order,
                        imap_out *text)
{
    int rc;
    if (thread) {
        rc = imap_thread_render(set, alg, uid, text);
    } else if ((rc = imap_sort_order(set, crit, ncrit, order)) == 0 && !esort) {
        uint32_t *o = *order;
        for (size_t i = 0; i < set->n; i++)
            o[i] = uid ? set->m[o[i]].uid : set->m[o[i]].seq;
    }
    if (!esort) {
        imap_sort_set_free(set);
        memset(set, 0, sizeof *set);
    }
    return rc;
}

static void sort_work(void *arg)
{
    sort_job *j = arg;
    j->rc = sort_compute(&j->set, j->thread, j->esort, j->alg, j->uid, j->crit, j->ncrit,
                         &j->order, &j->text);
    if (j->rc == 0 && j->key) {
        qmemo_key k = {.scope = j->key, .scope_len = j->key_len, .seqs = j->res.seqs,
                       .uids = j->res.uids, .n = j->res.n};
        qmemo_put(&k, j->thread ? (const void *)j->text.p : (const void *)j->order,
                  j->thread ? j->text.len : j->res.n * sizeof *j->order);
    }
}

static void sort_done(void *arg, int status)
{
    sort_job *j = arg;
    session *s = j->s;
    s->pool_busy = false;
    if (s->dead) {
        imap_sort_set_free(&j->set);
        free(j->order);
        imap_out_free(&j->text);
        imap_search_result_free(&j->res);
        free(j->key);
        free(j);
        sess_free(s);
        return;
    }
    sort_cont *sc = j->sc;
    sc->set = j->set;           /* emptied by sort_compute, unless cancelled */
    sc->order = j->order;
    sc->text = j->text;
    if (j->key) {
        sc->res = j->res;
        sc->memo_put = true;
        free(j->key);
    }
    sc->order_rc = status < 0 ? status : j->rc;
    sc->phase = 3;
    free(j);
    sess_cont_next(s);
}

/* 0 if the order step went to the pool. */
static int sort_submit(session *s, sort_cont *sc)
{
    sort_job *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    *j = (sort_job){ .s = s, .sc = sc, .set = sc->set, .crit = sc->crit, .ncrit = sc->ncrit,
                     .thread = sc->thread, .uid = sc->uid, .esort = sc->esort, .alg = sc->alg };
    if (!sc->esort && sc->res.n) {
        char kb[PATH_MAX + 8 + 2 * IMAP_SORT_MAX_CRIT];
        qmemo_key k = sort_memo_key(s, sc, kb, sizeof kb);
        if (k.scope_len && (j->key = malloc(k.scope_len)) != NULL) {
            memcpy(j->key, k.scope, k.scope_len);
            j->key_len = k.scope_len;
            j->res = sc->res;
        }
    }
    int rc = authpool_submit(s->srv->syncpool, sort_work, j, sort_done, s->srv->net,
                             net_conn_worker(s->conn));
    if (rc < 0) {
        free(j->key);
        free(j);
        return rc;
    }
    memset(&sc->set, 0, sizeof sc->set);
    if (j->key)
        memset(&sc->res, 0, sizeof sc->res);
    s->pool_busy = true;
    return 0;
}

/* ESORT (RFC 5267 3.1): "* ESEARCH (TAG ..) [UID]" with MIN and MAX the
 * first and last message in sort order ("the lowest sorted message"), ALL
 * every one in sort order, COUNT, PARTIAL a range of the sorted list. */
static int esort_head(session *s, sort_cont *sc)
{
    size_t n = sc->set.n;
    if (n && !(sc->nums = malloc(n * sizeof *sc->nums)))
        return -ENOMEM;
    for (size_t k = 0; k < n; k++) {
        const imap_sort_msg *m = &sc->set.m[sc->order[k]];
        sc->nums[k] = sc->uid ? m->uid : m->seq;
    }
    unsigned r = sc->ret.opts;
    imap_out_printf(&s->out, "* ESEARCH (TAG \"%s\")%s", sc->tag, sc->uid ? " UID" : "");
    if (n && (r & IMAP_SEARCH_RET_MIN))
        imap_out_printf(&s->out, " MIN %u", sc->nums[0]);
    if (n && (r & IMAP_SEARCH_RET_MAX))
        imap_out_printf(&s->out, " MAX %u", sc->nums[n - 1]);
    sc->lfrom = sc->lto = 0;
    if (n && (r & IMAP_SEARCH_RET_ALL)) {
        imap_out_lit(&s->out, " ALL ");
        sc->lto = n;
    }
    if (r & IMAP_SEARCH_RET_PARTIAL) {
        /* the range counts positions in the sort order (RFC 5267 4.1: for
         * SORT the "requested order" is the sort order) */
        imap_search_partial_slice(&sc->ret, n, &sc->lfrom, &sc->lto);
        imap_out_printf(&s->out, " PARTIAL (%lld:%lld %s", (long long)sc->ret.partial_lo,
                        (long long)sc->ret.partial_hi, sc->lfrom < sc->lto ? "" : "NIL)");
    }
    sc->at = sc->lfrom;
    return 0;
}

static void esort_tail(session *s, sort_cont *sc)
{
    unsigned r = sc->ret.opts;
    size_t n = sc->set.n;
    if ((r & IMAP_SEARCH_RET_PARTIAL) && sc->lfrom < sc->lto)
        imap_out_lit(&s->out, ")");
    if (r & IMAP_SEARCH_RET_COUNT)
        imap_out_printf(&s->out, " COUNT %zu", n);
    if (n && sc->res.modseqs) {
        /* RFC 7162 3.1.5 / RFC 4731 3.2 as for SEARCH: MIN and/or MAX
         * alone report those messages' MODSEQ, else the highest of all;
         * set.m[k] is res's k-th match (added in that order) */
        const uint64_t *ms = sc->res.modseqs;
        uint64_t m = 0;
        bool only_ends = !(r & (IMAP_SEARCH_RET_ALL | IMAP_SEARCH_RET_COUNT |
                                IMAP_SEARCH_RET_PARTIAL));
        for (size_t k = 0; k < n; k++) {
            bool end = ((r & IMAP_SEARCH_RET_MIN) && k == 0) ||
                       ((r & IMAP_SEARCH_RET_MAX) && k == n - 1);
            if ((!only_ends || end) && ms[sc->order[k]] > m)
                m = ms[sc->order[k]];
        }
        if (m)
            imap_out_printf(&s->out, " MODSEQ %llu", (unsigned long long)m);
    }
}

static bool sort_step(session *s, void *arg)
{
    sort_cont *sc = arg;
    sess_slice sl;
    int rc;
    sess_slice_begin(&sl);
    while (sc->phase == 0) {
        if (sc->next > sc->v.count) {
            /* the search index written in steps too (as SEARCH) */
            if (imap_search_finish(sc->prog)) {
                if (sess_slice_over(s, &sl))
                    return false;
                continue;
            }
            sc->phase = 1;
            if (!sc->esort && sc->res.n) {
                char kb[PATH_MAX + 8 + 2 * IMAP_SORT_MAX_CRIT];
                qmemo_key k = sort_memo_key(s, sc, kb, sizeof kb);
                if (k.scope_len &&
                    (sc->memo = qmemo_get(&k, &sc->memo_data, &sc->memo_len)) != NULL) {
                    sc->norder = sc->thread ? 0 : sc->memo_len / sizeof(uint32_t);
                    sc->order_rc = 0;
                    sc->phase = 3;
                    break;
                }
            }
            store_cursor_init(&sc->cur, sc->snap);
            if ((rc = imap_sort_set_expect(&sc->set, sc->res.n)) < 0)
                return sort_failed(s, sc, rc);
            break;
        }
        if (sess_slice_over_each(s, &sl))
            return false;
        if ((sc->next = imap_search_skip(sc->prog, &sc->v, sc->next)) > sc->v.count)
            continue;
        uint32_t last = sc->v.count - sc->next < SORT_CHUNK ? sc->v.count
                                                            : sc->next + SORT_CHUNK - 1;
        rc = imap_search_run_range(sc->prog, &sc->v, sc->next, last, &sc->res);
        if (rc == -EWOULDBLOCK) {
            /* as SEARCH: a message not in memory is read in off the worker */
            if (sess_cont_fault_in(s, imap_search_take_fault(sc->prog, &sc->next)) == 0)
                return false;
            continue;
        }
        if (rc < 0)
            return sort_failed(s, sc, rc);
        sc->next = last + 1;
    }
    while (sc->phase == 1) {
        if (sc->at >= sc->res.n) {
            sc->phase = 2;
            break;
        }
        if (sess_slice_over(s, &sl))
            return false;
        for (size_t k = 0; k < SORT_KEYS_CHUNK && sc->at < sc->res.n; k++) {
            rc = imap_sort_set_add(&sc->set, &sc->cur, sc->res.seqs[sc->at],
                                   sc->res.uids[sc->at]);
            if (rc == -EWOULDBLOCK) {
                /* its cache blob is not in memory: read in off the
                 * worker, then the same message again */
                if (sess_cont_fault_in(s, imap_sort_set_take_fault(&sc->set)) == 0)
                    return false;
                continue;
            }
            if (rc < 0)
                return sort_failed(s, sc, rc);
            sc->at++;
        }
    }
    if (sc->phase == 2) {
        /* in one go: O(n log n) on prepared keys; on the pool if long */
        sc->norder = sc->set.n;
        if (sc->set.n >= SORT_POOL_MIN && sort_submit(s, sc) == 0)
            return false;       /* sort_done resumes us in phase 3 */
        sc->order_rc = sort_compute(&sc->set, sc->thread, sc->esort, sc->alg, sc->uid, sc->crit,
                                    sc->ncrit, &sc->order, &sc->text);
        sc->phase = 3;
    }
    if (sc->phase == 3) {
        if (sc->order_rc < 0)
            return sort_failed(s, sc, sc->order_rc);
        if (!sc->esort && !sc->memo && !sc->memo_put && sc->res.n) {
            char kb[PATH_MAX + 8 + 2 * IMAP_SORT_MAX_CRIT];
            qmemo_key k = sort_memo_key(s, sc, kb, sizeof kb);
            if (k.scope_len)
                qmemo_put(&k, sc->thread ? (const void *)sc->text.p : (const void *)sc->order,
                          sc->thread ? sc->text.len : sc->norder * sizeof *sc->order);
        }
        sc->phase = 4;
        sc->at = 0;
        if (sc->esort) {
            if ((rc = esort_head(s, sc)) < 0)
                return sort_failed(s, sc, rc);
        } else {
            imap_out_printf(&s->out, sc->thread ? "* THREAD" : "* SORT");
        }
    }
    if (sc->esort) {
        while (sc->at < sc->lto) {
            if (sess_slice_over(s, &sl))
                return false;
            sc->at = imap_search_out_set(&s->out, sc->nums, sc->lfrom, sc->at, sc->lto,
                                         SORT_OUT_CHUNK);
        }
        esort_tail(s, sc);
        if (sc->ret.opts & IMAP_SEARCH_RET_UPDATE) {
            /* RFC 5267 4.3.1: refused, "an untagged NO ... with a
             * response-code of NOUPDATE"; the other options were honoured */
            imap_out_lit(&s->out, "\r\n");
            /* a context's runs and adds read on */
            imap_search_yield_io(sc->prog, false);
            imap_sort_set_yield_io(&sc->set, false);
            rc = search_ctx_add_sorted(s, sc->tag, sc->uid, &sc->prog, &sc->v,
                                       store_snap_highestmodseq(sc->snap), sc->crit, sc->ncrit,
                                       &sc->set, &sc->order);
            if (rc < 0)
                sess_untagged(s, "NO [NOUPDATE \"%s\"] %s", sc->tag,
                              rc == -ENOSPC ? "Too many contexts" : "No memory for a context");
            cmd_done(s, sort_def(sc), sc->tag, "OK", "SORT completed");
            return true;
        }
    } else if (sc->thread) {
        const char *text = sc->memo ? sc->memo_data : sc->text.p;
        size_t len = sc->memo ? sc->memo_len : sc->text.len;
        while (sc->at < len) {
            if (sess_slice_over(s, &sl))
                return false;
            size_t k = len - sc->at;
            if (k > THREAD_OUT_CHUNK)
                k = THREAD_OUT_CHUNK;
            imap_out_add(&s->out, text + sc->at, k);
            sc->at += k;
        }
    } else {
        const uint32_t *order = sc->memo ? sc->memo_data : sc->order;
        while (sc->at < sc->norder) {
            if (sess_slice_over(s, &sl))
                return false;
            for (size_t k = 0; k < SORT_OUT_CHUNK && sc->at < sc->norder; k++, sc->at++) {
                imap_out_lit(&s->out, " ");
                imap_out_uint(&s->out, order[sc->at]);
            }
        }
    }
    imap_out_lit(&s->out, "\r\n");
    cmd_done(s, sort_def(sc), sc->tag, "OK", "%s completed",
             sc->thread ? "THREAD" : "SORT");
    return true;
}

/* SORT (criteria) charset key... / THREAD alg charset key... */
static void sort_or_thread(imap_cmd *c, bool thread)
{
    session *s = c->s;
    const char *tag = c->tag;
    imap_arg *args = c->args;
    size_t nargs = c->nargs;
    imap_search_prog *prog = NULL;
    const char *err = NULL;
    imap_sort_crit crit[IMAP_SORT_MAX_CRIT];
    int ncrit = 0;
    imap_thread_alg alg = IMAP_THREAD_REFERENCES;
    imap_search_ret ret = {0};
    bool esort = false;

    /* RFC 5267 3: extended-sort = ["UID" SP] "SORT" search-return-opts
     * SP sort-criteria SP search-criteria */
    if (!thread && nargs >= 1 && imap_arg_is(&args[0], "RETURN")) {
        if (nargs < 2 || imap_search_parse_return(&args[1], &ret, &err) < 0) {
            sess_bad(s, tag, "%s", err ? err : "RETURN needs a list of options");
            return;
        }
        /* RFC 5267 3.1 lists the return options of [ESEARCH]; SAVE (RFC
         * 5182) extends SEARCH only */
        if (ret.opts & IMAP_SEARCH_RET_SAVE) {
            sess_bad(s, tag, "SAVE is not a SORT return option");
            return;
        }
        /* RFC 5267 4.3: UPDATE with a tag in use by a live context "SHALL
         * result in the server rejecting the searching command with a BAD
         * response" */
        if ((ret.opts & IMAP_SEARCH_RET_UPDATE) && search_ctx_exists(s, tag)) {
            sess_bad(s, tag, "Tag reuse: a search with this tag is updating");
            return;
        }
        esort = true;
        args += 2;
        nargs -= 2;
    }
    /* search-criteria = charset 1*(SP search-key) */
    if (nargs < 3) {
        sess_bad(s, tag, "%s needs %s, a charset and search keys",
                 thread ? "THREAD" : "SORT", thread ? "an algorithm" : "sort criteria");
        return;
    }
    if (thread) {
        if (imap_thread_parse_alg(&args[0], &alg) < 0) {
            /* RFC 5256: "NO - thread error: can't thread that charset or
             * criteria" is for what the server cannot do; an algorithm
             * not in the grammar is still an atom, so BAD is for a non-atom */
            if (args[0].type == IMAP_ARG_ATOM)
                sess_tagged(s, tag, "NO", "Unsupported threading algorithm");
            else
                sess_bad(s, tag, "Bad threading algorithm");
            return;
        }
    } else if ((ncrit = imap_sort_parse_criteria(&args[0], crit, IMAP_SORT_MAX_CRIT, &err)) < 0) {
        sess_bad(s, tag, "%s", err);
        return;
    }
    if ((args[1].type != IMAP_ARG_ATOM && args[1].type != IMAP_ARG_STRING) || !args[1].len) {
        sess_bad(s, tag, "Bad charset");
        return;
    }
    /* "The US-ASCII and [UTF-8] charsets MUST be implemented.  All other
     * charsets are optional."  As SEARCH: NO [BADCHARSET] lists them. */
    if (!imap_search_charset_ok(args[1].s, args[1].len)) {
        sess_tagged(s, tag, "NO", "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
        return;
    }
    if (sess_search_program(s, tag, args + 2, nargs - 2, true, &prog) < 0)
        goto out;
    size_t taglen = strlen(tag);
    sort_cont *sc = calloc(1, sizeof *sc + taglen + 1);
    store_snap *snap = sc ? store_snap_get(s->mb) : NULL;
    if (!snap) {
        free(sc);
        sess_tagged(s, tag, "NO", "[SERVERBUG] %s failed", thread ? "Thread" : "Sort");
        goto out;
    }
    sc->prog = prog;
    imap_search_yield_io(prog, true);   /* sort_step stops for the disk */
    sc->snap = snap;
    sc->v = (imap_search_view){
        .snap = snap, .uids = s->view, .count = s->nview,
        .recent_first = s->recent_first == UINT32_MAX ? 0 : s->recent_first,
        .saved = s->saved, .nsaved = s->nsaved,
    };
    sc->next = 1;
    sc->uid = c->uid;
    sc->thread = thread;
    sc->alg = alg;
    sc->esort = esort;
    sc->ret = ret;
    sc->v.now = (int64_t)time(NULL);   /* RFC 5032: "the current date and time" */
    /* a context is evaluated again later: what its sequence numbers, '*'
     * and $ name is fixed now (RFC 5267 4.3) */
    if ((ret.opts & IMAP_SEARCH_RET_UPDATE) && imap_search_freeze(prog, &sc->v) < 0) {
        sc->prog = NULL;
        sort_cont_free(sc);
        sess_tagged(s, tag, "NO", "[SERVERBUG] Sort failed");
        goto out;
    }
    if (!thread) {
        memcpy(sc->crit, crit, (size_t)ncrit * sizeof crit[0]);
        sc->ncrit = (size_t)ncrit;
    }
    sc->set.need = thread ? imap_thread_need(alg) : imap_sort_need(crit, (size_t)ncrit);
    imap_sort_set_yield_io(&sc->set, true);
    sort_memo_scope(sc);
    memcpy(sc->tag, tag, taglen + 1);
    sess_cont_begin(s, sort_step, sort_cont_free, sc);
    return;
out:
    imap_search_free(prog);
}

void cmd_sort(imap_cmd *c)
{
    sort_or_thread(c, false);
}

void cmd_thread(imap_cmd *c)
{
    sort_or_thread(c, true);
}
