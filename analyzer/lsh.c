/* Locality-sensitive signatures (lsh.h).
 *
 * Which vectors, and why:
 *  - Per-matrix block sketches (pa_tensor_fp.block: 16 x 32 values at evenly spaced rows and
 *    columns), one vector per matrix of up to PA_LSH_MAX_LAYERS blocks (evenly spaced, the last
 *    included) and every matrix outside the blocks, keyed by canonical role and block number so
 *    a safetensors model, its GGUF conversion and a renamed copy key the same matrix alike. A
 *    fine-tune, a dtype conversion, int8/k-quant quantisation or added noise moves each value a
 *    little: the block keeps its direction. Centred first, and SimHash is blind to scale, so a
 *    uniformly rescaled matrix keeps its bits. Not invariant to permuting or rotating the hidden
 *    units (the sampled entries are other entries then), nor to pruning a matrix's rows.
 *  - Embedding anchor rows (pa_embed_fp.anchor_rows: the rows of tokens chosen by their
 *    token-string hash, at sampled columns): the same tokens whatever the vocabulary's order or
 *    size, so a vocab-extended or re-ordered model keeps them. Not rotation-invariant.
 *  - Embedding anchor cosines (pa_embed_fp.anchor_cos, the upper triangle): the angles between
 *    the anchor tokens' embeddings do not change when the hidden space is permuted or rotated
 *    (every row is multiplied by one orthogonal matrix), so rotated, permuted and
 *    function-preserving re-parametrised models, and a fine-tune of one, keep these bands.
 *  - Probe products (pa_probe_fp: per sampled block, q.k, v.o and up.down products over the
 *    probe tokens' embeddings), one vector per block: invariant to rotations and permutations of
 *    the hidden, head and MLP units and to the scalings those products cancel (signals.c).
 * The sign bits come from Rademacher projections (+-1 entries from a counter-based hash of a
 * fixed seed, the band number and the position), 64 per vector, cut into PA_LSH_BANDS bands. */
#include "lsh.h"
#include "fp.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LSH_SEED 0x70726f7666736c31ull /* fixed: part of PA_LSH_VERSION */

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint32_t str_hash24(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return (h ^ (h >> 24)) & 0xffffffu;
}

size_t pa_lsh_vector_bands(int source, uint32_t index, const float *v, size_t n,
                           pa_lsh_band *out)
{
    if (!v || n < 2)
        return 0;
    double mean = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i]))
            return 0;
        mean += v[i];
    }
    mean /= (double)n;
    /* acc[p] = sum_i s_ip x_i with s_ip = +-1 from bit p of the position's hash: 2 x (the sum
     * over positions with the bit set) - (the sum over all). The first is gathered per hash byte:
     * tab[k][v] sums x_i over positions whose byte k of the hash is v. */
    static_assert(PA_LSH_BANDS * PA_LSH_BAND_BITS == 64, "64 projections, one hash per position");
    double tab[8][256], total = 0, norm = 0;
    memset(tab, 0, sizeof tab);
    int64_t base = (int64_t)source << 56 | (int64_t)(index & 0xffffffffffull) << 8;
    uint64_t seed = mix64(LSH_SEED ^ (uint64_t)base);
    for (size_t i = 0; i < n; i++) {
        double x = v[i] - mean;
        norm += x * x;
        total += x;
        uint64_t signs = mix64(seed ^ mix64(i));
        for (int k = 0; k < 8; k++)
            tab[k][signs >> (8 * k) & 0xff] += x;
    }
    if (!(norm > 0))
        return 0;
    double acc[64] = {0};
    for (int k = 0; k < 8; k++)
        for (int val = 1; val < 256; val++)
            for (int bit = 0; bit < 8; bit++)
                if (val >> bit & 1)
                    acc[8 * k + bit] += tab[k][val];
    for (int p = 0; p < 64; p++)
        acc[p] = 2 * acc[p] - total;
    for (int b = 0; b < PA_LSH_BANDS; b++) {
        int64_t value = 0;
        for (int k = 0; k < PA_LSH_BAND_BITS; k++)
            value |= (int64_t)(acc[b * PA_LSH_BAND_BITS + k] > 0) << k;
        out[b] = (pa_lsh_band){.no = base | b, .value = value};
    }
    return PA_LSH_BANDS;
}

static int i64_cmp(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return a < b ? -1 : a > b;
}

typedef struct sigbuf {
    pa_lsh_sig *s;
    size_t cap;
    bool nomem;
} sigbuf;

static void add_vector(sigbuf *b, int source, uint32_t index, const float *v, size_t n)
{
    if (b->nomem)
        return;
    if (b->s->n_bands + PA_LSH_BANDS > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        pa_lsh_band *g = realloc(b->s->bands, cap * sizeof *g);
        if (!g) {
            b->nomem = true;
            return;
        }
        b->s->bands = g;
        b->cap = cap;
    }
    b->s->n_bands += pa_lsh_vector_bands(source, index, v, n, b->s->bands + b->s->n_bands);
}

/* Is block `layer` one of the up to PA_LSH_MAX_LAYERS evenly spaced ones of n (the last too)? */
static bool layer_selected(int32_t layer, uint32_t n)
{
    if (layer < 0 || n <= PA_LSH_MAX_LAYERS)
        return true;
    uint32_t step = (n + PA_LSH_MAX_LAYERS - 2) / (PA_LSH_MAX_LAYERS - 1);
    return (uint32_t)layer % step == 0 || (uint32_t)layer == n - 1;
}

int pa_lsh_signature(const pa_fingerprint *fp, pa_lsh_sig *out)
{
    memset(out, 0, sizeof *out);
    if (!fp->has_weights)
        return 0;
    sigbuf b = {.s = out};
    out->hashes = malloc((fp->n_tensors ? fp->n_tensors : 1) * sizeof *out->hashes);
    if (!out->hashes)
        return -1;
    for (size_t i = 0; i < fp->n_tensors; i++) {
        const pa_tensor_fp *t = &fp->tensors[i];
        if (t->rows > 1 && t->cols > 1 && t->numel >= PA_LSH_MIN_NUMEL) {
            uint64_t h = 0;
            for (int k = 0; k < 8; k++)
                h = h << 8 | t->sha[k];
            if (h)
                out->hashes[out->n_hashes++] = (int64_t)h;
        }
        if (t->block.n >= 2 && t->role && layer_selected(t->layer, fp->n_layers)) {
            uint32_t idx = str_hash24(t->role) ^ ((uint32_t)(t->layer + 1) << 24);
            add_vector(&b, PA_LSH_SRC_TENSOR, idx, t->block.v, t->block.n);
        }
    }
    qsort(out->hashes, out->n_hashes, sizeof *out->hashes, i64_cmp);
    size_t u = 0;
    for (size_t i = 0; i < out->n_hashes; i++)
        if (u == 0 || out->hashes[u - 1] != out->hashes[i])
            out->hashes[u++] = out->hashes[i];
    out->n_hashes = u;
    const pa_embed_fp *e = &fp->embed;
    if (e->present && e->n_anchors >= 2) {
        if (e->anchor_rows && e->anchor_c)
            add_vector(&b, PA_LSH_SRC_ANCHOR_ROWS, 0, e->anchor_rows,
                       (size_t)e->n_anchors * e->anchor_c);
        if (e->anchor_cos) {
            size_t na = e->n_anchors, m = na * (na - 1) / 2, k = 0;
            float *tri = malloc(m * sizeof *tri);
            if (!tri) {
                b.nomem = true;
            } else {
                for (size_t r = 0; r < na; r++)
                    for (size_t c = r + 1; c < na; c++)
                        tri[k++] = e->anchor_cos[r * na + c];
                add_vector(&b, PA_LSH_SRC_ANCHOR_COS, 0, tri, m);
                free(tri);
            }
        }
    }
    const pa_probe_fp *p = &fp->probe;
    size_t per = (size_t)PA_PROBE_TERMS * p->m * p->m;
    for (uint32_t l = 0; p->m >= 2 && p->prod && l < p->n_layers; l++) {
        if ((p->have[l] & ((1u << PA_PROBE_TERMS) - 1)) != (1u << PA_PROBE_TERMS) - 1)
            continue;
        add_vector(&b, PA_LSH_SRC_PROBE, (uint32_t)p->layer[l], p->prod + l * per, per);
    }
    if (b.nomem) {
        pa_lsh_sig_free(out);
        return -1;
    }
    return 0;
}

void pa_lsh_sig_free(pa_lsh_sig *sig)
{
    free(sig->bands);
    free(sig->hashes);
    memset(sig, 0, sizeof *sig);
}
