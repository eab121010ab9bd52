/* net/addr.c — socket addresses: parsing "host:port" for listeners, and the
 * peer of a connection, kept compactly (family, port, 16 address bytes)
 * and formatted only when someone asks. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/internal.h"

int net_addr_parse(const char *hostport, struct sockaddr_storage *ss,
                   socklen_t *len)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port_s;
    size_t hl;

    if (!hostport)
        return -EINVAL;
    if (hostport[0] == '[') {
        const char *end = strchr(hostport, ']');
        if (!end || end[1] != ':')
            return -EINVAL;
        hl = (size_t)(end - hostport - 1);
        if (hl >= sizeof host)
            return -EINVAL;
        memcpy(host, hostport + 1, hl);
        port_s = end + 2;
    } else {
        const char *colon = strrchr(hostport, ':');
        if (!colon)
            return -EINVAL;
        hl = (size_t)(colon - hostport);
        if (hl >= sizeof host)
            return -EINVAL;
        memcpy(host, hostport, hl);
        port_s = colon + 1;
    }
    host[hl] = '\0';

    char *endp;
    errno = 0;
    unsigned long port = strtoul(port_s, &endp, 10);
    if (!*port_s || *endp || errno || port > 65535)
        return -EINVAL;

    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    /* Names are not resolved: a listener's address is configuration, and
     * a DNS lookup at start-up is a failure mode we do not need. */
    if (!strcmp(host, "*") || !strcmp(host, "")) {
        in4->sin_family = AF_INET;
        in4->sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (!strcmp(host, "localhost")) {
        in4->sin_family = AF_INET;
        in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
    } else {
        return -EINVAL;
    }
    if (ss->ss_family == AF_INET) {
        in4->sin_port = htons((uint16_t)port);
        *len = sizeof *in4;
    } else {
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof *in6;
    }
    return 0;
}

void net_addr_store(struct net_conn *c, const struct sockaddr *sa)
{
    if (sa && sa->sa_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
        c->family = AF_INET;
        c->port = ntohs(in4->sin_port);
        memcpy(c->addr, &in4->sin_addr, 4);
    } else if (sa && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        c->family = AF_INET6;
        c->port = ntohs(in6->sin6_port);
        memcpy(c->addr, &in6->sin6_addr, 16);
    } else if (sa && sa->sa_family == AF_UNIX) {
        c->family = AF_UNIX;
        c->port = 0;
    } else {
        c->family = AF_UNSPEC;
    }
}

const char *net_conn_peer(const net_conn *c_)
{
    struct net_conn *c = (struct net_conn *)c_;
    char ip[INET6_ADDRSTRLEN], buf[INET6_ADDRSTRLEN + 9];   /* "[v6]:65535" */

    if (c->peer)
        return c->peer;
    if (c->family == AF_INET && inet_ntop(AF_INET, c->addr, ip, sizeof ip))
        snprintf(buf, sizeof buf, "%s:%u", ip, c->port);
    else if (c->family == AF_INET6 && inet_ntop(AF_INET6, c->addr, ip, sizeof ip))
        snprintf(buf, sizeof buf, "[%s]:%u", ip, c->port);
    else if (c->family == AF_UNIX)
        snprintf(buf, sizeof buf, "unix");
    else
        snprintf(buf, sizeof buf, "?");
    /* Kept (sized to fit: most sessions log their peer, and this is per
     * connection) until the connection is freed.  Without memory, callers
     * still get something printable. */
    c->peer = strdup(buf);
    return c->peer ? c->peer : "?";
}

int net_conn_tag(const net_conn *c)
{
    return c->w->s->lst[c->listener].tag;
}

bool net_conn_is_loopback(const net_conn *c)
{
    static const uint8_t v6_loop[16] = { [15] = 1 };
    static const uint8_t v4_mapped[12] = { [10] = 0xff, [11] = 0xff };

    if (c->family == AF_INET)
        return c->addr[0] == 127;
    if (c->family == AF_INET6) {
        if (!memcmp(c->addr, v6_loop, 16))
            return true;
        return !memcmp(c->addr, v4_mapped, 12) && c->addr[12] == 127;
    }
    /* A Unix socket's peer is on this machine, like a loopback one. */
    return c->family == AF_UNIX;
}

void net_conn_quickack(net_conn *c)
{
    if (c->family == AF_UNIX || c->fd < 0)
        return;
    int one = 1;
    /* best effort: a failure costs only the delay it would have saved */
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}
