/* tools/admin_main.c — ringmail-admin: global options, configuration and
 * command dispatch. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fetch/fetch_render.h"
#include "core/fetch/preview.h"
#include "tools/admin.h"

static const char usage_text[] =
"usage: ringmail-admin [-c CONFIG] [-o key=value]... COMMAND [ARGS]\n"
"\n"
"Mailboxes:\n"
"  mailbox list USER                 names, one a line (TAB special-use)\n"
"  mailbox create USER NAME [--special sent|drafts|trash|junk|archive[,...]]\n"
"  mailbox delete USER NAME\n"
"  mailbox rename USER OLD NEW       children move with the parent\n"
"  mailbox status USER NAME          counters, sizes and log bytes\n"
"  stats USER                        a table of every mailbox\n"
"  quota USER                        storage and messages used, and the limits\n"
"\n"
"Messages:\n"
"  import USER MAILBOX PATH          PATH: an mbox file (mboxrd) or a Maildir\n"
"                                    (a directory with cur/ and new/);\n"
"                                    the mailbox is created if missing; flags\n"
"                                    from Status:/X-Status: (R seen; A, F, D, T)\n"
"                                    or the Maildir suffix :2,FRSTD\n"
"  import USER --dovecot-maildir DIR a Dovecot Maildir++ account (DIR: its\n"
"                                    mail_location): every folder with its\n"
"                                    UIDVALIDITY, UIDs, flags, keywords and\n"
"                                    subscriptions; run again: what is new;\n"
"                                    --layout fs: Dovecot's LAYOUT=fs (else\n"
"                                    Maildir++); --control CDIR: Dovecot's\n"
"                                    CONTROL=CDIR; --stock-special-use: Drafts,\n"
"                                    Junk, Trash, Sent as Dovecot's stock\n"
"                                    config marks them\n"
"  export USER MAILBOX PATH          write an mboxrd file (PATH '-': stdout)\n"
"  expunge USER MAILBOX UIDSET       e.g. 1,3:5,7:*\n"
"\n"
"Users (the passwd-file; the password is read from standard input):\n"
"  user add [--scheme NAME] USER     NAME: ARGON2ID (default), SCRAM-SHA-256,\n"
"                                    SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT, PLAIN\n"
"  user passwd [--scheme NAME] USER  change a password\n"
"  user del [--purge] USER           remove from the passwd-file; --purge: and the mail\n"
"  user list                         user names, one a line\n"
"  user show USER                    the user's fields and backend, from the\n"
"                                    directory (userdb: passwd-file, ldap, pgsql)\n"
"  user route USER HOST[:PORT]|here  set the backend holding the user's mail\n"
"  user move USER --to HOST:PORT     move the user's mail to another backend (its\n"
"      [--secret-file F] [--rounds N] listen_move) while the user works, then point\n"
"      [--quiet BYTES]                the directory there; --cleanup: remove the\n"
"                                    old copy a finished move left here\n"
"\n"
"Migration (keeping UIDVALIDITY and UIDs; runs ringmail-migrate):\n"
"  migrate USER --from imaps://HOST[:PORT]|imap://HOST[:PORT] [--starttls]\n"
"          --login NAME --password-file FILE [--ca FILE] [--state DIR]\n"
"          [--check[=full]] [--reset-mailbox NAME]\n"
"                                    copy every mailbox, message, flag and\n"
"                                    subscription; again: only what changed;\n"
"                                    --check: compare, exit 1 on a difference\n"
"  migrate --users FILE [--parallel N] --from URL [--ca FILE] ...\n"
"                                    FILE: lines \"USER LOGIN PASSWORD-FILE\"\n"
"\n"
"Maintenance:\n"
"  compact USER [MAILBOX]            rewrite logs without dead records\n"
"  check USER [MAILBOX] [--repair]   verify logs, indexes and caches;\n"
"                                    exit status 1 if problems remain\n"
"  config                            print the effective configuration\n"
"\n"
"The running server (its control socket, admin_socket; root or its user):\n"
"  who [USER]                        sessions, sorted by user: address, TLS,\n"
"                                    compression, state, mailbox, idle time, IDLE,\n"
"                                    process.worker, age (TAB-separated)\n"
"  kick USER                         USER's sessions get * BYE [UNAVAILABLE]\n"
"  reload                            what SIGHUP does: re-read the certificates\n"
"  flush-auth-cache                  forget the verified passwords\n"
"  stats                             live numbers: sessions by state, TLS, IDLE,\n"
"                                    users, processes, auth cache\n"
"  ctl REQUEST...                    send a raw request (core/server/control.h)\n"
"\n"
"Options:\n"
"  -c CONFIG      configuration file (default: $RINGMAIL_CONFIG, else\n"
"                 " CONFIG_DEFAULT_PATH " if it exists)\n"
"  -o key=value   override one setting after the file (repeatable)\n"
"  -h, --help     this text\n"
"\n"
"Exit status: 0 success, 1 failure, 2 bad command line.\n";

void admin_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ringmail-admin: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int admin_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ringmail-admin: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return ADMIN_USAGE;
}

static int cmd_config(admin_ctx *ctx, int argc, char **argv)
{
    char *pos[1];
    size_t npos;
    if (admin_args(argc, argv, NULL, 0, pos, 0, 0, &npos, "config") < 0)
        return ADMIN_USAGE;
    size_t n;
    const config_key *k = config_keys(&n);
    for (size_t i = 0; i < n; i++)
        printf("%s = %s    # %s\n", k[i].name, config_get(&ctx->cfg, k[i].name),
               config_source(&ctx->cfg, k[i].name));
    return ADMIN_OK;
}

typedef int (*admin_cmd_fn)(admin_ctx *, int, char **);

struct admin_command {
    const char *group;      /* "mailbox" or NULL */
    const char *name;
    admin_cmd_fn fn;
};

#ifdef RINGMAIL_MIGRATE_PROGRAM
/* ringmail-migrate: the same command line, one command. */
static const struct admin_command commands[] = {
    { NULL, "migrate", admin_cmd_migrate },
    { NULL, "config", cmd_config },
};
#else
static const struct admin_command commands[] = {
    { "mailbox", "list", admin_cmd_mailbox_list },
    { "mailbox", "create", admin_cmd_mailbox_create },
    { "mailbox", "delete", admin_cmd_mailbox_delete },
    { "mailbox", "rename", admin_cmd_mailbox_rename },
    { "mailbox", "status", admin_cmd_mailbox_status },
    { NULL, "stats", admin_cmd_stats_any },
    { NULL, "quota", admin_cmd_quota },
    { NULL, "import", admin_cmd_import },
    { NULL, "export", admin_cmd_export },
    { NULL, "expunge", admin_cmd_expunge },
    { NULL, "compact", admin_cmd_compact },
    { NULL, "check", admin_cmd_check },
    { "user", "add", admin_cmd_user_add },
    { "user", "passwd", admin_cmd_user_passwd },
    { "user", "del", admin_cmd_user_del },
    { "user", "list", admin_cmd_user_list },
    { "user", "show", admin_cmd_user_show },
    { "user", "route", admin_cmd_user_route },
    { "user", "move", admin_cmd_user_move },
    { NULL, "config", cmd_config },
    { NULL, "who", admin_cmd_who },
    { NULL, "kick", admin_cmd_kick },
    { NULL, "reload", admin_cmd_reload },
    { NULL, "flush-auth-cache", admin_cmd_flush_auth_cache },
    { NULL, "ctl", admin_cmd_control },
    { NULL, "migrate", admin_cmd_migrate },
};
#endif

static const struct admin_command *find_command(int argc, char **argv,
                                                int *skip)
{
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
        const struct admin_command *c = &commands[i];
        if (c->group) {
            if (argc >= 2 && strcmp(argv[0], c->group) == 0 &&
                strcmp(argv[1], c->name) == 0) {
                *skip = 1;
                return c;
            }
        } else if (strcmp(argv[0], c->name) == 0) {
            *skip = 0;
            return c;
        }
    }
    return NULL;
}

static bool wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return false;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    }
    return false;
}

int main(int argc, char **argv)
{
    int ret = ADMIN_USAGE;
    const char *conf_path = NULL;
    const char **overrides = calloc((size_t)argc, sizeof *overrides);
    size_t noverrides = 0;
    admin_ctx ctx = { 0 };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };

    if (!overrides) {
        admin_err("out of memory");
        return ADMIN_FAIL;
    }
    /* Caches written by import, compaction and repair carry the rendered
     * envelope and the preview, as the server's do. */
    store_msg_set_renderer(imap_envelope_prerender);
    store_msg_set_previewer(imap_preview);
    opterr = 0;
    /* '+': stop at the command word, whose own options are its business. */
    for (int c; (c = getopt_long(argc, argv, "+c:o:h", longopts, NULL)) != -1;) {
        switch (c) {
        case 'c':
            conf_path = optarg;
            break;
        case 'o':
            overrides[noverrides++] = optarg;
            break;
        case 'h':
            fputs(usage_text, stdout);
            ret = ADMIN_OK;
            goto out;
        default:
            if (optopt == 'c' || optopt == 'o')
                admin_usage("option -%c needs an argument", optopt);
            else if (optopt)
                admin_usage("unknown option '-%c' (see ringmail-admin --help)", optopt);
            else
                admin_usage("unknown option '%s' (see ringmail-admin --help)",
                            argv[optind - 1]);
            goto out;
        }
    }
    int rest = argc - optind;
    char **rargv = argv + optind;
    if (rest == 0) {
        fputs(usage_text, stderr);
        goto out;
    }
    if (strcmp(rargv[0], "help") == 0 || wants_help(rest, rargv)) {
        fputs(usage_text, stdout);
        ret = ADMIN_OK;
        goto out;
    }
    int skip = 0;
    const struct admin_command *cmd = find_command(rest, rargv, &skip);
    if (!cmd) {
        if (strcmp(rargv[0], "mailbox") == 0 && rest < 2)
            admin_usage("mailbox: missing sub-command (list, create, delete, rename, status)");
        else if (strcmp(rargv[0], "mailbox") == 0)
            admin_usage("mailbox: unknown sub-command '%s' (see ringmail-admin --help)",
                        rargv[1]);
        else
            admin_usage("unknown command '%s' (see ringmail-admin --help)", rargv[0]);
        goto out;
    }

    char err[1024];
    int r = config_init(&ctx.cfg);
    if (r == 0)
        r = config_load(&ctx.cfg, conf_path, overrides, noverrides, err, sizeof err);
    else
        snprintf(err, sizeof err, "%s", strerror(-r));
    if (r < 0) {
        admin_err("%s", err);
        ret = ADMIN_FAIL;
        goto out;
    }
    r = config_store_opts(&ctx.cfg, &ctx.opts);
    if (r < 0) {
        admin_err("configuration: %s", strerror(-r));
        ret = ADMIN_FAIL;
        goto out;
    }
    ctx.mail_root = config_get(&ctx.cfg, "mail_root");
    if (!*ctx.mail_root) {
        admin_err("mail_root is empty");
        ret = ADMIN_FAIL;
        goto out;
    }
    ctx.conf_path = conf_path;
    ctx.overrides = overrides;
    ctx.noverrides = noverrides;
    ret = cmd->fn(&ctx, rest - skip, rargv + skip);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        admin_err("cannot write to standard output: %s", strerror(errno));
        ret = ADMIN_FAIL;
    }
out:
    config_free(&ctx.cfg);
    free(overrides);
    return ret;
}
