/* store/msgid.c — RFC 5322 CFWS and msg-id parsing, shared by THREAD
 * (core/search/sort.c, thread.c) and THREADID (store/objid.c), which must
 * agree on what one Message ID is. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "store/assert.h"
#include "store/msgid.h"

/* Skip whitespace and RFC 5322 comments (CFWS). */
size_t store_skip_cfws(const char *s, size_t n, size_t i)
{
    for (;;) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
            i++;
        if (i >= n || s[i] != '(')
            return i;
        int depth = 0;
        while (i < n) {
            if (s[i] == '\\' && i + 1 < n) {
                i += 2;
                continue;
            }
            if (s[i] == '(')
                depth++;
            else if (s[i] == ')' && --depth == 0) {
                i++;
                break;
            }
            i++;
        }
    }
}

/* Bytes inside a msg-id that need the careful path below. */
static const bool msgid_special[256] = {
    ['"'] = true, ['('] = true, ['\\'] = true, ['<'] = true, [' '] = true,
    ['\t'] = true, ['\r'] = true, ['\n'] = true,
};

int store_msgid_next(const char *p, size_t n, size_t *pos, store_buf *out)
{
    size_t i = *pos;
    while (i < n) {
        while (i < n && p[i] != '<') {
            if (p[i] == '(') {          /* a comment may hold a '<' */
                i = store_skip_cfws(p, n, i);
                continue;
            }
            i++;
        }
        if (i >= n)
            break;
        /* msg-id = "<" id-left "@" id-right ">", each side a dot-atom-text,
         * quoted string (obs-id-left) or domain literal: the same Message
         * ID however quoted, so quotes, escapes, CFWS are dropped */
        /* The common case, "<left@right>" with no quotes, escapes, CFWS
         * or stray '<': copied whole. */
        const char *gt = memchr(p + i + 1, '>', n - i - 1);
        if (gt) {
            size_t e = (size_t)(gt - p), k = i + 1, atpos = 0;
            while (k < e && !msgid_special[(uint8_t)p[k]]) {
                if (p[k] == '@' && !atpos)
                    atpos = k;
                k++;
            }
            if (k == e && atpos > i + 1 && atpos + 1 < e) {
                int rc = store_buf_append(out, p + i, e + 1 - i);
                if (rc < 0)
                    return rc;
                *pos = e + 1;
                return 1;
            }
        }
        size_t start = out->len, at = 0, j = i + 1;
        bool ok = false, quoted = false;
        /* the Message ID is at most what is left of the input and its
         * brackets: reserve once and write bytes straight in (this runs
         * for every reference of every message THREAD looks at) */
        int rc = store_buf_reserve(out, n - i + 2);
        if (rc < 0)
            return rc;
        uint8_t *d = out->data;
        size_t len = start;
        d[len++] = '<';
        while (j < n) {
            char c = p[j];
            if (quoted) {
                if (c == '"') {
                    quoted = false;
                } else {
                    if (c == '\\' && j + 1 < n)
                        c = p[++j];
                    d[len++] = (uint8_t)c;
                }
                j++;
                continue;
            }
            if (c == '>') {
                /* non-empty id-left and id-right */
                ok = at > 1 && len > start + at + 1;
                j++;
                break;
            }
            if (c == '<')
                break;              /* start over at this one */
            if (c == '"') {
                quoted = true;
                j++;
                continue;
            }
            if (c == '(') {
                j = store_skip_cfws(p, n, j);
                continue;
            }
            if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
                j++;
                continue;
            }
            if (c == '\\' && j + 1 < n)
                c = p[++j];
            if (c == '@' && !at)
                at = len - start;
            d[len++] = (uint8_t)c;
            j++;
        }
        if (ok) {
            d[len++] = '>';
            RM_ASSERT(len - start <= n - i + 2);
            out->len = len;
            *pos = j;
            return 1;
        }
        out->len = start;
        i = j;      /* past it, or at the '<' that cut it short */
    }
    *pos = n;
    return 0;
}
