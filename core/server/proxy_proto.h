/* core/server/proxy_proto.h — the PROXY protocol header (HAProxy's
 * proxy-protocol.txt, versions 1 and 2) that a proxy sends first on its
 * connection to say whose connection it carries.
 *
 * nginx's mail proxy sends version 1 with `proxy_protocol on;` (1.19.8 and
 * later; Debian 12 has 1.22), so ringmaild learns each client's real
 * address from it rather than from the ID command's x-originating-ip
 * (Dovecot's way, which nginx's mail proxy does not send).
 *
 * Where: listeners of their own (listen_proxy), and only from
 * proxy_protocol_from.  The specification wants it so: "Receivers MUST be
 * configured to only receive the protocol described in this specification
 * and MUST not try to guess whether the protocol header is present or
 * not", and a header from anyone else would let any client choose the
 * address it is logged and limited under. */
#ifndef RINGMAIL_CORE_SERVER_PROXY_PROTO_H
#define RINGMAIL_CORE_SERVER_PROXY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/config.h"
#include "net/net.h"

/* Version 1's longest line (the specification's 107 bytes) and the most
 * of version 2 taken (16 bytes of header, the addresses, and TLVs, which
 * are skipped): a longer header is refused. */
#define PROXY_PROTO_V1_MAX 107
#define PROXY_PROTO_V2_MAX 1024

/* Parse a header at the start of p[0..n).  1: complete, *used its length,
 * peer the client's "ip:port" ("[v6]:port"), or "" when the header names
 * none (v1 UNKNOWN, v2 LOCAL or a family other than TCP/UDP over IPv4 or
 * IPv6: the connection's own address stands).  0: incomplete, more bytes
 * needed.  -EINVAL: not a valid header (the specification: the receiver
 * "MUST NOT try to guess" and must drop the connection). */
int proxy_proto_parse(const uint8_t *p, size_t n, size_t *used, char *peer, size_t peerlen);

/* proxy_protocol_from (CIDRs) and listen_proxy from the configuration;
 * -EINVAL with a line on stderr for a bad one. */
int proxy_proto_conf_init(const config *cfg);
void proxy_proto_conf_fini(void);
/* May a connection from ip (no port) send a header?  Never when
 * proxy_protocol_from is empty. */
bool proxy_proto_from(const char *ip);

#endif
