/* tests/unit/test_thread_store.c — THREAD=REFERENCES over a real store:
 * the keys come through imap_sort_set_add, as numbers the store gives per
 * generation (store_cursor_memo_name).  The answer must not depend on
 * where the numbers came from: the store's, the set's own (the memo
 * budget spent from the start), or both (spent half way, when the set
 * renumbers what it has), nor on whether the keys were remembered. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/search/sort.h"
#include "tests/unit/store_testutil.h"
#include "tests/unit/testutil.h"

#define N 400

static unsigned rnd(unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return *seed >> 8;
}

/* Threads with replies, missing parents, duplicate and absent IDs,
 * In-Reply-To alone, and subjects that merge threads. */
static void fill(store_mbox *mb)
{
    static const char *const subj[] = {"a", "Re: a", "b", "Fwd: b", "", "[l] a", "c (fwd)",
                                       "Re: c"};
    unsigned seed = 777;
    for (unsigned i = 0; i < N; i++) {
        char b[512], refs[160] = "";
        unsigned r = rnd(&seed);
        for (unsigned k = r % 4; k > 0; k--) {
            size_t l = strlen(refs);
            snprintf(refs + l, sizeof refs - l, " <%u@t>", rnd(&seed) % (N + 40));
        }
        int len = snprintf(b, sizeof b,
                           "From: a@example.com\r\nSubject: %s\r\n"
                           "Date: %u Jan 2020 10:%02u:00 +0000\r\n"
                           "%s%u@t>\r\n%s%s\r\n\r\nbody\r\n",
                           subj[rnd(&seed) % 8], 1 + rnd(&seed) % 28, rnd(&seed) % 60,
                           r & 16 ? "X-No-Id: <" : "Message-ID: <", rnd(&seed) % (N + 20),
                           r & 32 ? "In-Reply-To:" : "References:", refs[0] ? refs : " <none@t>");
        store_new_msg m = {.data = b, .len = (size_t)len, .internal_date = 1000000000 + i};
        REQUIRE_OK(store_append(mb, &m, 1, NULL));
    }
}

/* UID THREAD REFERENCES over UIDs lo..hi, as the server builds it, in
 * *out (NUL-terminated; NULL on failure). */
static void thread_into(store_mbox *mb, uint32_t lo, uint32_t hi, bool *local, char **out)
{
    *out = NULL;
    store_snap *snap = store_snap_get(mb);
    REQUIRE(snap != NULL);
    store_cursor cur;
    store_cursor_init(&cur, snap);
    imap_sort_set s = {0};
    s.need = imap_thread_need(IMAP_THREAD_REFERENCES);
    REQUIRE_OK(imap_sort_set_expect(&s, hi - lo + 1));
    for (uint32_t uid = lo; uid <= hi; uid++)
        REQUIRE_OK(imap_sort_set_add(&s, &cur, uid - lo + 1, uid));
    imap_out o = {0};
    REQUIRE_OK(imap_thread_render(&s, IMAP_THREAD_REFERENCES, true, &o));
    imap_out_add(&o, "", 1);
    REQUIRE(!o.err);
    if (local)
        *local = s.ids_local;
    imap_sort_set_free(&s);
    store_snap_put(snap);
    *out = o.p;
}

static char *thread(store_mbox *mb, uint32_t lo, uint32_t hi, bool *local)
{
    char *p;
    thread_into(mb, lo, hi, local, &p);
    if (!p)
        abort();    /* thread_into said why */
    return p;
}

/* A new generation: nothing numbered, nothing remembered. */
static void regenerate(store_mbox *mb)
{
    REQUIRE_OK(store_compact(mb, NULL, NULL));
}

static void test_numbers_anywhere(void)
{
    test_env e;
    REQUIRE_OK(test_env_open(&e, "thread-store"));
    fill(e.mb);
    bool local;
    /* the store's numbers, derived from the cache, then remembered */
    char *want = thread(e.mb, 1, N, &local);
    CHECK(!local);
    CHECK(strlen(want) > N);
    char *got = thread(e.mb, 1, N, &local);
    CHECK(!local);
    CHECK(strcmp(got, want) == 0);
    free(got);

    /* the budget spent from the start: the set's own numbers */
    regenerate(e.mb);
    store_memo_set_budget(0);
    got = thread(e.mb, 1, N, &local);
    store_memo_set_budget((uint64_t)512 << 20);
    CHECK(local);
    CHECK(strcmp(got, want) == 0);
    free(got);

    /* half numbered and remembered, then the budget spent: the set
     * starts with the store's numbers and renumbers them */
    regenerate(e.mb);
    free(thread(e.mb, 1, N / 2, NULL));
    store_memo_set_budget(0);
    got = thread(e.mb, 1, N, &local);
    char *again = thread(e.mb, 1, N, NULL);
    store_memo_set_budget((uint64_t)512 << 20);
    CHECK(local);
    CHECK(strcmp(got, want) == 0);
    CHECK(strcmp(again, want) == 0);
    free(got);
    free(again);
    free(want);
    test_env_close(&e);
}

int main(void)
{
    RUN(test_numbers_anywhere);
    return test_summary();
}
