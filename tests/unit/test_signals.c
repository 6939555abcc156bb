/* Every signal on pairs whose answer is known: a model against itself (all 1), a vocabulary
 * extension (exact Jaccard), pruned layers (LEP and NLF still computable), and the vector helpers. */
#include "check.h"
#include "fp.h"

#include <unistd.h>

static char tmp[256];
static const char *mkmodel;

#define run(...) check_run(tmp, mkmodel, "signals", __VA_ARGS__)

static pa_fingerprint *fp(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    pa_error err = {0};
    pa_fingerprint *f = NULL;
    CHECK_MSG(pa_fingerprint_path(path, NULL, &f, &err) == PA_OK, "%s: %s", name, err.msg);
    if (!f)
        exit(check_report("signals"));
    return f;
}

static void test_vectors(void)
{
    float a[5] = {1, 2, 3, 4, 5}, b[5] = {2, 4, 6, 8, 10}, c[5] = {5, 4, 3, 2, 1};
    CHECK_NEAR(pa_pearson(a, b, 5), 1.0, 1e-12);
    CHECK_NEAR(pa_pearson(a, c, 5), -1.0, 1e-12);
    CHECK_NEAR(pa_cosine(a, b, 5), 1.0, 1e-12);
    float z[5] = {0};
    CHECK(isnan(pa_cosine(a, z, 5)));
    CHECK(isnan(pa_pearson(a, b, 2)));
    float k1[4] = {3, 3, 3, 3}, k2[4] = {3, 3, 3, 3}, k3[4] = {1, 1, 1, 1};
    CHECK_NEAR(pa_pearson(k1, k2, 4), 1.0, 0); /* equal constants agree */
    CHECK(isnan(pa_pearson(k1, k3, 4)));
}

static void all_one(const pa_compare_result *r)
{
    const pa_signal *s[] = {&r->mfi, &r->tfv, &r->voa, &r->eas, &r->nlf, &r->lep,
                            &r->end, &r->wvc, &r->wea, &r->anchor_rows};
    const char *names[] = {"mfi", "tfv", "voa", "eas", "nlf", "lep", "end", "wvc", "wea", "anchor_rows"};
    for (size_t i = 0; i < sizeof s / sizeof *s; i++) {
        CHECK_MSG(s[i]->valid, "%s not computed", names[i]);
        CHECK_MSG(fabs(s[i]->value - 1.0) < 1e-6, "%s = %.6f, want 1", names[i], s[i]->value);
    }
    CHECK_INT(r->mfi_tier, 1);
    CHECK_NEAR(r->identity_score, 1.0, 1e-6);
    CHECK_NEAR(r->tokenizer_score, 1.0, 1e-6);
}

int main(void)
{
    mkmodel = getenv("MKMODEL");
    if (!mkmodel) {
        fprintf(stderr, "MKMODEL is not set\n");
        return 1;
    }
    snprintf(tmp, sizeof tmp, "/tmp/provfs-sig-XXXXXX");
    if (!mkdtemp(tmp))
        return 1;
    test_vectors();
    run("create base --seed 1 --hidden 128 --layers 4 --heads 4 --vocab 1024");
    run("derive base vocab --kind vocab-extend --add 64 --seed 2");
    run("derive base pruned --kind prune-layers --drop 1");
    run("create other --seed 3 --hidden 128 --layers 4 --heads 4 --vocab 1024 --tok-seed 9");
    run("create wide --seed 4 --hidden 256 --layers 4 --heads 4 --vocab 1024");
    pa_fingerprint *base = fp("base"), *vocab = fp("vocab"), *pruned = fp("pruned"),
                   *other = fp("other"), *wide = fp("wide");

    pa_compare_result r;
    pa_compare(base, base, &r);
    all_one(&r);
    CHECK_INT(r.verdict, PA_V_IDENTICAL);

    /* vocabulary extension: the sketch holds whole vocabularies, so VOA is the exact Jaccard */
    pa_compare(base, vocab, &r);
    CHECK_NEAR(r.voa.value, round(1024.0 / 1088.0 * 10000) / 10000, 1e-9);
    CHECK_NEAR(r.tokenizer_score, 0.25 * r.tfv.value + 0.75 * r.voa.value, 1e-9);
    CHECK(r.mfi.valid && r.mfi_tier != 1); /* vocab_size changed the arch hash */
    CHECK(r.anchor_rows.valid && r.anchor_rows.value > 0.99);
    CHECK(r.eas.valid && r.eas.value > 0.99);
    CHECK_INT(r.verdict, PA_V_DERIVED);

    /* pruned layers: profiles of different lengths are interpolated; norm vectors summarised */
    pa_compare(base, pruned, &r);
    CHECK(r.lep.valid && r.nlf.valid && r.wvc.valid);
    CHECK(r.wea.valid && r.wea.value > 0.99);
    CHECK_INT(r.tensors_compared, pruned->n_tensors - 2 * 3 - 1); /* all but 2 norms a layer, final norm */

    /* another tokenizer and other weights: tokenizer evidence low, weights near 0 */
    pa_compare(base, other, &r);
    CHECK(r.voa.valid && r.voa.value < 0.9);
    CHECK(r.wea.valid && fabs(r.wea.value) < 0.3);
    CHECK_INT(r.verdict, PA_V_NONE);

    /* a different width: element-wise signals are not computable, EAS still is */
    pa_compare(base, wide, &r);
    CHECK(!r.anchor_rows.valid);
    CHECK(r.eas.valid);
    CHECK(r.mfi.valid && r.mfi.value < 1.0);
    CHECK_INT(r.verdict, PA_V_NONE);

    /* JSON of the comparison names every signal */
    char *j = pa_compare_to_json(&r, "a", "b", false);
    CHECK(j && strstr(j, "\"schema\":\"provfs.compare/1\""));
    const char *keys[] = {"\"mfi\":", "\"tier\":", "\"tfv\":", "\"voa\":", "\"eas\":", "\"nlf\":",
                          "\"lep\":", "\"end\":", "\"wvc\":", "\"identity_score\":",
                          "\"tokenizer_score\":", "\"verdict\":\"none\""};
    for (size_t i = 0; j && i < sizeof keys / sizeof *keys; i++)
        CHECK_MSG(strstr(j, keys[i]) != NULL, "%s missing", keys[i]);
    free(j);

    /* the single-thread fused pass (one read, file and tensor digests side by side) and the
     * threaded one give byte-identical fingerprints, also when tensors and ggml blocks straddle
     * read chunks */
    run("create big --seed 5 --hidden 1024 --layers 1 --heads 8 --inter 2048 --vocab 4096 --dtype bf16");
    run("gguf big big.gguf --type q4_k");
    const char *names[] = {"big", "big.gguf"};
    for (int i = 0; i < 2; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", tmp, names[i]);
        char *json[2] = {NULL, NULL};
        for (int t = 0; t < 2; t++) {
            pa_fp_options opt = {0};
            opt.threads = t + 1;
            pa_error err = {0};
            pa_fingerprint *f = NULL;
            CHECK_MSG(pa_fingerprint_path(path, &opt, &f, &err) == PA_OK, "%s: %s", path, err.msg);
            json[t] = f ? pa_fp_to_json(f, false) : NULL;
            pa_fingerprint_free(f);
        }
        CHECK_MSG(json[0] && json[1] && strcmp(json[0], json[1]) == 0,
                  "%s: 1 and 2 threads differ", names[i]);
        free(json[0]);
        free(json[1]);
    }

    pa_fingerprint_free(base);
    pa_fingerprint_free(vocab);
    pa_fingerprint_free(pruned);
    pa_fingerprint_free(other);
    pa_fingerprint_free(wide);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp);
    return check_report("signals");
}
