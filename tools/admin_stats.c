/* tools/admin_stats.c — `stats USER`: a table of every mailbox.
 *
 * Sizes are exact byte counts rather than "1.2 MB" so the table can be
 * summed and compared by scripts; LIVE is what the log would keep after
 * compaction (log bytes - dead bytes). */
#include <errno.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "tools/admin.h"

/* Terminal columns of a UTF-8 name: wide (CJK) characters take two,
 * combining marks none, so the MAILBOX column lines up whatever the names
 * (printf pads by bytes).  Measured in C.UTF-8 whatever the user's locale:
 * names are UTF-8 by the store's contract.  Bytes that are not UTF-8, and
 * characters wcwidth does not know, count one column each. */
static size_t display_width(const char *s)
{
    static locale_t utf8;
    if (!utf8)
        utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    size_t w = 0, n = strlen(s);
    if (!utf8) {
        /* No C.UTF-8 here: one column per character is close. */
        for (size_t i = 0; i < n; i++)
            w += ((unsigned char)s[i] & 0xc0) != 0x80;
        return w;
    }
    locale_t old = uselocale(utf8);
    mbstate_t st;
    memset(&st, 0, sizeof st);
    while (n) {
        wchar_t wc;
        size_t k = mbrtowc(&wc, s, n, &st);
        if (k == (size_t)-1 || k == (size_t)-2 || k == 0) {
            memset(&st, 0, sizeof st);
            k = 1;              /* not UTF-8: a byte */
            w++;
        } else {
            int cw = wcwidth(wc);
            w += cw < 0 ? 1 : (size_t)cw;
        }
        s += k;
        n -= k;
    }
    uselocale(old);
    return w;
}

/* name, then spaces up to `width` columns. */
static void print_padded(const char *name, size_t width)
{
    size_t w = display_width(name);
    printf("%s%*s", name, (int)(w < width ? width - w : 0), "");
}

int admin_cmd_stats(admin_ctx *ctx, int argc, char **argv)
{
    char *pos[1];
    size_t npos;
    if (admin_args(argc, argv, NULL, 0, pos, 1, 1, &npos, "stats USER") < 0)
        return ADMIN_USAGE;

    int ret = ADMIN_FAIL;
    store_user *u = NULL;
    store_mailbox_info *v = NULL;
    store_status *st = NULL;
    size_t n = 0;
    if (admin_user_open(ctx, pos[0], false, &u) < 0)
        goto out;
    int r = store_mailbox_list(u, &v, &n);
    if (r < 0) {
        admin_err("user '%s': cannot list mailboxes: %s", pos[0], strerror(-r));
        goto out;
    }
    st = calloc(n ? n : 1, sizeof *st);
    if (!st) {
        admin_err("out of memory");
        goto out;
    }
    size_t width = strlen("MAILBOX");
    for (size_t i = 0; i < n; i++) {
        r = store_mailbox_status(u, v[i].name, &st[i]);
        if (r < 0) {
            admin_mailbox_error(v[i].name, r);
            goto out;
        }
        size_t l = display_width(v[i].name);
        if (l > width)
            width = l;
    }
    store_status tot = { 0 };
    print_padded("MAILBOX", width);
    printf(" %10s %14s %14s %14s %14s\n", "MESSAGES", "SIZE", "LIVE_BYTES", "DEAD_BYTES",
           "HIGHESTMODSEQ");
    for (size_t i = 0; i < n; i++) {
        uint64_t live = st[i].log_bytes - st[i].dead_bytes;
        print_padded(v[i].name, width);
        printf(" %10u %14llu %14llu %14llu %14llu\n",
               st[i].messages, (unsigned long long)st[i].size,
               (unsigned long long)live, (unsigned long long)st[i].dead_bytes,
               (unsigned long long)st[i].highestmodseq);
        tot.messages += st[i].messages;
        tot.size += st[i].size;
        tot.log_bytes += st[i].log_bytes;
        tot.dead_bytes += st[i].dead_bytes;
    }
    print_padded("(total)", width);
    printf(" %10u %14llu %14llu %14llu %14s\n", tot.messages,
           (unsigned long long)tot.size,
           (unsigned long long)(tot.log_bytes - tot.dead_bytes),
           (unsigned long long)tot.dead_bytes, "-");
    ret = ADMIN_OK;
out:
    free(st);
    if (v)
        store_mailbox_info_free(v, n);
    if (u)
        store_user_close(u);
    return ret;
}
