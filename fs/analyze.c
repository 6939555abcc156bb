/* The analysis worker and mount-time reconciliation. */
#include "analyze.h"
#include "fpcache.h"
#include "worker.h"

#include "jsonutil.h"
#include "lsh.h"
#include "provfs/analyzer.h"
#include "refdb.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

struct analyze_ctx {
    char *backing;    /* immutable */
    int backing_fd;   /* O_PATH of BACKING; immutable */
    store_handle *st; /* immutable, thread-safe */
    queue *q;         /* set once before the first job */
    int fp_threads;   /* immutable */
    pa_refdb *refdb;  /* set once before the first job (analyze_load_refdb); read-only after */
    bool use_worker;  /* set once before the first job (analyze_set_worker) */
    worker_cfg worker;
    /* Serialises the compare-and-link step so two models analysed at once still see each other.
     * Lock order: lineage_lock, then the queue's lock, then the store's locks. */
    pthread_mutex_t lineage_lock;
    fpcache *cache;    /* parsed stored fingerprints (fpcache.h); protected by lineage_lock */
    size_t retrieve_k; /* candidates from the index (0: compare with every model of the shape) */
    /* On a shared database (analyze_set_shared): this daemon's name in claims ("" when not
     * shared) and how long a claim lasts without renewal. Set once before the first job. */
    char owner[160];
    int64_t lease_ns;
};

analyze_ctx *analyze_create(const char *backing_abs, store_handle *st, int fp_threads)
{
    analyze_ctx *an = calloc(1, sizeof *an);
    if (!an)
        return NULL;
    an->backing = strdup(backing_abs);
    an->backing_fd = open(backing_abs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (!an->backing || an->backing_fd < 0) {
        if (an->backing_fd >= 0)
            close(an->backing_fd);
        free(an->backing);
        free(an);
        return NULL;
    }
    an->st = st;
    an->fp_threads = fp_threads;
    an->retrieve_k = ANALYZE_RETRIEVE_K;
    an->cache = fpcache_create((size_t)ANALYZE_FP_CACHE_MB << 20);
    if (!an->cache) {
        close(an->backing_fd);
        free(an->backing);
        free(an);
        return NULL;
    }
    pthread_mutex_init(&an->lineage_lock, NULL);
    return an;
}

void analyze_set_queue(analyze_ctx *an, queue *q)
{
    an->q = q;
}

void analyze_set_worker(analyze_ctx *an, const worker_cfg *cfg)
{
    an->use_worker = cfg != NULL;
    if (cfg) {
        an->worker = *cfg;
        an->worker.threads = an->fp_threads;
    }
}

int analyze_set_fp_cache(analyze_ctx *an, size_t bytes)
{
    fpcache *c = fpcache_create(bytes);
    if (!c)
        return -1;
    pthread_mutex_lock(&an->lineage_lock);
    fpcache_destroy(an->cache);
    an->cache = c;
    pthread_mutex_unlock(&an->lineage_lock);
    return 0;
}

void analyze_set_retrieval(analyze_ctx *an, size_t k)
{
    pthread_mutex_lock(&an->lineage_lock);
    an->retrieve_k = k;
    pthread_mutex_unlock(&an->lineage_lock);
}

void analyze_fp_cache_stats(analyze_ctx *an, size_t *bytes, size_t *count, size_t *evictions)
{
    pthread_mutex_lock(&an->lineage_lock);
    *bytes = fpcache_bytes(an->cache);
    *count = fpcache_count(an->cache);
    *evictions = fpcache_evictions(an->cache);
    pthread_mutex_unlock(&an->lineage_lock);
}

void analyze_destroy(analyze_ctx *an)
{
    if (!an)
        return;
    fpcache_destroy(an->cache);
    pa_refdb_free(an->refdb);
    pthread_mutex_destroy(&an->lineage_lock);
    close(an->backing_fd);
    free(an->backing);
    free(an);
}

int analyze_load_refdb(analyze_ctx *an, const char *dir, size_t *n_entries, char *err,
                       size_t errlen)
{
    pa_error e = {0};
    pa_refdb *db = NULL;
    if (pa_refdb_load(dir, &db, &e) != PA_OK) {
        snprintf(err, errlen, "%s", e.msg[0] ? e.msg : pa_status_name(e.status));
        return -1;
    }
    pa_refdb_free(an->refdb);
    an->refdb = db;
    *n_entries = pa_refdb_count(db);
    return 0;
}

/* BACKING path of a mount-relative path; caller frees. */
static char *backing_path(const analyze_ctx *an, const char *rel)
{
    size_t blen = strlen(an->backing), rlen = strlen(rel);
    if (strcmp(rel, "/") == 0)
        rlen = 0;
    if (strcmp(an->backing, "/") == 0)
        blen = 0;
    char *abs = malloc(blen + rlen + 2);
    if (!abs)
        return NULL;
    memcpy(abs, an->backing, blen);
    memcpy(abs + blen, rel, rlen);
    abs[blen + rlen] = '\0';
    if (blen + rlen == 0) {
        abs[0] = '/';
        abs[1] = '\0';
    }
    return abs;
}

/* Opens the BACKING path abs (from backing_path) beneath BACKING without following any symlink:
 * the daemon names units by their real paths, so a symlink on the way was put there by a user
 * and is never followed as root. -1 with errno set. */
static int backing_open(const analyze_ctx *an, const char *abs, int flags)
{
    size_t blen = strcmp(an->backing, "/") == 0 ? 0 : strlen(an->backing);
    if (strncmp(abs, an->backing, blen) != 0 || (abs[blen] != '/' && abs[blen] != '\0')) {
        errno = EXDEV;
        return -1;
    }
    const char *rel = abs + blen;
    while (*rel == '/')
        rel++;
    struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC),
                           .resolve =
                               RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
    return (int)syscall(SYS_openat2, an->backing_fd, *rel ? rel : ".", &how, sizeof how);
}

/* lstat of a BACKING path through backing_open: 0 or -1. */
static int backing_stat(const analyze_ctx *an, const char *abs, struct stat *sb)
{
    int fd = backing_open(an, abs, O_PATH | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    int rc = fstat(fd, sb);
    close(fd);
    return rc;
}

static bool has_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), s = strlen(suffix);
    return n > s && strcmp(name + n - s, suffix) == 0;
}

/* The common answer without opening the directory: neither config.json nor
 * adapter_config.json there (0, or -1 when rel is no directory); 1: look further. */
static int unit_quick_no(int dirfd, const char *rel)
{
    bool here = strcmp(rel, ".") == 0;
    char path[PATH_MAX];
    struct stat sb;
    static const char *const names[] = {"config.json", "adapter_config.json"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *p = names[i];
        if (!here) {
            if (snprintf(path, sizeof path, "%s/%s", rel, names[i]) >= (int)sizeof path)
                return 1;
            p = path;
        }
        if (fstatat(dirfd, p, &sb, 0) == 0 || errno != ENOENT)
            return 1;
    }
    if (here)
        return 0;
    return fstatat(dirfd, rel, &sb, 0) == 0 && S_ISDIR(sb.st_mode) ? 0 : -1;
}

int analyze_unit_check(int dirfd, const char *rel)
{
    int quick = unit_quick_no(dirfd, rel);
    if (quick <= 0)
        return quick;
    int fd = openat(dirfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat sb;
    int ret = 0;
    if (fstatat(fd, "config.json", &sb, 0) != 0 || !S_ISREG(sb.st_mode)) {
        /* a PEFT adapter: adapter_config.json and its weights, no config.json */
        ret = fstatat(fd, "adapter_config.json", &sb, 0) == 0 && S_ISREG(sb.st_mode) &&
              ((fstatat(fd, "adapter_model.safetensors", &sb, 0) == 0 && S_ISREG(sb.st_mode)) ||
               (fstatat(fd, "adapter_model.bin", &sb, 0) == 0 && S_ISREG(sb.st_mode)));
        goto out;
    }
    if (fstatat(fd, "model.safetensors.index.json", &sb, 0) == 0) {
        ret = 1;
        goto out;
    }
    DIR *dir = fdopendir(fd);
    if (!dir)
        goto out;
    fd = -1;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (pa_unit_weights_name(de->d_name)) {
            ret = 1;
            break;
        }
    }
    closedir(dir);
out:
    if (fd >= 0)
        close(fd);
    return ret;
}

static bool has_gguf_magic(int fd)
{
    char magic[4];
    return pread(fd, magic, sizeof magic, 0) == (ssize_t)sizeof magic &&
           memcmp(magic, "GGUF", 4) == 0;
}

/* Is name, in the directory unit dirfd, a single-file variant (model.fp16.safetensors) that the
 * unit does not load (pa_weights_variant_unit)? Such a file is a model of its own: fingerprinted,
 * linked (normally to the directory unit) and gated by itself, besides being in the directory's
 * digest. */
static bool variant_file_unit(int dirfd, const char *name)
{
    const char *v;
    if (pa_weights_name(name, &v, NULL) != PA_WN_SINGLE || !v)
        return false;
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dir) {
        if (fd >= 0)
            close(fd);
        return false;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    bool ok = true;
    struct dirent *de;
    while (ok && (de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **grown = ncap <= 16384 ? realloc(names, ncap * sizeof *names) : NULL;
            if (!grown) {
                ok = false;
                break;
            }
            names = grown;
            cap = ncap;
        }
        if (!(names[n] = strdup(de->d_name))) {
            ok = false;
            break;
        }
        n++;
    }
    closedir(dir);
    bool unit = ok && pa_weights_variant_unit((const char *const *)names, n, name);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return unit;
}

/* Is the regular file open on fd (named name, in the directory dirfd) a unit of its own? A GGUF
 * file (magic or name) wherever it is; any other model format (its first bytes, or its suffix)
 * when its directory is not a directory unit: weights never lie loose and ungated. */
/* What the first bytes and the name of the file on fd say: 1 a GGUF file unit, 0 no file unit,
 * -1 it depends on its directory (a loose weights file: file_unit_in). */
static int file_unit_head(int fd, const char *name)
{
    uint8_t head[PA_SNIFF_BYTES];
    ssize_t n = pread(fd, head, sizeof head, 0);
    const char *format = n > 0 ? pa_sniff_format(head, (size_t)n) : NULL;
    if ((format && strcmp(format, "gguf") == 0) || has_suffix(name, ".gguf"))
        return 1;
    if (!format && !pa_model_suffix(name))
        return 0;
    return -1;
}

/* A weights file is a unit of its own outside a directory unit, or as a variant file. */
static bool file_unit_in(int dirfd, const char *name)
{
    return analyze_unit_check(dirfd, ".") != 1 || variant_file_unit(dirfd, name);
}

static bool file_unit_fd(int fd, const char *name, int dirfd)
{
    int head = file_unit_head(fd, name);
    return head >= 0 ? head == 1 : file_unit_in(dirfd, name);
}

int analyze_file_unit_check(int dirfd, const char *rel)
{
    int fd = openat(dirfd, rel, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat sb;
    int ret = -1;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
        const char *base = strrchr(rel, '/');
        const char *name = base ? base + 1 : rel;
        /* The directory is opened only when the bytes and name leave it open (most files: not) */
        ret = file_unit_head(fd, name);
        if (ret < 0) {
            int parent;
            if (base) {
                char *dir = strndup(rel, (size_t)(base - rel));
                parent =
                    dir ? openat(dirfd, base == rel ? "/" : dir, O_PATH | O_DIRECTORY | O_CLOEXEC)
                        : -1;
                free(dir);
            } else {
                parent =
                    dirfd == AT_FDCWD ? open(".", O_PATH | O_DIRECTORY | O_CLOEXEC) : dup(dirfd);
            }
            ret = parent >= 0 && file_unit_in(parent, name);
            if (parent >= 0)
                close(parent);
        }
    }
    close(fd);
    return ret;
}

typedef enum unit_kind { UNIT_GONE = -1, UNIT_NONE = 0, UNIT_DIR = 1, UNIT_FILE = 2 } unit_kind;

/* What BACKING path abs is now: a directory unit, a GGUF file unit, neither, or gone. */
static unit_kind unit_kind_of(const analyze_ctx *an, const char *abs)
{
    int fd = backing_open(an, abs, O_PATH | O_NOFOLLOW);
    struct stat sb;
    if (fd < 0)
        return UNIT_GONE;
    unit_kind kind = UNIT_NONE;
    if (fstat(fd, &sb) != 0) {
        kind = UNIT_GONE;
    } else if (S_ISDIR(sb.st_mode)) {
        int rc = analyze_unit_check(fd, ".");
        kind = rc < 0 ? UNIT_GONE : rc ? UNIT_DIR : UNIT_NONE;
    } else if (S_ISREG(sb.st_mode)) {
        const char *slash = strrchr(abs, '/');
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        int rfd = open(proc, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        char *dir = slash ? strndup(abs, slash == abs ? 1 : (size_t)(slash - abs)) : NULL;
        int dfd = dir ? backing_open(an, dir, O_PATH | O_DIRECTORY) : -1;
        if (rfd >= 0 && dfd >= 0 && file_unit_fd(rfd, slash + 1, dfd))
            kind = UNIT_FILE;
        free(dir);
        if (dfd >= 0)
            close(dfd);
        if (rfd >= 0)
            close(rfd);
    }
    close(fd);
    return kind;
}

static bool file_has_gguf_magic(const analyze_ctx *an, const char *abs)
{
    int fd = backing_open(an, abs, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return false;
    struct stat sb;
    bool ok = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && has_gguf_magic(fd);
    close(fd);
    return ok;
}

/* Replaces BACKING in an analyzer message with the mount-relative form. */
static void relative_message(const analyze_ctx *an, const char *msg, char *out, size_t outlen)
{
    size_t blen = strlen(an->backing);
    size_t o = 0;
    for (const char *p = msg; *p && o + 1 < outlen;) {
        if (blen > 1 && strncmp(p, an->backing, blen) == 0) {
            p += blen;
            continue;
        }
        out[o++] = *p == '\n' ? ' ' : *p;
        p++;
    }
    out[o] = '\0';
}

static void fill_keys(const pa_fingerprint *fp, store_keys *keys)
{
    memset(keys, 0, sizeof *keys);
    keys->hidden_size = keys->num_layers = keys->vocab_size = PA_NULL_INT;
    const pa_mfi *mfi = pa_fp_mfi(fp);
    if (mfi) {
        keys->hidden_size = mfi->hidden_size;
        keys->num_layers = mfi->num_hidden_layers;
        keys->vocab_size = mfi->vocab_size;
        snprintf(keys->arch_hash, sizeof keys->arch_hash, "%s", mfi->arch_hash);
        snprintf(keys->family_hash, sizeof keys->family_hash, "%s", mfi->family_hash);
    }
    /* Without config.json (a lone weights file): the shape its embedding has, so the candidate
     * prefilter still finds the models of that shape. Only a prefilter: weights decide. */
    uint64_t vocab, hidden;
    if ((keys->hidden_size == PA_NULL_INT || keys->vocab_size == PA_NULL_INT) &&
        pa_fp_embed_shape(fp, &vocab, &hidden) && vocab <= INT64_MAX && hidden <= INT64_MAX) {
        if (keys->hidden_size == PA_NULL_INT)
            keys->hidden_size = (int64_t)hidden;
        if (keys->vocab_size == PA_NULL_INT)
            keys->vocab_size = (int64_t)vocab;
    }
    keys->n_params = pa_fp_n_params(fp);
    keys->n_tensors = pa_fp_n_tensors(fp);
}

/* ---------------------------------------------------------------- lineage */

typedef struct link_work {
    analyze_ctx *an;
    int64_t self_id;
    int64_t self_created;
    const pa_fingerprint *self_fp;
    store_edge *edges;
    char **signals; /* owned JSON per edge, two per edge (parent as a, child as a) */
    size_t n_edges, cap;
    size_t compared;
    int64_t *seen; /* models compared (the retrieval path) */
    size_t n_seen, cap_seen;
} link_work;

/* The fingerprint of stored model id through the cache, parsed from json when not cached. The
 * pointer stays valid until the next fpcache_trim (the callers trim when they hold none). */
static const pa_fingerprint *cached_fp(analyze_ctx *an, int64_t id, const char *digest,
                                       const void *bin, size_t len)
{
    const pa_fingerprint *hit = fpcache_get(an->cache, id, digest);
    if (hit)
        return hit;
    if (!bin)
        return NULL;
    pa_fingerprint *fp = NULL;
    pa_error err = {0};
    if (pa_fp_from_bin(bin, len, "stored fingerprint", &fp, &err) != PA_OK) {
        fprintf(stderr, "provfs: model %llx: %s\n", (unsigned long long)id, err.msg);
        return NULL;
    }
    return fpcache_put(an->cache, id, digest, fp, fpcache_size_of(fp));
}

/* The stored model's fingerprint, through the cache. Called with lineage_lock held. */
static const pa_fingerprint *model_fp(analyze_ctx *an, int64_t id)
{
    store_model m;
    if (store_model_by_id(an->st, id, &m) != 0)
        return NULL;
    const pa_fingerprint *fp = cached_fp(an, id, m.digest, NULL, 0);
    pa_fingerprint *read = NULL;
    if (!fp && store_fingerprint_fp(an->st, id, &read) == 0)
        fp = fpcache_put(an->cache, id, m.digest, read, fpcache_size_of(read));
    store_model_clear(&m);
    return fp;
}

static int link_compare(link_work *w, int64_t id, int64_t created_ns, const char *digest,
                        const void *bin, size_t len)
{
    if (!bin)
        return 0;
    const pa_fingerprint *other = cached_fp(w->an, id, digest, bin, len);
    if (!other)
        return 0;
    /* Edges are stored from the model first seen to the later one; orient() may turn them. */
    bool other_first =
        created_ns < w->self_created || (created_ns == w->self_created && id < w->self_id);
    const pa_fingerprint *a = other_first ? other : w->self_fp;
    const pa_fingerprint *b = other_first ? w->self_fp : other;
    pa_compare_result r;
    memset(&r, 0, sizeof r);
    pa_compare(a, b, &r);
    w->compared++;
    if (r.verdict != PA_V_DERIVED && r.verdict != PA_V_IDENTICAL)
        return 0;
    if (w->n_edges == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 8;
        store_edge *edges = realloc(w->edges, cap * sizeof *edges);
        if (!edges)
            return 1;
        w->edges = edges;
        char **signals = realloc(w->signals, 2 * cap * sizeof *signals);
        if (!signals)
            return 1;
        w->signals = signals;
        w->cap = cap;
    }
    char *sig = pa_compare_to_json(&r, "parent", "child", false);
    /* the other way round too: which of two related models is the parent is decided later,
     * with the whole family in view (orient) */
    pa_compare_result rr;
    memset(&rr, 0, sizeof rr);
    pa_compare(b, a, &rr);
    w->compared++;
    char *rev = pa_compare_to_json(&rr, "parent", "child", false);
    w->signals[2 * w->n_edges] = sig;
    w->signals[2 * w->n_edges + 1] = rev;
    w->edges[w->n_edges] = (store_edge){
        .parent_id = other_first ? id : w->self_id,
        .child_id = other_first ? w->self_id : id,
        .score = r.score,
        .verdict = pa_verdict_name(r.verdict),
        .signals = sig,
        .rank = pa_parent_rank(&r, a), /* the analyzer's ranking rule (score.c) */
        .signals_rev = rev,
    };
    w->n_edges++;
    return 0;
}

static int link_candidate(void *ctx, int64_t id, int64_t created_ns, const char *digest,
                          const void *bin, size_t len)
{
    link_work *w = ctx;
    if (w->n_seen == w->cap_seen) {
        size_t cap = w->cap_seen ? w->cap_seen * 2 : 64;
        int64_t *grown = realloc(w->seen, cap * sizeof *grown);
        if (!grown)
            return 1;
        w->seen = grown;
        w->cap_seen = cap;
    }
    w->seen[w->n_seen++] = id;
    int ret = link_compare(w, id, created_ns, digest, bin, len);
    fpcache_trim(w->an->cache); /* no cached fingerprint is held past here */
    return ret;
}

/* ---------------------------------------------------------------- parents of a family
 *
 * After every analysis the daemon decides the parents of every model in the new model's family
 * (the models linked to it by derived/identical edges, directly or not), from the stored
 * comparisons in both directions, so the result depends on the models and not on the order they
 * were stored in:
 *
 *  1. Several parents by parts (a layer stitch, tensors taken from a second model): a model that
 *     no single relative explains to within PA_UNKNOWN_ORIGIN_SHARE, but whose relatives, taken
 *     best-ranked first (pa_parent_rank), each add >= PARENT_MIN_SHARE of its parameters that
 *     the ones before did not explain (pa_parent_shares), has those relatives as parents.
 *     PARENT_MIN_SHARE is PA_UNKNOWN_ORIGIN_SHARE, 10 %: a part that large left unexplained
 *     would make the model of unknown origin (the policy's rule), so a relative that explains
 *     it is a parent, not a footnote; below it the overlap is what any relative shares (norms,
 *     a tied embedding) and says nothing of descent.
 *  2. Several parents by averaging (a weight soup, a merge): a model lying on the segment
 *     between two related models P and Q in weight space, d(P,X) + d(X,Q) <= MERGE_SLACK x
 *     d(P,Q), off that line by less than half what a copy of one of them would be, with no
 *     other relative nearer to it by more than MERGE_NEAREST (a soup of two fine-tunes of one
 *     base is as far from that base, |δ1 + δ2| / 2, as from each parent, |δ1 - δ2| / 2: which
 *     of them measures nearer is chance), is their merge; each parent's share is
 *     its interpolation weight, the nearer parent's the larger (at least PARENT_MIN_SHARE
 *     each). Independent drifts are orthogonal, so a fine-tune of P sits at ~1.41 d(P,Q)
 *     from the pair, the base of P and Q at ~1.41 too: only an average sits near 1.
 *  3. Everyone else has one parent: the family's minimum spanning tree by weight distance
 *     (a fine-tune is |δ| from its parent, ~√2|δ| from a sibling, a quantised copy nearest its
 *     source), where a part of either model that the other does not explain counts as
 *     unrelated, distance 1 (a pruned model is as near a fine-tune of its base as the base is
 *     on the layers it kept, not on the ones it lost), and where quantised models join last,
 *     each as a leaf of its nearest unquantised relative. The tree is rooted at its base: a model
 * with three or more unquantised branches (the hub of a family of fine-tunes: siblings are nearer
 * their base than each other) — the one with the most, then the one nearest the rest of the tree
 * (sum of tree distances), then the first stored — else the first stored unquantised model (with
 * fewer branches a base and the middle of a chain look alike, and arrival order decides). A
 * quantised model (pa_fp_quantized) is never a root while an unquantised one is there. Families
 * above ORIENT_MAX models or ORIENT_MAX_PAIRS related pairs keep the best-ranked incoming edge
 * (store_set_edges): the step re-reads the family's comparisons on every analysis. */

#define PARENT_MIN_SHARE PA_UNKNOWN_ORIGIN_SHARE
#define MERGE_SLACK 1.15
#define MERGE_NEAREST 0.9
#define ORIENT_MAX 128        /* models in a family */
#define ORIENT_MAX_PAIRS 2048 /* related pairs (each parsed both ways on every analysis) */

typedef struct ojson {
    char *text; /* compare JSON, a = the parent side */
    bool owned;
    double score, rank, distance, explained;
    char verdict[16];
} ojson;

typedef struct opair {
    int i, j;    /* node indices, i < j */
    ojson ij;    /* i as parent of j */
    ojson ji;    /* j as parent of i */
    double dist; /* weight distance, NaN when unknown */
    double w;    /* tree weight: dist over the parts each explains of the other, 1 elsewhere */
} opair;

typedef struct onode {
    int64_t id, created;
    bool quant;
    int kind;     /* 0 tree, 1 several parents by parts, 2 merge */
    int parent;   /* tree parent (node index), -1 for a root */
    int tree_deg; /* unquantised tree neighbours */
} onode;

typedef struct ofamily {
    onode *nodes;
    size_t n, cap;
    opair *pairs;
    size_t n_pairs, cap_pairs;
    int *pair_of; /* n x n: pair index or -1 */
} ofamily;

static double json_num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void ojson_parse(ojson *j)
{
    cJSON *o = j->text ? cJSON_Parse(j->text) : NULL;
    j->score = json_num(o, "score");
    j->rank = json_num(o, "rank");
    j->distance = json_num(o, "distance");
    j->explained = json_num(o, "explained_share");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "verdict");
    snprintf(j->verdict, sizeof j->verdict, "%s", cJSON_IsString(v) ? v->valuestring : "none");
    if (!isfinite(j->rank))
        j->rank = -1;
    cJSON_Delete(o);
}

static int family_node(ofamily *f, int64_t id, int64_t created)
{
    for (size_t i = 0; i < f->n; i++)
        if (f->nodes[i].id == id)
            return (int)i;
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        onode *grown = realloc(f->nodes, cap * sizeof *grown);
        if (!grown)
            return -1;
        f->nodes = grown;
        f->cap = cap;
    }
    f->nodes[f->n] = (onode){.id = id, .created = created, .parent = -1};
    return (int)f->n++;
}

static void family_free(ofamily *f)
{
    for (size_t k = 0; k < f->n_pairs; k++) {
        if (f->pairs[k].ij.owned)
            free(f->pairs[k].ij.text);
        if (f->pairs[k].ji.owned)
            free(f->pairs[k].ji.text);
    }
    free(f->pairs);
    free(f->nodes);
    free(f->pair_of);
}

/* The family of start (BFS over stored edges). 0, 1 when larger than ORIENT_MAX models or
 * ORIENT_MAX_PAIRS pairs, -1 on error. */
static int family_load(analyze_ctx *an, int64_t start, ofamily *f)
{
    store_model m;
    if (store_model_by_id(an->st, start, &m) != 0)
        return -1;
    int64_t created = m.created_ns;
    store_model_clear(&m);
    if (family_node(f, start, created) < 0)
        return -1;
    for (size_t q = 0; q < f->n; q++) {
        store_rel *rels = NULL;
        size_t n = 0;
        if (store_related(an->st, f->nodes[q].id, &rels, &n) != 0)
            return -1;
        for (size_t k = 0; k < n; k++) {
            store_rel *r = &rels[k];
            /* a PEFT adapter's edge is a checked declaration, not a weight comparison: the
             * adapter stays out of its base's family, its parent is decided by link_adapter */
            if (strcmp(r->verdict, "adapter") == 0)
                continue;
            int pi = family_node(f, r->parent_id, r->parent_created_ns);
            int ci = family_node(f, r->child_id, r->child_created_ns);
            if (pi < 0 || ci < 0 || f->n > ORIENT_MAX) {
                store_rels_free(rels, n);
                return pi < 0 || ci < 0 ? -1 : 1;
            }
            if ((size_t)pi != q && (size_t)ci != q)
                continue;
            /* each pair once: when met from its node of lower index */
            int other = (size_t)pi == q ? ci : pi;
            if ((size_t)other < q)
                continue;
            if (f->n_pairs >= ORIENT_MAX_PAIRS) {
                store_rels_free(rels, n);
                return 1;
            }
            if (f->n_pairs == f->cap_pairs) {
                size_t cap = f->cap_pairs ? f->cap_pairs * 2 : 16;
                opair *grown = realloc(f->pairs, cap * sizeof *grown);
                if (!grown) {
                    store_rels_free(rels, n);
                    return -1;
                }
                f->pairs = grown;
                f->cap_pairs = cap;
            }
            opair *p = &f->pairs[f->n_pairs++];
            memset(p, 0, sizeof *p);
            p->i = pi < ci ? pi : ci;
            p->j = pi < ci ? ci : pi;
            ojson *fwd = pi < ci ? &p->ij : &p->ji; /* the stored direction */
            ojson *bwd = pi < ci ? &p->ji : &p->ij;
            fwd->text = r->signals;
            bwd->text = r->rev_signals;
            fwd->owned = bwd->owned = true;
            r->signals = r->rev_signals = NULL;
        }
        store_rels_free(rels, n);
    }
    f->pair_of = malloc(f->n * f->n * sizeof *f->pair_of);
    if (!f->pair_of)
        return -1;
    for (size_t k = 0; k < f->n * f->n; k++)
        f->pair_of[k] = -1;
    for (size_t k = 0; k < f->n_pairs; k++) {
        opair *p = &f->pairs[k];
        f->pair_of[p->i * f->n + p->j] = f->pair_of[p->j * f->n + p->i] = (int)k;
    }
    for (size_t i = 0; i < f->n; i++) {
        const pa_fingerprint *fp = model_fp(an, f->nodes[i].id);
        f->nodes[i].quant = fp && pa_fp_quantized(fp);
        fpcache_trim(an->cache);
    }
    for (size_t k = 0; k < f->n_pairs; k++) {
        opair *p = &f->pairs[k];
        /* a direction not kept (a store from before both were) is compared now */
        for (int dir = 0; dir < 2; dir++) {
            ojson *j = dir ? &p->ji : &p->ij;
            if (j->text)
                continue;
            const pa_fingerprint *a = model_fp(an, f->nodes[dir ? p->j : p->i].id);
            const pa_fingerprint *b = model_fp(an, f->nodes[dir ? p->i : p->j].id);
            if (!a || !b)
                continue;
            pa_compare_result r;
            pa_compare(a, b, &r);
            j->text = pa_compare_to_json(&r, "parent", "child", false);
            fpcache_trim(an->cache);
        }
        ojson_parse(&p->ij);
        ojson_parse(&p->ji);
        p->dist = isfinite(p->ij.distance) ? p->ij.distance : p->ji.distance;
        double e = fmin(isfinite(p->ij.explained) ? p->ij.explained : 0,
                        isfinite(p->ji.explained) ? p->ji.explained : 0);
        e = e < 0 ? 0 : e > 1 ? 1 : e;
        p->w = isfinite(p->dist) ? p->dist * e + (1 - e) : NAN;
    }
    return 0;
}

/* The comparison with parent as a and child as b, or NULL. */
static ojson *pair_json(ofamily *f, int parent, int child)
{
    int k = f->pair_of[(size_t)parent * f->n + (size_t)child];
    if (k < 0)
        return NULL;
    opair *p = &f->pairs[k];
    return parent == p->i ? &p->ij : &p->ji;
}

typedef struct ocand {
    int node;
    double rank;
} ocand;

static int cand_cmp(const void *x, const void *y)
{
    const ocand *a = x, *b = y;
    return a->rank > b->rank ? -1 : a->rank < b->rank ? 1 : a->node - b->node;
}

typedef struct oparent {
    int child, parent;
    double share;
    bool main;
} oparent;

typedef struct oplan {
    oparent *v;
    size_t n, cap;
} oplan;

static int plan_add(oplan *pl, int child, int parent, double share, bool main)
{
    if (pl->n == pl->cap) {
        size_t cap = pl->cap ? pl->cap * 2 : 16;
        oparent *grown = realloc(pl->v, cap * sizeof *grown);
        if (!grown)
            return -1;
        pl->v = grown;
        pl->cap = cap;
    }
    pl->v[pl->n++] = (oparent){child, parent, share, main};
    return 0;
}

/* Rule 1: several parents by parts. */
static int by_parts(ofamily *f, int x, oplan *pl)
{
    size_t n = 0;
    ocand *c = malloc((f->n ? f->n : 1) * sizeof *c);
    const char **json = malloc((f->n ? f->n : 1) * sizeof *json);
    double *share = malloc((f->n ? f->n : 1) * sizeof *share);
    int ret = 0;
    if (!c || !json || !share) {
        ret = -1;
        goto out;
    }
    double best_single = 0;
    for (size_t y = 0; y < f->n; y++) {
        ojson *j = (int)y == x ? NULL : pair_json(f, (int)y, x);
        if (!j || !j->text)
            continue;
        if (f->nodes[y].quant && !f->nodes[x].quant)
            continue;
        c[n++] = (ocand){(int)y, j->rank};
        if (isfinite(j->explained) && j->explained > best_single)
            best_single = j->explained;
    }
    if (n < 2 || best_single >= 1.0 - PA_UNKNOWN_ORIGIN_SHARE)
        goto out;
    qsort(c, n, sizeof *c, cand_cmp);
    for (size_t k = 0; k < n; k++)
        json[k] = pair_json(f, c[k].node, x)->text;
    pa_parent_shares(json, n, share, NULL);
    size_t n_par = 0;
    for (size_t k = 0; k < n; k++)
        n_par += share[k] >= PARENT_MIN_SHARE;
    if (n_par < 2)
        goto out;
    bool first = true;
    for (size_t k = 0; k < n && ret == 0; k++) {
        if (share[k] < PARENT_MIN_SHARE)
            continue;
        ret = plan_add(pl, x, c[k].node, share[k], first);
        first = false;
    }
    if (ret == 0)
        ret = 1;
out:
    free(c);
    free(json);
    free(share);
    return ret;
}

/* Rule 2: a merge of two relatives. */
static int by_merge(ofamily *f, int x, oplan *pl)
{
    double nearest = INFINITY;
    for (size_t y = 0; y < f->n; y++) {
        int k = (int)y == x ? -1 : f->pair_of[(size_t)x * f->n + y];
        if (k >= 0 && isfinite(f->pairs[k].dist) && !(f->nodes[y].quant && !f->nodes[x].quant) &&
            f->pairs[k].dist < nearest)
            nearest = f->pairs[k].dist;
    }
    int bp = -1, bq = -1;
    double best = MERGE_SLACK, dp_best = 0, dq_best = 0;
    for (size_t p = 0; p < f->n; p++) {
        int kp = (int)p == x ? -1 : f->pair_of[(size_t)x * f->n + p];
        if (kp < 0 || !isfinite(f->pairs[kp].dist) || (f->nodes[p].quant && !f->nodes[x].quant))
            continue;
        for (size_t q = p + 1; q < f->n; q++) {
            int kq = (int)q == x ? -1 : f->pair_of[(size_t)x * f->n + q];
            int kpq = f->pair_of[p * f->n + q];
            if (kq < 0 || kpq < 0 || !isfinite(f->pairs[kq].dist) ||
                !isfinite(f->pairs[kpq].dist) || f->pairs[kpq].dist <= 0 ||
                (f->nodes[q].quant && !f->nodes[x].quant))
                continue;
            double dp = f->pairs[kp].dist, dq = f->pairs[kq].dist, dpq = f->pairs[kpq].dist;
            if (dp + dq <= 0)
                continue;
            double ratio = (dp + dq) / dpq, t = dp / (dp + dq);
            /* A merge lies on the line between its parents: dp + dq = dpq. A copy of p alone
             * at distance e from it, in a direction of its own, is off the line by
             * e + sqrt(dpq^2 + e^2) - dpq, and may pass MERGE_SLACK when e is a tenth of dpq;
             * so the detour must also stay under half of that. */
            double e = dp < dq ? dp : dq, off = e + sqrt(dpq * dpq + e * e) - dpq;
            /* the nearest relative is one of the two; each weighs >= PARENT_MIN_SHARE */
            if (ratio > best || t < PARENT_MIN_SHARE || t > 1 - PARENT_MIN_SHARE ||
                nearest < MERGE_NEAREST * e || dp + dq - dpq > 0.5 * off)
                continue;
            best = ratio;
            bp = (int)p;
            bq = (int)q;
            dp_best = dp;
            dq_best = dq;
        }
    }
    if (bp < 0)
        return 0;
    double sp = dq_best / (dp_best + dq_best), sq = 1 - sp;
    bool p_main = sp > sq || (sp == sq && pair_json(f, bp, x)->rank >= pair_json(f, bq, x)->rank);
    if (plan_add(pl, x, bp, sp, p_main) != 0 || plan_add(pl, x, bq, sq, !p_main) != 0)
        return -1;
    return 1;
}

typedef struct oedge {
    int i, j;
    int cls; /* 0 both unquantised, 1 one quantised, 2 both */
    double w, rank;
    int64_t older, younger; /* creation times of the two ends */
} oedge;

static int oedge_cmp(const void *x, const void *y)
{
    const oedge *a = x, *b = y;
    if (a->cls != b->cls)
        return a->cls - b->cls;
    if (a->w != b->w)
        return a->w < b->w ? -1 : 1;
    /* Equal weights come from equal content (identical copies, a re-sharded or re-packed
     * model): the edge between the models stored first wins, so the original is the hub and
     * a copy hangs off what it copies, whatever order the family was walked in. */
    if (a->older != b->older)
        return a->older < b->older ? -1 : 1;
    if (a->younger != b->younger)
        return a->younger < b->younger ? -1 : 1;
    if (a->rank != b->rank)
        return a->rank > b->rank ? -1 : 1;
    return a->i != b->i ? a->i - b->i : a->j - b->j;
}

static int uf_find(int *uf, int x)
{
    while (uf[x] != x)
        x = uf[x] = uf[uf[x]];
    return x;
}

/* Sum of the tree-path distances from v to the other models of its tree (members[0..n)). */
static double tree_sum(const ofamily *f, const int *adj, int v, const int *members, size_t n)
{
    size_t fn = f->n;
    double *d = malloc(fn * sizeof *d);
    int *st = malloc(fn * sizeof *st);
    double sum = 0;
    if (!d || !st) {
        free(d);
        free(st);
        return INFINITY;
    }
    for (size_t i = 0; i < fn; i++)
        d[i] = -1;
    size_t top = 0;
    d[v] = 0;
    st[top++] = v;
    while (top > 0) {
        int u = st[--top];
        for (size_t y = 0; y < fn; y++) {
            int k = f->pair_of[(size_t)u * fn + y];
            if (!adj[(size_t)u * fn + y] || d[y] >= 0 || k < 0)
                continue;
            double w = f->pairs[k].w;
            d[y] = d[u] + (isfinite(w) ? w : 1.0);
            st[top++] = (int)y;
        }
    }
    for (size_t h = 0; h < n; h++)
        sum += d[members[h]] > 0 ? d[members[h]] : 0;
    free(d);
    free(st);
    return sum;
}

/* Rule 3: the spanning tree of the remaining models, rooted at the base. */
static int by_tree(ofamily *f, oplan *pl)
{
    size_t n = f->n;
    oedge *e = malloc((f->n_pairs ? f->n_pairs : 1) * sizeof *e);
    int *uf = malloc(n * sizeof *uf);
    int *adj = malloc(n * n * sizeof *adj); /* adj[i*n+j]: tree edge */
    int *order = malloc(n * sizeof *order);
    int *joined = NULL;
    int ret = 0;
    if (!e || !uf || !adj || !order) {
        ret = -1;
        goto out;
    }
    size_t ne = 0;
    for (size_t k = 0; k < f->n_pairs; k++) {
        opair *p = &f->pairs[k];
        if (f->nodes[p->i].kind || f->nodes[p->j].kind)
            continue;
        double rank = fmax(p->ij.rank, p->ji.rank);
        int cls = f->nodes[p->i].quant + f->nodes[p->j].quant;
        /* unknown distance: after every known one, by rank */
        int64_t ci = f->nodes[p->i].created, cj = f->nodes[p->j].created;
        e[ne++] = (oedge){p->i,
                          p->j,
                          cls,
                          isfinite(p->w) ? p->w : 1e6 - rank,
                          rank,
                          ci < cj ? ci : cj,
                          ci < cj ? cj : ci};
    }
    /* Unquantised models first; then each quantised model joins as a leaf, of its nearest
     * unquantised relative when it has one: a quantised export never sits between two models. */
    qsort(e, ne, sizeof *e, oedge_cmp);
    joined = malloc(n * sizeof *joined);
    if (!joined) {
        ret = -1;
        goto out;
    }
    memset(joined, 0, n * sizeof *joined);
    for (size_t i = 0; i < n; i++)
        uf[i] = (int)i;
    memset(adj, 0, n * n * sizeof *adj);
    for (size_t k = 0; k < ne; k++) {
        int a = uf_find(uf, e[k].i), b = uf_find(uf, e[k].j);
        if (a == b)
            continue;
        if (e[k].cls == 1) {
            int q = f->nodes[e[k].i].quant ? e[k].i : e[k].j;
            if (joined[q])
                continue;
        } else if (e[k].cls == 2 && joined[e[k].i] && joined[e[k].j]) {
            continue;
        }
        joined[e[k].i] = joined[e[k].j] = 1;
        uf[a] = b;
        adj[(size_t)e[k].i * n + (size_t)e[k].j] = adj[(size_t)e[k].j * n + (size_t)e[k].i] = 1;
        /* an identical copy (weight 0) is no branch: copies of a fine-tune (re-saved, other
         * formats, variants of the same bytes) must not make it look like the family's base */
        if (!f->nodes[e[k].j].quant && e[k].w > 0)
            f->nodes[e[k].i].tree_deg++;
        if (!f->nodes[e[k].i].quant && e[k].w > 0)
            f->nodes[e[k].j].tree_deg++;
    }
    /* one root per tree */
    int *done = uf; /* reused: 1 once placed */
    for (size_t i = 0; i < n; i++)
        done[i] = f->nodes[i].kind != 0;
    for (;;) {
        int seed = -1;
        for (size_t i = 0; i < n && seed < 0; i++)
            if (!done[i])
                seed = (int)i;
        if (seed < 0)
            break;
        /* the tree of seed */
        size_t qn = 0;
        order[qn++] = seed;
        done[seed] = 2;
        for (size_t h = 0; h < qn; h++)
            for (size_t y = 0; y < n; y++)
                if (adj[(size_t)order[h] * n + y] && !done[y]) {
                    done[y] = 2;
                    order[qn++] = (int)y;
                }
        bool any_full = false;
        for (size_t h = 0; h < qn; h++)
            any_full |= !f->nodes[order[h]].quant;
        int root = -1, hub = -1;
        double hub_sum = INFINITY;
        for (size_t h = 0; h < qn; h++) {
            const onode *v = &f->nodes[order[h]];
            if (any_full && v->quant)
                continue;
            const onode *r = root >= 0 ? &f->nodes[root] : NULL;
            if (!r || v->created < r->created || (v->created == r->created && v->id < r->id))
                root = order[h];
            const onode *b = hub >= 0 ? &f->nodes[hub] : NULL;
            if (v->tree_deg < 3 || (b && v->tree_deg < b->tree_deg))
                continue;
            double sum = tree_sum(f, adj, order[h], order, qn);
            if (!b || v->tree_deg > b->tree_deg || sum < hub_sum ||
                (sum == hub_sum &&
                 (v->created < b->created || (v->created == b->created && v->id < b->id)))) {
                hub = order[h];
                hub_sum = sum;
            }
        }
        if (hub >= 0)
            root = hub;
        /* orient from the root */
        for (size_t h = 0; h < qn; h++)
            done[order[h]] = 1;
        qn = 0;
        order[qn++] = root;
        f->nodes[root].parent = -1;
        done[root] = 3;
        for (size_t h = 0; h < qn; h++)
            for (size_t y = 0; y < n; y++)
                if (adj[(size_t)order[h] * n + y] && done[y] == 1) {
                    done[y] = 3;
                    f->nodes[y].parent = order[h];
                    order[qn++] = (int)y;
                }
        for (size_t h = 1; h < qn && ret == 0; h++) {
            int v = order[h];
            ojson *j = pair_json(f, f->nodes[v].parent, v);
            double share = j && isfinite(j->explained) ? j->explained : 1.0;
            ret = plan_add(pl, v, f->nodes[v].parent, share, true);
        }
    }
out:
    free(joined);
    free(e);
    free(uf);
    free(adj);
    free(order);
    return ret;
}

/* Decides and stores the parents of every model in id's family. Called with lineage_lock held. */
static int orient(analyze_ctx *an, int64_t id)
{
    ofamily f = {0};
    oplan pl = {0};
    int ret = family_load(an, id, &f);
    if (ret != 0 || f.n < 2) {
        family_free(&f);
        return ret < 0 ? -1 : 0;
    }
    for (size_t x = 0; x < f.n && ret >= 0; x++) {
        ret = by_parts(&f, (int)x, &pl);
        if (ret == 1)
            f.nodes[x].kind = 1;
    }
    for (size_t x = 0; x < f.n && ret >= 0; x++) {
        if (f.nodes[x].kind)
            continue;
        ret = by_merge(&f, (int)x, &pl);
        if (ret == 1)
            f.nodes[x].kind = 2;
    }
    if (ret >= 0)
        ret = by_tree(&f, &pl);
    int64_t *children = malloc(f.n * sizeof *children);
    store_parent_set *set = calloc(pl.n ? pl.n : 1, sizeof *set);
    if (ret >= 0 && children && set) {
        for (size_t i = 0; i < f.n; i++)
            children[i] = f.nodes[i].id;
        size_t n = 0;
        for (size_t k = 0; k < pl.n; k++) {
            const oparent *o = &pl.v[k];
            ojson *j = pair_json(&f, o->parent, o->child);
            ojson *r = pair_json(&f, o->child, o->parent);
            if (!j || !j->text)
                continue;
            set[n++] = (store_parent_set){
                .parent_id = f.nodes[o->parent].id,
                .child_id = f.nodes[o->child].id,
                .score = isfinite(j->score) ? j->score : 0,
                .rank = j->rank,
                .share = o->share,
                .verdict = j->verdict,
                .signals = j->text,
                .rev_signals = r ? r->text : NULL,
                .is_main = o->main,
            };
        }
        ret = store_set_parents(an->st, children, f.n, set, n);
    } else {
        ret = -1;
    }
    free(children);
    free(set);
    free(pl.v);
    family_free(&f);
    return ret;
}

static bool seen_id(const link_work *w, int64_t id)
{
    for (size_t i = 0; i < w->n_seen; i++)
        if (w->seen[i] == id)
            return true;
    return false;
}

/* The families (ORIENT_MAX models at most each) of the relatives found so far, less the models
 * already compared: the relatives of a relative are plausible relatives too, and the family step
 * needs the new model's comparisons with them. *out malloc'd. */
static int family_rest(analyze_ctx *an, const link_work *w, int64_t **out, size_t *n_out)
{
    size_t n = 0, cap = 64, n_rel = w->n_edges;
    int64_t *ids = malloc(cap * sizeof *ids);
    int64_t *todo = malloc(ORIENT_MAX * sizeof *todo);
    int ret = ids && todo ? 0 : -1;
    for (size_t e = 0; e < n_rel && ret == 0; e++) {
        const store_edge *edge = &w->edges[e];
        size_t nq = 0;
        todo[nq++] = edge->parent_id == w->self_id ? edge->child_id : edge->parent_id;
        for (size_t q = 0; q < nq && ret == 0; q++) {
            store_rel *rels = NULL;
            size_t nr = 0;
            if (store_related(an->st, todo[q], &rels, &nr) != 0) {
                ret = -1;
                break;
            }
            for (size_t k = 0; k < nr && ret == 0; k++) {
                int64_t o = rels[k].parent_id == todo[q] ? rels[k].child_id : rels[k].parent_id;
                bool known = o == w->self_id;
                for (size_t i = 0; !known && i < nq; i++)
                    known = todo[i] == o;
                if (known || nq == ORIENT_MAX)
                    continue;
                todo[nq++] = o;
                bool listed = seen_id(w, o);
                for (size_t i = 0; !listed && i < n; i++)
                    listed = ids[i] == o;
                if (listed)
                    continue;
                if (n == cap) {
                    int64_t *grown = realloc(ids, 2 * cap * sizeof *grown);
                    if (!grown) {
                        ret = -1;
                        break;
                    }
                    ids = grown;
                    cap *= 2;
                }
                ids[n++] = o;
            }
            store_rels_free(rels, nr);
        }
    }
    free(todo);
    if (ret != 0) {
        free(ids);
        return -1;
    }
    *out = ids;
    *n_out = n;
    return 0;
}

/* Finds the new model's candidates and compares it with them: with the index (store_retrieve:
 * the retrieve_k best-matching models, then the families of the relatives among them), or,
 * without index keys or with retrieval off, every prefiltered stored model. */
static int link_candidates(analyze_ctx *an, const store_keys *keys, const pa_lsh_sig *sig,
                           link_work *w)
{
    if (!an->retrieve_k || !sig || sig->n_bands + sig->n_hashes == 0)
        return store_candidates(an->st, keys, w->self_id, link_candidate, w);
    size_t found = 0;
    int ret =
        store_retrieve(an->st, keys, sig, w->self_id, an->retrieve_k, &found, link_candidate, w);
    int64_t *rest = NULL;
    size_t n_rest = 0;
    if (ret == 0 && w->n_edges > 0)
        ret = family_rest(an, w, &rest, &n_rest);
    if (ret == 0 && n_rest > 0)
        ret = store_candidates_ids(an->st, keys, rest, n_rest, link_candidate, w);
    free(rest);
    return ret;
}

/* Compares the new model with its candidates, records the edges and decides the parents of its
 * family. Called with lineage_lock held. */
static int link_model(analyze_ctx *an, int64_t id, const pa_fingerprint *fp, const store_keys *keys,
                      const pa_lsh_sig *sig, size_t *compared, bool *has_parent)
{
    store_model self;
    if (store_model_by_id(an->st, id, &self) != 0)
        return -1;
    link_work w = {.an = an, .self_id = id, .self_created = self.created_ns, .self_fp = fp};
    store_model_clear(&self);
    int ret = link_candidates(an, keys, sig, &w);
    if (ret == 0)
        ret = store_set_edges(an->st, id, w.edges, w.n_edges);
    if (ret == 0 && w.n_edges > 0)
        ret = orient(an, id);
    *compared = w.compared;
    store_link parent;
    *has_parent = store_parent(an->st, id, &parent) == 0;
    if (*has_parent)
        store_link_clear(&parent);
    for (size_t i = 0; i < 2 * w.n_edges; i++)
        free(w.signals[i]);
    free(w.signals);
    free(w.edges);
    free(w.seen);
    return ret;
}

/* ---------------------------------------------------------------- reference sets */

/* The model's best reference-set match: a parent when an entry with weights gives derived or
 * identical (pa_compare's verdict), else a family hint from metadata/tokenizer evidence (never a
 * parent, never derived: refdb.h's honesty rule). 0 and *out filled, 1 when nothing matched. */
static int reference_match(const analyze_ctx *an, const pa_fingerprint *fp, store_ref *out)
{
    memset(out, 0, sizeof *out);
    if (!an->refdb || pa_refdb_count(an->refdb) == 0)
        return 1;
    pa_scan_options opt = {.top_k = 0, .threshold = 0};
    pa_scan_match *m = NULL;
    size_t n = 0;
    pa_scan_stats stats;
    pa_error err = {0};
    if (pa_scan(an->refdb, NULL, 0, fp, &opt, &m, &n, &stats, &err) != PA_OK)
        return 1;
    const pa_scan_match *best = NULL;
    for (size_t i = 0; i < n && !best; i++)
        if (m[i].from_refdb && m[i].verdict != PA_V_NONE)
            best = &m[i];
    int ret = 1;
    if (best) {
        bool parent = best->evidence.weights &&
                      (best->verdict == PA_V_DERIVED || best->verdict == PA_V_IDENTICAL);
        out->is_parent = parent;
        out->name = strdup(best->name);
        out->family = strdup(best->family);
        out->score = best->score;
        snprintf(out->verdict, sizeof out->verdict, "%s",
                 pa_verdict_name(parent || best->verdict == PA_V_WEAK ? best->verdict : PA_V_WEAK));
        char ev[96];
        snprintf(ev, sizeof ev, "{\"weights\":%s,\"metadata\":%s,\"tokenizer\":%s}",
                 best->evidence.weights ? "true" : "false",
                 best->evidence.metadata ? "true" : "false",
                 best->evidence.tokenizer ? "true" : "false");
        out->evidence = strdup(ev);
        /* The per-signal evidence of a parent, as for a parent in the store. */
        for (size_t i = 0; parent && i < pa_refdb_count(an->refdb); i++) {
            if (strcmp(pa_refdb_name(an->refdb, i), best->name) != 0)
                continue;
            pa_compare_result r;
            memset(&r, 0, sizeof r);
            pa_compare(pa_refdb_fingerprint(an->refdb, i), fp, &r);
            out->signals = pa_compare_to_json(&r, "parent", "child", false);
            break;
        }
        ret = out->name && out->family && out->evidence ? 0 : 1;
        if (ret)
            store_ref_clear(out);
    }
    pa_scan_free(m, n);
    return ret;
}

/* ---------------------------------------------------------------- failed units */

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A ctime too young to identify the file (store_ctime_young) is recorded as unknown (0): the
 * next open finds the file changed and the unit is analysed again, by then quiet. */
static int64_t settled_ctime(int64_t ctime_ns)
{
    return store_ctime_young(ctime_ns) ? 0 : ctime_ns;
}

/* SHA-256 of one file's bytes (hex), and in *id the file as fstat saw it before the read. */
static int sha256_file(int dirfd, const char *name, volatile const int *cancel, char out[65],
                       store_file *id)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return -1;
    }
    /* the file as it was before a byte was read (the gate compares it at every open) */
    id->ino = (uint64_t)sb.st_ino;
    id->size = (uint64_t)sb.st_size;
    id->mtime_ns = store_ts_ns(sb.st_mtim);
    id->ctime_ns = settled_ctime(store_ts_ns(sb.st_ctim));
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    size_t bufsize = 1u << 20;
    unsigned char *buf = malloc(bufsize);
    int ret = buf && md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 ? 0 : -1;
    for (ssize_t n; ret == 0 && (n = read(fd, buf, bufsize)) != 0;) {
        if (n < 0 || (cancel && *cancel) || EVP_DigestUpdate(md, buf, (size_t)n) != 1)
            ret = -1;
    }
    free(buf);
    unsigned char d[32];
    if (ret == 0 && EVP_DigestFinal_ex(md, d, NULL) != 1)
        ret = -1;
    for (int i = 0; ret == 0 && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
    EVP_MD_CTX_free(md);
    close(fd);
    return ret;
}

static void ids_free(store_file *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(ids[i].name);
    free(ids);
}

/* The digest of a unit the analyzer could not parse, the same way as the analyzer's: SHA-256
 * over the sorted "name\0sha256\n" list of its regular files (a GGUF unit: the file itself).
 * *ids: the identities of those files as read (names malloc'd; free with ids_free), for the
 * gate: a failed unit may be approved by its digest. */
static int failed_unit_digest(const analyze_ctx *an, const char *abs, volatile const int *cancel,
                              char out[65], store_file **ids, size_t *n_ids)
{
    *ids = NULL;
    *n_ids = 0;
    struct stat sb;
    if (backing_stat(an, abs, &sb) != 0)
        return -1;
    char **names = NULL;
    size_t n = 0, cap = 0;
    int dirfd, ret = -1;
    if (S_ISREG(sb.st_mode)) {
        const char *slash = strrchr(abs, '/');
        char *parent = strndup(abs, slash && slash != abs ? (size_t)(slash - abs) : 1);
        dirfd = parent ? backing_open(an, parent, O_RDONLY | O_DIRECTORY) : -1;
        free(parent);
        names = malloc(sizeof *names);
        if (names && (names[0] = strdup(slash ? slash + 1 : abs)) != NULL)
            n = 1;
    } else {
        dirfd = backing_open(an, abs, O_RDONLY | O_DIRECTORY);
        int lfd = dirfd >= 0 ? dup(dirfd) : -1;
        DIR *dir = lfd >= 0 ? fdopendir(lfd) : NULL;
        if (!dir && lfd >= 0)
            close(lfd);
        struct dirent *de;
        while (dir && (de = readdir(dir)) != NULL) {
            struct stat fs;
            if (de->d_name[0] == '.' || fstatat(dirfd, de->d_name, &fs, AT_SYMLINK_NOFOLLOW) != 0 ||
                !S_ISREG(fs.st_mode))
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                char **grown = realloc(names, cap * sizeof *names);
                if (!grown)
                    break;
                names = grown;
            }
            if ((names[n] = strdup(de->d_name)) != NULL)
                n++;
        }
        if (dir)
            closedir(dir);
        if (n)
            qsort(names, n, sizeof *names, name_cmp);
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    store_file *fids = n ? calloc(n, sizeof *fids) : NULL;
    if (dirfd >= 0 && n > 0 && fids && md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1) {
        ret = 0;
        for (size_t i = 0; i < n && ret == 0; i++) {
            char sha[65];
            ret = sha256_file(dirfd, names[i], cancel, sha, &fids[i]);
            if (ret == 0 &&
                (EVP_DigestUpdate(md, names[i], strlen(names[i]) + 1) != 1 ||
                 EVP_DigestUpdate(md, sha, 64) != 1 || EVP_DigestUpdate(md, "\n", 1) != 1))
                ret = -1;
        }
        unsigned char d[32];
        if (ret == 0 && EVP_DigestFinal_ex(md, d, NULL) != 1)
            ret = -1;
        for (int i = 0; ret == 0 && i < 32; i++)
            snprintf(out + 2 * i, 3, "%02x", d[i]);
    }
    EVP_MD_CTX_free(md);
    if (ret == 0) {
        for (size_t i = 0; i < n; i++) {
            fids[i].name = names[i];
            names[i] = NULL;
        }
        *ids = fids;
        *n_ids = n;
        fids = NULL;
    }
    free(fids);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (dirfd >= 0)
        close(dirfd);
    return ret;
}

/* ---------------------------------------------------------------- PEFT adapters */

typedef struct adapter_base {
    const char *declared;
    int64_t self_id, best_id;
    size_t best_len;
    bool ambiguous;
    char *best_path;
} adapter_base;

static int adapter_base_cb(void *ctx, const char *path, int64_t id, const char *status,
                           int64_t dir_mtime_ns)
{
    (void)dir_mtime_ns;
    adapter_base *a = ctx;
    size_t m = id != a->self_id && strcmp(status, "ready") == 0
                   ? pa_peft_base_match(a->declared, path)
                   : 0;
    if (m == 0 || m < a->best_len)
        return 0;
    if (m == a->best_len && a->best_id != 0) {
        a->ambiguous = true;
        return 0;
    }
    char *copy = strdup(path);
    if (!copy)
        return 0;
    free(a->best_path);
    a->best_path = copy;
    a->best_id = id;
    a->best_len = m;
    a->ambiguous = false;
    return 0;
}

/* A PEFT adapter's base, by declaration and checked: the declared base_model_name_or_path names
 * one stored ready unit (pa_peft_base_match, the longest match, unique), and every LoRA pair
 * fits that unit's modules (pa_peft_check_shapes). Then the edge base -> adapter (verdict
 * "adapter") is its lineage and *linked is set; otherwise it has none (unknown lineage). detail
 * gets one line for the event. Called with lineage_lock held. */
static int link_declared(analyze_ctx *an, int64_t id, const pa_fingerprint *fp,
                         const char *declared, bool *linked, char *detail, size_t detail_len)
{
    *linked = false;
    adapter_base a = {.declared = declared, .self_id = id};
    int ret = store_each_path(an->st, adapter_base_cb, &a);
    char shown[160];
    pa_escape_text(declared, strlen(declared), shown, sizeof shown);
    if (ret == 0 && (!a.best_id || a.ambiguous)) {
        snprintf(detail, detail_len, "adapter: declared base \"%s\" %s", shown,
                 a.ambiguous ? "names several stored models" : "is no stored model");
    } else if (ret == 0) {
        const pa_fingerprint *base = model_fp(an, a.best_id); /* through the cache */
        if (base) {
            pa_peft_check c;
            pa_peft_check_shapes(base, fp, &c);
            if (pa_peft_fits(&c)) {
                store_edge e = {.parent_id = a.best_id,
                                .child_id = id,
                                .score = 1.0,
                                .verdict = "adapter",
                                .rank = 1.0};
                ret = store_set_edges(an->st, id, &e, 1);
                *linked = ret == 0;
                snprintf(detail, detail_len, "adapter of %.250s: %zu LoRA pairs fit its modules",
                         a.best_path, c.n_pairs);
            } else {
                snprintf(detail, detail_len,
                         "adapter: declared base %.150s does not fit: %zu of %zu LoRA pairs fit "
                         "(%.150s)",
                         a.best_path, c.n_matched, c.n_pairs, c.problem);
            }
        }
    }
    free(a.best_path);
    return ret;
}

/* The adapter at BACKING path abs: its adapter_config.json read (beneath BACKING, no symlink,
 * bounded), its declaration stored and linked (link_declared). */
static int link_adapter(analyze_ctx *an, int64_t id, const pa_fingerprint *fp, const char *abs,
                        bool *linked, char *detail, size_t detail_len)
{
    *linked = false;
    snprintf(detail, detail_len, "no adapter_config.json");
    char *cfg_abs = NULL;
    if (asprintf(&cfg_abs, "%s/adapter_config.json", abs) < 0)
        return -1;
    int fd = backing_open(an, cfg_abs, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    free(cfg_abs);
    if (fd < 0)
        return 0;
    struct stat sb;
    char *text = NULL;
    size_t len = 0;
    pa_error err = {0};
    pa_peft_config cfg = {0};
    bool ok = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) &&
              pa_read_fd(fd, "adapter_config.json", 1u << 20, &text, &len, &err) == PA_OK &&
              pa_peft_config_parse(text, len, "adapter_config.json", &cfg, &err) == PA_OK;
    close(fd);
    free(text);
    if (!ok || !cfg.base) {
        snprintf(detail, detail_len, "adapter: %.300s",
                 !ok ? err.msg : "adapter_config.json declares no base_model_name_or_path");
        pa_peft_config_free(&cfg);
        return 0;
    }
    /* kept, so that a base stored later links it (relink_one) without reading this again */
    store_set_adapter_base(an->st, id, cfg.base);
    int ret = link_declared(an, id, fp, cfg.base, linked, detail, detail_len);
    pa_peft_config_free(&cfg);
    return ret;
}

/* ---------------------------------------------------------------- the job */

static int given_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const pa_unit_file *)elem)->name);
}

static const pa_unit_file *given_named(const pa_unit_files *given, const char *name)
{
    return given->n ? bsearch(name, given->files, given->n, sizeof *given->files, given_cmp)
                    : NULL;
}

/* Hashes the daemon took while the unit's files were written (queue_known_get), for the files
 * as the analysis opened them (name, size, mtime, inode and ctime of each fd). */
typedef struct known_ctx {
    queue *q;
    const char *unit_path; /* mount-relative */
    bool file_unit;        /* the unit is the file itself (GGUF) */
    const pa_unit_files *given;
    char (*shas)[65]; /* per given file; "" when unknown */
    size_t hits;
} known_ctx;

static void known_lookup(known_ctx *k, size_t i)
{
    const pa_unit_file *f = &k->given->files[i];
    char path[PATH_MAX];
    k->shas[i][0] = '\0';
    /* a file unit is its own path; a variant's config and tokenizer are its directory's */
    const char *base = strrchr(k->unit_path, '/');
    bool own = !base || strcmp(base + 1, f->name) == 0;
    int n = k->file_unit && own ? snprintf(path, sizeof path, "%s", k->unit_path)
            : k->file_unit      ? snprintf(path, sizeof path, "%.*s/%s", (int)(base - k->unit_path),
                                           k->unit_path, f->name)
                                : snprintf(path, sizeof path, "%s%s%s", k->unit_path,
                                      strcmp(k->unit_path, "/") == 0 ? "" : "/", f->name);
    queue_file_id id = {.size = f->size, .ino = f->ino, .mtime_ns = f->mtime_ns,
                        .ctime_ns = f->ctime_ns};
    if (n > 0 && (size_t)n < sizeof path && k->q && queue_known_get(k->q, path, &id, k->shas[i]))
        k->hits++;
}

/* pa_fp_options.known_sha256 of an analysis in the daemon: the hash looked up for that file. */
static const char *known_sha(void *ctx, const char *name, uint64_t size, int64_t mtime_ns)
{
    known_ctx *k = ctx;
    for (size_t i = 0; i < k->given->n; i++) {
        const pa_unit_file *f = &k->given->files[i];
        if (strcmp(f->name, name) == 0)
            return f->size == size && f->mtime_ns == mtime_ns && k->shas[i][0] ? k->shas[i]
                                                                                : NULL;
    }
    return NULL;
}

/* Adapters and a new path: once a model that is no adapter is ready at path, the stored ready
 * adapters whose declared base names path are resolved again, the ones tried longest ago first
 * and ADAPTER_RELINK_MAX of them at most per ingest (a bounded cost however many adapters
 * declare a name). One stored before its base gets linked; one whose declaration now names
 * several stored models loses its adapter parent (unknown lineage), as it would have at its own
 * analysis. Called with lineage_lock held. */
#define ADAPTER_RELINK_MAX 8
typedef struct relink {
    analyze_ctx *an;
    const queue_job *job;
    int64_t new_id;
    unsigned tried;
} relink;

static int relink_one(void *ctx, int64_t id, const char *declared, int64_t adapter_parent)
{
    relink *r = ctx;
    if (adapter_parent == r->new_id || pa_peft_base_match(declared, r->job->path) == 0)
        return 0;
    if (r->tried++ >= ADAPTER_RELINK_MAX)
        return 1;
    store_adapter_tried(r->an->st, id);
    const pa_fingerprint *fp = model_fp(r->an, id);
    char *path = NULL;
    if (!fp || !pa_peft_is_adapter(fp) || store_model_path(r->an->st, id, &path) != 0) {
        free(path);
        return 0;
    }
    char detail[512] = "";
    bool linked = false;
    /* the declaration its analysis stored: the adapter's files are not read again */
    if (link_declared(r->an, id, fp, declared, &linked, detail, sizeof detail) == 0) {
        char line[700];
        if (linked) {
            store_set_ref(r->an->st, id, NULL); /* a store parent now: no reference match */
            snprintf(line, sizeof line, "%s (resolved again when %.100s became ready)", detail,
                     r->job->path);
            store_event(r->an->st, 0, 0, path, id, "adapter", line);
        } else if (adapter_parent && store_drop_adapter_parent(r->an->st, id) == 0) {
            snprintf(line, sizeof line,
                     "%s: its adapter parent is dropped (when %.100s became ready)", detail,
                     r->job->path);
            store_event(r->an->st, 0, 0, path, id, "adapter", line);
        }
    }
    free(path);
    return 0;
}

typedef void file_fn(analyze_ctx *an, int dirfd, const char *name, const char *child,
                     const queue_job *job);

/* fn for every regular file (or one of unknown type) directly in the directory of job (abs in
 * BACKING), with its mount-relative path child. */
static void each_file(analyze_ctx *an, const char *abs, const queue_job *job, file_fn *fn)
{
    int dfd = backing_open(an, abs, O_RDONLY | O_DIRECTORY);
    DIR *dir = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!dir) {
        if (dfd >= 0)
            close(dfd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN)
            continue;
        if (de->d_name[0] == '.' && (!de->d_name[1] || strcmp(de->d_name, "..") == 0))
            continue;
        char child[PATH_MAX];
        int n = snprintf(child, sizeof child, "%s%s%s", job->path,
                         strcmp(job->path, "/") == 0 ? "" : "/", de->d_name);
        if (n > 0 && (size_t)n < sizeof child)
            fn(an, dirfd(dir), de->d_name, child, job);
    }
    closedir(dir);
}

/* A directory that is no longer a unit (its config.json renamed away, say): the model files it
 * holds are now units of their own, pending from now on, never loose. */
static void mark_loose_file(analyze_ctx *an, int dirfd, const char *name, const char *child,
                            const queue_job *job)
{
    if (analyze_file_unit_check(dirfd, name) == 1)
        queue_mark(an->q, child, job->uid, job->pid);
}

/* A directory that became a unit (its config.json came after its weights): the weights files in
 * it that were units of their own are part of it now. Their records and queue entries go before
 * the directory's analysis, so its lineage never takes a stale record of its own weights for a
 * parent (and a job still running on one of them is cancelled, its result never stored). */
static void absorb_file_unit(analyze_ctx *an, int dirfd, const char *name, const char *child,
                             const queue_job *job)
{
    /* known first (a hash lookup, the store's path filter, then an indexed query): most files
     * never were units */
    store_model m;
    bool queued = queue_get_state(an->q, child) != QUEUE_NONE;
    bool stored = store_path_maybe(an->st, child) && store_model_by_path(an->st, child, &m) == 0;
    if ((queued || stored) && analyze_file_unit_check(dirfd, name) == 0) {
        queue_forget_entry(an->q, child);
        if (stored) {
            pthread_mutex_lock(&an->lineage_lock);
            store_remove_path(an->st, child, false);
            store_event(an->st, job->uid, job->pid, child, m.id, "removed",
                        "part of a directory unit now");
            pthread_mutex_unlock(&an->lineage_lock);
        }
    }
    if (stored)
        store_model_clear(&m);
}

void analyze_set_shared(analyze_ctx *an, const char *owner, int64_t lease_ns)
{
    snprintf(an->owner, sizeof an->owner, "%s", owner ? owner : "");
    an->lease_ns = lease_ns;
}

static void job_run(analyze_ctx *an, const queue_job *job);

void analyze_job(void *ctx, const queue_job *job)
{
    analyze_ctx *an = ctx;
    if (!an->owner[0]) {
        job_run(an, job);
        return;
    }
    /* Several daemons: only the one holding the unit's claim analyses it (the others see the
     * status it writes). */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    int claim = store_pending_claim(an->st, job->path, an->owner, now, an->lease_ns);
    if (claim < 0) {
        /* The database is out of reach: nothing could be recorded. The unit stays queued here
         * (another try after the quiet period) until it is back. */
        queue_mark(an->q, job->path, job->uid, job->pid);
        return;
    }
    if (claim == 0)
        return;
    job_run(an, job);
    store_pending_done(an->st, job->path, an->owner);
}

static void job_run(analyze_ctx *an, const queue_job *job)
{
    char *abs = backing_path(an, job->path);
    if (!abs)
        return;
    unit_kind unit = unit_kind_of(an, abs);
    if (unit == UNIT_NONE)
        each_file(an, abs, job, mark_loose_file);
    if (unit <= UNIT_NONE) {
        /* Gone, or no longer a model: forget what the store knew about this path. */
        store_model m;
        if (store_model_by_path(an->st, job->path, &m) == 0) {
            if (queue_current(an->q, job->path, job->gen)) {
                store_remove_path(an->st, job->path, unit == UNIT_GONE);
                store_event(an->st, job->uid, job->pid, job->path, m.id, "removed",
                            unit == UNIT_GONE ? "gone" : "no longer a model unit");
            }
            store_model_clear(&m);
        }
        free(abs);
        return;
    }
    if (unit == UNIT_DIR)
        each_file(an, abs, job, absorb_file_unit);
    /* A directory unit records the directory's mtime, a GGUF unit its file's. */
    struct stat sb;
    int64_t dir_mtime = backing_stat(an, abs, &sb) == 0
                            ? (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec
                            : 0;
    int64_t id = 0;
    if (store_begin(an->st, job->path, job->first_seen_ns, dir_mtime, &id) != 0) {
        free(abs);
        return;
    }
    pa_unit_files given = {0};
    known_ctx known = {.q = an->q, .unit_path = job->path, .file_unit = unit == UNIT_FILE,
                       .given = &given};
    pa_fp_options opt = {.threads = an->fp_threads,
                         .cancel = job->cancel,
                         .confine_root = an->backing,
                         .confine_private = ".provfs"};
    pa_fingerprint *fp = NULL;
    pa_error err = {0};
    pa_status status;
    if (unit == UNIT_FILE && has_suffix(job->path, ".gguf") && !file_has_gguf_magic(an, abs)) {
        /* Named *.gguf without the magic: never guess another format from the bytes. */
        const char *base = strrchr(job->path, '/');
        status = pa_error_set(&err, PA_E_FORMAT, "%s: not a GGUF file (bad magic)",
                              base ? base + 1 : job->path);
    } else {
        /* The daemon opens the files (beneath BACKING, as root, and notes what fstat says of
         * each fd before a byte is read); an unprivileged worker parses them, or the daemon
         * itself with --analyzer-worker=off. */
        status = pa_unit_files_open(abs, &opt, &given, &err);
        known.shas = status ? NULL : calloc(given.n ? given.n : 1, sizeof *known.shas);
        if (!status && !known.shas)
            status = pa_error_set(&err, PA_E_NOMEM, "%s: out of memory", abs);
        for (size_t i = 0; known.shas && i < given.n; i++)
            known_lookup(&known, i);
        if (!status && an->use_worker) {
            status = worker_fingerprint(&an->worker, abs, &given, (const char(*)[65])known.shas,
                                        job->cancel, &fp, &err);
        } else if (!status) {
            opt.known_sha256 = known_sha;
            opt.known_ctx = &known;
            status = pa_fingerprint_files(abs, &given, &opt, &fp, &err);
        }
        free(known.shas);
        known.shas = NULL;
        /* the fds go; names, sizes, mtimes and identities stay for the store */
        for (size_t i = 0; i < given.n; i++)
            if (given.files[i].fd >= 0) {
                close(given.files[i].fd);
                given.files[i].fd = -1;
            }
    }
    if (*job->cancel) {
        /* Written again, renamed, deleted or unmounting: the queue runs it again if it still
         * exists; a row begun for a unit that went away is dropped. */
        if (unit_kind_of(an, abs) == UNIT_GONE)
            store_remove_path(an->st, job->path, false);
        pa_fingerprint_free(fp);
        pa_unit_files_close(&given);
        free(abs);
        return;
    }
    /* Stored fingerprints are content: the BACKING path stays out of them. What the store keeps
     * is the compact binary form; a fingerprint that cannot take it (a tensor name over 64 KiB)
     * fails the unit like any other limit. */
    uint8_t *bin = NULL;
    size_t bin_len = 0;
    if (status == PA_OK) {
        if (!pa_fp_set_path(fp, NULL))
            status = pa_error_set(&err, PA_E_NOMEM, "out of memory");
        else
            status = pa_fp_to_bin(fp, &bin, &bin_len, &err);
    }
    if (status != PA_OK) {
        char msg[sizeof err.msg];
        relative_message(an, err.msg[0] ? err.msg : pa_status_name(status), msg, sizeof msg);
        const char *st_name = status == PA_E_INCOMPLETE ? "incomplete" : "failed";
        /* The content digest even so, so an admin can approve (release) a failed unit. */
        char digest[65];
        store_file *ids = NULL;
        size_t n_ids = 0;
        bool have_digest = failed_unit_digest(an, abs, job->cancel, digest, &ids, &n_ids) == 0;
        pthread_mutex_lock(&an->lineage_lock);
        if (queue_current(an->q, job->path, job->gen)) {
            store_finish_error(an->st, id, st_name, msg);
            store_set_ref(an->st, id, NULL);
            if (have_digest) {
                store_set_digest(an->st, id, digest);
                /* the files the digest covers, as read: an approval of it holds for them only */
                if (store_ids_record(an->st, job->path, ids, n_ids) != 0)
                    fprintf(stderr, "provfs: %s: cannot record its files' identities\n",
                            job->path);
            }
            store_event(an->st, job->uid, job->pid, job->path, id, st_name, msg);
        }
        pthread_mutex_unlock(&an->lineage_lock);
        ids_free(ids, n_ids);
        fprintf(stderr, "provfs: %s: %s: %s\n", job->path, st_name, msg);
        pa_unit_files_close(&given);
        free(abs);
        return;
    }
    size_t n_files = pa_fp_n_files(fp);
    store_file *files = calloc(n_files ? n_files : 1, sizeof *files);
    if (!files)
        goto out;
    for (size_t i = 0; i < n_files; i++) {
        const pa_file_fp *f = pa_fp_file(fp, i);
        files[i].name = f->name;
        files[i].size = f->size;
        /* a worker's fingerprint carries mtimes through JSON numbers: the daemon's own are exact
         * (worker_fingerprint checked that the names are the same, in the same order) */
        files[i].mtime_ns = given.n == n_files ? given.files[i].mtime_ns : f->mtime_ns;
        /* the identity of the fd that was read (given is sorted by name), or none: the gate
         * then counts it as changed */
        const pa_unit_file *g = given.n == n_files && strcmp(given.files[i].name, f->name) == 0
                                    ? &given.files[i]
                                    : given_named(&given, f->name);
        if (g) {
            files[i].ctime_ns = settled_ctime(g->ctime_ns);
            files[i].ino = g->ino;
        }
        snprintf(files[i].sha256, sizeof files[i].sha256, "%s", f->sha256);
    }
    /* Index keys, outside the lineage lock too. */
    pa_lsh_sig sig = {0};
    bool have_sig = pa_lsh_signature(fp, &sig) == 0;
    store_result res = {.digest = pa_fp_digest(fp),
                        .format = pa_fp_format(fp),
                        .fingerprint = bin,
                        .fingerprint_len = bin_len,
                        .n_files = n_files,
                        .files = files,
                        .sig = have_sig ? &sig : NULL};
    fill_keys(fp, &res.keys);
    /* Outside the lineage lock: used only when the store gives no parent. */
    store_ref ref;
    bool have_ref = reference_match(an, fp, &ref) == 0;

    pthread_mutex_lock(&an->lineage_lock);
    if (queue_current(an->q, job->path, job->gen)) {
        int64_t final_id = id;
        bool merged = false;
        size_t compared = 0;
        int rc = store_finish_ready(an->st, job->path, id, &res, &final_id, &merged);
        bool has_parent = false;
        if (rc == 0 && !merged)
            rc = link_model(an, final_id, fp, &res.keys, res.sig, &compared, &has_parent);
        char adapter[512] = "";
        bool linked = false;
        if (rc == 0 && !merged && pa_peft_is_adapter(fp) &&
            link_adapter(an, final_id, fp, abs, &linked, adapter, sizeof adapter) == 0) {
            store_link pl;
            has_parent = store_parent(an->st, final_id, &pl) == 0;
            if (has_parent)
                store_link_clear(&pl);
            store_event(an->st, job->uid, job->pid, job->path, final_id, "adapter", adapter);
        }
        if (rc == 0 && !merged)
            rc = store_set_ref(an->st, final_id, have_ref && !has_parent ? &ref : NULL);
        /* also merged: the content is known, its path is new */
        if (rc == 0 && !pa_peft_is_adapter(fp)) {
            relink r = {.an = an, .job = job, .new_id = final_id};
            store_each_adapter(an->st, relink_one, &r);
        }
        char detail[200];
        snprintf(detail, sizeof detail,
                 "digest %.16s%s, %zu compared, %zu file hash(es) taken while written", res.digest,
                 merged ? " (same content as an existing model)" : "", compared, known.hits);
        store_event(an->st, job->uid, job->pid, job->path, final_id,
                    rc == 0 ? "analyzed" : "store-failed", detail);
    }
    pthread_mutex_unlock(&an->lineage_lock);
    pa_lsh_sig_free(&sig);
    if (have_ref)
        store_ref_clear(&ref);
out:
    free(files);
    free(bin);
    pa_fingerprint_free(fp);
    pa_unit_files_close(&given);
    free(abs);
}

/* ---------------------------------------------------------------- reconcile */

typedef struct recon {
    analyze_ctx *an;
    size_t queued, removed;
} recon;

static int64_t mtime_ns(const struct stat *sb)
{
    return (int64_t)sb->st_mtim.tv_sec * 1000000000 + sb->st_mtim.tv_nsec;
}

static bool files_changed(analyze_ctx *an, const char *abs, int64_t model_id)
{
    store_file *files = NULL;
    size_t n = 0;
    if (store_files(an->st, model_id, &files, &n) != 0)
        return true;
    bool changed = n == 0;
    /* A GGUF unit is one file: its name is looked up in its directory. */
    struct stat self;
    int dfd;
    if (backing_stat(an, abs, &self) == 0 && S_ISREG(self.st_mode)) {
        char *dir = strdup(abs);
        char *slash = dir ? strrchr(dir, '/') : NULL;
        if (slash)
            *(slash == dir ? slash + 1 : slash) = '\0';
        dfd = slash ? backing_open(an, dir, O_PATH | O_DIRECTORY) : -1;
        free(dir);
    } else {
        dfd = backing_open(an, abs, O_PATH | O_DIRECTORY);
    }
    for (size_t i = 0; i < n && !changed; i++) {
        struct stat sb;
        if (dfd < 0 || fstatat(dfd, files[i].name, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
            (uint64_t)sb.st_size != files[i].size || mtime_ns(&sb) != files[i].mtime_ns)
            changed = true;
    }
    if (dfd >= 0)
        close(dfd);
    store_files_free(files, n);
    return changed;
}

static int recon_path(void *ctx, const char *path, int64_t model_id, const char *status,
                      int64_t dir_mtime_ns)
{
    recon *r = ctx;
    char *abs = backing_path(r->an, path);
    if (!abs)
        return 1;
    struct stat sb;
    if (backing_stat(r->an, abs, &sb) != 0 ||
        !(S_ISDIR(sb.st_mode) || (S_ISREG(sb.st_mode) && unit_kind_of(r->an, abs) == UNIT_FILE))) {
        store_remove_path(r->an->st, path, false);
        store_event(r->an->st, 0, 0, path, model_id, "removed", "gone while unmounted");
        r->removed++;
    } else if (strcmp(status, "ready") != 0 || mtime_ns(&sb) != dir_mtime_ns ||
               files_changed(r->an, abs, model_id)) {
        store_set_status(r->an->st, path, "pending");
        queue_mark(r->an->q, path, 0, 0);
        r->queued++;
    }
    free(abs);
    return 0;
}

/* Finds units under BACKING that the store does not know (copied in while unmounted). */
static void recon_walk(recon *r, int dirfd, const char *rel, int depth)
{
    if (depth > 32)
        return;
    if (analyze_unit_check(dirfd, ".") == 1) {
        store_model m;
        int rc = store_model_by_path(r->an->st, rel, &m);
        if (rc == 0)
            store_model_clear(&m);
        else if (rc == 1) {
            queue_mark(r->an->q, rel, 0, 0);
            r->queued++;
        }
    }
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dir) {
        if (fd >= 0)
            close(fd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (depth == 0 && strcmp(de->d_name, ".provfs") == 0)
            continue;
        if (de->d_type != DT_DIR && de->d_type != DT_REG && de->d_type != DT_UNKNOWN)
            continue;
        char child[PATH_MAX];
        int n = snprintf(child, sizeof child, "%s%s%s", rel, strcmp(rel, "/") == 0 ? "" : "/",
                         de->d_name);
        if (n <= 0 || (size_t)n >= sizeof child)
            continue;
        if (de->d_type != DT_DIR && analyze_file_unit_check(dirfd, de->d_name) == 1) {
            /* A GGUF file: a unit of its own. */
            store_model m;
            int rc = store_model_by_path(r->an->st, child, &m);
            if (rc == 0)
                store_model_clear(&m);
            else if (rc == 1) {
                queue_mark(r->an->q, child, 0, 0);
                r->queued++;
            }
            continue;
        }
        int sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0)
            continue;
        recon_walk(r, sub, child, depth + 1);
        close(sub);
    }
    closedir(dir);
}

void analyze_reconcile(analyze_ctx *an)
{
    recon r = {.an = an};
    store_each_path(an->st, recon_path, &r);
    int fd = open(an->backing, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        recon_walk(&r, fd, "/", 0);
        close(fd);
    }
    if (r.queued || r.removed)
        fprintf(stderr, "provfs: reconcile: %zu unit(s) queued, %zu path(s) removed\n", r.queued,
                r.removed);
}
