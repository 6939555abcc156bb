/* The lineage store: writing an analysis (begin, finish, status, digest) and the edges and
 * parents between models. */
#include "store_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- writing */

/* Gives child a main parent when it has none (its parent edge went with a model or an
 * analysis): the best rank wins (see store_edge), then the best score, then the earliest parent;
 * its share is its coverage of the child. A child that still has its main parent keeps it and
 * its other parents: the daemon decides those (store_set_parents). */
int relink_child(store_handle *st, int64_t child)
{
    db_stmt *stmt = prep(st, st->wr,
                              "SELECT count(*) FROM edges WHERE child_id = ?1 AND"
                              " is_parent = 1");
    if (!stmt)
        return -1;
    db_bind_int64(stmt, 1, child);
    int rc = db_step(stmt);
    int64_t have = rc == DB_ROW ? db_col_int64(stmt, 0) : -1;
    done(st, stmt);
    if (have != 0)
        return have > 0 ? 0 : -1;
    char sql[768];
    snprintf(sql, sizeof sql,
             "UPDATE edges SET is_parent = CASE WHEN parent_id = p.id THEN 1 ELSE 0 END,"
             "  share = CASE WHEN parent_id = p.id THEN %s END"
             " FROM (SELECT e.parent_id AS id FROM edges e WHERE e.child_id = ?1"
             "  ORDER BY e.rank DESC, e.score DESC, e.parent_id LIMIT 1) AS p"
             " WHERE child_id = ?1",
             db_kind_of(st->wr) == DB_PG ? store_pg_share_sql : store_sqlite_share_sql);
    stmt = prep(st, st->wr, sql);
    if (!stmt)
        return -1;
    db_bind_int64(stmt, 1, child);
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
    db_stmt *stmt = prep(st, st->wr, "SELECT child_id FROM edges WHERE parent_id = ?1");
    if (!stmt)
        return -1;
    db_bind_int64(stmt, 1, id);
    int rc;
    while ((rc = db_step(stmt)) == DB_ROW) {
        if (count == cap) {
            cap = cap ? cap * 2 : 8;
            int64_t *grown = realloc(ids, cap * sizeof *ids);
            if (!grown) {
                ret = -1;
                break;
            }
            ids = grown;
        }
        ids[count++] = db_col_int64(stmt, 0);
    }
    if (ret == 0 && rc != DB_DONE)
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

int drop_if_orphan(store_handle *st, int64_t id)
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
    db_stmt *stmt =
        prep(st, st->wr, "INSERT INTO models (status, created_ns) VALUES (?1, ?2) RETURNING id");
    if (!stmt)
        return -1;
    db_bind_text(stmt, 1, status);
    db_bind_int64(stmt, 2, created_ns);
    return step_id(st, st->wr, stmt, id);
}

static int set_path(store_handle *st, const char *path, int64_t id, int64_t dir_mtime_ns)
{
    db_stmt *stmt = prep(st, st->wr,
                              "INSERT INTO model_paths (path, model_id, dir_mtime_ns)"
                              " VALUES (?1, ?2, ?3) ON CONFLICT(path) DO UPDATE SET"
                              " model_id = excluded.model_id,"
                              " dir_mtime_ns = excluded.dir_mtime_ns");
    if (!stmt)
        return -1;
    db_bind_text(stmt, 1, path);
    db_bind_int64(stmt, 2, id);
    db_bind_int64(stmt, 3, dir_mtime_ns);
    store_path_note(st, path); /* before the row exists: never a "no" for a stored path */
    if (step_done(st, st->wr, stmt) != 0)
        return -1;
    /* The first path a model is stored at stays its origin, whatever renames follow. */
    stmt = prep(st, st->wr,
                "UPDATE models SET origin_path = ?1 WHERE id = ?2 AND origin_path IS NULL");
    if (!stmt)
        return -1;
    db_bind_text(stmt, 1, path);
    db_bind_int64(stmt, 2, id);
    return step_done(st, st->wr, stmt);
}

int store_origin_path(store_handle *st, int64_t id, char **out)
{
    *out = NULL;
    int ret = -1;
    pthread_mutex_lock(&st->read_lock);
    db_stmt *stmt = prep(st, st->rd, "SELECT origin_path FROM models WHERE id = ?1");
    if (stmt) {
        db_bind_int64(stmt, 1, id);
        int rc = db_step(stmt);
        if (rc == DB_ROW) {
            *out = dup_col(stmt, 0);
            ret = 0;
        } else if (rc == DB_DONE) {
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
    db_stmt *stmt = prep(st, st->wr,
                              "UPDATE models SET status = ?2 WHERE id ="
                              " (SELECT model_id FROM model_paths WHERE path = ?1)");
    if (stmt) {
        db_bind_text(stmt, 1, path);
        db_bind_text(stmt, 2, status);
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
    db_stmt *stmt =
        prep(st, st->wr,
             "UPDATE models SET status = ?2, error = ?3, digest = NULL, fingerprint = NULL, fpbin = NULL,"
             " format = NULL, hidden_size = NULL, num_layers = NULL, vocab_size = NULL,"
             " n_params = NULL, n_tensors = NULL, arch_hash = NULL, family_hash = NULL,"
             " analyzed_at = ?4 WHERE id = ?1");
    if (stmt) {
        db_bind_int64(stmt, 1, model_id);
        db_bind_text(stmt, 2, status);
        bind_text(stmt, 3, error);
        db_bind_int64(stmt, 4, now_ns() / 1000000000);
        ret = step_done(st, st->wr, stmt);
    }
    if (ret == 0)
        ret = wr_exec_id(st, "DELETE FROM files WHERE model_id = ?1", model_id);
    /* no files, no identities: "" (NULL would count as unknown, and be analysed again) */
    if (ret == 0)
        ret = wr_exec_id(st, "UPDATE model_paths SET file_ids = '' WHERE model_id = ?1", model_id);
    if (ret == 0)
        ret = wr_exec_id(st,
                         "DELETE FROM file_inodes WHERE path IN"
                         " (SELECT path FROM model_paths WHERE model_id = ?1)",
                         model_id);
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
    db_stmt *stmt = prep(st, st->wr,
                              "INSERT INTO files"
                              " (model_id, name, size, mtime_ns, sha256)"
                              " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (model_id, name)"
                              " DO UPDATE SET size = excluded.size,"
                              " mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256");
    if (!stmt)
        return -1;
    int ret = 0;
    for (size_t i = 0; i < res->n_files && ret == 0; i++) {
        const store_file *f = &res->files[i];
        db_bind_int64(stmt, 1, id);
        db_bind_text(stmt, 2, f->name);
        db_bind_int64(stmt, 3, (int64_t)f->size);
        db_bind_int64(stmt, 4, f->mtime_ns);
        bind_text(stmt, 5, f->sha256);
        if (db_step(stmt) != DB_DONE) {
            store_log(st->wr, "insert file");
            ret = -1;
        }
        db_reset(stmt);
    }
    done(st, stmt);
    return ret;
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
        db_stmt *stmt =
            prep(st, st->wr, "SELECT dir_mtime_ns FROM model_paths WHERE path = ?1");
        if (stmt) {
            db_bind_text(stmt, 1, path);
            if (db_step(stmt) == DB_ROW)
                dir_mtime = db_col_int64(stmt, 0);
            done(st, stmt);
        }
        ret = set_path(st, path, other, dir_mtime);
        if (ret == 0)
            ret = store_ids_set(st, path, res->files, res->n_files);
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
    db_stmt *stmt =
        prep(st, st->wr,
             "UPDATE models SET status = 'ready', error = NULL, digest = ?2, format = ?3,"
             " fingerprint = NULL, fpbin = ?4, hidden_size = ?5, num_layers = ?6, vocab_size = ?7,"
             " n_params = ?8, n_tensors = ?9, arch_hash = ?10, family_hash = ?11,"
             " analyzed_at = ?12 WHERE id = ?1");
    ret = -1;
    if (stmt) {
        db_bind_int64(stmt, 1, model_id);
        bind_text(stmt, 2, res->digest);
        bind_text(stmt, 3, res->format);
        db_bind_blob(stmt, 4, res->fingerprint, res->fingerprint_len);
        bind_opt_int(stmt, 5, res->keys.hidden_size);
        bind_opt_int(stmt, 6, res->keys.num_layers);
        bind_opt_int(stmt, 7, res->keys.vocab_size);
        db_bind_int64(stmt, 8, (int64_t)res->keys.n_params);
        db_bind_int64(stmt, 9, (int64_t)res->keys.n_tensors);
        bind_text(stmt, 10, res->keys.arch_hash);
        bind_text(stmt, 11, res->keys.family_hash);
        db_bind_int64(stmt, 12, now_ns() / 1000000000);
        ret = step_done(st, st->wr, stmt);
    }
    if (ret == 0)
        ret = insert_files(st, model_id, res);
    if (ret == 0)
        ret = store_ids_set(st, path, res->files, res->n_files);
    if (ret == 0)
        ret = lsh_put(st, model_id, res->sig);
    /* new content: an adapter's declaration is recorded again by its analysis (link_adapter) */
    if (ret == 0)
        ret = wr_exec_id(st, "DELETE FROM adapter_bases WHERE model_id = ?1", model_id);
    if (ret == 0)
        ret = drop_edges(st, model_id);
    return tx_end(st, ret);
}

int store_set_edges(store_handle *st, int64_t model_id, const store_edge *edges, size_t n)
{
    if (tx_begin(st) != 0)
        return -1;
    int ret = drop_edges(st, model_id);
    /* an upsert, not a REPLACE: a replace's delete would not reach the edges count's trigger */
    db_stmt *stmt =
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
        db_bind_int64(stmt, 1, edges[i].parent_id);
        db_bind_int64(stmt, 2, edges[i].child_id);
        db_bind_double(stmt, 3, edges[i].score);
        db_bind_text(stmt, 4, edges[i].verdict);
        bind_text(stmt, 5, edges[i].signals);
        db_bind_double(stmt, 6, edges[i].rank);
        bind_text(stmt, 7, edges[i].signals_rev);
        if (db_step(stmt) != DB_DONE) {
            store_log(st->wr, "insert edge");
            ret = -1;
        }
        db_reset(stmt);
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
    db_stmt *stmt = prep(st, st->rd,
                              "SELECT e.parent_id, e.child_id, e.score, e.verdict, e.rank,"
                              " e.signals, e.rev_signals, e.is_parent, e.share,"
                              " (SELECT created_ns FROM models WHERE id = e.parent_id),"
                              " (SELECT created_ns FROM models WHERE id = e.child_id)"
                              " FROM edges e WHERE e.parent_id = ?1 OR e.child_id = ?1"
                              " ORDER BY e.parent_id, e.child_id");
    if (!stmt)
        goto out;
    db_bind_int64(stmt, 1, id);
    int rc;
    while ((rc = db_step(stmt)) == DB_ROW) {
        if (count == cap) {
            cap = cap ? cap * 2 : 8;
            store_rel *grown = realloc(rels, cap * sizeof *rels);
            if (!grown)
                goto out_stmt;
            rels = grown;
        }
        store_rel *r = &rels[count++];
        memset(r, 0, sizeof *r);
        r->parent_id = db_col_int64(stmt, 0);
        r->child_id = db_col_int64(stmt, 1);
        r->score = db_col_double(stmt, 2);
        copy_col(stmt, 3, r->verdict, sizeof r->verdict);
        r->rank = db_col_double(stmt, 4);
        r->signals = dup_col(stmt, 5);
        r->rev_signals = dup_col(stmt, 6);
        r->is_parent = (int)db_col_int64(stmt, 7) != 0;
        r->share =
            db_col_null(stmt, 8) ? NAN : db_col_double(stmt, 8);
        r->parent_created_ns = db_col_int64(stmt, 9);
        r->child_created_ns = db_col_int64(stmt, 10);
    }
    if (rc == DB_DONE)
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
        db_stmt *stmt =
            prep(st, st->wr, "UPDATE edges SET is_parent = 0, share = NULL WHERE child_id = ?1");
        if (!stmt) {
            ret = -1;
            break;
        }
        db_bind_int64(stmt, 1, children[i]);
        ret = step_done(st, st->wr, stmt);
    }
    for (size_t i = 0; i < n && ret == 0; i++) {
        const store_parent_set *p = &set[i];
        db_stmt *stmt = prep(st, st->wr,
                                  "DELETE FROM edges WHERE (parent_id = ?1 AND child_id = ?2)"
                                  " OR (parent_id = ?2 AND child_id = ?1)");
        if (!stmt) {
            ret = -1;
            break;
        }
        db_bind_int64(stmt, 1, p->parent_id);
        db_bind_int64(stmt, 2, p->child_id);
        if ((ret = step_done(st, st->wr, stmt)) != 0)
            break;
        stmt = prep(st, st->wr,
                    "INSERT INTO edges (parent_id, child_id, score, verdict, signals, rank,"
                    " rev_signals, is_parent, share) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
        if (!stmt) {
            ret = -1;
            break;
        }
        db_bind_int64(stmt, 1, p->parent_id);
        db_bind_int64(stmt, 2, p->child_id);
        db_bind_double(stmt, 3, p->score);
        db_bind_text(stmt, 4, p->verdict);
        bind_text(stmt, 5, p->signals);
        db_bind_double(stmt, 6, p->rank);
        bind_text(stmt, 7, p->rev_signals);
        db_bind_int64(stmt, 8, p->is_main ? 1 : 0);
        if (isfinite(p->share))
            db_bind_double(stmt, 9, p->share);
        else
            db_bind_null(stmt, 9);
        ret = step_done(st, st->wr, stmt);
    }
    return tx_end(st, ret);
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
        db_stmt *stmt = prep(st, st->wr, "UPDATE models SET digest = ?2 WHERE id = ?1");
        ret = -1;
        if (stmt) {
            db_bind_int64(stmt, 1, model_id);
            bind_text(stmt, 2, digest);
            ret = step_done(st, st->wr, stmt);
        }
    }
    int rc = tx_end(st, ret < 0 ? ret : 0);
    return rc < 0 ? rc : ret;
}
