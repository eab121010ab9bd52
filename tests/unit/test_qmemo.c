/* tests/unit/test_qmemo.c — the kept SORT/THREAD answers (qmemo.c): an
 * answer comes back only for exactly its key (scope, every sequence number
 * and UID), the least recently used go first within the budget, one too
 * big is not kept, and an entry a reader holds outlives its eviction. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/server/qmemo.h"
#include "tests/unit/testutil.h"

static qmemo_key key(const char *scope, const uint32_t *seqs, const uint32_t *uids, size_t n)
{
    return (qmemo_key){.scope = scope, .scope_len = strlen(scope), .seqs = seqs,
                       .uids = uids, .n = n};
}

static int lookup(const qmemo_key *k, const char *want)
{
    const void *d;
    size_t len;
    qmemo_entry *e = qmemo_get(k, &d, &len);
    if (!e)
        return 0;
    int ok = len == strlen(want) && !memcmp(d, want, len);
    qmemo_release(e);
    return ok ? 1 : -1;
}

static void test_exact_key(void)
{
    qmemo_clear();
    uint32_t seqs[4] = {1, 2, 3, 4}, uids[4] = {10, 20, 30, 40};
    qmemo_key k = key("mbox-a", seqs, uids, 4);
    CHECK_EQ(lookup(&k, "x"), 0);
    qmemo_put(&k, "answer-a", 8);
    CHECK_EQ(lookup(&k, "answer-a"), 1);
    /* Another scope, the same messages. */
    qmemo_key k2 = key("mbox-b", seqs, uids, 4);
    CHECK_EQ(lookup(&k2, "answer-a"), 0);
    /* One UID differs in the middle (the hash does not see it). */
    uint32_t uids2[4] = {10, 21, 30, 40};
    qmemo_key k3 = key("mbox-a", seqs, uids2, 4);
    CHECK_EQ(lookup(&k3, "answer-a"), 0);
    /* One sequence number differs (dense when kept: 1..n). */
    uint32_t seqs2[4] = {1, 2, 4, 4};
    qmemo_key k4 = key("mbox-a", seqs2, uids, 4);
    CHECK_EQ(lookup(&k4, "answer-a"), 0);
    /* Fewer messages. */
    qmemo_key k5 = key("mbox-a", seqs, uids, 3);
    CHECK_EQ(lookup(&k5, "answer-a"), 0);
    /* Sequence numbers that are not 1..n are kept and compared. */
    uint32_t sparse[4] = {2, 5, 6, 9};
    qmemo_key k6 = key("mbox-a", sparse, uids, 4);
    qmemo_put(&k6, "answer-s", 8);
    CHECK_EQ(lookup(&k6, "answer-s"), 1);
    uint32_t sparse2[4] = {2, 5, 7, 9};
    qmemo_key k7 = key("mbox-a", sparse2, uids, 4);
    CHECK_EQ(lookup(&k7, "answer-s"), 0);
    CHECK_EQ(lookup(&k, "answer-a"), 1);
    qmemo_clear();
    size_t n, b;
    uint64_t h, m;
    qmemo_stats(&n, &b, &h, &m);
    CHECK(n == 0 && b == 0 && h >= 3 && m >= 6);
}

static void test_budget(void)
{
    qmemo_clear();
    /* Answers of a fifth of the budget: at most four fit (plus keys),
     * the least recently used go first. */
    size_t big = QMEMO_BUDGET / 5;
    char *data = malloc(big);
    REQUIRE(data != NULL);
    memset(data, 'z', big);
    uint32_t seq = 1, uid[8];
    qmemo_key k[8];
    char scope[8][8];
    for (int i = 0; i < 8; i++) {
        uid[i] = (uint32_t)i + 1;
        snprintf(scope[i], sizeof scope[i], "s%d", i);
        k[i] = key(scope[i], &seq, &uid[i], 1);
    }
    for (int i = 0; i < 4; i++)
        qmemo_put(&k[i], data, big);
    /* Touch 0: 1 is now the least recently used. */
    const void *d, *hdata;
    size_t len, hlen;
    qmemo_entry *held = qmemo_get(&k[0], &hdata, &hlen);
    REQUIRE(held != NULL);
    qmemo_put(&k[4], data, big);
    size_t n, b;
    uint64_t h, m;
    qmemo_stats(&n, &b, &h, &m);
    CHECK(b <= QMEMO_BUDGET);
    qmemo_entry *e;
    CHECK((e = qmemo_get(&k[1], &d, &len)) == NULL);
    qmemo_release(e);
    CHECK((e = qmemo_get(&k[4], &d, &len)) != NULL);
    qmemo_release(e);
    /* Evicted while held: its bytes stay readable until released (ASan
     * would see a use after free). */
    qmemo_clear();
    CHECK_EQ(hlen, big);
    CHECK(((const char *)hdata)[0] == 'z' && ((const char *)hdata)[big - 1] == 'z');
    qmemo_release(held);
    /* Bigger than a quarter of the budget: not kept. */
    char *huge = malloc(QMEMO_BUDGET / 4 + 1);
    REQUIRE(huge != NULL);
    memset(huge, 'h', QMEMO_BUDGET / 4 + 1);
    qmemo_put(&k[5], huge, QMEMO_BUDGET / 4 + 1);
    CHECK((e = qmemo_get(&k[5], &d, &len)) == NULL);
    qmemo_release(e);
    free(huge);
    free(data);
    qmemo_clear();
}

int main(void)
{
    RUN(test_exact_key);
    RUN(test_budget);
    return test_summary();
}
