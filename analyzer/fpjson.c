/* Fingerprint <-> versioned JSON (schema provfs.fingerprint/1).
 *
 * Sketch vectors are base64 of their floats ({"n": N, "f32": ...}); the f16 form of earlier
 * fingerprints is read too. Every fingerprint is compact (compact.c): what is read is compacted
 * again, so a fingerprint from before the compact form reads as one made now. Reading back
 * checks every length and count against the fixed sketch sizes: a fingerprint from a file or
 * the store is data, not trusted code.
 */
#include "fp.h"
#include "gguf.h"
#include "jsonutil.h"

#include <float.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FP_SCHEMA "provfs.fingerprint/1"

/* ------------------------------------------------------------------ encoding helpers */

static char *b64_encode(const uint8_t *data, size_t n)
{
    size_t out_len = 4 * ((n + 2) / 3) + 1;
    char *out = malloc(out_len);
    if (!out)
        return NULL;
    if (n)
        EVP_EncodeBlock((unsigned char *)out, data, (int)n);
    else
        out[0] = '\0';
    return out;
}

/* Decode exactly `want` bytes; false on bad input or length mismatch. */
static bool b64_decode(const char *s, uint8_t *out, size_t want)
{
    size_t len = strlen(s);
    if (len % 4 != 0 || len / 4 * 3 < want || len / 4 * 3 > want + 2)
        return false;
    if (len == 0)
        return want == 0;
    uint8_t *tmp = malloc(len / 4 * 3 + 1);
    if (!tmp)
        return false;
    int got = EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)len);
    size_t pad = (len >= 1 && s[len - 1] == '=') + (len >= 2 && s[len - 2] == '=');
    bool ok = got >= 0 && (size_t)got - pad == want;
    if (ok)
        memcpy(out, tmp, want);
    free(tmp);
    return ok;
}

/* {"n": N, "f32": base64 of N little-endian floats}: exact, so a compact fingerprint (values on
 * their grids, compact.c) reads back as the same numbers. */
static cJSON *vec_to_json(const float *v, uint32_t n)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    uint8_t *bytes = malloc((n ? n : 1) * 4u);
    char *b = NULL;
    if (bytes) {
        for (uint32_t i = 0; i < n; i++) {
            float f = isfinite(v[i]) ? v[i] : 0.0f; /* compact values are finite */
            uint32_t u;
            memcpy(&u, &f, 4);
            for (int k = 0; k < 4; k++)
                bytes[4 * i + (uint32_t)k] = (uint8_t)(u >> (8 * k));
        }
        b = b64_encode(bytes, (size_t)n * 4);
    }
    free(bytes);
    if (!b) {
        cJSON_Delete(o);
        pa_json_fail_note();
        return NULL;
    }
    cJSON_AddNumberToObject(o, "n", n);
    cJSON_AddStringToObject(o, "f32", b);
    free(b);
    return o;
}

/* A vector as vec_to_json writes it, or in the form of fingerprints from before the compact
 * one: {"n": N, "s": scale, "f16": base64 of N half floats of v / scale}. */
static bool vec_from_json(const cJSON *o, uint32_t max_n, pa_vec *out)
{
    out->n = 0;
    out->v = NULL;
    if (!o || cJSON_IsNull(o))
        return true;
    int64_t n;
    const char *f32 = pa_json_str(o, "f32");
    if (f32) {
        if (!pa_json_int(o, "n", &n) || n < 0 || n > max_n)
            return false;
        uint8_t *bytes = malloc(((size_t)n ? (size_t)n : 1) * 4);
        float *v = malloc(((size_t)n ? (size_t)n : 1) * sizeof *v);
        if (!bytes || !v || !b64_decode(f32, bytes, (size_t)n * 4)) {
            free(bytes);
            free(v);
            return false;
        }
        for (int64_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)bytes[4 * i] | (uint32_t)bytes[4 * i + 1] << 8 |
                         (uint32_t)bytes[4 * i + 2] << 16 | (uint32_t)bytes[4 * i + 3] << 24;
            memcpy(&v[i], &u, 4);
            if (!isfinite(v[i]))
                v[i] = 0; /* compacting puts the rest on a grid */
        }
        free(bytes);
        out->n = (uint32_t)n;
        out->v = v;
        return true;
    }
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "s");
    const char *b = pa_json_str(o, "f16");
    if (!pa_json_int(o, "n", &n) || n < 0 || n > max_n || !cJSON_IsNumber(s) || !b ||
        !(fabs(s->valuedouble) <= FLT_MAX))
        return false;
    uint16_t *h = malloc(((size_t)n ? (size_t)n : 1) * 2);
    float *v = malloc(((size_t)n ? (size_t)n : 1) * sizeof *v);
    if (!h || !v || !b64_decode(b, (uint8_t *)h, (size_t)n * 2)) {
        free(h);
        free(v);
        return false;
    }
    pa_dtype_to_f32(PA_DT_F16, h, v, (size_t)n);
    for (int64_t i = 0; i < n; i++)
        v[i] *= (float)s->valuedouble;
    free(h);
    out->n = (uint32_t)n;
    out->v = v;
    return true;
}

/* A 64-bit integer written as decimal digits: cJSON prints large numbers (file times in ns) as
 * 1.79e+18. Readers hold numbers as doubles, so the digits are those of the nearest double (a
 * file time keeps its value to ~100 ns) and a fingerprint read back writes the same text. */
static void add_int64(cJSON *o, const char *k, int64_t v)
{
    char text[32];
    double d = (double)v;
    if (d >= 9.2e18 || d <= -9.2e18)
        d = 0;
    snprintf(text, sizeof text, "%lld", (long long)d);
    cJSON_AddRawToObject(o, k, text);
}

static void add_int_or_null(cJSON *o, const char *k, int64_t v)
{
    if (v == PA_NULL_INT)
        cJSON_AddNullToObject(o, k);
    else
        cJSON_AddNumberToObject(o, k, (double)v);
}

static void add_str_or_null(cJSON *o, const char *k, const char *v)
{
    if (v)
        cJSON_AddStringToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

/* v rounded to 1/scale. A value of 2^52 or more has no fraction to round, and v * scale could
 * overflow to inf (written as null, read back as 0): it stays as it is. */
static double round_to(double v, double scale)
{
    return fabs(v) < 0x1p52 ? round(v * scale) / scale : v;
}

static double r4(double v)
{
    return round_to(v, 10000);
}

/* ------------------------------------------------------------------ writer */

static cJSON *mfi_to_json(const pa_mfi *m)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    add_str_or_null(o, "model_type", m->model_type);
    cJSON *arch = m->architectures ? cJSON_Parse(m->architectures) : NULL;
    pa_json_add(o, "architectures", arch ? arch : cJSON_CreateNull());
    add_int_or_null(o, "hidden_size", m->hidden_size);
    add_int_or_null(o, "num_hidden_layers", m->num_hidden_layers);
    add_int_or_null(o, "num_attention_heads", m->num_attention_heads);
    add_int_or_null(o, "num_key_value_heads", m->num_key_value_heads);
    add_int_or_null(o, "intermediate_size", m->intermediate_size);
    add_int_or_null(o, "vocab_size", m->vocab_size);
    add_int_or_null(o, "max_position_embeddings", m->max_position_embeddings);
    add_str_or_null(o, "hidden_act", m->hidden_act);
    if (isfinite(m->rope_theta))
        cJSON_AddNumberToObject(o, "rope_theta", m->rope_theta);
    else
        cJSON_AddNullToObject(o, "rope_theta");
    cJSON *rs = m->rope_scaling ? cJSON_Parse(m->rope_scaling) : NULL;
    pa_json_add(o, "rope_scaling", rs ? rs : cJSON_CreateNull());
    if (m->tie_word_embeddings < 0)
        cJSON_AddNullToObject(o, "tie_word_embeddings");
    else
        cJSON_AddBoolToObject(o, "tie_word_embeddings", m->tie_word_embeddings);
    add_int_or_null(o, "bos_token_id", m->bos_token_id);
    add_int_or_null(o, "eos_token_id", m->eos_token_id);
    cJSON_AddNumberToObject(o, "gqa_ratio", m->gqa_ratio);
    cJSON_AddStringToObject(o, "attention_style", m->attention_style);
    cJSON_AddStringToObject(o, "norm_type", m->norm_type);
    if (m->attention_bias < 0)
        cJSON_AddNullToObject(o, "attention_bias");
    else
        cJSON_AddBoolToObject(o, "attention_bias", m->attention_bias);
    cJSON_AddBoolToObject(o, "qk_norm", m->qk_norm);
    cJSON_AddStringToObject(o, "pos_encoding", m->pos_encoding);
    add_int_or_null(o, "head_dim", m->head_dim);
    cJSON_AddStringToObject(o, "tokenizer_hash", m->tokenizer_hash);
    cJSON_AddStringToObject(o, "arch_hash", m->arch_hash);
    cJSON_AddStringToObject(o, "family_hash", m->family_hash);
    return o;
}

static cJSON *tfv_to_json(const pa_tfv *t)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "vocab_size", (double)t->vocab_size);
    cJSON_AddNumberToObject(o, "num_merges", (double)t->num_merges);
    cJSON_AddStringToObject(o, "merge_rule_hash", t->merge_rule_hash);
    cJSON_AddNumberToObject(o, "pct_single_char", r4(t->pct_single_char));
    cJSON_AddNumberToObject(o, "avg_token_length", round_to(t->avg_token_length, 100));
    cJSON_AddNumberToObject(o, "max_token_length", (double)t->max_token_length);
    cJSON_AddNumberToObject(o, "pct_whitespace_prefix", r4(t->pct_whitespace_prefix));
    cJSON_AddNumberToObject(o, "pct_byte_tokens", r4(t->pct_byte_tokens));
    cJSON *sd = cJSON_AddObjectToObject(o, "script_distribution");
    for (int i = 0; sd && i < PA_SCRIPT_COUNT; i++)
        if (t->script[i] > 0)
            cJSON_AddNumberToObject(sd, pa_script_names[i], r4(t->script[i]));
    cJSON_AddStringToObject(o, "tokenizer_class", t->tokenizer_class);
    cJSON_AddStringToObject(o, "model_kind", t->model_kind);
    add_int_or_null(o, "bos_token_id", t->bos_id);
    add_int_or_null(o, "eos_token_id", t->eos_id);
    add_int_or_null(o, "pad_token_id", t->pad_id);
    add_int_or_null(o, "unk_token_id", t->unk_id);
    add_int_or_null(o, "mask_token_id", t->mask_id);
    cJSON_AddStringToObject(o, "merges_hash", t->merges_hash);
    return o;
}

static cJSON *tensor_to_json(const pa_tensor_fp *t)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    char hex[65];
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = hx[t->sha[i] >> 4];
        hex[2 * i + 1] = hx[t->sha[i] & 15];
    }
    hex[64] = '\0';
    cJSON_AddStringToObject(o, "name", t->name);
    cJSON_AddStringToObject(o, "role", t->role);
    cJSON_AddNumberToObject(o, "layer", t->layer);
    cJSON_AddStringToObject(o, "dtype", t->ggml ? pa_gguf_type_name(t->ggml_type) : pa_dtype_name(t->dtype));
    if (t->ggml) /* F32, F16, BF16 are spelt alike in both */
        cJSON_AddBoolToObject(o, "ggml", true);
    cJSON *shape = cJSON_AddArrayToObject(o, "shape");
    for (uint32_t i = 0; shape && i < t->ndim; i++)
        cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[i]));
    cJSON_AddStringToObject(o, "sha256", hex);
    cJSON_AddBoolToObject(o, "decoded", t->decoded);
    if (t->decoded && t->ndim < 2) {
        cJSON_AddNumberToObject(o, "mean", t->mean);
        cJSON_AddNumberToObject(o, "std", t->std);
        cJSON_AddNumberToObject(o, "l2", t->l2);
        cJSON_AddNumberToObject(o, "min", t->min);
        cJSON_AddNumberToObject(o, "max", t->max);
    } else if (t->decoded) {
        cJSON_AddNumberToObject(o, "l2", t->l2); /* what comparing uses of a matrix's moments */
    }
    if (t->colsum.n)
        pa_json_add(o, "colsum", vec_to_json(t->colsum.v, t->colsum.n));
    if (t->rowsum.n)
        pa_json_add(o, "rowsum", vec_to_json(t->rowsum.v, t->rowsum.n));
    if (t->block.n) {
        cJSON_AddNumberToObject(o, "block_r", t->block_r);
        cJSON_AddNumberToObject(o, "block_c", t->block_c);
        pa_json_add(o, "block", vec_to_json(t->block.v, t->block.n));
    }
    if (t->sample.n)
        pa_json_add(o, "sample", vec_to_json(t->sample.v, t->sample.n));
    return o;
}

static cJSON *embed_to_json(const pa_embed_fp *e)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "tensor", e->tensor ? e->tensor : "");
    cJSON_AddNumberToObject(o, "rows", (double)e->rows);
    cJSON_AddNumberToObject(o, "cols", (double)e->cols);
    cJSON_AddNumberToObject(o, "norm_min", e->norm_min);
    cJSON_AddNumberToObject(o, "norm_max", e->norm_max);
    cJSON *h = cJSON_AddArrayToObject(o, "end_histogram");
    for (int i = 0; h && i < PA_SK_END_BINS; i++)
        cJSON_AddItemToArray(h, cJSON_CreateNumber(round_to(e->end_hist[i], 1e6)));
    cJSON_AddNumberToObject(o, "anchors", e->n_anchors);
    char *b = b64_encode((const uint8_t *)e->anchor_hash, (size_t)e->n_anchors * 8);
    if (!b)
        pa_json_fail_note();
    cJSON_AddStringToObject(o, "anchor_hash", b ? b : "");
    free(b);
    /* upper triangle with diagonal */
    uint32_t k = e->n_anchors;
    size_t nt = (size_t)k * (k + 1) / 2, p = 0;
    float *tri = malloc((nt ? nt : 1) * sizeof *tri);
    if (!tri)
        pa_json_fail_note();
    if (tri) {
        for (uint32_t i = 0; i < k; i++)
            for (uint32_t j = i; j < k; j++)
                tri[p++] = e->anchor_cos[(size_t)i * k + j];
        pa_json_add(o, "anchor_cos", vec_to_json(tri, (uint32_t)nt));
        free(tri);
    }
    cJSON_AddNumberToObject(o, "anchor_c", e->anchor_c);
    pa_json_add(o, "anchor_rows", vec_to_json(e->anchor_rows, k * e->anchor_c));
    return o;
}

static cJSON *probe_to_json(const pa_probe_fp *p)
{
    if (!p->m || !p->n_layers)
        return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "version", PA_PROBE_VERSION);
    cJSON_AddNumberToObject(o, "tokens", p->m);
    char *b = b64_encode((const uint8_t *)p->hash, (size_t)p->m * 8);
    if (!b)
        pa_json_fail_note();
    cJSON_AddStringToObject(o, "hash", b ? b : "");
    free(b);
    cJSON *blocks = cJSON_AddArrayToObject(o, "blocks");
    size_t mm = (size_t)p->m * p->m;
    for (uint32_t l = 0; blocks && l < p->n_layers; l++) {
        cJSON *e = cJSON_CreateObject();
        if (!e || !cJSON_AddItemToArray(blocks, e)) {
            cJSON_Delete(e);
            pa_json_fail_note();
            break;
        }
        cJSON_AddNumberToObject(e, "layer", p->layer[l]);
        static const char *const names[PA_PROBE_TERMS] = {"qk", "ov", "mlp"};
        for (int t = 0; t < PA_PROBE_TERMS; t++)
            pa_json_add(e, names[t],
                        (p->have[l] & (1u << t))
                            ? vec_to_json(p->prod + ((size_t)l * PA_PROBE_TERMS + t) * mm, (uint32_t)mm)
                            : cJSON_CreateNull());
    }
    return o;
}

static bool probe_from_json(const cJSON *o, pa_probe_fp *p)
{
    if (!o || cJSON_IsNull(o))
        return true; /* fingerprints from before the probe: no invariant products */
    int64_t v, m;
    if (!pa_json_int(o, "version", &v) || v != PA_PROBE_VERSION)
        return true; /* another version: left out, not an error */
    const char *hash = pa_json_str(o, "hash");
    const cJSON *blocks = cJSON_GetObjectItemCaseSensitive(o, "blocks");
    int nb = cJSON_GetArraySize(blocks);
    if (!pa_json_int(o, "tokens", &m) || m < 1 || m > PA_SK_PROBE || !hash ||
        !b64_decode(hash, (uint8_t *)p->hash, (size_t)m * 8) || nb < 1 || nb > PA_SK_PROBE_LAYERS)
        return false;
    size_t mm = (size_t)(m * m);
    p->layer = calloc((size_t)nb, sizeof *p->layer);
    p->have = calloc((size_t)nb, sizeof *p->have);
    p->prod = calloc((size_t)nb * PA_PROBE_TERMS * mm, sizeof *p->prod);
    if (!p->layer || !p->have || !p->prod)
        return false;
    uint32_t l = 0;
    for (const cJSON *e = blocks->child; e; e = e->next, l++) {
        if (!pa_json_int(e, "layer", &v) || v < 0 || v > INT32_MAX)
            return false;
        p->layer[l] = (int32_t)v;
        static const char *const names[PA_PROBE_TERMS] = {"qk", "ov", "mlp"};
        for (int t = 0; t < PA_PROBE_TERMS; t++) {
            pa_vec x;
            const cJSON *item = cJSON_GetObjectItemCaseSensitive(e, names[t]);
            if (!vec_from_json(item, (uint32_t)mm, &x))
                return false;
            if (x.v && x.n == mm) {
                memcpy(p->prod + ((size_t)l * PA_PROBE_TERMS + t) * mm, x.v, mm * sizeof *x.v);
                p->have[l] |= (uint8_t)(1u << t);
            } else if (x.v) {
                free(x.v);
                return false;
            }
            free(x.v);
        }
    }
    p->m = (uint32_t)m;
    p->n_layers = (uint32_t)nb;
    return true;
}

static char *to_json(const pa_fingerprint *fp, bool pretty, bool sketches)
{
    pa_json_fail_reset();
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "schema", FP_SCHEMA);
    if (fp->compact)
        cJSON_AddNumberToObject(o, "compact", PA_CK_VERSION);
    if (fp->path)
        cJSON_AddStringToObject(o, "path", fp->path);
    cJSON_AddStringToObject(o, "format", fp->format);
    cJSON_AddStringToObject(o, "digest", fp->digest);
    cJSON *files = cJSON_AddArrayToObject(o, "files");
    for (size_t i = 0; files && i < fp->n_files; i++) {
        cJSON *f = cJSON_CreateObject();
        if (!f)
            break;
        cJSON_AddStringToObject(f, "name", fp->files[i].name);
        add_int64(f, "size", (int64_t)fp->files[i].size);
        add_int64(f, "mtime_ns", (int64_t)fp->files[i].mtime_ns);
        cJSON_AddStringToObject(f, "sha256", fp->files[i].sha256);
        cJSON_AddItemToArray(files, f);
    }
    pa_json_add(o, "mfi", fp->has_mfi ? mfi_to_json(&fp->mfi) : cJSON_CreateNull());
    pa_json_add(o, "tokenizer", fp->has_tfv ? tfv_to_json(&fp->tfv) : cJSON_CreateNull());
    if (fp->vocab_k && sketches) {
        cJSON *v = cJSON_AddObjectToObject(o, "vocab");
        char *b = b64_encode((const uint8_t *)fp->vocab_hashes, (size_t)fp->vocab_k * 8);
        if (!b)
            pa_json_fail_note();
        if (v) {
            cJSON_AddNumberToObject(v, "n", (double)fp->vocab_n);
            cJSON_AddNumberToObject(v, "k", fp->vocab_k);
            cJSON_AddStringToObject(v, "hashes", b ? b : "");
        }
        free(b);
    } else {
        cJSON_AddNullToObject(o, "vocab");
    }
    if (fp->has_weights) {
        cJSON *w = cJSON_AddObjectToObject(o, "weights");
        cJSON_AddNumberToObject(w, "tensor_count", (double)fp->n_tensors);
        add_int64(w, "parameter_count", (int64_t)fp->n_params);
        add_int64(w, "bytes", (int64_t)fp->weight_bytes);
        cJSON_AddNumberToObject(w, "layers", fp->n_layers);
        if (fp->compact)
            cJSON_AddBoolToObject(w, "int8_grid", fp->grid);
        cJSON *dt = cJSON_AddObjectToObject(w, "dtypes");
        size_t counts[PA_DT_COUNT] = {0}, gcounts[PA_GGML_TYPE_COUNT] = {0};
        size_t norms = 0, matrices = 0;
        for (size_t i = 0; i < fp->n_tensors; i++) {
            if (fp->tensors[i].ggml && fp->tensors[i].ggml_type < PA_GGML_TYPE_COUNT)
                gcounts[fp->tensors[i].ggml_type]++;
            else if (fp->tensors[i].dtype < PA_DT_COUNT)
                counts[fp->tensors[i].dtype]++;
            norms += fp->tensors[i].sample.n && strncmp(fp->tensors[i].role, "norm_", 5) == 0;
            matrices += fp->tensors[i].block.n > 0;
        }
        for (int d = 0; dt && d < PA_DT_COUNT; d++)
            if (counts[d])
                cJSON_AddNumberToObject(dt, pa_dtype_name((pa_dtype)d), (double)counts[d]);
        for (uint32_t g = 0; dt && g < PA_GGML_TYPE_COUNT; g++)
            if (gcounts[g] && !cJSON_GetObjectItemCaseSensitive(dt, pa_gguf_type_name(g)))
                cJSON_AddNumberToObject(dt, pa_gguf_type_name(g), (double)gcounts[g]);
        cJSON *sig = cJSON_AddObjectToObject(w, "signals");
        if (sig) {
            cJSON_AddNumberToObject(sig, "matrices_sketched", (double)matrices);
            cJSON_AddNumberToObject(sig, "norm_vectors", (double)norms);
            cJSON_AddNumberToObject(sig, "eas_anchors", fp->embed.n_anchors);
            cJSON_AddNumberToObject(sig, "end_bins", fp->embed.present ? PA_SK_END_BINS : 0);
            cJSON_AddNumberToObject(sig, "lep_layers", fp->n_layers);
        }
        if (sketches) {
            cJSON *ts = cJSON_AddArrayToObject(w, "tensors");
            for (size_t i = 0; ts && i < fp->n_tensors; i++)
                cJSON_AddItemToArray(ts, tensor_to_json(&fp->tensors[i]));
            pa_json_add(w, "embedding",
                        fp->embed.present ? embed_to_json(&fp->embed) : cJSON_CreateNull());
            pa_json_add(w, "probe", probe_to_json(&fp->probe));
        }
    } else {
        cJSON_AddNullToObject(o, "weights");
    }
    char *out = pa_json_failed() ? NULL : pretty ? cJSON_Print(o) : cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (out && pa_json_failed()) {
        free(out);
        out = NULL;
    }
    return out;
}

char *pa_fp_to_json(const pa_fingerprint *fp, bool pretty)
{
    return to_json(fp, pretty, true);
}

char *pa_fp_summary_json(const pa_fingerprint *fp)
{
    return to_json(fp, false, false);
}

/* ------------------------------------------------------------------ reader */

#define BAD(...) (pa_error_set(err, PA_E_FORMAT, __VA_ARGS__), false)

static char *dup_str(const cJSON *o, const char *k)
{
    const char *s = pa_json_str(o, k);
    return s ? strdup(s) : NULL;
}

static int64_t int_or_null(const cJSON *o, const char *k)
{
    int64_t v;
    return pa_json_int(o, k, &v) ? v : PA_NULL_INT;
}

static void copy_str(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s ? s : "");
}

static bool mfi_from_json(const cJSON *o, pa_mfi *m)
{
    memset(m, 0, sizeof *m);
    m->model_type = dup_str(o, "model_type");
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(o, "architectures");
    m->architectures = arch ? pa_json_pydumps(arch, false) : strdup("null");
    m->hidden_size = int_or_null(o, "hidden_size");
    m->num_hidden_layers = int_or_null(o, "num_hidden_layers");
    m->num_attention_heads = int_or_null(o, "num_attention_heads");
    m->num_key_value_heads = int_or_null(o, "num_key_value_heads");
    m->intermediate_size = int_or_null(o, "intermediate_size");
    m->vocab_size = int_or_null(o, "vocab_size");
    m->max_position_embeddings = int_or_null(o, "max_position_embeddings");
    m->hidden_act = dup_str(o, "hidden_act");
    const cJSON *rt = cJSON_GetObjectItemCaseSensitive(o, "rope_theta");
    m->rope_theta = cJSON_IsNumber(rt) ? rt->valuedouble : NAN;
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(o, "rope_scaling");
    m->rope_scaling = rs && !cJSON_IsNull(rs) ? pa_json_pydumps(rs, false) : NULL;
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(o, "tie_word_embeddings");
    m->tie_word_embeddings = cJSON_IsBool(tie) ? cJSON_IsTrue(tie) : -1;
    m->bos_token_id = int_or_null(o, "bos_token_id");
    m->eos_token_id = int_or_null(o, "eos_token_id");
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(o, "gqa_ratio");
    m->gqa_ratio = cJSON_IsNumber(g) ? g->valuedouble : 1.0;
    copy_str(m->attention_style, sizeof m->attention_style, pa_json_str(o, "attention_style"));
    copy_str(m->norm_type, sizeof m->norm_type, pa_json_str(o, "norm_type"));
    const cJSON *ab = cJSON_GetObjectItemCaseSensitive(o, "attention_bias");
    m->attention_bias = cJSON_IsBool(ab) ? cJSON_IsTrue(ab) : -1;
    m->qk_norm = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "qk_norm"));
    copy_str(m->pos_encoding, sizeof m->pos_encoding, pa_json_str(o, "pos_encoding"));
    m->head_dim = int_or_null(o, "head_dim");
    copy_str(m->tokenizer_hash, sizeof m->tokenizer_hash, pa_json_str(o, "tokenizer_hash"));
    copy_str(m->arch_hash, sizeof m->arch_hash, pa_json_str(o, "arch_hash"));
    copy_str(m->family_hash, sizeof m->family_hash, pa_json_str(o, "family_hash"));
    return m->architectures != NULL;
}

static double num(const cJSON *o, const char *k, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) ? v->valuedouble : dflt;
}

static void tfv_from_json(const cJSON *o, pa_tfv *t)
{
    memset(t, 0, sizeof *t);
    t->vocab_size = int_or_null(o, "vocab_size");
    t->num_merges = int_or_null(o, "num_merges");
    if (t->vocab_size == PA_NULL_INT)
        t->vocab_size = 0;
    if (t->num_merges == PA_NULL_INT)
        t->num_merges = 0;
    copy_str(t->merge_rule_hash, sizeof t->merge_rule_hash, pa_json_str(o, "merge_rule_hash"));
    t->pct_single_char = num(o, "pct_single_char", 0);
    t->avg_token_length = num(o, "avg_token_length", 0);
    t->max_token_length = int_or_null(o, "max_token_length");
    if (t->max_token_length == PA_NULL_INT)
        t->max_token_length = 0;
    t->pct_whitespace_prefix = num(o, "pct_whitespace_prefix", 0);
    t->pct_byte_tokens = num(o, "pct_byte_tokens", 0);
    const cJSON *sd = cJSON_GetObjectItemCaseSensitive(o, "script_distribution");
    for (int i = 0; i < PA_SCRIPT_COUNT; i++)
        t->script[i] = cJSON_IsObject(sd) ? num(sd, pa_script_names[i], 0) : 0;
    copy_str(t->tokenizer_class, sizeof t->tokenizer_class, pa_json_str(o, "tokenizer_class"));
    copy_str(t->model_kind, sizeof t->model_kind, pa_json_str(o, "model_kind"));
    t->bos_id = int_or_null(o, "bos_token_id");
    t->eos_id = int_or_null(o, "eos_token_id");
    t->pad_id = int_or_null(o, "pad_token_id");
    t->unk_id = int_or_null(o, "unk_token_id");
    t->mask_id = int_or_null(o, "mask_token_id");
    copy_str(t->merges_hash, sizeof t->merges_hash, pa_json_str(o, "merges_hash"));
}

static bool tensor_from_json(const cJSON *o, pa_tensor_fp *t, pa_error *err)
{
    memset(t, 0, sizeof *t);
    t->name = dup_str(o, "name");
    t->role = dup_str(o, "role");
    if (!t->name || !t->role)
        return BAD("fingerprint: tensor without name or role");
    int64_t layer;
    t->layer = pa_json_int(o, "layer", &layer) && layer >= -1 && layer < (1 << 20) ? (int32_t)layer : -1;
    const char *dt = pa_json_str(o, "dtype");
    if (!dt)
        return BAD("fingerprint: tensor '%s' has no dtype", t->name);
    bool ggml = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "ggml"));
    if (ggml || !pa_dtype_parse(dt, &t->dtype)) {
        /* a GGUF type (Q4_K, ...; F32 with "ggml": true): without the flag, safetensors names
         * win where both spell a type alike (fingerprints written before it) */
        t->dtype = PA_DT_COUNT;
        for (uint32_t g = 0; g < PA_GGML_TYPE_COUNT && !t->ggml; g++)
            if (pa_gguf_type_known(g) && strcmp(pa_gguf_type_name(g), dt) == 0) {
                t->ggml = true;
                t->ggml_type = g;
            }
        if (!t->ggml)
            return BAD("fingerprint: tensor '%s' has an unknown dtype", t->name);
    }
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(o, "shape");
    if (!cJSON_IsArray(shape))
        return BAD("fingerprint: tensor '%s' has no shape", t->name);
    t->numel = 1;
    for (const cJSON *d = shape->child; d; d = d->next) {
        if (t->ndim >= PA_MAX_DIMS || !cJSON_IsNumber(d) || d->valuedouble < 0 ||
            d->valuedouble > 9.0e15 || d->valuedouble != floor(d->valuedouble))
            return BAD("fingerprint: tensor '%s' has a bad shape", t->name);
        t->shape[t->ndim++] = (uint64_t)d->valuedouble;
        if (t->shape[t->ndim - 1] && t->numel > UINT64_MAX / t->shape[t->ndim - 1])
            return BAD("fingerprint: tensor '%s' shape overflows", t->name);
        t->numel *= t->shape[t->ndim - 1];
    }
    const char *sha = pa_json_str(o, "sha256");
    if (!sha || strlen(sha) != 64)
        return BAD("fingerprint: tensor '%s' has no sha256", t->name);
    for (int i = 0; i < 32; i++) {
        unsigned v;
        if (sscanf(sha + 2 * i, "%2x", &v) != 1)
            return BAD("fingerprint: tensor '%s' has a bad sha256", t->name);
        t->sha[i] = (uint8_t)v;
    }
    t->decoded = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "decoded"));
    t->mean = num(o, "mean", 0);
    t->std = num(o, "std", 0);
    t->l2 = num(o, "l2", 0);
    t->min = num(o, "min", 0);
    t->max = num(o, "max", 0);
    if (t->ndim >= 2) {
        t->rows = t->shape[0];
        t->cols = t->rows ? t->numel / t->rows : 0;
    }
    int64_t br = 0, bc = 0;
    pa_json_int(o, "block_r", &br);
    pa_json_int(o, "block_c", &bc);
    if (br < 0 || br > PA_SK_BLOCK_R || bc < 0 || bc > PA_SK_BLOCK_C)
        return BAD("fingerprint: tensor '%s' has a bad block size", t->name);
    t->block_r = (uint32_t)br;
    t->block_c = (uint32_t)bc;
    if (!vec_from_json(cJSON_GetObjectItemCaseSensitive(o, "colsum"), PA_SK_MARGINAL, &t->colsum) ||
        !vec_from_json(cJSON_GetObjectItemCaseSensitive(o, "rowsum"), PA_SK_MARGINAL, &t->rowsum) ||
        !vec_from_json(cJSON_GetObjectItemCaseSensitive(o, "block"), PA_SK_BLOCK_R * PA_SK_BLOCK_C,
                       &t->block) ||
        !vec_from_json(cJSON_GetObjectItemCaseSensitive(o, "sample"), PA_SK_NORMVEC, &t->sample))
        return BAD("fingerprint: tensor '%s' has a malformed sketch", t->name);
    if (t->block.n && t->block.n != t->block_r * t->block_c)
        return BAD("fingerprint: tensor '%s' block size mismatch", t->name);
    return true;
}

static bool embed_from_json(const cJSON *o, pa_embed_fp *e, pa_error *err)
{
    memset(e, 0, sizeof *e);
    if (!o || cJSON_IsNull(o))
        return true;
    e->present = true;
    e->tensor = dup_str(o, "tensor");
    int64_t v;
    e->rows = pa_json_int(o, "rows", &v) && v >= 0 ? (uint64_t)v : 0;
    e->cols = pa_json_int(o, "cols", &v) && v >= 0 ? (uint64_t)v : 0;
    e->norm_min = num(o, "norm_min", 0);
    e->norm_max = num(o, "norm_max", 0);
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "end_histogram");
    if (cJSON_GetArraySize(h) != PA_SK_END_BINS)
        return BAD("fingerprint: embedding histogram must have %d bins", PA_SK_END_BINS);
    int i = 0;
    for (const cJSON *x = h->child; x; x = x->next)
        e->end_hist[i++] =
            cJSON_IsNumber(x) && fabs(x->valuedouble) <= FLT_MAX ? (float)x->valuedouble : 0;
    if (!pa_json_int(o, "anchors", &v) || v < 0 || v > PA_SK_ANCHORS)
        return BAD("fingerprint: bad anchor count");
    e->n_anchors = (uint32_t)v;
    const char *ah = pa_json_str(o, "anchor_hash");
    if (!ah || !b64_decode(ah, (uint8_t *)e->anchor_hash, (size_t)e->n_anchors * 8))
        return BAD("fingerprint: bad anchor hashes");
    if (!pa_json_int(o, "anchor_c", &v) || v < 0 || v > PA_SK_ANCHOR_C)
        return BAD("fingerprint: bad anchor width");
    e->anchor_c = (uint32_t)v;
    uint32_t k = e->n_anchors;
    pa_vec tri, rows;
    if (!vec_from_json(cJSON_GetObjectItemCaseSensitive(o, "anchor_cos"),
                       PA_SK_ANCHORS * (PA_SK_ANCHORS + 1) / 2, &tri))
        return BAD("fingerprint: bad anchor similarity matrix");
    if (tri.n != (size_t)k * (k + 1) / 2) {
        free(tri.v);
        return BAD("fingerprint: anchor similarity matrix size mismatch");
    }
    if (!vec_from_json(cJSON_GetObjectItemCaseSensitive(o, "anchor_rows"),
                       PA_SK_ANCHORS * PA_SK_ANCHOR_C, &rows) ||
        rows.n != k * e->anchor_c) {
        free(tri.v);
        free(rows.v);
        return BAD("fingerprint: bad anchor rows");
    }
    e->anchor_rows = rows.v ? rows.v : calloc(1, sizeof(float));
    e->anchor_cos = calloc((size_t)k * k + 1, sizeof(float));
    if (!e->anchor_cos || !e->anchor_rows) {
        free(tri.v);
        return BAD("fingerprint: out of memory");
    }
    size_t p = 0;
    for (uint32_t a = 0; a < k; a++)
        for (uint32_t b = a; b < k; b++) {
            e->anchor_cos[(size_t)a * k + b] = tri.v[p];
            e->anchor_cos[(size_t)b * k + a] = tri.v[p];
            p++;
        }
    free(tri.v);
    return true;
}

pa_status pa_fp_from_json(const char *json, size_t len, const char *label, pa_fingerprint **out,
                          pa_error *err)
{
    *out = NULL;
    cJSON *o = pa_json_parse(json, len, label, err);
    if (!o)
        return err->status;
    pa_fingerprint *fp = calloc(1, sizeof *fp);
    bool ok = fp != NULL;
    const char *schema = pa_json_str(o, "schema");
    if (ok && (!schema || strcmp(schema, FP_SCHEMA) != 0))
        ok = BAD("%s: not a %s fingerprint", label, FP_SCHEMA);
    int64_t compact;
    if (ok && pa_json_int(o, "compact", &compact) && compact == PA_CK_VERSION)
        fp->compact = true; /* the int8-grid finding was made on the full sketches */
    if (ok) {
        fp->path = dup_str(o, "path");
        copy_str(fp->format, sizeof fp->format, pa_json_str(o, "format"));
        copy_str(fp->digest, sizeof fp->digest, pa_json_str(o, "digest"));
        const cJSON *files = cJSON_GetObjectItemCaseSensitive(o, "files");
        int nf = cJSON_GetArraySize(files);
        if (nf < 0 || (unsigned)nf > 100000u)
            ok = BAD("%s: bad file list", label);
        fp->files = calloc(nf ? (size_t)nf : 1, sizeof *fp->files);
        ok = ok && fp->files;
        for (const cJSON *f = files ? files->child : NULL; ok && f; f = f->next) {
            pa_file_fp *x = &fp->files[fp->n_files];
            x->name = dup_str(f, "name");
            if (!x->name) {
                ok = BAD("%s: file entry without a name", label);
                break;
            }
            fp->n_files++;
            int64_t v;
            x->size = pa_json_int(f, "size", &v) && v >= 0 ? (uint64_t)v : 0;
            x->mtime_ns = pa_json_int(f, "mtime_ns", &v) ? v : 0;
            copy_str(x->sha256, sizeof x->sha256, pa_json_str(f, "sha256"));
        }
    }
    const cJSON *m = ok ? cJSON_GetObjectItemCaseSensitive(o, "mfi") : NULL;
    if (ok && cJSON_IsObject(m)) {
        fp->has_mfi = true;
        if (!mfi_from_json(m, &fp->mfi))
            ok = BAD("%s: bad mfi", label);
    }
    const cJSON *t = ok ? cJSON_GetObjectItemCaseSensitive(o, "tokenizer") : NULL;
    if (ok && cJSON_IsObject(t)) {
        fp->has_tfv = true;
        tfv_from_json(t, &fp->tfv);
    }
    const cJSON *v = ok ? cJSON_GetObjectItemCaseSensitive(o, "vocab") : NULL;
    if (ok && cJSON_IsObject(v)) {
        int64_t n, k;
        const char *h = pa_json_str(v, "hashes");
        if (!pa_json_int(v, "n", &n) || !pa_json_int(v, "k", &k) || k < 0 || k > PA_SK_VOCAB ||
            n < k || !h) {
            ok = BAD("%s: bad vocabulary sketch", label);
        } else {
            fp->vocab_n = (uint64_t)n;
            fp->vocab_k = (uint32_t)k;
            fp->vocab_hashes = malloc(k ? (size_t)k * 8 : 8);
            if (!fp->vocab_hashes || !b64_decode(h, (uint8_t *)fp->vocab_hashes, (size_t)k * 8))
                ok = BAD("%s: bad vocabulary hashes", label);
            for (int64_t i = 1; ok && i < k; i++)
                if (fp->vocab_hashes[i] <= fp->vocab_hashes[i - 1])
                    ok = BAD("%s: vocabulary hashes not sorted", label);
        }
    }
    const cJSON *w = ok ? cJSON_GetObjectItemCaseSensitive(o, "weights") : NULL;
    if (ok && cJSON_IsObject(w)) {
        const cJSON *ts = cJSON_GetObjectItemCaseSensitive(w, "tensors");
        int n = cJSON_GetArraySize(ts);
        if (!cJSON_IsArray(ts) || n < 0 || (unsigned)n > PA_FP_MAX_TENSORS)
            ok = BAD("%s: bad tensor list", label);
        if (ok)
            fp->tensors = calloc(n ? (size_t)n : 1, sizeof *fp->tensors);
        ok = ok && fp->tensors;
        for (const cJSON *x = ok ? ts->child : NULL; ok && x; x = x->next) {
            ok = tensor_from_json(x, &fp->tensors[fp->n_tensors], err);
            fp->n_tensors++;
            if (ok) {
                const pa_tensor_fp *tt = &fp->tensors[fp->n_tensors - 1];
                fp->n_params += tt->numel;
                if (tt->layer >= 0 && (uint32_t)tt->layer + 1 > fp->n_layers)
                    fp->n_layers = (uint32_t)tt->layer + 1;
            }
        }
        int64_t b;
        if (ok && pa_json_int(w, "bytes", &b) && b >= 0)
            fp->weight_bytes = (uint64_t)b;
        if (fp->compact)
            fp->grid = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(w, "int8_grid"));
        if (ok)
            ok = embed_from_json(cJSON_GetObjectItemCaseSensitive(w, "embedding"), &fp->embed, err);
        if (ok && !probe_from_json(cJSON_GetObjectItemCaseSensitive(w, "probe"), &fp->probe))
            ok = BAD("%s: bad invariant products (probe)", label);
        fp->has_weights = ok && fp->n_tensors > 0;
    }
    cJSON_Delete(o);
    if (ok && !pa_fp_compact(fp))
        ok = false; /* out of memory: reported below */
    if (!ok) {
        if (!err->status)
            pa_error_set(err, PA_E_NOMEM, "%s: out of memory", label);
        pa_fingerprint_free(fp);
        return err->status;
    }
    *out = fp;
    return PA_OK;
}
