/* benchtool — measurements for tools/bench.sh, each in one process so the numbers are comparable:
 *   benchtool read FILE           plain read() of the file into a reused 4 MiB buffer
 *   benchtool sha FILE            read() + SHA-256 (OpenSSL EVP): the floor for content hashing
 *   benchtool fingerprint PATH T [nofilesha]  fingerprint with T threads (optionally without the
 *                                 whole-file SHA-256); also peak RSS and fingerprint size
 *   benchtool compare A B N       N comparisons of two saved fingerprints (JSON files)
 *   benchtool scan M N C1 [C2 ...]  scan fingerprint M against N candidates cycling over C1..
 * Output: one "key=value ..." line. */
#include "provfs/analyzer.h"
#include "refdb.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
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
