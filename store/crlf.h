/* store/crlf.h — line ends of a message as the store keeps them.
 *
 * The store holds messages in RFC 5322 form, with CRLF line ends: what
 * FETCH BODY[] sends, what RFC822.SIZE counts and what the message parser's
 * offsets (BODYSTRUCTURE sizes and lines, BINARY.SIZE) refer to must be the
 * same bytes.  Whoever hands the store a message that may have bare LF line
 * ends (IMAP APPEND from `curl -T`, mbox and Maildir import) converts it
 * with these two functions first, so every path converts the same way.
 *
 * The conversion: every LF not preceded by a CR becomes CRLF; everything
 * else (CRLF, a lone CR, NUL, 8-bit bytes) is kept as is.  A message that
 * is already CRLF comes out unchanged, so converting twice is harmless.
 */
#ifndef RINGMAIL_STORE_CRLF_H
#define RINGMAIL_STORE_CRLF_H

#include <stddef.h>

/* Bytes of p[0..n) after the conversion (n + the number of bare LFs);
 * equal to n exactly when there is nothing to convert. */
size_t store_crlf_len(const void *p, size_t n);

/* Write the conversion of p[0..n) to dst, which has room for
 * store_crlf_len(p, n) bytes and does not overlap p.  Returns the bytes
 * written.  A chunk is converted on its own: an LF at p[0] counts as bare,
 * so split input only at line ends (after an LF). */
size_t store_crlf_copy(void *dst, const void *p, size_t n);

#endif
