/* store/message.h — the message parser and the cache blob.
 *
 * At append the store parses each message once (store_msg_parse) into a
 * compact, position-independent blob that is written to the mailbox's cache
 * file.  Everything a header listing needs later — ENVELOPE fields, the
 * References header, and the whole MIME tree with each part's byte offsets —
 * is read back from that blob (store_cache_open and accessors) without
 * touching the message again.
 *
 * The parser must accept any bytes: malformed MIME, missing or unterminated
 * boundaries, 8-bit and NUL bytes in headers, LF-only line ends, absurd
 * nesting.  It never fails on content; it only fails on allocation failure
 * (-ENOMEM) or a message larger than UINT32_MAX bytes (-EFBIG).  Nesting
 * deeper than STORE_MIME_MAX_DEPTH is treated as an opaque leaf part and at
 * most STORE_MIME_MAX_PARTS parts are recorded (the rest are folded into
 * their parent as opaque bytes).
 */
#ifndef RINGMAIL_STORE_MESSAGE_H
#define RINGMAIL_STORE_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_MIME_MAX_DEPTH 32
#define STORE_MIME_MAX_PARTS 4096

/* A byte string pointing into a blob (or message).  Not NUL-terminated.
 * p == NULL means absent (IMAP NIL); p != NULL && len == 0 is the empty
 * string. */
typedef struct store_str {
    const char *p;
    uint32_t len;
} store_str;

/* A growable output buffer; owned by the caller, freed with free(buf.data). */
typedef struct store_buf {
    uint8_t *data;
    size_t len, cap;
} store_buf;

/* Raw header values of one message (top level or an embedded
 * message/rfc822), unfolded (CRLF+WSP -> WSP) but otherwise undecoded: RFC
 * 2047 words are left as they are, exactly as ENVELOPE must send them.  A
 * header that occurs more than once keeps its first occurrence. */
typedef struct store_envelope {
    store_str date, subject, from, sender, reply_to, to, cc, bcc;
    store_str in_reply_to, message_id, references;
} store_envelope;

/* One MIME part.  Part 0 is the whole message.  Offsets are relative to the
 * start of the message that was parsed (the top level one, also for parts
 * inside an embedded message/rfc822).  For part 0, hdr_off = 0 and
 * body_off = hdr_len (the header includes the blank separator line). */
typedef struct store_part {
    store_str type, subtype;        /* lowercased; default "text"/"plain"
                                       (or "message"/"rfc822" inside a
                                       multipart/digest) */
    store_str id, description, encoding, md5;   /* Content-* values, NIL if
                                                   absent; encoding as sent */
    store_str disposition, language, location;  /* disposition lowercased */
    uint64_t hdr_off, hdr_len;      /* the part's MIME header incl. the blank
                                       line (hdr_len 0 if the part has none) */
    uint64_t body_off, body_len;    /* the part's body; body_len is the
                                       BODYSTRUCTURE size */
    uint32_t lines;                 /* body lines (text and message/rfc822) */
    uint32_t nparams, ndisp_params; /* Content-Type / Disposition parameters */
    uint32_t parent;                /* index of the parent part; 0 for part 0 */
    uint32_t first_child;           /* index, or 0 if none */
    uint32_t next_sibling;          /* index, or 0 if none */
    uint32_t nchildren;
    int32_t envelope;               /* message/rfc822: index of the embedded
                                       message's envelope (>= 1); else -1 */
} store_part;

/* A decoded view of a blob.  It holds pointers into the blob, which must
 * outlive it.  No allocation. */
typedef struct store_cache {
    const uint8_t *blob;
    size_t len;
    uint32_t nparts, nenvelopes;
    /* private to message.c */
    const uint8_t *parts_, *envs_, *params_, *pool_;
    uint32_t nparams_total_, pool_len_, rendered_, preview_;
} store_cache;

/* The IMAP layer renders ENVELOPE; the store keeps the rendered text of a
 * message's own envelope in its blob when one is registered, so header
 * listings copy it.  fn appends the text for c's envelope 0 to out (0 or
 * -errno).  Register once at start, before any store use; blobs written
 * without it are served by rendering at fetch time.  A change to the
 * rendering must bump BLOB_VERSION in store/message.c. */
typedef int store_envelope_renderer(const store_cache *c, store_buf *out);
void store_msg_set_renderer(store_envelope_renderer *fn);
/* Envelope 0 as rendered at append, or {NULL, 0}. */
store_str store_cache_envelope_text(const store_cache *c);

/* The message's preview (RFC 8970 FETCH PREVIEW) is made at append by a
 * hook the IMAP layer registers (it needs MIME and charset decoding, which
 * live above the store): fn appends the UTF-8 preview text of the message
 * raw/len, whose parsed blob is c, to out (at most STORE_PREVIEW_MAX
 * bytes; nothing appended is the empty preview) and returns 0 or -errno.
 * Register once at start, before any store use.  A blob made without it,
 * or by a parser older than version 4, has no preview
 * (store_cache_preview is false) and the reader computes one. */
#define STORE_PREVIEW_MAX 1024
typedef int store_previewer(const store_cache *c, const char *raw, size_t len,
                            store_buf *out);
void store_msg_set_previewer(store_previewer *fn);
/* The preview made at append: true and *out set (possibly empty), or false
 * if the blob has none. */
bool store_cache_preview(const store_cache *c, store_str *out);

/* Parse raw message bytes and append the blob to out (out may already hold
 * data; the blob starts at the old out->len).  Returns 0 or -errno. */
int store_msg_parse(const char *raw, size_t len, store_buf *out);
/* Messages parsed by this process so far (a counter for tests and
 * metrics: a copy or a delivery to many recipients should add one). */
uint64_t store_msg_parses(void);

/* The blob of the same message with `prefix` bytes of header fields put
 * before it (a delivery's Return-Path, Delivered-To, Received): every
 * offset moves by prefix and the root's header grows by it; nothing else of
 * the structure changes, so one parse serves every recipient.  Valid only
 * when the message starts with a header field or with its empty line
 * (store_msg_prefix_safe), where the parser reads prefix + message as
 * exactly that.  Appends to out as store_msg_parse does. */
int store_msg_prefixed(const void *blob, size_t len, size_t prefix, store_buf *out);
/* The length of the message a blob describes. */
uint32_t store_cache_msg_len(const store_cache *c);
/* Was the blob made by this version of the parser (not an older one that
 * store_cache_open still reads), with a preview if a previewer is
 * registered?  Blobs that are not are parsed again when given to
 * store_append, and counted as stale by store_check (repair rebuilds). */
bool store_cache_is_current(const store_cache *c);
/* Does the message start with a header field ("name:") or an empty line? */
bool store_msg_prefix_safe(const char *raw, size_t len);

/* Validate a blob and fill a view.  Returns 0, or -EBADMSG if the blob is
 * damaged or of an unknown version (the caller then re-parses the message). */
int store_cache_open(const void *blob, size_t len, store_cache *c);

/* Envelope i: 0 is the message's own, others belong to message/rfc822 parts.
 * Returns 0 or -ERANGE. */
int store_cache_envelope(const store_cache *c, uint32_t i, store_envelope *out);
/* Only the fields named in `fields` (STORE_ENV_*, in the order of
 * store_envelope); the others in out are left as they are.  A listing
 * that needs one header (SORT (DATE)) then touches only its string. */
enum {
    STORE_ENV_DATE = 1u << 0, STORE_ENV_SUBJECT = 1u << 1, STORE_ENV_FROM = 1u << 2,
    STORE_ENV_SENDER = 1u << 3, STORE_ENV_REPLY_TO = 1u << 4, STORE_ENV_TO = 1u << 5,
    STORE_ENV_CC = 1u << 6, STORE_ENV_BCC = 1u << 7, STORE_ENV_IN_REPLY_TO = 1u << 8,
    STORE_ENV_MESSAGE_ID = 1u << 9, STORE_ENV_REFERENCES = 1u << 10,
    STORE_ENV_ALL = (1u << 11) - 1,
};
int store_cache_envelope_fields(const store_cache *c, uint32_t i, unsigned fields,
                                store_envelope *out);

/* Part i, 0 <= i < c->nparts, in depth-first order.  Returns 0 or -ERANGE. */
int store_cache_part(const store_cache *c, uint32_t i, store_part *out);

/* Parameter j of part i's Content-Type (disp = 0) or Content-Disposition
 * (disp = 1).  Names are lowercased; RFC 2231 continuations are joined
 * (name*0, name*1 -> name; an extended name keeps its trailing '*' and its
 * charset'lang' prefix).  Returns 0 or -ERANGE. */
int store_cache_param(const store_cache *c, uint32_t i, int disp, uint32_t j,
                      store_str *name, store_str *value);

/* Find the part for an IMAP section path like {1,2} (n numbers).  n == 0 is
 * the whole message.  Follows IMAP's rules: a non-multipart message's part 1
 * is its body; the parts of a message/rfc822 are numbered as its embedded
 * message's.  Returns the part index or -ENOENT. */
int store_cache_find(const store_cache *c, const uint32_t *path, size_t n);

/* Growable buffer helpers shared by the store. */
int store_buf_reserve(store_buf *b, size_t extra);
int store_buf_append(store_buf *b, const void *p, size_t n);

#endif
