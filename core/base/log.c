/* core/base/log.c — see log.h. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/base/log.h"

static log_level cur_level = LOGL_INFO;
static const char *const names[] = {"error", "warn", "info", "debug"};

int log_level_parse(const char *s, log_level *out)
{
    for (int i = 0; i <= LOGL_DEBUG; i++)
        if (!strcmp(s, names[i])) {
            *out = (log_level)i;
            return 0;
        }
    return -1;
}

void log_set_level(log_level l) { cur_level = l; }
int log_enabled(log_level l) { return l <= cur_level; }

void log_msg(log_level l, uint64_t session, const char *user, const char *fmt, ...)
{
    if (l > cur_level)
        return;
    char buf[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, names[l]);
    if (session && n < (int)sizeof buf)
        n += snprintf(buf + n, sizeof buf - (size_t)n, " s=%llu", (unsigned long long)session);
    if (user && n < (int)sizeof buf)
        n += snprintf(buf + n, sizeof buf - (size_t)n, " user=%s", user);
    if (n < (int)sizeof buf - 1) {
        buf[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        n += vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
        va_end(ap);
    }
    if (n >= (int)sizeof buf)
        n = (int)sizeof buf - 1;
    /* Control characters from clients never reach the terminal raw. */
    for (int i = 0; i < n; i++)
        if ((unsigned char)buf[i] < 0x20)
            buf[i] = '?';
    buf[n++] = '\n';
    ssize_t w = write(2, buf, (size_t)n);
    (void)w;
}
