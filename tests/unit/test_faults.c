/* Fault injection (SQLite's OOM loop, curl's torture mode): fail allocation number N for
 * N = 1, 2, ... until a run needs no more allocations than N-1, and check every run ends in a clean
 * error or success, with no allocation left behind. malloc and friends are interposed in this
 * binary, so cJSON's and OpenSSL's allocations fail too. Under AddressSanitizer (which owns malloc)
 * the test only checks that the parsers succeed. */
#include "check.h"
#include "fp.h"
#include "gguf.h"

#include <execinfo.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define INJECT 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define INJECT 0
#endif
#endif
#ifndef INJECT
#define INJECT 1
#endif

static long fail_at = -1; /* allocation number that fails, -1 = none */
static long n_allocs;
static long live;

#if INJECT
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

static long bt_at = -1; /* FAULT_BT=N: show where allocation N is made when it fails */

static int fail_now(void)
{
    int hit = fail_at >= 0 && ++n_allocs == fail_at;
    if (hit && fail_at == bt_at) {
        void *bt[12];
        int n = backtrace(bt, 12);
        backtrace_symbols_fd(bt, n, 2);
    }
    return hit;
}

/* FAULT_TRACE=N: in each scenario's run with allocation N failing, remember where every
 * allocation came from and print the ones never freed (a debugging aid for leaks found here). */
#define TRACE_MAX 4096
static long trace_at = -1;
static int tracing;
static struct {
    void *p;
    void *bt[8];
    int n;
} traces[TRACE_MAX];

static void trace_alloc(void *p)
{
    if (!tracing || !p)
        return;
    tracing = 0; /* backtrace() may allocate */
    for (int i = 0; i < TRACE_MAX; i++)
        if (!traces[i].p) {
            traces[i].p = p;
            traces[i].n = backtrace(traces[i].bt, 8);
            break;
        }
    tracing = 1;
}

static void trace_free(void *p)
{
    if (!tracing || !p)
        return;
    for (int i = 0; i < TRACE_MAX; i++)
        if (traces[i].p == p) {
            traces[i].p = NULL;
            break;
        }
}

static void trace_report(void)
{
    int open_n = 0;
    for (int i = 0; i < TRACE_MAX; i++)
        open_n += traces[i].p != NULL;
    fprintf(stderr, "-- %d traced allocations not freed\n", open_n);
    for (int i = 0; i < TRACE_MAX; i++)
        if (traces[i].p) {
            fprintf(stderr, "-- not freed: %p\n", traces[i].p);
            backtrace_symbols_fd(traces[i].bt, traces[i].n, 2);
            traces[i].p = NULL;
        }
}

void *malloc(size_t n)
{
    if (fail_now())
        return NULL;
    void *p = __libc_malloc(n);
    live += p != NULL;
    trace_alloc(p);
    return p;
}

void *calloc(size_t a, size_t b)
{
    if (fail_now())
        return NULL;
    void *p = __libc_calloc(a, b);
    live += p != NULL;
    trace_alloc(p);
    return p;
}

void *realloc(void *old, size_t n)
{
    if (fail_now())
        return NULL;
    void *p = __libc_realloc(old, n);
    live += p != NULL && old == NULL;
    if (p && p != old) {
        trace_free(old);
        trace_alloc(p);
    }
    return p;
}

void free(void *p)
{
    live -= p != NULL;
    trace_free(p);
    __libc_free(p);
}
#endif

static char tmp[256];

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

static const char config[] =
    "{\"model_type\":\"llama\",\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":4,"
    "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":4,\"rms_norm_eps\":1e-6,"
    "\"rope_theta\":10000.0}";
static const char tokenizer[] =
    "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"\\u0120a\":3},"
    "\"merges\":[\"a b\",[\"\\u0120\",\"a\"]]},\"added_tokens\":[{\"id\":4,\"content\":\"<s>\"}]}";
static const char header[] =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[4,4],\"data_offsets\":[0,64]},"
    "\"model.layers.0.self_attn.q_proj.weight\":{\"dtype\":\"F32\",\"shape\":[4,4],\"data_offsets\":[64,128]},"
    "\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[128,144]}}";

static void make_model(const char *dir)
{
    char p[600];
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_file(p, config, strlen(config));
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    write_file(p, tokenizer, strlen(tokenizer));
    size_t hl = strlen(header);
    uint8_t *buf = __builtin_malloc(8 + hl + 144);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    for (int i = 0; i < 36; i++) {
        float v = (float)((i * 7) % 11) - 5.0f;
        memcpy(buf + 8 + hl + 4 * i, &v, 4);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    write_file(p, buf, 8 + hl + 144);
    __builtin_free(buf);
}

typedef pa_status (*scenario)(void *ctx);

static pa_status run_st(void *ctx)
{
    (void)ctx;
    size_t hl = strlen(header);
    uint8_t buf[1024];
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    pa_st_header h;
    pa_error err = {0};
    pa_status st = pa_st_parse(buf, 8 + hl, 8 + hl + 144, "mem", &h, &err);
    if (st == PA_OK)
        pa_st_header_free(&h);
    return st;
}

static pa_status run_config(void *ctx)
{
    (void)ctx;
    pa_mfi m;
    pa_error err = {0};
    pa_status st = pa_mfi_parse(config, strlen(config), "config.json", &m, &err);
    if (st == PA_OK)
        pa_mfi_free(&m);
    return st;
}

static pa_status run_tokenizer(void *ctx)
{
    (void)ctx;
    pa_tokenizer *t = NULL;
    pa_error err = {0};
    pa_status st = pa_tokenizer_parse(tokenizer, strlen(tokenizer), NULL, 0, "tokenizer.json", &t, &err);
    pa_tokenizer_free(t);
    return st;
}

static char *clean_json; /* the fingerprint's JSON from a run without faults */
static long silent;       /* faulty runs that claimed success with other output */

static pa_status run_fingerprint(void *ctx)
{
    pa_fingerprint *fp = NULL;
    pa_error err = {0};
    pa_fp_options opt = {0};
    opt.threads = 1;
    pa_status st = pa_fingerprint_path(ctx, &opt, &fp, &err);
    if (st == PA_OK) {
        /* serialise, read back and compare: every step under the same fault */
        char *j = pa_fp_to_json(fp, false);
        pa_fingerprint *back = NULL;
        if (!j)
            st = PA_E_NOMEM;
        else
            st = pa_fp_from_json(j, strlen(j), "roundtrip", &back, &err);
        if (j && st == PA_OK) {
            if (!clean_json)
                clean_json = strdup(j);
            else if (strcmp(j, clean_json) != 0)
                silent++, fprintf(stderr, "swallowed fault at allocation %ld\n", fail_at); /* the fingerprint changed */
        }
        if (st == PA_OK) {
            pa_compare_result r;
            pa_compare(fp, back, &r);
        }
        free(j);
        pa_fingerprint_free(back);
    }
    pa_fingerprint_free(fp);
    return st;
}

static void torture(const char *name, scenario fn, void *ctx)
{
    /* warm up: library one-time initialisation (OpenSSL) happens outside the loop */
    CHECK_MSG(fn(ctx) == PA_OK, "%s fails without faults", name);
    if (!INJECT)
        return;
    long clean = 0, failed = 0;
    for (long n = 1; n < 100000; n++) {
        long live_before = live;
        n_allocs = 0;
        fail_at = n;
#if INJECT
        tracing = n == trace_at;
#endif
        pa_status st = fn(ctx);
        fail_at = -1;
#if INJECT
        if (tracing) {
            tracing = 0;
            trace_report();
        }
#endif
        long used = n_allocs;
        /* fewer live allocations than before is a library dropping a cache it built earlier */
        CHECK_MSG(live <= live_before, "%s: allocation %ld failed: %ld allocations leaked", name, n,
                  live - live_before);
        if (live != live_before)
            live = live_before;
        if (st == PA_OK)
            clean++;
        else
            failed++;
        if (used < n) { /* the run needed fewer allocations than n: every point was tried */
            CHECK_MSG(st == PA_OK, "%s: run without a fault failed (%d)", name, (int)st);
            fprintf(stderr, "%s: %ld allocation points failed in turn, %ld runs ended in an error, "
                            "%ld succeeded anyway\n", name, n - 1, failed, clean);
            return;
        }
    }
    CHECK_MSG(0, "%s: did not converge", name);
}

int main(void)
{
#if INJECT
    if (getenv("FAULT_BT"))
        bt_at = strtol(getenv("FAULT_BT"), NULL, 10);
    if (getenv("FAULT_TRACE") || getenv("FAULT_BT")) {
        if (getenv("FAULT_TRACE"))
            trace_at = strtol(getenv("FAULT_TRACE"), NULL, 10);
        void *bt[4];
        backtrace(bt, 4); /* loads the unwinder now, so tracing allocates nothing later */
    }
#endif
    snprintf(tmp, sizeof tmp, "/tmp/provfs-faults-XXXXXX");
    if (!mkdtemp(tmp))
        return 1;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/model", tmp);
    make_model(dir);
    torture("safetensors", run_st, NULL);
    torture("config", run_config, NULL);
    torture("tokenizer", run_tokenizer, NULL);
    torture("fingerprint+json+compare", run_fingerprint, dir);
    CHECK_MSG(silent == 0, "%ld faulty runs returned a different fingerprint as success", silent);
    free(clean_json);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp);
    return check_report("faults");
}
