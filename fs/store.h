/* The lineage store: one SQLite database (WAL) per mounted BACKING.
 *
 * Plain module, no FUSE: provfs and provctl share it. Paths are mount-relative with a leading
 * slash ("/bases/tiny"); the store root is "/". Every function is thread-safe: the store keeps a
 * writer connection and a reader connection, each behind its own mutex, and never holds either
 * across a caller's code. Lock order: store_handle.write_lock, then store_handle.read_lock (never
 * both at once in practice). Return values: 0 success, 1 "not found" where documented, -1 error
 * (a message is logged through the callback given to store_open, or stderr).
 */
#ifndef PROVFS_STORE_H
#define PROVFS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct store_handle store_handle;
struct pa_fingerprint;
struct pa_lsh_sig;

#define STORE_SCHEMA_VERSION 14

/* STORE_PATH_FILTER: keep the paths of model_paths in memory as a filter (store_path_maybe);
 * only for the one daemon that writes a SQLite database (fs/README.md, "Database"). */
enum { STORE_READONLY = 1u << 0, STORE_PATH_FILTER = 1u << 1 };

/* Opens (and creates or migrates, unless READONLY) the database at path. err gets a one-line
 * reason on failure. */
int store_open(const char *path, unsigned flags, store_handle **out, char *err, size_t errlen);
void store_close(store_handle *st);
/* store_open (unless READONLY) makes the database file and its -wal and -shm mode 0600 (owner
 * root when running as root) before opening them, creating the file so; a symlink there refuses
 * the open. Modes are set through O_PATH descriptors: the database is never opened and closed
 * behind SQLite's back (that would drop its POSIX locks). */
/* The store's directory (BACKING/.provfs): mode 0700, each regular file in it 0600, each
 * directory 0700, owner root when running as root; symlinks are never followed (one at dir
 * itself refuses). 0, or -1 with err. */
int store_protect_dir(const char *dir, char *err, size_t errlen);

/* ---------------------------------------------------------------- reading */

typedef struct store_model {
    int64_t id;
    char status[16];
    char digest[65];     /* "" while unknown */
    char format[32];     /* "" while unknown */
    char *error;         /* NULL unless failed/incomplete */
    int64_t analyzed_at; /* unix seconds, 0 = never */
    int64_t created_ns;
} store_model;

/* A timestamp in nanoseconds. */
static inline int64_t store_ts_ns(struct timespec ts)
{
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
/* True when ctime is under 20 ms old: on kernels and filesystems whose timestamps come from a
 * clock tick, a change still to come may share it, so it identifies nothing yet (store_ids.c). */
bool store_ctime_young(int64_t ctime_ns);

typedef struct store_file {
    char *name;
    uint64_t size;
    int64_t mtime_ns;
    /* The file the analysis read, as fstat found it on the very fd (kept per path in
     * model_paths.file_ids, not in table files): a change by any name (another hard link,
     * BACKING itself) moves ctime, which no user can set back. */
    int64_t ctime_ns;
    uint64_t ino;
    char sha256[65];
} store_file;

typedef struct store_link {
    int64_t id;
    char *path;        /* first path of that model, NULL when it has none */
    char *origin_path; /* the path it was first stored at (kept through renames), or NULL */
    double score;
    char verdict[16];
    char *signals;  /* JSON text or NULL */
    bool is_parent; /* the main parent */
    double share;   /* a parent's share of the child (edges.share), NaN when not a parent */
} store_link;

typedef struct store_counts {
    int64_t models, paths, edges;
    int64_t pending, analyzing, ready, incomplete, failed;
} store_counts;

void store_model_clear(store_model *m);
void store_files_free(store_file *files, size_t n);
void store_links_free(store_link *links, size_t n);
/* Frees what one store_link owns (store_parent's result). */
void store_link_clear(store_link *l);

/* 0 and *out filled, 1 when no model has that path. */
int store_model_by_path(store_handle *st, const char *path, store_model *out);
/* false: the store certainly holds no model at path (a look-up can be skipped); true: it may.
 * Always true without STORE_PATH_FILTER. */
bool store_path_maybe(store_handle *st, const char *path);
int store_model_by_id(store_handle *st, int64_t id, store_model *out);
/* First path (sorted) of a model; 1 when none. *out is malloc'd. */
int store_model_path(store_handle *st, int64_t id, char **out);
/* A PEFT adapter's declared base (adapter_config.json's base_model_name_or_path), kept so that
 * an adapter stored before its base is linked when the base arrives; NULL removes it. */
int store_set_adapter_base(store_handle *st, int64_t model_id, const char *declared);
/* The ready adapters with a declared base, the ones tried longest ago first:
 * cb(ctx, id, declared, adapter_parent) for each (adapter_parent: the model its adapter edge
 * links it to as main parent, 0 when none), until cb returns non-zero. */
typedef int (*store_adapter_cb)(void *ctx, int64_t model_id, const char *declared,
                                int64_t adapter_parent);
int store_each_adapter(store_handle *st, store_adapter_cb cb, void *ctx);
/* Notes that the adapter's declaration was resolved again now (the order of store_each_adapter). */
int store_adapter_tried(store_handle *st, int64_t model_id);
/* Drops the adapter's edge from its declared base (a declaration that no longer names one model);
 * its other edges stay, and the best of them, if any, becomes its parent. */
int store_drop_adapter_parent(store_handle *st, int64_t model_id);
int store_files(store_handle *st, int64_t id, store_file **out, size_t *n);
/* 0 and out filled (65 bytes), 1 when the unit has no such file. */
int store_file_sha(store_handle *st, int64_t id, const char *name, char out[65]);
/* The identity the analysis of the unit at unit_path recorded for its file name (ino, size,
 * mtime_ns, ctime_ns; name and sha256 are left alone): 0; 1 when none is recorded for that name
 * (not a file of the unit, or the unit failed); 2 when the unit's identities are unknown (stored
 * by an older version); -1 on error. */
int store_file_id(store_handle *st, const char *unit_path, const char *name, store_file *out);
/* The same by inode: the recorded identity of the file of the unit at unit_path whose inode was
 * ino, its name in name (namelen bytes at most, NUL-terminated); 0, 1 when none (or none known),
 * -1 on error. */
int store_file_id_ino(store_handle *st, const char *unit_path, uint64_t ino, store_file *out,
                      char *name, size_t namelen);
/* The unit paths whose analysis read a file of inode ino (whatever names it has now): *paths
 * malloc'd (store_paths_free), at most 65. 0, or -1 on error. */
int store_units_of_inode(store_handle *st, uint64_t ino, char ***paths, size_t *n);
void store_paths_free(char **paths, size_t n);
/* Records the identities of files[] for path in a transaction of its own (a unit that failed
 * after its files were opened). */
int store_ids_record(store_handle *st, const char *path, const store_file *files, size_t n);
/* A change of metadata only (mode, owner, times, a new link, a rename) made through the mount to
 * the file name of the unit at unit_path: its recorded identity follows to mtime_ns and ctime_ns,
 * but only where it still is exactly was (the file unchanged since its analysis). 0 (also when
 * nothing matched), -1 on error. */
int store_file_follow(store_handle *st, const char *unit_path, const char *name,
                      const store_file *was, int64_t mtime_ns, int64_t ctime_ns);
/* The stored fingerprint's JSON summary (pa_fp_summary_json: config, tokenizer, weight counts,
 * no sketches), 1 when none. The store keeps the compact binary form (analyzer fpbin.c). */
int store_fingerprint(store_handle *st, int64_t id, char **json);
/* The stored fingerprint, decoded; 1 when none (or unreadable: logged). */
int store_fingerprint_fp(store_handle *st, int64_t id, struct pa_fingerprint **out);
/* The is_parent edge into id; 1 when the model has no parent. */
int store_parent(store_handle *st, int64_t id, store_link *out);
/* Every parent of id: the main parent first, then the others by share (store_set_parents). */
int store_parents(store_handle *st, int64_t id, store_link **out, size_t *n);
/* Parents up to the root (nearest first), at most 64 (cycles cannot happen: edges always point
 * from an earlier-created model to a later one). */
int store_ancestors(store_handle *st, int64_t id, store_link **out, size_t *n);
/* Every edge out of id (children and other derived models). */
int store_children(store_handle *st, int64_t id, store_link **out, size_t *n);
int store_counts_get(store_handle *st, store_counts *out);

/* Every path and its model, for reconciling: cb returns non-zero to stop. */
typedef int (*store_path_cb)(void *ctx, const char *path, int64_t model_id, const char *status,
                             int64_t dir_mtime_ns);
int store_each_path(store_handle *st, store_path_cb cb, void *ctx);

/* ---------------------------------------------------------------- analysis */

/* Lineage prefilter keys of a fingerprint (PA_NULL_INT / "" when unknown). */
typedef struct store_keys {
    int64_t hidden_size, num_layers, vocab_size;
    uint64_t n_params;
    uint64_t n_tensors;
    char arch_hash[65];
    char family_hash[65];
} store_keys;

/* Starts analysing path: finds or creates its model row (a model shared with other paths is left
 * to them and path gets a fresh row), sets status 'analyzing', records dir_mtime_ns. */
int store_begin(store_handle *st, const char *path, int64_t created_ns, int64_t dir_mtime_ns,
                int64_t *model_id);
/* Marks a model 'pending' (e.g. found changed on mount). */
int store_set_status(store_handle *st, const char *path, const char *status);
/* Ends an analysis that produced no fingerprint: status is 'failed' or 'incomplete'. Clears the
 * digest, files and edges of the model. */
int store_finish_error(store_handle *st, int64_t model_id, const char *status, const char *error);

typedef struct store_result {
    const char *digest;
    const char *format;
    const void *fingerprint; /* compact binary form (pa_fp_to_bin) */
    size_t fingerprint_len;
    store_keys keys;
    size_t n_files;
    const store_file *files;
    const struct pa_lsh_sig *sig; /* candidate-index keys (analyzer/lsh.h), or NULL: none */
} store_result;

/* Ends a successful analysis. When another model already has this digest, path joins that model
 * (same content at two paths is one model), the row model_id is dropped when no path is left,
 * *final_id is the other model and *merged is true. Otherwise the row gets the result, its files
 * are replaced and its edges removed (the caller links it again). */
int store_finish_ready(store_handle *st, const char *path, int64_t model_id,
                       const store_result *res, int64_t *final_id, bool *merged);

/* Candidate ancestors/descendants for lineage: ready models sharing the hidden size, vocabulary
 * size or family hash with keys, excluding exclude_id. cb gets each one's stored fingerprint
 * (binary, pa_fp_from_bin). */
typedef int (*store_cand_cb)(void *ctx, int64_t id, int64_t created_ns, const char *digest,
                             const void *fp, size_t fp_len);
int store_candidates(store_handle *st, const store_keys *keys, int64_t exclude_id, store_cand_cb cb,
                     void *ctx);

/* Sublinear candidates: the ready models sharing a tensor hash or a band with sig (the index of
 * analyzer/lsh.h signatures), ranked by matches (STORE_HASH_WEIGHT per shared tensor hash, 1 per
 * shared band; a key shared by more than STORE_POSTING_MAX models is skipped), the best k that
 * pass store_candidates' prefilter (keys NULL: no prefilter), best first; *found: how many
 * shared a key. Works on a read-only handle too. */
#define STORE_HASH_WEIGHT 4
#define STORE_POSTING_MAX 4096
int store_retrieve(store_handle *st, const store_keys *keys, const struct pa_lsh_sig *sig,
                   int64_t exclude_id, size_t k, size_t *found, store_cand_cb cb, void *ctx);
/* The models ids[0..n) as candidates (ready, prefiltered by keys unless NULL), in that order. */
int store_candidates_ids(store_handle *st, const store_keys *keys, const int64_t *ids, size_t n,
                         store_cand_cb cb, void *ctx);
/* Index rows held (bands, tensor hashes) and the signature version they were made with. */
int store_lsh_counts(store_handle *st, int64_t *bands, int64_t *hashes, int64_t *version);

/* ---------------------------------------------------------------- shared analysis queue */

/* On a database several daemons share (PostgreSQL), units waiting for analysis are rows of
 * table pending (store_pending.c; fs/README.md "Several hosts"). Times are CLOCK_REALTIME ns. */
bool store_shared(const store_handle *st);
/* path changed: any daemon may analyse it from due_ns on (an older claim on it is void). */
int store_pending_put(store_handle *st, const char *path, int64_t due_ns);
/* Takes path for owner until now_ns + lease_ns: 1 taken (also when owner held it already), 0
 * another daemon holds it, -1 error. A row is made when path has none. */
int store_pending_claim(store_handle *st, const char *path, const char *owner, int64_t now_ns,
                        int64_t lease_ns);
/* owner is done with path (its row goes, unless another change voided the claim). */
int store_pending_done(store_handle *st, const char *path, const char *owner);
/* Every claim of owner now lasts until until_ns. */
int store_pending_renew(store_handle *st, const char *owner, int64_t until_ns);
/* cb for each unit due by now_ns that no live claim holds (at most 256, oldest first; under the
 * reader's lock: cb must not call the store); cb returns non-zero to stop. */
typedef int (*store_pending_cb)(void *ctx, const char *path);
int store_pending_due(store_handle *st, int64_t now_ns, store_pending_cb cb, void *ctx);

/* Copies every row of from into to (store_copy.c): SQLite to PostgreSQL, back, or file to
 * file. from is only read (open it STORE_READONLY) and must have the current schema; to must be
 * empty (its schema only); ids are kept; in one transaction of to, committed only when every
 * table's row count in to equals from's. Run it with no daemon writing from. */
typedef struct store_copy_report {
    size_t tables;
    int64_t rows;
} store_copy_report;
int store_copy(store_handle *from, store_handle *to, store_copy_report *out, char *err,
               size_t errlen);

typedef struct store_edge {
    int64_t parent_id, child_id;
    double score;
    const char *verdict;
    const char *signals;     /* JSON or NULL */
    double rank;             /* orders a child's candidate parents; the best becomes is_parent */
    const char *signals_rev; /* the comparison the other way round (child as a), or NULL */
} store_edge;

/* Replaces every edge touching model_id with edges[]; model_id and every model on the other end
 * that is left without a main parent gets the best-ranked incoming edge as its main parent
 * (share: its coverage). The daemon then decides every parent (store_set_parents). */
int store_set_edges(store_handle *st, int64_t model_id, const store_edge *edges, size_t n);

/* One stored edge as the daemon's lineage step reads it. */
typedef struct store_rel {
    int64_t parent_id, child_id;
    int64_t parent_created_ns, child_created_ns;
    double score, rank;
    char verdict[16];
    char *signals;     /* compare JSON, parent as a */
    char *rev_signals; /* compare JSON, child as a; NULL when not kept (older stores) */
    bool is_parent;
    double share; /* NaN when not a parent */
} store_rel;
/* Every edge touching id. */
int store_related(store_handle *st, int64_t id, store_rel **out, size_t *n);
void store_rels_free(store_rel *rels, size_t n);

/* A parent edge as the daemon decided it: parent_id -> child_id (turning a stored edge of the two
 * round when it ran the other way), is_main for the child's main parent. */
typedef struct store_parent_set {
    int64_t parent_id, child_id;
    double score, rank, share;
    const char *verdict;
    const char *signals, *rev_signals;
    bool is_main;
} store_parent_set;
/* In one transaction: every edge into children[] stops being a parent edge, then each set[] edge
 * is written (replacing the stored edge between its two models, whichever way it ran). */
int store_set_parents(store_handle *st, const int64_t *children, size_t n_children,
                      const store_parent_set *set, size_t n);

/* ---------------------------------------------------------------- namespace changes */

/* Paths are compared byte for byte (case-sensitive, no wildcards, any encoding): "below dir"
 * means starting with dir "/". */
/* Removes path (and, when recursive, the paths below it); models left without paths are
 * deleted (their children relinked). */
int store_remove_path(store_handle *st, const char *path, bool recursive);
/* Renames path and every path below it; whatever was stored at or below to is replaced. -1 when
 * to lies below from. */
int store_rename(store_handle *st, const char *from, const char *to);
/* Appends to the events table. model_id 0 = none. */
int store_event(store_handle *st, uint32_t uid, int32_t pid, const char *path, int64_t model_id,
                const char *kind, const char *detail);

/* The events table keeps at most about this many rows (the oldest go first, in batches of at
 * most max/64): settings.events_max in the database, read at store_open. 0 = no cap. */
#define STORE_EVENTS_MAX_DEFAULT 1000000
/* Sets the cap (stored, so it outlives the mount) and trims now. */
int store_set_events_max(store_handle *st, int64_t max);
int64_t store_events_max(store_handle *st);
/* Policy events are aggregated per window: the same refusal in the same minute (wall clock,
 * aligned) adds one to a row's count. */
#define STORE_EVENTS_WINDOW_NS (60 * (int64_t)1000000000)

/* Gives a failed/incomplete model the digest of its files (so an admin can approve it). 1 when
 * another model already has that digest (left as it is). */
int store_set_digest(store_handle *st, int64_t model_id, const char *digest);

/* ---------------------------------------------------------------- policy (fs/POLICY.md) */

typedef struct store_approval {
    char digest[65];
    char state[16]; /* "approved" or "revoked" */
    uint32_t by_uid;
    int64_t at; /* unix seconds */
    char *note;
} store_approval;

/* state "approved" or "revoked": writes the approvals row and an approve/revoke events row in
 * one synchronous=FULL transaction. */
int store_approval_set(store_handle *st, const char *digest, const char *state, uint32_t uid,
                       int32_t pid, const char *path, int64_t model_id, const char *note);
/* 0 and *out filled (note malloc'd; store_approval_clear), 1 when the digest has no record. */
int store_approval_get(store_handle *st, const char *digest, store_approval *out);
void store_approval_clear(store_approval *a);
/* 1 when some model of ids[] has an approval in force, 0 when none, -1 on error. */
int store_any_approved(store_handle *st, const int64_t *ids, size_t n);
/* 1 when a file with this SHA-256 belongs to a model whose current digest is approved, 0 when
 * none, -1 on error. */
int store_content_approved(store_handle *st, const char *sha256);
/* The path model id was first stored at (kept through renames; *out NULL when unknown). 0, or -1
 * on error. */
int store_origin_path(store_handle *st, int64_t id, char **out);
/* Policy refusal rows: kind "policy", rule, decision "refused"/"would-refuse", detail = reason.
 * A refusal equal to one already logged in the current minute (same uid, unit (model id, or path
 * when 0), rule, decision and reason) adds one to that row's count and sets its last_ns; time_ns,
 * pid and path stay the first refusal's. */
int store_policy_event(store_handle *st, uint32_t uid, int32_t pid, const char *path,
                       int64_t model_id, const char *rule, const char *decision,
                       const char *reason);
/* Increases with every committed write that can change a decision (status, digest, edges,
 * paths, approvals): part of the decision cache key. */
uint64_t store_generation(store_handle *st);

/* ---------------------------------------------------------------- reference matches */

/* A model's match in the reference set (provfs --refdb): a parent (weights gave derived or
 * identical; shown as `ref:NAME` when the model has no parent in the store) or only a family hint
 * (metadata/tokenizer evidence: never a parent, never `derived`). */
typedef struct store_ref {
    bool is_parent;
    char *name;
    char *family;
    double score;
    char verdict[16];
    char *evidence; /* JSON {"weights":..,"metadata":..,"tokenizer":..} or NULL */
    char *signals;  /* compare JSON (provfs.compare/1) or NULL */
} store_ref;

/* Replaces the model's reference match (ref NULL: none). */
int store_set_ref(store_handle *st, int64_t model_id, const store_ref *ref);
/* 0 and *out filled (store_ref_clear), 1 when the model has none. */
int store_ref_get(store_handle *st, int64_t model_id, store_ref *out);
void store_ref_clear(store_ref *r);

#endif
