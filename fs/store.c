/* The lineage store (SQLite). Schema and migrations: see fs/README.md. */
#include "store.h"
#include "lsh.h"

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

/* Prepared statements are kept per connection and reused: preparing costs more than most of
 * the queries take to run. A slot is taken by prep and given back by done, both under the
 * connection's lock (read_lock or write_lock), like every use of the connection. A statement
 * in use is never handed out twice; past STMT_SLOTS, or for SQL of another connection,
 * statements are prepared and finalized each time. */
#define STMT_SLOTS 64
typedef struct stmt_cache {
    struct {
        sqlite3_stmt *stmt;
        uint64_t hash; /* of its SQL text */
        bool out;      /* taken by prep, not yet given back */
    } slot[STMT_SLOTS];
    int n;
} stmt_cache;

struct store_handle {
    pthread_mutex_t write_lock; /* protects wr and wr_cache */
    sqlite3 *wr;                /* NULL when read-only */
    pthread_mutex_t read_lock;  /* protects rd and rd_cache */
    sqlite3 *rd;
    stmt_cache wr_cache, rd_cache;
    /* Bumped after every committed write that can change a policy decision. */
    atomic_uint_fast64_t generation;
    /* events rotation (under write_lock): the row cap (0 = none) and the inserts since the last
     * trim. */
    int64_t events_max;
    unsigned events_since_trim;
};

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

static void store_log(sqlite3 *db, const char *what)
{
    fprintf(stderr, "provfs: store: %s: %s\n", what, db ? sqlite3_errmsg(db) : "no database");
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int exec_sql(sqlite3 *db, const char *sql)
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
static sqlite3_stmt *prep(store_handle *st, sqlite3 *db, const char *sql)
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
static void done(store_handle *st, sqlite3_stmt *stmt)
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
static int step_done(store_handle *st, sqlite3 *db, sqlite3_stmt *stmt)
{
    int rc = sqlite3_step(stmt);
    done(st, stmt);
    if (rc != SQLITE_DONE) {
        store_log(db, "step");
        return -1;
    }
    return 0;
}

static void copy_col(sqlite3_stmt *stmt, int col, char *out, size_t outlen)
{
    const unsigned char *text = sqlite3_column_text(stmt, col);
    snprintf(out, outlen, "%s", text ? (const char *)text : "");
}

static char *dup_col(sqlite3_stmt *stmt, int col)
{
    const unsigned char *text = sqlite3_column_text(stmt, col);
    return text ? strdup((const char *)text) : NULL;
}

static void bind_text(sqlite3_stmt *stmt, int idx, const char *text)
{
    if (text && *text)
        sqlite3_bind_text(stmt, idx, text, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(stmt, idx);
}

static void bind_opt_int(sqlite3_stmt *stmt, int idx, int64_t v)
{
    if (v == INT64_MIN)
        sqlite3_bind_null(stmt, idx);
    else
        sqlite3_bind_int64(stmt, idx, v);
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

static int trim_events(store_handle *st, int64_t newest);
static int lsh_backfill(store_handle *st, char *err, size_t errlen);

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

/* ---------------------------------------------------------------- reading */

void store_model_clear(store_model *m)
{
    free(m->error);
    memset(m, 0, sizeof *m);
}

void store_files_free(store_file *files, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(files[i].name);
    free(files);
}

void store_link_clear(store_link *l)
{
    free(l->path);
    free(l->origin_path);
    free(l->signals);
    l->path = l->origin_path = l->signals = NULL;
}

void store_links_free(store_link *links, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(links[i].path);
        free(links[i].origin_path);
        free(links[i].signals);
    }
    free(links);
}

#define MODEL_COLS "m.id, m.status, m.digest, m.format, m.error, m.analyzed_at, m.created_ns"

static void read_model(sqlite3_stmt *stmt, store_model *out)
{
    memset(out, 0, sizeof *out);
    out->id = sqlite3_column_int64(stmt, 0);
    copy_col(stmt, 1, out->status, sizeof out->status);
    copy_col(stmt, 2, out->digest, sizeof out->digest);
    copy_col(stmt, 3, out->format, sizeof out->format);
    out->error = dup_col(stmt, 4);
    out->analyzed_at = sqlite3_column_int64(stmt, 5);
    out->created_ns = sqlite3_column_int64(stmt, 6);
}

static int model_query(store_handle *st, const char *sql, const char *path, int64_t id,
                       store_model *out)
{
    int ret = -1;
    pthread_mutex_lock(&st->read_lock);
    sqlite3_stmt *stmt = prep(st, st->rd, sql);
    if (!stmt)
        goto out;
    if (path)
        sqlite3_bind_text(stmt, 1, path, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(stmt, 1, id);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        read_model(stmt, out);
        ret = 0;
    } else if (rc == SQLITE_DONE) {
        ret = 1;
    } else {
        store_log(st->rd, "model lookup");
    }
    done(st, stmt);
out:
    pthread_mutex_unlock(&st->read_lock);
    return ret;
}

int store_model_by_path(store_handle *st, const char *path, store_model *out)
{
    return model_query(st,
                       "SELECT " MODEL_COLS " FROM model_paths p JOIN models m ON m.id = p.model_id"
                       " WHERE p.path = ?1",
                       path, 0, out);
}

int store_each_adapter(store_handle *st, store_adapter_cb cb, void *ctx)
{
    typedef struct {
        int64_t id, parent;
        char *declared;
    } row;
    row *rows = NULL;
    size_t count = 0, cap = 0;
    int ret = -1;
    /* Read first, called back after: cb may use the store. */
    pthread_mutex_lock(&st->read_lock);
    sqlite3_stmt *stmt =
        prep(st, st->rd,
             "SELECT a.model_id, a.declared, (SELECT e.parent_id FROM edges e WHERE e.child_id ="
             " a.model_id AND e.is_parent = 1 AND e.verdict = 'adapter')"
             " FROM adapter_bases a JOIN models m ON m.id = a.model_id WHERE m.status = 'ready'"
             " ORDER BY a.tried_ns, a.model_id");
    if (stmt) {
        int rc;
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
            if (count == cap) {
                size_t grown_cap = cap ? cap * 2 : 16;
                row *grown = realloc(rows, grown_cap * sizeof *grown);
                if (!grown)
                    break;
                rows = grown;
                cap = grown_cap;
            }
            rows[count].id = sqlite3_column_int64(stmt, 0);
            rows[count].parent = sqlite3_column_int64(stmt, 2); /* 0 for NULL */
            if (!(rows[count].declared = dup_col(stmt, 1)))
                break;
            count++;
        }
        if (rc == SQLITE_DONE)
            ret = 0;
        else if (rc != SQLITE_ROW)
            store_log(st->rd, "adapters");
        done(st, stmt);
    }
    pthread_mutex_unlock(&st->read_lock);
    bool stop = false;
    for (size_t i = 0; i < count; i++) {
        if (ret == 0 && !stop && cb(ctx, rows[i].id, rows[i].declared, rows[i].parent))
            stop = true;
        free(rows[i].declared);
    }
    free(rows);
    return ret;
}

int store_model_by_id(store_handle *st, int64_t id, store_model *out)
{
    return model_query(st, "SELECT " MODEL_COLS " FROM models m WHERE m.id = ?1", NULL, id, out);
}

/* Runs a one-row, one-text-column query on the reader; 1 when no row or NULL. */
static int text_query(store_handle *st, const char *sql, int64_t id, const char *name, char **out)
{
    int ret = -1;
    *out = NULL;
    pthread_mutex_lock(&st->read_lock);
    sqlite3_stmt *stmt = prep(st, st->rd, sql);
    if (!stmt)
        goto out;
    sqlite3_bind_int64(stmt, 1, id);
    if (name)
        sqlite3_bind_text(stmt, 2, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW && sqlite3_column_type(stmt, 0) != SQLITE_NULL) {
        *out = dup_col(stmt, 0);
        ret = *out ? 0 : -1;
    } else if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
        ret = 1;
    } else {
        store_log(st->rd, "query");
    }
    done(st, stmt);
out:
    pthread_mutex_unlock(&st->read_lock);
    return ret;
}

int store_model_path(store_handle *st, int64_t id, char **out)
{
    return text_query(st, "SELECT min(path) FROM model_paths WHERE model_id = ?1", id, NULL, out);
}

int store_fingerprint(store_handle *st, int64_t id, char **json)
{
    return text_query(st, "SELECT fingerprint FROM models WHERE id = ?1", id, NULL, json);
}

int store_file_sha(store_handle *st, int64_t id, const char *name, char out[65])
{
    char *sha = NULL;
    int ret = text_query(st, "SELECT sha256 FROM files WHERE model_id = ?1 AND name = ?2", id, name,
                         &sha);
    if (ret == 0)
        snprintf(out, 65, "%s", sha);
    free(sha);
    return ret;
}

int store_files(store_handle *st, int64_t id, store_file **out, size_t *n)
{
    int ret = -1;
    size_t count = 0, cap = 0;
    store_file *files = NULL;
    pthread_mutex_lock(&st->read_lock);
    sqlite3_stmt *stmt = prep(st, st->rd,
                              "SELECT name, size, mtime_ns, sha256 FROM files"
                              " WHERE model_id = ?1 ORDER BY name");
    if (!stmt)
        goto out;
    sqlite3_bind_int64(stmt, 1, id);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (count == cap) {
            cap = cap ? cap * 2 : 8;
            store_file *grown = realloc(files, cap * sizeof *files);
            if (!grown)
                goto out_stmt;
            files = grown;
        }
        store_file *f = &files[count];
        f->name = dup_col(stmt, 0);
        if (!f->name)
            goto out_stmt;
        count++;
        f->size = (uint64_t)sqlite3_column_int64(stmt, 1);
        f->mtime_ns = sqlite3_column_int64(stmt, 2);
        copy_col(stmt, 3, f->sha256, sizeof f->sha256);
    }
    if (rc == SQLITE_DONE)
        ret = 0;
    else
        store_log(st->rd, "files");
out_stmt:
    done(st, stmt);
out:
    pthread_mutex_unlock(&st->read_lock);
    if (ret != 0) {
        store_files_free(files, count);
        files = NULL;
        count = 0;
    }
    *out = files;
    *n = count;
    return ret;
}

#define LINK_COLS                                                                                  \
    "e.score, e.verdict, e.signals, e.is_parent,"                                                  \
    " (SELECT min(path) FROM model_paths WHERE model_id = %s),"                                    \
    " (SELECT origin_path FROM models WHERE id = %s), e.share"
#define LINK_ID_COL 7

static void read_link(sqlite3_stmt *stmt, int64_t id, store_link *out)
{
    memset(out, 0, sizeof *out);
    out->id = id;
    out->score = sqlite3_column_double(stmt, 0);
    copy_col(stmt, 1, out->verdict, sizeof out->verdict);
    out->signals = dup_col(stmt, 2);
    out->is_parent = sqlite3_column_int(stmt, 3) != 0;
    out->path = dup_col(stmt, 4);
    out->origin_path = dup_col(stmt, 5);
    out->share = sqlite3_column_type(stmt, 6) == SQLITE_NULL ? NAN : sqlite3_column_double(stmt, 6);
}

/* Parent edge of id, with the reader lock held. */
static int parent_locked(store_handle *st, int64_t id, store_link *out)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT " LINK_COLS ", e.parent_id FROM edges e"
             " WHERE e.child_id = ?1 AND e.is_parent = 1",
             "e.parent_id", "e.parent_id");
    sqlite3_stmt *stmt = prep(st, st->rd, sql);
    if (!stmt)
        return -1;
    sqlite3_bind_int64(stmt, 1, id);
    int rc = sqlite3_step(stmt), ret;
    if (rc == SQLITE_ROW) {
        read_link(stmt, sqlite3_column_int64(stmt, LINK_ID_COL), out);
        ret = 0;
    } else {
        ret = rc == SQLITE_DONE ? 1 : -1;
        if (ret < 0)
            store_log(st->rd, "parent");
    }
    done(st, stmt);
    return ret;
}

int store_parent(store_handle *st, int64_t id, store_link *out)
{
    pthread_mutex_lock(&st->read_lock);
    int ret = parent_locked(st, id, out);
    pthread_mutex_unlock(&st->read_lock);
    return ret;
}

int store_ancestors(store_handle *st, int64_t id, store_link **out, size_t *n)
{
    store_link *links = calloc(64, sizeof *links);
    size_t count = 0;
    int ret = 0;
    if (!links)
        return -1;
    pthread_mutex_lock(&st->read_lock);
    int64_t cur = id;
    while (count < 64) {
        int rc = parent_locked(st, cur, &links[count]);
        if (rc != 0) {
            ret = rc < 0 ? -1 : 0;
            break;
        }
        cur = links[count].id;
        count++;
    }
    pthread_mutex_unlock(&st->read_lock);
    *out = links;
    *n = count;
    return ret;
}

static int links_query(store_handle *st, const char *sql, int64_t id, store_link **out, size_t *n);

int store_children(store_handle *st, int64_t id, store_link **out, size_t *n)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT " LINK_COLS ", e.child_id FROM edges e WHERE e.parent_id = ?1"
             " ORDER BY e.child_id",
             "e.child_id", "e.child_id");
    return links_query(st, sql, id, out, n);
}

int store_parents(store_handle *st, int64_t id, store_link **out, size_t *n)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT " LINK_COLS ", e.parent_id FROM edges e"
             " WHERE e.child_id = ?1 AND (e.is_parent = 1 OR e.share IS NOT NULL)"
             " ORDER BY e.is_parent DESC, e.share DESC, e.parent_id",
             "e.parent_id", "e.parent_id");
    return links_query(st, sql, id, out, n);
}

static int links_query(store_handle *st, const char *sql, int64_t id, store_link **out, size_t *n)
{
    int ret = -1;
    size_t count = 0, cap = 0;
    store_link *links = NULL;
    pthread_mutex_lock(&st->read_lock);
    sqlite3_stmt *stmt = prep(st, st->rd, sql);
    if (!stmt)
        goto out;
    sqlite3_bind_int64(stmt, 1, id);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (count == cap) {
            cap = cap ? cap * 2 : 8;
            store_link *grown = realloc(links, cap * sizeof *links);
            if (!grown)
                goto out_stmt;
            links = grown;
        }
        read_link(stmt, sqlite3_column_int64(stmt, LINK_ID_COL), &links[count++]);
    }
    if (rc == SQLITE_DONE)
        ret = 0;
out_stmt:
    done(st, stmt);
out:
    pthread_mutex_unlock(&st->read_lock);
    if (ret != 0) {
        store_links_free(links, count);
        links = NULL;
        count = 0;
    }
    *out = links;
    *n = count;
    return ret;
}

int store_counts_get(store_handle *st, store_counts *out)
{
    int ret = -1;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&st->read_lock);
    /* store_stats (migration 9): kept by triggers, one row per count */
    sqlite3_stmt *stmt = prep(st, st->rd,
                              "SELECT (SELECT n FROM store_stats WHERE key = 'models'),"
                              " (SELECT n FROM store_stats WHERE key = 'paths'),"
                              " (SELECT n FROM store_stats WHERE key = 'edges'),"
                              " (SELECT n FROM store_stats WHERE key = 'status:pending'),"
                              " (SELECT n FROM store_stats WHERE key = 'status:analyzing'),"
                              " (SELECT n FROM store_stats WHERE key = 'status:ready'),"
                              " (SELECT n FROM store_stats WHERE key = 'status:incomplete'),"
                              " (SELECT n FROM store_stats WHERE key = 'status:failed')");
    if (!stmt)
        goto out;
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        int64_t *fields[] = {&out->models,    &out->paths, &out->edges,      &out->pending,
                             &out->analyzing, &out->ready, &out->incomplete, &out->failed};
        for (int i = 0; i < 8; i++)
            *fields[i] = sqlite3_column_int64(stmt, i);
        ret = 0;
    }
    done(st, stmt);
out:
    pthread_mutex_unlock(&st->read_lock);
    return ret;
}

typedef struct path_row {
    char *path;
    int64_t model_id;
    char status[16];
    int64_t dir_mtime_ns;
} path_row;

int store_each_path(store_handle *st, store_path_cb cb, void *ctx)
{
    /* Copy the rows out first: the callback may write to the store. */
    path_row *rows = NULL;
    size_t count = 0, cap = 0;
    int ret = -1;
    pthread_mutex_lock(&st->read_lock);
    sqlite3_stmt *stmt = prep(st, st->rd,
                              "SELECT p.path, p.model_id, m.status, p.dir_mtime_ns"
                              " FROM model_paths p JOIN models m ON m.id = p.model_id"
                              " ORDER BY p.path");
    if (!stmt) {
        pthread_mutex_unlock(&st->read_lock);
        return -1;
    }
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (count == cap) {
            cap = cap ? cap * 2 : 64;
            path_row *grown = realloc(rows, cap * sizeof *rows);
            if (!grown)
                break;
            rows = grown;
        }
        rows[count].path = dup_col(stmt, 0);
        if (!rows[count].path)
            break;
        rows[count].model_id = sqlite3_column_int64(stmt, 1);
        copy_col(stmt, 2, rows[count].status, sizeof rows[count].status);
        rows[count].dir_mtime_ns = sqlite3_column_int64(stmt, 3);
        count++;
    }
    done(st, stmt);
    pthread_mutex_unlock(&st->read_lock);
    if (rc == SQLITE_DONE) {
        ret = 0;
        for (size_t i = 0; i < count; i++)
            if (cb(ctx, rows[i].path, rows[i].model_id, rows[i].status, rows[i].dir_mtime_ns))
                break;
    }
    for (size_t i = 0; i < count; i++)
        free(rows[i].path);
    free(rows);
    return ret;
}

/* ---------------------------------------------------------------- writing */

static int tx_begin(store_handle *st)
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

static int tx_end(store_handle *st, int ret)
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
static int wr_int(store_handle *st, const char *sql, int64_t arg, const char *text, int64_t *out)
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

static int wr_exec_id(store_handle *st, const char *sql, int64_t id)
{
    sqlite3_stmt *stmt = prep(st, st->wr, sql);
    if (!stmt)
        return -1;
    sqlite3_bind_int64(stmt, 1, id);
    return step_done(st, st->wr, stmt);
}

/* Gives child a main parent when it has none (its parent edge went with a model or an
 * analysis): the best rank wins (see store_edge), then the best score, then the earliest parent;
 * its share is its coverage of the child. A child that still has its main parent keeps it and
 * its other parents: the daemon decides those (store_set_parents). */
static int relink_child(store_handle *st, int64_t child)
{
    sqlite3_stmt *stmt = prep(st, st->wr,
                              "SELECT count(*) FROM edges WHERE child_id = ?1 AND"
                              " is_parent = 1");
    if (!stmt)
        return -1;
    sqlite3_bind_int64(stmt, 1, child);
    int rc = sqlite3_step(stmt);
    int64_t have = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : -1;
    done(st, stmt);
    if (have != 0)
        return have > 0 ? 0 : -1;
    stmt = prep(st, st->wr,
                "UPDATE edges SET is_parent = (parent_id = p.id),"
                "  share = CASE WHEN parent_id = p.id THEN"
                "    CASE WHEN json_valid(signals) AND"
                "      json_type(signals, '$.explained_share') IN ('real','integer')"
                "    THEN json_extract(signals, '$.explained_share') ELSE 1.0 END END"
                " FROM (SELECT e.parent_id AS id FROM edges e WHERE e.child_id = ?1"
                "  ORDER BY e.rank DESC, e.score DESC, e.parent_id LIMIT 1) AS p"
                " WHERE child_id = ?1");
    if (!stmt)
        return -1;
    sqlite3_bind_int64(stmt, 1, child);
    return step_done(st, st->wr, stmt);
}

/* Deletes a model that no longer has a path, relinking its former children. */
/* The children of id (edges out of it); -1 on a store error or when out of memory, so no child
 * is silently left unrelinked. */
static int children_of(store_handle *st, int64_t id, int64_t **out, size_t *n)
{
    int64_t *ids = NULL;
    size_t count = 0, cap = 0;
    int ret = 0;
    *out = NULL;
    *n = 0;
    sqlite3_stmt *stmt = prep(st, st->wr, "SELECT child_id FROM edges WHERE parent_id = ?1");
    if (!stmt)
        return -1;
    sqlite3_bind_int64(stmt, 1, id);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (count == cap) {
            cap = cap ? cap * 2 : 8;
            int64_t *grown = realloc(ids, cap * sizeof *ids);
            if (!grown) {
                ret = -1;
                break;
            }
            ids = grown;
        }
        ids[count++] = sqlite3_column_int64(stmt, 0);
    }
    if (ret == 0 && rc != SQLITE_DONE)
        ret = -1;
    done(st, stmt);
    if (ret != 0) {
        free(ids);
        return -1;
    }
    *out = ids;
    *n = count;
    return 0;
}

static int drop_if_orphan(store_handle *st, int64_t id)
{
    int64_t n = 0;
    if (wr_int(st, "SELECT count(*) FROM model_paths WHERE model_id = ?1", id, NULL, &n) != 0)
        return -1;
    if (n > 0)
        return 0;
    int64_t *children = NULL;
    size_t count = 0;
    if (children_of(st, id, &children, &count) != 0)
        return -1;
    int ret = wr_exec_id(st, "DELETE FROM models WHERE id = ?1", id);
    for (size_t i = 0; ret == 0 && i < count; i++)
        ret = relink_child(st, children[i]);
    free(children);
    return ret;
}

static int new_model(store_handle *st, const char *status, int64_t created_ns, int64_t *id)
{
    sqlite3_stmt *stmt =
        prep(st, st->wr, "INSERT INTO models (status, created_ns) VALUES (?1, ?2)");
    if (!stmt)
        return -1;
    sqlite3_bind_text(stmt, 1, status, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, created_ns);
    if (step_done(st, st->wr, stmt) != 0)
        return -1;
    *id = sqlite3_last_insert_rowid(st->wr);
    return 0;
}

static int set_path(store_handle *st, const char *path, int64_t id, int64_t dir_mtime_ns)
{
    sqlite3_stmt *stmt = prep(st, st->wr,
                              "INSERT INTO model_paths (path, model_id, dir_mtime_ns)"
                              " VALUES (?1, ?2, ?3) ON CONFLICT(path) DO UPDATE SET"
                              " model_id = excluded.model_id,"
                              " dir_mtime_ns = excluded.dir_mtime_ns");
    if (!stmt)
        return -1;
    sqlite3_bind_text(stmt, 1, path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, id);
    sqlite3_bind_int64(stmt, 3, dir_mtime_ns);
    if (step_done(st, st->wr, stmt) != 0)
        return -1;
    /* The first path a model is stored at stays its origin, whatever renames follow. */
    stmt = prep(st, st->wr,
                "UPDATE models SET origin_path = ?1 WHERE id = ?2 AND origin_path IS NULL");
    if (!stmt)
        return -1;
    sqlite3_bind_text(stmt, 1, path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, id);
    return step_done(st, st->wr, stmt);
}

int store_origin_path(store_handle *st, int64_t id, char **out)
{
    *out = NULL;
    int ret = -1;
    pthread_mutex_lock(&st->read_lock);
    sqlite3_stmt *stmt = prep(st, st->rd, "SELECT origin_path FROM models WHERE id = ?1");
    if (stmt) {
        sqlite3_bind_int64(stmt, 1, id);
        int rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW) {
            *out = dup_col(stmt, 0);
            ret = 0;
        } else if (rc == SQLITE_DONE) {
            ret = 0;
        }
    }
    done(st, stmt);
    pthread_mutex_unlock(&st->read_lock);
    return ret;
}

int store_begin(store_handle *st, const char *path, int64_t created_ns, int64_t dir_mtime_ns,
                int64_t *model_id)
{
    if (tx_begin(st) != 0)
        return -1;
    int64_t id = 0, shared = 0;
    int ret = wr_int(st, "SELECT model_id FROM model_paths WHERE path = ?1", 0, path, &id);
    if (ret == 0)
        ret = wr_int(st, "SELECT count(*) FROM model_paths WHERE model_id = ?1", id, NULL, &shared);
    if (ret == 0 && shared > 1)
        ret = 1; /* the content stays with its other paths; this path starts over */
    if (ret == 1)
        ret = new_model(st, "analyzing", created_ns, &id);
    else if (ret == 0)
        ret = wr_exec_id(st, "UPDATE models SET status = 'analyzing' WHERE id = ?1", id);
    if (ret == 0)
        ret = set_path(st, path, id, dir_mtime_ns);
    if (ret == 0)
        *model_id = id;
    return tx_end(st, ret);
}

int store_set_status(store_handle *st, const char *path, const char *status)
{
    if (tx_begin(st) != 0)
        return -1;
    int ret = -1;
    sqlite3_stmt *stmt = prep(st, st->wr,
                              "UPDATE models SET status = ?2 WHERE id ="
                              " (SELECT model_id FROM model_paths WHERE path = ?1)");
    if (stmt) {
        sqlite3_bind_text(stmt, 1, path, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 2, status, -1, SQLITE_STATIC);
        ret = step_done(st, st->wr, stmt);
    }
    return tx_end(st, ret);
}

/* Removes every edge touching id, relinking the models on the other end. */
static int drop_edges(store_handle *st, int64_t id)
{
    int64_t *others = NULL;
    size_t count = 0;
    if (children_of(st, id, &others, &count) != 0)
        return -1;
    int ret = wr_exec_id(st, "DELETE FROM edges WHERE parent_id = ?1 OR child_id = ?1", id);
    for (size_t i = 0; ret == 0 && i < count; i++)
        ret = relink_child(st, others[i]);
    free(others);
    return ret;
}

int store_finish_error(store_handle *st, int64_t model_id, const char *status, const char *error)
{
    if (tx_begin(st) != 0)
        return -1;
    int ret = -1;
    sqlite3_stmt *stmt =
        prep(st, st->wr,
             "UPDATE models SET status = ?2, error = ?3, digest = NULL, fingerprint = NULL,"
             " format = NULL, hidden_size = NULL, num_layers = NULL, vocab_size = NULL,"
             " n_params = NULL, n_tensors = NULL, arch_hash = NULL, family_hash = NULL,"
             " analyzed_at = ?4 WHERE id = ?1");
    if (stmt) {
        sqlite3_bind_int64(stmt, 1, model_id);
        sqlite3_bind_text(stmt, 2, status, -1, SQLITE_STATIC);
        bind_text(stmt, 3, error);
        sqlite3_bind_int64(stmt, 4, now_ns() / 1000000000);
        ret = step_done(st, st->wr, stmt);
    }
    if (ret == 0)
        ret = wr_exec_id(st, "DELETE FROM files WHERE model_id = ?1", model_id);
    if (ret == 0)
        ret = wr_exec_id(st, "DELETE FROM lsh_bands WHERE model_id = ?1", model_id);
    if (ret == 0)
        ret = wr_exec_id(st, "DELETE FROM tensor_hashes WHERE model_id = ?1", model_id);
    if (ret == 0)
        ret = drop_edges(st, model_id);
    return tx_end(st, ret);
}

static int insert_files(store_handle *st, int64_t id, const store_result *res)
{
    if (wr_exec_id(st, "DELETE FROM files WHERE model_id = ?1", id) != 0)
        return -1;
    sqlite3_stmt *stmt = prep(st, st->wr,
                              "INSERT OR REPLACE INTO files"
                              " (model_id, name, size, mtime_ns, sha256)"
                              " VALUES (?1, ?2, ?3, ?4, ?5)");
    if (!stmt)
        return -1;
    int ret = 0;
    for (size_t i = 0; i < res->n_files && ret == 0; i++) {
        const store_file *f = &res->files[i];
        sqlite3_bind_int64(stmt, 1, id);
        sqlite3_bind_text(stmt, 2, f->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 3, (int64_t)f->size);
        sqlite3_bind_int64(stmt, 4, f->mtime_ns);
        bind_text(stmt, 5, f->sha256);
        if (sqlite3_step(stmt) != SQLITE_DONE) {
            store_log(st->wr, "insert file");
            ret = -1;
        }
        sqlite3_reset(stmt);
    }
    done(st, stmt);
    return ret;
}

/* Replaces model_id's rows of the candidate index with sig's keys (none when sig is NULL). */
static int lsh_put(store_handle *st, int64_t model_id, const pa_lsh_sig *sig)
{
    int ret = wr_exec_id(st, "DELETE FROM lsh_bands WHERE model_id = ?1", model_id);
    if (ret == 0)
        ret = wr_exec_id(st, "DELETE FROM tensor_hashes WHERE model_id = ?1", model_id);
    if (ret != 0 || !sig)
        return ret;
    sqlite3_stmt *b = prep(st, st->wr,
                           "INSERT INTO lsh_bands (band_no, band_value, model_id)"
                           " VALUES (?1, ?2, ?3)");
    sqlite3_stmt *h =
        prep(st, st->wr, "INSERT INTO tensor_hashes (hash, model_id) VALUES (?1, ?2)");
    ret = b && h ? 0 : -1;
    for (size_t i = 0; ret == 0 && i < sig->n_bands; i++) {
        sqlite3_bind_int64(b, 1, sig->bands[i].no);
        sqlite3_bind_int64(b, 2, sig->bands[i].value);
        sqlite3_bind_int64(b, 3, model_id);
        ret = sqlite3_step(b) == SQLITE_DONE ? 0 : -1;
        sqlite3_reset(b);
    }
    for (size_t i = 0; ret == 0 && i < sig->n_hashes; i++) {
        sqlite3_bind_int64(h, 1, sig->hashes[i]);
        sqlite3_bind_int64(h, 2, model_id);
        ret = sqlite3_step(h) == SQLITE_DONE ? 0 : -1;
        sqlite3_reset(h);
    }
    if (ret != 0)
        store_log(st->wr, "insert index keys");
    done(st, b);
    done(st, h);
    return ret;
}

/* Indexes every stored fingerprint again when the index was made by another signature version
 * (or by none: a store from before the index). */
static int lsh_backfill(store_handle *st, char *err, size_t errlen)
{
    int64_t version = -1;
    sqlite3_stmt *stmt = prep(st, st->wr, "SELECT value FROM settings WHERE key = 'lsh_version'");
    if (stmt && sqlite3_step(stmt) == SQLITE_ROW)
        version = sqlite3_column_int64(stmt, 0);
    done(st, stmt);
    if (version == PA_LSH_VERSION)
        return 0;
    if (tx_begin(st) != 0)
        goto fail;
    int ret = exec_sql(st->wr, "DELETE FROM lsh_bands; DELETE FROM tensor_hashes;");
    stmt = ret == 0 ? prep(st, st->wr,
                           "SELECT id, fingerprint FROM models"
                           " WHERE status = 'ready' AND fingerprint IS NOT NULL")
                    : NULL;
    if (!stmt)
        ret = -1;
    size_t n = 0;
    int rc = SQLITE_DONE;
    while (ret == 0 && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(stmt, 0);
        const char *json = (const char *)sqlite3_column_text(stmt, 1);
        pa_fingerprint *fp = NULL;
        pa_error e = {0};
        pa_lsh_sig sig = {0};
        if (json &&
            pa_fp_from_json(json, (size_t)sqlite3_column_bytes(stmt, 1), "stored fingerprint", &fp,
                            &e) == PA_OK &&
            pa_lsh_signature(fp, &sig) == 0) {
            ret = lsh_put(st, id, &sig);
            n++;
        }
        pa_lsh_sig_free(&sig);
        pa_fingerprint_free(fp);
    }
    if (ret == 0 && rc != SQLITE_DONE)
        ret = -1;
    done(st, stmt);
    if (ret == 0) {
        char sql[128];
        snprintf(sql, sizeof sql,
                 "INSERT OR REPLACE INTO settings (key, value) VALUES ('lsh_version', %d)",
                 PA_LSH_VERSION);
        ret = exec_sql(st->wr, sql);
    }
    if (tx_end(st, ret) != 0)
        goto fail;
    if (n)
        fprintf(stderr, "provfs: store: indexed %zu stored model(s) for candidate retrieval\n", n);
    return 0;
fail:
    snprintf(err, errlen, "candidate index: %s", sqlite3_errmsg(st->wr));
    return -1;
}

int store_finish_ready(store_handle *st, const char *path, int64_t model_id,
                       const store_result *res, int64_t *final_id, bool *merged)
{
    if (tx_begin(st) != 0)
        return -1;
    int64_t other = 0;
    *merged = false;
    *final_id = model_id;
    int ret = wr_int(st, "SELECT id FROM models WHERE digest = ?1", 0, res->digest, &other);
    if (ret == 0 && other != model_id) {
        /* Same content already stored: one model, one more path. */
        int64_t dir_mtime = 0;
        sqlite3_stmt *stmt =
            prep(st, st->wr, "SELECT dir_mtime_ns FROM model_paths WHERE path = ?1");
        if (stmt) {
            sqlite3_bind_text(stmt, 1, path, -1, SQLITE_STATIC);
            if (sqlite3_step(stmt) == SQLITE_ROW)
                dir_mtime = sqlite3_column_int64(stmt, 0);
            done(st, stmt);
        }
        ret = set_path(st, path, other, dir_mtime);
        if (ret == 0)
            ret = drop_if_orphan(st, model_id);
        if (ret == 0)
            ret = wr_exec_id(st, "UPDATE models SET status = 'ready' WHERE id = ?1", other);
        *final_id = other;
        *merged = true;
        return tx_end(st, ret);
    }
    if (ret < 0)
        return tx_end(st, ret);
    sqlite3_stmt *stmt =
        prep(st, st->wr,
             "UPDATE models SET status = 'ready', error = NULL, digest = ?2, format = ?3,"
             " fingerprint = ?4, hidden_size = ?5, num_layers = ?6, vocab_size = ?7,"
             " n_params = ?8, n_tensors = ?9, arch_hash = ?10, family_hash = ?11,"
             " analyzed_at = ?12 WHERE id = ?1");
    ret = -1;
    if (stmt) {
        sqlite3_bind_int64(stmt, 1, model_id);
        bind_text(stmt, 2, res->digest);
        bind_text(stmt, 3, res->format);
        bind_text(stmt, 4, res->fingerprint_json);
        bind_opt_int(stmt, 5, res->keys.hidden_size);
        bind_opt_int(stmt, 6, res->keys.num_layers);
        bind_opt_int(stmt, 7, res->keys.vocab_size);
        sqlite3_bind_int64(stmt, 8, (int64_t)res->keys.n_params);
        sqlite3_bind_int64(stmt, 9, (int64_t)res->keys.n_tensors);
        bind_text(stmt, 10, res->keys.arch_hash);
        bind_text(stmt, 11, res->keys.family_hash);
        sqlite3_bind_int64(stmt, 12, now_ns() / 1000000000);
        ret = step_done(st, st->wr, stmt);
    }
    if (ret == 0)
        ret = insert_files(st, model_id, res);
    if (ret == 0)
        ret = lsh_put(st, model_id, res->sig);
    /* new content: an adapter's declaration is recorded again by its analysis (link_adapter) */
    if (ret == 0)
        ret = wr_exec_id(st, "DELETE FROM adapter_bases WHERE model_id = ?1", model_id);
    if (ret == 0)
        ret = drop_edges(st, model_id);
    return tx_end(st, ret);
}

int store_candidates(store_handle *st, const store_keys *keys, int64_t exclude_id, store_cand_cb cb,
                     void *ctx)
{
    /* Reads on the writer connection: the caller serialises lineage work, and must see every
     * commit made so far. Rows are streamed; the callback must not call into the store. */
    if (!st->wr)
        return -1;
    pthread_mutex_lock(&st->write_lock);
    int ret = -1;
    sqlite3_stmt *stmt = prep(st, st->wr,
                              "SELECT id, created_ns, fingerprint, digest FROM models"
                              " WHERE status = 'ready' AND id != ?1"
                              " AND fingerprint IS NOT NULL"
                              " AND (hidden_size = ?2 OR vocab_size = ?3"
                              "      OR family_hash = ?4 OR arch_hash = ?5)");
    if (stmt) {
        sqlite3_bind_int64(stmt, 1, exclude_id);
        bind_opt_int(stmt, 2, keys->hidden_size);
        bind_opt_int(stmt, 3, keys->vocab_size);
        bind_text(stmt, 4, keys->family_hash);
        bind_text(stmt, 5, keys->arch_hash);
        int rc;
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
            const char *json = (const char *)sqlite3_column_text(stmt, 2);
            size_t len = (size_t)sqlite3_column_bytes(stmt, 2);
            const char *digest = (const char *)sqlite3_column_text(stmt, 3);
            if (cb(ctx, sqlite3_column_int64(stmt, 0), sqlite3_column_int64(stmt, 1),
                   digest ? digest : "", json, len))
                break;
        }
        ret = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
        done(st, stmt);
    }
    pthread_mutex_unlock(&st->write_lock);
    return ret;
}

#define CAND_SELECT "SELECT id, created_ns, fingerprint, digest FROM models"
#define CAND_FILTER                                                                                \
    " status = 'ready' AND id != ?1 AND fingerprint IS NOT NULL"                                   \
    " AND (hidden_size = ?2 OR vocab_size = ?3 OR family_hash = ?4 OR arch_hash = ?5)"

/* Streams the candidate row of id (when it passes the prefilter) to cb: 0, 1 when cb stopped,
 * -1 on error. Called with write_lock held. */
static int candidate_row(sqlite3_stmt *stmt, int64_t id, store_cand_cb cb, void *ctx)
{
    sqlite3_bind_int64(stmt, 6, id);
    int rc = sqlite3_step(stmt), ret = 0;
    if (rc == SQLITE_ROW) {
        const char *json = (const char *)sqlite3_column_text(stmt, 2);
        size_t len = (size_t)sqlite3_column_bytes(stmt, 2);
        const char *digest = (const char *)sqlite3_column_text(stmt, 3);
        ret = cb(ctx, sqlite3_column_int64(stmt, 0), sqlite3_column_int64(stmt, 1),
                 digest ? digest : "", json, len)
                  ? 1
                  : 0;
    } else if (rc != SQLITE_DONE) {
        ret = -1;
    }
    sqlite3_reset(stmt);
    return ret;
}

/* The prefiltered candidate row of ?6 (store_candidates' filter; none without keys). */
static sqlite3_stmt *candidate_stmt(store_handle *st, sqlite3 *db, const store_keys *keys,
                                    int64_t exclude_id)
{
    sqlite3_stmt *stmt = prep(st, db,
                              keys ? CAND_SELECT " WHERE id = ?6 AND" CAND_FILTER
                                   : CAND_SELECT " WHERE id = ?6 AND status = 'ready'"
                                                 " AND id != ?1 AND fingerprint IS NOT NULL");
    if (stmt) {
        sqlite3_bind_int64(stmt, 1, exclude_id);
        if (keys) {
            bind_opt_int(stmt, 2, keys->hidden_size);
            bind_opt_int(stmt, 3, keys->vocab_size);
            bind_text(stmt, 4, keys->family_hash);
            bind_text(stmt, 5, keys->arch_hash);
        }
    }
    return stmt;
}

/* The connection candidate reads use: the writer's (it sees every commit made so far) when there
 * is one, else the reader's (provctl); its lock is taken. */
static sqlite3 *cand_conn(store_handle *st)
{
    if (st->wr) {
        pthread_mutex_lock(&st->write_lock);
        return st->wr;
    }
    pthread_mutex_lock(&st->read_lock);
    return st->rd;
}

static void cand_release(store_handle *st)
{
    pthread_mutex_unlock(st->wr ? &st->write_lock : &st->read_lock);
}

int store_candidates_ids(store_handle *st, const store_keys *keys, const int64_t *ids, size_t n,
                         store_cand_cb cb, void *ctx)
{
    sqlite3 *db = cand_conn(st);
    sqlite3_stmt *stmt = db ? candidate_stmt(st, db, keys, 0) : NULL;
    int ret = stmt ? 0 : -1;
    for (size_t i = 0; ret == 0 && i < n; i++)
        ret = candidate_row(stmt, ids[i], cb, ctx);
    done(st, stmt);
    cand_release(st);
    return ret < 0 ? -1 : 0;
}

/* Match counts per model id: open addressing, grown at half full. */
typedef struct hit {
    int64_t id;
    int64_t n;
} hit;

typedef struct hits {
    hit *v;
    size_t cap, n;
} hits;

static int hits_add(hits *h, int64_t id, int64_t w)
{
    if (2 * (h->n + 1) > h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 1024;
        hit *g = calloc(cap, sizeof *g);
        if (!g)
            return -1;
        for (size_t i = 0; i < h->cap; i++) {
            if (!h->v[i].id)
                continue;
            size_t k = (size_t)((uint64_t)h->v[i].id * 0x9e3779b97f4a7c15ull >> 20) & (cap - 1);
            while (g[k].id)
                k = (k + 1) & (cap - 1);
            g[k] = h->v[i];
        }
        free(h->v);
        h->v = g;
        h->cap = cap;
    }
    size_t k = (size_t)((uint64_t)id * 0x9e3779b97f4a7c15ull >> 20) & (h->cap - 1);
    while (h->v[k].id && h->v[k].id != id)
        k = (k + 1) & (h->cap - 1);
    if (!h->v[k].id) {
        h->v[k].id = id;
        h->n++;
    }
    h->v[k].n += w;
    return 0;
}

/* Adds w for every model on the posting list of stmt's key (skipped when longer than
 * STORE_POSTING_MAX). */
static int postings(sqlite3_stmt *stmt, int64_t exclude_id, int64_t w, hits *h)
{
    int64_t ids[256];
    size_t n = 0, total = 0;
    int rc, ret = 0;
    hits tmp = {0};
    /* read the list first: a key too common to tell anything is dropped whole */
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW && ret == 0) {
        int64_t id = sqlite3_column_int64(stmt, 0);
        if (++total > STORE_POSTING_MAX)
            break;
        if (id == exclude_id)
            continue;
        if (n < sizeof ids / sizeof *ids)
            ids[n++] = id;
        else
            ret = hits_add(&tmp, id, w);
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = -1;
    sqlite3_reset(stmt);
    if (ret == 0 && total <= STORE_POSTING_MAX) {
        for (size_t i = 0; i < n && ret == 0; i++)
            ret = hits_add(h, ids[i], w);
        for (size_t i = 0; i < tmp.cap && ret == 0; i++)
            if (tmp.v[i].id)
                ret = hits_add(h, tmp.v[i].id, w);
    }
    free(tmp.v);
    return ret;
}

static int hit_cmp(const void *x, const void *y)
{
    const hit *a = x, *b = y;
    if (a->n != b->n)
        return a->n > b->n ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id; /* the first stored first, deterministic */
}

int store_retrieve(store_handle *st, const store_keys *keys, const pa_lsh_sig *sig,
                   int64_t exclude_id, size_t k, size_t *found, store_cand_cb cb, void *ctx)
{
    *found = 0;
    sqlite3 *db = cand_conn(st);
    hits h = {0};
    sqlite3_stmt *bs = db ? prep(st, db,
                                 "SELECT model_id FROM lsh_bands"
                                 " WHERE band_no = ?1 AND band_value = ?2")
                          : NULL;
    sqlite3_stmt *hs =
        db ? prep(st, db, "SELECT model_id FROM tensor_hashes WHERE hash = ?1") : NULL;
    int ret = bs && hs ? 0 : -1;
    for (size_t i = 0; ret == 0 && i < sig->n_hashes; i++) {
        sqlite3_bind_int64(hs, 1, sig->hashes[i]);
        ret = postings(hs, exclude_id, STORE_HASH_WEIGHT, &h);
    }
    for (size_t i = 0; ret == 0 && i < sig->n_bands; i++) {
        sqlite3_bind_int64(bs, 1, sig->bands[i].no);
        sqlite3_bind_int64(bs, 2, sig->bands[i].value);
        ret = postings(bs, exclude_id, 1, &h);
    }
    done(st, bs);
    done(st, hs);
    /* compact, rank, and hand the best k that pass the prefilter to cb */
    size_t n = 0;
    for (size_t i = 0; i < h.cap; i++)
        if (h.v[i].id)
            h.v[n++] = h.v[i];
    *found = n;
    if (ret == 0 && n)
        qsort(h.v, n, sizeof *h.v, hit_cmp);
    sqlite3_stmt *cs = ret == 0 && n ? candidate_stmt(st, db, keys, exclude_id) : NULL;
    if (ret == 0 && n && !cs)
        ret = -1;
    size_t given = 0;
    for (size_t i = 0; ret == 0 && i < n && given < k; i++) {
        int rc = candidate_row(cs, h.v[i].id, cb, ctx);
        if (rc == 1)
            break;
        ret = rc;
        given++; /* a model that fails the prefilter still takes its place: a bounded cost */
    }
    done(st, cs);
    free(h.v);
    cand_release(st);
    return ret < 0 ? -1 : 0;
}

int store_lsh_counts(store_handle *st, int64_t *bands, int64_t *hashes, int64_t *version)
{
    sqlite3 *db = cand_conn(st);
    static const char *const sql[] = {"SELECT count(*) FROM lsh_bands",
                                      "SELECT count(*) FROM tensor_hashes",
                                      "SELECT value FROM settings WHERE key = 'lsh_version'"};
    int64_t *out[] = {bands, hashes, version};
    int ret = db ? 0 : -1;
    for (size_t i = 0; ret == 0 && i < 3; i++) {
        sqlite3_stmt *stmt = prep(st, db, sql[i]);
        *out[i] = -1;
        if (stmt && sqlite3_step(stmt) == SQLITE_ROW)
            *out[i] = sqlite3_column_int64(stmt, 0);
        else
            ret = -1;
        done(st, stmt);
    }
    cand_release(st);
    return ret;
}

int store_set_edges(store_handle *st, int64_t model_id, const store_edge *edges, size_t n)
{
    if (tx_begin(st) != 0)
        return -1;
    int ret = drop_edges(st, model_id);
    /* an upsert, not a REPLACE: a replace's delete would not reach the edges count's trigger */
    sqlite3_stmt *stmt =
        ret == 0 ? prep(st, st->wr,
                        "INSERT INTO edges"
                        " (parent_id, child_id, score, verdict, signals, rank, rev_signals)"
                        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                        " ON CONFLICT (parent_id, child_id) DO UPDATE SET"
                        " score = excluded.score, verdict = excluded.verdict,"
                        " signals = excluded.signals, rank = excluded.rank,"
                        " rev_signals = excluded.rev_signals, is_parent = 0,"
                        " share = NULL")
                 : NULL;
    if (!stmt)
        ret = -1;
    for (size_t i = 0; i < n && ret == 0; i++) {
        sqlite3_bind_int64(stmt, 1, edges[i].parent_id);
        sqlite3_bind_int64(stmt, 2, edges[i].child_id);
        sqlite3_bind_double(stmt, 3, edges[i].score);
        sqlite3_bind_text(stmt, 4, edges[i].verdict, -1, SQLITE_STATIC);
        bind_text(stmt, 5, edges[i].signals);
        sqlite3_bind_double(stmt, 6, edges[i].rank);
        bind_text(stmt, 7, edges[i].signals_rev);
        if (sqlite3_step(stmt) != SQLITE_DONE) {
            store_log(st->wr, "insert edge");
            ret = -1;
        }
        sqlite3_reset(stmt);
    }
    done(st, stmt);
    if (ret == 0)
        ret = relink_child(st, model_id);
    for (size_t i = 0; i < n && ret == 0; i++)
        if (edges[i].child_id != model_id)
            ret = relink_child(st, edges[i].child_id);
    return tx_end(st, ret);
}

void store_rels_free(store_rel *rels, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(rels[i].signals);
        free(rels[i].rev_signals);
    }
    free(rels);
}

int store_related(store_handle *st, int64_t id, store_rel **out, size_t *n)
{
    int ret = -1;
    size_t count = 0, cap = 0;
    store_rel *rels = NULL;
    pthread_mutex_lock(&st->read_lock);
    sqlite3_stmt *stmt = prep(st, st->rd,
                              "SELECT e.parent_id, e.child_id, e.score, e.verdict, e.rank,"
                              " e.signals, e.rev_signals, e.is_parent, e.share,"
                              " (SELECT created_ns FROM models WHERE id = e.parent_id),"
                              " (SELECT created_ns FROM models WHERE id = e.child_id)"
                              " FROM edges e WHERE e.parent_id = ?1 OR e.child_id = ?1"
                              " ORDER BY e.parent_id, e.child_id");
    if (!stmt)
        goto out;
    sqlite3_bind_int64(stmt, 1, id);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (count == cap) {
            cap = cap ? cap * 2 : 8;
            store_rel *grown = realloc(rels, cap * sizeof *rels);
            if (!grown)
                goto out_stmt;
            rels = grown;
        }
        store_rel *r = &rels[count++];
        memset(r, 0, sizeof *r);
        r->parent_id = sqlite3_column_int64(stmt, 0);
        r->child_id = sqlite3_column_int64(stmt, 1);
        r->score = sqlite3_column_double(stmt, 2);
        copy_col(stmt, 3, r->verdict, sizeof r->verdict);
        r->rank = sqlite3_column_double(stmt, 4);
        r->signals = dup_col(stmt, 5);
        r->rev_signals = dup_col(stmt, 6);
        r->is_parent = sqlite3_column_int(stmt, 7) != 0;
        r->share =
            sqlite3_column_type(stmt, 8) == SQLITE_NULL ? NAN : sqlite3_column_double(stmt, 8);
        r->parent_created_ns = sqlite3_column_int64(stmt, 9);
        r->child_created_ns = sqlite3_column_int64(stmt, 10);
    }
    if (rc == SQLITE_DONE)
        ret = 0;
    else
        store_log(st->rd, "related");
out_stmt:
    done(st, stmt);
out:
    pthread_mutex_unlock(&st->read_lock);
    if (ret != 0) {
        store_rels_free(rels, count);
        rels = NULL;
        count = 0;
    }
    *out = rels;
    *n = count;
    return ret;
}

int store_set_parents(store_handle *st, const int64_t *children, size_t n_children,
                      const store_parent_set *set, size_t n)
{
    if (tx_begin(st) != 0)
        return -1;
    int ret = 0;
    for (size_t i = 0; i < n_children && ret == 0; i++) {
        sqlite3_stmt *stmt =
            prep(st, st->wr, "UPDATE edges SET is_parent = 0, share = NULL WHERE child_id = ?1");
        if (!stmt) {
            ret = -1;
            break;
        }
        sqlite3_bind_int64(stmt, 1, children[i]);
        ret = step_done(st, st->wr, stmt);
    }
    for (size_t i = 0; i < n && ret == 0; i++) {
        const store_parent_set *p = &set[i];
        sqlite3_stmt *stmt = prep(st, st->wr,
                                  "DELETE FROM edges WHERE (parent_id = ?1 AND child_id = ?2)"
                                  " OR (parent_id = ?2 AND child_id = ?1)");
        if (!stmt) {
            ret = -1;
            break;
        }
        sqlite3_bind_int64(stmt, 1, p->parent_id);
        sqlite3_bind_int64(stmt, 2, p->child_id);
        if ((ret = step_done(st, st->wr, stmt)) != 0)
            break;
        stmt = prep(st, st->wr,
                    "INSERT INTO edges (parent_id, child_id, score, verdict, signals, rank,"
                    " rev_signals, is_parent, share) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
        if (!stmt) {
            ret = -1;
            break;
        }
        sqlite3_bind_int64(stmt, 1, p->parent_id);
        sqlite3_bind_int64(stmt, 2, p->child_id);
        sqlite3_bind_double(stmt, 3, p->score);
        sqlite3_bind_text(stmt, 4, p->verdict, -1, SQLITE_STATIC);
        bind_text(stmt, 5, p->signals);
        sqlite3_bind_double(stmt, 6, p->rank);
        bind_text(stmt, 7, p->rev_signals);
        sqlite3_bind_int(stmt, 8, p->is_main ? 1 : 0);
        if (isfinite(p->share))
            sqlite3_bind_double(stmt, 9, p->share);
        else
            sqlite3_bind_null(stmt, 9);
        ret = step_done(st, st->wr, stmt);
    }
    return tx_end(st, ret);
}

/* ---------------------------------------------------------------- namespace changes */

/* Paths are compared as bytes (BINARY collation, case-sensitive, no wildcards): the rows strictly
 * below dir are exactly those in the half-open range [dir "/", dir "0"), since '0' is the byte
 * after '/'. Both bounds are built here; the range uses the primary key index. */
typedef struct subtree {
    char *lo; /* dir + "/" (dir "/" itself for the root) */
    char *hi; /* lo with its last byte '/' raised to '0' */
} subtree;

static int subtree_init(subtree *s, const char *dir)
{
    size_t len = strlen(dir);
    bool slash = len > 0 && dir[len - 1] == '/';
    s->lo = malloc(len + 2);
    s->hi = malloc(len + 2);
    if (!s->lo || !s->hi) {
        free(s->lo);
        free(s->hi);
        return -1;
    }
    memcpy(s->lo, dir, len);
    if (!slash)
        s->lo[len++] = '/';
    s->lo[len] = '\0';
    memcpy(s->hi, s->lo, len + 1);
    s->hi[len - 1] = '/' + 1;
    return 0;
}

static void subtree_free(subtree *s)
{
    free(s->lo);
    free(s->hi);
}

/* WHERE clause: ?1 = the path itself, ?2/?3 = subtree bounds (bound NULL: the path alone). */
#define AT_OR_BELOW "(path = ?1 OR (path >= ?2 AND path < ?3))"

static void bind_subtree(sqlite3_stmt *stmt, const char *path, const subtree *s)
{
    sqlite3_bind_text(stmt, 1, path, -1, SQLITE_STATIC);
    if (s) {
        sqlite3_bind_text(stmt, 2, s->lo, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 3, s->hi, -1, SQLITE_STATIC);
    } else {
        sqlite3_bind_null(stmt, 2);
        sqlite3_bind_null(stmt, 3);
    }
}

typedef struct moved_row {
    char *path; /* the new path */
    int64_t model_id, dir_mtime_ns;
} moved_row;

/* The model ids of the rows at or below path (s NULL: at path only), each once. */
static int ids_at(store_handle *st, const char *path, const subtree *s, int64_t **out, size_t *n)
{
    int64_t *ids = NULL;
    size_t count = 0, cap = 0;
    int ret = 0;
    *out = NULL;
    *n = 0;
    sqlite3_stmt *stmt =
        prep(st, st->wr, "SELECT DISTINCT model_id FROM model_paths WHERE " AT_OR_BELOW);
    if (!stmt)
        return -1;
    bind_subtree(stmt, path, s);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (count == cap) {
            cap = cap ? cap * 2 : 8;
            int64_t *grown = realloc(ids, cap * sizeof *ids);
            if (!grown) {
                ret = -1;
                break;
            }
            ids = grown;
        }
        ids[count++] = sqlite3_column_int64(stmt, 0);
    }
    if (ret == 0 && rc != SQLITE_DONE) {
        store_log(st->wr, "paths below");
        ret = -1;
    }
    done(st, stmt);
    if (ret != 0) {
        free(ids);
        return -1;
    }
    *out = ids;
    *n = count;
    return 0;
}

static int delete_at(store_handle *st, const char *path, const subtree *s)
{
    sqlite3_stmt *stmt = prep(st, st->wr, "DELETE FROM model_paths WHERE " AT_OR_BELOW);
    if (!stmt)
        return -1;
    bind_subtree(stmt, path, s);
    return step_done(st, st->wr, stmt);
}

static int drop_orphans(store_handle *st, const int64_t *ids, size_t n)
{
    int ret = 0;
    for (size_t i = 0; ret == 0 && i < n; i++)
        ret = drop_if_orphan(st, ids[i]);
    return ret;
}

int store_remove_path(store_handle *st, const char *path, bool recursive)
{
    subtree s = {0};
    if (recursive && subtree_init(&s, path) != 0)
        return -1;
    if (tx_begin(st) != 0) {
        subtree_free(&s);
        return -1;
    }
    int64_t *ids = NULL;
    size_t count = 0;
    const subtree *below = recursive ? &s : NULL;
    int ret = ids_at(st, path, below, &ids, &count);
    if (ret == 0)
        ret = delete_at(st, path, below);
    if (ret == 0)
        ret = drop_orphans(st, ids, count);
    free(ids);
    subtree_free(&s);
    return tx_end(st, ret);
}

/* The rows at or below from, with their new paths (to + the bytes after from). */
static int rows_to_move(store_handle *st, const char *from, const subtree *s, const char *to,
                        moved_row **out, size_t *n)
{
    moved_row *rows = NULL;
    size_t count = 0, cap = 0, from_len = strlen(from), to_len = strlen(to);
    int ret = 0;
    *out = NULL;
    *n = 0;
    sqlite3_stmt *stmt = prep(st, st->wr,
                              "SELECT path, model_id, dir_mtime_ns FROM model_paths"
                              " WHERE " AT_OR_BELOW);
    if (!stmt)
        return -1;
    bind_subtree(stmt, from, s);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *old = (const char *)sqlite3_column_text(stmt, 0);
        size_t old_len = (size_t)sqlite3_column_bytes(stmt, 0);
        if (!old || old_len < from_len || memcmp(old, from, from_len) != 0) {
            ret = -1; /* cannot happen: the range selects exactly this prefix */
            break;
        }
        if (count == cap) {
            cap = cap ? cap * 2 : 8;
            moved_row *grown = realloc(rows, cap * sizeof *rows);
            if (!grown) {
                ret = -1;
                break;
            }
            rows = grown;
        }
        size_t tail = old_len - from_len;
        char *np = malloc(to_len + tail + 1);
        if (!np) {
            ret = -1;
            break;
        }
        memcpy(np, to, to_len);
        memcpy(np + to_len, old + from_len, tail);
        np[to_len + tail] = '\0';
        rows[count++] =
            (moved_row){np, sqlite3_column_int64(stmt, 1), sqlite3_column_int64(stmt, 2)};
    }
    if (ret == 0 && rc != SQLITE_DONE) {
        store_log(st->wr, "rename");
        ret = -1;
    }
    done(st, stmt);
    if (ret != 0) {
        for (size_t i = 0; i < count; i++)
            free(rows[i].path);
        free(rows);
        return -1;
    }
    *out = rows;
    *n = count;
    return 0;
}

int store_rename(store_handle *st, const char *from, const char *to)
{
    if (strcmp(from, to) == 0)
        return 0;
    size_t from_len = strlen(from);
    /* Into its own subtree: rename(2) refuses that (EINVAL); so does the store. */
    if (from_len > 0 && strncmp(to, from, from_len) == 0 &&
        (to[from_len] == '/' || from[from_len - 1] == '/'))
        return -1;
    subtree sf = {0}, stt = {0};
    if (subtree_init(&sf, from) != 0)
        return -1;
    if (subtree_init(&stt, to) != 0) {
        subtree_free(&sf);
        return -1;
    }
    moved_row *rows = NULL;
    size_t n_rows = 0, n_ids = 0;
    int64_t *ids = NULL;
    sqlite3_stmt *stmt = NULL;
    int ret = -1;
    if (tx_begin(st) != 0)
        goto out_free;
    /* Take the moving rows out, drop whatever was stored at the target (rename over an existing
     * name replaces it), put the rows back under their new paths. */
    ret = rows_to_move(st, from, &sf, to, &rows, &n_rows);
    if (ret == 0)
        ret = delete_at(st, from, &sf);
    if (ret == 0)
        ret = ids_at(st, to, &stt, &ids, &n_ids);
    if (ret == 0)
        ret = delete_at(st, to, &stt);
    if (ret == 0)
        stmt = prep(st, st->wr,
                    "INSERT INTO model_paths (path, model_id, dir_mtime_ns)"
                    " VALUES (?1, ?2, ?3)");
    if (ret == 0 && !stmt)
        ret = -1;
    for (size_t i = 0; ret == 0 && i < n_rows; i++) {
        sqlite3_bind_text(stmt, 1, rows[i].path, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 2, rows[i].model_id);
        sqlite3_bind_int64(stmt, 3, rows[i].dir_mtime_ns);
        if (sqlite3_step(stmt) != SQLITE_DONE) {
            store_log(st->wr, "rename");
            ret = -1;
        }
        sqlite3_reset(stmt);
    }
    done(st, stmt);
    if (ret == 0)
        ret = drop_orphans(st, ids, n_ids);
    ret = tx_end(st, ret);
out_free:
    for (size_t i = 0; i < n_rows; i++)
        free(rows[i].path);
    free(rows);
    free(ids);
    subtree_free(&sf);
    subtree_free(&stt);
    return ret;
}

/* ---------------------------------------------------------------- events */

/* Deletes the rows older than the newest events_max (ids grow by one per row; rows are only ever
 * deleted from the old end, so "id <= newest - max" keeps the newest max rows). Write lock held. */
static int trim_events(store_handle *st, int64_t newest)
{
    st->events_since_trim = 0;
    if (st->events_max <= 0 || newest <= st->events_max)
        return 0;
    sqlite3_stmt *stmt = prep(st, st->wr, "DELETE FROM events WHERE id <= ?1");
    if (!stmt)
        return -1;
    sqlite3_bind_int64(stmt, 1, newest - st->events_max);
    return step_done(st, st->wr, stmt);
}

/* After an events row was inserted (write lock held, outside a transaction): trims every
 * max/64 inserts (1..1024), so the table holds at most about 1.6 % more than the cap and the
 * delete runs in batches. */
static int events_inserted(store_handle *st, int64_t rowid)
{
    int64_t every = st->events_max / 64;
    if (every < 1)
        every = 1;
    if (every > 1024)
        every = 1024;
    if (st->events_max <= 0 || ++st->events_since_trim < (unsigned)every)
        return 0;
    return trim_events(st, rowid);
}

int store_event(store_handle *st, uint32_t uid, int32_t pid, const char *path, int64_t model_id,
                const char *kind, const char *detail)
{
    if (!st->wr)
        return -1;
    pthread_mutex_lock(&st->write_lock);
    int ret = -1;
    sqlite3_stmt *stmt = prep(st, st->wr,
                              "INSERT INTO events (time_ns, uid, pid, path, model_id,"
                              " kind, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    if (stmt) {
        sqlite3_bind_int64(stmt, 1, now_ns());
        sqlite3_bind_int64(stmt, 2, uid);
        sqlite3_bind_int64(stmt, 3, pid);
        bind_text(stmt, 4, path);
        if (model_id)
            sqlite3_bind_int64(stmt, 5, model_id);
        else
            sqlite3_bind_null(stmt, 5);
        sqlite3_bind_text(stmt, 6, kind, -1, SQLITE_STATIC);
        bind_text(stmt, 7, detail);
        ret = step_done(st, st->wr, stmt);
    }
    if (ret == 0)
        ret = events_inserted(st, sqlite3_last_insert_rowid(st->wr));
    pthread_mutex_unlock(&st->write_lock);
    return ret;
}

int store_set_events_max(store_handle *st, int64_t max)
{
    if (!st->wr || max < 0)
        return -1;
    pthread_mutex_lock(&st->write_lock);
    int ret = -1;
    sqlite3_stmt *stmt = prep(st, st->wr,
                              "INSERT INTO settings (key, value) VALUES ('events_max', ?1)"
                              " ON CONFLICT(key) DO UPDATE SET value = excluded.value");
    if (stmt) {
        sqlite3_bind_int64(stmt, 1, max);
        ret = step_done(st, st->wr, stmt);
    }
    if (ret == 0) {
        st->events_max = max;
        int64_t newest = 0;
        ret = wr_int(st, "SELECT coalesce(max(id), ?1) FROM events", 0, NULL, &newest);
        if (ret == 0)
            ret = trim_events(st, newest);
    }
    pthread_mutex_unlock(&st->write_lock);
    return ret;
}

int64_t store_events_max(store_handle *st)
{
    pthread_mutex_lock(&st->write_lock);
    int64_t max = st->events_max;
    pthread_mutex_unlock(&st->write_lock);
    return max;
}

int store_set_digest(store_handle *st, int64_t model_id, const char *digest)
{
    if (tx_begin(st) != 0)
        return -1;
    int64_t other = 0;
    int ret = wr_int(st, "SELECT id FROM models WHERE digest = ?1", 0, digest, &other);
    if (ret == 0 && other != model_id) {
        ret = 1; /* the same bytes are another model already: that one carries the digest */
    } else if (ret >= 0) {
        sqlite3_stmt *stmt = prep(st, st->wr, "UPDATE models SET digest = ?2 WHERE id = ?1");
        ret = -1;
        if (stmt) {
            sqlite3_bind_int64(stmt, 1, model_id);
            bind_text(stmt, 2, digest);
            ret = step_done(st, st->wr, stmt);
        }
    }
    int rc = tx_end(st, ret < 0 ? ret : 0);
    return rc < 0 ? rc : ret;
}

/* ---------------------------------------------------------------- policy */

uint64_t store_generation(store_handle *st)
{
    return atomic_load(&st->generation);
}

int store_approval_set(store_handle *st, const char *digest, const char *state, uint32_t uid,
                       int32_t pid, const char *path, int64_t model_id, const char *note)
{
    if (!st->wr || !digest || strlen(digest) != 64)
        return -1;
    pthread_mutex_lock(&st->write_lock);
    /* A security record: durable at commit. synchronous cannot change inside a transaction. */
    int ret = exec_sql(st->wr, "PRAGMA synchronous=FULL");
    if (ret == 0)
        ret = exec_sql(st->wr, "BEGIN IMMEDIATE");
    if (ret != 0) {
        exec_sql(st->wr, "PRAGMA synchronous=NORMAL");
        pthread_mutex_unlock(&st->write_lock);
        return -1;
    }
    int64_t now = now_ns();
    sqlite3_stmt *stmt = prep(st, st->wr,
                              "INSERT INTO approvals (digest, state, by_uid, at, note)"
                              " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(digest) DO UPDATE"
                              " SET state = excluded.state, by_uid = excluded.by_uid,"
                              " at = excluded.at, note = excluded.note");
    ret = -1;
    if (stmt) {
        sqlite3_bind_text(stmt, 1, digest, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 2, state, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 3, uid);
        sqlite3_bind_int64(stmt, 4, now / 1000000000);
        sqlite3_bind_text(stmt, 5, note ? note : "", -1, SQLITE_STATIC);
        ret = step_done(st, st->wr, stmt);
    }
    stmt = ret == 0 ? prep(st, st->wr,
                           "INSERT INTO events (time_ns, uid, pid, path, model_id, kind,"
                           " detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                    : NULL;
    if (stmt) {
        sqlite3_bind_int64(stmt, 1, now);
        sqlite3_bind_int64(stmt, 2, uid);
        sqlite3_bind_int64(stmt, 3, pid);
        bind_text(stmt, 4, path);
        if (model_id)
            sqlite3_bind_int64(stmt, 5, model_id);
        else
            sqlite3_bind_null(stmt, 5);
        sqlite3_bind_text(stmt, 6, strcmp(state, "approved") == 0 ? "approve" : "revoke", -1,
                          SQLITE_STATIC);
        bind_text(stmt, 7, note);
        ret = step_done(st, st->wr, stmt);
    } else {
        ret = -1;
    }
    int64_t event_id = sqlite3_last_insert_rowid(st->wr);
    if (ret == 0 && exec_sql(st->wr, "COMMIT") != 0)
        ret = -1;
    if (ret != 0)
        exec_sql(st->wr, "ROLLBACK");
    exec_sql(st->wr, "PRAGMA synchronous=NORMAL");
    if (ret == 0)
        events_inserted(st, event_id); /* the approval is committed: a failed trim is no error */
    atomic_fetch_add(&st->generation, 1);
    pthread_mutex_unlock(&st->write_lock);
    return ret;
}

void store_approval_clear(store_approval *a)
{
    free(a->note);
    memset(a, 0, sizeof *a);
}

int store_approval_get(store_handle *st, const char *digest, store_approval *out)
{
    memset(out, 0, sizeof *out);
    if (!digest || !*digest)
        return 1;
    int ret = -1;
    pthread_mutex_lock(&st->read_lock);
    sqlite3_stmt *stmt =
        prep(st, st->rd, "SELECT state, by_uid, at, note FROM approvals WHERE digest = ?1");
    if (!stmt)
        goto out;
    sqlite3_bind_text(stmt, 1, digest, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        snprintf(out->digest, sizeof out->digest, "%s", digest);
        copy_col(stmt, 0, out->state, sizeof out->state);
        out->by_uid = (uint32_t)sqlite3_column_int64(stmt, 1);
        out->at = sqlite3_column_int64(stmt, 2);
        out->note = dup_col(stmt, 3);
        ret = 0;
    } else if (rc == SQLITE_DONE) {
        ret = 1;
    } else {
        store_log(st->rd, "approval");
    }
    done(st, stmt);
out:
    pthread_mutex_unlock(&st->read_lock);
    return ret;
}

int store_any_approved(store_handle *st, const int64_t *ids, size_t n)
{
    int ret = 0;
    pthread_mutex_lock(&st->read_lock);
    sqlite3_stmt *stmt = prep(st, st->rd,
                              "SELECT 1 FROM approvals a JOIN models m"
                              " ON m.digest = a.digest"
                              " WHERE a.state = 'approved' AND m.id = ?1");
    if (!stmt)
        ret = -1;
    for (size_t i = 0; stmt && i < n && ret == 0; i++) {
        sqlite3_bind_int64(stmt, 1, ids[i]);
        int rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW)
            ret = 1;
        else if (rc != SQLITE_DONE)
            ret = -1;
        sqlite3_reset(stmt);
    }
    done(st, stmt);
    pthread_mutex_unlock(&st->read_lock);
    return ret;
}

int store_content_approved(store_handle *st, const char *sha256)
{
    int ret = -1;
    pthread_mutex_lock(&st->read_lock);
    sqlite3_stmt *stmt = prep(st, st->rd,
                              "SELECT 1 FROM files f JOIN models m ON m.id = f.model_id"
                              " JOIN approvals a ON a.digest = m.digest"
                              " WHERE f.sha256 = ?1 AND a.state = 'approved' LIMIT 1");
    if (stmt) {
        sqlite3_bind_text(stmt, 1, sha256, -1, SQLITE_STATIC);
        int rc = sqlite3_step(stmt);
        ret = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
    }
    done(st, stmt);
    pthread_mutex_unlock(&st->read_lock);
    return ret;
}

int store_policy_event(store_handle *st, uint32_t uid, int32_t pid, const char *path,
                       int64_t model_id, const char *rule, const char *decision, const char *reason)
{
    if (!st->wr)
        return -1;
    pthread_mutex_lock(&st->write_lock);
    int ret = -1;
    int64_t now = now_ns(), minute = now - now % STORE_EVENTS_WINDOW_NS;
    /* The same refusal (uid, unit, rule, decision, reason) in the same minute: one more. The unit
     * is the model id, or the path while the unit has no model row. */
    sqlite3_stmt *stmt =
        prep(st, st->wr,
             "UPDATE events SET count = count + 1, last_ns = ?1 WHERE id = ("
             " SELECT id FROM events WHERE kind = 'policy' AND uid = ?2 AND model_id IS ?3"
             " AND time_ns >= ?4 AND time_ns < ?5 AND (?3 IS NOT NULL OR path IS ?6)"
             " AND rule IS ?7 AND decision IS ?8 AND detail IS ?9"
             " ORDER BY id DESC LIMIT 1)");
    if (!stmt)
        goto out;
    sqlite3_bind_int64(stmt, 1, now);
    sqlite3_bind_int64(stmt, 2, uid);
    if (model_id)
        sqlite3_bind_int64(stmt, 3, model_id);
    else
        sqlite3_bind_null(stmt, 3);
    sqlite3_bind_int64(stmt, 4, minute);
    sqlite3_bind_int64(stmt, 5, minute + STORE_EVENTS_WINDOW_NS);
    bind_text(stmt, 6, path);
    bind_text(stmt, 7, rule);
    bind_text(stmt, 8, decision);
    bind_text(stmt, 9, reason);
    if (step_done(st, st->wr, stmt) != 0)
        goto out;
    if (sqlite3_changes(st->wr) > 0) {
        ret = 0;
        goto out;
    }
    stmt = prep(st, st->wr,
                "INSERT INTO events (time_ns, uid, pid, path, model_id,"
                " kind, detail, rule, decision, count, last_ns)"
                " VALUES (?1, ?2, ?3, ?4, ?5, 'policy', ?6, ?7, ?8, 1, ?1)");
    if (!stmt)
        goto out;
    sqlite3_bind_int64(stmt, 1, now);
    sqlite3_bind_int64(stmt, 2, uid);
    sqlite3_bind_int64(stmt, 3, pid);
    bind_text(stmt, 4, path);
    if (model_id)
        sqlite3_bind_int64(stmt, 5, model_id);
    else
        sqlite3_bind_null(stmt, 5);
    bind_text(stmt, 6, reason);
    bind_text(stmt, 7, rule);
    bind_text(stmt, 8, decision);
    ret = step_done(st, st->wr, stmt);
    if (ret == 0)
        ret = events_inserted(st, sqlite3_last_insert_rowid(st->wr));
out:
    pthread_mutex_unlock(&st->write_lock);
    return ret;
}

/* ---------------------------------------------------------------- reference matches */

void store_ref_clear(store_ref *r)
{
    free(r->name);
    free(r->family);
    free(r->evidence);
    free(r->signals);
    memset(r, 0, sizeof *r);
}

int store_set_ref(store_handle *st, int64_t model_id, const store_ref *ref)
{
    if (tx_begin(st) != 0)
        return -1;
    int ret = -1;
    sqlite3_stmt *stmt = prep(st, st->wr, "DELETE FROM model_refs WHERE model_id = ?1");
    if (stmt) {
        sqlite3_bind_int64(stmt, 1, model_id);
        ret = step_done(st, st->wr, stmt);
    }
    if (ret == 0 && ref) {
        stmt = prep(st, st->wr,
                    "INSERT INTO model_refs (model_id, kind, name, family, score, verdict,"
                    " evidence, signals) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
        ret = -1;
        if (stmt) {
            sqlite3_bind_int64(stmt, 1, model_id);
            bind_text(stmt, 2, ref->is_parent ? "parent" : "hint");
            bind_text(stmt, 3, ref->name);
            bind_text(stmt, 4, ref->family);
            sqlite3_bind_double(stmt, 5, ref->score);
            bind_text(stmt, 6, ref->verdict);
            bind_text(stmt, 7, ref->evidence);
            bind_text(stmt, 8, ref->signals);
            ret = step_done(st, st->wr, stmt);
        }
    }
    return tx_end(st, ret);
}

int store_ref_get(store_handle *st, int64_t model_id, store_ref *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&st->read_lock);
    sqlite3_stmt *stmt = prep(st, st->rd,
                              "SELECT kind, name, family, score, verdict, evidence, signals"
                              " FROM model_refs WHERE model_id = ?1");
    int ret = -1;
    if (stmt) {
        sqlite3_bind_int64(stmt, 1, model_id);
        int rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW) {
            out->is_parent = strcmp((const char *)sqlite3_column_text(stmt, 0), "parent") == 0;
            out->name = dup_col(stmt, 1);
            out->family = dup_col(stmt, 2);
            out->score = sqlite3_column_double(stmt, 3);
            copy_col(stmt, 4, out->verdict, sizeof out->verdict);
            out->evidence = dup_col(stmt, 5);
            out->signals = dup_col(stmt, 6);
            ret = out->name && out->family ? 0 : -1;
        } else if (rc == SQLITE_DONE) {
            ret = 1;
        }
        done(st, stmt);
    }
    pthread_mutex_unlock(&st->read_lock);
    if (ret != 0)
        store_ref_clear(out);
    return ret;
}

int store_set_adapter_base(store_handle *st, int64_t model_id, const char *declared)
{
    if (tx_begin(st) != 0)
        return -1;
    int ret = -1;
    sqlite3_stmt *stmt =
        prep(st, st->wr,
             declared ? "INSERT OR REPLACE INTO adapter_bases (model_id, declared) VALUES (?1, ?2)"
                      : "DELETE FROM adapter_bases WHERE model_id = ?1");
    if (stmt) {
        sqlite3_bind_int64(stmt, 1, model_id);
        if (declared)
            sqlite3_bind_text(stmt, 2, declared, -1, SQLITE_STATIC);
        ret = step_done(st, st->wr, stmt);
    }
    return tx_end(st, ret);
}

int store_adapter_tried(store_handle *st, int64_t model_id)
{
    if (tx_begin(st) != 0)
        return -1;
    int ret = -1;
    sqlite3_stmt *stmt =
        prep(st, st->wr, "UPDATE adapter_bases SET tried_ns = ?2 WHERE model_id = ?1");
    if (stmt) {
        sqlite3_bind_int64(stmt, 1, model_id);
        sqlite3_bind_int64(stmt, 2, now_ns());
        ret = step_done(st, st->wr, stmt);
    }
    return tx_end(st, ret);
}

int store_drop_adapter_parent(store_handle *st, int64_t model_id)
{
    if (tx_begin(st) != 0)
        return -1;
    int ret =
        wr_exec_id(st, "DELETE FROM edges WHERE child_id = ?1 AND verdict = 'adapter'", model_id);
    if (ret == 0)
        ret = relink_child(st, model_id);
    return tx_end(st, ret);
}
