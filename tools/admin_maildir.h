/* tools/admin_maildir.h — reading a Maildir folder for import.
 *
 * A Maildir is a directory with cur/ and new/ (tmp/ holds deliveries in
 * progress and is skipped).  Each regular file there, not starting with a
 * dot, is one message.  Its internal date is the file's mtime (a Maildir
 * delivery never rewrites the file, and a flag change renames it, which
 * leaves the mtime alone).  Its flags come from the info suffix
 * ":2,<letters>" ('!' or ';' instead of ':' as some Windows-safe tools
 * write): F \Flagged, R \Answered, S \Seen, T \Deleted, D \Draft; P
 * (passed) and lowercase keyword letters (which need Dovecot's
 * dovecot-keywords file to mean anything) are ignored.
 */
#ifndef RINGMAIL_TOOLS_ADMIN_MAILDIR_H
#define RINGMAIL_TOOLS_ADMIN_MAILDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct admin_maildir_entry {
    char *path;             /* owned */
    int64_t mtime;
    uint64_t size;
    uint32_t flags;         /* STORE_F_* */
} admin_maildir_entry;

/* A directory with cur/ and new/ subdirectories. */
bool admin_is_maildir(const char *path);

/* Flags from a file name's info suffix. */
uint32_t admin_maildir_flags(const char *name);

/* The messages of a Maildir, ordered by (mtime, file name), which is
 * delivery order for files named the usual way ("<time>.<unique>...").
 * Free with admin_maildir_free.  -errno if a directory cannot be read. */
int admin_maildir_scan(const char *dir, admin_maildir_entry **out, size_t *n);
void admin_maildir_free(admin_maildir_entry *v, size_t n);

#endif
