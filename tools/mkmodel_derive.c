/* mkmodel derive: read a parent model directory and write a derived one.
 *
 * Tensors stream one at a time: each output tensor names its source, is read with pread, decoded
 * to float, transformed and encoded. Transforms that must agree across tensors (the neurons kept
 * or permuted in one layer, the head permutation) draw from a stream keyed by (seed, kind,
 * layer), so no state passes between tensors and the output order does not matter. */
#include "mkmodel.h"

#include "jsonutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool is_encodable(pa_dtype dtype)
{
    return dtype == PA_DT_F32 || dtype == PA_DT_F16 || dtype == PA_DT_BF16;
}

/* ---------------------------------------------------------------- kinds */

enum kind {
    K_FINETUNE,
    K_LORA,
    K_CONVERT,
    K_QUANT_INT8,
    K_QUANT_Q4,
    K_PRUNE_LAYERS,
    K_PRUNE_MLP,
    K_VOCAB_EXTEND,
    K_PERMUTE_MLP,
    K_PERMUTE_HEADS,
    K_STUDENT,
    K_FORGE,
    K_RENAME,
    K_RESHARD,
    K_COPY,
    K_ROTATE,
    K_SCALE,
    K_NOISE,
    K_SMUGGLE,
    K_SOUP,
    K_STITCH,
    K_UPCYCLE,
    K_PEFT
};

static const struct {
    const char *name;
    unsigned options; /* beyond --seed, --dtype and --shards */
} kinds[] = {
    [K_FINETUNE] = {"finetune", MK_O_DRIFT},
    [K_LORA] = {"lora", MK_O_RANK | MK_O_SCALE},
    [K_CONVERT] = {"convert", 0},
    [K_QUANT_INT8] = {"quant-int8", 0},
    [K_QUANT_Q4] = {"quant-q4", 0},
    [K_PRUNE_LAYERS] = {"prune-layers", MK_O_DROP | MK_O_KEEP},
    [K_PRUNE_MLP] = {"prune-mlp", MK_O_KEEP_FRAC},
    [K_VOCAB_EXTEND] = {"vocab-extend", MK_O_ADD},
    [K_PERMUTE_MLP] = {"permute-mlp", 0},
    [K_PERMUTE_HEADS] = {"permute-heads", 0},
    [K_STUDENT] = {"student", MK_O_DRIFT},
    [K_FORGE] = {"forge", 0},
    [K_RENAME] = {"rename", 0},
    [K_RESHARD] = {"reshard", 0},
    [K_COPY] = {"copy", 0},
    [K_ROTATE] = {"rotate", 0},
    [K_SCALE] = {"scale", 0},
    [K_NOISE] = {"noise", MK_O_DRIFT},
    [K_SMUGGLE] = {"smuggle", MK_O_WITH},
    [K_SOUP] = {"soup", MK_O_WITH},
    [K_STITCH] = {"stitch", MK_O_WITH},
    [K_UPCYCLE] = {"upcycle", MK_O_EXPERTS},
    [K_PEFT] = {"peft", MK_O_RANK},
};

typedef struct derive_ctx {
    const mk_parent *p;
    const mk_options *opt;
    int kind;
    int64_t heads, kv_heads, head_dim; /* permute-heads */
    size_t vocab_add;                  /* vocab-extend */
    const mk_parent *p2;               /* soup, stitch, smuggle: the --with model */
    int64_t hidden;                    /* rotate */
    double *rot;                       /* rotate: hidden x hidden orthogonal Q, row-major */
    int split;                         /* stitch: first layer taken from --with */
} derive_ctx;

/* Does this tensor's data change (beyond re-encoding)? */
static bool transforms(const derive_ctx *c, const mk_src_tensor *s)
{
    if (!mk_is_float(s->desc->dtype))
        return false;
    bool matrix = s->desc->ndim >= 2;
    switch (c->kind) {
    case K_FINETUNE:
    case K_STUDENT:
    case K_NOISE:
    case K_SOUP:
        return true;
    case K_ROTATE: /* everything that reads or writes the residual stream, and the norms */
        if (c->p->gpt2)
            return s->role == MK_R_EMBED || s->role == MK_R_POS || s->role == MK_R_QKV ||
                   s->role == MK_R_ATTN_PROJ || s->role == MK_R_FC || s->role == MK_R_MLP_PROJ ||
                   s->role == MK_R_NORM;
        return s->role == MK_R_EMBED || s->role == MK_R_LM_HEAD || s->role == MK_R_Q ||
               s->role == MK_R_K || s->role == MK_R_V || s->role == MK_R_O ||
               s->role == MK_R_GATE || s->role == MK_R_UP || s->role == MK_R_DOWN ||
               s->role == MK_R_NORM;
    case K_SCALE:
        return s->layer >= 0 && !s->bias &&
               (s->role == MK_R_Q || s->role == MK_R_K || s->role == MK_R_V ||
                s->role == MK_R_O || s->role == MK_R_UP || s->role == MK_R_DOWN);
    case K_LORA:
        return matrix && !s->bias &&
               (s->role == MK_R_Q || s->role == MK_R_K || s->role == MK_R_V || s->role == MK_R_O ||
                s->role == MK_R_QKV || s->role == MK_R_ATTN_PROJ);
    case K_QUANT_INT8:
    case K_QUANT_Q4:
        return matrix;
    case K_PRUNE_MLP:
    case K_PERMUTE_MLP: /* the output side's bias lives in the residual space: untouched */
        return s->layer >= 0 && (s->role == MK_R_GATE || s->role == MK_R_UP || s->role == MK_R_FC ||
                                 ((s->role == MK_R_DOWN || s->role == MK_R_MLP_PROJ) && !s->bias));
    case K_PERMUTE_HEADS:
        return s->layer >= 0 && (s->role == MK_R_Q || s->role == MK_R_K || s->role == MK_R_V ||
                                 s->role == MK_R_QKV ||
                                 ((s->role == MK_R_O || s->role == MK_R_ATTN_PROJ) && !s->bias));
    case K_VOCAB_EXTEND:
        return matrix && (s->role == MK_R_EMBED || s->role == MK_R_LM_HEAD);
    default:
        return false;
    }
}

static double stddev(const float *x, size_t n)
{
    double sum = 0, sq = 0;
    for (size_t i = 0; i < n; i++)
        sum += x[i];
    double mean = n ? sum / (double)n : 0;
    for (size_t i = 0; i < n; i++)
        sq += ((double)x[i] - mean) * ((double)x[i] - mean);
    return n ? sqrt(sq / (double)n) : 0;
}

static void finetune(float *x, size_t n, double drift, uint64_t seed, const char *name)
{
    mk_rng rng;
    mk_rng_init(&rng, seed, "finetune", name);
    mk_add_normal(&rng, x, n, (float)(drift * stddev(x, n)));
}

/* W += scale * B·A with B [rows, rank], A [rank, cols]; entries N(0, sigma) with
 * sqrt(rank) * sigma^2 = 0.5 * std(W), so the update's std is half the weight's. */
static void lora(float *w, uint64_t rows, uint64_t cols, const derive_ctx *c, uint64_t seed,
                 const char *name)
{
    size_t rank = (size_t)c->opt->rank;
    double sigma = sqrt(0.5 * stddev(w, (size_t)(rows * cols)) / sqrt((double)rank));
    float *a = mk_alloc(rank * (size_t)cols, sizeof *a);
    float *b = mk_alloc((size_t)rows * rank, sizeof *b);
    mk_rng rng;
    mk_rng_init(&rng, seed, "lora-A", name);
    mk_fill_normal(&rng, a, rank * (size_t)cols, 0.0f, (float)sigma);
    mk_rng_init(&rng, seed, "lora-B", name);
    mk_fill_normal(&rng, b, (size_t)rows * rank, 0.0f, (float)sigma);
    for (uint64_t i = 0; i < rows; i++) {
        float *row = w + i * cols;
        for (size_t k = 0; k < rank; k++) {
            float coef = (float)c->opt->scale * b[i * rank + k];
            const float *ak = a + k * cols;
            for (uint64_t j = 0; j < cols; j++)
                row[j] += coef * ak[j];
        }
    }
    free(a);
    free(b);
}

/* Symmetric absmax quantize -> dequantize in groups of `group` along the last dimension. */
static void quantize(float *x, size_t n, size_t last, size_t group, float qmax, float qmin)
{
    for (size_t row = 0; row < n; row += last)
        for (size_t g = 0; g < last; g += group) {
            float *v = x + row + g;
            size_t m = last - g < group ? last - g : group;
            float absmax = 0;
            for (size_t i = 0; i < m; i++)
                absmax = fabsf(v[i]) > absmax ? fabsf(v[i]) : absmax;
            if (absmax == 0 || !isfinite(absmax))
                continue;
            float scale = absmax / qmax;
            for (size_t i = 0; i < m; i++) {
                float q = roundf(v[i] / scale);
                q = q > qmax ? qmax : q < qmin ? qmin : q;
                v[i] = q * scale;
            }
        }
}

/* out[r][j] = x[idx[r]][j] */
static void take_rows(const float *x, uint64_t cols, const uint32_t *idx, size_t k, float *out)
{
    for (size_t r = 0; r < k; r++)
        memcpy(out + r * cols, x + (uint64_t)idx[r] * cols, (size_t)cols * sizeof *out);
}

/* out[i][c] = x[i][idx[c]] */
static void take_cols(const float *x, uint64_t rows, uint64_t cols, const uint32_t *idx, size_t k,
                      float *out)
{
    for (uint64_t i = 0; i < rows; i++)
        for (size_t c = 0; c < k; c++)
            out[i * k + c] = x[i * cols + idx[c]];
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static bool is_identity(const uint32_t *perm, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (perm[i] != i)
            return false;
    return true;
}

/* Neurons prune-mlp keeps out of n (all for other kinds). */
static size_t mlp_keep(const derive_ctx *c, uint64_t n)
{
    if (c->kind != K_PRUNE_MLP)
        return (size_t)n;
    long long k = llround(c->opt->keep_frac * (double)n);
    return k < 1 ? 1 : (size_t)k > n ? (size_t)n : (size_t)k;
}

/* Neuron indices for one layer: a permutation of 0..n-1 (permute-mlp) or the kept subset in
 * order (prune-mlp). The same for every tensor of the layer. */
static uint32_t *mlp_index(const derive_ctx *c, int layer, uint64_t n, size_t *k)
{
    if (n > UINT32_MAX)
        mk_die(MK_EXIT_USAGE, "intermediate size %llu is too large", (unsigned long long)n);
    char tag[32];
    snprintf(tag, sizeof tag, "layer %d", layer);
    mk_rng rng;
    mk_rng_init(&rng, c->opt->seed, c->kind == K_PRUNE_MLP ? "prune-mlp" : "permute-mlp", tag);
    uint32_t *idx = mk_alloc((size_t)n, sizeof *idx);
    do /* a permutation that changes nothing would make a useless test model */
        mk_permutation(&rng, idx, (size_t)n);
    while (c->kind == K_PERMUTE_MLP && n > 1 && is_identity(idx, (size_t)n));
    *k = mlp_keep(c, n);
    if (c->kind == K_PRUNE_MLP)
        qsort(idx, *k, sizeof *idx, cmp_u32);
    return idx;
}

/* Which dimension of this tensor runs over the intermediate neurons. */
static int mlp_axis(const mk_src_tensor *s)
{
    switch (s->role) {
    case MK_R_GATE:
    case MK_R_UP:
    case MK_R_MLP_PROJ:
        return 0; /* rows */
    case MK_R_FC:
        return s->bias ? 0 : 1;
    default:
        return 1; /* MK_R_DOWN: columns */
    }
}

static uint64_t mlp_width(const mk_src_tensor *s)
{
    return s->desc->shape[s->desc->ndim == 1 ? 0 : (uint32_t)mlp_axis(s)];
}

/* Head permutation for one layer, expanded to row indices of a block of heads. */
static uint32_t *head_index(const derive_ctx *c, const mk_src_tensor *s, uint64_t n)
{
    char tag[32];
    snprintf(tag, sizeof tag, "layer %d", s->layer);
    mk_rng rng;
    mk_rng_init(&rng, c->opt->seed, "permute-heads", tag);
    size_t groups = (size_t)(c->p->gpt2 ? c->heads : c->kv_heads);
    uint32_t *perm = mk_alloc(groups, sizeof *perm);
    do
        mk_permutation(&rng, perm, groups);
    while (is_identity(perm, groups));
    size_t hd = (size_t)c->head_dim;
    /* heads per permuted unit: a KV head carries its group of query heads */
    size_t per = 1;
    if (!c->p->gpt2 && (s->role == MK_R_Q || s->role == MK_R_O))
        per = (size_t)(c->heads / c->kv_heads);
    size_t parts = s->role == MK_R_QKV ? 3 : 1;
    size_t block = per * hd, part_len = groups * block;
    if (n != parts * part_len)
        mk_die(MK_EXIT_USAGE,
               "permute-heads: %s: %llu head rows do not match %zu heads of %zu "
               "(from config.json)",
               s->desc->name, (unsigned long long)n, groups * per * parts, hd);
    uint32_t *idx = mk_alloc((size_t)n, sizeof *idx);
    for (size_t part = 0; part < parts; part++)
        for (size_t j = 0; j < groups; j++)
            for (size_t t = 0; t < block; t++)
                idx[part * part_len + j * block + t] =
                    (uint32_t)(part * part_len + perm[j] * block + t);
    free(perm);
    return idx;
}

/* Head rows run along: rows for q/k/v (llama) and c_proj (gpt2 Conv1D input), columns for o_proj
 * and c_attn (gpt2 Conv1D output), entries for c_attn's bias. */
static int head_axis(const mk_src_tensor *s)
{
    if (s->desc->ndim == 1)
        return 0;
    return (s->role == MK_R_O || s->role == MK_R_QKV) ? 1 : 0;
}

static void embed_extend(const float *x, uint64_t rows, uint64_t cols, const derive_ctx *c,
                         uint64_t seed, const char *name, float *out)
{
    memcpy(out, x, (size_t)(rows * cols) * sizeof *out);
    double *mean = mk_alloc((size_t)cols, sizeof *mean);
    for (uint64_t i = 0; i < rows; i++)
        for (uint64_t j = 0; j < cols; j++)
            mean[j] += x[i * cols + j];
    mk_rng rng;
    mk_rng_init(&rng, seed, "vocab-extend", name);
    for (size_t r = 0; r < c->vocab_add; r++) {
        float *row = out + (rows + r) * cols;
        for (uint64_t j = 0; j < cols; j++)
            row[j] = (float)(mean[j] / (double)rows) + 0.02f * mk_rng_normal(&rng);
    }
    free(mean);
}

/* ---------------------------------------------------------------- function-preserving kinds */

static const mk_src_tensor *find_src(const mk_parent *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->t[i].desc->name, name) == 0)
            return &p->t[i];
    return NULL;
}

/* A whole source tensor as floats (caller frees). */
static float *read_src(const mk_src_tensor *s)
{
    size_t nbytes = (size_t)(s->desc->end - s->desc->begin);
    uint8_t *raw = mk_alloc(nbytes ? nbytes : 1, 1);
    mk_parent_read(s, raw, 0, nbytes);
    float *x = mk_alloc((size_t)s->desc->numel ? (size_t)s->desc->numel : 1, sizeof *x);
    pa_dtype_to_f32(s->desc->dtype, raw, x, (size_t)s->desc->numel);
    free(raw);
    return x;
}

/* A random orthogonal h x h matrix: Gram-Schmidt (twice, for accuracy) over normal rows. */
static double *random_rotation(uint64_t seed, int64_t h)
{
    size_t n = (size_t)h;
    double *q = mk_alloc(n * n, sizeof *q);
    float *row = mk_alloc(n, sizeof *row);
    mk_rng rng;
    mk_rng_init(&rng, seed, "rotate", "Q");
    for (size_t i = 0; i < n; i++) {
        double *qi = q + i * n;
        mk_fill_normal(&rng, row, n, 0.0f, 1.0f);
        for (size_t k = 0; k < n; k++)
            qi[k] = row[k];
        for (int pass = 0; pass < 2; pass++)
            for (size_t j = 0; j < i; j++) {
                const double *qj = q + j * n;
                double d = 0;
                for (size_t k = 0; k < n; k++)
                    d += qi[k] * qj[k];
                for (size_t k = 0; k < n; k++)
                    qi[k] -= d * qj[k];
            }
        double norm = 0;
        for (size_t k = 0; k < n; k++)
            norm += qi[k] * qi[k];
        norm = sqrt(norm);
        if (norm < 1e-9)
            mk_die(MK_EXIT_IO, "rotate: degenerate random matrix");
        for (size_t k = 0; k < n; k++)
            qi[k] /= norm;
    }
    free(row);
    return q;
}

/* A random orthogonal h x h matrix Q with Q·1 = 1 and 1ᵀ·Q = 1ᵀ: P1ᵀ·P2 for two random
 * orthogonal matrices whose first row is 1/√h. It maps the mean-zero subspace onto itself, so a
 * centred stream stays centred. */
static double *random_rotation_centred(uint64_t seed, int64_t h)
{
    size_t n = (size_t)h;
    double *pm[2];
    for (int w = 0; w < 2; w++) {
        double *q = pm[w] = mk_alloc(n * n, sizeof *q);
        float *row = mk_alloc(n, sizeof *row);
        mk_rng rng;
        mk_rng_init(&rng, seed, "rotate-centred", w ? "P2" : "P1");
        for (size_t i = 0; i < n; i++) {
            double *qi = q + i * n;
            if (i == 0) {
                for (size_t k = 0; k < n; k++)
                    qi[k] = 1.0;
            } else {
                mk_fill_normal(&rng, row, n, 0.0f, 1.0f);
                for (size_t k = 0; k < n; k++)
                    qi[k] = row[k];
            }
            for (int pass = 0; pass < 2; pass++)
                for (size_t j = 0; j < i; j++) {
                    const double *qj = q + j * n;
                    double d = 0;
                    for (size_t k = 0; k < n; k++)
                        d += qi[k] * qj[k];
                    for (size_t k = 0; k < n; k++)
                        qi[k] -= d * qj[k];
                }
            double norm = 0;
            for (size_t k = 0; k < n; k++)
                norm += qi[k] * qi[k];
            norm = sqrt(norm);
            if (norm < 1e-9)
                mk_die(MK_EXIT_IO, "rotate: degenerate random matrix");
            for (size_t k = 0; k < n; k++)
                qi[k] /= norm;
        }
        free(row);
    }
    double *q = mk_alloc(n * n, sizeof *q);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            double v = 0;
            for (size_t k = 0; k < n; k++)
                v += pm[0][k * n + i] * pm[1][k * n + j];
            q[i * n + j] = v;
        }
    free(pm[0]);
    free(pm[1]);
    return q;
}

/* The values of the parent's tensor named prefix + suffix (prefix: the first plen bytes of
 * s's name), checked to hold want entries; dies when it is missing. */
static float *src_named(const derive_ctx *c, const mk_src_tensor *s, size_t plen,
                        const char *suffix, uint64_t want)
{
    char *name = mk_printf("%.*s%s", (int)plen, s->desc->name, suffix);
    const mk_src_tensor *o = find_src(c->p, name);
    if (!o || o->desc->numel != want)
        mk_die(MK_EXIT_USAGE, "rotate: %s is missing or has not %llu entries", name,
               (unsigned long long)want);
    free(name);
    return read_src(o);
}

/* v (h entries) times Q, into out. */
static void times_q(const derive_ctx *c, const double *v, float *out)
{
    size_t h = (size_t)c->hidden;
    for (size_t j = 0; j < h; j++)
        out[j] = 0;
    double *acc = mk_alloc(h, sizeof *acc);
    for (size_t j = 0; j < h; j++)
        acc[j] = 0;
    for (size_t k = 0; k < h; k++)
        for (size_t j = 0; j < h; j++)
            acc[j] += v[k] * c->rot[k * h + j];
    for (size_t j = 0; j < h; j++)
        out[j] = (float)acc[j];
    free(acc);
}

/* rotate for the GPT-2 layout (LayerNorm, Conv1D weights stored [in, out], tied embedding). A
 * LayerNorm centres its input, which a rotation does not commute with, so the stream is centred
 * first: every writer (wte and wpe rows, attn.c_proj and mlp.c_proj outputs and biases) has its
 * mean over the hidden dimension removed, which changes nothing downstream (each LayerNorm
 * removes it anyway) and leaves a mean-zero stream, on which LayerNorm is RMSNorm. Then each
 * LayerNorm's weight g and bias b fold into its readers (c_attn, c_fc: W -> Qᵀ·diag(g)·W, bias
 * c -> c + b·W), the writers rotate (W -> W·C·Q), the LayerNorms become weight 1, bias 0, and Q
 * keeps 1 fixed, so the rotated stream stays mean-zero. The final LayerNorm's weight folds into a
 * new, untied lm_head (E·diag(g)·Q, from the original embedding) and its bias becomes (b / g)·Q. */
static float *rotate_gpt2_tensor(const derive_ctx *c, const mk_src_tensor *s, const mk_tensor *t,
                                 float *x, uint64_t rows, uint64_t cols)
{
    size_t h = (size_t)c->hidden;
    const double *q = c->rot;
    size_t plen = s->layer >= 0 ? s->layer_at + s->layer_len : 0;
    double *v = mk_alloc(h, sizeof *v);
    float *out = NULL;
    if (t->role == MK_R_LM_HEAD) { /* the new head, from wte's values */
        float *g = find_src(c->p, "transformer.ln_f.weight")
                       ? read_src(find_src(c->p, "transformer.ln_f.weight"))
                       : NULL;
        out = mk_alloc((size_t)(rows * cols), sizeof *out);
        for (uint64_t r = 0; r < rows; r++) {
            for (size_t k = 0; k < h; k++)
                v[k] = (double)x[r * cols + k] * (g ? g[k] : 1.0f);
            times_q(c, v, out + r * cols);
        }
        free(g);
    } else if (s->role == MK_R_NORM) {
        bool final = s->layer < 0;
        if (!s->bias || !final) {
            for (uint64_t i = 0; i < rows * cols; i++)
                x[i] = s->bias ? 0.0f : 1.0f;
        } else { /* ln_f.bias -> (b / g)·Q */
            float *g = find_src(c->p, "transformer.ln_f.weight")
                           ? read_src(find_src(c->p, "transformer.ln_f.weight"))
                           : NULL;
            for (size_t k = 0; k < h; k++)
                v[k] = g && g[k] != 0 ? (double)x[k] / g[k] : (double)x[k];
            free(g);
            out = mk_alloc(h, sizeof *out);
            times_q(c, v, out);
        }
    } else if (s->role == MK_R_EMBED || s->role == MK_R_POS || s->role == MK_R_ATTN_PROJ ||
               s->role == MK_R_MLP_PROJ) {
        /* writers: each output row (a bias is one row) centred, then times Q */
        if (cols != h)
            mk_die(MK_EXIT_USAGE, "rotate: %s has %llu columns, not the hidden size",
                   s->desc->name, (unsigned long long)cols);
        out = mk_alloc((size_t)(rows * cols), sizeof *out);
        for (uint64_t r = 0; r < rows; r++) {
            double mean = 0;
            for (size_t k = 0; k < h; k++)
                mean += x[r * cols + k];
            mean /= (double)h;
            for (size_t k = 0; k < h; k++)
                v[k] = x[r * cols + k] - mean;
            times_q(c, v, out + r * cols);
        }
    } else if (!s->bias) {
        /* readers c_attn / c_fc, [h, out]: Qᵀ·diag(g)·W */
        if (rows != h)
            mk_die(MK_EXIT_USAGE, "rotate: %s has %llu rows, not the hidden size", s->desc->name,
                   (unsigned long long)rows);
        float *g = src_named(c, s, plen, s->role == MK_R_QKV ? ".ln_1.weight" : ".ln_2.weight", h);
        out = mk_alloc((size_t)(rows * cols), sizeof *out);
        double *col = mk_alloc(h, sizeof *col);
        for (uint64_t j = 0; j < cols; j++) {
            for (size_t k = 0; k < h; k++)
                col[k] = (double)g[k] * x[k * cols + j];
            for (size_t i = 0; i < h; i++) {
                double a = 0;
                for (size_t k = 0; k < h; k++)
                    a += q[k * h + i] * col[k];
                out[i * cols + j] = (float)a;
            }
        }
        free(col);
        free(g);
    } else {
        /* reader biases: c + b·W with the LayerNorm's bias b and the original W */
        bool qkv = s->role == MK_R_QKV;
        float *b = src_named(c, s, plen, qkv ? ".ln_1.bias" : ".ln_2.bias", h);
        float *w = src_named(c, s, plen, qkv ? ".attn.c_attn.weight" : ".mlp.c_fc.weight",
                             h * rows * cols);
        uint64_t n = rows * cols;
        for (uint64_t j = 0; j < n; j++) {
            double a = x[j];
            for (size_t k = 0; k < h; k++)
                a += (double)b[k] * w[k * n + j];
            x[j] = (float)a;
        }
        free(b);
        free(w);
    }
    free(v);
    return out ? out : x;
}

/* The RMSNorm weight folded into a matrix that reads the stream after it: the block's
 * input_layernorm for q/k/v, post_attention_layernorm for gate/up, model.norm for lm_head.
 * NULL when there is none (the norm is then the identity). */
static float *norm_for(const derive_ctx *c, const mk_src_tensor *s)
{
    const char *name = s->desc->name;
    char *norm;
    if (s->role == MK_R_LM_HEAD)
        norm = mk_strdup("model.norm.weight");
    else if (s->layer < 0)
        return NULL;
    else
        norm = mk_printf("%.*s.%s", (int)(s->layer_at + s->layer_len), name,
                         s->role == MK_R_GATE || s->role == MK_R_UP ? "post_attention_layernorm.weight"
                                                                    : "input_layernorm.weight");
    const mk_src_tensor *ns = find_src(c->p, norm);
    free(norm);
    if (!ns)
        return NULL;
    if ((int64_t)ns->desc->numel != c->hidden)
        mk_die(MK_EXIT_USAGE, "rotate: %s has %llu entries, not the hidden size", ns->desc->name,
               (unsigned long long)ns->desc->numel);
    return read_src(ns);
}

/* rotate: fold the norm weight into readers (W -> W·diag(g)·Q), rotate writers (W -> Qᵀ·W) and
 * the embedding (E -> E·Q); norms become ones. RMSNorm(x·Q) = RMSNorm(x)·Q because an orthogonal
 * Q keeps the root mean square, so every block computes the same function in a rotated basis. */
static float *rotate_tensor(const derive_ctx *c, const mk_src_tensor *s, float *x, uint64_t rows,
                            uint64_t cols)
{
    size_t h = (size_t)c->hidden;
    const double *q = c->rot;
    if (s->role == MK_R_NORM) {
        for (uint64_t i = 0; i < rows * cols; i++)
            x[i] = 1.0f;
        return x;
    }
    float *out = mk_alloc((size_t)(rows * cols), sizeof *out);
    double *acc = mk_alloc(h, sizeof *acc);
    if (s->role == MK_R_O || s->role == MK_R_DOWN) {
        if (rows != h)
            mk_die(MK_EXIT_USAGE, "rotate: %s has %llu rows, not the hidden size", s->desc->name,
                   (unsigned long long)rows);
        /* out[i][j] = sum_k Q[k][i] x[k][j] */
        double *col = mk_alloc(h, sizeof *col);
        for (uint64_t j = 0; j < cols; j++) {
            for (size_t k = 0; k < h; k++)
                col[k] = x[k * cols + j];
            for (size_t i = 0; i < h; i++) {
                double v = 0;
                for (size_t k = 0; k < h; k++)
                    v += q[k * h + i] * col[k];
                out[i * cols + j] = (float)v;
            }
        }
        free(col);
    } else {
        if (cols != h)
            mk_die(MK_EXIT_USAGE, "rotate: %s has %llu columns, not the hidden size",
                   s->desc->name, (unsigned long long)cols);
        float *g = s->role == MK_R_EMBED ? NULL : norm_for(c, s);
        for (uint64_t r = 0; r < rows; r++) {
            const float *xr = x + r * cols;
            for (size_t j = 0; j < h; j++)
                acc[j] = 0;
            for (size_t k = 0; k < h; k++) {
                double v = (double)xr[k] * (g ? g[k] : 1.0f);
                const double *qk = q + k * h;
                for (size_t j = 0; j < h; j++)
                    acc[j] += v * qk[j];
            }
            for (size_t j = 0; j < h; j++)
                out[r * cols + j] = (float)acc[j];
        }
        free(g);
    }
    free(acc);
    return out;
}

/* n factors in [1/2, 2], log-uniform, from the stream keyed by (seed, what, layer). */
static double *scale_factors(const derive_ctx *c, const char *what, int layer, size_t n)
{
    char tag[64];
    snprintf(tag, sizeof tag, "%s layer %d", what, layer);
    mk_rng rng;
    mk_rng_init(&rng, c->opt->seed, "scale", tag);
    double *f = mk_alloc(n, sizeof *f);
    for (size_t i = 0; i < n; i++)
        f[i] = exp(((double)mk_rng_below(&rng, 1u << 20) / (double)(1u << 20) * 2.0 - 1.0) * log(2.0));
    return f;
}

/* scale: rescale what the next matrix undoes. MLP neuron i: up row ·a_i, down column /a_i
 * (SiLU(gate)·up is linear in up). Per key/value head j: v rows ·b_j, the o columns of its
 * query heads /b_j; k rows /c_j, its query heads' q rows ·c_j — q·k and softmax(qk)·v keep
 * their values, and a per-head scalar commutes with RoPE. */
static void scale_tensor(const derive_ctx *c, const mk_src_tensor *s, float *x, uint64_t rows,
                         uint64_t cols)
{
    int l = s->layer;
    if (s->role == MK_R_UP || s->role == MK_R_DOWN) {
        size_t n = (size_t)(s->role == MK_R_UP ? rows : cols);
        double *a = scale_factors(c, "mlp", l, n);
        for (uint64_t i = 0; i < rows; i++)
            for (uint64_t j = 0; j < cols; j++)
                x[i * cols + j] = (float)(s->role == MK_R_UP ? x[i * cols + j] * a[i]
                                                             : x[i * cols + j] / a[j]);
        free(a);
        return;
    }
    size_t hd = (size_t)c->head_dim, kv = (size_t)c->kv_heads;
    size_t per = (size_t)(c->heads / c->kv_heads);
    bool qk = s->role == MK_R_Q || s->role == MK_R_K;
    double *f = scale_factors(c, qk ? "qk" : "vo", l, kv);
    /* kv head of a row (q, k, v) or column (o) */
    bool by_col = s->role == MK_R_O;
    uint64_t span = by_col ? cols : rows;
    bool grouped = s->role == MK_R_Q || s->role == MK_R_O;
    if (span != (grouped ? per * kv * hd : kv * hd))
        mk_die(MK_EXIT_USAGE, "scale: %s does not match %lld heads of %zu", s->desc->name,
               (long long)c->heads, hd);
    bool multiply = s->role == MK_R_Q || s->role == MK_R_V;
    for (uint64_t i = 0; i < rows; i++)
        for (uint64_t j = 0; j < cols; j++) {
            uint64_t pos = by_col ? j : i;
            size_t head = (size_t)(pos / hd);
            size_t g = grouped ? head / per : head;
            double v = x[i * cols + j];
            x[i * cols + j] = (float)(multiply ? v * f[g] : v / f[g]);
        }
    free(f);
}

/* soup: the mean of the parent and the --with model, tensor by tensor. */
static void soup_tensor(const derive_ctx *c, const mk_src_tensor *s, float *x)
{
    const mk_src_tensor *o = find_src(c->p2, s->desc->name);
    if (!o || o->desc->numel != s->desc->numel || !mk_is_float(o->desc->dtype))
        mk_die(MK_EXIT_USAGE, "soup: %s has no tensor %s of the same shape", c->p2->dir,
               s->desc->name);
    float *y = read_src(o);
    for (uint64_t i = 0; i < s->desc->numel; i++)
        x[i] = 0.5f * (x[i] + y[i]);
    free(y);
}

/* Apply the derivation to one tensor's values x (source shape); returns the output values
 * (t's shape), x itself or a new buffer. */
static float *transform(const derive_ctx *c, const mk_src_tensor *s, const mk_tensor *t, float *x,
                        uint64_t seed)
{
    const pa_tensor_desc *d = s->desc;
    const char *name = d->name;
    uint64_t rows = d->ndim >= 2 ? d->shape[0] : 1;
    uint64_t cols = d->ndim >= 2 ? d->numel / rows : d->numel;
    uint64_t last = d->ndim ? d->shape[d->ndim - 1] : 1;
    float *out;
    size_t k;
    uint32_t *idx;
    switch (c->kind) {
    case K_FINETUNE:
    case K_STUDENT:
    case K_NOISE:
        finetune(x, (size_t)d->numel, c->opt->drift, seed, name);
        return x;
    case K_ROTATE:
        if (c->p->gpt2)
            return rotate_gpt2_tensor(c, s, t, x, t->ndim >= 2 ? t->shape[0] : 1,
                                      t->ndim >= 2 ? t->numel / t->shape[0] : t->numel);
        return rotate_tensor(c, s, x, rows, cols);
    case K_SCALE:
        scale_tensor(c, s, x, rows, cols);
        return x;
    case K_SOUP:
        soup_tensor(c, s, x);
        return x;
    case K_LORA:
        lora(x, rows, cols, c, seed, name);
        return x;
    case K_QUANT_INT8:
        quantize(x, (size_t)d->numel, (size_t)last, (size_t)last, 127.0f, -127.0f);
        return x;
    case K_QUANT_Q4:
        quantize(x, (size_t)d->numel, (size_t)last, 32, 7.0f, -8.0f);
        return x;
    case K_PRUNE_MLP:
    case K_PERMUTE_MLP:
        idx = mlp_index(c, s->layer, mlp_width(s), &k);
        out = mk_alloc((size_t)t->numel, sizeof *out);
        if (d->ndim == 1)
            take_cols(x, 1, cols, idx, k, out);
        else if (mlp_axis(s) == 0)
            take_rows(x, cols, idx, k, out);
        else
            take_cols(x, rows, cols, idx, k, out);
        free(idx);
        return out;
    case K_PERMUTE_HEADS:
        out = mk_alloc((size_t)t->numel, sizeof *out);
        if (d->ndim == 1) {
            idx = head_index(c, s, cols);
            take_cols(x, 1, cols, idx, (size_t)cols, out);
        } else if (head_axis(s) == 0) {
            idx = head_index(c, s, rows);
            take_rows(x, cols, idx, (size_t)rows, out);
        } else {
            idx = head_index(c, s, cols);
            take_cols(x, rows, cols, idx, (size_t)cols, out);
        }
        free(idx);
        return out;
    case K_VOCAB_EXTEND:
        out = mk_alloc((size_t)t->numel, sizeof *out);
        embed_extend(x, rows, cols, c, seed, name, out);
        return out;
    default:
        return x;
    }
}

/* ---------------------------------------------------------------- writing */

#define COPY_CHUNK (8u << 20)

static void derive_produce(void *ctx, const mk_tensor *t, mk_sink *sink)
{
    const derive_ctx *c = ctx;
    const mk_src_tensor *s = t->src;
    if (!s) { /* upcycle's router */
        mk_sink_generate(sink, t, c->opt->seed, "upcycle-router");
        return;
    }
    const pa_tensor_desc *d = s->desc;
    if (c->kind == K_FORGE && mk_is_float(d->dtype)) {
        mk_sink_generate(sink, t, c->opt->seed, "forge");
        return;
    }
    bool change = transforms(c, s);
    if (!change && t->dtype == d->dtype) {
        uint64_t len = d->end - d->begin;
        uint8_t *buf = mk_alloc(len < COPY_CHUNK ? (size_t)len : COPY_CHUNK, 1);
        for (uint64_t off = 0; off < len; off += COPY_CHUNK) {
            size_t m = len - off < COPY_CHUNK ? (size_t)(len - off) : COPY_CHUNK;
            mk_parent_read(s, buf, off, m);
            mk_sink_bytes(sink, buf, m);
        }
        free(buf);
        return;
    }
    size_t nbytes = (size_t)(d->end - d->begin);
    uint8_t *raw = mk_alloc(nbytes, 1);
    mk_parent_read(s, raw, 0, nbytes);
    /* Per-tensor noise is keyed by the source's leading bytes too, so deriving twice with the
     * same --seed (a second-generation fine-tune) draws fresh noise, not the same pattern. */
    uint64_t salt = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < nbytes && i < 64; i++)
        salt = (salt ^ raw[i]) * 0x100000001B3ull;
    uint64_t seed = c->opt->seed ^ (salt * 0x9E3779B97F4A7C15ull);
    float *x = mk_alloc((size_t)d->numel, sizeof *x);
    pa_dtype_to_f32(d->dtype, raw, x, (size_t)d->numel);
    free(raw);
    float *y = change ? transform(c, s, t, x, seed) : x;
    mk_sink_floats(sink, y, (size_t)t->numel, t->dtype);
    if (y != x)
        free(y);
    free(x);
}

/* Name of the tensor in `rename` output. */
static char *renamed(const mk_parent *p, const mk_src_tensor *s)
{
    const char *name = s->desc->name;
    if (p->gpt2)
        return mk_printf("base_model.model.%s", name);
    static const struct {
        const char *from, *to;
    } globals[] = {{"model.embed_tokens.weight", "transformer.tok_embeddings.weight"},
                   {"model.norm.weight", "transformer.norm.weight"},
                   {"lm_head.weight", "output.weight"}},
      in_layer[] = {{"self_attn.q_proj.weight", "attn.wq.weight"},
                    {"self_attn.k_proj.weight", "attn.wk.weight"},
                    {"self_attn.v_proj.weight", "attn.wv.weight"},
                    {"self_attn.o_proj.weight", "attn.wo.weight"},
                    {"mlp.gate_proj.weight", "ffn.w1.weight"},
                    {"mlp.up_proj.weight", "ffn.w3.weight"},
                    {"mlp.down_proj.weight", "ffn.w2.weight"},
                    {"input_layernorm.weight", "attn_norm.weight"},
                    {"post_attention_layernorm.weight", "ffn_norm.weight"}};
    for (size_t i = 0; i < sizeof globals / sizeof globals[0]; i++)
        if (strcmp(name, globals[i].from) == 0)
            return mk_strdup(globals[i].to);
    const char *prefix = "model.layers.";
    size_t pl = strlen(prefix);
    if (s->layer >= 0 && strncmp(name, prefix, pl) == 0 && s->layer_at == pl) {
        const char *rest = name + pl + s->layer_len + 1;
        for (size_t i = 0; i < sizeof in_layer / sizeof in_layer[0]; i++)
            if (strcmp(rest, in_layer[i].from) == 0)
                return mk_printf("transformer.blocks.%d.%s", s->layer, in_layer[i].to);
    }
    return mk_strdup(name);
}

static char *renumbered(const mk_src_tensor *s, int out_layer)
{
    const char *name = s->desc->name;
    return mk_printf("%.*s%d%s", (int)s->layer_at, name, out_layer,
                     name + s->layer_at + s->layer_len);
}

/* kept[i] = the output number of layer i, or -1 when it is dropped. */
static int *layer_plan(const mk_parent *p, const derive_ctx *c)
{
    int n = p->layers;
    if (n == 0)
        mk_die(MK_EXIT_USAGE, "%s: no numbered layers found in the tensor names", p->dir);
    int *kept = mk_alloc((size_t)n, sizeof *kept);
    const mk_options *o = c->opt;
    if (c->kind == K_STUDENT) {
        for (int i = 0; i < n; i++)
            kept[i] = i % 2 == 0 ? i / 2 : -1;
        return kept;
    }
    if (o->given & MK_O_KEEP) {
        for (int i = 0; i < n; i++)
            kept[i] = -1;
        const char *q = o->keep;
        while (*q) {
            char *end;
            errno = 0;
            long v = strtol(q, &end, 10);
            if (errno || end == q || v < 0 || v >= n || (*end && *end != ','))
                mk_die(MK_EXIT_USAGE,
                       "--keep %s: expected comma-separated layer numbers in "
                       "[0, %d)",
                       o->keep, n);
            if (kept[v] == 0)
                mk_die(MK_EXIT_USAGE, "--keep %s: layer %ld listed twice", o->keep, v);
            kept[v] = 0;
            q = *end ? end + 1 : end;
        }
    } else {
        int64_t drop = (o->given & MK_O_DROP) ? o->drop : 1;
        if (drop >= n)
            mk_die(MK_EXIT_USAGE, "--drop %lld: the model has only %d layers", (long long)drop, n);
        for (int i = 0; i < n; i++)
            kept[i] = 0;
        for (int64_t i = 0; i < drop; i++) /* evenly spread: centres of drop equal bins */
            kept[(2 * i + 1) * n / (2 * drop)] = -1;
    }
    int next = 0;
    for (int i = 0; i < n; i++)
        if (kept[i] == 0)
            kept[i] = next++;
    if (next == 0)
        mk_die(MK_EXIT_USAGE, "--keep %s keeps no layer", o->keep);
    return kept;
}

/* Config keys holding one quantity, primary first. */
static const char *const keys_layers_llama[] = {"num_hidden_layers", "n_layer", NULL};
static const char *const keys_layers_gpt2[] = {"n_layer", "num_hidden_layers", NULL};
static const char *const keys_inter_llama[] = {"intermediate_size", "n_inner", NULL};
static const char *const keys_inter_gpt2[] = {"n_inner", "intermediate_size", NULL};
static const char *const keys_vocab[] = {"vocab_size", NULL};
static const char *const keys_hidden[] = {"hidden_size", "n_embd", "d_model", NULL};
static const char *const keys_heads[] = {"num_attention_heads", "n_head", NULL};
static const char *const keys_kv_heads[] = {"num_key_value_heads", NULL};
static const char *const keys_head_dim[] = {"head_dim", NULL};

/* Set every present alias (the primary one when none is present). */
static void config_set(mk_parent *p, char **config, size_t *len, const char *const *keys,
                       long long value)
{
    char literal[32];
    snprintf(literal, sizeof literal, "%lld", value);
    bool any = false;
    for (const char *const *k = keys; *k; k++)
        if (cJSON_GetObjectItemCaseSensitive(p->cfg, *k)) {
            mk_json_set(config, len, *k, literal);
            any = true;
        }
    if (!any)
        mk_json_set(config, len, keys[0], literal);
}

static int cmp_out_name(const void *a, const void *b)
{
    const mk_tensor *x = *(const mk_tensor *const *)a, *y = *(const mk_tensor *const *)b;
    return strcmp(x->name, y->name);
}

/* Output tensor list: names, shapes and dtypes after the derivation. */
static mk_tensor *plan_tensors(const mk_parent *p, const derive_ctx *c, const int *kept,
                               size_t *n_out)
{
    mk_tensor *out = mk_alloc(p->n, sizeof *out);
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++) {
        const mk_src_tensor *s = &p->t[i];
        const pa_tensor_desc *d = s->desc;
        int out_layer = s->layer;
        if (kept && s->layer >= 0) {
            out_layer = kept[s->layer];
            if (out_layer < 0)
                continue;
        }
        char *name = (kept && s->layer >= 0) ? renumbered(s, out_layer)
                     : c->kind == K_RENAME   ? renamed(p, s)
                                             : mk_strdup(d->name);
        pa_dtype dtype = d->dtype;
        bool change = transforms(c, s) || (c->kind == K_FORGE && mk_is_float(dtype));
        if (mk_is_float(dtype) && (c->opt->given & MK_O_DTYPE))
            dtype = c->opt->dtype;
        else if (change && !is_encodable(dtype))
            dtype = PA_DT_F32; /* F64 / F8 sources come out as F32 when their values change */
        uint64_t shape[PA_MAX_DIMS];
        memcpy(shape, d->shape, sizeof shape);
        if ((c->kind == K_PRUNE_MLP) && transforms(c, s)) {
            uint32_t axis = d->ndim == 1 ? 0 : (uint32_t)mlp_axis(s);
            shape[axis] = mlp_keep(c, shape[axis]);
        }
        if (c->kind == K_VOCAB_EXTEND && transforms(c, s))
            shape[0] += c->vocab_add;
        mk_tensor *t = &out[n++];
        mk_tensor_set(t, name, dtype, d->ndim, shape);
        free(name);
        t->src = s;
        t->role = s->role;
        t->init = s->bias ? MK_INIT_BIAS : s->role == MK_R_NORM ? MK_INIT_NORM : MK_INIT_WEIGHT;
    }
    if (c->kind == K_RENAME) {
        const mk_tensor **sorted = mk_alloc(n, sizeof *sorted);
        for (size_t i = 0; i < n; i++)
            sorted[i] = &out[i];
        qsort(sorted, n, sizeof *sorted, cmp_out_name);
        for (size_t i = 1; i < n; i++)
            if (strcmp(sorted[i]->name, sorted[i - 1]->name) == 0)
                mk_die(MK_EXIT_USAGE, "rename: two tensors would be named %s", sorted[i]->name);
        free(sorted);
    }
    *n_out = n;
    return out;
}

static void plan_one(mk_tensor *t, const derive_ctx *c, const mk_src_tensor *s, const char *name)
{
    pa_dtype dtype = s->desc->dtype;
    if (mk_is_float(dtype) && (c->opt->given & MK_O_DTYPE))
        dtype = c->opt->dtype;
    mk_tensor_set(t, name, dtype, s->desc->ndim, s->desc->shape);
    t->src = s;
    t->role = s->role;
    t->init = s->bias ? MK_INIT_BIAS : s->role == MK_R_NORM ? MK_INIT_NORM : MK_INIT_WEIGHT;
}

/* Output tensors of the kinds that assemble a model from whole tensors: stitch (layers below the
 * split, the embedding, final norm and head from the parent, the rest from --with), smuggle (all
 * of the parent, plus every tensor of --with under "smuggled.") and upcycle (each MLP matrix as
 * the same matrix in every expert, Mixtral names, plus a fresh router per layer). */
static mk_tensor *plan_assembled(const derive_ctx *c, size_t *n_out)
{
    const mk_parent *p = c->p, *p2 = c->p2;
    size_t experts = (size_t)c->opt->experts;
    size_t cap = p->n * (c->kind == K_UPCYCLE ? experts + 1 : 1) + (p2 ? p2->n : 0);
    mk_tensor *out = mk_alloc(cap, sizeof *out);
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++) {
        const mk_src_tensor *s = &p->t[i];
        if (c->kind == K_STITCH && s->layer >= c->split)
            continue;
        if (c->kind == K_UPCYCLE && s->layer >= 0 &&
            (s->role == MK_R_GATE || s->role == MK_R_UP || s->role == MK_R_DOWN) && !s->bias) {
            const char *w = s->role == MK_R_GATE ? "w1" : s->role == MK_R_DOWN ? "w2" : "w3";
            int pl = (int)(s->layer_at + s->layer_len);
            for (size_t e = 0; e < experts; e++) {
                char *name = mk_printf("%.*s.block_sparse_moe.experts.%zu.%s.weight", pl,
                                       s->desc->name, e, w);
                plan_one(&out[n++], c, s, name);
                free(name);
            }
            if (s->role == MK_R_GATE) { /* the router: experts x hidden */
                char *name = mk_printf("%.*s.block_sparse_moe.gate.weight", pl, s->desc->name);
                uint64_t shape[PA_MAX_DIMS] = {experts, s->desc->shape[1]};
                pa_dtype dtype = (c->opt->given & MK_O_DTYPE) ? c->opt->dtype : s->desc->dtype;
                if (!is_encodable(dtype))
                    dtype = PA_DT_F32;
                mk_tensor_set(&out[n], name, dtype, 2, shape);
                out[n].src = NULL;
                out[n].role = MK_R_OTHER;
                out[n].init = MK_INIT_WEIGHT;
                n++;
                free(name);
            }
            continue;
        }
        plan_one(&out[n++], c, s, s->desc->name);
    }
    if (p2)
        for (size_t i = 0; i < p2->n; i++) {
            const mk_src_tensor *s = &p2->t[i];
            if (c->kind == K_STITCH) {
                if (s->layer >= c->split)
                    plan_one(&out[n++], c, s, s->desc->name);
            } else {
                char *name = mk_printf("smuggled.%s", s->desc->name);
                plan_one(&out[n++], c, s, name);
                free(name);
            }
        }
    *n_out = n;
    return out;
}

static bool weight_file(const char *name)
{
    static const char *const suffixes[] = {".safetensors", ".safetensors.index.json",
                                           ".bin",         ".bin.index.json",
                                           ".pt",          ".pth",
                                           ".ckpt",        ".gguf",
                                           ".h5",          ".msgpack",
                                           ".onnx"};
    size_t len = strlen(name);
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++)
        if (mk_ends_with(name, len, suffixes[i]))
            return true;
    return false;
}

/* Copy the parent's regular top-level files (all of them, or all but weight files). */
static void copy_files(const char *from, const char *to, bool weights_too)
{
    struct dirent **list;
    int n = scandir(from, &list, NULL, alphasort);
    if (n < 0)
        mk_die(MK_EXIT_USAGE, "%s: cannot list: %s", from, strerror(errno));
    for (int i = 0; i < n; i++) {
        const char *name = list[i]->d_name;
        char *path = mk_join(from, name);
        struct stat st;
        if (name[0] != '.' && stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
            (weights_too || !weight_file(name)))
            mk_copy_file(path, to, name);
        free(path);
        free(list[i]);
    }
    free(list);
}

static bool same_dir(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

void mk_derive(const char *parent_dir, const char *out, const mk_options *given)
{
    mk_options o = *given;
    int kind = -1;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        if (strcmp(o.kind, kinds[k].name) == 0)
            kind = (int)k;
    if (kind < 0)
        mk_die(MK_EXIT_USAGE, "--kind %s: unknown (try --help)", o.kind);
    char what[64];
    snprintf(what, sizeof what, "--kind %s", o.kind);
    unsigned common = MK_O_KIND | MK_O_SEED | MK_O_DTYPE | MK_O_SHARDS;
    if (kind == K_COPY)
        common = MK_O_KIND | MK_O_SEED;
    mk_refuse_options(&o, common | kinds[kind].options, what);
    if (kind == K_CONVERT && !(o.given & MK_O_DTYPE))
        mk_die(MK_EXIT_USAGE, "--kind convert needs --dtype");
    if (kind == K_RESHARD && !(o.given & MK_O_SHARDS))
        mk_die(MK_EXIT_USAGE, "--kind reshard needs --shards");
    if ((o.given & MK_O_DROP) && (o.given & MK_O_KEEP))
        mk_die(MK_EXIT_USAGE, "--drop and --keep exclude each other");
    if (!(o.given & MK_O_SEED))
        o.seed = 1;
    if (!(o.given & MK_O_DRIFT))
        o.drift = 0.02;
    if (!(o.given & MK_O_RANK))
        o.rank = 8;
    if (!(o.given & MK_O_SCALE))
        o.scale = 1.0;
    if (!(o.given & MK_O_KEEP_FRAC))
        o.keep_frac = 0.75;
    if (!(o.given & MK_O_ADD))
        o.add = 64;
    if (!(o.given & MK_O_EXPERTS))
        o.experts = 4;
    if (kind == K_NOISE && !(o.given & MK_O_DRIFT))
        o.drift = 0.1;
    bool two = kind == K_SMUGGLE || kind == K_SOUP || kind == K_STITCH;
    if (two && !(o.given & MK_O_WITH))
        mk_die(MK_EXIT_USAGE, "--kind %s needs --with DIR", o.kind);

    mk_parent p;
    mk_parent_load(&p, parent_dir);
    if (same_dir(parent_dir, out))
        mk_die(MK_EXIT_USAGE, "%s: the output directory is the parent", out);
    if (kind == K_PEFT) {
        mk_derive_peft(&p, parent_dir, out, &o);
        mk_parent_free(&p);
        return;
    }
    if (kind == K_COPY) {
        mk_make_dir(out);
        mk_remove_stale(out, p.n_shards);
        copy_files(parent_dir, out, true);
        mk_parent_free(&p);
        return;
    }

    derive_ctx c = {.p = &p, .opt = &o, .kind = kind, .vocab_add = (size_t)o.add};
    mk_parent p2;
    if (two) {
        mk_parent_load(&p2, o.with);
        c.p2 = &p2;
        if (same_dir(o.with, out))
            mk_die(MK_EXIT_USAGE, "%s: the output directory is the --with model", out);
        if (kind == K_STITCH) {
            if (p.layers < 2 || p2.layers != p.layers)
                mk_die(MK_EXIT_USAGE, "stitch: %s and %s need the same number (>= 2) of layers",
                       parent_dir, o.with);
            c.split = p.layers / 2;
        }
    }
    if ((kind == K_SCALE || kind == K_UPCYCLE) && p.gpt2)
        mk_die(MK_EXIT_USAGE, "--kind %s needs a llama-layout parent (RMSNorm, gated MLP)", o.kind);
    if (kind == K_ROTATE && p.gpt2) {
        c.hidden = mk_cfg_int(&p, keys_hidden, 0);
        if (c.hidden < 2 || c.hidden > 8192)
            mk_die(MK_EXIT_USAGE, "%s/config.json: rotate needs a hidden size in [2, 8192]",
                   parent_dir);
        for (size_t i = 0; i < p.n; i++)
            if (p.t[i].role == MK_R_LM_HEAD)
                mk_die(MK_EXIT_USAGE, "%s: rotate expects GPT-2's tied lm_head", parent_dir);
        c.rot = random_rotation_centred(o.seed, c.hidden);
    } else if (kind == K_ROTATE) {
        c.hidden = mk_cfg_int(&p, keys_hidden, 0);
        if (c.hidden < 1 || c.hidden > 8192)
            mk_die(MK_EXIT_USAGE, "%s/config.json: rotate needs a hidden size in [1, 8192]",
                   parent_dir);
        bool head = false;
        for (size_t i = 0; i < p.n; i++)
            head |= p.t[i].role == MK_R_LM_HEAD;
        if (!head)
            mk_die(MK_EXIT_USAGE, "%s: rotate needs an untied lm_head (the final norm folds into it)",
                   parent_dir);
        c.rot = random_rotation(o.seed, c.hidden);
    }
    if (kind == K_PERMUTE_HEADS || kind == K_SCALE) {
        int64_t hidden = mk_cfg_int(&p, keys_hidden, 0);
        c.heads = mk_cfg_int(&p, keys_heads, 0);
        if (!hidden || !c.heads)
            mk_die(MK_EXIT_USAGE,
                   "%s/config.json: permute-heads needs the hidden size and the "
                   "number of attention heads",
                   parent_dir);
        c.kv_heads = p.gpt2 ? c.heads : mk_cfg_int(&p, keys_kv_heads, c.heads);
        c.head_dim = mk_cfg_int(&p, keys_head_dim, hidden / c.heads);
        if (c.heads % c.kv_heads)
            mk_die(MK_EXIT_USAGE, "%s/config.json: %lld heads are not a multiple of %lld KV heads",
                   parent_dir, (long long)c.heads, (long long)c.kv_heads);
        if (kind == K_PERMUTE_HEADS && (p.gpt2 ? c.heads : c.kv_heads) < 2)
            mk_die(MK_EXIT_USAGE, "%s: permute-heads needs at least two %s heads", parent_dir,
                   p.gpt2 ? "attention" : "key/value");
    }
    int *kept = (kind == K_PRUNE_LAYERS || kind == K_STUDENT) ? layer_plan(&p, &c) : NULL;
    size_t n_out;
    mk_tensor *ts = (kind == K_STITCH || kind == K_SMUGGLE || kind == K_UPCYCLE)
                        ? plan_assembled(&c, &n_out)
                        : plan_tensors(&p, &c, kept, &n_out);
    if (kind == K_ROTATE && p.gpt2) {
        /* the final LayerNorm folds into the head: GPT-2's tied head becomes lm_head.weight */
        const mk_src_tensor *wte = NULL;
        for (size_t i = 0; i < p.n; i++)
            if (p.t[i].role == MK_R_EMBED && p.t[i].desc->ndim == 2)
                wte = &p.t[i];
        if (!wte)
            mk_die(MK_EXIT_USAGE, "%s: rotate: no embedding tensor found", parent_dir);
        mk_tensor *grown = realloc(ts, (n_out + 1) * sizeof *ts);
        if (!grown)
            mk_die(MK_EXIT_IO, "out of memory");
        ts = grown;
        memset(&ts[n_out], 0, sizeof ts[n_out]);
        plan_one(&ts[n_out], &c, wte, "lm_head.weight");
        ts[n_out].role = MK_R_LM_HEAD;
        n_out++;
    }
    if ((o.given & MK_O_SHARDS) && (size_t)o.shards > n_out)
        mk_die(MK_EXIT_USAGE, "--shards %lld: the model has only %zu tensors", (long long)o.shards,
               n_out);

    /* config.json and tokenizer files: forge copies them byte for byte, others edit in place */
    char *config = mk_alloc(p.config_len + 1, 1);
    memcpy(config, p.config, p.config_len);
    size_t config_len = p.config_len;
    char *tokenizer = NULL;
    if (kind != K_FORGE) {
        if (o.given & MK_O_DTYPE) {
            char literal[32];
            snprintf(literal, sizeof literal, "\"%s\"", mk_torch_dtype(o.dtype));
            mk_json_set(&config, &config_len, "torch_dtype", literal);
        }
        if (kept) {
            int n_layers = 0;
            for (int i = 0; i < p.layers; i++)
                n_layers += kept[i] >= 0;
            config_set(&p, &config, &config_len, p.gpt2 ? keys_layers_gpt2 : keys_layers_llama,
                       n_layers);
        }
        if (kind == K_PRUNE_MLP) {
            for (size_t i = 0; i < n_out; i++)
                if (ts[i].role == MK_R_GATE ||
                    (ts[i].role == MK_R_FC && !((const mk_src_tensor *)ts[i].src)->bias)) {
                    uint64_t width = ts[i].shape[ts[i].role == MK_R_GATE ? 0 : 1];
                    config_set(&p, &config, &config_len,
                               p.gpt2 ? keys_inter_gpt2 : keys_inter_llama, (long long)width);
                    break;
                }
        }
        if (kind == K_ROTATE && p.gpt2)
            mk_json_set(&config, &config_len, "tie_word_embeddings", "false");
        if (kind == K_UPCYCLE) {
            char literal[32];
            snprintf(literal, sizeof literal, "%lld", (long long)o.experts);
            mk_json_set(&config, &config_len, "num_local_experts", literal);
            mk_json_set(&config, &config_len, "num_experts_per_tok", "2");
            mk_json_set(&config, &config_len, "model_type", "\"mixtral\"");
            mk_json_set(&config, &config_len, "architectures", "[\"MixtralForCausalLM\"]");
        }
        if (kind == K_VOCAB_EXTEND) {
            uint64_t rows = 0;
            for (size_t i = 0; i < n_out; i++)
                if (ts[i].role == MK_R_EMBED && ts[i].ndim == 2)
                    rows = ts[i].shape[0];
            if (!rows)
                mk_die(MK_EXIT_USAGE, "%s: vocab-extend: no embedding tensor found", parent_dir);
            config_set(&p, &config, &config_len, keys_vocab, (long long)rows);
            char *path = mk_join(parent_dir, "tokenizer.json");
            size_t len;
            char *text = mk_read_file(path, &len);
            tokenizer = mk_tokenizer_extend(text, len, path, p.gpt2, o.seed, c.vocab_add);
            free(text);
            free(path);
        }
    }

    /* everything is checked: only now touch the output directory */
    mk_make_dir(out);
    copy_files(parent_dir, out, false);
    mk_write_file(out, "config.json", config, config_len);
    if (tokenizer)
        mk_write_file(out, "tokenizer.json", tokenizer, strlen(tokenizer));
    size_t shards = (o.given & MK_O_SHARDS) ? (size_t)o.shards : p.n_shards;
    if (!(o.given & MK_O_SHARDS) && shards > n_out)
        shards = n_out;
    mk_write_weights(out, ts, n_out, shards, derive_produce, &c);

    mk_tensors_free(ts, n_out);
    free(tokenizer);
    free(config);
    free(kept);
    free(c.rot);
    if (two)
        mk_parent_free(&p2);
    mk_parent_free(&p);
}
