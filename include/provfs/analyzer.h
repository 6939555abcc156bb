/* libprovanalyzer — fingerprint and compare transformer checkpoints.
 *
 * Bytes in, fingerprint and verdict out: no FUSE, no SQLite here. The daemon (fs/) and provctl are
 * front ends on this library, so the on-close path and the CLI always agree.
 *
 * Every function that can fail takes a pa_error and returns its pa_status; the message names the
 * file and the problem in one line.
 */
#ifndef PROVFS_ANALYZER_H
#define PROVFS_ANALYZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- errors */

typedef enum pa_status {
    PA_OK = 0,
    PA_E_IO,          /* cannot open, stat or read a file */
    PA_E_FORMAT,      /* malformed bytes: bad header, JSON, offsets, shapes */
    PA_E_UNSUPPORTED, /* well formed but not something we handle */
    PA_E_INCOMPLETE,  /* sharded model whose shards are missing or short */
    PA_E_NOMEM,       /* allocation failed */
    PA_E_LIMIT,       /* input exceeds a hard limit (sizes, counts, nesting) */
    PA_E_ARG,         /* caller error */
    PA_E_CANCELLED,   /* the caller's cancel flag was set */
    PA_E_UNSAFE,      /* a pickle that would run code on load: imports a global a state dict
                         does not need (the message names it, see pa_unsafe_global) */
} pa_status;

typedef struct pa_error {
    pa_status status;
    char msg[512]; /* one line: "FILE: problem" */
} pa_error;

/* Record an error; the first error recorded wins (later calls are ignored while status != OK). */
pa_status pa_error_set(pa_error *err, pa_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void pa_error_clear(pa_error *err);
/* Copies in[0..in_len) to out (NUL-terminated, truncated to out_size) with every byte that is not
 * part of a printable UTF-8 character written as "\xNN" (controls, DEL, C1 controls, invalid
 * sequences). Returns the length written. */
size_t pa_escape_text(const char *in, size_t in_len, char *out, size_t out_size);
/* Length of the valid, printable UTF-8 character at s (n bytes left; n > 0), 0 when the byte at s
 * is a control (ASCII, DEL, C1), starts an invalid or overlong sequence or a surrogate. */
size_t pa_utf8_printable(const unsigned char *s, size_t n);
const char *pa_status_name(pa_status status);

/* Null marker for integer fields that a config may omit (JSON null). */
#define PA_NULL_INT INT64_MIN

/* ---------------------------------------------------------------- dtypes */

typedef enum pa_dtype {
    PA_DT_F32 = 0,
    PA_DT_F16,
    PA_DT_BF16,
    PA_DT_F64,
    PA_DT_I8,
    PA_DT_U8,
    PA_DT_I16,
    PA_DT_I32,
    PA_DT_F8_E4M3,
    PA_DT_F8_E5M2,
    /* Known to safetensors but not decoded into values (hashed and reported only). */
    PA_DT_I64,
    PA_DT_U16,
    PA_DT_U32,
    PA_DT_U64,
    PA_DT_BOOL,
    PA_DT_COUNT
} pa_dtype;

/* Name as safetensors spells it ("F32", "BF16", "F8_E4M3", ...). */
const char *pa_dtype_name(pa_dtype dtype);
/* Parse a safetensors dtype string; false when unknown. */
bool pa_dtype_parse(const char *name, pa_dtype *out);
/* Size of one element in bytes. */
size_t pa_dtype_size(pa_dtype dtype);
/* True when pa_dtype_to_f32 can decode it. */
bool pa_dtype_decodable(pa_dtype dtype);
/* Decode n little-endian elements to float. dtype must be decodable. */
void pa_dtype_to_f32(pa_dtype dtype, const void *src, float *dst, size_t n);
/* Encode floats (round to nearest even) for F32, F16, BF16 — used by mkmodel and sketches. */
void pa_f32_to_f16(const float *src, uint16_t *dst, size_t n);
void pa_f32_to_bf16(const float *src, uint16_t *dst, size_t n);
float pa_f16_to_f32_one(uint16_t h);

/* ---------------------------------------------------------------- safetensors */

#define PA_MAX_DIMS 8
/* Hard limits for untrusted headers: beyond them a file is refused, never allocated for. */
#define PA_ST_MAX_HEADER (16u * 1024u * 1024u) /* header JSON bytes (cJSON needs ~40x in memory) */
#define PA_ST_MAX_TENSORS 1000000u

typedef struct pa_tensor_desc {
    char *name;
    pa_dtype dtype;
    uint32_t ndim;
    uint64_t shape[PA_MAX_DIMS];
    uint64_t numel;
    uint64_t begin; /* offset of the first byte inside the data section */
    uint64_t end;   /* one past the last byte inside the data section */
} pa_tensor_desc;

typedef struct pa_st_header {
    uint64_t header_len;  /* N from the 8-byte prefix */
    uint64_t data_offset; /* 8 + N: absolute file offset of the data section */
    uint64_t data_len;    /* file_size - data_offset */
    size_t n_tensors;
    pa_tensor_desc *tensors; /* sorted by begin */
    char *metadata_json;     /* "__metadata__" object as compact JSON, or NULL */
} pa_st_header;

/* Parse a safetensors header from memory. buf holds at least the 8-byte prefix and the header JSON
 * (it may hold the whole file); file_size is the size of the whole file. Checks: prefix present,
 * header length inside the file and under PA_ST_MAX_HEADER, JSON valid object, every entry has a
 * known dtype, a shape of <= PA_MAX_DIMS non-negative dims whose product does not overflow,
 * data_offsets [begin, end] with begin <= end <= data_len, end - begin == numel * dtype size, and no
 * two tensors overlap. label names the file in messages. */
pa_status pa_st_parse(const uint8_t *buf, size_t buf_len, uint64_t file_size, const char *label,
                      pa_st_header *out, pa_error *err);
/* Read and parse the header of an open file. */
pa_status pa_st_read(int fd, const char *label, pa_st_header *out, pa_error *err);
void pa_st_header_free(pa_st_header *hdr);
/* True when the first bytes look like safetensors (8-byte length then '{'). */
bool pa_st_sniff(const uint8_t *buf, size_t len);

/* ---------------------------------------------------------------- PyTorch checkpoints */

/* Largest data.pkl read (the pickle of a state dict is a few hundred bytes a tensor). */
#define PA_TORCH_MAX_PICKLE (64u * 1024u * 1024u)

/* Read a torch.save zip checkpoint (pytorch_model.bin, *.pt, *.pth) into the form of a
 * safetensors header, without running its pickle: data_offset is 0 and each tensor's [begin, end)
 * is the byte range of the file that holds it (inside its storage's stored zip member), so the
 * tensors are read by offset like safetensors ones. Only state dicts are accepted: data.pkl may
 * import nothing but OrderedDict, torch._utils._rebuild_tensor_v2 / _rebuild_parameter and the
 * torch.*Storage types; every tensor must be contiguous and inside its storage; members must be
 * stored, not compressed. Anything else is refused with a one-line reason (PA_E_UNSUPPORTED for
 * what is well formed but not a plain state dict, such as an import of os.system). */
pa_status pa_torch_read(int fd, const char *label, pa_st_header *out, pa_error *err);
/* The same on a whole file in memory. */
pa_status pa_torch_parse(const uint8_t *buf, size_t len, const char *label, pa_st_header *out,
                         pa_error *err);
/* Why a file starting with these bytes is a pickle provfs does not read (a legacy torch.save
 * checkpoint, or any other bare pickle), or NULL when it is not a pickle. A safetensors header
 * length can start with the same bytes: ask pa_st_sniff first. */
const char *pa_torch_legacy(const uint8_t *buf, size_t n);
/* The global a PA_E_UNSAFE message names ("posix.system"), copied into out (NUL-terminated):
 * true when msg ends the way pa_torch_read words an unsafe import ("... unsafe pickle: imports
 * MODULE.NAME, which a state dict does not need: refused (nothing was run)"). The global is
 * written with every byte outside [A-Za-z0-9_.] as \xNN, so it holds no space and the path
 * before it cannot change what is extracted. */
bool pa_unsafe_global(const char *msg, char *out, size_t outlen);

/* ---------------------------------------------------------------- config.json: MFI */

typedef struct pa_mfi {
    char *model_type;        /* NULL = null */
    char *architectures;     /* JSON text of the architectures value as Python's json.dumps writes it
                                (e.g. ["LlamaForCausalLM"]), "null" when absent */
    int64_t hidden_size;     /* PA_NULL_INT when absent */
    int64_t num_hidden_layers;
    int64_t num_attention_heads;
    int64_t num_key_value_heads;
    int64_t intermediate_size; /* first positive of intermediate_size, d_ff, ... (config.c); 0 when none */
    int64_t vocab_size;
    int64_t max_position_embeddings;
    char *hidden_act;
    double rope_theta; /* NaN when absent */
    char *rope_scaling; /* JSON text or NULL */
    int tie_word_embeddings; /* -1 unknown, 0, 1 */
    int64_t bos_token_id;    /* from the tokenizer when known, else config; PA_NULL_INT = null */
    int64_t eos_token_id;
    double gqa_ratio;
    char attention_style[4]; /* MHA, MQA, GQA */
    char norm_type[16];      /* RMSNorm, LayerNorm, unknown */
    int attention_bias;      /* -1 null, 0, 1 */
    bool qk_norm;
    char pos_encoding[32]; /* RoPE, absolute, or the config's position_embedding_type */
    int64_t head_dim;
    char tokenizer_hash[65];
    char arch_hash[65];
    char family_hash[65];
} pa_mfi;

/* Parse config.json text (len bytes, need not be NUL terminated). label names the file. */
pa_status pa_mfi_parse(const char *json, size_t len, const char *label, pa_mfi *out, pa_error *err);
/* Recompute family_hash after tokenizer_hash / bos / eos were filled in from the tokenizer. false
 * (family_hash "") when out of memory. */
bool pa_mfi_finish(pa_mfi *mfi);
void pa_mfi_free(pa_mfi *mfi);
/* Tier 1 (1.0), tier 2 (0.9) or tier 3 soft score, as the reference method defines them. */
double pa_mfi_similarity(const pa_mfi *a, const pa_mfi *b, int *tier);

/* ---------------------------------------------------------------- tokenizer: TFV, VOA, anchors */

enum { PA_SCRIPT_LATIN, PA_SCRIPT_CJK, PA_SCRIPT_CYRILLIC, PA_SCRIPT_ARABIC, PA_SCRIPT_DEVANAGARI,
       PA_SCRIPT_OTHER, PA_SCRIPT_COUNT };
extern const char *const pa_script_names[PA_SCRIPT_COUNT];

typedef struct pa_tfv {
    int64_t vocab_size;
    int64_t num_merges;
    char merge_rule_hash[65]; /* "" when there are no merges */
    double pct_single_char;   /* Python round(x, 4), as the reference (tokenizer.c) */
    double avg_token_length;
    int64_t max_token_length;
    double pct_whitespace_prefix;
    double pct_byte_tokens;
    double script[PA_SCRIPT_COUNT]; /* fractions, 4 decimals; all 0 when no alphabetic chars */
    char tokenizer_class[64];
    char model_kind[16]; /* BPE, WordPiece, Unigram, WordLevel */
    /* Filled by the fingerprint from pa_tokenizer (PA_NULL_INT when unknown); the reference's TFV
     * similarity compares them. */
    int64_t bos_id, eos_id, pad_id, unk_id, mask_id;
    char merges_hash[65]; /* SHA-256 of all merges joined by "\n"; "" when there are none */
} pa_tfv;

typedef struct pa_token {
    const char *str; /* UTF-8, NUL terminated, owned by the tokenizer */
    uint32_t len;    /* bytes */
    uint32_t id;
} pa_token;

typedef struct pa_tokenizer {
    size_t n_tokens; /* unique token strings (model vocab + added tokens) */
    pa_token *tokens; /* sorted by id */
    pa_tfv tfv;
    int64_t bos_id, eos_id, pad_id, unk_id; /* PA_NULL_INT when unknown */
    char sha256[65]; /* of tokenizer.json bytes */
    void *priv_;
} pa_tokenizer;

/* Parse tokenizer.json text; config_json (tokenizer_config.json text, may be NULL) supplies the
 * class and special tokens. */
pa_status pa_tokenizer_parse(const char *json, size_t len, const char *config_json,
                             size_t config_len, const char *label, pa_tokenizer **out,
                             pa_error *err);
void pa_tokenizer_free(pa_tokenizer *tok);
/* Id of a token string, -1 when absent. */
int64_t pa_tokenizer_find(const pa_tokenizer *tok, const char *str, size_t len);
/* 64-bit hash of a token string, stable across platforms (used for VOA sketches and anchors). */
uint64_t pa_token_hash(const char *str, size_t len);

/* ---------------------------------------------------------------- formats by content */

/* The model format the first n bytes of a file announce ("gguf", "safetensors", "zip", "pickle",
 * "hdf5", "npy"), NULL for none. 16 bytes are enough. */
#define PA_SNIFF_BYTES 16
const char *pa_sniff_format(const uint8_t *buf, size_t n);
/* True when a file name carries a model format's suffix (.safetensors, .gguf, .bin, .pt, .pth,
 * .ckpt, .onnx, .h5, .msgpack, .pkl, .npy, ...). */
bool pa_model_suffix(const char *name);
/* True when a file of a model directory holds or indexes its weights: *.safetensors,
 * model.safetensors.index.json, pytorch_model*.bin and pytorch_model.bin.index.json. A directory
 * with config.json and such a file is a model unit. */
bool pa_unit_weights_name(const char *name);

/* transformers' names of a model directory's weights: model.safetensors / pytorch_model.bin
 * (single), their .index.json (index), model-00001-of-00002.safetensors (shard), each also with a
 * variant: model.fp16.safetensors, model.safetensors.index.fp16.json,
 * model-00001-of-00002.fp16.safetensors, pytorch_model.fp16.bin, pytorch_model.bin.index.fp16.json.
 * Returns the kind; *variant / *vlen (when not NULL) get the variant (NULL, 0 when none). */
typedef enum pa_weights_name_kind {
    PA_WN_OTHER,
    PA_WN_SINGLE,
    PA_WN_INDEX,
    PA_WN_SHARD,
} pa_weights_name_kind;
pa_weights_name_kind pa_weights_name(const char *name, const char **variant, size_t *vlen);

/* Which weights of a model directory transformers loads (from_pretrained without a variant),
 * from the names of its files: model.safetensors before model.safetensors.index.json (an index
 * left by an earlier sharded save is stale), safetensors before pytorch_model.bin before
 * pytorch_model.bin.index.json. Without any no-variant file, the lexically first variant's.
 * Without any of these names, every *.safetensors file (or every pytorch_model*.bin) is a shard. */
typedef enum pa_weights_kind {
    PA_WK_NONE,      /* no weights */
    PA_WK_SINGLE,    /* name: the one weights file */
    PA_WK_INDEX,     /* name: the index; its weight_map names the shards */
    PA_WK_ALL_ST,    /* every *.safetensors file */
    PA_WK_ALL_BIN,   /* every pytorch_model*.bin file */
} pa_weights_kind;
typedef struct pa_weights_choice {
    pa_weights_kind kind;
    const char *name;          /* SINGLE / INDEX: an entry of names */
    const char *variant;       /* the chosen variant (points into name), NULL for none */
    size_t variant_len;
    const char *stale_index;   /* an index of the same format and variant left unused, or NULL */
    size_t n_other_variants;   /* weights and index files of the other variants */
} pa_weights_choice;
void pa_weights_choose(const char *const *names, size_t n, pa_weights_choice *out);
/* True when name (one of names) is a single-file variant (model.fp16.safetensors,
 * pytorch_model.fp16.bin) that pa_weights_choose does not load: a model of its own. */
bool pa_weights_variant_unit(const char *const *names, size_t n, const char *name);
/* One line per thing a reader of the directory should know about its weights (a stale index
 * ignored, variants present), joined by '\n'; malloc'd, NULL when nothing to say. */
char *pa_weights_notes(const char *const *names, size_t n);

/* ---------------------------------------------------------------- model directories */

typedef struct pa_file_fp {
    char *name;      /* relative to the model directory */
    uint64_t size;
    int64_t mtime_ns;
    char sha256[65];
} pa_file_fp;

typedef struct pa_fingerprint pa_fingerprint;

enum {
    PA_FP_NO_WEIGHTS = 1u << 0, /* config and tokenizer only */
    PA_FP_NO_FILE_SHA = 1u << 1 /* skip whole-file SHA-256 (a caller that already has them) */
};

typedef struct pa_fp_options {
    unsigned flags;
    int threads;                       /* 0 = number of online CPUs, max 16 */
    void (*progress)(void *ctx, uint64_t done, uint64_t total);
    void *progress_ctx;
    volatile const int *cancel;        /* when non-NULL and set, stop with PA_E_CANCELLED */
    /* Optional: the SHA-256 (hex) of a unit file the caller already knows — e.g. the store hashed
     * it while it was being written — or NULL to hash it here. Each byte is then hashed once. */
    const char *(*known_sha256)(void *ctx, const char *name, uint64_t size, int64_t mtime_ns);
    void *known_ctx;
    /* Optional confinement, for a caller with more privilege than the files' writers (the daemon
     * runs as root over files any user writes): path must lie below confine_root, and every file
     * is resolved beneath it (relative symlinks that stay inside are followed, as a Hugging Face
     * cache needs; an absolute symlink, a ".." out of it or a magic link is an error, never
     * followed). Nothing below confine_root/confine_private is ever read. NULL: paths are opened
     * as given (provctl runs as the user). Either way, a unit's weights, config, index and
     * tokenizer must be regular files. */
    const char *confine_root;
    const char *confine_private;
} pa_fp_options;

/* Fingerprint a model directory (Hugging Face layout) or a single .safetensors file. */
pa_status pa_fingerprint_path(const char *path, const pa_fp_options *opt, pa_fingerprint **out,
                              pa_error *err);

/* A unit's files opened by one process and fingerprinted by another (the daemon opens them as
 * root, beneath BACKING; an unprivileged worker that cannot open anything parses them). */
typedef struct pa_unit_file {
    char *name;       /* relative to the unit directory; a single-file unit: the file's own name */
    uint64_t size;    /* as found when the unit was discovered */
    int64_t mtime_ns;
    int64_t ctime_ns; /* fstat of fd, taken right after the open (before any byte is read) */
    uint64_t ino;
    int fd;           /* open for reading; -1 when not open */
} pa_unit_file;

typedef struct pa_unit_files {
    bool is_dir; /* a model directory, else one weights file (n == 1) */
    size_t n;
    pa_unit_file *files; /* sorted by name */
} pa_unit_files;

/* Discovers the unit at path with pa_fingerprint_path's rules and opt's confinement (which files
 * belong to a directory unit, symlinks, regular files only) and opens each of its files for
 * reading. Free with pa_unit_files_close (also after an error). */
pa_status pa_unit_files_open(const char *path, const pa_fp_options *opt, pa_unit_files *out,
                             pa_error *err);
void pa_unit_files_close(pa_unit_files *files);
/* Fingerprints a unit from its open files: reads only through copies of their fds, opens no
 * path (opt's confinement is not used). path names the unit in messages and in the fingerprint. */
pa_status pa_fingerprint_files(const char *path, const pa_unit_files *files,
                               const pa_fp_options *opt, pa_fingerprint **out, pa_error *err);
void pa_fingerprint_free(pa_fingerprint *fp);

/* Read-only views of a fingerprint. */
const pa_mfi *pa_fp_mfi(const pa_fingerprint *fp);         /* NULL without config.json */
const pa_tfv *pa_fp_tfv(const pa_fingerprint *fp);         /* NULL without tokenizer.json */
size_t pa_fp_n_files(const pa_fingerprint *fp);
const pa_file_fp *pa_fp_file(const pa_fingerprint *fp, size_t i);
uint64_t pa_fp_n_params(const pa_fingerprint *fp);
size_t pa_fp_n_tensors(const pa_fingerprint *fp);
/* The token embedding's shape [vocab, hidden] from the weights (the tensor of role embed.w);
 * false when there is none. What a weights file without config.json says of its shape. */
bool pa_fp_embed_shape(const pa_fingerprint *fp, uint64_t *vocab, uint64_t *hidden);
bool pa_fp_has_weights(const pa_fingerprint *fp);
/* Some matrix is stored quantised (8 bits or fewer per value: int8, fp8, GGUF quant blocks), or
 * most matrices hold int8-grid values written back as floats: such
 * a model is an export of a more precise one, never the parent of a more precise one. */
bool pa_fp_quantized(const pa_fingerprint *fp);
/* Digest of the unit: SHA-256 over the sorted "name\0sha256\n" list of its files (a
 * single-file unit: "\0sha256\n", its content alone). *.gguf files in a directory are units of
 * their own and not part of the directory's unit. */
const char *pa_fp_digest(const pa_fingerprint *fp);
/* "safetensors", "torch", "gguf" or "config-only" */
const char *pa_fp_format(const pa_fingerprint *fp);

/* The path recorded in the fingerprint (its JSON "path"); NULL leaves it out — a store keeps
 * fingerprints by content, not by where they were first seen. false when out of memory. */
bool pa_fp_set_path(pa_fingerprint *fp, const char *path);

/* Compact binary form (fpbin.c), what the lineage database stores: ~120 KB for a 7B layout.
 * Lossless for a fingerprint as this library makes and reads them (compact, see compact.c); the
 * reader treats the bytes as hostile. The caller frees *out with free(). */
pa_status pa_fp_to_bin(const pa_fingerprint *fp, uint8_t **out, size_t *len, pa_error *err);
pa_status pa_fp_from_bin(const uint8_t *buf, size_t len, const char *label, pa_fingerprint **out,
                         pa_error *err);
/* Bytes of memory fp holds (its allocations, roughly): what a cache of parsed fingerprints
 * counts. */
size_t pa_fp_memory(const pa_fingerprint *fp);
/* True when buf starts like a binary fingerprint. */
bool pa_fp_is_bin(const void *buf, size_t len);

/* Versioned JSON (schema provfs.fingerprint/1). The caller frees the string with free(). */
/* The same without the sketches (tensors, embedding, probe, vocabulary hashes): what describing a
 * model needs (config, tokenizer, counts, dtypes); not readable as a fingerprint for comparing. */
char *pa_fp_summary_json(const pa_fingerprint *fp);
char *pa_fp_to_json(const pa_fingerprint *fp, bool pretty);
pa_status pa_fp_from_json(const char *json, size_t len, const char *label, pa_fingerprint **out,
                          pa_error *err);

/* ---------------------------------------------------------------- compare */

typedef enum pa_verdict { PA_V_NONE = 0, PA_V_WEAK, PA_V_DERIVED, PA_V_IDENTICAL } pa_verdict;
const char *pa_verdict_name(pa_verdict v);

typedef struct pa_signal {
    double value; /* NaN when not computable */
    bool valid;
} pa_signal;

/* Per block of b: whether it comes from a (compare --json "layers"). A layer stitch made of two
 * parents shows a run of blocks that match each parent in its compare with that parent, and
 * `none` for the other parent's blocks. */
#define PA_CMP_MAX_LAYERS 128 /* blocks reported; deeper models report their first 128 */
typedef struct pa_layer_match {
    int32_t layer;   /* block of b */
    int32_t a_layer; /* block of a its weights agree with best, -1 when none agrees */
    float agreement; /* mean element-wise agreement of its matrices with a (NaN: none aligned) */
    float invariant; /* agreement of its invariant products (NaN: block not sampled) */
    float explained; /* share of its matrix parameters that a explains */
    bool matches_a;  /* explained >= 0.5: the block comes from a */
    uint64_t params; /* parameters of the block (all its tensors): weighs it in shares */
} pa_layer_match;

typedef struct pa_compare_result {
    pa_verdict verdict;
    double score;           /* final lineage score, 0..1 */
    double identity_score;  /* the reference method's weighted identity score (NaN-aware) */
    double tokenizer_score; /* 0.25 TFV + 0.75 VOA, reported only */
    double weight_agreement; /* role-aligned element-wise agreement (decisive), NaN without weights */
    int mfi_tier;
    pa_signal mfi, tfv, voa, eas, nlf, lep, end, wvc;
    pa_signal wea;           /* weight element agreement (aligned, permutation-recovered) */
    pa_signal anchor_rows;   /* agreement of embedding rows of shared anchor tokens */
    pa_signal gram;          /* embedding Gram matrix of shared anchors (rotation-invariant) */
    pa_signal invariant;     /* per-block products q·k, v·o, up·down on probe tokens (rotation,
                                scaling and permutation invariant) */
    double rank;             /* pa_parent_rank(this, a): orders candidate parents */
    double distance;         /* calibrated weight-space distance (relative L2, 0 = same); NaN
                                when nothing could be aligned */
    double explained_share;  /* share of b's parameters a explains (parameter-weighted) */
    double unexplained_share;
    bool unknown_origin;     /* unexplained_share >= PA_UNKNOWN_ORIGIN_SHARE */
    size_t n_unexplained;    /* b's tensors a does not explain */
    char unexplained[384];   /* their names, comma-separated, truncated with "..." */
    size_t tensors_compared;
    size_t tensors_identical; /* byte-equal tensors (SHA-256) */
    size_t tensors_a, tensors_b;
    uint32_t n_layers;   /* b's blocks reported in layers[] (<= PA_CMP_MAX_LAYERS) */
    uint32_t n_layers_b; /* b's blocks in all */
    pa_layer_match layers[PA_CMP_MAX_LAYERS];
    /* b's parameters outside layers[] (embedding, head, final norm, blocks past the reported
     * ones) and how many of them a explains. */
    uint64_t rest_params, rest_explained;
    char reason[256]; /* one line: why this verdict */
} pa_compare_result;

/* Compare two fingerprints: a is the candidate ancestor, b the model under test (symmetric in all
 * but wording). Reads both fingerprints and writes only out: any number of threads may compare
 * shared fingerprints at once. */
void pa_compare(const pa_fingerprint *a, const pa_fingerprint *b, pa_compare_result *out);

/* Parameters of the child that no compared parent explains, as a share, from which on the child
 * has an origin of its own (score.c says why this value). */
#define PA_UNKNOWN_ORIGIN_SHARE 0.10
/* The one parent-ranking rule (daemon, provctl compare and scan): higher is a likelier direct
 * parent. parent is the candidate (a of pa_compare), r the comparison of parent with the child. */
double pa_parent_rank(const pa_compare_result *r, const pa_fingerprint *parent);
/* Share of a child's parameters that a parent explains and none of the better-ranked parents
 * does. The child has n candidate parents; json[i] is the compare JSON (pa_compare_to_json) of
 * candidate i (a) with the child (b), candidates best first. Per block of the child the explained
 * shares of its parameters are taken in order, each candidate getting what it adds to those
 * before it (likewise for the parameters outside the reported blocks); share[i] is that sum over
 * the child's parameters, so the shares add up to at most 1. With blocks[i] non-NULL it gets a
 * bitmap (PA_CMP_MAX_LAYERS bits) of the child's blocks where candidate i adds >= half of the
 * block. A JSON without block parameter counts (older stores) gives candidate i its
 * explained_share when i == 0 and 0 otherwise. */
void pa_parent_shares(const char *const *json, size_t n, double *share, uint8_t (*blocks)[16]);
/* compare --json object (schema provfs.compare/1); caller frees. Its "layers" array reports
 * r->layers (the fields are described at the top of analyzer/score.c). */
char *pa_compare_to_json(const pa_compare_result *r, const char *a_label, const char *b_label,
                         bool pretty);

/* ---------------------------------------------------------------- diff (per tensor) */

typedef enum pa_diff_kind { PA_D_IDENTICAL, PA_D_CHANGED, PA_D_ADDED, PA_D_REMOVED } pa_diff_kind;

typedef struct pa_diff_entry {
    char *name;
    pa_diff_kind kind;
    double rel_l2; /* ||b - a|| / ||a|| for changed tensors of one shape; NaN otherwise */
    char note[96]; /* e.g. "shape 64x256 -> 48x256", "dtype F32 -> BF16" */
} pa_diff_entry;

typedef struct pa_diff {
    size_t n;
    pa_diff_entry *entries; /* sorted by name */
    size_t n_identical, n_changed, n_added, n_removed;
} pa_diff;

/* Reads both models' tensors (streaming) and compares them element-wise by name. */
pa_status pa_diff_paths(const char *a, const char *b, pa_diff *out, pa_error *err);
void pa_diff_free(pa_diff *d);
char *pa_diff_to_json(const pa_diff *d, const char *a_label, const char *b_label, bool pretty);

/* ---------------------------------------------------------------- utilities */

/* Lowercase hex SHA-256 of a buffer (OpenSSL EVP). out must hold 65 bytes. false (and out "")
 * when OpenSSL could not allocate. */
bool pa_sha256_hex(const void *data, size_t len, char out[65]);

#ifdef __cplusplus
}
#endif
/* ---------------------------------------------------------------- PEFT adapters */

/* adapter_config.json of a PEFT adapter (peft.c). Strings are at most 256 printable bytes. */
typedef struct pa_peft_config {
    char *base;         /* base_model_name_or_path, NULL when absent or null */
    char *peft_type;    /* "LORA", ...; NULL when absent */
    int64_t r;          /* PA_NULL_INT when absent */
    double lora_alpha;  /* 0 when absent */
    char **targets;     /* target_modules (one string: a name or a regex), at most 256 */
    size_t n_targets;
} pa_peft_config;
pa_status pa_peft_config_parse(const char *text, size_t len, const char *label, pa_peft_config *out,
                               pa_error *err);
void pa_peft_config_free(pa_peft_config *c);

/* An adapter's LoRA pairs against a base: each lora_A [r, in] / lora_B [out, r] pair named
 * "base_model.model.M.lora_A.weight" must have its module M.weight [out, in] in the base. */
typedef struct pa_peft_check {
    size_t n_pairs;      /* lora_A tensors */
    size_t n_matched;    /* pairs whose module exists in the base with matching dimensions */
    size_t n_missing;    /* pairs whose module the base lacks */
    size_t n_mismatched; /* pairs whose dimensions disagree (or that are no pair) */
    size_t n_other;      /* tensors that are not LoRA matrices */
    int64_t rank;        /* the common r of the matched pairs, 0 when they differ, -1 none */
    char problem[200];   /* the first problem found, "" when none */
} pa_peft_check;
void pa_peft_check_shapes(const pa_fingerprint *base, const pa_fingerprint *adapter,
                          pa_peft_check *out);
/* Every pair matched, and there is at least one. */
bool pa_peft_fits(const pa_peft_check *c);
/* The fingerprint holds LoRA matrices (names base_model.model.*.lora_A/B[.NAME].weight). */
bool pa_peft_is_adapter(const pa_fingerprint *fp);
/* How well a declared base_model_name_or_path names the model at path (a store path "/bases/x",
 * a directory): the length of the matched part, 0 when it does not. Matches are whole path
 * components: the declared name ends with the path or the path with the name ("bases/x",
 * "/mnt/store/bases/x", "x" all name "/bases/x"), or a hub id "org/name" names a Hugging Face
 * cache repo directory "models--org--name" on the path. */
size_t pa_peft_base_match(const char *declared, const char *path);

#endif
