/* Tensor-level diff of two models: which tensors are byte-identical, which changed and by how
 * much (relative L2 of the difference), which were added or removed. Both models are streamed
 * side by side in chunks; nothing is loaded whole. */
#include "jsonutil.h"
#include "model.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DIFF_CHUNK (1u << 20) /* elements per step */

typedef struct tref {
    const char *name;
    const pa_shard *shard;
    const pa_tensor_desc *desc;
} tref;

static int cmp_tref(const void *x, const void *y)
{
    return strcmp(((const tref *)x)->name, ((const tref *)y)->name);
}

static tref *collect(const pa_unit *u, size_t *n)
{
    size_t total = 0;
    for (size_t s = 0; s < u->n_shards; s++)
        total += u->shards[s].hdr.n_tensors;
    tref *r = malloc((total ? total : 1) * sizeof *r);
    if (!r)
        return NULL;
    size_t k = 0;
    for (size_t s = 0; s < u->n_shards; s++)
        for (size_t i = 0; i < u->shards[s].hdr.n_tensors; i++) {
            r[k].name = u->shards[s].hdr.tensors[i].name;
            r[k].shard = &u->shards[s];
            r[k].desc = &u->shards[s].hdr.tensors[i];
            k++;
        }
    qsort(r, k, sizeof *r, cmp_tref);
    *n = k;
    return r;
}

static void shape_str(const pa_tensor_desc *d, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    for (uint32_t i = 0; i < d->ndim && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%llu", i ? "x" : "", (unsigned long long)d->shape[i]);
    if (d->ndim == 0)
        snprintf(out, cap, "scalar");
}

/* Compare two tensors of one name. */
static pa_status diff_one(const tref *a, const tref *b, pa_diff_entry *e, uint8_t *ra, uint8_t *rb,
                          float *fa, float *fb, pa_error *err)
{
    const pa_tensor_desc *da = a->desc, *db = b->desc;
    bool same_shape = da->ndim == db->ndim && memcmp(da->shape, db->shape, sizeof da->shape) == 0;
    e->rel_l2 = NAN;
    char sa[40], sb[40];
    if (!same_shape) {
        shape_str(da, sa, sizeof sa);
        shape_str(db, sb, sizeof sb);
        e->kind = PA_D_CHANGED;
        snprintf(e->note, sizeof e->note, "shape %s -> %s", sa, sb);
        return PA_OK;
    }
    int fda = open(a->shard->path, O_RDONLY | O_CLOEXEC);
    int fdb = fda >= 0 ? open(b->shard->path, O_RDONLY | O_CLOEXEC) : -1;
    if (fda < 0 || fdb < 0) {
        int e2 = errno;
        if (fda >= 0)
            close(fda);
        return pa_error_set(err, PA_E_IO, "%s: cannot open: %s",
                            fda < 0 ? a->shard->path : b->shard->path, strerror(e2));
    }
    size_t ea = pa_dtype_size(da->dtype), eb = pa_dtype_size(db->dtype);
    bool same_dtype = da->dtype == db->dtype;
    bool bytes_equal = same_dtype;
    bool decodable = pa_dtype_decodable(da->dtype) && pa_dtype_decodable(db->dtype);
    double num = 0, den = 0;
    pa_status st = PA_OK;
    for (uint64_t done = 0; done < da->numel;) {
        size_t n = (size_t)(da->numel - done < DIFF_CHUNK ? da->numel - done : DIFF_CHUNK);
        if (pa_pread_exact(fda, ra, n * ea, a->shard->hdr.data_offset + da->begin + done * ea) ||
            pa_pread_exact(fdb, rb, n * eb, b->shard->hdr.data_offset + db->begin + done * eb)) {
            st = pa_error_set(err, PA_E_FORMAT, "short read in tensor '%s'", a->name);
            break;
        }
        if (bytes_equal && memcmp(ra, rb, n * ea) != 0)
            bytes_equal = false;
        if (decodable && !bytes_equal) {
            pa_dtype_to_f32(da->dtype, ra, fa, n);
            pa_dtype_to_f32(db->dtype, rb, fb, n);
            for (size_t i = 0; i < n; i++) {
                double d = (double)fb[i] - fa[i];
                num += d * d;
                den += (double)fa[i] * fa[i];
            }
        } else if (decodable) {
            pa_dtype_to_f32(da->dtype, ra, fa, n);
            for (size_t i = 0; i < n; i++)
                den += (double)fa[i] * fa[i];
        }
        done += n;
    }
    close(fda);
    close(fdb);
    if (st)
        return st;
    if (bytes_equal) {
        e->kind = PA_D_IDENTICAL;
        e->rel_l2 = 0;
        return PA_OK;
    }
    e->kind = PA_D_CHANGED;
    if (decodable)
        e->rel_l2 = den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0);
    if (!same_dtype)
        snprintf(e->note, sizeof e->note, "dtype %s -> %s", pa_dtype_name(da->dtype),
                 pa_dtype_name(db->dtype));
    else if (!decodable)
        snprintf(e->note, sizeof e->note, "bytes differ (dtype %s not decoded)",
                 pa_dtype_name(da->dtype));
    return PA_OK;
}

static pa_status add_entry(pa_diff *d, size_t *cap, const char *name, pa_diff_kind kind,
                           pa_diff_entry **out, pa_error *err)
{
    if (d->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        pa_diff_entry *p = realloc(d->entries, nc * sizeof *p);
        if (!p)
            return pa_error_set(err, PA_E_NOMEM, "out of memory");
        d->entries = p;
        *cap = nc;
    }
    pa_diff_entry *e = &d->entries[d->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    if (!e->name)
        return pa_error_set(err, PA_E_NOMEM, "out of memory");
    e->kind = kind;
    e->rel_l2 = NAN;
    d->n++;
    *out = e;
    return PA_OK;
}

pa_status pa_diff_paths(const char *pa, const char *pb, pa_diff *d, pa_error *err)
{
    memset(d, 0, sizeof *d);
    pa_unit ua, ub;
    pa_status st = pa_unit_open(pa, NULL, &ua, err);
    if (st)
        return st;
    st = pa_unit_open(pb, NULL, &ub, err);
    if (st) {
        pa_unit_free(&ua);
        return st;
    }
    if (ua.is_gguf || ub.is_gguf) {
        /* element-wise diff across ggml blocks and llama.cpp's row order is not built yet; compare
         * gives the lineage verdict for GGUF files */
        pa_error_set(err, PA_E_UNSUPPORTED, "%s: per-tensor diff of GGUF files is not supported "
                                            "(use compare)", ua.is_gguf ? pa : pb);
        pa_unit_free(&ua);
        pa_unit_free(&ub);
        return PA_E_UNSUPPORTED;
    }
    size_t na = 0, nb = 0, cap = 0;
    tref *ta = collect(&ua, &na), *tb = collect(&ub, &nb);
    uint8_t *ra = malloc((size_t)DIFF_CHUNK * 8), *rb = malloc((size_t)DIFF_CHUNK * 8);
    float *fa = malloc((size_t)DIFF_CHUNK * sizeof(float)), *fb = malloc((size_t)DIFF_CHUNK * sizeof(float));
    if (!ta || !tb || !ra || !rb || !fa || !fb)
        st = pa_error_set(err, PA_E_NOMEM, "out of memory");
    size_t i = 0, j = 0;
    while (!st && (i < na || j < nb)) {
        int c = i >= na ? 1 : j >= nb ? -1 : strcmp(ta[i].name, tb[j].name);
        pa_diff_entry *e = NULL;
        if (c < 0) {
            st = add_entry(d, &cap, ta[i++].name, PA_D_REMOVED, &e, err);
        } else if (c > 0) {
            st = add_entry(d, &cap, tb[j++].name, PA_D_ADDED, &e, err);
        } else {
            st = add_entry(d, &cap, ta[i].name, PA_D_CHANGED, &e, err);
            if (!st)
                st = diff_one(&ta[i], &tb[j], e, ra, rb, fa, fb, err);
            i++;
            j++;
        }
        if (!st) {
            switch (e->kind) {
            case PA_D_IDENTICAL: d->n_identical++; break;
            case PA_D_CHANGED: d->n_changed++; break;
            case PA_D_ADDED: d->n_added++; break;
            case PA_D_REMOVED: d->n_removed++; break;
            }
        }
    }
    free(ta);
    free(tb);
    free(ra);
    free(rb);
    free(fa);
    free(fb);
    pa_unit_free(&ua);
    pa_unit_free(&ub);
    if (st)
        pa_diff_free(d);
    return st;
}

void pa_diff_free(pa_diff *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++)
        free(d->entries[i].name);
    free(d->entries);
    memset(d, 0, sizeof *d);
}

static const char *kind_name(pa_diff_kind k)
{
    switch (k) {
    case PA_D_IDENTICAL: return "identical";
    case PA_D_CHANGED: return "changed";
    case PA_D_ADDED: return "added";
    case PA_D_REMOVED: return "removed";
    }
    return "?";
}

char *pa_diff_to_json(const pa_diff *d, const char *a_label, const char *b_label, bool pretty)
{
    pa_json_fail_reset();
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "schema", "provfs.diff/1");
    cJSON_AddStringToObject(o, "a", a_label);
    cJSON_AddStringToObject(o, "b", b_label);
    cJSON *s = cJSON_AddObjectToObject(o, "summary");
    cJSON_AddNumberToObject(s, "identical", (double)d->n_identical);
    cJSON_AddNumberToObject(s, "changed", (double)d->n_changed);
    cJSON_AddNumberToObject(s, "added", (double)d->n_added);
    cJSON_AddNumberToObject(s, "removed", (double)d->n_removed);
    cJSON *arr = cJSON_AddArrayToObject(o, "tensors");
    for (size_t i = 0; arr && i < d->n; i++) {
        const pa_diff_entry *e = &d->entries[i];
        cJSON *t = cJSON_CreateObject();
        if (!t)
            break;
        cJSON_AddStringToObject(t, "name", e->name);
        cJSON_AddStringToObject(t, "status", kind_name(e->kind));
        if (isfinite(e->rel_l2))
            cJSON_AddNumberToObject(t, "rel_l2", e->rel_l2);
        else
            cJSON_AddNullToObject(t, "rel_l2");
        if (e->note[0])
            cJSON_AddStringToObject(t, "note", e->note);
        cJSON_AddItemToArray(arr, t);
    }
    char *out = pa_json_failed() ? NULL : pretty ? cJSON_Print(o) : cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (out && pa_json_failed()) {
        free(out);
        out = NULL;
    }
    return out;
}
