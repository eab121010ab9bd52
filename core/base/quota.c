/* core/base/quota.c — quota limits from Dovecot rules and the configuration. */
#include "core/base/quota.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int quota_size_parse(const char *s, uint64_t unit, uint64_t *out)
{
    if (!s || !isdigit((unsigned char)*s))
        return -EINVAL;
    uint64_t v = 0;
    for (; isdigit((unsigned char)*s); s++) {
        if (v > (UINT64_MAX - 9) / 10)
            return -EINVAL;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    uint64_t mul = unit;
    if (*s) {
        switch (toupper((unsigned char)*s)) {
        case 'B': mul = 1; break;
        case 'K': mul = 1024; break;
        case 'M': mul = 1024ull * 1024; break;
        case 'G': mul = 1024ull * 1024 * 1024; break;
        case 'T': mul = 1024ull * 1024 * 1024 * 1024; break;
        default: return -EINVAL;
        }
        if (s[1])
            return -EINVAL;
    }
    if (mul && v > UINT64_MAX / mul)
        return -EINVAL;
    *out = v * mul;
    return 0;
}

int quota_rule_parse(const char *rule, quota_limits *l)
{
    const char *colon = rule ? strchr(rule, ':') : NULL;
    if (!colon)
        return -EINVAL;
    size_t mlen = (size_t)(colon - rule);
    bool whole = (mlen == 1 && (rule[0] == '*' || rule[0] == '?'));
    const char *p = colon + 1;
    if (!strcmp(p, "ignore")) {
        if (whole)
            *l = (quota_limits){0};
        return 0;
    }
    if (!strncmp(p, "backend=", 8))
        return whole ? -EINVAL : 0;     /* a backend's own syntax: not ours */
    quota_limits nl = *l;
    for (bool more = true; more;) {
        /* every ':'-separated part is a limit: "*:" or a trailing ':' is
         * an empty limit name, which Dovecot refuses */
        const char *end = strchr(p, ':');
        more = end != NULL;
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char buf[64];
        if (len >= sizeof buf)
            return -EINVAL;
        memcpy(buf, p, len);
        buf[len] = '\0';
        char *eq = strchr(buf, '=');
        if (!eq)
            return -EINVAL;
        *eq++ = '\0';
        uint64_t *dst, unit;
        if (!strcmp(buf, "storage")) {
            dst = &nl.storage;
            unit = 1024;    /* Dovecot: storage= counts KiB without a unit */
        } else if (!strcmp(buf, "bytes")) {
            dst = &nl.storage;
            unit = 1;
        } else if (!strcmp(buf, "messages")) {
            dst = &nl.messages;
            unit = 1;
        } else {
            return -EINVAL;
        }
        if (*eq == '+' || *eq == '-') {
            /* relative: valid for a mailbox's rule only */
            if (whole)
                return -EINVAL;
            eq++;
        }
        size_t vl = strlen(eq);
        if (vl && eq[vl - 1] == '%') {
            /* "Default rule can't be a percentage" (Dovecot) */
            if (whole)
                return -EINVAL;
            eq[vl - 1] = '\0';
            unit = 1;
        }
        uint64_t v;
        if (quota_size_parse(eq, unit, &v) < 0)
            return -EINVAL;
        *dst = v;
        if (more)
            p = end + 1;
    }
    if (whole)
        *l = nl;
    return 0;
}

/* Is key a quota rule field: [userdb_]quota_rule[N]? */
static bool rule_key(const char *k, size_t n)
{
    if (n > 7 && !strncmp(k, "userdb_", 7)) {
        k += 7;
        n -= 7;
    }
    if (n < 10 || strncmp(k, "quota_rule", 10) != 0)
        return false;
    for (size_t i = 10; i < n; i++)
        if (!isdigit((unsigned char)k[i]))
            return false;
    return true;
}

int quota_extra_parse(const char *extra, quota_limits *l, bool *found)
{
    *l = (quota_limits){0};
    *found = false;
    if (!extra)
        return 0;
    const char *p = extra;
    while (*p) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        const char *end = p;
        while (*end && *end != ' ' && *end != '\t')
            end++;
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (eq && rule_key(p, (size_t)(eq - p))) {
            size_t vl = (size_t)(end - eq - 1);
            char *v = strndup(eq + 1, vl);
            if (!v)
                return -ENOMEM;
            int rc = quota_rule_parse(v, l);
            free(v);
            if (rc < 0)
                return rc;
            /* only whole-user rules replace the defaults */
            if (vl >= 2 && (eq[1] == '*' || eq[1] == '?') && eq[2] == ':')
                *found = true;
        }
        p = end;
    }
    return 0;
}

int quota_config_defaults(const config *cfg, quota_limits *l)
{
    *l = (quota_limits){0};
    const char *s = config_get(cfg, "quota_storage");
    if (s && *s && quota_size_parse(s, 1, &l->storage) < 0)
        return -EINVAL;
    long long m = 0;
    if (config_get_int(cfg, "quota_messages", &m) == 0 && m > 0)
        l->messages = (uint64_t)m;
    return 0;
}

int quota_user_limits(const quota_limits *defaults, const char *extra, quota_limits *out)
{
    bool found;
    int rc = quota_extra_parse(extra, out, &found);
    if (rc < 0)
        return rc;
    if (!found)
        *out = *defaults;
    return 0;
}
