/* Units waiting for analysis, shared by every daemon on one database (fs/README.md "Several
 * hosts"): a change through any mount records its unit here at once, with the time from which
 * any daemon may take it; a daemon analyses a unit only under a claim (owner and lease), which
 * it renews while it works. A claim whose daemon died runs out, and another takes the unit. */
#include "store_int.h"

#include <stdio.h>

bool store_shared(const store_handle *st)
{
    return st->shared;
}

int store_pending_put(store_handle *st, const char *path, int64_t due_ns)
{
    if (!st->wr)
        return -1;
    /* a new change: whoever analyses now works on older bytes; any daemon may take it again */
    pthread_mutex_lock(&st->write_lock);
    db_stmt *s = prep(st, st->wr,
                      "INSERT INTO pending (path, due_ns) VALUES (?1, ?2) ON CONFLICT (path)"
                      " DO UPDATE SET due_ns = excluded.due_ns, owner = NULL, lease_ns = 0");
    int ret = -1;
    if (s) {
        db_bind_text(s, 1, path);
        db_bind_int64(s, 2, due_ns);
        ret = step_done(st, st->wr, s);
    }
    pthread_mutex_unlock(&st->write_lock);
    return ret;
}

int store_pending_claim(store_handle *st, const char *path, const char *owner, int64_t now_ns,
                        int64_t lease_ns)
{
    if (!st->wr)
        return -1;
    pthread_mutex_lock(&st->write_lock);
    /* one statement: the row is locked while its owner is checked, so two daemons never both
     * see it free */
    db_stmt *s = prep(st, st->wr,
                      "INSERT INTO pending (path, due_ns, owner, lease_ns) VALUES (?1, ?3, ?2, ?4)"
                      " ON CONFLICT (path) DO UPDATE SET owner = excluded.owner,"
                      " lease_ns = excluded.lease_ns WHERE pending.owner IS NULL"
                      " OR pending.owner = excluded.owner OR pending.lease_ns < ?3");
    int ret = -1;
    if (s) {
        db_bind_text(s, 1, path);
        db_bind_text(s, 2, owner);
        db_bind_int64(s, 3, now_ns);
        db_bind_int64(s, 4, now_ns + lease_ns);
        ret = step_done(st, st->wr, s);
        if (ret == 0)
            ret = db_changes(st->wr) == 1;
    }
    pthread_mutex_unlock(&st->write_lock);
    return ret;
}

int store_pending_done(store_handle *st, const char *path, const char *owner)
{
    if (!st->wr)
        return -1;
    pthread_mutex_lock(&st->write_lock);
    db_stmt *s = prep(st, st->wr, "DELETE FROM pending WHERE path = ?1 AND owner = ?2");
    int ret = -1;
    if (s) {
        db_bind_text(s, 1, path);
        db_bind_text(s, 2, owner);
        ret = step_done(st, st->wr, s);
    }
    pthread_mutex_unlock(&st->write_lock);
    return ret;
}

int store_pending_renew(store_handle *st, const char *owner, int64_t until_ns)
{
    if (!st->wr)
        return -1;
    pthread_mutex_lock(&st->write_lock);
    db_stmt *s = prep(st, st->wr, "UPDATE pending SET lease_ns = ?2 WHERE owner = ?1");
    int ret = -1;
    if (s) {
        db_bind_text(s, 1, owner);
        db_bind_int64(s, 2, until_ns);
        ret = step_done(st, st->wr, s);
    }
    pthread_mutex_unlock(&st->write_lock);
    return ret;
}

int store_pending_due(store_handle *st, int64_t now_ns, store_pending_cb cb, void *ctx)
{
    pthread_mutex_lock(&st->read_lock);
    db_stmt *s = prep(st, st->rd,
                      "SELECT path FROM pending WHERE due_ns <= ?1"
                      " AND (owner IS NULL OR lease_ns < ?1) ORDER BY due_ns LIMIT 256");
    int ret = s ? 0 : -1, rc = DB_ERROR;
    if (s) {
        db_bind_int64(s, 1, now_ns);
        while ((rc = db_step(s)) == DB_ROW && cb(ctx, db_col_text(s, 0)) == 0)
            ;
        ret = rc == DB_ROW || rc == DB_DONE ? 0 : -1;
    }
    done(st, s);
    pthread_mutex_unlock(&st->read_lock);
    return ret;
}
