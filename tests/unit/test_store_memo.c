/* tests/unit/test_store_memo.c — values derived from a message's content,
 * remembered by entry position per generation (store/memo.c): unknown
 * until put, kept for later snapshots of the same generation (past the
 * first array's size too), and gone with the generation (compaction). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "store/store.h"
#include "tests/unit/store_testutil.h"

static int seek(store_cursor *c, uint32_t uid)
{
    store_msg m;
    return store_cursor_seek(c, uid, &m);
}

/* Expunge the first ten and compact (a new generation); a snapshot of it
 * with c on it. */
static store_snap *compacted(test_env *e, store_cursor *c)
{
    store_range r = {1, 10};
    if (store_expunge(e->mb, &r, 1, false, NULL, NULL) < 0 ||
        store_compact(e->mb, NULL, NULL) < 0)
        return NULL;
    store_snap *s = store_snap_get(e->mb);
    if (s)
        store_cursor_init(c, s);
    return s;
}

static void test_memo(void)
{
    test_env e;
    REQUIRE_OK(test_env_open(&e, "memo"));
    const unsigned n = 3000;    /* past the first array (1024 entries) */
    REQUIRE_OK(test_append_n(e.mb, n, 1000000000));
    store_snap *s = store_snap_get(e.mb);
    REQUIRE(s != NULL);
    store_cursor c;
    store_cursor_init(&c, s);
    int64_t v;
    REQUIRE(seek(&c, 1) == 1);
    CHECK(!store_cursor_memo_get(&c, &v));
    for (uint32_t uid = 1; uid <= n; uid += 7) {
        REQUIRE(seek(&c, uid) == 1);
        store_cursor_memo_put(&c, (int64_t)uid * 1000 - 5);
    }
    store_snap_put(s);
    /* A later snapshot of the same generation, after an append. */
    REQUIRE_OK(test_append_n(e.mb, 1, 1000000000));
    s = store_snap_get(e.mb);
    store_cursor_init(&c, s);
    unsigned hits = 0, wrong = 0;
    for (uint32_t uid = 1; uid <= n + 1; uid++) {
        REQUIRE(seek(&c, uid) == 1);
        bool got = store_cursor_memo_get(&c, &v);
        bool want = uid <= n && (uid - 1) % 7 == 0;
        hits += got;
        wrong += got != want || (got && v != (int64_t)uid * 1000 - 5);
    }
    CHECK_EQ(hits, (n + 6) / 7);
    CHECK_EQ(wrong, 0);
    /* INT64_MIN is "unknown": never stored. */
    REQUIRE(seek(&c, 2) == 1);
    store_cursor_memo_put(&c, INT64_MIN);
    CHECK(!store_cursor_memo_get(&c, &v));
    store_snap_put(s);
    /* Compaction makes a new generation: nothing known, positions move. */
    REQUIRE((s = compacted(&e, &c)) != NULL);
    REQUIRE(seek(&c, 15) == 1);
    CHECK(!store_cursor_memo_get(&c, &v));
    store_snap_put(s);
    test_env_close(&e);
}

/* Bytes: kept per kind, independent of the dates, the first put wins, the
 * size bound holds, and they go with the generation. */
static void test_memo_bytes(void)
{
    test_env e;
    REQUIRE_OK(test_env_open(&e, "memo-bytes"));
    const unsigned n = 2500;
    REQUIRE_OK(test_append_n(e.mb, n, 1000000000));
    store_snap *s = store_snap_get(e.mb);
    store_cursor c;
    store_cursor_init(&c, s);
    const uint8_t *p;
    size_t len;
    char buf[64];
    for (uint32_t uid = 1; uid <= n; uid += 3) {
        REQUIRE(seek(&c, uid) == 1);
        int k = snprintf(buf, sizeof buf, "<%u@example.org>", uid);
        store_cursor_memo_put_bytes(&c, STORE_MEMO_IDS, buf, (size_t)k);
        store_cursor_memo_put_bytes(&c, STORE_MEMO_IDS, "other", 5);  /* dropped */
    }
    REQUIRE(seek(&c, 4) == 1);
    store_cursor_memo_put_bytes(&c, STORE_MEMO_SUBJECT, "", 0);        /* empty is a value */
    static uint8_t big[STORE_MEMO_MAX_BYTES + 1];
    REQUIRE(seek(&c, 5) == 1);
    store_cursor_memo_put_bytes(&c, STORE_MEMO_SUBJECT, big, sizeof big);
    store_snap_put(s);

    s = store_snap_get(e.mb);
    store_cursor_init(&c, s);
    unsigned wrong = 0, hits = 0;
    int64_t v;
    for (uint32_t uid = 1; uid <= n; uid++) {
        REQUIRE(seek(&c, uid) == 1);
        bool got = store_cursor_memo_bytes(&c, STORE_MEMO_IDS, &p, &len);
        int k = snprintf(buf, sizeof buf, "<%u@example.org>", uid);
        hits += got;
        wrong += got != ((uid - 1) % 3 == 0) ||
                 (got && (len != (size_t)k || memcmp(p, buf, len)));
        wrong += store_cursor_memo_get(&c, &v);     /* dates: none put */
    }
    CHECK_EQ(hits, (n + 2) / 3);
    CHECK_EQ(wrong, 0);
    REQUIRE(seek(&c, 4) == 1);
    CHECK(store_cursor_memo_bytes(&c, STORE_MEMO_SUBJECT, &p, &len) && len == 0);
    REQUIRE(seek(&c, 5) == 1);
    CHECK(!store_cursor_memo_bytes(&c, STORE_MEMO_SUBJECT, &p, &len));
    store_snap_put(s);
    REQUIRE((s = compacted(&e, &c)) != NULL);
    REQUIRE(seek(&c, 13) == 1);
    CHECK(!store_cursor_memo_bytes(&c, STORE_MEMO_IDS, &p, &len));
    store_snap_put(s);
    test_env_close(&e);
}

/* Numbers for strings: dense from 0, the same bytes the same number in
 * every snapshot of the generation, the bytes given back; once the budget
 * is spent old strings are still found and new ones get -ENOSPC; a new
 * generation numbers afresh. */
static void test_memo_names(void)
{
    test_env e;
    REQUIRE_OK(test_env_open(&e, "memo-names"));
    REQUIRE_OK(test_append_n(e.mb, 20, 1000000000));
    store_snap *s = store_snap_get(e.mb);
    store_cursor c;
    store_cursor_init(&c, s);
    const unsigned n = 5000;    /* past the first table and chunk */
    char buf[64];
    uint32_t num;
    unsigned wrong = 0;
    for (unsigned i = 0; i < n; i++) {
        int k = snprintf(buf, sizeof buf, "%u@example.org", i);
        REQUIRE_OK(store_cursor_memo_name(&c, buf, (size_t)k, &num));
        wrong += num != i;
    }
    REQUIRE_OK(store_cursor_memo_name(&c, "", 0, &num));    /* "" is a string */
    CHECK_EQ(num, n);
    CHECK_EQ(wrong, 0);
    store_snap_put(s);
    REQUIRE_OK(test_append_n(e.mb, 1, 1000000000));
    s = store_snap_get(e.mb);
    store_cursor_init(&c, s);
    const uint8_t *p;
    size_t len;
    for (unsigned i = 0; i < n; i += 7) {
        int k = snprintf(buf, sizeof buf, "%u@example.org", i);
        REQUIRE_OK(store_cursor_memo_name(&c, buf, (size_t)k, &num));
        wrong += num != i;
        wrong += !store_cursor_memo_named(&c, i, &p, &len) || len != (size_t)k ||
                 memcmp(p, buf, len) != 0;
    }
    CHECK_EQ(wrong, 0);
    CHECK(store_cursor_memo_named(&c, n, &p, &len) && len == 0);
    CHECK(!store_cursor_memo_named(&c, n + 1, &p, &len));
    store_memo_set_budget(0);
    CHECK_EQ(store_cursor_memo_name(&c, "new@example.org", 15, &num), -ENOSPC);
    REQUIRE_OK(store_cursor_memo_name(&c, "42@example.org", 14, &num));
    CHECK_EQ(num, 42);
    store_memo_set_budget((uint64_t)512 << 20);
    REQUIRE_OK(store_cursor_memo_name(&c, "new@example.org", 15, &num));
    CHECK_EQ(num, n + 1);
    store_snap_put(s);
    REQUIRE((s = compacted(&e, &c)) != NULL);
    CHECK(!store_cursor_memo_named(&c, 0, &p, &len));
    REQUIRE_OK(store_cursor_memo_name(&c, "42@example.org", 14, &num));
    CHECK_EQ(num, 0);
    store_snap_put(s);
    test_env_close(&e);
}

int main(void)
{
    RUN(test_memo);
    RUN(test_memo_bytes);
    RUN(test_memo_names);
    return test_summary();
}
