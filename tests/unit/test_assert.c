/* tests/unit/test_assert.c — RM_ASSERT is never compiled out: with NDEBUG
 * defined (as release builds do) a false condition still prints its line
 * and aborts, and a true one does nothing and is evaluated once. */
#undef NDEBUG
#define NDEBUG 1
#include <assert.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "store/assert.h"
#include "testutil.h"

/* Run fn(arg) in a child with stderr going to a pipe.  *sig gets the
 * signal that ended it (0 if it exited), out its stderr. */
static int run_child(void (*fn)(int), int arg, int *sig, char *out, size_t cap)
{
    int p[2];
    if (pipe(p) < 0)
        return -errno;
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        /* The abort is expected: no core file for it. */
        struct rlimit rl = { 0, 0 };
        setrlimit(RLIMIT_CORE, &rl);
        close(p[0]);
        dup2(p[1], 2);
        fn(arg);
        _exit(0);
    }
    close(p[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(p[0], out + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = 0;
    close(p[0]);
    int st;
    if (waitpid(pid, &st, 0) < 0)
        return -errno;
    *sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
    return 0;
}

enum { TRIP_LINE = __LINE__ + 3 };   /* the RM_ASSERT below */
static void trip(int x)
{
    RM_ASSERT(x == 2);
}

static void trip_msg(int x)
{
    RM_ASSERT_MSG(x < 0, "x must be negative");
}

static void hold(int x)
{
    RM_ASSERT(x == 1);
    RM_ASSERT_MSG(x > 0, "positive");
    assert(x == 2);             /* compiled out here, as in a release build */
}

static void test_fires(void)
{
    char out[512];
    int sig = -1;
    REQUIRE_OK(run_child(trip, 1, &sig, out, sizeof out));
    CHECK_EQ(sig, SIGABRT);
    char want[128];
    snprintf(want, sizeof want, "test_assert.c:%d: trip: assertion failed: x == 2\n",
             (int)TRIP_LINE);
    CHECK(strstr(out, want) != NULL);
    /* One line, nothing else. */
    CHECK(strchr(out, '\n') == out + strlen(out) - 1);

    REQUIRE_OK(run_child(trip_msg, 3, &sig, out, sizeof out));
    CHECK_EQ(sig, SIGABRT);
    CHECK(strstr(out, ": trip_msg: assertion failed: x < 0: x must be negative\n") != NULL);
}

static void test_holds(void)
{
    char out[512];
    int sig = -1;
    REQUIRE_OK(run_child(hold, 1, &sig, out, sizeof out));
    CHECK_EQ(sig, 0);
    CHECK_EQ(strlen(out), 0);

    /* In-process too, and the condition is evaluated exactly once. */
    int n = 0;
    RM_ASSERT(++n == 1);
    RM_ASSERT_MSG(++n == 2, "twice");
    CHECK_EQ(n, 2);
}

int main(void)
{
    RUN(test_fires);
    RUN(test_holds);
    return test_summary();
}
