/* tests/unit/store_testutil.h — what the store tests share on top of
 * testutil.h: opening a user's INBOX in one call. */
#ifndef RINGMAIL_STORE_TESTUTIL_H
#define RINGMAIL_STORE_TESTUTIL_H

#include "store/store.h"
#include "tests/unit/testutil.h"

/* Open user's INBOX in the store at root with the fsync policy fs.  On
 * failure returns -errno with *u and *mb NULL (nothing left open). */
static inline int test_inbox_open(const char *root, const char *user, store_fsync fs,
                                  store_user **u, store_mbox **mb)
{
    store_opts o;
    store_opts_default(&o);
    o.fsync = fs;
    *u = NULL;
    *mb = NULL;
    int rc = store_user_open(root, user, &o, u);
    if (rc < 0)
        return rc;
    rc = store_mbox_open(*u, "INBOX", mb);
    if (rc < 0) {
        store_user_close(*u);
        *u = NULL;
    }
    return rc;
}

/* Close what test_inbox_open opened; either may be NULL. */
static inline void test_inbox_close(store_user *u, store_mbox *mb)
{
    if (mb)
        store_mbox_close(mb);
    if (u)
        store_user_close(u);
}

#endif
