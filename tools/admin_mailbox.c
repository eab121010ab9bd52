/* tools/admin_mailbox.c — mailbox list/create/delete/rename/status. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "tools/admin.h"

static const struct {
    const char *name, *attr;
    uint32_t bit;
} specials[] = {
    { "sent", "\\Sent", STORE_SPECIAL_SENT },
    { "drafts", "\\Drafts", STORE_SPECIAL_DRAFTS },
    { "trash", "\\Trash", STORE_SPECIAL_TRASH },
    { "junk", "\\Junk", STORE_SPECIAL_JUNK },
    { "archive", "\\Archive", STORE_SPECIAL_ARCHIVE },
};
#define NSPECIALS (sizeof specials / sizeof *specials)

/* "sent" or "sent,archive" (case-insensitive). */
static int parse_special(const char *s, uint32_t *out)
{
    uint32_t bits = 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        size_t i;
        for (i = 0; i < NSPECIALS; i++)
            if (strlen(specials[i].name) == len &&
                strncasecmp(specials[i].name, p, len) == 0)
                break;
        if (i == NSPECIALS)
            return -EINVAL;
        bits |= specials[i].bit;
        if (!comma)
            break;
        p = comma + 1;
    }
    *out = bits;
    return 0;
}

int admin_cmd_mailbox_list(admin_ctx *ctx, int argc, char **argv)
{
    static const char syn[] = "mailbox list USER";
    char *pos[1];
    size_t npos;
    if (admin_args(argc, argv, NULL, 0, pos, 1, 1, &npos, syn) < 0)
        return ADMIN_USAGE;

    int ret = ADMIN_FAIL;
    store_user *u = NULL;
    store_mailbox_info *v = NULL;
    size_t n = 0;
    if (admin_user_open(ctx, pos[0], false, &u) < 0)
        goto out;
    int r = store_mailbox_list(u, &v, &n);
    if (r < 0) {
        admin_err("user '%s': cannot list mailboxes: %s", pos[0], strerror(-r));
        goto out;
    }
    /* One name a line, special-use attributes after a TAB: mailbox names
     * cannot hold control characters, so this splits unambiguously. */
    for (size_t i = 0; i < n; i++) {
        fputs(v[i].name, stdout);
        for (size_t j = 0; j < NSPECIALS; j++)
            if (v[i].special & specials[j].bit)
                printf("\t%s", specials[j].attr);
        putchar('\n');
    }
    ret = ADMIN_OK;
out:
    if (v)
        store_mailbox_info_free(v, n);
    if (u)
        store_user_close(u);
    return ret;
}

int admin_cmd_mailbox_create(admin_ctx *ctx, int argc, char **argv)
{
    static const char syn[] =
        "mailbox create USER NAME [--special sent|drafts|trash|junk|archive[,...]]";
    const char *special = NULL;
    const admin_opt opts[] = { { "special", NULL, &special } };
    char *pos[2];
    size_t npos;
    if (admin_args(argc, argv, opts, 1, pos, 2, 2, &npos, syn) < 0)
        return ADMIN_USAGE;
    uint32_t bits = 0;
    if (special && parse_special(special, &bits) < 0)
        return admin_usage("bad --special '%s' (sent, drafts, trash, junk or archive)",
                           special);

    int ret = ADMIN_FAIL;
    store_user *u = NULL;
    if (admin_user_open(ctx, pos[0], true, &u) < 0)
        goto out;
    int r = store_mailbox_create(u, pos[1], bits);
    if (r < 0) {
        admin_mailbox_error(pos[1], r);
        goto out;
    }
    printf("created mailbox '%s'\n", pos[1]);
    ret = ADMIN_OK;
out:
    if (u)
        store_user_close(u);
    return ret;
}

int admin_cmd_mailbox_delete(admin_ctx *ctx, int argc, char **argv)
{
    char *pos[2];
    size_t npos;
    if (admin_args(argc, argv, NULL, 0, pos, 2, 2, &npos, "mailbox delete USER NAME") < 0)
        return ADMIN_USAGE;

    int ret = ADMIN_FAIL;
    store_user *u = NULL;
    if (admin_user_open(ctx, pos[0], false, &u) < 0)
        goto out;
    int r = store_mailbox_delete(u, pos[1]);
    if (r < 0) {
        if (r == -EPERM)
            admin_err("INBOX cannot be deleted");
        else
            admin_mailbox_error(pos[1], r);
        goto out;
    }
    printf("deleted mailbox '%s'\n", pos[1]);
    ret = ADMIN_OK;
out:
    if (u)
        store_user_close(u);
    return ret;
}

int admin_cmd_mailbox_rename(admin_ctx *ctx, int argc, char **argv)
{
    char *pos[3];
    size_t npos;
    if (admin_args(argc, argv, NULL, 0, pos, 3, 3, &npos,
                   "mailbox rename USER OLD NEW") < 0)
        return ADMIN_USAGE;

    int ret = ADMIN_FAIL;
    store_user *u = NULL;
    if (admin_user_open(ctx, pos[0], false, &u) < 0)
        goto out;
    int r = store_mailbox_rename(u, pos[1], pos[2]);
    if (r < 0) {
        /* Which name is at fault depends on the error. */
        if (r == -ENOENT)
            admin_mailbox_error(pos[1], r);
        else if (r == -EEXIST)
            admin_err("mailbox '%s' (or one of its children) already exists", pos[2]);
        else if (r == -EINVAL)
            admin_err("cannot rename '%s' to '%s': invalid name or a move into itself",
                      pos[1], pos[2]);
        else
            admin_err("cannot rename '%s' to '%s': %s", pos[1], pos[2], strerror(-r));
        goto out;
    }
    printf("renamed mailbox '%s' to '%s'\n", pos[1], pos[2]);
    ret = ADMIN_OK;
out:
    if (u)
        store_user_close(u);
    return ret;
}

int admin_cmd_mailbox_status(admin_ctx *ctx, int argc, char **argv)
{
    char *pos[2];
    size_t npos;
    if (admin_args(argc, argv, NULL, 0, pos, 2, 2, &npos, "mailbox status USER NAME") < 0)
        return ADMIN_USAGE;

    int ret = ADMIN_FAIL;
    store_user *u = NULL;
    if (admin_user_open(ctx, pos[0], false, &u) < 0)
        goto out;
    store_status st;
    int r = store_mailbox_status(u, pos[1], &st);
    if (r < 0) {
        admin_mailbox_error(pos[1], r);
        goto out;
    }
    /* "name: value" lines, easy for both people and scripts. */
    printf("messages: %u\nrecent: %u\nunseen: %u\ndeleted: %u\n"
           "uidnext: %u\nuidvalidity: %u\nhighestmodseq: %llu\n"
           "size: %llu\nlog_bytes: %llu\ndead_bytes: %llu\n",
           st.messages, st.recent, st.unseen, st.deleted, st.uidnext,
           st.uidvalidity, (unsigned long long)st.highestmodseq,
           (unsigned long long)st.size, (unsigned long long)st.log_bytes,
           (unsigned long long)st.dead_bytes);
    ret = ADMIN_OK;
out:
    if (u)
        store_user_close(u);
    return ret;
}
