/* tools/admin_maildir.c — scanning a Maildir (see admin_maildir.h). */
#include "tools/admin_maildir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/store.h"

static bool is_dir(const char *base, const char *sub)
{
    char path[4096];
    struct stat st;
    if (snprintf(path, sizeof path, "%s/%s", base, sub) >= (int)sizeof path)
        return false;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool admin_is_maildir(const char *path)
{
    return is_dir(path, "cur") && is_dir(path, "new");
}

uint32_t admin_maildir_flags(const char *name)
{
    const char *info = NULL;
    for (const char *p = name; *p; p++)
        if ((*p == ':' || *p == '!' || *p == ';') && p[1] == '2' && p[2] == ',')
            info = p + 3;       /* the last one counts */
    uint32_t f = 0;
    for (const char *p = info; p && *p; p++) {
        switch (*p) {
        case 'F': f |= STORE_F_FLAGGED; break;
        case 'R': f |= STORE_F_ANSWERED; break;
        case 'S': f |= STORE_F_SEEN; break;
        case 'T': f |= STORE_F_DELETED; break;
        case 'D': f |= STORE_F_DRAFT; break;
        default: break;
        }
    }
    return f;
}

void admin_maildir_free(admin_maildir_entry *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].path);
    free(v);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static int by_time_then_name(const void *a, const void *b)
{
    const admin_maildir_entry *x = a, *y = b;
    if (x->mtime != y->mtime)
        return x->mtime < y->mtime ? -1 : 1;
    return strcmp(base_name(x->path), base_name(y->path));
}

/* Append the files of dir/sub to *v. */
static int scan_sub(const char *dir, const char *sub, admin_maildir_entry **v,
                    size_t *n, size_t *cap)
{
    int ret = 0;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, sub) >= (int)sizeof path)
        return -ENAMETOOLONG;
    DIR *d = opendir(path);
    if (!d)
        return -errno;
    int dfd = dirfd(d);
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            ret = -errno;
            break;
        }
        if (de->d_name[0] == '.')
            continue;
        struct stat st;
        if (fstatat(dfd, de->d_name, &st, 0) < 0) {
            if (errno == ENOENT)
                continue;       /* renamed by a live client meanwhile */
            ret = -errno;
            break;
        }
        if (!S_ISREG(st.st_mode))
            continue;
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 256;
            admin_maildir_entry *nv = realloc(*v, nc * sizeof *nv);
            if (!nv) {
                ret = -ENOMEM;
                break;
            }
            *v = nv;
            *cap = nc;
        }
        admin_maildir_entry *e = &(*v)[*n];
        if (asprintf(&e->path, "%s/%s", path, de->d_name) < 0) {
            ret = -ENOMEM;
            break;
        }
        e->mtime = st.st_mtim.tv_sec;
        e->size = (uint64_t)st.st_size;
        e->flags = admin_maildir_flags(de->d_name);
        (*n)++;
    }
    closedir(d);
    return ret;
}

int admin_maildir_scan(const char *dir, admin_maildir_entry **out, size_t *n)
{
    admin_maildir_entry *v = NULL;
    size_t cnt = 0, cap = 0;
    int ret = scan_sub(dir, "cur", &v, &cnt, &cap);
    if (ret == 0)
        ret = scan_sub(dir, "new", &v, &cnt, &cap);
    if (ret < 0) {
        admin_maildir_free(v, cnt);
        return ret;
    }
    if (cnt)
        qsort(v, cnt, sizeof *v, by_time_then_name);
    *out = v;
    *n = cnt;
    return 0;
}
