/* The read-only `.provenance` virtual files, rendered from the store on open. Plain module, no
 * FUSE. Fields: CONTRACT.md. */
#ifndef PROVFS_VFILE_H
#define PROVFS_VFILE_H

#include "queue.h"
#include "store.h"

#include <stddef.h>

#define VFILE_NAME ".provenance"

/* JSON for DIR/.provenance (dir is mount-relative; "/" renders the store summary). policy_json
 * is the active policy file's text (may be NULL). Returns malloc'd text and its length, NULL on
 * allocation or store failure. */
char *vfile_render(store_handle *st, queue *q, const char *dir, const char *policy_json,
                   size_t *len);

#endif
