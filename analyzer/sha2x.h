/* SHA-256 on the x86 SHA extensions, with a two-stream update that hashes two byte streams side
 * by side for little more than the cost of one (private to the analyzer). Use only when
 * pa_sha2x_available(); otherwise sha.h (OpenSSL EVP). */
#ifndef PA_SHA2X_H
#define PA_SHA2X_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pa_sha2x {
    uint32_t h[8];
    uint8_t buf[64];
    size_t nbuf;
    uint64_t total;
} pa_sha2x;

bool pa_sha2x_available(void);
void pa_sha2x_init(pa_sha2x *s);
void pa_sha2x_update(pa_sha2x *s, const void *data, size_t n);
/* The same as updating a with da and b with db, computed two blocks at a time. */
void pa_sha2x_update2(pa_sha2x *a, const void *da, size_t na, pa_sha2x *b, const void *db, size_t nb);
void pa_sha2x_final(pa_sha2x *s, uint8_t out[32]);
#endif
