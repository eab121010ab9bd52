/* tests/fuzz/fuzz_imap_reader.c — the command reader and tokenizer
 * (core/imap/imap_args.h).
 *
 * Input: 4 header bytes, then the client's bytes.
 *   byte 0: max_line   = 8 + 4 * b          (8 .. 1028)
 *   byte 1: max_literal = 1 + 8 * b         (1 .. 2041)
 *   byte 2: max_command = 16 + 16 * b       (16 .. 4096)
 *   byte 3: bit 0 literal_minus, bit 1 random line-mode toggling,
 *           bit 2 release after every command, bits 3..7 seed the piece
 *           sizes (together with the data).
 * The data is fed in pieces of 1 .. 64 bytes chosen by a PRNG seeded from
 * the input; every complete command goes through imap_args_parse_framed,
 * imap_args_parse and the argument helpers.  Contract checks abort. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/imap/imap_args.h"
#include "fuzz_common.h"

static void walk_args(imap_args *a, const imap_arg *args, size_t n,
                      unsigned depth)
{
    FUZZ_CHECK(depth <= 66);
    for (size_t i = 0; i < n; i++) {
        const imap_arg *g = &args[i];
        if (g->type == IMAP_ARG_LIST) {
            FUZZ_CHECK(g->nlist == 0 || g->list != NULL);
            walk_args(a, g->list, g->nlist, depth + 1);
            FUZZ_CHECK(imap_arg_astring(a, g) == NULL);
            continue;
        }
        FUZZ_CHECK(g->s != NULL);
        if (g->type != IMAP_ARG_LITERAL)
            FUZZ_CHECK(g->s[g->len] == '\0');
        (void)imap_arg_is(g, "NIL");
        (void)imap_arg_is(g, "BODY.PEEK");
        const char *as = imap_arg_astring(a, g);
        if (as) {
            size_t alen = strlen(as);
            if (g->type != IMAP_ARG_NIL)
                FUZZ_CHECK(alen == g->len);
            /* mailbox names: decode, re-encode, must be the same bytes
             * (decoding accepts only the canonical form) */
            char *u = imap_mutf7_to_utf8(as, alen);
            if (u) {
                char *m = imap_utf8_to_mutf7(u);
                FUZZ_CHECK(m != NULL || errno == ENOMEM);
                if (m)
                    FUZZ_CHECK(strcmp(m, as) == 0);
                free(m);
                free(u);
            }
            char *m = imap_utf8_to_mutf7(as);
            if (m) {
                char *back = imap_mutf7_to_utf8(m, strlen(m));
                FUZZ_CHECK(back != NULL || errno == ENOMEM);
                if (back)
                    FUZZ_CHECK(strcmp(back, as) == 0);
                free(back);
                free(m);
            }
            imap_out o = { 0 };
            imap_out_string(&o, as, alen, (alen & 1) != 0);
            imap_out_nstring(&o, NULL, 0, false);
            imap_out_free(&o);
        }
        if (g->type == IMAP_ARG_ATOM) {
            uint64_t v = 0;
            int rc = imap_arg_number(g, &v);
            FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ERANGE);
            if (rc == 0)
                FUZZ_CHECK(v <= INT64_MAX);
            for (int k = 0; k < 2; k++) {
                imap_seqset set;
                bool dollar = false;
                rc = imap_seqset_parse(g->s, g->len, k ? 0 : 4, &set,
                                       k ? &dollar : NULL);
                FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -E2BIG ||
                           rc == -ENOMEM);
                if (rc == 0) {
                    if (!k)
                        FUZZ_CHECK(set.n <= 4);
                    for (size_t j = 0; j < set.n; j++) {
                        FUZZ_CHECK(set.r[j].lo >= 1);
                        FUZZ_CHECK(set.r[j].lo <= set.r[j].hi);
                    }
                    if (dollar)
                        FUZZ_CHECK(set.n == 0);
                    else
                        FUZZ_CHECK(set.n > 0);
                } else {
                    FUZZ_CHECK(set.r == NULL && set.n == 0);
                }
                free(set.r);
            }
        }
    }
}

static void parse_command(const uint8_t *p, size_t n,
                          const imap_literal_pos *lits, size_t nlits)
{
    for (int framed = 0; framed < 2; framed++) {
        imap_args *a = NULL;
        const char *tag = NULL, *name = NULL, *err = NULL;
        size_t taglen = 0, nargs = 0;
        imap_arg *args = NULL;
        int rc = framed
            ? imap_args_parse_framed(p, n, lits, nlits, &a, &tag, &taglen,
                                     &name, &args, &nargs, &err)
            : imap_args_parse(p, n, &a, &tag, &taglen, &name, &args, &nargs,
                              &err);
        FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENOMEM);
        if (tag)
            FUZZ_CHECK((const uint8_t *)tag >= p && taglen > 0 &&
                       (const uint8_t *)tag + taglen <= p + n);
        if (rc) {
            FUZZ_CHECK(a == NULL && name == NULL && args == NULL);
            if (rc == -EINVAL)
                FUZZ_CHECK(err != NULL);
            continue;
        }
        FUZZ_CHECK(a != NULL && name != NULL);
        walk_args(a, args, nargs, 0);
        imap_args_free(a);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    imap_reader_limits lim = {
        .max_line = 8 + 4 * (size_t)data[0],
        .max_literal = 1 + 8 * (size_t)data[1],
        .max_command = 16 + 16 * (size_t)data[2],
        .literal_minus = data[3] & 1,
    };
    bool toggle = data[3] & 2, release = data[3] & 4;
    fuzz_rng rng = fuzz_seed(data, size);
    rng.s ^= (uint64_t)(data[3] >> 3) << 40;
    const uint8_t *p = data + 4;
    size_t n = size - 4;

    imap_reader *r = imap_reader_new(&lim);
    if (!r)
        return 0;
    bool line_mode = false, after_auth = false;
    size_t off = 0;
    while (off < n) {
        size_t piece = 1 + fuzz_next(&rng) % 64;
        if (piece > n - off)
            piece = n - off;
        const uint8_t *q = p + off;
        size_t left = piece;
        unsigned spins = 0;
        while (left > 0) {
            size_t used = (size_t)-1;
            imap_read_status st = imap_reader_feed(r, q, left, &used);
            FUZZ_CHECK(used <= left);
            if (st == IMAP_READ_MORE)
                FUZZ_CHECK(used == left);
            /* every event but MORE must make progress eventually */
            if (used == 0)
                FUZZ_CHECK(++spins < 4);
            else
                spins = 0;
            q += used;
            left -= used;
            switch (st) {
            case IMAP_READ_MORE:
                break;
            case IMAP_READ_CONTINUE:
                FUZZ_CHECK(!line_mode);
                break;
            case IMAP_READ_LINE_TOO_LONG:
            case IMAP_READ_LITERAL_TOO_BIG: {
                const char *tag = NULL;
                size_t tl = 0;
                if (imap_reader_error_tag(r, &tag, &tl))
                    FUZZ_CHECK(tag != NULL && tl > 0 && tl <= lim.max_line);
                break;
            }
            case IMAP_READ_COMMAND: {
                const uint8_t *cp = NULL;
                size_t cn = 0;
                const imap_literal_pos *lits = NULL;
                size_t nlits = 0;
                imap_reader_command(r, &cp, &cn);
                imap_reader_literals(r, &lits, &nlits);
                FUZZ_CHECK(cp != NULL || cn == 0);
                FUZZ_CHECK(cn <= lim.max_command);
                if (line_mode) {
                    FUZZ_CHECK(nlits == 0);
                    FUZZ_CHECK(cn <= lim.max_line);
                }
                size_t prev = 0;
                for (size_t i = 0; i < nlits; i++) {
                    FUZZ_CHECK(lits[i].ann >= prev);
                    FUZZ_CHECK(lits[i].ann < lits[i].off);
                    FUZZ_CHECK(lits[i].off + lits[i].len <= cn);
                    FUZZ_CHECK(lits[i].len <= lim.max_literal);
                    FUZZ_CHECK(cp[lits[i].off - 1] == '\n' &&
                               cp[lits[i].off - 2] == '\r');
                    prev = lits[i].off + lits[i].len;
                }
                uint64_t sum = 0;
                for (size_t i = 0; i < cn; i++)
                    sum += cp[i];
                fuzz_sink += sum;
                if (!line_mode)
                    parse_command(cp, cn, lits, nlits);
                /* AUTHENTICATE / IDLE put the reader in line mode for the
                 * continuation lines; one line later it goes back. */
                bool next_line = false;
                if (!line_mode && cn >= 6) {
                    const void *sp = memchr(cp, ' ', cn);
                    if (sp) {
                        size_t o = (size_t)((const uint8_t *)sp - cp) + 1;
                        next_line = (cn - o >= 12 &&
                                     !strncasecmp((const char *)cp + o,
                                                  "AUTHENTICATE", 12)) ||
                                    (cn - o >= 4 &&
                                     !strncasecmp((const char *)cp + o,
                                                  "IDLE", 4));
                    }
                }
                if (line_mode && after_auth) {
                    line_mode = false;
                    after_auth = false;
                } else if (next_line) {
                    line_mode = after_auth = true;
                }
                if (toggle && (fuzz_next(&rng) & 7) == 0) {
                    line_mode = !line_mode;
                    after_auth = false;
                }
                imap_reader_line_mode(r, line_mode);
                if (release) {
                    imap_reader_release(r);
                    if (!imap_reader_busy(r))
                        FUZZ_CHECK(imap_reader_memory(r) == 0);
                }
                break;
            }
            default:
                FUZZ_CHECK(!"unknown reader status");
            }
        }
        off += piece;
        fuzz_sink += imap_reader_memory(r);
    }
    imap_reader_release(r);
    if (!imap_reader_busy(r))
        FUZZ_CHECK(imap_reader_memory(r) == 0);
    imap_reader_free(r);
    return 0;
}
