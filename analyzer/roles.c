/* Canonical tensor roles: llama, GPT-2, NeoX and llama.cpp spellings of the same part of a
 * transformer map to one role, so models with renamed tensors still align. */
#include "fp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *key;
    const char *role;
} role_map[] = {
    /* attention */
    {"q_proj", "attn_q"}, {"wq", "attn_q"}, {"query", "attn_q"}, {"attn_q", "attn_q"},
    {"k_proj", "attn_k"}, {"wk", "attn_k"}, {"key", "attn_k"}, {"attn_k", "attn_k"},
    {"v_proj", "attn_v"}, {"wv", "attn_v"}, {"value", "attn_v"}, {"attn_v", "attn_v"},
    {"o_proj", "attn_o"}, {"wo", "attn_o"}, {"out_proj", "attn_o"}, {"attn_output", "attn_o"},
    {"c_attn", "attn_qkv"}, {"query_key_value", "attn_qkv"}, {"qkv_proj", "attn_qkv"},
    {"Wqkv", "attn_qkv"},
    /* mlp */
    {"gate_proj", "mlp_gate"}, {"w1", "mlp_gate"}, {"ffn_gate", "mlp_gate"},
    {"up_proj", "mlp_up"}, {"w3", "mlp_up"}, {"c_fc", "mlp_up"}, {"dense_h_to_4h", "mlp_up"},
    {"fc1", "mlp_up"}, {"ffn_up", "mlp_up"},
    {"down_proj", "mlp_down"}, {"w2", "mlp_down"}, {"dense_4h_to_h", "mlp_down"},
    {"fc2", "mlp_down"}, {"ffn_down", "mlp_down"},
    /* norms */
    {"input_layernorm", "norm_attn"}, {"ln_1", "norm_attn"}, {"attn_norm", "norm_attn"},
    {"attention_norm", "norm_attn"},
    {"post_attention_layernorm", "norm_mlp"}, {"ln_2", "norm_mlp"}, {"ffn_norm", "norm_mlp"},
    /* outside the blocks */
    {"embed_tokens", "embed"}, {"wte", "embed"}, {"tok_embeddings", "embed"},
    {"word_embeddings", "embed"}, {"token_embd", "embed"}, {"embed_in", "embed"},
    {"lm_head", "lm_head"}, {"output", "lm_head"}, {"embed_out", "lm_head"},
    {"ln_f", "norm_final"}, {"final_layernorm", "norm_final"}, {"output_norm", "norm_final"},
    {"norm", "norm_final"},
    {"wpe", "pos_embed"}, {"position_embeddings", "pos_embed"},
};

static const char *const block_words[] = {"layers", "h", "layer", "blocks", "block", "blk"};

static bool all_digits(const char *s, size_t n)
{
    if (n == 0 || n > 9)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* Role of a tensor: "<canonical>.<w|b>" for names we recognise (so llama, GPT-2, NeoX and
 * llama.cpp spellings meet), else "x:" + the name with its block number replaced by {L}. Within a
 * block, GPT-2's attn.c_proj is the attention output while mlp.c_proj is the MLP down projection. */
char *pa_role_of(const char *name, int32_t *layer)
{
    *layer = -1;
    size_t n = strlen(name);
    /* split on '.' */
    const char *parts[64];
    size_t lens[64];
    size_t np = 0;
    const char *p = name;
    while (np < 64) {
        const char *dot = memchr(p, '.', (size_t)(name + n - p));
        size_t l = dot ? (size_t)(dot - p) : (size_t)(name + n - p);
        parts[np] = p;
        lens[np++] = l;
        if (!dot)
            break;
        p = dot + 1;
    }
    size_t layer_at = SIZE_MAX;
    for (size_t i = 1; i < np; i++) {
        if (!all_digits(parts[i], lens[i]))
            continue;
        for (size_t w = 0; w < sizeof block_words / sizeof *block_words; w++)
            if (strlen(block_words[w]) == lens[i - 1] &&
                memcmp(block_words[w], parts[i - 1], lens[i - 1]) == 0) {
                layer_at = i;
                break;
            }
        if (layer_at != SIZE_MAX)
            break;
    }
    if (layer_at != SIZE_MAX)
        *layer = (int32_t)strtol(parts[layer_at], NULL, 10);
    const char *kind = "w";
    if (np >= 2 && lens[np - 1] == 4 && memcmp(parts[np - 1], "bias", 4) == 0)
        kind = "b";
    const char *canon = NULL;
    bool in_mlp = false;
    size_t from = layer_at == SIZE_MAX ? 0 : layer_at + 1;
    for (size_t i = from; i < np; i++) {
        if ((lens[i] == 3 && memcmp(parts[i], "mlp", 3) == 0) ||
            (lens[i] == 3 && memcmp(parts[i], "ffn", 3) == 0) ||
            (lens[i] == 12 && memcmp(parts[i], "feed_forward", 12) == 0))
            in_mlp = true;
        if (lens[i] == 6 && memcmp(parts[i], "c_proj", 6) == 0) {
            canon = in_mlp ? "mlp_down" : "attn_o";
            continue;
        }
        if (lens[i] == 5 && memcmp(parts[i], "dense", 5) == 0 && !in_mlp) {
            canon = "attn_o";
            continue;
        }
        for (size_t r = 0; r < sizeof role_map / sizeof *role_map; r++) {
            if (strlen(role_map[r].key) == lens[i] && memcmp(role_map[r].key, parts[i], lens[i]) == 0) {
                bool outside = strcmp(role_map[r].role, "embed") == 0 ||
                               strcmp(role_map[r].role, "lm_head") == 0 ||
                               strcmp(role_map[r].role, "norm_final") == 0 ||
                               strcmp(role_map[r].role, "pos_embed") == 0;
                if (outside != (layer_at == SIZE_MAX))
                    continue; /* "norm" inside a block is not the final norm */
                canon = role_map[r].role;
            }
        }
    }
    char *out;
    if (canon) {
        size_t l = strlen(canon) + 3;
        out = malloc(l);
        if (out)
            snprintf(out, l, "%s.%s", canon, kind);
        return out;
    }
    out = malloc(n + 8);
    if (!out)
        return NULL;
    size_t o = 0;
    memcpy(out, "x:", 2);
    o = 2;
    for (size_t i = 0; i < np; i++) {
        if (i)
            out[o++] = '.';
        if (i == layer_at) {
            memcpy(out + o, "{L}", 3);
            o += 3;
        } else {
            memcpy(out + o, parts[i], lens[i]);
            o += lens[i];
        }
    }
    out[o] = '\0';
    return out;
}

