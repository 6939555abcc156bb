/* Reference sets: import the MPK database (152 real models), load it back and compare every entry
 * with its record; entry round trip; refusals of malformed entries, records and catalogs; the
 * provctl refdb front end. */
#include "check.h"
#include "jsonutil.h"
#include "refdb.h"

#include <ftw.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmp[256];
static const char *testdata, *provctl;

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    CHECK_MSG(f != NULL, "cannot write %s", path);
    if (!f)
        return;
    fputs(text, f);
    fclose(f);
}

static void mkdirs(const char *fmt, ...)
{
    char path[1024], cmd[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path);
    CHECK_MSG(system(cmd) == 0, "%s", cmd);
}

/* ------------------------------------------------------------------ records */

typedef struct record {
    char *model_id, *family_id, *asset_id, *arch_hash, *family_hash, *path;
    int64_t vocab_size, tfv_vocab, num_merges;
} record;

static record recs[256];
static size_t n_recs;

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
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "mfi");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "tfv");
    record *r = &recs[n_recs++];
    r->path = strdup(path);
    r->model_id = strdup(pa_json_str(o, "model_id"));
    r->family_id = strdup(pa_json_str(o, "family_id"));
    r->asset_id = strdup(pa_json_str(o, "asset_id"));
    r->arch_hash = strdup(pa_json_str(m, "arch_hash"));
    r->family_hash = strdup(pa_json_str(m, "family_hash"));
    r->vocab_size = pa_json_int(m, "vocab_size", &r->vocab_size) ? r->vocab_size : -1;
    r->tfv_vocab = pa_json_int(t, "vocab_size", &r->tfv_vocab) ? r->tfv_vocab : -1;
    r->num_merges = pa_json_int(t, "num_merges", &r->num_merges) ? r->num_merges : -1;
    cJSON_Delete(o);
    return 0;
}

static const record *find_record(const char *model_id)
{
    for (size_t i = 0; i < n_recs; i++)
        if (strcmp(recs[i].model_id, model_id) == 0)
            return &recs[i];
    return NULL;
}

static void test_import(const char *mpk)
{
    char out[512];
    snprintf(out, sizeof out, "%s/refs/cisco-mpk", tmp);
    pa_error err = {0};
    size_t n = 0;
    CHECK_MSG(pa_refdb_import_mpk(mpk, out, &n, &err) == PA_OK, "%s", err.msg);
    CHECK_INT(n, 152);
    char lic[600];
    snprintf(lic, sizeof lic, "%s/LICENSE", out);
    CHECK_MSG(access(lic, R_OK) == 0, "LICENSE not copied");
    snprintf(lic, sizeof lic, "%s/NOTICE", out);
    CHECK_MSG(access(lic, R_OK) == 0, "NOTICE not copied");

    /* load the reference directory (one level up: sets are its subdirectories) */
    char root[512];
    snprintf(root, sizeof root, "%s/refs", tmp);
    pa_refdb *db = NULL;
    CHECK_MSG(pa_refdb_load(root, &db, &err) == PA_OK, "%s", err.msg);
    CHECK_INT(pa_refdb_count(db), 152);
    size_t arch_ok = 0, fam_ok = 0, meta_only = 0;
    for (size_t i = 0; i < pa_refdb_count(db); i++) {
        const pa_refentry *e = pa_refdb_entry(db, i);
        const record *r = find_record(e->name);
        CHECK_MSG(r != NULL, "entry %s has no record", e->name);
        if (!r)
            continue;
        const pa_mfi *m = pa_fp_mfi(e->fp);
        const pa_tfv *t = pa_fp_tfv(e->fp);
        CHECK_MSG(m && strcmp(m->arch_hash, r->arch_hash) == 0, "%s: arch_hash", e->name);
        arch_ok += m && strcmp(m->arch_hash, r->arch_hash) == 0;
        fam_ok += m && strcmp(m->family_hash, r->family_hash) == 0;
        CHECK_MSG(strcmp(e->family, r->family_id) == 0, "%s: family %s", e->name, e->family);
        char src[300];
        snprintf(src, sizeof src, "cisco-mpk:%s", r->asset_id);
        CHECK_STR(e->source, src);
        CHECK_MSG(m && m->vocab_size == r->vocab_size, "%s: vocab_size", e->name);
        CHECK_MSG(t && t->vocab_size == r->tfv_vocab && t->num_merges == r->num_merges, "%s: tfv",
                  e->name);
        meta_only += !pa_fp_has_weights(e->fp);
    }
    CHECK_INT(arch_ok, 152);
    CHECK_INT(fam_ok, 152);
    CHECK_INT(meta_only, 152);
    /* the accessors agree with the entry */
    CHECK(pa_refdb_name(db, 0) && pa_refdb_family(db, 0) && pa_refdb_source(db, 0) &&
          pa_refdb_fingerprint(db, 0));
    CHECK(pa_refdb_entry(db, 152) == NULL && pa_refdb_name(db, 152) == NULL);

    /* an entry written again from what was loaded reads back the same */
    const pa_refentry *e0 = pa_refdb_entry(db, 0);
    char again[512], *written = NULL;
    snprintf(again, sizeof again, "%s/again", tmp);
    CHECK(pa_refdb_write_entry(again, e0->name, e0->family, e0->source, e0->fp, &written, &err) ==
          PA_OK);
    pa_refentry back;
    CHECK_MSG(written && pa_refentry_read(written, &back, &err) == PA_OK, "%s", err.msg);
    if (written && err.status == PA_OK) {
        char *a = pa_fp_to_json(e0->fp, false), *b = pa_fp_to_json(back.fp, false);
        CHECK(a && b && strcmp(a, b) == 0);
        CHECK_STR(back.name, e0->name);
        free(a);
        free(b);
        pa_refentry_clear(&back);
    }
    free(written);
    pa_refdb_free(db);
}

/* ------------------------------------------------------------------ refusals */

static void expect_entry_error(const char *name, const char *text, const char *needle)
{
    char path[512];
    snprintf(path, sizeof path, "%s/bad/%s", tmp, name);
    write_text(path, text);
    pa_refentry e;
    pa_error err = {0};
    pa_status st = pa_refentry_read(path, &e, &err);
    CHECK_MSG(st != PA_OK, "%s accepted", name);
    CHECK_MSG(strstr(err.msg, path) != NULL, "message does not name the file: %s", err.msg);
    CHECK_MSG(!needle || strstr(err.msg, needle), "%s: '%s' lacks '%s'", name, err.msg, needle);
    if (st == PA_OK)
        pa_refentry_clear(&e);
}

static void expect_record_error(const char *text, const char *needle)
{
    pa_fingerprint *fp = NULL;
    char *a = NULL, *b = NULL, *c = NULL;
    pa_error err = {0};
    pa_status st = pa_refdb_mpk_record(text, strlen(text), "rec.json", &fp, &a, &b, &c, &err);
    CHECK_MSG(st != PA_OK, "record accepted: %s", text);
    CHECK_MSG(strstr(err.msg, "rec.json") && strstr(err.msg, needle), "'%s' lacks '%s'", err.msg,
              needle);
    CHECK(fp == NULL && a == NULL && b == NULL && c == NULL);
    pa_fingerprint_free(fp);
}

static const char good_mfi[] =
    "{\"model_type\":\"llama\",\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,"
    "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":4,"
    "\"intermediate_size\":128,\"vocab_size\":512,\"max_position_embeddings\":128,"
    "\"hidden_act\":\"silu\",\"rope_theta\":10000.0,\"rope_scaling\":null,"
    "\"tie_word_embeddings\":false,\"bos_token_id\":1,\"eos_token_id\":2,\"gqa_ratio\":1.0,"
    "\"attention_style\":\"MHA\",\"norm_type\":\"RMSNorm\",\"attention_bias\":false,"
    "\"qk_norm\":false,\"pos_encoding\":\"RoPE\",\"head_dim\":null,"
    "\"tokenizer_hash\":\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\","
    "\"arch_hash\":\"1111111111111111111111111111111111111111111111111111111111111111\","
    "\"family_hash\":\"2222222222222222222222222222222222222222222222222222222222222222\"}";

static char *record_with(const char *mfi, const char *tfv)
{
    size_t n = strlen(mfi) + strlen(tfv) + 200;
    char *s = malloc(n);
    snprintf(s, n,
             "{\"model_id\":\"m\",\"family_id\":\"f\",\"asset_id\":\"a\",\"mfi\":%s,\"tfv\":%s}",
             mfi, tfv);
    return s;
}

static char *replace(const char *s, const char *from, const char *to)
{
    const char *p = strstr(s, from);
    CHECK_MSG(p != NULL, "no '%s' to replace", from);
    if (!p)
        return strdup(s);
    size_t n = strlen(s) - strlen(from) + strlen(to) + 1;
    char *out = malloc(n);
    snprintf(out, n, "%.*s%s%s", (int)(p - s), s, to, p + strlen(from));
    return out;
}

static void test_refusals(void)
{
    mkdirs("%s/bad", tmp);
    expect_entry_error("notjson.json", "{\"schema\": ", "invalid JSON");
    expect_entry_error("schema.json", "{\"schema\":\"provfs.refentry/9\"}", "not a");
    expect_entry_error("array.json", "[1,2]", "not a");
    expect_entry_error("noname.json",
                       "{\"schema\":\"provfs.refentry/1\",\"family\":\"f\",\"source\":\"s\","
                       "\"fingerprint\":{}}",
                       "name, family and source");
    expect_entry_error("ctrl.json",
                       "{\"schema\":\"provfs.refentry/1\",\"name\":\"a\\nb\",\"family\":\"f\","
                       "\"source\":\"s\",\"fingerprint\":{}}",
                       "name, family and source");
    expect_entry_error("nofp.json",
                       "{\"schema\":\"provfs.refentry/1\",\"name\":\"n\",\"family\":\"f\","
                       "\"source\":\"s\",\"fingerprint\":3}",
                       "no fingerprint");
    expect_entry_error("badfp.json",
                       "{\"schema\":\"provfs.refentry/1\",\"name\":\"n\",\"family\":\"f\","
                       "\"source\":\"s\",\"fingerprint\":{\"schema\":\"x\"}}",
                       "fingerprint");
    expect_entry_error("badvocab.json",
                       "{\"schema\":\"provfs.refentry/1\",\"name\":\"n\",\"family\":\"f\","
                       "\"source\":\"s\",\"fingerprint\":{\"schema\":\"provfs.fingerprint/1\","
                       "\"vocab\":{\"n\":1,\"k\":99999,\"hashes\":\"\"}}}",
                       "vocabulary");

    /* a bad entry makes the whole load fail, naming that file */
    char root[512];
    snprintf(root, sizeof root, "%s/badset", tmp);
    mkdirs("%s/s1/entries", root);
    char path[600];
    snprintf(path, sizeof path, "%s/s1/entries/x.json", root);
    write_text(path, "{\"schema\":\"provfs.refentry/1\"}");
    pa_refdb *db = NULL;
    pa_error err = {0};
    CHECK(pa_refdb_load(root, &db, &err) != PA_OK && db == NULL);
    CHECK_MSG(strstr(err.msg, path), "%s", err.msg);
    pa_error_clear(&err);
    snprintf(path, sizeof path, "%s/missing", tmp);
    CHECK(pa_refdb_load(path, &db, &err) == PA_E_IO && strstr(err.msg, path));
    /* an empty directory is an empty database */
    pa_error_clear(&err);
    snprintf(path, sizeof path, "%s/empty", tmp);
    mkdirs("%s", path);
    CHECK(pa_refdb_load(path, &db, &err) == PA_OK && pa_refdb_count(db) == 0);
    pa_refdb_free(db);

    /* MPK records: the good one parses, each broken field is named */
    static const char tfv[] =
        "{\"vocab_size\":500,\"num_merges\":10,\"merge_rule_hash\":\"\",\"pct_single_char\":0.1,"
        "\"avg_token_length\":3.5,\"max_token_length\":12,\"pct_whitespace_prefix\":0.4,"
        "\"pct_byte_tokens\":0.0,\"script_distribution\":{\"Latin\":1.0},"
        "\"tokenizer_class\":\"X\",\"bos_token_id\":1,\"eos_token_id\":2,\"pad_token_id\":null,"
        "\"special_token_ids\":{\"pad\":null,\"unk\":0,\"mask\":null}}";
    char *good = record_with(good_mfi, tfv);
    pa_fingerprint *fp = NULL;
    char *a = NULL, *b = NULL, *c = NULL;
    pa_error_clear(&err);
    CHECK_MSG(pa_refdb_mpk_record(good, strlen(good), "rec.json", &fp, &a, &b, &c, &err) == PA_OK,
              "%s", err.msg);
    if (fp) {
        CHECK_STR(pa_fp_mfi(fp)->arch_hash,
                  "1111111111111111111111111111111111111111111111111111111111111111");
        CHECK(pa_fp_tfv(fp)->unk_id == 0 && pa_fp_tfv(fp)->pad_id == PA_NULL_INT);
        CHECK(!pa_fp_has_weights(fp));
    }
    pa_fingerprint_free(fp);
    free(a);
    free(b);
    free(c);
    free(good);
    /* no tfv at all is a metadata-only record without tokenizer features */
    good = record_with(good_mfi, "null");
    CHECK(pa_refdb_mpk_record(good, strlen(good), "rec.json", &fp, &a, &b, &c, &err) == PA_OK &&
          fp && pa_fp_tfv(fp) == NULL);
    pa_fingerprint_free(fp);
    free(a);
    free(b);
    free(c);
    free(good);

    static const struct {
        const char *from, *to, *needle;
    } mfi_bad[] = {
        {"\"hidden_size\":64", "\"hidden_size\":\"64\"", "mfi.hidden_size"},
        {"\"hidden_size\":64", "\"hidden_size\":64.5", "mfi.hidden_size"},
        {"\"num_hidden_layers\":2", "\"num_hidden_layers\":-2", "mfi.num_hidden_layers"},
        {"\"arch_hash\":\"1111", "\"arch_hash\":\"XX11", "mfi.arch_hash"},
        {"[\"LlamaForCausalLM\"]", "[1]", "mfi.architectures"},
        {"\"attention_style\":\"MHA\"", "\"attention_style\":\"MHAAAA\"", "mfi.attention_style"},
        {"\"rope_scaling\":null", "\"rope_scaling\":[1]", "mfi.rope_scaling"},
        {"\"qk_norm\":false", "\"qk_norm\":0", "mfi.qk_norm"},
        {"\"rope_theta\":10000.0", "\"rope_theta\":\"x\"", "mfi.rope_theta"},
    };
    for (size_t i = 0; i < sizeof mfi_bad / sizeof *mfi_bad; i++) {
        char *m = replace(good_mfi, mfi_bad[i].from, mfi_bad[i].to);
        char *rec = record_with(m, "null");
        expect_record_error(rec, mfi_bad[i].needle);
        free(rec);
        free(m);
    }
    static const struct {
        const char *from, *to, *needle;
    } tfv_bad[] = {
        {"\"vocab_size\":500", "\"vocab_size\":null", "tfv.vocab_size"},
        {"\"pct_single_char\":0.1", "\"pct_single_char\":7", "tfv.pct_single_char"},
        {"{\"Latin\":1.0}", "{\"Klingon\":1.0}", "tfv.script_distribution"},
        {"\"unk\":0", "\"unk\":\"0\"", "tfv.special_token_ids.unk"},
    };
    for (size_t i = 0; i < sizeof tfv_bad / sizeof *tfv_bad; i++) {
        char *t = replace(tfv, tfv_bad[i].from, tfv_bad[i].to);
        char *rec = record_with(good_mfi, t);
        expect_record_error(rec, tfv_bad[i].needle);
        free(rec);
        free(t);
    }
    expect_record_error("{\"model_id\":\"m\",\"family_id\":\"f\",\"asset_id\":\"a\"}", "no mfi");
    expect_record_error("{\"model_id\":7,\"family_id\":\"f\",\"asset_id\":\"a\",\"mfi\":{}}",
                        "model_id");
    expect_record_error("[]", "object");

    /* catalogs: a feature_path leaving the database is refused */
    char mpk[512];
    snprintf(mpk, sizeof mpk, "%s/evil", tmp);
    mkdirs("%s/catalog/by-family", mpk);
    snprintf(path, sizeof path, "%s/catalog/manifest.json", mpk);
    write_text(path,
               "{\"shards\":[{\"family_id\":\"f\",\"shard_path\":\"catalog/by-family/f.json\"}]}");
    snprintf(path, sizeof path, "%s/catalog/by-family/f.json", mpk);
    write_text(path,
               "{\"family\":{\"family_id\":\"f\"},\"assets\":[{\"model_id\":\"m\",\"asset_id\":"
               "\"a\",\"feature_path\":\"../../etc/passwd\"}]}");
    size_t n = 99;
    pa_error_clear(&err);
    char out[600];
    snprintf(out, sizeof out, "%s/evil-out", tmp);
    CHECK(pa_refdb_import_mpk(mpk, out, &n, &err) == PA_E_FORMAT && n == 0);
    CHECK_MSG(strstr(err.msg, "f.json") && strstr(err.msg, "feature_path"), "%s", err.msg);
    snprintf(path, sizeof path, "%s/catalog/manifest.json", mpk);
    write_text(path, "{\"shards\":[{\"family_id\":\"f\",\"shard_path\":\"/etc/passwd\"}]}");
    pa_error_clear(&err);
    CHECK(pa_refdb_import_mpk(mpk, out, &n, &err) == PA_E_FORMAT);
    CHECK_MSG(strstr(err.msg, "manifest.json") && strstr(err.msg, "shard_path"), "%s", err.msg);
    /* a record that does not match its catalog entry */
    write_text(path,
               "{\"shards\":[{\"family_id\":\"f\",\"shard_path\":\"catalog/by-family/f.json\"}]}");
    snprintf(path, sizeof path, "%s/catalog/by-family/f.json", mpk);
    write_text(path, "{\"family\":{\"family_id\":\"f\"},\"assets\":[{\"model_id\":\"other\","
                     "\"asset_id\":\"a\",\"feature_path\":\"rec.json\"}]}");
    snprintf(path, sizeof path, "%s/rec.json", mpk);
    char *rec = record_with(good_mfi, "null");
    write_text(path, rec);
    free(rec);
    pa_error_clear(&err);
    CHECK(pa_refdb_import_mpk(mpk, out, &n, &err) == PA_E_FORMAT);
    CHECK_MSG(strstr(err.msg, "rec.json") && strstr(err.msg, "does not match"), "%s", err.msg);

    /* safe file names */
    char safe[201];
    pa_refdb_safe_name("../x/y z", safe);
    CHECK_STR(safe, "_._x_y_z");
    pa_refdb_safe_name("", safe);
    CHECK_STR(safe, "_");
    pa_refdb_safe_name("Llama-3.1-8B", safe);
    CHECK_STR(safe, "Llama-3.1-8B");
}

/* ------------------------------------------------------------------ provctl refdb */

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
    pa_read_file(path, 1 << 20, &text, &len, &err);
    return text;
}

static void test_cli(const char *mpk)
{
    if (!provctl) {
        fprintf(stderr, "PROVCTL is not set: skipping the CLI checks\n");
        return;
    }
    CHECK_INT(sh("%s refdb import-mpk %s --out %s/cli/cisco-mpk >%s/out.txt 2>%s/err.txt", provctl,
                 mpk, tmp, tmp, tmp),
              0);
    char path[600];
    snprintf(path, sizeof path, "%s/out.txt", tmp);
    char *out = slurp(path);
    CHECK_MSG(out && strstr(out, "imported 152"), "%s", out ? out : "(no output)");
    free(out);
    CHECK_INT(
        sh("%s refdb list --refdb %s/cli --json >%s/out.txt 2>%s/err.txt", provctl, tmp, tmp, tmp),
        0);
    out = slurp(path);
    cJSON *o = out ? cJSON_Parse(out) : NULL;
    const cJSON *count = cJSON_GetObjectItemCaseSensitive(o, "count");
    CHECK(cJSON_IsNumber(count) && count->valuedouble == 152);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(o, "entries")) == 152);
    cJSON_Delete(o);
    free(out);
    /* errors: exit 2, one line on stderr naming the file */
    CHECK_INT(sh("%s refdb import-mpk %s/evil --out %s/cli2 >/dev/null 2>%s/err.txt", provctl, tmp,
                 tmp, tmp),
              2);
    snprintf(path, sizeof path, "%s/err.txt", tmp);
    char *err = slurp(path);
    CHECK_MSG(err && strstr(err, "rec.json") && strchr(err, '\n') == err + strlen(err) - 1, "%s",
              err ? err : "(none)");
    free(err);
    CHECK_INT(sh("%s refdb list --refdb %s/badset >/dev/null 2>%s/err.txt", provctl, tmp, tmp), 2);
    err = slurp(path);
    CHECK_MSG(err && strstr(err, "x.json"), "%s", err ? err : "(none)");
    free(err);
    CHECK_INT(sh("%s refdb add %s/nonexistent --name a --family b --out %s/cli3 >/dev/null "
                 "2>%s/err.txt",
                 provctl, tmp, tmp, tmp),
              2);
    err = slurp(path);
    CHECK_MSG(err && strstr(err, "nonexistent"), "%s", err ? err : "(none)");
    free(err);
    CHECK_INT(sh("%s refdb add %s --name a >/dev/null 2>&1", provctl, tmp), 2);
    CHECK_INT(sh("%s refdb frobnicate >/dev/null 2>&1", provctl), 2);
    CHECK_INT(sh("%s refdb list --bogus >/dev/null 2>&1", provctl), 2);
}

int main(void)
{
    testdata = getenv("PROVFS_TESTDATA");
    provctl = getenv("PROVCTL");
    CHECK_MSG(testdata != NULL, "PROVFS_TESTDATA is not set");
    if (!testdata)
        return check_report("refdb");
    snprintf(tmp, sizeof tmp, "/tmp/provfs-refdb-XXXXXX");
    if (!mkdtemp(tmp))
        return 1;
    char mpk[512], features[600];
    snprintf(mpk, sizeof mpk, "%s/refdb/cisco-mpk", testdata);
    snprintf(features, sizeof features, "%s/features", mpk);
    CHECK_MSG(nftw(features, collect, 16, FTW_PHYS) == 0, "cannot walk %s", features);
    CHECK_INT(n_recs, 152);

    test_import(mpk);
    test_refusals();
    test_cli(mpk);

    for (size_t i = 0; i < n_recs; i++) {
        free(recs[i].path);
        free(recs[i].model_id);
        free(recs[i].family_id);
        free(recs[i].asset_id);
        free(recs[i].arch_hash);
        free(recs[i].family_hash);
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp);
    return check_report("refdb");
}
