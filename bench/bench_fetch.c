/* bench/bench_fetch.c — building FETCH responses for a header listing.
 *
 *   fetch/envelope/msgs:N
 *       UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)
 *   fetch/header_fields/msgs:N
 *       UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (From To Subject Date Message-ID)])
 *
 * over a store mailbox of N realistic messages (bench_mail.c; --fetch-sizes,
 * default 1000 and 10000).  One iteration = the whole listing as
 * core/server/cmd_fetch.c runs it, through the FETCH engine itself
 * (core/fetch/fetch_engine.h): the attribute list parsed into a request, a
 * snapshot, then imap_fetch_one for each message in UID order; the output
 * is handed off every 1 MiB (here: counted and dropped; no session, no
 * socket, no TLS).
 *
 * bytes_per_second = response bytes/s, items_per_second = messages/s.  A
 * first pass keeps the whole output and checks it: N responses in sequence
 * order with the right UIDs and flags, the From name of each message in its
 * ENVELOPE, and each HEADER.FIELDS literal holding exactly the requested
 * fields and the blank line.
 */
#include "bench/bench.h"
#include "core/fetch/fetch_engine.h"
#include "core/imap/imap_args.h"
#include "store/store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLUSH_AT (1u << 20)     /* output handed off above 1 MiB */
#define ENV_CMD "t UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)"
#define HDR_CMD "t UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (From To Subject Date Message-ID)])"

typedef struct fetch_arg {
    uint64_t n;
    bool header_fields;
} fetch_arg;

static fetch_arg g_args[2 * BENCH_MAX_SIZES];

/* One listing.  With keep_all the output is not dropped (for checking).
 * Returns 0 or -errno; *bytes gets the response bytes. */
static int listing(const bench_mail *m, const imap_fetch_req *req, imap_out *o,
                   bool keep_all, uint64_t *bytes)
{
    store_snap *snap = store_snap_get(m->mb);
    if (!snap)
        return -ENOMEM;
    imap_fetch_ctx x;
    imap_fetch_ctx_init(&x, snap, false, UINT32_MAX);
    int r = 0;
    uint64_t sent = 0;
    for (uint32_t i = 0; i < m->nlive && r == 0; i++) {
        r = imap_fetch_one(&x, o, req, i + 1, m->live[i], true, false);
        if (o->err)
            r = o->err;
        if (!keep_all && o->len > FLUSH_AT) {
            sent += o->len;
            o->len = 0;
        }
    }
    sent += o->len;
    if (!keep_all)
        o->len = 0;
    store_snap_put(snap);
    *bytes = sent;
    return r;
}

static void flags_str(char *b, size_t cap, uint32_t f)
{
    snprintf(b, cap, "(%s%s%s%s%s", f & STORE_F_SEEN ? "\\Seen " : "",
             f & STORE_F_ANSWERED ? "\\Answered " : "",
             f & STORE_F_FLAGGED ? "\\Flagged " : "", f & STORE_F_DELETED ? "\\Deleted " : "",
             f & STORE_F_DRAFT ? "\\Draft " : "");
    size_t n = strlen(b);
    if (b[n - 1] == ' ')
        n--;
    b[n] = ')';
    b[n + 1] = 0;
}

/* Check a kept listing; returns NULL or what is wrong. */
static const char *check(const bench_mail *m, bool header_fields, const char *p,
                         size_t len)
{
    const char *end = p + len;
    uint64_t k = 0;     /* info index */
    for (uint32_t i = 0; i < m->nlive; i++) {
        while (k < m->ninfo && !m->info[k].live)
            k++;
        if (k == m->ninfo || m->info[k].uid != m->live[i])
            return "live UIDs and generator disagree";
        const bench_mail_info *mi = &m->info[k++];
        char head[64], fl[80];
        int hn = snprintf(head, sizeof head, "* %u FETCH (UID %u ", i + 1, m->live[i]);
        if (end - p < hn || memcmp(p, head, (size_t)hn))
            return "response missing, or wrong sequence number or UID";
        p += hn;
        if (!header_fields) {
            const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
            if (!eol || eol[-1] != ')')
                return "ENVELOPE response not one line";
            flags_str(fl, sizeof fl, mi->flags);
            size_t fn = strlen(fl);
            if (strncmp(p, "FLAGS ", 6) || (size_t)(eol - p) < 6 + fn ||
                memcmp(p + 6, fl, fn) || strncmp(p + 6 + fn, " RFC822.SIZE ", 13))
                return "wrong FLAGS or RFC822.SIZE";
            const char *env = memmem(p, (size_t)(eol - p), " ENVELOPE (\"", 12);
            /* ENVELOPE (date subject from ...: the From name is in there */
            const char *name = bench_mail_last_names[mi->from_last];
            if (!env || !memmem(env, (size_t)(eol - env), name, strlen(name)))
                return "ENVELOPE without the sender's name";
            p = eol + 2;
        } else {
            static const char echo[] =
                "BODY[HEADER.FIELDS (From To Subject Date Message-ID)] {";
            if ((size_t)(end - p) < sizeof echo || memcmp(p, echo, sizeof echo - 1))
                return "wrong HEADER.FIELDS echo";
            p += sizeof echo - 1;
            char *e;
            unsigned long n = strtoul(p, &e, 10);
            if (e == p || strncmp(e, "}\r\n", 3) || (size_t)(end - e) < 3 + n + 3)
                return "bad literal";
            const char *d = e + 3;
            /* Date, From, To, Subject, Message-ID in message order; Cc,
             * Return-Path, Received, ... left out. */
            if (n < 60 || strncmp(d, "Date: ", 6) || memcmp(d + n - 4, "\r\n\r\n", 4) ||
                !memmem(d, n, "\r\nFrom: ", 8) || !memmem(d, n, "\r\nTo: ", 6) ||
                !memmem(d, n, "\r\nSubject: ", 11) || !memmem(d, n, "\r\nMessage-ID: <", 15) ||
                memmem(d, n, "Received", 8) || memmem(d, n, "\r\nCc:", 5) ||
                memmem(d, n, "MIME-Version", 12))
                return "wrong HEADER.FIELDS data";
            p = d + n;
            if (memcmp(p, ")\r\n", 3))
                return "response not closed";
            p += 3;
        }
    }
    return p == end ? NULL : "extra output";
}

static void bm_fetch(bench_state *st, void *arg)
{
    const fetch_arg *a = arg;
    const bench_mail *m = bench_mail_get(st, a->n);
    if (!m)
        return;
    const char *cmd = a->header_fields ? HDR_CMD : ENV_CMD;
    imap_args *args = NULL;
    imap_arg *av;
    size_t ac, taglen;
    const char *tag, *name, *err = NULL;
    imap_fetch_req req = {0};
    imap_out o = {0};
    uint64_t bytes = 0, total = 0;
    /* the command is tokenized once: av[2] is the attribute list */
    int r = imap_args_parse((const uint8_t *)cmd, strlen(cmd), &args, &tag, &taglen, &name,
                            &av, &ac, &err);
    if (r < 0 || ac != 3 || (r = imap_fetch_parse(&av[2], &req, &err)) < 0) {
        bench_error(st, "parsing %s: %s", cmd, err ? err : strerror(-r));
        goto out;
    }
    if ((r = listing(m, &req, &o, true, &bytes)) < 0) {
        bench_error(st, "listing: %s", strerror(-r));
        goto out;
    }
    const char *why = check(m, a->header_fields, o.p, o.len);
    if (why) {
        bench_error(st, "check: %s", why);
        goto out;
    }
    imap_out_free(&o);
    while (bench_keep_running(st)) {
        /* cmd_fetch parses the attributes per command: so does an iteration */
        imap_fetch_req_free(&req);
        if ((r = imap_fetch_parse(&av[2], &req, &err)) < 0)
            break;
        if ((r = listing(m, &req, &o, false, &bytes)) < 0)
            break;
        total += bytes;
    }
    if (r < 0) {
        bench_error(st, "listing: %s", strerror(-r));
        goto out;
    }
    bench_set_items_processed(st, bench_iterations(st) * (int64_t)m->nlive);
    bench_set_bytes_processed(st, (int64_t)total);
    bench_set_counter(st, "resp_bytes/msg", (double)bytes / m->nlive, BENCH_COUNTER_PLAIN);
out:
    imap_out_free(&o);
    imap_fetch_req_free(&req);
    imap_args_free(args);
}

int bench_suite_fetch_register(const bench_opts *o)
{
    char name[96];
    size_t k = 0;
    for (size_t i = 0; i < o->nfetch_sizes; i++)
        for (int h = 0; h < 2; h++) {
            fetch_arg *a = &g_args[k++];
            a->n = o->fetch_sizes[i];
            a->header_fields = h;
            snprintf(name, sizeof name, "fetch/%s/msgs:%" PRIu64,
                     h ? "header_fields" : "envelope", a->n);
            bench_bm *b = bench_register(name, bm_fetch, a);
            if (!b)
                return -ENOMEM;
            bench_bm_unit(b, BENCH_MS);
        }
    return 0;
}

void bench_suite_fetch_teardown(void)
{
}
