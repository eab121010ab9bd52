/* tools/admin_progress.c — a progress bar for long operations.
 *
 * Drawn on stderr only when stderr is a terminal, so logs and test output
 * never collect carriage-return noise; redrawn at most ~10 times a second
 * so that a progress callback per message costs nothing noticeable. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tools/admin.h"

#define BAR_WIDTH 30

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

double admin_now(void)
{
    return (double)now_ns() / 1e9;
}

const char *admin_human_bytes(uint64_t n, char *buf, size_t len)
{
    static const char *const unit[] = { "B", "KB", "MB", "GB", "TB" };
    double v = (double)n;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof unit / sizeof *unit) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%llu B", (unsigned long long)n);
    else
        snprintf(buf, len, "%.1f %s", v, unit[u]);
    return buf;
}

void admin_progress_start(admin_progress *p, const char *label,
                          uint64_t total, bool bytes)
{
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label);
    p->tty = isatty(STDERR_FILENO) == 1;
    p->bytes = bytes;
    p->total = total;
}

static void draw(admin_progress *p, uint64_t done)
{
    uint64_t total = p->total ? p->total : 1;
    if (done > total)
        done = total;
    unsigned fill = (unsigned)(done * BAR_WIDTH / total);
    char bar[BAR_WIDTH + 1];
    memset(bar, '#', fill);
    memset(bar + fill, '.', BAR_WIDTH - fill);
    bar[BAR_WIDTH] = '\0';
    char a[32], b[32];
    if (p->bytes) {
        admin_human_bytes(done, a, sizeof a);
        admin_human_bytes(p->total, b, sizeof b);
    } else {
        snprintf(a, sizeof a, "%llu", (unsigned long long)done);
        snprintf(b, sizeof b, "%llu", (unsigned long long)p->total);
    }
    /* \033[K clears what a longer previous line left behind. */
    fprintf(stderr, "\r%s [%s] %3u%%  %s / %s%s%s\033[K", p->label, bar,
            (unsigned)(done * 100 / total), a, b, p->detail[0] ? "  " : "", p->detail);
    fflush(stderr);
    p->shown = true;
}

void admin_progress_update(admin_progress *p, uint64_t done)
{
    if (!p->tty)
        return;
    int64_t t = now_ns();
    if (p->shown && t - p->last_ns < 100000000 && done < p->total)
        return;
    p->last_ns = t;
    draw(p, done);
}

void admin_progress_cb(void *arg, uint64_t done, uint64_t total)
{
    admin_progress *p = arg;
    if (total)
        p->total = total;
    admin_progress_update(p, done);
}

void admin_progress_detail(admin_progress *p, const char *text)
{
    snprintf(p->detail, sizeof p->detail, "%s", text);
}

void admin_progress_end(admin_progress *p)
{
    if (p->tty && p->shown) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
    p->shown = false;
}
