/* The lineage store's schema on SQLite: one migration per schema version, the version kept in
 * PRAGMA user_version. store_pg.c holds the same schema for PostgreSQL. */
#include "store_int.h"

#include <stdio.h>

/* Version 1. Each later version appends one migration; store_open runs the missing ones. */
static const char *const migrations[] = {
    "CREATE TABLE models ("
    "  id INTEGER PRIMARY KEY,"
    "  digest TEXT UNIQUE,"
    "  status TEXT NOT NULL CHECK (status IN"
    "    ('pending','analyzing','ready','incomplete','failed')),"
    "  error TEXT,"
    "  format TEXT,"
    "  fingerprint TEXT,"
    "  hidden_size INTEGER, num_layers INTEGER, vocab_size INTEGER,"
    "  n_params INTEGER, n_tensors INTEGER, arch_hash TEXT, family_hash TEXT,"
    "  created_ns INTEGER NOT NULL,"
    "  analyzed_at INTEGER);"
    "CREATE INDEX models_hidden ON models(hidden_size);"
    "CREATE INDEX models_vocab ON models(vocab_size);"
    "CREATE INDEX models_family ON models(family_hash);"
    "CREATE TABLE model_paths ("
    "  path TEXT PRIMARY KEY,"
    "  model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,"
    "  dir_mtime_ns INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX model_paths_model ON model_paths(model_id);"
    "CREATE TABLE files ("
    "  model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,"
    "  name TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT,"
    "  PRIMARY KEY (model_id, name));"
    "CREATE TABLE edges ("
    "  parent_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,"
    "  child_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,"
    "  score REAL NOT NULL, verdict TEXT NOT NULL, signals TEXT,"
    "  rank REAL NOT NULL DEFAULT 0,"
    "  is_parent INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (parent_id, child_id));"
    "CREATE INDEX edges_child ON edges(child_id);"
    "CREATE TABLE events ("
    "  id INTEGER PRIMARY KEY, time_ns INTEGER NOT NULL, uid INTEGER, pid INTEGER,"
    "  path TEXT, model_id INTEGER, kind TEXT NOT NULL, detail TEXT);",
    /* 2: approvals (bound to content digests, no foreign key: they outlive model rows) and the
     * policy columns of events. fs/POLICY.md. */
    "CREATE TABLE approvals ("
    "  digest TEXT PRIMARY KEY,"
    "  state TEXT NOT NULL CHECK (state IN ('approved','revoked')),"
    "  by_uid INTEGER NOT NULL,"
    "  at INTEGER NOT NULL,"
    "  note TEXT NOT NULL DEFAULT '');"
    "ALTER TABLE events ADD COLUMN rule TEXT;"
    "ALTER TABLE events ADD COLUMN decision TEXT;"
    "CREATE INDEX events_time ON events(time_ns);",
    /* Reference-set match of a model (fs/README.md "Reference sets"): a parent `ref:NAME` when
     * weights matched, else a family hint. One row per model, replaced by every analysis. */
    "CREATE TABLE model_refs ("
    "  model_id INTEGER PRIMARY KEY REFERENCES models(id) ON DELETE CASCADE,"
    "  kind TEXT NOT NULL CHECK (kind IN ('parent','hint')),"
    "  name TEXT NOT NULL, family TEXT NOT NULL, score REAL NOT NULL, verdict TEXT NOT NULL,"
    "  evidence TEXT, signals TEXT);",
    /* 4: repeated policy refusals aggregate into one events row per minute (count, last_ns), and
     * the events table is capped (settings.events_max, oldest rows deleted first). */
    "ALTER TABLE events ADD COLUMN count INTEGER NOT NULL DEFAULT 1;"
    "ALTER TABLE events ADD COLUMN last_ns INTEGER;"
    "CREATE INDEX events_policy ON events(uid, model_id, time_ns) WHERE kind = 'policy';"
    "CREATE TABLE settings (key TEXT PRIMARY KEY, value NOT NULL);"
    "INSERT INTO settings (key, value) VALUES ('events_max', 1000000);",
    /* 5: files by content, for "these bytes are a file of an approved unit" (a Hugging Face
     * cache's blobs, read through the snapshot that names them). */
    "CREATE INDEX IF NOT EXISTS files_sha ON files(sha256);",
    /* 6: the path a model was first stored at, kept through renames: deny_families globs match
     * it too, so moving a denied model's directory does not escape the rule. */
    "ALTER TABLE models ADD COLUMN origin_path TEXT;"
    "UPDATE models SET origin_path ="
    "  (SELECT min(path) FROM model_paths WHERE model_id = models.id);",
    /* 7: several parents. share: the part of the child this parent explains and no
     * better-ranked parent does (NULL: not a parent); rev_signals: the comparison the other way
     * round (child as a), so the daemon can turn an edge when a better parent arrives later.
     * An existing parent edge stays the only parent, with its coverage as its share. */
    "ALTER TABLE edges ADD COLUMN share REAL;"
    "ALTER TABLE edges ADD COLUMN rev_signals TEXT;"
    "UPDATE edges SET share = CASE"
    "  WHEN json_valid(signals) AND json_type(signals, '$.explained_share') IN ('real','integer')"
    "  THEN json_extract(signals, '$.explained_share') ELSE 1.0 END"
    "  WHERE is_parent = 1;",
    /* 8: the candidate index (analyzer/lsh.h): per-tensor SHA-256 prefixes and locality-sensitive
     * bands of each ready model, so the relatives of a new model are found without comparing it
     * with every stored model of its shape. settings.lsh_version: the signature version the rows
     * were made with; store_open re-indexes every stored fingerprint when it differs. */
    "CREATE TABLE IF NOT EXISTS lsh_bands ("
    "  band_no INTEGER NOT NULL, band_value INTEGER NOT NULL,"
    "  model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE);"
    "CREATE INDEX IF NOT EXISTS lsh_bands_key ON lsh_bands(band_no, band_value);"
    "CREATE INDEX IF NOT EXISTS lsh_bands_model ON lsh_bands(model_id);"
    "CREATE TABLE IF NOT EXISTS tensor_hashes ("
    "  hash INTEGER NOT NULL,"
    "  model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE);"
    "CREATE INDEX IF NOT EXISTS tensor_hashes_key ON tensor_hashes(hash);"
    "CREATE INDEX IF NOT EXISTS tensor_hashes_model ON tensor_hashes(model_id);"
    "INSERT OR REPLACE INTO settings (key, value) VALUES ('lsh_version', 0);",
    /* 9: the store root's counts (.provenance) kept by triggers, so reading them does not
     * count the tables; store_counts_get. Foreign-key cascades fire the delete triggers. */
    "CREATE TABLE IF NOT EXISTS store_stats (key TEXT PRIMARY KEY, n INTEGER NOT NULL);"
    "INSERT OR REPLACE INTO store_stats (key, n) VALUES"
    "  ('models', (SELECT count(*) FROM models)),"
    "  ('paths', (SELECT count(*) FROM model_paths)),"
    "  ('edges', (SELECT count(*) FROM edges)),"
    "  ('status:pending', (SELECT count(*) FROM models WHERE status = 'pending')),"
    "  ('status:analyzing', (SELECT count(*) FROM models WHERE status = 'analyzing')),"
    "  ('status:ready', (SELECT count(*) FROM models WHERE status = 'ready')),"
    "  ('status:incomplete', (SELECT count(*) FROM models WHERE status = 'incomplete')),"
    "  ('status:failed', (SELECT count(*) FROM models WHERE status = 'failed'));"
    "CREATE TRIGGER IF NOT EXISTS stats_models_ins AFTER INSERT ON models BEGIN"
    "  UPDATE store_stats SET n = n + 1 WHERE key IN ('models', 'status:' || NEW.status); END;"
    "CREATE TRIGGER IF NOT EXISTS stats_models_del AFTER DELETE ON models BEGIN"
    "  UPDATE store_stats SET n = n - 1 WHERE key IN ('models', 'status:' || OLD.status); END;"
    "CREATE TRIGGER IF NOT EXISTS stats_models_status AFTER UPDATE OF status ON models"
    "  WHEN OLD.status IS NOT NEW.status BEGIN"
    "  UPDATE store_stats SET n = n - 1 WHERE key = 'status:' || OLD.status;"
    "  UPDATE store_stats SET n = n + 1 WHERE key = 'status:' || NEW.status; END;"
    "CREATE TRIGGER IF NOT EXISTS stats_paths_ins AFTER INSERT ON model_paths BEGIN"
    "  UPDATE store_stats SET n = n + 1 WHERE key = 'paths'; END;"
    "CREATE TRIGGER IF NOT EXISTS stats_paths_del AFTER DELETE ON model_paths BEGIN"
    "  UPDATE store_stats SET n = n - 1 WHERE key = 'paths'; END;"
    "CREATE TRIGGER IF NOT EXISTS stats_edges_ins AFTER INSERT ON edges BEGIN"
    "  UPDATE store_stats SET n = n + 1 WHERE key = 'edges'; END;"
    "CREATE TRIGGER IF NOT EXISTS stats_edges_del AFTER DELETE ON edges BEGIN"
    "  UPDATE store_stats SET n = n - 1 WHERE key = 'edges'; END;",
    /* 10: the base a PEFT adapter declares, so that an adapter stored before its base is
     * linked when the base arrives (without reading every adapter's files again). */
    "CREATE TABLE IF NOT EXISTS adapter_bases ("
    "  model_id INTEGER PRIMARY KEY REFERENCES models(id) ON DELETE CASCADE,"
    "  declared TEXT NOT NULL, tried_ns INTEGER NOT NULL DEFAULT 0);",
    /* 11: the candidate index's key indexes cover model_id, so a lookup reads the index alone
     * (at a million models, a model's ~100 keys match ~1,500 rows: one table read each before). */
    "DROP INDEX IF EXISTS lsh_bands_key;"
    "CREATE INDEX lsh_bands_key ON lsh_bands(band_no, band_value, model_id);"
    "DROP INDEX IF EXISTS tensor_hashes_key;"
    "CREATE INDEX tensor_hashes_key ON tensor_hashes(hash, model_id);",
    /* 12: units waiting for analysis, for daemons sharing a database (store_pending.c); a
     * SQLite file has one daemon and leaves it empty. */
    "CREATE TABLE IF NOT EXISTS pending ("
    "  path TEXT PRIMARY KEY, due_ns INTEGER NOT NULL, owner TEXT,"
    "  lease_ns INTEGER NOT NULL DEFAULT 0);",
    /* 13: fingerprints in their compact binary form (analyzer/fpbin.c); store_open converts
     * the JSON ones of older versions (fp_upgrade) and column fingerprint stays NULL. */
    "ALTER TABLE models ADD COLUMN fpbin BLOB;",
    /* 14: the identity of each file of the unit at this path as its analysis read it
     * (store_ids.c), compared by the gate at every open (fs/SECURITY.md: writes through another
     * hard link). NULL: unknown (rows of older versions: analysed again at their first open). */
    "ALTER TABLE model_paths ADD COLUMN file_ids TEXT;"
    /* the unit paths whose files include an inode, whatever names it has now */
    "CREATE TABLE file_inodes (ino INTEGER NOT NULL, path TEXT NOT NULL,"
    "  PRIMARY KEY (ino, path));"
    "CREATE INDEX file_inodes_path ON file_inodes(path);",
};
#define N_MIGRATIONS (sizeof migrations / sizeof migrations[0])
_Static_assert(N_MIGRATIONS == STORE_SCHEMA_VERSION, "one migration per schema version");

int store_sqlite_migrate(db_conn *db, char *err, size_t errlen)
{
    if (exec_sql(db, "BEGIN IMMEDIATE") != 0)
        goto fail;
    db_stmt *stmt = prep(NULL, db, "PRAGMA user_version");
    if (!stmt)
        goto rollback;
    int version = db_step(stmt) == DB_ROW ? (int)db_col_int64(stmt, 0) : -1;
    done(NULL, stmt);
    if (version < 0 || version > (int)N_MIGRATIONS) {
        snprintf(err, errlen, "database schema version %d is newer than this provfs (%d)", version,
                 (int)N_MIGRATIONS);
        exec_sql(db, "ROLLBACK");
        return -1;
    }
    for (int v = version; v < (int)N_MIGRATIONS; v++) {
        char sql[64];
        if (exec_sql(db, migrations[v]) != 0)
            goto rollback;
        snprintf(sql, sizeof sql, "PRAGMA user_version=%d", v + 1);
        if (exec_sql(db, sql) != 0)
            goto rollback;
    }
    if (exec_sql(db, "COMMIT") != 0)
        goto rollback;
    return 0;
rollback:
    exec_sql(db, "ROLLBACK");
fail:
    snprintf(err, errlen, "schema migration failed: %s", db_errmsg(db));
    return -1;
}

/* The share of a child an edge's parent explains: signals.explained_share when it is a number,
 * else all of it (store_lineage.c, relink_child). */
const char store_sqlite_share_sql[] =
    "CASE WHEN json_valid(signals) AND"
    "  json_type(signals, '$.explained_share') IN ('real','integer')"
    " THEN json_extract(signals, '$.explained_share') ELSE 1.0 END";
