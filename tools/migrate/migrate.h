/* tools/migrate/migrate.h — ringmail-migrate: copying an account from
 * another IMAP server, keeping every mailbox's UIDVALIDITY and every UID.
 *
 * migrate.c drives it (options, users, the run over mailboxes), mig_sync.c
 * copies and compares one mailbox, mig_state.c keeps the state file,
 * mig_imap.c is the IMAP client.  This program links BoringSSL's libssl;
 * ringmail-admin, which does not, runs it for `ringmail-admin migrate`. */
#ifndef RINGMAIL_TOOLS_MIGRATE_MIGRATE_H
#define RINGMAIL_TOOLS_MIGRATE_MIGRATE_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "tools/admin.h"
#include "tools/migrate/mig_imap.h"

/* ---- the state file (mig_state.c) ----
 * <mail_root>/<user>/migrate.state (or --state DIR/<user>.state): per
 * mailbox copied, its name here, its UIDVALIDITY, the highest UID copied,
 * the source's HIGHESTMODSEQ at the last run and the copy's when that run
 * was done with the mailbox.  Text, one line each;
 * rewritten whole (temporary file, fsync, rename) after every batch. */
typedef struct mig_state_mbox {
    char *name;             /* UTF-8, our separator */
    uint32_t uidvalidity;
    uint32_t last_uid;
    uint64_t highestmodseq;
    uint64_t copy_modseq;   /* the copy's HIGHESTMODSEQ when that run ended; 0: unknown */
    bool seen;              /* matched to a source mailbox in this run */
} mig_state_mbox;

typedef struct mig_state {
    char *path;
    mig_state_mbox *v;
    size_t n, cap;
} mig_state;

int mig_state_load(mig_state *st, const char *path);
int mig_state_save(const mig_state *st);
mig_state_mbox *mig_state_find(mig_state *st, const char *name);
mig_state_mbox *mig_state_add(mig_state *st, const char *name);
void mig_state_remove(mig_state *st, mig_state_mbox *e);
void mig_state_free(mig_state *st);

/* ---- a run ---- */

typedef struct mig_opts {
    mig_url url;
    const char *from, *login, *password_file, *ca, *state_dir;
    const char *reset_mailbox;  /* its UIDVALIDITY change is accepted */
    bool check, check_full;
} mig_opts;

/* A source mailbox, from LIST. */
typedef struct mig_src_mbox {
    char *wire;             /* its name as the source spells it (for EXAMINE) */
    char *name;             /* ours: UTF-8, our separator; NULL if unmappable */
    uint32_t special;       /* STORE_SPECIAL_* */
    bool subscribed, noselect;
} mig_src_mbox;

/* Counters of a run, for the summary and the tests. */
typedef struct mig_stats {
    uint64_t copied, copied_bytes, flag_changes, expunged, fetches;
    uint64_t mailboxes, unchanged, from_changes, differences, errors;
} mig_stats;

typedef struct mig_run {
    const mig_opts *o;
    admin_ctx *ctx;
    const char *user;
    store_user *u;
    mig_conn *c;
    mig_state st;
    mig_stats s;
    char sep;               /* ours */
    admin_progress prog;
    bool quiet;             /* no progress bar even on a terminal (--parallel) */
    double t0;
} mig_run;

/* Set by SIGINT/SIGTERM: stop after the batch in hand. */
extern volatile sig_atomic_t mig_stop;

/* Copy (or with o->check, compare) one source mailbox.  0, or -errno after
 * printing why (the run goes on with the next mailbox). */
int mig_sync_mailbox(mig_run *r, const mig_src_mbox *m);

/* "17-Jul-1996 02:44:25 -0700" (RFC 9051 date-time) -> seconds, zone. */
int mig_parse_date(const char *s, size_t n, int64_t *t, int16_t *tz_min);

#endif
