/* core/cmd_search.c — SEARCH and UID SEARCH, answered with SEARCH or, for
 * RETURN (...) and IMAP4rev2 sessions, ESEARCH (RFC 4731 / RFC 9051). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/search.h"
#include "core/session.h"

void cmd_search(session *s, const char *tag, imap_args *a, imap_arg *args,
                size_t nargs, bool uid)
{
    (void)a;
    imap_search_prog *prog = NULL;
    const char *err = NULL;
    imap_search_result res = {0};
    /* RFC 6855 3: after ENABLE UTF8=ACCEPT, a CHARSET is an error. */
    size_t at = nargs >= 2 && imap_arg_is(&args[0], "RETURN") ? 2 : 0;
    if (s->utf8_accept && at < nargs && imap_arg_is(&args[at], "CHARSET")) {
        sess_bad(s, tag, "CHARSET is not allowed after ENABLE UTF8=ACCEPT");
        return;
    }
    imap_search_limits lim = {.max_depth = s->srv->search_max_depth,
                              .max_keys = s->srv->search_max_keys,
                              .max_ranges = s->srv->max_seqset_ranges};
    int rc = imap_search_parse(args, nargs, &lim, &prog, &err);
    bool save = false;
    if (rc == IMAP_SEARCH_EBADCHARSET) {
        sess_tagged(s, tag, "NO", "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
        goto out;
    }
    if (rc == -E2BIG) {
        sess_tagged(s, tag, "NO", "[LIMIT] Search program too large");
        goto out;
    }
    if (rc < 0) {
        sess_bad(s, tag, "%s", err ? err : "Bad search program");
        goto out;
    }
    unsigned ret = imap_search_return(prog);
    save = ret & IMAP_SEARCH_RET_SAVE;
    store_snap *snap = store_snap_get(s->mb);
    if (!snap) {
        rc = -ENOMEM;
    } else {
        imap_search_view v = {
            .snap = snap, .uids = s->view, .count = s->nview,
            .recent_first = s->recent_first == UINT32_MAX ? 0 : s->recent_first,
            .saved = s->saved, .nsaved = s->nsaved,
        };
        rc = imap_search_run(prog, &v, &res);
        store_snap_put(snap);
    }
    if (rc < 0) {
        if (save) {
            free(s->saved);
            s->saved = NULL;
            s->nsaved = 0;
        }
        sess_tagged(s, tag, "NO", "[SERVERBUG] Search failed");
        goto out;
    }
    if (save) {
        store_uidlist l = {0};
        if (imap_search_saved_uids(prog, &res, &l) == 0) {
            free(s->saved);
            s->saved = l.uids;
            s->nsaved = (uint32_t)l.n;
        } else {
            store_uidlist_free(&l);
        }
    }
    const uint32_t *nums = uid ? res.uids : res.seqs;
    uint64_t modseq = imap_search_result_modseq(prog, &res);
    bool esearch = imap_search_has_return(prog) || s->rev2;
    if (esearch) {
        if (!imap_search_has_return(prog))
            ret = IMAP_SEARCH_RET_ALL;
        /* RETURN (SAVE) alone: no ESEARCH response (RFC 5182). */
        if (ret & ~IMAP_SEARCH_RET_SAVE) {
            imap_out_printf(&s->out, "* ESEARCH (TAG \"%s\")%s", tag, uid ? " UID" : "");
            if (res.n && (ret & IMAP_SEARCH_RET_MIN))
                imap_out_printf(&s->out, " MIN %u", nums[0]);
            if (res.n && (ret & IMAP_SEARCH_RET_MAX))
                imap_out_printf(&s->out, " MAX %u", nums[res.n - 1]);
            if (res.n && (ret & IMAP_SEARCH_RET_ALL)) {
                imap_out_printf(&s->out, " ALL ");
                imap_out_set(&s->out, nums, res.n);
            }
            if (ret & IMAP_SEARCH_RET_COUNT)
                imap_out_printf(&s->out, " COUNT %zu", res.n);
            if (modseq)
                imap_out_printf(&s->out, " MODSEQ %llu", (unsigned long long)modseq);
            imap_out_printf(&s->out, "\r\n");
        }
    } else {
        imap_out_printf(&s->out, "* SEARCH");
        for (size_t i = 0; i < res.n; i++)
            imap_out_printf(&s->out, " %u", nums[i]);
        if (modseq)
            imap_out_printf(&s->out, " (MODSEQ %llu)", (unsigned long long)modseq);
        imap_out_printf(&s->out, "\r\n");
    }
    sess_sync(s, false);
    sess_tagged(s, tag, "OK", "SEARCH completed");
out:
    imap_search_result_free(&res);
    imap_search_free(prog);
}
