/* core/server/cmd_any.c — commands valid in any state, and IDLE. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/base/log.h"
#include "core/server/session.h"

void cmd_capability(imap_cmd *c)
{
    session *s = c->s;
    const char *tag = c->tag;
    imap_out_printf(&s->out, "* CAPABILITY ");
    sess_capabilities(s, &s->out);
    imap_out_printf(&s->out, "\r\n");
    sess_tagged(s, tag, "OK", "CAPABILITY completed");
}

/* STARTTLS (RFC 2595, RFC 9051 6.2.1): answer in the clear, then the
 * handshake; the session loop drops what follows and tells net. */
void cmd_starttls(imap_cmd *c)
{
    session *s = c->s;
    const char *tag = c->tag;
    if (!s->srv->tls) {
        sess_tagged(s, tag, "NO", "[UNAVAILABLE] TLS is not configured");
        return;
    }
    if (net_conn_is_tls(s->conn)) {
        sess_bad(s, tag, "TLS is already active");
        return;
    }
    sess_tagged(s, tag, "OK", "Begin TLS negotiation now");
    s->starttls = true;
}

/* COMPRESS (RFC 4978 3): answer uncompressed, then the session loop
 * turns compression on (net_conn_compress) once the tagged OK is queued:
 * "the server MUST compress starting immediately after the CRLF which
 * ends the tagged OK response". */
void cmd_compress(imap_cmd *c)
{
    session *s = c->s;
    const char *tag = c->tag;
    if (c->nargs != 1 || c->args[0].type != IMAP_ARG_ATOM) {
        sess_bad(s, tag, "COMPRESS takes a mechanism name");
        return;
    }
    if (strcasecmp(c->args[0].s, "DEFLATE")) {
        /* RFC 4978 3: BAD for an "invalid or unknown argument".  Dovecot
         * answers NO ("... compression mechanism not supported"); the
         * RFC's result list has NO only for compression already active
         * in another layer, so we keep to BAD. */
        sess_bad(s, tag, "Unknown compression mechanism");
        return;
    }
    if (net_conn_is_compressed(s->conn)) {
        /* RFC 4978 3 answers BAD for "COMPRESS already active", and NO
         * [COMPRESSIONACTIVE] when "the same mechanism is active already";
         * a second COMPRESS DEFLATE is both.  We take NO with the code, as
         * Dovecot does ("NO [COMPRESSIONACTIVE] COMPRESSION=DEFLATE already
         * enabled."): the client learns why, and is not counted towards
         * the limit on BAD commands. */
        sess_tagged(s, tag, "NO", "[COMPRESSIONACTIVE] DEFLATE is already active");
        return;
    }
    sess_tagged(s, tag, "OK", "DEFLATE active");
    s->compress = true;
}

void cmd_noop(imap_cmd *c)
{
    session *s = c->s;
    const char *tag = c->tag;
    cmd_done(s, c->def, tag, "OK", "%s completed", c->def->name);
}

void cmd_logout(imap_cmd *c)
{
    session *s = c->s;
    const char *tag = c->tag;
    sess_untagged(s, "BYE Logging out");
    sess_tagged(s, tag, "OK", "LOGOUT completed");
    s->state = ST_LOGOUT;
}

void cmd_id(imap_cmd *c)
{
    session *s = c->s;
    const char *tag = c->tag;
    imap_arg *args = c->args;
    size_t nargs = c->nargs;
    if (nargs != 1 || (args[0].type != IMAP_ARG_NIL && args[0].type != IMAP_ARG_LIST) ||
        (args[0].type == IMAP_ARG_LIST && args[0].nlist % 2)) {
        sess_bad(s, tag, "ID takes NIL or a list of field/value pairs");
        return;
    }
    sess_untagged(s, "ID (\"name\" \"Ringmail\" \"vendor\" \"Ringmail\")");
    sess_tagged(s, tag, "OK", "ID completed");
}

void cmd_enable(imap_cmd *c)
{
    session *s = c->s;
    const char *tag = c->tag;
    imap_arg *args = c->args;
    size_t nargs = c->nargs;
    if (!nargs) {
        sess_bad(s, tag, "ENABLE what?");
        return;
    }
    imap_out o = {0};
    bool condstore = false, qresync = false;
    for (size_t i = 0; i < nargs; i++) {
        /* RFC 9051 9: capability = ("AUTH=" auth-type) / atom, and "NIL" is
         * an atom there like any other: unknown, so ignored (RFC 5161 3.1). */
        if (args[i].type != IMAP_ARG_ATOM && args[i].type != IMAP_ARG_NIL) {
            sess_bad(s, tag, "ENABLE takes capability names");
            imap_out_free(&o);
            return;
        }
        if (!strcasecmp(args[i].s, "IMAP4rev2") && !s->rev2) {
            s->rev2 = s->utf8 = true;
            imap_out_printf(&o, " IMAP4rev2");
        } else if (!strcasecmp(args[i].s, "UTF8=ACCEPT") && !s->utf8_accept) {
            s->utf8 = s->utf8_accept = true;
            imap_out_printf(&o, " UTF8=ACCEPT");
        } else if (!strcasecmp(args[i].s, "CONDSTORE") && !s->condstore && !condstore) {
            /* listed once, by the ENABLE that turned it on (RFC 5161 3.1:
             * "each corresponding ENABLED response SHOULD only contain
             * extensions enabled by the corresponding ENABLE command"), as
             * the others are; turned on after the loop (a BAD on a later
             * argument enables nothing of it) */
            condstore = true;
            imap_out_printf(&o, " CONDSTORE");
        } else if (!strcasecmp(args[i].s, "QRESYNC") && !s->qresync && !qresync) {
            /* RFC 7162 3.2.3: "ENABLE QRESYNC" and "ENABLE QRESYNC
             * CONDSTORE" "have identical results": both turn CONDSTORE on.
             * The ENABLED line names what the client asked for and this
             * command enabled (RFC 5161 3.2: "capability names that the
             * server supports and that were successfully enabled"), so
             * CONDSTORE appears only when named; Dovecot 2.3 answers
             * "ENABLE QRESYNC" the same way. */
            qresync = true;
            imap_out_printf(&o, " QRESYNC");
        }
    }
    imap_out_printf(&s->out, "* ENABLED%.*s\r\n", (int)o.len, o.p ? o.p : "");
    imap_out_free(&o);
    if (qresync)
        s->qresync = true;
    /* the HIGHESTMODSEQ of the selected mailbox, if any, follows ENABLED
     * (RFC 7162 3.1) */
    if (condstore || qresync)
        sess_condstore_enable(s, &s->out);
    sess_tagged(s, tag, "OK", "ENABLE completed");
}

void cmd_namespace(imap_cmd *c)
{
    session *s = c->s;
    const char *tag = c->tag;
    char sep = store_user_separator(s->su);
    sess_untagged(s, "NAMESPACE ((\"\" \"%c\")) NIL NIL", sep);
    sess_tagged(s, tag, "OK", "NAMESPACE completed");
}

/* ---- IDLE (RFC 2177) ------------------------------------------------------ */

void cmd_idle(imap_cmd *c)
{
    session *s = c->s;
    const char *tag = c->tag;
    free(s->wait_tag);
    s->wait_tag = strdup(tag);
    if (!s->wait_tag) {
        sess_tagged(s, tag, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    s->wait = WAIT_IDLE;
    imap_reader_line_mode(s->rd, true);
    imap_out_printf(&s->out, "+ idling\r\n");
    cmd_sync(s, c->def);
    /* RFC 2177: clients re-IDLE within 29 minutes; the autologout timer
     * stays as it is. */
}

void idle_line(session *s, const uint8_t *line, size_t n)
{
    imap_reader_line_mode(s->rd, false);
    s->wait = WAIT_NONE;
    char *tag = s->wait_tag;
    s->wait_tag = NULL;
    if (n == 4 && !strncasecmp((const char *)line, "DONE", 4)) {
        cmd_done(s, &cmd_table[CMD_IDLE], tag, "OK", "IDLE terminated");
    } else {
        sess_bad(s, tag, "Expected DONE");
    }
    free(tag);
}
