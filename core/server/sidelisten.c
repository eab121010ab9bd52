/* core/server/sidelisten.c — a listener with a thread of its own.  See
 * sidelisten.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/server/sidelisten.h"

int sidelisten_parse(const char *key, const char *spec, struct sockaddr_storage *ss,
                     socklen_t *len, char *err, size_t errlen)
{
    char host[64] = "127.0.0.1";
    const char *port_s = spec;
    const char *colon = strrchr(spec, ':');
    if (colon) {
        const char *h = spec;
        size_t hl = (size_t)(colon - spec);
        if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
            h++;
            hl -= 2;
        }
        if (hl == 0 || (hl == 1 && h[0] == '*')) {
            snprintf(err, errlen, "%s = %s: write the address to listen on "
                     "(127.0.0.1:PORT, or 0.0.0.0:PORT / [::]:PORT to open it to other "
                     "machines)", key, spec);
            return -EINVAL;
        }
        if (hl >= sizeof host) {
            snprintf(err, errlen, "%s = %s: bad address", key, spec);
            return -EINVAL;
        }
        memcpy(host, h, hl);
        host[hl] = '\0';
        port_s = colon + 1;
    }
    char *end;
    errno = 0;
    unsigned long port = strtoul(port_s, &end, 10);
    if (!*port_s || *end || errno || port > 65535) {
        snprintf(err, errlen, "%s = %s: bad port", key, spec);
        return -EINVAL;
    }
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (!strcmp(host, "localhost"))
        strcpy(host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *len = sizeof *in4;
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof *in6;
    } else {
        snprintf(err, errlen, "%s = %s: '%s' is not an IP address", key, spec, host);
        return -EINVAL;
    }
    return 0;
}

int sidelisten_bind(sidelisten *l, const struct sockaddr_storage *ss, socklen_t len,
                    int backlog)
{
    int one = 1, rc = 0;
    l->started = false;
    l->fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    l->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (l->fd < 0 || l->stopfd < 0 ||
        setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        setsockopt(l->fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
        (ss->ss_family == AF_INET6 &&
         setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) ||
        bind(l->fd, (const struct sockaddr *)ss, len) < 0 || listen(l->fd, backlog) < 0) {
        rc = -errno;
        goto fail;
    }
    struct sockaddr_storage got;
    socklen_t gl = sizeof got;
    if (getsockname(l->fd, (struct sockaddr *)&got, &gl) < 0) {
        rc = -errno;
        goto fail;
    }
    l->port = ntohs(got.ss_family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port
                                             : ((struct sockaddr_in6 *)&got)->sin6_port);
    return 0;
fail:
    if (l->fd >= 0)
        close(l->fd);
    if (l->stopfd >= 0)
        close(l->stopfd);
    l->fd = l->stopfd = -1;
    return rc;
}

int sidelisten_accept(sidelisten *l, struct sockaddr_storage *peer)
{
    for (;;) {
        struct pollfd p[2] = {{.fd = l->fd, .events = POLLIN},
                              {.fd = l->stopfd, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (p[1].revents & POLLIN)
            return -1;
        socklen_t sl = sizeof *peer;
        int fd = accept4(l->fd, (struct sockaddr *)peer, peer ? &sl : NULL,
                         SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0)
            return fd;
        if (errno == EMFILE || errno == ENFILE || errno == ENOMEM)
            usleep(100000);     /* do not spin on a listener we cannot serve */
    }
}

int64_t sidelisten_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int sidelisten_wait(const sidelisten *l, int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - sidelisten_now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p[2] = {{.fd = fd, .events = events},
                              {.fd = l->stopfd, .events = POLLIN}};
        int n = poll(p, 2, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || (p[1].revents & POLLIN))
            return 0;
        if (p[0].revents)
            return 1;
    }
}

int sidelisten_start(sidelisten *l, void *(*fn)(void *), void *arg)
{
    int rc = pthread_create(&l->thread, NULL, fn, arg);
    if (rc)
        return -rc;
    l->started = true;
    return 0;
}

void sidelisten_close(sidelisten *l)
{
    if (l->started) {
        uint64_t one = 1;
        if (write(l->stopfd, &one, sizeof one) < 0) {
            /* an eventfd write fails only on overflow: it is signalled */
        }
        pthread_join(l->thread, NULL);
        l->started = false;
    }
    if (l->fd >= 0)
        close(l->fd);
    if (l->stopfd >= 0)
        close(l->stopfd);
    l->fd = l->stopfd = -1;
}
