/* net/listen.c — listening sockets: one per worker and address, bound with
 * SO_REUSEPORT so the kernel spreads new connections over the workers.
 *
 * SO_REUSEPORT is set always, not only with `processes` > 1: the workers
 * of one process need it already, and the same option lets the N server
 * processes of `processes = N` bind the same ports, so the kernel spreads
 * connections over processes × workers sockets alike.  The kernel allows
 * the sharing only among sockets bound by the same effective uid (all
 * servers bind before dropping privileges, as the same user), so another
 * user cannot join the group and take connections.  A supervisor can keep
 * a server's sockets and hand them to its successor (net_server_inherit),
 * so that a dying server does not reset the connections in its queues. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
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

/* Whether fd is a listening TCP socket bound to ss (any port when ss's
 * is 0, else that port); its port, or -1. */
static int bound_to(int fd, const struct sockaddr_storage *ss)
{
    struct sockaddr_storage got;
    socklen_t len = sizeof got;
    int acc = 0;
    socklen_t alen = sizeof acc;
    if (getsockname(fd, (struct sockaddr *)&got, &len) < 0 || got.ss_family != ss->ss_family ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &alen) < 0 || !acc)
        return -1;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)ss, *b = (const void *)&got;
        if (a->sin_addr.s_addr != b->sin_addr.s_addr || (a->sin_port && a->sin_port != b->sin_port))
            return -1;
        return ntohs(b->sin_port);
    }
    const struct sockaddr_in6 *a = (const void *)ss, *b = (const void *)&got;
    if (memcmp(&a->sin6_addr, &b->sin6_addr, sizeof a->sin6_addr) ||
        (a->sin6_port && a->sin6_port != b->sin6_port))
        return -1;
    return ntohs(b->sin6_port);
}

/* Take the next nworkers inherited sockets into fds when they are bound to
 * ss, all on one port; returns that port, or -1 (then every inherited
 * socket left is closed: the configuration changed, bind anew). */
static int take_inherited(net_server *s, const struct sockaddr_storage *ss, int *fds)
{
    if (s->ninh - s->inh_pos < s->nworkers)
        goto mismatch;
    int port = -1;
    for (unsigned i = 0; i < s->nworkers; i++) {
        int p = bound_to(s->inh[s->inh_pos + i], ss);
        if (p < 0 || (i && p != port))
            goto mismatch;
        port = p;
    }
    memcpy(fds, s->inh + s->inh_pos, s->nworkers * sizeof *fds);
    s->inh_pos += s->nworkers;
    return port;
mismatch:
    while (s->inh_pos < s->ninh)
        close(s->inh[s->inh_pos++]);
    return -1;
}

int net_server_inherit(net_server *s, const int *fds, size_t n)
{
    int rc = 0;
    if (s->started || s->nlisteners || s->inh)
        rc = -EBUSY;
    else if (n && !(s->inh = malloc(n * sizeof *s->inh)))
        rc = -ENOMEM;
    if (rc < 0) {
        for (size_t i = 0; i < n; i++)
            close(fds[i]);
        return rc;
    }
    if (n)
        memcpy(s->inh, fds, n * sizeof *fds);
    s->ninh = n;
    s->inh_pos = 0;
    return 0;
}

size_t net_server_listen_fds(const net_server *s, int *out, size_t max)
{
    size_t n = 0;
    for (unsigned l = 0; l < s->nlisteners; l++) {
        if (s->lst[l].family == AF_UNIX)
            continue;
        for (unsigned i = 0; i < s->nworkers; i++, n++)
            if (n < max)
                out[n] = s->lst[l].fds[i];
    }
    return n;
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
    int port = s->inh_pos < s->ninh ? take_inherited(s, &ss, fds) : -1;
    if (port >= 0) {
        struct net_listener *l = &s->lst[s->nlisteners++];
        l->family = ss.ss_family;
        l->port = port;
        l->fds = fds;
        return 0;
    }

    /* Port 0: the first socket picks a free port and the others join it.
     * Someone else could take the port in between (only with
     * SO_REUSEPORT under our uid); then pick again. */
    for (int attempt = 0; attempt < 16; attempt++) {
        unsigned n = 0;
        port = 0;
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

int net_server_tag(net_server *s, int tag)
{
    if (s->started)
        return -EBUSY;
    if (!s->nlisteners)
        return -EINVAL;
    s->lst[s->nlisteners - 1].tag = tag;
    return 0;
}

/* A Unix stream socket at `path`.  SO_REUSEPORT does not spread a Unix
 * socket's connections, so there is one socket and every worker accepts on
 * its own duplicate of it: whoever wakes first takes a connection, the
 * others find none (EAGAIN), which both backends expect anyway. */
int net_server_listen_unix(net_server *s, const char *path, unsigned mode)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (s->started)
        return -EBUSY;
    if (s->nlisteners == NET_MAX_LISTENERS)
        return -ENOSPC;
    if (!path || !*path || strlen(path) >= sizeof sun.sun_path || mode > 0777)
        return -EINVAL;
    memcpy(sun.sun_path, path, strlen(path) + 1);
    /* A socket left by an earlier run is replaced; anything else at that
     * path is the operator's, and never removed. */
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return -EEXIST;
        if (unlink(path) < 0)
            return -errno;
    }
    int *fds = calloc(s->nworkers, sizeof *fds);
    if (!fds)
        return -ENOMEM;
    for (unsigned i = 0; i < s->nworkers; i++)
        fds[i] = -1;
    int rc = 0;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        goto fail;
    }
    fds[0] = fd;
    /* The mode is set before anyone can connect: bind under a umask that
     * hides the socket, chmod, then listen. */
    mode_t old = umask(0777);
    int b = bind(fd, (struct sockaddr *)&sun, sizeof sun);
    int e = errno;
    umask(old);
    if (b < 0) {
        rc = -e;
        goto fail;
    }
    if (chmod(path, (mode_t)mode) < 0 || listen(fd, NET_BACKLOG) < 0) {
        rc = -errno;
        unlink(path);
        goto fail;
    }
    for (unsigned i = 1; i < s->nworkers; i++) {
        fds[i] = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (fds[i] < 0) {
            rc = -errno;
            unlink(path);
            goto fail;
        }
    }
    struct net_listener *l = &s->lst[s->nlisteners++];
    l->family = AF_UNIX;
    l->port = 0;
    l->fds = fds;
    return 0;
fail:
    for (unsigned i = 0; i < s->nworkers; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(fds);
    return rc;
}
