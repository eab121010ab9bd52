/* tools/admin_stats.c — `stats USER`: a table of every mailbox.
 *
 * Sizes are exact byte counts rather than "1.2 MB" so the table can be
 * summed and compared by scripts; LIVE is what the log would keep after
 * compaction (log bytes - dead bytes). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/admin.h"

int admin_cmd_stats(admin_ctx *ctx, int argc, char **argv)
{
    char *pos[1];
    size_t npos;
    if (admin_args(argc, argv, NULL, 0, pos, 1, 1, &npos, "stats USER") < 0)
        return ADMIN_USAGE;

    int ret = ADMIN_FAIL;
    store_user *u = NULL;
    store_mailbox_info *v = NULL;
    store_status *st = NULL;
    size_t n = 0;
    if (admin_user_open(ctx, pos[0], false, &u) < 0)
        goto out;
    int r = store_mailbox_list(u, &v, &n);
    if (r < 0) {
        admin_err("user '%s': cannot list mailboxes: %s", pos[0], strerror(-r));
        goto out;
    }
    st = calloc(n ? n : 1, sizeof *st);
    if (!st) {
        admin_err("out of memory");
        goto out;
    }
    int width = (int)strlen("MAILBOX");
    for (size_t i = 0; i < n; i++) {
        r = store_mailbox_status(u, v[i].name, &st[i]);
        if (r < 0) {
            admin_mailbox_error(v[i].name, r);
            goto out;
        }
        int l = (int)strlen(v[i].name);
        if (l > width)
            width = l;
    }
    store_status tot = { 0 };
    printf("%-*s %10s %14s %14s %14s %14s\n", width, "MAILBOX", "MESSAGES",
           "SIZE", "LIVE_BYTES", "DEAD_BYTES", "HIGHESTMODSEQ");
    for (size_t i = 0; i < n; i++) {
        uint64_t live = st[i].log_bytes - st[i].dead_bytes;
        printf("%-*s %10u %14llu %14llu %14llu %14llu\n", width, v[i].name,
               st[i].messages, (unsigned long long)st[i].size,
               (unsigned long long)live, (unsigned long long)st[i].dead_bytes,
               (unsigned long long)st[i].highestmodseq);
        tot.messages += st[i].messages;
        tot.size += st[i].size;
        tot.log_bytes += st[i].log_bytes;
        tot.dead_bytes += st[i].dead_bytes;
    }
    printf("%-*s %10u %14llu %14llu %14llu %14s\n", width, "(total)", tot.messages,
           (unsigned long long)tot.size,
           (unsigned long long)(tot.log_bytes - tot.dead_bytes),
           (unsigned long long)tot.dead_bytes, "-");
    ret = ADMIN_OK;
out:
    free(st);
    if (v)
        store_mailbox_info_free(v, n);
    if (u)
        store_user_close(u);
    return ret;
}
