/* The daemon's multi-threaded request loop: one worker reads and serves requests and checks for
 * the next one for a short while before it sleeps; a request served for long passes the reading
 * on to another worker (fs/README.md, "Request loop"). */
#ifndef PROVFS_LOOP_H
#define PROVFS_LOOP_H

#include "ops.h"

/* Serves se until it is unmounted or fuse_session_exit() is called (by a signal handler); 0 at a
 * clean end, -1 on an error, as fuse_session_loop(). spin_us: how long after the last request
 * began or ended the reader checks for the next one without sleeping (0: it sleeps at once).
 * max_threads: the most workers at once (at least 1). */
int loop_run(struct fuse_session *se, unsigned spin_us, unsigned max_threads);

#endif
