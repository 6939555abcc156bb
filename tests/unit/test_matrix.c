/* The labelled matrix: pairs of mkmodel models, every derivation kind and every hard negative,
 * with the verdict each must get. Linked pairs must come out `derived` or `identical` as labelled,
 * unlinked pairs `none`. The table printed on stderr is what the issue notes quote. */
#include "check.h"
#include "provfs/analyzer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *model_dir; /* the models (read only) */

typedef struct model {
    const char *name;
    pa_fingerprint *fp;
    pa_fingerprint *stored; /* fp through its binary form, as the store keeps it */
} model;

static model models[96];
static int n_models;

static pa_fingerprint *fp_of(const char *name)
{
    for (int i = 0; i < n_models; i++)
        if (strcmp(models[i].name, name) == 0)
            return models[i].fp;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", model_dir, name);
    pa_error err = {0};
    pa_fingerprint *fp = NULL;
    pa_status st = pa_fingerprint_path(path, NULL, &fp, &err);
    CHECK_MSG(st == PA_OK, "fingerprint %s: %s", name, err.msg);
    if (st)
        exit(check_report("matrix"));
    /* the stored form reads back as the same fingerprint, and writes the same bytes again */
    uint8_t *bin = NULL, *again = NULL;
    size_t n = 0, n2 = 0;
    pa_fingerprint *stored = NULL;
    CHECK(pa_fp_to_bin(fp, &bin, &n, &err) == PA_OK);
    CHECK_MSG(bin && pa_fp_from_bin(bin, n, name, &stored, &err) == PA_OK, "%s", err.msg);
    CHECK(stored && pa_fp_to_bin(stored, &again, &n2, &err) == PA_OK && n2 == n &&
          memcmp(again, bin, n) == 0);
    free(bin);
    free(again);
    if (!stored)
        exit(check_report("matrix"));
    models[n_models].name = name;
    models[n_models].fp = fp;
    models[n_models].stored = stored;
    n_models++;
    return fp;
}

static pa_fingerprint *stored_of(const char *name)
{
    fp_of(name);
    for (int i = 0; i < n_models; i++)
        if (strcmp(models[i].name, name) == 0)
            return models[i].stored;
    return NULL;
}

static int linked_ok, unlinked_ok, n_linked, n_unlinked;

static void expect(const char *a, const char *b, pa_verdict want)
{
    pa_compare_result r;
    pa_compare(fp_of(a), fp_of(b), &r);
    bool ok = r.verdict == want;
    fprintf(stderr, "%-22s %-22s want %-9s got %-9s score %.4f wea %.4f anchors %.4f identity %.4f %s\n",
            a, b, pa_verdict_name(want), pa_verdict_name(r.verdict), r.score, r.wea.value,
            r.anchor_rows.value, r.identity_score, ok ? "" : "  <-- WRONG");
    CHECK_MSG(ok, "%s vs %s: want %s, got %s (score %.4f)", a, b, pa_verdict_name(want),
              pa_verdict_name(r.verdict), r.score);
    if (want == PA_V_NONE) {
        CHECK_MSG(r.score <= 0.25, "%s vs %s: independent pair scores %.4f > 0.25", a, b, r.score);
        n_unlinked++;
        unlinked_ok += ok;
    } else {
        n_linked++;
        linked_ok += ok;
    }
    /* comparison is symmetric in verdict */
    pa_compare_result r2;
    pa_compare(fp_of(b), fp_of(a), &r2);
    CHECK_MSG(r2.verdict == r.verdict, "%s vs %s: verdict not symmetric (%s / %s)", a, b,
              pa_verdict_name(r.verdict), pa_verdict_name(r2.verdict));
    /* the stored forms compare to the same numbers */
    pa_compare_result rs;
    pa_compare(stored_of(a), stored_of(b), &rs);
    CHECK_MSG(rs.verdict == r.verdict && rs.score == r.score && rs.rank == r.rank &&
                  (rs.distance == r.distance || (isnan(rs.distance) && isnan(r.distance))),
              "%s vs %s stored: %s %.6f, fresh: %s %.6f", a, b, pa_verdict_name(rs.verdict),
              rs.score, pa_verdict_name(r.verdict), r.score);
}

int main(void)
{
    /* the models, made at build time by tests/unit/matrix-models.sh (read only here) */
    model_dir = getenv("MATRIX_MODELS");
    if (!model_dir) {
        fprintf(stderr, "MATRIX_MODELS is not set\n");
        return 1;
    }

    /* linked */
    expect("base", "ft", PA_V_DERIVED);
    expect("base", "ft-large", PA_V_DERIVED);
    expect("base", "ft2", PA_V_DERIVED);
    expect("base", "lora", PA_V_DERIVED);
    expect("base", "f16", PA_V_DERIVED);
    expect("base", "bf16", PA_V_DERIVED);
    expect("base", "int8", PA_V_DERIVED);
    expect("base", "q4", PA_V_DERIVED);
    expect("base", "prune-layers", PA_V_DERIVED);
    expect("base", "prune-mlp", PA_V_DERIVED);
    expect("base", "vocab", PA_V_DERIVED);
    expect("base", "perm-mlp", PA_V_DERIVED);
    expect("base", "perm-heads", PA_V_DERIVED);
    expect("base", "student", PA_V_DERIVED);
    expect("base", "ft-q4", PA_V_DERIVED);
    expect("base", "renamed", PA_V_IDENTICAL);
    expect("base", "resharded", PA_V_IDENTICAL);
    expect("base", "copy", PA_V_IDENTICAL);
    expect("base", "base-sharded", PA_V_IDENTICAL);
    expect("gqa", "gqa-ft", PA_V_DERIVED);
    expect("gqa", "gqa-perm-heads", PA_V_DERIVED);
    expect("gbase", "gft", PA_V_DERIVED);
    expect("gbase", "gint8", PA_V_DERIVED);
    expect("gbase", "gperm-mlp", PA_V_DERIVED);
    expect("gbase", "gprune-mlp", PA_V_DERIVED);
    expect("gbase", "gvocab", PA_V_DERIVED);
    expect("gbase", "gperm-heads", PA_V_DERIVED);
    expect("gbase", "gstudent", PA_V_DERIVED);
    expect("gbase", "grenamed", PA_V_IDENTICAL);
    {
        /* a direct parent outranks a sibling that agrees as well element-wise: the pruned model
         * keeps the base's tensors byte for byte, the int8 copy's only in its norms */
        pa_compare_result parent, sibling;
        pa_compare(fp_of("base"), fp_of("prune-layers"), &parent);
        pa_compare(fp_of("int8"), fp_of("prune-layers"), &sibling);
        CHECK_MSG(parent.score > sibling.score + 0.02, "pruned: base %.4f vs int8 sibling %.4f",
                  parent.score, sibling.score);
    }
    expect("base", "base-q8_0.gguf", PA_V_DERIVED);
    expect("base", "base-q4_k.gguf", PA_V_DERIVED);
    expect("base", "base-q6_k.gguf", PA_V_DERIVED);
    expect("ft-wide", "ft-wide-q4_k.gguf", PA_V_DERIVED);
    {
        /* a GGUF of a fine-tune is closer to the fine-tune than to its base */
        pa_compare_result to_ft, to_base;
        pa_compare(fp_of("ft-wide"), fp_of("ft-wide-q4_k.gguf"), &to_ft);
        pa_compare(fp_of("base"), fp_of("ft-wide-q4_k.gguf"), &to_base);
        CHECK_MSG(to_ft.score > to_base.score + 0.005, "GGUF of a fine-tune: %.4f vs base %.4f",
                  to_ft.score, to_base.score);
    }
    /* disguised and merged */
    expect("base", "rot", PA_V_DERIVED);
    expect("base", "rot-ft", PA_V_DERIVED);
    expect("base", "rot-scale", PA_V_DERIVED);
    expect("base", "rot-scale-perm", PA_V_DERIVED);
    expect("base", "rot-ft-int8", PA_V_DERIVED);
    expect("rot", "rot-ft", PA_V_DERIVED); /* both sides rotated, independently */
    expect("base", "scaled", PA_V_DERIVED);
    expect("base", "noisy", PA_V_DERIVED);
    expect("base", "soup", PA_V_DERIVED);
    expect("ft", "soup", PA_V_DERIVED);
    expect("lora", "soup", PA_V_DERIVED);
    expect("base", "stitch", PA_V_DERIVED);
    expect("indep", "stitch", PA_V_DERIVED);
    expect("base", "moe", PA_V_DERIVED);
    expect("base", "smuggled", PA_V_DERIVED);
    expect("gqa", "gqa-rot", PA_V_DERIVED);
    expect("gbase", "grot", PA_V_DERIVED);
    expect("gbase", "grot-ft", PA_V_DERIVED);
    expect("base", "rot-q8_0.gguf", PA_V_DERIVED);
    expect("base", "rot-q4_k.gguf", PA_V_DERIVED);
    expect("base", "rot-q6_k.gguf", PA_V_DERIVED);
    {
        /* coverage: smuggled tensors and the other half of a stitch are not explained */
        pa_compare_result r;
        pa_compare(fp_of("base"), fp_of("smuggled"), &r);
        fprintf(stderr, "smuggled: unexplained %.3f unknown_origin %d (%zu tensors)\n",
                r.unexplained_share, r.unknown_origin, r.n_unexplained);
        CHECK_MSG(r.unknown_origin && r.unexplained_share > 0.4, "smuggled: unexplained %.3f",
                  r.unexplained_share);
        pa_compare(fp_of("base"), fp_of("stitch"), &r);
        CHECK_MSG(r.unknown_origin, "stitch vs base: unexplained %.3f", r.unexplained_share);
        /* per block: the lower half comes from base, the upper half from indep */
        for (int side = 0; side < 2; side++) {
            pa_compare(fp_of(side ? "indep" : "base"), fp_of("stitch"), &r);
            uint32_t split = r.n_layers_b / 2;
            CHECK(r.n_layers >= 2 && r.n_layers == r.n_layers_b);
            for (uint32_t l = 0; l < r.n_layers; l++) {
                const pa_layer_match *m = &r.layers[l];
                bool want = side ? l >= split : l < split;
                CHECK_MSG(m->layer == (int32_t)l && m->matches_a == want &&
                              m->a_layer == (want ? (int32_t)l : -1),
                          "stitch vs %s: block %u matches %d (a_layer %d, explained %.3f)",
                          side ? "indep" : "base", l, m->matches_a, m->a_layer, m->explained);
            }
            char *j = pa_compare_to_json(&r, "a", "b", false);
            CHECK(j && strstr(j, "\"layers\":[{\"layer\":0,\"match\":"));
            free(j);
        }
        /* a dropped block: the blocks after it match the next block of the base */
        pa_compare(fp_of("base"), fp_of("prune-layers"), &r);
        int32_t prev = -1;
        for (uint32_t l = 0; l < r.n_layers; l++) {
            CHECK_MSG(r.layers[l].matches_a && r.layers[l].a_layer > prev,
                      "prune-layers: block %u matches %d, a_layer %d", l, r.layers[l].matches_a,
                      r.layers[l].a_layer);
            prev = r.layers[l].a_layer;
        }
        CHECK(r.n_layers > 0 && prev == (int32_t)r.n_layers);
        const char *honest[] = {"ft", "rot", "rot-scale-perm", "moe", "prune-mlp", "vocab", "lora"};
        for (size_t i = 0; i < sizeof honest / sizeof *honest; i++) {
            pa_compare(fp_of("base"), fp_of(honest[i]), &r);
            CHECK_MSG(!r.unknown_origin && r.unexplained_share < 0.05,
                      "%s: unexplained %.3f", honest[i], r.unexplained_share);
        }
        /* the true parent, not a sibling: ranks by weight distance */
        pa_compare_result parent, sibling;
        pa_compare(fp_of("ft"), fp_of("ft2"), &parent);
        pa_compare(fp_of("base"), fp_of("ft2"), &sibling);
        fprintf(stderr, "ft2: parent ft rank %.4f dist %.4f, grandparent base rank %.4f dist %.4f\n",
                parent.rank, parent.distance, sibling.rank, sibling.distance);
        CHECK(parent.distance < sibling.distance && parent.rank > sibling.rank);
        pa_compare(fp_of("base"), fp_of("ft"), &parent);
        pa_compare(fp_of("lora"), fp_of("ft"), &sibling);
        fprintf(stderr, "ft: parent base rank %.4f dist %.4f, sibling lora rank %.4f dist %.4f\n",
                parent.rank, parent.distance, sibling.rank, sibling.distance);
        CHECK(parent.distance < sibling.distance && parent.rank > sibling.rank);
        pa_compare(fp_of("base"), fp_of("rot-ft"), &parent);
        pa_compare(fp_of("rot"), fp_of("rot-ft"), &sibling);
        fprintf(stderr, "rot-ft: base dist %.4f, rotated sibling dist %.4f\n", parent.distance,
                sibling.distance);
    }
    /* several parents: the shares each candidate adds to the ones before it */
    {
        static pa_compare_result r[3];
        const char *par[3][3] = {{"base", "indep", "stitch"}, {"indep", "base", "stitch"},
                                 {"base", "ft", "ft-q4"}};
        for (int k = 0; k < 3; k++) {
            pa_compare(fp_of(par[k][0]), fp_of(par[k][2]), &r[0]);
            pa_compare(fp_of(par[k][1]), fp_of(par[k][2]), &r[1]);
            char *js[2] = {pa_compare_to_json(&r[0], "a", "b", false),
                           pa_compare_to_json(&r[1], "a", "b", false)};
            double share[2] = {-1, -1};
            uint8_t blocks[2][16];
            pa_parent_shares((const char *const *)js, 2, share, blocks);
            fprintf(stderr, "shares of %s: %s %.4f, %s %.4f\n", par[k][2], par[k][0], share[0],
                    par[k][1], share[1]);
            CHECK(share[0] + share[1] <= 1.0 + 1e-9);
            if (k < 2) { /* both halves of the stitch, in either order */
                CHECK(share[0] >= 0.10 && share[1] >= 0.10);
                CHECK(share[0] + share[1] >= 0.95);
                CHECK((blocks[0][0] & blocks[1][0]) == 0 && blocks[0][0] && blocks[1][0]);
            } else { /* a sibling adds nothing to the parent of a quantised fine-tune */
                CHECK(share[1] < 0.10);
            }
            free(js[0]);
            free(js[1]);
        }
        /* quantised exports are told from their sources */
        CHECK(pa_fp_quantized(fp_of("int8")) && pa_fp_quantized(fp_of("base-q8_0.gguf")));
        CHECK(!pa_fp_quantized(fp_of("base")) && !pa_fp_quantized(fp_of("ft")) &&
              !pa_fp_quantized(fp_of("indep-bf16")) && !pa_fp_quantized(fp_of("gbase")));
        CHECK(pa_fp_quantized(fp_of("gint8")));
    }
    /* hard negatives */
    expect("base", "indep-rot", PA_V_NONE);
    expect("rot", "indep-rot", PA_V_NONE);
    expect("third", "stitch", PA_V_NONE);
    expect("third", "smuggled", PA_V_NONE);
    expect("third", "rot-scale-perm", PA_V_NONE);
    expect("indep", "rot", PA_V_NONE);
    expect("gqa-indep", "gqa-rot", PA_V_NONE);
    expect("gbase", "gindep-rot", PA_V_NONE);
    expect("gindep", "grot", PA_V_NONE);
    /* unlinked: independent runs of one config, forged metadata, derivatives of another base */
    expect("base", "indep", PA_V_NONE);
    expect("base", "forged", PA_V_NONE);
    expect("indep", "ft", PA_V_NONE);
    expect("indep", "int8", PA_V_NONE);
    expect("indep", "perm-mlp", PA_V_NONE);
    expect("indep", "prune-layers", PA_V_NONE);
    expect("indep", "student", PA_V_NONE);
    expect("indep", "vocab", PA_V_NONE);
    expect("base", "indep-bf16", PA_V_NONE);
    expect("gqa", "gqa-indep", PA_V_NONE);
    expect("gbase", "gindep", PA_V_NONE);
    expect("gbase", "gforged", PA_V_NONE);
    expect("gindep", "gperm-mlp", PA_V_NONE);
    expect("base", "gbase", PA_V_NONE);
    expect("base", "indep-q8_0.gguf", PA_V_NONE);
    expect("indep", "base-q4_k.gguf", PA_V_NONE);

    fprintf(stderr, "linked %d/%d correct, unlinked %d/%d correct\n", linked_ok, n_linked,
            unlinked_ok, n_unlinked);
    CHECK(n_linked + n_unlinked >= 30);
    for (int i = 0; i < n_models; i++) {
        pa_fingerprint_free(models[i].fp);
        pa_fingerprint_free(models[i].stored);
    }
    return check_report("matrix");
}
