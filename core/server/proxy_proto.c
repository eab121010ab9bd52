/* core/server/proxy_proto.c — the PROXY protocol header (see proxy_proto.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/auth/abuse.h"
#include "core/server/proxy_proto.h"
#include "core/server/server.h"

static const uint8_t V2_SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static abuse *from;     /* its trusted list is proxy_protocol_from */

/* An address and port as this server writes peers: "1.2.3.4:5",
 * "[::1]:5". */
static int write_peer(int family, const void *addr, unsigned port, char *peer, size_t len)
{
    char ip[INET6_ADDRSTRLEN];
    if (!inet_ntop(family, addr, ip, sizeof ip))
        return -EINVAL;
    int n = snprintf(peer, len, family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, port);
    return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}

/* "PROXY TCP4 192.0.2.1 198.51.100.1 56324 143\r\n" (section 2.1). */
static int parse_v1(const uint8_t *p, size_t n, size_t *used, char *peer, size_t peerlen)
{
    const uint8_t *lf = memchr(p, '\n', n < PROXY_PROTO_V1_MAX ? n : PROXY_PROTO_V1_MAX);
    if (!lf)
        return n >= PROXY_PROTO_V1_MAX ? -EINVAL : 0;
    size_t len = (size_t)(lf - p) + 1;
    /* "the CRLF sequence ... MUST be present" */
    if (len < 2 || lf[-1] != '\r')
        return -EINVAL;
    char line[PROXY_PROTO_V1_MAX + 1];
    memcpy(line, p, len - 2);
    line[len - 2] = '\0';
    *used = len;
    if (!strcmp(line, "PROXY UNKNOWN") || !strncmp(line, "PROXY UNKNOWN ", 14)) {
        /* "the receiver must ignore anything presented before the CRLF" */
        peer[0] = '\0';
        return 1;
    }
    char fam[8], src[64], dst[64];
    unsigned sport, dport;
    char extra;
    if (sscanf(line, "PROXY %7s %63s %63s %u %u%c", fam, src, dst, &sport, &dport,
               &extra) != 5 || sport > 65535 || dport > 65535)
        return -EINVAL;
    int family = !strcmp(fam, "TCP4") ? AF_INET : !strcmp(fam, "TCP6") ? AF_INET6 : 0;
    uint8_t a[16], b[16];
    if (!family || inet_pton(family, src, a) != 1 || inet_pton(family, dst, b) != 1)
        return -EINVAL;
    return write_peer(family, a, sport, peer, peerlen) < 0 ? -EINVAL : 1;
}

/* Section 2.2: 12 bytes of signature, version and command, family and
 * transport, a 16-bit length, then the addresses (and TLVs). */
static int parse_v2(const uint8_t *p, size_t n, size_t *used, char *peer, size_t peerlen)
{
    if (n < 16)
        return 0;
    uint8_t ver_cmd = p[12], fam = p[13];
    size_t len = (size_t)p[14] << 8 | p[15];
    /* "The highest four bits contains the version ... MUST always be sent
     * as \x2 and the receiver MUST only accept this value." */
    if ((ver_cmd >> 4) != 2 || (ver_cmd & 0xf) > 1 || 16 + len > PROXY_PROTO_V2_MAX)
        return -EINVAL;
    if (n < 16 + len)
        return 0;
    *used = 16 + len;
    const uint8_t *a = p + 16;
    peer[0] = '\0';
    /* LOCAL (health checks): "the receiver must ... use the real
     * connection endpoints"; likewise families we do not map */
    if ((ver_cmd & 0xf) == 0)
        return 1;
    uint8_t af = fam >> 4, tp = fam & 0xf;
    if (tp != 1 && tp != 2)
        return af == 0 || af == 3 ? 1 : -EINVAL;
    if (af == 1) {
        if (len < 12)
            return -EINVAL;
        return write_peer(AF_INET, a, (unsigned)a[8] << 8 | a[9], peer, peerlen) < 0 ? -EINVAL
                                                                                      : 1;
    }
    if (af == 2) {
        if (len < 36)
            return -EINVAL;
        return write_peer(AF_INET6, a, (unsigned)a[32] << 8 | a[33], peer, peerlen) < 0
               ? -EINVAL : 1;
    }
    return af == 0 || af == 3 ? 1 : -EINVAL;
}

int proxy_proto_parse(const uint8_t *p, size_t n, size_t *used, char *peer, size_t peerlen)
{
    *used = 0;
    size_t k = n < sizeof V2_SIG ? n : sizeof V2_SIG;
    if (!memcmp(p, V2_SIG, k))
        return k < sizeof V2_SIG ? 0 : parse_v2(p, n, used, peer, peerlen);
    static const char v1[] = "PROXY ";
    k = n < 6 ? n : 6;
    if (memcmp(p, v1, k))
        return -EINVAL;
    return k < 6 ? 0 : parse_v1(p, n, used, peer, peerlen);
}

/* ---- configuration ----------------------------------------------------------- */

int proxy_proto_conf_init(const config *cfg)
{
    const char *cidrs = config_get(cfg, "proxy_protocol_from");
    int rc = abuse_new(cidrs, &from);
    if (rc < 0)
        fprintf(stderr, "ringmaild: proxy_protocol_from = %s: a bad CIDR\n", cidrs);
    if (rc == 0 && *config_get(cfg, "listen_proxy") && !*cidrs)
        fprintf(stderr, "ringmaild: listen_proxy is set but proxy_protocol_from is empty: "
                "every connection there is refused\n");
    return rc;
}

void proxy_proto_conf_fini(void)
{
    abuse_free(from);
    from = NULL;
}

bool proxy_proto_from(const char *ip)
{
    return from && abuse_trusted(from, ip);
}

