/* store/freeze.c — a user's store frozen for a move to another backend
 * (store.h, "freezing a user"; docs/store-format.md, `frozen`).
 *
 * The freeze is a file, <mail_root>/<user>/frozen, so that every process
 * holding the user (ringmaild under processes = N, ringmail-admin) sees it
 * without being told.  Writers look for it after they take their lock (the
 * mailbox's writer flock, or the list's), never before: a writer that
 * looked first could write after the freezer passed its barrier.  The
 * barrier is the freezer taking and releasing those same flocks once after
 * the file is durable: a write that held one when the file appeared has
 * ended by then, and every later one sees the file.  One stat per write
 * transaction (per batch of a group commit), next to an fdatasync. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/internal.h"

static int user_dir(const char *mail_root, const char *user, char *buf, size_t len)
{
    if (!mail_root || !*mail_root || !user || !*user || strchr(user, '/') ||
        !strcmp(user, ".") || !strcmp(user, ".."))
        return -EINVAL;
    if ((size_t)snprintf(buf, len, "%s/%s", mail_root, user) >= len)
        return -ENAMETOOLONG;
    return 0;
}

int store_user_check_frozen(const char *user_root)
{
    char p[PATH_MAX + 16];
    if ((size_t)snprintf(p, sizeof p, "%s/%s", user_root, STORE_FROZEN_FILE) >= sizeof p)
        return -ENAMETOOLONG;
    struct stat st;
    if (stat(p, &st) == 0)
        return -EROFS;
    return errno == ENOENT ? 0 : -errno;
}

/* Take and release the flock of `path` (absent: nothing to wait for). */
static int lock_pass(const char *path)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    int rc = 0;
    while (flock(fd, LOCK_EX) < 0) {
        if (errno != EINTR) {
            rc = -errno;
            break;
        }
    }
    close(fd);      /* drops the flock */
    return rc;
}

static int barrier(const char *root)
{
    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/lock", root);
    int rc = lock_pass(p);
    if (rc < 0)
        return rc;
    snprintf(p, sizeof p, "%s/m", root);
    DIR *d = opendir(p);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char lp[PATH_MAX + 300];
        if ((size_t)snprintf(lp, sizeof lp, "%s/m/%s/lock", root, e->d_name) >= sizeof lp)
            continue;
        rc = lock_pass(lp);
    }
    closedir(d);
    return rc;
}

int store_user_freeze(const char *mail_root, const char *user, const char *why)
{
    char root[PATH_MAX], p[PATH_MAX + 16];
    int rc = user_dir(mail_root, user, root, sizeof root);
    if (rc < 0)
        return rc;
    if (!why || strchr(why, '\n'))
        return -EINVAL;
    struct stat st;
    if (stat(root, &st) < 0)
        return -errno;
    snprintf(p, sizeof p, "%s/%s", root, STORE_FROZEN_FILE);
    char line[512];
    int n = snprintf(line, sizeof line, "%s\n", why);
    if (n < 0 || (size_t)n >= sizeof line)
        return -EINVAL;
    /* A temporary name of our own: every process of a server under
     * processes = N makes the file at once when the control socket's
     * freeze reaches them all. */
    static atomic_uint seq;
    char tmp[PATH_MAX + 80];
    snprintf(tmp, sizeof tmp, "%s.%d.%u.tmp", p, (int)getpid(), atomic_fetch_add(&seq, 1));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    if (write(fd, line, (size_t)n) != n || fdatasync(fd) < 0)
        rc = -EIO;
    close(fd);
    if (rc == 0 && rename(tmp, p) < 0)
        rc = -errno;
    if (rc < 0) {
        unlink(tmp);
        return rc;
    }
    if ((rc = store_fs_fsync_dir(root)) < 0)
        return rc;
    return barrier(root);
}

int store_user_thaw(const char *mail_root, const char *user)
{
    char root[PATH_MAX], p[PATH_MAX + 16];
    int rc = user_dir(mail_root, user, root, sizeof root);
    if (rc < 0)
        return rc;
    snprintf(p, sizeof p, "%s/%s", root, STORE_FROZEN_FILE);
    if (unlink(p) < 0)
        return errno == ENOENT ? 0 : -errno;
    return store_fs_fsync_dir(root);
}

int store_user_frozen(const char *mail_root, const char *user, char *why, size_t len)
{
    char root[PATH_MAX], p[PATH_MAX + 16];
    int rc = user_dir(mail_root, user, root, sizeof root);
    if (rc < 0)
        return rc;
    snprintf(p, sizeof p, "%s/%s", root, STORE_FROZEN_FILE);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    if (why && len) {
        ssize_t r = read(fd, why, len - 1);
        why[r > 0 ? r : 0] = '\0';
        char *nl = strchr(why, '\n');
        if (nl)
            *nl = '\0';
    }
    close(fd);
    return 1;
}
