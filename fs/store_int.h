/* Private to the lineage store's files (store.c, store_read.c, store_lineage.c, store_index.c,
 * store_ns.c, store_policy.c, store_ref.c, and the schemas store_sqlite.c and store_pg.c); not a public interface: everything else uses store.h.
 * The helpers below are documented where they are defined. */
#ifndef PROVFS_STORE_INT_H
#define PROVFS_STORE_INT_H

#include "db.h"
#include "lsh.h"
#include "store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Prepared statements are kept per connection and reused: preparing costs more than most of
 * the queries take to run. A slot is taken by prep and given back by done, both under the
 * connection's lock (read_lock or write_lock), like every use of the connection. A statement
 * in use is never handed out twice; past STMT_SLOTS, or for SQL of another connection,
 * statements are prepared and finalized each time. */
#define STMT_SLOTS 64
typedef struct stmt_cache {
    struct {
        db_stmt *stmt;
        uint64_t hash; /* of its SQL text */
        bool out;      /* taken by prep, not yet given back */
    } slot[STMT_SLOTS];
    int n;
} stmt_cache;

struct store_handle {
    pthread_mutex_t write_lock; /* protects wr and wr_cache */
    db_conn *wr;                /* NULL when read-only */
    pthread_mutex_t read_lock;  /* protects rd and rd_cache */
    db_conn *rd;
    stmt_cache wr_cache, rd_cache;
    /* Bumped after every committed write that can change a policy decision. */
    atomic_uint_fast64_t generation;
    /* A database other daemons write too (PostgreSQL): their writes bump provfs_generation.n,
     * read again at most every STORE_SHARED_POLL_MS by store_generation (store_policy.c). */
    bool shared;
    atomic_uint_fast64_t remote_generation;
    atomic_int_fast64_t polled_ms;
    /* events rotation (under write_lock): the row cap (0 = none) and the inserts since the last
     * trim. */
    int64_t events_max;
    unsigned events_since_trim;
    /* STORE_PATH_FILTER: a Bloom filter of every path ever put in model_paths since the open
     * (store_path_note, by the writes that insert one); bits are only ever set, so a path
     * removed since stays "maybe" (one look-up) until the next open. NULL: no filter. */
    _Atomic uint64_t *path_bits;
    size_t path_mask; /* bits - 1 (a power of two) */
};

/* Adds path to the filter (no-op without one). store_path.c */
void store_path_note(store_handle *st, const char *path);
/* Builds the filter from model_paths (store_open). 0, or -1. */
int store_path_filter_load(store_handle *st);
void store_path_filter_free(store_handle *st);

/* How often store_generation reads a shared database's generation (ms): a change made through
 * another daemon reaches this one's decisions within this time. */
#define STORE_SHARED_POLL_MS 250

/* Statements, transactions and columns (store.c). */
void store_log(db_conn *db, const char *what);
int64_t now_ns(void);
int exec_sql(db_conn *db, const char *sql);
db_stmt *prep(store_handle *st, db_conn *db, const char *sql);
void done(store_handle *st, db_stmt *stmt);
int step_done(store_handle *st, db_conn *db, db_stmt *stmt);
int step_id(store_handle *st, db_conn *db, db_stmt *stmt, int64_t *id);
void copy_col(db_stmt *stmt, int col, char *out, size_t outlen);
char *dup_col(db_stmt *stmt, int col);
void bind_text(db_stmt *stmt, int idx, const char *text);
void bind_opt_int(db_stmt *stmt, int idx, int64_t v);
int tx_begin(store_handle *st);
int tx_end(store_handle *st, int ret);
/* store_ids.c: records the identities of files[] for path (in a transaction). */
int store_ids_set(store_handle *st, const char *path, const store_file *files, size_t n);
/* Rebuilds the file_inodes rows of path from its file_ids text (NULL: none; in a transaction). */
int store_ids_index(store_handle *st, const char *path, const char *text);
/* On a shared database, inside a write transaction just before COMMIT: tells the other daemons
 * (store_generation). 0, or -1. */
int shared_bump(store_handle *st);
int wr_int(store_handle *st, const char *sql, int64_t arg, const char *text, int64_t *out);
int wr_exec_id(store_handle *st, const char *sql, int64_t id);

/* Models and edges (store_lineage.c). */
int relink_child(store_handle *st, int64_t child);
int drop_if_orphan(store_handle *st, int64_t id);

/* The candidate index (store_index.c). */
int lsh_put(store_handle *st, int64_t model_id, const pa_lsh_sig *sig);
int fp_upgrade(store_handle *st, char *err, size_t errlen); /* JSON fingerprints to fpbin */
int lsh_backfill(store_handle *st, char *err, size_t errlen);

/* Events (store_policy.c). */
int trim_events(store_handle *st, int64_t newest);

/* Makes or upgrades the schema on a writer connection: 0, or -1 with err. */
int store_sqlite_migrate(db_conn *db, char *err, size_t errlen);
int store_pg_migrate(db_conn *db, char *err, size_t errlen);
/* SQL that differs between the engines, as expressions (see their definitions). */
extern const char store_sqlite_share_sql[], store_pg_share_sql[];

#endif
