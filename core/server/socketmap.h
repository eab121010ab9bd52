/* core/server/socketmap.h — Postfix lookup tables served from the
 * directory: Postfix's socketmap protocol (socketmap_table(5)) on
 * `listen_socketmap`, so the MTA routes each recipient to the backend that
 * holds the user.
 *
 * A request is one netstring "<map> <key>"; the reply one netstring:
 * "OK <data>", "NOTFOUND ", "TEMP <reason>", "PERM <reason>".  One
 * connection carries any number of requests, one at a time.  Maps:
 *
 *   transport  key: a recipient address.  OK lmtp:inet:HOST:PORT for a
 *              user whose record names a host (PORT: the record's
 *              lmtp_port field, else socketmap_lmtp_port), OK
 *              <socketmap_lmtp_default> for a user whose mail is here
 *              (no host); for transport_maps.
 *   mailbox    key: a recipient address.  OK <user> when the user
 *              exists; for virtual_mailbox_maps, relay_recipient_maps or
 *              local_recipient_maps, so unknown users are refused at RCPT.
 *
 * The user of an address is found as LMTP finds it (lmtp_user_of:
 * lmtp_user_domain, recipient_delimiter), the name's case folded, for
 * addresses of socketmap_domains only: Postfix asks transport_maps about
 * every recipient, remote ones too, and with lmtp_user_domain = strip
 * alice@elsewhere.example would otherwise be routed to our alice.  Unknown
 * user: NOTFOUND; a directory that cannot answer: TEMP (Postfix defers the
 * mail, it never bounces on it); a record that cannot be used or a request
 * that makes no sense: PERM (Postfix defers too, and logs a table error).
 *
 * Lookups run on the password pool (userdb_* block), never on the worker
 * that holds the connection. */
#ifndef RINGMAIL_CORE_SERVER_SOCKETMAP_H
#define RINGMAIL_CORE_SERVER_SOCKETMAP_H

#include <stddef.h>

#include "core/auth/userdb.h"
#include "core/base/config.h"
#include "core/server/server.h"

/* The longest request string accepted: a map name and an address.  RFC
 * 5321 4.5.3.1 bounds a path at 256 octets; Postfix does not enforce that
 * (its smtpd takes lines of line_length_limit = 2048), so room for its
 * longest is kept, and a longer request is refused with PERM. */
#define SOCKETMAP_REQUEST_MAX 4096
/* Our replies are one short line (Postfix takes up to 100000 bytes:
 * socketmap_table(5), "replies are not longer than 100000 characters"). */
#define SOCKETMAP_REPLY_MAX 1024

typedef struct socketmap_conf {
    unsigned lmtp_port;         /* socketmap_lmtp_port */
    char local[512];            /* socketmap_lmtp_default, or what listen_lmtp
                                   gives; "" when neither says */
    /* socketmap_domains, blank-separated: only addresses of these are
     * users' ("" = any domain, allowed only with lmtp_user_domain = keep) */
    char domains[2048];
    unsigned timeout_ms;        /* socketmap_timeout */
    unsigned max_conn;          /* socketmap_max_connections */
} socketmap_conf;

/* The settings from the configuration; -EINVAL with one line in err for a
 * bad one. */
int socketmap_conf_init(socketmap_conf *c, const config *cfg, char *err, size_t errlen);

/* The reply (without its netstring framing) to the request req[0..len)
 * into out (cap >= SOCKETMAP_REPLY_MAX): its length.  Blocks on the
 * directory: on a pool thread. */
size_t socketmap_answer(const socketmap_conf *c, const lmtp_conf *lc, userdb *db,
                        const char *req, size_t len, char *out, size_t cap);

/* The server's socketmap: settings (socketmap_conf_init) and the server
 * its connections use.  -EINVAL with a line on stderr. */
int socketmap_init(imap_server *srv, const config *cfg);
/* The connection callbacks of a LISTEN_SOCKETMAP listener. */
extern const net_conn_ops socketmap_ops;

#endif
