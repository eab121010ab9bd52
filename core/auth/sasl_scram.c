/* core/auth/sasl_scram.c — SCRAM-SHA-256 and SCRAM-SHA-256-PLUS, server side
 * (RFC 5802, RFC 7677).
 *
 * Unknown users (and users whose scheme cannot do SCRAM) get fake
 * credentials with the same kind of salt as real ones and fail at the
 * proof with e=invalid-proof, so the exchange does not reveal who exists. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/auth/sasl_crypto.h"
#include "core/auth/sasl_internal.h"
#include "store/base64.h"

void sasl_scram_free_(sasl *s)
{
    free(s->gs2_header);
    free(s->client_first_bare);
    free(s->nonce);
    free(s->server_first);
    memset(&s->creds, 0, sizeof s->creds);
}

static bool nonce_char(char c)
{
    return c >= 0x21 && c <= 0x7e && c != ',';
}

int sasl_set_server_nonce(sasl *s, const char *nonce)
{
    size_t n = strlen(nonce);
    if (s->state != SS_START || n == 0 || n > SASL_MAX_NONCE)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!nonce_char(nonce[i]))
            return -EINVAL;
    memcpy(s->snonce, nonce, n + 1);
    return 0;
}

/* saslname: "=2C" is ',', "=3D" is '='; other '=' and ',' are invalid.
 * Decodes p[0..n) into a malloc'd string; NULL if invalid (or no memory:
 * *oom set). */
static char *saslname(const char *p, size_t n, bool *oom)
{
    char *o = malloc(n + 1);
    size_t k = 0;
    if (!o) {
        *oom = true;
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i] == ',') {
            free(o);
            return NULL;
        }
        if (p[i] == '=') {
            if (n - i >= 3 && p[i + 1] == '2' && p[i + 2] == 'C')
                o[k++] = ',';
            else if (n - i >= 3 && p[i + 1] == '3' && p[i + 2] == 'D')
                o[k++] = '=';
            else {
                free(o);
                return NULL;
            }
            i += 2;
        } else {
            o[k++] = p[i];
        }
    }
    o[k] = '\0';
    if (!sasl_valid_name_(o, k)) {
        free(o);
        return NULL;
    }
    return o;
}

/* attr-val = ALPHA "=" value, value without ','. */
static bool valid_ext(const char *p, size_t n)
{
    if (n < 2 || p[1] != '=' || !((p[0] >= 'a' && p[0] <= 'z') || (p[0] >= 'A' && p[0] <= 'Z')))
        return false;
    for (size_t i = 2; i < n; i++)
        if (p[i] == ',' || p[i] == '\0')
            return false;
    return true;
}

/* A SCRAM parse step's verdict: 0, or -errno with the RFC 5802 server-error
 * value to send (why).  client_first turns it into one sasl_fail_. */
typedef struct {
    int err;
    const char *why;
} scram_err;

static int bad(scram_err *e, int err, const char *why)
{
    e->err = err;
    e->why = why;
    return err;
}

/* A saslname that did not decode: out of memory, or not a valid name. */
static int bad_name(scram_err *e, bool oom)
{
    return oom ? bad(e, -ENOMEM, "no-resources")
               : bad(e, -EINVAL, "invalid-username-encoding");
}

/* The GS2 header of m[0..n): gs2-cbind-flag ("n", "y" or "p=" cb-name, the
 * name into cbname), [authzid] and ",".  *authzid is malloc'd (NULL when
 * absent; the caller's), *bare points past the header in m. */
static int parse_gs2(const char *m, size_t n, char *flag, char cbname[static 32],
                     char **authzid, const char **bare, scram_err *e)
{
    const char *p = m, *end = m + n;
    *flag = *p;
    *authzid = NULL;
    /* gs2-cbind-flag */
    if ((*flag == 'n' || *flag == 'y') && n >= 2 && p[1] == ',') {
        p += 2;
    } else if (*flag == 'p' && n >= 2 && p[1] == '=') {
        const char *c = memchr(p + 2, ',', (size_t)(end - p - 2));
        size_t l = c ? (size_t)(c - p - 2) : 0;
        if (!c || l == 0 || l >= 32)
            return bad(e, -EINVAL, "invalid-encoding");
        for (size_t i = 0; i < l; i++) {
            char ch = p[2 + i];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '-'))
                return bad(e, -EINVAL, "invalid-encoding");
        }
        memcpy(cbname, p + 2, l);
        cbname[l] = '\0';
        p = c + 1;
    } else {
        return bad(e, -EINVAL, "invalid-encoding");
    }
    /* [authzid] "," */
    if (end - p >= 2 && p[0] == 'a' && p[1] == '=') {
        const char *c = memchr(p, ',', (size_t)(end - p));
        bool oom = false;
        if (!c)
            return bad(e, -EINVAL, "invalid-encoding");
        if (!(*authzid = saslname(p + 2, (size_t)(c - p - 2), &oom)))
            return bad_name(e, oom);
        p = c;
    }
    if (p == end || *p != ',') {
        free(*authzid);
        *authzid = NULL;
        return bad(e, -EINVAL, "invalid-encoding");
    }
    *bare = p + 1;
    return 0;
}

/* Channel binding policy: -PLUS needs "p=" with a type the transport can
 * give (its data into s->cbdata); the plain mechanism refuses "p=", and
 * "y" while -PLUS was offered means a downgrade. */
static int check_binding(sasl *s, char flag, const char *cbname, scram_err *e)
{
    if (s->mech == SASL_MECH_SCRAM_SHA_256_PLUS) {
        if (flag != 'p')
            return bad(e, -EINVAL, "invalid-encoding");
        if (strcmp(cbname, "tls-exporter") && strcmp(cbname, "tls-server-end-point"))
            return bad(e, -ENOTSUP, "unsupported-channel-binding-type");
        size_t len = sizeof s->cbdata;
        if (!s->be.binding || s->be.binding(s->be.arg, cbname, s->cbdata, &len) < 0 ||
            len == 0 || len > sizeof s->cbdata)
            return bad(e, -ENOTSUP, "channel-binding-not-supported");
        s->cblen = len;
    } else if (flag == 'p') {
        /* Channel binding asked for under the mechanism without it. */
        return bad(e, -EINVAL, "invalid-encoding");
    } else if (flag == 'y' && s->plus_offered) {
        /* The client could bind and believes we cannot, but we offered
         * -PLUS: someone removed it from our capabilities. */
        return bad(e, -EACCES, "server-does-support-channel-binding");
    }
    return 0;
}

/* client-first-message-bare's start, [reserved-mext ","] username ",":
 * the name into *user (malloc'd, the caller's), *rest past its comma. */
static int parse_username(const char *p, const char *end, char **user,
                          const char **rest, scram_err *e)
{
    if (end - p >= 2 && p[0] == 'm' && p[1] == '=')
        return bad(e, -EINVAL, "extensions-not-supported");
    const char *c = end - p >= 2 && p[0] == 'n' && p[1] == '=' ?
                    memchr(p, ',', (size_t)(end - p)) : NULL;
    if (!c)
        return bad(e, -EINVAL, "invalid-encoding");
    bool oom = false;
    if (!(*user = saslname(p + 2, (size_t)(c - p - 2), &oom)))
        return bad_name(e, oom);
    *rest = c + 1;
    return 0;
}

/* The rest of it, nonce ["," extensions]: the client's nonce is
 * nonce[0..*nl); extensions are ignored but must be well-formed. */
static int parse_nonce(const char *p, const char *end, const char **nonce,
                       size_t *nl, scram_err *e)
{
    if (end - p < 3 || p[0] != 'r' || p[1] != '=')
        return bad(e, -EINVAL, "invalid-encoding");
    *nonce = p + 2;
    for (p = *nonce; p < end && *p != ','; p++)
        if (!nonce_char(*p))
            return bad(e, -EINVAL, "invalid-encoding");
    *nl = (size_t)(p - *nonce);
    if (*nl == 0 || *nl > SASL_MAX_NONCE)
        return bad(e, -EINVAL, "invalid-encoding");
    while (p < end) {
        const char *x = memchr(p + 1, ',', (size_t)(end - p - 1));
        if (!x)
            x = end;
        if (!valid_ext(p + 1, (size_t)(x - p - 1)))
            return bad(e, -EINVAL, "invalid-encoding");
        p = x;
    }
    return 0;
}

/* Keep what the proof will need: the GS2 header m[0..gl), the bare
 * message bare[0..bl) and the combined nonce (the client's, then ours:
 * 18 random bytes in 24 base64 characters, unless a test set one). */
static int keep_first(sasl *s, const char *m, size_t gl, const char *bare,
                      size_t bl, const char *nonce, size_t nl, scram_err *e)
{
    if (!s->snonce[0]) {
        uint8_t r[18];
        if (rm_random(r, sizeof r) < 0)
            return bad(e, -EIO, "other-error");
        store_b64_encode(r, sizeof r, s->snonce);
    }
    size_t sl = strlen(s->snonce);
    s->gs2_header = malloc(gl + 1);
    s->client_first_bare = malloc(bl + 1);
    s->nonce = malloc(nl + sl + 1);
    if (!s->gs2_header || !s->client_first_bare || !s->nonce)
        return bad(e, -ENOMEM, "no-resources");
    memcpy(s->gs2_header, m, gl);
    s->gs2_header[gl] = '\0';
    memcpy(s->client_first_bare, bare, bl);
    s->client_first_bare[bl] = '\0';
    memcpy(s->nonce, nonce, nl);
    memcpy(s->nonce + nl, s->snonce, sl + 1);
    return 0;
}

/* client-first-message (RFC 5802 7): gs2-header client-first-message-bare.
 * The checks keep their order (it decides which error a client sees for a
 * message with several faults); the names are s's from the moment they
 * are parsed. */
static sasl_status client_first(sasl *s, const char *m, size_t n)
{
    const char *end = m + n, *bare, *p, *nonce;
    char flag, cbname[32] = "";
    char *authzid, *user;
    size_t nl;
    scram_err e = {0};
    if (parse_gs2(m, n, &flag, cbname, &authzid, &bare, &e))
        return sasl_fail_(s, e.err, e.why);
    if (check_binding(s, flag, cbname, &e) || parse_username(bare, end, &user, &p, &e)) {
        free(authzid);
        return sasl_fail_(s, e.err, e.why);
    }
    bool authz_ok = !authzid || !strcmp(authzid, user);
    s->authzid = authzid;
    s->user = user;
    if (parse_nonce(p, end, &nonce, &nl, &e))
        return sasl_fail_(s, e.err, e.why);
    if (!authz_ok)
        return sasl_fail_(s, -EPERM, "other-error");
    if (keep_first(s, m, (size_t)(bare - m), bare, (size_t)(end - bare), nonce, nl, &e))
        return sasl_fail_(s, e.err, e.why);
    s->state = s->work = SS_WORK_LOOKUP;
    return SASL_WORK;
}

sasl_status sasl_scram_resume_(sasl *s)
{
    if (s->work_rc < 0 && s->work_rc != -EACCES)
        return sasl_fail_(s, s->work_rc, "other-error");
    if (s->work_rc != 0 || s->creds.iterations < 1 ||
        s->creds.iterations > PASSWD_SCRAM_MAX_ITERATIONS ||
        s->creds.salt_len > PASSWD_SCRAM_SALT_MAX || s->creds.salt_len == 0) {
        s->fake = true;
        passwd_scram_salt(s->user, s->creds.salt);
        s->creds.salt_len = 16;
        s->creds.iterations = PASSWD_SCRAM_ITERATIONS;
        if (rm_random(s->creds.stored_key, 32) < 0 || rm_random(s->creds.server_key, 32) < 0)
            return sasl_fail_(s, -EIO, "other-error");
    }
    char salt64[store_b64_enc_len(PASSWD_SCRAM_SALT_MAX) + 1];
    store_b64_encode(s->creds.salt, s->creds.salt_len, salt64);
    size_t n = strlen(s->nonce) + strlen(salt64) + 32;
    if (!(s->server_first = malloc(n)))
        return sasl_fail_(s, -ENOMEM, "no-resources");
    snprintf(s->server_first, n, "r=%s,s=%s,i=%u", s->nonce, salt64, s->creds.iterations);
    sasl_set_out_(s, s->server_first);
    s->state = SS_SCRAM_FINAL;
    return SASL_CONTINUE;
}

/* client-final-message = "c=" b64(gs2-header [cbind-data]) "," "r=" nonce
 * ["," extensions] "," "p=" b64(proof) */
static sasl_status client_final(sasl *s, const char *m, size_t n)
{
    const char *end = m + n;
    if (n < 2 || m[0] != 'c' || m[1] != '=')
        return sasl_fail_(s, -EINVAL, "invalid-encoding");
    const char *c = memchr(m, ',', n);
    if (!c)
        return sasl_fail_(s, -EINVAL, "invalid-encoding");
    size_t bl = (size_t)(c - m - 2);
    uint8_t *cb = malloc(bl / 4 * 3 + 1);
    if (!cb)
        return sasl_fail_(s, -ENOMEM, "no-resources");
    long cbl = store_b64_decode(m + 2, bl, cb);
    if (cbl < 0) {
        free(cb);
        return sasl_fail_(s, -EINVAL, "invalid-encoding");
    }
    size_t gl = strlen(s->gs2_header);
    size_t want = gl + (s->gs2_header[0] == 'p' ? s->cblen : 0);
    bool cb_ok = (size_t)cbl == want && !memcmp(cb, s->gs2_header, gl) &&
                 rm_memeq(cb + gl, s->cbdata, want - gl);
    free(cb);
    const char *p = c + 1;
    if (end - p < 2 || p[0] != 'r' || p[1] != '=')
        return sasl_fail_(s, -EINVAL, "invalid-encoding");
    const char *r = p + 2;
    c = memchr(r, ',', (size_t)(end - r));
    if (!c)
        return sasl_fail_(s, -EINVAL, "invalid-encoding");
    size_t rl = (size_t)(c - r);
    bool nonce_ok = rl == strlen(s->nonce) && !memcmp(r, s->nonce, rl);
    /* extensions, then the proof, which must come last */
    p = c;
    const char *proof = NULL;
    while (p < end) {
        const char *e = memchr(p + 1, ',', (size_t)(end - p - 1));
        if (!e)
            e = end;
        if (!valid_ext(p + 1, (size_t)(e - p - 1)))
            return sasl_fail_(s, -EINVAL, "invalid-encoding");
        if (p[1] == 'p') {
            if (e != end)
                return sasl_fail_(s, -EINVAL, "invalid-encoding");
            proof = p + 3;
            break;
        }
        p = e;
    }
    if (!proof)
        return sasl_fail_(s, -EINVAL, "invalid-encoding");
    uint8_t pr[48];
    size_t pl = (size_t)(end - proof);
    long prl = pl <= 64 ? store_b64_decode(proof, pl, pr) : -EINVAL;
    if (prl != 32)
        return sasl_fail_(s, -EINVAL, "invalid-encoding");
    if (!cb_ok)
        return sasl_fail_(s, -EACCES, "channel-bindings-dont-match");
    if (!nonce_ok)
        return sasl_fail_(s, -EACCES, "other-error");
    /* AuthMessage = client-first-bare "," server-first ","
     * client-final-without-proof */
    size_t wl = (size_t)(p - m);
    size_t al = strlen(s->client_first_bare) + strlen(s->server_first) + wl + 2;
    char *am = malloc(al + 1);
    if (!am)
        return sasl_fail_(s, -ENOMEM, "no-resources");
    snprintf(am, al + 1, "%s,%s,%.*s", s->client_first_bare, s->server_first, (int)wl, m);
    uint8_t sig[32], key[32], stored[32];
    rm_hmac_sha256(s->creds.stored_key, 32, am, al, sig);
    for (int i = 0; i < 32; i++)
        key[i] = pr[i] ^ sig[i];
    rm_sha256(key, 32, stored);
    bool ok = rm_memeq(stored, s->creds.stored_key, 32) & !s->fake;
    if (!ok) {
        free(am);
        return sasl_fail_(s, -EACCES, "invalid-proof");
    }
    rm_hmac_sha256(s->creds.server_key, 32, am, al, sig);
    free(am);
    char buf[2 + store_b64_enc_len(32) + 1] = "v=";
    store_b64_encode(sig, 32, buf + 2);
    sasl_set_out_(s, buf);
    s->state = SS_SCRAM_ACK;
    return SASL_CONTINUE;
}

sasl_status sasl_scram_step_(sasl *s, const uint8_t *in, size_t n)
{
    if (s->state == SS_START && !in) {
        /* No initial response: an empty challenge, client-first next. */
        s->state = SS_PLAIN_WAIT;
        return SASL_CONTINUE;
    }
    if (s->state == SS_SCRAM_ACK) {
        if (n != 0)
            return sasl_fail_(s, -EINVAL, NULL);
        s->state = SS_DONE;
        return SASL_DONE;
    }
    /* Everything SCRAM sends is printable ASCII; a NUL can only hurt. */
    if (n == 0 || memchr(in, 0, n))
        return sasl_fail_(s, -EINVAL, "invalid-encoding");
    if (s->state == SS_START || s->state == SS_PLAIN_WAIT)
        return client_first(s, (const char *)in, n);
    if (s->state == SS_SCRAM_FINAL)
        return client_final(s, (const char *)in, n);
    return sasl_fail_(s, -EINVAL, NULL);
}
