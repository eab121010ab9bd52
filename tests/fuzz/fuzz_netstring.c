/* tests/fuzz/fuzz_netstring.c — the netstring decoder of the socketmap
 * protocol (core/lmtp/netstring.c).
 *
 * The input is decoded twice — whole, and cut where its own bytes say —
 * and both must give the same strings, the same error at the same place,
 * strings no longer than the limit, and consume every byte up to the
 * error; every string it yields must encode back to exactly the bytes it
 * came from. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/lmtp/netstring.h"
#include "fuzz_common.h"

#define MAXLEN 512
#define MAXOUT 64

typedef struct run {
    size_t n;                   /* strings decoded */
    size_t len[MAXOUT];
    size_t end[MAXOUT];         /* input offset just past each */
    char str[MAXOUT][MAXLEN + 1];
    int err;                    /* 0, or the error that stopped it */
    size_t err_at;              /* bytes consumed before the error */
} run;

static void decode(const uint8_t *p, size_t size, const uint8_t *cuts, size_t ncuts, run *r)
{
    netstring_dec d;
    static char buf[MAXLEN + 1];
    netstring_dec_init(&d, MAXLEN);
    memset(r, 0, sizeof *r);
    size_t at = 0, c = 0;
    while (at < size && r->n < MAXOUT) {
        size_t chunk = size - at;
        if (ncuts) {
            size_t k = 1 + cuts[c++ % ncuts];
            if (k < chunk)
                chunk = k;
        }
        size_t off = 0;
        while (off < chunk && r->n < MAXOUT) {
            size_t used = 0, len = 0;
            int rc = netstring_feed(&d, p + at + off, chunk - off, buf, &used, &len);
            if (rc < 0) {
                FUZZ_CHECK(rc == -EPROTO || rc == -EMSGSIZE);
                r->err = rc;
                /* the failed feed consumed nothing it reports; the error is
                 * at or after the start of this piece */
                r->err_at = at + off;
                return;
            }
            FUZZ_CHECK(used <= chunk - off);
            off += used;
            if (rc == 1) {
                FUZZ_CHECK(len <= MAXLEN && buf[len] == '\0');
                r->len[r->n] = len;
                r->end[r->n] = at + off;
                memcpy(r->str[r->n], buf, len);
                r->n++;
            } else {
                FUZZ_CHECK(rc == 0 && off == chunk);
            }
        }
        at += chunk;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the first bytes choose the cuts; the rest is the stream */
    size_t ncuts = size ? data[0] % 16 : 0;
    if (size < 1 + ncuts)
        return 0;
    const uint8_t *cuts = data + 1, *p = data + 1 + ncuts;
    size = size - 1 - ncuts;
    static run whole, cut;
    decode(p, size, NULL, 0, &whole);
    decode(p, size, cuts, ncuts, &cut);
    FUZZ_CHECK(whole.n == cut.n);
    FUZZ_CHECK(whole.err == cut.err);
    for (size_t i = 0; i < whole.n; i++) {
        FUZZ_CHECK(whole.len[i] == cut.len[i] && whole.end[i] == cut.end[i]);
        FUZZ_CHECK(!memcmp(whole.str[i], cut.str[i], whole.len[i]));
        /* the string encodes back to the bytes it was read from */
        static char enc[MAXLEN + NETSTRING_LEN_DIGITS + 2];
        int e = netstring_encode(whole.str[i], whole.len[i], enc, sizeof enc);
        size_t start = i ? whole.end[i - 1] : 0;
        FUZZ_CHECK(e > 0 && (size_t)e == whole.end[i] - start);
        FUZZ_CHECK(!memcmp(enc, p + start, (size_t)e));
    }
    return 0;
}
