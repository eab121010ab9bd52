/* core/main_ringmaild.c — ringmaild, the IMAP server.
 *
 *   ringmaild [-c CONFIG] [-o key=value]...
 *
 * SIGTERM and SIGINT stop it gracefully: every session gets "* BYE" after
 * the command it is running, then the process exits 0.  Nothing that was
 * acknowledged is lost: writes are acknowledged only once durable. */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "core/server.h"

static net_server *running;

static void on_signal(int sig)
{
    (void)sig;
    if (running)
        net_server_stop(running);
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
    if (!nlisten) {
        fprintf(stderr, "ringmaild: nothing to listen on (set listen)\n");
        goto out;
    }
    if (drop_privileges(&cfg) < 0)
        goto out;
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    running = srv.net;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if ((rc = net_server_start(srv.net)) < 0) {
        fprintf(stderr, "ringmaild: cannot start workers: %s\n", strerror(-rc));
        goto out;
    }
    log_msg(LOGL_INFO, 0, NULL, "ringmaild started: %s backend, listening on %s, mail_root %s",
            net_backend_name(net_server_backend(srv.net)), config_get(&cfg, "listen"),
            srv.mail_root);
    net_server_wait(srv.net);
    log_msg(LOGL_INFO, 0, NULL, "ringmaild stopped");
    exit_code = 0;
out:
    running = NULL;
    if (srv.net)
        net_server_free(srv.net);
    imap_server_fini(&srv);
    config_free(&cfg);
    return exit_code;
}
