/* core/auth/abuse.c — see abuse.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/auth/abuse.h"

#define NBUCKETS 4096
#define FAIL_MEMORY_MS 900000u

struct counter {
    char *key;              /* "i:<ip>" or "u:<user>" */
    unsigned conns;
    unsigned pending;       /* password checks admitted, not ended */
    unsigned fails;         /* failed logins in a row */
    uint64_t last_fail;     /* abuse_now_ms() */
    uint64_t next_ok;       /* no check starts before (penalty, reservations) */
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
    size_t ncounters;
    uint64_t last_sweep;        /* abuse_now_ms() of the last full sweep */
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

enum { FIND, CREATE, CREATE_IF_ROOM };

static void sweep(abuse *a);

/* The counter for kind+name, created when `create` (CREATE_IF_ROOM: only
 * below ABUSE_MAX_COUNTERS, for the login accounting; connection counts
 * are bounded by the connections themselves). Lock held. */
static struct counter *get(abuse *a, char kind, const char *name, int create)
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
    if (create == FIND)
        return NULL;
    if (create == CREATE_IF_ROOM && a->ncounters >= ABUSE_MAX_COUNTERS) {
        sweep(a);
        if (a->ncounters >= ABUSE_MAX_COUNTERS)
            return NULL;
    }
    struct counter *c = calloc(1, sizeof *c);
    if (!c || !(c->key = strdup(key))) {
        free(c);
        return NULL;
    }
    c->next = a->b[h];
    a->b[h] = c;
    a->ncounters++;
    return c;
}

uint64_t abuse_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Forget failures older than FAIL_MEMORY_MS. */
static void forget_old(struct counter *c, uint64_t now)
{
    if (c->fails && now - c->last_fail >= FAIL_MEMORY_MS)
        c->fails = 0;
}

/* Drop a counter that holds nothing any more. Lock held. */
static void tidy(abuse *a, struct counter *c, uint64_t now)
{
    forget_old(c, now);
    if (c->conns || c->pending || c->fails || c->next_ok > now)
        return;
    for (struct counter **pp = &a->b[hash(c->key)]; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            free(c->key);
            free(c);
            a->ncounters--;
            return;
        }
}

/* Drop every counter that holds nothing any more (failures forgotten,
 * penalty over), at most once a second: only when the table is full.
 * Lock held. */
static void sweep(abuse *a)
{
    uint64_t now = abuse_now_ms();
    if (a->last_sweep && now - a->last_sweep < 1000)
        return;
    a->last_sweep = now;
    for (size_t i = 0; i < NBUCKETS; i++)
        for (struct counter *c = a->b[i], *n; c; c = n) {
            n = c->next;
            tidy(a, c, now);
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
    struct counter *c = get(a, kind, name, CREATE);
    bool ok = !c || !max || c->conns < max;   /* without memory: let it in */
    if (c && ok)
        c->conns++;
    pthread_mutex_unlock(&a->lock);
    return ok;
}

static void close_one(abuse *a, char kind, const char *name)
{
    pthread_mutex_lock(&a->lock);
    struct counter *c = get(a, kind, name, FIND);
    if (c && c->conns) {
        c->conns--;
        tidy(a, c, abuse_now_ms());
    }
    pthread_mutex_unlock(&a->lock);
}

bool abuse_conn_open(abuse *a, const char *ip, unsigned max) { return open_one(a, 'i', ip, max); }
void abuse_conn_close(abuse *a, const char *ip) { close_one(a, 'i', ip); }
bool abuse_user_open(abuse *a, const char *user, unsigned max) { return open_one(a, 'u', user, max); }
void abuse_user_close(abuse *a, const char *user) { close_one(a, 'u', user); }

/* The penalty after n failures in a row. */
static uint64_t penalty(unsigned base_ms, unsigned n)
{
    if (!n)
        return 0;
    return (uint64_t)base_ms << (n - 1 < 6 ? n - 1 : 6);
}

int abuse_check_begin(abuse *a, const char *ip, const char *user, unsigned base_ms,
                      unsigned max_pending, uint64_t *start_ms)
{
    uint64_t now = abuse_now_ms();
    int rc = 0;
    pthread_mutex_lock(&a->lock);
    /* Without memory for a counter the check goes ahead unthrottled:
     * refusing every login would be worse. */
    struct counter *ci = ip && *ip ? get(a, 'i', ip, CREATE_IF_ROOM) : NULL;
    struct counter *cu = user && *user ? get(a, 'u', user, CREATE_IF_ROOM) : NULL;
    uint64_t start = now;
    for (int k = 0; k < 2; k++) {
        struct counter *c = k ? cu : ci;
        if (!c)
            continue;
        forget_old(c, now);
        if (c->next_ok > start)
            start = c->next_ok;
    }
    if (ci && max_pending && ci->pending >= max_pending)
        rc = -EAGAIN;
    else if (start - now > (uint64_t)base_ms * ABUSE_MAX_FACTOR)
        rc = -EAGAIN;
    if (rc == 0) {
        for (int k = 0; k < 2; k++) {
            struct counter *c = k ? cu : ci;
            if (!c)
                continue;
            /* For a user, each check still pending may fail too: count
             * it, so a burst of checks for one account is spread as its
             * failures would spread it (doubling), and more than a few at
             * once count as failing already.  An address's checks are
             * spread by its failures only (behind it may be many users). */
            unsigned steps = c->fails;
            if (c == cu && c->fails)
                steps = c->fails + c->pending;
            else if (c == cu && c->pending >= ABUSE_FREE_CHECKS)
                steps = c->pending - ABUSE_FREE_CHECKS + 1;
            if (steps && start + penalty(base_ms, steps) > c->next_ok)
                c->next_ok = start + penalty(base_ms, steps);
        }
        if (ci)
            ci->pending++;
        if (cu)
            cu->pending++;
        *start_ms = start;
    } else {
        if (ci)
            tidy(a, ci, now);
        if (cu)
            tidy(a, cu, now);
    }
    pthread_mutex_unlock(&a->lock);
    return rc;
}

void abuse_check_end(abuse *a, const char *ip, const char *user)
{
    uint64_t now = abuse_now_ms();
    pthread_mutex_lock(&a->lock);
    for (int k = 0; k < 2; k++) {
        const char *name = k ? user : ip;
        struct counter *c = name && *name ? get(a, k ? 'u' : 'i', name, FIND) : NULL;
        if (c && c->pending) {
            c->pending--;
            tidy(a, c, now);
        }
    }
    pthread_mutex_unlock(&a->lock);
}

unsigned abuse_login_failed(abuse *a, const char *ip, const char *user, unsigned base_ms,
                            unsigned after_ms, unsigned *in_row)
{
    uint64_t now = abuse_now_ms() + after_ms;
    unsigned worst = 1;
    struct counter *cs[2] = {NULL, NULL};
    pthread_mutex_lock(&a->lock);
    for (int k = 0; k < 2; k++) {
        const char *name = k ? user : ip;
        if (!name || !*name)
            continue;
        struct counter *c = cs[k] = get(a, k ? 'u' : 'i', name, CREATE_IF_ROOM);
        if (!c)
            continue;
        forget_old(c, now);
        if (c->fails < 1000000)
            c->fails++;
        c->last_fail = now;
        if (c->fails > worst)
            worst = c->fails;
    }
    uint64_t d = penalty(base_ms, worst);
    for (int k = 0; k < 2; k++)
        if (cs[k] && now + d > cs[k]->next_ok)
            cs[k]->next_ok = now + d;
    pthread_mutex_unlock(&a->lock);
    if (in_row)
        *in_row = worst;
    return (unsigned)d;
}

void abuse_login_ok(abuse *a, const char *ip, const char *user)
{
    uint64_t now = abuse_now_ms();
    pthread_mutex_lock(&a->lock);
    for (int k = 0; k < 2; k++) {
        const char *name = k ? user : ip;
        if (!name || !*name)
            continue;
        struct counter *c = get(a, k ? 'u' : 'i', name, FIND);
        if (c) {
            c->fails = 0;
            c->next_ok = 0;
            tidy(a, c, now);
        }
    }
    pthread_mutex_unlock(&a->lock);
}
