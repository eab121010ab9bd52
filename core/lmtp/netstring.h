/* core/lmtp/netstring.h — netstrings, the framing of Postfix's socketmap
 * protocol (socketmap_table(5): "Each request and each reply are sent as
 * one netstring object"), as D. J. Bernstein defines them
 * (cr.yp.to/proto/netstrings.txt): "[len]:[string]," where [len] is the
 * decimal length of [string].
 *
 * The decoder is incremental: bytes go in as they arrive, cut anywhere,
 * and a netstring comes out once its comma is there.  It knows no socket
 * and no map; core/server/socketmap.c serves the lookups. */
#ifndef RINGMAIL_LMTP_NETSTRING_H
#define RINGMAIL_LMTP_NETSTRING_H

#include <stddef.h>
#include <stdint.h>

/* Digits of [len] accepted: any length a decoder can be asked to take
 * (SIZE_MAX has 20) fits; more is not a netstring we could read. */
#define NETSTRING_LEN_DIGITS 20

typedef struct netstring_dec {
    size_t max;         /* longest [string] accepted */
    size_t len;         /* [len] as read so far, then the string's length */
    size_t have;        /* bytes of [string] copied so far */
    unsigned digits;    /* digits of [len] read */
    unsigned char state;
} netstring_dec;

/* A decoder for strings of at most max bytes. */
void netstring_dec_init(netstring_dec *d, size_t max);

/* Feed n bytes at p.  The string is copied into buf, which holds max + 1
 * bytes (the caller's; it must be the same buffer from the first byte of a
 * netstring to its comma).
 *   1        a netstring is complete: buf[0..*len) is its string, buf[*len]
 *            is NUL; *used bytes of p were consumed (the rest is the next
 *            netstring's) and the decoder is ready for the next one;
 *   0        all n bytes were consumed, the netstring is not complete;
 *  -EPROTO   not a netstring (a non-digit in [len], an extra leading zero,
 *            no ':' or no ',' where they belong): the stream cannot be
 *            resynchronised;
 *  -EMSGSIZE [len] says more than max: known before the string is read,
 *            so the caller can answer without waiting for it.
 * After an error the decoder stays failed until netstring_dec_init. */
int netstring_feed(netstring_dec *d, const uint8_t *p, size_t n, char *buf,
                   size_t *used, size_t *len);

/* "[len]:[string]," of the n bytes at s into out (cap bytes; no NUL is
 * added).  Returns the encoded length, or -ENOSPC if it does not fit. */
int netstring_encode(const void *s, size_t n, char *out, size_t cap);

#endif
