/* core/fetch/mime_decode.h — undoing MIME encodings: Content-Transfer-Encoding
 * (RFC 2045 base64 and quoted-printable), charsets (to UTF-8, through
 * glibc's iconv(3)) and RFC 2047 encoded words in header values.
 *
 * Users: FETCH BINARY[...] (core/fetch/fetch_section.c) and SEARCH BODY/TEXT/
 * HEADER matching (core/search*.c).
 *
 * Contract shared by every function here:
 *   - Input is any bytes (NUL and 8-bit included); nothing here fails on
 *     content.  Malformed encodings are decoded leniently as documented per
 *     function; the only errors are -ENOMEM and, for an unknown
 *     Content-Transfer-Encoding, -ENOTSUP.
 *   - Output is appended to a caller-owned store_buf (which may already
 *     hold data); the caller frees it with free(buf.data).  On error the
 *     buffer's length is restored to what it was on entry.
 *   - Functions returning "UTF-8" always produce valid UTF-8: bytes that
 *     cannot be converted become U+FFFD.  NUL bytes are kept.
 *   - Thread-safe; no global state (each conversion opens its own iconv
 *     descriptor; glibc caches the conversion modules).
 */
#ifndef RINGMAIL_CORE_MIME_DECODE_H
#define RINGMAIL_CORE_MIME_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "store/message.h"

/* A store_str from a C string (NULL stays NULL = absent). */
static inline store_str mime_str(const char *s)
{
    store_str r = { s, s ? (uint32_t)strlen(s) : 0 };
    return r;
}

typedef enum mime_cte {
    MIME_CTE_7BIT = 0,          /* also: header absent or empty */
    MIME_CTE_8BIT,
    MIME_CTE_BINARY,
    MIME_CTE_BASE64,
    MIME_CTE_QP,                /* quoted-printable */
    MIME_CTE_UNKNOWN,           /* anything else: FETCH BINARY answers
                                   NO [UNKNOWN-CTE] */
} mime_cte;

/* Classify a Content-Transfer-Encoding value as found in a header
 * (store_part.encoding): case-insensitive, surrounding blanks and a
 * trailing RFC 822 comment ignored.  NULL or empty is 7BIT. */
mime_cte mime_cte_parse(store_str encoding);

/* Base64.  Lenient: bytes outside the alphabet (whitespace, line breaks,
 * garbage) are skipped; '=' ends a quantum, so concatenated encoded blocks
 * ("QQ==QQ==") decode correctly; a final quantum without padding yields
 * the bytes it holds (a lone trailing sextet is dropped).  0 or -ENOMEM. */
int mime_decode_base64(const char *in, size_t len, store_buf *out);

/* Quoted-printable.  "=XX" (hex, either case) is the byte; "=" at a line end
 * (optionally followed by blanks) is a soft line break and is removed with
 * the line end; a bad escape ("=G1", "=" before the end) is kept literally;
 * blanks before a hard line end are removed (RFC 2045 6.7 rule 3); line
 * ends are kept as they are (CRLF or LF).  0 or -ENOMEM. */
int mime_decode_qp(const char *in, size_t len, store_buf *out);

/* Undo a Content-Transfer-Encoding: base64 and quoted-printable as above;
 * 7bit, 8bit, binary (and absent) copy the bytes.  Returns 0, -ENOMEM, or
 * -ENOTSUP for an unknown encoding (nothing appended). */
int mime_decode_transfer(store_str encoding, const char *in, size_t len,
                         store_buf *out);

/* The same for FETCH BINARY: with crlf (text/... parts), a LF not preceded by
 * CR is written as CRLF (RFC 3516 section 6, RFC 9051 7.5.2).  out may be
 * NULL to only measure; *size (may be NULL) gets the decoded length either
 * way, which is exactly what BINARY.SIZE must report.  0, -ENOMEM or
 * -ENOTSUP (unknown encoding: NO [UNKNOWN-CTE]). */
int mime_decode_binary(store_str encoding, const char *in, size_t len,
                       bool crlf, store_buf *out, uint64_t *size);

/* Convert text in `charset` (a MIME charset name such as "ISO-8859-1",
 * "windows-1252", "utf-8"; quotes and blanks around it, and an RFC 2231
 * "*language" suffix, are ignored) to UTF-8.  Absent/empty, US-ASCII and
 * UTF-8 input is checked and copied; any other charset goes through iconv.
 * A charset iconv does not know is treated like UTF-8 (valid sequences
 * copied, the rest U+FFFD), so the output is always UTF-8.  0 or -ENOMEM. */
int mime_to_utf8(store_str charset, const char *in, size_t len,
                 store_buf *out);

/* Does iconv know this charset (as mime_to_utf8 would use it)? */
bool mime_charset_known(store_str charset);

/* Decode a header field value to UTF-8 for display or search: RFC 2047
 * encoded words (=?charset?B?...?= and =?charset?Q?...?=, "_" is a space in
 * Q; charset may carry an RFC 2231 "*lang" suffix) are decoded and
 * converted; the whitespace between two adjacent encoded words is dropped,
 * and adjacent words in one charset are joined before conversion (so a
 * character split across words survives).  Lenient: encoded words are also
 * recognized inside atoms and with blanks in the encoded text.  An encoded
 * word in a charset iconv does not know is kept as it is.  CR and LF bytes
 * are dropped (unfolding; store values are already unfolded); the rest of
 * the text is copied, invalid UTF-8 becoming U+FFFD.  0 or -ENOMEM. */
int mime_decode_header(const char *in, size_t len, store_buf *out);

/* The searchable text of part `part` of a message, as UTF-8, for SEARCH
 * BODY/TEXT: for a text/... leaf, its body with the transfer encoding undone
 * (an unknown encoding is searched as it is) and converted from its
 * charset parameter (default US-ASCII).  Multipart and message/rfc822
 * containers and non-text leaves contribute nothing (0 is returned, nothing
 * is appended), so calling this for every part 0 .. c->nparts-1 collects the
 * text of the whole message.  Headers are not included.  msg/msglen are the
 * whole message's bytes (store_snap_bytes); a part reaching past msglen is
 * clipped.  Returns 0, -ENOMEM, or -ERANGE for a bad part index. */
int mime_part_text(const store_cache *c, uint32_t part, const char *msg,
                   size_t msglen, store_buf *out);

/* Is the part a text/... leaf (the parts mime_part_text returns text for)? */
bool mime_part_is_text(const store_part *p);

#endif
