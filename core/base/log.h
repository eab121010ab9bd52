/* core/base/log.h — one-line log records on stderr:
 *   2026-11-25T17:55:14.123Z info s=12 user=alice login from 127.0.0.1:5555
 * (time, level, session id, user, event).  Each record is one write(2), so
 * lines from different workers never interleave. */
#ifndef RINGMAIL_CORE_LOG_H
#define RINGMAIL_CORE_LOG_H

#include <stdint.h>

typedef enum log_level { LOGL_ERROR, LOGL_WARN, LOGL_INFO, LOGL_DEBUG } log_level;

int log_level_parse(const char *s, log_level *out);
void log_set_level(log_level l);
int log_enabled(log_level l);
/* session 0 and user NULL are left out of the record. */
void log_msg(log_level l, uint64_t session, const char *user, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
