/* tests/unit/test_store_recovery.c — recovery beyond a torn log: finding
 * the log after many compactions, leftovers of killed compactions and
 * DELETEs, a compaction racing with other processes' opens, and \Recent
 * claims carried across a compaction.
 *
 * rename, fdatasync, msync, pwrite and unlink are interposed (defined here,
 * so the store's calls land here first) to run a hook at a rename or to
 * kill the process at a chosen call: crashes at exact places, not at the
 * mercy of timing. */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "store/store.h"
#include "tests/unit/store_testutil.h"
#include "tests/unit/testutil.h"

/* ---- interposition ---------------------------------------------------- */

static void (*rename_hook)(const char *from, const char *to);
static int kill_at = -1;        /* SIGKILL ourselves at this store call */
static int calls;               /* store calls counted for kill_at */

static void count_call(void)
{
    if (kill_at >= 0 && calls++ == kill_at)
        raise(SIGKILL);
}

int rename(const char *from, const char *to)
{
    count_call();
    if (rename_hook)
        rename_hook(from, to);
    return (int)syscall(SYS_rename, from, to);
}

int fdatasync(int fd)
{
    count_call();
    return (int)syscall(SYS_fdatasync, fd);
}

int msync(void *p, size_t n, int flags)
{
    count_call();
    return (int)syscall(SYS_msync, p, n, flags);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    count_call();
    return syscall(SYS_pwrite64, fd, buf, n, off);
}

int unlink(const char *path)
{
    count_call();
    return (int)syscall(SYS_unlink, path);
}

/* ---- helpers ------------------------------------------------------------ */

static char *make_msg(unsigned id, size_t *len)
{
    size_t body = 100 + (id * 37u) % 300;
    char *b = malloc(256 + body + body / 60 * 2 + 4);
    if (!b)
        abort();
    int n = snprintf(b, 256, "From: r%u@example.com\r\nSubject: recovery %u\r\n\r\n", id, id);
    size_t o = (size_t)n;
    for (size_t i = 0; i < body; i++) {
        b[o++] = (char)('a' + (id + i) % 26);
        if (i % 60 == 59) {
            b[o++] = '\r';
            b[o++] = '\n';
        }
    }
    b[o++] = '\r';
    b[o++] = '\n';
    *len = o;
    return b;
}

static int append_id(store_mbox *mb, unsigned id, uint32_t flags, uint32_t *uid)
{
    size_t len;
    char *b = make_msg(id, &len);
    const char *kw[] = {"$label1"};
    store_new_msg m = {.data = b, .len = len, .internal_date = 1700000000 + id,
                       .flags = flags, .keywords = kw, .nkeywords = id % 3 == 0};
    int r = store_append(mb, &m, 1, uid);
    free(b);
    return r;
}

/* Names in dir that are not the files of one healthy generation (lock,
 * compact.lock, index, log.N, cache.N), ' '-joined into out. */
static int strays(const char *dir, char *out, size_t cap)
{
    DIR *d = opendir(dir);
    int n = 0, nlog = 0, ncache = 0;
    out[0] = 0;
    if (!d)
        return -1;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *nm = de->d_name;
        if (!strcmp(nm, ".") || !strcmp(nm, "..") || !strcmp(nm, "lock") ||
            !strcmp(nm, "compact.lock") || !strcmp(nm, "index"))
            continue;
        char *end;
        if (!strncmp(nm, "log.", 4) && strtoull(nm + 4, &end, 10) && !*end && !nlog++)
            continue;
        if (!strncmp(nm, "cache.", 6) && strtoull(nm + 6, &end, 10) && !*end && !ncache++)
            continue;
        size_t l = strlen(out);
        snprintf(out + l, cap - l, "%s%s", l ? " " : "", nm);
        n++;
    }
    closedir(d);
    return n;
}

static void mbox_dir_of(store_mbox *mb, char *out, size_t cap)
{
    snprintf(out, cap, "%s", store_mbox_dir(mb));
}

/* ---- more than 64 compactions, then the index is lost ------------------ */

static void test_many_compactions_lost_index(void)
{
    const char *root = test_tmpdir("recov-gen");
    store_user *u;
    store_mbox *mb;
    REQUIRE_OK(test_inbox_open(root, "g", STORE_FSYNC_ALWAYS, &u, &mb));
    uint32_t uid;
    unsigned id = 0;
    for (; id < 6; id++)
        REQUIRE_OK(append_id(mb, id, id & 1 ? STORE_F_SEEN : 0, &uid));
    char dir[1024];
    mbox_dir_of(mb, dir, sizeof dir);
    for (int c = 0; c < 70; c++) {
        /* Something changes between compactions, as in real life. */
        if (c % 10 == 3)
            REQUIRE_OK(append_id(mb, id++, 0, &uid));
        if (c % 10 == 7) {
            store_range r = {uid, uid};
            REQUIRE_OK(store_flags(mb, &r, 1, STORE_FLAGS_ADD, STORE_F_FLAGGED, NULL, 0,
                                   0, NULL, NULL, NULL));
        }
        REQUIRE_OK(store_compact(mb, NULL, NULL));
    }
    store_range one = {2, 2};
    REQUIRE_OK(store_expunge(mb, &one, 1, false, NULL, NULL));
    store_status st;
    REQUIRE_OK(store_mbox_status(mb, &st));
    CHECK_EQ(st.generation, 71);
    char *want = test_describe_mbox(mb);
    test_inbox_close(u, mb);

    char p[1200];
    snprintf(p, sizeof p, "%s/index", dir);
    REQUIRE(unlink(p) == 0);
    REQUIRE_OK(test_inbox_open(root, "g", STORE_FSYNC_ALWAYS, &u, &mb));
    char *got = test_describe_mbox(mb);
    CHECK(!strcmp(want, got));
    if (strcmp(want, got))
        fprintf(stderr, "want:\n%sgot:\n%s", want, got);
    free(got);
    store_check_report rep;
    CHECK_EQ(store_check(mb, false, &rep, NULL, NULL), 0);
    test_inbox_close(u, mb);

    /* And check --repair on a mailbox whose index is missing. */
    REQUIRE(unlink(p) == 0);
    REQUIRE_OK(test_inbox_open(root, "g", STORE_FSYNC_ALWAYS, &u, &mb));
    CHECK_EQ(store_check(mb, true, &rep, NULL, NULL), 0);
    CHECK_EQ(store_check(mb, false, &rep, NULL, NULL), 0);
    got = test_describe_mbox(mb);
    CHECK(!strcmp(want, got));
    free(got);
    REQUIRE_OK(append_id(mb, 999, 0, &uid));
    CHECK_EQ(uid, st.uidnext);
    test_inbox_close(u, mb);
    free(want);
    test_rm_rf(root);
}

/* ---- a DELETE that crashed after its commit point ---------------------- */

static void test_orphan_mailbox_dir(void)
{
    const char *root = test_tmpdir("recov-orphan");
    store_opts o;
    store_opts_default(&o);
    store_user *u;
    REQUIRE_OK(store_user_open(root, "o", &o, &u));
    REQUIRE_OK(store_mailbox_create(u, "Gone", 0));
    REQUIRE_OK(store_mailbox_create(u, "Kept", 0));
    store_mbox *mb;
    uint32_t uid;
    REQUIRE_OK(store_mbox_open(u, "Gone", &mb));
    REQUIRE_OK(append_id(mb, 1, 0, &uid));
    char gone[1024], keep[1200];
    mbox_dir_of(mb, gone, sizeof gone);
    store_mbox_close(mb);
    REQUIRE_OK(store_mbox_open(u, "Kept", &mb));
    REQUIRE_OK(append_id(mb, 2, 0, &uid));
    char *kept_before = test_describe_mbox(mb);
    store_mbox_close(mb);
    CHECK_EQ(store_user_orphans(u, false, NULL, NULL), 0);

    /* The crash: the list saved without "Gone", its files still there. */
    char aside[1200];
    snprintf(aside, sizeof aside, "%s.aside", gone);
    REQUIRE(rename(gone, aside) == 0);
    REQUIRE_OK(store_mailbox_delete(u, "Gone"));
    REQUIRE(rename(aside, gone) == 0);
    /* Something that is not a mailbox directory is not ours to remove. */
    snprintf(keep, sizeof keep, "%.*s/notes", (int)(strrchr(gone, '/') - gone), gone);
    REQUIRE(mkdir(keep, 0700) == 0);

    uint64_t *ids = NULL;
    size_t n = 0;
    CHECK_EQ(store_user_orphans(u, false, &ids, &n), 1);
    CHECK_EQ(n, 1);
    if (n == 1) {
        char idname[24];
        snprintf(idname, sizeof idname, "%" PRIu64, ids[0]);
        CHECK(!strcmp(strrchr(gone, '/') + 1, idname));
    }
    free(ids);
    struct stat sb;
    CHECK(stat(gone, &sb) == 0);            /* found, not yet removed */
    CHECK_EQ(store_user_orphans(u, true, NULL, &n), 1);
    CHECK(stat(gone, &sb) < 0 && errno == ENOENT);
    CHECK(stat(keep, &sb) == 0);
    CHECK_EQ(store_user_orphans(u, false, NULL, NULL), 0);
    /* The other mailboxes are untouched. */
    REQUIRE_OK(store_mbox_open(u, "Kept", &mb));
    char *kept_after = test_describe_mbox(mb);
    CHECK(!strcmp(kept_before, kept_after));
    store_mbox_close(mb);
    REQUIRE_OK(store_mbox_open(u, "INBOX", &mb));
    store_mbox_close(mb);
    free(kept_before);
    free(kept_after);
    store_user_close(u);
    test_rm_rf(root);
}

/* ---- \Recent claims across a compaction ------------------------------- */

static store_mbox *hook_mb;
static uint32_t hook_first;
static int hook_claims;

static void claim_at_index_rename(const char *from, const char *to)
{
    size_t n = strlen(from);
    (void)to;
    /* The commit point of compaction: the new index has its copy of the
     * claims, the old one is not yet superseded. */
    if (n >= 13 && !strcmp(from + n - 13, "index.compact")) {
        hook_claims++;
        if (store_mbox_claim_recent(hook_mb, &hook_first) < 0)
            hook_first = 0;
    }
}

static void test_recent_claim_across_compaction(void)
{
    const char *root = test_tmpdir("recov-recent");
    store_user *u;
    store_mbox *mb;
    REQUIRE_OK(test_inbox_open(root, "r", STORE_FSYNC_ALWAYS, &u, &mb));
    uint32_t uid, first;
    for (unsigned i = 0; i < 3; i++)
        REQUIRE_OK(append_id(mb, i, 0, &uid));
    REQUIRE_OK(store_mbox_claim_recent(mb, &first));
    CHECK_EQ(first, 1);
    REQUIRE_OK(append_id(mb, 3, 0, &uid));
    REQUIRE_OK(append_id(mb, 4, 0, &uid));
    hook_mb = mb;
    hook_claims = 0;
    rename_hook = claim_at_index_rename;
    REQUIRE_OK(store_compact(mb, NULL, NULL));
    rename_hook = NULL;
    CHECK_EQ(hook_claims, 1);
    CHECK_EQ(hook_first, 4);            /* 4 and 5 went to that claim */
    REQUIRE_OK(store_mbox_claim_recent(mb, &first));
    CHECK_EQ(first, 6);                 /* ... and to nobody else */
    store_status st;
    REQUIRE_OK(store_mbox_status(mb, &st));
    CHECK_EQ(st.recent, 0);
    test_inbox_close(u, mb);
    test_rm_rf(root);
}

/* ---- compaction while other processes open the mailbox ----------------- */

static void test_compact_races_opens(void)
{
    const char *root = test_tmpdir("recov-race");
    store_user *u;
    store_mbox *mb;
    REQUIRE_OK(test_inbox_open(root, "c", STORE_FSYNC_ALWAYS, &u, &mb));
    uint32_t uid;
    for (unsigned i = 0; i < 200; i++)
        REQUIRE_OK(append_id(mb, i, 0, &uid));
    char *want = test_describe_mbox(mb);
    char dir[1024];
    mbox_dir_of(mb, dir, sizeof dir);
    test_inbox_close(u, mb);
    /* Children open and close the mailbox over and over: every open of a
     * fresh process runs recovery, which used to delete the compaction's
     * log.N.tmp. */
    enum { NCHILD = 2 };
    pid_t kids[NCHILD];
    fflush(stderr);
    for (int k = 0; k < NCHILD; k++) {
        kids[k] = fork();
        REQUIRE(kids[k] >= 0);
        if (kids[k] == 0) {
            for (int i = 0; i < 200000; i++) {
                store_user *cu;
                store_mbox *cm;
                if (test_inbox_open(root, "c", STORE_FSYNC_ALWAYS, &cu, &cm) < 0)
                    _exit(3);
                test_inbox_close(cu, cm);
            }
            _exit(0);
        }
    }
    int rounds = test_quick() ? 15 : 40, failed = 0;
    for (int i = 0; i < rounds; i++) {
        REQUIRE_OK(test_inbox_open(root, "c", STORE_FSYNC_ALWAYS, &u, &mb));
        int rc = store_compact(mb, NULL, NULL);
        if (rc < 0) {
            fprintf(stderr, "  compaction %d failed: %s\n", i, strerror(-rc));
            failed++;
        }
        test_inbox_close(u, mb);
    }
    for (int k = 0; k < NCHILD; k++) {
        int wst = 0;
        kill(kids[k], SIGTERM);
        waitpid(kids[k], &wst, 0);
        CHECK(WIFSIGNALED(wst) || (WIFEXITED(wst) && WEXITSTATUS(wst) == 0));
    }
    CHECK_EQ(failed, 0);
    REQUIRE_OK(test_inbox_open(root, "c", STORE_FSYNC_ALWAYS, &u, &mb));
    char *got = test_describe_mbox(mb);
    CHECK(!strcmp(want, got));
    store_check_report rep;
    CHECK_EQ(store_check(mb, false, &rep, NULL, NULL), 0);
    char s[512];
    CHECK_EQ(strays(dir, s, sizeof s), 0);
    test_inbox_close(u, mb);
    free(want);
    free(got);
    test_rm_rf(root);
}

/* ---- a killed compaction leaves nothing behind ------------------------ */

/* Copies of the stray files of dir into dir/../stash (to put back later). */
static int stash_strays(const char *dir, const char *stash, bool back)
{
    const char *from = back ? stash : dir, *to = back ? dir : stash;
    DIR *d = opendir(from);
    int n = 0;
    if (!d)
        return 0;
    mkdir(stash, 0700);
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *nm = de->d_name;
        if (!strstr(nm, ".tmp") && strcmp(nm, "index.compact"))
            continue;
        char a[1400], b[1400];
        snprintf(a, sizeof a, "%s/%s", from, nm);
        snprintf(b, sizeof b, "%s/%s", to, nm);
        int in = open(a, O_RDONLY), out = open(b, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        char buf[65536];
        ssize_t r;
        while (in >= 0 && out >= 0 && (r = read(in, buf, sizeof buf)) > 0)
            if (write(out, buf, (size_t)r) != r)
                break;
        if (in >= 0)
            close(in);
        if (out >= 0)
            close(out);
        n++;
    }
    closedir(d);
    return n;
}

static void test_killed_compaction(void)
{
    const char *root = test_tmpdir("recov-kill");
    store_user *u;
    store_mbox *mb;
    REQUIRE_OK(test_inbox_open(root, "k", STORE_FSYNC_ALWAYS, &u, &mb));
    uint32_t uid;
    for (unsigned i = 0; i < 40; i++)
        REQUIRE_OK(append_id(mb, i, i % 4 ? 0 : STORE_F_DELETED, &uid));
    REQUIRE_OK(store_expunge(mb, NULL, 0, true, NULL, NULL));
    char *want = test_describe_mbox(mb);
    char dir[1024], stash[1100];
    mbox_dir_of(mb, dir, sizeof dir);
    snprintf(stash, sizeof stash, "%s/stash", root);
    test_inbox_close(u, mb);

    /* How many store calls a compaction makes here: a child counts them
     * (compacting a copy would do as well; the count does not depend on
     * the generation). */
    int *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(shared != MAP_FAILED);
    *shared = -1;
    fflush(stderr);
    pid_t cpid = fork();
    REQUIRE(cpid >= 0);
    if (cpid == 0) {
        store_user *cu;
        store_mbox *cm;
        if (test_inbox_open(root, "k", STORE_FSYNC_ALWAYS, &cu, &cm) < 0)
            _exit(3);
        calls = 0;
        kill_at = INT32_MAX;
        int rc = store_compact(cm, NULL, NULL);
        *shared = calls;
        kill_at = -1;
        test_inbox_close(cu, cm);
        _exit(rc < 0 ? 4 : 0);
    }
    int cst = 0;
    waitpid(cpid, &cst, 0);
    int total = *shared;
    munmap(shared, 4096);
    REQUIRE(WIFEXITED(cst) && WEXITSTATUS(cst) == 0 && total > 8);
    /* Every call if there are few, else 40 spread over the run: each kill
     * point is a fork, a compaction and a recovery. */
    int npoints = total <= 60 || !test_quick() ? total : 40;

    int tried = 0, left_something = 0, swept_by_check = 0;
    for (int i = 0; i <= npoints; i++, tried++) {
        int point = i == npoints ? total : (int)((int64_t)i * total / npoints);
        fflush(stderr);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            store_user *cu;
            store_mbox *cm;
            if (test_inbox_open(root, "k", STORE_FSYNC_ALWAYS, &cu, &cm) < 0)
                _exit(3);
            calls = 0;
            kill_at = point;
            int rc = store_compact(cm, NULL, NULL);
            kill_at = -1;
            test_inbox_close(cu, cm);
            _exit(rc < 0 ? 4 : 0);
        }
        int wst = 0;
        waitpid(pid, &wst, 0);
        if (point == total)
            CHECK(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);   /* ran to its end */
        else
            CHECK(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL);
        char s[512];
        int nstray = strays(dir, s, sizeof s);
        left_something += nstray > 0;
        int stashed = stash_strays(dir, stash, false);
        /* The next open removes what the dead compaction left ... */
        REQUIRE_OK(test_inbox_open(root, "k", STORE_FSYNC_ALWAYS, &u, &mb));
        CHECK_EQ(strays(dir, s, sizeof s), 0);
        if (s[0])
            fprintf(stderr, "  killed at call %d of %d: left %s\n", point, total, s);
        char *got = test_describe_mbox(mb);
        CHECK(!strcmp(want, got));
        free(got);
        /* ... and so does check, for files that appear while it is open. */
        if (stashed) {
            stash_strays(dir, stash, true);
            store_check_report rep;
            CHECK_EQ(store_check(mb, false, &rep, NULL, NULL), 0);
            CHECK_EQ(rep.leftovers, stashed);
            CHECK_EQ(strays(dir, s, sizeof s), 0);
            swept_by_check++;
        }
        test_rm_rf(stash);
        test_inbox_close(u, mb);
    }
    CHECK(left_something > 0);
    CHECK(swept_by_check > 0);
    fprintf(stderr, "  compaction killed at %d of its %d store calls, %d kills left "
            "files behind\n", tried - 1, total, left_something);
    free(want);
    test_rm_rf(root);
}

int main(void)
{
    RUN(test_many_compactions_lost_index);
    RUN(test_orphan_mailbox_dir);
    RUN(test_recent_claim_across_compaction);
    RUN(test_compact_races_opens);
    RUN(test_killed_compaction);
    return test_summary();
}
