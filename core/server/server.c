/* core/server/server.c — the server's shared state from the configuration. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/auth/abuse.h"
#include "core/auth/authpool.h"
#include "core/fetch/fetch_render.h"
#include "core/fetch/preview.h"
#include "core/search/search.h"
#include "core/base/log.h"
#include "core/server/auth_http.h"
#include "core/server/autocompact.h"
#include "core/server/proxy_proto.h"
#include "core/server/qmemo.h"
#include "core/server/quota.h"
#include "core/server/session.h"
#include "core/server/socketmap.h"

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
    const char *pt = config_get(cfg, "plaintext_auth");
    srv->plaintext = !strcmp(pt, "yes") ? PLAINTEXT_YES
                     : !strcmp(pt, "no") ? PLAINTEXT_NO : PLAINTEXT_LOOPBACK;
    bool b = false;
    config_get_bool(cfg, "log_commands", &b);
    srv->log_commands = b;
    srv->login_timeout_ms = (unsigned)cfg_int(cfg, "login_timeout") * 1000u;
    srv->idle_timeout_ms = (unsigned)cfg_int(cfg, "idle_timeout") * 1000u;
    srv->partial_timeout_ms = (unsigned)cfg_int(cfg, "partial_command_timeout") * 1000u;
    srv->max_bad = (unsigned)cfg_int(cfg, "max_bad_commands");
    srv->auth_failure_delay_ms = (unsigned)cfg_int(cfg, "auth_failure_delay");
    srv->auth_queue_per_ip = (unsigned)cfg_int(cfg, "auth_queue_per_ip");
    srv->scram_auto = !strcmp(config_get(cfg, "auth_scram"), "auto");
    srv->max_conn_ip = (unsigned)cfg_int(cfg, "max_connections_per_ip");
    srv->max_conn_user = (unsigned)cfg_int(cfg, "max_connections_per_user");
    srv->max_cmds_preauth = (unsigned)cfg_int(cfg, "max_commands_before_auth");
    srv->max_output = (size_t)cfg_int(cfg, "max_output_buffer");
    srv->max_seqset_ranges = (size_t)cfg_int(cfg, "max_seqset_ranges");
    srv->search_max_depth = (unsigned)cfg_int(cfg, "search_max_depth");
    srv->search_max_keys = (unsigned)cfg_int(cfg, "search_max_keys");
    b = true;
    config_get_bool(cfg, "search_index", &b);
    imap_search_set_index(b);
    if ((rc = autocompact_start((uint64_t)cfg_int(cfg, "autocompact_min_dead"),
                                (unsigned)cfg_int(cfg, "autocompact_dead_percent"),
                                &srv->autocompact)) < 0)
        return rc;
    if ((rc = abuse_new(config_get(cfg, "trusted_networks"), &srv->abuse)) < 0)
        return rc;
    if ((rc = authpool_new((unsigned)cfg_int(cfg, "auth_pool_threads"), 0, &srv->authpool)) < 0 ||
        (rc = authpool_new(SYNCPOOL_THREADS, SYNCPOOL_QUEUE, &srv->syncpool)) < 0 ||
        (rc = authcache_new((unsigned)cfg_int(cfg, "auth_cache_ttl"), 0, &srv->authcache)) < 0)
        return rc;
    srv->limits.max_line = (size_t)cfg_int(cfg, "max_line_length");
    srv->limits.max_literal = (size_t)cfg_int(cfg, "append_limit");
    srv->limits.max_command = srv->limits.max_literal + (16u << 20);
    srv->limits.literal_minus = false;
    srv->preauth_limits = srv->limits;
    if (srv->preauth_limits.max_literal > PREAUTH_MAX_LITERAL)
        srv->preauth_limits.max_literal = PREAUTH_MAX_LITERAL;
    if (srv->preauth_limits.max_command > srv->limits.max_line + PREAUTH_MAX_COMMAND_EXTRA)
        srv->preauth_limits.max_command = srv->limits.max_line + PREAUTH_MAX_COMMAND_EXTRA;
    pthread_mutex_init(&srv->nlock, NULL);
    atomic_init(&srv->next_session, 0);
    userdb_params up = {
        .passwd_file = config_get(cfg, "passwd_file"),
        .kind = config_get(cfg, "userdb"),
        .timeout_ms = (unsigned)cfg_int(cfg, "directory_timeout"),
        .cache_ttl_s = (unsigned)cfg_int(cfg, "auth_cache_ttl"),
        .ldap_uri = config_get(cfg, "ldap_uri"),
        .ldap_base = config_get(cfg, "ldap_base"),
        .ldap_bind_dn = config_get(cfg, "ldap_bind_dn"),
        .ldap_bind_password = config_get(cfg, "ldap_bind_password"),
        .ldap_filter = config_get(cfg, "ldap_filter"),
        .ldap_auth = config_get(cfg, "ldap_auth"),
        .ldap_attrs = config_get(cfg, "ldap_attrs"),
        .pgsql_connect = config_get(cfg, "pgsql_connect"),
        .pgsql_password_query = config_get(cfg, "pgsql_password_query"),
        .pgsql_user_query = config_get(cfg, "pgsql_user_query"),
        .pgsql_route_query = config_get(cfg, "pgsql_route_query"),
    };
    const char *why = NULL;
    if ((rc = userdb_open(&up, &srv->users, &why)) < 0) {
        if (why)
            fprintf(stderr, "ringmaild: %s\n", why);
        return rc;
    }
    srv->pw = userdb_passwd(srv->users);
    /* Read the users now, so the first greeting knows whether SCRAM can be
     * offered (passwd_scram_everyone); an unreadable file is reported at
     * the first login, as before. */
    passwd_generation(srv->pw);
    if ((rc = lmtp_conf_init(srv, cfg)) < 0)
        return rc;
    if ((rc = socketmap_init(srv, cfg)) < 0)
        return rc;
    if ((rc = quota_conf_init(srv, cfg)) < 0)
        return rc;
    if ((rc = auth_http_conf_init(srv, cfg)) < 0 || (rc = proxy_proto_conf_init(cfg)) < 0)
        return rc;
    sess_set_server(srv);
    store_msg_set_renderer(imap_envelope_prerender);
    store_msg_set_previewer(imap_preview);
    return 0;
}

struct refresh {
    imap_server *srv;
    char user[];
};

static void refresh_work(void *arg)
{
    struct refresh *r = arg;
    userdb_lookup(r->srv->users, r->user, true, NULL);
    free(r);
}

void server_refresh_user(imap_server *srv, const char *user)
{
    if (!userdb_is_directory(srv->users))
        return;     /* the passwd-file is read on every lookup anyway */
    size_t n = strlen(user) + 1;
    struct refresh *r = malloc(sizeof *r + n);
    if (!r)
        return;
    r->srv = srv;
    memcpy(r->user, user, n);
    if (authpool_submit(srv->authpool, refresh_work, r, NULL, NULL, 0) < 0)
        free(r);
}

void notify_fini(imap_server *srv);

void imap_server_fini(imap_server *srv)
{
    autocompact_stop(srv->autocompact);     /* its queue holds mailboxes */
    srv->autocompact = NULL;
    notify_fini(srv);
    authpool_free(srv->authpool);   /* after the workers: see main */
    authpool_free(srv->syncpool);
    authcache_free(srv->authcache);
    abuse_free(srv->abuse);
    proxy_proto_conf_fini();
    userdb_close(srv->users);
    srv->pw = NULL;
    pthread_mutex_destroy(&srv->nlock);
    qmemo_clear();      /* kept answers: nothing left allocated at exit */
}
