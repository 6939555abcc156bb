/* In-process tests of the store (fs/store*.c), fs/queue.c and fs/xattr.c (no FUSE, no analyzer
 * run). */
#include "check.h"
#include "provfs/analyzer.h"
#include "queue.h"
#include "store.h"
#include "vfile.h"
#include "xattr.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

static store_handle *open_fresh(char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
    store_handle *st = NULL;
    char err[256];
    CHECK_MSG(store_open(path, 0, &st, err, sizeof err) == 0, "%s", err);
    return st;
}

/* A fingerprint to store: the smallest that reads back (config only, no weights). */
static const uint8_t *tiny_fp(size_t *n)
{
    static uint8_t *bin;
    static size_t len;
    if (!bin) {
        const char *j = "{\"schema\":\"provfs.fingerprint/1\",\"mfi\":{\"model_type\":\"tiny\"}}";
        pa_fingerprint *fp = NULL;
        pa_error e = {0};
        CHECK(pa_fp_from_json(j, strlen(j), "tiny", &fp, &e) == PA_OK);
        CHECK(fp && pa_fp_to_bin(fp, &bin, &len, &e) == PA_OK);
        pa_fingerprint_free(fp);
    }
    *n = len;
    return bin;
}

static int64_t ready_model(store_handle *st, const char *path, const char *digest,
                           int64_t created, int64_t hidden)
{
    int64_t id = 0, final_id = 0;
    bool merged = false;
    CHECK(store_begin(st, path, created, 0, &id) == 0);
    store_file files[2] = {{.name = "config.json", .size = 10, .mtime_ns = 1},
                           {.name = "model.safetensors", .size = 100, .mtime_ns = 2}};
    snprintf(files[0].sha256, 65, "%064d", 1);
    snprintf(files[1].sha256, 65, "%064d", 2);
    store_result res = {.digest = digest, .format = "safetensors", .n_files = 2, .files = files};
    res.fingerprint = tiny_fp(&res.fingerprint_len);
    res.keys.hidden_size = hidden;
    res.keys.num_layers = 2;
    res.keys.vocab_size = 100;
    CHECK(store_finish_ready(st, path, id, &res, &final_id, &merged) == 0);
    return final_id;
}

static int count_cb(void *ctx, int64_t id, int64_t created_ns, const char *digest,
                    const void *bin, size_t len)
{
    (void)id, (void)created_ns, (void)digest;
    /* the candidate's stored fingerprint, as stored */
    size_t n = 0;
    const uint8_t *want = tiny_fp(&n);
    CHECK(bin && len == n && memcmp(bin, want, n) == 0);
    (*(int *)ctx)++;
    return 0;
}

static void test_store_lineage(char *dir)
{
    store_handle *st = open_fresh(dir, "lineage.db");
    if (!st)
        return;
    int64_t base = ready_model(st, "/base", "d-base", 100, 64);
    int64_t ft = ready_model(st, "/ft", "d-ft", 200, 64);
    int64_t q8 = ready_model(st, "/q8", "d-q8", 300, 64);
    int64_t other = ready_model(st, "/other", "d-other", 400, 128);
    CHECK(base && ft && q8 && other && base != ft);

    /* Prefilter: same hidden size or vocab → all but self; keys of a stranger → none. */
    store_keys keys = {.hidden_size = 64, .vocab_size = 100, .num_layers = 2};
    int n = 0;
    CHECK(store_candidates(st, &keys, ft, count_cb, &n) == 0);
    /* read back as JSON (gate, .provenance) and decoded (lineage work) */
    char *fpjson = NULL;
    CHECK(store_fingerprint(st, ft, &fpjson) == 0 && fpjson &&
          strstr(fpjson, "\"model_type\":\"tiny\"") != NULL);
    free(fpjson);
    pa_fingerprint *back = NULL;
    CHECK(store_fingerprint_fp(st, ft, &back) == 0 && back && pa_fp_mfi(back) &&
          strcmp(pa_fp_mfi(back)->model_type, "tiny") == 0);
    pa_fingerprint_free(back);
    CHECK_INT(n, 3);
    store_keys stranger = {.hidden_size = 5, .vocab_size = 5, .num_layers = 5};
    n = 0;
    CHECK(store_candidates(st, &stranger, ft, count_cb, &n) == 0);
    CHECK_INT(n, 0);

    /* Edges for q8: from base (rank higher) and ft. */
    store_edge e[2] = {{.parent_id = base, .child_id = q8, .score = 0.98, .verdict = "derived",
                        .rank = 0.99},
                       {.parent_id = ft, .child_id = q8, .score = 0.985, .verdict = "derived",
                        .rank = 0.985}};
    CHECK(store_set_edges(st, q8, e, 2) == 0);
    /* Linking ft replaces every edge touching ft, so it lists its edge to q8 again. */
    store_edge fe[2] = {{.parent_id = base, .child_id = ft, .score = 0.99, .verdict = "derived",
                         .rank = 0.99},
                        e[1]};
    CHECK(store_set_edges(st, ft, fe, 2) == 0);
    store_link parent = {0};
    CHECK(store_parent(st, q8, &parent) == 0);
    CHECK_INT(parent.id, base);
    CHECK_STR(parent.path, "/base");
    store_link_clear(&parent);
    CHECK(store_parent(st, base, &parent) == 1);

    store_link *links = NULL;
    size_t nl = 0;
    CHECK(store_children(st, base, &links, &nl) == 0);
    CHECK_INT(nl, 2);
    store_links_free(links, nl);
    CHECK(store_ancestors(st, q8, &links, &nl) == 0);
    CHECK_INT(nl, 1);
    store_links_free(links, nl);

    /* Same content at a second path: one model. */
    int64_t copy = ready_model(st, "/copy-of-ft", "d-ft", 500, 64);
    CHECK_INT(copy, ft);
    store_model m;
    CHECK(store_model_by_path(st, "/copy-of-ft", &m) == 0);
    CHECK_INT(m.id, ft);
    CHECK_STR(m.status, "ready");
    store_model_clear(&m);

    /* Rename a directory tree. */
    CHECK(store_rename(st, "/base", "/bases/tiny") == 0);
    CHECK(store_model_by_path(st, "/base", &m) == 1);
    CHECK(store_model_by_path(st, "/bases/tiny", &m) == 0);
    CHECK_INT(m.id, base);
    store_model_clear(&m);
    char sha[65];
    CHECK(store_file_sha(st, base, "model.safetensors", sha) == 0);
    CHECK(store_file_sha(st, base, "nope", sha) == 1);

    /* Deleting the parent relinks its child to the next best parent. */
    CHECK(store_remove_path(st, "/bases", true) == 0);
    CHECK(store_model_by_id(st, base, &m) == 1);
    if (store_parent(st, q8, &parent) == 0) {
        CHECK_INT(parent.id, ft);
        store_link_clear(&parent);
    } else {
        CHECK(!"q8 has no parent after its best parent was deleted");
    }

    /* A failed analysis clears digest, files and edges. */
    int64_t id = 0;
    CHECK(store_begin(st, "/q8", 300, 0, &id) == 0);
    CHECK_INT(id, q8);
    CHECK(store_finish_error(st, q8, "failed", "/q8/model.safetensors: bad header") == 0);
    CHECK(store_model_by_path(st, "/q8", &m) == 0);
    CHECK_STR(m.status, "failed");
    CHECK(m.error && strstr(m.error, "bad header"));
    store_model_clear(&m);
    CHECK(store_parent(st, q8, &parent) == 1);

    /* A shared model re-analysed at one path detaches that path. */
    CHECK(store_begin(st, "/copy-of-ft", 600, 0, &id) == 0);
    CHECK(id != ft);
    CHECK(store_model_by_path(st, "/ft", &m) == 0);
    CHECK_STR(m.status, "ready");
    store_model_clear(&m);

    store_counts c;
    CHECK(store_counts_get(st, &c) == 0);
    CHECK_INT(c.failed, 1);
    CHECK_INT(c.analyzing, 1);

    /* xattrs from the store. */
    char buf[256];
    int len = xattr_get(st, NULL, NULL, "/ft", NULL, "user.provenance.status", buf, sizeof buf);
    CHECK_INT(len, 5);
    CHECK(len == 5 && memcmp(buf, "ready", 5) == 0);
    len = xattr_get(st, NULL, NULL, "/ft", NULL, "user.provenance.verdict", buf, sizeof buf);
    CHECK(len == 4 && memcmp(buf, "none", 4) == 0);
    CHECK_INT(xattr_get(st, NULL, NULL, "/ft", NULL, "user.provenance.parent", buf, sizeof buf),
              -ENODATA);
    CHECK_INT(xattr_get(st, NULL, NULL, "/ft", NULL, "user.provenance.status", buf, 2), -ERANGE);
    CHECK_INT(xattr_get(st, NULL, NULL, "/nothing", NULL, "user.provenance.status", buf, sizeof buf),
              -ENODATA);
    len = xattr_get(st, NULL, NULL, "/q8", NULL, "user.provenance.error", buf, sizeof buf);
    CHECK(len > 0);
    len = xattr_get(st, NULL, NULL, "/ft", "model.safetensors", "user.provenance.sha256", buf,
                    sizeof buf);
    CHECK_INT(len, 64);
    CHECK(xattr_list(st, NULL, NULL, "/ft", NULL, NULL, 0) > 0);

    size_t jlen = 0;
    char *json = vfile_render(st, NULL, NULL, "/ft", &jlen);
    CHECK(json && strstr(json, "provfs.provenance/1") && strstr(json, "\"lineage\""));
    free(json);
    json = vfile_render(st, NULL, NULL, "/", &jlen);
    CHECK(json && strstr(json, "provfs.store/1"));
    free(json);

    store_close(st);

    /* Reopen: the schema is there once, the data survived, integrity holds. */
    char path[512];
    snprintf(path, sizeof path, "%s/lineage.db", dir);
    char err[256];
    CHECK(store_open(path, 0, &st, err, sizeof err) == 0);
    CHECK(store_model_by_path(st, "/ft", &m) == 0);
    store_model_clear(&m);
    store_close(st);
    CHECK(store_open(path, STORE_READONLY, &st, err, sizeof err) == 0);
    CHECK(store_begin(st, "/x", 1, 0, &id) != 0);
    store_close(st);
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    sqlite3_stmt *stmt = NULL;
    CHECK(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(stmt) == SQLITE_ROW);
    CHECK_STR((const char *)sqlite3_column_text(stmt, 0), "ok");
    sqlite3_finalize(stmt);
    CHECK(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(stmt) == SQLITE_ROW);
    CHECK_INT(sqlite3_column_int(stmt, 0), STORE_SCHEMA_VERSION);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
}

/* Several parents: store_set_parents turns a stored edge, keeps one main parent, lists every
 * parent by share; the parents xattr names them; a version-6 database keeps its parent edge. */
static void test_store_parents(char *dir)
{
    store_handle *st = open_fresh(dir, "parents.db");
    if (!st)
        return;
    int64_t a = ready_model(st, "/a", "d-a", 100, 64);
    int64_t b = ready_model(st, "/b", "d-b", 300, 64);
    int64_t x = ready_model(st, "/x", "d-x", 200, 64); /* stored before b */
    store_edge e[2] = {{.parent_id = a, .child_id = x, .score = 0.7, .verdict = "derived",
                        .rank = 0.7, .signals = "{\"explained_share\":0.6}"},
                       {.parent_id = x, .child_id = b, .score = 0.6, .verdict = "derived",
                        .rank = 0.6, .signals = "{\"explained_share\":0.5}",
                        .signals_rev = "{\"explained_share\":0.4}"}};
    CHECK(store_set_edges(st, x, e, 2) == 0);
    store_link *links = NULL;
    size_t n = 0;
    CHECK(store_parents(st, x, &links, &n) == 0);
    CHECK_INT(n, 1); /* a, with its coverage as share */
    if (n == 1)
        CHECK(links[0].is_parent && links[0].id == a && links[0].share > 0.59 &&
              links[0].share < 0.61);
    store_links_free(links, n);
    /* b is x's second parent: the stored x -> b edge is turned round */
    int64_t children[3] = {a, b, x};
    store_parent_set set[2] = {
        {.parent_id = a, .child_id = x, .score = 0.7, .rank = 0.7, .share = 0.6,
         .verdict = "derived", .signals = "{\"explained_share\":0.6}", .is_main = true},
        {.parent_id = b, .child_id = x, .score = 0.65, .rank = 0.65, .share = 0.4,
         .verdict = "derived", .signals = "{\"explained_share\":0.4}",
         .rev_signals = "{\"explained_share\":0.5}"}};
    CHECK(store_set_parents(st, children, 3, set, 2) == 0);
    CHECK(store_parents(st, x, &links, &n) == 0);
    CHECK_INT(n, 2);
    if (n == 2) {
        CHECK(links[0].id == a && links[0].is_parent);
        CHECK(links[1].id == b && !links[1].is_parent && links[1].share > 0.39);
        CHECK_STR(links[1].path, "/b");
    }
    store_links_free(links, n);
    CHECK(store_parents(st, b, &links, &n) == 0);
    CHECK_INT(n, 0); /* the edge runs b -> x now */
    store_links_free(links, n);
    store_link p;
    CHECK(store_parent(st, x, &p) == 0);
    CHECK_INT(p.id, a);
    store_link_clear(&p);
    char buf[256];
    int len = xattr_get(st, NULL, NULL, "/x", NULL, "user.provenance.parents", buf, sizeof buf);
    CHECK(len == 5 && memcmp(buf, "/a\n/b", 5) == 0);
    CHECK_INT(xattr_get(st, NULL, NULL, "/a", NULL, "user.provenance.parents", buf, sizeof buf),
              -ENODATA);
    char names[512];
    len = xattr_list(st, NULL, NULL, "/x", NULL, names, sizeof names);
    bool listed = false;
    for (int i = 0; i < len; i += (int)strlen(names + i) + 1)
        listed |= strcmp(names + i, "user.provenance.parents") == 0;
    CHECK(listed);
    size_t jlen = 0;
    char *json = vfile_render(st, NULL, NULL, "/x", &jlen);
    CHECK_MSG(json && strstr(json, "\"parents\"") && strstr(json, "\"share\":\t0.4"), "%s", json ? json : "");
    free(json);
    /* the main parent's removal gives the child its best-ranked remaining edge */
    CHECK(store_remove_path(st, "/a", false) == 0);
    CHECK(store_parent(st, x, &p) == 0);
    CHECK_INT(p.id, b);
    store_link_clear(&p);
    store_close(st);

    /* A version-6 database: its parent edge stays the only parent, share = its coverage. */
    st = open_fresh(dir, "v6.db");
    if (!st)
        return;
    a = ready_model(st, "/a", "d-a", 100, 64);
    x = ready_model(st, "/x", "d-x", 200, 64);
    store_edge e6 = {.parent_id = a, .child_id = x, .score = 0.9, .verdict = "derived",
                     .rank = 0.9, .signals = "{\"explained_share\":0.95}"};
    CHECK(store_set_edges(st, x, &e6, 1) == 0);
    store_close(st);
    char path[512];
    snprintf(path, sizeof path, "%s/v6.db", dir);
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "ALTER TABLE edges DROP COLUMN share;"
                           " ALTER TABLE edges DROP COLUMN rev_signals;"
                           " ALTER TABLE models DROP COLUMN fpbin;"
                           " ALTER TABLE model_paths DROP COLUMN file_ids; DROP TABLE file_inodes;"
                           " PRAGMA user_version = 6;",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    char err[256];
    CHECK_MSG(store_open(path, 0, &st, err, sizeof err) == 0, "%s", err);
    CHECK(store_parents(st, x, &links, &n) == 0);
    CHECK_INT(n, 1);
    if (n == 1)
        CHECK(links[0].id == a && links[0].is_parent && links[0].share > 0.94 &&
              links[0].share < 0.96);
    store_links_free(links, n);
    store_close(st);
}

/* ---------------------------------------------------------------- queue */

typedef struct qtest {
    queue *q;
    atomic_int runs;
    atomic_int stale;
    atomic_int slow;
} qtest;

/* Adapters' declared bases: kept per model, listed least recently tried first with their
 * adapter parent, gone with new content or with the model. */
typedef struct adapter_seen {
    int64_t id[8], parent[8];
    char declared[8][32];
    int n, stop_after;
} adapter_seen;

static int adapter_cb(void *ctx, int64_t id, const char *declared, int64_t parent)
{
    adapter_seen *a = ctx;
    if (a->n < 8) {
        a->id[a->n] = id;
        a->parent[a->n] = parent;
        snprintf(a->declared[a->n], sizeof a->declared[a->n], "%s", declared);
    }
    a->n++;
    return a->stop_after && a->n >= a->stop_after;
}

static void test_store_adapters(char *dir)
{
    store_handle *st = open_fresh(dir, "adapters.db");
    if (!st)
        return;
    int64_t base = ready_model(st, "/base", "d-base", 100, 64);
    int64_t a1 = ready_model(st, "/ad/one", "d-a1", 200, 64);
    int64_t a2 = ready_model(st, "/ad/two", "d-a2", 300, 64);
    CHECK(store_set_adapter_base(st, a1, "bases/base") == 0);
    CHECK(store_set_adapter_base(st, a2, "other") == 0);
    CHECK(store_set_adapter_base(st, a2, "base") == 0); /* replaced */
    adapter_seen s = {0};
    CHECK(store_each_adapter(st, adapter_cb, &s) == 0);
    CHECK_INT(s.n, 2);
    CHECK(s.id[0] == a1 && s.id[1] == a2 && s.parent[0] == 0 && s.parent[1] == 0);
    CHECK_STR(s.declared[1], "base");
    /* tried now: last in line */
    CHECK(store_adapter_tried(st, a1) == 0);
    memset(&s, 0, sizeof s);
    CHECK(store_each_adapter(st, adapter_cb, &s) == 0);
    CHECK(s.n == 2 && s.id[0] == a2 && s.id[1] == a1);
    /* the callback stops the walk */
    memset(&s, 0, sizeof s);
    s.stop_after = 1;
    CHECK(store_each_adapter(st, adapter_cb, &s) == 0);
    CHECK_INT(s.n, 1);
    /* an adapter edge is reported as its parent, and dropping it leaves no parent */
    store_edge e = {.parent_id = base, .child_id = a2, .score = 1.0, .verdict = "adapter",
                    .rank = 1.0};
    CHECK(store_set_edges(st, a2, &e, 1) == 0);
    memset(&s, 0, sizeof s);
    CHECK(store_each_adapter(st, adapter_cb, &s) == 0);
    CHECK(s.n == 2 && s.id[0] == a2 && s.parent[0] == base);
    store_link pl;
    CHECK(store_parent(st, a2, &pl) == 0);
    store_link_clear(&pl);
    CHECK(store_drop_adapter_parent(st, a2) == 0);
    CHECK(store_parent(st, a2, &pl) == 1);
    /* NULL removes a declaration; new content at a path clears its model's */
    CHECK(store_set_adapter_base(st, a1, NULL) == 0);
    memset(&s, 0, sizeof s);
    CHECK(store_each_adapter(st, adapter_cb, &s) == 0);
    CHECK(s.n == 1 && s.id[0] == a2);
    int64_t id = 0, final_id = 0;
    bool merged = false;
    CHECK(store_begin(st, "/ad/two", 400, 0, &id) == 0);
    store_result res = {.digest = "d-a2-new", .format = "safetensors"};
    res.fingerprint = tiny_fp(&res.fingerprint_len);
    res.keys.hidden_size = res.keys.num_layers = res.keys.vocab_size = INT64_MIN;
    CHECK(store_finish_ready(st, "/ad/two", id, &res, &final_id, &merged) == 0);
    memset(&s, 0, sizeof s);
    CHECK(store_each_adapter(st, adapter_cb, &s) == 0);
    CHECK_INT(s.n, 0);
    /* and the row goes with its model */
    CHECK(store_set_adapter_base(st, final_id, "base") == 0);
    CHECK(store_remove_path(st, "/ad/two", false) == 0);
    memset(&s, 0, sizeof s);
    CHECK(store_each_adapter(st, adapter_cb, &s) == 0);
    CHECK_INT(s.n, 0);
    /* a query repeated many times through its kept statement gives the same row */
    for (int i = 0; i < 1000; i++) {
        store_model m;
        if (store_model_by_path(st, "/base", &m) != 0 || m.id != base) {
            CHECK_MSG(0, "lookup %d of /base", i);
            break;
        }
        store_model_clear(&m);
    }
    store_close(st);
}

static void qjob(void *ctx, const queue_job *job)
{
    qtest *t = ctx;
    atomic_fetch_add(&t->runs, 1);
    if (atomic_load(&t->slow))
        for (int i = 0; i < 100 && !*job->cancel; i++)
            usleep(2000);
    if (!queue_current(t->q, job->path, job->gen))
        atomic_fetch_add(&t->stale, 1);
}

static void test_queue(void)
{
    qtest t = {0};
    t.q = queue_create(2, 50, qjob, &t);
    CHECK(t.q != NULL);
    if (!t.q)
        return;
    /* Many marks within the quiet period coalesce into one run. */
    for (int i = 0; i < 20; i++)
        queue_mark(t.q, "/a", 0, 0);
    CHECK_INT(queue_get_state(t.q, "/a"), QUEUE_PENDING);
    CHECK(queue_wait_idle(t.q, 5000));
    CHECK_INT(atomic_load(&t.runs), 1);
    CHECK_INT(queue_get_state(t.q, "/a"), QUEUE_NONE);

    /* A mark during a run cancels it, the result is stale, and the unit runs again. */
    atomic_store(&t.slow, 1);
    queue_mark(t.q, "/b", 0, 0);
    for (int i = 0; i < 200 && queue_get_state(t.q, "/b") != QUEUE_ANALYZING; i++)
        usleep(5000);
    CHECK_INT(queue_get_state(t.q, "/b"), QUEUE_ANALYZING);
    queue_mark(t.q, "/b", 0, 0);
    CHECK(queue_wait_idle(t.q, 5000));
    CHECK_INT(atomic_load(&t.runs), 3);
    CHECK_INT(atomic_load(&t.stale), 1);

    /* Rename and forget. */
    atomic_store(&t.slow, 0);
    queue_mark(t.q, "/dir/m", 0, 0);
    queue_rename(t.q, "/dir", "/dir2", true);
    CHECK_INT(queue_get_state(t.q, "/dir/m"), QUEUE_NONE);
    CHECK_INT(queue_get_state(t.q, "/dir2/m"), QUEUE_PENDING);
    /* one name forgets that name only, with its known hash; a directory, all below it */
    queue_mark(t.q, "/dir2/g.gguf", 0, 0);
    char sha[65];
    memset(sha, 'a', 64);
    sha[64] = '\0';
    const queue_file_id id = {.size = 5, .ino = 42, .mtime_ns = 7, .ctime_ns = 9};
    queue_known_put(t.q, "/dir2/g.gguf", &id, sha, queue_known_clock(t.q));
    queue_known_put(t.q, "/dir2/other", &id, sha, queue_known_clock(t.q));
    /* a file's rename moves its hash and entry, and replaces the target's */
    queue_known_put(t.q, "/dir2/.g.gguf.tmp", &id, sha, queue_known_clock(t.q));
    queue_rename(t.q, "/dir2/.g.gguf.tmp", "/dir2/g.gguf", false);
    char moved[65];
    CHECK(queue_known_get(t.q, "/dir2/g.gguf", &id, moved));
    CHECK(!queue_known_get(t.q, "/dir2/.g.gguf.tmp", &id, moved));
    CHECK(queue_known_get(t.q, "/dir2/other", &id, moved));
    /* a hash holds for that file only: another inode, size or mtime is not it; a ctime that
     * moved counts only when strict */
    queue_file_id other = id;
    other.ino = 43;
    CHECK(!queue_known_get(t.q, "/dir2/other", &other, moved));
    other = id;
    other.mtime_ns = 8;
    CHECK(!queue_known_get(t.q, "/dir2/other", &other, moved));
    other = id;
    other.ctime_ns = 10;
    CHECK(queue_known_get(t.q, "/dir2/other", &other, moved));
    queue_known_set_strict(t.q, true);
    CHECK(!queue_known_get(t.q, "/dir2/other", &other, moved));
    CHECK(queue_known_get(t.q, "/dir2/other", &id, moved));
    queue_known_set_strict(t.q, false);
    /* a write open of the inode voids every hash kept for it, by whatever name; a later hash
     * holds again */
    const queue_file_id third = {.size = 5, .ino = 44};
    queue_known_put(t.q, "/dir2/third", &third, sha, queue_known_clock(t.q));
    /* a clock the writer took before another write open: the hash it puts does not hold */
    const queue_file_id late = {.size = 5, .ino = 45};
    uint64_t early = queue_known_clock(t.q);
    queue_known_written(t.q, 45);
    queue_known_put(t.q, "/dir2/late", &late, sha, early);
    CHECK(!queue_known_get(t.q, "/dir2/late", &late, moved));
    queue_known_written(t.q, 42);
    CHECK(!queue_known_get(t.q, "/dir2/other", &id, moved));
    CHECK(!queue_known_get(t.q, "/dir2/g.gguf", &id, moved));
    CHECK(queue_known_get(t.q, "/dir2/third", &third, moved));
    queue_known_put(t.q, "/dir2/g.gguf", &id, sha, queue_known_clock(t.q));
    queue_known_put(t.q, "/dir2/other", &id, sha, queue_known_clock(t.q));
    CHECK(queue_known_get(t.q, "/dir2/other", &id, moved));
    queue_forget(t.q, "/dir2/g.gguf", false);
    char got[65];
    CHECK_INT(queue_get_state(t.q, "/dir2/g.gguf"), QUEUE_NONE);
    CHECK(!queue_known_get(t.q, "/dir2/g.gguf", &id, got));
    CHECK(queue_known_get(t.q, "/dir2/other", &id, got));
    queue_forget(t.q, "/dir2", true);
    CHECK_INT(queue_get_state(t.q, "/dir2/m"), QUEUE_NONE);
    CHECK(!queue_known_get(t.q, "/dir2/other", &id, got));
    CHECK(queue_wait_idle(t.q, 5000));
    queue_destroy(t.q);
}

/* The path filter (STORE_PATH_FILTER) never says "no" for a stored path: paths stored, renamed
 * and loaded at the next open all pass; paths never stored mostly do not. */
static void test_path_filter(char *dir)
{
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/filter.db", dir);
    unlink(path);
    store_handle *st = NULL;
    CHECK_MSG(store_open(path, STORE_PATH_FILTER, &st, err, sizeof err) == 0, "%s", err);
    char name[64];
    int nos = 0;
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "/never/%d", i);
        nos += !store_path_maybe(st, name);
    }
    CHECK_MSG(nos >= 990, "an empty store's filter said 'maybe' to %d of 1000 paths", 1000 - nos);
    ready_model(st, "/a", "digest-a", 1, 64);
    ready_model(st, "/b/c", "digest-c", 2, 64);
    CHECK(store_path_maybe(st, "/a"));
    CHECK(store_path_maybe(st, "/b/c"));
    CHECK(store_rename(st, "/b", "/d") == 0);
    CHECK(store_path_maybe(st, "/d/c"));
    store_close(st);
    /* loaded from the table at the next open; a removed path may stay "maybe", never the reverse */
    CHECK_MSG(store_open(path, STORE_PATH_FILTER, &st, err, sizeof err) == 0, "%s", err);
    CHECK(store_path_maybe(st, "/a"));
    CHECK(store_path_maybe(st, "/d/c"));
    store_model m;
    CHECK(store_model_by_path(st, "/d/c", &m) == 0);
    store_model_clear(&m);
    nos = 0;
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "/never/%d", i);
        nos += !store_path_maybe(st, name);
    }
    CHECK_MSG(nos >= 990, "the loaded filter said 'maybe' to %d of 1000 paths", 1000 - nos);
    store_close(st);
    /* without the flag every path may be stored */
    CHECK_MSG(store_open(path, 0, &st, err, sizeof err) == 0, "%s", err);
    CHECK(store_path_maybe(st, "/never/1"));
    store_close(st);
}

/* Identities of a unit's files (store_ids.c): kept per path (two paths of one content have
 * their own), names of any bytes, moved by a rename, followed only from the exact identity,
 * none for a failed unit, unknown for a row of an older version. */
static void test_file_ids(char *dir)
{
    fprintf(stderr, "-- file identities\n");
    store_handle *st = open_fresh(dir, "ids.db");
    if (!st)
        return;
    char odd[] = "we ird%\n\x01\xff.bin";
    store_file files[2] = {
        {.name = odd, .size = 10, .mtime_ns = 1, .ctime_ns = 2, .ino = 3},
        {.name = "model.safetensors", .size = 100, .mtime_ns = 4, .ctime_ns = 5, .ino = 6}};
    snprintf(files[0].sha256, 65, "%064d", 1);
    snprintf(files[1].sha256, 65, "%064d", 2);
    store_result res = {.digest = "d-ids", .format = "safetensors", .n_files = 2, .files = files};
    res.fingerprint = tiny_fp(&res.fingerprint_len);
    res.keys.hidden_size = res.keys.num_layers = res.keys.vocab_size = INT64_MIN;
    int64_t id = 0, final_id = 0;
    bool merged = false;
    CHECK(store_begin(st, "/u", 1, 0, &id) == 0);
    CHECK(store_finish_ready(st, "/u", id, &res, &final_id, &merged) == 0);
    /* the same content at a second path, read from other inodes */
    files[0].ino = 13;
    files[1].ino = 16;
    CHECK(store_begin(st, "/copy", 2, 0, &id) == 0);
    CHECK(store_finish_ready(st, "/copy", id, &res, &final_id, &merged) == 0);
    CHECK(merged);
    store_file got = {0};
    CHECK_INT(store_file_id(st, "/u", odd, &got), 0);
    CHECK(got.ino == 3 && got.size == 10 && got.mtime_ns == 1 && got.ctime_ns == 2);
    CHECK_INT(store_file_id(st, "/u", "model.safetensors", &got), 0);
    CHECK(got.ino == 6 && got.size == 100 && got.mtime_ns == 4 && got.ctime_ns == 5);
    CHECK_INT(store_file_id(st, "/copy", "model.safetensors", &got), 0);
    CHECK(got.ino == 16);
    CHECK_INT(store_file_id(st, "/u", "we ird%", &got), 1);
    /* by inode: the units that read it, and its name there */
    char **paths = NULL;
    size_t np = 0;
    char nm[64];
    CHECK(store_units_of_inode(st, 6, &paths, &np) == 0);
    CHECK(np == 1 && strcmp(paths[0], "/u") == 0);
    store_paths_free(paths, np);
    CHECK_INT(store_file_id_ino(st, "/u", 3, &got, nm, sizeof nm), 0);
    CHECK(got.size == 10 && strcmp(nm, odd) == 0);
    CHECK_INT(store_file_id_ino(st, "/u", 16, &got, nm, sizeof nm), 1);
    CHECK_INT(store_file_id_ino(st, "/copy", 16, &got, nm, sizeof nm), 0);
    CHECK(strcmp(nm, "model.safetensors") == 0);
    CHECK_INT(store_file_id(st, "/u", "config.json", &got), 1);
    /* a follow from anything but the recorded identity changes nothing */
    store_file was = {.ino = 6, .size = 100, .mtime_ns = 4, .ctime_ns = 99};
    CHECK(store_file_follow(st, "/u", "model.safetensors", &was, 7, 8) == 0);
    CHECK_INT(store_file_id(st, "/u", "model.safetensors", &got), 0);
    CHECK(got.mtime_ns == 4 && got.ctime_ns == 5);
    was.ctime_ns = 5;
    CHECK(store_file_follow(st, "/u", "model.safetensors", &was, 7, 8) == 0);
    CHECK_INT(store_file_id(st, "/u", "model.safetensors", &got), 0);
    CHECK(got.ino == 6 && got.size == 100 && got.mtime_ns == 7 && got.ctime_ns == 8);
    CHECK_INT(store_file_id(st, "/u", odd, &got), 0);
    CHECK(got.ino == 3 && got.ctime_ns == 2);
    CHECK_INT(store_file_id(st, "/copy", "model.safetensors", &got), 0);
    CHECK(got.mtime_ns == 4 && got.ctime_ns == 5);
    /* a rename moves them */
    CHECK(store_rename(st, "/u", "/v") == 0);
    CHECK_INT(store_file_id(st, "/v", "model.safetensors", &got), 0);
    CHECK(got.ctime_ns == 8);
    CHECK_INT(store_file_id(st, "/u", "model.safetensors", &got), 2);
    CHECK(store_units_of_inode(st, 6, &paths, &np) == 0);
    CHECK(np == 1 && strcmp(paths[0], "/v") == 0);
    store_paths_free(paths, np);
    /* a failed analysis records none */
    CHECK(store_begin(st, "/v", 3, 0, &id) == 0);
    CHECK(store_finish_error(st, id, "failed", "bad") == 0);
    CHECK_INT(store_file_id(st, "/v", "model.safetensors", &got), 1);
    CHECK(store_units_of_inode(st, 6, &paths, &np) == 0);
    CHECK_INT(np, 0);
    store_paths_free(paths, np);
    /* ... unless its files were read for its digest: then those */
    store_file read_for_digest = {.name = "model.safetensors", .ino = 6, .size = 100,
                                  .mtime_ns = 9, .ctime_ns = 9};
    CHECK(store_ids_record(st, "/v", &read_for_digest, 1) == 0);
    CHECK_INT(store_file_id(st, "/v", "model.safetensors", &got), 0);
    CHECK(got.mtime_ns == 9);
    CHECK(store_units_of_inode(st, 6, &paths, &np) == 0);
    CHECK_INT(np, 1);
    store_paths_free(paths, np);
    /* a removed path takes its rows along */
    CHECK(store_remove_path(st, "/copy", false) == 0);
    CHECK(store_units_of_inode(st, 16, &paths, &np) == 0);
    CHECK_INT(np, 0);
    store_paths_free(paths, np);
    store_close(st);
    /* a row of an older version: unknown */
    char path[512];
    snprintf(path, sizeof path, "%s/ids.db", dir);
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "UPDATE model_paths SET file_ids = NULL WHERE path = '/v'", NULL,
                       NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    char err[256];
    st = NULL;
    CHECK_MSG(store_open(path, 0, &st, err, sizeof err) == 0, "%s", err);
    CHECK(st && store_file_id(st, "/v", "model.safetensors", &got) == 2);
    CHECK(st && store_file_id_ino(st, "/v", 6, &got, nm, sizeof nm) == 1);
    store_close(st);
}

int main(void)
{
    char dir[] = "/tmp/provfs-test-store.XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_store_lineage(dir);
    test_store_parents(dir);
    test_store_adapters(dir);
    test_path_filter(dir);
    test_file_ids(dir);
    test_queue();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    return check_report("test_store");
}
