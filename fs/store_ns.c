/* The lineage store: namespace changes (removes and renames of paths and subtrees). */
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- namespace changes */

/* Paths are compared as bytes (BINARY collation, case-sensitive, no wildcards): the rows strictly
 * below dir are exactly those in the half-open range [dir "/", dir "0"), since '0' is the byte
 * after '/'. Both bounds are built here; the range uses the primary key index. */
typedef struct subtree {
    char *lo; /* dir + "/" (dir "/" itself for the root) */
    char *hi; /* lo with its last byte '/' raised to '0' */
} subtree;

static int subtree_init(subtree *s, const char *dir)
{
    size_t len = strlen(dir);
    bool slash = len > 0 && dir[len - 1] == '/';
    s->lo = malloc(len + 2);
    s->hi = malloc(len + 2);
    if (!s->lo || !s->hi) {
        free(s->lo);
        free(s->hi);
        return -1;
    }
    memcpy(s->lo, dir, len);
    if (!slash)
        s->lo[len++] = '/';
    s->lo[len] = '\0';
    memcpy(s->hi, s->lo, len + 1);
    s->hi[len - 1] = '/' + 1;
    return 0;
}

static void subtree_free(subtree *s)
{
    free(s->lo);
    free(s->hi);
}

/* WHERE clause: ?1 = the path itself, ?2/?3 = subtree bounds (bound NULL: the path alone). */
#define AT_OR_BELOW "(path = ?1 OR (path >= ?2 AND path < ?3))"

static void bind_subtree(db_stmt *stmt, const char *path, const subtree *s)
{
    db_bind_text(stmt, 1, path);
    if (s) {
        db_bind_text(stmt, 2, s->lo);
        db_bind_text(stmt, 3, s->hi);
    } else {
        db_bind_null(stmt, 2);
        db_bind_null(stmt, 3);
    }
}

typedef struct moved_row {
    char *path; /* the new path */
    int64_t model_id, dir_mtime_ns;
    char *file_ids; /* NULL when NULL */
} moved_row;

/* The model ids of the rows at or below path (s NULL: at path only), each once. */
static int ids_at(store_handle *st, const char *path, const subtree *s, int64_t **out, size_t *n)
{
    int64_t *ids = NULL;
    size_t count = 0, cap = 0;
    int ret = 0;
    *out = NULL;
    *n = 0;
    db_stmt *stmt =
        prep(st, st->wr, "SELECT DISTINCT model_id FROM model_paths WHERE " AT_OR_BELOW);
    if (!stmt)
        return -1;
    bind_subtree(stmt, path, s);
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
    if (ret == 0 && rc != DB_DONE) {
        store_log(st->wr, "paths below");
        ret = -1;
    }
    done(st, stmt);
    if (ret != 0) {
        free(ids);
        return -1;
    }
    *out = ids;
    *n = count;
    return 0;
}

static int delete_at(store_handle *st, const char *path, const subtree *s)
{
    db_stmt *stmt = prep(st, st->wr, "DELETE FROM model_paths WHERE " AT_OR_BELOW);
    if (!stmt)
        return -1;
    bind_subtree(stmt, path, s);
    if (step_done(st, st->wr, stmt) != 0)
        return -1;
    stmt = prep(st, st->wr, "DELETE FROM file_inodes WHERE " AT_OR_BELOW);
    if (!stmt)
        return -1;
    bind_subtree(stmt, path, s);
    return step_done(st, st->wr, stmt);
}

static int drop_orphans(store_handle *st, const int64_t *ids, size_t n)
{
    int ret = 0;
    for (size_t i = 0; ret == 0 && i < n; i++)
        ret = drop_if_orphan(st, ids[i]);
    return ret;
}

int store_remove_path(store_handle *st, const char *path, bool recursive)
{
    subtree s = {0};
    if (recursive && subtree_init(&s, path) != 0)
        return -1;
    if (tx_begin(st) != 0) {
        subtree_free(&s);
        return -1;
    }
    int64_t *ids = NULL;
    size_t count = 0;
    const subtree *below = recursive ? &s : NULL;
    int ret = ids_at(st, path, below, &ids, &count);
    if (ret == 0)
        ret = delete_at(st, path, below);
    if (ret == 0)
        ret = drop_orphans(st, ids, count);
    free(ids);
    subtree_free(&s);
    return tx_end(st, ret);
}

/* The rows at or below from, with their new paths (to + the bytes after from). */
static int rows_to_move(store_handle *st, const char *from, const subtree *s, const char *to,
                        moved_row **out, size_t *n)
{
    moved_row *rows = NULL;
    size_t count = 0, cap = 0, from_len = strlen(from), to_len = strlen(to);
    int ret = 0;
    *out = NULL;
    *n = 0;
    db_stmt *stmt = prep(st, st->wr,
                              "SELECT path, model_id, dir_mtime_ns, file_ids FROM model_paths"
                              " WHERE " AT_OR_BELOW);
    if (!stmt)
        return -1;
    bind_subtree(stmt, from, s);
    int rc;
    while ((rc = db_step(stmt)) == DB_ROW) {
        const char *old = db_col_text(stmt, 0);
        size_t old_len = (size_t)db_col_bytes(stmt, 0);
        if (!old || old_len < from_len || memcmp(old, from, from_len) != 0) {
            ret = -1; /* cannot happen: the range selects exactly this prefix */
            break;
        }
        if (count == cap) {
            cap = cap ? cap * 2 : 8;
            moved_row *grown = realloc(rows, cap * sizeof *rows);
            if (!grown) {
                ret = -1;
                break;
            }
            rows = grown;
        }
        size_t tail = old_len - from_len;
        char *np = malloc(to_len + tail + 1);
        if (!np) {
            ret = -1;
            break;
        }
        memcpy(np, to, to_len);
        memcpy(np + to_len, old + from_len, tail);
        np[to_len + tail] = '\0';
        char *ids = db_col_null(stmt, 3) ? NULL : dup_col(stmt, 3);
        if (!db_col_null(stmt, 3) && !ids) {
            free(np);
            ret = -1;
            break;
        }
        rows[count++] = (moved_row){np, db_col_int64(stmt, 1), db_col_int64(stmt, 2), ids};
    }
    if (ret == 0 && rc != DB_DONE) {
        store_log(st->wr, "rename");
        ret = -1;
    }
    done(st, stmt);
    if (ret != 0) {
        for (size_t i = 0; i < count; i++) {
            free(rows[i].path);
            free(rows[i].file_ids);
        }
        free(rows);
        return -1;
    }
    *out = rows;
    *n = count;
    return 0;
}

int store_rename(store_handle *st, const char *from, const char *to)
{
    if (strcmp(from, to) == 0)
        return 0;
    size_t from_len = strlen(from);
    /* Into its own subtree: rename(2) refuses that (EINVAL); so does the store. */
    if (from_len > 0 && strncmp(to, from, from_len) == 0 &&
        (to[from_len] == '/' || from[from_len - 1] == '/'))
        return -1;
    subtree sf = {0}, stt = {0};
    if (subtree_init(&sf, from) != 0)
        return -1;
    if (subtree_init(&stt, to) != 0) {
        subtree_free(&sf);
        return -1;
    }
    moved_row *rows = NULL;
    size_t n_rows = 0, n_ids = 0;
    int64_t *ids = NULL;
    db_stmt *stmt = NULL;
    int ret = -1;
    if (tx_begin(st) != 0)
        goto out_free;
    /* Take the moving rows out, drop whatever was stored at the target (rename over an existing
     * name replaces it), put the rows back under their new paths. */
    ret = rows_to_move(st, from, &sf, to, &rows, &n_rows);
    if (ret == 0)
        ret = delete_at(st, from, &sf);
    if (ret == 0)
        ret = ids_at(st, to, &stt, &ids, &n_ids);
    if (ret == 0)
        ret = delete_at(st, to, &stt);
    if (ret == 0)
        stmt = prep(st, st->wr,
                    "INSERT INTO model_paths (path, model_id, dir_mtime_ns, file_ids)"
                    " VALUES (?1, ?2, ?3, ?4)");
    if (ret == 0 && !stmt)
        ret = -1;
    for (size_t i = 0; ret == 0 && i < n_rows; i++) {
        db_bind_text(stmt, 1, rows[i].path);
        db_bind_int64(stmt, 2, rows[i].model_id);
        db_bind_int64(stmt, 3, rows[i].dir_mtime_ns);
        if (rows[i].file_ids)
            db_bind_text(stmt, 4, rows[i].file_ids);
        else
            db_bind_null(stmt, 4);
        store_path_note(st, rows[i].path);
        if (db_step(stmt) != DB_DONE) {
            store_log(st->wr, "rename");
            ret = -1;
        }
        db_reset(stmt);
    }
    done(st, stmt);
    /* the inode index of the moved rows, from their identities (delete_at dropped the old) */
    for (size_t i = 0; ret == 0 && i < n_rows; i++)
        ret = store_ids_index(st, rows[i].path, rows[i].file_ids);
    if (ret == 0)
        ret = drop_orphans(st, ids, n_ids);
    ret = tx_end(st, ret);
out_free:
    for (size_t i = 0; i < n_rows; i++) {
        free(rows[i].path);
        free(rows[i].file_ids);
    }
    free(rows);
    free(ids);
    subtree_free(&sf);
    subtree_free(&stt);
    return ret;
}
