/* tests/unit/store_testutil.h — what the store tests share on top of
 * testutil.h: opening a user's INBOX in one call, and a mailbox as a
 * client sees it, as one string. */
#ifndef RINGMAIL_STORE_TESTUTIL_H
#define RINGMAIL_STORE_TESTUTIL_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

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


/* Everything a client can see of a mailbox, as one string (malloc'd):
 * UIDNEXT, HIGHESTMODSEQ, and per live message its UID, flags, modseq,
 * internal date, size, a CRC of its bytes and its keywords by name.  Two
 * states are the same to every client when their strings are equal. */
static inline char *test_describe_mbox(store_mbox *mb)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    store_snap *s = store_snap_get(mb);
    if (!f || !s)
        abort();
    fprintf(f, "uidnext %u hms %" PRIu64 "\n", store_snap_uidnext(s),
            store_snap_highestmodseq(s));
    for (uint32_t p = 0; p < store_snap_entries(s); p++) {
        store_msg m;
        if (store_snap_entry(s, p, &m) != 1)
            continue;
        const char *bytes;
        size_t got = 0;
        uint32_t crc = 0;
        if (store_snap_bytes(s, m.uid, 0, SIZE_MAX, &bytes, &got) == 0)
            crc = store_crc32c(0, bytes, got);
        fprintf(f, "%u f%#x m%" PRIu64 " d%" PRId64 " s%u/%zu c%08x k", m.uid, m.flags,
                m.modseq, m.internal_date, m.size, got, crc);
        for (unsigned k = 0; k < 64; k++)
            if (m.keywords & (1ull << k))
                fprintf(f, " %s", store_snap_keyword(s, k) ? store_snap_keyword(s, k) : "?");
        fputc('\n', f);
    }
    store_snap_put(s);
    fclose(f);
    return out;
}

/* One user's INBOX in a fresh temporary mail root, for tests that work on
 * one mailbox: test_env_open, test_env_reopen (close and open again, as
 * a restart), test_env_close (removes the root). */
typedef struct test_env {
    char root[512];
    store_user *u;
    store_mbox *mb;
} test_env;

static inline int test_env_open(test_env *e, const char *tag)
{
    snprintf(e->root, sizeof e->root, "%s", test_tmpdir(tag));
    return test_inbox_open(e->root, "user", STORE_FSYNC_NEVER, &e->u, &e->mb);
}

static inline int test_env_reopen(test_env *e)
{
    test_inbox_close(e->u, e->mb);
    return test_inbox_open(e->root, "user", STORE_FSYNC_NEVER, &e->u, &e->mb);
}

static inline void test_env_close(test_env *e)
{
    test_inbox_close(e->u, e->mb);
    test_rm_rf(e->root);
}

/* n small messages "Subject: s<i>" appended one by one, dated `date`. */
static inline int test_append_n(store_mbox *mb, unsigned n, int64_t date)
{
    for (unsigned i = 0; i < n; i++) {
        char b[160];
        int len = snprintf(b, sizeof b,
                           "From: a@example.com\r\nSubject: s%u\r\n\r\nbody %u\r\n", i, i);
        store_new_msg m = {.data = b, .len = (size_t)len, .internal_date = date};
        int rc = store_append(mb, &m, 1, NULL);
        if (rc < 0)
            return rc;
    }
    return 0;
}

#endif
