/* Unit tests for the safetensors header parser: valid headers of every dtype, metadata, scalars,
 * empty tensors and gaps, every refusal (status and message), hostile sizes and nesting, and
 * pa_st_read on real files. */
#include "provfs/analyzer.h"

#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LABEL "mem.safetensors"

/* ---------------------------------------------------------------- helpers */

typedef struct blob {
    uint8_t *p;
    size_t n;
} blob;

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

/* A growable string for building headers (snprintf only). */
typedef struct text {
    char *p;
    size_t n, cap;
} text;

static void text_add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = t->cap - t->n;
        int w = vsnprintf(t->p ? t->p + t->n : NULL, room, fmt, ap);
        va_end(ap);
        if (w < 0) {
            fprintf(stderr, "vsnprintf failed\n");
            exit(2);
        }
        if ((size_t)w < room) {
            t->n += (size_t)w;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 256;
        while (cap < t->n + (size_t)w + 1)
            cap *= 2;
        char *q = realloc(t->p, cap);
        if (!q) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
        t->p = q;
        t->cap = cap;
    }
}

static void text_repeat(text *t, char c, size_t count)
{
    for (size_t i = 0; i < count; i++)
        text_add(t, "%c", c);
}

/* 8-byte little-endian length field, then header_len bytes of header, then data_len data bytes. */
static blob blob_raw(uint64_t len_field, const void *header, size_t header_len, size_t data_len)
{
    blob b;
    b.n = 8 + header_len + data_len;
    b.p = xmalloc(b.n);
    for (int i = 0; i < 8; i++)
        b.p[i] = (uint8_t)(len_field >> (8 * i));
    if (header_len)
        memcpy(b.p + 8, header, header_len);
    for (size_t i = 0; i < data_len; i++)
        b.p[8 + header_len + i] = (uint8_t)(i * 7 + 1);
    return b;
}

static blob blob_make(const char *json, size_t data_len)
{
    return blob_raw(strlen(json), json, strlen(json), data_len);
}

static void blob_free(blob *b)
{
    free(b->p);
    b->p = NULL;
    b->n = 0;
}

static bool header_is_zero(const pa_st_header *h)
{
    return h->header_len == 0 && h->data_offset == 0 && h->data_len == 0 && h->n_tensors == 0 &&
           h->tensors == NULL && h->metadata_json == NULL;
}

static pa_status parse_blob(const blob *b, pa_st_header *h, pa_error *e)
{
    pa_error_clear(e);
    memset(h, 0xA5, sizeof *h); /* the parser must not read what it is about to fill */
    return pa_st_parse(b->p, b->n, b->n, LABEL, h, e);
}

/* The parse fails with status, the message names the label and holds word, *out is zeroed. */
static void expect_fail_blob(int line, const blob *b, pa_status status, const char *word)
{
    pa_st_header h;
    pa_error e;
    pa_status st = parse_blob(b, &h, &e);
    CHECK_MSG(st == status, "line %d: status %s, want %s (%s)", line, pa_status_name(st),
              pa_status_name(status), e.msg);
    CHECK_MSG(e.status == status, "line %d: err.status %s", line, pa_status_name(e.status));
    CHECK_MSG(strstr(e.msg, LABEL) != NULL, "line %d: label missing in '%s'", line, e.msg);
    CHECK_MSG(strstr(e.msg, word) != NULL, "line %d: '%s' missing in '%s'", line, word, e.msg);
    CHECK_MSG(header_is_zero(&h), "line %d: header not zeroed after failure", line);
    pa_st_header_free(&h);
}

static void expect_fail_json(int line, const char *json, size_t data_len, pa_status status,
                             const char *word)
{
    blob b = blob_make(json, data_len);
    expect_fail_blob(line, &b, status, word);
    blob_free(&b);
}

#define FAIL_JSON(json, data_len, status, word)                                                    \
    expect_fail_json(__LINE__, json, data_len, status, word)
#define FAIL_BLOB(b, status, word) expect_fail_blob(__LINE__, b, status, word)

/* Parse json + data_len bytes; must succeed. */
static bool parse_ok(int line, const char *json, size_t data_len, pa_st_header *h)
{
    blob b = blob_make(json, data_len);
    pa_error e;
    pa_status st = parse_blob(&b, h, &e);
    CHECK_MSG(st == PA_OK, "line %d: parse failed: %s", line, e.msg);
    if (st == PA_OK) {
        CHECK_INT(h->header_len, strlen(json));
        CHECK_INT(h->data_offset, 8 + strlen(json));
        CHECK_INT(h->data_len, data_len);
    }
    blob_free(&b);
    return st == PA_OK;
}
#define PARSE_OK(json, data_len, h) parse_ok(__LINE__, json, data_len, h)

/* ---------------------------------------------------------------- valid headers */

static void test_each_dtype(void)
{
    static const struct {
        const char *name;
        pa_dtype dtype;
        size_t size;
        bool decodable;
    } cases[] = {
        {"F32", PA_DT_F32, 4, true},         {"F16", PA_DT_F16, 2, true},
        {"BF16", PA_DT_BF16, 2, true},       {"F64", PA_DT_F64, 8, true},
        {"I8", PA_DT_I8, 1, true},           {"U8", PA_DT_U8, 1, true},
        {"I16", PA_DT_I16, 2, true},         {"I32", PA_DT_I32, 4, true},
        {"F8_E4M3", PA_DT_F8_E4M3, 1, true}, {"F8_E5M2", PA_DT_F8_E5M2, 1, true},
        {"I64", PA_DT_I64, 8, false},        {"U16", PA_DT_U16, 2, false},
        {"U32", PA_DT_U32, 4, false},        {"U64", PA_DT_U64, 8, false},
        {"BOOL", PA_DT_BOOL, 1, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[256];
        size_t bytes = 6 * cases[i].size;
        snprintf(json, sizeof json,
                 "{\"model.w\":{\"dtype\":\"%s\",\"shape\":[2,3],\"data_offsets\":[0,%zu]}}",
                 cases[i].name, bytes);
        pa_st_header h;
        if (!PARSE_OK(json, bytes, &h))
            continue;
        CHECK_INT(h.n_tensors, 1);
        CHECK(h.metadata_json == NULL);
        const pa_tensor_desc *t = &h.tensors[0];
        CHECK_STR(t->name, "model.w");
        CHECK_INT(t->dtype, cases[i].dtype);
        CHECK_STR(pa_dtype_name(t->dtype), cases[i].name);
        CHECK_INT(pa_dtype_size(t->dtype), cases[i].size);
        CHECK_INT(pa_dtype_decodable(t->dtype), cases[i].decodable);
        CHECK_INT(t->ndim, 2);
        CHECK_INT(t->shape[0], 2);
        CHECK_INT(t->shape[1], 3);
        CHECK_INT(t->numel, 6);
        CHECK_INT(t->begin, 0);
        CHECK_INT(t->end, bytes);
        pa_st_header_free(&h);
        CHECK(header_is_zero(&h));
    }
}

static void test_metadata(void)
{
    pa_st_header h;
    if (PARSE_OK("{\"__metadata__\":{\"format\":\"pt\",\"note\":\"a \\\"q\\\" \\u00e9\"},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                 4, &h)) {
        CHECK_INT(h.n_tensors, 1);
        CHECK(h.metadata_json != NULL);
        if (h.metadata_json)
            CHECK_STR(h.metadata_json, "{\"format\":\"pt\",\"note\":\"a \\\"q\\\" \xc3\xa9\"}");
        pa_st_header_free(&h);
    }
    /* Lenient: any object, placed anywhere. */
    if (PARSE_OK("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                 "\"__metadata__\":{\"n\":1,\"o\":{\"x\":[1,true,null]}}}",
                 2, &h)) {
        CHECK_INT(h.n_tensors, 1);
        if (h.metadata_json)
            CHECK_STR(h.metadata_json, "{\"n\":1,\"o\":{\"x\":[1,true,null]}}");
        pa_st_header_free(&h);
    }
    /* Metadata only, no tensors. */
    if (PARSE_OK("{\"__metadata__\":{}}", 0, &h)) {
        CHECK_INT(h.n_tensors, 0);
        CHECK(h.tensors == NULL);
        if (h.metadata_json)
            CHECK_STR(h.metadata_json, "{}");
        pa_st_header_free(&h);
    }
    FAIL_JSON("{\"__metadata__\":\"x\"}", 0, PA_E_FORMAT, "__metadata__");
    FAIL_JSON("{\"__metadata__\":[]}", 0, PA_E_FORMAT, "__metadata__");
    FAIL_JSON("{\"__metadata__\":{},\"__metadata__\":{}}", 0, PA_E_FORMAT,
              "duplicate __metadata__");
}

static void test_scalar_empty_gaps(void)
{
    pa_st_header h;
    /* Zero-dim scalar: one element. */
    if (PARSE_OK("{\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]}}", 8, &h)) {
        CHECK_INT(h.tensors[0].ndim, 0);
        CHECK_INT(h.tensors[0].numel, 1);
        pa_st_header_free(&h);
    }
    /* Zero-size tensors, also at offsets inside another tensor and at the very end. */
    if (PARSE_OK("{\"big\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                 "\"e1\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[4,4]},"
                 "\"e2\":{\"dtype\":\"BF16\",\"shape\":[3,0],\"data_offsets\":[16,16]},"
                 "\"e3\":{\"dtype\":\"I8\",\"shape\":[0],\"data_offsets\":[0,0]}}",
                 16, &h)) {
        CHECK_INT(h.n_tensors, 4);
        /* sorted by begin, then end, then name */
        CHECK_STR(h.tensors[0].name, "e3");
        CHECK_STR(h.tensors[1].name, "big");
        CHECK_STR(h.tensors[2].name, "e1");
        CHECK_STR(h.tensors[3].name, "e2");
        CHECK_INT(h.tensors[2].numel, 0);
        CHECK_INT(h.tensors[2].ndim, 2);
        CHECK_INT(h.tensors[3].numel, 0);
        pa_st_header_free(&h);
    }
    /* Gaps between tensors and after the last one; entries given out of order. */
    if (PARSE_OK("{\"c\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[20,24]},"
                 "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,12]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                 40, &h)) {
        CHECK_INT(h.n_tensors, 3);
        CHECK_STR(h.tensors[0].name, "a");
        CHECK_STR(h.tensors[1].name, "b");
        CHECK_STR(h.tensors[2].name, "c");
        CHECK_INT(h.tensors[2].begin, 20);
        CHECK_INT(h.tensors[2].end, 24);
        pa_st_header_free(&h);
    }
    /* Empty header, space padding (as the reference writer pads), extra keys in an entry, 8 dims,
     * an empty name, and UTF-8 names. */
    if (PARSE_OK("{}", 0, &h)) {
        CHECK_INT(h.n_tensors, 0);
        pa_st_header_free(&h);
    }
    if (PARSE_OK("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":[{}]}}   "
                 "\n",
                 1, &h)) {
        CHECK_INT(h.n_tensors, 1);
        pa_st_header_free(&h);
    }
    if (PARSE_OK("{\"\":{\"dtype\":\"U8\",\"shape\":[1,2,1,2,1,2,1,1],\"data_offsets\":[0,8]},"
                 "\"\xe5\x90\x8d\xf0\x9f\x98\x80\":{\"dtype\":\"U8\",\"shape\":[1],"
                 "\"data_offsets\":[8,9]}}",
                 9, &h)) {
        CHECK_STR(h.tensors[0].name, "");
        CHECK_INT(h.tensors[0].ndim, 8);
        CHECK_INT(h.tensors[0].numel, 8);
        CHECK_STR(h.tensors[1].name, "\xe5\x90\x8d\xf0\x9f\x98\x80");
        pa_st_header_free(&h);
    }
    /* Integral floats are integers; the data section may be larger than the file's tensors. */
    if (PARSE_OK("{\"a\":{\"dtype\":\"U8\",\"shape\":[2.0],\"data_offsets\":[0,2e0]}}", 5, &h)) {
        CHECK_INT(h.tensors[0].shape[0], 2);
        pa_st_header_free(&h);
    }
    /* Largest exact offsets: 2^53 - 1 with a file that big (never read). */
    {
        const char *json = "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],"
                           "\"data_offsets\":[9007199254740990,9007199254740991]}}";
        blob b = blob_make(json, 0);
        pa_error e;
        pa_error_clear(&e);
        uint64_t file_size = 8 + strlen(json) + 9007199254740991ull;
        pa_status st = pa_st_parse(b.p, b.n, file_size, LABEL, &h, &e);
        CHECK_MSG(st == PA_OK, "%s", e.msg);
        if (st == PA_OK)
            CHECK_INT(h.data_len, 9007199254740991ull);
        pa_st_header_free(&h);
        blob_free(&b);
    }
}

/* ---------------------------------------------------------------- refusals */

static void test_prefix_errors(void)
{
    /* Shorter than the prefix, down to nothing at all. */
    blob b = blob_make("{}", 0);
    for (size_t n = 0; n < 8; n++) {
        pa_st_header h;
        pa_error e;
        pa_error_clear(&e);
        pa_status st = pa_st_parse(n ? b.p : NULL, n, n, LABEL, &h, &e);
        CHECK_INT(st, PA_E_FORMAT);
        CHECK(strstr(e.msg, LABEL) && strstr(e.msg, "shorter"));
        CHECK(header_is_zero(&h));
    }
    blob_free(&b);

    b = blob_raw(0, "", 0, 16);
    FAIL_BLOB(&b, PA_E_FORMAT, "header length is 0");
    blob_free(&b);

    b = blob_raw(100, "{}", 2, 10);
    FAIL_BLOB(&b, PA_E_FORMAT, "past end of file");
    blob_free(&b);
    b = blob_raw(3, "{}", 2, 0); /* one byte too many */
    FAIL_BLOB(&b, PA_E_FORMAT, "past end of file");
    blob_free(&b);

    b = blob_raw(1ull << 63, "{}", 2, 0);
    FAIL_BLOB(&b, PA_E_LIMIT, "over the limit");
    blob_free(&b);
    b = blob_raw(UINT64_MAX, "{}", 2, 0);
    FAIL_BLOB(&b, PA_E_LIMIT, "over the limit");
    blob_free(&b);
    b = blob_raw((uint64_t)PA_ST_MAX_HEADER + 1, "{}", 2, 0);
    FAIL_BLOB(&b, PA_E_LIMIT, "over the limit");
    blob_free(&b);

    /* The buffer must hold the header (file_size says the file is big enough). */
    b = blob_make("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1);
    for (size_t n = 0; n < b.n - 1; n += 5) {
        pa_st_header h;
        pa_error e;
        pa_error_clear(&e);
        pa_status st = pa_st_parse(b.p, n, b.n, LABEL, &h, &e);
        CHECK_INT(st, PA_E_ARG);
        CHECK(strstr(e.msg, LABEL) && strstr(e.msg, "buffer"));
        CHECK(header_is_zero(&h));
    }
    {
        /* The whole header but not the data is enough. */
        pa_st_header h;
        pa_error e;
        pa_error_clear(&e);
        CHECK_INT(pa_st_parse(b.p, b.n - 1, b.n, LABEL, &h, &e), PA_OK);
        pa_st_header_free(&h);
        /* NULL err and label do not crash. */
        CHECK_INT(pa_st_parse(b.p, 3, 3, NULL, &h, NULL), PA_E_FORMAT);
        CHECK_INT(pa_st_parse(b.p, b.n, b.n, LABEL, NULL, &e), PA_E_ARG);
    }
    blob_free(&b);
}

static void test_json_errors(void)
{
    FAIL_JSON("{\"a\":{\"dtype\":\"F32\"", 0, PA_E_FORMAT, "invalid JSON");
    FAIL_JSON("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, PA_E_FORMAT,
              "invalid JSON");
    FAIL_JSON("{", 0, PA_E_FORMAT, "invalid JSON");
    FAIL_JSON("nope", 0, PA_E_FORMAT, "invalid JSON");
    FAIL_JSON("[1,2]", 0, PA_E_FORMAT, "not a JSON object");
    FAIL_JSON("\"str\"", 0, PA_E_FORMAT, "not a JSON object");
    FAIL_JSON("5", 0, PA_E_FORMAT, "not a JSON object");
    FAIL_JSON(" {}", 0, PA_E_FORMAT, "not a JSON object");
    FAIL_JSON("{}x", 0, PA_E_FORMAT, "after");
    FAIL_JSON("{}  {}", 0, PA_E_FORMAT, "after");
    {
        blob b = blob_raw(3, "{}\0", 3, 0);
        FAIL_BLOB(&b, PA_E_FORMAT, "after");
        blob_free(&b);
    }
    /* Bytes cJSON lets through. */
    FAIL_JSON("{\x01}", 0, PA_E_FORMAT, "stray byte");
    FAIL_JSON("{\"a\xff\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, PA_E_FORMAT,
              "UTF-8");
    FAIL_JSON("{\"a\xc0\xaf\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
              PA_E_FORMAT, "UTF-8"); /* overlong '/' */
    FAIL_JSON("{\"a\xed\xa0\x80\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
              PA_E_FORMAT, "UTF-8"); /* surrogate */
    FAIL_JSON("{\"a\tb\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, PA_E_FORMAT,
              "control byte");
    FAIL_JSON("{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
              PA_E_FORMAT, "\\u0000");
    {
        /* A raw NUL inside the JSON. */
        static const char raw[] =
            "{\"a\0\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}";
        blob b = blob_raw(sizeof raw - 1, raw, sizeof raw - 1, 1);
        FAIL_BLOB(&b, PA_E_FORMAT, LABEL);
        blob_free(&b);
    }
    /* Deep nesting: cJSON's limit turns it into an error, not a stack overflow. */
    {
        text t = {0};
        text_add(&t, "{\"a\":");
        text_repeat(&t, '[', 100000);
        FAIL_JSON(t.p, 0, PA_E_FORMAT, "invalid JSON");
        text_repeat(&t, ']', 100000);
        text_add(&t, "}");
        FAIL_JSON(t.p, 0, PA_E_FORMAT, "invalid JSON");
        free(t.p);
    }
    {
        /* Nesting inside cJSON's limit: in metadata it is kept, in a shape it is refused. */
        text t = {0};
        text_add(&t, "{\"__metadata__\":{\"x\":");
        text_repeat(&t, '[', 900);
        text_repeat(&t, ']', 900);
        text_add(&t, "}}");
        pa_st_header h;
        if (PARSE_OK(t.p, 0, &h)) {
            CHECK(h.metadata_json && strlen(h.metadata_json) == 1800 + 6);
            pa_st_header_free(&h);
        }
        free(t.p);
        t = (text){0};
        text_add(&t, "{\"a\":{\"dtype\":\"U8\",\"shape\":");
        text_repeat(&t, '[', 900);
        text_repeat(&t, ']', 900);
        text_add(&t, ",\"data_offsets\":[0,0]}}");
        FAIL_JSON(t.p, 0, PA_E_FORMAT, "shape[0] is not a number");
        free(t.p);
    }
}

static void test_entry_errors(void)
{
    FAIL_JSON("{\"w\":5}", 0, PA_E_FORMAT, "'w': entry is not an object");
    FAIL_JSON("{\"w\":[]}", 0, PA_E_FORMAT, "'w': entry is not an object");
    FAIL_JSON("{\"w\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, PA_E_FORMAT,
              "'w': dtype missing");
    FAIL_JSON("{\"w\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,1]}}", 1, PA_E_FORMAT,
              "dtype missing or not a string");
    FAIL_JSON("{\"w\":{\"dtype\":null,\"shape\":[1],\"data_offsets\":[0,1]}}", 1, PA_E_FORMAT,
              "dtype");
    FAIL_JSON("{\"w\":{\"dtype\":\"F4\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
              PA_E_UNSUPPORTED, "unknown dtype 'F4' for tensor 'w'");
    FAIL_JSON("{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
              PA_E_UNSUPPORTED, "unknown dtype 'f32' for tensor 'w'");
    FAIL_JSON("{\"w\":{\"dtype\":\"\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, PA_E_UNSUPPORTED,
              "unknown dtype '' for tensor 'w'");

    /* shape */
    FAIL_JSON("{\"w\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1, PA_E_FORMAT,
              "'w': shape missing");
    FAIL_JSON("{\"w\":{\"dtype\":\"U8\",\"shape\":1,\"data_offsets\":[0,1]}}", 1, PA_E_FORMAT,
              "shape missing or not an array");
    FAIL_JSON("{\"w\":{\"dtype\":\"U8\",\"shape\":{},\"data_offsets\":[0,1]}}", 1, PA_E_FORMAT,
              "shape missing or not an array");
    FAIL_JSON("{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
              PA_E_LIMIT, "more than 8 dims");
    FAIL_JSON("{\"w\":{\"dtype\":\"U8\",\"shape\":[2,-1],\"data_offsets\":[0,1]}}", 1, PA_E_FORMAT,
              "shape[1] is negative");
    FAIL_JSON("{\"w\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,1]}}", 1, PA_E_FORMAT,
              "shape[0] is not an integer");
    FAIL_JSON("{\"w\":{\"dtype\":\"U8\",\"shape\":[\"1\"],\"data_offsets\":[0,1]}}", 1, PA_E_FORMAT,
              "shape[0] is not a number");
    FAIL_JSON("{\"w\":{\"dtype\":\"U8\",\"shape\":[null],\"data_offsets\":[0,1]}}", 1, PA_E_FORMAT,
              "shape[0] is not a number");
    FAIL_JSON("{\"w\":{\"dtype\":\"U8\",\"shape\":[9007199254740992],\"data_offsets\":[0,1]}}", 1,
              PA_E_FORMAT, "2^53");
    FAIL_JSON("{\"w\":{\"dtype\":\"U8\",\"shape\":[18446744073709551617],\"data_offsets\":[0,1]}}",
              1, PA_E_FORMAT, "2^53");
    FAIL_JSON("{\"w\":{\"dtype\":\"U8\",\"shape\":[1e400],\"data_offsets\":[0,1]}}", 1, PA_E_FORMAT,
              "shape[0]");
    FAIL_JSON("{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],"
              "\"data_offsets\":[0,1]}}",
              1, PA_E_FORMAT, "shape product overflows");
    {
        /* A zero dim makes the product 0 whatever follows: no overflow. */
        pa_st_header h;
        if (PARSE_OK("{\"w\":{\"dtype\":\"U8\",\"shape\":[0,4294967296,4294967296],"
                     "\"data_offsets\":[0,0]}}",
                     0, &h)) {
            CHECK_INT(h.tensors[0].numel, 0);
            pa_st_header_free(&h);
        }
    }
    FAIL_JSON("{\"w\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648],"
              "\"data_offsets\":[0,1]}}",
              1, PA_E_FORMAT, "byte size of shape overflows");

    /* data_offsets */
    FAIL_JSON("{\"w\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, PA_E_FORMAT, "'w': data_offsets");
    FAIL_JSON("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":1}}", 1, PA_E_FORMAT,
              "data_offsets missing or not an array of 2");
    FAIL_JSON("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[]}}", 1, PA_E_FORMAT,
              "data_offsets missing or not an array of 2");
    FAIL_JSON("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1, PA_E_FORMAT,
              "data_offsets missing or not an array of 2");
    FAIL_JSON("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 1, PA_E_FORMAT,
              "data_offsets missing or not an array of 2");
    FAIL_JSON("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":{\"a\":0,\"b\":1}}}", 1,
              PA_E_FORMAT, "data_offsets missing or not an array of 2");
    FAIL_JSON("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 1, PA_E_FORMAT,
              "data_offsets entry is negative");
    FAIL_JSON("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,0.5]}}", 1, PA_E_FORMAT,
              "data_offsets entry is not an integer");
    FAIL_JSON("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[\"0\",1]}}", 1, PA_E_FORMAT,
              "data_offsets entry is not a number");
    FAIL_JSON("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],"
              "\"data_offsets\":[9007199254740992,9007199254740993]}}",
              1, PA_E_FORMAT, "2^53");
    FAIL_JSON("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,1]}}", 4, PA_E_FORMAT,
              "begin 2 > end 1");
    FAIL_JSON("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 3, PA_E_FORMAT,
              "past the data section");
    FAIL_JSON("{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[5,5]}}", 4, PA_E_FORMAT,
              "past the data section");
    FAIL_JSON("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, PA_E_FORMAT,
              "span 4 bytes but F32 shape needs 8");
    FAIL_JSON("{\"w\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[0,4]}}", 8, PA_E_FORMAT,
              "span 4 bytes");
    FAIL_JSON("{\"w\":{\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[0,2]}}", 8, PA_E_FORMAT,
              "span 2 bytes");

    /* A later bad entry still fails the whole parse and frees the good ones. */
    FAIL_JSON("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
              "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]},"
              "\"c\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,9]}}",
              16, PA_E_FORMAT, "'c'");
    /* Long names are cut in the message, which stays one line. */
    {
        text t = {0};
        text_add(&t, "{\"");
        text_repeat(&t, 'n', 5000);
        text_add(&t, "\":{\"dtype\":\"Q9\",\"shape\":[1],\"data_offsets\":[0,1]}}");
        FAIL_JSON(t.p, 1, PA_E_UNSUPPORTED, "unknown dtype 'Q9' for tensor 'nnnn");
        free(t.p);
    }
}

static void test_overlap_and_duplicates(void)
{
    FAIL_JSON("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
              12, PA_E_FORMAT, "tensors 'a' [0, 8) and 'b' [4, 12) overlap");
    /* Contained in an earlier, longer tensor (not just the previous one). */
    FAIL_JSON("{\"big\":{\"dtype\":\"U8\",\"shape\":[16],\"data_offsets\":[0,16]},"
              "\"x\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
              "\"y\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,12]}}",
              16, PA_E_FORMAT, "overlap");
    FAIL_JSON("{\"a\":{\"dtype\":\"U8\",\"shape\":[16],\"data_offsets\":[0,16]},"
              "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]},"
              "\"c\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[9,10]}}",
              16, PA_E_FORMAT, "'a' [0, 16) and 'b' [2, 3) overlap");
    FAIL_JSON("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]},"
              "\"b\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
              8, PA_E_FORMAT, "overlap");
    /* Adjacent is fine. */
    pa_st_header h;
    if (PARSE_OK("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                 "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
                 8, &h))
        pa_st_header_free(&h);

    FAIL_JSON("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
              "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
              2, PA_E_FORMAT, "duplicate tensor name 'a'");
    FAIL_JSON("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]},"
              "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
              "\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}",
              2, PA_E_FORMAT, "duplicate tensor name 'a'");
}

static void test_many_tensors(void)
{
    enum { N = 100000 };
    text t = {0};
    text_add(&t, "{");
    /* Written in reverse offset order so the output really is sorted by the parser. */
    for (int i = 0; i < N; i++)
        text_add(&t, "%s\"layer.%d.w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[%d,%d]}",
                 i ? "," : "", i, N - 1 - i, N - i);
    text_add(&t, "}");
    pa_st_header h;
    bool ok = PARSE_OK(t.p, N, &h);
    if (ok) {
        CHECK_INT(h.n_tensors, N);
        bool sorted = true;
        for (size_t i = 0; i < h.n_tensors; i++)
            if (h.tensors[i].begin != i || h.tensors[i].end != i + 1)
                sorted = false;
        CHECK(sorted);
        CHECK_STR(h.tensors[0].name, "layer.99999.w");
        pa_st_header_free(&h);
    }
    /* The same with one duplicate name at the very end. */
    t.n--; /* drop '}' */
    text_add(&t, ",\"layer.5.w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}");
    FAIL_JSON(t.p, N, PA_E_FORMAT, "duplicate tensor name 'layer.5.w'");
    free(t.p);
}

static void test_too_many_tensors(void)
{
    text t = {0};
    text_add(&t, "{\"__metadata__\":{}");
    for (unsigned i = 0; i <= PA_ST_MAX_TENSORS; i++)
        text_add(&t, ",\"%x\":0", i);
    text_add(&t, "}");
    FAIL_JSON(t.p, 0, PA_E_LIMIT, "1000001 tensors is over the limit");
    free(t.p);
}

/* ---------------------------------------------------------------- files */

static char tmpdir[256];

static int write_file(const char *name, const blob *b, char *path, size_t path_size)
{
    snprintf(path, path_size, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = b->n ? fwrite(b->p, 1, b->n, f) : 0;
    int rc = fclose(f);
    return (w == b->n && rc == 0) ? 0 : -1;
}

static pa_status read_path(const char *path, const char *label, pa_st_header *h, pa_error *e)
{
    pa_error_clear(e);
    memset(h, 0xA5, sizeof *h);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        CHECK_MSG(fd >= 0, "open %s: %s", path, strerror(errno));
        memset(h, 0, sizeof *h);
        return PA_E_IO;
    }
    pa_status st = pa_st_read(fd, label, h, e);
    close(fd);
    return st;
}

static void expect_read_fail(int line, const char *name, const blob *b, pa_status status,
                             const char *word)
{
    char path[512];
    CHECK_MSG(write_file(name, b, path, sizeof path) == 0, "line %d: cannot write %s", line, name);
    pa_st_header h;
    pa_error e;
    pa_status st = read_path(path, name, &h, &e);
    CHECK_MSG(st == status, "line %d: status %s, want %s (%s)", line, pa_status_name(st),
              pa_status_name(status), e.msg);
    CHECK_MSG(strstr(e.msg, name) != NULL, "line %d: label missing in '%s'", line, e.msg);
    CHECK_MSG(strstr(e.msg, word) != NULL, "line %d: '%s' missing in '%s'", line, word, e.msg);
    CHECK_MSG(header_is_zero(&h), "line %d: header not zeroed", line);
    pa_st_header_free(&h);
    unlink(path);
}
#define READ_FAIL(name, b, status, word) expect_read_fail(__LINE__, name, b, status, word)

static void test_files(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/provfs-st-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        CHECK_MSG(0, "mkdtemp: %s", strerror(errno));
        return;
    }
    char path[512];

    /* A real file: header, gap, tensors, metadata. */
    const char *json = "{\"__metadata__\":{\"format\":\"pt\"},"
                       "\"emb\":{\"dtype\":\"BF16\",\"shape\":[4,2],\"data_offsets\":[16,32]},"
                       "\"norm\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}  ";
    blob b = blob_make(json, 40);
    CHECK(write_file("model.safetensors", &b, path, sizeof path) == 0);
    pa_st_header h;
    pa_error e;
    pa_status st = read_path(path, "model.safetensors", &h, &e);
    CHECK_MSG(st == PA_OK, "%s", e.msg);
    if (st == PA_OK) {
        CHECK_INT(h.header_len, strlen(json));
        CHECK_INT(h.data_offset, 8 + strlen(json));
        CHECK_INT(h.data_len, 40);
        CHECK_INT(h.n_tensors, 2);
        CHECK_STR(h.tensors[0].name, "norm");
        CHECK_STR(h.tensors[1].name, "emb");
        CHECK_INT(h.tensors[1].dtype, PA_DT_BF16);
        CHECK_INT(h.tensors[1].numel, 8);
        CHECK(h.metadata_json && strcmp(h.metadata_json, "{\"format\":\"pt\"}") == 0);
        pa_st_header_free(&h);
        CHECK(header_is_zero(&h));
    }
    /* Sniffing the same bytes. */
    CHECK(pa_st_sniff(b.p, b.n));
    CHECK(pa_st_sniff(b.p, 9));
    CHECK(!pa_st_sniff(b.p, 8));
    CHECK(!pa_st_sniff(NULL, 0));
    unlink(path);
    blob_free(&b);

    /* Header but no data section at all. */
    b = blob_make("{\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0);
    CHECK(write_file("nodata.safetensors", &b, path, sizeof path) == 0);
    st = read_path(path, "nodata.safetensors", &h, &e);
    CHECK_MSG(st == PA_OK, "%s", e.msg);
    CHECK_INT(h.data_len, 0);
    pa_st_header_free(&h);
    unlink(path);
    blob_free(&b);

    b = blob_raw(1ull << 63, "{}", 2, 0);
    READ_FAIL("huge.safetensors", &b, PA_E_LIMIT, "over the limit");
    blob_free(&b);
    b = blob_raw(1000, "{\"a\":1}", 7, 16);
    READ_FAIL("pastend.safetensors", &b, PA_E_FORMAT, "past end of file");
    blob_free(&b);
    b = blob_raw(0, "", 0, 100);
    READ_FAIL("zero.safetensors", &b, PA_E_FORMAT, "header length is 0");
    blob_free(&b);
    b = (blob){(uint8_t *)"\x02\0\0\0", 4};
    READ_FAIL("short.safetensors", &b, PA_E_FORMAT, "shorter");
    b = (blob){NULL, 0};
    READ_FAIL("empty.safetensors", &b, PA_E_FORMAT, "shorter");
    b = blob_make("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_off", 0);
    READ_FAIL("trunc.safetensors", &b, PA_E_FORMAT, "invalid JSON");
    blob_free(&b);
    b = blob_make("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 15);
    READ_FAIL("shortdata.safetensors", &b, PA_E_FORMAT, "past the data section");
    blob_free(&b);
    b = blob_make("{\"a\":{\"dtype\":\"X1\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4);
    READ_FAIL("dtype.safetensors", &b, PA_E_UNSUPPORTED, "unknown dtype 'X1' for tensor 'a'");
    blob_free(&b);

    /* Not a regular file, and not a file descriptor at all. */
    int dfd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(dfd >= 0);
    if (dfd >= 0) {
        pa_error_clear(&e);
        CHECK_INT(pa_st_read(dfd, "dir", &h, &e), PA_E_FORMAT);
        CHECK(strstr(e.msg, "dir") && strstr(e.msg, "regular"));
        CHECK(header_is_zero(&h));
        close(dfd);
    }
    pa_error_clear(&e);
    CHECK_INT(pa_st_read(-1, "badfd", &h, &e), PA_E_IO);
    CHECK(strstr(e.msg, "badfd") != NULL);
    CHECK(header_is_zero(&h));

    CHECK(rmdir(tmpdir) == 0);
}

static void test_free_and_sniff(void)
{
    pa_st_header h;
    memset(&h, 0, sizeof h);
    pa_st_header_free(&h);
    pa_st_header_free(&h);
    pa_st_header_free(NULL);
    CHECK(header_is_zero(&h));

    blob b = blob_raw(2, "{}", 2, 0);
    CHECK(pa_st_sniff(b.p, b.n));
    blob_free(&b);
    b = blob_raw(1ull << 63, "{}", 2, 0); /* looks like safetensors; the parser refuses it */
    CHECK(pa_st_sniff(b.p, b.n));
    blob_free(&b);
    b = blob_raw(2, "[]", 2, 0);
    CHECK(!pa_st_sniff(b.p, b.n));
    blob_free(&b);
    b = blob_raw(0, "{", 1, 0);
    CHECK(!pa_st_sniff(b.p, b.n));
    blob_free(&b);
    CHECK(!pa_st_sniff((const uint8_t *)"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9", 9)); /* pickle */
    CHECK(!pa_st_sniff((const uint8_t *)"GGUF\x03\0\0\0\0", 9));
}

int main(void)
{
    test_each_dtype();
    test_metadata();
    test_scalar_empty_gaps();
    test_prefix_errors();
    test_json_errors();
    test_entry_errors();
    test_overlap_and_duplicates();
    test_many_tensors();
    test_too_many_tensors();
    test_files();
    test_free_and_sniff();
    return check_report("safetensors");
}
