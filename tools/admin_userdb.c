/* tools/admin_userdb.c — the directory of users as ringmaild sees it:
 * `user show` (a user's record and backend) and `user route` (point it at
 * another backend), whatever `userdb` says: the passwd-file, LDAP or
 * PostgreSQL.  `quota` reads users through admin_userdb_open too. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/auth/userdb.h"
#include "tools/admin.h"

int admin_userdb_open(admin_ctx *ctx, userdb **out)
{
    const config *cfg = &ctx->cfg;
    long long timeout = 0;
    config_get_int(cfg, "directory_timeout", &timeout);
    /* The same settings as ringmaild's (core/server/server.c); records are
     * not cached: every command asks the directory. */
    userdb_params p = {
        .passwd_file = config_get(cfg, "passwd_file"),
        .kind = config_get(cfg, "userdb"),
        .timeout_ms = (unsigned)timeout,
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
    /* A directory that goes away mid-request must be an error message,
     * not a SIGPIPE (libldap writes to its socket with write()). */
    signal(SIGPIPE, SIG_IGN);
    const char *why = NULL;
    int rc = userdb_open(&p, out, &why);
    if (rc < 0)
        admin_err("%s", why ? why : strerror(-rc));
    return rc;
}

/* After a failed call: what the user hears. */
static void lookup_error(const char *user, int rc)
{
    const char *why = userdb_error();
    if (rc == -ENOENT)
        admin_err("user '%s' does not exist", user);
    else
        admin_err("user directory: %s", *why ? why : strerror(-rc));
}

int admin_userdb_lookup(admin_ctx *ctx, const char *user, userdb_rec *rec)
{
    userdb *db;
    if (admin_userdb_open(ctx, &db) < 0)
        return -EINVAL;
    int rc = userdb_lookup(db, user, true, rec);
    if (rc < 0)
        lookup_error(user, rc);
    userdb_close(db);
    return rc;
}

int admin_cmd_user_show(admin_ctx *ctx, int argc, char **argv)
{
    char *pos[1];
    size_t npos;
    if (admin_args(argc, argv, NULL, 0, pos, 1, 1, &npos, "user show USER") < 0)
        return ADMIN_USAGE;
    userdb_rec r = {0};
    if (admin_userdb_lookup(ctx, pos[0], &r) < 0)
        return ADMIN_FAIL;
    char *host = NULL;
    unsigned port = 0;
    int rc = userdb_route(&r, &host, &port);
    printf("user      %s\n", r.name);
    printf("fields    %s\n", r.extra ? r.extra : "");
    if (rc < 0)
        printf("backend   (invalid host or port field)\n");
    else if (!host)
        printf("backend   here\n");
    else if (port)
        printf("backend   %s:%u\n", host, port);
    else
        printf("backend   %s\n", host);
    free(host);
    userdb_rec_free(&r);
    return rc < 0 ? ADMIN_FAIL : ADMIN_OK;
}

int admin_cmd_user_route(admin_ctx *ctx, int argc, char **argv)
{
    char *pos[2];
    size_t npos;
    if (admin_args(argc, argv, NULL, 0, pos, 2, 2, &npos, "user route USER HOST[:PORT]|here")
        < 0)
        return ADMIN_USAGE;
    char *host = NULL;
    unsigned port = 0;
    if (strcmp(pos[1], "here")) {
        host = strdup(pos[1]);
        if (!host)
            return ADMIN_FAIL;
        /* HOST:PORT, [V6]:PORT, or a bare host (a v6 address in brackets) */
        char *colon = strrchr(host, ':');
        char *rb = strrchr(host, ']');
        if (colon && (!rb || colon > rb) && (host[0] == '[' || strchr(host, ':') == colon)) {
            char *end;
            unsigned long v = strtoul(colon + 1, &end, 10);
            if (!colon[1] || *end || v < 1 || v > 65535) {
                admin_err("not a port: %s", colon + 1);
                free(host);
                return ADMIN_USAGE;
            }
            port = (unsigned)v;
            *colon = '\0';
        }
        if (host[0] == '[' && host[strlen(host) - 1] == ']') {
            memmove(host, host + 1, strlen(host));
            host[strlen(host) - 1] = '\0';
        }
    }
    userdb *db;
    if (admin_userdb_open(ctx, &db) < 0) {
        free(host);
        return ADMIN_FAIL;
    }
    int rc = userdb_set_route(db, pos[0], host, port);
    userdb_close(db);
    if (rc == -EINVAL && !*userdb_error())
        admin_err("not a host: %s", host ? host : "");
    else if (rc < 0)
        lookup_error(pos[0], rc);
    else if (host)
        printf("%s: backend %s%s%.0u\n", pos[0], host, port ? ":" : "", port);
    else
        printf("%s: backend here\n", pos[0]);
    free(host);
    return rc < 0 ? ADMIN_FAIL : ADMIN_OK;
}
