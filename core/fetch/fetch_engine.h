/* core/fetch/fetch_engine.h — the FETCH engine: what a FETCH asks for and
 * what one message's answer to it is.
 *
 * imap_fetch_parse turns the attribute argument of FETCH / UID FETCH into a
 * request; imap_fetch_one writes one message's "* n FETCH (...)" response
 * from a store snapshot, read through a cursor so a listing of consecutive
 * messages pays no lookup per message.  Everything else the command is —
 * the sequence set, the session's view, stepping in slices, the implicit
 * \Seen, the tagged answer — belongs to the server (core/server/
 * cmd_fetch.c), which passes in what the engine needs of the session: the
 * UTF-8 mode, where \Recent starts, and a way to send large sections
 * without copying them.  The benchmarks call the same code. */
#ifndef RINGMAIL_CORE_FETCH_ENGINE_H
#define RINGMAIL_CORE_FETCH_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/fetch/fetch_render.h"
#include "core/imap/imap_args.h"
#include "store/store.h"

/* The attributes that name no section (imap_fetch_req.simple). */
enum {
    IMAP_FETCH_UID = 1 << 0,
    IMAP_FETCH_FLAGS = 1 << 1,
    IMAP_FETCH_INTERNALDATE = 1 << 2,
    IMAP_FETCH_SIZE = 1 << 3,           /* RFC822.SIZE */
    IMAP_FETCH_ENVELOPE = 1 << 4,
    IMAP_FETCH_BODY = 1 << 5,           /* BODY without a section */
    IMAP_FETCH_BODYSTRUCTURE = 1 << 6,
    IMAP_FETCH_MODSEQ = 1 << 7,         /* RFC 7162 3.1.4.2 */
    IMAP_FETCH_PREVIEW = 1 << 8,        /* RFC 8970 */
    IMAP_FETCH_EMAILID = 1 << 9,        /* RFC 8474 5.3 */
    IMAP_FETCH_THREADID = 1 << 10,
    IMAP_FETCH_SAVEDATE = 1 << 11,      /* RFC 8514 4.2 */
};

/* Sections at least this long go out by reference when the caller offers
 * it (imap_fetch_ctx.send); smaller ones are cheaper to copy. */
#define IMAP_FETCH_ZERO_COPY_MIN 16384

typedef struct imap_fetch_req {
    unsigned simple;            /* IMAP_FETCH_* */
    imap_section *secs;         /* BODY[...], BINARY[...], RFC822...: in
                                   request order; owned */
    size_t nsecs;
    bool sets_seen;             /* a section without .PEEK: the command
                                   sets \Seen */
    /* FETCH modifier (CHANGEDSINCE n), RFC 7162 3.1.4.1: only messages
     * whose modseq is above it are answered; 0: none (set by the caller,
     * which also adds IMAP_FETCH_MODSEQ) */
    uint64_t changedsince;
    /* PREVIEW was asked only with the LAZY modifier (RFC 8970 4.1): a
     * message whose preview was not made at append gets NIL instead of
     * having its body read */
    bool preview_lazy;
    bool preview_eager_;        /* private to the parser */
} imap_fetch_req;

/* Parse FETCH's attribute argument: one attribute, or a parenthesized list
 * of them (possibly empty); names case-insensitively, sections as
 * imap_section_parse.  The macros ALL, FAST and FULL are allowed only
 * alone.  Returns 0 (then *req goes to imap_fetch_req_free); -EINVAL with
 * *err saying why in a few words (a static string, for the BAD); -ENOMEM.
 * On error *req holds nothing. */
int imap_fetch_parse(const imap_arg *att, imap_fetch_req *req, const char **err);
/* FETCH n PREVIEW (LAZY): the attribute alone, outside a list, with its
 * modifier list as the next argument.  Is mods such a list (only LAZY in
 * it, RFC 8970 6: preview-mod = "LAZY"), rather than FETCH modifiers? */
bool imap_fetch_is_preview_mod(const imap_arg *att, const imap_arg *mods);
/* Parse that pair (imap_fetch_parse's contract). */
int imap_fetch_parse_preview(const imap_arg *mods, imap_fetch_req *req, const char **err);
void imap_fetch_req_free(imap_fetch_req *req);

/* The FLAGS list "(\Seen kw \Recent)": system flags, then the keywords of
 * the snapshot's table set in `keywords`, then \Recent if `recent`.  Also
 * the FLAGS of untagged updates. */
void imap_fetch_flags(imap_out *o, const store_snap *snap, uint32_t flags, uint64_t keywords,
                      bool recent);

/* A large section's bytes, handed off instead of copied: o holds the
 * response so far, up to the literal's "{n}\r\n"; the callee must send o's
 * bytes (leaving o empty) and then len bytes at p, which stay valid as long
 * as the snapshot is held. */
typedef void imap_fetch_send_fn(void *arg, imap_out *o, const char *p, size_t len);

/* What imap_fetch_one needs besides the request: one per command. */
typedef struct imap_fetch_ctx {
    store_cursor cur;           /* over the command's snapshot */
    bool utf8;                  /* 8-bit strings may go out quoted */
    uint32_t recent_first;      /* UIDs from here on are \Recent */
    imap_fetch_send_fn *send;   /* NULL: every section is copied into o */
    void *send_arg;
    /* Called with a message's keywords before its response line begins:
     * the caller may first write lines of its own to o (the untagged FLAGS
     * announcing a keyword the client has not been told of) and returns
     * the keywords the line may show.  NULL: all of them. */
    uint64_t (*keywords)(void *arg, imap_out *o, uint64_t keywords);
    void *keywords_arg;
    /* CONDSTORE is enabled: a response with FLAGS carries MODSEQ too.
     * RFC 7162 3.1: "The server MUST then include mod-sequence data in all
     * subsequent untagged FETCH responses"; we read it as every response
     * that shows flags, the client's own FETCH FLAGS included, so that a
     * cache filled from it knows the modseq of what it holds (Dovecot 2.3
     * adds MODSEQ to flag changes only). */
    bool condstore;
    /* QRESYNC enabled (RFC 7162 3.2.4): a response whose FLAGS the
     * command changed (the implicit \Seen) carries UID as well */
    bool qresync;
    /* imap_fetch_resident: what is known to be in memory */
    store_resident res_body, res_cache;
} imap_fetch_ctx;

/* A context over snap (held by the caller for as long as the context and
 * the responses' references are used), without a send function. */
void imap_fetch_ctx_init(imap_fetch_ctx *x, store_snap *snap, bool utf8, uint32_t recent_first);

/* Append message uid's response, "* seq FETCH (...)\r\n", to o: UID first
 * when uidcmd or asked, MODSEQ when asked (or with FLAGS under
 * x->condstore), FLAGS when asked or flags_changed (the command set
 * \Seen on it), then the other items in a fixed order and the sections in
 * request order.  UIDs asked in ascending order cost O(1) each.  An
 * expunged message still in the snapshot is answered as a live one (its
 * bytes stay until compaction; RFC 3501 7.4.1 forbids announcing the
 * expunge during a FETCH).  With req->changedsince, a message whose
 * modseq is not above it gets no response (0, nothing written).
 * Returns 0, or:
 *   -ENOENT   the snapshot has no such message (nothing written), or a
 *             BINARY section of a part that does not exist or does not
 *             fit (written as NIL): answer NO [CANNOT];
 *   -ENOTSUP  BINARY of an unknown Content-Transfer-Encoding (NIL
 *             written): answer NO [UNKNOWN-CTE];
 *   -EIO      the message's cache or bytes could not be read: the
 *             response is closed after what was written;
 *   -ENOMEM   a section could not be built (NIL written); or the
 *             response could not be appended to o: then nothing of it is
 *             in o (o as it was on entry, o->err 0), or, if part of it
 *             already went out through send, it is closed after its last
 *             whole item.  Either way no response is left unterminated.
 *             Called with o->err set, nothing is written and o->err is
 *             returned.
 * Other sections of the same message are answered either way. */
int imap_fetch_one(imap_fetch_ctx *x, imap_out *o, const imap_fetch_req *req, uint32_t seq,
                   uint32_t uid, bool uidcmd, bool flags_changed);

/* Whether what imap_fetch_one will read of message uid for req is in
 * memory (store/fault.c): its cache blob for the items rendered from it,
 * its bytes for sections (the first IMAP_FETCH_HEADER_BYTES of them when
 * every section is of the header).  `skip` (STORE_RA_* bits, 1u << what)
 * are not looked at: those a fault just brought in.  0; -EWOULDBLOCK, *f
 * bringing in *what (the caller runs it where waiting is fine and then
 * fetches, skipping it); -ENOMEM. */
#define IMAP_FETCH_HEADER_BYTES ((uint64_t)64 << 10)
int imap_fetch_resident(imap_fetch_ctx *x, const imap_fetch_req *req, uint32_t uid,
                        unsigned skip, store_fault **f, unsigned *what);

#endif
