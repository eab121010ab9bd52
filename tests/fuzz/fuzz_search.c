/* tests/fuzz/fuzz_search.c — SEARCH parsing (core/search/search.h).
 *
 * Input: a command ("a UID SEARCH RETURN (MIN) CHARSET UTF-8 OR ..."),
 * tokenized with imap_args_parse; its arguments (after "UID" if present,
 * and after a leading SEARCH/SORT/THREAD atom) go to imap_search_parse and
 * imap_search_parse_keys, with default and with small limits. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/imap/imap_args.h"
#include "core/search/search.h"
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
    FUZZ_CHECK((ret & ~0x1Fu) == 0);
    if (!has)
        FUZZ_CHECK(ret == 0);
    if (keys_only)
        FUZZ_CHECK(!has);
    fuzz_sink += imap_search_uses_modseq(p) + imap_search_uses_saved(p);
    imap_search_result empty = { 0 };
    FUZZ_CHECK(imap_search_result_modseq(p, &empty) == 0);
    imap_search_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
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
