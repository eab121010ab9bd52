/* tests/fuzz/fuzz_mig_imap.c — ringmail-migrate's IMAP client reading
 * what a server sends (tools/migrate/mig_imap.c): responses with literals,
 * then every token in them.
 *
 * The input is the server's byte stream, written to a socketpair the
 * client reads.  Each response read must hold its literals inline and end
 * without CRLF; every token the tokenizer gives must lie inside the
 * response, and walking a response must end (END or ERR) after at most
 * one token per byte; status and code readers must not read past it. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "tools/migrate/mig_imap.h"

/* The socket's buffer must take the whole input before the client reads. */
#define MAX_INPUT 65536

static void walk(const mig_resp *r)
{
    mig_cur cur = { r->data, r->data + r->len };
    size_t steps = 0;
    for (;;) {
        const char *s = NULL;
        size_t n = 0;
        bool q = false;
        mig_tok t = mig_next(&cur, &s, &n, &q);
        FUZZ_CHECK(cur.p >= r->data && cur.p <= r->data + r->len);
        if (t == MIG_T_END || t == MIG_T_ERR)
            break;
        if (t == MIG_T_ATOM || t == MIG_T_STRING || t == MIG_T_NIL) {
            FUZZ_CHECK(s >= r->data && s + n <= r->data + r->len);
            if (t == MIG_T_STRING) {
                char *c = mig_strdup_tok(s, n, q);
                FUZZ_CHECK(c && strlen(c) <= n);
                free(c);
            }
        }
        FUZZ_CHECK(++steps <= r->len + 1);
    }
    cur = (mig_cur){ r->data, r->data + r->len };
    while (cur.p < cur.end && mig_skip(&cur) == 0)
        FUZZ_CHECK(cur.p <= cur.end);
    char err[64];
    uint64_t v;
    if (r->tagged)
        (void)mig_tagged_status(r, err, sizeof err);
    (void)mig_resp_code(r, "UIDVALIDITY", &v);
    (void)mig_resp_code(r, "NONEXISTENT", NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT)
        size = MAX_INPUT;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        return 0;
    int buf = 4 * MAX_INPUT;
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(sv[1], data + off, size - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    close(sv[1]);
    mig_conn *c;
    if (mig_conn_fd(sv[0], &c) < 0) {
        close(sv[0]);
        return 0;
    }
    for (int i = 0; i < 10000; i++) {
        mig_resp r;
        int rc = mig_read(c, &r);
        if (rc < 0) {
            FUZZ_CHECK(rc == -ECONNRESET || rc == -EPROTO || rc == -E2BIG || rc == -EFBIG);
            break;
        }
        FUZZ_CHECK(r.len <= size && r.data[r.len] == '\0');
        walk(&r);
    }
    mig_close(c);       /* closes sv[0] */
    return 0;
}
