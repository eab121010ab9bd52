/* core/lmtp/lmtp_cmd.c — LMTP command lines: the verb, the paths of MAIL
 * and RCPT (RFC 5321 4.1.2, with RFC 6531's UTF-8 for SMTPUTF8) and their
 * ESMTP parameters.  Everything is parsed in place in the caller's line. */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "core/lmtp/lmtp_proto.h"
#include "store/utf8.h"

static int fail(lmtp_error *err, int code, const char *status, const char *text)
{
    err->code = code;
    err->status = status;
    err->text = text;
    return -EINVAL;
}

static bool is_alpha(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* A UTF-8 sequence of a non-ASCII character at p (RFC 6531 UTF8-non-ascii):
 * its length, or 0. */
static size_t utf8_at(const char *p, const char *end)
{
    uint32_t cp;
    if ((unsigned char)*p < 0x80)
        return 0;
    return store_utf8_decode(p, (size_t)(end - p), &cp);
}

/* RFC 5321 4.1.2 atext (RFC 5322 3.2.3). */
static bool is_atext(unsigned char c)
{
    return is_alpha(c) || is_digit(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

struct cur {
    char *p, *end;
    bool utf8;
};

/* Dot-string = Atom *("." Atom), an atom being 1*atext (or UTF-8). */
static bool dot_string(struct cur *c)
{
    bool atom = false;
    while (c->p < c->end) {
        size_t u = utf8_at(c->p, c->end);
        if (u) {
            c->utf8 = true;
            c->p += u;
            atom = true;
        } else if (is_atext((unsigned char)*c->p)) {
            c->p++;
            atom = true;
        } else if (*c->p == '.' && atom) {
            c->p++;
            atom = false;
        } else {
            break;
        }
    }
    return atom;        /* no empty atom, no trailing dot */
}

/* Quoted-string: DQUOTE *(qtextSMTP / quoted-pairSMTP) DQUOTE; the content
 * is unquoted in place from `to` on.  Returns the end of the content. */
static char *quoted_string(struct cur *c, char *to)
{
    c->p++;             /* DQUOTE */
    while (c->p < c->end && *c->p != '"') {
        unsigned char ch = (unsigned char)*c->p;
        size_t u = utf8_at(c->p, c->end);
        if (ch == '\\') {
            if (c->p + 1 >= c->end || c->p[1] < 32 || c->p[1] > 126)
                return NULL;
            *to++ = c->p[1];
            c->p += 2;
        } else if (u) {
            c->utf8 = true;
            memmove(to, c->p, u);
            to += u;
            c->p += u;
        } else if (ch >= 32 && ch <= 126) {
            *to++ = (char)ch;
            c->p++;
        } else {
            return NULL;
        }
    }
    if (c->p >= c->end)
        return NULL;
    c->p++;             /* DQUOTE */
    return to;
}

/* Domain = sub-domain *("." sub-domain), sub-domain = Let-dig [Ldh-str]
 * (or a U-label under SMTPUTF8); or an address-literal "[...]". */
static bool domain(struct cur *c)
{
    if (c->p < c->end && *c->p == '[') {
        c->p++;
        char *start = c->p;
        while (c->p < c->end && *c->p != ']') {
            unsigned char ch = (unsigned char)*c->p;
            if (ch < 33 || ch > 126 || ch == '[' || ch == '\\')
                return false;
            c->p++;
        }
        if (c->p >= c->end || c->p == start)
            return false;
        c->p++;
        return true;
    }
    bool label = false;
    char last = 0;
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p;
        size_t u = utf8_at(c->p, c->end);
        if (u) {
            c->utf8 = true;
            c->p += u;
            label = true;
            last = 'a';
        } else if (is_alpha(ch) || is_digit(ch)) {
            c->p++;
            label = true;
            last = (char)ch;
        } else if (ch == '-' && label) {
            c->p++;
            last = '-';
        } else if (ch == '.' && label && last != '-') {
            c->p++;
            label = false;
            last = '.';
        } else {
            break;
        }
    }
    return label && last != '-';
}

/* Path = "<" [ A-d-l ":" ] Mailbox ">" (and "<>" for MAIL, "<Postmaster>"
 * for RCPT).  Fills cmd's local/domain; c->p ends after the ">". */
static int path(struct cur *c, lmtp_cmd *cmd, bool mail, lmtp_error *err)
{
    const char *bad_status = mail ? "5.1.7" : "5.1.3";
    char *open = c->p;
    if (c->p >= c->end || *c->p != '<')
        return fail(err, 501, "5.5.4", "Syntax: a path in <...> expected");
    c->p++;
    if (mail && c->p < c->end && *c->p == '>') {
        c->p++;
        cmd->null_path = true;
        cmd->local = "";
        return 0;
    }
    if (!mail && c->end - c->p >= 11 && !strncasecmp(c->p, "postmaster>", 11)) {
        c->p[10] = '\0';
        cmd->local = c->p;
        c->p += 11;
        return 0;
    }
    /* A-d-l, the source route: "MUST accept" and "SHOULD ignore" (RFC 5321
     * 4.1.1.3 and appendix C). */
    if (c->p < c->end && *c->p == '@') {
        while (c->p < c->end && *c->p == '@') {
            c->p++;
            if (!domain(c))
                return fail(err, 501, bad_status, "Syntax error in the source route");
            if (c->p < c->end && *c->p == ',')
                c->p++;
            else
                break;
        }
        if (c->p >= c->end || *c->p != ':')
            return fail(err, 501, bad_status, "Syntax error in the source route");
        c->p++;
    }
    char *local = c->p, *local_end;
    bool quoted = c->p < c->end && *c->p == '"';
    if (quoted) {
        local_end = quoted_string(c, local);
        if (!local_end)
            return fail(err, 501, bad_status, "Syntax error in the quoted local part");
    } else {
        if (!dot_string(c))
            return fail(err, 501, bad_status, "Syntax error in the local part");
        local_end = c->p;
    }
    if ((size_t)(c->p - local) - (quoted ? 2 : 0) > LMTP_LOCAL_MAX)
        return fail(err, 501, bad_status, "Local part too long");
    if (c->p >= c->end || *c->p != '@')
        return fail(err, 501, bad_status, "Syntax: local-part@domain expected");
    c->p++;
    char *dom = c->p;
    if (!domain(c))
        return fail(err, 501, bad_status, "Syntax error in the domain");
    if ((size_t)(c->p - dom) > LMTP_DOMAIN_MAX)
        return fail(err, 501, bad_status, "Domain too long");
    if (c->p >= c->end || *c->p != '>')
        return fail(err, 501, bad_status, "Syntax: '>' expected after the address");
    if ((size_t)(c->p + 1 - open) > LMTP_PATH_MAX)
        return fail(err, 501, bad_status, "Path too long");
    *local_end = '\0';
    *c->p++ = '\0';
    cmd->local = local;
    cmd->domain = dom;
    return 0;
}

/* Mail-parameters / Rcpt-parameters: esmtp-param *(SP esmtp-param),
 * esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-"), esmtp-value =
 * 1*(%d33-60 / %d62-126) (and UTF-8 under RFC 6531).  Each parameter is
 * cut out with a NUL where its SP (or the line's end) was. */
static int params(struct cur *c, lmtp_cmd *cmd, lmtp_error *err)
{
    if (c->p < c->end && *c->p != ' ')
        return fail(err, 501, "5.5.4", "Syntax: SP expected after the address");
    for (;;) {
        while (c->p < c->end && *c->p == ' ')
            *c->p++ = '\0';
        if (c->p >= c->end)
            return 0;   /* trailing blanks are tolerated */
        char *key = c->p;
        if (!is_alpha((unsigned char)*key) && !is_digit((unsigned char)*key))
            return fail(err, 501, "5.5.4", "Syntax error in a parameter name");
        while (c->p < c->end &&
               (is_alpha((unsigned char)*c->p) || is_digit((unsigned char)*c->p) || *c->p == '-')) {
            if (*c->p >= 'a' && *c->p <= 'z')
                *c->p = (char)(*c->p - 'a' + 'A');
            c->p++;
        }
        char *value = NULL;
        if (c->p < c->end && *c->p == '=') {
            *c->p++ = '\0';
            value = c->p;
            while (c->p < c->end && *c->p != ' ') {
                unsigned char ch = (unsigned char)*c->p;
                size_t u = utf8_at(c->p, c->end);
                if (u)
                    c->p += u;
                else if (ch >= 33 && ch <= 126 && ch != '=')
                    c->p++;
                else
                    return fail(err, 501, "5.5.4", "Syntax error in a parameter value");
            }
            if (c->p == value)
                return fail(err, 501, "5.5.4", "Empty parameter value");
        } else if (c->p < c->end && *c->p != ' ') {
            return fail(err, 501, "5.5.4", "Syntax error in a parameter name");
        }
        if (cmd->nparams == LMTP_PARAMS_MAX)
            return fail(err, 501, "5.5.4", "Too many parameters");
        cmd->params[cmd->nparams++] = (lmtp_param){ key, value };
    }
}

static const struct {
    const char *name;
    lmtp_verb verb;
} verbs[] = {
    { "LHLO", LMTP_LHLO }, { "MAIL", LMTP_MAIL }, { "RCPT", LMTP_RCPT },
    { "DATA", LMTP_DATA }, { "BDAT", LMTP_BDAT }, { "RSET", LMTP_RSET },
    { "NOOP", LMTP_NOOP }, { "QUIT", LMTP_QUIT }, { "VRFY", LMTP_VRFY },
    { "HELO", LMTP_HELO }, { "EHLO", LMTP_HELO }, { "STARTTLS", LMTP_STARTTLS },
};

int lmtp_parse_command(char *line, size_t len, lmtp_cmd *cmd, lmtp_error *err)
{
    memset(cmd, 0, sizeof *cmd);
    cmd->verb = LMTP_UNKNOWN;
    if (len > LMTP_LINE_MAX)
        return fail(err, 500, "5.5.2", "Line too long");
    if (memchr(line, '\0', len))
        return fail(err, 500, "5.5.2", "NUL in a command line");
    line[len] = '\0';
    struct cur c = { line, line + len, false };
    char *sp = memchr(line, ' ', len);
    size_t vlen = sp ? (size_t)(sp - line) : len;
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (strlen(verbs[i].name) == vlen && !strncasecmp(line, verbs[i].name, vlen))
            cmd->verb = verbs[i].verb;
    if (cmd->verb == LMTP_UNKNOWN)
        return fail(err, 500, "5.5.1", "Command unrecognized");
    c.p = line + vlen;
    switch (cmd->verb) {
    case LMTP_LHLO:
    case LMTP_HELO:
    case LMTP_VRFY:
        if (c.p >= c.end || c.p + 1 >= c.end)
            return fail(err, 501, "5.5.4", "Syntax: an argument is required");
        cmd->arg = c.p + 1;
        for (char *q = c.p + 1; q < c.end; q++)
            if ((unsigned char)*q < 32 || *q == 127)
                return fail(err, 501, "5.5.4", "Control character in the argument");
        return 0;
    case LMTP_NOOP:
        /* "NOOP" [ SP String ]: the string is ignored. */
        return 0;
    case LMTP_DATA:
    case LMTP_RSET:
    case LMTP_QUIT:
    case LMTP_STARTTLS:
        /* RFC 5321 4.3.2: "commands ... specified ... as not accepting
         * arguments (DATA, RSET, QUIT) SHOULD return a 501 message if
         * arguments are supplied". */
        if (c.p < c.end)
            return fail(err, 501, "5.5.4", "Syntax: no arguments allowed");
        return 0;
    case LMTP_BDAT: {
        /* RFC 3030: "BDAT" SP chunk-size [ SP end-marker ] */
        if (c.p >= c.end || !is_digit((unsigned char)c.p[1]))
            return fail(err, 501, "5.5.4", "Syntax: BDAT size [LAST]");
        c.p++;
        uint64_t v = 0;
        int digits = 0;
        while (c.p < c.end && is_digit((unsigned char)*c.p)) {
            if (++digits > 18)
                return fail(err, 501, "5.5.4", "BDAT size too large");
            v = v * 10 + (uint64_t)(*c.p++ - '0');
        }
        cmd->bdat_size = v;
        if (c.p == c.end)
            return 0;
        if (c.end - c.p == 5 && !strncasecmp(c.p, " LAST", 5)) {
            cmd->bdat_last = true;
            return 0;
        }
        return fail(err, 501, "5.5.4", "Syntax: BDAT size [LAST]");
    }
    case LMTP_MAIL:
    case LMTP_RCPT: {
        bool mail = cmd->verb == LMTP_MAIL;
        const char *kw = mail ? " FROM:" : " TO:";
        size_t kl = strlen(kw);
        if ((size_t)(c.end - c.p) < kl || strncasecmp(c.p, kw, kl))
            return fail(err, 501, "5.5.4", mail ? "Syntax: MAIL FROM:<address>"
                                                : "Syntax: RCPT TO:<address>");
        c.p += kl;
        /* RFC 5321 3.3: "spaces are not permitted on either side of the
         * colon"; some clients send one after it anyway, and reading it
         * costs nothing and changes no meaning. */
        if (c.p < c.end && *c.p == ' ')
            c.p++;
        int rc = path(&c, cmd, mail, err);
        if (rc < 0)
            return rc;
        cmd->utf8 = c.utf8;
        return params(&c, cmd, err);
    }
    default:
        break;
    }
    return fail(err, 500, "5.5.1", "Command unrecognized");
}

const char *lmtp_param_get(const lmtp_cmd *cmd, const char *key, bool *present)
{
    for (size_t i = 0; i < cmd->nparams; i++)
        if (!strcmp(cmd->params[i].key, key)) {
            if (present)
                *present = true;
            return cmd->params[i].value;
        }
    if (present)
        *present = false;
    return NULL;
}
