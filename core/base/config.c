/* core/base/config.c — `key = value` files and `-o` overrides (see config.h). */
#include "core/base/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "store/store.h"

/* The known keys.  Server keys are reserved here even though only
 * ringmaild reads them, so that one file serves every program and a typo
 * is caught by whichever program reads the file first. */
static const config_key config_table[] = {
    { "mail_root", CONFIG_STR, "./ringmail-data", NULL, 0, 0,
      "directory holding every user's mailboxes" },
    { "fsync", CONFIG_ENUM, "batch", "always|batch|never", 0, 0,
      "durability of writes: group commit (batch), per write, or none" },
    { "hierarchy_separator", CONFIG_ENUM, "/", "/|.", 0, 0,
      "mailbox hierarchy separator" },
    { "listen", CONFIG_STR, "0.0.0.0:143", NULL, 0, 0,
      "IMAP (STARTTLS) listen addresses, comma-separated; empty = none" },
    { "listen_tls", CONFIG_STR, "0.0.0.0:993", NULL, 0, 0,
      "IMAPS (implicit TLS) listen addresses, comma-separated; empty = none" },
    { "listen_lmtp", CONFIG_STR, "", NULL, 0, 0,
      "LMTP listen addresses for mail delivery from the MTA: Unix socket paths (starting "
      "with /) and host:port, comma-separated; empty = none" },
    { "listen_socketmap", CONFIG_STR, "", NULL, 0, 0,
      "Postfix socketmap lookup tables (transport, mailbox) from the directory on "
      "host:port addresses, comma-separated; only trusted_networks may connect; "
      "empty = off" },
    { "socketmap_domains", CONFIG_STR, "", NULL, 0, 0,
      "socketmap: the domains whose addresses are users, comma-separated (needed with "
      "lmtp_user_domain = strip: Postfix asks about remote recipients too); empty = any "
      "domain" },
    { "socketmap_lmtp_port", CONFIG_INT, "24", NULL, 1, 65535,
      "socketmap transport: the LMTP port of a backend whose users' records carry no "
      "lmtp_port field" },
    { "socketmap_lmtp_default", CONFIG_STR, "", NULL, 0, 0,
      "socketmap transport of a user whose record names no host (the mail is here), "
      "e.g. lmtp:inet:10.0.0.1:24 or lmtp:unix:/run/ringmail/lmtp; empty = from the "
      "first listen_lmtp address unless it is a wildcard" },
    { "socketmap_timeout", CONFIG_INT, "60", NULL, 1, 86400,
      "seconds a socketmap client may stay silent between requests" },
    { "socketmap_max_connections", CONFIG_INT, "1000", NULL, 1, 1000000,
      "socketmap connections at a time (per process); more are closed at once" },
    { "listen_metrics", CONFIG_STR, "", NULL, 0, 0,
      "Prometheus metrics over HTTP (GET /metrics) on host:port; a bare port is "
      "127.0.0.1:port; a non-loopback address only when written out (0.0.0.0:port, "
      "[::]:port); empty = off" },
    { "listen_auth_http", CONFIG_STR, "", NULL, 0, 0,
      "nginx's mail auth_http protocol (auth_http http://HOST:PORT/ in nginx's mail block) "
      "on host:port, comma-separated; only trusted_networks may connect; empty = off" },
    { "auth_http_default_backend", CONFIG_STR, "", NULL, 0, 0,
      "auth_http: the backend (host:port) of a user whose record has no host= field; "
      "empty = this server's first listen address (a wildcard one as loopback)" },
    { "listen_proxy", CONFIG_STR, "", NULL, 0, 0,
      "IMAP listen addresses whose connections start with a PROXY protocol header (v1 or "
      "v2; nginx's proxy_protocol on): the client's address it carries is the one logged, "
      "limited and penalized; comma-separated; empty = none" },
    { "proxy_protocol_from", CONFIG_STR, "", NULL, 0, 0,
      "CIDRs that may connect to listen_proxy (the proxies); others are refused; "
      "empty = nobody" },
    { "proxy_secret", CONFIG_STR, "", NULL, 0, 0,
      "auth_http answers it as Auth-Pass, so nginx logs in to the backend with it instead "
      "of the client's password; a server takes it as the password of any existing user, "
      "from trusted_networks only; 16-128 visible ASCII characters; empty = off" },
    { "listen_move", CONFIG_STR, "", NULL, 0, 0,
      "receive users moved here from another backend (ringmail-admin user move --to) on "
      "host:port; a bare port is 127.0.0.1:port; only trusted_networks may connect, with "
      "move_secret; empty = off" },
    { "move_secret", CONFIG_STR, "", NULL, 0, 0,
      "the shared secret of listen_move and of ringmail-admin user move (which reads it "
      "here unless given --secret-file); required with listen_move" },
    { "lmtp_socket_mode", CONFIG_STR, "0660", NULL, 0, 0,
      "permission bits (octal) of the LMTP Unix sockets; the MTA's user must be able to "
      "connect" },
    { "lmtp_socket_group", CONFIG_STR, "", NULL, 0, 0,
      "group the LMTP Unix sockets belong to (e.g. postfix, with lmtp_socket_mode = 0660); "
      "empty = the group ringmaild starts as" },
    { "admin_socket", CONFIG_STR, "admin.sock", NULL, 0, 0,
      "the control socket ringmail-admin's who, kick, reload, flush-auth-cache and stats "
      "use (a Unix socket, mode 0600, for root and the server's user); a relative path is "
      "under mail_root; empty = none" },
    { "lmtp_user_domain", CONFIG_ENUM, "strip", "strip|keep", 0, 0,
      "LMTP recipients: user names are local parts (strip) or whole addresses (keep)" },
    { "recipient_delimiter", CONFIG_STR, "+", NULL, 0, 0,
      "characters that end the user in a local part: user+folder@ is delivered to "
      "folder when it exists (else INBOX); empty = none" },
    { "lmtp_max_recipients", CONFIG_INT, "1000", NULL, 100, 100000,
      "recipients in one LMTP transaction (RFC 5321 4.5.3.1.8: at least 100); more get "
      "452 and are retried by the MTA" },
    { "lmtp_timeout", CONFIG_INT, "300", NULL, 1, 86400,
      "seconds an LMTP client may stay silent (RFC 5321 4.5.3.2 suggests 5 minutes)" },
    { "lmtp_hostname", CONFIG_STR, "", NULL, 0, 0,
      "the name LMTP greets with and writes in Received lines; empty = the host name" },
    { "quota_storage", CONFIG_STR, "", NULL, 0, 0,
      "storage quota of a user whose passwd-file line sets none (userdb_quota_rule="
      "*:storage=...): bytes, or with a unit B K M G T (1024-based); empty = no limit" },
    { "quota_messages", CONFIG_INT, "0", NULL, 0, 4294967295LL,
      "message quota of a user whose passwd-file line sets none (userdb_quota_rule="
      "*:messages=N); 0 = no limit" },
    { "quota_full_tempfail", CONFIG_BOOL, "no", NULL, 0, 0,
      "LMTP: a recipient over quota gets 452 4.2.2 (the MTA retries) instead of 552 "
      "5.2.2 (bounce)" },
    { "passwd_file", CONFIG_STR, "./ringmail-passwd", NULL, 0, 0,
      "users and password hashes, in Dovecot's passwd-file format" },
    { "userdb", CONFIG_ENUM, "passwd-file", "passwd-file|ldap|pgsql", 0, 0,
      "where users, their passwords, quota rules and backends (host=, port=) come from: "
      "passwd_file, an LDAP directory (ldap_*) or PostgreSQL (pgsql_*); SCRAM is offered "
      "only with passwd-file" },
    { "directory_timeout", CONFIG_INT, "5000", NULL, 100, 600000,
      "ms any one call to the LDAP or PostgreSQL directory may take (connect, bind, search, "
      "query); a directory down or slower answers logins NO [UNAVAILABLE], LMTP 451" },
    { "ldap_uri", CONFIG_STR, "", NULL, 0, 0,
      "userdb = ldap: the server, ldap://host:port/ (ldaps://, ldapi:// too)" },
    { "ldap_base", CONFIG_STR, "", NULL, 0, 0,
      "userdb = ldap: the DN users are searched under (subtree)" },
    { "ldap_bind_dn", CONFIG_STR, "", NULL, 0, 0,
      "userdb = ldap: the DN ringmaild binds as to search; empty = anonymous" },
    { "ldap_bind_password", CONFIG_STR, "", NULL, 0, 0,
      "userdb = ldap: ldap_bind_dn's password" },
    { "ldap_filter", CONFIG_STR, "(&(objectClass=inetOrgPerson)(uid=%u))", NULL, 0, 0,
      "userdb = ldap: the filter that finds one user; %u is the name, escaped as RFC 4515 "
      "says" },
    { "ldap_auth", CONFIG_ENUM, "search", "search|bind", 0, 0,
      "userdb = ldap: search = compare the entry's userPassword ({SSHA}, {CRYPT}, "
      "{SHA512-CRYPT}, ...) here; bind = bind as the entry's DN with the password" },
    { "ldap_attrs", CONFIG_STR, "", NULL, 0, 0,
      "userdb = ldap: attributes that become the user's fields, attr=field comma-separated "
      "(uid=user,mailHost=host,mailPort=port,mailQuota=quota_rule); user: the name as the "
      "directory spells it (logins must match it exactly; delivery takes any case)" },
    { "pgsql_connect", CONFIG_STR, "", NULL, 0, 0,
      "userdb = pgsql: libpq connection string (host=/run/postgresql dbname=mail user=ringmail); "
      "no TLS: a Unix socket or a trusted network" },
    { "pgsql_password_query", CONFIG_STR, "SELECT password, host, port, quota_rule FROM users WHERE name = $1",
      NULL, 0, 0,
      "userdb = pgsql: $1 the user; the first column the password hash in passwd-file form, "
      "the others fields by their names (NULL: none; a column named user: the name as the "
      "table spells it)" },
    { "pgsql_user_query", CONFIG_STR, "SELECT host, port, quota_rule FROM users WHERE name = $1",
      NULL, 0, 0,
      "userdb = pgsql: $1 the user; every column a field by its name (no row: no such user)" },
    { "pgsql_route_query", CONFIG_STR, "UPDATE users SET host = $2, port = $3 WHERE name = $1",
      NULL, 0, 0,
      "userdb = pgsql: moving a user: $1 the user, $2 the host, $3 the port (NULL: none)" },
    { "workers", CONFIG_INT, "0", NULL, 0, 4096,
      "server worker threads; 0 = one per online CPU" },
    { "processes", CONFIG_INT, "1", NULL, 1, 256,
      "server processes sharing the ports (SO_REUSEPORT), each with `workers` threads "
      "and its own fd limit, under a parent that restarts them; > 1 needs fixed ports. "
      "Per process, not shared: max_connections_per_ip, max_connections_per_user, "
      "failed-login delays and the auth cache" },
    { "io_backend", CONFIG_ENUM, "auto", "auto|io_uring|epoll", 0, 0,
      "event loop backend; auto falls back to epoll without io_uring" },
    { "log_level", CONFIG_ENUM, "info", "error|warn|info|debug", 0, 0,
      "least severe log messages written" },
    { "tls_cert", CONFIG_STR, "", NULL, 0, 0,
      "PEM certificate chain; empty = no TLS" },
    { "tls_sni", CONFIG_STR, "", NULL, 0, 0,
      "more certificates chosen by SNI: domain=certfile:keyfile, blank separated" },
    { "tls_key", CONFIG_STR, "", NULL, 0, 0,
      "PEM private key for tls_cert" },
    { "log_commands", CONFIG_BOOL, "no", NULL, 0, 0,
      "log every command's name (info level), not only logins and errors" },
    { "plaintext_auth", CONFIG_ENUM, "loopback", "loopback|yes|no", 0, 0,
      "LOGIN and plaintext SASL without TLS: from loopback and trusted_networks only "
      "(a proxy such as nginx logs in with the client's password), always, never" },
    { "auth_pool_threads", CONFIG_INT, "2", NULL, 1, 256,
      "threads that check passwords, so a slow hash never stalls a worker" },
    { "auth_cache_ttl", CONFIG_INT, "60", NULL, 0, 86400,
      "seconds a verified password, and a directory's user record, is remembered (0: never); "
      "a passwd-file change forgets all, so does flush-auth-cache" },
    { "auth_failure_delay", CONFIG_INT, "250", NULL, 0, 60000,
      "ms a failed login is penalized: its answer and the next login check for the same "
      "address or user, on any connection, wait that long; doubles with each failure in "
      "a row (at most 64 times)" },
    { "auth_queue_per_ip", CONFIG_INT, "32", NULL, 0, 1000000,
      "password checks one address may have queued or running at a time; more get "
      "NO [UNAVAILABLE] (trusted_networks exempt); 0 = no limit" },
    { "auth_scram", CONFIG_ENUM, "auto", "auto|no", 0, 0,
      "offer AUTH=SCRAM-SHA-256: auto = while every user in passwd_file has SCRAM-capable "
      "credentials ({SCRAM-SHA-256}, {PLAIN}, {CLEAR}), no = never" },
    { "max_connections_per_ip", CONFIG_INT, "1000", NULL, 0, 10000000,
      "connections from one address (loopback and trusted_networks exempt); 0 = no limit" },
    { "max_connections_per_user", CONFIG_INT, "50", NULL, 0, 10000000,
      "logged-in connections of one user; 0 = no limit" },
    { "trusted_networks", CONFIG_STR, "127.0.0.0/8 ::1/128", NULL, 0, 0,
      "addresses exempt from max_connections_per_ip, auth_queue_per_ip and per-address "
      "failed-login penalties (proxies, benchmarks): CIDR list" },
    { "max_commands_before_auth", CONFIG_INT, "30", NULL, 1, 100000,
      "commands a connection may send before it logs in" },
    { "partial_command_timeout", CONFIG_INT, "60", NULL, 1, 86400,
      "seconds a half-sent command may stall before the server says BYE" },
    { "max_output_buffer", CONFIG_INT, "4194304", NULL, 65536, 1073741824,
      "bytes of unsent responses after which the server stops reading commands" },
    { "search_max_depth", CONFIG_INT, "32", NULL, 1, 1000,
      "nesting depth of a SEARCH program" },
    { "search_max_keys", CONFIG_INT, "1000", NULL, 1, 1000000,
      "search keys in one SEARCH program" },
    { "autocompact_dead_percent", CONFIG_INT, "50", NULL, 0, 100,
      "the server compacts a mailbox (on a thread of its own, at low priority) once "
      "this share of its log is dead bytes (expunged messages, superseded flag "
      "records) and autocompact_min_dead too; 0 = never (ringmail-admin compact only)" },
    { "autocompact_min_dead", CONFIG_INT, "8388608", NULL, 0, 1099511627776LL,
      "dead log bytes a mailbox must hold before the server compacts it" },
    { "search_index", CONFIG_BOOL, "yes", NULL, 0, 0,
      "keep a trigram index per mailbox (sindex.* files, built by body searches) "
      "that narrows SEARCH BODY/TEXT to candidate messages; no = always scan" },
    { "max_seqset_ranges", CONFIG_INT, "100000", NULL, 1, 10000000,
      "ranges in one sequence set" },
    { "user", CONFIG_STR, "", NULL, 0, 0,
      "started as root: the user to run as once the ports are bound" },
    { "group", CONFIG_STR, "", NULL, 0, 0,
      "started as root: the group to run as (default: the user's)" },
    { "login_timeout", CONFIG_INT, "60", NULL, 1, 86400,
      "seconds from connecting until the login must be done" },
    { "idle_timeout", CONFIG_INT, "1860", NULL, 1800, 86400,
      "seconds of silence before autologout (RFC 3501: at least 30 min)" },
    { "max_bad_commands", CONFIG_INT, "50", NULL, 0, 100000,
      "BAD answers in a row before the server says BYE; 0 = no limit" },
    { "max_line_length", CONFIG_INT, "65536", NULL, 1024, 16777216,
      "longest command line, literals excluded" },
    { "append_limit", CONFIG_INT, "67108864", NULL, 1024, 2147483647,
      "largest message APPEND accepts (APPENDLIMIT)" },
};

#define CONFIG_NKEYS (sizeof config_table / sizeof config_table[0])

struct config_entry {
    char *value;            /* owned; NULL means the default (static) */
    char *source;           /* owned "PATH:LINE" or NULL (default / -o) */
    bool from_override;
};

const config_key *config_keys(size_t *n)
{
    *n = CONFIG_NKEYS;
    return config_table;
}

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int key_index(const char *name, size_t len)
{
    for (size_t i = 0; i < CONFIG_NKEYS; i++)
        if (strlen(config_table[i].name) == len &&
            memcmp(config_table[i].name, name, len) == 0)
            return (int)i;
    return -ENOENT;
}

int config_init(config *cfg)
{
    cfg->entries = calloc(CONFIG_NKEYS, sizeof *cfg->entries);
    if (!cfg->entries) {
        cfg->n = 0;
        return -ENOMEM;
    }
    cfg->n = CONFIG_NKEYS;
    return 0;
}

void config_free(config *cfg)
{
    if (!cfg->entries)
        return;
    for (size_t i = 0; i < cfg->n; i++) {
        free(cfg->entries[i].value);
        free(cfg->entries[i].source);
    }
    free(cfg->entries);
    cfg->entries = NULL;
    cfg->n = 0;
}

static int parse_ll(const char *s, long long *out)
{
    if (!*s || isspace((unsigned char)*s))
        return -EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end)
        return -EINVAL;
    if (errno == ERANGE)
        return -ERANGE;
    *out = v;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = { "yes", "true", "on", "1" };
    static const char *const no[] = { "no", "false", "off", "0" };
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

static bool enum_has(const char *choices, const char *v)
{
    size_t vl = strlen(v);
    const char *p = choices;
    for (;;) {
        const char *bar = strchr(p, '|');
        size_t l = bar ? (size_t)(bar - p) : strlen(p);
        if (l == vl && memcmp(p, v, l) == 0)
            return true;
        if (!bar)
            return false;
        p = bar + 1;
    }
}

/* Check a value against its key's type.  `where` is " at PATH:LINE" or
 * " in -o ..." so the message points at the offending text. */
static int validate(const config_key *k, const char *v, const char *where,
                    char *err, size_t errlen)
{
    long long n;
    bool b;
    int r;

    switch (k->type) {
    case CONFIG_STR:
        for (const char *p = v; *p; p++)
            if (iscntrl((unsigned char)*p)) {
                seterr(err, errlen, "invalid value for '%s'%s: control character",
                       k->name, where);
                return -EINVAL;
            }
        return 0;
    case CONFIG_INT:
        r = parse_ll(v, &n);
        if (r < 0 || n < k->min || n > k->max) {
            seterr(err, errlen,
                   "invalid value '%s' for '%s'%s: expected an integer from %lld to %lld",
                   v, k->name, where, k->min, k->max);
            return -EINVAL;
        }
        return 0;
    case CONFIG_BOOL:
        if (parse_bool(v, &b) < 0) {
            seterr(err, errlen, "invalid value '%s' for '%s'%s: expected yes or no",
                   v, k->name, where);
            return -EINVAL;
        }
        return 0;
    case CONFIG_ENUM:
        if (!enum_has(k->choices, v)) {
            seterr(err, errlen, "invalid value '%s' for '%s'%s: expected one of %s",
                   v, k->name, where, k->choices);
            return -EINVAL;
        }
        return 0;
    }
    return -EINVAL;
}

/* Store value for key index i.  Takes ownership of nothing; copies. */
static int set_value(config *cfg, int i, const char *v, const char *source)
{
    int ret = -ENOMEM;
    char *nv = strdup(v);
    char *ns = source ? strdup(source) : NULL;
    if (!nv || (source && !ns))
        goto out;
    struct config_entry *e = &cfg->entries[i];
    free(e->value);
    free(e->source);
    e->value = nv;
    e->source = ns;
    e->from_override = source == NULL;
    nv = ns = NULL;
    ret = 0;
out:
    free(nv);
    free(ns);
    return ret;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t l = strlen(s);
    while (l && isspace((unsigned char)s[l - 1]))
        s[--l] = '\0';
    return s;
}

/* Parse the value part of a file line in place: a quoted string or text up
 * to a comment.  Returns the value or NULL on a syntax error. */
static char *parse_value(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    if (*s == '"') {
        char *w = s, *r = s + 1;
        for (; *r && *r != '"'; r++) {
            if (*r == '\\' && (r[1] == '"' || r[1] == '\\'))
                r++;
            *w++ = *r;
        }
        if (*r != '"')
            return NULL;        /* unterminated */
        r++;
        while (isspace((unsigned char)*r))
            r++;
        if (*r && *r != '#')
            return NULL;        /* text after the closing quote */
        *w = '\0';
        return s;
    }
    for (char *p = s; *p; p++)
        if (*p == '#' && (p == s || isspace((unsigned char)p[-1]))) {
            *p = '\0';
            break;
        }
    return trim(s);
}

int config_load_file(config *cfg, const char *path, char *err, size_t errlen)
{
    int ret = 0;
    char *line = NULL;
    size_t cap = 0;
    unsigned long lineno = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        ret = -errno;
        seterr(err, errlen, "cannot read config file '%s': %s", path, strerror(errno));
        return ret;
    }
    for (;;) {
        ssize_t got = getline(&line, &cap, f);
        if (got < 0) {
            if (ferror(f)) {
                ret = errno ? -errno : -EIO;
                seterr(err, errlen, "cannot read config file '%s': %s",
                       path, strerror(-ret));
            }
            break;
        }
        lineno++;
        if ((size_t)got != strlen(line)) {
            ret = -EINVAL;
            seterr(err, errlen, "NUL byte at %s:%lu", path, lineno);
            break;
        }
        char *s = trim(line);
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            ret = -EINVAL;
            seterr(err, errlen, "expected 'key = value' at %s:%lu", path, lineno);
            break;
        }
        *eq = '\0';
        char *key = trim(s);
        char where[600];
        snprintf(where, sizeof where, " at %s:%lu", path, lineno);
        int i = key_index(key, strlen(key));
        if (i < 0) {
            ret = -EINVAL;
            if (*key)
                seterr(err, errlen, "unknown key '%s'%s", key, where);
            else
                seterr(err, errlen, "expected 'key = value'%s", where);
            break;
        }
        char *val = parse_value(eq + 1);
        if (!val) {
            ret = -EINVAL;
            seterr(err, errlen, "bad quoted value for '%s'%s", key, where);
            break;
        }
        ret = validate(&config_table[i], val, where, err, errlen);
        if (ret < 0)
            break;
        ret = set_value(cfg, i, val, where + 4);
        if (ret < 0) {
            seterr(err, errlen, "out of memory");
            break;
        }
    }
    free(line);
    fclose(f);
    return ret;
}

int config_set(config *cfg, const char *kv, char *err, size_t errlen)
{
    const char *eq = strchr(kv, '=');
    if (!eq) {
        seterr(err, errlen, "expected key=value in -o '%s'", kv);
        return -EINVAL;
    }
    const char *k = kv, *ke = eq;
    while (k < ke && isspace((unsigned char)*k))
        k++;
    while (ke > k && isspace((unsigned char)ke[-1]))
        ke--;
    char where[600];
    snprintf(where, sizeof where, " in -o '%s'", kv);
    int i = key_index(k, (size_t)(ke - k));
    if (i < 0) {
        seterr(err, errlen, "unknown key '%.*s'%s", (int)(ke - k), k, where);
        return -EINVAL;
    }
    int ret = validate(&config_table[i], eq + 1, where, err, errlen);
    if (ret < 0)
        return ret;
    ret = set_value(cfg, i, eq + 1, NULL);
    if (ret < 0)
        seterr(err, errlen, "out of memory");
    return ret;
}

int config_load(config *cfg, const char *path, const char *const *overrides,
                size_t n, char *err, size_t errlen)
{
    int ret = 0;
    if (!path || !*path)
        path = getenv("RINGMAIL_CONFIG");
    if (path && *path)
        ret = config_load_file(cfg, path, err, errlen);
    else if (access(CONFIG_DEFAULT_PATH, F_OK) == 0)
        ret = config_load_file(cfg, CONFIG_DEFAULT_PATH, err, errlen);
    for (size_t i = 0; ret == 0 && i < n; i++)
        ret = config_set(cfg, overrides[i], err, errlen);
    return ret;
}

const char *config_get(const config *cfg, const char *key)
{
    int i = key_index(key, strlen(key));
    if (i < 0 || (size_t)i >= cfg->n)
        return NULL;
    const char *v = cfg->entries[i].value;
    return v ? v : config_table[i].def;
}

int config_admin_socket(const config *cfg, char *buf, size_t len)
{
    const char *v = config_get(cfg, "admin_socket");
    int n;
    if (!v || !*v)
        n = snprintf(buf, len, "%s", "");
    else if (v[0] == '/')
        n = snprintf(buf, len, "%s", v);
    else
        n = snprintf(buf, len, "%s/%s", config_get(cfg, "mail_root"), v);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

const char *config_source(const config *cfg, const char *key)
{
    int i = key_index(key, strlen(key));
    if (i < 0 || (size_t)i >= cfg->n)
        return NULL;
    const struct config_entry *e = &cfg->entries[i];
    if (e->source)
        return e->source;
    return e->from_override ? "-o" : "default";
}

int config_get_int(const config *cfg, const char *key, long long *out)
{
    const char *v = config_get(cfg, key);
    if (!v)
        return -ENOENT;
    return parse_ll(v, out) < 0 ? -EINVAL : 0;
}

int config_get_bool(const config *cfg, const char *key, bool *out)
{
    const char *v = config_get(cfg, key);
    if (!v)
        return -ENOENT;
    return parse_bool(v, out);
}

int config_store_opts(const config *cfg, struct store_opts *o)
{
    store_opts_default(o);
    int r = store_fsync_parse(config_get(cfg, "fsync"), &o->fsync);
    if (r < 0)
        return r;
    const char *sep = config_get(cfg, "hierarchy_separator");
    if (strlen(sep) != 1)
        return -EINVAL;
    o->separator = sep[0];
    return 0;
}
