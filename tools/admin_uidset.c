/* tools/admin_uidset.c — IMAP UID set syntax for `expunge`, parsed by the
 * server's own parser (core/imap_seqset.c) so the two never disagree. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/imap_args.h"
#include "tools/admin.h"

int admin_uidset_parse(const char *s, store_range **out, size_t *n)
{
    imap_seqset set = {0};
    int rc = imap_seqset_parse(s, strlen(s), 0, &set, NULL);
    if (rc < 0)
        return rc == -ENOMEM ? rc : -EINVAL;
    store_range *v = malloc((set.n ? set.n : 1) * sizeof *v);
    if (!v) {
        free(set.r);
        return -ENOMEM;
    }
    for (size_t i = 0; i < set.n; i++) {
        uint32_t lo = set.r[i].lo, hi = set.r[i].hi;
        v[i].lo = lo < hi ? lo : hi;    /* "5:3" is 3:5 */
        v[i].hi = lo < hi ? hi : lo;
    }
    free(set.r);
    *out = v;
    *n = set.n;
    return 0;
}
