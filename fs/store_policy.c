/* The lineage store: the events table and the policy records (approvals, policy events). */
#include "store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- events */

/* Deletes the rows older than the newest events_max (ids grow by one per row; rows are only ever
 * deleted from the old end, so "id <= newest - max" keeps the newest max rows). Write lock held. */
int trim_events(store_handle *st, int64_t newest)
{
    st->events_since_trim = 0;
    if (st->events_max <= 0 || newest <= st->events_max)
        return 0;
    sqlite3_stmt *stmt = prep(st, st->wr, "DELETE FROM events WHERE id <= ?1");
    if (!stmt)
        return -1;
    sqlite3_bind_int64(stmt, 1, newest - st->events_max);
    return step_done(st, st->wr, stmt);
}

/* After an events row was inserted (write lock held, outside a transaction): trims every
 * max/64 inserts (1..1024), so the table holds at most about 1.6 % more than the cap and the
 * delete runs in batches. */
static int events_inserted(store_handle *st, int64_t rowid)
{
    int64_t every = st->events_max / 64;
    if (every < 1)
        every = 1;
    if (every > 1024)
        every = 1024;
    if (st->events_max <= 0 || ++st->events_since_trim < (unsigned)every)
        return 0;
    return trim_events(st, rowid);
}

int store_event(store_handle *st, uint32_t uid, int32_t pid, const char *path, int64_t model_id,
                const char *kind, const char *detail)
{
    if (!st->wr)
        return -1;
    pthread_mutex_lock(&st->write_lock);
    int ret = -1;
    sqlite3_stmt *stmt = prep(st, st->wr,
                              "INSERT INTO events (time_ns, uid, pid, path, model_id,"
                              " kind, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    if (stmt) {
        sqlite3_bind_int64(stmt, 1, now_ns());
        sqlite3_bind_int64(stmt, 2, uid);
        sqlite3_bind_int64(stmt, 3, pid);
        bind_text(stmt, 4, path);
        if (model_id)
            sqlite3_bind_int64(stmt, 5, model_id);
        else
            sqlite3_bind_null(stmt, 5);
        sqlite3_bind_text(stmt, 6, kind, -1, SQLITE_STATIC);
        bind_text(stmt, 7, detail);
        ret = step_done(st, st->wr, stmt);
    }
    if (ret == 0)
        ret = events_inserted(st, sqlite3_last_insert_rowid(st->wr));
    pthread_mutex_unlock(&st->write_lock);
    return ret;
}

int store_set_events_max(store_handle *st, int64_t max)
{
    if (!st->wr || max < 0)
        return -1;
    pthread_mutex_lock(&st->write_lock);
    int ret = -1;
    sqlite3_stmt *stmt = prep(st, st->wr,
                              "INSERT INTO settings (key, value) VALUES ('events_max', ?1)"
                              " ON CONFLICT(key) DO UPDATE SET value = excluded.value");
    if (stmt) {
        sqlite3_bind_int64(stmt, 1, max);
        ret = step_done(st, st->wr, stmt);
    }
    if (ret == 0) {
        st->events_max = max;
        int64_t newest = 0;
        ret = wr_int(st, "SELECT coalesce(max(id), ?1) FROM events", 0, NULL, &newest);
        if (ret == 0)
            ret = trim_events(st, newest);
    }
    pthread_mutex_unlock(&st->write_lock);
    return ret;
}

int64_t store_events_max(store_handle *st)
{
    pthread_mutex_lock(&st->write_lock);
    int64_t max = st->events_max;
    pthread_mutex_unlock(&st->write_lock);
    return max;
}

/* ---------------------------------------------------------------- policy */

uint64_t store_generation(store_handle *st)
{
    return atomic_load(&st->generation);
}

int store_approval_set(store_handle *st, const char *digest, const char *state, uint32_t uid,
                       int32_t pid, const char *path, int64_t model_id, const char *note)
{
    if (!st->wr || !digest || strlen(digest) != 64)
        return -1;
    pthread_mutex_lock(&st->write_lock);
    /* A security record: durable at commit. synchronous cannot change inside a transaction. */
    int ret = exec_sql(st->wr, "PRAGMA synchronous=FULL");
    if (ret == 0)
        ret = exec_sql(st->wr, "BEGIN IMMEDIATE");
    if (ret != 0) {
        exec_sql(st->wr, "PRAGMA synchronous=NORMAL");
        pthread_mutex_unlock(&st->write_lock);
        return -1;
    }
    int64_t now = now_ns();
    sqlite3_stmt *stmt = prep(st, st->wr,
                              "INSERT INTO approvals (digest, state, by_uid, at, note)"
                              " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(digest) DO UPDATE"
                              " SET state = excluded.state, by_uid = excluded.by_uid,"
                              " at = excluded.at, note = excluded.note");
    ret = -1;
    if (stmt) {
        sqlite3_bind_text(stmt, 1, digest, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 2, state, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 3, uid);
        sqlite3_bind_int64(stmt, 4, now / 1000000000);
        sqlite3_bind_text(stmt, 5, note ? note : "", -1, SQLITE_STATIC);
        ret = step_done(st, st->wr, stmt);
    }
    stmt = ret == 0 ? prep(st, st->wr,
                           "INSERT INTO events (time_ns, uid, pid, path, model_id, kind,"
                           " detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                    : NULL;
    if (stmt) {
        sqlite3_bind_int64(stmt, 1, now);
        sqlite3_bind_int64(stmt, 2, uid);
        sqlite3_bind_int64(stmt, 3, pid);
        bind_text(stmt, 4, path);
        if (model_id)
            sqlite3_bind_int64(stmt, 5, model_id);
        else
            sqlite3_bind_null(stmt, 5);
        sqlite3_bind_text(stmt, 6, strcmp(state, "approved") == 0 ? "approve" : "revoke", -1,
                          SQLITE_STATIC);
        bind_text(stmt, 7, note);
        ret = step_done(st, st->wr, stmt);
    } else {
        ret = -1;
    }
    int64_t event_id = sqlite3_last_insert_rowid(st->wr);
    if (ret == 0 && exec_sql(st->wr, "COMMIT") != 0)
        ret = -1;
    if (ret != 0)
        exec_sql(st->wr, "ROLLBACK");
    exec_sql(st->wr, "PRAGMA synchronous=NORMAL");
    if (ret == 0)
        events_inserted(st, event_id); /* the approval is committed: a failed trim is no error */
    atomic_fetch_add(&st->generation, 1);
    pthread_mutex_unlock(&st->write_lock);
    return ret;
}

void store_approval_clear(store_approval *a)
{
    free(a->note);
    memset(a, 0, sizeof *a);
}

int store_approval_get(store_handle *st, const char *digest, store_approval *out)
{
    memset(out, 0, sizeof *out);
    if (!digest || !*digest)
        return 1;
    int ret = -1;
    pthread_mutex_lock(&st->read_lock);
    sqlite3_stmt *stmt =
        prep(st, st->rd, "SELECT state, by_uid, at, note FROM approvals WHERE digest = ?1");
    if (!stmt)
        goto out;
    sqlite3_bind_text(stmt, 1, digest, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        snprintf(out->digest, sizeof out->digest, "%s", digest);
        copy_col(stmt, 0, out->state, sizeof out->state);
        out->by_uid = (uint32_t)sqlite3_column_int64(stmt, 1);
        out->at = sqlite3_column_int64(stmt, 2);
        out->note = dup_col(stmt, 3);
        ret = 0;
    } else if (rc == SQLITE_DONE) {
        ret = 1;
    } else {
        store_log(st->rd, "approval");
    }
    done(st, stmt);
out:
    pthread_mutex_unlock(&st->read_lock);
    return ret;
}

int store_any_approved(store_handle *st, const int64_t *ids, size_t n)
{
    int ret = 0;
    pthread_mutex_lock(&st->read_lock);
    sqlite3_stmt *stmt = prep(st, st->rd,
                              "SELECT 1 FROM approvals a JOIN models m"
                              " ON m.digest = a.digest"
                              " WHERE a.state = 'approved' AND m.id = ?1");
    if (!stmt)
        ret = -1;
    for (size_t i = 0; stmt && i < n && ret == 0; i++) {
        sqlite3_bind_int64(stmt, 1, ids[i]);
        int rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW)
            ret = 1;
        else if (rc != SQLITE_DONE)
            ret = -1;
        sqlite3_reset(stmt);
    }
    done(st, stmt);
    pthread_mutex_unlock(&st->read_lock);
    return ret;
}

int store_content_approved(store_handle *st, const char *sha256)
{
    int ret = -1;
    pthread_mutex_lock(&st->read_lock);
    sqlite3_stmt *stmt = prep(st, st->rd,
                              "SELECT 1 FROM files f JOIN models m ON m.id = f.model_id"
                              " JOIN approvals a ON a.digest = m.digest"
                              " WHERE f.sha256 = ?1 AND a.state = 'approved' LIMIT 1");
    if (stmt) {
        sqlite3_bind_text(stmt, 1, sha256, -1, SQLITE_STATIC);
        int rc = sqlite3_step(stmt);
        ret = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
    }
    done(st, stmt);
    pthread_mutex_unlock(&st->read_lock);
    return ret;
}

int store_policy_event(store_handle *st, uint32_t uid, int32_t pid, const char *path,
                       int64_t model_id, const char *rule, const char *decision, const char *reason)
{
    if (!st->wr)
        return -1;
    pthread_mutex_lock(&st->write_lock);
    int ret = -1;
    int64_t now = now_ns(), minute = now - now % STORE_EVENTS_WINDOW_NS;
    /* The same refusal (uid, unit, rule, decision, reason) in the same minute: one more. The unit
     * is the model id, or the path while the unit has no model row. */
    sqlite3_stmt *stmt =
        prep(st, st->wr,
             "UPDATE events SET count = count + 1, last_ns = ?1 WHERE id = ("
             " SELECT id FROM events WHERE kind = 'policy' AND uid = ?2 AND model_id IS ?3"
             " AND time_ns >= ?4 AND time_ns < ?5 AND (?3 IS NOT NULL OR path IS ?6)"
             " AND rule IS ?7 AND decision IS ?8 AND detail IS ?9"
             " ORDER BY id DESC LIMIT 1)");
    if (!stmt)
        goto out;
    sqlite3_bind_int64(stmt, 1, now);
    sqlite3_bind_int64(stmt, 2, uid);
    if (model_id)
        sqlite3_bind_int64(stmt, 3, model_id);
    else
        sqlite3_bind_null(stmt, 3);
    sqlite3_bind_int64(stmt, 4, minute);
    sqlite3_bind_int64(stmt, 5, minute + STORE_EVENTS_WINDOW_NS);
    bind_text(stmt, 6, path);
    bind_text(stmt, 7, rule);
    bind_text(stmt, 8, decision);
    bind_text(stmt, 9, reason);
    if (step_done(st, st->wr, stmt) != 0)
        goto out;
    if (sqlite3_changes(st->wr) > 0) {
        ret = 0;
        goto out;
    }
    stmt = prep(st, st->wr,
                "INSERT INTO events (time_ns, uid, pid, path, model_id,"
                " kind, detail, rule, decision, count, last_ns)"
                " VALUES (?1, ?2, ?3, ?4, ?5, 'policy', ?6, ?7, ?8, 1, ?1)");
    if (!stmt)
        goto out;
    sqlite3_bind_int64(stmt, 1, now);
    sqlite3_bind_int64(stmt, 2, uid);
    sqlite3_bind_int64(stmt, 3, pid);
    bind_text(stmt, 4, path);
    if (model_id)
        sqlite3_bind_int64(stmt, 5, model_id);
    else
        sqlite3_bind_null(stmt, 5);
    bind_text(stmt, 6, reason);
    bind_text(stmt, 7, rule);
    bind_text(stmt, 8, decision);
    ret = step_done(st, st->wr, stmt);
    if (ret == 0)
        ret = events_inserted(st, sqlite3_last_insert_rowid(st->wr));
out:
    pthread_mutex_unlock(&st->write_lock);
    return ret;
}
