/* The lineage store: the events table and the policy records (approvals, policy events). */
#include "store_int.h"
#include "clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------- events */

/* Deletes the rows older than the newest events_max (ids grow by one per row; rows are only ever
 * deleted from the old end, so "id <= newest - max" keeps the newest max rows). Write lock held. */
int trim_events(store_handle *st, int64_t newest)
{
    st->events_since_trim = 0;
    if (st->events_max <= 0 || newest <= st->events_max)
        return 0;
    db_stmt *stmt = prep(st, st->wr, "DELETE FROM events WHERE id <= ?1");
    if (!stmt)
        return -1;
    db_bind_int64(stmt, 1, newest - st->events_max);
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
    int64_t event_id = 0;
    db_stmt *stmt = prep(st, st->wr,
                              "INSERT INTO events (time_ns, uid, pid, path, model_id,"
                              " kind, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id");
    if (stmt) {
        db_bind_int64(stmt, 1, now_ns());
        db_bind_int64(stmt, 2, uid);
        db_bind_int64(stmt, 3, pid);
        bind_text(stmt, 4, path);
        if (model_id)
            db_bind_int64(stmt, 5, model_id);
        else
            db_bind_null(stmt, 5);
        db_bind_text(stmt, 6, kind);
        bind_text(stmt, 7, detail);
        ret = step_id(st, st->wr, stmt, &event_id);
    }
    if (ret == 0)
        ret = events_inserted(st, event_id);
    pthread_mutex_unlock(&st->write_lock);
    return ret;
}

int store_set_events_max(store_handle *st, int64_t max)
{
    if (!st->wr || max < 0)
        return -1;
    pthread_mutex_lock(&st->write_lock);
    int ret = -1;
    db_stmt *stmt = prep(st, st->wr,
                              "INSERT INTO settings (key, value) VALUES ('events_max', ?1)"
                              " ON CONFLICT(key) DO UPDATE SET value = excluded.value");
    if (stmt) {
        db_bind_int64(stmt, 1, max);
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

/* Reads provfs_generation.n of a shared database. When it cannot, the local generation moves
 * on instead: no decision is found in a cache while the database is out of reach, so every
 * gated open asks it again, and fails closed. */
static void poll_shared(store_handle *st)
{
    int64_t now = mono_ms(), last = atomic_load(&st->polled_ms);
    if (now - last < STORE_SHARED_POLL_MS ||
        !atomic_compare_exchange_strong(&st->polled_ms, &last, now))
        return; /* polled lately, or another thread polls now */
    pthread_mutex_lock(&st->read_lock);
    db_stmt *stmt = prep(st, st->rd, "SELECT n FROM provfs_generation");
    int rc = stmt ? db_step(stmt) : DB_ERROR;
    int64_t n = rc == DB_ROW ? db_col_int64(stmt, 0) : -1;
    done(st, stmt);
    pthread_mutex_unlock(&st->read_lock);
    if (n >= 0)
        atomic_store(&st->remote_generation, (uint64_t)n);
    else
        atomic_fetch_add(&st->generation, 1);
}

uint64_t store_generation(store_handle *st)
{
    if (!st->shared)
        return atomic_load(&st->generation);
    poll_shared(st);
    /* both only grow: the sum changes whenever either does */
    return atomic_load(&st->generation) + atomic_load(&st->remote_generation);
}

int store_approval_set(store_handle *st, const char *digest, const char *state, uint32_t uid,
                       int32_t pid, const char *path, int64_t model_id, const char *note)
{
    if (!st->wr || !digest || strlen(digest) != 64)
        return -1;
    pthread_mutex_lock(&st->write_lock);
    /* A security record: durable at commit. synchronous cannot change inside a transaction. */
    int ret = db_durable(st->wr, true);
    if (ret == 0)
        ret = exec_sql(st->wr, "BEGIN IMMEDIATE");
    if (ret != 0) {
        db_durable(st->wr, false);
        pthread_mutex_unlock(&st->write_lock);
        return -1;
    }
    int64_t now = now_ns(), event_id = 0;
    db_stmt *stmt = prep(st, st->wr,
                              "INSERT INTO approvals (digest, state, by_uid, at, note)"
                              " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(digest) DO UPDATE"
                              " SET state = excluded.state, by_uid = excluded.by_uid,"
                              " at = excluded.at, note = excluded.note");
    ret = -1;
    if (stmt) {
        db_bind_text(stmt, 1, digest);
        db_bind_text(stmt, 2, state);
        db_bind_int64(stmt, 3, uid);
        db_bind_int64(stmt, 4, now / 1000000000);
        db_bind_text(stmt, 5, note ? note : "");
        ret = step_done(st, st->wr, stmt);
    }
    stmt = ret == 0 ? prep(st, st->wr,
                           "INSERT INTO events (time_ns, uid, pid, path, model_id, kind,"
                           " detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id")
                    : NULL;
    if (stmt) {
        db_bind_int64(stmt, 1, now);
        db_bind_int64(stmt, 2, uid);
        db_bind_int64(stmt, 3, pid);
        bind_text(stmt, 4, path);
        if (model_id)
            db_bind_int64(stmt, 5, model_id);
        else
            db_bind_null(stmt, 5);
        db_bind_text(stmt, 6, strcmp(state, "approved") == 0 ? "approve" : "revoke");
        bind_text(stmt, 7, note);
        ret = step_id(st, st->wr, stmt, &event_id);
    } else {
        ret = -1;
    }
    if (ret == 0)
        ret = shared_bump(st);
    if (ret == 0 && exec_sql(st->wr, "COMMIT") != 0)
        ret = -1;
    if (ret != 0)
        exec_sql(st->wr, "ROLLBACK");
    db_durable(st->wr, false);
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
    db_stmt *stmt =
        prep(st, st->rd, "SELECT state, by_uid, at, note FROM approvals WHERE digest = ?1");
    if (!stmt)
        goto out;
    db_bind_text(stmt, 1, digest);
    int rc = db_step(stmt);
    if (rc == DB_ROW) {
        snprintf(out->digest, sizeof out->digest, "%s", digest);
        copy_col(stmt, 0, out->state, sizeof out->state);
        out->by_uid = (uint32_t)db_col_int64(stmt, 1);
        out->at = db_col_int64(stmt, 2);
        out->note = dup_col(stmt, 3);
        ret = 0;
    } else if (rc == DB_DONE) {
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
    db_stmt *stmt = prep(st, st->rd,
                              "SELECT 1 FROM approvals a JOIN models m"
                              " ON m.digest = a.digest"
                              " WHERE a.state = 'approved' AND m.id = ?1");
    if (!stmt)
        ret = -1;
    for (size_t i = 0; stmt && i < n && ret == 0; i++) {
        db_bind_int64(stmt, 1, ids[i]);
        int rc = db_step(stmt);
        if (rc == DB_ROW)
            ret = 1;
        else if (rc != DB_DONE)
            ret = -1;
        db_reset(stmt);
    }
    done(st, stmt);
    pthread_mutex_unlock(&st->read_lock);
    return ret;
}

int store_content_approved(store_handle *st, const char *sha256)
{
    int ret = -1;
    pthread_mutex_lock(&st->read_lock);
    db_stmt *stmt = prep(st, st->rd,
                              "SELECT 1 FROM files f JOIN models m ON m.id = f.model_id"
                              " JOIN approvals a ON a.digest = m.digest"
                              " WHERE f.sha256 = ?1 AND a.state = 'approved' LIMIT 1");
    if (stmt) {
        db_bind_text(stmt, 1, sha256);
        int rc = db_step(stmt);
        ret = rc == DB_ROW ? 1 : rc == DB_DONE ? 0 : -1;
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
    db_stmt *stmt =
        prep(st, st->wr,
             "UPDATE events SET count = count + 1, last_ns = ?1 WHERE id = ("
             " SELECT id FROM events WHERE kind = 'policy' AND uid = ?2"
             " AND model_id IS NOT DISTINCT FROM ?3 AND time_ns >= ?4 AND time_ns < ?5"
             " AND (?3 IS NOT NULL OR path IS NOT DISTINCT FROM ?6)"
             " AND rule IS NOT DISTINCT FROM ?7 AND decision IS NOT DISTINCT FROM ?8"
             " AND detail IS NOT DISTINCT FROM ?9"
             " ORDER BY id DESC LIMIT 1)");
    if (!stmt)
        goto out;
    db_bind_int64(stmt, 1, now);
    db_bind_int64(stmt, 2, uid);
    if (model_id)
        db_bind_int64(stmt, 3, model_id);
    else
        db_bind_null(stmt, 3);
    db_bind_int64(stmt, 4, minute);
    db_bind_int64(stmt, 5, minute + STORE_EVENTS_WINDOW_NS);
    bind_text(stmt, 6, path);
    bind_text(stmt, 7, rule);
    bind_text(stmt, 8, decision);
    bind_text(stmt, 9, reason);
    if (step_done(st, st->wr, stmt) != 0)
        goto out;
    if (db_changes(st->wr) > 0) {
        ret = 0;
        goto out;
    }
    stmt = prep(st, st->wr,
                "INSERT INTO events (time_ns, uid, pid, path, model_id,"
                " kind, detail, rule, decision, count, last_ns)"
                " VALUES (?1, ?2, ?3, ?4, ?5, 'policy', ?6, ?7, ?8, 1, ?1) RETURNING id");
    if (!stmt)
        goto out;
    db_bind_int64(stmt, 1, now);
    db_bind_int64(stmt, 2, uid);
    db_bind_int64(stmt, 3, pid);
    bind_text(stmt, 4, path);
    if (model_id)
        db_bind_int64(stmt, 5, model_id);
    else
        db_bind_null(stmt, 5);
    bind_text(stmt, 6, reason);
    bind_text(stmt, 7, rule);
    bind_text(stmt, 8, decision);
    int64_t event_id = 0;
    ret = step_id(st, st->wr, stmt, &event_id);
    if (ret == 0)
        ret = events_inserted(st, event_id);
out:
    pthread_mutex_unlock(&st->write_lock);
    return ret;
}
