/* The lineage store: reading models, paths, files, links and counts. */
#include "store_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- reading */

void store_model_clear(store_model *m)
{
    free(m->error);
    memset(m, 0, sizeof *m);
}

void store_files_free(store_file *files, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(files[i].name);
    free(files);
}

void store_link_clear(store_link *l)
{
    free(l->path);
    free(l->origin_path);
    free(l->signals);
    l->path = l->origin_path = l->signals = NULL;
}

void store_links_free(store_link *links, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(links[i].path);
        free(links[i].origin_path);
        free(links[i].signals);
    }
    free(links);
}

#define MODEL_COLS "m.id, m.status, m.digest, m.format, m.error, m.analyzed_at, m.created_ns"

static void read_model(db_stmt *stmt, store_model *out)
{
    memset(out, 0, sizeof *out);
    out->id = db_col_int64(stmt, 0);
    copy_col(stmt, 1, out->status, sizeof out->status);
    copy_col(stmt, 2, out->digest, sizeof out->digest);
    copy_col(stmt, 3, out->format, sizeof out->format);
    out->error = dup_col(stmt, 4);
    out->analyzed_at = db_col_int64(stmt, 5);
    out->created_ns = db_col_int64(stmt, 6);
}

static int model_query(store_handle *st, const char *sql, const char *path, int64_t id,
                       store_model *out)
{
    int ret = -1;
    pthread_mutex_lock(&st->read_lock);
    db_stmt *stmt = prep(st, st->rd, sql);
    if (!stmt)
        goto out;
    if (path)
        db_bind_text(stmt, 1, path);
    else
        db_bind_int64(stmt, 1, id);
    int rc = db_step(stmt);
    if (rc == DB_ROW) {
        read_model(stmt, out);
        ret = 0;
    } else if (rc == DB_DONE) {
        ret = 1;
    } else {
        store_log(st->rd, "model lookup");
    }
    done(st, stmt);
out:
    pthread_mutex_unlock(&st->read_lock);
    return ret;
}

int store_model_by_path(store_handle *st, const char *path, store_model *out)
{
    return model_query(st,
                       "SELECT " MODEL_COLS " FROM model_paths p JOIN models m ON m.id = p.model_id"
                       " WHERE p.path = ?1",
                       path, 0, out);
}

int store_each_adapter(store_handle *st, store_adapter_cb cb, void *ctx)
{
    typedef struct {
        int64_t id, parent;
        char *declared;
    } row;
    row *rows = NULL;
    size_t count = 0, cap = 0;
    int ret = -1;
    /* Read first, called back after: cb may use the store. */
    pthread_mutex_lock(&st->read_lock);
    db_stmt *stmt =
        prep(st, st->rd,
             "SELECT a.model_id, a.declared, (SELECT e.parent_id FROM edges e WHERE e.child_id ="
             " a.model_id AND e.is_parent = 1 AND e.verdict = 'adapter')"
             " FROM adapter_bases a JOIN models m ON m.id = a.model_id WHERE m.status = 'ready'"
             " ORDER BY a.tried_ns, a.model_id");
    if (stmt) {
        int rc;
        while ((rc = db_step(stmt)) == DB_ROW) {
            if (count == cap) {
                size_t grown_cap = cap ? cap * 2 : 16;
                row *grown = realloc(rows, grown_cap * sizeof *grown);
                if (!grown)
                    break;
                rows = grown;
                cap = grown_cap;
            }
            rows[count].id = db_col_int64(stmt, 0);
            rows[count].parent = db_col_int64(stmt, 2); /* 0 for NULL */
            if (!(rows[count].declared = dup_col(stmt, 1)))
                break;
            count++;
        }
        if (rc == DB_DONE)
            ret = 0;
        else if (rc != DB_ROW)
            store_log(st->rd, "adapters");
        done(st, stmt);
    }
    pthread_mutex_unlock(&st->read_lock);
    bool stop = false;
    for (size_t i = 0; i < count; i++) {
        if (ret == 0 && !stop && cb(ctx, rows[i].id, rows[i].declared, rows[i].parent))
            stop = true;
        free(rows[i].declared);
    }
    free(rows);
    return ret;
}

int store_model_by_id(store_handle *st, int64_t id, store_model *out)
{
    return model_query(st, "SELECT " MODEL_COLS " FROM models m WHERE m.id = ?1", NULL, id, out);
}

/* Runs a one-row, one-text-column query on the reader; 1 when no row or NULL. */
static int text_query(store_handle *st, const char *sql, int64_t id, const char *name, char **out)
{
    int ret = -1;
    *out = NULL;
    pthread_mutex_lock(&st->read_lock);
    db_stmt *stmt = prep(st, st->rd, sql);
    if (!stmt)
        goto out;
    db_bind_int64(stmt, 1, id);
    if (name)
        db_bind_text(stmt, 2, name);
    int rc = db_step(stmt);
    if (rc == DB_ROW && !db_col_null(stmt, 0)) {
        *out = dup_col(stmt, 0);
        ret = *out ? 0 : -1;
    } else if (rc == DB_ROW || rc == DB_DONE) {
        ret = 1;
    } else {
        store_log(st->rd, "query");
    }
    done(st, stmt);
out:
    pthread_mutex_unlock(&st->read_lock);
    return ret;
}

int store_model_path(store_handle *st, int64_t id, char **out)
{
    return text_query(st, "SELECT min(path) FROM model_paths WHERE model_id = ?1", id, NULL, out);
}

int store_fingerprint_fp(store_handle *st, int64_t id, pa_fingerprint **out)
{
    *out = NULL;
    uint8_t *copy = NULL;
    size_t n = 0;
    int ret = -1;
    pthread_mutex_lock(&st->read_lock);
    db_stmt *stmt = prep(st, st->rd, "SELECT fpbin FROM models WHERE id = ?1");
    if (stmt) {
        db_bind_int64(stmt, 1, id);
        int rc = db_step(stmt);
        const void *blob = rc == DB_ROW ? db_col_blob(stmt, 0, &n) : NULL;
        if (blob) {
            /* decoded after the lock is let go */
            copy = malloc(n ? n : 1);
            if (copy)
                memcpy(copy, blob, n);
            ret = copy ? 0 : -1;
        } else if (rc == DB_ROW || rc == DB_DONE) {
            ret = 1;
        } else {
            store_log(st->rd, "fingerprint");
        }
        done(st, stmt);
    }
    pthread_mutex_unlock(&st->read_lock);
    if (ret != 0)
        return ret;
    pa_error err = {0};
    if (pa_fp_from_bin(copy, n, "stored fingerprint", out, &err) != PA_OK) {
        fprintf(stderr, "provfs: model %llx: %s\n", (unsigned long long)id, err.msg);
        ret = err.status == PA_E_NOMEM ? -1 : 1;
    }
    free(copy);
    return ret;
}

int store_fingerprint(store_handle *st, int64_t id, char **json)
{
    *json = NULL;
    pa_fingerprint *fp = NULL;
    int ret = store_fingerprint_fp(st, id, &fp);
    if (ret != 0)
        return ret;
    *json = pa_fp_summary_json(fp);
    pa_fingerprint_free(fp);
    return *json ? 0 : -1;
}

int store_file_sha(store_handle *st, int64_t id, const char *name, char out[65])
{
    char *sha = NULL;
    int ret = text_query(st, "SELECT sha256 FROM files WHERE model_id = ?1 AND name = ?2", id, name,
                         &sha);
    if (ret == 0)
        snprintf(out, 65, "%s", sha);
    free(sha);
    return ret;
}

int store_files(store_handle *st, int64_t id, store_file **out, size_t *n)
{
    int ret = -1;
    size_t count = 0, cap = 0;
    store_file *files = NULL;
    pthread_mutex_lock(&st->read_lock);
    db_stmt *stmt = prep(st, st->rd,
                              "SELECT name, size, mtime_ns, sha256 FROM files"
                              " WHERE model_id = ?1 ORDER BY name");
    if (!stmt)
        goto out;
    db_bind_int64(stmt, 1, id);
    int rc;
    while ((rc = db_step(stmt)) == DB_ROW) {
        if (count == cap) {
            cap = cap ? cap * 2 : 8;
            store_file *grown = realloc(files, cap * sizeof *files);
            if (!grown)
                goto out_stmt;
            files = grown;
        }
        store_file *f = &files[count];
        f->name = dup_col(stmt, 0);
        if (!f->name)
            goto out_stmt;
        count++;
        f->size = (uint64_t)db_col_int64(stmt, 1);
        f->mtime_ns = db_col_int64(stmt, 2);
        copy_col(stmt, 3, f->sha256, sizeof f->sha256);
    }
    if (rc == DB_DONE)
        ret = 0;
    else
        store_log(st->rd, "files");
out_stmt:
    done(st, stmt);
out:
    pthread_mutex_unlock(&st->read_lock);
    if (ret != 0) {
        store_files_free(files, count);
        files = NULL;
        count = 0;
    }
    *out = files;
    *n = count;
    return ret;
}

#define LINK_COLS                                                                                  \
    "e.score, e.verdict, e.signals, e.is_parent,"                                                  \
    " (SELECT min(path) FROM model_paths WHERE model_id = %s),"                                    \
    " (SELECT origin_path FROM models WHERE id = %s), e.share"
#define LINK_ID_COL 7

static void read_link(db_stmt *stmt, int64_t id, store_link *out)
{
    memset(out, 0, sizeof *out);
    out->id = id;
    out->score = db_col_double(stmt, 0);
    copy_col(stmt, 1, out->verdict, sizeof out->verdict);
    out->signals = dup_col(stmt, 2);
    out->is_parent = (int)db_col_int64(stmt, 3) != 0;
    out->path = dup_col(stmt, 4);
    out->origin_path = dup_col(stmt, 5);
    out->share = db_col_null(stmt, 6) ? NAN : db_col_double(stmt, 6);
}

/* Parent edge of id, with the reader lock held. */
static int parent_locked(store_handle *st, int64_t id, store_link *out)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT " LINK_COLS ", e.parent_id FROM edges e"
             " WHERE e.child_id = ?1 AND e.is_parent = 1",
             "e.parent_id", "e.parent_id");
    db_stmt *stmt = prep(st, st->rd, sql);
    if (!stmt)
        return -1;
    db_bind_int64(stmt, 1, id);
    int rc = db_step(stmt), ret;
    if (rc == DB_ROW) {
        read_link(stmt, db_col_int64(stmt, LINK_ID_COL), out);
        ret = 0;
    } else {
        ret = rc == DB_DONE ? 1 : -1;
        if (ret < 0)
            store_log(st->rd, "parent");
    }
    done(st, stmt);
    return ret;
}

int store_parent(store_handle *st, int64_t id, store_link *out)
{
    pthread_mutex_lock(&st->read_lock);
    int ret = parent_locked(st, id, out);
    pthread_mutex_unlock(&st->read_lock);
    return ret;
}

int store_ancestors(store_handle *st, int64_t id, store_link **out, size_t *n)
{
    store_link *links = calloc(64, sizeof *links);
    size_t count = 0;
    int ret = 0;
    if (!links)
        return -1;
    pthread_mutex_lock(&st->read_lock);
    int64_t cur = id;
    while (count < 64) {
        int rc = parent_locked(st, cur, &links[count]);
        if (rc != 0) {
            ret = rc < 0 ? -1 : 0;
            break;
        }
        cur = links[count].id;
        count++;
    }
    pthread_mutex_unlock(&st->read_lock);
    *out = links;
    *n = count;
    return ret;
}

static int links_query(store_handle *st, const char *sql, int64_t id, store_link **out, size_t *n);

int store_children(store_handle *st, int64_t id, store_link **out, size_t *n)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT " LINK_COLS ", e.child_id FROM edges e WHERE e.parent_id = ?1"
             " ORDER BY e.child_id",
             "e.child_id", "e.child_id");
    return links_query(st, sql, id, out, n);
}

int store_parents(store_handle *st, int64_t id, store_link **out, size_t *n)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT " LINK_COLS ", e.parent_id FROM edges e"
             " WHERE e.child_id = ?1 AND (e.is_parent = 1 OR e.share IS NOT NULL)"
             " ORDER BY e.is_parent DESC, e.share DESC, e.parent_id",
             "e.parent_id", "e.parent_id");
    return links_query(st, sql, id, out, n);
}

static int links_query(store_handle *st, const char *sql, int64_t id, store_link **out, size_t *n)
{
    int ret = -1;
    size_t count = 0, cap = 0;
    store_link *links = NULL;
    pthread_mutex_lock(&st->read_lock);
    db_stmt *stmt = prep(st, st->rd, sql);
    if (!stmt)
        goto out;
    db_bind_int64(stmt, 1, id);
    int rc;
    while ((rc = db_step(stmt)) == DB_ROW) {
        if (count == cap) {
            cap = cap ? cap * 2 : 8;
            store_link *grown = realloc(links, cap * sizeof *links);
            if (!grown)
                goto out_stmt;
            links = grown;
        }
        read_link(stmt, db_col_int64(stmt, LINK_ID_COL), &links[count++]);
    }
    if (rc == DB_DONE)
        ret = 0;
out_stmt:
    done(st, stmt);
out:
    pthread_mutex_unlock(&st->read_lock);
    if (ret != 0) {
        store_links_free(links, count);
        links = NULL;
        count = 0;
    }
    *out = links;
    *n = count;
    return ret;
}

int store_counts_get(store_handle *st, store_counts *out)
{
    int ret = -1;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&st->read_lock);
    /* store_stats (migration 9): kept by triggers, one row per count */
    db_stmt *stmt = prep(st, st->rd,
                              "SELECT (SELECT n FROM store_stats WHERE key = 'models'),"
                              " (SELECT n FROM store_stats WHERE key = 'paths'),"
                              " (SELECT n FROM store_stats WHERE key = 'edges'),"
                              " (SELECT n FROM store_stats WHERE key = 'status:pending'),"
                              " (SELECT n FROM store_stats WHERE key = 'status:analyzing'),"
                              " (SELECT n FROM store_stats WHERE key = 'status:ready'),"
                              " (SELECT n FROM store_stats WHERE key = 'status:incomplete'),"
                              " (SELECT n FROM store_stats WHERE key = 'status:failed')");
    if (!stmt)
        goto out;
    if (db_step(stmt) == DB_ROW) {
        int64_t *fields[] = {&out->models,    &out->paths, &out->edges,      &out->pending,
                             &out->analyzing, &out->ready, &out->incomplete, &out->failed};
        for (int i = 0; i < 8; i++)
            *fields[i] = db_col_int64(stmt, i);
        ret = 0;
    }
    done(st, stmt);
out:
    pthread_mutex_unlock(&st->read_lock);
    return ret;
}

typedef struct path_row {
    char *path;
    int64_t model_id;
    char status[16];
    int64_t dir_mtime_ns;
} path_row;

int store_each_path(store_handle *st, store_path_cb cb, void *ctx)
{
    /* Copy the rows out first: the callback may write to the store. */
    path_row *rows = NULL;
    size_t count = 0, cap = 0;
    int ret = -1;
    pthread_mutex_lock(&st->read_lock);
    db_stmt *stmt = prep(st, st->rd,
                              "SELECT p.path, p.model_id, m.status, p.dir_mtime_ns"
                              " FROM model_paths p JOIN models m ON m.id = p.model_id"
                              " ORDER BY p.path");
    if (!stmt) {
        pthread_mutex_unlock(&st->read_lock);
        return -1;
    }
    int rc;
    while ((rc = db_step(stmt)) == DB_ROW) {
        if (count == cap) {
            cap = cap ? cap * 2 : 64;
            path_row *grown = realloc(rows, cap * sizeof *rows);
            if (!grown)
                break;
            rows = grown;
        }
        rows[count].path = dup_col(stmt, 0);
        if (!rows[count].path)
            break;
        rows[count].model_id = db_col_int64(stmt, 1);
        copy_col(stmt, 2, rows[count].status, sizeof rows[count].status);
        rows[count].dir_mtime_ns = db_col_int64(stmt, 3);
        count++;
    }
    done(st, stmt);
    pthread_mutex_unlock(&st->read_lock);
    if (rc == DB_DONE) {
        ret = 0;
        for (size_t i = 0; i < count; i++)
            if (cb(ctx, rows[i].path, rows[i].model_id, rows[i].status, rows[i].dir_mtime_ns))
                break;
    }
    for (size_t i = 0; i < count; i++)
        free(rows[i].path);
    free(rows);
    return ret;
}
