/* net/listen.c — listening sockets: one per worker and address, bound with
 * SO_REUSEPORT so the kernel spreads new connections over the workers.
 *
 * SO_REUSEPORT is set always, not only with `processes` > 1: the workers
 * of one process need it already, and the same option lets the N server
 * processes of `processes = N` bind the same ports, so the kernel spreads
 * connections over processes × workers sockets alike.  The kernel allows
 * the sharing only among sockets bound by the same effective uid (all
 * servers bind before dropping privileges, as the same user), so another
 * user cannot join the group and take connections. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <unistd.h>

#include "net/internal.h"

#define NET_BACKLOG 4096

static int listen_socket(const struct sockaddr_storage *ss, socklen_t len)
{
    int one = 1, fd, rc = 0;

    fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        goto fail;
    /* "[::]:143" should not also claim IPv4: the operator lists both. */
    if (ss->ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0)
        goto fail;
    /* Responses are written whole, so Nagle only adds latency.  Accepted
     * sockets inherit the option, which saves a setsockopt per accept. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        goto fail;
    if (bind(fd, (const struct sockaddr *)ss, len) < 0 ||
        listen(fd, NET_BACKLOG) < 0)
        goto fail;
    return fd;
fail:
    rc = -errno;
    close(fd);
    return rc;
}

static void set_port(struct sockaddr_storage *ss, int port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

static int get_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -errno;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

int net_server_listen(net_server *s, const char *hostport)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int rc;

    if (s->started)
        return -EBUSY;
    if (s->nlisteners == NET_MAX_LISTENERS)
        return -ENOSPC;
    rc = net_addr_parse(hostport, &ss, &len);
    if (rc < 0)
        return rc;
    int *fds = malloc(s->nworkers * sizeof *fds);
    if (!fds)
        return -ENOMEM;
    bool any_port = ((ss.ss_family == AF_INET)
                     ? ((struct sockaddr_in *)&ss)->sin_port
                     : ((struct sockaddr_in6 *)&ss)->sin6_port) == 0;

    /* Port 0: the first socket picks a free port and the others join it.
     * Someone else could take the port in between (only with
     * SO_REUSEPORT under our uid); then pick again. */
    for (int attempt = 0; attempt < 16; attempt++) {
        unsigned n = 0;
        int port = 0;
        rc = 0;
        if (any_port)
            set_port(&ss, 0);
        for (; n < s->nworkers; n++) {
            rc = listen_socket(&ss, len);
            if (rc < 0)
                break;
            fds[n] = rc;
            if (n == 0) {
                port = rc = get_port(fds[0]);
                if (rc < 0) {
                    close(fds[0]);
                    break;
                }
                set_port(&ss, port);
            }
        }
        if (rc >= 0) {
            struct net_listener *l = &s->lst[s->nlisteners++];
            l->family = ss.ss_family;
            l->port = port;
            l->fds = fds;
            return 0;
        }
        while (n--)
            close(fds[n]);
        if (!(any_port && rc == -EADDRINUSE))
            break;
    }
    free(fds);
    return rc;
}

int net_server_port(const net_server *s, unsigned listener)
{
    if (listener >= s->nlisteners)
        return -EINVAL;
    return s->lst[listener].port;
}

int net_server_listen_tls(net_server *s, const char *hostport, net_tls *tls)
{
    if (!tls)
        return -EINVAL;
    int rc = net_server_listen(s, hostport);
    if (rc < 0)
        return rc;
    s->lst[s->nlisteners - 1].tls = tls;
    return 0;
}
