/* tests/unit/test_store_objid.c — EMAILID (RFC 8474) and the save date
 * (RFC 8514) as the store keeps them: given at append, carried by COPY and
 * MOVE within a user (a new one across users), a new save date for every
 * copy; unchanged across reopen, compaction, an index rebuilt from the log
 * and check --repair; a log of the older format (no extension) readable,
 * with deterministic ids, and raised to the new version by its first new
 * message. */
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/format.h"
#include "store/internal.h"
#include "store/store.h"
#include "tests/unit/store_testutil.h"

static uint64_t box_id(store_user *u, const char *name)
{
    store_mailbox_info i;
    if (store_mailbox_get(u, name, &i) < 0)
        return 0;
    free(i.name);
    return i.id;
}

static int ext_of(store_mbox *mb, uint32_t uid, store_msg_ext *x)
{
    store_snap *s = store_snap_get(mb);
    if (!s)
        return -ENOMEM;
    int rc = store_snap_msg_ext(s, uid, x);
    store_snap_put(s);
    return rc;
}

/* Every live message's EMAILID and save date, as one string (malloc'd). */
static char *describe_ext(store_mbox *mb)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    store_snap *s = store_snap_get(mb);
    if (!f || !s)
        abort();
    for (uint32_t p = 0; p < store_snap_entries(s); p++) {
        store_msg m;
        if (store_snap_entry(s, p, &m) != 1)
            continue;
        store_msg_ext x;
        char id[STORE_OBJECTID_MAX];
        if (store_snap_msg_ext(s, m.uid, &x) < 0) {
            fprintf(f, "%u error\n", m.uid);
            continue;
        }
        store_emailid_format(&x, id);
        fprintf(f, "%u %s %" PRId64 "\n", m.uid, id, x.save_date);
    }
    store_snap_put(s);
    fclose(f);
    return out;
}

static uint32_t log_version(store_mbox *mb)
{
    store_snap *s = store_snap_get(mb);
    struct log_file_hdr lh;
    int rc = s ? store_log_hdr_read(s->g->log_fd, &lh) : -ENOMEM;
    if (s)
        store_snap_put(s);
    return rc < 0 ? 0 : lh.version;
}

static void test_format(void)
{
    char b[STORE_OBJECTID_MAX];
    store_msg_ext x = {.email_mbox = 0x1f, .email_uid = 0x2a, .email_uv = 0x5f000000u};
    store_emailid_format(&x, b);
    CHECK(!strcmp(b, "M5f000000_1f_2a"));
    store_msg_ext y;
    REQUIRE_OK(store_emailid_parse(b, &y));
    CHECK(y.email_mbox == 0x1f && y.email_uid == 0x2a && y.email_uv == 0x5f000000u);
    x = (store_msg_ext){.email_mbox = UINT64_MAX, .email_uid = UINT32_MAX,
                        .email_uv = UINT32_MAX};
    store_emailid_format(&x, b);
    CHECK(strlen(b) < STORE_OBJECTID_MAX);
    REQUIRE_OK(store_emailid_parse(b, &y));
    CHECK(y.email_mbox == UINT64_MAX && y.email_uid == UINT32_MAX && y.email_uv == UINT32_MAX);
    /* Only the one spelling store_emailid_format makes. */
    static const char *bad[] = {"", "M", "M1", "M1_2", "M1_2_", "M_1_2", "M1__2", "m1_2_3",
                                "M01_2_3", "M1_02_3", "M1_2_03", "M1_2_0", "M1_2_A",
                                "M1_2_3_4", "M1_2_100000000", "M100000000_2_3",
                                "M1_10000000000000000_3", "T1_2_3", "M1_2_3 "};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(store_emailid_parse(bad[i], &y) == -EINVAL);
    /* THREADID: "T" and 16 hex digits, one spelling, never 0. */
    uint64_t t;
    store_threadid_format(0xabcdef0123456789ull, b);
    CHECK(!strcmp(b, "Tabcdef0123456789"));
    REQUIRE_OK(store_threadid_parse(b, &t));
    CHECK_EQ(t, 0xabcdef0123456789ull);
    static const char *tbad[] = {"", "T", "T1", "T0000000000000000", "TABCDEF0123456789",
                                 "Mabcdef0123456789", "Tabcdef01234567890", "Tabcdef012345678g"};
    for (size_t i = 0; i < sizeof tbad / sizeof *tbad; i++)
        CHECK(store_threadid_parse(tbad[i], &t) == -EINVAL);
    store_mailboxid_format(7, 0x5f000000u, b);
    CHECK(!strcmp(b, "F5f000000_7"));
    for (const char *p = b; *p; p++)
        CHECK((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '_' || *p == '-');
}

static void test_append(void)
{
    test_env e;
    REQUIRE_OK(test_env_open(&e, "objid-append"));
    int64_t t0 = time(NULL);
    REQUIRE_OK(test_append_n(e.mb, 3, 1000000000));
    int64_t t1 = time(NULL);
    uint64_t inbox = box_id(e.u, "INBOX");
    REQUIRE(inbox != 0);
    store_snap *s0 = store_snap_get(e.mb);
    uint32_t uv = store_snap_uidvalidity(s0);
    store_snap_put(s0);
    for (uint32_t uid = 1; uid <= 3; uid++) {
        store_msg_ext x;
        REQUIRE_OK(ext_of(e.mb, uid, &x));
        CHECK_EQ(x.email_mbox, inbox);
        CHECK_EQ(x.email_uid, uid);
        CHECK_EQ(x.email_uv, uv);
        /* The time of saving, not the internal date. */
        CHECK(x.save_date >= t0 && x.save_date <= t1);
    }
    store_msg_ext x;
    CHECK_EQ(ext_of(e.mb, 4, &x), -ENOENT);
    CHECK_EQ(log_version(e.mb), LOG_VERSION_EXT);
    /* Through a cursor too. */
    store_snap *s = store_snap_get(e.mb);
    store_cursor c;
    store_cursor_init(&c, s);
    CHECK_EQ(store_cursor_seek(&c, 2, NULL), 1);
    REQUIRE_OK(store_cursor_ext(&c, &x));
    CHECK_EQ(x.email_uid, 2);
    store_snap_put(s);
    test_env_close(&e);
}

static void test_copy_move(void)
{
    test_env e;
    REQUIRE_OK(test_env_open(&e, "objid-copy"));
    REQUIRE_OK(test_append_n(e.mb, 4, 1000000000));
    REQUIRE_OK(store_mailbox_create(e.u, "Other", 0));
    store_mbox *o;
    REQUIRE_OK(store_mbox_open(e.u, "Other", &o));
    store_msg_ext a1, a2;
    REQUIRE_OK(ext_of(e.mb, 1, &a1));
    REQUIRE_OK(ext_of(e.mb, 2, &a2));
    /* A copy made later gets the time of the copy as its save date. */
    sleep(1);
    int64_t t0 = time(NULL);
    store_range r1 = {1, 1}, r2 = {2, 2};
    store_uidlist du = {0};
    REQUIRE_OK(store_copy(e.mb, &r1, 1, o, false, NULL, &du));
    REQUIRE_OK(store_copy(e.mb, &r2, 1, o, true, NULL, &du));
    REQUIRE(du.n == 2);
    store_msg_ext c1, c2, again;
    REQUIRE_OK(ext_of(o, du.uids[0], &c1));
    REQUIRE_OK(ext_of(o, du.uids[1], &c2));
    CHECK(c1.email_mbox == a1.email_mbox && c1.email_uid == a1.email_uid &&
          c1.email_uv == a1.email_uv && c1.email_uv != 0);
    CHECK(c2.email_mbox == a2.email_mbox && c2.email_uid == a2.email_uid);
    CHECK(c1.save_date >= t0 && c1.save_date > a1.save_date);
    CHECK(c2.save_date >= t0);
    /* The original keeps its own save date (RFC 8514 3). */
    REQUIRE_OK(ext_of(e.mb, 1, &again));
    CHECK_EQ(again.save_date, a1.save_date);
    /* A copy of a copy still has the first EMAILID; a move into the same
     * mailbox (new UID) too. */
    store_range rc1 = {du.uids[0], du.uids[0]};
    store_uidlist d2 = {0};
    REQUIRE_OK(store_copy(o, &rc1, 1, e.mb, false, NULL, &d2));
    REQUIRE_OK(store_copy(o, &rc1, 1, o, true, NULL, &d2));
    REQUIRE(d2.n == 2);
    REQUIRE_OK(ext_of(e.mb, d2.uids[0], &again));
    CHECK(again.email_mbox == a1.email_mbox && again.email_uid == a1.email_uid);
    REQUIRE_OK(ext_of(o, d2.uids[1], &again));
    CHECK(again.email_mbox == a1.email_mbox && again.email_uid == a1.email_uid);
    /* Another user: a new EMAILID, its own (ids are unique per user). */
    store_user *u2;
    store_mbox *i2;
    REQUIRE_OK(test_inbox_open(e.root, "user2", STORE_FSYNC_NEVER, &u2, &i2));
    store_uidlist d3 = {0};
    REQUIRE_OK(store_copy(e.mb, &r1, 1, i2, false, NULL, &d3));
    REQUIRE(d3.n == 1);
    REQUIRE_OK(ext_of(i2, d3.uids[0], &again));
    CHECK(again.email_mbox == box_id(u2, "INBOX") && again.email_uid == d3.uids[0]);
    test_inbox_close(u2, i2);
    store_uidlist_free(&du);
    store_uidlist_free(&d2);
    store_uidlist_free(&d3);
    store_mbox_close(o);
    test_env_close(&e);
}

static void test_survives(void)
{
    test_env e;
    REQUIRE_OK(test_env_open(&e, "objid-keep"));
    REQUIRE_OK(test_append_n(e.mb, 10, 1000000000));
    REQUIRE_OK(store_mailbox_create(e.u, "Other", 0));
    store_mbox *o;
    REQUIRE_OK(store_mbox_open(e.u, "Other", &o));
    store_range r = {3, 5};
    REQUIRE_OK(store_copy(e.mb, &r, 1, o, true, NULL, NULL));
    REQUIRE_OK(store_copy(o, &r, 0, o, false, NULL, NULL));
    store_range all = {1, UINT32_MAX};
    REQUIRE_OK(store_copy(o, &all, 1, e.mb, false, NULL, NULL));
    store_range x = {7, 7};
    REQUIRE_OK(store_expunge(e.mb, &x, 1, false, NULL, NULL));
    char *want = describe_ext(e.mb);
    char *want_o = describe_ext(o);
    store_mbox_close(o);

    /* Compaction. */
    REQUIRE_OK(store_compact(e.mb, NULL, NULL));
    char *got = describe_ext(e.mb);
    CHECK(!strcmp(got, want));
    free(got);
    CHECK_EQ(log_version(e.mb), LOG_VERSION_EXT);
    /* Reopen (a new process would do the same). */
    char dir[600];
    test_pathf(dir, sizeof dir, "%s", store_mbox_dir(e.mb));
    test_inbox_close(e.u, e.mb);
    REQUIRE_OK(test_inbox_open(e.root, "user", STORE_FSYNC_NEVER, &e.u, &e.mb));
    got = describe_ext(e.mb);
    CHECK(!strcmp(got, want));
    free(got);
    /* The index rebuilt from the log. */
    test_inbox_close(e.u, e.mb);
    char ip[700];
    test_pathf(ip, sizeof ip, "%s/index", dir);
    REQUIRE(unlink(ip) == 0);
    REQUIRE_OK(test_inbox_open(e.root, "user", STORE_FSYNC_NEVER, &e.u, &e.mb));
    got = describe_ext(e.mb);
    CHECK(!strcmp(got, want));
    free(got);
    /* check --repair. */
    store_check_report rep;
    REQUIRE_OK(store_check(e.mb, true, &rep, NULL, NULL));
    CHECK_EQ(rep.index_mismatches, 0);
    CHECK_EQ(rep.legacy_messages, 0);
    got = describe_ext(e.mb);
    CHECK(!strcmp(got, want));
    free(got);
    /* RENAME keeps the mailbox id, hence the EMAILIDs made from it. */
    REQUIRE_OK(store_mailbox_rename(e.u, "Other", "Renamed"));
    REQUIRE_OK(store_mbox_open(e.u, "Renamed", &o));
    got = describe_ext(o);
    CHECK(!strcmp(got, want_o));
    free(got);
    store_mbox_close(o);
    free(want);
    free(want_o);
    test_env_close(&e);
}

/* Expunging every message makes all the log's message bytes, extensions
 * included, dead: status dead_bytes is then the log minus its header. */
static void test_dead_bytes(void)
{
    test_env e;
    REQUIRE_OK(test_env_open(&e, "objid-dead"));
    REQUIRE_OK(test_append_n(e.mb, 5, 1000000000));
    store_status st0;
    REQUIRE_OK(store_mbox_status(e.mb, &st0));
    REQUIRE_OK(store_expunge(e.mb, NULL, 0, false, NULL, NULL));
    store_status st;
    REQUIRE_OK(store_mbox_status(e.mb, &st));
    CHECK_EQ(st.dead_bytes, st.log_bytes - LOG_HDR_SIZE);
    CHECK(st0.log_bytes < st.log_bytes);
    test_env_close(&e);
}

/* Rewrite the mailbox's log as the format before the extension wrote it:
 * version 1, MESSAGE records without ext_len; drop the index. */
static void make_legacy(const char *dir)
{
    char ip[600], lp[600], tp[600];
    test_pathf(ip, sizeof ip, "%s/index", dir);
    int fd = open(ip, O_RDONLY);
    REQUIRE(fd >= 0);
    struct idx_hdr h;
    REQUIRE(pread(fd, &h, sizeof h, 0) == (ssize_t)sizeof h);
    close(fd);
    test_pathf(lp, sizeof lp, "%s/log.%" PRIu64, dir, h.generation);
    test_pathf(tp, sizeof tp, "%s/log.tmp-legacy", dir);
    FILE *f = fopen(lp, "rb");
    REQUIRE(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)sz), *o = calloc(1, (size_t)sz);
    REQUIRE(b && o && fread(b, 1, (size_t)sz, f) == (size_t)sz);
    fclose(f);
    struct log_file_hdr lh;
    memcpy(&lh, b, sizeof lh);
    lh.version = FMT_VERSION;
    store_log_hdr_seal(&lh);
    memcpy(o, &lh, sizeof lh);
    size_t on = LOG_HDR_SIZE;
    for (size_t off = LOG_HDR_SIZE; off < (size_t)sz;) {
        struct log_rec r;
        memcpy(&r, b + off, sizeof r);
        size_t len = (size_t)ALIGN8(sizeof r + r.len);
        memcpy(o + on, b + off, len);
        if (r.type == LOG_MESSAGE) {
            struct log_message m;
            memcpy(&m, o + on + sizeof r, sizeof m);
            r.len -= m.ext_len;
            m.ext_len = 0;
            memcpy(o + on + sizeof r, &m, sizeof m);
            memset(o + on + sizeof r + r.len, 0, len - sizeof r - r.len);
            memcpy(o + on, &r, sizeof r);
            store_log_rec_seal((struct log_rec *)(o + on), r.type, r.rflags, r.len);
            len = (size_t)ALIGN8(sizeof r + r.len);
        }
        on += len;
        off += (size_t)ALIGN8(sizeof r + ((struct log_rec *)(b + off))->len);
    }
    f = fopen(tp, "wb");
    REQUIRE(f && fwrite(o, 1, on, f) == on);
    fclose(f);
    REQUIRE(rename(tp, lp) == 0);
    REQUIRE(unlink(ip) == 0);
    free(b);
    free(o);
}

static void test_legacy(void)
{
    test_env e;
    REQUIRE_OK(test_env_open(&e, "objid-legacy"));
    REQUIRE_OK(test_append_n(e.mb, 4, 1000000000));
    char dir[600];
    test_pathf(dir, sizeof dir, "%s", store_mbox_dir(e.mb));
    uint64_t inbox = box_id(e.u, "INBOX");
    test_inbox_close(e.u, e.mb);
    make_legacy(dir);
    REQUIRE_OK(test_inbox_open(e.root, "user", STORE_FSYNC_NEVER, &e.u, &e.mb));
    CHECK_EQ(log_version(e.mb), FMT_VERSION);
    /* Old messages: the EMAILID an append would have given, no save date. */
    store_msg_ext x;
    for (uint32_t uid = 1; uid <= 4; uid++) {
        REQUIRE_OK(ext_of(e.mb, uid, &x));
        CHECK(x.email_mbox == inbox && x.email_uid == uid && x.save_date == 0);
    }
    store_check_report rep;
    REQUIRE_OK(store_check(e.mb, false, &rep, NULL, NULL));
    CHECK_EQ(rep.legacy_messages, 4);
    /* A copy carries the derived EMAILID and gets a save date. */
    REQUIRE_OK(store_mailbox_create(e.u, "Other", 0));
    store_mbox *o;
    REQUIRE_OK(store_mbox_open(e.u, "Other", &o));
    store_range r = {2, 2};
    store_uidlist du = {0};
    REQUIRE_OK(store_copy(e.mb, &r, 1, o, false, NULL, &du));
    REQUIRE(du.n == 1);
    REQUIRE_OK(ext_of(o, du.uids[0], &x));
    CHECK(x.email_mbox == inbox && x.email_uid == 2 && x.save_date != 0);
    store_uidlist_free(&du);
    store_mbox_close(o);
    /* A new message raises the log's version first. */
    REQUIRE_OK(test_append_n(e.mb, 1, 1000000000));
    CHECK_EQ(log_version(e.mb), LOG_VERSION_EXT);
    REQUIRE_OK(ext_of(e.mb, 5, &x));
    CHECK(x.email_uid == 5 && x.save_date != 0);
    char *want = describe_ext(e.mb);
    REQUIRE_OK(store_compact(e.mb, NULL, NULL));
    char *got = describe_ext(e.mb);
    CHECK(!strcmp(got, want));
    free(got);
    test_inbox_close(e.u, e.mb);
    REQUIRE_OK(test_inbox_open(e.root, "user", STORE_FSYNC_NEVER, &e.u, &e.mb));
    got = describe_ext(e.mb);
    CHECK(!strcmp(got, want));
    free(got);
    free(want);
    test_env_close(&e);
}

int main(void)
{
    RUN(test_format);
    RUN(test_append);
    RUN(test_copy_move);
    RUN(test_survives);
    RUN(test_dead_bytes);
    RUN(test_legacy);
    return test_summary();
}
