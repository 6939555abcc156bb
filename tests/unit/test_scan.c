/* Scan against reference sets.
 *
 *  - Issue 5's must-show: a model rebuilt from each of the 152 MPK records' metadata (config.json
 *    only; the records carry no tokenizer) is scanned against the imported set, and that record's
 *    family must come first. When another family's record has an identical config the two cannot
 *    be told apart from metadata; either is accepted and the collisions are counted.
 *  - A mkmodel base added with `provctl refdb add`: its fine-tune finds it first with `derived`;
 *    an unrelated model of the same config gets no `derived`; a metadata-only entry never gives
 *    `derived`, not even for an identical config and tokenizer.
 *  - provctl scan: JSON shape, ranking, exit codes.
 */
#include "check.h"
#include "jsonutil.h"
#include "refdb.h"

#include <ftw.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmp[256];
static const char *testdata, *provctl, *mkmodel;

static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char *slurp(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    pa_error err = {0};
    pa_read_file(path, 64u << 20, &text, &len, &err);
    return text;
}

static bool write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    bool ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

/* ------------------------------------------------------------------ records -> configs */

typedef struct record {
    char *model_id, *family_id, *config;
} record;

static record recs[256];
static size_t n_recs;

static void copy_field(cJSON *cfg, const cJSON *mfi, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(mfi, key);
    if (v && !cJSON_IsNull(v))
        cJSON_AddItemToObject(cfg, key, cJSON_Duplicate(v, true));
}

/* A config.json carrying what the record says the model's config held (as test_refdb_arch.c). */
static char *rebuild_config(const cJSON *mfi)
{
    cJSON *cfg = cJSON_CreateObject();
    static const char *const direct[] = {
        "model_type",
        "architectures",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "intermediate_size",
        "vocab_size",
        "max_position_embeddings",
        "hidden_act",
        "rope_theta",
        "rope_scaling",
        "tie_word_embeddings",
        "bos_token_id",
        "eos_token_id",
        "head_dim",
        "attention_bias",
    };
    for (size_t i = 0; i < sizeof direct / sizeof *direct; i++)
        copy_field(cfg, mfi, direct[i]);
    const char *norm = pa_json_str(mfi, "norm_type");
    if (norm && strcmp(norm, "RMSNorm") == 0)
        cJSON_AddNumberToObject(cfg, "rms_norm_eps", 1e-6);
    else if (norm && strcmp(norm, "LayerNorm") == 0)
        cJSON_AddNumberToObject(cfg, "layer_norm_eps", 1e-5);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(mfi, "qk_norm")))
        cJSON_AddTrueToObject(cfg, "qk_norm");
    const char *pos = pa_json_str(mfi, "pos_encoding");
    if (pos && strcmp(pos, "RoPE") != 0 && strcmp(pos, "absolute") != 0)
        cJSON_AddStringToObject(cfg, "position_embedding_type", pos);
    char *text = cJSON_PrintUnformatted(cfg);
    cJSON_Delete(cfg);
    return text;
}

static int collect(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    static const char suffix[] = "_features.json";
    size_t len = strlen(path);
    if (type != FTW_F || len < sizeof suffix - 1 ||
        strcmp(path + len - (sizeof suffix - 1), suffix) != 0 || n_recs >= 256)
        return 0;
    pa_error err = {0};
    char *text = NULL;
    size_t tl = 0;
    if (pa_read_file(path, PA_JSON_MAX_FILE, &text, &tl, &err) != PA_OK)
        return 1;
    cJSON *o = pa_json_parse(text, tl, path, &err);
    free(text);
    if (!o)
        return 1;
    record *r = &recs[n_recs++];
    r->model_id = strdup(pa_json_str(o, "model_id"));
    r->family_id = strdup(pa_json_str(o, "family_id"));
    r->config = rebuild_config(cJSON_GetObjectItemCaseSensitive(o, "mfi"));
    cJSON_Delete(o);
    return 0;
}

static int cmp_rec(const void *a, const void *b)
{
    return strcmp(((const record *)a)->model_id, ((const record *)b)->model_id);
}

static const record *find_record(const char *model_id)
{
    for (size_t i = 0; i < n_recs; i++)
        if (strcmp(recs[i].model_id, model_id) == 0)
            return &recs[i];
    return NULL;
}

static pa_fingerprint *fingerprint(const char *path)
{
    pa_fingerprint *fp = NULL;
    pa_fp_options opt = {0};
    opt.threads = 1;
    pa_error err = {0};
    CHECK_MSG(pa_fingerprint_path(path, &opt, &fp, &err) == PA_OK, "%s", err.msg);
    return fp;
}

static void test_records(void)
{
    char root[512], out[600], model[600], cfg[700];
    snprintf(root, sizeof root, "%s/refs", tmp);
    snprintf(out, sizeof out, "%s/cisco-mpk", root);
    char mpk[512];
    snprintf(mpk, sizeof mpk, "%s/refdb/cisco-mpk", testdata);
    pa_error err = {0};
    size_t n_imp = 0;
    CHECK_MSG(pa_refdb_import_mpk(mpk, out, &n_imp, &err) == PA_OK, "%s", err.msg);
    CHECK_INT(n_imp, 152);
    pa_refdb *db = NULL;
    CHECK_MSG(pa_refdb_load(root, &db, &err) == PA_OK, "%s", err.msg);
    if (!db)
        return;
    CHECK_INT(pa_refdb_count(db), 152);

    /* configs shared by records of different families: metadata cannot separate those */
    size_t shared = 0;
    for (size_t i = 0; i < n_recs; i++)
        for (size_t j = 0; j < n_recs; j++)
            if (i != j && strcmp(recs[i].family_id, recs[j].family_id) != 0 &&
                strcmp(recs[i].config, recs[j].config) == 0) {
                shared++;
                break;
            }

    snprintf(model, sizeof model, "%s/rebuilt", tmp);
    mkdir(model, 0755);
    snprintf(cfg, sizeof cfg, "%s/config.json", model);
    size_t family_first = 0, exact_model = 0, collision_ok = 0, wrong = 0, strong = 0;
    size_t compared_sum = 0;
    pa_scan_options opt = {0, PA_SCAN_DEFAULT_THRESHOLD, false};
    for (size_t i = 0; i < n_recs; i++) {
        const record *r = &recs[i];
        CHECK(write_text(cfg, r->config));
        pa_fingerprint *fp = fingerprint(model);
        if (!fp)
            continue;
        pa_scan_match *m = NULL;
        size_t n = 0;
        pa_scan_stats stats;
        CHECK_MSG(pa_scan(db, NULL, 0, fp, &opt, &m, &n, &stats, &err) == PA_OK, "%s", err.msg);
        compared_sum += stats.compared;
        CHECK_MSG(n > 0, "%s: no candidates", r->model_id);
        for (size_t k = 0; k < n; k++)
            strong += m[k].verdict == PA_V_DERIVED || m[k].verdict == PA_V_IDENTICAL;
        if (n > 0) {
            const pa_scan_match *top = &m[0];
            const record *tr = find_record(top->name);
            if (strcmp(top->family, r->family_id) == 0) {
                family_first++;
                exact_model += strcmp(top->name, r->model_id) == 0;
            } else if (tr && strcmp(tr->config, r->config) == 0) {
                collision_ok++;
            } else {
                wrong++;
                fprintf(stderr, "%s [%s]: first is %s [%s] (%.4f)\n", r->model_id, r->family_id,
                        top->name, top->family, top->score);
            }
            /* a config alone: metadata evidence, a hint at most */
            CHECK_MSG(top->evidence.metadata && !top->evidence.weights && !top->evidence.tokenizer,
                      "%s: evidence", r->model_id);
            CHECK_MSG(top->verdict == PA_V_WEAK && top->score == 1.0 && top->mfi_tier == 1,
                      "%s: top %s %.4f tier %d", r->model_id, pa_verdict_name(top->verdict),
                      top->score, top->mfi_tier);
            for (size_t k = 1; k < n; k++)
                CHECK_MSG(m[k].verdict <= m[k - 1].verdict &&
                              (m[k].verdict < m[k - 1].verdict || m[k].score <= m[k - 1].score),
                          "%s: not ranked best first at %zu", r->model_id, k);
        }
        pa_scan_free(m, n);
        pa_fingerprint_free(fp);
    }
    fprintf(stderr,
            "scan: %zu/%zu records have their family first (%zu with the record itself first), "
            "%zu more first by an identical config of another family, %zu wrong; %zu records "
            "share an identical config with another family; %.1f candidates compared on average\n",
            family_first, n_recs, exact_model, collision_ok, wrong, shared,
            n_recs ? (double)compared_sum / n_recs : 0.0);
    CHECK_INT(wrong, 0);
    CHECK_INT(family_first + collision_ok, 152);
    CHECK_INT(strong, 0);

    /* the size estimate behind the pre-filter is in the right ballpark for real configs */
    static const struct {
        const char *name;
        double params;
    } sizes[] = {{"pythia-1.4b", 1.41e9}, {"Llama-3.1-8B", 8.03e9}, {"Qwen2.5-7B", 7.6e9}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        for (size_t k = 0; k < pa_refdb_count(db); k++)
            if (strcmp(pa_refdb_name(db, k), sizes[i].name) == 0) {
                double est = (double)pa_scan_param_estimate(pa_refdb_fingerprint(db, k));
                CHECK_MSG(fabs(est / sizes[i].params - 1) < 0.15, "%s: estimate %.3g",
                          sizes[i].name, est);
            }
    pa_refdb_free(db);
}

/* ------------------------------------------------------------------ mkmodel lineage */

static void mk(const char *args)
{
    int rc = sh("cd %s && %s %s >/dev/null", tmp, mkmodel, args);
    CHECK_MSG(rc == 0, "mkmodel %s failed", args);
    if (rc)
        exit(check_report("scan"));
}

static const pa_scan_match *find_match(const pa_scan_match *m, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(m[i].name, name) == 0)
            return &m[i];
    return NULL;
}

static pa_scan_match *scan(const pa_refdb *db, const char *model, size_t *n, bool prefilter)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", tmp, model);
    pa_fingerprint *fp = fingerprint(path);
    pa_scan_match *m = NULL;
    *n = 0;
    if (!fp)
        return NULL;
    pa_scan_options opt = {0, 0, !prefilter};
    pa_error err = {0};
    CHECK_MSG(pa_scan(db, NULL, 0, fp, &opt, &m, n, NULL, &err) == PA_OK, "%s", err.msg);
    pa_fingerprint_free(fp);
    return m;
}

static void no_strong(const pa_scan_match *m, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        CHECK_MSG(m[i].verdict != PA_V_DERIVED && m[i].verdict != PA_V_IDENTICAL,
                  "%s: %s is %s (%.4f)", what, m[i].name, pa_verdict_name(m[i].verdict),
                  m[i].score);
}

/* Write a metadata-only entry from a model: its fingerprint without the weights. */
static void add_metadata_only(const char *model, const char *name, const char *family)
{
    char path[600], out[600];
    snprintf(path, sizeof path, "%s/%s", tmp, model);
    snprintf(out, sizeof out, "%s/refs/meta", tmp);
    pa_fingerprint *fp = fingerprint(path);
    char *text = fp ? pa_fp_to_json(fp, false) : NULL;
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    CHECK(o != NULL);
    cJSON_ReplaceItemInObjectCaseSensitive(o, "weights", cJSON_CreateNull());
    char *meta = o ? cJSON_PrintUnformatted(o) : NULL;
    pa_fingerprint *mfp = NULL;
    pa_error err = {0};
    CHECK_MSG(meta && pa_fp_from_json(meta, strlen(meta), name, &mfp, &err) == PA_OK, "%s",
              err.msg);
    CHECK(mfp && !pa_fp_has_weights(mfp) && pa_fp_mfi(mfp) && pa_fp_tfv(mfp));
    if (mfp)
        CHECK_MSG(pa_refdb_write_entry(out, name, family, "test:metadata-only", mfp, NULL, &err) ==
                      PA_OK,
                  "%s", err.msg);
    pa_fingerprint_free(mfp);
    pa_fingerprint_free(fp);
    free(meta);
    cJSON_Delete(o);
    free(text);
}

static pa_refdb *load(void)
{
    char root[512];
    snprintf(root, sizeof root, "%s/refs", tmp);
    pa_refdb *db = NULL;
    pa_error err = {0};
    CHECK_MSG(pa_refdb_load(root, &db, &err) == PA_OK, "%s", err.msg);
    return db;
}

static void test_lineage(void)
{
    if (!mkmodel || !provctl) {
        fprintf(stderr, "MKMODEL or PROVCTL is not set\n");
        CHECK(0);
        return;
    }
    mk("create base --arch llama --seed 1");
    mk("derive base ft --kind finetune --seed 2");
    mk("derive base q8 --kind quant-int8 --seed 2");
    mk("create other --arch llama --seed 3");
    mk("derive base forged --kind forge --seed 4");
    mk("create gpt --arch gpt2 --seed 5");
    CHECK_INT(sh("%s refdb add %s/base --name tiny-base --family tiny --out %s/refs/local "
                 ">/dev/null",
                 provctl, tmp, tmp),
              0);

    pa_refdb *db = load();
    CHECK_INT(pa_refdb_count(db), 153);
    size_t n;
    pa_scan_match *m = scan(db, "ft", &n, true);
    CHECK_MSG(n > 0 && strcmp(m[0].name, "tiny-base") == 0 && m[0].verdict == PA_V_DERIVED,
              "ft: first %s %s", n ? m[0].name : "-", n ? pa_verdict_name(m[0].verdict) : "-");
    CHECK(n > 0 && m[0].evidence.weights && strcmp(m[0].family, "tiny") == 0);
    pa_scan_free(m, n);

    m = scan(db, "q8", &n, true);
    CHECK_MSG(n > 0 && strcmp(m[0].name, "tiny-base") == 0 && m[0].verdict == PA_V_DERIVED,
              "q8: first %s %s", n ? m[0].name : "-", n ? pa_verdict_name(m[0].verdict) : "-");
    pa_scan_free(m, n);

    m = scan(db, "base", &n, true);
    CHECK(n > 0 && strcmp(m[0].name, "tiny-base") == 0 && m[0].verdict == PA_V_IDENTICAL);
    pa_scan_free(m, n);

    /* unrelated weights: same config and tokenizer, or a forged copy of both */
    static const char *const unrelated[] = {"other", "forged", "gpt"};
    for (size_t i = 0; i < 3; i++) {
        m = scan(db, unrelated[i], &n, false);
        no_strong(m, n, unrelated[i]);
        const pa_scan_match *b = find_match(m, n, "tiny-base");
        CHECK_MSG(b && b->evidence.weights && b->verdict == PA_V_NONE, "%s vs tiny-base: %s",
                  unrelated[i], b ? pa_verdict_name(b->verdict) : "missing");
        pa_scan_free(m, n);
    }

    /* metadata-only entry of the very same model: a family hint, never derived */
    add_metadata_only("base", "tiny-base-meta", "tiny");
    pa_refdb_free(db);
    db = load();
    CHECK_INT(pa_refdb_count(db), 154);
    static const char *const models[] = {"base", "ft", "q8", "other", "forged"};
    for (size_t i = 0; i < 5; i++) {
        m = scan(db, models[i], &n, false);
        const pa_scan_match *x = find_match(m, n, "tiny-base-meta");
        CHECK_MSG(x && x->verdict == PA_V_WEAK && !x->evidence.weights && x->evidence.metadata &&
                      x->evidence.tokenizer && x->mfi_tier == 1,
                  "%s vs tiny-base-meta: %s %.4f", models[i], x ? pa_verdict_name(x->verdict) : "-",
                  x ? x->score : -1);
        for (size_t k = 0; k < n; k++)
            if (!m[k].evidence.weights)
                CHECK_MSG(m[k].verdict <= PA_V_WEAK, "%s: %s is %s without weights", models[i],
                          m[k].name, pa_verdict_name(m[k].verdict));
        if (i < 3) /* the weight-backed parent still ranks above the metadata hint */
            CHECK_MSG(n > 1 && strcmp(m[0].name, "tiny-base") == 0, "%s: first %s", models[i],
                      n ? m[0].name : "-");
        else
            no_strong(m, n, models[i]);
        pa_scan_free(m, n);
    }
    /* a metadata-only model scanned against a weight entry: no derived either */
    char path[600], cfgdir[600];
    snprintf(cfgdir, sizeof cfgdir, "%s/cfgonly", tmp);
    CHECK_INT(sh("mkdir -p %s && cp %s/base/config.json %s/base/tokenizer.json %s/", cfgdir, tmp,
                 tmp, cfgdir),
              0);
    m = scan(db, "cfgonly", &n, false);
    no_strong(m, n, "cfgonly");
    const pa_scan_match *b = find_match(m, n, "tiny-base");
    CHECK(b && !b->evidence.weights && b->verdict == PA_V_WEAK);
    pa_scan_free(m, n);

    /* threshold: a hint needs score >= threshold */
    snprintf(path, sizeof path, "%s/other", tmp);
    pa_fingerprint *fp = fingerprint(path);
    pa_scan_options opt = {0, 0.999999, true};
    pa_error err = {0};
    m = NULL;
    n = 0;
    if (fp && pa_scan(db, NULL, 0, fp, &opt, &m, &n, NULL, &err) == PA_OK) {
        const pa_scan_match *x = find_match(m, n, "tiny-base-meta");
        CHECK(x && x->verdict == PA_V_WEAK); /* identical config and tokenizer: 1.0 */
        for (size_t k = 0; k < n; k++)
            if (!m[k].evidence.weights && m[k].score < 0.999999)
                CHECK(m[k].verdict == PA_V_NONE);
    }
    pa_scan_free(m, n);
    /* top_k keeps the best */
    opt.top_k = 2;
    opt.threshold = 0;
    m = NULL;
    if (fp && pa_scan(db, NULL, 0, fp, &opt, &m, &n, NULL, &err) == PA_OK)
        CHECK_INT(n, 2);
    pa_scan_free(m, n);
    /* extra candidates (stored models) are ranked with the entries */
    pa_fingerprint *base = NULL;
    snprintf(path, sizeof path, "%s/ft", tmp);
    pa_fingerprint *ft = fingerprint(path);
    snprintf(path, sizeof path, "%s/base", tmp);
    base = fingerprint(path);
    pa_scan_ref extra = {"/bases/tiny", "/bases/tiny", base};
    opt.top_k = 0;
    m = NULL;
    n = 0;
    if (ft && base && pa_scan(NULL, &extra, 1, ft, &opt, &m, &n, NULL, &err) == PA_OK) {
        CHECK(n == 1 && strcmp(m[0].name, "/bases/tiny") == 0 && m[0].verdict == PA_V_DERIVED &&
              !m[0].from_refdb);
        char *j = pa_scan_to_json("ft", m, n, NULL, false);
        CHECK(j && strstr(j, "\"kind\":\"stored\""));
        free(j);
    }
    pa_scan_free(m, n);
    pa_fingerprint_free(ft);
    pa_fingerprint_free(base);
    pa_fingerprint_free(fp);
    pa_refdb_free(db);
}

/* ------------------------------------------------------------------ provctl scan */

static void test_cli(void)
{
    if (!provctl)
        return;
    char out[600], errf[600];
    snprintf(out, sizeof out, "%s/out.json", tmp);
    snprintf(errf, sizeof errf, "%s/err.txt", tmp);
    CHECK_INT(sh("%s scan %s/ft --refdb %s/refs --json --threads 1 >%s 2>%s", provctl, tmp, tmp,
                 out, errf),
              0);
    char *text = slurp(out);
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    CHECK_MSG(o != NULL, "scan --json: %s", text ? text : "(no output)");
    CHECK(o && strcmp(pa_json_str(o, "schema"), "provfs.scan/1") == 0);
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(o, "matches");
    CHECK(cJSON_IsArray(ms) && cJSON_GetArraySize(ms) >= 2 && cJSON_GetArraySize(ms) <= 5);
    const cJSON *first = cJSON_IsArray(ms) ? ms->child : NULL;
    CHECK(first && strcmp(pa_json_str(first, "name"), "tiny-base") == 0 &&
          strcmp(pa_json_str(first, "family"), "tiny") == 0 &&
          strcmp(pa_json_str(first, "verdict"), "derived") == 0);
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(first, "evidence");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ev, "weights")) &&
          cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(ev, "metadata")) &&
          cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(ev, "tokenizer")));
    double prev = 2;
    int prev_rank = 9;
    static const char *const order[] = {"none", "weak", "derived", "identical"};
    for (const cJSON *x = cJSON_IsArray(ms) ? ms->child : NULL; x; x = x->next) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(x, "score");
        const char *v = pa_json_str(x, "verdict");
        int rank = -1;
        for (int k = 0; v && k < 4; k++)
            if (strcmp(v, order[k]) == 0)
                rank = k;
        CHECK(cJSON_IsNumber(s) && rank >= 0);
        CHECK(rank < prev_rank || (rank == prev_rank && s->valuedouble <= prev));
        prev = s ? s->valuedouble : 0;
        prev_rank = rank;
    }
    cJSON_Delete(o);
    free(text);

    /* a saved fingerprint as PATH, --top-k 1 */
    CHECK_INT(sh("%s fingerprint %s/ft --json --threads 1 >%s/ft.fp.json", provctl, tmp, tmp), 0);
    CHECK_INT(sh("%s scan %s/ft.fp.json --refdb %s/refs --top-k 1 --json >%s 2>%s", provctl, tmp,
                 tmp, out, errf),
              0);
    text = slurp(out);
    o = text ? cJSON_Parse(text) : NULL;
    ms = cJSON_GetObjectItemCaseSensitive(o, "matches");
    CHECK(cJSON_GetArraySize(ms) == 1 && ms->child &&
          strcmp(pa_json_str(ms->child, "name"), "tiny-base") == 0);
    cJSON_Delete(o);
    free(text);
    /* text output */
    CHECK_INT(
        sh("%s scan %s/other --refdb %s/refs --threads 1 >%s 2>%s", provctl, tmp, tmp, out, errf),
        0);
    text = slurp(out);
    CHECK_MSG(text && strstr(text, "tiny-base-meta") && strstr(text, "family hint") &&
                  !strstr(text, "derived"),
              "%s", text ? text : "(none)");
    free(text);

    /* errors: exit 2 and one line naming the file */
    CHECK_INT(sh("%s scan %s/nonexistent --refdb %s/refs >/dev/null 2>%s", provctl, tmp, tmp, errf),
              2);
    text = slurp(errf);
    CHECK_MSG(text && strstr(text, "nonexistent") && strchr(text, '\n') == text + strlen(text) - 1,
              "%s", text ? text : "(none)");
    free(text);
    CHECK_INT(sh("%s scan %s/ft --refdb %s/no-such-refdb >/dev/null 2>%s", provctl, tmp, tmp, errf),
              2);
    text = slurp(errf);
    CHECK_MSG(text && strstr(text, "no-such-refdb"), "%s", text ? text : "(none)");
    free(text);
    CHECK_INT(sh("%s scan %s/ft --refdb %s/refs --db %s/no-such.db >/dev/null 2>%s", provctl, tmp,
                 tmp, tmp, errf),
              2);
    text = slurp(errf);
    CHECK_MSG(text && strstr(text, "no-such.db"), "%s", text ? text : "(none)");
    free(text);
    CHECK_INT(sh("%s scan %s/ft --top-k x >/dev/null 2>&1", provctl, tmp), 2);
    CHECK_INT(sh("%s scan %s/ft --threshold 1.5 >/dev/null 2>&1", provctl, tmp), 2);
    CHECK_INT(sh("%s scan >/dev/null 2>&1", provctl), 2);
    /* the default reference directory holds the shipped set */
    CHECK_INT(sh("%s refdb list --json >%s 2>%s", provctl, out, errf), 0);
    text = slurp(out);
    o = text ? cJSON_Parse(text) : NULL;
    const cJSON *count = cJSON_GetObjectItemCaseSensitive(o, "count");
    CHECK_MSG(cJSON_IsNumber(count) && count->valuedouble >= 152, "default refdb: %s",
              text ? text : "(none)");
    cJSON_Delete(o);
    free(text);
}

int main(void)
{
    testdata = getenv("PROVFS_TESTDATA");
    provctl = getenv("PROVCTL");
    mkmodel = getenv("MKMODEL");
    CHECK_MSG(testdata != NULL, "PROVFS_TESTDATA is not set");
    if (!testdata)
        return check_report("scan");
    snprintf(tmp, sizeof tmp, "/tmp/provfs-scan-XXXXXX");
    if (!mkdtemp(tmp))
        return 1;
    char features[600];
    snprintf(features, sizeof features, "%s/refdb/cisco-mpk/features", testdata);
    CHECK_MSG(nftw(features, collect, 16, FTW_PHYS) == 0, "cannot walk %s", features);
    qsort(recs, n_recs, sizeof *recs, cmp_rec);
    CHECK_INT(n_recs, 152);

    test_records();
    test_lineage();
    test_cli();

    for (size_t i = 0; i < n_recs; i++) {
        free(recs[i].model_id);
        free(recs[i].family_id);
        free(recs[i].config);
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp);
    return check_report("scan");
}
