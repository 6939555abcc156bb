/* fs/db.h on SQLite: a thin wrapper. The database file is opened in WAL mode (readers do not
 * wait for the writer), with foreign keys on and a 10 s busy wait. */
#include "db_int.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct sq_conn {
    db_conn base;
    sqlite3 *db;
} sq_conn;

typedef struct sq_stmt {
    db_stmt base;
    sqlite3_stmt *stmt;
} sq_stmt;

#define CONN(c) (((sq_conn *)(c))->db)
#define STMT(s) (((sq_stmt *)(s))->stmt)

static void sq_close(db_conn *c)
{
    if (!sqlite3_db_readonly(CONN(c), "main")) /* leave no -wal behind */
        sqlite3_exec(CONN(c), "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    sqlite3_close(CONN(c));
    free(c);
}

static const char *sq_errmsg(db_conn *c) { return sqlite3_errmsg(CONN(c)); }

static int sq_exec(db_conn *c, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(CONN(c), sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "provfs: store: %s\n", msg ? msg : "exec failed");
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static db_stmt *sq_prepare(db_conn *c, const char *sql)
{
    sq_stmt *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (sqlite3_prepare_v2(CONN(c), sql, -1, &s->stmt, NULL) != SQLITE_OK) {
        fprintf(stderr, "provfs: store: %s: %s\n", sql, sqlite3_errmsg(CONN(c)));
        sqlite3_finalize(s->stmt);
        free(s);
        return NULL;
    }
    s->base.conn = c;
    return &s->base;
}

static void sq_finalize(db_stmt *s)
{
    sqlite3_finalize(STMT(s));
    free(s);
}

static void sq_reset(db_stmt *s) { sqlite3_reset(STMT(s)); }
static void sq_clear_bindings(db_stmt *s) { sqlite3_clear_bindings(STMT(s)); }
static const char *sq_sql(const db_stmt *s) { return sqlite3_sql(((const sq_stmt *)s)->stmt); }
static void sq_bind_int64(db_stmt *s, int i, int64_t v) { sqlite3_bind_int64(STMT(s), i, v); }
static void sq_bind_double(db_stmt *s, int i, double v) { sqlite3_bind_double(STMT(s), i, v); }
static void sq_bind_null(db_stmt *s, int i) { sqlite3_bind_null(STMT(s), i); }

static void sq_bind_text(db_stmt *s, int i, const char *t)
{
    if (t)
        sqlite3_bind_text(STMT(s), i, t, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(STMT(s), i);
}

static void sq_bind_blob(db_stmt *s, int i, const void *p, size_t n)
{
    if (p && n <= INT32_MAX)
        sqlite3_bind_blob(STMT(s), i, n ? p : "", (int)n, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(STMT(s), i);
}

static int sq_step(db_stmt *s)
{
    int rc = sqlite3_step(STMT(s));
    return rc == SQLITE_ROW ? DB_ROW : rc == SQLITE_DONE ? DB_DONE : DB_ERROR;
}

static bool sq_col_null(db_stmt *s, int c) { return sqlite3_column_type(STMT(s), c) == SQLITE_NULL; }
static int64_t sq_col_int64(db_stmt *s, int c) { return sqlite3_column_int64(STMT(s), c); }
static double sq_col_double(db_stmt *s, int c) { return sqlite3_column_double(STMT(s), c); }

static const char *sq_col_text(db_stmt *s, int c)
{
    return (const char *)sqlite3_column_text(STMT(s), c);
}

static size_t sq_col_bytes(db_stmt *s, int c)
{
    int n = sqlite3_column_bytes(STMT(s), c);
    return n > 0 ? (size_t)n : 0;
}

static const void *sq_col_blob(db_stmt *s, int c, size_t *n)
{
    *n = 0;
    if (sqlite3_column_type(STMT(s), c) == SQLITE_NULL)
        return NULL;
    const void *p = sqlite3_column_blob(STMT(s), c); /* NULL for an empty blob */
    int len = sqlite3_column_bytes(STMT(s), c);
    *n = p && len > 0 ? (size_t)len : 0;
    return p ? p : "";
}

static int64_t sq_changes(db_conn *c) { return sqlite3_changes(CONN(c)); }

static int sq_durable(db_conn *c, bool on)
{
    return sq_exec(c, on ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
}

static const db_ops sq_ops = {
    .close = sq_close,
    .errmsg = sq_errmsg,
    .exec = sq_exec,
    .prepare = sq_prepare,
    .finalize = sq_finalize,
    .reset = sq_reset,
    .clear_bindings = sq_clear_bindings,
    .sql = sq_sql,
    .bind_int64 = sq_bind_int64,
    .bind_double = sq_bind_double,
    .bind_text = sq_bind_text,
    .bind_null = sq_bind_null,
    .bind_blob = sq_bind_blob,
    .step = sq_step,
    .col_null = sq_col_null,
    .col_int64 = sq_col_int64,
    .col_double = sq_col_double,
    .col_text = sq_col_text,
    .col_bytes = sq_col_bytes,
    .col_blob = sq_col_blob,
    .changes = sq_changes,
    .durable = sq_durable,
};

int db_sqlite_open(const char *path, unsigned flags, db_conn **out, char *err, size_t errlen)
{
    bool readonly = flags & DB_READONLY;
    int oflags = SQLITE_OPEN_NOMUTEX |
                 (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    sq_conn *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->base.ops = &sq_ops;
    c->base.kind = DB_SQLITE;
    if (sqlite3_open_v2(path, &c->db, oflags, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, c->db ? sqlite3_errmsg(c->db) : "cannot open");
        sq_close(&c->base);
        return -1;
    }
    sqlite3_busy_timeout(c->db, 10000);
    sqlite3_extended_result_codes(c->db, 1);
    if (sq_exec(&c->base, "PRAGMA foreign_keys=ON") != 0 ||
        (!readonly && (sq_exec(&c->base, "PRAGMA journal_mode=WAL") != 0 ||
                       sq_exec(&c->base, "PRAGMA synchronous=NORMAL") != 0))) {
        snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(c->db));
        sq_close(&c->base);
        return -1;
    }
    *out = &c->base;
    return 0;
}
