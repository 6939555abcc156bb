/* Internal layout of a fingerprint, shared by fingerprint.c (builds it), fpjson.c (serialises it),
 * signals.c and score.c (compare two). Nothing here is public API. */
#ifndef PA_FP_H
#define PA_FP_H
#include "provfs/analyzer.h"

/* Sketch sizes. They are part of the fingerprint format: changing one changes the schema version. */
#define PA_SK_MARGINAL 256 /* entries kept of a row-sum / column-sum vector */
#define PA_SK_BLOCK_R 16   /* sampled rows of a matrix */
#define PA_SK_BLOCK_C 32   /* sampled columns of a matrix */
#define PA_SK_NORMVEC 256  /* entries kept of a 1-D norm vector */
#define PA_SK_ANCHORS 128  /* anchor tokens (bottom-k by token-string hash) */
#define PA_SK_ANCHOR_C 64  /* sampled columns of an anchor row */
#define PA_SK_VOCAB 4096   /* bottom-k token-string hashes kept for VOA */
#define PA_SK_END_BINS 20
#define PA_SK_PROBE 8         /* probe tokens: the first anchors by token-string hash */
#define PA_SK_PROBE_LAYERS 16 /* blocks with invariant products, evenly spaced */
#define PA_PROBE_TERMS 3      /* per block: attention q·k, attention v·o, MLP up·down */
#define PA_PROBE_VERSION 1
#define PA_FP_MAX_TENSORS 65536u /* a fingerprint must stay small; more is refused */

/* The compact form (compact.c): what comparing keeps of the sketches above. Every fingerprint is
 * made compact once built or read, so a fresh one and a stored one compare alike. */
#define PA_CK_MARGINAL 64 /* entries kept of a row-sum / column-sum vector */
#define PA_CK_BLOCK_R 8   /* rows kept of a sampled block */
#define PA_CK_BLOCK_C 16  /* columns kept of a sampled block */
#define PA_CK_NORMVEC 64  /* entries kept of a 1-D sample */
#define PA_CK_ANCHOR_C 32 /* sampled columns kept of an anchor row */
#define PA_CK_VERSION 1
#define PA_CK_BLOCK_LEVELS 2047 /* block values: 12 bits (distances between close relatives) */
#define PA_CK_LEVELS 127        /* every other vector: 8 bits (correlations) */
#define PA_Q_ZERO (-128)        /* exponent of an all-zero vector */

typedef struct pa_vec {
    uint32_t n;
    float *v;
} pa_vec;

typedef struct pa_tensor_fp {
    char *name;
    char *role;    /* canonical role (attn_q.w, mlp_up.w, embed.w, ...) or "x:" + name pattern */
    int32_t layer; /* -1 when not in a numbered block */
    pa_dtype dtype;      /* PA_DT_COUNT for GGUF tensors */
    bool ggml;           /* stored as ggml blocks (GGUF) */
    uint32_t ggml_type;  /* PA_GGML_* when ggml */
    uint32_t ndim;
    uint64_t shape[PA_MAX_DIMS]; /* Hugging Face order (rows first) */
    uint64_t numel;
    uint8_t sha[32];
    bool decoded;          /* values were decoded (dtype decodable) */
    uint64_t n_nonfinite;
    double mean, std, l2, min, max;
    /* 2-D view [rows, cols] of matrices (ndim >= 2: rows = shape[0], cols = the rest). */
    uint64_t rows, cols;
    pa_vec colsum; /* sum over all rows, at PA_SK_MARGINAL evenly spaced columns */
    pa_vec rowsum; /* sum over all columns, at evenly spaced rows */
    pa_vec block;  /* PA_SK_BLOCK_R x PA_SK_BLOCK_C values at evenly spaced rows and columns */
    uint32_t block_r, block_c;
    pa_vec sample; /* 1-D tensors: evenly spaced entries (norm vectors, biases) */
} pa_tensor_fp;

typedef struct pa_embed_fp {
    bool present;
    char *tensor;     /* name of the embedding tensor */
    uint64_t rows, cols;
    double norm_min, norm_max;
    float end_hist[PA_SK_END_BINS]; /* normalised histogram of row L2 norms */
    uint32_t n_anchors;
    uint64_t anchor_hash[PA_SK_ANCHORS]; /* token-string hash (or id hash without a tokenizer) */
    float *anchor_cos;  /* n_anchors x n_anchors cosine matrix (full, row-major) */
    float *anchor_rows; /* n_anchors x anchor_c sampled columns */
    uint32_t anchor_c;
} pa_embed_fp;

/* Invariant products (signals.c explains them): for each sampled block, PA_PROBE_TERMS m x m
 * matrices over the probe tokens' embedding rows. */
typedef struct pa_probe_fp {
    uint32_t m;                   /* probe tokens (<= PA_SK_PROBE), 0 when not computed */
    uint64_t hash[PA_SK_PROBE];   /* their token-string hashes */
    uint32_t n_layers;
    int32_t *layer;               /* block number of each entry */
    uint8_t *have;                /* bit t set: term t was computed */
    float *prod;                  /* n_layers x PA_PROBE_TERMS x m x m */
} pa_probe_fp;

struct pa_fingerprint {
    char *path;
    char format[32];
    char digest[65];
    size_t n_files;
    pa_file_fp *files;
    bool has_mfi;
    pa_mfi mfi;
    bool has_tfv;
    pa_tfv tfv;
    uint64_t vocab_n;     /* unique token strings */
    uint32_t vocab_k;     /* entries in vocab_hashes (bottom-k, sorted ascending) */
    uint64_t *vocab_hashes;
    bool has_weights;
    uint64_t n_params;
    size_t n_tensors;
    pa_tensor_fp *tensors; /* sorted by name */
    uint32_t n_layers;     /* 1 + highest layer index seen */
    pa_embed_fp embed;
    pa_probe_fp probe;
    uint64_t weight_bytes;
    bool compact; /* pa_fp_compact ran: sketches at PA_CK_* sizes, values on 8-bit grids */
    bool grid;    /* most matrices hold int8-grid values (found before compacting) */
};

struct pa_unit;
/* The weights pass (stream.c): tensor table, per-tensor SHA-256 and sketches, whole-file SHA-256
 * of files the caller did not supply, embedding anchors; tok (may be NULL) picks the anchors. */
pa_status pa_stream_weights(pa_fingerprint *fp, struct pa_unit *u, const pa_tokenizer *tok,
                            const pa_fp_options *opt, pa_error *err);

/* Canonical role of a tensor name; writes role (malloc'd) and layer. */
char *pa_role_of(const char *name, int32_t *layer);

/* Vector helpers (signals.c). NaN when not computable. */
double pa_pearson(const float *a, const float *b, size_t n);
double pa_cosine(const float *a, const float *b, size_t n);

/* Lineage comparison internals (signals.c): fills the signal fields of out. */
void pa_signals_compute(const pa_fingerprint *a, const pa_fingerprint *b, pa_compare_result *out);

/* A cheap first look for scanning many candidates (~1/50 of pa_compare): the larger of the
 * anchor-row agreement and the mean agreement of up to 8 same-named matrices. NaN when either is
 * missing (renamed tensors, another width): then only a full comparison can tell. A low value
 * rules lineage out: derivations keep at least the embedding rows or the named matrices. */
double pa_lineage_quick(const pa_fingerprint *a, const pa_fingerprint *b);

void pa_tensor_fp_free(pa_tensor_fp *t);

/* Vectors on a grid (compact.c): v[i] = q[i] * 2^e with |q[i]| <= L (PA_CK_LEVELS or
 * PA_CK_BLOCK_LEVELS) and max |q| > L / 2, e in [-127, pa_q_exponent_max(L)] (121 or 117), or
 * e = PA_Q_ZERO when every value is 0; larger values saturate at L x 2^max. A vector already on its grid keeps the same e and q, so compacting twice changes
 * nothing. */
int pa_q_exponent(const float *v, uint32_t n, int levels);
int pa_q_exponent_max(int levels);
void pa_q_encode(const float *v, uint32_t n, int e, int levels, int16_t *q);
void pa_q_decode(const int16_t *q, uint32_t n, int e, float *v);

/* Round every sketch to the compact form in place (idempotent). False when out of memory. */
bool pa_fp_compact(pa_fingerprint *fp);
#endif
