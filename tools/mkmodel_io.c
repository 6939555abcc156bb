/* mkmodel: errors, random streams, the streaming safetensors writer, files and JSON text. */
#include "mkmodel.h"

#include "jsonutil.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- errors and memory */

static char *partial_path; /* output file being written, removed when we die */

void mk_partial_set(const char *path)
{
    free(partial_path);
    partial_path = path ? strdup(path) : NULL;
}

void mk_die(int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = ' ';
    if (partial_path) {
        bool removed = unlink(partial_path) == 0;
        fprintf(stderr, "mkmodel: %s (%s partial %s; the output directory is incomplete)\n", msg,
                removed ? "removed" : "could not remove", partial_path);
    } else {
        fprintf(stderr, "mkmodel: %s\n", msg);
    }
    exit(status);
}

void *mk_alloc(size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        mk_die(MK_EXIT_IO, "allocation of %zu x %zu bytes overflows", count, size);
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        mk_die(MK_EXIT_IO, "out of memory (%zu x %zu bytes)", count, size);
    return p;
}

void *mk_grow(void *ptr, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return ptr;
    size_t cap_new = *cap ? *cap : 16;
    while (cap_new < need) {
        if (cap_new > SIZE_MAX / 2)
            mk_die(MK_EXIT_IO, "array too large");
        cap_new *= 2;
    }
    if (cap_new > SIZE_MAX / size)
        mk_die(MK_EXIT_IO, "array too large");
    void *p = realloc(ptr, cap_new * size);
    if (!p)
        mk_die(MK_EXIT_IO, "out of memory");
    *cap = cap_new;
    return p;
}

char *mk_strdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        mk_die(MK_EXIT_IO, "out of memory");
    return p;
}

char *mk_printf(const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        mk_die(MK_EXIT_IO, "formatting failed");
    char *p = mk_alloc((size_t)n + 1, 1);
    if ((size_t)n < sizeof small) {
        memcpy(p, small, (size_t)n + 1);
        return p;
    }
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

/* ---------------------------------------------------------------- random numbers */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t mk_hash(uint64_t seed, const char *tag, const char *name)
{
    uint64_t h = 0xCBF29CE484222325ull; /* FNV-1a over "tag\0name" */
    for (const unsigned char *p = (const unsigned char *)tag; *p; p++)
        h = (h ^ *p) * 0x100000001B3ull;
    h = (h ^ 0xFF) * 0x100000001B3ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 0x100000001B3ull;
    uint64_t state = seed ^ 0x6A09E667F3BCC909ull;
    uint64_t mixed = splitmix64(&state) ^ h;
    return splitmix64(&mixed);
}

void mk_rng_init(mk_rng *rng, uint64_t seed, const char *tag, const char *name)
{
    uint64_t state = mk_hash(seed, tag, name);
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&state);
}

void mk_fill_normal(mk_rng *rng, float *dst, size_t n, float mean, float std)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = mean + std * mk_rng_normal(rng);
}

void mk_add_normal(mk_rng *rng, float *dst, size_t n, float std)
{
    for (size_t i = 0; i < n; i++)
        dst[i] += std * mk_rng_normal(rng);
}

void mk_permutation(mk_rng *rng, uint32_t *perm, size_t n)
{
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)mk_rng_below(rng, i);
        uint32_t tmp = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = tmp;
    }
}

/* ---------------------------------------------------------------- tensors */

void mk_tensor_set(mk_tensor *t, const char *name, pa_dtype dtype, uint32_t ndim,
                   const uint64_t *shape)
{
    if (ndim > PA_MAX_DIMS)
        mk_die(MK_EXIT_USAGE, "%s: %u dimensions is over the limit", name, ndim);
    t->name = mk_strdup(name);
    t->dtype = dtype;
    t->ndim = ndim;
    uint64_t numel = 1;
    for (uint32_t i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        if (shape[i] && numel > UINT64_MAX / shape[i])
            mk_die(MK_EXIT_USAGE, "%s: shape overflows", name);
        numel *= shape[i];
    }
    t->numel = numel;
    size_t esize = pa_dtype_size(dtype);
    if (numel > (UINT64_MAX >> 4))
        mk_die(MK_EXIT_USAGE, "%s: tensor too large", name);
    t->nbytes = numel * esize;
}

void mk_tensors_free(mk_tensor *ts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(ts[i].name);
    free(ts);
}

/* ---------------------------------------------------------------- sink */

#define SINK_BUF (8u << 20)
#define SINK_CHUNK 16384u /* floats encoded per step */

struct mk_sink {
    int fd;
    const char *path;
    uint8_t *buf;
    size_t used;
    uint64_t written; /* bytes accepted for the current tensor */
};

static void write_all(int fd, const char *path, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            mk_die(MK_EXIT_IO, "%s: write failed: %s", path,
                   w < 0 ? strerror(errno) : "no progress");
        p += w;
        len -= (size_t)w;
    }
}

static void sink_flush(mk_sink *sink)
{
    write_all(sink->fd, sink->path, sink->buf, sink->used);
    sink->used = 0;
}

void mk_sink_bytes(mk_sink *sink, const void *data, size_t len)
{
    const uint8_t *p = data;
    sink->written += len;
    while (len) {
        size_t room = SINK_BUF - sink->used;
        if (room == 0) {
            sink_flush(sink);
            continue;
        }
        size_t n = len < room ? len : room;
        memcpy(sink->buf + sink->used, p, n);
        sink->used += n;
        p += n;
        len -= n;
    }
}

void mk_sink_floats(mk_sink *sink, const float *src, size_t n, pa_dtype dtype)
{
    uint16_t half[SINK_CHUNK];
    switch (dtype) {
    case PA_DT_F32:
        mk_sink_bytes(sink, src,
                      n * sizeof(float)); /* little-endian hosts only, like the analyzer */
        return;
    case PA_DT_F16:
    case PA_DT_BF16:
        for (size_t off = 0; off < n; off += SINK_CHUNK) {
            size_t m = n - off < SINK_CHUNK ? n - off : SINK_CHUNK;
            if (dtype == PA_DT_F16)
                pa_f32_to_f16(src + off, half, m);
            else
                pa_f32_to_bf16(src + off, half, m);
            mk_sink_bytes(sink, half, m * 2);
        }
        return;
    default:
        mk_die(MK_EXIT_USAGE, "%s: cannot encode floats as %s", sink->path, pa_dtype_name(dtype));
    }
}

void mk_sink_generate(mk_sink *sink, const mk_tensor *t, uint64_t seed, const char *tag)
{
    float mean = 0.0f, std = 0.02f;
    if (t->init == MK_INIT_NORM) {
        mean = 1.0f;
        std = 0.05f;
    } else if (t->init == MK_INIT_BIAS) {
        std = 0.01f;
    }
    mk_rng rng;
    mk_rng_init(&rng, seed, tag, t->name);
    float chunk[SINK_CHUNK];
    for (uint64_t off = 0; off < t->numel; off += SINK_CHUNK) {
        size_t m = t->numel - off < SINK_CHUNK ? (size_t)(t->numel - off) : SINK_CHUNK;
        mk_fill_normal(&rng, chunk, m, mean, std);
        mk_sink_floats(sink, chunk, m, t->dtype);
    }
}

/* ---------------------------------------------------------------- weights */

typedef struct text {
    char *p;
    size_t n, cap;
} text;

static void text_put(text *b, const char *s, size_t n)
{
    b->p = mk_grow(b->p, &b->cap, b->n + n + 1, 1);
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void text_str(text *b, const char *s)
{
    text_put(b, s, strlen(s));
}

static void text_printf(text *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_printf(text *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp)
        mk_die(MK_EXIT_IO, "internal: formatted text too long");
    text_put(b, tmp, (size_t)n);
}

static void text_quote(text *b, const char *s)
{
    char *q = mk_json_quote(s);
    text_str(b, q);
    free(q);
}

static char *shard_name(size_t i, size_t shards)
{
    if (shards == 1)
        return mk_strdup("model.safetensors");
    return mk_printf("model-%05zu-of-%05zu.safetensors", i + 1, shards);
}

/* Balanced by bytes, every shard non-empty, tensors stay in order. */
static void assign_shards(mk_tensor *ts, size_t n, size_t shards)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += ts[i].nbytes;
    size_t shard = 0, in_shard = 0;
    uint64_t before = 0;
    for (size_t i = 0; i < n; i++) {
        if (shard + 1 < shards && in_shard > 0) {
            size_t left = n - i, shards_left = shards - shard - 1;
            long double boundary =
                (long double)total * (long double)(shard + 1) / (long double)shards;
            if (left <= shards_left ||
                (long double)before + (long double)ts[i].nbytes / 2 >= boundary) {
                shard++;
                in_shard = 0;
            }
        }
        ts[i].shard = shard;
        in_shard++;
        before += ts[i].nbytes;
    }
}

static int cmp_tensor_name(const void *a, const void *b)
{
    const mk_tensor *x = *(const mk_tensor *const *)a, *y = *(const mk_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static void write_index(const char *dir, mk_tensor *ts, size_t n, size_t shards)
{
    uint64_t total = 0;
    const mk_tensor **sorted = mk_alloc(n, sizeof *sorted);
    for (size_t i = 0; i < n; i++) {
        total += ts[i].nbytes;
        sorted[i] = &ts[i];
    }
    qsort(sorted, n, sizeof *sorted, cmp_tensor_name);
    text b = {0};
    text_printf(&b, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n  \"weight_map\": {\n",
                (unsigned long long)total);
    for (size_t i = 0; i < n; i++) {
        char *file = shard_name(sorted[i]->shard, shards);
        text_str(&b, "    ");
        text_quote(&b, sorted[i]->name);
        text_str(&b, ": ");
        text_quote(&b, file);
        text_str(&b, i + 1 < n ? ",\n" : "\n");
        free(file);
    }
    text_str(&b, "  }\n}\n");
    mk_write_file(dir, "model.safetensors.index.json", b.p, b.n);
    free(b.p);
    free(sorted);
}

/* Weight files of the layout we are not writing would make the directory ambiguous. */
void mk_remove_stale(const char *dir, size_t shards)
{
    if (shards > 1) {
        char *p = mk_join(dir, "model.safetensors");
        unlink(p);
        free(p);
    } else {
        char *p = mk_join(dir, "model.safetensors.index.json");
        unlink(p);
        free(p);
    }
    /* model-XXXXX-of-YYYYY.safetensors with another YYYYY, or this one when unsharded */
    for (size_t total = 1; total <= 64; total++) {
        if (total == shards)
            continue;
        for (size_t i = 0; i < total; i++) {
            char *name = mk_printf("model-%05zu-of-%05zu.safetensors", i + 1, total);
            char *p = mk_join(dir, name);
            unlink(p);
            free(p);
            free(name);
        }
    }
}

void mk_write_weights(const char *dir, mk_tensor *ts, size_t n, size_t shards, mk_produce_fn fn,
                      void *ctx)
{
    if (n == 0)
        mk_die(MK_EXIT_USAGE, "%s: no tensors to write", dir);
    if (shards < 1 || shards > n)
        mk_die(MK_EXIT_USAGE, "--shards %zu: must be between 1 and the number of tensors (%zu)",
               shards, n);
    if (shards > 99999)
        mk_die(MK_EXIT_USAGE, "--shards %zu: too many", shards);
    assign_shards(ts, n, shards);
    mk_remove_stale(dir, shards);
    mk_sink sink = {.fd = -1};
    sink.buf = mk_alloc(SINK_BUF, 1);
    size_t first = 0;
    for (size_t s = 0; s < shards; s++) {
        size_t last = first;
        while (last < n && ts[last].shard == s)
            last++;
        /* header: __metadata__ first, then tensors in data order */
        text h = {0};
        text_str(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
        uint64_t off = 0;
        for (size_t i = first; i < last; i++) {
            ts[i].begin = off;
            text_str(&h, ",");
            text_quote(&h, ts[i].name);
            text_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", pa_dtype_name(ts[i].dtype));
            for (uint32_t d = 0; d < ts[i].ndim; d++)
                text_printf(&h, d ? ",%llu" : "%llu", (unsigned long long)ts[i].shape[d]);
            text_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                        (unsigned long long)(off + ts[i].nbytes));
            off += ts[i].nbytes;
        }
        text_str(&h, "}");
        while (h.n % 8)
            text_str(&h, " ");
        char *name = shard_name(s, shards);
        char *path = mk_join(dir, name);
        mk_partial_set(path);
        sink.fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (sink.fd < 0)
            mk_die(MK_EXIT_IO, "%s: cannot create: %s", path, strerror(errno));
        sink.path = path;
        uint8_t prefix[8];
        for (int k = 0; k < 8; k++)
            prefix[k] = (uint8_t)((uint64_t)h.n >> (8 * k));
        mk_sink_bytes(&sink, prefix, 8);
        mk_sink_bytes(&sink, h.p, h.n);
        for (size_t i = first; i < last; i++) {
            sink.written = 0;
            fn(ctx, &ts[i], &sink);
            if (sink.written != ts[i].nbytes)
                mk_die(MK_EXIT_IO, "internal: %s: wrote %llu bytes, expected %llu", ts[i].name,
                       (unsigned long long)sink.written, (unsigned long long)ts[i].nbytes);
        }
        sink_flush(&sink);
        if (close(sink.fd) != 0)
            mk_die(MK_EXIT_IO, "%s: close failed: %s", path, strerror(errno));
        mk_partial_set(NULL);
        free(path);
        free(name);
        free(h.p);
        first = last;
    }
    free(sink.buf);
    if (shards > 1)
        write_index(dir, ts, n, shards);
}

/* ---------------------------------------------------------------- files */

void mk_make_dir(const char *dir)
{
    if (mkdir(dir, 0755) == 0)
        return;
    struct stat st;
    if (errno == EEXIST && stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
        return;
    mk_die(MK_EXIT_USAGE, "%s: cannot create directory: %s", dir, strerror(errno));
}

char *mk_join(const char *dir, const char *name)
{
    size_t l = strlen(dir);
    return mk_printf("%s%s%s", dir, (l && dir[l - 1] == '/') ? "" : "/", name);
}

void mk_write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char *path = mk_join(dir, name);
    mk_partial_set(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        mk_die(MK_EXIT_IO, "%s: cannot create: %s", path, strerror(errno));
    write_all(fd, path, data, len);
    if (close(fd) != 0)
        mk_die(MK_EXIT_IO, "%s: close failed: %s", path, strerror(errno));
    mk_partial_set(NULL);
    free(path);
}

void mk_copy_file(const char *src_path, const char *dir, const char *name)
{
    int in = open(src_path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        mk_die(MK_EXIT_USAGE, "%s: cannot open: %s", src_path, strerror(errno));
    char *path = mk_join(dir, name);
    mk_partial_set(path);
    int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0)
        mk_die(MK_EXIT_IO, "%s: cannot create: %s", path, strerror(errno));
    uint8_t *buf = mk_alloc(SINK_BUF, 1);
    for (;;) {
        ssize_t r = read(in, buf, SINK_BUF);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            mk_die(MK_EXIT_USAGE, "%s: read failed: %s", src_path, strerror(errno));
        if (r == 0)
            break;
        write_all(out, path, buf, (size_t)r);
    }
    free(buf);
    close(in);
    if (close(out) != 0)
        mk_die(MK_EXIT_IO, "%s: close failed: %s", path, strerror(errno));
    mk_partial_set(NULL);
    free(path);
}

char *mk_read_file(const char *path, size_t *len)
{
    pa_error err = {0};
    char *buf = NULL;
    if (pa_read_file(path, PA_JSON_MAX_FILE, &buf, len, &err) != PA_OK)
        mk_die(MK_EXIT_USAGE, "%s", err.msg);
    return buf;
}

cJSON *mk_parse_json(const char *json, size_t len, const char *label)
{
    pa_error err = {0};
    cJSON *v = pa_json_parse(json, len, label, &err);
    if (!v)
        mk_die(MK_EXIT_USAGE, "%s", err.msg);
    return v;
}

const char *mk_torch_dtype(pa_dtype dtype)
{
    switch (dtype) {
    case PA_DT_F16:
        return "float16";
    case PA_DT_BF16:
        return "bfloat16";
    case PA_DT_F64:
        return "float64";
    default:
        return "float32";
    }
}

/* ---------------------------------------------------------------- JSON text */

static void text_jstring(text *b, const char *s)
{
    text_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        switch (*p) {
        case '"':
            text_put(b, "\\\"", 2);
            break;
        case '\\':
            text_put(b, "\\\\", 2);
            break;
        case '\n':
            text_put(b, "\\n", 2);
            break;
        case '\r':
            text_put(b, "\\r", 2);
            break;
        case '\t':
            text_put(b, "\\t", 2);
            break;
        case '\b':
            text_put(b, "\\b", 2);
            break;
        case '\f':
            text_put(b, "\\f", 2);
            break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                text_str(b, esc);
            } else {
                text_put(b, (const char *)p, 1);
            }
        }
    }
    text_put(b, "\"", 1);
}

char *mk_json_quote(const char *s)
{
    text b = {0};
    text_jstring(&b, s);
    return b.p;
}

static void text_number(text *b, double d)
{
    char tmp[40];
    if (!isfinite(d)) {
        text_str(b, "null");
        return;
    }
    if (d == floor(d) && fabs(d) < 9.0e15) {
        snprintf(tmp, sizeof tmp, "%lld", (long long)d);
        text_str(b, tmp);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    text_str(b, tmp);
}

static void indent(text *b, int depth)
{
    text_put(b, "\n", 1);
    for (int i = 0; i < depth; i++)
        text_put(b, "  ", 2);
}

static void text_value(text *b, const cJSON *v, int depth)
{
    if (!v || cJSON_IsNull(v)) {
        text_str(b, "null");
    } else if (cJSON_IsTrue(v)) {
        text_str(b, "true");
    } else if (cJSON_IsFalse(v)) {
        text_str(b, "false");
    } else if (cJSON_IsNumber(v)) {
        text_number(b, v->valuedouble);
    } else if (cJSON_IsString(v)) {
        text_jstring(b, v->valuestring ? v->valuestring : "");
    } else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        bool obj = cJSON_IsObject(v);
        if (!v->child) {
            text_str(b, obj ? "{}" : "[]");
            return;
        }
        text_put(b, obj ? "{" : "[", 1);
        for (const cJSON *c = v->child; c; c = c->next) {
            indent(b, depth + 1);
            if (obj) {
                text_jstring(b, c->string ? c->string : "");
                text_put(b, ": ", 2);
            }
            text_value(b, c, depth + 1);
            if (c->next)
                text_put(b, ",", 1);
        }
        indent(b, depth);
        text_put(b, obj ? "}" : "]", 1);
    } else {
        text_str(b, "null");
    }
}

char *mk_json_pretty(const cJSON *v)
{
    text b = {0};
    text_value(&b, v, 0);
    return b.p;
}

/* Skip one JSON value starting at p (after whitespace); returns the end, or NULL when malformed.
 * Nesting is tracked by a counter, not recursion. */
static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

static const char *skip_value(const char *p, const char *end)
{
    int depth = 0;
    do {
        p = skip_ws(p, end);
        if (p >= end)
            return NULL;
        if (*p == '"') {
            p = skip_string(p, end);
            if (!p)
                return NULL;
        } else if (*p == '{' || *p == '[') {
            depth++;
            p++;
        } else if (*p == '}' || *p == ']') {
            depth--;
            p++;
        } else if (depth > 0 && (*p == ',' || *p == ':')) {
            p++;
        } else {
            while (p < end && !strchr(",}] \t\r\n", *p))
                p++;
        }
    } while (depth > 0);
    return p;
}

void mk_json_set(char **json, size_t *len, const char *key, const char *literal)
{
    const char *s = *json, *end = s + *len;
    const char *p = skip_ws(s, end);
    if (p >= end || *p != '{')
        mk_die(MK_EXIT_USAGE, "config.json: not a JSON object");
    p++;
    const char *close = NULL;
    for (;;) {
        p = skip_ws(p, end);
        if (p < end && *p == '}') {
            close = p;
            break;
        }
        if (p >= end || *p != '"')
            mk_die(MK_EXIT_USAGE, "config.json: malformed object");
        const char *kstart = p + 1, *kend = skip_string(p, end);
        if (!kend)
            mk_die(MK_EXIT_USAGE, "config.json: malformed key");
        p = skip_ws(kend, end);
        if (p >= end || *p != ':')
            mk_die(MK_EXIT_USAGE, "config.json: malformed object");
        const char *vstart = skip_ws(p + 1, end);
        const char *vend = skip_value(vstart, end);
        if (!vend)
            mk_die(MK_EXIT_USAGE, "config.json: malformed value");
        size_t klen = (size_t)(kend - 1 - kstart);
        if (klen == strlen(key) && memcmp(kstart, key, klen) == 0) {
            size_t pre = (size_t)(vstart - s), post = (size_t)(end - vend), lit = strlen(literal);
            char *out = mk_alloc(pre + lit + post + 1, 1);
            memcpy(out, s, pre);
            memcpy(out + pre, literal, lit);
            memcpy(out + pre + lit, vend, post);
            free(*json);
            *json = out;
            *len = pre + lit + post;
            return;
        }
        p = skip_ws(vend, end);
        if (p < end && *p == ',')
            p++;
    }
    /* absent: insert before the closing brace, after the last member */
    const char *last = close;
    while (last > s && strchr(" \t\r\n", last[-1]))
        last--;
    bool empty = last[-1] == '{';
    char *quoted = mk_json_quote(key);
    char *member = mk_printf("%s\n  %s: %s", empty ? "" : ",", quoted, literal);
    free(quoted);
    size_t pre = (size_t)(last - s), post = (size_t)(end - last), ml = strlen(member);
    char *out = mk_alloc(pre + ml + post + 1, 1);
    memcpy(out, s, pre);
    memcpy(out + pre, member, ml);
    memcpy(out + pre + ml, last, post);
    free(member);
    free(*json);
    *json = out;
    *len = pre + ml + post;
}
