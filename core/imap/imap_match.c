/* core/imap/imap_match.c — LIST/LSUB pattern matching (RFC 9051 6.3.9): '*'
 * matches any run of characters, '%' any run without the hierarchy
 * separator.
 *
 * The matcher simulates the pattern as a nondeterministic automaton, one
 * pass over the name with the set of pattern positions reachable so far:
 * O(len(name) * len(pattern)) time whatever the pattern, where a
 * backtracking matcher is exponential in the number of wildcards (a
 * pattern like "*a*a*a*a*a*a*a*b" against a 300-byte name kept a worker
 * busy for more than 30 s).  Runs of wildcards are collapsed first ("**",
 * "%*" and "*%" are "*", "%%" is "%"), so a pattern that can match a name
 * at all is at most 2 * len(name) + 1 long. */
#include <stdlib.h>
#include <string.h>

#include "core/imap/imap_args.h"

static bool wild(char c)
{
    return c == '*' || c == '%';
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c | 0x20) : c;
}

bool imap_list_match(const char *pattern, const char *name, char sep)
{
    size_t nlen = strlen(name), plen = strlen(pattern), lits = 0;
    /* The name's first `ci` bytes (an "INBOX" level) compare
     * case-insensitively: INBOX is case-insensitive, RFC 9051 5.1. */
    size_t ci = !strncmp(name, "INBOX", 5) && (name[5] == '\0' || name[5] == sep) ? 5 : 0;

    char sbuf[512];
    char *p = plen + 1 <= sizeof sbuf ? sbuf : malloc(plen + 1);
    if (!p)
        return false;
    size_t m = 0;
    for (size_t i = 0; i < plen; i++) {
        char c = pattern[i];
        if (wild(c) && m && wild(p[m - 1])) {
            if (c == '*')
                p[m - 1] = '*';     /* "%*" is "*" */
            continue;
        }
        if (!wild(c))
            lits++;
        p[m++] = c;
    }
    p[m] = '\0';

    bool match = false;
    /* Every literal of the pattern consumes one byte of the name. */
    if (lits > nlen)
        goto out;

    /* cur[j]: the first j pattern bytes can match the name bytes read so
     * far.  Closure: a wildcard also matches nothing. */
    unsigned char abuf[2 * 520];
    unsigned char *base = 2 * (m + 1) <= sizeof abuf ? abuf : malloc(2 * (m + 1));
    if (!base)
        goto out;
    unsigned char *cur = base, *nxt = base + m + 1;
    memset(cur, 0, m + 1);
    cur[0] = 1;
    for (size_t j = 0; j < m && wild(p[j]) && cur[j]; j++)
        cur[j + 1] = 1;
    for (size_t k = 0; k < nlen; k++) {
        char c = name[k];
        bool fold = k < ci, any = false;
        memset(nxt, 0, m + 1);
        for (size_t j = 0; j < m; j++) {
            if (!cur[j])
                continue;
            if (p[j] == '*' || (p[j] == '%' && c != sep))
                nxt[j] = 1;             /* the wildcard takes this byte */
            else if (!wild(p[j]) && (fold ? lower(p[j]) == lower(c) : p[j] == c))
                nxt[j + 1] = 1;
        }
        for (size_t j = 0; j < m; j++)
            if (nxt[j] && wild(p[j]))
                nxt[j + 1] = 1;
        for (size_t j = 0; j <= m && !any; j++)
            any = nxt[j];
        unsigned char *t = cur;
        cur = nxt;
        nxt = t;
        if (!any)
            break;
    }
    match = cur[m];
    if (base != abuf)
        free(base);
out:
    if (p != sbuf)
        free(p);
    return match;
}
