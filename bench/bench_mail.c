/* bench/bench_mail.c — the realistic mailboxes the FETCH and SEARCH
 * benchmarks run over (see bench_mail_get in bench.h).
 *
 * Messages are generated deterministically from their number, and what
 * matters to a benchmark's answer (flags, From's last name, INTERNALDATE,
 * the body marker) is recorded in bench_mail_info, so a benchmark can check
 * its result against an independent count.  The mailbox lives under the
 * user "mail" of the work directory; with --data-dir a mailbox of the right
 * size left by an earlier run is reused (the generator is deterministic).
 */
#include "bench/bench.h"
#include "core/fetch/fetch_render.h"
#include "core/fetch/preview.h"
#include "store/store.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BUILD_BATCH   1000      /* messages per store_append */
#define EXPUNGE_EVERY 11        /* one message in 11 is expunged */
#define SLOT          6144      /* generator buffer per message */
#define BASE_DATE     1672531200    /* 2023-01-01T00:00:00Z */
#define DATE_STEP     293       /* a message every ~5 minutes */

const char *const bench_mail_first_names[16] = {
    "Alice", "Bruno", "Chen", "Dagny", "Emeka", "Fatima", "Gustav", "Hana",
    "Ingrid", "Jonas", "Keiko", "Luis", "Maren", "Nikolai", "Olga", "Priya",
};
const char *const bench_mail_last_names[12] = {
    "Andersen", "Baptiste", "Castillo", "Dubois", "Eriksen", "Fischer",
    "Garcia", "Haddad", "Ivanova", "Jensen", "Kowalski", "Lindqvist",
};
const char *const bench_mail_domains[6] = {
    "example.org", "example.com", "mail.example.net", "corp.example",
    "lists.example.org", "university.example.edu",
};
const char *const bench_mail_subjects[12] = {
    "Quarterly report draft", "Meeting notes from Tuesday",
    "Re: Build failure on the release branch", "Invoice 2024-%u",
    "Your order has shipped", "=?UTF-8?Q?R=C3=A9union_d'=C3=A9quipe?=",
    "Fwd: Conference travel arrangements", "Weekly digest #%u",
    "Re: Re: Proposal for the new storage layout",
    "Password reset requested", "Lunch on Friday?",
    "[ringmail-dev] Patch v%u: faster header listing",
};
const char *const bench_mail_body_lines[8] = {
    "Thanks for sending this over. I had a look at the numbers and most of",
    "them line up with what we discussed last week, with two exceptions.",
    "The storage figures for the third quarter look low to me; could you",
    "double-check them against the invoices before we circulate the draft?",
    "I have attached nothing this time, the spreadsheet is on the share.",
    "If Thursday does not work for you, Friday morning is also fine.",
    "Best regards, and apologies for the late reply.",
    "> On the other hand, the migration can wait until after the release.",
};


uint64_t bench_rnd_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);   /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Append printf output at *n; false if it did not fit. */
static bool put(char *buf, size_t cap, size_t *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool put(char *buf, size_t cap, size_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf + *n, cap - *n, fmt, ap);
    va_end(ap);
    if (w < 0 || (size_t)w >= cap - *n)
        return false;
    *n += (size_t)w;
    return true;
}

/* Body lines (CRLF), ~target bytes, optionally HTML-wrapped. */
static bool put_body(char *buf, size_t cap, size_t *n, uint64_t seed,
                     size_t target, bool marker, bool html)
{
    size_t start = *n;
    uint64_t ls = seed;
    if (html && !put(buf, cap, n, "<html><body>\r\n"))
        return false;
    unsigned line = 0, mark_at = (unsigned)(seed % 5);
    while (*n - start < target) {
        const char *l = BENCH_PICK(bench_mail_body_lines, bench_rnd_next(&ls));
        if (!put(buf, cap, n, html ? "<p>%s</p>\r\n" : "%s\r\n", l))
            return false;
        if (marker && line++ == mark_at &&
            !put(buf, cap, n, html ? "<p>Please quote %s in your reply.</p>\r\n"
                                   : "Please quote %s in your reply.\r\n",
                 BENCH_MAIL_MARKER))
            return false;
    }
    return !html || put(buf, cap, n, "</body></html>\r\n");
}

/* Message `no`: returns its length (0 if it did not fit) and fills *mi. */
static size_t gen_message(char *buf, size_t cap, uint64_t no, bench_mail_info *mi)
{
    uint64_t rs = no * 7919 + 17;
    uint64_t r1 = bench_rnd_next(&rs), r2 = bench_rnd_next(&rs), r3 = bench_rnd_next(&rs);
    int64_t date = BASE_DATE + (int64_t)no * DATE_STEP;
    char datebuf[64], subj[160];
    struct tm tm;
    time_t t = (time_t)date;
    gmtime_r(&t, &tm);
    strftime(datebuf, sizeof datebuf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    snprintf(subj, sizeof subj, BENCH_PICK(bench_mail_subjects, r3), (unsigned)(no % 1000));

    unsigned fl = (unsigned)((r1 >> 8) % BENCH_NELEM(bench_mail_last_names));
    const char *ffirst = BENCH_PICK(bench_mail_first_names, r1), *flast = bench_mail_last_names[fl];
    const char *fdom = BENCH_PICK(bench_mail_domains, r1 >> 16);
    const char *tfirst = BENCH_PICK(bench_mail_first_names, r2);
    const char *tlast = BENCH_PICK(bench_mail_last_names, r2 >> 8);
    uint64_t pick = (r3 >> 20) % 100;
    *mi = (bench_mail_info){
        .flags = (pick < 85 ? STORE_F_SEEN : 0) |
                 (pick % 10 == 3 ? STORE_F_ANSWERED : 0) |
                 (pick == 42 || pick == 77 ? STORE_F_FLAGGED : 0) |
                 (pick == 99 ? STORE_F_DRAFT : 0),
        .internal_date = date + 7,
        .from_last = (uint8_t)fl,
        .marker = (r2 >> 24) % 97 == 0,
        .multipart = (r3 >> 40) % 5 == 0,
    };

    size_t n = 0;
    bool ok = put(buf, cap, &n,
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
        "MIME-Version: 1.0\r\n",
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
    size_t target = 700 + (size_t)(r2 % 1100);
    if (!mi->multipart) {
        ok = ok && put(buf, cap, &n,
            "Content-Type: text/plain; charset=utf-8; format=flowed\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n");
        ok = ok && put_body(buf, cap, &n, r1, target, mi->marker, false);
    } else {
        ok = ok && put(buf, cap, &n,
            "Content-Type: multipart/alternative; boundary=\"=_b%016" PRIx64 "\"\r\n"
            "\r\n"
            "This is a multi-part message in MIME format.\r\n"
            "--=_b%016" PRIx64 "\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n", r3, r3);
        ok = ok && put_body(buf, cap, &n, r1, target / 2, mi->marker, false);
        ok = ok && put(buf, cap, &n,
            "--=_b%016" PRIx64 "\r\n"
            "Content-Type: text/html; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n", r3);
        ok = ok && put_body(buf, cap, &n, r1, target / 2, mi->marker, true);
        ok = ok && put(buf, cap, &n, "--=_b%016" PRIx64 "--\r\n", r3);
    }
    return ok ? n : 0;
}

/* ---- building and caching ------------------------------------------------ */

static store_user *g_user;
static bench_mail *g_mail[2 * BENCH_MAX_SIZES + 4];
static uint64_t g_failed_n[2 * BENCH_MAX_SIZES + 4];
static size_t g_nmail, g_nfailed;

int bench_live_uids(store_mbox *mb, uint32_t **out, uint32_t *n, uint32_t *entries)
{
    store_snap *s = store_snap_get(mb);
    if (!s)
        return -ENOMEM;
    uint32_t e = store_snap_entries(s);
    uint32_t *v = malloc(sizeof *v * (e ? e : 1));
    int r = v ? 0 : -ENOMEM;
    uint32_t k = 0;
    for (uint32_t pos = 0; pos < e && r == 0; pos++) {
        store_msg msg;
        int live = store_snap_entry(s, pos, &msg);
        if (live < 0)
            r = live;
        else if (live)
            v[k++] = msg.uid;
    }
    if (r == 0 && k != store_snap_messages(s))
        r = -EBADMSG;
    store_snap_put(s);
    if (r < 0) {
        free(v);
        return r;
    }
    *out = v;
    *n = k;
    if (entries)
        *entries = e;
    return 0;
}

static int collect_live(bench_mail *m)
{
    return bench_live_uids(m->mb, &m->live, &m->nlive, NULL);
}

/* Generate every message's info (and, when mb is set, append them). */
static int generate(bench_mail *m, store_mbox *mb)
{
    char *buf = malloc((size_t)SLOT * BUILD_BATCH);
    store_new_msg *msgs = calloc(BUILD_BATCH, sizeof *msgs);
    uint32_t *uids = malloc(sizeof *uids * BUILD_BATCH);
    store_range *gone = malloc(sizeof *gone * (BUILD_BATCH / EXPUNGE_EVERY + 2));
    int r = 0;
    uint64_t done = 0;
    double t0 = bench_now(), last = t0;
    if (!buf || !msgs || !uids || !gone) {
        r = -ENOMEM;
        goto out;
    }
    while (done < m->ninfo) {
        size_t k = m->ninfo - done < BUILD_BATCH ? (size_t)(m->ninfo - done) : BUILD_BATCH;
        for (size_t i = 0; i < k; i++) {
            bench_mail_info *mi = &m->info[done + i];
            size_t len = gen_message(buf + i * SLOT, SLOT, done + i, mi);
            if (!len) {
                r = -EOVERFLOW;
                goto out;
            }
            mi->live = (done + i) % EXPUNGE_EVERY != EXPUNGE_EVERY - 1;
            msgs[i] = (store_new_msg){
                .data = buf + i * SLOT,
                .len = len,
                .internal_date = mi->internal_date,
                .flags = mi->flags,
            };
        }
        if (mb) {
            if ((r = store_append(mb, msgs, k, uids)) < 0)
                goto out;
            size_t ng = 0;
            for (size_t i = 0; i < k; i++) {
                m->info[done + i].uid = uids[i];
                if (!m->info[done + i].live)
                    gone[ng++] = (store_range){uids[i], uids[i]};
            }
            uint64_t modseq;
            if (ng && (r = store_expunge(mb, gone, ng, false, NULL, &modseq)) < 0)
                goto out;
        }
        done += k;
        double now = bench_now();
        if (mb && (now - last >= 5.0 || done == m->ninfo)) {
            bench_note("  %s: %" PRIu64 "/%" PRIu64 " appended, %.0f msg/s",
                       m->name, done, m->ninfo, (double)done / (now - t0));
            last = now;
        }
    }
out:
    free(buf);
    free(msgs);
    free(uids);
    free(gone);
    return r;
}

static void mail_free(bench_mail *m)
{
    if (!m)
        return;
    if (m->mb)
        store_mbox_close(m->mb);
    free(m->live);
    free(m->info);
    free(m);
}

static int build(uint64_t n, bench_mail **out)
{
    int r;
    if (!g_user) {
        char root[PATH_MAX];
        const char *dir = bench_workdir();
        if (!dir)
            return -errno;
        if ((size_t)snprintf(root, sizeof root, "%s/mail", dir) >= sizeof root)
            return -ENAMETOOLONG;
        store_opts so;
        store_opts_default(&so);
        so.fsync = STORE_FSYNC_NEVER;
        /* As ringmaild does: blobs carry the rendered envelope and the
         * preview. */
        store_msg_set_renderer(imap_envelope_prerender);
        store_msg_set_previewer(imap_preview);
        if ((r = store_user_open(root, "bench-mail", &so, &g_user)) < 0)
            return r;
    }
    bench_mail *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    m->n = n;
    m->u = g_user;
    /* n live: n + n/10 appended, 1 in 11 expunged (n/10 of them). */
    m->ninfo = n + n / 10;
    snprintf(m->name, sizeof m->name, "mail-%" PRIu64, n);
    m->info = calloc(m->ninfo, sizeof *m->info);
    if (!m->info) {
        r = -ENOMEM;
        goto fail;
    }

    store_status st;
    r = store_mailbox_status(g_user, m->name, &st);
    if (r == 0 && st.messages == n && st.uidnext == m->ninfo + 1) {
        /* Left by an earlier run with --data-dir: same generator, so the
         * info is regenerated and the UIDs are 1..ninfo. */
        if ((r = generate(m, NULL)) < 0)
            goto fail;
        for (uint64_t i = 0; i < m->ninfo; i++)
            m->info[i].uid = (uint32_t)(i + 1);
        if ((r = store_mbox_open(g_user, m->name, &m->mb)) < 0 ||
            (r = collect_live(m)) < 0)
            goto fail;
        bench_note("reusing %s: %u live messages", m->name, m->nlive);
    } else {
        if (r == 0 && (r = store_mailbox_delete(g_user, m->name)) < 0)
            goto fail;
        if ((r = store_mailbox_create(g_user, m->name, 0)) < 0 ||
            (r = store_mbox_open(g_user, m->name, &m->mb)) < 0)
            goto fail;
        bench_note("building %s: %" PRIu64 " messages, then expunging 1 in %d ...",
                   m->name, m->ninfo, EXPUNGE_EVERY);
        if ((r = generate(m, m->mb)) < 0 || (r = collect_live(m)) < 0)
            goto fail;
    }
    if (m->nlive != n) {
        r = -EBADMSG;
        goto fail;
    }
    *out = m;
    return 0;
fail:
    mail_free(m);
    return r;
}

const bench_mail *bench_mail_get(bench_state *st, uint64_t n)
{
    for (size_t i = 0; i < g_nmail; i++)
        if (g_mail[i]->n == n)
            return g_mail[i];
    for (size_t i = 0; i < g_nfailed; i++)
        if (g_failed_n[i] == n) {
            bench_error(st, "mailbox of %" PRIu64 " messages could not be built", n);
            return NULL;
        }
    bench_mail *m = NULL;
    int r = g_nmail < BENCH_NELEM(g_mail) ? build(n, &m) : -ENOSPC;
    if (r < 0) {
        if (g_nfailed < BENCH_NELEM(g_failed_n)) {
            g_failed_n[g_nfailed++] = n;
        }
        bench_error(st, "building a mailbox of %" PRIu64 " messages: %s", n, strerror(-r));
        return NULL;
    }
    g_mail[g_nmail++] = m;
    return m;
}

void bench_mail_teardown(void)
{
    for (size_t i = 0; i < g_nmail; i++)
        mail_free(g_mail[i]);
    g_nmail = 0;
    if (g_user)
        store_user_close(g_user);
    g_user = NULL;
}
