/* store/msgid.h — RFC 5322 CFWS and Message IDs (store/msgid.c). */
#ifndef RINGMAIL_STORE_MSGID_H
#define RINGMAIL_STORE_MSGID_H

#include <stddef.h>

#include "store/message.h"

/* Skip whitespace and RFC 5322 comments (CFWS) in s[0, n) from i on;
 * returns the index of the next other byte, or n. */
size_t store_skip_cfws(const char *s, size_t n, size_t i);

/* The first valid msg-id of a header value, from *pos on, normalized
 * (RFC 5256: "<\"a\"@b>" and "<a@b>" are the same Message ID): quoting,
 * escapes, comments and whitespace removed, the brackets kept.  Appends it
 * to out and returns 1, returns 0 when there is none, or -ENOMEM; *pos
 * moves past it. */
int store_msgid_next(const char *p, size_t n, size_t *pos, store_buf *out);

#endif
