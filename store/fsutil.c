/* store/fsutil.c — small file-system helpers with the store's durability
 * rules: write-temp + fdatasync + rename + fsync(dir) for replaced files. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/internal.h"

int store_fs_mkdirs(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n >= sizeof buf)
        return -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, mode) < 0) {
            if (errno != EEXIST)
                return -errno;
        } else {
            /* A new directory's name is an entry of its parent: durable
             * only once the parent is synced, or a power loss can take a
             * mailbox directory (and all that was synced inside it) away
             * while the mailbox list still names it. */
            char *slash = strrchr(buf, '/');
            if (slash && slash != buf) {
                *slash = '\0';
                int rc = store_fs_fsync_dir(buf);
                *slash = '/';
                /* A parent we may not open (above mail_root, for a server
                 * that dropped root) is not ours to make durable. */
                if (rc < 0 && rc != -EACCES && rc != -EPERM)
                    return rc;
            }
        }
        buf[i] = c;
    }
    return 0;
}

int store_fs_rmtree(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char sub[PATH_MAX];
        if ((size_t)snprintf(sub, sizeof sub, "%s/%s", path, de->d_name) >= sizeof sub) {
            rc = -ENAMETOOLONG;
            break;
        }
        struct stat st;
        if (lstat(sub, &st) < 0) {
            rc = -errno;
            break;
        }
        rc = S_ISDIR(st.st_mode) ? store_fs_rmtree(sub) : (unlink(sub) < 0 ? -errno : 0);
        if (rc < 0)
            break;
    }
    closedir(d);
    if (rc == 0 && rmdir(path) < 0)
        rc = -errno;
    return rc;
}

int store_fs_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int store_fs_pwrite_all(int fd, const void *p, size_t n, uint64_t off)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = pwrite(fd, b, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        b += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

int store_fs_pread_all(int fd, void *p, size_t n, uint64_t off)
{
    uint8_t *b = p;
    while (n) {
        ssize_t r = pread(fd, b, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -EIO;
        b += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

int store_fs_write_atomic(const char *path, const void *data, size_t len)
{
    char tmp[PATH_MAX], dir[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int rc = store_fs_pwrite_all(fd, data, len, 0);
    if (rc == 0 && fdatasync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0) {
        unlink(tmp);
        return rc;
    }
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        rc = store_fs_fsync_dir(dir[0] ? dir : "/");
    }
    return rc;
}

void store_fs_boot_id(uint8_t out[16])
{
    memset(out, 0, 16);
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
    if (!f)
        return;
    char line[64];
    if (fgets(line, sizeof line, f)) {
        int k = 0;
        for (char *p = line; *p && k < 32; p++) {
            int v;
            if (*p >= '0' && *p <= '9')
                v = *p - '0';
            else if (*p >= 'a' && *p <= 'f')
                v = *p - 'a' + 10;
            else
                continue;
            out[k / 2] = (uint8_t)(out[k / 2] << 4 | v);
            k++;
        }
    }
    fclose(f);
}
