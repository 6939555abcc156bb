/* Per-signal similarities between two fingerprints.
 *
 * Two families live here:
 *  - the reference method's signals (MFI, TFV, VOA, EAS, NLF, LEP, END, WVC), computed as
 *    the reference method defines them so our numbers can be set beside the reference's;
 *  - our decisive weight evidence: WEA (weight element agreement of tensors aligned by role,
 *    with the layer and neuron alignment recovered) and anchor-row agreement (embedding rows of
 *    tokens that share a *string*, so vocabulary extension and rebuild keep them aligned).
 * score.c turns them into a verdict.
 */
#include "fp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double pa_pearson(const float *a, const float *b, size_t n)
{
    if (n < 3)
        return NAN;
    double ma = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        ma += a[i];
        mb += b[i];
    }
    ma /= (double)n;
    mb /= (double)n;
    double sab = 0, saa = 0, sbb = 0;
    for (size_t i = 0; i < n; i++) {
        double x = a[i] - ma, y = b[i] - mb;
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    if (saa <= 1e-30 || sbb <= 1e-30) {
        /* constant vectors: equal constants agree, otherwise nothing can be said */
        bool same = true;
        for (size_t i = 0; i < n && same; i++)
            same = a[i] == b[i];
        return same && saa <= 1e-30 && sbb <= 1e-30 ? 1.0 : NAN;
    }
    return sab / sqrt(saa * sbb);
}

double pa_cosine(const float *a, const float *b, size_t n)
{
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    if (aa <= 0 || bb <= 0)
        return NAN;
    return ab / sqrt(aa * bb);
}

static pa_signal sig(double v)
{
    pa_signal s;
    s.valid = isfinite(v);
    s.value = s.valid ? v : NAN;
    return s;
}

static double clamp01(double v)
{
    return v < 0 ? 0 : v > 1 ? 1 : v;
}

/* ------------------------------------------------------------------ tokenizer */

static double tfv_similarity(const pa_tfv *a, const pa_tfv *b)
{
    double s = 0;
    s += 0.10 * (strcmp(a->tokenizer_class, b->tokenizer_class) == 0);
    double mv = (double)(a->vocab_size > b->vocab_size ? a->vocab_size : b->vocab_size);
    s += mv > 0 ? 0.10 * (1.0 - fabs((double)(a->vocab_size - b->vocab_size)) / mv) : 0;
    s += 0.08 * (((a->bos_id == b->bos_id) + (a->eos_id == b->eos_id)) / 2.0);
    double ml = fmax(fmax(a->avg_token_length, b->avg_token_length), 1e-8);
    s += 0.07 * fmax(0, 1.0 - fabs(a->avg_token_length - b->avg_token_length) / ml);
    s += 0.05 * fmax(0, 1.0 - fabs(a->pct_whitespace_prefix - b->pct_whitespace_prefix));
    {
        double ab = 0, aa = 0, bb = 0;
        for (int i = 0; i < PA_SCRIPT_COUNT; i++) {
            ab += a->script[i] * b->script[i];
            aa += a->script[i] * a->script[i];
            bb += b->script[i] * b->script[i];
        }
        double nn = sqrt(aa) * sqrt(bb);
        s += nn > 1e-8 ? 0.10 * ab / nn : 0;
    }
    s += 0.05 * ((a->pct_byte_tokens > 0) == (b->pct_byte_tokens > 0));
    if (a->num_merges > 0 && b->num_merges > 0) {
        double mm = (double)(a->num_merges > b->num_merges ? a->num_merges : b->num_merges);
        s += 0.05 * (1.0 - fabs((double)(a->num_merges - b->num_merges)) / mm);
    } else if (a->num_merges == 0 && b->num_merges == 0) {
        s += 0.05;
    }
    /* the reference always hashes (SHA-256 of "" without merges): two merge-less tokenizers match */
    s += 0.15 * (strcmp(a->merge_rule_hash, b->merge_rule_hash) == 0);
    {
        int64_t ia[3] = {a->pad_id, a->unk_id, a->mask_id}, ib[3] = {b->pad_id, b->unk_id, b->mask_id};
        int match = 0, total = 0;
        for (int i = 0; i < 3; i++) {
            bool na = ia[i] == PA_NULL_INT, nb = ib[i] == PA_NULL_INT;
            if (!na && !nb) {
                total++;
                match += ia[i] == ib[i];
            } else if (na && nb) {
                total++;
                match++;
            }
        }
        s += 0.10 * (total ? (double)match / total : 0.5);
    }
    /* Full-merge identity. A record that counts merges but carries no hash of them (reference
     * entries imported from the MPK database) leaves this component unknown: it is left out and
     * the rest re-weighted, rather than counted as a mismatch. */
    bool unknown = (a->num_merges > 0 && !a->merges_hash[0]) || (b->num_merges > 0 && !b->merges_hash[0]);
    if (unknown)
        s /= 0.85;
    else if (a->merges_hash[0] && b->merges_hash[0])
        s += 0.15 * (strcmp(a->merges_hash, b->merges_hash) == 0);
    else if (!a->merges_hash[0] && !b->merges_hash[0])
        s += 0.15 * 0.5;
    return round(s * 10000) / 10000;
}

/* Jaccard of two bottom-k sketches (sorted ascending): exact when both hold whole vocabularies,
 * otherwise the standard bottom-k estimate over the k smallest hashes of the union. */
static double voa_similarity(const pa_fingerprint *a, const pa_fingerprint *b)
{
    if (!a->vocab_k || !b->vocab_k)
        return NAN;
    bool exact = a->vocab_k == a->vocab_n && b->vocab_k == b->vocab_n;
    uint32_t k = exact ? a->vocab_k + b->vocab_k : (a->vocab_k < b->vocab_k ? a->vocab_k : b->vocab_k);
    uint32_t i = 0, j = 0, seen = 0, both = 0;
    while (seen < k && (i < a->vocab_k || j < b->vocab_k)) {
        uint64_t x = i < a->vocab_k ? a->vocab_hashes[i] : UINT64_MAX;
        uint64_t y = j < b->vocab_k ? b->vocab_hashes[j] : UINT64_MAX;
        if (i < a->vocab_k && j < b->vocab_k && x == y) {
            both++;
            i++;
            j++;
        } else if (j >= b->vocab_k || (i < a->vocab_k && x < y)) {
            i++;
        } else {
            j++;
        }
        seen++;
    }
    return seen ? round((double)both / seen * 10000) / 10000 : NAN;
}

/* ------------------------------------------------------------------ embedding */

/* Indices of anchors present in both (matched by token-string hash). */
static uint32_t common_anchors(const pa_embed_fp *a, const pa_embed_fp *b, uint32_t *ia, uint32_t *ib)
{
    uint32_t m = 0;
    for (uint32_t i = 0; i < a->n_anchors; i++)
        for (uint32_t j = 0; j < b->n_anchors; j++)
            if (a->anchor_hash[i] == b->anchor_hash[j]) {
                ia[m] = i;
                ib[m] = j;
                m++;
                break;
            }
    return m;
}

/* EAS: Pearson of the anchors' cosine self-similarity (upper triangles), mapped to (r+1)/2.
 * Independent of hidden size, so it compares across widths too. */
static double eas_similarity(const pa_embed_fp *a, const pa_embed_fp *b)
{
    if (!a->present || !b->present || !a->anchor_cos || !b->anchor_cos)
        return NAN;
    uint32_t ia[PA_SK_ANCHORS], ib[PA_SK_ANCHORS];
    uint32_t m = common_anchors(a, b, ia, ib);
    if (m < 8)
        return NAN;
    size_t n = (size_t)m * (m - 1) / 2, k = 0;
    float *va = malloc(n * sizeof *va), *vb = malloc(n * sizeof *vb);
    double r = NAN;
    if (va && vb) {
        for (uint32_t i = 0; i < m; i++)
            for (uint32_t j = i + 1; j < m; j++) {
                va[k] = a->anchor_cos[(size_t)ia[i] * a->n_anchors + ia[j]];
                vb[k] = b->anchor_cos[(size_t)ib[i] * b->n_anchors + ib[j]];
                k++;
            }
        r = pa_pearson(va, vb, n);
    }
    free(va);
    free(vb);
    return isfinite(r) ? (r + 1) / 2 : NAN;
}

/* Anchor rows: element-wise agreement of the embedding rows of shared token strings, at the same
 * sampled columns. Needs the same width; near 0 for independent runs. */
static double anchor_row_agreement(const pa_embed_fp *a, const pa_embed_fp *b)
{
    if (!a->present || !b->present || a->cols != b->cols || a->anchor_c != b->anchor_c ||
        !a->anchor_rows || !b->anchor_rows)
        return NAN;
    uint32_t ia[PA_SK_ANCHORS], ib[PA_SK_ANCHORS];
    uint32_t m = common_anchors(a, b, ia, ib);
    if (m < 4)
        return NAN;
    uint32_t c = a->anchor_c;
    float *va = malloc((size_t)m * c * sizeof *va), *vb = malloc((size_t)m * c * sizeof *vb);
    double r = NAN;
    if (va && vb) {
        for (uint32_t i = 0; i < m; i++) {
            memcpy(va + (size_t)i * c, a->anchor_rows + (size_t)ia[i] * c, c * sizeof *va);
            memcpy(vb + (size_t)i * c, b->anchor_rows + (size_t)ib[i] * c, c * sizeof *vb);
        }
        r = pa_pearson(va, vb, (size_t)m * c);
    }
    free(va);
    free(vb);
    return r;
}

static double end_similarity(const pa_embed_fp *a, const pa_embed_fp *b)
{
    if (!a->present || !b->present)
        return NAN;
    return pa_cosine(a->end_hist, b->end_hist, PA_SK_END_BINS);
}

/* ------------------------------------------------------------------ norms and layers */

static bool is_norm_vector(const pa_tensor_fp *t)
{
    return t->ndim == 1 && t->numel >= 64 && t->sample.n > 0 && strncmp(t->role, "norm_", 5) == 0 &&
           t->role[strlen(t->role) - 1] == 'w';
}

/* NLF: cosine of the concatenated norm-weight vectors (sampled), when both models have the same
 * norm layout; else cosine of per-vector [mean, std, max, min] summaries over the common prefix. */
static double nlf_similarity(const pa_fingerprint *a, const pa_fingerprint *b)
{
    size_t na = 0, nb = 0, la = 0, lb = 0;
    for (size_t i = 0; i < a->n_tensors; i++)
        if (is_norm_vector(&a->tensors[i])) {
            na++;
            la += a->tensors[i].sample.n;
        }
    for (size_t i = 0; i < b->n_tensors; i++)
        if (is_norm_vector(&b->tensors[i])) {
            nb++;
            lb += b->tensors[i].sample.n;
        }
    if (!na || !nb)
        return NAN;
    bool direct = na == nb && la == lb;
    size_t n = direct ? la : 4 * (na < nb ? na : nb);
    float *va = calloc(n ? n : 1, sizeof *va), *vb = calloc(n ? n : 1, sizeof *vb);
    double r = NAN;
    if (va && vb) {
        size_t ka = 0, kb = 0;
        for (size_t i = 0; i < a->n_tensors && ka < n; i++) {
            const pa_tensor_fp *t = &a->tensors[i];
            if (!is_norm_vector(t))
                continue;
            if (direct) {
                memcpy(va + ka, t->sample.v, t->sample.n * sizeof *va);
                ka += t->sample.n;
            } else {
                va[ka++] = (float)t->mean, va[ka++] = (float)t->std;
                va[ka++] = (float)t->max, va[ka++] = (float)t->min;
            }
        }
        for (size_t i = 0; i < b->n_tensors && kb < n; i++) {
            const pa_tensor_fp *t = &b->tensors[i];
            if (!is_norm_vector(t))
                continue;
            if (direct) {
                memcpy(vb + kb, t->sample.v, t->sample.n * sizeof *vb);
                kb += t->sample.n;
            } else {
                vb[kb++] = (float)t->mean, vb[kb++] = (float)t->std;
                vb[kb++] = (float)t->max, vb[kb++] = (float)t->min;
            }
        }
        r = pa_cosine(va, vb, n);
    }
    free(va);
    free(vb);
    return r;
}

static double *layer_profile(const pa_fingerprint *f)
{
    if (f->n_layers < 2)
        return NULL;
    double *p = calloc(f->n_layers, sizeof *p);
    if (!p)
        return NULL;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const pa_tensor_fp *t = &f->tensors[i];
        if (t->layer >= 0 && t->ndim >= 2 && t->decoded)
            p[t->layer] += t->l2;
    }
    double mx = 0;
    for (uint32_t i = 0; i < f->n_layers; i++)
        mx = p[i] > mx ? p[i] : mx;
    for (uint32_t i = 0; i < f->n_layers && mx > 0; i++)
        p[i] /= mx;
    return p;
}

static double interp(const double *p, uint32_t n, double x)
{
    double pos = x * (n - 1);
    uint32_t i = (uint32_t)pos;
    if (i >= n - 1)
        return p[n - 1];
    double f = pos - i;
    return p[i] * (1 - f) + p[i + 1] * f;
}

/* LEP: Pearson of the per-layer norm profiles, interpolated to a common length, as (r+1)/2. */
static double lep_similarity(const pa_fingerprint *a, const pa_fingerprint *b)
{
    double *pa = layer_profile(a), *pb = layer_profile(b);
    double r = NAN;
    if (pa && pb) {
        uint32_t n = a->n_layers > b->n_layers ? a->n_layers : b->n_layers;
        float *va = malloc(n * sizeof *va), *vb = malloc(n * sizeof *vb);
        if (va && vb) {
            for (uint32_t i = 0; i < n; i++) {
                double x = n > 1 ? (double)i / (n - 1) : 0;
                va[i] = (float)interp(pa, a->n_layers, x);
                vb[i] = (float)interp(pb, b->n_layers, x);
            }
            r = pa_pearson(va, vb, n);
        }
        free(va);
        free(vb);
    }
    free(pa);
    free(pb);
    return isfinite(r) ? (r + 1) / 2 : NAN;
}

static bool is_matrix(const pa_tensor_fp *t)
{
    return t->ndim >= 2 && t->decoded && t->block.n > 0;
}

/* WVC: per layer, the sampled values of its matrices (role order, names sort the same way in
 * both), cosine per common layer, mean over layers; needs two or more common layers. */
static double wvc_similarity(const pa_fingerprint *a, const pa_fingerprint *b)
{
    uint32_t nl = a->n_layers < b->n_layers ? a->n_layers : b->n_layers;
    double sum = 0;
    int cnt = 0;
    for (uint32_t l = 0; l < nl; l++) {
        double ab = 0, aa = 0, bb = 0;
        size_t used = 0;
        for (size_t i = 0; i < b->n_tensors; i++) {
            const pa_tensor_fp *tb = &b->tensors[i];
            if (tb->layer != (int32_t)l || !is_matrix(tb))
                continue;
            for (size_t j = 0; j < a->n_tensors; j++) {
                const pa_tensor_fp *ta = &a->tensors[j];
                if (ta->layer != (int32_t)l || !is_matrix(ta) || strcmp(ta->role, tb->role) != 0 ||
                    ta->block.n != tb->block.n)
                    continue;
                for (uint32_t k = 0; k < ta->block.n; k++) {
                    ab += (double)ta->block.v[k] * tb->block.v[k];
                    aa += (double)ta->block.v[k] * ta->block.v[k];
                    bb += (double)tb->block.v[k] * tb->block.v[k];
                }
                used++;
                break;
            }
        }
        if (used && aa > 0 && bb > 0) {
            sum += ab / sqrt(aa * bb);
            cnt++;
        }
    }
    return cnt >= 2 ? sum / cnt : NAN;
}

/* ------------------------------------------------------------------ WEA */

/* Agreement of two matrices that play the same role. Three views, best one wins:
 *  - block: the sampled R x C values, element-wise (same shape only);
 *  - column sums: invariant to any re-ordering of rows (MLP neurons of gate/up, heads of q/k/v)
 *    and nearly so to removing some rows (width pruning);
 *  - row sums: the same for columns (down/o projections).
 * For independent runs each view is a correlation of independent vectors, near 0. */
static double matrix_agreement(const pa_tensor_fp *a, const pa_tensor_fp *b)
{
    if (memcmp(a->sha, b->sha, 32) == 0 && a->numel == b->numel)
        return 1.0;
    double best = NAN;
    if (a->rows == b->rows && a->cols == b->cols && a->block.n == b->block.n && a->block.n) {
        double r = pa_pearson(a->block.v, b->block.v, a->block.n);
        if (isfinite(r))
            best = r;
    }
    if (a->cols == b->cols && a->colsum.n == b->colsum.n && a->colsum.n >= 8) {
        double r = pa_pearson(a->colsum.v, b->colsum.v, a->colsum.n);
        if (isfinite(r) && (!isfinite(best) || r > best))
            best = r;
    }
    if (a->rows == b->rows && a->rowsum.n == b->rowsum.n && a->rowsum.n >= 8) {
        double r = pa_pearson(a->rowsum.v, b->rowsum.v, a->rowsum.n);
        if (isfinite(r) && (!isfinite(best) || r > best))
            best = r;
    }
    return best;
}

/* WEA: for every matrix of b, its agreement with the matching matrix of a. Matching: same role
 * and layer first; when that does not agree (layers dropped or re-ordered: pruning, students),
 * the best layer of the same role; when the role is unknown in a (renamed tensors), the best
 * matrix of the same shape. Mean over b's matrices, negatives as 0. best_of[i] gets the agreement
 * of b's tensor i, best_layer[i] the layer of a's tensor it was found in. */
static double wea_similarity(const pa_fingerprint *a, const pa_fingerprint *b, size_t *compared,
                             size_t *identical, double *best_of, int32_t *best_layer)
{
    for (size_t i = 0; i < b->n_tensors; i++) {
        best_of[i] = NAN;
        best_layer[i] = -1;
    }
    double sum = 0;
    size_t n = 0, same = 0;
    for (size_t i = 0; i < b->n_tensors; i++) {
        const pa_tensor_fp *tb = &b->tensors[i];
        if (!is_matrix(tb))
            continue;
        double best = NAN;
        int32_t at = -1;
        bool role_seen = false;
        for (size_t j = 0; j < a->n_tensors; j++) {
            const pa_tensor_fp *ta = &a->tensors[j];
            if (!is_matrix(ta) || ta->layer != tb->layer || strcmp(ta->role, tb->role) != 0)
                continue;
            role_seen = true;
            best = matrix_agreement(ta, tb);
            at = ta->layer;
            break;
        }
        if (!isfinite(best) || best < 0.5) {
            for (size_t j = 0; j < a->n_tensors; j++) {
                const pa_tensor_fp *ta = &a->tensors[j];
                if (!is_matrix(ta) || strcmp(ta->role, tb->role) != 0)
                    continue;
                role_seen = true;
                double r = matrix_agreement(ta, tb);
                if (isfinite(r) && (!isfinite(best) || r > best)) {
                    best = r;
                    at = ta->layer;
                }
            }
        }
        if (!role_seen) {
            size_t tried = 0;
            for (size_t j = 0; j < a->n_tensors && tried < 1024; j++) {
                const pa_tensor_fp *ta = &a->tensors[j];
                if (!is_matrix(ta) || ta->rows != tb->rows || ta->cols != tb->cols)
                    continue;
                tried++;
                double r = matrix_agreement(ta, tb);
                if (isfinite(r) && (!isfinite(best) || r > best)) {
                    best = r;
                    at = ta->layer;
                }
            }
        }
        best_of[i] = best;
        best_layer[i] = isfinite(best) ? at : -1;
        if (!isfinite(best))
            continue;
        if (best >= 1.0 - 1e-12)
            same++;
        sum += clamp01(best);
        n++;
    }
    *compared = n;
    (void)same;
    /* identical counts come from SHA-256 matches, counted by the caller */
    *identical = 0;
    return n ? sum / (double)n : NAN;
}

/* ------------------------------------------------------------------ invariant signals
 *
 * An adversary can re-express a network without changing what it computes: permute MLP neurons
 * or heads, rescale a neuron or head by a factor the next matrix undoes, or — after folding each
 * RMSNorm weight into the matrices that read its output — turn the whole residual stream by an
 * orthogonal Q (E -> E·Q, readers W -> W·diag(g)·Q, writers W -> Qᵀ·W). Element-wise agreement
 * and row/column sums see noise after a rotation. These terms do not move:
 *
 *  gram       cosines between the embedding rows of shared anchor tokens, E_s·E_sᵀ normalised:
 *             (E_s·Q)(E_s·Q)ᵀ = E_s·E_sᵀ for any orthogonal Q, and a permutation of the hidden
 *             units is an orthogonal Q. Pearson over the off-diagonal entries, raw (independent
 *             embeddings give ~0).
 *  invariant  per block, on the probe tokens' embedding rows X (unit RMS, times the block's norm
 *             weight g for the matrices after that norm; stream.c):
 *               q·k     X·diag(g1)·W_qᵀ·W_k·diag(g1)·Xᵀ  summed over heads (GQA: each query
 *                       head with its key head)
 *               v·o     X·W_o·W_v·diag(g1)·Xᵀ
 *               up·down X·W_down·W_up·diag(g2)·Xᵀ
 *             Rotation: X·Q·(W·diag(g)·Q)ᵀ = X·diag(g)·Wᵀ and X·Q·(Qᵀ·W_o) = X·W_o, so Q cancels
 *             in every term (the folded norm is ones, and the original's g sits in the same
 *             place). Permutation of heads or neurons re-orders the summation index of W_qᵀ·W_k,
 *             W_o·W_v and W_down·W_up only. Scaling: q·c with k/c, v·b with o/b, up·a with
 *             down/a cancel inside the same products. Quantisation and fine-tuning perturb the
 *             matrices a little, the products by about as much. For independent models the
 *             products are bilinear forms of independent matrices: their off-diagonal entries
 *             correlate near 0. Per block: mean over the terms of the Pearson correlation of the
 *             off-diagonal entries; a block of b is matched to the same block of a, or the best
 *             block when that does not agree (layers dropped or stacked). The signal is the mean
 *             over b's sampled blocks.
 *  What they cannot see: trained models of one recipe share semantic structure (similar tokens
 *  get similar rows in independent runs), so on real checkpoints the independent baseline of
 *  gram is above 0; the per-block products carry more of the checkpoint. A transform that is
 *  not function-preserving (distillation into a new basis) defeats both.
 */
static double offdiag_pearson(const float *x, const float *y, uint32_t m, const uint32_t *ix,
                              const uint32_t *iy, uint32_t stride_x, uint32_t stride_y, size_t *nout,
                              float *va, float *vb)
{
    size_t n = 0;
    for (uint32_t i = 0; i < m; i++)
        for (uint32_t j = 0; j < m; j++)
            if (i != j) {
                va[n] = x[(size_t)ix[i] * stride_x + ix[j]];
                vb[n] = y[(size_t)iy[i] * stride_y + iy[j]];
                n++;
            }
    if (nout)
        *nout = n;
    return pa_pearson(va, vb, n);
}

static double gram_similarity(const pa_embed_fp *a, const pa_embed_fp *b)
{
    if (!a->present || !b->present || !a->anchor_cos || !b->anchor_cos)
        return NAN;
    uint32_t ia[PA_SK_ANCHORS], ib[PA_SK_ANCHORS];
    uint32_t m = common_anchors(a, b, ia, ib);
    if (m < 8)
        return NAN;
    float *va = malloc((size_t)m * m * sizeof *va), *vb = malloc((size_t)m * m * sizeof *vb);
    double r = va && vb ? offdiag_pearson(a->anchor_cos, b->anchor_cos, m, ia, ib, a->n_anchors,
                                          b->n_anchors, NULL, va, vb)
                        : NAN;
    free(va);
    free(vb);
    return r;
}

/* Probe tokens present in both, matched by token-string hash. */
static uint32_t probe_common(const pa_probe_fp *a, const pa_probe_fp *b, uint32_t *ia, uint32_t *ib)
{
    uint32_t m = 0;
    for (uint32_t i = 0; i < a->m; i++)
        for (uint32_t j = 0; j < b->m; j++)
            if (a->hash[i] == b->hash[j]) {
                ia[m] = i;
                ib[m++] = j;
                break;
            }
    return m;
}

/* Agreement of block la of a with block lb of b: mean over the shared terms of the off-diagonal
 * Pearson; dist (may be NULL) gets the relative L2 distance of the shared terms. */
static double probe_block(const pa_probe_fp *a, uint32_t la, const pa_probe_fp *b, uint32_t lb,
                          const uint32_t *ia, const uint32_t *ib, uint32_t m, double *dist)
{
    float va[PA_SK_PROBE * PA_SK_PROBE], vb[PA_SK_PROBE * PA_SK_PROBE];
    double sum = 0, d2 = 0, n2 = 0;
    int cnt = 0;
    for (int t = 0; t < PA_PROBE_TERMS; t++) {
        if (!(a->have[la] & b->have[lb] & (1u << t)))
            continue;
        const float *x = a->prod + ((size_t)la * PA_PROBE_TERMS + t) * a->m * a->m;
        const float *y = b->prod + ((size_t)lb * PA_PROBE_TERMS + t) * b->m * b->m;
        double r = offdiag_pearson(x, y, m, ia, ib, a->m, b->m, NULL, va, vb);
        if (!isfinite(r))
            continue;
        sum += r;
        cnt++;
        for (uint32_t i = 0; i < m; i++)
            for (uint32_t j = 0; j < m; j++) {
                double u = x[(size_t)ia[i] * a->m + ia[j]], v = y[(size_t)ib[i] * b->m + ib[j]];
                d2 += (u - v) * (u - v);
                n2 += 0.5 * (u * u + v * v);
            }
    }
    if (dist)
        *dist = n2 > 0 ? sqrt(d2 / n2) : NAN;
    return cnt ? sum / cnt : NAN;
}

/* The invariant signal; per_block[k] (b's k-th sampled block) gets that block's agreement,
 * block_of[k] the layer of a it was matched to, and dist_out the mean relative distance of the
 * matched blocks. */
static double invariant_similarity(const pa_fingerprint *a, const pa_fingerprint *b,
                                   double *per_block, int32_t *block_of, double *dist_out)
{
    const pa_probe_fp *pa = &a->probe, *pb = &b->probe;
    *dist_out = NAN;
    for (uint32_t k = 0; k < pb->n_layers; k++) {
        per_block[k] = NAN;
        block_of[k] = -1;
    }
    uint32_t ia[PA_SK_PROBE], ib[PA_SK_PROBE];
    uint32_t m = pa->m && pb->m ? probe_common(pa, pb, ia, ib) : 0;
    if (m < 4 || !pa->n_layers || !pb->n_layers)
        return NAN;
    double sum = 0, dsum = 0;
    int n = 0, nd = 0;
    for (uint32_t k = 0; k < pb->n_layers; k++) {
        double best = NAN, bd = NAN;
        int32_t at = -1;
        for (uint32_t j = 0; j < pa->n_layers; j++)
            if (pa->layer[j] == pb->layer[k]) {
                best = probe_block(pa, j, pb, k, ia, ib, m, &bd);
                at = pa->layer[j];
            }
        if (!isfinite(best) || best < 0.5)
            for (uint32_t j = 0; j < pa->n_layers; j++) {
                double d, r = probe_block(pa, j, pb, k, ia, ib, m, &d);
                if (isfinite(r) && (!isfinite(best) || r > best)) {
                    best = r;
                    bd = d;
                    at = pa->layer[j];
                }
            }
        per_block[k] = best;
        block_of[k] = isfinite(best) ? at : -1;
        if (!isfinite(best))
            continue;
        sum += clamp01(best);
        n++;
        if (isfinite(bd) && best >= 0.5) {
            dsum += bd;
            nd++;
        }
    }
    if (nd)
        *dist_out = dsum / nd;
    return n ? sum / n : NAN;
}

/* ------------------------------------------------------------------ coverage and distance */

#define T_EXPLAIN 0.5 /* agreement from which a tensor or block counts as explained */

typedef struct cov_key {
    int32_t layer;
    const char *role;
    size_t index;
} cov_key;

static int cmp_cov(const void *x, const void *y)
{
    const cov_key *a = x, *b = y;
    if (a->layer != b->layer)
        return a->layer < b->layer ? -1 : 1;
    int c = strcmp(a->role, b->role);
    if (c)
        return c;
    return a->index < b->index ? -1 : a->index > b->index;
}

static int cmp_sha32(const void *x, const void *y)
{
    return memcmp(x, y, 32);
}

/* Block agreement for block number l of b: the sampled block itself, else both nearest sampled
 * neighbours (blocks between sampled ones are judged by them). */
static double block_agreement(const pa_probe_fp *pb, const double *per_block, int32_t l)
{
    double lo = NAN, hi = NAN;
    int32_t dlo = INT32_MAX, dhi = INT32_MAX;
    for (uint32_t k = 0; k < pb->n_layers; k++) {
        int32_t bl = pb->layer[k];
        if (bl == l)
            return per_block[k];
        if (bl < l && l - bl < dlo) {
            dlo = l - bl;
            lo = per_block[k];
        }
        if (bl > l && bl - l < dhi) {
            dhi = bl - l;
            hi = per_block[k];
        }
    }
    if (isfinite(lo) && isfinite(hi))
        return lo < hi ? lo : hi;
    return isfinite(lo) ? lo : hi;
}

/* The sampled block of b that is block l, -1 when l is not sampled. */
static int32_t sampled_index(const pa_probe_fp *pb, int32_t l)
{
    for (uint32_t k = 0; k < pb->n_layers; k++)
        if (pb->layer[k] == l)
            return (int32_t)k;
    return -1;
}

/* Per block of b (r->layers): the share of its matrix parameters a explains (ok[]), the mean
 * element-wise agreement of its matrices, the invariant agreement when the block is sampled, and
 * the block of a it agrees with: the most frequent layer among its explained matrices' matches,
 * else the block the invariant products matched. keys: b's tensors sorted by layer. */
static void layer_report(const pa_fingerprint *b, const cov_key *keys, const bool *ok,
                         const double *best_of, const int32_t *best_layer, const double *per_block,
                         const int32_t *block_of, pa_compare_result *r)
{
    size_t n = b->n_tensors;
    r->n_layers_b = b->n_layers;
    r->n_layers = b->n_layers < PA_CMP_MAX_LAYERS ? b->n_layers : PA_CMP_MAX_LAYERS;
    for (uint32_t l = 0; l < r->n_layers; l++)
        r->layers[l] = (pa_layer_match){(int32_t)l, -1, NAN, NAN, NAN, false, 0};
    for (size_t k0 = 0, k1; k0 < n; k0 = k1) {
        int32_t l = keys[k0].layer;
        for (k1 = k0; k1 < n && keys[k1].layer == l; k1++)
            ;
        if (l < 0 || (uint32_t)l >= r->n_layers)
            continue;
        pa_layer_match *lm = &r->layers[l];
        double total = 0, expl = 0, agree = 0;
        int n_agree = 0, votes = 0;
        for (size_t k = k0; k < k1; k++) {
            size_t i = keys[k].index;
            const pa_tensor_fp *t = &b->tensors[i];
            lm->params += t->numel;
            if (t->ndim < 2)
                continue;
            total += (double)t->numel;
            expl += ok[i] ? (double)t->numel : 0;
            if (isfinite(best_of[i])) {
                agree += clamp01(best_of[i]);
                n_agree++;
            }
            if (!isfinite(best_of[i]) || best_of[i] < T_EXPLAIN || best_layer[i] < 0)
                continue;
            int v = 0; /* matches of this tensor's layer among the block's explained matrices */
            for (size_t q = k0; q < k1; q++) {
                size_t j = keys[q].index;
                v += b->tensors[j].ndim >= 2 && isfinite(best_of[j]) && best_of[j] >= T_EXPLAIN &&
                     best_layer[j] == best_layer[i];
            }
            if (v > votes) {
                votes = v;
                lm->a_layer = best_layer[i];
            }
        }
        int32_t s = b->probe.n_layers ? sampled_index(&b->probe, l) : -1;
        if (s >= 0 && per_block) {
            lm->invariant = (float)per_block[s];
            if (lm->a_layer < 0 && isfinite(per_block[s]) && per_block[s] >= T_EXPLAIN)
                lm->a_layer = block_of[s];
        }
        lm->agreement = n_agree ? (float)(agree / n_agree) : NAN;
        lm->explained = total > 0 ? (float)(expl / total) : NAN;
        lm->matches_a = total > 0 && expl / total >= 0.5;
    }
}

static void append_name(pa_compare_result *r, const char *name)
{
    size_t len = strlen(r->unexplained), cap = sizeof r->unexplained;
    if (len >= cap - 5)
        return;
    size_t need = strlen(name) + (len ? 1 : 0);
    if (len + need >= cap - 4) {
        memcpy(r->unexplained + len, len ? ",..." : "...", len ? 5 : 4);
        return;
    }
    snprintf(r->unexplained + len, cap - len, "%s%s", len ? "," : "", name);
}

/* Which share of b's parameters a explains. A tensor is explained when a holds it byte for byte,
 * when its aligned counterpart agrees element-wise (best_of >= T_EXPLAIN), when it is the
 * first tensor of its role in a block whose invariant products agree, or (embedding and head)
 * when the embedding Gram or anchor rows agree. 1-D tensors follow their block (outside blocks:
 * follow whether anything is explained). A tensor only b has and that matches nothing — an
 * unrelated model's weights stored beside the parent's — stays unexplained. */
static void coverage(const pa_fingerprint *a, const pa_fingerprint *b, const double *best_of,
                     const int32_t *best_layer, const double *per_block, const int32_t *block_of,
                     double embed_ok, pa_compare_result *r)
{
    size_t n = b->n_tensors;
    r->unexplained[0] = '\0';
    r->n_unexplained = 0;
    bool *ok = calloc(n ? n : 1, sizeof *ok);
    cov_key *keys = malloc((n ? n : 1) * sizeof *keys);
    uint8_t(*sa)[32] = malloc((a->n_tensors ? a->n_tensors : 1) * 32);
    uint32_t nl = b->n_layers;
    bool *layer_ok = calloc(nl ? nl : 1, sizeof *layer_ok);
    if (!ok || !keys || !sa || !layer_ok) {
        free(ok);
        free(keys);
        free(sa);
        free(layer_ok);
        r->explained_share = r->unexplained_share = NAN;
        return;
    }
    for (size_t i = 0; i < a->n_tensors; i++)
        memcpy(sa[i], a->tensors[i].sha, 32);
    qsort(sa, a->n_tensors, 32, cmp_sha32);
    for (size_t i = 0; i < n; i++)
        keys[i] = (cov_key){b->tensors[i].layer, b->tensors[i].role, i};
    qsort(keys, n, sizeof *keys, cmp_cov);
    bool any = false;
    for (size_t k = 0; k < n; k++) {
        size_t i = keys[k].index;
        const pa_tensor_fp *t = &b->tensors[i];
        bool first = k == 0 || keys[k - 1].layer != t->layer || strcmp(keys[k - 1].role, t->role);
        bool e = a->n_tensors && bsearch(t->sha, sa, a->n_tensors, 32, cmp_sha32) != NULL;
        e = e || (isfinite(best_of[i]) && best_of[i] >= T_EXPLAIN);
        if (!e && first && t->layer >= 0 && t->ndim >= 2 && b->probe.n_layers && per_block) {
            double ba = block_agreement(&b->probe, per_block, t->layer);
            e = isfinite(ba) && ba >= T_EXPLAIN;
        }
        if (!e && first && t->ndim >= 2 &&
            (strcmp(t->role, "embed.w") == 0 || strcmp(t->role, "lm_head.w") == 0))
            e = isfinite(embed_ok) && embed_ok >= T_EXPLAIN;
        ok[i] = e;
        if (e && t->ndim >= 2) {
            any = true;
            if (t->layer >= 0 && (uint32_t)t->layer < nl)
                layer_ok[t->layer] = true;
        }
    }
    double total = 0, unexplained = 0;
    for (size_t i = 0; i < n; i++) {
        const pa_tensor_fp *t = &b->tensors[i];
        if (!ok[i] && t->ndim < 2)
            ok[i] = t->layer >= 0 && (uint32_t)t->layer < nl ? layer_ok[t->layer] : any;
        total += (double)t->numel;
        if (!ok[i]) {
            unexplained += (double)t->numel;
            r->n_unexplained++;
            append_name(r, t->name);
        }
    }
    r->unexplained_share = total > 0 ? unexplained / total : NAN;
    r->explained_share = total > 0 ? 1.0 - r->unexplained_share : NAN;
    r->unknown_origin = total > 0 && r->unexplained_share >= PA_UNKNOWN_ORIGIN_SHARE;
    layer_report(b, keys, ok, best_of, best_layer, per_block, block_of, r);
    /* parameters outside the reported blocks, for shares among several parents */
    r->rest_params = r->rest_explained = 0;
    for (size_t i = 0; i < n; i++) {
        const pa_tensor_fp *t = &b->tensors[i];
        if (t->layer >= 0 && (uint32_t)t->layer < r->n_layers)
            continue;
        r->rest_params += t->numel;
        r->rest_explained += ok[i] ? t->numel : 0;
    }
    free(ok);
    free(keys);
    free(sa);
    free(layer_ok);
}

/* Relative L2 distance of two sampled vectors: |a - b| / rms(|a|, |b|). */
static double rel_dist(const float *x, const float *y, size_t n)
{
    double d2 = 0, n2 = 0;
    for (size_t i = 0; i < n; i++) {
        d2 += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        n2 += 0.5 * ((double)x[i] * x[i] + (double)y[i] * y[i]);
    }
    return n2 > 0 ? sqrt(d2 / n2) : NAN;
}

/* Weight-space distance over the sampled blocks of matrices aligned by role and layer (same
 * shape, block agreeing element-wise), parameter-weighted; the sums views stand in when neurons
 * were permuted. A fine-tune is base + δ₂ and a sibling base + δ₁: the child is |δ₂| from the
 * base and about √(|δ₁|²+|δ₂|²) from the sibling, so unlike similarity the distance keeps
 * telling the parent from the sibling. NaN when nothing aligns element-wise. */
static double weight_distance(const pa_fingerprint *a, const pa_fingerprint *b)
{
    double sum = 0, w = 0;
    for (size_t i = 0; i < b->n_tensors; i++) {
        const pa_tensor_fp *tb = &b->tensors[i];
        if (!is_matrix(tb))
            continue;
        for (size_t j = 0; j < a->n_tensors; j++) {
            const pa_tensor_fp *ta = &a->tensors[j];
            if (!is_matrix(ta) || ta->layer != tb->layer || strcmp(ta->role, tb->role) != 0)
                continue;
            double d = NAN;
            if (memcmp(ta->sha, tb->sha, 32) == 0 && ta->numel == tb->numel)
                d = 0;
            else if (ta->rows == tb->rows && ta->cols == tb->cols && ta->block.n == tb->block.n &&
                     pa_pearson(ta->block.v, tb->block.v, ta->block.n) >= T_EXPLAIN)
                d = rel_dist(ta->block.v, tb->block.v, ta->block.n);
            else if (ta->cols == tb->cols && ta->colsum.n == tb->colsum.n && ta->colsum.n >= 8 &&
                     pa_pearson(ta->colsum.v, tb->colsum.v, ta->colsum.n) >= T_EXPLAIN)
                d = rel_dist(ta->colsum.v, tb->colsum.v, ta->colsum.n);
            else if (ta->rows == tb->rows && ta->rowsum.n == tb->rowsum.n && ta->rowsum.n >= 8 &&
                     pa_pearson(ta->rowsum.v, tb->rowsum.v, ta->rowsum.n) >= T_EXPLAIN)
                d = rel_dist(ta->rowsum.v, tb->rowsum.v, ta->rowsum.n);
            if (isfinite(d)) {
                sum += d * (double)tb->numel;
                w += (double)tb->numel;
            }
            break;
        }
    }
    return w > 0 ? sum / w : NAN;
}

static const pa_tensor_fp *find_by_name(const pa_fingerprint *f, const char *name)
{
    size_t lo = 0, hi = f->n_tensors; /* tensors are sorted by name */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(f->tensors[mid].name, name);
        if (c == 0)
            return &f->tensors[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

double pa_lineage_quick(const pa_fingerprint *a, const pa_fingerprint *b)
{
    if (!a->has_weights || !b->has_weights)
        return NAN;
    double anchors = anchor_row_agreement(&a->embed, &b->embed);
    /* up to 8 matrices of b, evenly spread, against a's tensor of the same name */
    size_t n_mat = 0;
    for (size_t i = 0; i < b->n_tensors; i++)
        n_mat += is_matrix(&b->tensors[i]);
    double sum = 0;
    int used = 0;
    size_t k = 0, step = n_mat > 8 ? n_mat / 8 : 1;
    for (size_t i = 0; i < b->n_tensors && used < 8; i++) {
        const pa_tensor_fp *tb = &b->tensors[i];
        if (!is_matrix(tb) || k++ % step != 0)
            continue;
        const pa_tensor_fp *ta = find_by_name(a, tb->name);
        if (!ta || !is_matrix(ta))
            continue;
        double r = matrix_agreement(ta, tb);
        if (isfinite(r)) {
            sum += r;
            used++;
        }
    }
    double named = used >= 2 ? sum / used : NAN;
    if (!isfinite(anchors) || !isfinite(named))
        return NAN; /* not enough to rule anything out: compare in full */
    return anchors > named ? anchors : named;
}

static int cmp_sha(const void *x, const void *y)
{
    return memcmp(x, y, 32);
}

/* Byte-equal tensors of b found in a (SHA-256), as a multiset match. */
static size_t identical_tensors(const pa_fingerprint *a, const pa_fingerprint *b)
{
    if (!a->n_tensors || !b->n_tensors)
        return 0;
    uint8_t(*sa)[32] = malloc(a->n_tensors * 32), (*sb)[32] = malloc(b->n_tensors * 32);
    size_t same = 0;
    if (sa && sb) {
        for (size_t i = 0; i < a->n_tensors; i++)
            memcpy(sa[i], a->tensors[i].sha, 32);
        for (size_t i = 0; i < b->n_tensors; i++)
            memcpy(sb[i], b->tensors[i].sha, 32);
        qsort(sa, a->n_tensors, 32, cmp_sha);
        qsort(sb, b->n_tensors, 32, cmp_sha);
        size_t i = 0, j = 0;
        while (i < a->n_tensors && j < b->n_tensors) {
            int c = memcmp(sa[i], sb[j], 32);
            if (c == 0) {
                same++;
                i++;
                j++;
            } else if (c < 0) {
                i++;
            } else {
                j++;
            }
        }
    }
    free(sa);
    free(sb);
    return same;
}

void pa_signals_compute(const pa_fingerprint *a, const pa_fingerprint *b, pa_compare_result *r)
{
    const pa_signal none = {NAN, false};
    r->mfi = r->tfv = r->voa = r->eas = r->nlf = r->lep = r->end = r->wvc = none;
    r->wea = r->anchor_rows = r->gram = r->invariant = none;
    r->distance = r->explained_share = r->unexplained_share = NAN;
    r->unknown_origin = false;
    r->n_unexplained = 0;
    r->unexplained[0] = '\0';
    r->mfi_tier = 0;
    if (a->has_mfi && b->has_mfi) {
        int tier = 3;
        r->mfi = sig(pa_mfi_similarity(&a->mfi, &b->mfi, &tier));
        r->mfi_tier = tier;
    }
    if (a->has_tfv && b->has_tfv)
        r->tfv = sig(tfv_similarity(&a->tfv, &b->tfv));
    r->voa = sig(voa_similarity(a, b));
    r->tensors_a = a->n_tensors;
    r->tensors_b = b->n_tensors;
    if (!a->has_weights || !b->has_weights)
        return;
    r->eas = sig(eas_similarity(&a->embed, &b->embed));
    r->end = sig(end_similarity(&a->embed, &b->embed));
    r->nlf = sig(nlf_similarity(a, b));
    r->lep = sig(lep_similarity(a, b));
    r->wvc = sig(wvc_similarity(a, b));
    size_t ident = 0;
    double *best_of = malloc((b->n_tensors ? b->n_tensors : 1) * sizeof *best_of);
    int32_t *best_layer = malloc((b->n_tensors ? b->n_tensors : 1) * sizeof *best_layer);
    double per_block[PA_SK_PROBE_LAYERS], inv_dist = NAN;
    int32_t block_of[PA_SK_PROBE_LAYERS];
    if (!best_of || !best_layer) {
        free(best_of);
        free(best_layer);
        return;
    }
    r->wea = sig(wea_similarity(a, b, &r->tensors_compared, &ident, best_of, best_layer));
    r->anchor_rows = sig(anchor_row_agreement(&a->embed, &b->embed));
    r->tensors_identical = identical_tensors(a, b);
    r->gram = sig(gram_similarity(&a->embed, &b->embed));
    r->invariant = sig(b->probe.n_layers <= PA_SK_PROBE_LAYERS
                           ? invariant_similarity(a, b, per_block, block_of, &inv_dist)
                           : NAN);
    double embed_ok = fmax(r->gram.valid ? r->gram.value : -1,
                           r->anchor_rows.valid ? r->anchor_rows.value : -1);
    coverage(a, b, best_of, best_layer, b->probe.n_layers <= PA_SK_PROBE_LAYERS ? per_block : NULL,
             block_of, embed_ok, r);
    r->distance = weight_distance(a, b);
    if (!isfinite(r->distance))
        r->distance = inv_dist;
    free(best_of);
    free(best_layer);
}
