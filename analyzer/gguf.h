/* GGUF (llama.cpp / ggml model files): header parser, ggml block codecs, and the mapping of GGUF
 * metadata and names onto the Hugging Face layout the rest of the analyzer speaks (private).
 *
 * Layout (versions 2 and 3; little-endian only): "GGUF", u32 version, u64 n_tensors, u64 n_kv,
 * n_kv key/value pairs, n_tensors tensor infos (name, u32 n_dims, u64 ne[n_dims], u32 type,
 * u64 offset), padding to general.alignment (default 32), then the data section. Every count and
 * length in it is hostile: each is checked against the bytes that remain before anything is
 * allocated for it.
 *
 * Streaming use: parse the header (pa_gguf_read), then for each tensor pread [offset,
 * offset + nbytes) in pieces of whole blocks and decode each piece with pa_gguf_dequant. Blocks
 * never straddle rows: ne[0] (the row length) is a multiple of the block size, checked here.
 */
#ifndef PA_GGUF_H
#define PA_GGUF_H

#include "provfs/analyzer.h"

#include <cjson/cJSON.h>

/* ---------------------------------------------------------------- ggml types */

/* Type ids as the GGUF format numbers them (ggml's enum ggml_type). Ids 4, 5, 31-33 and 36-38
 * were retired by ggml and are unknown here. */
enum {
    PA_GGML_F32 = 0,
    PA_GGML_F16 = 1,
    PA_GGML_Q4_0 = 2,
    PA_GGML_Q4_1 = 3,
    PA_GGML_Q5_0 = 6,
    PA_GGML_Q5_1 = 7,
    PA_GGML_Q8_0 = 8,
    PA_GGML_Q8_1 = 9,
    PA_GGML_Q2_K = 10,
    PA_GGML_Q3_K = 11,
    PA_GGML_Q4_K = 12,
    PA_GGML_Q5_K = 13,
    PA_GGML_Q6_K = 14,
    PA_GGML_Q8_K = 15,
    PA_GGML_IQ2_XXS = 16,
    PA_GGML_IQ2_XS = 17,
    PA_GGML_IQ3_XXS = 18,
    PA_GGML_IQ1_S = 19,
    PA_GGML_IQ4_NL = 20,
    PA_GGML_IQ3_S = 21,
    PA_GGML_IQ2_S = 22,
    PA_GGML_IQ4_XS = 23,
    PA_GGML_I8 = 24,
    PA_GGML_I16 = 25,
    PA_GGML_I32 = 26,
    PA_GGML_I64 = 27,
    PA_GGML_F64 = 28,
    PA_GGML_IQ1_M = 29,
    PA_GGML_BF16 = 30,
    PA_GGML_TQ1_0 = 34,
    PA_GGML_TQ2_0 = 35,
    PA_GGML_MXFP4 = 39,
    PA_GGML_NVFP4 = 40,
    PA_GGML_Q1_0 = 41,
    PA_GGML_TYPE_COUNT = 42
};

/* Known: the type has a block layout (so tensor sizes can be checked). Unknown ids are a parse
 * error; known ones that cannot be decoded are reported by the caller as unsupported. */
bool pa_gguf_type_known(uint32_t type);
/* Decodable by pa_gguf_dequant: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K. */
bool pa_gguf_type_supported(uint32_t type);
/* "Q4_K", "BF16", ...; "?" for unknown ids. */
const char *pa_gguf_type_name(uint32_t type);
/* Elements per block (1 for F32/F16/BF16, 32 for Q4_0..Q8_1, 256 for the K types); 0 if unknown. */
size_t pa_gguf_block_elems(uint32_t type);
/* Bytes per block; 0 if unknown. */
size_t pa_gguf_block_bytes(uint32_t type);
/* Bytes of n elements of type: false when the type is unknown, n is not a multiple of the block
 * size or the size overflows. */
bool pa_gguf_nbytes(uint32_t type, uint64_t n_elems, uint64_t *nbytes);

/* Decode n_elems values (a multiple of the block size) from exactly nbytes of blocks. Errors:
 * PA_E_UNSUPPORTED for a type that is not supported, PA_E_ARG for sizes that do not match. Scales
 * that are NaN or Inf in the file decode to NaN/Inf values; nothing here reads outside src. */
pa_status pa_gguf_dequant(uint32_t type, const void *src, size_t nbytes, float *dst, size_t n_elems,
                          pa_error *err);

/* Encode n floats (a multiple of the block size) as F32, F16, BF16, Q8_0, Q4_0, Q4_K or Q6_K into
 * dst (cap bytes). Round to nearest with a per-block scale search; the output decodes with
 * pa_gguf_dequant. Returns the bytes written, or 0 when the type is not one of those, n is 0 or
 * not a multiple of the block size, or cap is too small. Non-finite inputs give unspecified (but
 * defined) blocks. */
size_t pa_gguf_quantize(uint32_t type, const float *src, size_t n, void *dst, size_t cap);

/* ---------------------------------------------------------------- header */

#define PA_GGUF_MAX_DIMS 4
/* Hard limits for untrusted headers; beyond them a file is refused (PA_E_LIMIT). */
#define PA_GGUF_MAX_TENSORS 1000000u
#define PA_GGUF_MAX_KV 100000u
#define PA_GGUF_MAX_KEY 65536u             /* bytes of a key or a tensor name */
#define PA_GGUF_MAX_STRING (16u << 20)     /* bytes of one string value */
#define PA_GGUF_MAX_ARRAY_ELEMS (4u << 20) /* array elements in all arrays together */
#define PA_GGUF_MAX_ALIGNMENT (1u << 30)
#define PA_GGUF_READ_FIRST (1u << 20) /* pa_gguf_read: first prefix read */
#define PA_GGUF_READ_MAX (256u << 20) /* pa_gguf_read: largest header accepted */
#define PA_GGUF_DEFAULT_ALIGNMENT 32u

typedef struct pa_gguf_tensor {
    char *name;     /* llama.cpp name, e.g. "blk.0.attn_q.weight" */
    uint32_t type;  /* PA_GGML_*, known (maybe not supported) */
    uint32_t ndim;  /* 1..4 */
    uint64_t ne[4]; /* ne[0] is the fastest-varying (row length); unused dims are 1 */
    uint64_t numel;
    uint64_t offset; /* absolute file offset of the first byte */
    uint64_t nbytes; /* numel / block_elems * block_bytes */
} pa_gguf_tensor;

typedef struct pa_gguf {
    uint32_t version;     /* 2 or 3 */
    uint64_t alignment;   /* general.alignment or 32 */
    uint64_t data_offset; /* absolute offset of the data section */
    uint64_t header_len;  /* bytes of header before the padding */
    size_t n_tensors;
    pa_gguf_tensor *tensors; /* sorted by offset; disjoint, aligned, inside the file */
    cJSON *kv; /* metadata object: integers and floats as numbers (float32 as the shortest decimal
                  that reads back to the same float; 64-bit integers past 2^53 are rounded), bools,
                  strings (invalid UTF-8 and NUL bytes replaced by U+FFFD), arrays of those */
} pa_gguf;

/* Parse a GGUF header. buf holds the first len bytes of a file of file_size bytes (len <=
 * file_size), at least the whole header. When the header is cut by the end of buf but would fit
 * the file, the result is PA_E_LIMIT with "header larger than the buffer" (retry with more). Other
 * errors are PA_E_FORMAT (one line naming label and the problem), PA_E_LIMIT for the hard limits
 * above, PA_E_NOMEM. On error out is left empty. */
pa_status pa_gguf_parse(const uint8_t *buf, size_t len, uint64_t file_size, const char *label,
                        pa_gguf *out, pa_error *err);
/* Read and parse the header of an open file: a prefix of PA_GGUF_READ_FIRST bytes, doubling while
 * the header does not fit, up to PA_GGUF_READ_MAX. */
pa_status pa_gguf_read(int fd, const char *label, pa_gguf *out, pa_error *err);
void pa_gguf_free(pa_gguf *g);
/* True when buf starts with the magic "GGUF". */
bool pa_gguf_sniff(const uint8_t *buf, size_t len);

/* Metadata look-ups (NULL / false when absent or of another kind). */
const cJSON *pa_gguf_kv(const pa_gguf *g, const char *key);
const char *pa_gguf_kv_str(const pa_gguf *g, const char *key);
/* An integral number (any GGUF integer type) that fits int64. */
bool pa_gguf_kv_int(const pa_gguf *g, const char *key, int64_t *out);
/* "<general.architecture>.<suffix>" looked up as an integer, e.g. suffix "attention.head_count".
 * A per-layer array counts when all its entries are equal. */
bool pa_gguf_arch_int(const pa_gguf *g, const char *suffix, int64_t *out);
/* "<general.architecture>.<suffix>" as stored, or NULL. */
const cJSON *pa_gguf_arch_kv(const pa_gguf *g, const char *suffix);
/* An integral JSON number that fits int64. */
bool pa_gguf_json_int(const cJSON *v, int64_t *out);
/* Tensor by llama.cpp name, or NULL. */
const pa_gguf_tensor *pa_gguf_find(const pa_gguf *g, const char *name);

/* ---------------------------------------------------------------- mapping to Hugging Face */

/* config.json text built from the metadata: model_type and architectures from
 * general.architecture (a small table; unknown architectures keep their name as model_type and
 * get architectures null), hidden_size, num_hidden_layers, num_attention_heads,
 * num_key_value_heads, intermediate_size, max_position_embeddings, rope_theta, rms_norm_eps /
 * layer_norm_eps, head_dim (attention.key_length), vocab_size (token list length, else
 * <arch>.vocab_size), hidden_act (from the table), tie_word_embeddings (token_embd without an
 * output tensor), bos/eos_token_id. Fields without a source are left out. Caller frees.
 * PA_E_UNSUPPORTED when general.architecture is missing. */
pa_status pa_gguf_config_json(const pa_gguf *g, char **json_out, pa_error *err);

/* tokenizer.json text from tokenizer.ggml.*: "gpt2" and "llama" give model.type BPE (vocab from
 * tokenizer.ggml.tokens with id = index, merges from tokenizer.ggml.merges when present — llama
 * SentencePiece files have none), "bert" WordPiece, "t5" Unigram (scores from
 * tokenizer.ggml.scores). Tokens of type UNKNOWN (2), CONTROL (3) or USER_DEFINED (4) are also
 * listed in added_tokens. config_out (may be NULL) receives tokenizer_config.json text with
 * bos_token, eos_token, unk_token and pad_token from the *_token_id keys. Both go to
 * pa_tokenizer_parse. PA_E_UNSUPPORTED without tokenizer.ggml.tokens or for another
 * tokenizer.ggml.model. */
pa_status pa_gguf_tokenizer_json(const pa_gguf *g, char **json_out, char **config_out,
                                 pa_error *err);

/* A token table as GGUF metadata and SentencePiece files hold it; pa_token_table_json turns it
 * into the same tokenizer.json / tokenizer_config.json text pa_gguf_tokenizer_json gives (that
 * is built on it), so a GGUF and the SentencePiece model it was converted from agree. */
typedef struct pa_token_table {
    const cJSON *tokens;      /* array of strings: id = index */
    const cJSON *types;       /* array of ints (1 normal, 2 unknown, 3 control, 4 user-defined,
                               * 5 unused, 6 byte) or NULL */
    const cJSON *scores;      /* array of numbers or NULL */
    const cJSON *merges;      /* array of strings or NULL */
    const char *model;        /* "gpt2", "llama" (BPE), "bert" (WordPiece), "t5" (Unigram) */
    const char *label;        /* message prefix ("gguf", a file name) */
    int64_t special[4];       /* bos, eos, unk, pad ids; < 0 when absent */
    int add_bos;              /* 1, 0, or -1 when not known */
} pa_token_table;
pa_status pa_token_table_json(const pa_token_table *t, char **json_out, char **config_out,
                              pa_error *err);

/* A SentencePiece model file (tokenizer.model, protobuf) as tokenizer.json and
 * tokenizer_config.json text: the pieces with their scores and types, model "t5" (Unigram) for a
 * unigram model and "llama" (BPE with byte fallback, as llama.cpp's converter records it)
 * otherwise, the special tokens from the trainer spec. At most PA_SPM_MAX_FILE bytes; a piece
 * that is not UTF-8, no pieces, or bytes that are not such a file: PA_E_FORMAT, one line. */
#define PA_SPM_MAX_FILE (16u << 20)
#define PA_SPM_MAX_PIECES (1u << 22)
pa_status pa_spm_tokenizer_json(const void *data, size_t len, const char *label,
                                char **json_out, char **config_out, pa_error *err);

/* Hugging Face (llama layout) name of a llama.cpp tensor name: token_embd → model.embed_tokens,
 * output → lm_head, output_norm → model.norm, blk.N.attn_{q,k,v,output} →
 * model.layers.N.self_attn.{q,k,v,o}_proj, blk.N.attn_{q,k}_norm → self_attn.{q,k}_norm,
 * blk.N.ffn_{gate,up,down} → model.layers.N.mlp.{gate,up,down}_proj, blk.N.attn_norm →
 * input_layernorm, blk.N.ffn_norm → post_attention_layernorm; the .weight / .bias suffix is kept.
 * Other names come back unchanged. Caller frees; NULL only when out of memory. */
char *pa_gguf_hf_name(const char *gguf_name);

/* True for architectures whose converter reorders the rows of Q and K for its rotary layout
 * (llama and its relatives). Qwen, Gemma, Phi and GPT-style files are not reordered. */
bool pa_gguf_arch_permutes_qk(const char *arch);
/* HF row of GGUF row gguf_row of an attn_q (n_head = attention.head_count) or attn_k weight or
 * bias (n_head = attention.head_count_kv) with n_rows rows (ne[1] of a weight, ne[0] of a bias).
 * The converter wrote W.reshape(n_head, 2, n_rows / n_head / 2, cols).swapaxes(1, 2); this undoes
 * it. Returns gguf_row unchanged when n_head is 0, n_rows is not a multiple of 2 * n_head, or
 * gguf_row >= n_rows. */
uint64_t pa_gguf_qk_row(uint64_t gguf_row, uint64_t n_rows, uint32_t n_head);
/* The forward permutation (HF row → GGUF row), as the converter applies it (for writers). */
uint64_t pa_gguf_qk_row_forward(uint64_t hf_row, uint64_t n_rows, uint32_t n_head);
/* dst (HF order) = src (GGUF order) with rows moved by pa_gguf_qk_row; rows of n_cols floats.
 * false (dst untouched) when the shape does not allow the permutation. */
bool pa_gguf_unpermute_rows(const float *src, float *dst, uint64_t n_rows, uint64_t n_cols,
                            uint32_t n_head);

#endif
