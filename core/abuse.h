/* core/abuse.h — accounting against abuse: connections per address and per
 * user, failed logins in a row per address and per user, trusted networks.
 * One per server, shared by every worker (a mutex; the operations are a
 * hash lookup each). */
#ifndef RINGMAIL_CORE_ABUSE_H
#define RINGMAIL_CORE_ABUSE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct abuse abuse;

/* trusted: blank/comma separated CIDRs ("10.0.0.0/8 ::1/128"); -EINVAL for a
 * bad one. */
int abuse_new(const char *trusted, abuse **out);
void abuse_free(abuse *a);

/* The address part of a peer string "1.2.3.4:5" / "[::1]:5" into buf. */
const char *abuse_peer_ip(const char *peer, char *buf, size_t n);
bool abuse_trusted(const abuse *a, const char *ip);

/* Count a connection from ip; false (and nothing counted) if that would
 * exceed max (0 = no limit). */
bool abuse_conn_open(abuse *a, const char *ip, unsigned max);
void abuse_conn_close(abuse *a, const char *ip);
/* Count a logged-in connection of user; false if over max. */
bool abuse_user_open(abuse *a, const char *user, unsigned max);
void abuse_user_close(abuse *a, const char *user);

/* A failed login: returns the failures in a row (the larger of the
 * address's and the user's, this one included).  Failures older than 15
 * minutes are forgotten. */
unsigned abuse_login_failed(abuse *a, const char *ip, const char *user);
/* A successful login clears the user's and the address's count. */
void abuse_login_ok(abuse *a, const char *ip, const char *user);

#endif
