/* tools/admin_import_dovecot.c — `import USER --dovecot-maildir DIR`: a
 * whole Dovecot account stored as Maildir++ (mail_location = maildir:DIR,
 * its default layout), keeping what IMAP clients cache.
 *
 * Each folder (DIR itself is INBOX, DIR/.a.b is a/b; with Dovecot's
 * LAYOUT=fs, `--layout fs`, DIR/a/b is a/b) becomes a mailbox with
 * the UIDVALIDITY of its dovecot-uidlist, every message keeps the UID the
 * uidlist gives its base name, and UIDNEXT becomes the uidlist's next UID,
 * so a client's cache (UIDVALIDITY, UIDs, and "nothing above UIDNEXT-1")
 * stays valid and it downloads nothing again.  Files the uidlist does not
 * name yet (delivered since Dovecot last looked) get the UIDs Dovecot would
 * have given them: from the next UID up, in its order of new files
 * (admin_maildir_name_cmp).  Flags and keyword letters come from the file
 * name (keyword letters through dovecot-keywords), INTERNALDATE from the
 * file's mtime, which is what Dovecot's Maildir reports as the received
 * date (in the local time zone, as Dovecot shows it).  Subscriptions come
 * from DIR/subscriptions.  With Dovecot's CONTROL=CDIR (`--control
 * CDIR`), the uidlists, keywords files and subscriptions are under CDIR,
 * in the folders' paths ("CDIR/.a.b", INBOX as "CDIR/.INBOX"; LAYOUT=fs:
 * "CDIR/a/b", "CDIR/INBOX").
 *
 * Dovecot keeps special-use attributes in its configuration, not in the
 * Maildir.  With --stock-special-use the names of its stock configuration
 * (conf.d/15-mailboxes.conf: Drafts, Junk, Trash, Sent, "Sent Messages")
 * get the attribute it gives them there; without, none is set.
 *
 * Running it again is an incremental import: a mailbox that exists with
 * the Maildir's UIDVALIDITY gets only the messages whose UIDs are at or
 * above its UIDNEXT (the Maildir grew since); one with another UIDVALIDITY
 * that holds or held messages is left alone with an error, since merging
 * two UID spaces would break what clients cached.  A folder whose uidlist
 * is corrupt is left alone with an error (deleting the file imports it
 * with new UIDs, as Dovecot itself would rebuild it); a folder without a
 * uidlist is imported with new UIDs and a warning.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "tools/admin_dovecot.h"
#include "tools/admin_import.h"
#include "tools/admin_maildir.h"

struct dmsg {
    const char *path;       /* owned by the folder's scan */
    const char *base;       /* the file name, inside path */
    admin_maildir_name nm;
    int64_t mtime;
    uint32_t uid;
};

struct folder {
    char *dir;              /* the Maildir */
    char *ctl;              /* where its dovecot-uidlist and -keywords are */
    char *name;             /* the mailbox */
    admin_maildir_entry *files;
    size_t nfiles;
};

struct urec {
    const char *name;       /* inside the uidlist's buffer */
    size_t len;
    uint32_t uid;
};

typedef struct import_state {
    store_user *u;
    admin_batch *b;
    admin_progress pr;
    uint64_t seen;          /* messages looked at, for the progress bar */
    uint64_t skipped;       /* already imported by an earlier run */
    unsigned failed;        /* folders left (partly) undone */
    bool stock_special;     /* --stock-special-use */
    admin_buf file, list;
} import_state;

static int urec_cmp(const void *a, const void *b)
{
    const struct urec *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->name, y->name, n);
    if (c)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

static int urec_cmp_uid(const void *a, const void *b)
{
    int c = urec_cmp(a, b);
    if (c)
        return c;
    const struct urec *x = a, *y = b;
    return x->uid < y->uid ? -1 : x->uid > y->uid;
}

static int dmsg_uid_cmp(const void *a, const void *b)
{
    const struct dmsg *x = a, *y = b;
    return x->uid < y->uid ? -1 : x->uid > y->uid;
}

static int dmsg_new_cmp(const void *a, const void *b)
{
    const struct dmsg *x = a, *y = b;
    return admin_maildir_name_cmp(x->base, y->base);
}

/* A keyword Ringmail can store and IMAP can name: an atom (RFC 3501
 * "flag-keyword = atom"), not a system flag. */
static bool keyword_ok(const char *s, size_t len)
{
    if (len == 0 || len > STORE_MAX_KEYWORD_LEN || s[0] == '\\')
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || strchr("(){%*\"\\]", c))
            return false;
    }
    return true;
}

/* Iterate over the lines of buf: *line and *len, 1; 0 at the end. */
static int next_line(const admin_buf *buf, size_t *pos, const char **line, size_t *len)
{
    if (*pos >= buf->len)
        return 0;
    const char *p = buf->data + *pos;
    const char *nl = memchr(p, '\n', buf->len - *pos);
    *line = p;
    *len = nl ? (size_t)(nl - p) : buf->len - *pos;
    *pos += *len + (nl ? 1 : 0);
    return 1;
}

/* The control file `name` of a folder into st->list, its path into path:
 * 1, 0 if there is none, -errno after reporting. */
static int read_ctl_file(import_state *st, const struct folder *f, const char *name,
                         char path[4096])
{
    snprintf(path, 4096, "%s/%s", f->ctl, name);
    int r = admin_read_file(path, &st->list);
    if (r == -ENOENT)
        return 0;
    if (r < 0) {
        admin_err("cannot read '%s': %s", path, strerror(-r));
        return r;
    }
    return 1;
}

/* dovecot-keywords into kw[] (strdup'd names); a missing file is no
 * keywords.  Bad lines are warned about and left out. */
static int read_keywords(import_state *st, const struct folder *f,
                         char *kw[ADMIN_BATCH_KEYWORDS])
{
    char path[4096];
    int r = read_ctl_file(st, f, "dovecot-keywords", path);
    if (r <= 0)
        return r;
    size_t pos = 0, len, nlen, lineno = 0;
    const char *line, *name;
    unsigned idx;
    while (next_line(&st->list, &pos, &line, &len)) {
        lineno++;
        if (len == 0)
            continue;
        if (admin_dovecot_keyword(line, len, &idx, &name, &nlen) < 0) {
            admin_err("warning: '%s' line %zu is not \"<index> <keyword>\"; left out",
                      path, lineno);
            continue;
        }
        if (idx >= ADMIN_BATCH_KEYWORDS)
            continue;       /* no file name letter can name it */
        if (!keyword_ok(name, nlen)) {
            admin_err("warning: '%s' line %zu: '%.*s' is not an IMAP keyword; left out",
                      path, lineno, (int)nlen, name);
            continue;
        }
        free(kw[idx]);
        if (!(kw[idx] = strndup(name, nlen)))
            return -ENOMEM;
    }
    return 0;
}

/* dovecot-uidlist: 1 and *h, *recs (sorted by name, pointing into
 * st->list), or 0 if there is none; -errno after reporting. */
static int read_uidlist(import_state *st, const struct folder *f,
                        admin_uidlist_hdr *h, struct urec **recs, size_t *n)
{
    char path[4096];
    int r = read_ctl_file(st, f, "dovecot-uidlist", path);
    if (r <= 0)
        return r;
    const char *hint = "; mailbox left alone (without the file its messages are "
                       "imported with new UIDs, as Dovecot would rebuild it)";
    size_t pos = 0, len, lineno = 1, cap = 0;
    const char *line;
    if (!next_line(&st->list, &pos, &line, &len) ||
        (r = admin_uidlist_header(line, len, h)) < 0) {
        admin_err("'%s': %s%s", path, r == -ENOTSUP
                  ? "a uidlist version other than 1 and 3"
                  : "line 1 is not a uidlist header (\"3 V<uidvalidity> N<nextuid> ...\")",
                  hint);
        return -EINVAL;
    }
    struct urec *v = NULL;
    size_t cnt = 0;
    uint32_t prev = 0;
    while (next_line(&st->list, &pos, &line, &len)) {
        lineno++;
        if (len == 0)
            continue;
        admin_uidlist_rec rec;
        if (admin_uidlist_record(h->version, line, len, &rec) < 0 || rec.uid <= prev) {
            admin_err("'%s' line %zu: %s: '%.*s'%s", path, lineno,
                      rec.uid && rec.uid <= prev ? "UID not above the one before"
                                                 : "not \"<uid> [<ext>...] :<file name>\"",
                      (int)(len > 120 ? 120 : len), line, hint);
            free(v);
            return -EINVAL;
        }
        prev = rec.uid;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 1024;
            struct urec *nv = realloc(v, cap * sizeof *nv);
            if (!nv) {
                free(v);
                admin_err("out of memory");
                return -ENOMEM;
            }
            v = nv;
        }
        v[cnt++] = (struct urec){ rec.name, rec.name_len, rec.uid };
    }
    /* Dovecot appends records without rewriting the header, and a
     * listed message may be gone: no UID listed is ever given again. */
    if (prev >= h->nextuid)
        h->nextuid = prev + 1;
    /* A file listed twice (Dovecot appends a line when an expunged file
     * comes back) has the UID of its last line, as Dovecot reads it. */
    size_t out = 0;
    if (cnt)
        qsort(v, cnt, sizeof *v, urec_cmp_uid);
    for (size_t i = 0; i < cnt; i++) {
        if (i + 1 < cnt && urec_cmp(&v[i], &v[i + 1]) == 0)
            continue;
        v[out++] = v[i];
    }
    *recs = v;
    *n = out;
    return 1;
}

/* HIGHESTMODSEQ of an imported mailbox, at least (prepare_mailbox). */
#define IMPORT_MODSEQ_FLOOR (1ull << 32)

/* Create the mailbox, or find it ready for more; -errno after reporting. */
static int prepare_mailbox(import_state *st, const struct folder *f, bool have_uv,
                           uint32_t uv, store_mbox **mb, store_status *ss)
{
    int r = have_uv ? store_mailbox_create_uv(st->u, f->name, 0, uv)
                    : store_mailbox_create(st->u, f->name, 0);
    if (r < 0 && r != -EEXIST) {
        admin_mailbox_error(f->name, r);
        return r;
    }
    if ((r = store_mbox_open(st->u, f->name, mb)) < 0 ||
        (r = store_mbox_status(*mb, ss)) < 0) {
        admin_mailbox_error(f->name, r);
        return r;
    }
    if (have_uv && ss->uidvalidity != uv) {
        admin_err("mailbox '%s' exists with UIDVALIDITY %u and holds or held messages; "
                  "the Maildir '%s' has UIDVALIDITY %u: left alone (delete the mailbox "
                  "to import it)", f->name, ss->uidvalidity, f->dir, uv);
        return -EEXIST;
    }
    if (!have_uv && ss->uidnext > 1) {
        admin_err("mailbox '%s' holds or held messages and '%s' has no dovecot-uidlist "
                  "to tell which are new: left alone", f->name, f->dir);
        return -EEXIST;
    }
    /* Dovecot's mod-sequences live in its binary index, not in the
     * Maildir.  A CONDSTORE/QRESYNC client holds one of them and asks for
     * the changes since: every message imported must have a greater one,
     * so that such a client refetches the flags once (never a body)
     * instead of missing changes.  Dovecot counts its mod-sequences one
     * change at a time from 1: none reaches 2^32. */
    if (have_uv && ss->highestmodseq < IMPORT_MODSEQ_FLOOR &&
        (r = store_mbox_set_highestmodseq(*mb, IMPORT_MODSEQ_FLOOR)) < 0) {
        admin_mailbox_error(f->name, r);
        return r;
    }
    return 0;
}

/* Dovecot's stock special-use names (conf.d/15-mailboxes.conf). */
static const struct {
    const char *name;
    uint32_t use;
} stock_special[] = {
    { "Drafts", STORE_SPECIAL_DRAFTS }, { "Junk", STORE_SPECIAL_JUNK },
    { "Trash", STORE_SPECIAL_TRASH }, { "Sent", STORE_SPECIAL_SENT },
    { "Sent Messages", STORE_SPECIAL_SENT },
};

static int set_stock_special(import_state *st, const char *name)
{
    for (size_t i = 0; i < sizeof stock_special / sizeof *stock_special; i++) {
        if (strcmp(name, stock_special[i].name) != 0)
            continue;
        store_mailbox_info info;
        int r = store_mailbox_get(st->u, name, &info);
        if (r == 0) {
            free(info.name);
            r = store_mailbox_set_special(st->u, name, info.special | stock_special[i].use);
        }
        if (r < 0)
            admin_mailbox_error(name, r);
        return r;
    }
    return 0;
}

/* The zone of the local time at t, minutes east of UTC: Dovecot's
 * Maildir has no zone for a received date and shows it in the server's
 * local time, and so must we for INTERNALDATE to read the same. */
static int16_t local_zone(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!localtime_r(&tt, &tm))
        return 0;
    long min = tm.tm_gmtoff / 60;
    return min > -1440 && min < 1440 ? (int16_t)min : 0;
}

/* Bare LFs, which the import turns into CRLF: RFC822.SIZE = len + this. */
static uint64_t bare_lfs(const char *p, size_t len)
{
    uint64_t n = 0;
    for (const char *q = p; (q = memchr(q, '\n', len - (size_t)(q - p))); q++)
        if (q == p || q[-1] != '\r')
            n++;
    return n;
}

/* The file of base name base[0, len) in dir's cur/ or new/ now, malloc'd,
 * or NULL: a message whose flags a running Dovecot changed after the scan
 * has another name, and the same base. */
static char *find_moved(const char *dir, const char *base, size_t len)
{
    static const char *const subs[] = { "cur", "new" };
    char *found = NULL;
    for (size_t i = 0; i < 2 && !found; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, subs[i]);
        DIR *d = opendir(path);
        if (!d)
            continue;
        struct dirent *de;
        while (!found && (de = readdir(d))) {
            admin_maildir_name nm;
            if (strncmp(de->d_name, base, len) != 0)
                continue;
            admin_maildir_name_parse(de->d_name, &nm);
            char *p;    /* not &found: gcc 12 then takes found for a pointer to itself */
            if (nm.base_len == len && asprintf(&p, "%s/%s", path, de->d_name) >= 0)
                found = p;
        }
        closedir(d);
    }
    return found;
}

static int import_folder(import_state *st, struct folder *f)
{
    int ret = 0;
    admin_uidlist_hdr h = { 0 };
    struct urec *recs = NULL;
    size_t nrecs = 0;
    struct dmsg *m = NULL;
    char *kw[ADMIN_BATCH_KEYWORDS] = { 0 };
    store_mbox *mb = NULL;
    admin_batch *b = st->b;
    uint64_t done0 = b->done, sizes_off = 0, vanished = 0, unknown_kw = 0;
    uint64_t clash = 0, gone = 0;
    store_snap *snap = NULL;

    /* The uidlist's names point into st->list: read it last, after the
     * keywords, and copy what is kept before reusing the buffer. */
    if ((ret = read_keywords(st, f, kw)) < 0)
        goto out;
    int have = read_uidlist(st, f, &h, &recs, &nrecs);
    if (have < 0) {
        ret = have;
        goto out;
    }
    if (!have)
        admin_err("warning: '%s' has no dovecot-uidlist: mailbox '%s' gets a new "
                  "UIDVALIDITY and its messages new UIDs (clients download it again)",
                  f->ctl, f->name);

    m = calloc(f->nfiles ? f->nfiles : 1, sizeof *m);
    if (!m) {
        ret = -ENOMEM;
        admin_err("out of memory");
        goto out;
    }
    /* UIDs from the uidlist; the rest in Dovecot's order from its next UID
     * (above every UID listed, should the header lag behind). */
    uint32_t maxuid = 0;
    size_t nnew = 0;
    for (size_t i = 0; i < f->nfiles; i++) {
        struct dmsg *d = &m[i];
        d->path = f->files[i].path;
        const char *s = strrchr(d->path, '/');
        d->base = s ? s + 1 : d->path;
        d->mtime = f->files[i].mtime;
        admin_maildir_name_parse(d->base, &d->nm);
        struct urec key = { d->base, d->nm.base_len, 0 };
        struct urec *hit = nrecs ? bsearch(&key, recs, nrecs, sizeof *recs, urec_cmp) : NULL;
        if (hit && hit->uid) {
            d->uid = hit->uid;
            hit->uid = 0;       /* a second file of that base name is new */
            if (d->uid > maxuid)
                maxuid = d->uid;
        } else {
            nnew++;
        }
    }
    uint64_t next = have ? h.nextuid : 1;
    if (next <= maxuid)
        next = (uint64_t)maxuid + 1;
    if (nnew) {
        /* Unnamed first (uid 0), in the order Dovecot would number them. */
        qsort(m, f->nfiles, sizeof *m, dmsg_uid_cmp);
        qsort(m, nnew, sizeof *m, dmsg_new_cmp);
        for (size_t i = 0; i < nnew; i++) {
            if (next >= UINT32_MAX) {
                admin_err("'%s': no UIDs left for its new messages: left alone", f->dir);
                ret = -ERANGE;
                goto out;
            }
            m[i].uid = (uint32_t)next++;
        }
    }
    qsort(m, f->nfiles, sizeof *m, dmsg_uid_cmp);
    free(recs);
    recs = NULL;

    store_status ss;
    if ((ret = prepare_mailbox(st, f, have, h.uidvalidity, &mb, &ss)) < 0)
        goto out;
    if (st->stock_special && (ret = set_stock_special(st, f->name)) < 0)
        goto out;
    b->mb = mb;
    b->kwnames = (const char *const *)kw;
    uint32_t uv = ss.uidvalidity, last = ss.uidnext - 1;
    if (ss.uidnext > 1 && !(snap = store_snap_get(mb))) {
        ret = -ENOMEM;
        admin_err("out of memory");
        goto out;
    }
    for (size_t i = 0; i < f->nfiles; i++) {
        struct dmsg *d = &m[i];
        st->seen++;
        admin_progress_update(&st->pr, st->seen);
        if (d->uid < ss.uidnext) {
            /* Imported by an earlier run, unless the mailbox never had
             * that UID (the file came later, under a UID the mailbox had
             * passed) or gave it to a message of another size (mail
             * delivered here too): UIDs cannot go back to add it. */
            store_msg sm;
            int r = store_snap_lookup(snap, d->uid, &sm);
            if (r == -ENOENT) {
                gone++;
            } else if (r >= 0 && d->nm.has_vsize && sm.size != d->nm.vsize) {
                if (!clash)
                    admin_err("'%s': mailbox '%s' gave its UID %u to another message "
                              "(of %u bytes, not %llu)", d->path, f->name, d->uid, sm.size,
                              (unsigned long long)d->nm.vsize);
                clash++;
            } else {
                st->skipped++;
            }
            continue;
        }
        ret = admin_read_file(d->path, &st->file);
        char *moved = NULL;
        if (ret == -ENOENT && (moved = find_moved(f->dir, d->base, d->nm.base_len))) {
            /* Renamed by a flag change since the scan: the new name's flags. */
            ret = admin_read_file(moved, &st->file);
            admin_maildir_name_parse(strrchr(moved, '/') + 1, &d->nm);
            free(moved);
        }
        if (ret == -ENOENT) {
            vanished++;         /* expunged by a client that still runs */
            ret = 0;
            continue;
        }
        if (ret < 0) {
            admin_err("cannot read '%s': %s", d->path, strerror(-ret));
            if (admin_batch_flush(b) == 0)
                admin_err("mailbox '%s' was imported up to UID %u: run the import again "
                          "to go on from there", f->name, last);
            goto out;
        }
        /* Dovecot reports S= and W= from the name as the sizes; we count. */
        if ((d->nm.has_size && d->nm.size != st->file.len) ||
            (d->nm.has_vsize &&
             d->nm.vsize != st->file.len + bare_lfs(st->file.data, st->file.len)))
            sizes_off++;
        uint32_t known = 0;
        for (unsigned k = 0; k < ADMIN_BATCH_KEYWORDS; k++)
            if (kw[k])
                known |= 1u << k;
        if (d->nm.keywords & ~known)
            unknown_kw++;
        admin_batch_msg bm = { .date = d->mtime, .tz_min = local_zone(d->mtime),
                               .flags = d->nm.flags, .keywords = d->nm.keywords & known,
                               .uid = d->uid };
        if ((ret = admin_batch_add(b, st->file.data, st->file.len, false, &bm)) < 0)
            goto out;
        last = d->uid;
    }
    if ((ret = admin_batch_flush(b)) < 0)
        goto out;
    uint32_t uidnext = ss.uidnext;
    if (next > uidnext && next <= UINT32_MAX) {
        if ((ret = store_mbox_set_uidnext(mb, (uint32_t)next)) < 0) {
            admin_err("mailbox '%s': cannot set UIDNEXT to %llu: %s", f->name,
                      (unsigned long long)next, store_strerror(ret));
            goto out;
        }
        uidnext = (uint32_t)next;
    }
    if (sizes_off)
        admin_err("warning: %llu messages of '%s' have S= or W= sizes in their file names "
                  "that disagree with the files: imported as the files are",
                  (unsigned long long)sizes_off, f->dir);
    if (unknown_kw)
        admin_err("warning: %llu messages of '%s' have keyword letters that "
                  "dovecot-keywords does not name: those keywords left out",
                  (unsigned long long)unknown_kw, f->dir);
    if (vanished)
        admin_err("warning: %llu files of '%s' vanished during the import (expunged "
                  "meanwhile?): skipped", (unsigned long long)vanished, f->dir);
    admin_progress_end(&st->pr);
    if (gone)
        admin_err("warning: %llu messages of '%s' have UIDs below the UIDNEXT of mailbox "
                  "'%s' that it does not hold (expunged here since, or given to the "
                  "Maildir after UIDs the mailbox had passed): not imported",
                  (unsigned long long)gone, f->dir, f->name);
    printf("%s: %llu messages imported, UIDVALIDITY %u, UIDNEXT %u\n", f->name,
           (unsigned long long)(b->done - done0), uv, uidnext);
    if (clash) {
        /* Mail delivered to both since the first import: the Maildir's
         * cannot get UIDs of their own without breaking UID order. */
        admin_err("mailbox '%s': %llu messages of '%s' not imported: their UIDs were "
                  "given to other messages here (mail delivered to both sides?)",
                  f->name, (unsigned long long)clash, f->dir);
        ret = -EEXIST;
    }
out:
    if (snap)
        store_snap_put(snap);
    if (ret < 0)
        st->failed++;
    b->mb = NULL;
    b->kwnames = NULL;
    b->n = 0;
    b->data.len = 0;
    if (mb)
        store_mbox_close(mb);
    for (unsigned k = 0; k < ADMIN_BATCH_KEYWORDS; k++)
        free(kw[k]);
    free(recs);
    free(m);
    return ret;
}

static int folder_cmp(const void *a, const void *b)
{
    const struct folder *x = a, *y = b;
    bool ix = strcmp(x->name, "INBOX") == 0, iy = strcmp(y->name, "INBOX") == 0;
    if (ix != iy)
        return ix ? -1 : 1;
    return strcmp(x->name, y->name);    /* parents before children */
}

static void folders_free(struct folder *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].dir);
        free(v[i].ctl);
        free(v[i].name);
        admin_maildir_free(v[i].files, v[i].nfiles);
    }
    free(v);
}

/* Takes dir, ctl and name (freed on failure too). */
static int add_folder(struct folder **v, size_t *n, size_t *cap, char *dir, char *ctl,
                      char *name)
{
    if (!dir || !ctl || !name) {
        free(dir);
        free(ctl);
        free(name);
        return -ENOMEM;
    }
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        struct folder *nv = realloc(*v, nc * sizeof *nv);
        if (!nv) {
            free(dir);
            free(ctl);
            free(name);
            return -ENOMEM;
        }
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = (struct folder){ .dir = dir, .ctl = ctl, .name = name };
    return 0;
}

/* The control directory of a folder: Dovecot's CONTROL=DIR mirrors the
 * folders' paths (INBOX as ".INBOX", or "INBOX" with LAYOUT=fs). */
static char *ctl_dir(const char *ctl, const char *dir, const char *rel)
{
    char *out = NULL;
    if (!ctl)
        return strdup(dir);
    return asprintf(&out, "%s/%s", ctl, rel) < 0 ? NULL : out;
}

/* The folders found so far. */
struct flist {
    struct folder *v;
    size_t n, cap;
    unsigned bad;           /* folders skipped for their names */
    char sep;
    bool fs;                /* LAYOUT=fs, else Maildir++ */
    bool fs_hint;           /* a Maildir++ root holds LAYOUT=fs folders */
    const char *ctl;        /* CONTROL=, or NULL */
};

#define FS_MAX_DEPTH 64

/* The folders in root/rel: Maildir++ ".a.b" Maildirs in the root, or
 * LAYOUT=fs Maildirs at any depth (their cur/, new/ and tmp/ are no
 * folders).  Folders whose names cannot be mailbox names are reported and
 * counted, not fatal. */
static int scan_folders(struct flist *fl, const char *root, const char *rel, int depth)
{
    int ret = 0;
    char *path = NULL;
    if (asprintf(&path, "%s%s%s", root, *rel ? "/" : "", rel) < 0)
        return -ENOMEM;
    DIR *d = opendir(path);
    if (!d) {
        ret = -errno;
        admin_err("cannot read '%s': %s", path, strerror(-ret));
        free(path);
        return ret;
    }
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            ret = -errno;
            if (ret < 0)
                admin_err("cannot read '%s': %s", path, strerror(-ret));
            break;
        }
        const char *e = de->d_name;
        bool own = !strcmp(e, "cur") || !strcmp(e, "new") || !strcmp(e, "tmp");
        if (!fl->fs && e[0] != '.' && !own && !fl->fs_hint) {
            /* A Maildir named without the dot: LAYOUT=fs, not Maildir++? */
            char *x = NULL;
            if (asprintf(&x, "%s/%s", path, e) >= 0 && admin_is_maildir(x))
                fl->fs_hint = true;
            free(x);
        }
        if (fl->fs ? e[0] == '.' || own
                   : e[0] != '.' || !strcmp(e, ".") || !strcmp(e, ".."))
            continue;
        char *dir = NULL, *sub = NULL, *name = NULL;
        struct stat sb;
        if (asprintf(&dir, "%s/%s", path, e) < 0 ||
            asprintf(&sub, "%s%s%s", rel, *rel ? "/" : "", e) < 0) {
            free(dir);
            ret = -ENOMEM;
            break;
        }
        /* Symbolic links are not followed: no loops, no folder twice. */
        if (lstat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
            free(dir);
            free(sub);
            continue;
        }
        if (fl->fs && depth + 1 < FS_MAX_DEPTH &&
            (ret = scan_folders(fl, root, sub, depth + 1)) < 0) {
            free(dir);
            free(sub);
            break;
        }
        if (!admin_is_maildir(dir)) {
            free(dir);          /* Dovecot's own files, or only a parent */
            free(sub);
            continue;
        }
        int r = fl->fs ? admin_dovecot_fs_name(sub, fl->sep, &name)
                       : admin_maildirpp_name(e + 1, fl->sep, &name);
        char *ctl = ctl_dir(fl->ctl, dir, sub);
        free(sub);
        if (!ctl && r == 0) {
            free(name);
            r = -ENOMEM;
        }
        if (r == 0 && !strcasecmp(name, "INBOX")) {
            free(name);
            r = -EINVAL;
        }
        if (r == -ENOMEM) {
            free(dir);
            free(ctl);
            ret = r;
            break;
        }
        if (r < 0) {
            admin_err("folder '%s' has no valid mailbox name (levels modified UTF-7 or "
                      "UTF-8, none empty, INBOX or holding '%c'): skipped", dir, fl->sep);
            free(dir);
            free(ctl);
            fl->bad++;
            continue;
        }
        if ((ret = add_folder(&fl->v, &fl->n, &fl->cap, dir, ctl, name)) < 0)
            break;
    }
    closedir(d);
    free(path);
    return ret;
}

/* INBOX (the root) and every folder under it, parents first. */
static int list_folders(const char *root, const char *ctl, char sep, bool fs,
                        struct folder **out, size_t *n, unsigned *bad)
{
    struct flist fl = { .sep = sep, .fs = fs, .ctl = ctl };
    if (add_folder(&fl.v, &fl.n, &fl.cap, strdup(root),
                   ctl_dir(ctl, root, fs ? "INBOX" : ".INBOX"), strdup("INBOX")) < 0)
        return -ENOMEM;
    int ret = scan_folders(&fl, root, "", 0);
    *bad = fl.bad;
    if (fl.fs_hint)
        admin_err("warning: '%s' holds Maildirs without a leading dot, as Dovecot's "
                  "LAYOUT=fs makes them: not imported (give --layout fs for them)", root);
    if (ret < 0) {
        folders_free(fl.v, fl.n);
        return ret;
    }
    qsort(fl.v, fl.n, sizeof *fl.v, folder_cmp);
    *out = fl.v;
    *n = fl.n;
    return 0;
}

/* DIR/subscriptions: returns how many names were subscribed. */
static unsigned import_subscriptions(import_state *st, const char *root, char sep)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/subscriptions", root);
    int r = admin_read_file(path, &st->list);
    if (r == -ENOENT)
        return 0;
    if (r < 0) {
        admin_err("cannot read '%s': %s; no subscriptions imported", path, strerror(-r));
        st->failed++;
        return 0;
    }
    size_t pos = 0, len, lineno = 0;
    const char *line;
    unsigned version = 1, count = 0;
    while (next_line(&st->list, &pos, &line, &len)) {
        lineno++;
        if (lineno == 1 && len >= 2 && line[0] == 'V' && line[1] == '\t') {
            version = 2;        /* "V\t2", then an empty line */
            continue;
        }
        char *name = NULL;
        r = admin_dovecot_subscription(version, line, len, sep, &name);
        if (r == 0)
            continue;
        if (r > 0 && !strcasecmp(name, "INBOX"))
            strcpy(name, "INBOX");
        if (r > 0)
            r = store_mailbox_subscribe(st->u, name, true);
        if (r < 0) {
            admin_err("warning: '%s' line %zu: cannot subscribe '%.*s': %s", path,
                      lineno, (int)(len > 120 ? 120 : len), line,
                      r == -EINVAL ? "not a valid mailbox name" : store_strerror(r));
        } else {
            count++;
        }
        free(name);
    }
    return count;
}

int admin_import_dovecot(admin_ctx *ctx, const char *user, const char *root,
                         const char *control, bool layout_fs, bool stock_special)
{
    int ret = ADMIN_FAIL;
    struct folder *fv = NULL;
    size_t nf = 0;
    unsigned bad = 0;
    double t0 = admin_now();
    import_state st = { .stock_special = stock_special };

    if (!admin_is_maildir(root)) {
        admin_err("'%s' is not a Maildir (no cur/ and new/): give the directory of "
                  "Dovecot's mail_location = maildir:DIR", root);
        return ADMIN_FAIL;
    }
    struct stat sb;
    if (control && (stat(control, &sb) < 0 || !S_ISDIR(sb.st_mode))) {
        admin_err("'%s' is not a directory: give the directory of Dovecot's "
                  "CONTROL=DIR", control);
        return ADMIN_FAIL;
    }
    st.b = calloc(1, sizeof *st.b);
    if (!st.b) {
        admin_err("out of memory");
        return ADMIN_FAIL;
    }
    if (admin_user_open(ctx, user, true, &st.u) < 0)
        goto out;
    char sep = store_user_separator(st.u);
    if (list_folders(root, control, sep, layout_fs, &fv, &nf, &bad) < 0)
        goto out;
    uint64_t total = 0;
    for (size_t i = 0; i < nf; i++) {
        int r = admin_maildir_scan(fv[i].dir, &fv[i].files, &fv[i].nfiles);
        if (r < 0) {
            admin_err("cannot read Maildir '%s': %s", fv[i].dir, strerror(-r));
            goto out;
        }
        total += fv[i].nfiles;
    }
    admin_progress_start(&st.pr, "import", total, false);
    for (size_t i = 0; i < nf; i++) {
        int r = import_folder(&st, &fv[i]);
        admin_progress_end(&st.pr);
        if (r == -ENOMEM || r == -ENOSPC || r == -EDQUOT || r == -EIO)
            break;              /* the next folders would fail the same way */
    }
    unsigned subs = import_subscriptions(&st, control ? control : root, sep);
    char hb[32];
    printf("imported %llu messages (%s) into %zu mailboxes, %llu already there, "
           "%u subscriptions, in %.1f s\n", (unsigned long long)st.b->done,
           admin_human_bytes(st.b->bytes, hb, sizeof hb), nf - st.failed,
           (unsigned long long)st.skipped, subs, admin_now() - t0);
    if (st.failed || bad) {
        admin_err("%u folders not (fully) imported: see above", st.failed + bad);
        goto out;
    }
    ret = ADMIN_OK;
out:
    folders_free(fv, nf);
    free(st.file.data);
    free(st.list.data);
    free(st.b->data.data);
    free(st.b);
    if (st.u)
        store_user_close(st.u);
    return ret;
}
