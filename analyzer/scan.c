/* Scan: rank reference entries (and extra candidates such as stored models) for one model.
 *
 * Two kinds of score, and they are never mixed up:
 *  - weights on both sides: pa_compare's lineage score and verdict (the only way to `derived` or
 *    `identical`);
 *  - otherwise a family hint from metadata and tokenizer features: 0.6 MFI (tier 1 = 1.0,
 *    tier 2 = 0.9, else the tier-3 soft score) + 0.4 tokenizer (TFV, or 0.25 TFV + 0.75 VOA with
 *    vocabulary sketches on both sides), renormalised over what both sides have; `weak` at or
 *    above the threshold, else `none`. A shared config or tokenizer is free to copy, so this can
 *    name a family but never a parent (analyzer/score.c: metadata never confirms lineage).
 * Candidates first pass a cheap pre-filter (size bucket, then metadata) so a scan against many
 * stored weight fingerprints only compares plausible ones.
 */
#include "fp.h"
#include "jsonutil.h"
#include "refdb.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define W_MFI 0.6
#define W_TOK 0.4
#define SIZE_BUCKET_SPAN 3.0 /* log2: a candidate within 8x the parameter count */
#define HIDDEN_RATIO 0.5     /* metadata pre-filter: hidden sizes within 2x ... */
#define VOCAB_RATIO 0.9      /* ... or vocabularies within 10% ... or the same model_type */

/* ------------------------------------------------------------------ pre-filter */

static bool known(int64_t v)
{
    return v != PA_NULL_INT && v > 0;
}

uint64_t pa_scan_param_estimate(const pa_fingerprint *fp)
{
    if (!fp)
        return 0;
    if (fp->has_weights && fp->n_params)
        return fp->n_params;
    if (!fp->has_mfi)
        return 0;
    const pa_mfi *m = &fp->mfi;
    if (!known(m->hidden_size) || !known(m->num_hidden_layers))
        return 0;
    double h = (double)m->hidden_size, layers = (double)m->num_hidden_layers;
    double heads = known(m->num_attention_heads) ? (double)m->num_attention_heads : 1;
    double kv = known(m->num_key_value_heads) ? (double)m->num_key_value_heads : heads;
    double head_dim = known(m->head_dim) ? (double)m->head_dim : h / heads;
    double inter = known(m->intermediate_size) ? (double)m->intermediate_size : 4 * h;
    bool gated = m->hidden_act && (strstr(m->hidden_act, "silu") || strstr(m->hidden_act, "swi") ||
                                   strstr(m->hidden_act, "glu"));
    double attn = 2 * h * heads * head_dim + 2 * h * kv * head_dim;
    double mlp = (gated ? 3 : 2) * h * inter;
    double vocab = known(m->vocab_size) ? (double)m->vocab_size : 0;
    double embed = vocab * h * (m->tie_word_embeddings == 1 ? 1 : 2);
    double total = layers * (attn + mlp) + embed;
    return isfinite(total) && total >= 1 && total < 1.8e19 ? (uint64_t)total : 0;
}

static double ratio(int64_t a, int64_t b)
{
    double x = (double)a, y = (double)b;
    return x < y ? x / y : y / x;
}

bool pa_scan_prefilter(const pa_fingerprint *cand, const pa_fingerprint *model)
{
    uint64_t pc = pa_scan_param_estimate(cand), pm = pa_scan_param_estimate(model);
    if (pc && pm && fabs(log2((double)pc) - log2((double)pm)) > SIZE_BUCKET_SPAN)
        return false;
    if (!cand->has_mfi || !model->has_mfi)
        return true;
    const pa_mfi *a = &cand->mfi, *b = &model->mfi;
    if (a->arch_hash[0] && strcmp(a->arch_hash, b->arch_hash) == 0)
        return true;
    if (a->model_type && b->model_type && strcmp(a->model_type, b->model_type) == 0)
        return true;
    if (known(a->hidden_size) && known(b->hidden_size) &&
        ratio(a->hidden_size, b->hidden_size) >= HIDDEN_RATIO)
        return true;
    if (known(a->vocab_size) && known(b->vocab_size) &&
        ratio(a->vocab_size, b->vocab_size) >= VOCAB_RATIO)
        return true;
    return false;
}

/* ------------------------------------------------------------------ scoring */

static bool str_eq(const char *a, const char *b)
{
    return (!a || !b) ? a == b : strcmp(a, b) == 0;
}

/* Share of config fields that agree exactly, beyond the ones arch_hash covers — orders entries
 * whose MFI score ties (several models share one arch_hash but differ in rope, ids, ...). */
static double metadata_detail(const pa_mfi *a, const pa_mfi *b)
{
    int same = 0, total = 0;
#define FIELD(cond) (total++, same += (cond) ? 1 : 0)
    FIELD(str_eq(a->model_type, b->model_type));
    FIELD(str_eq(a->architectures, b->architectures));
    FIELD(a->hidden_size == b->hidden_size);
    FIELD(a->num_hidden_layers == b->num_hidden_layers);
    FIELD(a->num_attention_heads == b->num_attention_heads);
    FIELD(a->num_key_value_heads == b->num_key_value_heads);
    FIELD(a->intermediate_size == b->intermediate_size);
    FIELD(a->vocab_size == b->vocab_size);
    FIELD(a->max_position_embeddings == b->max_position_embeddings);
    FIELD(str_eq(a->hidden_act, b->hidden_act));
    FIELD((isnan(a->rope_theta) && isnan(b->rope_theta)) || a->rope_theta == b->rope_theta);
    FIELD(str_eq(a->rope_scaling, b->rope_scaling));
    FIELD(a->tie_word_embeddings == b->tie_word_embeddings);
    FIELD(a->bos_token_id == b->bos_token_id);
    FIELD(a->eos_token_id == b->eos_token_id);
    FIELD(a->head_dim == b->head_dim);
    FIELD(a->attention_bias == b->attention_bias);
    FIELD(a->qk_norm == b->qk_norm);
    FIELD(strcmp(a->attention_style, b->attention_style) == 0);
    FIELD(strcmp(a->norm_type, b->norm_type) == 0);
    FIELD(strcmp(a->pos_encoding, b->pos_encoding) == 0);
#undef FIELD
    return (double)same / total;
}

/* Below this, the quick look rules lineage out and the full comparison is skipped. */
#define QUICK_NONE 0.25

static void score_one(const pa_fingerprint *cand, const pa_fingerprint *model, double threshold,
                      pa_scan_match *m)
{
    double quick = pa_lineage_quick(cand, model);
    if (isfinite(quick) && quick < QUICK_NONE) {
        m->evidence.weights = true;
        m->evidence.metadata = cand->has_mfi && model->has_mfi;
        m->evidence.tokenizer =
            (cand->has_tfv && model->has_tfv) || (cand->vocab_k > 0 && model->vocab_k > 0);
        m->mfi_tier = 0;
        m->mfi_score = NAN;
        m->tokenizer_score = NAN;
        m->detail = 0;
        m->score = quick > 0 ? quick : 0;
        m->rank = m->score;
        m->verdict = PA_V_NONE;
        return;
    }
    pa_compare_result r;
    pa_compare(cand, model, &r);
    m->evidence.weights = cand->has_weights && model->has_weights;
    m->evidence.metadata = cand->has_mfi && model->has_mfi;
    m->evidence.tokenizer =
        (cand->has_tfv && model->has_tfv) || (cand->vocab_k > 0 && model->vocab_k > 0);
    m->mfi_tier = r.mfi.valid ? r.mfi_tier : 0;
    m->mfi_score = r.mfi.valid ? r.mfi.value : NAN;
    m->tokenizer_score = isfinite(r.tokenizer_score) ? r.tokenizer_score : NAN;
    m->detail = m->evidence.metadata ? metadata_detail(&cand->mfi, &model->mfi) : 0;
    if (m->evidence.weights) {
        m->score = isfinite(r.score) ? r.score : 0;
        m->rank = isfinite(r.score) ? pa_parent_rank(&r, cand) : 0;
        m->verdict = r.verdict;
        return;
    }
    double sum = 0, wsum = 0;
    if (isfinite(m->mfi_score)) {
        sum += W_MFI * m->mfi_score;
        wsum += W_MFI;
    }
    if (isfinite(m->tokenizer_score)) {
        sum += W_TOK * m->tokenizer_score;
        wsum += W_TOK;
    }
    m->score = wsum > 0 ? sum / wsum : 0;
    m->score = m->score < 0 ? 0 : m->score > 1 ? 1 : m->score;
    m->rank = m->score;
    /* the honesty rule: metadata and tokenizer features give a family hint at most */
    m->verdict = wsum > 0 && m->score >= threshold ? PA_V_WEAK : PA_V_NONE;
}

static int cmp_match(const void *x, const void *y)
{
    const pa_scan_match *a = x, *b = y;
    if (a->verdict != b->verdict)
        return a->verdict > b->verdict ? -1 : 1;
    if (a->rank != b->rank)
        return a->rank > b->rank ? -1 : 1;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    if (a->detail != b->detail)
        return a->detail > b->detail ? -1 : 1;
    int c = strcmp(a->name, b->name);
    return c ? c : strcmp(a->family, b->family);
}

void pa_scan_free(pa_scan_match *matches, size_t n)
{
    if (!matches)
        return;
    for (size_t i = 0; i < n; i++) {
        free(matches[i].name);
        free(matches[i].family);
    }
    free(matches);
}

pa_status pa_scan(const pa_refdb *db, const pa_scan_ref *extra, size_t n_extra,
                  const pa_fingerprint *model, const pa_scan_options *opt, pa_scan_match **out,
                  size_t *n_out, pa_scan_stats *stats, pa_error *err)
{
    *out = NULL;
    *n_out = 0;
    if (stats)
        memset(stats, 0, sizeof *stats);
    if (!model || (n_extra && !extra))
        return pa_error_set(err, PA_E_ARG, "scan: no model or candidate list");
    pa_scan_options dflt = {5, PA_SCAN_DEFAULT_THRESHOLD, false};
    if (!opt)
        opt = &dflt;
    double threshold = opt->threshold > 0 ? opt->threshold : PA_SCAN_DEFAULT_THRESHOLD;
    size_t n_db = pa_refdb_count(db), total = n_db + n_extra;
    if (total < n_db)
        return pa_error_set(err, PA_E_LIMIT, "scan: too many candidates");
    pa_scan_match *m = calloc(total ? total : 1, sizeof *m);
    if (!m)
        return pa_error_set(err, PA_E_NOMEM, "scan: out of memory");
    size_t n = 0, compared = 0;
    for (size_t i = 0; i < total; i++) {
        const char *name, *family;
        const pa_fingerprint *fp;
        if (i < n_db) {
            const pa_refentry *e = pa_refdb_entry(db, i);
            name = e->name;
            family = e->family;
            fp = e->fp;
        } else {
            name = extra[i - n_db].name;
            family = extra[i - n_db].family;
            fp = extra[i - n_db].fp;
        }
        if (!fp || !name)
            continue;
        if (!opt->no_prefilter && !pa_scan_prefilter(fp, model))
            continue;
        compared++;
        pa_scan_match *x = &m[n];
        x->name = strdup(name);
        x->family = strdup(family ? family : name);
        if (!x->name || !x->family) {
            pa_scan_free(m, n + 1);
            return pa_error_set(err, PA_E_NOMEM, "scan: out of memory");
        }
        x->from_refdb = i < n_db;
        score_one(fp, model, threshold, x);
        n++;
    }
    if (n > 1)
        qsort(m, n, sizeof *m, cmp_match);
    size_t keep = opt->top_k && opt->top_k < n ? opt->top_k : n;
    for (size_t i = keep; i < n; i++) {
        free(m[i].name);
        free(m[i].family);
    }
    if (stats) {
        stats->candidates = total;
        stats->compared = compared;
    }
    *out = m;
    *n_out = keep;
    return PA_OK;
}

static cJSON *num4(double v)
{
    return isfinite(v) ? cJSON_CreateNumber(round(v * 10000) / 10000) : cJSON_CreateNull();
}

char *pa_scan_to_json(const char *model_label, const pa_scan_match *matches, size_t n,
                      const pa_scan_stats *stats, bool pretty)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "schema", "provfs.scan/1");
    cJSON_AddStringToObject(o, "model", model_label ? model_label : "");
    if (stats) {
        cJSON_AddNumberToObject(o, "candidates", (double)stats->candidates);
        cJSON_AddNumberToObject(o, "compared", (double)stats->compared);
    }
    cJSON *arr = cJSON_AddArrayToObject(o, "matches");
    for (size_t i = 0; arr && i < n; i++) {
        const pa_scan_match *x = &matches[i];
        cJSON *e = cJSON_CreateObject();
        if (!e)
            break;
        cJSON_AddStringToObject(e, "name", x->name);
        cJSON_AddStringToObject(e, "family", x->family);
        pa_json_add(e, "score", num4(x->score));
        cJSON_AddStringToObject(e, "verdict", pa_verdict_name(x->verdict));
        cJSON *ev = cJSON_AddObjectToObject(e, "evidence");
        if (ev) {
            cJSON_AddBoolToObject(ev, "weights", x->evidence.weights);
            cJSON_AddBoolToObject(ev, "metadata", x->evidence.metadata);
            cJSON_AddBoolToObject(ev, "tokenizer", x->evidence.tokenizer);
        }
        cJSON_AddStringToObject(e, "kind", x->from_refdb ? "reference" : "stored");
        if (x->mfi_tier)
            cJSON_AddNumberToObject(e, "mfi_tier", x->mfi_tier);
        else
            cJSON_AddNullToObject(e, "mfi_tier");
        pa_json_add(e, "mfi_score", num4(x->mfi_score));
        pa_json_add(e, "tokenizer_score", num4(x->tokenizer_score));
        cJSON_AddItemToArray(arr, e);
    }
    char *text = pretty ? cJSON_Print(o) : cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}
