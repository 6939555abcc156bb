/* Function-preserving derivations really preserve the function: a tiny llama forward pass in C
 * (token embedding, one block — RMSNorm, grouped attention with RoPE over a few tokens, SwiGLU
 * MLP or a Mixtral sparse MLP, residuals — final norm, logits) over a small mkmodel base and its
 * `rotate`, `scale` and `upcycle` derivations must give the same logits to float tolerance; a
 * `noise` derivation must not. The weights are read with the analyzer's safetensors reader.
 * Everything is computed in double, so the tolerance only has to cover the float32 rounding of
 * the derived weights. */
#include "check.h"
#include "provfs/analyzer.h"

#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The sizes the models are created with (mkmodel create below). */
#define HIDDEN 64
#define HEADS 4
#define KV_HEADS 2
#define INTER 96
#define VOCAB 512
#define EXPERTS 4
#define TOP_K 2 /* Mixtral's num_experts_per_tok, as mkmodel's upcycle writes it */
#define HEAD_DIM (HIDDEN / HEADS)
#define ROPE_THETA 10000.0
#define RMS_EPS 1e-6
#define T 6 /* tokens in the forward pass */

static const int tokens[T] = {1, 17, 42, 300, 5, 511};

static char tmp[256];
static const char *mkmodel;

#define run(...) check_run(tmp, mkmodel, "forward", __VA_ARGS__)

/* ------------------------------------------------------------------ weights */

typedef struct model {
    char path[512];
    int fd;
    pa_st_header hdr;
} model;

static bool model_open(model *m, const char *name)
{
    memset(m, 0, sizeof *m);
    snprintf(m->path, sizeof m->path, "%s/%s/model.safetensors", tmp, name);
    m->fd = open(m->path, O_RDONLY);
    pa_error err = {0};
    bool ok = m->fd >= 0 && pa_st_read(m->fd, m->path, &m->hdr, &err) == PA_OK;
    CHECK_MSG(ok, "%s: %s", m->path, err.msg);
    return ok;
}

static void model_close(model *m)
{
    pa_st_header_free(&m->hdr);
    if (m->fd >= 0)
        close(m->fd);
}

static const pa_tensor_desc *find(const model *m, const char *name)
{
    for (size_t i = 0; i < m->hdr.n_tensors; i++)
        if (strcmp(m->hdr.tensors[i].name, name) == 0)
            return &m->hdr.tensors[i];
    return NULL;
}

/* The tensor as doubles, checked to have rows x cols elements (cols = 0: a vector of rows);
 * NULL (and a failed check) when it is missing or shaped otherwise. */
static double *tensor(const model *m, const char *name, uint64_t rows, uint64_t cols)
{
    const pa_tensor_desc *d = find(m, name);
    bool shape_ok = d && pa_dtype_decodable(d->dtype) &&
                    (cols ? d->ndim == 2 && d->shape[0] == rows && d->shape[1] == cols
                          : d->ndim == 1 && d->shape[0] == rows);
    CHECK_MSG(shape_ok, "%s: tensor %s missing or not %llu x %llu", m->path, name,
              (unsigned long long)rows, (unsigned long long)cols);
    if (!shape_ok)
        return NULL;
    size_t n = (size_t)d->numel, nbytes = (size_t)(d->end - d->begin);
    uint8_t *raw = malloc(nbytes ? nbytes : 1);
    float *f = malloc(n * sizeof *f);
    double *out = malloc(n * sizeof *out);
    bool ok = raw && f && out &&
              pread(m->fd, raw, nbytes, (off_t)(m->hdr.data_offset + d->begin)) == (ssize_t)nbytes;
    if (ok) {
        pa_dtype_to_f32(d->dtype, raw, f, n);
        for (size_t i = 0; i < n; i++)
            out[i] = f[i];
    }
    free(raw);
    free(f);
    CHECK_MSG(ok, "%s: cannot read %s", m->path, name);
    if (!ok) {
        free(out);
        return NULL;
    }
    return out;
}

/* ------------------------------------------------------------------ forward pass */

/* out[r] = sum_c w[r][c] x[c]  (w is rows x cols, the PyTorch Linear layout) */
static void linear(const double *w, const double *x, uint64_t rows, uint64_t cols, double *out)
{
    for (uint64_t r = 0; r < rows; r++) {
        double s = 0;
        for (uint64_t c = 0; c < cols; c++)
            s += w[r * cols + c] * x[c];
        out[r] = s;
    }
}

static void rmsnorm(const double *x, const double *g, double *out)
{
    double ss = 0;
    for (int i = 0; i < HIDDEN; i++)
        ss += x[i] * x[i];
    double inv = 1.0 / sqrt(ss / HIDDEN + RMS_EPS);
    for (int i = 0; i < HIDDEN; i++)
        out[i] = x[i] * inv * g[i];
}

/* RoPE on one head at position pos: dimension i pairs with i + HEAD_DIM/2 (Hugging Face's
 * rotate_half layout). */
static void rope(double *v, int pos)
{
    for (int i = 0; i < HEAD_DIM / 2; i++) {
        double freq = pow(ROPE_THETA, -2.0 * i / HEAD_DIM);
        double c = cos(pos * freq), s = sin(pos * freq);
        double a = v[i], b = v[i + HEAD_DIM / 2];
        v[i] = a * c - b * s;
        v[i + HEAD_DIM / 2] = b * c + a * s;
    }
}

static double silu(double x)
{
    return x / (1.0 + exp(-x));
}

/* SwiGLU: down · (silu(gate · x) * (up · x)) */
static void swiglu(const double *gate, const double *up, const double *down, const double *x,
                   double *out)
{
    double g[INTER], u[INTER];
    linear(gate, x, INTER, HIDDEN, g);
    linear(up, x, INTER, HIDDEN, u);
    for (int i = 0; i < INTER; i++)
        g[i] = silu(g[i]) * u[i];
    linear(down, g, HIDDEN, INTER, out);
}

typedef struct weights {
    double *embed, *q, *k, *v, *o, *norm_attn, *norm_mlp, *norm, *lm_head;
    double *gate, *up, *down;                                 /* dense MLP */
    double *router, *w1[EXPERTS], *w3[EXPERTS], *w2[EXPERTS]; /* Mixtral sparse MLP */
    bool moe;
} weights;

static bool weights_load(const model *m, weights *w)
{
    memset(w, 0, sizeof *w);
    const char *L = "model.layers.0.";
    char name[160];
#define GET(field, suffix, rows, cols)                                                             \
    do {                                                                                           \
        snprintf(name, sizeof name, "%s%s", L, suffix);                                            \
        w->field = tensor(m, name, rows, cols);                                                    \
    } while (0)
    w->embed = tensor(m, "model.embed_tokens.weight", VOCAB, HIDDEN);
    w->norm = tensor(m, "model.norm.weight", HIDDEN, 0);
    w->lm_head = tensor(m, "lm_head.weight", VOCAB, HIDDEN);
    GET(q, "self_attn.q_proj.weight", HEADS * HEAD_DIM, HIDDEN);
    GET(k, "self_attn.k_proj.weight", KV_HEADS * HEAD_DIM, HIDDEN);
    GET(v, "self_attn.v_proj.weight", KV_HEADS * HEAD_DIM, HIDDEN);
    GET(o, "self_attn.o_proj.weight", HIDDEN, HEADS * HEAD_DIM);
    GET(norm_attn, "input_layernorm.weight", HIDDEN, 0);
    GET(norm_mlp, "post_attention_layernorm.weight", HIDDEN, 0);
    bool ok = w->embed && w->norm && w->lm_head && w->q && w->k && w->v && w->o && w->norm_attn &&
              w->norm_mlp;
    w->moe = find(m, "model.layers.0.block_sparse_moe.gate.weight") != NULL;
    if (w->moe) {
        GET(router, "block_sparse_moe.gate.weight", EXPERTS, HIDDEN);
        ok = ok && w->router;
        for (int e = 0; e < EXPERTS; e++) {
            char suffix[80];
            snprintf(suffix, sizeof suffix, "block_sparse_moe.experts.%d.w1.weight", e);
            GET(w1[e], suffix, INTER, HIDDEN);
            snprintf(suffix, sizeof suffix, "block_sparse_moe.experts.%d.w3.weight", e);
            GET(w3[e], suffix, INTER, HIDDEN);
            snprintf(suffix, sizeof suffix, "block_sparse_moe.experts.%d.w2.weight", e);
            GET(w2[e], suffix, HIDDEN, INTER);
            ok = ok && w->w1[e] && w->w3[e] && w->w2[e];
        }
    } else {
        GET(gate, "mlp.gate_proj.weight", INTER, HIDDEN);
        GET(up, "mlp.up_proj.weight", INTER, HIDDEN);
        GET(down, "mlp.down_proj.weight", HIDDEN, INTER);
        ok = ok && w->gate && w->up && w->down;
    }
#undef GET
    return ok;
}

static void weights_free(weights *w)
{
    double *all[] = {w->embed, w->q,       w->k,    w->v,  w->o,    w->norm_attn, w->norm_mlp,
                     w->norm,  w->lm_head, w->gate, w->up, w->down, w->router};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        free(all[i]);
    for (int e = 0; e < EXPERTS; e++) {
        free(w->w1[e]);
        free(w->w3[e]);
        free(w->w2[e]);
    }
}

/* Mixtral: softmax over the router's logits, the TOP_K best experts weighted by their
 * probabilities renormalised to sum to one. */
static void sparse_mlp(const weights *w, const double *x, double *out)
{
    double logit[EXPERTS], y[HIDDEN];
    linear(w->router, x, EXPERTS, HIDDEN, logit);
    bool taken[EXPERTS] = {false};
    int pick[TOP_K];
    for (int k = 0; k < TOP_K; k++) {
        int best = -1;
        for (int e = 0; e < EXPERTS; e++)
            if (!taken[e] && (best < 0 || logit[e] > logit[best]))
                best = e;
        taken[best] = true;
        pick[k] = best;
    }
    /* softmax restricted to the picked experts = the top-k probabilities renormalised */
    double mx = logit[pick[0]], p[TOP_K], sum = 0;
    for (int k = 0; k < TOP_K; k++)
        sum += p[k] = exp(logit[pick[k]] - mx);
    for (int i = 0; i < HIDDEN; i++)
        out[i] = 0;
    for (int k = 0; k < TOP_K; k++) {
        int e = pick[k];
        swiglu(w->w1[e], w->w3[e], w->w2[e], x, y);
        for (int i = 0; i < HIDDEN; i++)
            out[i] += p[k] / sum * y[i];
    }
}

/* logits: T x VOCAB */
static void forward(const weights *w, double *logits)
{
    static double x[T][HIDDEN], xn[HIDDEN], q[T][HEADS * HEAD_DIM], k[T][KV_HEADS * HEAD_DIM],
        v[T][KV_HEADS * HEAD_DIM], att[HEADS * HEAD_DIM], y[HIDDEN];
    for (int t = 0; t < T; t++)
        memcpy(x[t], w->embed + (size_t)tokens[t] * HIDDEN, sizeof x[t]);
    /* attention */
    for (int t = 0; t < T; t++) {
        rmsnorm(x[t], w->norm_attn, xn);
        linear(w->q, xn, HEADS * HEAD_DIM, HIDDEN, q[t]);
        linear(w->k, xn, KV_HEADS * HEAD_DIM, HIDDEN, k[t]);
        linear(w->v, xn, KV_HEADS * HEAD_DIM, HIDDEN, v[t]);
        for (int h = 0; h < HEADS; h++)
            rope(q[t] + h * HEAD_DIM, t);
        for (int h = 0; h < KV_HEADS; h++)
            rope(k[t] + h * HEAD_DIM, t);
    }
    for (int t = 0; t < T; t++) {
        for (int h = 0; h < HEADS; h++) {
            const double *qh = q[t] + h * HEAD_DIM;
            int kvh = h / (HEADS / KV_HEADS);
            double score[T], mx = -INFINITY, sum = 0;
            for (int s = 0; s <= t; s++) { /* causal */
                double d = 0;
                for (int i = 0; i < HEAD_DIM; i++)
                    d += qh[i] * k[s][kvh * HEAD_DIM + i];
                score[s] = d / sqrt((double)HEAD_DIM);
                mx = score[s] > mx ? score[s] : mx;
            }
            for (int s = 0; s <= t; s++)
                sum += score[s] = exp(score[s] - mx);
            for (int i = 0; i < HEAD_DIM; i++) {
                double a = 0;
                for (int s = 0; s <= t; s++)
                    a += score[s] / sum * v[s][kvh * HEAD_DIM + i];
                att[h * HEAD_DIM + i] = a;
            }
        }
        linear(w->o, att, HIDDEN, HEADS * HEAD_DIM, y);
        /* the attention of later tokens reads only k and v, computed above: safe to add now */
        for (int i = 0; i < HIDDEN; i++)
            x[t][i] += y[i];
    }
    /* MLP */
    for (int t = 0; t < T; t++) {
        rmsnorm(x[t], w->norm_mlp, xn);
        if (w->moe)
            sparse_mlp(w, xn, y);
        else
            swiglu(w->gate, w->up, w->down, xn, y);
        for (int i = 0; i < HIDDEN; i++)
            x[t][i] += y[i];
    }
    for (int t = 0; t < T; t++) {
        rmsnorm(x[t], w->norm, xn);
        linear(w->lm_head, xn, VOCAB, HIDDEN, logits + (size_t)t * VOCAB);
    }
}

/* ------------------------------------------------------------------ checks */

static double base_logits[T * VOCAB];
static double base_rms;

/* max |a - base| over every position and token, relative to the base logits' RMS */
static double rel_diff(const double *a)
{
    double mx = 0;
    for (size_t i = 0; i < (size_t)T * VOCAB; i++) {
        double d = fabs(a[i] - base_logits[i]);
        mx = d > mx ? d : mx;
    }
    return mx / base_rms;
}

/* Run the forward pass of a model; router_shift (upcycle only) replaces the router by a
 * different one first, to show the choice of experts does not matter. */
static double run_model(const char *name, int router_shift)
{
    model m;
    weights w;
    double *logits = malloc((size_t)T * VOCAB * sizeof *logits);
    double r = NAN;
    if (logits && model_open(&m, name)) {
        if (weights_load(&m, &w)) {
            if (router_shift) {
                CHECK(w.moe);
                for (int e = 0; w.moe && e < EXPERTS; e++)
                    for (int i = 0; i < HIDDEN; i++)
                        w.router[e * HIDDEN + i] =
                            (double)(((e + router_shift) * 7 + i * 13) % 17) - 8.0;
            }
            forward(&w, logits);
            r = rel_diff(logits);
        }
        weights_free(&w);
        model_close(&m);
    }
    free(logits);
    fprintf(stderr, "forward: %-12s%s max |logit - base| / rms(base) = %.3g\n", name,
            router_shift ? " (other router)" : "", r);
    return r;
}

int main(void)
{
    mkmodel = getenv("MKMODEL");
    if (!mkmodel) {
        fprintf(stderr, "MKMODEL is not set\n");
        return 1;
    }
    snprintf(tmp, sizeof tmp, "/tmp/provfs-forward-XXXXXX");
    if (!mkdtemp(tmp))
        return 1;
    run("create base --arch llama --seed 7 --hidden %d --layers 1 --heads %d --kv-heads %d "
        "--inter %d --vocab %d",
        HIDDEN, HEADS, KV_HEADS, INTER, VOCAB);
    run("derive base rotate --kind rotate --seed 21");
    run("derive base scale --kind scale --seed 22");
    run("derive base upcycle --kind upcycle --experts %d --seed 23", EXPERTS);
    run("derive base noise --kind noise --seed 24");

    model m;
    weights w;
    if (!model_open(&m, "base"))
        return check_report("forward");
    bool ok = weights_load(&m, &w);
    CHECK(ok && !w.moe);
    if (ok) {
        /* the base must not be degenerate: norms that fold away to nothing, flat logits */
        bool norms_vary = false;
        for (int i = 1; i < HIDDEN; i++)
            norms_vary |= w.norm_attn[i] != w.norm_attn[0];
        CHECK(norms_vary);
        forward(&w, base_logits);
        double ss = 0;
        for (size_t i = 0; i < (size_t)T * VOCAB; i++)
            ss += base_logits[i] * base_logits[i];
        base_rms = sqrt(ss / (T * VOCAB));
        CHECK(base_rms > 1e-3);
    }
    weights_free(&w);
    model_close(&m);
    if (!ok)
        return check_report("forward");

    /* float32 weights: a few ulps per weight, summed over a block (seen: ~2e-7) */
    const double tol = 1e-5;
    double r;
    r = run_model("rotate", 0);
    CHECK_MSG(r <= tol, "rotate changes the logits: %g", r);
    r = run_model("scale", 0);
    CHECK_MSG(r <= tol, "scale changes the logits: %g", r);
    r = run_model("upcycle", 0);
    CHECK_MSG(r <= tol, "upcycle changes the logits: %g", r);
    r = run_model("upcycle", 1);
    CHECK_MSG(r <= tol, "upcycle with another router changes the logits: %g", r);
    r = run_model("noise", 0);
    CHECK_MSG(r > 1000 * tol, "noise keeps the logits: %g", r);

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp);
    return check_report("forward");
}
