/* store/base64.h — base64 of RFC 4648 (standard alphabet, with padding),
 * strict: one encoding per value.  Owned by the lowest layer because SASL
 * (core/auth: SCRAM, AUTHENTICATE, the passwd-file's SCRAM keys) and MIME
 * (core/fetch: re-encoding binary parts) both need it.  MIME's lenient
 * decoder, which skips what is not in the alphabet as RFC 2045 6.8 says,
 * is a different function (core/fetch/mime_decode.c).
 *
 * Encode: out holds store_b64_enc_len(n) + 1 bytes (NUL-terminated);
 * returns the length.  Decode: strict (length a multiple of 4, padding only
 * at the end, no whitespace, unused bits zero); out holds n / 4 * 3 bytes;
 * returns the decoded length or -EINVAL. */
#ifndef RINGMAIL_STORE_BASE64_H
#define RINGMAIL_STORE_BASE64_H

#include <stddef.h>
#include <stdint.h>

#define store_b64_enc_len(n) (((n) + 2) / 3 * 4)
size_t store_b64_encode(const void *in, size_t n, char *out);
long store_b64_decode(const char *in, size_t n, uint8_t *out);

#endif
