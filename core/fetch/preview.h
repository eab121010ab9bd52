/* core/fetch/preview.h — the text of FETCH PREVIEW (RFC 8970).
 *
 * A message's preview is made once, when the store parses it at append
 * (registered as the store's previewer: store_msg_set_previewer), and kept
 * in its cache blob; a blob of an older parser has none and the FETCH
 * engine calls imap_preview on the message's bytes instead.
 *
 * The text: the first text/plain or text/html part that is not an
 * attachment (in depth-first order, not inside an embedded message; in a
 * multipart/alternative, its text/plain is taken over its text/html),
 * transfer encoding and charset undone, HTML reduced to its text, white
 * space collapsed, at most IMAP_PREVIEW_CHARS characters.  No such part,
 * or no text in it: the empty string (RFC 8970 3.2: "In such cases, the
 * server MUST return a zero-length string").
 *
 * Cost: at most IMAP_PREVIEW_PLAIN_MAX (text/plain) or IMAP_PREVIEW_HTML_MAX
 * (text/html) bytes of the part's encoded body are read, so a huge or
 * hostile message costs the same as a small one. */
#ifndef RINGMAIL_CORE_PREVIEW_H
#define RINGMAIL_CORE_PREVIEW_H

#include <stddef.h>
#include <stdint.h>

#include "store/message.h"

/* RFC 8970 3.3: "The server SHOULD limit the length of the preview text to
 * 200 preview characters" (and MUST NOT exceed 256). */
#define IMAP_PREVIEW_CHARS 200
/* Encoded body bytes read: plenty for 200 characters of text (CJK in
 * quoted-printable is 9 bytes a character); HTML gets more because mail
 * often carries kilobytes of <style> before the first word. */
#define IMAP_PREVIEW_PLAIN_MAX (16u << 10)
#define IMAP_PREVIEW_HTML_MAX (64u << 10)

/* Append the preview of the message msg/msglen, whose parsed blob is c, to
 * out: valid UTF-8 without control characters, at most IMAP_PREVIEW_CHARS
 * characters (so at most STORE_PREVIEW_MAX bytes); nothing appended is the
 * empty preview.  Returns 0 or -ENOMEM (out as it was).  It is the store's
 * previewer (store_previewer). */
int imap_preview(const store_cache *c, const char *msg, size_t msglen, store_buf *out);

/* The preview of a text/html body already in UTF-8, from HTML (tags,
 * comments, <script>/<style>/<title> contents dropped, entities decoded)
 * and the whitespace rules as above; and the same for plain text.  For
 * tests and for imap_preview.  0 or -ENOMEM. */
int imap_preview_html(const char *s, size_t n, store_buf *out);
int imap_preview_plain(const char *s, size_t n, store_buf *out);

/* Calls of imap_preview by this process so far (a counter for tests: a
 * FETCH PREVIEW of a message appended by this version makes none). */
uint64_t imap_preview_runs(void);

#endif
