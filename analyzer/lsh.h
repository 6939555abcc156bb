/* Locality-sensitive signatures of a fingerprint, for finding a model's plausible relatives in a
 * large store without comparing it with every stored model (fs/store.c keeps them indexed).
 * Two kinds of keys:
 *  - tensor hashes: the first 8 bytes of the SHA-256 of every matrix of at least
 *    PA_LSH_MIN_NUMEL values: a byte-identical tensor (a copy, a partial merge or stitch, a
 *    pruned or vocab-extended model, a LoRA merge that left layers alone) finds its source at once;
 *  - bands: random-projection sign bits (SimHash) of vectors the fingerprint already holds, cut
 *    into bands of PA_LSH_BAND_BITS bits; two vectors at angle t agree on a bit with probability
 *    1 - t/pi, on a band with (1 - t/pi)^PA_LSH_BAND_BITS: near-certain for a fine-tune (angle a
 *    few hundredths), 1 in 65,536 for unrelated vectors.
 * A candidate shares a tensor hash or at least one band; candidates rank by matches. The
 * projections come from fixed seeds: PA_LSH_VERSION changes whenever anything here changes what
 * a signature is (the store re-indexes). lsh.c says why each vector is used. */
#ifndef PA_LSH_H
#define PA_LSH_H
#include "provfs/analyzer.h"

#include <stddef.h>
#include <stdint.h>

#define PA_LSH_VERSION 2 /* 2: signatures of the compact sketches (compact.c) */
#define PA_LSH_BAND_BITS 16
#define PA_LSH_BANDS 4       /* bands per vector (64 projections) */
#define PA_LSH_MIN_NUMEL 1024
#define PA_LSH_MAX_LAYERS 8  /* blocks whose matrices give bands, evenly spaced (all when fewer) */

/* Sources of bands: the top byte of a band number. */
enum {
    PA_LSH_SRC_TENSOR = 1, /* one matrix's block sketch; index: its role and block */
    PA_LSH_SRC_ANCHOR_ROWS = 2,
    PA_LSH_SRC_ANCHOR_COS = 3,
    PA_LSH_SRC_PROBE = 4, /* index: the block */
};

typedef struct pa_lsh_band {
    int64_t no;    /* source << 56 | index << 8 | band within the vector */
    int64_t value; /* PA_LSH_BAND_BITS sign bits */
} pa_lsh_band;

typedef struct pa_lsh_sig {
    size_t n_bands, n_hashes;
    pa_lsh_band *bands;
    int64_t *hashes; /* sorted, unique */
} pa_lsh_sig;

/* The signature of fp (empty without weights). 0, or -1 out of memory. */
int pa_lsh_signature(const pa_fingerprint *fp, pa_lsh_sig *out);
void pa_lsh_sig_free(pa_lsh_sig *sig);

/* The PA_LSH_BANDS bands of one vector v[0..n) under band numbers (source, index): appended to
 * out (room for PA_LSH_BANDS). Returns the bands written: 0 when v has a non-finite value or is
 * constant. Exposed for synthetic benchmarks (tools/benchtool.c). */
size_t pa_lsh_vector_bands(int source, uint32_t index, const float *v, size_t n,
                           pa_lsh_band *out);

#endif
