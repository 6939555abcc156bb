/* Candidates from the index (analyzer/lsh.h, store_retrieve) against comparing every stored
 * model: models of every kind mkmodel derives (fine-tunes, int8 and GGUF quantisations, permuted,
 * rotated, pruned, vocab-extended, stitched, a soup), analysed in process into three stores, one
 * comparing exhaustively, one retrieving the default number of candidates, one retrieving only
 * two (the families of the relatives found must make up the rest): the same parents, with the
 * same verdicts, in all three. Also: a store opened with an index of another version (or none)
 * is indexed again from its stored fingerprints. */
#include "analyze.h"
#include "check.h"
#include "lsh.h"
#include "provfs/analyzer.h"

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <unistd.h>

static char tmp[256];
static char bdir[300]; /* tmp/b: the models, the backing directory */
static const char *mkmodel;

#define run(...) check_run(bdir, mkmodel, "retrieve", __VA_ARGS__)

static const char *const paths[] = {
    "/base", "/indep", "/ft", "/int8", "/q8.gguf", "/perm", "/rot", "/prune", "/vocab",
    "/stitch", "/ft-ft", "/rot-ft", "/ft2", "/soup", "/indep-ft", "/other",
};
#define N_PATHS (sizeof paths / sizeof *paths)

/* Stores the models one at a time retrieving k candidates (0: exhaustive) into db NAME; writes
 * "path<-parent:verdict " for each into out. */
static void lineage_with(const char *name, size_t k, char *out, size_t outlen)
{
    char backing[300], db[320];
    snprintf(backing, sizeof backing, "%s/b", tmp);
    snprintf(db, sizeof db, "%s/%s.db", tmp, name);
    store_handle *st = NULL;
    char err[256];
    CHECK_MSG(store_open(db, 0, &st, err, sizeof err) == 0, "%s", err);
    analyze_ctx *an = st ? analyze_create(backing, st, 1) : NULL;
    CHECK(an != NULL);
    queue *q = an ? queue_create(1, 0, analyze_job, an) : NULL;
    CHECK(q != NULL);
    out[0] = '\0';
    if (!q)
        return;
    analyze_set_retrieval(an, k);
    analyze_set_queue(an, q);
    for (size_t i = 0; i < N_PATHS; i++) {
        queue_mark(q, paths[i], 0, 0);
        CHECK(queue_wait_idle(q, 60000));
    }
    for (size_t i = 0; i < N_PATHS; i++) {
        store_model m;
        store_link l;
        bool have = store_model_by_path(st, paths[i], &m) == 0;
        CHECK_MSG(have && strcmp(m.status, "ready") == 0, "%s not ready", paths[i]);
        bool linked = have && store_parent(st, m.id, &l) == 0;
        size_t o = strlen(out);
        snprintf(out + o, outlen - o, "%s<-%s:%s ", paths[i], linked && l.path ? l.path : "-",
                 linked ? l.verdict : "");
        if (linked)
            store_link_clear(&l);
        if (have)
            store_model_clear(&m);
    }
    int64_t bands = 0, hashes = 0, version = 0;
    CHECK(store_lsh_counts(st, &bands, &hashes, &version) == 0);
    CHECK(bands > 0 && hashes > 0 && version == PA_LSH_VERSION);
    queue_destroy(q);
    analyze_destroy(an);
    store_close(st);
}

static int64_t db_int(const char *name, const char *sql)
{
    char path[320];
    snprintf(path, sizeof path, "%s/%s.db", tmp, name);
    sqlite3 *db = NULL;
    int64_t v = -1;
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_open(path, &db) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) == SQLITE_OK) {
        int rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW)
            v = sqlite3_column_int64(stmt, 0);
        else if (rc == SQLITE_DONE)
            v = 0;
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return v;
}

static void db_exec(const char *name, const char *sql)
{
    char path[320];
    snprintf(path, sizeof path, "%s/%s.db", tmp, name);
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK &&
          sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
}

/* Makes store NAME look like one from before schema 13: each fingerprint back in column
 * fingerprint as JSON, column fpbin gone, user_version 12 (what store_open then upgrades).
 * Returns the stored binary fingerprints, by model id (bins[id], lens[id]; id <= 63). */
static void to_schema_12(const char *name, uint8_t **bins, size_t *lens)
{
    char path[320], err[256];
    snprintf(path, sizeof path, "%s/%s.db", tmp, name);
    store_handle *st = NULL;
    CHECK_MSG(store_open(path, 0, &st, err, sizeof err) == 0, "%s", err);
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    sqlite3_stmt *upd = NULL;
    CHECK(sqlite3_prepare_v2(db, "UPDATE models SET fingerprint = ?2 WHERE id = ?1", -1, &upd,
                             NULL) == SQLITE_OK);
    for (int64_t id = 1; st && id < 64; id++) {
        bins[id] = NULL;
        lens[id] = 0;
        pa_fingerprint *fp = NULL;
        if (store_fingerprint_fp(st, id, &fp) != 0)
            continue;
        /* what upgrading should give: the JSON read as now (a GGUF F32 tensor reads back as a
         * safetensors F32 one: the JSON spells both alike) */
        pa_error e = {0};
        char *json = pa_fp_to_json(fp, false);
        pa_fingerprint *again = NULL;
        CHECK(json && pa_fp_from_json(json, strlen(json), "json", &again, &e) == PA_OK);
        CHECK(again && pa_fp_to_bin(again, &bins[id], &lens[id], &e) == PA_OK);
        pa_fingerprint_free(again);
        pa_fingerprint_free(fp);
        sqlite3_bind_int64(upd, 1, id);
        sqlite3_bind_text(upd, 2, json, -1, SQLITE_TRANSIENT);
        CHECK(sqlite3_step(upd) == SQLITE_DONE);
        sqlite3_reset(upd);
        free(json);
    }
    sqlite3_finalize(upd);
    sqlite3_close(db);
    store_close(st);
    db_exec(name, "ALTER TABLE models DROP COLUMN fpbin; ALTER TABLE model_paths DROP COLUMN file_ids;"
                  " DROP TABLE file_inodes; PRAGMA user_version = 12");
}

/* A store of schema 12 keeps its fingerprints as JSON: opening it converts each to the binary
 * form of what that JSON reads as, and indexes them again. */
static void test_upgrade(void)
{
    static uint8_t *bins[64];
    static size_t lens[64];
    int64_t ready = db_int("two", "SELECT count(*) FROM models WHERE status = 'ready'");
    int64_t bands = db_int("two", "SELECT count(*) FROM lsh_bands");
    to_schema_12("two", bins, lens);
    db_exec("two", "DELETE FROM lsh_bands; UPDATE settings SET value = 1 WHERE key = 'lsh_version'");
    CHECK_INT(db_int("two", "SELECT count(*) FROM models WHERE fingerprint IS NOT NULL"), ready);
    char path[320], err[256];
    snprintf(path, sizeof path, "%s/two.db", tmp);
    store_handle *st = NULL;
    CHECK_MSG(store_open(path, 0, &st, err, sizeof err) == 0, "%s", err);
    CHECK_INT(db_int("two", "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    CHECK_INT(db_int("two", "SELECT count(*) FROM models WHERE fpbin IS NOT NULL"), ready);
    CHECK_INT(db_int("two", "SELECT count(*) FROM models WHERE fingerprint IS NOT NULL"), 0);
    CHECK_INT(db_int("two", "SELECT count(*) FROM lsh_bands"), bands);
    int same = 0;
    for (int64_t id = 1; st && id < 64; id++) {
        pa_fingerprint *fp = NULL;
        if (!bins[id] || store_fingerprint_fp(st, id, &fp) != 0)
            continue;
        uint8_t *b = NULL;
        size_t n = 0;
        pa_error e = {0};
        CHECK(pa_fp_to_bin(fp, &b, &n, &e) == PA_OK);
        same += b && n == lens[id] && memcmp(b, bins[id], n) == 0;
        free(b);
        free(bins[id]);
        pa_fingerprint_free(fp);
    }
    CHECK_INT(same, ready);
    store_close(st);
}

/* The root's counts kept by triggers (migration 9) agree with counting the tables. */
static void check_counts(const char *name)
{
    char db[320], err[256];
    snprintf(db, sizeof db, "%s/%s.db", tmp, name);
    store_handle *st = NULL;
    CHECK_MSG(store_open(db, 0, &st, err, sizeof err) == 0, "%s", err);
    store_counts c;
    CHECK(st && store_counts_get(st, &c) == 0);
    store_close(st);
    CHECK_INT(c.models, db_int(name, "SELECT count(*) FROM models"));
    CHECK_INT(c.paths, db_int(name, "SELECT count(*) FROM model_paths"));
    CHECK_INT(c.edges, db_int(name, "SELECT count(*) FROM edges"));
    CHECK_INT(c.ready, db_int(name, "SELECT count(*) FROM models WHERE status = 'ready'"));
    CHECK_INT(c.failed, db_int(name, "SELECT count(*) FROM models WHERE status = 'failed'"));
    CHECK_INT(c.pending + c.analyzing + c.incomplete,
              db_int(name, "SELECT count(*) FROM models WHERE status IN"
                           " ('pending', 'analyzing', 'incomplete')"));
}

static void test_counts(void)
{
    check_counts("exhaustive");
    CHECK_INT(db_int("exhaustive", "SELECT count(*) FROM models"), N_PATHS);
    CHECK(db_int("exhaustive", "SELECT count(*) FROM edges") > 10);
    /* removals cascade to paths and edges, a status changes, a path is added */
    char db[320], err[256];
    snprintf(db, sizeof db, "%s/exhaustive.db", tmp);
    store_handle *st = NULL;
    CHECK_MSG(store_open(db, 0, &st, err, sizeof err) == 0, "%s", err);
    int64_t id = 0;
    CHECK(st && store_remove_path(st, "/ft", false) == 0);
    CHECK(st && store_set_status(st, "/base", "pending") == 0);
    CHECK(st && store_begin(st, "/new", 1, 0, &id) == 0);
    CHECK(st && store_finish_error(st, id, "failed", "test") == 0);
    store_close(st);
    check_counts("exhaustive");
    CHECK_INT(db_int("exhaustive", "SELECT count(*) FROM models WHERE status = 'failed'"), 1);
    /* a store from before the counts: they are made from the tables */
    static uint8_t *bins[64];
    static size_t lens[64];
    to_schema_12("exhaustive", bins, lens);
    for (int i = 0; i < 64; i++)
        free(bins[i]);
    db_exec("exhaustive", "DROP TRIGGER stats_models_ins; DROP TRIGGER stats_edges_del;"
                          " UPDATE store_stats SET n = 0; PRAGMA user_version = 8");
    check_counts("exhaustive");
    CHECK(db_int("exhaustive", "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'") ==
          7);
}

static void test_backfill(void)
{
    int64_t bands = db_int("retrieve", "SELECT count(*) FROM lsh_bands");
    int64_t hashes = db_int("retrieve", "SELECT count(*) FROM tensor_hashes");
    CHECK(bands > 0 && hashes > 0);
    /* an index of another version, with rows lost */
    db_exec("retrieve", "DELETE FROM lsh_bands WHERE rowid % 2 = 0; DELETE FROM tensor_hashes;"
                        " UPDATE settings SET value = 0 WHERE key = 'lsh_version'");
    CHECK(db_int("retrieve", "SELECT count(*) FROM tensor_hashes") == 0);
    char db[320], err[256];
    snprintf(db, sizeof db, "%s/retrieve.db", tmp);
    store_handle *st = NULL;
    CHECK_MSG(store_open(db, 0, &st, err, sizeof err) == 0, "%s", err);
    store_close(st);
    CHECK_INT(db_int("retrieve", "SELECT count(*) FROM lsh_bands"), bands);
    CHECK_INT(db_int("retrieve", "SELECT count(*) FROM tensor_hashes"), hashes);
    CHECK_INT(db_int("retrieve", "SELECT value FROM settings WHERE key = 'lsh_version'"),
              PA_LSH_VERSION);
}

/* provctl scan --db on the "retrieve" store: the stored models of the model's family are found
 * from the index (fewer candidates than with --no-prefilter when the store holds unrelated
 * models), with the same best match. Returns the scan's candidates; *best its best stored
 * match. */
static double scan_stored(const char *model, bool all, char *best, size_t len)
{
    const char *provctl = getenv("PROVCTL");
    char cmd[1200], out[320];
    snprintf(out, sizeof out, "%s/scan.json", tmp);
    snprintf(cmd, sizeof cmd, "%s scan %s/b/%s --db %s/retrieve.db --refdb %s/norefs --top-k 0 "
                              "--json %s >%s 2>/dev/null",
             provctl ? provctl : "provctl", tmp, model, tmp, tmp, all ? "--no-prefilter" : "",
             out);
    best[0] = '\0';
    CHECK_MSG(system(cmd) == 0, "%s", cmd);
    FILE *f = fopen(out, "r");
    char *text = f ? calloc(1, 1 << 20) : NULL;
    if (text)
        fread(text, 1, (1 << 20) - 1, f);
    if (f)
        fclose(f);
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    free(text);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "candidates");
    const cJSON *m = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "matches"), 0);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(m, "name");
    if (cJSON_IsString(name))
        snprintf(best, len, "%s", name->valuestring);
    double n = cJSON_IsNumber(c) ? c->valuedouble : -1;
    cJSON_Delete(o);
    return n;
}

static void test_scan(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/norefs", tmp);
    CHECK(system(cmd) == 0);
    char best_idx[256], best_all[256];
    double n_idx = scan_stored("ft-ft", false, best_idx, sizeof best_idx);
    double n_all = scan_stored("ft-ft", true, best_all, sizeof best_all);
    fprintf(stderr, "scan ft-ft: %.0f candidates from the index, %.0f in all; best %s / %s\n",
            n_idx, n_all, best_idx, best_all);
    CHECK_STR(best_idx, best_all);
    CHECK(best_idx[0] == '/');
    /* the index leaves out the three independent families' models */
    CHECK(n_idx > 0 && n_idx < n_all);
}

int main(void)
{
    mkmodel = getenv("MKMODEL");
    if (!mkmodel)
        return 1;
    snprintf(tmp, sizeof tmp, "/tmp/provfs-retrieve-XXXXXX");
    if (!mkdtemp(tmp))
        return 1;
    snprintf(bdir, sizeof bdir, "%s/b", tmp);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir %s/b", tmp);
    if (system(cmd) != 0)
        return 1;
    const char *arch = "--arch llama --hidden 64 --layers 3 --heads 4 --inter 128 --vocab 512";
    run("create base --seed 1 %s", arch);
    run("create indep --seed 2 %s", arch);
    run("create other --seed 3 %s", arch);
    run("derive base ft --kind finetune --seed 11 --drift 0.05");
    run("derive base int8 --kind quant-int8");
    run("gguf base q8.gguf --type q8_0");
    run("derive base perm --kind permute-mlp --seed 12");
    run("derive base rot --kind rotate --seed 13");
    run("derive base prune --kind prune-layers --drop 1");
    run("derive base vocab --kind vocab-extend --add 16 --seed 14");
    run("derive base stitch --kind stitch --with indep");
    run("derive ft ft-ft --kind finetune --seed 15 --drift 0.05");
    run("derive rot rot-ft --kind finetune --seed 16 --drift 0.05");
    run("derive base ft2 --kind finetune --seed 17 --drift 0.05");
    run("derive ft soup --kind soup --with ft2");
    run("derive indep indep-ft --kind finetune --seed 18 --drift 0.05");
    char exhaustive[4096], retrieved[4096], two[4096];
    lineage_with("exhaustive", 0, exhaustive, sizeof exhaustive);
    lineage_with("retrieve", ANALYZE_RETRIEVE_K, retrieved, sizeof retrieved);
    lineage_with("two", 2, two, sizeof two);
    fprintf(stderr, "exhaustive: %s\n", exhaustive);
    CHECK_STR(retrieved, exhaustive);
    CHECK_STR(two, exhaustive);
    /* the lineage is not empty: the test can tell */
    int derived = 0;
    for (const char *p = exhaustive; (p = strstr(p, ":derived")) != NULL; p++)
        derived++;
    CHECK_INT(derived, (int)N_PATHS - 3); /* all but the three independent bases */
    CHECK(strstr(exhaustive, "/indep-ft<-/indep:") && strstr(exhaustive, "/other<--:"));
    test_scan();
    test_backfill();
    test_upgrade();
    test_counts();
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp);
    return check_report("retrieve");
}
