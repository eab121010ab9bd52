/* core/search/basesubject.c — the base subject of RFC 5256 section 2.1 and the
 * string preparation SORT and THREAD compare with. */
#include "core/fetch/mime_decode.h"
#include "core/search/search_internal.h"
#include "core/search/sort.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The text being reduced: [b, e) of s (spaces already normalized). */
typedef struct subj {
    const char *s;
    size_t b, e;
} subj;

static bool starts_ci(const subj *x, size_t at, const char *lit)
{
    size_t n = strlen(lit);
    return x->e - at >= n && strncasecmp(x->s + at, lit, n) == 0;
}

/* subj-blob = "[" *BLOBCHAR "]" *WSP at `at`: its end, or 0. */
static size_t blob_end(const subj *x, size_t at)
{
    if (at >= x->e || x->s[at] != '[')
        return 0;
    size_t i = at + 1;
    /* BLOBCHAR = %x01-5a / %x5c / %x5e-ff: not '[', not ']', not NUL */
    while (i < x->e && x->s[i] != '[' && x->s[i] != ']' && x->s[i] != '\0')
        i++;
    if (i >= x->e || x->s[i] != ']')
        return 0;
    i++;
    while (i < x->e && x->s[i] == ' ')
        i++;
    return i;
}

/* subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":" at `at`: its
 * end, or 0. */
static size_t refwd_end(const subj *x, size_t at)
{
    size_t i;
    if (starts_ci(x, at, "re"))
        i = at + 2;
    else if (starts_ci(x, at, "fwd"))
        i = at + 3;
    else if (starts_ci(x, at, "fw"))
        i = at + 2;
    else
        return 0;
    while (i < x->e && x->s[i] == ' ')
        i++;
    size_t be = blob_end(x, i);
    if (be)
        i = be;
    if (i < x->e && x->s[i] == ':')
        return i + 1;
    /* "fwd" failed; "fw" followed by "d..." cannot match either (the
     * next char would have to be WSP, '[' or ':') */
    return 0;
}

/* subj-leader = (*subj-blob subj-refwd) / WSP at `at`: its end, or 0. */
static size_t leader_end(const subj *x, size_t at)
{
    if (at < x->e && x->s[at] == ' ')
        return at + 1;
    size_t i = at, be;
    while ((be = blob_end(x, i)))
        i = be;
    return refwd_end(x, i);
}

int imap_base_subject(const char *p, size_t n, store_buf *out, bool *reply)
{
    store_buf dec = {0};
    bool rep = false;
    int rc = mime_decode_header(p, n, &dec);
    if (rc < 0)
        goto out;
    /* (1) "Convert all tabs and continuations to space.  Convert all
     * multiple spaces to a single space."  (The decoder already dropped
     * CR and LF; the stored value is unfolded.) */
    size_t w = 0;
    for (size_t i = 0; i < dec.len; i++) {
        char c = (char)dec.data[i];
        if (c == '\t' || c == '\r' || c == '\n')
            c = ' ';
        if (c == ' ' && w && dec.data[w - 1] == ' ')
            continue;
        dec.data[w++] = (uint8_t)c;
    }
    subj x = { (const char *)dec.data, 0, w };
    for (;;) {
        /* (2) subj-trailer = "(fwd)" / WSP, repeatedly */
        for (;;) {
            if (x.e > x.b && x.s[x.e - 1] == ' ') {
                x.e--;
            } else if (x.e - x.b >= 5 && strncasecmp(x.s + x.e - 5, "(fwd)", 5) == 0) {
                x.e -= 5;
                rep = true;
            } else {
                break;
            }
        }
        /* (3)-(5) */
        bool again = true;
        while (again) {
            again = false;
            size_t le;
            /* (3) every subj-leader */
            while (x.b < x.e && (le = leader_end(&x, x.b))) {
                if (x.s[x.b] != ' ')
                    rep = true;     /* a subj-refwd went */
                x.b = le;
                again = true;
            }
            /* (4) a subj-blob, if a non-empty subj-base remains (the
             * trailing WSP is gone since (2), so non-empty is enough) */
            size_t be = blob_end(&x, x.b);
            if (be && be < x.e) {
                x.b = be;
                again = true;
            }
        }
        /* (6) "[fwd:" ... "]": remove both, repeat from (2) */
        if (x.e - x.b >= 6 && starts_ci(&x, x.b, "[fwd:") && x.s[x.e - 1] == ']') {
            x.b += 5;
            x.e -= 1;
            rep = true;
            continue;
        }
        break;
    }
    rc = store_buf_append(out, x.s + x.b, x.e - x.b);
out:
    free(dec.data);
    if (reply)
        *reply = rep;
    return rc;
}

int imap_sort_casemap(const char *p, size_t n, store_buf *out)
{
    size_t start = out->len;
    int rc = srch_fold(p, n, out);
    if (rc < 0)
        return rc;
    /* RFC 5051 maps to titlecase: for ASCII, the upper case, which puts
     * "[\]^_`" after the letters' upper case (A-Z < '_'), not before
     * them as lower case would.  Other letters stay in srch_fold's one
     * case: equal where RFC 5051 finds them equal, ordered by code point
     * of that case. */
    for (size_t i = start; i < out->len; i++)
        if (out->data[i] >= 'a' && out->data[i] <= 'z')
            out->data[i] -= 32;
    return 0;
}
