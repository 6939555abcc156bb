/* SHA-256 helpers (private to the analyzer and its front ends). */
#ifndef PA_SHA_H
#define PA_SHA_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pa_sha_ctx pa_sha_ctx; /* an EVP_MD_CTX */

pa_sha_ctx *pa_sha_new(void); /* NULL on allocation failure */
void pa_sha_update(pa_sha_ctx *ctx, const void *data, size_t len);
void pa_sha_final(pa_sha_ctx *ctx, uint8_t out[32]); /* frees ctx */
/* false when OpenSSL could not allocate (out is zeroed). */
bool pa_sha256(const void *data, size_t len, uint8_t out[32]);
/* Lowercase hex of n bytes into out (2n+1 bytes). */
void pa_hex(const uint8_t *bytes, size_t n, char *out);
#endif
