/* tests/unit/test_sasl.c — the SASL state machine: RFC 7677's exchange,
 * -PLUS with both binding types, PLAIN, LOGIN, the asynchronous path, and
 * malformed messages of every kind (plus a fuzz smoke run). */
#include <pthread.h>
#include <stdint.h>

#include "core/auth/sasl.h"
#include "core/auth/sasl_crypto.h"
#include "testutil.h"
#include "store/base64.h"

/* ---- a fake credential store ---- */

static passwd_scram g_pencil;       /* "user" / "pencil", RFC 7677's salt */
static int g_lookup_rc;             /* forced result, 0 = normal */
static int g_lookups, g_verifies;
static char g_last_user[256];

static int fake_verify(void *arg, const char *user, const char *password)
{
    (void)arg;
    g_verifies++;
    snprintf(g_last_user, sizeof g_last_user, "%s", user);
    if (g_lookup_rc)
        return g_lookup_rc;
    return (!strcmp(user, "user") || !strcmp(user, "a,b=c")) && !strcmp(password, "pencil")
               ? 0 : -EACCES;
}

static int fake_lookup(void *arg, const char *user, passwd_scram *out)
{
    (void)arg;
    g_lookups++;
    snprintf(g_last_user, sizeof g_last_user, "%s", user);
    if (g_lookup_rc)
        return g_lookup_rc;
    if (strcmp(user, "user") && strcmp(user, "a,b=c") && strcmp(user, "\xc3\xa9t\xc3\xa9"))
        return -EACCES;
    *out = g_pencil;
    return 0;
}

static const uint8_t CB_EXPORTER[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                        17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const uint8_t CB_ENDPOINT[48] = {0xee, 0xdd, 0xcc};  /* a SHA-384 size */

static int fake_binding(void *arg, const char *type, uint8_t *out, size_t *len)
{
    (void)arg;
    if (!strcmp(type, "tls-exporter") && *len >= 32) {
        memcpy(out, CB_EXPORTER, 32);
        *len = 32;
        return 0;
    }
    if (!strcmp(type, "tls-server-end-point") && *len >= 48) {
        memcpy(out, CB_ENDPOINT, 48);
        *len = 48;
        return 0;
    }
    return -EINVAL;
}

static const sasl_backend BE = {.verify = fake_verify, .scram_lookup = fake_lookup,
                                .binding = fake_binding};
static const sasl_backend BE_NOCB = {.verify = fake_verify, .scram_lookup = fake_lookup};

static void setup(void)
{
    uint8_t salt[16];
    store_b64_decode("W22ZaJ0SNY7soEsUEjb6gQ==", 24, salt);
    passwd_scram_derive("pencil", 6, salt, 16, 4096, &g_pencil);
}

static sasl_status step(sasl *s, const char *in, char *out, size_t outsz)
{
    const uint8_t *o;
    size_t ol;
    sasl_status st = sasl_step_sync(s, (const uint8_t *)in, in ? strlen(in) : 0, &o, &ol);
    if (out) {
        size_t k = ol < outsz - 1 ? ol : outsz - 1;
        memcpy(out, o, k);
        out[k] = '\0';
    }
    return st;
}

/* ---- a SCRAM client, to make correct proofs for any nonce ---- */

/* client-final for `server_first`, given the bare client-first, the
 * gs2 header and channel-binding data; password decides the proof. */
static void client_final(const char *password, const char *bare, const char *server_first,
                         const char *gs2, const uint8_t *cb, size_t cblen,
                         char *out, size_t outsz, uint8_t server_sig[32])
{
    const char *r = strstr(server_first, "r="), *s = strstr(server_first, ",s="),
               *i = strstr(server_first, ",i=");
    uint8_t salt[64], cbin[256], sp[32], ck[32], sk[32], stk[32], sig[32], proof[32];
    long sl = store_b64_decode(s + 3, (size_t)(i - s - 3), salt);
    unsigned it = (unsigned)atoi(i + 3);
    rm_pbkdf2_sha256(password, strlen(password), salt, (size_t)sl, it, sp);
    rm_hmac_sha256(sp, 32, "Client Key", 10, ck);
    rm_hmac_sha256(sp, 32, "Server Key", 10, sk);
    rm_sha256(ck, 32, stk);
    size_t gl = strlen(gs2);
    memcpy(cbin, gs2, gl);
    if (cblen)
        memcpy(cbin + gl, cb, cblen);
    char cb64[400], without[1024], am[2048], p64[64];
    store_b64_encode(cbin, gl + cblen, cb64);
    snprintf(without, sizeof without, "c=%s,r=%.*s", cb64, (int)(s - r - 2), r + 2);
    snprintf(am, sizeof am, "%s,%s,%s", bare, server_first, without);
    rm_hmac_sha256(stk, 32, am, strlen(am), sig);
    for (int k = 0; k < 32; k++)
        proof[k] = ck[k] ^ sig[k];
    store_b64_encode(proof, 32, p64);
    if (snprintf(out, outsz, "%s,p=%s", without, p64) >= (int)outsz)
        out[0] = '\0';
    if (server_sig)
        rm_hmac_sha256(sk, 32, am, strlen(am), server_sig);
}

static void t_rfc7677(void)
{
    sasl *s;
    char out[700];
    REQUIRE_OK(sasl_new(SASL_MECH_SCRAM_SHA_256, &BE, false, &s));
    REQUIRE_OK(sasl_set_server_nonce(s, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"));
    CHECK_EQ(step(s, "n,,n=user,r=rOprNGfwEbeRWgbNEkqO", out, sizeof out), SASL_CONTINUE);
    CHECK(!strcmp(out, "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                       "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"));
    CHECK_EQ(step(s, "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                     "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", out, sizeof out),
             SASL_CONTINUE);
    CHECK(!strcmp(out, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="));
    CHECK(sasl_user(s) == NULL);
    CHECK_EQ(step(s, "", out, sizeof out), SASL_DONE);
    CHECK(sasl_user(s) && !strcmp(sasl_user(s), "user"));
    CHECK_EQ(sasl_error(s), 0);
    /* After DONE, anything more is misuse. */
    CHECK_EQ(step(s, "", out, sizeof out), SASL_FAIL);
    sasl_free(s);

    /* The same transcript through the fuzz entry point. */
    const char tr[] = "\x12"
        "n,,n=user,r=rOprNGfwEbeRWgbNEkqO\xff"
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=\xff";
    CHECK_EQ(sasl_fuzz_exchange((const uint8_t *)tr, sizeof tr - 1), SASL_DONE);
}

/* A full exchange; returns the final status and the error. */
static sasl_status scram_run(sasl_mech mech, const sasl_backend *be, bool plus_offered,
                             const char *gs2, const char *user_enc, const char *password,
                             const uint8_t *cb, size_t cblen, int *err, char *efinal)
{
    sasl *s;
    char out[700], first[512], fin[1024];
    if (sasl_new(mech, be, plus_offered, &s) < 0)
        return SASL_FAIL;
    snprintf(first, sizeof first, "%sn=%s,r=fyko+d2lbbFgONRv9qkxdawL", gs2, user_enc);
    /* no initial response: an empty challenge first */
    sasl_status st = step(s, NULL, out, sizeof out);
    if (st == SASL_CONTINUE && out[0] == '\0')
        st = step(s, first, out, sizeof out);
    if (st == SASL_CONTINUE) {
        uint8_t vsig[32];
        char v[64] = "v=";
        client_final(password, first + strlen(gs2), out, gs2, cb, cblen, fin, sizeof fin, vsig);
        st = step(s, fin, out, sizeof out);
        store_b64_encode(vsig, 32, v + 2);
        if (st == SASL_CONTINUE) {
            if (strcmp(out, v))
                st = SASL_FAIL;
            else
                st = step(s, "", out, sizeof out);
        }
    }
    if (err)
        *err = sasl_error(s);
    if (efinal)
        strcpy(efinal, st == SASL_FAIL ? out : "");
    sasl_free(s);
    return st;
}

static void t_scram_variants(void)
{
    int err;
    char e[700];
    /* a random server nonce, the client from above */
    CHECK_EQ(scram_run(SASL_MECH_SCRAM_SHA_256, &BE, false, "n,,", "user", "pencil", NULL, 0,
                       &err, e), SASL_DONE);
    CHECK_EQ(scram_run(SASL_MECH_SCRAM_SHA_256, &BE, false, "n,a=user,", "user", "pencil",
                       NULL, 0, &err, e), SASL_DONE);
    CHECK_EQ(scram_run(SASL_MECH_SCRAM_SHA_256, &BE, false, "y,,", "user", "pencil", NULL, 0,
                       &err, e), SASL_DONE);
    /* saslname escapes, UTF-8 user names */
    CHECK_EQ(scram_run(SASL_MECH_SCRAM_SHA_256, &BE, false, "n,,", "a=2Cb=3Dc", "pencil",
                       NULL, 0, &err, e), SASL_DONE);
    CHECK(!strcmp(g_last_user, "a,b=c"));
    CHECK_EQ(scram_run(SASL_MECH_SCRAM_SHA_256, &BE, false, "n,,", "\xc3\xa9t\xc3\xa9",
                       "pencil", NULL, 0, &err, e), SASL_DONE);
    /* wrong password */
    CHECK_EQ(scram_run(SASL_MECH_SCRAM_SHA_256, &BE, false, "n,,", "user", "pencik", NULL, 0,
                       &err, e), SASL_FAIL);
    CHECK_EQ(err, -EACCES);
    CHECK(!strcmp(e, "e=invalid-proof"));
    /* unknown user: a normal-looking exchange that fails at the proof */
    CHECK_EQ(scram_run(SASL_MECH_SCRAM_SHA_256, &BE, false, "n,,", "nobody", "pencil", NULL, 0,
                       &err, e), SASL_FAIL);
    CHECK_EQ(err, -EACCES);
    CHECK(!strcmp(e, "e=invalid-proof"));
    /* authzid of another user */
    CHECK_EQ(scram_run(SASL_MECH_SCRAM_SHA_256, &BE, false, "n,a=admin,", "user", "pencil",
                       NULL, 0, &err, e), SASL_FAIL);
    CHECK_EQ(err, -EPERM);
    /* downgrade: the client could bind, we offered -PLUS */
    CHECK_EQ(scram_run(SASL_MECH_SCRAM_SHA_256, &BE, true, "y,,", "user", "pencil", NULL, 0,
                       &err, e), SASL_FAIL);
    CHECK(!strcmp(e, "e=server-does-support-channel-binding"));
    CHECK_EQ(scram_run(SASL_MECH_SCRAM_SHA_256, &BE, true, "n,,", "user", "pencil", NULL, 0,
                       &err, e), SASL_DONE);
    /* p= on the mechanism without binding */
    CHECK_EQ(scram_run(SASL_MECH_SCRAM_SHA_256, &BE, true, "p=tls-exporter,,", "user", "pencil",
                       CB_EXPORTER, 32, &err, e), SASL_FAIL);
    CHECK_EQ(err, -EINVAL);
    /* temporary failure of the store */
    g_lookup_rc = -EIO;
    CHECK_EQ(scram_run(SASL_MECH_SCRAM_SHA_256, &BE, false, "n,,", "user", "pencil", NULL, 0,
                       &err, e), SASL_FAIL);
    CHECK_EQ(err, -EIO);
    g_lookup_rc = 0;
    /* no lookup callback at all: nobody can log in */
    sasl_backend none = {0};
    CHECK_EQ(scram_run(SASL_MECH_SCRAM_SHA_256, &none, false, "n,,", "user", "pencil", NULL, 0,
                       &err, e), SASL_FAIL);
    CHECK_EQ(err, -EACCES);
}

static void t_scram_plus(void)
{
    int err;
    char e[700];
    CHECK_EQ(scram_run(SASL_MECH_SCRAM_SHA_256_PLUS, &BE, true, "p=tls-exporter,,", "user",
                       "pencil", CB_EXPORTER, 32, &err, e), SASL_DONE);
    CHECK_EQ(scram_run(SASL_MECH_SCRAM_SHA_256_PLUS, &BE, true, "p=tls-server-end-point,,",
                       "user", "pencil", CB_ENDPOINT, 48, &err, e), SASL_DONE);
    CHECK_EQ(scram_run(SASL_MECH_SCRAM_SHA_256_PLUS, &BE, true, "p=tls-exporter,a=user,",
                       "user", "pencil", CB_EXPORTER, 32, &err, e), SASL_DONE);
    /* wrong binding data: a man in the middle */
    uint8_t other[32];
    memcpy(other, CB_EXPORTER, 32);
    other[31] ^= 1;
    CHECK_EQ(scram_run(SASL_MECH_SCRAM_SHA_256_PLUS, &BE, true, "p=tls-exporter,,", "user",
                       "pencil", other, 32, &err, e), SASL_FAIL);
    CHECK(!strcmp(e, "e=channel-bindings-dont-match"));
    CHECK_EQ(scram_run(SASL_MECH_SCRAM_SHA_256_PLUS, &BE, true, "p=tls-exporter,,", "user",
                       "pencil", CB_ENDPOINT, 48, &err, e), SASL_FAIL);
    CHECK(!strcmp(e, "e=channel-bindings-dont-match"));
    CHECK_EQ(scram_run(SASL_MECH_SCRAM_SHA_256_PLUS, &BE, true, "p=tls-exporter,,", "user",
                       "pencil", NULL, 0, &err, e), SASL_FAIL);
    /* no binding on -PLUS */
    CHECK_EQ(scram_run(SASL_MECH_SCRAM_SHA_256_PLUS, &BE, true, "n,,", "user", "pencil",
                       NULL, 0, &err, e), SASL_FAIL);
    CHECK_EQ(scram_run(SASL_MECH_SCRAM_SHA_256_PLUS, &BE, true, "y,,", "user", "pencil",
                       NULL, 0, &err, e), SASL_FAIL);
    /* unknown type, binding not available */
    CHECK_EQ(scram_run(SASL_MECH_SCRAM_SHA_256_PLUS, &BE, true, "p=tls-unique,,", "user",
                       "pencil", CB_EXPORTER, 32, &err, e), SASL_FAIL);
    CHECK(!strcmp(e, "e=unsupported-channel-binding-type"));
    CHECK_EQ(err, -ENOTSUP);
    CHECK_EQ(scram_run(SASL_MECH_SCRAM_SHA_256_PLUS, &BE_NOCB, true, "p=tls-exporter,,", "user",
                       "pencil", CB_EXPORTER, 32, &err, e), SASL_FAIL);
    CHECK(!strcmp(e, "e=channel-binding-not-supported"));
    /* wrong password with good binding */
    CHECK_EQ(scram_run(SASL_MECH_SCRAM_SHA_256_PLUS, &BE, true, "p=tls-exporter,,", "user",
                       "pencilx", CB_EXPORTER, 32, &err, e), SASL_FAIL);
    CHECK(!strcmp(e, "e=invalid-proof"));
}

/* One client-first message that must fail on the given mechanism. */
static int first_fails(sasl_mech mech, const void *msg, size_t n)
{
    sasl *s;
    const uint8_t *o;
    size_t ol;
    if (sasl_new(mech, &BE, false, &s) < 0)
        return 0;
    int lookups = g_lookups;
    sasl_status st = sasl_step_sync(s, msg, n, &o, &ol);
    int ok = st == SASL_FAIL && sasl_error(s) < 0 && g_lookups == lookups;
    sasl_free(s);
    return ok;
}

static void t_scram_bad_first(void)
{
    static const char *const bad[] = {
        "", "n", "n,", "x,,n=user,r=abc", "N,,n=user,r=abc", "n,n=user,r=abc",
        "n,,", "n,,n=user", "n,,n=user,", "n,,n=user,r=", "n,,n=,r=abc", "n,,r=abc,n=user",
        "n,,m=ext,n=user,r=abc", "n,,n=user,r=abc,", "n,,n=user,r=abc,1=x",
        "n,,n=user,r=abc,x", "n,,n=user,r=a c", "n,,n=user,r=abc\x7f", "n,,n=us=er,r=abc",
        "n,,n=us=2c,r=abc", "n,,n=us=3,r=abc", "n,,n=us=,r=abc", "n,,n=u\x01,r=abc",
        "n,,n=\xc3,r=abc", "n,,n=\xc0\x80,r=abc", "n,,n=\xed\xa0\x80,r=abc",
        "n,,n=\xf4\x90\x80\x80,r=abc", "n,,n=\xff,r=abc", "n,a=,n=user,r=abc",
        "n,a=x=,n=user,r=abc", "n,a=user", "n,b=user,n=user,r=abc", "p=,,n=user,r=abc",
        "p=tls exporter,,n=user,r=abc", "p=tls-exporter", "p=tls-exporter,n=user,r=abc",
        "y,a=user,,n=user,r=abc", "n,,,n=user,r=abc", " n,,n=user,r=abc",
        "n,,n=user,r=abc\r\n", "n,,n=user, r=abc",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int ok = first_fails(SASL_MECH_SCRAM_SHA_256, bad[i], strlen(bad[i]));
        if (!ok)
            fprintf(stderr, "  accepted: \"%s\"\n", bad[i]);
        CHECK(ok);
    }
    /* NUL inside, very long nonce, very long message */
    CHECK(first_fails(SASL_MECH_SCRAM_SHA_256, "n,,n=us\0er,r=abc", 16));
    char big[9000];
    memset(big, 'a', sizeof big);
    memcpy(big, "n,,n=user,r=", 12);
    CHECK(first_fails(SASL_MECH_SCRAM_SHA_256, big, 12 + 300));
    CHECK(first_fails(SASL_MECH_SCRAM_SHA_256, big, sizeof big));
    memcpy(big, "n,,n=", 5);
    CHECK(first_fails(SASL_MECH_SCRAM_SHA_256, big, 5 + 2000));
    /* the well-formed ones do reach the store */
    sasl *s;
    char out[700];
    REQUIRE_OK(sasl_new(SASL_MECH_SCRAM_SHA_256, &BE, false, &s));
    CHECK_EQ(step(s, "n,,n=user,r=abc,x=ext,y=", out, sizeof out), SASL_CONTINUE);
    sasl_free(s);
}

/* Client-final messages that must fail after a good client-first. */
static void t_scram_bad_final(void)
{
    const char *first = "n,,n=user,r=cn";
    char good[1024];
    {
        sasl *s;
        char out[700];
        REQUIRE_OK(sasl_new(SASL_MECH_SCRAM_SHA_256, &BE, false, &s));
        REQUIRE_OK(sasl_set_server_nonce(s, "SN"));
        REQUIRE(step(s, first, out, sizeof out) == SASL_CONTINUE);
        client_final("pencil", first + 3, out, "n,,", NULL, 0, good, sizeof good, NULL);
        CHECK_EQ(step(s, good, out, sizeof out), SASL_CONTINUE);
        CHECK(!strncmp(out, "v=", 2));
        CHECK_EQ(step(s, "x", out, sizeof out), SASL_FAIL);    /* the ack must be empty */
        CHECK(sasl_user(s) == NULL);
        sasl_free(s);
    }
    const char *p = strstr(good, ",p=");
    char proof[64];
    snprintf(proof, sizeof proof, "%s", p + 3);
    char bad[40][256];
    int nb = 0;
    snprintf(bad[nb++], 256, "c=biws,r=cnSN");
    snprintf(bad[nb++], 256, "c=biws,r=cnSN,p=");
    snprintf(bad[nb++], 256, "c=biws,r=cnSN,p=%s,x=y", proof);
    snprintf(bad[nb++], 256, "c=biws,r=cnSn,p=%s", proof);
    snprintf(bad[nb++], 256, "c=biws,r=cn,p=%s", proof);
    snprintf(bad[nb++], 256, "c=biws,r=cnSNx,p=%s", proof);
    snprintf(bad[nb++], 256, "c=eSws,r=cnSN,p=%s", proof);     /* "y,," */
    snprintf(bad[nb++], 256, "c=biwsbiws,r=cnSN,p=%s", proof);
    snprintf(bad[nb++], 256, "c=biw,r=cnSN,p=%s", proof);
    snprintf(bad[nb++], 256, "c=,r=cnSN,p=%s", proof);
    snprintf(bad[nb++], 256, "r=cnSN,c=biws,p=%s", proof);
    snprintf(bad[nb++], 256, "c=biws,p=%s", proof);
    snprintf(bad[nb++], 256, "c=biws,r=cnSN,p=%.40s", proof);
    snprintf(bad[nb++], 256, "c=biws,r=cnSN,p=%sAAAA", proof);
    snprintf(bad[nb++], 256, "c=biws,r=cnSN,p=%s,", proof);
    snprintf(bad[nb++], 256, "c=biws,r=cnSN,,p=%s", proof);
    snprintf(bad[nb++], 256, "c=biws,r=cnSN,1=x,p=%s", proof);
    snprintf(bad[nb++], 256, "c=biws,r=cnSN,p=%s", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    snprintf(bad[nb++], 256, "c=biws,r=cnSN,p=%s", "!!!");
    snprintf(bad[nb++], 256, "C=biws,r=cnSN,p=%s", proof);
    snprintf(bad[nb++], 256, "%s", "");
    snprintf(bad[nb++], 256, "%s", "c");
    snprintf(bad[nb++], 256, "%s", "c=biws");
    snprintf(bad[nb++], 256, "%s", "c=biws,");
    snprintf(bad[nb++], 256, "%s", "c=biws,r");
    snprintf(bad[nb++], 256, "%s", "c=biws,r=cnSN,");
    snprintf(bad[nb++], 256, "%s", "c=biws,r=cnSN,p");
    for (int i = 0; i < nb; i++) {
        sasl *s;
        char out[700];
        REQUIRE_OK(sasl_new(SASL_MECH_SCRAM_SHA_256, &BE, false, &s));
        REQUIRE_OK(sasl_set_server_nonce(s, "SN"));
        REQUIRE(step(s, first, out, sizeof out) == SASL_CONTINUE);
        sasl_status st = step(s, bad[i], out, sizeof out);
        if (st != SASL_FAIL)
            fprintf(stderr, "  accepted: \"%s\"\n", bad[i]);
        CHECK_EQ(st, SASL_FAIL);
        CHECK(sasl_error(s) < 0 && sasl_user(s) == NULL);
        sasl_free(s);
    }
    /* extensions before the proof are allowed */
    {
        sasl *s;
        char out[700];
        REQUIRE_OK(sasl_new(SASL_MECH_SCRAM_SHA_256, &BE, false, &s));
        REQUIRE_OK(sasl_set_server_nonce(s, "SN"));
        REQUIRE(step(s, first, out, sizeof out) == SASL_CONTINUE);
        CHECK_EQ(step(s, "c=biws,r=cnSN,x=1,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                      out, sizeof out), SASL_FAIL);
        CHECK(!strcmp(out, "e=invalid-proof"));     /* parsed, proof checked */
        sasl_free(s);
    }
    sasl *s;
    REQUIRE_OK(sasl_new(SASL_MECH_SCRAM_SHA_256, &BE, false, &s));
    CHECK_EQ(sasl_set_server_nonce(s, "a,b"), -EINVAL);
    CHECK_EQ(sasl_set_server_nonce(s, ""), -EINVAL);
    CHECK_EQ(sasl_set_server_nonce(s, "a b"), -EINVAL);
    sasl_free(s);
}

static void t_plain(void)
{
    sasl *s;
    char out[64];
    const uint8_t *o;
    size_t ol;
    struct { const char *m; size_t n; sasl_status st; int err; } cases[] = {
        {"\0user\0pencil", 12, SASL_DONE, 0},
        {"user\0user\0pencil", 16, SASL_DONE, 0},
        {"\0user\0pencix", 12, SASL_FAIL, -EACCES},
        {"\0nobody\0pencil", 14, SASL_FAIL, -EACCES},
        {"admin\0user\0pencil", 17, SASL_FAIL, -EPERM},
        {"\0user\0", 6, SASL_FAIL, -EINVAL},
        {"\0\0pencil", 8, SASL_FAIL, -EINVAL},
        {"\0user\0pen\0cil", 13, SASL_FAIL, -EINVAL},
        {"\0userpencil", 11, SASL_FAIL, -EINVAL},
        {"userpencil", 10, SASL_FAIL, -EINVAL},
        {"", 0, SASL_FAIL, -EINVAL},
        {"\0us\x01r\0pencil", 12, SASL_FAIL, -EINVAL},
        {"\0us\xffr\0pencil", 12, SASL_FAIL, -EINVAL},
        {"a\x01\0user\0pencil", 14, SASL_FAIL, -EINVAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        REQUIRE_OK(sasl_new(SASL_MECH_PLAIN, &BE, false, &s));
        sasl_status st = sasl_step_sync(s, (const uint8_t *)cases[i].m, cases[i].n, &o, &ol);
        if (st != cases[i].st || sasl_error(s) != cases[i].err)
            fprintf(stderr, "  PLAIN case %zu: %d %d\n", i, st, sasl_error(s));
        CHECK_EQ(st, cases[i].st);
        CHECK_EQ(sasl_error(s), cases[i].err);
        if (st == SASL_DONE)
            CHECK(!strcmp(sasl_user(s), "user"));
        sasl_free(s);
    }
    /* no initial response: an empty challenge */
    REQUIRE_OK(sasl_new(SASL_MECH_PLAIN, &BE, false, &s));
    CHECK_EQ(step(s, NULL, out, sizeof out), SASL_CONTINUE);
    CHECK(out[0] == '\0');
    CHECK_EQ(sasl_step_sync(s, (const uint8_t *)"\0user\0pencil", 12, &o, &ol), SASL_DONE);
    sasl_free(s);
    /* store unavailable */
    g_lookup_rc = -EIO;
    REQUIRE_OK(sasl_new(SASL_MECH_PLAIN, &BE, false, &s));
    CHECK_EQ(sasl_step_sync(s, (const uint8_t *)"\0user\0pencil", 12, &o, &ol), SASL_FAIL);
    CHECK_EQ(sasl_error(s), -EIO);
    sasl_free(s);
    g_lookup_rc = 0;
}

static void t_login(void)
{
    sasl *s;
    char out[64];
    REQUIRE_OK(sasl_new(SASL_MECH_LOGIN, &BE, false, &s));
    CHECK_EQ(step(s, NULL, out, sizeof out), SASL_CONTINUE);
    CHECK(!strcmp(out, "Username:"));
    CHECK_EQ(step(s, "user", out, sizeof out), SASL_CONTINUE);
    CHECK(!strcmp(out, "Password:"));
    CHECK_EQ(step(s, "pencil", out, sizeof out), SASL_DONE);
    CHECK(!strcmp(sasl_user(s), "user"));
    sasl_free(s);
    /* the user name as initial response */
    REQUIRE_OK(sasl_new(SASL_MECH_LOGIN, &BE, false, &s));
    CHECK_EQ(step(s, "user", out, sizeof out), SASL_CONTINUE);
    CHECK(!strcmp(out, "Password:"));
    CHECK_EQ(step(s, "wrong", out, sizeof out), SASL_FAIL);
    CHECK_EQ(sasl_error(s), -EACCES);
    sasl_free(s);
    const char *bad_users[] = {"", "a\tb", "\xc3"};
    for (size_t i = 0; i < 3; i++) {
        REQUIRE_OK(sasl_new(SASL_MECH_LOGIN, &BE, false, &s));
        CHECK_EQ(step(s, NULL, out, sizeof out), SASL_CONTINUE);
        CHECK_EQ(step(s, bad_users[i], out, sizeof out), SASL_FAIL);
        CHECK_EQ(sasl_error(s), -EINVAL);
        sasl_free(s);
    }
    REQUIRE_OK(sasl_new(SASL_MECH_LOGIN, &BE, false, &s));
    CHECK_EQ(step(s, NULL, out, sizeof out), SASL_CONTINUE);
    CHECK_EQ(step(s, "user", out, sizeof out), SASL_CONTINUE);
    CHECK_EQ(step(s, "", out, sizeof out), SASL_FAIL);
    sasl_free(s);
    const uint8_t *o;
    size_t ol;
    REQUIRE_OK(sasl_new(SASL_MECH_LOGIN, &BE, false, &s));
    CHECK_EQ(step(s, "user", out, sizeof out), SASL_CONTINUE);
    CHECK_EQ(sasl_step_sync(s, (const uint8_t *)"pen\0cil", 7, &o, &ol), SASL_FAIL);
    sasl_free(s);
}

static void *work_thread(void *arg)
{
    sasl_work(arg);
    return NULL;
}

/* The slow part on another thread, as the session does it with the pool. */
static void t_async(void)
{
    sasl *s;
    const uint8_t *o;
    size_t ol;
    REQUIRE_OK(sasl_new(SASL_MECH_PLAIN, &BE, false, &s));
    int v = g_verifies;
    CHECK_EQ(sasl_step(s, (const uint8_t *)"\0user\0pencil", 12, &o, &ol), SASL_WORK);
    CHECK_EQ(g_verifies, v);        /* nothing slow inside step */
    /* misuse while the work is pending fails cleanly */
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, work_thread, s) == 0);
    pthread_join(t, NULL);
    CHECK_EQ(g_verifies, v + 1);
    CHECK_EQ(sasl_resume(s, &o, &ol), SASL_DONE);
    CHECK(!strcmp(sasl_user(s), "user"));
    sasl_free(s);

    REQUIRE_OK(sasl_new(SASL_MECH_SCRAM_SHA_256, &BE, false, &s));
    int l = g_lookups;
    CHECK_EQ(sasl_step(s, (const uint8_t *)"n,,n=user,r=x", 13, &o, &ol), SASL_WORK);
    CHECK_EQ(g_lookups, l);
    CHECK_EQ(sasl_step(s, (const uint8_t *)"c=biws", 6, &o, &ol), SASL_FAIL);  /* too early */
    sasl_free(s);
    /* resume without work */
    REQUIRE_OK(sasl_new(SASL_MECH_PLAIN, &BE, false, &s));
    CHECK_EQ(sasl_resume(s, &o, &ol), SASL_FAIL);
    sasl_free(s);
}

static void t_mech_names(void)
{
    sasl_mech m;
    CHECK(sasl_mech_parse("scram-sha-256-plus", &m) == 0 && m == SASL_MECH_SCRAM_SHA_256_PLUS);
    CHECK(sasl_mech_parse("SCRAM-SHA-256", &m) == 0 && m == SASL_MECH_SCRAM_SHA_256);
    CHECK(sasl_mech_parse("Plain", &m) == 0 && m == SASL_MECH_PLAIN);
    CHECK(sasl_mech_parse("LOGIN", &m) == 0 && m == SASL_MECH_LOGIN);
    CHECK_EQ(sasl_mech_parse("CRAM-MD5", &m), -ENOENT);
    CHECK(!strcmp(sasl_mech_name(SASL_MECH_SCRAM_SHA_256_PLUS), "SCRAM-SHA-256-PLUS"));
    CHECK(sasl_mech_is_plaintext(SASL_MECH_LOGIN) && !sasl_mech_is_plaintext(SASL_MECH_SCRAM_SHA_256));
}

/* Random mutations of valid transcripts through the fuzz entry point:
 * under ASan/UBSan this finds crashes and leaks; no result is asserted. */
static void t_fuzz_smoke(void)
{
    static const char *const seeds[] = {
        ("\x12n,,n=user,r=rOprNGfwEbeRWgbNEkqO\xff"
         "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
         "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=\xff"),
        ("\x0bp=tls-exporter,a=user,n=user,r=abc\xff"
         "c=cD10bHMtZXhwb3J0ZXIsLEJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJC,r=abc%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA\xff"),
        "\x00\x00user\x00pencil",
        "\x11user\xffpencil",
        "\x04y,,n=user,r=abc",
    };
    unsigned seed = 12345;
    uint8_t buf[600];
    int done = 0;
    for (int iter = 0; iter < 20000; iter++) {
        const char *sd = seeds[iter % 5];
        size_t n = iter % 5 == 2 ? 15 : strlen(sd);
        if (iter % 5 == 2)
            n = 1 + 1 + 4 + 1 + 6;
        memcpy(buf, sd, n);
        int muts = 1 + (int)(rand_r(&seed) % 4);
        for (int k = 0; k < muts && n; k++) {
            size_t pos = rand_r(&seed) % n;
            switch (rand_r(&seed) % 4) {
            case 0: buf[pos] = (uint8_t)rand_r(&seed); break;
            case 1: n = pos; break;                                     /* truncate */
            case 2: if (n < sizeof buf) { memmove(buf + pos + 1, buf + pos, n - pos);
                        buf[pos] = (uint8_t)",=\xff\0a"[rand_r(&seed) % 5]; n++; } break;
            case 3: memmove(buf + pos, buf + pos + 1, n - pos - 1); n--; break;
            }
        }
        if (iter < 5) {     /* the seeds themselves */
            memcpy(buf, sd, iter == 2 ? 13 : strlen(sd));
            n = iter == 2 ? 13 : strlen(sd);
        }
        if (sasl_fuzz_exchange(buf, n) == SASL_DONE)
            done++;
    }
    CHECK(done >= 1);
    CHECK_EQ(sasl_fuzz_exchange(NULL, 0), SASL_FAIL);
}

static int cache_knows(void *arg, const char *user, const char *password)
{
    (void)arg;
    return !strcmp(user, "user") && !strcmp(password, "pencil") ? 0 : -ENOENT;
}

/* A password the backend's cache knows is DONE at once, with no slow work
 * (PLAIN and LOGIN); anything else still goes through SASL_WORK. */
static void t_verify_cached(void)
{
    sasl_backend be = BE;
    be.verify_cached = cache_knows;
    const uint8_t *out;
    size_t outlen;
    sasl *s;
    REQUIRE_OK(sasl_new(SASL_MECH_PLAIN, &be, false, &s));
    CHECK_EQ(sasl_step(s, (const uint8_t *)"\0user\0pencil", 12, &out, &outlen), SASL_DONE);
    CHECK(sasl_user(s) && !strcmp(sasl_user(s), "user"));
    sasl_free(s);
    REQUIRE_OK(sasl_new(SASL_MECH_PLAIN, &be, false, &s));
    CHECK_EQ(sasl_step(s, (const uint8_t *)"\0user\0wrong", 11, &out, &outlen), SASL_WORK);
    sasl_work(s);
    CHECK_EQ(sasl_resume(s, &out, &outlen), SASL_FAIL);
    CHECK_EQ(sasl_error(s), -EACCES);
    CHECK(sasl_authcid(s) && !strcmp(sasl_authcid(s), "user"));   /* for the log */
    sasl_free(s);
    REQUIRE_OK(sasl_new(SASL_MECH_LOGIN, &be, false, &s));
    CHECK_EQ(sasl_step(s, NULL, 0, &out, &outlen), SASL_CONTINUE);
    CHECK_EQ(sasl_step(s, (const uint8_t *)"user", 4, &out, &outlen), SASL_CONTINUE);
    CHECK_EQ(sasl_step(s, (const uint8_t *)"pencil", 6, &out, &outlen), SASL_DONE);
    sasl_free(s);
    /* PLAIN with an authzid of another user: refused, both names kept */
    REQUIRE_OK(sasl_new(SASL_MECH_PLAIN, &be, false, &s));
    CHECK_EQ(sasl_step(s, (const uint8_t *)"boss\0user\0pencil", 16, &out, &outlen),
             SASL_FAIL);
    CHECK_EQ(sasl_error(s), -EPERM);
    CHECK(sasl_authzid(s) && !strcmp(sasl_authzid(s), "boss"));
    CHECK(sasl_authcid(s) && !strcmp(sasl_authcid(s), "user"));
    sasl_free(s);
}

int main(void)
{
    setup();
    RUN(t_mech_names);
    RUN(t_rfc7677);
    RUN(t_scram_variants);
    RUN(t_scram_plus);
    RUN(t_scram_bad_first);
    RUN(t_scram_bad_final);
    RUN(t_plain);
    RUN(t_login);
    RUN(t_async);
    RUN(t_verify_cached);
    RUN(t_fuzz_smoke);
    return test_summary();
}
