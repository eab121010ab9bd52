/* bench/bench_imap.c — reading IMAP commands: core/imap/imap_reader.c framing
 * plus core/imap/imap_tokens.c tokenizing, the way core/server/session.c feeds them
 * (imap_reader_feed until MORE; on COMMAND: imap_reader_command,
 * imap_reader_literals, imap_args_parse_framed, imap_args_free,
 * imap_reader_release).  Command dispatch and execution are not included.
 *
 *   imap/parse/read:{all,4096,64}
 *       a pipelined stream of --parse-commands commands (default 1000), a
 *       repeating mix of five:
 *         UID FETCH with a 40-range UID set and a 7-item list including
 *           BODY.PEEK[HEADER.FIELDS (...)],
 *         UID STORE +FLAGS.SILENT on a set,
 *         SEARCH RETURN (...) CHARSET UTF-8 with seven keys, OR and NOT,
 *         APPEND with flags, a date and a ~1.5 KB {n+} literal,
 *         LOGIN with two quoted strings (escapes included),
 *       fed whole, in 4096-byte reads, or in 64-byte reads (the resumable
 *       path: most commands arrive in several pieces).  One iteration = the
 *       whole stream; bytes_per_second = stream bytes/s, items_per_second =
 *       commands/s.
 *
 * Before timing, one pass checks that every command came out with the
 * expected name and arguments (the APPEND literal's length, the LOGIN
 * password unescaped, the FETCH list's length).
 */
#include "bench/bench.h"
#include "core/imap/imap_args.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KINDS 5

typedef struct stream {
    uint8_t *p;
    size_t len, cap;
    uint64_t ncmds;
    size_t literal_len;         /* the APPEND literal's size */
} stream;

static stream g_stream;
static const bench_opts *opts;

static const char append_msg_head[] =
    "Date: Sun, 14 Jul 2024 10:21:00 +0200\r\n"
    "From: \"Alice Andersen\" <a.andersen@example.org>\r\n"
    "To: Bruno Baptiste <bbaptiste@example.com>\r\n"
    "Subject: Re: Quarterly report draft\r\n"
    "Message-ID: <20240714082100.4417@example.org>\r\n"
    "In-Reply-To: <20240713191502.9921@example.com>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8; format=flowed\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n";
static const char append_line[] =
    "Thanks for sending this over. I had a look at the numbers and most of\r\n";
#define APPEND_BODY_LINES 16

static bool add(stream *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool add(stream *s, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf((char *)s->p + s->len, s->cap - s->len, fmt, ap);
        va_end(ap);
        if (w < 0)
            return false;
        if ((size_t)w < s->cap - s->len) {
            s->len += (size_t)w;
            return true;
        }
        size_t nc = s->cap * 2 + (size_t)w + 1;
        uint8_t *np = realloc(s->p, nc);
        if (!np)
            return false;
        s->p = np;
        s->cap = nc;
    }
}

static int build_stream(stream *s, uint64_t ncmds)
{
    s->cap = 1 << 16;
    s->p = malloc(s->cap);
    if (!s->p)
        return -ENOMEM;
    s->literal_len = strlen(append_msg_head) + APPEND_BODY_LINES * strlen(append_line);
    for (uint64_t i = 0; i < ncmds; i++) {
        bool ok = true;
        unsigned base = (unsigned)(i * 37 % 50000) + 1;
        switch (i % KINDS) {
        case 0:
            ok = add(s, "a%" PRIu64 " UID FETCH ", i);
            for (unsigned k = 0; k < 40 && ok; k++) {
                unsigned lo = base + k * 25;
                ok = k % 3 == 2 ? add(s, "%u,", lo) : add(s, "%u:%u,", lo, lo + 7 + k % 5);
            }
            ok = ok && add(s, "%u:* (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE "
                           "BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (From To Cc Subject "
                           "Date Message-ID In-Reply-To References)])\r\n",
                           base + 1000);
            break;
        case 1:
            ok = add(s, "a%" PRIu64 " UID STORE %u:%u,%u,%u:%u +FLAGS.SILENT "
                     "(\\Seen $Forwarded)\r\n", i, base, base + 100, base + 205,
                     base + 300, base + 340);
            break;
        case 2:
            ok = add(s, "a%" PRIu64 " SEARCH RETURN (MIN MAX COUNT) CHARSET UTF-8 "
                     "UNSEEN SINCE 1-Jan-2024 FROM \"Alice Andersen\" "
                     "NOT SUBJECT \"weekly digest\" OR FLAGGED LARGER 10000 "
                     "UID %u:*\r\n", i, base);
            break;
        case 3:
            ok = add(s, "a%" PRIu64 " APPEND \"Sent Items\" (\\Seen $Forwarded) "
                     "\"14-Jul-2024 10:21:00 +0200\" {%zu+}\r\n%s", i,
                     s->literal_len, append_msg_head);
            for (int k = 0; k < APPEND_BODY_LINES && ok; k++)
                ok = add(s, "%s", append_line);
            ok = ok && add(s, "\r\n");
            break;
        case 4:
            ok = add(s, "a%" PRIu64 " LOGIN \"alice.andersen@example.org\" "
                     "\"c0rrect h\\\"orse\\\\battery\"\r\n", i);
            break;
        }
        if (!ok)
            return -ENOMEM;
    }
    s->ncmds = ncmds;
    return 0;
}

/* Check one tokenized command of kind i % KINDS; returns an error text or
 * NULL. */
static const char *check_cmd(uint64_t i, imap_args *a, const char *tag, size_t taglen,
                             const char *name, const imap_arg *args, size_t nargs,
                             size_t literal_len)
{
    char want_tag[32];
    int tl = snprintf(want_tag, sizeof want_tag, "a%" PRIu64, i);
    if (!tag || taglen != (size_t)tl || memcmp(tag, want_tag, taglen))
        return "wrong tag";
    switch (i % KINDS) {
    case 0:
        if (strcmp(name, "UID") || nargs != 3 || !imap_arg_is(&args[0], "FETCH") ||
            args[2].type != IMAP_ARG_LIST || args[2].nlist != 7 ||
            strncmp(args[2].list[6].s, "BODY.PEEK[HEADER.FIELDS (From", 29))
            return "UID FETCH parsed wrong";
        imap_seqset set;
        if (imap_seqset_parse(args[1].s, args[1].len, 0, &set, NULL) < 0 ||
            set.n != 41)
            return "UID FETCH set parsed wrong";
        free(set.r);
        return NULL;
    case 1:
        return strcmp(name, "UID") || nargs != 4 || !imap_arg_is(&args[0], "STORE") ||
               args[3].type != IMAP_ARG_LIST || args[3].nlist != 2
                   ? "UID STORE parsed wrong" : NULL;
    case 2:
        return strcmp(name, "SEARCH") || nargs != 18 ||
               args[1].type != IMAP_ARG_LIST || args[8].type != IMAP_ARG_STRING ||
               strcmp(args[8].s, "Alice Andersen")
                   ? "SEARCH parsed wrong" : NULL;
    case 3:
        return strcmp(name, "APPEND") || nargs != 4 ||
               args[3].type != IMAP_ARG_LITERAL || args[3].len != literal_len ||
               memcmp(args[3].s, "Date: ", 6)
                   ? "APPEND parsed wrong" : NULL;
    case 4: {
        if (strcmp(name, "LOGIN") || nargs != 2)
            return "LOGIN parsed wrong";
        const char *pw = imap_arg_astring(a, &args[1]);
        return !pw || strcmp(pw, "c0rrect h\"orse\\battery") ? "LOGIN password wrong"
                                                            : NULL;
    }
    }
    return "?";
}

/* One pass over the stream in pieces of `piece` bytes (0: all at once).
 * Returns the number of commands, or -errno; with check, every command is
 * verified (*why says what was wrong). */
static int64_t run_stream(imap_reader *rd, const stream *s, size_t piece, bool check,
                          const char **why)
{
    int64_t ncmd = 0;
    size_t off = 0;
    if (!piece)
        piece = s->len;
    while (off < s->len) {
        size_t n = s->len - off < piece ? s->len - off : piece;
        const uint8_t *p = s->p + off;
        off += n;
        while (n) {
            size_t used = 0;
            imap_read_status st = imap_reader_feed(rd, p, n, &used);
            p += used;
            n -= used;
            if (st == IMAP_READ_MORE || st == IMAP_READ_CONTINUE)
                continue;
            if (st != IMAP_READ_COMMAND) {
                *why = "reader error";
                return -EINVAL;
            }
            const uint8_t *cp;
            size_t cn, nlits, taglen, nargs;
            const imap_literal_pos *lits;
            imap_args *a = NULL;
            const char *tag, *name, *err;
            imap_arg *args;
            imap_reader_command(rd, &cp, &cn);
            imap_reader_literals(rd, &lits, &nlits);
            int rc = imap_args_parse_framed(cp, cn, lits, nlits, &a, &tag, &taglen,
                                            &name, &args, &nargs, &err);
            if (rc < 0) {
                *why = err ? err : "tokenizer error";
                return rc;
            }
            if (check && (*why = check_cmd((uint64_t)ncmd, a, tag, taglen, name, args,
                                           nargs, s->literal_len))) {
                imap_args_free(a);
                return -EINVAL;
            }
            imap_args_free(a);
            imap_reader_release(rd);
            ncmd++;
        }
    }
    return ncmd;
}

static void bm_parse(bench_state *st, void *arg)
{
    size_t piece = (size_t)(uintptr_t)arg;
    imap_reader *rd = imap_reader_new(NULL);
    if (!rd) {
        bench_error(st, "imap_reader_new failed");
        return;
    }
    const char *why = NULL;
    int64_t n = run_stream(rd, &g_stream, piece, true, &why);
    if (n != (int64_t)g_stream.ncmds) {
        bench_error(st, "check pass: %s (%" PRId64 " of %" PRIu64 " commands)",
                    n < 0 ? why : "wrong command count", n, g_stream.ncmds);
        goto out;
    }
    int64_t total = 0;
    while (bench_keep_running(st)) {
        n = run_stream(rd, &g_stream, piece, false, &why);
        if (n != (int64_t)g_stream.ncmds) {
            bench_error(st, "%s", n < 0 ? why : "wrong command count");
            goto out;
        }
        total += n;
    }
    bench_set_items_processed(st, total);
    bench_set_bytes_processed(st, bench_iterations(st) * (int64_t)g_stream.len);
    bench_set_counter(st, "stream_bytes", (double)g_stream.len, BENCH_COUNTER_PLAIN);
out:
    imap_reader_free(rd);
}

int bench_suite_imap_register(const bench_opts *o)
{
    opts = o;
    int r = build_stream(&g_stream, o->parse_commands);
    if (r < 0)
        return r;
    static const struct { const char *name; size_t piece; } v[] = {
        {"imap/parse/read:all", 0},
        {"imap/parse/read:4096", 4096},
        {"imap/parse/read:64", 64},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        bench_bm *b = bench_register(v[i].name, bm_parse, (void *)(uintptr_t)v[i].piece);
        if (!b)
            return -ENOMEM;
        bench_bm_unit(b, BENCH_US);
    }
    return 0;
}

void bench_suite_imap_teardown(void)
{
    free(g_stream.p);
    g_stream = (stream){0};
}
