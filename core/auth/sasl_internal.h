/* core/auth/sasl_internal.h — the SASL object, shared by core/auth/sasl_*.c. */
#ifndef RINGMAIL_CORE_SASL_INTERNAL_H
#define RINGMAIL_CORE_SASL_INTERNAL_H

#include "core/auth/sasl.h"

#define SASL_MAX_MSG 8192       /* longest client message accepted */
#define SASL_MAX_NAME 1024      /* longest user name / authzid */
#define SASL_MAX_NONCE 256

enum sasl_state {
    SS_START,
    SS_PLAIN_WAIT,          /* PLAIN, SCRAM: empty challenge sent */
    SS_LOGIN_USER,          /* LOGIN: "Username:" sent */
    SS_LOGIN_PASS,          /* LOGIN: "Password:" sent */
    SS_WORK_VERIFY,         /* waiting for sasl_work: verify */
    SS_WORK_LOOKUP,         /* waiting for sasl_work: SCRAM lookup */
    SS_WORKED,              /* sasl_work ran; sasl_resume next */
    SS_SCRAM_FINAL,         /* server-first sent */
    SS_SCRAM_ACK,           /* server-final "v=" sent */
    SS_DONE,
    SS_FAIL,
};

struct sasl {
    sasl_mech mech;
    sasl_backend be;
    bool plus_offered;
    enum sasl_state state;
    enum sasl_state work;       /* which work sasl_work did / must do */
    int work_rc;
    int err;
    char *user;                 /* authcid, NUL-terminated, owned */
    char *authzid;              /* as sent, if sent; owned */
    char *password;             /* PLAIN/LOGIN, wiped and freed */
    char out[640];              /* the last server message */
    size_t outlen;
    /* SCRAM */
    char snonce[SASL_MAX_NONCE + 1];    /* server part; "" = pick one */
    char *gs2_header;           /* "n,," etc. */
    char *client_first_bare;
    char *nonce;                /* client + server nonce */
    char *server_first;
    uint8_t cbdata[128];
    size_t cblen;
    bool fake;                  /* unknown user: fail at the proof */
    passwd_scram creds;
};

sasl_status sasl_fail_(sasl *s, int err, const char *scram_error);
void sasl_set_out_(sasl *s, const char *str);
/* Valid UTF-8, no C0 controls or DEL, no NUL, 1..SASL_MAX_NAME bytes. */
bool sasl_valid_name_(const char *p, size_t n);

sasl_status sasl_scram_step_(sasl *s, const uint8_t *in, size_t n);
sasl_status sasl_scram_resume_(sasl *s);
void sasl_scram_free_(sasl *s);

#endif
