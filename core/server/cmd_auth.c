/* core/server/cmd_auth.c — LOGIN and AUTHENTICATE (PLAIN, LOGIN, SCRAM-SHA-256,
 * SCRAM-SHA-256-PLUS; SASL-IR).
 *
 * Password checks are slow on purpose (ARGON2ID, crypt), so they run on the
 * auth pool, never on a worker's loop: the session runs no command
 * meanwhile (it keeps what arrives, still reading, so that a client that
 * leaves is seen) and goes on when the pool's answer comes back on its
 * worker.  A session that closes meanwhile is freed by that answer, and a
 * check still queued for it is dropped: nobody waits for its result.
 *
 * Against guessing and floods (core/auth/abuse.h): before a check is queued,
 * the address's and the user's failed-login penalty decide when it may
 * start (the pool holds it without a thread meanwhile), and an address
 * may have only auth_queue_per_ip checks admitted at a time.  A user that
 * does not exist costs no hash: the answer waits, on a timer, as long as
 * a real check takes (passwd_verify_timed), and reads the same. */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/auth/abuse.h"
#include "core/auth/authpool.h"
#include "core/base/log.h"
#include "core/auth/sasl.h"
#include "core/auth/sasl_crypto.h"
#include "core/server/metrics.h"
#include "core/server/session.h"
#include "store/base64.h"

enum job_kind { JOB_LOGIN, JOB_SASL };

struct auth_job {
    session *s;
    enum job_kind kind;
    char *user, *pass;          /* JOB_LOGIN */
    int rc;
    char *admitted;             /* abuse_check_begin said yes for this user
                                   name: end it once */
    authpool_job *handle;       /* for authpool_cancel */
    unsigned answer_delay_ms;   /* unknown user: wait this before the NO */
    bool secret;                /* JOB_LOGIN with proxy_secret: the user
                                   need only exist */
};

static const char *FAILED = "[AUTHENTICATIONFAILED] Authentication failed";
/* The mechanism name login_ok and login_failed get for the LOGIN command
 * (SASL's LOGIN has the same name: metrics tell them apart by pointer). */
static const char LOGIN_COMMAND[] = "LOGIN";

static void count_login(session *s, const char *mech, metrics_result r)
{
    metrics_login(net_conn_worker(s->conn), mech == LOGIN_COMMAND ? METRICS_MECH_LOGIN_COMMAND
                  : metrics_mech_of_sasl(mech), r);
}

/* The address whose checks and failures are counted: none for trusted
 * networks (a proxy speaks for many users), as for connection counts. */
static const char *counted_ip(const session *s)
{
    return s->counted_ip ? s->ip : NULL;
}

/* ---- after the check ------------------------------------------------------- */

/* extra_ms: the stand-in for a hash that was not needed (unknown user). */
static void login_failed(session *s, const char *tag, const char *user, const char *mech,
                         unsigned extra_ms)
{
    /* Each failure in a row, from this address or for this user, doubles
     * the penalty (up to 64 times the base): the answer waits that long,
     * and so does the next check for either, on any connection. */
    unsigned n;
    unsigned delay = abuse_login_failed(s->srv->abuse, counted_ip(s), user,
                                        s->srv->auth_failure_delay_ms, extra_ms, &n);
    count_login(s, mech, METRICS_FAILURE);
    log_msg(LOGL_INFO, s->id, user, "login failed (%s%s) from %s (%u in a row, answer in %u ms)",
            mech, extra_ms ? ", no such user" : "", s->peer, n,
            delay + extra_ms);
    sess_flush(s);  /* what came before is not delayed */
    sess_tagged(s, tag, "NO", "%s", FAILED);
    sess_delay_answer(s, delay + extra_ms);
}

static void login_ok(session *s, const char *tag, const char *user, const char *mech)
{
    if (!abuse_user_open(s->srv->abuse, user, s->srv->max_conn_user)) {
        count_login(s, mech, METRICS_UNAVAILABLE);
        log_msg(LOGL_WARN, s->id, user, "refused: max_connections_per_user");
        sess_tagged(s, tag, "NO", "[LIMIT] Too many connections for this user");
        return;
    }
    /* A user moved to another backend (ringmail-admin user move) keeps
     * its old copy here, frozen: a client that a stale route (a proxy's
     * cache, an old DNS answer) still sends here must not read or change
     * it.  RFC 5530 3: UNAVAILABLE, "the server is unable to process the
     * command... due to an administrative action"; it comes back through
     * the directory, which names the new backend. */
    char why[256];
    if (store_user_frozen(s->srv->mail_root, user, why, sizeof why) == 1 &&
        !strncmp(why, "moved", 5)) {
        abuse_user_close(s->srv->abuse, user);
        count_login(s, mech, METRICS_UNAVAILABLE);
        log_msg(LOGL_INFO, s->id, user, "login refused: %s", why);
        sess_tagged(s, tag, "NO", "[UNAVAILABLE] This mailbox has moved to another server; "
                    "try again");
        return;
    }
    store_user *su;
    int rc = store_user_open(s->srv->mail_root, user, &s->srv->sopts, &su);
    if (rc < 0 || !(s->user = strdup(user))) {
        abuse_user_close(s->srv->abuse, user);
        if (rc == 0)
            store_user_close(su);
        count_login(s, mech, METRICS_UNAVAILABLE);
        log_msg(LOGL_ERROR, s->id, user, "store: %s", strerror(rc < 0 ? -rc : ENOMEM));
        sess_tagged(s, tag, "NO", "[UNAVAILABLE] Mail store unavailable");
        return;
    }
    s->su = su;
    s->counted_user = true;
    abuse_login_ok(s->srv->abuse, counted_ip(s), user);
    s->state = ST_AUTH;
    count_login(s, mech, METRICS_SUCCESS);
    log_msg(LOGL_INFO, s->id, user, "login (%s) from %s%s", mech, s->peer,
            net_conn_is_tls(s->conn) ? " over TLS" : "");
    imap_out_printf(&s->out, "%s OK [CAPABILITY ", tag);
    sess_capabilities(s, &s->out);
    imap_out_printf(&s->out, "] Logged in\r\n");
}

/* ---- the pool -------------------------------------------------------------- */

/* On the pool thread, where userdb_error() still holds the reason: a
 * directory that cannot answer is the operator's problem, and the client
 * only hears NO [UNAVAILABLE]. */
static void log_unavailable(session *s, const char *user, int rc)
{
    if (rc == 0 || rc == -EACCES || !userdb_is_directory(s->srv->users))
        return;     /* the passwd-file's errors are logged by job_done */
    const char *why = userdb_error();
    log_msg(LOGL_ERROR, s->id, user, "user directory unavailable: %s",
            *why ? why : strerror(-rc));
}

static void job_work(void *arg)
{
    struct auth_job *j = arg;
    if (j->kind == JOB_LOGIN && j->secret) {
        /* the proxy's shared secret: the user must exist, no password */
        j->rc = userdb_lookup(j->s->srv->users, j->user, false, NULL);
        if (j->rc == -ENOENT)
            j->rc = -EACCES;
        log_unavailable(j->s, j->user, j->rc);
    } else if (j->kind == JOB_LOGIN) {
        j->rc = authcache_verify_userdb(j->s->srv->authcache, j->s->srv->users, j->user,
                                        j->pass, &j->answer_delay_ms);
        log_unavailable(j->s, j->user, j->rc);
    } else
        sasl_work(j->s->sasl);
}

static void job_free(struct auth_job *j)
{
    if (j->pass)
        memset(j->pass, 0, strlen(j->pass));
    free(j->user);
    free(j->pass);
    free(j);
}

static void sasl_advance(session *s, sasl_status st, const uint8_t *out, size_t outlen,
                         unsigned extra_ms);

/* The check is over (ran or dropped): the address may queue another. */
static void job_end(struct auth_job *j)
{
    session *s = j->s;
    if (j->admitted)
        abuse_check_end(s->srv->abuse, counted_ip(s), j->admitted);
    free(j->admitted);
    j->admitted = NULL;
    if (s->auth_job == j)
        s->auth_job = NULL;
}

/* On the session's worker (or on the pool thread once the workers are
 * gone, when the session is dead anyway). */
static void job_done(void *arg, int status)
{
    struct auth_job *j = arg;
    session *s = j->s;
    s->pool_busy = false;
    job_end(j);
    if (s->dead) {
        job_free(j);
        sess_free(s);
        return;
    }
    char *tag = s->wait_tag;
    s->wait_tag = NULL;
    if (status < 0) {
        count_login(s, j->kind == JOB_LOGIN ? LOGIN_COMMAND : s->auth_mech,
                    METRICS_UNAVAILABLE);
        sess_tagged(s, tag, "NO", "[UNAVAILABLE] Authentication temporarily unavailable");
        sasl_free(s->sasl);
        s->sasl = NULL;
    } else if (j->kind == JOB_LOGIN) {
        if (j->rc == 0 && j->secret)
            log_msg(LOGL_INFO, s->id, j->user, "proxy_secret accepted from proxy %s",
                    net_conn_peer(s->conn));
        if (j->rc == 0)
            login_ok(s, tag, j->user, LOGIN_COMMAND);
        else if (j->rc == -EACCES)
            login_failed(s, tag, j->user, LOGIN_COMMAND, j->answer_delay_ms);
        else {
            count_login(s, LOGIN_COMMAND, METRICS_UNAVAILABLE);
            if (!userdb_is_directory(s->srv->users))
                log_msg(LOGL_ERROR, s->id, j->user, "passwd-file: %s", strerror(-j->rc));
            sess_tagged(s, tag, "NO", "[UNAVAILABLE] Authentication temporarily unavailable");
        }
    } else {
        const uint8_t *out = NULL;
        size_t outlen = 0;
        s->wait_tag = tag;
        tag = NULL;
        sasl_status st = sasl_resume(s->sasl, &out, &outlen);
        sasl_advance(s, st, out, outlen, j->answer_delay_ms);
    }
    free(tag);
    job_free(j);
    sess_resume_input(s);
}

/* Queue the check of user's credentials.  -EAGAIN: refused (too many
 * checks from the address, a penalty too far ahead, the pool's queue
 * full): answer NO [UNAVAILABLE], which is the same for every user. */
static int submit(session *s, struct auth_job *j, const char *tag, const char *user)
{
    if (!s->wait_tag && !(s->wait_tag = strdup(tag)))
        return -ENOMEM;
    uint64_t start;
    if (!(j->admitted = strdup(user ? user : "")))
        return -ENOMEM;
    int rc = abuse_check_begin(s->srv->abuse, counted_ip(s), user,
                               s->srv->auth_failure_delay_ms, s->srv->auth_queue_per_ip,
                               &start);
    if (rc < 0) {
        free(j->admitted);
        j->admitted = NULL;
        log_msg(LOGL_WARN, s->id, user, "password check refused: too many login attempts "
                "from %s or for this user", s->ip);
        return rc;
    }
    uint64_t now = abuse_now_ms();
    if (start > now)
        log_msg(LOGL_INFO, s->id, user, "password check held back %llu ms (failed logins)",
                (unsigned long long)(start - now));
    /* Set before the pool can run the job: be_verify reads it there. */
    s->auth_job = j;
    rc = authpool_submit_at(s->srv->authpool, job_work, j, job_done, s->srv->net,
                            net_conn_worker(s->conn), start, &j->handle);
    if (rc < 0) {
        log_msg(LOGL_WARN, s->id, user, "password check refused: %s",
                rc == -EAGAIN ? "auth pool queue full" : strerror(-rc));
        job_end(j);
        return rc;
    }
    /* Input is not paused (unlike a held answer): what the client sends
     * meanwhile is kept for later (feed stashes it while pool_busy), and a
     * client that leaves is seen at once, so its check can be dropped. */
    s->pool_busy = true;
    return 0;
}

void auth_cancel(session *s)
{
    struct auth_job *j = s->auth_job;
    if (!j || !authpool_cancel(s->srv->authpool, j->handle))
        return;
    static atomic_ullong dropped;
    unsigned long long n = atomic_fetch_add(&dropped, 1) + 1;
    log_msg(LOGL_INFO, s->id, j->kind == JOB_LOGIN ? j->user : sasl_authcid(s->sasl),
            "password check dropped: the client left (%llu dropped so far)", n);
    job_end(j);
    job_free(j);
    s->pool_busy = false;
}

/* ---- which mechanisms are offered ---------------------------------------- */

static atomic_bool refresh_queued;

static void refresh_work(void *arg)
{
    imap_server *srv = arg;
    passwd_generation(srv->pw);     /* re-reads the file if it changed */
    atomic_store(&refresh_queued, false);
}

bool auth_scram_offered(session *s)
{
    /* SCRAM's keys come from the passwd-file alone; with users in a
     * directory server, a client offered SCRAM would fail for all of
     * them (and mbsync does not fall back): not offered. */
    if (!s->srv->scram_auto || userdb_is_directory(s->srv->users))
        return false;
    int rc = passwd_scram_everyone(s->srv->pw);
    if (rc == -EAGAIN && !atomic_exchange(&refresh_queued, true) &&
        authpool_submit(s->srv->authpool, refresh_work, s->srv, NULL, NULL, 0) < 0)
        atomic_store(&refresh_queued, false);
    return rc == 1;
}

/* Credentials verified within auth_cache_ttl, against the passwd-file as
 * it is now (a directory server: since the last flush-auth-cache): right,
 * so no check is needed, nor a penalty or a queue slot (an account under
 * attack stays open to its owner).  Cheap enough for the worker: one stat
 * and one HMAC. */
static bool verified_recently(session *s, const char *user, const char *pass)
{
    userdb *db = s->srv->users;
    uint64_t gen = userdb_generation_nowait(db);
    if (!gen || !authcache_lookup(s->srv->authcache, user, pass, gen))
        return false;
    if (!userdb_is_directory(db))
        return true;
    /* A directory's user also needs a record at hand (quota reads it on
     * the worker); one older than the TTL serves while it is renewed. */
    int rc = userdb_lookup_cached(db, user, false, NULL);
    if (rc == 1)
        server_refresh_user(s->srv, user);
    return rc >= 0;
}

/* ---- LOGIN ------------------------------------------------------------------- */

/* proxy_secret: nginx logs in to the backend with it (auth_http's answer
 * carries it as Auth-Pass) instead of the client's password, which
 * auth_http checked already; so the backend checks only that the user
 * exists, and needs no hash.  Taken only from trusted_networks, judged by
 * the connection itself (not by a PROXY header's address).  Constant
 * time: the comparison tells nothing about the secret. */
static bool is_proxy_secret(session *s, const char *pass)
{
    const char *secret = config_get(s->srv->cfg, "proxy_secret");
    size_t sl = secret ? strlen(secret) : 0, pl = strlen(pass);
    if (!sl)
        return false;
    unsigned char diff = (unsigned char)(sl != pl);
    for (size_t i = 0; i < sl; i++)
        diff |= (unsigned char)(secret[i] ^ (i < pl ? pass[i] : 0));
    if (diff)
        return false;
    char ip[64];
    abuse_peer_ip(net_conn_peer(s->conn), ip, sizeof ip);
    return abuse_trusted(s->srv->abuse, ip);
}

void cmd_login(imap_cmd *c)
{
    session *s = c->s;
    const char *tag = c->tag;
    imap_args *a = c->a;
    imap_arg *args = c->args;
    size_t nargs = c->nargs;
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
    bool secret = is_proxy_secret(s, pass);
    if (!secret && verified_recently(s, user, pass)) {
        login_ok(s, tag, user, LOGIN_COMMAND);
        return;
    }
    struct auth_job *j = calloc(1, sizeof *j);
    if (j) {
        j->s = s;
        j->kind = JOB_LOGIN;
        j->secret = secret;
        j->user = strdup(user);
        j->pass = strdup(pass);
    }
    int rc = -ENOMEM;
    if (!j || !j->user || !j->pass || (rc = submit(s, j, tag, user)) < 0) {
        if (j)
            job_free(j);
        free(s->wait_tag);
        s->wait_tag = NULL;
        count_login(s, LOGIN_COMMAND, METRICS_UNAVAILABLE);
        sess_tagged(s, tag, "NO", "%s", rc == -EAGAIN
                    ? "[UNAVAILABLE] Too many login attempts, try again later"
                    : "[UNAVAILABLE] Authentication temporarily unavailable");
    }
}

/* ---- AUTHENTICATE -------------------------------------------------------------- */

/* On the pool, for the job in s->auth_job. */
static int be_verify(void *arg, const char *user, const char *pass)
{
    session *s = arg;
    int rc = authcache_verify_userdb(s->srv->authcache, s->srv->users, user, pass,
                                     &s->auth_job->answer_delay_ms);
    log_unavailable(s, user, rc);
    return rc;
}

static int be_verify_cached(void *arg, const char *user, const char *pass)
{
    return verified_recently(arg, user, pass) ? 0 : -EAGAIN;
}

static int be_scram(void *arg, const char *user, passwd_scram *out)
{
    session *s = arg;
    /* Users live in a directory server: the passwd-file's SCRAM keys are
     * not theirs (see auth_scram_offered). */
    if (userdb_is_directory(s->srv->users))
        return -EACCES;
    return passwd_scram_lookup(s->srv->pw, user, out);
}

static int be_binding(void *arg, const char *type, uint8_t *out, size_t *len)
{
    session *s = arg;
    return net_conn_tls_binding(s->conn, type, out, len);
}

static void auth_end(session *s)
{
    sasl_free(s->sasl);
    s->sasl = NULL;
    free(s->wait_tag);
    s->wait_tag = NULL;
    s->wait = WAIT_NONE;
    imap_reader_line_mode(s->rd, false);
}

/* Act on what the mechanism says.  extra_ms: see login_failed. */
static void sasl_advance(session *s, sasl_status st, const uint8_t *out, size_t outlen,
                         unsigned extra_ms)
{
    const char *tag = s->wait_tag;
    switch (st) {
    case SASL_CONTINUE: {
        char *b = malloc(outlen / 3 * 4 + 8);
        if (!b) {
            sess_tagged(s, tag, "NO", "[SERVERBUG] Out of memory");
            auth_end(s);
            return;
        }
        size_t n = store_b64_encode(out, outlen, b);
        imap_out_printf(&s->out, "+ %.*s\r\n", (int)n, b);
        free(b);
        s->wait = WAIT_AUTH;
        imap_reader_line_mode(s->rd, true);
        return;
    }
    case SASL_WORK: {
        struct auth_job *j = calloc(1, sizeof *j);
        if (j) {
            j->s = s;
            j->kind = JOB_SASL;
        }
        int rc = -ENOMEM;
        if (!j || (rc = submit(s, j, tag, sasl_authcid(s->sasl))) < 0) {
            free(j);
            count_login(s, s->auth_mech, METRICS_UNAVAILABLE);
            sess_tagged(s, tag, "NO", "%s", rc == -EAGAIN
                        ? "[UNAVAILABLE] Too many login attempts, try again later"
                        : "[UNAVAILABLE] Authentication temporarily unavailable");
            auth_end(s);
        }
        return;
    }
    case SASL_DONE: {
        char *user = strdup(sasl_user(s->sasl));
        const char *mech = s->auth_mech ? s->auth_mech : "SASL";
        if (user)
            login_ok(s, tag, user, mech);
        else
            sess_tagged(s, tag, "NO", "[SERVERBUG] Out of memory");
        free(user);
        auth_end(s);
        return;
    }
    case SASL_FAIL: {
        int err = sasl_error(s->sasl);
        /* The log names whom the client tried, whatever went wrong. */
        const char *cid = sasl_authcid(s->sasl), *zid = sasl_authzid(s->sasl);
        char *u = cid ? strdup(cid) : NULL, *z = zid ? strdup(zid) : NULL;
        char *t = strdup(tag);
        const char *mech = s->auth_mech ? s->auth_mech : "SASL";
        char *m = strdup(mech);
        auth_end(s);
        if (!t || !m) {
            free(u); free(z); free(t); free(m);
            return;
        }
        if (err == -EACCES) {
            login_failed(s, t, u ? u : "", m, extra_ms);
        } else {
            /* refused for what the client sent: a failure; else ours */
            count_login(s, m, err == -EPERM || err == -EINVAL || err == -ENOTSUP
                                  ? METRICS_FAILURE : METRICS_UNAVAILABLE);
            log_msg(LOGL_INFO, s->id, u, "authentication (%s) refused from %s%s%s: %s", m,
                    s->peer, z ? ", authzid " : "", z ? z : "",
                    err == -EPERM ? "authorization as another user"
                    : err == -EINVAL ? "malformed SASL message"
                    : err == -ENOTSUP ? "channel binding not possible" : strerror(-err));
            if (err == -EPERM)
                sess_tagged(s, t, "NO", "[AUTHORIZATIONFAILED] No authorization as another user");
            else if (err == -EINVAL)
                sess_bad(s, t, "Malformed SASL message");
            else if (err == -ENOTSUP)
                sess_tagged(s, t, "NO", "[CANNOT] Channel binding is not possible here");
            else
                sess_tagged(s, t, "NO", "[UNAVAILABLE] Authentication temporarily unavailable");
        }
        free(u);
        free(z);
        free(t);
        free(m);
        return;
    }
    }
}

/* Feed a client message (base64 text) to the mechanism. */
static void sasl_feed(session *s, const char *b64, size_t n)
{
    uint8_t *raw = malloc(n / 4 * 3 + 4);
    long len = raw ? store_b64_decode(b64, n, raw) : -ENOMEM;
    if (len < 0) {
        free(raw);
        sess_bad(s, s->wait_tag, "Invalid base64");
        auth_end(s);
        return;
    }
    const uint8_t *out = NULL;
    size_t outlen = 0;
    sasl_status st = sasl_step(s->sasl, raw, (size_t)len, &out, &outlen);
    if (raw)
        memset(raw, 0, (size_t)len);
    free(raw);
    sasl_advance(s, st, out, outlen, 0);
}

void cmd_authenticate(imap_cmd *c)
{
    session *s = c->s;
    const char *tag = c->tag;
    imap_arg *args = c->args;
    size_t nargs = c->nargs;
    if (nargs < 1 || nargs > 2 || args[0].type != IMAP_ARG_ATOM ||
        (nargs == 2 && args[1].type != IMAP_ARG_ATOM && args[1].type != IMAP_ARG_STRING)) {
        sess_bad(s, tag, "AUTHENTICATE takes a mechanism and an optional initial response");
        return;
    }
    sasl_mech mech;
    bool tls = net_conn_is_tls(s->conn);
    if (sasl_mech_parse(args[0].s, &mech) < 0 ||
        (mech == SASL_MECH_SCRAM_SHA_256_PLUS && !tls)) {
        sess_tagged(s, tag, "NO", "[CANNOT] Unsupported mechanism");
        return;
    }
    if (sasl_mech_is_plaintext(mech) && !sess_plaintext_ok(s)) {
        sess_tagged(s, tag, "NO", "[PRIVACYREQUIRED] Plaintext authentication is not allowed here");
        return;
    }
    sasl_backend be = {.verify = be_verify, .verify_cached = be_verify_cached,
                       .scram_lookup = be_scram, .binding = be_binding, .arg = s};
    if (sasl_new(mech, &be, tls, &s->sasl) < 0 || !(s->wait_tag = strdup(tag))) {
        sasl_free(s->sasl);
        s->sasl = NULL;
        sess_tagged(s, tag, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    free(s->auth_mech);
    s->auth_mech = strdup(sasl_mech_name(mech));
    if (nargs == 2) {
        /* SASL-IR: "=" is an empty initial response. */
        if (!strcmp(args[1].s, "="))
            sasl_feed(s, "", 0);
        else
            sasl_feed(s, args[1].s, args[1].len);
        return;
    }
    const uint8_t *out = NULL;
    size_t outlen = 0;
    sasl_status st = sasl_step(s->sasl, NULL, 0, &out, &outlen);
    sasl_advance(s, st, out, outlen, 0);
}

void auth_continue(session *s, const uint8_t *line, size_t n)
{
    imap_reader_line_mode(s->rd, false);
    s->wait = WAIT_NONE;
    if (n == 1 && line[0] == '*') {
        sess_bad(s, s->wait_tag, "Authentication cancelled");
        auth_end(s);
        return;
    }
    sasl_feed(s, (const char *)line, n);
}
