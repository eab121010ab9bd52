/* tests/unit/test_names.c — store/names.c: dense numbers, the same string
 * the same number while the table grows (its slots moving over a few per
 * add), bytes given back, the empty string and binary bytes as strings. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "store/names.h"
#include "tests/unit/testutil.h"

static void test_grow_and_find(void)
{
    store_names t = {0};
    unsigned n = test_quick() ? 20000 : 200000, wrong = 0;
    char b[32];
    uint32_t num;
    for (unsigned i = 0; i < n; i++) {
        int k = snprintf(b, sizeof b, "<%u@x>", i);
        REQUIRE_OK(store_names_find(&t, b, (size_t)k, true, &num));
        wrong += num != i;
        /* an earlier string, found wherever it sits while the table grows */
        unsigned j = (i * 7919u) % (i + 1);
        k = snprintf(b, sizeof b, "<%u@x>", j);
        wrong += store_names_find(&t, b, (size_t)k, false, &num) != 0 || num != j;
        wrong += store_names_find(&t, b, (size_t)k, true, &num) != 0 || num != j;
    }
    CHECK_EQ(wrong, 0);
    CHECK_EQ(t.n, n);
    CHECK_EQ(store_names_find(&t, "<absent@x>", 10, false, &num), -ENOENT);
    const uint8_t *p;
    size_t len;
    for (unsigned i = 0; i < n; i += 97) {
        int k = snprintf(b, sizeof b, "<%u@x>", i);
        wrong += !store_names_get(&t, i, &p, &len) || len != (size_t)k || memcmp(p, b, len);
    }
    CHECK_EQ(wrong, 0);
    CHECK(!store_names_get(&t, n, &p, &len));
    REQUIRE_OK(store_names_find(&t, "", 0, true, &num));
    CHECK_EQ(num, n);
    REQUIRE_OK(store_names_find(&t, "a\0b", 3, true, &num));
    CHECK_EQ(num, n + 1);
    REQUIRE_OK(store_names_find(&t, "a", 1, true, &num));
    CHECK_EQ(num, n + 2);
    REQUIRE_OK(store_names_find(&t, "a\0b", 3, false, &num));
    CHECK_EQ(num, n + 1);
    CHECK(t.bytes > n * 8);
    store_names_free(&t);
    CHECK_EQ(t.n, 0);
}

int main(void)
{
    RUN(test_grow_and_find);
    return test_summary();
}
