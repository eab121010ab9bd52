/* core/auth/sasl_crypto.h — the few primitives SCRAM, the passwd-file and the
 * auth cache need: SHA-256, HMAC-SHA-256, PBKDF2-HMAC-SHA-256, random
 * bytes, constant-time comparison, strict base64.
 * All from BoringSSL's libcrypto (its headers, /usr/include/android, come
 * through ringmail_net's public include path). */
#ifndef RINGMAIL_CORE_SASL_CRYPTO_H
#define RINGMAIL_CORE_SASL_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RM_SHA256_LEN 32

void rm_sha256(const void *p, size_t n, uint8_t out[RM_SHA256_LEN]);
void rm_hmac_sha256(const void *key, size_t klen, const void *p, size_t n,
                    uint8_t out[RM_SHA256_LEN]);
/* out: RM_SHA256_LEN bytes (the single block SCRAM uses). */
void rm_pbkdf2_sha256(const void *pw, size_t pwlen, const void *salt,
                      size_t saltlen, unsigned iterations,
                      uint8_t out[RM_SHA256_LEN]);
/* 0 or -errno (BoringSSL aborts instead of failing). */
int rm_random(void *p, size_t n);
/* Constant-time in n. */
bool rm_memeq(const void *a, const void *b, size_t n);
/* "boringssl" (for test logs). */
const char *rm_crypto_backend(void);

/* Base64 (RFC 4648, with padding).  Encode: out holds
 * rm_b64_enc_len(n) + 1 bytes (NUL-terminated); returns the length.
 * Decode: strict (length a multiple of 4, padding only at the end, no
 * whitespace, unused bits zero); out holds n / 4 * 3 bytes; returns the
 * decoded length or -EINVAL. */
#define rm_b64_enc_len(n) (((n) + 2) / 3 * 4)
size_t rm_b64_encode(const void *in, size_t n, char *out);
long rm_b64_decode(const char *in, size_t n, uint8_t *out);

#endif
