/* core/server/handoff.c — server → supervisor messages (handoff.h).
 *
 * A message is a fixed header; HANDOFF_FDS carries its sockets as
 * SCM_RIGHTS.  SOCK_SEQPACKET keeps each message whole, so the servers of
 * every slot can share one socket to the supervisor. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/server/handoff.h"

struct wire {
    uint32_t kind, slot, first, total;
};

static int send_one(int sock, const struct wire *w, const int *fds, size_t n, int flags)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * HANDOFF_CHUNK)];
    } c;
    struct iovec iov = {.iov_base = (void *)w, .iov_len = sizeof *w};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (n) {
        memset(&c, 0, sizeof c);
        mh.msg_control = c.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * n);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * n);
    }
    ssize_t r;
    do
        r = sendmsg(sock, &mh, MSG_NOSIGNAL | flags);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

int handoff_send_up(int sock, unsigned slot)
{
    struct wire w = {.kind = HANDOFF_UP, .slot = slot};
    return send_one(sock, &w, NULL, 0, 0);
}

int handoff_send_reloaded(int sock, unsigned slot)
{
    struct wire w = {.kind = HANDOFF_RELOADED, .slot = slot};
    return send_one(sock, &w, NULL, 0, 0);
}

int handoff_send_fds(int sock, unsigned slot, const int *fds, size_t n)
{
    struct wire w = {.kind = HANDOFF_FDS, .slot = slot, .total = (uint32_t)n};
    size_t at = 0;
    do {
        size_t k = n - at < HANDOFF_CHUNK ? n - at : HANDOFF_CHUNK;
        w.first = (uint32_t)at;
        int rc = send_one(sock, &w, fds + at, k, 0);
        if (rc < 0)
            return rc;
        at += k;
    } while (at < n);
    return 0;
}

int handoff_send_conn(int sock, unsigned slot, int fd)
{
    struct wire w = {.kind = HANDOFF_CONTROL, .slot = slot, .total = 1};
    return send_one(sock, &w, &fd, 1, MSG_DONTWAIT);
}

int handoff_send_channel(int sock, unsigned slot, int fd)
{
    struct wire w = {.kind = HANDOFF_CHANNEL, .slot = slot, .total = fd >= 0};
    return send_one(sock, &w, &fd, fd >= 0, MSG_DONTWAIT);
}

int handoff_recv(int sock, handoff_msg *m)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * HANDOFF_CHUNK)];
    } c;
    struct wire w;
    struct iovec iov = {.iov_base = &w, .iov_len = sizeof w};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf,
                        .msg_controllen = sizeof c.buf};
    ssize_t r;
    do
        r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    if (r == 0)
        return -EPIPE;
    memset(m, 0, sizeof *m);
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
            if (m->nfds < HANDOFF_CHUNK)
                m->fds[m->nfds++] = fd;
            else
                close(fd);
        }
    }
    bool ok = r == (ssize_t)sizeof w && !(mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) &&
              (w.kind == HANDOFF_UP || w.kind == HANDOFF_RELOADED ? m->nfds == 0
               : w.kind == HANDOFF_CONTROL ? m->nfds == 1
               : w.kind == HANDOFF_CHANNEL ? m->nfds <= 1
               : w.kind == HANDOFF_FDS && w.first <= w.total && m->nfds <= w.total - w.first);
    if (!ok) {
        for (size_t i = 0; i < m->nfds; i++)
            close(m->fds[i]);
        m->nfds = 0;
        return -EPROTO;
    }
    m->kind = (int)w.kind;
    m->slot = w.slot;
    m->first = w.first;
    m->total = w.total;
    return 0;
}
