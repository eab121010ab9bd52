/* core/server/auth_http.h — nginx's mail auth_http protocol (listen_auth_http).
 *
 * nginx's mail proxy asks an HTTP server, for every login, whether the
 * credentials are right and which backend to send the client to
 * (ngx_mail_auth_http_module): a GET with Auth-Method, Auth-User,
 * Auth-Pass (both %-escaped by nginx), Auth-Protocol, Auth-Login-Attempt,
 * Client-IP and Client-Host; the answer's headers say Auth-Status (OK or
 * a message for the client), Auth-Server (an IP address: nginx resolves
 * no names there) and Auth-Port, or Auth-Wait (seconds before the client
 * may try again; without it nginx closes the client's connection).
 *
 * ringmaild serves it on the workers' runtime, as a listener tagged
 * LISTEN_AUTH_HTTP: one request per connection (HTTP/1.0, nginx opens one
 * per login), the password checked on the auth pool like LOGIN's, with
 * the same failed-login penalties per Client-IP and per user and the same
 * auth cache. */
#ifndef RINGMAIL_CORE_SERVER_AUTH_HTTP_H
#define RINGMAIL_CORE_SERVER_AUTH_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "core/server/server.h"

/* A request head larger than this is answered 431 (RFC 6585 5). */
#define AUTH_HTTP_REQUEST_MAX 8192
#define AUTH_HTTP_MAX_HEADERS 64
/* Connections open at once per process; more are answered 503. */
#define AUTH_HTTP_MAX_CONNS 1024
/* From Auth-Login-Attempt on, a failure is answered without Auth-Wait, so
 * nginx closes the client's connection: nginx keeps each attempt's memory
 * until the session ends, and its documentation asks auth servers to stop
 * a session after 10-20 attempts. */
#define AUTH_HTTP_MAX_ATTEMPTS 10

/* The listener's callbacks (server_conn_ops hands them the connections of
 * LISTEN_AUTH_HTTP listeners). */
extern const net_conn_ops auth_http_ops;

/* listen_auth_http and auth_http_default_backend from the configuration;
 * -EINVAL with a line on stderr for a bad one.  The listener itself is
 * bound by ringmaild's main as a listener tagged LISTEN_AUTH_HTTP. */
int auth_http_conf_init(imap_server *srv, const config *cfg);

/* ---- the request, parsed in place (for tests too) ---- */
typedef struct auth_http_req {
    const char *method, *target;
    const char *auth_method, *user, *pass, *protocol, *client_ip;
    unsigned attempt;           /* Auth-Login-Attempt; 0 if absent */
} auth_http_req;

/* Parse the request head in buf (n bytes, up to and including the blank
 * line; buf[n] must be writable): NULs are written into it, and the
 * %-escapes of Auth-User and Auth-Pass are decoded in place.  Absent
 * headers are NULL.  0; -EINVAL malformed (400); -E2BIG more than
 * AUTH_HTTP_MAX_HEADERS lines (431). */
int auth_http_parse(char *buf, size_t n, auth_http_req *r);
/* Where the head ends in buf[0..n) (after "\r\n\r\n" or "\n\n"), or 0 if
 * it is not complete yet. */
size_t auth_http_head_end(const char *buf, size_t n);

#endif
