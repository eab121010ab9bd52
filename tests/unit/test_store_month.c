/* tests/unit/test_store_month.c — the one table of month abbreviations:
 * names out, any case in, nothing else accepted. */
#include <string.h>

#include "store/store.h"
#include "testutil.h"

static void test_month(void)
{
    static const char *const want[12] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    for (int m = 0; m < 12; m++) {
        CHECK(!strcmp(store_month_abbr(m), want[m]));
        CHECK_EQ(store_month_parse(want[m], 3), m);
        char up[4] = { want[m][0], (char)(want[m][1] - 32), (char)(want[m][2] - 32), 0 };
        CHECK_EQ(store_month_parse(up, 3), m);
        char low[4] = { (char)(want[m][0] + 32), want[m][1], want[m][2], 0 };
        CHECK_EQ(store_month_parse(low, 3), m);
    }
    CHECK(store_month_abbr(-1) == NULL && store_month_abbr(12) == NULL);
    CHECK_EQ(store_month_parse("Ja", 2), -1);
    CHECK_EQ(store_month_parse("Jax", 3), -1);
    CHECK_EQ(store_month_parse("J@n", 3), -1);
    CHECK_EQ(store_month_parse("January", 7), 0);     /* the first three bytes */
}

int main(void)
{
    RUN(test_month);
    return test_summary();
}
