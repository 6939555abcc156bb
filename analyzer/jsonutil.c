/* JSON and file helpers shared by the analyzer's parsers. */
#include "jsonutil.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

pa_status pa_read_fd(int fd, const char *path, size_t limit, char **out, size_t *len,
                     pa_error *err)
{
    *out = NULL;
    *len = 0;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return pa_error_set(err, PA_E_IO, "%s: cannot stat: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return pa_error_set(err, PA_E_FORMAT, "%s: not a regular file", path);
    if ((uint64_t)st.st_size > limit)
        return pa_error_set(err, PA_E_LIMIT, "%s: %lld bytes is over the %zu-byte limit", path,
                            (long long)st.st_size, limit);
    size_t cap = (size_t)st.st_size;
    char *buf = malloc(cap + 1);
    if (!buf)
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", path);
    size_t got = 0;
    while (got < cap) {
        ssize_t r = pread(fd, buf + got, cap - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            return pa_error_set(err, PA_E_IO, "%s: read failed: %s", path, strerror(e));
        }
        if (r == 0)
            break; /* shrank while reading: use what is there */
        got += (size_t)r;
    }
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return PA_OK;
}

pa_status pa_read_file(const char *path, size_t limit, char **out, size_t *len, pa_error *err)
{
    *out = NULL;
    *len = 0;
    /* O_NONBLOCK: a FIFO must not hang the reader; it is refused as not regular below. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return pa_error_set(err, PA_E_IO, "%s: cannot open: %s", path, strerror(errno));
    pa_status st = pa_read_fd(fd, path, limit, out, len, err);
    close(fd);
    return st;
}

pa_status pa_regular_size(int fd, const char *label, uint64_t *size, pa_error *err)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return pa_error_set(err, PA_E_IO, "%s: cannot stat: %s", label, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return pa_error_set(err, PA_E_FORMAT, "%s: not a regular file", label);
    *size = (uint64_t)sb.st_size;
    return PA_OK;
}

int pa_pread_exact(int fd, void *dst, size_t len, uint64_t off)
{
    uint8_t *p = dst;
    while (len) {
        ssize_t r = pread(fd, p, len, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            return 1;
        p += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

cJSON *pa_json_parse(const char *text, size_t len, const char *label, pa_error *err)
{
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (v && end) {
        /* like json.loads: only whitespace may follow the value */
        for (const char *p = end; p < text + len; p++)
            if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != '\0') {
                cJSON_Delete(v);
                return (pa_error_set(err, PA_E_FORMAT, "%s: trailing data after JSON at byte %ld",
                                     label, (long)(p - text)),
                        NULL);
            }
    }
    if (!v) {
        const char *at = cJSON_GetErrorPtr();
        long off = (at && at >= text && at <= text + len) ? (long)(at - text) : -1;
        if (off >= 0)
            pa_error_set(err, PA_E_FORMAT, "%s: invalid JSON near byte %ld", label, off);
        else
            pa_error_set(err, PA_E_FORMAT, "%s: invalid JSON", label);
    }
    return v;
}

static _Thread_local bool json_alloc_failed;

static void *json_malloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        json_alloc_failed = true;
    return p;
}

static void json_free(void *p)
{
    free(p);
}

__attribute__((constructor)) static void json_hooks(void)
{
    cJSON_Hooks hooks = {json_malloc, json_free};
    cJSON_InitHooks(&hooks);
}

void pa_json_fail_reset(void)
{
    json_alloc_failed = false;
}

void pa_json_fail_note(void)
{
    json_alloc_failed = true;
}

bool pa_json_failed(void)
{
    return json_alloc_failed;
}

bool pa_json_add(cJSON *obj, const char *key, cJSON *item)
{
    if (!item) {
        json_alloc_failed = true;
        return false;
    }
    if (!obj || !cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        json_alloc_failed = true;
        return false;
    }
    return true;
}

bool pa_json_int(const cJSON *obj, const char *key, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v))
        return false;
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < -9.0e18 || d > 9.0e18)
        return false;
    *out = (int64_t)d;
    return true;
}

const char *pa_json_str(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- Python-compatible dumps ---- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* Decode one UTF-8 sequence; invalid bytes decode as U+FFFD one byte at a time. */
static uint32_t utf8_next(const unsigned char **pp)
{
    const unsigned char *p = *pp;
    uint32_t c = p[0];
    int n = 0;
    if (c < 0x80) {
        *pp = p + 1;
        return c;
    } else if ((c & 0xE0) == 0xC0) {
        n = 1;
        c &= 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        n = 2;
        c &= 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        n = 3;
        c &= 0x07;
    } else {
        *pp = p + 1;
        return 0xFFFD;
    }
    for (int i = 1; i <= n; i++) {
        if ((p[i] & 0xC0) != 0x80) {
            *pp = p + 1;
            return 0xFFFD;
        }
        c = (c << 6) | (p[i] & 0x3F);
    }
    *pp = p + n + 1;
    return c;
}

static void sb_jstring(sbuf *b, const char *s)
{
    char tmp[16];
    sb_put(b, "\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        uint32_t c = utf8_next(&p);
        switch (c) {
        case '"': sb_put(b, "\\\"", 2); continue;
        case '\\': sb_put(b, "\\\\", 2); continue;
        case '\n': sb_put(b, "\\n", 2); continue;
        case '\r': sb_put(b, "\\r", 2); continue;
        case '\t': sb_put(b, "\\t", 2); continue;
        case '\b': sb_put(b, "\\b", 2); continue;
        case '\f': sb_put(b, "\\f", 2); continue;
        default: break;
        }
        if (c < 0x20 || (c >= 0x7F && c < 0x10000)) {
            snprintf(tmp, sizeof tmp, "\\u%04x", (unsigned)c);
            sb_str(b, tmp);
        } else if (c >= 0x10000) {
            uint32_t v = c - 0x10000;
            snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", (unsigned)(0xD800 + (v >> 10)),
                     (unsigned)(0xDC00 + (v & 0x3FF)));
            sb_str(b, tmp);
        } else {
            char ch = (char)c;
            sb_put(b, &ch, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static void sb_number(sbuf *b, double d)
{
    char tmp[40];
    if (isnan(d)) {
        sb_str(b, "NaN");
        return;
    }
    if (isinf(d)) {
        sb_str(b, d > 0 ? "Infinity" : "-Infinity");
        return;
    }
    if (d == floor(d) && fabs(d) < 1e16) {
        snprintf(tmp, sizeof tmp, "%lld", (long long)d);
        sb_str(b, tmp);
        return;
    }
    /* Shortest representation that round-trips, like Python's repr(float). */
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    /* Python writes 1e-05 as 1e-05 and 1e+16 as 1e+16, like %g; a bare integer-looking mantissa
     * such as "1e+20" matches too. Add ".0" when %g produced a plain integer. */
    if (!strpbrk(tmp, ".eEn")) {
        size_t l = strlen(tmp); /* at most 24 chars: room for ".0" */
        memcpy(tmp + l, ".0", 3);
    }
    sb_str(b, tmp);
}

static int cmp_keys(const void *x, const void *y)
{
    const cJSON *a = *(const cJSON *const *)x, *b = *(const cJSON *const *)y;
    return strcmp(a->string, b->string);
}

static void sb_value(sbuf *b, const cJSON *v, bool sort_keys, int depth)
{
    if (depth > 200) { /* cJSON already bounds nesting; this keeps the writer safe on its own */
        b->oom = true;
        return;
    }
    if (cJSON_IsNull(v) || !v) {
        sb_str(b, "null");
    } else if (cJSON_IsTrue(v)) {
        sb_str(b, "true");
    } else if (cJSON_IsFalse(v)) {
        sb_str(b, "false");
    } else if (cJSON_IsNumber(v)) {
        sb_number(b, v->valuedouble);
    } else if (cJSON_IsString(v)) {
        sb_jstring(b, v->valuestring ? v->valuestring : "");
    } else if (cJSON_IsArray(v)) {
        sb_put(b, "[", 1);
        bool first = true;
        for (const cJSON *c = v->child; c; c = c->next) {
            if (!first)
                sb_put(b, ", ", 2);
            first = false;
            sb_value(b, c, sort_keys, depth + 1);
        }
        sb_put(b, "]", 1);
    } else if (cJSON_IsObject(v)) {
        size_t n = 0;
        for (const cJSON *c = v->child; c; c = c->next)
            n++;
        const cJSON **items = n ? malloc(n * sizeof *items) : NULL;
        if (n && !items) {
            b->oom = true;
            return;
        }
        size_t i = 0;
        for (const cJSON *c = v->child; c; c = c->next)
            items[i++] = c;
        if (sort_keys && n > 1)
            qsort(items, n, sizeof *items, cmp_keys);
        sb_put(b, "{", 1);
        for (i = 0; i < n; i++) {
            if (i)
                sb_put(b, ", ", 2);
            sb_jstring(b, items[i]->string ? items[i]->string : "");
            sb_put(b, ": ", 2);
            sb_value(b, items[i], sort_keys, depth + 1);
        }
        sb_put(b, "}", 1);
        free(items);
    } else {
        sb_str(b, "null");
    }
}

char *pa_json_pydumps(const cJSON *v, bool sort_keys)
{
    sbuf b = {0};
    sb_value(&b, v, sort_keys, 0);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
