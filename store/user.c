/* store/user.c — a user's store: the registry of open users and mailboxes,
 * mailbox names, and the mailbox list file.
 *
 * The list (<user>/mailboxes) is small text, replaced atomically on every
 * change (write temp, fdatasync, rename): it is the commit point of CREATE,
 * DELETE and RENAME.  Mailbox directories are named by id, so RENAME moves
 * no files.  Changes are serialized across processes by an flock on
 * <user>/lock, and a process re-reads the list when the file changed. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/internal.h"
#include "store/utf8.h"

#define LIST_MAGIC "RINGMAIL-MAILBOXES 1"

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct store_user *registry;

int store_fsync_parse(const char *s, store_fsync *out)
{
    if (!strcmp(s, "always"))
        *out = STORE_FSYNC_ALWAYS;
    else if (!strcmp(s, "batch"))
        *out = STORE_FSYNC_BATCH;
    else if (!strcmp(s, "never"))
        *out = STORE_FSYNC_NEVER;
    else
        return -EINVAL;
    return 0;
}

void store_opts_default(store_opts *o)
{
    o->fsync = STORE_FSYNC_BATCH;
    o->separator = '/';
}

char store_user_separator(const store_user *u)
{
    return u->opts.separator;
}

/* ---- names ------------------------------------------------------------------ */

/* Validate and canonicalize a mailbox name (INBOX in any case, also as the
 * first level, is spelled "INBOX").  *out is malloc'd. */
static int name_canon(const store_user *u, const char *name, char **out)
{
    char sep = u->opts.separator;
    size_t n = strlen(name);
    if (n == 0 || n > STORE_MAX_NAME_LEN || !store_utf8_valid(name, n))
        return -EINVAL;
    if (name[0] == sep || name[n - 1] == sep)
        return -EINVAL;
    const char *level = name;
    for (const char *p = name;; p++) {
        unsigned char c = (unsigned char)*p;
        /* '%' and '*' are allowed (RFC 9051 5.1: awkward with LIST, but
         * valid, and a migrated account may hold them): names are never
         * sent as atoms, so they go out quoted. */
        if (c && (c < 0x20 || c == 0x7f || (sep == '.' && c == '/')))
            return -EINVAL;
        if (c == (unsigned char)sep || c == '\0') {
            size_t len = (size_t)(p - level);
            if (len == 0 || (len == 1 && level[0] == '.') ||
                (len == 2 && level[0] == '.' && level[1] == '.'))
                return -EINVAL;
            if (!c)
                break;
            level = p + 1;
        }
    }
    char *s = strdup(name);
    if (!s)
        return -ENOMEM;
    if (!strncasecmp(s, "INBOX", 5) && (s[5] == '\0' || s[5] == sep))
        memcpy(s, "INBOX", 5);
    *out = s;
    return 0;
}

static bool user_name_ok(const char *user)
{
    size_t n = strlen(user);
    if (n == 0 || n > 255 || !strcmp(user, ".") || !strcmp(user, ".."))
        return false;
    for (const unsigned char *p = (const unsigned char *)user; *p; p++)
        if (*p == '/' || *p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

/* ---- the list file -------------------------------------------------------------- */

static void list_clear(store_user *u)
{
    for (size_t i = 0; i < u->nboxes; i++)
        free(u->boxes[i].name);
    free(u->boxes);
    u->boxes = NULL;
    u->nboxes = 0;
    for (size_t i = 0; i < u->nsubs; i++)
        free(u->subs[i]);
    free(u->subs);
    u->subs = NULL;
    u->nsubs = 0;
}

static int push_box(store_user *u, const char *name, uint64_t id,
                    uint32_t uidvalidity, uint32_t special)
{
    struct mbox_entry *b = realloc(u->boxes, (u->nboxes + 1) * sizeof *b);
    if (!b)
        return -ENOMEM;
    u->boxes = b;
    char *nm = strdup(name);
    if (!nm)
        return -ENOMEM;
    b[u->nboxes++] = (struct mbox_entry){nm, id, uidvalidity, special, false};
    return 0;
}

/* A \Noselect name: no id, no files, only a place in the hierarchy. */
static int push_noselect(store_user *u, const char *name)
{
    int rc = push_box(u, name, 0, 0, 0);
    if (rc == 0)
        u->boxes[u->nboxes - 1].noselect = true;
    return rc;
}

static int push_sub(store_user *u, const char *name)
{
    char **s = realloc(u->subs, (u->nsubs + 1) * sizeof *s);
    if (!s)
        return -ENOMEM;
    u->subs = s;
    if (!(s[u->nsubs] = strdup(name)))
        return -ENOMEM;
    u->nsubs++;
    return 0;
}

static void list_path(const store_user *u, char *buf, size_t n)
{
    snprintf(buf, n, "%s/mailboxes", u->root);
}

static int user_mbox_dir(struct store_user *u, uint64_t id, char **out)
{
    char buf[PATH_MAX];
    if ((size_t)snprintf(buf, sizeof buf, "%s/m/%" PRIu64, u->root, id) >= sizeof buf)
        return -ENAMETOOLONG;
    return (*out = strdup(buf)) ? 0 : -ENOMEM;
}

/* One decimal number and the single space after it; NULL if malformed. */
static const char *parse_num_sp(const char *p, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    const char *start = p;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (max - (uint64_t)(*p - '0')) / 10)
            return NULL;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (p == start || *p != ' ')
        return NULL;
    *out = v;
    return p + 1;
}

/* "<id> <uidvalidity> <special> <name>" after the "M ": exactly one space
 * after each number, and the name is everything after the third one, to the
 * end of the line.  sscanf's " %n" would skip a name's leading spaces, and a
 * name may begin with a space (or be one), so the name is never tokenized.
 * Names hold no control characters (name_canon), so a line cannot hold a
 * newline of a name. */
static const char *parse_box_line(const char *p, uint64_t *id, uint32_t *uv,
                                  uint32_t *special)
{
    uint64_t a, b, c;
    if (!(p = parse_num_sp(p, UINT64_MAX, &a)) ||
        !(p = parse_num_sp(p, UINT32_MAX, &b)) ||
        !(p = parse_num_sp(p, UINT32_MAX, &c)))
        return NULL;    /* an empty name is repaired by repair_names() */
    *id = a;
    *uv = (uint32_t)b;
    *special = (uint32_t)c;
    return p;
}

static int box_order(const void *a, const void *b, void *arg)
{
    const struct mbox_entry *v = arg;
    const struct mbox_entry *x = &v[*(const size_t *)a], *y = &v[*(const size_t *)b];
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    if (x->noselect != y->noselect)
        return x->noselect ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Give box i the name "<old>-<id>" ("mailbox-<id>" for an empty one), made
 * unique with a further "-<k>" if need be. */
static int rename_apart(store_user *u, size_t i)
{
    struct mbox_entry *b = &u->boxes[i];
    const char *stem = b->name[0] ? b->name : "mailbox";
    size_t cap = strlen(stem) + 48;
    char *nm = malloc(cap);
    if (!nm)
        return -ENOMEM;
    for (unsigned k = 0;; k++) {
        if (k == 0)
            snprintf(nm, cap, "%s-%" PRIu64, stem, b->id);
        else
            snprintf(nm, cap, "%s-%" PRIu64 "-%u", stem, b->id, k);
        bool taken = false;
        for (size_t j = 0; j < u->nboxes && !taken; j++)
            taken = !strcmp(u->boxes[j].name, nm);
        if (!taken)
            break;
    }
    free(b->name);
    b->name = nm;
    return 0;
}

/* Names in the list are unique and never empty as the store makes them, but
 * a list saved by an earlier version, whose loader dropped a name's leading
 * spaces, can hold "" (from " ") and duplicates (" Work" saved as "Work"):
 * the later ones were unreachable, and deleting the name deleted the other
 * mailbox's files.  Each such mailbox gets a name of its own, "<name>-<id>",
 * so it can be read, renamed or deleted again; of duplicates, the oldest
 * mailbox (lowest id) keeps the name.  The repair depends on the file only,
 * so every process makes the same one; the next change saves it. */
static int repair_names(store_user *u)
{
    size_t n = u->nboxes;
    size_t *ix = malloc((n ? n : 1) * sizeof *ix);
    if (!ix)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        ix[i] = i;
    qsort_r(ix, n, sizeof *ix, box_order, u->boxes);
    size_t nfix = 0;
    for (size_t i = 0; i < n; i++) {
        bool dup = i > 0 && !strcmp(u->boxes[ix[i]].name, u->boxes[ix[i - 1]].name);
        if (dup || !u->boxes[ix[i]].name[0])
            ix[nfix++] = ix[i];     /* ix[0..nfix) are the ones to rename */
    }
    /* Rename in id order, so that the result does not depend on qsort. */
    int rc = 0;
    for (size_t done = 0; rc == 0 && done < nfix; done++) {
        size_t best = done;
        for (size_t k = done + 1; k < nfix; k++)
            if (u->boxes[ix[k]].id < u->boxes[ix[best]].id)
                best = k;
        size_t t = ix[done];
        ix[done] = ix[best];
        ix[best] = t;
        rc = rename_apart(u, ix[done]);
    }
    free(ix);
    return rc;
}

static int list_load(store_user *u)
{
    char path[PATH_MAX];
    list_path(u, path, sizeof path);
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    if (u->boxes && st.st_ino == u->list_ino && st.st_size == u->list_size &&
        st.st_mtim.tv_sec == u->list_mtime.tv_sec &&
        st.st_mtim.tv_nsec == u->list_mtime.tv_nsec)
        return 0;
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    list_clear(u);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0, lineno = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] == '\n')
            line[--len] = '\0';
        lineno++;
        uint64_t id;
        uint32_t uv, sp;
        if (lineno == 1) {
            if (strcmp(line, LIST_MAGIC)) {
                rc = -EBADMSG;
                break;
            }
        } else if (sscanf(line, "next_id %" SCNu64, &id) == 1) {
            u->next_id = id;
        } else if (sscanf(line, "last_uidvalidity %" SCNu32, &uv) == 1) {
            u->last_uidvalidity = uv;
        } else if (!strncmp(line, "M ", 2)) {
            const char *name = parse_box_line(line + 2, &id, &uv, &sp);
            rc = name ? push_box(u, name, id, uv, sp) : -EBADMSG;
        } else if (!strncmp(line, "N ", 2) && line[2]) {
            rc = push_noselect(u, line + 2);
        } else if (line[0] == 'S' && line[1] == ' ') {
            rc = push_sub(u, line + 2);
        } else if (len) {
            rc = -EBADMSG;
        }
        if (rc < 0)
            break;
    }
    free(line);
    fclose(f);
    if (rc == 0)
        rc = repair_names(u);
    if (rc == 0) {
        u->list_ino = st.st_ino;
        u->list_size = st.st_size;
        u->list_mtime = st.st_mtim;
    }
    return rc;
}

static int list_save(store_user *u)
{
    char path[PATH_MAX];
    list_path(u, path, sizeof path);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return -ENOMEM;
    fprintf(f, "%s\nnext_id %" PRIu64 "\nlast_uidvalidity %u\n", LIST_MAGIC,
            u->next_id, u->last_uidvalidity);
    for (size_t i = 0; i < u->nboxes; i++) {
        const struct mbox_entry *b = &u->boxes[i];
        if (b->noselect)
            fprintf(f, "N %s\n", b->name);
        else
            fprintf(f, "M %" PRIu64 " %u %u %s\n", b->id, b->uidvalidity,
                    b->special, b->name);
    }
    for (size_t i = 0; i < u->nsubs; i++)
        fprintf(f, "S %s\n", u->subs[i]);
    if (fclose(f) != 0) {
        free(buf);
        return -ENOMEM;
    }
    int rc = store_fs_write_atomic(path, buf, len);
    free(buf);
    if (rc == 0) {
        struct stat st;
        if (stat(path, &st) == 0) {
            u->list_ino = st.st_ino;
            u->list_size = st.st_size;
            u->list_mtime = st.st_mtim;
        }
    }
    return rc;
}

/* Lock the list for a change or a consistent read. */
static int ulock(store_user *u)
{
    pthread_mutex_lock(&u->lock);
    if (flock(u->lock_fd, LOCK_EX) < 0) {
        int rc = -errno;
        pthread_mutex_unlock(&u->lock);
        return rc;
    }
    int rc = list_load(u);
    if (rc < 0) {
        flock(u->lock_fd, LOCK_UN);
        pthread_mutex_unlock(&u->lock);
    }
    return rc;
}

static void uunlock(store_user *u)
{
    flock(u->lock_fd, LOCK_UN);
    pthread_mutex_unlock(&u->lock);
}

/* Lock the list for a change: -EROFS while the user is frozen (freeze.c:
 * looked for under the lock, so the freezer's barrier covers it). */
static int ulock_w(store_user *u)
{
    int rc = ulock(u);
    if (rc == 0 && (rc = store_user_check_frozen(u->root)) < 0)
        uunlock(u);
    return rc;
}

static struct mbox_entry *find_box(store_user *u, const char *canon)
{
    for (size_t i = 0; i < u->nboxes; i++)
        if (!strcmp(u->boxes[i].name, canon))
            return &u->boxes[i];
    return NULL;
}

static bool is_child(const char *name, const char *parent, char sep)
{
    size_t n = strlen(parent);
    return !strncmp(name, parent, n) && name[n] == sep;
}

static uint32_t new_uidvalidity(store_user *u)
{
    uint32_t now = (uint32_t)time(NULL);
    u->last_uidvalidity = now > u->last_uidvalidity ? now : u->last_uidvalidity + 1;
    return u->last_uidvalidity;
}

/* A new mailbox's directory and empty log, under a fresh id and the
 * UIDVALIDITY *uv, or a fresh one when *uv is 0 (the list is saved by the
 * caller).  A given UIDVALIDITY (a migrated mailbox) moves the user's
 * last one up to it, so that a mailbox created later under a deleted one's
 * name still gets a greater value (RFC 3501 2.3.1.1). */
static int new_box_files(store_user *u, uint64_t *id, uint32_t *uv)
{
    *id = u->next_id++;
    if (!*uv)
        *uv = new_uidvalidity(u);
    else if (*uv > u->last_uidvalidity)
        u->last_uidvalidity = *uv;
    char *dir;
    int rc = user_mbox_dir(u, *id, &dir);
    if (rc < 0)
        return rc;
    /* A leftover directory of a crashed create is not ours to reuse. */
    store_fs_rmtree(dir);
    rc = store_mbox_create_files(dir, *id, *uv);
    if (rc < 0)
        store_fs_rmtree(dir);     /* a half-made one (a full disk) is nobody's */
    free(dir);
    return rc;
}

/* Add a mailbox (files first, the list is saved by the caller). */
static int add_box(store_user *u, const char *canon, uint32_t special)
{
    uint64_t id;
    uint32_t uv = 0;
    int rc = new_box_files(u, &id, &uv);
    if (rc == 0)
        rc = push_box(u, canon, id, uv, special);
    return rc;
}

/* Create missing parents of canon. */
static int add_parents(store_user *u, const char *canon)
{
    char sep = u->opts.separator;
    char *tmp = strdup(canon);
    if (!tmp)
        return -ENOMEM;
    int rc = 0;
    for (char *p = strchr(tmp, sep); p && rc == 0; p = strchr(p + 1, sep)) {
        *p = '\0';
        if (!find_box(u, tmp))
            rc = add_box(u, tmp, 0);
        *p = sep;
    }
    free(tmp);
    return rc;
}

/* ---- users -------------------------------------------------------------------- */

static void user_free(store_user *u)
{
    store_quota_free(u);
    pthread_mutex_destroy(&u->qlock);
    list_clear(u);
    if (u->lock_fd >= 0)
        close(u->lock_fd);
    pthread_mutex_destroy(&u->lock);
    free(u->root);
    free(u->key);
    free(u);
}

int store_user_open(const char *mail_root, const char *user,
                    const store_opts *opts, store_user **out)
{
    if (!mail_root || !*mail_root || !user_name_ok(user))
        return -EINVAL;
    store_opts o;
    if (opts)
        o = *opts;
    else
        store_opts_default(&o);
    if (o.separator != '/' && o.separator != '.')
        return -EINVAL;
    char key[PATH_MAX];
    if ((size_t)snprintf(key, sizeof key, "%s/%s", mail_root, user) >= sizeof key)
        return -ENAMETOOLONG;

    pthread_mutex_lock(&registry_lock);
    for (store_user *u = registry; u; u = u->next)
        if (!strcmp(u->key, key)) {
            u->refs++;
            pthread_mutex_unlock(&registry_lock);
            *out = u;
            return 0;
        }
    int rc = 0;
    store_user *u = calloc(1, sizeof *u);
    if (!u) {
        rc = -ENOMEM;
        goto out;
    }
    u->lock_fd = -1;
    u->refs = 1;
    u->opts = o;
    pthread_mutex_init(&u->lock, NULL);
    pthread_mutex_init(&u->qlock, NULL);
    u->key = strdup(key);
    u->root = strdup(key);
    if (!u->key || !u->root) {
        rc = -ENOMEM;
        goto fail;
    }
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/m", u->root);
    if ((rc = store_fs_mkdirs(path, 0700)) < 0)
        goto fail;
    snprintf(path, sizeof path, "%s/lock", u->root);
    u->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (u->lock_fd < 0) {
        rc = -errno;
        goto fail;
    }
    if (flock(u->lock_fd, LOCK_EX) < 0) {
        rc = -errno;
        goto fail;
    }
    list_path(u, path, sizeof path);
    if (access(path, F_OK) != 0) {
        /* First use: an INBOX. */
        u->next_id = 1;
        if ((rc = add_box(u, "INBOX", 0)) == 0)
            rc = list_save(u);
    } else {
        rc = list_load(u);
    }
    flock(u->lock_fd, LOCK_UN);
    if (rc < 0)
        goto fail;
    u->next = registry;
    registry = u;
    *out = u;
    goto out;
fail:
    user_free(u);
out:
    pthread_mutex_unlock(&registry_lock);
    return rc;
}

void store_user_close(store_user *u)
{
    if (!u)
        return;
    pthread_mutex_lock(&registry_lock);
    RM_ASSERT(u->refs > 0);
    bool last = --u->refs == 0;
    if (last)
        for (store_user **pp = &registry; *pp; pp = &(*pp)->next)
            if (*pp == u) {
                *pp = u->next;
                break;
            }
    pthread_mutex_unlock(&registry_lock);
    if (!last)
        return;
    /* Nobody can find the user now; what is left open is lingering. */
    for (store_mbox *m = u->open, *nx; m; m = nx) {
        nx = m->next;
        store_mbox_destroy(m);
    }
    u->open = NULL;
    user_free(u);
}

/* ---- mailbox list operations -------------------------------------------------- */

static int info_fill(store_user *u, const struct mbox_entry *b,
                     store_mailbox_info *out)
{
    out->name = strdup(b->name);
    if (!out->name)
        return -ENOMEM;
    out->id = b->id;
    out->uidvalidity = b->uidvalidity;
    out->special = b->special;
    out->noselect = b->noselect;
    out->subscribed = false;
    for (size_t i = 0; i < u->nsubs; i++)
        if (!strcmp(u->subs[i], b->name))
            out->subscribed = true;
    return 0;
}

static int info_cmp(const void *a, const void *b)
{
    const store_mailbox_info *x = a, *y = b;
    bool xi = !strcmp(x->name, "INBOX"), yi = !strcmp(y->name, "INBOX");
    if (xi != yi)
        return xi ? -1 : 1;
    return strcmp(x->name, y->name);
}

void store_mailbox_info_free(store_mailbox_info *v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i].name);
    free(v);
}

static int list_boxes(store_user *u, bool noselect, store_mailbox_info **out,
                      size_t *n)
{
    int rc = ulock(u);
    if (rc < 0)
        return rc;
    store_mailbox_info *v = calloc(u->nboxes ? u->nboxes : 1, sizeof *v);
    size_t k = 0;
    if (!v)
        rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < u->nboxes; i++)
        if (noselect || !u->boxes[i].noselect)
            if ((rc = info_fill(u, &u->boxes[i], &v[k])) == 0)
                k++;
    uunlock(u);
    if (rc < 0) {
        store_mailbox_info_free(v, k);
        return rc;
    }
    qsort(v, k, sizeof *v, info_cmp);
    *out = v;
    *n = k;
    return 0;
}

int store_mailbox_list(store_user *u, store_mailbox_info **out, size_t *n)
{
    return list_boxes(u, false, out, n);
}

int store_mailbox_list_all(store_user *u, store_mailbox_info **out, size_t *n)
{
    return list_boxes(u, true, out, n);
}

int store_mailbox_get(store_user *u, const char *name, store_mailbox_info *out)
{
    char *canon;
    int rc = name_canon(u, name, &canon);
    if (rc < 0)
        return rc;
    if ((rc = ulock(u)) < 0) {
        free(canon);
        return rc;
    }
    struct mbox_entry *b = find_box(u, canon);
    rc = b && !b->noselect ? info_fill(u, b, out) : -ENOENT;
    uunlock(u);
    free(canon);
    return rc;
}

int store_mailbox_create(store_user *u, const char *name, uint32_t special)
{
    if (special & ~STORE_SPECIAL_ALL)
        return -EINVAL;
    char *canon;
    int rc = name_canon(u, name, &canon);
    if (rc < 0)
        return rc;
    if ((rc = ulock_w(u)) < 0) {
        free(canon);
        return rc;
    }
    struct mbox_entry *b = find_box(u, canon);
    if (b && b->noselect) {
        /* CREATE of a \Noselect name makes it a mailbox again (RFC 3501
         * 6.3.4), a new one: fresh id and UIDVALIDITY. */
        uint64_t id;
        uint32_t uv = 0;
        if ((rc = new_box_files(u, &id, &uv)) == 0) {
            b = find_box(u, canon);
            *b = (struct mbox_entry){b->name, id, uv, special, false};
            rc = list_save(u);
        }
    } else if (b) {
        rc = -EEXIST;
    } else if ((rc = add_parents(u, canon)) == 0 && (rc = add_box(u, canon, special)) == 0) {
        rc = list_save(u);
    }
    if (rc < 0 && rc != -EEXIST)
        u->list_size = -1;  /* force a reload: memory may be ahead of disk */
    uunlock(u);
    free(canon);
    return rc;
}

/* Is the mailbox `canon` (id `id`) empty and has it never held a message?
 * Called without the list lock (opening a mailbox may rebuild its index);
 * the caller checks under the lock that the name still has that id. */
static int box_pristine(store_user *u, const char *canon, uint64_t *id)
{
    store_mbox *mb;
    int rc = store_mbox_open(u, canon, &mb);
    if (rc < 0)
        return rc;
    store_status st;
    if ((rc = store_mbox_status(mb, &st)) == 0) {
        *id = mb->id;
        rc = st.messages == 0 && st.uidnext == 1;
    }
    store_mbox_close(mb);
    return rc;
}

int store_mailbox_create_uv(store_user *u, const char *name, uint32_t special,
                            uint32_t uidvalidity)
{
    if ((special & ~STORE_SPECIAL_ALL) || uidvalidity == 0)
        return -EINVAL;
    char *canon;
    int rc = name_canon(u, name, &canon);
    if (rc < 0)
        return rc;
    store_mailbox_info cur;
    uint64_t old_id = 0;
    int pristine = 0;
    if ((rc = store_mailbox_get(u, canon, &cur)) == 0) {
        free(cur.name);
        if (cur.uidvalidity == uidvalidity) {
            rc = -EEXIST;   /* already this one: the caller goes on with it */
            goto done;
        }
        if ((pristine = box_pristine(u, canon, &old_id)) < 0) {
            rc = pristine;
            goto done;
        }
        if (!pristine) {
            rc = -EEXIST;   /* it holds (or held) messages under another UIDVALIDITY */
            goto done;
        }
    } else if (rc != -ENOENT) {
        goto done;
    }
    if ((rc = ulock_w(u)) < 0)
        goto done;
    struct mbox_entry *b = find_box(u, canon);
    if (b && !b->noselect && (!pristine || b->id != old_id)) {
        rc = -EEXIST;       /* created or replaced meanwhile: not ours to change */
    } else if (b) {
        /* A \Noselect name, or an untouched mailbox (INBOX made on first
         * use): new files under the given UIDVALIDITY replace it, as a
         * DELETE and CREATE would.  Open handles keep the old, empty files. */
        uint64_t id;
        uint32_t uv = uidvalidity;
        uint64_t gone = b->noselect ? 0 : b->id;
        if ((rc = new_box_files(u, &id, &uv)) == 0) {
            b = find_box(u, canon);
            *b = (struct mbox_entry){b->name, id, uv, special ? special : b->special, false};
            rc = list_save(u);
        }
        char *dir;
        if (rc == 0 && gone && user_mbox_dir(u, gone, &dir) == 0) {
            store_fs_rmtree(dir);
            free(dir);
        }
    } else if ((rc = add_parents(u, canon)) == 0) {
        uint64_t id;
        uint32_t uv = uidvalidity;
        if ((rc = new_box_files(u, &id, &uv)) == 0 &&
            (rc = push_box(u, canon, id, uv, special)) == 0)
            rc = list_save(u);
    }
    if (rc < 0 && rc != -EEXIST)
        u->list_size = -1;  /* force a reload: memory may be ahead of disk */
    uunlock(u);
done:
    free(canon);
    return rc;
}

int store_mailbox_delete(store_user *u, const char *name)
{
    return store_mailbox_delete_ext(u, name, 0);
}

int store_mailbox_delete_ext(store_user *u, const char *name, unsigned flags)
{
    char *canon;
    int rc = name_canon(u, name, &canon);
    if (rc < 0)
        return rc;
    if (!strcmp(canon, "INBOX")) {
        free(canon);
        return -EPERM;
    }
    if ((rc = ulock_w(u)) < 0) {
        free(canon);
        return rc;
    }
    struct mbox_entry *b = find_box(u, canon);
    if (!b) {
        rc = -ENOENT;
        goto out;
    }
    bool children = false;
    for (size_t i = 0; i < u->nboxes; i++)
        if (is_child(u->boxes[i].name, canon, u->opts.separator))
            children = true;
    /* RFC 3501 6.3.4: a mailbox with inferiors loses its messages and
     * keeps its name as \Noselect; a \Noselect name with inferiors cannot
     * be deleted. */
    if (children && (b->noselect || !(flags & STORE_DELETE_KEEP_PARENT))) {
        rc = -ENOTEMPTY;
        goto out;
    }
    uint64_t id = b->id;
    bool files = !b->noselect;
    if (children) {
        b->noselect = true;
        b->id = 0;
        b->uidvalidity = 0;
        b->special = 0;
    } else {
        free(b->name);
        *b = u->boxes[--u->nboxes];
    }
    if ((rc = list_save(u)) < 0) {
        u->list_size = -1;
        goto out;
    }
    char *dir;
    if (files && user_mbox_dir(u, id, &dir) == 0) {
        store_fs_rmtree(dir);     /* the list no longer names it: best effort */
        free(dir);
    }
out:
    uunlock(u);
    free(canon);
    return rc;
}

int store_mailbox_rename(store_user *u, const char *from, const char *to)
{
    char *cf = NULL, *ct = NULL;
    char sep = u->opts.separator;
    int rc = name_canon(u, from, &cf);
    if (rc == 0)
        rc = name_canon(u, to, &ct);
    if (rc < 0)
        goto done;
    if ((rc = ulock_w(u)) < 0)
        goto done;
    struct mbox_entry *b = find_box(u, cf);
    bool inbox = !strcmp(cf, "INBOX");
    if (!b) {
        rc = -ENOENT;
        goto out;
    }
    if (!strcmp(cf, ct) || (!inbox && is_child(ct, cf, sep))) {
        rc = -EINVAL;
        goto out;
    }
    if (find_box(u, ct)) {
        rc = -EEXIST;
        goto out;
    }
    size_t nf = strlen(cf);
    if (!inbox) {
        for (size_t i = 0; i < u->nboxes; i++) {
            if (!is_child(u->boxes[i].name, cf, sep))
                continue;
            char buf[PATH_MAX];
            snprintf(buf, sizeof buf, "%s%s", ct, u->boxes[i].name + nf);
            if (strlen(buf) > STORE_MAX_NAME_LEN) {
                rc = -EINVAL;
                goto out;
            }
            if (find_box(u, buf)) {
                rc = -EEXIST;
                goto out;
            }
        }
    }
    if ((rc = add_parents(u, ct)) < 0)
        goto fail;
    b = find_box(u, cf);
    if (inbox) {
        /* RFC 3501: INBOX's messages move to the new name, INBOX stays,
         * empty, and its children stay where they are. */
        char *nm = strdup(ct);
        if (!nm) {
            rc = -ENOMEM;
            goto fail;
        }
        free(b->name);
        b->name = nm;
        if ((rc = add_box(u, "INBOX", 0)) < 0)
            goto fail;
    } else {
        for (size_t i = 0; i < u->nboxes; i++) {
            struct mbox_entry *e = &u->boxes[i];
            if (strcmp(e->name, cf) && !is_child(e->name, cf, sep))
                continue;
            size_t len = strlen(ct) + strlen(e->name) - nf + 1;
            char *nm = malloc(len);
            if (!nm) {
                rc = -ENOMEM;
                goto fail;
            }
            snprintf(nm, len, "%s%s", ct, e->name + nf);
            free(e->name);
            e->name = nm;
        }
    }
    if ((rc = list_save(u)) == 0)
        goto out;
fail:
    u->list_size = -1;
out:
    uunlock(u);
done:
    free(cf);
    free(ct);
    return rc;
}

int store_mailbox_subscribe(store_user *u, const char *name, bool on)
{
    char *canon;
    int rc = name_canon(u, name, &canon);
    if (rc < 0)
        return rc;
    if ((rc = ulock_w(u)) < 0) {
        free(canon);
        return rc;
    }
    size_t i;
    for (i = 0; i < u->nsubs; i++)
        if (!strcmp(u->subs[i], canon))
            break;
    if (on && i == u->nsubs)
        rc = push_sub(u, canon);
    else if (!on && i < u->nsubs) {
        free(u->subs[i]);
        u->subs[i] = u->subs[--u->nsubs];
    } else {
        goto out;   /* nothing to change */
    }
    if (rc == 0)
        rc = list_save(u);
    if (rc < 0)
        u->list_size = -1;
out:
    uunlock(u);
    free(canon);
    return rc;
}

int store_subscriptions(store_user *u, char ***names, size_t *n)
{
    int rc = ulock(u);
    if (rc < 0)
        return rc;
    char **v = calloc(u->nsubs ? u->nsubs : 1, sizeof *v);
    size_t k = 0;
    if (!v)
        rc = -ENOMEM;
    for (; rc == 0 && k < u->nsubs; k++)
        if (!(v[k] = strdup(u->subs[k])))
            rc = -ENOMEM;
    uunlock(u);
    if (rc < 0) {
        for (size_t i = 0; i < k; i++)
            free(v[i]);
        free(v);
        return rc;
    }
    *names = v;
    *n = k;
    return 0;
}

int store_mailbox_set_special(store_user *u, const char *name, uint32_t special)
{
    if (special & ~STORE_SPECIAL_ALL)
        return -EINVAL;
    char *canon;
    int rc = name_canon(u, name, &canon);
    if (rc < 0)
        return rc;
    if ((rc = ulock_w(u)) < 0) {
        free(canon);
        return rc;
    }
    struct mbox_entry *b = find_box(u, canon);
    if (!b || b->noselect)
        rc = -ENOENT;
    else {
        b->special = special;
        if ((rc = list_save(u)) < 0)
            u->list_size = -1;
    }
    uunlock(u);
    free(canon);
    return rc;
}

/* ---- opening mailboxes ------------------------------------------------------- */

int store_mbox_open(store_user *u, const char *name, store_mbox **out)
{
    char *canon;
    int rc = name_canon(u, name, &canon);
    if (rc < 0)
        return rc;
    if ((rc = ulock(u)) < 0) {
        free(canon);
        return rc;
    }
    struct mbox_entry *b = find_box(u, canon);
    free(canon);
    if (!b || b->noselect) {
        uunlock(u);
        return -ENOENT;     /* a \Noselect name has no messages to open */
    }
    uint64_t id = b->id;
    for (store_mbox *m = u->open; m; m = m->next)
        if (m->id == id) {
            if (atomic_fetch_add(&m->refs, 1) == 0) {
                /* A lingering one: it holds its user again. */
                m->lingering = false;
                u->nlinger--;
                pthread_mutex_lock(&registry_lock);
                u->refs++;
                pthread_mutex_unlock(&registry_lock);
            }
            uunlock(u);
            *out = m;
            return 0;
        }
    char *dir;
    if ((rc = user_mbox_dir(u, id, &dir)) == 0) {
        rc = store_mbox_open_dir(u, id, dir, out);
        free(dir);
    }
    if (rc == 0) {
        (*out)->next = u->open;
        u->open = *out;
        pthread_mutex_lock(&registry_lock);
        u->refs++;      /* the mailbox keeps its user alive */
        pthread_mutex_unlock(&registry_lock);
    }
    uunlock(u);
    return rc;
}

/* Mailboxes nobody holds stay open (mapped, index validated) while their
 * user is open, up to this many per user: APPEND and STATUS open and
 * close a mailbox per command, and opening costs a dozen system calls and
 * a checkpoint at the close. */
#define STORE_LINGER 8

store_mbox *store_mbox_dup(store_mbox *mb)
{
    store_user *u = mb->user;
    pthread_mutex_lock(&u->lock);
    RM_ASSERT(atomic_load(&mb->refs) > 0 && !mb->lingering);   /* an open handle */
    atomic_fetch_add(&mb->refs, 1);
    pthread_mutex_unlock(&u->lock);
    return mb;
}

void store_mbox_close(store_mbox *mb)
{
    if (!mb)
        return;
    store_user *u = mb->user;
    pthread_mutex_lock(&u->lock);
    RM_ASSERT(atomic_load(&mb->refs) > 0 && !mb->lingering);   /* an open handle */
    bool last = atomic_fetch_sub(&mb->refs, 1) == 1;
    bool linger = last && !mb->failed && u->nlinger < STORE_LINGER;
    if (linger) {
        mb->lingering = true;
        u->nlinger++;
    } else if (last) {
        for (store_mbox **pp = &u->open; *pp; pp = &(*pp)->next)
            if (*pp == mb) {
                *pp = mb->next;
                break;
            }
    }
    pthread_mutex_unlock(&u->lock);
    if (last) {
        if (!linger)
            store_mbox_destroy(mb);
        store_user_close(u);    /* a lingering mailbox does not hold its user */
    }
}

int store_mailbox_status(store_user *u, const char *name, store_status *st)
{
    store_mbox *mb;
    int rc = store_mbox_open(u, name, &mb);
    if (rc < 0)
        return rc;
    rc = store_mbox_status(mb, st);
    store_mbox_close(mb);
    return rc;
}

/* For store_user_orphans (check.c): the list, locked and current. */
int store_user_list_lock(store_user *u)
{
    return ulock(u);
}

void store_user_list_unlock(store_user *u)
{
    uunlock(u);
}

bool store_user_list_has_id(const store_user *u, uint64_t id)
{
    for (size_t i = 0; i < u->nboxes; i++)
        if (u->boxes[i].id == id)
            return true;
    return false;
}

int store_user_box_ids(store_user *u, uint64_t **ids, char ***names, size_t *n)
{
    *ids = NULL;
    *names = NULL;
    *n = 0;
    int rc = ulock(u);
    if (rc < 0)
        return rc;
    size_t k = 0;
    uint64_t *iv = malloc((u->nboxes ? u->nboxes : 1) * sizeof *iv);
    char **nv = calloc(u->nboxes ? u->nboxes : 1, sizeof *nv);
    if (!iv || !nv) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < u->nboxes; i++) {
        if (u->boxes[i].noselect || !u->boxes[i].id)
            continue;
        if (!(nv[k] = strdup(u->boxes[i].name))) {
            rc = -ENOMEM;
            goto out;
        }
        iv[k++] = u->boxes[i].id;
    }
out:
    uunlock(u);
    if (rc < 0) {
        for (size_t i = 0; nv && i < k; i++)
            free(nv[i]);
        free(nv);
        free(iv);
        return rc;
    }
    *ids = iv;
    *names = nv;
    *n = k;
    return 0;
}
