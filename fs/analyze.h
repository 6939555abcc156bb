/* The analysis worker: fingerprint a unit on BACKING, store it, link it into the lineage.
 * Plain module (no FUSE). It only ever reads BACKING paths, never the mountpoint: a daemon that
 * reads its own mount deadlocks. */
#ifndef PROVFS_ANALYZE_H
#define PROVFS_ANALYZE_H

#include "queue.h"
#include "store.h"

#include <stddef.h>

typedef struct analyze_ctx analyze_ctx;

/* backing_abs: canonical absolute path of BACKING (no trailing slash, "/" allowed). */
analyze_ctx *analyze_create(const char *backing_abs, store_handle *st, int fp_threads);
void analyze_set_queue(analyze_ctx *an, queue *q);
/* Parsed fingerprints of stored models are cached within a budget of about bytes (fpcache.h),
 * ANALYZE_FP_CACHE_MB MiB by default; before the first job. 0, or -1 out of memory. */
#define ANALYZE_FP_CACHE_MB 64
int analyze_set_fp_cache(analyze_ctx *an, size_t bytes);
/* Candidates of a new model: the k best from the candidate index (analyzer/lsh.h, store_retrieve)
 * and the families of the relatives among them, ANALYZE_RETRIEVE_K by default; 0 compares it with
 * every stored model of its shape (tests compare the two). */
#define ANALYZE_RETRIEVE_K 32
void analyze_set_retrieval(analyze_ctx *an, size_t k);
/* What the cache holds now: approximate bytes, entries, evictions so far. */
void analyze_fp_cache_stats(analyze_ctx *an, size_t *bytes, size_t *count, size_t *evictions);
/* Before the first job: parse every unit in a fresh unprivileged worker process (fs/worker.h);
 * NULL (the default) parses in this process (provctl, tests). */
struct worker_cfg;
void analyze_set_worker(analyze_ctx *an, const struct worker_cfg *cfg);
/* Loads the reference set(s) under dir (analyzer/refdb.h) before the first job: a model without
 * a derived/identical parent in the store is scanned against it. 0, or -1 with err filled. */
int analyze_load_refdb(analyze_ctx *an, const char *dir, size_t *n_entries, char *err,
                       size_t errlen);
void analyze_destroy(analyze_ctx *an);

/* queue_fn: analyses job->path. */
void analyze_job(void *ctx, const queue_job *job);
/* A database other daemons share (shared.h): jobs run under a claim named owner, lasting
 * lease_ns without renewal. */
void analyze_set_shared(analyze_ctx *an, const char *owner, int64_t lease_ns);

/* Is the directory dirfd/rel (rel relative, "." for dirfd itself) a model unit: config.json and
 * a weights file or index (pa_unit_weights_name: *.safetensors, pytorch_model*.bin, their
 * index)? 1 yes, 0 no, -1 not a directory / missing. */
int analyze_unit_check(int dirfd, const char *rel);

/* Is dirfd/rel (relative to dirfd, or absolute) a file unit? A GGUF file (the magic "GGUF", or a
 * name *.gguf, so a damaged one fails visibly) is a unit of its own wherever it is, also inside a
 * Hugging Face unit; any other model format (pa_sniff_format on its first bytes, or
 * pa_model_suffix) is one when its directory is not a directory unit: a lone weights file, one in
 * a subdirectory of a unit, the weights of a unit whose config.json went away. 1 yes, 0 no, -1
 * missing or not a regular file. */
int analyze_file_unit_check(int dirfd, const char *rel);

/* Mount-time reconciliation (run it on its own thread): paths whose directory is gone are
 * removed, changed or unfinished units are queued, units added while unmounted are found. */
void analyze_reconcile(analyze_ctx *an);

#endif
