/* Inside fs/db.h: what a backend (db_sqlite.c, db_pg.c) provides. Private to those files and
 * db.c. */
#ifndef PROVFS_DB_INT_H
#define PROVFS_DB_INT_H
#include "db.h"

typedef struct db_ops {
    void (*close)(db_conn *c);
    const char *(*errmsg)(db_conn *c);
    int (*exec)(db_conn *c, const char *sql);
    db_stmt *(*prepare)(db_conn *c, const char *sql);
    void (*finalize)(db_stmt *s);
    void (*reset)(db_stmt *s);
    void (*clear_bindings)(db_stmt *s);
    const char *(*sql)(const db_stmt *s);
    void (*bind_int64)(db_stmt *s, int idx, int64_t v);
    void (*bind_double)(db_stmt *s, int idx, double v);
    void (*bind_text)(db_stmt *s, int idx, const char *text);
    void (*bind_null)(db_stmt *s, int idx);
    void (*bind_blob)(db_stmt *s, int idx, const void *p, size_t n);
    int (*step)(db_stmt *s);
    bool (*col_null)(db_stmt *s, int col);
    int64_t (*col_int64)(db_stmt *s, int col);
    double (*col_double)(db_stmt *s, int col);
    const char *(*col_text)(db_stmt *s, int col);
    size_t (*col_bytes)(db_stmt *s, int col);
    const void *(*col_blob)(db_stmt *s, int col, size_t *n);
    int64_t (*changes)(db_conn *c);
    int (*durable)(db_conn *c, bool on);
} db_ops;

/* First member of every backend's connection and statement. */
struct db_conn {
    const db_ops *ops;
    db_kind kind;
};

struct db_stmt {
    db_conn *conn;
};

int db_sqlite_open(const char *path, unsigned flags, db_conn **out, char *err, size_t errlen);
int db_pg_open(const char *target, unsigned flags, db_conn **out, char *err, size_t errlen);

#endif
