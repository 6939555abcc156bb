/* safetensors header parsing.
 *
 * Layout: an 8-byte little-endian length N, N bytes of UTF-8 JSON (an object of tensor entries plus
 * an optional "__metadata__"), then the data section. Everything here treats the file as hostile:
 * the length is checked against the file and PA_ST_MAX_HEADER before anything is allocated for it,
 * and every entry is checked against the data section before anyone reads tensor bytes through it.
 */
#include "jsonutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PREFIX_LEN 8u
/* Integers above 2^53 do not survive cJSON's double: reject them rather than round silently. */
#define JSON_EXACT_LIMIT 9007199254740992.0
/* A tensor name quoted in a message is cut to this many bytes so the problem stays on the line. */
#define NAME_SHOWN "120"
#define METADATA_KEY "__metadata__"

static uint64_t load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* The prefix checks shared by pa_st_parse and pa_st_read (which must not allocate before them). */
static pa_status check_prefix(const uint8_t *prefix, uint64_t file_size, const char *label,
                              uint64_t *header_len, pa_error *err)
{
    uint64_t n = load_le64(prefix);
    if (n == 0)
        return pa_error_set(err, PA_E_FORMAT, "%s: safetensors header length is 0", label);
    if (n > PA_ST_MAX_HEADER)
        return pa_error_set(err, PA_E_LIMIT,
                            "%s: safetensors header length %llu is over the limit of %u bytes",
                            label, (unsigned long long)n, PA_ST_MAX_HEADER);
    if (n > file_size - PREFIX_LEN) /* caller guarantees file_size >= 8 */
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: safetensors header length %llu runs past end of file (%llu bytes)",
                            label, (unsigned long long)n, (unsigned long long)file_size);
    *header_len = n;
    return PA_OK;
}

/* Length of the strict UTF-8 sequence at s (no overlongs, surrogates or code points past
 * U+10FFFF), or 0 when it is not one. */
static size_t utf8_seq_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
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

/* Lexical rules cJSON does not enforce, checked on text cJSON accepted: the header starts with '{'
 * and holds nothing but padding after the object, it is UTF-8, strings hold no raw control bytes
 * and no \u0000 (cJSON would cut the C string there, so two distinct names could collapse into
 * one), and only JSON whitespace separates tokens. */
static pa_status check_lexical(const char *text, size_t len, const char *label, pa_error *err)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t depth = 0;
    bool in_string = false;
    size_t i;
    if (len == 0 || s[0] != '{')
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: safetensors header is not a JSON object (does not start with '{')",
                            label);
    for (i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (in_string) {
            if (c == '"') {
                in_string = false;
            } else if (c == '\\') {
                if (i + 5 < len && s[i + 1] == 'u' && memcmp(s + i + 2, "0000", 4) == 0)
                    return pa_error_set(err, PA_E_FORMAT,
                                        "%s: header string holds \\u0000 at byte %zu", label, i);
                i++; /* the escaped byte cannot end the string */
            } else if (c < 0x20) {
                return pa_error_set(err, PA_E_FORMAT,
                                    "%s: header string holds control byte 0x%02x at byte %zu",
                                    label, c, i);
            } else if (c >= 0x80) {
                size_t n = utf8_seq_len(s + i, len - i);
                if (n == 0)
                    return pa_error_set(err, PA_E_FORMAT,
                                        "%s: header is not valid UTF-8 at byte %zu", label, i);
                i += n - 1;
            }
            continue;
        }
        switch (c) {
        case '"':
            in_string = true;
            break;
        case '{':
        case '[':
            depth++;
            break;
        case '}':
        case ']':
            if (depth == 0 || --depth == 0)
                goto closed;
            break;
        case ' ':
        case '\t':
        case '\n':
        case '\r':
            break;
        default:
            if (c < 0x20 || c >= 0x80)
                return pa_error_set(err, PA_E_FORMAT,
                                    "%s: header holds stray byte 0x%02x at byte %zu", label, c, i);
            break;
        }
    }
    return pa_error_set(err, PA_E_FORMAT, "%s: header JSON object is not closed", label);
closed:
    for (i++; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
            return pa_error_set(err, PA_E_FORMAT,
                                "%s: unexpected bytes after the header JSON object at byte %zu",
                                label, i);
    return PA_OK;
}

/* Why v is not an exact non-negative integer below 2^53, or NULL when it is one. */
static const char *json_u53(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return "is not a number";
    double d = v->valuedouble;
    if (d != d)
        return "is not a number";
    if (d < 0)
        return "is negative";
    if (d >= JSON_EXACT_LIMIT)
        return "is 2^53 or more (not exact in JSON)";
    uint64_t u = (uint64_t)d;
    if ((double)u != d)
        return "is not an integer";
    *out = u;
    return NULL;
}

static char *dup_cstr(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

/* Fill t from one header entry; t->name is left for the caller. */
static pa_status parse_entry(const cJSON *entry, const char *name, uint64_t data_len,
                             const char *label, pa_tensor_desc *t, pa_error *err)
{
    if (!cJSON_IsObject(entry))
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: tensor '%." NAME_SHOWN "s': entry is not an object", label, name);

    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    if (!cJSON_IsString(dtype) || !dtype->valuestring)
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: tensor '%." NAME_SHOWN "s': dtype missing or not a string", label,
                            name);
    if (!pa_dtype_parse(dtype->valuestring, &t->dtype))
        return pa_error_set(err, PA_E_UNSUPPORTED,
                            "%s: unknown dtype '%.32s' for tensor '%." NAME_SHOWN "s'", label,
                            dtype->valuestring, name);

    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    if (!cJSON_IsArray(shape))
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: tensor '%." NAME_SHOWN "s': shape missing or not an array", label,
                            name);
    uint32_t ndim = 0;
    uint64_t numel = 1;
    for (const cJSON *dim = shape->child; dim; dim = dim->next) {
        if (ndim == PA_MAX_DIMS)
            return pa_error_set(err, PA_E_LIMIT,
                                "%s: tensor '%." NAME_SHOWN "s': shape has more than %d dims",
                                label, name, PA_MAX_DIMS);
        uint64_t d;
        const char *why = json_u53(dim, &d);
        if (why)
            return pa_error_set(err, PA_E_FORMAT, "%s: tensor '%." NAME_SHOWN "s': shape[%u] %s",
                                label, name, ndim, why);
        if (d != 0 && numel > UINT64_MAX / d)
            return pa_error_set(err, PA_E_FORMAT,
                                "%s: tensor '%." NAME_SHOWN "s': shape product overflows 64 bits",
                                label, name);
        numel *= d;
        t->shape[ndim++] = d;
    }
    t->ndim = ndim;
    t->numel = numel;

    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    const cJSON *first = cJSON_IsArray(offsets) ? offsets->child : NULL;
    if (!first || !first->next || first->next->next)
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: tensor '%." NAME_SHOWN
                            "s': data_offsets missing or not an array of 2 integers",
                            label, name);
    const char *why = json_u53(first, &t->begin);
    if (!why)
        why = json_u53(first->next, &t->end);
    if (why)
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: tensor '%." NAME_SHOWN "s': data_offsets entry %s", label, name,
                            why);
    if (t->begin > t->end)
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: tensor '%." NAME_SHOWN "s': data_offsets begin %llu > end %llu",
                            label, name, (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end > data_len)
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: tensor '%." NAME_SHOWN
                            "s': data_offsets end %llu is past the data section (%llu bytes)",
                            label, name, (unsigned long long)t->end, (unsigned long long)data_len);

    uint64_t elem_size = pa_dtype_size(t->dtype);
    if (elem_size == 0 || numel > UINT64_MAX / elem_size)
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: tensor '%." NAME_SHOWN "s': byte size of shape overflows 64 bits",
                            label, name);
    if (t->end - t->begin != numel * elem_size)
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: tensor '%." NAME_SHOWN
                            "s': data_offsets span %llu bytes but %s shape needs %llu",
                            label, name, (unsigned long long)(t->end - t->begin),
                            pa_dtype_name(t->dtype), (unsigned long long)(numel * elem_size));
    return PA_OK;
}

static int cmp_name_ptr(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

static int cmp_by_begin(const void *x, const void *y)
{
    const pa_tensor_desc *a = x, *b = y;
    if (a->begin != b->begin)
        return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end)
        return a->end < b->end ? -1 : 1;
    return strcmp(a->name, b->name); /* names are unique by now: a total order */
}

/* cJSON keeps every member of an object, so duplicates must be found here: sort the names. */
static pa_status check_duplicates(const pa_st_header *h, const char *label, pa_error *err)
{
    if (h->n_tensors < 2)
        return PA_OK;
    const char **names = malloc(h->n_tensors * sizeof *names); /* n <= PA_ST_MAX_TENSORS */
    if (!names)
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", label);
    for (size_t i = 0; i < h->n_tensors; i++)
        names[i] = h->tensors[i].name;
    qsort(names, h->n_tensors, sizeof *names, cmp_name_ptr);
    pa_status st = PA_OK;
    for (size_t i = 1; i < h->n_tensors; i++)
        if (strcmp(names[i - 1], names[i]) == 0) {
            st = pa_error_set(err, PA_E_FORMAT, "%s: duplicate tensor name '%." NAME_SHOWN "s'",
                              label, names[i]);
            break;
        }
    free(names);
    return st;
}

/* Tensors sorted by begin overlap when one starts before the furthest end seen so far. Empty
 * tensors hold no bytes, so they never overlap anything. */
static pa_status check_overlaps(const pa_st_header *h, const char *label, pa_error *err)
{
    const pa_tensor_desc *reach_by = NULL;
    for (size_t i = 0; i < h->n_tensors; i++) {
        const pa_tensor_desc *t = &h->tensors[i];
        if (t->begin == t->end)
            continue;
        if (reach_by && t->begin < reach_by->end)
            return pa_error_set(err, PA_E_FORMAT,
                                "%s: tensors '%." NAME_SHOWN "s' [%llu, %llu) and '%." NAME_SHOWN
                                "s' [%llu, %llu) overlap",
                                label, reach_by->name, (unsigned long long)reach_by->begin,
                                (unsigned long long)reach_by->end, t->name,
                                (unsigned long long)t->begin, (unsigned long long)t->end);
        if (!reach_by || t->end > reach_by->end)
            reach_by = t;
    }
    return PA_OK;
}

pa_status pa_st_parse(const uint8_t *buf, size_t buf_len, uint64_t file_size, const char *label,
                      pa_st_header *out, pa_error *err)
{
    if (!label)
        label = "safetensors";
    if (!out)
        return pa_error_set(err, PA_E_ARG, "%s: no header to fill", label);
    memset(out, 0, sizeof *out);
    if (!buf && buf_len)
        return pa_error_set(err, PA_E_ARG, "%s: no buffer", label);
    if (file_size < PREFIX_LEN)
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: file of %llu bytes is shorter than the 8-byte safetensors prefix",
                            label, (unsigned long long)file_size);
    if (buf_len < PREFIX_LEN)
        return pa_error_set(err, PA_E_ARG,
                            "%s: buffer of %zu bytes does not hold the 8-byte prefix", label,
                            buf_len);
    uint64_t header_len;
    pa_status st = check_prefix(buf, file_size, label, &header_len, err);
    if (st != PA_OK)
        return st;
    if (buf_len - PREFIX_LEN < header_len)
        return pa_error_set(err, PA_E_ARG,
                            "%s: buffer of %zu bytes is too short for the %llu-byte header", label,
                            buf_len, (unsigned long long)header_len);

    /* header_len <= PA_ST_MAX_HEADER, so it fits size_t from here on. */
    const char *text = (const char *)buf + PREFIX_LEN;
    size_t text_len = (size_t)header_len;
    uint64_t data_len = file_size - PREFIX_LEN - header_len;

    cJSON *root = pa_json_parse(text, text_len, label, err);
    if (!root)
        return err ? err->status : PA_E_FORMAT;
    st = check_lexical(text, text_len, label, err);
    if (st != PA_OK)
        goto fail;
    if (!cJSON_IsObject(root)) {
        st = pa_error_set(err, PA_E_FORMAT, "%s: safetensors header is not a JSON object", label);
        goto fail;
    }

    size_t n_tensors = 0;
    for (const cJSON *e = root->child; e; e = e->next)
        if (!e->string || strcmp(e->string, METADATA_KEY) != 0)
            n_tensors++;
    if (n_tensors > PA_ST_MAX_TENSORS) {
        st = pa_error_set(err, PA_E_LIMIT, "%s: %zu tensors is over the limit of %u", label,
                          n_tensors, PA_ST_MAX_TENSORS);
        goto fail;
    }

    out->header_len = header_len;
    out->data_offset = PREFIX_LEN + header_len;
    out->data_len = data_len;
    if (n_tensors) {
        out->tensors = calloc(n_tensors, sizeof *out->tensors);
        if (!out->tensors) {
            st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", label);
            goto fail;
        }
        out->n_tensors = n_tensors; /* names are NULL until set: pa_st_header_free copes */
    }

    size_t i = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!e->string) {
            st = pa_error_set(err, PA_E_FORMAT, "%s: header entry without a name", label);
            goto fail;
        }
        if (strcmp(e->string, METADATA_KEY) == 0) {
            if (out->metadata_json) {
                st = pa_error_set(err, PA_E_FORMAT, "%s: duplicate " METADATA_KEY, label);
                goto fail;
            }
            /* The format wants an object of strings; any object is kept as it is. */
            if (!cJSON_IsObject(e)) {
                st = pa_error_set(err, PA_E_FORMAT, "%s: " METADATA_KEY " is not an object", label);
                goto fail;
            }
            out->metadata_json = cJSON_PrintUnformatted(e);
            if (!out->metadata_json) {
                st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", label);
                goto fail;
            }
            continue;
        }
        pa_tensor_desc *t = &out->tensors[i++];
        st = parse_entry(e, e->string, data_len, label, t, err);
        if (st != PA_OK)
            goto fail;
        t->name = dup_cstr(e->string);
        if (!t->name) {
            st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", label);
            goto fail;
        }
    }
    cJSON_Delete(root);
    root = NULL;

    st = check_duplicates(out, label, err);
    if (st != PA_OK)
        goto fail;
    if (out->n_tensors > 1)
        qsort(out->tensors, out->n_tensors, sizeof *out->tensors, cmp_by_begin);
    st = check_overlaps(out, label, err);
    if (st != PA_OK)
        goto fail;
    return PA_OK;

fail:
    cJSON_Delete(root);
    pa_st_header_free(out);
    return st;
}

pa_status pa_st_read(int fd, const char *label, pa_st_header *out, pa_error *err)
{
    if (!label)
        label = "safetensors";
    if (!out)
        return pa_error_set(err, PA_E_ARG, "%s: no header to fill", label);
    memset(out, 0, sizeof *out);
    uint64_t file_size;
    pa_status rs = pa_regular_size(fd, label, &file_size, err);
    if (rs)
        return rs;
    if (file_size < PREFIX_LEN)
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: file of %llu bytes is shorter than the 8-byte safetensors prefix",
                            label, (unsigned long long)file_size);

    uint8_t prefix[PREFIX_LEN];
    int r = pa_pread_exact(fd, prefix, sizeof prefix, 0);
    if (r < 0)
        return pa_error_set(err, PA_E_IO, "%s: read failed: %s", label, strerror(errno));
    if (r > 0)
        return pa_error_set(err, PA_E_IO, "%s: file shrank while reading", label);
    uint64_t header_len;
    pa_status st = check_prefix(prefix, file_size, label, &header_len, err);
    if (st != PA_OK)
        return st;

    /* header_len <= PA_ST_MAX_HEADER: no overflow in the sum, and no more than that allocated. */
    size_t total = PREFIX_LEN + (size_t)header_len;
    uint8_t *buf = malloc(total);
    if (!buf)
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", label);
    memcpy(buf, prefix, PREFIX_LEN);
    r = pa_pread_exact(fd, buf + PREFIX_LEN, (size_t)header_len, PREFIX_LEN);
    if (r != 0) {
        int e = errno;
        free(buf);
        if (r < 0)
            return pa_error_set(err, PA_E_IO, "%s: read failed: %s", label, strerror(e));
        return pa_error_set(err, PA_E_IO, "%s: file shrank while reading", label);
    }
    st = pa_st_parse(buf, total, file_size, label, out, err);
    free(buf);
    return st;
}

void pa_st_header_free(pa_st_header *hdr)
{
    if (!hdr)
        return;
    if (hdr->tensors)
        for (size_t i = 0; i < hdr->n_tensors; i++)
            free(hdr->tensors[i].name);
    free(hdr->tensors);
    free(hdr->metadata_json);
    memset(hdr, 0, sizeof *hdr);
}

bool pa_st_sniff(const uint8_t *buf, size_t len)
{
    if (!buf || len < PREFIX_LEN + 1)
        return false;
    /* "{}" is the smallest header; the length is not limited here so that a hostile file with a
     * huge one is still recognised as safetensors (and then refused by the parser). */
    return load_le64(buf) >= 2 && buf[PREFIX_LEN] == '{';
}
