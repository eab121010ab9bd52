/* core/server/metrics.h — what ringmaild counts, and its Prometheus text.
 *
 * Where the counters live: one region of memory shared by every server
 * process (metrics_map, by the supervisor before it forks, or by the one
 * server), holding a slot per server process; a slot holds one block per
 * worker thread, each on its own cache lines, plus the counters the store
 * and the password pool keep for the process (store/stats.h, authpool.h).
 * A worker writes only its own block, with plain loads and stores of
 * relaxed atomics: no lock, no locked instruction and no shared cache line
 * on the command path.  Whoever renders (any thread of any process) sums
 * every block of every slot, so one scrape shows the whole server.
 *
 * A restarted server takes its slot again: counters go on from where its
 * predecessor left them (they stay monotonic), gauges (sessions, the
 * password queue) start from zero.
 *
 * The hooks (metrics_*) are called on the worker w the connection belongs
 * to; they do nothing before metrics_attach, or for a worker beyond those
 * the region was sized for. */
#ifndef RINGMAIL_CORE_SERVER_METRICS_H
#define RINGMAIL_CORE_SERVER_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/auth/authpool.h"
#include "net/net.h"
#include "store/stats.h"

/* Session states, as the gauge ringmail_sessions labels them. */
typedef enum metrics_state {
    METRICS_NOAUTH, METRICS_AUTH, METRICS_SELECTED, METRICS_IDLE, METRICS_LOGOUT,
    METRICS_NSTATES
} metrics_state;
#define METRICS_NO_STATE 0xff   /* a session not counted (yet / any more) */

/* Login mechanisms: the LOGIN command, then the SASL mechanisms. */
typedef enum metrics_mech {
    METRICS_MECH_LOGIN_COMMAND, METRICS_MECH_PLAIN, METRICS_MECH_LOGIN,
    METRICS_MECH_SCRAM_SHA_256, METRICS_MECH_SCRAM_SHA_256_PLUS, METRICS_MECH_OTHER,
    METRICS_NMECHS
} metrics_mech;

/* success: logged in; failure: wrong credentials; unavailable: refused
 * for another reason (limits, a busy pool, the store). */
typedef enum metrics_result {
    METRICS_SUCCESS, METRICS_FAILURE, METRICS_UNAVAILABLE, METRICS_NRESULTS
} metrics_result;

/* LMTP, per recipient of a DATA/BDAT: 2xx, 4xx, 5xx. */
typedef enum metrics_lmtp_result {
    METRICS_LMTP_DELIVERED, METRICS_LMTP_TEMPFAIL, METRICS_LMTP_PERMFAIL, METRICS_NLMTP
} metrics_lmtp_result;

/* The region for nslots server processes of nworkers workers each (0:
 * as net counts them, one per CPU), shared with the processes forked
 * after.  Its start time is process_start_time_seconds.  0 or -errno;
 * once per process (a second call is -EALREADY). */
int metrics_map(unsigned nslots, unsigned nworkers);
/* This process is server `slot` (0 without a supervisor; maps a region
 * of one slot if none is mapped): its gauges start from zero, its workers'
 * net counters and the store's and the pools' go into the slot. */
int metrics_attach(unsigned slot, net_server *net, authpool *authpool);
/* Before the process exits: its slot's gauges back to zero, the store no
 * longer counting into it. */
void metrics_detach(void);

/* ---- hooks (on worker w) ---- */
/* A session goes from state `from` to `to` (METRICS_NO_STATE: none);
 * tls: the connection is encrypted. */
void metrics_session_state(unsigned w, unsigned from, unsigned to);
/* The index of (state, tls) for metrics_session_state. */
static inline unsigned metrics_state_index(metrics_state st, bool tls)
{
    return (unsigned)st * 2u + (tls ? 1u : 0u);
}
/* A command (its index in cmd_table) ended after ns nanoseconds. */
void metrics_command(unsigned w, unsigned cmd, uint64_t ns);
/* A login attempt's outcome; mech is METRICS_MECH_LOGIN_COMMAND or the
 * SASL name (sasl_mech_name). */
void metrics_login(unsigned w, metrics_mech mech, metrics_result r);
metrics_mech metrics_mech_of_sasl(const char *name);
/* An LMTP recipient's reply code. */
void metrics_lmtp(unsigned w, int code);

/* ---- rendering ---- */
/* The Prometheus text exposition format (version 0.0.4) of every slot,
 * into *out (malloc'd, the caller frees; *len its length without the NUL).
 * Usable from any thread.  0 or -errno (-ENODEV: no region). */
int metrics_render(char **out, size_t *len);

/* The pieces it is made of, for tests.  Label values are escaped
 * (backslash, double quote, newline: the exposition format's rule). */
void metrics_write_family(FILE *f, const char *name, const char *type, const char *help);
/* name{k0="v0",k1="v1"} value; labels: nlabels (key, value) pairs. */
void metrics_write_sample(FILE *f, const char *name, const char *const *labels,
                          size_t nlabels, double value);
/* A histogram's _bucket (cumulative, le in seconds, then +Inf), _sum
 * (seconds) and _count lines; bucket[] as in store_hist (not cumulative). */
void metrics_write_hist(FILE *f, const char *name, const char *const *labels,
                        size_t nlabels, const uint64_t *bucket, uint64_t sum_ns);

/* ---- the HTTP listener (core/server/metrics_http.c) ---- */
typedef struct metrics_http metrics_http;
/* Parse listen_metrics ("port", "host:port", "[v6]:port"): a bare port
 * is 127.0.0.1; an empty or "*" host is refused (the address to open to
 * other machines must be written out: 0.0.0.0, ::, or one of the host's).
 * Binds (SO_REUSEPORT: every server process binds it, and any of them
 * answers for all) and listens; the thread starts with metrics_http_start.
 * On error err gets one line. */
int metrics_http_bind(const char *spec, metrics_http **out, char *err, size_t errlen);
int metrics_http_port(const metrics_http *h);
int metrics_http_start(metrics_http *h);
/* Stop the thread, close the socket, free. */
void metrics_http_free(metrics_http *h);

#endif
