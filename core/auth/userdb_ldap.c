/* core/auth/userdb_ldap.c — users in an LDAP directory (OpenLDAP's libldap).
 *
 * A user is the one entry under ldap_base that ldap_filter finds (%u: the
 * name, escaped as RFC 4515 says), searched with the service identity
 * (ldap_bind_dn; anonymous when empty).  The password is checked in one
 * of two ways, as Dovecot's auth_bind = no|yes:
 *   search  the entry's userPassword values (RFC 2307's "{SCHEME}secret")
 *           are compared here (passwd_check_secret: {SSHA}, {CRYPT},
 *           {SHA512-CRYPT}, ...), so the directory needs to let the
 *           service identity read userPassword;
 *   bind    a simple bind as the entry's DN with the given password (RFC
 *           4513 5.1.3): the directory checks it, and the hash never
 *           leaves it.
 * ldap_attrs maps attributes onto the record's extra fields
 * ("uid=user,mailHost=host,mailPort=port,mailQuota=quota_rule"): the first
 * value of each attribute present becomes "field=value"; the field "user"
 * is the name itself (see userdb_dir.h).
 *
 * Connections: a small pool, one per thread that needs one at a time,
 * made on demand, bound as the service and reused; any error that may
 * have left a connection in doubt (a timeout, a lost server) closes it,
 * and the next call makes a new one, so a directory that comes back is
 * used again at once.  Every call is bounded by directory_timeout:
 * LDAP_OPT_NETWORK_TIMEOUT for the connect, LDAP_OPT_TIMEOUT for each
 * synchronous operation (libldap waits for the answer with it). */
#include <errno.h>
#include <ldap.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "core/auth/passwd.h"
#include "core/auth/userdb_dir.h"

#define LDAP_MAX_ATTRS 16

struct lconn {
    LDAP *ld;
    bool service;       /* bound as the service identity now */
    bool reused;        /* taken from the pool: the server may have closed
                           it meanwhile (a restart) */
    bool down;          /* the last bind found the server gone */
    bool user_bound;    /* bound as a user (ldap_auth = bind) since */
};

struct userdb_dir {
    char *uri, *base, *bind_dn, *bind_pw, *filter;
    bool auth_bind;
    unsigned timeout_ms;
    size_t nattrs;
    char *attr[LDAP_MAX_ATTRS];     /* LDAP attribute ... */
    char *field[LDAP_MAX_ATTRS];    /* ... and the extra field it fills */
    pthread_mutex_t lock;
    struct lconn *idle;
    size_t nidle, capidle;
};

int userdb_ldap_filter(const char *tmpl, const char *user, char **out)
{
    *out = NULL;
    size_t cap = strlen(tmpl) + 1;
    for (const char *p = tmpl; (p = strstr(p, "%u")); p += 2)
        cap += strlen(user) * 3;
    char *o = malloc(cap), *w = o;
    if (!o)
        return -ENOMEM;
    for (const char *p = tmpl; *p; p++) {
        if (*p != '%') {
            *w++ = *p;
            continue;
        }
        if (p[1] == '%') {
            *w++ = '%';
            p++;
        } else if (p[1] == 'u') {
            /* RFC 4515 3: "the octets that represent the ASTERISK, LEFT
             * PARENTHESIS, RIGHT PARENTHESIS, REVERSE SOLIDUS, and NUL
             * characters are represented as a backslash followed by the
             * two hexadecimal digits representing the value" */
            for (const char *u = user; *u; u++) {
                if (*u == '*' || *u == '(' || *u == ')' || *u == '\\')
                    w += sprintf(w, "\\%02x", (unsigned char)*u);
                else
                    *w++ = *u;
            }
            p++;
        } else {
            free(o);
            return -EINVAL;
        }
    }
    *w = '\0';
    *out = o;
    return 0;
}

/* A result code that says the connection (or the server) cannot be
 * trusted any more: close it; the call is -EAGAIN. */
static bool conn_lost(int rc)
{
    return rc == LDAP_SERVER_DOWN || rc == LDAP_TIMEOUT || rc == LDAP_CONNECT_ERROR ||
           rc == LDAP_TIMELIMIT_EXCEEDED || rc == LDAP_BUSY || rc == LDAP_UNAVAILABLE ||
           rc == LDAP_UNWILLING_TO_PERFORM || rc == LDAP_LOCAL_ERROR ||
           rc == LDAP_ENCODING_ERROR || rc == LDAP_DECODING_ERROR || rc == LDAP_OTHER ||
           rc == LDAP_NO_MEMORY;
}

static int simple_bind(LDAP *ld, const char *dn, const char *pw)
{
    struct berval cred = {.bv_val = (char *)pw, .bv_len = pw ? strlen(pw) : 0};
    return ldap_sasl_bind_s(ld, dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
}

static void conn_close(struct lconn *c)
{
    if (c->ld)
        ldap_unbind_ext_s(c->ld, NULL, NULL);
    c->ld = NULL;
}

static int conn_new(userdb_dir *d, struct lconn *c);

/* Has the server spoken on, or closed, an idle connection?  Nothing is
 * outstanding on it, so anything to read is unsolicited: a Notice of
 * Disconnection (RFC 4511 4.4.1, which slapd sends when it shuts down)
 * or the end of the stream.  Such a connection is dropped unread: it is
 * of no use, and libldap 2.5 does not free a Notice of Disconnection it
 * reads (try_read1msg returns -1 with the message's BerElement still
 * allocated): 117 bytes per connection and directory restart.  A search
 * in flight when the directory shuts down still meets that, and there is
 * nothing to do about it here (see core/server/main_sanitize.c). */
static bool conn_stale(struct lconn *c)
{
    int fd = -1;
    if (ldap_get_option(c->ld, LDAP_OPT_DESC, &fd) != LDAP_OPT_SUCCESS || fd < 0)
        return false;       /* not connected yet: the next call connects */
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    return poll(&p, 1, 0) != 0;
}

/* An idle connection the server still holds, or a new one. */
static int conn_get(userdb_dir *d, struct lconn *c)
{
    for (;;) {
        pthread_mutex_lock(&d->lock);
        if (!d->nidle)
            break;
        *c = d->idle[--d->nidle];
        pthread_mutex_unlock(&d->lock);
        if (!conn_stale(c)) {
            c->reused = true;
            return 0;
        }
        conn_close(c);
    }
    pthread_mutex_unlock(&d->lock);
    return conn_new(d, c);
}

static int conn_new(userdb_dir *d, struct lconn *c)
{
    c->ld = NULL;
    c->service = false;
    c->reused = false;
    c->down = false;
    c->user_bound = false;
    int rc = ldap_initialize(&c->ld, d->uri);
    if (rc != LDAP_SUCCESS) {
        userdb_dir_error("ldap %s: %s", d->uri, ldap_err2string(rc));
        return -EAGAIN;
    }
    int v3 = LDAP_VERSION3;
    struct timeval tv = {.tv_sec = d->timeout_ms / 1000,
                         .tv_usec = (d->timeout_ms % 1000) * 1000};
    ldap_set_option(c->ld, LDAP_OPT_PROTOCOL_VERSION, &v3);
    ldap_set_option(c->ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
    ldap_set_option(c->ld, LDAP_OPT_TIMEOUT, &tv);
    ldap_set_option(c->ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
    return 0;
}

static void conn_put(userdb_dir *d, struct lconn *c)
{
    pthread_mutex_lock(&d->lock);
    if (d->nidle == d->capidle) {
        size_t cap = d->capidle ? d->capidle * 2 : 4;
        struct lconn *v = realloc(d->idle, cap * sizeof *v);
        if (!v) {
            pthread_mutex_unlock(&d->lock);
            conn_close(c);
            return;
        }
        d->idle = v;
        d->capidle = cap;
    }
    d->idle[d->nidle++] = *c;
    pthread_mutex_unlock(&d->lock);
}

/* The connection bound as the service (anonymous: nothing to do). */
static int conn_service(userdb_dir *d, struct lconn *c)
{
    if (c->service)
        return 0;
    /* Anonymous (no bind_dn) needs a bind only to drop the identity of a
     * user bound on this connection before (RFC 4513 5.1.1: an empty name
     * and password). */
    if (*d->bind_dn || c->user_bound) {
        int rc = simple_bind(c->ld, d->bind_dn, *d->bind_dn ? d->bind_pw : "");
        c->user_bound = false;
        c->down = rc == LDAP_SERVER_DOWN;
        if (rc != LDAP_SUCCESS) {
            userdb_dir_error("ldap %s: bind as %s: %s", d->uri, d->bind_dn,
                             ldap_err2string(rc));
            return -EAGAIN;
        }
    }
    c->service = true;
    return 0;
}

/* Search for user's entry: *dn (ldap_memfree) and its record; with
 * secrets, the userPassword values too (ber_bvecfree).  0, -ENOENT,
 * -EAGAIN (connection closed), -EIO (more than one entry). */
static int find_user(userdb_dir *d, struct lconn *c, const char *user, char **dn,
                     userdb_rec *rec, struct berval ***secrets)
{
    *dn = NULL;
    if (secrets)
        *secrets = NULL;
    char *filter = NULL;
    int rc = userdb_ldap_filter(d->filter, user, &filter);
    if (rc < 0)
        return rc;
    char *attrs[LDAP_MAX_ATTRS + 2];
    size_t na = 0;
    for (size_t i = 0; i < d->nattrs; i++)
        attrs[na++] = d->attr[i];
    if (secrets)
        attrs[na++] = "userPassword";
    attrs[na] = NULL;
    if (!na)
        attrs[na++] = LDAP_NO_ATTRS, attrs[na] = NULL;
    struct timeval tv = {.tv_sec = d->timeout_ms / 1000,
                         .tv_usec = (d->timeout_ms % 1000) * 1000};
    LDAPMessage *res = NULL;
    int lr;
    for (;;) {
        lr = (rc = conn_service(d, c)) < 0 ? LDAP_SUCCESS
             : ldap_search_ext_s(c->ld, d->base, LDAP_SCOPE_SUBTREE, filter, attrs, 0, NULL,
                                 NULL, &tv, 2, &res);
        /* A pooled connection the server dropped while it sat idle (the
         * directory restarted): once more on a new one, so that the first
         * user after a restart is not refused.  A timeout is not retried:
         * the bound is the bound. */
        bool down = rc < 0 ? c->down : lr == LDAP_SERVER_DOWN;
        if (!down || !c->reused)
            break;
        ldap_msgfree(res);
        res = NULL;
        conn_close(c);
        if ((rc = conn_new(d, c)) < 0)
            break;
    }
    free(filter);
    if (rc < 0)
        return rc;
    if (lr == LDAP_SIZELIMIT_EXCEEDED) {
        ldap_msgfree(res);
        userdb_dir_error("ldap %s: more than one entry for %s: check ldap_filter", d->uri,
                         user);
        return -EIO;
    }
    if (lr != LDAP_SUCCESS) {
        ldap_msgfree(res);
        userdb_dir_error("ldap %s: search: %s", d->uri, ldap_err2string(lr));
        return lr == LDAP_NO_SUCH_OBJECT ? -EIO : -EAGAIN;
    }
    LDAPMessage *e = ldap_first_entry(c->ld, res);
    if (!e) {
        ldap_msgfree(res);
        return -ENOENT;
    }
    if (!(*dn = ldap_get_dn(c->ld, e)) || !(rec->name = strdup(user))) {
        ldap_msgfree(res);
        if (*dn)
            ldap_memfree(*dn);
        *dn = NULL;
        return -ENOMEM;
    }
    rc = 0;
    for (size_t i = 0; i < d->nattrs && rc == 0; i++) {
        struct berval **v = ldap_get_values_len(c->ld, e, d->attr[i]);
        if (v && v[0] && !strcmp(d->field[i], "user")) {
            /* the name as the directory spells it (see userdb_dir.h) */
            char *n = strndup(v[0]->bv_val, v[0]->bv_len);
            if (!n) {
                rc = -ENOMEM;
            } else {
                free(rec->name);
                rec->name = n;
            }
        } else if (v && v[0]) {
            int r = userdb_extra_add(&rec->extra, d->field[i], v[0]->bv_val, v[0]->bv_len);
            if (r == -ENOMEM)
                rc = r;
            /* a value that cannot be a field (blanks) is left out */
        }
        ldap_value_free_len(v);
    }
    if (secrets && rc == 0)
        *secrets = ldap_get_values_len(c->ld, e, "userPassword");
    ldap_msgfree(res);
    if (rc < 0) {
        ldap_memfree(*dn);
        *dn = NULL;
        userdb_rec_free(rec);
    }
    return rc;
}

/* After a call: keep the connection for the next one, or close it when
 * its state is in doubt. */
static int finish(userdb_dir *d, struct lconn *c, int rc)
{
    if (rc == -EAGAIN)
        conn_close(c);
    else
        conn_put(d, c);
    return rc;
}

static int l_lookup(userdb_dir *d, const char *user, userdb_rec *rec)
{
    struct lconn c;
    int rc = conn_get(d, &c);
    if (rc < 0)
        return rc;
    char *dn;
    rc = find_user(d, &c, user, &dn, rec, NULL);
    if (dn)
        ldap_memfree(dn);
    return finish(d, &c, rc);
}

static int l_verify(userdb_dir *d, const char *user, const char *password, userdb_rec *rec)
{
    /* RFC 4513 5.1.2: a simple bind with a DN and an empty password is an
     * unauthenticated bind, which servers may accept: never a login. */
    if (!*password)
        return -EACCES;
    struct lconn c;
    int rc = conn_get(d, &c);
    if (rc < 0)
        return rc;
    char *dn;
    struct berval **sec = NULL;
    rc = find_user(d, &c, user, &dn, rec, d->auth_bind ? NULL : &sec);
    if (rc < 0)
        return finish(d, &c, rc);
    if (d->auth_bind) {
        c.service = false;      /* whatever the answer: bound as someone else */
        c.user_bound = true;
        int lr = simple_bind(c.ld, dn, password);
        if (lr == LDAP_INVALID_CREDENTIALS) {
            rc = -EACCES;
        } else if (lr != LDAP_SUCCESS) {
            userdb_dir_error("ldap %s: bind as %s: %s", d->uri, dn, ldap_err2string(lr));
            rc = conn_lost(lr) ? -EAGAIN : -EIO;
        }
    } else {
        rc = -EACCES;       /* no userPassword readable: no login */
        for (size_t i = 0; sec && sec[i]; i++) {
            char *s = strndup(sec[i]->bv_val, sec[i]->bv_len);
            if (!s) {
                rc = -ENOMEM;
                break;
            }
            int r = passwd_check_secret(s, password);
            memset(s, 0, strlen(s));
            free(s);
            if (r == 0 || r == -ENOMEM) {
                rc = r;
                break;
            }
        }
        ldap_value_free_len(sec);
    }
    ldap_memfree(dn);
    if (rc < 0)
        userdb_rec_free(rec);
    return finish(d, &c, rc);
}

static int l_set_route(userdb_dir *d, const char *user, const char *host, unsigned port)
{
    const char *ha = NULL, *pa = NULL;
    for (size_t i = 0; i < d->nattrs; i++) {
        if (!strcmp(d->field[i], "host"))
            ha = d->attr[i];
        if (!strcmp(d->field[i], "port"))
            pa = d->attr[i];
    }
    if (!ha) {
        userdb_dir_error("ldap: ldap_attrs maps no attribute to host");
        return -EINVAL;
    }
    struct lconn c;
    int rc = conn_get(d, &c);
    if (rc < 0)
        return rc;
    char *dn;
    userdb_rec r = {0};
    rc = find_user(d, &c, user, &dn, &r, NULL);
    userdb_rec_free(&r);
    if (rc < 0)
        return finish(d, &c, rc);
    char pbuf[12];
    snprintf(pbuf, sizeof pbuf, "%u", port);
    char *hv[] = {(char *)host, NULL}, *pv[] = {pbuf, NULL};
    /* RFC 4511 4.6: "A replace with no value will delete the entire
     * attribute if it exists, and it is ignored if the attribute does not
     * exist": one atomic modify whatever was there. */
    LDAPMod mh = {.mod_op = LDAP_MOD_REPLACE, .mod_type = (char *)ha,
                  .mod_values = host ? hv : NULL};
    LDAPMod mp = {.mod_op = LDAP_MOD_REPLACE, .mod_type = (char *)pa,
                  .mod_values = port ? pv : NULL};
    LDAPMod *mods[3] = {&mh, pa ? &mp : NULL, NULL};
    int lr = ldap_modify_ext_s(c.ld, dn, mods, NULL, NULL);
    if (lr != LDAP_SUCCESS) {
        userdb_dir_error("ldap %s: modify %s: %s", d->uri, dn, ldap_err2string(lr));
        rc = conn_lost(lr) ? -EAGAIN : -EIO;
    }
    ldap_memfree(dn);
    return finish(d, &c, rc);
}

static void l_close(userdb_dir *d)
{
    for (size_t i = 0; i < d->nidle; i++)
        conn_close(&d->idle[i]);
    free(d->idle);
    for (size_t i = 0; i < d->nattrs; i++) {
        free(d->attr[i]);
        free(d->field[i]);
    }
    if (d->bind_pw)
        memset(d->bind_pw, 0, strlen(d->bind_pw));
    free(d->uri);
    free(d->base);
    free(d->bind_dn);
    free(d->bind_pw);
    free(d->filter);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

static const userdb_dir_ops ldap_ops = {
    .verify = l_verify, .lookup = l_lookup, .set_route = l_set_route, .close = l_close,
};

/* "attr=field,attr=field" */
static int parse_attrs(userdb_dir *d, const char *s)
{
    while (s && *s) {
        while (*s == ',' || *s == ' ')
            s++;
        if (!*s)
            break;
        size_t n = strcspn(s, ",");
        const char *eq = memchr(s, '=', n);
        if (!eq || eq == s || eq == s + n - 1 || d->nattrs == LDAP_MAX_ATTRS)
            return -EINVAL;
        size_t fl = (size_t)(s + n - eq - 1);
        while (fl && eq[fl] == ' ')
            fl--;
        d->attr[d->nattrs] = strndup(s, (size_t)(eq - s));
        d->field[d->nattrs] = strndup(eq + 1, fl);
        if (!d->attr[d->nattrs] || !d->field[d->nattrs])
            return -ENOMEM;
        d->nattrs++;
        s += n;
    }
    return 0;
}

static char *dup0(const char *s)
{
    return strdup(s ? s : "");
}

int userdb_ldap_open(const userdb_params *p, userdb_dir **out, const userdb_dir_ops **ops,
                     const char **why)
{
    *out = NULL;
    *ops = &ldap_ops;
    userdb_dir *d = calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    pthread_mutex_init(&d->lock, NULL);
    d->timeout_ms = p->timeout_ms ? p->timeout_ms : 5000;
    d->uri = dup0(p->ldap_uri);
    d->base = dup0(p->ldap_base);
    d->bind_dn = dup0(p->ldap_bind_dn);
    d->bind_pw = dup0(p->ldap_bind_password);
    d->filter = dup0(p->ldap_filter);
    const char *auth = p->ldap_auth && *p->ldap_auth ? p->ldap_auth : "search";
    d->auth_bind = !strcmp(auth, "bind");
    int rc = 0;
    char *probe = NULL;
    if (!d->uri || !d->base || !d->bind_dn || !d->bind_pw || !d->filter) {
        rc = -ENOMEM;
    } else if (!*d->uri || ldap_is_ldap_url(d->uri) == 0) {
        *why = "ldap_uri: not an LDAP URI (ldap://host:port/, ldaps://, ldapi://)";
        rc = -EINVAL;
    } else if (!*d->filter || (rc = userdb_ldap_filter(d->filter, "x", &probe)) < 0 ||
               !strstr(d->filter, "%u")) {
        *why = "ldap_filter: must name the user with %u (and no other % but %%)";
        rc = -EINVAL;
    } else if (strcmp(auth, "search") && strcmp(auth, "bind")) {
        *why = "ldap_auth: search or bind";
        rc = -EINVAL;
    } else if ((rc = parse_attrs(d, p->ldap_attrs)) < 0) {
        *why = "ldap_attrs: attribute=field, separated by commas";
    }
    free(probe);
    if (rc < 0) {
        l_close(d);
        return rc;
    }
    *out = d;
    return 0;
}
