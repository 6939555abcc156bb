/* Hash while writing (see writehash.h). */
#include "writehash.h"
#include "clock.h"

#include "sha.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* How long a chunk waits for the one before it (a writer's chunks arrive in order, but two FUSE
 * threads can swap them by a few microseconds). A gap that stays open means a sparse write. */
#define WRITEHASH_WAIT_MS 200
/* Writes of one file waiting to be hashed. Hashing runs at the lowest CPU priority, so that it
 * only uses CPU the write path leaves idle; when it falls this far behind, the file is not hashed
 * here (the analyzer hashes it later) rather than slowing the writer down. */
#define WRITEHASH_MAX_BEHIND 16
/* Writes at least this large are hashed at the lowest priority (about 60 us of SHA-256). */
#define WRITEHASH_RENICE_BYTES (128u * 1024)
/* A writer faster than this, over a window of WRITEHASH_WINDOW_BYTES, is not hashed here. Even at
 * the lowest priority, hashing beside a fast local copy cost it a quarter of its throughput on two
 * cores (the CPU was 37 % idle: the copy waits on wakeups and caches the hash disturbs), while a
 * download at hub speed leaves the CPU idle between its writes; the analyzer hashes the fast ones. */
#define WRITEHASH_MAX_RATE (256u << 20) /* bytes per second */
#define WRITEHASH_WINDOW_BYTES (64u << 20)

struct writehash {
    pthread_mutex_t lock;
    pthread_cond_t moved; /* next advanced or valid dropped */
    pa_sha_ctx *sha;      /* touched only by the thread that set busy */
    uint64_t next;        /* lock: bytes [0, next) are hashed */
    bool busy;            /* lock: a thread is hashing the chunk at next */
    bool valid;           /* lock */
    unsigned users;       /* lock: holds not yet ended by an update (finish waits for them) */
    uint64_t window_at;   /* lock: next when the current rate window began */
    int64_t window_ns;    /* lock: and the time (0: no window yet) */
};

/* Is the writer too fast to be hashed beside (WRITEHASH_MAX_RATE)? Called with the lock held, for
 * the chunk at next. */
static bool too_fast_locked(writehash *w)
{
    int64_t now = mono_ns();
    if (w->window_ns == 0) {
        w->window_ns = now;
        w->window_at = w->next;
        return false;
    }
    uint64_t bytes = w->next - w->window_at;
    if (bytes < WRITEHASH_WINDOW_BYTES)
        return false;
    int64_t ns = now - w->window_ns;
    w->window_ns = now;
    w->window_at = w->next;
    return ns <= 0 || (double)bytes * 1e9 / (double)ns > (double)WRITEHASH_MAX_RATE;
}

writehash *writehash_new(void)
{
    writehash *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->sha = pa_sha_new();
    if (!w->sha) {
        free(w);
        return NULL;
    }
    pthread_mutex_init(&w->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->moved, &attr);
    pthread_condattr_destroy(&attr);
    w->valid = true;
    return w;
}

static void invalidate_locked(writehash *w)
{
    w->valid = false;
    pthread_cond_broadcast(&w->moved);
}

void writehash_invalidate(writehash *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    invalidate_locked(w);
    pthread_mutex_unlock(&w->lock);
}

void writehash_hold(writehash *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->users++;
    if (w->users > WRITEHASH_MAX_BEHIND)
        invalidate_locked(w);
    pthread_mutex_unlock(&w->lock);
}

void writehash_unhold(writehash *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->users--;
    pthread_cond_broadcast(&w->moved);
    pthread_mutex_unlock(&w->lock);
}

void writehash_update(writehash *w, uint64_t off, const void *data, size_t len)
{
    if (!w)
        return;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_nsec += WRITEHASH_WAIT_MS * 1000000L;
    deadline.tv_sec += deadline.tv_nsec / 1000000000L;
    deadline.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&w->lock);
    while (w->valid && (w->busy || w->next < off)) {
        if (pthread_cond_timedwait(&w->moved, &w->lock, &deadline) != 0 &&
            (w->busy || w->next < off))
            invalidate_locked(w); /* a gap that does not close: not a sequential write */
    }
    if (!w->valid || w->next != off || too_fast_locked(w)) {
        invalidate_locked(w); /* an overwrite of bytes already hashed, or a writer too fast */
        w->users--;
        pthread_cond_broadcast(&w->moved);
        pthread_mutex_unlock(&w->lock);
        return;
    }
    w->busy = true;
    pthread_mutex_unlock(&w->lock);
    /* Lowest priority while hashing a large write (this thread only; restored after): the
     * writer first. A small write hashes in less time than the four system calls take. */
    bool reniced = false;
    int nice_was = 0;
    pid_t tid = 0;
    if (len >= WRITEHASH_RENICE_BYTES) {
        tid = gettid();
        errno = 0;
        nice_was = getpriority(PRIO_PROCESS, (id_t)tid);
        reniced = errno == 0 && setpriority(PRIO_PROCESS, (id_t)tid, 19) == 0;
    }
    pa_sha_update(w->sha, data, len);
    if (reniced)
        setpriority(PRIO_PROCESS, (id_t)tid, nice_was);
    pthread_mutex_lock(&w->lock);
    w->busy = false;
    w->next += len;
    w->users--;
    pthread_cond_broadcast(&w->moved);
    pthread_mutex_unlock(&w->lock);
}

bool writehash_finish(writehash *w, uint64_t size, char hex[65])
{
    if (!w)
        return false;
    /* Release comes after every write was replied; a write still hashing is waited for. */
    pthread_mutex_lock(&w->lock);
    while (w->busy || w->users > 0)
        pthread_cond_wait(&w->moved, &w->lock);
    bool ok = w->valid && w->next == size;
    pthread_mutex_unlock(&w->lock);
    uint8_t digest[32];
    pa_sha_final(w->sha, digest);
    if (ok)
        pa_hex(digest, 32, hex);
    pthread_cond_destroy(&w->moved);
    pthread_mutex_destroy(&w->lock);
    free(w);
    return ok;
}
