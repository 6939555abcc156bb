/* mkmodel (private): what the tool's files share — option set, deterministic random numbers,
 * the streaming safetensors writer, JSON and file helpers, the synthetic tokenizer and the
 * derivations. Everything is deterministic: the same arguments give byte-identical output. */
#ifndef MKMODEL_H
#define MKMODEL_H

#include "provfs/analyzer.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- options */

/* Which options the user gave, so a command can refuse those that do not apply. */
enum {
    MK_O_SEED = 1u << 0,
    MK_O_HIDDEN = 1u << 1,
    MK_O_LAYERS = 1u << 2,
    MK_O_HEADS = 1u << 3,
    MK_O_KV_HEADS = 1u << 4,
    MK_O_INTER = 1u << 5,
    MK_O_VOCAB = 1u << 6,
    MK_O_MAX_POS = 1u << 7,
    MK_O_DTYPE = 1u << 8,
    MK_O_SHARDS = 1u << 9,
    MK_O_TOK_SEED = 1u << 10,
    MK_O_TIE = 1u << 11,
    MK_O_ARCH = 1u << 12,
    MK_O_KIND = 1u << 13,
    MK_O_DRIFT = 1u << 14,
    MK_O_RANK = 1u << 15,
    MK_O_SCALE = 1u << 16,
    MK_O_DROP = 1u << 17,
    MK_O_KEEP = 1u << 18,
    MK_O_KEEP_FRAC = 1u << 19,
    MK_O_ADD = 1u << 20,
    MK_O_WITH = 1u << 21,
    MK_O_EXPERTS = 1u << 22,
    MK_O_SPM = 1u << 23,
};

typedef struct mk_options {
    unsigned given; /* MK_O_* bits */
    const char *arch;
    uint64_t seed, tok_seed;
    int64_t hidden, layers, heads, kv_heads, inter, vocab, max_pos;
    pa_dtype dtype;
    int64_t shards;
    bool tie;
    bool spm; /* create: tokenizer.model (SentencePiece) instead of tokenizer.json */
    const char *kind;
    double drift, scale, keep_frac;
    int64_t rank, drop, add, experts;
    const char *with; /* second parent (soup, stitch) or payload model (smuggle) */
    const char *keep; /* "0,1,3" */
} mk_options;

/* Die naming the first given option outside allowed (MK_O_* bits). */
void mk_refuse_options(const mk_options *opt, unsigned allowed, const char *what);

/* ---------------------------------------------------------------- errors and memory */

enum { MK_EXIT_IO = 1, MK_EXIT_USAGE = 2 };

/* Print "mkmodel: message" on one line and exit. A partially written output file (see
 * mk_partial_set) is removed first and the message says so. */
_Noreturn void mk_die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mk_partial_set(const char *path); /* NULL when the file is complete */

void *mk_alloc(size_t count, size_t size); /* zeroed, overflow-checked, dies on failure */
void *mk_grow(void *ptr, size_t *cap, size_t need, size_t size);
char *mk_strdup(const char *s);
char *mk_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---------------------------------------------------------------- random numbers */

/* xoshiro256** seeded through splitmix64; every tensor gets its own stream keyed by
 * (seed, tag, name), so values never depend on generation order. */
typedef struct mk_rng {
    uint64_t s[4];
} mk_rng;

uint64_t mk_hash(uint64_t seed, const char *tag, const char *name);
void mk_rng_init(mk_rng *rng, uint64_t seed, const char *tag, const char *name);

static inline uint64_t mk_rng_next(mk_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t x = s[1] * 5;
    uint64_t result = ((x << 7) | (x >> 57)) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

/* Uniform in [0, n) (n > 0); the tiny modulo bias does not matter here. */
static inline uint64_t mk_rng_below(mk_rng *rng, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)mk_rng_next(rng) * n) >> 64);
}

/* Approximate N(0, 1): Irwin–Hall sum of four 16-bit uniforms from one draw, rescaled to unit
 * variance. One generator call per value is what makes a 2 GiB model take seconds. */
static inline float mk_rng_normal(mk_rng *rng)
{
    uint64_t u = mk_rng_next(rng);
    uint32_t sum = (uint32_t)(u & 0xFFFF) + (uint32_t)((u >> 16) & 0xFFFF) +
                   (uint32_t)((u >> 32) & 0xFFFF) + (uint32_t)(u >> 48);
    /* each (k + 0.5) / 65536 is uniform on (0,1) with mean 1/2; four have variance 1/3 */
    return ((float)sum + 2.0f) * (1.7320508f / 65536.0f) - 2.0f * 1.7320508f;
}

/* dst[i] = mean + std * N(0,1) */
void mk_fill_normal(mk_rng *rng, float *dst, size_t n, float mean, float std);
/* dst[i] += std * N(0,1) */
void mk_add_normal(mk_rng *rng, float *dst, size_t n, float std);
/* perm = a uniformly random permutation of 0..n-1 */
void mk_permutation(mk_rng *rng, uint32_t *perm, size_t n);

/* ---------------------------------------------------------------- safetensors writer */

typedef struct mk_tensor {
    char *name;
    pa_dtype dtype;
    uint32_t ndim;
    uint64_t shape[PA_MAX_DIMS];
    uint64_t numel, nbytes;
    size_t shard;    /* filled by mk_write_weights */
    uint64_t begin;  /* offset inside its shard's data section, filled by mk_write_weights */
    int init;        /* MK_INIT_* for generated tensors */
    const void *src; /* derive: the parent tensor (mk_src_tensor) it comes from */
    int role;        /* derive: the source's mk_role */
} mk_tensor;

enum { MK_INIT_WEIGHT, MK_INIT_NORM, MK_INIT_BIAS };

/* Set name, dtype and shape; computes numel and nbytes, dies on overflow. */
void mk_tensor_set(mk_tensor *t, const char *name, pa_dtype dtype, uint32_t ndim,
                   const uint64_t *shape);
void mk_tensors_free(mk_tensor *ts, size_t n);

typedef struct mk_sink mk_sink;
void mk_sink_bytes(mk_sink *sink, const void *data, size_t len);
/* Encode n floats as dtype (F32, F16 or BF16) and write them. */
void mk_sink_floats(mk_sink *sink, const float *src, size_t n, pa_dtype dtype);
/* Stream a freshly initialised tensor (weights N(0,0.02), norms 1+N(0,0.05), biases N(0,0.01))
 * from the stream keyed by (seed, tag, t->name). */
void mk_sink_generate(mk_sink *sink, const mk_tensor *t, uint64_t seed, const char *tag);

/* Called once per tensor, in file order; must write exactly t->nbytes. */
typedef void (*mk_produce_fn)(void *ctx, const mk_tensor *t, mk_sink *sink);

/* Write model.safetensors (shards == 1) or model-0000i-of-0000N.safetensors plus
 * model.safetensors.index.json into dir, tensors in the given order, shards balanced by bytes.
 * Removes stale weight files of the other layout. */
void mk_write_weights(const char *dir, mk_tensor *ts, size_t n, size_t shards, mk_produce_fn fn,
                      void *ctx);

/* Remove weight files of the other layout (model.safetensors vs model-0000i-of-0000N.*). */
void mk_remove_stale(const char *dir, size_t shards);

/* ---------------------------------------------------------------- files and JSON */

void mk_make_dir(const char *dir);
char *mk_join(const char *dir, const char *name);
void mk_write_file(const char *dir, const char *name, const void *data, size_t len);
void mk_copy_file(const char *src_path, const char *dir, const char *name);
/* Read a whole file; dies with MK_EXIT_USAGE (unreadable input) on failure. */
char *mk_read_file(const char *path, size_t *len);
cJSON *mk_parse_json(const char *text, size_t len, const char *label);
/* Hugging Face style pretty JSON: two-space indent, raw UTF-8, integers without a fraction. */
char *mk_json_pretty(const cJSON *v);
/* Replace the value of a top-level key in JSON text by literal (or append the key when absent),
 * leaving every other byte as it was. */
void mk_json_set(char **text, size_t *len, const char *key, const char *literal);
/* JSON string literal for s (ASCII-safe escapes for control characters). */
char *mk_json_quote(const char *s);

const char *mk_torch_dtype(pa_dtype dtype); /* "float32", "float16", "bfloat16" */

/* ---------------------------------------------------------------- tokenizer */

/* Smallest vocabulary the synthetic tokenizer can fill (specials, bytes, base characters). */
size_t mk_tokenizer_min_vocab(bool gpt2);
/* tokenizer.json with exactly vocab_size tokens, a function of (gpt2, tok_seed, vocab_size). */
char *mk_tokenizer_json(bool gpt2, uint64_t tok_seed, size_t vocab_size);
char *mk_tokenizer_config_json(bool gpt2, int64_t max_pos);
/* tokenizer.model (SentencePiece protobuf, BPE with byte fallback) holding the pieces of a
 * tokenizer.json text in id order: added special tokens as control (<unk> as unknown), byte
 * pieces <0xNN> as byte, the rest normal with score -id. Returns the bytes; dies on bad input. */
uint8_t *mk_spm_model(const char *json, size_t len, const char *label, size_t *out_len);
/* Append add new tokens (each with a merge of two existing tokens) to a tokenizer.json text. */
char *mk_tokenizer_extend(const char *json, size_t len, const char *label, bool gpt2, uint64_t seed,
                          size_t add);

/* ---------------------------------------------------------------- parent model (derive) */

/* What a tensor is, from its name (Hugging Face llama and gpt2 names, and `rename` output). */
enum mk_role {
    MK_R_OTHER,
    MK_R_EMBED,
    MK_R_POS,
    MK_R_LM_HEAD,
    MK_R_Q,
    MK_R_K,
    MK_R_V,
    MK_R_O,
    MK_R_QKV,
    MK_R_ATTN_PROJ,
    MK_R_GATE,
    MK_R_UP,
    MK_R_DOWN,
    MK_R_FC,
    MK_R_MLP_PROJ,
    MK_R_NORM
};

typedef struct mk_src_shard {
    char *path;
    int fd;
    pa_st_header hdr;
} mk_src_shard;

typedef struct mk_src_tensor {
    const pa_tensor_desc *desc;
    const mk_src_shard *shard;
    int role;
    bool bias;
    int layer;                  /* -1 outside the layer stack */
    size_t layer_at, layer_len; /* where the layer number sits in the name */
} mk_src_tensor;

typedef struct mk_parent {
    const char *dir;
    char *config;
    size_t config_len;
    cJSON *cfg;
    bool gpt2;
    mk_src_shard *shards;
    size_t n_shards;
    mk_src_tensor *t;
    size_t n;
    int layers; /* 1 + highest layer number */
} mk_parent;

/* Load config.json and the headers of model.safetensors or of every shard the index names; dies
 * with MK_EXIT_USAGE when the parent is unreadable. */
void mk_parent_load(mk_parent *p, const char *dir);
void mk_parent_free(mk_parent *p);
/* Read len bytes of a tensor's data starting off bytes into it. */
void mk_parent_read(const mk_src_tensor *s, void *dst, uint64_t off, size_t len);
/* First present, non-null key of a config.json alias list (NULL-terminated); fallback when none. */
int64_t mk_cfg_int(const mk_parent *p, const char *const *keys, int64_t fallback);
/* derive --kind peft (mkmodel_peft.c): a PEFT LoRA adapter folder for the parent. */
void mk_derive_peft(const mk_parent *p, const char *parent_dir, const char *out,
                    const mk_options *o);
bool mk_is_float(pa_dtype dtype);
bool mk_ends_with(const char *s, size_t len, const char *suffix);

/* ---------------------------------------------------------------- commands */

void mk_create(const char *out, const mk_options *opt);
void mk_derive(const char *parent, const char *out, const mk_options *opt);

#endif
