/* core/auth/userdb.c — the directory of users over the passwd-file.
 * See userdb.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/auth/userdb.h"

struct userdb {
    passwd_db *pw;
    char *path;         /* the passwd-file, for userdb_set_route */
};

int userdb_open(const userdb_params *p, userdb **out)
{
    *out = NULL;
    userdb *db = calloc(1, sizeof *db);
    if (!db)
        return -ENOMEM;
    int rc = passwd_open(p->passwd_file, &db->pw);
    if (rc < 0) {
        free(db);
        return rc;
    }
    if (!(db->path = strdup(p->passwd_file))) {
        passwd_close(db->pw);
        free(db);
        return -ENOMEM;
    }
    *out = db;
    return 0;
}

void userdb_close(userdb *db)
{
    if (!db)
        return;
    passwd_close(db->pw);
    free(db->path);
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

/* The passwd-file line of user without "user:" (malloc'd), or -ENOENT. */
static int line_of(const char *path, const char *user, char **out)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    size_t ul = strlen(user), cap = 0;
    char *buf = NULL;
    ssize_t k;
    int rc = -ENOENT;
    while ((k = getline(&buf, &cap, f)) > 0) {
        while (k > 0 && (buf[k - 1] == '\n' || buf[k - 1] == '\r'))
            buf[--k] = '\0';
        if ((size_t)k > ul && !strncmp(buf, user, ul) && buf[ul] == ':') {
            rc = (*out = strdup(buf + ul + 1)) ? 0 : -ENOMEM;
            break;
        }
    }
    free(buf);
    fclose(f);
    return rc;
}

int userdb_set_route(userdb *db, const char *user, const char *host, unsigned port)
{
    if (!host || !*host || port < 1 || port > 65535)
        return -EINVAL;
    for (const char *h = host; *h; h++)
        if ((unsigned char)*h <= ' ' || *h == 0x7f)
            return -EINVAL;
    char *rest = NULL, *nbuf = NULL;
    size_t nlen = 0;
    int rc = line_of(db->path, user, &rest);
    if (rc < 0)
        return rc;
    FILE *m = open_memstream(&nbuf, &nlen);
    if (!m) {
        free(rest);
        return -ENOMEM;
    }
    /* Six ':' end the six fields after the name (password, uid, gid,
     * gecos, home, shell); the rest of the line is the extra fields, which
     * may hold ':' themselves (userdb_quota_rule=*:storage=1G).  A short
     * line gets its empty fields. */
    char *p = rest;
    for (int i = 0; i < 6; i++) {
        char *c = strchr(p, ':');
        if (c) {
            fwrite(p, 1, (size_t)(c - p) + 1, m);
            p = c + 1;
        } else {
            fputs(p, m);
            fputc(':', m);
            p += strlen(p);
        }
    }
    /* Every field but host and port is kept, in its order; the route goes
     * last. */
    for (char *save = NULL, *t = strtok_r(p, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
        const char *name = !strncmp(t, "userdb_", 7) ? t + 7 : t;
        if (!strncmp(name, "host=", 5) || !strncmp(name, "port=", 5))
            continue;
        fprintf(m, "%s ", t);
    }
    fprintf(m, "host=%s port=%u", host, port);
    if (fclose(m) != 0) {
        free(rest);
        free(nbuf);
        return -ENOMEM;
    }
    rc = passwd_file_set(db->path, user, nbuf, true);
    free(rest);
    free(nbuf);
    return rc;
}
