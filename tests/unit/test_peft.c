/* PEFT adapters (analyzer/peft.c): adapter_config.json parsing (hostile values refused with a
 * reason), the LoRA shape check against a base, the declared-base name match, and an adapter
 * folder (adapter_config.json + adapter_model.safetensors, no config.json) fingerprinted. */
#include "check.h"
#include "provfs/analyzer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[256];

typedef struct tdef {
    const char *name;
    uint64_t rows, cols; /* cols 0: a vector */
} tdef;

/* Writes a safetensors file of F32 zeros with these tensors. */
static void write_st(const char *path, const tdef *t, size_t n)
{
    char hdr[8192];
    size_t h = 0;
    uint64_t off = 0;
    h += (size_t)snprintf(hdr + h, sizeof hdr - h, "{");
    for (size_t i = 0; i < n; i++) {
        uint64_t numel = t[i].rows * (t[i].cols ? t[i].cols : 1);
        if (t[i].cols)
            h += (size_t)snprintf(hdr + h, sizeof hdr - h,
                                  "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%llu,%llu],"
                                  "\"data_offsets\":[%llu,%llu]}",
                                  i ? "," : "", t[i].name, (unsigned long long)t[i].rows,
                                  (unsigned long long)t[i].cols, (unsigned long long)off,
                                  (unsigned long long)(off + 4 * numel));
        else
            h += (size_t)snprintf(hdr + h, sizeof hdr - h,
                                  "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%llu],"
                                  "\"data_offsets\":[%llu,%llu]}",
                                  i ? "," : "", t[i].name, (unsigned long long)t[i].rows,
                                  (unsigned long long)off, (unsigned long long)(off + 4 * numel));
        off += 4 * numel;
    }
    h += (size_t)snprintf(hdr + h, sizeof hdr - h, "}");
    while (h % 8)
        hdr[h++] = ' ';
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f)
        return;
    uint8_t len[8];
    for (int b = 0; b < 8; b++)
        len[b] = (uint8_t)((uint64_t)h >> (8 * b));
    fwrite(len, 1, 8, f);
    fwrite(hdr, 1, h, f);
    /* non-zero values, so the weights pass has something to sketch */
    for (uint64_t i = 0; i < off / 4; i++) {
        float v = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
        fwrite(&v, 4, 1, f);
    }
    fclose(f);
}

static pa_fingerprint *fp_of(const char *path)
{
    pa_fingerprint *fp = NULL;
    pa_error err = {0};
    pa_status st = pa_fingerprint_path(path, NULL, &fp, &err);
    CHECK_MSG(st == PA_OK && fp, "%s: %s", path, err.msg);
    return fp;
}

static void test_config(void)
{
    pa_peft_config c;
    pa_error err = {0};
    const char *good = "{\"base_model_name_or_path\": \"meta/llama\", \"peft_type\": \"LORA\","
                       " \"r\": 8, \"lora_alpha\": 16, \"target_modules\": [\"q_proj\", \"v_proj\"]}";
    CHECK(pa_peft_config_parse(good, strlen(good), "a.json", &c, &err) == PA_OK);
    CHECK(c.base && strcmp(c.base, "meta/llama") == 0);
    CHECK(c.peft_type && strcmp(c.peft_type, "LORA") == 0);
    CHECK(c.r == 8 && c.lora_alpha == 16 && c.n_targets == 2);
    CHECK(c.n_targets == 2 && strcmp(c.targets[1], "v_proj") == 0);
    pa_peft_config_free(&c);
    const char *regex = "{\"target_modules\": \".*proj\", \"base_model_name_or_path\": null}";
    CHECK(pa_peft_config_parse(regex, strlen(regex), "a.json", &c, &err) == PA_OK);
    CHECK(!c.base && c.r == PA_NULL_INT && c.n_targets == 1 && strcmp(c.targets[0], ".*proj") == 0);
    pa_peft_config_free(&c);
    static const struct {
        const char *json, *want;
    } bad[] = {
        {"[]", "not a JSON object"},
        {"{\"base_model_name_or_path\": 3}", "base_model_name_or_path"},
        {"{\"base_model_name_or_path\": [\"x\"]}", "base_model_name_or_path"},
        {"{\"base_model_name_or_path\": \"\"}", "base_model_name_or_path"},
        {"{\"base_model_name_or_path\": \"a\\u0001b\"}", "base_model_name_or_path"},
        {"{\"base_model_name_or_path\": \"a\\nb\"}", "base_model_name_or_path"},
        {"{\"r\": -1}", "\"r\""},
        {"{\"r\": 0}", "\"r\""},
        {"{\"r\": 1.5}", "\"r\""},
        {"{\"r\": 1e30}", "\"r\""},
        {"{\"r\": \"8\"}", "\"r\""},
        {"{\"lora_alpha\": -2}", "lora_alpha"},
        {"{\"target_modules\": [1]}", "target_modules"},
        {"{\"target_modules\": {}}", "target_modules"},
        {"{\"peft_type\": 7}", "peft_type"},
        {"{", "a.json"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        pa_error e = {0};
        CHECK_MSG(pa_peft_config_parse(bad[i].json, strlen(bad[i].json), "a.json", &c, &e) != PA_OK,
                  "accepted %s", bad[i].json);
        CHECK_MSG(strstr(e.msg, bad[i].want) && !strchr(e.msg, '\n'), "%s: '%s'", bad[i].json,
                  e.msg);
        CHECK(!c.base && !c.targets);
    }
    /* an over-long name, too many targets */
    char big[2048];
    int n = snprintf(big, sizeof big, "{\"base_model_name_or_path\": \"");
    memset(big + n, 'x', 300);
    snprintf(big + n + 300, sizeof big - (size_t)n - 300, "\"}");
    CHECK(pa_peft_config_parse(big, strlen(big), "a.json", &c, &err) != PA_OK);
    char *many = malloc(8192);
    if (many) {
        size_t m = (size_t)snprintf(many, 8192, "{\"target_modules\": [");
        for (int i = 0; i < 300; i++)
            m += (size_t)snprintf(many + m, 8192 - m, "%s\"q\"", i ? "," : "");
        snprintf(many + m, 8192 - m, "]}");
        pa_error e = {0};
        CHECK(pa_peft_config_parse(many, strlen(many), "a.json", &c, &e) != PA_OK);
        CHECK(strstr(e.msg, "at most 256") != NULL);
        free(many);
    }
}

static void test_shapes(void)
{
    char base_p[300], ad_p[300], wide_p[300], odd_p[300];
    snprintf(base_p, sizeof base_p, "%s/base.safetensors", tmp);
    snprintf(ad_p, sizeof ad_p, "%s/ad.safetensors", tmp);
    snprintf(wide_p, sizeof wide_p, "%s/wide.safetensors", tmp);
    snprintf(odd_p, sizeof odd_p, "%s/odd.safetensors", tmp);
    tdef base[] = {{"model.layers.0.self_attn.q_proj.weight", 8, 16},
                   {"model.layers.0.self_attn.v_proj.weight", 4, 16},
                   {"model.norm.weight", 16, 0}};
    tdef wide[] = {{"model.layers.0.self_attn.q_proj.weight", 8, 24},
                   {"model.layers.0.self_attn.v_proj.weight", 4, 16}};
    tdef ad[] = {{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", 2, 16},
                 {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", 8, 2},
                 {"base_model.model.model.layers.0.self_attn.v_proj.lora_A.default.weight", 2, 16},
                 {"base_model.model.model.layers.0.self_attn.v_proj.lora_B.default.weight", 4, 2}};
    /* a module the base lacks, and a B without its A */
    tdef odd[] = {{"base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight", 2, 16},
                  {"base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight", 8, 2},
                  {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", 8, 2}};
    write_st(base_p, base, 3);
    write_st(ad_p, ad, 4);
    write_st(wide_p, wide, 2);
    write_st(odd_p, odd, 3);
    pa_fingerprint *b = fp_of(base_p), *a = fp_of(ad_p), *w = fp_of(wide_p), *o = fp_of(odd_p);
    if (!b || !a || !w || !o)
        goto out;
    CHECK(pa_peft_is_adapter(a) && !pa_peft_is_adapter(b));
    pa_peft_check c;
    pa_peft_check_shapes(b, a, &c);
    CHECK_MSG(pa_peft_fits(&c) && c.n_pairs == 2 && c.n_matched == 2 && c.rank == 2,
              "pairs %zu matched %zu rank %lld: %s", c.n_pairs, c.n_matched, (long long)c.rank,
              c.problem);
    pa_peft_check_shapes(w, a, &c);
    CHECK(!pa_peft_fits(&c) && c.n_matched == 1 && c.n_mismatched == 1);
    CHECK_MSG(strstr(c.problem, "q_proj: lora_B x lora_A is 8x16, the base weight 8x24"), "%s",
              c.problem);
    pa_peft_check_shapes(b, o, &c);
    CHECK(!pa_peft_fits(&c) && c.n_missing == 1 && c.n_mismatched == 1);
    CHECK(strstr(c.problem, "k_proj: no such module in the base") != NULL);
    /* a base is no adapter of itself: no LoRA pairs */
    pa_peft_check_shapes(b, b, &c);
    CHECK(!pa_peft_fits(&c) && c.n_pairs == 0 && c.n_other == 3);
out:
    pa_fingerprint_free(b);
    pa_fingerprint_free(a);
    pa_fingerprint_free(w);
    pa_fingerprint_free(o);
}

static void test_folder(void)
{
    char dir[300], p[400];
    snprintf(dir, sizeof dir, "%s/adapter", tmp);
    CHECK(mkdir(dir, 0755) == 0);
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    tdef ad[] = {{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", 2, 16},
                 {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", 8, 2}};
    write_st(p, ad, 2);
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    FILE *f = fopen(p, "w");
    if (f) {
        fputs("{\"base_model_name_or_path\": \"bases/base\", \"r\": 2}", f);
        fclose(f);
    }
    pa_fingerprint *fp = fp_of(dir);
    if (fp) {
        CHECK(pa_peft_is_adapter(fp) && pa_fp_n_tensors(fp) == 2 && pa_fp_n_files(fp) == 2);
        CHECK(pa_fp_mfi(fp) == NULL);
    }
    pa_fingerprint_free(fp);
}

static void test_base_match(void)
{
    CHECK(pa_peft_base_match("/bases/base", "/bases/base") > 0);
    CHECK(pa_peft_base_match("bases/base", "/bases/base") > 0);
    CHECK(pa_peft_base_match("base", "/bases/base") > 0);
    CHECK(pa_peft_base_match("/mnt/store/bases/base/", "/bases/base") > 0);
    CHECK(pa_peft_base_match("/mnt/store/bases/base", "/bases/base") >
          pa_peft_base_match("base", "/x/base"));
    CHECK(pa_peft_base_match("meta/llama", "/hub/models--meta--llama/snapshots/abc") > 0);
    CHECK(pa_peft_base_match("meta/llama", "/hub/models--meta--llama2/snapshots/abc") == 0);
    CHECK(pa_peft_base_match("/bases/base", "/bases/base2") == 0);
    CHECK(pa_peft_base_match("/other/base", "/bases/base") == 0);
    CHECK(pa_peft_base_match("ase", "/bases/base") == 0);
    CHECK(pa_peft_base_match("..", "/bases/base/..") == 0);
    CHECK(pa_peft_base_match("", "/bases/base") == 0);
    CHECK(pa_peft_base_match(NULL, "/bases/base") == 0);
    CHECK(pa_peft_base_match("/", "/") == 0);
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/provfs-test-peft-XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_config();
    test_shapes();
    test_folder();
    test_base_match();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", tmp);
    return check_report("peft");
}
