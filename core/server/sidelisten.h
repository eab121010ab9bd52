/* core/server/sidelisten.h — a TCP listener served by a thread of its own
 * beside the workers (GET /metrics, users moved here): bound before the
 * server drops privileges, accepting on its thread until stopped.
 *
 * Every server process of a supervisor binds the same address
 * (SO_REUSEPORT), so any of them answers.  The thread polls the listener
 * and an eventfd; sidelisten_close writes the eventfd, joins the thread,
 * then closes both.  A serving loop may poll stopfd beside its
 * connection so that a stop ends a long exchange too. */
#ifndef RINGMAIL_CORE_SERVER_SIDELISTEN_H
#define RINGMAIL_CORE_SERVER_SIDELISTEN_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct sidelisten {
    int fd;             /* the listener, non-blocking */
    int stopfd;         /* eventfd: readable once stopped */
    int port;           /* the port bound (for port 0: the one given) */
    pthread_t thread;
    bool started;
} sidelisten;

/* The address of the setting key = spec: "host:port", "[v6]:port",
 * "localhost:port", or a bare port (127.0.0.1); a wildcard only when
 * written out (0.0.0.0, [::]).  0, or -EINVAL with a message in err. */
int sidelisten_parse(const char *key, const char *spec, struct sockaddr_storage *ss,
                     socklen_t *len, char *err, size_t errlen);
/* Bind and listen on ss.  0 or -errno (both fds closed again). */
int sidelisten_bind(sidelisten *l, const struct sockaddr_storage *ss, socklen_t len,
                    int backlog);
/* Wait for the next connection: its fd (non-blocking, close-on-exec;
 * the peer's address in *peer if not NULL), or -1 once stopped or if
 * poll fails.  A failed accept is retried (after 100 ms when out of
 * descriptors or memory, so as not to spin). */
int sidelisten_accept(sidelisten *l, struct sockaddr_storage *peer);
/* CLOCK_MONOTONIC in milliseconds: the clock of the deadlines below. */
int64_t sidelisten_now_ms(void);
/* Wait until fd has `events`, or the listener is stopped, or deadline
 * passes: 1 ready, 0 timeout or stopped. */
int sidelisten_wait(const sidelisten *l, int fd, short events, int64_t deadline);
/* Run fn(arg) on the thread.  0 or -errno. */
int sidelisten_start(sidelisten *l, void *(*fn)(void *), void *arg);
/* Stop the thread if it runs; close the fds. */
void sidelisten_close(sidelisten *l);

#endif
