/* SHA-256 through OpenSSL EVP. */
#include "provfs/analyzer.h"
#include "sha.h"

#include <openssl/evp.h>

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
        return NULL;
    }
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

void pa_sha256(const void *data, size_t len, uint8_t out[32])
{
    unsigned int n = 32;
    EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

void pa_sha256_hex(const void *data, size_t len, char out[65])
{
    uint8_t d[32];
    pa_sha256(data, len, d);
    pa_hex(d, 32, out);
}
