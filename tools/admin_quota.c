/* tools/admin_quota.c — `quota USER`: a user's usage and limits.
 *
 * The same numbers IMAP GETQUOTA and LMTP use: limits from the user's
 * record in the directory (the passwd-file line's quota_rule extra
 * fields, or the LDAP attribute / SQL column mapped to quota_rule) or the
 * configured defaults, usage summed over the user's mailboxes (store_user_usage).
 * `check --repair` keeps the usage right: it is read from the mailboxes'
 * index headers, which check compares with, and rebuilds from, the logs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/auth/userdb.h"
#include "core/base/quota.h"
#include "tools/admin.h"

/* "1.5 MiB (1572864 bytes)" */
static void human(char *buf, size_t n, uint64_t bytes)
{
    static const char *const units[] = { "bytes", "KiB", "MiB", "GiB", "TiB", "PiB" };
    double v = (double)bytes;
    unsigned u = 0;
    while (v >= 1024 && u + 1 < sizeof units / sizeof *units) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, n, "%llu bytes", (unsigned long long)bytes);
    else
        snprintf(buf, n, "%.1f %s (%llu bytes)", v, units[u], (unsigned long long)bytes);
}

static void line(const char *what, uint64_t used, uint64_t limit, bool bytes)
{
    char u[64], l[64];
    if (bytes) {
        human(u, sizeof u, used);
        human(l, sizeof l, limit);
    } else {
        snprintf(u, sizeof u, "%llu", (unsigned long long)used);
        snprintf(l, sizeof l, "%llu", (unsigned long long)limit);
    }
    if (limit)
        printf("%-9s %s of %s, %.1f%%%s\n", what, u, l, 100.0 * (double)used / (double)limit,
               used >= limit ? " (full)" : "");
    else
        printf("%-9s %s, no limit\n", what, u);
}

int admin_cmd_quota(admin_ctx *ctx, int argc, char **argv)
{
    char *pos[1];
    size_t npos;
    if (admin_args(argc, argv, NULL, 0, pos, 1, 1, &npos, "quota USER") < 0)
        return ADMIN_USAGE;
    quota_limits def, lim;
    if (quota_config_defaults(&ctx->cfg, &def) < 0) {
        admin_err("quota_storage: not a size: %s", config_get(&ctx->cfg, "quota_storage"));
        return ADMIN_FAIL;
    }
    /* The user's record from the directory ringmaild uses (userdb). */
    userdb_rec rec = {0};
    int rc = admin_userdb_lookup(ctx, pos[0], &rec);
    if (rc < 0)
        return ADMIN_FAIL;
    char *name = rec.name, *extra = rec.extra;
    int ret = ADMIN_FAIL;
    bool bad = quota_user_limits(&def, extra, &lim) < 0;
    if (bad)
        lim = def;
    store_usage use = {0};
    char dir[4096];
    struct stat st;
    snprintf(dir, sizeof dir, "%s/%s", ctx->mail_root, name);
    if (stat(dir, &st) == 0) {  /* else no mail yet: nothing used */
        store_user *u;
        if (admin_user_open(ctx, name, false, &u) < 0)
            goto out;
        rc = store_user_usage(u, &use);
        store_user_close(u);
        if (rc < 0) {
            admin_err("reading the usage of '%s': %s", name, store_strerror(rc));
            goto out;
        }
    }
    printf("user      %s\n", name);
    line("storage", use.bytes, lim.storage, true);
    line("messages", use.messages, lim.messages, false);
    if (bad)
        printf("warning   the passwd-file line has a bad quota_rule: the defaults apply\n");
    ret = ADMIN_OK;
out:
    free(name);
    free(extra);
    return ret;
}
