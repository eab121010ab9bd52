/* tests/fuzz/fuzz_lmtp.c — the LMTP wire protocol (core/lmtp): command
 * lines and the DATA decoder.
 *
 * The input is a command line (parsed as is; what it yields must be
 * NUL-terminated strings inside the line within RFC 5321's lengths), and
 * also a DATA stream decoded twice — whole, and cut where the input's
 * bytes say — which must give the same bytes, the same end and never more
 * output than the contract allows. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/lmtp/lmtp_proto.h"
#include "fuzz_common.h"

static bool inside(const char *p, const char *buf, size_t n)
{
    return p >= buf && p <= buf + n && memchr(p, '\0', (size_t)(buf + n + 1 - p));
}

static void command(const uint8_t *data, size_t size)
{
    if (size > LMTP_LINE_MAX + 8)
        size = LMTP_LINE_MAX + 8;
    char *line = malloc(size + 1);
    if (!line)
        return;
    memcpy(line, data, size);
    lmtp_cmd cmd;
    lmtp_error err;
    int rc = lmtp_parse_command(line, size, &cmd, &err);
    if (rc < 0) {
        FUZZ_CHECK(err.code >= 500 && err.code <= 555 && err.status && err.text);
    } else {
        FUZZ_CHECK(rc == 0 && cmd.verb != LMTP_UNKNOWN);
        FUZZ_CHECK(cmd.nparams <= LMTP_PARAMS_MAX);
        if (cmd.arg)
            FUZZ_CHECK(inside(cmd.arg, line, size));
        if (cmd.verb == LMTP_MAIL || cmd.verb == LMTP_RCPT) {
            FUZZ_CHECK(cmd.local != NULL);
            FUZZ_CHECK(cmd.null_path || inside(cmd.local, line, size));
            FUZZ_CHECK(strlen(cmd.local) <= LMTP_LOCAL_MAX);
            if (cmd.domain) {
                FUZZ_CHECK(inside(cmd.domain, line, size));
                FUZZ_CHECK(strlen(cmd.domain) <= LMTP_DOMAIN_MAX && *cmd.domain);
            }
        }
        for (size_t i = 0; i < cmd.nparams; i++) {
            FUZZ_CHECK(inside(cmd.params[i].key, line, size) && *cmd.params[i].key);
            if (cmd.params[i].value)
                FUZZ_CHECK(inside(cmd.params[i].value, line, size) && *cmd.params[i].value);
        }
    }
    free(line);
}

static void data_stream(const uint8_t *data, size_t size)
{
    char *whole = malloc(size + 2), *cut = malloc(size + 2);
    if (!whole || !cut)
        goto out;
    lmtp_data d;
    uint64_t max = size ? data[0] : 0;
    lmtp_data_init(&d, max);
    size_t nwhole, uwhole;
    int ew = lmtp_data_feed(&d, (const char *)data, size, whole, &nwhole, &uwhole);
    FUZZ_CHECK(nwhole <= size && nwhole <= max && uwhole <= size);
    FUZZ_CHECK(ew == 1 || uwhole == size);

    lmtp_data e;
    lmtp_data_init(&e, max);
    fuzz_rng r = { size * 0x9E3779B97F4A7C15ull + 1 };
    size_t at = 0, ncut = 0, ucut = size;
    int ec = 0;
    while (at < size) {
        size_t step = 1 + fuzz_next(&r) % 16;
        if (step > size - at)
            step = size - at;
        size_t got, used;
        ec = lmtp_data_feed(&e, (const char *)data + at, step, cut + ncut, &got, &used);
        FUZZ_CHECK(got <= step + 1 && used <= step);
        ncut += got;
        if (ec == 1) {
            ucut = at + used;
            break;
        }
        FUZZ_CHECK(used == step);
        at += step;
    }
    FUZZ_CHECK(ec == ew && ucut == uwhole && ncut == nwhole);
    FUZZ_CHECK(!memcmp(whole, cut, nwhole));
    FUZZ_CHECK(d.size == e.size);
out:
    free(whole);
    free(cut);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    command(data, size);
    data_stream(data, size);
    return 0;
}
