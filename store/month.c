/* store/month.c — the English month abbreviations of RFC 5322 and IMAP
 * dates, one table for every layer (INTERNALDATE, APPEND's date-time,
 * SEARCH dates, mbox "From " lines). */
#include <stddef.h>

#include "store/store.h"

static const char months[12][4] = {
    "Jan", "Feb", "Mar", "Apr", "May", "Jun",
    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

const char *store_month_abbr(int m)
{
    return m >= 0 && m < 12 ? months[m] : NULL;
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c | 0x20) : c;
}

int store_month_parse(const char *s, size_t n)
{
    if (n < 3)
        return -1;
    for (int m = 0; m < 12; m++)
        if (lower(s[0]) == lower(months[m][0]) && lower(s[1]) == lower(months[m][1]) &&
            lower(s[2]) == lower(months[m][2]))
            return m;
    return -1;
}
