/* The read-only `.provenance` virtual files, rendered from the store on open. Plain module, no
 * FUSE. Fields: the top-level README.md and fs/README.md. */
#ifndef PROVFS_VFILE_H
#define PROVFS_VFILE_H

#include "gate.h"
#include "queue.h"
#include "store.h"

#include <stddef.h>

#define VFILE_NAME ".provenance"

/* JSON for DIR/.provenance (dir is mount-relative; "/" renders the store summary: counts, the
 * blocked count and the active policy). g (may be NULL: no policy) decides. Returns malloc'd
 * text and its length, NULL on allocation or store failure. */
char *vfile_render(store_handle *st, queue *q, gate *g, const char *dir, size_t *len);

#endif
