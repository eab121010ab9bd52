/* core/server/main_ringmaild.c — ringmaild, the IMAP server.
 *
 *   ringmaild [-c CONFIG] [-o key=value]...
 *
 * SIGTERM and SIGINT stop it gracefully: every session gets "* BYE" after
 * the command it is running, then the process exits 0.  Nothing that was
 * acknowledged is lost: writes are acknowledged only once durable.
 *
 * With `processes = N` (N > 1) the process started is a supervisor: it
 * forks N servers before anything is bound, each of which does the whole
 * start-up below (bind with SO_REUSEPORT, drop privileges, workers), so the
 * kernel spreads connections over them and each has its own fd limit.  The
 * supervisor forwards SIGTERM/SIGINT/SIGHUP, restarts a server that dies
 * (backing off when one dies right after starting), and exits 0 once all
 * have stopped after SIGTERM.  Each server hands its listening sockets to
 * the supervisor (core/server/handoff.c), which gives them to the slot's
 * next server: the kernel routes connections to a dead server's sockets
 * while they exist (with io_uring apparently until the ring's asynchronous
 * teardown, after the process is gone), and a socket that closes resets
 * every connection in its queue; kept open, they wait for the successor.
 * IDLE sessions in one process learn of changes made in another through
 * inotify (core/server/notify.c).
 *
 * Under systemd (Type=notify, NOTIFY_SOCKET set) the process started tells
 * the service manager through sd_notify(3): READY=1 once every listener is
 * bound and the workers run, RELOADING=1 then READY=1 around SIGHUP,
 * STOPPING=1 on SIGTERM, and STATUS= lines.  With NOTIFY_SOCKET unset
 * sd_notify does nothing. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "core/auth/authpool.h"
#include "core/base/config.h"
#include "core/base/log.h"
#include "core/server/control.h"
#include "core/server/handoff.h"
#include "core/server/main_alloc.h"
#include "core/server/metrics.h"
#include "core/server/auth_http.h"
#include "core/server/proxy_proto.h"
#include "core/server/move_target.h"
#include "core/server/server.h"

/* Signals are taken by one thread with sigwait, so that SIGHUP can do
 * what a handler may not (re-read certificates). */
struct sigctx {
    net_server *net;
    net_tls *tls;
    userdb *users;      /* reload also forgets the directory's records */
    sigset_t set;
    bool notify;        /* this process speaks to systemd (no supervisor) */
    int sup_sock;       /* under a supervisor: the handoff socket, else -1 */
    unsigned slot;
};

/* RELOADING=1 with the time it began: systemd (from 253, Type=notify-reload)
 * wants MONOTONIC_USEC beside it; older ones ignore it. */
static void notify_reloading(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
               (unsigned long long)t.tv_sec * 1000000ULL + (unsigned long long)t.tv_nsec / 1000);
}

static void *signal_thread(void *arg)
{
    struct sigctx *sc = arg;
    for (;;) {
        int sig;
        if (sigwait(&sc->set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {    /* the control socket's reload does the same */
            char msg[300];
            if (sc->notify)
                notify_reloading();
            int rc = control_reload(sc->tls, msg, sizeof msg);
            if (sc->users)
                userdb_flush(sc->users);
            log_msg(rc < 0 ? LOGL_ERROR : LOGL_INFO, 0, NULL, "SIGHUP: %s", msg);
            /* A failed reload keeps the old certificates and serves on:
             * READY either way, the log says which. */
            if (sc->notify)
                sd_notifyf(0, "READY=1\nSTATUS=serving; %s", rc < 0 ? "reload failed, see the log"
                                                                     : "reloaded");
            if (sc->sup_sock >= 0)  /* the supervisor says READY=1 once all have */
                handoff_send_reloaded(sc->sup_sock, sc->slot);
            continue;
        }
        if (sc->notify)
            sd_notify(0, "STOPPING=1\nSTATUS=stopping: closing sessions");
        log_msg(LOGL_INFO, 0, NULL, "signal %d: stopping", sig);
        net_server_stop(sc->net);
        return NULL;
    }
}

/* Metrics: this process's slot of the counters (always: the control
 * socket's stats read them too), and the listen_metrics listener if set
 * (bound here, before privileges are dropped; its thread starts later). */
static int setup_metrics(const config *cfg, imap_server *srv, unsigned slot,
                         metrics_http **mh)
{
    int rc = metrics_attach(slot, srv->net, srv->authpool);
    if (rc < 0) {
        fprintf(stderr, "ringmaild: metrics: %s\n", strerror(-rc));
        return rc;
    }
    const char *spec = config_get(cfg, "listen_metrics");
    char err[256];
    if (*spec && (rc = metrics_http_bind(spec, mh, err, sizeof err)) < 0)
        fprintf(stderr, "ringmaild: %s\n", err);
    return rc;
}

/* The TLS context from tls_cert/tls_key/tls_sni; NULL without tls_cert. */
/* listen_lmtp: Unix socket paths (with lmtp_socket_mode) and host:port
 * addresses, each tagged LISTEN_LMTP.  A Unix socket is one file, which N
 * processes cannot each bind: with processes > 1 LMTP takes TCP only. */
static int listen_lmtp(const config *cfg, net_server *net)
{
    const char *spec = config_get(cfg, "listen_lmtp");
    if (!*spec)
        return 0;
    const char *ms = config_get(cfg, "lmtp_socket_mode");
    char *end;
    unsigned long mode = strtoul(ms, &end, 8);
    if (!*ms || *end || mode > 0777) {
        fprintf(stderr, "ringmaild: lmtp_socket_mode: '%s' is not an octal mode\n", ms);
        return -EINVAL;
    }
    long long procs = 1;
    config_get_int(cfg, "processes", &procs);
    /* The MTA's delivery agent runs as its own user (Postfix: postfix): the
     * socket's group lets it connect without opening the socket to all. */
    const char *gname = config_get(cfg, "lmtp_socket_group");
    gid_t gid = (gid_t)-1;
    if (*gname) {
        struct group gr, *res = NULL;
        char buf[4096];
        if (getgrnam_r(gname, &gr, buf, sizeof buf, &res) != 0 || !res) {
            fprintf(stderr, "ringmaild: lmtp_socket_group: no group '%s'\n", gname);
            return -EINVAL;
        }
        gid = gr.gr_gid;
    }
    char *l = strdup(spec);
    if (!l)
        return -ENOMEM;
    int rc = 0;
    for (char *save = NULL, *tok = strtok_r(l, ", \t", &save); tok && rc == 0;
         tok = strtok_r(NULL, ", \t", &save)) {
        if (tok[0] == '/' && procs > 1) {
            fprintf(stderr, "ringmaild: listen_lmtp: a Unix socket (%s) cannot be shared by "
                    "processes = %lld; use host:port\n", tok, procs);
            rc = -EINVAL;
            break;
        }
        rc = tok[0] == '/' ? net_server_listen_unix(net, tok, (unsigned)mode)
                           : net_server_listen(net, tok);
        if (rc == 0 && tok[0] == '/' && gid != (gid_t)-1 && chown(tok, (uid_t)-1, gid) < 0)
            rc = -errno;
        if (rc == 0)
            rc = net_server_tag(net, LISTEN_LMTP);
        if (rc < 0)
            fprintf(stderr, "ringmaild: cannot listen (LMTP) on %s: %s\n", tok, strerror(-rc));
    }
    free(l);
    return rc;
}

/* The host:port addresses of the setting `key` (comma- or
 * blank-separated), bound and tagged: listen_socketmap (TCP only, so that
 * every process of processes = N serves them), listen_auth_http,
 * listen_proxy. */
static int listen_tagged(const config *cfg, net_server *net, const char *key, int tag)
{
    const char *spec = config_get(cfg, key);
    if (!*spec)
        return 0;
    char *l = strdup(spec);
    if (!l)
        return -ENOMEM;
    int rc = 0;
    for (char *save = NULL, *tok = strtok_r(l, ", \t", &save); tok && rc == 0;
         tok = strtok_r(NULL, ", \t", &save)) {
        rc = tok[0] == '/' ? -EINVAL : net_server_listen(net, tok);
        if (rc == 0)
            rc = net_server_tag(net, tag);
        if (rc < 0)
            fprintf(stderr, "ringmaild: cannot listen (%s) on %s: %s\n", key, tok,
                    rc == -EINVAL ? "host:port expected" : strerror(-rc));
    }
    free(l);
    return rc;
}

static int setup_tls(const config *cfg, net_tls **out)
{
    const char *cert = config_get(cfg, "tls_cert"), *key = config_get(cfg, "tls_key");
    *out = NULL;
    if (!*cert)
        return 0;
    char *sni = strdup(config_get(cfg, "tls_sni"));
    const char *v[64];
    size_t n = 0;
    for (char *save = NULL, *t = sni ? strtok_r(sni, " \t,", &save) : NULL; t && n < 64;
         t = strtok_r(NULL, " \t,", &save))
        v[n++] = t;
    char err[512] = "";
    int rc = net_tls_new(cert, *key ? key : cert, v, n, out, err, sizeof err);
    if (rc < 0)
        fprintf(stderr, "ringmaild: TLS: %s\n", err[0] ? err : strerror(-rc));
    free(sni);
    return rc;
}

/* Started as root: ports are bound, now become `user`/`group` before any
 * mail is touched.  Refuses to go on as root when a user is configured
 * but cannot be switched to. */
static int drop_privileges(const config *cfg)
{
    const char *user = config_get(cfg, "user"), *group = config_get(cfg, "group");
    umask(077);     /* mail files 0600, directories 0700 */
    if (geteuid() != 0 || !*user)
        return 0;
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        fprintf(stderr, "ringmaild: user '%s' does not exist\n", user);
        return -1;
    }
    gid_t gid = pw->pw_gid;
    if (*group) {
        struct group *gr = getgrnam(group);
        if (!gr) {
            fprintf(stderr, "ringmaild: group '%s' does not exist\n", group);
            return -1;
        }
        gid = gr->gr_gid;
    }
    if (setgroups(1, &gid) < 0 || setgid(gid) < 0 || setuid(pw->pw_uid) < 0) {
        fprintf(stderr, "ringmaild: cannot become %s: %s\n", user, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0) {   /* must be impossible now */
        fprintf(stderr, "ringmaild: still able to regain root; refusing to run\n");
        return -1;
    }
    return 0;
}

/* The user the servers run as (`user`, when started as root): the owner
 * of the control socket, and a peer it serves.  -1 when there is none. */
static void service_ids(const config *cfg, uid_t *uid, gid_t *gid)
{
    *uid = (uid_t)-1;
    *gid = (gid_t)-1;
    const char *user = config_get(cfg, "user"), *group = config_get(cfg, "group");
    struct passwd *pw = geteuid() == 0 && *user ? getpwnam(user) : NULL;
    if (!pw)
        return;
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    struct group *gr = *group ? getgrnam(group) : NULL;
    if (gr)
        *gid = gr->gr_gid;
}

/* admin_socket's path; "" when off.  An explicit setting that cannot be
 * used stops the start; the default only costs a warning (two servers on
 * one mail_root, a mail_root path too long for a socket). */
static int admin_socket_path(const config *cfg, char *buf, size_t len, bool *dflt)
{
    *dflt = !strcmp(config_source(cfg, "admin_socket"), "default");
    if (config_admin_socket(cfg, buf, len) < 0) {
        fprintf(stderr, "ringmaild: admin_socket: the path is too long for a Unix socket\n");
        buf[0] = '\0';
        return *dflt ? 0 : -ENAMETOOLONG;
    }
    return 0;
}

static int admin_socket_failed(const char *path, int rc, bool dflt)
{
    if (dflt) {
        log_msg(LOGL_WARN, 0, NULL, "no control socket: cannot listen on %s: %s", path,
                rc == -EADDRINUSE ? "another server answers there" : strerror(-rc));
        return 0;
    }
    fprintf(stderr, "ringmaild: cannot listen (admin_socket) on %s: %s\n", path,
            rc == -EADDRINUSE ? "another server answers there" : strerror(-rc));
    return rc;
}

static void usage(FILE *f)
{
    fputs("usage: ringmaild [-c CONFIG] [-o key=value]...\n"
          "  -c CONFIG      configuration file\n"
          "  -o key=value   override one setting (repeatable)\n"
          "  -h, --help     this text\n", f);
}

/* Under a supervisor: which slot this server fills, the socket to the
 * supervisor (handoff.h), and the listening sockets the slot's previous
 * server left (ownership passes to serve). */
struct slot_ctx {
    unsigned slot;
    int sock;
    int ctl;                    /* the slot's control channel (control.h) */
    pid_t supervisor;
    int *lfds;
    size_t nlfds;
};

/* Tell the supervisor which listening sockets this server holds, so that
 * they outlive it.  A failure costs only that: a successor binds anew. */
static void hand_listeners(const struct slot_ctx *sl, const net_server *net)
{
    size_t n = net_server_listen_fds(net, NULL, 0);
    int *fds = malloc((n ? n : 1) * sizeof *fds);
    int rc = -ENOMEM;
    if (fds) {
        net_server_listen_fds(net, fds, n);
        rc = handoff_send_fds(sl->sock, sl->slot, fds, n);
        free(fds);
    }
    if (rc < 0)
        log_msg(LOGL_WARN, 0, NULL, "listening sockets not handed to the supervisor: %s; "
                "connections waiting for this server when it dies will be reset",
                strerror(-rc));
}

/* The server proper: bind, drop privileges, run the workers until a
 * signal stops them.  Under a supervisor (sl), the listening sockets come
 * from the slot's previous server where there was one, the supervisor
 * learns of them and that the workers run, and the process follows the
 * supervisor into death. */
static int serve(const config *cfg, const struct slot_ctx *sl)
{
    int rc;
    /* Blocked before any thread exists (the auth pool starts in
     * imap_server_init), so every thread inherits the mask and only the
     * signal thread takes them. */
    signal(SIGPIPE, SIG_IGN);
    struct sigctx sc = {0};
    sigemptyset(&sc.set);
    sigaddset(&sc.set, SIGTERM);
    sigaddset(&sc.set, SIGINT);
    sigaddset(&sc.set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sc.set, NULL);

    imap_server srv;
    metrics_http *mh = NULL;
    move_target *mt = NULL;
    int exit_code = 1;
    if ((rc = imap_server_init(&srv, cfg)) < 0) {
        fprintf(stderr, "ringmaild: cannot start: %s\n", strerror(-rc));
        return 1;
    }
    long long workers = 0;
    config_get_int(cfg, "workers", &workers);
    net_config nc = {.workers = (unsigned)workers};
    /* on_drain must come for a queue over max_output_buffer (a session
     * waits for it to go on), so the net layer's high water is below it. */
    if (srv.max_output / 2 < 256 * 1024) {
        nc.high_water = srv.max_output / 2;
        nc.low_water = nc.high_water / 4;
    }
    if (net_backend_parse(config_get(cfg, "io_backend"), &nc.backend) < 0)
        nc.backend = NET_BACKEND_AUTO;
    if ((rc = net_server_new(&nc, &server_conn_ops, &srv.net)) < 0) {
        fprintf(stderr, "ringmaild: cannot start the runtime: %s\n", strerror(-rc));
        goto out;
    }
    if (sl && sl->nlfds && (rc = net_server_inherit(srv.net, sl->lfds, sl->nlfds)) < 0) {
        fprintf(stderr, "ringmaild: cannot take the listening sockets: %s\n", strerror(-rc));
        goto out;
    }
    char *listen = strdup(config_get(cfg, "listen"));
    unsigned nlisten = 0;
    for (char *save = NULL, *tok = strtok_r(listen, ", \t", &save); tok;
         tok = strtok_r(NULL, ", \t", &save)) {
        if ((rc = net_server_listen(srv.net, tok)) < 0) {
            fprintf(stderr, "ringmaild: cannot listen on %s: %s\n", tok, strerror(-rc));
            free(listen);
            goto out;
        }
        nlisten++;
    }
    free(listen);
    if ((rc = setup_tls(cfg, &srv.tls)) < 0)
        goto out;
    const char *ltls = config_get(cfg, "listen_tls");
    if (*ltls && !srv.tls) {
        log_msg(LOGL_WARN, 0, NULL, "listen_tls = %s but no tls_cert: no TLS listener", ltls);
    } else if (*ltls) {
        char *l = strdup(ltls);
        for (char *save = NULL, *tok = l ? strtok_r(l, ", \t", &save) : NULL; tok;
             tok = strtok_r(NULL, ", \t", &save)) {
            if ((rc = net_server_listen_tls(srv.net, tok, srv.tls)) < 0) {
                fprintf(stderr, "ringmaild: cannot listen (TLS) on %s: %s\n", tok,
                        strerror(-rc));
                free(l);
                goto out;
            }
            nlisten++;
        }
        free(l);
    }
    if ((rc = listen_lmtp(cfg, srv.net)) < 0 ||
        (rc = listen_tagged(cfg, srv.net, "listen_socketmap", LISTEN_SOCKETMAP)) < 0 ||
        (rc = listen_tagged(cfg, srv.net, "listen_auth_http", LISTEN_AUTH_HTTP)) < 0 ||
        (rc = listen_tagged(cfg, srv.net, "listen_proxy", LISTEN_IMAP_PROXY)) < 0)
        goto out;
    nlisten += *config_get(cfg, "listen_proxy") != '\0';
    if ((rc = setup_metrics(cfg, &srv, sl ? sl->slot : 0, &mh)) < 0)
        goto out;
    /* listen_move: bound here, before privileges are dropped */
    const char *mspec = config_get(cfg, "listen_move");
    char merr[256];
    if (*mspec &&
        (rc = move_target_bind(mspec, config_get(cfg, "move_secret"), &mt, merr,
                               sizeof merr)) < 0) {
        fprintf(stderr, "ringmaild: %s\n", merr);
        goto out;
    }
    /* The control socket: this process's own with processes = 1; under a
     * supervisor, requests come over the slot's channel instead. */
    if ((rc = control_init(&srv, sl ? sl->slot : 0)) < 0)
        goto out;
    if (!sl) {
        char apath[4096];
        bool dflt;
        uid_t auid;
        gid_t agid;
        service_ids(cfg, &auid, &agid);
        if (admin_socket_path(cfg, apath, sizeof apath, &dflt) < 0)
            goto out;
        if (apath[0] && (rc = control_listen(&srv, apath, auid, agid)) < 0 &&
            (rc = admin_socket_failed(apath, rc, dflt)) < 0)
            goto out;
    }
    if (!nlisten) {
        fprintf(stderr, "ringmaild: nothing to listen on (set listen or listen_tls)\n");
        goto out;
    }
    if (sl)
        hand_listeners(sl, srv.net);
    if (drop_privileges(cfg) < 0)
        goto out;
    /* Die with the supervisor (set after the uid change, which clears
     * it), so that killing it never leaves servers holding the ports. */
    if (sl && (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != sl->supervisor))
        goto out;
    sc.net = srv.net;
    sc.tls = srv.tls;
    sc.users = srv.users;
    sc.notify = !sl;
    sc.sup_sock = sl ? sl->sock : -1;
    sc.slot = sl ? sl->slot : 0;
    if ((rc = net_server_start(srv.net)) < 0) {
        fprintf(stderr, "ringmaild: cannot start workers: %s\n", strerror(-rc));
        goto out;
    }
    if (mh && (rc = metrics_http_start(mh)) < 0) {
        fprintf(stderr, "ringmaild: metrics: %s\n", strerror(-rc));
        net_server_stop(srv.net);
        net_server_wait(srv.net);
        goto out;
    }
    if (mt && (rc = move_target_start(mt, &srv)) < 0)
        log_msg(LOGL_ERROR, 0, NULL, "listen_move not served: %s", strerror(-rc));
    if ((rc = control_start(&srv, sl ? sl->ctl : -1)) < 0)
        log_msg(LOGL_ERROR, 0, NULL, "control socket not served: %s", strerror(-rc));
    pthread_t sigthr;
    if (pthread_create(&sigthr, NULL, signal_thread, &sc) != 0) {
        fprintf(stderr, "ringmaild: cannot start the signal thread\n");
        net_server_stop(srv.net);
        net_server_wait(srv.net);
        goto out;
    }
    log_msg(LOGL_INFO, 0, NULL, "ringmaild started: %s backend, listening on %s, mail_root %s, "
            "pid %d", net_backend_name(net_server_backend(srv.net)), config_get(cfg, "listen"),
            srv.mail_root, (int)getpid());
    /* Every listener is bound (connections queue from here on) and the
     * workers run: a client that connects after READY gets its greeting.
     * Under a supervisor the supervisor says it, once all servers are up. */
    if (!sl)
        sd_notifyf(0, "READY=1\nSTATUS=serving on %s (%s backend)", config_get(cfg, "listen"),
                   net_backend_name(net_server_backend(srv.net)));
    if (sl) {
        if ((rc = handoff_send_up(sl->sock, sl->slot)) < 0)
            log_msg(LOGL_WARN, 0, NULL, "cannot tell the supervisor: %s", strerror(-rc));
    }
    net_server_wait(srv.net);
    /* The workers stop only through the signal thread, which has ended. */
    pthread_join(sigthr, NULL);
    if (sl)
        close(sl->sock);    /* the signal thread's reload reports went there */
    /* Password checks still queued are answered (cancelled) now that no
     * session can be woken; their sessions are closed already. */
    authpool_free(srv.authpool);
    srv.authpool = NULL;
    authpool_free(srv.syncpool);    /* likewise the flushes still queued */
    srv.syncpool = NULL;
    log_msg(LOGL_INFO, 0, NULL, "ringmaild stopped");
    exit_code = 0;
out:
    move_target_free(mt);
    metrics_http_free(mh);
    metrics_detach();
    control_fini(&srv);     /* its requests post to srv.net */
    notify_stop(&srv);      /* it wakes sessions through srv.net */
    if (srv.net)
        net_server_free(srv.net);
    net_tls_free(srv.tls);
    imap_server_fini(&srv);
    return exit_code;
}

/* ---- the supervisor (processes > 1) -------------------------------------- */

struct child {
    pid_t pid;                  /* 0: not running */
    /* The slot's listening sockets, as its server handed them: kept across
     * its restarts so that connections queued for a server that dies wait
     * for the next one instead of being reset (net_server_inherit). */
    int *lfds;
    size_t nlfds;
    struct timespec started;
    unsigned fast_deaths;       /* deaths in a row soon after starting */
    struct timespec restart_at; /* when pid == 0 and not stopping */
    bool reloading;             /* sent SIGHUP, has not said it reloaded */
};

#define FAST_DEATH_MS 5000      /* a server that lived less died "at once" */
#define MAX_BACKOFF_MS 30000

static long long ms_since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t->tv_sec) * 1000LL + (now.tv_nsec - t->tv_nsec) / 1000000;
}

static void drop_lfds(struct child *c)
{
    for (size_t i = 0; i < c->nlfds; i++)
        close(c->lfds[i]);
    free(c->lfds);
    c->lfds = NULL;
    c->nlfds = 0;
}

/* The supervisor's control socket relay (NULL: admin_socket off). */
static control_link *the_link;

static pid_t spawn(const config *cfg, struct child *ch, unsigned n, unsigned slot, int sfd,
                   int ready[2], const sigset_t *oldmask)
{
    struct child *c = &ch[slot];
    int ctl[2] = {-1, -1};
    if (the_link && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) < 0)
        log_msg(LOGL_WARN, 0, NULL, "supervisor: no control channel for server %u: %s", slot,
                strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        log_msg(LOGL_ERROR, 0, NULL, "supervisor: fork: %s", strerror(errno));
        if (ctl[0] >= 0) {
            close(ctl[0]);
            close(ctl[1]);
        }
        return -1;
    }
    if (pid == 0) {
        struct slot_ctx sl = {.slot = slot, .sock = ready[1], .supervisor = getppid(),
                              .lfds = c->lfds, .nlfds = c->nlfds, .ctl = ctl[1]};
        ringmaild_alloc_child();
        if (ctl[0] >= 0)
            close(ctl[0]);
        control_link_forget(the_link);
        close(sfd);
        close(ready[0]);
        /* Only the supervisor (systemd's MAINPID) speaks to systemd: a
         * server tells it over the handoff socket that it is up (as it
         * already must, to end the start), and the supervisor says READY=1
         * once all are.  So the unit needs no NotifyAccess=all, which would
         * let any process of the service (a server restarting while the
         * others serve) move the service's state. */
        unsetenv("NOTIFY_SOCKET");
        for (unsigned i = 0; i < n; i++)    /* other slots' sockets are theirs */
            if (i != slot)
                drop_lfds(&ch[i]);
        sigprocmask(SIG_SETMASK, oldmask, NULL);
        /* exit, not return: main's cleanup belongs to the supervisor */
        int rc = serve(cfg, &sl);
        free(c->lfds);
        exit(rc);
    }
    c->pid = pid;
    if (ctl[0] >= 0) {
        close(ctl[1]);
        control_link_channel(the_link, slot, ctl[0]);
    }
    clock_gettime(CLOCK_MONOTONIC, &c->started);
    log_msg(LOGL_INFO, 0, NULL, "supervisor: started server %u, pid %d", slot, (int)pid);
    return pid;
}

static void forward(struct child *ch, unsigned n, int sig)
{
    for (unsigned i = 0; i < n; i++)
        if (ch[i].pid > 0)
            kill(ch[i].pid, sig);
}

/* The supervisor's state. */
typedef struct supervisor {
    const config *cfg;
    struct child *ch;           /* n of them */
    unsigned n;
    int sfd;                    /* signalfd: TERM, INT, HUP and CHLD */
    int ready[2];               /* each server writes a byte once it is up */
    sigset_t oldmask;           /* the mask the servers run with */
    unsigned up;                /* servers that said they were up */
    /* until every server has come up once, a death is a start-up error
     * (bad config, port taken): stop all and fail, as one process would */
    bool starting;
    bool stopping;
    bool reloading;             /* said RELOADING=1, READY=1 not yet */
    int exit_code;
} supervisor;

/* After a SIGHUP: READY=1 once every server it went to has reloaded or
 * died (a successor reads the certificates at its start). */
static void sup_reload_check(supervisor *sv)
{
    if (!sv->reloading)
        return;
    for (unsigned i = 0; i < sv->n; i++)
        if (sv->ch[i].reloading)
            return;
    sv->reloading = false;
    if (!sv->stopping)
        sd_notifyf(0, "READY=1\nSTATUS=serving: %u server processes", sv->n);
}

/* Stop every server with sig.  The kept listening sockets go at once:
 * the servers close theirs, and a connection must then be refused, not
 * queued where nobody will accept it. */
static void sup_stop(supervisor *sv, int sig)
{
    sv->stopping = true;
    for (unsigned i = 0; i < sv->n; i++)
        drop_lfds(&sv->ch[i]);
    forward(sv->ch, sv->n, sig);
}

/* Stop every server and exit with a failure. */
static void sup_fail(supervisor *sv)
{
    sv->exit_code = 1;
    sup_stop(sv, SIGTERM);
}

/* Start again the servers whose restart time has come.  Returns how many
 * run; *timeout is the wait in ms until the next restart (-1: none). */
static unsigned sup_restart_due(supervisor *sv, int *timeout)
{
    unsigned running = 0;
    *timeout = -1;
    for (unsigned i = 0; i < sv->n; i++) {
        struct child *c = &sv->ch[i];
        if (c->pid > 0) {
            running++;
            continue;
        }
        if (sv->stopping)
            continue;
        long long left = -ms_since(&c->restart_at);
        if (left <= 0) {
            log_msg(LOGL_INFO, 0, NULL, "supervisor: restarting server %u", i);
            if (spawn(sv->cfg, sv->ch, sv->n, i, sv->sfd, sv->ready, &sv->oldmask) > 0) {
                running++;
                continue;
            }
            left = 1000;    /* fork failed: try again in a second */
            clock_gettime(CLOCK_MONOTONIC, &c->restart_at);
            c->restart_at.tv_sec += 1;
        }
        if (*timeout < 0 || left < *timeout)
            *timeout = (int)left;
    }
    return running;
}

/* A slot's server hands over (a chunk of) its listening sockets: they
 * replace what the slot held (the same sockets, when it inherited them). */
static void sup_take_fds(supervisor *sv, handoff_msg *m)
{
    struct child *c = m->slot < sv->n ? &sv->ch[m->slot] : NULL;
    bool fits = c && !sv->stopping && m->total <= HANDOFF_MAX_FDS &&
                (m->first == 0 || (c->lfds && c->nlfds == m->first));
    if (fits && m->first == 0) {
        drop_lfds(c);
        if (m->total && !(c->lfds = malloc(m->total * sizeof *c->lfds)))
            fits = false;
    }
    if (!fits || m->first + m->nfds > m->total) {
        for (size_t i = 0; i < m->nfds; i++)
            close(m->fds[i]);
        if (c)
            drop_lfds(c);
        return;
    }
    memcpy(c->lfds + m->first, m->fds, m->nfds * sizeof *m->fds);
    c->nlfds = m->first + m->nfds;
}

/* Servers' messages: their sockets, and that they are up (the start is
 * over once all of them are). */
static void sup_read_ready(supervisor *sv)
{
    handoff_msg m;
    int rc;
    while ((rc = handoff_recv(sv->ready[0], &m)) != -EAGAIN) {
        if (rc == -EPROTO)
            continue;
        if (rc < 0) {
            log_msg(LOGL_ERROR, 0, NULL, "supervisor: %s", strerror(-rc));
            return;
        }
        if (m.kind == HANDOFF_FDS) {
            sup_take_fds(sv, &m);
        } else if (m.kind == HANDOFF_RELOADED) {
            if (m.slot < sv->n)
                sv->ch[m.slot].reloading = false;
            sup_reload_check(sv);
        } else if (sv->starting && ++sv->up >= sv->n) {
            sv->starting = false;
            log_msg(LOGL_INFO, 0, NULL, "supervisor: all %u servers up", sv->n);
            sd_notifyf(0, "READY=1\nSTATUS=serving: %u server processes", sv->n);
        } else if (!sv->starting && !sv->stopping) {
            sd_notifyf(0, "STATUS=serving: %u server processes; server %u restarted", sv->n,
                       m.slot);
        }
    }
}

/* Server slot i (pid) died unasked (how): restart it at once, or, when
 * it keeps dying soon after starting, after a delay that doubles with
 * each such death up to MAX_BACKOFF_MS. */
static void sup_schedule_restart(struct child *c, unsigned i, pid_t pid, const char *how)
{
    long long lived = ms_since(&c->started);
    c->fast_deaths = lived < FAST_DEATH_MS ? c->fast_deaths + 1 : 0;
    long long delay = 0;
    if (c->fast_deaths) {
        delay = 250LL << (c->fast_deaths < 8 ? c->fast_deaths - 1 : 7);
        if (delay > MAX_BACKOFF_MS)
            delay = MAX_BACKOFF_MS;
    }
    log_msg(LOGL_ERROR, 0, NULL, "supervisor: server %u (pid %d) died (%s) after "
            "%lld ms; restarting in %lld ms", i, (int)pid, how, lived, delay);
    sd_notifyf(0, "STATUS=server %u died (%s); restarting in %lld ms", i, how, delay);
    /* Connections the kernel routes to the slot's sockets wait for its
     * next server: fine for a moment, not through a back-off; then the
     * sockets go (those waiting are reset) and the rest take the load. */
    if (delay)
        drop_lfds(c);
    clock_gettime(CLOCK_MONOTONIC, &c->restart_at);
    c->restart_at.tv_sec += delay / 1000;
    c->restart_at.tv_nsec += (delay % 1000) * 1000000;
    if (c->restart_at.tv_nsec >= 1000000000) {
        c->restart_at.tv_sec++;
        c->restart_at.tv_nsec -= 1000000000;
    }
}

/* A child ended with wait status st. */
static void sup_child_ended(supervisor *sv, pid_t pid, int st)
{
    unsigned i = 0;
    while (i < sv->n && sv->ch[i].pid != pid)
        i++;
    if (i == sv->n)
        return;
    sv->ch[i].pid = 0;
    sv->ch[i].reloading = false;
    control_link_channel(the_link, i, -1);
    bool clean = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (sv->stopping) {
        if (!clean)
            sv->exit_code = 1;
        return;
    }
    char how[64];
    if (WIFSIGNALED(st))
        snprintf(how, sizeof how, "killed by signal %d", WTERMSIG(st));
    else
        snprintf(how, sizeof how, "exit status %d", WEXITSTATUS(st));
    if (sv->starting) {
        log_msg(LOGL_ERROR, 0, NULL, "supervisor: server %u (pid %d) failed to "
                "start (%s): stopping", i, (int)pid, how);
        sup_fail(sv);
        return;
    }
    sup_schedule_restart(&sv->ch[i], i, pid, how);
}

static void sup_signal(supervisor *sv, int sig)
{
    if (sig == SIGHUP) {
        log_msg(LOGL_INFO, 0, NULL, "supervisor: SIGHUP: passed to the servers");
        /* Each server reloads on its own, logs the outcome and tells the
         * supervisor, which says READY=1 once all have (sup_reload_check).
         * During a start, READY=1 comes at its end anyway. */
        if (!sv->starting && !sv->stopping) {
            notify_reloading();
            sv->reloading = true;
            for (unsigned i = 0; i < sv->n; i++)
                sv->ch[i].reloading = sv->ch[i].pid > 0;
        }
        forward(sv->ch, sv->n, SIGHUP);
        sup_reload_check(sv);
    } else if (sig == SIGTERM || sig == SIGINT) {
        log_msg(LOGL_INFO, 0, NULL, "supervisor: signal %d: stopping the servers", sig);
        sd_notify(0, "STOPPING=1\nSTATUS=stopping the servers");
        sup_stop(sv, sig);
    } else if (sig == SIGCHLD) {
        int st;
        pid_t pid;
        while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
            if (!control_link_reaped(the_link, pid, st))
                sup_child_ended(sv, pid, st);
        sup_reload_check(sv);
    }
}

static int supervise(const config *cfg, unsigned n)
{
    supervisor sv = {.cfg = cfg, .n = n, .starting = true};
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, &sv.oldmask);
    sv.sfd = signalfd(-1, &set, SFD_CLOEXEC);
    if (sv.sfd < 0 || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv.ready) < 0 ||
        fcntl(sv.ready[0], F_SETFL, O_NONBLOCK) < 0) {
        fprintf(stderr, "ringmaild: supervisor: %s\n", strerror(errno));
        return 1;
    }
    /* The counters every server writes its slot of, mapped before the
     * forks so that all share it and any one answers for all. */
    long long workers = 0;
    config_get_int(cfg, "workers", &workers);
    int mrc = metrics_map(n, (unsigned)workers);
    if (mrc < 0)
        log_msg(LOGL_WARN, 0, NULL, "supervisor: metrics: %s", strerror(-mrc));
    sv.ch = calloc(n, sizeof *sv.ch);
    if (!sv.ch) {
        fprintf(stderr, "ringmaild: supervisor: out of memory\n");
        return 1;
    }
    /* The control socket is the supervisor's: one path for all servers,
     * each request relayed to every one of them (control_relay.c). */
    char apath[4096];
    bool dflt;
    uid_t auid;
    gid_t agid;
    service_ids(cfg, &auid, &agid);
    if (admin_socket_path(cfg, apath, sizeof apath, &dflt) < 0) {
        free(sv.ch);
        return 1;
    }
    int arc;
    if (apath[0] && (arc = control_link_start(apath, auid, agid, n, &sv.oldmask, &the_link)) < 0 &&
        admin_socket_failed(apath, arc, dflt) < 0) {
        free(sv.ch);
        return 1;
    }
    for (unsigned i = 0; i < n; i++)
        if (spawn(cfg, sv.ch, n, i, sv.sfd, sv.ready, &sv.oldmask) < 0) {
            sup_fail(&sv);
            break;
        }
    log_msg(LOGL_INFO, 0, NULL, "supervisor: pid %d, %u server processes", (int)getpid(), n);
    for (;;) {
        int timeout;
        unsigned running = sup_restart_due(&sv, &timeout);
        if (sv.stopping && !running)
            break;
        struct pollfd p[2] = {{.fd = sv.sfd, .events = POLLIN},
                              {.fd = sv.ready[0], .events = POLLIN}};
        if (poll(p, 2, timeout) < 0 && errno != EINTR) {
            log_msg(LOGL_ERROR, 0, NULL, "supervisor: poll: %s", strerror(errno));
            break;
        }
        if (p[1].revents & POLLIN)
            sup_read_ready(&sv);
        if (!(p[0].revents & POLLIN))
            continue;
        struct signalfd_siginfo si;
        if (read(sv.sfd, &si, sizeof si) == sizeof si)
            sup_signal(&sv, (int)si.ssi_signo);
    }
    log_msg(LOGL_INFO, 0, NULL, "supervisor: all servers stopped");
    control_link_stop(the_link);
    the_link = NULL;
    for (unsigned i = 0; i < n; i++)
        drop_lfds(&sv.ch[i]);
    free(sv.ch);
    close(sv.sfd);
    close(sv.ready[0]);
    close(sv.ready[1]);
    return sv.exit_code;
}

int main(int argc, char **argv)
{
    const char *cfgpath = NULL;
    const char **ov = calloc((size_t)argc, sizeof *ov);
    size_t nov = 0;
    static const struct option longopts[] = {{"help", no_argument, NULL, 'h'}, {0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "c:o:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': cfgpath = optarg; break;
        case 'o': ov[nov++] = optarg; break;
        case 'h': usage(stdout); free(ov); return 0;
        default: usage(stderr); free(ov); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        free(ov);
        return 2;
    }
    config cfg = {0};
    char err[512];
    int rc = config_init(&cfg);
    if (rc == 0)
        rc = config_load(&cfg, cfgpath, ov, nov, err, sizeof err);
    free(ov);
    if (rc < 0) {
        fprintf(stderr, "ringmaild: %s\n", err);
        config_free(&cfg);
        return 1;
    }
    log_level lvl;
    if (log_level_parse(config_get(&cfg, "log_level"), &lvl) == 0)
        log_set_level(lvl);
    long long nproc = 1;
    config_get_int(&cfg, "processes", &nproc);
    rc = nproc > 1 ? supervise(&cfg, (unsigned)nproc) : serve(&cfg, NULL);
    config_free(&cfg);
    return rc;
}

