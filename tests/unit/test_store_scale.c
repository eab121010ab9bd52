/* tests/unit/test_store_scale.c — a big mailbox: 100,000 messages of about
 * 1 KB (20,000 with RINGMAIL_TEST_QUICK or a sanitizer build), appended with
 * fsync=never in batches of 1000; reopen (timed, reported, not asserted);
 * seq/uid lookups at random points; a full listing of entries and cached
 * envelopes; the same after expunging a scattering of messages. */
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>

#include "store/store.h"
#include "tests/unit/store_testutil.h"
#include "tests/unit/testutil.h"

static uint64_t rng_state = 0xdeadbeefcafef00dull;
static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    return rng_state = x;
}

/* About 1 KB, a function of id; writes into buf (>= 2048 bytes). */
static size_t make_msg(unsigned id, char *buf)
{
    int n = snprintf(buf, 2048, "From: Bulk Sender <bulk@example.com>\r\nTo: many@example.org\r\n"
                     "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nSubject: scale %u\r\n"
                     "Message-ID: <%u@scale.example>\r\nX-Id: %u\r\n\r\n", id, id, id);
    size_t o = (size_t)n;
    size_t body = 800 + id % 200;
    uint32_t x = id * 2654435761u + 99;
    for (size_t i = 0; i < body; i++) {
        x = x * 1103515245u + 12345u;
        buf[o++] = (i % 72 == 71) ? '\n' : (char)('a' + (x >> 16) % 26);
        if (buf[o - 1] == '\n') {
            buf[o - 1] = '\r';
            buf[o++] = '\n';
        }
    }
    buf[o++] = '\r';
    buf[o++] = '\n';
    return o;
}

/* live[] are the live UIDs in order; ids_by_seq[] the message ids. */
static void check_lookups(store_snap *s, const uint32_t *live, const unsigned *ids, size_t n,
                          uint32_t maxuid, const char *when)
{
    CHECK_EQ(store_snap_messages(s), n);
    int bad = 0;
    char buf[2048];
    for (int k = 0; k < 5000; k++) {
        size_t i = (size_t)(rnd() % n);
        uint32_t seq = (uint32_t)i + 1;
        uint32_t u = store_snap_uid_of_seq(s, seq);
        uint32_t q = store_snap_seq_of_uid(s, live[i]);
        if (u != live[i] || q != seq) {
            if (bad++ < 3)
                fprintf(stderr, "  %s: seq %u -> uid %u (want %u), uid %u -> seq %u\n", when, seq,
                        u, live[i], live[i], q);
            continue;
        }
        if (k % 10 == 0) {
            const char *p;
            size_t got, len = make_msg(ids[i], buf);
            if (store_snap_bytes(s, u, 0, SIZE_MAX, &p, &got) != 0 || got != len ||
                memcmp(p, buf, len) != 0) {
                if (bad++ < 3)
                    fprintf(stderr, "  %s: uid %u bytes wrong\n", when, u);
            }
        }
    }
    /* edges */
    if (store_snap_uid_of_seq(s, 1) != live[0] || store_snap_uid_of_seq(s, (uint32_t)n) != live[n - 1] ||
        store_snap_uid_of_seq(s, (uint32_t)n + 1) != 0 || store_snap_seq_of_uid(s, maxuid + 1) != 0)
        bad++;
    /* random uids map to their rank, or 0 if not live */
    for (int k = 0; k < 2000; k++) {
        uint32_t uid = 1 + (uint32_t)(rnd() % maxuid);
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (live[mid] < uid)
                lo = mid + 1;
            else
                hi = mid;
        }
        uint32_t want = (lo < n && live[lo] == uid) ? (uint32_t)lo + 1 : 0;
        if (store_snap_seq_of_uid(s, uid) != want && bad++ < 3)
            fprintf(stderr, "  %s: seq_of_uid(%u) = %u, want %u\n", when, uid,
                    store_snap_seq_of_uid(s, uid), want);
    }
    CHECK_EQ(bad, 0);
}

static void full_listing(store_snap *s, const uint32_t *live, const unsigned *ids, size_t n,
                         const char *when)
{
    double t0 = test_now();
    uint32_t entries = store_snap_entries(s), prev = 0;
    size_t li = 0;
    int bad = 0;
    for (uint32_t pos = 0; pos < entries; pos++) {
        store_msg m;
        int rc = store_snap_entry(s, pos, &m);
        if (rc < 0 || m.uid <= prev) {
            if (bad++ < 3)
                fprintf(stderr, "  %s: entry %u: rc %d uid %u after %u\n", when, pos, rc, m.uid, prev);
            continue;
        }
        prev = m.uid;
        if (rc == 0)
            continue;
        if (li >= n || m.uid != live[li]) {
            if (bad++ < 3)
                fprintf(stderr, "  %s: live entry %zu is uid %u, want %u\n", when, li, m.uid,
                        li < n ? live[li] : 0);
            li++;
            continue;
        }
        store_cache c;
        store_envelope env;
        char want[40];
        snprintf(want, sizeof want, "scale %u", ids[li]);
        if (store_snap_cache(s, m.uid, &c) != 0 || store_cache_envelope(&c, 0, &env) != 0 ||
            !env.subject.p || env.subject.len != strlen(want) ||
            memcmp(env.subject.p, want, env.subject.len) != 0) {
            if (bad++ < 3)
                fprintf(stderr, "  %s: uid %u: cache envelope wrong\n", when, m.uid);
        }
        li++;
    }
    CHECK_EQ(li, n);
    CHECK_EQ(bad, 0);
    fprintf(stderr, "  %s: listing %u entries with envelopes took %.3f s\n", when, entries,
            test_now() - t0);
}

static void test_scale(void)
{
    const size_t N = test_quick() ? 20000 : 100000;
    const size_t B = 1000;
    char *root = strdup(test_tmpdir("scale"));
    store_user *u;
    store_mbox *mb;
    REQUIRE_OK(test_inbox_open(root, "big", STORE_FSYNC_NEVER, &u, &mb));
    uint32_t *live = calloc(N, sizeof *live);
    unsigned *ids = calloc(N, sizeof *ids);
    char *bufs = malloc(B * 2048);
    store_new_msg *m = calloc(B, sizeof *m);
    REQUIRE(live && ids && bufs && m);
    uint64_t total = 0, seen = 0;
    double t0 = test_now();
    for (size_t i = 0; i < N; i += B) {
        for (size_t k = 0; k < B; k++) {
            size_t len = make_msg((unsigned)(i + k), bufs + k * 2048);
            total += len;
            seen += k % 3 == 0;
            m[k] = (store_new_msg){ .data = bufs + k * 2048, .len = len,
                                    .internal_date = 1700000000 + (int64_t)(i + k),
                                    .flags = (k % 3 == 0) ? STORE_F_SEEN : 0 };
            ids[i + k] = (unsigned)(i + k);
        }
        int rc = store_append(mb, m, B, live + i);
        if (rc) {
            fprintf(stderr, "  append batch at %zu: %s\n", i, strerror(-rc));
            CHECK(0);
            goto out;
        }
    }
    double t_app = test_now() - t0;
    fprintf(stderr, "  appended %zu messages (%.1f MB) in %.2f s (%.0f msg/s)\n", N, total / 1e6,
            t_app, N / t_app);
    for (size_t i = 1; i < N; i++)
        if (live[i] <= live[i - 1]) {
            CHECK(live[i] > live[i - 1]);
            break;
        }
    uint32_t maxuid = live[N - 1];
    store_status st;
    REQUIRE_OK(store_mbox_status(mb, &st));
    CHECK_EQ(st.messages, N);
    CHECK_EQ(st.size, total);
    CHECK_EQ(st.unseen, N - seen);
    store_mbox_close(mb);
    store_user_close(u);

    /* reopen, timed */
    t0 = test_now();
    REQUIRE_OK(test_inbox_open(root, "big", STORE_FSYNC_NEVER, &u, &mb));
    store_snap *s = store_snap_get(mb);
    REQUIRE(s);
    fprintf(stderr, "  reopen (user + mailbox + snapshot) took %.4f s\n", test_now() - t0);
    check_lookups(s, live, ids, N, maxuid, "after reopen");
    full_listing(s, live, ids, N, "after reopen");
    store_snap_put(s);

    /* expunge a scattering (every 7th plus a random 1%) and check again */
    size_t w = 0, nexp = 0;
    store_range *rs = calloc(N, sizeof *rs);
    for (size_t i = 0; i < N; i++) {
        if (i % 7 == 3 || rnd() % 100 == 0)
            rs[nexp++] = (store_range){ live[i], live[i] };
        else {
            live[w] = live[i];
            ids[w] = ids[i];
            w++;
        }
    }
    t0 = test_now();
    store_uidlist ex = { 0 };
    REQUIRE_OK(store_expunge(mb, rs, nexp, false, &ex, NULL));
    fprintf(stderr, "  expunged %zu messages in one call in %.3f s\n", ex.n, test_now() - t0);
    CHECK_EQ(ex.n, nexp);
    store_uidlist_free(&ex);
    free(rs);
    s = store_snap_get(mb);
    REQUIRE(s);
    check_lookups(s, live, ids, w, maxuid, "after expunge");
    store_snap_put(s);
    store_mbox_close(mb);
    store_user_close(u);

    t0 = test_now();
    REQUIRE_OK(test_inbox_open(root, "big", STORE_FSYNC_NEVER, &u, &mb));
    s = store_snap_get(mb);
    REQUIRE(s);
    fprintf(stderr, "  reopen after expunge took %.4f s\n", test_now() - t0);
    check_lookups(s, live, ids, w, maxuid, "after expunge+reopen");
    full_listing(s, live, ids, w, "after expunge+reopen");
    store_snap_put(s);
out:
    store_mbox_close(mb);
    store_user_close(u);
    free(live);
    free(ids);
    free(bufs);
    free(m);
    test_rm_rf(root);
    free(root);
}

/* Messages of 0.5-3.5 MB, so that some straddle every power-of-two offset
 * of the log (where a map or a read window might be split): each must come
 * back as one contiguous range, whole and in parts, before and after a
 * reopen and a compaction. */
static void fill_big(char *p, size_t len, unsigned id)
{
    int n = snprintf(p, 200, "Subject: big %u\r\nX-Id: %u\r\n\r\n", id, id);
    uint64_t x = id * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = (size_t)n; i < len; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        p[i] = (i % 78 == 77) ? '\n' : (i % 78 == 76) ? '\r' : (char)(' ' + x % 90);
    }
}

static void test_large_messages(void)
{
    const unsigned N = test_quick() ? 12 : 30;
    char *root = strdup(test_tmpdir("scale-big"));
    store_user *u;
    store_mbox *mb;
    REQUIRE_OK(test_inbox_open(root, "big", STORE_FSYNC_NEVER, &u, &mb));
    size_t *lens = calloc(N, sizeof *lens);
    uint32_t *uids = calloc(N, sizeof *uids);
    char *buf = malloc(4 << 20), *want = malloc(4 << 20);
    REQUIRE(lens && uids && buf && want);
    for (unsigned i = 0; i < N; i++) {
        lens[i] = (512u << 10) + (size_t)(rnd() % (3u << 20)) + i;
        fill_big(buf, lens[i], i);
        store_new_msg m = { .data = buf, .len = lens[i], .internal_date = 1 };
        REQUIRE_OK(store_append(mb, &m, 1, &uids[i]));
        if (i == N / 2) {   /* expunge a few so that compaction moves things */
            store_range r = { uids[1], uids[2] };
            REQUIRE_OK(store_expunge(mb, &r, 1, false, NULL, NULL));
        }
    }
    for (int pass = 0; pass < 3; pass++) {
        store_snap *s = store_snap_get(mb);
        REQUIRE(s);
        int bad = 0;
        for (unsigned i = 0; i < N; i++) {
            if (i == 1 || i == 2)
                continue;
            fill_big(want, lens[i], i);
            const char *p;
            size_t got;
            if (store_snap_bytes(s, uids[i], 0, SIZE_MAX, &p, &got) != 0 || got != lens[i] ||
                memcmp(p, want, got) != 0) {
                if (bad++ < 3)
                    fprintf(stderr, "  pass %d: message %u (%zu bytes) wrong\n", pass, i, lens[i]);
                continue;
            }
            uint64_t off = rnd() % lens[i];
            size_t len = (size_t)(rnd() % (1u << 20));
            size_t exp = len < lens[i] - off ? len : lens[i] - off;
            if (store_snap_bytes(s, uids[i], off, len, &p, &got) != 0 || got != exp ||
                memcmp(p, want + off, got) != 0)
                bad++;
            store_msg m;
            if (store_snap_msg(s, uids[i], &m) != 0 || m.size != lens[i])
                bad++;
        }
        CHECK_EQ(bad, 0);
        CHECK_EQ(store_snap_messages(s), N - 2);
        store_snap_put(s);
        if (pass == 0) {
            store_mbox_close(mb);
            store_user_close(u);
            REQUIRE_OK(test_inbox_open(root, "big", STORE_FSYNC_NEVER, &u, &mb));
        } else if (pass == 1) {
            REQUIRE_OK(store_compact(mb, NULL, NULL));
        }
    }
    store_mbox_close(mb);
    store_user_close(u);
    free(lens);
    free(uids);
    free(buf);
    free(want);
    test_rm_rf(root);
    free(root);
}

int main(void)
{
    RUN_ISOLATED(test_scale, test_quick() ? 1500 : 600);
    RUN_ISOLATED(test_large_messages, test_quick() ? 1500 : 600);
    return test_summary();
}
