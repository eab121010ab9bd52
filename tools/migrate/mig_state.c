/* tools/migrate/mig_state.c — the migration's state file.
 *
 * One line per mailbox: "m UIDVALIDITY LAST_UID HIGHESTMODSEQ COPY_MODSEQ
 * NAME", the
 * name last so that it may hold spaces (no line breaks: the store refuses
 * control characters in names).  The file says what the previous run saw;
 * what is copied is read from the store itself, so a run killed between an
 * append and the state's rewrite repeats nothing and loses nothing. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/migrate/migrate.h"

#define STATE_MAGIC "ringmail-migrate-state 2"

int mig_state_load(mig_state *st, const char *path)
{
    memset(st, 0, sizeof *st);
    st->path = strdup(path);
    if (!st->path)
        return -ENOMEM;
    FILE *f = fopen(path, "re");
    if (!f)
        return errno == ENOENT ? 0 : -errno;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    bool first = true;
    while ((n = getline(&line, &cap, f)) > 0) {
        if (line[n - 1] == '\n')
            line[--n] = '\0';
        if (first) {
            first = false;
            if (strcmp(line, STATE_MAGIC) != 0) {
                rc = -EBADMSG;
                break;
            }
            continue;
        }
        unsigned uv, last;
        uint64_t hms, cms;
        int off = 0;
        if (sscanf(line, "m %u %u %" SCNu64 " %" SCNu64 " %n", &uv, &last, &hms, &cms,
                   &off) != 4 ||
            off == 0 || !line[off]) {
            rc = -EBADMSG;
            break;
        }
        mig_state_mbox *e = mig_state_add(st, line + off);
        if (!e) {
            rc = -ENOMEM;
            break;
        }
        e->uidvalidity = uv;
        e->last_uid = last;
        e->highestmodseq = hms;
        e->copy_modseq = cms;
    }
    free(line);
    fclose(f);
    return rc;
}

int mig_state_save(const mig_state *st)
{
    char tmp[4200];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", st->path) >= sizeof tmp)
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        return -errno;
    }
    fprintf(f, "%s\n", STATE_MAGIC);
    for (size_t i = 0; i < st->n; i++)
        fprintf(f, "m %u %u %" PRIu64 " %" PRIu64 " %s\n", st->v[i].uidvalidity,
                st->v[i].last_uid, st->v[i].highestmodseq, st->v[i].copy_modseq,
                st->v[i].name);
    int rc = 0;
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        rc = -errno;
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, st->path) != 0)
        rc = -errno;
    if (rc < 0) {
        unlink(tmp);
        return rc;
    }
    /* The rename itself durable: fsync the directory. */
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", st->path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        int dfd = open(*dir ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    return 0;
}

mig_state_mbox *mig_state_find(mig_state *st, const char *name)
{
    for (size_t i = 0; i < st->n; i++)
        if (strcmp(st->v[i].name, name) == 0)
            return &st->v[i];
    return NULL;
}

mig_state_mbox *mig_state_add(mig_state *st, const char *name)
{
    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 16;
        mig_state_mbox *v = realloc(st->v, cap * sizeof *v);
        if (!v)
            return NULL;
        st->v = v;
        st->cap = cap;
    }
    mig_state_mbox *e = &st->v[st->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    if (!e->name)
        return NULL;
    st->n++;
    return e;
}

void mig_state_remove(mig_state *st, mig_state_mbox *e)
{
    size_t i = (size_t)(e - st->v);
    free(e->name);
    memmove(&st->v[i], &st->v[i + 1], (st->n - i - 1) * sizeof *e);
    st->n--;
}

void mig_state_free(mig_state *st)
{
    for (size_t i = 0; i < st->n; i++)
        free(st->v[i].name);
    free(st->v);
    free(st->path);
    memset(st, 0, sizeof *st);
}
