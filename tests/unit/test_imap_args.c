/* tests/unit/test_imap_args.c — the IMAP reader, tokenizer, sequence sets,
 * modified UTF-7 and response strings (core/imap/imap_args.h). */
#include <stdarg.h>
#include <stdint.h>
#include <time.h>

#include "core/imap/imap_args.h"
#include "tests/unit/testutil.h"

/* ---- helpers ------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    /* xorshift64*: deterministic across runs */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}
static size_t rndn(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void dump_bytes(imap_out *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f || c == '\\')
            imap_out_printf(o, "\\x%02x", c);
        else
            imap_out_add(o, &c, 1);
    }
}

/* A canonical text form of an argument tree, for comparisons. */
static void dump_args(imap_out *o, const imap_arg *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i)
            imap_out_add(o, " ", 1);
        switch (a[i].type) {
        case IMAP_ARG_ATOM:
            imap_out_printf(o, "A:");
            dump_bytes(o, a[i].s, a[i].len);
            CHECK(strlen(a[i].s) == a[i].len);
            break;
        case IMAP_ARG_STRING:
            imap_out_printf(o, "S:%zu:", a[i].len);
            dump_bytes(o, a[i].s, a[i].len);
            CHECK(a[i].s[a[i].len] == '\0');
            break;
        case IMAP_ARG_LITERAL:
            imap_out_printf(o, "L%s:%zu:", a[i].binary ? "8" : "", a[i].len);
            dump_bytes(o, a[i].s, a[i].len);
            break;
        case IMAP_ARG_NIL:
            imap_out_printf(o, "NIL");
            break;
        case IMAP_ARG_LIST:
            imap_out_add(o, "(", 1);
            dump_args(o, a[i].list, a[i].nlist);
            imap_out_add(o, ")", 1);
            break;
        }
    }
}

static void dump_parse(imap_out *o, int rc, const char *tag, size_t taglen,
                       const char *name, const imap_arg *args, size_t nargs,
                       const char *err)
{
    if (tag)
        imap_out_printf(o, "%.*s ", (int)taglen, tag);
    else
        imap_out_printf(o, "- ");
    if (rc < 0) {
        imap_out_printf(o, "ERR:%s", err ? err : "?");
        return;
    }
    imap_out_printf(o, "%s", name);
    if (nargs)
        imap_out_add(o, " ", 1);
    dump_args(o, args, nargs);
}

/* Parse text (plain tokenizer) and return its dump (static buffer). */
static const char *parse_dump(const char *text, size_t n)
{
    static imap_out o;
    imap_args *a;
    const char *tag, *name, *err;
    size_t taglen, nargs;
    imap_arg *args;
    o.len = 0;
    int rc = imap_args_parse((const uint8_t *)text, n, &a, &tag, &taglen, &name,
                             &args, &nargs, &err);
    if (rc < 0)
        CHECK(a == NULL && err != NULL);
    dump_parse(&o, rc, tag, taglen, name, args, nargs, err);
    imap_args_free(a);
    imap_out_add(&o, "", 1);
    o.len--;
    return o.p;
}
#define PARSE(lit) parse_dump(lit, sizeof(lit) - 1)

/* ---- the reader harness -------------------------------------------------- */

struct run {
    imap_out ev;        /* one char per event: C + L B */
    imap_out cmds;      /* dumps of the commands, one per line */
    imap_out tags;      /* error tags */
    bool line_mode;
    size_t max_mem;
};

static void run_reset(struct run *r)
{
    r->ev.len = r->cmds.len = r->tags.len = 0;
    r->line_mode = false;
    r->max_mem = 0;
}

static void run_free(struct run *r)
{
    imap_out_free(&r->ev);
    imap_out_free(&r->cmds);
    imap_out_free(&r->tags);
}

static void on_command(imap_reader *rd, struct run *res)
{
    const uint8_t *p;
    size_t n;
    imap_reader_command(rd, &p, &n);
    if (res->line_mode) {
        imap_out_printf(&res->cmds, "LINE:");
        dump_bytes(&res->cmds, (const char *)p, n);
        imap_out_add(&res->cmds, "\n", 1);
        if (n == 4 && !memcmp(p, "DONE", 4)) {
            res->line_mode = false;
            imap_reader_line_mode(rd, false);
        }
        return;
    }
    const imap_literal_pos *lits;
    size_t nlits;
    imap_reader_literals(rd, &lits, &nlits);
    imap_args *a, *b;
    const char *tag, *name, *err, *tag2, *name2, *err2;
    size_t taglen, nargs, taglen2, nargs2;
    imap_arg *args, *args2;
    int rc = imap_args_parse_framed(p, n, lits, nlits, &a, &tag, &taglen, &name,
                                    &args, &nargs, &err);
    size_t before = res->cmds.len;
    dump_parse(&res->cmds, rc, tag, taglen, name, args, nargs, err);
    /* The plain tokenizer agrees with the framed one on all test input. */
    int rc2 = imap_args_parse(p, n, &b, &tag2, &taglen2, &name2, &args2, &nargs2, &err2);
    imap_out o2 = {0};
    dump_parse(&o2, rc2, tag2, taglen2, name2, args2, nargs2, err2);
    CHECK(o2.len == res->cmds.len - before &&
          !memcmp(o2.p, res->cmds.p + before, o2.len));
    imap_out_free(&o2);
    imap_out_add(&res->cmds, "\n", 1);
    if (rc == 0 && nargs == 0 && !strcmp(name, "IDLE")) {
        res->line_mode = true;
        imap_reader_line_mode(rd, true);
    }
    imap_args_free(a);
    imap_args_free(b);
}

/* Feed one piece, handling every event. */
static void feed_piece(imap_reader *rd, const uint8_t *p, size_t n, struct run *res)
{
    for (;;) {
        size_t used = 0;
        imap_read_status st = imap_reader_feed(rd, p, n, &used);
        CHECK(used <= n);
        p += used;
        n -= used;
        size_t mem = imap_reader_memory(rd);
        if (mem > res->max_mem)
            res->max_mem = mem;
        const char *tag;
        size_t taglen;
        switch (st) {
        case IMAP_READ_MORE:
            CHECK(n == 0);
            if (!imap_reader_busy(rd))
                CHECK(imap_reader_memory(rd) == 0);
            return;
        case IMAP_READ_COMMAND:
            imap_out_add(&res->ev, "C", 1);
            CHECK(!imap_reader_busy(rd));
            on_command(rd, res);
            if (rnd() & 1) {
                imap_reader_release(rd);
                CHECK(imap_reader_memory(rd) == 0);
            }
            break;
        case IMAP_READ_CONTINUE:
            imap_out_add(&res->ev, "+", 1);
            CHECK(imap_reader_busy(rd));
            break;
        case IMAP_READ_LINE_TOO_LONG:
        case IMAP_READ_LITERAL_TOO_BIG:
            imap_out_add(&res->ev, st == IMAP_READ_LINE_TOO_LONG ? "L" : "B", 1);
            if (imap_reader_error_tag(rd, &tag, &taglen))
                imap_out_printf(&res->tags, "%.*s,", (int)taglen, tag);
            else
                imap_out_printf(&res->tags, "*,");
            break;
        }
    }
}

enum split { WHOLE, SPLIT2, BYTES, RANDOM };

static void run_input(const imap_reader_limits *lim, const uint8_t *p, size_t n,
                      enum split how, size_t at, struct run *res)
{
    imap_reader *rd = imap_reader_new(lim);
    run_reset(res);
    switch (how) {
    case WHOLE:
        feed_piece(rd, p, n, res);
        break;
    case SPLIT2:
        feed_piece(rd, p, at, res);
        feed_piece(rd, p + at, n - at, res);
        break;
    case BYTES:
        for (size_t i = 0; i < n; i++)
            feed_piece(rd, p + i, 1, res);
        break;
    case RANDOM:
        for (size_t i = 0; i < n;) {
            size_t k = 1 + rndn(rndn(2) ? 8 : 64);
            if (k > n - i)
                k = n - i;
            feed_piece(rd, p + i, k, res);
            if (rndn(4) == 0)
                feed_piece(rd, p + i + k, 0, res);
            i += k;
        }
        break;
    }
    imap_reader_release(rd);
    if (!imap_reader_busy(rd))
        CHECK(imap_reader_memory(rd) == 0);
    imap_reader_free(rd);
}

static bool same(const imap_out *a, const imap_out *b)
{
    return a->len == b->len && (!a->len || !memcmp(a->p, b->p, a->len));
}

static const char *cstr(imap_out *o)
{
    imap_out_add(o, "", 1);
    o->len--;
    return o->p ? o->p : "";
}

/* Feed input whole, split at every position, byte by byte and in random
 * pieces: every way gives the expected events, commands and error tags. */
static void expect_feed(const imap_reader_limits *lim, const void *data, size_t n,
                        const char *events, const char *cmds, const char *tags)
{
    const uint8_t *p = data;
    struct run ref = {0}, r = {0};
    run_input(lim, p, n, WHOLE, 0, &ref);
    if (strcmp(cstr(&ref.ev), events) || strcmp(cstr(&ref.cmds), cmds) ||
        strcmp(cstr(&ref.tags), tags ? tags : "")) {
        fprintf(stderr, "events %s (want %s)\ncommands:\n%s(want)\n%stags %s (want %s)\n",
                cstr(&ref.ev), events, cstr(&ref.cmds), cmds, cstr(&ref.tags),
                tags ? tags : "");
        CHECK(!"unexpected reader result");
    }
    for (size_t at = 0; at <= n; at++) {
        run_input(lim, p, n, SPLIT2, at, &r);
        if (!same(&r.ev, &ref.ev) || !same(&r.cmds, &ref.cmds) || !same(&r.tags, &ref.tags)) {
            fprintf(stderr, "split at %zu: events %s\n%s", at, cstr(&r.ev), cstr(&r.cmds));
            CHECK(!"split feed differs");
            break;
        }
    }
    run_input(lim, p, n, BYTES, 0, &r);
    CHECK(same(&r.ev, &ref.ev) && same(&r.cmds, &ref.cmds) && same(&r.tags, &ref.tags));
    for (int k = 0; k < 20; k++) {
        run_input(lim, p, n, RANDOM, 0, &r);
        CHECK(same(&r.ev, &ref.ev) && same(&r.cmds, &ref.cmds) && same(&r.tags, &ref.tags));
    }
    run_free(&ref);
    run_free(&r);
}
#define EXPECT_FEED(lim, lit, ev, cmds, tags) expect_feed(lim, lit, sizeof(lit) - 1, ev, cmds, tags)

/* ---- reader tests -------------------------------------------------------- */

static void test_reader_simple(void)
{
    EXPECT_FEED(NULL, "a1 NOOP\r\n", "C", "a1 NOOP\n", NULL);
    EXPECT_FEED(NULL, "a1 noop\n", "C", "a1 NOOP\n", NULL);
    EXPECT_FEED(NULL, "a1 NOOP\r\na2 CAPABILITY\r\n\r\n", "CCC",
                "a1 NOOP\na2 CAPABILITY\n- ERR:Empty command line\n", NULL);
    /* A CR that is not before the LF is part of the line (and invalid). */
    EXPECT_FEED(NULL, "a1 NO\rOP\r\r\n", "C", "a1 ERR:Invalid command name\n", NULL);
}

static void test_reader_literals(void)
{
    /* Synchronizing literals: one continuation each. */
    EXPECT_FEED(NULL, "A2 LOGIN {3}\r\nbob {6}\r\nsecret\r\n", "++C",
                "A2 LOGIN L:3:bob L:6:secret\n", NULL);
    /* Non-synchronizing literal whose data holds CRLF and "{5}" text. */
    EXPECT_FEED(NULL, "A3 APPEND INBOX (\\Seen) {12+}\r\nhello\r\n{5}\r\n\r\n", "C",
                "A3 APPEND A:INBOX (A:\\x5cSeen) L:12:hello\\x0d\\x0a{5}\\x0d\\x0a\n", NULL);
    /* The same with a synchronizing literal: the "{5}" in the data is data. */
    EXPECT_FEED(NULL, "A3 APPEND INBOX {12}\r\nhello\r\n{5}\r\n\r\n", "+C",
                "A3 APPEND A:INBOX L:12:hello\\x0d\\x0a{5}\\x0d\\x0a\n", NULL);
    /* literal8 with NUL bytes. */
    EXPECT_FEED(NULL, "A4 APPEND INBOX ~{4}\r\n\0\1\r\n\r\n", "+C",
                "A4 APPEND A:INBOX L8:4:\\x00\\x01\\x0d\\x0a\n", NULL);
    EXPECT_FEED(NULL, "A4 APPEND INBOX ~{2+}\r\n\0\0\r\n", "C",
                "A4 APPEND A:INBOX L8:2:\\x00\\x00\n", NULL);
    /* Literal followed by more arguments; empty literals; bare LF. */
    EXPECT_FEED(NULL, "A5 LOGIN {3}\r\nbob pass\r\n", "+C", "A5 LOGIN L:3:bob A:pass\n", NULL);
    EXPECT_FEED(NULL, "A6 LOGIN {0}\r\n {0+}\r\n\r\n", "+C", "A6 LOGIN L:0: L:0:\n", NULL);
    EXPECT_FEED(NULL, "A7 LOGIN {2}\nab cd\n", "+C", "A7 LOGIN L:2:ab A:cd\n", NULL);
    /* MULTIAPPEND mixing both kinds, inside lists. */
    EXPECT_FEED(NULL, "A8 APPEND box (\\Seen) {3+}\r\nabc (\\Draft) \"date\" {2}\r\nde\r\n",
                "+C", "A8 APPEND A:box (A:\\x5cSeen) L:3:abc (A:\\x5cDraft) S:4:date L:2:de\n", NULL);
    /* A literal inside a list: "{n}" ends the line, ")" follows the data. */
    EXPECT_FEED(NULL, "A9 X ({1}\r\na {1+}\r\nb)\r\n", "+C", "A9 X (L:1:a L:1:b)\n", NULL);
}

static void test_reader_pipelined(void)
{
    EXPECT_FEED(NULL,
                "p1 NOOP\r\np2 LOGIN {1+}\r\nx y\r\np3 SELECT \"a\\\"b\"\np4 LOGIN {2}\r\n"
                "\r\n z\r\np5 FETCH 1:* (BODY[HEADER.FIELDS (A B)]<0.100>)\r\n",
                "CCC+CC",
                "p1 NOOP\np2 LOGIN L:1:x A:y\np3 SELECT S:3:a\"b\np4 LOGIN L:2:\\x0d\\x0a A:z\n"
                "p5 FETCH A:1:* (A:BODY[HEADER.FIELDS (A B)]<0.100>)\n", NULL);
    /* IDLE and DONE: line mode returns raw lines, no literal processing. */
    EXPECT_FEED(NULL, "i1 IDLE\r\n{5}\r\nDONE\r\ni2 NOOP {1}\r\nx\r\n", "CCC+C",
                "i1 IDLE\nLINE:{5}\nLINE:DONE\ni2 NOOP L:1:x\n", NULL);
}

static void test_reader_limits(void)
{
    imap_reader_limits lim = {.max_line = 32, .max_literal = 10, .max_command = 100};
    /* A line exactly at the limit passes, one byte more does not. */
    EXPECT_FEED(&lim, "a1 X 012345678901234567890123456\r\n", "C",
                "a1 X A:012345678901234567890123456\n", NULL);
    EXPECT_FEED(&lim, "a1 X 0123456789012345678901234567\r\na2 NOOP\r\n", "LC",
                "a2 NOOP\n", "a1,");
    EXPECT_FEED(&lim, "a1 X 0123456789012345678901234567\na2 NOOP\r\n", "LC",
                "a2 NOOP\n", "a1,");
    /* Far too long: skipped to the line end, then the next command works. */
    EXPECT_FEED(&lim, "a1 X xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\na2 NOOP\r\n",
                "LC", "a2 NOOP\n", "a1,");
    EXPECT_FEED(&lim, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                      "\r\na2 NOOP\r\n", "LC", "a2 NOOP\n", "*,");
    /* An overlong line ending in {n+}: the literal and the rest of the
     * command are skipped too; ending in {n}: the client waits, we resume. */
    EXPECT_FEED(&lim, "a1 X xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx {5+}\r\nab\r\nc"
                      " {2+}\r\n\r\n\r\na2 NOOP\r\n", "LC", "a2 NOOP\n", "a1,");
    EXPECT_FEED(&lim, "a1 X xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx {5}\r\na2 NOOP\r\n",
                "LC", "a2 NOOP\n", "a1,");
    /* A continuation line after a literal is a line too. */
    EXPECT_FEED(&lim, "a1 X {1}\r\nx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\na2 NOOP\r\n",
                "+LC", "a2 NOOP\n", "a1,");
    /* Synchronizing literal too big: the client does not send it. */
    EXPECT_FEED(&lim, "a1 APPEND INBOX {11}\r\na2 NOOP\r\n", "BC", "a2 NOOP\n", "a1,");
    EXPECT_FEED(&lim, "a1 APPEND INBOX {10}\r\n0123456789\r\n", "+C",
                "a1 APPEND A:INBOX L:10:0123456789\n", NULL);
    EXPECT_FEED(&lim, "a1 X {99999999999999999999}\r\na2 NOOP\r\n", "BC",
                "a2 NOOP\n", "a1,");
    /* Non-synchronizing literal too big: exactly n bytes are skipped (they
     * look like a command here), then the rest of the command. */
    EXPECT_FEED(&lim, "a1 APPEND INBOX {11+}\r\n\r\nA9 NOOP\r\n rest\r\na2 NOOP\r\n", "BC",
                "a2 NOOP\n", "a1,");
    EXPECT_FEED(&lim, "a1 APPEND INBOX {11+}\r\n\r\nA9 NOOP\r\n {4+}\r\nxxxx\r\na2 NOOP\r\n",
                "BC", "a2 NOOP\n", "a1,");
    /* ... and a synchronizing literal later in that command ends it. */
    EXPECT_FEED(&lim, "a1 APPEND INBOX {11+}\r\n\r\nA9 NOOP\r\n {4}\r\na2 NOOP\r\n",
                "BC", "a2 NOOP\n", "a1,");
    /* max_command: literals add up. */
    EXPECT_FEED(&lim, "a1 X {10+}\r\n0123456789 {10+}\r\n0123456789 {10+}\r\n0123456789"
                      " {10+}\r\n0123456789 {10+}\r\n0123456789 {10+}\r\n0123456789"
                      "\r\na2 NOOP\r\n", "BC",
                "a2 NOOP\n", "a1,");
    /* LITERAL-: {n+} above 4096 is too big, a synchronizing one is not. */
    imap_reader_limits lm = {.literal_minus = true};
    char big[5000 + 64];
    int k = snprintf(big, sizeof big, "m1 APPEND INBOX {4097+}\r\n");
    memset(big + k, 'x', 4097);
    k += 4097;
    k += snprintf(big + k, sizeof big - k, "\r\nm2 NOOP\r\n");
    struct run r = {0};
    run_input(&lm, (uint8_t *)big, (size_t)k, RANDOM, 0, &r);
    CHECK(!strcmp(cstr(&r.ev), "BC"));
    CHECK(!strcmp(cstr(&r.cmds), "m2 NOOP\n"));
    k = snprintf(big, sizeof big, "m1 APPEND INBOX {4096+}\r\n");
    memset(big + k, 'x', 4096);
    k += 4096;
    k += snprintf(big + k, sizeof big - k, "\r\nm2 NOOP\r\n");
    run_input(&lm, (uint8_t *)big, (size_t)k, RANDOM, 0, &r);
    CHECK(!strcmp(cstr(&r.ev), "CC"));
    run_free(&r);
}

static void test_reader_memory(void)
{
    imap_reader *rd = imap_reader_new(NULL);
    REQUIRE(rd);
    CHECK(imap_reader_memory(rd) == 0 && !imap_reader_busy(rd));
    const char *part = "a1 LOGIN {3}\r\n";
    size_t used;
    CHECK(imap_reader_feed(rd, (const uint8_t *)part, 5, &used) == IMAP_READ_MORE);
    CHECK(imap_reader_busy(rd) && imap_reader_memory(rd) > 0);
    CHECK(imap_reader_feed(rd, (const uint8_t *)part + 5, strlen(part) - 5, &used) ==
          IMAP_READ_CONTINUE);
    CHECK(imap_reader_busy(rd));
    CHECK(imap_reader_feed(rd, (const uint8_t *)"bob x\r\na2", 9, &used) == IMAP_READ_COMMAND);
    CHECK(used == 7 && !imap_reader_busy(rd));
    const uint8_t *p;
    size_t n;
    imap_reader_command(rd, &p, &n);
    CHECK(n == 19 && !memcmp(p, "a1 LOGIN {3}\r\nbob x", 19));
    /* The leftover "a2" is a partial command: busy, buffer kept. */
    CHECK(imap_reader_feed(rd, (const uint8_t *)"a2", 2, &used) == IMAP_READ_MORE);
    CHECK(imap_reader_busy(rd) && imap_reader_memory(rd) > 0);
    CHECK(imap_reader_feed(rd, (const uint8_t *)" NOOP\r\n", 7, &used) == IMAP_READ_COMMAND);
    /* Done with it and nothing left: no memory, whether by release or feed. */
    imap_reader_release(rd);
    CHECK(imap_reader_memory(rd) == 0 && !imap_reader_busy(rd));
    CHECK(imap_reader_feed(rd, (const uint8_t *)"a3 NOOP\r\n", 9, &used) == IMAP_READ_COMMAND);
    CHECK(imap_reader_feed(rd, NULL, 0, &used) == IMAP_READ_MORE && used == 0);
    CHECK(imap_reader_memory(rd) == 0);
    /* A skip in progress is "busy" but holds no buffer. */
    imap_reader_limits lim = {.max_literal = 4};
    imap_reader *r2 = imap_reader_new(&lim);
    REQUIRE(r2);
    CHECK(imap_reader_feed(r2, (const uint8_t *)"a {9+}\r\nabc", 11, &used) ==
          IMAP_READ_LITERAL_TOO_BIG);
    CHECK(imap_reader_feed(r2, (const uint8_t *)"abc", 3, &used) == IMAP_READ_MORE);
    CHECK(imap_reader_busy(r2) && imap_reader_memory(r2) == 0);
    imap_reader_free(r2);
    imap_reader_free(rd);
}

/* Limits change between commands (small before login, full after). */
static void test_reader_set_limits(void)
{
    imap_reader_limits small = {.max_literal = 8, .max_command = 64};
    imap_reader_limits full = {.max_literal = 1000, .max_command = 2000};
    imap_reader *rd = imap_reader_new(&small);
    REQUIRE(rd);
    size_t used;
    CHECK(imap_reader_feed(rd, (const uint8_t *)"a LOGIN {9}\r\n", 13, &used) ==
          IMAP_READ_LITERAL_TOO_BIG);
    CHECK(!imap_reader_busy(rd));           /* {n}: nothing to skip */
    CHECK(imap_reader_feed(rd, (const uint8_t *)"b LOGIN {8+}\r\n12345678\r\n", 24, &used) ==
          IMAP_READ_COMMAND && used == 24);
    imap_reader_release(rd);
    imap_reader_set_limits(rd, &full);
    char cmd[600];
    int n = snprintf(cmd, sizeof cmd, "c APPEND INBOX {500+}\r\n%500s\r\n", "x");
    CHECK(imap_reader_feed(rd, (const uint8_t *)cmd, (size_t)n, &used) == IMAP_READ_COMMAND &&
          used == (size_t)n);
    imap_reader_release(rd);
    imap_reader_set_limits(rd, &small);
    CHECK(imap_reader_feed(rd, (const uint8_t *)cmd, (size_t)n, &used) ==
          IMAP_READ_LITERAL_TOO_BIG);
    CHECK(imap_reader_busy(rd));            /* {n+}: its bytes are being skipped */
    imap_reader_free(rd);
}

static void test_reader_large_literal(void)
{
    const size_t size = 50u * 1024 * 1024, piece = 16 * 1024;
    imap_reader_limits lim = {.max_literal = 64u << 20, .max_command = 80u << 20};
    imap_reader *rd = imap_reader_new(&lim);
    REQUIRE(rd);
    char head[64];
    int hn = snprintf(head, sizeof head, "big APPEND INBOX {%zu}\r\n", size);
    size_t used;
    CHECK(imap_reader_feed(rd, (uint8_t *)head, (size_t)hn, &used) == IMAP_READ_CONTINUE);
    uint8_t *buf = malloc(piece);
    REQUIRE(buf);
    for (size_t i = 0; i < piece; i++)
        buf[i] = (uint8_t)(i * 7 + (i % 3 ? '\n' : '{'));
    double t0 = now();
    size_t sent = 0;
    imap_read_status st = IMAP_READ_MORE;
    while (sent < size) {
        size_t k = size - sent < piece ? size - sent : piece;
        st = imap_reader_feed(rd, buf, k, &used);
        CHECK(st == IMAP_READ_MORE && used == k);
        sent += k;
    }
    st = imap_reader_feed(rd, (const uint8_t *)"\r\n", 2, &used);
    double t1 = now();
    CHECK(st == IMAP_READ_COMMAND);
    const uint8_t *p;
    size_t n;
    imap_reader_command(rd, &p, &n);
    CHECK(n == (size_t)hn + size);
    CHECK(!memcmp(p + hn + piece, buf, piece));
    CHECK(imap_reader_memory(rd) < 2 * n + 4096);
    const imap_literal_pos *l;
    size_t nl;
    imap_reader_literals(rd, &l, &nl);
    CHECK(nl == 1 && l[0].off == (size_t)hn && l[0].len == size);
    imap_args *a;
    const char *tag, *name, *err;
    size_t taglen, nargs;
    imap_arg *args;
    CHECK(imap_args_parse_framed(p, n, l, nl, &a, &tag, &taglen, &name, &args, &nargs,
                                 &err) == 0);
    CHECK(nargs == 2 && args[1].type == IMAP_ARG_LITERAL && args[1].len == size);
    imap_args_free(a);
    imap_reader_release(rd);
    CHECK(imap_reader_memory(rd) == 0);
    fprintf(stderr, "     50 MB literal in 16 KB pieces: %.3f s\n", t1 - t0);
    free(buf);
    imap_reader_free(rd);
}

/* ---- tokenizer tests ----------------------------------------------------- */

#define CHECK_PARSE(lit, want) do { const char *got_ = PARSE(lit); \
    if (strcmp(got_, want)) { fprintf(stderr, "  parse %s\n  got  %s\n  want %s\n", \
    #lit, got_, want); CHECK(!"parse"); } } while (0)

static void test_tokens_good(void)
{
    CHECK_PARSE("a FETCH 1:* (FLAGS BODY[HEADER.FIELDS (A B)]<0.100> BINARY.PEEK[1]<5.10> BODY[])",
                "a FETCH A:1:* (A:FLAGS A:BODY[HEADER.FIELDS (A B)]<0.100> "
                "A:BINARY.PEEK[1]<5.10> A:BODY[])");
    CHECK_PARSE("t uid fetch 1 BODY.PEEK[1.2.MIME]", "t UID A:fetch A:1 A:BODY.PEEK[1.2.MIME]");
    CHECK_PARSE("x FETCH 1 BODY[HEADER.FIELDS (\"X-a]b\" Y)]",
                "x FETCH A:1 A:BODY[HEADER.FIELDS (\"X-a]b\" Y)]");
    /* header-fld-name is an astring: a literal there becomes a quoted string */
    CHECK_PARSE("x FETCH 1 BODY.PEEK[HEADER.FIELDS ({7}\r\nSubject X {3+}\r\na\"b)]<0.5> UID",
                "x FETCH A:1 A:BODY.PEEK[HEADER.FIELDS (\"Subject\" X \"a\\x5c\"b\")]<0.5> A:UID");
    CHECK_PARSE("x LOGIN \"us\\\\er\" \"p\\\"w\"", "x LOGIN S:5:us\\x5cer S:3:p\"w");
    CHECK_PARSE("x SELECT \"\xc3\xa9t\xc3\xa9\"", "x SELECT S:5:\\xc3\\xa9t\\xc3\\xa9");
    CHECK_PARSE("x SELECT \"\"", "x SELECT S:0:");
    CHECK_PARSE("x A NIL nil (NIL) NILS", "x A NIL NIL (NIL) A:NILS");
    CHECK_PARSE("x STORE 1 +FLAGS.SILENT (\\Seen \\Answered $Junk)",
                "x STORE A:1 A:+FLAGS.SILENT (A:\\x5cSeen A:\\x5cAnswered A:$Junk)");
    CHECK_PARSE("x LIST \"\" %", "x LIST S:0: A:%");
    CHECK_PARSE("x LIST \"\" ~peter/mail/*", "x LIST S:0: A:~peter/mail/*");
    CHECK_PARSE("x SEARCH () (())", "x SEARCH () (())");
    CHECK_PARSE("a] NOOP", "a] NOOP");
    CHECK_PARSE("x   NOOP   a    b  ", "x NOOP A:a A:b");
    CHECK_PARSE("x LOGIN {3}\r\nbob {4+}\r\np\"ss", "x LOGIN L:3:bob L:4:p\"ss");
    CHECK_PARSE("x LOGIN {3}\nbob ~{1}\n\0", "x LOGIN L:3:bob L8:1:\\x00");
    CHECK_PARSE("x APPEND a (\\Seen) \"1-Jan-2020 00:00:00 +0000\" {1}\r\n)",
                "x APPEND A:a (A:\\x5cSeen) S:25:1-Jan-2020 00:00:00 +0000 L:1:)");
    CHECK_PARSE("x X ({1}\r\n))", "x X (L:1:))");
    CHECK_PARSE("x SELECT caf\xc3\xa9", "x SELECT A:caf\\xc3\\xa9");
    CHECK_PARSE("x FETCH 1 (BODY[]<0.10> BODY[1.HEADER])",
                "x FETCH A:1 (A:BODY[]<0.10> A:BODY[1.HEADER])");
    /* '[' is an ATOM-CHAR: only after a fetch attribute does it open a
     * section (a mailbox named with every atom character but ']'). */
    CHECK_PARSE("x SELECT !#$&'+,-.0123456789:;<=>?@^_`|[}",
                "x SELECT A:!#$&'+,-.0123456789:;<=>?@^_`|[}");
    CHECK_PARSE("x LIST \"\" a[b*", "x LIST S:0: A:a[b*");
    CHECK_PARSE("x CREATE a[b c]", "x CREATE A:a[b A:c]");
    CHECK_PARSE("x FETCH 1 (body[1] Binary.Size[2] binary.peek[3]<0.4> BODYX[a b])",
                "x FETCH A:1 (A:body[1] A:Binary.Size[2] A:binary.peek[3]<0.4> A:BODYX[a A:b])");
    CHECK_PARSE("x FETCH 1 (FLAGS x.BODY[a b])", "x FETCH A:1 (A:FLAGS A:x.BODY[a A:b])");

    /* 64 levels of lists are fine, 65 are not. */
    char deep[256];
    int k = snprintf(deep, sizeof deep, "d X ");
    for (int i = 0; i < 64; i++)
        deep[k++] = '(';
    for (int i = 0; i < 64; i++)
        deep[k++] = ')';
    CHECK(strncmp(parse_dump(deep, (size_t)k), "d X ((", 6) == 0);
    k = snprintf(deep, sizeof deep, "d X ");
    for (int i = 0; i < 65; i++)
        deep[k++] = '(';
    for (int i = 0; i < 65; i++)
        deep[k++] = ')';
    CHECK(!strcmp(parse_dump(deep, (size_t)k), "d ERR:Lists nested too deeply"));

    /* The tree and the accessors. */
    static const char cmd[] = "t1 login NIL {3}\r\na\0b (x) \"q\" 007";
    imap_args *a;
    const char *tag, *name, *err;
    size_t taglen, nargs;
    imap_arg *args;
    REQUIRE(imap_args_parse((const uint8_t *)cmd, sizeof cmd - 1, &a, &tag, &taglen, &name, &args,
                            &nargs, &err) == 0);
    CHECK(taglen == 2 && !memcmp(tag, "t1", 2) && !strcmp(name, "LOGIN"));
    REQUIRE(nargs == 5);
    CHECK(!strcmp(imap_arg_astring(a, &args[0]), "NIL"));
    CHECK(imap_arg_astring(a, &args[1]) == NULL);     /* NUL inside */
    CHECK(imap_arg_astring(a, &args[2]) == NULL);     /* a list */
    CHECK(!strcmp(imap_arg_astring(a, &args[3]), "q"));
    CHECK(!strcmp(imap_arg_astring(a, &args[4]), "007"));
    CHECK(imap_arg_is(&args[0], "nil") && imap_arg_is(&args[2].list[0], "X"));
    CHECK(!imap_arg_is(&args[3], "q") && !imap_arg_is(&args[2], "x"));
    uint64_t v = 1;
    CHECK(imap_arg_number(&args[4], &v) == 0 && v == 7);
    CHECK(imap_arg_number(&args[3], &v) == -EINVAL);   /* a string */
    imap_args_free(a);
    REQUIRE(imap_args_parse((const uint8_t *)"t X {3}\r\nabc", 12, &a, &tag, &taglen, &name,
                            &args, &nargs, &err) == 0);
    const char *s = imap_arg_astring(a, &args[0]);
    CHECK(s && !strcmp(s, "abc"));
    imap_args_free(a);
}

static void check_number(const char *text, int want_rc, uint64_t want)
{
    imap_arg arg = {.type = IMAP_ARG_ATOM, .s = text, .len = strlen(text)};
    uint64_t v = 0;
    int rc = imap_arg_number(&arg, &v);
    CHECK_EQ(rc, want_rc);
    if (rc == 0)
        CHECK(v == want);
}

static void test_tokens_number(void)
{
    check_number("0", 0, 0);
    check_number("4294967296", 0, 4294967296ull);
    check_number("9223372036854775807", 0, 9223372036854775807ull);
    check_number("9223372036854775808", -ERANGE, 0);
    check_number("18446744073709551616", -ERANGE, 0);
    check_number("99999999999999999999999", -ERANGE, 0);
    check_number("99999999999999999999999x", -EINVAL, 0);
    check_number("-1", -EINVAL, 0);
    check_number("+1", -EINVAL, 0);
    check_number("1a", -EINVAL, 0);
    check_number("", -EINVAL, 0);
    check_number(" 1", -EINVAL, 0);
}

static void test_tokens_bad(void)
{
    CHECK_PARSE("", "- ERR:Empty command line");
    CHECK_PARSE("+a NOOP", "- ERR:Invalid tag");
    CHECK_PARSE("a+ NOOP", "- ERR:Invalid tag");
    CHECK_PARSE("* NOOP", "- ERR:Invalid tag");
    CHECK_PARSE("a{1} NOOP", "- ERR:Invalid tag");
    CHECK_PARSE(" NOOP", "- ERR:Invalid tag");
    CHECK_PARSE("a", "a ERR:Missing command name");
    CHECK_PARSE("a ", "a ERR:Missing command name");
    CHECK_PARSE("a (NOOP)", "a ERR:Missing command name");
    CHECK_PARSE("a NOOP(", "a ERR:Invalid command name");
    CHECK_PARSE("a X \"abc", "a ERR:Unterminated quoted string");
    CHECK_PARSE("a X \"abc\\", "a ERR:Unterminated quoted string");
    CHECK_PARSE("a X \"a\\nb\"", "a ERR:Invalid escape in quoted string (only \\\\ and \\\")");
    CHECK_PARSE("a X \"a\rb\"", "a ERR:Line break inside quoted string");
    CHECK_PARSE("a X \"a\nb\"", "a ERR:Line break inside quoted string");
    CHECK_PARSE("a X \"a\0b\"", "a ERR:NUL inside quoted string");
    CHECK_PARSE("a X (a b", "a ERR:Missing )");
    CHECK_PARSE("a X ((a) b", "a ERR:Missing )");
    CHECK_PARSE("a X a)", "a ERR:Unexpected )");
    CHECK_PARSE("a X (a)(b)", "a ERR:Missing space between arguments");
    CHECK_PARSE("a X \"a\"b", "a ERR:Missing space between arguments");
    CHECK_PARSE("a X abc\"d\"", "a ERR:Invalid character in atom");
    CHECK_PARSE("a X a{3}\r\nabc", "a ERR:Invalid character in atom");
    CHECK_PARSE("a X BODY[HEADER", "a ERR:Missing ]");
    CHECK_PARSE("a X BODY[HEADER\r\n]", "a ERR:Missing ] (line break)");
    CHECK_PARSE("a X BODY[HEADER.FIELDS (~{3}\r\nabc)]",
                "a ERR:A literal8 is allowed only as APPEND's message");
    CHECK_PARSE("a X BODY[HEADER.FIELDS ({3}\r\na\rb)]", "a ERR:Bad header field name in a section");
    CHECK_PARSE("a X BODY[HEADER.FIELDS ({5}\r\nab)]", "a ERR:Literal longer than the command");
    CHECK_PARSE("a X {5}\r\nab", "a ERR:Literal longer than the command");
    CHECK_PARSE("a X {5}", "a ERR:Literal not at the end of a line");
    CHECK_PARSE("a X {5} \r\nabcde", "a ERR:Literal not at the end of a line");
    CHECK_PARSE("a X {x}", "a ERR:Bad literal");
    CHECK_PARSE("a X {}\r\n", "a ERR:Bad literal");
    CHECK_PARSE("a X {99999999999999999999999}\r\n", "a ERR:Literal size too large");
    CHECK_PARSE("a X a\001b", "a ERR:Invalid character in atom");
    CHECK_PARSE("a X \001", "a ERR:Invalid character");
    CHECK_PARSE("a X \r\n", "a ERR:Unexpected line break");
    CHECK_PARSE("a X a\r\nb", "a ERR:Unexpected line break");
    CHECK_PARSE("a X {1}\r\nab", "a ERR:Missing space between arguments");

    /* Framed: literals only where the reader found them. */
    imap_literal_pos l = {.ann = 4, .off = 9, .len = 3};
    imap_args *a;
    const char *tag, *name, *err;
    size_t taglen, nargs;
    imap_arg *args;
    const uint8_t *cmd = (const uint8_t *)"a X {3}\r\n{1}";
    CHECK(imap_args_parse_framed(cmd, 12, &l, 1, &a, &tag, &taglen, &name, &args, &nargs,
                                 &err) == 0);
    CHECK(nargs == 1 && args[0].len == 3 && !memcmp(args[0].s, "{1}", 3));
    imap_args_free(a);
    CHECK(imap_args_parse_framed(cmd, 12, NULL, 0, &a, &tag, &taglen, &name, &args, &nargs,
                                 &err) == -EINVAL && !strcmp(err, "Bad literal"));
    l.len = 4;      /* beyond the command */
    CHECK(imap_args_parse_framed(cmd, 12, &l, 1, &a, &tag, &taglen, &name, &args, &nargs,
                                 &err) == -EINVAL && !strcmp(err, "Bad literal framing"));
    l = (imap_literal_pos){.ann = 2, .off = 9, .len = 3};  /* never reached */
    CHECK(imap_args_parse_framed(cmd, 12, &l, 1, &a, &tag, &taglen, &name, &args, &nargs,
                                 &err) == -EINVAL);
}

/* ---- sequence sets ------------------------------------------------------- */

static const char *seq_dump(const char *s, size_t max, bool allow_dollar)
{
    static char out[512];
    imap_seqset set;
    bool dollar = true;
    int rc = imap_seqset_parse(s, strlen(s), max, &set, allow_dollar ? &dollar : NULL);
    if (rc < 0) {
        CHECK(set.r == NULL && set.n == 0);
        snprintf(out, sizeof out, "%s", rc == -E2BIG ? "E2BIG" : rc == -EINVAL ? "EINVAL" : "?");
        return out;
    }
    size_t k = 0;
    out[0] = '\0';
    if (allow_dollar && dollar)
        k += (size_t)snprintf(out + k, sizeof out - k, "$");
    for (size_t i = 0; i < set.n; i++)
    {
        if (set.r[i].star & IMAP_SEQ_LO_STAR)
            k += (size_t)snprintf(out + k, sizeof out - k, "%s*", i ? "," : "");
        else
            k += (size_t)snprintf(out + k, sizeof out - k, "%s%u", i ? "," : "", set.r[i].lo);
        if (set.r[i].star & IMAP_SEQ_HI_STAR)
            k += (size_t)snprintf(out + k, sizeof out - k, "-*");
        else
            k += (size_t)snprintf(out + k, sizeof out - k, "-%u", set.r[i].hi);
    }
    free(set.r);
    return out;
}

#define CHECK_SEQ(s, max, dol, want) do { const char *got_ = seq_dump(s, max, dol); \
    if (strcmp(got_, want)) { fprintf(stderr, "  seqset %s: %s, want %s\n", s, got_, want); \
    CHECK(!"seqset"); } } while (0)

static void test_seqset(void)
{
    CHECK_SEQ("1", 0, false, "1-1");
    CHECK_SEQ("1,3:5,7:*", 0, false, "1-1,3-5,7-*");
    CHECK_SEQ("5:2", 0, false, "2-5");
    CHECK_SEQ("*", 0, false, "*-*");
    CHECK_SEQ("*:4", 0, false, "4-*");
    /* an explicit 4294967295 is a number, never '*' */
    CHECK_SEQ("4294967295", 0, false, "4294967295-4294967295");
    CHECK_SEQ("4294967295:*", 0, false, "4294967295-*");
    CHECK_SEQ("*:4294967295", 0, false, "4294967295-*");
    CHECK_SEQ("9,1", 0, false, "9-9,1-1");
    CHECK_SEQ("$", 0, true, "$");
    CHECK_SEQ("1", 0, true, "1-1");
    CHECK_SEQ("$", 0, false, "EINVAL");
    CHECK_SEQ("$,1", 0, true, "EINVAL");
    CHECK_SEQ("0", 0, false, "EINVAL");
    CHECK_SEQ("1:0", 0, false, "EINVAL");
    CHECK_SEQ("01", 0, false, "EINVAL");
    CHECK_SEQ("1,", 0, false, "EINVAL");
    CHECK_SEQ(",1", 0, false, "EINVAL");
    CHECK_SEQ("1:", 0, false, "EINVAL");
    CHECK_SEQ(":1", 0, false, "EINVAL");
    CHECK_SEQ("1,,2", 0, false, "EINVAL");
    CHECK_SEQ("1::2", 0, false, "EINVAL");
    CHECK_SEQ("1:2:3", 0, false, "EINVAL");
    CHECK_SEQ("a", 0, false, "EINVAL");
    CHECK_SEQ("1a", 0, false, "EINVAL");
    CHECK_SEQ("-1", 0, false, "EINVAL");
    CHECK_SEQ(" 1", 0, false, "EINVAL");
    CHECK_SEQ("", 0, false, "EINVAL");
    CHECK_SEQ("4294967296", 0, false, "EINVAL");
    CHECK_SEQ("99999999999999999999", 0, false, "EINVAL");
    CHECK_SEQ("**", 0, false, "EINVAL");
    CHECK_SEQ("1,2,3", 2, false, "E2BIG");
    CHECK_SEQ("1,2,3", 3, false, "1-1,2-2,3-3");
    CHECK_SEQ("1,2,x", 2, false, "EINVAL");

    /* A long set grows its array. */
    char big[8192];
    size_t k = 0;
    for (int i = 1; i <= 1000; i++)
        k += (size_t)snprintf(big + k, sizeof big - k, "%s%d", i > 1 ? "," : "", i * 2);
    imap_seqset set;
    CHECK(imap_seqset_parse(big, k, 1000, &set, NULL) == 0 && set.n == 1000 &&
          set.r[999].lo == 2000);
    free(set.r);
    CHECK(imap_seqset_parse(big, k, 999, &set, NULL) == -E2BIG);
}

static const char *resolve_dump(const char *s, uint32_t star)
{
    static char out[512];
    imap_seqset set;
    CHECK(imap_seqset_parse(s, strlen(s), 0, &set, NULL) == 0);
    imap_range *r = malloc((set.n ? set.n : 1) * sizeof *r);
    size_t n = imap_seqset_resolve(&set, star, r), k = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        k += (size_t)snprintf(out + k, sizeof out - k, "%s%u-%u", i ? "," : "", r[i].lo, r[i].hi);
    free(r);
    free(set.r);
    return out;
}

#define CHECK_RES(s, star, want) do { const char *got_ = resolve_dump(s, star); \
    if (strcmp(got_, want)) { fprintf(stderr, "  resolve %s (*=%u): %s, want %s\n", s, \
    (unsigned)(star), got_, want); CHECK(!"resolve"); } } while (0)

static void test_seqset_resolve(void)
{
    CHECK_RES("1:*", 10, "1-10");
    CHECK_RES("5:*", 3, "3-5");             /* '*' below the other end */
    CHECK_RES("3,10:*", 2, "2-10");         /* resolved ranges re-sorted, merged */
    CHECK_RES("9,1,5:7,2,8", 100, "1-2,5-9");
    CHECK_RES("1:*,1:*,1:*", 7, "1-7");
    CHECK_RES("4294967295", 2, "4294967295-4294967295");   /* not '*' */
    CHECK_RES("4294967294:4294967295,1", 2, "1-1,4294967294-4294967295");
    CHECK_RES("*", 0, "0-0");               /* empty mailbox: the caller decides */

    /* 2000 copies of "1:*" are one range of work. */
    char big[16384];
    size_t k = 0;
    for (int i = 0; i < 2000; i++)
        k += (size_t)snprintf(big + k, sizeof big - k, "%s1:*", i ? "," : "");
    imap_seqset set;
    CHECK(imap_seqset_parse(big, k, 0, &set, NULL) == 0 && set.n == 2000);
    imap_range *r = malloc(set.n * sizeof *r);
    CHECK(imap_seqset_resolve(&set, 1000000, r) == 1 && r[0].lo == 1 && r[0].hi == 1000000);
    free(r);
    free(set.r);

    /* random sets: the result is exactly the union, ascending, disjoint */
    unsigned seed = 12345;
    for (int round = 0; round < 2000; round++) {
        char spec[1024];
        size_t sk = 0, nr = 1 + (seed = seed * 1103515245u + 12345u) % 12;
        for (size_t i = 0; i < nr; i++) {
            unsigned a = 1 + (seed = seed * 1103515245u + 12345u) % 60;
            unsigned b = 1 + (seed = seed * 1103515245u + 12345u) % 60;
            unsigned kind = (seed = seed * 1103515245u + 12345u) % 4;
            if (kind == 0)
                sk += (size_t)snprintf(spec + sk, sizeof spec - sk, "%s%u", i ? "," : "", a);
            else if (kind == 1)
                sk += (size_t)snprintf(spec + sk, sizeof spec - sk, "%s%u:*", i ? "," : "", a);
            else
                sk += (size_t)snprintf(spec + sk, sizeof spec - sk, "%s%u:%u", i ? "," : "", a, b);
        }
        uint32_t star = 1 + (seed = seed * 1103515245u + 12345u) % 60;
        bool want[62] = {0}, got[62] = {0};
        CHECK(imap_seqset_parse(spec, sk, 0, &set, NULL) == 0);
        for (size_t i = 0; i < set.n; i++) {
            uint32_t lo = (set.r[i].star & IMAP_SEQ_LO_STAR) ? star : set.r[i].lo;
            uint32_t hi = (set.r[i].star & IMAP_SEQ_HI_STAR) ? star : set.r[i].hi;
            for (uint32_t x = lo < hi ? lo : hi; x <= (lo < hi ? hi : lo); x++)
                want[x] = true;
        }
        r = malloc(set.n * sizeof *r);
        size_t n = imap_seqset_resolve(&set, star, r);
        for (size_t i = 0; i < n; i++) {
            CHECK(r[i].lo <= r[i].hi);
            if (i)
                CHECK(r[i].lo > r[i - 1].hi + 1);
            for (uint32_t x = r[i].lo; x <= r[i].hi; x++)
                got[x] = true;
        }
        CHECK(!memcmp(want, got, sizeof want));
        free(r);
        free(set.r);
    }
}

/* ---- LIST patterns -------------------------------------------------------- */

/* The obvious backtracking matcher, exponential but plainly right: the
 * reference for imap_list_match on small inputs. */
static bool ref_match(const char *p, const char *n, const char *n0, char sep, size_t ci)
{
    for (; *p; p++, n++) {
        if (*p == '*' || *p == '%') {
            for (const char *k = n;; k++) {
                if (ref_match(p + 1, k, n0, sep, ci))
                    return true;
                if (!*k || (*p == '%' && *k == sep))
                    return false;
            }
        }
        if ((size_t)(n - n0) < ci ? (!*n || (*p | 0x20) != (*n | 0x20)) : *p != *n)
            return false;
    }
    return *n == '\0';
}

static void test_list_match(void)
{
    CHECK(imap_list_match("*", "a/b/c", '/'));
    CHECK(imap_list_match("%", "abc", '/'));
    CHECK(!imap_list_match("%", "a/b", '/'));
    CHECK(imap_list_match("a/%", "a/b", '/'));
    CHECK(!imap_list_match("a/%", "a/b/c", '/'));
    CHECK(imap_list_match("a/*", "a/b/c", '/'));
    CHECK(imap_list_match("INBOX", "INBOX", '/'));
    CHECK(imap_list_match("inbox/%", "INBOX/x", '/'));
    CHECK(!imap_list_match("inbox/X", "INBOX/x", '/'));   /* only the INBOX level folds */
    CHECK(!imap_list_match("work", "Work", '/'));
    CHECK(imap_list_match("", "", '/'));
    CHECK(!imap_list_match("", "a", '/'));
    CHECK(imap_list_match("%*%", "a/b", '/'));
    CHECK(imap_list_match("a%%b", "ab", '/'));
    CHECK(!imap_list_match("a%%b", "a/b", '/'));

    /* The pattern that made the old matcher run for minutes: it now
     * answers at once (a ctest timeout would catch a regression). */
    char name[301], pat[64];
    memset(name, 'a', 300);
    name[300] = '\0';
    snprintf(pat, sizeof pat, "*a*a*a*a*a*a*a*a*a*a*a*a*a*b");
    for (int i = 0; i < 1000; i++)
        CHECK(!imap_list_match(pat, name, '/'));
    name[299] = 'b';
    CHECK(imap_list_match(pat, name, '/'));
    /* a long pattern: more literals than the name has bytes */
    char longpat[4096];
    for (int i = 0; i < 4095; i++)
        longpat[i] = i % 2 ? 'a' : '*';
    longpat[4095] = '\0';
    CHECK(!imap_list_match(longpat, name, '/'));

    /* random patterns against random names, over a small alphabet */
    static const char alpha[] = "aAb/*%";
    unsigned seed = 99;
    for (int round = 0; round < 200000; round++) {
        char p[12], n[12];
        size_t pl = (seed = seed * 1103515245u + 12345u) >> 16 & 7;
        size_t nl = (seed = seed * 1103515245u + 12345u) >> 16 & 7;
        for (size_t i = 0; i < pl; i++)
            p[i] = alpha[((seed = seed * 1103515245u + 12345u) >> 16) % 6];
        for (size_t i = 0; i < nl; i++)
            n[i] = alpha[((seed = seed * 1103515245u + 12345u) >> 16) % 4];
        p[pl] = n[nl] = '\0';
        if (round % 7 == 0 && nl >= 1) {            /* names under INBOX */
            char t[20];
            snprintf(t, sizeof t, "INBOX/%s", n);
            snprintf(n, sizeof n, "%.11s", t);
        }
        if (round % 5 == 0 && pl >= 1) {
            char t[20];
            snprintf(t, sizeof t, "inbox%s", p);
            snprintf(p, sizeof p, "%.11s", t);
        }
        size_t ci = !strncmp(n, "INBOX", 5) && (n[5] == '\0' || n[5] == '/') ? 5 : 0;
        bool want = ref_match(p, n, n, '/', ci), got = imap_list_match(p, n, '/');
        if (want != got) {
            fprintf(stderr, "  match %s ~ %s: %d, want %d\n", p, n, got, want);
            CHECK(!"list match");
            break;
        }
    }
}

/* ---- modified UTF-7 ------------------------------------------------------ */

static void check_mutf7_pair(const char *mutf7, const char *utf8)
{
    char *u = imap_mutf7_to_utf8(mutf7, strlen(mutf7));
    char *m = imap_utf8_to_mutf7(utf8);
    if (!u || strcmp(u, utf8)) {
        fprintf(stderr, "  decode %s: %s\n", mutf7, u ? u : "NULL");
        CHECK(!"mutf7 decode");
    }
    if (!m || strcmp(m, mutf7)) {
        fprintf(stderr, "  encode %s: %s\n", utf8, m ? m : "NULL");
        CHECK(!"mutf7 encode");
    }
    free(u);
    free(m);
}

static void check_mutf7_bad(const char *mutf7, size_t len)
{
    errno = 0;
    char *u = imap_mutf7_to_utf8(mutf7, len);
    if (u) {
        fprintf(stderr, "  decoded invalid %s: %s\n", mutf7, u);
        CHECK(!"invalid mutf7 accepted");
    }
    CHECK(errno == EINVAL);
    free(u);
}

static size_t put_utf8(char *d, uint32_t c)
{
    if (c < 0x80) {
        d[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        d[0] = (char)(0xc0 | c >> 6);
        d[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        d[0] = (char)(0xe0 | c >> 12);
        d[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        d[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    d[0] = (char)(0xf0 | c >> 18);
    d[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    d[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    d[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

static void test_mutf7(void)
{
    check_mutf7_pair("~peter/mail/&U,BTFw-/&ZeVnLIqe-", "~peter/mail/台北/日本語");
    check_mutf7_pair("&Ti1lhw-", "中文");
    check_mutf7_pair("&-", "&");
    check_mutf7_pair("A&-B&-&-", "A&B&&");
    check_mutf7_pair("", "");
    check_mutf7_pair("INBOX", "INBOX");
    check_mutf7_pair("Entw&APw-rfe", "Entwürfe");
    check_mutf7_pair("&AOk-", "é");
    check_mutf7_pair("&2D3eAA-", "\xf0\x9f\x98\x80");                 /* U+1F600 */
    check_mutf7_pair("a&AAk-b", "a\tb");                                /* control */
    check_mutf7_pair("&AOkA6QDp-&-", "ééé&");

    check_mutf7_bad("&", 1);
    check_mutf7_bad("a&U,BTFw", 8);
    check_mutf7_bad("&AGE-", 5);                /* "a" encoded */
    check_mutf7_bad("&ACY-", 5);                /* "&" encoded */
    check_mutf7_bad("&Jjo!-", 6);               /* bad base64 */
    check_mutf7_bad("&U/BTFw-", 8);             /* '/' is not modified base64 */
    check_mutf7_bad("&U,BTFw-&ZeVnLIqe-", 18);  /* two runs where one would do */
    check_mutf7_bad("&2D0-", 5);                /* lone high surrogate */
    check_mutf7_bad("&2D0AYQ-", 8);             /* high surrogate + 'a' */
    check_mutf7_bad("&3gA-", 5);                /* lone low surrogate */
    check_mutf7_bad("&AOl-", 5);                /* non-zero padding bits */
    check_mutf7_bad("&AOkA-", 6);               /* a needless extra character */
    check_mutf7_bad("&A-", 3);                  /* too short for a character */
    check_mutf7_bad("&AAA-", 5);                /* U+0000 */
    check_mutf7_bad("\xc3\xa9", 2);             /* 8-bit */
    check_mutf7_bad("a\tb", 3);                 /* control */
    check_mutf7_bad("a\0b", 3);

    const char *bad8[] = {"\xc3", "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xed\xa0\x80",
                          "\xf4\x90\x80\x80", "\xff", "a\x80", "\xe4\xb8"};
    for (size_t i = 0; i < sizeof bad8 / sizeof *bad8; i++) {
        errno = 0;
        char *m = imap_utf8_to_mutf7(bad8[i]);
        CHECK(m == NULL && errno == EINVAL);
        free(m);
    }

    /* Random round trips, both ways. */
    for (int it = 0; it < 3000; it++) {
        char s[256];
        size_t k = 0;
        size_t nchars = rndn(12);
        for (size_t i = 0; i < nchars; i++) {
            uint32_t c;
            switch (rndn(4)) {
            case 0: c = 0x20 + (uint32_t)rndn(0x5f); break;
            case 1: c = 1 + (uint32_t)rndn(0x7ff); break;
            case 2: c = 1 + (uint32_t)rndn(0xffff); break;
            default: c = 0x10000 + (uint32_t)rndn(0x100000); break;
            }
            if (c >= 0xd800 && c <= 0xdfff)
                c = 0x4e2d;
            k += put_utf8(s + k, c);
        }
        s[k] = '\0';
        char *m = imap_utf8_to_mutf7(s);
        REQUIRE(m);
        for (const char *q = m; *q; q++)
            CHECK(*q >= 0x20 && *q <= 0x7e);
        char *u = imap_mutf7_to_utf8(m, strlen(m));
        CHECK(u && !strcmp(u, s));
        free(u);
        free(m);
    }
    /* Random printable input: whatever decodes re-encodes to itself. */
    const char alpha[] = "&-AZaz09+,/ gE";
    for (int it = 0; it < 20000; it++) {
        char s[24];
        size_t n = rndn(sizeof s);
        for (size_t i = 0; i < n; i++)
            s[i] = alpha[rndn(sizeof alpha - 1)];
        char *u = imap_mutf7_to_utf8(s, n);
        if (!u)
            continue;
        char *m = imap_utf8_to_mutf7(u);
        CHECK(m && strlen(m) == n && !memcmp(m, s, n));
        free(m);
        free(u);
    }
}

/* ---- imap_out ------------------------------------------------------------ */

static const char *out_str(const char *s, size_t n, bool utf8_ok)
{
    static imap_out o;
    o.len = 0;
    imap_out_string(&o, s, n, utf8_ok);
    imap_out_add(&o, "", 1);
    o.len--;
    return o.p;
}

static void test_out(void)
{
    CHECK(!strcmp(out_str("abc", 3, false), "\"abc\""));
    CHECK(!strcmp(out_str("", 0, false), "\"\""));
    CHECK(!strcmp(out_str("a\"b\\c", 5, false), "\"a\\\"b\\\\c\""));
    CHECK(!strcmp(out_str("a\r\nb", 4, false), "{4}\r\na\r\nb"));
    CHECK(!strcmp(out_str("a\nb", 3, true), "{3}\r\na\nb"));
    CHECK(!memcmp(out_str("a\0b", 3, true), "{3}\r\na\0b", 8));
    CHECK(!strcmp(out_str("\xc3\xa9", 2, false), "{2}\r\n\xc3\xa9"));
    CHECK(!strcmp(out_str("\xc3\xa9", 2, true), "\"\xc3\xa9\""));
    CHECK(!strcmp(out_str("\xc3", 1, true), "{1}\r\n\xc3"));          /* not UTF-8 */
    CHECK(!strcmp(out_str("\xed\xa0\x80", 3, true), "{3}\r\n\xed\xa0\x80"));
    CHECK(!strcmp(out_str("a\tb", 3, false), "\"a\tb\""));
    char big[1100];
    memset(big, 'x', sizeof big);
    const char *q = out_str(big, 1023, false);
    CHECK(strlen(q) == 1025 && q[0] == '"');
    q = out_str(big, 1024, false);
    CHECK(!strncmp(q, "{1024}\r\nxxx", 11) && strlen(q) == 1024 + 8);

    imap_out o = {0};
    imap_out_nstring(&o, NULL, 0, false);
    imap_out_add(&o, " ", 1);
    imap_out_nstring(&o, "x", 1, false);
    imap_out_printf(&o, " %d %s", 42, "end");
    CHECK(o.len == 14 && !memcmp(o.p, "NIL \"x\" 42 end", 14));
    /* printf longer than the small stack buffer */
    o.len = 0;
    imap_out_printf(&o, "%.*s|%d", 1000, big, 7);
    CHECK(o.len == 1002 && o.p[1000] == '|' && o.p[1001] == '7');
    CHECK(o.err == 0);
    imap_out_free(&o);
    CHECK(o.p == NULL && o.len == 0 && o.cap == 0);
    /* A growing buffer of many small appends. */
    for (int i = 0; i < 100000; i++)
        imap_out_add(&o, "0123456789", 10);
    CHECK(o.len == 1000000 && !memcmp(o.p + 999990, "0123456789", 10));
    imap_out_free(&o);
}

/* ---- generated well-formed commands -------------------------------------- */

struct gen {
    imap_out wire, want;
    int sync;
};

static void gen_arg(struct gen *g, int depth)
{
    static const char *atoms[] = {"INBOX", "1:*", "BODY[HEADER.FIELDS (A B)]<0.10>", "\\Seen",
                                  "%", "x", "BODY.PEEK[]", "123", "a]b", "~x"};
    char tmp[64];
    switch (rndn(depth < 4 ? 6 : 5)) {
    case 0: {
        const char *a = atoms[rndn(sizeof atoms / sizeof *atoms)];
        imap_out_printf(&g->wire, "%s", a);
        imap_out_printf(&g->want, "A:");
        dump_bytes(&g->want, a, strlen(a));
        break;
    }
    case 1: {   /* quoted */
        size_t n = rndn(12);
        imap_out_add(&g->wire, "\"", 1);
        for (size_t i = 0; i < n; i++) {
            char c = (char)(0x20 + rndn(0x5f));
            tmp[i] = c;
            if (c == '"' || c == '\\')
                imap_out_add(&g->wire, "\\", 1);
            imap_out_add(&g->wire, &c, 1);
        }
        imap_out_add(&g->wire, "\"", 1);
        imap_out_printf(&g->want, "S:%zu:", n);
        dump_bytes(&g->want, tmp, n);
        break;
    }
    case 2:
    case 3: {   /* literal of any bytes, each kind */
        size_t n = rndn(rndn(8) ? 10 : 40);
        int kind = (int)rndn(4);
        bool binary = kind == 3;
        bool sync = kind != 1 && !(binary && rndn(2));
        imap_out_printf(&g->wire, "%s{%zu%s}%s", binary ? "~" : "", n, sync ? "" : "+",
                        rndn(4) ? "\r\n" : "\n");
        for (size_t i = 0; i < n; i++) {
            static const char pick[] = "\r\n{}5+~\"() \0x";
            tmp[i] = rndn(2) ? pick[rndn(sizeof pick - 1)] : (char)rnd();
        }
        imap_out_add(&g->wire, tmp, n);
        imap_out_printf(&g->want, "L%s:%zu:", binary ? "8" : "", n);
        dump_bytes(&g->want, tmp, n);
        g->sync += sync;
        break;
    }
    case 4:
        imap_out_printf(&g->wire, rndn(2) ? "NIL" : "nil");
        imap_out_printf(&g->want, "NIL");
        break;
    default: {
        size_t n = rndn(4);
        imap_out_add(&g->wire, "(", 1);
        imap_out_add(&g->want, "(", 1);
        for (size_t i = 0; i < n; i++) {
            if (i) {
                imap_out_add(&g->wire, " ", 1);
                imap_out_add(&g->want, " ", 1);
            }
            gen_arg(g, depth + 1);
        }
        imap_out_add(&g->wire, ")", 1);
        imap_out_add(&g->want, ")", 1);
        break;
    }
    }
}

static void test_generated(void)
{
    struct gen g = {0};
    struct run r = {0};
    int want_sync = 0;
    for (int it = 0; it < 1500; it++) {
        /* A pipeline of a few commands. */
        g.wire.len = g.want.len = 0;
        g.sync = 0;
        size_t ncmd = 1 + rndn(3);
        for (size_t c = 0; c < ncmd; c++) {
            imap_out_printf(&g.wire, "t%d.%zu CMD", it, c);
            imap_out_printf(&g.want, "t%d.%zu CMD", it, c);
            size_t nargs = rndn(5);
            for (size_t i = 0; i < nargs; i++) {
                imap_out_add(&g.wire, " ", 1);
                imap_out_add(&g.want, " ", 1);
                gen_arg(&g, 0);
            }
            imap_out_printf(&g.wire, rndn(3) ? "\r\n" : "\n");
            imap_out_add(&g.want, "\n", 1);
        }
        want_sync = g.sync;
        run_input(NULL, (uint8_t *)g.wire.p, g.wire.len, rndn(2) ? RANDOM : BYTES, 0, &r);
        size_t nplus = 0, ncmds = 0;
        for (size_t i = 0; i < r.ev.len; i++) {
            nplus += r.ev.p[i] == '+';
            ncmds += r.ev.p[i] == 'C';
        }
        CHECK_EQ(nplus, want_sync);
        CHECK_EQ(ncmds, ncmd);
        if (!same(&r.cmds, &g.want)) {
            fprintf(stderr, "generated:\n%s\ngot:\n%s", cstr(&g.want), cstr(&r.cmds));
            CHECK(!"generated command");
            break;
        }
    }
    imap_out_free(&g.wire);
    imap_out_free(&g.want);
    run_free(&r);
}

/* ---- random robustness --------------------------------------------------- */

static void test_random_bytes(void)
{
    static const char *frags[] = {"{", "}", "+", "~", "0", "1", "5", "9", "\r\n", "\n", "\r",
                                  "\"", "\\", "(", ")", "[", "]", " ", "A1", " NOOP", "{5}\r\n",
                                  "{3+}\r\n", "~{2}\r\n", "{0}\r\n", "NIL", "<0.5>", "BODY[",
                                  "{999999}\r\n", "{40+}\r\n", "a1 X ", "\0", "*", "%"};
    const size_t nfrag = sizeof frags / sizeof *frags;
    double t0 = now();
    size_t iters = 0, bytes = 0, cmds = 0;
    uint8_t stream[4096];
    while (now() - t0 < 3.0) {
        imap_reader_limits lim = {.max_line = 16 + rndn(100), .max_literal = 1 + rndn(200),
                                  .max_command = 32 + rndn(400), .literal_minus = rndn(2)};
        if (lim.literal_minus)
            lim.max_literal = 5000;
        size_t bound = 2 * (lim.max_command + 16) + 256 +
                       (2 * (lim.max_command / 5 + 1) + 4) * sizeof(imap_literal_pos);
        imap_reader *rd = imap_reader_new(&lim);
        REQUIRE(rd);
        size_t n = 0;
        while (n < sizeof stream - 16) {
            if (rndn(3) == 0) {
                stream[n++] = (uint8_t)rnd();
            } else {
                const char *f = frags[rndn(nfrag)];
                size_t fl = *f ? strlen(f) : 1;
                memcpy(stream + n, f, fl);
                n += fl;
            }
        }
        for (size_t i = 0; i < n;) {
            size_t k = 1 + rndn(rndn(2) ? 4 : 300);
            if (k > n - i)
                k = n - i;
            const uint8_t *p = stream + i;
            size_t left = k;
            for (;;) {
                size_t used = 0;
                imap_read_status st = imap_reader_feed(rd, p, left, &used);
                CHECK(used <= left);
                p += used;
                left -= used;
                CHECK(imap_reader_memory(rd) <= bound);
                if (st == IMAP_READ_MORE) {
                    CHECK(left == 0);
                    break;
                }
                if (st == IMAP_READ_COMMAND) {
                    const uint8_t *cp;
                    size_t cn;
                    const imap_literal_pos *l;
                    size_t nl;
                    imap_reader_command(rd, &cp, &cn);
                    imap_reader_literals(rd, &l, &nl);
                    CHECK(cn <= lim.max_command + 1);
                    imap_args *a;
                    const char *tag, *name, *err;
                    size_t taglen, nargs;
                    imap_arg *args;
                    int rc = imap_args_parse_framed(cp, cn, l, nl, &a, &tag, &taglen, &name,
                                                    &args, &nargs, &err);
                    if (rc < 0)
                        CHECK(strcmp(err, "Bad literal framing") != 0);
                    for (size_t j = 0; rc == 0 && j < nargs; j++)
                        (void)imap_arg_astring(a, &args[j]);
                    imap_args_free(a);
                    rc = imap_args_parse(cp, cn, &a, &tag, &taglen, &name, &args, &nargs, &err);
                    imap_args_free(a);
                    cmds++;
                    if (rndn(8) == 0)
                        imap_reader_line_mode(rd, rndn(2));
                    if (rndn(2))
                        imap_reader_release(rd);
                }
            }
            i += k;
        }
        bytes += n;
        iters++;
        imap_reader_free(rd);
        /* The tokenizer straight on random bytes. */
        imap_args *a;
        const char *tag, *name, *err;
        size_t taglen, nargs;
        imap_arg *args;
        size_t len = rndn(200);
        imap_args_parse(stream, len, &a, &tag, &taglen, &name, &args, &nargs, &err);
        imap_args_free(a);
        imap_seqset set;
        bool dollar;
        if (imap_seqset_parse((const char *)stream, rndn(12), 4, &set, &dollar) == 0)
            free(set.r);
        free(imap_mutf7_to_utf8((const char *)stream, rndn(40)));
        stream[rndn(40)] = '\0';
        free(imap_utf8_to_mutf7((const char *)stream));
    }
    fprintf(stderr, "     random: %zu streams, %zu bytes, %zu commands\n", iters, bytes, cmds);
}

int main(void)
{
    RUN(test_reader_simple);
    RUN(test_reader_literals);
    RUN(test_reader_pipelined);
    RUN(test_reader_limits);
    RUN(test_reader_memory);
    RUN(test_reader_set_limits);
    RUN(test_reader_large_literal);
    RUN(test_tokens_good);
    RUN(test_tokens_number);
    RUN(test_tokens_bad);
    RUN(test_seqset);
    RUN(test_seqset_resolve);
    RUN(test_list_match);
    RUN(test_mutf7);
    RUN(test_out);
    RUN(test_generated);
    RUN(test_random_bytes);
    return test_summary();
}
