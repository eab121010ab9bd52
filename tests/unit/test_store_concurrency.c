/* tests/unit/test_store_concurrency.c — readers, writers and compaction at
 * the same time: lock-free snapshot readers under a writer, a flag/expunge
 * thread and online compaction; two processes appending to one mailbox;
 * changes by another process seen after refresh; compaction preserving
 * everything; group commit from several threads. */
#include <dirent.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>

#include "store/internal.h"
#include "store/store.h"
#include "tests/unit/store_testutil.h"
#include "tests/unit/testutil.h"

/* ---- helpers -------------------------------------------------------- */

/* A message that carries its own id; its whole content is a function of
 * the id, so a reader can regenerate and compare it.  malloc'd. */
static char *make_msg(unsigned id, size_t *len)
{
    size_t body = 40 + (id * 131u) % 900;
    char *b = malloc(400 + body + body / 64 * 2 + 4);
    if (!b)
        abort();
    int n = snprintf(b, 400, "From: w@example.com\r\nSubject: msg %u\r\nX-Id: %u\r\n"
                     "Message-ID: <%u@conc.example>\r\n\r\n", id, id, id);
    size_t o = (size_t)n, col = 0;
    uint32_t x = id * 2654435761u ^ 0x5bd1e995u;
    for (size_t i = 0; i < body; i++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        b[o++] = (char)('0' + x % 75);
        if (++col == 64) {
            b[o++] = '\r';
            b[o++] = '\n';
            col = 0;
        }
    }
    b[o++] = '\r';
    b[o++] = '\n';
    *len = o;
    return b;
}

/* Returns the id of a message from its bytes, or -1. */
static long id_of(const char *p, size_t len)
{
    const char *x = memmem(p, len < 200 ? len : 200, "X-Id: ", 6);
    if (!x)
        return -1;
    return strtol(x + 6, NULL, 10);
}

/* Verifies that p/len is exactly message `id`'s content. */
static bool verify_msg(const char *p, size_t len, long *id_out)
{
    long id = id_of(p, len);
    *id_out = id;
    if (id < 0)
        return false;
    size_t wl;
    char *w = make_msg((unsigned)id, &wl);
    bool ok = wl == len && memcmp(w, p, len) == 0;
    free(w);
    return ok;
}

static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int thread_errors;

static void terr(const char *fmt, ...)
{
    int n = atomic_fetch_add(&thread_errors, 1);
    if (n >= 10)
        return;
    pthread_mutex_lock(&err_lock);
    va_list ap;
    va_start(ap, fmt);
    fputs("  ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    pthread_mutex_unlock(&err_lock);
}

static int append_ids(store_mbox *mb, unsigned first, size_t n, uint32_t flags, uint32_t *uids)
{
    store_new_msg m[16];
    char *b[16];
    if (n > 16)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        b[i] = make_msg(first + (unsigned)i, &len);
        m[i] = (store_new_msg){ .data = b[i], .len = len,
                                .internal_date = 1600000000 + first + (int64_t)i,
                                .flags = flags };
    }
    int rc = store_append(mb, m, n, uids);
    for (size_t i = 0; i < n; i++)
        free(b[i]);
    return rc;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Checks every live message of mb: bytes intact; returns their ids in
 * *ids (malloc'd) and count. */
static size_t collect_ids(store_mbox *mb, long **ids, uint32_t **uids, int *bad)
{
    store_snap *s = store_snap_get(mb);
    *bad = 0;
    if (!s) {
        *bad = 1;
        return 0;
    }
    uint32_t n = store_snap_messages(s);
    *ids = calloc(n + 1, sizeof **ids);
    *uids = calloc(n + 1, sizeof **uids);
    for (uint32_t seq = 1; seq <= n; seq++) {
        uint32_t uid = store_snap_uid_of_seq(s, seq);
        const char *p;
        size_t got;
        (*uids)[seq - 1] = uid;
        if (!uid || store_snap_bytes(s, uid, 0, SIZE_MAX, &p, &got) != 0 ||
            !verify_msg(p, got, &(*ids)[seq - 1])) {
            if ((*bad)++ < 3)
                fprintf(stderr, "  seq %u uid %u: bytes missing or damaged\n", seq, uid);
        }
    }
    store_snap_put(s);
    return n;
}

/* ---- (a) readers, writer, flagger and compactor --------------------- */

typedef struct shared {
    store_mbox *mb;
    unsigned total;
    atomic_bool writer_done, stop;
    atomic_uint written;
    uint32_t *uid_of_id;        /* by id, filled by the writer */
    uint32_t *flags_of_uid;     /* model, by uid (flagger) */
    uint8_t *expunged;          /* by uid (flagger) */
    uint32_t uid_cap;
    atomic_long reads, snaps, compactions, flag_ops, expunged_n;
} shared;

static void *writer_main(void *arg)
{
    shared *sh = arg;
    unsigned id = 0;
    uint32_t last = 0;
    while (id < sh->total) {
        size_t n = 1 + (id * 7u) % 5;
        if (id + n > sh->total)
            n = sh->total - id;
        uint32_t uids[16];
        int rc = append_ids(sh->mb, id, n, 0, uids);
        if (rc) {
            terr("writer: append failed at id %u: %s", id, strerror(-rc));
            break;
        }
        for (size_t i = 0; i < n; i++) {
            if (uids[i] <= last)
                terr("writer: uid %u after %u", uids[i], last);
            last = uids[i];
            sh->uid_of_id[id + i] = uids[i];
        }
        id += (unsigned)n;
        atomic_store(&sh->written, id);
    }
    atomic_store(&sh->writer_done, true);
    return NULL;
}

static void *reader_main(void *arg)
{
    shared *sh = arg;
    uint32_t last_uidnext = 0;
    uint64_t last_hms = 0;
    unsigned iter = 0;
    while (!atomic_load(&sh->stop) || iter < 2) {
        iter++;
        store_snap *s = store_snap_get(sh->mb);
        if (!s) {
            terr("reader: no snapshot");
            break;
        }
        uint32_t un = store_snap_uidnext(s);
        uint64_t hm = store_snap_highestmodseq(s);
        if (un < last_uidnext || hm < last_hms)
            terr("reader: uidnext %u -> %u, highestmodseq %" PRIu64 " -> %" PRIu64
                 " went backwards", last_uidnext, un, last_hms, hm);
        last_uidnext = un;
        last_hms = hm;
        uint32_t n = store_snap_entries(s), prev = 0, live = 0;
        for (uint32_t pos = 0; pos < n; pos++) {
            store_msg m;
            int rc = store_snap_entry(s, pos, &m);
            if (rc < 0) {
                terr("reader: entry %u/%u: %d", pos, n, rc);
                break;
            }
            if (m.uid <= prev) {
                terr("reader: uid %u at pos %u after uid %u", m.uid, pos, prev);
                break;
            }
            if (m.uid >= un)
                terr("reader: uid %u >= snapshot uidnext %u", m.uid, un);
            prev = m.uid;
            if (rc == 0)
                continue;
            live++;
            if (m.flags & ~STORE_F_ALL)
                terr("reader: uid %u has flags %#x", m.uid, m.flags);
            const char *p;
            size_t got;
            rc = store_snap_bytes(s, m.uid, 0, SIZE_MAX, &p, &got);
            if (rc == -ENOENT) {
                /* allowed only if it was expunged meanwhile */
                store_msg m2;
                if (store_snap_entry(s, pos, &m2) != 0)
                    terr("reader: uid %u live but bytes -ENOENT", m.uid);
                continue;
            }
            long id;
            if (rc != 0 || got != m.size || !verify_msg(p, got, &id)) {
                terr("reader: uid %u: bytes rc %d, %zu bytes (size %u) damaged", m.uid, rc, got,
                     m.size);
                continue;
            }
            if ((pos & 7) == 0) {
                store_cache c;
                store_envelope env;
                char want[32];
                snprintf(want, sizeof want, "msg %ld", id);
                if (store_snap_cache(s, m.uid, &c) != 0 || store_cache_envelope(&c, 0, &env) != 0 ||
                    !env.subject.p || env.subject.len != strlen(want) ||
                    memcmp(env.subject.p, want, env.subject.len) != 0)
                    terr("reader: uid %u: cache envelope wrong", m.uid);
            }
            atomic_fetch_add(&sh->reads, 1);
        }
        (void)live;
        store_snap_put(s);
        atomic_fetch_add(&sh->snaps, 1);
    }
    return NULL;
}

static void *flagger_main(void *arg)
{
    shared *sh = arg;
    uint64_t x = 0x1234567;
    unsigned ops = 0;
    while (!atomic_load(&sh->stop)) {
        store_snap *s = store_snap_get(sh->mb);
        if (!s) {
            terr("flagger: no snapshot");
            break;
        }
        uint32_t n = store_snap_messages(s);
        uint32_t uid = 0;
        if (n) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            uid = store_snap_uid_of_seq(s, 1 + (uint32_t)(x % n));
        }
        store_snap_put(s);
        if (!uid || uid >= sh->uid_cap) {
            usleep(1000);
            continue;
        }
        uint32_t v = (uint32_t)(x >> 32) & (STORE_F_SEEN | STORE_F_FLAGGED | STORE_F_ANSWERED);
        if ((x >> 40) % 4 == 0)
            v |= STORE_F_DELETED;
        store_range r = { uid, uid };
        store_uidlist ch = { 0 };
        uint64_t ms = 0;
        int rc = store_flags(sh->mb, &r, 1, STORE_FLAGS_SET, v, NULL, 0, 0, &ch, NULL, &ms);
        if (rc) {
            terr("flagger: store_flags: %s", strerror(-rc));
            break;
        }
        if (sh->expunged[uid]) {
            terr("flagger: uid %u was expunged but still live", uid);
        }
        bool changed = sh->flags_of_uid[uid] != v;
        if (changed != (ch.n == 1))
            terr("flagger: uid %u %#x -> %#x, changed list has %zu", uid, sh->flags_of_uid[uid], v,
                 ch.n);
        store_uidlist_free(&ch);
        sh->flags_of_uid[uid] = v;
        atomic_fetch_add(&sh->flag_ops, 1);
        if (++ops % 40 == 0) {
            store_uidlist ex = { 0 };
            rc = store_expunge(sh->mb, NULL, 0, true, &ex, NULL);
            if (rc) {
                terr("flagger: expunge: %s", strerror(-rc));
                break;
            }
            for (size_t i = 0; i < ex.n; i++) {
                if (ex.uids[i] < sh->uid_cap) {
                    if (!(sh->flags_of_uid[ex.uids[i]] & STORE_F_DELETED))
                        terr("flagger: uid %u expunged without \\Deleted", ex.uids[i]);
                    sh->expunged[ex.uids[i]] = 1;
                }
            }
            atomic_fetch_add(&sh->expunged_n, (long)ex.n);
            store_uidlist_free(&ex);
        }
    }
    return NULL;
}

static void *compactor_main(void *arg)
{
    shared *sh = arg;
    unsigned next = sh->total / 6;
    /* at thresholds while the writer runs; at least 3 in all, the rest
     * with readers and the flagger still going */
    for (;;) {
        bool done = atomic_load(&sh->writer_done);
        if (done && atomic_load(&sh->compactions) >= 3)
            break;
        if (!done && atomic_load(&sh->written) < next) {
            usleep(2000);
            continue;
        }
        next += sh->total / 6;
        int rc = store_compact(sh->mb, NULL, NULL);
        if (rc) {
            terr("compactor: store_compact: %s", strerror(-rc));
            break;
        }
        atomic_fetch_add(&sh->compactions, 1);
    }
    return NULL;
}

static void check_final(shared *sh, store_mbox *mb, const char *when)
{
    store_snap *s = store_snap_get(mb);
    REQUIRE(s);
    uint32_t want = 0;
    int bad = 0;
    for (unsigned id = 0; id < sh->total; id++) {
        uint32_t uid = sh->uid_of_id[id];
        if (!uid)
            continue;
        store_msg m;
        int rc = store_snap_msg(s, uid, &m);
        bool exp = uid < sh->uid_cap && sh->expunged[uid];
        if (exp) {
            if (rc == 0 && bad++ < 5)
                fprintf(stderr, "  %s: uid %u expunged but present\n", when, uid);
            continue;
        }
        want++;
        if (rc != 0) {
            if (bad++ < 5)
                fprintf(stderr, "  %s: uid %u (id %u) missing\n", when, uid, id);
            continue;
        }
        uint32_t wf = uid < sh->uid_cap ? sh->flags_of_uid[uid] : 0;
        if (m.flags != wf && bad++ < 5)
            fprintf(stderr, "  %s: uid %u flags %#x, want %#x\n", when, uid, m.flags, wf);
        const char *p;
        size_t got;
        long gid;
        if ((store_snap_bytes(s, uid, 0, SIZE_MAX, &p, &got) != 0 || !verify_msg(p, got, &gid) ||
             gid != (long)id) && bad++ < 5)
            fprintf(stderr, "  %s: uid %u bytes wrong\n", when, uid);
    }
    CHECK_EQ(store_snap_messages(s), want);
    CHECK_EQ(bad, 0);
    store_snap_put(s);
}

static void test_readers_writer_compactor(void)
{
    char *root = strdup(test_tmpdir("conc-a"));
    store_user *u;
    store_mbox *mb;
    REQUIRE_OK(test_inbox_open(root, "a", STORE_FSYNC_NEVER, &u, &mb));
    shared sh = { .mb = mb, .total = test_quick() ? 1500 : 5000 };
    sh.uid_cap = sh.total * 2 + 1000;
    sh.uid_of_id = calloc(sh.total, sizeof *sh.uid_of_id);
    sh.flags_of_uid = calloc(sh.uid_cap, sizeof *sh.flags_of_uid);
    sh.expunged = calloc(sh.uid_cap, 1);
    atomic_store(&thread_errors, 0);
    double t0 = test_now();
    pthread_t w, r1, r2, f, c;
    REQUIRE(pthread_create(&r1, NULL, reader_main, &sh) == 0);
    REQUIRE(pthread_create(&r2, NULL, reader_main, &sh) == 0);
    REQUIRE(pthread_create(&f, NULL, flagger_main, &sh) == 0);
    REQUIRE(pthread_create(&c, NULL, compactor_main, &sh) == 0);
    REQUIRE(pthread_create(&w, NULL, writer_main, &sh) == 0);
    pthread_join(w, NULL);
    pthread_join(c, NULL);
    atomic_store(&sh.stop, true);
    pthread_join(f, NULL);
    pthread_join(r1, NULL);
    pthread_join(r2, NULL);
    fprintf(stderr, "  %.1fs: %u appended, %ld snapshots, %ld message reads, %ld flag ops, "
            "%ld expunged, %ld compactions\n", test_now() - t0, atomic_load(&sh.written),
            atomic_load(&sh.snaps), atomic_load(&sh.reads), atomic_load(&sh.flag_ops),
            atomic_load(&sh.expunged_n), atomic_load(&sh.compactions));
    CHECK_EQ(atomic_load(&thread_errors), 0);
    CHECK_EQ(atomic_load(&sh.written), sh.total);
    CHECK(atomic_load(&sh.compactions) >= 3);
    CHECK(atomic_load(&sh.snaps) >= 2);
    check_final(&sh, mb, "end");
    store_status st;
    REQUIRE_OK(store_mbox_status(mb, &st));
    CHECK(st.generation >= (uint64_t)atomic_load(&sh.compactions));
    test_inbox_close(u, mb);
    REQUIRE_OK(test_inbox_open(root, "a", STORE_FSYNC_NEVER, &u, &mb));
    check_final(&sh, mb, "after reopen");
    test_inbox_close(u, mb);
    free(sh.uid_of_id);
    free(sh.flags_of_uid);
    free(sh.expunged);
    test_rm_rf(root);
    free(root);
}

/* ---- (b) two processes appending ------------------------------------ */

static void test_two_processes(void)
{
    char *root = strdup(test_tmpdir("conc-b"));
    const unsigned per = test_quick() ? 500 : 2000;
    int gate[2];
    REQUIRE(pipe(gate) == 0);
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        fflush(stderr);
        kids[k] = fork();
        REQUIRE(kids[k] >= 0);
        if (kids[k] == 0) {
            close(gate[1]);
            char c;
            (void)!read(gate[0], &c, 1);   /* wait until both exist */
            store_user *u;
            store_mbox *mb;
            int rc = test_inbox_open(root, "shared", STORE_FSYNC_NEVER, &u, &mb);
            if (rc < 0) {
                fprintf(stderr, "  child %d: open: %s\n", k, strerror(-rc));
                _exit(2);
            }
            int errs = 0;
            uint32_t last = 0;
            for (unsigned i = 0; i < per; i++) {
                uint32_t uid;
                rc = append_ids(mb, (unsigned)k * 1000000u + i, 1, 0, &uid);
                if (rc) {
                    fprintf(stderr, "  child %d: append %u: %s\n", k, i, strerror(-rc));
                    errs++;
                    break;
                }
                if (uid <= last) {
                    fprintf(stderr, "  child %d: uid %u after %u\n", k, uid, last);
                    errs++;
                }
                last = uid;
            }
            test_inbox_close(u, mb);
            _exit(errs ? 1 : 0);
        }
    }
    close(gate[0]);
    close(gate[1]);   /* go */
    for (int k = 0; k < 2; k++) {
        int st = 0;
        waitpid(kids[k], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fprintf(stderr, "  child %d: status %#x\n", k, st);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    store_user *u;
    store_mbox *mb;
    REQUIRE_OK(test_inbox_open(root, "shared", STORE_FSYNC_NEVER, &u, &mb));
    store_mailbox_info *v = NULL;
    size_t nmb = 0;
    REQUIRE_OK(store_mailbox_list(u, &v, &nmb));
    CHECK_EQ(nmb, 1);    /* one INBOX, not two */
    store_mailbox_info_free(v, nmb);
    long *ids = NULL;
    uint32_t *uids = NULL;
    int bad = 0;
    size_t n = collect_ids(mb, &ids, &uids, &bad);
    CHECK_EQ(n, 2 * per);
    CHECK_EQ(bad, 0);
    qsort(uids, n, sizeof *uids, cmp_u32);
    size_t dup = 0;
    for (size_t i = 1; i < n; i++)
        if (uids[i] == uids[i - 1])
            dup++;
    CHECK_EQ(dup, 0);
    uint8_t *seen = calloc(2 * per, 1);
    size_t wrong = 0;
    for (size_t i = 0; i < n; i++) {
        long id = ids[i];
        long k = id / 1000000, j = id % 1000000;
        if (id < 0 || k > 1 || j >= (long)per || seen[k * per + (size_t)j]++)
            wrong++;
    }
    CHECK_EQ(wrong, 0);
    free(seen);
    free(ids);
    free(uids);
    test_inbox_close(u, mb);
    test_rm_rf(root);
    free(root);
}

/* ---- (c) another process's changes ---------------------------------- */

static const char *self_exe;

/* Runs this program as "--append ROOT USER FIRST N" or "--flag ROOT USER
 * FLAGS" in a fresh process (exec, so no store state is inherited). */
static int run_child(const char *mode, const char *root, const char *user, unsigned a,
                     unsigned b)
{
    char sa[32], sb[32];
    snprintf(sa, sizeof sa, "%u", a);
    snprintf(sb, sizeof sb, "%u", b);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        execl(self_exe, self_exe, mode, root, user, sa, sb, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (waitpid(pid, &st, 0) < 0)
        return -errno;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int child_main(int argc, char **argv)
{
    if (argc != 6)
        return 64;
    store_user *u;
    store_mbox *mb;
    int rc = test_inbox_open(argv[2], argv[3], STORE_FSYNC_BATCH, &u, &mb);
    if (rc < 0) {
        fprintf(stderr, "  child: open: %s\n", strerror(-rc));
        return 2;
    }
    unsigned a = (unsigned)strtoul(argv[4], NULL, 10), b = (unsigned)strtoul(argv[5], NULL, 10);
    if (!strcmp(argv[1], "--append")) {
        for (unsigned i = 0; i < b && rc == 0; i++) {
            uint32_t uid;
            rc = append_ids(mb, a + i, 1, 0, &uid);
        }
    } else if (!strcmp(argv[1], "--flag")) {
        store_range all = { 1, UINT32_MAX };
        rc = store_flags(mb, &all, 1, STORE_FLAGS_ADD, a, NULL, 0, 0, NULL, NULL, NULL);
    } else if (!strcmp(argv[1], "--expunge")) {
        store_range r = { a, b };
        rc = store_expunge(mb, &r, 1, false, NULL, NULL);
    } else if (!strcmp(argv[1], "--compact")) {
        rc = store_compact(mb, NULL, NULL);
    } else if (!strcmp(argv[1], "--hold-append")) {
        /* open and append one, say 'R' on stdout, wait for a byte on stdin,
         * then append the rest: the parent changes things in between */
        uint32_t uid;
        rc = append_ids(mb, a, 1, 0, &uid);
        char c = 'R';
        if (write(1, &c, 1) != 1 || read(0, &c, 1) != 1)
            rc = rc ? rc : -EPIPE;
        for (unsigned i = 1; i < b && rc == 0; i++)
            rc = append_ids(mb, a + i, 1, 0, &uid);
    }
    if (rc)
        fprintf(stderr, "  child %s: %s\n", argv[1], strerror(-rc));
    test_inbox_close(u, mb);
    return rc ? 1 : 0;
}

static void test_other_process(void)
{
    char *root = strdup(test_tmpdir("conc-c"));
    store_user *u;
    store_mbox *mb;
    REQUIRE_OK(test_inbox_open(root, "c", STORE_FSYNC_BATCH, &u, &mb));
    uint32_t mine[10];
    for (unsigned i = 0; i < 10; i++)
        REQUIRE_OK(append_ids(mb, i, 1, 0, &mine[i]));
    store_snap *s1 = store_snap_get(mb);
    REQUIRE(s1);
    uint64_t hms1 = store_snap_highestmodseq(s1);

    /* 1: seen by the next snapshot */
    CHECK_EQ(run_child("--append", root, "c", 100, 5), 0);
    CHECK_EQ(store_snap_messages(s1), 10);       /* the pinned one does not move */
    store_snap *s2 = store_snap_get(mb);
    REQUIRE(s2);
    CHECK_EQ(store_snap_messages(s2), 15);
    CHECK(store_snap_highestmodseq(s2) > hms1);
    CHECK(store_snap_uidnext(s2) > store_snap_uidnext(s1));
    for (uint32_t seq = 11; seq <= store_snap_messages(s2); seq++) {
        uint32_t uid = store_snap_uid_of_seq(s2, seq);
        const char *p;
        size_t got;
        long id = -1;
        CHECK(uid > mine[9]);
        CHECK(store_snap_bytes(s2, uid, 0, SIZE_MAX, &p, &got) == 0 && verify_msg(p, got, &id) &&
              id == (long)(100 + seq - 11));
    }
    store_snap_put(s2);
    store_snap_put(s1);

    /* 2: seen by status after refresh */
    CHECK_EQ(run_child("--append", root, "c", 200, 5), 0);
    CHECK_EQ(store_mbox_refresh(mb), 0);
    store_status st;
    REQUIRE_OK(store_mbox_status(mb, &st));
    CHECK_EQ(st.messages, 20);

    /* 3: our own append after theirs, with no refresh in between, must not
     * reuse their UIDs */
    CHECK_EQ(run_child("--append", root, "c", 300, 5), 0);
    uint32_t late;
    REQUIRE_OK(append_ids(mb, 400, 1, 0, &late));
    long *ids = NULL;
    uint32_t *uids = NULL;
    int bad = 0;
    size_t n = collect_ids(mb, &ids, &uids, &bad);
    CHECK_EQ(n, 26);
    CHECK_EQ(bad, 0);
    CHECK(n && uids[n - 1] == late && ids[n - 1] == 400);
    for (size_t i = 1; i < n; i++)
        CHECK(uids[i] > uids[i - 1]);
    free(ids);
    free(uids);

    /* 4: flags and expunges from another process */
    CHECK_EQ(run_child("--flag", root, "c", STORE_F_FLAGGED, 0), 0);
    CHECK_EQ(run_child("--expunge", root, "c", mine[0], mine[4]), 0);
    CHECK_EQ(store_mbox_refresh(mb), 0);
    store_snap *s3 = store_snap_get(mb);
    REQUIRE(s3);
    CHECK_EQ(store_snap_messages(s3), 21);
    store_msg m;
    CHECK_EQ(store_snap_msg(s3, mine[0], &m), -ENOENT);
    CHECK_EQ(store_snap_msg(s3, late, &m), 0);
    CHECK_EQ(m.flags, STORE_F_FLAGGED);
    CHECK_EQ(store_snap_uid_of_seq(s3, 1), mine[5]);
    store_snap_put(s3);
    REQUIRE_OK(store_mbox_status(mb, &st));
    CHECK_EQ(st.messages, 21);
    test_inbox_close(u, mb);
    test_rm_rf(root);
    free(root);
}

/* ---- (d) compaction ------------------------------------------------- */

typedef struct saved {
    uint32_t uid, flags;
    uint64_t keywords_named;    /* bit j = kwnames[j] */
    uint64_t modseq;
    int64_t date;
    long id;
} saved;

static const char *const kwnames[3] = { "Red", "Green", "$Blue" };

static uint64_t named_kws(store_snap *s, const store_msg *m)
{
    uint64_t r = 0;
    for (int j = 0; j < 3; j++) {
        int i = store_snap_keyword_index(s, kwnames[j]);
        if (i >= 0 && (m->keywords >> i & 1))
            r |= 1ull << j;
    }
    return r;
}

static size_t save_all(store_mbox *mb, saved **out)
{
    store_snap *s = store_snap_get(mb);
    if (!s)
        return 0;
    uint32_t n = store_snap_messages(s);
    *out = calloc(n + 1, sizeof **out);
    for (uint32_t seq = 1; seq <= n; seq++) {
        saved *x = &(*out)[seq - 1];
        store_msg m;
        x->uid = store_snap_uid_of_seq(s, seq);
        x->id = -2;
        if (store_snap_msg(s, x->uid, &m) != 0)
            continue;
        x->flags = m.flags;
        x->modseq = m.modseq;
        x->date = m.internal_date;
        x->keywords_named = named_kws(s, &m);
        const char *p;
        size_t got;
        if (store_snap_bytes(s, x->uid, 0, SIZE_MAX, &p, &got) != 0 || !verify_msg(p, got, &x->id))
            x->id = -1;
    }
    store_snap_put(s);
    return n;
}

static size_t saved_diff(const saved *a, size_t na, const saved *b, size_t nb)
{
    size_t d = na > nb ? na - nb : nb - na;
    for (size_t i = 0; i < na && i < nb; i++) {
        if (memcmp(&a[i], &b[i], sizeof *a) != 0 || a[i].id < 0) {
            if (d++ < 3)
                fprintf(stderr, "  seq %zu: uid %u/%u flags %#x/%#x kw %#" PRIx64 "/%#" PRIx64
                        " modseq %" PRIu64 "/%" PRIu64 " id %ld/%ld\n", i + 1, a[i].uid, b[i].uid,
                        a[i].flags, b[i].flags, a[i].keywords_named, b[i].keywords_named,
                        a[i].modseq, b[i].modseq, a[i].id, b[i].id);
        }
    }
    return d;
}

static void progress(void *arg, uint64_t done, uint64_t total)
{
    uint64_t *v = arg;
    if (done > total || done < v[1])
        v[2]++;
    v[0]++;
    v[1] = done;
}

static int count_logs(const char *root, const char *user)
{
    char m[700];
    test_pathf(m, sizeof m, "%s/%s/m", root, user);
    DIR *d = opendir(m);
    if (!d)
        return -1;
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char sub[1400];
        test_pathf(sub, sizeof sub, "%s/%s", m, de->d_name);
        DIR *e = opendir(sub);
        if (!e)
            continue;
        struct dirent *f;
        while ((f = readdir(e)))
            if (!strncmp(f->d_name, "log.", 4))
                n++;
        closedir(e);
    }
    closedir(d);
    return n;
}

static void test_compaction(void)
{
    char *root = strdup(test_tmpdir("conc-d"));
    store_user *u;
    store_mbox *mb;
    REQUIRE_OK(test_inbox_open(root, "d", STORE_FSYNC_NEVER, &u, &mb));
    const unsigned N = test_quick() ? 600 : 2000;
    uint32_t *uids = calloc(N, sizeof *uids);
    for (unsigned i = 0; i < N; i += 10)
        REQUIRE_OK(append_ids(mb, i, 10, 0, uids + i));
    for (unsigned i = 0; i < N; i++) {
        store_range r = { uids[i], uids[i] };
        if (i % 3 == 0)
            REQUIRE_OK(store_flags(mb, &r, 1, STORE_FLAGS_ADD, STORE_F_SEEN, NULL, 0, 0, NULL,
                                   NULL, NULL));
        if (i % 5 == 0) {
            const char *k[] = { kwnames[i % 3] };
            REQUIRE_OK(store_flags(mb, &r, 1, STORE_FLAGS_ADD, STORE_F_FLAGGED, k, 1, 0, NULL,
                                   NULL, NULL));
        }
    }
    /* expunge every odd one, including the highest UID */
    for (unsigned i = 1; i < N; i += 2) {
        store_range r = { uids[i], uids[i] };
        REQUIRE_OK(store_expunge(mb, &r, 1, false, NULL, NULL));
    }
    store_status before;
    REQUIRE_OK(store_mbox_status(mb, &before));
    CHECK_EQ(before.messages, N / 2);
    CHECK(before.dead_bytes > 0);
    saved *sv = NULL;
    size_t nsv = save_all(mb, &sv);
    store_snap *old = store_snap_get(mb);
    REQUIRE(old);

    uint64_t prog[3] = { 0, 0, 0 };
    REQUIRE_OK(store_compact(mb, progress, prog));
    CHECK(prog[0] > 0);
    CHECK_EQ(prog[2], 0);
    store_status after;
    REQUIRE_OK(store_mbox_status(mb, &after));
    fprintf(stderr, "  compaction: log %" PRIu64 " -> %" PRIu64 " bytes, dead %" PRIu64 " -> %" PRIu64
            ", generation %" PRIu64 " -> %" PRIu64 "\n", before.log_bytes, after.log_bytes,
            before.dead_bytes, after.dead_bytes, before.generation, after.generation);
    CHECK(after.log_bytes * 10 < before.log_bytes * 6);
    CHECK(after.dead_bytes * 100 <= after.log_bytes);
    CHECK(after.generation > before.generation);
    CHECK_EQ(after.messages, before.messages);
    CHECK_EQ(after.unseen, before.unseen);
    CHECK_EQ(after.size, before.size);
    CHECK_EQ(after.uidnext, before.uidnext);
    CHECK_EQ(after.uidvalidity, before.uidvalidity);
    CHECK(after.highestmodseq >= before.highestmodseq);

    /* survivors unchanged */
    saved *sv2 = NULL;
    size_t nsv2 = save_all(mb, &sv2);
    CHECK_EQ(saved_diff(sv, nsv, sv2, nsv2), 0);
    free(sv2);

    /* the old snapshot still reads its bytes after the swap */
    int bad = 0;
    for (size_t i = 0; i < nsv; i++) {
        const char *p;
        size_t got;
        long id;
        if (store_snap_bytes(old, sv[i].uid, 0, SIZE_MAX, &p, &got) != 0 ||
            !verify_msg(p, got, &id) || id != sv[i].id)
            bad++;
        store_cache c;
        if (store_snap_cache(old, sv[i].uid, &c) != 0)
            bad++;
    }
    CHECK_EQ(store_snap_messages(old), nsv);
    CHECK_EQ(bad, 0);
    store_snap_put(old);

    /* tombstones were dropped: expunged_since may be inexact but complete */
    store_snap *s = store_snap_get(mb);
    REQUIRE(s);
    store_uidlist ex = { 0 };
    bool exact = true;
    REQUIRE_OK(store_snap_expunged_since(s, 0, &ex, &exact));
    uint8_t *in = calloc(before.uidnext + 1, 1);
    for (size_t i = 0; i < ex.n; i++)
        if (ex.uids[i] <= before.uidnext)
            in[ex.uids[i]] = 1;
    size_t missing = 0, wrong = 0;
    for (unsigned i = 1; i < N; i += 2)
        if (!in[uids[i]])
            missing++;
    for (size_t i = 0; i < nsv; i++)
        if (in[sv[i].uid])
            wrong++;
    CHECK_EQ(missing, 0);
    CHECK_EQ(wrong, 0);
    free(in);
    store_uidlist_free(&ex);
    store_snap_put(s);

    /* the next append gets a fresh UID; changes after compaction get higher modseqs */
    uint32_t nu;
    REQUIRE_OK(append_ids(mb, 90000, 1, 0, &nu));
    CHECK(nu >= before.uidnext);
    uint64_t ms = 0;
    store_range r0 = { sv[0].uid, sv[0].uid };
    REQUIRE_OK(store_flags(mb, &r0, 1, STORE_FLAGS_ADD, STORE_F_DRAFT, NULL, 0, 0, NULL, NULL, &ms));
    CHECK(ms > before.highestmodseq);

    /* persists; and the old generation's files are gone */
    saved *s_before = NULL, *s_after = NULL;
    size_t nb = save_all(mb, &s_before);
    test_inbox_close(u, mb);
    CHECK_EQ(count_logs(root, "d"), 1);
    REQUIRE_OK(test_inbox_open(root, "d", STORE_FSYNC_NEVER, &u, &mb));
    size_t na = save_all(mb, &s_after);
    CHECK_EQ(saved_diff(s_before, nb, s_after, na), 0);
    store_status re;
    REQUIRE_OK(store_mbox_status(mb, &re));
    CHECK_EQ(re.generation, after.generation);
    test_inbox_close(u, mb);
    free(s_before);
    free(s_after);
    free(sv);
    free(uids);
    test_rm_rf(root);
    free(root);
}

/* Starts "MODE ROOT USER A B" with pipes on its stdin and stdout. */
static pid_t spawn_piped(const char *mode, const char *root, const char *user, unsigned a,
                         unsigned b, int *to_child, int *from_child)
{
    int in[2], out[2];
    if (pipe(in) < 0 || pipe(out) < 0)
        return -1;
    char sa[32], sb[32];
    snprintf(sa, sizeof sa, "%u", a);
    snprintf(sb, sizeof sb, "%u", b);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]); close(in[1]); close(out[0]); close(out[1]);
        execl(self_exe, self_exe, mode, root, user, sa, sb, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    *to_child = in[1];
    *from_child = out[0];
    return pid;
}

static int wait_status(pid_t pid)
{
    int st = 0;
    if (waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Checks that the mailbox holds exactly the ids in want[0..n) (any order of
 * UIDs, bytes intact).  Returns the number of problems. */
static int check_ids(store_mbox *mb, const long *want, size_t n, const char *when)
{
    long *ids = NULL;
    uint32_t *uids = NULL;
    int bad = 0;
    size_t got = collect_ids(mb, &ids, &uids, &bad);
    if (got != n) {
        fprintf(stderr, "  %s: %zu messages, want %zu\n", when, got, n);
        bad++;
    }
    for (size_t i = 1; i < got; i++)
        if (uids[i] <= uids[i - 1])
            bad++;
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (size_t j = 0; j < got && !found; j++)
            found = ids[j] == want[i];
        if (!found && bad++ < 3)
            fprintf(stderr, "  %s: message id %ld missing\n", when, want[i]);
    }
    free(ids);
    free(uids);
    return bad;
}

/* Compaction by another process (ringmail-admin) while we hold the mailbox
 * open, and by us while another process holds it open. */
static void test_cross_process_compaction(void)
{
    char *root = strdup(test_tmpdir("conc-f"));
    store_user *u;
    store_mbox *mb;
    REQUIRE_OK(test_inbox_open(root, "f", STORE_FSYNC_BATCH, &u, &mb));
    uint32_t uids[100];
    for (unsigned i = 0; i < 100; i += 10)
        REQUIRE_OK(append_ids(mb, i, 10, 0, uids + i));
    for (unsigned i = 1; i < 100; i += 2) {
        store_range r = { uids[i], uids[i] };
        REQUIRE_OK(store_expunge(mb, &r, 1, false, NULL, NULL));
    }
    store_range fr = { uids[0], uids[10] };
    REQUIRE_OK(store_flags(mb, &fr, 1, STORE_FLAGS_ADD, STORE_F_SEEN, NULL, 0, 0, NULL, NULL, NULL));
    store_status st0;
    REQUIRE_OK(store_mbox_status(mb, &st0));
    saved *sv = NULL;
    size_t nsv = save_all(mb, &sv);
    store_snap *old = store_snap_get(mb);
    REQUIRE(old);

    /* 1: another process compacts */
    CHECK_EQ(run_child("--compact", root, "f", 0, 0), 0);
    uint32_t late[10];
    REQUIRE_OK(append_ids(mb, 1000, 10, 0, late));   /* no refresh first */
    CHECK(late[0] > uids[99]);
    /* our old snapshot still reads the old generation's bytes */
    int bad = 0;
    for (size_t i = 0; i < nsv; i++) {
        const char *p;
        size_t got;
        long id;
        if (store_snap_bytes(old, sv[i].uid, 0, SIZE_MAX, &p, &got) != 0 ||
            !verify_msg(p, got, &id) || id != sv[i].id)
            bad++;
    }
    store_snap_put(old);
    saved *sv2 = NULL;
    size_t nsv2 = save_all(mb, &sv2);
    CHECK_EQ(nsv2, nsv + 10);
    CHECK_EQ(saved_diff(sv, nsv, sv2, nsv2 < nsv ? nsv2 : nsv), 0);
    free(sv2);
    store_status st1;
    REQUIRE_OK(store_mbox_refresh(mb));
    REQUIRE_OK(store_mbox_status(mb, &st1));
    CHECK(st1.generation > st0.generation);
    CHECK_EQ(st1.messages, 60);
    CHECK_EQ(bad, 0);

    long want[100];
    size_t nw = 0;
    for (unsigned i = 0; i < 100; i += 2)
        want[nw++] = i;
    for (unsigned i = 0; i < 10; i++)
        want[nw++] = 1000 + i;

    /* 2: we compact while another process holds the mailbox open */
    int to = -1, from = -1;
    pid_t pid = spawn_piped("--hold-append", root, "f", 5000, 30, &to, &from);
    REQUIRE(pid > 0);
    char c = 0;
    CHECK(read(from, &c, 1) == 1 && c == 'R');
    CHECK_EQ(store_compact(mb, NULL, NULL), 0);
    uint32_t mid;
    CHECK_EQ(append_ids(mb, 2000, 1, 0, &mid), 0);
    CHECK_EQ(store_compact(mb, NULL, NULL), 0);
    CHECK(write(to, "G", 1) == 1);
    close(to);
    close(from);
    CHECK_EQ(wait_status(pid), 0);
    for (unsigned i = 0; i < 30; i++)
        want[nw++] = 5000 + i;
    want[nw++] = 2000;
    CHECK_EQ(check_ids(mb, want, nw, "after the other process appended"), 0);
    test_inbox_close(u, mb);
    CHECK_EQ(count_logs(root, "f"), 1);
    REQUIRE_OK(test_inbox_open(root, "f", STORE_FSYNC_BATCH, &u, &mb));
    CHECK_EQ(check_ids(mb, want, nw, "after reopen"), 0);
    test_inbox_close(u, mb);
    free(sv);
    test_rm_rf(root);
    free(root);
}

/* Two processes creating mailboxes and subscriptions in one user at once:
 * the list file is replaced atomically, so it must not lose updates. */
static void test_concurrent_mailbox_list(void)
{
    char *root = strdup(test_tmpdir("conc-g"));
    const int per = 40;
    int gate[2];
    REQUIRE(pipe(gate) == 0);
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        fflush(stderr);
        kids[k] = fork();
        REQUIRE(kids[k] >= 0);
        if (kids[k] == 0) {
            close(gate[1]);
            char c;
            (void)!read(gate[0], &c, 1);
            store_user *u;
            int rc = store_user_open(root, "m", NULL, &u);
            if (rc < 0)
                _exit(2);
            int errs = 0;
            for (int i = 0; i < per; i++) {
                char name[64];
                snprintf(name, sizeof name, "P%d/box%03d", k, i);
                if ((rc = store_mailbox_create(u, name, 0)) < 0 ||
                    (rc = store_mailbox_subscribe(u, name, true)) < 0) {
                    fprintf(stderr, "  child %d: %s: %s\n", k, name, strerror(-rc));
                    errs++;
                }
            }
            store_user_close(u);
            _exit(errs ? 1 : 0);
        }
    }
    close(gate[0]);
    close(gate[1]);
    for (int k = 0; k < 2; k++)
        CHECK_EQ(wait_status(kids[k]), 0);
    store_user *u;
    REQUIRE_OK(store_user_open(root, "m", NULL, &u));
    store_mailbox_info *v = NULL;
    size_t n = 0;
    REQUIRE_OK(store_mailbox_list(u, &v, &n));
    CHECK_EQ(n, 1 + 2 + 2 * per);   /* INBOX, P0, P1, the boxes */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            CHECK(v[i].id != v[j].id);
    store_mailbox_info_free(v, n);
    char **names = NULL;
    size_t ns = 0;
    REQUIRE_OK(store_subscriptions(u, &names, &ns));
    CHECK_EQ(ns, 2 * per);
    for (size_t i = 0; i < ns; i++)
        free(names[i]);
    free(names);
    store_user_close(u);
    test_rm_rf(root);
    free(root);
}

/* ---- (e) group commit ------------------------------------------------ */

typedef struct gc_arg {
    const char *root;
    store_fsync fs;
    unsigned first, n;
    uint32_t *uids;
    int err;
} gc_arg;

static void *gc_main(void *p)
{
    gc_arg *a = p;
    store_user *u;
    store_mbox *mb;
    int rc = test_inbox_open(a->root, "g", a->fs, &u, &mb);
    if (rc < 0) {
        a->err = rc;
        return NULL;
    }
    for (unsigned i = 0; i < a->n && rc == 0; i++)
        rc = append_ids(mb, a->first + i, 1, 0, &a->uids[i]);
    a->err = rc;
    test_inbox_close(u, mb);
    return NULL;
}

static void test_group_commit(void)
{
    static const store_fsync modes[2] = { STORE_FSYNC_BATCH, STORE_FSYNC_ALWAYS };
    for (int mode = 0; mode < 2; mode++) {
        char *root = strdup(test_tmpdir("conc-e"));
        /* hold the user open so the threads share one object */
        store_user *u;
        store_mbox *mb;
        REQUIRE_OK(test_inbox_open(root, "g", modes[mode], &u, &mb));
        enum { T = 4 };
        const unsigned per = mode == 0 ? 60 : 15;
        gc_arg args[T];
        pthread_t th[T];
        for (int t = 0; t < T; t++) {
            args[t] = (gc_arg){ .root = root, .fs = modes[mode], .first = (unsigned)t * 1000,
                                .n = per, .uids = calloc(per, sizeof(uint32_t)) };
            REQUIRE(pthread_create(&th[t], NULL, gc_main, &args[t]) == 0);
        }
        for (int t = 0; t < T; t++) {
            pthread_join(th[t], NULL);
            CHECK_EQ(args[t].err, 0);
        }
        uint32_t *all = calloc(T * per, sizeof *all);
        for (int t = 0; t < T; t++) {
            memcpy(all + t * per, args[t].uids, per * sizeof *all);
            free(args[t].uids);
        }
        qsort(all, T * per, sizeof *all, cmp_u32);
        size_t dup = 0;
        for (size_t i = 1; i < T * per; i++)
            if (all[i] == all[i - 1] || all[i] == 0)
                dup++;
        CHECK_EQ(dup, 0);
        free(all);
        long *ids = NULL;
        uint32_t *uids = NULL;
        int bad = 0;
        size_t n = collect_ids(mb, &ids, &uids, &bad);
        CHECK_EQ(n, T * per);
        CHECK_EQ(bad, 0);
        free(ids);
        free(uids);
        test_inbox_close(u, mb);
        test_rm_rf(root);
        free(root);
    }
}

/* A message is published by two stores: the entry count and how far the
 * log is applied.  A reader that sees the entry must find its record
 * applied (store_snap_bytes, EMAILID read from the record), so the log
 * offset must go first.  Readers look at the newest entry of each
 * snapshot while one thread appends, so that they land between the two
 * stores if they are in the wrong order. */
struct fresh_arg {
    store_mbox *mb;
    atomic_bool *stop;
    unsigned checks, bad;
};

static void *fresh_reader(void *arg)
{
    struct fresh_arg *a = arg;
    while (!atomic_load(a->stop)) {
        store_snap *s = store_snap_get(a->mb);
        uint32_t n = s ? store_snap_entries(s) : 0;
        store_msg m;
        if (n && store_snap_entry(s, n - 1, &m) == 1) {
            const char *p;
            size_t got;
            store_msg_ext x;
            int rc = store_snap_bytes(s, m.uid, 0, SIZE_MAX, &p, &got);
            int rx = store_snap_msg_ext(s, m.uid, &x);
            a->checks++;
            if (rc != 0 || rx != 0) {
                if (a->bad++ < 5)
                    terr("fresh uid %u: bytes %d, ext %d", m.uid, rc, rx);
            }
        }
        store_snap_put(s);
    }
    return NULL;
}

static void publish_pause(void)
{
    usleep(50);
}

static void test_fresh_entry_published(void)
{
    store_test_publish_hook = publish_pause;
    test_env e;
    REQUIRE_OK(test_env_open(&e, "conc-fresh"));
    atomic_bool stop = false;
    enum { R = 2 };
    struct fresh_arg args[R];
    pthread_t th[R];
    for (int i = 0; i < R; i++) {
        args[i] = (struct fresh_arg){.mb = e.mb, .stop = &stop};
        REQUIRE(pthread_create(&th[i], NULL, fresh_reader, &args[i]) == 0);
    }
    unsigned n = test_quick() ? 1000 : 3000;
    for (unsigned i = 0; i < n; i++) {
        uint32_t uid;
        if (append_ids(e.mb, i, 1, 0, &uid) < 0) {
            terr("append %u failed", i);
            break;
        }
    }
    atomic_store(&stop, true);
    unsigned checks = 0, bad = 0;
    for (int i = 0; i < R; i++) {
        pthread_join(th[i], NULL);
        checks += args[i].checks;
        bad += args[i].bad;
    }
    fprintf(stderr, "  %u appends, %u reads of the newest entry\n", n, checks);
    CHECK_EQ(bad, 0);
    CHECK_EQ(atomic_load(&thread_errors), 0);
    store_test_publish_hook = NULL;
    test_env_close(&e);
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
    unsigned t = test_quick() ? 1200 : 300;
    RUN_ISOLATED(test_other_process, t);
    RUN_ISOLATED(test_compaction, t);
    RUN_ISOLATED(test_cross_process_compaction, t);
    RUN_ISOLATED(test_concurrent_mailbox_list, t);
    RUN_ISOLATED(test_group_commit, t);
    RUN_ISOLATED(test_two_processes, t);
    RUN_ISOLATED(test_readers_writer_compactor, t);
    RUN_ISOLATED(test_fresh_entry_published, t);
    return test_summary();
}
