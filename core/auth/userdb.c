/* core/auth/userdb.c — the directory of users over the passwd-file.
 * See userdb.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/auth/userdb.h"

struct userdb {
    passwd_db *pw;
    char *passwd_path;
};

int userdb_open(const userdb_params *p, userdb **out)
{
    *out = NULL;
    userdb *db = calloc(1, sizeof *db);
    if (!db)
        return -ENOMEM;
    if (!(db->passwd_path = strdup(p->passwd_file))) {
        free(db);
        return -ENOMEM;
    }
    int rc = passwd_open(p->passwd_file, &db->pw);
    if (rc < 0) {
        free(db->passwd_path);
        free(db);
        return rc;
    }
    *out = db;
    return 0;
}

void userdb_close(userdb *db)
{
    if (!db)
        return;
    passwd_close(db->pw);
    free(db->passwd_path);
    free(db);
}

passwd_db *userdb_passwd(userdb *db)
{
    return db->pw;
}

void userdb_rec_free(userdb_rec *rec)
{
    if (!rec)
        return;
    free(rec->name);
    free(rec->extra);
    rec->name = rec->extra = NULL;
}

int userdb_lookup(userdb *db, const char *user, bool fold, userdb_rec *rec)
{
    userdb_rec r = {0};
    int rc = passwd_lookup(db->pw, user, fold, &r.name, &r.extra);
    if (rc < 0)
        return rc;
    if (rec)
        *rec = r;
    else
        userdb_rec_free(&r);
    return 0;
}

int userdb_verify(userdb *db, const char *user, const char *password, userdb_rec *rec,
                  unsigned *answer_delay_ms)
{
    unsigned delay = 0;
    int rc = passwd_verify_timed(db->pw, user, password, &delay);
    if (answer_delay_ms)
        *answer_delay_ms = delay;
    if (rc < 0 || !rec)
        return rc;
    /* The file may change between the two reads: a user removed meanwhile
     * is refused, as a moment later it would be. */
    rc = passwd_lookup(db->pw, user, false, &rec->name, &rec->extra);
    return rc == -ENOENT ? -EACCES : rc;
}

const char *userdb_field(const char *extra, const char *key, size_t *len)
{
    size_t klen = strlen(key);
    const char *p = extra;
    while (p && *p) {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *name = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        if ((size_t)(p - name) > 7 && !strncmp(name, "userdb_", 7))
            name += 7;
        if ((size_t)(p - name) > klen && !strncmp(name, key, klen) && name[klen] == '=') {
            *len = (size_t)(p - (name + klen + 1));
            return name + klen + 1;
        }
    }
    return NULL;
}

int userdb_route(const userdb_rec *rec, char **host, unsigned *port)
{
    *host = NULL;
    *port = 0;
    size_t hl = 0, pl = 0;
    const char *h = userdb_field(rec->extra, "host", &hl);
    const char *p = userdb_field(rec->extra, "port", &pl);
    if (p) {
        unsigned v = 0;
        if (!pl || pl > 5)
            return -EINVAL;
        for (size_t i = 0; i < pl; i++) {
            if (p[i] < '0' || p[i] > '9')
                return -EINVAL;
            v = v * 10 + (unsigned)(p[i] - '0');
        }
        if (v < 1 || v > 65535)
            return -EINVAL;
        *port = v;
    }
    if (h && hl) {
        for (size_t i = 0; i < hl; i++)
            if ((unsigned char)h[i] <= ' ' || h[i] == 0x7f)
                return -EINVAL;
        if (!(*host = strndup(h, hl)))
            return -ENOMEM;
    }
    return 0;
}

static bool route_key(const char *f, size_t n)
{
    if (n > 7 && !strncmp(f, "userdb_", 7)) {
        f += 7;
        n -= 7;
    }
    return (n > 5 && !strncmp(f, "host=", 5)) || (n > 5 && !strncmp(f, "port=", 5)) ||
           (n == 5 && (!strncmp(f, "host=", 5) || !strncmp(f, "port=", 5)));
}

/* extra without its host and port fields, then the new ones: malloc'd.
 * The other fields keep their order and spelling. */
static int route_extra(const char *extra, const char *host, unsigned port, char **out)
{
    size_t cap = (extra ? strlen(extra) : 0) + (host ? strlen(host) : 0) + 32;
    char *o = malloc(cap), *w = o;
    if (!o)
        return -ENOMEM;
    for (const char *p = extra; p && *p;) {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *f = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        if (p > f && !route_key(f, (size_t)(p - f))) {
            if (w > o)
                *w++ = ' ';
            memcpy(w, f, (size_t)(p - f));
            w += p - f;
        }
    }
    if (host)
        w += sprintf(w, "%shost=%s", w > o ? " " : "", host);
    if (port)
        w += sprintf(w, "%sport=%u", w > o ? " " : "", port);
    *w = '\0';
    *out = o;
    return 0;
}

static int route_check(const char *host, unsigned port)
{
    if (port > 65535)
        return -EINVAL;
    if (host) {
        if (!*host)
            return -EINVAL;
        for (const char *p = host; *p; p++)
            if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == ':')
                return -EINVAL;
    }
    return 0;
}

/* The passwd-file: "secret:uid:gid:gecos:home:shell:extra"; a shorter line
 * gets the empty fields it lacks before its extra fields. */
static int passwd_set_route(const char *path, const char *user, const char *host,
                            unsigned port)
{
    char *entry = NULL, *extra = NULL, *line = NULL;
    int rc = passwd_file_entry(path, user, &entry);
    if (rc < 0)
        return rc;
    char *p = entry;
    int colons = 0;
    for (; *p && colons < 6; p++)
        if (*p == ':')
            colons++;
    const char *old = colons == 6 ? p : NULL;
    size_t head = colons == 6 ? (size_t)(p - entry) : strlen(entry);
    if ((rc = route_extra(old, host, port, &extra)) < 0)
        goto out;
    line = malloc(head + 6 + strlen(extra) + 1);
    if (!line) {
        rc = -ENOMEM;
        goto out;
    }
    memcpy(line, entry, head);
    size_t n = head;
    for (; colons < 6; colons++)
        line[n++] = ':';
    strcpy(line + n, extra);
    rc = passwd_file_set(path, user, line, true);
out:
    if (entry)
        memset(entry, 0, strlen(entry));
    if (line)
        memset(line, 0, strlen(line));
    free(entry);
    free(extra);
    free(line);
    return rc;
}

int userdb_set_route(userdb *db, const char *user, const char *host, unsigned port)
{
    int rc = route_check(host, port);
    if (rc < 0)
        return rc;
    return passwd_set_route(db->passwd_path, user, host, port);
}
