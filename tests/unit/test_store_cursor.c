/* tests/unit/test_store_cursor.c — walking a snapshot by position
 * (store_cursor_*): steps, seeks forward and back, gaps left by expunges
 * (tombstones, then no entries at all after compaction), the end, and a
 * damaged cache blob or index entry read through a cursor exactly as
 * through store_snap_cache / store_snap_bytes. */
#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/format.h"
#include "store/stats.h"
#include "store/store.h"
#include "tests/unit/store_testutil.h"

/* Messages 1..n, UIDs 1..n; message i has the subject "subject-<i>". */
static int fill(test_env *e, unsigned n)
{
    for (unsigned i = 1; i <= n; i++) {
        char b[160];
        int len = snprintf(b, sizeof b,
                           "From: a@example.com\r\nSubject: subject-%02u\r\n\r\nbody %u\r\n",
                           i, i);
        store_new_msg m = { .data = b, .len = (size_t)len, .internal_date = 1600000000 };
        uint32_t uid;
        int r = store_append(e->mb, &m, 1, &uid);
        if (r < 0)
            return r;
        if (uid != i)
            return -EINVAL;
    }
    return 0;
}

static int expunge(test_env *e, uint32_t lo, uint32_t hi)
{
    store_range r = { lo, hi };
    return store_expunge(e->mb, &r, 1, false, NULL, NULL);
}

static bool subject_is(const store_cache *c, unsigned i)
{
    store_envelope env;
    char want[32];
    snprintf(want, sizeof want, "subject-%02u", i);
    return store_cache_envelope(c, 0, &env) == 0 && env.subject.p &&
           env.subject.len == strlen(want) && !memcmp(env.subject.p, want, env.subject.len);
}

static uint32_t here(const store_cursor *c)
{
    store_msg m;
    return store_cursor_msg(c, &m) < 0 ? 0 : m.uid;
}

static void test_empty(void)
{
    test_env e = { 0 };
    REQUIRE_OK(test_env_open(&e, "cursor-empty"));
    store_snap *s = store_snap_get(e.mb);
    REQUIRE(s);
    store_cursor c;
    store_cursor_init(&c, s);
    store_msg m;
    store_cache cache;
    const char *p;
    size_t n;
    CHECK_EQ(store_cursor_msg(&c, &m), -ENOENT);
    CHECK_EQ(store_cursor_next(&c, NULL), -ENOENT);
    CHECK_EQ(store_cursor_seek(&c, 1, NULL), -ENOENT);
    CHECK_EQ(c.pos, 0);
    CHECK_EQ(store_cursor_cache(&c, &cache), -ENOENT);
    CHECK_EQ(store_cursor_bytes(&c, 0, SIZE_MAX, &p, &n), -ENOENT);
    store_snap_put(s);
    test_env_close(&e);
}

/* Every step agrees with the lookups by UID, tombstones included. */
static void test_walk(void)
{
    test_env e = { 0 };
    REQUIRE_OK(test_env_open(&e, "cursor-walk"));
    REQUIRE_OK(fill(&e, 20));
    REQUIRE_OK(expunge(&e, 3, 5));
    REQUIRE_OK(expunge(&e, 10, 10));
    store_snap *s = store_snap_get(e.mb);
    REQUIRE(s);
    REQUIRE(store_snap_entries(s) == 20);
    store_cursor c;
    store_cursor_init(&c, s);
    store_msg m;
    int rc = store_cursor_msg(&c, &m);
    for (uint32_t uid = 1; uid <= 20; uid++) {
        bool gone = (uid >= 3 && uid <= 5) || uid == 10;
        CHECK_EQ(rc, gone ? 0 : 1);
        CHECK_EQ(m.uid, uid);
        CHECK_EQ(c.pos, uid - 1);
        store_msg want;
        REQUIRE(store_snap_lookup(s, uid, &want) == rc);
        CHECK(m.uid == want.uid && m.flags == want.flags && m.modseq == want.modseq &&
              m.size == want.size && m.hdr_len == want.hdr_len);
        /* cache and bytes by position are the ones by UID: same mapping */
        store_cache a, b;
        const char *pa, *pb;
        size_t na, nb;
        REQUIRE_OK(store_cursor_cache(&c, &a));
        REQUIRE_OK(store_snap_cache(s, uid, &b));
        CHECK(a.blob == b.blob && a.len == b.len);
        CHECK(subject_is(&a, uid));
        REQUIRE_OK(store_cursor_bytes(&c, 0, SIZE_MAX, &pa, &na));
        REQUIRE_OK(store_snap_bytes(s, uid, 0, SIZE_MAX, &pb, &nb));
        CHECK(pa == pb && na == nb && na == m.size);
        REQUIRE_OK(store_cursor_bytes(&c, m.hdr_len, 4, &pa, &na));
        CHECK(na == 4 && !memcmp(pa, "body", 4));
        REQUIRE_OK(store_cursor_bytes(&c, m.size + 10, 4, &pa, &na));
        CHECK_EQ(na, 0);
        store_msg nm = {0};
        rc = store_cursor_next(&c, &nm);
        if (rc >= 0) {
            REQUIRE(store_cursor_msg(&c, &m) == rc);
            CHECK(nm.uid == m.uid && nm.modseq == m.modseq);
        }
    }
    CHECK_EQ(rc, -ENOENT);
    CHECK_EQ(c.pos, 20);
    CHECK_EQ(store_cursor_next(&c, NULL), -ENOENT);     /* stays at the end */
    CHECK_EQ(c.pos, 20);
    store_snap_put(s);
    test_env_close(&e);
}

static void test_seek(void)
{
    test_env e = { 0 };
    REQUIRE_OK(test_env_open(&e, "cursor-seek"));
    REQUIRE_OK(fill(&e, 100));
    REQUIRE_OK(expunge(&e, 3, 5));
    REQUIRE_OK(expunge(&e, 40, 60));
    store_snap *s = store_snap_get(e.mb);
    REQUIRE(s);
    store_cursor c;
    store_cursor_init(&c, s);
    CHECK_EQ(store_cursor_seek(&c, 1, NULL), 1);      /* here already */
    CHECK_EQ(c.pos, 0);
    CHECK_EQ(store_cursor_seek(&c, 2, NULL), 1);      /* the next one */
    CHECK_EQ(store_cursor_seek(&c, 4, NULL), 0);      /* a tombstone: still there */
    CHECK_EQ(here(&c), 4);
    CHECK_EQ(store_cursor_seek(&c, 6, NULL), 1);
    CHECK_EQ(store_cursor_seek(&c, 90, NULL), 1);     /* far ahead: searched */
    CHECK_EQ(c.pos, 89);
    CHECK_EQ(store_cursor_seek(&c, 7, NULL), 1);      /* back */
    CHECK_EQ(c.pos, 6);
    CHECK_EQ(store_cursor_seek(&c, 7, NULL), 1);      /* same */
    CHECK_EQ(store_cursor_seek(&c, 101, NULL), -ENOENT);  /* past the last */
    CHECK_EQ(c.pos, 100);
    CHECK_EQ(store_cursor_seek(&c, 1000, NULL), -ENOENT); /* at the end, further */
    CHECK_EQ(c.pos, 100);
    CHECK_EQ(store_cursor_seek(&c, 100, NULL), 1);    /* back from the end */
    CHECK_EQ(c.pos, 99);
    CHECK_EQ(store_cursor_seek(&c, 0, NULL), -ENOENT);    /* no UID 0: at UID 1 */
    CHECK_EQ(c.pos, 0);
    store_snap_put(s);

    /* Compaction drops the tombstones: no entries in the gaps any more. */
    REQUIRE_OK(store_compact(e.mb, NULL, NULL));
    s = store_snap_get(e.mb);
    REQUIRE(s);
    REQUIRE(store_snap_entries(s) == 100 - 3 - 21);
    store_cursor_init(&c, s);
    CHECK_EQ(store_cursor_seek(&c, 4, NULL), -ENOENT);
    CHECK_EQ(here(&c), 6);              /* the next UID there is */
    CHECK_EQ(c.pos, 2);
    CHECK_EQ(store_cursor_seek(&c, 41, NULL), -ENOENT);
    CHECK_EQ(here(&c), 61);
    CHECK_EQ(store_cursor_seek(&c, 39, NULL), 1);
    CHECK_EQ(store_cursor_next(&c, NULL), 1);
    CHECK_EQ(here(&c), 61);
    /* every UID, in order, then the end; seek agrees with the lookups */
    store_cursor_init(&c, s);
    for (uint32_t uid = 0; uid <= 101; uid++) {
        store_msg m;
        int want = store_snap_lookup(s, uid, &m);
        store_msg got = {0};
        CHECK_EQ(store_cursor_seek(&c, uid, &got), want);
        if (want >= 0) {
            CHECK(got.uid == uid && got.size == m.size && got.flags == m.flags);
            store_cache cache;
            REQUIRE_OK(store_cursor_cache(&c, &cache));
            CHECK(subject_is(&cache, uid));
        }
    }
    store_snap_put(s);
    test_env_close(&e);
}

/* The mailbox's file whose name starts with prefix, in path. */
static bool find_file(const test_env *e, const char *prefix, char *path, size_t cap)
{
    const char *dir = store_mbox_dir(e->mb);
    DIR *d = opendir(dir);
    if (!d)
        return false;
    struct dirent *de;
    bool found = false;
    while (!found && (de = readdir(d)))
        if (!strncmp(de->d_name, prefix, strlen(prefix))) {
            snprintf(path, cap, "%s/%s", dir, de->d_name);
            found = true;
        }
    closedir(d);
    return found;
}

/* Flip one byte of a file at off; the maps see it (MAP_SHARED). */
static int flip(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    if (fd < 0)
        return -errno;
    unsigned char b;
    int rc = pread(fd, &b, 1, off) == 1 ? 0 : -EIO;
    b ^= 0x20;
    if (rc == 0 && pwrite(fd, &b, 1, off) != 1)
        rc = -EIO;
    close(fd);
    return rc;
}

static void test_damage(void)
{
    test_env e = { 0 };
    REQUIRE_OK(test_env_open(&e, "cursor-damage"));
    REQUIRE_OK(fill(&e, 8));
    char path[1024];

    /* A damaged cache blob: the message is parsed again, as by UID. */
    REQUIRE(find_file(&e, "cache.", path, sizeof path));
    FILE *f = fopen(path, "rb");
    REQUIRE(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    const char *hit = memmem(buf, n, "subject-05", 10);
    REQUIRE(hit);
    REQUIRE_OK(flip(path, (off_t)(hit - buf) + 8));
    store_snap *s = store_snap_get(e.mb);
    REQUIRE(s);
    store_cursor c;
    store_cursor_init(&c, s);
    REQUIRE(store_cursor_seek(&c, 5, NULL) == 1);
    store_cache cache, bycache;
    REQUIRE_OK(store_cursor_cache(&c, &cache));
    CHECK(subject_is(&cache, 5));      /* the original, not the flipped byte */
    REQUIRE_OK(store_snap_cache(s, 5, &bycache));
    CHECK(subject_is(&bycache, 5));
    CHECK(cache.blob != bycache.blob);  /* each parse has its own buffer */
    REQUIRE_OK(store_cursor_next(&c, NULL));
    REQUIRE_OK(store_cursor_cache(&c, &cache));
    CHECK(subject_is(&cache, 6));      /* the neighbour's blob is fine */
    store_snap_put(s);

    /* A damaged index entry (its log offset): refused, never followed. */
    REQUIRE(find_file(&e, "index", path, sizeof path));
    REQUIRE_OK(flip(path, IDX_HDR_SIZE + 2 * sizeof(struct idx_entry) +
                              offsetof(struct idx_entry, log_off) + 1));
    s = store_snap_get(e.mb);
    REQUIRE(s);
    store_cursor_init(&c, s);
    const char *p;
    size_t got;
    CHECK_EQ(store_cursor_seek(&c, 3, NULL), 1);     /* the flags word is still readable */
    CHECK_EQ(store_cursor_cache(&c, &cache), -EBADMSG);
    CHECK_EQ(store_cursor_bytes(&c, 0, SIZE_MAX, &p, &got), -EBADMSG);
    CHECK_EQ(store_snap_cache(s, 3, &cache), -EBADMSG);
    CHECK_EQ(store_snap_bytes(s, 3, 0, SIZE_MAX, &p, &got), -EBADMSG);
    CHECK_EQ(store_cursor_next(&c, NULL), 1);
    REQUIRE_OK(store_cursor_cache(&c, &cache));
    CHECK(subject_is(&cache, 4));
    CHECK_EQ(store_cursor_seek(&c, 3, NULL), 1);     /* back: checked again */
    CHECK_EQ(store_cursor_bytes(&c, 0, SIZE_MAX, &p, &got), -EBADMSG);
    store_snap_put(s);
    REQUIRE_OK(flip(path, IDX_HDR_SIZE + 2 * sizeof(struct idx_entry) +
                              offsetof(struct idx_entry, log_off) + 1));
    test_env_close(&e);
}

/* A cache blob is validated on its first read in a process (store/seen.c)
 * and taken as validated after that, so a listing does not check every
 * blob's CRC and references again on each read.  Damage is still caught by
 * the first read of a process that opens the mailbox afresh. */
static void test_validated_once(void)
{
    test_env e = { 0 };
    REQUIRE_OK(test_env_open(&e, "cursor-once"));
    REQUIRE_OK(fill(&e, 8));
    store_snap *s = store_snap_get(e.mb);
    REQUIRE(s);
    store_cursor c;
    store_cursor_init(&c, s);
    store_cache cache;
    for (int r = 1; r == 1; r = store_cursor_next(&c, NULL)) {
        REQUIRE_OK(store_cursor_cache(&c, &cache));     /* validated here */
        CHECK(subject_is(&cache, here(&c)));
    }
    store_snap_put(s);

    /* Change one byte of message 5's subject beneath the running store. */
    char path[1024];
    REQUIRE(find_file(&e, "cache.", path, sizeof path));
    FILE *f = fopen(path, "rb");
    REQUIRE(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    const char *hit = memmem(buf, n, "subject-05", 10);
    REQUIRE(hit);
    REQUIRE_OK(flip(path, (off_t)(hit - buf) + 8));

    /* Same generation, same process: the blob is not checked again, so the
     * changed byte shows (this is what proves the CRC is not recomputed). */
    s = store_snap_get(e.mb);
    REQUIRE(s);
    store_cursor_init(&c, s);
    REQUIRE(store_cursor_seek(&c, 5, NULL) == 1);
    REQUIRE_OK(store_cursor_cache(&c, &cache));
    CHECK(!subject_is(&cache, 5));
    store_envelope env;
    REQUIRE_OK(store_cache_envelope(&cache, 0, &env));
    CHECK(env.subject.len == 10 && !memcmp(env.subject.p, "subject-\x10" "5", 10));
    store_snap_put(s);

    /* Opened afresh (a new process, or after a restart): the first read
     * validates, finds the damage and parses the message again. */
    test_inbox_close(e.u, e.mb);
    e.u = NULL;
    e.mb = NULL;
    REQUIRE_OK(test_inbox_open(e.root, "user", STORE_FSYNC_NEVER, &e.u, &e.mb));
    s = store_snap_get(e.mb);
    REQUIRE(s);
    store_cursor_init(&c, s);
    REQUIRE(store_cursor_seek(&c, 5, NULL) == 1);
    REQUIRE_OK(store_cursor_cache(&c, &cache));
    CHECK(subject_is(&cache, 5));
    REQUIRE_OK(store_snap_cache(s, 5, &cache));
    CHECK(subject_is(&cache, 5));
    store_snap_put(s);
    test_env_close(&e);
}

/* store_snap_live: the live UIDs and flags of a range of positions, in
 * blocks of any size, skipping tombstones; the position moves past what was
 * read. */
static void test_live_blocks(void)
{
    test_env e = { 0 };
    REQUIRE_OK(test_env_open(&e, "cursor-live"));
    REQUIRE_OK(fill(&e, 10));
    REQUIRE_OK(expunge(&e, 3, 4));
    REQUIRE_OK(expunge(&e, 9, 9));
    store_range r = { 2, 2 };
    REQUIRE_OK(store_flags(e.mb, &r, 1, STORE_FLAGS_ADD, STORE_F_SEEN, NULL, 0, 0, NULL, NULL,
                           NULL));
    store_snap *s = store_snap_get(e.mb);
    REQUIRE(s);
    static const uint32_t want[] = { 1, 2, 5, 6, 7, 8, 10 };
    for (uint32_t blk = 1; blk <= 11; blk++) {
        uint32_t uids[16], flags[16], pos = 0, got = 0, end = store_snap_entries(s);
        while (pos < end) {
            uint32_t p0 = pos;
            size_t k = store_snap_live(s, &pos, pos + blk > end ? end : pos + blk, uids + got,
                                       flags + got, 16 - got);
            REQUIRE(pos > p0);
            got += (uint32_t)k;
        }
        CHECK_EQ(got, 7);
        CHECK(!memcmp(uids, want, sizeof want));
        for (uint32_t i = 0; i < got; i++)
            CHECK_EQ(flags[i] & STORE_F_SEEN, uids[i] == 2 ? STORE_F_SEEN : 0);
    }
    /* n bounds what is written; end past the entries is clipped */
    uint32_t uids[4], pos = 0;
    CHECK_EQ(store_snap_live(s, &pos, 1000, uids, NULL, 2), 2);
    CHECK_EQ(pos, 2);
    CHECK_EQ(store_snap_live(s, &pos, 1000, uids, NULL, 4), 4);
    CHECK_EQ(uids[0], 5);
    store_snap_put(s);
    test_env_close(&e);
}

/* Read-ahead covers the entries from the cursor on, as many as fit in
 * the window, in either file; none past the end. */
static void test_readahead(void)
{
    test_env e = { 0 };
    REQUIRE_OK(test_env_open(&e, "cursor-ra"));
    REQUIRE_OK(fill(&e, 50));
    store_snap *s = store_snap_get(e.mb);
    REQUIRE(s);
    store_cursor c;
    store_cursor_init(&c, s);
    CHECK_EQ(store_cursor_readahead(&c, STORE_RA_BODY, STORE_RA_WINDOW), 50);
    CHECK_EQ(store_cursor_readahead(&c, STORE_RA_CACHE, STORE_RA_WINDOW), 50);
    store_msg m;
    REQUIRE(store_cursor_seek(&c, 41, &m) == 1);
    CHECK_EQ(store_cursor_readahead(&c, STORE_RA_BODY, STORE_RA_WINDOW), 10);
    /* a window smaller than two messages holds at most one */
    CHECK(store_cursor_readahead(&c, STORE_RA_BODY, m.size + 70) <= 1);
    CHECK_EQ(store_cursor_readahead(&c, STORE_RA_BODY, 1), 0);
    REQUIRE(store_cursor_seek(&c, 51, &m) < 0);
    CHECK_EQ(store_cursor_readahead(&c, STORE_RA_BODY, STORE_RA_WINDOW), 0);
    store_snap_put(s);
    test_env_close(&e);
}

/* Every file under dir written out and dropped from the page cache (the
 * kernel drops clean pages nobody maps, as it does under memory
 * pressure).  Returns how many files it dropped. */
static int drop_cached(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat st;
        if (stat(p, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            n += drop_cached(p);
        } else if (S_ISREG(st.st_mode)) {
            int fd = open(p, O_RDONLY | O_CLOEXEC);
            if (fd >= 0) {
                fdatasync(fd);
                if (posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0)
                    n++;
                close(fd);
            }
        }
    }
    closedir(d);
    return n;
}

/* Whether the page cache holds byte 0 of the file's last quarter: a file
 * system that keeps everything in memory (tmpfs) cannot drop anything. */
static bool file_dropped(const char *dir)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, "probe");
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return false;
    static char page[1 << 16];
    memset(page, 'x', sizeof page);
    bool gone = false;
    if (write(fd, page, sizeof page) == (ssize_t)sizeof page && fdatasync(fd) == 0 &&
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0) {
        void *m = mmap(NULL, sizeof page, PROT_READ, MAP_SHARED, fd, 0);
        unsigned char v[16];
        if (m != MAP_FAILED) {
            gone = mincore(m, sizeof page, v) == 0 && !(v[15] & 1);
            munmap(m, sizeof page);
        }
    }
    close(fd);
    unlink(p);
    return gone;
}

/* A fresh mailbox whose files the page cache can drop; false (and
 * nothing open) where it cannot (tmpfs): the test is skipped. */
static bool open_droppable(test_env *e, const char *tag)
{
    int rc = test_env_open(e, tag);
    if (rc < 0) {
        CHECK_EQ(rc, 0);
        return false;
    }
    if (file_dropped(e->root))
        return true;
    printf("  skipped: this file system keeps every page in memory\n");
    test_env_close(e);
    return false;
}

/* A message of about 6 KB: 250 of them fill 1.5 MB of log. */
static int fill_big(test_env *e, unsigned n)
{
    static char b[8192];
    for (unsigned i = 1; i <= n; i++) {
        int len = snprintf(b, sizeof b, "From: a@example.com\r\nSubject: subject-%02u\r\n\r\n",
                           i);
        while (len < 6000)
            len += snprintf(b + len, sizeof b - (size_t)len, "line %u of message %u\r\n",
                            (unsigned)len, i);
        store_new_msg m = { .data = b, .len = (size_t)len, .internal_date = 1600000000 };
        int r = store_append(e->mb, &m, 1, NULL);
        if (r < 0)
            return r;
    }
    return 0;
}

/* store_cursor_resident: the bytes of a mailbox whose files the kernel
 * dropped are found not in memory, a store_fault brings them in (and
 * some beyond: the next message needs none), the look then says they
 * are there, and what is read is the message. */
static void test_resident(void)
{
    test_env e = { 0 };
    if (!open_droppable(&e, "cursor-resident"))
        return;
    REQUIRE_OK(fill_big(&e, 250));
    test_inbox_close(e.u, e.mb);
    CHECK(drop_cached(e.root) >= 3);
    REQUIRE_OK(test_inbox_open(e.root, "user", STORE_FSYNC_NEVER, &e.u, &e.mb));
    static store_stats st;
    store_stats_attach(&st);

    store_snap *s = store_snap_get(e.mb);
    REQUIRE(s);
    store_cursor c;
    store_cursor_init(&c, s);
    store_resident body = { 0 }, cache = { 0 };
    store_msg m;
    REQUIRE(store_cursor_seek(&c, 120, &m) == 1);
    store_fault *f = NULL;
    CHECK_EQ(store_cursor_resident(&c, STORE_RA_BODY, STORE_ALL_BYTES, &body, &f), -EWOULDBLOCK);
    REQUIRE(f);
    CHECK(store_fault_bytes(f) >= 128 * 1024);
    store_fault_run(f);
    store_fault_free(f);
    f = NULL;
    CHECK_EQ(store_cursor_resident(&c, STORE_RA_BODY, STORE_ALL_BYTES, &body, &f), 0);
    CHECK(!f);
    const char *bytes;
    size_t got;
    REQUIRE_OK(store_cursor_bytes(&c, 0, SIZE_MAX, &bytes, &got));
    CHECK_EQ(got, m.size);
    CHECK(got > 40 && !memcmp(bytes + 21, "Subject: subject-120", 20));
    /* the fault read on: the next message is there, found without a look */
    REQUIRE(store_cursor_seek(&c, 121, &m) == 1);
    CHECK_EQ(store_cursor_resident(&c, STORE_RA_BODY, STORE_ALL_BYTES, &body, &f), 0);
    CHECK_EQ(atomic_load(&st.faults_moved), 1);
    CHECK(atomic_load(&st.faults_moved_bytes) >= 128 * 1024);

    /* the cache blobs likewise */
    REQUIRE(store_cursor_seek(&c, 60, &m) == 1);
    CHECK_EQ(store_cursor_resident(&c, STORE_RA_CACHE, STORE_ALL_BYTES, &cache, &f), -EWOULDBLOCK);
    REQUIRE(f);
    store_fault_run(f);
    store_fault_free(f);
    f = NULL;
    CHECK_EQ(store_cursor_resident(&c, STORE_RA_CACHE, STORE_ALL_BYTES, &cache, &f), 0);
    store_cache ch;
    REQUIRE_OK(store_cursor_cache(&c, &ch));
    CHECK(subject_is(&ch, 60));
    CHECK_EQ(atomic_load(&st.faults_moved), 2);

    /* past the last message: nothing to read, nothing to wait for */
    REQUIRE(store_cursor_seek(&c, 251, &m) < 0);
    CHECK_EQ(store_cursor_resident(&c, STORE_RA_BODY, STORE_ALL_BYTES, &body, &f), 0);
    CHECK(!f);
    store_stats_attach(NULL);
    store_snap_put(s);
    test_env_close(&e);
}

/* store_snap_entries_resident: index entries between the few an open
 * looks at are found not in memory, and a fault brings them in. */
static void test_entries_resident(void)
{
    test_env e = { 0 };
    if (!open_droppable(&e, "cursor-entries"))
        return;
    /* 100,000 entries: 4.8 MB of index, in batches (one call each) */
    enum { N = 100000, BATCH = 500 };
    static char bodies[BATCH][64];
    static store_new_msg m[BATCH];
    for (unsigned i = 0; i < N; i += BATCH) {
        for (unsigned k = 0; k < BATCH; k++) {
            int len = snprintf(bodies[k], sizeof bodies[k], "Subject: s%u\r\n\r\nb\r\n", i + k);
            m[k] = (store_new_msg){.data = bodies[k], .len = (size_t)len,
                                   .internal_date = 1600000000};
        }
        REQUIRE_OK(store_append(e.mb, m, BATCH, NULL));
    }
    test_inbox_close(e.u, e.mb);
    CHECK(drop_cached(e.root) >= 3);
    REQUIRE_OK(test_inbox_open(e.root, "user", STORE_FSYNC_NEVER, &e.u, &e.mb));
    store_snap *s = store_snap_get(e.mb);
    REQUIRE(s);
    /* the open read the index around the 16 entries it looked at (every
     * 300 KB): what it did not map is dropped again */
    drop_cached(e.root);
    store_resident known = { 0 };
    store_fault *f = NULL;
    /* 1,000 entries (12 pages) well away from those 16 */
    uint32_t from = N / 32 - 500;
    CHECK_EQ(store_snap_entries_resident(s, from, from + 1000, &known, &f), -EWOULDBLOCK);
    REQUIRE(f);
    CHECK(store_fault_bytes(f) >= 1000 * 48);
    store_fault_run(f);
    store_fault_free(f);
    f = NULL;
    CHECK_EQ(store_snap_entries_resident(s, from, from + 1000, &known, &f), 0);
    CHECK(!f);
    uint32_t pos = from, uids[1000];
    CHECK_EQ(store_snap_live(s, &pos, from + 1000, uids, NULL, 1000), 1000);
    CHECK_EQ(uids[0], from + 1);
    /* past the end: nothing */
    CHECK_EQ(store_snap_entries_resident(s, N, N + 10, &known, &f), 0);
    store_snap_put(s);
    test_env_close(&e);
}

int main(void)
{
    RUN(test_empty);
    RUN(test_walk);
    RUN(test_seek);
    RUN(test_damage);
    RUN(test_validated_once);
    RUN(test_live_blocks);
    RUN(test_readahead);
    RUN(test_resident);
    RUN(test_entries_resident);
    return test_summary();
}
