/* tests/unit/test_store_uids.c — what a migration needs of the store: a
 * mailbox created with a given UIDVALIDITY (INBOX made on first use takes
 * one while it has never held a message), messages appended with given
 * UIDs (gaps kept, never going back: -ERANGE and nothing written), and
 * UIDNEXT and HIGHESTMODSEQ raised without a message, kept across reopen,
 * an index rebuilt from the log, compaction and check --repair. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "store/internal.h"
#include "store/message.h"
#include "store/store.h"
#include "tests/unit/store_testutil.h"

/* Message i: a body of i+1 lines, so each has its own length. */
static size_t make_msg(char *b, size_t cap, unsigned i)
{
    size_t n = (size_t)snprintf(b, cap, "From: a@example.com\r\nSubject: m%u\r\n\r\n", i);
    for (unsigned k = 0; k <= i && n + 16 < cap; k++)
        n += (size_t)snprintf(b + n, cap - n, "line %u\r\n", k);
    return n;
}

static store_status status_of(store_mbox *mb)
{
    store_status st;
    if (store_mbox_status(mb, &st) < 0)
        abort();
    return st;
}

static uint32_t uv_of(store_user *u, const char *name)
{
    store_mailbox_info i;
    if (store_mailbox_get(u, name, &i) < 0)
        return 0;
    free(i.name);
    return i.uidvalidity;
}

/* Every live message's cache blob describes a message of its own length:
 * the apply step matched each pre-parsed blob to its message. */
static bool blobs_match(store_mbox *mb)
{
    store_snap *s = store_snap_get(mb);
    bool ok = s != NULL;
    for (uint32_t p = 0; ok && p < store_snap_entries(s); p++) {
        store_msg m;
        store_cache c;
        if (store_snap_entry(s, p, &m) != 1)
            continue;
        ok = store_snap_cache(s, m.uid, &c) == 0 && store_cache_msg_len(&c) == m.size;
    }
    if (s)
        store_snap_put(s);
    return ok;
}

static void test_given_uids(void)
{
    test_env e;
    REQUIRE_OK(test_env_open(&e, "uids-given"));
    REQUIRE_OK(store_mailbox_create_uv(e.u, "Mig/rated", 0, 1234567));
    CHECK_EQ(uv_of(e.u, "Mig/rated"), 1234567);
    CHECK(uv_of(e.u, "Mig") != 0);      /* the parent made as CREATE does */
    store_mbox *mb;
    REQUIRE_OK(store_mbox_open(e.u, "Mig/rated", &mb));
    char b[4][2048];
    store_new_msg m[4];
    for (unsigned i = 0; i < 4; i++)
        m[i] = (store_new_msg){.data = b[i], .len = make_msg(b[i], sizeof b[i], i),
                               .internal_date = 1000000000 + i};
    /* Gaps kept; a 0 in the middle takes the next UID. */
    m[0].uid = 5;
    m[1].uid = 9;
    m[2].uid = 0;
    m[3].uid = 40;
    uint32_t got[4] = {0};
    REQUIRE_OK(store_append(mb, m, 4, got));
    CHECK(got[0] == 5 && got[1] == 9 && got[2] == 10 && got[3] == 40);
    store_status st = status_of(mb);
    CHECK_EQ(st.messages, 4);
    CHECK_EQ(st.uidnext, 41);
    CHECK_EQ(st.uidvalidity, 1234567);
    CHECK(blobs_match(mb));
    char *want = test_describe_mbox(mb);

    /* Going back, or down within one call: -ERANGE, nothing written. */
    m[0].uid = 40;
    CHECK_EQ(store_append(mb, m, 1, NULL), -ERANGE);
    m[0].uid = 60;
    m[1].uid = 50;
    CHECK_EQ(store_append(mb, m, 2, NULL), -ERANGE);
    char *now = test_describe_mbox(mb);
    CHECK(!strcmp(now, want));
    free(now);

    /* UIDNEXT raised without a message; never lowered. */
    REQUIRE_OK(store_mbox_set_uidnext(mb, 100));
    CHECK_EQ(status_of(mb).uidnext, 100);
    REQUIRE_OK(store_mbox_set_uidnext(mb, 100));
    CHECK_EQ(store_mbox_set_uidnext(mb, 99), -ERANGE);
    CHECK_EQ(store_mbox_set_uidnext(mb, 0), -ERANGE);
    m[0].uid = 99;
    CHECK_EQ(store_append(mb, m, 1, NULL), -ERANGE);
    m[0].uid = 0;
    REQUIRE_OK(store_append(mb, m, 1, got));
    CHECK_EQ(got[0], 100);
    REQUIRE_OK(store_mbox_set_uidnext(mb, 200));
    /* HIGHESTMODSEQ the same way; the next change goes past it. */
    REQUIRE_OK(store_mbox_set_highestmodseq(mb, 5000));
    CHECK_EQ(status_of(mb).highestmodseq, 5000);
    CHECK_EQ(store_mbox_set_highestmodseq(mb, 4999), -ERANGE);
    CHECK_EQ(store_mbox_set_highestmodseq(mb, 1ull << 56), -ERANGE);
    store_range one = {100, 100};
    uint64_t ms = 0;
    REQUIRE_OK(store_flags(mb, &one, 1, STORE_FLAGS_ADD, STORE_F_SEEN, NULL, 0, 0, NULL, NULL,
                           &ms));
    CHECK_EQ(ms, 5001);
    free(want);
    want = test_describe_mbox(mb);
    char dir[600];
    test_pathf(dir, sizeof dir, "%s", store_mbox_dir(mb));
    store_mbox_close(mb);

    /* Reopened, rebuilt from the log, compacted, repaired: the same. */
    REQUIRE_OK(test_env_reopen(&e));
    REQUIRE_OK(store_mbox_open(e.u, "Mig/rated", &mb));
    now = test_describe_mbox(mb);
    CHECK(!strcmp(now, want));
    free(now);
    store_mbox_close(mb);
    test_inbox_close(e.u, e.mb);    /* nothing of the user open: as a new process */
    char ip[700];
    test_pathf(ip, sizeof ip, "%s/index", dir);
    REQUIRE(unlink(ip) == 0);
    REQUIRE_OK(test_inbox_open(e.root, "user", STORE_FSYNC_NEVER, &e.u, &e.mb));
    REQUIRE_OK(store_mbox_open(e.u, "Mig/rated", &mb));
    now = test_describe_mbox(mb);
    CHECK(!strcmp(now, want));
    free(now);
    store_range all = {1, UINT32_MAX};
    REQUIRE_OK(store_flags(mb, &all, 1, STORE_FLAGS_ADD, STORE_F_DELETED, NULL, 0, 0,
                           NULL, NULL, NULL));
    REQUIRE_OK(store_expunge(mb, &all, 1, true, NULL, NULL));
    REQUIRE_OK(store_compact(mb, NULL, NULL));
    CHECK_EQ(status_of(mb).uidnext, 200);
    CHECK(status_of(mb).highestmodseq > 5001);
    CHECK_EQ(status_of(mb).messages, 0);
    store_check_report rep;
    REQUIRE_OK(store_check(mb, true, &rep, NULL, NULL));
    CHECK_EQ(rep.index_mismatches, 0);
    CHECK_EQ(status_of(mb).uidnext, 200);
    store_mbox_close(mb);
    free(want);
    test_env_close(&e);
}

/* A crash after the log header took the new UIDNEXT and before the index
 * did: opening finds the index behind and raises it. */
static void test_uidnext_index_behind(void)
{
    test_env e;
    REQUIRE_OK(test_env_open(&e, "uids-behind"));
    REQUIRE_OK(test_append_n(e.mb, 2, 1000000000));
    REQUIRE_OK(store_mbox_set_uidnext(e.mb, 50));
    REQUIRE_OK(store_mbox_set_highestmodseq(e.mb, 900));
    store_snap *s = store_snap_get(e.mb);
    REQUIRE(s != NULL);
    __atomic_store_n(&store_gen_hdr(s->g)->uidnext, 3, __ATOMIC_RELEASE);
    __atomic_store_n(&store_gen_hdr(s->g)->highestmodseq, 3, __ATOMIC_RELEASE);
    store_snap_put(s);
    REQUIRE_OK(test_env_reopen(&e));
    CHECK_EQ(status_of(e.mb).uidnext, 50);
    CHECK_EQ(status_of(e.mb).highestmodseq, 900);
    test_env_close(&e);
}

static void test_inbox_takes_uidvalidity(void)
{
    char root[512];
    snprintf(root, sizeof root, "%s", test_tmpdir("uids-inbox"));
    store_opts o;
    store_opts_default(&o);
    o.fsync = STORE_FSYNC_NEVER;
    store_user *u;
    REQUIRE_OK(store_user_open(root, "user", &o, &u));
    uint32_t first = uv_of(u, "INBOX");
    REQUIRE(first != 0);
    /* Untouched: replaced by one with the given UIDVALIDITY (and a new id). */
    REQUIRE_OK(store_mailbox_create_uv(u, "INBOX", 0, 777));
    CHECK_EQ(uv_of(u, "INBOX"), 777);
    /* The same again: -EEXIST, nothing changed. */
    CHECK_EQ(store_mailbox_create_uv(u, "INBOX", 0, 777), -EEXIST);
    store_mbox *mb;
    REQUIRE_OK(store_mbox_open(u, "INBOX", &mb));
    CHECK_EQ(status_of(mb).uidvalidity, 777);
    /* Once it has held a message (even expunged), never again. */
    REQUIRE_OK(test_append_n(mb, 1, 1000000000));
    store_range all = {1, UINT32_MAX};
    REQUIRE_OK(store_expunge(mb, &all, 1, false, NULL, NULL));
    CHECK_EQ(store_mailbox_create_uv(u, "INBOX", 0, 888), -EEXIST);
    CHECK_EQ(uv_of(u, "INBOX"), 777);
    store_mbox_close(mb);
    /* An existing mailbox that is not pristine: -EEXIST too. */
    REQUIRE_OK(store_mailbox_create(u, "Kept", 0));
    REQUIRE_OK(store_mbox_open(u, "Kept", &mb));
    REQUIRE_OK(store_mbox_set_uidnext(mb, 5));
    store_mbox_close(mb);
    uint32_t kept = uv_of(u, "Kept");
    CHECK_EQ(store_mailbox_create_uv(u, "Kept", 0, 999), -EEXIST);
    CHECK_EQ(uv_of(u, "Kept"), kept);
    CHECK_EQ(store_mailbox_create_uv(u, "Bad", 0, 0), -EINVAL);
    /* A given UIDVALIDITY above the clock moves the user's last one: a
     * mailbox created later under a deleted one's name gets a greater one
     * (RFC 3501 2.3.1.1). */
    uint32_t future = (uint32_t)time(NULL) + 100000;
    REQUIRE_OK(store_mailbox_create_uv(u, "Later", 0, future));
    REQUIRE_OK(store_mailbox_delete(u, "Later"));
    REQUIRE_OK(store_mailbox_create(u, "Later", 0));
    CHECK(uv_of(u, "Later") > future);
    store_user_close(u);
    /* The list kept it all. */
    REQUIRE_OK(store_user_open(root, "user", &o, &u));
    CHECK_EQ(uv_of(u, "INBOX"), 777);
    store_user_close(u);
    test_rm_rf(root);
}

int main(void)
{
    RUN(test_given_uids);
    RUN(test_uidnext_index_behind);
    RUN(test_inbox_takes_uidvalidity);
    return test_summary();
}
