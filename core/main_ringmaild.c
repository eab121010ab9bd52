/* core/main_ringmaild.c — ringmaild, the IMAP server.
 *
 *   ringmaild [-c CONFIG] [-o key=value]...
 *
 * SIGTERM and SIGINT stop it gracefully: every session gets "* BYE" after
 * the command it is running, then the process exits 0.  Nothing that was
 * acknowledged is lost: writes are acknowledged only once durable. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/authpool.h"
#include "core/config.h"
#include "core/log.h"
#include "core/server.h"

/* Signals are taken by one thread with sigwait, so that SIGHUP can do
 * what a handler may not (re-read certificates). */
struct sigctx {
    net_server *net;
    net_tls *tls;
    sigset_t set;
};

static void *signal_thread(void *arg)
{
    struct sigctx *sc = arg;
    for (;;) {
        int sig;
        if (sigwait(&sc->set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            char err[256] = "";
            if (!sc->tls)
                log_msg(LOGL_INFO, 0, NULL, "SIGHUP: no TLS configured, nothing to reload");
            else if (net_tls_reload(sc->tls, err, sizeof err) < 0)
                log_msg(LOGL_ERROR, 0, NULL, "SIGHUP: certificates not reloaded: %s", err);
            else
                log_msg(LOGL_INFO, 0, NULL, "SIGHUP: certificates reloaded");
            continue;
        }
        log_msg(LOGL_INFO, 0, NULL, "signal %d: stopping", sig);
        net_server_stop(sc->net);
        return NULL;
    }
}

/* The TLS context from tls_cert/tls_key/tls_sni; NULL without tls_cert. */
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

static void usage(FILE *f)
{
    fputs("usage: ringmaild [-c CONFIG] [-o key=value]...\n"
          "  -c CONFIG      configuration file\n"
          "  -o key=value   override one setting (repeatable)\n"
          "  -h, --help     this text\n", f);
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
    int exit_code = 1;
    if ((rc = imap_server_init(&srv, &cfg)) < 0) {
        fprintf(stderr, "ringmaild: cannot start: %s\n", strerror(-rc));
        config_free(&cfg);
        return 1;
    }
    long long workers = 0;
    config_get_int(&cfg, "workers", &workers);
    net_config nc = {.workers = (unsigned)workers};
    if (net_backend_parse(config_get(&cfg, "io_backend"), &nc.backend) < 0)
        nc.backend = NET_BACKEND_AUTO;
    if ((rc = net_server_new(&nc, &imap_session_ops, &srv.net)) < 0) {
        fprintf(stderr, "ringmaild: cannot start the runtime: %s\n", strerror(-rc));
        goto out;
    }
    char *listen = strdup(config_get(&cfg, "listen"));
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
    if ((rc = setup_tls(&cfg, &srv.tls)) < 0)
        goto out;
    const char *ltls = config_get(&cfg, "listen_tls");
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
    if (!nlisten) {
        fprintf(stderr, "ringmaild: nothing to listen on (set listen or listen_tls)\n");
        goto out;
    }
    if (drop_privileges(&cfg) < 0)
        goto out;
    sc.net = srv.net;
    sc.tls = srv.tls;
    if ((rc = net_server_start(srv.net)) < 0) {
        fprintf(stderr, "ringmaild: cannot start workers: %s\n", strerror(-rc));
        goto out;
    }
    pthread_t sigthr;
    if (pthread_create(&sigthr, NULL, signal_thread, &sc) != 0) {
        fprintf(stderr, "ringmaild: cannot start the signal thread\n");
        net_server_stop(srv.net);
        net_server_wait(srv.net);
        goto out;
    }
    log_msg(LOGL_INFO, 0, NULL, "ringmaild started: %s backend, listening on %s, mail_root %s",
            net_backend_name(net_server_backend(srv.net)), config_get(&cfg, "listen"),
            srv.mail_root);
    net_server_wait(srv.net);
    /* The workers stop only through the signal thread, which has ended. */
    pthread_join(sigthr, NULL);
    /* Password checks still queued are answered (cancelled) now that no
     * session can be woken; their sessions are closed already. */
    authpool_free(srv.authpool);
    srv.authpool = NULL;
    authpool_free(srv.syncpool);    /* likewise the flushes still queued */
    srv.syncpool = NULL;
    log_msg(LOGL_INFO, 0, NULL, "ringmaild stopped");
    exit_code = 0;
out:
    notify_stop(&srv);      /* it wakes sessions through srv.net */
    if (srv.net)
        net_server_free(srv.net);
    net_tls_free(srv.tls);
    imap_server_fini(&srv);
    config_free(&cfg);
    return exit_code;
}
