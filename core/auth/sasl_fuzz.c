/* core/auth/sasl_fuzz.c — a whole SASL exchange from one byte string, against
 * a fixed fake store (see sasl_fuzz_exchange in core/auth/sasl.h). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/auth/sasl_crypto.h"
#include "core/auth/sasl_internal.h"
#include "store/base64.h"

static pthread_once_t fake_once = PTHREAD_ONCE_INIT;
static passwd_scram fake_creds;

static void fake_init(void)
{
    uint8_t salt[16];
    /* RFC 7677's salt: W22ZaJ0SNY7soEsUEjb6gQ== */
    store_b64_decode("W22ZaJ0SNY7soEsUEjb6gQ==", 24, salt);
    passwd_scram_derive("pencil", 6, salt, 16, 4096, &fake_creds);
}

static int fake_verify(void *arg, const char *user, const char *password)
{
    (void)arg;
    return !strcmp(user, "user") && !strcmp(password, "pencil") ? 0 : -EACCES;
}

static int fake_lookup(void *arg, const char *user, passwd_scram *out)
{
    (void)arg;
    if (strcmp(user, "user"))
        return -EACCES;
    pthread_once(&fake_once, fake_init);
    *out = fake_creds;
    return 0;
}

static int fake_binding(void *arg, const char *type, uint8_t *out, size_t *len)
{
    (void)arg; (void)type;
    if (*len < 32)
        return -ENOSPC;
    memset(out, 0x42, 32);
    *len = 32;
    return 0;
}

int sasl_fuzz_exchange(const uint8_t *data, size_t n)
{
    if (n == 0)
        return SASL_FAIL;
    uint8_t flags = data[0];
    sasl_backend be = {.verify = fake_verify, .scram_lookup = fake_lookup,
                       .binding = flags & 8 ? fake_binding : NULL};
    sasl *s;
    if (sasl_new((sasl_mech)(flags & 3), &be, flags & 4, &s) < 0)
        return SASL_FAIL;
    sasl_set_server_nonce(s, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
    const uint8_t *out;
    size_t outlen;
    sasl_status st = SASL_CONTINUE;
    size_t pos = 1;
    bool more = true;
    if (flags & 16)
        st = sasl_step_sync(s, NULL, 0, &out, &outlen);
    while (st == SASL_CONTINUE && more) {
        const uint8_t *p = data + pos;
        const uint8_t *sep = memchr(p, 0xff, n - pos);
        size_t len = sep ? (size_t)(sep - p) : n - pos;
        more = sep != NULL;
        /* A private copy, so reads past the message are caught by ASan. */
        uint8_t *msg = malloc(len ? len : 1);
        if (!msg)
            break;
        memcpy(msg, p, len);
        st = sasl_step_sync(s, msg, len, &out, &outlen);
        free(msg);
        pos += len + 1;
    }
    (void)sasl_user(s);
    (void)sasl_error(s);
    sasl_free(s);
    return st;
}
