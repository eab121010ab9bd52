/* tools/migrate/migrate.c — `migrate`: options, users, and the run over a
 * source account's mailboxes (the work on one mailbox is mig_sync.c).
 *
 * The store is written through its API only, so ringmaild may serve the
 * same user meanwhile: the store is safe for several processes (store.h),
 * a SELECTed session sees appended messages, flag changes and expunges as
 * it sees another server process's, and IDLE hears of them through
 * inotify. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/imap/imap_args.h"
#include "store/utf8.h"
#include "tools/migrate/migrate.h"

volatile sig_atomic_t mig_stop;
static bool quiet_progress;

static const char synopsis[] =
    "migrate USER --from imaps://HOST[:PORT]|imap://HOST[:PORT] [--starttls] "
    "--login NAME --password-file FILE [--ca FILE] [--state DIR] [--check[=full]] "
    "[--reset-mailbox NAME] | migrate --users FILE [--parallel N] --from URL ...";

static void on_signal(int sig)
{
    (void)sig;
    mig_stop = 1;
}

static int read_password(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        admin_err("cannot read the password file %s: %s", path, strerror(errno));
        return -errno;
    }
    if (!fgets(buf, (int)len, f))
        buf[0] = '\0';
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    if (!buf[0]) {
        admin_err("the password file %s is empty", path);
        return -EINVAL;
    }
    return 0;
}

/* ---- the source's mailboxes ---- */

typedef struct src_list {
    mig_src_mbox *v;
    size_t n, cap;
} src_list;

static void src_list_free(src_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].wire);
        free(l->v[i].name);
    }
    free(l->v);
}

static mig_src_mbox *src_find_wire(src_list *l, const char *wire)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].wire, wire) == 0)
            return &l->v[i];
    return NULL;
}

static mig_src_mbox *src_find(src_list *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].name && strcmp(l->v[i].name, name) == 0)
            return &l->v[i];
    return NULL;
}

/* The source's name in ours: modified UTF-7 decoded (RFC 9051 5.1.3),
 * its separator replaced by ours, INBOX spelled so.  NULL (with a reason)
 * if it holds our separator as an ordinary character. */
static char *map_name(const char *wire, char srcsep, char sep, const char **why)
{
    char *u = imap_mutf7_to_utf8(wire, strlen(wire));
    if (!u) {
        /* A server that sends UTF-8 names (RFC 6855) without being asked. */
        if (!store_utf8_valid(wire, strlen(wire))) {
            *why = "neither modified UTF-7 nor UTF-8";
            return NULL;
        }
        u = strdup(wire);
        if (!u)
            return NULL;
    }
    for (char *p = u; *p; p++) {
        if (srcsep && *p == srcsep) {
            *p = sep;
        } else if (*p == sep) {
            *why = "it contains this server's hierarchy separator";
            free(u);
            return NULL;
        }
    }
    if (strncasecmp(u, "INBOX", 5) == 0 && (u[5] == '\0' || u[5] == sep))
        memcpy(u, "INBOX", 5);
    return u;
}

static const struct { const char *attr; uint32_t bit; } special_attrs[] = {
    { "\\Sent", STORE_SPECIAL_SENT }, { "\\Drafts", STORE_SPECIAL_DRAFTS },
    { "\\Trash", STORE_SPECIAL_TRASH }, { "\\Junk", STORE_SPECIAL_JUNK },
    { "\\Archive", STORE_SPECIAL_ARCHIVE },
};

/* One "* LIST (attrs) sep name ..." or "* LSUB ..." into l. */
static int list_line(mig_run *r, const mig_resp *resp, src_list *l, bool lsub)
{
    mig_cur cur = { resp->data, resp->data + resp->len };
    const char *s;
    size_t n;
    bool q;
    const char *word = lsub ? "LSUB" : "LIST";
    if (mig_next(&cur, &s, &n, NULL) != MIG_T_ATOM || n != 1 || *s != '*' ||
        mig_next(&cur, &s, &n, NULL) != MIG_T_ATOM || n != 4 || strncasecmp(s, word, 4) != 0)
        return 0;
    if (mig_next(&cur, &s, &n, NULL) != MIG_T_LPAREN)
        return -EPROTO;
    bool noselect = false, subscribed = lsub;
    uint32_t special = 0;
    mig_tok t;
    while ((t = mig_next(&cur, &s, &n, NULL)) == MIG_T_ATOM) {
        if ((n == 9 && strncasecmp(s, "\\Noselect", 9) == 0) ||
            (n == 12 && strncasecmp(s, "\\NonExistent", 12) == 0))
            noselect = true;
        else if (n == 11 && strncasecmp(s, "\\Subscribed", 11) == 0)
            subscribed = true;
        for (size_t i = 0; i < sizeof special_attrs / sizeof *special_attrs; i++)
            if (strlen(special_attrs[i].attr) == n && strncasecmp(s, special_attrs[i].attr, n) == 0)
                special |= special_attrs[i].bit;
    }
    if (t != MIG_T_RPAREN)
        return -EPROTO;
    char srcsep = 0;
    t = mig_next(&cur, &s, &n, &q);
    if (t == MIG_T_STRING && n >= 1)
        srcsep = q && *s == '\\' ? s[1] : *s;
    else if (t != MIG_T_NIL)
        return -EPROTO;
    t = mig_next(&cur, &s, &n, &q);
    if (t != MIG_T_STRING && t != MIG_T_ATOM)
        return -EPROTO;
    char *wire = mig_strdup_tok(s, n, q);
    if (!wire)
        return -ENOMEM;
    mig_src_mbox *m = src_find_wire(l, wire);
    if (m) {                            /* LSUB after LIST: the subscription */
        free(wire);
        m->subscribed |= subscribed;
        return 0;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        mig_src_mbox *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            free(wire);
            return -ENOMEM;
        }
        l->v = v;
        l->cap = cap;
    }
    m = &l->v[l->n++];
    const char *why = "";
    *m = (mig_src_mbox){ .wire = wire, .special = special, .subscribed = subscribed,
                         .noselect = noselect || lsub };
    m->name = map_name(wire, srcsep, r->sep, &why);
    if (!m->name)
        admin_err("%s: source mailbox \"%s\" cannot be named here (%s): skipped", r->user,
                  wire, why);
    return 0;
}

static int list_cmd(mig_run *r, const char *cmd, src_list *l, bool lsub)
{
    uint32_t tag;
    int rc = mig_send(r->c, &tag, "%s", cmd);
    for (;;) {
        mig_resp resp;
        if (rc == 0)
            rc = mig_read(r->c, &resp);
        if (rc < 0) {
            admin_err("%s: connection lost at %s: %s", r->user, cmd, strerror(-rc));
            return rc;
        }
        if (resp.tagged && resp.tag == tag) {
            char err[320];
            rc = mig_tagged_status(&resp, err, sizeof err);
            if (rc < 0)
                admin_err("%s: %s failed: %s", r->user, cmd, err);
            return rc;
        }
        rc = list_line(r, &resp, l, lsub);
        if (rc < 0) {
            admin_err("%s: an answer of the source I cannot read: %.200s", r->user, resp.data);
            return rc;
        }
    }
}

static int list_source(mig_run *r, src_list *l)
{
    /* RFC 5258 + RFC 6154: one command gives names, subscriptions and
     * special-use; else LIST (special-use may be there anyway, RFC 6154 5)
     * and LSUB. */
    if (mig_has_cap(r->c, "LIST-EXTENDED") && mig_has_cap(r->c, "SPECIAL-USE"))
        return list_cmd(r, "LIST \"\" \"*\" RETURN (SUBSCRIBED SPECIAL-USE)", l, false);
    int rc = list_cmd(r, "LIST \"\" \"*\"", l, false);
    if (rc == 0)
        rc = list_cmd(r, "LSUB \"\" \"*\"", l, true);
    return rc;
}

/* STATUS (UIDVALIDITY) of a source mailbox; 0 if unknown. */
static uint32_t source_uidvalidity(mig_run *r, const mig_src_mbox *m)
{
    uint32_t tag;
    mig_cmd_begin(r->c, &tag);
    mig_cmd_text(r->c, "STATUS ");
    mig_cmd_astring(r->c, m->wire);
    mig_cmd_text(r->c, " (UIDVALIDITY)");
    uint32_t uv = 0;
    int rc = mig_cmd_end(r->c);
    while (rc == 0) {
        mig_resp resp;
        if (mig_read(r->c, &resp) < 0)
            return 0;
        if (resp.tagged && resp.tag == tag)
            return mig_tagged_status(&resp, NULL, 0) == 0 ? uv : 0;
        const char *p = strcasestr(resp.data, "(UIDVALIDITY ");
        if (strncasecmp(resp.data, "* STATUS ", 9) == 0 && p)
            uv = (uint32_t)strtoul(p + 13, NULL, 10);
    }
    return 0;
}

/* Mailboxes copied before that the source no longer has under that name:
 * renamed there (a source mailbox new to us with the same UIDVALIDITY:
 * RENAME keeps it, RFC 9051 6.3.6) -> renamed here with its children;
 * else deleted there -> deleted here. */
static void follow_renames(mig_run *r, src_list *l)
{
    for (size_t i = 0; i < r->st.n; i++)
        if (src_find(l, r->st.v[i].name))
            r->st.v[i].seen = true;
    for (size_t i = 0; i < r->st.n; i++) {
        mig_state_mbox *e = &r->st.v[i];
        if (e->seen)
            continue;
        for (size_t k = 0; k < l->n; k++) {
            mig_src_mbox *m = &l->v[k];
            if (!m->name || m->noselect || mig_state_find(&r->st, m->name))
                continue;
            store_mailbox_info info;
            if (store_mailbox_get(r->u, m->name, &info) == 0) {
                free(info.name);
                continue;
            }
            if (source_uidvalidity(r, m) != e->uidvalidity)
                continue;
            int rc = store_mailbox_rename(r->u, e->name, m->name);
            if (rc < 0) {
                admin_err("%s: cannot rename '%s' to '%s' as the source did: %s", r->user,
                          e->name, m->name, store_strerror(rc));
                break;
            }
            printf("%s: renamed at the source: '%s' -> '%s'\n", r->user, e->name, m->name);
            /* Children moved with it (store_mailbox_rename). */
            size_t ol = strlen(e->name);
            char *old = strdup(e->name);
            for (size_t j = 0; old && j < r->st.n; j++) {
                mig_state_mbox *c = &r->st.v[j];
                if (strncmp(c->name, old, ol) == 0 &&
                    (c->name[ol] == '\0' || c->name[ol] == r->sep)) {
                    char *nn = malloc(strlen(m->name) + strlen(c->name + ol) + 1);
                    if (!nn)
                        continue;
                    sprintf(nn, "%s%s", m->name, c->name + ol);
                    free(c->name);
                    c->name = nn;
                    if (src_find(l, nn))
                        c->seen = true;
                }
            }
            free(old);
            break;
        }
    }
    for (size_t i = 0; i < r->st.n;) {
        mig_state_mbox *e = &r->st.v[i];
        if (e->seen) {
            i++;
            continue;
        }
        int rc = store_mailbox_delete_ext(r->u, e->name, STORE_DELETE_KEEP_PARENT);
        if (rc < 0 && rc != -ENOENT) {
            admin_err("%s: '%s' was deleted at the source; cannot delete it here: %s",
                      r->user, e->name, store_strerror(rc));
            i++;
            continue;
        }
        printf("%s: deleted at the source: '%s'\n", r->user, e->name);
        mig_state_remove(&r->st, e);
    }
}

static int sync_subscriptions(mig_run *r, src_list *l, bool check)
{
    char **names = NULL;
    size_t n = 0;
    int rc = store_subscriptions(r->u, &names, &n);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        mig_src_mbox *m = src_find(l, names[i]);
        if (m && m->subscribed)
            continue;
        if (check) {
            printf("%s: '%s' subscribed here, not at the source\n", r->user, names[i]);
            r->s.differences++;
        } else if (store_mailbox_subscribe(r->u, names[i], false) < 0) {
            rc = -EIO;
        }
    }
    for (size_t k = 0; k < l->n; k++) {
        mig_src_mbox *m = &l->v[k];
        if (!m->name || !m->subscribed)
            continue;
        bool here = false;
        for (size_t i = 0; i < n && !here; i++)
            here = strcmp(names[i], m->name) == 0;
        if (here)
            continue;
        if (check) {
            printf("%s: '%s' subscribed at the source, not here\n", r->user, m->name);
            r->s.differences++;
        } else if (store_mailbox_subscribe(r->u, m->name, true) < 0) {
            rc = -EIO;
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (rc < 0)
        admin_err("%s: cannot update the subscriptions", r->user);
    return rc;
}

/* A name the source lists as \Noselect or \NonExistent (a parent of
 * others) is \Noselect here too, if the store made it as a real mailbox
 * (creating "a/b" makes "a") and it never held a message. */
static void keep_noselect(mig_run *r, src_list *l)
{
    for (size_t k = 0; k < l->n; k++) {
        mig_src_mbox *m = &l->v[k];
        store_status st;
        if (!m->name || !m->noselect || strcmp(m->name, "INBOX") == 0 ||
            store_mailbox_status(r->u, m->name, &st) < 0)
            continue;
        if (st.messages == 0 && st.uidnext == 1)
            store_mailbox_delete_ext(r->u, m->name, STORE_DELETE_KEEP_PARENT);
    }
}

/* Mailboxes here that the source does not have (--check). */
static void check_extra(mig_run *r, src_list *l)
{
    store_mailbox_info *v;
    size_t n;
    if (store_mailbox_list(r->u, &v, &n) < 0)
        return;
    for (size_t i = 0; i < n; i++) {
        mig_src_mbox *m = src_find(l, v[i].name);
        if (!m || m->noselect) {
            printf("%s: mailbox '%s' here, not at the source\n", r->user, v[i].name);
            r->s.differences++;
        }
    }
    store_mailbox_info_free(v, n);
}

/* ---- one user ---- */

static int migrate_user(admin_ctx *ctx, const mig_opts *o, const char *user,
                        const char *login, const char *password_file)
{
    mig_run r = { .o = o, .ctx = ctx, .user = user, .t0 = admin_now(),
                  .quiet = quiet_progress };
    src_list l = { 0 };
    char password[1024], err[512];
    int ret = ADMIN_FAIL;
    if (read_password(password_file, password, sizeof password) < 0)
        return ADMIN_FAIL;
    int rc = mig_connect(&o->url, o->ca, &r.c, err, sizeof err);
    if (rc < 0) {
        admin_err("%s: %s", user, err);
        goto out;
    }
    rc = mig_login(r.c, login, password, err, sizeof err);
    explicit_bzero(password, sizeof password);
    if (rc < 0) {
        admin_err("%s: the source refused the login as '%s': %s", user, login, err);
        goto out;
    }
    if (admin_user_open(ctx, user, !o->check, &r.u) < 0)
        goto out;
    r.sep = store_user_separator(r.u);
    char path[4096];
    if (o->state_dir)
        snprintf(path, sizeof path, "%s/%s.state", o->state_dir, user);
    else
        snprintf(path, sizeof path, "%s/%s/migrate.state", ctx->mail_root, user);
    rc = mig_state_load(&r.st, path);
    if (rc < 0) {
        admin_err("%s: cannot read the state file %s: %s", user, path, strerror(-rc));
        goto out;
    }
    if (list_source(&r, &l) < 0)
        goto out;
    if (!o->check)
        follow_renames(&r, &l);
    for (size_t i = 0; i < l.n && !mig_stop; i++) {
        mig_src_mbox *m = &l.v[i];
        if (!m->name) {
            r.s.errors++;
            continue;
        }
        if (m->noselect)
            continue;
        rc = mig_sync_mailbox(&r, m);
        if (rc < 0) {
            r.s.errors++;
            if (rc == -ECONNRESET || rc == -EPIPE || rc == -ETIMEDOUT)
                goto out;
        }
    }
    if (mig_stop) {
        admin_err("%s: interrupted: everything copied so far is kept and recorded; run "
                  "the same command again to go on", user);
        goto out;
    }
    if (o->check)
        check_extra(&r, &l);
    else
        keep_noselect(&r, &l);
    if (sync_subscriptions(&r, &l, o->check) < 0)
        r.s.errors++;
    if (!o->check && mig_state_save(&r.st) < 0)
        r.s.errors++;
    double dt = admin_now() - r.t0;
    char hb[32];
    if (o->check) {
        if (r.s.differences == 0 && r.s.errors == 0)
            printf("%s: exact: every mailbox, UID, flag, keyword, date and size as at the "
                   "source\n", user);
        else
            printf("%s: %llu difference(s)\n", user, (unsigned long long)r.s.differences);
    } else {
        printf("%s: %llu mailboxes (%llu unchanged, %llu listed from changes); copied %llu "
               "messages (%s) in %.1f s (%.0f msg/s, %.1f MB/s); %llu flag changes, "
               "%llu expunged; %llu FETCH commands\n",
               user, (unsigned long long)r.s.mailboxes, (unsigned long long)r.s.unchanged,
               (unsigned long long)r.s.from_changes,
               (unsigned long long)r.s.copied,
               admin_human_bytes(r.s.copied_bytes, hb, sizeof hb), dt,
               dt > 0 ? (double)r.s.copied / dt : 0,
               dt > 0 ? (double)r.s.copied_bytes / dt / 1e6 : 0,
               (unsigned long long)r.s.flag_changes, (unsigned long long)r.s.expunged,
               (unsigned long long)r.s.fetches);
    }
    fflush(stdout);
    ret = r.s.errors || r.s.differences ? ADMIN_FAIL : ADMIN_OK;
out:
    explicit_bzero(password, sizeof password);
    src_list_free(&l);
    mig_state_free(&r.st);
    if (r.u)
        store_user_close(r.u);
    mig_close(r.c);
    return ret;
}

/* ---- many users ---- */

/* FILE: one account a line, "USER LOGIN PASSWORD-FILE" separated by
 * blanks; '#' starts a comment.  Up to `parallel` accounts at once, each in
 * its own process (a failure in one stops no other); the exit status is 1
 * if any failed. */
static int migrate_users(admin_ctx *ctx, const mig_opts *o, const char *file, int parallel)
{
    FILE *f = fopen(file, "re");
    if (!f) {
        admin_err("cannot read %s: %s", file, strerror(errno));
        return ADMIN_FAIL;
    }
    char *line = NULL;
    size_t cap = 0;
    int running = 0, failed = 0, lineno = 0;
    quiet_progress = parallel > 1;
    while (getline(&line, &cap, f) > 0 && !mig_stop) {
        lineno++;
        line[strcspn(line, "#\r\n")] = '\0';
        char *save = NULL;
        char *user = strtok_r(line, " \t", &save);
        char *login = user ? strtok_r(NULL, " \t", &save) : NULL;
        char *pw = login ? strtok_r(NULL, " \t", &save) : NULL;
        if (!user)
            continue;
        if (!pw || strtok_r(NULL, " \t", &save)) {
            admin_err("%s line %d: want \"USER LOGIN PASSWORD-FILE\"", file, lineno);
            failed++;
            continue;
        }
        while (running >= parallel) {
            int st;
            if (wait(&st) > 0) {
                running--;
                failed += !WIFEXITED(st) || WEXITSTATUS(st) != 0;
            }
        }
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            admin_err("fork: %s", strerror(errno));
            failed++;
            break;
        }
        if (pid == 0)
            _exit(migrate_user(ctx, o, user, login, pw));
        running++;
    }
    while (running > 0) {
        int st;
        if (wait(&st) > 0) {
            running--;
            failed += !WIFEXITED(st) || WEXITSTATUS(st) != 0;
        } else if (errno != EINTR) {
            break;
        }
    }
    free(line);
    fclose(f);
    return failed || mig_stop ? ADMIN_FAIL : ADMIN_OK;
}

int admin_cmd_migrate(admin_ctx *ctx, int argc, char **argv)
{
    mig_opts o = { 0 };
    bool starttls = false, check = false;
    const char *check_v = NULL, *users = NULL, *parallel_s = NULL;
    const admin_opt opts[] = {
        { "from", NULL, &o.from }, { "login", NULL, &o.login },
        { "password-file", NULL, &o.password_file }, { "ca", NULL, &o.ca },
        { "state", NULL, &o.state_dir }, { "starttls", &starttls, NULL },
        { "check", &check, NULL },
        { "reset-mailbox", NULL, &o.reset_mailbox }, { "users", NULL, &users },
        { "parallel", NULL, &parallel_s },
    };
    /* "--check=full" is the one option with an optional value. */
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--check=full") == 0) {
            check_v = "full";
            argv[i] = (char *)"--check";
        }
    char *pos[1];
    size_t npos;
    if (admin_args(argc, argv, opts, sizeof opts / sizeof *opts, pos, users ? 0 : 0, 1,
                   &npos, synopsis) < 0)
        return ADMIN_USAGE;
    o.check = check;
    o.check_full = check_v != NULL;
    if (!o.from)
        return admin_usage("migrate: --from imaps://HOST[:PORT] or imap://HOST[:PORT] is needed");
    if (mig_url_parse(o.from, &o.url) < 0)
        return admin_usage("migrate: --from '%s': want imaps://HOST[:PORT] or "
                           "imap://HOST[:PORT]", o.from);
    if (starttls) {
        if (o.url.tls)
            return admin_usage("migrate: --starttls is for imap:// (imaps:// is TLS already)");
        o.url.starttls = true;
    }
    int parallel = 1;
    if (parallel_s) {
        char *e;
        long v = strtol(parallel_s, &e, 10);
        if (*e || v < 1 || v > 256)
            return admin_usage("migrate: --parallel wants 1..256");
        parallel = (int)v;
    }
    if (users && npos)
        return admin_usage("migrate: USER or --users FILE, not both");
    if (!users && (npos != 1 || !o.login || !o.password_file))
        return admin_usage("usage: ringmail-admin %s", synopsis);

    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (users)
        return migrate_users(ctx, &o, users, parallel);
    return migrate_user(ctx, &o, pos[0], o.login, o.password_file);
}
