/* tools/admin_compact.c — `compact USER [MAILBOX]`: rewrite each log
 * without its dead records.  Online: the server may keep serving the
 * mailbox meanwhile (the store swaps the files in atomically). */
#include <stdio.h>
#include <string.h>

#include "tools/admin.h"

static int compact_one(store_user *u, const char *name)
{
    store_mbox *mb = NULL;
    store_status before, after;
    admin_progress pr;
    char label[64];

    int ret = admin_mbox_open(u, name, &mb);
    if (ret < 0)
        return ret;     /* reported */
    ret = store_mbox_status(mb, &before);
    if (ret < 0)
        goto out;
    snprintf(label, sizeof label, "compact %.50s", name);
    admin_progress_start(&pr, label, before.log_bytes, true);
    ret = store_compact(mb, admin_progress_cb, &pr);
    admin_progress_end(&pr);
    if (ret < 0)
        goto out;
    ret = store_mbox_status(mb, &after);
    if (ret < 0)
        goto out;
    printf("compacted '%s': log %llu -> %llu bytes (freed %lld)\n", name,
           (unsigned long long)before.log_bytes, (unsigned long long)after.log_bytes,
           (long long)before.log_bytes - (long long)after.log_bytes);
out:
    if (ret < 0)
        admin_mailbox_error(name, ret);
    store_mbox_close(mb);
    return ret;
}

int admin_cmd_compact(admin_ctx *ctx, int argc, char **argv)
{
    char *pos[2];
    size_t npos;
    if (admin_args(argc, argv, NULL, 0, pos, 1, 2, &npos, "compact USER [MAILBOX]") < 0)
        return ADMIN_USAGE;

    int ret = ADMIN_FAIL;
    store_user *u = NULL;
    store_mailbox_info *v = NULL;
    size_t n = 0;
    if (admin_user_open(ctx, pos[0], false, &u) < 0 ||
        admin_select_mailboxes(u, pos[0], npos > 1 ? pos[1] : NULL, &v, &n) < 0)
        goto out;
    ret = ADMIN_OK;
    for (size_t i = 0; i < n; i++)
        if (compact_one(u, v[i].name) < 0)
            ret = ADMIN_FAIL;   /* go on with the others */
out:
    if (v)
        store_mailbox_info_free(v, n);
    if (u)
        store_user_close(u);
    return ret;
}
