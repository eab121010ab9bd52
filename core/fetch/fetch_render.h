/* Folder core/fetch/: turning a stored message into FETCH data — the
 * FETCH engine (fetch_engine.c: the attribute list as a request, one
 * message's response read through a store cursor), ENVELOPE,
 * BODY[STRUCTURE] (fetch_render.c), body sections and BINARY
 * (fetch_section.c), and undoing MIME's encodings and charsets
 * (mime_decode.c, shared with SEARCH).  It reads the store's snapshots and
 * parsed messages and writes imap_out; it knows no session. */
/* core/fetch/fetch_render.h — FETCH data computed from a message's parsed cache
 * (store/message.h): ENVELOPE, BODY and BODYSTRUCTURE, and the body
 * sections BODY[...]<...>, BINARY[...]<...> and BINARY.SIZE[...] (RFC 9051
 * 6.4.5 and 7.5.2, RFC 3501 6.4.5 and 7.4.2, RFC 3516).
 *
 * Output goes to an imap_out (core/imap/imap_args.h).  Strings are written with
 * imap_out_string/imap_out_nstring, which choose quoted or literal; `utf8`
 * says whether 8-bit bytes may be sent quoted (IMAP4rev2 or UTF8=ACCEPT).
 * NUL bytes, which no IMAP string may carry, are sent as spaces in
 * ENVELOPE and BODYSTRUCTURE strings.  Render functions return 0, or
 * o->err (-ENOMEM) if an append failed; they never fail on content: any
 * header, however malformed, renders as something well-formed.
 *
 * Rendering choices:
 *   - Media type, subtype, parameter names, Content-Transfer-Encoding and
 *     disposition type are sent upper-cased ("TEXT" "PLAIN" ("CHARSET"
 *     "utf-8")), as in the RFC examples, UW and Gmail; parameter values
 *     and every other string are sent as they are in the message.
 *   - A text/... part without any Content-Type parameter gets ("CHARSET"
 *     "US-ASCII"), the RFC 2045 default.  An absent or blank
 *     Content-Transfer-Encoding is "7BIT".  An empty parameter list is NIL.
 *   - Body parts follow each other without a space ("(...)(...) "MIXED""),
 *     as do addresses in an address list.
 *   - message/rfc822 parts carry envelope, body structure and lines.
 *     message/global parts do so only when utf8 is set (RFC 9051 defines
 *     them; RFC 3501's grammar allows the extra fields only for RFC822, so
 *     an IMAP4rev1 client sees message/global as a basic part).
 *   - Content-Language with several comma-separated tags becomes a list of
 *     strings, one tag a string.
 *   - BODYSTRUCTURE always sends all four extension fields (NIL where
 *     absent); BODY sends none.
 *   - ENVELOPE addresses are parsed leniently from the raw header values
 *     (RFC 5322 address lists with obsolete forms): display names lose
 *     their quoting and whitespace runs, RFC 2047 words stay encoded; a
 *     comment is the display name when there is no phrase ("a@b (Ann)"),
 *     except one inside the angle brackets ("<a (x)@b>" has no name);
 *     a missing domain or local part is the empty string (never NIL,
 *     which would mean a group marker); "<>" without a name is dropped; an
 *     unterminated group is closed; an empty list is NIL.
 */
#ifndef RINGMAIL_CORE_FETCH_RENDER_H
#define RINGMAIL_CORE_FETCH_RENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/imap/imap_args.h"
#include "store/message.h"

/* ---- ENVELOPE, BODY, BODYSTRUCTURE --------------------------------- */

/* The ENVELOPE list of envelope env_index (0: the message's own; an
 * embedded message/rfc822's otherwise, see store_part.envelope).  Sender
 * and Reply-To default to From when absent or empty.  -ERANGE for a bad
 * index (nothing written). */
int imap_render_envelope(imap_out *o, const store_cache *c,
                         uint32_t env_index, bool utf8);

/* A header value's address list as plain text, each address as ENVELOPE
 * parses it (same leniency) and a header would write it: "name
 * <local@domain>, " ("<local@domain>, " without a name; a group as "name: "
 * ... "; ").  Comments and folding whitespace are not part of an address
 * (RFC 5322 3.2.2: "Runs of FWS, comment, or CFWS that occur between
 * lexical tokens in a structured header field are semantically interpreted
 * as a single space character", and addr-spec's tokens are joined without
 * one), so they are gone, except that a comment stands in for a missing
 * name, as in ENVELOPE.  Names keep their RFC 2047 words encoded
 * and lose their quoting.  SEARCH FROM/TO/CC/BCC match this text.  Returns
 * 0 or o->err. */
int imap_render_address_text(imap_out *o, store_str value);

/* The first address of a header value's address list, as ENVELOPE gives
 * it (SORT's FROM/TO/CC and DISPLAYFROM/DISPLAYTO, RFC 5256 and RFC 5957):
 * its addr-name (the phrase, else a comment, RFC 2047 words still
 * encoded), addr-mailbox and addr-host, each replaced in out (the caller
 * owns the buffers: imap_out_free).  A group's start marker is such an
 * address, with the group's name as addr-mailbox and no name or host.
 * out->found says whether there was one.  Returns 0 or -ENOMEM. */
typedef struct imap_address_parts {
    imap_out name, local, domain;
    bool found;
} imap_address_parts;
int imap_first_address(store_str value, imap_address_parts *out);

/* The message's body structure: BODYSTRUCTURE with extensible, BODY
 * without. */
int imap_render_body(imap_out *o, const store_cache *c, bool extensible,
                     bool utf8);

/* ---- sections ------------------------------------------------------ */

typedef enum imap_fetch_item {
    IMAP_ITEM_BODY = 0,         /* BODY[...] / BODY.PEEK[...] (and RFC822*) */
    IMAP_ITEM_BINARY,           /* BINARY[...] / BINARY.PEEK[...] */
    IMAP_ITEM_BINARY_SIZE,      /* BINARY.SIZE[...] */
} imap_fetch_item;

typedef enum imap_section_text {
    IMAP_SECTION_CONTENT = 0,   /* no keyword: the message, or the part */
    IMAP_SECTION_HEADER,
    IMAP_SECTION_HEADER_FIELDS,
    IMAP_SECTION_HEADER_FIELDS_NOT,
    IMAP_SECTION_TEXT,
    IMAP_SECTION_MIME,
} imap_section_text;

typedef enum imap_section_legacy {
    IMAP_LEGACY_NONE = 0,
    IMAP_LEGACY_RFC822,         /* = BODY[], echoed "RFC822" */
    IMAP_LEGACY_RFC822_HEADER,  /* = BODY.PEEK[HEADER], echoed "RFC822.HEADER" */
    IMAP_LEGACY_RFC822_TEXT,    /* = BODY[TEXT], echoed "RFC822.TEXT" */
} imap_section_legacy;

/* Deeper part numbers cannot exist (STORE_MIME_MAX_DEPTH). */
#define IMAP_SECTION_MAX_PATH 64

typedef struct imap_section {
    imap_fetch_item item;
    imap_section_legacy legacy;     /* IMAP4rev1 RFC822 / .HEADER / .TEXT */
    bool peek;                      /* does not set \Seen (.PEEK, BINARY.SIZE,
                                       RFC822.HEADER) */
    imap_section_text text;
    size_t npath;                   /* part number "1.2.3": {1, 2, 3} */
    uint32_t path[IMAP_SECTION_MAX_PATH];
    size_t nfields;                 /* HEADER.FIELDS[.NOT] names, unquoted, */
    store_str *fields;              /* as requested; owned */
    bool partial;                   /* <origin.count> given */
    uint64_t origin, count;
} imap_section;

/* Parse one FETCH attribute naming a section, case-insensitively:
 *   BODY[<section>]<<partial>>    BODY.PEEK[<section>]<<partial>>
 *   BINARY[<part>]<<partial>>     BINARY.PEEK[<part>]<<partial>>
 *   BINARY.SIZE[<part>]           RFC822  RFC822.HEADER  RFC822.TEXT
 * s/len is the whole atom as the tokenizer returns it (brackets and what
 * they enclose included).  Header-list names are atoms or quoted strings,
 * separated by blanks.  On success out must later go to
 * imap_section_free.  Returns 0; -EINVAL if this is not such an attribute
 * or its syntax is bad (no part number before MIME, a keyword after a
 * BINARY part, a part number 0 or above 2^32-1, a partial count of 0, a
 * partial on BINARY.SIZE, an empty header list, ...): answer BAD; -E2BIG
 * for part numbers deeper than IMAP_SECTION_MAX_PATH; -ENOMEM. */
int imap_section_parse(const char *s, size_t len, imap_section *out);
void imap_section_free(imap_section *s);

/* Write the response's name for the item: "BODY[1.2.MIME]",
 * "BODY[HEADER.FIELDS (From To)]<0>" (the keyword upper-cased, field names
 * as requested, an origin only if a partial was requested),
 * "BINARY[2]<100>", "BINARY.SIZE[2]", "RFC822.HEADER". */
void imap_section_echo(imap_out *o, const imap_section *s);

/* The bytes of a section, partial applied. */
typedef struct imap_section_data {
    const char *p;                  /* the bytes to send; points into msg or
                                       into buf; NULL for BINARY.SIZE */
    size_t len;
    uint64_t size;                  /* the section's size before the partial:
                                       for BINARY.SIZE, the answer */
    bool nul;                       /* BINARY: the bytes contain NUL, so they
                                       must go out as literal8 ~{n} (RFC
                                       3516); otherwise a normal string */
    store_buf buf;                  /* owned storage for built sections */
} imap_section_data;

/* Extract a section of a message.  c is its parsed cache, msg/msglen its
 * raw bytes (store_snap_bytes with off 0, len SIZE_MAX; bytes past msglen
 * are treated as absent, so a caller may pass only the header for HEADER
 * sections, see imap_section_range).
 *
 * Zero-copy (out->p points into msg) for BODY[], HEADER, TEXT, MIME, a
 * part's body, and BINARY of a 7bit/8bit/binary part (unless it is text
 * with bare LF line ends, which BINARY must send as CRLF).  Built into
 * out->buf for HEADER.FIELDS[.NOT] (the matching fields in their original
 * order with their continuation lines, then the blank line if the header
 * has one; names compared ASCII case-insensitively) and for decoded
 * BINARY.  A partial <origin.count> is applied last (on decoded data for
 * BINARY): origin past the end gives an empty string.
 *
 * Part numbers follow RFC 9051 6.4.5.1 (store_cache_find): "1" of a
 * non-multipart message is its body; HEADER/TEXT after a part number need a
 * message/rfc822 (or message/global) part and refer to the embedded
 * message; MIME is the part's own MIME header (for "1" of a non-multipart
 * message, the message header).  BINARY[] is the whole message unchanged;
 * BINARY[part] of a message/rfc822 (or message/global) part is the embedded
 * message unchanged; otherwise BINARY[part] needs a leaf part.
 *
 * Returns 0 (then call imap_section_data_free), or:
 *   -ENOENT   no such part: answer BODY[...] NIL; for BINARY, NO.
 *   -EINVAL   the section does not apply to that part (HEADER/TEXT of a
 *             part that is not a message, BINARY of a multipart):
 *             answer BODY[...] NIL; for BINARY, NO.
 *   -ENOTSUP  BINARY of a part whose Content-Transfer-Encoding is unknown:
 *             answer NO [UNKNOWN-CTE].
 *   -ENOMEM.
 * out is zeroed on error. */
int imap_section_fetch(const imap_section *s, const store_cache *c,
                       const char *msg, size_t msglen,
                       imap_section_data *out);
void imap_section_data_free(imap_section_data *d);

/* The byte range [*off, *off + *len) of the message that imap_section_fetch
 * will read for this section (before the partial), so a caller can fetch
 * just that from the store.  Same errors as imap_section_fetch, except
 * that it never returns -ENOTSUP or -ENOMEM. */
int imap_section_range(const imap_section *s, const store_cache *c,
                       uint64_t *off, uint64_t *len);

/* The store's envelope hook (store_msg_set_renderer): envelope 0 as a
 * client without UTF8=ACCEPT gets it. */
int imap_envelope_prerender(const store_cache *c, store_buf *out);

#endif
