/* tools/admin_expunge.c — `expunge USER MAILBOX UIDSET`. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/admin.h"

int admin_cmd_expunge(admin_ctx *ctx, int argc, char **argv)
{
    char *pos[3];
    size_t npos;
    if (admin_args(argc, argv, NULL, 0, pos, 3, 3, &npos,
                   "expunge USER MAILBOX UIDSET") < 0)
        return ADMIN_USAGE;
    const char *user = pos[0], *name = pos[1];

    store_range *set = NULL;
    size_t nset = 0;
    int r = admin_uidset_parse(pos[2], &set, &nset);
    if (r == -ENOMEM) {
        admin_err("out of memory");
        return ADMIN_FAIL;
    }
    if (r < 0)
        return admin_usage("bad UID set '%s' (expected e.g. 1,3:5,7:*)", pos[2]);

    int ret = ADMIN_FAIL;
    store_user *u = NULL;
    store_mbox *mb = NULL;
    store_uidlist gone = { 0 };
    uint64_t modseq = 0;
    if (admin_user_open(ctx, user, false, &u) < 0 || admin_mbox_open(u, name, &mb) < 0)
        goto out;
    r = store_expunge(mb, set, nset, false, &gone, &modseq);
    if (r < 0) {
        admin_mailbox_error(name, r);
        goto out;
    }
    printf("expunged %zu messages from '%s'\n", gone.n, name);
    ret = ADMIN_OK;
out:
    store_uidlist_free(&gone);
    if (mb)
        store_mbox_close(mb);
    if (u)
        store_user_close(u);
    free(set);
    return ret;
}
