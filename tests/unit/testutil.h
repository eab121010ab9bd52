/* tests/unit/testutil.h — a minimal assertion harness for the C unit tests.
 * CHECK() records a failure and goes on; REQUIRE() stops the test.  main()
 * calls RUN(fn) for each test and returns test_summary().  Below it, the
 * helpers every store test needs (scratch directories, paths, quick mode,
 * a clock), here once instead of a copy in each file. */
#ifndef RINGMAIL_TESTUTIL_H
#define RINGMAIL_TESTUTIL_H

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
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

/* RUN in a child process with an alarm of secs seconds: a crash or hang is
 * one failed test, not a lost run (an exit status other than 1 is reported:
 * a sanitizer's).  RINGMAIL_TEST_NOFORK=1 runs the tests in-process (for a
 * debugger); RINGMAIL_TEST_ONLY=test_name runs just one. */
#define RUN_ISOLATED(fn, secs) do { const char *only_ = getenv("RINGMAIL_TEST_ONLY"); \
    if (only_ && *only_ && strcmp(only_, #fn) != 0) break; \
    if (getenv("RINGMAIL_TEST_NOFORK")) { RUN(fn); break; } \
    fflush(stderr); pid_t pid_ = fork(); \
    if (pid_ == 0) { test_failures_ = 0; alarm(secs); RUN(fn); exit(test_failures_ ? 1 : 0); } \
    int st_ = 0; test_count_++; \
    if (pid_ < 0 || waitpid(pid_, &st_, 0) < 0) { test_failures_++; break; } \
    if (WIFSIGNALED(st_)) { fprintf(stderr, "FAIL %s (killed by signal %d)\n", #fn, \
        WTERMSIG(st_)); test_failures_++; } \
    else if (WEXITSTATUS(st_) == 1) test_failures_++; \
    else if (WEXITSTATUS(st_) != 0) { fprintf(stderr, "FAIL %s (exit status %d: sanitizer?)\n", \
        #fn, WEXITSTATUS(st_)); test_failures_++; } } while (0)

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

/* Write text to path (created or truncated); exits on failure. */
static inline void test_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

static inline int test_rm_cb_(const char *p, const struct stat *sb, int flag,
                               struct FTW *f)
{
    (void)sb; (void)flag; (void)f;
    remove(p);
    return 0;           /* go on: remove as much as can be removed */
}

/* Remove the tree at path (a test's scratch store), not following links. */
static inline void test_rm_rf(const char *path)
{
    nftw(path, test_rm_cb_, 16, FTW_DEPTH | FTW_PHYS);
}

/* snprintf into a path buffer; a path that does not fit stops the test
 * program (a truncated path would quietly test another file). */
__attribute__((format(printf, 3, 4)))
static inline void test_pathf(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap) {
        fprintf(stderr, "path too long: %s\n", out);
        abort();
    }
}

/* Run the smaller version of the long tests: RINGMAIL_TEST_QUICK set (and
 * not "0"), or always under AddressSanitizer, which makes them slow. */
static inline bool test_quick(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return true;
#endif
#endif
    const char *q = getenv("RINGMAIL_TEST_QUICK");
    return q && *q && strcmp(q, "0") != 0;
}

/* Monotonic seconds, for timing a step. */
static inline double test_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}


/* Run fn(arg) in a child with stderr going to a pipe, for tests of what
 * must abort.  *sig gets the signal that ended the child (0 if it exited),
 * out (cap bytes, NUL-terminated) its stderr.  The child dumps no core. */
static inline int test_run_child(void (*fn)(void *), void *arg, int *sig, char *out,
                                 size_t cap)
{
    int p[2];
    if (pipe(p) < 0)
        return -errno;
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        struct rlimit rl = { 0, 0 };    /* the abort is expected: no core */
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

#endif
