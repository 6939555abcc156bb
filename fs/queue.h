/* Dirty-unit queue: FUSE threads mark model directories dirty; worker threads analyse each one
 * after a quiet period. Plain module, no FUSE, no SQLite.
 *
 * Every mark bumps the unit's generation. A job runs with the generation it started with; a
 * mark during the job sets the job's cancel flag and puts the unit back to pending, so the stale
 * result is dropped (queue_current() says so) and the unit is analysed again after a new quiet
 * period. All state is under queue.lock; the job function runs without it.
 */
#ifndef PROVFS_QUEUE_H
#define PROVFS_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct queue queue;

typedef enum queue_state { QUEUE_NONE = 0, QUEUE_PENDING, QUEUE_ANALYZING } queue_state;

typedef struct queue_job {
    const char *path;       /* mount-relative directory, "/a/b" */
    uint64_t gen;
    int64_t first_seen_ns;  /* CLOCK_REALTIME of the first mark since the unit was last idle */
    uint32_t uid;           /* last writer */
    int32_t pid;
    volatile const int *cancel;
} queue_job;

typedef void (*queue_fn)(void *ctx, const queue_job *job);

queue *queue_create(unsigned workers, unsigned quiet_ms, queue_fn fn, void *ctx);
/* Marks that keep coming postpone a unit's analysis by the quiet period each, but never more than
 * max_delay_ms after the first of them; a job begun at that deadline is not cancelled by later
 * marks and its result is stored (they are analysed next). 0: no bound. */
#define QUEUE_MAX_DELAY_MS 10000u
void queue_set_max_delay(queue *q, unsigned max_delay_ms);
/* Stops the workers (cancelling running jobs) and frees everything. */
void queue_destroy(queue *q);

void queue_mark(queue *q, const char *path, uint32_t uid, int32_t pid);
/* The same for a change that begins a write (create, the first write of a handle, truncate):
 * the unit is pending from now on, and its analysis is due when the write's close marks it
 * (queue_mark), or at the latest max_delay_ms after its first change. */
void queue_mark_open(queue *q, const char *path, uint32_t uid, int32_t pid);
/* Forgets path and, when below is true (a directory went), every unit below it. A running job
 * is cancelled. Without below it costs a hash lookup, not a walk of the queue. */
void queue_forget(queue *q, const char *path, bool below);
/* Forgets path's entry only (a running job on it is cancelled): the hash of its file taken while
 * written stays, for the unit the file is part of now. */
void queue_forget_entry(queue *q, const char *path);
/* Moves path and, when below is true (a directory moved), every unit below it; running jobs on
 * them are restarted under the new name. Without below it costs hash lookups, not a walk. */
void queue_rename(queue *q, const char *from, const char *to, bool below);
queue_state queue_get_state(queue *q, const char *path);
/* Units pending or being analysed now (0: every unit's state is QUEUE_NONE). */
size_t queue_entries(queue *q);
/* Analyses begun since the queue was made: a change after this count moved may be one an
 * analysis under way did not read. */
uint64_t queue_started(queue *q);
/* True while path's job of generation gen is still the latest (its result may be stored). */
bool queue_current(queue *q, const char *path, uint64_t gen);
/* SHA-256s of files hashed while they were written (fs/writehash.h), keyed by mount-relative
 * path and valid only for that file (inode), size and mtime, and only while no handle opened
 * the inode for writing since (queue_known_written): the worker hands them to the analyzer
 * (pa_fp_options.known_sha256) so it hashes each byte once. A user can set mtime back but not
 * open a file for writing unseen, by any of its names. They follow renames and are dropped with
 * forgotten paths; the oldest go when more than QUEUE_KNOWN_MAX are held. */
#define QUEUE_KNOWN_MAX 16384
typedef struct queue_file_id {
    uint64_t size, ino;
    int64_t mtime_ns, ctime_ns;
} queue_file_id;
/* clock: queue_known_clock() taken before the writer's last check that it was the only one
 * since its open: a write open after that point voids the hash. */
void queue_known_put(queue *q, const char *path, const queue_file_id *id, const char sha256[65],
                     uint64_t clock);
uint64_t queue_known_clock(queue *q);
/* True and out filled when path has a known hash for exactly that file, size and mtime (and
 * ctime when strict), with no write open of its inode since. */
bool queue_known_get(queue *q, const char *path, const queue_file_id *id, char out[65]);
/* A handle opened inode ino for writing (or truncated it): hashes kept for it no longer hold. */
void queue_known_written(queue *q, uint64_t ino);
/* Where BACKING changes behind this daemon (users write it, or other hosts do), a known hash
 * must also match the file's ctime, which any later change moves. */
void queue_known_set_strict(queue *q, bool strict);

/* Waits until nothing is pending or running, at most timeout_ms; true when idle. */
bool queue_wait_idle(queue *q, int timeout_ms);

#endif
