/* core/abuse.c — see abuse.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/abuse.h"

#define NBUCKETS 4096
#define FAIL_MEMORY_S 900

struct counter {
    char *key;              /* "i:<ip>" or "u:<user>" */
    unsigned conns;
    unsigned fails;
    time_t last_fail;
    struct counter *next;
};

struct cidr {
    int family;
    uint8_t addr[16];
    unsigned bits;
};

struct abuse {
    pthread_mutex_t lock;
    struct counter *b[NBUCKETS];
    struct cidr *trusted;
    size_t ntrusted;
};

static size_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)(h % NBUCKETS);
}

/* The counter for kind+name, created when `create`. Lock held. */
static struct counter *get(abuse *a, char kind, const char *name, bool create)
{
    char key[300];
    size_t n = strlen(name);
    if (n > sizeof key - 3)
        n = sizeof key - 3;
    key[0] = kind;
    key[1] = ':';
    memcpy(key + 2, name, n);
    key[n + 2] = '\0';
    size_t h = hash(key);
    for (struct counter *c = a->b[h]; c; c = c->next)
        if (!strcmp(c->key, key))
            return c;
    if (!create)
        return NULL;
    struct counter *c = calloc(1, sizeof *c);
    if (!c || !(c->key = strdup(key))) {
        free(c);
        return NULL;
    }
    c->next = a->b[h];
    a->b[h] = c;
    return c;
}

/* Drop a counter that holds nothing any more. Lock held. */
static void tidy(abuse *a, struct counter *c, time_t now)
{
    if (c->conns || (c->fails && now - c->last_fail < FAIL_MEMORY_S))
        return;
    for (struct counter **pp = &a->b[hash(c->key)]; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            free(c->key);
            free(c);
            return;
        }
}

static int parse_cidr(const char *s, struct cidr *out)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n >= sizeof buf)
        return -EINVAL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, buf, out->addr) == 1)
        out->family = AF_INET;
    else if (inet_pton(AF_INET6, buf, out->addr) == 1)
        out->family = AF_INET6;
    else
        return -EINVAL;
    unsigned max = out->family == AF_INET ? 32 : 128;
    out->bits = max;
    if (slash) {
        char *end;
        unsigned long b = strtoul(slash + 1, &end, 10);
        if (*end || end == slash + 1 || b > max)
            return -EINVAL;
        out->bits = (unsigned)b;
    }
    return 0;
}

int abuse_new(const char *trusted, abuse **out)
{
    abuse *a = calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    pthread_mutex_init(&a->lock, NULL);
    char *list = strdup(trusted ? trusted : "");
    int rc = list ? 0 : -ENOMEM;
    for (char *save = NULL, *t = list ? strtok_r(list, ", \t", &save) : NULL; t && rc == 0;
         t = strtok_r(NULL, ", \t", &save)) {
        struct cidr *n = realloc(a->trusted, (a->ntrusted + 1) * sizeof *n);
        if (!n) {
            rc = -ENOMEM;
            break;
        }
        a->trusted = n;
        rc = parse_cidr(t, &a->trusted[a->ntrusted]);
        if (rc == 0)
            a->ntrusted++;
    }
    free(list);
    if (rc < 0) {
        abuse_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

void abuse_free(abuse *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < NBUCKETS; i++)
        for (struct counter *c = a->b[i], *n; c; c = n) {
            n = c->next;
            free(c->key);
            free(c);
        }
    free(a->trusted);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

const char *abuse_peer_ip(const char *peer, char *buf, size_t n)
{
    const char *start = peer, *end;
    if (*peer == '[') {
        start = peer + 1;
        end = strchr(start, ']');
    } else {
        end = strrchr(peer, ':');
    }
    size_t len = end ? (size_t)(end - start) : strlen(start);
    if (len >= n)
        len = n - 1;
    memcpy(buf, start, len);
    buf[len] = '\0';
    return buf;
}

bool abuse_trusted(const abuse *a, const char *ip)
{
    struct cidr c;
    if (parse_cidr(ip, &c) < 0)
        return false;
    for (size_t i = 0; i < a->ntrusted; i++) {
        const struct cidr *t = &a->trusted[i];
        if (t->family != c.family)
            continue;
        unsigned full = t->bits / 8, rest = t->bits % 8;
        if (memcmp(t->addr, c.addr, full))
            continue;
        if (rest && ((t->addr[full] ^ c.addr[full]) & (0xff << (8 - rest))))
            continue;
        return true;
    }
    return false;
}

static bool open_one(abuse *a, char kind, const char *name, unsigned max)
{
    pthread_mutex_lock(&a->lock);
    struct counter *c = get(a, kind, name, true);
    bool ok = !c || !max || c->conns < max;   /* without memory: let it in */
    if (c && ok)
        c->conns++;
    pthread_mutex_unlock(&a->lock);
    return ok;
}

static void close_one(abuse *a, char kind, const char *name)
{
    pthread_mutex_lock(&a->lock);
    struct counter *c = get(a, kind, name, false);
    if (c && c->conns) {
        c->conns--;
        tidy(a, c, time(NULL));
    }
    pthread_mutex_unlock(&a->lock);
}

bool abuse_conn_open(abuse *a, const char *ip, unsigned max) { return open_one(a, 'i', ip, max); }
void abuse_conn_close(abuse *a, const char *ip) { close_one(a, 'i', ip); }
bool abuse_user_open(abuse *a, const char *user, unsigned max) { return open_one(a, 'u', user, max); }
void abuse_user_close(abuse *a, const char *user) { close_one(a, 'u', user); }

unsigned abuse_login_failed(abuse *a, const char *ip, const char *user)
{
    time_t now = time(NULL);
    unsigned worst = 1;
    pthread_mutex_lock(&a->lock);
    for (int k = 0; k < 2; k++) {
        const char *name = k ? user : ip;
        if (!name || !*name)
            continue;
        struct counter *c = get(a, k ? 'u' : 'i', name, true);
        if (!c)
            continue;
        if (now - c->last_fail >= FAIL_MEMORY_S)
            c->fails = 0;
        if (c->fails < 1000000)
            c->fails++;
        c->last_fail = now;
        if (c->fails > worst)
            worst = c->fails;
    }
    pthread_mutex_unlock(&a->lock);
    return worst;
}

void abuse_login_ok(abuse *a, const char *ip, const char *user)
{
    time_t now = time(NULL);
    pthread_mutex_lock(&a->lock);
    for (int k = 0; k < 2; k++) {
        struct counter *c = get(a, k ? 'u' : 'i', k ? user : ip, false);
        if (c) {
            c->fails = 0;
            tidy(a, c, now);
        }
    }
    pthread_mutex_unlock(&a->lock);
}
