/* core/cmd_auth.c — LOGIN and AUTHENTICATE PLAIN (with SASL-IR). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/abuse.h"
#include "core/log.h"
#include "core/session.h"


/* Strict RFC 4648 base64 (SASL wants exact encodings).  Returns the
 * decoded length or -EINVAL; out must hold 3 * n / 4 + 1 bytes. */
static long b64_decode(const char *in, size_t n, char *out)
{
    static const char alpha[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (n % 4)
        return -EINVAL;
    long o = 0;
    for (size_t i = 0; i < n; i += 4) {
        unsigned v = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            char c = in[i + k];
            const char *p = c ? strchr(alpha, c) : NULL;
            if (c == '=' && i + 4 == n && k >= 2) {
                pad++;
                v <<= 6;
                continue;
            }
            if (!p || pad)
                return -EINVAL;
            v = v << 6 | (unsigned)(p - alpha);
        }
        out[o++] = (char)(v >> 16);
        if (pad < 2)
            out[o++] = (char)(v >> 8);
        if (pad < 1)
            out[o++] = (char)v;
    }
    out[o] = '\0';
    return o;
}

static void login_done(session *s, const char *tag, const char *user,
                       const char *pass)
{
    int rc = passwd_verify(s->srv->pw, user, pass);
    if (rc == -EACCES) {
        /* Each failure in a row, from this address or for this user,
         * doubles the wait for the answer (up to 64 times the base). */
        unsigned n = abuse_login_failed(s->srv->abuse, s->ip, user);
        unsigned delay = s->srv->auth_failure_delay_ms << (n - 1 < 6 ? n - 1 : 6);
        log_msg(LOGL_INFO, s->id, user, "login failed from %s (%u in a row, answer in %u ms)",
                net_conn_peer(s->conn), n, delay);
        sess_flush(s);  /* what came before is not delayed */
        sess_tagged(s, tag, "NO", "[AUTHENTICATIONFAILED] Authentication failed");
        sess_delay_answer(s, delay);
        return;
    }
    if (rc < 0) {
        log_msg(LOGL_ERROR, s->id, user, "passwd-file: %s", strerror(-rc));
        sess_tagged(s, tag, "NO", "[UNAVAILABLE] Authentication temporarily unavailable");
        return;
    }
    if (!abuse_user_open(s->srv->abuse, user, s->srv->max_conn_user)) {
        log_msg(LOGL_WARN, s->id, user, "refused: max_connections_per_user");
        sess_tagged(s, tag, "NO", "[LIMIT] Too many connections for this user");
        return;
    }
    store_user *su;
    rc = store_user_open(s->srv->mail_root, user, &s->srv->sopts, &su);
    if (rc < 0)
        abuse_user_close(s->srv->abuse, user);
    if (rc < 0) {
        log_msg(LOGL_ERROR, s->id, user, "store: %s", strerror(-rc));
        sess_tagged(s, tag, "NO", "[UNAVAILABLE] Mail store unavailable");
        return;
    }
    s->su = su;
    s->user = strdup(user);
    if (!s->user) {
        abuse_user_close(s->srv->abuse, user);
    } else {
        s->counted_user = true;
    }
    abuse_login_ok(s->srv->abuse, s->ip, user);
    s->state = ST_AUTH;
    log_msg(LOGL_INFO, s->id, user, "login from %s", net_conn_peer(s->conn));
    imap_out_printf(&s->out, "%s OK [CAPABILITY ", tag);
    sess_capabilities(s, &s->out);
    imap_out_printf(&s->out, "] Logged in\r\n");
}

void cmd_login(session *s, const char *tag, imap_args *a, imap_arg *args,
               size_t nargs, bool uid)
{
    (void)uid;
    if (nargs != 2 || args[0].type == IMAP_ARG_LIST || args[1].type == IMAP_ARG_LIST) {
        sess_bad(s, tag, "LOGIN takes a user name and a password");
        return;
    }
    if (!sess_plaintext_ok(s)) {
        sess_tagged(s, tag, "NO", "[PRIVACYREQUIRED] Plaintext login is not allowed here");
        return;
    }
    const char *user = imap_arg_astring(a, &args[0]);
    const char *pass = imap_arg_astring(a, &args[1]);
    if (!user || !pass || strlen(user) != args[0].len || strlen(pass) != args[1].len) {
        sess_bad(s, tag, "Bad user name or password syntax");
        return;
    }
    login_done(s, tag, user, pass);
}

/* PLAIN: [authzid] NUL authcid NUL password (RFC 4616). */
static void plain_response(session *s, const char *tag, const char *b64, size_t n)
{
    char *buf = malloc(n / 4 * 3 + 4);
    if (!buf) {
        sess_tagged(s, tag, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    long len = b64_decode(b64, n, buf);
    const char *authz = buf, *authc = NULL, *pass = NULL;
    if (len > 0) {
        char *z1 = memchr(buf, '\0', (size_t)len);
        char *z2 = z1 ? memchr(z1 + 1, '\0', (size_t)(len - (z1 + 1 - buf))) : NULL;
        if (z2 && !memchr(z2 + 1, '\0', (size_t)(len - (z2 + 1 - buf)))) {
            authc = z1 + 1;
            pass = z2 + 1;
        }
    }
    if (!authc || !*authc) {
        sess_bad(s, tag, "Malformed PLAIN response");
    } else if (*authz && strcmp(authz, authc)) {
        sess_tagged(s, tag, "NO", "[AUTHORIZATIONFAILED] No authorization as another user");
    } else {
        login_done(s, tag, authc, pass);
    }
    free(buf);
}

void cmd_authenticate(session *s, const char *tag, imap_args *a, imap_arg *args,
                      size_t nargs, bool uid)
{
    (void)a; (void)uid;
    if (nargs < 1 || nargs > 2 || args[0].type != IMAP_ARG_ATOM ||
        (nargs == 2 && args[1].type != IMAP_ARG_ATOM && args[1].type != IMAP_ARG_STRING)) {
        sess_bad(s, tag, "AUTHENTICATE takes a mechanism and an optional initial response");
        return;
    }
    if (strcasecmp(args[0].s, "PLAIN")) {
        sess_tagged(s, tag, "NO", "[CANNOT] Unsupported mechanism");
        return;
    }
    if (!sess_plaintext_ok(s)) {
        sess_tagged(s, tag, "NO", "[PRIVACYREQUIRED] Plaintext authentication is not allowed here");
        return;
    }
    if (nargs == 2) {
        /* SASL-IR: "=" is an empty initial response. */
        if (!strcmp(args[1].s, "="))
            plain_response(s, tag, "", 0);
        else
            plain_response(s, tag, args[1].s, args[1].len);
        return;
    }
    free(s->wait_tag);
    if (!(s->wait_tag = strdup(tag))) {
        sess_tagged(s, tag, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    s->wait = WAIT_AUTH;
    imap_reader_line_mode(s->rd, true);
    imap_out_printf(&s->out, "+ \r\n");
}

void auth_continue(session *s, const uint8_t *line, size_t n)
{
    imap_reader_line_mode(s->rd, false);
    s->wait = WAIT_NONE;
    char *tag = s->wait_tag;
    s->wait_tag = NULL;
    if (n == 1 && line[0] == '*')
        sess_bad(s, tag, "Authentication cancelled");
    else
        plain_response(s, tag, (const char *)line, n);
    free(tag);
}
