/* The compact binary fingerprint (analyzer/fpbin.c, compact.c): its size for a 7B layout, that it
 * loses nothing of a compact fingerprint, that JSON and binary forms read as the same
 * fingerprint, and that damaged bytes are refused or read as a fingerprint the writer could
 * make, never past their end (the ASan build runs this too). */
#include "check.h"
#include "fp.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static char tmp[256];
static const char *mkmodel;

#define run(...) check_run(tmp, mkmodel, "fpbin", __VA_ARGS__)

static pa_fingerprint *fingerprint(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    pa_error err = {0};
    pa_fingerprint *fp = NULL;
    CHECK_MSG(pa_fingerprint_path(path, NULL, &fp, &err) == PA_OK, "%s: %s", name, err.msg);
    if (fp)
        pa_fp_set_path(fp, NULL);
    return fp;
}

static uint8_t *to_bin(const pa_fingerprint *fp, size_t *n)
{
    uint8_t *b = NULL;
    pa_error err = {0};
    CHECK_MSG(pa_fp_to_bin(fp, &b, n, &err) == PA_OK, "%s", err.msg);
    return b;
}

/* The sketch sizes are capped, so a 7B layout (32 blocks, 291 tensors, vocabulary 32,000) with
 * narrow matrices has the fingerprint size of the real 7B model. */
static void test_7b_layout(void)
{
    run("create s7 --hidden 128 --heads 4 --layers 32 --inter 344 --vocab 32000 --dtype bf16");
    pa_fingerprint *fp = fingerprint("s7");
    if (!fp)
        return;
    CHECK_INT(pa_fp_n_tensors(fp), 291);
    size_t n = 0;
    uint8_t *b = to_bin(fp, &n);
    char *json = pa_fp_to_json(fp, false);
    fprintf(stderr, "7B layout: %zu bytes binary, %zu bytes JSON\n", n, json ? strlen(json) : 0);
    CHECK_MSG(n > 0 && n <= 128 * 1024, "7B layout fingerprint: %zu bytes", n);
    /* the JSON form reads back as the same fingerprint: the same bytes once encoded */
    pa_fingerprint *fromjson = NULL;
    pa_error err = {0};
    CHECK(json && pa_fp_from_json(json, strlen(json), "json", &fromjson, &err) == PA_OK);
    size_t n2 = 0;
    uint8_t *b2 = fromjson ? to_bin(fromjson, &n2) : NULL;
    CHECK(b && b2 && n2 == n && memcmp(b, b2, n) == 0);
    /* and the binary form gives the JSON form back */
    pa_fingerprint *frombin = NULL;
    CHECK(b && pa_fp_from_bin(b, n, "bin", &frombin, &err) == PA_OK);
    char *json2 = frombin ? pa_fp_to_json(frombin, false) : NULL;
    CHECK(json && json2 && strcmp(json, json2) == 0);
    pa_compare_result r;
    if (frombin) {
        pa_compare(fp, frombin, &r);
        CHECK_INT(r.verdict, PA_V_IDENTICAL);
    }
    free(json2);
    pa_fingerprint_free(frombin);
    free(b2);
    pa_fingerprint_free(fromjson);
    free(json);
    free(b);
    pa_fingerprint_free(fp);
}

/* Every cut of a valid fingerprint is refused; every flipped byte is refused or read as a
 * fingerprint whose bytes, written again, read back to the same bytes. */
static void test_damaged(const char *name)
{
    pa_fingerprint *fp = fingerprint(name);
    if (!fp)
        return;
    size_t n = 0;
    uint8_t *b = to_bin(fp, &n);
    pa_fingerprint_free(fp);
    if (!b)
        return;
    size_t refused = 0, read = 0;
    for (size_t cut = 0; cut < n; cut += cut < 600 ? 1 : 89) {
        uint8_t *c = malloc(cut ? cut : 1); /* exactly cut bytes: ASan sees any read past them */
        memcpy(c, b, cut);
        pa_fingerprint *x = NULL;
        pa_error err = {0};
        pa_status st = pa_fp_from_bin(c, cut, "cut", &x, &err);
        CHECK_MSG(st != PA_OK && x == NULL && err.msg[0], "%s: %zu of %zu bytes read", name, cut,
                  n);
        refused += st != PA_OK;
        pa_fingerprint_free(x);
        free(c);
    }
    uint8_t *c = malloc(n);
    /* every byte of the start (magic, JSON part, flags, vocabulary, the first tensors), then
     * spaced out */
    for (size_t i = 0; i < n; i += i < 600 ? 1 : 149) {
        for (int flip = 1; flip < 256; flip <<= 3) {
            memcpy(c, b, n);
            c[i] ^= (uint8_t)flip;
            pa_fingerprint *x = NULL;
            pa_error err = {0};
            if (pa_fp_from_bin(c, n, "flip", &x, &err) != PA_OK) {
                CHECK(x == NULL && err.msg[0]);
                continue;
            }
            read++;
            size_t n1 = 0, n2 = 0;
            uint8_t *b1 = to_bin(x, &n1);
            pa_fingerprint *y = NULL;
            CHECK(b1 && pa_fp_from_bin(b1, n1, "again", &y, &err) == PA_OK);
            uint8_t *b2 = y ? to_bin(y, &n2) : NULL;
            CHECK_MSG(b1 && b2 && n1 == n2 && memcmp(b1, b2, n1) == 0,
                      "%s: byte %zu ^ %d does not read back alike", name, i, flip);
            free(b1);
            free(b2);
            pa_fingerprint_free(x);
            pa_fingerprint_free(y);
        }
    }
    free(c);
    fprintf(stderr, "%s: %zu bytes, %zu cuts refused, %zu flips read\n", name, n, refused, read);
    free(b);
    /* not a binary fingerprint at all */
    pa_fingerprint *x = NULL;
    pa_error err = {0};
    CHECK(pa_fp_from_bin((const uint8_t *)"{\"schema\"", 9, "json", &x, &err) == PA_E_FORMAT);
    pa_error_clear(&err);
    CHECK(pa_fp_from_bin((const uint8_t *)"PFB\x09", 4, "v9", &x, &err) == PA_E_FORMAT);
    CHECK(strstr(err.msg, "version 9") != NULL);
}

/* Compacting is idempotent on the values themselves: the grids of vectors on their grids. */
static void test_grids(void)
{
    float v[6] = {0.3f, -1.7f, 2.5e-3f, 1e30f, -1e30f, 0};
    for (int levels = 127; levels <= 2047; levels += 1920) {
        for (int k = 0; k < 40; k++) {
            float w[6];
            for (int i = 0; i < 6; i++)
                w[i] = v[i] * (float)(1 + k) / 7.0f;
            int16_t q[6], q2[6];
            float back[6];
            int e = pa_q_exponent(w, 6, levels);
            pa_q_encode(w, 6, e, levels, q);
            pa_q_decode(q, 6, e, back);
            int e2 = pa_q_exponent(back, 6, levels);
            pa_q_encode(back, 6, e2, levels, q2);
            CHECK(e == e2 && memcmp(q, q2, sizeof q) == 0);
            int top = 0;
            for (int i = 0; i < 6; i++)
                top = abs(q[i]) > top ? abs(q[i]) : top;
            CHECK(top <= levels && 2 * top > levels);
        }
    }
    float zero[3] = {0, 0, 0};
    CHECK_INT(pa_q_exponent(zero, 3, 127), PA_Q_ZERO);
    /* the largest floats saturate at the top level, finite, and stay there */
    float big[3] = {FLT_MAX, -FLT_MAX / 3, INFINITY};
    for (int levels = 127; levels <= 2047; levels += 1920) {
        int16_t q[3], q2[3];
        float back[3];
        int e = pa_q_exponent(big, 3, levels);
        CHECK(e == pa_q_exponent_max(levels));
        pa_q_encode(big, 3, e, levels, q);
        pa_q_decode(q, 3, e, back);
        CHECK(isfinite(back[0]) && isfinite(back[1]) && isfinite(back[2]) && back[0] > 1e38f);
        int e2 = pa_q_exponent(back, 3, levels);
        pa_q_encode(back, 3, e2, levels, q2);
        CHECK(e2 == e && memcmp(q, q2, sizeof q) == 0);
    }
}

/* The JSON part of a binary fingerprint holds no weights or vocabulary (they would be read twice
 * and leak); an embedding of width 0 stores without anchors and reads back. */
static void test_odd_parts(void)
{
    const char *meta = "{\"schema\":\"provfs.fingerprint/1\",\"weights\":{\"tensors\":[]}}";
    uint8_t buf[256];
    size_t n = 0;
    memcpy(buf, "PFB\x01", 4);
    n = 4;
    buf[n++] = (uint8_t)strlen(meta);
    memcpy(buf + n, meta, strlen(meta));
    n += strlen(meta);
    buf[n++] = 0; /* flags: nothing else */
    pa_fingerprint *fp = NULL;
    pa_error err = {0};
    CHECK(pa_fp_from_bin(buf, n, "meta", &fp, &err) == PA_E_FORMAT && fp == NULL);
    CHECK(strstr(err.msg, "JSON part") != NULL);

    char hist[200] = "";
    for (int i = 0; i < 20; i++)
        strcat(hist, i ? ",0" : "0");
    char json[2048];
    snprintf(json, sizeof json,
             "{\"schema\":\"provfs.fingerprint/1\",\"weights\":{\"tensors\":[{\"name\":\"e\","
             "\"role\":\"embed.w\",\"layer\":-1,\"dtype\":\"F32\",\"shape\":[1000,0],"
             "\"sha256\":\"%064d\"}],\"embedding\":{\"tensor\":\"e\",\"rows\":1000,\"cols\":0,"
             "\"norm_min\":0,\"norm_max\":0,\"end_histogram\":[%s],\"anchors\":2,"
             "\"anchor_hash\":\"AAAAAAAAAAEAAAAAAAAAAg==\",\"anchor_c\":0,"
             "\"anchor_cos\":{\"n\":3,\"f32\":\"AACAPwAAAAAAAIA/\"},"
             "\"anchor_rows\":{\"n\":0,\"f32\":\"\"}}}}",
             0, hist);
    pa_error_clear(&err);
    CHECK_MSG(pa_fp_from_json(json, strlen(json), "width 0", &fp, &err) == PA_OK, "%s", err.msg);
    uint8_t *b = NULL;
    pa_fingerprint *back = NULL;
    CHECK(fp && pa_fp_to_bin(fp, &b, &n, &err) == PA_OK);
    CHECK_MSG(b && pa_fp_from_bin(b, n, "width 0", &back, &err) == PA_OK, "%s", err.msg);
    free(b);
    pa_fingerprint_free(back);
    pa_fingerprint_free(fp);
}

/* What the reader would refuse, the writer refuses: tensor names out of order or twice (a
 * fingerprint from a hand-written or hostile JSON), so a stored fingerprint always reads back. */
static void test_refused(void)
{
    static const char *const orders[] = {"\"b\", \"a\"", "\"a\", \"a\""};
    for (int i = 0; i < 2; i++) {
        char json[2048], t[2][600];
        const char *names[2][2] = {{"b", "a"}, {"a", "a"}};
        for (int k = 0; k < 2; k++)
            snprintf(t[k], sizeof t[k],
                     "{\"name\":\"%s\",\"role\":\"x:%s\",\"layer\":-1,\"dtype\":\"F32\","
                     "\"shape\":[2],\"sha256\":\"%064d\"}",
                     names[i][k], names[i][k], k);
        snprintf(json, sizeof json,
                 "{\"schema\":\"provfs.fingerprint/1\",\"weights\":{\"tensors\":[%s,%s]}}", t[0],
                 t[1]);
        pa_fingerprint *fp = NULL;
        pa_error err = {0};
        CHECK_MSG(pa_fp_from_json(json, strlen(json), orders[i], &fp, &err) == PA_OK, "%s",
                  err.msg);
        uint8_t *b = NULL;
        size_t n = 0;
        pa_error_clear(&err);
        CHECK(fp && pa_fp_to_bin(fp, &b, &n, &err) == PA_E_LIMIT && b == NULL);
        CHECK(strstr(err.msg, "sorted") != NULL);
        pa_fingerprint_free(fp);
    }
}

int main(void)
{
    mkmodel = getenv("MKMODEL");
    if (!mkmodel)
        return 1;
    snprintf(tmp, sizeof tmp, "/tmp/provfs-fpbin-XXXXXX");
    if (!mkdtemp(tmp))
        return 1;
    test_grids();
    test_refused();
    test_odd_parts();
    test_7b_layout();
    run("create base --seed 1");
    run("gguf base q4.gguf --type q4_k");
    run("torch base base.pt");
    test_damaged("base");
    test_damaged("q4.gguf");
    test_damaged("base.pt");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp);
    return check_report("fpbin");
}
