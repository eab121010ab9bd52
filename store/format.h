/* store/format.h — the on-disk structures of a mailbox (private to store/).
 *
 * docs/store-format.md is the prose version of this file; keep them in step.
 * All integers are little-endian (the only byte order we build for; a
 * static assertion below makes a big-endian build fail loudly).
 */
#ifndef RINGMAIL_STORE_FORMAT_H
#define RINGMAIL_STORE_FORMAT_H

#include <stdint.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the store format is little-endian; add byte swapping before porting"
#endif

#define FMT_VERSION 1
/* A log that holds a LOG_VANISHED record says so with this version: a
 * binary that knows only FMT_VERSION refuses it (-EPROTONOSUPPORT) instead
 * of taking the unknown record for damage and cutting or skipping it.  Logs
 * without the record keep FMT_VERSION, so mailboxes that never needed the
 * history stay readable by such a binary. */
#define LOG_VERSION_HIST 2
/* A log that may hold MESSAGE records with an extension (struct
 * log_msg_ext: the EMAILID and the save date) has this version, and may
 * hold a LOG_VANISHED record as well.  New logs (CREATE, compaction) start
 * with it; an older log is raised to it, header first and flushed, before
 * its first such record (write.c), so a binary that knows only versions 1
 * and 2 refuses the log instead of cutting the record as damage. */
#define LOG_VERSION_EXT 3

/* ---- log.<gen> --------------------------------------------------------- */

#define LOG_MAGIC "RMLOG\0\0\1"
#define LOG_HDR_SIZE 64u

struct log_file_hdr {
    char magic[8];
    uint32_t version;
    uint32_t hdr_size;          /* LOG_HDR_SIZE */
    uint64_t mailbox_id;
    uint64_t generation;
    uint32_t uidvalidity;
    uint32_t base_uidnext;      /* UIDNEXT when this log was started: UIDs
                                   are never reused even if the messages
                                   holding the highest ones were compacted
                                   away */
    uint64_t base_modseq;       /* likewise for HIGHESTMODSEQ */
    uint64_t tomb_floor;        /* highest modseq of a tombstone dropped by
                                   compaction */
    uint32_t reserved;
    uint32_t crc;               /* CRC32C of the 60 bytes before it */
};

/* Every record starts 8-aligned with this header.  crc covers the header
 * from `len` on plus the payload, so a torn or zeroed tail never
 * validates. */
struct log_rec {
    uint32_t crc;
    uint32_t len;               /* payload bytes after this header */
    uint16_t type;              /* LOG_* */
    uint16_t rflags;            /* LOGF_* */
    uint32_t magic;             /* LOG_REC_MAGIC: cheap resync aid */
};
#define LOG_REC_MAGIC 0x524d5243u /* "CRMR" */

enum {
    LOG_MESSAGE = 1,
    LOG_FLAGS = 2,
    LOG_EXPUNGE = 3,
    LOG_KEYWORD = 4,
    LOG_VANISHED = 5,           /* the expunge history (written by compaction) */
};

/* More records of the same transaction follow.  A transaction is applied
 * only when its last record (without this flag) is present and valid. */
#define LOGF_CONT 0x0001u

struct log_message {            /* payload of LOG_MESSAGE, then the bytes */
    uint32_t uid;
    uint32_t flags;
    uint64_t keywords;
    uint64_t modseq;
    int64_t internal_date;
    int16_t tz_min;
    uint16_t pad;
    uint32_t hdr_len;
    uint32_t size;
    uint32_t ext_len;           /* bytes after the message: 0 (older
                                   records) or a struct log_msg_ext */
};

/* After the message bytes of a LOG_MESSAGE record with ext_len != 0
 * (unaligned: read with memcpy).  ext_len may be larger in a later version;
 * a reader uses the fields it knows. */
struct log_msg_ext {
    uint64_t email_mbox;        /* EMAILID: the id, UID and UIDVALIDITY of */
    uint32_t email_uid;         /*   the mailbox the message was first */
    uint32_t email_uv;          /*   saved under */
    int64_t save_date;          /* when saved into this mailbox (RFC 8514),
                                   seconds since the epoch */
};
#define LOG_MSG_EXT_MAX 1024u

struct log_flags {              /* payload of LOG_FLAGS, then ranges */
    uint64_t modseq;
    uint32_t op;                /* store_flag_op */
    uint32_t flags;
    uint64_t keywords;
    uint32_t nranges;
    uint32_t pad;
};

struct log_expunge {            /* payload of LOG_EXPUNGE, then ranges */
    uint64_t modseq;
    uint32_t nranges;
    uint32_t pad;
};

struct log_keyword {            /* payload of LOG_KEYWORD, then the name */
    uint32_t slot;
    uint32_t len;
};

struct log_range {
    uint32_t lo, hi;
};

/* Payload of LOG_VANISHED, then nruns runs.  Compaction drops tombstones;
 * their UIDs and modseqs live on here, as runs sorted by UID, disjoint and
 * non-empty, each holding only UIDs that are not live (and never will be:
 * UIDs are not reused) and carrying the highest expunge modseq among them.
 * At most one per generation; the index header's hist_off points at it. */
struct log_vanished {
    uint32_t nruns;
    uint32_t pad;
};

struct log_vrun {
    uint32_t lo, hi;
    uint64_t modseq;
};

/* ---- index ------------------------------------------------------------- */

#define IDX_MAGIC "RMINDEX\1"
#define IDX_HDR_SIZE 8192u
#define IDX_KW_SLOT 104u

/* A checkpoint: a state of the index known to be on disk (written only
 * after msync of the entries and fdatasync of the cache).  Two slots, the
 * newer valid one wins; used after a power loss. */
struct idx_ckpt {
    uint64_t seq;
    uint64_t log_applied;
    uint64_t cache_end;
    uint32_t count;
    uint32_t crc;
};

struct idx_hdr {
    char magic[8];
    uint32_t version;
    uint32_t hdr_size;          /* IDX_HDR_SIZE */
    uint32_t entry_size;        /* sizeof(struct idx_entry) */
    uint32_t uidvalidity;
    uint64_t mailbox_id;
    uint64_t generation;        /* names log.<gen> and cache.<gen> */
    uint32_t static_crc;        /* CRC32C of the fields above */
    uint32_t pad0;

    /* Live fields: written by the one writer (under the lock) with atomic
     * stores, read by anyone with atomic loads. */
    uint8_t boot_id[16];        /* kernel boot of the last writer: a change
                                   means the machine went down and pages not
                                   yet synced may be lost */
    uint32_t count;             /* published entries, tombstones included */
    uint32_t uidnext;
    uint64_t highestmodseq;
    uint64_t log_applied;       /* log bytes reflected in the index */
    uint64_t cache_end;
    uint32_t messages, unseen, deleted, tombstones;
    uint64_t size_live;
    uint64_t dead_bytes;
    uint64_t tomb_floor;
    uint64_t expunge_seq;       /* bumped by each expunge (tombstone
                                   caches key on it) */
    uint32_t recent_uid;        /* UIDs >= this are \Recent for the next
                                   claimer */
    uint32_t superseded;        /* set when a new index replaced this file:
                                   holders must reopen */
    uint32_t nkeywords;
    uint32_t kw_crc;            /* CRC32C of the keyword table (bit rot in
                                   names must not go unnoticed) */
    struct idx_ckpt ckpt[2];
    uint64_t hist_off;          /* log offset of the LOG_VANISHED record, 0 =
                                   none (set when the record is applied) */
    uint8_t reserved[248];
    char keywords[64][IDX_KW_SLOT];
};

/* One message.  Sorted by uid.  Immutable after publication except fm and
 * keywords, which change by whole-word atomic stores. */
struct idx_entry {
    uint32_t uid;
    uint32_t size;
    uint64_t fm;                /* modseq << 8 | flags (ENT_EXPUNGED too) */
    uint64_t keywords;
    uint64_t log_off;           /* offset of the LOG_MESSAGE record */
    int64_t internal_date;
    uint64_t cache_off;         /* offset of the cache entry, 0 = none */
    uint32_t cache_len;
    uint32_t hdr_len;
    int16_t tz_min;
    uint16_t pad;
    uint32_t crc;               /* CRC32C of the immutable fields */
};

#define ENT_EXPUNGED 0x80u
#define FM_FLAGS(fm) ((uint32_t)((fm) & 0xffu))
#define FM_MODSEQ(fm) ((fm) >> 8)
#define FM_MAKE(modseq, flags) (((uint64_t)(modseq) << 8) | ((flags) & 0xffu))

/* ---- cache.<gen> ------------------------------------------------------- */

#define CACHE_MAGIC "RMCACHE\1"
#define CACHE_HDR_SIZE 64u

struct cache_file_hdr {
    char magic[8];
    uint32_t version;
    uint32_t hdr_size;
    uint64_t generation;
    uint8_t reserved[40];
};

struct cache_rec {              /* then `len` bytes of blob, 8-aligned */
    uint32_t len;
    uint32_t crc;               /* CRC32C of the blob */
};

_Static_assert(sizeof(struct log_file_hdr) == LOG_HDR_SIZE, "log header");
_Static_assert(sizeof(struct log_rec) == 16, "log record header");
_Static_assert(sizeof(struct log_message) == 48, "message record");
_Static_assert(sizeof(struct log_msg_ext) == 24, "message extension");
_Static_assert(sizeof(struct idx_entry) == 64, "index entry");
_Static_assert(sizeof(struct log_vrun) == 16, "history run");
_Static_assert(sizeof(struct idx_hdr) <= IDX_HDR_SIZE, "index header");
_Static_assert(sizeof(struct cache_file_hdr) == CACHE_HDR_SIZE, "cache header");

#define ALIGN8(x) (((x) + 7u) & ~(uint64_t)7u)

#endif
