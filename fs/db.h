/* The database the lineage store runs its SQL on: SQLite (a file; the default) or PostgreSQL (a
 * server many hosts share). One small statement API over both, so the store's queries are
 * written once.
 *
 * SQL given to db_prepare and db_exec is the dialect both engines accept: numbered parameters
 * ?1, ?2, ... (rewritten to $1, $2 for PostgreSQL), INSERT ... ON CONFLICT, RETURNING. What
 * differs (schema text, JSON functions, BEGIN IMMEDIATE) is chosen by the caller with
 * db_kind_of, or rewritten here (db_pg.c says what it rewrites).
 *
 * A connection is not thread-safe: the caller serialises its use (the store holds one mutex per
 * connection). A statement belongs to one connection. Text bound to a statement is copied.
 */
#ifndef PROVFS_DB_H
#define PROVFS_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct db_conn db_conn;
typedef struct db_stmt db_stmt;

typedef enum db_kind { DB_SQLITE, DB_PG } db_kind;

enum { DB_READONLY = 1u << 0 };

/* Results of db_step. */
enum { DB_ERROR = -1, DB_ROW = 1, DB_DONE = 2 };

/* Is target a PostgreSQL connection string (postgresql:// or postgres:// URI, or libpq
 * "key=value" words) rather than a file path? */
bool db_target_is_pg(const char *target);

/* Opens target: a file path (SQLite; created unless READONLY) or a PostgreSQL connection
 * string. A password comes from PGPASSFILE, ~/.pgpass or PGPASSWORD, never from the string
 * (one holding password= is refused, so it cannot show in a process listing). err gets a
 * one-line reason. */
int db_open(const char *target, unsigned flags, db_conn **out, char *err, size_t errlen);
void db_close(db_conn *c);
db_kind db_kind_of(const db_conn *c);
/* The last error of c, one line. */
const char *db_errmsg(db_conn *c);

/* Runs sql (one or more statements, no parameters). 0, or -1 (logged). */
int db_exec(db_conn *c, const char *sql);

/* NULL on error (logged with the SQL). */
db_stmt *db_prepare(db_conn *c, const char *sql);
void db_finalize(db_stmt *s);
/* Ready to run again; bindings kept (db_clear_bindings drops them). */
void db_reset(db_stmt *s);
void db_clear_bindings(db_stmt *s);
const char *db_sql(const db_stmt *s);
db_conn *db_stmt_conn(const db_stmt *s);

void db_bind_int64(db_stmt *s, int idx, int64_t v);
void db_bind_double(db_stmt *s, int idx, double v);
void db_bind_text(db_stmt *s, int idx, const char *text); /* NULL binds NULL */
void db_bind_null(db_stmt *s, int idx);
/* n bytes at p (copied); p NULL binds NULL. The column is BLOB (SQLite) or bytea (PostgreSQL). */
void db_bind_blob(db_stmt *s, int idx, const void *p, size_t n);

/* DB_ROW (a row to read), DB_DONE, or DB_ERROR (db_errmsg says why). */
int db_step(db_stmt *s);
bool db_col_null(db_stmt *s, int col);
int64_t db_col_int64(db_stmt *s, int col);
double db_col_double(db_stmt *s, int col);
/* NULL for SQL NULL; valid until the next step or reset of s. */
const char *db_col_text(db_stmt *s, int col);
size_t db_col_bytes(db_stmt *s, int col);
/* The bytes of a BLOB / bytea column, NULL for SQL NULL (or when PostgreSQL's text form of it
 * cannot be read); *n gets their count. Valid until the next step or reset of s, or the next
 * db_col_blob on s. */
const void *db_col_blob(db_stmt *s, int col, size_t *n);

/* Commits on c reach stable storage before they return (on) or may lag a moment behind a power
 * loss (off, the default of a SQLite file in WAL mode; PostgreSQL's commits are always
 * durable). 0, or -1. */
int db_durable(db_conn *c, bool on);

/* Rows changed by the last INSERT, UPDATE or DELETE run on c. */
int64_t db_changes(db_conn *c);

#endif
