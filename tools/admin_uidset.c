/* tools/admin_uidset.c — IMAP UID set syntax (RFC 3501 sequence-set):
 *   set = elem *("," elem); elem = num / num ":" num; num = nz-number / "*"
 * nz-number has no leading zero and fits 32 bits. */
#include <errno.h>
#include <stdlib.h>

#include "tools/admin.h"

static int parse_num(const char **sp, uint32_t *out)
{
    const char *s = *sp;
    if (*s == '*') {
        *out = UINT32_MAX;
        *sp = s + 1;
        return 0;
    }
    if (*s < '1' || *s > '9')
        return -EINVAL;
    uint64_t v = 0;
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > UINT32_MAX)
            return -EINVAL;
        s++;
    }
    *out = (uint32_t)v;
    *sp = s;
    return 0;
}

int admin_uidset_parse(const char *s, store_range **out, size_t *n)
{
    int ret = -EINVAL;
    size_t cap = 1, cnt = 0;
    for (const char *p = s; *p; p++)
        cap += *p == ',';
    store_range *v = malloc(cap * sizeof *v);
    if (!v)
        return -ENOMEM;
    const char *p = s;
    for (;;) {
        uint32_t lo, hi;
        if (parse_num(&p, &lo) < 0)
            goto out;
        hi = lo;
        if (*p == ':') {
            p++;
            if (parse_num(&p, &hi) < 0)
                goto out;
        }
        if (lo > hi) {
            uint32_t t = lo;
            lo = hi;
            hi = t;
        }
        v[cnt].lo = lo;
        v[cnt].hi = hi;
        cnt++;
        if (*p == '\0')
            break;
        if (*p != ',')
            goto out;
        p++;
    }
    *out = v;
    *n = cnt;
    v = NULL;
    ret = 0;
out:
    free(v);
    return ret;
}
