/* tools/admin_dovecot.h — reading what Dovecot keeps beside a Maildir, for
 * `import USER --dovecot-maildir DIR`.
 *
 * Pure parsers over one line or one name each (no files, no store), so the
 * unit tests and the fuzz target can drive them:
 *
 *   dovecot-uidlist   The UIDs.  Version 3 (Dovecot 1.1 and later):
 *                       "3 V<uidvalidity> N<nextuid> G<guid> ..."  then
 *                       "<uid> [<ext>...] :<filename>" per message, where
 *                       each ext is one letter and a value (S<size>,
 *                       W<virtual size>, G<guid>, P<pop3 uidl>, ...).
 *                     Version 1 (Dovecot 1.0, Courier's courierimapuiddb):
 *                       "1 <uidvalidity> <nextuid>" then "<uid> <filename>".
 *                     Dovecot reads only these two versions.
 *                     UIDs are ascending; the file may still list messages
 *                     since expunged (it is rewritten lazily) and may lack
 *                     files delivered since it was written.
 *   dovecot-keywords  "<index> <name>" per line; index 0 is the letter 'a'
 *                     of a file name's info, 1 'b', ... 25 'z'.
 *   file names        "<time>.<unique>[,S=<size>][,W=<vsize>]...:2,<info>"
 *                     where info holds the flag letters (D F P R S T, in
 *                     ASCII order) and then the keyword letters a-z.  The
 *                     part before ":2," is the base name that the uidlist
 *                     matches (a flag change renames the file and keeps
 *                     it).
 *   folder names      Maildir++: the root is INBOX, "<root>/.a.b" is the
 *                     mailbox a/b; LAYOUT=fs: "<root>/a/b" is a/b.  Each
 *                     level is modified UTF-7 on disk.
 *   subscriptions     Version 2: "V\t2\n\n", then one name a line with TAB
 *                     between levels; version 1 (no "V\t" line): names
 *                     with '.' between levels.  Levels modified UTF-7.
 */
#ifndef RINGMAIL_TOOLS_ADMIN_DOVECOT_H
#define RINGMAIL_TOOLS_ADMIN_DOVECOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct admin_uidlist_hdr {
    unsigned version;       /* 1 or 3 */
    uint32_t uidvalidity;   /* never 0 */
    uint32_t nextuid;       /* never 0 */
} admin_uidlist_hdr;

/* The first line of dovecot-uidlist (without its '\n').  0, -EINVAL
 * (malformed, a zero UIDVALIDITY or next UID) or -ENOTSUP (another
 * version). */
int admin_uidlist_header(const char *line, size_t len, admin_uidlist_hdr *h);

typedef struct admin_uidlist_rec {
    uint32_t uid;
    const char *name;       /* the file's base name, inside the line */
    size_t name_len;
    uint64_t size, vsize;   /* the S and W fields; valid if has_* */
    bool has_size, has_vsize;
} admin_uidlist_rec;

/* One record line of a version `version` uidlist.  0 or -EINVAL (no UID,
 * UID 0 or above 2^32-2, no file name, a '/' in the name, a bad number in
 * an S or W field). */
int admin_uidlist_record(unsigned version, const char *line, size_t len,
                         admin_uidlist_rec *r);

/* One line of dovecot-keywords: 0 with *index and the name (inside the
 * line), -EINVAL if malformed (no index, no space, empty name). */
int admin_dovecot_keyword(const char *line, size_t len, unsigned *index,
                          const char **name, size_t *name_len);

typedef struct admin_maildir_name {
    size_t base_len;        /* the base name: name[0, base_len) */
    uint32_t flags;         /* STORE_F_* */
    uint32_t keywords;      /* bit i: letter 'a' + i */
    uint64_t size, vsize;   /* ",S=" and ",W=" in the base; valid if has_* */
    bool has_size, has_vsize;
    bool passed;            /* 'P': resent/bounced; IMAP has no flag for it */
} admin_maildir_name;

/* Parse a message file's name.  The info starts at the first ':' (the
 * Maildir separator; "!2," and ";2," as written by Windows-safe tools are
 * accepted too); letters other than the flags and a-z are ignored, as
 * the Maildir specification says of unknown ones. */
void admin_maildir_name_parse(const char *name, admin_maildir_name *out);

/* Dovecot's order of files not yet in the uidlist, in which it gives them
 * UIDs: by the leading decimal time, then by the microseconds of an
 * ".M<usec>" part, then by the whole name. */
int admin_maildir_name_cmp(const char *a, const char *b);

/* A Maildir++ folder directory name without its leading '.' ("a.b") as a
 * mailbox name with separator sep ("a/b"), malloc'd into *out.  Levels are
 * modified UTF-7 (RFC 3501 5.1.3) or, as Dovecot writes them with
 * mailbox_list_utf8, plain UTF-8 without '&'.  -EINVAL: an empty level,
 * a level that is neither, or one holding sep; -ENOMEM. */
int admin_maildirpp_name(const char *dir, char sep, char **out);

/* The same for LAYOUT=fs: a folder's path below the root ("a/b"), levels
 * split at '/'. */
int admin_dovecot_fs_name(const char *rel, char sep, char **out);

/* One line of a subscriptions file as a mailbox name with separator sep,
 * malloc'd into *out; version 2 levels are split at TAB, version 1 at
 * '.'.  1 and *out, 0 for a line that names nothing (empty), -EINVAL as
 * admin_maildirpp_name, -ENOMEM. */
int admin_dovecot_subscription(unsigned version, const char *line, size_t len,
                               char sep, char **out);

#endif
