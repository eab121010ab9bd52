/* bench/bench_store.c — microbenchmarks of the mailbox store (store/store.h).
 *
 *   store/append/fsync:{never,batch}/batch:{1,64}
 *       store_append of 4096-byte messages, one call per iteration carrying
 *       1 or 64 messages, single-threaded.  Wall-clock time (it waits on the
 *       disk).  items_per_second = messages/s, bytes_per_second = MB/s.
 *   store/open/msgs:N
 *       store_mbox_open + store_snap_get + store_mbox_status + put + close
 *       of a mailbox with N live messages: what SELECT costs the store.
 *   store/uid_to_seq/msgs:N, store/seq_to_uid/msgs:N
 *       one lookup per iteration, random keys, on a held snapshot.
 *   store/list_index/msgs:N
 *       a FETCH 1:* (FLAGS UID RFC822.SIZE INTERNALDATE) worth of index
 *       reads: snapshot + every entry, walked with a cursor.
 *   store/list_envelope/msgs:N
 *       the same plus the cached ENVELOPE of every message
 *       (store_cursor_cache + store_cache_envelope, every field copied out
 *       as a response writer would): a client's header listing.  Time per iteration = one full
 *       listing; items_per_second = messages/s.
 *
 *   store/changed_since/msgs:N, store/changed_since_scan/msgs:N
 *       store_snap_changed_since after 10 changes (7 flag changes, 3
 *       expunges of single messages), with since = HIGHESTMODSEQ before
 *       them: what a QRESYNC/CONDSTORE resync of a client that missed 10
 *       changes costs the store.  _scan is the reference scan of every
 *       entry (the implementation before the modseq summary), measured in
 *       the same run for the ratio.  items_per_second = queries/s.
 *   store/vanished/msgs:N, store/vanished_scan/msgs:N
 *       store_snap_vanished(since, 1, *) on the same state, likewise.
 *   store/since_build/msgs:N
 *       building the per-generation modseq summary from nothing (what the
 *       first query of a process pays); counter mem_bytes = its size.
 *   These use their own mailboxes ("since-N" of user "since": ~200-byte
 *   messages, one in 11 expunged, then compacted so that the expunge
 *   history is in use; their index is what is measured).
 *
 * The sized mailboxes are built once per size, before their first
 * measurement, under fsync=never with ~1-2 KB messages carrying realistic
 * headers; one message in 11 is expunged so that UIDs have gaps and
 * sequence numbers differ from UIDs, as in a mailbox that has been used.
 * N counts live messages.  The files are in the page cache when measured
 * (they were just written or read): these are warm-cache figures.
 */
#include "bench/bench.h"
#include "store/internal.h"
#include "store/store.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define APPEND_MSG_SIZE 4096
#define BUILD_BATCH     1000    /* messages per store_append while building */
#define EXPUNGE_EVERY   11      /* one message in 11 is expunged */
#define LOOKUP_KEYS     4096    /* random keys per lookup batch */

/* ---- message generation ------------------------------------------------- */

/* Write message number `no` into buf (CRLF line ends) and return its
 * length.  The length is `exact` if nonzero (padding the body), else
 * 900..2000 bytes.  buf must hold max(exact, 2400) bytes. */
static size_t gen_message(char *buf, size_t cap, uint64_t no, int64_t date,
                          size_t exact)
{
    uint64_t rs = no * 7919 + 17;
    uint64_t r1 = bench_rnd_next(&rs), r2 = bench_rnd_next(&rs), r3 = bench_rnd_next(&rs);
    char datebuf[64], subj[160];
    struct tm tm;
    time_t t = (time_t)date;
    gmtime_r(&t, &tm);
    strftime(datebuf, sizeof datebuf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    snprintf(subj, sizeof subj, BENCH_PICK(bench_mail_subjects, r3), (unsigned)(no % 1000));

    const char *ffirst = BENCH_PICK(bench_mail_first_names, r1);
    const char *flast = BENCH_PICK(bench_mail_last_names, r1 >> 8);
    const char *fdom = BENCH_PICK(bench_mail_domains, r1 >> 16);
    const char *tfirst = BENCH_PICK(bench_mail_first_names, r2);
    const char *tlast = BENCH_PICK(bench_mail_last_names, r2 >> 8);
    size_t n = 0;
    int w = snprintf(buf, cap,
        "Return-Path: <%c%s@%s>\r\n"
        "Received: from mx%u.%s (mx%u.%s [192.0.2.%u])\r\n"
        "\tby imap.example.com (Postfix) with ESMTPS id %08" PRIX64 "\r\n"
        "\tfor <%c%s@example.com>; %s\r\n"
        "Date: %s\r\n"
        "From: \"%s %s\" <%c.%s@%s>\r\n"
        "To: %s %s <%c%s@example.com>\r\n"
        "%s"
        "Subject: %s\r\n"
        "Message-ID: <%016" PRIx64 ".%" PRIu64 "@%s>\r\n"
        "%s%016" PRIx64 "%s"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8; format=flowed\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n",
        ffirst[0] | 0x20, flast, fdom,
        (unsigned)(r1 % 4) + 1, fdom, (unsigned)(r1 % 4) + 1, fdom,
        (unsigned)(r2 % 250) + 1, r3,
        tfirst[0] | 0x20, tlast, datebuf,
        datebuf,
        ffirst, flast, ffirst[0] | 0x20, flast, fdom,
        tfirst, tlast, tfirst[0] | 0x20, tlast,
        (r2 & 3) == 0 ? "Cc: team@lists.example.org\r\n" : "",
        subj,
        r3, no, fdom,
        (r3 & 1) ? "In-Reply-To: <" : "X-Mailer: Ringmail-bench ",
        r2, (r3 & 1) ? "@example.com>\r\n" : "\r\n");
    if (w < 0 || (size_t)w >= cap)
        return 0;
    n = (size_t)w;

    size_t target = exact ? exact : 900 + (size_t)(r2 % 1100);
    if (target > cap)
        target = cap;
    uint64_t ls = r1;
    /* Whole lines while they fit, then pad the last line to the exact size. */
    for (;;) {
        const char *line = BENCH_PICK(bench_mail_body_lines, bench_rnd_next(&ls));
        size_t ll = strlen(line);
        if (n + ll + 2 > target)
            break;
        memcpy(buf + n, line, ll);
        n += ll;
        buf[n++] = '\r';
        buf[n++] = '\n';
    }
    if (exact && n < target) {
        size_t pad = target - n;
        if (pad >= 2) {
            memset(buf + n, '.', pad - 2);
            n += pad - 2;
            buf[n++] = '\r';
            buf[n++] = '\n';
        } else {
            buf[n++] = '\n';   /* one byte short of a CRLF pair: still valid */
        }
    }
    return n;
}

/* ---- state ---------------------------------------------------------------- */

static const bench_opts *opts;
static char mail_root[PATH_MAX];
static store_user *u_never, *u_batch, *u_list, *u_since;

typedef struct sized {
    uint64_t n;             /* live messages wanted */
    char name[32];          /* mailbox name under u_list */
    bool ready;
    bool failed;
    uint32_t *live;         /* live UIDs in order; live[seq-1] = uid */
    uint32_t nlive;
    uint32_t entries;
} sized;

static sized sizes[BENCH_MAX_SIZES];

typedef struct append_arg {
    bool fsync_batch;
    size_t batch;
} append_arg;

static append_arg append_args[] = {
    {false, 1}, {false, 64}, {true, 1}, {true, 64},
};

static unsigned append_seq;

/* ---- building a sized mailbox -------------------------------------------- */

static int collect_live(sized *z, store_mbox *mb)
{
    uint32_t *v, k, e;
    int r = bench_live_uids(mb, &v, &k, &e);
    if (r < 0)
        return r;
    free(z->live);
    z->live = v;
    z->nlive = k;
    z->entries = e;
    return 0;
}

static int build_sized(sized *z)
{
    uint64_t total = z->n + z->n / 10;   /* appended; 1 in 11 then expunged */
    store_status st;
    store_mbox *mb = NULL;
    int r;

    /* Reuse a mailbox left in --data-dir by an earlier run. */
    r = store_mailbox_status(u_list, z->name, &st);
    if (r == 0 && st.messages == z->n && st.uidnext == total + 1) {
        r = store_mbox_open(u_list, z->name, &mb);
        if (r == 0)
            r = collect_live(z, mb);
        if (mb)
            store_mbox_close(mb);
        if (r == 0) {
            bench_note("reusing %s: %u live messages", z->name, z->nlive);
            return 0;
        }
    }
    if (r == 0 || (r < 0 && r != -ENOENT)) {
        r = store_mailbox_delete(u_list, z->name);
        if (r < 0 && r != -ENOENT)
            return r;
    }
    r = store_mailbox_create(u_list, z->name, 0);
    if (r < 0)
        return r;
    r = store_mbox_open(u_list, z->name, &mb);
    if (r < 0)
        return r;

    bench_note("building %s: %" PRIu64 " messages, then expunging 1 in %d ...",
               z->name, total, EXPUNGE_EVERY);
    double t0 = bench_now(), last = t0;
    const size_t slot = 2400;
    char *buf = malloc(slot * BUILD_BATCH);
    store_new_msg *msgs = calloc(BUILD_BATCH, sizeof *msgs);
    uint32_t *uids = malloc(sizeof *uids * BUILD_BATCH);
    store_range *gone = malloc(sizeof *gone * (BUILD_BATCH / EXPUNGE_EVERY + 2));
    static const char *const kw_fwd[] = {"$Forwarded"};
    const int64_t base_date = 1672531200;  /* 2023-01-01, a message every ~5 min */
    uint64_t done = 0, appended_bytes = 0;
    if (!buf || !msgs || !uids || !gone) {
        r = -ENOMEM;
        goto out;
    }
    while (done < total) {
        size_t k = total - done < BUILD_BATCH ? (size_t)(total - done) : BUILD_BATCH;
        for (size_t i = 0; i < k; i++) {
            uint64_t no = done + i;
            int64_t date = base_date + (int64_t)no * 293;
            size_t len = gen_message(buf + i * slot, slot, no, date, 0);
            if (!len) {
                r = -EOVERFLOW;
                goto out;
            }
            uint64_t pick = no % 100;
            msgs[i] = (store_new_msg){
                .data = buf + i * slot,
                .len = len,
                .internal_date = date + 7,
                .tz_min = 0,
                /* most mail is read; some answered, flagged, a few drafts */
                .flags = (pick < 85 ? STORE_F_SEEN : 0) |
                         (pick % 10 == 3 ? STORE_F_ANSWERED : 0) |
                         (pick == 42 || pick == 77 ? STORE_F_FLAGGED : 0) |
                         (pick == 99 ? STORE_F_DRAFT : 0),
                .keywords = pick == 13 ? kw_fwd : NULL,
                .nkeywords = pick == 13 ? 1 : 0,
            };
            appended_bytes += len;
        }
        r = store_append(mb, msgs, k, uids);
        if (r < 0)
            goto out;
        /* Expunge positions 10, 21, 32, ... of the whole sequence. */
        size_t ng = 0;
        for (size_t i = 0; i < k; i++)
            if ((done + i) % EXPUNGE_EVERY == EXPUNGE_EVERY - 1)
                gone[ng++] = (store_range){uids[i], uids[i]};
        if (ng) {
            uint64_t modseq;
            r = store_expunge(mb, gone, ng, false, NULL, &modseq);
            if (r < 0)
                goto out;
        }
        done += k;
        double now = bench_now();
        if (now - last >= 5.0 || done == total) {
            bench_note("  %s: %" PRIu64 "/%" PRIu64 " appended, %.0f msg/s",
                       z->name, done, total, (double)done / (now - t0));
            last = now;
        }
    }
    r = collect_live(z, mb);
    if (r == 0 && z->nlive != z->n) {
        bench_note("%s: %u live messages, expected %" PRIu64, z->name, z->nlive, z->n);
        r = -EBADMSG;
    }
    if (r == 0 && store_mbox_status(mb, &st) == 0)
        bench_note("built %s in %.1f s: %u live, %u entries, log %.1f MB, "
                   "%.0f MB of messages", z->name, bench_now() - t0,
                   st.messages, z->entries, (double)st.log_bytes / 1e6,
                   (double)appended_bytes / 1e6);
out:
    free(buf);
    free(msgs);
    free(uids);
    free(gone);
    if (mb)
        store_mbox_close(mb);
    return r;
}

/* Build on first use; the build is not timed (it happens before the
 * benchmark's first keep_running). */
static int need_sized(bench_state *st, sized *z)
{
    if (z->ready)
        return 0;
    if (z->failed) {
        bench_error(st, "mailbox %s could not be built", z->name);
        return -1;
    }
    int r = build_sized(z);
    if (r < 0) {
        z->failed = true;
        bench_error(st, "building %s: %s", z->name, strerror(-r));
        return -1;
    }
    z->ready = true;
    return 0;
}

/* ---- benchmark bodies ------------------------------------------------------ */

static void bm_append(bench_state *st, void *arg)
{
    const append_arg *a = arg;
    store_user *u = a->fsync_batch ? u_batch : u_never;
    store_mbox *mb = NULL;
    char name[64];
    snprintf(name, sizeof name, "append-%u", append_seq++);
    int r = store_mailbox_create(u, name, 0);
    if (r < 0) {
        bench_error(st, "store_mailbox_create: %s", strerror(-r));
        return;
    }
    r = store_mbox_open(u, name, &mb);
    if (r < 0) {
        bench_error(st, "store_mbox_open: %s", strerror(-r));
        store_mailbox_delete(u, name);
        return;
    }

    char *buf = malloc(APPEND_MSG_SIZE * a->batch);
    store_new_msg *msgs = calloc(a->batch, sizeof *msgs);
    uint32_t *uids = malloc(sizeof *uids * a->batch);
    if (!buf || !msgs || !uids) {
        bench_error(st, "out of memory");
        goto out;
    }
    /* Distinct messages (own Message-ID, date, subject) so that the parse
     * and cache work at append is realistic; generated outside the timed
     * loop: only store_append is measured. */
    int64_t now = (int64_t)time(NULL);
    for (size_t i = 0; i < a->batch; i++) {
        size_t len = gen_message(buf + i * APPEND_MSG_SIZE, APPEND_MSG_SIZE,
                                 1000000 + i, now - (int64_t)i * 60,
                                 APPEND_MSG_SIZE);
        if (len != APPEND_MSG_SIZE) {
            bench_error(st, "message generator gave %zu bytes", len);
            goto out;
        }
        msgs[i] = (store_new_msg){
            .data = buf + i * APPEND_MSG_SIZE,
            .len = APPEND_MSG_SIZE,
            .internal_date = now - (int64_t)i * 60,
        };
    }

    while (bench_keep_running(st)) {
        r = store_append(mb, msgs, a->batch, uids);
        if (r < 0) {
            bench_error(st, "store_append: %s", strerror(-r));
            break;
        }
    }
    int64_t items = bench_iterations(st) * (int64_t)a->batch;
    bench_set_items_processed(st, items);
    bench_set_bytes_processed(st, items * APPEND_MSG_SIZE);
out:
    free(buf);
    free(msgs);
    free(uids);
    if (mb)
        store_mbox_close(mb);
    /* Keep the disk use of long runs bounded. */
    store_mailbox_delete(u, name);
}

static void bm_open(bench_state *st, void *arg)
{
    sized *z = arg;
    if (need_sized(st, z) < 0)
        return;
    uint64_t seen = 0;
    int r = 0;
    while (bench_keep_running(st)) {
        store_mbox *mb;
        store_status ss;
        r = store_mbox_open(u_list, z->name, &mb);
        if (r < 0)
            break;
        store_snap *s = store_snap_get(mb);
        if (!s) {
            store_mbox_close(mb);
            r = -ENOMEM;
            break;
        }
        r = store_mbox_status(mb, &ss);
        seen += store_snap_messages(s) + ss.messages;
        store_snap_put(s);
        store_mbox_close(mb);
        if (r < 0)
            break;
    }
    if (r < 0) {
        bench_error(st, "open/status: %s", strerror(-r));
        return;
    }
    if (seen != 2ull * z->nlive * (uint64_t)bench_iterations(st)) {
        bench_error(st, "open saw a wrong message count");
        return;
    }
    bench_set_counter(st, "msgs", z->nlive, BENCH_COUNTER_PLAIN);
}

/* Random keys for lookups: UIDs of live messages or sequence numbers. */
static uint32_t *lookup_keys(const sized *z, bool seqs)
{
    uint32_t *k = malloc(sizeof *k * LOOKUP_KEYS);
    if (!k)
        return NULL;
    uint64_t rs = 12345;
    for (size_t i = 0; i < LOOKUP_KEYS; i++) {
        uint32_t pos = (uint32_t)(bench_rnd_next(&rs) % z->nlive);
        k[i] = seqs ? pos + 1 : z->live[pos];
    }
    return k;
}

static void bm_lookup(bench_state *st, sized *z, bool uid_to_seq)
{
    if (need_sized(st, z) < 0)
        return;
    store_mbox *mb;
    int r = store_mbox_open(u_list, z->name, &mb);
    if (r < 0) {
        bench_error(st, "store_mbox_open: %s", strerror(-r));
        return;
    }
    store_snap *s = store_snap_get(mb);
    uint32_t *keys = lookup_keys(z, !uid_to_seq);
    if (!s || !keys || z->nlive == 0) {
        bench_error(st, "setup failed");
        goto out;
    }
    /* Check the answers once, outside the timed loop. */
    for (size_t i = 0; i < 64; i++) {
        uint32_t got = uid_to_seq ? store_snap_seq_of_uid(s, keys[i])
                                  : store_snap_uid_of_seq(s, keys[i]);
        uint32_t want;
        if (uid_to_seq) {
            /* keys[i] is live[pos] (sorted): want pos + 1 */
            uint32_t lo = 0, hi = z->nlive;
            while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;
                if (z->live[mid] < keys[i])
                    lo = mid + 1;
                else
                    hi = mid;
            }
            want = lo + 1;
        } else {
            want = z->live[keys[i] - 1];
        }
        if (got != want) {
            bench_error(st, "lookup of %u gave %u, expected %u", keys[i], got, want);
            goto out;
        }
    }
    uint64_t acc = 0;
    if (uid_to_seq) {
        while (bench_keep_running_batch(st, LOOKUP_KEYS))
            for (size_t i = 0; i < LOOKUP_KEYS; i++)
                acc += store_snap_seq_of_uid(s, keys[i]);
    } else {
        while (bench_keep_running_batch(st, LOOKUP_KEYS))
            for (size_t i = 0; i < LOOKUP_KEYS; i++)
                acc += store_snap_uid_of_seq(s, keys[i]);
    }
    if (acc == 0)
        bench_error(st, "all lookups failed");
    bench_set_items_processed(st, bench_iterations(st));
    bench_set_counter(st, "msgs", z->nlive, BENCH_COUNTER_PLAIN);
out:
    free(keys);
    if (s)
        store_snap_put(s);
    store_mbox_close(mb);
}

static void bm_uid_to_seq(bench_state *st, void *arg) { bm_lookup(st, arg, true); }
static void bm_seq_to_uid(bench_state *st, void *arg) { bm_lookup(st, arg, false); }

/* Copy one envelope field out, as a response writer would. */
static size_t copy_str(char *dst, size_t at, size_t cap, store_str v)
{
    if (!v.p || at + v.len > cap)
        return at;
    memcpy(dst + at, v.p, v.len);
    return at + v.len;
}

static void bm_list(bench_state *st, sized *z, bool envelope)
{
    if (need_sized(st, z) < 0)
        return;
    store_mbox *mb;
    int r = store_mbox_open(u_list, z->name, &mb);
    if (r < 0) {
        bench_error(st, "store_mbox_open: %s", strerror(-r));
        return;
    }
    static char out[16384];
    uint64_t acc = 0, listed = 0;
    uint32_t bad_uid = 0;
    while (bench_keep_running(st)) {
        store_snap *s = store_snap_get(mb);
        if (!s) {
            r = -ENOMEM;
            break;
        }
        store_cursor cur;
        store_cursor_init(&cur, s);
        store_msg m;
        for (int live = store_cursor_msg(&cur, &m); live >= 0;
             live = store_cursor_next(&cur, &m)) {
            if (!live)
                continue;
            acc += m.uid + m.flags + m.size + (uint64_t)m.internal_date + m.keywords;
            listed++;
            if (!envelope)
                continue;
            store_cache c;
            store_envelope env;
            r = store_cursor_cache(&cur, &c);
            if (r == 0)
                r = store_cache_envelope(&c, 0, &env);
            if (r < 0) {
                bad_uid = m.uid;
                break;
            }
            size_t n = 0;
            n = copy_str(out, n, sizeof out, env.date);
            n = copy_str(out, n, sizeof out, env.subject);
            n = copy_str(out, n, sizeof out, env.from);
            n = copy_str(out, n, sizeof out, env.sender);
            n = copy_str(out, n, sizeof out, env.reply_to);
            n = copy_str(out, n, sizeof out, env.to);
            n = copy_str(out, n, sizeof out, env.cc);
            n = copy_str(out, n, sizeof out, env.bcc);
            n = copy_str(out, n, sizeof out, env.in_reply_to);
            n = copy_str(out, n, sizeof out, env.message_id);
            acc += n + (uint8_t)out[n / 2];
        }
        store_snap_put(s);
        if (r < 0)
            break;
    }
    store_mbox_close(mb);
    if (r < 0) {
        bench_error(st, "listing failed at %u: %s", bad_uid, strerror(-r));
        return;
    }
    if (listed != (uint64_t)z->nlive * (uint64_t)bench_iterations(st) || acc == 0) {
        bench_error(st, "listing saw %" PRIu64 " messages, expected %u per pass",
                    listed, z->nlive);
        return;
    }
    bench_set_items_processed(st, (int64_t)listed);
    bench_set_counter(st, "msgs", z->nlive, BENCH_COUNTER_PLAIN);
}

static void bm_list_index(bench_state *st, void *arg) { bm_list(st, arg, false); }
static void bm_list_envelope(bench_state *st, void *arg) { bm_list(st, arg, true); }

/* ---- changed since a modseq --------------------------------------------- */

typedef struct since_box {
    uint64_t n;             /* live messages wanted */
    char name[32];
    bool ready, failed;
    uint64_t since;         /* HIGHESTMODSEQ before the 10 changes */
} since_box;

static since_box since_boxes[BENCH_MAX_SIZES];

/* Reuse the mailbox of an earlier run (UIDNEXT tells; it may have lost a
 * few messages to the expunges below) or build it. */
static int since_build(since_box *z)
{
    uint64_t total = z->n + z->n / 10;
    store_status st;
    store_mbox *mb = NULL;
    int r = store_mailbox_status(u_since, z->name, &st);
    if (r == 0 && st.uidnext == total + 1 && st.messages + 1000 >= z->n)
        return 0;
    if (r == 0 && (r = store_mailbox_delete(u_since, z->name)) < 0)
        return r;
    if ((r = store_mailbox_create(u_since, z->name, 0)) < 0 ||
        (r = store_mbox_open(u_since, z->name, &mb)) < 0)
        return r;
    bench_note("building %s: %" PRIu64 " small messages ...", z->name, total);
    double t0 = bench_now();
    char *buf = malloc(256 * BUILD_BATCH);
    store_new_msg *msgs = calloc(BUILD_BATCH, sizeof *msgs);
    uint32_t *uids = malloc(sizeof *uids * BUILD_BATCH);
    store_range *gone = malloc(sizeof *gone * (BUILD_BATCH / EXPUNGE_EVERY + 2));
    if (!buf || !msgs || !uids || !gone) {
        r = -ENOMEM;
        goto out;
    }
    for (uint64_t done = 0; done < total;) {
        size_t k = total - done < BUILD_BATCH ? (size_t)(total - done) : BUILD_BATCH;
        for (size_t i = 0; i < k; i++) {
            int len = snprintf(buf + i * 256, 256,
                               "From: a@example.com\r\nTo: b@example.com\r\n"
                               "Subject: message %" PRIu64 "\r\n\r\nbody\r\n", done + i);
            msgs[i] = (store_new_msg){.data = buf + i * 256, .len = (size_t)len,
                                      .internal_date = 1672531200,
                                      .flags = (done + i) % 7 ? STORE_F_SEEN : 0};
        }
        if ((r = store_append(mb, msgs, k, uids)) < 0)
            goto out;
        size_t ng = 0;
        for (size_t i = 0; i < k; i++)
            if ((done + i) % EXPUNGE_EVERY == EXPUNGE_EVERY - 1)
                gone[ng++] = (store_range){uids[i], uids[i]};
        if (ng && (r = store_expunge(mb, gone, ng, false, NULL, NULL)) < 0)
            goto out;
        done += k;
    }
    r = store_compact(mb, NULL, NULL);
    bench_note("built %s in %.1f s", z->name, bench_now() - t0);
out:
    free(buf);
    free(msgs);
    free(uids);
    free(gone);
    if (mb)
        store_mbox_close(mb);
    return r;
}

/* 7 flag changes and 3 expunges at random live UIDs, once per size and
 * run; z->since = HIGHESTMODSEQ before them. */
static int since_changes(since_box *z, store_mbox *mb)
{
    store_snap *s = store_snap_get(mb);
    if (!s)
        return -ENOMEM;
    z->since = store_snap_highestmodseq(s);
    uint32_t live = store_snap_messages(s);
    uint32_t pick[10];
    uint64_t rs = z->since * 2654435761u + 1;
    for (int i = 0; i < 10; i++)
        pick[i] = store_snap_uid_of_seq(s, 1 + (uint32_t)(bench_rnd_next(&rs) % live));
    store_snap_put(s);
    int r = 0;
    for (int i = 0; i < 10 && r >= 0; i++) {
        store_range one = {pick[i], pick[i]};
        if (i < 7)
            r = store_flags(mb, &one, 1, STORE_FLAGS_ADD, STORE_F_FLAGGED, NULL, 0, 0,
                            NULL, NULL, NULL);
        else
            r = store_expunge(mb, &one, 1, false, NULL, NULL);
    }
    return r < 0 ? r : 0;
}

enum { SINCE_CHANGED, SINCE_CHANGED_SCAN, SINCE_VANISHED, SINCE_VANISHED_SCAN, SINCE_BUILD };

typedef struct since_arg {
    since_box *z;
    int kind;
} since_arg;

static since_arg since_args[BENCH_MAX_SIZES][5];

static void bm_since(bench_state *st, void *arg)
{
    since_arg *a = arg;
    since_box *z = a->z;
    if (z->failed) {
        bench_error(st, "mailbox %s could not be built", z->name);
        return;
    }
    store_mbox *mb = NULL;
    int r = 0;
    if (!z->ready) {
        if ((r = since_build(z)) < 0 || (r = store_mbox_open(u_since, z->name, &mb)) < 0 ||
            (r = since_changes(z, mb)) < 0) {
            z->failed = true;
            bench_error(st, "preparing %s: %s", z->name, strerror(-r));
            if (mb)
                store_mbox_close(mb);
            return;
        }
        z->ready = true;
    } else if ((r = store_mbox_open(u_since, z->name, &mb)) < 0) {
        bench_error(st, "store_mbox_open: %s", strerror(-r));
        return;
    }
    store_snap *s = store_snap_get(mb);
    if (!s) {
        bench_error(st, "no snapshot");
        store_mbox_close(mb);
        return;
    }
    /* The indexed answers must be the scan's (outside the timed loop). */
    store_uidlist x = {0}, y = {0};
    store_rangelist v = {0}, w = {0};
    if (store_snap_changed_since(s, z->since, &x) < 0 ||
        store_snap_changed_since_scan(s, z->since, &y) < 0 || x.n != y.n ||
        (x.n && memcmp(x.uids, y.uids, x.n * sizeof *x.uids)) ||
        store_snap_vanished(s, z->since, 1, UINT32_MAX, &v) < 0 ||
        store_snap_vanished_scan(s, z->since, 1, UINT32_MAX, &w) < 0 || v.n != w.n ||
        (v.n && memcmp(v.r, w.r, v.n * sizeof *v.r)) || x.n == 0 || v.n == 0) {
        bench_error(st, "answers differ from the scan (%zu/%zu uids, %zu/%zu ranges)", x.n,
                    y.n, v.n, w.n);
        goto out;
    }
    size_t mem = 0;
    switch (a->kind) {
    case SINCE_CHANGED:
    case SINCE_CHANGED_SCAN:
        while (bench_keep_running(st)) {
            x.n = 0;
            if (a->kind == SINCE_CHANGED)
                store_snap_changed_since(s, z->since, &x);
            else
                store_snap_changed_since_scan(s, z->since, &x);
        }
        break;
    case SINCE_VANISHED:
    case SINCE_VANISHED_SCAN:
        while (bench_keep_running(st)) {
            v.n = 0;
            if (a->kind == SINCE_VANISHED)
                store_snap_vanished(s, z->since, 1, UINT32_MAX, &v);
            else
                store_snap_vanished_scan(s, z->since, 1, UINT32_MAX, &v);
        }
        break;
    default:
        while (bench_keep_running(st))
            if (store_since_build_scratch(s, &mem) < 0)
                bench_error(st, "out of memory");
        bench_set_counter(st, "mem_bytes", (double)mem, BENCH_COUNTER_PLAIN);
        bench_set_counter(st, "mem_bytes_total", (double)store_since_mem(s),
                          BENCH_COUNTER_PLAIN);
        break;
    }
    bench_set_items_processed(st, bench_iterations(st));
    bench_set_counter(st, "msgs", store_snap_messages(s), BENCH_COUNTER_PLAIN);
out:
    store_uidlist_free(&x);
    store_uidlist_free(&y);
    store_rangelist_free(&v);
    store_rangelist_free(&w);
    store_snap_put(s);
    store_mbox_close(mb);
}

/* ---- registration ---------------------------------------------------------- */

static int reg(const char *name, bench_fn fn, void *arg, bench_unit unit,
               bool real_time)
{
    bench_bm *b = bench_register(name, fn, arg);
    if (!b)
        return -ENOMEM;
    bench_bm_unit(b, unit);
    if (real_time)
        bench_bm_real_time(b);
    return 0;
}

int bench_suite_store_register(const bench_opts *o)
{
    store_opts so;
    char name[128];
    int r;

    opts = o;
    const char *dir = bench_workdir();
    if (!dir)
        return -errno;
    if ((size_t)snprintf(mail_root, sizeof mail_root, "%s/mail", dir) >= sizeof mail_root)
        return -ENAMETOOLONG;

    /* One user per fsync policy: the policy belongs to the user handle. */
    store_opts_default(&so);
    so.fsync = STORE_FSYNC_NEVER;
    if ((r = store_user_open(mail_root, "never", &so, &u_never)) < 0)
        return r;
    if ((r = store_user_open(mail_root, "lister", &so, &u_list)) < 0)
        return r;
    if ((r = store_user_open(mail_root, "since", &so, &u_since)) < 0)
        return r;
    so.fsync = STORE_FSYNC_BATCH;
    if ((r = store_user_open(mail_root, "batch", &so, &u_batch)) < 0)
        return r;

    for (size_t i = 0; i < sizeof append_args / sizeof append_args[0]; i++) {
        append_arg *a = &append_args[i];
        snprintf(name, sizeof name, "store/append/fsync:%s/batch:%zu",
                 a->fsync_batch ? "batch" : "never", a->batch);
        if ((r = reg(name, bm_append, a, BENCH_US, true)) < 0)
            return r;
    }

    /* Per size: every benchmark of one size before the next size, so that
     * building a big mailbox happens once and late. */
    for (size_t i = 0; i < o->nsizes; i++) {
        sized *z = &sizes[i];
        z->n = o->sizes[i];
        snprintf(z->name, sizeof z->name, "size-%" PRIu64, z->n);
        static const struct {
            const char *what;
            bench_fn fn;
            bench_unit unit;
        } kinds[] = {
            {"open", bm_open, BENCH_US},   /* wall clock, see below */
            {"uid_to_seq", bm_uid_to_seq, BENCH_NS},
            {"seq_to_uid", bm_seq_to_uid, BENCH_NS},
            {"list_index", bm_list_index, BENCH_MS},
            {"list_envelope", bm_list_envelope, BENCH_MS},
        };
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            snprintf(name, sizeof name, "store/%s/msgs:%" PRIu64, kinds[k].what, z->n);
            /* open does file opens, mmaps and flock: count waiting too */
            if ((r = reg(name, kinds[k].fn, z, kinds[k].unit,
                         kinds[k].fn == bm_open)) < 0)
                return r;
        }
    }
    for (size_t i = 0; i < o->nsizes; i++) {
        since_box *z = &since_boxes[i];
        z->n = o->sizes[i];
        snprintf(z->name, sizeof z->name, "since-%" PRIu64, z->n);
        static const char *const what[] = {"changed_since", "changed_since_scan", "vanished",
                                           "vanished_scan", "since_build"};
        for (int k = 0; k < 5; k++) {
            since_args[i][k] = (since_arg){z, k};
            snprintf(name, sizeof name, "store/%s/msgs:%" PRIu64, what[k], z->n);
            if ((r = reg(name, bm_since, &since_args[i][k], BENCH_US, false)) < 0)
                return r;
        }
    }
    return 0;
}

void bench_suite_store_teardown(void)
{
    for (size_t i = 0; i < BENCH_MAX_SIZES; i++) {
        free(sizes[i].live);
        sizes[i].live = NULL;
    }
    if (u_batch)
        store_user_close(u_batch);
    if (u_list)
        store_user_close(u_list);
    if (u_since)
        store_user_close(u_since);
    if (u_never)
        store_user_close(u_never);
    u_batch = u_list = u_never = u_since = NULL;
}
