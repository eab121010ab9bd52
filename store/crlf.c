/* store/crlf.c — bare LF to CRLF (see crlf.h). */
#include "store/crlf.h"

#include <string.h>

size_t store_crlf_len(const void *p, size_t n)
{
    const char *s = p, *e = s + n, *lf;
    size_t out = n;
    for (const char *q = s; q < e && (lf = memchr(q, '\n', (size_t)(e - q))); q = lf + 1)
        if (lf == s || lf[-1] != '\r')
            out++;
    return out;
}

size_t store_crlf_copy(void *dst, const void *p, size_t n)
{
    const char *s = p, *e = s + n, *q = s;
    char *d = dst;
    while (q < e) {
        const char *lf = memchr(q, '\n', (size_t)(e - q));
        const char *stop = lf ? lf : e;
        memcpy(d, q, (size_t)(stop - q));
        d += stop - q;
        if (!lf)
            break;
        if (lf == s || lf[-1] != '\r')
            *d++ = '\r';
        *d++ = '\n';
        q = lf + 1;
    }
    return (size_t)(d - (char *)dst);
}
