/* core/search/search_date.c — calendar dates for SEARCH: IMAP's "d-Mon-yyyy" and
 * the date part of an RFC 5322 Date: field, as day numbers. */
#include "core/search/search_internal.h"

#include <errno.h>
#include <strings.h>

/* Howard Hinnant's days_from_civil: exact for the proleptic Gregorian
 * calendar, no time_t or locale involved. */
int64_t srch_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static unsigned days_in_month(int64_t y, unsigned m)
{
    static const unsigned dm[12] = { 31, 28, 31, 30, 31, 30,
                                     31, 31, 30, 31, 30, 31 };
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dm[m - 1];
}

static int month_of(const char *s, size_t n)
{
    int m = store_month_parse(s, n);
    return m < 0 ? -1 : m + 1;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alpha(char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }

int srch_parse_imap_date(const char *s, size_t n, int64_t *day)
{
    size_t i = 0;
    unsigned d = 0, y = 0;
    while (i < n && i < 2 && is_digit(s[i]))
        d = d * 10 + (unsigned)(s[i++] - '0');
    if (i == 0 || i >= n || s[i] != '-' || n - i != 1 + 3 + 1 + 4)
        return -EINVAL;
    int m = month_of(s + i + 1, 3);
    if (m < 0 || s[i + 4] != '-')
        return -EINVAL;
    for (size_t k = i + 5; k < n; k++) {
        if (!is_digit(s[k]))
            return -EINVAL;
        y = y * 10 + (unsigned)(s[k] - '0');
    }
    if (d < 1 || d > days_in_month(y, (unsigned)m))
        return -EINVAL;
    *day = srch_days_from_civil(y, (unsigned)m, d);
    return 0;
}

/* Lenient: "[Www,] d Mon yyyy ...", also with '-' between the parts (some
 * mailers), without the comma, with a full month name, or with the obsolete
 * 2- and 3-digit years of RFC 5322 4.3. */
int srch_parse_rfc5322_date(const char *s, size_t n, int64_t *day)
{
    size_t i = 0;
#define SKIP_WS() while (i < n && (s[i] == ' ' || s[i] == '\t' || \
                                   s[i] == '\r' || s[i] == '\n')) i++
    SKIP_WS();
    if (i < n && is_alpha(s[i])) {
        while (i < n && is_alpha(s[i]))
            i++;
        SKIP_WS();
        if (i < n && s[i] == ',')
            i++;
        SKIP_WS();
    }
    unsigned d = 0, nd = 0;
    while (i < n && is_digit(s[i]) && nd < 3)
        d = d * 10 + (unsigned)(s[i++] - '0'), nd++;
    if (!nd || nd > 2)
        return -EINVAL;
    SKIP_WS();
    if (i < n && s[i] == '-')
        i++;
    SKIP_WS();
    size_t ms = i;
    while (i < n && is_alpha(s[i]))
        i++;
    int m = month_of(s + ms, i - ms);
    if (m < 0)
        return -EINVAL;
    SKIP_WS();
    if (i < n && s[i] == '-')
        i++;
    SKIP_WS();
    unsigned y = 0, ny = 0;
    while (i < n && is_digit(s[i]) && ny < 5)
        y = y * 10 + (unsigned)(s[i++] - '0'), ny++;
    if (ny < 2 || ny > 4 || (i < n && is_digit(s[i])))
        return -EINVAL;
    if (ny == 2)
        y += y < 50 ? 2000 : 1900;
    else if (ny == 3)
        y += 1900;
    if (d < 1 || d > days_in_month(y, (unsigned)m))
        return -EINVAL;
    *day = srch_days_from_civil(y, (unsigned)m, d);
    return 0;
#undef SKIP_WS
}
