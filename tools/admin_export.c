/* tools/admin_export.c — `export USER MAILBOX PATH`: the live messages of
 * a mailbox, in UID order, as an mboxrd file (see admin_mbox.h).
 *
 * The file is written as PATH.tmp, fsync'd and renamed over PATH (and the
 * directory fsync'd), so PATH is either the old file or the complete new
 * one, never half an export.  The whole export reads one snapshot, so
 * concurrent changes are either all in it or not at all. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/admin.h"
#include "tools/admin_mbox.h"

#define FLUSH_AT (1u << 20)

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int fsync_parent(const char *path)
{
    char *dir = strdup(path);
    if (!dir)
        return -ENOMEM;
    char *slash = strrchr(dir, '/');
    const char *d = ".";
    if (slash == dir)
        d = "/";
    else if (slash) {
        *slash = '\0';
        d = dir;
    }
    int ret = 0;
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0)
        ret = -errno;
    if (fd >= 0)
        close(fd);
    free(dir);
    return ret;
}

/* Write every live message of the snapshot to fd. */
static int export_snap(store_snap *s, int fd, uint64_t *count, uint64_t *bytes)
{
    int ret = 0;
    admin_buf out = { 0 };
    admin_progress pr;
    uint32_t n = store_snap_entries(s);
    admin_progress_start(&pr, "export", n, false);
    store_cursor c;     /* the messages by position: no lookup by UID */
    store_cursor_init(&c, s);
    for (uint32_t pos = 0; pos < n; pos++, store_cursor_next(&c, NULL)) {
        store_msg m;
        if (store_cursor_msg(&c, &m) != 1)
            continue;
        const char *p;
        size_t got;
        ret = store_cursor_bytes(&c, 0, SIZE_MAX, &p, &got);
        if (ret < 0) {
            admin_err("cannot read message UID %u: %s", m.uid, strerror(-ret));
            goto out;
        }
        char from[128];
        int fl = admin_mbox_from_line(m.internal_date, from, sizeof from);
        if (fl < 0)     /* a date past year 9999 cannot be an asctime */
            fl = admin_mbox_from_line(0, from, sizeof from);
        ret = admin_buf_reserve(&out, (size_t)fl);
        if (ret == 0) {
            memcpy(out.data + out.len, from, (size_t)fl);
            out.len += (size_t)fl;
            ret = admin_mbox_quote(p, got, &out);
        }
        if (ret < 0) {
            admin_err("out of memory");
            goto out;
        }
        (*count)++;
        if (out.len >= FLUSH_AT) {
            ret = write_all(fd, out.data, out.len);
            if (ret < 0)
                goto werr;
            *bytes += out.len;
            out.len = 0;
        }
        admin_progress_update(&pr, pos + 1);
    }
    ret = write_all(fd, out.data, out.len);
    if (ret < 0)
        goto werr;
    *bytes += out.len;
    goto out;
werr:
    admin_err("write failed: %s", strerror(-ret));
out:
    admin_progress_end(&pr);
    free(out.data);
    return ret;
}

int admin_cmd_export(admin_ctx *ctx, int argc, char **argv)
{
    char *pos[3];
    size_t npos;
    if (admin_args(argc, argv, NULL, 0, pos, 3, 3, &npos,
                   "export USER MAILBOX PATH") < 0)
        return ADMIN_USAGE;
    const char *user = pos[0], *name = pos[1], *path = pos[2];
    bool to_stdout = strcmp(path, "-") == 0;

    int ret = ADMIN_FAIL, r;
    int fd = -1;
    char *tmp = NULL;
    store_user *u = NULL;
    store_mbox *mb = NULL;
    store_snap *s = NULL;
    uint64_t count = 0, bytes = 0;

    if (admin_user_open(ctx, user, false, &u) < 0 || admin_mbox_open(u, name, &mb) < 0)
        goto out;
    s = store_snap_get(mb);
    if (!s) {
        admin_err("mailbox '%s': cannot read it", name);
        goto out;
    }
    if (to_stdout) {
        fd = STDOUT_FILENO;
    } else {
        if (asprintf(&tmp, "%s.tmp", path) < 0) {
            tmp = NULL;
            admin_err("out of memory");
            goto out;
        }
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
            admin_err("cannot create '%s': %s", tmp, strerror(errno));
            goto out;
        }
    }
    if (export_snap(s, fd, &count, &bytes) < 0)
        goto out;
    if (!to_stdout) {
        /* Data durable before the rename makes it visible under PATH. */
        if (fsync(fd) < 0) {
            admin_err("cannot sync '%s': %s", tmp, strerror(errno));
            goto out;
        }
        r = close(fd);
        fd = -1;
        if (r < 0) {
            admin_err("cannot write '%s': %s", tmp, strerror(errno));
            goto out;
        }
        if (rename(tmp, path) < 0) {
            admin_err("cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
            goto out;
        }
        free(tmp);
        tmp = NULL;     /* renamed: nothing to clean up any more */
        r = fsync_parent(path);
        if (r < 0) {
            admin_err("cannot sync the directory of '%s': %s", path, strerror(-r));
            goto out;
        }
        char hb[32];
        printf("exported %llu messages (%s) to '%s'\n", (unsigned long long)count,
               admin_human_bytes(bytes, hb, sizeof hb), path);
    }
    ret = ADMIN_OK;
out:
    if (fd >= 0 && !to_stdout)
        close(fd);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    if (s)
        store_snap_put(s);
    if (mb)
        store_mbox_close(mb);
    if (u)
        store_user_close(u);
    return ret;
}
