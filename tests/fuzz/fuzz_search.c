/* tests/fuzz/fuzz_search.c — SEARCH parsing (core/search/search.h).
 *
 * Input: a command ("a UID SEARCH RETURN (MIN) CHARSET UTF-8 OR ..."),
 * tokenized with imap_args_parse; its arguments (after "UID" if present,
 * and after a leading SEARCH/SORT/THREAD atom) go to imap_search_parse and
 * imap_search_parse_keys, with default and with small limits.  For SORT and
 * THREAD, the sort criteria (after SORT's RETURN options) or the algorithm too, and the keys after the
 * charset.  The raw input also goes through the SORT/THREAD text helpers
 * (core/search/sort.h): base subject, case mapping, sent date, msg-ids. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/imap/imap_args.h"
#include "core/search/search.h"
#include "core/search/sort.h"
#include "store/msgid.h"
#include "fuzz_common.h"

static void run(const imap_arg *args, size_t n, const imap_search_limits *lim,
                bool keys_only)
{
    imap_search_prog *p = NULL;
    const char *err = NULL;
    int rc = keys_only ? imap_search_parse_keys(args, n, lim, &p, &err)
                       : imap_search_parse(args, n, lim, &p, &err);
    FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -E2BIG || rc == -ENOMEM ||
               rc == IMAP_SEARCH_EBADCHARSET);
    if (rc) {
        if (rc == -EINVAL)
            FUZZ_CHECK(err != NULL);
        imap_search_free(p);
        return;
    }
    FUZZ_CHECK(p != NULL);
    bool has = imap_search_has_return(p);
    unsigned ret = imap_search_return(p);
    FUZZ_CHECK((ret & ~0xFFu) == 0);
    if (ret & IMAP_SEARCH_RET_PARTIAL) {
        /* the range's slice lies within the results, whatever their number */
        const imap_search_ret *r = imap_search_return_opts(p);
        FUZZ_CHECK(r->partial_lo != 0 && (r->partial_lo < 0) == (r->partial_hi < 0));
        FUZZ_CHECK(!(ret & IMAP_SEARCH_RET_ALL));
        for (size_t n = 0; n < 4; n++) {
            size_t from, to;
            imap_search_partial_slice(r, n * 1000, &from, &to);
            FUZZ_CHECK(from <= to && to <= n * 1000);
        }
    }
    if (!has)
        FUZZ_CHECK(ret == 0);
    if (keys_only)
        FUZZ_CHECK(!has);
    fuzz_sink += imap_search_uses_modseq(p) + imap_search_uses_saved(p);
    imap_search_result empty = { 0 };
    FUZZ_CHECK(imap_search_result_modseq(p, &empty) == 0);
    imap_search_free(p);
}

static void text_helpers(const uint8_t *data, size_t size)
{
    store_buf b = {0}, c = {0};
    bool reply;
    if (imap_base_subject((const char *)data, size, &b, &reply) == 0) {
        FUZZ_CHECK(b.len <= size * 4 + 16);   /* decoding grows by U+FFFD at most */
        if (imap_sort_casemap(b.data ? (const char *)b.data : "", b.len, &c) == 0)
            fuzz_sink += c.len;
    }
    int64_t t;
    fuzz_sink += imap_sort_parse_date((const char *)data, size, &t) == 0;
    size_t pos = 0;
    b.len = 0;
    int rc;
    while ((rc = store_msgid_next((const char *)data, size, &pos, &b)) == 1) {
        FUZZ_CHECK(pos <= size);
        FUZZ_CHECK(b.len >= 4 && b.data[0] == '<');
    }
    FUZZ_CHECK(rc == 0 || rc == -ENOMEM);
    free(b.data);
    free(c.data);
}

static void sort_args(const imap_arg *v, size_t n, bool thread)
{
    imap_sort_crit crit[IMAP_SORT_MAX_CRIT];
    const char *err = NULL;
    imap_thread_alg alg;
    if (n < 1)
        return;
    if (!thread && imap_arg_is(&v[0], "RETURN") && n >= 2) {
        /* ESORT (RFC 5267 3): SORT RETURN (opts) (criteria) ... */
        imap_search_ret r;
        int rc = imap_search_parse_return(&v[1], &r, &err);
        FUZZ_CHECK(rc == 0 || (rc == -EINVAL && err));
        v += 2;
        n -= 2;
        if (n < 1)
            return;
    }
    if (thread) {
        fuzz_sink += imap_thread_parse_alg(&v[0], &alg) == 0;
    } else {
        int k = imap_sort_parse_criteria(&v[0], crit, IMAP_SORT_MAX_CRIT, &err);
        FUZZ_CHECK(k > 0 || (k == -EINVAL && err));
        if (k > 0)
            fuzz_sink += imap_sort_need(crit, (size_t)k);
    }
    if (n >= 3)
        run(v + 2, n - 2, NULL, true);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    text_helpers(data, size);
    imap_args *a = NULL;
    const char *tag = NULL, *name = NULL, *err = NULL;
    size_t taglen = 0, nargs = 0;
    imap_arg *args = NULL;
    if (imap_args_parse(data, size, &a, &tag, &taglen, &name, &args, &nargs,
                        &err))
        return 0;
    const imap_arg *v = args;
    size_t n = nargs;
    if (!strcmp(name, "UID") && n > 0 && imap_arg_is(&v[0], "SEARCH"))
        v++, n--;
    if (!strcmp(name, "UID") && n > 0 && (imap_arg_is(&v[0], "SORT") || imap_arg_is(&v[0], "THREAD"))) {
        sort_args(v + 1, n - 1, imap_arg_is(&v[0], "THREAD"));
        v++, n--;
    } else if (!strcmp(name, "SORT") || !strcmp(name, "THREAD")) {
        sort_args(v, n, !strcmp(name, "THREAD"));
    }
    for (size_t i = 0; i < n && v[i].type == IMAP_ARG_ATOM; i++)
        fuzz_sink += imap_search_charset_ok(v[i].s, v[i].len);
    imap_search_limits small = { .max_depth = 4, .max_keys = 16,
                                 .max_ranges = 8 };
    run(v, n, NULL, false);
    run(v, n, &small, false);
    run(v, n, NULL, true);
    imap_args_free(a);
    return 0;
}
