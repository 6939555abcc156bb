/* The user.provenance.* xattr namespace, served from the store (no analysis on this path).
 * Plain module, no FUSE. Names and values: CONTRACT.md and fs/README.md. */
#ifndef PROVFS_XATTR_H
#define PROVFS_XATTR_H

#include "queue.h"
#include "store.h"

#include <stdbool.h>
#include <stddef.h>

#define XATTR_PREFIX "user.provenance."

/* True for every name in the provenance namespace (read-only through the mount). */
bool xattr_is_provenance(const char *name);

/* Value of name for the model directory dir (file NULL) or for the file named file inside dir.
 * Returns the value's length (copied to buf when size > 0), -ENODATA when absent, -ERANGE when
 * size is too small, -EIO on a store error. */
int xattr_get(store_handle *st, queue *q, const char *dir, const char *file, const char *name,
              char *buf, size_t size);

/* The provenance names present on dir / file, as a listxattr list (NUL separated). Returns the
 * length (copied when size > 0) or -ERANGE. */
int xattr_list(store_handle *st, queue *q, const char *dir, const char *file, char *buf,
               size_t size);

#endif
