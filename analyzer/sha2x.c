/* SHA-256 with the x86 SHA extensions, one stream or two interleaved.
 *
 * A fingerprint hashes the same bytes twice: as part of the whole file (its sha256 xattr) and as
 * part of their tensor (byte-exact identity). One SHA-NI stream is bound by the latency of
 * sha256rnds2, not by its throughput, so two independent streams computed side by side cost
 * little more than one. OpenSSL has no two-stream interface, hence this file. It is used only when
 * the CPU has the SHA extensions; the digests are checked against OpenSSL in the unit tests.
 */
#include "sha2x.h"

#include <stdatomic.h>

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_X86 1
#endif

static const uint32_t sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static const uint32_t sha_h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

static bool cpu_has_sha(void)
{
#ifdef HAVE_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSE4_1) || !(c & bit_SSSE3))
        return false;
    if (__get_cpuid_max(0, NULL) < 7)
        return false;
    __cpuid_count(7, 0, a, b, c, d);
    return (b & (1u << 29)) != 0; /* SHA extensions */
#else
    return false;
#endif
}

/* CPUID once: in a virtual machine each one traps to the hypervisor. */
bool pa_sha2x_available(void)
{
    static atomic_int have = -1;
    int h = atomic_load_explicit(&have, memory_order_relaxed);
    if (h < 0) {
        h = cpu_has_sha();
        atomic_store_explicit(&have, h, memory_order_relaxed);
    }
    return h;
}

#ifdef HAVE_X86
#define TARGET __attribute__((target("sha,sse4.1,ssse3")))

/* State as the SHA instructions want it: ABEF and CDGH. */
TARGET static inline void load_state(const uint32_t h[8], __m128i *s0, __m128i *s1)
{
    __m128i tmp = _mm_loadu_si128((const __m128i *)&h[0]);
    __m128i st1 = _mm_loadu_si128((const __m128i *)&h[4]);
    tmp = _mm_shuffle_epi32(tmp, 0xB1);
    st1 = _mm_shuffle_epi32(st1, 0x1B);
    *s0 = _mm_alignr_epi8(tmp, st1, 8);
    *s1 = _mm_blend_epi16(st1, tmp, 0xF0);
}

TARGET static inline void store_state(uint32_t h[8], __m128i s0, __m128i s1)
{
    __m128i tmp = _mm_shuffle_epi32(s0, 0x1B);
    s1 = _mm_shuffle_epi32(s1, 0xB1);
    __m128i a = _mm_blend_epi16(tmp, s1, 0xF0);
    __m128i b = _mm_alignr_epi8(s1, tmp, 8);
    _mm_storeu_si128((__m128i *)&h[0], a);
    _mm_storeu_si128((__m128i *)&h[4], b);
}

/* One stream. The message schedule rotates four groups G(n) = W[4n..4n+3] in w[n & 3]:
 * G(n) = msg2(msg1(G(n-4), G(n-3)) + alignr(G(n-1), G(n-2), 4), G(n-1)). */
TARGET static void compress1(uint32_t h[8], const uint8_t *data, size_t blocks)
{
    __m128i s0, s1, w[4];
    load_state(h, &s0, &s1);
    const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    for (size_t b = 0; b < blocks; b++, data += 64) {
        __m128i a0 = s0, a1 = s1;
        _Pragma("GCC unroll 16") for (int n = 0; n < 16; n++)
        {
            if (n < 4) {
                w[n] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16 * n)), mask);
            } else {
                __m128i x = _mm_sha256msg1_epu32(w[n & 3], w[(n + 1) & 3]);
                x = _mm_add_epi32(x, _mm_alignr_epi8(w[(n + 3) & 3], w[(n + 2) & 3], 4));
                w[n & 3] = _mm_sha256msg2_epu32(x, w[(n + 3) & 3]);
            }
            __m128i m = _mm_add_epi32(w[n & 3], _mm_loadu_si128((const __m128i *)&sha_k[4 * n]));
            s1 = _mm_sha256rnds2_epu32(s1, s0, m);
            m = _mm_shuffle_epi32(m, 0x0E);
            s0 = _mm_sha256rnds2_epu32(s0, s1, m);
        }
        s0 = _mm_add_epi32(s0, a0);
        s1 = _mm_add_epi32(s1, a1);
    }
    store_state(h, s0, s1);
}

TARGET static void compress2(uint32_t ha[8], const uint8_t *da, uint32_t hb[8], const uint8_t *db,
                             size_t blocks)
{
    __m128i s0, s1, t0, t1, w[4], v[4];
    load_state(ha, &s0, &s1);
    load_state(hb, &t0, &t1);
    for (size_t b = 0; b < blocks; b++, da += 64, db += 64) {
        __m128i a0 = s0, a1 = s1, b0 = t0, b1 = t1;
        /* two independent dependency chains: the core overlaps them */
        const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
        _Pragma("GCC unroll 16") for (int n = 0; n < 16; n++)
        {
            if (n < 4) {
                w[n] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(da + 16 * n)), mask);
                v[n] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(db + 16 * n)), mask);
            } else {
                __m128i x = _mm_sha256msg1_epu32(w[n & 3], w[(n + 1) & 3]);
                __m128i y = _mm_sha256msg1_epu32(v[n & 3], v[(n + 1) & 3]);
                x = _mm_add_epi32(x, _mm_alignr_epi8(w[(n + 3) & 3], w[(n + 2) & 3], 4));
                y = _mm_add_epi32(y, _mm_alignr_epi8(v[(n + 3) & 3], v[(n + 2) & 3], 4));
                w[n & 3] = _mm_sha256msg2_epu32(x, w[(n + 3) & 3]);
                v[n & 3] = _mm_sha256msg2_epu32(y, v[(n + 3) & 3]);
            }
            __m128i k = _mm_loadu_si128((const __m128i *)&sha_k[4 * n]);
            __m128i mx = _mm_add_epi32(w[n & 3], k), my = _mm_add_epi32(v[n & 3], k);
            s1 = _mm_sha256rnds2_epu32(s1, s0, mx);
            t1 = _mm_sha256rnds2_epu32(t1, t0, my);
            mx = _mm_shuffle_epi32(mx, 0x0E);
            my = _mm_shuffle_epi32(my, 0x0E);
            s0 = _mm_sha256rnds2_epu32(s0, s1, mx);
            t0 = _mm_sha256rnds2_epu32(t0, t1, my);
        }
        s0 = _mm_add_epi32(s0, a0);
        s1 = _mm_add_epi32(s1, a1);
        t0 = _mm_add_epi32(t0, b0);
        t1 = _mm_add_epi32(t1, b1);
    }
    store_state(ha, s0, s1);
    store_state(hb, t0, t1);
}
#else
static void compress1(uint32_t h[8], const uint8_t *data, size_t blocks)
{
    (void)h, (void)data, (void)blocks;
}
static void compress2(uint32_t ha[8], const uint8_t *da, uint32_t hb[8], const uint8_t *db,
                      size_t blocks)
{
    (void)ha, (void)da, (void)hb, (void)db, (void)blocks;
}
#endif

void pa_sha2x_init(pa_sha2x *s)
{
    memcpy(s->h, sha_h0, sizeof s->h);
    s->nbuf = 0;
    s->total = 0;
}

/* Fill the partial block from *p; true when it became whole (and was hashed). */
static bool top_up(pa_sha2x *s, const uint8_t **p, size_t *n)
{
    if (!s->nbuf)
        return false;
    size_t take = 64 - s->nbuf < *n ? 64 - s->nbuf : *n;
    memcpy(s->buf + s->nbuf, *p, take);
    s->nbuf += take;
    *p += take;
    *n -= take;
    if (s->nbuf < 64)
        return false;
    compress1(s->h, s->buf, 1);
    s->nbuf = 0;
    return true;
}

static void keep_tail(pa_sha2x *s, const uint8_t *p, size_t n)
{
    memcpy(s->buf + s->nbuf, p, n);
    s->nbuf += n;
}

void pa_sha2x_update(pa_sha2x *s, const void *data, size_t n)
{
    const uint8_t *p = data;
    s->total += n;
    top_up(s, &p, &n);
    if (n >= 64) {
        compress1(s->h, p, n / 64);
        p += n / 64 * 64;
        n %= 64;
    }
    keep_tail(s, p, n);
}

void pa_sha2x_update2(pa_sha2x *a, const void *da, size_t na, pa_sha2x *b, const void *db, size_t nb)
{
    const uint8_t *pa = da, *pb = db;
    a->total += na;
    b->total += nb;
    top_up(a, &pa, &na);
    top_up(b, &pb, &nb);
    size_t both = (na < nb ? na : nb) / 64;
    if (both) {
        compress2(a->h, pa, b->h, pb, both);
        pa += both * 64;
        pb += both * 64;
        na -= both * 64;
        nb -= both * 64;
    }
    /* what is left of the longer one, one stream */
    if (na >= 64) {
        compress1(a->h, pa, na / 64);
        pa += na / 64 * 64;
        na %= 64;
    }
    if (nb >= 64) {
        compress1(b->h, pb, nb / 64);
        pb += nb / 64 * 64;
        nb %= 64;
    }
    keep_tail(a, pa, na);
    keep_tail(b, pb, nb);
}

void pa_sha2x_final(pa_sha2x *s, uint8_t out[32])
{
    uint64_t bits = s->total * 8;
    uint8_t pad[72] = {0x80};
    size_t padlen = (s->nbuf < 56 ? 56 : 120) - s->nbuf;
    for (int i = 0; i < 8; i++)
        pad[padlen + i] = (uint8_t)(bits >> (56 - 8 * i));
    uint64_t total = s->total;
    pa_sha2x_update(s, pad, padlen + 8);
    s->total = total;
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
}
