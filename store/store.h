/* store/store.h — Ringmail's mailbox store.
 *
 * This header is the contract.  The on-disk format is described in
 * docs/store-format.md.
 *
 * Layout: <mail_root>/<user>/mailboxes (the mailbox list) and one directory
 * per mailbox, <mail_root>/<user>/m/<id>/, holding `log.<gen>` (append-only,
 * the truth), `index` (mmap'd, derived), `cache.<gen>` (parsed headers and
 * MIME trees, derived) and `lock`.
 *
 * Errors: every int function returns 0 (or a documented count) on success
 * and -errno on failure.  Common codes: -ENOENT no such mailbox or message,
 * -EEXIST mailbox exists, -EINVAL bad argument or mailbox name, -EPERM the
 * operation is not allowed on INBOX, -EMLINK keyword table full
 * (STORE_MAX_KEYWORDS), -ENOSPC (or -EDQUOT) no room left on the file
 * system, -EFBIG message too large, -EBADMSG a corrupt file that could not
 * be repaired, -EIO a failed write or fsync (the mailbox then refuses
 * further writes: after a failed fsync the kernel may have dropped the data,
 * so nothing is acknowledged that might not be on disk).
 *
 * A write that fails leaves nothing behind: a transaction whose log record
 * was written but could not be applied to the index (no room for its cache
 * or index entries) is cut from the log again before the error is returned,
 * so it never appears later.  On a full disk writes fail with -ENOSPC while
 * reading (opening, snapshots, status, the mailbox list) goes on: no file
 * is grown sparsely and then written through a mapping, so a full disk is
 * an error, never a SIGBUS.
 *
 * Threads: store_user and store_mbox handles are shared.  Opening the same
 * user (same mail_root) or the same mailbox twice in one process returns the
 * same object with its reference count raised, so all sessions of a user in
 * the process see one state.  Any thread may call any function.  Writers
 * are serialized by a mutex in the process and an flock() on the mailbox's
 * `lock` file across processes; readers take no locks: they pin a snapshot
 * (store_snap_get) and read index, cache and log through read-only maps.
 *
 * A change made by another process (ringmail-admin while the server runs)
 * becomes visible at the next store_mbox_refresh() or store_snap_get().
 */
#ifndef RINGMAIL_STORE_STORE_H
#define RINGMAIL_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "store/message.h"

/* System flags, as stored.  \Recent is not a stored flag: see
 * store_mbox_claim_recent(). */
#define STORE_F_ANSWERED 0x01u
#define STORE_F_FLAGGED  0x02u
#define STORE_F_DELETED  0x04u
#define STORE_F_SEEN     0x08u
#define STORE_F_DRAFT    0x10u
#define STORE_F_ALL      0x1fu

/* Special-use attributes (RFC 6154). */
#define STORE_SPECIAL_SENT    0x01u
#define STORE_SPECIAL_DRAFTS  0x02u
#define STORE_SPECIAL_TRASH   0x04u
#define STORE_SPECIAL_JUNK    0x08u
#define STORE_SPECIAL_ARCHIVE 0x10u
#define STORE_SPECIAL_ALL     0x1fu

#define STORE_MAX_KEYWORDS   64   /* per mailbox */
#define STORE_MAX_KEYWORD_LEN 100
#define STORE_MAX_NAME_LEN   1000 /* mailbox name, bytes of UTF-8 */

typedef enum store_fsync {
    STORE_FSYNC_NEVER = 0,  /* never fsync: fast, loses recent mail on power loss */
    STORE_FSYNC_BATCH,      /* group commit: concurrent writers share one fdatasync */
    STORE_FSYNC_ALWAYS,     /* fdatasync after every write, no sharing */
} store_fsync;

typedef struct store_opts {
    store_fsync fsync;
    char separator;         /* hierarchy separator, '/' (default) or '.' */
} store_opts;

typedef struct store_user store_user;
typedef struct store_mbox store_mbox;
typedef struct store_snap store_snap;

/* Month abbreviations ("Jan".."Dec") of RFC 5322 and IMAP dates: the name
 * of month m (0-11; NULL otherwise), and the month (0-11, or -1) that the
 * first three bytes of s name, in any case (RFC 5234 strings are
 * case-insensitive). */
const char *store_month_abbr(int m);
int store_month_parse(const char *s, size_t n);

/* A store error code (-errno, as returned above) in words: the codes with a
 * store meaning (-EMLINK keyword table full, ...) are named as such. */
const char *store_strerror(int rc);

/* Parse "always" | "batch" | "never".  Returns 0 or -EINVAL. */
int store_fsync_parse(const char *s, store_fsync *out);
void store_opts_default(store_opts *o);

/* ---- users and the mailbox list ------------------------------------- */

/* Open (creating on first use, with an INBOX) the store of `user` under
 * mail_root.  The user name must be a valid single path component (no '/',
 * not "." or "..", no control characters).  opts may be NULL (defaults). */
int store_user_open(const char *mail_root, const char *user,
                    const store_opts *opts, store_user **out);
void store_user_close(store_user *u);
char store_user_separator(const store_user *u);

typedef struct store_mailbox_info {
    char *name;             /* owned; "INBOX" is always spelled so */
    uint64_t id;            /* stable id; names the mailbox directory */
    uint32_t uidvalidity;
    uint32_t special;       /* STORE_SPECIAL_* */
    bool subscribed;
    bool noselect;          /* a \Noselect name (id 0): see store_mailbox_delete_ext */
} store_mailbox_info;

/* All mailboxes, sorted by name (INBOX first).  *out is owned by the caller:
 * free with store_mailbox_info_free.  \Noselect names are left out: every
 * name listed here can be opened. */
int store_mailbox_list(store_user *u, store_mailbox_info **out, size_t *n);
/* The same with the \Noselect names too (noselect set), for IMAP LIST. */
int store_mailbox_list_all(store_user *u, store_mailbox_info **out, size_t *n);
void store_mailbox_info_free(store_mailbox_info *v, size_t n);
/* One mailbox; out->name is owned by the caller (free()).  A \Noselect name
 * is -ENOENT here, as for store_mbox_open and store_mailbox_status. */
int store_mailbox_get(store_user *u, const char *name, store_mailbox_info *out);

/* Mailbox names are UTF-8.  "INBOX" matches case-insensitively.  A name is
 * invalid (-EINVAL) if empty, longer than STORE_MAX_NAME_LEN, not UTF-8,
 * with control characters, starting or ending with the separator, with an
 * empty or "."/".." level, or containing '/' when the separator is '.'.
 * Any other bytes are kept exactly (spaces anywhere, quotes, backslashes,
 * '%', '*'), also across a reload of the list.
 * Creating "a/b/c" creates missing parents "a" and "a/b" as well.  Creating
 * a \Noselect name makes it a new, empty mailbox (new UIDVALIDITY). */
int store_mailbox_create(store_user *u, const char *name, uint32_t special);
/* The same with a given UIDVALIDITY (nonzero), for a migration that keeps
 * the source's.  A mailbox of that name that is empty and has never held a
 * message (UIDNEXT 1: INBOX as made on first use) is replaced by a new one
 * with the given UIDVALIDITY (a new MAILBOXID too), as DELETE and CREATE
 * would.  -EEXIST if it exists with this UIDVALIDITY already (nothing
 * changed: go on with it) or holds or held messages under another. */
int store_mailbox_create_uv(store_user *u, const char *name, uint32_t special,
                            uint32_t uidvalidity);
/* Deleting INBOX is -EPERM; a mailbox with children is -ENOTEMPTY.
 * Deletion is durable when this returns; open handles keep working on the
 * old files until closed.  Deleting a \Noselect name without children
 * removes the name. */
int store_mailbox_delete(store_user *u, const char *name);
/* With STORE_DELETE_KEEP_PARENT, a mailbox with children is not refused: its
 * messages go and its name stays as \Noselect (RFC 3501 6.3.4), kept in the
 * list file.  A \Noselect name with children is still -ENOTEMPTY, and the
 * last child's deletion leaves its \Noselect parent in place.  RENAME moves
 * a \Noselect name like any other. */
#define STORE_DELETE_KEEP_PARENT 0x1u
int store_mailbox_delete_ext(store_user *u, const char *name, unsigned flags);
/* Renames the mailbox and all its children.  Renaming INBOX moves its
 * messages to a new mailbox `to` and leaves INBOX empty, as RFC 3501 says.
 * -ENOENT, -EEXIST (target or a child target exists), -EINVAL (into
 * itself). */
int store_mailbox_rename(store_user *u, const char *from, const char *to);
/* Subscriptions are names, kept even for mailboxes that do not exist. */
int store_mailbox_subscribe(store_user *u, const char *name, bool on);
int store_subscriptions(store_user *u, char ***names, size_t *n); /* free each and the array */
int store_mailbox_set_special(store_user *u, const char *name, uint32_t special);

/* ---- freezing a user (a move to another backend) ----
 * While <mail_root>/<user>/frozen exists, every write to the user's store
 * (append, flags, expunge, mailbox list changes, compaction's swap) fails
 * with -EROFS, in every process, and reading goes on.  The file holds one
 * line saying why ("moving to HOST:PORT", "moved to HOST:PORT"). */
#define STORE_FROZEN_FILE "frozen"
/* Make the file (durably) and wait until every write that had begun has
 * ended (it takes and releases each writer lock of the user once): when it
 * returns 0, the user's files change no more.  -ENOENT: no such user. */
int store_user_freeze(const char *mail_root, const char *user, const char *why);
/* Remove the file; 0 also when there was none. */
int store_user_thaw(const char *mail_root, const char *user);
/* 1 frozen (why, if not NULL, gets the line), 0 not, or -errno. */
int store_user_frozen(const char *mail_root, const char *user, char *why, size_t len);

/* ---- an open mailbox -------------------------------------------------- */

int store_mbox_open(store_user *u, const char *name, store_mbox **out);
/* Another handle on an open mailbox (the same object; close each). */
store_mbox *store_mbox_dup(store_mbox *mb);
void store_mbox_close(store_mbox *mb);
/* Pick up changes written by another process. */
int store_mbox_refresh(store_mbox *mb);
/* The mailbox's directory (its files: see the top of this header), for
 * watching it for changes made by other processes.  Owned by mb: valid
 * until store_mbox_close. */
const char *store_mbox_dir(const store_mbox *mb);

typedef struct store_status {
    uint32_t messages, recent, unseen, deleted;
    uint32_t uidnext, uidvalidity;
    uint64_t highestmodseq;
    uint64_t size;          /* sum of RFC822.SIZE of live messages */
    uint64_t log_bytes;     /* size of the log file */
    uint64_t dead_bytes;    /* log bytes held by expunged messages and
                               superseded records: what compaction frees */
    uint64_t generation;
} store_status;

int store_mbox_status(store_mbox *mb, store_status *st);
int store_mailbox_status(store_user *u, const char *name, store_status *st);

/* \Recent: returns in *first the lowest UID that is recent for the caller
 * (messages with uid >= *first are \Recent for this session) and marks every
 * current message non-recent for everybody else.  Not durable. */
int store_mbox_claim_recent(store_mbox *mb, uint32_t *first);

/* ---- writing -------------------------------------------------------- */

typedef struct store_new_msg {
    const void *data;       /* RFC 5322 bytes, CRLF line ends; not retained */
    size_t len;
    int64_t internal_date;  /* seconds since the epoch; 0 means now */
    int16_t tz_min;         /* the internal date's zone, minutes east of UTC */
    uint32_t flags;         /* STORE_F_* */
    const char *const *keywords;
    size_t nkeywords;
    /* Optional: the message's cache blob, from store_msg_parse or
     * store_msg_prefixed of exactly these bytes (a delivery to several
     * recipients parses once).  Without it store_append parses the message
     * itself, before it takes the mailbox's write lock.  Not retained. */
    const void *cache;
    size_t cache_len;
    /* The EMAILID to keep (store_copy sets it: RFC 8474 5.1, a copy has the
     * original's); email_uid 0 = a new message, whose EMAILID is made from
     * the target mailbox's id and its new UID. */
    uint64_t email_mbox;
    uint32_t email_uid;
    uint32_t email_uv;
    /* 0: the next UID.  Else exactly this UID (a migration keeping the
     * source's): within one store_append the given UIDs ascend and each is
     * at least UIDNEXT, else -ERANGE and nothing is written. */
    uint32_t uid;
} store_new_msg;

/* An inclusive UID range; a set is an array of them (need not be sorted or
 * disjoint).  hi may be UINT32_MAX for "*". */
typedef struct store_range {
    uint32_t lo, hi;
} store_range;

typedef struct store_uidlist {
    uint32_t *uids;
    size_t n, cap;
} store_uidlist;
void store_uidlist_free(store_uidlist *l);

/* Append n messages atomically (all or none, also across a crash).  Returns
 * when they are durable under the fsync policy; uids_out (n entries) gets
 * their UIDs. */
int store_append(store_mbox *mb, const store_new_msg *msgs, size_t n,
                 uint32_t *uids_out);
/* Raise UIDNEXT to uidnext without adding a message (a migrated mailbox
 * takes its source's UIDNEXT), durably under the fsync policy.  -ERANGE if
 * that would lower it. */
int store_mbox_set_uidnext(store_mbox *mb, uint32_t uidnext);
/* Raise HIGHESTMODSEQ to modseq without a change (a migrated mailbox takes
 * at least its source's: a client that synchronised with the source asks
 * for the changes since the value it holds, so later changes here must
 * get greater mod-sequences), durably.  -ERANGE if that would lower it or for a value
 * of 2^56 or more. */
int store_mbox_set_highestmodseq(store_mbox *mb, uint64_t modseq);

/* ---- deferred durability ----
 * A worker thread must not wait for the disk while other sessions wait for
 * it.  Between store_defer_begin and store_defer_end, this thread's writes
 * under fsync = batch/always return as soon as they are written and
 * visible, without the flush; `d` collects what must still be flushed.
 * The caller may acknowledge those writes only after store_defer_sync(d)
 * returned 0 (any thread; it blocks, and one flush serves every write made
 * to that log before it started: group commit across sessions).  A failed
 * flush makes the mailbox refuse further writes, as a failed inline flush
 * does.  store_defer_release drops what d holds (always call it). */
#define STORE_DEFER_MAX 4
typedef struct store_defer {
    size_t n;
    struct { void *gen; uint64_t end; } e[STORE_DEFER_MAX];
} store_defer;
void store_defer_begin(store_defer *d);
void store_defer_end(void);
int store_defer_sync(store_defer *d);
void store_defer_release(store_defer *d);

/* Copy the live messages of src in the set to dst (same user or not),
 * keeping flags, keywords and internal dates.  src_uids/dst_uids (either may
 * be NULL) get the pairs in UID order (COPYUID).  With move, the copies are
 * made durable first and the originals then expunged.  Copying or moving
 * a mailbox into itself is allowed: the set is the messages that exist
 * when it starts; a move gives them new UIDs and expunges the originals. */
int store_copy(store_mbox *src, const store_range *set, size_t nset,
               store_mbox *dst, bool move,
               store_uidlist *src_uids, store_uidlist *dst_uids);

typedef enum store_flag_op {
    STORE_FLAGS_SET,
    STORE_FLAGS_ADD,
    STORE_FLAGS_REMOVE,
} store_flag_op;

/* Change system flags and keywords of the live messages in the set.  Only
 * messages whose flags actually change get a new modseq (all of them the
 * same one, returned in *modseq; 0 if nothing changed).  With
 * unchangedsince != 0, messages whose modseq is above it are left alone and
 * listed in `modified` (RFC 7162).  `changed` (optional) gets the UIDs that
 * changed. */
int store_flags(store_mbox *mb, const store_range *set, size_t nset,
                store_flag_op op, uint32_t flags,
                const char *const *keywords, size_t nkeywords,
                uint64_t unchangedsince, store_uidlist *changed,
                store_uidlist *modified, uint64_t *modseq);

/* Expunge the live messages in the set (set NULL = all); with only_deleted,
 * only those with \Deleted.  `expunged` (optional) gets their UIDs.  A
 * tombstone (uid, modseq) is kept for store_snap_expunged_since. */
int store_expunge(store_mbox *mb, const store_range *set, size_t nset,
                  bool only_deleted, store_uidlist *expunged,
                  uint64_t *modseq);

/* ---- reading -------------------------------------------------------- */

/* A snapshot pins the mailbox's current files and entry count.  Entries
 * below the count never move while it is held (flags and modseq may change
 * and are read atomically).  Cheap; take one per command. */
store_snap *store_snap_get(store_mbox *mb);
void store_snap_put(store_snap *s);

typedef struct store_msg {
    uint32_t uid;
    uint32_t flags;         /* STORE_F_* */
    uint64_t keywords;      /* bit i = keyword i (store_snap_keyword) */
    uint64_t modseq;
    int64_t internal_date;
    int16_t tz_min;
    uint32_t size;          /* RFC822.SIZE */
    uint32_t hdr_len;       /* header length incl. the blank line */
} store_msg;

uint32_t store_snap_messages(const store_snap *s);   /* live messages */
uint32_t store_snap_uidnext(const store_snap *s);
uint64_t store_snap_highestmodseq(const store_snap *s);
uint32_t store_snap_uidvalidity(const store_snap *s);
/* The mailbox's directory (as store_mbox_dir), for files derived from the
 * messages that live beside the store's own (the search index). */
const char *store_snap_dir(const store_snap *s);

/* Name of keyword i, or NULL.  Valid while the snapshot is held. */
const char *store_snap_keyword(const store_snap *s, unsigned i);
/* Index of a keyword (case-insensitive), or -ENOENT. */
int store_snap_keyword_index(const store_snap *s, const char *name);

/* Positional access to every index entry, live or expunged:
 * 0 <= pos < store_snap_entries().  Returns 1 live, 0 expunged.  This is
 * the fast path for listings. */
uint32_t store_snap_entries(const store_snap *s);
int store_snap_entry(const store_snap *s, uint32_t pos, store_msg *m);
/* The live messages among the entries at positions [*pos, end), at most n
 * of them: UIDs to uids[], system flags to flags[] (STORE_F_*; may be
 * NULL); *pos moves past the entries read.  Returns how many were written.
 * A session's view of a big mailbox is built this way, a block at a time,
 * without a store_msg per message. */
size_t store_snap_live(const store_snap *s, uint32_t *pos, uint32_t end, uint32_t *uids,
                       uint32_t *flags, size_t n);

/* Sequence numbers here are 1-based ranks among live messages of the
 * snapshot (a session keeps its own view on top).  O(log n). */
uint32_t store_snap_seq_of_uid(const store_snap *s, uint32_t uid); /* 0 if none */
uint32_t store_snap_uid_of_seq(const store_snap *s, uint32_t seq); /* 0 if none */
/* Returns 0 and fills m, or -ENOENT (absent or expunged). */
int store_snap_msg(const store_snap *s, uint32_t uid, store_msg *m);
/* Like store_snap_entry by UID: 1 live, 0 expunged (still readable until
 * compaction), -ENOENT absent. */
int store_snap_lookup(const store_snap *s, uint32_t uid, store_msg *m);

/* Bytes of a message, as pointers into the read-only log mapping, valid
 * while the snapshot is held.  Whole message: off 0, len SIZE_MAX.  The
 * header is [0, hdr_len), the body [hdr_len, size).  A range past the end
 * is clipped; *got says how much there is. */
int store_snap_bytes(const store_snap *s, uint32_t uid, uint64_t off,
                     size_t len, const char **ptr, size_t *got);

/* The cache blob of a message (see message.h), read-only, valid while the
 * snapshot is held.  If the cache entry is missing or damaged the message is
 * re-parsed into a buffer the snapshot owns. */
int store_snap_cache(store_snap *s, uint32_t uid, store_cache *c);

/* ---- object ids (RFC 8474) and save dates (RFC 8514) ----
 * Kept in the message's log record, not in the index entry: reading them
 * costs a look at the log (two small reads of the log mapping). */
typedef struct store_msg_ext {
    /* EMAILID: the mailbox id, UID and the mailbox's UIDVALIDITY the
     * message was first saved under, carried by COPY and MOVE, compaction
     * and repair; unique per user because mailbox ids and UIDs are never
     * reused, and the UIDVALIDITY (time-based) keeps a user's store made
     * again from nothing (ids from 1 again) from giving an old id to a new
     * message. */
    uint64_t email_mbox;
    uint32_t email_uid;
    uint32_t email_uv;
    int64_t save_date;      /* saved into this mailbox at, seconds since the
                               epoch; 0 = not known (saved by a version
                               that did not record it) */
} store_msg_ext;
/* The message's ids and save date, live or expunged (as store_snap_bytes):
 * 0, or -ENOENT (absent), -EBADMSG (a damaged entry or record). */
int store_snap_msg_ext(const store_snap *s, uint32_t uid, store_msg_ext *out);

/* Object ids as text: 1-255 of [A-Za-z0-9_-] (RFC 8474 8.1), starting with
 * a letter that tells the kind (M: EMAILID, F: MAILBOXID).  Each fits in
 * STORE_OBJECTID_MAX bytes with its NUL. */
#define STORE_OBJECTID_MAX 48
void store_emailid_format(const store_msg_ext *x, char *buf);
/* 0 and the email_* fields of *out, or -EINVAL for anything
 * store_emailid_format does not make (such an id matches no message). */
int store_emailid_parse(const char *s, store_msg_ext *out);
void store_mailboxid_format(uint64_t id, uint32_t uidvalidity, char *buf);

/* THREADID (RFC 8474 5.2, kind letter T): a 64-bit value computed from the
 * message's own header fields (its cache blob c) and, for a message with
 * no Message ID at all, its EMAILID x.  0, or -ENOMEM.  Nonzero always. */
int store_threadid(const store_cache *c, const store_msg_ext *x, uint64_t *out);
void store_threadid_format(uint64_t t, char *buf);
/* 0, or -EINVAL for anything store_threadid_format does not make. */
int store_threadid_parse(const char *s, uint64_t *out);

/* ---- cursors ----
 * A cursor walks a snapshot's entries (live and expunged, in UID order) by
 * position, for listings: stepping to the next entry, or seeking to a UID
 * at or a few entries past the current one, is O(1); a farther seek is a
 * binary search over what lies ahead (or behind).  The entry's cache and
 * bytes are then read by position, without another lookup, and the
 * entry's checksum is checked once per position.  Damage is treated as by
 * store_snap_cache and store_snap_bytes.  A cursor is a plain value owned
 * by the caller (no allocation, nothing to free); it is valid while its
 * snapshot is held and is used by one thread at a time, like the
 * snapshot. */
typedef struct store_cursor {
    store_snap *snap;
    uint32_t pos;           /* current position, 0 .. store_snap_entries();
                               the last is the end */
    /* private to store/cursor.c */
    uint32_t count_;
    const void *ents_;      /* the snapshot's entries, in place */
    const void *sound_;     /* the entry at pos, once found sound */
} store_cursor;

/* At position 0. */
void store_cursor_init(store_cursor *c, store_snap *s);
/* A value the caller derived from the content of the entry at the cursor
 * (SORT's sent date), remembered for this generation in this process
 * (store/memo.c): get returns false until a put.  The value must depend
 * on the message's bytes alone, never on its flags.  Any int64 but
 * INT64_MIN. */
bool store_cursor_memo_get(const store_cursor *c, int64_t *v);
void store_cursor_memo_put(const store_cursor *c, int64_t v);
/* The same for bytes (at most STORE_MEMO_MAX_BYTES), one value per kind:
 * THREAD's normalized Message-IDs, the base subject.  get gives a pointer
 * valid while the snapshot is held.  A put may be dropped (no memory, the
 * process's memo budget spent, a value there already): the caller
 * derives it again next time. */
enum { STORE_MEMO_DATE, STORE_MEMO_IDS, STORE_MEMO_SUBJECT, STORE_MEMO_KINDS };
#define STORE_MEMO_MAX_BYTES 65536u
bool store_cursor_memo_bytes(const store_cursor *c, unsigned kind, const uint8_t **p,
                             size_t *len);
void store_cursor_memo_put_bytes(const store_cursor *c, unsigned kind, const void *p,
                                 size_t len);
/* A number for these bytes (THREAD's Message-IDs), the same for the same
 * bytes in every cursor on the generation: numbers are dense from 0
 * (store/names.h), so a caller indexes an array by them instead of
 * hashing strings.  0, -ENOSPC (the process's memo budget is spent: a
 * string numbered before is still found, a new one is not numbered), or
 * -ENOMEM.  store_cursor_memo_named gives the bytes back (valid while the
 * snapshot is held), false for a number never given. */
int store_cursor_memo_name(const store_cursor *c, const void *p, size_t len, uint32_t *num);
bool store_cursor_memo_named(const store_cursor *c, uint32_t num, const uint8_t **p,
                             size_t *len);
/* The bytes the memos of all generations of this process may hold
 * (default 512 MB); for tests. */
void store_memo_set_budget(uint64_t bytes);

/* Ask the kernel to read ahead, without waiting, the message bytes
 * (STORE_RA_BODY) or cache blobs (STORE_RA_CACHE) of the entries from the
 * cursor on, up to `window` bytes: a scan that will read them then finds
 * them in memory instead of stopping its thread on a page fault for each
 * (a cold 10^6-message mailbox stalled the worker 50-450 ms at a time).
 * Returns how many entries the window holds (0 at the end). */
enum { STORE_RA_BODY, STORE_RA_CACHE };
#define STORE_RA_WINDOW ((uint64_t)16 << 20)
uint32_t store_cursor_readahead(const store_cursor *c, unsigned what, uint64_t window);

/* What a scan knows of one file of its snapshot to be in memory: the byte
 * range the last look found resident (store/fault.c).  Zero it to start. */
typedef struct store_resident {
    const void *map_;           /* private to store/fault.c */
    uint64_t lo_, hi_;
} store_resident;

typedef struct store_fault store_fault;

/* Whether the bytes of the cursor's entry in `what`'s file (STORE_RA_BODY:
 * the message, its first `upto` bytes; STORE_RA_CACHE: its cache blob)
 * are in memory, so that reading them will not wait for the disk.  0:
 * they are (or there is nothing to read, or it cannot be told);
 * -EWOULDBLOCK: they are not, and *f brings them in: store_fault_run it
 * on a thread that may wait, then store_fault_free it (on any thread) and
 * read; -ENOMEM. */
#define STORE_ALL_BYTES UINT64_MAX
int store_cursor_resident(const store_cursor *c, unsigned what, uint64_t upto,
                          store_resident *known, store_fault **f);
/* The same for the index entries at positions [pos, end) (a SELECT's
 * walk of them, store_snap_live). */
int store_snap_entries_resident(const store_snap *s, uint32_t pos, uint32_t end,
                                store_resident *known, store_fault **f);
void store_fault_run(store_fault *f);
uint64_t store_fault_bytes(const store_fault *f);
void store_fault_free(store_fault *f);

/* Move to the first entry whose UID is >= uid (or the end).  Returns 1 if
 * that entry has this UID and is live, 0 if it has it and is expunged
 * (m, if not NULL, then gets it), -ENOENT if the snapshot has no entry for
 * uid. */
int store_cursor_seek(store_cursor *c, uint32_t uid, store_msg *m);
/* Move one entry forward (not past the end).  Returns 1 live, 0 expunged
 * (m, if not NULL, gets the entry), -ENOENT at the end. */
int store_cursor_next(store_cursor *c, store_msg *m);
/* The entry here: 1 live, 0 expunged, -ENOENT at the end. */
int store_cursor_msg(const store_cursor *c, store_msg *m);
/* The entry's cache blob and bytes, as store_snap_cache / store_snap_bytes
 * (valid while the snapshot is held); -ENOENT at the end, -EBADMSG for a
 * damaged entry. */
int store_cursor_cache(store_cursor *c, store_cache *out);
int store_cursor_bytes(store_cursor *c, uint64_t off, size_t len, const char **ptr,
                       size_t *got);
/* The entry's ids and save date, as store_snap_msg_ext. */
int store_cursor_ext(store_cursor *c, store_msg_ext *out);

/* Messages with modseq > since (changed flags or appended), in UID order.
 * It reads only the index blocks holding a modseq above `since` (a
 * per-generation summary, built by the first call in a process: about 4 ms
 * at 10^6 messages), so a resync costs what changed, not the mailbox. */
int store_snap_changed_since(const store_snap *s, uint64_t since,
                             store_uidlist *out);
/* The same, stopping at `max` UIDs: -E2BIG if more changed (out then holds
 * a prefix).  For a caller that works in slices and, after a change of the
 * whole mailbox, should walk it in steps rather than list it in one go. */
int store_snap_changed_since_max(const store_snap *s, uint64_t since, size_t max,
                                 store_uidlist *out);
/* A list of UID ranges, sorted, disjoint and not adjacent. */
typedef struct store_rangelist {
    store_range *r;
    size_t n, cap;
} store_rangelist;
void store_rangelist_free(store_rangelist *l);

/* The expunge history for QRESYNC (RFC 7162 3.2.5.1, VANISHED (EARLIER)):
 * the UIDs within [lo, hi] expunged with a modseq above `since`, as ranges.
 * Never a live UID; it may include UIDs expunged at or before `since` where
 * the history could not keep them apart (RFC 7162 5.1 allows reporting more
 * than asked).  Ranges are appended to out, which must be empty or end
 * below lo.  Its cost follows the ranges and the index blocks changed
 * above `since`, not the messages, except in a mailbox last compacted by a
 * version without the history, for `since` below the modseqs it dropped
 * (then every non-live UID in [lo, hi], found by a scan). */
int store_snap_vanished(const store_snap *s, uint64_t since, uint32_t lo,
                        uint32_t hi, store_rangelist *out);
/* UIDs expunged with modseq > since.  If tombstones older than `since` were
 * dropped by compaction, the answer is every UID below UIDNEXT that does not
 * exist, which RFC 7162 allows (*exact is then false). */
int store_snap_expunged_since(const store_snap *s, uint64_t since,
                              store_uidlist *out, bool *exact);

/* ---- quota usage ------------------------------------------------------ */

typedef struct store_usage {
    uint64_t messages;
    uint64_t bytes;         /* sum of RFC822.SIZE */
} store_usage;

/* What all the user's mailboxes hold: the sum of their live messages and
 * sizes (store_status messages and size), exact as of the call, writes of
 * other processes included (a transaction in progress counts once it is
 * published).  Cheap: the mailboxes' index headers stay mapped (8 KiB and
 * no descriptor each) while the user is open, so a sum costs a lock of the
 * mailbox list and two loads per mailbox. */
int store_user_usage(store_user *u, store_usage *out);
/* The live messages of mb in the set (each counted once, however the set
 * overlaps itself), as of now: what a COPY of the set adds. */
int store_mbox_set_usage(store_mbox *mb, const store_range *set, size_t nset,
                         store_usage *out);
/* The live messages of mb with \Deleted: what an EXPUNGE frees (RFC 9208
 * STATUS DELETED and DELETED-STORAGE). */
int store_mbox_deleted_usage(store_mbox *mb, store_usage *out);

/* ---- maintenance ---------------------------------------------------- */

typedef void (*store_progress_fn)(void *arg, uint64_t done, uint64_t total);

/* Rewrite the live messages into a new log, index and cache and swap them
 * in atomically while readers go on; UIDs, UIDVALIDITY, flags and modseqs
 * are unchanged.  Tombstones are dropped (see expunged_since).  Progress is
 * reported in log bytes. */
int store_compact(store_mbox *mb, store_progress_fn progress, void *arg);

typedef struct store_check_report {
    uint64_t records, messages, bad_records, torn_bytes;
    uint64_t index_mismatches, cache_errors;
    uint64_t cache_stale;   /* blobs of an older parser (no preview): not an
                               error; repair rebuilds the cache */
    uint64_t leftovers;     /* files of dead compactions, rebuilds and
                               generations, removed (they are never data) */
    uint64_t history_runs;  /* runs of the expunge history (LOG_VANISHED) */
    uint64_t legacy_messages; /* MESSAGE records of the older format: no
                               EMAILID (one is derived) and no save date */
    bool repaired;
} store_check_report;

/* Verify every log record's checksum and the index and cache against the
 * log.  With repair, cut a torn tail and rebuild index and cache from the
 * log.  Either way, files of a dead compaction, rebuild or check and of
 * stale generations are removed (counted in leftovers; a live compaction's
 * are left alone).  Returns 0 if the mailbox is (now) consistent, -EBADMSG
 * if problems remain (see the report). */
int store_check(store_mbox *mb, bool repair, store_check_report *rep,
                store_progress_fn progress, void *arg);

/* Mailbox directories under the user's m/ that the mailbox list does not
 * name: what a crash during DELETE (the list saved, the files not yet
 * removed) leaves behind.  The list is locked meanwhile, so a CREATE in
 * progress is never taken for one.  With reclaim they are removed.
 * Returns how many were found; *ids (may be NULL; free()) gets their ids
 * in ascending order. */
int store_user_orphans(store_user *u, bool reclaim, uint64_t **ids, size_t *n);

/* CRC32C (Castagnoli), as used by every record. */
uint32_t store_crc32c(uint32_t crc, const void *p, size_t n);

#endif
