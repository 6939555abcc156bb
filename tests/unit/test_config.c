/* config.json → MFI: aliases, backbone, intermediate rule, derived fields, hashes as the reference
 * computes them (expected values come from Python's json.dumps + hashlib and from the reference
 * database), similarity tiers, and malformed input. */
#include "check.h"
#include "provfs/analyzer.h"

#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static const char gpt2_xl[] =
    "{\n"
    "  \"activation_function\": \"gelu_new\",\n"
    "  \"architectures\": [\n    \"GPT2LMHeadModel\"\n  ],\n"
    "  \"attn_pdrop\": 0.1,\n  \"bos_token_id\": 50256,\n  \"embd_pdrop\": 0.1,\n"
    "  \"eos_token_id\": 50256,\n  \"initializer_range\": 0.02,\n"
    "  \"layer_norm_epsilon\": 1e-05,\n  \"model_type\": \"gpt2\",\n  \"n_ctx\": 1024,\n"
    "  \"n_embd\": 1600,\n  \"n_head\": 25,\n  \"n_inner\": null,\n  \"n_layer\": 48,\n"
    "  \"n_positions\": 1024,\n  \"output_past\": true,\n  \"resid_pdrop\": 0.1,\n"
    "  \"summary_activation\": null,\n  \"summary_first_dropout\": 0.1,\n"
    "  \"summary_proj_to_labels\": true,\n  \"summary_type\": \"cls_index\",\n"
    "  \"summary_use_proj\": true,\n"
    "  \"task_specific_params\": {\"text-generation\": {\"do_sample\": true, \"max_length\": "
    "50}},\n"
    "  \"vocab_size\": 50257\n"
    "}\n";

static const char llama2_7b[] =
    "{\"_name_or_path\": \"meta-llama/Llama-2-7b-hf\", \"architectures\": [\"LlamaForCausalLM\"],"
    " \"attention_bias\": false, \"bos_token_id\": 1, \"eos_token_id\": 2, \"hidden_act\": "
    "\"silu\","
    " \"hidden_size\": 4096, \"initializer_range\": 0.02, \"intermediate_size\": 11008,"
    " \"max_position_embeddings\": 4096, \"model_type\": \"llama\", \"num_attention_heads\": 32,"
    " \"num_hidden_layers\": 32, \"num_key_value_heads\": 32, \"pretraining_tp\": 1,"
    " \"rms_norm_eps\": 1e-05, \"rope_scaling\": null, \"rope_theta\": 10000.0,"
    " \"tie_word_embeddings\": false, \"torch_dtype\": \"float16\", \"transformers_version\":"
    " \"4.31.0.dev0\", \"use_cache\": true, \"vocab_size\": 32000}";

static const char mistral_7b[] =
    "{\"architectures\": [\"MistralForCausalLM\"], \"bos_token_id\": 1, \"eos_token_id\": 2,"
    " \"hidden_act\": \"silu\", \"hidden_size\": 4096, \"intermediate_size\": 14336,"
    " \"max_position_embeddings\": 32768, \"model_type\": \"mistral\","
    " \"num_attention_heads\": 32, \"num_hidden_layers\": 32, \"num_key_value_heads\": 8,"
    " \"rms_norm_eps\": 1e-05, \"rope_theta\": 1000000.0, \"sliding_window\": null,"
    " \"tie_word_embeddings\": false, \"vocab_size\": 32000}";

static bool parse(const char *json, pa_mfi *m)
{
    pa_error err = {0};
    pa_status st = pa_mfi_parse(json, strlen(json), "config.json", m, &err);
    CHECK_MSG(st == PA_OK, "%s", err.msg);
    return st == PA_OK;
}

static void test_gpt2_xl(void)
{
    pa_mfi m;
    if (!parse(gpt2_xl, &m))
        return;
    CHECK_STR(m.arch_hash, "796f54de604156bfcc465ef9187e15780d47b24946f65ba3f14980f33f4cb14f");
    CHECK_STR(m.model_type, "gpt2");
    CHECK_STR(m.architectures, "[\"GPT2LMHeadModel\"]");
    CHECK_INT(m.hidden_size, 1600);
    CHECK_INT(m.num_hidden_layers, 48);
    CHECK_INT(m.num_attention_heads, 25);
    CHECK_INT(m.num_key_value_heads, PA_NULL_INT);
    CHECK_INT(m.intermediate_size, 0); /* n_inner is not an intermediate_size alias */
    CHECK_INT(m.vocab_size, 50257);
    CHECK_INT(m.max_position_embeddings, 1024);
    CHECK(m.hidden_act == NULL); /* activation_function is not read by the reference */
    CHECK(isnan(m.rope_theta));
    CHECK(m.rope_scaling == NULL);
    CHECK_INT(m.tie_word_embeddings, -1);
    CHECK_INT(m.bos_token_id, 50256);
    CHECK_INT(m.eos_token_id, 50256);
    CHECK_STR(m.attention_style, "MHA");
    CHECK(m.gqa_ratio == 1.0);
    CHECK_STR(m.norm_type, "LayerNorm");
    CHECK_INT(m.attention_bias, -1);
    CHECK(!m.qk_norm);
    CHECK_STR(m.pos_encoding, "absolute");
    CHECK_INT(m.head_dim, 64);
    CHECK_STR(m.tokenizer_hash, EMPTY_SHA);
    CHECK_STR(m.family_hash, "428ec35d99f58d6bed58c5f1b6588997e3cdcb75688c6bd7440e5bb67e13498c");
    pa_mfi_free(&m);
    CHECK(m.model_type == NULL && m.architectures == NULL);
    pa_mfi_free(&m); /* twice is harmless */
}

static void test_llama(void)
{
    pa_mfi m;
    if (!parse(llama2_7b, &m))
        return;
    /* The reference database's hash for meta-llama/Llama-2-7b-hf. */
    CHECK_STR(m.arch_hash, "d3bc9d352e6749d2fcd02a2db337548d0b6d281db8a32078c7d28bac8f2ee828");
    CHECK_STR(m.attention_style, "MHA");
    CHECK_STR(m.norm_type, "RMSNorm");
    CHECK_STR(m.pos_encoding, "RoPE");
    CHECK_STR(m.hidden_act, "silu");
    CHECK(m.rope_theta == 10000.0);
    CHECK(m.rope_scaling == NULL);
    CHECK_INT(m.attention_bias, 0);
    CHECK_INT(m.tie_word_embeddings, 0);
    CHECK_INT(m.head_dim, 128);
    CHECK_INT(m.bos_token_id, 1);
    CHECK_INT(m.eos_token_id, 2);
    CHECK_STR(m.family_hash, "ca3a048a04f0072152bf0b66e9766d43e932d439716e7dde1e7c7fd4ee72382a");
    /* The caller fills the tokenizer hash in and recomputes. */
    pa_sha256_hex("tok", 3, m.tokenizer_hash);
    pa_mfi_finish(&m);
    CHECK_STR(m.family_hash, "03a13a5ece5d943abf0857a599d4dc958f5d0ea530584731e2f8d08b47910873");
    pa_mfi_free(&m);

    if (!parse(mistral_7b, &m))
        return;
    CHECK_STR(m.arch_hash, "d99bf87bfa22ede460e4a284dffd2b6a8d04a9d9c4814a209940e3ce4b90ffe9");
    CHECK_STR(m.attention_style, "GQA");
    CHECK(m.gqa_ratio == 4.0);
    CHECK_INT(m.attention_bias, -1);
    pa_mfi_free(&m);
}

/* Configs whose missing fields the reference hashes as 0 (getattr default), from its database. */
static void test_missing_as_zero(void)
{
    pa_mfi m;
    /* google/aya-101 (T5 aliases; no max_position_embeddings) */
    if (parse("{\"architectures\": [\"T5ForConditionalGeneration\"], \"d_ff\": 10240,"
              " \"d_kv\": 64, \"d_model\": 4096, \"decoder_start_token_id\": 0,"
              " \"dense_act_fn\": \"gelu_new\", \"eos_token_id\": 1, \"feed_forward_proj\":"
              " \"gated-gelu\", \"layer_norm_epsilon\": 1e-06, \"model_type\": \"t5\","
              " \"num_decoder_layers\": 24, \"num_heads\": 64, \"num_layers\": 24,"
              " \"pad_token_id\": 0, \"relative_attention_num_buckets\": 32,"
              " \"tie_word_embeddings\": false, \"vocab_size\": 250112}",
              &m)) {
        CHECK_STR(m.arch_hash, "6c57ee297884385fd6ce6d2fdd0ca6889ba4a890a82a47bfe4fc795deda57a70");
        CHECK_INT(m.hidden_size, 4096);
        CHECK_INT(m.num_hidden_layers, 24);
        CHECK_INT(m.num_attention_heads, 64);
        CHECK_INT(m.intermediate_size, 10240);
        CHECK_INT(m.max_position_embeddings, PA_NULL_INT);
        CHECK_INT(m.head_dim, 64);
        CHECK_INT(m.eos_token_id, 1);
        CHECK_INT(m.bos_token_id, PA_NULL_INT);
        CHECK_STR(m.norm_type, "LayerNorm");
        pa_mfi_free(&m);
    }
    /* bigscience/bloomz-560m (n_head/n_layer; ALiBi, no positions, no intermediate) */
    if (parse("{\"apply_residual_connection_post_layernorm\": false, \"architectures\":"
              " [\"BloomForCausalLM\"], \"attention_dropout\": 0.0, \"bos_token_id\": 1,"
              " \"eos_token_id\": 2, \"hidden_size\": 1024, \"layer_norm_epsilon\": 1e-05,"
              " \"model_type\": \"bloom\", \"n_head\": 16, \"n_inner\": null, \"n_layer\": 24,"
              " \"pad_token_id\": 3, \"vocab_size\": 250880}",
              &m)) {
        CHECK_STR(m.arch_hash, "5b5c29032c8d537dc176b6bd8238c8112858137c3635b042ff0e740579d0be68");
        pa_mfi_free(&m);
    }
}

static void test_backbone(void)
{
    pa_mfi m;
    /* google/gemma-3-4b-it: the text model is in text_config; model_type and architectures stay. */
    if (parse("{\"architectures\": [\"Gemma3ForConditionalGeneration\"], \"boi_token_index\":"
              " 255999, \"eos_token_id\": [1, 106], \"model_type\": \"gemma3\", \"text_config\":"
              " {\"hidden_size\": 2560, \"intermediate_size\": 10240, \"model_type\":"
              " \"gemma3_text\", \"num_hidden_layers\": 34, \"num_attention_heads\": 8,"
              " \"num_key_value_heads\": 4, \"max_position_embeddings\": 131072, \"vocab_size\":"
              " 262208, \"rms_norm_eps\": 1e-06, \"query_pre_attn_scalar\": 256, \"head_dim\": 256,"
              " \"hidden_activation\": \"gelu_pytorch_tanh\", \"rope_scaling\": {\"factor\": 8.0,"
              " \"rope_type\": \"linear\"}, \"rope_theta\": 1000000.0}, \"vision_config\":"
              " {\"hidden_size\": 1152, \"num_hidden_layers\": 27}}",
              &m)) {
        CHECK_STR(m.arch_hash, "0aac6711f344dacdf697b4234eeef24d0080b621a3620725e4e31d491f39aaba");
        CHECK_STR(m.model_type, "gemma3");
        CHECK_INT(m.hidden_size, 2560);
        CHECK_INT(m.num_hidden_layers, 34);
        CHECK_STR(m.attention_style, "GQA");
        CHECK(m.gqa_ratio == 2.0);
        CHECK_STR(m.norm_type, "RMSNorm");
        CHECK(m.qk_norm); /* query_pre_attn_scalar is set */
        CHECK_STR(m.hidden_act, "gelu_pytorch_tanh");
        CHECK_STR(m.pos_encoding, "RoPE");
        CHECK_INT(m.head_dim, 256);
        CHECK_INT(m.eos_token_id, 1); /* first of the list */
        /* cJSON keeps no int/float distinction: Python would write 8.0 here. */
        CHECK_STR(m.rope_scaling, "{\"factor\": 8, \"rope_type\": \"linear\"}");
        pa_mfi_free(&m);
    }
    /* decoder is the fallback; a text_config without a positive hidden size is skipped. */
    if (parse("{\"model_type\": \"encoder-decoder\", \"hidden_size\": 0, \"text_config\":"
              " {\"hidden_size\": 0, \"num_hidden_layers\": 99}, \"decoder\": {\"n_embd\": 768,"
              " \"n_layer\": 12, \"n_head\": 12, \"vocab_size\": 50257}}",
              &m)) {
        CHECK_INT(m.hidden_size, 768);
        CHECK_INT(m.num_hidden_layers, 12);
        CHECK_INT(m.vocab_size, 50257);
        CHECK_STR(m.architectures, "null");
        pa_mfi_free(&m);
    }
    /* A top level with a hidden size is used even when text_config exists. */
    if (parse("{\"hidden_size\": 64, \"text_config\": {\"hidden_size\": 128}}", &m)) {
        CHECK_INT(m.hidden_size, 64);
        pa_mfi_free(&m);
    }
    /* hidden_size: null is "set", so the reference keeps the top level. */
    if (parse("{\"hidden_size\": null, \"text_config\": {\"hidden_size\": 128}}", &m)) {
        CHECK_INT(m.hidden_size, PA_NULL_INT);
        pa_mfi_free(&m);
    }
}

static void test_aliases(void)
{
    pa_mfi m;
    /* The canonical key wins over an alias. */
    if (parse("{\"hidden_size\": 10, \"n_embd\": 20, \"d_model\": 30, \"num_hidden_layers\": 1,"
              " \"n_layer\": 2, \"num_layers\": 3, \"num_attention_heads\": 5, \"n_head\": 6,"
              " \"num_heads\": 7, \"max_position_embeddings\": 8, \"n_positions\": 9}",
              &m)) {
        CHECK_INT(m.hidden_size, 10);
        CHECK_INT(m.num_hidden_layers, 1);
        CHECK_INT(m.num_attention_heads, 5);
        CHECK_INT(m.max_position_embeddings, 8);
        CHECK_INT(m.head_dim, 2);
        pa_mfi_free(&m);
    }
    if (parse("{\"n_embd\": 20, \"d_model\": 30, \"n_layer\": 2, \"num_layers\": 3,"
              " \"n_head\": 6, \"num_heads\": 7, \"n_positions\": 9}",
              &m)) {
        CHECK_INT(m.hidden_size, 20);
        CHECK_INT(m.num_hidden_layers, 2);
        CHECK_INT(m.num_attention_heads, 6);
        CHECK_INT(m.max_position_embeddings, 9);
        CHECK_INT(m.head_dim, PA_NULL_INT); /* 20 / 6 does not divide */
        pa_mfi_free(&m);
    }
    if (parse("{\"d_model\": 30, \"num_layers\": 3, \"num_heads\": 3}", &m)) {
        CHECK_INT(m.hidden_size, 30);
        CHECK_INT(m.num_hidden_layers, 3);
        CHECK_INT(m.num_attention_heads, 3);
        CHECK_INT(m.head_dim, 10);
        pa_mfi_free(&m);
    }
}

static int64_t intermediate(const char *json)
{
    pa_mfi m;
    if (!parse(json, &m))
        return -999;
    int64_t v = m.intermediate_size;
    pa_mfi_free(&m);
    return v;
}

static void test_intermediate(void)
{
    CHECK_INT(intermediate("{\"intermediate_size\": 11008, \"d_ff\": 5}"), 11008);
    CHECK_INT(intermediate("{\"intermediate_size\": 0, \"d_ff\": 5}"), 5);
    CHECK_INT(intermediate("{\"intermediate_size\": null, \"d_ff\": 5}"), 5);
    CHECK_INT(intermediate("{\"intermediate_size\": -3, \"encoder_ffn_dim\": 6}"), 6);
    CHECK_INT(intermediate("{\"decoder_ffn_dim\": 7, \"ffn_dim\": 8}"), 7);
    CHECK_INT(intermediate("{\"ffn_dim\": 8}"), 8);
    CHECK_INT(intermediate("{\"ffn_dim\": 8.7}"), 8);                      /* int() truncates */
    CHECK_INT(intermediate("{\"hidden_dim\": 3072, \"dim\": 768}"), 3072); /* DistilBERT */
    CHECK_INT(intermediate("{\"hidden_dim\": 768, \"hidden_size\": 768}"), 0);
    CHECK_INT(intermediate("{\"hidden_dim\": 3072, \"hidden_size\": 768}"), 3072);
    CHECK_INT(intermediate("{\"n_inner\": 6400}"), 0);
    CHECK_INT(intermediate("{\"intermediate_size\": \"11008\"}"), 0);
    CHECK_INT(intermediate("{}"), 0);
}

static void test_derived(void)
{
    static const struct {
        const char *json;
        const char *style;
        double ratio;
    } att[] = {
        {"{\"num_attention_heads\": 32, \"num_key_value_heads\": 8}", "GQA", 4.0},
        {"{\"num_attention_heads\": 32, \"num_key_value_heads\": 1}", "MQA", 32.0},
        {"{\"num_attention_heads\": 32, \"num_key_value_heads\": 32}", "MHA", 1.0},
        {"{\"num_attention_heads\": 32, \"num_key_value_heads\": null}", "MHA", 1.0},
        {"{\"num_attention_heads\": 12, \"num_key_value_heads\": 5}", "GQA", 2.4},
        {"{\"num_attention_heads\": 1, \"num_key_value_heads\": 4}", "GQA", 0.2}, /* 0.25 → 0.2 */
        {"{\"num_attention_heads\": 3, \"num_key_value_heads\": 4}", "GQA", 0.8}, /* 0.75 → 0.8 */
        {"{\"num_attention_heads\": 71, \"num_key_value_heads\": 0}", "GQA", 1.0},
        {"{\"num_key_value_heads\": 1}", "MHA", 1.0}, /* heads missing → 1 */
        {"{}", "MHA", 1.0},
    };
    for (size_t i = 0; i < sizeof att / sizeof att[0]; i++) {
        pa_mfi m;
        if (!parse(att[i].json, &m))
            continue;
        CHECK_MSG(strcmp(m.attention_style, att[i].style) == 0, "%s: %s", att[i].json,
                  m.attention_style);
        CHECK_MSG(m.gqa_ratio == att[i].ratio, "%s: %g", att[i].json, m.gqa_ratio);
        pa_mfi_free(&m);
    }

    static const struct {
        const char *json;
        const char *norm, *pos;
        int bias;
        bool qk;
    } der[] = {
        {"{\"rms_norm_eps\": 1e-6}", "RMSNorm", "absolute", -1, false},
        {"{\"rms_norm_epsilon\": 1e-6, \"layer_norm_eps\": 1e-5}", "RMSNorm", "absolute", -1,
         false},
        {"{\"layer_norm_eps\": 1e-5, \"position_embedding_type\": \"relative_key\"}", "LayerNorm",
         "relative_key", -1, false},
        {"{\"layer_norm_epsilon\": null}", "LayerNorm", "absolute", -1, false},
        {"{\"rope_theta\": 10000, \"position_embedding_type\": \"rope\"}", "unknown", "RoPE", -1,
         false},
        {"{\"rope_theta\": null, \"position_embedding_type\": \"rope\"}", "unknown", "rope", -1,
         false},
        {"{\"attention_bias\": true, \"bias\": false}", "unknown", "absolute", 1, false},
        {"{\"bias\": false}", "unknown", "absolute", 0, false},
        {"{\"attention_bias\": null, \"bias\": true}", "unknown", "absolute", -1, false},
        {"{\"qk_layernorm\": true}", "unknown", "absolute", -1, true},
        {"{\"qk_norm\": 1}", "unknown", "absolute", -1, true},
        {"{\"qk_norm\": false, \"qk_layernorm\": 0}", "unknown", "absolute", -1, false},
        {"{\"query_pre_attn_scalar\": 0}", "unknown", "absolute", -1, true},
        {"{\"query_pre_attn_scalar\": null}", "unknown", "absolute", -1, false},
    };
    for (size_t i = 0; i < sizeof der / sizeof der[0]; i++) {
        pa_mfi m;
        if (!parse(der[i].json, &m))
            continue;
        CHECK_MSG(strcmp(m.norm_type, der[i].norm) == 0, "%s: %s", der[i].json, m.norm_type);
        CHECK_MSG(strcmp(m.pos_encoding, der[i].pos) == 0, "%s: %s", der[i].json, m.pos_encoding);
        CHECK_MSG(m.attention_bias == der[i].bias, "%s: %d", der[i].json, m.attention_bias);
        CHECK_MSG(m.qk_norm == der[i].qk, "%s", der[i].json);
        pa_mfi_free(&m);
    }
}

/* family_hash of a llama-like config with a given rope_theta, against Python's
 * str(round(theta, -2)) inside json.dumps. */
static void test_rope_bucket(void)
{
    static const struct {
        const char *theta;
        const char *family;
    } cases[] = {
        {"10000.0", "ca3a048a04f0072152bf0b66e9766d43e932d439716e7dde1e7c7fd4ee72382a"},
        {"500000.0", "173fce94bc3a19b20334312d6ceefa878c5d16d2bedfa997d3750c256ff7a202"},
        {"999999.4420358813", "3298762bd9cc8a96885be10a534dcf7f88c2aab536ff2d14b40861a7a82b2585"},
        {"10050", "ca3a048a04f0072152bf0b66e9766d43e932d439716e7dde1e7c7fd4ee72382a"},
        {"10150", "e5310ed68e9aa2ae5b75bb82ad91f1b97ab0c5fc961d1daafaee0552db0d7aad"},
        {"149.5", "e496a073b15309a6d01a916ea4c78bf865403f6805bbdca939d16f37e560dffe"},
        {"250", "240fd9dd2a3c4a027b29cd0ac48c9452e6c069a2d4cec63520440071521ea9b0"},
        {"350", "dd3d9565d75d828ed3c16239ec9d3a94232c23dc807a26e19fa98520cf40d621"},
        {"-149.5", "b43386a53661369d733facaef0fb781752d9a16ce0bf406c07d96d6751b1dad4"},
        {"49", "1c07a11a2a4b1d53e2b25567c2fbde38ed9597a9a1b35a402f4065c4cf8529e6"},
        {"0.001", "1c07a11a2a4b1d53e2b25567c2fbde38ed9597a9a1b35a402f4065c4cf8529e6"},
        {"1e16", "d6aee9f9230af3e308b40bc76a552fcf20faf382bd8f61d5201b6619ad157a50"},
        {"1.5e17", "52149785501828c9cef03321e5e1caf39cb0400135e8c5f1633613df8ba7297d"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[256];
        snprintf(json, sizeof json,
                 "{\"model_type\": \"llama\", \"hidden_act\": \"silu\", \"rms_norm_eps\": 1e-05,"
                 " \"rope_theta\": %s}",
                 cases[i].theta);
        pa_mfi m;
        if (!parse(json, &m))
            continue;
        CHECK_MSG(strcmp(m.family_hash, cases[i].family) == 0, "rope_theta %s", cases[i].theta);
        pa_mfi_free(&m);
    }
    /* rope_scaling: "type" counts; "rope_type" alone is "none" for the reference. */
    pa_mfi m;
    if (parse("{\"model_type\": \"llama\", \"hidden_act\": \"silu\", \"rms_norm_eps\": 1e-05,"
              " \"num_attention_heads\": 32, \"num_key_value_heads\": 8, \"rope_theta\": 10050.0,"
              " \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}}",
              &m)) {
        CHECK_STR(m.family_hash,
                  "da1bac22a076c1c28bd7c0e068c47b3b228bdee48840d1e9288ae9df705a373a");
        pa_mfi_free(&m);
    }
    if (parse("{\"model_type\": \"llama\", \"hidden_act\": \"silu\", \"rms_norm_eps\": 1e-05,"
              " \"rope_theta\": 10000.0, \"rope_scaling\": {\"rope_type\": \"llama3\"}}",
              &m)) {
        CHECK_STR(m.family_hash,
                  "ca3a048a04f0072152bf0b66e9766d43e932d439716e7dde1e7c7fd4ee72382a");
        pa_mfi_free(&m);
    }
}

static void test_odd_values(void)
{
    pa_mfi m;
    /* Non-ASCII is escaped as \uXXXX, above the BMP as a surrogate pair. */
    if (parse(
            "{\"model_type\": \"ll\xc3\xa4m\xc3\xa4\", \"architectures\": [\"X\xf0\x9f\x98\x80\"],"
            " \"hidden_size\": 1, \"num_hidden_layers\": 2, \"num_attention_heads\": 3,"
            " \"vocab_size\": 5}",
            &m)) {
        CHECK_STR(m.arch_hash, "d9155e568ddea03fff62c7ca754ef4632b05aeeee38eb75e53d28f87af0dde3b");
        CHECK_STR(m.architectures, "[\"X\\ud83d\\ude00\"]");
        CHECK_STR(m.model_type, "ll\xc3\xa4m\xc3\xa4");
        pa_mfi_free(&m);
    }
    /* Values of the wrong type are hashed as Python would write them, never crash. */
    if (parse("{\"model_type\": 5, \"architectures\": \"X\", \"hidden_size\": \"4096\","
              " \"num_key_value_heads\": null, \"vocab_size\": true, \"hidden_act\": 7,"
              " \"bos_token_id\": \"1\", \"eos_token_id\": [], \"tie_word_embeddings\": 1,"
              " \"rope_theta\": \"1e4\", \"rope_scaling\": 3}",
              &m)) {
        CHECK_STR(m.arch_hash, "a2816b8f3e237747ac64c1e610ce986c6972a3b55a640a0a742f590a58cac32c");
        CHECK(m.model_type == NULL);
        CHECK_STR(m.architectures, "\"X\"");
        CHECK_INT(m.hidden_size, PA_NULL_INT);
        CHECK_INT(m.vocab_size, PA_NULL_INT);
        CHECK(m.hidden_act == NULL);
        CHECK_INT(m.bos_token_id, PA_NULL_INT);
        CHECK_INT(m.eos_token_id, PA_NULL_INT);
        CHECK_INT(m.tie_word_embeddings, -1);
        CHECK(isnan(m.rope_theta));
        CHECK_STR(m.rope_scaling, "3");
        CHECK_STR(m.family_hash,
                  "f36b6f98b6014c751746d27a372fdefb9c12520619d290df85a62bc1cbe9118e");
        pa_mfi_free(&m);
    }
    /* Huge and fractional numbers. */
    if (parse("{\"hidden_size\": 1e300, \"num_hidden_layers\": 2.5, \"num_attention_heads\":"
              " -4, \"num_key_value_heads\": 9223372036854775807, \"vocab_size\": -1e308,"
              " \"max_position_embeddings\": 1e999, \"intermediate_size\": 1e30,"
              " \"rope_theta\": 1e308, \"head_dim\": -1}",
              &m)) {
        CHECK_INT(m.hidden_size, PA_NULL_INT);
        CHECK_INT(m.num_hidden_layers, PA_NULL_INT);
        CHECK_INT(m.num_attention_heads, -4);
        CHECK_INT(m.intermediate_size, 0);
        CHECK(strlen(m.arch_hash) == 64);
        CHECK(strlen(m.family_hash) == 64);
        pa_mfi_free(&m);
    }
}

static void expect_error(const char *json, size_t len, pa_status want)
{
    pa_mfi m;
    pa_error err = {0};
    pa_status st = pa_mfi_parse(json, len, "models/x/config.json", &m, &err);
    CHECK_MSG(st == want, "status %s for '%.*s'", pa_status_name(st), (int)len, json);
    CHECK_MSG(strncmp(err.msg, "models/x/config.json", 20) == 0, "message '%s' lacks the label",
              err.msg);
    CHECK(m.model_type == NULL && m.architectures == NULL && m.arch_hash[0] == '\0');
    pa_mfi_free(&m);
}

static void test_malformed(void)
{
    static const char *const bad[] = {"[1, 2]",   "\"config\"", "42",          "null",      "true",
                                      "{\"a\": ", "",           "{\"a\": 1,}", "\xff\xfe{}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_error(bad[i], strlen(bad[i]), PA_E_FORMAT);
    pa_mfi m;
    pa_error err = {0};
    CHECK(pa_mfi_parse("[]", 2, "cfg.json", &m, &err) == PA_E_FORMAT);
    CHECK_MSG(strstr(err.msg, "cfg.json") && strstr(err.msg, "not a JSON object"), "%s", err.msg);
    pa_error_clear(&err);
    CHECK(pa_mfi_parse(NULL, 0, "cfg.json", &m, &err) == PA_E_ARG);
    /* Only len bytes are read. */
    const char text[] = "{\"model_type\": \"gpt2\"}{{{{";
    pa_error_clear(&err);
    CHECK(pa_mfi_parse(text, sizeof text - 1 - 4, "cfg.json", &m, &err) == PA_OK);
    pa_mfi_free(&m);
    /* Deep nesting inside an ignored field is fine; inside architectures it cannot be hashed. */
    char deep[2048];
    size_t n = 0;
    n += (size_t)snprintf(deep + n, sizeof deep - n, "{\"architectures\": ");
    for (int i = 0; i < 300; i++)
        deep[n++] = '[';
    for (int i = 0; i < 300; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    pa_error_clear(&err);
    pa_status st = pa_mfi_parse(deep, n, "deep.json", &m, &err);
    CHECK(st == PA_E_LIMIT);
    CHECK_MSG(strstr(err.msg, "deep.json") && strstr(err.msg, "architectures"), "%s", err.msg);
    pa_mfi_free(&m);
    pa_mfi_finish(NULL);
    pa_mfi_free(NULL);
}

static void test_similarity(void)
{
    pa_mfi gpt2, llama, mistral, llama_b;
    if (!parse(gpt2_xl, &gpt2) || !parse(llama2_7b, &llama) || !parse(mistral_7b, &mistral) ||
        !parse(llama2_7b, &llama_b))
        return;
    int tier = -1;
    CHECK(pa_mfi_similarity(&llama, &llama_b, &tier) == 1.0);
    CHECK_INT(tier, 1);
    /* Expected tier-3 scores from the reference's _tier3_soft_score in Python. */
    CHECK(pa_mfi_similarity(&gpt2, &llama, &tier) == 0.319);
    CHECK_INT(tier, 3);
    CHECK(pa_mfi_similarity(&llama, &gpt2, &tier) == 0.319);
    CHECK(pa_mfi_similarity(&llama, &mistral, &tier) == 0.7429);
    CHECK_INT(tier, 3);
    pa_mfi_free(&llama_b);

    /* Same family (model_type, style, act, norm, tokenizer, rope) but another vocabulary: tier 2
     * when hidden size and layer count agree, else tier 3. */
    const char *base = "{\"model_type\": \"llama\", \"hidden_act\": \"silu\", \"rms_norm_eps\":"
                       " 1e-05, \"rope_theta\": 10000.0, \"hidden_size\": %d,"
                       " \"num_hidden_layers\": 32, \"vocab_size\": %d}";
    char a_json[256], b_json[256], c_json[256];
    snprintf(a_json, sizeof a_json, base, 4096, 32000);
    snprintf(b_json, sizeof b_json, base, 4096, 32016);
    snprintf(c_json, sizeof c_json, base, 5120, 32000);
    pa_mfi a, b, c;
    if (parse(a_json, &a) && parse(b_json, &b) && parse(c_json, &c)) {
        CHECK(strcmp(a.arch_hash, b.arch_hash) != 0);
        CHECK_STR(a.family_hash, b.family_hash);
        CHECK(pa_mfi_similarity(&a, &b, &tier) == 0.9);
        CHECK_INT(tier, 2);
        double s = pa_mfi_similarity(&a, &c, &tier);
        CHECK_INT(tier, 3);
        CHECK(s > 0.0 && s < 1.0);
        /* A different tokenizer breaks the family. */
        pa_sha256_hex("other", 5, b.tokenizer_hash);
        pa_mfi_finish(&b);
        pa_mfi_similarity(&a, &b, &tier);
        CHECK_INT(tier, 3);
        pa_mfi_free(&a);
        pa_mfi_free(&b);
        pa_mfi_free(&c);
    }
    /* Empty fingerprints: no crash, tier 3. */
    pa_mfi e1, e2;
    if (parse("{}", &e1) && parse("{}", &e2)) {
        e1.arch_hash[0] = e2.arch_hash[0] = '\0';
        e1.family_hash[0] = e2.family_hash[0] = '\0';
        double s = pa_mfi_similarity(&e1, &e2, &tier);
        CHECK_INT(tier, 3);
        CHECK(s == 1.0); /* every feature agrees (all unknown) */
        pa_mfi_free(&e1);
        pa_mfi_free(&e2);
    }
    CHECK(pa_mfi_similarity(NULL, &gpt2, &tier) == 0.0);
    CHECK(pa_mfi_similarity(&gpt2, &mistral, NULL) >= 0.0);
    pa_mfi_free(&gpt2);
    pa_mfi_free(&llama);
    pa_mfi_free(&mistral);
}

int main(void)
{
    test_gpt2_xl();
    test_llama();
    test_missing_as_zero();
    test_backbone();
    test_aliases();
    test_intermediate();
    test_derived();
    test_rope_bucket();
    test_odd_values();
    test_malformed();
    test_similarity();
    return check_report("config");
}
