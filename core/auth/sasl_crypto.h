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
#define RM_SHA1_LEN 20

/* SHA-1: only to check {SSHA}/{SHA} secrets (slappasswd's default), never
 * to make new ones. */
void rm_sha1(const void *p, size_t n, uint8_t out[RM_SHA1_LEN]);

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


#endif
