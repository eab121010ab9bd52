/* core/server/lmtp.c — LMTP sessions (RFC 2033): mail from the MTA.
 *
 * A connection on an LMTP listener speaks RFC 2033 on RFC 5321's grammar
 * (parsed by core/lmtp/): LHLO, MAIL, RCPT, DATA or BDAT, then one reply
 * per accepted recipient.  Recipients are users of the directory (userdb.h:
 * the passwd-file, LDAP or PostgreSQL), looked up off the worker, as for
 * IMAP.  The delivery itself (lmtp_deliver.c) runs on the sync pool, off the
 * worker, and a recipient hears 250 only once its copy is on disk under the
 * fsync policy; the worker goes on with its other sessions meanwhile.
 *
 * Input is read in the order it comes: commands may be pipelined
 * (PIPELINING), and what arrives while a delivery runs waits in `stash`
 * until its replies are out. */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/auth/authpool.h"
#include "core/base/log.h"
#include "core/server/quota.h"
#include "core/lmtp/lmtp_proto.h"
#include "core/server/auth_http.h"
#include "core/server/lmtp.h"
#include "core/server/socketmap.h"
#include "store/assert.h"

/* Errors in a row (unknown commands, bad syntax, refused recipients do not
 * count) before the connection is dropped. */
#define LMTP_MAX_ERRORS 20
/* Commands between two deliveries: a transaction needs LHLO, MAIL, a RCPT
 * per recipient and DATA; far more (NOOP, RSET, refused recipients over and
 * over) is a client that never delivers, holding a connection. */
#define LMTP_MAX_IDLE_COMMANDS(c) ((c)->max_rcpt * 2u + 100u)

static imap_server *the_server;

int lmtp_conf_init(imap_server *srv, const config *cfg)
{
    lmtp_conf *c = &srv->lmtp;
    long long v = 0;
    the_server = srv;
    c->keep_domain = !strcmp(config_get(cfg, "lmtp_user_domain"), "keep");
    const char *d = config_get(cfg, "recipient_delimiter");
    if (strlen(d) >= sizeof c->delimiters) {
        fprintf(stderr, "ringmaild: recipient_delimiter: at most %zu characters\n",
                sizeof c->delimiters - 1);
        return -EINVAL;
    }
    for (const char *p = d; *p; p++)
        if ((unsigned char)*p < 33 || (unsigned char)*p > 126 || *p == '@') {
            fprintf(stderr, "ringmaild: recipient_delimiter: '%s' is not a set of "
                    "printable characters other than '@'\n", d);
            return -EINVAL;
        }
    snprintf(c->delimiters, sizeof c->delimiters, "%s", d);
    config_get_int(cfg, "lmtp_max_recipients", &v);
    c->max_rcpt = (unsigned)v;
    config_get_int(cfg, "lmtp_timeout", &v);
    c->timeout_ms = (unsigned)v * 1000u;
    config_get_int(cfg, "append_limit", &v);
    c->max_size = (uint64_t)v;
    const char *h = config_get(cfg, "lmtp_hostname");
    if (*h) {
        snprintf(c->hostname, sizeof c->hostname, "%s", h);
    } else if (gethostname(c->hostname, sizeof c->hostname - 1) < 0 || !c->hostname[0]) {
        snprintf(c->hostname, sizeof c->hostname, "localhost");
    }
    for (char *p = c->hostname; *p; p++)
        if ((unsigned char)*p <= 32 || (unsigned char)*p >= 127)
            *p = '-';   /* it goes into replies and header fields */
    return 0;
}

/* ---- replies ---- */

static void reply(lmtp_sess *ls, int code, const char *status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void reply(lmtp_sess *ls, int code, const char *status, const char *fmt, ...)
{
    char text[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    for (char *p = text; *p; p++)
        if (*p == '\r' || *p == '\n')
            *p = ' ';
    imap_out_printf(&ls->out, "%d %s %s\r\n", code, status, text);
}

static void flush(lmtp_sess *ls)
{
    if (ls->out.err) {
        /* A reply could not be built: the client would wait for it. */
        imap_out_free(&ls->out);
        memset(&ls->out, 0, sizeof ls->out);
        static const char bye[] = "421 4.3.0 Out of memory, closing\r\n";
        net_conn_send(ls->conn, bye, sizeof bye - 1);
        ls->closing = true;
        return;
    }
    if (ls->out.len)
        net_conn_send(ls->conn, ls->out.p, ls->out.len);
    ls->out.len = 0;
    if (ls->out.cap > 16384) {
        imap_out_free(&ls->out);
        memset(&ls->out, 0, sizeof ls->out);
    }
}

/* ---- the transaction ---- */

void lmtp_rcpt_free(lmtp_rcpt *r)
{
    free(r->user);
    free(r->folder);
    free(r->addr);
    memset(r, 0, sizeof *r);
}

static void reset(lmtp_sess *ls)
{
    for (size_t i = 0; i < ls->nrcpt; i++)
        lmtp_rcpt_free(&ls->rcpt[i]);
    free(ls->rcpt);
    ls->rcpt = NULL;
    ls->nrcpt = ls->caprcpt = 0;
    free(ls->from);
    ls->from = NULL;
    ls->in_mail = false;
    ls->smtputf8 = false;
    free(ls->msg);
    ls->msg = NULL;
    ls->mlen = ls->mcap = 0;
    ls->msize = 0;
    ls->bdat_failed = false;
}

int lmtp_user_of(const lmtp_conf *c, const char *local, const char *domain, char *name,
                 size_t cap, const char **detail)
{
    size_t ulen = strlen(local);
    *detail = NULL;
    if (c->delimiters[0]) {
        size_t k = strcspn(local, c->delimiters);
        if (k < ulen && k > 0) {
            *detail = local + k + 1;
            ulen = k;
        }
    }
    int n = c->keep_domain && domain
            ? snprintf(name, cap, "%.*s@%s", (int)ulen, local, domain)
            : snprintf(name, cap, "%.*s", (int)ulen, local);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

/* A recipient whose user is known (rc 0, rec its record) or not (rc
 * -ENOENT, -EAGAIN, ...): accepted into the transaction, or refused. */
static void rcpt_finish(lmtp_sess *ls, int rc, userdb_rec *rec, const char *folder,
                        const char *addr, const char *why)
{
    if (rc == -ENOENT) {
        reply(ls, 550, "5.1.1", "<%s>: no such user here", addr);
        return;
    }
    if (rc < 0) {
        log_msg(LOGL_ERROR, ls->id, NULL, "recipient lookup failed for <%s>: %s", addr,
                why && *why ? why : strerror(-rc));
        reply(ls, 451, "4.3.0", "Temporary failure looking up the recipient");
        return;
    }
    lmtp_rcpt r = {.user = rec->name};
    rec->name = NULL;
    r.folder = folder && *folder ? strdup(folder) : NULL;
    r.addr = strdup(addr);
    if ((folder && *folder && !r.folder) || !r.addr) {
        lmtp_rcpt_free(&r);
        reply(ls, 451, "4.3.0", "Out of memory");
        return;
    }
    /* Over quota already (at or past a limit: no message fits): refused
     * now, so the MTA bounces (or, with quota_full_tempfail, retries) */
    if (quota_check_add(ls->srv, NULL, r.user, 1, 1, NULL, NULL) == -EDQUOT) {
        bool t = ls->srv->quota_tempfail;
        reply(ls, t ? 452 : 552, t ? "4.2.2" : "5.2.2", "<%s> Mailbox is full", r.addr);
        lmtp_rcpt_free(&r);
        return;
    }
    ls->rcpt[ls->nrcpt++] = r;
    reply(ls, 250, "2.1.5", "Recipient OK");
}

/* A recipient the directory must be asked about: on the auth pool (the
 * worker never waits for a directory), the session holding its input
 * meanwhile as for a delivery. */
struct rcpt_job {
    lmtp_sess *ls;
    char *name, *folder, *addr;
    int rc;
    userdb_rec rec;
    char why[200];
};

static void rcpt_job_free(struct rcpt_job *j)
{
    free(j->name);
    free(j->folder);
    free(j->addr);
    userdb_rec_free(&j->rec);
    free(j);
}

static void rcpt_work(void *arg)
{
    struct rcpt_job *j = arg;
    j->rc = userdb_lookup(j->ls->srv->users, j->name, true, &j->rec);
    if (j->rc < 0 && j->rc != -ENOENT)
        snprintf(j->why, sizeof j->why, "%s", userdb_error());
}

static void rcpt_done(void *arg, int status)
{
    struct rcpt_job *j = arg;
    lmtp_sess *ls = j->ls;
    RM_ASSERT(ls->busy);
    ls->busy = false;
    if (ls->dead) {
        rcpt_job_free(j);
        lmtp_free(ls);
        return;
    }
    if (status < 0)     /* the pool shut down before the job ran */
        reply(ls, 421, "4.3.2", "%s Server shutting down", ls->srv->lmtp.hostname);
    else
        rcpt_finish(ls, j->rc, &j->rec, j->folder, j->addr, j->why);
    rcpt_job_free(j);
    lmtp_resume(ls);
}

static bool param_size(const char *v, uint64_t *out)
{
    uint64_t n = 0;
    if (!v || !*v || strlen(v) > 18)
        return false;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        n = n * 10 + (uint64_t)(*p - '0');
    }
    *out = n;
    return true;
}

static void cmd_mail(lmtp_sess *ls, const lmtp_cmd *cmd)
{
    if (!ls->lhlo) {
        reply(ls, 503, "5.5.1", "Send LHLO first");
        return;
    }
    if (ls->in_mail) {
        reply(ls, 503, "5.5.1", "Nested MAIL command");
        return;
    }
    bool utf8 = false;
    for (size_t i = 0; i < cmd->nparams; i++) {
        const lmtp_param *p = &cmd->params[i];
        uint64_t size;
        if (!strcmp(p->key, "SIZE")) {
            if (!param_size(p->value, &size)) {
                reply(ls, 501, "5.5.4", "Syntax: SIZE=<number>");
                return;
            }
            /* RFC 1870 6.1: a declared size over the limit is refused now */
            if (size > ls->srv->lmtp.max_size) {
                reply(ls, 552, "5.3.4", "Message size exceeds fixed maximum message size "
                      "(%llu)", (unsigned long long)ls->srv->lmtp.max_size);
                return;
            }
        } else if (!strcmp(p->key, "BODY")) {
            /* RFC 6152: 7BIT and 8BITMIME; BINARYMIME is not offered */
            if (!p->value || (strcasecmp(p->value, "7BIT") && strcasecmp(p->value, "8BITMIME"))) {
                reply(ls, 555, "5.5.4", "BODY must be 7BIT or 8BITMIME");
                return;
            }
        } else if (!strcmp(p->key, "SMTPUTF8")) {
            if (p->value) {
                reply(ls, 555, "5.5.4", "SMTPUTF8 takes no value");
                return;
            }
            utf8 = true;
        } else {
            /* RFC 5321 4.1.1.11: a parameter we do not implement: 555 */
            reply(ls, 555, "5.5.4", "Unsupported parameter %s", p->key);
            return;
        }
    }
    /* RFC 6531 3.4: a non-ASCII address needs SMTPUTF8 */
    if (cmd->utf8 && !utf8) {
        reply(ls, 553, "5.6.7", "Non-ASCII address without SMTPUTF8");
        return;
    }
    size_t n = strlen(cmd->local) + (cmd->domain ? strlen(cmd->domain) + 1 : 0) + 1;
    ls->from = malloc(n);
    if (!ls->from) {
        reply(ls, 451, "4.3.0", "Out of memory");
        return;
    }
    snprintf(ls->from, n, "%s%s%s", cmd->local, cmd->domain ? "@" : "",
             cmd->domain ? cmd->domain : "");
    ls->in_mail = true;
    ls->smtputf8 = utf8;
    reply(ls, 250, "2.1.0", "Sender OK");
}

static void cmd_rcpt(lmtp_sess *ls, const lmtp_cmd *cmd)
{
    if (!ls->in_mail) {
        reply(ls, 503, "5.5.1", "Send MAIL first");
        return;
    }
    if (cmd->nparams) {
        /* NOTIFY, ORCPT (DSN) are not offered */
        reply(ls, 555, "5.5.4", "Unsupported parameter %s", cmd->params[0].key);
        return;
    }
    if (cmd->utf8 && !ls->smtputf8) {
        reply(ls, 553, "5.6.7", "Non-ASCII address without SMTPUTF8");
        return;
    }
    /* RFC 5321 4.5.3.1.10: too many recipients is 452, retried later */
    if (ls->nrcpt >= ls->srv->lmtp.max_rcpt) {
        reply(ls, 452, "4.5.3", "Too many recipients");
        return;
    }
    if (ls->nrcpt == ls->caprcpt) {
        size_t cap = ls->caprcpt ? ls->caprcpt * 2 : 8;
        lmtp_rcpt *v = realloc(ls->rcpt, cap * sizeof *v);
        if (!v) {
            reply(ls, 451, "4.3.0", "Out of memory");
            return;
        }
        ls->rcpt = v;
        ls->caprcpt = cap;
    }
    char name[LMTP_LOCAL_MAX + LMTP_DOMAIN_MAX + 2];
    const char *detail;
    if (lmtp_user_of(&ls->srv->lmtp, cmd->local, cmd->domain, name, sizeof name, &detail) < 0) {
        reply(ls, 550, "5.1.1", "<%s@%s>: no such user here", cmd->local,
              cmd->domain ? cmd->domain : "");   /* the parser bounds both: cannot be */
        return;
    }
    char addr[LMTP_LOCAL_MAX + LMTP_DOMAIN_MAX + 2];
    snprintf(addr, sizeof addr, "%s%s%s", cmd->local, cmd->domain ? "@" : "",
             cmd->domain ? cmd->domain : "");
    /* A record within auth_cache_ttl serves at once; an older one, or
     * none, is asked for on the pool (delivery can wait; the TTL is the
     * operator's bound on how stale a route or quota may be). */
    userdb_rec rec = {0};
    int rc = userdb_lookup_cached(ls->srv->users, name, true, &rec);
    if (rc == 1) {
        userdb_rec_free(&rec);
        rc = -EWOULDBLOCK;
    }
    if (rc != -EWOULDBLOCK) {
        rcpt_finish(ls, rc, &rec, detail, addr, NULL);
        userdb_rec_free(&rec);
        return;
    }
    struct rcpt_job *j = calloc(1, sizeof *j);
    if (j) {
        j->ls = ls;
        j->name = strdup(name);
        j->folder = detail ? strdup(detail) : NULL;
        j->addr = strdup(addr);
    }
    if (!j || !j->name || (detail && !j->folder) || !j->addr) {
        if (j)
            rcpt_job_free(j);
        reply(ls, 451, "4.3.0", "Out of memory");
        return;
    }
    ls->busy = true;
    net_conn_pause(ls->conn, true);
    if (authpool_submit(ls->srv->authpool, rcpt_work, j, rcpt_done, ls->srv->net,
                        net_conn_worker(ls->conn)) < 0) {
        ls->busy = false;
        net_conn_pause(ls->conn, false);
        rcpt_job_free(j);
        reply(ls, 451, "4.3.0", "Server busy, try again later");
    }
}

static void start_data(lmtp_sess *ls)
{
    lmtp_data_init(&ls->dec, ls->srv->lmtp.max_size);
    ls->mlen = 0;
    ls->msize = 0;
    ls->state = LS_DATA;
}

static bool transaction_ready(lmtp_sess *ls)
{
    if (!ls->in_mail) {
        reply(ls, 503, "5.5.1", "Send MAIL first");
        return false;
    }
    /* RFC 2033 4.2: with no successful RCPT, DATA fails with 503 */
    if (!ls->nrcpt) {
        reply(ls, 503, "5.5.1", "No valid recipients");
        return false;
    }
    return true;
}

static void command(lmtp_sess *ls, char *line, size_t len)
{
    lmtp_cmd cmd;
    lmtp_error err;
    if (lmtp_parse_command(line, len, &cmd, &err) < 0) {
        reply(ls, err.code, err.status, "%s", err.text);
        ls->errors++;
        return;
    }
    switch (cmd.verb) {
    case LMTP_LHLO: {
        reset(ls);
        free(ls->helo);
        ls->helo = strdup(cmd.arg);
        ls->lhlo = true;
        const lmtp_conf *c = &ls->srv->lmtp;
        imap_out_printf(&ls->out, "250-%s\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n"
                        "250-8BITMIME\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n250 SIZE %llu\r\n",
                        c->hostname, (unsigned long long)c->max_size);
        break;
    }
    case LMTP_HELO:
        /* RFC 2033 4.1: "A LMTP server MUST NOT return a Postive Completion
         * reply code to these commands.  The 500 reply code is recommended." */
        reply(ls, 500, "5.5.1", "This is LMTP: use LHLO");
        ls->errors++;
        break;
    case LMTP_MAIL:
        cmd_mail(ls, &cmd);
        break;
    case LMTP_RCPT:
        cmd_rcpt(ls, &cmd);
        break;
    case LMTP_DATA:
        if (transaction_ready(ls)) {
            reply(ls, 354, "2.0.0", "End data with <CR><LF>.<CR><LF>");
            start_data(ls);
        }
        break;
    case LMTP_BDAT:
        /* RFC 3030 2: the chunk follows the command whatever the answer,
         * so it is read (and dropped if the command fails). */
        ls->bdat_left = cmd.bdat_size;
        ls->bdat_last = cmd.bdat_last;
        if (!ls->in_bdat) {
            ls->bdat_failed = !transaction_ready(ls);
            if (!ls->bdat_failed) {
                ls->in_bdat = true;
                ls->mlen = 0;
                ls->msize = 0;
            }
        }
        ls->state = LS_BDAT;
        break;
    case LMTP_RSET:
        reset(ls);
        reply(ls, 250, "2.0.0", "OK");
        break;
    case LMTP_NOOP:
        reply(ls, 250, "2.0.0", "OK");
        break;
    case LMTP_VRFY:
        /* RFC 5321 3.5.3: 252 when the server will not verify */
        reply(ls, 252, "2.5.0", "Cannot VRFY; send some mail");
        break;
    case LMTP_QUIT:
        reply(ls, 221, "2.0.0", "%s closing connection", ls->srv->lmtp.hostname);
        ls->closing = true;
        break;
    case LMTP_STARTTLS:
    default:
        reply(ls, 502, "5.5.1", "Command not implemented");
        ls->errors++;
        break;
    }
    if (cmd.verb != LMTP_HELO && cmd.verb != LMTP_STARTTLS && cmd.verb != LMTP_UNKNOWN)
        ls->errors = 0;
}

/* ---- input ---- */

/* Room for `n` more message bytes, up to the size limit (what is over it
 * is counted, not kept). */
static bool msg_room(lmtp_sess *ls, size_t n)
{
    uint64_t max = ls->srv->lmtp.max_size;
    size_t want = ls->mlen + n + 1;
    if (want > max + 2)
        want = (size_t)max + 2;
    if (want <= ls->mcap)
        return true;
    size_t cap = ls->mcap ? ls->mcap : 16384;
    while (cap < want)
        cap *= 2;
    char *m = realloc(ls->msg, cap);
    if (!m)
        return false;
    ls->msg = m;
    ls->mcap = cap;
    return true;
}

static void stash(lmtp_sess *ls, const uint8_t *p, size_t n)
{
    if (!n)
        return;
    /* bounded: a client that pipelines past a whole line and chunk is
     * misbehaving */
    if (ls->nstash + n > LMTP_LINE_MAX + (1u << 20)) {
        ls->closing = true;
        return;
    }
    uint8_t *b = realloc(ls->stash, ls->nstash + n);
    if (!b) {
        ls->closing = true;
        return;
    }
    memcpy(b + ls->nstash, p, n);
    ls->stash = b;
    ls->nstash += n;
}

/* Consume input in command, DATA or BDAT mode until it is used up, a
 * delivery starts or the session ends.  Returns what was used. */
static size_t consume(lmtp_sess *ls, const uint8_t *p, size_t n)
{
    size_t at = 0;
    /* (a BDAT chunk of 0 bytes ends without input) */
    while ((at < n || (ls->state == LS_BDAT && !ls->bdat_left)) && !ls->busy && !ls->closing) {
        if (ls->state == LS_DATA) {
            size_t got, used;
            if (!msg_room(ls, n - at)) {
                reply(ls, 451, "4.3.0", "Out of memory");
                ls->closing = true;
                break;
            }
            int end = lmtp_data_feed(&ls->dec, (const char *)p + at, n - at,
                                     ls->msg + ls->mlen, &got, &used);
            ls->mlen += got;
            at += used;
            if (end) {
                ls->msize = ls->dec.size;
                ls->state = LS_CMD;
                ls->commands = 0;
                lmtp_deliver(ls);
            }
            continue;
        }
        if (ls->state == LS_BDAT) {
            size_t k = n - at < ls->bdat_left ? n - at : (size_t)ls->bdat_left;
            if (!ls->bdat_failed) {
                uint64_t max = ls->srv->lmtp.max_size;
                size_t keep = ls->msize >= max ? 0 : (max - ls->msize < k ? (size_t)(max - ls->msize) : k);
                if (keep && !msg_room(ls, keep)) {
                    reply(ls, 451, "4.3.0", "Out of memory");
                    ls->closing = true;
                    break;
                }
                memcpy(ls->msg + ls->mlen, p + at, keep);
                ls->mlen += keep;
                ls->msize += k;
            }
            at += k;
            ls->bdat_left -= k;
            if (ls->bdat_left == 0) {
                ls->state = LS_CMD;
                if (ls->bdat_failed) {
                    ls->bdat_failed = false;    /* the reply went out with BDAT */
                } else if (ls->bdat_last) {
                    ls->in_bdat = false;
                    ls->commands = 0;
                lmtp_deliver(ls);
                } else {
                    reply(ls, 250, "2.0.0", "%llu octets received",
                          (unsigned long long)ls->msize);
                }
            }
            continue;
        }
        /* a command line */
        const uint8_t *nl = memchr(p + at, '\n', n - at);
        size_t take = nl ? (size_t)(nl - (p + at)) + 1 : n - at;
        if (ls->overlong) {
            if (nl) {
                ls->overlong = false;
                reply(ls, 500, "5.5.2", "Line too long");
                ls->errors++;
            }
            at += take;
            continue;
        }
        if (ls->nline + take > sizeof ls->line - 1) {
            ls->overlong = !nl;
            ls->nline = 0;
            if (nl) {
                reply(ls, 500, "5.5.2", "Line too long");
                ls->errors++;
            }
            at += take;
            continue;
        }
        memcpy(ls->line + ls->nline, p + at, take);
        ls->nline += take;
        at += take;
        if (!nl)
            break;
        size_t len = ls->nline - 1;
        if (len && ls->line[len - 1] == '\r')
            len--;
        ls->nline = 0;
        if (++ls->commands > LMTP_MAX_IDLE_COMMANDS(&ls->srv->lmtp)) {
            reply(ls, 421, "4.7.0", "Too many commands without a delivery, closing");
            ls->closing = true;
            break;
        }
        command(ls, ls->line, len);
        if (ls->errors >= LMTP_MAX_ERRORS) {
            reply(ls, 421, "4.7.0", "Too many errors, closing");
            ls->closing = true;
        }
    }
    return at;
}

static void arm_timer(lmtp_sess *ls)
{
    net_conn_timer(ls->conn, ls->srv->lmtp.timeout_ms);
}

static void feed(lmtp_sess *ls, const uint8_t *p, size_t n)
{
    if (ls->busy) {
        stash(ls, p, n);
    } else {
        size_t used = consume(ls, p, n);
        if (ls->busy)
            stash(ls, p + used, n - used);
    }
    flush(ls);
    if (ls->closing) {
        net_conn_close(ls->conn);
        return;
    }
    if (!ls->busy)
        arm_timer(ls);
}

void lmtp_resume(lmtp_sess *ls)
{
    RM_ASSERT(!ls->busy);
    flush(ls);
    net_conn_pause(ls->conn, false);
    uint8_t *st = ls->stash;
    size_t n = ls->nstash;
    ls->stash = NULL;
    ls->nstash = 0;
    if (ls->closing) {
        free(st);
        net_conn_close(ls->conn);
        return;
    }
    if (n)
        feed(ls, st, n);
    else
        arm_timer(ls);
    free(st);
}

/* ---- net callbacks ---- */

static void *on_open(net_conn *c)
{
    imap_server *srv = the_server;
    lmtp_sess *ls = calloc(1, sizeof *ls);
    if (!ls)
        return NULL;
    ls->srv = srv;
    ls->conn = c;
    ls->id = atomic_fetch_add(&srv->next_session, 1) + 1;
    log_msg(LOGL_INFO, ls->id, NULL, "lmtp connect from %s", net_conn_peer(c));
    imap_out_printf(&ls->out, "220 %s LMTP Ringmail ready\r\n", srv->lmtp.hostname);
    flush(ls);
    arm_timer(ls);
    return ls;
}

static void on_data(net_conn *c, void *user, const uint8_t *p, size_t n)
{
    (void)c;
    feed(user, p, n);
}

static void on_timer(net_conn *c, void *user)
{
    lmtp_sess *ls = user;
    if (ls->busy)
        return;     /* a delivery is running: its end re-arms the timer */
    log_msg(LOGL_INFO, ls->id, NULL, "lmtp timeout");
    reply(ls, 421, "4.4.2", "%s Timeout, closing", ls->srv->lmtp.hostname);
    flush(ls);
    net_conn_close(c);
}

void lmtp_free(lmtp_sess *ls)
{
    RM_ASSERT(!ls->busy);
    reset(ls);
    free(ls->helo);
    free(ls->stash);
    imap_out_free(&ls->out);
    free(ls);
}

static void on_close(net_conn *c, void *user)
{
    (void)c;
    lmtp_sess *ls = user;
    log_msg(LOGL_INFO, ls->id, NULL, "lmtp disconnect");
    if (ls->busy) {
        ls->dead = true;    /* the delivery job frees us when it is done */
        return;
    }
    lmtp_free(ls);
}

static void on_shutdown(net_conn *c, void *user)
{
    lmtp_sess *ls = user;
    if (ls->busy) {
        ls->closing = true;     /* its replies go out first */
        return;
    }
    reply(ls, 421, "4.3.2", "%s Server shutting down", ls->srv->lmtp.hostname);
    flush(ls);
    net_conn_close(c);
}

const net_conn_ops lmtp_session_ops = {
    .on_open = on_open,
    .on_data = on_data,
    .on_timer = on_timer,
    .on_close = on_close,
    .on_shutdown = on_shutdown,
};

/* ---- the server's callbacks: IMAP, LMTP or the socketmap by the listener's tag ---- */

static const net_conn_ops *ops_for(const net_conn *c)
{
    switch (net_conn_tag(c)) {
    case LISTEN_LMTP:
        return &lmtp_session_ops;
    case LISTEN_SOCKETMAP:
        return &socketmap_ops;
    case LISTEN_AUTH_HTTP:
        return &auth_http_ops;
    default:
        return &imap_session_ops;
    }
}

static void *d_open(net_conn *c)
{
    return ops_for(c)->on_open(c);
}

static void d_data(net_conn *c, void *u, const uint8_t *p, size_t n)
{
    ops_for(c)->on_data(c, u, p, n);
}

#define DISPATCH(name, field)                                   \
    static void name(net_conn *c, void *u)                      \
    {                                                           \
        const net_conn_ops *o = ops_for(c);                     \
        if (o->field)                                           \
            o->field(c, u);                                     \
    }
DISPATCH(d_drain, on_drain)
DISPATCH(d_timer, on_timer)
DISPATCH(d_wake, on_wake)
DISPATCH(d_resume, on_resume)
DISPATCH(d_close, on_close)
DISPATCH(d_shutdown, on_shutdown)

const net_conn_ops server_conn_ops = {
    .on_open = d_open,
    .on_data = d_data,
    .on_drain = d_drain,
    .on_timer = d_timer,
    .on_wake = d_wake,
    .on_resume = d_resume,
    .on_close = d_close,
    .on_shutdown = d_shutdown,
};
