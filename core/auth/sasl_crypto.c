/* core/auth/sasl_crypto.c — hashing, HMAC, PBKDF2, randomness, base64. */
#include <errno.h>
#include <string.h>

#include "core/auth/sasl_crypto.h"

#if __has_include(<openssl/is_boringssl.h>)
#include <openssl/crypto.h>
#include <openssl/digest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

void rm_sha256(const void *p, size_t n, uint8_t out[RM_SHA256_LEN])
{
    SHA256(p, n, out);
}

void rm_sha1(const void *p, size_t n, uint8_t out[RM_SHA1_LEN])
{
    SHA1(p, n, out);
}

void rm_hmac_sha256(const void *key, size_t klen, const void *p, size_t n,
                    uint8_t out[RM_SHA256_LEN])
{
    unsigned len = RM_SHA256_LEN;
    HMAC(EVP_sha256(), key, klen, p, n, out, &len);
}

void rm_pbkdf2_sha256(const void *pw, size_t pwlen, const void *salt,
                      size_t saltlen, unsigned iterations,
                      uint8_t out[RM_SHA256_LEN])
{
    PKCS5_PBKDF2_HMAC(pw, pwlen, salt, saltlen, iterations, EVP_sha256(),
                      RM_SHA256_LEN, out);
}

int rm_random(void *p, size_t n)
{
    RAND_bytes(p, n);       /* BoringSSL's RAND_bytes aborts rather than fail */
    return 0;
}

bool rm_memeq(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

const char *rm_crypto_backend(void)
{
    return "boringssl";
}

#else
#error "BoringSSL's headers (/usr/include/android) must be on the include path"
#endif
