/* tests/fuzz/fuzz_maildir.c — Dovecot's Maildir side files and names
 * (tools/admin_dovecot.c): the input is split at '\n' and each line read
 * as a uidlist header, a uidlist record of both versions, a keywords line,
 * a message file name, a folder name (Maildir++ and LAYOUT=fs) and a
 * subscriptions line of both versions.  What comes back must point inside
 * the line, base names must be non-empty and free of '/', and decoded
 * names must be UTF-8 without the separator or controls. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "tools/admin_dovecot.c"

static void name_ok(const char *n, char sep)
{
    FUZZ_CHECK(n && *n);
    FUZZ_CHECK(store_utf8_valid(n, strlen(n)));
    for (const char *p = n; *p; p++)
        FUZZ_CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
    FUZZ_CHECK(n[0] != sep && n[strlen(n) - 1] != sep);
    (void)sep;
}

static void one_line(const char *l, size_t len)
{
    admin_uidlist_hdr h;
    if (admin_uidlist_header(l, len, &h) == 0)
        FUZZ_CHECK((h.version == 1 || h.version == 3) && h.uidvalidity && h.nextuid);
    for (unsigned v = 1; v <= 3; v += 2) {
        admin_uidlist_rec r;
        if (admin_uidlist_record(v, l, len, &r) == 0) {
            FUZZ_CHECK(r.uid != 0 && r.uid != UINT32_MAX);
            FUZZ_CHECK(r.name > l && r.name + r.name_len <= l + len && r.name_len > 0);
            FUZZ_CHECK(!memchr(r.name, '/', r.name_len));
        }
    }
    unsigned idx;
    const char *kw;
    size_t kwlen;
    if (admin_dovecot_keyword(l, len, &idx, &kw, &kwlen) == 0)
        FUZZ_CHECK(kw > l && kw + kwlen <= l + len && kwlen > 0);
    char *z = strndup(l, len);          /* the NUL-terminated forms */
    if (!z)
        return;
    admin_maildir_name m;
    admin_maildir_name_parse(z, &m);
    FUZZ_CHECK(m.base_len <= strlen(z) && (m.flags & ~STORE_F_ALL) == 0);
    FUZZ_CHECK(admin_maildir_name_cmp(z, z) == 0);
    char *n = NULL;
    for (int s = 0; s < 2; s++) {
        char sep = s ? '.' : '/';
        if (admin_maildirpp_name(z, sep, &n) == 0) {
            name_ok(n, sep);
            free(n);
        }
        if (admin_dovecot_fs_name(z, sep, &n) == 0) {
            name_ok(n, sep);
            free(n);
        }
        for (unsigned v = 1; v <= 2; v++) {
            n = NULL;
            if (admin_dovecot_subscription(v, l, len, sep, &n) == 1) {
                name_ok(n, sep);
                free(n);
            }
        }
    }
    free(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    while (p <= end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (!memchr(p, '\0', len))
            one_line(p, len);
        if (!nl)
            break;
        p = nl + 1;
    }
    return 0;
}
