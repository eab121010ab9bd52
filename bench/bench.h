/* bench/bench.h — Google Benchmark for C benchmark bodies.
 *
 * Ringmail's microbenchmarks are written in C and call the C code directly.
 * bench_main.cc owns main(), Google Benchmark's State and the registration;
 * this header is all a C benchmark file sees of it.
 *
 * A benchmark body is a plain C function:
 *
 *     static void bm_lookup(bench_state *st, void *arg)
 *     {
 *         ... setup (not timed: the clock starts at the first keep_running) ...
 *         while (bench_keep_running_batch(st, 1024))
 *             for (int i = 0; i < 1024; i++)
 *                 lookup(...);
 *         bench_set_items_processed(st, bench_iterations(st));
 *         ... teardown (not timed) ...
 *     }
 *
 * and is registered from the suite's register function (called by main
 * before the run, see bench_suite_* below) with bench_register().  The body
 * may be called several times (Google Benchmark first probes how many
 * iterations fill the minimum time), so expensive fixtures are built once
 * and cached by the suite.
 */
#ifndef RINGMAIL_BENCH_BENCH_H
#define RINGMAIL_BENCH_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bench_state bench_state;   /* one run of one benchmark */
typedef struct bench_bm bench_bm;         /* a registered benchmark */
typedef void (*bench_fn)(bench_state *st, void *arg);

/* ---- inside a body ---------------------------------------------------- */

/* One iteration per true.  The timer starts at the first call. */
bool bench_keep_running(bench_state *st);
/* n iterations per true (may overshoot the planned count by up to n, which
 * bench_iterations() accounts for). */
bool bench_keep_running_batch(bench_state *st, int64_t n);
/* Iterations done so far (the total once the loop has ended). */
int64_t bench_iterations(const bench_state *st);
void bench_pause_timing(bench_state *st);
void bench_resume_timing(bench_state *st);

/* Rates, shown per second of measured time. */
void bench_set_items_processed(bench_state *st, int64_t items);
void bench_set_bytes_processed(bench_state *st, int64_t bytes);

typedef enum bench_counter_kind {
    BENCH_COUNTER_PLAIN,      /* shown as given */
    BENCH_COUNTER_RATE,       /* value / measured seconds */
    BENCH_COUNTER_PER_ITER,   /* value / iterations */
} bench_counter_kind;
void bench_set_counter(bench_state *st, const char *name, double value,
                       bench_counter_kind kind);
void bench_set_label(bench_state *st, const char *label);

/* Report the benchmark as failed with msg; the body must then return
 * without entering (or re-entering) the keep_running loop.  The program
 * exits non-zero at the end if any benchmark failed. */
void bench_error(bench_state *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- registration ----------------------------------------------------- */

typedef enum bench_unit {
    BENCH_NS, BENCH_US, BENCH_MS, BENCH_S,
} bench_unit;

/* Register fn under name (copied); arg is passed to every call and must
 * outlive the run.  Returns NULL only on allocation failure. */
bench_bm *bench_register(const char *name, bench_fn fn, void *arg);
void bench_bm_unit(bench_bm *b, bench_unit unit);
/* Measure wall-clock time instead of the main thread's CPU time: for
 * anything that waits on the disk. */
void bench_bm_real_time(bench_bm *b);
/* Fixed iteration count instead of Google Benchmark's own choice. */
void bench_bm_iterations(bench_bm *b, int64_t n);
/* Minimum measured time in seconds (default: --benchmark_min_time). */
void bench_bm_min_time(bench_bm *b, double seconds);

/* ---- options and suites ----------------------------------------------- */

#define BENCH_MAX_SIZES 8

/* Ringmail's own options, taken from the command line before Google
 * Benchmark sees it (see bench_main.cc's --help). */
typedef struct bench_opts {
    uint64_t sizes[BENCH_MAX_SIZES];  /* mailbox sizes to prepare and measure */
    size_t nsizes;
    uint64_t fetch_sizes[BENCH_MAX_SIZES];  /* FETCH listing mailbox sizes */
    size_t nfetch_sizes;
    uint64_t search_size;     /* messages for the index/header SEARCH keys */
    uint64_t search_body_size;  /* messages for SEARCH BODY */
    uint64_t parse_commands;  /* commands in the pipelined parsing stream */
    const char *tmp_base;     /* parent of the temporary data directory */
    const char *data_dir;     /* if set: keep prepared mailboxes here across
                                 runs instead of a temporary directory */
    bool quiet;               /* no progress lines on stderr */
} bench_opts;

/* A place for the suite's files: data_dir if given, else a fresh temporary
 * directory that is removed when the program exits, however it exits
 * (a watcher process removes it once the benchmark process is gone).
 * Returns a path owned by bench_main.cc, or NULL (errno set). */
const char *bench_workdir(void);

/* Progress and notes for the person watching (stderr, unless quiet). */
void bench_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Monotonic clock in seconds, for progress reports. */
double bench_now(void);

/* Each suite registers its benchmarks; returns 0 or -errno.  Its teardown
 * runs after all benchmarks (close handles; files are removed with the
 * work directory). */
int bench_suite_store_register(const bench_opts *o);
void bench_suite_store_teardown(void);
int bench_suite_imap_register(const bench_opts *o);     /* bench_imap.c */
void bench_suite_imap_teardown(void);
int bench_suite_fetch_register(const bench_opts *o);    /* bench_fetch.c */
void bench_suite_fetch_teardown(void);
int bench_suite_search_register(const bench_opts *o);   /* bench_search.c */
void bench_suite_search_teardown(void);
int bench_suite_tls_register(const bench_opts *o);      /* bench_tls.c */
void bench_suite_tls_teardown(void);

/* ---- shared test mailboxes (bench_mail.c) ------------------------------ */

/* What the generator put into message number `no` (0-based, in append
 * order), so that a benchmark can compute the answer it must get. */
typedef struct bench_mail_info {
    uint32_t uid;
    uint32_t flags;           /* STORE_F_* */
    int64_t internal_date;    /* UTC, zone +0000 */
    uint8_t from_last;        /* index into bench_mail_last_names */
    bool marker;              /* the body contains BENCH_MAIL_MARKER */
    bool multipart;           /* multipart/alternative (plain + html) */
    bool live;                /* not expunged */
} bench_mail_info;

/* A word in ~1 % of the bodies, in no header. */
#define BENCH_MAIL_MARKER "QX-7731"

/* A mailbox of n live realistic messages (~1-2 KB, realistic headers, one
 * in five multipart/alternative; one message in 11 appended is expunged, so
 * UIDs have gaps), built once per size under a user of the work directory
 * and shared by every suite.  Returns NULL after bench_error on failure. */
typedef struct bench_mail {
    uint64_t n;
    char name[32];
    struct store_user *u;     /* owned by bench_mail.c */
    struct store_mbox *mb;    /* open; owned by bench_mail.c */
    uint32_t *live;           /* live UIDs ascending (live[seq - 1]) */
    uint32_t nlive;
    bench_mail_info *info;    /* every appended message, by number */
    uint64_t ninfo;
} bench_mail;
const bench_mail *bench_mail_get(bench_state *st, uint64_t n);
void bench_mail_teardown(void);

/* What both message generators (bench_mail.c, bench_store.c) draw from. */
extern const char *const bench_mail_first_names[16];
extern const char *const bench_mail_last_names[12];
extern const char *const bench_mail_domains[6];
extern const char *const bench_mail_subjects[12];   /* may hold one %u */
extern const char *const bench_mail_body_lines[8];
#define BENCH_NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define BENCH_PICK(arr, r) ((arr)[(r) % BENCH_NELEM(arr)])
/* splitmix64: cheap, deterministic, good enough to vary headers. */
uint64_t bench_rnd_next(uint64_t *state);
/* The live UIDs of mb, ascending (*out malloc'd; *n of them; *entries
 * index entries, tombstones included).  0 or -errno. */
int bench_live_uids(struct store_mbox *mb, uint32_t **out, uint32_t *n, uint32_t *entries);

#ifdef __cplusplus
}
#endif

#endif
