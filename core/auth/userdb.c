/* core/auth/userdb.c — the directory of users: the passwd-file, or a
 * directory server (userdb_ldap.c, userdb_pg.c) with a cache of its
 * records in front.  See userdb.h. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/auth/userdb.h"
#include "core/auth/userdb_dir.h"

/* ---- the record cache (directories only) ----
 * A directory's answers, kept cache_ttl_s so that LMTP and quota do not
 * ask the directory per message; only found users (a failure, -ENOENT or
 * -EAGAIN is asked again next time).  An entry older than the TTL stays
 * until replaced, evicted or flushed: userdb_lookup refreshes it, and
 * userdb_lookup_cached still answers with it (a worker's loop has nothing
 * better) and says it is old. */
#define RCACHE_MAX 16384
#define RCACHE_BUCKETS 4096

struct rentry {
    struct rentry *next;        /* bucket chain */
    char *key;                  /* the name asked for */
    userdb_rec rec;
    uint64_t at_ms;             /* when the directory said so */
};

struct userdb {
    passwd_db *pw;
    char *passwd_path;
    userdb_dir *dir;            /* NULL: the passwd-file */
    const userdb_dir_ops *ops;
    uint64_t ttl_ms;
    _Atomic uint64_t gen;       /* directories: userdb_generation */
    pthread_mutex_t lock;       /* the cache */
    struct rentry *bucket[RCACHE_BUCKETS];
    size_t nentries;
};

static _Thread_local char last_error[256];

void userdb_dir_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    /* libpq's messages span lines: one log line */
    for (char *p = last_error; *p; p++)
        if ((unsigned char)*p < ' ')
            *p = ' ';
    for (size_t n = strlen(last_error); n && last_error[n - 1] == ' ';)
        last_error[--n] = '\0';
}

const char *userdb_error(void)
{
    return last_error;
}

uint64_t userdb_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static size_t rhash(const char *k)
{
    uint64_t h = 1469598103934665603ull;    /* FNV-1a */
    for (; *k; k++)
        h = (h ^ (unsigned char)*k) * 1099511628211ull;
    return (size_t)(h % RCACHE_BUCKETS);
}

static void rentry_free(struct rentry *e)
{
    free(e->key);
    userdb_rec_free(&e->rec);
    free(e);
}

static int rec_copy(const userdb_rec *from, userdb_rec *to)
{
    to->name = strdup(from->name);
    to->extra = from->extra ? strdup(from->extra) : NULL;
    if (!to->name || (from->extra && !to->extra)) {
        userdb_rec_free(to);
        return -ENOMEM;
    }
    return 0;
}

static size_t rcache_clear(userdb *db)
{
    size_t n = db->nentries;
    for (size_t i = 0; i < RCACHE_BUCKETS; i++) {
        while (db->bucket[i]) {
            struct rentry *e = db->bucket[i];
            db->bucket[i] = e->next;
            rentry_free(e);
        }
    }
    db->nentries = 0;
    return n;
}

/* 0 fresh, 1 old, -EWOULDBLOCK none; *rec a copy. */
static int rcache_get(userdb *db, const char *user, userdb_rec *rec)
{
    int rc = -EWOULDBLOCK;
    pthread_mutex_lock(&db->lock);
    for (struct rentry *e = db->bucket[rhash(user)]; e; e = e->next)
        if (!strcmp(e->key, user)) {
            bool fresh = userdb_now_ms() - e->at_ms < db->ttl_ms;
            rc = rec_copy(&e->rec, rec);
            if (rc == 0)
                rc = fresh ? 0 : 1;
            break;
        }
    pthread_mutex_unlock(&db->lock);
    return rc;
}

static void rcache_drop(userdb *db, const char *user)
{
    pthread_mutex_lock(&db->lock);
    for (struct rentry **pp = &db->bucket[rhash(user)]; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->key, user)) {
            struct rentry *e = *pp;
            *pp = e->next;
            rentry_free(e);
            db->nentries--;
            break;
        }
    pthread_mutex_unlock(&db->lock);
}

/* Kept even with a TTL of 0: such an entry is old at once, so
 * userdb_lookup always asks the directory, but a worker, which cannot
 * ask, still has the last answer (quota of a logged-in user). */
static void rcache_put(userdb *db, const char *user, const userdb_rec *rec)
{
    struct rentry *e = calloc(1, sizeof *e);
    if (!e || !(e->key = strdup(user)) || rec_copy(rec, &e->rec) < 0) {
        if (e)
            free(e->key);
        free(e);
        return;         /* not kept: asked again next time */
    }
    e->at_ms = userdb_now_ms();
    rcache_drop(db, user);
    pthread_mutex_lock(&db->lock);
    if (db->nentries >= RCACHE_MAX) {
        /* Full: the old entries go first; if all are fresh, all go (a
         * cold start asks again, which is what a cache must survive). */
        uint64_t now = userdb_now_ms();
        for (size_t i = 0; i < RCACHE_BUCKETS; i++)
            for (struct rentry **pp = &db->bucket[i]; *pp;) {
                if (now - (*pp)->at_ms >= db->ttl_ms) {
                    struct rentry *o = *pp;
                    *pp = o->next;
                    rentry_free(o);
                    db->nentries--;
                } else {
                    pp = &(*pp)->next;
                }
            }
        if (db->nentries >= RCACHE_MAX)
            rcache_clear(db);
    }
    size_t b = rhash(user);
    e->next = db->bucket[b];
    db->bucket[b] = e;
    db->nentries++;
    pthread_mutex_unlock(&db->lock);
}

/* ---- the interface ---- */

int userdb_open(const userdb_params *p, userdb **out, const char **why)
{
    *out = NULL;
    const char *dummy;
    if (!why)
        why = &dummy;
    *why = NULL;
    userdb *db = calloc(1, sizeof *db);
    if (!db)
        return -ENOMEM;
    pthread_mutex_init(&db->lock, NULL);
    atomic_init(&db->gen, 1);
    db->ttl_ms = (uint64_t)p->cache_ttl_s * 1000u;
    int rc = -ENOMEM;
    if (!(db->passwd_path = strdup(p->passwd_file)))
        goto fail;
    const char *kind = p->kind && *p->kind ? p->kind : "passwd-file";
    if (!strcmp(kind, "ldap")) {
        rc = userdb_ldap_open(p, &db->dir, &db->ops, why);
    } else if (!strcmp(kind, "pgsql")) {
        rc = userdb_pg_open(p, &db->dir, &db->ops, why);
    } else if (strcmp(kind, "passwd-file")) {
        *why = "userdb: not passwd-file, ldap or pgsql";
        rc = -EINVAL;
    } else {
        rc = 0;
    }
    if (rc < 0)
        goto fail;
    /* The passwd-file is opened in every case: SCRAM credentials, and
     * ringmail-admin's users, come from it. */
    if ((rc = passwd_open(p->passwd_file, &db->pw)) < 0)
        goto fail;
    *out = db;
    return 0;
fail:
    userdb_close(db);
    return rc;
}

void userdb_close(userdb *db)
{
    if (!db)
        return;
    if (db->dir)
        db->ops->close(db->dir);
    rcache_clear(db);
    pthread_mutex_destroy(&db->lock);
    if (db->pw)
        passwd_close(db->pw);
    free(db->passwd_path);
    free(db);
}

passwd_db *userdb_passwd(userdb *db)
{
    return db->pw;
}

bool userdb_is_directory(const userdb *db)
{
    return db->dir != NULL;
}

uint64_t userdb_generation(userdb *db)
{
    return db->dir ? atomic_load(&db->gen) : passwd_generation(db->pw);
}

uint64_t userdb_generation_nowait(userdb *db)
{
    return db->dir ? atomic_load(&db->gen) : passwd_generation_nowait(db->pw);
}

size_t userdb_flush(userdb *db)
{
    atomic_fetch_add(&db->gen, 1);
    pthread_mutex_lock(&db->lock);
    size_t n = rcache_clear(db);
    pthread_mutex_unlock(&db->lock);
    return n;
}

void userdb_rec_free(userdb_rec *rec)
{
    if (!rec)
        return;
    free(rec->name);
    free(rec->extra);
    rec->name = rec->extra = NULL;
}

/* A directory that says how it spells the name (userdb_dir.h): without
 * fold, only that spelling is the user (r is freed if not). */
static bool exact(userdb_rec *r, const char *user, bool fold)
{
    if (fold || !strcmp(r->name, user))
        return true;
    userdb_rec_free(r);
    return false;
}

static int deliver(userdb_rec *r, userdb_rec *rec)
{
    if (rec)
        *rec = *r;
    else
        userdb_rec_free(r);
    return 0;
}

int userdb_lookup(userdb *db, const char *user, bool fold, userdb_rec *rec)
{
    userdb_rec r = {0};
    int rc;
    if (!db->dir) {
        if ((rc = passwd_lookup(db->pw, user, fold, &r.name, &r.extra)) < 0)
            return rc;
        return deliver(&r, rec);
    }
    if (rcache_get(db, user, &r) == 0)
        return exact(&r, user, fold) ? deliver(&r, rec) : -ENOENT;
    userdb_rec_free(&r);
    last_error[0] = '\0';
    if ((rc = db->ops->lookup(db->dir, user, &r)) < 0)
        return rc;
    rcache_put(db, user, &r);
    return exact(&r, user, fold) ? deliver(&r, rec) : -ENOENT;
}

int userdb_lookup_cached(userdb *db, const char *user, bool fold, userdb_rec *rec)
{
    if (!db->dir)
        return userdb_lookup(db, user, fold, rec);
    userdb_rec r = {0};
    int rc = rcache_get(db, user, &r);
    if (rc < 0)
        return rc;
    if (!exact(&r, user, fold))
        return -ENOENT;
    deliver(&r, rec);
    return rc;
}

int userdb_verify(userdb *db, const char *user, const char *password, userdb_rec *rec,
                  unsigned *answer_delay_ms)
{
    unsigned delay = 0;
    int rc;
    if (db->dir) {
        userdb_rec r = {0};
        last_error[0] = '\0';
        rc = db->ops->verify(db->dir, user, password, &r);
        if (rc == 0 && !exact(&r, user, false))
            rc = -ENOENT;       /* "ALICE" is not alice's login */
        if (rc == -ENOENT) {
            /* As passwd_verify_timed: no hash was needed, so the answer
             * waits as long as one, and reads like a wrong password. */
            delay = passwd_unknown_delay_ms(password);
            rc = -EACCES;
        }
        if (answer_delay_ms)
            *answer_delay_ms = delay;
        if (rc == 0) {
            rcache_put(db, user, &r);
            deliver(&r, rec);
        }
        return rc;
    }
    rc = passwd_verify_timed(db->pw, user, password, &delay);
    if (answer_delay_ms)
        *answer_delay_ms = delay;
    if (rc < 0 || !rec)
        return rc;
    /* The file may change between the two reads: a user removed meanwhile
     * is refused, as a moment later it would be. */
    rc = passwd_lookup(db->pw, user, false, &rec->name, &rec->extra);
    return rc == -ENOENT ? -EACCES : rc;
}

int userdb_extra_add(char **extra, const char *key, const char *value, size_t vlen)
{
    for (size_t i = 0; i < vlen; i++)
        if ((unsigned char)value[i] <= ' ' || value[i] == 0x7f)
            return -EINVAL;
    size_t old = *extra ? strlen(*extra) : 0;
    char *n = realloc(*extra, old + strlen(key) + vlen + 3);
    if (!n)
        return -ENOMEM;
    sprintf(n + old, "%s%s=%.*s", old ? " " : "", key, (int)vlen, value);
    *extra = n;
    return 0;
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
    if (db->dir) {
        last_error[0] = '\0';
        rc = db->ops->set_route(db->dir, user, host, port);
        rcache_drop(db, user);
        return rc;
    }
    return passwd_set_route(db->passwd_path, user, host, port);
}
