/* store_copy: every row of one lineage database into another, empty one (SQLite to PostgreSQL or
 * back, or file to file), ids kept, then the row counts of both compared. The source is only
 * read (provctl opens it read-only) and must have the current schema: a store of an older
 * version is mounted once first, which migrates it. store_stats is not copied: the
 * destination's triggers count the rows as they arrive. */
#include "store_int.h"

#include <stdio.h>
#include <string.h>

/* Tables in an order that satisfies the foreign keys, with their columns: i int64, d double,
 * t text, b bytes. */
static const struct {
    const char *table, *cols, *types;
} tables[] = {
    {"models",
     "id, digest, status, error, format, fingerprint, hidden_size, num_layers, vocab_size,"
     " n_params, n_tensors, arch_hash, family_hash, created_ns, analyzed_at, origin_path, fpbin",
     "itttttiiiiittiitb"},
    {"model_paths", "path, model_id, dir_mtime_ns, file_ids", "tiit"},
    {"files", "model_id, name, size, mtime_ns, sha256", "itiit"},
    {"edges",
     "parent_id, child_id, score, verdict, signals, rank, is_parent, share, rev_signals",
     "iidttdidt"},
    {"events",
     "id, time_ns, uid, pid, path, model_id, kind, detail, rule, decision, count, last_ns",
     "iiiitittttii"},
    {"approvals", "digest, state, by_uid, at, note", "ttiit"},
    {"model_refs", "model_id, kind, name, family, score, verdict, evidence, signals", "itttdttt"},
    {"lsh_bands", "band_no, band_value, model_id", "iii"},
    {"tensor_hashes", "hash, model_id", "ii"},
    {"adapter_bases", "model_id, declared, tried_ns", "iti"},
    {"file_inodes", "ino, path", "it"},
};
#define N_TABLES (sizeof tables / sizeof tables[0])

static int count_rows(db_conn *c, const char *table, int64_t *out)
{
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    db_stmt *s = db_prepare(c, sql);
    int ret = s && db_step(s) == DB_ROW ? 0 : -1;
    *out = ret == 0 ? db_col_int64(s, 0) : -1;
    db_finalize(s);
    return ret;
}

static int copy_table(db_conn *from, db_conn *to, size_t t, int64_t *rows, char *err,
                      size_t errlen)
{
    size_t n = strlen(tables[t].types), commas = 0;
    for (const char *p = tables[t].cols; *p; p++)
        commas += *p == ',';
    if (commas + 1 != n) { /* the table above is wrong: a type per column */
        snprintf(err, errlen, "copying %s: column types do not match the columns", tables[t].table);
        return -1;
    }
    char sel[512], ins[768], params[256] = "";
    for (size_t i = 0; i < n; i++) {
        size_t k = strlen(params);
        snprintf(params + k, sizeof params - k, "%s?%zu", i ? ", " : "", i + 1);
    }
    snprintf(sel, sizeof sel, "SELECT %s FROM %s", tables[t].cols, tables[t].table);
    snprintf(ins, sizeof ins, "INSERT INTO %s (%s) VALUES (%s)", tables[t].table, tables[t].cols,
             params);
    db_stmt *s = db_prepare(from, sel), *w = s ? db_prepare(to, ins) : NULL;
    int rc = w ? DB_ROW : DB_ERROR;
    db_conn *failed = s && !w ? to : from; /* whose message tells what went wrong */
    *rows = 0;
    while (rc == DB_ROW && (rc = db_step(s)) == DB_ROW) { /* a DB_ERROR here is the source's */
        for (size_t i = 0; i < n; i++) {
            int c = (int)i;
            if (db_col_null(s, c))
                db_bind_null(w, c + 1);
            else if (tables[t].types[i] == 'i')
                db_bind_int64(w, c + 1, db_col_int64(s, c));
            else if (tables[t].types[i] == 'd')
                db_bind_double(w, c + 1, db_col_double(s, c));
            else if (tables[t].types[i] == 'b') {
                size_t len = 0;
                const void *p = db_col_blob(s, c, &len);
                if (!p) { /* unreadable bytes: the copy would differ */
                    rc = DB_ERROR;
                    break;
                }
                db_bind_blob(w, c + 1, p, len);
            } else {
                db_bind_text(w, c + 1, db_col_text(s, c));
            }
        }
        if (rc == DB_ERROR)
            break;
        if (db_step(w) != DB_DONE) {
            rc = DB_ERROR;
            failed = to;
            break;
        }
        db_reset(w);
        (*rows)++;
    }
    db_finalize(w);
    db_finalize(s);
    if (rc != DB_DONE)
        snprintf(err, errlen, "copying %s: %s", tables[t].table, db_errmsg(failed));
    return rc == DB_DONE ? 0 : -1;
}

int store_copy(store_handle *from, store_handle *to, store_copy_report *out, char *err,
               size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!to->wr) {
        snprintf(err, errlen, "the destination is open read-only");
        return -1;
    }
    pthread_mutex_lock(&from->read_lock);
    int ret = tx_begin(to);
    if (ret != 0) {
        pthread_mutex_unlock(&from->read_lock);
        snprintf(err, errlen, "cannot write the destination: %s", db_errmsg(to->wr));
        return -1;
    }
    int64_t there = 0;
    for (size_t t = 0; ret == 0 && t < N_TABLES; t++) {
        ret = count_rows(to->wr, tables[t].table, &there);
        if (ret == 0 && there > 0) {
            snprintf(err, errlen, "the destination is not empty (%lld rows in %s)",
                     (long long)there, tables[t].table);
            ret = -2;
        }
    }
    /* the destination's settings are the source's */
    if (ret == 0)
        ret = exec_sql(to->wr, "DELETE FROM settings");
    for (size_t t = 0; ret == 0 && t < N_TABLES; t++) {
        int64_t rows = 0;
        ret = copy_table(from->rd, to->wr, t, &rows, err, errlen);
        out->rows += rows;
        out->tables++;
    }
    if (ret == 0) {
        int64_t rows = 0;
        db_stmt *s = db_prepare(from->rd, "SELECT key, value FROM settings");
        db_stmt *w = s ? db_prepare(to->wr, "INSERT INTO settings (key, value) VALUES (?1, ?2)")
                       : NULL;
        int rc = w ? DB_ROW : DB_ERROR;
        while (rc == DB_ROW && (rc = db_step(s)) == DB_ROW) { /* a DB_ERROR here is the source's */
            db_bind_text(w, 1, db_col_text(s, 0));
            db_bind_int64(w, 2, db_col_int64(s, 1));
            rc = db_step(w) == DB_DONE ? DB_ROW : DB_ERROR;
            db_reset(w);
            rows++;
        }
        db_finalize(w);
        db_finalize(s);
        if (rc != DB_DONE) {
            snprintf(err, errlen, "copying settings: %s", db_errmsg(to->wr));
            ret = -1;
        }
        out->rows += rows;
    }
    /* identity columns continue after the copied ids */
    if (ret == 0 && db_kind_of(to->wr) == DB_PG)
        ret = exec_sql(to->wr,
                       "SELECT setval(pg_get_serial_sequence('models', 'id'),"
                       "  coalesce((SELECT max(id) FROM models), 0) + 1, false);"
                       "SELECT setval(pg_get_serial_sequence('events', 'id'),"
                       "  coalesce((SELECT max(id) FROM events), 0) + 1, false)");
    /* the count check, inside the transaction: what is committed is what was compared */
    for (size_t t = 0; ret == 0 && t < N_TABLES; t++) {
        int64_t a = -1, b = -1;
        if (count_rows(from->rd, tables[t].table, &a) != 0 ||
            count_rows(to->wr, tables[t].table, &b) != 0 || a != b) {
            snprintf(err, errlen, "count check: %s has %lld rows in the source, %lld copied",
                     tables[t].table, (long long)a, (long long)b);
            ret = -1;
        }
    }
    ret = tx_end(to, ret == 0 ? 0 : -1);
    pthread_mutex_unlock(&from->read_lock);
    return ret;
}
