/* core/server.c — the server's shared state from the configuration. */
#include <errno.h>
#include <string.h>

#include "core/log.h"
#include "core/session.h"

static long long cfg_int(const config *cfg, const char *key)
{
    long long v = 0;
    config_get_int(cfg, key, &v);
    return v;
}

int imap_server_init(imap_server *srv, const config *cfg)
{
    memset(srv, 0, sizeof *srv);
    srv->cfg = cfg;
    srv->mail_root = config_get(cfg, "mail_root");
    int rc = config_store_opts(cfg, &srv->sopts);
    if (rc < 0)
        return rc;
    bool b = false;
    config_get_bool(cfg, "allow_plaintext_auth", &b);
    srv->plaintext_anywhere = b;
    srv->login_timeout_ms = (unsigned)cfg_int(cfg, "login_timeout") * 1000u;
    srv->idle_timeout_ms = (unsigned)cfg_int(cfg, "idle_timeout") * 1000u;
    srv->max_bad = (unsigned)cfg_int(cfg, "max_bad_commands");
    srv->limits.max_line = (size_t)cfg_int(cfg, "max_line_length");
    srv->limits.max_literal = (size_t)cfg_int(cfg, "append_limit");
    srv->limits.max_command = srv->limits.max_literal + (16u << 20);
    srv->limits.literal_minus = false;
    pthread_mutex_init(&srv->nlock, NULL);
    atomic_init(&srv->next_session, 0);
    if ((rc = passwd_open(config_get(cfg, "passwd_file"), &srv->pw)) < 0)
        return rc;
    sess_set_server(srv);
    return 0;
}

void notify_fini(imap_server *srv);

void imap_server_fini(imap_server *srv)
{
    notify_fini(srv);
    passwd_close(srv->pw);
    pthread_mutex_destroy(&srv->nlock);
}
