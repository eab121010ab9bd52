/* tests/unit/test_testutil.c — the shared test helpers in testutil.h: a
 * helper that silently failed (a scratch tree left behind, a truncated
 * path, quick mode ignored) would make other tests pass for the wrong
 * reason. */
#include <signal.h>
#include <sys/wait.h>

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

int main(void)
{
    RUN(test_rm_rf_tree);
    RUN(test_pathf_fits_or_stops);
    RUN(test_quick_follows_env);
    RUN(test_now_is_monotonic);
    return test_summary();
}
