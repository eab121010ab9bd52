/* core/server/lmtp.h — an LMTP session and its delivery (lmtp.c,
 * lmtp_deliver.c). */
#ifndef RINGMAIL_CORE_SERVER_LMTP_H
#define RINGMAIL_CORE_SERVER_LMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/imap/imap_args.h"
#include "core/lmtp/lmtp_proto.h"
#include "core/server/server.h"

typedef struct lmtp_rcpt {
    char *user;         /* the passwd-file's name */
    char *folder;       /* from user+folder@, or NULL */
    char *addr;         /* the address as given, for Delivered-To */
} lmtp_rcpt;

typedef struct lmtp_sess {
    imap_server *srv;
    net_conn *conn;
    uint64_t id;
    enum { LS_CMD, LS_DATA, LS_BDAT } state;
    bool lhlo, in_mail, smtputf8;
    bool in_bdat, bdat_last, bdat_failed;
    bool busy;          /* a delivery job holds the session */
    bool dead;          /* closed while busy: the job frees it */
    bool closing;       /* close once the replies are out */
    bool overlong;      /* discarding the rest of a too-long line */
    unsigned errors;
    unsigned commands;  /* since the last delivery */
    char *helo;
    char *from;         /* reverse-path, "" for <> */
    lmtp_rcpt *rcpt;
    size_t nrcpt, caprcpt;
    char line[LMTP_LINE_MAX + 2];
    size_t nline;
    /* the message: decoded DATA or the BDAT chunks, kept up to max_size;
     * msize counts every byte, kept or not */
    char *msg;
    size_t mlen, mcap;
    uint64_t msize;
    lmtp_data dec;
    uint64_t bdat_left;
    imap_out out;       /* replies not yet sent */
    uint8_t *stash;     /* input that came while a delivery ran */
    size_t nstash;
} lmtp_sess;

/* lmtp_deliver.c: deliver the transaction's message to every recipient on
 * the sync pool; the replies follow, then lmtp_resume.  Sets ls->busy. */
void lmtp_deliver(lmtp_sess *ls);

/* lmtp.c */
/* The directory's name for recipient local@domain (domain may be NULL):
 * the local part up to the first of recipient_delimiter (a delimiter
 * first in the local part does not count), with "@domain" when
 * lmtp_user_domain = keep; *detail is what follows the delimiter (a
 * folder), or NULL.  LMTP and the socketmap (socketmap.c) name users the
 * same way.  0, or -ENAMETOOLONG when it does not fit in cap. */
int lmtp_user_of(const lmtp_conf *c, const char *local, const char *domain, char *name,
                 size_t cap, const char **detail);
void lmtp_resume(lmtp_sess *ls);
void lmtp_free(lmtp_sess *ls);
void lmtp_rcpt_free(lmtp_rcpt *r);

#endif
