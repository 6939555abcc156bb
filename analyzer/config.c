/* config.json → MFI (metadata family identification), hash-compatible with the reference method.
 *
 * The reference (Cisco's Model Provenance Kit) reads the config through Transformers' AutoConfig
 * and hashes Python values with json.dumps. We read the raw JSON, so:
 *  - Aliases are the Transformers attribute maps that matter for the hashed fields (GPT-2 style
 *    n_embd/n_layer/n_head/n_positions, T5 style d_model/num_layers/num_heads, d_kv for head_dim),
 *    applied whenever the canonical key is missing.
 *  - A field the reference reads with getattr(cfg, name, 0) hashes as 0 when absent (as its
 *    database records for T5, BLOOM and ChatGLM configs); num_key_value_heads, model_type and
 *    architectures hash as null. The struct keeps PA_NULL_INT for "absent".
 *  - Present values are hashed as written (cJSON duplicate → pa_json_pydumps), so a string or a
 *    null where a number belongs hashes exactly as Python would write it.
 *  - Values the config classes would fill in from their own defaults (e.g. LlamaConfig copying
 *    num_attention_heads into a missing num_key_value_heads) cannot be known without the classes;
 *    configs written by save_pretrained() carry them, so this rarely matters.
 */
#include "jsonutil.h"
#include "sha.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Aliases, canonical name first (Transformers attribute_map of GPT-2/GPT-J/BigCode, T5, BLOOM). */
static const char *const k_hidden[] = {"hidden_size", "n_embd", "d_model", "n_embed", NULL};
static const char *const k_layers[] = {"num_hidden_layers", "n_layer", "num_layers", NULL};
static const char *const k_heads[] = {"num_attention_heads", "n_head", "num_heads", NULL};
static const char *const k_kv[] = {"num_key_value_heads", NULL};
static const char *const k_positions[] = {"max_position_embeddings", "n_positions", NULL};
static const char *const k_vocab[] = {"vocab_size", NULL};
static const char *const k_head_dim[] = {"head_dim", "d_kv", NULL};

/* First present member among names (JSON null counts as present, like a Python attribute set to
 * None), or NULL. */
static const cJSON *cfg_get(const cJSON *cfg, const char *const *names)
{
    for (; *names; names++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, *names);
        if (v)
            return v;
    }
    return NULL;
}

static bool item_int(const cJSON *v, int64_t *out)
{
    if (!cJSON_IsNumber(v))
        return false;
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < -9.0e18 || d > 9.0e18)
        return false;
    *out = (int64_t)d;
    return true;
}

static int64_t cfg_int(const cJSON *cfg, const char *const *names)
{
    int64_t x;
    return item_int(cfg_get(cfg, names), &x) ? x : PA_NULL_INT;
}

/* Python truthiness of a JSON value (absent counts as false). */
static bool item_truthy(const cJSON *v)
{
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v))
        return false;
    if (cJSON_IsNumber(v))
        return v->valuedouble != 0.0;
    if (cJSON_IsString(v))
        return v->valuestring && v->valuestring[0];
    if (cJSON_IsArray(v) || cJSON_IsObject(v))
        return v->child != NULL;
    return true;
}

static bool has_key(const cJSON *cfg, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(cfg, key) != NULL;
}

/* Python's round(x, ndigits) for ndigits >= 0: glibc prints the exact binary value correctly
 * rounded (ties to even), which is what CPython's float rounding does too. */
static double py_round(double x, int ndigits)
{
    if (!isfinite(x))
        return x;
    char buf[400];
    snprintf(buf, sizeof buf, "%.*f", ndigits, x);
    return strtod(buf, NULL);
}

/* Python's round(x, -2): nearest multiple of 100, exact ties to the even multiple. */
static double py_round_hundreds(double x)
{
    if (!isfinite(x))
        return x;
    double ax = fabs(x), r;
    if (ax < 9.0e15) {
        double ip = floor(ax);
        double frac = ax - ip; /* exact */
        int64_t n = (int64_t)ip;
        int64_t rem = n % 100, base = n - rem;
        bool up;
        if (rem > 50 || (rem == 50 && frac > 0.0))
            up = true;
        else if (rem < 50)
            up = false;
        else
            up = ((base / 100) % 2) != 0; /* exactly halfway */
        r = (double)(base + (up ? 100 : 0));
    } else {
        double rem = fmod(ax, 100.0); /* exact; ax is an integer here */
        double base = ax - rem;
        bool up = rem > 50.0 || (rem == 50.0 && fmod(base / 100.0, 2.0) != 0.0);
        r = up ? base + 100.0 : base;
    }
    return x < 0 ? -r : r;
}

/* str(float) in Python (repr): "10000.0", "1e+16", "inf". */
static void py_float_str(double v, char *out, size_t cap)
{
    if (isnan(v)) {
        snprintf(out, cap, "nan");
    } else if (isinf(v)) {
        snprintf(out, cap, v > 0 ? "inf" : "-inf");
    } else if (v == floor(v) && fabs(v) < 1e16) {
        snprintf(out, cap, "%.1f", v);
    } else if (fabs(v) >= 1e16 || fabs(v) < 1e-4) {
        for (int prec = 0; prec <= 16; prec++) {
            snprintf(out, cap, "%.*e", prec, v);
            if (strtod(out, NULL) == v)
                break;
        }
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(out, cap, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                break;
        }
        if (!strpbrk(out, ".e"))
            snprintf(out + strlen(out), cap - strlen(out), ".0");
    }
}

/* pa_json_pydumps refuses very deep values; check the ones we write first, so that a hostile
 * config gets PA_E_LIMIT rather than a misleading out-of-memory error. The recursion stops at the
 * limit, whatever the input. */
#define CFG_MAX_DUMP_DEPTH 64
static bool depth_ok(const cJSON *v, int depth)
{
    if (!v)
        return true;
    if (depth > CFG_MAX_DUMP_DEPTH)
        return false;
    for (const cJSON *c = v->child; c; c = c->next)
        if (!depth_ok(c, depth + 1))
            return false;
    return true;
}

static char *xstrdup(const char *s, bool *oom)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *oom = true;
    return d;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

/* Transformers' _resolve_text_backbone: a multimodal or encoder-decoder config keeps the text model
 * in text_config (or decoder) when the top level has no hidden size. */
static const cJSON *text_backbone(const cJSON *root)
{
    const cJSON *h = cfg_get(root, k_hidden);
    bool missing_or_zero = !h || (cJSON_IsNumber(h) && h->valuedouble == 0.0) || cJSON_IsFalse(h);
    if (!missing_or_zero)
        return root;
    static const char *const subs[] = {"text_config", "decoder"};
    for (size_t i = 0; i < 2; i++) {
        const cJSON *sub = cJSON_GetObjectItemCaseSensitive(root, subs[i]);
        if (!cJSON_IsObject(sub))
            continue;
        const cJSON *sh = cfg_get(sub, k_hidden);
        if (cJSON_IsNumber(sh) && sh->valuedouble > 0.0)
            return sub;
    }
    return root;
}

/* First positive of intermediate_size, d_ff, encoder_ffn_dim, decoder_ffn_dim, ffn_dim; else
 * hidden_dim when it differs from hidden_size (DistilBERT); else 0. GPT-2's n_inner is not read:
 * Transformers has no alias for it, so the reference records 0 for GPT-2 style configs. */
static int64_t resolve_intermediate(const cJSON *cfg)
{
    static const char *const names[] = {"intermediate_size", "d_ff", "encoder_ffn_dim",
                                        "decoder_ffn_dim", "ffn_dim"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, names[i]);
        if (cJSON_IsNumber(v) && v->valuedouble > 0.0 && v->valuedouble < 9.0e18)
            return (int64_t)v->valuedouble; /* int(val) truncates */
    }
    const cJSON *hd = cJSON_GetObjectItemCaseSensitive(cfg, "hidden_dim");
    if (cJSON_IsNumber(hd) && hd->valuedouble > 0.0 && hd->valuedouble < 9.0e18) {
        const cJSON *hs = cfg_get(cfg, k_hidden);
        double hidden = cJSON_IsNumber(hs) ? hs->valuedouble : 0.0;
        if (hd->valuedouble != hidden)
            return (int64_t)hd->valuedouble;
    }
    return 0;
}

/* Append a copy of v (or the fallback when v is absent) to arr; false on allocation failure. */
static bool arr_add_item(cJSON *arr, const cJSON *v, cJSON *fallback)
{
    cJSON *item = v ? cJSON_Duplicate(v, true) : fallback;
    if (v && fallback)
        cJSON_Delete(fallback);
    return item && cJSON_AddItemToArray(arr, item);
}

static bool hash_json(const cJSON *arr, char out[65])
{
    char *text = pa_json_pydumps(arr, true);
    if (!text)
        return false;
    bool ok = pa_sha256_hex(text, strlen(text), out);
    free(text);
    return ok;
}

/* arch_hash: [model_type, architectures, hidden_size, num_hidden_layers, num_attention_heads,
 * num_key_value_heads, intermediate_size, vocab_size, max_position_embeddings]. */
static bool arch_hash(const cJSON *root, const cJSON *cfg, int64_t intermediate, char out[65])
{
    cJSON *arr = cJSON_CreateArray();
    if (!arr)
        return false;
    bool ok = arr_add_item(arr, cJSON_GetObjectItemCaseSensitive(root, "model_type"),
                           cJSON_CreateNull()) &&
              arr_add_item(arr, cJSON_GetObjectItemCaseSensitive(root, "architectures"),
                           cJSON_CreateNull()) &&
              arr_add_item(arr, cfg_get(cfg, k_hidden), cJSON_CreateNumber(0)) &&
              arr_add_item(arr, cfg_get(cfg, k_layers), cJSON_CreateNumber(0)) &&
              arr_add_item(arr, cfg_get(cfg, k_heads), cJSON_CreateNumber(0)) &&
              arr_add_item(arr, cfg_get(cfg, k_kv), cJSON_CreateNull()) &&
              arr_add_item(arr, NULL, cJSON_CreateNumber((double)intermediate)) &&
              arr_add_item(arr, cfg_get(cfg, k_vocab), cJSON_CreateNumber(0)) &&
              arr_add_item(arr, cfg_get(cfg, k_positions), cJSON_CreateNumber(0)) &&
              hash_json(arr, out);
    cJSON_Delete(arr);
    return ok;
}

static int64_t token_id_default(const cJSON *root, const cJSON *cfg, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v)
        v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsArray(v)) /* eos_token_id: [1, 107] — the first is the primary one */
        v = v->child;
    int64_t x;
    return item_int(v, &x) ? x : PA_NULL_INT;
}

static void derive_attention(pa_mfi *m)
{
    int64_t heads = m->num_attention_heads;
    int64_t nah = (heads == PA_NULL_INT || heads == 0) ? 1 : heads;
    int64_t nkv = m->num_key_value_heads;
    m->gqa_ratio = (nkv != PA_NULL_INT && nkv != 0) ? py_round((double)nah / (double)nkv, 1) : 1.0;
    const char *style = "GQA";
    if (nkv == PA_NULL_INT || nkv == nah)
        style = "MHA";
    else if (nkv == 1)
        style = "MQA";
    copy_str(m->attention_style, sizeof m->attention_style, style);
}

static void derive_from_config(pa_mfi *m, const cJSON *cfg)
{
    const char *norm = "unknown";
    if (has_key(cfg, "rms_norm_eps") || has_key(cfg, "rms_norm_epsilon"))
        norm = "RMSNorm";
    else if (has_key(cfg, "layer_norm_eps") || has_key(cfg, "layer_norm_epsilon"))
        norm = "LayerNorm";
    copy_str(m->norm_type, sizeof m->norm_type, norm);

    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(cfg, "attention_bias");
    if (!bias)
        bias = cJSON_GetObjectItemCaseSensitive(cfg, "bias");
    m->attention_bias = (!bias || cJSON_IsNull(bias)) ? -1 : item_truthy(bias) ? 1 : 0;

    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(cfg, "query_pre_attn_scalar");
    m->qk_norm = item_truthy(cJSON_GetObjectItemCaseSensitive(cfg, "qk_layernorm")) ||
                 item_truthy(cJSON_GetObjectItemCaseSensitive(cfg, "qk_norm")) ||
                 (pre && !cJSON_IsNull(pre));

    const char *pos = "absolute";
    const char *pet = pa_json_str(cfg, "position_embedding_type");
    if (!isnan(m->rope_theta))
        pos = "RoPE";
    else if (pet)
        pos = pet;
    copy_str(m->pos_encoding, sizeof m->pos_encoding, pos);

    /* head_dim as configured (T5: d_kv); otherwise hidden / heads when that divides evenly. */
    m->head_dim = cfg_int(cfg, k_head_dim);
    if (m->head_dim == PA_NULL_INT && m->hidden_size > 0 && m->num_attention_heads > 0 &&
        m->hidden_size % m->num_attention_heads == 0)
        m->head_dim = m->hidden_size / m->num_attention_heads;
}

/* str(rope_scaling.get("type", "none")) when rope_scaling is a non-empty object, else "none". */
static void rope_scaling_type(const char *rope_scaling, char *out, size_t cap)
{
    copy_str(out, cap, "none");
    if (!rope_scaling)
        return;
    cJSON *rs = cJSON_Parse(rope_scaling);
    if (!cJSON_IsObject(rs) || !rs->child) {
        cJSON_Delete(rs);
        return;
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(rs, "type");
    if (!t) {
        /* default "none" */
    } else if (cJSON_IsString(t)) {
        copy_str(out, cap, t->valuestring);
    } else if (cJSON_IsNull(t)) {
        copy_str(out, cap, "None");
    } else if (cJSON_IsBool(t)) {
        copy_str(out, cap, cJSON_IsTrue(t) ? "True" : "False");
    } else if (cJSON_IsNumber(t)) {
        double d = t->valuedouble;
        if (d == floor(d) && fabs(d) < 9.0e15)
            snprintf(out, cap, "%lld", (long long)d); /* written as an int in the JSON, usually */
        else
            py_float_str(d, out, cap);
    } else {
        /* Python would print its repr; never seen in practice. */
        char *s = pa_json_pydumps(t, false);
        if (s)
            copy_str(out, cap, s);
        free(s);
    }
    cJSON_Delete(rs);
}

/* family_hash: json.dumps([model_type, attention_style, hidden_act, norm_type, tokenizer_hash,
 * rope_theta_bucket, rope_scaling_type], sort_keys=True). rope_theta_bucket is
 * str(round(rope_theta, -2)) — "10000.0" — or "none". A rope_theta written as an integer (10000)
 * gives "10000" in Python; cJSON does not keep that distinction, so we always write the float form.
 * The tokenizer_hash part differs from the reference anyway (see pa_mfi_finish). */
bool pa_mfi_finish(pa_mfi *mfi)
{
    if (!mfi)
        return false;
    mfi->family_hash[0] = '\0';
    if (!mfi->tokenizer_hash[0] && !pa_sha256_hex("", 0, mfi->tokenizer_hash))
        return false;
    char bucket[64] = "none", scaling[128];
    if (!isnan(mfi->rope_theta))
        py_float_str(py_round_hundreds(mfi->rope_theta), bucket, sizeof bucket);
    rope_scaling_type(mfi->rope_scaling, scaling, sizeof scaling);

    cJSON *arr = cJSON_CreateArray();
    if (!arr)
        return false;
    bool ok =
        arr_add_item(arr, NULL,
                     mfi->model_type ? cJSON_CreateString(mfi->model_type) : cJSON_CreateNull()) &&
        arr_add_item(arr, NULL, cJSON_CreateString(mfi->attention_style)) &&
        arr_add_item(arr, NULL,
                     mfi->hidden_act ? cJSON_CreateString(mfi->hidden_act) : cJSON_CreateNull()) &&
        arr_add_item(arr, NULL, cJSON_CreateString(mfi->norm_type)) &&
        arr_add_item(arr, NULL, cJSON_CreateString(mfi->tokenizer_hash)) &&
        arr_add_item(arr, NULL, cJSON_CreateString(bucket)) &&
        arr_add_item(arr, NULL, cJSON_CreateString(scaling)) && hash_json(arr, mfi->family_hash);
    if (!ok)
        mfi->family_hash[0] = '\0';
    cJSON_Delete(arr);
    return ok;
}

pa_status pa_mfi_parse(const char *json, size_t len, const char *label, pa_mfi *out, pa_error *err)
{
    if (!label)
        label = "config.json";
    if (!out)
        return pa_error_set(err, PA_E_ARG, "%s: no output", label);
    memset(out, 0, sizeof *out);
    if (!json)
        return pa_error_set(err, PA_E_ARG, "%s: no input", label);

    cJSON *root = pa_json_parse(json, len, label, err);
    if (!root)
        return err ? err->status : PA_E_FORMAT;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return pa_error_set(err, PA_E_FORMAT, "%s: config is not a JSON object", label);
    }
    const cJSON *cfg = text_backbone(root);
    const cJSON *dumped[] = {cJSON_GetObjectItemCaseSensitive(root, "model_type"),
                             cJSON_GetObjectItemCaseSensitive(root, "architectures"),
                             cfg_get(cfg, k_hidden),
                             cfg_get(cfg, k_layers),
                             cfg_get(cfg, k_heads),
                             cfg_get(cfg, k_kv),
                             cfg_get(cfg, k_vocab),
                             cfg_get(cfg, k_positions),
                             cJSON_GetObjectItemCaseSensitive(cfg, "rope_scaling")};
    for (size_t i = 0; i < sizeof dumped / sizeof dumped[0]; i++) {
        if (!depth_ok(dumped[i], 0)) {
            pa_error_set(err, PA_E_LIMIT, "%s: \"%.64s\" is nested too deeply", label,
                         dumped[i]->string ? dumped[i]->string : "?");
            cJSON_Delete(root);
            return PA_E_LIMIT;
        }
    }
    bool oom = false;

    out->model_type = xstrdup(pa_json_str(root, "model_type"), &oom);
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    out->architectures = arch ? pa_json_pydumps(arch, false) : strdup("null");
    if (!out->architectures)
        oom = true;

    out->hidden_size = cfg_int(cfg, k_hidden);
    out->num_hidden_layers = cfg_int(cfg, k_layers);
    out->num_attention_heads = cfg_int(cfg, k_heads);
    out->num_key_value_heads = cfg_int(cfg, k_kv);
    out->intermediate_size = resolve_intermediate(cfg);
    out->vocab_size = cfg_int(cfg, k_vocab);
    out->max_position_embeddings = cfg_int(cfg, k_positions);

    const cJSON *act = cJSON_GetObjectItemCaseSensitive(cfg, "hidden_act");
    if (!act)
        act = cJSON_GetObjectItemCaseSensitive(cfg, "hidden_activation");
    out->hidden_act = cJSON_IsString(act) ? xstrdup(act->valuestring, &oom) : NULL;

    const cJSON *theta = cJSON_GetObjectItemCaseSensitive(cfg, "rope_theta");
    out->rope_theta =
        (cJSON_IsNumber(theta) && isfinite(theta->valuedouble)) ? theta->valuedouble : NAN;
    const cJSON *scaling = cJSON_GetObjectItemCaseSensitive(cfg, "rope_scaling");
    if (scaling && !cJSON_IsNull(scaling)) {
        out->rope_scaling = pa_json_pydumps(scaling, false);
        if (!out->rope_scaling)
            oom = true;
    }
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(cfg, "tie_word_embeddings");
    out->tie_word_embeddings = cJSON_IsBool(tie) ? (cJSON_IsTrue(tie) ? 1 : 0) : -1;
    out->bos_token_id = token_id_default(root, cfg, "bos_token_id");
    out->eos_token_id = token_id_default(root, cfg, "eos_token_id");

    derive_attention(out);
    derive_from_config(out, cfg);
    if (!oom && !arch_hash(root, cfg, out->intermediate_size, out->arch_hash))
        oom = true;
    cJSON_Delete(root);
    if (oom) {
        pa_mfi_free(out);
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory while hashing the config", label);
    }
    if (!pa_mfi_finish(out)) {
        pa_mfi_free(out);
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory while hashing the config", label);
    }
    return PA_OK;
}

void pa_mfi_free(pa_mfi *mfi)
{
    if (!mfi)
        return;
    free(mfi->model_type);
    free(mfi->architectures);
    free(mfi->hidden_act);
    free(mfi->rope_scaling);
    memset(mfi, 0, sizeof *mfi);
}

static bool str_eq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

/* 1 - |a - b| / max(a, b) >= 0.9 for two positive dimensions. */
static bool dims_close(int64_t a, int64_t b)
{
    double da = (double)a, db = (double)b;
    return 1.0 - fabs(da - db) / fmax(da, db) >= 0.90;
}

/* The reference's tier-3 soft score over 11 weighted features. */
static double tier3(const pa_mfi *a, const pa_mfi *b)
{
    double score = 0.0, total = 0.0, w;

    w = 2.0; /* token id signature */
    total += w;
    score +=
        w * ((a->bos_token_id == b->bos_token_id) + (a->eos_token_id == b->eos_token_id)) / 2.0;

    w = 1.8;
    if (a->hidden_size != PA_NULL_INT && b->hidden_size != PA_NULL_INT && a->hidden_size > 0 &&
        b->hidden_size > 0) {
        total += w;
        if (dims_close(a->hidden_size, b->hidden_size))
            score += w;
    }

    w = 1.5;
    total += w;
    if (a->qk_norm == b->qk_norm)
        score += w;

    w = 1.5;
    if (a->num_hidden_layers != PA_NULL_INT && b->num_hidden_layers != PA_NULL_INT &&
        a->num_hidden_layers > 0 && b->num_hidden_layers > 0) {
        total += w;
        if (dims_close(a->num_hidden_layers, b->num_hidden_layers))
            score += w;
    }

    w = 1.5; /* `if va and vb` in Python: any non-zero, non-null value */
    int64_t va = a->vocab_size, vb = b->vocab_size;
    if (va != PA_NULL_INT && vb != PA_NULL_INT && va != 0 && vb != 0) {
        total += w;
        double da = (double)va, db = (double)vb;
        score += w * (1.0 - fabs(da - db) / fmax(da, db));
    }

    w = 1.5;
    total += w;
    if (strcmp(a->attention_style, b->attention_style) == 0)
        score += w;

    w = 1.2;
    total += w;
    double ra = a->rope_theta, rb = b->rope_theta;
    if (!isnan(ra) && !isnan(rb) && ra > 0 && rb > 0)
        score += w * (1.0 - fabs(ra - rb) / fmax(ra, rb));
    else if (isnan(ra) && isnan(rb))
        score += w;

    w = 0.5;
    total += w;
    if (strcmp(a->norm_type, b->norm_type) == 0)
        score += w;

    w = 0.4;
    total += w;
    if (strcmp(a->pos_encoding, b->pos_encoding) == 0)
        score += w;

    w = 0.4;
    total += w;
    if (a->attention_bias == b->attention_bias)
        score += w;

    w = 0.1;
    total += w;
    if (str_eq(a->model_type, b->model_type))
        score += w;

    return total > 0 ? py_round(score / total, 4) : 0.0;
}

double pa_mfi_similarity(const pa_mfi *a, const pa_mfi *b, int *tier)
{
    int t = 3;
    double s;
    if (!a || !b) {
        t = 0;
        s = 0.0;
    } else if (a->arch_hash[0] && strcmp(a->arch_hash, b->arch_hash) == 0) {
        t = 1;
        s = 1.0;
    } else if (a->family_hash[0] && strcmp(a->family_hash, b->family_hash) == 0 &&
               a->hidden_size == b->hidden_size && a->num_hidden_layers == b->num_hidden_layers) {
        t = 2;
        s = 0.9;
    } else {
        s = tier3(a, b);
    }
    if (tier)
        *tier = t;
    return s;
}
