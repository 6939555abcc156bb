/* Unit tests for GGUF: header parsing of files built in memory (v2 and v3, metadata of every type,
 * tensors of several types), every refusal with its status and message, pa_gguf_read with a
 * header that needs the buffer to grow, known-answer decoding of every supported block type,
 * quantise/decode round trips, the Q/K row permutation, and the config.json / tokenizer.json /
 * tensor-name mapping checked through the analyzer's own parsers. */
#include "gguf.h"

#include "check.h"

#include "jsonutil.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LABEL "mem.gguf"

/* ---------------------------------------------------------------- a tiny GGUF writer */

typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
} wbuf;

static void wb_bytes(wbuf *b, const void *data, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void wb_le(wbuf *b, uint64_t v, int n)
{
    uint8_t tmp[8];
    for (int i = 0; i < n; i++)
        tmp[i] = (uint8_t)(v >> (8 * i));
    wb_bytes(b, tmp, (size_t)n);
}

static void wb_u8(wbuf *b, uint8_t v)
{
    wb_le(b, v, 1);
}
static void wb_u32(wbuf *b, uint32_t v)
{
    wb_le(b, v, 4);
}
static void wb_u64(wbuf *b, uint64_t v)
{
    wb_le(b, v, 8);
}
static void wb_f32(wbuf *b, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    wb_u32(b, u);
}
static void wb_str(wbuf *b, const char *s)
{
    wb_u64(b, strlen(s));
    wb_bytes(b, s, strlen(s));
}

enum { T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 };

/* Key/value pairs are written into their own buffer and counted. */
typedef struct kvs {
    wbuf b;
    uint64_t n;
} kvs;

static void kv_key(kvs *k, const char *key, uint32_t type)
{
    wb_str(&k->b, key);
    wb_u32(&k->b, type);
    k->n++;
}
static void kv_u32(kvs *k, const char *key, uint32_t v)
{
    kv_key(k, key, T_U32);
    wb_u32(&k->b, v);
}
static void kv_f32(kvs *k, const char *key, float v)
{
    kv_key(k, key, T_F32);
    wb_f32(&k->b, v);
}
static void kv_str(kvs *k, const char *key, const char *v)
{
    kv_key(k, key, T_STR);
    wb_str(&k->b, v);
}
static void kv_strs(kvs *k, const char *key, const char *const *v, size_t n)
{
    kv_key(k, key, T_ARR);
    wb_u32(&k->b, T_STR);
    wb_u64(&k->b, n);
    for (size_t i = 0; i < n; i++)
        wb_str(&k->b, v[i]);
}
static void kv_i32s(kvs *k, const char *key, const int32_t *v, size_t n)
{
    kv_key(k, key, T_ARR);
    wb_u32(&k->b, T_I32);
    wb_u64(&k->b, n);
    for (size_t i = 0; i < n; i++)
        wb_u32(&k->b, (uint32_t)v[i]);
}
static void kv_f32s(kvs *k, const char *key, const float *v, size_t n)
{
    kv_key(k, key, T_ARR);
    wb_u32(&k->b, T_F32);
    wb_u64(&k->b, n);
    for (size_t i = 0; i < n; i++)
        wb_f32(&k->b, v[i]);
}

typedef struct gtensor {
    const char *name;
    uint32_t type;
    uint32_t ndim;
    uint64_t ne[6];
    const void *data; /* NULL: zeros */
    int64_t offset;   /* -1: next aligned offset */
} gtensor;

static uint64_t tensor_bytes(const gtensor *t)
{
    uint64_t n = 1, bytes = 0;
    for (uint32_t d = 0; d < t->ndim && d < 6; d++)
        n *= t->ne[d];
    if (!pa_gguf_nbytes(t->type, n, &bytes))
        bytes = 0;
    return bytes;
}

static uint64_t align_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) / a * a;
}

/* A whole GGUF file: header, kvs, tensor infos, padding, data. */
static wbuf make_gguf(uint32_t version, const kvs *k, const gtensor *ts, size_t n_ts,
                      uint64_t alignment)
{
    wbuf b = {0};
    wb_bytes(&b, "GGUF", 4);
    wb_u32(&b, version);
    wb_u64(&b, n_ts);
    wb_u64(&b, k ? k->n : 0);
    if (k)
        wb_bytes(&b, k->b.p, k->b.n);
    uint64_t *offs = calloc(n_ts + 1, sizeof *offs);
    uint64_t at = 0;
    for (size_t i = 0; i < n_ts; i++) {
        offs[i] = ts[i].offset >= 0 ? (uint64_t)ts[i].offset : at;
        at = align_up(offs[i] + tensor_bytes(&ts[i]), alignment);
        wb_str(&b, ts[i].name);
        wb_u32(&b, ts[i].ndim);
        for (uint32_t d = 0; d < ts[i].ndim; d++)
            wb_u64(&b, ts[i].ne[d]);
        wb_u32(&b, ts[i].type);
        wb_u64(&b, offs[i]);
    }
    size_t data_start = (size_t)align_up(b.n, alignment);
    while (b.n < data_start)
        wb_u8(&b, 0);
    for (size_t i = 0; i < n_ts; i++) {
        uint64_t nb = tensor_bytes(&ts[i]);
        size_t end = data_start + (size_t)(offs[i] + nb);
        while (b.n < end)
            wb_u8(&b, 0);
        if (ts[i].data)
            memcpy(b.p + data_start + offs[i], ts[i].data, (size_t)nb);
    }
    free(offs);
    return b;
}

/* ---------------------------------------------------------------- helpers */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double uniform01(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return ((double)(rng_state >> 11) + 0.5) / 9007199254740992.0;
}
static float gaussian(void)
{
    double u = uniform01(), v = uniform01();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static pa_status parse(const wbuf *b, pa_gguf *g, pa_error *err)
{
    pa_error_clear(err);
    return pa_gguf_parse(b->p, b->n, b->n, LABEL, g, err);
}

/* Parse must fail with status want and a message naming the file and holding needle. */
#define EXPECT_ERR(buf, len, want, needle) expect_err(__LINE__, buf, len, want, needle)
static void expect_err(int line, const uint8_t *buf, size_t len, pa_status want, const char *needle)
{
    pa_gguf g;
    pa_error err;
    pa_error_clear(&err);
    pa_status st = pa_gguf_parse(buf, len, len, LABEL, &g, &err);
    CHECK_MSG(st == want, "line %d: status %s, want %s (%s)", line, pa_status_name(st),
              pa_status_name(want), err.msg);
    CHECK_MSG(strstr(err.msg, LABEL) != NULL, "line %d: message '%s' does not name the file", line,
              err.msg);
    CHECK_MSG(strstr(err.msg, needle) != NULL, "line %d: message '%s' lacks '%s'", line, err.msg,
              needle);
    CHECK_MSG(!strchr(err.msg, '\n'), "line %d: message has a newline", line);
    CHECK(g.kv == NULL && g.tensors == NULL && g.n_tensors == 0);
    if (st == PA_OK)
        pa_gguf_free(&g);
}

static void kvs_free(kvs *k)
{
    free(k->b.p);
}

/* ---------------------------------------------------------------- parsing valid files */

static void add_all_kv_types(kvs *k)
{
    kv_key(k, "t.u8", T_U8);
    wb_u8(&k->b, 200);
    kv_key(k, "t.i8", T_I8);
    wb_u8(&k->b, 0xFE); /* -2 */
    kv_key(k, "t.u16", T_U16);
    wb_le(&k->b, 65000, 2);
    kv_key(k, "t.i16", T_I16);
    wb_le(&k->b, 0x8000, 2); /* -32768 */
    kv_u32(k, "t.u32", 4000000000u);
    kv_key(k, "t.i32", T_I32);
    wb_u32(&k->b, (uint32_t)-123456);
    kv_f32(k, "t.f32", 1e-5f);
    kv_key(k, "t.bool", T_BOOL);
    wb_u8(&k->b, 1);
    kv_str(k, "t.str", "h\xC3\xA9llo");
    kv_key(k, "t.u64", T_U64);
    wb_u64(&k->b, 1ull << 40);
    kv_key(k, "t.i64", T_I64);
    wb_u64(&k->b, (uint64_t)-5);
    kv_key(k, "t.f64", T_F64);
    double d = 0.1;
    uint64_t u;
    memcpy(&u, &d, 8);
    wb_u64(&k->b, u);
    static const char *const strs[] = {"a", "", "\377b"}; /* invalid UTF-8 is repaired */
    kv_strs(k, "t.arr_str", strs, 3);
    static const int32_t ints[] = {-1, 0, 7};
    kv_i32s(k, "t.arr_i32", ints, 3);
    kv_key(k, "t.arr_u8", T_ARR);
    wb_u32(&k->b, T_U8);
    wb_u64(&k->b, 2);
    wb_u8(&k->b, 1);
    wb_u8(&k->b, 255);
    kv_key(k, "t.arr_bool", T_ARR);
    wb_u32(&k->b, T_BOOL);
    wb_u64(&k->b, 2);
    wb_u8(&k->b, 0);
    wb_u8(&k->b, 1);
    kv_key(k, "t.arr_f64", T_ARR);
    wb_u32(&k->b, T_F64);
    wb_u64(&k->b, 1);
    wb_u64(&k->b, u);
    kv_key(k, "t.arr_empty", T_ARR);
    wb_u32(&k->b, T_U64);
    wb_u64(&k->b, 0);
}

static void check_kv_types(const pa_gguf *g)
{
    int64_t v;
    CHECK(pa_gguf_kv_int(g, "t.u8", &v) && v == 200);
    CHECK(pa_gguf_kv_int(g, "t.i8", &v) && v == -2);
    CHECK(pa_gguf_kv_int(g, "t.u16", &v) && v == 65000);
    CHECK(pa_gguf_kv_int(g, "t.i16", &v) && v == -32768);
    CHECK(pa_gguf_kv_int(g, "t.u32", &v) && v == 4000000000ll);
    CHECK(pa_gguf_kv_int(g, "t.i32", &v) && v == -123456);
    CHECK(pa_gguf_kv_int(g, "t.u64", &v) && v == (1ll << 40));
    CHECK(pa_gguf_kv_int(g, "t.i64", &v) && v == -5);
    const cJSON *f = pa_gguf_kv(g, "t.f32");
    CHECK(cJSON_IsNumber(f) && f->valuedouble == 1e-05); /* the shortest decimal, not 9.99e-06 */
    f = pa_gguf_kv(g, "t.f64");
    CHECK(cJSON_IsNumber(f) && f->valuedouble == 0.1);
    CHECK(cJSON_IsTrue(pa_gguf_kv(g, "t.bool")));
    const char *s = pa_gguf_kv_str(g, "t.str");
    CHECK(s && strcmp(s, "h\xC3\xA9llo") == 0);
    const cJSON *a = pa_gguf_kv(g, "t.arr_str");
    CHECK(cJSON_IsArray(a) && cJSON_GetArraySize(a) == 3);
    if (cJSON_GetArraySize(a) == 3) {
        CHECK_STR(cJSON_GetArrayItem(a, 0)->valuestring, "a");
        CHECK_STR(cJSON_GetArrayItem(a, 1)->valuestring, "");
        CHECK_STR(cJSON_GetArrayItem(a, 2)->valuestring, "\357\277\275b");
    }
    a = pa_gguf_kv(g, "t.arr_i32");
    CHECK(cJSON_GetArraySize(a) == 3 && cJSON_GetArrayItem(a, 0)->valuedouble == -1.0 &&
          cJSON_GetArrayItem(a, 2)->valuedouble == 7.0);
    a = pa_gguf_kv(g, "t.arr_u8");
    CHECK(cJSON_GetArraySize(a) == 2 && cJSON_GetArrayItem(a, 1)->valuedouble == 255.0);
    a = pa_gguf_kv(g, "t.arr_bool");
    CHECK(cJSON_GetArraySize(a) == 2 && cJSON_IsFalse(cJSON_GetArrayItem(a, 0)) &&
          cJSON_IsTrue(cJSON_GetArrayItem(a, 1)));
    a = pa_gguf_kv(g, "t.arr_f64");
    CHECK(cJSON_GetArraySize(a) == 1 && cJSON_GetArrayItem(a, 0)->valuedouble == 0.1);
    a = pa_gguf_kv(g, "t.arr_empty");
    CHECK(cJSON_IsArray(a) && cJSON_GetArraySize(a) == 0);
    CHECK(pa_gguf_kv(g, "absent") == NULL && !pa_gguf_kv_int(g, "t.str", &v));
}

static void test_valid_files(void)
{
    enum { ROWS = 4, COLS = 256 };
    static float src[ROWS * COLS];
    for (size_t i = 0; i < ROWS * COLS; i++)
        src[i] = 0.05f * gaussian();
    static uint8_t q8[ROWS * COLS / 32 * 34], q4k[ROWS * COLS / 256 * 144],
        q6k[ROWS * COLS / 256 * 210];
    CHECK(pa_gguf_quantize(PA_GGML_Q8_0, src, ROWS * COLS, q8, sizeof q8) == sizeof q8);
    CHECK(pa_gguf_quantize(PA_GGML_Q4_K, src, ROWS * COLS, q4k, sizeof q4k) == sizeof q4k);
    CHECK(pa_gguf_quantize(PA_GGML_Q6_K, src, ROWS * COLS, q6k, sizeof q6k) == sizeof q6k);
    static uint16_t f16[COLS];
    pa_f32_to_f16(src, f16, COLS);

    for (uint32_t version = 2; version <= 3; version++) {
        kvs k = {0};
        kv_str(&k, "general.architecture", "llama");
        add_all_kv_types(&k);
        const gtensor ts[] = {
            {"output_norm.weight", PA_GGML_F32, 1, {COLS}, src, -1},
            {"blk.0.attn_norm.weight", PA_GGML_F16, 1, {COLS}, f16, -1},
            {"blk.0.attn_q.weight", PA_GGML_Q8_0, 2, {COLS, ROWS}, q8, -1},
            {"blk.0.ffn_up.weight", PA_GGML_Q4_K, 2, {COLS, ROWS}, q4k, -1},
            {"blk.0.ffn_down.weight", PA_GGML_Q6_K, 2, {COLS, ROWS}, q6k, -1},
            {"blk.0.ffn_gate.weight", PA_GGML_Q2_K, 3, {COLS, 2, 1}, NULL, -1}, /* unsupported */
        };
        size_t n_ts = sizeof ts / sizeof ts[0];
        wbuf b = make_gguf(version, &k, ts, n_ts, 32);
        pa_gguf g;
        pa_error err;
        pa_status st = parse(&b, &g, &err);
        CHECK_MSG(st == PA_OK, "v%u: %s", version, err.msg);
        if (st == PA_OK) {
            CHECK_INT(g.version, version);
            CHECK_INT(g.alignment, 32);
            CHECK_INT(g.n_tensors, n_ts);
            CHECK(g.data_offset % 32 == 0 && g.data_offset >= g.header_len &&
                  g.data_offset - g.header_len < 32);
            CHECK_STR(pa_gguf_kv_str(&g, "general.architecture"), "llama");
            check_kv_types(&g);
            for (size_t i = 1; i < g.n_tensors; i++)
                CHECK(g.tensors[i - 1].offset + g.tensors[i - 1].nbytes <= g.tensors[i].offset);
            for (size_t i = 0; i < n_ts; i++) {
                const pa_gguf_tensor *t = pa_gguf_find(&g, ts[i].name);
                CHECK_MSG(t != NULL, "%s", ts[i].name);
                if (!t)
                    continue;
                CHECK_INT(t->type, ts[i].type);
                CHECK_INT(t->ndim, ts[i].ndim);
                CHECK_INT(t->ne[0], ts[i].ne[0]);
                CHECK_INT(t->nbytes, tensor_bytes(&ts[i]));
                CHECK(t->offset >= g.data_offset && t->offset + t->nbytes <= b.n);
                if (ts[i].data)
                    CHECK(memcmp(b.p + t->offset, ts[i].data, (size_t)t->nbytes) == 0);
                if (!pa_gguf_type_supported(t->type)) {
                    CHECK_INT(t->type, PA_GGML_Q2_K);
                    CHECK_INT(t->numel, 2 * COLS);
                    continue;
                }
                float *out = malloc((size_t)t->numel * sizeof *out);
                st = pa_gguf_dequant(t->type, b.p + t->offset, (size_t)t->nbytes, out,
                                     (size_t)t->numel, &err);
                CHECK_MSG(st == PA_OK, "%s: %s", t->name, err.msg);
                double worst = 0;
                for (uint64_t e = 0; e < t->numel && st == PA_OK; e++)
                    worst = fmax(worst, fabs(out[e] - src[e]));
                CHECK_MSG(worst < 0.02, "%s: worst error %g", t->name, worst);
                free(out);
            }
            CHECK(pa_gguf_find(&g, "nope") == NULL);
            pa_gguf_free(&g);
            CHECK(g.kv == NULL && g.tensors == NULL);
        }
        free(b.p);
        kvs_free(&k);
    }

    /* general.alignment moves the data section and the tensor offsets */
    kvs k = {0};
    kv_u32(&k, "general.alignment", 64);
    const gtensor ts[] = {{"a", PA_GGML_F32, 1, {3}, NULL, -1},
                          {"b", PA_GGML_F32, 1, {5}, NULL, -1}};
    wbuf b = make_gguf(3, &k, ts, 2, 64);
    pa_gguf g;
    pa_error err;
    CHECK(parse(&b, &g, &err) == PA_OK);
    CHECK_INT(g.alignment, 64);
    CHECK(g.data_offset % 64 == 0 && g.n_tensors == 2);
    if (g.n_tensors == 2)
        CHECK(g.tensors[0].offset % 64 == 0 && g.tensors[1].offset - g.tensors[0].offset == 64);
    pa_gguf_free(&g);
    free(b.p);
    kvs_free(&k);

    /* no tensors and no kvs: a vocabulary-only file may end at its header */
    b = make_gguf(3, NULL, NULL, 0, 32);
    CHECK(parse(&b, &g, &err) == PA_OK && g.n_tensors == 0 && cJSON_IsObject(g.kv));
    pa_gguf_free(&g);
    CHECK(pa_gguf_sniff(b.p, b.n) && !pa_gguf_sniff(b.p, 3) &&
          !pa_gguf_sniff((const uint8_t *)"GGUL", 4));
    free(b.p);
}

/* ---------------------------------------------------------------- malformed files */

static void test_malformed(void)
{
    wbuf b;
    const gtensor one[] = {{"w", PA_GGML_F32, 1, {8}, NULL, -1}};

    b = make_gguf(3, NULL, one, 1, 32);
    b.p[0] = 'X';
    EXPECT_ERR(b.p, b.n, PA_E_FORMAT, "bad magic");
    EXPECT_ERR(b.p, 2, PA_E_FORMAT, "past the end of the file");
    free(b.p);

    b = make_gguf(1, NULL, one, 1, 32);
    EXPECT_ERR(b.p, b.n, PA_E_FORMAT, "unsupported GGUF version 1");
    b.p[4] = 4;
    EXPECT_ERR(b.p, b.n, PA_E_FORMAT, "unsupported GGUF version 4");
    b.p[4] = 0;
    b.p[7] = 3;
    EXPECT_ERR(b.p, b.n, PA_E_FORMAT, "big-endian");
    free(b.p);

    /* counts the file cannot hold */
    b = make_gguf(3, NULL, one, 1, 32);
    memset(b.p + 8, 0xFF, 8); /* n_tensors */
    EXPECT_ERR(b.p, b.n, PA_E_FORMAT, "cannot fit");
    free(b.p);
    b = make_gguf(3, NULL, one, 1, 32);
    b.p[16] = 200; /* n_kv = 200 in a file of ~100 bytes */
    EXPECT_ERR(b.p, b.n, PA_E_FORMAT, "cannot fit");
    free(b.p);

    /* truncated header */
    kvs k = {0};
    kv_str(&k, "general.name", "x");
    b = make_gguf(3, &k, one, 1, 32);
    EXPECT_ERR(b.p, 40, PA_E_FORMAT, "cannot fit");
    EXPECT_ERR(b.p, 75, PA_E_FORMAT, "tensor table at byte 57 runs past the end of the file");
    /* ... but when the file is longer than the buffer, retry with more */
    pa_gguf g;
    pa_error err;
    pa_error_clear(&err);
    CHECK(pa_gguf_parse(b.p, 40, b.n, LABEL, &g, &err) == PA_E_LIMIT);
    CHECK(strstr(err.msg, "header larger than the buffer") != NULL);
    free(b.p);
    kvs_free(&k);

    /* string lengths */
    k = (kvs){0};
    kv_key(&k, "general.name", T_STR);
    wb_u64(&k.b, 1ull << 40);
    wb_bytes(&k.b, "abc", 3);
    b = make_gguf(3, &k, NULL, 0, 32);
    EXPECT_ERR(b.p, b.n, PA_E_FORMAT, "string value of 1099511627776 bytes");
    free(b.p);
    kvs_free(&k);
    k = (kvs){0};
    wb_u64(&k.b, ~0ull); /* key length */
    k.n = 1;
    wb_u64(&k.b, 0);
    wb_u64(&k.b, 0);
    b = make_gguf(3, &k, NULL, 0, 32);
    EXPECT_ERR(b.p, b.n, PA_E_FORMAT, "key of 18446744073709551615 bytes");
    free(b.p);
    kvs_free(&k);
    {
        size_t n = PA_GGUF_MAX_KEY + 10;
        char *long_key = malloc(n + 1);
        memset(long_key, 'k', n);
        long_key[n] = '\0';
        k = (kvs){0};
        kv_u32(&k, long_key, 1);
        b = make_gguf(3, &k, NULL, 0, 32);
        EXPECT_ERR(b.p, b.n, PA_E_LIMIT, "over the 65536-byte limit");
        free(b.p);
        kvs_free(&k);
        free(long_key);
    }

    /* keys */
    k = (kvs){0};
    kv_u32(&k, "", 1);
    b = make_gguf(3, &k, NULL, 0, 32);
    EXPECT_ERR(b.p, b.n, PA_E_FORMAT, "empty key");
    free(b.p);
    kvs_free(&k);
    k = (kvs){0};
    kv_u32(&k, "a\xC0\x80", 1);
    b = make_gguf(3, &k, NULL, 0, 32);
    EXPECT_ERR(b.p, b.n, PA_E_FORMAT, "not UTF-8");
    free(b.p);
    kvs_free(&k);
    k = (kvs){0};
    kv_u32(&k, "dup", 1);
    kv_u32(&k, "other", 1);
    kv_u32(&k, "dup", 2);
    b = make_gguf(3, &k, NULL, 0, 32);
    EXPECT_ERR(b.p, b.n, PA_E_FORMAT, "duplicate key 'dup'");
    free(b.p);
    kvs_free(&k);

    /* value types */
    k = (kvs){0};
    kv_key(&k, "odd", 13);
    wb_u32(&k.b, 0);
    b = make_gguf(3, &k, NULL, 0, 32);
    EXPECT_ERR(b.p, b.n, PA_E_FORMAT, "unknown value type 13");
    free(b.p);
    kvs_free(&k);
    k = (kvs){0};
    kv_key(&k, "nested", T_ARR);
    wb_u32(&k.b, T_ARR);
    wb_u64(&k.b, 1);
    wb_u32(&k.b, T_U8);
    wb_u64(&k.b, 1);
    wb_u8(&k.b, 1);
    b = make_gguf(3, &k, NULL, 0, 32);
    EXPECT_ERR(b.p, b.n, PA_E_FORMAT, "arrays of arrays");
    free(b.p);
    kvs_free(&k);
    k = (kvs){0};
    kv_key(&k, "arr", T_ARR);
    wb_u32(&k.b, 77);
    wb_u64(&k.b, 1);
    b = make_gguf(3, &k, NULL, 0, 32);
    EXPECT_ERR(b.p, b.n, PA_E_FORMAT, "unknown array element type 77");
    free(b.p);
    kvs_free(&k);
    k = (kvs){0};
    kv_key(&k, "arr", T_ARR);
    wb_u32(&k.b, T_U32);
    wb_u64(&k.b, 1ull << 60);
    b = make_gguf(3, &k, NULL, 0, 32);
    EXPECT_ERR(b.p, b.n, PA_E_FORMAT, "cannot fit in the rest of the file");
    free(b.p);
    kvs_free(&k);
    k = (kvs){0};
    kv_key(&k, "flag", T_BOOL);
    wb_u8(&k.b, 2);
    b = make_gguf(3, &k, NULL, 0, 32);
    EXPECT_ERR(b.p, b.n, PA_E_FORMAT, "neither 0 nor 1");
    free(b.p);
    kvs_free(&k);

    /* alignment */
    k = (kvs){0};
    kv_u32(&k, "general.alignment", 48);
    b = make_gguf(3, &k, one, 1, 48);
    EXPECT_ERR(b.p, b.n, PA_E_FORMAT, "not a power of two");
    free(b.p);
    kvs_free(&k);
    k = (kvs){0};
    kv_u32(&k, "general.alignment", 0);
    b = make_gguf(3, &k, one, 1, 32);
    EXPECT_ERR(b.p, b.n, PA_E_FORMAT, "general.alignment");
    free(b.p);
    kvs_free(&k);
    k = (kvs){0};
    kv_str(&k, "general.alignment", "32");
    b = make_gguf(3, &k, one, 1, 32);
    EXPECT_ERR(b.p, b.n, PA_E_FORMAT, "general.alignment");
    free(b.p);
    kvs_free(&k);

    /* tensor infos */
    const struct {
        gtensor t;
        const char *needle;
    } bad[] = {
        {{"five", PA_GGML_F32, 5, {1, 1, 1, 1, 1}, NULL, -1}, "has 5 dimensions"},
        {{"zero_dims", PA_GGML_F32, 0, {0}, NULL, -1}, "has 0 dimensions"},
        {{"empty", PA_GGML_F32, 2, {4, 0}, NULL, -1}, "dimension 1 is 0"},
        {{"huge", PA_GGML_F32, 3, {1ull << 32, 1ull << 32, 2}, NULL, 0}, "element count overflows"},
        {{"retired", 4, 1, {32}, NULL, -1}, "unknown tensor type 4 for 'retired'"},
        {{"future", 99, 1, {32}, NULL, -1}, "unknown tensor type 99 for 'future'"},
        {{"ragged", PA_GGML_Q4_K, 2, {128, 4}, NULL, 0}, "not a multiple of the Q4_K block size"},
        {{"unaligned", PA_GGML_F32, 1, {8}, NULL, 4}, "not a multiple of the alignment"},
        {{"", PA_GGML_F32, 1, {8}, NULL, -1}, "empty name"},
        {{"nul\xC3", PA_GGML_F32, 1, {8}, NULL, -1}, "not UTF-8"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        b = make_gguf(3, NULL, &bad[i].t, 1, 32);
        EXPECT_ERR(b.p, b.n, PA_E_FORMAT, bad[i].needle);
        free(b.p);
    }
    /* overflow of the byte size itself is reported, never wrapped */
    {
        const gtensor t = {"big", PA_GGML_F32, 2, {1ull << 31, 1ull << 31}, NULL, 0};
        wbuf h = {0};
        wb_bytes(&h, "GGUF", 4);
        wb_u32(&h, 3);
        wb_u64(&h, 1);
        wb_u64(&h, 0);
        wb_str(&h, t.name);
        wb_u32(&h, t.ndim);
        wb_u64(&h, t.ne[0]);
        wb_u64(&h, t.ne[1]);
        wb_u32(&h, t.type);
        wb_u64(&h, 0);
        EXPECT_ERR(h.p, h.n, PA_E_FORMAT, "byte size overflows");
        free(h.p);
    }
    /* data past the end of the file */
    b = make_gguf(3, NULL, one, 1, 32);
    EXPECT_ERR(b.p, b.n - 1, PA_E_FORMAT, "runs past the end of the data section");
    memset(b.p + 49, 0xFF, 8); /* the offset field of "w": 2^64 - 32 */
    b.p[49] = 0xE0;
    EXPECT_ERR(b.p, b.n, PA_E_FORMAT, "data [18446744073709551584, +32) runs past the end");
    free(b.p);
    /* overlapping tensors, duplicate names */
    const gtensor overlap[] = {{"a", PA_GGML_F32, 1, {16}, NULL, 0},
                               {"b", PA_GGML_F32, 1, {16}, NULL, 32}};
    b = make_gguf(3, NULL, overlap, 2, 32);
    EXPECT_ERR(b.p, b.n, PA_E_FORMAT, "overlap");
    free(b.p);
    const gtensor dups[] = {{"same", PA_GGML_F32, 1, {8}, NULL, -1},
                            {"same", PA_GGML_F32, 1, {8}, NULL, -1}};
    b = make_gguf(3, NULL, dups, 2, 32);
    EXPECT_ERR(b.p, b.n, PA_E_FORMAT, "duplicate tensor name 'same'");
    free(b.p);
    /* tensor count fits the counts check but not the bytes left after the metadata */
    k = (kvs){0};
    kv_str(&k, "general.name", "a fairly long name that eats the bytes of the tensor table");
    b = make_gguf(3, &k, one, 1, 32);
    b.p[8] = 2;
    EXPECT_ERR(b.p, b.n - 32, PA_E_FORMAT, "past the end of the file");
    free(b.p);
    kvs_free(&k);
    /* an all-zero or random prefix never passes */
    uint8_t zeros[64] = {0};
    EXPECT_ERR(zeros, sizeof zeros, PA_E_FORMAT, "bad magic");

    /* arguments */
    pa_error_clear(&err);
    CHECK(pa_gguf_parse(NULL, 0, 0, LABEL, NULL, &err) == PA_E_ARG);
}

/* ---------------------------------------------------------------- pa_gguf_read */

static void test_read_file(void)
{
    /* ~3 MiB of tokens: the header does not fit the first 1 MiB read */
    enum { N_TOK = 200000 };
    kvs k = {0};
    kv_str(&k, "general.architecture", "llama");
    kv_key(&k, "tokenizer.ggml.tokens", T_ARR);
    wb_u32(&k.b, T_STR);
    wb_u64(&k.b, N_TOK);
    char tok[32];
    for (int i = 0; i < N_TOK; i++) {
        snprintf(tok, sizeof tok, "tok%06d", i);
        wb_str(&k.b, tok);
    }
    static float w[64];
    for (int i = 0; i < 64; i++)
        w[i] = (float)i;
    const gtensor ts[] = {{"token_embd.weight", PA_GGML_F32, 2, {32, 2}, w, -1}};
    wbuf b = make_gguf(3, &k, ts, 1, 32);
    CHECK(b.n > 2 * PA_GGUF_READ_FIRST);

    char path[] = "/tmp/test_gguf_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        goto out;
    CHECK(write(fd, b.p, b.n) == (ssize_t)b.n);
    pa_gguf g;
    pa_error err;
    pa_error_clear(&err);
    pa_status st = pa_gguf_read(fd, path, &g, &err);
    CHECK_MSG(st == PA_OK, "%s", err.msg);
    if (st == PA_OK) {
        CHECK(cJSON_GetArraySize(pa_gguf_kv(&g, "tokenizer.ggml.tokens")) == N_TOK);
        CHECK(g.n_tensors == 1 && g.tensors[0].offset + 256 == b.n);
        float back[64];
        uint8_t raw[256];
        CHECK(pread(fd, raw, 256, (off_t)g.tensors[0].offset) == 256);
        CHECK(pa_gguf_dequant(g.tensors[0].type, raw, 256, back, 64, &err) == PA_OK);
        CHECK(memcmp(back, w, sizeof w) == 0);
        pa_gguf_free(&g);
    }
    /* a truncated file names the problem, not the buffer */
    CHECK(ftruncate(fd, (off_t)(b.n / 2)) == 0);
    pa_error_clear(&err);
    st = pa_gguf_read(fd, path, &g, &err);
    CHECK_INT(st, PA_E_FORMAT);
    CHECK(strstr(err.msg, path) && strstr(err.msg, "past the end of the file"));
    CHECK(ftruncate(fd, 0) == 0);
    pa_error_clear(&err);
    CHECK(pa_gguf_read(fd, path, &g, &err) == PA_E_FORMAT);
    close(fd);
    unlink(path);
out:
    free(b.p);
    kvs_free(&k);
}

/* ---------------------------------------------------------------- decoding known answers */

static void expect_values(const char *what, uint32_t type, const uint8_t *blk, size_t nbytes,
                          const float *want, size_t n)
{
    float *got = malloc(n * sizeof *got);
    pa_error err;
    pa_error_clear(&err);
    pa_status st = pa_gguf_dequant(type, blk, nbytes, got, n, &err);
    CHECK_MSG(st == PA_OK, "%s: %s", what, err.msg);
    size_t bad = 0;
    for (size_t i = 0; i < n && st == PA_OK; i++)
        if (fabsf(got[i] - want[i]) > 1e-6f * fmaxf(1.0f, fabsf(want[i]))) {
            if (!bad)
                fprintf(stderr, "%s: element %zu is %g, want %g\n", what, i, got[i], want[i]);
            bad++;
        }
    CHECK_MSG(bad == 0, "%s: %zu wrong elements", what, bad);
    free(got);
}

static void test_dequant_known(void)
{
    /* F32 / F16 / BF16 */
    {
        float f[3] = {1.5f, -2.0f, 0.0f};
        expect_values("F32", PA_GGML_F32, (const uint8_t *)f, 12, f, 3);
        const uint8_t h[6] = {0x00, 0x3C, 0x00, 0xC0, 0x00, 0x38}; /* 1, -2, 0.5 */
        const float hw[3] = {1.0f, -2.0f, 0.5f};
        expect_values("F16", PA_GGML_F16, h, 6, hw, 3);
        const uint8_t bf[4] = {0x80, 0x3F, 0x40, 0xC0}; /* 1, -3 */
        const float bw[2] = {1.0f, -3.0f};
        expect_values("BF16", PA_GGML_BF16, bf, 4, bw, 2);
    }
    float want[256];
    /* Q4_0: d = 0.5, byte j = j | (15 - j) << 4 */
    {
        uint8_t blk[18];
        put16(blk, 0x3800);
        for (int j = 0; j < 16; j++) {
            blk[2 + j] = (uint8_t)(j | ((15 - j) << 4));
            want[j] = 0.5f * (float)(j - 8);
            want[j + 16] = 0.5f * (float)(7 - j);
        }
        expect_values("Q4_0", PA_GGML_Q4_0, blk, 18, want, 32);
    }
    /* Q4_1: d = 0.25, m = -1 */
    {
        uint8_t blk[20];
        put16(blk, 0x3400);
        put16(blk + 2, 0xBC00);
        for (int j = 0; j < 16; j++) {
            blk[4 + j] = (uint8_t)(j | ((15 - j) << 4));
            want[j] = 0.25f * (float)j - 1.0f;
            want[j + 16] = 0.25f * (float)(15 - j) - 1.0f;
        }
        expect_values("Q4_1", PA_GGML_Q4_1, blk, 20, want, 32);
    }
    /* Q5_0 / Q5_1: qh = 0xA5C3_0F96: element e's fifth bit is bit e */
    {
        const uint32_t qh = 0xA5C30F96u;
        uint8_t b0[22], b1[24];
        put16(b0, 0x3C00);     /* d = 1 */
        put16(b1, 0x3800);     /* d = 0.5 */
        put16(b1 + 2, 0x4000); /* m = 2 */
        for (int i = 0; i < 4; i++)
            b0[2 + i] = b1[4 + i] = (uint8_t)(qh >> (8 * i));
        float want1[32];
        for (int j = 0; j < 16; j++) {
            uint8_t byte = (uint8_t)((j * 7) & 0xF) | (uint8_t)(((j * 5 + 3) & 0xF) << 4);
            b0[6 + j] = b1[8 + j] = byte;
            int lo = (byte & 0xF) | (int)(((qh >> j) & 1) << 4);
            int hi = (byte >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            want[j] = (float)(lo - 16);
            want[j + 16] = (float)(hi - 16);
            want1[j] = 0.5f * (float)lo + 2.0f;
            want1[j + 16] = 0.5f * (float)hi + 2.0f;
        }
        expect_values("Q5_0", PA_GGML_Q5_0, b0, 22, want, 32);
        expect_values("Q5_1", PA_GGML_Q5_1, b1, 24, want1, 32);
        /* a literal: element 1 has low nibble 7, fifth bit 1 (0x96 bit 1) -> 23 - 16 = 7 */
        CHECK(want[1] == 7.0f);
    }
    /* Q8_0: d = 0.125, q = j - 16 */
    {
        uint8_t blk[34];
        put16(blk, 0x3000);
        for (int j = 0; j < 32; j++) {
            blk[2 + j] = (uint8_t)(int8_t)(j - 16);
            want[j] = 0.125f * (float)(j - 16);
        }
        blk[2] = 0x80; /* -128 is a valid byte too */
        want[0] = -16.0f;
        expect_values("Q8_0", PA_GGML_Q8_0, blk, 34, want, 32);
    }
    /* Q4_K and Q5_K: d = 0.5, dmin = 0.25; scale bytes chosen by hand:
     * sub-block 0: sc = 0x41 & 63 = 1,  m = 0x45 & 63 = 5
     * sub-block 4: sc = (0x21 & 15) | (0x41 >> 6) << 4 = 17, m = (0x21 >> 4) | (0x45 >> 6) << 4 =
     * 18 sub-block 7: sc = (0x87 & 15) | (0x04 >> 6) << 4 = 7, m = (0x87 >> 4) | (0x08 >> 6) << 4 =
     * 8 */
    static const uint8_t kscales[12] = {0x41, 0x02, 0x03, 0x04, 0x45, 0x06,
                                        0x07, 0x08, 0x21, 0x43, 0x65, 0x87};
    static const int ksc[8] = {1, 2, 3, 4, 17, 3 | 0 << 4, 5, 7};
    static const int kmn[8] = {5, 6, 7, 8, 18, 4, 6, 8};
    {
        uint8_t blk[144];
        put16(blk, 0x3800);
        put16(blk + 2, 0x3400);
        memcpy(blk + 4, kscales, 12);
        for (int i = 0; i < 128; i++)
            blk[16 + i] = (uint8_t)((i * 37 + 11) & 0xFF);
        for (int e = 0; e < 256; e++) {
            int chunk = e / 64, within = e % 64, sub = e / 32;
            uint8_t byte = blk[16 + 32 * chunk + within % 32];
            int q = within < 32 ? byte & 0xF : byte >> 4;
            want[e] = 0.5f * (float)ksc[sub] * (float)q - 0.25f * (float)kmn[sub];
        }
        /* a literal: element 0: byte 11 -> q 11, sub 0 -> 0.5 * 1 * 11 - 0.25 * 5 = 4.25 */
        CHECK(want[0] == 4.25f);
        /* element 128 + 32 = 160 is sub-block 5: sc 3, m 4; byte 16 + 64 + 0 = i 64 */
        expect_values("Q4_K", PA_GGML_Q4_K, blk, 144, want, 256);
    }
    {
        uint8_t blk[176];
        put16(blk, 0x3800);
        put16(blk + 2, 0x3400);
        memcpy(blk + 4, kscales, 12);
        for (int i = 0; i < 32; i++)
            blk[16 + i] = (uint8_t)((i * 73 + 5) & 0xFF); /* qh */
        for (int i = 0; i < 128; i++)
            blk[48 + i] = (uint8_t)((i * 37 + 11) & 0xFF);
        for (int e = 0; e < 256; e++) {
            int chunk = e / 64, within = e % 64, sub = e / 32, l = within % 32;
            uint8_t byte = blk[48 + 32 * chunk + l];
            int q = within < 32 ? byte & 0xF : byte >> 4;
            q |= ((blk[16 + l] >> sub) & 1) << 4; /* sub-block s takes bit s of qh[l] */
            want[e] = 0.5f * (float)ksc[sub] * (float)q - 0.25f * (float)kmn[sub];
        }
        expect_values("Q5_K", PA_GGML_Q5_K, blk, 176, want, 256);
    }
    /* Q6_K: element e of 128-element half h, position p = e % 128: sub-block e / 16;
     * low 4 bits from ql[64h + p % 64] (low nibble for p < 64... see below), high 2 bits from
     * qh[32h + p % 32] at bit 2 * (p / 32). */
    {
        uint8_t blk[210];
        for (int i = 0; i < 128; i++)
            blk[i] = (uint8_t)((i * 29 + 3) & 0xFF);
        for (int i = 0; i < 64; i++)
            blk[128 + i] = (uint8_t)((i * 101 + 7) & 0xFF);
        for (int i = 0; i < 16; i++)
            blk[192 + i] = (uint8_t)(int8_t)(i * 9 - 70);
        put16(blk + 208, 0x3400); /* d = 0.25 */
        for (int e = 0; e < 256; e++) {
            int h = e / 128, p = e % 128, quarter = p / 32, l = p % 32;
            uint8_t ql = blk[64 * h + l + (quarter & 1) * 32];
            int lo = quarter < 2 ? ql & 0xF : ql >> 4;
            int hi = (blk[128 + 32 * h + l] >> (2 * quarter)) & 3;
            int sc = (int8_t)blk[192 + e / 16];
            want[e] = 0.25f * (float)sc * (float)((lo | hi << 4) - 32);
        }
        /* a literal: element 0: ql 3, qh 7 -> bits 3 -> q = 3 | 48 = 51 - 32 = 19; sc -70 */
        CHECK(want[0] == 0.25f * -70.0f * 19.0f);
        expect_values("Q6_K", PA_GGML_Q6_K, blk, 210, want, 256);
    }
    /* sizes and types are checked */
    pa_error err;
    uint8_t blk[144] = {0};
    float out[256];
    pa_error_clear(&err);
    CHECK(pa_gguf_dequant(PA_GGML_Q4_K, blk, 143, out, 256, &err) == PA_E_ARG);
    pa_error_clear(&err);
    CHECK(pa_gguf_dequant(PA_GGML_Q4_K, blk, 144, out, 255, &err) == PA_E_ARG);
    pa_error_clear(&err);
    CHECK(pa_gguf_dequant(PA_GGML_Q2_K, blk, 84, out, 256, &err) == PA_E_UNSUPPORTED);
    CHECK(strstr(err.msg, "Q2_K") != NULL);
    pa_error_clear(&err);
    CHECK(pa_gguf_dequant(4, blk, 18, out, 32, &err) == PA_E_UNSUPPORTED);
    pa_error_clear(&err);
    CHECK(pa_gguf_dequant(PA_GGML_Q8_0, blk, 0, out, 0, &err) == PA_OK);

    /* the type table */
    static const uint32_t supported[] = {PA_GGML_F32,  PA_GGML_F16,  PA_GGML_BF16, PA_GGML_Q8_0,
                                         PA_GGML_Q4_0, PA_GGML_Q4_1, PA_GGML_Q5_0, PA_GGML_Q5_1,
                                         PA_GGML_Q4_K, PA_GGML_Q5_K, PA_GGML_Q6_K};
    int n_supported = 0;
    for (uint32_t t = 0; t < 64; t++)
        n_supported += pa_gguf_type_supported(t);
    CHECK_INT(n_supported, 11);
    for (size_t i = 0; i < sizeof supported / sizeof supported[0]; i++)
        CHECK(pa_gguf_type_supported(supported[i]));
    CHECK(!pa_gguf_type_known(4) && !pa_gguf_type_known(31) && !pa_gguf_type_known(1000));
    CHECK(pa_gguf_type_known(PA_GGML_IQ4_XS) && !pa_gguf_type_supported(PA_GGML_IQ4_XS));
    CHECK_STR(pa_gguf_type_name(PA_GGML_Q4_K), "Q4_K");
    CHECK_STR(pa_gguf_type_name(PA_GGML_BF16), "BF16");
    CHECK_STR(pa_gguf_type_name(5), "?");
    CHECK_INT(pa_gguf_block_bytes(PA_GGML_Q6_K), 210);
    CHECK_INT(pa_gguf_block_elems(PA_GGML_Q5_1), 32);
    CHECK_INT(pa_gguf_block_bytes(PA_GGML_IQ2_XXS), 66);
    uint64_t nb;
    CHECK(pa_gguf_nbytes(PA_GGML_Q8_0, 64, &nb) && nb == 68);
    CHECK(!pa_gguf_nbytes(PA_GGML_Q8_0, 65, &nb));
    CHECK(!pa_gguf_nbytes(PA_GGML_F32, UINT64_MAX / 2, &nb));
}

/* ---------------------------------------------------------------- quantise -> decode */

static void round_trip(uint32_t type, const float *x, size_t n, double max_rms_rel,
                       double max_elem_rel)
{
    uint64_t nbytes = 0;
    CHECK(pa_gguf_nbytes(type, n, &nbytes));
    uint8_t *q = malloc((size_t)nbytes);
    float *y = malloc(n * sizeof *y);
    CHECK(pa_gguf_quantize(type, x, n, q, (size_t)nbytes - 1) == 0); /* too small */
    CHECK(pa_gguf_quantize(type, x, n, q, (size_t)nbytes) == nbytes);
    pa_error err;
    pa_error_clear(&err);
    CHECK(pa_gguf_dequant(type, q, (size_t)nbytes, y, n, &err) == PA_OK);
    double se = 0, sx = 0, worst = 0;
    size_t block = pa_gguf_block_elems(type);
    for (size_t b = 0; b < n; b += block) {
        double amax = 0;
        for (size_t i = b; i < b + block; i++)
            amax = fmax(amax, fabs(x[i]));
        for (size_t i = b; i < b + block; i++) {
            double e = fabs((double)y[i] - x[i]);
            se += e * e;
            sx += (double)x[i] * x[i];
            if (amax > 0)
                worst = fmax(worst, e / amax);
        }
    }
    double rms_rel = sqrt(se / sx);
    CHECK_MSG(rms_rel <= max_rms_rel, "%s: relative RMS error %.4f > %.4f", pa_gguf_type_name(type),
              rms_rel, max_rms_rel);
    if (max_elem_rel > 0)
        CHECK_MSG(worst <= max_elem_rel, "%s: worst error %.4f of the block max > %.4f",
                  pa_gguf_type_name(type), worst, max_elem_rel);
    fprintf(stderr, "  %-5s rms rel %.4f, worst / block max %.4f\n", pa_gguf_type_name(type),
            rms_rel, worst);
    free(q);
    free(y);
}

static void test_quantize(void)
{
    enum { N = 64 * 256 };
    float *x = malloc(N * sizeof *x);
    for (size_t i = 0; i < N; i++)
        x[i] = 0.02f * gaussian();
    /* a few outliers and a block with a different scale, as real weights have */
    x[100] = 0.5f;
    x[3000] = -0.4f;
    for (size_t i = 4096; i < 4096 + 256; i++)
        x[i] *= 30.0f;
    round_trip(PA_GGML_F32, x, N, 0.0, 0.0);
    round_trip(PA_GGML_F16, x, N, 0.001, 0.0);
    round_trip(PA_GGML_BF16, x, N, 0.005, 0.0);
    round_trip(PA_GGML_Q8_0, x, N, 0.01, 0.01);
    round_trip(PA_GGML_Q6_K, x, N, 0.03, 0.05);
    round_trip(PA_GGML_Q4_0, x, N, 0.10, 0.15);
    round_trip(PA_GGML_Q4_K, x, N, 0.10, 0.15);

    /* zeros, constants, huge values: decodable and finite */
    static const uint32_t types[] = {PA_GGML_Q8_0, PA_GGML_Q4_0, PA_GGML_Q4_K, PA_GGML_Q6_K};
    for (size_t t = 0; t < 4; t++) {
        float in[256], out[256];
        uint8_t q[300];
        uint64_t nb = 0;
        pa_gguf_nbytes(types[t], 256, &nb);
        pa_error err;
        for (int pattern = 0; pattern < 4; pattern++) {
            for (int i = 0; i < 256; i++)
                in[i] = pattern == 0   ? 0.0f
                        : pattern == 1 ? -0.75f
                        : pattern == 2 ? (i % 2 ? 1e9f : -1e9f)
                                       : (i == 7 ? NAN : 1.0f);
            CHECK(pa_gguf_quantize(types[t], in, 256, q, sizeof q) == nb);
            pa_error_clear(&err);
            CHECK(pa_gguf_dequant(types[t], q, (size_t)nb, out, 256, &err) == PA_OK);
            bool finite = true;
            for (int i = 0; i < 256; i++)
                finite = finite && isfinite(out[i]);
            CHECK_MSG(finite, "%s pattern %d", pa_gguf_type_name(types[t]), pattern);
            if (pattern == 0)
                for (int i = 0; i < 256; i++)
                    CHECK(out[i] == 0.0f);
            if (pattern == 1)
                CHECK_MSG(fabsf(out[5] + 0.75f) < 0.01f, "%s: constant -0.75 -> %g",
                          pa_gguf_type_name(types[t]), out[5]);
        }
    }
    uint8_t q[64];
    CHECK(pa_gguf_quantize(PA_GGML_Q5_K, x, 256, q, sizeof q) == 0); /* not an encoder */
    CHECK(pa_gguf_quantize(PA_GGML_Q8_0, x, 33, q, sizeof q) == 0);
    CHECK(pa_gguf_quantize(PA_GGML_Q8_0, x, 0, q, sizeof q) == 0);
    free(x);
}

/* ---------------------------------------------------------------- Q/K rows */

static void test_qk_rows(void)
{
    static const struct {
        uint64_t rows;
        uint32_t heads;
    } shapes[] = {{64, 4}, {64, 8}, {32, 2}, {128, 1}, {96, 3}, {2, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        uint64_t rows = shapes[s].rows, cols = 3;
        uint32_t heads = shapes[s].heads;
        uint64_t half = rows / heads / 2;
        /* the converter, as numpy runs it: out = W.reshape(heads, 2, half, cols)
         * .swapaxes(1, 2).reshape(rows, cols), so out[h][i][s] = W[h][s][i] */
        float *hf = malloc(rows * cols * sizeof *hf), *gg = malloc(rows * cols * sizeof *gg);
        float *back = malloc(rows * cols * sizeof *back);
        for (uint64_t r = 0; r < rows * cols; r++)
            hf[r] = (float)r;
        for (uint64_t h = 0; h < heads; h++)
            for (uint64_t i = 0; i < half; i++)
                for (uint64_t sv = 0; sv < 2; sv++) {
                    uint64_t out_row = (h * half + i) * 2 + sv;
                    uint64_t in_row = h * 2 * half + sv * half + i;
                    memcpy(gg + out_row * cols, hf + in_row * cols, cols * sizeof *gg);
                    CHECK(pa_gguf_qk_row_forward(in_row, rows, heads) == out_row);
                }
        CHECK(pa_gguf_unpermute_rows(gg, back, rows, cols, heads));
        CHECK_MSG(memcmp(back, hf, rows * cols * sizeof *hf) == 0, "rows %llu heads %u",
                  (unsigned long long)rows, heads);
        /* a bijection, the inverse of the forward map */
        uint8_t *seen = calloc(rows, 1);
        bool ok = true;
        for (uint64_t g = 0; g < rows; g++) {
            uint64_t r = pa_gguf_qk_row(g, rows, heads);
            ok = ok && r < rows && !seen[r];
            if (r < rows)
                seen[r] = 1;
            ok = ok && pa_gguf_qk_row_forward(r, rows, heads) == g;
        }
        CHECK_MSG(ok, "rows %llu heads %u", (unsigned long long)rows, heads);
        free(seen);
        free(hf);
        free(gg);
        free(back);
    }
    /* head_dim 4: GGUF rows 0..3 of a head are HF rows 0, 2, 1, 3 */
    CHECK(pa_gguf_qk_row(1, 8, 2) == 2 && pa_gguf_qk_row(2, 8, 2) == 1 &&
          pa_gguf_qk_row(5, 8, 2) == 6 && pa_gguf_qk_row(7, 8, 2) == 7);
    /* shapes that do not allow it leave rows alone */
    CHECK(pa_gguf_qk_row(3, 10, 4) == 3 && pa_gguf_qk_row(3, 8, 0) == 3 &&
          pa_gguf_qk_row(9, 8, 2) == 9);
    float a[6] = {0}, b[6];
    CHECK(!pa_gguf_unpermute_rows(a, b, 3, 2, 1));
    CHECK(!pa_gguf_unpermute_rows(a, a, 2, 3, 1));
    CHECK(pa_gguf_arch_permutes_qk("llama") && !pa_gguf_arch_permutes_qk("qwen2") &&
          !pa_gguf_arch_permutes_qk(NULL));
}

/* ---------------------------------------------------------------- names */

static void test_names(void)
{
    static const char *const pairs[][2] = {
        {"token_embd.weight", "model.embed_tokens.weight"},
        {"output.weight", "lm_head.weight"},
        {"output_norm.weight", "model.norm.weight"},
        {"output_norm.bias", "model.norm.bias"},
        {"blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight"},
        {"blk.0.attn_k.bias", "model.layers.0.self_attn.k_proj.bias"},
        {"blk.7.attn_v.weight", "model.layers.7.self_attn.v_proj.weight"},
        {"blk.12.attn_output.weight", "model.layers.12.self_attn.o_proj.weight"},
        {"blk.3.ffn_gate.weight", "model.layers.3.mlp.gate_proj.weight"},
        {"blk.3.ffn_up.weight", "model.layers.3.mlp.up_proj.weight"},
        {"blk.31.ffn_down.weight", "model.layers.31.mlp.down_proj.weight"},
        {"blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight"},
        {"blk.0.ffn_norm.weight", "model.layers.0.post_attention_layernorm.weight"},
        {"blk.2.attn_q_norm.weight", "model.layers.2.self_attn.q_norm.weight"},
        /* unknown: unchanged */
        {"rope_freqs.weight", "rope_freqs.weight"},
        {"blk.x.attn_q.weight", "blk.x.attn_q.weight"},
        {"blk..attn_q.weight", "blk..attn_q.weight"},
        {"blk.0.attn_q", "blk.0.attn_q"},
        {"blk.0.attn_qkv.weight", "blk.0.attn_qkv.weight"},
        {"blk.0.weight", "blk.0.weight"},
        {"blk.1234567890.attn_q.weight", "blk.1234567890.attn_q.weight"},
        {".weight", ".weight"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        char *hf = pa_gguf_hf_name(pairs[i][0]);
        CHECK(hf != NULL);
        if (hf)
            CHECK_STR(hf, pairs[i][1]);
        free(hf);
    }
    CHECK(pa_gguf_hf_name(NULL) == NULL);
}

/* ---------------------------------------------------------------- config.json and tokenizer */

static const char *const toks[] = {"<unk>", "<s>", "</s>",     "a",
                                   "b",     "ab",  "\xC4\xA0", "\304\240ab"};
static const char *const merges[] = {"a b", "\xC4\xA0 ab"};
static const int32_t tok_types[] = {2, 3, 3, 1, 1, 1, 1, 1};

static wbuf llama_gguf(const char *tok_model, bool tied, bool with_merges)
{
    kvs k = {0};
    kv_str(&k, "general.architecture", "llama");
    kv_u32(&k, "llama.embedding_length", 64);
    kv_u32(&k, "llama.block_count", 2);
    kv_u32(&k, "llama.attention.head_count", 4);
    kv_u32(&k, "llama.attention.head_count_kv", 2);
    kv_u32(&k, "llama.feed_forward_length", 172);
    kv_u32(&k, "llama.context_length", 256);
    kv_f32(&k, "llama.rope.freq_base", 10000.0f);
    kv_f32(&k, "llama.attention.layer_norm_rms_epsilon", 1e-6f);
    kv_str(&k, "tokenizer.ggml.model", tok_model);
    kv_strs(&k, "tokenizer.ggml.tokens", toks, 8);
    kv_i32s(&k, "tokenizer.ggml.token_type", tok_types, 8);
    static const float scores[8] = {0, 0, 0, -1, -2, -3, -4, -5};
    kv_f32s(&k, "tokenizer.ggml.scores", scores, 8);
    if (with_merges)
        kv_strs(&k, "tokenizer.ggml.merges", merges, 2);
    kv_u32(&k, "tokenizer.ggml.bos_token_id", 1);
    kv_u32(&k, "tokenizer.ggml.eos_token_id", 2);
    kv_u32(&k, "tokenizer.ggml.unknown_token_id", 0);
    kv_u32(&k, "tokenizer.ggml.padding_token_id", 99); /* out of range: ignored */
    gtensor ts[2] = {{"token_embd.weight", PA_GGML_F16, 2, {64, 8}, NULL, -1},
                     {"output.weight", PA_GGML_Q8_0, 2, {64, 8}, NULL, -1}};
    wbuf b = make_gguf(3, &k, ts, tied ? 1 : 2, 32);
    kvs_free(&k);
    return b;
}

static void test_config(void)
{
    /* what mkmodel writes for the same model */
    static const char hf_config[] =
        "{\"architectures\": [\"LlamaForCausalLM\"], \"bos_token_id\": 1, \"eos_token_id\": 2, "
        "\"hidden_act\": \"silu\", \"hidden_size\": 64, \"intermediate_size\": 172, "
        "\"max_position_embeddings\": 256, \"model_type\": \"llama\", \"num_attention_heads\": 4, "
        "\"num_hidden_layers\": 2, \"num_key_value_heads\": 2, \"rms_norm_eps\": 1e-06, "
        "\"rope_theta\": 10000.0, \"tie_word_embeddings\": false, \"torch_dtype\": \"float32\", "
        "\"vocab_size\": 8}";
    pa_mfi want, got;
    pa_error err;
    pa_error_clear(&err);
    CHECK(pa_mfi_parse(hf_config, strlen(hf_config), "config.json", &want, &err) == PA_OK);

    wbuf b = llama_gguf("gpt2", false, true);
    pa_gguf g;
    CHECK(parse(&b, &g, &err) == PA_OK);
    char *json = NULL;
    CHECK(pa_gguf_config_json(&g, &json, &err) == PA_OK);
    CHECK(json != NULL);
    if (json) {
        pa_error_clear(&err);
        pa_status st = pa_mfi_parse(json, strlen(json), "gguf config", &got, &err);
        CHECK_MSG(st == PA_OK, "%s", err.msg);
        if (st == PA_OK) {
            CHECK_STR(got.model_type, "llama");
            CHECK_STR(got.architectures, "[\"LlamaForCausalLM\"]");
            CHECK_INT(got.hidden_size, 64);
            CHECK_INT(got.num_hidden_layers, 2);
            CHECK_INT(got.num_attention_heads, 4);
            CHECK_INT(got.num_key_value_heads, 2);
            CHECK_INT(got.intermediate_size, 172);
            CHECK_INT(got.vocab_size, 8);
            CHECK_INT(got.max_position_embeddings, 256);
            CHECK(got.rope_theta == 10000.0);
            CHECK_STR(got.norm_type, "RMSNorm");
            CHECK_STR(got.attention_style, "GQA");
            CHECK_INT(got.tie_word_embeddings, 0);
            CHECK_INT(got.bos_token_id, 1);
            CHECK_INT(got.eos_token_id, 2);
            CHECK_STR(got.arch_hash, want.arch_hash);
            pa_mfi_finish(&got);
            pa_mfi_finish(&want);
            CHECK_STR(got.family_hash, want.family_hash);
            CHECK(strstr(json, "\"rms_norm_eps\":1e-06") != NULL);
            pa_mfi_free(&got);
        }
        free(json);
    }
    pa_gguf_free(&g);
    free(b.p);
    pa_mfi_free(&want);

    /* tied: no output tensor; unknown architecture: its name, architectures null */
    b = llama_gguf("gpt2", true, true);
    CHECK(parse(&b, &g, &err) == PA_OK);
    CHECK(pa_gguf_config_json(&g, &json, &err) == PA_OK);
    CHECK(json && strstr(json, "\"tie_word_embeddings\":true"));
    free(json);
    cJSON_ReplaceItemInObject(g.kv, "general.architecture", cJSON_CreateString("mystery"));
    CHECK(pa_gguf_config_json(&g, &json, &err) == PA_OK);
    CHECK(json && strstr(json, "\"architectures\":null") &&
          strstr(json, "\"model_type\":\"mystery\"") && !strstr(json, "hidden_size"));
    free(json);
    cJSON_DeleteItemFromObject(g.kv, "general.architecture");
    pa_error_clear(&err);
    CHECK(pa_gguf_config_json(&g, &json, &err) == PA_E_UNSUPPORTED && json == NULL);
    pa_gguf_free(&g);
    free(b.p);

    /* per-layer arrays count when they agree */
    kvs k = {0};
    kv_str(&k, "general.architecture", "llama");
    static const int32_t same[] = {8, 8, 8}, differ[] = {8, 4, 8};
    kv_i32s(&k, "llama.attention.head_count_kv", same, 3);
    kv_i32s(&k, "llama.feed_forward_length", differ, 3);
    b = make_gguf(3, &k, NULL, 0, 32);
    CHECK(parse(&b, &g, &err) == PA_OK);
    int64_t v = 0;
    CHECK(pa_gguf_arch_int(&g, "attention.head_count_kv", &v) && v == 8);
    CHECK(!pa_gguf_arch_int(&g, "feed_forward_length", &v));
    pa_gguf_free(&g);
    free(b.p);
    kvs_free(&k);
}

static void test_tokenizer(void)
{
    /* the same vocabulary as Hugging Face writes it */
    static const char hf_tok[] =
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2, "
        "\"a\": 3, \"b\": 4, \"ab\": 5, \"\xC4\xA0\": 6, \"\304\240ab\": 7}, "
        "\"merges\": [\"a b\", \"\xC4\xA0 ab\"]}}";
    pa_tokenizer *want = NULL, *got = NULL;
    pa_error err;
    pa_error_clear(&err);
    CHECK(pa_tokenizer_parse(hf_tok, strlen(hf_tok), NULL, 0, "hf", &want, &err) == PA_OK);

    wbuf b = llama_gguf("gpt2", false, true);
    pa_gguf g;
    CHECK(parse(&b, &g, &err) == PA_OK);
    char *json = NULL, *cfg = NULL;
    CHECK(pa_gguf_tokenizer_json(&g, &json, &cfg, &err) == PA_OK);
    if (json && cfg && want) {
        pa_status st =
            pa_tokenizer_parse(json, strlen(json), cfg, strlen(cfg), "gguf tok", &got, &err);
        CHECK_MSG(st == PA_OK, "%s", err.msg);
        if (st == PA_OK) {
            CHECK_INT(got->tfv.vocab_size, 8);
            CHECK_INT(got->tfv.num_merges, 2);
            CHECK_STR(got->tfv.model_kind, "BPE");
            CHECK_STR(got->tfv.merge_rule_hash, want->tfv.merge_rule_hash);
            CHECK_STR(got->tfv.merges_hash, want->tfv.merges_hash);
            CHECK(got->tfv.pct_whitespace_prefix == want->tfv.pct_whitespace_prefix);
            CHECK(got->tfv.avg_token_length == want->tfv.avg_token_length);
            CHECK_INT(pa_tokenizer_find(got, "\304\240ab", 4), 7);
            CHECK_INT(got->bos_id, 1);
            CHECK_INT(got->eos_id, 2);
            CHECK_INT(got->unk_id, 0);
            CHECK(got->pad_id == PA_NULL_INT);
            pa_tokenizer_free(got);
        }
    }
    free(json);
    free(cfg);
    pa_gguf_free(&g);
    free(b.p);
    pa_tokenizer_free(want);

    /* llama SentencePiece (no merges), bert, t5: each parses as its kind */
    static const struct {
        const char *model, *kind;
    } kinds[] = {{"llama", "BPE"}, {"bert", "WordPiece"}, {"t5", "Unigram"}};
    for (size_t i = 0; i < 3; i++) {
        b = llama_gguf(kinds[i].model, false, false);
        CHECK(parse(&b, &g, &err) == PA_OK);
        pa_error_clear(&err);
        CHECK(pa_gguf_tokenizer_json(&g, &json, NULL, &err) == PA_OK);
        if (json) {
            pa_error_clear(&err);
            pa_status st = pa_tokenizer_parse(json, strlen(json), NULL, 0, "t", &got, &err);
            CHECK_MSG(st == PA_OK, "%s: %s", kinds[i].model, err.msg);
            if (st == PA_OK) {
                CHECK_STR(got->tfv.model_kind, kinds[i].kind);
                CHECK_INT(got->tfv.vocab_size, 8);
                CHECK_INT(got->tfv.num_merges, 0);
                if (strcmp(kinds[i].model, "bert") == 0) /* phantom space undone */
                    CHECK(pa_tokenizer_find(got, "##ab", 4) == 5 &&
                          pa_tokenizer_find(got, "<s>", 3) == 1);
                pa_tokenizer_free(got);
            }
            free(json);
        }
        pa_gguf_free(&g);
        free(b.p);
    }
    /* unknown model, no tokens */
    b = llama_gguf("rwkv", false, false);
    CHECK(parse(&b, &g, &err) == PA_OK);
    pa_error_clear(&err);
    CHECK(pa_gguf_tokenizer_json(&g, &json, NULL, &err) == PA_E_UNSUPPORTED && !json);
    cJSON_DeleteItemFromObject(g.kv, "tokenizer.ggml.tokens");
    pa_error_clear(&err);
    CHECK(pa_gguf_tokenizer_json(&g, &json, NULL, &err) == PA_E_UNSUPPORTED);
    pa_gguf_free(&g);
    free(b.p);
}

/* ---------------------------------------------------------------- mkmodel gguf, end to end */

static char mk_tmp[256];
static const char *mkmodel;

static int run_mkmodel(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run_mkmodel(const char *fmt, ...)
{
    char args[1024], cmd[1600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "cd %s && %s %s >/dev/null 2>&1", mk_tmp, mkmodel, args);
    return system(cmd);
}

static char *slurp(const char *dir, const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s/%s", mk_tmp, dir, name);
    char *text = NULL;
    pa_error err;
    pa_error_clear(&err);
    CHECK_MSG(pa_read_file(path, 64u << 20, &text, len, &err) == PA_OK, "%s", err.msg);
    return text;
}

static bool read_at(int fd, void *dst, size_t len, uint64_t off)
{
    return pread(fd, dst, len, (off_t)off) == (ssize_t)len;
}

/* Every tensor of base.TYPE.gguf decodes (rows of Q and K put back in HF order) to the
 * safetensors original within the type's error; types, config and tokenizer as expected. */
static void check_converted(const char *type, uint32_t want_type, double tol)
{
    char path[512];
    snprintf(path, sizeof path, "%s/base.%s.gguf", mk_tmp, type);
    int fd = open(path, O_RDONLY);
    char st_path[512];
    snprintf(st_path, sizeof st_path, "%s/base/model.safetensors", mk_tmp);
    int st_fd = open(st_path, O_RDONLY);
    CHECK(fd >= 0 && st_fd >= 0);
    if (fd < 0 || st_fd < 0)
        return;
    pa_gguf g;
    pa_st_header st;
    pa_error err;
    pa_error_clear(&err);
    bool ok = pa_gguf_read(fd, path, &g, &err) == PA_OK;
    CHECK_MSG(ok, "%s", err.msg);
    ok = ok && pa_st_read(st_fd, st_path, &st, &err) == PA_OK;
    CHECK_MSG(ok, "%s", err.msg);
    if (!ok) {
        close(fd);
        close(st_fd);
        return;
    }
    CHECK_INT(g.n_tensors, st.n_tensors);
    int64_t heads = 0, kv_heads = 0;
    CHECK(pa_gguf_arch_int(&g, "attention.head_count", &heads) && heads == 4);
    CHECK(pa_gguf_arch_int(&g, "attention.head_count_kv", &kv_heads) && kv_heads == 2);
    CHECK(pa_gguf_arch_permutes_qk(pa_gguf_kv_str(&g, "general.architecture")));
    size_t n_quantized = 0;
    for (size_t i = 0; i < g.n_tensors; i++) {
        const pa_gguf_tensor *t = &g.tensors[i];
        char *hf = pa_gguf_hf_name(t->name);
        const pa_tensor_desc *src = NULL;
        for (size_t j = 0; j < st.n_tensors; j++)
            if (strcmp(st.tensors[j].name, hf) == 0)
                src = &st.tensors[j];
        CHECK_MSG(src != NULL, "%s: %s (%s) is not in the source", type, t->name, hf);
        if (!src) {
            free(hf);
            continue;
        }
        /* shapes: GGUF ne[0] is the HF last dimension */
        CHECK(t->ndim == src->ndim && t->ne[0] == src->shape[src->ndim - 1] &&
              (t->ndim == 1 || t->ne[1] == src->shape[0]) && t->numel == src->numel);
        uint32_t expect = t->ndim == 1 ? PA_GGML_F32 : want_type;
        if (t->ne[0] % pa_gguf_block_elems(expect))
            expect = PA_GGML_F16;
        CHECK_MSG(t->type == expect, "%s: %s is %s, want %s", type, t->name,
                  pa_gguf_type_name(t->type), pa_gguf_type_name(expect));
        n_quantized += t->type == want_type && t->ndim == 2;

        size_t n = (size_t)t->numel;
        uint8_t *raw = malloc((size_t)t->nbytes);
        float *got = malloc(n * sizeof *got), *want = malloc(n * sizeof *want);
        float *hf_order = malloc(n * sizeof *hf_order);
        CHECK(read_at(fd, raw, (size_t)t->nbytes, t->offset));
        CHECK(read_at(st_fd, want, n * sizeof *want, st.data_offset + src->begin));
        CHECK(pa_gguf_dequant(t->type, raw, (size_t)t->nbytes, got, n, &err) == PA_OK);
        uint32_t qk = strstr(t->name, "attn_q.")   ? (uint32_t)heads
                      : strstr(t->name, "attn_k.") ? (uint32_t)kv_heads
                                                   : 0;
        if (qk) {
            uint64_t rows = t->ndim == 1 ? t->ne[0] : t->ne[1], cols = t->ndim == 1 ? 1 : t->ne[0];
            CHECK(pa_gguf_unpermute_rows(got, hf_order, rows, cols, qk));
            /* the rows really were reordered: GGUF row 1 is HF row head_dim / 2 */
            if (want_type == PA_GGML_F32 && cols > 1)
                CHECK(memcmp(got + cols, want + cols, cols * sizeof *got) != 0 &&
                      memcmp(got + cols, want + rows / qk / 2 * cols, cols * sizeof *got) == 0);
        } else {
            memcpy(hf_order, got, n * sizeof *got);
        }
        double amax = 0, worst = 0;
        for (size_t e = 0; e < n; e++) {
            amax = fmax(amax, fabs(want[e]));
            worst = fmax(worst, fabs((double)hf_order[e] - want[e]));
        }
        CHECK_MSG(worst <= tol * amax, "%s: %s: worst error %g of max %g", type, t->name, worst,
                  amax);
        free(raw);
        free(got);
        free(want);
        free(hf_order);
        free(hf);
    }
    if (want_type != PA_GGML_F32)
        CHECK_MSG(n_quantized > 0, "%s: no tensor has the requested type", type);

    /* config.json and tokenizer.json from the metadata match the originals' hashes */
    size_t len;
    char *cfg_src = slurp("base", "config.json", &len);
    pa_mfi want_mfi, got_mfi;
    CHECK(cfg_src && pa_mfi_parse(cfg_src, len, "config.json", &want_mfi, &err) == PA_OK);
    char *cfg = NULL;
    CHECK(pa_gguf_config_json(&g, &cfg, &err) == PA_OK);
    if (cfg && pa_mfi_parse(cfg, strlen(cfg), "gguf", &got_mfi, &err) == PA_OK) {
        CHECK_STR(got_mfi.arch_hash, want_mfi.arch_hash);
        CHECK_STR(got_mfi.norm_type, want_mfi.norm_type);
        CHECK(got_mfi.rope_theta == want_mfi.rope_theta);
        CHECK_INT(got_mfi.tie_word_embeddings, want_mfi.tie_word_embeddings);
        pa_mfi_free(&got_mfi);
    }
    pa_mfi_free(&want_mfi);
    free(cfg);
    free(cfg_src);

    size_t tok_len, tcfg_len;
    char *tok_src = slurp("base", "tokenizer.json", &tok_len);
    char *tcfg_src = slurp("base", "tokenizer_config.json", &tcfg_len);
    pa_tokenizer *want_tok = NULL, *got_tok = NULL;
    CHECK(pa_tokenizer_parse(tok_src, tok_len, tcfg_src, tcfg_len, "src", &want_tok, &err) ==
          PA_OK);
    char *tok = NULL, *tcfg = NULL;
    CHECK(pa_gguf_tokenizer_json(&g, &tok, &tcfg, &err) == PA_OK);
    if (tok && tcfg && want_tok &&
        pa_tokenizer_parse(tok, strlen(tok), tcfg, strlen(tcfg), "gguf", &got_tok, &err) == PA_OK) {
        const pa_tfv *a = &want_tok->tfv, *b = &got_tok->tfv;
        CHECK(a->vocab_size == b->vocab_size && a->num_merges == b->num_merges &&
              strcmp(a->merges_hash, b->merges_hash) == 0 &&
              a->pct_single_char == b->pct_single_char &&
              a->avg_token_length == b->avg_token_length &&
              a->pct_byte_tokens == b->pct_byte_tokens);
        CHECK(got_tok->bos_id == want_tok->bos_id && got_tok->eos_id == want_tok->eos_id &&
              got_tok->unk_id == want_tok->unk_id);
        pa_tokenizer_free(got_tok);
    }
    pa_tokenizer_free(want_tok);
    free(tok);
    free(tcfg);
    free(tok_src);
    free(tcfg_src);
    pa_gguf_free(&g);
    pa_st_header_free(&st);
    close(fd);
    close(st_fd);
}

static void test_mkmodel_gguf(void)
{
    mkmodel = getenv("MKMODEL");
    if (!mkmodel) {
        fprintf(stderr, "  MKMODEL is not set: mkmodel gguf not tested\n");
        return;
    }
    snprintf(mk_tmp, sizeof mk_tmp, "/tmp/provfs-gguf-XXXXXX");
    if (!mkdtemp(mk_tmp)) {
        CHECK(false);
        return;
    }
    /* hidden 256: rows of q/k/v/o/gate/up are whole K blocks; down_proj rows (688) are not */
    CHECK(run_mkmodel("create base --seed 5 --hidden 256 --layers 2 --heads 4 --kv-heads 2 "
                      "--inter 688 --vocab 700") == 0);
    static const struct {
        const char *name;
        uint32_t type;
        double tol; /* worst error over the tensor's largest magnitude */
    } types[] = {{"f32", PA_GGML_F32, 0.0},    {"f16", PA_GGML_F16, 1e-3},
                 {"bf16", PA_GGML_BF16, 8e-3}, {"q8_0", PA_GGML_Q8_0, 0.01},
                 {"q6_k", PA_GGML_Q6_K, 0.04}, {"q4_0", PA_GGML_Q4_0, 0.15},
                 {"q4_k", PA_GGML_Q4_K, 0.15}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        CHECK_MSG(run_mkmodel("gguf base base.%s.gguf --type %s", types[i].name, types[i].name) ==
                      0,
                  "mkmodel gguf --type %s", types[i].name);
        check_converted(types[i].name, types[i].type, types[i].tol);
    }
    /* deterministic; refusals leave no file behind */
    CHECK(run_mkmodel("gguf base again.gguf --type q4_k") == 0);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "cmp -s %s/base.q4_k.gguf %s/again.gguf", mk_tmp, mk_tmp);
    CHECK(system(cmd) == 0);
    CHECK(run_mkmodel("create gpt --arch gpt2 --hidden 64 --layers 1 --heads 2 --vocab 300") == 0);
    CHECK(run_mkmodel("gguf gpt gpt.gguf --type f16") != 0);
    CHECK(run_mkmodel("gguf base bad.gguf --type q5_k") != 0);
    CHECK(run_mkmodel("gguf base bad.gguf") != 0);
    snprintf(cmd, sizeof cmd, "test ! -e %s/gpt.gguf && test ! -e %s/bad.gguf", mk_tmp, mk_tmp);
    CHECK(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", mk_tmp);
    CHECK(system(cmd) == 0);
}

int main(void)
{
    test_valid_files();
    test_malformed();
    test_read_file();
    test_dequant_known();
    test_quantize();
    test_qk_rows();
    test_names();
    test_config();
    test_tokenizer();
    test_mkmodel_gguf();
    return check_report("gguf");
}
