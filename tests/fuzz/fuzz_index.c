/* libFuzzer target: the sharded-index reader. The input is model.safetensors.index.json of a
 * directory that also holds two small valid shards (model-00001-of-00002.safetensors and
 * model-00002-of-00002.safetensors) and a config.json; pa_fingerprint_path reads the index, opens
 * the shards it names and streams their tensors. A failure must say why and leak nothing; a
 * success must survive its JSON form. */
#include "fuzz_contract.h"
#include "fuzz_tmpdir.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One shard file: 8-byte little-endian header length, header JSON, data (bytes i * 7 + seed). */
static void write_shard(const char *name, const char *header, size_t data_len, unsigned seed)
{
    size_t hl = strlen(header), n = 8 + hl + data_len;
    uint8_t *buf = malloc(n);
    if (!buf)
        abort();
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    for (size_t i = 0; i < data_len; i++)
        buf[8 + hl + i] = (uint8_t)(i * 7 + seed);
    fuzz_dir_write(name, buf, n);
    free(buf);
}

static void write_fixture(void)
{
    /* F16 values from the byte pattern: finite, and small enough to stream in microseconds */
    write_shard("model-00001-of-00002.safetensors",
                "{\"__metadata__\":{\"format\":\"pt\"},"
                "\"model.embed_tokens.weight\":{\"dtype\":\"F16\",\"shape\":[16,8],"
                "\"data_offsets\":[0,256]},"
                "\"model.layers.0.self_attn.q_proj.weight\":{\"dtype\":\"F16\",\"shape\":[8,8],"
                "\"data_offsets\":[256,384]}}",
                384, 1);
    write_shard("model-00002-of-00002.safetensors",
                "{\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[8],"
                "\"data_offsets\":[0,32]},"
                "\"lm_head.weight\":{\"dtype\":\"F16\",\"shape\":[16,8],"
                "\"data_offsets\":[32,288]}}",
                288, 3);
    static const char config[] =
        "{\"model_type\":\"llama\",\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":8,"
        "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":16}";
    fuzz_dir_write("config.json", config, sizeof config - 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *dir = fuzz_dir_get();
    fuzz_dir_clean();
    write_fixture();
    fuzz_dir_write("model.safetensors.index.json", data, size);

    pa_fp_options opt = {0};
    opt.threads = 1;
    pa_error err = {0};
    pa_fingerprint *fp = NULL;
    pa_status st = pa_fingerprint_path(dir, &opt, &fp, &err);
    if (st != PA_OK) {
        if (fp)
            fuzz_fail("failed fingerprint handed back", err.msg);
        fuzz_check_failure(st, &err);
        return 0;
    }
    if (!fp || strcmp(pa_fp_format(fp), "safetensors") != 0 || strlen(pa_fp_digest(fp)) != 64)
        fuzz_fail("indexed unit fingerprinted as something else", fp ? pa_fp_format(fp) : NULL);
    free(fuzz_check_roundtrip(fp));
    pa_fingerprint_free(fp);
    return 0;
}
