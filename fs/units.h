/* Model units seen from the daemon's changes: which paths are units, what to queue for analysis
 * and what the store and the queue must learn when names go away or move. No libfuse here: the
 * FUSE side (ops*.c) resolves its inodes to paths and fds and calls these. */
#ifndef PROVFS_UNITS_H
#define PROVFS_UNITS_H

#include "queue.h"
#include "store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Who caused a change: taken from the request before it is replied (the reply frees it). */
typedef struct pf_caller {
    uint32_t uid;
    int32_t pid;
} pf_caller;

/* What the bookkeeping works on. backing, backing_len and root_fd are set once before the loop
 * (root_fd: O_PATH fd of BACKING); st and q may be NULL (nothing is recorded or queued). */
typedef struct units {
    const char *backing; /* canonical absolute BACKING */
    size_t backing_len;  /* 0 when BACKING is "/" */
    int root_fd;
    store_handle *st; /* thread-safe */
    queue *q;         /* thread-safe */
} units;

/* Mount-relative path of an fd below BACKING ("/" for BACKING); -1 when outside or deleted. */
int units_fd_path(const units *u, int fd, char *out, size_t outlen);
/* Splits "/a/b/c" into dir "/a/b" (in place) and returns "c". */
const char *units_split_path(char *path);
/* True when the store has a model at path. */
bool units_store_knows(const units *u, const char *path);
/* True when the queue or the store holds a record of path (a unit, or one that was). */
bool units_known(const units *u, const char *path);

/* Schedules dir for analysis when it is a model unit, or when it was one (the worker then
 * forgets it). opening: a write begins (pending now, analysed after the close); else a change
 * is done. */
bool units_mark_dir(const units *u, pf_caller who, const char *dir, bool opening);
/* Schedules the file at path when it is a unit of its own (GGUF, detected from its bytes), or
 * was one. */
bool units_mark_file(const units *u, pf_caller who, const char *path, bool opening);
/* The unit holding the file open on fd (or O_PATH fd) changed: the file's own unit (GGUF) and
 * its directory's, and, when the file has more than one link or no name the daemon can give
 * (unlinked while open), every unit whose last analysis read its inode. True when one was
 * marked, or when the file's name is unknown. */
bool units_mark_file_fd(const units *u, pf_caller who, int fd, bool opening);

/* The name path was removed (is_dir: a directory): its records go with it. */
void units_removed(const units *u, const char *path, bool is_dir);
/* Moves the store's and the queue's records after a rename that succeeded. from and to are the
 * mount-relative paths of the source and the target (changed here); the target is newname in
 * the directory open on newdir_fd. */
void units_renamed(const units *u, pf_caller who, int newdir_fd, const char *newname, char *from,
                   char *to, unsigned int flags);

#endif
