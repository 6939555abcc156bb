/* Fingerprint cache: a hash table on model id (chained) and a doubly linked LRU list. */
#include "fpcache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fpentry {
    int64_t id;
    char digest[65];
    pa_fingerprint *fp;
    size_t bytes;
    struct fpentry *hnext;        /* hash chain */
    struct fpentry *prev, *next;  /* LRU list: head most recent */
} fpentry;

struct fpcache {
    size_t budget, bytes, count, evictions;
    fpentry **buckets;
    size_t n_buckets; /* a power of two */
    fpentry *head, *tail;
};

fpcache *fpcache_create(size_t budget)
{
    fpcache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->budget = budget;
    c->n_buckets = 256;
    c->buckets = calloc(c->n_buckets, sizeof *c->buckets);
    if (!c->buckets) {
        free(c);
        return NULL;
    }
    return c;
}

static size_t bucket_of(const fpcache *c, int64_t id)
{
    uint64_t h = (uint64_t)id * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 32) & (c->n_buckets - 1);
}

static void lru_unlink(fpcache *c, fpentry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push(fpcache *c, fpentry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head)
        c->head->prev = e;
    c->head = e;
    if (!c->tail)
        c->tail = e;
}

static fpentry *find(const fpcache *c, int64_t id)
{
    for (fpentry *e = c->buckets[bucket_of(c, id)]; e; e = e->hnext)
        if (e->id == id)
            return e;
    return NULL;
}

static void drop(fpcache *c, fpentry *e)
{
    fpentry **pp = &c->buckets[bucket_of(c, e->id)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(c, e);
    c->bytes -= e->bytes;
    c->count--;
    pa_fingerprint_free(e->fp);
    free(e);
}

/* Doubles the table when chains grow past two entries on average; stays as is without memory. */
static void grow(fpcache *c)
{
    if (c->count < 2 * c->n_buckets)
        return;
    size_t n = c->n_buckets * 2;
    fpentry **b = calloc(n, sizeof *b);
    if (!b)
        return;
    fpentry **old = c->buckets;
    size_t old_n = c->n_buckets;
    c->buckets = b;
    c->n_buckets = n;
    for (size_t i = 0; i < old_n; i++) {
        for (fpentry *e = old[i], *nx; e; e = nx) {
            nx = e->hnext;
            size_t k = bucket_of(c, e->id);
            e->hnext = b[k];
            b[k] = e;
        }
    }
    free(old);
}

void fpcache_destroy(fpcache *c)
{
    if (!c)
        return;
    while (c->head)
        drop(c, c->head);
    free(c->buckets);
    free(c);
}

const pa_fingerprint *fpcache_get(fpcache *c, int64_t id, const char *digest)
{
    fpentry *e = find(c, id);
    if (!e || strcmp(e->digest, digest) != 0)
        return NULL;
    lru_unlink(c, e);
    lru_push(c, e);
    return e->fp;
}

const pa_fingerprint *fpcache_put(fpcache *c, int64_t id, const char *digest, pa_fingerprint *fp,
                                  size_t bytes)
{
    fpentry *e = find(c, id);
    if (e) {
        /* a pointer to the old fingerprint may be held: it goes at the next trim, not now */
        fpentry *stale = e;
        stale->id = -1 - stale->id; /* no longer found under id; still in the LRU list */
        fpentry **pp = &c->buckets[bucket_of(c, id)];
        while (*pp != stale)
            pp = &(*pp)->hnext;
        *pp = stale->hnext;
        size_t k = bucket_of(c, stale->id);
        stale->hnext = c->buckets[k];
        c->buckets[k] = stale;
        lru_unlink(c, stale);
        /* least recently used: the first to go */
        stale->prev = c->tail;
        if (c->tail)
            c->tail->next = stale;
        c->tail = stale;
        if (!c->head)
            c->head = stale;
    }
    e = calloc(1, sizeof *e);
    if (!e) {
        pa_fingerprint_free(fp);
        return NULL;
    }
    e->id = id;
    snprintf(e->digest, sizeof e->digest, "%s", digest);
    e->fp = fp;
    e->bytes = bytes;
    size_t k = bucket_of(c, id);
    e->hnext = c->buckets[k];
    c->buckets[k] = e;
    lru_push(c, e);
    c->bytes += bytes;
    c->count++;
    grow(c);
    return fp;
}

void fpcache_trim(fpcache *c)
{
    while (c->tail && (c->bytes > c->budget || c->tail->id < 0)) {
        if (c->tail->id >= 0)
            c->evictions++;
        drop(c, c->tail);
    }
}

void fpcache_forget(fpcache *c, int64_t id)
{
    fpentry *e = find(c, id);
    if (e)
        drop(c, e);
}

size_t fpcache_bytes(const fpcache *c)
{
    return c->bytes;
}

size_t fpcache_count(const fpcache *c)
{
    return c->count;
}

size_t fpcache_evictions(const fpcache *c)
{
    return c->evictions;
}

size_t fpcache_size_of(const pa_fingerprint *fp)
{
    return pa_fp_memory(fp) + sizeof(fpentry) + 64;
}
