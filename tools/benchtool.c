/* benchtool — measurements for tools/bench.sh, each in one process so the numbers are comparable:
 *   benchtool read FILE           plain read() of the file into a reused 4 MiB buffer
 *   benchtool sha FILE            read() + SHA-256 (OpenSSL EVP): the floor for content hashing
 *   benchtool fingerprint PATH T [nofilesha]  fingerprint with T threads (optionally without the
 *                                 whole-file SHA-256); also peak RSS and fingerprint size
 *   benchtool compare A B N       N comparisons of two saved fingerprints (JSON files)
 *   benchtool scan M N C1 [C2 ...]  scan fingerprint M against N candidates cycling over C1..
 *   benchtool retrieve N DB [Q]   candidate retrieval from the index over a synthetic store of
 *                                 N models (below): time per retrieval, recall of the parent
 *   benchtool counts N DB         the store root's counts (store_counts_get, kept by triggers)
 *                                 against counting the tables, over N stored models
 *   benchtool worker PATH T PROVFS N  N rounds, alternating: fingerprint in this process vs in a
 *                                 provfs analysis worker (fs/worker.h: files opened here, passed
 *                                 over a socket, sandboxed worker, JSON back); T threads
 * Output: one "key=value ..." line. */
#include "analyze.h"
#include "fp.h"
#include "lsh.h"
#include "provfs/analyzer.h"
#include "refdb.h"
#include "store.h"
#include "worker.h"

#include <fcntl.h>
#include <math.h>
#include <sqlite3.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long peak_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static int read_file(const char *path, bool sha)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        perror(path);
        return 2;
    }
    size_t cap = 4u << 20;
    unsigned char *buf = malloc(cap);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    double t0 = now();
    unsigned long long total = 0;
    ssize_t r;
    while ((r = read(fd, buf, cap)) > 0) {
        if (sha)
            EVP_DigestUpdate(ctx, buf, (size_t)r);
        total += (unsigned long long)r;
    }
    unsigned char d[32];
    unsigned int dl = 32;
    EVP_DigestFinal_ex(ctx, d, &dl);
    double t = now() - t0;
    EVP_MD_CTX_free(ctx);
    free(buf);
    close(fd);
    printf("bytes=%llu seconds=%.4f gbps=%.3f\n", total, t, total / t / 1e9);
    return 0;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    fclose(f);
    return b;
}

/* CPU seconds (user + system) of this process and its reaped children. */
static double cpu_seconds(void)
{
    struct rusage a, b;
    getrusage(RUSAGE_SELF, &a);
    getrusage(RUSAGE_CHILDREN, &b);
    return (double)(a.ru_utime.tv_sec + a.ru_stime.tv_sec + b.ru_utime.tv_sec +
                    b.ru_stime.tv_sec) +
           (double)(a.ru_utime.tv_usec + a.ru_stime.tv_usec + b.ru_utime.tv_usec +
                    b.ru_stime.tv_usec) / 1e6;
}

static int worker_rounds(const char *path, int threads, const char *provfs, int n)
{
    worker_cfg cfg = {.exe = provfs, .mem_mb = 4096, .timeout_s = 600, .threads = threads};
    char user[32];
    if (geteuid() == 0 && worker_resolve_user(&cfg, user, sizeof user) != 0) {
        fprintf(stderr, "benchtool: no unprivileged user\n");
        return 2;
    }
    pa_fp_options opt = {.threads = threads};
    double best[2] = {1e30, 1e30}, sum[2] = {0, 0}, cpu[2] = {0, 0};
    char *json[2] = {NULL, NULL};
    for (int r = 0; r < n; r++)
        for (int w = 0; w < 2; w++) {
            pa_error err = {0};
            pa_fingerprint *fp = NULL;
            double c0 = cpu_seconds(), t0 = now();
            pa_status st;
            if (w) {
                pa_unit_files files;
                st = pa_unit_files_open(path, NULL, &files, &err);
                if (!st)
                    st = worker_fingerprint(&cfg, path, &files, NULL, NULL, &fp, &err);
                pa_unit_files_close(&files);
            } else {
                st = pa_fingerprint_path(path, &opt, &fp, &err);
            }
            double t = now() - t0;
            cpu[w] += cpu_seconds() - c0;
            if (st) {
                fprintf(stderr, "benchtool: %s\n", err.msg);
                return 2;
            }
            sum[w] += t;
            best[w] = t < best[w] ? t : best[w];
            free(json[w]);
            json[w] = pa_fp_set_path(fp, NULL) ? pa_fp_to_json(fp, false) : NULL;
            pa_fingerprint_free(fp);
        }
    bool same = json[0] && json[1] && strcmp(json[0], json[1]) == 0;
    printf("inprocess_best=%.4f worker_best=%.4f ratio_best=%.4f inprocess_mean=%.4f "
           "worker_mean=%.4f ratio_mean=%.4f inprocess_cpu=%.3f worker_cpu=%.3f "
           "ratio_cpu=%.4f same_fingerprint=%s\n",
           best[0], best[1], best[1] / best[0], sum[0] / n, sum[1] / n, sum[1] / sum[0],
           cpu[0] / n, cpu[1] / n, cpu[1] / cpu[0], same ? "yes" : "no");
    free(json[0]);
    free(json[1]);
    return same ? 0 : 1;
}

/* ------------------------------------------------------------------ candidate retrieval
 * benchtool retrieve N DB [Q]: a synthetic store of N models in families (no weights: vectors
 * standing for a fingerprint's 16 block sketches, its anchor cosines and 4 blocks' probe
 * products; each family's members the base perturbed as fine-tunes with relative drift
 * 0.01-0.3, int8-rounded copies, or "rotated" copies whose block sketches are unrelated and whose
 * rotation-invariant vectors drifted as a fine-tune's; a third of the fine-tunes keep some
 * tensors byte-identical),
 * indexed through the store (analyzer/lsh.h bands, tensor hashes) in DB, every model of one shape
 * (the worst case for the prefilter). Then Q (default 1000) further derived models, not stored,
 * are retrieved (store_retrieve, ANALYZE_RETRIEVE_K candidates): time per retrieval and recall
 * of their family's base. Output: one key=value line. */
#define SYN_TENSORS 16
#define SYN_BLOCK (PA_CK_BLOCK_R * PA_CK_BLOCK_C) /* a compact block sketch (compact.c) */
#define SYN_ANCHORS 64
#define SYN_COS (SYN_ANCHORS * (SYN_ANCHORS - 1) / 2)
#define SYN_PROBES 4   /* blocks with probe products */
#define SYN_PROBE 192  /* 3 terms x 8 x 8 probe tokens */

static uint64_t syn_state;

static double syn_uniform(void)
{
    syn_state = syn_state * 6364136223846793005ull + 1442695040888963407ull;
    return ((syn_state >> 11) + 0.5) / 9007199254740992.0;
}

static float syn_gauss(void)
{
    double u = syn_uniform(), v = syn_uniform();
    return (float)(sqrt(-2 * log(u)) * cos(2 * M_PI * v));
}

typedef struct syn_model {
    float t[SYN_TENSORS][SYN_BLOCK];
    float cos[SYN_COS];
    float probe[SYN_PROBES][SYN_PROBE];
    int64_t hash[SYN_TENSORS];
} syn_model;

static void syn_base(syn_model *m)
{
    for (int i = 0; i < SYN_TENSORS; i++) {
        for (int j = 0; j < SYN_BLOCK; j++)
            m->t[i][j] = syn_gauss();
        m->hash[i] = (int64_t)(syn_uniform() * 9e18);
    }
    for (int j = 0; j < SYN_COS; j++)
        m->cos[j] = 0.2f * syn_gauss();
    for (int l = 0; l < SYN_PROBES; l++)
        for (int j = 0; j < SYN_PROBE; j++)
            m->probe[l][j] = syn_gauss();
}

/* kind 0 fine-tune, 1 int8 copy, 2 rotated (weights unrecognisable, anchor cosines kept) */
static void syn_derive(const syn_model *b, syn_model *m, int kind)
{
    double drift = 0.01 + 0.29 * syn_uniform() * syn_uniform();
    bool keep = syn_uniform() < 0.33;
    for (int i = 0; i < SYN_TENSORS; i++) {
        bool same = kind == 0 && keep && i % 4 == 0;
        for (int j = 0; j < SYN_BLOCK; j++) {
            float x = b->t[i][j];
            if (kind == 0 && !same)
                x += (float)drift * syn_gauss();
            else if (kind == 1)
                x = roundf(x * 32) / 32;
            else if (kind == 2)
                x = syn_gauss();
            m->t[i][j] = x;
        }
        m->hash[i] = same ? b->hash[i] : (int64_t)(syn_uniform() * 9e18);
    }
    /* rotation-invariant vectors: as far from the base as the weights moved */
    for (int j = 0; j < SYN_COS; j++)
        m->cos[j] = b->cos[j] + (kind == 1 ? 0.002f : (float)drift * 0.2f) * syn_gauss();
    for (int l = 0; l < SYN_PROBES; l++)
        for (int j = 0; j < SYN_PROBE; j++)
            m->probe[l][j] = b->probe[l][j] + (kind == 1 ? 0.01f : (float)drift) * syn_gauss();
}

/* v on the grid a compact fingerprint keeps it on (compact.c) */
static const float *syn_grid(const float *v, uint32_t n, int levels, float *out)
{
    static int16_t q[SYN_COS];
    int e = pa_q_exponent(v, n, levels);
    pa_q_encode(v, n, e, levels, q);
    pa_q_decode(q, n, e, out);
    return out;
}

static void syn_sig(const syn_model *m, pa_lsh_sig *s)
{
    static pa_lsh_band bands[(SYN_TENSORS + 1 + SYN_PROBES) * PA_LSH_BANDS];
    static int64_t hashes[SYN_TENSORS];
    static float g[SYN_COS];
    size_t n = 0;
    for (int i = 0; i < SYN_TENSORS; i++)
        n += pa_lsh_vector_bands(PA_LSH_SRC_TENSOR, (uint32_t)i,
                                 syn_grid(m->t[i], SYN_BLOCK, PA_CK_BLOCK_LEVELS, g), SYN_BLOCK,
                                 bands + n);
    n += pa_lsh_vector_bands(PA_LSH_SRC_ANCHOR_COS, 0, syn_grid(m->cos, SYN_COS, PA_CK_LEVELS, g),
                             SYN_COS, bands + n);
    for (int l = 0; l < SYN_PROBES; l++)
        n += pa_lsh_vector_bands(PA_LSH_SRC_PROBE, (uint32_t)l,
                                 syn_grid(m->probe[l], SYN_PROBE, PA_CK_LEVELS, g), SYN_PROBE,
                                 bands + n);
    memcpy(hashes, m->hash, sizeof hashes);
    s->bands = bands;
    s->n_bands = n;
    s->hashes = hashes;
    s->n_hashes = SYN_TENSORS;
}

typedef struct syn_hits {
    int64_t want;
    bool found;
    size_t n;
} syn_hits;

static int syn_cb(void *ctx, int64_t id, int64_t created_ns, const char *digest, const void *bin,
                  size_t len)
{
    (void)created_ns, (void)digest, (void)bin, (void)len;
    syn_hits *h = ctx;
    h->found |= id == h->want;
    h->n++;
    return 0;
}


/* One synthetic model's rows: its models row (mi), bands (bi) and tensor hashes (hi). Returns
 * the index rows written. */
static size_t syn_insert(sqlite3_stmt *mi, sqlite3_stmt *bi, sqlite3_stmt *hi, int64_t id,
                         const pa_lsh_sig *s)
{
    sqlite3_bind_int64(mi, 1, id);
    sqlite3_step(mi);
    sqlite3_reset(mi);
    for (size_t i = 0; i < s->n_bands; i++) {
        sqlite3_bind_int64(bi, 1, s->bands[i].no);
        sqlite3_bind_int64(bi, 2, s->bands[i].value);
        sqlite3_bind_int64(bi, 3, id);
        sqlite3_step(bi);
        sqlite3_reset(bi);
    }
    for (size_t i = 0; i < s->n_hashes; i++) {
        sqlite3_bind_int64(hi, 1, s->hashes[i]);
        sqlite3_bind_int64(hi, 2, id);
        sqlite3_step(hi);
        sqlite3_reset(hi);
    }
    return s->n_bands + s->n_hashes;
}

/* A store made by an earlier run with the same n and queries (BENCH_RETRIEVE_KEEP=1): the
 * query phase alone runs again on it (store_open migrates it first when it is older). */
static bool retrieve_reusable(long n, const char *db_path, long queries)
{
    const char *keep = getenv("BENCH_RETRIEVE_KEEP");
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    bool ok = keep && strcmp(keep, "1") == 0 &&
              sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
              sqlite3_prepare_v2(db, "SELECT count(*) FROM models", -1, &q, NULL) == SQLITE_OK &&
              sqlite3_step(q) == SQLITE_ROW && sqlite3_column_int64(q, 0) == n + queries;
    sqlite3_finalize(q);
    sqlite3_close(db);
    return ok;
}

static int retrieve_bench(long n, const char *db_path, long queries)
{
    store_handle *st = NULL;
    char err[256];
    syn_model *base = malloc(sizeof *base), *m = malloc(sizeof *m);
    long families = 0, rows = 0;
    double t0 = now();
    if (retrieve_reusable(n, db_path, queries))
        goto query;
    unlink(db_path);
    if (store_open(db_path, 0, &st, err, sizeof err) != 0) {
        fprintf(stderr, "benchtool: %s\n", err);
        return 2;
    }
    store_close(st);
    sqlite3 *db = NULL;
    if (sqlite3_open(db_path, &db) != SQLITE_OK)
        return 2;
    /* bulk load: the key indexes are made once at the end (the migration's definitions) */
    sqlite3_exec(db, "PRAGMA synchronous=OFF; PRAGMA journal_mode=OFF; PRAGMA cache_size=-262144;"
                     " DROP INDEX lsh_bands_key; DROP INDEX lsh_bands_model;"
                     " DROP INDEX tensor_hashes_key; DROP INDEX tensor_hashes_model; BEGIN",
                 NULL, NULL, NULL);
    sqlite3_stmt *mi = NULL, *bi = NULL, *hi = NULL;
    sqlite3_prepare_v2(db, "INSERT INTO models (id, digest, status, fpbin, hidden_size,"
                           " vocab_size, created_ns) VALUES (?1, ?1, 'ready', x'00', 64, 512, ?1)",
                       -1, &mi, NULL);
    sqlite3_prepare_v2(db, "INSERT INTO lsh_bands VALUES (?1, ?2, ?3)", -1, &bi, NULL);
    sqlite3_prepare_v2(db, "INSERT INTO tensor_hashes VALUES (?1, ?2)", -1, &hi, NULL);
    syn_state = 42;
    for (long id = 1; id <= n;) {
        syn_base(base);
        families++;
        long members = 1 + (long)(syn_uniform() * 5); /* base + 0..4 derived */
        for (long k = 0; k < members && id <= n; k++, id++) {
            if (k > 0)
                syn_derive(base, m, (int)(syn_uniform() * 3));
            pa_lsh_sig s;
            syn_sig(k ? m : base, &s);
            rows += syn_insert(mi, bi, hi, (int64_t)id, &s);
        }
    }
    /* the bases of the queried models, each of its own family: seeded per query, so the query
     * phase makes the same base again and derives from it */
    for (long q = 0; q < queries; q++) {
        syn_state = 1000003 + (uint64_t)q;
        syn_base(base);
        pa_lsh_sig s;
        syn_sig(base, &s);
        int64_t id = n + 1 + q;
        rows += syn_insert(mi, bi, hi, id, &s);
    }
    char sql[640];
    snprintf(sql, sizeof sql,
             "CREATE INDEX lsh_bands_key ON lsh_bands(band_no, band_value, model_id);"
             " CREATE INDEX lsh_bands_model ON lsh_bands(model_id);"
             " CREATE INDEX tensor_hashes_key ON tensor_hashes(hash, model_id);"
             " CREATE INDEX tensor_hashes_model ON tensor_hashes(model_id);"
             " UPDATE settings SET value = %d WHERE key = 'lsh_version'; COMMIT",
             PA_LSH_VERSION);
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        fprintf(stderr, "benchtool: %s\n", sqlite3_errmsg(db));
    sqlite3_finalize(mi);
    sqlite3_finalize(bi);
    sqlite3_finalize(hi);
    sqlite3_close(db);
query:;
    double t_build = now() - t0;
    if (store_open(db_path, 0, &st, err, sizeof err) != 0) {
        fprintf(stderr, "benchtool: %s\n", err);
        return 2;
    }
    store_keys keys = {.hidden_size = 64, .vocab_size = 512, .num_layers = PA_NULL_INT};
    long hit = 0, by_kind[3] = {0}, hit_kind[3] = {0};
    size_t cands = 0, found_total = 0;
    double t_q = 0;
    for (long q = 0; q < queries; q++) {
        /* a derived model of a stored base of its own family */
        syn_state = 1000003 + (uint64_t)q;
        syn_base(base);
        pa_lsh_sig s;
        int64_t base_id = n + 1 + q;
        int kind = (int)(syn_uniform() * 3);
        syn_derive(base, m, kind);
        syn_sig(m, &s);
        syn_hits h = {.want = base_id};
        size_t found = 0;
        double t1 = now();
        store_retrieve(st, &keys, &s, 0, ANALYZE_RETRIEVE_K, &found, syn_cb, &h);
        t_q += now() - t1;
        hit += h.found;
        by_kind[kind]++;
        hit_kind[kind] += h.found;
        cands += h.n;
        found_total += found;
    }
    store_close(st);
    free(base);
    free(m);
    printf("models=%ld families=%ld index_rows=%ld build_seconds=%.1f queries=%ld "
           "retrieve_ms=%.3f recall=%.4f recall_finetune=%.4f recall_int8=%.4f "
           "recall_rotated=%.4f sharing_a_key=%.1f compared=%.1f k=%d seconds=%.3f\n",
           n, families, rows, t_build, queries, 1000 * t_q / (double)queries,
           (double)hit / (double)queries, by_kind[0] ? (double)hit_kind[0] / by_kind[0] : 0,
           by_kind[1] ? (double)hit_kind[1] / by_kind[1] : 0,
           by_kind[2] ? (double)hit_kind[2] / by_kind[2] : 0,
           (double)found_total / (double)queries, (double)cands / (double)queries,
           ANALYZE_RETRIEVE_K, t_q);
    return 0;
}

/* benchtool counts N DB: N models (each with a path, every other one an edge to the one before)
 * in a fresh store; 200 reads of the root's counts through store_counts_get (store_stats rows)
 * and 200 of the same numbers by counting the tables (what the root's .provenance did before). */
static int counts_bench(long n, const char *db_path)
{
    store_handle *st = NULL;
    char err[256];
    unlink(db_path);
    if (store_open(db_path, 0, &st, err, sizeof err) != 0) {
        fprintf(stderr, "benchtool: %s\n", err);
        return 2;
    }
    store_close(st);
    sqlite3 *db = NULL;
    if (sqlite3_open(db_path, &db) != SQLITE_OK)
        return 2;
    sqlite3_exec(db, "PRAGMA foreign_keys=ON; BEGIN", NULL, NULL, NULL);
    sqlite3_stmt *mi = NULL, *pi = NULL, *ei = NULL;
    sqlite3_prepare_v2(db, "INSERT INTO models (id, status, created_ns) VALUES (?1, ?2, ?1)", -1,
                       &mi, NULL);
    sqlite3_prepare_v2(db, "INSERT INTO model_paths (path, model_id) VALUES (?2, ?1)", -1, &pi,
                       NULL);
    sqlite3_prepare_v2(db, "INSERT INTO edges (parent_id, child_id, score, verdict)"
                           " VALUES (?1 - 1, ?1, 0.9, 'derived')",
                       -1, &ei, NULL);
    for (long id = 1; id <= n; id++) {
        char path[32];
        snprintf(path, sizeof path, "/m%ld", id);
        sqlite3_bind_int64(mi, 1, id);
        sqlite3_bind_text(mi, 2, id % 10 ? "ready" : "failed", -1, SQLITE_STATIC);
        sqlite3_step(mi);
        sqlite3_reset(mi);
        sqlite3_bind_int64(pi, 1, id);
        sqlite3_bind_text(pi, 2, path, -1, SQLITE_TRANSIENT);
        sqlite3_step(pi);
        sqlite3_reset(pi);
        if (id % 2 == 0) {
            sqlite3_bind_int64(ei, 1, id);
            sqlite3_step(ei);
            sqlite3_reset(ei);
        }
    }
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_finalize(mi);
    sqlite3_finalize(pi);
    sqlite3_finalize(ei);
    if (store_open(db_path, 0, &st, err, sizeof err) != 0) {
        fprintf(stderr, "benchtool: %s\n", err);
        return 2;
    }
    store_counts c = {0};
    double t0 = now();
    for (int r = 0; r < 200; r++)
        store_counts_get(st, &c);
    double t_new = (now() - t0) / 200;
    int64_t models = 0;
    t0 = now();
    for (int r = 0; r < 200; r++) {
        sqlite3_stmt *q = NULL;
        sqlite3_prepare_v2(db,
                           "SELECT (SELECT count(*) FROM models), (SELECT count(*) FROM model_paths),"
                           " (SELECT count(*) FROM edges),"
                           " (SELECT count(*) FROM models WHERE status = 'pending'),"
                           " (SELECT count(*) FROM models WHERE status = 'analyzing'),"
                           " (SELECT count(*) FROM models WHERE status = 'ready'),"
                           " (SELECT count(*) FROM models WHERE status = 'incomplete'),"
                           " (SELECT count(*) FROM models WHERE status = 'failed')",
                           -1, &q, NULL);
        if (q && sqlite3_step(q) == SQLITE_ROW)
            models = sqlite3_column_int64(q, 0);
        sqlite3_finalize(q);
    }
    double t_old = (now() - t0) / 200;
    sqlite3_close(db);
    store_close(st);
    printf("models=%ld counted_models=%lld stats_models=%lld stats_ms=%.4f count_ms=%.4f "
           "seconds=%.6f\n",
           n, (long long)models, (long long)c.models, 1000 * t_new, 1000 * t_old, t_new);
    return models == c.models && c.models == n ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "counts") == 0)
        return counts_bench(strtol(argv[2], NULL, 10), argv[3]);
    if (argc >= 4 && strcmp(argv[1], "retrieve") == 0)
        return retrieve_bench(strtol(argv[2], NULL, 10), argv[3],
                              argc >= 5 ? strtol(argv[4], NULL, 10) : 1000);
    if (argc >= 3 && strcmp(argv[1], "read") == 0)
        return read_file(argv[2], false);
    if (argc >= 3 && strcmp(argv[1], "sha") == 0)
        return read_file(argv[2], true);
    if (argc >= 4 && strcmp(argv[1], "fingerprint") == 0) {
        pa_fp_options opt = {0};
        opt.threads = strtol(argv[3], NULL, 10) > 0 ? (int)strtol(argv[3], NULL, 10) : 1;
        if (argc >= 5 && strcmp(argv[4], "nofilesha") == 0)
            opt.flags |= PA_FP_NO_FILE_SHA; /* as in the store, which hashes files as they are written */
        pa_error err = {0};
        pa_fingerprint *fp = NULL;
        double t0 = now();
        if (pa_fingerprint_path(argv[2], &opt, &fp, &err)) {
            fprintf(stderr, "benchtool: %s\n", err.msg);
            return 2;
        }
        double t = now() - t0;
        unsigned long long bytes = 0;
        for (size_t i = 0; i < pa_fp_n_files(fp); i++)
            bytes += pa_fp_file(fp, i)->size;
        char *j = pa_fp_to_json(fp, false);
        uint8_t *b = NULL;
        size_t bn = 0;
        pa_fp_to_bin(fp, &b, &bn, &err);
        printf("bytes=%llu seconds=%.4f gbps=%.3f peak_rss_mib=%.1f fingerprint_bytes=%zu "
               "json_bytes=%zu\n",
               bytes, t, bytes / t / 1e9, peak_rss_kib() / 1024.0, bn, j ? strlen(j) : 0);
        free(j);
        free(b);
        pa_fingerprint_free(fp);
        return 0;
    }
    if (argc >= 6 && strcmp(argv[1], "worker") == 0)
        return worker_rounds(argv[2], (int)strtol(argv[3], NULL, 10), argv[4],
                             (int)strtol(argv[5], NULL, 10));
    if (argc >= 5 && strcmp(argv[1], "compare") == 0) {
        size_t la, lb;
        char *ja = slurp(argv[2], &la), *jb = slurp(argv[3], &lb);
        pa_error err = {0};
        pa_fingerprint *a = NULL, *b = NULL;
        if (!ja || !jb || pa_fp_from_json(ja, la, argv[2], &a, &err) ||
            pa_fp_from_json(jb, lb, argv[3], &b, &err)) {
            fprintf(stderr, "benchtool: %s\n", err.msg[0] ? err.msg : "cannot read fingerprints");
            return 2;
        }
        long n = strtol(argv[4], NULL, 10);
        pa_compare_result r;
        double t0 = now();
        for (long i = 0; i < n; i++)
            pa_compare(a, b, &r);
        double t = (now() - t0) / (n > 0 ? n : 1);
        printf("compare_ms=%.3f verdict=%s score=%.4f\n", t * 1e3, pa_verdict_name(r.verdict), r.score);
        pa_fingerprint_free(a);
        pa_fingerprint_free(b);
        free(ja);
        free(jb);
        return 0;
    }
    if (argc >= 5 && strcmp(argv[1], "scan") == 0) {
        size_t n = (size_t)strtoul(argv[3], NULL, 10), nc = (size_t)(argc - 4);
        pa_fingerprint **c = calloc(nc, sizeof *c);
        pa_fingerprint *m = NULL;
        pa_error err = {0};
        size_t len;
        char *j = slurp(argv[2], &len);
        if (!j || pa_fp_from_json(j, len, argv[2], &m, &err)) {
            fprintf(stderr, "benchtool: %s\n", err.msg);
            return 2;
        }
        free(j);
        for (size_t i = 0; i < nc; i++) {
            j = slurp(argv[4 + i], &len);
            if (!j || pa_fp_from_json(j, len, argv[4 + i], &c[i], &err)) {
                fprintf(stderr, "benchtool: %s\n", err.msg);
                return 2;
            }
            free(j);
        }
        pa_scan_ref *refs = calloc(n, sizeof *refs);
        char (*names)[32] = calloc(n, 32);
        for (size_t i = 0; i < n; i++) {
            snprintf(names[i], 32, "cand-%zu", i);
            refs[i].name = names[i];
            refs[i].family = "bench";
            refs[i].fp = c[i % nc];
        }
        pa_scan_options opt = {.top_k = 5};
        pa_scan_match *out = NULL;
        size_t n_out = 0;
        pa_scan_stats stats;
        double t0 = now();
        if (pa_scan(NULL, refs, n, m, &opt, &out, &n_out, &stats, &err)) {
            fprintf(stderr, "benchtool: %s\n", err.msg);
            return 2;
        }
        double t = now() - t0;
        printf("candidates=%zu compared=%zu seconds=%.4f best=%s verdict=%s\n", stats.candidates,
               stats.compared, t, n_out ? out[0].name : "-",
               n_out ? pa_verdict_name(out[0].verdict) : "-");
        pa_scan_free(out, n_out);
        free(refs);
        free(names);
        for (size_t i = 0; i < nc; i++)
            pa_fingerprint_free(c[i]);
        free(c);
        pa_fingerprint_free(m);
        return 0;
    }
    fprintf(stderr, "usage: benchtool read|sha FILE | fingerprint PATH THREADS | compare A B N | "
                    "scan M N C...\n");
    return 2;
}
