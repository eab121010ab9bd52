/* core/fetch/mime_encode.h — making a message appended as binary data fit
 * for BODY[]: its parts that hold NUL octets re-encoded as base64.
 *
 * RFC 3516 4.4 lets a client APPEND "data containing NULs by using the
 * <literal8> syntax" and lets the server "modify the CTE of the appended
 * data, however any such transformation MUST NOT result in a loss of
 * data"; RFC 9051 4.3 says "unencoded binary strings are not permitted,
 * unless returned in a <literal8> in response to a BINARY... FETCH data
 * item".  We re-encode at APPEND, as Dovecot does, rather than at every
 * FETCH: the stored message is then what BODY[], RFC822.SIZE,
 * BODYSTRUCTURE, SEARCH and COPY all see, and BINARY[part] decodes the
 * base64 back to the octets the client sent.  Only parts that need it
 * change (RFC 3516 6: "this should only be done when it is absolutely
 * necessary"). */
#ifndef RINGMAIL_CORE_FETCH_MIME_ENCODE_H
#define RINGMAIL_CORE_FETCH_MIME_ENCODE_H

#include <stddef.h>

#include "store/message.h"

/* Append to out (caller-owned, may hold data) the message raw/len with each
 * leaf part whose body holds a NUL octet re-encoded: its
 * Content-Transfer-Encoding field(s) replaced by "Content-Transfer-Encoding:
 * base64", its body by base64 lines of 76 characters ending in CRLF.
 * Everything else is copied as it is (the whole message if it cannot be
 * parsed).  *nconv gets the number of parts
 * re-encoded (0: out got an exact copy).  Returns 0 or -ENOMEM (out's
 * length restored). */
int mime_binary_to_base64(const char *raw, size_t len, store_buf *out, size_t *nconv);

/* Base64 (RFC 2045 6.8) of p/n in lines of at most 76 characters, separated
 * by CRLF, without a final CRLF.  0 or -ENOMEM. */
int mime_encode_base64(const void *p, size_t n, store_buf *out);

#endif
