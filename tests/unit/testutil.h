/* tests/unit/testutil.h — a minimal assertion harness for the C unit tests.
 * CHECK() records a failure and goes on; REQUIRE() stops the test.  main()
 * calls RUN(fn) for each test and returns test_summary(). */
#ifndef RINGMAIL_TESTUTIL_H
#define RINGMAIL_TESTUTIL_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int test_failures_;
static int test_count_;

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: CHECK failed: %s\n", \
    __FILE__, __LINE__, #c); test_failures_++; } } while (0)
#define REQUIRE(c) do { if (!(c)) { fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", \
    __FILE__, __LINE__, #c); test_failures_++; return; } } while (0)
#define CHECK_EQ(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); \
    if (a_ != b_) { fprintf(stderr, "%s:%d: CHECK_EQ failed: %s = %lld, %s = %lld\n", \
    __FILE__, __LINE__, #a, a_, #b, b_); test_failures_++; } } while (0)
#define REQUIRE_OK(e) do { long long r_ = (long long)(e); if (r_ < 0) { \
    fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #e, strerror((int)-r_)); \
    test_failures_++; return; } } while (0)
#define RUN(fn) do { int before_ = test_failures_; test_count_++; fn(); \
    fprintf(stderr, "%s %s\n", test_failures_ == before_ ? "ok  " : "FAIL", #fn); } while (0)

static inline int test_summary(void)
{
    fprintf(stderr, "%d tests, %d failures\n", test_count_, test_failures_);
    return test_failures_ ? 1 : 0;
}

/* A fresh empty directory for one test, under $RINGMAIL_TEST_TMP or /tmp.
 * Returns a static buffer. */
static inline const char *test_tmpdir(const char *tag)
{
    static char path[512];
    const char *base = getenv("RINGMAIL_TEST_TMP");
    if (!base || !*base)
        base = "/tmp";
    mkdir(base, 0700);
    snprintf(path, sizeof path, "%s/%s.XXXXXX", base, tag);
    if (!mkdtemp(path)) {
        perror("mkdtemp");
        exit(2);
    }
    return path;
}

#endif
