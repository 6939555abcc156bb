/* Parsed fingerprints of stored models, so lineage work does not re-parse JSON per compare:
 * keyed by model id and content digest, bounded by an approximate byte budget, least recently
 * used first out. Not thread-safe: the caller serialises (analyze.c: the lineage lock). */
#ifndef PROVFS_FPCACHE_H
#define PROVFS_FPCACHE_H

#include "provfs/analyzer.h"

#include <stddef.h>
#include <stdint.h>

typedef struct fpcache fpcache;

/* budget: bytes the cached fingerprints may take (approximately: fpcache_put's bytes). */
fpcache *fpcache_create(size_t budget);
void fpcache_destroy(fpcache *c);

/* The fingerprint cached for (id, digest), now the most recently used; NULL when not cached. */
const pa_fingerprint *fpcache_get(fpcache *c, int64_t id, const char *digest);
/* Caches fp (taken over; freed on failure) for (id, digest), replacing what id had, as
 * taking bytes. Evicts nothing: a pointer returned before stays valid until fpcache_trim.
 * Returns fp, or NULL when out of memory. */
const pa_fingerprint *fpcache_put(fpcache *c, int64_t id, const char *digest, pa_fingerprint *fp,
                                  size_t bytes);
/* Evicts least recently used entries until the cache is within its budget. Invalidates every
 * pointer returned before. */
void fpcache_trim(fpcache *c);
/* Drops id's entry, if any. */
void fpcache_forget(fpcache *c, int64_t id);

size_t fpcache_bytes(const fpcache *c);
size_t fpcache_count(const fpcache *c);
size_t fpcache_evictions(const fpcache *c);

/* Memory an entry holding fp takes (pa_fp_memory and the entry's bookkeeping). */
size_t fpcache_size_of(const pa_fingerprint *fp);

#endif
