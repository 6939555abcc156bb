/* Every record of the reference database (152 real models): rebuild a config.json from its "mfi"
 * fields, parse it, and require the reference's arch_hash, derived fields and — with the record's
 * tokenizer_hash filled in — its family_hash. */
#include "check.h"
#include "jsonutil.h"
#include "provfs/analyzer.h"

#include <ftw.h>

static char **paths;
static size_t n_int_theta; /* family_hash differs only by the int/float form of rope_theta */
static size_t n_paths, cap_paths;

static int collect(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    size_t len = strlen(path);
    static const char suffix[] = "_features.json";
    if (type != FTW_F || len < sizeof suffix - 1 ||
        strcmp(path + len - (sizeof suffix - 1), suffix) != 0)
        return 0;
    if (n_paths == cap_paths) {
        size_t cap = cap_paths ? cap_paths * 2 : 256;
        char **p = realloc(paths, cap * sizeof *p);
        if (!p)
            return 1;
        paths = p;
        cap_paths = cap;
    }
    paths[n_paths] = strdup(path);
    return paths[n_paths++] ? 0 : 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Copy mfi[key] into cfg as cfg_key unless it is null (or absent). */
static void copy_field(cJSON *cfg, const cJSON *mfi, const char *key, const char *cfg_key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(mfi, key);
    if (v && !cJSON_IsNull(v))
        cJSON_AddItemToObject(cfg, cfg_key, cJSON_Duplicate(v, true));
}

/* A config.json that carries what the record says the model's config held. */
static char *rebuild_config(const cJSON *mfi)
{
    cJSON *cfg = cJSON_CreateObject();
    static const char *const direct[] = {
        "model_type",
        "architectures",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "intermediate_size",
        "vocab_size",
        "max_position_embeddings",
        "hidden_act",
        "rope_theta",
        "rope_scaling",
        "tie_word_embeddings",
        "bos_token_id",
        "eos_token_id",
        "head_dim",
        "attention_bias",
    };
    for (size_t i = 0; i < sizeof direct / sizeof direct[0]; i++)
        copy_field(cfg, mfi, direct[i], direct[i]);
    const char *norm = pa_json_str(mfi, "norm_type");
    if (norm && strcmp(norm, "RMSNorm") == 0)
        cJSON_AddNumberToObject(cfg, "rms_norm_eps", 1e-6);
    else if (norm && strcmp(norm, "LayerNorm") == 0)
        cJSON_AddNumberToObject(cfg, "layer_norm_eps", 1e-5);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(mfi, "qk_norm")))
        cJSON_AddTrueToObject(cfg, "qk_norm");
    const char *pos = pa_json_str(mfi, "pos_encoding");
    if (pos && strcmp(pos, "RoPE") != 0 && strcmp(pos, "absolute") != 0)
        cJSON_AddStringToObject(cfg, "position_embedding_type", pos);
    char *text = cJSON_PrintUnformatted(cfg);
    cJSON_Delete(cfg);
    return text;
}

static void check_record(const char *path)
{
    pa_error err = {0};
    char *text = NULL;
    size_t len = 0;
    if (pa_read_file(path, PA_JSON_MAX_FILE, &text, &len, &err) != PA_OK) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    cJSON *rec = pa_json_parse(text, len, path, &err);
    free(text);
    const cJSON *mfi = cJSON_GetObjectItemCaseSensitive(rec, "mfi");
    const char *want_arch = pa_json_str(mfi, "arch_hash");
    const char *want_family = pa_json_str(mfi, "family_hash");
    const char *tok_hash = pa_json_str(mfi, "tokenizer_hash");
    CHECK_MSG(want_arch && want_family && tok_hash, "%s: no mfi hashes", path);
    char *config = rec && want_arch ? rebuild_config(mfi) : NULL;
    pa_mfi m;
    if (config && pa_mfi_parse(config, strlen(config), path, &m, &err) == PA_OK) {
        CHECK_MSG(strcmp(m.arch_hash, want_arch) == 0, "%s: arch_hash %s != %s\n  %s", path,
                  m.arch_hash, want_arch, config);
        const char *style = pa_json_str(mfi, "attention_style");
        CHECK_MSG(style && strcmp(m.attention_style, style) == 0, "%s: attention_style %s", path,
                  m.attention_style);
        const cJSON *ratio = cJSON_GetObjectItemCaseSensitive(mfi, "gqa_ratio");
        CHECK_MSG(cJSON_IsNumber(ratio) && ratio->valuedouble == m.gqa_ratio, "%s: gqa_ratio %g",
                  path, m.gqa_ratio);
        const char *pos = pa_json_str(mfi, "pos_encoding");
        CHECK_MSG(pos && strcmp(m.pos_encoding, pos) == 0, "%s: pos_encoding %s", path,
                  m.pos_encoding);
        const char *norm = pa_json_str(mfi, "norm_type");
        CHECK_MSG(norm && strcmp(m.norm_type, norm) == 0, "%s: norm_type %s", path, m.norm_type);
        snprintf(m.tokenizer_hash, sizeof m.tokenizer_hash, "%s", tok_hash ? tok_hash : "");
        pa_mfi_finish(&m);
        /* Known deviation: the reference buckets a rope_theta written as an integer (1000000) as
         * "1000000", a float as "1000000.0". The record stores it as a float either way, and cJSON
         * keeps no such distinction, so we always use the float form. */
        bool integral_theta = !isnan(m.rope_theta) && m.rope_theta == floor(m.rope_theta);
        if (strcmp(m.family_hash, want_family) != 0 && integral_theta)
            n_int_theta++;
        else
            CHECK_MSG(strcmp(m.family_hash, want_family) == 0, "%s: family_hash %s != %s\n  %s",
                      path, m.family_hash, want_family, config);
        pa_mfi_free(&m);
    } else {
        CHECK_MSG(0, "%s: %s", path, config ? err.msg : "cannot rebuild a config");
    }
    free(config);
    cJSON_Delete(rec);
}

int main(void)
{
    const char *dir = getenv("PROVFS_TESTDATA");
    CHECK_MSG(dir != NULL, "PROVFS_TESTDATA is not set");
    if (!dir)
        return check_report("refdb_arch");
    char root[4096];
    snprintf(root, sizeof root, "%s/refdb/cisco-mpk/features", dir);
    CHECK_MSG(nftw(root, collect, 16, FTW_PHYS) == 0, "cannot walk %s", root);
    qsort(paths, n_paths, sizeof *paths, cmp_str);
    for (size_t i = 0; i < n_paths; i++) {
        check_record(paths[i]);
        free(paths[i]);
    }
    free(paths);
    CHECK_INT(n_paths, 152);
    /* gemma-3-1b-it and the three InternLM2.5 chat models write rope_theta as an integer. */
    CHECK_INT(n_int_theta, 4);
    return check_report("refdb_arch");
}
