/* Candidate retrieval by locality-sensitive signatures (analyzer/lsh.c) on the labelled
 * matrix of tests/unit/test_matrix.c: every labelled derived or identical pair (every mkmodel
 * kind: fine-tunes, dtype conversions, int8/q4 and GGUF quantisations, pruning, vocab extension,
 * permutations, rotations, scalings, stitches, soups, upcycling) shares a tensor hash or a band,
 * and the parent ranks among the first RETRIEVE_K candidates of the child out of all the
 * models; retrieval finds every relative that the exhaustive comparison finds among the top
 * ranked, and a model unrelated to everything shares no key with the labelled negatives. */
#include "check.h"
#include "lsh.h"
#include "provfs/analyzer.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RETRIEVE_K 8

static const char *model_dir; /* the models (read only) */

static const char *names[] = {
    "base", "indep", "base-sharded", "gbase",
    "gindep", "gqa", "gqa-indep", "ft",
    "ft-large", "ft2", "lora", "f16",
    "bf16", "int8", "q4", "prune-layers",
    "prune-mlp", "vocab", "perm-mlp", "perm-heads",
    "student", "renamed", "resharded", "copy",
    "forged", "ft-q4", "indep-bf16", "gqa-ft",
    "gqa-perm-heads", "ft-wide", "base-q8_0.gguf", "base-q4_k.gguf",
    "base-q6_k.gguf", "indep-q8_0.gguf", "ft-wide-q4_k.gguf", "gft",
    "gint8", "gperm-mlp", "gprune-mlp", "gvocab",
    "gperm-heads", "grenamed", "gstudent", "gforged",
    "third", "rot", "rot-ft", "rot-scale",
    "rot-scale-perm", "scaled", "noisy", "soup",
    "stitch", "moe", "smuggled", "gqa-rot",
    "indep-rot", "rot-ft-int8", "rot-q8_0.gguf", "rot-q4_k.gguf",
    "rot-q6_k.gguf", "grot", "grot-ft", "gindep-rot",
};
#define N_MODELS (sizeof names / sizeof *names)
static const char *const pairs[][2] = {
    {"base", "ft"},
    {"base", "ft-large"},
    {"base", "ft2"},
    {"base", "lora"},
    {"base", "f16"},
    {"base", "bf16"},
    {"base", "int8"},
    {"base", "q4"},
    {"base", "prune-layers"},
    {"base", "prune-mlp"},
    {"base", "vocab"},
    {"base", "perm-mlp"},
    {"base", "perm-heads"},
    {"base", "student"},
    {"base", "ft-q4"},
    {"base", "renamed"},
    {"base", "resharded"},
    {"base", "copy"},
    {"base", "base-sharded"},
    {"gqa", "gqa-ft"},
    {"gqa", "gqa-perm-heads"},
    {"gbase", "gft"},
    {"gbase", "gint8"},
    {"gbase", "gperm-mlp"},
    {"gbase", "gprune-mlp"},
    {"gbase", "gvocab"},
    {"gbase", "gperm-heads"},
    {"gbase", "gstudent"},
    {"gbase", "grenamed"},
    {"base", "base-q8_0.gguf"},
    {"base", "base-q4_k.gguf"},
    {"base", "base-q6_k.gguf"},
    {"ft-wide", "ft-wide-q4_k.gguf"},
    {"base", "rot"},
    {"base", "rot-ft"},
    {"base", "rot-scale"},
    {"base", "rot-scale-perm"},
    {"base", "rot-ft-int8"},
    {"rot", "rot-ft"},
    {"base", "scaled"},
    {"base", "noisy"},
    {"base", "soup"},
    {"ft", "soup"},
    {"lora", "soup"},
    {"base", "stitch"},
    {"indep", "stitch"},
    {"base", "moe"},
    {"base", "smuggled"},
    {"gqa", "gqa-rot"},
    {"gbase", "grot"},
    {"gbase", "grot-ft"},
    {"base", "rot-q8_0.gguf"},
    {"base", "rot-q4_k.gguf"},
    {"base", "rot-q6_k.gguf"},
};

static pa_fingerprint *fps[N_MODELS];
static pa_lsh_sig sigs[N_MODELS];

static int index_of(const char *name)
{
    for (size_t i = 0; i < N_MODELS; i++)
        if (strcmp(names[i], name) == 0)
            return (int)i;
    CHECK_MSG(0, "no model %s", name);
    exit(check_report("lsh"));
}

/* Matches of two signatures: 4 per shared tensor hash, 1 per shared band (fs/store_index.c ranks
 * so). */
static int matches(const pa_lsh_sig *a, const pa_lsh_sig *b)
{
    int m = 0;
    for (size_t i = 0, j = 0; i < a->n_hashes && j < b->n_hashes;) {
        if (a->hashes[i] == b->hashes[j]) {
            m += 4;
            i++;
            j++;
        } else if (a->hashes[i] < b->hashes[j]) {
            i++;
        } else {
            j++;
        }
    }
    for (size_t i = 0; i < a->n_bands; i++)
        for (size_t j = 0; j < b->n_bands; j++)
            if (a->bands[i].no == b->bands[j].no && a->bands[i].value == b->bands[j].value)
                m++;
    return m;
}

static bool related_pair(int a, int b)
{
    pa_compare_result r;
    pa_compare(fps[a], fps[b], &r);
    return r.verdict == PA_V_DERIVED || r.verdict == PA_V_IDENTICAL;
}

/* Rank of model p among the candidates of model c that are not its relatives (1 = best; ties
 * count against p), 0 when p shares nothing with c. Relatives ranked above p are no loss: the
 * daemon follows the families of the relatives it finds (fs/analyze.c). */
static int rank_of(int p, int c)
{
    int mp = matches(&sigs[p], &sigs[c]);
    if (mp == 0)
        return 0;
    int rank = 1;
    for (size_t o = 0; o < N_MODELS; o++)
        if ((int)o != p && (int)o != c && matches(&sigs[o], &sigs[c]) >= mp &&
            !related_pair((int)o, c))
            rank++;
    return rank;
}

int main(void)
{
    /* the models, made at build time by tests/unit/matrix-models.sh (read only here) */
    model_dir = getenv("MATRIX_MODELS");
    if (!model_dir) {
        fprintf(stderr, "MATRIX_MODELS is not set\n");
        return 1;
    }
    for (size_t i = 0; i < N_MODELS; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", model_dir, names[i]);
        pa_error err = {0};
        CHECK_MSG(pa_fingerprint_path(path, NULL, &fps[i], &err) == PA_OK, "%s: %s", names[i],
                  err.msg);
        if (!fps[i])
            return check_report("lsh");
        CHECK(pa_lsh_signature(fps[i], &sigs[i]) == 0);
        CHECK_MSG(sigs[i].n_bands > 0, "%s: no bands", names[i]);
    }
    /* the labelled pairs: the parent is a top candidate of the child */
    int worst = 0;
    for (size_t k = 0; k < sizeof pairs / sizeof *pairs; k++) {
        int p = index_of(pairs[k][0]), c = index_of(pairs[k][1]);
        int r = rank_of(p, c);
        fprintf(stderr, "%-16s %-18s matches %3d rank %2d\n", pairs[k][0], pairs[k][1],
                matches(&sigs[p], &sigs[c]), r);
        CHECK_MSG(r >= 1 && r <= RETRIEVE_K, "%s as a candidate of %s: rank %d", pairs[k][0],
                  pairs[k][1], r);
        if (r > worst)
            worst = r;
    }
    /* exhaustive comparison against retrieval: every derived/identical relative of a model that
     * shares no key would be missed whatever K; count them */
    int related = 0, keyed = 0;
    for (size_t c = 0; c < N_MODELS; c++) {
        for (size_t p = 0; p < N_MODELS; p++) {
            if (p == c)
                continue;
            pa_compare_result r;
            pa_compare(fps[p], fps[c], &r);
            if (r.verdict != PA_V_DERIVED && r.verdict != PA_V_IDENTICAL)
                continue;
            related++;
            keyed += matches(&sigs[p], &sigs[c]) > 0;
            CHECK_MSG(matches(&sigs[p], &sigs[c]) > 0, "%s and %s: %s but share no key",
                      names[p], names[c], pa_verdict_name(r.verdict));
        }
    }
    fprintf(stderr, "labelled parents: worst rank %d of %zu models; related pairs (exhaustive) "
                    "%d, sharing a key %d\n", worst, N_MODELS, related, keyed);
    /* unrelated models share (almost) nothing: independent bases and their derivatives */
    int a = index_of("base"), b = index_of("indep"), g = index_of("gbase");
    CHECK_INT(matches(&sigs[a], &sigs[b]), 0);
    CHECK_INT(matches(&sigs[a], &sigs[g]), 0);
    for (size_t i = 0; i < N_MODELS; i++) {
        pa_lsh_sig_free(&sigs[i]);
        pa_fingerprint_free(fps[i]);
    }
    return check_report("lsh");
}
