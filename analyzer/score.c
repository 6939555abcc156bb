/* From signals to a verdict.
 *
 * Why the scoring looks like this (the weak spots of metadata-driven lineage scoring):
 *
 *  - Weight evidence decides. The lineage score is built from two element-wise signals whose
 *    value for independently trained models is a correlation of independent vectors, i.e. near 0:
 *      WEA          tensors aligned by role and layer (layer re-alignment for pruning/students,
 *                   shape search for renamed tensors); each tensor compared by its sampled block
 *                   and by its row and column sums — the sums do not change when neurons or heads
 *                   are permuted and barely change when some are pruned, so permutation and width
 *                   pruning cannot hide a parent; quantisation noise and fine-tune drift only
 *                   lower the correlation a little.
 *      anchor rows  embedding rows of tokens that share a string: survives vocabulary extension
 *                   and re-ordering.
 *    lineage = 0.8 WEA + 0.2 anchor rows (WEA alone when the embedding cannot be aligned): WEA
 *    covers every block of the network, the anchors only the input embedding.
 *  - Function-preserving re-expressions (rotation of the residual stream, per-neuron and per-head
 *    scaling, permutation) leave the element-wise views at noise; the invariant terms
 *    (signals.c) do not move under them: per-block products q·k, v·o, up·down on probe tokens
 *    and the embedding Gram matrix. invariant lineage = 0.8 products + 0.2 Gram. Either kind of
 *    weight evidence may establish lineage: lineage = max(element-wise, invariant). A candidate
 *    that explains >= 25 % of the child's parameters (coverage below) gets lineage >= 0.6: the
 *    second parent of a layer stitch owns half the blocks but not the embedding. Both are
 *    correlations of independent quantities for unrelated models, so the max of two near-0
 *    values stays near 0.
 *  - The reference method's weight statistics (EAS, NLF, LEP, END, WVC) are combined into its
 *    identity score with its weights (0.36/0.08/0.16/0.19/0.21) and reported. They describe the
 *    architecture and training recipe as much as the checkpoint (independent runs of one recipe
 *    score high), so they may only *support*.
 *  - Byte-identical tensors (SHA-256) are the most direct evidence there is: the share of b's
 *    tensors found unchanged in a tells a direct parent from a sibling that agrees just as well
 *    element-wise (a pruned model is closer to the base it was cut from than to an int8 copy of
 *    that base). Independent models share none.
 *    score = 0.80 lineage + 0.10 identity + 0.10 exact share.
 *  - Metadata (MFI) and tokenizer (TFV, VOA) never confirm lineage: a forged config.json and a
 *    copied tokenizer are free. Without weights on both sides the score is capped at 0.5 and the
 *    verdict is at most `weak`.
 *  - Exact copies are decided by bytes: every tensor byte-equal (SHA-256, as a multiset so
 *    renames and re-sharding stay identical) gives `identical`.
 *  Thresholds: derived needs score >= 0.55 and lineage >= 0.45; weak needs score >= 0.40.
 *  Per block (compare --json "layers", one entry per block of b, the first PA_CMP_MAX_LAYERS):
 *    layer      block of b;
 *    match      "a" when a explains at least half of the block's matrix parameters (by bytes,
 *               element-wise agreement >= 0.5, or the block's invariant products), else "none";
 *    a_layer    the block of a it agrees with (the layer most of its explained matrices were
 *               matched in, else the block its invariant products matched), null when none;
 *    explained  that share of the block's matrix parameters;
 *    agreement  mean element-wise agreement (WEA) of its matrices, negatives as 0;
 *    invariant  agreement of its invariant products, null when the block is not sampled.
 *    params     the block's parameter count (all its tensors), which weighs it in shares.
 *  "rest_params" and "rest_explained" count b's parameters outside the reported blocks and the
 *  explained ones among them.
 *  A layer stitch of parents P and Q shows "a" for P's blocks and "none" for Q's when compared
 *  with P, the other way round when compared with Q; a pruned or stacked model shows which block
 *  of a each of its blocks was taken from. "layers_truncated_from" gives b's block count when
 *  it has more blocks than are reported.
 *  Independent models of the same config sit near 0.1-0.25, the derivations mkmodel makes above
 *  0.6 (tests/unit/test_matrix.c holds the labelled pairs).
 */
#include "fp.h"
#include "jsonutil.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define W_EAS 0.36
#define W_NLF 0.08
#define W_LEP 0.16
#define W_END 0.19
#define W_WVC 0.21

#define T_DERIVED 0.55
#define T_DERIVED_LINEAGE 0.45
#define T_WEAK 0.40
#define T_PARENT_SHARE 0.25   /* share of the child's parameters that makes a parent */
#define T_PARENT_LINEAGE 0.60 /* the lineage such a parent gets at least */

const char *pa_verdict_name(pa_verdict v)
{
    switch (v) {
    case PA_V_IDENTICAL: return "identical";
    case PA_V_DERIVED: return "derived";
    case PA_V_WEAK: return "weak";
    case PA_V_NONE: return "none";
    }
    return "none";
}

static double clamp01(double v)
{
    return !isfinite(v) ? 0 : v < 0 ? 0 : v > 1 ? 1 : v;
}

static double identity_score(const pa_compare_result *r)
{
    const struct {
        const pa_signal *s;
        double w;
    } parts[] = {{&r->eas, W_EAS}, {&r->nlf, W_NLF}, {&r->lep, W_LEP}, {&r->end, W_END},
                 {&r->wvc, W_WVC}};
    double sum = 0, wsum = 0;
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++)
        if (parts[i].s->valid) {
            sum += parts[i].w * parts[i].s->value;
            wsum += parts[i].w;
        }
    return wsum > 0 ? sum / wsum : NAN;
}

static bool all_identical(const pa_fingerprint *a, const pa_fingerprint *b, size_t same)
{
    return a->has_weights && b->has_weights && a->n_tensors == b->n_tensors &&
           same == b->n_tensors && same > 0;
}

static void compare(const pa_fingerprint *a, const pa_fingerprint *b, pa_compare_result *r);

void pa_compare(const pa_fingerprint *a, const pa_fingerprint *b, pa_compare_result *r)
{
    compare(a, b, r);
    r->rank = pa_parent_rank(r, a);
}

static void compare(const pa_fingerprint *a, const pa_fingerprint *b, pa_compare_result *r)
{
    memset(r, 0, sizeof *r);
    pa_signals_compute(a, b, r);
    r->identity_score = identity_score(r);
    double tfv = r->tfv.valid ? r->tfv.value : NAN, voa = r->voa.valid ? r->voa.value : NAN;
    r->tokenizer_score = isfinite(tfv) && isfinite(voa) ? 0.25 * tfv + 0.75 * voa
                         : isfinite(voa)                 ? voa
                                                         : tfv;
    r->weight_agreement = NAN;

    if (!a->has_weights || !b->has_weights) {
        /* Metadata can only hint. */
        double m = r->mfi.valid ? r->mfi.value : 0, t = isfinite(r->tokenizer_score) ? r->tokenizer_score : 0;
        r->score = 0.5 * (0.5 * m + 0.5 * t);
        r->verdict = (r->mfi_tier && r->mfi_tier <= 2 && t >= 0.9) ? PA_V_WEAK : PA_V_NONE;
        snprintf(r->reason, sizeof r->reason,
                 "no weights on %s side: metadata and tokenizer can only hint at a family",
                 !a->has_weights && !b->has_weights ? "either" : "one");
        return;
    }
    if (all_identical(a, b, r->tensors_identical)) {
        r->verdict = PA_V_IDENTICAL;
        r->score = 1.0;
        r->weight_agreement = 1.0;
        snprintf(r->reason, sizeof r->reason, "all %zu tensors are byte-identical (SHA-256)",
                 r->tensors_identical);
        return;
    }
    double lineage, inv;
    if (r->wea.valid && r->anchor_rows.valid)
        lineage = 0.8 * clamp01(r->wea.value) + 0.2 * clamp01(r->anchor_rows.value);
    else if (r->wea.valid)
        lineage = clamp01(r->wea.value);
    else if (r->anchor_rows.valid)
        lineage = clamp01(r->anchor_rows.value);
    else
        lineage = NAN;
    if (r->invariant.valid && r->gram.valid)
        inv = 0.8 * clamp01(r->invariant.value) + 0.2 * clamp01(r->gram.value);
    else if (r->invariant.valid)
        inv = clamp01(r->invariant.value);
    else if (r->gram.valid)
        inv = clamp01(r->gram.value);
    else
        inv = NAN;
    bool by_invariant = isfinite(inv) && (!isfinite(lineage) || inv > lineage);
    if (by_invariant)
        lineage = inv;
    /* Several parents: one that explains a substantial part of the child (a passthrough stitch's
     * upper blocks) is a parent even though the mean over all tensors is diluted by the other
     * parent's part. Explained means agreeing at >= 0.5 tensor by tensor or block by block,
     * which unrelated weights never reach, so an unrelated model explains ~0 %. */
    if (isfinite(r->explained_share) && r->explained_share >= T_PARENT_SHARE &&
        (!isfinite(lineage) || lineage < T_PARENT_LINEAGE))
        lineage = T_PARENT_LINEAGE;
    r->weight_agreement = lineage;
    if (!isfinite(lineage)) {
        r->score = 0;
        r->verdict = PA_V_NONE;
        snprintf(r->reason, sizeof r->reason,
                 "no tensors could be aligned between the two models (different shapes and roles)");
        return;
    }
    double support = isfinite(r->identity_score) ? clamp01(r->identity_score) : lineage;
    double exact = b->n_tensors ? (double)r->tensors_identical / (double)b->n_tensors : 0;
    if (exact > 1)
        exact = 1;
    r->score = 0.80 * lineage + 0.10 * support + 0.10 * exact;
    if (r->score >= T_DERIVED && lineage >= T_DERIVED_LINEAGE)
        r->verdict = PA_V_DERIVED;
    else if (r->score >= T_WEAK)
        r->verdict = PA_V_WEAK;
    else
        r->verdict = PA_V_NONE;
    if (by_invariant)
        snprintf(r->reason, sizeof r->reason,
                 "invariant weight agreement %.3f (rotation/scaling/permutation-invariant "
                 "products); %.1f%% of the parameters unexplained",
                 lineage, 100 * r->unexplained_share);
    else
        snprintf(r->reason, sizeof r->reason,
                 "weight agreement %.3f over %zu aligned tensors (%zu byte-identical); %.1f%% of "
                 "the parameters unexplained",
                 lineage, r->tensors_compared, r->tensors_identical, 100 * r->unexplained_share);
}

/* Parent ranking, the one rule for the daemon, provctl compare and provctl scan:
 *  - the score;
 *  - + 0.01 x the share of byte-identical tensors: the most direct evidence of descent; the score
 *    alone can rank a sibling (e.g. a quantised copy of the same base) a hair above the parent;
 *  - - 0.05 for a GGUF candidate: a GGUF file is an inference export, usually quantised, and two
 *    quantisations of one base agree with each other a hair more than either does with the base
 *    (they share its rounding), so a GGUF sibling must not outrank the original;
 *  - - 0.5 x the weight-space distance (capped at 1; unknown counts as 1): similarity saturates
 *    near 0.9 for every relative of a fine-tune, distance does not — the child is |δ₂| from its
 *    parent and about √(|δ₁|²+|δ₂|²) from a sibling, so the nearer candidate wins. */
double pa_parent_rank(const pa_compare_result *r, const pa_fingerprint *parent)
{
    double exact = r->tensors_b ? (double)r->tensors_identical / (double)r->tensors_b : 0.0;
    double d = isfinite(r->distance) ? (r->distance > 1 ? 1 : r->distance) : 1.0;
    bool gguf = parent && strcmp(pa_fp_format(parent), "gguf") == 0;
    return r->score + 0.01 * exact - (gguf ? 0.05 : 0.0) - 0.5 * d;
}

static cJSON *num_or_null(double v)
{
    return isfinite(v) ? cJSON_CreateNumber(round(v * 10000) / 10000) : cJSON_CreateNull();
}

static void add_signal(cJSON *o, const char *name, const pa_signal *s)
{
    pa_json_add(o, name, s->valid ? num_or_null(s->value) : cJSON_CreateNull());
}

char *pa_compare_to_json(const pa_compare_result *r, const char *a_label, const char *b_label,
                         bool pretty)
{
    pa_json_fail_reset();
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "schema", "provfs.compare/1");
    cJSON_AddStringToObject(o, "a", a_label ? a_label : "");
    cJSON_AddStringToObject(o, "b", b_label ? b_label : "");
    cJSON_AddStringToObject(o, "verdict", pa_verdict_name(r->verdict));
    pa_json_add(o, "score", num_or_null(r->score));
    pa_json_add(o, "identity_score", num_or_null(r->identity_score));
    pa_json_add(o, "tokenizer_score", num_or_null(r->tokenizer_score));
    pa_json_add(o, "weight_agreement", num_or_null(r->weight_agreement));
    cJSON_AddStringToObject(o, "reason", r->reason);
    cJSON *s = cJSON_AddObjectToObject(o, "signals");
    if (s) {
        cJSON *mfi = cJSON_AddObjectToObject(s, "mfi");
        if (mfi && r->mfi.valid) {
            cJSON_AddNumberToObject(mfi, "tier", r->mfi_tier);
            pa_json_add(mfi, "score", num_or_null(r->mfi.value));
        } else if (mfi) {
            cJSON_AddNullToObject(mfi, "tier");
            cJSON_AddNullToObject(mfi, "score");
        }
        add_signal(s, "tfv", &r->tfv);
        add_signal(s, "voa", &r->voa);
        add_signal(s, "eas", &r->eas);
        add_signal(s, "nlf", &r->nlf);
        add_signal(s, "lep", &r->lep);
        add_signal(s, "end", &r->end);
        add_signal(s, "wvc", &r->wvc);
        add_signal(s, "wea", &r->wea);
        add_signal(s, "anchor_rows", &r->anchor_rows);
        add_signal(s, "gram", &r->gram);
        add_signal(s, "invariant", &r->invariant);
    }
    pa_json_add(o, "rank", num_or_null(r->rank));
    pa_json_add(o, "distance", num_or_null(r->distance));
    pa_json_add(o, "explained_share", num_or_null(r->explained_share));
    pa_json_add(o, "unexplained_share", num_or_null(r->unexplained_share));
    cJSON_AddBoolToObject(o, "unknown_origin", r->unknown_origin);
    cJSON *ux = cJSON_AddArrayToObject(o, "unexplained");
    for (const char *p = r->unexplained; ux && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char name[sizeof r->unexplained];
        memcpy(name, p, len);
        name[len] = '\0';
        cJSON *sx = cJSON_CreateString(name);
        if (!sx || !cJSON_AddItemToArray(ux, sx)) {
            cJSON_Delete(sx);
            pa_json_fail_note();
        }
        p += len + (comma ? 1 : 0);
    }
    cJSON *t = cJSON_AddObjectToObject(o, "tensors");
    if (t) {
        cJSON_AddNumberToObject(t, "a", (double)r->tensors_a);
        cJSON_AddNumberToObject(t, "b", (double)r->tensors_b);
        cJSON_AddNumberToObject(t, "compared", (double)r->tensors_compared);
        cJSON_AddNumberToObject(t, "identical", (double)r->tensors_identical);
    }
    /* per block of b: does it come from a (a layer stitch: a run of "a", then "none") */
    cJSON *ls = cJSON_AddArrayToObject(o, "layers");
    for (uint32_t l = 0; ls && l < r->n_layers; l++) {
        const pa_layer_match *m = &r->layers[l];
        cJSON *e = cJSON_CreateObject();
        if (!e || !cJSON_AddItemToArray(ls, e)) {
            cJSON_Delete(e);
            pa_json_fail_note();
            break;
        }
        cJSON_AddNumberToObject(e, "layer", m->layer);
        cJSON_AddStringToObject(e, "match", m->matches_a ? "a" : "none");
        pa_json_add(e, "a_layer",
                    m->a_layer >= 0 ? cJSON_CreateNumber(m->a_layer) : cJSON_CreateNull());
        pa_json_add(e, "explained", num_or_null(m->explained));
        pa_json_add(e, "agreement", num_or_null(m->agreement));
        pa_json_add(e, "invariant", num_or_null(m->invariant));
        cJSON_AddNumberToObject(e, "params", (double)m->params);
    }
    if (r->tensors_b > 0) {
        cJSON_AddNumberToObject(o, "rest_params", (double)r->rest_params);
        cJSON_AddNumberToObject(o, "rest_explained", (double)r->rest_explained);
    }
    if (r->n_layers_b > r->n_layers)
        cJSON_AddNumberToObject(o, "layers_truncated_from", r->n_layers_b);
    char *out = pa_json_failed() ? NULL : pretty ? cJSON_Print(o) : cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (out && pa_json_failed()) {
        free(out);
        out = NULL;
    }
    return out;
}

/* ---------------------------------------------------------------- shares among parents */

void pa_parent_shares(const char *const *json, size_t n, double *share, uint8_t (*blocks)[16])
{
    double covered[PA_CMP_MAX_LAYERS] = {0}, rest_covered = 0;
    for (size_t i = 0; i < n; i++) {
        share[i] = 0;
        if (blocks)
            memset(blocks[i], 0, sizeof blocks[i]);
        cJSON *o = json[i] ? cJSON_Parse(json[i]) : NULL;
        const cJSON *layers = cJSON_GetObjectItemCaseSensitive(o, "layers");
        const cJSON *rp = cJSON_GetObjectItemCaseSensitive(o, "rest_params");
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(o, "rest_explained");
        if (!cJSON_IsNumber(rp) || !cJSON_IsNumber(re) || !cJSON_IsArray(layers)) {
            /* no block parameter counts: only the best candidate counts, with its coverage */
            const cJSON *es = cJSON_GetObjectItemCaseSensitive(o, "explained_share");
            if (i == 0 && cJSON_IsNumber(es) && isfinite(es->valuedouble))
                share[i] = clamp01(es->valuedouble);
            cJSON_Delete(o);
            continue;
        }
        double total = rp->valuedouble > 0 ? rp->valuedouble : 0, gained = 0;
        double rest = rp->valuedouble > 0 ? clamp01(re->valuedouble / rp->valuedouble) : 0;
        if (rest > rest_covered) {
            gained += (rest - rest_covered) * total;
            rest_covered = rest;
        }
        const cJSON *e;
        cJSON_ArrayForEach(e, layers)
        {
            const cJSON *l = cJSON_GetObjectItemCaseSensitive(e, "layer");
            const cJSON *p = cJSON_GetObjectItemCaseSensitive(e, "params");
            const cJSON *x = cJSON_GetObjectItemCaseSensitive(e, "explained");
            if (!cJSON_IsNumber(l) || !cJSON_IsNumber(p) || p->valuedouble <= 0)
                continue;
            total += p->valuedouble;
            int li = (int)l->valuedouble;
            if (li < 0 || li >= PA_CMP_MAX_LAYERS || !cJSON_IsNumber(x))
                continue;
            double ex = clamp01(x->valuedouble);
            if (ex <= covered[li])
                continue;
            gained += (ex - covered[li]) * p->valuedouble;
            if (blocks && ex - covered[li] >= 0.5)
                blocks[i][li / 8] |= (uint8_t)(1u << (li % 8));
            covered[li] = ex;
        }
        share[i] = total > 0 ? clamp01(gained / total) : 0;
        cJSON_Delete(o);
    }
}
