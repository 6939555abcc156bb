/* mkmodel gguf: write a llama-architecture safetensors model as GGUF v3, the way llama.cpp's
 * converter and quantizer would: llama.cpp tensor names, the rotary row reordering of Q and K,
 * llama.* hyperparameters and tokenizer.ggml.* from tokenizer.json, 1-D tensors as F32, 2-D tensors
 * in the requested type (F16 when the row length is not a whole number of blocks).
 *
 *   mkmodel gguf SRC_DIR OUT.gguf --type f32|f16|bf16|q8_0|q4_0|q4_k|q6_k
 *
 * Deterministic: the same model and type give byte-identical output. The file is re-read with the
 * analyzer's strict parser before it is declared done. */
#include "mkmodel.h"
#include "sentencepiece.pb-c.h"

#include "gguf.h"
#include "jsonutil.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ALIGNMENT 32u
#define CHUNK_FLOATS (1u << 20) /* rows are converted in pieces of about 4 MiB of floats */

/* GGUF metadata value types and llama.cpp token types. */
enum { V_U32 = 4, V_I32 = 5, V_F32 = 6, V_STRING = 8, V_ARRAY = 9 };
enum { TOK_NORMAL = 1, TOK_CONTROL = 3, TOK_USER_DEFINED = 4, TOK_UNUSED = 5 };

static const struct {
    const char *name;
    uint32_t type;
    uint32_t file_type; /* llama_ftype: ALL_F32, MOSTLY_F16, Q4_0, Q8_0, Q4_K_M, Q6_K, BF16 */
} out_types[] = {
    {"f32", PA_GGML_F32, 0},    {"f16", PA_GGML_F16, 1},   {"bf16", PA_GGML_BF16, 32},
    {"q8_0", PA_GGML_Q8_0, 7},  {"q4_0", PA_GGML_Q4_0, 2}, {"q4_k", PA_GGML_Q4_K, 15},
    {"q6_k", PA_GGML_Q6_K, 18},
};

/* ---------------------------------------------------------------- header bytes */

typedef struct hbuf {
    uint8_t *p;
    size_t n, cap;
    uint64_t n_kv;
} hbuf;

static void put(hbuf *b, const void *data, size_t n)
{
    b->p = mk_grow(b->p, &b->cap, b->n + n, 1);
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void put_le(hbuf *b, uint64_t v, int n)
{
    uint8_t tmp[8];
    for (int i = 0; i < n; i++)
        tmp[i] = (uint8_t)(v >> (8 * i));
    put(b, tmp, (size_t)n);
}

static void put_str(hbuf *b, const char *s)
{
    put_le(b, strlen(s), 8);
    put(b, s, strlen(s));
}

static void kv_head(hbuf *b, const char *key, uint32_t type)
{
    put_str(b, key);
    put_le(b, type, 4);
    b->n_kv++;
}

static void kv_u32(hbuf *b, const char *key, uint64_t v)
{
    if (v > UINT32_MAX)
        mk_die(MK_EXIT_USAGE, "%s = %llu does not fit GGUF's u32", key, (unsigned long long)v);
    kv_head(b, key, V_U32);
    put_le(b, v, 4);
}

static void kv_f32(hbuf *b, const char *key, double v)
{
    float f = (float)v;
    uint32_t u;
    memcpy(&u, &f, 4);
    kv_head(b, key, V_F32);
    put_le(b, u, 4);
}

static void kv_str(hbuf *b, const char *key, const char *v)
{
    kv_head(b, key, V_STRING);
    put_str(b, v);
}

static void kv_array_head(hbuf *b, const char *key, uint32_t elem_type, uint64_t n)
{
    kv_head(b, key, V_ARRAY);
    put_le(b, elem_type, 4);
    put_le(b, n, 8);
}

/* ---------------------------------------------------------------- tokenizer.ggml.* */

/* Id of a special token written as "<s>" or {"content": "<s>"} in tokenizer_config.json. */
static int64_t special_id(const cJSON *cfg, const char *key, const cJSON *vocab, const cJSON *added)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(v))
        v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (!cJSON_IsString(v))
        return -1;
    for (const cJSON *a = added ? added->child : NULL; a; a = a->next) {
        const char *content = pa_json_str(a, "content");
        int64_t id;
        if (content && strcmp(content, v->valuestring) == 0 && pa_json_int(a, "id", &id))
            return id;
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(vocab, v->valuestring);
    return cJSON_IsNumber(id) ? (int64_t)id->valuedouble : -1;
}

/* The vocabulary by id (model.vocab plus added_tokens; missing ids become "[PAD<id>]" as the
 * converter writes them), token types, merges and special token ids. */
/* tokenizer.ggml.* from a SentencePiece tokenizer.model, as llama.cpp's converter writes them:
 * model "llama" (or "t5" for a unigram model), every piece with its score and type, the special
 * ids of the trainer spec. */
static void add_spm_tokenizer(hbuf *b, const char *path)
{
    size_t len;
    char *raw = mk_read_file(path, &len);
    PaSpm__ModelProto *m = pa_spm__model_proto__unpack(NULL, len, (const uint8_t *)raw);
    if (!m || m->n_pieces == 0)
        mk_die(MK_EXIT_USAGE, "%s: not a SentencePiece model with pieces", path);
    const PaSpm__TrainerSpec *ts = m->trainer_spec;
    bool unigram = !ts || !ts->has_model_type ||
                   ts->model_type == PA_SPM__TRAINER_SPEC__MODEL_TYPE__UNIGRAM;
    kv_str(b, "tokenizer.ggml.model", unigram ? "t5" : "llama");
    kv_array_head(b, "tokenizer.ggml.tokens", V_STRING, m->n_pieces);
    for (size_t i = 0; i < m->n_pieces; i++) {
        const ProtobufCBinaryData *t = &m->pieces[i]->piece;
        char *text = mk_alloc(t->len + 1, 1);
        memcpy(text, t->data, t->len);
        put_str(b, text);
        free(text);
    }
    kv_array_head(b, "tokenizer.ggml.scores", V_F32, m->n_pieces);
    for (size_t i = 0; i < m->n_pieces; i++) {
        float f = m->pieces[i]->has_score ? m->pieces[i]->score : 0.0f;
        uint32_t bits;
        memcpy(&bits, &f, 4);
        put_le(b, bits, 4);
    }
    kv_array_head(b, "tokenizer.ggml.token_type", V_I32, m->n_pieces);
    for (size_t i = 0; i < m->n_pieces; i++)
        put_le(b, (uint32_t)(m->pieces[i]->has_type ? m->pieces[i]->type : 1), 4);
    int64_t ids[4] = {ts ? ts->bos_id : 1, ts ? ts->eos_id : 2, ts ? ts->unk_id : 0,
                      ts ? ts->pad_id : -1};
    static const char *const keys[4] = {
        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id"};
    for (size_t i = 0; i < 4; i++)
        if (ids[i] >= 0 && (size_t)ids[i] < m->n_pieces)
            kv_u32(b, keys[i], (uint64_t)ids[i]);
    pa_spm__model_proto__free_unpacked(m, NULL);
    free(raw);
}

static void add_tokenizer(hbuf *b, const char *dir, int64_t vocab_size)
{
    char *path = mk_join(dir, "tokenizer.json");
    if (access(path, F_OK) != 0) {
        free(path);
        path = mk_join(dir, "tokenizer.model");
        if (access(path, F_OK) == 0)
            add_spm_tokenizer(b, path);
        free(path);
        return;
    }
    size_t len;
    char *text = mk_read_file(path, &len);
    cJSON *root = mk_parse_json(text, len, path);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    const char *type = pa_json_str(model, "type");
    if (!type || strcmp(type, "BPE") != 0 || !cJSON_IsObject(vocab))
        mk_die(MK_EXIT_USAGE, "%s: only BPE tokenizers with a vocab object are converted", path);

    size_t n = vocab_size > 0 ? (size_t)vocab_size : 0;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int64_t id = cJSON_IsNumber(e) ? (int64_t)e->valuedouble : -1;
        if (id < 0 || id > (1 << 24) || (double)id != e->valuedouble)
            mk_die(MK_EXIT_USAGE, "%s: token '%.40s' has no valid id", path, e->string);
        if ((size_t)id >= n)
            n = (size_t)id + 1;
    }
    for (const cJSON *a = cJSON_IsArray(added) ? added->child : NULL; a; a = a->next) {
        int64_t id;
        if (!pa_json_str(a, "content") || !pa_json_int(a, "id", &id) || id < 0 || id > (1 << 24))
            mk_die(MK_EXIT_USAGE, "%s: added token without a valid id and content", path);
        if ((size_t)id >= n)
            n = (size_t)id + 1;
    }
    const char **tok = mk_alloc(n, sizeof *tok);
    int32_t *types = mk_alloc(n, sizeof *types);
    for (const cJSON *e = vocab->child; e; e = e->next) {
        tok[(size_t)e->valuedouble] = e->string;
        types[(size_t)e->valuedouble] = TOK_NORMAL;
    }
    for (const cJSON *a = cJSON_IsArray(added) ? added->child : NULL; a; a = a->next) {
        int64_t id = 0;
        pa_json_int(a, "id", &id);
        tok[id] = pa_json_str(a, "content");
        types[id] = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "special")) ? TOK_CONTROL
                                                                                 : TOK_USER_DEFINED;
    }
    char **pads = mk_alloc(n, sizeof *pads);
    for (size_t i = 0; i < n; i++)
        if (!tok[i]) {
            pads[i] = mk_printf("[PAD%zu]", i);
            tok[i] = pads[i];
            types[i] = TOK_UNUSED;
        }

    kv_str(b, "tokenizer.ggml.model", "gpt2");
    kv_str(b, "tokenizer.ggml.pre", "default");
    kv_array_head(b, "tokenizer.ggml.tokens", V_STRING, n);
    for (size_t i = 0; i < n; i++)
        put_str(b, tok[i]);
    kv_array_head(b, "tokenizer.ggml.token_type", V_I32, n);
    for (size_t i = 0; i < n; i++)
        put_le(b, (uint32_t)types[i], 4);
    if (cJSON_IsArray(merges) && merges->child) {
        kv_array_head(b, "tokenizer.ggml.merges", V_STRING, (uint64_t)cJSON_GetArraySize(merges));
        for (const cJSON *m = merges->child; m; m = m->next) {
            if (cJSON_IsString(m)) {
                put_str(b, m->valuestring);
                continue;
            }
            const cJSON *l = cJSON_IsArray(m) ? m->child : NULL;
            if (!cJSON_IsString(l) || !cJSON_IsString(l->next) || l->next->next)
                mk_die(MK_EXIT_USAGE, "%s: a merge is neither \"a b\" nor [\"a\", \"b\"]", path);
            char *joined = mk_printf("%s %s", l->valuestring, l->next->valuestring);
            put_str(b, joined);
            free(joined);
        }
    }

    /* special tokens: tokenizer_config.json names them, config.json may give the ids */
    char *cfg_path = mk_join(dir, "tokenizer_config.json");
    cJSON *cfg = NULL;
    char *cfg_text = NULL;
    if (access(cfg_path, F_OK) == 0) {
        size_t cfg_len;
        cfg_text = mk_read_file(cfg_path, &cfg_len);
        cfg = mk_parse_json(cfg_text, cfg_len, cfg_path);
    }
    static const struct {
        const char *cfg_key, *gguf_key;
    } specials[] = {{"bos_token", "tokenizer.ggml.bos_token_id"},
                    {"eos_token", "tokenizer.ggml.eos_token_id"},
                    {"unk_token", "tokenizer.ggml.unknown_token_id"},
                    {"pad_token", "tokenizer.ggml.padding_token_id"}};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) {
        int64_t id = special_id(cfg, specials[i].cfg_key, vocab, added);
        if (id >= 0 && (size_t)id < n)
            kv_u32(b, specials[i].gguf_key, (uint64_t)id);
    }
    cJSON_Delete(cfg);
    free(cfg_text);
    free(cfg_path);
    for (size_t i = 0; i < n; i++)
        free(pads[i]);
    free(pads);
    free(tok);
    free(types);
    cJSON_Delete(root);
    free(text);
    free(path);
}

/* ---------------------------------------------------------------- tensors */

typedef struct out_tensor {
    const mk_src_tensor *src;
    char *name; /* llama.cpp name */
    uint32_t type, ndim;
    uint64_t ne[4];
    uint64_t rows, cols; /* cols = ne[0] */
    uint64_t nbytes, offset;
    uint32_t qk_heads; /* heads for the rotary row reordering; 0 = none */
} out_tensor;

static const struct {
    const char *hf, *gguf;
} layer_names[] = {
    {"self_attn.q_proj", "attn_q"},
    {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},
    {"self_attn.o_proj", "attn_output"},
    {"mlp.gate_proj", "ffn_gate"},
    {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
    {"input_layernorm", "attn_norm"},
    {"post_attention_layernorm", "ffn_norm"},
};

/* llama.cpp name of a Hugging Face llama tensor name; dies on names it does not know. */
static char *gguf_name(const char *dir, const char *hf)
{
    size_t len = strlen(hf);
    const char *suffix = mk_ends_with(hf, len, ".weight") ? ".weight"
                         : mk_ends_with(hf, len, ".bias") ? ".bias"
                                                          : NULL;
    if (suffix) {
        size_t stem_len = len - strlen(suffix);
        static const struct {
            const char *hf, *gguf;
        } top[] = {{"model.embed_tokens", "token_embd"},
                   {"lm_head", "output"},
                   {"model.norm", "output_norm"}};
        for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
            if (strlen(top[i].hf) == stem_len && memcmp(hf, top[i].hf, stem_len) == 0)
                return mk_printf("%s%s", top[i].gguf, suffix);
        const char *p = hf + strlen("model.layers.");
        if (strncmp(hf, "model.layers.", 13) == 0 && *p >= '0' && *p <= '9') {
            char *end;
            unsigned long layer = strtoul(p, &end, 10);
            bool dot = end < hf + stem_len && *end == '.';
            size_t part_len = dot ? (size_t)(hf + stem_len - end) - 1 : 0;
            for (size_t i = 0; dot && i < sizeof layer_names / sizeof layer_names[0]; i++)
                if (strlen(layer_names[i].hf) == part_len &&
                    memcmp(end + 1, layer_names[i].hf, part_len) == 0)
                    return mk_printf("blk.%lu.%s%s", layer, layer_names[i].gguf, suffix);
        }
    }
    mk_die(MK_EXIT_USAGE, "%s: tensor %s has no llama.cpp name", dir, hf);
}

static void plan_tensor(out_tensor *t, const mk_src_tensor *s, const char *dir, uint32_t want,
                        int64_t heads, int64_t kv_heads)
{
    const pa_tensor_desc *d = s->desc;
    if (!mk_is_float(d->dtype) || !pa_dtype_decodable(d->dtype))
        mk_die(MK_EXIT_USAGE, "%s: tensor %s is %s, not a float type", dir, d->name,
               pa_dtype_name(d->dtype));
    if (d->ndim < 1 || d->ndim > 4 || d->numel == 0)
        mk_die(MK_EXIT_USAGE, "%s: tensor %s has a shape GGUF cannot hold", dir, d->name);
    t->src = s;
    t->name = gguf_name(dir, d->name);
    t->ndim = d->ndim;
    for (uint32_t i = 0; i < 4; i++)
        t->ne[i] = i < d->ndim ? d->shape[d->ndim - 1 - i] : 1;
    t->cols = t->ne[0];
    t->rows = d->numel / t->cols;
    /* as llama.cpp: vectors stay F32; blocks never straddle rows */
    t->type = d->ndim == 1 ? PA_GGML_F32 : want;
    if (t->cols % pa_gguf_block_elems(t->type) != 0)
        t->type = PA_GGML_F16;
    if (!pa_gguf_nbytes(t->type, d->numel, &t->nbytes))
        mk_die(MK_EXIT_USAGE, "%s: tensor %s is too large", dir, d->name);
    /* the converter reorders Q and K rows (weights and biases) for llama.cpp's rotary layout */
    t->qk_heads = s->role == MK_R_Q ? (uint32_t)heads : s->role == MK_R_K ? (uint32_t)kv_heads : 0;
    if (t->qk_heads) {
        uint64_t n = d->ndim == 1 ? d->numel : t->rows;
        if (n % (2 * (uint64_t)t->qk_heads) != 0)
            mk_die(MK_EXIT_USAGE, "%s: tensor %s: %llu rows are not whole pairs of %u heads", dir,
                   d->name, (unsigned long long)n, t->qk_heads);
        if (d->ndim == 1) { /* a bias: each element is a row */
            t->rows = n;
            t->cols = 1;
        }
    }
}

static void write_all(FILE *f, const char *path, const void *data, size_t n)
{
    if (n && fwrite(data, 1, n, f) != n)
        mk_die(MK_EXIT_IO, "%s: write failed: %s", path, strerror(errno));
}

static void write_padding(FILE *f, const char *path, uint64_t at)
{
    static const uint8_t zeros[ALIGNMENT];
    size_t pad = (size_t)((ALIGNMENT - at % ALIGNMENT) % ALIGNMENT);
    write_all(f, path, zeros, pad);
}

/* Convert one tensor in pieces of whole rows (whole heads when reordered) and write it. */
static void write_tensor(FILE *f, const char *path, const out_tensor *t)
{
    const pa_tensor_desc *d = t->src->desc;
    size_t esize = pa_dtype_size(d->dtype);
    uint64_t unit = t->qk_heads ? t->rows / t->qk_heads : 1; /* rows that move together */
    uint64_t per = CHUNK_FLOATS / t->cols / unit * unit;
    if (per < unit)
        per = unit;
    if (per > t->rows)
        per = t->rows;
    size_t n_floats = (size_t)(per * t->cols);
    uint64_t chunk_bytes_max = 0;
    pa_gguf_nbytes(t->type, n_floats, &chunk_bytes_max);
    uint8_t *raw = mk_alloc(n_floats, esize);
    float *in = mk_alloc(n_floats, sizeof *in), *out = mk_alloc(n_floats, sizeof *out);
    uint8_t *enc = mk_alloc((size_t)chunk_bytes_max, 1);
    for (uint64_t r0 = 0; r0 < t->rows; r0 += per) {
        uint64_t n = t->rows - r0 < per ? t->rows - r0 : per;
        size_t count = (size_t)(n * t->cols);
        mk_parent_read(t->src, raw, r0 * t->cols * esize, count * esize);
        pa_dtype_to_f32(d->dtype, raw, in, count);
        const float *rows = in;
        if (t->qk_heads) {
            /* n is whole heads: reorder inside each head, as the converter's swapaxes does */
            uint32_t heads_here = (uint32_t)(n / unit);
            for (uint64_t r = 0; r < n; r++)
                memcpy(out + pa_gguf_qk_row_forward(r, n, heads_here) * t->cols, in + r * t->cols,
                       (size_t)t->cols * sizeof *out);
            rows = out;
        }
        uint64_t nbytes = 0;
        pa_gguf_nbytes(t->type, count, &nbytes);
        if (pa_gguf_quantize(t->type, rows, count, enc, (size_t)chunk_bytes_max) != nbytes)
            mk_die(MK_EXIT_IO, "%s: cannot encode %s as %s", path, t->name,
                   pa_gguf_type_name(t->type));
        write_all(f, path, enc, (size_t)nbytes);
    }
    free(raw);
    free(in);
    free(out);
    free(enc);
}

/* ---------------------------------------------------------------- the command */

static const char *const k_hidden[] = {"hidden_size", NULL};
static const char *const k_layers[] = {"num_hidden_layers", NULL};
static const char *const k_heads[] = {"num_attention_heads", NULL};
static const char *const k_kv_heads[] = {"num_key_value_heads", NULL};
static const char *const k_inter[] = {"intermediate_size", NULL};
static const char *const k_max_pos[] = {"max_position_embeddings", NULL};
static const char *const k_vocab[] = {"vocab_size", NULL};

static double cfg_real(const mk_parent *p, const char *key, double fallback)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(p->cfg, key);
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) ? v->valuedouble : fallback;
}

static void write_gguf(const char *src, const char *out, uint32_t type, uint32_t file_type)
{
    mk_parent p;
    mk_parent_load(&p, src);
    if (p.gpt2)
        mk_die(MK_EXIT_USAGE, "%s: gguf converts llama models only (this one is gpt2)", src);
    int64_t hidden = mk_cfg_int(&p, k_hidden, 0), heads = mk_cfg_int(&p, k_heads, 0);
    if (!hidden || !heads || hidden % heads)
        mk_die(MK_EXIT_USAGE, "%s/config.json: needs hidden_size and num_attention_heads", src);
    int64_t kv_heads = mk_cfg_int(&p, k_kv_heads, heads);
    int64_t layers = mk_cfg_int(&p, k_layers, p.layers), vocab = mk_cfg_int(&p, k_vocab, 0);

    hbuf h = {0};
    const char *base = strrchr(src, '/');
    base = base && base[1] ? base + 1 : src;
    kv_str(&h, "general.architecture", "llama");
    kv_str(&h, "general.name", base);
    kv_u32(&h, "general.file_type", file_type);
    kv_u32(&h, "general.quantization_version", 2);
    kv_u32(&h, "llama.context_length", (uint64_t)mk_cfg_int(&p, k_max_pos, 2048));
    kv_u32(&h, "llama.embedding_length", (uint64_t)hidden);
    kv_u32(&h, "llama.block_count", (uint64_t)layers);
    kv_u32(&h, "llama.feed_forward_length", (uint64_t)mk_cfg_int(&p, k_inter, 4 * hidden));
    kv_u32(&h, "llama.rope.dimension_count", (uint64_t)(hidden / heads));
    kv_u32(&h, "llama.attention.head_count", (uint64_t)heads);
    kv_u32(&h, "llama.attention.head_count_kv", (uint64_t)kv_heads);
    kv_f32(&h, "llama.attention.layer_norm_rms_epsilon", cfg_real(&p, "rms_norm_eps", 1e-6));
    kv_f32(&h, "llama.rope.freq_base", cfg_real(&p, "rope_theta", 10000.0));
    if (vocab)
        kv_u32(&h, "llama.vocab_size", (uint64_t)vocab);
    add_tokenizer(&h, src, vocab);

    out_tensor *ts = mk_alloc(p.n, sizeof *ts);
    uint64_t at = 0;
    for (size_t i = 0; i < p.n; i++) {
        plan_tensor(&ts[i], &p.t[i], src, type, heads, kv_heads);
        ts[i].offset = at;
        at += (ts[i].nbytes + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
    }
    hbuf head = {0};
    put(&head, "GGUF", 4);
    put_le(&head, 3, 4);
    put_le(&head, p.n, 8);
    put_le(&head, h.n_kv, 8);
    put(&head, h.p, h.n);
    for (size_t i = 0; i < p.n; i++) {
        put_str(&head, ts[i].name);
        put_le(&head, ts[i].ndim, 4);
        for (uint32_t d = 0; d < ts[i].ndim; d++)
            put_le(&head, ts[i].ne[d], 8);
        put_le(&head, ts[i].type, 4);
        put_le(&head, ts[i].offset, 8);
    }

    FILE *f = fopen(out, "wb");
    if (!f)
        mk_die(MK_EXIT_IO, "%s: cannot create: %s", out, strerror(errno));
    mk_partial_set(out);
    write_all(f, out, head.p, head.n);
    write_padding(f, out, head.n);
    for (size_t i = 0; i < p.n; i++) {
        write_tensor(f, out, &ts[i]);
        write_padding(f, out, ts[i].nbytes);
    }
    if (fclose(f) != 0)
        mk_die(MK_EXIT_IO, "%s: write failed: %s", out, strerror(errno));

    /* what we wrote must pass the analyzer's own strict reader */
    int fd = open(out, O_RDONLY | O_CLOEXEC);
    pa_gguf g;
    pa_error err;
    pa_error_clear(&err);
    if (fd < 0 || pa_gguf_read(fd, out, &g, &err) != PA_OK)
        mk_die(MK_EXIT_IO, "%s: the written file does not parse: %s", out,
               fd < 0 ? strerror(errno) : err.msg);
    close(fd);
    pa_gguf_free(&g);
    mk_partial_set(NULL);

    for (size_t i = 0; i < p.n; i++)
        free(ts[i].name);
    free(ts);
    free(head.p);
    free(h.p);
    mk_parent_free(&p);
}

int mk_gguf_main(int argc, char **argv)
{
    const char *pos[2] = {NULL, NULL}, *type = NULL;
    size_t n_pos = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--type") == 0) {
            if (type)
                mk_die(MK_EXIT_USAGE, "--type given twice");
            if (i + 1 >= argc)
                mk_die(MK_EXIT_USAGE, "--type needs a value");
            type = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            mk_die(MK_EXIT_USAGE, "gguf: unknown option '%s' (gguf takes --type only)", argv[i]);
        } else if (n_pos == 2) {
            mk_die(MK_EXIT_USAGE, "unexpected argument '%s' (try --help)", argv[i]);
        } else {
            pos[n_pos++] = argv[i];
        }
    }
    if (n_pos != 2 || !type)
        mk_die(MK_EXIT_USAGE,
               "usage: mkmodel gguf SRC_DIR OUT.gguf --type f32|f16|bf16|q8_0|q4_0|q4_k|q6_k");
    for (size_t i = 0; i < sizeof out_types / sizeof out_types[0]; i++)
        if (strcmp(type, out_types[i].name) == 0) {
            write_gguf(pos[0], pos[1], out_types[i].type, out_types[i].file_type);
            return 0;
        }
    mk_die(MK_EXIT_USAGE, "--type %s: expected f32, f16, bf16, q8_0, q4_0, q4_k or q6_k", type);
}
