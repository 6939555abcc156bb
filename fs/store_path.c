/* The store's path filter (STORE_PATH_FILTER): every create, release and unlink through the mount
 * asks whether the store holds a model at a name (units.c), and nearly always it does not. A
 * Bloom filter of the paths in model_paths answers most of those without a query: 32 bits per
 * path at the open (at least 2^20 bits), four probes, so about one "maybe" in 10^4 for a path
 * never stored while the store stays within its size at the open; past it the filter fills and
 * answers "maybe" more often, never wrongly "no". Built from the table at the open and fed by
 * the writes that insert a path (store_lineage.c, store_ns.c), which is all of them while this
 * daemon is the database's only writer (SQLite: one daemon per database). */
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

enum { PROBES = 4 };

static uint64_t path_hash(const char *path)
{
    /* FNV-1a, then a 64-bit finaliser (splitmix64) to spread it over both halves */
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)path; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

void store_path_note(store_handle *st, const char *path)
{
    if (!st->path_bits)
        return;
    uint64_t h = path_hash(path), step = (h >> 32) | 1;
    for (int i = 0; i < PROBES; i++, h += step) {
        size_t bit = (size_t)h & st->path_mask;
        atomic_fetch_or(&st->path_bits[bit / 64], 1ull << (bit % 64));
    }
}

bool store_path_maybe(store_handle *st, const char *path)
{
    if (!st->path_bits)
        return true;
    uint64_t h = path_hash(path), step = (h >> 32) | 1;
    for (int i = 0; i < PROBES; i++, h += step) {
        size_t bit = (size_t)h & st->path_mask;
        if (!(atomic_load_explicit(&st->path_bits[bit / 64], memory_order_acquire) &
              (1ull << (bit % 64))))
            return false;
    }
    return true;
}

int store_path_filter_load(store_handle *st)
{
    int64_t n = 0;
    pthread_mutex_lock(&st->read_lock);
    db_stmt *stmt = prep(st, st->rd, "SELECT count(*) FROM model_paths");
    if (stmt && db_step(stmt) == DB_ROW)
        n = db_col_int64(stmt, 0);
    done(st, stmt);
    size_t bits = (size_t)1 << 20;
    while (bits < (size_t)n * 32 && bits < ((size_t)1 << 36))
        bits <<= 1;
    st->path_bits = calloc(bits / 64, sizeof *st->path_bits);
    st->path_mask = bits - 1;
    int ret = st->path_bits ? 0 : -1;
    stmt = ret == 0 ? prep(st, st->rd, "SELECT path FROM model_paths") : NULL;
    int rc = DB_ERROR;
    while (stmt && (rc = db_step(stmt)) == DB_ROW) {
        const char *p = db_col_text(stmt, 0);
        if (p)
            store_path_note(st, p);
    }
    if (!stmt || rc != DB_DONE)
        ret = -1;
    done(st, stmt);
    pthread_mutex_unlock(&st->read_lock);
    if (ret != 0)
        store_path_filter_free(st);
    return ret;
}

void store_path_filter_free(store_handle *st)
{
    free(st->path_bits);
    st->path_bits = NULL;
}
