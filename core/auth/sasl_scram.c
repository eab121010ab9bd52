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

static sasl_status client_first(sasl *s, const char *m, size_t n)
{
    bool oom = false;
    const char *p = m, *end = m + n;
    char flag = *p;
    char cbname[32] = "";
    /* gs2-cbind-flag */
    if ((flag == 'n' || flag == 'y') && n >= 2 && p[1] == ',') {
        p += 2;
    } else if (flag == 'p' && n >= 2 && p[1] == '=') {
        const char *c = memchr(p + 2, ',', (size_t)(end - p - 2));
        size_t l = c ? (size_t)(c - p - 2) : 0;
        if (!c || l == 0 || l >= sizeof cbname)
            return sasl_fail_(s, -EINVAL, "invalid-encoding");
        for (size_t i = 0; i < l; i++) {
            char ch = p[2 + i];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '-'))
                return sasl_fail_(s, -EINVAL, "invalid-encoding");
        }
        memcpy(cbname, p + 2, l);
        cbname[l] = '\0';
        p = c + 1;
    } else {
        return sasl_fail_(s, -EINVAL, "invalid-encoding");
    }
    /* [authzid] "," */
    char *authzid = NULL;
    if (end - p >= 2 && p[0] == 'a' && p[1] == '=') {
        const char *c = memchr(p, ',', (size_t)(end - p));
        if (!c)
            return sasl_fail_(s, -EINVAL, "invalid-encoding");
        if (!(authzid = saslname(p + 2, (size_t)(c - p - 2), &oom)))
            return sasl_fail_(s, oom ? -ENOMEM : -EINVAL,
                              oom ? "no-resources" : "invalid-username-encoding");
        p = c;
    }
    if (p == end || *p != ',') {
        free(authzid);
        return sasl_fail_(s, -EINVAL, "invalid-encoding");
    }
    p++;
    size_t gl = (size_t)(p - m);
    const char *bare = p;
    /* Channel binding policy. */
    int perr = 0;
    const char *perror_ = NULL;
    if (s->mech == SASL_MECH_SCRAM_SHA_256_PLUS) {
        if (flag != 'p') {
            perr = -EINVAL;
            perror_ = "invalid-encoding";
        } else if (strcmp(cbname, "tls-exporter") && strcmp(cbname, "tls-server-end-point")) {
            perr = -ENOTSUP;
            perror_ = "unsupported-channel-binding-type";
        } else {
            size_t len = sizeof s->cbdata;
            if (!s->be.binding || s->be.binding(s->be.arg, cbname, s->cbdata, &len) < 0 ||
                len == 0 || len > sizeof s->cbdata) {
                perr = -ENOTSUP;
                perror_ = "channel-binding-not-supported";
            } else {
                s->cblen = len;
            }
        }
    } else if (flag == 'p') {
        /* Channel binding asked for under the mechanism without it. */
        perr = -EINVAL;
        perror_ = "invalid-encoding";
    } else if (flag == 'y' && s->plus_offered) {
        /* The client could bind and believes we cannot, but we offered
         * -PLUS: someone removed it from our capabilities. */
        perr = -EACCES;
        perror_ = "server-does-support-channel-binding";
    }
    if (perr) {
        free(authzid);
        return sasl_fail_(s, perr, perror_);
    }
    /* client-first-message-bare: [reserved-mext ","] username "," nonce
     * ["," extensions] */
    if (end - p >= 2 && p[0] == 'm' && p[1] == '=') {
        free(authzid);
        return sasl_fail_(s, -EINVAL, "extensions-not-supported");
    }
    const char *c = end - p >= 2 && p[0] == 'n' && p[1] == '=' ? memchr(p, ',', (size_t)(end - p)) : NULL;
    if (!c) {
        free(authzid);
        return sasl_fail_(s, -EINVAL, "invalid-encoding");
    }
    char *user = saslname(p + 2, (size_t)(c - p - 2), &oom);
    if (!user) {
        free(authzid);
        return sasl_fail_(s, oom ? -ENOMEM : -EINVAL,
                          oom ? "no-resources" : "invalid-username-encoding");
    }
    bool authz_ok = !authzid || !strcmp(authzid, user);
    s->authzid = authzid;
    s->user = user;
    p = c + 1;
    if (end - p < 3 || p[0] != 'r' || p[1] != '=') 
        return sasl_fail_(s, -EINVAL, "invalid-encoding");
    const char *nonce = p + 2;
    for (p = nonce; p < end && *p != ','; p++)
        if (!nonce_char(*p))
            return sasl_fail_(s, -EINVAL, "invalid-encoding");
    size_t nl = (size_t)(p - nonce);
    if (nl == 0 || nl > SASL_MAX_NONCE)
        return sasl_fail_(s, -EINVAL, "invalid-encoding");
    while (p < end) {       /* extensions: ignored, but well-formed */
        const char *e = memchr(p + 1, ',', (size_t)(end - p - 1));
        if (!e)
            e = end;
        if (!valid_ext(p + 1, (size_t)(e - p - 1)))
            return sasl_fail_(s, -EINVAL, "invalid-encoding");
        p = e;
    }
    if (!authz_ok)
        return sasl_fail_(s, -EPERM, "other-error");
    /* Server nonce: 18 random bytes, 24 base64 characters. */
    if (!s->snonce[0]) {
        uint8_t r[18];
        if (rm_random(r, sizeof r) < 0)
            return sasl_fail_(s, -EIO, "other-error");
        rm_b64_encode(r, sizeof r, s->snonce);
    }
    size_t sl = strlen(s->snonce);
    s->gs2_header = malloc(gl + 1);
    s->client_first_bare = malloc((size_t)(end - bare) + 1);
    s->nonce = malloc(nl + sl + 1);
    if (!s->gs2_header || !s->client_first_bare || !s->nonce)
        return sasl_fail_(s, -ENOMEM, "no-resources");
    memcpy(s->gs2_header, m, gl);
    s->gs2_header[gl] = '\0';
    memcpy(s->client_first_bare, bare, (size_t)(end - bare));
    s->client_first_bare[end - bare] = '\0';
    memcpy(s->nonce, nonce, nl);
    memcpy(s->nonce + nl, s->snonce, sl + 1);
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
    char salt64[rm_b64_enc_len(PASSWD_SCRAM_SALT_MAX) + 1];
    rm_b64_encode(s->creds.salt, s->creds.salt_len, salt64);
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
    long cbl = rm_b64_decode(m + 2, bl, cb);
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
    long prl = pl <= 64 ? rm_b64_decode(proof, pl, pr) : -EINVAL;
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
    char buf[2 + rm_b64_enc_len(32) + 1] = "v=";
    rm_b64_encode(sig, 32, buf + 2);
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
