/* Bad input through the real CLI: every malformed model makes `provctl fingerprint` exit 2 with one
 * line on stderr that names the file and the problem — never a crash, hang or huge allocation. */
#include "check.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmp[256];
static const char *provctl;

static void write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

static const char *config_llama =
    "{\"model_type\":\"llama\",\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":8,"
    "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":4,\"rms_norm_eps\":1e-6}";

static char *new_dir(const char *name, bool with_config)
{
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", tmp, name);
    mkdir(dir, 0755);
    if (with_config)
        write_file(dir, "config.json", config_llama, strlen(config_llama));
    return dir;
}

/* safetensors bytes: 8-byte length, header text, then data */
static void write_st(const char *dir, const char *name, const char *header, const void *data,
                     size_t dlen, int64_t fake_len)
{
    size_t hl = strlen(header);
    size_t total = 8 + hl + dlen;
    uint8_t *buf = malloc(total);
    uint64_t n = fake_len >= 0 ? (uint64_t)fake_len : hl;
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(n >> (8 * i));
    memcpy(buf + 8, header, hl);
    if (dlen)
        memcpy(buf + 8 + hl, data, dlen);
    write_file(dir, name, buf, total);
    free(buf);
}

/* Runs provctl fingerprint DIR; checks exit 2 and one stderr line containing both needles. */
static void expect_error(const char *dir, const char *needle1, const char *needle2)
{
    char cmd[1200], out[600];
    snprintf(out, sizeof out, "%s/stderr.txt", tmp);
    snprintf(cmd, sizeof cmd, "timeout 60 %s fingerprint %s >/dev/null 2>%s", provctl, dir, out);
    int rc = system(cmd);
    int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    FILE *f = fopen(out, "r");
    char text[4096] = "";
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f)
        fclose(f);
    text[n] = '\0';
    int lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += text[i] == '\n';
    CHECK_MSG(code == 2, "%s: exit %d, stderr: %s", dir, code, text);
    CHECK_MSG(lines == 1, "%s: %d stderr lines: %s", dir, lines, text);
    CHECK_MSG(strstr(text, needle1) != NULL, "%s: '%s' not in: %s", dir, needle1, text);
    CHECK_MSG(!needle2 || strstr(text, needle2) != NULL, "%s: '%s' not in: %s", dir, needle2, text);
    fprintf(stderr, "ok: %s", text);
}

int main(void)
{
    provctl = getenv("PROVCTL");
    if (!provctl) {
        fprintf(stderr, "PROVCTL is not set\n");
        return 1;
    }
    snprintf(tmp, sizeof tmp, "/tmp/provfs-bad-XXXXXX");
    if (!mkdtemp(tmp))
        return 1;
    float w[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    char *d;

    d = new_dir("missing-config", false);
    write_st(d, "model.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}}", w, 32, -1);
    expect_error(d, "config.json", "missing");

    d = new_dir("truncated", true);
    write_st(d, "model.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}}", w, 16, -1);
    expect_error(d, "model.safetensors", NULL);

    d = new_dir("short-file", true);
    write_file(d, "model.safetensors", "\x05\x00", 2);
    expect_error(d, "model.safetensors", NULL);

    d = new_dir("header-past-eof", true);
    write_st(d, "model.safetensors", "{}", NULL, 0, 1 << 20);
    expect_error(d, "model.safetensors", NULL);

    d = new_dir("header-huge", true);
    write_st(d, "model.safetensors", "{}", NULL, 0, INT64_MAX);
    expect_error(d, "model.safetensors", NULL);

    d = new_dir("invalid-json", true);
    write_st(d, "model.safetensors", "{\"w\":{\"dtype\":\"F32\",", NULL, 0, -1);
    expect_error(d, "model.safetensors", "JSON");

    d = new_dir("offsets-out-of-range", true);
    write_st(d, "model.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,4096]}}", w, 32, -1);
    expect_error(d, "model.safetensors", NULL);

    d = new_dir("overlap", true);
    write_st(d, "model.safetensors",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", w, 32, -1);
    expect_error(d, "model.safetensors", "overlap");

    d = new_dir("shape-mismatch", true);
    write_st(d, "model.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,32]}}", w, 32, -1);
    expect_error(d, "model.safetensors", NULL);

    d = new_dir("unknown-dtype", true);
    write_st(d, "model.safetensors", "{\"w\":{\"dtype\":\"Q7\",\"shape\":[8],\"data_offsets\":[0,32]}}", w, 32, -1);
    expect_error(d, "model.safetensors", "dtype");

    float bad[8] = {1, 2, NAN, 4, 5, INFINITY, 7, 8};
    d = new_dir("nan-weights", true);
    write_st(d, "model.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}}", bad, 32, -1);
    expect_error(d, "NaN", "'w'");

    d = new_dir("empty-vocab", true);
    write_st(d, "model.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}}", w, 32, -1);
    const char *tok = "{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]},\"added_tokens\":[]}";
    write_file(d, "tokenizer.json", tok, strlen(tok));
    expect_error(d, "tokenizer.json", "vocab");

    d = new_dir("nested-config", false);
    {
        size_t depth = 100000;
        char *deep = malloc(2 * depth + 32);
        size_t o = 0;
        o += (size_t)sprintf(deep, "{\"x\":");
        for (size_t i = 0; i < depth; i++)
            deep[o++] = '[';
        for (size_t i = 0; i < depth; i++)
            deep[o++] = ']';
        deep[o++] = '}';
        write_file(d, "config.json", deep, o);
        free(deep);
    }
    expect_error(d, "config.json", NULL);

    d = new_dir("config-not-object", false);
    write_file(d, "config.json", "[1,2,3]", 7);
    expect_error(d, "config.json", NULL);

    d = new_dir("many-tensors", true);
    {
        /* 100,000 one-element tensors: refused by the fingerprint limit, not allocated for */
        size_t n = 100000, cap = n * 96 + 16, o = 0;
        char *h = malloc(cap);
        h[o++] = '{';
        for (size_t i = 0; i < n; i++)
            o += (size_t)snprintf(h + o, cap - o, "%s\"t%zu\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[%zu,%zu]}",
                                  i ? "," : "", i, i, i + 1);
        h[o++] = '}';
        h[o] = '\0';
        uint8_t *data = calloc(n, 1);
        write_st(d, "model.safetensors", h, data, n, -1);
        free(h);
        free(data);
    }
    expect_error(d, "tensors", NULL);

    d = new_dir("missing-shard", true);
    {
        const char *idx = "{\"metadata\":{\"total_size\":64},\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
                          "\"b\":\"model-00002-of-00002.safetensors\"}}";
        write_file(d, "model.safetensors.index.json", idx, strlen(idx));
        write_st(d, "model-00001-of-00002.safetensors",
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}}", w, 32, -1);
    }
    expect_error(d, "model-00002-of-00002.safetensors", "missing");

    d = new_dir("pickle-named-safetensors", true);
    write_file(d, "model.safetensors", "\x80\x02}q\x00(X\x01\x00\x00\x00", 12);
    expect_error(d, "model.safetensors", NULL);

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp);
    return check_report("badinput");
}
