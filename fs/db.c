/* fs/db.h: the choice of backend, and calls passed to it. */
#include "db_int.h"

#include <stdio.h>
#include <string.h>

bool db_target_is_pg(const char *target)
{
    if (!target)
        return false;
    if (strncmp(target, "postgresql://", 13) == 0 || strncmp(target, "postgres://", 11) == 0)
        return true;
    /* libpq's "key=value" words: a path never starts with one of its keywords and an '=' */
    static const char *const keys[] = {"host=", "hostaddr=", "dbname=", "user=", "port=",
                                       "service="};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strncmp(target, keys[i], strlen(keys[i])) == 0)
            return true;
    return false;
}

int db_open(const char *target, unsigned flags, db_conn **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!target || !*target) {
        snprintf(err, errlen, "no database given");
        return -1;
    }
    return db_target_is_pg(target) ? db_pg_open(target, flags, out, err, errlen)
                                   : db_sqlite_open(target, flags, out, err, errlen);
}

void db_close(db_conn *c)
{
    if (c)
        c->ops->close(c);
}

db_kind db_kind_of(const db_conn *c) { return c->kind; }
const char *db_errmsg(db_conn *c) { return c ? c->ops->errmsg(c) : "no database"; }
int db_exec(db_conn *c, const char *sql) { return c->ops->exec(c, sql); }
db_stmt *db_prepare(db_conn *c, const char *sql) { return c->ops->prepare(c, sql); }

void db_finalize(db_stmt *s)
{
    if (s)
        s->conn->ops->finalize(s);
}

void db_reset(db_stmt *s) { s->conn->ops->reset(s); }
void db_clear_bindings(db_stmt *s) { s->conn->ops->clear_bindings(s); }
const char *db_sql(const db_stmt *s) { return s->conn->ops->sql(s); }
db_conn *db_stmt_conn(const db_stmt *s) { return s->conn; }
void db_bind_int64(db_stmt *s, int idx, int64_t v) { s->conn->ops->bind_int64(s, idx, v); }
void db_bind_double(db_stmt *s, int idx, double v) { s->conn->ops->bind_double(s, idx, v); }
void db_bind_text(db_stmt *s, int idx, const char *t) { s->conn->ops->bind_text(s, idx, t); }
void db_bind_blob(db_stmt *s, int idx, const void *p, size_t n)
{
    s->conn->ops->bind_blob(s, idx, p, n);
}
void db_bind_null(db_stmt *s, int idx) { s->conn->ops->bind_null(s, idx); }
int db_step(db_stmt *s) { return s->conn->ops->step(s); }
bool db_col_null(db_stmt *s, int col) { return s->conn->ops->col_null(s, col); }
int64_t db_col_int64(db_stmt *s, int col) { return s->conn->ops->col_int64(s, col); }
double db_col_double(db_stmt *s, int col) { return s->conn->ops->col_double(s, col); }
const char *db_col_text(db_stmt *s, int col) { return s->conn->ops->col_text(s, col); }
const void *db_col_blob(db_stmt *s, int col, size_t *n) { return s->conn->ops->col_blob(s, col, n); }
size_t db_col_bytes(db_stmt *s, int col) { return s->conn->ops->col_bytes(s, col); }
int64_t db_changes(db_conn *c) { return c->ops->changes(c); }
int db_durable(db_conn *c, bool on) { return c->ops->durable(c, on); }
