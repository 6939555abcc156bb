/* The FUSE low-level operations (the only file besides main.c that knows libfuse). */
#ifndef PROVFS_OPS_H
#define PROVFS_OPS_H

#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>

#include "control.h"
#include "gate.h"
#include "queue.h"
#include "store.h"

typedef struct pf_fs pf_fs;

/* backing_abs: canonical absolute BACKING path. timeout: entry/attr cache seconds. inode_fds:
 * at most this many O_PATH fds of inodes stay open (--inode-fds; fs/inode.c). */
pf_fs *ops_fs_new(const char *backing_abs, double timeout, size_t inode_fds);
/* Attaches the store and queue (opened after fuse_daemonize) before the loop starts. */
/* g: policy decisions (may be NULL: nothing is refused); admin_gid: --admin-gid. */
void ops_fs_attach(pf_fs *fs, store_handle *st, queue *q, gate *g, gid_t admin_gid);
void ops_fs_free(pf_fs *fs);
/* The mount point (absolute), for control requests that name paths in the mount. */
void ops_fs_set_mountpoint(pf_fs *fs, const char *mountpoint_abs);
/* Users write BACKING directly (allow_shared_backing): a file's recorded identity never follows
 * a change of its metadata (file.c, follow_begin), any ctime move is analysed. */
void ops_fs_set_shared_backing(pf_fs *fs, bool shared);
/* control_fn (fs/control.h) with ctx = the pf_fs: approve/revoke for admins by peer credentials. */
int ops_control(void *ctx, const control_request *rq, char *reply, size_t replylen);
const struct fuse_lowlevel_ops *ops_table(void);
/* The session, before the loop (starts the thread that sends cache invalidations), and NULL
 * once the loop has returned (stops it). */
void ops_fs_set_session(pf_fs *fs, struct fuse_session *se);
/* After fuse_session_mount, before the loop: serve reads of opened files by FUSE passthrough
 * where the kernel offers it (fs/passthrough.c). 0, or a negative errno. */
int pt_install(pf_fs *fs, struct fuse_session *se, bool wanted);

#endif
