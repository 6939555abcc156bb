/* The lineage store: reference matches and the bases adapters declare. */
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

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
    db_stmt *stmt = prep(st, st->wr, "DELETE FROM model_refs WHERE model_id = ?1");
    if (stmt) {
        db_bind_int64(stmt, 1, model_id);
        ret = step_done(st, st->wr, stmt);
    }
    if (ret == 0 && ref) {
        stmt = prep(st, st->wr,
                    "INSERT INTO model_refs (model_id, kind, name, family, score, verdict,"
                    " evidence, signals) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
        ret = -1;
        if (stmt) {
            db_bind_int64(stmt, 1, model_id);
            bind_text(stmt, 2, ref->is_parent ? "parent" : "hint");
            bind_text(stmt, 3, ref->name);
            bind_text(stmt, 4, ref->family);
            db_bind_double(stmt, 5, ref->score);
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
    db_stmt *stmt = prep(st, st->rd,
                              "SELECT kind, name, family, score, verdict, evidence, signals"
                              " FROM model_refs WHERE model_id = ?1");
    int ret = -1;
    if (stmt) {
        db_bind_int64(stmt, 1, model_id);
        int rc = db_step(stmt);
        if (rc == DB_ROW) {
            out->is_parent = strcmp(db_col_text(stmt, 0), "parent") == 0;
            out->name = dup_col(stmt, 1);
            out->family = dup_col(stmt, 2);
            out->score = db_col_double(stmt, 3);
            copy_col(stmt, 4, out->verdict, sizeof out->verdict);
            out->evidence = dup_col(stmt, 5);
            out->signals = dup_col(stmt, 6);
            ret = out->name && out->family ? 0 : -1;
        } else if (rc == DB_DONE) {
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
    db_stmt *stmt =
        prep(st, st->wr,
             declared ? "INSERT INTO adapter_bases (model_id, declared) VALUES (?1, ?2)"
                        " ON CONFLICT (model_id) DO UPDATE SET declared = excluded.declared,"
                        " tried_ns = 0"
                      : "DELETE FROM adapter_bases WHERE model_id = ?1");
    if (stmt) {
        db_bind_int64(stmt, 1, model_id);
        if (declared)
            db_bind_text(stmt, 2, declared);
        ret = step_done(st, st->wr, stmt);
    }
    return tx_end(st, ret);
}

int store_adapter_tried(store_handle *st, int64_t model_id)
{
    if (tx_begin(st) != 0)
        return -1;
    int ret = -1;
    db_stmt *stmt =
        prep(st, st->wr, "UPDATE adapter_bases SET tried_ns = ?2 WHERE model_id = ?1");
    if (stmt) {
        db_bind_int64(stmt, 1, model_id);
        db_bind_int64(stmt, 2, now_ns());
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
