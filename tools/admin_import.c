/* tools/admin_import.c — `import USER MAILBOX PATH` from an mbox file or a
 * Maildir (`import USER --dovecot-maildir DIR`: admin_import_dovecot.c).
 *
 * Messages are converted to CRLF (mbox: unquoted, and without the Status:
 * and X-Status: fields that became flags) and appended in batches of up to
 * ADMIN_BATCH_MSGS messages or ADMIN_BATCH_BYTES bytes: one store_append
 * (so one fsync and one lock round) per batch instead of per message is
 * what makes a large import fast.  Each batch is atomic; if an import
 * fails midway the batches before it stay imported and the summary says
 * how many. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tools/admin.h"
#include "tools/admin_import.h"
#include "tools/admin_maildir.h"
#include "tools/admin_mbox.h"

int admin_batch_flush(admin_batch *b)
{
    if (b->n == 0)
        return 0;
    /* Pointers are taken only now: data may have moved while growing. */
    for (size_t i = 0; i < b->n; i++) {
        const struct admin_batch_item *it = &b->items[i];
        size_t nk = 0;
        for (unsigned k = 0; k < ADMIN_BATCH_KEYWORDS; k++)
            if ((it->m.keywords >> k & 1) && b->kwnames && b->kwnames[k])
                b->kwptrs[i][nk++] = b->kwnames[k];
        b->msgs[i] = (store_new_msg){
            .data = b->data.data + it->off,
            .len = it->len,
            .internal_date = it->m.date,
            .tz_min = it->m.tz_min,
            .flags = it->m.flags,
            .keywords = b->kwptrs[i],
            .nkeywords = nk,
            .uid = it->m.uid,
        };
    }
    int r = store_append(b->mb, b->msgs, b->n, b->uids);
    if (r < 0) {
        admin_err("cannot append input messages %llu to %llu: %s "
                  "(the %llu before them were imported)",
                  (unsigned long long)b->done + 1,
                  (unsigned long long)(b->done + b->n), store_strerror(r),
                  (unsigned long long)b->done);
        return r;
    }
    b->done += b->n;
    b->bytes += b->data.len;
    b->n = 0;
    b->data.len = 0;
    return 0;
}

int admin_batch_add(admin_batch *b, const char *raw, size_t len, bool mbox,
                    const admin_batch_msg *m)
{
    size_t off = b->data.len;
    int r = admin_mbox_to_crlf(raw, len, mbox, &b->data);
    if (r < 0) {
        admin_err("out of memory");
        return r;
    }
    if (mbox)
        b->data.len = off + admin_mbox_drop_status(b->data.data + off, b->data.len - off);
    b->items[b->n++] = (struct admin_batch_item){ off, b->data.len - off, *m };
    if (b->n == ADMIN_BATCH_MSGS || b->data.len >= ADMIN_BATCH_BYTES)
        return admin_batch_flush(b);
    return 0;
}

static int import_mbox(admin_batch *b, const char *path, int fd, uint64_t size,
                       admin_progress *pr)
{
    int ret = 0;
    void *map = NULL;
    if (size == 0)
        return 0;
    map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        ret = -errno;
        admin_err("cannot map '%s': %s", path, strerror(-ret));
        return ret;
    }
    madvise(map, size, MADV_SEQUENTIAL);
    admin_mbox_reader rd;
    ret = admin_mbox_reader_init(&rd, map, size);
    if (ret < 0) {
        admin_err("'%s' is not an mbox file (it does not start with a 'From ' line)", path);
        goto out;
    }
    const char *msg;
    size_t len;
    int64_t date;
    unsigned long line;
    while (admin_mbox_next(&rd, &msg, &len, &date, &line) == 1) {
        admin_batch_msg m = { .date = date, .flags = admin_mbox_flags(msg, len) };
        ret = admin_batch_add(b, msg, len, true, &m);
        if (ret < 0)
            goto out;
        admin_progress_update(pr, rd.pos);
    }
    ret = admin_batch_flush(b);
out:
    munmap(map, size);
    return ret;
}

int admin_read_file(const char *path, admin_buf *buf)
{
    int ret = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    buf->len = 0;
    for (;;) {
        ret = admin_buf_reserve(buf, 65536);
        if (ret < 0)
            break;
        ssize_t got = read(fd, buf->data + buf->len, buf->cap - buf->len);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            ret = -errno;
            break;
        }
        if (got == 0)
            break;
        buf->len += (size_t)got;
    }
    close(fd);
    return ret;
}

static int import_maildir(admin_batch *b, const char *path, admin_progress *pr)
{
    admin_maildir_entry *v = NULL;
    size_t n = 0;
    admin_buf file = { 0 };
    int ret = admin_maildir_scan(path, &v, &n);
    if (ret < 0) {
        admin_err("cannot read Maildir '%s': %s", path, strerror(-ret));
        return ret;
    }
    pr->total = n;
    for (size_t i = 0; i < n; i++) {
        ret = admin_read_file(v[i].path, &file);
        if (ret == -ENOENT) {
            /* Moved or deleted by a client since the scan: not ours. */
            admin_err("warning: '%s' vanished; skipped", v[i].path);
            ret = 0;
            continue;
        }
        if (ret < 0) {
            admin_err("cannot read '%s': %s (the %llu messages before it were imported)",
                      v[i].path, strerror(-ret), (unsigned long long)b->done);
            goto out;
        }
        admin_batch_msg m = { .date = v[i].mtime, .flags = v[i].flags };
        ret = admin_batch_add(b, file.data, file.len, false, &m);
        if (ret < 0)
            goto out;
        admin_progress_update(pr, i + 1);
    }
    ret = admin_batch_flush(b);
out:
    free(file.data);
    admin_maildir_free(v, n);
    return ret;
}

int admin_cmd_import(admin_ctx *ctx, int argc, char **argv)
{
    static const char synopsis[] = "import USER MAILBOX PATH | import USER "
        "--dovecot-maildir DIR [--layout maildir++|fs] [--control CDIR] "
        "[--stock-special-use]";
    char *pos[3];
    size_t npos;
    const char *dovecot = NULL, *layout = NULL, *control = NULL;
    bool stock = false;
    const admin_opt opts[] = { { "dovecot-maildir", NULL, &dovecot },
                               { "layout", NULL, &layout },
                               { "control", NULL, &control },
                               { "stock-special-use", &stock, NULL } };
    if (admin_args(argc, argv, opts, 4, pos, 1, 3, &npos, synopsis) < 0)
        return ADMIN_USAGE;
    if (dovecot) {
        if (npos != 1)
            return admin_usage("too many arguments; usage: ringmail-admin %s", synopsis);
        if (layout && strcasecmp(layout, "fs") != 0 && strcasecmp(layout, "maildir++") != 0)
            return admin_usage("bad --layout '%s' (maildir++ or fs)", layout);
        return admin_import_dovecot(ctx, pos[0], dovecot, control,
                                    layout && !strcasecmp(layout, "fs"), stock);
    }
    if (stock || layout || control)
        return admin_usage("--layout, --control and --stock-special-use go with "
                           "--dovecot-maildir");
    if (npos != 3)
        return admin_usage("missing arguments; usage: ringmail-admin %s", synopsis);
    const char *user = pos[0], *name = pos[1], *path = pos[2];

    int ret = ADMIN_FAIL, r;
    int fd = -1;
    store_user *u = NULL;
    admin_batch *b = NULL;
    admin_progress pr;
    double t0 = admin_now();

    /* Look at the input before touching the store, so a wrong path does
     * not leave an empty new mailbox behind. */
    struct stat st;
    bool maildir = false;
    if (stat(path, &st) < 0) {
        admin_err("cannot open '%s': %s", path, strerror(errno));
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        if (!admin_is_maildir(path)) {
            admin_err("'%s' is a directory but not a Maildir (no cur/ and new/)", path);
            goto out;
        }
        maildir = true;
    } else {
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0) {
            admin_err("cannot open '%s': %s", path, strerror(errno));
            goto out;
        }
        if (!S_ISREG(st.st_mode)) {
            admin_err("'%s' is neither an mbox file nor a Maildir", path);
            goto out;
        }
        if (st.st_size > 0) {
            char head[5];
            if (pread(fd, head, 5, 0) != 5 || memcmp(head, "From ", 5) != 0) {
                admin_err("'%s' is not an mbox file (it does not start with a 'From ' line)",
                          path);
                goto out;
            }
        }
    }

    b = calloc(1, sizeof *b);
    if (!b) {
        admin_err("out of memory");
        goto out;
    }
    if (admin_user_open(ctx, user, true, &u) < 0)
        goto out;
    r = store_mbox_open(u, name, &b->mb);
    if (r == -ENOENT) {
        r = store_mailbox_create(u, name, 0);
        if (r < 0 && r != -EEXIST) {
            admin_mailbox_error(name, r);
            goto out;
        }
        r = store_mbox_open(u, name, &b->mb);
    }
    if (r < 0) {
        admin_mailbox_error(name, r);
        goto out;
    }

    admin_progress_start(&pr, "import", maildir ? 0 : (uint64_t)st.st_size, !maildir);
    r = maildir ? import_maildir(b, path, &pr)
                : import_mbox(b, path, fd, (uint64_t)st.st_size, &pr);
    admin_progress_end(&pr);
    char hb[32];
    if (r < 0)
        goto out;       /* reported, with how much was imported */
    printf("imported %llu messages (%s) into '%s' in %.1f s\n",
           (unsigned long long)b->done, admin_human_bytes(b->bytes, hb, sizeof hb),
           name, admin_now() - t0);
    ret = ADMIN_OK;
out:
    if (b) {
        if (b->mb)
            store_mbox_close(b->mb);
        free(b->data.data);
        free(b);
    }
    if (u)
        store_user_close(u);
    if (fd >= 0)
        close(fd);
    return ret;
}
