/* core/server/cmd_search.c — SEARCH and UID SEARCH, answered with SEARCH or, for
 * RETURN (...) and IMAP4rev2 sessions, ESEARCH (RFC 4731 / RFC 9051). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/search/search.h"
#include "core/server/search_context.h"
#include "core/server/session.h"

/* A SEARCH in progress: first the program runs over the view a slice at a
 * time (the view and the snapshot stay the same throughout: the session
 * runs nothing else meanwhile), then the answer is written out a slice at a
 * time, since a result can be millions of numbers. */
typedef struct search_cont {
    imap_search_prog *prog;
    imap_search_result res;
    imap_search_view v;
    store_snap *snap;           /* pinned for the whole command */
    uint32_t next;              /* next sequence number to evaluate */
    size_t out;                 /* next result to write (phase 2) */
    size_t lfrom, lto;          /* the results listed: all, or PARTIAL's */
    bool evaluated, started, uid, esearch, save;
    unsigned ret;
    imap_search_ret ropts;
    char tag[];
} search_cont;

#define SEARCH_CHUNK 8          /* messages per evaluation call */
#define SEARCH_OUT_CHUNK 2048   /* numbers (or ranges) per unit of output */

static void search_cont_free(void *arg)
{
    search_cont *sc = arg;
    if (sc->snap)
        store_snap_put(sc->snap);
    imap_search_result_free(&sc->res);
    imap_search_free(sc->prog);
    free(sc);
}

static void search_failed(session *s, search_cont *sc)
{
    if (sc->save) {
        free(s->saved);
        s->saved = NULL;
        s->nsaved = 0;
    }
    sess_tagged(s, sc->tag, "NO", "[SERVERBUG] Search failed");
}

/* The start of the answer, once the result is known. */
static void search_head(session *s, search_cont *sc)
{
    imap_search_prog *prog = sc->prog;
    imap_search_result *res = &sc->res;
    if (sc->save) {
        store_uidlist l = {0};
        if (imap_search_saved_uids(prog, res, &l) == 0) {
            free(s->saved);
            s->saved = l.uids;
            s->nsaved = (uint32_t)l.n;
        } else {
            store_uidlist_free(&l);
        }
    }
    const uint32_t *nums = sc->uid ? res->uids : res->seqs;
    if (sc->esearch) {
        unsigned ret = sc->ret;
        if (!(ret & ~IMAP_SEARCH_RET_SAVE))
            return;     /* RETURN (SAVE) alone: no ESEARCH response (RFC 5182) */
        imap_out_printf(&s->out, "* ESEARCH (TAG \"%s\")%s", sc->tag, sc->uid ? " UID" : "");
        if (res->n && (ret & IMAP_SEARCH_RET_MIN))
            imap_out_printf(&s->out, " MIN %u", nums[0]);
        if (res->n && (ret & IMAP_SEARCH_RET_MAX))
            imap_out_printf(&s->out, " MAX %u", nums[res->n - 1]);
        sc->lfrom = 0;
        sc->lto = 0;
        if (res->n && (ret & IMAP_SEARCH_RET_ALL)) {
            imap_out_printf(&s->out, " ALL ");
            sc->lto = res->n;
        }
        if (ret & IMAP_SEARCH_RET_PARTIAL) {
            /* RFC 5267 4.4: "the original range and a potentially missing
             * set of results"; "NIL indicates no results correspond to the
             * requested range".  So "PARTIAL 3:1" is answered "(3:1 ...)"
             * (Dovecot 2.3 writes its own "1:3"), and "-1:-3" as written
             * (RFC 9394; Dovecot 2.3 predates it and answers BAD). */
            imap_search_partial_slice(&sc->ropts, res->n, &sc->lfrom, &sc->lto);
            imap_out_printf(&s->out, " PARTIAL (%lld:%lld %s",
                            (long long)sc->ropts.partial_lo,
                            (long long)sc->ropts.partial_hi,
                            sc->lfrom < sc->lto ? "" : "NIL)");
        }
        sc->out = sc->lfrom;
    } else {
        sc->lfrom = sc->out = 0;
        sc->lto = res->n;
        imap_out_printf(&s->out, "* SEARCH");
    }
}

/* The end of the answer. */
static void search_tail(session *s, search_cont *sc)
{
    uint64_t modseq = imap_search_result_modseq(sc->prog, &sc->res);
    if (sc->esearch) {
        if (!(sc->ret & ~IMAP_SEARCH_RET_SAVE))
            return;
        if ((sc->ret & IMAP_SEARCH_RET_PARTIAL) && sc->lfrom < sc->lto)
            imap_out_lit(&s->out, ")");
        if (sc->ret & IMAP_SEARCH_RET_COUNT)
            imap_out_printf(&s->out, " COUNT %zu", sc->res.n);
        if (modseq)
            imap_out_printf(&s->out, " MODSEQ %llu", (unsigned long long)modseq);
    } else if (modseq) {
        imap_out_printf(&s->out, " (MODSEQ %llu)", (unsigned long long)modseq);
    }
    imap_out_printf(&s->out, "\r\n");
}

/* Up to SEARCH_OUT_CHUNK numbers of the list: " n n n" for SEARCH, the
 * sequence set of ESEARCH ALL or PARTIAL otherwise. */
static void search_list_chunk(session *s, search_cont *sc)
{
    const uint32_t *nums = sc->uid ? sc->res.uids : sc->res.seqs;
    size_t i = sc->out;
    if (!sc->esearch) {
        for (size_t k = 0; i < sc->lto && k < SEARCH_OUT_CHUNK; i++, k++) {
            imap_out_lit(&s->out, " ");
            imap_out_uint(&s->out, nums[i]);
        }
    } else {
        i = imap_search_out_set(&s->out, nums, sc->lfrom, i, sc->lto, SEARCH_OUT_CHUNK);
    }
    sc->out = i;
}

static bool search_step(session *s, void *arg)
{
    search_cont *sc = arg;
    sess_slice sl;
    sess_slice_begin(&sl);
    while (!sc->evaluated) {
        if (sc->next > sc->v.count) {
            /* the search index written in steps too */
            if (imap_search_finish(sc->prog)) {
                if (sess_slice_over(s, &sl))
                    return false;
                continue;
            }
            sc->evaluated = true;
            break;
        }
        if (sess_slice_over_each(s, &sl))
            return false;
        /* over what the search index rules out */
        if ((sc->next = imap_search_skip(sc->prog, &sc->v, sc->next)) > sc->v.count)
            continue;
        uint32_t last = sc->v.count - sc->next < SEARCH_CHUNK ? sc->v.count
                                                              : sc->next + SEARCH_CHUNK - 1;
        int rc = imap_search_run_range(sc->prog, &sc->v, sc->next, last, &sc->res);
        if (rc == -EWOULDBLOCK) {
            /* a message not in memory: read in off the worker, then on
             * from it */
            if (sess_cont_fault_in(s, imap_search_take_fault(sc->prog, &sc->next)) == 0)
                return false;
            continue;
        }
        if (rc < 0) {
            search_failed(s, sc);
            return true;
        }
        sc->next = last + 1;
    }
    if (!sc->started) {
        sc->started = true;
        search_head(s, sc);
    }
    while (sc->out < sc->lto) {
        if (sess_slice_over(s, &sl))
            return false;
        search_list_chunk(s, sc);
    }
    search_tail(s, sc);
    if (sc->ret & IMAP_SEARCH_RET_UPDATE) {
        /* RFC 5267 4.3.1: refused, "an untagged NO is generated ... with a
         * response-code of NOUPDATE"; the other options were honoured */
        imap_search_yield_io(sc->prog, false);     /* a context's runs read on */
        int rc = search_ctx_add(s, sc->tag, sc->uid, &sc->prog, &sc->v, sc->res.uids,
                                sc->res.n, store_snap_highestmodseq(sc->snap));
        if (rc < 0)
            sess_untagged(s, "NO [NOUPDATE \"%s\"] %s", sc->tag,
                          rc == -ENOSPC ? "Too many contexts" : "No memory for a context");
    }
    cmd_done(s, &cmd_table[CMD_SEARCH], sc->tag, "OK", "SEARCH completed");
    return true;
}

int sess_search_program(session *s, const char *tag, const imap_arg *args, size_t nargs,
                        bool keys_only, imap_search_prog **prog)
{
    const char *err = NULL;
    imap_search_limits lim = {.max_depth = s->srv->search_max_depth,
                              .max_keys = s->srv->search_max_keys,
                              .max_ranges = s->srv->max_seqset_ranges};
    int rc = keys_only ? imap_search_parse_keys(args, nargs, &lim, prog, &err)
                       : imap_search_parse(args, nargs, &lim, prog, &err);
    if (rc == IMAP_SEARCH_EBADCHARSET)
        sess_tagged(s, tag, "NO", "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
    else if (rc == -E2BIG)
        sess_tagged(s, tag, "NO", "[LIMIT] Search program too large");
    else if (rc < 0)
        sess_bad(s, tag, "%s", err ? err : "Bad search program");
    if (rc < 0)
        return -1;
    /* RFC 7162 3.1: a SEARCH (or SORT, THREAD) with the MODSEQ criterion
     * is a CONDSTORE enabling command */
    if (imap_search_uses_modseq(*prog))
        sess_condstore_enable(s, &s->out);
    return 0;
}

void cmd_search(imap_cmd *c)
{
    session *s = c->s;
    const char *tag = c->tag;
    imap_arg *args = c->args;
    size_t nargs = c->nargs;
    bool uid = c->uid;
    imap_search_prog *prog = NULL;
    /* RFC 6855 3: after ENABLE UTF8=ACCEPT, a CHARSET is an error. */
    size_t at = nargs >= 2 && imap_arg_is(&args[0], "RETURN") ? 2 : 0;
    if (s->utf8_accept && at < nargs && imap_arg_is(&args[at], "CHARSET")) {
        sess_bad(s, tag, "CHARSET is not allowed after ENABLE UTF8=ACCEPT");
        return;
    }
    if (sess_search_program(s, tag, args, nargs, false, &prog) < 0)
        goto out;
    /* RFC 5267 4.3: "An attempt to use UPDATE where a tag is already in use
     * with a previous searching command that itself used UPDATE SHALL
     * result in the server rejecting the searching command with a BAD
     * response." */
    if ((imap_search_return(prog) & IMAP_SEARCH_RET_UPDATE) && search_ctx_exists(s, tag)) {
        sess_bad(s, tag, "Tag reuse: a search with this tag is updating");
        goto out;
    }
    size_t taglen = strlen(tag);
    search_cont *sc = calloc(1, sizeof *sc + taglen + 1);
    store_snap *snap = sc ? store_snap_get(s->mb) : NULL;
    if (!snap) {
        if (imap_search_return(prog) & IMAP_SEARCH_RET_SAVE) {
            free(s->saved);
            s->saved = NULL;
            s->nsaved = 0;
        }
        free(sc);
        sess_tagged(s, tag, "NO", "[SERVERBUG] Search failed");
        goto out;
    }
    sc->prog = prog;
    imap_search_yield_io(prog, true);   /* search_step stops for the disk */
    sc->snap = snap;
    sc->v = (imap_search_view){
        .snap = snap, .uids = s->view, .count = s->nview,
        .recent_first = s->recent_first == UINT32_MAX ? 0 : s->recent_first,
        .saved = s->saved, .nsaved = s->nsaved,
    };
    sc->next = 1;
    sc->uid = uid;
    sc->v.now = (int64_t)time(NULL);   /* RFC 5032: "the current date and time" */
    sc->ret = imap_search_return(prog);
    sc->ropts = *imap_search_return_opts(prog);
    /* a context is evaluated again later: what its sequence numbers, '*'
     * and $ name is fixed now (RFC 5267 4.3) */
    if ((sc->ret & IMAP_SEARCH_RET_UPDATE) && imap_search_freeze(prog, &sc->v) < 0) {
        if (sc->ret & IMAP_SEARCH_RET_SAVE) {
            free(s->saved);
            s->saved = NULL;
            s->nsaved = 0;
        }
        search_cont_free(sc);
        sess_tagged(s, tag, "NO", "[SERVERBUG] Search failed");
        return;
    }
    sc->save = sc->ret & IMAP_SEARCH_RET_SAVE;
    sc->esearch = imap_search_has_return(prog) || s->rev2;
    if (sc->esearch && !imap_search_has_return(prog))
        sc->ret = IMAP_SEARCH_RET_ALL;
    memcpy(sc->tag, tag, taglen + 1);
    sess_cont_begin(s, search_step, search_cont_free, sc);
    return;
out:
    imap_search_free(prog);
}
