/* tests/unit/test_store_freeze.c — a frozen user (store_user_freeze): every
 * kind of write fails with -EROFS, in this process and with handles opened
 * before the freeze, while reading goes on; the freeze waits for a writer
 * that holds a mailbox's lock; a thaw lets writes in again. */
#include <fcntl.h>
#include <string.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/file.h>
#include <unistd.h>

#include "store/store.h"
#include "tests/unit/store_testutil.h"

static void test_frozen_refuses_writes(void)
{
    test_env e;
    REQUIRE_OK(test_env_open(&e, "freeze"));
    REQUIRE_OK(test_append_n(e.mb, 3, 1000000000));
    REQUIRE_OK(store_mailbox_create(e.u, "Work", 0));
    CHECK_EQ(store_user_frozen(e.root, "user", NULL, 0), 0);
    REQUIRE_OK(store_user_freeze(e.root, "user", "moving to 127.0.0.1:1143"));
    char why[100];
    CHECK_EQ(store_user_frozen(e.root, "user", why, sizeof why), 1);
    CHECK(!strcmp(why, "moving to 127.0.0.1:1143"));
    CHECK_EQ(test_append_n(e.mb, 1, 1000000000), -EROFS);
    store_range all = {1, UINT32_MAX};
    uint64_t ms = 0;
    CHECK_EQ(store_flags(e.mb, &all, 1, STORE_FLAGS_ADD, STORE_F_SEEN, NULL, 0, 0, NULL, NULL,
                         &ms), -EROFS);
    CHECK_EQ(store_expunge(e.mb, NULL, 0, false, NULL, &ms), -EROFS);
    CHECK_EQ(store_mailbox_create(e.u, "New", 0), -EROFS);
    CHECK_EQ(store_mailbox_rename(e.u, "Work", "Play"), -EROFS);
    CHECK_EQ(store_mailbox_delete(e.u, "Work"), -EROFS);
    CHECK_EQ(store_mailbox_subscribe(e.u, "Work", true), -EROFS);
    CHECK_EQ(store_compact(e.mb, NULL, NULL), -EROFS);
    /* reading goes on */
    store_status st;
    REQUIRE_OK(store_mbox_status(e.mb, &st));
    CHECK_EQ(st.messages, 3);
    store_mailbox_info *v;
    size_t n;
    REQUIRE_OK(store_mailbox_list(e.u, &v, &n));
    CHECK_EQ(n, 2);
    store_mailbox_info_free(v, n);
    /* nothing of the refused writes is there after a reopen either */
    REQUIRE_OK(test_env_reopen(&e));
    REQUIRE_OK(store_mbox_status(e.mb, &st));
    CHECK_EQ(st.messages, 3);
    CHECK_EQ(st.unseen, 3);
    REQUIRE_OK(store_user_thaw(e.root, "user"));
    CHECK_EQ(store_user_frozen(e.root, "user", NULL, 0), 0);
    REQUIRE_OK(test_append_n(e.mb, 1, 1000000000));
    REQUIRE_OK(store_mailbox_create(e.u, "New", 0));
    REQUIRE_OK(store_user_thaw(e.root, "user"));     /* not frozen: still 0 */
    CHECK_EQ(store_user_freeze(e.root, "nobody", "x"), -ENOENT);
    CHECK_EQ(store_user_freeze(e.root, "user", "two\nlines"), -EINVAL);
    test_env_close(&e);
}

struct freezer {
    const char *root;
    atomic_int done;
    int rc;
};

static void *freeze_thread(void *arg)
{
    struct freezer *f = arg;
    f->rc = store_user_freeze(f->root, "user", "moving");
    atomic_store(&f->done, 1);
    return NULL;
}

/* A write in progress holds the mailbox's lock: the freeze returns only
 * after it let go, so a write acknowledged before the freeze returned is
 * in the log. */
static void test_freeze_waits_for_writer(void)
{
    test_env e;
    REQUIRE_OK(test_env_open(&e, "freeze-wait"));
    char lp[700];
    snprintf(lp, sizeof lp, "%s", store_mbox_dir(e.mb));
    strncat(lp, "/lock", sizeof lp - strlen(lp) - 1);
    int fd = open(lp, O_RDWR);
    REQUIRE(fd >= 0);
    REQUIRE(flock(fd, LOCK_EX) == 0);
    struct freezer f = {.root = e.root};
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, freeze_thread, &f) == 0);
    usleep(200 * 1000);
    CHECK_EQ(atomic_load(&f.done), 0);
    close(fd);
    pthread_join(t, NULL);
    CHECK_EQ(f.rc, 0);
    CHECK_EQ(test_append_n(e.mb, 1, 1000000000), -EROFS);
    REQUIRE_OK(store_user_thaw(e.root, "user"));
    test_env_close(&e);
}

int main(void)
{
    RUN(test_frozen_refuses_writes);
    RUN(test_freeze_waits_for_writer);
    return test_summary();
}
