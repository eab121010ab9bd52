/* ringmail-bench --bystander N: sessions that only send NOOP, one thread
 * and one blocking connection each, beside the measured workload.  Their
 * round-trip times say how long a heavy session makes everyone else on its
 * worker wait (run the server with one worker to put them all on one).
 * Plain connections only (--tls is refused with --bystander). */
#include "bench/ringmail_bench.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BYSTANDER_PAUSE_NS 2000000  /* between NOOPs: a light load of its own */
#define BYSTANDER_TIMEOUT_MS 120000 /* a stall longer than this is an error */

struct bench_bystanders;

struct bystander {
    struct bench_bystanders *all;
    pthread_t th;
    int fd;
    bench_hist hist;
    uint64_t errors;
    char buf[4096];
    size_t len;
};

struct bench_bystanders {
    _Atomic int stop;
    int n, started;
    struct bystander *b;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Reads until a line starting with `tag` (NULL: any line) has arrived; 0 if
 * it says OK, -1 otherwise (NO/BAD, closed, timeout). */
static int wait_line(struct bystander *b, const char *tag)
{
    size_t tl = tag ? strlen(tag) : 0;
    for (;;) {
        char *nl;
        while ((nl = memchr(b->buf, '\n', b->len))) {
            size_t l = (size_t)(nl - b->buf) + 1;
            int hit = !tag || (l > tl && !memcmp(b->buf, tag, tl) && b->buf[tl] == ' ');
            int ok = hit && l > tl + 3 && !memcmp(b->buf + (tag ? tl + 1 : 2), "OK", 2);
            memmove(b->buf, b->buf + l, b->len - l);
            b->len -= l;
            if (hit)
                return ok ? 0 : -1;
        }
        if (b->len == sizeof b->buf)
            b->len = 0;     /* a long untagged line: its end is all we need */
        struct pollfd p = { .fd = b->fd, .events = POLLIN };
        if (poll(&p, 1, BYSTANDER_TIMEOUT_MS) <= 0)
            return -1;
        ssize_t r = read(b->fd, b->buf + b->len, sizeof b->buf - b->len);
        if (r <= 0)
            return -1;
        b->len += (size_t)r;
    }
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t r = write(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int open_session(const struct bench_config *cfg, int i, struct bystander *b)
{
    b->fd = socket(cfg->addr.ss_family, SOCK_STREAM, 0);
    if (b->fd < 0)
        return -errno;
    if (connect(b->fd, (const struct sockaddr *)&cfg->addr, cfg->addrlen) < 0)
        return -errno;
    if (wait_line(b, NULL) < 0)     /* the greeting */
        return -EPROTO;
    char user[256], cmd[1024];
    /* the last users, so that a workload of few clients keeps its own */
    bench_user_name(cfg, cfg->nusers - 1 - i % cfg->nusers, user, sizeof user);
    int l = snprintf(cmd, sizeof cmd, "l LOGIN \"%s\" \"%s\"\r\n", user, cfg->password);
    if (l < 0 || (size_t)l >= sizeof cmd || send_all(b->fd, cmd, (size_t)l) < 0 ||
        wait_line(b, "l") < 0)
        return -EACCES;
    return 0;
}

static void *run(void *arg)
{
    struct bystander *b = arg;
    while (!atomic_load(&b->all->stop)) {
        uint64_t t0 = now_ns();
        if (send_all(b->fd, "n NOOP\r\n", 8) < 0 || wait_line(b, "n") < 0) {
            b->errors++;
            break;
        }
        bench_hist_add(&b->hist, now_ns() - t0);
        struct timespec ts = { 0, BYSTANDER_PAUSE_NS };
        nanosleep(&ts, NULL);
    }
    return NULL;
}

int bench_bystander_start(const struct bench_config *cfg, int n, struct bench_bystanders **out)
{
    struct bench_bystanders *all = calloc(1, sizeof *all);
    if (!all)
        return -ENOMEM;
    all->b = calloc((size_t)n, sizeof *all->b);
    if (!all->b) {
        free(all);
        return -ENOMEM;
    }
    all->n = n;
    for (int i = 0; i < n; i++) {
        all->b[i].fd = -1;
        all->b[i].all = all;
    }
    int rc = 0;
    /* All logged in before the workload starts, or none runs. */
    for (int i = 0; i < n && rc == 0; i++)
        rc = open_session(cfg, i, &all->b[i]);
    for (int i = 0; i < n && rc == 0; i++) {
        if (pthread_create(&all->b[i].th, NULL, run, &all->b[i]) != 0)
            rc = -EAGAIN;
        else
            all->started++;
    }
    if (rc < 0) {
        struct bench_result dummy;
        bench_bystander_stop(all, &dummy);
        return rc;
    }
    *out = all;
    return 0;
}

void bench_bystander_stop(struct bench_bystanders *all, struct bench_result *r)
{
    atomic_store(&all->stop, 1);
    for (int i = 0; i < all->started; i++)
        pthread_join(all->b[i].th, NULL);
    for (int i = 0; i < all->n; i++) {
        if (all->b[i].fd >= 0) {
            send_all(all->b[i].fd, "z LOGOUT\r\n", 10);
            close(all->b[i].fd);
        }
        if (i < all->started) {
            bench_hist_merge(&r->bystander, &all->b[i].hist);
            r->bystander_errors += all->b[i].errors;
        }
    }
    free(all->b);
    free(all);
}
