/* core/server/control_io.h — what the control socket's two ends inside
 * ringmaild share (control.c in a server, control_relay.c in the
 * supervisor): buffered answers, reading a request or an answer line, the
 * rows of `who`, the socket's permissions. */
#ifndef RINGMAIL_CORE_SERVER_CONTROL_IO_H
#define RINGMAIL_CORE_SERVER_CONTROL_IO_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* An answer being written to fd; after the first failed write the rest is
 * dropped (err set). */
typedef struct ctl_out {
    int fd;
    int err;
    size_t n;
    char buf[16384];
} ctl_out;

void ctl_out_init(ctl_out *o, int fd);
void ctl_printf(ctl_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ctl_flush(ctl_out *o);
/* The metrics counters of the whole server (metrics_render: every process
 * of a supervisor shares them), one Prometheus sample line each
 * ("name{labels} value"), without the # HELP and # TYPE lines, which
 * would read as notes here. */
void ctl_metrics(ctl_out *o);
/* Send and receive timeouts of CONTROL_TIMEOUT_MS on a connection. */
void ctl_timeouts(int fd);
/* End a connection after the answer: what the client sent beyond its
 * request is read and dropped first (a little, for a second at most), so
 * that the close does not reset the connection before the client has
 * read the answer (ERR request too long). */
void ctl_close(int fd);
/* One request line (without "\n", NUL-terminated): 0, -E2BIG if longer
 * than len - 1, -EAGAIN on the timeout, -EPIPE at EOF before "\n". */
int ctl_read_request(int fd, char *line, size_t len);
/* Split line at blanks into at most max words; returns how many (max + 1
 * when there are more). */
int ctl_split(char *line, char **argv, int max);
/* The message of an unknown command or bad arguments. */
const char *ctl_usage_error(int argc, char **argv);

/* The admin connections being served, a thread each (at most
 * CONTROL_MAX_CLIENTS).  A connection's thread checks the peer (root, our
 * user or also_uid), reads the request and calls handle(ctx, o, line),
 * which writes the whole answer to o. */
typedef void (*ctl_handler)(void *ctx, ctl_out *o, char *line);
typedef struct ctl_clients {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned n;
    int fd[64];                 /* >= CONTROL_MAX_CLIENTS; -1 free */
    bool stopping;
    uid_t also_uid;
    ctl_handler handle;
    void *ctx;
} ctl_clients;
void ctl_clients_init(ctl_clients *cs, uid_t also_uid, ctl_handler handle, void *ctx);
/* Serve fd (taken over) in a thread of its own; refused with an ERR line
 * when too many are served already. */
void ctl_clients_serve(ctl_clients *cs, int fd);
/* Interrupt the connections still served (their reads and writes fail)
 * and wait for their threads to end. */
void ctl_clients_stop(ctl_clients *cs);

/* Lines of an answer, one at a time (the supervisor reading a server). */
typedef struct ctl_reader {
    int fd;
    size_t pos, len;
    bool eof;
    char buf[65536];
} ctl_reader;
void ctl_reader_init(ctl_reader *r, int fd);
/* The next line without its "\n" (NUL-terminated, valid until the next
 * call), or NULL at EOF, on an error or the timeout. */
char *ctl_reader_line(ctl_reader *r);

/* One session in `who`. */
typedef struct ctl_row {
    char *user, *mbox;          /* malloc'd */
    char peer[64];
    const char *state;          /* static */
    uint64_t id, idle_s, age_s;
    unsigned slot, worker;
    bool tls, deflate, idle;
} ctl_row;
void ctl_row_free(ctl_row *r);
/* By user, then by session id. */
int ctl_row_cmp(const void *a, const void *b);
void ctl_row_write(ctl_out *o, const ctl_row *r);

#endif
