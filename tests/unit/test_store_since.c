/* tests/unit/test_store_since.c — the expunge history and the modseq
 * summary: store_snap_vanished stays exact after compaction, reopening,
 * check --repair, an index rebuilt from the log and two compactions; the
 * history's size is bounded by the live messages; a log of the format
 * without history still answers (inexactly below tomb_floor); and
 * changed_since / vanished agree with a model on random operation
 * sequences, some written by another process. */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/internal.h"
#include "tests/unit/store_testutil.h"

static const char *self_exe;

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static uint32_t rndn(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return n ? (uint32_t)(rng_state % n) : 0;
}

static int expunge_uid(store_mbox *mb, uint32_t lo, uint32_t hi, uint64_t *modseq)
{
    store_range r = {lo, hi};
    return store_expunge(mb, &r, 1, false, NULL, modseq);
}

static int flag_uid(store_mbox *mb, uint32_t lo, uint32_t hi)
{
    store_range r = {lo, hi};
    return store_flags(mb, &r, 1, STORE_FLAGS_ADD, STORE_F_FLAGGED, NULL, 0, 0, NULL, NULL,
                       NULL);
}

/* ---- the model: every expunge ever (uid -> modseq), learnt from the
 * tombstones before a compaction drops them, and the runs the history
 * should hold (gaps between live UIDs, highest expunge modseq in each). */

#define MAXU 4096

typedef struct model {
    uint64_t xms[MAXU];         /* expunge modseq, 0 = not expunged */
    uint64_t run_ms[MAXU];      /* modseq of the history run holding the UID */
    uint64_t floor;             /* expunges of unknown modseq count here */
} model;

/* Learn the tombstones of the current snapshot. */
static void model_learn(model *m, store_mbox *mb)
{
    store_snap *s = store_snap_get(mb);
    REQUIRE(s);
    for (uint32_t p = 0; p < store_snap_entries(s); p++) {
        store_msg x;
        if (store_snap_entry(s, p, &x) == 0 && x.uid < MAXU && !m->xms[x.uid])
            m->xms[x.uid] = x.modseq;
    }
    store_snap_put(s);
}

/* What a compaction now writes as history: each maximal run of non-live
 * UIDs below UIDNEXT, at the highest expunge modseq in it. */
static void model_compacted(model *m, store_mbox *mb)
{
    store_snap *s = store_snap_get(mb);
    REQUIRE(s);
    uint32_t uidnext = store_snap_uidnext(s);
    REQUIRE(uidnext < MAXU);
    uint32_t u = 1;
    while (u < uidnext) {
        store_msg x;
        if (store_snap_msg(s, u, &x) == 0) {
            m->run_ms[u++] = 0;
            continue;
        }
        uint32_t a = u;
        uint64_t gm = m->floor;
        while (u < uidnext && store_snap_msg(s, u, &x) != 0) {
            if (m->xms[u] > gm)
                gm = m->xms[u];
            u++;
        }
        for (uint32_t k = a; k < u; k++)
            m->run_ms[k] = gm;
    }
    store_snap_put(s);
}

/* vanished(since, lo, hi) must be exactly: the UIDs expunged above since,
 * plus the UIDs of history runs above since (merged history), never a
 * live one, as sorted disjoint non-adjacent ranges.  Returns problems. */
static int check_vanished(const model *m, store_snap *s, uint64_t since, uint32_t lo,
                          uint32_t hi, const char *when)
{
    store_rangelist got = {0};
    if (store_snap_vanished(s, since, lo, hi, &got) < 0) {
        fprintf(stderr, "  %s: vanished failed\n", when);
        return 1;
    }
    int bad = 0;
    static bool in[MAXU];
    memset(in, 0, sizeof in);
    for (size_t i = 0; i < got.n; i++) {
        if (got.r[i].lo > got.r[i].hi || got.r[i].hi >= MAXU ||
            (i && got.r[i].lo <= got.r[i - 1].hi + 1)) {
            if (bad++ < 3)
                fprintf(stderr, "  %s: bad range %u:%u\n", when, got.r[i].lo, got.r[i].hi);
            continue;
        }
        for (uint32_t u = got.r[i].lo; u <= got.r[i].hi; u++)
            in[u] = true;
    }
    uint32_t uidnext = store_snap_uidnext(s);
    for (uint32_t u = 1; u < MAXU; u++) {
        bool want = u >= lo && u <= hi && u < uidnext &&
                    (m->xms[u] > since || m->run_ms[u] > since);
        store_msg x;
        if (in[u] && store_snap_msg(s, u, &x) == 0) {
            if (bad++ < 3)
                fprintf(stderr, "  %s: since %" PRIu64 ": live uid %u reported\n", when,
                        since, u);
        } else if (in[u] != want && bad++ < 3) {
            fprintf(stderr, "  %s: since %" PRIu64 " [%u,%u]: uid %u %s (xms %" PRIu64
                    " run %" PRIu64 ")\n", when, since, lo, hi, u,
                    in[u] ? "reported" : "missing", m->xms[u], m->run_ms[u]);
        }
    }
    store_rangelist_free(&got);
    return bad;
}

/* changed_since must equal the scan of every entry. */
static int check_changed(store_snap *s, uint64_t since, const char *when)
{
    store_uidlist a = {0}, b = {0};
    int bad = 0;
    if (store_snap_changed_since(s, since, &a) < 0 ||
        store_snap_changed_since_scan(s, since, &b) < 0 || a.n != b.n ||
        (a.n && memcmp(a.uids, b.uids, a.n * sizeof *a.uids))) {
        fprintf(stderr, "  %s: changed_since(%" PRIu64 ") %zu uids, scan %zu\n", when, since,
                a.n, b.n);
        bad = 1;
    }
    store_uidlist_free(&a);
    store_uidlist_free(&b);
    return bad;
}

/* Every since from 0 to HIGHESTMODSEQ, over the whole range and a window. */
static int check_all(const model *m, store_mbox *mb, const char *when)
{
    store_snap *s = store_snap_get(mb);
    if (!s)
        return 1;
    uint64_t hms = store_snap_highestmodseq(s);
    uint32_t un = store_snap_uidnext(s);
    int bad = 0;
    for (uint64_t since = 0; since <= hms + 1 && bad < 5; since++) {
        bad += check_vanished(m, s, since, 1, UINT32_MAX, when);
        uint32_t lo = 1 + rndn(un), hi = lo + rndn(un);
        bad += check_vanished(m, s, since, lo, hi, when);
        bad += check_changed(s, since, when);
    }
    store_snap_put(s);
    return bad;
}

/* ---- history across compaction, reopen, repair, rebuild ---------------- */

static void test_history_exact(void)
{
    test_env e;
    REQUIRE_OK(test_env_open(&e, "since-exact"));
    static model m;
    memset(&m, 0, sizeof m);
    REQUIRE_OK(test_append_n(e.mb, 40, 1600000000));
    /* Expunges separated by live messages (each its own run, so exact),
     * interleaved with flag changes, and one block of neighbours. */
    for (uint32_t u = 2; u <= 20; u += 3) {
        REQUIRE_OK(flag_uid(e.mb, u + 1, u + 1));
        REQUIRE_OK(expunge_uid(e.mb, u, u, NULL));
    }
    REQUIRE_OK(expunge_uid(e.mb, 30, 30, NULL));
    REQUIRE_OK(expunge_uid(e.mb, 31, 31, NULL));
    model_learn(&m, e.mb);
    CHECK_EQ(check_all(&m, e.mb, "before compaction"), 0);

    model_compacted(&m, e.mb);
    REQUIRE_OK(store_compact(e.mb, NULL, NULL));
    CHECK_EQ(check_all(&m, e.mb, "after compaction"), 0);
    /* Single expunges between live messages stay exact: the client that
     * saw the expunge of 2 hears of 5 but not 2. */
    {
        store_snap *s = store_snap_get(e.mb);
        REQUIRE(s);
        store_rangelist r = {0};
        REQUIRE_OK(store_snap_vanished(s, m.xms[2], 1, 10, &r));
        CHECK_EQ(r.n, 2);
        if (r.n == 2) {
            CHECK_EQ(r.r[0].lo, 5);
            CHECK_EQ(r.r[1].lo, 8);
        }
        store_rangelist_free(&r);
        store_snap_put(s);
    }

    /* More expunges and flags after the compaction: tombstones again. */
    REQUIRE_OK(expunge_uid(e.mb, 33, 33, NULL));
    REQUIRE_OK(flag_uid(e.mb, 1, 40));
    REQUIRE_OK(expunge_uid(e.mb, 36, 36, NULL));
    model_learn(&m, e.mb);
    CHECK_EQ(check_all(&m, e.mb, "expunges after compaction"), 0);

    REQUIRE_OK(test_env_reopen(&e));
    CHECK_EQ(check_all(&m, e.mb, "after reopen"), 0);

    model_compacted(&m, e.mb);
    REQUIRE_OK(store_compact(e.mb, NULL, NULL));
    CHECK_EQ(check_all(&m, e.mb, "after a second compaction"), 0);
    REQUIRE_OK(test_env_reopen(&e));
    CHECK_EQ(check_all(&m, e.mb, "after a second compaction and reopen"), 0);

    store_check_report rep;
    REQUIRE_OK(store_check(e.mb, true, &rep, NULL, NULL));
    CHECK_EQ(rep.index_mismatches, 0);
    CHECK(rep.history_runs > 0);
    CHECK_EQ(check_all(&m, e.mb, "after check --repair"), 0);

    /* The index lost: rebuilt from the log, the history with it. */
    char p[600];
    test_pathf(p, sizeof p, "%s/index", store_mbox_dir(e.mb));
    test_inbox_close(e.u, e.mb);
    REQUIRE(unlink(p) == 0);
    REQUIRE_OK(test_inbox_open(e.root, "user", STORE_FSYNC_NEVER, &e.u, &e.mb));
    CHECK_EQ(check_all(&m, e.mb, "after an index rebuild"), 0);

    /* A damaged index entry makes check --repair rebuild everything. */
    {
        store_snap *s = store_snap_get(e.mb);
        REQUIRE(s);
        struct idx_entry *x = store_gen_entry(s->g, 0);
        x->size ^= 1;
        store_snap_put(s);
    }
    REQUIRE_OK(store_check(e.mb, true, &rep, NULL, NULL));
    CHECK(rep.repaired);
    CHECK_EQ(check_all(&m, e.mb, "after check --repair rebuilt the index"), 0);
    test_env_close(&e);
}

/* ---- the history's size -------------------------------------------------- */

static void test_history_bounded(void)
{
    test_env e;
    REQUIRE_OK(test_env_open(&e, "since-bounded"));
    unsigned n = test_quick() ? 2000 : 10000;
    REQUIRE_OK(test_append_n(e.mb, n, 1600000000));
    /* One by one, keeping every 100th: n expunges, n/100 live. */
    for (uint32_t u = 1; u <= n; u++)
        if (u % 100 != 0)
            REQUIRE_OK(expunge_uid(e.mb, u, u, NULL));
    REQUIRE_OK(store_compact(e.mb, NULL, NULL));
    store_snap *s = store_snap_get(e.mb);
    REQUIRE(s);
    uint32_t live = store_snap_messages(s);
    CHECK_EQ(live, n / 100);
    int64_t runs = store_hist_runs(s->g);
    CHECK(runs > 0 && runs <= (int64_t)live + 1);
    store_snap_put(s);
    /* Expunging the rest and compacting again: one run. */
    REQUIRE_OK(expunge_uid(e.mb, 1, UINT32_MAX, NULL));
    REQUIRE_OK(store_compact(e.mb, NULL, NULL));
    s = store_snap_get(e.mb);
    REQUIRE(s);
    CHECK_EQ(store_hist_runs(s->g), 1);
    store_rangelist r = {0};
    REQUIRE_OK(store_snap_vanished(s, 0, 1, UINT32_MAX, &r));
    CHECK_EQ(r.n, 1);
    if (r.n == 1) {
        CHECK_EQ(r.r[0].lo, 1);
        CHECK_EQ(r.r[0].hi, n);
    }
    store_rangelist_free(&r);
    store_snap_put(s);
    store_check_report rep;
    REQUIRE_OK(store_check(e.mb, false, &rep, NULL, NULL));
    CHECK_EQ(rep.history_runs, 1);
    test_env_close(&e);
}

/* ---- a log of the format without history ------------------------------ */

/* Rewrite log.<gen> without its LOG_VANISHED record, as a binary without
 * history would have written it (version 1), and drop the index. */
static void make_legacy(const char *dir)
{
    char ip[600], lp[600], tp[600];
    test_pathf(ip, sizeof ip, "%s/index", dir);
    int fd = open(ip, O_RDONLY);
    REQUIRE(fd >= 0);
    struct idx_hdr h;
    REQUIRE(pread(fd, &h, sizeof h, 0) == (ssize_t)sizeof h);
    close(fd);
    test_pathf(lp, sizeof lp, "%s/log.%" PRIu64, dir, h.generation);
    test_pathf(tp, sizeof tp, "%s/log.tmp-legacy", dir);
    FILE *f = fopen(lp, "rb");
    REQUIRE(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)sz), *o = malloc((size_t)sz);
    REQUIRE(b && o && fread(b, 1, (size_t)sz, f) == (size_t)sz);
    fclose(f);
    struct log_file_hdr lh;
    memcpy(&lh, b, sizeof lh);
    CHECK_EQ(lh.version, LOG_VERSION_EXT);
    lh.version = FMT_VERSION;
    store_log_hdr_seal(&lh);
    memcpy(o, &lh, sizeof lh);
    size_t on = LOG_HDR_SIZE, dropped = 0;
    for (size_t off = LOG_HDR_SIZE; off < (size_t)sz;) {
        struct log_rec r;
        memcpy(&r, b + off, sizeof r);
        size_t len = (size_t)ALIGN8(sizeof r + r.len);
        if (r.type != LOG_VANISHED) {
            memcpy(o + on, b + off, len);
            on += len;
        } else {
            dropped++;
        }
        off += len;
    }
    CHECK_EQ(dropped, 1);
    f = fopen(tp, "wb");
    REQUIRE(f && fwrite(o, 1, on, f) == on);
    fclose(f);
    REQUIRE(rename(tp, lp) == 0);
    REQUIRE(unlink(ip) == 0);
    free(b);
    free(o);
}

static void test_legacy_log(void)
{
    test_env e;
    REQUIRE_OK(test_env_open(&e, "since-legacy"));
    static model m;
    memset(&m, 0, sizeof m);
    REQUIRE_OK(test_append_n(e.mb, 30, 1600000000));
    for (uint32_t u = 3; u <= 12; u += 3)
        REQUIRE_OK(expunge_uid(e.mb, u, u, NULL));
    model_learn(&m, e.mb);
    REQUIRE_OK(store_compact(e.mb, NULL, NULL));
    char dir[600];
    test_pathf(dir, sizeof dir, "%s", store_mbox_dir(e.mb));
    test_inbox_close(e.u, e.mb);
    make_legacy(dir);
    REQUIRE_OK(test_inbox_open(e.root, "user", STORE_FSYNC_NEVER, &e.u, &e.mb));
    REQUIRE_OK(expunge_uid(e.mb, 20, 20, NULL));
    model_learn(&m, e.mb);

    store_snap *s = store_snap_get(e.mb);
    REQUIRE(s);
    uint64_t floor = store_gen_hdr(s->g)->tomb_floor;
    CHECK_EQ(floor, m.xms[12]);
    CHECK_EQ(store_hist_runs(s->g), -1);
    /* Below tomb_floor: every non-live UID (inexact, allowed). */
    store_rangelist r = {0};
    REQUIRE_OK(store_snap_vanished(s, m.xms[3], 1, UINT32_MAX, &r));
    CHECK_EQ(r.n, 5);
    store_rangelist_free(&r);
    /* At or above it: the tombstones, exactly. */
    REQUIRE_OK(store_snap_vanished(s, floor, 1, UINT32_MAX, &r));
    CHECK_EQ(r.n, 1);
    if (r.n == 1)
        CHECK_EQ(r.r[0].lo, 20);
    store_rangelist_free(&r);
    store_snap_put(s);

    /* Compacting it writes a history in which the forgotten expunges
     * count at tomb_floor: exact from tomb_floor on. */
    m.floor = floor;
    model_compacted(&m, e.mb);
    REQUIRE_OK(store_compact(e.mb, NULL, NULL));
    for (uint32_t u = 1; u < MAXU; u++)
        if (m.xms[u] && m.xms[u] <= floor)
            m.xms[u] = floor;   /* what the history can still tell */
    CHECK_EQ(check_all(&m, e.mb, "legacy log compacted"), 0);
    test_env_close(&e);
}

/* ---- the model test ---------------------------------------------------- */

/* Child: open the mailbox in this new process and apply one operation:
 * "flags LO HI" | "expunge LO HI" | "append N" | "compact". */
static int child_main(char **argv)
{
    store_user *u;
    store_mbox *mb;
    if (test_inbox_open(argv[2], "user", STORE_FSYNC_NEVER, &u, &mb) < 0)
        return 3;
    uint32_t a = (uint32_t)strtoul(argv[4], NULL, 10), b = (uint32_t)strtoul(argv[5], NULL, 10);
    int rc;
    if (!strcmp(argv[3], "flags"))
        rc = flag_uid(mb, a, b);
    else if (!strcmp(argv[3], "expunge"))
        rc = expunge_uid(mb, a, b, NULL);
    else if (!strcmp(argv[3], "compact"))
        rc = store_compact(mb, NULL, NULL);
    else
        rc = test_append_n(mb, a, 1600000000);
    test_inbox_close(u, mb);
    return rc < 0 ? 4 : 0;
}

static int run_child(const char *root, const char *op, uint32_t a, uint32_t b)
{
    char sa[16], sb[16];
    snprintf(sa, sizeof sa, "%u", a);
    snprintf(sb, sizeof sb, "%u", b);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        execl(self_exe, self_exe, "child", root, op, sa, sb, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void test_model(void)
{
    test_env e;
    REQUIRE_OK(test_env_open(&e, "since-model"));
    static model m;
    memset(&m, 0, sizeof m);
    unsigned steps = test_quick() ? 200 : 1500;
    int bad = 0;
    /* A snapshot kept across other processes' writes: its generation's
     * summary must follow their log records. */
    store_snap *held = NULL;
    for (unsigned i = 0; i < steps && bad == 0; i++) {
        store_snap *s = store_snap_get(e.mb);
        REQUIRE(s);
        uint32_t un = store_snap_uidnext(s);
        store_snap_put(s);
        if (un > MAXU - 64)
            break;
        uint32_t lo = 1 + rndn(un), hi = lo + rndn(rndn(4) ? 3 : 50);
        unsigned op = rndn(100);
        bool other = rndn(3) == 0;
        char what[64];
        if (op < 30) {
            uint32_t k = 1 + rndn(4);
            snprintf(what, sizeof what, "append %u%s", k, other ? " (other)" : "");
            REQUIRE_OK(other ? -run_child(e.root, "append", k, 0) : test_append_n(e.mb, k, 1600000000));
        } else if (op < 60) {
            snprintf(what, sizeof what, "flags %u:%u%s", lo, hi, other ? " (other)" : "");
            REQUIRE_OK(other ? -run_child(e.root, "flags", lo, hi) : flag_uid(e.mb, lo, hi));
        } else if (op < 85) {
            snprintf(what, sizeof what, "expunge %u:%u%s", lo, hi, other ? " (other)" : "");
            REQUIRE_OK(other ? -run_child(e.root, "expunge", lo, hi)
                             : expunge_uid(e.mb, lo, hi, NULL));
        } else if (op < 92) {
            snprintf(what, sizeof what, "compact%s", other ? " (other)" : "");
            model_learn(&m, e.mb);
            model_compacted(&m, e.mb);
            if (other) {
                /* This process moves to the new generation at its next
                 * snapshot; the held one stays on the old. */
                REQUIRE_OK(-run_child(e.root, "compact", 0, 0));
            } else {
                store_snap_put(held);
                held = NULL;
                REQUIRE_OK(store_compact(e.mb, NULL, NULL));
            }
        } else if (op < 96) {
            snprintf(what, sizeof what, "reopen");
            store_snap_put(held);
            held = NULL;
            REQUIRE_OK(test_env_reopen(&e));
        } else {
            snprintf(what, sizeof what, "check --repair");
            store_check_report rep;
            REQUIRE_OK(store_check(e.mb, true, &rep, NULL, NULL));
        }
        model_learn(&m, e.mb);
        if (!held)
            held = store_snap_get(e.mb);
        /* The held snapshot answers about its own entries, which other
         * processes change in place: compare it with its scan. */
        for (unsigned k = 0; k < 4 && held; k++)
            bad += check_changed(held, rndn((uint32_t)store_snap_highestmodseq(held) + 2),
                                 what);
        if (rndn(4) == 0 || i + 1 == steps)
            bad += check_all(&m, e.mb, what);
        else {
            store_snap *q = store_snap_get(e.mb);
            REQUIRE(q);
            uint64_t hms = store_snap_highestmodseq(q);
            for (unsigned k = 0; k < 4; k++) {
                uint64_t since = rndn((uint32_t)hms + 2);
                bad += check_vanished(&m, q, since, 1, UINT32_MAX, what);
                bad += check_changed(q, since, what);
            }
            store_snap_put(q);
        }
        if (bad)
            fprintf(stderr, "  after step %u (%s)\n", i, what);
    }
    store_snap_put(held);
    CHECK_EQ(bad, 0);
    test_env_close(&e);
}

/* Threads querying one generation while another writes. */
struct qarg {
    store_mbox *mb;
    atomic_int *stop;
    int bad;
};

static void *query_thread(void *p)
{
    struct qarg *a = p;
    while (!atomic_load(a->stop)) {
        store_snap *s = store_snap_get(a->mb);
        if (!s) {
            a->bad++;
            break;
        }
        /* Entries change meanwhile, but a modseq only grows and nothing
         * is expunged here: what the scan saw above since, the query
         * (after it) must report too. */
        uint64_t since = store_snap_highestmodseq(s) / 2;
        store_uidlist x = {0}, y = {0};
        if (store_snap_changed_since_scan(s, since, &x) < 0 ||
            store_snap_changed_since(s, since, &y) < 0) {
            a->bad++;
        } else {
            size_t j = 0;
            for (size_t i = 0; i < x.n; i++) {
                while (j < y.n && y.uids[j] < x.uids[i])
                    j++;
                if (j == y.n || y.uids[j] != x.uids[i]) {
                    a->bad++;
                    break;
                }
            }
        }
        store_uidlist_free(&x);
        store_uidlist_free(&y);
        store_snap_put(s);
    }
    return NULL;
}

static void test_threads(void)
{
    test_env e;
    REQUIRE_OK(test_env_open(&e, "since-threads"));
    REQUIRE_OK(test_append_n(e.mb, 500, 1600000000));
    atomic_int stop = 0;
    struct qarg qa[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        qa[i] = (struct qarg){e.mb, &stop, 0};
        REQUIRE(pthread_create(&t[i], NULL, query_thread, &qa[i]) == 0);
    }
    unsigned n = test_quick() ? 200 : 1000;
    for (unsigned i = 0; i < n; i++) {
        uint32_t lo = 1 + rndn(600);
        if (i % 3 == 0)
            REQUIRE_OK(test_append_n(e.mb, 1, 1600000000));
        else
            REQUIRE_OK(flag_uid(e.mb, lo, lo + rndn(3)));
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ(qa[i].bad, 0);
    }
    test_env_close(&e);
}

/* store_snap_changed_since_max stops at max UIDs with -E2BIG (a prefix in
 * the list), and gives the whole list when it fits. */
static void test_changed_max(void)
{
    test_env e;
    REQUIRE_OK(test_env_open(&e, "since-max"));
    REQUIRE_OK(test_append_n(e.mb, 300, 1600000000));
    store_snap *s0 = store_snap_get(e.mb);
    REQUIRE(s0);
    uint64_t since = store_snap_highestmodseq(s0);
    store_snap_put(s0);
    for (uint32_t u = 10; u <= 290; u += 28)
        REQUIRE_OK(flag_uid(e.mb, u, u));       /* 11 changes */
    store_snap *s = store_snap_get(e.mb);
    REQUIRE(s);
    store_uidlist l = {0};
    CHECK_EQ(store_snap_changed_since_max(s, since, 5, &l), -E2BIG);
    CHECK_EQ(l.n, 5);
    CHECK(l.n == 5 && l.uids[0] == 10 && l.uids[4] == 122);
    store_uidlist_free(&l);
    CHECK_EQ(store_snap_changed_since_max(s, since, 11, &l), 0);
    CHECK_EQ(l.n, 11);
    store_uidlist_free(&l);
    REQUIRE_OK(store_snap_changed_since(s, since, &l));
    CHECK_EQ(l.n, 11);
    store_uidlist_free(&l);
    store_snap_put(s);
    test_env_close(&e);
}

int main(int argc, char **argv)
{
    if (argc > 5 && !strcmp(argv[1], "child"))
        return child_main(argv);
    static char exe[4096];
    ssize_t l = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (l <= 0)
        return 2;
    exe[l] = 0;
    self_exe = exe;
    RUN(test_history_exact);
    RUN(test_history_bounded);
    RUN(test_legacy_log);
    RUN(test_model);
    RUN(test_threads);
    RUN(test_changed_max);
    return test_summary();
}
