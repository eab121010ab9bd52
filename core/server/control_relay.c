/* core/server/control_relay.c — the control socket under processes = N
 * (control.h).
 *
 * The supervisor binds admin_socket (one path, whatever N is) and hands it
 * to a process of its own, the relay, which serves each admin connection
 * in a thread: it checks the peer, reads the request, and asks every
 * running server by passing it one end of a new
 * socketpair over the slot's control channel (HANDOFF_CONTROL), on which
 * the server answers as it would a client of its own socket.  A fresh pair
 * per request and per server means no answer can ever be mistaken for
 * another's, requests from several admins run side by side, and a server
 * that dies mid-answer is an EOF on its pair only.  The answers are then
 * merged: `who` and `users` by a merge of the sorted streams (nothing is
 * held but one line per server), kick and flush-auth-cache by a sum, stats
 * by summing each "name value" line.  A slot whose server is not running
 * (restarting) is skipped with a "# " note.
 *
 * Why not bind the socket in every server: a Unix socket is one file,
 * which N processes cannot each bind (as for LMTP), and an answer from a
 * single process would show only its own sessions.  Why a process and not
 * threads in the supervisor: the supervisor forks the servers, and a fork
 * while another thread holds a lock (the allocator's, a sanitizer's) hands
 * the child a lock nobody will release; so the supervisor stays single-
 * threaded and tells the relay over a socket which channel each slot has
 * (HANDOFF_CHANNEL), and starts it again should it die. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/base/log.h"
#include "core/server/control.h"
#include "core/server/control_io.h"
#include "core/server/handoff.h"

typedef struct control_relay control_relay;

struct control_relay {
    int lfd;
    char path[108];
    unsigned n;
    uint64_t started_ms;
    pthread_mutex_t lock;
    int *chan;                  /* per slot; -1: not running */
    ctl_clients clients;
    int stop[2];
    pthread_t thr;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* One server's answer. */
struct src {
    ctl_reader rd;
    bool live;                  /* answering; false once OK/ERR/EOF */
    char *head;                 /* the current data line (in rd) */
    char err[256];              /* its "ERR ..." reason, if any */
};

static bool request_ok(int argc, char **argv)
{
    if (argc < 1)
        return false;
    const char *c = argv[0];
    if (!strcmp(c, "who"))
        return argc <= 2;
    if (!strcmp(c, "kick") || !strcmp(c, "thaw"))
        return argc == 2;
    if (!strcmp(c, "freeze"))
        return argc == 4;
    return argc == 1 && (!strcmp(c, "reload") || !strcmp(c, "flush-auth-cache") ||
                         !strcmp(c, "stats") || !strcmp(c, "users"));
}

/* Ask every running server `req`; notes about those that cannot answer
 * go to o.  Returns how many answer. */
static unsigned ask_all(control_relay *r, const char *req, struct src *s, ctl_out *o)
{
    unsigned live = 0;
    for (unsigned i = 0; i < r->n; i++) {
        s[i].live = false;
        s[i].head = NULL;
        s[i].err[0] = '\0';
        s[i].rd.fd = -1;
        pthread_mutex_lock(&r->lock);
        int ch = r->chan[i] >= 0 ? dup(r->chan[i]) : -1;
        pthread_mutex_unlock(&r->lock);
        if (ch < 0) {
            ctl_printf(o, "# process %u is not running (restarting): not included\n", i);
            continue;
        }
        int sp[2];
        int rc = socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0 ? -errno : 0;
        if (rc == 0) {
            rc = handoff_send_conn(ch, i, sp[1]);
            close(sp[1]);
            if (rc < 0)
                close(sp[0]);
        }
        close(ch);
        if (rc < 0) {
            ctl_printf(o, "# process %u does not answer (%s): not included\n", i,
                       strerror(-rc));
            continue;
        }
        ctl_timeouts(sp[0]);
        size_t len = strlen(req);
        if (send(sp[0], req, len, MSG_NOSIGNAL) != (ssize_t)len ||
            send(sp[0], "\n", 1, MSG_NOSIGNAL) != 1) {
            ctl_printf(o, "# process %u does not answer: not included\n", i);
            close(sp[0]);
            continue;
        }
        ctl_reader_init(&s[i].rd, sp[0]);
        s[i].live = true;
        live++;
    }
    return live;
}

/* The next data line of s (NULL at its end: OK, ERR or a broken stream);
 * notes are passed on to o. */
static char *next_line(struct src *s, unsigned i, ctl_out *o)
{
    while (s->live) {
        char *l = ctl_reader_line(&s->rd);
        if (!l) {
            /* it died (and is restarting), or took longer than the timeout:
             * like a process that is not running, a note */
            ctl_printf(o, "# process %u stopped answering: its part is missing\n", i);
            s->live = false;
        } else if (!strncmp(l, "# ", 2)) {
            ctl_printf(o, "%s\n", l);
        } else if (!strcmp(l, "OK")) {
            s->live = false;
        } else if (!strncmp(l, "ERR", 3)) {
            snprintf(s->err, sizeof s->err, "%s", l[3] ? l + 4 : "failed");
            s->live = false;
        } else {
            return l;
        }
    }
    return NULL;
}

static void close_all(control_relay *r, struct src *s)
{
    for (unsigned i = 0; i < r->n; i++)
        if (s[i].rd.fd >= 0) {
            close(s[i].rd.fd);
            s[i].rd.fd = -1;
        }
}

static int key_cmp(const char *a, const char *b)
{
    size_t la = strcspn(a, "\t"), lb = strcspn(b, "\t");
    int c = memcmp(a, b, la < lb ? la : lb);
    return c ? c : la < lb ? -1 : la > lb;
}

/* who, users: merge the sorted answers.  users: each name once; *distinct
 * counts them.  The first error of a server, if any, in err. */
static void merge_sorted(control_relay *r, struct src *s, ctl_out *o, bool users,
                         bool print, unsigned long long *distinct, char *err, size_t errlen)
{
    char *last = NULL;          /* users: the name written last */
    for (unsigned i = 0; i < r->n; i++)
        s[i].head = next_line(&s[i], i, o);
    for (;;) {
        int best = -1;
        for (unsigned i = 0; i < r->n; i++)
            if (s[i].head && (best < 0 || key_cmp(s[i].head, s[best].head) < 0))
                best = (int)i;
        if (best < 0)
            break;
        char *l = s[best].head;
        if (!users || !last || strcmp(l, last)) {
            if (print)
                ctl_printf(o, "%s\n", l);
            if (users) {
                (*distinct)++;
                free(last);
                last = strdup(l);   /* out of memory: a name may count twice */
            }
        }
        s[best].head = next_line(&s[best], (unsigned)best, o);
    }
    free(last);
    for (unsigned i = 0; i < r->n && !err[0]; i++)
        if (s[i].err[0])
            snprintf(err, errlen, "%s", s[i].err);
}

/* The number after the word of each server's one line, summed. */
static void merge_sum(control_relay *r, struct src *s, ctl_out *o, const char *word,
                      char *err, size_t errlen)
{
    unsigned long long sum = 0;
    for (unsigned i = 0; i < r->n; i++) {
        char *l;
        while ((l = next_line(&s[i], i, o)))
            if (!strncmp(l, word, strlen(word)))
                sum += strtoull(l + strlen(word), NULL, 10);
        if (s[i].err[0] && !err[0])
            snprintf(err, errlen, "%s", s[i].err);
    }
    ctl_printf(o, "%s %llu\n", word, sum);
}

#define STATS_MAX 256

/* stats: "name value" lines summed by name (in the order the first server
 * gave them); "process" and "worker" lines kept; uptime_seconds is the
 * supervisor's, processes how many answered, users counted over all of
 * them (a second round: the merge of `users`). */
static void merge_stats(control_relay *r, struct src *s, ctl_out *o, unsigned live,
                        char *err, size_t errlen)
{
    struct {
        char name[128];
        unsigned long long v;
    } *sum = calloc(STATS_MAX, sizeof *sum);
    size_t nsum = 0;
    char **keep = NULL;
    size_t nkeep = 0;
    for (unsigned i = 0; i < r->n; i++) {
        char *l;
        while ((l = next_line(&s[i], i, o))) {
            if (!strncmp(l, "process ", 8) || !strncmp(l, "worker ", 7)) {
                char **nk = realloc(keep, (nkeep + 1) * sizeof *keep);
                if (nk && (nk[nkeep] = strdup(l)))
                    nkeep++;
                if (nk)
                    keep = nk;
                continue;
            }
            char *sp = strrchr(l, ' ');
            if (!sp || !sum)
                continue;
            *sp = '\0';
            size_t k = 0;
            while (k < nsum && strcmp(sum[k].name, l))
                k++;
            if (k == nsum && nsum < STATS_MAX)
                snprintf(sum[nsum++].name, sizeof sum->name, "%s", l);
            if (k < nsum)
                sum[k].v += strtoull(sp + 1, NULL, 10);
        }
        if (s[i].err[0] && !err[0])
            snprintf(err, errlen, "%s", s[i].err);
    }
    close_all(r, s);
    unsigned long long users = 0;
    char uerr[256] = "";
    ctl_out none;               /* the users round prints nothing */
    ctl_out_init(&none, -1);
    none.err = -EPIPE;
    if (ask_all(r, "users", s, &none))
        merge_sorted(r, s, &none, true, false, &users, uerr, sizeof uerr);
    close_all(r, s);
    for (size_t k = 0; sum && k < nsum; k++) {
        unsigned long long v = sum[k].v;
        if (!strcmp(sum[k].name, "processes"))
            v = live;
        else if (!strcmp(sum[k].name, "uptime_seconds"))
            v = (mono_ms() - r->started_ms) / 1000;
        else if (!strcmp(sum[k].name, "users"))
            v = users;
        ctl_printf(o, "%s %llu\n", sum[k].name, v);
    }
    for (size_t k = 0; k < nkeep; k++) {
        ctl_printf(o, "%s\n", keep[k]);
        free(keep[k]);
    }
    free(keep);
    free(sum);
    ctl_metrics(o);     /* the shared counters: once for all the servers */
}

static void relay_request(void *ctx, ctl_out *o, char *line)
{
    control_relay *r = ctx;
    char req[CONTROL_MAX_REQUEST + 1];
    snprintf(req, sizeof req, "%s", line);
    char *argv[4];
    int argc = ctl_split(line, argv, 4);
    if (!request_ok(argc, argv)) {
        ctl_printf(o, "ERR %s\n", ctl_usage_error(argc, argv));
        return;
    }
    struct src *s = calloc(r->n, sizeof *s);
    if (!s) {
        ctl_printf(o, "ERR out of memory\n");
        return;
    }
    for (unsigned i = 0; i < r->n; i++)
        s[i].rd.fd = -1;
    char err[256] = "";
    unsigned live = ask_all(r, req, s, o);
    const char *cmd = argv[0];
    if (!live) {
        snprintf(err, sizeof err, "no server process answers");
    } else if (!strcmp(cmd, "who") || !strcmp(cmd, "users")) {
        unsigned long long d = 0;
        merge_sorted(r, s, o, !strcmp(cmd, "users"), true, &d, err, sizeof err);
    } else if (!strcmp(cmd, "kick")) {
        merge_sum(r, s, o, "kicked", err, sizeof err);
    } else if (!strcmp(cmd, "flush-auth-cache")) {
        merge_sum(r, s, o, "flushed", err, sizeof err);
    } else if (!strcmp(cmd, "stats")) {
        merge_stats(r, s, o, live, err, sizeof err);
    } else {    /* reload, freeze, thaw: each process says what it did */
        for (unsigned i = 0; i < r->n; i++) {
            char *l;
            while ((l = next_line(&s[i], i, o)))
                ctl_printf(o, "process %u: %s\n", i, l);
            if (s[i].err[0]) {
                ctl_printf(o, "process %u: %s\n", i, s[i].err);
                if (!err[0])
                    snprintf(err, sizeof err, "%s", s[i].err);
            }
        }
    }
    close_all(r, s);
    free(s);
    if (err[0])
        ctl_printf(o, "ERR %s\n", err);
    else
        ctl_printf(o, "OK\n");
}

static void *relay_accept(void *arg)
{
    control_relay *r = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = r->stop[0], .events = POLLIN},
                              {.fd = r->lfd, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return NULL;
        }
        if (p[0].revents)
            return NULL;
        if (!(p[1].revents & POLLIN))
            continue;
        int fd = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0)
            ctl_clients_serve(&r->clients, fd);
    }
}

/* The relay process: serve admin connections on lfd (threads) while the
 * supervisor tells over sup which channel each slot has; exit once the
 * supervisor closes sup. */
static int relay_main(int lfd, const char *path, uid_t also, unsigned nslots, int sup)
{
    control_relay *r = calloc(1, sizeof *r);
    int *chan = malloc(nslots * sizeof *chan);
    if (!r || !chan || pipe2(r->stop, O_CLOEXEC) < 0)
        return 1;
    r->chan = chan;
    for (unsigned i = 0; i < nslots; i++)
        r->chan[i] = -1;
    r->n = nslots;
    r->lfd = lfd;
    r->started_ms = mono_ms();
    snprintf(r->path, sizeof r->path, "%s", path);
    pthread_mutex_init(&r->lock, NULL);
    ctl_clients_init(&r->clients, also, relay_request, r);
    if (pthread_create(&r->thr, NULL, relay_accept, r) != 0)
        return 1;
    for (;;) {
        handoff_msg m;
        int rc = handoff_recv(sup, &m);
        if (rc == -EPROTO)
            continue;
        if (rc < 0)
            break;      /* EOF: the supervisor stops (or died) */
        if (m.kind != HANDOFF_CHANNEL || m.slot >= r->n) {
            for (size_t i = 0; i < m.nfds; i++)
                close(m.fds[i]);
            continue;
        }
        pthread_mutex_lock(&r->lock);
        int old = r->chan[m.slot];
        r->chan[m.slot] = m.nfds ? m.fds[0] : -1;
        pthread_mutex_unlock(&r->lock);
        if (old >= 0)
            close(old);
    }
    ssize_t k = write(r->stop[1], "x", 1);
    (void)k;
    pthread_join(r->thr, NULL);
    /* Requests running end: the servers have stopped (their pairs give
     * EOF), and the admin connections are shut down. */
    ctl_clients_stop(&r->clients);
    for (unsigned i = 0; i < r->n; i++)
        if (r->chan[i] >= 0)
            close(r->chan[i]);
    close(r->lfd);
    unlink(r->path);
    close(r->stop[0]);
    close(r->stop[1]);
    close(sup);
    pthread_mutex_destroy(&r->lock);
    free(r->chan);
    free(r);
    return 0;
}

/* ---- the supervisor's side ---- */

struct control_link {
    char path[108];
    uid_t uid;
    gid_t gid;
    unsigned n;
    int *chan;                  /* the supervisor's copies, to restart the relay */
    sigset_t mask;              /* the signal mask the relay runs with */
    pid_t pid;                  /* the relay process; 0 none */
    int sock;                   /* to it */
    bool stopping;
};

/* Close every descriptor from 3 up but keep[0..n) (sorted). */
static void close_all_but(const int *keep, size_t n)
{
    unsigned from = 3;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned)keep[i] > from)
            close_range(from, (unsigned)keep[i] - 1, 0);
        if ((unsigned)keep[i] >= from)
            from = (unsigned)keep[i] + 1;
    }
    close_range(from, ~0u, 0);
}

static int link_spawn(control_link *l)
{
    int lfd = control_bind(l->path, l->uid, l->gid);
    if (lfd < 0)
        return lfd;
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
        int rc = -errno;
        close(lfd);
        unlink(l->path);
        return rc;
    }
    pid_t sup = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int rc = -errno;
        close(lfd);
        unlink(l->path);
        close(sp[0]);
        close(sp[1]);
        return rc;
    }
    if (pid == 0) {
        /* Nothing of the supervisor's: not its listening sockets (a
         * duplicate would keep a socket the supervisor closes open), not
         * the servers' channels (it gets its own copies below). */
        int keep[2] = {lfd < sp[1] ? lfd : sp[1], lfd < sp[1] ? sp[1] : lfd};
        close_all_but(keep, 2);
        signal(SIGHUP, SIG_IGN);    /* the supervisor's business */
        signal(SIGINT, SIG_IGN);
        signal(SIGPIPE, SIG_IGN);
        sigprocmask(SIG_SETMASK, &l->mask, NULL);
        prctl(PR_SET_NAME, "ringmaild-ctl");
        /* It reads what admin clients send: no need for root, so not as
         * root; the servers' user (who may use the socket anyway). */
        if (l->uid != (uid_t)-1 && geteuid() == 0) {
            gid_t g = l->gid != (gid_t)-1 ? l->gid : (gid_t)l->uid;
            if (setgroups(1, &g) < 0 || setgid(g) < 0 || setuid(l->uid) < 0)
                _exit(1);
        }
        /* after the uid change, which clears it */
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != sup)
            _exit(1);
        _exit(relay_main(lfd, l->path, l->uid, l->n, sp[1]));
    }
    close(lfd);
    close(sp[1]);
    l->pid = pid;
    l->sock = sp[0];
    for (unsigned i = 0; i < l->n; i++)
        if (l->chan[i] >= 0)
            handoff_send_channel(l->sock, i, l->chan[i]);
    return 0;
}

int control_link_start(const char *path, uid_t uid, gid_t gid, unsigned nslots,
                       const sigset_t *mask, control_link **out)
{
    control_link *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->chan = malloc(nslots * sizeof *l->chan);
    if (!l->chan || strlen(path) >= sizeof l->path) {
        int rc = l->chan ? -ENAMETOOLONG : -ENOMEM;
        free(l->chan);
        free(l);
        return rc;
    }
    for (unsigned i = 0; i < nslots; i++)
        l->chan[i] = -1;
    snprintf(l->path, sizeof l->path, "%s", path);
    l->uid = uid;
    l->gid = gid;
    l->n = nslots;
    l->mask = *mask;
    l->sock = -1;
    int rc = link_spawn(l);
    if (rc < 0) {
        free(l->chan);
        free(l);
        return rc;
    }
    *out = l;
    return 0;
}

void control_link_channel(control_link *l, unsigned slot, int fd)
{
    if (!l || slot >= l->n) {
        if (fd >= 0)
            close(fd);
        return;
    }
    if (l->chan[slot] >= 0)
        close(l->chan[slot]);
    l->chan[slot] = fd;
    int rc = l->sock >= 0 ? handoff_send_channel(l->sock, slot, fd) : 0;
    if (rc < 0)
        log_msg(LOGL_WARN, 0, NULL, "supervisor: the control relay missed server %u's "
                "channel: %s", slot, strerror(-rc));
}

bool control_link_reaped(control_link *l, pid_t pid, int st)
{
    if (!l || pid != l->pid)
        return false;
    l->pid = 0;
    close(l->sock);
    l->sock = -1;
    if (l->stopping)
        return true;
    log_msg(LOGL_ERROR, 0, NULL, "supervisor: the control socket's process (pid %d) died "
            "(status %d); starting it again", (int)pid, st);
    int rc = link_spawn(l);
    if (rc < 0)
        log_msg(LOGL_ERROR, 0, NULL, "supervisor: no control socket any more: %s",
                strerror(-rc));
    return true;
}

void control_link_forget(control_link *l)
{
    if (!l)
        return;
    for (unsigned i = 0; i < l->n; i++)
        if (l->chan[i] >= 0)
            close(l->chan[i]);
    if (l->sock >= 0)
        close(l->sock);
}

void control_link_stop(control_link *l)
{
    if (!l)
        return;
    l->stopping = true;
    if (l->sock >= 0)
        close(l->sock);     /* the relay's cue to end */
    l->sock = -1;
    if (l->pid > 0) {
        int st;
        while (waitpid(l->pid, &st, 0) < 0 && errno == EINTR)
            ;
    }
    for (unsigned i = 0; i < l->n; i++)
        if (l->chan[i] >= 0)
            close(l->chan[i]);
    free(l->chan);
    free(l);
}
