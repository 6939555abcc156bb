/* Fingerprint of hand-made models whose every statistic is known, tensor roles, threads, file
 * hashing modes, and the JSON round trip. */
#include "check.h"
#include "fp.h"
#include "sha.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[256];

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

static void write_st(const char *path, const char *header, const void *data, size_t dlen)
{
    size_t hl = strlen(header);
    uint8_t *buf = malloc(8 + hl + dlen);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    memcpy(buf + 8 + hl, data, dlen);
    write_file(path, buf, 8 + hl + dlen);
    free(buf);
}

static const char *config =
    "{\"model_type\":\"llama\",\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":4,"
    "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"vocab_size\":3,\"rms_norm_eps\":1e-6}";

static void test_roles(void)
{
    struct {
        const char *name, *role;
        int layer;
    } cases[] = {
        {"model.layers.3.self_attn.q_proj.weight", "attn_q.w", 3},
        {"model.layers.0.mlp.down_proj.weight", "mlp_down.w", 0},
        {"transformer.h.11.attn.c_attn.weight", "attn_qkv.w", 11},
        {"transformer.h.11.attn.c_attn.bias", "attn_qkv.b", 11},
        {"transformer.h.2.attn.c_proj.weight", "attn_o.w", 2},
        {"transformer.h.2.mlp.c_proj.weight", "mlp_down.w", 2},
        {"transformer.h.2.mlp.c_fc.weight", "mlp_up.w", 2},
        {"transformer.blocks.5.attn.wq.weight", "attn_q.w", 5},
        {"transformer.blocks.5.ffn.w1.weight", "mlp_gate.w", 5},
        {"base_model.model.transformer.h.0.ln_1.weight", "norm_attn.w", 0},
        {"model.embed_tokens.weight", "embed.w", -1},
        {"transformer.wte.weight", "embed.w", -1},
        {"lm_head.weight", "lm_head.w", -1},
        {"model.norm.weight", "norm_final.w", -1},
        {"model.layers.1.input_layernorm.weight", "norm_attn.w", 1},
        {"blk.7.attn_q.weight", "attn_q.w", 7},
        {"token_embd.weight", "embed.w", -1},
        {"encoder.layer.4.something.odd.weight", "x:encoder.layer.{L}.something.odd.weight", 4},
        {"weird", "x:weird", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int32_t layer;
        char *r = pa_role_of(cases[i].name, &layer);
        CHECK_MSG(r && strcmp(r, cases[i].role) == 0, "%s -> %s (want %s)", cases[i].name,
                  r ? r : "NULL", cases[i].role);
        CHECK_MSG(layer == cases[i].layer, "%s layer %d (want %d)", cases[i].name, layer,
                  cases[i].layer);
        free(r);
    }
}

/* A 2-layer toy: embed [3,4], q [4,4] per layer, norm [4]: values chosen so sums are exact. */
static void make_toy(const char *dir, bool sharded)
{
    char p[512];
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_file(p, config, strlen(config));
    float embed[12], q0[16], q1[16], norm[4] = {1, 2, 3, 4};
    for (int i = 0; i < 12; i++)
        embed[i] = (float)(i - 6);
    for (int i = 0; i < 16; i++) {
        q0[i] = (float)i;
        q1[i] = (float)(i % 4) - 1.5f;
    }
    const char *h_embed = "\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[%d,%d]}";
    (void)h_embed;
    if (!sharded) {
        char header[1024];
        snprintf(header, sizeof header,
                 "{\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,48]},"
                 "\"model.layers.0.self_attn.q_proj.weight\":{\"dtype\":\"F32\",\"shape\":[4,4],\"data_offsets\":[48,112]},"
                 "\"model.layers.1.self_attn.q_proj.weight\":{\"dtype\":\"F32\",\"shape\":[4,4],\"data_offsets\":[112,176]},"
                 "\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[176,192]}}");
        uint8_t data[192];
        memcpy(data, embed, 48);
        memcpy(data + 48, q0, 64);
        memcpy(data + 112, q1, 64);
        memcpy(data + 176, norm, 16);
        snprintf(p, sizeof p, "%s/model.safetensors", dir);
        write_st(p, header, data, sizeof data);
    } else {
        uint8_t d1[112], d2[80];
        memcpy(d1, embed, 48);
        memcpy(d1 + 48, q0, 64);
        memcpy(d2, q1, 64);
        memcpy(d2 + 64, norm, 16);
        snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
        write_st(p,
                 "{\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,48]},"
                 "\"model.layers.0.self_attn.q_proj.weight\":{\"dtype\":\"F32\",\"shape\":[4,4],\"data_offsets\":[48,112]}}",
                 d1, sizeof d1);
        snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
        write_st(p,
                 "{\"model.layers.1.self_attn.q_proj.weight\":{\"dtype\":\"F32\",\"shape\":[4,4],\"data_offsets\":[0,64]},"
                 "\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[64,80]}}",
                 d2, sizeof d2);
        const char *idx =
            "{\"metadata\":{\"total_size\":192},\"weight_map\":{"
            "\"model.embed_tokens.weight\":\"model-00001-of-00002.safetensors\","
            "\"model.layers.0.self_attn.q_proj.weight\":\"model-00001-of-00002.safetensors\","
            "\"model.layers.1.self_attn.q_proj.weight\":\"model-00002-of-00002.safetensors\","
            "\"model.norm.weight\":\"model-00002-of-00002.safetensors\"}}";
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
        write_file(p, idx, strlen(idx));
    }
}

static const pa_tensor_fp *find(const pa_fingerprint *fp, const char *name)
{
    for (size_t i = 0; i < fp->n_tensors; i++)
        if (strcmp(fp->tensors[i].name, name) == 0)
            return &fp->tensors[i];
    return NULL;
}

static pa_fingerprint *fingerprint(const char *path, int threads, unsigned flags)
{
    pa_fp_options opt = {0};
    opt.threads = threads;
    opt.flags = flags;
    pa_error err = {0};
    pa_fingerprint *fp = NULL;
    pa_status st = pa_fingerprint_path(path, &opt, &fp, &err);
    CHECK_MSG(st == PA_OK, "%s: %s", path, err.msg);
    return fp;
}

static const char *known(void *ctx, const char *name, uint64_t size, int64_t mtime)
{
    (void)size;
    (void)mtime;
    int *calls = ctx;
    (*calls)++;
    return strcmp(name, "config.json") == 0
               ? "0000000000000000000000000000000000000000000000000000000000000001"
               : NULL;
}

static void test_toy(void)
{
    char dir[512], sdir[512];
    snprintf(dir, sizeof dir, "%s/toy", tmp);
    snprintf(sdir, sizeof sdir, "%s/toy-sharded", tmp);
    make_toy(dir, false);
    make_toy(sdir, true);
    pa_fingerprint *fp = fingerprint(dir, 1, 0);
    if (!fp)
        return;
    CHECK_INT(fp->n_tensors, 4);
    CHECK_INT(fp->n_params, 12 + 16 + 16 + 4);
    CHECK_INT(fp->n_layers, 2);
    CHECK(fp->has_weights && fp->has_mfi && !fp->has_tfv);
    const pa_tensor_fp *q0 = find(fp, "model.layers.0.self_attn.q_proj.weight");
    CHECK(q0 != NULL);
    if (q0) {
        CHECK_STR(q0->role, "attn_q.w");
        /* a matrix keeps l2 alone of its moments (compact.c): comparing uses no other */
        CHECK(q0->mean == 0 && q0->std == 0 && q0->min == 0 && q0->max == 0);
        double ss = 0;
        for (int i = 0; i < 16; i++)
            ss += (double)i * i;
        CHECK_NEAR(q0->l2, sqrt(ss), 1e-6);
        /* 4x4: all rows and columns kept; colsum[j] = sum_i (4i + j) = 24 + 4j */
        CHECK_INT(q0->colsum.n, 4);
        for (int j = 0; j < 4 && q0->colsum.n == 4; j++)
            CHECK_NEAR(q0->colsum.v[j], 24 + 4 * j, 1e-6);
        CHECK_INT(q0->rowsum.n, 4);
        for (int i = 0; i < 4 && q0->rowsum.n == 4; i++)
            CHECK_NEAR(q0->rowsum.v[i], 16 * i + 6, 1e-6);
        CHECK_INT(q0->block.n, 16);
        for (int k = 0; k < 16 && q0->block.n == 16; k++)
            CHECK_NEAR(q0->block.v[k], k, 0);
        float vals[16];
        for (int i = 0; i < 16; i++)
            vals[i] = (float)i;
        uint8_t d[32];
        pa_sha256(vals, sizeof vals, d);
        CHECK(memcmp(d, q0->sha, 32) == 0);
    }
    const pa_tensor_fp *norm = find(fp, "model.norm.weight");
    CHECK(norm && norm->sample.n == 4 && norm->sample.v[3] == 4.0f);
    if (norm) { /* 1, 2, 3, 4 */
        CHECK_NEAR(norm->mean, 2.5, 1e-6);
        CHECK_NEAR(norm->min, 1, 0);
        CHECK_NEAR(norm->max, 4, 0);
        CHECK_NEAR(norm->l2, sqrt(30.0), 1e-6);
    }
    CHECK(fp->embed.present && fp->embed.rows == 3 && fp->embed.cols == 4);
    /* without a tokenizer the anchors are the rows themselves */
    CHECK_INT(fp->embed.n_anchors, 3);
    /* file hashes: equal to hashing the file */
    for (size_t i = 0; i < fp->n_files; i++) {
        char path[600], hex[65];
        snprintf(path, sizeof path, "%s/%s", dir, fp->files[i].name);
        FILE *f = fopen(path, "rb");
        char buf[4096];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        pa_sha256_hex(buf, n, hex);
        CHECK_STR(fp->files[i].sha256, hex);
    }

    /* sharded layout: same tensors, same verdict */
    pa_fingerprint *sfp = fingerprint(sdir, 2, 0);
    if (sfp) {
        pa_compare_result r;
        pa_compare(fp, sfp, &r);
        CHECK_INT(r.verdict, PA_V_IDENTICAL);
        CHECK_INT(r.tensors_identical, 4);
        CHECK(strcmp(fp->digest, sfp->digest) != 0); /* different files */
        pa_fingerprint_free(sfp);
    }

    /* threads do not change the result */
    pa_fingerprint *fp2 = fingerprint(dir, 2, 0);
    char *j1 = pa_fp_to_json(fp, false), *j2 = fp2 ? pa_fp_to_json(fp2, false) : NULL;
    CHECK(j1 && j2 && strcmp(j1, j2) == 0);

    /* JSON round trip: parse, write again, same text; compares as identical */
    pa_error err = {0};
    pa_fingerprint *back = NULL;
    CHECK(pa_fp_from_json(j1, strlen(j1), "roundtrip", &back, &err) == PA_OK);
    if (back) {
        char *j3 = pa_fp_to_json(back, false);
        CHECK(j3 && strcmp(j1, j3) == 0);
        free(j3);
        pa_compare_result r;
        pa_compare(fp, back, &r);
        CHECK_INT(r.verdict, PA_V_IDENTICAL);
        pa_fingerprint_free(back);
    }
    free(j1);
    free(j2);
    pa_fingerprint_free(fp2);

    /* config and tokenizer only */
    pa_fingerprint *meta = fingerprint(dir, 1, PA_FP_NO_WEIGHTS);
    if (meta) {
        CHECK(!meta->has_weights && meta->has_mfi);
        CHECK_STR(meta->format, "safetensors");
        CHECK_INT(meta->n_tensors, 0);
        pa_compare_result r;
        pa_compare(fp, meta, &r);
        CHECK(r.verdict == PA_V_NONE || r.verdict == PA_V_WEAK);
        CHECK(r.score <= 0.5);
        pa_fingerprint_free(meta);
    }

    /* known file hashes are taken, not recomputed */
    int calls = 0;
    pa_fp_options opt = {0};
    opt.known_sha256 = known;
    opt.known_ctx = &calls;
    pa_fingerprint *k = NULL;
    CHECK(pa_fingerprint_path(dir, &opt, &k, &err) == PA_OK);
    CHECK(calls >= 2);
    if (k) {
        CHECK_STR(k->files[0].name, "config.json");
        CHECK_STR(k->files[0].sha256,
                  "0000000000000000000000000000000000000000000000000000000000000001");
        CHECK(strlen(k->files[1].sha256) == 64);
        pa_fingerprint_free(k);
    }

    /* a single .safetensors file is a unit too */
    char file[600];
    snprintf(file, sizeof file, "%s/model.safetensors", dir);
    pa_fingerprint *single = fingerprint(file, 1, 0);
    if (single) {
        CHECK(!single->has_mfi && single->has_weights && single->n_files == 1);
        pa_fingerprint_free(single);
    }
    pa_fingerprint_free(fp);
}

static void test_bad_json(void)
{
    const char *cases[] = {
        "{}",
        "{\"schema\":\"provfs.fingerprint/9\"}",
        "{\"schema\":\"provfs.fingerprint/1\",\"files\":[{}]}",
        "{\"schema\":\"provfs.fingerprint/1\",\"vocab\":{\"n\":1,\"k\":5000,\"hashes\":\"\"}}",
        "{\"schema\":\"provfs.fingerprint/1\",\"weights\":{\"tensors\":[{\"name\":\"a\",\"role\":\"r\","
        "\"dtype\":\"F32\",\"shape\":[2],\"sha256\":\"zz\"}]}}",
        "{\"schema\":\"provfs.fingerprint/1\",\"weights\":{\"tensors\":[{\"name\":\"a\",\"role\":\"r\","
        "\"dtype\":\"F32\",\"shape\":[2],\"sha256\":\"00000000000000000000000000000000000000000000000"
        "00000000000000000\",\"sample\":{\"n\":99999,\"s\":1,\"f16\":\"AAAA\"}}]}}",
        "not json",
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        pa_error err = {0};
        pa_fingerprint *fp = NULL;
        pa_status st = pa_fp_from_json(cases[i], strlen(cases[i]), "bad.json", &fp, &err);
        CHECK_MSG(st != PA_OK && fp == NULL, "case %zu accepted", i);
        CHECK_MSG(strstr(err.msg, "bad.json") || strstr(err.msg, "fingerprint"), "case %zu: %s", i,
                  err.msg);
    }
}

/* A sharded model whose second shard is still being copied is incomplete; one whose shards hold
 * every byte the index promises but are malformed is a format error. */
static void test_incomplete(void)
{
    char dir[512], p[600];
    snprintf(dir, sizeof dir, "%s/toy-partial", tmp);
    make_toy(dir, true);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    CHECK(truncate(p, 100) == 0); /* header intact, data cut */
    pa_error err = {0};
    pa_fingerprint *fp = NULL;
    CHECK_INT(pa_fingerprint_path(dir, NULL, &fp, &err), PA_E_INCOMPLETE);
    CHECK_MSG(strstr(err.msg, "model-00002-of-00002.safetensors") != NULL, "%s", err.msg);

    snprintf(dir, sizeof dir, "%s/toy-corrupt", tmp);
    make_toy(dir, true);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    FILE *f = fopen(p, "r+b");
    CHECK(f && fseek(f, 8, SEEK_SET) == 0 && fputc('[', f) == '[');
    if (f)
        fclose(f);
    pa_error_clear(&err);
    CHECK_INT(pa_fingerprint_path(dir, NULL, &fp, &err), PA_E_FORMAT);
}

/* The unit from files opened elsewhere (the daemon's worker): the same fingerprint as from the
 * path, no path opened (the unit is removed before it is fingerprinted), a missing shard named. */
static void test_given_files(void)
{
    char dir[512], sdir[512], single[600], cmd[1400];
    snprintf(dir, sizeof dir, "%s/given", tmp);
    snprintf(sdir, sizeof sdir, "%s/given-sharded", tmp);
    make_toy(dir, false);
    make_toy(sdir, true);
    snprintf(single, sizeof single, "%s/model.safetensors", dir);
    const char *paths[] = {dir, sdir, single};
    for (size_t k = 0; k < 3; k++) {
        pa_fingerprint *want = fingerprint(paths[k], 2, 0);
        char *want_json = pa_fp_to_json(want, false);
        pa_unit_files files;
        pa_error err = {0};
        CHECK_MSG(pa_unit_files_open(paths[k], NULL, &files, &err) == PA_OK, "%s", err.msg);
        CHECK(files.is_dir == (k < 2));
        CHECK_INT(files.n, pa_fp_n_files(want));
        for (size_t i = 0; i < files.n; i++) {
            CHECK_STR(files.files[i].name, pa_fp_file(want, i)->name);
            CHECK(files.files[i].fd >= 0);
        }
        /* the worker holds fds only: rename the unit away so no path can be opened */
        snprintf(cmd, sizeof cmd, "mv '%s' '%s.moved'", paths[k], paths[k]);
        CHECK(system(cmd) == 0);
        pa_fingerprint *got = NULL;
        pa_fp_options opt = {.threads = 2};
        CHECK_MSG(pa_fingerprint_files(paths[k], &files, &opt, &got, &err) == PA_OK, "%s",
                  err.msg);
        char *got_json = got ? pa_fp_to_json(got, false) : NULL;
        CHECK(got_json && strcmp(got_json, want_json) == 0);
        snprintf(cmd, sizeof cmd, "mv '%s.moved' '%s'", paths[k], paths[k]);
        CHECK(system(cmd) == 0);
        free(got_json);
        free(want_json);
        pa_fingerprint_free(got);
        pa_fingerprint_free(want);
        pa_unit_files_close(&files);
    }
    /* a shard the index names but the given files lack */
    pa_unit_files files;
    pa_error err = {0};
    CHECK(pa_unit_files_open(sdir, NULL, &files, &err) == PA_OK);
    for (size_t i = 0; i < files.n; i++)
        if (strcmp(files.files[i].name, "model-00002-of-00002.safetensors") == 0) {
            close(files.files[i].fd);
            free(files.files[i].name);
            files.files[i] = files.files[files.n - 1];
            files.n--;
            break;
        }
    pa_fingerprint *fp = NULL;
    CHECK_INT(pa_fingerprint_files(sdir, &files, NULL, &fp, &err), PA_E_INCOMPLETE);
    CHECK(strstr(err.msg, "model-00002-of-00002.safetensors") != NULL);
    pa_unit_files_close(&files);
}

/* Every schedule gives the same fingerprint: one thread or several, the whole-file digests
 * computed beside the tensors or supplied by the caller (the tensors alone then go two at a
 * time), on a sharded model whose tensors span many read pieces and differ in length. */
static const char *supplied_ctx_sha(void *ctx, const char *name, uint64_t size, int64_t mtime)
{
    (void)size;
    (void)mtime;
    const pa_fingerprint *full = ctx;
    for (size_t i = 0; i < full->n_files; i++)
        if (strcmp(full->files[i].name, name) == 0)
            return full->files[i].sha256;
    return NULL;
}

typedef struct progress_seen {
    uint64_t done, total;
} progress_seen;

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
    progress_seen *p = ctx;
    p->done = done;
    p->total = total;
}

static void test_schedules(void)
{
    const char *mk = getenv("MKMODEL");
    if (!mk) {
        CHECK_MSG(0, "%s", "MKMODEL is not set");
        return;
    }
    char cmd[1200], dir[600];
    snprintf(dir, sizeof dir, "%s/sched", tmp);
    /* embedding 3000 x 384 f32 (4.4 MiB), layers of 0.6 to 1.7 MiB, in three files */
    snprintf(cmd, sizeof cmd,
             "%s create %s --arch llama --seed 9 --hidden 384 --layers 3 --inter 1152 "
             "--vocab 3000 --shards 3 >/dev/null",
             mk, dir);
    CHECK(system(cmd) == 0);
    pa_fingerprint *full = fingerprint(dir, 1, 0);
    char *want = full ? pa_fp_to_json(full, false) : NULL;
    CHECK(want != NULL);
    if (!want) {
        pa_fingerprint_free(full);
        return;
    }
    CHECK(full->n_files >= 5 && full->n_tensors > 20);
    for (int threads = 1; threads <= 3; threads++)
        for (int supplied = 0; supplied < 2; supplied++) {
            progress_seen seen = {0};
            pa_fp_options opt = {
                .threads = threads, .progress = on_progress, .progress_ctx = &seen};
            if (supplied) {
                opt.known_sha256 = supplied_ctx_sha;
                opt.known_ctx = full;
            }
            pa_fingerprint *fp = NULL;
            pa_error err = {0};
            CHECK_MSG(pa_fingerprint_path(dir, &opt, &fp, &err) == PA_OK, "%s", err.msg);
            char *got = fp ? pa_fp_to_json(fp, false) : NULL;
            CHECK_MSG(got && strcmp(got, want) == 0, "%d threads, file digests %s: differs",
                      threads, supplied ? "supplied" : "computed");
            /* progress ends at its total (one thread reads each byte once for two counts) */
            CHECK_MSG(seen.total > 0 && seen.done == seen.total,
                      "%d threads, file digests %s: progress %llu of %llu", threads,
                      supplied ? "supplied" : "computed", (unsigned long long)seen.done,
                      (unsigned long long)seen.total);
            free(got);
            pa_fingerprint_free(fp);
        }
    free(want);
    pa_fingerprint_free(full);
}

/* Empty tensors anywhere, also at the very end of the file (offsets [len, len]): the same
 * fingerprint on every thread count (one thread used to stop at the end of the file before the
 * last tensor and report the file cut inside it). */
static void test_empty_tensors(void)
{
    char dir[600], p[700];
    snprintf(dir, sizeof dir, "%s/empty-tensors", tmp);
    CHECK(mkdir(dir, 0755) == 0);
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_file(p, config, strlen(config));
    float data[12 + 4];
    for (int i = 0; i < 16; i++)
        data[i] = (float)i - 7.5f;
    const char *hdr =
        "{\"model.layers.0.input_layernorm.weight\":{\"dtype\":\"F32\",\"shape\":[0],"
        "\"data_offsets\":[0,0]},"
        "\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],"
        "\"data_offsets\":[0,48]},"
        "\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[48,64]},"
        "\"model.layers.1.input_layernorm.weight\":{\"dtype\":\"F32\",\"shape\":[0,4],"
        "\"data_offsets\":[64,64]}}";
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    write_st(p, hdr, data, sizeof data);
    char *want = NULL;
    for (int threads = 1; threads <= 3; threads++) {
        pa_fingerprint *fp = fingerprint(dir, threads, 0);
        char *j = fp ? pa_fp_to_json(fp, false) : NULL;
        CHECK(j != NULL);
        if (fp)
            CHECK_INT(fp->n_tensors, 4);
        if (threads == 1)
            want = j;
        else {
            CHECK_MSG(want && j && strcmp(want, j) == 0, "%d threads: another fingerprint",
                      threads);
            free(j);
        }
        pa_fingerprint_free(fp);
    }
    free(want);
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/provfs-fp-XXXXXX");
    if (!mkdtemp(tmp))
        return 1;
    test_roles();
    test_toy();
    test_incomplete();
    test_bad_json();
    test_given_files();
    test_schedules();
    test_empty_tensors();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp);
    return check_report("fingerprint");
}
