/* SHA-256 through OpenSSL EVP. */
#include "provfs/analyzer.h"
#include "sha.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <string.h>

static const char hexdigits[] = "0123456789abcdef";

void pa_hex(const uint8_t *bytes, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexdigits[bytes[i] >> 4];
        out[2 * i + 1] = hexdigits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

pa_sha_ctx *pa_sha_new(void)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        ctx = NULL;
    }
    if (!ctx)
        ERR_clear_error(); /* out of memory: leave no error-queue entry behind */
    return (pa_sha_ctx *)ctx;
}

void pa_sha_update(pa_sha_ctx *ctx, const void *data, size_t len)
{
    if (len)
        EVP_DigestUpdate((EVP_MD_CTX *)ctx, data, len);
}

void pa_sha_final(pa_sha_ctx *ctx, uint8_t out[32])
{
    unsigned int n = 32;
    EVP_DigestFinal_ex((EVP_MD_CTX *)ctx, out, &n);
    EVP_MD_CTX_free((EVP_MD_CTX *)ctx);
}

bool pa_sha256(const void *data, size_t len, uint8_t out[32])
{
    unsigned int n = 32;
    if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1) {
        /* out of memory inside OpenSSL: no digest, and no error-queue entry left behind */
        ERR_clear_error();
        memset(out, 0, 32);
        return false;
    }
    return true;
}

bool pa_sha256_hex(const void *data, size_t len, char out[65])
{
    uint8_t d[32];
    if (!pa_sha256(data, len, d)) {
        out[0] = '\0';
        return false;
    }
    pa_hex(d, 32, out);
    return true;
}
