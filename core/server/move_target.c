/* core/server/move_target.c — receiving a user moved from another backend
 * (listen_move; the sending end is tools/admin_move.c).
 *
 * Why files and not IMAP: a user's store is its logs (docs/store-format.md),
 * which hold UIDVALIDITY, UIDs, flags, modseqs, EMAILIDs and save dates
 * exactly; shipping them keeps all of it by construction, and a log is
 * append-only, so a catch-up moves only what was appended since the last
 * round.  The index and caches are derived: the index is sent whole in the
 * final round (the store checks it at open and rebuilds it from the log if
 * it cannot trust it), a cache is append-only like a log, the search
 * index is left behind (rebuilt on the first body search).
 *
 * One thread of its own with poll deadlines, as metrics_http.c, serving
 * one connection at a time: moves are rare, an operator runs them, and a
 * stuck peer costs nothing but this thread (IDLE_TIMEOUT_MS per read).
 * Only addresses in trusted_networks may connect, and the first line must
 * carry move_secret.
 *
 * The protocol: lines end with LF; a request is one line, some followed by
 * exactly <len> raw bytes; every answer ends with a line "OK ..." or
 * "ERR reason" (after ERR to HELLO or USER the connection is closed).
 * Paths are relative to the user's directory: at most three components
 * of [A-Za-z0-9._-], none "." or "..", none starting with '.'.
 *
 *   HELLO 1 <secret>         -> OK <imap-host> <imap-port>: the address to
 *                               write into the directory for this backend
 *   USER <name>              -> OK new | OK resume (a staging directory
 *                               <mail_root>/<name>.moving of an earlier
 *                               attempt is kept and resumed); ERR if
 *                               <mail_root>/<name> exists
 *   LIST                     -> "F <size> <crc> <path>" per file held,
 *                               crc = CRC32C (hex) of its last
 *                               min(size, 64 KiB) bytes; then OK
 *   WRITE <path> <off> <len> + bytes: append at off, which must be the
 *                               file's size (a log or cache catching up)
 *   PUT <path> <len>         + bytes: the whole file, replaced by rename
 *   COMMIT <n> <k>           + n lines "<size> <path>": the source's whole
 *                               list, and k lines "M <uidvalidity> <uidnext>
 *                               <highestmodseq> <messages> <name>": its
 *                               mailboxes.  Files not in the list are
 *                               removed, sizes checked, everything fsynced,
 *                               every mailbox opened through the store
 *                               (derived files that do not match are
 *                               rebuilt there) and its numbers compared
 *                               with the source's; only if all agree is the
 *                               staging directory renamed to the user's
 *                               (the commit point).  OK committed.
 *   SYNC                     -> fsync every file held, OK: sent after each
 *                               round before the freeze, so that COMMIT's
 *                               fsync (while the user is frozen) flushes
 *                               only the last round's bytes
 *   QUIT                     -> OK, closed
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/auth/abuse.h"
#include "core/base/log.h"
#include "core/server/move_target.h"
#include "core/server/sidelisten.h"
#include "store/store.h"

#define LINE_MAX_ 4096
#define IDLE_TIMEOUT_MS 60000
#define TAIL_CRC 65536u
#define MAX_MANIFEST 4000000u
#define BUF_SIZE (256 * 1024)

struct move_target {
    sidelisten l;
    char *secret;
    imap_server *srv;
};

/* One connection. */
struct conn {
    move_target *m;
    int fd;
    char peer[64];
    char *buf;                  /* BUF_SIZE: received, [pos, len) unread */
    size_t pos, len;
    bool authed;
    char user[256];
    char stage[2048];           /* <mail_root>/<user>.moving */
    int stage_fd;               /* flock()ed: one transfer per user at a time */
};

/* ---- binding ---------------------------------------------------------------- */

int move_target_bind(const char *spec, const char *secret, move_target **out, char *err,
                     size_t errlen)
{
    if (!secret || !*secret) {
        snprintf(err, errlen, "listen_move = %s needs move_secret", spec);
        return -EINVAL;
    }
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = sidelisten_parse("listen_move", spec, &ss, &len, err, errlen);
    if (rc < 0)
        return rc;
    move_target *m = calloc(1, sizeof *m);
    if (!m || !(m->secret = strdup(secret))) {
        free(m);
        return -ENOMEM;
    }
    /* every server process of a supervisor binds it; the state of a
     * transfer is in the staging directory, so any process serves a
     * reconnection */
    rc = sidelisten_bind(&m->l, &ss, len, 8);
    if (rc < 0) {
        snprintf(err, errlen, "listen_move = %s: %s", spec, strerror(-rc));
        free(m->secret);
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int move_target_port(const move_target *m)
{
    return m->l.port;
}

/* ---- connection I/O ------------------------------------------------------------ */

/* 1 ready, 0 timeout (IDLE_TIMEOUT_MS) or stopping. */
static int wait_for(struct conn *c, short events)
{
    return sidelisten_wait(&c->m->l, c->fd, events, sidelisten_now_ms() + IDLE_TIMEOUT_MS);
}

static int fill(struct conn *c)
{
    if (c->pos == c->len)
        c->pos = c->len = 0;
    if (c->pos > 0 && c->len == BUF_SIZE) {
        memmove(c->buf, c->buf + c->pos, c->len - c->pos);
        c->len -= c->pos;
        c->pos = 0;
    }
    for (;;) {
        ssize_t r = recv(c->fd, c->buf + c->len, BUF_SIZE - c->len, MSG_DONTWAIT);
        if (r > 0) {
            c->len += (size_t)r;
            return 0;
        }
        if (r == 0)
            return -EPIPE;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        if (wait_for(c, POLLIN) <= 0)
            return -ETIMEDOUT;
    }
}

/* The next line, NUL-terminated in place (valid until the next read). */
static int read_line(struct conn *c, char **out)
{
    for (;;) {
        char *nl = memchr(c->buf + c->pos, '\n', c->len - c->pos);
        if (nl) {
            *nl = '\0';
            *out = c->buf + c->pos;
            c->pos = (size_t)(nl - c->buf) + 1;
            return 0;
        }
        if (c->len - c->pos >= LINE_MAX_)
            return -E2BIG;
        int rc = fill(c);
        if (rc < 0)
            return rc;
    }
}

static int send_all(struct conn *c, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_for(c, POLLOUT) <= 0)
                return -ETIMEDOUT;
        } else {
            return -EPIPE;
        }
    }
    return 0;
}

static int say(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int say(struct conn *c, const char *fmt, ...)
{
    char line[LINE_MAX_ + 64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    return send_all(c, line, (size_t)n);
}

/* Take len bytes off the connection into fd at off (fd < 0: discard). */
static int take_bytes(struct conn *c, int fd, uint64_t off, uint64_t len)
{
    int werr = 0;
    while (len) {
        if (c->pos == c->len) {
            int rc = fill(c);
            if (rc < 0)
                return rc;
        }
        size_t k = c->len - c->pos;
        if (k > len)
            k = (size_t)len;
        if (fd >= 0 && !werr) {
            const char *p = c->buf + c->pos;
            size_t left = k;
            uint64_t at = off;
            while (left) {
                ssize_t w = pwrite(fd, p, left, (off_t)at);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0) {
                    werr = w < 0 ? -errno : -EIO;
                    break;
                }
                p += w;
                left -= (size_t)w;
                at += (uint64_t)w;
            }
        }
        c->pos += k;
        off += k;
        len -= k;
    }
    return werr;
}

/* a + sep + b into out (cap bytes); -ENAMETOOLONG if it does not fit.
 * (Not snprintf: the compiler cannot see that the lengths were checked.) */
static int join(char *out, size_t cap, const char *a, const char *sep, const char *b)
{
    size_t la = strlen(a), ls = strlen(sep), lb = strlen(b);
    if (la + ls + lb + 1 > cap)
        return -ENAMETOOLONG;
    memcpy(out, a, la);
    memcpy(out + la, sep, ls);
    memcpy(out + la + ls, b, lb + 1);
    return 0;
}

static int path_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- paths ---------------------------------------------------------------------- */

static bool path_ok(const char *p)
{
    if (!*p || strlen(p) > 200)
        return false;
    int parts = 0;
    const char *s = p;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0 || s[0] == '.' || ++parts > 3)
            return false;
        for (size_t i = 0; i < n; i++) {
            char ch = s[i];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
                return false;
        }
        s += n;
        if (*s == '/')
            s++;
        else
            break;
    }
    /* our own temporary name */
    size_t l = strlen(p);
    return !(l > 5 && !strcmp(p + l - 5, ".part"));
}

/* Make the directories above path (relative to the staging directory). */
static int make_parents(struct conn *c, const char *rel)
{
    char p[PATH_MAX + 2048];
    snprintf(p, sizeof p, "%s/%s", c->stage, rel);
    for (char *s = p + strlen(c->stage) + 1; (s = strchr(s, '/')); s++) {
        *s = '\0';
        if (mkdir(p, 0700) < 0 && errno != EEXIST)
            return -errno;
        *s = '/';
    }
    return 0;
}

static uint32_t tail_crc(int fd, uint64_t size)
{
    uint64_t k = size < TAIL_CRC ? size : TAIL_CRC;
    char *b = malloc(k ? k : 1);
    uint32_t crc = 0;
    if (b && pread(fd, b, k, (off_t)(size - k)) == (ssize_t)k)
        crc = store_crc32c(0, b, k);
    free(b);
    return crc;
}

/* ---- walking the staging directory ------------------------------------------------ */

typedef int (*walk_fn)(struct conn *c, const char *rel, const struct stat *st, void *arg);

static int walk(struct conn *c, const char *rel, int depth, walk_fn fn, void *arg)
{
    char dir[PATH_MAX + 2048];
    snprintf(dir, sizeof dir, "%s%s%s", c->stage, *rel ? "/" : "", rel);
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char r[1024];
        if (strlen(rel) + strlen(e->d_name) + 2 > sizeof r)
            continue;
        join(r, sizeof r, rel, *rel ? "/" : "", e->d_name);
        char full[PATH_MAX + 2048];
        snprintf(full, sizeof full, "%s/%s", c->stage, r);
        struct stat st;
        if (lstat(full, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode) && depth < 3)
            rc = walk(c, r, depth + 1, fn, arg);
        if (rc == 0)
            rc = fn(c, r, &st, arg);
    }
    closedir(d);
    return rc;
}

static int list_one(struct conn *c, const char *rel, const struct stat *st, void *arg)
{
    (void)arg;
    if (!S_ISREG(st->st_mode) || !path_ok(rel))
        return 0;
    char full[PATH_MAX + 2048];
    snprintf(full, sizeof full, "%s/%s", c->stage, rel);
    int fd = open(full, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    uint32_t crc = tail_crc(fd, (uint64_t)st->st_size);
    close(fd);
    return say(c, "F %" PRIu64 " %08x %s", (uint64_t)st->st_size, crc, rel);
}

/* ---- commands ------------------------------------------------------------------------- */

static bool secret_eq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = (unsigned char)(la != lb);
    for (size_t i = 0; i < la; i++)
        d |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return d == 0;
}

/* The address the directory should name for this backend's IMAP: the
 * first `listen` address, or where it is a wildcard, the local address
 * the source reached us on, with the listen port. */
static void imap_address(struct conn *c, char *host, size_t hl, unsigned *port)
{
    const char *l = config_get(c->m->srv->cfg, "listen");
    char first[128] = "";
    size_t n = strcspn(l, ", \t");
    if (n < sizeof first) {
        memcpy(first, l, n);
        first[n] = '\0';
    }
    char *colon = strrchr(first, ':');
    *port = colon ? (unsigned)strtoul(colon + 1, NULL, 10) : 143;
    if (colon)
        *colon = '\0';
    char *h = first;
    if (*h == '[') {
        h++;
        char *e = strchr(h, ']');
        if (e)
            *e = '\0';
    }
    if (*h && strcmp(h, "0.0.0.0") && strcmp(h, "::") && strcmp(h, "*")) {
        snprintf(host, hl, "%s", h);
        return;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    host[0] = '\0';
    if (getsockname(c->fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, (socklen_t)hl);
        else
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, (socklen_t)hl);
    }
}

static int cmd_user(struct conn *c, const char *name)
{
    /* A store user name (a single path component; an address under
     * lmtp_user_domain = keep), and one word of this protocol. */
    bool ok = *name && name[0] != '.' && strlen(name) <= 200;
    for (const char *p = name; ok && *p; p++)
        ok = (unsigned char)*p > ' ' && *p != 0x7f && *p != '/';
    if (!ok)
        return say(c, "ERR bad user name");
    const char *root = c->m->srv->mail_root;
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", root, name);
    struct stat st;
    if (stat(p, &st) == 0) {
        log_msg(LOGL_WARN, 0, name, "move: refused from %s: the user exists here", c->peer);
        return say(c, "ERR the user exists on this backend");
    }
    snprintf(c->stage, sizeof c->stage, "%s/%s.moving", root, name);
    bool resume = stat(c->stage, &st) == 0;
    if (!resume && mkdir(c->stage, 0700) < 0 && errno != EEXIST)
        return say(c, "ERR cannot create %s: %s", c->stage, strerror(errno));
    c->stage_fd = open(c->stage, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (c->stage_fd < 0 || flock(c->stage_fd, LOCK_EX | LOCK_NB) < 0) {
        if (c->stage_fd >= 0)
            close(c->stage_fd);
        c->stage_fd = -1;
        return say(c, "ERR another move of this user is running");
    }
    snprintf(c->user, sizeof c->user, "%s", name);
    log_msg(LOGL_INFO, 0, name, "move: receiving from %s (%s)", c->peer,
            resume ? "resuming" : "new");
    return say(c, "OK %s", resume ? "resume" : "new");
}

static int cmd_write(struct conn *c, char *args, bool whole)
{
    char path[256];
    uint64_t off = 0, len = 0;
    int n = whole ? sscanf(args, "%255s %" SCNu64, path, &len)
                  : sscanf(args, "%255s %" SCNu64 " %" SCNu64, path, &off, &len);
    if (n != (whole ? 2 : 3) || !c->user[0])
        return -EPROTO;         /* the length is unknown: cannot go on */
    char full[PATH_MAX + 2048], tmp[PATH_MAX + 2100];
    snprintf(full, sizeof full, "%s/%s", c->stage, path);
    join(tmp, sizeof tmp, full, "", ".part");
    int fd = -1, err = 0;
    if (!path_ok(path))
        err = -EINVAL;
    else if ((err = make_parents(c, path)) == 0) {
        fd = whole ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)
                   : open(full, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        struct stat st;
        if (fd < 0)
            err = -errno;
        else if (!whole && (fstat(fd, &st) < 0 || (uint64_t)st.st_size != off))
            err = -ESPIPE;      /* not at the end: the source sends it whole */
    }
    int rc = take_bytes(c, err ? -1 : fd, off, len);
    if (rc == -EPIPE || rc == -ETIMEDOUT || rc == -ECONNRESET) {
        if (fd >= 0)
            close(fd);
        return rc;
    }
    if (!err)
        err = rc;
    if (fd >= 0) {
        if (!err && whole && (ftruncate(fd, (off_t)len) < 0 || rename(tmp, full) < 0))
            err = -errno;
        close(fd);
        if (err && whole)
            unlink(tmp);
    }
    if (err)
        return say(c, "ERR %s: %s", path, strerror(-err));
    return say(c, "OK");
}

struct manifest {
    char **paths;               /* sorted */
    uint64_t *sizes;
    size_t n;
};


static bool in_manifest(const struct manifest *mf, const char *rel, size_t *at)
{
    size_t lo = 0, hi = mf->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int k = strcmp(mf->paths[mid], rel);
        if (k == 0) {
            if (at)
                *at = mid;
            return true;
        }
        if (k < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* Is some manifest path under directory rel? */
static bool dir_needed(const struct manifest *mf, const char *rel)
{
    size_t l = strlen(rel);
    for (size_t i = 0; i < mf->n; i++)
        if (!strncmp(mf->paths[i], rel, l) && mf->paths[i][l] == '/')
            return true;
    return false;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)f;
    if (flag == FTW_DP)
        rmdir(p);
    else
        unlink(p);
    return 0;
}

/* Remove what the source does not have (files its compaction or DELETE
 * removed meanwhile, stale derived files); lock files are the store's own
 * and stay. */
static int prune_one(struct conn *c, const char *rel, const struct stat *st, void *arg)
{
    const struct manifest *mf = arg;
    char full[PATH_MAX + 2048];
    snprintf(full, sizeof full, "%s/%s", c->stage, rel);
    const char *base = strrchr(rel, '/');
    base = base ? base + 1 : rel;
    if (S_ISDIR(st->st_mode)) {
        if (!dir_needed(mf, rel))
            nftw(full, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        return 0;
    }
    if (!strcmp(base, "lock") || !strcmp(base, "compact.lock"))
        return 0;
    if (!in_manifest(mf, rel, NULL))
        unlink(full);
    return 0;
}

static int fsync_one(struct conn *c, const char *rel, const struct stat *st, void *arg)
{
    (void)arg;
    char full[PATH_MAX + 2048];
    snprintf(full, sizeof full, "%s/%s", c->stage, rel);
    int fd = open(full, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return S_ISDIR(st->st_mode) ? 0 : -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

static int fsync_path(const char *p)
{
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

/* Open every mailbox of the staged user through the store (which checks
 * the index against the log, rebuilding what it cannot trust) and answer
 * its numbers.  The store is closed again before the rename. */
static int verify(struct conn *c, char **want, size_t nwant, char *err, size_t errlen)
{
    char **got = NULL;
    char sname[300];
    snprintf(sname, sizeof sname, "%s.moving", c->user);
    store_user *u = NULL;
    store_mailbox_info *v = NULL;
    size_t n = 0;
    int rc = store_user_open(c->m->srv->mail_root, sname, &c->m->srv->sopts, &u);
    if (rc == 0)
        rc = store_mailbox_list(u, &v, &n);
    if (rc < 0) {
        snprintf(err, errlen, "the mailbox list: %s", store_strerror(rc));
        goto out;
    }
    if (n != nwant) {
        snprintf(err, errlen, "%zu mailboxes here, %zu at the source", n, nwant);
        rc = -EBADMSG;
        goto out;
    }
    if (!(got = calloc(n ? n : 1, sizeof *got))) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        store_status st;
        rc = store_mailbox_status(u, v[i].name, &st);
        if (rc < 0) {
            snprintf(err, errlen, "mailbox %s: %s", v[i].name, store_strerror(rc));
            break;
        }
        if (asprintf(&got[i], "M %u %u %" PRIu64 " %u %s", st.uidvalidity, st.uidnext,
                     st.highestmodseq, st.messages, v[i].name) < 0) {
            got[i] = NULL;
            rc = -ENOMEM;
            snprintf(err, errlen, "out of memory");
        }
    }
    if (rc == 0) {
        qsort(got, n, sizeof *got, path_cmp);
        qsort(want, nwant, sizeof *want, path_cmp);
        for (size_t i = 0; i < n && rc == 0; i++)
            if (strcmp(got[i], want[i])) {
                snprintf(err, errlen, "here \"%s\", at the source \"%s\"", got[i], want[i]);
                rc = -EBADMSG;
            }
    }
out:
    for (size_t i = 0; got && i < n; i++)
        free(got[i]);
    free(got);
    store_mailbox_info_free(v, n);
    store_user_close(u);
    return rc;
}

static int cmd_commit(struct conn *c, const char *args)
{
    unsigned long long n = 0, k = 0;
    if (!c->user[0] || sscanf(args, "%llu %llu", &n, &k) != 2 || n > MAX_MANIFEST ||
        k > MAX_MANIFEST)
        return -EPROTO;
    struct manifest mf = {0};
    int rc = 0;
    char err[1024] = "";
    char **want = calloc(k ? k : 1, sizeof *want);
    mf.paths = calloc(n ? n : 1, sizeof *mf.paths);
    mf.sizes = calloc(n ? n : 1, sizeof *mf.sizes);
    if (!mf.paths || !mf.sizes || !want)
        rc = -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        char *line;
        int lr = read_line(c, &line);
        if (lr < 0) {
            rc = lr;
            goto out;
        }
        char *sp = strchr(line, ' ');
        if (rc == 0 && (!sp || !path_ok(sp + 1)))
            rc = -EPROTO;
        if (rc == 0) {
            mf.sizes[mf.n] = strtoull(line, NULL, 10);
            if (!(mf.paths[mf.n] = strdup(sp + 1)))
                rc = -ENOMEM;
            else
                mf.n++;
        }
    }
    for (size_t i = 0; i < k; i++) {
        char *line;
        int lr = read_line(c, &line);
        if (lr < 0) {
            rc = lr;
            goto out;
        }
        if (rc == 0 && want && !(want[i] = strdup(line)))
            rc = -ENOMEM;
    }
    if (rc < 0) {
        rc = say(c, "ERR bad manifest: %s", strerror(-rc));
        goto out;
    }
    /* sizes follow their paths */
    char **sorted = malloc((mf.n ? mf.n : 1) * sizeof *sorted);
    uint64_t *ssz = malloc((mf.n ? mf.n : 1) * sizeof *ssz);
    if (!sorted || !ssz) {
        free(sorted);
        free(ssz);
        rc = say(c, "ERR out of memory");
        goto out;
    }
    memcpy(sorted, mf.paths, mf.n * sizeof *sorted);
    qsort(sorted, mf.n, sizeof *sorted, path_cmp);
    for (size_t i = 0; i < mf.n; i++) {
        size_t lo = 0, hi = mf.n;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (strcmp(sorted[mid], mf.paths[i]) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        ssz[lo] = mf.sizes[i];
    }
    free(mf.paths);
    free(mf.sizes);
    mf.paths = sorted;
    mf.sizes = ssz;
    walk(c, "", 1, prune_one, &mf);
    for (size_t i = 0; i < mf.n; i++) {
        char full[PATH_MAX + 2048];
        snprintf(full, sizeof full, "%s/%s", c->stage, mf.paths[i]);
        struct stat st;
        if (stat(full, &st) < 0 || (uint64_t)st.st_size != mf.sizes[i]) {
            rc = say(c, "ERR %s: %s here", mf.paths[i],
                     stat(full, &st) < 0 ? "missing" : "of another size");
            goto out;
        }
    }
    if ((rc = walk(c, "", 1, fsync_one, NULL)) < 0 || (rc = fsync_path(c->stage)) < 0) {
        rc = say(c, "ERR fsync: %s", strerror(-rc));
        goto out;
    }
    if ((rc = verify(c, want, (size_t)k, err, sizeof err)) < 0) {
        log_msg(LOGL_ERROR, 0, c->user, "move: the staged copy does not open: %s", err);
        rc = say(c, "ERR the copy does not open: %s", err);
        goto out;
    }
    char dst[PATH_MAX];
    snprintf(dst, sizeof dst, "%s/%s", c->m->srv->mail_root, c->user);
    struct stat st;
    if (stat(dst, &st) == 0) {
        rc = say(c, "ERR the user appeared on this backend meanwhile");
        goto out;
    }
    if (rename(c->stage, dst) < 0) {
        rc = say(c, "ERR rename: %s", strerror(errno));
        goto out;
    }
    fsync_path(c->m->srv->mail_root);
    log_msg(LOGL_INFO, 0, c->user, "move: committed from %s (%zu files)", c->peer, mf.n);
    rc = say(c, "OK committed");
out:
    for (size_t i = 0; want && i < k; i++)
        free(want[i]);
    free(want);
    for (size_t i = 0; i < mf.n; i++)
        free(mf.paths[i]);
    free(mf.paths);
    free(mf.sizes);
    return rc;
}

static void serve(struct conn *c)
{
    char ip[64];
    if (!abuse_trusted(c->m->srv->abuse, abuse_peer_ip(c->peer, ip, sizeof ip))) {
        log_msg(LOGL_WARN, 0, NULL, "move: refused %s: not in trusted_networks", c->peer);
        say(c, "ERR not allowed from this address");
        return;
    }
    for (;;) {
        char *line;
        int rc = read_line(c, &line);
        if (rc < 0)
            return;
        char *sp = strchr(line, ' ');
        char *args = sp ? sp + 1 : line + strlen(line);
        if (sp)
            *sp = '\0';
        if (!strcmp(line, "HELLO")) {
            if (strncmp(args, "1 ", 2) || !secret_eq(args + 2, c->m->secret)) {
                log_msg(LOGL_WARN, 0, NULL, "move: refused %s: wrong secret", c->peer);
                say(c, "ERR wrong secret or protocol version");
                return;
            }
            c->authed = true;
            char host[128];
            unsigned port;
            imap_address(c, host, sizeof host, &port);
            rc = say(c, "OK %s %u", host, port);
        } else if (!c->authed) {
            say(c, "ERR HELLO first");
            return;
        } else if (!strcmp(line, "USER") && !c->user[0]) {
            rc = cmd_user(c, args);
            if (rc == 0 && !c->user[0])
                return;
        } else if (!strcmp(line, "LIST") && c->user[0]) {
            rc = walk(c, "", 1, list_one, NULL);
            if (rc == 0)
                rc = say(c, "OK");
        } else if (!strcmp(line, "WRITE") || !strcmp(line, "PUT")) {
            rc = cmd_write(c, args, line[0] == 'P');
        } else if (!strcmp(line, "SYNC") && c->user[0]) {
            rc = walk(c, "", 1, fsync_one, NULL);
            rc = rc < 0 ? say(c, "ERR fsync: %s", strerror(-rc)) : say(c, "OK");
        } else if (!strcmp(line, "COMMIT")) {
            rc = cmd_commit(c, args);
        } else if (!strcmp(line, "QUIT")) {
            say(c, "OK");
            return;
        } else {
            say(c, "ERR unknown command");
            return;
        }
        if (rc < 0)
            return;
    }
}

static void *move_main(void *arg)
{
    move_target *m = arg;
    char *buf = malloc(BUF_SIZE);
    if (!buf)
        return NULL;
    struct sockaddr_storage ss;
    int fd;
    while ((fd = sidelisten_accept(&m->l, &ss)) >= 0) {
        struct conn c = {.m = m, .fd = fd, .buf = buf, .stage_fd = -1};
        char a[INET6_ADDRSTRLEN] = "?";
        unsigned port = 0;
        if (ss.ss_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, a, sizeof a);
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
            snprintf(c.peer, sizeof c.peer, "%s:%u", a, port);
        } else {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, a, sizeof a);
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
            snprintf(c.peer, sizeof c.peer, "[%s]:%u", a, port);
        }
        serve(&c);
        if (c.stage_fd >= 0)
            close(c.stage_fd);  /* drops the flock */
        close(fd);
    }
    free(buf);
    return NULL;
}

int move_target_start(move_target *m, imap_server *srv)
{
    m->srv = srv;
    return sidelisten_start(&m->l, move_main, m);
}

void move_target_free(move_target *m)
{
    if (!m)
        return;
    sidelisten_close(&m->l);
    free(m->secret);
    free(m);
}
