/* The weights pass of a fingerprint: one streaming pass over a model's bytes.
 *
 * Every tensor is read once with pread() into a per-thread buffer (after a write, pread of a
 * reused buffer beats mmap: each fresh page mapping costs microseconds), hashed with SHA-256 and
 * decoded to float in chunks; from each chunk we keep only small sketches (fp.h): moments, row and
 * column sums at evenly spaced positions, a sampled block, 1-D samples, and for the embedding
 * matrix the row-norm histogram and anchor rows. Whole files are hashed as separate jobs. With the
 * x86 SHA extensions every thread hashes two jobs at once (run_lanes: two SHA-256 streams cost
 * little more than one), and one thread alone reads each weights file once for both its digest and
 * its tensors' (job_file_fused). Memory stays bounded: two chunk buffers per thread, plus anchor
 * rows.
 */
#include "fp.h"
#include "hot.h"
#include "jsonutil.h"
#include "gguf.h"
#include "model.h"
#include "sha.h"
#include "sha2x.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define CHUNK_BYTES (4u << 20)
#define LANE_BYTES (1u << 20) /* read at a time by each of a thread's two lanes (run_lanes) */
#define SUB_ELEMS 4096u /* floats decoded at a time: 16 KiB, stays in L1 */

/* ------------------------------------------------------------------ sampling */

/* k-th of K evenly spaced indices in [0, n): floor((k + 1/2) n / K), the centre of the k-th of
 * K equal parts. Exact integer arithmetic (k < K): it is called for every row of every tensor. */
static inline uint64_t spaced(uint64_t k, uint64_t K, uint64_t n)
{
    if (n < (1ull << 40) && K < (1ull << 22)) /* (2k + 1) n < 2^63 */
        return (2 * k + 1) * n / (2 * K);
    return (uint64_t)((unsigned __int128)(2 * k + 1) * n / (2 * (unsigned __int128)K));
}

/* Inverse of spaced(): k when idx is the k-th of K evenly spaced indices in [0, n), else -1.
 * Random access, so rows may arrive in any order (GGUF stores Q/K rows permuted). With K <= n
 * the k sought is within one of floor(idx K / n). */
static inline int64_t spaced_index(uint64_t idx, uint64_t K, uint64_t n)
{
    if (K == 0 || n == 0 || idx >= n)
        return -1;
    uint64_t k0 = n < (1ull << 40) && K < (1ull << 22)
                      ? idx * K / n
                      : (uint64_t)((unsigned __int128)idx * K / n);
    for (uint64_t k = k0 ? k0 - 1 : 0; k <= k0 + 1 && k < K; k++)
        if (spaced(k, K, n) == idx)
            return (int64_t)k;
    return -1;
}

static uint32_t min_u32(uint64_t a, uint32_t b)
{
    return a < b ? (uint32_t)a : b;
}

/* ------------------------------------------------------------------ jobs */

/* Where a tensor's bytes are and how to decode them: safetensors (one element per dtype unit) or
 * GGUF (ggml blocks of several elements). */
typedef struct tsrc {
    const char *path;
    const char *name; /* name in the file, for messages */
    uint64_t off;     /* absolute file offset */
    uint64_t nbytes;
    uint64_t numel;
    uint32_t ndim;
    uint64_t shape[PA_MAX_DIMS]; /* Hugging Face order: shape[0] = rows */
    bool ggml;
    uint32_t type;     /* pa_dtype, or a ggml type when ggml */
    uint32_t qk_heads; /* > 0: rows are in llama.cpp's rotary order for this many heads */
} tsrc;

typedef struct job {
    int kind;         /* 0 = hash a whole file, 1 = a tensor */
    size_t file;      /* unit file index (kind 0) */
    size_t tensor;    /* index into fp->tensors (kind 1) */
    uint64_t bytes;
    tsrc src;         /* kind 1 */
} job;

typedef struct anchor_plan {
    uint32_t n;
    uint64_t row[PA_SK_ANCHORS];  /* sorted by row */
    uint32_t slot[PA_SK_ANCHORS]; /* position in fp->embed anchors */
} anchor_plan;

typedef struct run_ctx {
    pa_unit *unit;
    pa_fingerprint *fp;
    const pa_fp_options *opt;
    job *jobs;
    size_t n_jobs;
    atomic_size_t next;
    atomic_uint_fast64_t done_bytes;
    uint64_t total_bytes;
    size_t chunk;      /* bytes read at a time: CHUNK_BYTES, less when every job is smaller */
    size_t lane_chunk; /* the same for a lane (run_lanes): LANE_BYTES or less */
    size_t embed_tensor; /* index into fp->tensors, SIZE_MAX when none */
    anchor_plan anchors;
    float *anchor_full; /* n_anchors x cols */
    float *row_norms;   /* embedding rows */
    /* invariant products (plan_probe) */
    uint32_t probe_m, probe_nl;
    int32_t *probe_layer_of; /* per block: index among the sampled blocks, -1 when not sampled */
    float *probe_xt;         /* (1 + 2 probe_nl) inputs of h x PA_SK_PROBE: plain, then per block
                                times the attention norm and times the MLP norm */
    float **probe_acc;       /* per tensor: len x PA_SK_PROBE accumulator, or NULL */
    const float **probe_in;  /* per tensor: its input */
    uint64_t *probe_len;
    uint8_t *probe_mode;     /* per tensor: 0 none, 1 contract columns, 2 contract rows */
    pthread_mutex_t lock; /* guards err and progress calls */
    pa_error *err;
    atomic_int failed;
} run_ctx;

typedef struct tbuf {
    uint8_t *raw;
    float *val;
} tbuf;

static void fail(run_ctx *c, pa_status st, const char *fmt, const char *a, const char *b)
{
    pthread_mutex_lock(&c->lock);
    pa_error_set(c->err, st, fmt, a, b);
    pthread_mutex_unlock(&c->lock);
    atomic_store(&c->failed, 1);
}

static bool cancelled(run_ctx *c)
{
    return atomic_load(&c->failed) || (c->opt && c->opt->cancel && *c->opt->cancel);
}

static void progress(run_ctx *c, uint64_t add)
{
    uint64_t done = atomic_fetch_add(&c->done_bytes, add) + add;
    if (c->opt && c->opt->progress) {
        pthread_mutex_lock(&c->lock);
        c->opt->progress(c->opt->progress_ctx, done, c->total_bytes);
        pthread_mutex_unlock(&c->lock);
    }
}

/* A read buffer of n bytes. One of 2 MiB or more is on 2 MiB boundaries, with transparent huge
 * pages where the system offers them on request: a fresh process (the daemon's analysis worker)
 * then faults in a few huge pages per buffer instead of a thousand small ones. A small model gets
 * small buffers. Freed with free(). */
static uint8_t *chunk_alloc(size_t n)
{
    if (n < (2u << 20))
        return malloc(n);
    void *p = NULL;
    if (posix_memalign(&p, 2u << 20, n) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, n, MADV_HUGEPAGE);
#endif
    return p;
}

static void job_file_hash(run_ctx *c, tbuf *b, const job *j)
{
    const char *path = c->unit->file_paths[j->file];
    pa_error oerr = {0};
    int fd = pa_unit_open_file(c->unit, path, &oerr);
    if (fd < 0) {
        fail(c, oerr.status, "%s%s", oerr.msg, "");
        return;
    }
    pa_sha_ctx *sha = pa_sha_new();
    if (!sha) {
        close(fd);
        fail(c, PA_E_NOMEM, "%s: %s", path, "out of memory");
        return;
    }
    uint64_t off = 0;
    for (;;) {
        if (cancelled(c))
            break;
        ssize_t r = pread(fd, b->raw, c->chunk, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fail(c, PA_E_IO, "%s: read failed: %s", path, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        pa_sha_update(sha, b->raw, (size_t)r);
        off += (uint64_t)r;
        progress(c, (uint64_t)r);
    }
    uint8_t d[32];
    pa_sha_final(sha, d);
    close(fd);
    pa_hex(d, 32, c->fp->files[j->file].sha256);
}

/* Per-tensor accumulation state. */
typedef struct tacc {
    pa_tensor_fp *t;
    uint64_t rows, cols;
    uint32_t kc, kr, br, bc, ks; /* sample counts: colsum, rowsum, block rows/cols, 1-D sample */
    uint64_t *col_idx;           /* kc sampled columns (ascending) */
    double *colsum;
    uint64_t next_sample; /* next sampled position of a 1-D tensor */
    uint32_t sample_k;
    int64_t brow; /* block row of the current row, -1 when the row is not sampled */
    uint64_t *bcol_idx; /* bc block columns */
    double row_acc, row_sq;
    double sum, sumsq;
    float mn, mx;
    uint64_t nonfinite;
    bool is_embed;
    int pmode;        /* invariant products: 0 none, 1 contract columns, 2 contract rows */
    const float *pin; /* h x PA_SK_PROBE input */
    float *pacc;      /* len x PA_SK_PROBE */
} tacc;

/* The probe lanes as one vector (GCC and clang vector extensions), so the loops below compile to
 * whole-vector loads, multiplies and adds on every target. Unaligned and aliasing float. */
typedef float probe_vec
    __attribute__((vector_size(PA_SK_PROBE * sizeof(float)), aligned(sizeof(float)), may_alias));
#define PV(p) (*(probe_vec *)(p))
#define PVC(p) (*(const probe_vec *)(p))

/* acc[r] += sum_k in[c0 + k] * v[k]: a row of a matrix that reads the stream, against the
 * probe rows. PROBE_CHAINS independent partial sums, k taken round robin (one chain would wait on
 * the add latency for every element), added in a fixed order: the same sum on every CPU. */
#define PROBE_CHAINS 8
PA_CLONES static void probe_cols(const float *in, float *acc, const float *v, size_t len)
{
    probe_vec s[PROBE_CHAINS] = {0};
    size_t k = 0;
    for (; k + PROBE_CHAINS <= len; k += PROBE_CHAINS)
        for (int j = 0; j < PROBE_CHAINS; j++)
            s[j] += PVC(in + (k + j) * PA_SK_PROBE) * v[k + j];
    for (int j = 0; k < len; k++, j++)
        s[j] += PVC(in + k * PA_SK_PROBE) * v[k];
    probe_vec t = s[0];
    for (int j = 1; j < PROBE_CHAINS; j++)
        t += s[j];
    PV(acc) += t;
}

/* acc[c0 + k] += in[r] * v[k]: a row of a matrix whose rows run along the stream. */
PA_CLONES static void probe_rows(const float *xr, float *acc, const float *v, size_t len)
{
    probe_vec x = PVC(xr);
    for (size_t k = 0; k < len; k++)
        PV(acc + k * PA_SK_PROBE) += x * v[k];
}

/* Sums, min and max of a contiguous run of values. 16 independent lanes so the compiler
 * vectorises the loop without -ffast-math (a single accumulator is a serial dependency chain). */
PA_CLONES static void
run_stats(const float *v, size_t n, double *sum, double *sumsq, float *mn, float *mx)
{
    float s[16] = {0}, q[16] = {0}, lo[16], hi[16];
    for (int k = 0; k < 16; k++) {
        lo[k] = *mn;
        hi[k] = *mx;
    }
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        for (int k = 0; k < 16; k++) {
            float x = v[i + k];
            s[k] += x;
            q[k] += x * x;
            lo[k] = x < lo[k] ? x : lo[k];
            hi[k] = x > hi[k] ? x : hi[k];
        }
    }
    for (; i < n; i++) {
        float x = v[i];
        s[i & 15] += x;
        q[i & 15] += x * x;
        lo[i & 15] = x < lo[i & 15] ? x : lo[i & 15];
        hi[i & 15] = x > hi[i & 15] ? x : hi[i & 15];
    }
    double ds = 0, dq = 0;
    float l = *mn, h = *mx;
    for (int k = 0; k < 16; k++) {
        ds += s[k];
        dq += q[k];
        l = lo[k] < l ? lo[k] : l;
        h = hi[k] > h ? hi[k] : h;
    }
    *sum += ds;
    *sumsq += dq;
    *mn = l;
    *mx = h;
}

static uint64_t count_nonfinite(const float *v, size_t n)
{
    uint64_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += !isfinite(v[i]);
    return c;
}

static void anchor_capture(run_ctx *c, uint64_t row, uint64_t c0, const float *v, size_t len)
{
    /* binary search the anchor plan */
    uint32_t lo = 0, hi = c->anchors.n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (c->anchors.row[mid] < row)
            lo = mid + 1;
        else
            hi = mid;
    }
    uint64_t cols = c->fp->embed.cols;
    /* two token strings can share a row (added tokens): fill every slot of the row */
    for (; lo < c->anchors.n && c->anchors.row[lo] == row; lo++)
        memcpy(c->anchor_full + (size_t)c->anchors.slot[lo] * cols + c0, v, len * sizeof(float));
}

/* Feed one run of values that lies inside one row: row r, columns [c0, c0+len). */
static void acc_run(run_ctx *c, tacc *a, uint64_t r, uint64_t c0, const float *v, size_t len)
{
    double s0 = a->sum, q0 = a->sumsq;
    run_stats(v, len, &a->sum, &a->sumsq, &a->mn, &a->mx);
    double rs = a->sum - s0, rq = a->sumsq - q0;
    if (!isfinite(rs) || !isfinite(rq)) {
        a->nonfinite += count_nonfinite(v, len);
        /* keep the moments finite: recompute this run over finite values only */
        a->sum = s0;
        a->sumsq = q0;
        rs = rq = 0;
        for (size_t i = 0; i < len; i++)
            if (isfinite(v[i])) {
                rs += v[i];
                rq += (double)v[i] * v[i];
            }
        a->sum += rs;
        a->sumsq += rq;
    }
    pa_tensor_fp *t = a->t;
    if (a->rows == 1 && a->cols == t->numel && t->ndim < 2) {
        /* 1-D: keep evenly spaced entries */
        while (a->sample_k < a->ks && a->next_sample < c0 + len) {
            if (a->next_sample >= c0)
                t->sample.v[a->sample_k] = v[a->next_sample - c0];
            a->sample_k++;
            if (a->sample_k < a->ks)
                a->next_sample = spaced(a->sample_k, a->ks, a->cols);
        }
        return;
    }
    /* column sums at sampled columns */
    if (a->kc) {
        uint64_t *ci = a->col_idx;
        /* first sampled column >= c0 */
        uint32_t lo = 0, hi = a->kc;
        while (lo < hi) {
            uint32_t mid = (lo + hi) / 2;
            if (ci[mid] < c0)
                lo = mid + 1;
            else
                hi = mid;
        }
        double *cs = a->colsum; /* in locals: the stores cannot change them */
        uint32_t kc = a->kc;
        uint64_t end = c0 + len;
        for (uint32_t k = lo; k < kc && ci[k] < end; k++)
            cs[k] += v[ci[k] - c0];
    }
    a->row_acc += rs;
    a->row_sq += rq;
    if (c0 == 0)
        a->brow = spaced_index(r, a->br, a->rows);
    if (a->brow >= 0) {
        for (uint32_t k = 0; k < a->bc; k++) {
            uint64_t col = a->bcol_idx[k];
            if (col >= c0 && col < c0 + len)
                t->block.v[(uint64_t)a->brow * a->bc + k] = v[col - c0];
        }
    }
    if (a->is_embed && c->anchors.n)
        anchor_capture(c, r, c0, v, len);
    if (a->pmode == 1)
        probe_cols(a->pin + c0 * PA_SK_PROBE, a->pacc + r * PA_SK_PROBE, v, len);
    else if (a->pmode == 2)
        probe_rows(a->pin + r * PA_SK_PROBE, a->pacc + c0 * PA_SK_PROBE, v, len);
    if (c0 + len == a->cols) { /* row complete */
        int64_t k = spaced_index(r, a->kr, a->rows);
        if (k >= 0)
            t->rowsum.v[k] = (float)a->row_acc;
        if (a->is_embed && c->row_norms)
            c->row_norms[r] = (float)sqrt(a->row_sq);
        a->row_acc = a->row_sq = 0;
    }
}

static bool vec_alloc(pa_vec *v, uint32_t n)
{
    v->n = n;
    v->v = n ? calloc(n, sizeof(float)) : NULL;
    return n == 0 || v->v != NULL;
}

static bool decodable(const tsrc *src)
{
    return src->ggml ? pa_gguf_type_supported(src->type) : pa_dtype_decodable((pa_dtype)src->type);
}

/* A tensor being summarised: fed its bytes in any slices, in order. */
typedef struct tstate {
    const tsrc *d;
    pa_tensor_fp *t;
    tacc a;
    size_t unit_elems, unit_bytes;
    bool decode;
    bool fused;       /* bytes are hashed by the caller into sha2 (two-stream SHA-NI) */
    pa_sha_ctx *sha;  /* otherwise OpenSSL */
    pa_sha2x sha2;
    uint64_t units_done;
    /* Bytes are summarised in fixed pieces of SUB_ELEMS elements counted from the tensor's start,
     * whatever slices they arrive in, so the sums come out the same on every schedule. */
    size_t piece_bytes;
    size_t npend;
    uint8_t pend[SUB_ELEMS * 8];
} tstate;

static bool tensor_begin(run_ctx *c, const job *j, bool fused, tstate *ts)
{
    memset(ts, 0, sizeof *ts);
    const tsrc *d = ts->d = &j->src;
    pa_tensor_fp *t = ts->t = &c->fp->tensors[j->tensor];
    /* a unit: one element of a safetensors dtype, or one ggml block */
    ts->unit_elems = d->ggml ? pa_gguf_block_elems(d->type) : 1;
    ts->unit_bytes = d->ggml ? pa_gguf_block_bytes(d->type) : pa_dtype_size((pa_dtype)d->type);
    size_t sub_units = ts->unit_elems ? SUB_ELEMS / ts->unit_elems : 0;
    ts->piece_bytes = (sub_units ? sub_units : 1) * ts->unit_bytes;
    ts->decode = decodable(d) && ts->unit_elems && ts->unit_bytes &&
                 ts->piece_bytes <= sizeof ts->pend;
    t->decoded = ts->decode && d->numel > 0;
    tacc *a = &ts->a;
    a->t = t;
    a->is_embed = j->tensor == c->embed_tensor;
    if (c->probe_mode && c->probe_mode[j->tensor] && ts->decode && d->ndim == 2) {
        a->pmode = c->probe_mode[j->tensor];
        a->pin = c->probe_in[j->tensor];
        a->pacc = c->probe_acc[j->tensor];
    }
    a->mn = INFINITY;
    a->mx = -INFINITY;
    if (d->ndim >= 2) {
        a->rows = d->shape[0];
        a->cols = d->shape[0] ? d->numel / d->shape[0] : 0;
    } else {
        a->rows = 1;
        a->cols = d->numel;
    }
    t->rows = d->ndim >= 2 ? a->rows : 0;
    t->cols = d->ndim >= 2 ? a->cols : 0;
    bool ok = true;
    if (ts->decode && d->numel) {
        if (d->ndim >= 2) {
            a->kc = min_u32(a->cols, PA_SK_MARGINAL);
            a->kr = min_u32(a->rows, PA_SK_MARGINAL);
            a->br = min_u32(a->rows, PA_SK_BLOCK_R);
            a->bc = min_u32(a->cols, PA_SK_BLOCK_C);
            a->col_idx = malloc(a->kc * sizeof *a->col_idx);
            a->colsum = calloc(a->kc, sizeof *a->colsum);
            a->bcol_idx = malloc(a->bc * sizeof *a->bcol_idx);
            ok = a->col_idx && a->colsum && a->bcol_idx && vec_alloc(&t->colsum, a->kc) &&
                 vec_alloc(&t->rowsum, a->kr) && vec_alloc(&t->block, a->br * a->bc);
            if (ok) {
                for (uint32_t k = 0; k < a->kc; k++)
                    a->col_idx[k] = spaced(k, a->kc, a->cols);
                for (uint32_t k = 0; k < a->bc; k++)
                    a->bcol_idx[k] = spaced(k, a->bc, a->cols);
                t->block_r = a->br;
                t->block_c = a->bc;
            }
        } else {
            a->ks = min_u32(a->cols, PA_SK_NORMVEC);
            a->next_sample = spaced(0, a->ks, a->cols);
            ok = vec_alloc(&t->sample, a->ks);
        }
    }
    ts->fused = fused;
    if (fused)
        pa_sha2x_init(&ts->sha2);
    else
        ok = ok && (ts->sha = pa_sha_new()) != NULL;
    if (!ok)
        fail(c, PA_E_NOMEM, "%s: out of memory for tensor %s", d->path, d->name);
    return ok;
}

/* Decode and summarise whole units, in cache-sized pieces: the floats never leave L1/L2. */
static bool tensor_units(run_ctx *c, tstate *ts, tbuf *b, const uint8_t *raw, size_t n)
{
    const tsrc *d = ts->d;
    tacc *a = &ts->a;
    size_t sub_units = SUB_ELEMS / ts->unit_elems;
    if (sub_units == 0)
        sub_units = 1;
    for (size_t s0 = 0; s0 < n; s0 += sub_units) {
        size_t su = n - s0 < sub_units ? n - s0 : sub_units;
        size_t sn = su * ts->unit_elems;
        const uint8_t *src = raw + s0 * ts->unit_bytes;
        if (d->ggml) {
            pa_error derr = {0};
            if (pa_gguf_dequant(d->type, src, su * ts->unit_bytes, b->val, sn, &derr) != PA_OK) {
                fail(c, derr.status, "%s: tensor '%s' cannot be decoded", d->path, d->name);
                return false;
            }
        } else {
            pa_dtype_to_f32((pa_dtype)d->type, src, b->val, sn);
        }
        uint64_t e0 = (ts->units_done + s0) * ts->unit_elems;
        size_t i = 0;
        while (i < sn) {
            uint64_t e = e0 + i;
            uint64_t r = e / a->cols, c0 = e % a->cols;
            size_t len = (size_t)(a->cols - c0);
            if (len > sn - i)
                len = sn - i;
            if (d->qk_heads)
                r = pa_gguf_qk_row(r, a->rows, d->qk_heads);
            acc_run(c, a, r, c0, b->val + i, len);
            i += len;
        }
    }
    ts->units_done += n;
    return true;
}

/* The next n bytes of the tensor. */
static bool tensor_feed(run_ctx *c, tstate *ts, tbuf *b, const uint8_t *p, size_t n)
{
    if (!ts->fused)
        pa_sha_update(ts->sha, p, n);
    if (!ts->decode)
        return true;
    size_t pb = ts->piece_bytes, ub = ts->unit_bytes;
    if (ts->npend) {
        size_t take = pb - ts->npend < n ? pb - ts->npend : n;
        memcpy(ts->pend + ts->npend, p, take);
        ts->npend += take;
        p += take;
        n -= take;
        if (ts->npend < pb)
            return true;
        ts->npend = 0;
        if (!tensor_units(c, ts, b, ts->pend, pb / ub))
            return false;
    }
    size_t whole = n / pb * pb;
    if (whole && !tensor_units(c, ts, b, p, whole / ub))
        return false;
    memcpy(ts->pend, p + whole, n - whole);
    ts->npend = n - whole;
    return true;
}

static void tensor_end(run_ctx *c, tstate *ts, tbuf *b, bool ok)
{
    pa_tensor_fp *t = ts->t;
    tacc *a = &ts->a;
    /* the last, shorter piece */
    if (ok && ts->decode && ts->npend)
        ok = tensor_units(c, ts, b, ts->pend, ts->npend / ts->unit_bytes);
    ts->npend = 0;
    if (ts->fused) {
        pa_sha2x_final(&ts->sha2, t->sha);
    } else if (ts->sha) {
        pa_sha_final(ts->sha, t->sha);
    }
    if (ok && ts->decode && ts->d->numel) {
        uint64_t finite = ts->d->numel - a->nonfinite;
        t->n_nonfinite = a->nonfinite;
        t->mean = finite ? a->sum / (double)finite : 0;
        double var = finite ? a->sumsq / (double)finite - t->mean * t->mean : 0;
        t->std = var > 0 ? sqrt(var) : 0;
        t->l2 = sqrt(a->sumsq);
        t->min = a->mn;
        t->max = a->mx;
        for (uint32_t k = 0; k < a->kc; k++)
            t->colsum.v[k] = (float)a->colsum[k];
    }
    free(a->col_idx);
    free(a->colsum);
    free(a->bcol_idx);
}

static void job_tensor(run_ctx *c, tbuf *b, const job *j)
{
    tstate ts;
    if (!tensor_begin(c, j, false, &ts)) {
        tensor_end(c, &ts, b, false);
        return;
    }
    const tsrc *d = &j->src;
    pa_error oerr = {0};
    int fd = pa_unit_open_file(c->unit, d->path, &oerr);
    if (fd < 0) {
        fail(c, oerr.status, "%s%s", oerr.msg, "");
        tensor_end(c, &ts, b, false);
        return;
    }
    bool ok = true;
    for (uint64_t done = 0; ok && done < d->nbytes && !cancelled(c);) {
        size_t n = (size_t)(d->nbytes - done < c->chunk ? d->nbytes - done : c->chunk);
        if (pa_pread_exact(fd, b->raw, n, d->off + done)) {
            fail(c, PA_E_FORMAT, "%s: short read in tensor '%s' (file changed or truncated?)",
                 d->path, d->name);
            ok = false;
            break;
        }
        ok = tensor_feed(c, &ts, b, b->raw, n);
        done += n;
        progress(c, n);
    }
    close(fd);
    tensor_end(c, &ts, b, ok);
}

/* ------------------------------------------------------------------ two lanes */

/* With the SHA extensions a thread hashes two jobs at once: each of its two lanes holds a job (a
 * whole file or a tensor) and reads it in pieces, the two pieces go through the two-stream
 * update together (two streams cost little more than one) and the tensor pieces are then
 * summarised as in job_tensor. A lane holding a whole file takes only another file beside it: a
 * file hash is the longest job, and tensors decoded beside it would slow it down. */
typedef struct lane {
    const job *j; /* NULL: idle */
    int fd;
    uint64_t done; /* bytes of the job read so far */
    size_t n;      /* bytes in raw this round */
    bool ok;
    bool eof;      /* kind 0: the file's end was read */
    pa_sha2x file; /* kind 0 */
    tstate ts;     /* kind 1 */
    uint8_t *raw;
} lane;

static const char *job_path(const run_ctx *c, const job *j)
{
    return j->kind == 0 ? c->unit->file_paths[j->file] : j->src.path;
}

/* End the lane's job: its digest is stored when every byte was read. */
static void lane_end(run_ctx *c, tbuf *b, lane *l)
{
    const job *j = l->j;
    if (j->kind == 1) {
        tensor_end(c, &l->ts, b, l->ok && l->done == j->src.nbytes);
    } else if (l->ok && l->eof) {
        uint8_t d[32];
        pa_sha2x_final(&l->file, d);
        pa_hex(d, 32, c->fp->files[j->file].sha256);
    }
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    l->j = NULL;
}

static void lane_start(run_ctx *c, tbuf *b, lane *l, const job *j)
{
    l->j = j;
    l->fd = -1;
    l->done = 0;
    l->n = 0;
    l->eof = false;
    l->ok = j->kind == 0 || tensor_begin(c, j, true, &l->ts);
    if (j->kind == 0)
        pa_sha2x_init(&l->file);
    if (!l->ok) {
        lane_end(c, b, l);
        return;
    }
    pa_error oerr = {0};
    l->fd = pa_unit_open_file(c->unit, job_path(c, j), &oerr);
    if (l->fd < 0) {
        fail(c, oerr.status, "%s%s", oerr.msg, "");
        l->ok = false;
        lane_end(c, b, l);
    }
}

/* The lane's next piece into l->raw (l->n bytes; 0 at the end of its job). */
static void lane_read(run_ctx *c, lane *l)
{
    const job *j = l->j;
    l->n = 0;
    if (j->kind == 0) {
        ssize_t r;
        do
            r = pread(l->fd, l->raw, c->lane_chunk, (off_t)l->done);
        while (r < 0 && errno == EINTR);
        if (r < 0) {
            fail(c, PA_E_IO, "%s: read failed: %s", job_path(c, j), strerror(errno));
            l->ok = false;
        } else if (r == 0) {
            l->eof = true;
        } else {
            l->n = (size_t)r;
        }
        return;
    }
    uint64_t left = j->src.nbytes - l->done;
    size_t n = (size_t)(left < c->lane_chunk ? left : c->lane_chunk);
    if (n && pa_pread_exact(l->fd, l->raw, n, j->src.off + l->done)) {
        fail(c, PA_E_FORMAT, "%s: short read in tensor '%s' (file changed or truncated?)",
             j->src.path, j->src.name);
        l->ok = false;
        return;
    }
    l->n = n;
}

static pa_sha2x *lane_sha(lane *l)
{
    return l->j->kind == 0 ? &l->file : &l->ts.sha2;
}

/* Hands out the next job, or NULL; with files_only, a job only if it hashes a whole file. */
typedef const job *take_fn(run_ctx *c, void *arg, bool files_only);

/* Run jobs two at a time until take() has none left. */
static void run_lanes(run_ctx *c, tbuf *b, uint8_t *raw2, take_fn *take, void *arg)
{
    lane ls[2] = {{.fd = -1, .raw = b->raw}, {.fd = -1, .raw = raw2}};
    for (;;) {
        bool any = false;
        for (int k = 0; k < 2; k++) {
            lane *l = &ls[k], *o = &ls[1 - k];
            while (!l->j && !cancelled(c)) {
                const job *j = take(c, arg, o->j && o->j->kind == 0);
                if (!j)
                    break;
                lane_start(c, b, l, j);
            }
            any |= l->j != NULL;
        }
        if (!any)
            break;
        bool stop = cancelled(c), both = ls[0].j && ls[1].j;
        for (int k = 0; k < 2 && !stop; k++)
            if (ls[k].j)
                lane_read(c, &ls[k]);
        if (!stop && both)
            pa_sha2x_update2(lane_sha(&ls[0]), ls[0].raw, ls[0].n, lane_sha(&ls[1]), ls[1].raw,
                             ls[1].n);
        for (int k = 0; k < 2; k++) {
            lane *l = &ls[k];
            if (!l->j)
                continue;
            if (stop) {
                l->ok = false;
                lane_end(c, b, l);
                continue;
            }
            if (!both)
                pa_sha2x_update(lane_sha(l), l->raw, l->n);
            if (l->ok && l->n && l->j->kind == 1)
                l->ok = tensor_feed(c, &l->ts, b, l->raw, l->n);
            l->done += l->n;
            if (l->n)
                progress(c, l->n);
            if (!l->ok || l->eof || (l->j->kind == 1 && l->done == l->j->src.nbytes))
                lane_end(c, b, l);
        }
    }
}

/* Run the jobs take() hands out: two at a time on the SHA extensions, else one at a time. */
static void run_jobs(run_ctx *c, tbuf *b, take_fn *take, void *arg)
{
    uint8_t *raw2 = pa_sha2x_available() ? chunk_alloc(c->lane_chunk) : NULL;
    if (raw2) {
        run_lanes(c, b, raw2, take, arg);
        free(raw2);
        return;
    }
    for (const job *j; !cancelled(c) && (j = take(c, arg, false));)
        if (j->kind == 0)
            job_file_hash(c, b, j);
        else
            job_tensor(c, b, j);
}

/* One thread, one file: read it once, front to back, and hash every byte into the file's digest
 * and — two streams side by side on the SHA extensions — the bytes of each tensor into the
 * tensor's. This is the single-thread path: each byte is read once and both digests cost little
 * more than one. tensors[] are tensor jobs of the file, sorted by offset, none empty and none
 * sharing a byte with another (run_serial_fused leaves the others to be read on their own). */
static void job_file_fused(run_ctx *c, tbuf *b, const job *fj, const job *const *tensors,
                           size_t nt)
{
    const char *path = c->unit->file_paths[fj->file];
    pa_error oerr = {0};
    int fd = pa_unit_open_file(c->unit, path, &oerr);
    if (fd < 0) {
        fail(c, oerr.status, "%s%s", oerr.msg, "");
        return;
    }
    pa_sha2x file;
    pa_sha2x_init(&file);
    size_t ti = 0;
    tstate ts;
    bool open_t = false, ok = true;
    uint64_t off = 0;
    for (;;) {
        if (cancelled(c)) {
            ok = false;
            break;
        }
        ssize_t r = pread(fd, b->raw, c->chunk, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fail(c, PA_E_IO, "%s: read failed: %s", path, strerror(errno));
            ok = false;
            break;
        }
        if (r == 0)
            break;
        const uint8_t *p = b->raw;
        uint64_t end = off + (uint64_t)r, fed = 0;
        while (ok && off < end) {
            const tsrc *d = ti < nt ? &tensors[ti]->src : NULL;
            if (!d || off < d->off) {
                /* header, padding or gaps: the file digest only */
                uint64_t stop = d && d->off < end ? d->off : end;
                pa_sha2x_update(&file, p, (size_t)(stop - off));
                p += stop - off;
                off = stop;
                continue;
            }
            if (!open_t) {
                if (!tensor_begin(c, tensors[ti], true, &ts)) {
                    tensor_end(c, &ts, b, false);
                    ok = false;
                    break;
                }
                open_t = true;
            }
            uint64_t stop = d->off + d->nbytes < end ? d->off + d->nbytes : end;
            size_t n = (size_t)(stop - off);
            pa_sha2x_update2(&file, p, n, &ts.sha2, p, n);
            ok = tensor_feed(c, &ts, b, p, n);
            fed += n;
            p += n;
            off = stop;
            if (off == d->off + d->nbytes) {
                tensor_end(c, &ts, b, ok);
                open_t = false;
                ti++;
            }
        }
        progress(c, (uint64_t)r + fed); /* the total counts file and tensor bytes */
        if (!ok)
            break;
    }
    if (open_t)
        tensor_end(c, &ts, b, false);
    close(fd);
    if (ok && ti < nt) {
        fail(c, PA_E_FORMAT, "%s: file ended inside tensor '%s' (changed or truncated?)", path,
             tensors[ti]->src.name);
        return;
    }
    uint8_t dgst[32];
    pa_sha2x_final(&file, dgst);
    if (ok)
        pa_hex(dgst, 32, c->fp->files[fj->file].sha256);
}

static int cmp_job_off(const void *x, const void *y)
{
    const job *a = *(const job *const *)x, *b = *(const job *const *)y;
    return a->src.off < b->src.off ? -1 : a->src.off > b->src.off;
}

typedef struct serial_left {
    const bool *done;
    size_t next;
} serial_left;

static const job *take_left(run_ctx *c, void *arg, bool files_only)
{
    serial_left *s = arg;
    for (; s->next < c->n_jobs; s->next++)
        if (!s->done[s->next]) {
            if (files_only && c->jobs[s->next].kind != 0)
                return NULL;
            return &c->jobs[s->next++];
        }
    return NULL;
}

/* The single-thread schedule: each weights file in one fused pass (job_file_fused), the other
 * files hashed and the remaining tensors read on their own. */
static void run_serial_fused(run_ctx *c)
{
    tbuf b;
    b.raw = chunk_alloc(c->chunk);
    b.val = malloc((size_t)SUB_ELEMS * sizeof(float));
    const job **group = malloc((c->n_jobs ? c->n_jobs : 1) * sizeof *group);
    bool *done = calloc(c->n_jobs ? c->n_jobs : 1, sizeof *done);
    if (!b.raw || !b.val || !group || !done) {
        fail(c, PA_E_NOMEM, "%s: %s", c->unit->path, "out of memory for read buffers");
        goto out;
    }
    for (size_t i = 0; i < c->n_jobs && !cancelled(c); i++) {
        const job *j = &c->jobs[i];
        if (j->kind != 0)
            continue;
        const char *path = c->unit->file_paths[j->file];
        size_t n = 0;
        for (size_t k = 0; k < c->n_jobs; k++)
            if (c->jobs[k].kind == 1 && c->jobs[k].src.nbytes &&
                strcmp(c->jobs[k].src.path, path) == 0)
                group[n++] = &c->jobs[k];
        qsort(group, n, sizeof *group, cmp_job_off); /* the file front to back */
        /* Tensors that share bytes with one before them (tied weights of a torch checkpoint)
         * and empty tensors are read on their own below, as with several threads. */
        size_t kept = 0;
        uint64_t end = 0;
        for (size_t g = 0; g < n; g++)
            if (group[g]->src.off >= end) {
                end = group[g]->src.off + group[g]->src.nbytes;
                done[group[g] - c->jobs] = true;
                group[kept++] = group[g];
            }
        n = kept;
        if (n)
            job_file_fused(c, &b, j, group, n);
        else
            job_file_hash(c, &b, j);
        done[i] = true;
    }
    /* the rest: tensors of files whose digest the caller supplied, and those left above */
    serial_left left = {done, 0};
    run_jobs(c, &b, take_left, &left);
out:
    free(b.raw);
    free(b.val);
    free(group);
    free(done);
}

/* The next job of the shared list (all threads take from it in order). */
static const job *take_shared(run_ctx *c, void *arg, bool files_only)
{
    (void)arg;
    size_t i = atomic_load(&c->next);
    do {
        if (i >= c->n_jobs || (files_only && c->jobs[i].kind != 0))
            return NULL;
    } while (!atomic_compare_exchange_weak(&c->next, &i, i + 1));
    return &c->jobs[i];
}

static void *worker(void *arg)
{
    run_ctx *c = arg;
    tbuf b;
    b.raw = chunk_alloc(c->chunk);
    b.val = malloc((size_t)SUB_ELEMS * sizeof(float));
    if (!b.raw || !b.val) {
        free(b.raw);
        free(b.val);
        fail(c, PA_E_NOMEM, "%s: %s", c->unit->path, "out of memory for read buffers");
        return NULL;
    }
    run_jobs(c, &b, take_shared, NULL);
    free(b.raw);
    free(b.val);
    return NULL;
}

static int cmp_job(const void *x, const void *y)
{
    const job *a = x, *b = y;
    /* whole-file hashes first (largest first), so a second thread starts them at once */
    if (a->kind != b->kind)
        return a->kind - b->kind;
    if (a->kind == 0)
        return a->bytes < b->bytes ? 1 : a->bytes > b->bytes ? -1 : 0;
    /* tensors largest first, so the last ones left for the two lanes of each thread are short
     * (a long tensor alone at the end would be hashed at one stream's speed); then in file order */
    if (a->bytes != b->bytes)
        return a->bytes < b->bytes ? 1 : -1;
    int pc = strcmp(a->src.path, b->src.path);
    if (pc)
        return pc;
    return a->src.off < b->src.off ? -1 : a->src.off > b->src.off;
}

typedef struct anchor_cand {
    uint64_t hash;
    uint64_t row;
} anchor_cand;

static int cmp_cand(const void *x, const void *y)
{
    const anchor_cand *a = x, *b = y;
    return a->hash < b->hash ? -1 : a->hash > b->hash;
}

static int cmp_plan(const void *x, const void *y)
{
    const uint64_t *a = x, *b = y; /* pairs (row, slot) */
    return a[0] < b[0] ? -1 : a[0] > b[0];
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* Anchor tokens: the PA_SK_ANCHORS rows whose token *string* hashes lowest (consistent sampling),
 * so models with different but overlapping vocabularies share most anchors. Without a tokenizer
 * the row number stands in for the string. */
static pa_status plan_anchors(run_ctx *c, const pa_tokenizer *tok, pa_error *err)
{
    pa_embed_fp *e = &c->fp->embed;
    uint64_t rows = e->rows;
    size_t n = 0;
    anchor_cand *cand = NULL;
    if (tok) {
        cand = malloc((tok->n_tokens ? tok->n_tokens : 1) * sizeof *cand);
        if (!cand)
            return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", c->fp->path);
        for (size_t i = 0; i < tok->n_tokens; i++)
            if (tok->tokens[i].id < rows) {
                cand[n].hash = pa_token_hash(tok->tokens[i].str, tok->tokens[i].len);
                cand[n++].row = tok->tokens[i].id;
            }
    }
    if (n < 2) {
        free(cand);
        n = 0;
        uint64_t m = rows < 65536 ? rows : 65536;
        cand = malloc((m ? m : 1) * sizeof *cand);
        if (!cand)
            return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", c->fp->path);
        for (uint64_t r = 0; r < m; r++) {
            cand[n].hash = mix64(r + 0x9e3779b97f4a7c15ULL);
            cand[n++].row = r;
        }
    }
    qsort(cand, n, sizeof *cand, cmp_cand);
    uint32_t k = (uint32_t)(n < PA_SK_ANCHORS ? n : PA_SK_ANCHORS);
    uint64_t pairs[PA_SK_ANCHORS][2];
    for (uint32_t i = 0; i < k; i++) {
        e->anchor_hash[i] = cand[i].hash;
        pairs[i][0] = cand[i].row;
        pairs[i][1] = i;
    }
    free(cand);
    qsort(pairs, k, sizeof pairs[0], cmp_plan);
    for (uint32_t i = 0; i < k; i++) {
        c->anchors.row[i] = pairs[i][0];
        c->anchors.slot[i] = (uint32_t)pairs[i][1];
    }
    c->anchors.n = k;
    e->n_anchors = k;
    if (e->cols > (1u << 20))
        return pa_error_set(err, PA_E_LIMIT, "%s: embedding width %llu is over the limit",
                            c->fp->path, (unsigned long long)e->cols);
    c->anchor_full = calloc((size_t)k * e->cols + 1, sizeof(float));
    if (!c->anchor_full)
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", c->fp->path);
    if (rows > (1u << 26))
        return pa_error_set(err, PA_E_LIMIT, "%s: embedding has %llu rows", c->fp->path,
                            (unsigned long long)rows);
    c->row_norms = calloc(rows ? rows : 1, sizeof(float));
    if (!c->row_norms)
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", c->fp->path);
    return PA_OK;
}

static pa_status finish_embed(run_ctx *c, pa_error *err)
{
    pa_embed_fp *e = &c->fp->embed;
    uint32_t k = e->n_anchors;
    uint64_t cols = e->cols;
    e->anchor_c = min_u32(cols, PA_SK_ANCHOR_C);
    e->anchor_cos = calloc((size_t)k * k + 1, sizeof(float));
    e->anchor_rows = calloc((size_t)k * e->anchor_c + 1, sizeof(float));
    if (!e->anchor_cos || !e->anchor_rows)
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", c->fp->path);
    for (uint32_t i = 0; i < k; i++) {
        const float *ri = c->anchor_full + (size_t)i * cols;
        for (uint32_t j = 0; j < e->anchor_c; j++)
            e->anchor_rows[(size_t)i * e->anchor_c + j] = ri[spaced(j, e->anchor_c, cols)];
        for (uint32_t j = i; j < k; j++) {
            const float *rj = c->anchor_full + (size_t)j * cols;
            double cs = pa_cosine(ri, rj, cols);
            float v = isfinite(cs) ? (float)cs : 0.0f;
            e->anchor_cos[(size_t)i * k + j] = v;
            e->anchor_cos[(size_t)j * k + i] = v;
        }
    }
    /* END: histogram of row norms over [min, max] */
    double lo = INFINITY, hi = -INFINITY;
    for (uint64_t r = 0; r < e->rows; r++) {
        double v = c->row_norms[r];
        if (!isfinite(v))
            continue;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    e->norm_min = isfinite(lo) ? lo : 0;
    e->norm_max = isfinite(hi) ? hi : 0;
    double cnt[PA_SK_END_BINS] = {0};
    double total = 0;
    for (uint64_t r = 0; r < e->rows; r++) {
        double v = c->row_norms[r];
        if (!isfinite(v))
            continue;
        int bin = hi > lo ? (int)((v - lo) / (hi - lo) * PA_SK_END_BINS) : 0;
        if (bin >= PA_SK_END_BINS)
            bin = PA_SK_END_BINS - 1;
        if (bin < 0)
            bin = 0;
        cnt[bin] += 1;
        total += 1;
    }
    for (int b = 0; b < PA_SK_END_BINS; b++)
        e->end_hist[b] = total > 0 ? (float)(cnt[b] / total) : 0;
    return PA_OK;
}

static int cmp_tensor_name(const void *x, const void *y)
{
    return strcmp(((const pa_tensor_fp *)x)->name, ((const pa_tensor_fp *)y)->name);
}

static int default_threads(const pa_fp_options *opt)
{
    int n = opt && opt->threads > 0 ? opt->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    if (n > 16)
        n = 16;
    return n;
}

static bool fp_decodable(const pa_tensor_fp *t)
{
    return t->ggml ? pa_gguf_type_supported(t->ggml_type) : pa_dtype_decodable(t->dtype);
}

static bool is_embed_candidate(const pa_tensor_fp *t)
{
    return strcmp(t->role, "embed.w") == 0 && t->ndim == 2;
}

/* One tensor-table row and its job. */
static bool add_tensor(pa_fingerprint *fp, job *j, const char *name, const tsrc *src)
{
    pa_tensor_fp *t = &fp->tensors[fp->n_tensors];
    t->name = strdup(name);
    t->role = t->name ? pa_role_of(t->name, &t->layer) : NULL;
    fp->n_tensors++;
    if (!t->name || !t->role)
        return false;
    t->ggml = src->ggml;
    t->dtype = src->ggml ? PA_DT_COUNT : (pa_dtype)src->type;
    t->ggml_type = src->ggml ? src->type : 0;
    t->ndim = src->ndim;
    memcpy(t->shape, src->shape, sizeof t->shape);
    t->numel = src->numel;
    j->kind = 1;
    j->bytes = src->nbytes;
    j->src = *src;
    return true;
}

/* ------------------------------------------------------------------ invariant products */

/* Read rows [row, row + n) of a tensor as floats (the embedding's probe rows, norm vectors). */
static bool read_rows(run_ctx *c, const tsrc *d, uint64_t row, uint64_t cols, float *out)
{
    size_t ue = d->ggml ? pa_gguf_block_elems(d->type) : 1;
    size_t ub = d->ggml ? pa_gguf_block_bytes(d->type) : pa_dtype_size((pa_dtype)d->type);
    if (!decodable(d) || !ue || !ub || cols % ue || cols > (1u << 20))
        return false;
    size_t nbytes = (size_t)(cols / ue * ub);
    uint64_t off = d->off + row * nbytes;
    if (row * nbytes + nbytes > d->nbytes)
        return false;
    uint8_t *raw = malloc(nbytes ? nbytes : 1);
    pa_error oerr = {0};
    int fd = raw ? pa_unit_open_file(c->unit, d->path, &oerr) : -1;
    bool ok = fd >= 0 && pa_pread_exact(fd, raw, nbytes, off) == 0;
    if (fd >= 0)
        close(fd);
    if (ok && d->ggml) {
        pa_error derr = {0};
        ok = pa_gguf_dequant(d->type, raw, nbytes, out, (size_t)cols, &derr) == PA_OK;
    } else if (ok) {
        pa_dtype_to_f32((pa_dtype)d->type, raw, out, (size_t)cols);
    }
    free(raw);
    for (uint64_t i = 0; ok && i < cols; i++)
        ok = isfinite(out[i]);
    return ok;
}

static const job *job_of(const run_ctx *c, size_t tensor)
{
    for (size_t i = 0; i < c->n_jobs; i++)
        if (c->jobs[i].kind == 1 && c->jobs[i].tensor == tensor)
            return &c->jobs[i];
    return NULL;
}

enum { PR_NONE, PR_Q, PR_K, PR_V, PR_QKV, PR_O, PR_UP, PR_DOWN, PR_N };

static int probe_role(const pa_tensor_fp *t)
{
    static const char *const roles[PR_N] = {"", "attn_q.w", "attn_k.w", "attn_v.w", "attn_qkv.w",
                                            "attn_o.w", "mlp_up.w", "mlp_down.w"};
    for (int r = 1; r < PR_N; r++)
        if (strcmp(t->role, roles[r]) == 0)
            return r;
    return PR_NONE;
}

/* Plan the products: pick the probe tokens and the sampled blocks, read the probe tokens'
 * embedding rows and the blocks' norm weights, and mark which tensors accumulate what. Any
 * failure only leaves the products out. */
static void plan_probe(run_ctx *c)
{
    pa_fingerprint *fp = c->fp;
    uint64_t h = fp->embed.cols;
    uint32_t m = min_u32(fp->embed.n_anchors, PA_SK_PROBE);
    const job *ej = job_of(c, c->embed_tensor);
    if (m < 4 || !ej || h < 8 || h > (1u << 16) || fp->n_layers == 0)
        return;
    uint32_t nl = min_u32(fp->n_layers, PA_SK_PROBE_LAYERS);
    float *x = calloc((size_t)h * PA_SK_PROBE, sizeof *x); /* m rows of h */
    c->probe_layer_of = malloc(fp->n_layers * sizeof *c->probe_layer_of);
    c->probe_xt = calloc((size_t)(2 * nl + 1) * h * PA_SK_PROBE, sizeof *c->probe_xt);
    c->probe_acc = calloc(fp->n_tensors ? fp->n_tensors : 1, sizeof *c->probe_acc);
    c->probe_mode = calloc(fp->n_tensors ? fp->n_tensors : 1, sizeof *c->probe_mode);
    c->probe_in = calloc(fp->n_tensors ? fp->n_tensors : 1, sizeof *c->probe_in);
    c->probe_len = calloc(fp->n_tensors ? fp->n_tensors : 1, sizeof *c->probe_len);
    bool ok = x && c->probe_layer_of && c->probe_xt && c->probe_acc && c->probe_mode &&
              c->probe_in && c->probe_len;
    for (uint32_t s = 0; ok && s < m; s++) {
        uint64_t row = UINT64_MAX;
        for (uint32_t i = 0; i < c->anchors.n; i++)
            if (c->anchors.slot[i] == s)
                row = c->anchors.row[i];
        ok = row != UINT64_MAX && read_rows(c, &ej->src, row, h, x + (size_t)s * h);
        fp->probe.hash[s] = fp->embed.anchor_hash[s];
    }
    /* LayerNorm models (norm biases) centre the stream before scaling it */
    bool centre = false;
    for (size_t i = 0; ok && i < fp->n_tensors; i++)
        centre |= strcmp(fp->tensors[i].role, "norm_attn.b") == 0;
    for (uint32_t s = 0; ok && s < m; s++) {
        float *r = x + (size_t)s * h;
        double mean = 0, ss = 0;
        for (uint64_t k = 0; centre && k < h; k++)
            mean += r[k];
        mean = centre ? mean / (double)h : 0;
        for (uint64_t k = 0; k < h; k++) {
            r[k] = (float)(r[k] - mean);
            ss += (double)r[k] * r[k];
        }
        double inv = ss > 0 ? sqrt((double)h / ss) : 0; /* unit root mean square, as RMSNorm */
        for (uint64_t k = 0; k < h; k++)
            r[k] = (float)(r[k] * inv);
    }
    if (ok) {
        /* plain (writers): transposed h x PA_SK_PROBE */
        for (uint32_t s = 0; s < m; s++)
            for (uint64_t k = 0; k < h; k++)
                c->probe_xt[k * PA_SK_PROBE + s] = x[(size_t)s * h + k];
        for (uint32_t l = 0; l < fp->n_layers; l++)
            c->probe_layer_of[l] = -1;
        for (uint32_t i = 0; i < nl; i++)
            c->probe_layer_of[spaced(i, nl, fp->n_layers)] = (int32_t)i;
        c->probe_nl = nl;
        c->probe_m = m;
    }
    /* per sampled block: rows times the attention and the MLP norm weights */
    for (uint32_t l = 0; ok && l < fp->n_layers; l++) {
        int32_t pl = c->probe_layer_of[l];
        if (pl < 0)
            continue;
        for (int which = 0; which < 2; which++) {
            float *xt = c->probe_xt + (size_t)(1 + 2 * pl + which) * h * PA_SK_PROBE;
            memcpy(xt, c->probe_xt, (size_t)h * PA_SK_PROBE * sizeof *xt);
            const char *want = which ? "norm_mlp.w" : "norm_attn.w";
            for (size_t i = 0; i < fp->n_tensors; i++) {
                const pa_tensor_fp *t = &fp->tensors[i];
                if (t->layer != (int32_t)l || t->numel != h || t->ndim != 1 || strcmp(t->role, want))
                    continue;
                const job *nj = job_of(c, i);
                float *g = malloc(h * sizeof *g);
                if (g && nj && read_rows(c, &nj->src, 0, h, g))
                    for (uint64_t k = 0; k < h; k++)
                        for (uint32_t s = 0; s < PA_SK_PROBE; s++)
                            xt[k * PA_SK_PROBE + s] *= g[k];
                free(g);
                break;
            }
        }
    }
    /* the first tensor (by name) of each role in a sampled block accumulates */
    for (size_t i = 0; ok && i < fp->n_tensors; i++) {
        const pa_tensor_fp *t = &fp->tensors[i];
        int role = probe_role(t);
        if (!role || t->layer < 0 || t->ndim != 2 || c->probe_layer_of[t->layer] < 0 ||
            !fp_decodable(t))
            continue;
        bool dup = false;
        for (size_t j = 0; j < i && !dup; j++)
            dup = c->probe_mode[j] && fp->tensors[j].layer == t->layer &&
                  probe_role(&fp->tensors[j]) == role;
        if (dup)
            continue;
        uint64_t rows = t->shape[0], cols = t->shape[1];
        bool conv1d = strstr(t->name, ".c_") != NULL; /* GPT-2 Conv1D stores [in, out] */
        bool writer = role == PR_O || role == PR_DOWN;
        /* contract over the axis that runs along the residual stream */
        int mode = (writer != conv1d) ? 2 : 1; /* 1: over columns, 2: over rows */
        uint64_t along = mode == 1 ? cols : rows, len = mode == 1 ? rows : cols;
        if (along != h || len > (1u << 18))
            continue;
        int32_t pl = c->probe_layer_of[t->layer];
        int which = writer ? -1 : (role == PR_UP ? 1 : 0);
        c->probe_in[i] = c->probe_xt + (size_t)(writer ? 0 : 1 + 2 * pl + which) * h * PA_SK_PROBE;
        c->probe_acc[i] = calloc((size_t)len * PA_SK_PROBE, sizeof(float));
        c->probe_len[i] = len;
        if (c->probe_acc[i])
            c->probe_mode[i] = (uint8_t)mode;
    }
    if (!ok)
        c->probe_m = 0;
    free(x);
}

/* out[s][u] = sum_d a[d][s] b[d][u] over d in [0, n) (PA_SK_PROBE-wide rows), into m x m. */
static void gram_add(const float *a, const float *b, uint64_t n, uint32_t m, double *out)
{
    for (uint64_t d = 0; d < n; d++)
        for (uint32_t s = 0; s < m; s++)
            for (uint32_t u = 0; u < m; u++)
                out[s * m + u] += (double)a[d * PA_SK_PROBE + s] * b[d * PA_SK_PROBE + u];
}

/* Grouped heads: query head h reads key/value head h / per. */
static void heads_add(const float *q, uint64_t qlen, const float *k, uint64_t klen, uint64_t hd,
                      uint32_t m, double *out)
{
    if (!hd || qlen % hd || klen % hd || !klen || qlen % klen)
        return;
    uint64_t per = qlen / klen;
    for (uint64_t head = 0; head < qlen / hd; head++)
        gram_add(q + head * hd * PA_SK_PROBE, k + (head / per) * hd * PA_SK_PROBE, hd, m, out);
}

static void finish_probe(run_ctx *c)
{
    pa_fingerprint *fp = c->fp;
    uint32_t m = c->probe_m, nl = c->probe_nl;
    if (!m)
        return;
    pa_probe_fp *p = &fp->probe;
    p->layer = calloc(nl, sizeof *p->layer);
    p->have = calloc(nl, sizeof *p->have);
    p->prod = calloc((size_t)nl * PA_PROBE_TERMS * m * m, sizeof *p->prod);
    double *acc = malloc((size_t)m * m * sizeof *acc);
    if (!p->layer || !p->have || !p->prod || !acc) {
        free(acc);
        return;
    }
    uint64_t h = fp->embed.cols, hd = 0;
    if (fp->has_mfi && fp->mfi.head_dim > 0 && fp->mfi.head_dim != PA_NULL_INT)
        hd = (uint64_t)fp->mfi.head_dim;
    else if (fp->has_mfi && fp->mfi.num_attention_heads > 0 &&
             fp->mfi.num_attention_heads != PA_NULL_INT)
        hd = h / (uint64_t)fp->mfi.num_attention_heads;
    for (uint32_t l = 0; l < fp->n_layers; l++) {
        int32_t pl = c->probe_layer_of[l];
        if (pl < 0)
            continue;
        p->layer[pl] = (int32_t)l;
        const float *acc_of[PR_N] = {0};
        uint64_t len_of[PR_N] = {0};
        for (size_t i = 0; i < fp->n_tensors; i++)
            if (c->probe_mode[i] && fp->tensors[i].layer == (int32_t)l) {
                int r = probe_role(&fp->tensors[i]);
                acc_of[r] = c->probe_acc[i];
                len_of[r] = c->probe_len[i];
            }
        if (acc_of[PR_QKV] && len_of[PR_QKV] == 3 * h) { /* fused q, k, v */
            acc_of[PR_Q] = acc_of[PR_QKV];
            acc_of[PR_K] = acc_of[PR_QKV] + h * PA_SK_PROBE;
            acc_of[PR_V] = acc_of[PR_QKV] + 2 * h * PA_SK_PROBE;
            len_of[PR_Q] = len_of[PR_K] = len_of[PR_V] = h;
        }
        const struct {
            int a, b;
        } terms[PA_PROBE_TERMS] = {{PR_Q, PR_K}, {PR_O, PR_V}, {PR_DOWN, PR_UP}};
        for (int t = 0; t < PA_PROBE_TERMS; t++) {
            const float *a = acc_of[terms[t].a], *b = acc_of[terms[t].b];
            uint64_t la = len_of[terms[t].a], lb = len_of[terms[t].b];
            if (!a || !b)
                continue;
            memset(acc, 0, (size_t)m * m * sizeof *acc);
            if (la == lb)
                gram_add(a, b, la, m, acc);
            else if (t < 2)
                heads_add(a, la, b, lb, hd, m, acc);
            else
                continue;
            float *dst = p->prod + ((size_t)pl * PA_PROBE_TERMS + t) * m * m;
            bool finite = true;
            for (size_t k = 0; k < (size_t)m * m; k++) {
                dst[k] = (float)acc[k];
                finite &= isfinite(dst[k]);
            }
            if (finite && (la == lb || hd))
                p->have[pl] |= (uint8_t)(1u << t);
        }
    }
    free(acc);
    p->m = m;
    p->n_layers = nl;
}

pa_status pa_stream_weights(pa_fingerprint *fp, pa_unit *u, const pa_tokenizer *tok,
                             const pa_fp_options *opt, pa_error *err)
{
    pa_status st = PA_OK;
    size_t nt = u->is_gguf ? u->gguf.n_tensors : 0;
    for (size_t s = 0; s < u->n_shards; s++)
        nt += u->shards[s].hdr.n_tensors;
    if (nt > PA_FP_MAX_TENSORS)
        return pa_error_set(err, PA_E_LIMIT, "%s: %zu tensors is over the limit of %u", u->path, nt,
                            PA_FP_MAX_TENSORS);
    fp->tensors = calloc(nt ? nt : 1, sizeof *fp->tensors);
    size_t nfile_jobs = (opt && (opt->flags & PA_FP_NO_FILE_SHA)) ? 0 : u->n_files;
    job *jobs = calloc(nt + nfile_jobs + 1, sizeof *jobs);
    run_ctx c;
    memset(&c, 0, sizeof c);
    if (!fp->tensors || !jobs) {
        free(jobs);
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", u->path);
    }
    /* tensor table (sorted by name below; a name in two shards is an error) */
    size_t k = 0;
    for (size_t s = 0; s < u->n_shards; s++)
        for (size_t i = 0; i < u->shards[s].hdr.n_tensors; i++) {
            const pa_tensor_desc *d = &u->shards[s].hdr.tensors[i];
            tsrc src = {.path = u->shards[s].path, .name = d->name,
                        .off = u->shards[s].hdr.data_offset + d->begin, .nbytes = d->end - d->begin,
                        .numel = d->numel, .ndim = d->ndim, .type = d->dtype};
            memcpy(src.shape, d->shape, sizeof src.shape);
            if (!add_tensor(fp, &jobs[nfile_jobs + k], d->name, &src)) {
                free(jobs);
                return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", u->path);
            }
            k++;
        }
    if (u->is_gguf) {
        const pa_gguf *g = &u->gguf;
        const char *arch = pa_gguf_kv_str(g, "general.architecture");
        int64_t heads = 0, kv_heads = 0;
        bool permuted = arch && pa_gguf_arch_permutes_qk(arch) &&
                        pa_gguf_arch_int(g, "attention.head_count", &heads) && heads > 0;
        if (permuted && !pa_gguf_arch_int(g, "attention.head_count_kv", &kv_heads))
            kv_heads = heads;
        for (size_t i = 0; i < g->n_tensors; i++) {
            const pa_gguf_tensor *gt = &g->tensors[i];
            tsrc src = {.path = u->path, .name = gt->name, .off = gt->offset, .nbytes = gt->nbytes,
                        .numel = gt->numel, .ndim = gt->ndim, .ggml = true, .type = gt->type};
            for (uint32_t dim = 0; dim < gt->ndim && dim < PA_MAX_DIMS; dim++)
                src.shape[dim] = gt->ne[gt->ndim - 1 - dim]; /* ne[0] is the row length */
            char *hf = pa_gguf_hf_name(gt->name);
            if (!hf || !add_tensor(fp, &jobs[nfile_jobs + k], hf, &src)) {
                free(hf);
                free(jobs);
                return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", u->path);
            }
            free(hf);
            /* undo llama.cpp's rotary row order of Q and K (weights; biases are 1-D) */
            const char *role = fp->tensors[k].role;
            if (permuted && gt->ndim == 2) {
                if (strcmp(role, "attn_q.w") == 0)
                    jobs[nfile_jobs + k].src.qk_heads = (uint32_t)heads;
                else if (strcmp(role, "attn_k.w") == 0)
                    jobs[nfile_jobs + k].src.qk_heads = (uint32_t)kv_heads;
            }
            k++;
        }
    }
    nt = k;
    /* sort tensors by name, carrying job origins along */
    {
        typedef struct {
            pa_tensor_fp t;
            job j;
        } pairt;
        pairt *tmp = malloc((nt ? nt : 1) * sizeof *tmp);
        if (!tmp) {
            free(jobs);
            return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", u->path);
        }
        for (size_t i = 0; i < nt; i++) {
            tmp[i].t = fp->tensors[i];
            tmp[i].j = jobs[nfile_jobs + i];
        }
        qsort(tmp, nt, sizeof *tmp, cmp_tensor_name); /* t is the first member */
        for (size_t i = 0; i < nt; i++) {
            fp->tensors[i] = tmp[i].t;
            jobs[nfile_jobs + i] = tmp[i].j;
            jobs[nfile_jobs + i].tensor = i;
        }
        free(tmp);
        for (size_t i = 1; i < nt; i++)
            if (strcmp(fp->tensors[i].name, fp->tensors[i - 1].name) == 0) {
                free(jobs);
                return pa_error_set(err, PA_E_FORMAT, "%s: tensor '%s' appears in two shards",
                                    u->path, fp->tensors[i].name);
            }
    }
    uint64_t total = 0;
    size_t nf = 0;
    for (size_t i = 0; i < nfile_jobs; i++) {
        if (fp->files[i].sha256[0])
            continue; /* known to the caller */
        jobs[nf].kind = 0;
        jobs[nf].file = i;
        jobs[nf].bytes = u->files[i].size;
        total += u->files[i].size;
        nf++;
    }
    /* close the gap left by known files */
    if (nf < nfile_jobs) {
        memmove(jobs + nf, jobs + nfile_jobs, nt * sizeof *jobs);
        nfile_jobs = nf;
    }
    for (size_t i = 0; i < nt; i++) {
        total += jobs[nfile_jobs + i].bytes;
        fp->n_params += fp->tensors[i].numel;
        fp->weight_bytes += jobs[nfile_jobs + i].bytes;
        if (fp->tensors[i].layer >= 0 && (uint32_t)fp->tensors[i].layer + 1 > fp->n_layers)
            fp->n_layers = (uint32_t)fp->tensors[i].layer + 1;
    }
    qsort(jobs, nt + nfile_jobs, sizeof *jobs, cmp_job);

    c.unit = u;
    c.fp = fp;
    c.opt = opt;
    c.jobs = jobs;
    c.n_jobs = nt + nfile_jobs;
    c.total_bytes = total;
    /* read buffers as large as the largest job, at least 64 KiB (a file that grows while it is
     * read is not read in tiny pieces) */
    uint64_t most = 64u << 10;
    for (size_t i = 0; i < c.n_jobs; i++)
        most = jobs[i].bytes > most ? jobs[i].bytes : most;
    c.chunk = most < CHUNK_BYTES ? (size_t)most : CHUNK_BYTES;
    c.lane_chunk = most < LANE_BYTES ? (size_t)most : LANE_BYTES;
    c.err = err;
    c.embed_tensor = SIZE_MAX;
    pthread_mutex_init(&c.lock, NULL);
    /* the embedding: by role, else the largest 2-D tensor whose rows match the vocabulary */
    for (size_t i = 0; i < nt; i++)
        if (is_embed_candidate(&fp->tensors[i]) && fp_decodable(&fp->tensors[i])) {
            c.embed_tensor = i;
            break;
        }
    if (c.embed_tensor == SIZE_MAX && fp->has_mfi && fp->mfi.vocab_size > 0)
        for (size_t i = 0; i < nt; i++)
            if (fp->tensors[i].ndim == 2 && fp->tensors[i].shape[0] == (uint64_t)fp->mfi.vocab_size &&
                fp_decodable(&fp->tensors[i])) {
                c.embed_tensor = i;
                break;
            }
    if (c.embed_tensor != SIZE_MAX) {
        pa_tensor_fp *et = &fp->tensors[c.embed_tensor];
        fp->embed.present = true;
        fp->embed.tensor = strdup(et->name);
        fp->embed.rows = et->shape[0];
        fp->embed.cols = et->numel / (et->shape[0] ? et->shape[0] : 1);
        if (!fp->embed.tensor)
            st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", u->path);
        if (!st)
            st = plan_anchors(&c, tok, err);
        if (!st)
            plan_probe(&c);
    }
    if (!st && default_threads(opt) == 1 && pa_sha2x_available()) {
        run_serial_fused(&c);
        if (err->status)
            st = err->status;
        else if (opt && opt->cancel && *opt->cancel)
            st = pa_error_set(err, PA_E_CANCELLED, "%s: cancelled", u->path);
    } else if (!st) {
        int nthreads = default_threads(opt);
        if ((size_t)nthreads > c.n_jobs)
            nthreads = c.n_jobs ? (int)c.n_jobs : 1;
        pthread_t th[16];
        int started = 0;
        for (int i = 1; i < nthreads; i++)
            if (pthread_create(&th[started], NULL, worker, &c) == 0)
                started++;
        worker(&c);
        for (int i = 0; i < started; i++)
            pthread_join(th[i], NULL);
        if (err->status)
            st = err->status;
        else if (opt && opt->cancel && *opt->cancel)
            st = pa_error_set(err, PA_E_CANCELLED, "%s: cancelled", u->path);
    }
    if (!st) {
        for (size_t i = 0; i < nt; i++)
            if (fp->tensors[i].n_nonfinite) {
                st = pa_error_set(err, PA_E_FORMAT, "%s: tensor '%s' has %llu NaN/Inf values",
                                  u->path, fp->tensors[i].name,
                                  (unsigned long long)fp->tensors[i].n_nonfinite);
                break;
            }
    }
    if (!st && fp->embed.present)
        st = finish_embed(&c, err);
    if (!st)
        finish_probe(&c);
    for (size_t i = 0; c.probe_acc && i < nt; i++)
        free(c.probe_acc[i]);
    free(c.probe_acc);
    free(c.probe_in);
    free(c.probe_len);
    free(c.probe_mode);
    free(c.probe_xt);
    free(c.probe_layer_of);
    pthread_mutex_destroy(&c.lock);
    free(c.anchor_full);
    free(c.row_norms);
    free(jobs);
    fp->has_weights = !st && nt > 0;
    return st;
}

