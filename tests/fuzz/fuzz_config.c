/* libFuzzer target: config.json → MFI (pa_mfi_parse, pa_mfi_finish, pa_mfi_similarity). */
#include "provfs/analyzer.h"

#include <string.h>

static const char k_reference[] =
    "{\"model_type\": \"llama\", \"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 4096,"
    " \"num_hidden_layers\": 32, \"num_attention_heads\": 32, \"num_key_value_heads\": 8,"
    " \"intermediate_size\": 11008, \"vocab_size\": 32000, \"max_position_embeddings\": 4096,"
    " \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"hidden_act\": \"silu\"}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pa_mfi reference;
    static int have_reference;
    pa_error err = {0};
    if (!have_reference) {
        if (pa_mfi_parse(k_reference, strlen(k_reference), "reference", &reference, &err) != PA_OK)
            __builtin_trap();
        have_reference = 1;
    }
    pa_mfi m;
    pa_error_clear(&err);
    pa_status st = pa_mfi_parse((const char *)data, size, "fuzz/config.json", &m, &err);
    if (st != PA_OK) {
        if (err.status != st || !err.msg[0] || strlen(err.msg) >= sizeof err.msg)
            __builtin_trap();
        pa_mfi_free(&m);
        return 0;
    }
    if (strlen(m.arch_hash) != 64 || strlen(m.family_hash) != 64 || !m.architectures)
        __builtin_trap();
    int tier = 0;
    double self = pa_mfi_similarity(&m, &m, &tier);
    if (self != 1.0 || tier != 1)
        __builtin_trap();
    /* No range check: negative dimensions push the reference's formula outside [0, 1]. */
    double s = pa_mfi_similarity(&m, &reference, &tier);
    if (s != s && tier != 3) /* NaN only ever from the soft score */
        __builtin_trap();
    pa_sha256_hex("fuzz", 4, m.tokenizer_hash);
    pa_mfi_finish(&m);
    if (strlen(m.family_hash) != 64)
        __builtin_trap();
    pa_mfi_free(&m);
    return 0;
}
