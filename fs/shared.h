/* Sharing the analysis queue with the other daemons on one database (store_shared; fs/README.md
 * "Several hosts"). A thread renews this daemon's claims every second and queues the units due
 * that no live claim holds: those written through a mount whose daemon is gone, or whose
 * analysis stopped with it. Plain module, no FUSE. */
#ifndef PROVFS_SHARED_H
#define PROVFS_SHARED_H
#include "queue.h"
#include "store.h"

#include <stdbool.h>
#include <stdint.h>

#define SHARED_LEASE_MS_DEFAULT 30000u
/* The time a unit waits in table pending before another daemon may take it: its writer's own
 * daemon analyses it first, after its quiet period. Longer for a change that opens a write (the
 * close that follows brings it forward). */
#define SHARED_DUE_MS 5000
#define SHARED_DUE_OPEN_MS 15000

typedef struct shared shared;

/* NULL when st is not shared (a SQLite file), or out of memory. */
shared *shared_start(store_handle *st, queue *q, unsigned lease_ms);
void shared_stop(shared *s);
/* This daemon's name in claims: host, pid and a random part. */
const char *shared_owner(const shared *s);
int64_t shared_lease_ns(const shared *s);
/* Is path a mount-relative path as the daemons write them: "/" then names, none empty, "." or
 * "..", no trailing slash, nothing under /.provfs? Only such rows of table pending are queued. */
bool shared_plain_path(const char *path);

#endif
