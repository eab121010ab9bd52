/* tests/unit/test_store_mailbox.c — the per-user mailbox list: INBOX,
 * names, create/delete/rename, subscriptions, special-use, UIDVALIDITY,
 * the '.' separator, user-name validation and persistence across reopen. */
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <strings.h>

#include <sys/wait.h>

#include "store/store.h"
#include "tests/unit/testutil.h"

/* ---- helpers -------------------------------------------------------- */

/* A fresh mail_root; owned by the caller (free). */
static char *new_root(const char *tag)
{
    return strdup(test_tmpdir(tag));
}

static bool path_exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

/* Index of `name` in the list, or -1. */
static long find_info(const store_mailbox_info *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0)
            return (long)i;
    return -1;
}

static bool has_mailbox(store_user *u, const char *name)
{
    store_mailbox_info *v = NULL;
    size_t n = 0;
    if (store_mailbox_list(u, &v, &n) < 0)
        return false;
    bool r = find_info(v, n, name) >= 0;
    store_mailbox_info_free(v, n);
    return r;
}

static size_t count_mailboxes(store_user *u)
{
    store_mailbox_info *v = NULL;
    size_t n = 0;
    if (store_mailbox_list(u, &v, &n) < 0)
        return (size_t)-1;
    store_mailbox_info_free(v, n);
    return n;
}

static bool has_subscription(store_user *u, const char *name, bool nocase)
{
    char **names = NULL;
    size_t n = 0;
    bool r = false;
    if (store_subscriptions(u, &names, &n) < 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((nocase ? strcasecmp(names[i], name) : strcmp(names[i], name)) == 0)
            r = true;
        free(names[i]);
    }
    free(names);
    return r;
}

static size_t count_subscriptions(store_user *u, const char *name)
{
    char **names = NULL;
    size_t n = 0, c = 0;
    if (store_subscriptions(u, &names, &n) < 0)
        return (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(names[i], name) == 0)
            c++;
        free(names[i]);
    }
    free(names);
    return c;
}

static const char MSG1[] =
    "From: a@example.com\r\nTo: b@example.com\r\nSubject: one\r\n\r\nbody one\r\n";
static const char MSG2[] =
    "From: a@example.com\r\nSubject: two\r\n\r\nsecond body, longer\r\nline 2\r\n";
static const char MSG3[] = "Subject: three\r\n\r\nx\r\n";

static int append_raw(store_mbox *mb, const char *data, uint32_t flags, uint32_t *uid)
{
    store_new_msg m = { .data = data, .len = strlen(data), .internal_date = 1700000000,
                        .flags = flags };
    return store_append(mb, &m, 1, uid);
}

/* Checks that `name` holds exactly the given messages (bytes, in order). */
static void check_contents(store_user *u, const char *name, const char *const *msgs, size_t n)
{
    store_mbox *mb = NULL;
    int r = store_mbox_open(u, name, &mb);
    CHECK_EQ(r, 0);
    if (r < 0)
        return;
    store_snap *s = store_snap_get(mb);
    CHECK(s != NULL);
    if (s) {
        CHECK_EQ(store_snap_messages(s), n);
        for (uint32_t seq = 1; seq <= n && seq <= store_snap_messages(s); seq++) {
            uint32_t uid = store_snap_uid_of_seq(s, seq);
            CHECK(uid != 0);
            const char *p = NULL;
            size_t got = 0;
            CHECK_EQ(store_snap_bytes(s, uid, 0, SIZE_MAX, &p, &got), 0);
            CHECK_EQ(got, strlen(msgs[seq - 1]));
            CHECK(p && got == strlen(msgs[seq - 1]) && memcmp(p, msgs[seq - 1], got) == 0);
        }
        store_snap_put(s);
    }
    store_mbox_close(mb);
}

/* ---- tests ---------------------------------------------------------- */

static void test_opts_and_fsync_parse(void)
{
    store_opts o;
    memset(&o, 0x5a, sizeof o);
    store_opts_default(&o);
    CHECK_EQ(o.separator, '/');
    CHECK_EQ(o.fsync, STORE_FSYNC_BATCH);
    store_fsync f = STORE_FSYNC_BATCH;
    CHECK_EQ(store_fsync_parse("always", &f), 0);
    CHECK_EQ(f, STORE_FSYNC_ALWAYS);
    CHECK_EQ(store_fsync_parse("never", &f), 0);
    CHECK_EQ(f, STORE_FSYNC_NEVER);
    CHECK_EQ(store_fsync_parse("batch", &f), 0);
    CHECK_EQ(f, STORE_FSYNC_BATCH);
    CHECK_EQ(store_fsync_parse("sometimes", &f), -EINVAL);
    CHECK_EQ(store_fsync_parse("", &f), -EINVAL);
}

static void test_inbox_created(void)
{
    char *root = new_root("mbx-inbox");
    store_user *u = NULL;
    REQUIRE_OK(store_user_open(root, "alice", NULL, &u));
    CHECK_EQ(store_user_separator(u), '/');

    store_mailbox_info *v = NULL;
    size_t n = 0;
    REQUIRE_OK(store_mailbox_list(u, &v, &n));
    CHECK_EQ(n, 1);
    if (n >= 1) {
        CHECK(strcmp(v[0].name, "INBOX") == 0);
        CHECK(v[0].uidvalidity != 0);
    }
    uint64_t inbox_id = n ? v[0].id : 0;
    store_mailbox_info_free(v, n);

    static const char *const spellings[] = { "INBOX", "inbox", "InBoX", "Inbox" };
    for (size_t i = 0; i < sizeof spellings / sizeof *spellings; i++) {
        store_mailbox_info info = { 0 };
        int r = store_mailbox_get(u, spellings[i], &info);
        CHECK_EQ(r, 0);
        if (r == 0) {
            CHECK(strcmp(info.name, "INBOX") == 0);
            CHECK_EQ(info.id, inbox_id);
            free(info.name);
        }
        store_mbox *mb = NULL;
        r = store_mbox_open(u, spellings[i], &mb);
        CHECK_EQ(r, 0);
        if (r == 0)
            store_mbox_close(mb);
        store_status st;
        CHECK_EQ(store_mailbox_status(u, spellings[i], &st), 0);
        /* INBOX exists in every spelling: creating it again is -EEXIST. */
        CHECK_EQ(store_mailbox_create(u, spellings[i], 0), -EEXIST);
    }
    CHECK_EQ(count_mailboxes(u), 1);

    /* Opening the same user twice returns the same object (refcounted). */
    store_user *u2 = NULL;
    REQUIRE_OK(store_user_open(root, "alice", NULL, &u2));
    CHECK(u2 == u);
    store_user_close(u2);
    CHECK_EQ(count_mailboxes(u), 1);   /* u still usable after one close */
    store_user_close(u);

    /* Reopen: INBOX is still there, with the same id and no duplicate. */
    REQUIRE_OK(store_user_open(root, "alice", NULL, &u));
    store_mailbox_info info = { 0 };
    CHECK_EQ(store_mailbox_get(u, "INBOX", &info), 0);
    CHECK_EQ(info.id, inbox_id);
    free(info.name);
    CHECK_EQ(count_mailboxes(u), 1);
    store_user_close(u);
    test_rm_rf(root);
    free(root);
}

static void test_create_list_get(void)
{
    char *root = new_root("mbx-create");
    store_user *u = NULL;
    REQUIRE_OK(store_user_open(root, "bob", NULL, &u));
    CHECK_EQ(store_mailbox_create(u, "Zeta", 0), 0);
    CHECK_EQ(store_mailbox_create(u, "Archive", 0), 0);
    CHECK_EQ(store_mailbox_create(u, "Work", 0), 0);
    CHECK_EQ(store_mailbox_create(u, "Work", 0), -EEXIST);
    /* Names other than INBOX are case-sensitive. */
    CHECK_EQ(store_mailbox_create(u, "work", 0), 0);
    /* Non-ASCII UTF-8 is fine. */
    CHECK_EQ(store_mailbox_create(u, "Entw\xc3\xbcrfe \xe2\x82\xac", 0), 0);
    CHECK_EQ(store_mailbox_create(u, "Entw\xc3\xbcrfe \xe2\x82\xac", 0), -EEXIST);

    store_mailbox_info *v = NULL;
    size_t n = 0;
    REQUIRE_OK(store_mailbox_list(u, &v, &n));
    CHECK_EQ(n, 6);
    if (n == 6) {
        CHECK(strcmp(v[0].name, "INBOX") == 0);
        /* sorted by name after INBOX (byte order or case-folded order) */
        bool bytewise = true, folded = true;
        for (size_t i = 2; i < n; i++) {
            if (strcmp(v[i - 1].name, v[i].name) >= 0)
                bytewise = false;
            if (strcasecmp(v[i - 1].name, v[i].name) > 0)
                folded = false;
        }
        CHECK(bytewise || folded);
        CHECK(find_info(v, n, "Archive") >= 0);
        CHECK(find_info(v, n, "Work") >= 0);
        CHECK(find_info(v, n, "work") >= 0);
        CHECK(find_info(v, n, "Zeta") >= 0);
        CHECK(find_info(v, n, "Entw\xc3\xbcrfe \xe2\x82\xac") >= 0);
        CHECK(find_info(v, n, "Archive") < find_info(v, n, "Work"));
        CHECK(find_info(v, n, "Work") < find_info(v, n, "Zeta"));
        /* ids distinct, uidvalidity nonzero, get agrees with list */
        for (size_t i = 0; i < n; i++) {
            CHECK(v[i].uidvalidity != 0);
            for (size_t j = i + 1; j < n; j++)
                CHECK(v[i].id != v[j].id);
            store_mailbox_info g = { 0 };
            CHECK_EQ(store_mailbox_get(u, v[i].name, &g), 0);
            if (g.name) {
                CHECK(strcmp(g.name, v[i].name) == 0);
                CHECK_EQ(g.id, v[i].id);
                CHECK_EQ(g.uidvalidity, v[i].uidvalidity);
                free(g.name);
            }
        }
    }
    store_mailbox_info_free(v, n);

    store_mailbox_info g = { 0 };
    CHECK_EQ(store_mailbox_get(u, "Nope", &g), -ENOENT);
    CHECK_EQ(store_mailbox_get(u, "WORK", &g), -ENOENT);
    store_mbox *mb = NULL;
    CHECK_EQ(store_mbox_open(u, "Nope", &mb), -ENOENT);
    store_status st;
    CHECK_EQ(store_mailbox_status(u, "Nope", &st), -ENOENT);

    /* A new mailbox is empty and usable. */
    REQUIRE_OK(store_mbox_open(u, "Work", &mb));
    REQUIRE_OK(store_mbox_status(mb, &st));
    CHECK_EQ(st.messages, 0);
    CHECK(st.uidnext >= 1);
    CHECK(st.uidvalidity != 0);
    uint32_t uid = 0;
    CHECK_EQ(append_raw(mb, MSG1, 0, &uid), 0);
    CHECK(uid >= 1);
    store_mbox_close(mb);
    store_status st2;
    CHECK_EQ(store_mailbox_status(u, "Work", &st2), 0);
    CHECK_EQ(st2.messages, 1);
    /* a different mailbox did not get the message */
    CHECK_EQ(store_mailbox_status(u, "work", &st2), 0);
    CHECK_EQ(st2.messages, 0);
    store_user_close(u);
    test_rm_rf(root);
    free(root);
}

static void test_nested_create(void)
{
    char *root = new_root("mbx-nested");
    store_user *u = NULL;
    REQUIRE_OK(store_user_open(root, "carol", NULL, &u));
    CHECK_EQ(store_mailbox_create(u, "a/b/c", 0), 0);
    CHECK(has_mailbox(u, "a"));
    CHECK(has_mailbox(u, "a/b"));
    CHECK(has_mailbox(u, "a/b/c"));
    CHECK_EQ(count_mailboxes(u), 4);
    CHECK_EQ(store_mailbox_create(u, "a/b", 0), -EEXIST);
    CHECK_EQ(store_mailbox_create(u, "a", 0), -EEXIST);
    CHECK_EQ(store_mailbox_create(u, "a/b/d", 0), 0);
    CHECK_EQ(count_mailboxes(u), 5);
    /* The implicitly created parents are real, selectable mailboxes. */
    store_mbox *mb = NULL;
    CHECK_EQ(store_mbox_open(u, "a/b", &mb), 0);
    if (mb)
        store_mbox_close(mb);
    /* INBOX may have children. */
    CHECK_EQ(store_mailbox_create(u, "INBOX/sub", 0), 0);
    CHECK(has_mailbox(u, "INBOX/sub"));
    CHECK_EQ(count_mailboxes(u), 6);
    store_user_close(u);
    test_rm_rf(root);
    free(root);
}

static void test_invalid_names(void)
{
    char *root = new_root("mbx-invalid");
    store_user *u = NULL;
    REQUIRE_OK(store_user_open(root, "dave", NULL, &u));
    static const char *const bad[] = {
        "", "/", "/x", "x/", "a//b", ".", "..", "a/../b", "a/./b", "../a", "a/..",
        "p/../q", ("a\x01" "b"), "a\nb", "a\rb", "\t", "a\x1f",
        "\xff", "a\xc3", "\xc3\x28", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80",
        "\xf8\x88\x80\x80\x80", "\x80", "x\xf4\x90\x80\x80",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int r = store_mailbox_create(u, bad[i], 0);
        if (r != -EINVAL)
            fprintf(stderr, "  create of bad name #%zu returned %d\n", i, r);
        CHECK_EQ(r, -EINVAL);
    }
    /* DEL is a control character too. */
    CHECK_EQ(store_mailbox_create(u, "a\x7f" "b", 0), -EINVAL);

    /* Length limit: STORE_MAX_NAME_LEN bytes is fine, one more is not. */
    char *name = malloc(STORE_MAX_NAME_LEN + 2);
    REQUIRE(name);
    memset(name, 'n', STORE_MAX_NAME_LEN + 1);
    name[STORE_MAX_NAME_LEN + 1] = 0;
    CHECK_EQ(store_mailbox_create(u, name, 0), -EINVAL);
    name[STORE_MAX_NAME_LEN] = 0;
    CHECK_EQ(store_mailbox_create(u, name, 0), 0);
    CHECK(has_mailbox(u, name));
    /* A long nested name: each level is short, the total too long. */
    for (size_t i = 0; i < STORE_MAX_NAME_LEN + 1; i++)
        name[i] = (i % 10 == 9) ? '/' : 'q';
    name[STORE_MAX_NAME_LEN + 1] = 0;
    if (name[STORE_MAX_NAME_LEN] == '/')
        name[STORE_MAX_NAME_LEN] = 'q';
    CHECK_EQ(store_mailbox_create(u, name, 0), -EINVAL);
    free(name);

    /* Nothing was created by the failed attempts (no parents either). */
    CHECK_EQ(count_mailboxes(u), 2);
    CHECK(!has_mailbox(u, "p"));
    CHECK(!has_mailbox(u, "a"));

    /* Other entry points validate too. */
    CHECK_EQ(store_mailbox_create(u, "ok", 0), 0);
    CHECK_EQ(store_mailbox_rename(u, "ok", "a//b"), -EINVAL);
    CHECK_EQ(store_mailbox_rename(u, "ok", ""), -EINVAL);
    CHECK_EQ(store_mailbox_rename(u, "ok", "x/"), -EINVAL);
    CHECK(has_mailbox(u, "ok"));
    store_user_close(u);
    test_rm_rf(root);
    free(root);
}

static void test_delete(void)
{
    char *root = new_root("mbx-delete");
    store_user *u = NULL;
    REQUIRE_OK(store_user_open(root, "erin", NULL, &u));
    CHECK_EQ(store_mailbox_delete(u, "INBOX"), -EPERM);
    CHECK_EQ(store_mailbox_delete(u, "inbox"), -EPERM);
    CHECK_EQ(store_mailbox_delete(u, "nope"), -ENOENT);
    CHECK_EQ(store_mailbox_create(u, "p/q", 0), 0);
    CHECK_EQ(store_mailbox_delete(u, "p"), -ENOTEMPTY);
    CHECK(has_mailbox(u, "p"));
    CHECK(has_mailbox(u, "p/q"));
    CHECK_EQ(store_mailbox_delete(u, "p/q"), 0);
    CHECK(!has_mailbox(u, "p/q"));
    CHECK_EQ(store_mailbox_delete(u, "p/q"), -ENOENT);
    CHECK_EQ(store_mailbox_delete(u, "p"), 0);
    CHECK(!has_mailbox(u, "p"));
    CHECK_EQ(count_mailboxes(u), 1);
    store_mailbox_info g = { 0 };
    CHECK_EQ(store_mailbox_get(u, "p", &g), -ENOENT);
    store_mbox *mb = NULL;
    CHECK_EQ(store_mbox_open(u, "p", &mb), -ENOENT);

    /* A mailbox with messages: open handles keep working after delete. */
    REQUIRE_OK(store_mailbox_create(u, "full", 0));
    REQUIRE_OK(store_mbox_open(u, "full", &mb));
    uint32_t uid = 0;
    REQUIRE_OK(append_raw(mb, MSG1, 0, &uid));
    store_snap *s = store_snap_get(mb);
    REQUIRE(s);
    CHECK_EQ(store_mailbox_delete(u, "full"), 0);
    CHECK(!has_mailbox(u, "full"));
    const char *p = NULL;
    size_t got = 0;
    CHECK_EQ(store_snap_bytes(s, uid, 0, SIZE_MAX, &p, &got), 0);
    CHECK(p && got == strlen(MSG1) && memcmp(p, MSG1, got) == 0);
    store_snap_put(s);
    s = store_snap_get(mb);   /* a new snapshot on the still-open handle */
    CHECK(s != NULL);
    if (s) {
        CHECK_EQ(store_snap_messages(s), 1);
        store_snap_put(s);
    }
    store_mbox_close(mb);

    /* Re-created under the same name, it is a new, empty mailbox. */
    REQUIRE_OK(store_mailbox_create(u, "full", 0));
    store_status st;
    CHECK_EQ(store_mailbox_status(u, "full", &st), 0);
    CHECK_EQ(st.messages, 0);
    store_user_close(u);

    /* Deletion is durable. */
    REQUIRE_OK(store_user_open(root, "erin", NULL, &u));
    CHECK(!has_mailbox(u, "p"));
    CHECK(!has_mailbox(u, "p/q"));
    CHECK(has_mailbox(u, "full"));
    CHECK_EQ(count_mailboxes(u), 2);
    store_user_close(u);
    test_rm_rf(root);
    free(root);
}

static void test_rename(void)
{
    char *root = new_root("mbx-rename");
    store_user *u = NULL;
    REQUIRE_OK(store_user_open(root, "frank", NULL, &u));
    REQUIRE_OK(store_mailbox_create(u, "a/b/c", 0));
    REQUIRE_OK(store_mailbox_create(u, "ab", 0));     /* same prefix, not a child */
    REQUIRE_OK(store_mailbox_create(u, "other", 0));
    store_mailbox_info ia = { 0 }, ib = { 0 }, ic = { 0 }, iab = { 0 };
    REQUIRE_OK(store_mailbox_get(u, "a", &ia));
    REQUIRE_OK(store_mailbox_get(u, "a/b", &ib));
    REQUIRE_OK(store_mailbox_get(u, "a/b/c", &ic));
    REQUIRE_OK(store_mailbox_get(u, "ab", &iab));
    free(ia.name); free(ib.name); free(ic.name); free(iab.name);

    store_mbox *mb = NULL;
    REQUIRE_OK(store_mbox_open(u, "a/b", &mb));
    uint32_t uid = 0;
    REQUIRE_OK(append_raw(mb, MSG2, STORE_F_SEEN, &uid));
    store_mbox_close(mb);

    CHECK_EQ(store_mailbox_rename(u, "nope", "x"), -ENOENT);
    CHECK_EQ(store_mailbox_rename(u, "a", "other"), -EEXIST);
    CHECK_EQ(store_mailbox_rename(u, "a", "a/z"), -EINVAL);      /* into itself */
    CHECK_EQ(store_mailbox_rename(u, "a", "a/b/c/d"), -EINVAL);
    CHECK_EQ(store_mailbox_rename(u, "a", "x"), 0);

    CHECK(!has_mailbox(u, "a"));
    CHECK(!has_mailbox(u, "a/b"));
    CHECK(!has_mailbox(u, "a/b/c"));
    CHECK(has_mailbox(u, "x"));
    CHECK(has_mailbox(u, "x/b"));
    CHECK(has_mailbox(u, "x/b/c"));
    CHECK(has_mailbox(u, "ab"));            /* "ab" is not a child of "a" */
    CHECK(!has_mailbox(u, "xb"));
    CHECK_EQ(count_mailboxes(u), 6);
    store_mailbox_info g = { 0 };
    if (store_mailbox_get(u, "x", &g) == 0) { CHECK_EQ(g.id, ia.id); free(g.name); }
    else CHECK(0);
    if (store_mailbox_get(u, "x/b", &g) == 0) { CHECK_EQ(g.id, ib.id); free(g.name); }
    else CHECK(0);
    if (store_mailbox_get(u, "x/b/c", &g) == 0) { CHECK_EQ(g.id, ic.id); free(g.name); }
    else CHECK(0);
    if (store_mailbox_get(u, "ab", &g) == 0) { CHECK_EQ(g.id, iab.id); free(g.name); }
    else CHECK(0);
    const char *const m2[] = { MSG2 };
    check_contents(u, "x/b", m2, 1);
    check_contents(u, "x", NULL, 0);

    /* Rename a leaf into a new hierarchy level under an existing parent. */
    CHECK_EQ(store_mailbox_rename(u, "other", "x/other"), 0);
    CHECK(has_mailbox(u, "x/other"));
    CHECK(!has_mailbox(u, "other"));
    /* Child target exists: x/b/c -> x/other would need x/other (exists). */
    CHECK_EQ(store_mailbox_rename(u, "x/b", "x/other"), -EEXIST);
    CHECK(has_mailbox(u, "x/b/c"));
    store_user_close(u);

    /* Renames are durable. */
    REQUIRE_OK(store_user_open(root, "frank", NULL, &u));
    CHECK(has_mailbox(u, "x/b/c"));
    CHECK(has_mailbox(u, "x/other"));
    CHECK(!has_mailbox(u, "a/b"));
    check_contents(u, "x/b", m2, 1);
    store_user_close(u);
    test_rm_rf(root);
    free(root);
}

static void test_rename_inbox(void)
{
    char *root = new_root("mbx-rinbox");
    store_user *u = NULL;
    REQUIRE_OK(store_user_open(root, "gina", NULL, &u));
    store_mbox *mb = NULL;
    REQUIRE_OK(store_mbox_open(u, "INBOX", &mb));
    uint32_t uids[3];
    REQUIRE_OK(append_raw(mb, MSG1, 0, &uids[0]));
    REQUIRE_OK(append_raw(mb, MSG2, STORE_F_SEEN | STORE_F_FLAGGED, &uids[1]));
    REQUIRE_OK(append_raw(mb, MSG3, 0, &uids[2]));
    store_mbox_close(mb);
    store_status before;
    REQUIRE_OK(store_mailbox_status(u, "INBOX", &before));
    CHECK_EQ(before.messages, 3);

    REQUIRE_OK(store_mailbox_create(u, "Taken", 0));
    CHECK_EQ(store_mailbox_rename(u, "INBOX", "Taken"), -EEXIST);
    CHECK_EQ(store_mailbox_rename(u, "inbox", "Old"), 0);
    CHECK(has_mailbox(u, "INBOX"));
    CHECK(has_mailbox(u, "Old"));
    const char *const all[] = { MSG1, MSG2, MSG3 };
    check_contents(u, "Old", all, 3);
    check_contents(u, "INBOX", NULL, 0);
    store_status st;
    CHECK_EQ(store_mailbox_status(u, "INBOX", &st), 0);
    CHECK_EQ(st.messages, 0);
    CHECK_EQ(store_mailbox_status(u, "Old", &st), 0);
    CHECK_EQ(st.messages, 3);
    CHECK_EQ(st.unseen, 2);
    CHECK_EQ(st.size, strlen(MSG1) + strlen(MSG2) + strlen(MSG3));

    /* Flags came along. */
    REQUIRE_OK(store_mbox_open(u, "Old", &mb));
    store_snap *s = store_snap_get(mb);
    REQUIRE(s);
    store_msg m;
    uint32_t u2 = store_snap_uid_of_seq(s, 2);
    CHECK_EQ(store_snap_msg(s, u2, &m), 0);
    CHECK_EQ(m.flags, STORE_F_SEEN | STORE_F_FLAGGED);
    store_snap_put(s);
    store_mbox_close(mb);

    /* INBOX still works: a new message lands there, not in Old. */
    REQUIRE_OK(store_mbox_open(u, "INBOX", &mb));
    uint32_t nu = 0;
    CHECK_EQ(append_raw(mb, MSG3, 0, &nu), 0);
    store_mbox_close(mb);
    store_user_close(u);

    REQUIRE_OK(store_user_open(root, "gina", NULL, &u));
    check_contents(u, "Old", all, 3);
    const char *const one[] = { MSG3 };
    check_contents(u, "INBOX", one, 1);
    store_user_close(u);
    test_rm_rf(root);
    free(root);
}

/* An open handle follows its mailbox through a rename (mailboxes are
 * directories named by id); the same mailbox opened twice is one object;
 * renaming INBOX leaves INBOX's children where they are. */
static void test_rename_open_and_children(void)
{
    char *root = new_root("mbx-ropen");
    store_user *u = NULL;
    REQUIRE_OK(store_user_open(root, "olga", NULL, &u));
    REQUIRE_OK(store_mailbox_create(u, "a", 0));
    store_mbox *mb = NULL, *mb2 = NULL;
    REQUIRE_OK(store_mbox_open(u, "a", &mb));
    REQUIRE_OK(store_mbox_open(u, "a", &mb2));
    CHECK(mb == mb2);
    store_mbox_close(mb2);
    uint32_t uid;
    REQUIRE_OK(append_raw(mb, MSG1, 0, &uid));
    REQUIRE_OK(store_mailbox_rename(u, "a", "b"));
    CHECK_EQ(append_raw(mb, MSG2, 0, &uid), 0);   /* through the old handle */
    store_mbox_close(mb);
    const char *const both[] = { MSG1, MSG2 };
    check_contents(u, "b", both, 2);
    store_mbox *mc = NULL;
    CHECK_EQ(store_mbox_open(u, "a", &mc), -ENOENT);

    /* INBOX with a child: the child stays, the messages move */
    REQUIRE_OK(store_mailbox_create(u, "INBOX/kid", 0));
    REQUIRE_OK(store_mbox_open(u, "INBOX", &mb));
    REQUIRE_OK(append_raw(mb, MSG3, 0, &uid));
    store_mbox_close(mb);
    CHECK_EQ(store_mailbox_rename(u, "INBOX", "Moved"), 0);
    CHECK(has_mailbox(u, "INBOX/kid"));
    CHECK(!has_mailbox(u, "Moved/kid"));
    const char *const three[] = { MSG3 };
    check_contents(u, "Moved", three, 1);
    check_contents(u, "INBOX", NULL, 0);
    store_user_close(u);
    test_rm_rf(root);
    free(root);
}

static void test_subscriptions(void)
{
    char *root = new_root("mbx-subs");
    store_user *u = NULL;
    REQUIRE_OK(store_user_open(root, "hank", NULL, &u));
    REQUIRE_OK(store_mailbox_create(u, "Work", 0));
    store_mailbox_info g = { 0 };
    REQUIRE_OK(store_mailbox_get(u, "Work", &g));
    CHECK(!g.subscribed);
    free(g.name);

    CHECK_EQ(store_mailbox_subscribe(u, "Work", true), 0);
    CHECK_EQ(store_mailbox_subscribe(u, "Work", true), 0);   /* idempotent */
    CHECK_EQ(count_subscriptions(u, "Work"), 1);
    REQUIRE_OK(store_mailbox_get(u, "Work", &g));
    CHECK(g.subscribed);
    free(g.name);
    store_mailbox_info *v = NULL;
    size_t n = 0;
    REQUIRE_OK(store_mailbox_list(u, &v, &n));
    long i = find_info(v, n, "Work");
    CHECK(i >= 0 && v[i].subscribed);
    i = find_info(v, n, "INBOX");
    CHECK(i >= 0 && !v[i].subscribed);
    store_mailbox_info_free(v, n);

    /* Names that do not exist can be subscribed. */
    CHECK_EQ(store_mailbox_subscribe(u, "Ghost/child", true), 0);
    CHECK(has_subscription(u, "Ghost/child", false));
    CHECK(!has_mailbox(u, "Ghost/child"));
    CHECK_EQ(store_mailbox_subscribe(u, "inbox", true), 0);
    CHECK(has_subscription(u, "INBOX", true));

    /* Deleting a subscribed mailbox keeps the subscription. */
    REQUIRE_OK(store_mailbox_create(u, "Temp", 0));
    CHECK_EQ(store_mailbox_subscribe(u, "Temp", true), 0);
    CHECK_EQ(store_mailbox_delete(u, "Temp"), 0);
    CHECK(has_subscription(u, "Temp", false));
    CHECK_EQ(store_mailbox_subscribe(u, "Temp", false), 0);
    CHECK(!has_subscription(u, "Temp", false));

    CHECK_EQ(store_mailbox_subscribe(u, "Work", false), 0);
    CHECK(!has_subscription(u, "Work", false));
    REQUIRE_OK(store_mailbox_get(u, "Work", &g));
    CHECK(!g.subscribed);
    free(g.name);
    CHECK_EQ(store_mailbox_subscribe(u, "Work", true), 0);
    store_user_close(u);

    REQUIRE_OK(store_user_open(root, "hank", NULL, &u));
    CHECK(has_subscription(u, "Work", false));
    CHECK(has_subscription(u, "Ghost/child", false));
    CHECK(has_subscription(u, "INBOX", true));
    CHECK(!has_subscription(u, "Temp", false));
    REQUIRE_OK(store_mailbox_get(u, "Work", &g));
    CHECK(g.subscribed);
    free(g.name);
    store_user_close(u);
    test_rm_rf(root);
    free(root);
}

static void test_special_use(void)
{
    char *root = new_root("mbx-special");
    store_user *u = NULL;
    REQUIRE_OK(store_user_open(root, "ivy", NULL, &u));
    CHECK_EQ(store_mailbox_create(u, "Sent", STORE_SPECIAL_SENT), 0);
    CHECK_EQ(store_mailbox_create(u, "Bin", 0), 0);
    CHECK_EQ(store_mailbox_set_special(u, "Bin", STORE_SPECIAL_TRASH), 0);
    CHECK_EQ(store_mailbox_create(u, "Keep", STORE_SPECIAL_ARCHIVE | STORE_SPECIAL_JUNK), 0);
    CHECK_EQ(store_mailbox_set_special(u, "Nope", STORE_SPECIAL_DRAFTS), -ENOENT);

    store_mailbox_info *v = NULL;
    size_t n = 0;
    REQUIRE_OK(store_mailbox_list(u, &v, &n));
    long i;
    i = find_info(v, n, "Sent");
    CHECK(i >= 0 && v[i].special == STORE_SPECIAL_SENT);
    i = find_info(v, n, "Bin");
    CHECK(i >= 0 && v[i].special == STORE_SPECIAL_TRASH);
    i = find_info(v, n, "Keep");
    CHECK(i >= 0 && v[i].special == (STORE_SPECIAL_ARCHIVE | STORE_SPECIAL_JUNK));
    i = find_info(v, n, "INBOX");
    CHECK(i >= 0 && v[i].special == 0);
    store_mailbox_info_free(v, n);

    CHECK_EQ(store_mailbox_set_special(u, "Bin", 0), 0);
    store_mailbox_info g = { 0 };
    REQUIRE_OK(store_mailbox_get(u, "Bin", &g));
    CHECK_EQ(g.special, 0);
    free(g.name);
    CHECK_EQ(store_mailbox_set_special(u, "Bin", STORE_SPECIAL_TRASH), 0);
    /* special-use survives a rename */
    CHECK_EQ(store_mailbox_rename(u, "Sent", "Sent Items"), 0);
    store_user_close(u);

    REQUIRE_OK(store_user_open(root, "ivy", NULL, &u));
    REQUIRE_OK(store_mailbox_get(u, "Sent Items", &g));
    CHECK_EQ(g.special, STORE_SPECIAL_SENT);
    free(g.name);
    REQUIRE_OK(store_mailbox_get(u, "Bin", &g));
    CHECK_EQ(g.special, STORE_SPECIAL_TRASH);
    free(g.name);
    REQUIRE_OK(store_mailbox_get(u, "Keep", &g));
    CHECK_EQ(g.special, STORE_SPECIAL_ARCHIVE | STORE_SPECIAL_JUNK);
    free(g.name);
    store_user_close(u);
    test_rm_rf(root);
    free(root);
}

static void test_uidvalidity(void)
{
    char *root = new_root("mbx-uidv");
    store_user *u = NULL;
    REQUIRE_OK(store_user_open(root, "jack", NULL, &u));
    uint32_t prev_uidv = 0;
    uint64_t prev_id = 0;
    for (int round = 0; round < 3; round++) {
        REQUIRE_OK(store_mailbox_create(u, "Box", 0));
        store_mailbox_info g = { 0 };
        REQUIRE_OK(store_mailbox_get(u, "Box", &g));
        free(g.name);
        CHECK(g.uidvalidity != 0);
        store_status st;
        REQUIRE_OK(store_mailbox_status(u, "Box", &st));
        CHECK_EQ(st.uidvalidity, g.uidvalidity);
        CHECK_EQ(st.messages, 0);
        if (round > 0) {
            /* immediately re-created (same second): still a new UIDVALIDITY */
            CHECK(g.uidvalidity != prev_uidv);
            CHECK(g.id != prev_id);
        }
        prev_uidv = g.uidvalidity;
        prev_id = g.id;
        store_mbox *mb = NULL;
        REQUIRE_OK(store_mbox_open(u, "Box", &mb));
        uint32_t uid;
        REQUIRE_OK(append_raw(mb, MSG1, 0, &uid));
        store_snap *s = store_snap_get(mb);
        REQUIRE(s);
        CHECK_EQ(store_snap_uidvalidity(s), g.uidvalidity);
        store_snap_put(s);
        store_mbox_close(mb);
        REQUIRE_OK(store_mailbox_delete(u, "Box"));
    }
    /* Survives reopen with the same value. */
    REQUIRE_OK(store_mailbox_create(u, "Stay", 0));
    store_mailbox_info g = { 0 };
    REQUIRE_OK(store_mailbox_get(u, "Stay", &g));
    free(g.name);
    store_user_close(u);
    REQUIRE_OK(store_user_open(root, "jack", NULL, &u));
    store_mailbox_info g2 = { 0 };
    REQUIRE_OK(store_mailbox_get(u, "Stay", &g2));
    free(g2.name);
    CHECK_EQ(g2.uidvalidity, g.uidvalidity);
    CHECK_EQ(g2.id, g.id);
    /* Deleted and re-created across a reopen: different again. */
    REQUIRE_OK(store_mailbox_delete(u, "Stay"));
    store_user_close(u);
    REQUIRE_OK(store_user_open(root, "jack", NULL, &u));
    REQUIRE_OK(store_mailbox_create(u, "Stay", 0));
    REQUIRE_OK(store_mailbox_get(u, "Stay", &g2));
    free(g2.name);
    CHECK(g2.uidvalidity != g.uidvalidity);
    CHECK(g2.uidvalidity != 0);
    store_user_close(u);
    test_rm_rf(root);
    free(root);
}

static void test_dot_separator(void)
{
    char *root = new_root("mbx-dot");
    store_opts o;
    store_opts_default(&o);
    o.separator = '.';
    store_user *u = NULL;
    REQUIRE_OK(store_user_open(root, "kim", &o, &u));
    CHECK_EQ(store_user_separator(u), '.');
    CHECK_EQ(store_mailbox_create(u, "a.b.c", 0), 0);
    CHECK(has_mailbox(u, "a"));
    CHECK(has_mailbox(u, "a.b"));
    CHECK(has_mailbox(u, "a.b.c"));
    CHECK_EQ(store_mailbox_create(u, "x/y", 0), -EINVAL);
    CHECK_EQ(store_mailbox_create(u, "/", 0), -EINVAL);
    CHECK_EQ(store_mailbox_create(u, ".x", 0), -EINVAL);
    CHECK_EQ(store_mailbox_create(u, "x.", 0), -EINVAL);
    CHECK_EQ(store_mailbox_create(u, "a..b", 0), -EINVAL);
    CHECK_EQ(store_mailbox_create(u, "..", 0), -EINVAL);
    CHECK_EQ(count_mailboxes(u), 4);
    CHECK_EQ(store_mailbox_delete(u, "a.b"), -ENOTEMPTY);
    CHECK_EQ(store_mailbox_rename(u, "a", "z"), 0);
    CHECK(has_mailbox(u, "z.b.c"));
    CHECK(!has_mailbox(u, "a.b"));
    store_user_close(u);
    REQUIRE_OK(store_user_open(root, "kim", &o, &u));
    CHECK(has_mailbox(u, "z.b.c"));
    CHECK(has_mailbox(u, "z.b"));
    store_user_close(u);
    test_rm_rf(root);
    free(root);
}

static void test_persistence(void)
{
    char *root = new_root("mbx-persist");
    store_user *u = NULL;
    REQUIRE_OK(store_user_open(root, "leo", NULL, &u));
    REQUIRE_OK(store_mailbox_create(u, "Lists/ietf", 0));
    REQUIRE_OK(store_mailbox_create(u, "Lists/linux", 0));
    REQUIRE_OK(store_mailbox_create(u, "Drafts", STORE_SPECIAL_DRAFTS));
    REQUIRE_OK(store_mailbox_create(u, "Gone", 0));
    REQUIRE_OK(store_mailbox_subscribe(u, "Drafts", true));
    REQUIRE_OK(store_mailbox_subscribe(u, "Lists/ietf", true));
    REQUIRE_OK(store_mailbox_delete(u, "Gone"));
    REQUIRE_OK(store_mailbox_rename(u, "Lists/linux", "Lists/kernel"));
    store_mbox *mb = NULL;
    REQUIRE_OK(store_mbox_open(u, "Lists/ietf", &mb));
    uint32_t uid;
    REQUIRE_OK(append_raw(mb, MSG1, STORE_F_SEEN, &uid));
    REQUIRE_OK(append_raw(mb, MSG2, 0, &uid));
    store_mbox_close(mb);

    store_mailbox_info *v1 = NULL, *v2 = NULL;
    size_t n1 = 0, n2 = 0;
    REQUIRE_OK(store_mailbox_list(u, &v1, &n1));
    store_status st1;
    REQUIRE_OK(store_mailbox_status(u, "Lists/ietf", &st1));
    store_user_close(u);

    REQUIRE_OK(store_user_open(root, "leo", NULL, &u));
    REQUIRE_OK(store_mailbox_list(u, &v2, &n2));
    CHECK_EQ(n1, n2);
    for (size_t i = 0; i < n1 && i < n2; i++) {
        CHECK(strcmp(v1[i].name, v2[i].name) == 0);
        CHECK_EQ(v1[i].id, v2[i].id);
        CHECK_EQ(v1[i].uidvalidity, v2[i].uidvalidity);
        CHECK_EQ(v1[i].special, v2[i].special);
        CHECK_EQ(v1[i].subscribed, v2[i].subscribed);
    }
    CHECK(find_info(v2, n2, "Gone") < 0);
    CHECK(find_info(v2, n2, "Lists/linux") < 0);
    CHECK(find_info(v2, n2, "Lists/kernel") >= 0);
    store_status st2;
    REQUIRE_OK(store_mailbox_status(u, "Lists/ietf", &st2));
    CHECK_EQ(st2.messages, st1.messages);
    CHECK_EQ(st2.unseen, st1.unseen);
    CHECK_EQ(st2.uidnext, st1.uidnext);
    CHECK_EQ(st2.uidvalidity, st1.uidvalidity);
    CHECK_EQ(st2.highestmodseq, st1.highestmodseq);
    CHECK_EQ(st2.size, st1.size);
    const char *const two[] = { MSG1, MSG2 };
    check_contents(u, "Lists/ietf", two, 2);
    store_mailbox_info_free(v1, n1);
    store_mailbox_info_free(v2, n2);
    store_user_close(u);

    /* Two users under one root do not see each other. */
    store_user *w = NULL;
    REQUIRE_OK(store_user_open(root, "other", NULL, &w));
    CHECK_EQ(count_mailboxes(w), 1);
    CHECK(!has_mailbox(w, "Drafts"));
    store_user_close(w);
    test_rm_rf(root);
    free(root);
}

static void test_bad_user_names(void)
{
    char *root = new_root("mbx-users");
    char inner[600];
    test_pathf(inner, sizeof inner, "%s/root", root);
    REQUIRE(mkdir(inner, 0700) == 0);
    static const char *const bad[] = {
        "../x", "..", ".", "", "a/b", "/abs", "x/..", "a\x01", "a\nb",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        store_user *u = NULL;
        int r = store_user_open(inner, bad[i], NULL, &u);
        if (r != -EINVAL)
            fprintf(stderr, "  user name #%zu returned %d\n", i, r);
        CHECK_EQ(r, -EINVAL);
        if (r == 0)
            store_user_close(u);
    }
    /* nothing escaped the mail root */
    char esc[700];
    test_pathf(esc, sizeof esc, "%s/x", root);
    CHECK(!path_exists(esc));
    /* a normal user still works */
    store_user *u = NULL;
    CHECK_EQ(store_user_open(inner, "normal.user+tag@example.com", NULL, &u), 0);
    if (u)
        store_user_close(u);
    test_rm_rf(root);
    free(root);
}

/* A closed mailbox lingers open while its user is open: reopening it must
 * still see what another process (a fork with its own handles) appended
 * meanwhile and go on with the right UIDs; a lingering mailbox that was
 * deleted is not revived by a new one of the same name; more than the
 * linger limit of mailboxes can be opened and closed in turn. */
static void test_linger(void)
{
    char *root = new_root("mbx-linger");
    store_user *u = NULL;
    REQUIRE_OK(store_user_open(root, "lin", NULL, &u));
    store_mbox *mb = NULL;
    uint32_t uid1 = 0, uid3 = 0;
    REQUIRE_OK(store_mbox_open(u, "INBOX", &mb));
    REQUIRE_OK(append_raw(mb, MSG1, 0, &uid1));
    store_mbox_close(mb);           /* lingers */

    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        store_user *cu = NULL;
        store_mbox *cm = NULL;
        uint32_t cuid = 0;
        int ok = store_user_open(root, "lin", NULL, &cu) == 0 &&
                 store_mbox_open(cu, "INBOX", &cm) == 0 &&
                 append_raw(cm, MSG2, 0, &cuid) == 0 && cuid == uid1 + 1;
        store_mbox_close(cm);
        store_user_close(cu);
        _exit(ok ? 0 : 1);
    }
    int st = 0;
    REQUIRE(pid > 0 && waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    REQUIRE_OK(store_mbox_open(u, "INBOX", &mb));   /* the lingering handle */
    REQUIRE_OK(append_raw(mb, MSG3, 0, &uid3));
    CHECK_EQ(uid3, uid1 + 2);
    store_mbox_close(mb);
    const char *const all[] = { MSG1, MSG2, MSG3 };
    check_contents(u, "INBOX", all, 3);

    /* Delete a lingering mailbox, create one of the same name: empty. */
    REQUIRE_OK(store_mailbox_create(u, "Old", 0));
    REQUIRE_OK(store_mbox_open(u, "Old", &mb));
    REQUIRE_OK(append_raw(mb, MSG1, 0, NULL));
    store_mbox_close(mb);
    REQUIRE_OK(store_mailbox_delete(u, "Old"));
    REQUIRE_OK(store_mailbox_create(u, "Old", 0));
    check_contents(u, "Old", NULL, 0);

    /* Twenty mailboxes, each opened, written and closed in turn, twice. */
    char name[32];
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof name, "box%d", i);
        REQUIRE_OK(store_mailbox_create(u, name, 0));
    }
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 20; i++) {
            snprintf(name, sizeof name, "box%d", i);
            REQUIRE_OK(store_mbox_open(u, name, &mb));
            REQUIRE_OK(append_raw(mb, round ? MSG2 : MSG1, 0, NULL));
            store_mbox_close(mb);
        }
    const char *const two[] = { MSG1, MSG2 };
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof name, "box%d", i);
        check_contents(u, name, two, 2);
    }
    store_user_close(u);            /* closes what lingers */

    /* And everything is there for a fresh open. */
    REQUIRE_OK(store_user_open(root, "lin", NULL, &u));
    check_contents(u, "INBOX", all, 3);
    check_contents(u, "box19", two, 2);
    store_user_close(u);
    test_rm_rf(root);
    free(root);
}

/* ---- names that round-trip, \Noselect ------------------------------ */

static const char *const RT_NAMES[] = {
    " Work", "Work", "Work ", "  two  spaces  ", " ", "a \"quoted\" name",
    "back\\slash", "100%", "a*b", "%", "*", "Caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac",
    " INBOX", "x/ y /z ", "M 1 2 3 x", "N x", "S y",
};
#define RT_N (sizeof RT_NAMES / sizeof *RT_NAMES)

/* Each of RT_NAMES but `gone` exists under its id, subscribed, holding one
 * message whose bytes are its name; `gone` does not exist. */
static void check_rt_names(store_user *u, const uint64_t *ids, const char *gone)
{
    for (size_t i = 0; i < RT_N; i++) {
        store_mailbox_info g = {0};
        if (gone && !strcmp(RT_NAMES[i], gone)) {
            CHECK_EQ(store_mailbox_get(u, RT_NAMES[i], &g), -ENOENT);
            continue;
        }
        CHECK_EQ(store_mailbox_get(u, RT_NAMES[i], &g), 0);
        CHECK(g.name && strcmp(g.name, RT_NAMES[i]) == 0);
        CHECK_EQ(g.id, ids[i]);
        CHECK(g.subscribed);
        free(g.name);
        CHECK_EQ(count_subscriptions(u, RT_NAMES[i]), 1);
        const char *const one[] = { RT_NAMES[i] };
        check_contents(u, RT_NAMES[i], one, 1);
    }
    store_mailbox_info *v = NULL;
    size_t n = 0;
    REQUIRE_OK(store_mailbox_list(u, &v, &n));
    CHECK_EQ(n, RT_N + 3 - (gone != NULL));    /* + INBOX, "x", "x/ y " */
    for (size_t i = 0; i < n; i++)
        for (size_t k = i + 1; k < n; k++)
            CHECK(strcmp(v[i].name, v[k].name) != 0);
    store_mailbox_info_free(v, n);
}

/* Every valid name comes back byte for byte after the list is read again,
 * and a name that differs from another only in spaces stays apart from it
 * (a loader that skipped a leading space made " Work" a second "Work", " "
 * an unreachable "", and DELETE of one removed the other's files). */
static void test_names_round_trip(void)
{
    char *root = new_root("mbx-names");
    store_user *u = NULL;
    uint64_t ids[RT_N];
    REQUIRE_OK(store_user_open(root, "nina", NULL, &u));
    for (size_t i = 0; i < RT_N; i++) {
        CHECK_EQ(store_mailbox_create(u, RT_NAMES[i], 0), 0);
        CHECK_EQ(store_mailbox_subscribe(u, RT_NAMES[i], true), 0);
        store_mbox *mb = NULL;
        REQUIRE_OK(store_mbox_open(u, RT_NAMES[i], &mb));
        uint32_t uid;
        CHECK_EQ(append_raw(mb, RT_NAMES[i], 0, &uid), 0);
        store_mbox_close(mb);
        store_mailbox_info g = {0};
        REQUIRE_OK(store_mailbox_get(u, RT_NAMES[i], &g));
        ids[i] = g.id;
        free(g.name);
    }
    check_rt_names(u, ids, NULL);
    store_user_close(u);

    REQUIRE_OK(store_user_open(root, "nina", NULL, &u));
    check_rt_names(u, ids, NULL);
    CHECK_EQ(store_mailbox_delete(u, " Work"), 0);
    store_user_close(u);

    REQUIRE_OK(store_user_open(root, "nina", NULL, &u));
    check_rt_names(u, ids, " Work");
    store_user_close(u);
    test_rm_rf(root);
    free(root);
}

/* A list file written by an earlier version loads with its names exact;
 * malformed mailbox lines are refused, not guessed at. */
static void test_list_file_compat(void)
{
    char *root = new_root("mbx-listfile");
    char dir[PATH_MAX], path[PATH_MAX];
    test_pathf(dir, sizeof dir, "%s/olga", root);
    REQUIRE(mkdir(dir, 0700) == 0);
    test_pathf(path, sizeof path, "%s/mailboxes", dir);
    test_write_file(path, "RINGMAIL-MAILBOXES 1\nnext_id 4\nlast_uidvalidity 1700000003\n"
               "M 1 1700000001 0 INBOX\nM 2 1700000002 0  lead\n"
               "M 3 1700000003 4 Trash can \nS  lead\nS gone\n");
    store_user *u = NULL;
    REQUIRE_OK(store_user_open(root, "olga", NULL, &u));
    store_mailbox_info g = {0};
    CHECK_EQ(store_mailbox_get(u, " lead", &g), 0);
    CHECK_EQ(g.id, 2);
    CHECK_EQ(g.uidvalidity, 1700000002u);
    CHECK(g.subscribed);
    free(g.name);
    memset(&g, 0, sizeof g);
    CHECK_EQ(store_mailbox_get(u, "Trash can ", &g), 0);
    CHECK_EQ(g.id, 3);
    CHECK_EQ(g.special, STORE_SPECIAL_TRASH);
    free(g.name);
    CHECK_EQ(store_mailbox_get(u, "lead", &g), -ENOENT);
    CHECK_EQ(count_mailboxes(u), 3);
    CHECK(has_subscription(u, "gone", false));
    store_user_close(u);

    static const char *const bad[] = {
        "M 5 1 0\n", "M 5 x 0 a\n", "M 5  1 0 a\n", "M -5 1 0 a\n",
        "M 5 1 4294967296 a\n", "M 99999999999999999999 1 0 a\n", "N \n", "Q x\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char text[256];
        snprintf(text, sizeof text, "RINGMAIL-MAILBOXES 1\nnext_id 9\nM 1 1 0 INBOX\n%s",
                 bad[i]);
        test_write_file(path, text);
        int r = store_user_open(root, "olga", NULL, &u);
        if (r != -EBADMSG)
            fprintf(stderr, "  bad list line #%zu: open returned %d\n", i, r);
        CHECK_EQ(r, -EBADMSG);
        if (r == 0)
            store_user_close(u);
    }

    /* What an earlier version saved after its loader had dropped leading
     * spaces: " INBOX" as a second "INBOX", " Work" as a second "Work", " "
     * as "".  Every mailbox is reachable again under a name of its own; the
     * oldest keeps the name; deleting one leaves the other's files. */
    test_write_file(path, "RINGMAIL-MAILBOXES 1\nnext_id 6\nlast_uidvalidity 8\n"
               "M 4 7 0 Work\nM 2 5 0 INBOX\nM 1 1 0 INBOX\nM 3 6 0 Work\n"
               "M 5 8 0 \nM 6 9 0 Work-4\nS Work\n");
    REQUIRE_OK(store_user_open(root, "olga", NULL, &u));
    static const struct { const char *name; uint64_t id; } want[] = {
        {"INBOX", 1}, {"INBOX-2", 2}, {"Work", 3}, {"Work-4-1", 4}, {"mailbox-5", 5},
        {"Work-4", 6},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        memset(&g, 0, sizeof g);
        CHECK_EQ(store_mailbox_get(u, want[i].name, &g), 0);
        if (g.id != want[i].id)
            fprintf(stderr, "  repaired %s: id %llu, want %llu\n", want[i].name,
                    (unsigned long long)g.id, (unsigned long long)want[i].id);
        CHECK_EQ(g.id, want[i].id);
        free(g.name);
    }
    CHECK_EQ(count_mailboxes(u), 6);
    for (int id = 1; id <= 6; id++) {
        test_pathf(dir, sizeof dir, "%s/olga/m/%d", root, id);
        mkdir(dir, 0700);
    }
    CHECK_EQ(store_mailbox_delete(u, "Work"), 0);
    test_pathf(dir, sizeof dir, "%s/olga/m/4", root);
    CHECK(path_exists(dir));
    test_pathf(dir, sizeof dir, "%s/olga/m/3", root);
    CHECK(!path_exists(dir));
    store_user_close(u);
    /* The repair was saved with that change: the same names after reload. */
    REQUIRE_OK(store_user_open(root, "olga", NULL, &u));
    CHECK_EQ(count_mailboxes(u), 5);
    CHECK(has_mailbox(u, "Work-4-1"));
    CHECK(has_mailbox(u, "mailbox-5"));
    CHECK(has_mailbox(u, "INBOX-2"));
    CHECK(!has_mailbox(u, "Work"));
    store_user_close(u);
    test_rm_rf(root);
    free(root);
}

/* RFC 3501 6.3.4 through store_mailbox_delete_ext: a parent's messages go,
 * its name stays \Noselect (persistently), a \Noselect parent cannot be
 * deleted, CREATE revives it, RENAME moves it, and the plain delete keeps
 * refusing parents. */
static void test_noselect(void)
{
    char *root = new_root("mbx-noselect");
    store_user *u = NULL;
    REQUIRE_OK(store_user_open(root, "paul", NULL, &u));
    REQUIRE_OK(store_mailbox_create(u, "p/q", 0));
    REQUIRE_OK(store_mailbox_set_special(u, "p", STORE_SPECIAL_ARCHIVE));
    store_mailbox_info g = {0};
    REQUIRE_OK(store_mailbox_get(u, "p", &g));
    uint64_t pid = g.id;
    uint32_t puv = g.uidvalidity;
    free(g.name);
    store_mbox *mb = NULL;
    REQUIRE_OK(store_mbox_open(u, "p", &mb));
    uint32_t uid;
    REQUIRE_OK(append_raw(mb, MSG1, 0, &uid));
    store_mbox_close(mb);
    char dir[PATH_MAX];
    test_pathf(dir, sizeof dir, "%s/paul/m/%llu", root, (unsigned long long)pid);
    CHECK(path_exists(dir));

    CHECK_EQ(store_mailbox_delete(u, "p"), -ENOTEMPTY);
    CHECK_EQ(store_mailbox_delete_ext(u, "p", STORE_DELETE_KEEP_PARENT), 0);
    CHECK(!path_exists(dir));   /* its messages are gone */
    CHECK_EQ(store_mbox_open(u, "p", &mb), -ENOENT);
    CHECK_EQ(store_mailbox_get(u, "p", &g), -ENOENT);
    store_status st;
    CHECK_EQ(store_mailbox_status(u, "p", &st), -ENOENT);
    CHECK_EQ(store_mailbox_set_special(u, "p", 0), -ENOENT);
    CHECK(!has_mailbox(u, "p"));    /* store_mailbox_list: openable ones only */
    CHECK(has_mailbox(u, "p/q"));
    CHECK_EQ(store_mailbox_delete_ext(u, "p", STORE_DELETE_KEEP_PARENT), -ENOTEMPTY);
    CHECK_EQ(store_mailbox_delete(u, "p"), -ENOTEMPTY);
    CHECK_EQ(store_mailbox_create(u, "p/r", 0), 0);    /* under a \Noselect parent */
    store_user_close(u);

    /* Persistent; store_mailbox_list_all shows it. */
    REQUIRE_OK(store_user_open(root, "paul", NULL, &u));
    store_mailbox_info *v = NULL;
    size_t n = 0;
    REQUIRE_OK(store_mailbox_list_all(u, &v, &n));
    long k = find_info(v, n, "p");
    CHECK(k >= 0);
    if (k >= 0) {
        CHECK(v[k].noselect);
        CHECK_EQ(v[k].id, 0);
        CHECK_EQ(v[k].special, 0);
    }
    CHECK_EQ(n, 4);
    long q = find_info(v, n, "p/q");
    CHECK(q >= 0 && !v[q].noselect);
    store_mailbox_info_free(v, n);
    CHECK_EQ(count_mailboxes(u), 3);

    /* RENAME moves it along with its children. */
    CHECK_EQ(store_mailbox_rename(u, "p", "z"), 0);
    REQUIRE_OK(store_mailbox_list_all(u, &v, &n));
    k = find_info(v, n, "z");
    CHECK(k >= 0 && v[k].noselect);
    CHECK(find_info(v, n, "p") < 0);
    CHECK(find_info(v, n, "z/q") >= 0 && find_info(v, n, "z/r") >= 0);
    store_mailbox_info_free(v, n);

    /* The last child's deletion leaves the parent; then it can go. */
    CHECK_EQ(store_mailbox_delete(u, "z/q"), 0);
    CHECK_EQ(store_mailbox_delete(u, "z/r"), 0);
    REQUIRE_OK(store_mailbox_list_all(u, &v, &n));
    k = find_info(v, n, "z");
    CHECK(k >= 0 && v[k].noselect);
    store_mailbox_info_free(v, n);

    /* CREATE makes it a new, empty mailbox. */
    CHECK_EQ(store_mailbox_create(u, "z", 0), 0);
    CHECK_EQ(store_mailbox_create(u, "z", 0), -EEXIST);
    REQUIRE_OK(store_mailbox_get(u, "z", &g));
    CHECK(!g.noselect);
    CHECK(g.id != 0 && g.id != pid);
    CHECK(g.uidvalidity > puv);
    free(g.name);
    CHECK_EQ(store_mailbox_status(u, "z", &st), 0);
    CHECK_EQ(st.messages, 0);
    store_user_close(u);
    REQUIRE_OK(store_user_open(root, "paul", NULL, &u));
    CHECK(has_mailbox(u, "z"));
    CHECK_EQ(store_mailbox_delete(u, "z"), 0);

    /* A \Noselect name without children is deleted like a mailbox. */
    REQUIRE_OK(store_mailbox_create(u, "a/b", 0));
    CHECK_EQ(store_mailbox_delete_ext(u, "a", STORE_DELETE_KEEP_PARENT), 0);
    CHECK_EQ(store_mailbox_delete(u, "a/b"), 0);
    CHECK_EQ(store_mailbox_delete(u, "a"), 0);
    REQUIRE_OK(store_mailbox_list_all(u, &v, &n));
    CHECK_EQ(n, 1);
    store_mailbox_info_free(v, n);
    CHECK_EQ(store_mailbox_delete_ext(u, "INBOX", STORE_DELETE_KEEP_PARENT), -EPERM);
    store_user_close(u);
    test_rm_rf(root);
    free(root);
}

int main(void)
{
    RUN_ISOLATED(test_opts_and_fsync_parse, 300);
    RUN_ISOLATED(test_inbox_created, 300);
    RUN_ISOLATED(test_create_list_get, 300);
    RUN_ISOLATED(test_nested_create, 300);
    RUN_ISOLATED(test_invalid_names, 300);
    RUN_ISOLATED(test_delete, 300);
    RUN_ISOLATED(test_rename, 300);
    RUN_ISOLATED(test_rename_inbox, 300);
    RUN_ISOLATED(test_rename_open_and_children, 300);
    RUN_ISOLATED(test_subscriptions, 300);
    RUN_ISOLATED(test_special_use, 300);
    RUN_ISOLATED(test_uidvalidity, 300);
    RUN_ISOLATED(test_dot_separator, 300);
    RUN_ISOLATED(test_persistence, 300);
    RUN_ISOLATED(test_bad_user_names, 300);
    RUN_ISOLATED(test_linger, 300);
    RUN_ISOLATED(test_names_round_trip, 300);
    RUN_ISOLATED(test_list_file_compat, 300);
    RUN_ISOLATED(test_noselect, 300);
    return test_summary();
}
