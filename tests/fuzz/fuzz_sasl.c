/* tests/fuzz/fuzz_sasl.c — the server SASL state machines (core/auth/sasl.h):
 * PLAIN, LOGIN, SCRAM-SHA-256 and SCRAM-SHA-256-PLUS.
 *
 * Input, as sasl_fuzz_exchange (core/auth/sasl_fuzz.c) reads it: data[0] flags
 * (bits 0-1 mechanism, bit 2 PLUS offered, bit 3 channel binding
 * available, bit 4 no initial response), then the client's messages
 * separated by 0xFF.  The fake store knows user "user" / "pencil" (RFC
 * 7677's salt, 4096 rounds) and a fixed server nonce, so RFC 7677's
 * transcript is a seed.  Also: mechanism names from the input. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "core/auth/sasl.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int st = sasl_fuzz_exchange(data, size);
    FUZZ_CHECK(st == SASL_CONTINUE || st == SASL_WORK || st == SASL_DONE ||
               st == SASL_FAIL);

    /* the input's first message as a mechanism name */
    char name[40];
    size_t k = 0;
    for (size_t i = 1; i < size && k + 1 < sizeof name && data[i] != 0xff; i++)
        name[k++] = (char)data[i];
    name[k] = '\0';
    sasl_mech m;
    int rc = sasl_mech_parse(name, &m);
    FUZZ_CHECK(rc == 0 || rc == -ENOENT);
    if (rc == 0) {
        const char *n = sasl_mech_name(m);
        FUZZ_CHECK(n != NULL && strcasecmp(n, name) == 0);
        sasl_mech m2;
        FUZZ_CHECK(sasl_mech_parse(n, &m2) == 0 && m2 == m);
        fuzz_sink += sasl_mech_is_plaintext(m);
    }
    return 0;
}
