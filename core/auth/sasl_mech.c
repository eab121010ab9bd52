/* core/auth/sasl_mech.c — the SASL object, PLAIN and LOGIN. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/auth/sasl_internal.h"
#include "store/utf8.h"

static const char *const mech_names[] = {
    [SASL_MECH_PLAIN] = "PLAIN",
    [SASL_MECH_LOGIN] = "LOGIN",
    [SASL_MECH_SCRAM_SHA_256] = "SCRAM-SHA-256",
    [SASL_MECH_SCRAM_SHA_256_PLUS] = "SCRAM-SHA-256-PLUS",
};

int sasl_mech_parse(const char *name, sasl_mech *out)
{
    for (size_t i = 0; i < sizeof mech_names / sizeof mech_names[0]; i++)
        if (!strcasecmp(name, mech_names[i])) {
            *out = (sasl_mech)i;
            return 0;
        }
    return -ENOENT;
}

const char *sasl_mech_name(sasl_mech m)
{
    return (unsigned)m < sizeof mech_names / sizeof mech_names[0] ? mech_names[m] : "?";
}

bool sasl_mech_is_plaintext(sasl_mech m)
{
    return m == SASL_MECH_PLAIN || m == SASL_MECH_LOGIN;
}

int sasl_new(sasl_mech mech, const sasl_backend *be, bool plus_offered, sasl **out)
{
    if ((unsigned)mech > SASL_MECH_SCRAM_SHA_256_PLUS)
        return -EINVAL;
    sasl *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->mech = mech;
    if (be)
        s->be = *be;
    s->plus_offered = plus_offered;
    s->state = SS_START;
    *out = s;
    return 0;
}

static void wipe_password(sasl *s)
{
    if (s->password) {
        memset(s->password, 0, strlen(s->password));
        free(s->password);
        s->password = NULL;
    }
}

void sasl_free(sasl *s)
{
    if (!s)
        return;
    wipe_password(s);
    sasl_scram_free_(s);
    free(s->user);
    free(s->authzid);
    memset(s, 0, sizeof *s);
    free(s);
}

void sasl_set_out_(sasl *s, const char *str)
{
    size_t n = strlen(str);
    if (n >= sizeof s->out)
        n = sizeof s->out - 1;
    memcpy(s->out, str, n);
    s->out[n] = '\0';
    s->outlen = n;
}

sasl_status sasl_fail_(sasl *s, int err, const char *scram_error)
{
    s->state = SS_FAIL;
    s->err = err;
    wipe_password(s);
    s->outlen = 0;
    if (scram_error) {
        char buf[64];
        snprintf(buf, sizeof buf, "e=%s", scram_error);
        sasl_set_out_(s, buf);
    }
    return SASL_FAIL;
}

bool sasl_valid_name_(const char *p, size_t n)
{
    const uint8_t *u = (const uint8_t *)p;
    if (n == 0 || n > SASL_MAX_NAME)
        return false;
    for (size_t i = 0; i < n;) {
        uint8_t c = u[i];
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return false;
            i++;
            continue;
        }
        uint32_t cp;
        size_t len = store_utf8_decode(u + i, n - i, &cp);
        if (!len || cp < 0xa0)          /* not UTF-8, or a C1 control */
            return false;
        i += len;
    }
    return true;
}

static char *dup_bytes(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

/* The password is in s: verify it, from the backend's cache if it knows
 * it, else through SASL_WORK. */
static sasl_status need_verify(sasl *s)
{
    if (s->be.verify_cached && s->be.verify_cached(s->be.arg, s->user, s->password) == 0) {
        wipe_password(s);
        s->state = SS_DONE;
        return SASL_DONE;
    }
    s->state = s->work = SS_WORK_VERIFY;
    return SASL_WORK;
}

/* PLAIN: [authzid] NUL authcid NUL passwd (RFC 4616). */
static sasl_status plain_message(sasl *s, const uint8_t *in, size_t n)
{
    const uint8_t *z1 = memchr(in, 0, n);
    const uint8_t *z2 = z1 ? memchr(z1 + 1, 0, n - (size_t)(z1 + 1 - in)) : NULL;
    if (!z2)
        return sasl_fail_(s, -EINVAL, NULL);
    size_t zl = (size_t)(z1 - in), cl = (size_t)(z2 - z1 - 1),
           pl = n - (size_t)(z2 + 1 - in);
    if (memchr(z2 + 1, 0, pl) || pl == 0 || pl > SASL_MAX_MSG ||
        !sasl_valid_name_((const char *)z1 + 1, cl) ||
        (zl && !sasl_valid_name_((const char *)in, zl)))
        return sasl_fail_(s, -EINVAL, NULL);
    if (!(s->user = dup_bytes(z1 + 1, cl)) || (zl && !(s->authzid = dup_bytes(in, zl))))
        return sasl_fail_(s, -ENOMEM, NULL);
    if (zl && (zl != cl || memcmp(in, z1 + 1, cl)))
        return sasl_fail_(s, -EPERM, NULL);
    if (!(s->password = dup_bytes(z2 + 1, pl)))
        return sasl_fail_(s, -ENOMEM, NULL);
    return need_verify(s);
}

static sasl_status login_step(sasl *s, const uint8_t *in, size_t n)
{
    if (s->state == SS_START && !in) {
        sasl_set_out_(s, "Username:");
        s->state = SS_LOGIN_USER;
        return SASL_CONTINUE;
    }
    if (s->state == SS_START || s->state == SS_LOGIN_USER) {
        /* An initial response is the user name (as clients send it). */
        if (!sasl_valid_name_((const char *)in, n))
            return sasl_fail_(s, -EINVAL, NULL);
        if (!(s->user = dup_bytes(in, n)))
            return sasl_fail_(s, -ENOMEM, NULL);
        sasl_set_out_(s, "Password:");
        s->state = SS_LOGIN_PASS;
        return SASL_CONTINUE;
    }
    if (n == 0 || memchr(in, 0, n))
        return sasl_fail_(s, -EINVAL, NULL);
    if (!(s->password = dup_bytes(in, n)))
        return sasl_fail_(s, -ENOMEM, NULL);
    return need_verify(s);
}

static sasl_status finish(sasl *s, sasl_status st, const uint8_t **out, size_t *outlen)
{
    if (out)
        *out = (const uint8_t *)s->out;
    if (outlen)
        *outlen = st == SASL_WORK || st == SASL_DONE ? 0 : s->outlen;
    return st;
}

sasl_status sasl_step(sasl *s, const uint8_t *in, size_t n,
                      const uint8_t **out, size_t *outlen)
{
    sasl_status st;
    bool first = s->state == SS_START;
    s->outlen = 0;
    if (!in && !first)
        in = (const uint8_t *)"";   /* NULL only means something first */
    if (n > SASL_MAX_MSG)
        st = s->state == SS_FAIL || s->state == SS_DONE
                 ? SASL_FAIL : sasl_fail_(s, -EINVAL, NULL);
    else if (s->state == SS_FAIL || s->state == SS_DONE || s->state == SS_WORK_VERIFY ||
             s->state == SS_WORK_LOOKUP || s->state == SS_WORKED)
        /* Misuse: a finished exchange or one waiting for its work. */
        st = s->state == SS_FAIL ? SASL_FAIL : sasl_fail_(s, -EINVAL, NULL);
    else if (s->mech == SASL_MECH_PLAIN) {
        if (first && !in) {
            s->state = SS_PLAIN_WAIT;
            st = SASL_CONTINUE;
        } else {
            st = plain_message(s, in, n);
        }
    } else if (s->mech == SASL_MECH_LOGIN) {
        st = login_step(s, in, n);
    } else {
        st = sasl_scram_step_(s, in, n);
    }
    return finish(s, st, out, outlen);
}

void sasl_work(void *arg)
{
    sasl *s = arg;
    if (s->state == SS_WORK_VERIFY)
        s->work_rc = s->be.verify ? s->be.verify(s->be.arg, s->user, s->password)
                                  : -EACCES;
    else if (s->state == SS_WORK_LOOKUP)
        s->work_rc = s->be.scram_lookup
                         ? s->be.scram_lookup(s->be.arg, s->user, &s->creds)
                         : -EACCES;
    else
        return;
    s->state = SS_WORKED;
}

sasl_status sasl_resume(sasl *s, const uint8_t **out, size_t *outlen)
{
    sasl_status st;
    s->outlen = 0;
    if (s->state != SS_WORKED) {
        st = s->state == SS_FAIL ? SASL_FAIL : sasl_fail_(s, -EINVAL, NULL);
    } else if (s->work == SS_WORK_VERIFY) {
        wipe_password(s);
        if (s->work_rc == 0) {
            s->state = SS_DONE;
            st = SASL_DONE;
        } else {
            st = sasl_fail_(s, s->work_rc == -EACCES || s->work_rc > 0 ? -EACCES
                                                                     : s->work_rc, NULL);
        }
    } else {
        st = sasl_scram_resume_(s);
    }
    return finish(s, st, out, outlen);
}

sasl_status sasl_step_sync(sasl *s, const uint8_t *in, size_t n,
                           const uint8_t **out, size_t *outlen)
{
    sasl_status st = sasl_step(s, in, n, out, outlen);
    if (st == SASL_WORK) {
        sasl_work(s);
        st = sasl_resume(s, out, outlen);
    }
    return st;
}

const char *sasl_user(const sasl *s)
{
    return s->state == SS_DONE ? s->user : NULL;
}

const char *sasl_authcid(const sasl *s)
{
    return s->user;
}

const char *sasl_authzid(const sasl *s)
{
    return s->authzid;
}

int sasl_error(const sasl *s)
{
    return s->state == SS_FAIL ? s->err : 0;
}
