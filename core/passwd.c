/* core/passwd.c — the Dovecot-format passwd-file. */
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/passwd.h"

struct pw_user {
    char *name;
    char *secret;           /* with its {SCHEME} prefix, if any */
};

struct passwd_db {
    char *path;
    pthread_mutex_t lock;
    struct pw_user *users;
    size_t n;
    struct stat st;
    bool loaded;
};

static void users_free(struct pw_user *u, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(u[i].name);
        free(u[i].secret);
    }
    free(u);
}

static int cmp_user(const void *a, const void *b)
{
    return strcmp(((const struct pw_user *)a)->name, ((const struct pw_user *)b)->name);
}

/* Parse the file into a sorted array. */
static int load_file(const char *path, struct pw_user **out, size_t *nout)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    struct pw_user *v = NULL;
    size_t n = 0, cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    int rc = 0;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (!len || line[0] == '#')
            continue;
        char *c1 = strchr(line, ':');
        if (!c1 || c1 == line)
            continue;           /* not a user line */
        *c1 = '\0';
        char *secret = c1 + 1;
        char *c2 = strchr(secret, ':');
        if (c2)
            *c2 = '\0';
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            struct pw_user *nv = realloc(v, cap * sizeof *nv);
            if (!nv) {
                rc = -ENOMEM;
                break;
            }
            v = nv;
        }
        v[n].name = strdup(line);
        v[n].secret = strdup(secret);
        if (!v[n].name || !v[n].secret) {
            free(v[n].name);
            free(v[n].secret);
            rc = -ENOMEM;
            break;
        }
        n++;
    }
    free(line);
    fclose(f);
    if (rc < 0) {
        users_free(v, n);
        return rc;
    }
    qsort(v, n, sizeof *v, cmp_user);
    *out = v;
    *nout = n;
    return 0;
}

int passwd_open(const char *path, passwd_db **out)
{
    passwd_db *db = calloc(1, sizeof *db);
    if (!db || !(db->path = strdup(path))) {
        free(db);
        return -ENOMEM;
    }
    pthread_mutex_init(&db->lock, NULL);
    *out = db;
    return 0;
}

void passwd_close(passwd_db *db)
{
    if (!db)
        return;
    users_free(db->users, db->n);
    pthread_mutex_destroy(&db->lock);
    free(db->path);
    free(db);
}

/* Re-read the file if it changed (lock held). */
static int refresh(passwd_db *db)
{
    /* One stat per login: a changed file takes effect at once. */
    struct stat st;
    if (stat(db->path, &st) < 0)
        return -errno;
    if (db->loaded && st.st_ino == db->st.st_ino && st.st_size == db->st.st_size &&
        st.st_mtim.tv_sec == db->st.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == db->st.st_mtim.tv_nsec)
        return 0;
    struct pw_user *v;
    size_t n;
    int rc = load_file(db->path, &v, &n);
    if (rc < 0)
        return rc;
    users_free(db->users, db->n);
    db->users = v;
    db->n = n;
    db->st = st;
    db->loaded = true;
    return 0;
}

static bool ct_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = la != lb;
    for (size_t i = 0; i < la; i++)
        d |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return d == 0;
}

static int check_secret(const char *secret, const char *password)
{
    if (!strncmp(secret, "{PLAIN}", 7))
        return ct_equal(secret + 7, password) ? 0 : -EACCES;
    if (!strncmp(secret, "{CLEAR}", 7))
        return ct_equal(secret + 7, password) ? 0 : -EACCES;
    const char *hash = secret;
    if (secret[0] == '{') {
        const char *end = strchr(secret, '}');
        if (!end)
            return -EACCES;
        static const char *const crypt_schemes[] = {
            "{SHA512-CRYPT}", "{SHA256-CRYPT}", "{BLF-CRYPT}", "{CRYPT}",
            "{MD5-CRYPT}", NULL};
        size_t sl = (size_t)(end - secret) + 1;
        bool known = false;
        for (int i = 0; crypt_schemes[i]; i++)
            if (strlen(crypt_schemes[i]) == sl && !strncmp(secret, crypt_schemes[i], sl))
                known = true;
        if (!known)
            return -EACCES;     /* a scheme we cannot verify never matches */
        hash = end + 1;
    }
    struct crypt_data *cd = calloc(1, sizeof *cd);
    if (!cd)
        return -ENOMEM;
    const char *out = crypt_r(password, hash, cd);
    int rc = out && out[0] != '*' && ct_equal(out, hash) ? 0 : -EACCES;
    free(cd);
    return rc;
}

int passwd_verify(passwd_db *db, const char *user, const char *password)
{
    pthread_mutex_lock(&db->lock);
    int rc = refresh(db);
    char *secret = NULL;
    if (rc == 0) {
        struct pw_user key = {.name = (char *)user};
        struct pw_user *u = bsearch(&key, db->users, db->n, sizeof key, cmp_user);
        if (u && !(secret = strdup(u->secret)))
            rc = -ENOMEM;
    }
    pthread_mutex_unlock(&db->lock);
    if (rc < 0)
        return rc;
    if (!secret) {
        /* Spend the time of a real check so that timing does not tell
         * which users exist. */
        check_secret("{SHA512-CRYPT}$6$aaaaaaaaaaaaaaaa$", password);
        return -EACCES;
    }
    rc = check_secret(secret, password);
    free(secret);
    return rc;
}

int passwd_hash(const char *scheme, const char *password, char **out)
{
    const char *prefix;
    if (!strcmp(scheme, "PLAIN") || !strcmp(scheme, "CLEAR")) {
        size_t n = strlen(password) + 8;
        if (!(*out = malloc(n)))
            return -ENOMEM;
        snprintf(*out, n, "{%s}%s", scheme, password);
        return 0;
    }
    if (!strcmp(scheme, "SHA512-CRYPT"))
        prefix = "$6$";
    else if (!strcmp(scheme, "SHA256-CRYPT"))
        prefix = "$5$";
    else if (!strcmp(scheme, "BLF-CRYPT"))
        prefix = "$2b$";
    else
        return -EINVAL;
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    if (!crypt_gensalt_rn(prefix, 0, NULL, 0, salt, sizeof salt))
        return -errno ? -errno : -EINVAL;
    struct crypt_data *cd = calloc(1, sizeof *cd);
    if (!cd)
        return -ENOMEM;
    const char *h = crypt_r(password, salt, cd);
    int rc = 0;
    if (!h || h[0] == '*') {
        rc = -EINVAL;
    } else {
        size_t n = strlen(scheme) + strlen(h) + 3;
        if (!(*out = malloc(n)))
            rc = -ENOMEM;
        else
            snprintf(*out, n, "{%s}%s", scheme, h);
    }
    free(cd);
    return rc;
}

int passwd_file_users(const char *path, char ***names, size_t *n)
{
    struct pw_user *v;
    size_t k;
    int rc = load_file(path, &v, &k);
    if (rc == -ENOENT) {
        v = NULL;
        k = 0;
        rc = 0;
    }
    if (rc < 0)
        return rc;
    char **out = calloc(k ? k : 1, sizeof *out);
    if (!out) {
        users_free(v, k);
        return -ENOMEM;
    }
    for (size_t i = 0; i < k; i++) {
        out[i] = v[i].name;
        v[i].name = NULL;
    }
    users_free(v, k);
    *names = out;
    *n = k;
    return 0;
}

int passwd_file_set(const char *path, const char *user, const char *entry,
                    bool replace)
{
    if (!*user || strpbrk(user, ":\n\r/") || (entry && strpbrk(entry, "\n\r")))
        return -EINVAL;
    char *old = NULL;
    size_t oldlen = 0;
    FILE *f = fopen(path, "re");
    if (f) {
        char buf[65536];
        size_t r;
        FILE *m = open_memstream(&old, &oldlen);
        if (!m) {
            fclose(f);
            return -ENOMEM;
        }
        while ((r = fread(buf, 1, sizeof buf, f)) > 0)
            fwrite(buf, 1, r, m);
        fclose(f);
        fclose(m);
    } else if (errno != ENOENT) {
        return -errno;
    }
    char *nbuf = NULL;
    size_t nlen = 0;
    FILE *m = open_memstream(&nbuf, &nlen);
    if (!m) {
        free(old);
        return -ENOMEM;
    }
    bool found = false;
    size_t ul = strlen(user);
    for (char *line = old, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        size_t len = next ? (size_t)(next - line) : strlen(line);
        if (next)
            next++;
        if (len > ul && !strncmp(line, user, ul) && line[ul] == ':') {
            found = true;
            if (entry && replace)
                fprintf(m, "%s:%s\n", user, entry);
            continue;
        }
        fwrite(line, 1, len, m);
        fputc('\n', m);
    }
    int rc = 0;
    if (entry && found && !replace)
        rc = -EEXIST;
    else if (!found && (!entry || replace))
        rc = -ENOENT;
    else if (entry && !found)
        fprintf(m, "%s:%s\n", user, entry);
    fclose(m);
    free(old);
    if (rc == 0) {
        char tmp[PATH_MAX];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
            rc = -errno;
        } else {
            ssize_t w = write(fd, nbuf, nlen);
            if (w != (ssize_t)nlen || fsync(fd) < 0)
                rc = w < 0 ? -errno : -EIO;
            close(fd);
            if (rc == 0 && rename(tmp, path) < 0)
                rc = -errno;
            if (rc < 0)
                unlink(tmp);
        }
    }
    free(nbuf);
    return rc;
}
