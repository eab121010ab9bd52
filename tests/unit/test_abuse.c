/* tests/unit/test_abuse.c — the login accounting: checks admitted per
 * address, penalties per user and per address that hold back the next
 * check (and reserve one period per admitted check), the cap on how far
 * ahead a check may be put, trusted addresses. */
#include <stdint.h>

#include "core/auth/abuse.h"
#include "testutil.h"

static void t_pending_per_address(void)
{
    abuse *a;
    REQUIRE_OK(abuse_new("", &a));
    uint64_t start, now = abuse_now_ms();
    CHECK_EQ(abuse_check_begin(a, "10.0.0.1", "u1", 100, 2, &start), 0);
    CHECK(start >= now && start < now + 50);
    CHECK_EQ(abuse_check_begin(a, "10.0.0.1", "u2", 100, 2, &start), 0);
    CHECK_EQ(abuse_check_begin(a, "10.0.0.1", "u3", 100, 2, &start), -EAGAIN);
    /* another address, and an address not counted (trusted): unaffected */
    CHECK_EQ(abuse_check_begin(a, "10.0.0.2", "u3", 100, 2, &start), 0);
    for (int i = 0; i < 10; i++)
        CHECK_EQ(abuse_check_begin(a, NULL, "u4", 100, 2, &start), 0);
    abuse_check_end(a, "10.0.0.1", "u1");
    CHECK_EQ(abuse_check_begin(a, "10.0.0.1", "u3", 100, 2, &start), 0);
    abuse_free(a);
}

static void t_penalty_holds_next_check(void)
{
    abuse *a;
    REQUIRE_OK(abuse_new("", &a));
    uint64_t start, now = abuse_now_ms();
    unsigned n = 0;
    /* a failure of user "v" from one address ... */
    CHECK_EQ(abuse_login_failed(a, "10.0.0.1", "v", 100, 0, &n), 100);
    CHECK_EQ(n, 1);
    /* ... holds back v's next check from anywhere, and the address's */
    CHECK_EQ(abuse_check_begin(a, "10.0.0.9", "v", 100, 0, &start), 0);
    CHECK(start >= now + 100);
    uint64_t first = start;
    /* each admitted check reserves a period: the next waits for it */
    CHECK_EQ(abuse_check_begin(a, "10.0.0.8", "v", 100, 0, &start), 0);
    CHECK(start >= first + 100);
    CHECK_EQ(abuse_check_begin(a, "10.0.0.1", "w", 100, 0, &start), 0);
    CHECK(start >= now + 100);
    /* not counted (trusted) address, other user: at once */
    CHECK_EQ(abuse_check_begin(a, NULL, "x", 100, 0, &start), 0);
    CHECK(start < now + 100);
    /* the penalty doubles per failure in a row */
    CHECK_EQ(abuse_login_failed(a, NULL, "v", 100, 0, &n), 200);
    CHECK_EQ(abuse_login_failed(a, NULL, "v", 100, 0, &n), 400);
    CHECK_EQ(n, 3);
    /* after_ms: the penalty counts from later (a stand-in check's end) */
    now = abuse_now_ms();
    CHECK_EQ(abuse_login_failed(a, NULL, "y", 100, 500, &n), 100);
    CHECK_EQ(abuse_check_begin(a, NULL, "y", 100, 0, &start), 0);
    CHECK(start >= now + 600);
    /* success clears the user's count and penalty */
    abuse_login_ok(a, NULL, "v");
    now = abuse_now_ms();
    CHECK_EQ(abuse_check_begin(a, NULL, "v", 100, 0, &start), 0);
    CHECK(start < now + 100);
    CHECK_EQ(abuse_login_failed(a, NULL, "v", 100, 0, &n), 100);
    CHECK_EQ(n, 1);
    abuse_free(a);
}

/* A few checks of one user at once go ahead (a client's parallel
 * logins); past ABUSE_FREE_CHECKS each reserves a period, as after a
 * failure, and ending checks frees the slots again. */
static void t_parallel_checks_of_one_user(void)
{
    abuse *a;
    REQUIRE_OK(abuse_new("", &a));
    uint64_t start, now = abuse_now_ms();
    for (int i = 0; i < ABUSE_FREE_CHECKS; i++) {
        CHECK_EQ(abuse_check_begin(a, NULL, "p", 100, 0, &start), 0);
        CHECK(start < now + 50);
    }
    CHECK_EQ(abuse_check_begin(a, NULL, "p", 100, 0, &start), 0);  /* at once, */
    CHECK(start < now + 50);
    CHECK_EQ(abuse_check_begin(a, NULL, "p", 100, 0, &start), 0);  /* the next waits */
    CHECK(start >= now + 100);
    for (int i = 0; i < ABUSE_FREE_CHECKS + 2; i++)
        abuse_check_end(a, NULL, "p");
    abuse_login_ok(a, NULL, "p");
    now = abuse_now_ms();
    CHECK_EQ(abuse_check_begin(a, NULL, "p", 100, 0, &start), 0);
    CHECK(start < now + 50);
    abuse_free(a);
}

static void t_cap_ahead(void)
{
    abuse *a;
    REQUIRE_OK(abuse_new("", &a));
    uint64_t start, now = abuse_now_ms();
    unsigned n;
    for (int i = 0; i < 10; i++)
        abuse_login_failed(a, NULL, "z", 10, 0, &n);
    /* penalty now 64 x 10 ms: one check fits in the next 640 ms, then the
     * next would start more than 64 steps ahead: refused, nothing kept */
    int ok = 0, refused = 0;
    for (int i = 0; i < 10; i++) {
        int rc = abuse_check_begin(a, NULL, "z", 10, 0, &start);
        if (rc == 0) {
            ok++;
            CHECK(start <= abuse_now_ms() + 640);
        } else {
            CHECK_EQ(rc, -EAGAIN);
            refused++;
        }
    }
    CHECK(ok >= 1 && ok <= 2);
    CHECK_EQ(ok + refused, 10);
    CHECK(abuse_now_ms() - now < 1000);     /* nothing here waits */
    /* no penalties at all with base 0 */
    for (int i = 0; i < 5; i++)
        abuse_login_failed(a, "10.1.1.1", "q", 0, 0, &n);
    now = abuse_now_ms();
    CHECK_EQ(abuse_check_begin(a, "10.1.1.1", "q", 0, 0, &start), 0);
    CHECK(start < now + 50);
    abuse_free(a);
}

static void t_many_names(void)
{
    /* a flood of made-up names: bounded memory, still no crash and the
     * accounting of known names goes on */
    abuse *a;
    REQUIRE_OK(abuse_new("", &a));
    char name[32];
    unsigned n;
    for (unsigned i = 0; i < ABUSE_MAX_COUNTERS + 1000; i++) {
        snprintf(name, sizeof name, "ghost%u", i);
        abuse_login_failed(a, NULL, name, 0, 0, &n);
    }
    CHECK(abuse_conn_open(a, "10.2.2.2", 1));   /* connection counts still work */
    CHECK(!abuse_conn_open(a, "10.2.2.2", 1));
    abuse_conn_close(a, "10.2.2.2");
    abuse_free(a);
}

int main(void)
{
    RUN(t_pending_per_address);
    RUN(t_penalty_holds_next_check);
    RUN(t_parallel_checks_of_one_user);
    RUN(t_cap_ahead);
    RUN(t_many_names);
    return test_summary();
}
