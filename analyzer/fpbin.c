/* Fingerprint <-> compact binary form (what the lineage database stores per model).
 *
 * Layout, little-endian; "varint" is LEB128 (7 bits a byte, at most 10 bytes):
 *   "PFB" and the version byte (1)
 *   varint n, n bytes: the fingerprint's JSON without weights and vocabulary (files, config,
 *     tokenizer features: small, and read by the same code as a JSON fingerprint)
 *   u8 flags: 1 weights, 2 int8 grid (pa_fp_quantized), 4 vocabulary
 *   vocabulary: varint n, varint k, k varints: the high 32 bits of the sorted hashes, each as
 *     the difference from the previous one (the first as it is)
 *   weights: varint bytes; varint roles and each role (varint length, bytes); varint tensors;
 *     per tensor (sorted by name): the name as the length shared with the previous name and the
 *     rest (varint, varint, bytes), varint role index, varint layer + 1, u8 kind (0 safetensors
 *     dtype, 1 GGUF type) and varint type, u8 dims and a varint each, 32 bytes SHA-256, u8
 *     flags (1 decoded, 2 column sums, 4 row sums, 8 block, 16 1-D sample), five f32 moments
 *     when decoded, then the vectors present: varint n (the block: u8 rows, u8 columns), i8
 *     exponent, n signed bytes (the block: n 12-bit values, two in three bytes, low bits
 *     first) unless the exponent is -128 (all zero) — value = code x 2^exp;
 *     u8 embedding present: name, varint rows, cols, f32 norm min and max, 20 f32 histogram,
 *     varint anchors, their u64 hashes, varint anchor columns, the cosine triangle and the
 *     anchor rows as vectors of known length; varint probe tokens (0: none), their u64
 *     hashes, varint blocks, per block varint layer, u8 terms present, a vector per term.
 * The file ends there. A 7B layout takes ~120 KB.
 *
 * Only compact values are written (compact.c): encoding a compact fingerprint loses nothing,
 * and decoding then encoding gives the same bytes. The reader takes the bytes as hostile: every
 * count is bounded by the compact sizes and by the bytes left before anything is allocated, and
 * the result is compacted again, so what it returns is a fingerprint the writer could make.
 */
#include "fp.h"
#include "gguf.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FPB_MAGIC "PFB"
#define FPB_VERSION 1
#define FPB_MAX_NAME 65536u          /* bytes of one tensor or role name */
#define FPB_MAX_NAMES (16u << 20)    /* bytes of all names together (a safetensors header's cap) */
#define FPB_MAX_META (32u << 20)     /* the JSON part (a file list of up to 100,000 names) */
#define FPB_MAX_LAYER (1 << 20)

/* ------------------------------------------------------------------ writer */

typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
    bool fail;
    const char *limit; /* what the reader would refuse, when fail */
} wbuf;

static void w_bytes(wbuf *b, const void *data, size_t n)
{
    if (b->fail)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *g = realloc(b->p, cap);
        if (!g) {
            b->fail = true;
            return;
        }
        b->p = g;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void w_u8(wbuf *b, unsigned v)
{
    uint8_t x = (uint8_t)v;
    w_bytes(b, &x, 1);
}

static void w_var(wbuf *b, uint64_t v)
{
    uint8_t x[10];
    size_t n = 0;
    do {
        x[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        x[n++] |= v ? 0x80 : 0;
    } while (v);
    w_bytes(b, x, n);
}

static void w_u64(wbuf *b, uint64_t v)
{
    uint8_t x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    w_bytes(b, x, 8);
}

static void w_f32(wbuf *b, double d)
{
    float f = isfinite(d) ? (float)fmax(-FLT_MAX, fmin(FLT_MAX, d)) : 0.0f;
    uint32_t u;
    memcpy(&u, &f, 4);
    for (int i = 0; i < 4; i++)
        w_u8(b, (u >> (8 * i)) & 0xff);
}

static void w_str(wbuf *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n > FPB_MAX_NAME) {
        b->fail = true;
        b->limit = "a name is longer than 64 KiB";
    }
    w_var(b, n);
    w_bytes(b, s, n);
}

/* The exponent and values of a vector of known length: a byte each (PA_CK_LEVELS), or 12 bits
 * each, two in three bytes (PA_CK_BLOCK_LEVELS). */
static void w_q(wbuf *b, const float *v, uint32_t n, int levels)
{
    int e = pa_q_exponent(v, n, levels);
    w_u8(b, (uint8_t)(int8_t)e);
    if (e == PA_Q_ZERO || !n)
        return;
    int16_t *q = malloc(n * sizeof *q);
    if (!q) {
        b->fail = true;
        return;
    }
    pa_q_encode(v, n, e, levels, q);
    if (levels == PA_CK_LEVELS) {
        for (uint32_t i = 0; i < n; i++)
            w_u8(b, (uint8_t)(int8_t)q[i]);
    } else {
        for (uint32_t i = 0; i < n; i += 2) {
            unsigned x = (unsigned)q[i] & 0xfff, y = i + 1 < n ? (unsigned)q[i + 1] & 0xfff : 0;
            w_u8(b, x & 0xff);
            w_u8(b, x >> 8 | (y & 0xf) << 4);
            w_u8(b, y >> 4);
        }
    }
    free(q);
}

static void w_q8(wbuf *b, const float *v, uint32_t n)
{
    w_q(b, v, n, PA_CK_LEVELS);
}

static void w_vec(wbuf *b, const pa_vec *v)
{
    w_var(b, v->n);
    w_q8(b, v->v, v->n);
}

/* A tensor name as a template: the text before and after its block number (the first time the
 * number stands alone in it, "model.layers.<12>.mlp.up_proj.weight"), so the names of a
 * network's blocks share a handful of templates. */
typedef struct tmpl {
    const char *pre, *post;
    size_t pre_n, post_n;
    bool slot;
} tmpl;

static tmpl split_name(const char *name, int32_t layer)
{
    tmpl t = {name, "", strlen(name), 0, false};
    if (layer < 0)
        return t;
    char d[16];
    int dn = snprintf(d, sizeof d, "%d", (int)layer);
    for (const char *p = strstr(name, d); p; p = strstr(p + 1, d)) {
        bool before = p > name && p[-1] >= '0' && p[-1] <= '9';
        bool after = p[dn] >= '0' && p[dn] <= '9';
        if (!before && !after) {
            t.pre_n = (size_t)(p - name);
            t.post = p + dn;
            t.post_n = strlen(t.post);
            t.slot = true;
            break;
        }
    }
    return t;
}

static bool same_tmpl(const tmpl *a, const tmpl *b)
{
    return a->slot == b->slot && a->pre_n == b->pre_n && a->post_n == b->post_n &&
           memcmp(a->pre, b->pre, a->pre_n) == 0 && memcmp(a->post, b->post, a->post_n) == 0;
}

static uint64_t fnv(const void *p, size_t n, uint64_t h)
{
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ull;
    return h;
}

#define FNV_START 1469598103934665603ull

/* Distinct roles and templates are found through a hash table (slot: index + 1), so a file of
 * 65,536 tensors with names all different costs no more than one of 291. */
typedef struct dedup {
    uint32_t *slot;
    size_t mask;
} dedup;

static bool dedup_init(dedup *d, size_t n)
{
    size_t size = 16;
    while (size < 2 * n)
        size *= 2;
    d->mask = size - 1;
    d->slot = calloc(size, sizeof *d->slot);
    return d->slot != NULL;
}

/* The slot for hash h where eq(ctx, index) holds, or the empty one to fill. */
static uint32_t *dedup_find(const dedup *d, uint64_t h, bool (*eq)(const void *, uint32_t),
                            const void *ctx)
{
    size_t i = (size_t)h & d->mask;
    while (d->slot[i] && !eq(ctx, d->slot[i] - 1))
        i = (i + 1) & d->mask;
    return &d->slot[i];
}

typedef struct role_key {
    const char *const *roles;
    const char *role;
} role_key;

static bool role_eq(const void *ctx, uint32_t k)
{
    const role_key *r = ctx;
    return strcmp(r->roles[k], r->role) == 0;
}

typedef struct tmpl_key {
    const tmpl *tmpls;
    const tmpl *t;
} tmpl_key;

static bool tmpl_eq(const void *ctx, uint32_t k)
{
    const tmpl_key *x = ctx;
    return same_tmpl(&x->tmpls[k], x->t);
}

static bool write_tensors(wbuf *b, const pa_fingerprint *fp)
{
    /* the distinct roles and name templates, in order of first use */
    size_t cap = fp->n_tensors ? fp->n_tensors : 1;
    const char **roles = malloc(cap * sizeof *roles);
    uint32_t *role_of = malloc(cap * sizeof *role_of), *tmpl_of = malloc(cap * sizeof *tmpl_of);
    tmpl *tmpls = malloc(cap * sizeof *tmpls);
    size_t n_roles = 0, n_tmpls = 0, names = 0;
    dedup role_set = {0}, tmpl_set = {0};
    bool ok = roles && role_of && tmpl_of && tmpls && dedup_init(&role_set, cap) &&
              dedup_init(&tmpl_set, cap);
    for (size_t i = 0; ok && i < fp->n_tensors; i++) {
        const pa_tensor_fp *t = &fp->tensors[i];
        /* what the reader refuses is refused here, so a stored fingerprint always reads back */
        if (!t->name || !t->role || (i && strcmp(fp->tensors[i - 1].name, t->name) >= 0)) {
            b->limit = "tensor names not sorted and distinct";
            ok = false;
            break;
        }
        uint64_t numel = 1;
        for (uint32_t d = 0; d < t->ndim; d++) {
            if (t->shape[d] > (uint64_t)9e15 || (t->shape[d] && numel > UINT64_MAX / t->shape[d]))
                ok = false;
            numel *= t->shape[d];
        }
        if (!ok || t->ndim > PA_MAX_DIMS || t->layer < -1 || t->layer >= FPB_MAX_LAYER) {
            b->limit = "a tensor shape or block number out of range";
            ok = false;
            break;
        }
        role_key rk = {roles, t->role};
        uint32_t *rs = dedup_find(&role_set, fnv(t->role, strlen(t->role), FNV_START), role_eq, &rk);
        if (!*rs) {
            roles[n_roles++] = t->role;
            *rs = (uint32_t)n_roles;
        }
        role_of[i] = *rs - 1;
        tmpl x = split_name(t->name, t->layer);
        tmpl_key tk = {tmpls, &x};
        uint64_t h = fnv(x.post, x.post_n, fnv(&x.slot, 1, fnv(x.pre, x.pre_n, FNV_START)));
        uint32_t *ts = dedup_find(&tmpl_set, h, tmpl_eq, &tk);
        if (!*ts) {
            tmpls[n_tmpls++] = x;
            *ts = (uint32_t)n_tmpls;
        }
        tmpl_of[i] = *ts - 1;
        size_t len = strlen(t->name);
        names += len + strlen(t->role); /* as the reader counts them */
        ok = len <= FPB_MAX_NAME && names <= FPB_MAX_NAMES;
        if (!ok)
            b->limit = "a tensor name is longer than 64 KiB, or all names and roles together "
                       "longer than 16 MiB";
    }
    if (ok) {
        w_var(b, n_roles);
        for (size_t r = 0; r < n_roles; r++)
            w_str(b, roles[r]);
        w_var(b, n_tmpls);
        for (size_t k = 0; k < n_tmpls; k++) {
            w_var(b, tmpls[k].pre_n);
            w_bytes(b, tmpls[k].pre, tmpls[k].pre_n);
            w_u8(b, tmpls[k].slot);
            w_var(b, tmpls[k].post_n);
            w_bytes(b, tmpls[k].post, tmpls[k].post_n);
        }
        w_var(b, fp->n_tensors);
    }
    for (size_t i = 0; ok && i < fp->n_tensors && !b->fail; i++) {
        const pa_tensor_fp *t = &fp->tensors[i];
        w_var(b, tmpl_of[i]);
        w_var(b, role_of[i]);
        w_var(b, (uint64_t)((int64_t)t->layer + 1));
        w_u8(b, t->ggml);
        w_var(b, t->ggml ? t->ggml_type : (uint32_t)t->dtype);
        w_u8(b, t->ndim);
        for (uint32_t d = 0; d < t->ndim; d++)
            w_var(b, t->shape[d]);
        w_bytes(b, t->sha, 32);
        unsigned flags = (t->decoded ? 1u : 0) | (t->colsum.n ? 2u : 0) | (t->rowsum.n ? 4u : 0) |
                         (t->block.n ? 8u : 0) | (t->sample.n ? 16u : 0);
        w_u8(b, flags);
        if (t->decoded && t->ndim < 2) {
            w_f32(b, t->mean);
            w_f32(b, t->std);
            w_f32(b, t->l2);
            w_f32(b, t->min);
            w_f32(b, t->max);
        } else if (t->decoded) {
            w_f32(b, t->l2); /* the rest of a matrix's moments is compared nowhere */
        }
        if (t->colsum.n)
            w_vec(b, &t->colsum);
        if (t->rowsum.n)
            w_vec(b, &t->rowsum);
        if (t->block.n) {
            w_u8(b, t->block_r);
            w_u8(b, t->block_c);
            w_q(b, t->block.v, t->block.n, PA_CK_BLOCK_LEVELS);
        }
        if (t->sample.n)
            w_vec(b, &t->sample);
    }
    free(roles);
    free(role_of);
    free(tmpl_of);
    free(tmpls);
    free(role_set.slot);
    free(tmpl_set.slot);
    return ok && !b->fail;
}


static void write_embed(wbuf *b, const pa_embed_fp *e)
{
    w_u8(b, e->present);
    if (!e->present)
        return;
    w_str(b, e->tensor);
    w_var(b, e->rows);
    w_var(b, e->cols);
    w_f32(b, e->norm_min);
    w_f32(b, e->norm_max);
    for (int i = 0; i < PA_SK_END_BINS; i++)
        w_f32(b, e->end_hist[i]);
    uint32_t k = e->anchor_cos && e->anchor_rows && e->anchor_c ? e->n_anchors : 0;
    w_var(b, k);
    for (uint32_t i = 0; i < k; i++)
        w_u64(b, e->anchor_hash[i]);
    w_var(b, k ? e->anchor_c : 0);
    if (!k)
        return;
    size_t nt = (size_t)k * (k + 1) / 2, p = 0;
    float *tri = malloc(nt * sizeof *tri);
    if (!tri) {
        b->fail = true;
        return;
    }
    for (uint32_t i = 0; i < k; i++)
        for (uint32_t j = i; j < k; j++)
            tri[p++] = e->anchor_cos[(size_t)i * k + j];
    w_q8(b, tri, (uint32_t)nt);
    free(tri);
    w_q8(b, e->anchor_rows, k * e->anchor_c);
}

static void write_probe(wbuf *b, const pa_probe_fp *p)
{
    uint32_t m = p->prod && p->n_layers ? p->m : 0;
    w_var(b, m);
    if (!m)
        return;
    for (uint32_t i = 0; i < m; i++)
        w_u64(b, p->hash[i]);
    w_var(b, p->n_layers);
    size_t mm = (size_t)m * m;
    for (uint32_t l = 0; l < p->n_layers; l++) {
        w_var(b, (uint64_t)p->layer[l]);
        w_u8(b, p->have[l] & 7u);
        for (int t = 0; t < PA_PROBE_TERMS; t++)
            if (p->have[l] & (1u << t))
                w_q8(b, p->prod + ((size_t)l * PA_PROBE_TERMS + t) * mm, (uint32_t)mm);
    }
}

/* Is fp within what the reader takes (compact, every count at most its compact size)? NULL, or
 * what is not. */
static const char *out_of_bounds(const pa_fingerprint *fp)
{
    if (!fp->compact)
        return "not compact (pa_fp_compact)";
    if (fp->vocab_k > PA_SK_VOCAB || fp->n_tensors > PA_FP_MAX_TENSORS)
        return "too many vocabulary hashes or tensors";
    for (size_t i = 0; i < fp->n_tensors; i++) {
        const pa_tensor_fp *t = &fp->tensors[i];
        if (t->colsum.n > PA_CK_MARGINAL || t->rowsum.n > PA_CK_MARGINAL ||
            t->sample.n > PA_CK_NORMVEC || t->block_r > PA_CK_BLOCK_R ||
            t->block_c > PA_CK_BLOCK_C ||
            (t->block.n && (!t->block_r || !t->block_c || t->block.n != t->block_r * t->block_c)))
            return "a sketch larger than the compact form";
    }
    const pa_embed_fp *e = &fp->embed;
    if (e->present && (e->rows > (uint64_t)9e15 || e->cols > (uint64_t)9e15 ||
                       e->n_anchors > PA_SK_ANCHORS || e->anchor_c > PA_CK_ANCHOR_C))
        return "an embedding out of range";
    const pa_probe_fp *p = &fp->probe;
    if (p->prod && p->n_layers && (p->m > PA_SK_PROBE || p->n_layers > PA_SK_PROBE_LAYERS))
        return "too many probe tokens or blocks";
    for (uint32_t l = 0; p->prod && p->m && l < p->n_layers; l++)
        if (p->layer[l] < 0)
            return "a probe block number out of range";
    return NULL;
}

pa_status pa_fp_to_bin(const pa_fingerprint *fp, uint8_t **out, size_t *len, pa_error *err)
{
    *out = NULL;
    *len = 0;
    const char *bad = out_of_bounds(fp);
    if (bad)
        return pa_error_set(err, PA_E_LIMIT, "fingerprint: %s", bad);
    wbuf b = {0};
    pa_fingerprint meta = *fp; /* the small parts, as JSON */
    meta.has_weights = false;
    meta.vocab_k = 0;
    meta.compact = true;
    char *json = pa_fp_to_json(&meta, false);
    if (!json)
        return pa_error_set(err, PA_E_NOMEM, "fingerprint: out of memory");
    if (strlen(json) > FPB_MAX_META) {
        free(json);
        return pa_error_set(err, PA_E_LIMIT, "fingerprint: its file list is over %u MiB",
                            FPB_MAX_META >> 20);
    }
    w_bytes(&b, FPB_MAGIC, 3);
    w_u8(&b, FPB_VERSION);
    w_var(&b, strlen(json));
    w_bytes(&b, json, strlen(json));
    free(json);
    bool weights = fp->has_weights && fp->n_tensors > 0;
    w_u8(&b, (weights ? 1u : 0) | (fp->grid ? 2u : 0) | (fp->vocab_k ? 4u : 0));
    if (fp->vocab_k) {
        w_var(&b, fp->vocab_n);
        w_var(&b, fp->vocab_k);
        uint64_t prev = 0;
        for (uint32_t i = 0; i < fp->vocab_k; i++) {
            uint64_t h = fp->vocab_hashes[i] >> 32;
            w_var(&b, h - prev);
            prev = h;
        }
    }
    bool ok = true;
    if (weights) {
        w_var(&b, fp->weight_bytes);
        ok = write_tensors(&b, fp);
        write_embed(&b, &fp->embed);
        write_probe(&b, &fp->probe);
    }
    if (!ok || b.fail) {
        free(b.p);
        return b.limit ? pa_error_set(err, PA_E_LIMIT, "fingerprint: %s", b.limit)
                       : pa_error_set(err, PA_E_NOMEM, "fingerprint: out of memory");
    }
    *out = b.p;
    *len = b.n;
    return PA_OK;
}

/* ------------------------------------------------------------------ reader */

typedef struct rbuf {
    const uint8_t *p;
    size_t n, at;
    bool bad;
    bool nomem; /* bad because an allocation failed, not the bytes */
} rbuf;

/* An allocation that failed: the read stops, and says so. */
static bool r_nomem(rbuf *r)
{
    r->nomem = r->bad = true;
    return false;
}

static size_t r_left(const rbuf *r)
{
    return r->bad ? 0 : r->n - r->at;
}

static const uint8_t *r_take(rbuf *r, size_t n)
{
    if (r->bad || n > r->n - r->at) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = r->p + r->at;
    r->at += n;
    return p;
}

static unsigned r_u8(rbuf *r)
{
    const uint8_t *p = r_take(r, 1);
    return p ? *p : 0;
}

static uint64_t r_var(rbuf *r)
{
    uint64_t v = 0;
    for (int s = 0; s < 64; s += 7) {
        const uint8_t *p = r_take(r, 1);
        if (!p)
            return 0;
        if (s == 63 && (*p & 0x7e)) /* more than 64 bits */
            break;
        v |= (uint64_t)(*p & 0x7f) << s;
        if (!(*p & 0x80))
            return v;
    }
    r->bad = true;
    return 0;
}

/* A varint that must lie in [lo, hi]. */
static uint64_t r_range(rbuf *r, uint64_t lo, uint64_t hi)
{
    uint64_t v = r_var(r);
    if (v < lo || v > hi)
        r->bad = true;
    return r->bad ? lo : v;
}

static uint64_t r_u64(rbuf *r)
{
    const uint8_t *p = r_take(r, 8);
    uint64_t v = 0;
    for (int i = 0; p && i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static float r_f32(rbuf *r)
{
    const uint8_t *p = r_take(r, 4);
    if (!p)
        return 0;
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, 4);
    return isfinite(f) ? f : 0.0f;
}

static char *r_str(rbuf *r)
{
    size_t n = (size_t)r_range(r, 0, FPB_MAX_NAME);
    const uint8_t *p = r_take(r, n);
    if (!p || memchr(p, '\0', n))
        return r->bad = true, NULL;
    char *s = malloc(n + 1);
    if (!s)
        return r_nomem(r), NULL;
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* n values after their exponent into v (n floats, allocated by the caller); as w_q wrote them.
 * The one code the writer never makes (-128, -2048) reads as the value next to it. */
static void r_q(rbuf *r, float *v, uint32_t n, int levels)
{
    memset(v, 0, n * sizeof *v);
    int e = (int8_t)r_u8(r);
    if (e != PA_Q_ZERO && e > pa_q_exponent_max(levels))
        r->bad = true;
    if (e == PA_Q_ZERO || r->bad || !n)
        return;
    const uint8_t *p = r_take(r, levels == PA_CK_LEVELS ? n : (n + 1) / 2 * 3);
    if (!p)
        return;
    int16_t *c = malloc(n * sizeof *c);
    if (!c) {
        r_nomem(r);
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        int x;
        if (levels == PA_CK_LEVELS) {
            x = (int8_t)p[i];
        } else {
            const uint8_t *t = p + i / 2 * 3;
            unsigned u = i % 2 ? (unsigned)(t[1] >> 4 | t[2] << 4) : (unsigned)(t[0] | (t[1] & 0xf) << 8);
            x = (int)(u & 0x800 ? (int)u - 0x1000 : (int)u);
        }
        c[i] = (int16_t)(x < -levels ? -levels : x);
    }
    pa_q_decode(c, n, e, v);
    free(c);
}

static void r_q8(rbuf *r, float *v, uint32_t n)
{
    r_q(r, v, n, PA_CK_LEVELS);
}

static bool r_vec(rbuf *r, uint32_t max_n, pa_vec *out)
{
    uint32_t n = (uint32_t)r_range(r, 1, max_n);
    if (r->bad)
        return false;
    out->v = malloc(n * sizeof *out->v);
    if (!out->v)
        return r_nomem(r);
    out->n = n;
    r_q8(r, out->v, n);
    return !r->bad;
}

/* A name template as write_tensors wrote it; its strings point into the input. */
static bool read_tmpl(rbuf *r, tmpl *t)
{
    t->pre_n = (size_t)r_range(r, 0, FPB_MAX_NAME);
    t->pre = (const char *)r_take(r, t->pre_n);
    unsigned slot = r_u8(r);
    t->post_n = (size_t)r_range(r, 0, FPB_MAX_NAME);
    t->post = (const char *)r_take(r, t->post_n);
    t->slot = slot == 1;
    if (r->bad || slot > 1 || memchr(t->pre, '\0', t->pre_n) || memchr(t->post, '\0', t->post_n))
        return r->bad = true, false;
    return true;
}

static bool read_tensor(rbuf *r, pa_tensor_fp *t, const tmpl *tmpls, size_t n_tmpls,
                        size_t *names, char **roles, size_t n_roles)
{
    if (!n_tmpls || !n_roles)
        return r->bad = true, false;
    const tmpl *x = &tmpls[r_range(r, 0, n_tmpls - 1)];
    size_t role = (size_t)r_range(r, 0, n_roles - 1);
    t->layer = (int32_t)r_range(r, 0, FPB_MAX_LAYER) - 1;
    if (r->bad || (x->slot && t->layer < 0))
        return r->bad = true, false;
    char d[16] = "";
    if (x->slot)
        snprintf(d, sizeof d, "%d", (int)t->layer);
    size_t dn = strlen(d), len = x->pre_n + dn + x->post_n;
    *names += len + strlen(roles[role]); /* each tensor holds its own copy of both */
    if (len > FPB_MAX_NAME || *names > FPB_MAX_NAMES)
        return r->bad = true, false;
    t->name = malloc(len + 1);
    t->role = strdup(roles[role]);
    if (!t->name || !t->role)
        return r_nomem(r);
    memcpy(t->name, x->pre, x->pre_n);
    memcpy(t->name + x->pre_n, d, dn);
    memcpy(t->name + x->pre_n + dn, x->post, x->post_n);
    t->name[len] = '\0';
    unsigned kind = r_u8(r);
    uint64_t type = r_var(r);
    if (kind == 0 && type < PA_DT_COUNT) {
        t->dtype = (pa_dtype)type;
    } else if (kind == 1 && type < PA_GGML_TYPE_COUNT && pa_gguf_type_known((uint32_t)type)) {
        t->ggml = true;
        t->ggml_type = (uint32_t)type;
        t->dtype = PA_DT_COUNT;
    } else {
        return r->bad = true, false;
    }
    t->ndim = (uint32_t)r_range(r, 0, PA_MAX_DIMS);
    t->numel = 1;
    for (uint32_t i = 0; i < t->ndim && !r->bad; i++) {
        t->shape[i] = r_range(r, 0, (uint64_t)9e15);
        if (t->shape[i] && t->numel > UINT64_MAX / t->shape[i])
            return r->bad = true, false;
        t->numel *= t->shape[i];
    }
    if (t->ndim >= 2) {
        t->rows = t->shape[0];
        t->cols = t->rows ? t->numel / t->rows : 0;
    }
    const uint8_t *sha = r_take(r, 32);
    if (!sha)
        return false;
    memcpy(t->sha, sha, 32);
    unsigned flags = r_u8(r);
    if (flags & ~31u)
        return r->bad = true, false;
    t->decoded = flags & 1;
    if (t->decoded && t->ndim < 2) {
        t->mean = r_f32(r);
        t->std = r_f32(r);
        t->l2 = r_f32(r);
        t->min = r_f32(r);
        t->max = r_f32(r);
    } else if (t->decoded) {
        t->l2 = r_f32(r);
    }
    if ((flags & 2) && !r_vec(r, PA_CK_MARGINAL, &t->colsum))
        return false;
    if ((flags & 4) && !r_vec(r, PA_CK_MARGINAL, &t->rowsum))
        return false;
    if (flags & 8) {
        t->block_r = (uint32_t)r_u8(r);
        t->block_c = (uint32_t)r_u8(r);
        uint32_t n = t->block_r * t->block_c;
        if (r->bad || !t->block_r || !t->block_c || t->block_r > PA_CK_BLOCK_R ||
            t->block_c > PA_CK_BLOCK_C)
            return r->bad = true, false;
        t->block.v = malloc(n * sizeof *t->block.v);
        if (!t->block.v)
            return r_nomem(r);
        t->block.n = n;
        r_q(r, t->block.v, n, PA_CK_BLOCK_LEVELS);
    }
    if ((flags & 16) && !r_vec(r, PA_CK_NORMVEC, &t->sample))
        return false;
    return !r->bad;
}

static bool read_tensors(rbuf *r, pa_fingerprint *fp)
{
    size_t n_roles = (size_t)r_range(r, 0, PA_FP_MAX_TENSORS);
    if (r->bad || n_roles > r_left(r))
        return r->bad = true, false;
    char **roles = calloc(n_roles ? n_roles : 1, sizeof *roles);
    bool ok = roles != NULL || r_nomem(r);
    for (size_t i = 0; ok && i < n_roles; i++)
        ok = (roles[i] = r_str(r)) != NULL;
    size_t n_tmpls = ok ? (size_t)r_range(r, 1, PA_FP_MAX_TENSORS) : 0;
    if (ok && n_tmpls > r_left(r) / 3)
        ok = !(r->bad = true);
    tmpl *tmpls = ok ? calloc(n_tmpls, sizeof *tmpls) : NULL;
    ok = ok && (tmpls || r_nomem(r));
    for (size_t i = 0; ok && i < n_tmpls; i++)
        ok = read_tmpl(r, &tmpls[i]);
    size_t n = ok ? (size_t)r_range(r, 1, PA_FP_MAX_TENSORS) : 0;
    /* a tensor takes at least 39 bytes */
    if (ok && (r->bad || n > r_left(r) / 39))
        ok = !(r->bad = true);
    if (ok)
        fp->tensors = calloc(n, sizeof *fp->tensors);
    ok = ok && (fp->tensors || r_nomem(r));
    size_t names = 0;
    for (size_t i = 0; ok && i < n; i++) {
        fp->n_tensors = i + 1;
        ok = read_tensor(r, &fp->tensors[i], tmpls, n_tmpls, &names, roles, n_roles);
        if (ok && i && strcmp(fp->tensors[i - 1].name, fp->tensors[i].name) >= 0)
            ok = !(r->bad = true); /* sorted and distinct, as the weights pass makes them */
        if (ok) {
            const pa_tensor_fp *t = &fp->tensors[i];
            fp->n_params += t->numel;
            if (t->layer >= 0 && (uint32_t)t->layer + 1 > fp->n_layers)
                fp->n_layers = (uint32_t)t->layer + 1;
        }
    }
    for (size_t i = 0; roles && i < n_roles; i++)
        free(roles[i]);
    free(roles);
    free(tmpls);
    return ok && !r->bad;
}

static bool read_embed(rbuf *r, pa_embed_fp *e)
{
    unsigned present = r_u8(r);
    if (present > 1)
        return r->bad = true, false;
    if (!present)
        return !r->bad;
    e->present = true;
    e->tensor = r_str(r);
    if (!e->tensor)
        return false;
    e->rows = r_range(r, 0, (uint64_t)9e15);
    e->cols = r_range(r, 0, (uint64_t)9e15);
    e->norm_min = r_f32(r);
    e->norm_max = r_f32(r);
    for (int i = 0; i < PA_SK_END_BINS; i++)
        e->end_hist[i] = r_f32(r);
    uint32_t k = (uint32_t)r_range(r, 0, PA_SK_ANCHORS);
    for (uint32_t i = 0; i < k; i++)
        e->anchor_hash[i] = r_u64(r);
    uint32_t c = (uint32_t)r_range(r, 0, PA_CK_ANCHOR_C);
    if (r->bad || (k && !c))
        return r->bad = true, false;
    e->n_anchors = k;
    e->anchor_c = c;
    e->anchor_cos = calloc((size_t)k * k + 1, sizeof(float));
    e->anchor_rows = calloc((size_t)k * c + 1, sizeof(float));
    if (!e->anchor_cos || !e->anchor_rows)
        return r_nomem(r);
    if (!k)
        return !r->bad;
    size_t nt = (size_t)k * (k + 1) / 2, p = 0;
    float *tri = malloc(nt * sizeof *tri);
    if (!tri)
        return r_nomem(r);
    r_q8(r, tri, (uint32_t)nt);
    for (uint32_t i = 0; i < k; i++)
        for (uint32_t j = i; j < k; j++, p++)
            e->anchor_cos[(size_t)i * k + j] = e->anchor_cos[(size_t)j * k + i] = tri[p];
    free(tri);
    r_q8(r, e->anchor_rows, k * c);
    return !r->bad;
}

static bool read_probe(rbuf *r, pa_probe_fp *p)
{
    uint32_t m = (uint32_t)r_range(r, 0, PA_SK_PROBE);
    if (!m)
        return !r->bad;
    for (uint32_t i = 0; i < m; i++)
        p->hash[i] = r_u64(r);
    uint32_t nl = (uint32_t)r_range(r, 1, PA_SK_PROBE_LAYERS);
    size_t mm = (size_t)m * m;
    if (r->bad)
        return false;
    p->layer = calloc(nl, sizeof *p->layer);
    p->have = calloc(nl, sizeof *p->have);
    p->prod = calloc((size_t)nl * PA_PROBE_TERMS * mm, sizeof *p->prod);
    if (!p->layer || !p->have || !p->prod)
        return r_nomem(r);
    for (uint32_t l = 0; l < nl && !r->bad; l++) {
        p->layer[l] = (int32_t)r_range(r, 0, INT32_MAX);
        p->have[l] = (uint8_t)r_u8(r);
        if (p->have[l] & ~7u)
            return r->bad = true, false;
        for (int t = 0; t < PA_PROBE_TERMS; t++)
            if (p->have[l] & (1u << t))
                r_q8(r, p->prod + ((size_t)l * PA_PROBE_TERMS + t) * mm, (uint32_t)mm);
    }
    p->m = m;
    p->n_layers = nl;
    return !r->bad;
}

bool pa_fp_is_bin(const void *buf, size_t len)
{
    return len >= 4 && memcmp(buf, FPB_MAGIC, 3) == 0;
}

pa_status pa_fp_from_bin(const uint8_t *buf, size_t len, const char *label, pa_fingerprint **out,
                         pa_error *err)
{
    *out = NULL;
    rbuf r = {.p = buf, .n = len};
    const uint8_t *magic = r_take(&r, 4);
    if (!magic || memcmp(magic, FPB_MAGIC, 3) != 0)
        return pa_error_set(err, PA_E_FORMAT, "%s: not a binary fingerprint", label);
    if (magic[3] != FPB_VERSION)
        return pa_error_set(err, PA_E_FORMAT, "%s: binary fingerprint version %u (this build reads %u)",
                            label, magic[3], FPB_VERSION);
    size_t mlen = (size_t)r_range(&r, 2, FPB_MAX_META);
    const uint8_t *meta = r_take(&r, mlen);
    if (!meta)
        return pa_error_set(err, PA_E_FORMAT, "%s: truncated binary fingerprint", label);
    pa_fingerprint *fp = NULL;
    pa_status st = pa_fp_from_json((const char *)meta, mlen, label, &fp, err);
    if (st)
        return st;
    if (fp->has_weights || fp->vocab_k || fp->vocab_hashes || fp->tensors || fp->embed.present ||
        fp->probe.prod) {
        pa_fingerprint_free(fp);
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: weights or vocabulary in the JSON part of a binary fingerprint",
                            label);
    }
    unsigned flags = r_u8(&r);
    bool ok = !(flags & ~7u) && !r.bad;
    fp->compact = true;
    fp->grid = flags & 2;
    if (ok && (flags & 4)) {
        uint64_t n = r_var(&r);
        uint32_t k = (uint32_t)r_range(&r, 1, PA_SK_VOCAB);
        ok = !r.bad && n >= k && k <= r_left(&r);
        fp->vocab_hashes = ok ? malloc((size_t)k * sizeof *fp->vocab_hashes) : NULL;
        ok = ok && (fp->vocab_hashes || r_nomem(&r));
        uint64_t h = 0;
        for (uint32_t i = 0; ok && i < k; i++) {
            uint64_t d = r_var(&r);
            ok = !r.bad && (i == 0 || d > 0) && d <= 0xffffffffull - h;
            h += d;
            fp->vocab_hashes[i] = h << 32;
        }
        if (ok) {
            fp->vocab_n = n;
            fp->vocab_k = k;
        }
    }
    if (ok && (flags & 1)) {
        fp->weight_bytes = r_var(&r);
        ok = read_tensors(&r, fp) && read_embed(&r, &fp->embed) && read_probe(&r, &fp->probe);
        fp->has_weights = ok;
    }
    if (ok && r.at != r.n)
        ok = false; /* trailing bytes */
    if (!ok || r.bad) {
        pa_fingerprint_free(fp);
        if (r.nomem)
            return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", label);
        return pa_error_set(err, PA_E_FORMAT, "%s: malformed binary fingerprint (at byte %zu of %zu)",
                            label, r.at, len);
    }
    if (!pa_fp_compact(fp)) {
        pa_fingerprint_free(fp);
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", label);
    }
    *out = fp;
    return PA_OK;
}
