/* tools/admin_move.c — `user move USER --to HOST:PORT`: move a user's mail
 * to another backend while the user keeps working, and `user move USER
 * --cleanup`: remove the copy a finished move left here.
 *
 * The store's files are shipped as they are (the target's end and the
 * protocol: core/server/move_target.c), so UIDVALIDITY, UIDs, flags,
 * modseqs and EMAILIDs are the source's by construction:
 *   1. copy every file, then catch up in rounds while the user works
 *      (a log or cache only grows: a round sends what was appended; a file
 *      that changed otherwise, e.g. a new generation from compaction, goes
 *      whole) until a round moves less than --quiet bytes or --rounds ran;
 *   2. freeze the user here (control socket `freeze`, or the store directly
 *      when no server runs): writes get NO [UNAVAILABLE], deliveries 451
 *      (the MTA retries), and the freeze returns only once the writes in
 *      progress ended, so every acknowledged write is in the logs;
 *   3. a last round, the index with it, and COMMIT: the target checks the
 *      files, opens every mailbox, compares each mailbox's UIDVALIDITY,
 *      UIDNEXT, HIGHESTMODSEQ and message count with ours and only then
 *      renames its staging directory into place;
 *   4. the directory names the target (userdb_set_route);
 *   5. the user is marked moved here (logins NO [UNAVAILABLE], deliveries
 *      451, so a stale route never writes to the old copy) and its
 *      sessions are kicked (BYE [UNAVAILABLE]); they reconnect through the
 *      proxy, which now sends them to the target.
 * Downtime (writes refused) is 2 to 4; reading goes on throughout.
 *
 * Any failure or SIGINT/SIGTERM before the commit thaws the user (it goes
 * on being served here) and leaves the target's staging directory, so a
 * run again resumes with what is there.  A failure after the commit (the
 * directory could not be written) keeps the user frozen and says so: the
 * target holds the mail now; running again finishes the flip.
 *
 * The old copy stays (marked moved) until `user move USER --cleanup`
 * removes it: until then it is the operator's way back. */
#define _XOPEN_SOURCE 700       /* nftw */
#define _DEFAULT_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/auth/userdb.h"
#include "tools/admin.h"

#define TAIL_CRC 65536u             /* as the target's LIST */
#define CHUNK (8u << 20)            /* bytes per WRITE */
#define ANSWER_TIMEOUT_S 300        /* COMMIT may rebuild an index */

static volatile sig_atomic_t stop_sig;

static void on_signal(int sig)
{
    stop_sig = sig;
}

struct tfile {                      /* a file the target holds */
    char *path;
    uint64_t size;
    uint32_t crc;
};

struct lfile {                      /* a file here */
    char *path;
    uint64_t size;
};

struct mv {
    admin_ctx *ctx;
    const char *user;
    char root[PATH_MAX];            /* <mail_root>/<user> */
    int fd;
    FILE *in;
    char imap_host[128];
    unsigned imap_port;
    struct tfile *tf;
    size_t ntf;
    struct lfile *lf;
    size_t nlf, caplf;
    uint64_t sent;                  /* bytes of file data, this round */
    unsigned files;                 /* files sent, this round */
};

/* ---- the connection ------------------------------------------------------------ */

static int mv_connect(struct mv *m, const char *to)
{
    char host[256];
    const char *colon = strrchr(to, ':');
    if (!colon || colon == to || (size_t)(colon - to) >= sizeof host) {
        admin_err("--to %s: write HOST:PORT (the target's listen_move)", to);
        return -EINVAL;
    }
    const char *h = to;
    size_t hl = (size_t)(colon - to);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int g = getaddrinfo(host, colon + 1, &hints, &ai);
    if (g) {
        admin_err("--to %s: %s", to, gai_strerror(g));
        return -EINVAL;
    }
    int fd = -1, err = ECONNREFUSED;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        admin_err("cannot connect to %s: %s", to, strerror(err));
        return -err;
    }
    struct timeval tv = {.tv_sec = ANSWER_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    m->fd = fd;
    m->in = fdopen(dup(fd), "r");
    return m->in ? 0 : -ENOMEM;
}

static int send_all(struct mv *m, const void *p, size_t n)
{
    const char *s = p;
    while (n) {
        ssize_t w = send(m->fd, s, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR && !stop_sig)
            continue;
        if (w <= 0) {
            admin_err("the target: %s", stop_sig ? "interrupted" : strerror(errno));
            return -EPIPE;
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static int sayf(struct mv *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int sayf(struct mv *m, const char *fmt, ...)
{
    char line[1200];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line - 1)
        return -EINVAL;
    line[n++] = '\n';
    return send_all(m, line, (size_t)n);
}

/* The next answer line (static buffer, without its LF); NULL when the
 * connection ended (error printed). */
static char *answer(struct mv *m)
{
    static char *buf;
    static size_t cap;
    for (;;) {
        errno = 0;
        ssize_t k = getline(&buf, &cap, m->in);
        if (k > 0 && buf[k - 1] == '\n') {
            buf[k - 1] = '\0';
            return buf;
        }
        if (errno == EINTR && !stop_sig) {
            clearerr(m->in);
            continue;
        }
        admin_err("the target closed the connection%s", stop_sig ? " (interrupted)"
                  : errno == EAGAIN ? " (timeout)" : "");
        return NULL;
    }
}

/* 0 on "OK...", else the error printed. */
static int expect_ok(struct mv *m, const char *what)
{
    char *a = answer(m);
    if (!a)
        return -EPIPE;
    if (!strncmp(a, "OK", 2))
        return 0;
    admin_err("%s: the target says: %s", what, !strncmp(a, "ERR ", 4) ? a + 4 : a);
    return -EPROTO;
}

/* ---- files ----------------------------------------------------------------------- */

/* What a move copies: the store's files but its locks, the freeze mark,
 * the temporary files of compaction, rebuild and check, and the search
 * index (derived, written outside the store's locks, rebuilt there on the
 * first body search). */
static bool shipped(const char *base, bool final)
{
    if (!strcmp(base, "lock") || !strcmp(base, "compact.lock") ||
        !strcmp(base, STORE_FROZEN_FILE) || !strncmp(base, "sindex", 6) ||
        !strcmp(base, "index.compact") || !strcmp(base, "index.check") ||
        !strcmp(base, "cache.check") || base[0] == '.')
    return false;
    size_t l = strlen(base);
    if (l > 4 && !strcmp(base + l - 4, ".tmp"))
        return false;
    /* The index changes in place (flags): only a copy taken under the
     * freeze is worth anything, so only the last round sends it. */
    if (!strcmp(base, "index"))
        return final;
    return true;
}

static bool append_only(const char *base)
{
    return !strncmp(base, "log.", 4) || !strncmp(base, "cache.", 6);
}

static int lf_add(struct mv *m, const char *rel, uint64_t size)
{
    if (m->nlf == m->caplf) {
        size_t cap = m->caplf ? m->caplf * 2 : 256;
        struct lfile *v = realloc(m->lf, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        m->lf = v;
        m->caplf = cap;
    }
    if (!(m->lf[m->nlf].path = strdup(rel)))
        return -ENOMEM;
    m->lf[m->nlf++].size = size;
    return 0;
}

static void lf_clear(struct mv *m)
{
    for (size_t i = 0; i < m->nlf; i++)
        free(m->lf[i].path);
    m->nlf = 0;
}

/* The local files, depth first (<user>/x, <user>/m/<id>/x). */
static int scan(struct mv *m, const char *rel, int depth, bool final)
{
    char dir[PATH_MAX + 1100];
    snprintf(dir, sizeof dir, "%s%s%s", m->root, *rel ? "/" : "", rel);
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT && *rel ? 0 : -errno;  /* a mailbox deleted meanwhile */
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char r[1024];
        if (strlen(rel) + strlen(e->d_name) + 2 > sizeof r)
            continue;
        size_t rl = strlen(rel), dl = strlen(e->d_name);
        memcpy(r, rel, rl);
        if (rl)
            r[rl++] = '/';
        memcpy(r + rl, e->d_name, dl + 1);
        char full[PATH_MAX + 2200];
        snprintf(full, sizeof full, "%s/%s", m->root, r);
        struct stat st;
        if (lstat(full, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode) && depth < 3)
            rc = scan(m, r, depth + 1, final);
        else if (S_ISREG(st.st_mode) && shipped(e->d_name, final))
            rc = lf_add(m, r, (uint64_t)st.st_size);
    }
    closedir(d);
    return rc;
}

static int tf_cmp(const void *a, const void *b)
{
    return strcmp(((const struct tfile *)a)->path, ((const struct tfile *)b)->path);
}

static void tf_clear(struct mv *m)
{
    for (size_t i = 0; i < m->ntf; i++)
        free(m->tf[i].path);
    free(m->tf);
    m->tf = NULL;
    m->ntf = 0;
}

/* What the target holds (LIST). */
static int target_list(struct mv *m)
{
    tf_clear(m);
    size_t cap = 0;
    int rc = sayf(m, "LIST");
    while (rc == 0) {
        char *a = answer(m);
        if (!a)
            return -EPIPE;
        if (!strncmp(a, "OK", 2))
            break;
        uint64_t size;
        unsigned crc;
        int off = 0;
        if (sscanf(a, "F %" SCNu64 " %x %n", &size, &crc, &off) != 2 || !off) {
            admin_err("LIST: the target says: %s", a);
            return -EPROTO;
        }
        if (m->ntf == cap) {
            cap = cap ? cap * 2 : 256;
            struct tfile *v = realloc(m->tf, cap * sizeof *v);
            if (!v)
                return -ENOMEM;
            m->tf = v;
        }
        if (!(m->tf[m->ntf].path = strdup(a + off)))
            return -ENOMEM;
        m->tf[m->ntf].size = size;
        m->tf[m->ntf++].crc = crc;
    }
    if (m->ntf)
        qsort(m->tf, m->ntf, sizeof *m->tf, tf_cmp);
    return rc;
}

static const struct tfile *tf_find(const struct mv *m, const char *path)
{
    struct tfile key = {.path = (char *)path};
    return m->ntf ? bsearch(&key, m->tf, m->ntf, sizeof *m->tf, tf_cmp) : NULL;
}

static int crc_range(int fd, uint64_t end, uint32_t *crc)
{
    uint64_t k = end < TAIL_CRC ? end : TAIL_CRC;
    char *b = malloc(k ? k : 1);
    if (!b)
        return -ENOMEM;
    ssize_t r = pread(fd, b, k, (off_t)(end - k));
    if (r == (ssize_t)k)
        *crc = store_crc32c(0, b, k);
    free(b);
    return r == (ssize_t)k ? 0 : -EIO;
}

/* Send [off, off + len) of fd (sendfile; a file cut meanwhile is padded
 * with zeros, which the next round's check replaces). */
static int send_range(struct mv *m, int fd, uint64_t off, uint64_t len)
{
    off_t o = (off_t)off;
    while (len) {
        if (stop_sig)
            return -EINTR;
        size_t k = len > CHUNK ? CHUNK : (size_t)len;
        ssize_t w = sendfile(m->fd, fd, &o, k);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            admin_err("sending to the target: %s", strerror(errno));
            return -EPIPE;
        }
        if (w == 0) {   /* the file is shorter now */
            static const char zero[4096];
            size_t z = len < sizeof zero ? (size_t)len : sizeof zero;
            int rc = send_all(m, zero, z);
            if (rc < 0)
                return rc;
            w = (ssize_t)z;
            o += w;
        }
        len -= (uint64_t)w;
        m->sent += (uint64_t)w;
    }
    return 0;
}

/* Bring the target's copy of one file up to `size` bytes of ours. */
static int ship(struct mv *m, const struct lfile *f)
{
    char full[PATH_MAX + 1100];
    snprintf(full, sizeof full, "%s/%s", m->root, f->path);
    int fd = open(full, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;     /* compaction removed it */
    const char *base = strrchr(f->path, '/');
    base = base ? base + 1 : f->path;
    const struct tfile *t = tf_find(m, f->path);
    bool whole = true;
    int rc = 0;
    if (t && t->size <= f->size && (append_only(base) || t->size == f->size)) {
        uint32_t crc = 0;
        /* the target's tail is ours: only what follows goes */
        if (crc_range(fd, t->size, &crc) == 0 && crc == t->crc && strcmp(base, "index"))
            whole = false;
    }
    if (whole) {
        rc = sayf(m, "PUT %s %" PRIu64, f->path, f->size);
        if (rc == 0)
            rc = send_range(m, fd, 0, f->size);
        if (rc == 0)
            rc = expect_ok(m, f->path);
        m->files++;
    } else if (t->size < f->size) {
        for (uint64_t at = t->size; rc == 0 && at < f->size; at += CHUNK) {
            uint64_t n = f->size - at < CHUNK ? f->size - at : CHUNK;
            rc = sayf(m, "WRITE %s %" PRIu64 " %" PRIu64, f->path, at, n);
            if (rc == 0)
                rc = send_range(m, fd, at, n);
            if (rc == 0)
                rc = expect_ok(m, f->path);
        }
        m->files++;
    }
    close(fd);
    return rc;
}

/* One round: every file brought up to date.  With final, the index too. */
static int round_run(struct mv *m, bool final)
{
    m->sent = 0;
    m->files = 0;
    lf_clear(m);
    int rc = scan(m, "", 1, final);
    if (rc < 0) {
        admin_err("reading %s: %s", m->root, strerror(-rc));
        return rc;
    }
    if ((rc = target_list(m)) < 0)
        return rc;
    for (size_t i = 0; i < m->nlf && rc == 0; i++)
        rc = stop_sig ? -EINTR : ship(m, &m->lf[i]);
    return rc;
}

/* ---- the mailboxes, as the target must see them -------------------------------------- */

static int mbox_lines(admin_ctx *ctx, const char *user, char ***out, size_t *n)
{
    store_user *u;
    int rc = store_user_open(ctx->mail_root, user, &ctx->opts, &u);
    if (rc < 0)
        return rc;
    store_mailbox_info *v = NULL;
    size_t nv = 0;
    rc = store_mailbox_list(u, &v, &nv);
    char **lines = rc == 0 ? calloc(nv ? nv : 1, sizeof *lines) : NULL;
    if (rc == 0 && !lines)
        rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < nv; i++) {
        store_status st;
        if ((rc = store_mailbox_status(u, v[i].name, &st)) < 0)
            break;
        if (asprintf(&lines[i], "M %u %u %" PRIu64 " %u %s", st.uidvalidity, st.uidnext,
                     st.highestmodseq, st.messages, v[i].name) < 0) {
            lines[i] = NULL;
            rc = -ENOMEM;
        }
    }
    store_mailbox_info_free(v, nv);
    store_user_close(u);
    if (rc < 0) {
        for (size_t i = 0; lines && i < nv; i++)
            free(lines[i]);
        free(lines);
        return rc;
    }
    *out = lines;
    *n = nv;
    return 0;
}

/* COMMIT with the manifest and our mailboxes' numbers. */
static int commit(struct mv *m, char **lines, size_t nlines)
{
    int rc = sayf(m, "COMMIT %zu %zu", m->nlf, nlines);
    for (size_t i = 0; rc == 0 && i < m->nlf; i++)
        rc = sayf(m, "%" PRIu64 " %s", m->lf[i].size, m->lf[i].path);
    for (size_t i = 0; rc == 0 && i < nlines; i++)
        rc = sayf(m, "%s", lines[i]);
    if (rc < 0)
        return rc;
    return expect_ok(m, "COMMIT");
}

/* ---- freeze, thaw, kick ------------------------------------------------------------ */

static int freeze(struct mv *m, const char *state)
{
    char req[600], why[300];
    snprintf(req, sizeof req, "freeze %s %s %s:%u", m->user, state, m->imap_host,
             m->imap_port);
    snprintf(why, sizeof why, "%s to %s:%u", state, m->imap_host, m->imap_port);
    if (admin_control_request(m->ctx, req, NULL) == ADMIN_OK)
        return 0;
    /* No server to tell (or it refused): the store itself, which every
     * process of a server started later sees too. */
    fprintf(stderr, "ringmail-admin: note: freezing %s through the store\n", m->user);
    int rc = store_user_freeze(m->ctx->mail_root, m->user, why);
    if (rc < 0)
        admin_err("cannot freeze %s: %s", m->user, store_strerror(rc));
    return rc;
}

static void thaw(struct mv *m)
{
    char req[300];
    snprintf(req, sizeof req, "thaw %s", m->user);
    if (admin_control_request(m->ctx, req, NULL) != ADMIN_OK) {
        int rc = store_user_thaw(m->ctx->mail_root, m->user);
        if (rc < 0)
            admin_err("cannot thaw %s: %s (remove %s/%s by hand)", m->user,
                      store_strerror(rc), m->root, STORE_FROZEN_FILE);
    }
    printf("thawed %s: it is served here again\n", m->user);
}

/* ---- the command ------------------------------------------------------------------- */

static int read_secret(admin_ctx *ctx, const char *file, char *buf, size_t len)
{
    if (!file) {
        const char *s = config_get(&ctx->cfg, "move_secret");
        if (!*s) {
            admin_err("no secret: set move_secret or give --secret-file");
            return -EINVAL;
        }
        snprintf(buf, len, "%s", s);
        return 0;
    }
    FILE *f = fopen(file, "re");
    if (!f) {
        admin_err("--secret-file %s: %s", file, strerror(errno));
        return -errno;
    }
    bool ok = fgets(buf, (int)len, f) != NULL;
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    if (!ok || !*buf) {
        admin_err("--secret-file %s: empty", file);
        return -EINVAL;
    }
    return 0;
}

static int rm_entry(const char *p, const struct stat *st, int type, struct FTW *f)
{
    (void)st;
    (void)f;
    return type == FTW_DP ? rmdir(p) : unlink(p);
}

static int cleanup(admin_ctx *ctx, const char *user)
{
    char why[256] = "", root[PATH_MAX];
    int fr = store_user_frozen(ctx->mail_root, user, why, sizeof why);
    if (fr != 1 || strncmp(why, "moved", 5)) {
        admin_err("%s was not moved away from here: nothing removed", user);
        return ADMIN_FAIL;
    }
    snprintf(root, sizeof root, "%s/%s", ctx->mail_root, user);
    if (nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0) {
        admin_err("removing %s: %s", root, strerror(errno));
        return ADMIN_FAIL;
    }
    printf("removed the old copy of %s (%s)\n", user, why);
    return ADMIN_OK;
}

static double elapsed(double t0)
{
    return admin_now() - t0;
}

int admin_cmd_user_move(admin_ctx *ctx, int argc, char **argv)
{
    const char *to = NULL, *secret_file = NULL, *rounds_s = NULL, *quiet_s = NULL;
    bool do_cleanup = false;
    admin_opt opts[] = {{"to", NULL, &to}, {"secret-file", NULL, &secret_file},
                        {"rounds", NULL, &rounds_s}, {"quiet", NULL, &quiet_s},
                        {"cleanup", &do_cleanup, NULL}};
    char *pos[1];
    size_t npos;
    if (admin_args(argc, argv, opts, sizeof opts / sizeof *opts, pos, 1, 1, &npos,
                   "user move USER --to HOST:PORT [--secret-file F] [--rounds N] "
                   "[--quiet BYTES] | user move USER --cleanup") < 0)
        return ADMIN_USAGE;
    const char *user = pos[0];
    if (do_cleanup)
        return cleanup(ctx, user);
    if (!to)
        return admin_usage("user move: --to HOST:PORT is required");
    unsigned long rounds = rounds_s ? strtoul(rounds_s, NULL, 10) : 8;
    unsigned long long quiet = quiet_s ? strtoull(quiet_s, NULL, 10) : 1u << 20;
    if (rounds < 1 || rounds > 1000)
        return admin_usage("user move: --rounds is 1 to 1000");
    char secret[512];
    if (read_secret(ctx, secret_file, secret, sizeof secret) < 0)
        return ADMIN_FAIL;

    struct mv m = {.ctx = ctx, .user = user, .fd = -1};
    snprintf(m.root, sizeof m.root, "%s/%s", ctx->mail_root, user);
    userdb *db = NULL;
    int ret = ADMIN_FAIL, rc;
    bool frozen = false, committed = false, in_doubt = false;
    char *a = NULL;
    uint64_t total = 0;
    double t0 = 0, tf = 0;
    char why[256] = "";
    struct stat st;
    if (strchr(user, '/') || stat(m.root, &st) < 0) {
        admin_err("%s has no mail here (%s)", user, m.root);
        return ADMIN_FAIL;
    }
    if (store_user_frozen(ctx->mail_root, user, why, sizeof why) == 1 &&
        !strncmp(why, "moved", 5)) {
        admin_err("%s was %s already", user, why);
        return ADMIN_FAIL;
    }
    /* the directory the servers read (passwd-file, LDAP or PostgreSQL) */
    if ((rc = admin_userdb_open(ctx, &db)) < 0)
        return ADMIN_FAIL;
    if ((rc = userdb_lookup(db, user, false, NULL)) < 0) {
        admin_err("%s: %s in the directory", user, rc == -ENOENT ? "no such user"
                  : strerror(-rc));
        goto out;
    }
    struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    signal(SIGPIPE, SIG_IGN);

    t0 = admin_now();
    if (mv_connect(&m, to) < 0)
        goto restore;
    if (sayf(&m, "HELLO 1 %s", secret) < 0)
        goto restore;
    a = answer(&m);
    if (!a || strncmp(a, "OK ", 3) ||
        sscanf(a + 3, "%127s %u", m.imap_host, &m.imap_port) != 2) {
        if (a)
            admin_err("%s refused: %s", to, !strncmp(a, "ERR ", 4) ? a + 4 : a);
        goto restore;
    }
    if (sayf(&m, "USER %s", user) < 0)
        goto restore;
    if (!(a = answer(&m)))
        goto restore;
    if (!strncmp(a, "ERR ", 4) && strstr(a, "exists") &&
        store_user_frozen(ctx->mail_root, user, why, sizeof why) == 1 &&
        !strncmp(why, "moving to ", 10) && !strncmp(why + 10, m.imap_host,
                                                   strlen(m.imap_host))) {
        /* An earlier run committed and stopped before the flip. */
        printf("%s: the target holds it already (an earlier run committed): finishing\n",
               user);
        committed = frozen = true;
    } else if (strncmp(a, "OK", 2)) {
        admin_err("%s: %s", to, !strncmp(a, "ERR ", 4) ? a + 4 : a);
        goto restore;
    } else {
        printf("moving %s to %s (IMAP %s:%u): %s\n", user, to, m.imap_host, m.imap_port,
               strstr(a, "resume") ? "resuming an earlier copy" : "new copy");
    }
    fflush(stdout);
    for (unsigned long r = 1; !committed && r <= rounds; r++) {
        double tr = admin_now();
        if ((rc = round_run(&m, false)) < 0)
            goto restore;
        total += m.sent;
        /* flushed now, not while the user is frozen */
        if ((rc = sayf(&m, "SYNC")) < 0 || (rc = expect_ok(&m, "SYNC")) < 0)
            goto restore;
        printf("round %lu: %u files, %" PRIu64 " bytes in %.2f s\n", r, m.files, m.sent,
               elapsed(tr));
        fflush(stdout);
        if (m.sent < quiet)
            break;
    }
    tf = admin_now();
    if (!committed) {
        if (freeze(&m, "moving") < 0)
            goto restore;
        frozen = true;
        printf("froze %s (writes refused, reading goes on)\n", user);
        fflush(stdout);
        char **lines = NULL;
        size_t nlines = 0;
        /* Read before the last round: opening and closing each mailbox
         * here also leaves a checkpoint in its index (store-format.md,
         * "Trust"), taken under the freeze, so the index the last round
         * ships is trusted by a target on another machine (another boot)
         * instead of being rebuilt there while the user waits. */
        if ((rc = mbox_lines(ctx, user, &lines, &nlines)) < 0) {
            admin_err("reading %s's mailboxes: %s", user, store_strerror(rc));
            goto restore;
        }
        if ((rc = round_run(&m, true)) < 0) {
            for (size_t i = 0; i < nlines; i++)
                free(lines[i]);
            free(lines);
            goto restore;
        }
        total += m.sent;
        printf("final round: %u files, %" PRIu64 " bytes in %.2f s\n", m.files, m.sent,
               elapsed(tf));
        /* Once COMMIT is sent only its answer says who holds the user: a
         * signal must not cut it short, and without an answer (the
         * connection lost) the user stays frozen, for a thaw here could
         * leave two live copies.  A run again finishes a commit that
         * happened, or resumes one that did not. */
        sigset_t sigs, oldsigs;
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGINT);
        sigaddset(&sigs, SIGTERM);
        sigprocmask(SIG_BLOCK, &sigs, &oldsigs);
        rc = commit(&m, lines, nlines);
        for (size_t i = 0; i < nlines; i++)
            free(lines[i]);
        free(lines);
        if (rc == -EPIPE) {
            in_doubt = true;
            admin_err("no answer to the commit: %s stays frozen here; run this again "
                      "(it finishes the move if the target took the user, else resumes it)",
                      user);
        }
        if (rc < 0) {
            sigprocmask(SIG_SETMASK, &oldsigs, NULL);
            goto restore;
        }
        committed = true;
        printf("committed on the target (%zu mailboxes checked) in %.2f s after the freeze\n",
               nlines, elapsed(tf));
    }
    sayf(&m, "QUIT");
    /* From here on the target holds the mail: never thaw. */
    if ((rc = userdb_set_route(db, user, m.imap_host, m.imap_port)) < 0) {
        admin_err("the mail is on %s but the directory was not changed: %s; %s stays "
                  "frozen here: run this again, or set host=%s port=%u by hand",
                  to, strerror(-rc), user, m.imap_host, m.imap_port);
        goto restore;
    }
    double downtime = elapsed(tf);
    printf("directory: %s is at %s:%u\n", user, m.imap_host, m.imap_port);
    if (freeze(&m, "moved") < 0)
        admin_err("%s could not be marked moved here: logins here still read the old copy",
                  user);
    char req[300];
    snprintf(req, sizeof req, "kick %s", user);
    if (admin_control_request(ctx, req, NULL) != ADMIN_OK)
        fprintf(stderr, "ringmail-admin: note: no sessions kicked\n");
    printf("moved %s to %s:%u: %" PRIu64 " bytes, %.2f s in all, writes refused for "
           "%.2f s (freeze to directory change); the old copy stays here until "
           "`user move %s --cleanup`\n", user, m.imap_host, m.imap_port, total,
           elapsed(t0), downtime, user);
    ret = ADMIN_OK;
restore:
    if (ret != ADMIN_OK && frozen && !committed && !in_doubt)
        thaw(&m);
    else if (ret != ADMIN_OK && !frozen)
        fprintf(stderr, "ringmail-admin: %s is still served here; run again to resume\n",
                user);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
out:
    if (m.in)
        fclose(m.in);
    if (m.fd >= 0)
        close(m.fd);
    lf_clear(&m);
    free(m.lf);
    tf_clear(&m);
    userdb_close(db);
    return ret;
}
