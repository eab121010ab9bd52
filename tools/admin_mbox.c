/* tools/admin_mbox.c — reading and writing mboxrd (see admin_mbox.h). */
#include "tools/admin_mbox.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "store/crlf.h"
#include "store/store.h"

static const char *const wdays[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };

int admin_buf_reserve(admin_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2)
            return -ENOMEM;
        cap *= 2;
    }
    char *d = realloc(b->data, cap);
    if (!d)
        return -ENOMEM;
    b->data = d;
    b->cap = cap;
    return 0;
}

static inline bool starts_with(const char *p, size_t len, const char *lit)
{
    size_t l = strlen(lit);
    return len >= l && memcmp(p, lit, l) == 0;
}

/* ---- From_ dates -------------------------------------------------------- */

#define MAX_TOKENS 16

static int name_index(const char *const *names, size_t n, const char *t, size_t tl)
{
    if (tl != 3)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (strncasecmp(names[i], t, 3) == 0)
            return (int)i;
    return -1;
}

/* A decimal number of 1..maxdigits digits filling the whole token. */
static int token_num(const char *t, size_t tl, size_t maxdigits, int *out)
{
    if (tl == 0 || tl > maxdigits)
        return -1;
    int v = 0;
    for (size_t i = 0; i < tl; i++) {
        if (!isdigit((unsigned char)t[i]))
            return -1;
        v = v * 10 + (t[i] - '0');
    }
    *out = v;
    return 0;
}

/* "+hhmm" / "-hhmm" -> seconds east of UTC. */
static int token_zone(const char *t, size_t tl, long *off)
{
    int v;
    if (tl != 5 || (t[0] != '+' && t[0] != '-') || token_num(t + 1, 4, 4, &v) < 0)
        return -1;
    long s = (long)(v / 100) * 3600 + (long)(v % 100) * 60;
    *off = t[0] == '-' ? -s : s;
    return 0;
}

static bool token_alpha(const char *t, size_t tl)
{
    if (tl == 0 || tl > 5)
        return false;
    for (size_t i = 0; i < tl; i++)
        if (!isalpha((unsigned char)t[i]))
            return false;
    return true;
}

/* hh:mm or hh:mm:ss */
static int token_time(const char *t, size_t tl, int *h, int *m, int *s)
{
    *s = 0;
    if (tl == 5 || tl == 8) {
        if (t[2] != ':' || (tl == 8 && t[5] != ':'))
            return -1;
        if (token_num(t, 2, 2, h) < 0 || token_num(t + 3, 2, 2, m) < 0)
            return -1;
        if (tl == 8 && token_num(t + 6, 2, 2, s) < 0)
            return -1;
        return *h < 24 && *m < 60 && *s <= 60 ? 0 : -1;
    }
    return -1;
}

/* Try to read "Www Mmm dd hh:mm[:ss] [zone] yyyy [zone]" at tokens i... */
static int date_at(const char *const *tok, const size_t *tl, size_t ntok,
                   size_t i, int64_t *date)
{
    int mon, day, h, m, s, year = -1;
    long off = 0;
    if (i + 5 > ntok)   /* weekday, month, day, time, year */
        return -1;
    if (name_index(wdays, 7, tok[i], tl[i]) < 0)
        return -1;
    if (tl[i + 1] != 3 || (mon = store_month_parse(tok[i + 1], 3)) < 0)
        return -1;
    if (token_num(tok[i + 2], tl[i + 2], 2, &day) < 0 || day < 1 || day > 31)
        return -1;
    if (token_time(tok[i + 3], tl[i + 3], &h, &m, &s) < 0)
        return -1;
    size_t j = i + 4;
    if (j < ntok && token_zone(tok[j], tl[j], &off) == 0)
        j++;
    else if (j < ntok && token_alpha(tok[j], tl[j]))
        j++;
    if (j >= ntok || token_num(tok[j], tl[j], 4, &year) < 0)
        return -1;
    j++;
    if (j < ntok)
        token_zone(tok[j], tl[j], &off);
    if (year < 100)
        year += year < 70 ? 2000 : 1900;
    struct tm tm = { .tm_year = year - 1900, .tm_mon = mon, .tm_mday = day,
                     .tm_hour = h, .tm_min = m, .tm_sec = s };
    *date = (int64_t)timegm(&tm) - off;
    return 0;
}

int admin_mbox_from_date(const char *line, size_t len, int64_t *date)
{
    const char *tok[MAX_TOKENS];
    size_t tl[MAX_TOKENS], n = 0;
    if (!starts_with(line, len, "From "))
        return -EINVAL;
    for (size_t i = 0; i < len && n < MAX_TOKENS;) {
        while (i < len && isspace((unsigned char)line[i]))
            i++;
        if (i == len)
            break;
        size_t st = i;
        while (i < len && !isspace((unsigned char)line[i]))
            i++;
        tok[n] = line + st;
        tl[n++] = i - st;
    }
    /* Token 0 is "From"; the sender usually is token 1 but may be missing
     * or hold blanks, so look for the weekday anywhere after it. */
    for (size_t i = 1; i + 5 <= n; i++)
        if (date_at(tok, tl, n, i, date) == 0)
            return 0;
    return -EINVAL;
}

int admin_mbox_from_line(int64_t date, char *buf, size_t len)
{
    time_t t = (time_t)date;
    struct tm tm;
    if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999)
        return -EINVAL;
    /* Formatted by hand: strftime's names follow the locale. */
    int n = snprintf(buf, len, "From MAILER-DAEMON %s %s %2d %02d:%02d:%02d %d\n",
                     wdays[tm.tm_wday], store_month_abbr(tm.tm_mon), tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, tm.tm_year + 1900);
    if (n < 0 || (size_t)n >= len)
        return -EINVAL;
    return n;
}

/* ---- splitting ------------------------------------------------------------ */

int admin_mbox_reader_init(admin_mbox_reader *r, const char *p, size_t len)
{
    r->p = p;
    r->len = len;
    r->pos = 0;
    r->line = 1;
    if (len && !starts_with(p, len, "From "))
        return -EINVAL;
    return 0;
}

static bool is_from_line(const char *p, size_t avail)
{
    if (!starts_with(p, avail, "From "))
        return false;
    const char *nl = memchr(p, '\n', avail);
    size_t l = nl ? (size_t)(nl - p) : avail;
    int64_t d;
    return admin_mbox_from_date(p, l, &d) == 0;
}

int admin_mbox_next(admin_mbox_reader *r, const char **msg, size_t *len,
                    int64_t *date, unsigned long *line)
{
    const char *p = r->p;
    size_t n = r->len;
    if (r->pos >= n)
        return 0;
    size_t start = r->pos;
    const char *nl = memchr(p + start, '\n', n - start);
    size_t eol = nl ? (size_t)(nl - p) : n;
    if (admin_mbox_from_date(p + start, eol - start, date) < 0)
        *date = 0;
    *line = r->line;
    unsigned long lineno = r->line + 1;

    size_t body = nl ? eol + 1 : n, cur = body;
    while (cur < n) {
        if (p[cur] == 'F' && is_from_line(p + cur, n - cur))
            break;
        nl = memchr(p + cur, '\n', n - cur);
        cur = nl ? (size_t)(nl - p) + 1 : n;
        lineno++;
    }
    /* Drop the separator's blank line (LF or CRLF). */
    size_t end = cur;
    if (end > body && p[end - 1] == '\n') {
        size_t e = end - 1;
        if (e > body && p[e - 1] == '\r')
            e--;
        if (e == body || p[e - 1] == '\n')
            end = e;
    }
    *msg = p + body;
    *len = end - body;
    r->pos = cur;
    r->line = lineno;
    return 1;
}

/* ---- conversion ------------------------------------------------------------ */

/* Does the line at p (avail bytes to the end of the input) match ^>+From ? */
static bool quoted_from(const char *p, size_t avail)
{
    size_t i = 0;
    while (i < avail && p[i] == '>')
        i++;
    return i > 0 && starts_with(p + i, avail - i, "From ");
}

int admin_mbox_to_crlf(const char *msg, size_t len, bool unquote, admin_buf *out)
{
    /* Line by line, so a quoted From_ line can lose its '>'; the line end
     * itself is the store's conversion, the same as IMAP APPEND's. */
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(msg + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - msg) + 1 : len;     /* past the LF */
        size_t s = i;
        if (unquote && msg[s] == '>' && quoted_from(msg + s, len - s))
            s++;
        int r = admin_buf_reserve(out, e - s + 1);
        if (r < 0)
            return r;
        out->len += store_crlf_copy(out->data + out->len, msg + s, e - s);
        i = e;
    }
    return 0;
}

int admin_mbox_quote(const char *msg, size_t len, admin_buf *out)
{
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(msg + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - msg) : len;
        size_t ce = e;          /* content end, without the CR of a CRLF */
        if (nl && ce > i && msg[ce - 1] == '\r')
            ce--;
        int r = admin_buf_reserve(out, ce - i + 2);
        if (r < 0)
            return r;
        if ((msg[i] == '>' && quoted_from(msg + i, len - i)) ||
            starts_with(msg + i, len - i, "From "))
            out->data[out->len++] = '>';
        memcpy(out->data + out->len, msg + i, ce - i);
        out->len += ce - i;
        out->data[out->len++] = '\n';
        i = e + 1;
    }
    int r = admin_buf_reserve(out, 1);
    if (r < 0)
        return r;
    out->data[out->len++] = '\n';
    return 0;
}

/* ---- flags ------------------------------------------------------------------- */

/* Is the header line p[0..n) (line end excluded) a Status: or X-Status:
 * field?  *x says which. */
static bool status_field(const char *p, size_t n, bool *x)
{
    *x = n >= 9 && strncasecmp(p, "X-Status:", 9) == 0;
    return *x || (n >= 7 && strncasecmp(p, "Status:", 7) == 0);
}

uint32_t admin_mbox_flags(const char *msg, size_t len)
{
    uint32_t flags = 0;
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(msg + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - msg) : len;
        size_t ce = e > i && msg[e - 1] == '\r' ? e - 1 : e;
        if (ce == i)
            break;              /* the blank line: end of the header */
        bool x;
        if (status_field(msg + i, ce - i, &x)) {
            size_t skip = x ? 9 : 7;
            const char *v = msg + i + skip;
            for (size_t k = 0; k < ce - i - skip; k++) {
                switch (v[k]) {
                case 'R': flags |= x ? 0 : STORE_F_SEEN; break;
                case 'A': flags |= x ? STORE_F_ANSWERED : 0; break;
                case 'F': flags |= x ? STORE_F_FLAGGED : 0; break;
                case 'D': flags |= x ? STORE_F_DELETED : 0; break;
                case 'T': flags |= x ? STORE_F_DRAFT : 0; break;
                default: break;
                }
            }
        }
        i = e + 1;
    }
    return flags;
}

size_t admin_mbox_drop_status(char *msg, size_t len)
{
    size_t r = 0, w = 0;
    bool dropping = false;
    while (r < len) {
        const char *nl = memchr(msg + r, '\n', len - r);
        size_t e = nl ? (size_t)(nl - msg) + 1 : len;     /* past the line end */
        size_t ce = nl ? e - 1 : e;
        if (ce > r && msg[ce - 1] == '\r')
            ce--;
        if (ce == r)
            break;              /* the blank line: the body is never touched */
        bool x;
        /* A folded continuation line belongs to the field above it. */
        if (msg[r] != ' ' && msg[r] != '\t')
            dropping = status_field(msg + r, ce - r, &x);
        if (!dropping) {
            memmove(msg + w, msg + r, e - r);
            w += e - r;
        }
        r = e;
    }
    memmove(msg + w, msg + r, len - r);
    return w + (len - r);
}
