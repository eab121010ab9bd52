/* tools/admin_open.c — opening users and mailboxes, and saying in words
 * what went wrong. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tools/admin.h"

void admin_mailbox_error(const char *name, int err)
{
    switch (-err) {
    case ENOENT:
        admin_err("mailbox '%s' does not exist", name);
        break;
    case EEXIST:
        admin_err("mailbox '%s' already exists", name);
        break;
    case EINVAL:
        admin_err("invalid mailbox name '%s'", name);
        break;
    case EPERM:
        admin_err("mailbox '%s': not allowed on INBOX", name);
        break;
    case ENOTEMPTY:
        admin_err("mailbox '%s' has child mailboxes; delete them first", name);
        break;
    case EBADMSG:
        admin_err("mailbox '%s' is damaged (try: ringmail-admin check USER '%s' --repair)",
                  name, name);
        break;
    case EWOULDBLOCK:
        admin_err("mailbox '%s' is busy", name);
        break;
    default:
        admin_err("mailbox '%s': %s", name, strerror(-err));
        break;
    }
}

/* The store checks user names too; checking here first keeps a name like
 * "../x" from reaching the stat() below. */
static bool user_name_ok(const char *user)
{
    if (!*user || strcmp(user, ".") == 0 || strcmp(user, "..") == 0)
        return false;
    for (const unsigned char *p = (const unsigned char *)user; *p; p++)
        if (*p == '/' || *p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

/* mkdir -p, for a mail_root that does not exist yet. */
static int mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return -ENAMETOOLONG;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int admin_user_open(admin_ctx *ctx, const char *user, bool create,
                    store_user **out)
{
    if (!user_name_ok(user)) {
        admin_err("invalid user name '%s'", user);
        return -EINVAL;
    }
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", ctx->mail_root, user) >= (int)sizeof path) {
        admin_err("user '%s': path too long", user);
        return -ENAMETOOLONG;
    }
    struct stat st;
    int r;
    if (stat(path, &st) < 0) {
        r = -errno;
        if (r != -ENOENT) {
            admin_err("user '%s': %s: %s", user, path, strerror(-r));
            return r;
        }
        if (!create) {
            admin_err("user '%s' does not exist (no %s)", user, path);
            return r;
        }
        r = mkdir_p(ctx->mail_root);
        if (r < 0) {
            admin_err("cannot create mail_root '%s': %s", ctx->mail_root, strerror(-r));
            return r;
        }
    } else if (!S_ISDIR(st.st_mode)) {
        admin_err("user '%s': %s is not a directory", user, path);
        return -ENOTDIR;
    }
    r = store_user_open(ctx->mail_root, user, &ctx->opts, out);
    if (r < 0)
        admin_err("cannot open user '%s' under '%s': %s", user, ctx->mail_root,
                  strerror(-r));
    return r;
}

int admin_mbox_open(store_user *u, const char *name, store_mbox **out)
{
    int r = store_mbox_open(u, name, out);
    if (r < 0)
        admin_mailbox_error(name, r);
    return r;
}

int admin_select_mailboxes(store_user *u, const char *user, const char *name,
                           store_mailbox_info **out, size_t *n)
{
    int r;
    if (name) {
        store_mailbox_info *v = calloc(1, sizeof *v);
        if (!v) {
            admin_err("out of memory");
            return -ENOMEM;
        }
        r = store_mailbox_get(u, name, v);
        if (r < 0) {
            free(v);
            admin_mailbox_error(name, r);
            return r;
        }
        *out = v;
        *n = 1;
        return 0;
    }
    r = store_mailbox_list(u, out, n);
    if (r < 0)
        admin_err("user '%s': cannot list mailboxes: %s", user, strerror(-r));
    return r;
}
