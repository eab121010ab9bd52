/* tools/admin_import.h — what the import commands share: batches of
 * converted messages appended together (admin_import.c), and the import
 * of a whole Dovecot Maildir account (admin_import_dovecot.c).
 *
 * Messages are converted to CRLF and appended in batches of up to
 * ADMIN_BATCH_MSGS messages or ADMIN_BATCH_BYTES bytes: one store_append
 * (one fsync, one lock round) per batch.  Each batch is atomic. */
#ifndef RINGMAIL_TOOLS_ADMIN_IMPORT_H
#define RINGMAIL_TOOLS_ADMIN_IMPORT_H

#include "tools/admin.h"
#include "tools/admin_mbox.h"

#define ADMIN_BATCH_MSGS 256
#define ADMIN_BATCH_BYTES (8u << 20)
#define ADMIN_BATCH_KEYWORDS 26     /* Dovecot's Maildir letters a-z */

typedef struct admin_batch_msg {
    int64_t date;
    int16_t tz_min;         /* the date's zone, minutes east of UTC */
    uint32_t flags;         /* STORE_F_* */
    uint32_t keywords;      /* bit i: admin_batch.kwnames[i] */
    uint32_t uid;           /* 0: the next one (store_new_msg.uid) */
} admin_batch_msg;

struct admin_batch_item {
    size_t off, len;        /* in admin_batch.data */
    admin_batch_msg m;
};

typedef struct admin_batch {
    store_mbox *mb;
    /* Keyword i of a message is kwnames[i] (NULL: none); the table must
     * outlive the batch's next flush. */
    const char *const *kwnames;
    admin_buf data;         /* the converted messages, back to back */
    struct admin_batch_item items[ADMIN_BATCH_MSGS];
    store_new_msg msgs[ADMIN_BATCH_MSGS];
    const char *kwptrs[ADMIN_BATCH_MSGS][ADMIN_BATCH_KEYWORDS];
    uint32_t uids[ADMIN_BATCH_MSGS];
    size_t n;
    uint64_t done, bytes;   /* messages and bytes appended so far */
} admin_batch;

/* Add a message (mbox: an mbox entry, From_ lines quoted, its Status: and
 * X-Status: fields dropped; else bare LF becomes CRLF); flushes when the
 * batch is full.  A failed flush is reported (with how many messages were
 * imported before it). */
int admin_batch_add(admin_batch *b, const char *raw, size_t len, bool mbox,
                    const admin_batch_msg *m);
int admin_batch_flush(admin_batch *b);

/* A whole file into buf (reused). */
int admin_read_file(const char *path, admin_buf *buf);

/* `import USER --dovecot-maildir DIR [--layout fs] [--control CDIR]
 * [--stock-special-use]`: every folder of a Dovecot Maildir account
 * (Maildir++ or LAYOUT=fs; control files in the Maildir or under CONTROL=
 * CDIR) with its UIDVALIDITY, UIDs, flags, keywords and subscriptions (and
 * the special-use of Dovecot's stock configuration). */
int admin_import_dovecot(admin_ctx *ctx, const char *user, const char *dir,
                         const char *control, bool layout_fs, bool stock_special);

#endif
