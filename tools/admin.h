/* tools/admin.h — what the ringmail-admin commands share.
 *
 * Every command is `int admin_cmd_NAME(admin_ctx *, int argc, char **argv)`
 * with argv[0] the command word (for "mailbox", the sub-command word) and
 * returns the process exit status: ADMIN_OK, ADMIN_FAIL (the operation
 * failed or found problems) or ADMIN_USAGE (bad command line).  A command
 * reports its own errors, as one line on stderr through admin_err(), before
 * returning; results go to stdout.
 */
#ifndef RINGMAIL_TOOLS_ADMIN_H
#define RINGMAIL_TOOLS_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/config.h"
#include "store/store.h"

#define ADMIN_OK    0
#define ADMIN_FAIL  1
#define ADMIN_USAGE 2

typedef struct admin_ctx {
    config cfg;
    store_opts opts;        /* from cfg */
    const char *mail_root;  /* from cfg, owned by it */
    /* The command line's -c and -o, for a command run by another program
     * (migrate: ringmail-migrate). */
    const char *conf_path;
    const char *const *overrides;
    size_t noverrides;
} admin_ctx;

/* "ringmail-admin: <message>\n" on stderr. */
void admin_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A usage error: one line on stderr; returns ADMIN_USAGE. */
int admin_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- argument parsing (admin_args.c) ---------------------------------- */

/* An option of a command: "--name" alone (flag) or with a value
 * ("--name VALUE" or "--name=VALUE"). */
typedef struct admin_opt {
    const char *name;       /* without the dashes */
    bool *flag;             /* set to true if present (value-less options) */
    const char **value;     /* set to the value (options with a value) */
} admin_opt;

/* Split argv[1..] into options (anywhere; "--" ends them) and positional
 * arguments.  Requires min..max positionals.  On error prints a usage line
 * built from `synopsis` and returns -EINVAL. */
int admin_args(int argc, char **argv, const admin_opt *opts, size_t nopts,
               char **pos, size_t min, size_t max, size_t *npos,
               const char *synopsis);

/* ---- opening users and mailboxes (admin_open.c) ----------------------- */

/* Open USER's store.  With create false, a user without a store directory
 * is an error ("user 'x' does not exist"), so a typo does not silently
 * create an empty user; with create true the store (and mail_root) are
 * created on first use.  Prints the error. */
int admin_user_open(admin_ctx *ctx, const char *user, bool create,
                    store_user **out);
/* Open a mailbox; prints "mailbox 'x' does not exist" and the like. */
int admin_mbox_open(store_user *u, const char *name, store_mbox **out);
/* Print the error of a mailbox operation on `name` in words an operator
 * understands (-ENOENT -> "mailbox 'x' does not exist", ...). */
void admin_mailbox_error(const char *name, int err);
/* The one mailbox `name`, or every mailbox of the user if name is NULL;
 * free with store_mailbox_info_free.  Prints the error. */
int admin_select_mailboxes(store_user *u, const char *user, const char *name,
                           store_mailbox_info **out, size_t *n);

/* ---- progress (admin_progress.c) -------------------------------------- */

/* A progress bar on stderr when it is a terminal; silent otherwise (the
 * command then prints a summary line when done). */
typedef struct admin_progress {
    char label[64];
    bool tty, bytes, shown;
    char detail[96];        /* shown after the counts (admin_progress_detail) */
    uint64_t total;
    int64_t last_ns;        /* of the last redraw, to redraw ~10 times/s */
} admin_progress;

void admin_progress_start(admin_progress *p, const char *label,
                          uint64_t total, bool bytes);
void admin_progress_update(admin_progress *p, uint64_t done);
/* Usable as a store_progress_fn with arg = the admin_progress. */
void admin_progress_cb(void *arg, uint64_t done, uint64_t total);
/* Text shown after the counts from the next redraw on ("12/40 msgs,
 * 3.1 MB/s, ETA 8 s"). */
void admin_progress_detail(admin_progress *p, const char *text);
/* Erase the bar (the caller prints its summary next). */
void admin_progress_end(admin_progress *p);

/* "12.3 MB" and the like into buf. */
const char *admin_human_bytes(uint64_t n, char *buf, size_t len);
/* Seconds since an arbitrary start, for summaries. */
double admin_now(void);

/* ---- UID sets (admin_uidset.c) ---------------------------------------- */

/* Parse IMAP UID set syntax ("1,3:5,7:*"; '*' is UINT32_MAX, "5:3" is
 * "3:5").  *out is malloc'd, owned by the caller.  -EINVAL if malformed. */
int admin_uidset_parse(const char *s, store_range **out, size_t *n);

/* ---- commands --------------------------------------------------------- */

int admin_cmd_mailbox_list(admin_ctx *ctx, int argc, char **argv);
int admin_cmd_mailbox_create(admin_ctx *ctx, int argc, char **argv);
int admin_cmd_mailbox_delete(admin_ctx *ctx, int argc, char **argv);
int admin_cmd_mailbox_rename(admin_ctx *ctx, int argc, char **argv);
int admin_cmd_mailbox_status(admin_ctx *ctx, int argc, char **argv);
int admin_cmd_stats(admin_ctx *ctx, int argc, char **argv);
/* admin_control.c: requests to the running server's control socket */
/* Send one request, copy the answer lines to stdout (header, if not NULL,
 * before the first); ADMIN_OK on "OK", else ADMIN_FAIL (error printed). */
int admin_control_request(admin_ctx *ctx, const char *req, const char *header);
/* admin_move.c: user move USER --to HOST:PORT | --cleanup */
int admin_cmd_user_move(admin_ctx *ctx, int argc, char **argv);
int admin_cmd_who(admin_ctx *ctx, int argc, char **argv);
int admin_cmd_kick(admin_ctx *ctx, int argc, char **argv);
int admin_cmd_reload(admin_ctx *ctx, int argc, char **argv);
int admin_cmd_flush_auth_cache(admin_ctx *ctx, int argc, char **argv);
int admin_cmd_stats_any(admin_ctx *ctx, int argc, char **argv);    /* stats [USER] */
int admin_cmd_control(admin_ctx *ctx, int argc, char **argv);
int admin_cmd_quota(admin_ctx *ctx, int argc, char **argv);
int admin_cmd_import(admin_ctx *ctx, int argc, char **argv);
int admin_cmd_export(admin_ctx *ctx, int argc, char **argv);
int admin_cmd_expunge(admin_ctx *ctx, int argc, char **argv);
int admin_cmd_compact(admin_ctx *ctx, int argc, char **argv);
int admin_cmd_check(admin_ctx *ctx, int argc, char **argv);
int admin_cmd_user_add(admin_ctx *ctx, int argc, char **argv);
int admin_cmd_user_passwd(admin_ctx *ctx, int argc, char **argv);
int admin_cmd_user_del(admin_ctx *ctx, int argc, char **argv);
int admin_cmd_user_list(admin_ctx *ctx, int argc, char **argv);
int admin_cmd_user_show(admin_ctx *ctx, int argc, char **argv);
int admin_cmd_user_route(admin_ctx *ctx, int argc, char **argv);
/* admin_userdb.c: the directory of users from the configuration (an error
 * said on stderr), and one user's record (-ENOENT etc., said too). */
struct userdb;
struct userdb_rec;
int admin_userdb_open(admin_ctx *ctx, struct userdb **out);
int admin_userdb_lookup(admin_ctx *ctx, const char *user, struct userdb_rec *rec);
/* In ringmail-admin it runs ringmail-migrate (admin_migrate.c), which links
 * libssl; there it is the migration itself (migrate/migrate.c). */
int admin_cmd_migrate(admin_ctx *ctx, int argc, char **argv);

#endif
