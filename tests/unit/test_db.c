/* fs/db.h against both engines: the same statements on a SQLite file and, when PROVFS_TEST_PG
 * names a server (tests/pg.sh starts one for this test), on PostgreSQL. Parameters, NULLs,
 * 64-bit values, quoting, bytes, upserts, RETURNING, transactions, errors, and (PostgreSQL) a
 * killed connection that the next statement recovers from. And the store's upgrade from schema
 * 12 (fingerprints as JSON) on both. */
#include "check.h"
#include "db.h"
#include "provfs/analyzer.h"
#include "store.h"

#include <stdint.h>
#include <unistd.h>

static const char *run1(db_conn *c, const char *sql, int64_t arg)
{
    static char out[256];
    out[0] = '\0';
    db_stmt *s = db_prepare(c, sql);
    if (!s)
        return "(prepare failed)";
    db_bind_int64(s, 1, arg);
    int rc = db_step(s);
    const char *t = rc == DB_ROW ? db_col_text(s, 0) : NULL;
    snprintf(out, sizeof out, "%s", rc == DB_ROW ? (t ? t : "(null)") : "(no row)");
    db_finalize(s);
    return out;
}

static void exercise(db_conn *c, const char *label)
{
    fprintf(stderr, "-- %s\n", label);
    CHECK(db_exec(c, "DROP TABLE IF EXISTS t") == 0);
    CHECK(db_exec(c, "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT, score DOUBLE PRECISION,"
                     " n BIGINT)") == 0);
    /* insert: 64-bit, text with quotes and a question mark, double, NULL */
    db_stmt *ins = db_prepare(c, "INSERT INTO t (id, name, score, n) VALUES (?1, ?2, ?3, ?4)");
    CHECK(ins != NULL);
    if (!ins)
        return;
    const int64_t big = INT64_C(1790000000123456789);
    db_bind_int64(ins, 1, big);
    db_bind_text(ins, 2, "it's a \"name\" ?1");
    db_bind_double(ins, 3, 0.123456789012345);
    db_bind_null(ins, 4);
    CHECK_INT(db_step(ins), DB_DONE);
    CHECK_INT(db_changes(c), 1);
    /* run again with new bindings after reset; bindings are kept by reset */
    db_reset(ins);
    db_bind_int64(ins, 1, 2);
    CHECK_INT(db_step(ins), DB_DONE);
    db_reset(ins);
    db_clear_bindings(ins);
    db_bind_int64(ins, 1, 3);
    CHECK_INT(db_step(ins), DB_DONE); /* name, score, n NULL */
    /* a duplicate key is an error, not a crash; the statement can run again after */
    db_reset(ins);
    CHECK_INT(db_step(ins), DB_ERROR);
    CHECK(strlen(db_errmsg(c)) > 0);
    db_finalize(ins);

    db_stmt *sel = db_prepare(c, "SELECT id, name, score, n, '?1' FROM t WHERE id = ?1");
    CHECK(sel != NULL);
    db_bind_int64(sel, 1, big);
    CHECK_INT(db_step(sel), DB_ROW);
    CHECK_INT(db_col_int64(sel, 0), big);
    CHECK_STR(db_col_text(sel, 1), "it's a \"name\" ?1");
    CHECK_INT(db_col_bytes(sel, 1), strlen("it's a \"name\" ?1"));
    CHECK_NEAR(db_col_double(sel, 2), 0.123456789012345, 1e-15);
    CHECK(db_col_null(sel, 3));
    CHECK(db_col_text(sel, 3) == NULL);
    CHECK_STR(db_col_text(sel, 4), "?1"); /* quoted text is not a parameter */
    CHECK_INT(db_step(sel), DB_DONE);
    db_reset(sel);
    db_bind_int64(sel, 1, 2);
    CHECK_INT(db_step(sel), DB_ROW);
    CHECK_STR(db_col_text(sel, 1), "it's a \"name\" ?1"); /* kept from the first binding */
    db_reset(sel);
    db_bind_int64(sel, 1, 3);
    CHECK_INT(db_step(sel), DB_ROW);
    CHECK(db_col_null(sel, 1));
    db_finalize(sel);

    /* upsert, RETURNING, a boolean expression read as an integer */
    db_stmt *up = db_prepare(c, "INSERT INTO t (id, n) VALUES (?1, ?2) ON CONFLICT (id)"
                                " DO UPDATE SET n = t.n + excluded.n RETURNING id, n, n > 5");
    CHECK(up != NULL);
    for (int i = 0; up && i < 3; i++) {
        db_reset(up);
        db_bind_int64(up, 1, 7);
        db_bind_int64(up, 2, 4);
        CHECK_INT(db_step(up), DB_ROW);
        CHECK_INT(db_col_int64(up, 0), 7);
        CHECK_INT(db_col_int64(up, 1), 4 * (i + 1));
        CHECK_INT(db_col_int64(up, 2), i > 0);
        CHECK_INT(db_step(up), DB_DONE);
    }
    db_finalize(up);
    CHECK_STR(run1(c, "SELECT count(*) FROM t WHERE id > ?1", 0), "4");
    CHECK_STR(run1(c, "SELECT sum(n) FROM t WHERE id = ?1", 7), "12");
    CHECK_STR(run1(c, "SELECT name FROM t WHERE id = ?1", 99), "(no row)");

    /* a transaction rolled back leaves nothing; one committed stays */
    CHECK(db_exec(c, "BEGIN IMMEDIATE") == 0);
    CHECK(db_exec(c, "DELETE FROM t") == 0);
    CHECK(db_exec(c, "ROLLBACK") == 0);
    CHECK_STR(run1(c, "SELECT count(*) FROM t WHERE id > ?1", 0), "4");
    CHECK(db_exec(c, "BEGIN IMMEDIATE") == 0);
    db_stmt *del = db_prepare(c, "DELETE FROM t WHERE id = ?1");
    db_bind_int64(del, 1, 7);
    CHECK_INT(db_step(del), DB_DONE);
    CHECK_INT(db_changes(c), 1);
    db_finalize(del);
    CHECK(db_exec(c, "COMMIT") == 0);
    CHECK_STR(run1(c, "SELECT count(*) FROM t WHERE id > ?1", 0), "3");

    /* bytes (BLOB / bytea): every byte value, NUL among them; empty is not NULL; a statement
     * first run with NULL takes bytes after */
    CHECK(db_exec(c, "DROP TABLE IF EXISTS b") == 0);
    CHECK(db_exec(c, db_kind_of(c) == DB_PG ? "CREATE TABLE b (id BIGINT PRIMARY KEY, v bytea)"
                                            : "CREATE TABLE b (id BIGINT PRIMARY KEY, v BLOB)") == 0);
    uint8_t bytes[512];
    for (int i = 0; i < 512; i++)
        bytes[i] = (uint8_t)(i * 7);
    db_stmt *bi = db_prepare(c, "INSERT INTO b (id, v) VALUES (?1, ?2)");
    const struct { int64_t id; const void *p; size_t n; } rows[] = {
        {1, NULL, 0}, {2, bytes, sizeof bytes}, {3, "", 0}, {4, bytes + 1, 1}};
    for (size_t i = 0; bi && i < sizeof rows / sizeof *rows; i++) {
        db_reset(bi);
        db_bind_int64(bi, 1, rows[i].id);
        db_bind_blob(bi, 2, rows[i].p, rows[i].n);
        CHECK_INT(db_step(bi), DB_DONE);
    }
    db_finalize(bi);
    db_stmt *bs = db_prepare(c, "SELECT v FROM b WHERE id = ?1");
    for (size_t i = 0; bs && i < sizeof rows / sizeof *rows; i++) {
        db_reset(bs);
        db_bind_int64(bs, 1, rows[i].id);
        CHECK_INT(db_step(bs), DB_ROW);
        size_t n = 99;
        const void *got = db_col_blob(bs, 0, &n);
        if (!rows[i].p) {
            CHECK(got == NULL && n == 0 && db_col_null(bs, 0));
        } else {
            CHECK_MSG(got && n == rows[i].n && memcmp(got, rows[i].p, n) == 0,
                      "%s: blob %lld read back as %zu bytes", label, (long long)rows[i].id, n);
        }
    }
    db_finalize(bs);

    /* bad SQL: refused at prepare (SQLite) or at the first step (PostgreSQL prepares lazily) */
    db_stmt *bad = db_prepare(c, "SELEKT 1");
    CHECK(bad == NULL || db_step(bad) == DB_ERROR);
    db_finalize(bad);
    CHECK(db_exec(c, "NOT SQL") != 0);
    CHECK_STR(run1(c, "SELECT ?1 + 1", 41), "42"); /* the connection still works */
}

/* PostgreSQL: the server ends this connection's session; the statement that finds out fails,
 * the next one reconnects and prepares again. */
static void lost_connection(db_conn *c, const char *target)
{
    db_stmt *s = db_prepare(c, "SELECT pg_backend_pid() + 0 * ?1");
    db_bind_int64(s, 1, 1);
    CHECK_INT(db_step(s), DB_ROW);
    int64_t pid = db_col_int64(s, 0);
    db_reset(s);
    db_conn *admin = NULL;
    char err[256];
    CHECK_MSG(db_open(target, 0, &admin, err, sizeof err) == 0, "%s", err);
    if (admin) {
        CHECK_STR(run1(admin, "SELECT pg_terminate_backend(CAST(?1 AS int))::int", pid), "1");
        db_close(admin);
    }
    usleep(200000);
    int rc = db_step(s);
    CHECK_INT(rc, DB_ERROR);
    db_reset(s);
    rc = db_step(s);
    CHECK_INT(rc, DB_ROW);
    CHECK(rc == DB_ROW && db_col_int64(s, 0) != pid);
    db_finalize(s);
}

/* A store of schema 12 at target (its fingerprints JSON, no column fpbin) opens as schema 14
 * with each fingerprint in the binary form. */
static void store_upgrade(const char *target, const char *label)
{
    fprintf(stderr, "-- store upgrade, %s\n", label);
    const char *json = "{\"schema\":\"provfs.fingerprint/1\",\"mfi\":{\"model_type\":\"old\"}}";
    pa_fingerprint *fp = NULL;
    pa_error e = {0};
    uint8_t *bin = NULL;
    size_t n = 0;
    CHECK(pa_fp_from_json(json, strlen(json), "old", &fp, &e) == PA_OK);
    CHECK(fp && pa_fp_to_bin(fp, &bin, &n, &e) == PA_OK);
    pa_fingerprint_free(fp);
    store_handle *st = NULL;
    char err[256];
    int64_t id = 0, final_id = 0;
    bool merged = false;
    CHECK_MSG(store_open(target, 0, &st, err, sizeof err) == 0, "%s", err);
    CHECK(st && store_begin(st, "/m", 1, 0, &id) == 0);
    store_result res = {.digest = "d-old", .format = "safetensors", .fingerprint = bin,
                        .fingerprint_len = n};
    res.keys.hidden_size = res.keys.num_layers = res.keys.vocab_size = INT64_MIN;
    CHECK(st && store_finish_ready(st, "/m", id, &res, &final_id, &merged) == 0);
    /* and a model whose JSON will not read */
    int64_t id2 = 0, bad_id = 0;
    res.digest = "d-bad";
    CHECK(st && store_begin(st, "/bad", 2, 0, &id2) == 0);
    CHECK(st && store_finish_ready(st, "/bad", id2, &res, &bad_id, &merged) == 0);
    store_close(st);
    free(bin);
    db_conn *c = NULL;
    CHECK_MSG(db_open(target, 0, &c, err, sizeof err) == 0, "%s", err);
    if (!c)
        return;
    char sql[512];
    snprintf(sql, sizeof sql,
             "UPDATE models SET fingerprint = '%s'; UPDATE models SET fingerprint = '{not json'"
             " WHERE digest = 'd-bad'; ALTER TABLE models DROP COLUMN fpbin;"
             " ALTER TABLE model_paths DROP COLUMN file_ids; DROP TABLE file_inodes; %s",
             json,
             db_kind_of(c) == DB_PG ? "DELETE FROM provfs_schema WHERE version >= 13"
                                    : "PRAGMA user_version = 12");
    CHECK(db_exec(c, sql) == 0);
    db_close(c);
    st = NULL;
    CHECK_MSG(store_open(target, 0, &st, err, sizeof err) == 0, "%s", err);
    pa_fingerprint *back = NULL;
    CHECK(st && store_fingerprint_fp(st, final_id, &back) == 0 && back && pa_fp_mfi(back) &&
          strcmp(pa_fp_mfi(back)->model_type, "old") == 0);
    pa_fingerprint_free(back);
    store_close(st);
    c = NULL;
    CHECK(db_open(target, 0, &c, err, sizeof err) == 0);
    if (c) {
        CHECK_STR(run1(c, "SELECT count(*) FROM models WHERE fpbin IS NOT NULL AND id = ?1",
                       final_id), "1");
        CHECK_STR(run1(c, "SELECT count(*) FROM models WHERE fingerprint IS NOT NULL AND id = ?1",
                       final_id), "0");
        /* the one that does not read is kept as it was, and the store opens */
        CHECK_STR(run1(c, "SELECT fingerprint FROM models WHERE fpbin IS NULL AND id = ?1", bad_id),
                  "{not json");
        db_close(c);
        c = NULL;
        st = NULL;
        CHECK_MSG(store_open(target, 0, &st, err, sizeof err) == 0, "%s", err);
        store_close(st);
        CHECK(db_open(target, 0, &c, err, sizeof err) == 0);
        CHECK_STR(run1(c, "SELECT count(*) FROM models WHERE fingerprint IS NOT NULL AND id != ?1",
                       bad_id), "0");
        db_close(c);
    }
}

int main(void)
{
    CHECK(db_target_is_pg("postgresql://h/db"));
    CHECK(db_target_is_pg("postgres:///db"));
    CHECK(db_target_is_pg("host=/run/pg dbname=x"));
    CHECK(!db_target_is_pg("/var/lib/provfs/lineage.db"));
    CHECK(!db_target_is_pg("lineage.db"));
    CHECK(!db_target_is_pg("./host=x.db") );
    db_conn *c = NULL;
    char err[256];
    CHECK(db_open("postgresql://u:secret@localhost/db", 0, &c, err, sizeof err) != 0);
    CHECK(strstr(err, "password") != NULL);
    CHECK(db_open("host=/nowhere password=x", 0, &c, err, sizeof err) != 0);
    CHECK(strstr(err, "password") != NULL);

    char path[] = "/tmp/provfs-test-db.XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK_MSG(db_open(path, 0, &c, err, sizeof err) == 0, "%s", err);
    if (c) {
        CHECK(db_kind_of(c) == DB_SQLITE);
        exercise(c, "sqlite");
        db_close(c);
    }
    unlink(path);
    store_upgrade(path, "sqlite");
    unlink(path);
    char side[64];
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);

    const char *pg = getenv("PROVFS_TEST_PG");
    if (pg && *pg) {
        c = NULL;
        CHECK_MSG(db_open(pg, 0, &c, err, sizeof err) == 0, "%s", err);
        if (c) {
            CHECK(db_kind_of(c) == DB_PG);
            exercise(c, "postgresql");
            lost_connection(c, pg);
            /* a database the store accepts (file names are bytes: SQL_ASCII) */
            CHECK(db_exec(c, "DROP DATABASE IF EXISTS provfs_upgrade") == 0);
            CHECK(db_exec(c, "CREATE DATABASE provfs_upgrade ENCODING 'SQL_ASCII' LC_COLLATE 'C'"
                             " LC_CTYPE 'C' TEMPLATE template0") == 0);
            db_close(c);
            char target[512];
            snprintf(target, sizeof target, "%s dbname=provfs_upgrade", pg);
            store_upgrade(target, "postgresql");
        }
    } else {
        fprintf(stderr, "PROVFS_TEST_PG not set: PostgreSQL part not run\n");
    }
    printf("%d checks, %d failed\n", check_count, check_failures);
    return check_failures ? 1 : 0;
}
