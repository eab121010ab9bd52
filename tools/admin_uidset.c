/* tools/admin_uidset.c — IMAP UID set syntax for `expunge`, parsed by the
 * server's own parser (core/imap/imap_seqset.c) so the two never disagree. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/imap/imap_args.h"
#include "tools/admin.h"

int admin_uidset_parse(const char *s, store_range **out, size_t *n)
{
    imap_seqset set = {0};
    int rc = imap_seqset_parse(s, strlen(s), 0, &set, NULL);
    if (rc < 0)
        return rc == -ENOMEM ? rc : -EINVAL;
    /* '*' is "up to the last UID": the store clips ranges to UIDNEXT. */
    imap_range *res = malloc((set.n ? set.n : 1) * sizeof *res);
    store_range *v = malloc((set.n ? set.n : 1) * sizeof *v);
    if (!res || !v) {
        free(res);
        free(v);
        free(set.r);
        return -ENOMEM;
    }
    size_t nres = imap_seqset_resolve(&set, UINT32_MAX, res);
    for (size_t i = 0; i < nres; i++)
        v[i] = (store_range){res[i].lo, res[i].hi};
    free(res);
    free(set.r);
    *out = v;
    *n = nres;
    return 0;
}
