/* tools/admin_dovecot.c — Dovecot's Maildir side files and names (see
 * admin_dovecot.h). */
#include "tools/admin_dovecot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/imap/imap_args.h"
#include "store/store.h"
#include "store/utf8.h"

/* A decimal number of at most 20 digits at s[*i], not above max. */
static int number(const char *s, size_t len, size_t *i, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    size_t start = *i;
    while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
        unsigned d = (unsigned)(s[*i] - '0');
        if (v > (max - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
        (*i)++;
    }
    if (*i == start)
        return -EINVAL;
    *out = v;
    return 0;
}

static bool at_end_or_space(const char *s, size_t len, size_t i)
{
    return i == len || s[i] == ' ';
}

int admin_uidlist_header(const char *line, size_t len, admin_uidlist_hdr *h)
{
    size_t i = 0;
    uint64_t v, uv = 0, next = 0;
    if (number(line, len, &i, 1000, &v) < 0 || !at_end_or_space(line, len, i))
        return -EINVAL;
    if (v == 1) {
        /* "1 <uidvalidity> <nextuid>" */
        if (i == len)
            return -EINVAL;
        i++;
        if (number(line, len, &i, UINT32_MAX, &uv) < 0 || i == len || line[i] != ' ')
            return -EINVAL;
        i++;
        if (number(line, len, &i, UINT32_MAX, &next) < 0 || i != len)
            return -EINVAL;
    } else if (v == 3) {
        /* "3 V<uidvalidity> N<nextuid> G<guid> ...": letter-keyed fields
         * in any order; unknown letters are extensions we do not need. */
        bool have_v = false, have_n = false;
        while (i < len) {
            while (i < len && line[i] == ' ')
                i++;
            if (i == len)
                break;
            char key = line[i++];
            if (key == 'V' || key == 'N') {
                if (number(line, len, &i, UINT32_MAX, key == 'V' ? &uv : &next) < 0 ||
                    !at_end_or_space(line, len, i))
                    return -EINVAL;
                if (key == 'V')
                    have_v = true;
                else
                    have_n = true;
            } else {
                while (i < len && line[i] != ' ')
                    i++;
            }
        }
        if (!have_v || !have_n)
            return -EINVAL;
    } else {
        return -ENOTSUP;
    }
    if (uv == 0 || next == 0)
        return -EINVAL;
    h->version = (unsigned)v;
    h->uidvalidity = (uint32_t)uv;
    h->nextuid = (uint32_t)next;
    return 0;
}

/* The length of a file name's base: up to the info separator. */
static size_t base_len(const char *name, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (name[i] == ':')
            return i;
        if ((name[i] == '!' || name[i] == ';') && i + 2 < len &&
            name[i + 1] == '2' && name[i + 2] == ',')
            return i;
    }
    return len;
}

int admin_uidlist_record(unsigned version, const char *line, size_t len,
                         admin_uidlist_rec *r)
{
    size_t i = 0;
    uint64_t uid;
    memset(r, 0, sizeof *r);
    /* Dovecot's own reader refuses UID 0 and (uint32_t)-1 alike. */
    if (number(line, len, &i, UINT32_MAX - 1, &uid) < 0 || uid == 0 ||
        i == len || line[i] != ' ')
        return -EINVAL;
    r->uid = (uint32_t)uid;
    while (i < len && line[i] == ' ')
        i++;
    if (version == 3) {
        /* Extension fields up to the one starting with ':'. */
        while (i < len && line[i] != ':') {
            char key = line[i++];
            if (key == 'S' || key == 'W') {
                uint64_t v;
                if (number(line, len, &i, UINT64_MAX, &v) < 0 ||
                    !at_end_or_space(line, len, i))
                    return -EINVAL;
                if (key == 'S') {
                    r->size = v;
                    r->has_size = true;
                } else {
                    r->vsize = v;
                    r->has_vsize = true;
                }
            } else {
                while (i < len && line[i] != ' ')
                    i++;
            }
            while (i < len && line[i] == ' ')
                i++;
        }
        if (i == len)
            return -EINVAL;
        i++;                    /* the ':' */
    }
    /* Version 1 (also Courier's courierimapuiddb): "<uid> <filename>". */
    const char *name = line + i;
    size_t nlen = len - i;
    if (nlen == 0 || memchr(name, '/', nlen) || memchr(name, '\0', nlen))
        return -EINVAL;
    r->name = name;
    r->name_len = base_len(name, nlen);
    if (r->name_len == 0)
        return -EINVAL;
    return 0;
}

int admin_dovecot_keyword(const char *line, size_t len, unsigned *index,
                          const char **name, size_t *name_len)
{
    size_t i = 0;
    uint64_t v;
    if (number(line, len, &i, 1000000, &v) < 0 || i == len || line[i] != ' ')
        return -EINVAL;
    i++;
    if (i == len || memchr(line + i, '\0', len - i))
        return -EINVAL;
    *index = (unsigned)v;
    *name = line + i;
    *name_len = len - i;
    return 0;
}

/* ",X=<digits>" among the comma-separated fields of the base name. */
static bool size_field(const char *base, size_t len, char key, uint64_t *out)
{
    for (size_t i = 0; i + 3 <= len; i++) {
        if (base[i] != ',' || base[i + 1] != key || base[i + 2] != '=')
            continue;
        size_t j = i + 3;
        uint64_t v;
        if (number(base, len, &j, UINT64_MAX, &v) == 0 && (j == len || base[j] == ',')) {
            *out = v;
            return true;
        }
    }
    return false;
}

void admin_maildir_name_parse(const char *name, admin_maildir_name *out)
{
    memset(out, 0, sizeof *out);
    size_t len = strlen(name);
    out->base_len = base_len(name, len);
    out->has_size = size_field(name, out->base_len, 'S', &out->size);
    out->has_vsize = size_field(name, out->base_len, 'W', &out->vsize);
    const char *info = name + out->base_len;
    if (*info == '\0' || info[1] != '2' || info[2] != ',')
        return;                 /* no info, or an experimental ":1," one */
    for (const char *p = info + 3; *p; p++) {
        switch (*p) {
        case 'D': out->flags |= STORE_F_DRAFT; break;
        case 'F': out->flags |= STORE_F_FLAGGED; break;
        case 'P': out->passed = true; break;
        case 'R': out->flags |= STORE_F_ANSWERED; break;
        case 'S': out->flags |= STORE_F_SEEN; break;
        case 'T': out->flags |= STORE_F_DELETED; break;
        default:
            if (*p >= 'a' && *p <= 'z')
                out->keywords |= 1u << (*p - 'a');
            break;
        }
    }
}

static uint64_t lead_number(const char **s)
{
    uint64_t v = 0;
    while (**s >= '0' && **s <= '9') {
        if (v < UINT64_MAX / 10)
            v = v * 10 + (uint64_t)(**s - '0');
        (*s)++;
    }
    return v;
}

/* The microseconds of a ".M<usec>" part just after the time, or -1. */
static int64_t usecs(const char *s)
{
    if (s[0] != '.' || s[1] != 'M' || s[2] < '0' || s[2] > '9')
        return -1;
    s += 2;
    return (int64_t)lead_number(&s);
}

int admin_maildir_name_cmp(const char *a, const char *b)
{
    /* Numerically: strcmp would put 999999999 after 1000000000. */
    const char *x = a, *y = b;
    uint64_t ta = lead_number(&x), tb = lead_number(&y);
    if (ta != tb)
        return ta < tb ? -1 : 1;
    int64_t ua = usecs(x), ub = usecs(y);
    if (ua >= 0 && ub >= 0 && ua != ub)
        return ua < ub ? -1 : 1;
    int c = strcmp(a, b);
    return c < 0 ? -1 : c > 0;
}

/* One level: modified UTF-7, else plain UTF-8 (8-bit bytes, no '&'). */
static int level_utf8(const char *s, size_t len, char sep, char **out)
{
    if (len == 0 || memchr(s, '\0', len))
        return -EINVAL;
    char *u = imap_mutf7_to_utf8(s, len);
    if (!u) {
        if (errno == ENOMEM)
            return -ENOMEM;
        if (memchr(s, '&', len) || !store_utf8_valid(s, len))
            return -EINVAL;
        u = strndup(s, len);
        if (!u)
            return -ENOMEM;
    }
    for (const char *p = u; *p; p++) {
        if (*p == sep || (unsigned char)*p < 0x20 || *p == 0x7f) {
            free(u);
            return -EINVAL;
        }
    }
    *out = u;
    return 0;
}

/* Levels of s[0, len) split at split, each decoded, joined with sep. */
static int join_levels(const char *s, size_t len, char split, char sep, char **out)
{
    size_t cap = len * 4 + 1, n = 0;
    char *res = malloc(cap);
    if (!res)
        return -ENOMEM;
    size_t i = 0;
    for (;;) {
        const char *end = memchr(s + i, split, len - i);
        size_t l = end ? (size_t)(end - (s + i)) : len - i;
        char *lev = NULL;
        int r = level_utf8(s + i, l, sep, &lev);
        if (r < 0) {
            free(res);
            return r;
        }
        size_t ll = strlen(lev);
        if (n + ll + 2 > cap) {
            cap = (n + ll + 2) * 2;
            char *nr = realloc(res, cap);
            if (!nr) {
                free(lev);
                free(res);
                return -ENOMEM;
            }
            res = nr;
        }
        if (n)
            res[n++] = sep;
        memcpy(res + n, lev, ll);
        n += ll;
        free(lev);
        if (!end)
            break;
        i += l + 1;
    }
    res[n] = '\0';
    *out = res;
    return 0;
}

int admin_maildirpp_name(const char *dir, char sep, char **out)
{
    return join_levels(dir, strlen(dir), '.', sep, out);
}

int admin_dovecot_fs_name(const char *rel, char sep, char **out)
{
    return join_levels(rel, strlen(rel), '/', sep, out);
}

int admin_dovecot_subscription(unsigned version, const char *line, size_t len,
                               char sep, char **out)
{
    if (len == 0)
        return 0;
    int r = join_levels(line, len, version >= 2 ? '\t' : '.', sep, out);
    return r < 0 ? r : 1;
}
