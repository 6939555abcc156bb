/* The events table of fs/store_policy.c: repeated policy refusals aggregate into one row per
 * minute with a count, the table is capped (oldest rows first), and a version-3 database
 * migrates. */
#include "check.h"
#include "store.h"

#include <sqlite3.h>
#include <stdint.h>
#include <unistd.h>

static char db_path[512];

static store_handle *open_at(const char *dir, const char *name, bool fresh)
{
    snprintf(db_path, sizeof db_path, "%s/%s", dir, name);
    if (fresh)
        unlink(db_path);
    store_handle *st = NULL;
    char err[256];
    CHECK_MSG(store_open(db_path, 0, &st, err, sizeof err) == 0, "%s", err);
    return st;
}

/* One integer from a query on a separate connection (what provctl or sqlite3 would see). */
static int64_t q_int(const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    int64_t v = -1;
    if (sqlite3_open(db_path, &db) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW)
        v = sqlite3_column_int64(stmt, 0);
    else
        fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return v;
}

static void q_exec(const char *sql)
{
    sqlite3 *db = NULL;
    char *msg = NULL;
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
    CHECK_MSG(sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK, "%s: %s", sql,
              msg ? msg : "");
    sqlite3_free(msg);
    sqlite3_close(db);
}

static void test_aggregate(const char *dir)
{
    store_handle *st = open_at(dir, "agg.db", true);
    if (!st)
        return;
    const char *w = "/team/llama/model.safetensors";
    for (int i = 0; i < 5000; i++)
        CHECK(store_policy_event(st, 1001, 100 + i, w, 7, "require_approval", "refused",
                                 "unknown lineage") == 0);
    /* 5,000 refusals in a few milliseconds: one row (two if a minute boundary fell in between). */
    int64_t rows = q_int("SELECT count(*) FROM events WHERE kind = 'policy'");
    CHECK_MSG(rows >= 1 && rows <= 2, "%lld rows", (long long)rows);
    CHECK_INT(q_int("SELECT sum(count) FROM events WHERE kind = 'policy'"), 5000);
    CHECK_INT(q_int("SELECT count(*) FROM events WHERE kind = 'policy' AND last_ns >= time_ns"
                    " AND pid >= 100 AND path = '/team/llama/model.safetensors'"),
              rows);
    /* Each part of the key makes a row of its own. */
    q_exec("DELETE FROM events");
    CHECK(store_policy_event(st, 1001, 1, w, 7, "require_approval", "refused", "r") == 0);
    CHECK(store_policy_event(st, 1002, 1, w, 7, "require_approval", "refused", "r") == 0);
    CHECK(store_policy_event(st, 1001, 1, w, 8, "require_approval", "refused", "r") == 0);
    CHECK(store_policy_event(st, 1001, 1, w, 7, "deny_families", "refused", "r") == 0);
    CHECK(store_policy_event(st, 1001, 1, w, 7, "require_approval", "would-refuse", "r") == 0);
    CHECK(store_policy_event(st, 1001, 1, w, 7, "require_approval", "refused", "r2") == 0);
    /* Without a model row the path is the unit. */
    CHECK(store_policy_event(st, 1001, 1, "/p/a", 0, "block_pending", "refused", "r") == 0);
    CHECK(store_policy_event(st, 1001, 1, "/p/b", 0, "block_pending", "refused", "r") == 0);
    /* Another file of the same unit counts for the unit. */
    CHECK(store_policy_event(st, 1001, 1, "/team/llama/tokenizer.json", 7, "require_approval",
                             "refused", "r") == 0);
    CHECK(store_policy_event(st, 1001, 1, "/p/a", 0, "block_pending", "refused", "r") == 0);
    int64_t all = q_int("SELECT count(*) FROM events");
    CHECK_MSG(all >= 8 && all <= 10, "%lld rows", (long long)all); /* 8 unless a minute ended */
    CHECK_INT(q_int("SELECT sum(count) FROM events"), 10);
    /* A row of an earlier minute is never extended. */
    q_exec("UPDATE events SET time_ns = time_ns - 60000000000");
    CHECK(store_policy_event(st, 1001, 1, "/p/a", 0, "block_pending", "refused", "r") == 0);
    CHECK_INT(q_int("SELECT count(*) FROM events"), all + 1);
    /* Other kinds are never aggregated. */
    CHECK(store_event(st, 0, 1, "/x", 0, "removed", NULL) == 0);
    CHECK(store_event(st, 0, 1, "/x", 0, "removed", NULL) == 0);
    CHECK_INT(q_int("SELECT count(*) FROM events WHERE kind = 'removed' AND count = 1"), 2);
    /* The lookup uses the partial index, not a scan of the table. */
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(db,
                             "EXPLAIN QUERY PLAN SELECT id FROM events WHERE kind = 'policy'"
                             " AND uid = ?2 AND model_id IS ?3 AND time_ns >= ?4 AND time_ns < ?5"
                             " AND (?3 IS NOT NULL OR path IS ?6) AND rule IS ?7"
                             " AND decision IS ?8 AND detail IS ?9 ORDER BY id DESC LIMIT 1",
                             -1, &stmt, NULL) == SQLITE_OK);
    bool indexed = false;
    while (sqlite3_step(stmt) == SQLITE_ROW)
        if (strstr((const char *)sqlite3_column_text(stmt, 3), "events_policy"))
            indexed = true;
    CHECK(indexed);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    store_close(st);
}

static void test_cap(const char *dir)
{
    store_handle *st = open_at(dir, "cap.db", true);
    if (!st)
        return;
    CHECK_INT(store_events_max(st), STORE_EVENTS_MAX_DEFAULT);
    CHECK(store_set_events_max(st, 10) == 0);
    char detail[32];
    for (int i = 1; i <= 100; i++) {
        snprintf(detail, sizeof detail, "e%d", i);
        CHECK(store_event(st, 0, i, "/x", 0, "analyzed", detail) == 0);
    }
    CHECK_INT(q_int("SELECT count(*) FROM events"), 10);
    CHECK_INT(q_int("SELECT min(pid) FROM events"), 91);
    CHECK_INT(q_int("SELECT count(*) FROM events WHERE detail = 'e100'"), 1);
    /* Policy rows and approvals count too; an aggregated refusal inserts nothing. */
    for (int i = 0; i < 50; i++)
        CHECK(store_policy_event(st, 5, 1, "/u/w", 3, "rule", "refused", "why") == 0);
    CHECK(store_approval_set(st, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                             "approved", 0, 1, "/u", 3, "ok") == 0);
    CHECK_INT(q_int("SELECT count(*) FROM events"), 10);
    CHECK_INT(q_int("SELECT count(*) FROM events WHERE kind = 'approve'"), 1);
    CHECK_INT(q_int("SELECT min(pid) FROM events WHERE kind = 'analyzed'"), 93);
    CHECK_INT(q_int("SELECT count FROM events WHERE kind = 'policy'"), 50);
    /* The cap is stored: a reopen keeps it; a larger cap keeps what is there. */
    store_close(st);
    st = open_at(dir, "cap.db", false);
    if (!st)
        return;
    CHECK_INT(store_events_max(st), 10);
    CHECK(store_set_events_max(st, 1000) == 0);
    for (int i = 0; i < 1500; i++)
        CHECK(store_event(st, 0, 1000 + i, "/y", 0, "analyzed", NULL) == 0);
    /* Trims run every max/64 inserts: at most that many rows over the cap. */
    int64_t n = q_int("SELECT count(*) FROM events");
    CHECK_MSG(n >= 1000 && n < 1000 + 1000 / 64, "%lld rows", (long long)n);
    CHECK_INT(q_int("SELECT max(pid) FROM events"), 2499);
    /* An admin lowers it with sqlite3 while unmounted: applied at the next open. */
    store_close(st);
    q_exec("UPDATE settings SET value = 5 WHERE key = 'events_max'");
    st = open_at(dir, "cap.db", false);
    if (!st)
        return;
    CHECK_INT(q_int("SELECT count(*) FROM events"), 5);
    CHECK_INT(q_int("SELECT min(pid) FROM events"), 2495);
    /* 0: no cap; a nonsense value reads as the default. */
    CHECK(store_set_events_max(st, 0) == 0);
    for (int i = 0; i < 20; i++)
        CHECK(store_event(st, 0, 1, "/z", 0, "analyzed", NULL) == 0);
    CHECK_INT(q_int("SELECT count(*) FROM events"), 25);
    CHECK(store_set_events_max(st, -1) != 0);
    store_close(st);
    q_exec("UPDATE settings SET value = 'lots' WHERE key = 'events_max'");
    st = open_at(dir, "cap.db", false);
    if (st)
        CHECK_INT(store_events_max(st), STORE_EVENTS_MAX_DEFAULT);
    store_close(st);
}

static void test_migration(const char *dir)
{
    /* A version-3 database: what provfs wrote before aggregation. */
    store_handle *st = open_at(dir, "v3.db", true);
    if (!st)
        return;
    store_close(st);
    q_exec("DROP INDEX events_policy; DROP INDEX files_sha; ALTER TABLE models DROP COLUMN origin_path;"
           " ALTER TABLE edges DROP COLUMN share; ALTER TABLE edges DROP COLUMN rev_signals;"
           " ALTER TABLE events DROP COLUMN count;"
           " ALTER TABLE events DROP COLUMN last_ns; DROP TABLE settings;"
           " ALTER TABLE models DROP COLUMN fpbin; ALTER TABLE model_paths DROP COLUMN file_ids;"
           " DROP TABLE file_inodes;"
           " INSERT INTO events (time_ns, uid, pid, path, model_id, kind, detail, rule, decision)"
           " VALUES (1700000000000000000, 1001, 9, '/old', 1, 'policy', 'r', 'rule', 'refused');"
           " PRAGMA user_version = 3;");
    st = open_at(dir, "v3.db", false);
    if (!st)
        return;
    CHECK_INT(q_int("PRAGMA user_version"), STORE_SCHEMA_VERSION);
    CHECK_INT(q_int("SELECT count FROM events WHERE path = '/old'"), 1);
    CHECK_INT(q_int("SELECT count(*) FROM events WHERE path = '/old' AND last_ns IS NULL"), 1);
    CHECK_INT(store_events_max(st), STORE_EVENTS_MAX_DEFAULT);
    CHECK(store_policy_event(st, 1001, 9, "/old", 1, "rule", "refused", "r") == 0);
    CHECK_INT(q_int("SELECT count(*) FROM events"), 2); /* the old row is from 2023 */
    store_close(st);
}

/* Output of a command (malloc'd), NULL when it failed. */
static char *run(const char *cmd)
{
    FILE *f = popen(cmd, "r");
    if (!f)
        return NULL;
    size_t len = 0, cap = 4096;
    char *out = malloc(cap);
    size_t got;
    while (out && (got = fread(out + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (len + 1 == cap) {
            cap *= 2;
            out = realloc(out, cap);
        }
    }
    int rc = pclose(f);
    if (!out || rc != 0) {
        free(out);
        return NULL;
    }
    out[len] = '\0';
    return out;
}

static void test_provctl_log(const char *dir)
{
    const char *provctl = getenv("PROVCTL");
    if (!provctl || access(provctl, X_OK) != 0) {
        fprintf(stderr, "test_events: no PROVCTL, provctl log not checked\n");
        return;
    }
    store_handle *st = open_at(dir, "log.db", true);
    if (!st)
        return;
    for (int i = 0; i < 3; i++)
        CHECK(store_policy_event(st, 1001, 42, "/u/model.safetensors", 3, "require_approval",
                                 "refused", "unknown lineage") == 0);
    CHECK(store_event(st, 0, 1, "/u", 3, "analyzed", "fine") == 0);
    store_close(st);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "'%s' log --db '%s' --kind policy", provctl, db_path);
    char *out = run(cmd);
    CHECK_MSG(out && strstr(out, "refused require_approval  uid=1001 pid=42") &&
                  strstr(out, "(3 times, last 20"),
              "%s", out ? out : "(failed)");
    free(out);
    snprintf(cmd, sizeof cmd, "'%s' log --db '%s' --json", provctl, db_path);
    out = run(cmd);
    CHECK_MSG(out && strstr(out, "\"count\":\t3") && strstr(out, "\"count\":\t1") &&
                  strstr(out, "\"last\":\tnull"),
              "%s", out ? out : "(failed)");
    free(out);
}

int main(void)
{
    char dir[] = "/tmp/provfs-test-events.XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_aggregate(dir);
    test_cap(dir);
    test_migration(dir);
    test_provctl_log(dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    return check_report("test_events");
}
