/* tests/unit/test_store_quota.c — quota limits (Dovecot's rules, the
 * defaults) and usage (store_user_usage, store_mbox_set_usage,
 * store_mbox_deleted_usage): summed over mailboxes, updated by each write,
 * by another process, through compaction, deletion, renaming and repair;
 * and what a sum costs for a user with 100 mailboxes. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/base/quota.h"
#include "store/internal.h"
#include "tests/unit/store_testutil.h"

static const char *self_exe;

/* ---- the rule parser ---- */

static void test_size_parse(void)
{
    uint64_t v;
    REQUIRE_OK(quota_size_parse("1G", 1, &v));
    CHECK_EQ(v, 1073741824);
    REQUIRE_OK(quota_size_parse("10m", 1, &v));
    CHECK_EQ(v, 10 << 20);
    REQUIRE_OK(quota_size_parse("3k", 1, &v));
    CHECK_EQ(v, 3072);
    REQUIRE_OK(quota_size_parse("2T", 1, &v));
    CHECK_EQ(v, 2ull << 40);
    REQUIRE_OK(quota_size_parse("512B", 1024, &v));
    CHECK_EQ(v, 512);
    REQUIRE_OK(quota_size_parse("512", 1024, &v));   /* no unit: the caller's */
    CHECK_EQ(v, 512 * 1024);
    REQUIRE_OK(quota_size_parse("0", 1, &v));
    CHECK_EQ(v, 0);
    CHECK_EQ(quota_size_parse("", 1, &v), -EINVAL);
    CHECK_EQ(quota_size_parse("G", 1, &v), -EINVAL);
    CHECK_EQ(quota_size_parse("1GB", 1, &v), -EINVAL);
    CHECK_EQ(quota_size_parse("1X", 1, &v), -EINVAL);
    CHECK_EQ(quota_size_parse("-1", 1, &v), -EINVAL);
    CHECK_EQ(quota_size_parse(" 1", 1, &v), -EINVAL);
    CHECK_EQ(quota_size_parse("99999999999999999999", 1, &v), -EINVAL);
    CHECK_EQ(quota_size_parse("17179869184G", 1, &v), -EINVAL);   /* 2^64 */
}

static void test_rule_parse(void)
{
    quota_limits l = {0};
    REQUIRE_OK(quota_rule_parse("*:storage=1G", &l));
    CHECK_EQ(l.storage, 1ull << 30);
    CHECK_EQ(l.messages, 0);
    /* storage= counts KiB without a unit, bytes= bytes (as Dovecot) */
    REQUIRE_OK(quota_rule_parse("*:storage=100", &l));
    CHECK_EQ(l.storage, 102400);
    REQUIRE_OK(quota_rule_parse("*:bytes=100", &l));
    CHECK_EQ(l.storage, 100);
    /* a rule sets what it names and keeps the rest */
    REQUIRE_OK(quota_rule_parse("*:messages=1000", &l));
    CHECK_EQ(l.storage, 100);
    CHECK_EQ(l.messages, 1000);
    /* several limits in one rule; "?" is the default rule too */
    REQUIRE_OK(quota_rule_parse("?:storage=2M:messages=10", &l));
    CHECK_EQ(l.storage, 2 << 20);
    CHECK_EQ(l.messages, 10);
    /* 0 is no limit */
    REQUIRE_OK(quota_rule_parse("*:storage=0", &l));
    CHECK_EQ(l.storage, 0);
    /* a mailbox's rule is valid and changes nothing here */
    l = (quota_limits){ 5, 6 };
    REQUIRE_OK(quota_rule_parse("Trash:storage=+100M", &l));
    REQUIRE_OK(quota_rule_parse("Trash:storage=10%", &l));
    REQUIRE_OK(quota_rule_parse("SPAM:ignore", &l));
    CHECK(l.storage == 5 && l.messages == 6);
    REQUIRE_OK(quota_rule_parse("*:ignore", &l));
    CHECK(l.storage == 0 && l.messages == 0);
    /* what Dovecot refuses */
    const char *bad[] = { "storage=1G", "*:storage", "*:storage=", "*:size=1G",
                          "*:storage=1Q", "*:storage=-1", "*:storage=+1G", "*:storage=10%",
                          "*:messages=x", "*:", "*:storage=1G:", "*:backend=1G" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        quota_limits t = {0};
        if (quota_rule_parse(bad[i], &t) != -EINVAL) {
            fprintf(stderr, "  accepted: %s\n", bad[i]);
            CHECK(0);
        }
    }
}

static void test_extra_parse(void)
{
    quota_limits l, def = { 1000, 10 }, out;
    bool found;
    REQUIRE_OK(quota_extra_parse(NULL, &l, &found));
    CHECK(!found);
    REQUIRE_OK(quota_extra_parse("userdb_quota_rule=*:storage=1G userdb_quota_rule2=*:messages=10",
                                 &l, &found));
    CHECK(found && l.storage == 1ull << 30 && l.messages == 10);
    REQUIRE_OK(quota_extra_parse("quota_rule=*:messages=7 userdb_mail=maildir:~/Mail", &l,
                                 &found));
    CHECK(found && l.storage == 0 && l.messages == 7);
    /* later rules win, as later settings do */
    REQUIRE_OK(quota_extra_parse("quota_rule=*:messages=7  quota_rule3=*:messages=8", &l, &found));
    CHECK(found && l.messages == 8);
    /* not quota rules */
    REQUIRE_OK(quota_extra_parse("userdb_quota_rulex=*:messages=7 quota=*:messages=1 x=y", &l,
                                 &found));
    CHECK(!found && l.messages == 0);
    CHECK_EQ(quota_extra_parse("userdb_quota_rule=*:storage=1Z", &l, &found), -EINVAL);
    /* the line's whole-user rules replace the defaults as a whole */
    REQUIRE_OK(quota_user_limits(&def, "userdb_quota_rule=*:storage=2K", &out));
    CHECK(out.storage == 2048 && out.messages == 0);
    REQUIRE_OK(quota_user_limits(&def, NULL, &out));
    CHECK(out.storage == 1000 && out.messages == 10);
    REQUIRE_OK(quota_user_limits(&def, "userdb_quota_rule=Trash:storage=+1M", &out));
    CHECK(out.storage == 1000 && out.messages == 10);
    CHECK_EQ(quota_user_limits(&def, "quota_rule=*:storage=-5", &out), -EINVAL);
}

static void test_config_defaults(void)
{
    config cfg = {0};
    REQUIRE_OK(config_init(&cfg));
    quota_limits l;
    REQUIRE_OK(quota_config_defaults(&cfg, &l));
    CHECK(l.storage == 0 && l.messages == 0);  /* none by default */
    char err[256];
    REQUIRE_OK(config_set(&cfg, "quota_storage=1G", err, sizeof err));
    REQUIRE_OK(config_set(&cfg, "quota_messages=5000", err, sizeof err));
    REQUIRE_OK(quota_config_defaults(&cfg, &l));
    CHECK(l.storage == 1ull << 30 && l.messages == 5000);
    REQUIRE_OK(config_set(&cfg, "quota_storage=1024", err, sizeof err));
    REQUIRE_OK(quota_config_defaults(&cfg, &l));
    CHECK_EQ(l.storage, 1024);      /* bytes without a unit */
    REQUIRE_OK(config_set(&cfg, "quota_storage=lots", err, sizeof err));
    CHECK_EQ(quota_config_defaults(&cfg, &l), -EINVAL);
    CHECK(config_set(&cfg, "quota_messages=-1", err, sizeof err) < 0);
    config_free(&cfg);
}

/* ---- usage ---- */

static int append_n(store_mbox *mb, unsigned n, size_t pad, unsigned flags)
{
    for (unsigned i = 0; i < n; i++) {
        char buf[8192];
        int len = snprintf(buf, sizeof buf, "Subject: %u\r\n\r\n%.*s\r\n", i, (int)pad,
                           "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        store_new_msg m = { .data = buf, .len = (size_t)len, .flags = flags };
        uint32_t uid;
        int rc = store_append(mb, &m, 1, &uid);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* The usage the slow way: every mailbox opened and asked. */
static int usage_by_status(store_user *u, store_usage *out)
{
    store_mailbox_info *v;
    size_t n;
    memset(out, 0, sizeof *out);
    int rc = store_mailbox_list(u, &v, &n);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        store_status st;
        if ((rc = store_mailbox_status(u, v[i].name, &st)) == 0) {
            out->messages += st.messages;
            out->bytes += st.size;
        }
    }
    store_mailbox_info_free(v, n);
    return rc;
}

#define CHECK_USAGE(u, msgs) do { store_usage qa_, qb_; \
    REQUIRE_OK(store_user_usage(u, &qa_)); REQUIRE_OK(usage_by_status(u, &qb_)); \
    CHECK_EQ(qa_.messages, msgs); CHECK_EQ(qa_.messages, qb_.messages); \
    CHECK_EQ(qa_.bytes, qb_.bytes); } while (0)

static void test_usage_across_mailboxes(void)
{
    const char *root = test_tmpdir("quota");
    store_user *u;
    store_mbox *inbox, *a, *b;
    REQUIRE_OK(test_inbox_open(root, "alice", STORE_FSYNC_NEVER, &u, &inbox));
    CHECK_USAGE(u, 0);
    REQUIRE_OK(store_mailbox_create(u, "a", 0));
    REQUIRE_OK(store_mailbox_create(u, "b/c", 0));
    REQUIRE_OK(store_mbox_open(u, "a", &a));
    REQUIRE_OK(store_mbox_open(u, "b/c", &b));
    REQUIRE_OK(append_n(inbox, 3, 10, 0));
    CHECK_USAGE(u, 3);
    REQUIRE_OK(append_n(a, 5, 40, STORE_F_DELETED));
    REQUIRE_OK(append_n(b, 2, 0, 0));
    CHECK_USAGE(u, 10);
    store_usage d;
    REQUIRE_OK(store_mbox_deleted_usage(a, &d));
    CHECK_EQ(d.messages, 5);
    store_status st;
    REQUIRE_OK(store_mbox_status(a, &st));
    CHECK_EQ(d.bytes, st.size);
    /* expunge frees at once */
    store_range all = { 1, UINT32_MAX };
    REQUIRE_OK(store_expunge(a, &all, 1, true, NULL, NULL));
    CHECK_USAGE(u, 5);
    /* a set counts each live message once */
    store_range set[] = { { 2, 3 }, { 1, 2 }, { 3, 3 }, { 50, UINT32_MAX } };
    REQUIRE_OK(store_mbox_set_usage(inbox, set, 4, &d));
    CHECK_EQ(d.messages, 3);
    REQUIRE_OK(store_mbox_status(inbox, &st));
    CHECK_EQ(d.bytes, st.size);
    store_range one = { 2, 2 };
    REQUIRE_OK(store_mbox_set_usage(inbox, &one, 1, &d));
    CHECK_EQ(d.messages, 1);
    REQUIRE_OK(store_mbox_set_usage(a, &all, 1, &d));
    CHECK_EQ(d.messages, 0);
    /* a move within the user keeps the usage; a copy adds the set */
    REQUIRE_OK(store_copy(inbox, &one, 1, b, true, NULL, NULL));
    CHECK_USAGE(u, 5);
    REQUIRE_OK(store_copy(inbox, &all, 1, a, false, NULL, NULL));
    CHECK_USAGE(u, 7);
    /* compaction swaps the index files: the mapped header is replaced */
    REQUIRE_OK(append_n(a, 4, 0, 0));
    CHECK_USAGE(u, 11);
    REQUIRE_OK(store_expunge(a, NULL, 0, false, NULL, NULL));
    REQUIRE_OK(store_compact(a, NULL, NULL));
    CHECK_USAGE(u, 5);
    REQUIRE_OK(append_n(a, 1, 0, 0));
    CHECK_USAGE(u, 6);
    /* a repair rebuilds the index; the usage follows */
    store_check_report rep;
    REQUIRE_OK(store_check(a, true, &rep, NULL, NULL));
    CHECK_USAGE(u, 6);
    REQUIRE_OK(append_n(a, 1, 0, 0));
    CHECK_USAGE(u, 7);
    /* rename keeps, delete drops (b/c holds 3) */
    store_mbox_close(b);
    REQUIRE_OK(store_mailbox_rename(u, "b", "z"));
    CHECK_USAGE(u, 7);
    REQUIRE_OK(store_mailbox_delete(u, "z/c"));
    CHECK_USAGE(u, 4);
    store_mbox_close(a);
    test_inbox_close(u, inbox);
    test_rm_rf(root);
}

/* Another process (as ringmail-admin or a second ringmaild) writes; this
 * one's mapped headers see it at the next sum, without reopening. */
static int run_child(const char *root, const char *what)
{
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        execl(self_exe, self_exe, what, root, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (waitpid(pid, &st, 0) < 0)
        return -errno;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int child_main(int argc, char **argv)
{
    if (argc != 3)
        return 64;
    store_user *u;
    store_mbox *mb;
    int rc = store_user_open(argv[2], "bob", NULL, &u);
    if (rc < 0)
        return 2;
    if (!strcmp(argv[1], "--create")) {
        rc = store_mailbox_create(u, "fromchild", 0);
        if (rc == 0 && (rc = store_mbox_open(u, "fromchild", &mb)) == 0) {
            rc = append_n(mb, 4, 5, 0);
            store_mbox_close(mb);
        }
    } else if (!strcmp(argv[1], "--expunge")) {
        if ((rc = store_mbox_open(u, "INBOX", &mb)) == 0) {
            store_range r = { 1, 2 };
            rc = store_expunge(mb, &r, 1, false, NULL, NULL);
            store_mbox_close(mb);
        }
    } else if (!strcmp(argv[1], "--compact")) {
        if ((rc = store_mbox_open(u, "INBOX", &mb)) == 0) {
            rc = store_compact(mb, NULL, NULL);
            if (rc == 0)
                rc = append_n(mb, 1, 0, 0);
            store_mbox_close(mb);
        }
    }
    store_user_close(u);
    return rc < 0 ? 3 : 0;
}

/* `ringmail-admin check` keeps the usage right: the usage is the index
 * headers' counters, which check compares with the log and --repair
 * rebuilds.  A header whose counters went wrong (bit rot, a bug) is found
 * and fixed, and the sum follows at once. */
static void test_usage_repaired_by_check(void)
{
    const char *root = test_tmpdir("quota-check");
    store_user *u;
    store_mbox *inbox;
    REQUIRE_OK(test_inbox_open(root, "dave", STORE_FSYNC_NEVER, &u, &inbox));
    REQUIRE_OK(append_n(inbox, 4, 100, 0));
    store_usage good, bad;
    REQUIRE_OK(store_user_usage(u, &good));
    CHECK_EQ(good.messages, 4);
    char path[4096];
    test_pathf(path, sizeof path, "%s/dave/m/%" PRIu64 "/index", root, inbox->id);
    int fd = open(path, O_RDWR);
    REQUIRE(fd >= 0);
    uint64_t wrong = good.bytes + 12345;
    REQUIRE(pwrite(fd, &wrong, sizeof wrong, offsetof(struct idx_hdr, size_live)) ==
            (ssize_t)sizeof wrong);
    close(fd);
    REQUIRE_OK(store_user_usage(u, &bad));
    CHECK_EQ(bad.bytes, wrong);         /* the sum reads what the header says */
    store_check_report rep;
    memset(&rep, 0, sizeof rep);
    CHECK(store_check(inbox, false, &rep, NULL, NULL) < 0 || rep.index_mismatches > 0);
    CHECK(rep.index_mismatches > 0);
    memset(&rep, 0, sizeof rep);
    REQUIRE_OK(store_check(inbox, true, &rep, NULL, NULL));
    REQUIRE_OK(store_user_usage(u, &bad));
    CHECK_EQ(bad.bytes, good.bytes);
    CHECK_EQ(bad.messages, good.messages);
    test_inbox_close(u, inbox);
    test_rm_rf(root);
}

/* Past the process's map budget the headers are read with pread: the
 * same sums, through the same changes. */
static void test_usage_unmapped(void)
{
    store_quota_map_max(1);
    test_usage_across_mailboxes();
    store_quota_map_max(0);
    test_usage_across_mailboxes();
}

static void test_usage_other_process(void)
{
    const char *root = test_tmpdir("quota-proc");
    store_user *u;
    store_mbox *inbox;
    REQUIRE_OK(test_inbox_open(root, "bob", STORE_FSYNC_NEVER, &u, &inbox));
    REQUIRE_OK(append_n(inbox, 5, 0, 0));
    CHECK_USAGE(u, 5);
    CHECK_EQ(run_child(root, "--create"), 0);
    CHECK_USAGE(u, 9);
    CHECK_EQ(run_child(root, "--expunge"), 0);
    CHECK_USAGE(u, 7);
    CHECK_EQ(run_child(root, "--compact"), 0);
    CHECK_USAGE(u, 8);
    REQUIRE_OK(append_n(inbox, 1, 0, 0));
    CHECK_USAGE(u, 9);
    test_inbox_close(u, inbox);
    test_rm_rf(root);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The cost of a check for a user with 100 mailboxes: the sum reads mapped
 * headers, so it must stay far below opening every mailbox. */
static void test_usage_cost(void)
{
    const char *root = test_tmpdir("quota-cost");
    store_user *u;
    store_mbox *inbox;
    REQUIRE_OK(test_inbox_open(root, "carol", STORE_FSYNC_NEVER, &u, &inbox));
    for (int i = 0; i < 99; i++) {
        char name[32];
        snprintf(name, sizeof name, "box%02d", i);
        REQUIRE_OK(store_mailbox_create(u, name, 0));
        store_mbox *mb;
        REQUIRE_OK(store_mbox_open(u, name, &mb));
        REQUIRE_OK(append_n(mb, 2, 0, 0));
        store_mbox_close(mb);
    }
    store_usage x;
    double t0 = now_s();
    REQUIRE_OK(store_user_usage(u, &x));    /* first: maps the headers */
    double first = now_s() - t0;
    CHECK_EQ(x.messages, 198);
    int n = test_quick() ? 200 : 2000;
    t0 = now_s();
    for (int i = 0; i < n; i++)
        REQUIRE_OK(store_user_usage(u, &x));
    double each = (now_s() - t0) / n;
    t0 = now_s();
    int m = test_quick() ? 5 : 50;
    for (int i = 0; i < m; i++)
        REQUIRE_OK(usage_by_status(u, &x));
    double slow = (now_s() - t0) / m;
    /* without maps (past the process's budget): a pread per mailbox */
    store_quota_map_max(0);
    test_inbox_close(u, inbox);     /* the user goes, and its maps */
    REQUIRE_OK(test_inbox_open(root, "carol", STORE_FSYNC_NEVER, &u, &inbox));
    t0 = now_s();
    for (int i = 0; i < m * 10; i++)
        REQUIRE_OK(store_user_usage(u, &x));
    double pread_each = (now_s() - t0) / (m * 10);
    CHECK_EQ(x.messages, 198);
    fprintf(stderr, "  usage of 100 mailboxes: first %.1f us, then %.1f us per sum "
                    "(%.1f us unmapped); opening each mailbox %.1f us\n", first * 1e6,
            each * 1e6, pread_each * 1e6, slow * 1e6);
    CHECK(each < slow && pread_each < slow);
    test_inbox_close(u, inbox);
    test_rm_rf(root);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        return child_main(argc, argv);
    static char exe[4096];
    ssize_t l = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (l <= 0)
        return 2;
    exe[l] = 0;
    self_exe = exe;
    RUN(test_size_parse);
    RUN(test_rule_parse);
    RUN(test_extra_parse);
    RUN(test_config_defaults);
    RUN_ISOLATED(test_usage_across_mailboxes, 300);
    RUN_ISOLATED(test_usage_repaired_by_check, 300);
    RUN_ISOLATED(test_usage_unmapped, 300);
    RUN_ISOLATED(test_usage_other_process, 300);
    RUN_ISOLATED(test_usage_cost, 300);
    return test_summary();
}
