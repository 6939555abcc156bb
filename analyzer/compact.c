/* The compact form of a fingerprint: what comparing needs, small enough to store per model.
 *
 * The weights pass sketches at the PA_SK_* sizes (fp.h). Compacting keeps, of each matrix, 64
 * column sums, 64 row sums, an 8 x 16 block and l2 (no other moment of a matrix is compared), of
 * each 1-D tensor 64 entries, of each embedding anchor row 32 of its 64 sampled columns, all
 * picked evenly from the full sketch. It rounds every vector to a grid with a power-of-two step:
 * 12 bits for the blocks (the distance between a model and its fine-tune, a few hundredths,
 * must stay well above the rounding: at 8 bits a soup of two fine-tunes no longer lay between
 * them), 8 bits for the rest, which only enter correlations. Moments become floats, vocabulary
 * hashes keep their high 32 bits. A 7B layout (291 tensors, vocabulary 32,000) then stores in
 * about 120 KB (fpbin.c), against about 900 KB of JSON at full size.
 *
 * Every fingerprint is compacted where it is made (fingerprint.c) and where it is read
 * (fpjson.c, fpbin.c), so a fresh fingerprint and one read back from the store or a file are
 * the same numbers, and a comparison gives one answer whichever path it took. Compacting a
 * compact fingerprint changes nothing; the grids are chosen so that this holds bit for bit.
 */
#include "fp.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ vectors on a grid */

/* The largest exponent whose levels stay finite: levels x 2^e < 2^128. */
int pa_q_exponent_max(int levels)
{
    int bits = 0;
    while ((1 << (bits + 1)) <= levels)
        bits++;
    return 127 - bits; /* 127: 121, 2047: 117 */
}

int pa_q_exponent(const float *v, uint32_t n, int levels)
{
    /* an infinity is kept as the largest finite value of its sign, a NaN as 0 */
    float m = 0;
    for (uint32_t i = 0; i < n; i++)
        if (isfinite(v[i]))
            m = fabsf(v[i]) > m ? fabsf(v[i]) : m;
    if (!(m >= 0x1p-100f))
        return PA_Q_ZERO;
    /* the least e with m / 2^e <= levels: m/levels = f 2^x, f in [0.5, 1) */
    int x;
    float f = frexpf(m / (float)levels, &x);
    int e = f == 0.5f ? x - 1 : x;
    while (ldexpf(m, -e) > (float)levels) /* m/levels rounded down */
        e++;
    while (e > -127 && ldexpf(m, -(e - 1)) <= (float)levels) /* ... or up */
        e--;
    /* values near FLT_MAX saturate at the top level rather than round to infinity */
    int top = pa_q_exponent_max(levels);
    return e < -127 ? -127 : e > top ? top : e;
}

/* Scaling by 2^k, k in [-127, 127], is one exact multiplication (2^k is a float): the same
 * result as ldexpf, without a library call per value. */
static float pow2f(int k)
{
    return ldexpf(1.0f, k);
}

void pa_q_encode(const float *v, uint32_t n, int e, int levels, int16_t *q)
{
    float top = (float)levels, s = e == PA_Q_ZERO ? 0 : pow2f(-e);
    for (uint32_t i = 0; i < n; i++) {
        if (e == PA_Q_ZERO || isnan(v[i])) {
            q[i] = 0;
            continue;
        }
        float x = isinf(v[i]) ? (v[i] > 0 ? top : -top) : nearbyintf(v[i] * s);
        q[i] = (int16_t)(x > top ? top : x < -top ? -top : x);
    }
}

void pa_q_decode(const int16_t *q, uint32_t n, int e, float *v)
{
    float s = e == PA_Q_ZERO ? 0 : pow2f(e);
    for (uint32_t i = 0; i < n; i++)
        v[i] = (float)q[i] * s;
}

static bool q_round(float *v, uint32_t n, int levels)
{
    if (!n)
        return true;
    int16_t *q = malloc(n * sizeof *q);
    if (!q)
        return false;
    int e = pa_q_exponent(v, n, levels);
    pa_q_encode(v, n, e, levels, q);
    pa_q_decode(q, n, e, v);
    free(q);
    return true;
}

static bool q8_round(float *v, uint32_t n)
{
    return q_round(v, n, PA_CK_LEVELS);
}

/* ------------------------------------------------------------------ subsampling */

/* Index into n entries of the k-th of K evenly chosen ones (the centre of the k-th part). */
static uint32_t pick(uint32_t k, uint32_t K, uint32_t n)
{
    return (uint32_t)(((uint64_t)2 * k + 1) * n / ((uint64_t)2 * K));
}

static bool vec_keep(pa_vec *v, uint32_t keep)
{
    if (v->n <= keep)
        return true;
    float *w = malloc(keep * sizeof *w);
    if (!w)
        return false;
    for (uint32_t k = 0; k < keep; k++)
        w[k] = v->v[pick(k, keep, v->n)];
    free(v->v);
    v->v = w;
    v->n = keep;
    return true;
}

static bool block_keep(pa_tensor_fp *t)
{
    uint32_t r = t->block_r, c = t->block_c;
    if (!t->block.n || (uint64_t)r * c != t->block.n)
        return true; /* the readers refuse a mismatch; nothing to pick from */
    uint32_t r2 = r < PA_CK_BLOCK_R ? r : PA_CK_BLOCK_R, c2 = c < PA_CK_BLOCK_C ? c : PA_CK_BLOCK_C;
    if (r2 == r && c2 == c)
        return true;
    float *w = malloc((size_t)r2 * c2 * sizeof *w);
    if (!w)
        return false;
    for (uint32_t i = 0; i < r2; i++)
        for (uint32_t j = 0; j < c2; j++)
            w[(size_t)i * c2 + j] = t->block.v[(size_t)pick(i, r2, r) * c + pick(j, c2, c)];
    free(t->block.v);
    t->block.v = w;
    t->block.n = r2 * c2;
    t->block_r = r2;
    t->block_c = c2;
    return true;
}

/* ------------------------------------------------------------------ fake quantisation */

/* Do the sampled values of one matrix row lie on a grid of at most 255 levels (k x step,
 * |k| <= 127)? A value may be off its level by ~0.1 step after the f16 of a JSON fingerprint;
 * independent real values land within 0.2 of a level with probability 0.4 each, so 32 of them
 * all do with probability ~1e-13 per step tried. Run on the full sketch, before compacting puts
 * every vector on a grid of its own. */
static bool row_on_grid(const float *v, uint32_t n)
{
    double m = 0;
    for (uint32_t i = 0; i < n; i++)
        m = fabs(v[i]) > m ? fabs(v[i]) : m;
    if (!(m > 0) || n < 8)
        return false;
    for (int k = 1; k <= 127; k++) {
        double step = m / k;
        bool ok = true;
        for (uint32_t i = 0; i < n && ok; i++) {
            double q = v[i] / step;
            ok = fabs(q - nearbyint(q)) <= 0.2;
        }
        if (ok)
            return true;
    }
    return false;
}

/* Most matrices hold int8-grid values written back as floats (a fake-quantised export). */
static bool on_grid(const pa_fingerprint *fp)
{
    size_t matrices = 0, gridded = 0;
    for (size_t i = 0; i < fp->n_tensors; i++) {
        const pa_tensor_fp *t = &fp->tensors[i];
        if (t->ndim < 2 || !t->block.v || t->block_c < 8 ||
            (uint64_t)t->block_r * t->block_c > t->block.n)
            continue;
        size_t rows = 0, on = 0;
        for (uint32_t r = 0; r < t->block_r; r++) {
            const float *row = t->block.v + (size_t)r * t->block_c;
            bool nonzero = false;
            for (uint32_t c = 0; c < t->block_c; c++)
                nonzero |= row[c] != 0;
            if (!nonzero)
                continue;
            rows++;
            on += row_on_grid(row, t->block_c);
        }
        if (rows == 0)
            continue;
        matrices++;
        gridded += 4 * on >= 3 * rows;
    }
    return matrices > 0 && 2 * gridded >= matrices;
}

/* ------------------------------------------------------------------ the compact form */

/* A moment as a float: non-finite values as 0 (JSON has none), the rest clamped. */
static double as_float(double v)
{
    if (!isfinite(v))
        return 0;
    return v > FLT_MAX ? FLT_MAX : v < -FLT_MAX ? -FLT_MAX : (double)(float)v;
}

/* Keeps PA_CK_ANCHOR_C of each anchor row's sampled columns. */
static void anchor_cols_keep(pa_embed_fp *e)
{
    uint32_t c = e->anchor_c, c2 = c < PA_CK_ANCHOR_C ? c : PA_CK_ANCHOR_C;
    if (!e->anchor_rows || c2 == c)
        return;
    for (uint32_t i = 0; i < e->n_anchors; i++) /* in place: row i moves down, never up */
        for (uint32_t j = 0; j < c2; j++)
            e->anchor_rows[(size_t)i * c2 + j] = e->anchor_rows[(size_t)i * c + pick(j, c2, c)];
    e->anchor_c = c2;
}

static bool compact_embed(pa_embed_fp *e)
{
    if (!e->present)
        return true;
    anchor_cols_keep(e);
    if (!e->anchor_c || !e->anchor_rows || !e->anchor_cos)
        e->n_anchors = 0; /* an embedding of width 0 has rows but no anchor to compare */
    e->norm_min = as_float(e->norm_min);
    e->norm_max = as_float(e->norm_max);
    for (int i = 0; i < PA_SK_END_BINS; i++) {
        double h = isfinite(e->end_hist[i]) && fabs(e->end_hist[i]) < 1e9 ? e->end_hist[i] : 0;
        e->end_hist[i] = (float)(round(h * 1e6) / 1e6);
    }
    uint32_t k = e->n_anchors;
    if (e->anchor_cos && k) {
        /* the upper triangle (with the diagonal) on one grid, mirrored */
        size_t nt = (size_t)k * (k + 1) / 2, p = 0;
        float *tri = malloc(nt * sizeof *tri);
        if (!tri)
            return false;
        for (uint32_t i = 0; i < k; i++)
            for (uint32_t j = i; j < k; j++)
                tri[p++] = e->anchor_cos[(size_t)i * k + j];
        bool ok = q8_round(tri, (uint32_t)nt);
        p = 0;
        for (uint32_t i = 0; ok && i < k; i++)
            for (uint32_t j = i; j < k; j++, p++)
                e->anchor_cos[(size_t)i * k + j] = e->anchor_cos[(size_t)j * k + i] = tri[p];
        free(tri);
        if (!ok)
            return false;
    }
    return !e->anchor_rows || q8_round(e->anchor_rows, k * e->anchor_c);
}

static bool compact_probe(pa_probe_fp *p)
{
    size_t mm = (size_t)p->m * p->m;
    for (uint32_t l = 0; p->prod && l < p->n_layers; l++)
        for (int t = 0; t < PA_PROBE_TERMS; t++) {
            float *x = p->prod + ((size_t)l * PA_PROBE_TERMS + t) * mm;
            if (!(p->have[l] & (1u << t)))
                memset(x, 0, mm * sizeof *x);
            else if (!q8_round(x, (uint32_t)mm))
                return false;
        }
    return true;
}

/* The vocabulary sketch keeps the high 32 bits of each hash: enough to tell 4096 tokens apart,
 * and the sorted values then differ by about 2^32 / vocabulary size (3 bytes stored). */
static void compact_vocab(pa_fingerprint *fp)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < fp->vocab_k; i++) {
        uint64_t h = fp->vocab_hashes[i] & 0xffffffff00000000ull;
        if (k == 0 || h != fp->vocab_hashes[k - 1])
            fp->vocab_hashes[k++] = h;
    }
    fp->vocab_k = k;
    if (fp->vocab_n < k)
        fp->vocab_n = k;
}

bool pa_fp_compact(pa_fingerprint *fp)
{
    if (!fp->compact)
        fp->grid = on_grid(fp);
    compact_vocab(fp);
    for (size_t i = 0; i < fp->n_tensors; i++) {
        pa_tensor_fp *t = &fp->tensors[i];
        if (t->layer < -1 || t->layer >= (1 << 20))
            t->layer = -1; /* as the readers take it: no block */
        bool matrix = t->ndim >= 2; /* of a matrix's moments, comparing uses l2 alone */
        t->mean = matrix ? 0 : as_float(t->mean);
        t->std = matrix ? 0 : as_float(t->std);
        t->l2 = as_float(t->l2);
        t->min = matrix ? 0 : as_float(t->min);
        t->max = matrix ? 0 : as_float(t->max);
        if (!vec_keep(&t->colsum, PA_CK_MARGINAL) || !vec_keep(&t->rowsum, PA_CK_MARGINAL) ||
            !block_keep(t) || !vec_keep(&t->sample, PA_CK_NORMVEC) ||
            !q8_round(t->colsum.v, t->colsum.n) || !q8_round(t->rowsum.v, t->rowsum.n) ||
            !q_round(t->block.v, t->block.n, PA_CK_BLOCK_LEVELS) ||
            !q8_round(t->sample.v, t->sample.n))
            return false;
    }
    if (!compact_embed(&fp->embed) || !compact_probe(&fp->probe))
        return false;
    fp->compact = true;
    return true;
}

/* ------------------------------------------------------------------ memory */

static size_t str_mem(const char *s)
{
    return s ? strlen(s) + 1 + 16 : 0; /* 16: the allocator's overhead, roughly */
}

static size_t vec_mem(const pa_vec *v)
{
    return v->v ? v->n * sizeof *v->v + 16 : 0;
}

size_t pa_fp_memory(const pa_fingerprint *fp)
{
    size_t m = sizeof *fp + str_mem(fp->path);
    m += fp->n_files * sizeof *fp->files;
    for (size_t i = 0; i < fp->n_files; i++)
        m += str_mem(fp->files[i].name);
    if (fp->has_mfi)
        m += str_mem(fp->mfi.model_type) + str_mem(fp->mfi.architectures) +
             str_mem(fp->mfi.hidden_act) + str_mem(fp->mfi.rope_scaling);
    m += (size_t)fp->vocab_k * sizeof *fp->vocab_hashes;
    m += fp->n_tensors * sizeof *fp->tensors;
    for (size_t i = 0; i < fp->n_tensors; i++) {
        const pa_tensor_fp *t = &fp->tensors[i];
        m += str_mem(t->name) + str_mem(t->role) + vec_mem(&t->colsum) + vec_mem(&t->rowsum) +
             vec_mem(&t->block) + vec_mem(&t->sample);
    }
    const pa_embed_fp *e = &fp->embed;
    if (e->present)
        m += str_mem(e->tensor) + ((size_t)e->n_anchors * e->n_anchors + 1) * sizeof(float) +
             ((size_t)e->n_anchors * e->anchor_c + 1) * sizeof(float);
    const pa_probe_fp *p = &fp->probe;
    if (p->prod)
        m += (size_t)p->n_layers * (sizeof *p->layer + sizeof *p->have +
                                    PA_PROBE_TERMS * (size_t)p->m * p->m * sizeof *p->prod);
    return m;
}
