/* Dirty-unit queue and analysis worker pool. */
#include "queue.h"
#include "clock.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define QUEUE_BUCKETS 1024

typedef struct qentry {
    struct qentry *next; /* bucket chain */
    char *path;
    uint64_t gen;
    int64_t due_ms;        /* CLOCK_MONOTONIC */
    int64_t window_ms;     /* CLOCK_MONOTONIC: first mark since idle or since the last job began */
    bool capped;           /* due_ms was held at window_ms + max_delay_ms by a stream of marks */
    bool forced;           /* the running job began at its deadline: marks do not cancel it */
    int64_t first_seen_ns; /* CLOCK_REALTIME */
    uint32_t uid;
    int32_t pid;
    queue_state state;
    int cancel;    /* read by the job without the lock: only ever set to 1 while it runs */
    bool removed;  /* unlinked while its job runs; the worker frees it */
} qentry;

typedef struct kentry {
    struct kentry *next; /* bucket chain */
    char *path;
    queue_file_id id;
    uint64_t seq;   /* insertion order, for eviction */
    uint64_t clock; /* known_clock at insertion (queue_known_written) */
    char sha256[65];
} kentry;

/* Write opens by inode, in slots: a slot holds the known_clock of the last write open of an
 * inode in it (two inodes sharing a slot only void more hashes than needed). */
#define KNOWN_WRITTEN_SLOTS 4096

struct queue {
    pthread_mutex_t lock;
    pthread_cond_t work_cond; /* a unit became due or stop was set */
    pthread_cond_t idle_cond; /* a job finished or an entry went away */
    qentry *buckets[QUEUE_BUCKETS]; /* protected by lock */
    size_t n_entries;               /* protected by lock (linked entries) */
    size_t n_running;               /* protected by lock */
    bool stop;                      /* protected by lock */
    kentry *known[QUEUE_BUCKETS];   /* protected by lock */
    size_t n_known;                 /* protected by lock */
    uint64_t known_seq;             /* protected by lock */
    uint64_t known_clock;           /* protected by lock */
    uint64_t known_written[KNOWN_WRITTEN_SLOTS]; /* protected by lock */
    bool known_strict;              /* set before the workers start */
    unsigned quiet_ms;
    unsigned max_delay_ms; /* 0: no bound (quiet period only) */
    queue_fn fn;
    void *ctx;
    unsigned n_workers;
    pthread_t *workers;
    atomic_uint_fast64_t started; /* analyses begun */
};

static size_t bucket_of(const char *path)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)path; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return (size_t)(h % QUEUE_BUCKETS);
}

static qentry *find_locked(queue *q, const char *path)
{
    for (qentry *e = q->buckets[bucket_of(path)]; e; e = e->next)
        if (strcmp(e->path, path) == 0)
            return e;
    return NULL;
}

static void link_locked(queue *q, qentry *e)
{
    size_t b = bucket_of(e->path);
    e->next = q->buckets[b];
    q->buckets[b] = e;
    q->n_entries++;
}

static void unlink_locked(queue *q, qentry *e)
{
    for (qentry **pp = &q->buckets[bucket_of(e->path)]; *pp; pp = &(*pp)->next) {
        if (*pp == e) {
            *pp = e->next;
            e->next = NULL;
            q->n_entries--;
            return;
        }
    }
}

static void free_entry(qentry *e)
{
    free(e->path);
    free(e);
}

/* True when path is dir itself or lies below it. */
static bool is_below(const char *path, const char *dir)
{
    size_t len = strlen(dir);
    if (strcmp(dir, "/") == 0)
        return true;
    return strncmp(path, dir, len) == 0 && (path[len] == '\0' || path[len] == '/');
}

/* Takes e out of the table: freed now, or by its worker when a job runs on it. */
static void drop_locked(queue *q, qentry *e)
{
    unlink_locked(q, e);
    if (e->state == QUEUE_ANALYZING) {
        e->removed = true;
        e->cancel = 1;
    } else {
        free_entry(e);
    }
}

static void mark(queue *q, const char *path, uint32_t uid, int32_t pid, bool opening);

void queue_mark(queue *q, const char *path, uint32_t uid, int32_t pid)
{
    mark(q, path, uid, pid, false);
}

void queue_mark_open(queue *q, const char *path, uint32_t uid, int32_t pid)
{
    mark(q, path, uid, pid, true);
}

static void mark(queue *q, const char *path, uint32_t uid, int32_t pid, bool opening)
{
    pthread_mutex_lock(&q->lock);
    qentry *e = find_locked(q, path);
    if (!e) {
        e = calloc(1, sizeof *e);
        if (!e || !(e->path = strdup(path))) {
            free(e);
            pthread_mutex_unlock(&q->lock);
            return;
        }
        e->state = QUEUE_PENDING;
        e->first_seen_ns = real_ns();
        e->window_ms = mono_ms();
        link_locked(q, e);
    }
    e->gen++;
    int64_t now = mono_ms();
    int64_t due = now + q->quiet_ms;
    /* A change that opens a write (create, first write, truncate) makes the unit pending now
     * but does not bring its analysis forward: the close that follows does. */
    if (opening && q->max_delay_ms) {
        due = e->window_ms + q->max_delay_ms;
        if (e->state == QUEUE_PENDING && e->gen > 1 && e->due_ms < due)
            due = e->due_ms;
    }
    e->due_ms = due;
    /* Changes that keep coming cannot keep a unit pending for ever: it is analysed at most
     * max_delay_ms after the first of them. */
    if (q->max_delay_ms && e->due_ms >= e->window_ms + q->max_delay_ms) {
        e->due_ms = e->window_ms + q->max_delay_ms;
        if (e->due_ms < now)
            e->due_ms = now;
        e->capped = true;
    }
    e->uid = uid;
    e->pid = pid;
    if (e->state == QUEUE_ANALYZING && !e->forced)
        e->cancel = 1;
    pthread_cond_signal(&q->work_cond);
    pthread_mutex_unlock(&q->lock);
}

/* ---------------------------------------------------------------- known hashes */

static void known_free(kentry *k)
{
    free(k->path);
    free(k);
}

/* Drops the known hashes for which drop(k, arg) holds. */
static void known_drop_locked(queue *q, bool (*drop)(const kentry *k, const void *arg),
                              const void *arg)
{
    for (size_t b = 0; b < QUEUE_BUCKETS; b++) {
        for (kentry **pp = &q->known[b]; *pp;) {
            kentry *k = *pp;
            if (drop(k, arg)) {
                *pp = k->next;
                known_free(k);
                q->n_known--;
            } else {
                pp = &k->next;
            }
        }
    }
}

/* Drops path's own known hash (not those below it): a lookup of its bucket. */
static void known_drop_name_locked(queue *q, const char *path)
{
    for (kentry **pp = &q->known[bucket_of(path)]; *pp;) {
        kentry *k = *pp;
        if (strcmp(k->path, path) == 0) {
            *pp = k->next;
            known_free(k);
            q->n_known--;
        } else {
            pp = &k->next;
        }
    }
}

static bool known_is_below(const kentry *k, const void *dir)
{
    return is_below(k->path, dir);
}

static bool known_is_old(const kentry *k, const void *limit)
{
    return k->seq < *(const uint64_t *)limit;
}

void queue_known_set_strict(queue *q, bool strict)
{
    q->known_strict = strict;
}

void queue_known_written(queue *q, uint64_t ino)
{
    pthread_mutex_lock(&q->lock);
    q->known_written[ino % KNOWN_WRITTEN_SLOTS] = ++q->known_clock;
    pthread_mutex_unlock(&q->lock);
}

uint64_t queue_known_clock(queue *q)
{
    pthread_mutex_lock(&q->lock);
    uint64_t c = ++q->known_clock;
    pthread_mutex_unlock(&q->lock);
    return c;
}

void queue_known_put(queue *q, const char *path, const queue_file_id *id, const char sha256[65],
                     uint64_t clock)
{
    kentry *k = calloc(1, sizeof *k);
    if (!k || !(k->path = strdup(path))) {
        free(k);
        return;
    }
    k->id = *id;
    memcpy(k->sha256, sha256, 65);
    k->sha256[64] = '\0';
    pthread_mutex_lock(&q->lock);
    for (kentry **pp = &q->known[bucket_of(path)]; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->path, path) == 0) { /* the path's previous entry */
            kentry *old = *pp;
            *pp = old->next;
            known_free(old);
            q->n_known--;
            break;
        }
    }
    if (q->n_known >= QUEUE_KNOWN_MAX) {
        uint64_t limit = q->known_seq - QUEUE_KNOWN_MAX / 2;
        known_drop_locked(q, known_is_old, &limit);
    }
    k->seq = q->known_seq++;
    k->clock = clock;
    size_t b = bucket_of(path);
    k->next = q->known[b];
    q->known[b] = k;
    q->n_known++;
    pthread_mutex_unlock(&q->lock);
}

bool queue_known_get(queue *q, const char *path, const queue_file_id *id, char out[65])
{
    bool found = false;
    pthread_mutex_lock(&q->lock);
    for (kentry *k = q->known[bucket_of(path)]; k; k = k->next) {
        if (strcmp(k->path, path) == 0) {
            found = k->id.size == id->size && k->id.mtime_ns == id->mtime_ns &&
                    k->id.ino == id->ino &&
                    k->clock > q->known_written[id->ino % KNOWN_WRITTEN_SLOTS] &&
                    (!q->known_strict || k->id.ctime_ns == id->ctime_ns);
            if (found)
                memcpy(out, k->sha256, 65);
            break;
        }
    }
    pthread_mutex_unlock(&q->lock);
    return found;
}

/* Moves the known hashes of from and below to to (same renaming as queue entries). */
static void known_rename_locked(queue *q, const char *from, const char *to)
{
    size_t from_len = strlen(from), to_len = strlen(to);
    kentry *moved = NULL;
    known_drop_locked(q, known_is_below, to);
    for (size_t b = 0; b < QUEUE_BUCKETS; b++) {
        for (kentry **pp = &q->known[b]; *pp;) {
            kentry *k = *pp;
            if (is_below(k->path, from)) {
                *pp = k->next;
                k->next = moved;
                moved = k;
            } else {
                pp = &k->next;
            }
        }
    }
    while (moved) {
        kentry *k = moved;
        moved = k->next;
        size_t rest = strlen(k->path) - from_len;
        char *path = malloc(to_len + rest + 1);
        if (!path) {
            known_free(k);
            q->n_known--;
            continue;
        }
        memcpy(path, to, to_len);
        memcpy(path + to_len, k->path + from_len, rest + 1);
        free(k->path);
        k->path = path;
        size_t nb = bucket_of(path);
        k->next = q->known[nb];
        q->known[nb] = k;
    }
}

void queue_forget(queue *q, const char *path, bool below)
{
    pthread_mutex_lock(&q->lock);
    if (!below) {
        known_drop_name_locked(q, path); /* one name: its bucket only */
        qentry *e = find_locked(q, path);
        if (e)
            drop_locked(q, e);
        pthread_cond_broadcast(&q->idle_cond);
        pthread_mutex_unlock(&q->lock);
        return;
    }
    known_drop_locked(q, known_is_below, path);
    for (size_t b = 0; b < QUEUE_BUCKETS; b++) {
        qentry *e = q->buckets[b];
        while (e) {
            qentry *next = e->next;
            if (is_below(e->path, path))
                drop_locked(q, e);
            e = next;
        }
    }
    pthread_cond_broadcast(&q->idle_cond);
    pthread_mutex_unlock(&q->lock);
}

void queue_forget_entry(queue *q, const char *path)
{
    pthread_mutex_lock(&q->lock);
    qentry *e = find_locked(q, path);
    if (e)
        drop_locked(q, e);
    pthread_cond_broadcast(&q->idle_cond);
    pthread_mutex_unlock(&q->lock);
}

/* queue_rename of one name (a file): its known hash and entry move through their buckets. */
static void rename_one_locked(queue *q, const char *from, const char *to)
{
    known_drop_name_locked(q, to);
    kentry *mk = NULL;
    for (kentry **pp = &q->known[bucket_of(from)]; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->path, from) == 0) {
            mk = *pp;
            *pp = mk->next;
            break;
        }
    }
    if (mk) {
        char *path = strdup(to);
        if (!path) {
            known_free(mk);
            q->n_known--;
        } else {
            free(mk->path);
            mk->path = path;
            size_t nb = bucket_of(path);
            mk->next = q->known[nb];
            q->known[nb] = mk;
        }
    }
    qentry *e = find_locked(q, to);
    if (e)
        drop_locked(q, e); /* replaced by the rename */
    e = find_locked(q, from);
    if (!e)
        return;
    unlink_locked(q, e);
    char *path = strdup(to);
    if (!path) {
        if (e->state == QUEUE_ANALYZING) {
            e->removed = true;
            e->cancel = 1;
        } else {
            free_entry(e);
        }
        return;
    }
    free(e->path);
    e->path = path;
    e->gen++; /* a running job works on the old name: restart it under the new one */
    if (e->state == QUEUE_ANALYZING)
        e->cancel = 1;
    link_locked(q, e);
}

void queue_rename(queue *q, const char *from, const char *to, bool below)
{
    size_t from_len = strlen(from), to_len = strlen(to);
    qentry *moved = NULL;
    pthread_mutex_lock(&q->lock);
    if (!below) {
        rename_one_locked(q, from, to);
        pthread_cond_broadcast(&q->work_cond);
        pthread_mutex_unlock(&q->lock);
        return;
    }
    known_rename_locked(q, from, to);
    for (size_t b = 0; b < QUEUE_BUCKETS; b++) {
        qentry *e = q->buckets[b];
        while (e) {
            qentry *next = e->next;
            if (is_below(e->path, to))
                drop_locked(q, e); /* replaced by the rename */
            else if (is_below(e->path, from)) {
                unlink_locked(q, e);
                e->next = moved;
                moved = e;
            }
            e = next;
        }
    }
    while (moved) {
        qentry *e = moved;
        moved = e->next;
        size_t rest = strlen(e->path) - from_len;
        char *path = malloc(to_len + rest + 1);
        if (!path) {
            if (e->state == QUEUE_ANALYZING) {
                e->removed = true;
                e->cancel = 1;
            } else {
                free_entry(e);
            }
            continue;
        }
        memcpy(path, to, to_len);
        memcpy(path + to_len, e->path + from_len, rest + 1);
        free(e->path);
        e->path = path;
        /* A running job works on the old name: restart it under the new one. */
        e->gen++;
        if (e->state == QUEUE_ANALYZING)
            e->cancel = 1;
        link_locked(q, e);
    }
    pthread_cond_broadcast(&q->work_cond);
    pthread_mutex_unlock(&q->lock);
}

uint64_t queue_started(queue *q)
{
    return atomic_load(&q->started);
}

size_t queue_entries(queue *q)
{
    pthread_mutex_lock(&q->lock);
    size_t n = q->n_entries;
    pthread_mutex_unlock(&q->lock);
    return n;
}

queue_state queue_get_state(queue *q, const char *path)
{
    pthread_mutex_lock(&q->lock);
    qentry *e = find_locked(q, path);
    queue_state s = e ? e->state : QUEUE_NONE;
    pthread_mutex_unlock(&q->lock);
    return s;
}

bool queue_current(queue *q, const char *path, uint64_t gen)
{
    pthread_mutex_lock(&q->lock);
    qentry *e = find_locked(q, path);
    bool current = e && e->state == QUEUE_ANALYZING && (e->gen == gen || e->forced) && !q->stop;
    pthread_mutex_unlock(&q->lock);
    return current;
}

bool queue_wait_idle(queue *q, int timeout_ms)
{
    int64_t deadline = mono_ms() + timeout_ms;
    pthread_mutex_lock(&q->lock);
    while (q->n_entries > 0 || q->n_running > 0) {
        int64_t left = deadline - mono_ms();
        if (left <= 0)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t ns = ts.tv_nsec + (left < 100 ? left : 100) * 1000000;
        ts.tv_sec += ns / 1000000000;
        ts.tv_nsec = ns % 1000000000;
        pthread_cond_timedwait(&q->idle_cond, &q->lock, &ts);
    }
    bool idle = q->n_entries == 0 && q->n_running == 0;
    pthread_mutex_unlock(&q->lock);
    return idle;
}

/* The pending entry due first, and when the next one is due (INT64_MAX when none). */
static qentry *next_due_locked(queue *q, int64_t now, int64_t *next_due)
{
    qentry *best = NULL;
    *next_due = INT64_MAX;
    for (size_t b = 0; b < QUEUE_BUCKETS; b++) {
        for (qentry *e = q->buckets[b]; e; e = e->next) {
            if (e->state != QUEUE_PENDING)
                continue;
            if (e->due_ms <= now && (!best || e->due_ms < best->due_ms))
                best = e;
            else if (e->due_ms > now && e->due_ms < *next_due)
                *next_due = e->due_ms;
        }
    }
    return best;
}

static void *worker_main(void *arg)
{
    queue *q = arg;
    pthread_mutex_lock(&q->lock);
    while (!q->stop) {
        int64_t next_due;
        qentry *e = next_due_locked(q, mono_ms(), &next_due);
        if (!e) {
            if (next_due == INT64_MAX) {
                pthread_cond_wait(&q->work_cond, &q->lock);
            } else {
                struct timespec ts = {.tv_sec = next_due / 1000,
                                      .tv_nsec = (next_due % 1000) * 1000000};
                pthread_cond_timedwait(&q->work_cond, &q->lock, &ts);
            }
            continue;
        }
        e->state = QUEUE_ANALYZING;
        atomic_fetch_add(&q->started, 1);
        e->cancel = 0;
        /* A job begun at its deadline stores its result even if marks come meanwhile (they
         * start a new window): the unit then carries a decision at most max_delay_ms old. */
        e->forced = e->capped;
        e->capped = false;
        e->window_ms = mono_ms();
        q->n_running++;
        char *path = strdup(e->path);
        queue_job job = {.path = path, .gen = e->gen, .first_seen_ns = e->first_seen_ns,
                         .uid = e->uid, .pid = e->pid, .cancel = &e->cancel};
        pthread_mutex_unlock(&q->lock);
        if (path)
            q->fn(q->ctx, &job);
        free(path);
        pthread_mutex_lock(&q->lock);
        q->n_running--;
        e->forced = false;
        if (e->removed) {
            free_entry(e);
        } else if (e->gen != job.gen || !path) {
            e->state = QUEUE_PENDING; /* written again meanwhile: due after its quiet period */
            pthread_cond_signal(&q->work_cond);
        } else {
            unlink_locked(q, e);
            free_entry(e);
        }
        pthread_cond_broadcast(&q->idle_cond);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

void queue_set_max_delay(queue *q, unsigned max_delay_ms)
{
    pthread_mutex_lock(&q->lock);
    q->max_delay_ms = max_delay_ms;
    pthread_mutex_unlock(&q->lock);
}

queue *queue_create(unsigned workers, unsigned quiet_ms, queue_fn fn, void *ctx)
{
    queue *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    pthread_mutex_init(&q->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&q->work_cond, &attr);
    pthread_cond_init(&q->idle_cond, &attr);
    pthread_condattr_destroy(&attr);
    q->quiet_ms = quiet_ms;
    q->max_delay_ms = QUEUE_MAX_DELAY_MS;
    q->fn = fn;
    q->ctx = ctx;
    if (workers == 0)
        workers = 1;
    q->workers = calloc(workers, sizeof *q->workers);
    if (!q->workers) {
        queue_destroy(q);
        return NULL;
    }
    for (unsigned i = 0; i < workers; i++) {
        if (pthread_create(&q->workers[i], NULL, worker_main, q) != 0)
            break;
        q->n_workers++;
    }
    if (q->n_workers == 0) {
        queue_destroy(q);
        return NULL;
    }
    return q;
}

void queue_destroy(queue *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->lock);
    q->stop = true;
    for (size_t b = 0; b < QUEUE_BUCKETS; b++)
        for (qentry *e = q->buckets[b]; e; e = e->next)
            if (e->state == QUEUE_ANALYZING)
                e->cancel = 1;
    pthread_cond_broadcast(&q->work_cond);
    pthread_mutex_unlock(&q->lock);
    for (unsigned i = 0; i < q->n_workers; i++)
        pthread_join(q->workers[i], NULL);
    for (size_t b = 0; b < QUEUE_BUCKETS; b++) {
        qentry *e = q->buckets[b];
        while (e) {
            qentry *next = e->next;
            free_entry(e);
            e = next;
        }
    }
    for (size_t b = 0; b < QUEUE_BUCKETS; b++) {
        kentry *k = q->known[b];
        while (k) {
            kentry *next = k->next;
            known_free(k);
            k = next;
        }
    }
    free(q->workers);
    pthread_cond_destroy(&q->work_cond);
    pthread_cond_destroy(&q->idle_cond);
    pthread_mutex_destroy(&q->lock);
    free(q);
}
