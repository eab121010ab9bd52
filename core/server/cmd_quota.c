/* core/server/cmd_quota.c — QUOTA (RFC 9208): GETQUOTA, GETQUOTAROOT,
 * SETQUOTA, and the checks APPEND, COPY and LMTP make.
 *
 * One quota root per user, named "" and covering all the user's mailboxes.
 * RFC 9208 4.2.2 gives exactly this case as its example ("* QUOTAROOT INBOX
 * """, "The INBOX mailbox is covered by a single quota root with name
 * """), and the empty name cannot be mistaken for a mailbox.  Dovecot's
 * default root name is "" as well ("By default, an empty string is used",
 * its quota plugin documentation), renamed by its admins to "User quota"
 * for Apple Mail; that is a display choice we do not need to copy.
 *
 * Compared with Dovecot 2.3.19 (quota = count:User quota, the same
 * passwd-file rules): the same QUOTA lines but for the root's name, and
 * the same NO [OVERQUOTA] for APPEND and COPY and an allowed MOVE at the
 * limit.  Where we differ, on purpose: for a user without limits Dovecot
 * answers GETQUOTAROOT with "OK No quota" and no untagged response, while
 * RFC 9208 4.1.2 lists QUOTAROOT and QUOTA as "REQUIRED untagged
 * responses" and 4.2.1 says "an empty list means there are no
 * administrative resource limits": we answer the root with "()".  Dovecot
 * 2.3 refuses STATUS DELETED and DELETED-STORAGE as unknown items; 5.1 and
 * 5.2 make them a MUST with QUOTA=RES-STORAGE and QUOTA=RES-MESSAGE.  A
 * malformed SETQUOTA is BAD here (Dovecot: NO), as RFC 9208 4.1.3's
 * "BAD - command unknown or arguments invalid" says.
 *
 * Resources: STORAGE (KiB, RFC 9208 5.1: "in units of 1024 octets") and
 * MESSAGE (exact, 5.2).  The usage is the sum of RFC822.SIZE of the live
 * messages (store_user_usage), which 5.1 allows ("This MAY not be the same
 * as the sum of the RFC822.SIZE of the messages"): it is what the user
 * controls and what every process can read exactly without a scan. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/server/quota.h"
#include "core/server/session.h"

int quota_conf_init(imap_server *srv, const config *cfg)
{
    if (quota_config_defaults(cfg, &srv->quota_default) < 0) {
        fprintf(stderr, "ringmaild: quota_storage: not a size (digits, then B, K, M, G "
                        "or T): %s\n", config_get(cfg, "quota_storage"));
        return -EINVAL;
    }
    bool b = false;
    config_get_bool(cfg, "quota_full_tempfail", &b);
    srv->quota_tempfail = b;
    return 0;
}

int quota_limits_of(imap_server *srv, const char *user, quota_limits *out)
{
    /* Called on workers' loops: only what the directory said recently
     * (userdb_lookup_cached; the passwd-file is read as before).  A user
     * who logged in has a record cached; one older than auth_cache_ttl
     * still serves while the pool asks again; none at all (flushed) is
     * asked for, and this answer is -EAGAIN: never limits made up. */
    userdb_rec r = {0};
    int rc = userdb_lookup_cached(srv->users, user, true, &r);
    if (rc == 1 || rc == -EWOULDBLOCK)
        server_refresh_user(srv, user);
    if (rc == -EWOULDBLOCK) {
        log_msg(LOGL_WARN, 0, user, "quota: the user's record is not at hand (directory "
                "asked again)");
        return -EAGAIN;
    }
    if (rc == -ENOENT) {
        *out = srv->quota_default;
        return 0;
    }
    if (rc < 0)
        return rc;
    rc = quota_user_limits(&srv->quota_default, r.extra, out);
    if (rc < 0) {
        /* A bad rule must not make the mailbox unusable, nor unlimited
         * without a word: the configured defaults, and the log says why. */
        log_msg(LOGL_WARN, 0, r.name, "quota: bad quota_rule in the user's record; "
                "using the configured defaults");
        *out = srv->quota_default;
        rc = 0;
    }
    userdb_rec_free(&r);
    return rc;
}

int quota_check_add(imap_server *srv, store_user *su, const char *user, uint64_t msgs,
                    uint64_t bytes, quota_limits *lim, store_usage *use)
{
    quota_limits l;
    store_usage u = {0};
    int rc = quota_limits_of(srv, user, &l);
    if (rc < 0)
        return rc;
    if (lim)
        *lim = l;
    if (!l.storage && !l.messages && !use)
        return 0;       /* no limit: nothing to count */
    store_user *own = NULL;
    if (!su) {
        if ((rc = store_user_open(srv->mail_root, user, &srv->sopts, &own)) < 0)
            return rc;
        su = own;
    }
    rc = store_user_usage(su, &u);
    if (own)
        store_user_close(own);
    if (rc < 0)
        return rc;
    if (use)
        *use = u;
    /* RFC 9208 4.3.1: refused "when the addition of the message(s) puts
     * the target mailbox over any one of its quota limits": reaching a
     * limit exactly is allowed. */
    if (l.storage && u.bytes + bytes > l.storage)
        return -EDQUOT;
    if (l.messages && u.messages + msgs > l.messages)
        return -EDQUOT;
    return 0;
}

/* "* QUOTA "" (...)": the resources that have a limit (RFC 9208 4.2.1:
 * "Resources not named in the list are not limited in the quota root.
 * Thus, an empty list means there are no administrative resource limits
 * in the quota root.") */
static int quota_line(session *s)
{
    quota_limits l;
    store_usage u;
    int rc = quota_check_add(s->srv, s->su, s->user, 0, 0, &l, &u);
    if (rc < 0 && rc != -EDQUOT)
        return rc;
    imap_out_printf(&s->out, "* QUOTA \"\" (");
    const char *sp = "";
    if (l.storage) {
        /* usage rounded up (any message shows), the limit down (never
         * more than allowed) */
        imap_out_printf(&s->out, "STORAGE %llu %llu", (unsigned long long)((u.bytes + 1023) / 1024),
                        (unsigned long long)(l.storage / 1024));
        sp = " ";
    }
    if (l.messages)
        imap_out_printf(&s->out, "%sMESSAGE %llu %llu", sp, (unsigned long long)u.messages,
                        (unsigned long long)l.messages);
    imap_out_printf(&s->out, ")\r\n");
    return 0;
}

void cmd_getquota(imap_cmd *c)
{
    session *s = c->s;
    const char *root = c->nargs == 1 ? imap_arg_astring(c->a, &c->args[0]) : NULL;
    if (!root) {
        sess_bad(s, c->tag, "GETQUOTA takes a quota root");
        return;
    }
    /* RFC 9208 4.1.1: "NO - getquota error: no such quota root" */
    if (*root) {
        sess_tagged(s, c->tag, "NO", "[NONEXISTENT] No such quota root");
        return;
    }
    int rc = quota_line(s);
    if (rc < 0)
        sess_store_error(s, c->tag, rc, "getquota");
    else
        sess_tagged(s, c->tag, "OK", "GETQUOTA completed");
}

void cmd_getquotaroot(imap_cmd *c)
{
    session *s = c->s;
    const char *raw = c->nargs == 1 ? imap_arg_astring(c->a, &c->args[0]) : NULL;
    if (!raw) {
        sess_bad(s, c->tag, "GETQUOTAROOT takes a mailbox name");
        return;
    }
    char *name = sess_mbox_from_client(s, raw);
    if (!name) {
        sess_tagged(s, c->tag, "NO", "[CANNOT] Invalid mailbox name");
        return;
    }
    /* RFC 9208 4.1.2: "the mailbox name parameter doesn't have to
     * reference an existing mailbox": every name of the user has the
     * user's root. */
    size_t mark = s->out.len;
    imap_out_printf(&s->out, "* QUOTAROOT ");
    sess_mbox_to_client(s, &s->out, name);
    imap_out_printf(&s->out, " \"\"\r\n");
    int rc = quota_line(s);
    if (rc < 0) {
        s->out.len = mark;
        sess_store_error(s, c->tag, rc, "getquotaroot");
    } else {
        sess_tagged(s, c->tag, "OK", "GETQUOTAROOT completed");
    }
    free(name);
}

void cmd_setquota(imap_cmd *c)
{
    session *s = c->s;
    /* setquota = "SETQUOTA" SP quota-root-name SP setquota-list, each
     * resource an atom and a number64 (RFC 9208 7). */
    bool ok = c->nargs == 2 && imap_arg_astring(c->a, &c->args[0]) &&
              c->args[1].type == IMAP_ARG_LIST && c->args[1].nlist % 2 == 0;
    for (size_t i = 0; ok && i < c->args[1].nlist; i += 2) {
        const imap_arg *k = &c->args[1].list[i], *v = &c->args[1].list[i + 1];
        ok = k->type == IMAP_ARG_ATOM && v->type == IMAP_ARG_ATOM && v->s[0] &&
             strspn(v->s, "0123456789") == strlen(v->s);
    }
    if (!ok) {
        sess_bad(s, c->tag, "SETQUOTA takes a quota root and a list of resource limits");
        return;
    }
    /* QUOTASET is not offered: limits are the administrator's (the
     * passwd-file).  RFC 9208 4.1.3 answers a limit the server will not
     * change with NO ("S0002 NO Cannot change system limit"). */
    sess_tagged(s, c->tag, "NO", "[NOPERM] Quota limits are set by the administrator");
}

/* The answer to a write that a limit refuses: RFC 9208 4.3.1, "The
 * OVERQUOTA response code SHOULD be returned in the tagged NO response to
 * an APPEND/COPY/MOVE when the addition of the message(s) puts the target
 * mailbox over any one of its quota limits."  Nothing is written. */
static bool refuse(session *s, const char *tag, const char *verb, uint64_t msgs,
                   uint64_t bytes)
{
    quota_limits l;
    store_usage u;
    int rc = quota_check_add(s->srv, s->su, s->user, msgs, bytes, &l, &u);
    if (rc == 0)
        return false;
    if (rc != -EDQUOT) {
        sess_store_error(s, tag, rc, verb);
        return true;
    }
    if (l.messages && u.messages + msgs > l.messages)
        sess_tagged(s, tag, "NO", "[OVERQUOTA] %s refused: the message quota (%llu) would be "
                    "exceeded", verb, (unsigned long long)l.messages);
    else
        sess_tagged(s, tag, "NO", "[OVERQUOTA] %s refused: the storage quota (%llu KiB) would "
                    "be exceeded", verb, (unsigned long long)(l.storage / 1024));
    return true;
}

bool quota_refuse_append(session *s, const char *tag, const store_new_msg *m, size_t n)
{
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += m[i].len;
    return refuse(s, tag, "APPEND", n, bytes);
}

bool quota_refuse_copy(session *s, const char *tag, const store_range *r, size_t nr, bool move)
{
    /* A MOVE stays within the user's one quota root: the copies are made
     * before the originals go, but the usage after it is the usage before,
     * so it is never refused for quota (RFC 9208 4.3.1 refuses what "puts
     * the target mailbox over" a limit; a MOVE puts nothing over). */
    if (move || !nr)
        return false;
    quota_limits l;
    if (quota_limits_of(s->srv, s->user, &l) == 0 && !l.storage && !l.messages)
        return false;   /* no limit: do not walk the set */
    store_usage add;
    int rc = store_mbox_set_usage(s->mb, r, nr, &add);
    if (rc < 0) {
        sess_store_error(s, tag, rc, "COPY");
        return true;
    }
    return add.messages && refuse(s, tag, "COPY", add.messages, add.bytes);
}
