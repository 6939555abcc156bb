/* benchtool — measurements for tools/bench.sh, each in one process so the numbers are comparable:
 *   benchtool read FILE           plain read() of the file into a reused 4 MiB buffer
 *   benchtool sha FILE            read() + SHA-256 (OpenSSL EVP): the floor for content hashing
 *   benchtool fingerprint PATH T [nofilesha]  fingerprint with T threads (optionally without the
 *                                 whole-file SHA-256); also peak RSS and fingerprint size
 *   benchtool compare A B N       N comparisons of two saved fingerprints (JSON files)
 *   benchtool scan M N C1 [C2 ...]  scan fingerprint M against N candidates cycling over C1..
 *   benchtool worker PATH T PROVFS N  N rounds, alternating: fingerprint in this process vs in a
 *                                 provfs analysis worker (fs/worker.h: files opened here, passed
 *                                 over a socket, sandboxed worker, JSON back); T threads
 * Output: one "key=value ..." line. */
#include "provfs/analyzer.h"
#include "refdb.h"
#include "worker.h"

#include <fcntl.h>
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

int main(int argc, char **argv)
{
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
        printf("bytes=%llu seconds=%.4f gbps=%.3f peak_rss_mib=%.1f fingerprint_bytes=%zu\n", bytes,
               t, bytes / t / 1e9, peak_rss_kib() / 1024.0, j ? strlen(j) : 0);
        free(j);
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
