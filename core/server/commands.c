/* core/server/commands.c — the command table: every command's handler and
 * what it needs, and the answers that follow from it.
 *
 * The dispatcher (session.c) checks an entry's states and UID form before
 * its handler runs.  The rest of the declaration is applied where the
 * handler answers, because only it knows when: the updates before a tagged
 * answer go out only once the command succeeded or failed as a command (a
 * BAD is never preceded by them), and often from a later step (FETCH,
 * SEARCH, a write run on the pool), long after the handler returned; the
 * read-only refusal comes after the checks of the arguments, as a client
 * gets BAD for a malformed command whatever the mailbox. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "core/server/session.h"
#include "store/assert.h"

enum { NONE = CMD_UPD_NONE, NO_EXPUNGE = CMD_UPD_NO_EXPUNGE, ALL = CMD_UPD_ALL };

/* name, handler, states, UID form, writes, no arguments, updates before the
 * answer */
const cmd_def cmd_table[CMD_COUNT] = {
    [CMD_CAPABILITY] = {"CAPABILITY", cmd_capability, CMD_IN_ANY, false, false, true, NONE},
    /* NOOP and CHECK are how a client asks for the updates (RFC 9051 6.1.2) */
    [CMD_NOOP] = {"NOOP", cmd_noop, CMD_IN_ANY, false, false, true, ALL},
    [CMD_LOGOUT] = {"LOGOUT", cmd_logout, CMD_IN_ANY, false, false, true, NONE},
    [CMD_ID] = {"ID", cmd_id, CMD_IN_ANY, false, false, false, NONE},
    [CMD_ENABLE] = {"ENABLE", cmd_enable, CMD_IN_AUTHED, false, false, false, NONE},
    [CMD_STARTTLS] = {"STARTTLS", cmd_starttls, CMD_IN_NOAUTH, false, false, true, NONE},
    [CMD_LOGIN] = {"LOGIN", cmd_login, CMD_IN_NOAUTH, false, false, false, NONE},
    [CMD_AUTHENTICATE] = {"AUTHENTICATE", cmd_authenticate, CMD_IN_NOAUTH, false, false, false, NONE},
    [CMD_NAMESPACE] = {"NAMESPACE", cmd_namespace, CMD_IN_AUTHED, false, false, true, NONE},
    [CMD_SELECT] = {"SELECT", cmd_select, CMD_IN_AUTHED, false, false, false, NONE},
    [CMD_EXAMINE] = {"EXAMINE", cmd_examine, CMD_IN_AUTHED, false, false, false, NONE},
    [CMD_CREATE] = {"CREATE", cmd_create, CMD_IN_AUTHED, false, false, false, NONE},
    [CMD_DELETE] = {"DELETE", cmd_delete, CMD_IN_AUTHED, false, false, false, NONE},
    [CMD_RENAME] = {"RENAME", cmd_rename, CMD_IN_AUTHED, false, false, false, NONE},
    [CMD_SUBSCRIBE] = {"SUBSCRIBE", cmd_subscribe, CMD_IN_AUTHED, false, false, false, NONE},
    [CMD_UNSUBSCRIBE] = {"UNSUBSCRIBE", cmd_unsubscribe, CMD_IN_AUTHED, false, false, false, NONE},
    [CMD_LIST] = {"LIST", cmd_list, CMD_IN_AUTHED, false, false, false, NONE},
    [CMD_LSUB] = {"LSUB", cmd_lsub, CMD_IN_AUTHED, false, false, false, NONE},
    [CMD_STATUS] = {"STATUS", cmd_status, CMD_IN_AUTHED, false, false, false, NONE},
    /* to the selected mailbox; to another, nothing */
    [CMD_APPEND] = {"APPEND", cmd_append, CMD_IN_AUTHED, false, false, false, ALL},
    [CMD_IDLE] = {"IDLE", cmd_idle, CMD_IN_AUTHED, false, false, true, ALL},
    [CMD_CHECK] = {"CHECK", cmd_noop, CMD_IN_SELECTED, false, false, true, ALL},
    /* CLOSE expunges silently (RFC 9051 6.4.1); EXAMINE then CLOSE
     * expunges nothing, so it is not refused */
    [CMD_CLOSE] = {"CLOSE", cmd_close, CMD_IN_SELECTED, false, false, true, NONE},
    [CMD_UNSELECT] = {"UNSELECT", cmd_unselect, CMD_IN_SELECTED, false, false, true, NONE},
    [CMD_EXPUNGE] = {"EXPUNGE", cmd_expunge, CMD_IN_SELECTED, true, true, true, ALL},
    [CMD_STORE] = {"STORE", cmd_store, CMD_IN_SELECTED, true, true, false, NO_EXPUNGE},
    [CMD_COPY] = {"COPY", cmd_copy, CMD_IN_SELECTED, true, false, false, ALL},
    [CMD_MOVE] = {"MOVE", cmd_move, CMD_IN_SELECTED, true, true, false, ALL},
    /* FETCH may set \Seen, but not on a read-only mailbox, where it is
     * still allowed: it does not count as writing */
    [CMD_FETCH] = {"FETCH", cmd_fetch, CMD_IN_SELECTED, true, false, false, NO_EXPUNGE},
    [CMD_SEARCH] = {"SEARCH", cmd_search, CMD_IN_SELECTED, true, false, false, NO_EXPUNGE},
    /* RFC 4978 5: command-auth, so after login only */
    [CMD_COMPRESS] = {"COMPRESS", cmd_compress, CMD_IN_AUTHED, false, false, false, NONE},
    [CMD_GETQUOTA] = {"GETQUOTA", cmd_getquota, CMD_IN_AUTHED, false, false, false, NONE},
    [CMD_GETQUOTAROOT] = {"GETQUOTAROOT", cmd_getquotaroot, CMD_IN_AUTHED, false, false, false, NONE},
    [CMD_SETQUOTA] = {"SETQUOTA", cmd_setquota, CMD_IN_AUTHED, false, false, false, NONE},
    /* RFC 5256: EXPUNGE is not permitted while answering SORT or THREAD
     * (allowed for the UID forms, held back for both, as for SEARCH) */
    [CMD_SORT] = {"SORT", cmd_sort, CMD_IN_SELECTED, true, false, false, NO_EXPUNGE},
    [CMD_THREAD] = {"THREAD", cmd_thread, CMD_IN_SELECTED, true, false, false, NO_EXPUNGE},
    /* RFC 5267 4.3.5: command-select */
    [CMD_CANCELUPDATE] = {"CANCELUPDATE", cmd_cancelupdate, CMD_IN_SELECTED, false, false,
                          false, ALL},
};

const cmd_def *cmd_find(const char *name)
{
    for (size_t i = 0; i < CMD_COUNT; i++)
        if (!strcasecmp(cmd_table[i].name, name))
            return &cmd_table[i];
    return NULL;
}

void cmd_update(session *s, const cmd_def *def, sess_update_req *u)
{
    /* the table says whether this command announces anything */
    RM_ASSERT_MSG(def->updates != CMD_UPD_NONE, def->name);
    u->allow_expunge = def->updates == CMD_UPD_ALL;
    sess_update(s, u);
}

void cmd_done(session *s, const cmd_def *def, const char *tag, const char *status,
              const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (def->updates == CMD_UPD_NONE) {
        sess_tagged(s, tag, status, "%s", buf);
        return;
    }
    sess_update_req u = {0};
    imap_out_printf(&u.tail, "%s %s %s\r\n", tag, status, buf);
    cmd_update(s, def, &u);
}

void cmd_sync(session *s, const cmd_def *def)
{
    sess_update_req u = {0};
    cmd_update(s, def, &u);
}

bool cmd_read_only(imap_cmd *c)
{
    if (!c->def->writes || !c->s->readonly)
        return false;
    sess_tagged(c->s, c->tag, "NO", "[READ-ONLY] Mailbox is read-only");
    return true;
}
