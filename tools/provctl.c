/* provctl — the provfs command line.
 *
 * fingerprint / compare / diff work on model directories (or saved fingerprint JSON) through the
 * analyzer library, the same code the daemon runs on close. Exit codes: 0 success, 2 bad input or
 * error (one line on stderr naming the file and the problem), 3 policy refusal.
 */
#include "provctl_graph.h"
#include "jsonutil.h"
#include "provfs/analyzer.h"
#include "provctl_ref.h"
#include "provctl_store.h"

#include <math.h>
#include <errno.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXIT_ERR 2

static int usage(FILE *f)
{
    fprintf(f,
            "usage: provctl COMMAND [ARGS]\n"
            "  fingerprint PATH [--json | --binary] [--threads N]   fingerprint of a model\n"
            "                                            (--binary: the compact stored form)\n"
            "  compare A B [--json]                      verdict, scores and every signal\n"
            "                                            (B a PEFT adapter: adapter-of A?)\n"
            "  diff A B [--json]                         per-tensor comparison\n"
            "  scan PATH [--refdb DIR] [--db FILE] [--top-k N] [--threshold S] [--json]\n"
            "                                            rank known bases for one model\n"
            "  refdb import-mpk DIR [--out DIR]          convert Cisco's MPK reference database\n"
            "  refdb add MODEL --name N --family F [--out DIR]   add a local model as a reference\n"
            "  refdb list [--refdb DIR] [--json]         list the reference entries\n"
            "  graph --db DB [--dot | --svg OUT] [--all-edges]   the store's lineage forest\n"
            "  lineage PATH [--json]                     ancestors and children in a mounted store\n"
            "  approve PATH [--note T]                   approve a model's content (admins)\n"
            "  revoke PATH [--note T]                    revoke its approval (admins)\n"
            "  log --db DB [--json] [--limit N] [--kind K]   audit events, newest first\n"
            "  store copy --from DB --to DB              a lineage database into an empty one\n"
            "  check PATH [--wait S] [--json]            CI gate: exit 0 allowed, 3 blocked\n"
            "  sbom PATH [--format cyclonedx] [--out F]  CycloneDX 1.6 lineage bill of materials\n"
            "A and B are model directories, .safetensors files or saved fingerprints (--json "
            "or --binary output).\nDB is a SQLite file or a PostgreSQL connection string (postgresql://...).\n");
    return f == stderr ? EXIT_ERR : 0;
}

static bool has_flag(int argc, char **argv, const char *flag)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], flag) == 0)
            return true;
    return false;
}

static const char *opt_value(int argc, char **argv, const char *flag)
{
    for (int i = 0; i + 1 < argc; i++)
        if (strcmp(argv[i], flag) == 0)
            return argv[i + 1];
    return NULL;
}

/* Positional arguments: everything that is not a flag or a flag's value. */
static int positionals(int argc, char **argv, const char **out, int max)
{
    static const char *const with_value[] = {"--threads", "--db", "--refdb", "--top-k",
                                             "--threshold", "--note", "--name", "--family",
                                             "--svg"};
    int n = 0;
    for (int i = 0; i < argc; i++) {
        bool skip = false;
        for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++)
            if (strcmp(argv[i], with_value[k]) == 0) {
                i++;
                skip = true;
                break;
            }
        if (skip)
            continue;
        if (argv[i][0] == '-' && argv[i][1] == '-')
            continue;
        if (n < max)
            out[n] = argv[i];
        n++;
    }
    return n;
}

typedef struct progress_state {
    double last;
    bool shown;
} progress_state;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
    progress_state *p = ctx;
    double t = now_s();
    if (total < 1000000000ull)
        return; /* small models finish before a progress line would help */
    if (done < total && t - p->last < 0.2)
        return;
    p->last = t;
    p->shown = true;
    fprintf(stderr, "\rfingerprinting: %6.1f / %.1f GB (%3.0f%%)", done / 1e9, total / 1e9,
            total ? 100.0 * done / total : 100.0);
    fflush(stderr);
}

/* A saved fingerprint: the binary form's magic, or the JSON's schema near the start. */
static bool looks_like_fingerprint(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return false;
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    char buf[256];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return pa_fp_is_bin(buf, n) || strstr(buf, "provfs.fingerprint/") != NULL;
}

/* Load a fingerprint from a model path or a saved fingerprint JSON. */
static pa_fingerprint *load(const char *path, int threads, pa_error *err)
{
    pa_fingerprint *fp = NULL;
    if (looks_like_fingerprint(path)) {
        char *buf = NULL;
        size_t len = 0;
        if (pa_read_file(path, PA_JSON_MAX_FILE, &buf, &len, err) == PA_OK) {
            if (pa_fp_is_bin(buf, len))
                pa_fp_from_bin((const uint8_t *)buf, len, path, &fp, err);
            else
                pa_fp_from_json(buf, len, path, &fp, err);
        }
        free(buf);
        return fp;
    }
    progress_state ps = {0, false};
    pa_fp_options opt = {0};
    opt.threads = threads;
    if (isatty(STDERR_FILENO)) {
        opt.progress = on_progress;
        opt.progress_ctx = &ps;
    }
    pa_fingerprint_path(path, &opt, &fp, err);
    if (ps.shown)
        fputc('\n', stderr);
    return fp;
}

static int fail(const pa_error *err)
{
    fprintf(stderr, "provctl: %s\n", err->msg[0] ? err->msg : pa_status_name(err->status));
    return EXIT_ERR;
}

static int threads_arg(int argc, char **argv)
{
    const char *t = opt_value(argc, argv, "--threads");
    if (!t)
        return 0;
    char *end;
    long v = strtol(t, &end, 10);
    return (*end || v < 1 || v > 16) ? -1 : (int)v;
}

static bool write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static int cmd_fingerprint(int argc, char **argv)
{
    const char *pos[2];
    if (positionals(argc, argv, pos, 2) != 1)
        return usage(stderr);
    int threads = threads_arg(argc, argv);
    if (threads < 0) {
        fprintf(stderr, "provctl: --threads takes 1..16\n");
        return EXIT_ERR;
    }
    pa_error err = {0};
    pa_fingerprint *fp = load(pos[0], threads, &err);
    if (!fp)
        return fail(&err);
    if (has_flag(argc, argv, "--binary")) {
        uint8_t *b = NULL;
        size_t n = 0;
        if (isatty(STDOUT_FILENO)) {
            pa_fingerprint_free(fp);
            fprintf(stderr, "provctl: --binary writes bytes: redirect standard output\n");
            return EXIT_ERR;
        }
        /* bytes, so around the text filter on stdout */
        if (pa_fp_set_path(fp, NULL) && pa_fp_to_bin(fp, &b, &n, &err) == PA_OK &&
            write_all(STDOUT_FILENO, b, n)) {
            free(b);
            pa_fingerprint_free(fp);
            return 0;
        }
        free(b);
        pa_fingerprint_free(fp);
        if (!err.status)
            pa_error_set(&err, PA_E_IO, "%s: cannot write the fingerprint", pos[0]);
        return fail(&err);
    }
    if (has_flag(argc, argv, "--json")) {
        char *j = pa_fp_to_json(fp, true);
        if (!j) {
            pa_fingerprint_free(fp);
            fprintf(stderr, "provctl: %s: out of memory\n", pos[0]);
            return EXIT_ERR;
        }
        puts(j);
        free(j);
    } else {
        const pa_mfi *m = pa_fp_mfi(fp);
        const pa_tfv *t = pa_fp_tfv(fp);
        printf("model:       %s\n", pos[0]);
        printf("format:      %s\n", pa_fp_format(fp));
        printf("digest:      %s\n", pa_fp_digest(fp));
        if (m) {
            printf("model_type:  %s\n", m->model_type ? m->model_type : "null");
            printf("arch_hash:   %s\n", m->arch_hash);
            printf("family_hash: %s\n", m->family_hash);
        }
        if (t)
            printf("tokenizer:   %s, %lld tokens, %lld merges\n", t->model_kind,
                   (long long)t->vocab_size, (long long)t->num_merges);
        if (pa_fp_has_weights(fp))
            printf("weights:     %zu tensors, %llu parameters\n", pa_fp_n_tensors(fp),
                   (unsigned long long)pa_fp_n_params(fp));
        for (size_t i = 0; i < pa_fp_n_files(fp); i++) {
            const pa_file_fp *f = pa_fp_file(fp, i);
            printf("file:        %s  %llu bytes  sha256 %s\n", f->name,
                   (unsigned long long)f->size, f->sha256);
        }
    }
    pa_fingerprint_free(fp);
    return 0;
}

static void print_signal(const char *name, const pa_signal *s)
{
    if (s->valid)
        printf("  %-12s %.4f\n", name, s->value);
    else
        printf("  %-12s n/a\n", name);
}

/* compare BASE ADAPTER for a PEFT adapter: its declaration (adapter_config.json's
 * base_model_name_or_path against BASE's path) and its LoRA shapes against BASE's tensors.
 * "adapter-of" when the shapes fit; the declaration is shown, never trusted alone. */
static int compare_adapter(const char *base_path, const char *ad_path, const pa_fingerprint *base,
                           const pa_fingerprint *ad, bool json)
{
    pa_peft_check c;
    pa_peft_check_shapes(base, ad, &c);
    pa_peft_config cfg = {0};
    pa_error err = {0};
    char *cfg_path = NULL, *text = NULL, *real_base = realpath(base_path, NULL);
    size_t len = 0;
    bool have_cfg = false;
    if (asprintf(&cfg_path, "%s/adapter_config.json", ad_path) > 0 &&
        pa_read_file(cfg_path, 1u << 20, &text, &len, &err) == PA_OK &&
        pa_peft_config_parse(text, len, cfg_path, &cfg, &err) == PA_OK)
        have_cfg = true;
    free(text);
    free(cfg_path);
    bool declared = have_cfg && cfg.base &&
                    (pa_peft_base_match(cfg.base, base_path) ||
                     (real_base && pa_peft_base_match(cfg.base, real_base)));
    bool fits = pa_peft_fits(&c);
    const char *verdict = fits ? "adapter-of" : "none";
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "a", base_path);
        cJSON_AddStringToObject(o, "b", ad_path);
        cJSON_AddStringToObject(o, "verdict", verdict);
        if (have_cfg && cfg.base)
            cJSON_AddStringToObject(o, "declared_base", cfg.base);
        else
            cJSON_AddNullToObject(o, "declared_base");
        cJSON_AddBoolToObject(o, "declared_base_matches", declared);
        if (have_cfg && cfg.r != PA_NULL_INT)
            cJSON_AddNumberToObject(o, "r", (double)cfg.r);
        cJSON_AddNumberToObject(o, "lora_pairs", (double)c.n_pairs);
        cJSON_AddNumberToObject(o, "matched", (double)c.n_matched);
        cJSON_AddNumberToObject(o, "missing_modules", (double)c.n_missing);
        cJSON_AddNumberToObject(o, "mismatched", (double)c.n_mismatched);
        cJSON_AddNumberToObject(o, "rank", (double)c.rank);
        cJSON_AddStringToObject(o, "problem", c.problem);
        char *j = cJSON_Print(o);
        if (j)
            puts(j);
        free(j);
        cJSON_Delete(o);
    } else {
        printf("verdict:          %s\n", verdict);
        printf("declared base:    %s (%s)\n", have_cfg && cfg.base ? cfg.base : "none",
               !have_cfg ? (err.msg[0] ? err.msg : "no adapter_config.json")
               : declared ? "names the first model"
                          : "does not name the first model");
        printf("lora pairs:       %zu, %zu fit the first model's modules", c.n_pairs, c.n_matched);
        if (c.rank > 0)
            printf(" (r %lld)", (long long)c.rank);
        printf("\n");
        printf("missing modules:  %zu\n", c.n_missing);
        printf("shape mismatches: %zu\n", c.n_mismatched);
        if (c.problem[0])
            printf("problem:          %s\n", c.problem);
        printf("checks:           lora_A [r, in] and lora_B [out, r] against each module's weight "
               "[out, in]; the declaration is shown, the shapes decide\n");
    }
    free(real_base);
    pa_peft_config_free(&cfg);
    return 0;
}

static int cmd_compare(int argc, char **argv)
{
    const char *pos[3];
    if (positionals(argc, argv, pos, 3) != 2)
        return usage(stderr);
    int threads = threads_arg(argc, argv);
    pa_error err = {0};
    pa_fingerprint *a = load(pos[0], threads < 0 ? 0 : threads, &err);
    if (!a)
        return fail(&err);
    pa_fingerprint *b = load(pos[1], threads < 0 ? 0 : threads, &err);
    if (!b) {
        pa_fingerprint_free(a);
        return fail(&err);
    }
    if (pa_peft_is_adapter(b) && !pa_peft_is_adapter(a)) {
        int rc = compare_adapter(pos[0], pos[1], a, b, has_flag(argc, argv, "--json"));
        pa_fingerprint_free(a);
        pa_fingerprint_free(b);
        return rc;
    }
    pa_compare_result r;
    pa_compare(a, b, &r);
    if (has_flag(argc, argv, "--json")) {
        char *j = pa_compare_to_json(&r, pos[0], pos[1], true);
        if (j)
            puts(j);
        free(j);
    } else {
        printf("verdict:          %s\n", pa_verdict_name(r.verdict));
        printf("score:            %.4f\n", r.score);
        printf("weight agreement: ");
        isfinite(r.weight_agreement) ? printf("%.4f\n", r.weight_agreement) : printf("n/a\n");
        printf("identity score:   ");
        isfinite(r.identity_score) ? printf("%.4f\n", r.identity_score) : printf("n/a\n");
        printf("tokenizer score:  ");
        isfinite(r.tokenizer_score) ? printf("%.4f\n", r.tokenizer_score) : printf("n/a\n");
        printf("parent rank:      %.4f\n", r.rank);
        printf("distance:         ");
        isfinite(r.distance) ? printf("%.4f\n", r.distance) : printf("n/a\n");
        printf("unexplained:      %.1f%% of the parameters%s\n", 100 * r.unexplained_share,
               r.unknown_origin ? " (unknown origin)" : "");
        printf("reason:           %s\n", r.reason);
        printf("signals:\n");
        if (r.mfi.valid)
            printf("  %-12s %.4f (tier %d)\n", "mfi", r.mfi.value, r.mfi_tier);
        else
            printf("  %-12s n/a\n", "mfi");
        print_signal("tfv", &r.tfv);
        print_signal("voa", &r.voa);
        print_signal("eas", &r.eas);
        print_signal("nlf", &r.nlf);
        print_signal("lep", &r.lep);
        print_signal("end", &r.end);
        print_signal("wvc", &r.wvc);
        print_signal("wea", &r.wea);
        print_signal("anchor_rows", &r.anchor_rows);
    }
    pa_fingerprint_free(a);
    pa_fingerprint_free(b);
    return 0;
}

static int cmd_diff(int argc, char **argv)
{
    const char *pos[3];
    if (positionals(argc, argv, pos, 3) != 2)
        return usage(stderr);
    pa_error err = {0};
    pa_diff d;
    if (pa_diff_paths(pos[0], pos[1], &d, &err))
        return fail(&err);
    if (has_flag(argc, argv, "--json")) {
        char *j = pa_diff_to_json(&d, pos[0], pos[1], true);
        if (j)
            puts(j);
        free(j);
    } else {
        static const char *const kinds[] = {"identical", "changed", "added", "removed"};
        for (size_t i = 0; i < d.n; i++) {
            const pa_diff_entry *e = &d.entries[i];
            printf("%-10s %s", kinds[e->kind], e->name);
            if (e->kind == PA_D_CHANGED && isfinite(e->rel_l2))
                printf("  rel_l2=%.6g", e->rel_l2);
            if (e->note[0])
                printf("  (%s)", e->note);
            putchar('\n');
        }
        printf("summary: %zu identical, %zu changed, %zu added, %zu removed\n", d.n_identical,
               d.n_changed, d.n_added, d.n_removed);
    }
    pa_diff_free(&d);
    return 0;
}

/* ---------------------------------------------------------------- terminal hygiene */

/* Names, notes and reasons printed here come from users of a shared store: a control character
 * in them could forge lines or drive the terminal. Text output goes through this filter, which
 * writes every byte that is not part of a printable UTF-8 character (newline and tab kept) as
 * \xNN. JSON output is left alone (cJSON escapes controls itself). */
static ssize_t safe_write(void *cookie, const char *buf, size_t n)
{
    int fd = (int)(intptr_t)cookie;
    char out[4096 + 8];
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t len = buf[i] == '\n' || buf[i] == '\t'
                         ? 1
                         : pa_utf8_printable((const unsigned char *)buf + i, n - i);
        if (len)
            memcpy(out + o, buf + i, len), o += len, i += len;
        else
            o += (size_t)snprintf(out + o, 5, "\\x%02x", (unsigned char)buf[i]), i++;
        if (o >= 4096 || i == n) {
            for (size_t w = 0; w < o;) {
                ssize_t r = write(fd, out + w, o - w);
                if (r < 0 && errno == EINTR)
                    continue;
                if (r <= 0)
                    return -1;
                w += (size_t)r;
            }
            o = 0;
        }
    }
    return (ssize_t)n;
}

static void filter_stream(FILE **stream, int fd)
{
    cookie_io_functions_t io = {.write = safe_write};
    FILE *f = fopencookie((void *)(intptr_t)fd, "w", io);
    if (!f)
        return;
    setvbuf(f, NULL, fd == 2 ? _IOLBF : _IOFBF, 1 << 16);
    *stream = f;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage(stderr);
    filter_stream(&stderr, 2);
    bool json = false;
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--json") == 0)
            json = true;
    if (!json)
        filter_stream(&stdout, 1);
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0)
        return usage(stdout);
    if (strcmp(cmd, "fingerprint") == 0)
        return cmd_fingerprint(argc - 2, argv + 2);
    if (strcmp(cmd, "compare") == 0)
        return cmd_compare(argc - 2, argv + 2);
    if (strcmp(cmd, "diff") == 0)
        return cmd_diff(argc - 2, argv + 2);
    if (strcmp(cmd, "scan") == 0)
        return provctl_scan(argc - 2, argv + 2);
    if (strcmp(cmd, "graph") == 0)
        return provctl_graph(argc - 2, argv + 2);
    if (strcmp(cmd, "refdb") == 0)
        return provctl_refdb(argc - 2, argv + 2);
    if (strcmp(cmd, "lineage") == 0)
        return provctl_lineage(argc - 2, argv + 2);
    if (strcmp(cmd, "approve") == 0)
        return provctl_approve(argc - 2, argv + 2);
    if (strcmp(cmd, "revoke") == 0)
        return provctl_revoke(argc - 2, argv + 2);
    if (strcmp(cmd, "log") == 0)
        return provctl_log(argc - 2, argv + 2);
    if (strcmp(cmd, "check") == 0)
        return provctl_check(argc - 2, argv + 2);
    if (strcmp(cmd, "sbom") == 0)
        return provctl_sbom(argc - 2, argv + 2);
    if (strcmp(cmd, "store") == 0)
        return provctl_store(argc - 2, argv + 2);
    fprintf(stderr, "provctl: unknown command '%s'\n", cmd);
    return usage(stderr);
}
