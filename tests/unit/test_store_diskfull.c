/* tests/unit/test_store_diskfull.c — writes that fail for want of room.
 *
 * A transaction whose log record was written but whose index or cache
 * entry could not be (the file may not grow) is taken back: the caller's
 * error stands and the message never appears, neither at the next write's
 * catch-up nor after a reopen or a rebuild from the log.  On a full file
 * system (a small tmpfs the test mounts, when it may) writes fail with
 * -ENOSPC, never with a SIGBUS from a store into an unallocated page of the
 * index mapping, and everything that only reads keeps working. */
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "store/store.h"
#include "tests/unit/testutil.h"

static long long file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (long long)st.st_size : -1;
}

/* A tiny message whose bytes name it: "Subject: m<i>". */
static char *tiny(unsigned i, size_t *len)
{
    char *b = malloc(64);
    if (!b)
        abort();
    *len = (size_t)snprintf(b, 64, "Subject: m%u\r\n\r\nb\r\n", i);
    return b;
}

static int append_tiny(store_mbox *mb, unsigned i, const char *kw, uint32_t *uid)
{
    size_t len;
    char *b = tiny(i, &len);
    const char *kws[] = { kw };
    store_new_msg m = { .data = b, .len = len, .internal_date = 1700000000,
                        .keywords = kw ? kws : NULL, .nkeywords = kw ? 1 : 0 };
    int rc = store_append(mb, &m, 1, uid);
    free(b);
    return rc;
}

/* The mailbox holds exactly the messages m<ids[0]>, m<ids[1]>, ... in order. */
static void check_msgs(store_mbox *mb, const unsigned *ids, size_t n, const char *when)
{
    store_snap *s = store_snap_get(mb);
    REQUIRE(s);
    if (store_snap_messages(s) != n)
        fprintf(stderr, "  %s: %u messages, want %zu\n", when, store_snap_messages(s), n);
    CHECK_EQ(store_snap_messages(s), n);
    for (uint32_t seq = 1; seq <= n && seq <= store_snap_messages(s); seq++) {
        const char *p = NULL;
        size_t got = 0, len;
        char *want = tiny(ids[seq - 1], &len);
        CHECK_EQ(store_snap_bytes(s, store_snap_uid_of_seq(s, seq), 0, SIZE_MAX, &p, &got), 0);
        if (!(p && got == len && memcmp(p, want, len) == 0)) {
            fprintf(stderr, "  %s: message %u is not m%u\n", when, seq, ids[seq - 1]);
            CHECK(0);
        }
        free(want);
    }
    store_snap_put(s);
}

struct box {
    char root[PATH_MAX], dir[PATH_MAX];
    store_user *u;
    store_mbox *mb;
};

static int box_open(struct box *b, const char *root, bool fresh)
{
    store_opts o;
    store_opts_default(&o);
    o.fsync = STORE_FSYNC_ALWAYS;
    test_pathf(b->root, sizeof b->root, "%s", root);
    int rc = store_user_open(root, "dana", &o, &b->u);
    if (rc < 0)
        return rc;
    store_mailbox_info info;
    if ((rc = store_mailbox_get(b->u, "INBOX", &info)) < 0)
        return rc;
    test_pathf(b->dir, sizeof b->dir, "%s/dana/m/%llu", root, (unsigned long long)info.id);
    free(info.name);
    (void)fresh;
    return store_mbox_open(b->u, "INBOX", &b->mb);
}

static void box_close(struct box *b)
{
    store_mbox_close(b->mb);
    store_user_close(b->u);
    b->mb = NULL;
    b->u = NULL;
}

static long long box_file(const struct box *b, const char *name)
{
    char p[PATH_MAX + 32];
    test_pathf(p, sizeof p, "%s/%s", b->dir, name);
    return file_size(p);
}

/* ---- a failing index or cache write (RLIMIT_FSIZE) ------------------ */

enum { FAIL_INDEX, FAIL_CACHE };

/* Fill the index to its allocated size with tiny messages, then make the
 * next append's index growth (FAIL_INDEX) or cache write (FAIL_CACHE) fail
 * while its log record still fits: the file-size limit lies above the
 * log's end but below what the failing file needs. */
static void failed_apply(int which)
{
    char *root = strdup(test_tmpdir(which == FAIL_INDEX ? "full-index" : "full-cache"));
    struct box b;
    REQUIRE_OK(box_open(&b, root, true));
    unsigned ids[1024];
    size_t n = 0;
    uint32_t uid;
    long long isz = box_file(&b, "index");
    REQUIRE(isz > 8192);
    size_t cap = (size_t)(isz - 8192) / 64;     /* entries the index holds */
    REQUIRE(cap < 1000);
    while (n < cap) {
        REQUIRE_OK(append_tiny(b.mb, (unsigned)n, n == 0 ? "$Old" : NULL, &uid));
        ids[n] = (unsigned)n;
        n++;
    }
    CHECK_EQ(box_file(&b, "index"), isz);       /* full, not grown yet */
    long long lsz = box_file(&b, "log.1"), csz = box_file(&b, "cache.1");
    REQUIRE(lsz > 0 && csz > 0);
    long long limit;
    if (which == FAIL_INDEX) {
        limit = (lsz > csz ? lsz : csz) + 4096;
        REQUIRE(limit < 2 * isz);               /* the grown index will not fit */
    } else {
        limit = csz + 8;                        /* no cache entry fits ... */
        REQUIRE(lsz + 4096 < limit);            /* ... but the log record does */
    }
    store_status st0, st1;
    REQUIRE_OK(store_mbox_status(b.mb, &st0));
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = (rlim_t)limit;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    int rc = append_tiny(b.mb, 900, "$New", &uid);
    lim.rlim_cur = old.rlim_cur;
    setrlimit(RLIMIT_FSIZE, &lim);
    fprintf(stderr, "  %s write refused: append returned %s\n",
            which == FAIL_INDEX ? "index" : "cache", strerror(-rc));
    CHECK(rc < 0);
    /* Nothing of it is left: not in the log, not in the counters. */
    CHECK_EQ(box_file(&b, "log.1"), lsz);
    REQUIRE_OK(store_mbox_status(b.mb, &st1));
    CHECK_EQ(st1.messages, st0.messages);
    CHECK_EQ(st1.uidnext, st0.uidnext);
    CHECK_EQ(st1.highestmodseq, st0.highestmodseq);
    store_snap *s = store_snap_get(b.mb);
    REQUIRE(s);
    CHECK_EQ(store_snap_keyword_index(s, "$New"), -ENOENT);
    CHECK(store_snap_keyword_index(s, "$Old") >= 0);
    store_snap_put(s);
    check_msgs(b.mb, ids, n, "after the failed append");

    /* The next write does not bring it back (the catch-up of the old code
     * applied the record the client had been told NO about). */
    REQUIRE_OK(append_tiny(b.mb, 901, "$Other", &uid));
    CHECK_EQ(uid, st0.uidnext);
    ids[n++] = 901;
    check_msgs(b.mb, ids, n, "after the next append");
    box_close(&b);

    /* Nor does a reopen, nor a rebuild from the log alone. */
    for (int pass = 0; pass < 2; pass++) {
        REQUIRE_OK(box_open(&b, root, false));
        check_msgs(b.mb, ids, n, pass ? "after a rebuild" : "after a reopen");
        s = store_snap_get(b.mb);
        REQUIRE(s);
        CHECK_EQ(store_snap_keyword_index(s, "$New"), -ENOENT);
        int kw = store_snap_keyword_index(s, "$Other");
        CHECK(kw >= 0);
        store_msg m;
        CHECK_EQ(store_snap_msg(s, uid, &m), 0);
        CHECK(kw >= 0 && (m.keywords & (1ull << kw)));
        store_snap_put(s);
        if (pass == 0) {
            char p[PATH_MAX + 16];
            test_pathf(p, sizeof p, "%s/index", b.dir);
            box_close(&b);
            CHECK(unlink(p) == 0);
        } else {
            box_close(&b);
        }
    }
    test_rm_rf(root);
    free(root);
}

static void test_index_write_fails(void)
{
    failed_apply(FAIL_INDEX);
}

static void test_cache_write_fails(void)
{
    failed_apply(FAIL_CACHE);
}

/* A MOVE whose copies are stored but whose expunge in the source is refused
 * (the source log may not grow) takes the copies back: no message in both
 * mailboxes after a NO, which a retry would duplicate (RFC 6851 3.3). */
static void test_move_expunge_fails(void)
{
    char *root = strdup(test_tmpdir("full-move"));
    struct box b;
    REQUIRE_OK(box_open(&b, root, true));
    REQUIRE_OK(store_mailbox_create(b.u, "Dst", 0));
    store_mbox *dst;
    REQUIRE_OK(store_mbox_open(b.u, "Dst", &dst));
    /* A big message that stays makes the source log long; the small one
     * moves. */
    size_t blen = 60000;
    char *big = malloc(blen);
    REQUIRE(big);
    memcpy(big, "Subject: big\r\n\r\n", 16);
    memset(big + 16, 'x', blen - 16);
    store_new_msg bm = { .data = big, .len = blen, .internal_date = 1700000000 };
    uint32_t buid, muid;
    REQUIRE_OK(store_append(b.mb, &bm, 1, &buid));
    free(big);
    REQUIRE_OK(append_tiny(b.mb, 1, NULL, &muid));
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 30000;     /* Dst's files fit, the source log does not */
    REQUIRE(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    store_range r = { muid, muid };
    store_uidlist su = {0}, du = {0};
    int rc = store_copy(b.mb, &r, 1, dst, true, &su, &du);
    lim.rlim_cur = old.rlim_cur;
    setrlimit(RLIMIT_FSIZE, &lim);
    fprintf(stderr, "  move with a refused expunge returned %s\n", strerror(-rc));
    CHECK(rc < 0);
    CHECK_EQ(su.n, 0);
    CHECK_EQ(du.n, 0);
    store_uidlist_free(&su);
    store_uidlist_free(&du);
    store_status st;
    REQUIRE_OK(store_mbox_status(dst, &st));
    CHECK_EQ(st.messages, 0);
    REQUIRE_OK(store_mbox_status(b.mb, &st));
    CHECK_EQ(st.messages, 2);
    store_mbox_close(dst);
    box_close(&b);
    REQUIRE_OK(box_open(&b, root, false));
    REQUIRE_OK(store_mailbox_status(b.u, "Dst", &st));
    CHECK_EQ(st.messages, 0);
    REQUIRE_OK(store_mbox_status(b.mb, &st));
    CHECK_EQ(st.messages, 2);
    box_close(&b);
    test_rm_rf(root);
    free(root);
}

/* ---- a full file system --------------------------------------------- */

/* Fill the file system holding dir: a file that takes every free block. */
static int fill(const char *dir, char *filler, size_t cap)
{
    test_pathf(filler, cap, "%s/filler", dir);
    int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -errno;
    static char buf[65536];
    for (size_t chunk = sizeof buf; chunk >= 512;) {
        ssize_t w = write(fd, buf, chunk);
        if (w < 0 && errno == ENOSPC)
            chunk /= 2;
        else if (w < 0)
            break;
    }
    int rc = fsync(fd) < 0 && errno != ENOSPC ? -errno : 0;
    close(fd);
    return rc;
}

/* A small tmpfs mounted for the test (root only; in a child of the test
 * runner, so a failure cannot leave the runner in the mount).  The store
 * on it is filled up: appends answer 0 or -ENOSPC and nothing else (the old
 * code died of SIGBUS here: the index grew with ftruncate and was written
 * through the map), every acknowledged message and nothing else is there
 * after a reopen, reading goes on while the disk is full, and writing works
 * again once there is room. */
static char fs_base[PATH_MAX];

static void test_full_filesystem(void)
{
    char mnt[PATH_MAX + 8], filler[PATH_MAX + 32];
    test_pathf(mnt, sizeof mnt, "%s/mnt", fs_base);
    REQUIRE(mkdir(mnt, 0700) == 0);
    if (mount("ringmail-test", mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=320k,mode=0700") < 0) {
        fprintf(stderr, "  skip: cannot mount a tmpfs at %s (%s); needs root\n", mnt,
                strerror(errno));
        return;
    }
    struct box b;
    REQUIRE_OK(box_open(&b, mnt, true));
    REQUIRE_OK(store_mailbox_create(b.u, "Other", 0));
    store_mbox *other;
    REQUIRE_OK(store_mbox_open(b.u, "Other", &other));
    uint32_t uid;
    unsigned ids[4096];
    size_t n = 0;
    /* 60 messages: the index (64 entries at first) must grow while the
     * disk is full, the case that raised SIGBUS. */
    for (unsigned i = 0; i < 60; i++, n++)
        REQUIRE_OK(append_tiny(b.mb, ids[n] = i, NULL, &uid));
    REQUIRE_OK(append_tiny(other, 7, NULL, &uid));
    store_mbox_close(other);
    REQUIRE_OK(store_mailbox_create(b.u, "Fresh", 0));     /* no index yet */
    store_mailbox_info oinfo;
    REQUIRE_OK(store_mailbox_get(b.u, "Other", &oinfo));
    free(oinfo.name);
    REQUIRE_OK(fill(mnt, filler, sizeof filler));

    /* Appends (each its own transaction) and keyword changes until the
     * disk turns every one down. */
    unsigned refused = 0, kw_refused = 0, kw_ok = 0;
    for (unsigned i = 100; i < 100 + 3000 && refused < 50; i++) {
        int rc = append_tiny(b.mb, i, NULL, &uid);
        if (rc == 0) {
            ids[n++] = i;
            refused = 0;
        } else {
            if (rc != -ENOSPC)
                fprintf(stderr, "  append on a full disk returned %d\n", rc);
            CHECK_EQ(rc, -ENOSPC);
            refused++;
        }
        if (i % 7 == 0) {
            char kw[32];
            snprintf(kw, sizeof kw, "kw%u", i % 50);
            const char *k[] = { kw };
            store_range r = { 1, UINT32_MAX };
            rc = store_flags(b.mb, &r, 1, STORE_FLAGS_ADD, STORE_F_SEEN, k, 1, 0, NULL,
                             NULL, NULL);
            CHECK(rc == 0 || rc == -ENOSPC || rc == -EMLINK);
            kw_ok += rc == 0;
            kw_refused += rc == -ENOSPC;
        }
        REQUIRE(n < 4000);
    }
    fprintf(stderr, "  full tmpfs: %zu messages stored, then refused; keyword changes %u "
            "stored, %u refused\n", n, kw_ok, kw_refused);
    CHECK(refused >= 50);
    check_msgs(b.mb, ids, n, "on the full disk");

    /* Creating needs room: a clear error, nothing half made. */
    CHECK_EQ(store_mailbox_create(b.u, "New", 0), -ENOSPC);
    box_close(&b);

    /* Other's index is damaged (its header, in place: no room is freed), so
     * opening it must rebuild from the log, and there is no room for that. */
    char ip[PATH_MAX + 64];
    test_pathf(ip, sizeof ip, "%s/dana/m/%llu/index", mnt, (unsigned long long)oinfo.id);
    int ifd = open(ip, O_WRONLY);
    CHECK(ifd >= 0 && pwrite(ifd, "XXXXXXXX", 8, 0) == 8);
    if (ifd >= 0)
        close(ifd);

    /* Reading goes on while the disk is full: open, list, status, also
     * of mailboxes whose index cannot be written (built in memory). */
    REQUIRE_OK(box_open(&b, mnt, false));
    check_msgs(b.mb, ids, n, "reopened on the full disk");
    store_mailbox_info *v = NULL;
    size_t nv = 0;
    CHECK_EQ(store_mailbox_list(b.u, &v, &nv), 0);
    CHECK_EQ(nv, 3);
    store_mailbox_info_free(v, nv);
    store_status st;
    CHECK_EQ(store_mailbox_status(b.u, "Other", &st), 0);
    CHECK_EQ(st.messages, 1);
    CHECK_EQ(store_mailbox_status(b.u, "Fresh", &st), 0);
    CHECK_EQ(st.messages, 0);
    CHECK_EQ(append_tiny(b.mb, 5000, NULL, &uid), -ENOSPC);
    other = NULL;
    CHECK_EQ(store_mbox_open(b.u, "Other", &other), 0);
    if (other) {
        const unsigned seven[] = { 7 };
        check_msgs(other, seven, 1, "Other, rebuilt in memory");
        CHECK_EQ(append_tiny(other, 5002, NULL, &uid), -ENOSPC);
        store_mbox_close(other);
    }
    box_close(&b);

    /* Room again: writing works, and exactly the acknowledged messages
     * are there. */
    CHECK(unlink(filler) == 0);
    REQUIRE_OK(box_open(&b, mnt, false));
    REQUIRE_OK(append_tiny(b.mb, 5001, NULL, &uid));
    ids[n++] = 5001;
    CHECK_EQ(store_mailbox_create(b.u, "New", 0), 0);
    REQUIRE_OK(store_mbox_open(b.u, "Other", &other));
    CHECK_EQ(append_tiny(other, 8, NULL, &uid), 0);
    const unsigned seven8[] = { 7, 8 };
    check_msgs(other, seven8, 2, "Other with room again");
    store_mbox_close(other);
    box_close(&b);
    REQUIRE_OK(box_open(&b, mnt, false));
    check_msgs(b.mb, ids, n, "after room was made");
    box_close(&b);
    if (umount2(mnt, MNT_DETACH) < 0)
        fprintf(stderr, "  umount %s: %s\n", mnt, strerror(errno));
}

int main(void)
{
    RUN_ISOLATED(test_index_write_fails, 300);
    RUN_ISOLATED(test_cache_write_fails, 300);
    RUN_ISOLATED(test_move_expunge_fails, 300);
    /* The directory is made here, so that the mount is undone even if the
     * child that runs the test dies (of the SIGBUS this test is about). */
    test_pathf(fs_base, sizeof fs_base, "%s", test_tmpdir("full-fs"));
    RUN_ISOLATED(test_full_filesystem, 300);
    char mnt[PATH_MAX + 8];
    test_pathf(mnt, sizeof mnt, "%s/mnt", fs_base);
    umount2(mnt, MNT_DETACH);   /* normally done already: EINVAL */
    test_rm_rf(fs_base);
    return test_summary();
}
