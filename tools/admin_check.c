/* tools/admin_check.c — `check USER [MAILBOX] [--repair]`: verify every
 * record's checksum and the index and cache against the log; with
 * --repair cut a torn tail and rebuild what is derived.  The exit status
 * is 1 if any mailbox still has problems, so scripts can act on it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/admin.h"

/* Returns 0 if the mailbox is (now) consistent, -EBADMSG if problems
 * remain, another -errno if it could not be checked. */
static int check_one(store_user *u, const char *name, bool repair)
{
    store_mbox *mb = NULL;
    store_check_report rep = { 0 };
    admin_progress pr;
    char label[64];

    int r = admin_mbox_open(u, name, &mb);
    if (r < 0)
        return r;
    snprintf(label, sizeof label, "check %.50s", name);
    admin_progress_start(&pr, label, 0, true);
    r = store_check(mb, repair, &rep, admin_progress_cb, &pr);
    admin_progress_end(&pr);
    /* The message count is of live messages, as `stats` and STATUS report
     * them: rep.messages counts MESSAGE records in the log, expunged ones
     * included until compaction drops them. */
    store_status st = { 0 };
    int sr = r == 0 || r == -EBADMSG ? store_mbox_status(mb, &st) : 0;
    store_mbox_close(mb);
    if (r < 0 && r != -EBADMSG) {
        admin_err("mailbox '%s': check failed: %s", name, strerror(-r));
        return r;
    }
    if (sr < 0) {
        admin_err("mailbox '%s': cannot read its status after the check: %s", name,
                  strerror(-sr));
        return sr;
    }
    bool problems = rep.bad_records || rep.torn_bytes || rep.index_mismatches ||
                    rep.cache_errors;
    if (rep.leftovers)
        printf("%s: removed %llu leftover files of an interrupted compaction or rebuild\n",
               name, (unsigned long long)rep.leftovers);
    if (rep.cache_stale)
        printf("%s: %llu cache entries of an older version (no preview)%s\n", name,
               (unsigned long long)rep.cache_stale,
               repair && r == 0 ? ", rebuilt" : ", --repair rebuilds them");
    if (!problems && r == 0) {
        printf("%s: ok, %llu records, %u messages", name,
               (unsigned long long)rep.records, st.messages);
        if (rep.legacy_messages)
            printf(", %llu message records of the older format (no save date)",
                   (unsigned long long)rep.legacy_messages);
        printf("\n");
        return 0;
    }
    printf("%s: %s, %llu records, %u messages: %llu bad records, %llu torn bytes, "
           "%llu index mismatches, %llu cache errors%s\n",
           name, r == 0 ? "repaired" : "PROBLEMS",
           (unsigned long long)rep.records, st.messages,
           (unsigned long long)rep.bad_records, (unsigned long long)rep.torn_bytes,
           (unsigned long long)rep.index_mismatches, (unsigned long long)rep.cache_errors,
           r == 0 ? "" : repair ? " (could not repair)" : " (run with --repair)");
    return r;
}

/* Mailbox directories no mailbox owns (a DELETE that crashed after its
 * commit point).  Only --repair removes them: if the mailbox list were an
 * older copy (restored by hand), they would be mail, not garbage. */
static int check_orphans(store_user *u, bool repair)
{
    uint64_t *ids = NULL;
    size_t n = 0;
    int r = store_user_orphans(u, repair, &ids, &n);
    if (r < 0) {
        admin_err("orphan mailbox directories: %s", strerror(-r));
        return r;
    }
    for (size_t i = 0; i < n; i++)
        printf("m/%llu: orphan mailbox directory (no mailbox names it)%s\n",
               (unsigned long long)ids[i],
               repair ? ": removed" : " (run with --repair to remove it)");
    free(ids);
    return n && !repair ? -EBADMSG : 0;
}

int admin_cmd_check(admin_ctx *ctx, int argc, char **argv)
{
    bool repair = false;
    const admin_opt opts[] = { { "repair", &repair, NULL } };
    char *pos[2];
    size_t npos;
    if (admin_args(argc, argv, opts, 1, pos, 1, 2, &npos,
                   "check USER [MAILBOX] [--repair]") < 0)
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
        if (check_one(u, v[i].name, repair) < 0)
            ret = ADMIN_FAIL;
    if (npos == 1 && check_orphans(u, repair) < 0)
        ret = ADMIN_FAIL;
out:
    if (v)
        store_mailbox_info_free(v, n);
    if (u)
        store_user_close(u);
    return ret;
}
