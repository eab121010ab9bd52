/* core/search/basesubject.c — the base subject of RFC 5256 section 2.1 and the
 * string preparation SORT and THREAD compare with. */
#include "core/fetch/mime_decode.h"
#include "core/search/search_internal.h"
#include "core/search/sort.h"
#include "store/assert.h"
#include "store/utf8.h"

#include "core/search/casemap_table.h"

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
    rc = x.e > x.b ? store_buf_append(out, x.s + x.b, x.e - x.b) : 0;
out:
    free(dec.data);
    if (reply)
        *reply = rep;
    return rc;
}

/* RFC 5051 step 2 for one code point: titlecase, then decomposition. */
static int casemap_cp(uint32_t c, store_buf *out)
{
    uint8_t u[4 * 32];     /* the longest mapping is 18 code points */
    size_t n = 0;
    if (c >= 0xAC00 && c <= 0xD7A3) {
        /* Hangul syllables decompose arithmetically (Unicode 3.12) */
        uint32_t si = c - 0xAC00;
        n += store_utf8_encode(0x1100 + si / 588, u + n);
        n += store_utf8_encode(0x1161 + (si % 588) / 28, u + n);
        if (si % 28)
            n += store_utf8_encode(0x11A7 + si % 28, u + n);
        return store_buf_append(out, u, n);
    }
    size_t lo = 0, hi = sizeof casemap_rows / sizeof casemap_rows[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (casemap_rows[mid].cp < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < sizeof casemap_rows / sizeof casemap_rows[0] && casemap_rows[lo].cp == c) {
        RM_ASSERT(casemap_rows[lo].n <= 32);
        for (unsigned k = 0; k < casemap_rows[lo].n; k++)
            n += store_utf8_encode(casemap_pool[casemap_rows[lo].off + k], u + n);
    } else {
        n = store_utf8_encode(c, u);
    }
    return store_buf_append(out, u, n);
}

int imap_sort_casemap(const char *src, size_t n, store_buf *out)
{
    const unsigned char *p = (const unsigned char *)src;
    int rc = store_buf_reserve(out, n);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n;) {
        unsigned char b = p[i];
        if (b < 0x80) {
            /* titlecase of ASCII is its upper case: "[\]^_`" sort after
             * the letters (A-Z < '_'), not before them as lower case would */
            uint8_t c = (uint8_t)(b >= 'a' && b <= 'z' ? b - 32 : b);
            if ((rc = store_buf_append(out, &c, 1)) < 0)
                return rc;
            i++;
            continue;
        }
        uint32_t cp;
        size_t len = store_utf8_decode(p + i, n - i, &cp);
        if (!len) {
            /* not UTF-8 (an address's raw 8-bit local part): as it is */
            if ((rc = store_buf_append(out, &b, 1)) < 0)
                return rc;
            i++;
            continue;
        }
        if ((rc = casemap_cp(cp, out)) < 0)
            return rc;
        i += len;
    }
    return 0;
}
