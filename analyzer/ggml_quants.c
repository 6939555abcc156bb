/* ggml block formats: the type table, decoders for the types the fingerprint reads, and
 * encoders for the ones mkmodel writes.
 *
 * Block layouts (little-endian, f16 = IEEE half), as ggml defines them:
 *   Q4_0  32 el, 18 B: f16 d, u8 qs[16]                 x = d * (nibble - 8)
 *   Q4_1  32 el, 20 B: f16 d, f16 m, u8 qs[16]          x = d * nibble + m
 *   Q5_0  32 el, 22 B: f16 d, u32 qh, u8 qs[16]         x = d * ((nibble | high << 4) - 16)
 *   Q5_1  32 el, 24 B: f16 d, f16 m, u32 qh, u8 qs[16]  x = d * (nibble | high << 4) + m
 *   Q8_0  32 el, 34 B: f16 d, i8 qs[32]                 x = d * q
 *   Q4_K 256 el, 144 B: f16 d, f16 dmin, u8 scales[12], u8 qs[128]
 *        8 sub-blocks of 32 with 6-bit scale sc and min m: x = d * sc * nibble - dmin * m
 *   Q5_K 256 el, 176 B: as Q4_K plus u8 qh[32] (fifth bits) before qs
 *   Q6_K 256 el, 210 B: u8 ql[128], u8 qh[64], i8 scales[16], f16 d
 *        16 sub-blocks of 16: x = d * scale * (q6 - 32)
 * In the 32-element types, byte j holds element j in its low nibble and element j + 16 in its
 * high one; Q5's qh bit j is the fifth bit of element j. In Q4_K/Q5_K each 64-element chunk uses
 * 32 bytes of qs: low nibbles are the chunk's first 32 elements, high nibbles the next 32.
 */
#include "gguf.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- type table */

static const struct ggml_type_info {
    const char *name;
    uint16_t block_elems;
    uint16_t block_bytes;
    bool supported;
} type_info[PA_GGML_TYPE_COUNT] = {
    [PA_GGML_F32] = {"F32", 1, 4, true},
    [PA_GGML_F16] = {"F16", 1, 2, true},
    [PA_GGML_Q4_0] = {"Q4_0", 32, 18, true},
    [PA_GGML_Q4_1] = {"Q4_1", 32, 20, true},
    [PA_GGML_Q5_0] = {"Q5_0", 32, 22, true},
    [PA_GGML_Q5_1] = {"Q5_1", 32, 24, true},
    [PA_GGML_Q8_0] = {"Q8_0", 32, 34, true},
    [PA_GGML_Q8_1] = {"Q8_1", 32, 36, false},
    [PA_GGML_Q2_K] = {"Q2_K", 256, 84, false},
    [PA_GGML_Q3_K] = {"Q3_K", 256, 110, false},
    [PA_GGML_Q4_K] = {"Q4_K", 256, 144, true},
    [PA_GGML_Q5_K] = {"Q5_K", 256, 176, true},
    [PA_GGML_Q6_K] = {"Q6_K", 256, 210, true},
    [PA_GGML_Q8_K] = {"Q8_K", 256, 292, false},
    [PA_GGML_IQ2_XXS] = {"IQ2_XXS", 256, 66, false},
    [PA_GGML_IQ2_XS] = {"IQ2_XS", 256, 74, false},
    [PA_GGML_IQ3_XXS] = {"IQ3_XXS", 256, 98, false},
    [PA_GGML_IQ1_S] = {"IQ1_S", 256, 50, false},
    [PA_GGML_IQ4_NL] = {"IQ4_NL", 32, 18, false},
    [PA_GGML_IQ3_S] = {"IQ3_S", 256, 110, false},
    [PA_GGML_IQ2_S] = {"IQ2_S", 256, 82, false},
    [PA_GGML_IQ4_XS] = {"IQ4_XS", 256, 136, false},
    [PA_GGML_I8] = {"I8", 1, 1, false},
    [PA_GGML_I16] = {"I16", 1, 2, false},
    [PA_GGML_I32] = {"I32", 1, 4, false},
    [PA_GGML_I64] = {"I64", 1, 8, false},
    [PA_GGML_F64] = {"F64", 1, 8, false},
    [PA_GGML_IQ1_M] = {"IQ1_M", 256, 56, false},
    [PA_GGML_BF16] = {"BF16", 1, 2, true},
    [PA_GGML_TQ1_0] = {"TQ1_0", 256, 54, false},
    [PA_GGML_TQ2_0] = {"TQ2_0", 256, 66, false},
    [PA_GGML_MXFP4] = {"MXFP4", 32, 17, false},
    [PA_GGML_NVFP4] = {"NVFP4", 64, 36, false},
    [PA_GGML_Q1_0] = {"Q1_0", 128, 18, false},
};

bool pa_gguf_type_known(uint32_t type)
{
    return type < PA_GGML_TYPE_COUNT && type_info[type].name != NULL;
}

bool pa_gguf_type_supported(uint32_t type)
{
    return pa_gguf_type_known(type) && type_info[type].supported;
}

const char *pa_gguf_type_name(uint32_t type)
{
    return pa_gguf_type_known(type) ? type_info[type].name : "?";
}

size_t pa_gguf_block_elems(uint32_t type)
{
    return pa_gguf_type_known(type) ? type_info[type].block_elems : 0;
}

size_t pa_gguf_block_bytes(uint32_t type)
{
    return pa_gguf_type_known(type) ? type_info[type].block_bytes : 0;
}

bool pa_gguf_nbytes(uint32_t type, uint64_t n_elems, uint64_t *nbytes)
{
    if (!pa_gguf_type_known(type))
        return false;
    uint64_t be = type_info[type].block_elems, bb = type_info[type].block_bytes;
    if (n_elems % be != 0)
        return false;
    uint64_t blocks = n_elems / be;
    if (blocks > UINT64_MAX / bb)
        return false;
    *nbytes = blocks * bb;
    return true;
}

/* ---------------------------------------------------------------- decoding */

static inline float half_at(const uint8_t *p)
{
    return pa_f16_to_f32_one((uint16_t)(p[0] | (p[1] << 8)));
}

static inline uint32_t le32_at(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void dequant_q4_0(const uint8_t *b, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, b += 18, y += 32) {
        const float d = half_at(b);
        const uint8_t *qs = b + 2;
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)((qs[j] & 0xF) - 8);
            y[j + 16] = d * (float)((qs[j] >> 4) - 8);
        }
    }
}

static void dequant_q4_1(const uint8_t *b, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, b += 20, y += 32) {
        const float d = half_at(b), m = half_at(b + 2);
        const uint8_t *qs = b + 4;
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)(qs[j] & 0xF) + m;
            y[j + 16] = d * (float)(qs[j] >> 4) + m;
        }
    }
}

static void dequant_q5_0(const uint8_t *b, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, b += 22, y += 32) {
        const float d = half_at(b);
        const uint32_t qh = le32_at(b + 2);
        const uint8_t *qs = b + 6;
        for (int j = 0; j < 16; j++) {
            int lo = (qs[j] & 0xF) | (int)(((qh >> j) & 1u) << 4);
            int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
            y[j] = d * (float)(lo - 16);
            y[j + 16] = d * (float)(hi - 16);
        }
    }
}

static void dequant_q5_1(const uint8_t *b, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, b += 24, y += 32) {
        const float d = half_at(b), m = half_at(b + 2);
        const uint32_t qh = le32_at(b + 4);
        const uint8_t *qs = b + 8;
        for (int j = 0; j < 16; j++) {
            int lo = (qs[j] & 0xF) | (int)(((qh >> j) & 1u) << 4);
            int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
            y[j] = d * (float)lo + m;
            y[j + 16] = d * (float)hi + m;
        }
    }
}

static void dequant_q8_0(const uint8_t *b, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, b += 34, y += 32) {
        const float d = half_at(b);
        for (int j = 0; j < 32; j++)
            y[j] = d * (float)(int8_t)b[2 + j];
    }
}

/* The 12 scale bytes of Q4_K/Q5_K hold eight 6-bit scales and eight 6-bit mins: sub-blocks 0-3
 * in the low 6 bits of bytes 0-3 (scales) and 4-7 (mins); sub-blocks 4-7 in the nibbles of bytes
 * 8-11 (scale low, min high) with their top two bits in the top bits of bytes 0-3 (scales) and
 * 4-7 (mins). */
static inline void k_scale_min(const uint8_t *s, int j, int *sc, int *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

static void dequant_q4_k(const uint8_t *b, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, b += 144) {
        const float d = half_at(b), dmin = half_at(b + 2);
        const uint8_t *scales = b + 4, *qs = b + 16;
        for (int chunk = 0; chunk < 4; chunk++, qs += 32, y += 64) {
            int sc0, m0, sc1, m1;
            k_scale_min(scales, 2 * chunk, &sc0, &m0);
            k_scale_min(scales, 2 * chunk + 1, &sc1, &m1);
            const float d0 = d * (float)sc0, o0 = dmin * (float)m0;
            const float d1 = d * (float)sc1, o1 = dmin * (float)m1;
            for (int l = 0; l < 32; l++) {
                y[l] = d0 * (float)(qs[l] & 0xF) - o0;
                y[l + 32] = d1 * (float)(qs[l] >> 4) - o1;
            }
        }
    }
}

static void dequant_q5_k(const uint8_t *b, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, b += 176) {
        const float d = half_at(b), dmin = half_at(b + 2);
        const uint8_t *scales = b + 4, *qh = b + 16, *qs = b + 48;
        for (int chunk = 0; chunk < 4; chunk++, qs += 32, y += 64) {
            int sc0, m0, sc1, m1;
            k_scale_min(scales, 2 * chunk, &sc0, &m0);
            k_scale_min(scales, 2 * chunk + 1, &sc1, &m1);
            const float d0 = d * (float)sc0, o0 = dmin * (float)m0;
            const float d1 = d * (float)sc1, o1 = dmin * (float)m1;
            const int bit0 = 2 * chunk, bit1 = 2 * chunk + 1;
            for (int l = 0; l < 32; l++) {
                int lo = (qs[l] & 0xF) | (((qh[l] >> bit0) & 1) << 4);
                int hi = (qs[l] >> 4) | (((qh[l] >> bit1) & 1) << 4);
                y[l] = d0 * (float)lo - o0;
                y[l + 32] = d1 * (float)hi - o1;
            }
        }
    }
}

static void dequant_q6_k(const uint8_t *b, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, b += 210) {
        const float d = half_at(b + 208);
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, y += 128) {
            for (int l = 0; l < 32; l++) {
                int s = l / 16;
                int q0 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q1 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q2 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q3 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * (float)sc[s] * (float)q0;
                y[l + 32] = d * (float)sc[s + 2] * (float)q1;
                y[l + 64] = d * (float)sc[s + 4] * (float)q2;
                y[l + 96] = d * (float)sc[s + 6] * (float)q3;
            }
        }
    }
}

pa_status pa_gguf_dequant(uint32_t type, const void *src, size_t nbytes, float *dst, size_t n_elems,
                          pa_error *err)
{
    if (!pa_gguf_type_supported(type))
        return pa_error_set(err, PA_E_UNSUPPORTED, "gguf: cannot decode tensor type %s (%u)",
                            pa_gguf_type_name(type), type);
    uint64_t need;
    if (!pa_gguf_nbytes(type, n_elems, &need))
        return pa_error_set(err, PA_E_ARG, "gguf: %zu elements is not a whole number of %s blocks",
                            n_elems, pa_gguf_type_name(type));
    if (need != nbytes)
        return pa_error_set(err, PA_E_ARG, "gguf: %zu %s elements need %llu bytes, given %zu",
                            n_elems, pa_gguf_type_name(type), (unsigned long long)need, nbytes);
    if (n_elems == 0)
        return PA_OK;
    if (!src || !dst)
        return pa_error_set(err, PA_E_ARG, "gguf: no buffer to decode");
    size_t nb = n_elems / type_info[type].block_elems;
    switch (type) {
    case PA_GGML_F32:
        memcpy(dst, src, n_elems * sizeof(float));
        break;
    case PA_GGML_F16:
        pa_dtype_to_f32(PA_DT_F16, src, dst, n_elems);
        break;
    case PA_GGML_BF16:
        pa_dtype_to_f32(PA_DT_BF16, src, dst, n_elems);
        break;
    case PA_GGML_Q4_0:
        dequant_q4_0(src, dst, nb);
        break;
    case PA_GGML_Q4_1:
        dequant_q4_1(src, dst, nb);
        break;
    case PA_GGML_Q5_0:
        dequant_q5_0(src, dst, nb);
        break;
    case PA_GGML_Q5_1:
        dequant_q5_1(src, dst, nb);
        break;
    case PA_GGML_Q8_0:
        dequant_q8_0(src, dst, nb);
        break;
    case PA_GGML_Q4_K:
        dequant_q4_k(src, dst, nb);
        break;
    case PA_GGML_Q5_K:
        dequant_q5_k(src, dst, nb);
        break;
    case PA_GGML_Q6_K:
        dequant_q6_k(src, dst, nb);
        break;
    default:
        break; /* unreachable: pa_gguf_type_supported covers exactly the cases above */
    }
    return PA_OK;
}

/* ---------------------------------------------------------------- encoding */

#define HALF_MAX 65504.0f

/* f16 bits of x (clamped to the finite half range) and the value they decode to. */
static uint16_t to_half(float x, float *decoded)
{
    if (x > HALF_MAX)
        x = HALF_MAX;
    else if (x < -HALF_MAX)
        x = -HALF_MAX;
    else if (x != x)
        x = 0.0f;
    uint16_t h;
    pa_f32_to_f16(&x, &h, 1);
    *decoded = pa_f16_to_f32_one(h);
    return h;
}

static inline void put_half(uint8_t *p, uint16_t h)
{
    p[0] = (uint8_t)(h & 0xFF);
    p[1] = (uint8_t)(h >> 8);
}

/* Nearest integer to v inside [lo, hi] (ties to even); NaN goes to lo. Clamping first keeps the
 * float-to-int conversion in range; adding and removing 1.5 * 2^23 rounds without a libm call
 * (exact IEEE arithmetic, not folded without -ffast-math). Branch-free, so the loops vectorise. */
static inline int round_clamp(float v, int lo, int hi)
{
    float flo = (float)lo, fhi = (float)hi;
    v = v > flo ? v : flo; /* false for NaN */
    v = v < fhi ? v : fhi;
    return (int)((v + 12582912.0f) - 12582912.0f);
}

/* Squared error of x ≈ d * clamp(round(x / d)) over n values. */
static float sym_error(const float *x, int n, float d, int qmin, int qmax)
{
    float id = d != 0.0f ? 1.0f / d : 0.0f, e = 0.0f;
    for (int i = 0; i < n; i++) {
        float r = x[i] - d * (float)round_clamp(x[i] * id, qmin, qmax);
        e += r * r;
    }
    return e;
}

/* Scale d for x ≈ d * q with integer q in [qmin, qmax] (qmin < 0 < qmax): the element of largest
 * magnitude is tried at both ends of the range, stretched a little either way, then the best
 * candidate is refined by least squares. half_scale rounds every candidate to f16, as the block
 * stores it. Returns 0 for an all-zero (or non-finite) block. */
static float sym_scale(const float *x, int n, int qmin, int qmax, bool half_scale)
{
    float amax = 0.0f, vmax = 0.0f;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax) {
            amax = a;
            vmax = x[i];
        }
    }
    if (!(amax > 0.0f) || !isfinite(amax))
        return 0.0f;
    float best_d = 0.0f, best_e = INFINITY;
    for (int side = 0; side < 2; side++) {
        float end = side == 0 ? (float)qmin : (float)qmax;
        for (int k = -1; k <= 3; k++) {
            float t = end + (end < 0 ? 0.1f : -0.1f) * (float)k; /* shrink or stretch the end */
            float d = vmax / t, dec = d;
            if (half_scale)
                (void)to_half(d, &dec);
            float e = sym_error(x, n, dec, qmin, qmax);
            if (e < best_e) {
                best_e = e;
                best_d = dec;
            }
        }
    }
    if (best_d != 0.0f) {
        float id = 1.0f / best_d, sxq = 0.0f, sqq = 0.0f;
        for (int i = 0; i < n; i++) {
            float q = (float)round_clamp(x[i] * id, qmin, qmax);
            sxq += x[i] * q;
            sqq += q * q;
        }
        if (sqq > 0.0f) {
            float d = sxq / sqq, dec = d;
            if (half_scale)
                (void)to_half(d, &dec);
            if (sym_error(x, n, dec, qmin, qmax) < best_e)
                best_d = dec;
        }
    }
    return best_d;
}

static void quant_q8_0(const float *x, uint8_t *b, size_t nb)
{
    for (size_t i = 0; i < nb; i++, x += 32, b += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++)
            if (fabsf(x[j]) > amax)
                amax = fabsf(x[j]);
        float d = 0.0f;
        uint16_t h = isfinite(amax) ? to_half(amax / 127.0f, &d) : 0;
        put_half(b, h);
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < 32; j++)
            b[2 + j] = (uint8_t)(int8_t)round_clamp(x[j] * id, -127, 127);
    }
}

static void quant_q4_0(const float *x, uint8_t *b, size_t nb)
{
    for (size_t i = 0; i < nb; i++, x += 32, b += 18) {
        float d = sym_scale(x, 32, -8, 7, true), dec;
        put_half(b, to_half(d, &dec));
        float id = dec != 0.0f ? 1.0f / dec : 0.0f;
        for (int j = 0; j < 16; j++) {
            int lo = round_clamp(x[j] * id, -8, 7) + 8;
            int hi = round_clamp(x[j + 16] * id, -8, 7) + 8;
            b[2 + j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

/* Scale s >= 0 and min m >= 0 for x ≈ s * q - m with q in [0, 15]: candidate step sizes over the
 * block's range, each refined by a least-squares fit of s and the offset (kept <= 0, as the
 * format stores the min unsigned and subtracts it). */
static void asym_scale_min(const float *x, int n, float *scale, float *min)
{
    float lo = 0.0f, hi = x[0];
    for (int i = 0; i < n; i++) {
        if (x[i] < lo)
            lo = x[i];
        if (x[i] > hi)
            hi = x[i];
    }
    *scale = 0.0f;
    *min = -lo;
    if (!(hi > lo) || !isfinite(hi - lo))
        return;
    float best_e = INFINITY;
    for (int k = -2; k <= 2; k++) {
        float iscale = (15.0f + 0.1f * (float)k) / (hi - lo);
        float sx = 0, sq = 0, sqq = 0, sxq = 0;
        int q[32];
        for (int i = 0; i < n; i++) {
            q[i] = round_clamp((x[i] - lo) * iscale, 0, 15);
            sx += x[i];
            sq += (float)q[i];
            sqq += (float)(q[i] * q[i]);
            sxq += x[i] * (float)q[i];
        }
        float det = (float)n * sqq - sq * sq, s, off;
        if (det > 0.0f) {
            s = ((float)n * sxq - sx * sq) / det;
            off = (sx - s * sq) / (float)n;
        } else {
            s = 0.0f;
            off = sx / (float)n;
        }
        if (off > 0.0f) {
            off = 0.0f;
            s = sqq > 0.0f ? sxq / sqq : 0.0f;
        }
        if (!(s > 0.0f))
            continue;
        float e = 0.0f, is = 1.0f / s;
        for (int i = 0; i < n; i++) {
            float r = x[i] - (s * (float)round_clamp((x[i] - off) * is, 0, 15) + off);
            e += r * r;
        }
        if (e < best_e) {
            best_e = e;
            *scale = s;
            *min = -off;
        }
    }
}

static void quant_q4_k(const float *x, uint8_t *b, size_t nb)
{
    for (size_t i = 0; i < nb; i++, x += 256, b += 144) {
        float sub_scale[8], sub_min[8], max_scale = 0.0f, max_min = 0.0f;
        for (int j = 0; j < 8; j++) {
            asym_scale_min(x + 32 * j, 32, &sub_scale[j], &sub_min[j]);
            if (sub_scale[j] > max_scale)
                max_scale = sub_scale[j];
            if (sub_min[j] > max_min)
                max_min = sub_min[j];
        }
        float d, dmin;
        put_half(b, to_half(max_scale / 63.0f, &d));
        put_half(b + 2, to_half(max_min / 63.0f, &dmin));
        uint8_t *scales = b + 4, *qs = b + 16;
        memset(scales, 0, 12);
        int sc[8], mn[8];
        for (int j = 0; j < 8; j++) {
            sc[j] = d > 0.0f ? round_clamp(sub_scale[j] / d, 0, 63) : 0;
            mn[j] = dmin > 0.0f ? round_clamp(sub_min[j] / dmin, 0, 63) : 0;
            if (j < 4) {
                scales[j] |= (uint8_t)sc[j];
                scales[j + 4] |= (uint8_t)mn[j];
            } else {
                scales[j + 4] = (uint8_t)((sc[j] & 0xF) | ((mn[j] & 0xF) << 4));
                scales[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
                scales[j] |= (uint8_t)((mn[j] >> 4) << 6);
            }
        }
        uint8_t q[256];
        for (int j = 0; j < 8; j++) {
            float step = d * (float)sc[j], off = dmin * (float)mn[j];
            float istep = step > 0.0f ? 1.0f / step : 0.0f;
            for (int l = 0; l < 32; l++)
                q[32 * j + l] = (uint8_t)round_clamp((x[32 * j + l] + off) * istep, 0, 15);
        }
        for (int chunk = 0; chunk < 4; chunk++)
            for (int l = 0; l < 32; l++)
                qs[32 * chunk + l] = (uint8_t)(q[64 * chunk + l] | (q[64 * chunk + 32 + l] << 4));
    }
}

static void quant_q6_k(const float *x, uint8_t *b, size_t nb)
{
    for (size_t i = 0; i < nb; i++, x += 256, b += 210) {
        float sub[16], vmax = 0.0f;
        for (int j = 0; j < 16; j++) {
            sub[j] = sym_scale(x + 16 * j, 16, -32, 31, false);
            if (fabsf(sub[j]) > fabsf(vmax))
                vmax = sub[j];
        }
        float d;
        put_half(b + 208, to_half(vmax / -128.0f, &d));
        int8_t *sc = (int8_t *)(b + 192);
        uint8_t level[256];
        for (int j = 0; j < 16; j++) {
            sc[j] = (int8_t)(d != 0.0f ? round_clamp(sub[j] / d, -128, 127) : 0);
            float step = d * (float)sc[j];
            float istep = step != 0.0f ? 1.0f / step : 0.0f;
            for (int l = 0; l < 16; l++)
                level[16 * j + l] = (uint8_t)(round_clamp(x[16 * j + l] * istep, -32, 31) + 32);
        }
        uint8_t *ql = b, *qh = b + 128;
        for (int half = 0; half < 2; half++, ql += 64, qh += 32) {
            const uint8_t *lv = level + 128 * half;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((lv[l] & 0xF) | ((lv[l + 64] & 0xF) << 4));
                ql[l + 32] = (uint8_t)((lv[l + 32] & 0xF) | ((lv[l + 96] & 0xF) << 4));
                qh[l] = (uint8_t)((lv[l] >> 4) | ((lv[l + 32] >> 4) << 2) |
                                  ((lv[l + 64] >> 4) << 4) | ((lv[l + 96] >> 4) << 6));
            }
        }
    }
}

size_t pa_gguf_quantize(uint32_t type, const float *src, size_t n, void *dst, size_t cap)
{
    switch (type) {
    case PA_GGML_F32:
    case PA_GGML_F16:
    case PA_GGML_BF16:
    case PA_GGML_Q8_0:
    case PA_GGML_Q4_0:
    case PA_GGML_Q4_K:
    case PA_GGML_Q6_K:
        break;
    default:
        return 0;
    }
    uint64_t need;
    if (n == 0 || !src || !dst || !pa_gguf_nbytes(type, n, &need) || need > cap)
        return 0;
    size_t nb = n / type_info[type].block_elems;
    uint8_t *out = dst;
    switch (type) {
    case PA_GGML_F32:
        memcpy(out, src, n * sizeof(float));
        break;
    case PA_GGML_F16:
    case PA_GGML_BF16:
        /* dst need not be 2-byte aligned: encode through a small aligned buffer */
        for (size_t at = 0; at < n;) {
            uint16_t tmp[256];
            size_t k = n - at < 256 ? n - at : 256;
            if (type == PA_GGML_F16)
                pa_f32_to_f16(src + at, tmp, k);
            else
                pa_f32_to_bf16(src + at, tmp, k);
            memcpy(out + 2 * at, tmp, 2 * k);
            at += k;
        }
        break;
    case PA_GGML_Q8_0:
        quant_q8_0(src, out, nb);
        break;
    case PA_GGML_Q4_0:
        quant_q4_0(src, out, nb);
        break;
    case PA_GGML_Q4_K:
        quant_q4_k(src, out, nb);
        break;
    case PA_GGML_Q6_K:
        quant_q6_k(src, out, nb);
        break;
    default:
        return 0;
    }
    return (size_t)need;
}
