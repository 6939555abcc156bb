/* Element types of safetensors and their decoding to float. The decoders are branch-free loops the
 * compiler vectorises; they are on the fingerprint's hot path. */
#include "provfs/analyzer.h"
#include "hot.h"

#include <math.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
    bool decodable;
} dtype_info[PA_DT_COUNT] = {
    [PA_DT_F32] = {"F32", 4, true},         [PA_DT_F16] = {"F16", 2, true},
    [PA_DT_BF16] = {"BF16", 2, true},       [PA_DT_F64] = {"F64", 8, true},
    [PA_DT_I8] = {"I8", 1, true},           [PA_DT_U8] = {"U8", 1, true},
    [PA_DT_I16] = {"I16", 2, true},         [PA_DT_I32] = {"I32", 4, true},
    [PA_DT_F8_E4M3] = {"F8_E4M3", 1, true}, [PA_DT_F8_E5M2] = {"F8_E5M2", 1, true},
    [PA_DT_I64] = {"I64", 8, false},        [PA_DT_U16] = {"U16", 2, false},
    [PA_DT_U32] = {"U32", 4, false},        [PA_DT_U64] = {"U64", 8, false},
    [PA_DT_BOOL] = {"BOOL", 1, false},
};

const char *pa_dtype_name(pa_dtype dtype)
{
    return (unsigned)dtype < PA_DT_COUNT ? dtype_info[dtype].name : "?";
}

bool pa_dtype_parse(const char *name, pa_dtype *out)
{
    for (int i = 0; i < PA_DT_COUNT; i++)
        if (strcmp(name, dtype_info[i].name) == 0) {
            *out = (pa_dtype)i;
            return true;
        }
    return false;
}

size_t pa_dtype_size(pa_dtype dtype)
{
    return (unsigned)dtype < PA_DT_COUNT ? dtype_info[dtype].size : 0;
}

bool pa_dtype_decodable(pa_dtype dtype)
{
    return (unsigned)dtype < PA_DT_COUNT && dtype_info[dtype].decodable;
}

static inline float bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint32_t f32_to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* IEEE half to float without tables: handles subnormals, Inf and NaN. */
float pa_f16_to_f32_one(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t mant = h & 0x3FF;
    if (exp == 0x1F)
        return bits_to_f32(sign | 0x7F800000u | (mant << 13));
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24 */
        float v = (float)mant * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return bits_to_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

/* 8-bit floats (OCP FP8): E4M3 (bias 7, no Inf, NaN = S.1111.111) and E5M2 (bias 15, IEEE-like). */
static float f8e4m3_to_f32(uint8_t b)
{
    uint32_t sign = b >> 7, exp = (b >> 3) & 0xF, mant = b & 7;
    float v;
    if (exp == 0xF && mant == 7)
        return NAN;
    if (exp == 0)
        v = (float)mant * 0.001953125f; /* mant/8 * 2^-6 */
    else
        v = ldexpf(1.0f + (float)mant / 8.0f, (int)exp - 7);
    return sign ? -v : v;
}

static float f8e5m2_to_f32(uint8_t b)
{
    return pa_f16_to_f32_one((uint16_t)(b << 8));
}

PA_CLONES void pa_dtype_to_f32(pa_dtype dtype,
                                                                     const void *src, float *dst,
                                                                     size_t n)
{
    const uint8_t *s = src;
    switch (dtype) {
    case PA_DT_F32:
        memcpy(dst, s, n * 4);
        break;
    case PA_DT_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, s + 2 * i, 2);
            dst[i] = bits_to_f32((uint32_t)v << 16);
        }
        break;
    case PA_DT_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, s + 2 * i, 2);
            dst[i] = pa_f16_to_f32_one(v);
        }
        break;
    case PA_DT_F64:
        for (size_t i = 0; i < n; i++) {
            double v;
            memcpy(&v, s + 8 * i, 8);
            dst[i] = (float)v;
        }
        break;
    case PA_DT_I8:
        for (size_t i = 0; i < n; i++)
            dst[i] = (float)(int8_t)s[i];
        break;
    case PA_DT_U8:
        for (size_t i = 0; i < n; i++)
            dst[i] = (float)s[i];
        break;
    case PA_DT_I16:
        for (size_t i = 0; i < n; i++) {
            int16_t v;
            memcpy(&v, s + 2 * i, 2);
            dst[i] = (float)v;
        }
        break;
    case PA_DT_I32:
        for (size_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, s + 4 * i, 4);
            dst[i] = (float)v;
        }
        break;
    case PA_DT_F8_E4M3:
        for (size_t i = 0; i < n; i++)
            dst[i] = f8e4m3_to_f32(s[i]);
        break;
    case PA_DT_F8_E5M2:
        for (size_t i = 0; i < n; i++)
            dst[i] = f8e5m2_to_f32(s[i]);
        break;
    default:
        /* Not decodable: callers check pa_dtype_decodable first; never guess values. */
        for (size_t i = 0; i < n; i++)
            dst[i] = NAN;
        break;
    }
}

void pa_f32_to_bf16(const float *src, uint16_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u = f32_to_bits(src[i]);
        if ((u & 0x7FFFFFFFu) > 0x7F800000u) {
            dst[i] = (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
            continue;
        }
        u += 0x7FFFu + ((u >> 16) & 1u); /* round to nearest even */
        dst[i] = (uint16_t)(u >> 16);
    }
}

void pa_f32_to_f16(const float *src, uint16_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u = f32_to_bits(src[i]);
        uint32_t sign = (u >> 16) & 0x8000u;
        uint32_t absu = u & 0x7FFFFFFFu;
        uint16_t h;
        if (absu > 0x7F800000u) {
            h = (uint16_t)(sign | 0x7E00u);
        } else if (absu >= 0x477FF000u) { /* rounds to >= 65520: overflow to Inf */
            h = (uint16_t)(sign | 0x7C00u);
        } else if (absu < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
            float f = bits_to_f32(absu);
            /* scale so that one half-subnormal ulp (2^-24) becomes 1, then round to even */
            float scaled = f * 16777216.0f;
            h = (uint16_t)(sign | (uint32_t)nearbyintf(scaled));
        } else {
            uint32_t mant_odd = (absu >> 13) & 1u;
            absu += 0xC8000FFFu + mant_odd; /* rebias exponent (-112 << 23) and round to even */
            h = (uint16_t)(sign | (absu >> 13));
        }
        dst[i] = h;
    }
}
