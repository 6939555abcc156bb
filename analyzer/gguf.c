/* GGUF header parsing and metadata look-ups (the mapping onto Hugging Face names is gguf_map.c).
 *
 * Hostile GGUF files have crashed ggml, llama.cpp and ollama through counts and lengths taken on
 * trust. Here every length is checked against the bytes left in the file before it is used, every
 * count is bounded by what the remaining bytes could hold before anything is allocated for it, and
 * all sizes are computed with overflow checks.
 */
#include "gguf.h"
#include "jsonutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NAME_SHOWN "120" /* bytes of a name quoted in a message */

/* GGUF metadata value types. */
enum {
    KV_U8 = 0,
    KV_I8,
    KV_U16,
    KV_I16,
    KV_U32,
    KV_I32,
    KV_F32,
    KV_BOOL,
    KV_STRING,
    KV_ARRAY,
    KV_U64,
    KV_I64,
    KV_F64,
    KV_TYPE_COUNT
};
static const char *const kv_type_names[KV_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
/* Smallest encoding of one value of each type (a string is at least its 8-byte length). */
static const uint8_t kv_min_size[KV_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 8, 12, 8, 8, 8};

/* key: 8-byte length + 1 byte, 4-byte type, 1-byte value */
#define KV_MIN_BYTES 14u
/* name: 8 + 1, n_dims 4, one dim 8, type 4, offset 8 */
#define TENSOR_MIN_BYTES 33u

/* ---------------------------------------------------------------- reading primitives */

typedef struct reader {
    const uint8_t *buf;
    size_t len;         /* bytes in buf */
    uint64_t file_size; /* >= len */
    size_t pos;
    const char *label;
    pa_error *err;
    bool short_buffer;  /* the header continues past buf: retry with more */
    size_t array_elems; /* array elements read so far (PA_GGUF_MAX_ARRAY_ELEMS) */
    char *scratch;      /* NUL-terminated copies of strings */
    size_t scratch_cap;
} reader;

/* n bytes available at pos? FORMAT past the end of the file, LIMIT past the end of the buffer. */
static pa_status need(reader *r, uint64_t n, const char *what)
{
    if (n > r->file_size - r->pos)
        return pa_error_set(r->err, PA_E_FORMAT,
                            "%s: %s at byte %zu runs past the end of the file (%llu bytes)",
                            r->label, what, r->pos, (unsigned long long)r->file_size);
    if (n > r->len - r->pos) {
        r->short_buffer = true;
        return pa_error_set(r->err, PA_E_LIMIT, "%s: header larger than the buffer (%zu bytes)",
                            r->label, r->len);
    }
    return PA_OK;
}

static uint64_t le_at(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static pa_status get_uint(reader *r, int n, const char *what, uint64_t *out)
{
    pa_status st = need(r, (uint64_t)n, what);
    if (st != PA_OK)
        return st;
    *out = le_at(r->buf + r->pos, n);
    r->pos += (size_t)n;
    return PA_OK;
}

static pa_status get_u32(reader *r, const char *what, uint32_t *out)
{
    uint64_t v = 0;
    pa_status st = get_uint(r, 4, what, &v);
    *out = (uint32_t)v;
    return st;
}

/* A GGUF string: u64 length, then bytes. *s points into the buffer (not NUL terminated). */
static pa_status get_string(reader *r, uint64_t limit, const char *what, const char **s,
                            size_t *slen)
{
    uint64_t n;
    pa_status st = get_uint(r, 8, what, &n);
    if (st != PA_OK)
        return st;
    if (n > r->file_size - r->pos)
        return pa_error_set(r->err, PA_E_FORMAT,
                            "%s: %s of %llu bytes at byte %zu runs past the end of the file",
                            r->label, what, (unsigned long long)n, r->pos);
    if (n > limit)
        return pa_error_set(r->err, PA_E_LIMIT, "%s: %s of %llu bytes is over the %llu-byte limit",
                            r->label, what, (unsigned long long)n, (unsigned long long)limit);
    st = need(r, n, what);
    if (st != PA_OK)
        return st;
    *s = (const char *)r->buf + r->pos;
    *slen = (size_t)n;
    r->pos += (size_t)n;
    return PA_OK;
}

/* Length of the strict UTF-8 sequence at s (no overlongs, surrogates or code points past
 * U+10FFFF), or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t n;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    if (avail < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

/* Names and keys must be clean: UTF-8 without NUL (a NUL would cut the C string, so two distinct
 * names could collapse into one). */
static bool clean_name(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = p[i] ? utf8_seq(p + i, len - i) : 0;
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

/* NUL-terminated copy of a string value in the scratch buffer, with NUL bytes and bytes that are
 * not UTF-8 replaced by U+FFFD (3 bytes out per byte in at most), so that every value is a clean
 * C string and prints as valid JSON. NULL when out of memory. */
static const char *scratch_copy(reader *r, const char *s, size_t len)
{
    size_t need_cap = 3 * len + 1; /* len <= PA_GGUF_MAX_STRING: no overflow */
    if (need_cap > r->scratch_cap) {
        char *p = realloc(r->scratch, need_cap);
        if (!p)
            return NULL;
        r->scratch = p;
        r->scratch_cap = need_cap;
    }
    const unsigned char *in = (const unsigned char *)s;
    char *out = r->scratch;
    for (size_t i = 0; i < len;) {
        size_t n = in[i] ? utf8_seq(in + i, len - i) : 0;
        if (n == 0) {
            memcpy(out, "\xEF\xBF\xBD", 3);
            out += 3;
            i++;
            continue;
        }
        memcpy(out, in + i, n);
        out += n;
        i += n;
    }
    *out = '\0';
    return r->scratch;
}

/* ---------------------------------------------------------------- key/value pairs */

/* float32 metadata (rope.freq_base, layer_norm_rms_epsilon) as the decimal a person would have
 * written: the shortest that reads back to the same float, so 1e-05f becomes 1e-05. */
static double f32_decimal(float f)
{
    if (!isfinite(f))
        return (double)f;
    char buf[32];
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)f);
        if (strtof(buf, NULL) == f)
            return strtod(buf, NULL);
    }
    return (double)f;
}

static pa_status read_scalar(reader *r, uint32_t type, bool in_array, const char *key, cJSON **out)
{
    uint64_t v;
    pa_status st;
    *out = NULL;
    switch (type) {
    case KV_STRING: {
        const char *s;
        size_t slen;
        st = get_string(r, PA_GGUF_MAX_STRING, "string value", &s, &slen);
        if (st != PA_OK)
            return st;
        const char *copy = scratch_copy(r, s, slen);
        if (copy)
            *out = cJSON_CreateString(copy);
        break;
    }
    case KV_BOOL:
        st = get_uint(r, 1, "bool value", &v);
        if (st != PA_OK)
            return st;
        if (v > 1)
            return pa_error_set(r->err, PA_E_FORMAT,
                                "%s: key '%." NAME_SHOWN "s': bool value %llu is neither 0 nor 1",
                                r->label, key, (unsigned long long)v);
        *out = cJSON_CreateBool(v == 1);
        break;
    case KV_F32: {
        st = get_uint(r, 4, "f32 value", &v);
        if (st != PA_OK)
            return st;
        uint32_t bits = (uint32_t)v;
        float f;
        memcpy(&f, &bits, 4);
        /* arrays (token scores) stay exact and fast; scalars read as written */
        *out = cJSON_CreateNumber(in_array ? (double)f : f32_decimal(f));
        break;
    }
    case KV_F64: {
        st = get_uint(r, 8, "f64 value", &v);
        if (st != PA_OK)
            return st;
        double d;
        memcpy(&d, &v, 8);
        *out = cJSON_CreateNumber(d);
        break;
    }
    case KV_U8:
    case KV_I8:
    case KV_U16:
    case KV_I16:
    case KV_U32:
    case KV_I32:
    case KV_U64:
    case KV_I64: {
        int n = kv_min_size[type];
        st = get_uint(r, n, "integer value", &v);
        if (st != PA_OK)
            return st;
        double d;
        if (type == KV_I8 || type == KV_I16 || type == KV_I32 || type == KV_I64) {
            int shift = 64 - 8 * n; /* sign-extend */
            int64_t sv = (int64_t)(v << shift) >> shift;
            d = (double)sv;
        } else {
            d = (double)v;
        }
        *out = cJSON_CreateNumber(d);
        break;
    }
    default:
        return pa_error_set(r->err, PA_E_FORMAT,
                            "%s: key '%." NAME_SHOWN "s': unknown value type %u", r->label, key,
                            type);
    }
    if (!*out)
        return pa_error_set(r->err, PA_E_NOMEM, "%s: out of memory", r->label);
    return PA_OK;
}

static pa_status read_value(reader *r, uint32_t type, const char *key, cJSON **out)
{
    *out = NULL;
    if (type != KV_ARRAY)
        return read_scalar(r, type, false, key, out);
    uint32_t elem_type;
    uint64_t count;
    pa_status st = get_u32(r, "array type", &elem_type);
    if (st == PA_OK)
        st = get_uint(r, 8, "array length", &count);
    if (st != PA_OK)
        return st;
    if (elem_type == KV_ARRAY)
        return pa_error_set(r->err, PA_E_FORMAT,
                            "%s: key '%." NAME_SHOWN "s': arrays of arrays are not supported",
                            r->label, key);
    if (elem_type >= KV_TYPE_COUNT)
        return pa_error_set(r->err, PA_E_FORMAT,
                            "%s: key '%." NAME_SHOWN "s': unknown array element type %u", r->label,
                            key, elem_type);
    uint64_t min = kv_min_size[elem_type];
    if (count > (r->file_size - r->pos) / min)
        return pa_error_set(r->err, PA_E_FORMAT,
                            "%s: key '%." NAME_SHOWN
                            "s': array of %llu %s values cannot fit in the rest of the file",
                            r->label, key, (unsigned long long)count, kv_type_names[elem_type]);
    if (count > PA_GGUF_MAX_ARRAY_ELEMS - r->array_elems)
        return pa_error_set(r->err, PA_E_LIMIT,
                            "%s: key '%." NAME_SHOWN
                            "s': array of %llu values takes the metadata past %u array elements",
                            r->label, key, (unsigned long long)count, PA_GGUF_MAX_ARRAY_ELEMS);
    st = need(r, count * min, "array");
    if (st != PA_OK)
        return st;
    r->array_elems += (size_t)count;
    cJSON *arr = cJSON_CreateArray();
    if (!arr)
        return pa_error_set(r->err, PA_E_NOMEM, "%s: out of memory", r->label);
    for (uint64_t i = 0; i < count; i++) {
        cJSON *item;
        st = read_scalar(r, elem_type, true, key, &item);
        if (st != PA_OK) {
            cJSON_Delete(arr);
            return st;
        }
        cJSON_AddItemToArray(arr, item); /* O(1): cJSON keeps the tail in child->prev */
    }
    *out = arr;
    return PA_OK;
}

static int cmp_str_ptr(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* cJSON keeps every member of an object, so a repeated key must be found here. */
static pa_status check_duplicate_keys(reader *r, const cJSON *kv, size_t n)
{
    if (n < 2)
        return PA_OK;
    const char **keys = malloc(n * sizeof *keys); /* n <= PA_GGUF_MAX_KV */
    if (!keys)
        return pa_error_set(r->err, PA_E_NOMEM, "%s: out of memory", r->label);
    size_t i = 0;
    for (const cJSON *e = kv->child; e && i < n; e = e->next)
        keys[i++] = e->string;
    qsort(keys, i, sizeof *keys, cmp_str_ptr);
    pa_status st = PA_OK;
    for (size_t j = 1; j < i; j++)
        if (strcmp(keys[j - 1], keys[j]) == 0) {
            st = pa_error_set(r->err, PA_E_FORMAT, "%s: duplicate key '%." NAME_SHOWN "s'",
                              r->label, keys[j]);
            break;
        }
    free(keys);
    return st;
}

static pa_status read_kvs(reader *r, uint64_t n_kv, pa_gguf *out)
{
    out->kv = cJSON_CreateObject();
    if (!out->kv)
        return pa_error_set(r->err, PA_E_NOMEM, "%s: out of memory", r->label);
    for (uint64_t i = 0; i < n_kv; i++) {
        const char *key;
        size_t key_len;
        uint32_t type;
        pa_status st = get_string(r, PA_GGUF_MAX_KEY, "key", &key, &key_len);
        if (st != PA_OK)
            return st;
        if (key_len == 0)
            return pa_error_set(r->err, PA_E_FORMAT, "%s: key/value pair %llu has an empty key",
                                r->label, (unsigned long long)i);
        if (!clean_name(key, key_len))
            return pa_error_set(r->err, PA_E_FORMAT,
                                "%s: key of pair %llu is not UTF-8 or holds a NUL byte", r->label,
                                (unsigned long long)i);
        char *key_copy = malloc(key_len + 1);
        if (!key_copy)
            return pa_error_set(r->err, PA_E_NOMEM, "%s: out of memory", r->label);
        memcpy(key_copy, key, key_len);
        key_copy[key_len] = '\0';
        cJSON *value = NULL;
        st = get_u32(r, "value type", &type);
        if (st == PA_OK)
            st = read_value(r, type, key_copy, &value);
        if (st == PA_OK && !cJSON_AddItemToObject(out->kv, key_copy, value)) {
            cJSON_Delete(value);
            st = pa_error_set(r->err, PA_E_NOMEM, "%s: out of memory", r->label);
        }
        free(key_copy);
        if (st != PA_OK)
            return st;
    }
    return check_duplicate_keys(r, out->kv, (size_t)n_kv);
}

/* general.alignment: any integer type, a power of two up to PA_GGUF_MAX_ALIGNMENT. */
static pa_status read_alignment(reader *r, pa_gguf *out)
{
    out->alignment = PA_GGUF_DEFAULT_ALIGNMENT;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(out->kv, "general.alignment");
    if (!a)
        return PA_OK;
    double d = cJSON_IsNumber(a) ? a->valuedouble : -1.0;
    if (!(d >= 1.0 && d <= (double)PA_GGUF_MAX_ALIGNMENT) || d != floor(d))
        return pa_error_set(r->err, PA_E_FORMAT,
                            "%s: general.alignment is not an integer between 1 and %u", r->label,
                            PA_GGUF_MAX_ALIGNMENT);
    uint64_t v = (uint64_t)d;
    if (v & (v - 1))
        return pa_error_set(r->err, PA_E_FORMAT, "%s: general.alignment %llu is not a power of two",
                            r->label, (unsigned long long)v);
    out->alignment = v;
    return PA_OK;
}

/* ---------------------------------------------------------------- tensor infos */

static pa_status read_tensor(reader *r, size_t index, pa_gguf_tensor *t)
{
    const char *name;
    size_t name_len;
    pa_status st = get_string(r, PA_GGUF_MAX_KEY, "tensor name", &name, &name_len);
    if (st != PA_OK)
        return st;
    if (name_len == 0)
        return pa_error_set(r->err, PA_E_FORMAT, "%s: tensor %zu has an empty name", r->label,
                            index);
    if (!clean_name(name, name_len))
        return pa_error_set(r->err, PA_E_FORMAT,
                            "%s: name of tensor %zu is not UTF-8 or holds a NUL byte", r->label,
                            index);
    t->name = malloc(name_len + 1);
    if (!t->name)
        return pa_error_set(r->err, PA_E_NOMEM, "%s: out of memory", r->label);
    memcpy(t->name, name, name_len);
    t->name[name_len] = '\0';

    st = get_u32(r, "tensor n_dims", &t->ndim);
    if (st != PA_OK)
        return st;
    if (t->ndim == 0 || t->ndim > PA_GGUF_MAX_DIMS)
        return pa_error_set(r->err, PA_E_FORMAT,
                            "%s: tensor '%." NAME_SHOWN "s' has %u dimensions (1 to %d allowed)",
                            r->label, t->name, t->ndim, PA_GGUF_MAX_DIMS);
    uint64_t numel = 1;
    for (uint32_t d = 0; d < PA_GGUF_MAX_DIMS; d++)
        t->ne[d] = 1;
    for (uint32_t d = 0; d < t->ndim; d++) {
        st = get_uint(r, 8, "tensor dimension", &t->ne[d]);
        if (st != PA_OK)
            return st;
        if (t->ne[d] == 0)
            return pa_error_set(r->err, PA_E_FORMAT,
                                "%s: tensor '%." NAME_SHOWN "s': dimension %u is 0", r->label,
                                t->name, d);
        if (numel > (uint64_t)INT64_MAX / t->ne[d])
            return pa_error_set(r->err, PA_E_FORMAT,
                                "%s: tensor '%." NAME_SHOWN "s': element count overflows", r->label,
                                t->name);
        numel *= t->ne[d];
    }
    t->numel = numel;
    st = get_u32(r, "tensor type", &t->type);
    if (st != PA_OK)
        return st;
    if (!pa_gguf_type_known(t->type))
        return pa_error_set(r->err, PA_E_FORMAT,
                            "%s: unknown tensor type %u for '%." NAME_SHOWN "s'", r->label, t->type,
                            t->name);
    size_t block = pa_gguf_block_elems(t->type);
    if (t->ne[0] % block != 0)
        return pa_error_set(r->err, PA_E_FORMAT,
                            "%s: tensor '%." NAME_SHOWN
                            "s': row length %llu is not a multiple of the %s block size %zu",
                            r->label, t->name, (unsigned long long)t->ne[0],
                            pa_gguf_type_name(t->type), block);
    if (!pa_gguf_nbytes(t->type, numel, &t->nbytes))
        return pa_error_set(r->err, PA_E_FORMAT,
                            "%s: tensor '%." NAME_SHOWN "s': byte size overflows", r->label,
                            t->name);
    return get_uint(r, 8, "tensor offset", &t->offset); /* relative until place_tensors */
}

static int cmp_tensor_name(const void *x, const void *y)
{
    return strcmp(((const pa_gguf_tensor *)x)->name, ((const pa_gguf_tensor *)y)->name);
}

static int cmp_tensor_offset(const void *x, const void *y)
{
    const pa_gguf_tensor *a = x, *b = y;
    if (a->offset != b->offset)
        return a->offset < b->offset ? -1 : 1;
    return strcmp(a->name, b->name); /* names are unique by now: a total order */
}

/* Offsets: aligned, inside the file, absolute; then no duplicate names and no overlaps. */
static pa_status place_tensors(reader *r, pa_gguf *g)
{
    uint64_t data_len = 0;
    if (g->n_tensors > 0) {
        if (g->data_offset > r->file_size)
            return pa_error_set(r->err, PA_E_FORMAT,
                                "%s: data section at byte %llu starts past the end of the file "
                                "(%llu bytes)",
                                r->label, (unsigned long long)g->data_offset,
                                (unsigned long long)r->file_size);
        data_len = r->file_size - g->data_offset;
    }
    for (size_t i = 0; i < g->n_tensors; i++) {
        pa_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment != 0)
            return pa_error_set(r->err, PA_E_FORMAT,
                                "%s: tensor '%." NAME_SHOWN
                                "s': data offset %llu is not a multiple of the alignment %llu",
                                r->label, t->name, (unsigned long long)t->offset,
                                (unsigned long long)g->alignment);
        if (t->offset > data_len || t->nbytes > data_len - t->offset)
            return pa_error_set(r->err, PA_E_FORMAT,
                                "%s: tensor '%." NAME_SHOWN
                                "s': data [%llu, +%llu) runs past the end of the data section "
                                "(%llu bytes)",
                                r->label, t->name, (unsigned long long)t->offset,
                                (unsigned long long)t->nbytes, (unsigned long long)data_len);
        t->offset += g->data_offset;
    }
    if (g->n_tensors < 2)
        return PA_OK;
    qsort(g->tensors, g->n_tensors, sizeof *g->tensors, cmp_tensor_name);
    for (size_t i = 1; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i - 1].name, g->tensors[i].name) == 0)
            return pa_error_set(r->err, PA_E_FORMAT,
                                "%s: duplicate tensor name '%." NAME_SHOWN "s'", r->label,
                                g->tensors[i].name);
    qsort(g->tensors, g->n_tensors, sizeof *g->tensors, cmp_tensor_offset);
    for (size_t i = 1; i < g->n_tensors; i++) {
        const pa_gguf_tensor *a = &g->tensors[i - 1], *b = &g->tensors[i];
        if (b->offset < a->offset + a->nbytes) /* sorted and disjoint so far: a ends furthest */
            return pa_error_set(r->err, PA_E_FORMAT,
                                "%s: tensors '%." NAME_SHOWN "s' and '%." NAME_SHOWN
                                "s' overlap at byte %llu",
                                r->label, a->name, b->name, (unsigned long long)b->offset);
    }
    return PA_OK;
}

/* ---------------------------------------------------------------- parse / read / free */

static pa_status parse_header(reader *r, pa_gguf *out)
{
    uint64_t magic, version, n_tensors, n_kv;
    pa_status st = get_uint(r, 4, "magic", &magic);
    if (st != PA_OK)
        return st;
    if (memcmp(r->buf, "GGUF", 4) != 0)
        return pa_error_set(r->err, PA_E_FORMAT, "%s: bad magic (not a GGUF file)", r->label);
    st = get_uint(r, 4, "version", &version);
    if (st != PA_OK)
        return st;
    if (version == 0x02000000u || version == 0x03000000u)
        return pa_error_set(r->err, PA_E_FORMAT, "%s: big-endian GGUF is not supported", r->label);
    if (version != 2 && version != 3)
        return pa_error_set(r->err, PA_E_FORMAT, "%s: unsupported GGUF version %llu (only 2 and 3)",
                            r->label, (unsigned long long)version);
    out->version = (uint32_t)version;
    st = get_uint(r, 8, "tensor count", &n_tensors);
    if (st == PA_OK)
        st = get_uint(r, 8, "key/value count", &n_kv);
    if (st != PA_OK)
        return st;

    /* Counts against what the rest of the file could hold, before anything is allocated. */
    uint64_t rest = r->file_size - r->pos;
    if (n_kv > rest / KV_MIN_BYTES || n_tensors > (rest - n_kv * KV_MIN_BYTES) / TENSOR_MIN_BYTES)
        return pa_error_set(r->err, PA_E_FORMAT,
                            "%s: %llu key/value pairs and %llu tensors cannot fit in the %llu "
                            "bytes after the counts",
                            r->label, (unsigned long long)n_kv, (unsigned long long)n_tensors,
                            (unsigned long long)rest);
    if (n_kv > PA_GGUF_MAX_KV)
        return pa_error_set(r->err, PA_E_LIMIT, "%s: %llu key/value pairs is over the limit of %u",
                            r->label, (unsigned long long)n_kv, PA_GGUF_MAX_KV);
    if (n_tensors > PA_GGUF_MAX_TENSORS)
        return pa_error_set(r->err, PA_E_LIMIT, "%s: %llu tensors is over the limit of %u",
                            r->label, (unsigned long long)n_tensors, PA_GGUF_MAX_TENSORS);

    st = read_kvs(r, n_kv, out);
    if (st == PA_OK)
        st = read_alignment(r, out);
    if (st != PA_OK)
        return st;

    if (n_tensors) {
        st = need(r, n_tensors * TENSOR_MIN_BYTES, "tensor table");
        if (st != PA_OK)
            return st;
        out->tensors = calloc((size_t)n_tensors, sizeof *out->tensors);
        if (!out->tensors)
            return pa_error_set(r->err, PA_E_NOMEM, "%s: out of memory", r->label);
        out->n_tensors = (size_t)n_tensors; /* names stay NULL until read: free copes */
    }
    for (size_t i = 0; i < out->n_tensors; i++) {
        st = read_tensor(r, i, &out->tensors[i]);
        if (st != PA_OK)
            return st;
    }
    out->header_len = r->pos;
    /* pos <= SIZE_MAX and alignment <= 2^30: no overflow */
    out->data_offset = ((uint64_t)r->pos + out->alignment - 1) / out->alignment * out->alignment;
    return place_tensors(r, out);
}

static pa_status parse_impl(const uint8_t *buf, size_t len, uint64_t file_size, const char *label,
                            pa_gguf *out, pa_error *err, bool *short_buffer)
{
    *short_buffer = false;
    if (!label)
        label = "gguf";
    if (!out)
        return pa_error_set(err, PA_E_ARG, "%s: no header to fill", label);
    memset(out, 0, sizeof *out);
    if (!buf && len)
        return pa_error_set(err, PA_E_ARG, "%s: no buffer", label);
    if (len > file_size)
        len = (size_t)file_size; /* bytes past the stated end of the file do not exist */
    reader r = {.buf = buf, .len = len, .file_size = file_size, .label = label, .err = err};
    pa_status st = parse_header(&r, out);
    free(r.scratch);
    *short_buffer = r.short_buffer;
    if (st != PA_OK)
        pa_gguf_free(out);
    return st;
}

pa_status pa_gguf_parse(const uint8_t *buf, size_t len, uint64_t file_size, const char *label,
                        pa_gguf *out, pa_error *err)
{
    bool short_buffer;
    return parse_impl(buf, len, file_size, label, out, err, &short_buffer);
}

pa_status pa_gguf_read(int fd, const char *label, pa_gguf *out, pa_error *err)
{
    if (!label)
        label = "gguf";
    if (!out)
        return pa_error_set(err, PA_E_ARG, "%s: no header to fill", label);
    memset(out, 0, sizeof *out);
    uint64_t file_size;
    pa_status rs = pa_regular_size(fd, label, &file_size, err);
    if (rs)
        return rs;

    uint8_t *buf = NULL;
    size_t have = 0, want = PA_GGUF_READ_FIRST;
    for (;;) {
        if (want > file_size)
            want = (size_t)file_size;
        uint8_t *grown = realloc(buf, want ? want : 1);
        if (!grown) {
            free(buf);
            return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", label);
        }
        buf = grown;
        int rc = pa_pread_exact(fd, buf + have, want - have, have);
        if (rc != 0) {
            int e = errno;
            free(buf);
            if (rc < 0)
                return pa_error_set(err, PA_E_IO, "%s: read failed: %s", label, strerror(e));
            return pa_error_set(err, PA_E_IO, "%s: file shrank while reading", label);
        }
        have = want;
        /* A local error per attempt: the caller's keeps only the final answer. */
        pa_error attempt;
        pa_error_clear(&attempt);
        bool short_buffer;
        pa_status st = parse_impl(buf, have, file_size, label, out, &attempt, &short_buffer);
        if (st == PA_OK) {
            free(buf);
            return PA_OK;
        }
        if (!short_buffer || have >= file_size) {
            free(buf);
            return pa_error_set(err, st, "%s", attempt.msg);
        }
        if (have >= PA_GGUF_READ_MAX) {
            free(buf);
            return pa_error_set(err, PA_E_LIMIT, "%s: GGUF header is larger than %u MiB", label,
                                PA_GGUF_READ_MAX >> 20);
        }
        want = have * 2 > PA_GGUF_READ_MAX ? PA_GGUF_READ_MAX : have * 2;
    }
}

void pa_gguf_free(pa_gguf *g)
{
    if (!g)
        return;
    if (g->tensors)
        for (size_t i = 0; i < g->n_tensors; i++)
            free(g->tensors[i].name);
    free(g->tensors);
    cJSON_Delete(g->kv);
    memset(g, 0, sizeof *g);
}

bool pa_gguf_sniff(const uint8_t *buf, size_t len)
{
    return buf && len >= 4 && memcmp(buf, "GGUF", 4) == 0;
}

/* ---------------------------------------------------------------- metadata look-ups */

const cJSON *pa_gguf_kv(const pa_gguf *g, const char *key)
{
    return g && g->kv && key ? cJSON_GetObjectItemCaseSensitive(g->kv, key) : NULL;
}

const char *pa_gguf_kv_str(const pa_gguf *g, const char *key)
{
    const cJSON *v = pa_gguf_kv(g, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

bool pa_gguf_json_int(const cJSON *v, int64_t *out)
{
    if (!cJSON_IsNumber(v))
        return false;
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < -9.0e18 || d > 9.0e18)
        return false;
    *out = (int64_t)d;
    return true;
}

bool pa_gguf_kv_int(const pa_gguf *g, const char *key, int64_t *out)
{
    return pa_gguf_json_int(pa_gguf_kv(g, key), out);
}

/* The metadata value "<arch>.<suffix>", or NULL. */
const cJSON *pa_gguf_arch_kv(const pa_gguf *g, const char *suffix)
{
    const char *arch = pa_gguf_kv_str(g, "general.architecture");
    if (!arch || !suffix)
        return NULL;
    char key[256];
    int n = snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (n < 0 || (size_t)n >= sizeof key)
        return NULL;
    return pa_gguf_kv(g, key);
}

bool pa_gguf_arch_int(const pa_gguf *g, const char *suffix, int64_t *out)
{
    const cJSON *v = pa_gguf_arch_kv(g, suffix);
    if (!cJSON_IsArray(v))
        return pa_gguf_json_int(v, out);
    /* per-layer values (e.g. head_count_kv of some models): one value only when all agree */
    int64_t first = 0, x;
    bool any = false;
    for (const cJSON *e = v->child; e; e = e->next) {
        if (!pa_gguf_json_int(e, &x) || (any && x != first))
            return false;
        first = x;
        any = true;
    }
    if (any)
        *out = first;
    return any;
}

const pa_gguf_tensor *pa_gguf_find(const pa_gguf *g, const char *name)
{
    if (!g || !name)
        return NULL;
    for (size_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0)
            return &g->tensors[i];
    return NULL;
}
