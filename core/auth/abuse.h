/* core/auth/abuse.h — accounting against abuse: connections per address and per
 * user, failed logins in a row per address and per user, password checks
 * waiting per address, trusted networks.  One per server, shared by every
 * worker and connection (a mutex; the operations are a hash lookup each),
 * so a guesser gains nothing by opening a new connection per guess.
 *
 * Times are CLOCK_MONOTONIC milliseconds, the clock of authpool_now_ms. */
#ifndef RINGMAIL_CORE_ABUSE_H
#define RINGMAIL_CORE_ABUSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct abuse abuse;

/* trusted: blank/comma separated CIDRs ("10.0.0.0/8 ::1/128"); -EINVAL for a
 * bad one. */
int abuse_new(const char *trusted, abuse **out);
void abuse_free(abuse *a);

/* The address part of a peer string "1.2.3.4:5" / "[::1]:5" into buf. */
const char *abuse_peer_ip(const char *peer, char *buf, size_t n);
bool abuse_trusted(const abuse *a, const char *ip);

/* Counters kept at most (addresses and user names, known or not): past
 * it, new names are not counted (a flood of made-up names cannot exhaust
 * memory; the per-address counts still hold the flood back). */
#define ABUSE_MAX_COUNTERS (1u << 18)

/* Count a connection from ip; false (and nothing counted) if that would
 * exceed max (0 = no limit). */
bool abuse_conn_open(abuse *a, const char *ip, unsigned max);
void abuse_conn_close(abuse *a, const char *ip);
/* Count a logged-in connection of user; false if over max. */
bool abuse_user_open(abuse *a, const char *user, unsigned max);
void abuse_user_close(abuse *a, const char *user);

/* Failed-login penalties.  An address is NULL where it is not to be
 * counted (trusted_networks: a proxy speaks for many users, and one
 * user's typos must not hold back everybody behind it); user names are
 * counted whether or not the user exists, so the penalties do not tell
 * who does. */

/* Before a password check for user from ip: 0 and *start_ms, the time the
 * check may start (now, or when the address's or the user's penalty
 * ends).  While failures are counted, and while a user has
 * ABUSE_FREE_CHECKS checks admitted already, each admitted check also
 * reserves the next penalty period, so checks for one account (or from one
 * address) run one per period however many connections ask at once, while
 * a client's few parallel logins are not slowed.  -EAGAIN, nothing
 * counted: ip already has max_pending checks admitted and not ended (0 =
 * no limit), or the start would be more than ABUSE_MAX_FACTOR penalty
 * steps away.  After 0, call abuse_check_end exactly once (with the same
 * ip and user) when the check ran or was dropped. */
#define ABUSE_FREE_CHECKS 16
int abuse_check_begin(abuse *a, const char *ip, const char *user, unsigned base_ms,
                      unsigned max_pending, uint64_t *start_ms);
void abuse_check_end(abuse *a, const char *ip, const char *user);
/* A failed login: counts it for ip and user and holds back their next
 * checks for the penalty: base_ms doubled per failure in a row (the larger
 * count of the two), at most ABUSE_MAX_FACTOR times base_ms, from
 * after_ms from now (the stand-in time of a check that did not need a
 * hash, so that the penalty ends when a real check's would).  Returns the
 * penalty (ms; the caller delays its answer as long, plus after_ms).
 * *in_row (if not NULL): failures in a row.  Failures older than 15
 * minutes are forgotten. */
#define ABUSE_MAX_FACTOR 64
unsigned abuse_login_failed(abuse *a, const char *ip, const char *user, unsigned base_ms,
                            unsigned after_ms, unsigned *in_row);
/* A successful login clears the user's and the address's count and
 * penalty. */
void abuse_login_ok(abuse *a, const char *ip, const char *user);
/* The current clock (ms). */
uint64_t abuse_now_ms(void);

#endif
