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

enum { TRIP_LINE = __LINE__ + 4 };   /* the RM_ASSERT below */
static void trip(void *arg)
{
    int x = *(int *)arg;
    RM_ASSERT(x == 2);
}

static void trip_msg(void *arg)
{
    int x = *(int *)arg;
    RM_ASSERT_MSG(x < 0, "x must be negative");
}

static void hold(void *arg)
{
    int x = *(int *)arg;
    RM_ASSERT(x == 1);
    RM_ASSERT_MSG(x > 0, "positive");
    assert(x == 2);             /* compiled out here, as in a release build */
}

static void test_fires(void)
{
    char out[512];
    int sig = -1;
    REQUIRE_OK(test_run_child(trip, &(int){1}, &sig, out, sizeof out));
    CHECK_EQ(sig, SIGABRT);
    char want[128];
    snprintf(want, sizeof want, "test_assert.c:%d: trip: assertion failed: x == 2\n",
             (int)TRIP_LINE);
    CHECK(strstr(out, want) != NULL);
    /* One line, nothing else. */
    CHECK(strchr(out, '\n') == out + strlen(out) - 1);

    REQUIRE_OK(test_run_child(trip_msg, &(int){3}, &sig, out, sizeof out));
    CHECK_EQ(sig, SIGABRT);
    CHECK(strstr(out, ": trip_msg: assertion failed: x < 0: x must be negative\n") != NULL);
}

static void test_holds(void)
{
    char out[512];
    int sig = -1;
    REQUIRE_OK(test_run_child(hold, &(int){1}, &sig, out, sizeof out));
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
