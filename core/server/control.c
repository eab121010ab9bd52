/* core/server/control.c — the control socket in a server process
 * (control.h): the registry of sessions, the commands, and the threads
 * that serve admin connections.
 *
 * The registry is a list per worker, touched only on that worker (a
 * session is added in on_open and removed in on_close), so the command
 * path takes no lock.  A request reaches the sessions with net_post: the
 * worker lists at most CONTROL_SLICE of its own sessions per step from a
 * cursor it keeps in its registry (a closing session moves the cursors
 * that point at it), so a listing of 100k sessions is many short steps
 * between which the worker serves its connections. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/auth/authpool.h"
#include "core/base/log.h"
#include "core/server/control.h"
#include "core/server/control_io.h"
#include "core/server/handoff.h"
#include "core/server/session.h"
#include "store/store.h"

#define REG_CURSORS 16      /* listings running at once on one worker */

struct sess_reg {
    session *head, *tail;
    session *cur[REG_CURSORS];  /* the next session of each listing */
    bool used[REG_CURSORS];
    char pad[64];               /* one cache line per worker */
};

struct control {
    imap_server *srv;
    unsigned slot, nworkers;
    struct sess_reg *reg;
    uint64_t started_ms;
    char path[108];             /* the socket bound ("" none) */
    int lfd, chan;
    int stop[2];
    pthread_t thr;
    bool running;
    pthread_mutex_t lock;
    pthread_cond_t cond;        /* a job is done */
    ctl_clients clients;
    bool clients_on;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- the registry (on the workers) --------------------------------------- */

int control_init(imap_server *srv, unsigned slot)
{
    struct control *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->srv = srv;
    c->slot = slot;
    c->nworkers = net_server_workers(srv->net);
    c->reg = calloc(c->nworkers, sizeof *c->reg);
    if (!c->reg) {
        free(c);
        return -ENOMEM;
    }
    c->started_ms = mono_ms();
    c->lfd = c->chan = c->stop[0] = c->stop[1] = -1;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    srv->ctl = c;
    return 0;
}

void control_fini(imap_server *srv)
{
    struct control *c = srv->ctl;
    if (!c)
        return;
    control_stop(srv);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c->reg);
    free(c);
    srv->ctl = NULL;
}

void control_reg_add(session *s)
{
    struct control *c = s->srv->ctl;
    if (!c)
        return;
    struct sess_reg *r = &c->reg[net_conn_worker(s->conn)];
    s->reg_next = NULL;
    s->reg_prev = r->tail;
    if (r->tail)
        r->tail->reg_next = s;
    else
        r->head = s;
    r->tail = s;
}

void control_reg_del(session *s)
{
    struct control *c = s->srv->ctl;
    if (!c)
        return;
    struct sess_reg *r = &c->reg[net_conn_worker(s->conn)];
    for (unsigned i = 0; i < REG_CURSORS; i++)
        if (r->used[i] && r->cur[i] == s)
            r->cur[i] = s->reg_next;
    if (s->reg_prev)
        s->reg_prev->reg_next = s->reg_next;
    else
        r->head = s->reg_next;
    if (s->reg_next)
        s->reg_next->reg_prev = s->reg_prev;
    else
        r->tail = s->reg_prev;
    s->reg_prev = s->reg_next = NULL;
}

void control_kick_due(session *s)
{
    if (!s->kicked || s->state == ST_LOGOUT || s->cont || s->pool_busy || s->delayed)
        return;
    /* RFC 9051 7.1.5: "[UNAVAILABLE] Temporary failure because a subsystem
     * is down"; RFC 5530 3 lists it for "the server is unable to process
     * the command... due to an administrative action". */
    log_msg(LOGL_INFO, s->id, s->user, "kicked by the administrator");
    imap_out_printf(&s->out, "* BYE [UNAVAILABLE] Disconnected by the administrator\r\n");
    sess_flush(s);
    s->state = ST_LOGOUT;
}

/* ---- jobs: work posted to a worker ---------------------------------------- */

enum job_kind { JOB_LIST, JOB_KICK };

struct job {
    struct control *ctl;
    enum job_kind kind;
    unsigned w;
    const char *user;           /* JOB_KICK: whom; JOB_LIST: filter or NULL */
    int cursor;                 /* -1 before the first step */
    bool end, done;
    int err;
    ctl_row *rows;              /* JOB_LIST appends here */
    size_t n, cap;
    unsigned count;             /* JOB_KICK */
};

static const char *state_name(sess_state st)
{
    switch (st) {
    case ST_NOAUTH: return "noauth";
    case ST_AUTH: return "auth";
    case ST_SELECTED: return "selected";
    default: return "logout";
    }
}

static void fill_row(struct control *c, unsigned w, session *s, uint64_t now, ctl_row *r)
{
    memset(r, 0, sizeof *r);
    r->id = s->id;
    r->user = strdup(s->user ? s->user : "-");
    r->mbox = strdup(s->state == ST_SELECTED && s->mbname ? s->mbname : "-");
    snprintf(r->peer, sizeof r->peer, "%s", s->peer);
    r->state = state_name(s->state);
    r->tls = net_conn_is_tls(s->conn);
    r->deflate = net_conn_is_compressed(s->conn);
    r->idle = s->wait == WAIT_IDLE;
    r->slot = c->slot;
    r->worker = w;
    r->idle_s = (now - s->last_cmd_ms) / 1000;
    r->age_s = (now - s->opened_ms) / 1000;
}

/* One step of a walk over the worker's sessions from the job's cursor:
 * at most CONTROL_SLICE rows listed or sessions kicked, and at most
 * CONTROL_SLICE * 16 sessions looked at (a filter that matches few). */
static void job_step(struct job *j, struct sess_reg *r)
{
    if (j->cursor < 0) {
        for (int i = 0; i < REG_CURSORS && j->cursor < 0; i++)
            if (!r->used[i]) {
                j->cursor = i;
                r->used[i] = true;
                r->cur[i] = r->head;
            }
        if (j->cursor < 0) {
            j->err = -EBUSY;
            j->end = true;
            return;
        }
    }
    uint64_t now = mono_ms();
    session *s = r->cur[j->cursor];
    for (unsigned k = 0, seen = 0; s && k < CONTROL_SLICE && seen < CONTROL_SLICE * 16;
         s = s->reg_next, seen++) {
        if (j->user && (!s->user || strcmp(s->user, j->user)))
            continue;
        k++;
        if (j->kind == JOB_KICK) {
            if (s->state == ST_LOGOUT)
                continue;
            j->count++;
            if (!s->kicked) {
                s->kicked = true;
                /* on_wake says BYE, or the end of its command does */
                net_wake(j->ctl->srv->net, net_conn_get_id(s->conn));
            }
            continue;
        }
        if (j->n == j->cap) {   /* the poster made room for a slice */
            j->err = -ENOMEM;
            break;
        }
        fill_row(j->ctl, j->w, s, now, &j->rows[j->n]);
        if (!j->rows[j->n].user || !j->rows[j->n].mbox) {
            ctl_row_free(&j->rows[j->n]);
            j->err = -ENOMEM;
            break;
        }
        j->n++;
    }
    r->cur[j->cursor] = s;
    if (!s || j->err) {
        r->used[j->cursor] = false;
        j->end = true;
    }
}

static void job_run(void *arg)
{
    struct job *j = arg;
    job_step(j, &j->ctl->reg[j->w]);
    pthread_mutex_lock(&j->ctl->lock);
    j->done = true;
    pthread_cond_broadcast(&j->ctl->cond);
    pthread_mutex_unlock(&j->ctl->lock);
}

/* Run j on its worker and wait.  A post the runtime accepted runs exactly
 * once, even when the server stops meanwhile (net/worker.c). */
static int job_wait(struct job *j)
{
    j->done = false;
    int rc = net_post(j->ctl->srv->net, j->w, job_run, j);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&j->ctl->lock);
    while (!j->done)
        pthread_cond_wait(&j->ctl->cond, &j->ctl->lock);
    pthread_mutex_unlock(&j->ctl->lock);
    return j->err;
}

/* Every session (of user, when not NULL) of every worker, in slices. */
static int list_all(struct control *c, const char *user, ctl_row **out, size_t *n)
{
    struct job j = {.ctl = c, .kind = JOB_LIST, .user = user};
    int rc = 0;
    for (unsigned w = 0; w < c->nworkers && rc == 0; w++) {
        j.w = w;
        j.cursor = -1;
        j.end = false;
        while (!j.end && rc == 0) {
            if (j.cap - j.n < CONTROL_SLICE) {
                size_t cap = j.cap ? j.cap * 2 : 1024;
                ctl_row *nr = realloc(j.rows, cap * sizeof *nr);
                if (!nr) {
                    rc = -ENOMEM;
                    break;
                }
                j.rows = nr;
                j.cap = cap;
            }
            rc = job_wait(&j);
        }
    }
    /* A listing cut short leaves its cursor slot taken on that worker: the
     * only such cut is the server stopping or memory running out. */
    if (rc < 0) {
        for (size_t i = 0; i < j.n; i++)
            ctl_row_free(&j.rows[i]);
        free(j.rows);
        return rc;
    }
    qsort(j.rows, j.n, sizeof *j.rows, ctl_row_cmp);
    *out = j.rows;
    *n = j.n;
    return 0;
}

static void rows_free(ctl_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ctl_row_free(&rows[i]);
    free(rows);
}

/* ---- commands ------------------------------------------------------------- */

int control_reload(net_tls *tls, char *msg, size_t len)
{
    char err[256] = "";
    if (!tls) {
        snprintf(msg, len, "no TLS configured, nothing to reload");
        return 0;
    }
    if (net_tls_reload(tls, err, sizeof err) < 0) {
        snprintf(msg, len, "certificates not reloaded: %s", err);
        return -EIO;
    }
    snprintf(msg, len, "certificates reloaded");
    return 0;
}

static void cmd_who(struct control *c, ctl_out *o, const char *user)
{
    ctl_row *rows;
    size_t n;
    int rc = list_all(c, user, &rows, &n);
    if (rc < 0) {
        ctl_printf(o, "ERR cannot list the sessions: %s\n", strerror(-rc));
        return;
    }
    for (size_t i = 0; i < n && !o->err; i++)
        ctl_row_write(o, &rows[i]);
    rows_free(rows, n);
    ctl_printf(o, "OK\n");
}

static void cmd_users(struct control *c, ctl_out *o)
{
    ctl_row *rows;
    size_t n;
    int rc = list_all(c, NULL, &rows, &n);
    if (rc < 0) {
        ctl_printf(o, "ERR cannot list the sessions: %s\n", strerror(-rc));
        return;
    }
    for (size_t i = 0; i < n && !o->err; i++)
        if (strcmp(rows[i].user, "-") && (i == 0 || strcmp(rows[i].user, rows[i - 1].user)))
            ctl_printf(o, "%s\n", rows[i].user);
    rows_free(rows, n);
    ctl_printf(o, "OK\n");
}

static void cmd_kick(struct control *c, ctl_out *o, const char *user)
{
    struct job j = {.ctl = c, .kind = JOB_KICK, .user = user};
    for (unsigned w = 0; w < c->nworkers; w++) {
        j.w = w;
        j.cursor = -1;
        j.end = false;
        while (!j.end) {
            int rc = job_wait(&j);
            if (rc < 0) {
                ctl_printf(o, "ERR %s\n", strerror(-rc));
                return;
            }
        }
    }
    log_msg(LOGL_INFO, 0, user, "control: kick: %u sessions", j.count);
    ctl_printf(o, "kicked %u\nOK\n", j.count);
}

/* The metrics counters (core/server/metrics.h) end the stats answer, one
 * sample line each (ctl_metrics). */
static void stats_metrics(struct control *c, ctl_out *o)
{
    /* Under a supervisor the counters are shared by all the servers
     * (metrics.c), so the relay prints them once for the whole server;
     * each process printing them would count them N times. */
    if (c->chan < 0)
        ctl_metrics(o);
}

/* stats: what the registry and the server know now. */
static void cmd_stats(struct control *c, ctl_out *o)
{
    ctl_row *rows;
    size_t n;
    int rc = list_all(c, NULL, &rows, &n);
    if (rc < 0) {
        ctl_printf(o, "ERR cannot list the sessions: %s\n", strerror(-rc));
        return;
    }
    unsigned long long st[4] = {0}, tls = 0, defl = 0, idle = 0, users = 0;
    unsigned long long *byw = calloc(c->nworkers, sizeof *byw);
    for (size_t i = 0; i < n; i++) {
        const ctl_row *r = &rows[i];
        st[!strcmp(r->state, "noauth") ? 0 : !strcmp(r->state, "auth") ? 1
           : !strcmp(r->state, "selected") ? 2 : 3]++;
        tls += r->tls;
        defl += r->deflate;
        idle += r->idle;
        if (strcmp(r->user, "-") && (i == 0 || strcmp(r->user, rows[i - 1].user)))
            users++;
        if (byw && r->worker < c->nworkers)
            byw[r->worker]++;
    }
    uint64_t up = (mono_ms() - c->started_ms) / 1000;
    ctl_printf(o, "processes 1\nuptime_seconds %llu\nsessions %zu\n"
               "sessions_noauth %llu\nsessions_auth %llu\nsessions_selected %llu\n"
               "sessions_logout %llu\nsessions_tls %llu\nsessions_compressed %llu\n"
               "sessions_idle %llu\nusers %llu\nauth_cache_entries %zu\n",
               (unsigned long long)up, n, st[0], st[1], st[2], st[3], tls, defl, idle, users,
               authcache_size(c->srv->authcache));
    stats_metrics(c, o);
    ctl_printf(o, "process %u pid %d workers %u sessions %zu uptime_seconds %llu\n", c->slot,
               (int)getpid(), c->nworkers, n, (unsigned long long)up);
    for (unsigned w = 0; byw && w < c->nworkers; w++)
        ctl_printf(o, "worker %u.%u sessions %llu\n", c->slot, w, byw[w]);
    free(byw);
    rows_free(rows, n);
    ctl_printf(o, "OK\n");
}

/* freeze USER moving|moved HOST:PORT (ringmail-admin user move): the
 * user's writes stop (store_user_freeze: the file is seen by every process
 * of the server, and this returns once the writes in progress have ended,
 * so every acknowledged write is in the logs). */
static void cmd_freeze(struct control *c, ctl_out *o, const char *user, const char *state,
                       const char *to)
{
    if (strcmp(state, "moving") && strcmp(state, "moved")) {
        ctl_printf(o, "ERR usage: freeze USER moving|moved HOST:PORT\n");
        return;
    }
    char why[300];
    snprintf(why, sizeof why, "%s to %s", state, to);
    int rc = store_user_freeze(c->srv->mail_root, user, why);
    log_msg(rc < 0 ? LOGL_ERROR : LOGL_INFO, 0, user, "control: freeze (%s): %s", why,
            rc < 0 ? strerror(-rc) : "writes stopped");
    if (rc < 0)
        ctl_printf(o, "ERR %s\n", strerror(-rc));
    else
        ctl_printf(o, "frozen\nOK\n");
}

static void run_request(void *ctx, ctl_out *o, char *line)
{
    struct control *c = ctx;
    char *argv[4];
    int argc = ctl_split(line, argv, 4);
    const char *cmd = argc ? argv[0] : "";
    if (!strcmp(cmd, "who") && argc <= 2) {
        cmd_who(c, o, argc == 2 ? argv[1] : NULL);
    } else if (!strcmp(cmd, "users") && argc == 1) {
        cmd_users(c, o);
    } else if (!strcmp(cmd, "kick") && argc == 2) {
        cmd_kick(c, o, argv[1]);
    } else if (!strcmp(cmd, "reload") && argc == 1) {
        char msg[300];
        int rc = control_reload(c->srv->tls, msg, sizeof msg);
        userdb_flush(c->srv->users);    /* the directory is asked afresh */
        log_msg(rc < 0 ? LOGL_ERROR : LOGL_INFO, 0, NULL, "control: reload: %s", msg);
        ctl_printf(o, rc < 0 ? "ERR %s\n" : "%s\nOK\n", msg);
    } else if (!strcmp(cmd, "flush-auth-cache") && argc == 1) {
        size_t k = authcache_flush(c->srv->authcache);
        size_t r = userdb_flush(c->srv->users);
        log_msg(LOGL_INFO, 0, NULL, "control: auth cache flushed (%zu entries, %zu user "
                "records)", k, r);
        ctl_printf(o, "flushed %zu\nOK\n", k);
    } else if (!strcmp(cmd, "stats") && argc == 1) {
        cmd_stats(c, o);
    } else if (!strcmp(cmd, "freeze") && argc == 4) {
        cmd_freeze(c, o, argv[1], argv[2], argv[3]);
    } else if (!strcmp(cmd, "thaw") && argc == 2) {
        int rc = store_user_thaw(c->srv->mail_root, argv[1]);
        log_msg(rc < 0 ? LOGL_ERROR : LOGL_INFO, 0, argv[1], "control: thaw: %s",
                rc < 0 ? strerror(-rc) : "writes allowed again");
        ctl_printf(o, rc < 0 ? "ERR %s\n" : "thawed\nOK\n", strerror(-rc));
    } else {
        ctl_printf(o, "ERR %s\n", ctl_usage_error(argc, argv));
    }
}

/* ---- serving connections --------------------------------------------------- */

static void *accept_thread(void *arg)
{
    struct control *c = arg;
    for (;;) {
        struct pollfd p[3] = {{.fd = c->stop[0], .events = POLLIN},
                              {.fd = c->lfd, .events = POLLIN},
                              {.fd = c->chan, .events = POLLIN}};
        if (poll(p, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_msg(LOGL_ERROR, 0, NULL, "control: poll: %s", strerror(errno));
            return NULL;
        }
        if (p[0].revents)
            return NULL;
        if (p[1].revents & POLLIN) {
            int fd = accept4(c->lfd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0)
                ctl_clients_serve(&c->clients, fd);
        }
        if (p[2].revents) {
            handoff_msg m;
            int rc = handoff_recv(c->chan, &m);
            bool hup = p[2].revents & (POLLHUP | POLLERR);
            if (rc == 0 && m.kind == HANDOFF_CONTROL && m.nfds == 1) {
                ctl_clients_serve(&c->clients, m.fds[0]);
            } else if (rc == 0) {
                for (size_t i = 0; i < m.nfds; i++)
                    close(m.fds[i]);
            } else if (hup || (rc != -EAGAIN && rc != -EPROTO)) {
                /* the supervisor is gone (EOF: -EPIPE) */
                close(c->chan);
                c->chan = -1;
            }
        }
    }
}

int control_listen(imap_server *srv, const char *path, uid_t uid, gid_t gid)
{
    struct control *c = srv->ctl;
    if (strlen(path) >= sizeof c->path)
        return -ENAMETOOLONG;
    int fd = control_bind(path, uid, gid);
    if (fd < 0)
        return fd;
    c->lfd = fd;
    snprintf(c->path, sizeof c->path, "%s", path);
    return 0;
}

int control_start(imap_server *srv, int chan)
{
    struct control *c = srv->ctl;
    c->chan = chan;
    if (chan >= 0)
        fcntl(chan, F_SETFL, O_NONBLOCK);
    if (c->lfd < 0 && c->chan < 0)
        return 0;
    if (pipe2(c->stop, O_CLOEXEC) < 0)
        return -errno;
    ctl_clients_init(&c->clients, (uid_t)-1, run_request, c);
    c->clients_on = true;
    if (pthread_create(&c->thr, NULL, accept_thread, c) != 0)
        return -EAGAIN;
    c->running = true;
    return 0;
}

void control_stop(imap_server *srv)
{
    struct control *c = srv->ctl;
    if (!c)
        return;
    if (c->running) {
        ssize_t r = write(c->stop[1], "x", 1);
        (void)r;
        pthread_join(c->thr, NULL);
        c->running = false;
    }
    /* Requests still running end: their jobs run even on a stopping
     * server, and their connections are shut down. */
    if (c->clients_on) {
        ctl_clients_stop(&c->clients);
        c->clients_on = false;
    }
    if (c->lfd >= 0) {
        close(c->lfd);
        c->lfd = -1;
        if (c->path[0] && unlink(c->path) < 0 && errno != ENOENT)
            log_msg(LOGL_WARN, 0, NULL, "control: cannot remove %s: %s", c->path,
                    strerror(errno));
        c->path[0] = '\0';
    }
    if (c->chan >= 0)
        close(c->chan);
    c->chan = -1;
    for (int i = 0; i < 2; i++)
        if (c->stop[i] >= 0)
            close(c->stop[i]);
    c->stop[0] = c->stop[1] = -1;
}
