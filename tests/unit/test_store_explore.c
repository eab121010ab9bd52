/* tests/unit/test_store_explore.c — the crash-state explorer.
 *
 * A workload (appends, flag changes, expunges, a close that checkpoints,
 * a compaction, more changes after it) runs against the store under
 * fsync = always while every file-system call the store makes is recorded:
 * open/creat, pwrite/write, ftruncate/fallocate, rename, unlink, mkdir,
 * rmdir, fsync/fdatasync and msync.  These functions are defined here, so
 * the store's calls (it is a static library linked into this program) land
 * here first; each records the call and performs it with syscall().
 *
 * Then every disk state a power loss could leave is built from the record
 * and opened with the store:
 *
 *   - a crash after any prefix of the calls;
 *   - a write or truncate is surely on disk only if an fsync/fdatasync (or
 *     msync) of its file came after it; the others may each be there or
 *     not, or torn (the front part written);
 *   - a directory change (create, rename, unlink) is surely on disk only if
 *     an fsync of its directory came after it; the others persist as a
 *     prefix, in order (journalled metadata);
 *   - the index is written through a shared writable mapping, which cannot
 *     be intercepted: its content is snapshotted at every call, and at a
 *     crash each page may be any version between the last msync/fsync that
 *     covered it and the newest (page-granular mixes of old and new);
 *   - the machine rebooted: the index's boot id is not this boot's.
 *
 * A state's variants are bounded: all of the unsynced changes, none, each
 * prefix of the directory changes, each single write dropped or kept or
 * torn, index pages old/new/header-old/header-new, and random samples.
 * Identical disk images are verified once.  For each state: open it, and
 * the mailbox must hold exactly what was acknowledged (or that plus the one
 * call in flight, all of it), message bytes, flags, keywords and modseqs
 * unchanged; `check` must find it clean; no stray files may be left; and it
 * must take a new message that survives a reopen.  The number of states
 * explored is printed. */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "store/format.h"
#include "store/store.h"
#include "tests/unit/store_testutil.h"
#include "tests/unit/testutil.h"

/* ---- the record ----------------------------------------------------------- */

enum {
    OP_CREATE, OP_MKDIR, OP_RENAME, OP_UNLINK, OP_RMDIR,   /* directory */
    OP_WRITE, OP_TRUNC, OP_EXTEND,                         /* file data */
    OP_FSYNC, OP_DSYNC, OP_MSYNC,                          /* barriers */
};

struct op {
    int kind;
    int ino;                    /* data ops, FSYNC, MSYNC, CREATE */
    char *path, *path2;         /* relative to the root */
    uint64_t off, len;
    uint8_t *data;              /* OP_WRITE */
};

struct ver {                    /* a snapshot of a mapped file */
    size_t t;                   /* taken before op t ran */
    uint8_t *data;
    size_t len;
};

struct ino {
    bool mapped;                /* written through a shared mapping */
    int snapfd;                 /* ours, to snapshot it */
    uint8_t *init;              /* content when recording began */
    size_t init_len;
    struct ver *v;
    size_t nv;
};

struct name {                   /* a path of the recorded tree */
    char *path;
    int ino;                    /* -1 for a directory */
};

static struct {
    bool on;                    /* recording */
    char root[1024];
    size_t rootlen;
    struct op *ops;
    size_t nops, capops;
    struct ino *inos;
    size_t ninos;
    struct name *init_names;    /* the tree when recording began */
    size_t ninit;
    struct name *names;         /* the tree now */
    size_t nnames;
    int fd_ino[4096];           /* -1 untracked, -2 a directory */
    char *fd_dir[4096];
    struct { uintptr_t addr; size_t len; int ino; } maps[256];
    size_t nmaps;
} R;

static bool io_nosync = true;   /* syncs are modelled, never needed for real */

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        abort();
    return p;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort();
    return p;
}

static const char *rel(const char *path)
{
    if (!R.on || strncmp(path, R.root, R.rootlen) || path[R.rootlen] != '/')
        return NULL;
    return path + R.rootlen + 1;
}

static struct name *name_find(struct name *v, size_t n, const char *p)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i].path, p))
            return &v[i];
    return NULL;
}

static void names_set(struct name **v, size_t *n, const char *p, int ino)
{
    struct name *e = name_find(*v, *n, p);
    if (e) {
        e->ino = ino;
        return;
    }
    *v = realloc(*v, (*n + 1) * sizeof **v);
    if (!*v)
        abort();
    (*v)[(*n)++] = (struct name){xstrdup(p), ino};
}

static void names_del(struct name *v, size_t *n, const char *p)
{
    struct name *e = name_find(v, *n, p);
    if (!e)
        return;
    free(e->path);
    *e = v[--*n];
}

static int ino_new(void)
{
    R.inos = realloc(R.inos, (R.ninos + 1) * sizeof *R.inos);
    if (!R.inos)
        abort();
    R.inos[R.ninos] = (struct ino){.snapfd = -1};
    return (int)R.ninos++;
}

static size_t fd_read_all(int fd, uint8_t **out)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        abort();
    uint8_t *b = xmalloc((size_t)st.st_size);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        long r = syscall(SYS_pread64, fd, b + got, (size_t)st.st_size - got, (off_t)got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    *out = b;
    return got;
}

/* Before each recorded call: a new version of every mapped file that
 * changed through its mapping since the last one. */
static void snap_mapped(void)
{
    for (size_t i = 0; i < R.ninos; i++) {
        struct ino *in = &R.inos[i];
        if (!in->mapped || in->snapfd < 0)
            continue;
        uint8_t *b;
        size_t n = fd_read_all(in->snapfd, &b);
        struct ver *last = in->nv ? &in->v[in->nv - 1] : NULL;
        if (last && last->len == n && !memcmp(last->data, b, n)) {
            free(b);
            continue;
        }
        in->v = realloc(in->v, (in->nv + 1) * sizeof *in->v);
        if (!in->v)
            abort();
        in->v[in->nv++] = (struct ver){R.nops, b, n};
    }
}

static struct op *op_add(int kind)
{
    snap_mapped();
    if (R.nops == R.capops) {
        R.capops = R.capops ? R.capops * 2 : 256;
        R.ops = realloc(R.ops, R.capops * sizeof *R.ops);
        if (!R.ops)
            abort();
    }
    struct op *o = &R.ops[R.nops++];
    *o = (struct op){.kind = kind, .ino = -1};
    return o;
}

static int tracked(int fd)
{
    return R.on && fd >= 0 && fd < 4096 ? R.fd_ino[fd] : -1;
}

/* ---- the interposed calls ------------------------------------------------ */

int open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | __O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    const char *r = rel(path);
    struct name *e = r ? name_find(R.names, R.nnames, r) : NULL;
    bool existed = r && access(path, F_OK) == 0;
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
    if (fd < 0 || !r || fd >= 4096)
        return fd;
    if (flags & O_DIRECTORY) {
        R.fd_ino[fd] = -2;
        free(R.fd_dir[fd]);
        R.fd_dir[fd] = xstrdup(r);
        return fd;
    }
    int ino;
    if (!existed || !e) {
        ino = ino_new();
        struct op *o = op_add(OP_CREATE);
        o->path = xstrdup(r);
        o->ino = ino;
        names_set(&R.names, &R.nnames, r, ino);
    } else {
        ino = e->ino;
    }
    if ((flags & O_TRUNC) && existed) {
        struct op *o = op_add(OP_TRUNC);
        o->ino = ino;
        o->len = 0;
    }
    R.fd_ino[fd] = ino;
    return fd;
}

int close(int fd)
{
    if (fd >= 0 && fd < 4096) {
        R.fd_ino[fd] = -1;
        free(R.fd_dir[fd]);
        R.fd_dir[fd] = NULL;
    }
    return (int)syscall(SYS_close, fd);
}

static void rec_write(int ino, const void *buf, long n, uint64_t off)
{
    if (ino < 0 || n <= 0)
        return;
    struct op *o = op_add(OP_WRITE);
    o->ino = ino;
    o->off = off;
    o->len = (uint64_t)n;
    o->data = xmalloc((size_t)n);
    memcpy(o->data, buf, (size_t)n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    long r = syscall(SYS_pwrite64, fd, buf, n, off);
    rec_write(tracked(fd), buf, r, (uint64_t)off);
    return r;
}

ssize_t write(int fd, const void *buf, size_t n)
{
    int ino = tracked(fd);
    off_t off = ino >= 0 ? lseek(fd, 0, SEEK_CUR) : 0;
    long r = syscall(SYS_write, fd, buf, n);
    rec_write(ino, buf, r, (uint64_t)off);
    return r;
}

int ftruncate(int fd, off_t len)
{
    int r = (int)syscall(SYS_ftruncate, fd, len);
    int ino = tracked(fd);
    if (r == 0 && ino >= 0) {
        struct op *o = op_add(OP_TRUNC);
        o->ino = ino;
        o->len = (uint64_t)len;
    }
    return r;
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
    int r = (int)syscall(SYS_fallocate, fd, mode, off, len);
    int ino = tracked(fd);
    if (r == 0 && ino >= 0 && mode == 0) {
        struct op *o = op_add(OP_EXTEND);
        o->ino = ino;
        o->len = (uint64_t)(off + len);
    }
    return r;
}

int posix_fallocate(int fd, off_t off, off_t len)
{
    if (fallocate(fd, 0, off, len) == 0)
        return 0;
    if (errno != EOPNOTSUPP)
        return errno;
    /* glibc would write zeros; growing the file is the same to a reader */
    struct stat st;
    if (fstat(fd, &st) < 0)
        return errno;
    return st.st_size >= off + len || ftruncate(fd, off + len) == 0 ? 0 : errno;
}

static void rec_path(int kind, const char *path, const char *path2)
{
    const char *r = rel(path), *r2 = path2 ? rel(path2) : NULL;
    if (!r)
        return;
    struct op *o = op_add(kind);
    o->path = xstrdup(r);
    o->path2 = r2 ? xstrdup(r2) : NULL;
    struct name *e = name_find(R.names, R.nnames, r);
    switch (kind) {
    case OP_RENAME:
        if (e && r2) {
            int ino = e->ino;
            names_del(R.names, &R.nnames, r);
            names_set(&R.names, &R.nnames, r2, ino);
        }
        break;
    case OP_UNLINK: case OP_RMDIR:
        names_del(R.names, &R.nnames, r);
        break;
    case OP_MKDIR:
        names_set(&R.names, &R.nnames, r, -1);
        break;
    }
}

int rename(const char *from, const char *to)
{
    int r = (int)syscall(SYS_rename, from, to);
    if (r == 0)
        rec_path(OP_RENAME, from, to);
    return r;
}

int unlink(const char *path)
{
    int r = (int)syscall(SYS_unlink, path);
    if (r == 0)
        rec_path(OP_UNLINK, path, NULL);
    return r;
}

int unlinkat(int dfd, const char *name, int flags)
{
    char full[1024] = "";
    if (dfd != AT_FDCWD && name[0] != '/') {
        char link[64], dir[900];
        snprintf(link, sizeof link, "/proc/self/fd/%d", dfd);
        ssize_t n = readlink(link, dir, sizeof dir - 1);
        if (n > 0) {
            dir[n] = 0;
            snprintf(full, sizeof full, "%s/%s", dir, name);
        }
    } else {
        snprintf(full, sizeof full, "%s", name);
    }
    int r = (int)syscall(SYS_unlinkat, dfd, name, flags);
    if (r == 0 && full[0])
        rec_path(flags & AT_REMOVEDIR ? OP_RMDIR : OP_UNLINK, full, NULL);
    return r;
}

int mkdir(const char *path, mode_t mode)
{
    int r = (int)syscall(SYS_mkdir, path, mode);
    if (r == 0)
        rec_path(OP_MKDIR, path, NULL);
    return r;
}

int rmdir(const char *path)
{
    int r = (int)syscall(SYS_rmdir, path);
    if (r == 0)
        rec_path(OP_RMDIR, path, NULL);
    return r;
}

static int do_sync(int fd, long nr)
{
    int ino = tracked(fd);
    if (ino >= 0) {
        op_add(OP_FSYNC)->ino = ino;
    } else if (ino == -2) {
        op_add(OP_DSYNC)->path = xstrdup(R.fd_dir[fd]);
    }
    return io_nosync ? 0 : (int)syscall(nr, fd);
}

int fsync(int fd)
{
    return do_sync(fd, SYS_fsync);
}

int fdatasync(int fd)
{
    return do_sync(fd, SYS_fdatasync);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    void *p = (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
    int ino = tracked(fd);
    if (p != MAP_FAILED && ino >= 0 && (prot & PROT_WRITE) && (flags & MAP_SHARED) &&
        R.nmaps < 256) {
        struct ino *in = &R.inos[ino];
        if (!in->mapped) {
            in->mapped = true;
            in->snapfd = (int)syscall(SYS_dup, fd);
        }
        R.maps[R.nmaps].addr = (uintptr_t)p;
        R.maps[R.nmaps].len = len;
        R.maps[R.nmaps++].ino = ino;
    }
    return p;
}

int munmap(void *addr, size_t len)
{
    for (size_t i = R.nmaps; i-- > 0;)
        if (R.maps[i].addr == (uintptr_t)addr) {
            R.maps[i] = R.maps[--R.nmaps];
            break;
        }
    return (int)syscall(SYS_munmap, addr, len);
}

int msync(void *addr, size_t len, int flags)
{
    if (R.on && (flags & MS_SYNC)) {
        for (size_t i = R.nmaps; i-- > 0;) {
            uintptr_t a = (uintptr_t)addr;
            if (a >= R.maps[i].addr && a < R.maps[i].addr + R.maps[i].len) {
                struct op *o = op_add(OP_MSYNC);
                o->ino = R.maps[i].ino;
                o->off = a - R.maps[i].addr;
                o->len = len;
                break;
            }
        }
    }
    return io_nosync ? 0 : (int)syscall(SYS_msync, addr, len, flags);
}

/* ---- start and stop -------------------------------------------------------- */

static int scan_cb(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)f;
    const char *r = p + R.rootlen;
    if (!*r)
        return 0;
    r++;
    if (flag == FTW_D) {
        names_set(&R.init_names, &R.ninit, r, -1);
        return 0;
    }
    if (!S_ISREG(sb->st_mode))
        return 0;
    int ino = ino_new();
    int fd = (int)syscall(SYS_openat, AT_FDCWD, p, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        abort();
    R.inos[ino].init_len = fd_read_all(fd, &R.inos[ino].init);
    syscall(SYS_close, fd);
    names_set(&R.init_names, &R.ninit, r, ino);
    return 0;
}

/* Start recording under root; what is there now counts as on disk. */
static void rec_start(const char *root)
{
    memset(&R, 0, sizeof R);
    for (int i = 0; i < 4096; i++)
        R.fd_ino[i] = -1;
    snprintf(R.root, sizeof R.root, "%s", root);
    R.rootlen = strlen(R.root);
    nftw(root, scan_cb, 16, FTW_PHYS);
    for (size_t i = 0; i < R.ninit; i++)
        names_set(&R.names, &R.nnames, R.init_names[i].path, R.init_names[i].ino);
    R.on = true;
}

static void rec_stop(void)
{
    snap_mapped();
    R.on = false;
    for (size_t i = 0; i < R.ninos; i++)
        if (R.inos[i].snapfd >= 0) {
            syscall(SYS_close, R.inos[i].snapfd);
            R.inos[i].snapfd = -1;
        }
}

/* ---- building a crash state ------------------------------------------------- */

static bool is_dir_op(int k)
{
    return k <= OP_RMDIR;
}

static bool is_data_op(int k)
{
    return k >= OP_WRITE && k <= OP_EXTEND;
}

static const char *parent_of(const char *p, char *buf, size_t cap)
{
    const char *s = strrchr(p, '/');
    snprintf(buf, cap, "%.*s", s ? (int)(s - p) : 0, p);
    return buf;
}

/* Is op i (< k) surely on disk at a crash after k ops? */
static bool forced(size_t i, size_t k)
{
    const struct op *o = &R.ops[i];
    if (is_data_op(o->kind)) {
        for (size_t j = i + 1; j < k; j++)
            if ((R.ops[j].kind == OP_FSYNC || R.ops[j].kind == OP_MSYNC) &&
                R.ops[j].ino == o->ino)
                return true;
        return false;
    }
    if (is_dir_op(o->kind)) {
        char a[512], b[512];
        parent_of(o->path, a, sizeof a);
        if (o->path2)
            parent_of(o->path2, b, sizeof b);
        for (size_t j = i + 1; j < k; j++)
            if (R.ops[j].kind == OP_DSYNC &&
                (!strcmp(R.ops[j].path, a) || (o->path2 && !strcmp(R.ops[j].path, b))))
                return true;
        return false;
    }
    return true;
}

enum { PG_NEWEST, PG_OLDEST, PG_HDR_OLD, PG_HDR_NEW, PG_RANDOM };

struct choice {
    size_t k;                   /* crash after k ops */
    bool reboot;                /* power loss (else: the process died) */
    size_t dir_keep;            /* unsynced dir ops kept, as a prefix */
    uint8_t *keep;              /* per op: 0 dropped, 1 kept, 2 torn */
    int pages;                  /* PG_* */
    uint64_t seed;
};

struct img {                    /* one file of a built state */
    char *path;
    int ino;                    /* -1: a directory */
    uint8_t *data;
    size_t len;
};

static uint64_t xs(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    return *s = x ? x : 0x9E3779B97F4A7C15ull;
}

/* Version index of ino in effect just before op t. */
static size_t ver_at(const struct ino *in, size_t t)
{
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < in->nv; i++)
        if (in->v[i].t <= t)
            best = i;
    return best;
}

static void grow(struct img *f, size_t len)
{
    if (len <= f->len)
        return;
    f->data = realloc(f->data, len);
    if (!f->data)
        abort();
    memset(f->data + f->len, 0, len - f->len);
    f->len = len;
}

/* Build the state of a choice in memory: *out gets n images. */
static size_t build(const struct choice *c, struct img **out)
{
    size_t nimg = R.ninit, cap = R.ninit + 16;
    struct img *v = xmalloc(cap * sizeof *v);
    uint8_t **data = xmalloc(R.ninos * sizeof *data);
    size_t *len = xmalloc(R.ninos * sizeof *len);
    for (size_t i = 0; i < R.ninos; i++) {
        len[i] = R.inos[i].init_len;
        data[i] = xmalloc(len[i]);
        if (len[i])
            memcpy(data[i], R.inos[i].init, len[i]);
    }
    for (size_t i = 0; i < R.ninit; i++)
        v[i] = (struct img){xstrdup(R.init_names[i].path), R.init_names[i].ino, NULL, 0};
    size_t dir_seen = 0;
    for (size_t i = 0; i < c->k; i++) {
        const struct op *o = &R.ops[i];
        bool f = forced(i, c->k);
        int keep = 1;
        if (is_dir_op(o->kind) && !f)
            keep = dir_seen++ < c->dir_keep;
        else if (is_data_op(o->kind) && !f)
            keep = c->keep[i];
        if (!keep || !(is_dir_op(o->kind) || is_data_op(o->kind)))
            continue;
        if (is_data_op(o->kind)) {
            struct img t = {NULL, o->ino, data[o->ino], len[o->ino]};
            if (o->kind == OP_WRITE) {
                uint64_t n = o->len;
                if (keep == 2)
                    n = n > 512 ? (n / 2) & ~(uint64_t)511 : n / 2;
                grow(&t, o->off + n);
                memcpy(t.data + o->off, o->data, n);
            } else if (o->kind == OP_TRUNC) {
                if (o->len < t.len)
                    t.len = o->len;
                else
                    grow(&t, o->len);
            } else {
                grow(&t, o->len);
            }
            data[o->ino] = t.data;
            len[o->ino] = t.len;
            continue;
        }
        /* directory ops on the namespace */
        struct img *e = NULL;
        for (size_t j = 0; j < nimg; j++)
            if (!strcmp(v[j].path, o->path)) {
                e = &v[j];
                break;
            }
        switch (o->kind) {
        case OP_CREATE: case OP_MKDIR:
            if (e) {
                e->ino = o->kind == OP_CREATE ? o->ino : -1;
                break;
            }
            if (nimg == cap)
                v = realloc(v, (cap *= 2) * sizeof *v);
            if (!v)
                abort();
            v[nimg++] = (struct img){xstrdup(o->path), o->kind == OP_CREATE ? o->ino : -1,
                                     NULL, 0};
            break;
        case OP_UNLINK: case OP_RMDIR:
            if (e) {
                free(e->path);
                *e = v[--nimg];
            }
            break;
        case OP_RENAME:
            if (!e)
                break;
            for (size_t j = 0; j < nimg; j++)
                if (&v[j] != e && !strcmp(v[j].path, o->path2)) {
                    free(v[j].path);
                    v[j] = v[--nimg];
                    if (e == &v[nimg])
                        e = &v[j];
                    break;
                }
            free(e->path);
            e->path = xstrdup(o->path2);
            break;
        }
    }
    /* Content: data ops for ordinary files; page versions for mapped ones
     * (their size still comes from the truncates). */
    uint64_t seed = c->seed;
    for (size_t j = 0; j < nimg; j++) {
        struct img *f = &v[j];
        if (f->ino < 0)
            continue;
        const struct ino *in = &R.inos[f->ino];
        f->len = len[f->ino];
        f->data = xmalloc(f->len);
        if (!in->mapped || !in->nv) {
            memcpy(f->data, data[f->ino], f->len);
            continue;
        }
        size_t newest = ver_at(in, c->k);
        for (size_t pg = 0; pg * 4096 < f->len; pg++) {
            /* The oldest version this page may hold: the one in effect at
             * the last sync that covered it. */
            size_t floor_t = SIZE_MAX;
            for (size_t i = c->k; i-- > 0;) {
                const struct op *o = &R.ops[i];
                if (o->ino != f->ino)
                    continue;
                if (o->kind == OP_FSYNC ||
                    (o->kind == OP_MSYNC && pg * 4096 + 4096 > o->off &&
                     pg * 4096 < o->off + o->len)) {
                    floor_t = i;
                    break;
                }
            }
            size_t oldest = floor_t == SIZE_MAX ? 0 : ver_at(in, floor_t);
            if (oldest == SIZE_MAX)
                oldest = 0;
            size_t pick = newest;
            if (newest == SIZE_MAX) {
                pick = SIZE_MAX;
            } else {
                bool hdr = pg < IDX_HDR_SIZE / 4096;
                switch (c->pages) {
                case PG_OLDEST: pick = oldest; break;
                case PG_HDR_OLD: pick = hdr ? oldest : newest; break;
                case PG_HDR_NEW: pick = hdr ? newest : oldest; break;
                case PG_RANDOM: pick = oldest + xs(&seed) % (newest - oldest + 1); break;
                }
                if (floor_t == SIZE_MAX && c->pages != PG_NEWEST && c->pages != PG_HDR_NEW &&
                    xs(&seed) % 2 == 0)
                    pick = SIZE_MAX;    /* never synced: may be as it was */
            }
            size_t n = f->len - pg * 4096 < 4096 ? f->len - pg * 4096 : 4096;
            const uint8_t *src;
            size_t srclen;
            if (pick == SIZE_MAX) {
                src = data[f->ino];     /* before any write through the map */
                srclen = len[f->ino];
            } else {
                src = in->v[pick].data;
                srclen = in->v[pick].len;
            }
            for (size_t b = 0; b < n; b++) {
                size_t at = pg * 4096 + b;
                f->data[at] = at < srclen ? src[at] : 0;
            }
        }
    }
    for (size_t i = 0; i < R.ninos; i++)
        free(data[i]);
    free(data);
    free(len);
    *out = v;
    return nimg;
}

static int cmp_img(const void *a, const void *b)
{
    return strcmp(((const struct img *)a)->path, ((const struct img *)b)->path);
}

static uint64_t img_hash(struct img *v, size_t n, bool reboot)
{
    qsort(v, n, sizeof *v, cmp_img);
    uint64_t h = 1469598103934665603ull ^ reboot;
    for (size_t i = 0; i < n; i++) {
        for (const char *p = v[i].path; *p; p++)
            h = (h ^ (uint8_t)*p) * 1099511628211ull;
        h = (h ^ (v[i].ino < 0 ? 0xd1 : 0xf1)) * 1099511628211ull;
        h = (h ^ store_crc32c((uint32_t)i, v[i].data, v[i].len)) * 1099511628211ull;
        h = (h ^ v[i].len) * 1099511628211ull;
    }
    return h;
}

static void img_free(struct img *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].path);
        free(v[i].data);
    }
    free(v);
}

/* Write a built state under dir; with reboot, every index says it was
 * written in an earlier boot. */
static void materialize(const char *dir, struct img *v, size_t n, bool reboot)
{
    test_rm_rf(dir);
    mkdir(dir, 0700);
    char p[1400];
    /* sorted: a directory comes before what is in it */
    for (size_t i = 0; i < n; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, v[i].path);
        if (v[i].ino < 0) {
            mkdir(p, 0700);
            continue;
        }
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
            continue;   /* its directory did not survive: nor did it */
        uint8_t *d = v[i].data;
        size_t len = v[i].len;
        if (reboot && len >= sizeof(struct idx_hdr) && !memcmp(d, IDX_MAGIC, 8)) {
            d = xmalloc(len);
            memcpy(d, v[i].data, len);
            for (size_t b = 0; b < 16; b++)
                d[offsetof(struct idx_hdr, boot_id) + b] ^= 0x5a;
        }
        if (len && pwrite(fd, d, len, 0) != (ssize_t)len)
            abort();
        if (ftruncate(fd, (off_t)len) < 0)
            abort();
        if (d != v[i].data)
            free(d);
        close(fd);
    }
}

/* ---- the workload and what it acknowledged --------------------------------- */

static char *make_msg(unsigned id, size_t *len)
{
    size_t body = id >= 1000 ? 20 + id % 40 : 60 + (id * 97u) % 1400;
    char *b = xmalloc(256 + body + body / 50 * 2 + 4);
    int n = snprintf(b, 256, "From: x%u@example.com\r\nSubject: explore %u\r\n\r\n", id, id);
    size_t o = (size_t)n;
    for (size_t i = 0; i < body; i++) {
        b[o++] = (char)('a' + (id * 7 + i) % 26);
        if (i % 50 == 49) {
            b[o++] = '\r';
            b[o++] = '\n';
        }
    }
    b[o++] = '\r';
    b[o++] = '\n';
    *len = o;
    return b;
}

static int append_ids(store_mbox *mb, unsigned id, unsigned n)
{
    store_new_msg m[4];
    char *bufs[4];
    const char *kw[] = {"$Work"};
    for (unsigned i = 0; i < n; i++) {
        bufs[i] = make_msg(id + i, &m[i].len);
        m[i] = (store_new_msg){.data = bufs[i], .len = m[i].len,
                               .internal_date = 1700000000 + id + i,
                               .flags = (id + i) % 3 == 0 ? STORE_F_SEEN : 0,
                               .keywords = kw, .nkeywords = (id + i) % 4 == 1};
    }
    uint32_t uids[4];
    int r = store_append(mb, m, n, uids);
    for (unsigned i = 0; i < n; i++)
        free(bufs[i]);
    return r;
}

/* Every mailbox of the user (name, id, UIDVALIDITY and content).  Mailboxes
 * this process has open are the same objects (no second recovery). */
static char *describe_user(store_user *u)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    store_mailbox_info *v;
    size_t n;
    if (!f)
        abort();
    int rc = store_mailbox_list(u, &v, &n);
    if (rc < 0) {
        fprintf(f, "mailbox list: %s\n", strerror(-rc));
        n = 0;
    }
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "== %s id %" PRIu64 " uidvalidity %u\n", v[i].name, v[i].id,
                v[i].uidvalidity);
        store_mbox *mb;
        if ((rc = store_mbox_open(u, v[i].name, &mb)) < 0) {
            fprintf(f, "open: %s\n", strerror(-rc));
            continue;
        }
        char *d = test_describe_mbox(mb);
        fputs(d, f);
        free(d);
        store_mbox_close(mb);
    }
    if (rc >= 0 || n)
        store_mailbox_info_free(v, n);
    fclose(f);
    return out;
}

struct call {                   /* one store call of the workload */
    const char *what;
    size_t start, end;          /* ops it made: [start, end) */
    char *after;                /* the mailbox as acknowledged after it */
};

static struct call calls[64];
static size_t ncalls;
static char *initial;

static int flags_of(store_mbox *mb, uint32_t lo, uint32_t hi, store_flag_op op, uint32_t fl,
                    const char *kw)
{
    store_range r = {lo, hi};
    return store_flags(mb, &r, 1, op, fl, kw ? &kw : NULL, kw ? 1 : 0, 0, NULL, NULL, NULL);
}

static int expunge_of(store_mbox *mb, uint32_t lo, uint32_t hi)
{
    store_range r = {lo, hi};
    return store_expunge(mb, &r, 1, false, NULL, NULL);
}

static void call_begin(const char *what)
{
    if (ncalls == sizeof calls / sizeof calls[0])
        abort();
    calls[ncalls].what = what;
    calls[ncalls].start = R.nops;
}

static int neutral_changed;     /* calls that must change nothing, but did */

/* The call made so far is acknowledged: the mailboxes as it left them.
 * Opening, closing and compacting must leave them as they were: those are
 * not just crash points, the workload checks them itself. */
static void call_end(store_user *u)
{
    const char *what = calls[ncalls].what;
    calls[ncalls].end = R.nops;
    calls[ncalls].after = u ? describe_user(u) : xstrdup(calls[ncalls - 1].after);
    const char *before = ncalls ? calls[ncalls - 1].after : initial;
    if ((!strncmp(what, "compact", 7) || !strncmp(what, "close", 5) ||
         !strcmp(what, "open")) && strcmp(before, calls[ncalls].after)) {
        fprintf(stderr, "  '%s' changed what a client sees:\nbefore:\n%safter:\n%s", what,
                before, calls[ncalls].after);
        neutral_changed++;
    }
    ncalls++;
}

#define STEP(label, expr) do { \
        call_begin(label); \
        int rc_ = (expr); \
        if (rc_ < 0) { fprintf(stderr, "workload: %s: %s\n", label, strerror(-rc_)); return rc_; } \
        call_end(u); \
    } while (0)

/* Changes made while a compaction copies (its progress callback runs
 * between phase 1 and nothing locked): phase 2 must carry them over.  The
 * compaction is split into two calls around them, so that each change is
 * acknowledged when it returns. */
static struct {
    store_user *u;
    store_mbox *mb;
    bool done;
} during;

static void changes_during_compaction(void *arg, uint64_t done, uint64_t total)
{
    (void)arg;
    if (during.done || done == total)
        return;
    during.done = true;
    call_end(during.u);
    call_begin("flags +Answered 1:2 during compaction");
    if (flags_of(during.mb, 1, 2, STORE_FLAGS_ADD, STORE_F_ANSWERED, "$Mid") < 0)
        abort();
    call_end(during.u);
    call_begin("expunge 3 during compaction");
    if (expunge_of(during.mb, 3, 3) < 0)
        abort();
    call_end(during.u);
    call_begin("append 1 during compaction");
    if (append_ids(during.mb, 160, 1) < 0)
        abort();
    call_end(during.u);
    call_begin("compact, phase 2");
}

static int append_to(store_user *u, const char *name, unsigned id, unsigned n)
{
    store_mbox *mb;
    int rc = store_mbox_open(u, name, &mb);
    if (rc < 0)
        return rc;
    rc = append_ids(mb, id, n);
    store_mbox_close(mb);
    return rc;
}

static int reopen(const char *root, store_user **u, store_mbox **mb)
{
    store_mbox_close(*mb);
    store_user_close(*u);
    *mb = NULL;
    *u = NULL;
    return test_inbox_open(root, "x", STORE_FSYNC_ALWAYS, u, mb);
}

/* The recorded workload.  The mailbox starts with 72 messages (on disk). */
static int workload(const char *root)
{
    store_user *u = NULL;
    store_mbox *mb = NULL;
    ncalls = 0;
    STEP("open", test_inbox_open(root, "x", STORE_FSYNC_ALWAYS, &u, &mb));
    STEP("append 1", append_ids(mb, 100, 1));
    STEP("flags +Seen 2:3", flags_of(mb, 2, 3, STORE_FLAGS_ADD, STORE_F_SEEN, NULL));
    STEP("append 3 at once", append_ids(mb, 110, 3));
    STEP("expunge 4", expunge_of(mb, 4, 4));
    STEP("close+open (checkpoint)", reopen(root, &u, &mb));
    STEP("flags +Flagged $Later 1:2 (first change after a checkpoint)",
         flags_of(mb, 1, 2, STORE_FLAGS_ADD, STORE_F_FLAGGED, "$Later"));
    STEP("expunge 5", expunge_of(mb, 5, 5));
    STEP("append 1", append_ids(mb, 120, 1));
    during.u = u;
    during.mb = mb;
    during.done = false;
    STEP("compact, phase 1", store_compact(mb, changes_during_compaction, NULL));
    if (!during.done)
        return -EPROTO;     /* the progress callback was not called */
    STEP("flags -Seen 1:3", flags_of(mb, 1, 3, STORE_FLAGS_REMOVE, STORE_F_SEEN, NULL));
    STEP("append 2", append_ids(mb, 130, 2));
    STEP("expunge 7", expunge_of(mb, 7, 7));
    STEP("create Box", store_mailbox_create(u, "Box", 0));
    STEP("append 2 to Box", append_to(u, "Box", 150, 2));
    STEP("create Other", store_mailbox_create(u, "Other", 0));
    STEP("delete Box", store_mailbox_delete(u, "Box"));
    STEP("close+open (checkpoint)", reopen(root, &u, &mb));
    STEP("flags =Deleted 8", flags_of(mb, 8, 8, STORE_FLAGS_SET, STORE_F_DELETED, NULL));
    STEP("compact", store_compact(mb, NULL, NULL));
    STEP("append 1", append_ids(mb, 140, 1));
    store_mbox_close(mb);
    store_user_close(u);
    mb = NULL;
    u = NULL;
    STEP("close", 0);
    return 0;
}

/* ---- verifying a state ------------------------------------------------------- */

static int shown;

/* Names in dir that do not belong to one healthy generation. */
static int strays(const char *dir, char *out, size_t cap)
{
    DIR *d = opendir(dir);
    int n = 0, nlog = 0, ncache = 0;
    out[0] = 0;
    if (!d)
        return -1;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *nm = de->d_name;
        char *end;
        if (!strcmp(nm, ".") || !strcmp(nm, "..") || !strcmp(nm, "lock") ||
            !strcmp(nm, "compact.lock") || !strcmp(nm, "index"))
            continue;
        if (!strncmp(nm, "log.", 4) && strtoull(nm + 4, &end, 10) && !*end && !nlog++)
            continue;
        if (!strncmp(nm, "cache.", 6) && strtoull(nm + 6, &end, 10) && !*end && !ncache++)
            continue;
        size_t l = strlen(out);
        snprintf(out + l, cap - l, "%s%s", l ? " " : "", nm);
        n++;
    }
    closedir(d);
    return n;
}

/* Returns NULL if the state is good, else what is wrong (static). */
static const char *verify(const char *dir, size_t k, char **detail)
{
    static char why[512];
    *detail = NULL;
    /* Acknowledged: every call that ended by op k.  In flight: the next. */
    size_t a = 0;
    while (a < ncalls && calls[a].end <= k)
        a++;
    const char *want_a = a ? calls[a - 1].after : initial;
    const char *want_b = a < ncalls && calls[a].start < k ? calls[a].after : want_a;
    store_user *u = NULL;
    store_mbox *mb = NULL;
    const char *bad = NULL;
    char *got = NULL, *more = NULL, *again = NULL;
    int rc = test_inbox_open(dir, "x", STORE_FSYNC_ALWAYS, &u, &mb);
    if (rc < 0) {
        snprintf(why, sizeof why, "open failed: %s", strerror(-rc));
        return why;
    }
    /* A DELETE or CREATE cut short leaves a directory the list does not
     * name: check --repair reclaims it, and nothing else changes. */
    uint64_t *ids = NULL;
    size_t norphans = 0;
    rc = store_user_orphans(u, false, &ids, &norphans);
    free(ids);
    if (rc < 0 || (norphans && store_user_orphans(u, true, NULL, NULL) != (int)norphans) ||
        store_user_orphans(u, false, NULL, NULL) != 0) {
        snprintf(why, sizeof why, "orphan mailbox directories not reclaimed cleanly");
        bad = why;
        goto out;
    }
    got = describe_user(u);
    if (strcmp(got, want_a) && strcmp(got, want_b)) {
        snprintf(why, sizeof why, "content differs from what was acknowledged "
                 "(after '%s'%s%s%s)", a ? calls[a - 1].what : "start",
                 want_b != want_a ? " or after '" : "",
                 want_b != want_a ? calls[a].what : "", want_b != want_a ? "'" : "");
        if (asprintf(detail, "want:\n%s%s%sgot:\n%s", want_a,
                     want_b != want_a ? "or:\n" : "", want_b != want_a ? want_b : "",
                     got) < 0)
            *detail = NULL;
        bad = why;
        goto out;
    }
    store_mailbox_info *v;
    size_t n;
    if ((rc = store_mailbox_list(u, &v, &n)) < 0) {
        snprintf(why, sizeof why, "mailbox list: %s", strerror(-rc));
        bad = why;
        goto out;
    }
    for (size_t i = 0; i < n && !bad; i++) {
        store_mbox *m;
        store_check_report rep;
        if ((rc = store_mbox_open(u, v[i].name, &m)) < 0) {
            snprintf(why, sizeof why, "%s: open: %s", v[i].name, strerror(-rc));
            bad = why;
            break;
        }
        rc = store_check(m, false, &rep, NULL, NULL);
        char s[400];
        if (rc != 0) {
            snprintf(why, sizeof why, "%s: check: %s (bad %" PRIu64 " torn %" PRIu64
                     " index %" PRIu64 " cache %" PRIu64 ")", v[i].name, strerror(-rc),
                     rep.bad_records, rep.torn_bytes, rep.index_mismatches,
                     rep.cache_errors);
            bad = why;
        } else if (strays(store_mbox_dir(m), s, sizeof s) != 0) {
            snprintf(why, sizeof why, "%s: left behind: %s", v[i].name, s);
            bad = why;
        }
        store_mbox_close(m);
    }
    store_mailbox_info_free(v, n);
    if (bad)
        goto out;
    /* It goes on working: a new message survives a reopen. */
    if ((rc = append_ids(mb, 900, 1)) < 0) {
        snprintf(why, sizeof why, "append after recovery: %s", strerror(-rc));
        bad = why;
        goto out;
    }
    more = describe_user(u);
    store_mbox_close(mb);
    store_user_close(u);
    mb = NULL;
    u = NULL;
    if ((rc = test_inbox_open(dir, "x", STORE_FSYNC_ALWAYS, &u, &mb)) < 0) {
        snprintf(why, sizeof why, "reopen after append: %s", strerror(-rc));
        bad = why;
        goto out;
    }
    again = describe_user(u);
    store_check_report rep;
    if (strcmp(more, again)) {
        snprintf(why, sizeof why, "appended after recovery, then lost or changed by a reopen");
        if (asprintf(detail, "want:\n%sgot:\n%s", more, again) < 0)
            *detail = NULL;
        bad = why;
    } else if (store_check(mb, false, &rep, NULL, NULL) != 0) {
        snprintf(why, sizeof why, "check after append and reopen");
        bad = why;
    }
out:
    free(got);
    free(more);
    free(again);
    if (mb)
        store_mbox_close(mb);
    if (u)
        store_user_close(u);
    return bad;
}

/* ---- the exploration --------------------------------------------------------- */

static uint64_t *seen;
static size_t seen_cap, seen_n;

static bool seen_add(uint64_t h)
{
    if (seen_n * 2 >= seen_cap) {
        size_t oc = seen_cap;
        uint64_t *old = seen;
        seen_cap = oc ? oc * 2 : 4096;
        seen = calloc(seen_cap, sizeof *seen);
        if (!seen)
            abort();
        seen_n = 0;
        for (size_t i = 0; i < oc; i++)
            if (old[i])
                seen_add(old[i]);
        free(old);
    }
    h |= 1;
    for (size_t i = h % seen_cap;; i = (i + 1) % seen_cap) {
        if (seen[i] == h)
            return false;
        if (!seen[i]) {
            seen[i] = h;
            seen_n++;
            return true;
        }
    }
}

static struct {
    size_t states, variants, failures;
    size_t reboot_states, kill_states;
} stats;

static void try_state(const char *dir, struct choice *c, const char *label)
{
    struct img *v;
    size_t n = build(c, &v);
    uint64_t h = img_hash(v, n, c->reboot);
    stats.variants++;
    if (!seen_add(h)) {
        img_free(v, n);
        return;
    }
    materialize(dir, v, n, c->reboot);
    img_free(v, n);
    stats.states++;
    if (c->reboot)
        stats.reboot_states++;
    else
        stats.kill_states++;
    char *detail;
    const char *bad = verify(dir, c->k, &detail);
    if (bad) {
        stats.failures++;
        if (shown++ < 6) {
            static const char *const kname[] = {"create", "mkdir", "rename", "unlink",
                "rmdir", "write", "truncate", "extend", "fsync", "fsync dir", "msync"};
            const struct op *o = c->k ? &R.ops[c->k - 1] : NULL;
            const char *p = o ? o->path : NULL;
            for (size_t i = 0; o && !p && i < R.nnames; i++)
                if (R.names[i].ino == o->ino)
                    p = R.names[i].path;
            for (size_t i = 0; o && !p && i < R.ninit; i++)
                if (R.init_names[i].ino == o->ino)
                    p = R.init_names[i].path;
            fprintf(stderr, "  crash after op %zu (%s %s%s%s), %s, %s: %s\n", c->k,
                    o ? kname[o->kind] : "start", p ? p : "", o && o->path2 ? " -> " : "",
                    o && o->path2 ? o->path2 : "", c->reboot ? "power loss" : "process killed",
                    label, bad);
            if (detail)
                fprintf(stderr, "%s", detail);
        }
    }
    free(detail);
}

static void explore_point(const char *dir, size_t k, uint64_t *rng, bool quick)
{
    struct choice c = {.k = k, .keep = xmalloc(k ? k : 1)};
    size_t ndir = 0, ndata = 0;
    size_t *data_ops = xmalloc((k ? k : 1) * sizeof *data_ops);
    for (size_t i = 0; i < k; i++) {
        if (forced(i, k))
            continue;
        if (is_dir_op(R.ops[i].kind))
            ndir++;
        else if (is_data_op(R.ops[i].kind))
            data_ops[ndata++] = i;
    }
    /* The process died: everything issued is there. */
    memset(c.keep, 1, k);
    c.dir_keep = ndir;
    c.pages = PG_NEWEST;
    try_state(dir, &c, "all issued");

    /* Power loss. */
    c.reboot = true;
    static const char *const pname[] = {"index pages newest", "index pages oldest",
                                        "index header old, entries new",
                                        "index header new, entries old", "index pages mixed"};
    for (int all = 1; all >= 0; all--) {
        memset(c.keep, all, k);
        c.dir_keep = all ? ndir : 0;
        for (int pg = PG_NEWEST; pg <= PG_RANDOM; pg++) {
            c.pages = pg;
            c.seed = xs(rng);
            char label[96];
            snprintf(label, sizeof label, "%s unsynced changes, %s", all ? "all" : "no",
                     pname[pg]);
            try_state(dir, &c, label);
        }
    }
    /* Each prefix of the unsynced directory changes. */
    memset(c.keep, 1, k);
    for (size_t d = 0; d < ndir; d++) {
        c.dir_keep = d;
        c.pages = PG_NEWEST;
        try_state(dir, &c, "a prefix of the directory changes");
        c.pages = PG_HDR_OLD;
        try_state(dir, &c, "a prefix of the directory changes, index header old");
    }
    c.dir_keep = ndir;
    /* Each unsynced write dropped, kept alone, or torn. */
    size_t lim = quick ? 6 : 24;
    for (size_t j = ndata > lim ? ndata - lim : 0; j < ndata; j++) {
        size_t i = data_ops[j];
        memset(c.keep, 1, k);
        c.keep[i] = 0;
        c.pages = PG_NEWEST;
        try_state(dir, &c, "one unsynced write lost");
        memset(c.keep, 0, k);
        c.keep[i] = 1;
        c.pages = PG_HDR_OLD;
        try_state(dir, &c, "only one unsynced write kept");
        if (R.ops[i].kind == OP_WRITE && R.ops[i].len > 16) {
            memset(c.keep, 1, k);
            c.keep[i] = 2;
            c.pages = PG_NEWEST;
            try_state(dir, &c, "one write torn");
        }
    }
    /* Random samples of everything at once. */
    int nrand = quick ? 3 : 12;
    for (int r = 0; r < nrand; r++) {
        for (size_t i = 0; i < k; i++)
            c.keep[i] = (uint8_t)(xs(rng) % 5 == 0 ? 2 : xs(rng) % 2);
        c.dir_keep = ndir ? xs(rng) % (ndir + 1) : 0;
        c.pages = (int)(xs(rng) % 5);
        c.seed = xs(rng);
        try_state(dir, &c, "random sample");
    }
    free(c.keep);
    free(data_ops);
}

static void test_explore(void)
{
    char *base = xstrdup(test_tmpdir("explore"));
    char root[700], state[700];
    snprintf(root, sizeof root, "%s/rec", base);
    snprintf(state, sizeof state, "%s/state", base);
    mkdir(root, 0700);
    /* The starting point, on disk before recording: 72 small messages,
     * so that the index entries span two pages and a page of old entries
     * can be stale while the page of new ones is not. */
    store_user *u;
    store_mbox *mb;
    REQUIRE_OK(test_inbox_open(root, "x", STORE_FSYNC_ALWAYS, &u, &mb));
    for (unsigned i = 0; i < 72; i += 4)
        REQUIRE_OK(append_ids(mb, 1000 + i, 4));
    initial = describe_user(u);
    store_mbox_close(mb);
    store_user_close(u);

    rec_start(root);
    int rc = workload(root);
    rec_stop();
    REQUIRE_OK(rc);
    CHECK_EQ(neutral_changed, 0);
    size_t nsync = 0, nmapped = 0;
    for (size_t i = 0; i < R.nops; i++)
        nsync += R.ops[i].kind >= OP_FSYNC;
    for (size_t i = 0; i < R.ninos; i++)
        nmapped += R.inos[i].nv;
    fprintf(stderr, "  recorded %zu calls of the store: %zu file-system operations, "
            "%zu of them syncs, %zu index snapshots\n", ncalls, R.nops, nsync, nmapped);
    REQUIRE(R.nops > 50 && nsync > 10 && nmapped > 5);

    bool quick = test_quick();
    uint64_t rng = 0x853c49e6748fea9bull;
    for (size_t k = 0; k <= R.nops; k++)
        explore_point(state, k, &rng, quick);
    fprintf(stderr, "  crash states explored: %zu distinct (%zu after a power loss, "
            "%zu after the process was killed) of %zu built; %zu bad\n", stats.states,
            stats.reboot_states, stats.kill_states, stats.variants, stats.failures);
    printf("crash states explored: %zu\n", stats.states);
    CHECK_EQ(stats.failures, 0);
    CHECK(stats.states > R.nops);
    test_rm_rf(base);
    free(base);
}

int main(void)
{
    RUN(test_explore);
    return test_summary();
}
