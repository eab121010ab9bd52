/* core/server/control.h — the control socket (admin_socket): who is
 * connected, kick, reload, flush-auth-cache and stats for ringmail-admin.
 *
 * The protocol (one request per connection):
 *
 *   client:  a request line, at most CONTROL_MAX_REQUEST bytes, ending in
 *            "\n": a command word and its arguments separated by spaces.
 *   server:  answer lines, each ending in "\n"; a line starting with "# "
 *            is a note for the operator (a process that could not answer);
 *            then one status line, "OK" or "ERR reason", and the server
 *            closes the connection.
 *
 *   who [USER]         one line per session, sorted by user, TAB-separated:
 *                      user ("-" before login), peer address:port,
 *                      "tls" or "-", "deflate" or "-", state (noauth, auth,
 *                      selected, logout), selected mailbox ("-"), seconds
 *                      since the last command, "idle" when in IDLE or "-",
 *                      process.worker, seconds since connecting
 *   kick USER          "kicked N": USER's sessions get "* BYE [UNAVAILABLE]"
 *                      and are closed once the command they run has ended
 *   reload             what SIGHUP does (the TLS certificates): one line
 *                      per process saying what happened
 *   flush-auth-cache   "flushed N": the verified-credentials cache emptied
 *   stats              "name value" lines (control.c: stats_lines)
 *   users              the distinct users connected, sorted, one a line
 *                      (what the supervisor merges to count them in stats)
 *
 * Only root and the server's own user are served: every connection's
 * SO_PEERCRED is checked, and the socket's mode is 0600.  A request must
 * arrive within CONTROL_TIMEOUT_MS and a client that does not read its
 * answer for as long is dropped.
 *
 * Why threads and not the runtime's loops: an answer gathers from every
 * worker (net_post, each worker listing its own sessions in bounded
 * slices) and waits for them, and under processes = N the supervisor, which
 * has no runtime, relays the request to every server and merges the
 * answers (control_relay.c, in a process of its own).  A thread per admin
 * client keeps all of this,
 * and a slow admin client, off the workers: the sessions pay only for the
 * slices their worker runs. */
#ifndef RINGMAIL_CORE_SERVER_CONTROL_H
#define RINGMAIL_CORE_SERVER_CONTROL_H

#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>

#include "core/server/server.h"

#define CONTROL_MAX_REQUEST 1024
#define CONTROL_TIMEOUT_MS 10000
#define CONTROL_MAX_CLIENTS 32      /* admin connections served at once */
#define CONTROL_SLICE 256           /* sessions a worker lists per step */

typedef struct session session;

/* The process's control state (srv->ctl): the registry of sessions, per
 * worker, and the threads that serve requests.  After net_server_new. */
int control_init(imap_server *srv, unsigned slot);
/* Bind admin_socket (processes = 1): mode 0600, owned by uid/gid (the
 * user the server will run as; -1 leaves it).  Before privileges drop. */
int control_listen(imap_server *srv, const char *path, uid_t uid, gid_t gid);
/* Start serving, after net_server_start: the socket bound, and/or chan, a
 * SOCK_SEQPACKET socket over which the supervisor passes connections
 * (HANDOFF_CONTROL; taken over; -1 none). */
int control_start(imap_server *srv, int chan);
/* Stop serving and wait for the requests running; before net_server_free. */
void control_stop(imap_server *srv);
void control_fini(imap_server *srv);

/* On the session's worker: a session opens and closes. */
void control_reg_add(session *s);
void control_reg_del(session *s);
/* A kicked session that has no command running gets its BYE and goes to
 * ST_LOGOUT (the caller closes it). */
void control_kick_due(session *s);

/* What SIGHUP does: re-read the certificates.  One line in msg; -errno
 * when something failed. */
int control_reload(net_tls *tls, char *msg, size_t len);

/* A connection's peer may use the control socket: root, our own user or
 * `also` (the service user, for the supervisor that runs as root). */
bool control_peer_ok(int fd, uid_t also, uid_t *peer);
/* Bind a Unix stream socket at path, 0600, chown'd to uid/gid when those
 * are not -1.  A stale socket is replaced; a live one (a server answers
 * there) is -EADDRINUSE; another file -EEXIST.  Returns the fd or -errno. */
int control_bind(const char *path, uid_t uid, gid_t gid);

/* ---- processes = N: the supervisor (control_relay.c) ---- */

typedef struct control_link control_link;
/* Bind path (0600, owned by uid/gid when not -1) and start the relay
 * process on it, which serves every request by asking each slot's server
 * over its channel and merging the answers.  mask: the signal mask it runs
 * with (the supervisor's blocks the signals it reads from a signalfd). */
int control_link_start(const char *path, uid_t uid, gid_t gid, unsigned nslots,
                       const sigset_t *mask, control_link **out);
/* The supervisor's end of slot's channel (taken over; -1: the slot's
 * server is not running). */
void control_link_channel(control_link *l, unsigned slot, int fd);
/* SIGCHLD: true when pid was the relay (then started again, unless
 * stopping). */
bool control_link_reaped(control_link *l, pid_t pid, int status);
/* In a forked server: close the link's descriptors. */
void control_link_forget(control_link *l);
/* After the servers stopped: end the relay and wait for it. */
void control_link_stop(control_link *l);

#endif
