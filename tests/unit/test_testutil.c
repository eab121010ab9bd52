/* tests/unit/test_testutil.c — the shared test helpers in testutil.h and
 * store_testutil.h: a helper that silently failed (a scratch tree left
 * behind, a truncated path, quick mode ignored, a crash not counted) would
 * make other tests pass for the wrong reason. */
#include <signal.h>
#include <sys/wait.h>

#include "tests/unit/store_testutil.h"
#include "tests/unit/testutil.h"

static void touch(const char *path)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("x", f);
        fclose(f);
    }
}

static void test_rm_rf_tree(void)
{
    char root[512], p[600];
    snprintf(root, sizeof root, "%s", test_tmpdir("testutil"));
    test_pathf(p, sizeof p, "%s/a", root);
    REQUIRE(mkdir(p, 0700) == 0);
    test_pathf(p, sizeof p, "%s/a/b", root);
    REQUIRE(mkdir(p, 0700) == 0);
    test_pathf(p, sizeof p, "%s/a/b/f", root);
    touch(p);
    test_pathf(p, sizeof p, "%s/g", root);
    touch(p);
    /* A link to a directory outside the tree: removed, not followed. */
    char outside[512], keep[600];
    snprintf(outside, sizeof outside, "%s", test_tmpdir("testutil-out"));
    test_pathf(keep, sizeof keep, "%s/keep", outside);
    touch(keep);
    test_pathf(p, sizeof p, "%s/a/link", root);
    REQUIRE(symlink(outside, p) == 0);
    test_rm_rf(root);
    struct stat st;
    CHECK(lstat(root, &st) < 0 && errno == ENOENT);
    CHECK(stat(keep, &st) == 0);
    test_rm_rf(outside);
    CHECK(lstat(outside, &st) < 0 && errno == ENOENT);
    test_rm_rf(outside);                    /* already gone: no harm */
}

static void test_pathf_fits_or_stops(void)
{
    char p[8];
    test_pathf(p, sizeof p, "%s/%d", "abc", 12);
    CHECK(strcmp(p, "abc/12") == 0);
    test_pathf(p, sizeof p, "%s", "1234567");   /* exactly fills the buffer */
    CHECK(strcmp(p, "1234567") == 0);
    fflush(stderr);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        freopen("/dev/null", "w", stderr);
        test_pathf(p, sizeof p, "%s", "12345678");
        _exit(0);                           /* not reached: it aborts */
    }
    int st = 0;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
}

static void test_quick_follows_env(void)
{
    const char *old = getenv("RINGMAIL_TEST_QUICK");
    char *saved = old ? strdup(old) : NULL;
#if defined(__SANITIZE_ADDRESS__)
    bool asan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    bool asan = true;
#else
    bool asan = false;
#endif
#else
    bool asan = false;
#endif
    setenv("RINGMAIL_TEST_QUICK", "1", 1);
    CHECK(test_quick());
    setenv("RINGMAIL_TEST_QUICK", "0", 1);
    CHECK(test_quick() == asan);
    setenv("RINGMAIL_TEST_QUICK", "", 1);
    CHECK(test_quick() == asan);
    unsetenv("RINGMAIL_TEST_QUICK");
    CHECK(test_quick() == asan);
    if (saved)
        setenv("RINGMAIL_TEST_QUICK", saved, 1);
    free(saved);
}

static void test_now_is_monotonic(void)
{
    double a = test_now();
    usleep(20000);
    double b = test_now();
    CHECK(b - a >= 0.019 && b - a < 5.0);
}

static void isolated_ok(void) { CHECK(1); }
static void isolated_fails(void) { test_failures_++; }
static void isolated_dies(void) { raise(SIGTERM); }
static void isolated_exits(void) { exit(3); }

/* RUN_ISOLATED counts a failed check, a death by signal and an odd exit
 * status as one failure each, a clean test as none, and skips what
 * RINGMAIL_TEST_ONLY does not name.  (Its FAIL lines here are expected.) */
static void test_run_isolated(void)
{
    const char *o = getenv("RINGMAIL_TEST_ONLY"), *nf = getenv("RINGMAIL_TEST_NOFORK");
    char *only = o ? strdup(o) : NULL, *nofork = nf ? strdup(nf) : NULL;
    unsetenv("RINGMAIL_TEST_ONLY");
    unsetenv("RINGMAIL_TEST_NOFORK");
    int f0 = test_failures_, c0 = test_count_, got[6];
    RUN_ISOLATED(isolated_ok, 10);
    got[0] = test_failures_ - f0;
    RUN_ISOLATED(isolated_fails, 10);
    got[1] = test_failures_ - f0;
    RUN_ISOLATED(isolated_dies, 10);
    got[2] = test_failures_ - f0;
    RUN_ISOLATED(isolated_exits, 10);
    got[3] = test_failures_ - f0;
    int counted = test_count_ - c0;
    setenv("RINGMAIL_TEST_ONLY", "isolated_ok", 1);
    RUN_ISOLATED(isolated_dies, 10);
    got[4] = test_failures_ - f0;
    RUN_ISOLATED(isolated_ok, 10);
    got[5] = test_failures_ - f0;
    int counted_only = test_count_ - c0;
    unsetenv("RINGMAIL_TEST_ONLY");
    test_failures_ = f0;
    test_count_ = c0;
    CHECK_EQ(got[0], 0);
    CHECK_EQ(got[1], 1);
    CHECK_EQ(got[2], 2);
    CHECK_EQ(got[3], 3);
    CHECK_EQ(counted, 4);
    CHECK_EQ(got[4], 3);
    CHECK_EQ(got[5], 3);
    CHECK_EQ(counted_only, 5);
    if (only)
        setenv("RINGMAIL_TEST_ONLY", only, 1);
    if (nofork)
        setenv("RINGMAIL_TEST_NOFORK", nofork, 1);
    free(only);
    free(nofork);
}

static void test_inbox_helpers(void)
{
    char root[512];
    snprintf(root, sizeof root, "%s", test_tmpdir("testutil-inbox"));
    store_user *u = (store_user *)1;
    store_mbox *mb = (store_mbox *)1;
    REQUIRE_OK(test_inbox_open(root, "someone", STORE_FSYNC_NEVER, &u, &mb));
    CHECK(u && mb);
    test_inbox_close(u, mb);
    u = (store_user *)1;
    mb = (store_mbox *)1;
    CHECK(test_inbox_open(root, "../outside", STORE_FSYNC_NEVER, &u, &mb) < 0);
    CHECK(!u && !mb);                       /* nothing to close */
    test_inbox_close(NULL, NULL);
    test_rm_rf(root);
}

int main(void)
{
    RUN(test_rm_rf_tree);
    RUN(test_pathf_fits_or_stops);
    RUN(test_quick_follows_env);
    RUN(test_now_is_monotonic);
    RUN(test_run_isolated);
    RUN(test_inbox_helpers);
    return test_summary();
}
