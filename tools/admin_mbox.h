/* tools/admin_mbox.h — the mbox format (mboxrd variant) and line-end
 * conversion, as pure functions over memory (no store, no files), so that
 * tests/unit/test_mbox.c can exercise them directly.
 *
 * The convention ringmail-admin reads and writes:
 *
 *   From MAILER-DAEMON Thu Jan  1 00:00:01 1970\n    <- asctime(), UTC
 *   <message, LF line ends; every line matching ^>*From  gets one more '>'>
 *   \n                                               <- one blank line
 *
 * Reading:
 *   - a message starts at a line "From " that carries an asctime-style date
 *     ("Www Mmm dd hh:mm[:ss] [zone] yyyy [zone]", anywhere after the
 *     sender); a "From " line without a date is body text, which saves
 *     messages in mboxo files whose writer did not quote such lines;
 *   - the blank line before the next From_ line (or at the end of the file)
 *     belongs to the separator and is dropped;
 *   - lines matching ^>+From  lose one '>' (mboxrd);
 *   - the From_ date is the internal date, read as UTC unless the line
 *     carries a numeric zone (+hhmm/-hhmm).
 *
 * Flags: `Status:` R -> \Seen; `X-Status:` A -> \Answered, F -> \Flagged,
 * D -> \Deleted, T -> \Draft (the letters mutt and Dovecot write).  Once
 * they are flags those header fields are dropped (admin_mbox_drop_status),
 * as Dovecot's mbox storage hides them from clients: a stale "Status: RO" would otherwise contradict
 * the message's real flags as soon as a client changes them.  Everything
 * else is stored as given (but for line ends), and export writes it back
 * as stored.
 */
#ifndef RINGMAIL_TOOLS_ADMIN_MBOX_H
#define RINGMAIL_TOOLS_ADMIN_MBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A growable byte buffer; owned by its user, freed with free(data). */
typedef struct admin_buf {
    char *data;
    size_t len, cap;
} admin_buf;

int admin_buf_reserve(admin_buf *b, size_t extra);

/* A cursor over an mbox held in memory (e.g. mmap'd); borrows the bytes. */
typedef struct admin_mbox_reader {
    const char *p;
    size_t len;
    size_t pos;             /* start of the next From_ line */
    unsigned long line;     /* its 1-based line number */
} admin_mbox_reader;

/* -EINVAL if a non-empty input does not start with a "From " line. */
int admin_mbox_reader_init(admin_mbox_reader *r, const char *p, size_t len);

/* The next message: [*msg, *msg + *len) are its bytes as in the file
 * (still quoted, LF), *date its From_ date (0 if the first line had none),
 * *line the line number of its From_ line.  Returns 1, or 0 at the end. */
int admin_mbox_next(admin_mbox_reader *r, const char **msg, size_t *len,
                    int64_t *date, unsigned long *line);

/* Parse the date of a From_ line (without its newline).  0 or -EINVAL. */
int admin_mbox_from_date(const char *line, size_t len, int64_t *date);

/* Append msg to out with bare LF made CRLF (existing CRLF kept) and, with
 * unquote, one '>' removed from lines matching ^>+From . */
int admin_mbox_to_crlf(const char *msg, size_t len, bool unquote, admin_buf *out);

/* Store flags (STORE_F_*) from the Status:/X-Status: headers. */
uint32_t admin_mbox_flags(const char *msg, size_t len);

/* Remove the Status: and X-Status: fields (with their continuation lines)
 * from the message's header, in place; the body, after the first empty
 * line, is never touched.  Returns the new length. */
size_t admin_mbox_drop_status(char *msg, size_t len);

/* "From MAILER-DAEMON <asctime UTC>\n" into buf; returns its length, or
 * -EINVAL for a date that cannot be formatted. */
int admin_mbox_from_line(int64_t date, char *buf, size_t len);

/* Append one message in mboxrd form to out: CRLF made LF, ^>*From  lines
 * quoted, a final newline added if missing, then the blank separator
 * line.  The From_ line is the caller's. */
int admin_mbox_quote(const char *msg, size_t len, admin_buf *out);

#endif
