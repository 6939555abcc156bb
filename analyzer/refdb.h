/* Reference sets and scan: name the known base a model most likely comes from.
 *
 * A reference entry is a fingerprint (possibly metadata-only: MFI + TFV, no weights, no vocabulary
 * sketch) with a name, a family and a source. On disk a reference *set* is a directory
 *
 *     SET/entries/<safe-name>.json   {"schema": "provfs.refentry/1", "name": ..., "family": ...,
 *                                     "source": ..., "fingerprint": <provfs.fingerprint/1 object>}
 *
 * and a reference *directory* holds one set (DIR/entries) and/or several (DIR/<set>/entries);
 * loading reads all of them. Entry files are data: every field is type-checked and a bad one is
 * refused with a message naming the file.
 *
 * Honesty rule of scan (the top of analyzer/score.c says why): metadata and tokenizer features only ever give a family hint
 * (verdict `weak` or `none`); `derived` and `identical` need weight fingerprints on both sides and
 * come from pa_compare.
 */
#ifndef PA_REFDB_H
#define PA_REFDB_H
#include "provfs/analyzer.h"

#define PA_REFENTRY_SCHEMA "provfs.refentry/1"
#define PA_REFENTRY_MAX_FILE                                                                       \
    (64u * 1024u * 1024u) /* one entry (a full 7B fingerprint is < 1 MiB) */
#define PA_REFDB_MAX_ENTRIES 1000000u
#define PA_REFDB_MAX_NAME 256 /* bytes of name, family and source */

typedef struct pa_refentry {
    char *name;
    char *family;
    char *source; /* e.g. "cisco-mpk:pythia-1.4b__hf-safetensors", "local:/abs/path" */
    char *file;   /* the entry file it was loaded from ("" when built in memory) */
    pa_fingerprint *fp;
} pa_refentry;

typedef struct pa_refdb pa_refdb;

/* Load every entry under dir (the *.json files of dir/entries and of each dir/SET/entries, sorted).
 * A missing dir is an error; a dir without entries gives an empty database. */
pa_status pa_refdb_load(const char *dir, pa_refdb **out, pa_error *err);
void pa_refdb_free(pa_refdb *db);
size_t pa_refdb_count(const pa_refdb *db);
/* Entry i (0 <= i < count), NULL when out of range. */
const pa_refentry *pa_refdb_entry(const pa_refdb *db, size_t i);
const char *pa_refdb_name(const pa_refdb *db, size_t i);
const char *pa_refdb_family(const pa_refdb *db, size_t i);
const char *pa_refdb_source(const pa_refdb *db, size_t i);
const pa_fingerprint *pa_refdb_fingerprint(const pa_refdb *db, size_t i);

/* One entry file: parse / read / write. Parsing checks the schema, the three strings (non-empty,
 * at most PA_REFDB_MAX_NAME bytes, no control characters) and the fingerprint. */
pa_status pa_refentry_parse(const char *json, size_t len, const char *label, pa_refentry *out,
                            pa_error *err);
pa_status pa_refentry_read(const char *path, pa_refentry *out, pa_error *err);
void pa_refentry_clear(pa_refentry *e);
/* Write out_dir/entries/<safe-name>.json (directories created, file replaced atomically). When
 * path_out is non-NULL it receives the malloc'd path written. */
pa_status pa_refdb_write_entry(const char *out_dir, const char *name, const char *family,
                               const char *source, const pa_fingerprint *fp, char **path_out,
                               pa_error *err);
/* File-name form of a name: [A-Za-z0-9._-] kept, everything else '_', no leading '.', at most 200
 * bytes. out must hold 201 bytes. */
void pa_refdb_safe_name(const char *name, char out[201]);

/* Convert Cisco's Model Provenance Kit reference database (catalog/manifest.json, the
 * catalog/by-family shards and each asset's *_features.json) into metadata-only entries in
 * out_dir: name = model_id, family = family_id, source = "cisco-mpk:" + asset_id, MFI exactly as
 * the record gives it (its arch_hash and family_hash kept), TFV from its tfv. LICENSE and NOTICE
 * of mpk_dir are copied to out_dir. Entries of the same names are replaced, others left alone;
 * the first bad record stops the import with an error naming its file. */
pa_status pa_refdb_import_mpk(const char *mpk_dir, const char *out_dir, size_t *n_imported,
                              pa_error *err);
/* The metadata-only fingerprint of one MPK features record (exposed for tests and fuzzing);
 * label names the file in messages. */
pa_status pa_refdb_mpk_record(const char *json, size_t len, const char *label, pa_fingerprint **out,
                              char **model_id, char **family_id, char **asset_id, pa_error *err);
/* Add a local model (directory or .safetensors) with its full fingerprint, weights included. */
pa_status pa_refdb_add_model(const char *out_dir, const char *model_dir, const char *name,
                             const char *family, pa_error *err);

/* ---------------------------------------------------------------- scan */

/* A candidate from outside a reference set (e.g. a stored model of a provfs store). */
typedef struct pa_scan_ref {
    const char *name;
    const char *family;
    const pa_fingerprint *fp;
} pa_scan_ref;

typedef struct pa_scan_options {
    size_t top_k;     /* 0 = every candidate that passed the pre-filter */
    double threshold; /* metadata hints: `weak` at or above it, else `none`; <= 0 means 0.75 */
    bool no_prefilter;
} pa_scan_options;

#define PA_SCAN_DEFAULT_THRESHOLD 0.75

typedef struct pa_scan_evidence {
    bool weights;   /* both sides have weight fingerprints: score and verdict are pa_compare's */
    bool metadata;  /* both sides have config metadata (MFI) */
    bool tokenizer; /* both sides have tokenizer features (TFV) or vocabulary sketches */
} pa_scan_evidence;

typedef struct pa_scan_match {
    char *name;
    char *family;
    double score; /* 0..1 */
    double rank;  /* pa_parent_rank with weights on both sides, else the score: orders matches */
    pa_verdict verdict;
    pa_scan_evidence evidence;
    int mfi_tier;           /* 0 when not compared */
    double mfi_score;       /* NaN when not compared */
    double tokenizer_score; /* NaN when not compared */
    double detail;   /* agreement of the metadata fields outside arch_hash: orders equal scores */
    bool from_refdb; /* false: an extra candidate (stored model) */
} pa_scan_match;

typedef struct pa_scan_stats {
    size_t candidates; /* entries + extras seen */
    size_t compared;   /* passed the pre-filter */
} pa_scan_stats;

/* Rank the entries of db (may be NULL) and extra[0..n_extra) for model, best first: by verdict
 * (identical, derived, weak, none), then score, then metadata detail, then name. */
pa_status pa_scan(const pa_refdb *db, const pa_scan_ref *extra, size_t n_extra,
                  const pa_fingerprint *model, const pa_scan_options *opt, pa_scan_match **out,
                  size_t *n_out, pa_scan_stats *stats, pa_error *err);
void pa_scan_free(pa_scan_match *matches, size_t n);
/* scan --json object (schema provfs.scan/1); caller frees. */
char *pa_scan_to_json(const char *model_label, const pa_scan_match *matches, size_t n,
                      const pa_scan_stats *stats, bool pretty);

/* Pre-filter keys (exposed for tests): the parameter count (exact with weights, else estimated
 * from the MFI; 0 when unknown) and whether a candidate may be compared with model at all. */
uint64_t pa_scan_param_estimate(const pa_fingerprint *fp);
bool pa_scan_prefilter(const pa_fingerprint *candidate, const pa_fingerprint *model);
#endif
