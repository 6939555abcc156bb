/* Tensor-level diff on mkmodel pairs whose differences are known. */
#include "check.h"
#include "provfs/analyzer.h"

#include <unistd.h>

static char tmp[256];
static const char *mkmodel;

#define run(...) check_run(tmp, mkmodel, "diff", __VA_ARGS__)

static pa_diff diff(const char *a, const char *b)
{
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/%s", tmp, a);
    snprintf(pb, sizeof pb, "%s/%s", tmp, b);
    pa_diff d;
    pa_error err = {0};
    pa_status st = pa_diff_paths(pa, pb, &d, &err);
    CHECK_MSG(st == PA_OK, "diff %s %s: %s", a, b, err.msg);
    if (st)
        memset(&d, 0, sizeof d);
    return d;
}

static const pa_diff_entry *entry(const pa_diff *d, const char *name)
{
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->entries[i].name, name) == 0)
            return &d->entries[i];
    return NULL;
}

int main(void)
{
    mkmodel = getenv("MKMODEL");
    if (!mkmodel)
        return 1;
    snprintf(tmp, sizeof tmp, "/tmp/provfs-diff-XXXXXX");
    if (!mkdtemp(tmp))
        return 1;
    run("create base --seed 1 --hidden 64 --layers 3 --heads 4 --inter 128 --vocab 512");
    run("derive base copy --kind copy");
    run("derive base ft --kind finetune --drift 0.1 --seed 2");
    run("derive base pruned --kind prune-layers --keep 0,1");
    run("derive base vocab --kind vocab-extend --add 16 --seed 3");
    run("derive base half --kind convert --dtype bf16");

    pa_diff d = diff("base", "copy");
    CHECK(d.n > 0 && d.n_identical == d.n && d.n_changed == 0);
    pa_diff_free(&d);

    d = diff("base", "ft");
    CHECK(d.n_changed > 0 && d.n_added == 0 && d.n_removed == 0);
    const pa_diff_entry *q = entry(&d, "model.layers.0.self_attn.q_proj.weight");
    CHECK(q && q->kind == PA_D_CHANGED);
    /* drift 0.1 x the tensor's std: relative L2 ~0.1 */
    CHECK_MSG(q && q->rel_l2 > 0.07 && q->rel_l2 < 0.13, "rel_l2 %.4f", q ? q->rel_l2 : -1);
    char *j = pa_diff_to_json(&d, "base", "ft", false);
    CHECK(j && strstr(j, "\"schema\":\"provfs.diff/1\"") && strstr(j, "\"rel_l2\":"));
    free(j);
    pa_diff_free(&d);

    d = diff("base", "pruned");
    const pa_diff_entry *gone = entry(&d, "model.layers.2.mlp.up_proj.weight");
    CHECK(gone && gone->kind == PA_D_REMOVED);
    const pa_diff_entry *kept = entry(&d, "model.layers.1.mlp.up_proj.weight");
    CHECK(kept && kept->kind == PA_D_IDENTICAL);
    CHECK(d.n_removed == 9 && d.n_added == 0);
    pa_diff_free(&d);

    d = diff("base", "vocab");
    const pa_diff_entry *emb = entry(&d, "model.embed_tokens.weight");
    CHECK(emb && emb->kind == PA_D_CHANGED && strstr(emb->note, "512x64 -> 528x64"));
    pa_diff_free(&d);

    d = diff("base", "half");
    const pa_diff_entry *h = entry(&d, "model.norm.weight");
    CHECK(h && h->kind == PA_D_CHANGED && strstr(h->note, "F32 -> BF16"));
    CHECK(h && h->rel_l2 < 0.01);
    pa_diff_free(&d);

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp);
    return check_report("diff");
}
