/* The SHA-NI SHA-256 (one stream and two side by side) against OpenSSL, for every length around
 * the block and padding boundaries and for updates cut at odd places. */
#include "check.h"
#include "sha2x.h"

#include <openssl/evp.h>
#include <stdint.h>

static void openssl_sha(const uint8_t *d, size_t n, uint8_t out[32])
{
    unsigned int len = 32;
    EVP_Digest(d, n, out, &len, EVP_sha256(), NULL);
}

int main(void)
{
    if (!pa_sha2x_available()) {
        fprintf(stderr, "sha2x: no SHA extensions on this CPU, nothing to test\n");
        return 77; /* skipped */
    }
    size_t cap = 1 << 16;
    uint8_t *d = malloc(cap);
    for (size_t i = 0; i < cap; i++)
        d[i] = (uint8_t)(i * 131 + 7 + (i >> 9));
    for (size_t len = 0; len < 3000; len += len < 260 ? 1 : 37) {
        uint8_t want[32], got[32];
        openssl_sha(d, len, want);
        pa_sha2x s;
        pa_sha2x_init(&s);
        for (size_t off = 0; off < len;) {
            size_t k = (off * 7 + 3) % 97 + 1;
            if (k > len - off)
                k = len - off;
            pa_sha2x_update(&s, d + off, k);
            off += k;
        }
        pa_sha2x_final(&s, got);
        CHECK_MSG(memcmp(want, got, 32) == 0, "one stream, %zu bytes", len);

        size_t len2 = len / 2 + 11;
        uint8_t want2[32], got1[32], got2[32];
        openssl_sha(d + 5, len2, want2);
        pa_sha2x x, y;
        pa_sha2x_init(&x);
        pa_sha2x_init(&y);
        size_t o1 = 0, o2 = 0;
        while (o1 < len || o2 < len2) {
            size_t k1 = (o1 * 5 + 1) % 300 + 1, k2 = (o2 * 3 + 2) % 250 + 1;
            if (k1 > len - o1)
                k1 = len - o1;
            if (k2 > len2 - o2)
                k2 = len2 - o2;
            pa_sha2x_update2(&x, d + o1, k1, &y, d + 5 + o2, k2);
            o1 += k1;
            o2 += k2;
        }
        pa_sha2x_final(&x, got1);
        pa_sha2x_final(&y, got2);
        CHECK_MSG(memcmp(want, got1, 32) == 0 && memcmp(want2, got2, 32) == 0,
                  "two streams, %zu and %zu bytes", len, len2);
    }
    /* a long stream */
    uint8_t want[32], got[32];
    openssl_sha(d, cap, want);
    pa_sha2x s;
    pa_sha2x_init(&s);
    pa_sha2x_update(&s, d, cap);
    pa_sha2x_final(&s, got);
    CHECK(memcmp(want, got, 32) == 0);
    free(d);
    return check_report("sha2x");
}
