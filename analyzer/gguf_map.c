/* The mapping of a GGUF file's metadata and tensor names onto the Hugging Face config.json /
 * tokenizer.json / tensor names the rest of the analyzer already understands, and the undoing of
 * llama.cpp's rotary row order of Q and K. */
#include "gguf.h"
#include "jsonutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- config.json */

static const struct arch_map {
    const char *gguf, *model_type, *architecture, *hidden_act;
} arch_table[] = {
    {"llama", "llama", "LlamaForCausalLM", "silu"},
    {"qwen2", "qwen2", "Qwen2ForCausalLM", "silu"},
    {"qwen2moe", "qwen2_moe", "Qwen2MoeForCausalLM", "silu"},
    {"qwen3", "qwen3", "Qwen3ForCausalLM", "silu"},
    {"qwen3moe", "qwen3_moe", "Qwen3MoeForCausalLM", "silu"},
    {"gemma", "gemma", "GemmaForCausalLM", "gelu"},
    {"gemma2", "gemma2", "Gemma2ForCausalLM", "gelu_pytorch_tanh"},
    {"phi2", "phi", "PhiForCausalLM", "gelu_new"},
    {"phi3", "phi3", "Phi3ForCausalLM", "silu"},
    {"gpt2", "gpt2", "GPT2LMHeadModel", NULL},
    {"gptneox", "gpt_neox", "GPTNeoXForCausalLM", "gelu"},
    {"falcon", "falcon", "FalconForCausalLM", NULL},
    {"starcoder", "gpt_bigcode", "GPTBigCodeForCausalLM", NULL},
    {"starcoder2", "starcoder2", "Starcoder2ForCausalLM", "gelu_pytorch_tanh"},
    {"stablelm", "stablelm", "StableLmForCausalLM", "silu"},
    {"granite", "granite", "GraniteForCausalLM", "silu"},
    {"olmo", "olmo", "OlmoForCausalLM", "silu"},
    {"olmo2", "olmo2", "Olmo2ForCausalLM", "silu"},
    {"command-r", "cohere", "CohereForCausalLM", "silu"},
    {"deepseek2", "deepseek_v2", "DeepseekV2ForCausalLM", "silu"},
    {"internlm2", "internlm2", "InternLM2ForCausalLM", "silu"},
    {"minicpm", "minicpm", "MiniCPMForCausalLM", "silu"},
    {"bloom", "bloom", "BloomForCausalLM", NULL},
    {"mpt", "mpt", "MPTForCausalLM", NULL},
    {"bert", "bert", "BertModel", "gelu"},
    {"t5", "t5", "T5ForConditionalGeneration", NULL},
};

static const struct arch_map *arch_lookup(const char *arch)
{
    for (size_t i = 0; i < sizeof arch_table / sizeof arch_table[0]; i++)
        if (strcmp(arch_table[i].gguf, arch) == 0)
            return &arch_table[i];
    return NULL;
}

/* Add an integer member when the source has one; false only when out of memory. */
static bool add_int(cJSON *obj, const char *key, bool have, const int64_t *v)
{
    return !have || cJSON_AddNumberToObject(obj, key, (double)*v) != NULL;
}

/* Copy a finite number member "<arch>.<suffix>" to key. */
static bool add_arch_float(cJSON *obj, const pa_gguf *g, const char *suffix, const char *key)
{
    const cJSON *v = pa_gguf_arch_kv(g, suffix);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return true;
    return cJSON_AddNumberToObject(obj, key, v->valuedouble) != NULL;
}

pa_status pa_gguf_config_json(const pa_gguf *g, char **json_out, pa_error *err)
{
    if (!json_out)
        return pa_error_set(err, PA_E_ARG, "gguf: no output");
    *json_out = NULL;
    const char *arch = pa_gguf_kv_str(g, "general.architecture");
    if (!arch)
        return pa_error_set(err, PA_E_UNSUPPORTED, "gguf: no general.architecture");
    const struct arch_map *map = arch_lookup(arch);
    cJSON *cfg = cJSON_CreateObject();
    bool ok = cfg != NULL;
    if (ok && map) {
        cJSON *archs = cJSON_AddArrayToObject(cfg, "architectures");
        cJSON *name = cJSON_CreateString(map->architecture);
        ok = archs && name && cJSON_AddItemToArray(archs, name);
        if (!ok)
            cJSON_Delete(name);
    } else if (ok) {
        ok = cJSON_AddNullToObject(cfg, "architectures") != NULL;
    }
    if (ok)
        ok = cJSON_AddStringToObject(cfg, "model_type", map ? map->model_type : arch) != NULL;
    if (ok && map && map->hidden_act)
        ok = cJSON_AddStringToObject(cfg, "hidden_act", map->hidden_act) != NULL;

    static const struct {
        const char *suffix, *key;
    } ints[] = {
        {"embedding_length", "hidden_size"},
        {"block_count", "num_hidden_layers"},
        {"attention.head_count", "num_attention_heads"},
        {"attention.head_count_kv", "num_key_value_heads"},
        {"feed_forward_length", "intermediate_size"},
        {"context_length", "max_position_embeddings"},
        {"attention.key_length", "head_dim"},
    };
    for (size_t i = 0; ok && i < sizeof ints / sizeof ints[0]; i++) {
        int64_t v = 0;
        ok = add_int(cfg, ints[i].key, pa_gguf_arch_int(g, ints[i].suffix, &v), &v);
    }
    ok = ok && add_arch_float(cfg, g, "rope.freq_base", "rope_theta") &&
         add_arch_float(cfg, g, "attention.layer_norm_rms_epsilon", "rms_norm_eps") &&
         add_arch_float(cfg, g, "attention.layer_norm_epsilon", "layer_norm_eps");

    const cJSON *tokens = pa_gguf_kv(g, "tokenizer.ggml.tokens");
    int64_t v = cJSON_IsArray(tokens) ? cJSON_GetArraySize(tokens) : 0;
    bool have = cJSON_IsArray(tokens) || pa_gguf_arch_int(g, "vocab_size", &v);
    ok = ok && add_int(cfg, "vocab_size", have, &v);
    have = pa_gguf_kv_int(g, "tokenizer.ggml.bos_token_id", &v);
    ok = ok && add_int(cfg, "bos_token_id", have, &v);
    have = pa_gguf_kv_int(g, "tokenizer.ggml.eos_token_id", &v);
    ok = ok && add_int(cfg, "eos_token_id", have, &v);
    /* The converter leaves out output.weight when the head is tied to the embedding. */
    if (ok && pa_gguf_find(g, "token_embd.weight"))
        ok = cJSON_AddBoolToObject(cfg, "tie_word_embeddings",
                                   pa_gguf_find(g, "output.weight") == NULL) != NULL;
    if (ok)
        *json_out = cJSON_PrintUnformatted(cfg);
    cJSON_Delete(cfg);
    if (!*json_out)
        return pa_error_set(err, PA_E_NOMEM, "gguf: out of memory building config.json");
    return PA_OK;
}

/* ---------------------------------------------------------------- tokenizer.json */

enum { TOKTYPE_NORMAL = 1, TOKTYPE_UNKNOWN = 2, TOKTYPE_CONTROL = 3, TOKTYPE_USER_DEFINED = 4 };

/* Token type i from tokenizer.ggml.token_type (walked alongside), 0 when unknown. */
static int token_type_next(const cJSON **cursor)
{
    const cJSON *c = *cursor;
    if (!c)
        return 0;
    *cursor = c->next;
    int64_t t;
    return pa_gguf_json_int(c, &t) && t >= 0 && t < 16 ? (int)t : 0;
}

/* BERT vocabularies in GGUF are in "phantom space": the converter dropped "##" from continuation
 * pieces and put U+2581 before word-initial ones (control tokens untouched). Undo that. */
static char *bert_token(const char *tok, int type)
{
    size_t n = strlen(tok);
    char *out = malloc(n + 3);
    if (!out)
        return NULL;
    bool control =
        type == TOKTYPE_CONTROL || (type == 0 && n >= 2 && tok[0] == '[' && tok[n - 1] == ']');
    if (control)
        memcpy(out, tok, n + 1);
    else if (strncmp(tok, "\xE2\x96\x81", 3) == 0)
        memcpy(out, tok + 3, n - 2);
    else {
        memcpy(out, "##", 2);
        memcpy(out + 2, tok, n + 1);
    }
    return out;
}

static bool add_added_token(cJSON *added, int64_t id, const char *content, bool special)
{
    cJSON *t = cJSON_CreateObject();
    bool ok = t && cJSON_AddNumberToObject(t, "id", (double)id) &&
              cJSON_AddStringToObject(t, "content", content) &&
              cJSON_AddBoolToObject(t, "single_word", false) &&
              cJSON_AddBoolToObject(t, "lstrip", false) &&
              cJSON_AddBoolToObject(t, "rstrip", false) &&
              cJSON_AddBoolToObject(t, "normalized", !special) &&
              cJSON_AddBoolToObject(t, "special", special);
    if (ok && cJSON_AddItemToArray(added, t))
        return true;
    cJSON_Delete(t);
    return false;
}

/* tokenizer_config.json: the special tokens by string, as Hugging Face writes them. */
static char *special_config(const pa_token_table *t)
{
    static const char *const names[4] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    cJSON *cfg = cJSON_CreateObject();
    bool ok = cfg != NULL;
    int n_tokens = cJSON_GetArraySize(t->tokens);
    for (size_t i = 0; ok && i < 4; i++) {
        int64_t id = t->special[i];
        if (id < 0 || id >= n_tokens)
            continue;
        const cJSON *tok = cJSON_GetArrayItem(t->tokens, (int)id);
        if (cJSON_IsString(tok))
            ok = cJSON_AddStringToObject(cfg, names[i], tok->valuestring) != NULL;
    }
    if (ok && t->add_bos >= 0)
        ok = cJSON_AddBoolToObject(cfg, "add_bos_token", t->add_bos == 1) != NULL;
    char *text = ok ? cJSON_PrintUnformatted(cfg) : NULL;
    cJSON_Delete(cfg);
    return text;
}

pa_status pa_token_table_json(const pa_token_table *tt, char **json_out, char **config_out,
                              pa_error *err)
{
    if (!json_out || !tt)
        return pa_error_set(err, PA_E_ARG, "tokenizer: no output");
    *json_out = NULL;
    if (config_out)
        *config_out = NULL;
    const char *who = tt->label ? tt->label : "tokenizer";
    const cJSON *tokens = tt->tokens;
    if (!cJSON_IsArray(tokens) || !tokens->child)
        return pa_error_set(err, PA_E_UNSUPPORTED, "%s: no tokens", who);
    const char *model = tt->model ? tt->model : "";
    const char *kind;
    if (strcmp(model, "gpt2") == 0 || strcmp(model, "llama") == 0)
        kind = "BPE";
    else if (strcmp(model, "bert") == 0)
        kind = "WordPiece";
    else if (strcmp(model, "t5") == 0)
        kind = "Unigram";
    else
        return pa_error_set(err, PA_E_UNSUPPORTED, "%s: tokenizer model '%.40s' is not supported",
                            who, model);
    bool unigram = strcmp(kind, "Unigram") == 0, bert = strcmp(kind, "WordPiece") == 0;
    const cJSON *types = tt->types;
    const cJSON *type_at = cJSON_IsArray(types) ? types->child : NULL;
    const cJSON *scores = tt->scores;
    const cJSON *score_at = cJSON_IsArray(scores) ? scores->child : NULL;

    cJSON *root = cJSON_CreateObject(), *model_obj = NULL, *vocab = NULL, *added = NULL;
    bool ok = root && cJSON_AddStringToObject(root, "version", "1.0") &&
              (added = cJSON_AddArrayToObject(root, "added_tokens")) &&
              (model_obj = cJSON_AddObjectToObject(root, "model")) &&
              cJSON_AddStringToObject(model_obj, "type", kind);
    if (ok && bert)
        ok = cJSON_AddStringToObject(model_obj, "unk_token", "[UNK]") &&
             cJSON_AddStringToObject(model_obj, "continuing_subword_prefix", "##");
    if (ok && strcmp(model, "llama") == 0)
        ok = cJSON_AddBoolToObject(model_obj, "byte_fallback", true) != NULL;
    if (ok)
        vocab = unigram ? cJSON_AddArrayToObject(model_obj, "vocab")
                        : cJSON_AddObjectToObject(model_obj, "vocab");
    ok = ok && vocab;

    int64_t id = 0;
    for (const cJSON *t = tokens->child; ok && t; t = t->next, id++) {
        int type = token_type_next(&type_at);
        const cJSON *score = score_at;
        if (score_at)
            score_at = score_at->next;
        if (!cJSON_IsString(t)) {
            cJSON_Delete(root);
            return pa_error_set(err, PA_E_FORMAT, "%s: token %lld is not a string", who,
                                (long long)id);
        }
        char *text = bert ? bert_token(t->valuestring, type) : NULL;
        const char *str = bert ? text : t->valuestring;
        if (!str) {
            ok = false;
            break;
        }
        if (unigram) {
            cJSON *pair = cJSON_CreateArray();
            double s =
                cJSON_IsNumber(score) && isfinite(score->valuedouble) ? score->valuedouble : 0.0;
            ok = pair && cJSON_AddItemToArray(pair, cJSON_CreateString(str)) &&
                 cJSON_AddItemToArray(pair, cJSON_CreateNumber(s)) && pair->child &&
                 pair->child->next && cJSON_AddItemToArray(vocab, pair);
            if (!ok)
                cJSON_Delete(pair);
        } else {
            ok = cJSON_AddNumberToObject(vocab, str, (double)id) != NULL;
        }
        if (ok &&
            (type == TOKTYPE_UNKNOWN || type == TOKTYPE_CONTROL || type == TOKTYPE_USER_DEFINED))
            ok = add_added_token(added, id, str, type != TOKTYPE_USER_DEFINED);
        free(text);
    }
    const cJSON *merges = tt->merges;
    if (ok && !unigram && !bert && cJSON_IsArray(merges)) {
        for (const cJSON *m = merges->child; m; m = m->next)
            if (!cJSON_IsString(m)) {
                cJSON_Delete(root);
                return pa_error_set(err, PA_E_FORMAT, "%s: the merges hold a non-string", who);
            }
        cJSON *copy = cJSON_Duplicate(merges, true);
        ok = copy && cJSON_AddItemToObject(model_obj, "merges", copy);
        if (!ok)
            cJSON_Delete(copy);
    }
    if (ok)
        *json_out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!*json_out)
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory building tokenizer.json", who);
    if (config_out) {
        *config_out = special_config(tt);
        if (!*config_out) {
            free(*json_out);
            *json_out = NULL;
            return pa_error_set(err, PA_E_NOMEM, "%s: out of memory building tokenizer_config",
                                who);
        }
    }
    return PA_OK;
}

pa_status pa_gguf_tokenizer_json(const pa_gguf *g, char **json_out, char **config_out,
                                 pa_error *err)
{
    static const char *const keys[4] = {
        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id"};
    pa_token_table tt = {.tokens = pa_gguf_kv(g, "tokenizer.ggml.tokens"),
                         .types = pa_gguf_kv(g, "tokenizer.ggml.token_type"),
                         .scores = pa_gguf_kv(g, "tokenizer.ggml.scores"),
                         .merges = pa_gguf_kv(g, "tokenizer.ggml.merges"),
                         .model = pa_gguf_kv_str(g, "tokenizer.ggml.model"),
                         .label = "gguf",
                         .add_bos = -1};
    for (size_t i = 0; i < 4; i++)
        if (!pa_gguf_kv_int(g, keys[i], &tt.special[i]))
            tt.special[i] = -1;
    const cJSON *add_bos = pa_gguf_kv(g, "tokenizer.ggml.add_bos_token");
    if (cJSON_IsBool(add_bos))
        tt.add_bos = cJSON_IsTrue(add_bos) ? 1 : 0;
    if (!cJSON_IsArray(tt.tokens) || !tt.tokens->child) {
        if (json_out)
            *json_out = NULL;
        if (config_out)
            *config_out = NULL;
        return pa_error_set(err, PA_E_UNSUPPORTED, "gguf: no tokenizer.ggml.tokens");
    }
    return pa_token_table_json(&tt, json_out, config_out, err);
}

/* ---------------------------------------------------------------- tensor names and rows */

static const struct name_map {
    const char *gguf, *hf;
} top_names[] =
    {
        {"token_embd", "model.embed_tokens"},
        {"output", "lm_head"},
        {"output_norm", "model.norm"},
},
  block_names[] = {
      {"attn_q", "self_attn.q_proj"},
      {"attn_k", "self_attn.k_proj"},
      {"attn_v", "self_attn.v_proj"},
      {"attn_output", "self_attn.o_proj"},
      {"attn_q_norm", "self_attn.q_norm"},
      {"attn_k_norm", "self_attn.k_norm"},
      {"ffn_gate", "mlp.gate_proj"},
      {"ffn_up", "mlp.up_proj"},
      {"ffn_down", "mlp.down_proj"},
      {"attn_norm", "input_layernorm"},
      {"ffn_norm", "post_attention_layernorm"},
};

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

/* "<a><b><c>" in a fresh allocation. */
static char *concat3(const char *a, size_t an, const char *b, size_t bn, const char *c)
{
    size_t cn = strlen(c);
    if (an > SIZE_MAX - bn - cn - 1)
        return NULL;
    char *p = malloc(an + bn + cn + 1);
    if (!p)
        return NULL;
    memcpy(p, a, an);
    memcpy(p + an, b, bn);
    memcpy(p + an + bn, c, cn + 1);
    return p;
}

char *pa_gguf_hf_name(const char *gguf_name)
{
    if (!gguf_name)
        return NULL;
    size_t len = strlen(gguf_name);
    const char *suffix = NULL;
    if (len > 7 && strcmp(gguf_name + len - 7, ".weight") == 0)
        suffix = gguf_name + len - 7;
    else if (len > 5 && strcmp(gguf_name + len - 5, ".bias") == 0)
        suffix = gguf_name + len - 5;
    if (!suffix)
        return dup_str(gguf_name);
    size_t base_len = (size_t)(suffix - gguf_name);

    for (size_t i = 0; i < sizeof top_names / sizeof top_names[0]; i++)
        if (strlen(top_names[i].gguf) == base_len &&
            memcmp(gguf_name, top_names[i].gguf, base_len) == 0)
            return concat3(top_names[i].hf, strlen(top_names[i].hf), "", 0, suffix);

    /* blk.<N>.<part> */
    if (base_len < 6 || memcmp(gguf_name, "blk.", 4) != 0)
        return dup_str(gguf_name);
    const char *digits = gguf_name + 4, *p = digits;
    while (p < suffix && *p >= '0' && *p <= '9')
        p++;
    size_t n_digits = (size_t)(p - digits);
    if (n_digits == 0 || n_digits > 9 || p >= suffix || *p != '.')
        return dup_str(gguf_name);
    const char *part = p + 1;
    size_t part_len = (size_t)(suffix - part);
    for (size_t i = 0; i < sizeof block_names / sizeof block_names[0]; i++) {
        if (strlen(block_names[i].gguf) != part_len || memcmp(part, block_names[i].gguf, part_len))
            continue;
        char mid[64];
        int n = snprintf(mid, sizeof mid, ".%s%s", block_names[i].hf, suffix);
        if (n < 0 || (size_t)n >= sizeof mid)
            return dup_str(gguf_name);
        return concat3("model.layers.", 13, digits, n_digits, mid);
    }
    return dup_str(gguf_name);
}

bool pa_gguf_arch_permutes_qk(const char *arch)
{
    static const char *const permuted[] = {"llama",      "deci",    "granite",
                                           "granitemoe", "minicpm", "baichuan"};
    if (!arch)
        return false;
    for (size_t i = 0; i < sizeof permuted / sizeof permuted[0]; i++)
        if (strcmp(arch, permuted[i]) == 0)
            return true;
    return false;
}

/* Within one head of head_dim rows the converter interleaves the two halves: HF row s * half + i
 * (s in {0, 1}, i < half) becomes GGUF row 2 * i + s. */
static bool qk_shape_ok(uint64_t n_rows, uint32_t n_head)
{
    return n_head != 0 && n_rows % (2 * (uint64_t)n_head) == 0;
}

uint64_t pa_gguf_qk_row(uint64_t gguf_row, uint64_t n_rows, uint32_t n_head)
{
    if (!qk_shape_ok(n_rows, n_head) || gguf_row >= n_rows)
        return gguf_row;
    uint64_t head_dim = n_rows / n_head, half = head_dim / 2;
    uint64_t head = gguf_row / head_dim, r = gguf_row % head_dim;
    return head * head_dim + (r % 2) * half + r / 2;
}

uint64_t pa_gguf_qk_row_forward(uint64_t hf_row, uint64_t n_rows, uint32_t n_head)
{
    if (!qk_shape_ok(n_rows, n_head) || hf_row >= n_rows)
        return hf_row;
    uint64_t head_dim = n_rows / n_head, half = head_dim / 2;
    uint64_t head = hf_row / head_dim, r = hf_row % head_dim;
    return head * head_dim + 2 * (r % half) + r / half;
}

bool pa_gguf_unpermute_rows(const float *src, float *dst, uint64_t n_rows, uint64_t n_cols,
                            uint32_t n_head)
{
    if (!src || !dst || src == dst || !qk_shape_ok(n_rows, n_head) ||
        (n_cols && n_rows > SIZE_MAX / sizeof(float) / n_cols))
        return false;
    for (uint64_t g = 0; g < n_rows; g++)
        memcpy(dst + pa_gguf_qk_row(g, n_rows, n_head) * n_cols, src + g * n_cols,
               (size_t)n_cols * sizeof(float));
    return true;
}
