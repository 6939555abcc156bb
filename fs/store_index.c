/* The lineage store: the candidate index (LSH bands, tensor hashes) and candidate retrieval. */
#include "store_int.h"

#include <stdio.h>
#include <stdlib.h>

/* Replaces model_id's rows of the candidate index with sig's keys (none when sig is NULL). */
int lsh_put(store_handle *st, int64_t model_id, const pa_lsh_sig *sig)
{
    int ret = wr_exec_id(st, "DELETE FROM lsh_bands WHERE model_id = ?1", model_id);
    if (ret == 0)
        ret = wr_exec_id(st, "DELETE FROM tensor_hashes WHERE model_id = ?1", model_id);
    if (ret != 0 || !sig)
        return ret;
    db_stmt *b = prep(st, st->wr,
                           "INSERT INTO lsh_bands (band_no, band_value, model_id)"
                           " VALUES (?1, ?2, ?3)");
    db_stmt *h =
        prep(st, st->wr, "INSERT INTO tensor_hashes (hash, model_id) VALUES (?1, ?2)");
    ret = b && h ? 0 : -1;
    for (size_t i = 0; ret == 0 && i < sig->n_bands; i++) {
        db_bind_int64(b, 1, sig->bands[i].no);
        db_bind_int64(b, 2, sig->bands[i].value);
        db_bind_int64(b, 3, model_id);
        ret = db_step(b) == DB_DONE ? 0 : -1;
        db_reset(b);
    }
    for (size_t i = 0; ret == 0 && i < sig->n_hashes; i++) {
        db_bind_int64(h, 1, sig->hashes[i]);
        db_bind_int64(h, 2, model_id);
        ret = db_step(h) == DB_DONE ? 0 : -1;
        db_reset(h);
    }
    if (ret != 0)
        store_log(st->wr, "insert index keys");
    done(st, b);
    done(st, h);
    return ret;
}

/* Stores of schema 12 and before hold fingerprints as JSON (column fingerprint): each becomes the
 * compact binary form (column fpbin) when a daemon opens the store, in one transaction. Rows are
 * listed and converted inside it, and a row is written only while its JSON is still there, so
 * daemons opening one PostgreSQL database at once convert each row once and never undo each
 * other. A JSON that does not read stays as it is (logged; its model is compared with nothing,
 * as before); running out of memory fails the open. */
int fp_upgrade(store_handle *st, char *err, size_t errlen)
{
    int64_t *ids = NULL;
    size_t n = 0, cap = 0, done_n = 0, bad = 0;
    db_stmt *q = prep(st, st->wr, "SELECT count(*) FROM models WHERE fingerprint IS NOT NULL");
    int64_t waiting = q && db_step(q) == DB_ROW ? db_col_int64(q, 0) : -1;
    done(st, q);
    if (waiting == 0)
        return 0;
    if (waiting < 0 || tx_begin(st) != 0)
        goto fail;
    q = prep(st, st->wr, "SELECT id FROM models WHERE fingerprint IS NOT NULL");
    int rc = q ? DB_ROW : DB_ERROR, ret = 0;
    while (rc == DB_ROW && (rc = db_step(q)) == DB_ROW) {
        if (n == cap) {
            size_t c = cap ? cap * 2 : 256;
            int64_t *g = realloc(ids, c * sizeof *g);
            if (!g) {
                rc = DB_ERROR;
                break;
            }
            ids = g;
            cap = c;
        }
        ids[n++] = db_col_int64(q, 0);
    }
    done(st, q);
    if (rc != DB_DONE)
        ret = -1;
    db_stmt *sel = ret == 0 ? prep(st, st->wr, "SELECT fingerprint FROM models WHERE id = ?1") : NULL;
    db_stmt *upd = ret == 0 ? prep(st, st->wr,
                                   "UPDATE models SET fpbin = ?2, fingerprint = NULL"
                                   " WHERE id = ?1 AND fingerprint IS NOT NULL")
                            : NULL;
    if (!sel || !upd)
        ret = -1;
    for (size_t i = 0; ret == 0 && i < n; i++) {
        db_bind_int64(sel, 1, ids[i]);
        pa_fingerprint *fp = NULL;
        uint8_t *bin = NULL;
        size_t len = 0;
        pa_error e = {0};
        rc = db_step(sel);
        const char *json = rc == DB_ROW ? db_col_text(sel, 0) : NULL;
        if (rc == DB_ERROR)
            ret = -1;
        else if (json && pa_fp_from_json(json, db_col_bytes(sel, 0), "stored fingerprint", &fp,
                                         &e) == PA_OK)
            pa_fp_to_bin(fp, &bin, &len, &e);
        db_reset(sel);
        if (e.status == PA_E_NOMEM) {
            ret = -1;
        } else if (ret == 0 && json && !bin) {
            bad++;
            fprintf(stderr, "provfs: store: model %llx: %s (kept as JSON)\n",
                    (unsigned long long)ids[i], e.msg[0] ? e.msg : "stored fingerprint unreadable");
        } else if (ret == 0 && bin) { /* else gone, or converted by another daemon meanwhile */
            db_bind_int64(upd, 1, ids[i]);
            db_bind_blob(upd, 2, bin, len);
            if (db_step(upd) != DB_DONE)
                ret = -1;
            db_reset(upd);
            done_n++;
        }
        free(bin);
        pa_fingerprint_free(fp);
    }
    if (ret != 0)
        store_log(st->wr, "convert fingerprints");
    done(st, sel);
    done(st, upd);
    free(ids);
    if (tx_end(st, ret) != 0 || ret != 0)
        goto fail;
    fprintf(stderr,
            "provfs: store: %zu stored fingerprint(s) converted to the compact form, %zu unreadable\n",
            done_n, bad);
    return 0;
fail:
    snprintf(err, errlen, "converting stored fingerprints: %s",
             db_errmsg(st->wr)[0] ? db_errmsg(st->wr) : "out of memory");
    return -1;
}

/* Indexes every stored fingerprint again when the index was made by another signature version
 * (or by none: a store from before the index). */
int lsh_backfill(store_handle *st, char *err, size_t errlen)
{
    int64_t version = -1;
    db_stmt *stmt = prep(st, st->wr, "SELECT value FROM settings WHERE key = 'lsh_version'");
    if (stmt && db_step(stmt) == DB_ROW)
        version = db_col_int64(stmt, 0);
    done(st, stmt);
    if (version == PA_LSH_VERSION)
        return 0;
    if (tx_begin(st) != 0)
        goto fail;
    int ret = exec_sql(st->wr, "DELETE FROM lsh_bands; DELETE FROM tensor_hashes;");
    stmt = ret == 0 ? prep(st, st->wr,
                           "SELECT id, fpbin FROM models"
                           " WHERE status = 'ready' AND fpbin IS NOT NULL")
                    : NULL;
    if (!stmt)
        ret = -1;
    size_t n = 0;
    int rc = DB_DONE;
    while (ret == 0 && (rc = db_step(stmt)) == DB_ROW) {
        int64_t id = db_col_int64(stmt, 0);
        size_t len = 0;
        const void *bin = db_col_blob(stmt, 1, &len);
        pa_fingerprint *fp = NULL;
        pa_error e = {0};
        pa_lsh_sig sig = {0};
        if (bin && pa_fp_from_bin(bin, len, "stored fingerprint", &fp, &e) == PA_OK &&
            pa_lsh_signature(fp, &sig) == 0) {
            ret = lsh_put(st, id, &sig);
            n++;
        }
        pa_lsh_sig_free(&sig);
        pa_fingerprint_free(fp);
    }
    if (ret == 0 && rc != DB_DONE)
        ret = -1;
    done(st, stmt);
    if (ret == 0) {
        char sql[160];
        snprintf(sql, sizeof sql,
                 "INSERT INTO settings (key, value) VALUES ('lsh_version', %d)"
                 " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                 PA_LSH_VERSION);
        ret = exec_sql(st->wr, sql);
    }
    if (tx_end(st, ret) != 0)
        goto fail;
    if (n)
        fprintf(stderr, "provfs: store: indexed %zu stored model(s) for candidate retrieval\n", n);
    return 0;
fail:
    snprintf(err, errlen, "candidate index: %s", db_errmsg(st->wr));
    return -1;
}

int store_candidates(store_handle *st, const store_keys *keys, int64_t exclude_id, store_cand_cb cb,
                     void *ctx)
{
    /* Reads on the writer connection: the caller serialises lineage work, and must see every
     * commit made so far. Rows are streamed; the callback must not call into the store. */
    if (!st->wr)
        return -1;
    pthread_mutex_lock(&st->write_lock);
    int ret = -1;
    db_stmt *stmt = prep(st, st->wr,
                              "SELECT id, created_ns, fpbin, digest FROM models"
                              " WHERE status = 'ready' AND id != ?1"
                              " AND fpbin IS NOT NULL"
                              " AND (hidden_size = ?2 OR vocab_size = ?3"
                              "      OR family_hash = ?4 OR arch_hash = ?5)");
    if (stmt) {
        db_bind_int64(stmt, 1, exclude_id);
        bind_opt_int(stmt, 2, keys->hidden_size);
        bind_opt_int(stmt, 3, keys->vocab_size);
        bind_text(stmt, 4, keys->family_hash);
        bind_text(stmt, 5, keys->arch_hash);
        int rc;
        while ((rc = db_step(stmt)) == DB_ROW) {
            size_t len = 0;
            const void *bin = db_col_blob(stmt, 2, &len);
            const char *digest = db_col_text(stmt, 3);
            if (cb(ctx, db_col_int64(stmt, 0), db_col_int64(stmt, 1),
                   digest ? digest : "", bin, len))
                break;
        }
        ret = rc == DB_ROW || rc == DB_DONE ? 0 : -1;
        done(st, stmt);
    }
    pthread_mutex_unlock(&st->write_lock);
    return ret;
}

#define CAND_SELECT "SELECT id, created_ns, fpbin, digest FROM models"
#define CAND_FILTER                                                                                \
    " status = 'ready' AND id != ?1 AND fpbin IS NOT NULL"                                   \
    " AND (hidden_size = ?2 OR vocab_size = ?3 OR family_hash = ?4 OR arch_hash = ?5)"

/* Streams the candidate row of id (when it passes the prefilter) to cb: 0, 1 when cb stopped,
 * -1 on error. Called with write_lock held. */
static int candidate_row(db_stmt *stmt, int64_t id, store_cand_cb cb, void *ctx)
{
    db_bind_int64(stmt, 6, id);
    int rc = db_step(stmt), ret = 0;
    if (rc == DB_ROW) {
        size_t len = 0;
        const void *bin = db_col_blob(stmt, 2, &len);
        const char *digest = db_col_text(stmt, 3);
        ret = cb(ctx, db_col_int64(stmt, 0), db_col_int64(stmt, 1),
                 digest ? digest : "", bin, len)
                  ? 1
                  : 0;
    } else if (rc != DB_DONE) {
        ret = -1;
    }
    db_reset(stmt);
    return ret;
}

/* The prefiltered candidate row of ?6 (store_candidates' filter; none without keys). */
static db_stmt *candidate_stmt(store_handle *st, db_conn *db, const store_keys *keys,
                                    int64_t exclude_id)
{
    db_stmt *stmt = prep(st, db,
                              keys ? CAND_SELECT " WHERE id = ?6 AND" CAND_FILTER
                                   : CAND_SELECT " WHERE id = ?6 AND status = 'ready'"
                                                 " AND id != ?1 AND fpbin IS NOT NULL");
    if (stmt) {
        db_bind_int64(stmt, 1, exclude_id);
        if (keys) {
            bind_opt_int(stmt, 2, keys->hidden_size);
            bind_opt_int(stmt, 3, keys->vocab_size);
            bind_text(stmt, 4, keys->family_hash);
            bind_text(stmt, 5, keys->arch_hash);
        }
    }
    return stmt;
}

/* The connection candidate reads use: the writer's (it sees every commit made so far) when there
 * is one, else the reader's (provctl); its lock is taken. */
static db_conn *cand_conn(store_handle *st)
{
    if (st->wr) {
        pthread_mutex_lock(&st->write_lock);
        return st->wr;
    }
    pthread_mutex_lock(&st->read_lock);
    return st->rd;
}

static void cand_release(store_handle *st)
{
    pthread_mutex_unlock(st->wr ? &st->write_lock : &st->read_lock);
}

int store_candidates_ids(store_handle *st, const store_keys *keys, const int64_t *ids, size_t n,
                         store_cand_cb cb, void *ctx)
{
    db_conn *db = cand_conn(st);
    db_stmt *stmt = db ? candidate_stmt(st, db, keys, 0) : NULL;
    int ret = stmt ? 0 : -1;
    for (size_t i = 0; ret == 0 && i < n; i++)
        ret = candidate_row(stmt, ids[i], cb, ctx);
    done(st, stmt);
    cand_release(st);
    return ret < 0 ? -1 : 0;
}

/* Match counts per model id: open addressing, grown at half full. */
typedef struct hit {
    int64_t id;
    int64_t n;
} hit;

typedef struct hits {
    hit *v;
    size_t cap, n;
} hits;

static int hits_add(hits *h, int64_t id, int64_t w)
{
    if (2 * (h->n + 1) > h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 1024;
        hit *g = calloc(cap, sizeof *g);
        if (!g)
            return -1;
        for (size_t i = 0; i < h->cap; i++) {
            if (!h->v[i].id)
                continue;
            size_t k = (size_t)((uint64_t)h->v[i].id * 0x9e3779b97f4a7c15ull >> 20) & (cap - 1);
            while (g[k].id)
                k = (k + 1) & (cap - 1);
            g[k] = h->v[i];
        }
        free(h->v);
        h->v = g;
        h->cap = cap;
    }
    size_t k = (size_t)((uint64_t)id * 0x9e3779b97f4a7c15ull >> 20) & (h->cap - 1);
    while (h->v[k].id && h->v[k].id != id)
        k = (k + 1) & (h->cap - 1);
    if (!h->v[k].id) {
        h->v[k].id = id;
        h->n++;
    }
    h->v[k].n += w;
    return 0;
}

/* Adds w for every model on the posting list of stmt's key (skipped when longer than
 * STORE_POSTING_MAX). */
static int postings(db_stmt *stmt, int64_t exclude_id, int64_t w, hits *h)
{
    int64_t ids[256];
    size_t n = 0, total = 0;
    int rc, ret = 0;
    hits tmp = {0};
    /* read the list first: a key too common to tell anything is dropped whole */
    while ((rc = db_step(stmt)) == DB_ROW && ret == 0) {
        int64_t id = db_col_int64(stmt, 0);
        if (++total > STORE_POSTING_MAX)
            break;
        if (id == exclude_id)
            continue;
        if (n < sizeof ids / sizeof *ids)
            ids[n++] = id;
        else
            ret = hits_add(&tmp, id, w);
    }
    if (rc != DB_ROW && rc != DB_DONE)
        ret = -1;
    db_reset(stmt);
    if (ret == 0 && total <= STORE_POSTING_MAX) {
        for (size_t i = 0; i < n && ret == 0; i++)
            ret = hits_add(h, ids[i], w);
        for (size_t i = 0; i < tmp.cap && ret == 0; i++)
            if (tmp.v[i].id)
                ret = hits_add(h, tmp.v[i].id, w);
    }
    free(tmp.v);
    return ret;
}

static int hit_cmp(const void *x, const void *y)
{
    const hit *a = x, *b = y;
    if (a->n != b->n)
        return a->n > b->n ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id; /* the first stored first, deterministic */
}

int store_retrieve(store_handle *st, const store_keys *keys, const pa_lsh_sig *sig,
                   int64_t exclude_id, size_t k, size_t *found, store_cand_cb cb, void *ctx)
{
    *found = 0;
    db_conn *db = cand_conn(st);
    hits h = {0};
    db_stmt *bs = db ? prep(st, db,
                                 "SELECT model_id FROM lsh_bands"
                                 " WHERE band_no = ?1 AND band_value = ?2")
                          : NULL;
    db_stmt *hs =
        db ? prep(st, db, "SELECT model_id FROM tensor_hashes WHERE hash = ?1") : NULL;
    int ret = bs && hs ? 0 : -1;
    for (size_t i = 0; ret == 0 && i < sig->n_hashes; i++) {
        db_bind_int64(hs, 1, sig->hashes[i]);
        ret = postings(hs, exclude_id, STORE_HASH_WEIGHT, &h);
    }
    for (size_t i = 0; ret == 0 && i < sig->n_bands; i++) {
        db_bind_int64(bs, 1, sig->bands[i].no);
        db_bind_int64(bs, 2, sig->bands[i].value);
        ret = postings(bs, exclude_id, 1, &h);
    }
    done(st, bs);
    done(st, hs);
    /* compact, rank, and hand the best k that pass the prefilter to cb */
    size_t n = 0;
    for (size_t i = 0; i < h.cap; i++)
        if (h.v[i].id)
            h.v[n++] = h.v[i];
    *found = n;
    if (ret == 0 && n)
        qsort(h.v, n, sizeof *h.v, hit_cmp);
    db_stmt *cs = ret == 0 && n ? candidate_stmt(st, db, keys, exclude_id) : NULL;
    if (ret == 0 && n && !cs)
        ret = -1;
    size_t given = 0;
    for (size_t i = 0; ret == 0 && i < n && given < k; i++) {
        int rc = candidate_row(cs, h.v[i].id, cb, ctx);
        if (rc == 1)
            break;
        ret = rc;
        given++; /* a model that fails the prefilter still takes its place: a bounded cost */
    }
    done(st, cs);
    free(h.v);
    cand_release(st);
    return ret < 0 ? -1 : 0;
}

int store_lsh_counts(store_handle *st, int64_t *bands, int64_t *hashes, int64_t *version)
{
    db_conn *db = cand_conn(st);
    static const char *const sql[] = {"SELECT count(*) FROM lsh_bands",
                                      "SELECT count(*) FROM tensor_hashes",
                                      "SELECT value FROM settings WHERE key = 'lsh_version'"};
    int64_t *out[] = {bands, hashes, version};
    int ret = db ? 0 : -1;
    for (size_t i = 0; ret == 0 && i < 3; i++) {
        db_stmt *stmt = prep(st, db, sql[i]);
        *out[i] = -1;
        if (stmt && db_step(stmt) == DB_ROW)
            *out[i] = db_col_int64(stmt, 0);
        else
            ret = -1;
        done(st, stmt);
    }
    cand_release(st);
    return ret;
}
