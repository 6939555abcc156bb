/* The lineage store, on SQLite or PostgreSQL (fs/db.h). Schema and migrations: see
 * fs/README.md; their SQL is in store_sqlite.c and store_pg.c. This file: connections, the
 * statement cache, file modes, open and close; the rest is in store_*.c, which share
 * store_int.h. */
#include "store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void store_log(db_conn *db, const char *what)
{
    fprintf(stderr, "provfs: store: %s: %s\n", what, db ? db_errmsg(db) : "no database");
}

int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int exec_sql(db_conn *db, const char *sql)
{
    return db_exec(db, sql);
}

static stmt_cache *cache_of(store_handle *st, db_conn *db)
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
db_stmt *prep(store_handle *st, db_conn *db, const char *sql)
{
    stmt_cache *c = cache_of(st, db);
    uint64_t h = c ? sql_hash(sql) : 0;
    if (c) {
        for (int i = 0; i < c->n; i++) {
            if (!c->slot[i].out && c->slot[i].hash == h &&
                strcmp(db_sql(c->slot[i].stmt), sql) == 0) {
                c->slot[i].out = true;
                return c->slot[i].stmt;
            }
        }
    }
    db_stmt *stmt = db_prepare(db, sql);
    if (!stmt)
        return NULL;
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
void done(store_handle *st, db_stmt *stmt)
{
    if (!stmt)
        return;
    /* only the cache of the statement's own connection: the caller holds that one's lock */
    stmt_cache *c = cache_of(st, db_stmt_conn(stmt));
    for (int i = 0; c && i < c->n; i++) {
        if (c->slot[i].stmt == stmt) {
            db_reset(stmt);
            db_clear_bindings(stmt);
            c->slot[i].out = false;
            return;
        }
    }
    db_finalize(stmt);
}

static void cache_clear(stmt_cache *c)
{
    for (int i = 0; i < c->n; i++)
        db_finalize(c->slot[i].stmt);
    c->n = 0;
}

/* Runs a statement that returns no rows; binds are done by the caller. Gives it back. */
int step_done(store_handle *st, db_conn *db, db_stmt *stmt)
{
    int rc = db_step(stmt);
    done(st, stmt);
    if (rc != DB_DONE) {
        store_log(db, "step");
        return -1;
    }
    return 0;
}

/* Runs an INSERT ... RETURNING id: *id is the new row's. Gives the statement back. */
int step_id(store_handle *st, db_conn *db, db_stmt *stmt, int64_t *id)
{
    int rc = db_step(stmt);
    if (rc == DB_ROW) {
        *id = db_col_int64(stmt, 0);
        rc = db_step(stmt);
    }
    done(st, stmt);
    if (rc != DB_DONE) {
        store_log(db, "step");
        return -1;
    }
    return 0;
}

void copy_col(db_stmt *stmt, int col, char *out, size_t outlen)
{
    const char *text = db_col_text(stmt, col);
    snprintf(out, outlen, "%s", text ? (const char *)text : "");
}

char *dup_col(db_stmt *stmt, int col)
{
    const char *text = db_col_text(stmt, col);
    return text ? strdup((const char *)text) : NULL;
}

void bind_text(db_stmt *stmt, int idx, const char *text)
{
    if (text && *text)
        db_bind_text(stmt, idx, text);
    else
        db_bind_null(stmt, idx);
}

void bind_opt_int(db_stmt *stmt, int idx, int64_t v)
{
    if (v == INT64_MIN)
        db_bind_null(stmt, idx);
    else
        db_bind_int64(stmt, idx, v);
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

/* The generation row is the last lock a write transaction takes, so waiting for it never
 * deadlocks: its holder is about to commit. */
int shared_bump(store_handle *st)
{
    return st->shared ? exec_sql(st->wr, "UPDATE provfs_generation SET n = n + 1") : 0;
}

int tx_end(store_handle *st, int ret)
{
    if (ret == 0)
        ret = shared_bump(st);
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
    db_stmt *stmt = prep(st, st->wr, sql);
    if (!stmt)
        return -1;
    if (text)
        db_bind_text(stmt, 1, text);
    else
        db_bind_int64(stmt, 1, arg);
    int rc = db_step(stmt), ret;
    if (rc == DB_ROW) {
        *out = db_col_int64(stmt, 0);
        ret = 0;
    } else {
        ret = rc == DB_DONE ? 1 : -1;
        if (ret < 0)
            store_log(st->wr, sql);
    }
    done(st, stmt);
    return ret;
}

int wr_exec_id(store_handle *st, const char *sql, int64_t id)
{
    db_stmt *stmt = prep(st, st->wr, sql);
    if (!stmt)
        return -1;
    db_bind_int64(stmt, 1, id);
    return step_done(st, st->wr, stmt);
}

static int migrate(db_conn *db, char *err, size_t errlen)
{
    return db_kind_of(db) == DB_PG ? store_pg_migrate(db, err, errlen)
                                   : store_sqlite_migrate(db, err, errlen);
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
    db_stmt *stmt = prep(st, st->wr, "SELECT value FROM settings WHERE key = 'events_max'");
    if (!stmt)
        return -1;
    int rc = db_step(stmt);
    const char *text = rc == DB_ROW ? db_col_text(stmt, 0) : NULL;
    char *end = NULL;
    long long v = text ? strtoll(text, &end, 10) : -1;
    if (text && *text && end && !*end && v >= 0) /* an integer, as text on either engine */
        st->events_max = v;
    done(st, stmt);
    if (rc != DB_ROW && rc != DB_DONE)
        return -1;
    int64_t newest = 0;
    stmt = prep(st, st->wr, "SELECT max(id) FROM events");
    if (!stmt)
        return -1;
    if (db_step(stmt) == DB_ROW)
        newest = db_col_int64(stmt, 0);
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
    bool pg = db_target_is_pg(path);
    st->shared = pg;
    if (!readonly) {
        if (!pg && protect_db(path, err, errlen) != 0)
            goto fail;
        if (db_open(path, 0, &st->wr, err, errlen) != 0)
            goto fail;
        if (migrate(st->wr, err, errlen) != 0)
            goto fail;
        if (fp_upgrade(st, err, errlen) != 0 || lsh_backfill(st, err, errlen) != 0)
            goto fail;
        if (load_events_max(st) != 0) {
            snprintf(err, errlen, "%s: %s", path, db_errmsg(st->wr));
            goto fail;
        }
    }
    if (db_open(path, readonly ? DB_READONLY : 0, &st->rd, err, errlen) != 0)
        goto fail;
    if ((flags & STORE_PATH_FILTER) && !readonly && !pg && store_path_filter_load(st) != 0) {
        snprintf(err, errlen, "%s: cannot read the model paths", path);
        goto fail;
    }
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
    store_path_filter_free(st);
    db_close(st->wr);
    db_close(st->rd);
    pthread_mutex_destroy(&st->write_lock);
    pthread_mutex_destroy(&st->read_lock);
    free(st);
}
