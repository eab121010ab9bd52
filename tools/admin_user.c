/* tools/admin_user.c — `user add|passwd|del|list`: the passwd-file.
 *
 * The password is read from standard input (its first line), never from
 * the command line, where other users could see it in ps.
 *
 * A user's mail lives under mail_root by name, so `user del` keeps it
 * unless --purge: a later `user add` of the same name would read it. */
#define _XOPEN_SOURCE 700       /* nftw */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "core/auth/passwd.h"
#include "tools/admin.h"

#define DEFAULT_SCHEME PASSWD_DEFAULT_SCHEME

static int read_password(char **out)
{
    struct termios old, quiet;
    bool tty = isatty(0) && tcgetattr(0, &old) == 0;
    if (tty) {
        fputs("Password: ", stderr);
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(0, TCSAFLUSH, &quiet);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (tty) {
        tcsetattr(0, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    if (n <= 0) {
        free(line);
        admin_err("no password on standard input");
        return -EINVAL;
    }
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    if (!n) {
        free(line);
        admin_err("empty password");
        return -EINVAL;
    }
    *out = line;
    return 0;
}

static int set_user(admin_ctx *ctx, int argc, char **argv, bool add)
{
    const char *scheme = DEFAULT_SCHEME;
    admin_opt opts[] = {{"scheme", NULL, &scheme}};
    char *pos[1];
    size_t npos;
    if (admin_args(argc, argv, opts, 1, pos, 1, 1, &npos,
                   add ? "user add [--scheme NAME] USER" : "user passwd [--scheme NAME] USER") < 0)
        return ADMIN_USAGE;
    const char *user = pos[0];
    const char *why = passwd_user_name_problem(user);
    if (why) {
        /* Such a name would be written, and then never log in. */
        admin_err("invalid user name: %s", why);
        return ADMIN_FAIL;
    }
    char *pw = NULL, *entry = NULL;
    int rc = read_password(&pw);
    if (rc < 0)
        return ADMIN_FAIL;
    rc = passwd_hash(scheme, pw, &entry);
    memset(pw, 0, strlen(pw));
    free(pw);
    if (rc == -EINVAL || rc == -ENOTSUP) {
        admin_err("%s password scheme '%s' (this build has: %s)",
                  rc == -EINVAL ? "unknown" : "unsupported", scheme, passwd_schemes());
        return ADMIN_FAIL;
    }
    if (rc < 0) {
        admin_err("cannot hash the password: %s", strerror(-rc));
        return ADMIN_FAIL;
    }
    const char *path = config_get(&ctx->cfg, "passwd_file");
    rc = passwd_file_set(path, user, entry, !add);
    free(entry);
    if (rc == -EEXIST) {
        admin_err("user '%s' already exists (use user passwd)", user);
        return ADMIN_FAIL;
    }
    if (rc == -ENOENT && !add) {
        admin_err("user '%s' does not exist", user);
        return ADMIN_FAIL;
    }
    if (rc < 0) {
        admin_err("%s: %s", path, strerror(-rc));
        return ADMIN_FAIL;
    }
    printf("%s %s\n", add ? "added" : "changed password of", user);
    return ADMIN_OK;
}

int admin_cmd_user_add(admin_ctx *ctx, int argc, char **argv)
{
    return set_user(ctx, argc, argv, true);
}

int admin_cmd_user_passwd(admin_ctx *ctx, int argc, char **argv)
{
    return set_user(ctx, argc, argv, false);
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if ((type == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

/* Remove <mail_root>/<user>: renamed aside first (a name no user can
 * have: ':' is refused in user names), so an interrupted purge leaves no
 * half-removed store that a later user of the name would open. */
static int purge_mail(const char *mail_root, const char *user, bool *had)
{
    char dir[PATH_MAX], aside[PATH_MAX];
    *had = false;
    if (snprintf(dir, sizeof dir, "%s/%s", mail_root, user) >= (int)sizeof dir ||
        snprintf(aside, sizeof aside, "%s/%s:deleted.%ld", mail_root, user,
                 (long)getpid()) >= (int)sizeof aside)
        return -ENAMETOOLONG;
    if (rename(dir, aside) < 0)
        return errno == ENOENT ? 0 : -errno;
    *had = true;
    int rc = nftw(aside, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc < 0 ? (errno ? -errno : -EIO) : -rc;
}

int admin_cmd_user_del(admin_ctx *ctx, int argc, char **argv)
{
    bool purge = false;
    admin_opt opts[] = {{"purge", &purge, NULL}};
    char *pos[1];
    size_t npos;
    if (admin_args(argc, argv, opts, 1, pos, 1, 1, &npos, "user del [--purge] USER") < 0)
        return ADMIN_USAGE;
    const char *user = pos[0];
    if (purge && (!*user || strchr(user, '/') || !strcmp(user, ".") || !strcmp(user, ".."))) {
        admin_err("invalid user name '%s'", user);
        return ADMIN_FAIL;
    }
    const char *path = config_get(&ctx->cfg, "passwd_file");
    int rc = passwd_file_set(path, user, NULL, false);
    if (rc == -ENOENT) {
        admin_err("user '%s' does not exist", user);
        return ADMIN_FAIL;
    }
    if (rc < 0) {
        admin_err("%s: %s", path, strerror(-rc));
        return ADMIN_FAIL;
    }
    if (!purge) {
        printf("deleted %s; the mail in %s/%s is kept, and a user added later under the "
               "same name would read it (user del --purge removes it)\n",
               user, ctx->mail_root, user);
        return ADMIN_OK;
    }
    bool had;
    rc = purge_mail(ctx->mail_root, user, &had);
    if (rc < 0) {
        admin_err("deleted %s, but removing %s/%s failed: %s", user, ctx->mail_root, user,
                  strerror(-rc));
        return ADMIN_FAIL;
    }
    printf("deleted %s and %s\n", user, had ? "its mail" : "no mail (it had none)");
    return ADMIN_OK;
}

int admin_cmd_user_list(admin_ctx *ctx, int argc, char **argv)
{
    char *pos[1];
    size_t npos;
    if (admin_args(argc, argv, NULL, 0, pos, 0, 0, &npos, "user list") < 0)
        return ADMIN_USAGE;
    const char *path = config_get(&ctx->cfg, "passwd_file");
    char **names;
    size_t n;
    int rc = passwd_file_users(path, &names, &n);
    if (rc < 0) {
        admin_err("%s: %s", path, strerror(-rc));
        return ADMIN_FAIL;
    }
    for (size_t i = 0; i < n; i++) {
        printf("%s\n", names[i]);
        free(names[i]);
    }
    free(names);
    return ADMIN_OK;
}
