/* fs/db.h on PostgreSQL (libpq).
 *
 * libpq is loaded with dlopen when a PostgreSQL database is first opened, not linked: it brings
 * some twenty libraries (Kerberos, LDAP, SASL, GnuTLS, p11-kit) that a daemon on a SQLite file
 * has no use for, and that would otherwise be mapped (and their constructors run) in every
 * analyzer worker too, the sandboxed process that parses hostile model files under a small
 * RLIMIT_AS.
 *
 * Statements are prepared on the server the first time they run (named s1, s2, ... per
 * connection), with parameter types taken from that run's bindings: int64 as bigint, double as
 * double precision, text and NULL left for the server to infer. Values travel as text.
 *
 * Rewritten from the shared dialect (db.h): ?N parameters become $N (outside quoted text and
 * identifiers), and "BEGIN IMMEDIATE" becomes "BEGIN". Nothing else is.
 *
 * A lost connection is not fatal: the statement that found it fails (DB_ERROR), and the next
 * use reconnects, at most once per back-off period (0.1 s doubling to 5 s), preparing its
 * statements again. The caller decides what a failure means (the gate refuses, fail closed). */
#include "db_int.h"
#include "clock.h"

#include <dlfcn.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PG_INT8 20
#define PG_FLOAT8 701
#define PG_BYTEA 17
#define PG_MAX_PARAMS 64
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

typedef struct pg_conn {
    db_conn base;
    PGconn *pg;
    char *target;
    unsigned epoch;      /* bumped at every (re)connection: prepared statements are gone */
    unsigned next_name;
    int64_t changes;
    int64_t retry_at_ms; /* no reconnect before this (monotonic ms) */
    int backoff_ms;
    char err[512];
} pg_conn;

typedef struct pg_stmt {
    db_stmt base;
    char *sql;    /* as given */
    char *pg_sql; /* rewritten */
    int nparams;
    uint64_t used; /* bit n-1: ?n appears in the SQL */
    char *val[PG_MAX_PARAMS];
    unsigned type[PG_MAX_PARAMS];
    int len[PG_MAX_PARAMS]; /* bytes of a binary parameter */
    int fmt[PG_MAX_PARAMS]; /* 1: binary (bytea), 0: text */
    unsigned char *blob;    /* a bytea column of the current row, decoded (db_col_blob; PQfreemem) */
    char name[24];
    unsigned epoch; /* of the connection it was prepared on; 0 = not prepared */
    PGresult *res;
    int row, nrows;
    bool ran;
} pg_stmt;

/* The libpq functions used, resolved once (pq_load). */
#define PQ_FUNCS(X)                                                                               \
    X(PQconnectdbParams) X(PQstatus) X(PQfinish) X(PQerrorMessage) X(PQsetNoticeProcessor) X(PQexec)   \
    X(PQclear) X(PQresultStatus) X(PQcmdTuples) X(PQresultErrorMessage) X(PQprepare)            \
    X(PQexecPrepared) X(PQntuples) X(PQnfields) X(PQgetisnull) X(PQgetvalue) X(PQgetlength)     \
    X(PQconninfoParse) X(PQconninfoFree) X(PQfreemem) X(PQunescapeBytea)
#define PQ_PTR(f) __typeof__(f) *f;
static struct {
    PQ_FUNCS(PQ_PTR)
} pq;
#undef PQ_PTR
static pthread_once_t pq_once = PTHREAD_ONCE_INIT;
static char pq_err[256];

static void pq_load_once(void)
{
    void *h = dlopen("libpq.so.5", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(pq_err, sizeof pq_err,
                 "the PostgreSQL client library is not installed (libpq.so.5, Debian package "
                 "libpq5): %s", dlerror());
        return;
    }
#define PQ_SYM(f)                                                                                 \
    if (!(*(void **)&pq.f = dlsym(h, #f)) && !pq_err[0])                                          \
        snprintf(pq_err, sizeof pq_err, "libpq.so.5 has no %s", #f);
    PQ_FUNCS(PQ_SYM)
#undef PQ_SYM
}

/* 0 when libpq is loaded; -1 with pq_err. */
static int pq_load(void)
{
    pthread_once(&pq_once, pq_load_once);
    return pq_err[0] ? -1 : 0;
}

#define PC(c) ((pg_conn *)(c))
#define PS(s) ((pg_stmt *)(s))

/* The first line of msg into c->err. */
static void set_err(pg_conn *c, const char *what, const char *msg)
{
    snprintf(c->err, sizeof c->err, "%s%s%s", what ? what : "", what && msg ? ": " : "",
             msg ? msg : "");
    char *nl = strchr(c->err, '\n');
    if (nl)
        *nl = '\0';
}

static void quiet_notices(void *arg, const char *msg)
{
    (void)arg, (void)msg; /* "relation already exists, skipping" and the like */
}

static bool connect_now(pg_conn *c)
{
    if (c->pg)
        pq.PQfinish(c->pg);
    /* The store's locks are held across a query, and the gate waits on them: a server that
     * stops answering (a partition, not a reset) must end in an error within seconds, which the
     * gate turns into a refusal, rather than hold every FUSE thread for the kernel's TCP
     * timeout. These are defaults: the connection string comes last and overrides them
     * (expand_dbname). Unix sockets ignore the TCP ones. */
    static const char *const keys[] = {"connect_timeout", "keepalives", "keepalives_idle",
                                       "keepalives_interval", "keepalives_count",
                                       "tcp_user_timeout", "dbname", NULL};
    const char *vals[] = {"10", "1", "10", "5", "3", "15000", c->target, NULL};
    c->pg = pq.PQconnectdbParams(keys, vals, 1);
    if (!c->pg || pq.PQstatus(c->pg) != CONNECTION_OK) {
        set_err(c, "cannot connect to PostgreSQL", c->pg ? pq.PQerrorMessage(c->pg) : "out of memory");
        return false;
    }
    pq.PQsetNoticeProcessor(c->pg, quiet_notices, NULL);
    /* bytea in its hex text form, the shorter (db_col_blob reads the escape form too) */
    PGresult *r = pq.PQexec(c->pg, "SET client_min_messages = warning; SET bytea_output = 'hex'");
    pq.PQclear(r);
    c->epoch++;
    return true;
}

/* Connected, reconnecting when the connection was lost and the back-off allows. */
static bool ensure(pg_conn *c)
{
    if (c->pg && pq.PQstatus(c->pg) == CONNECTION_OK)
        return true;
    int64_t now = mono_ms();
    if (now < c->retry_at_ms) {
        if (!c->err[0])
            set_err(c, "PostgreSQL unreachable", "waiting to reconnect");
        return false;
    }
    if (connect_now(c)) {
        c->backoff_ms = 0;
        fprintf(stderr, "provfs: store: connected to PostgreSQL\n");
        return true;
    }
    c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (c->backoff_ms > BACKOFF_MAX_MS)
        c->backoff_ms = BACKOFF_MAX_MS;
    c->retry_at_ms = now + c->backoff_ms;
    fprintf(stderr, "provfs: store: %s (retry in %d ms)\n", c->err, c->backoff_ms);
    return false;
}

static void pg_close(db_conn *dc)
{
    pg_conn *c = PC(dc);
    if (c->pg)
        pq.PQfinish(c->pg);
    free(c->target);
    free(c);
}

static const char *pg_errmsg(db_conn *dc) { return PC(dc)->err[0] ? PC(dc)->err : "no error"; }

/* A result's outcome: 0 for success (changes noted), -1 with the error kept. */
static int result_ok(pg_conn *c, PGresult *r, const char *what)
{
    ExecStatusType st = r ? pq.PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        const char *n = pq.PQcmdTuples(r);
        c->changes = n && *n ? strtoll(n, NULL, 10) : 0;
        return 0;
    }
    set_err(c, what, r ? pq.PQresultErrorMessage(r) : pq.PQerrorMessage(c->pg));
    return -1;
}

static int pg_exec(db_conn *dc, const char *sql)
{
    pg_conn *c = PC(dc);
    if (!ensure(c)) {
        fprintf(stderr, "provfs: store: %s\n", c->err);
        return -1;
    }
    const char *q = strcmp(sql, "BEGIN IMMEDIATE") == 0 ? "BEGIN" : sql;
    PGresult *r = pq.PQexec(c->pg, q);
    int ret = result_ok(c, r, NULL);
    pq.PQclear(r);
    if (ret != 0)
        fprintf(stderr, "provfs: store: %s\n", c->err);
    return ret;
}

/* ?N -> $N outside '...' and "..."; counts the parameters. NULL when out of memory or when a
 * parameter number is out of range. */
static char *rewrite(const char *sql, int *nparams, uint64_t *used)
{
    *used = 0;
    size_t n = strlen(sql);
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    char quote = 0;
    int maxp = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = sql[i];
        if (quote) {
            if (ch == quote)
                quote = 0;
        } else if (ch == '\'' || ch == '"') {
            quote = ch;
        } else if (ch == '?' && sql[i + 1] >= '1' && sql[i + 1] <= '9') {
            int p = 0;
            size_t j = i + 1;
            while (sql[j] >= '0' && sql[j] <= '9' && p <= PG_MAX_PARAMS)
                p = p * 10 + (sql[j++] - '0');
            if (p > PG_MAX_PARAMS) {
                free(out);
                return NULL;
            }
            maxp = p > maxp ? p : maxp;
            *used |= UINT64_C(1) << (p - 1);
            ch = '$';
        }
        out[o++] = ch;
    }
    out[o] = '\0';
    if (strcmp(out, "BEGIN IMMEDIATE") == 0)
        strcpy(out, "BEGIN");
    *nparams = maxp;
    return out;
}

static db_stmt *pg_prepare(db_conn *dc, const char *sql)
{
    pg_conn *c = PC(dc);
    pg_stmt *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->base.conn = dc;
    s->sql = strdup(sql);
    s->pg_sql = rewrite(sql, &s->nparams, &s->used);
    if (!s->sql || !s->pg_sql) {
        set_err(c, sql, "cannot prepare (out of memory or parameter out of range)");
        fprintf(stderr, "provfs: store: %s\n", c->err);
        free(s->sql);
        free(s->pg_sql);
        free(s);
        return NULL;
    }
    snprintf(s->name, sizeof s->name, "s%u", ++c->next_name);
    return &s->base;
}

static void clear_result(pg_stmt *s)
{
    if (s->blob)
        pq.PQfreemem(s->blob);
    s->blob = NULL;
    pq.PQclear(s->res);
    s->res = NULL;
    s->row = s->nrows = 0;
    s->ran = false;
}

static void pg_clear_bindings(db_stmt *ds)
{
    pg_stmt *s = PS(ds);
    for (int i = 0; i < PG_MAX_PARAMS; i++) {
        free(s->val[i]);
        s->val[i] = NULL;
        s->type[i] = 0;
        s->len[i] = s->fmt[i] = 0;
    }
}

static void pg_finalize(db_stmt *ds)
{
    pg_stmt *s = PS(ds);
    pg_conn *c = PC(ds->conn);
    clear_result(s);
    pg_clear_bindings(ds);
    if (s->epoch && s->epoch == c->epoch && c->pg && pq.PQstatus(c->pg) == CONNECTION_OK) {
        char sql[48];
        snprintf(sql, sizeof sql, "DEALLOCATE %s", s->name);
        pq.PQclear(pq.PQexec(c->pg, sql));
    }
    free(s->sql);
    free(s->pg_sql);
    free(s);
}

static void pg_reset(db_stmt *ds) { clear_result(PS(ds)); }
static const char *pg_sql_of(const db_stmt *ds) { return ((const pg_stmt *)ds)->sql; }

static void bind_val(db_stmt *ds, int idx, char *v, unsigned type)
{
    pg_stmt *s = PS(ds);
    if (idx < 1 || idx > PG_MAX_PARAMS) {
        free(v);
        return;
    }
    free(s->val[idx - 1]);
    s->val[idx - 1] = v;
    s->type[idx - 1] = type;
    s->len[idx - 1] = s->fmt[idx - 1] = 0;
}

static void pg_bind_int64(db_stmt *ds, int idx, int64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    bind_val(ds, idx, strdup(buf), PG_INT8);
}

static void pg_bind_double(db_stmt *ds, int idx, double v)
{
    char buf[40];
    snprintf(buf, sizeof buf, "%.17g", v);
    bind_val(ds, idx, strdup(buf), PG_FLOAT8);
}

static void pg_bind_text(db_stmt *ds, int idx, const char *t)
{
    bind_val(ds, idx, t ? strdup(t) : NULL, 0);
}

static void pg_bind_null(db_stmt *ds, int idx) { bind_val(ds, idx, NULL, 0); }

static void pg_bind_blob(db_stmt *ds, int idx, const void *p, size_t n)
{
    char *v = p && n <= INT32_MAX ? malloc(n ? n : 1) : NULL;
    if (v && n)
        memcpy(v, p, n);
    bind_val(ds, idx, v, v ? PG_BYTEA : 0);
    if (v && idx >= 1 && idx <= PG_MAX_PARAMS) {
        PS(ds)->len[idx - 1] = (int)n;
        PS(ds)->fmt[idx - 1] = 1;
    }
}

static int pg_step(db_stmt *ds)
{
    pg_stmt *s = PS(ds);
    pg_conn *c = PC(ds->conn);
    if (s->ran) {
        if (s->row >= s->nrows)
            return DB_DONE;
        s->row++;
        return DB_ROW;
    }
    if (!ensure(c))
        return DB_ERROR;
    if (s->epoch != c->epoch) {
        /* a number the SQL skips (?1 and ?3 only) has no type to infer: any will do */
        unsigned types[PG_MAX_PARAMS];
        for (int i = 0; i < s->nparams; i++)
            types[i] = s->used >> i & 1 ? s->type[i] : PG_INT8;
        PGresult *r = pq.PQprepare(c->pg, s->name, s->pg_sql, s->nparams, types);
        int ok = result_ok(c, r, s->sql);
        pq.PQclear(r);
        if (ok != 0) {
            fprintf(stderr, "provfs: store: %s\n", c->err);
            return DB_ERROR;
        }
        s->epoch = c->epoch;
    }
    PGresult *r = pq.PQexecPrepared(c->pg, s->name, s->nparams, (const char *const *)s->val, s->len,
                                 s->fmt, 0);
    if (result_ok(c, r, NULL) != 0) {
        pq.PQclear(r);
        if (pq.PQstatus(c->pg) != CONNECTION_OK)
            c->retry_at_ms = 0; /* lost: the next use reconnects */
        return DB_ERROR;
    }
    if (s->blob)
        pq.PQfreemem(s->blob);
    s->blob = NULL;
    s->res = r;
    s->ran = true;
    s->nrows = pq.PQresultStatus(r) == PGRES_TUPLES_OK ? pq.PQntuples(r) : 0;
    s->row = 0;
    if (s->nrows == 0)
        return DB_DONE;
    s->row = 1;
    return DB_ROW;
}

/* The current row is row - 1. */
static const char *value(db_stmt *ds, int col)
{
    pg_stmt *s = PS(ds);
    if (!s->res || s->row < 1 || s->row > s->nrows || col < 0 || col >= pq.PQnfields(s->res) ||
        pq.PQgetisnull(s->res, s->row - 1, col))
        return NULL;
    return pq.PQgetvalue(s->res, s->row - 1, col);
}

static bool pg_col_null(db_stmt *ds, int col) { return value(ds, col) == NULL; }

static int64_t pg_col_int64(db_stmt *ds, int col)
{
    const char *v = value(ds, col);
    if (!v)
        return 0;
    if (v[0] == 't' && !v[1]) /* a boolean expression */
        return 1;
    if (v[0] == 'f' && !v[1])
        return 0;
    /* a numeric or double result (sum, avg) is truncated like SQLite's integer reading */
    char *end;
    long long x = strtoll(v, &end, 10);
    if (*end == '.' || *end == 'e' || *end == 'E')
        return (int64_t)strtod(v, NULL);
    return x;
}

static double pg_col_double(db_stmt *ds, int col)
{
    const char *v = value(ds, col);
    return v ? strtod(v, NULL) : 0;
}

static const char *pg_col_text(db_stmt *ds, int col) { return value(ds, col); }

static size_t pg_col_bytes(db_stmt *ds, int col)
{
    const char *v = value(ds, col);
    return v ? (size_t)pq.PQgetlength(PS(ds)->res, PS(ds)->row - 1, col) : 0;
}

/* bytea arrives as text (hex, or escape where a server or pooler keeps that setting): libpq
 * decodes either. The bytes stay valid until the next step, reset or db_col_blob of s. */
static const void *pg_col_blob(db_stmt *ds, int col, size_t *n)
{
    pg_stmt *s = PS(ds);
    *n = 0;
    const char *v = value(ds, col);
    if (!v)
        return NULL;
    if (s->blob)
        pq.PQfreemem(s->blob);
    size_t len = 0;
    s->blob = pq.PQunescapeBytea((const unsigned char *)v, &len);
    if (!s->blob)
        return NULL;
    *n = len;
    return s->blob;
}

static int64_t pg_changes(db_conn *dc) { return PC(dc)->changes; }

static int pg_durable(db_conn *dc, bool on)
{
    (void)dc, (void)on; /* synchronous_commit stays on: every commit is durable */
    return 0;
}

static const db_ops pg_ops = {
    .close = pg_close,
    .errmsg = pg_errmsg,
    .exec = pg_exec,
    .prepare = pg_prepare,
    .finalize = pg_finalize,
    .reset = pg_reset,
    .clear_bindings = pg_clear_bindings,
    .sql = pg_sql_of,
    .bind_int64 = pg_bind_int64,
    .bind_double = pg_bind_double,
    .bind_text = pg_bind_text,
    .bind_null = pg_bind_null,
    .bind_blob = pg_bind_blob,
    .step = pg_step,
    .col_null = pg_col_null,
    .col_int64 = pg_col_int64,
    .col_double = pg_col_double,
    .col_text = pg_col_text,
    .col_bytes = pg_col_bytes,
    .col_blob = pg_col_blob,
    .changes = pg_changes,
    .durable = pg_durable,
};

int db_pg_open(const char *target, unsigned flags, db_conn **out, char *err, size_t errlen)
{
    (void)flags; /* read-only is the role's business on a server */
    if (pq_load() != 0) {
        snprintf(err, errlen, "%s", pq_err);
        return -1;
    }
    char *perr = NULL;
    PQconninfoOption *opts = pq.PQconninfoParse(target, &perr);
    if (!opts) {
        snprintf(err, errlen, "bad PostgreSQL connection string: %s", perr ? perr : "out of memory");
        if (perr) {
            char *nl = strchr(err, '\n');
            if (nl)
                *nl = '\0';
        }
        pq.PQfreemem(perr);
        return -1;
    }
    bool has_password = false;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (strcmp(o->keyword, "password") == 0 && o->val && *o->val)
            has_password = true;
    pq.PQconninfoFree(opts);
    if (has_password) {
        snprintf(err, errlen, "a password in the connection string is refused (it would show in "
                              "process listings): use PGPASSFILE or ~/.pgpass");
        return -1;
    }
    pg_conn *c = calloc(1, sizeof *c);
    if (!c || !(c->target = strdup(target))) {
        free(c);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->base.ops = &pg_ops;
    c->base.kind = DB_PG;
    if (!connect_now(c)) {
        snprintf(err, errlen, "%s", c->err);
        pg_close(&c->base);
        return -1;
    }
    *out = &c->base;
    return 0;
}
