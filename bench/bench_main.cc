// bench/bench_main.cc — main() of ringmail-microbench and the thin C++ shim
// that lets C benchmark bodies (bench_store.c, ...) run under Google
// Benchmark.  See bench.h for the C side of the contract.
//
// Why a shim: Google Benchmark is C++ only, and the code under test is C.
// Writing the bodies in C keeps them next to the C API they measure, with no
// C++ wrappers around store handles; only State is wrapped here.

#include "bench/bench.h"

#include <benchmark/benchmark.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>

#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct bench_state {
    benchmark::State *s;
    const char *name;   // the registered name, for messages
};

struct bench_bm {
    benchmark::internal::Benchmark *b;
};

namespace {

bench_opts g_opts;
bool g_failed;
std::string g_workdir;
bool g_workdir_temp;
pid_t g_watcher = -1;
int g_watcher_fd = -1;
// SkipWithError/SetLabel take C strings; keep every message alive until exit.
std::deque<std::string> g_strings;

// 10^6 is in the default: it builds in ~20 s here (1.6 GB of log in the
// temporary directory), well within a run one waits for.
const uint64_t kDefaultSizes[] = {10000, 100000, 1000000};
const uint64_t kDefaultFetchSizes[] = {1000, 10000};
const uint64_t kDefaultSearchSize = 100000;
const uint64_t kDefaultSearchBodySize = 100000;
const uint64_t kDefaultParseCommands = 1000;

void usage_extra()
{
    benchmark::PrintDefaultHelp();
    std::fprintf(stdout,
        "\nRingmail options (before or after the benchmark_ ones):\n"
        "  --sizes=N[,N...]   mailbox sizes for open/lookup/listing benchmarks\n"
        "                     (default 10000,100000,1000000; env\n"
        "                     RINGMAIL_BENCH_SIZES; 1e6-style shorthands work).\n"
        "                     10^6 takes ~20 s to build and ~1.8 GB of disk\n"
        "  --fetch-sizes=N[,N...]  mailbox sizes for the FETCH listings\n"
        "                     (default 1000,10000)\n"
        "  --search-size=N    messages for the SEARCH benchmarks (default 1e5)\n"
        "  --search-body-size=N  messages for SEARCH BODY (default 1e5)\n"
        "  --parse-commands=N commands in the command-parsing stream (default 1000)\n"
        "  --data-dir=DIR     keep prepared mailboxes in DIR and reuse them on\n"
        "                     later runs (env RINGMAIL_BENCH_DATA); default is a\n"
        "                     temporary directory removed at exit\n"
        "  --tmp=DIR          parent of the temporary directory (env\n"
        "                     RINGMAIL_BENCH_TMP, else TMPDIR, else /tmp)\n"
        "  --quiet            no progress lines on stderr\n"
        "Examples:\n"
        "  ringmail-microbench --benchmark_filter=append\n"
        "  ringmail-microbench --sizes=10000 --benchmark_filter='list|open'\n"
        "  ringmail-microbench --sizes=1e6 --data-dir=/var/tmp/rm-bench\n");
}

// "N[,N...]" (1e5-style shorthands too) into v[0..*n); max entries.
int parse_list(const char *opt, const char *s, uint64_t *v, size_t *n, size_t max)
{
    *n = 0;
    while (*s) {
        char *end;
        errno = 0;
        unsigned long long x = std::strtoull(s, &end, 10);
        if (errno || end == s || x == 0 || x > 100000000ull || *n == max) {
            std::fprintf(stderr, "ringmail-microbench: bad %s value: %s\n", opt, s);
            return -1;
        }
        // Accept 1e5-style shorthands as well: "1e5" -> 100000.
        if (*end == 'e' || *end == 'E') {
            char *e2;
            unsigned long exp = std::strtoul(end + 1, &e2, 10);
            if (e2 == end + 1 || exp > 8) {
                std::fprintf(stderr, "ringmail-microbench: bad %s value: %s\n", opt, s);
                return -1;
            }
            while (exp--)
                x *= 10;
            end = e2;
        }
        v[(*n)++] = x;
        if (*end == ',')
            end++;
        else if (*end) {
            std::fprintf(stderr, "ringmail-microbench: bad %s value: %s\n", opt, s);
            return -1;
        }
        s = end;
    }
    return *n ? 0 : -1;
}

int parse_sizes(const char *s)
{
    return parse_list("--sizes", s, g_opts.sizes, &g_opts.nsizes, BENCH_MAX_SIZES);
}

int parse_one(const char *opt, const char *s, uint64_t *v)
{
    size_t n;
    return parse_list(opt, s, v, &n, 1);
}

// Takes Ringmail's options out of argv; leaves the rest for Google Benchmark.
int parse_own_args(int *argc, char **argv)
{
    const char *env;

    std::memcpy(g_opts.sizes, kDefaultSizes, sizeof kDefaultSizes);
    g_opts.nsizes = sizeof kDefaultSizes / sizeof kDefaultSizes[0];
    std::memcpy(g_opts.fetch_sizes, kDefaultFetchSizes, sizeof kDefaultFetchSizes);
    g_opts.nfetch_sizes = sizeof kDefaultFetchSizes / sizeof kDefaultFetchSizes[0];
    g_opts.search_size = kDefaultSearchSize;
    g_opts.search_body_size = kDefaultSearchBodySize;
    g_opts.parse_commands = kDefaultParseCommands;
    if ((env = std::getenv("RINGMAIL_BENCH_SIZES")) && *env && parse_sizes(env) < 0)
        return -1;
    if ((env = std::getenv("RINGMAIL_BENCH_DATA")) && *env)
        g_opts.data_dir = env;
    if ((env = std::getenv("RINGMAIL_BENCH_TMP")) && *env)
        g_opts.tmp_base = env;
    else if ((env = std::getenv("TMPDIR")) && *env)
        g_opts.tmp_base = env;
    else
        g_opts.tmp_base = "/tmp";

    int out = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        if (!std::strncmp(a, "--sizes=", 8)) {
            if (parse_sizes(a + 8) < 0)
                return -1;
        } else if (!std::strncmp(a, "--fetch-sizes=", 14)) {
            if (parse_list("--fetch-sizes", a + 14, g_opts.fetch_sizes,
                           &g_opts.nfetch_sizes, BENCH_MAX_SIZES) < 0)
                return -1;
        } else if (!std::strncmp(a, "--search-size=", 14)) {
            if (parse_one("--search-size", a + 14, &g_opts.search_size) < 0)
                return -1;
        } else if (!std::strncmp(a, "--search-body-size=", 19)) {
            if (parse_one("--search-body-size", a + 19, &g_opts.search_body_size) < 0)
                return -1;
        } else if (!std::strncmp(a, "--parse-commands=", 17)) {
            if (parse_one("--parse-commands", a + 17, &g_opts.parse_commands) < 0)
                return -1;
        } else if (!std::strncmp(a, "--data-dir=", 11) && a[11]) {
            g_opts.data_dir = a + 11;
        } else if (!std::strncmp(a, "--tmp=", 6) && a[6]) {
            g_opts.tmp_base = a + 6;
        } else if (!std::strcmp(a, "--quiet")) {
            g_opts.quiet = true;
        } else {
            argv[out++] = argv[i];
        }
    }
    *argc = out;
    argv[out] = nullptr;
    return 0;
}

int rm_entry(const char *path, const struct stat *, int type, struct FTW *)
{
    if (type == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

void rm_tree(const char *path)
{
    nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS);
}

// The watcher is a child that blocks on a pipe whose only write end the
// benchmark process holds.  When the benchmark process is gone — normal exit,
// a crash, ^C, SIGKILL — read() returns 0 and the child removes the
// temporary directory.  This is simpler and safer than cleaning up from a
// signal handler (nftw is not async-signal-safe), and also covers SIGKILL.
int start_watcher(const std::string &dir)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        return -e;
    }
    if (pid == 0) {
        // Own process group, so a ^C on the terminal reaches only the
        // benchmark; the watcher then sees the pipe close and cleans up.
        setpgid(0, 0);
        signal(SIGINT, SIG_IGN);
        signal(SIGTERM, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        close(p[1]);
        char c;
        while (read(p[0], &c, 1) < 0 && errno == EINTR) {
        }
        rm_tree(dir.c_str());
        _exit(0);
    }
    close(p[0]);
    g_watcher = pid;
    g_watcher_fd = p[1];
    return 0;
}

void stop_watcher()
{
    if (g_watcher < 0)
        return;
    close(g_watcher_fd);   // the watcher removes the directory now
    int st;
    while (waitpid(g_watcher, &st, 0) < 0 && errno == EINTR) {
    }
    g_watcher = -1;
}

}  // namespace

extern "C" {

bool bench_keep_running(bench_state *st) { return st->s->KeepRunning(); }

bool bench_keep_running_batch(bench_state *st, int64_t n)
{
    return st->s->KeepRunningBatch(n);
}

int64_t bench_iterations(const bench_state *st)
{
    return static_cast<int64_t>(st->s->iterations());
}

void bench_pause_timing(bench_state *st) { st->s->PauseTiming(); }
void bench_resume_timing(bench_state *st) { st->s->ResumeTiming(); }

void bench_set_items_processed(bench_state *st, int64_t items)
{
    st->s->SetItemsProcessed(items);
}

void bench_set_bytes_processed(bench_state *st, int64_t bytes)
{
    st->s->SetBytesProcessed(bytes);
}

void bench_set_counter(bench_state *st, const char *name, double value,
                       bench_counter_kind kind)
{
    benchmark::Counter::Flags f = benchmark::Counter::kDefaults;
    if (kind == BENCH_COUNTER_RATE)
        f = benchmark::Counter::kIsRate;
    else if (kind == BENCH_COUNTER_PER_ITER)
        f = benchmark::Counter::kAvgIterations;
    st->s->counters[name] = benchmark::Counter(value, f);
}

void bench_set_label(bench_state *st, const char *label)
{
    st->s->SetLabel(label);
}

void bench_error(bench_state *st, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    g_failed = true;
    g_strings.emplace_back(buf);
    std::fprintf(stderr, "ringmail-microbench: %s: %s\n", st->name, buf);
    st->s->SkipWithError(g_strings.back().c_str());
}

bench_bm *bench_register(const char *name, bench_fn fn, void *arg)
{
    auto *bm = new (std::nothrow) bench_bm;
    if (!bm)
        return nullptr;
    std::string n(name);
    bm->b = benchmark::RegisterBenchmark(name, [fn, arg, n](benchmark::State &s) {
        bench_state st{&s, n.c_str()};
        fn(&st, arg);
    });
    // Benchmarks are kept until exit: Google Benchmark holds them, and so
    // does this wrapper (a handful of bytes per benchmark).
    return bm;
}

void bench_bm_unit(bench_bm *b, bench_unit unit)
{
    static const benchmark::TimeUnit map[] = {
        benchmark::kNanosecond, benchmark::kMicrosecond,
        benchmark::kMillisecond, benchmark::kSecond,
    };
    b->b->Unit(map[unit]);
}

void bench_bm_real_time(bench_bm *b) { b->b->UseRealTime(); }
void bench_bm_iterations(bench_bm *b, int64_t n) { b->b->Iterations(n); }
void bench_bm_min_time(bench_bm *b, double seconds) { b->b->MinTime(seconds); }

const char *bench_workdir(void)
{
    if (!g_workdir.empty())
        return g_workdir.c_str();
    if (g_opts.data_dir) {
        if (mkdir(g_opts.data_dir, 0700) < 0 && errno != EEXIST)
            return nullptr;
        g_workdir = g_opts.data_dir;
        return g_workdir.c_str();
    }
    mkdir(g_opts.tmp_base, 0700);   // may exist; mkdtemp reports real trouble
    std::string tmpl = std::string(g_opts.tmp_base) + "/ringmail-bench.XXXXXX";
    if (!mkdtemp(&tmpl[0]))
        return nullptr;
    int r = start_watcher(tmpl);
    if (r < 0) {
        rm_tree(tmpl.c_str());
        errno = -r;
        return nullptr;
    }
    g_workdir = tmpl;
    g_workdir_temp = true;
    return g_workdir.c_str();
}

void bench_note(const char *fmt, ...)
{
    if (g_opts.quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    std::fputs("# ", stderr);
    std::vfprintf(stderr, fmt, ap);
    std::fputc('\n', stderr);
    va_end(ap);
}

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // extern "C"

int main(int argc, char **argv)
{
    if (parse_own_args(&argc, argv) < 0)
        return 2;
    benchmark::Initialize(&argc, argv, usage_extra);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 2;

    static const struct {
        const char *name;
        int (*reg)(const bench_opts *);
    } suites[] = {
        {"store", bench_suite_store_register},
        {"imap", bench_suite_imap_register},
        {"fetch", bench_suite_fetch_register},
        {"search", bench_suite_search_register},
        {"tls", bench_suite_tls_register},
    };
    for (const auto &su : suites) {
        int r = su.reg(&g_opts);
        if (r < 0) {
            std::fprintf(stderr, "ringmail-microbench: %s suite: %s\n", su.name,
                         std::strerror(-r));
            stop_watcher();
            return 1;
        }
    }
    if (g_workdir_temp)
        bench_note("data in %s (removed at exit)", g_workdir.c_str());
    else if (!g_workdir.empty())
        bench_note("data in %s (kept)", g_workdir.c_str());

    benchmark::RunSpecifiedBenchmarks();

    bench_suite_tls_teardown();
    bench_suite_search_teardown();
    bench_suite_fetch_teardown();
    bench_suite_imap_teardown();
    bench_mail_teardown();
    bench_suite_store_teardown();
    benchmark::Shutdown();
    stop_watcher();
    return g_failed ? 1 : 0;
}
