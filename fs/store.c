/* The lineage store (SQLite). Schema and migrations: see fs/README.md. This file: connections,
 * the statement cache, schema and migrations, file modes, open and close; the rest is in
 * store_*.c, which share store_int.h. */
#include "store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
};
#define N_MIGRATIONS (sizeof migrations / sizeof migrations[0])
_Static_assert(N_MIGRATIONS == STORE_SCHEMA_VERSION, "one migration per schema version");

void store_log(sqlite3 *db, const char *what)
{
    fprintf(stderr, "provfs: store: %s: %s\n", what, db ? sqlite3_errmsg(db) : "no database");
}

int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int exec_sql(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "provfs: store: %s\n", msg ? msg : "exec failed");
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static stmt_cache *cache_of(store_handle *st, sqlite3 *db)
{
    if (!st || !db)
        return NULL;
    return db == st->rd ? &st->rd_cache : db == st->wr ? &st->wr_cache : NULL;
}

static uint64_t sql_hash(const char *sql)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)sql; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}

/* A statement for sql on db (st's rd or wr, under its lock; st NULL: not kept), given back
 * with done(). */
sqlite3_stmt *prep(store_handle *st, sqlite3 *db, const char *sql)
{
    stmt_cache *c = cache_of(st, db);
    uint64_t h = c ? sql_hash(sql) : 0;
    if (c) {
        for (int i = 0; i < c->n; i++) {
            if (!c->slot[i].out && c->slot[i].hash == h &&
                strcmp(sqlite3_sql(c->slot[i].stmt), sql) == 0) {
                c->slot[i].out = true;
                return c->slot[i].stmt;
            }
        }
    }
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        store_log(db, sql);
        sqlite3_finalize(stmt);
        return NULL;
    }
    if (c && c->n < STMT_SLOTS) {
        c->slot[c->n].stmt = stmt;
        c->slot[c->n].hash = h;
        c->slot[c->n].out = true;
        c->n++;
    }
    return stmt;
}

/* Gives back a statement from prep: reset, bindings cleared (none points into the caller's
 * memory any more) and kept, or finalized when it is not kept. */
void done(store_handle *st, sqlite3_stmt *stmt)
{
    if (!stmt)
        return;
    /* only the cache of the statement's own connection: the caller holds that one's lock */
    stmt_cache *c = cache_of(st, sqlite3_db_handle(stmt));
    for (int i = 0; c && i < c->n; i++) {
        if (c->slot[i].stmt == stmt) {
            sqlite3_reset(stmt);
            sqlite3_clear_bindings(stmt);
            c->slot[i].out = false;
            return;
        }
    }
    sqlite3_finalize(stmt);
}

static void cache_clear(stmt_cache *c)
{
    for (int i = 0; i < c->n; i++)
        sqlite3_finalize(c->slot[i].stmt);
    c->n = 0;
}

/* Runs a statement that returns no rows; binds are done by the caller. Gives it back. */
int step_done(store_handle *st, sqlite3 *db, sqlite3_stmt *stmt)
{
    int rc = sqlite3_step(stmt);
    done(st, stmt);
    if (rc != SQLITE_DONE) {
        store_log(db, "step");
        return -1;
    }
    return 0;
}

void copy_col(sqlite3_stmt *stmt, int col, char *out, size_t outlen)
{
    const unsigned char *text = sqlite3_column_text(stmt, col);
    snprintf(out, outlen, "%s", text ? (const char *)text : "");
}

char *dup_col(sqlite3_stmt *stmt, int col)
{
    const unsigned char *text = sqlite3_column_text(stmt, col);
    return text ? strdup((const char *)text) : NULL;
}

void bind_text(sqlite3_stmt *stmt, int idx, const char *text)
{
    if (text && *text)
        sqlite3_bind_text(stmt, idx, text, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(stmt, idx);
}

void bind_opt_int(sqlite3_stmt *stmt, int idx, int64_t v)
{
    if (v == INT64_MIN)
        sqlite3_bind_null(stmt, idx);
    else
        sqlite3_bind_int64(stmt, idx, v);
}

int tx_begin(store_handle *st)
{
    if (!st->wr)
        return -1;
    pthread_mutex_lock(&st->write_lock);
    if (exec_sql(st->wr, "BEGIN IMMEDIATE") != 0) {
        pthread_mutex_unlock(&st->write_lock);
        return -1;
    }
    return 0;
}

int tx_end(store_handle *st, int ret)
{
    if (ret == 0 && exec_sql(st->wr, "COMMIT") != 0)
        ret = -1;
    if (ret != 0)
        exec_sql(st->wr, "ROLLBACK");
    /* Also after a rollback: cheap, and a cached decision can never outlive a failed write. */
    atomic_fetch_add(&st->generation, 1);
    pthread_mutex_unlock(&st->write_lock);
    return ret;
}

/* Single-int64-result query on the writer; 1 when no row. */
int wr_int(store_handle *st, const char *sql, int64_t arg, const char *text, int64_t *out)
{
    sqlite3_stmt *stmt = prep(st, st->wr, sql);
    if (!stmt)
        return -1;
    if (text)
        sqlite3_bind_text(stmt, 1, text, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(stmt, 1, arg);
    int rc = sqlite3_step(stmt), ret;
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(stmt, 0);
        ret = 0;
    } else {
        ret = rc == SQLITE_DONE ? 1 : -1;
        if (ret < 0)
            store_log(st->wr, sql);
    }
    done(st, stmt);
    return ret;
}

int wr_exec_id(store_handle *st, const char *sql, int64_t id)
{
    sqlite3_stmt *stmt = prep(st, st->wr, sql);
    if (!stmt)
        return -1;
    sqlite3_bind_int64(stmt, 1, id);
    return step_done(st, st->wr, stmt);
}

static int open_conn(const char *path, bool readonly, sqlite3 **out, char *err, size_t errlen)
{
    int flags = SQLITE_OPEN_NOMUTEX |
                (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, db ? sqlite3_errmsg(db) : "cannot open");
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, 10000);
    sqlite3_extended_result_codes(db, 1);
    if (exec_sql(db, "PRAGMA foreign_keys=ON") != 0 ||
        (!readonly && (exec_sql(db, "PRAGMA journal_mode=WAL") != 0 ||
                       exec_sql(db, "PRAGMA synchronous=NORMAL") != 0))) {
        snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return -1;
    }
    *out = db;
    return 0;
}

static int migrate(sqlite3 *db, char *err, size_t errlen)
{
    if (exec_sql(db, "BEGIN IMMEDIATE") != 0)
        goto fail;
    sqlite3_stmt *stmt = prep(NULL, db, "PRAGMA user_version");
    if (!stmt)
        goto rollback;
    int version = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int(stmt, 0) : -1;
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
    snprintf(err, errlen, "schema migration failed: %s", sqlite3_errmsg(db));
    return -1;
}

/* ---------------------------------------------------------------- file modes */

/* Gives the object behind fd the mode (and, when running as root, the owner root). fd may be an
 * O_PATH descriptor: the database's files are never opened for I/O here, since closing such a
 * descriptor would drop the POSIX locks SQLite holds on them in this process. */
static int protect_fd(int fd, mode_t mode, const char *what, char *err, size_t errlen)
{
    struct stat sb;
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    if (fstat(fd, &sb) != 0)
        goto fail;
    if (geteuid() == 0 && (sb.st_uid != 0 || sb.st_gid != 0) &&
        fchownat(fd, "", 0, 0, AT_EMPTY_PATH) != 0)
        goto fail;
    /* chown cleared any set-id bits: compare with the mode as it is now. */
    if (fstat(fd, &sb) != 0)
        goto fail;
    if ((sb.st_mode & 07777) != mode && chmod(proc, mode) != 0)
        goto fail;
    return 0;
fail:
    snprintf(err, errlen, "%s: %s", what, strerror(errno));
    return -1;
}

/* 0600 for one existing regular file (ENOENT is fine); a symlink or anything but a regular file
 * is refused. */
static int protect_file(int dirfd, const char *name, const char *what, char *err, size_t errlen)
{
    int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: %s", what, strerror(errno));
        return -1;
    }
    struct stat sb;
    int ret = -1;
    if (fstat(fd, &sb) != 0)
        snprintf(err, errlen, "%s: %s", what, strerror(errno));
    else if (S_ISLNK(sb.st_mode))
        snprintf(err, errlen, "%s: is a symbolic link", what);
    else if (!S_ISREG(sb.st_mode))
        snprintf(err, errlen, "%s: not a regular file", what);
    else
        ret = protect_fd(fd, 0600, what, err, errlen);
    close(fd);
    return ret;
}

int store_protect_dir(const char *dir, char *err, size_t errlen)
{
    err[0] = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        struct stat sb;
        bool link = e == ELOOP || (lstat(dir, &sb) == 0 && S_ISLNK(sb.st_mode));
        snprintf(err, errlen, "%s: %s", dir, link ? "is a symbolic link" : strerror(e));
        return -1;
    }
    int ret = protect_fd(fd, 0700, dir, err, errlen);
    int dup_fd = ret == 0 ? dup(fd) : -1;
    DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    if (ret == 0 && !d) {
        if (dup_fd >= 0)
            close(dup_fd);
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        ret = -1;
    }
    struct dirent *de;
    while (ret == 0 && (errno = 0, de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char what[4200];
        snprintf(what, sizeof what, "%s/%s", dir, de->d_name);
        struct stat sb;
        if (fstatat(fd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT)
                continue;
            snprintf(err, errlen, "%s: %s", what, strerror(errno));
            ret = -1;
        } else if (S_ISREG(sb.st_mode)) {
            ret = protect_file(fd, de->d_name, what, err, errlen);
        } else if (S_ISDIR(sb.st_mode)) {
            int sub = openat(fd, de->d_name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0)
                snprintf(err, errlen, "%s: %s", what, strerror(errno));
            ret = sub < 0 ? -1 : protect_fd(sub, 0700, what, err, errlen);
            if (sub >= 0)
                close(sub);
        }
        /* Symlinks, sockets, FIFOs: not the store's; left alone, never followed. */
    }
    if (ret == 0 && errno != 0) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        ret = -1;
    }
    if (d)
        closedir(d);
    close(fd);
    return ret;
}

/* Before the connections open: the database file (created 0600 when missing) and its -wal and
 * -shm become 0600. SQLite gives a -wal/-shm it creates later the database file's mode. */
static int protect_db(const char *path, char *err, size_t errlen)
{
    err[0] = '\0';
    int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd); /* new and empty: no connection can hold a lock on it yet */
    else if (errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    size_t n = strlen(path) + 8;
    char *side = malloc(n);
    if (!side) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int ret = 0;
    for (int i = 0; ret == 0 && i < 3; i++) {
        snprintf(side, n, "%s%s", path, i == 0 ? "" : i == 1 ? "-wal" : "-shm");
        ret = protect_file(AT_FDCWD, side, side, err, errlen);
    }
    free(side);
    return ret;
}

/* settings.events_max (a missing, non-integer or negative value: the default), then a trim. */
static int load_events_max(store_handle *st)
{
    st->events_max = STORE_EVENTS_MAX_DEFAULT;
    sqlite3_stmt *stmt = prep(st, st->wr, "SELECT value FROM settings WHERE key = 'events_max'");
    if (!stmt)
        return -1;
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW && sqlite3_column_type(stmt, 0) == SQLITE_INTEGER &&
        sqlite3_column_int64(stmt, 0) >= 0)
        st->events_max = sqlite3_column_int64(stmt, 0);
    done(st, stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return -1;
    int64_t newest = 0;
    stmt = prep(st, st->wr, "SELECT max(id) FROM events");
    if (!stmt)
        return -1;
    if (sqlite3_step(stmt) == SQLITE_ROW)
        newest = sqlite3_column_int64(stmt, 0);
    done(st, stmt);
    return trim_events(st, newest);
}

int store_open(const char *path, unsigned flags, store_handle **out, char *err, size_t errlen)
{
    bool readonly = flags & STORE_READONLY;
    *out = NULL;
    store_handle *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&st->write_lock, NULL);
    pthread_mutex_init(&st->read_lock, NULL);
    if (!readonly) {
        if (protect_db(path, err, errlen) != 0)
            goto fail;
        if (open_conn(path, false, &st->wr, err, errlen) != 0)
            goto fail;
        if (migrate(st->wr, err, errlen) != 0)
            goto fail;
        if (lsh_backfill(st, err, errlen) != 0)
            goto fail;
        if (load_events_max(st) != 0) {
            snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(st->wr));
            goto fail;
        }
    }
    if (open_conn(path, readonly, &st->rd, err, errlen) != 0)
        goto fail;
    *out = st;
    return 0;
fail:
    store_close(st);
    return -1;
}

void store_close(store_handle *st)
{
    if (!st)
        return;
    cache_clear(&st->wr_cache);
    cache_clear(&st->rd_cache);
    if (st->wr) {
        sqlite3_exec(st->wr, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
        sqlite3_close(st->wr);
    }
    sqlite3_close(st->rd);
    pthread_mutex_destroy(&st->write_lock);
    pthread_mutex_destroy(&st->read_lock);
    free(st);
}
