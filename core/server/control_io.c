/* core/server/control_io.c — see control_io.h. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/server/control.h"
#include "core/server/control_io.h"
#include "core/server/metrics.h"

void ctl_out_init(ctl_out *o, int fd)
{
    o->fd = fd;
    o->err = 0;
    o->n = 0;
}

void ctl_flush(ctl_out *o)
{
    size_t at = 0;
    while (at < o->n && !o->err) {
        ssize_t r = send(o->fd, o->buf + at, o->n - at, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            o->err = r < 0 ? -errno : -EPIPE;
        else
            at += (size_t)r;
    }
    o->n = 0;
}

void ctl_printf(ctl_out *o, const char *fmt, ...)
{
    if (o->err)
        return;
    for (int pass = 0; pass < 2; pass++) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(o->buf + o->n, sizeof o->buf - o->n, fmt, ap);
        va_end(ap);
        if (k < 0)
            return;
        if ((size_t)k < sizeof o->buf - o->n) {
            o->n += (size_t)k;
            return;
        }
        ctl_flush(o);       /* then once more into the empty buffer */
        if (o->err)
            return;
    }
    /* longer than the buffer: cut (no line of ours is that long) */
    o->n = sizeof o->buf - 1;
    o->buf[o->n - 1] = '\n';
}

void ctl_timeouts(int fd)
{
    struct timeval tv = {.tv_sec = CONTROL_TIMEOUT_MS / 1000,
                         .tv_usec = (CONTROL_TIMEOUT_MS % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

void ctl_close(int fd)
{
    shutdown(fd, SHUT_WR);
    struct timeval tv = {.tv_sec = 1};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[4096];
    for (size_t total = 0; total < (1u << 20);) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        total += (size_t)r;
    }
    close(fd);
}

int ctl_read_request(int fd, char *line, size_t len)
{
    size_t n = 0;
    for (;;) {
        ssize_t r = recv(fd, line + n, len - 1 - n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : -errno;
        if (r == 0)
            return -EPIPE;
        char *nl = memchr(line + n, '\n', (size_t)r);
        n += (size_t)r;
        if (nl) {
            *nl = '\0';
            if (nl > line && nl[-1] == '\r')
                nl[-1] = '\0';
            return 0;
        }
        if (n == len - 1)
            return -E2BIG;
    }
}

int ctl_split(char *line, char **argv, int max)
{
    int n = 0;
    for (char *save = NULL, *t = strtok_r(line, " \t", &save); t;
         t = strtok_r(NULL, " \t", &save)) {
        if (n == max)
            return max + 1;
        argv[n++] = t;
    }
    return n;
}

const char *ctl_usage_error(int argc, char **argv)
{
    static const struct {
        const char *name, *usage;
    } u[] = {{"who", "usage: who [USER]"}, {"kick", "usage: kick USER"},
             {"reload", "usage: reload"}, {"flush-auth-cache", "usage: flush-auth-cache"},
             {"stats", "usage: stats"}, {"users", "usage: users"},
             {"freeze", "usage: freeze USER moving|moved HOST:PORT"},
             {"thaw", "usage: thaw USER"}};
    if (argc == 0)
        return "empty request (commands: who, kick, reload, flush-auth-cache, stats, freeze, thaw)";
    for (size_t i = 0; i < sizeof u / sizeof *u; i++)
        if (!strcmp(argv[0], u[i].name))
            return u[i].usage;
    return "unknown command (commands: who, kick, reload, flush-auth-cache, stats, freeze, thaw)";
}

void ctl_reader_init(ctl_reader *r, int fd)
{
    r->fd = fd;
    r->pos = r->len = 0;
    r->eof = false;
}

char *ctl_reader_line(ctl_reader *r)
{
    for (;;) {
        char *nl = memchr(r->buf + r->pos, '\n', r->len - r->pos);
        if (nl) {
            *nl = '\0';
            char *line = r->buf + r->pos;
            r->pos = (size_t)(nl - r->buf) + 1;
            return line;
        }
        if (r->eof)
            return NULL;
        if (r->pos) {
            memmove(r->buf, r->buf + r->pos, r->len - r->pos);
            r->len -= r->pos;
            r->pos = 0;
        }
        if (r->len == sizeof r->buf) {     /* a line longer than ours */
            r->eof = true;
            return NULL;
        }
        ssize_t k = recv(r->fd, r->buf + r->len, sizeof r->buf - r->len, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            r->eof = true;
            return NULL;
        }
        r->len += (size_t)k;
    }
}

void ctl_row_free(ctl_row *r)
{
    free(r->user);
    free(r->mbox);
    r->user = r->mbox = NULL;
}

int ctl_row_cmp(const void *a, const void *b)
{
    const ctl_row *x = a, *y = b;
    int c = strcmp(x->user, y->user);
    if (c)
        return c;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* A name in a TAB-separated line: control characters become '?'. */
static void clean(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}

void ctl_row_write(ctl_out *o, const ctl_row *r)
{
    clean(r->user);
    clean(r->mbox);
    ctl_printf(o, "%s\t%s\t%s\t%s\t%s\t%s\t%llu\t%s\t%u.%u\t%llu\n", r->user, r->peer,
               r->tls ? "tls" : "-", r->deflate ? "deflate" : "-", r->state, r->mbox,
               (unsigned long long)r->idle_s, r->idle ? "idle" : "-", r->slot, r->worker,
               (unsigned long long)r->age_s);
}

bool control_peer_ok(int fd, uid_t also, uid_t *peer)
{
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
        *peer = (uid_t)-1;
        return false;
    }
    *peer = cr.uid;
    return cr.uid == 0 || cr.uid == geteuid() || (also != (uid_t)-1 && cr.uid == also);
}

int control_bind(const char *path, uid_t uid, gid_t gid)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return -EEXIST;
        /* A socket: another server's, or one left by a server that died. */
        int t = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (t >= 0 && connect(t, (struct sockaddr *)&sa, sizeof sa) == 0) {
            close(t);
            return -EADDRINUSE;
        }
        if (t >= 0)
            close(t);
        unlink(path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* Nobody may connect before the mode is 0600: it is set before listen,
     * and a connect before listen is refused. */
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    if (chmod(path, 0600) < 0 ||
        ((uid != (uid_t)-1 || gid != (gid_t)-1) && chown(path, uid, gid) < 0) ||
        listen(fd, 64) < 0) {
        int rc = -errno;
        close(fd);
        unlink(path);
        return rc;
    }
    return fd;
}

/* ---- the admin connections ---- */

_Static_assert(CONTROL_MAX_CLIENTS <= 64, "ctl_clients.fd holds them");

void ctl_clients_init(ctl_clients *cs, uid_t also_uid, ctl_handler handle, void *ctx)
{
    memset(cs, 0, sizeof *cs);
    pthread_mutex_init(&cs->lock, NULL);
    pthread_cond_init(&cs->cond, NULL);
    for (size_t i = 0; i < sizeof cs->fd / sizeof *cs->fd; i++)
        cs->fd[i] = -1;
    cs->also_uid = also_uid;
    cs->handle = handle;
    cs->ctx = ctx;
}

struct ctl_conn {
    ctl_clients *cs;
    int fd;
};

static void *conn_thread(void *arg)
{
    struct ctl_conn *cc = arg;
    ctl_clients *cs = cc->cs;
    int fd = cc->fd;
    free(cc);
    ctl_out o;
    ctl_out_init(&o, fd);
    char line[CONTROL_MAX_REQUEST + 1];
    uid_t peer;
    int rc;
    if (!control_peer_ok(fd, cs->also_uid, &peer))
        ctl_printf(&o, "ERR permission denied: uid %u may not use the control socket\n",
                   (unsigned)peer);
    else if ((rc = ctl_read_request(fd, line, sizeof line)) < 0)
        ctl_printf(&o, "ERR %s\n", rc == -E2BIG ? "request too long"
                   : rc == -EAGAIN ? "no request in time" : "no request");
    else
        cs->handle(cs->ctx, &o, line);
    ctl_flush(&o);
    /* Out of the list before the close: ctl_clients_stop never touches a
     * descriptor number that may have been reused. */
    pthread_mutex_lock(&cs->lock);
    for (size_t i = 0; i < sizeof cs->fd / sizeof *cs->fd; i++)
        if (cs->fd[i] == fd)
            cs->fd[i] = -1;
    pthread_mutex_unlock(&cs->lock);
    ctl_close(fd);
    pthread_mutex_lock(&cs->lock);
    cs->n--;
    pthread_cond_broadcast(&cs->cond);
    pthread_mutex_unlock(&cs->lock);
    return NULL;
}

void ctl_clients_serve(ctl_clients *cs, int fd)
{
    ctl_timeouts(fd);
    pthread_mutex_lock(&cs->lock);
    size_t slot = sizeof cs->fd / sizeof *cs->fd;
    if (!cs->stopping && cs->n < CONTROL_MAX_CLIENTS)
        for (slot = 0; cs->fd[slot] >= 0; slot++)
            ;
    bool room = slot < sizeof cs->fd / sizeof *cs->fd;
    if (room) {
        cs->fd[slot] = fd;
        cs->n++;
    }
    pthread_mutex_unlock(&cs->lock);
    struct ctl_conn *cc = room ? malloc(sizeof *cc) : NULL;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    bool ok = false;
    if (cc) {
        cc->cs = cs;
        cc->fd = fd;
        ok = pthread_create(&t, &at, conn_thread, cc) == 0;
        if (!ok)
            free(cc);
    }
    pthread_attr_destroy(&at);
    if (ok)
        return;
    if (room) {
        pthread_mutex_lock(&cs->lock);
        cs->fd[slot] = -1;
        cs->n--;
        pthread_mutex_unlock(&cs->lock);
    }
    static const char busy[] = "ERR too many admin connections at once\n";
    ssize_t r = send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)r;
    close(fd);
}

void ctl_clients_stop(ctl_clients *cs)
{
    pthread_mutex_lock(&cs->lock);
    cs->stopping = true;
    for (size_t i = 0; i < sizeof cs->fd / sizeof *cs->fd; i++)
        if (cs->fd[i] >= 0)
            shutdown(cs->fd[i], SHUT_RDWR);
    while (cs->n)
        pthread_cond_wait(&cs->cond, &cs->lock);
    pthread_mutex_unlock(&cs->lock);
    pthread_mutex_destroy(&cs->lock);
    pthread_cond_destroy(&cs->cond);
}

void ctl_metrics(ctl_out *o)
{
    char *text;
    size_t len;
    if (metrics_render(&text, &len) < 0) {
        ctl_printf(o, "# metrics: out of memory\n");
        return;
    }
    for (char *l = text, *end = text + len; l < end;) {
        char *nl = memchr(l, '\n', (size_t)(end - l));
        size_t n = nl ? (size_t)(nl - l) : (size_t)(end - l);
        if (n && l[0] != '#')
            ctl_printf(o, "%.*s\n", (int)n, l);
        l += n + 1;
    }
    free(text);
}
