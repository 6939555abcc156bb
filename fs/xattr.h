/* The user.provenance.* xattr namespace, served from the store (no analysis on this path).
 * Plain module, no FUSE. Names and values: fs/README.md. */
#ifndef PROVFS_XATTR_H
#define PROVFS_XATTR_H

#include "gate.h"
#include "queue.h"
#include "store.h"

#include <stdbool.h>
#include <stddef.h>

#define XATTR_PREFIX "user.provenance."

/* True for every name in the provenance namespace (read-only through the mount). */
bool xattr_is_provenance(const char *name);

/* Value of name for the model directory dir (file NULL) or for the file named file inside dir.
 * g (may be NULL: approval then reads not-required) gives the approval label. Returns the
 * value's length (copied to buf when size > 0), -ENODATA when absent, -ERANGE when size is too
 * small, -EIO on a store error. */
int xattr_get(store_handle *st, queue *q, gate *g, const char *dir, const char *file,
              const char *name, char *buf, size_t size);

/* The provenance names present on dir / file, as a listxattr list (NUL separated). Returns the
 * length (copied when size > 0) or -ERANGE. */
int xattr_list(store_handle *st, queue *q, gate *g, const char *dir, const char *file, char *buf,
               size_t size);

/* setxattr of a provenance name: user.provenance.approve / revoke by an admin records an
 * approval for the unit's current digest (value: the note). 0, or -EPERM (not an admin, or any
 * other provenance name), -ENODATA (not a unit), -EBUSY (no digest yet: pending, analyzing,
 * failed without one), -EINVAL (bad note), -EIO (store). fs/POLICY.md. */
int xattr_set(store_handle *st, queue *q, const char *dir, const char *file, const char *name,
              const char *value, size_t size, bool admin, uint32_t uid, int32_t pid);

#endif
