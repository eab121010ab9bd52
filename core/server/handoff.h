/* core/server/handoff.h — what a server process tells its supervisor
 * (processes > 1) over their SOCK_SEQPACKET socket: that it is up, that it
 * has done a SIGHUP's reload, and which listening sockets it holds, so that
 * the supervisor keeps them for the next process of that slot
 * (net_server_inherit); and, the other way over a slot's own channel, the
 * control socket's requests (control.h). */
#ifndef RINGMAIL_CORE_SERVER_HANDOFF_H
#define RINGMAIL_CORE_SERVER_HANDOFF_H

#include <stddef.h>

enum { HANDOFF_UP = 1, HANDOFF_FDS = 2, HANDOFF_RELOADED = 3, HANDOFF_CONTROL = 4,
       HANDOFF_CHANNEL = 5 };
/* fds per message: under the kernel's SCM_MAX_FD (253) */
#define HANDOFF_CHUNK 200
/* sockets a slot may hand over: listeners × workers, with room */
#define HANDOFF_MAX_FDS 65536

/* One message.  For HANDOFF_FDS, fds[0..nfds) are sockets numbered
 * first.. of total that the slot holds; they are the receiver's to
 * close. */
typedef struct handoff_msg {
    int kind;
    unsigned slot;
    size_t first, total, nfds;
    int fds[HANDOFF_CHUNK];
} handoff_msg;

int handoff_send_up(int sock, unsigned slot);
/* The reload a SIGHUP asked for is over (done or failed: the log says). */
int handoff_send_reloaded(int sock, unsigned slot);
/* All of fds[0..n), in chunks (a message carries at most a few hundred). */
int handoff_send_fds(int sock, unsigned slot, const int *fds, size_t n);
/* Supervisor -> server, over the slot's control channel: a connection
 * (fd, one end of a socketpair) to serve as if accepted on admin_socket
 * (control.h).  Never blocks: -EAGAIN when the server is not reading. */
int handoff_send_conn(int sock, unsigned slot, int fd);
/* Supervisor -> its control relay (control_relay.c): slot's channel is fd
 * (-1: the slot has no server now).  Never blocks. */
int handoff_send_channel(int sock, unsigned slot, int fd);
/* The next message: 0, -EAGAIN when none waits (sock is non-blocking),
 * -EPROTO for one that is not ours (its fds closed), -EPIPE at EOF, other
 * -errno. */
int handoff_recv(int sock, handoff_msg *m);

#endif
