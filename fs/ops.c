/* FUSE low-level callbacks: a passthrough to BACKING, plus the provenance surface. This file
 * holds the ops table, init, the attribute callbacks, control requests and the setup; the other
 * callbacks are in inode.c, entry.c, file.c, dir.c and xattrops.c (ops_int.h says what they
 * share and how it is locked). */
#include "ops_int.h"

#include "xattr.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

/* ---------------------------------------------------------------- lifecycle */

static void pf_init(void *userdata, struct fuse_conn_info *conn)
{
    (void)userdata;
    /* Reads are answered with the backing fd (splice): no copy, no page faults in the daemon. */
    if (conn->capable & FUSE_CAP_SPLICE_WRITE)
        conn->want |= FUSE_CAP_SPLICE_WRITE;
    if (conn->capable & FUSE_CAP_SPLICE_MOVE)
        conn->want |= FUSE_CAP_SPLICE_MOVE;
    conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
    /* Requests are read, never spliced in (libfuse would where a root daemon may grow a pipe to
     * 1 MiB): the read hook must see each one (fs/passthrough.c: req_kill_suidgid), and a write
     * must arrive in memory for its hash. */
    conn->want &= ~(unsigned)FUSE_CAP_SPLICE_READ;
    /* POSIX ACLs as on ext4: the kernel enforces them from system.posix_acl_* (passed through to
     * BACKING), and the caller's umask is applied by BACKING's kernel (creds_enter), which
     * ignores it where a default ACL is inherited, instead of being applied here always. */
    if (conn->capable & FUSE_CAP_POSIX_ACL)
        conn->want |= FUSE_CAP_POSIX_ACL;
    if (conn->capable & FUSE_CAP_DONT_MASK)
        conn->want |= FUSE_CAP_DONT_MASK;
    conn->max_write = 1u << 20;
}

void pf_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    pf_fs *fs = fs_of(req);
    pf_inode *in = inode_of(req, ino);
    struct stat st;
    if (in->vdir) {
        vfile_attr(fs, in, &st);
        fuse_reply_attr(req, &st, 0);
        return;
    }
    /* An open file (fstat) is asked through its own fd: no inode fd is needed. */
    pf_handle *h = fi ? (pf_handle *)(uintptr_t)fi->fh : NULL;
    int err = 0;
    if (h && !h->vdata) {
        if (fstat(h->fd, &st) != 0)
            err = errno;
    } else {
        int fd = inode_pin(fs, in);
        if (fd < 0)
            err = -fd;
        else if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
            err = errno;
        if (fd >= 0)
            inode_unpin(fs, in);
    }
    if (err)
        fuse_reply_err(req, err);
    else
        fuse_reply_attr(req, &st, fs->timeout);
}

static void pf_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid,
                       struct fuse_file_info *fi)
{
    bool kill_setid = req_kill_suidgid; /* first: nothing else may read a request before */
    pf_fs *fs = fs_of(req);
    pf_inode *in = inode_of(req, ino);
    pf_handle *h = fi ? (pf_handle *)(uintptr_t)fi->fh : NULL;
    char proc[64];
    int err = 0;
    int fd = -1;
    if (in->vdir) {
        err = EACCES;
        goto out;
    }
    if ((fd = inode_pin(fs, in)) < 0) {
        err = -fd;
        goto out;
    }
    proc_path(fd, proc);
    /* A symlink has no mode or size of its own (ext4 answers the same); never act through its
     * magic link on anything else. */
    if (in->type == S_IFLNK && (valid & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_SIZE))) {
        err = (valid & FUSE_SET_ATTR_MODE) ? EOPNOTSUPP : EINVAL;
        goto out;
    }
    /* mode, owner and times only: the recorded identity follows (size: marked below) */
    pf_follow follow = {0};
    if (!(valid & FUSE_SET_ATTR_SIZE))
        follow_begin(fs, in, fd, &follow);
    if (valid & FUSE_SET_ATTR_MODE) {
        if ((h ? fchmod(h->fd, attr->st_mode) : chmod(proc, attr->st_mode)) != 0)
            goto out_errno;
    }
    if (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
        uid_t uid = (valid & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
        gid_t gid = (valid & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;
        if (fchownat(fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
            goto out_errno;
    }
    if (valid & FUSE_SET_ATTR_SIZE) {
        /* marked before the change: an open meanwhile finds the unit pending */
        if (h)
            handle_changed(req, h, true);
        else
            units_mark_file_fd(&fs->u, caller_of(req), fd, true);
        pf_setid sid = {0};
        int r = kill_setid ? setid_begin(req, ino, h ? h->fd : fd, false, &sid) : 0;
        if (r == 0)
            r = (h ? ftruncate(h->fd, attr->st_size) : truncate(proc, attr->st_size)) != 0 ? errno
                                                                                           : 0;
        setid_end(fs, &sid);
        if (h)
            handle_changed_after(h);
        if (r != 0) {
            err = r;
            goto out;
        }
        if (h) {
            writehash_invalidate(h->wh);
        } else {
            atomic_fetch_add(&in->write_gen, 1); /* a hash being taken is no longer the file's */
            if (fs->u.q)
                queue_known_written(fs->u.q, (uint64_t)in->ino); /* nor one kept */
            cache_changed(fs, in);
            units_mark_file_fd(&fs->u, caller_of(req), fd, false);
        }
    }
    if (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
        struct timespec tv[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_nsec = UTIME_OMIT}};
        if (valid & FUSE_SET_ATTR_ATIME_NOW)
            tv[0].tv_nsec = UTIME_NOW;
        else if (valid & FUSE_SET_ATTR_ATIME)
            tv[0] = attr->st_atim;
        if (valid & FUSE_SET_ATTR_MTIME_NOW)
            tv[1].tv_nsec = UTIME_NOW;
        else if (valid & FUSE_SET_ATTR_MTIME)
            tv[1] = attr->st_mtim;
        int rc;
        if (h)
            rc = futimens(h->fd, tv);
        else if (in->type == S_IFLNK)
            rc = utimensat(fd, "", tv, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
        else
            rc = utimensat(AT_FDCWD, proc, tv, 0);
        if (rc != 0)
            goto out_errno;
    }
    follow_end(fs, in, fd, &follow);
    inode_unpin(fs, in);
    pf_getattr(req, ino, fi);
    if (valid & FUSE_SET_ATTR_SIZE)
        cache_notify(fs, ino);
    return;
out_errno:
    err = errno;
out:
    if (fd >= 0)
        inode_unpin(fs, in);
    fuse_reply_err(req, err);
}

static void pf_readlink(fuse_req_t req, fuse_ino_t ino)
{
    pf_fs *fs = fs_of(req);
    pf_inode *in = inode_of(req, ino);
    char buf[PATH_MAX + 1];
    int fd = in->vdir ? -EINVAL : inode_pin(fs, in);
    ssize_t n = fd < 0 ? -1 : readlinkat(fd, "", buf, sizeof buf);
    int err = fd < 0 ? -fd : errno;
    if (fd >= 0)
        inode_unpin(fs, in);
    if (n < 0)
        fuse_reply_err(req, err);
    else if ((size_t)n >= sizeof buf)
        fuse_reply_err(req, ENAMETOOLONG);
    else {
        buf[n] = '\0';
        fuse_reply_readlink(req, buf);
    }
}

/* uid 0, or a member of --admin-gid (primary or supplementary group). The groups come from
 * /proc, so they are read only when a decision would refuse. */
bool admin_creds(pf_fs *fs, uid_t uid, gid_t gid, const gid_t *groups, int n)
{
    if (uid == 0 || gid == fs->admin_gid)
        return true;
    for (int i = 0; i < n; i++)
        if (groups[i] == fs->admin_gid)
            return true;
    return false;
}

bool caller_is_admin(fuse_req_t req, pf_fs *fs)
{
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    if (admin_creds(fs, ctx->uid, ctx->gid, NULL, 0))
        return true;
    gid_t groups[256];
    int n = fuse_req_getgroups(req, 256, groups);
    return admin_creds(fs, ctx->uid, ctx->gid, groups, n < 256 ? n : 256);
}

/* ---------------------------------------------------------------- table and setup */

static const struct fuse_lowlevel_ops pf_ops = {
    .init = pf_init,
    .lookup = pf_lookup,
    .forget = pf_forget,
    .forget_multi = pf_forget_multi,
    .getattr = pf_getattr,
    .setattr = pf_setattr,
    .readlink = pf_readlink,
    .mknod = pf_mknod,
    .mkdir = pf_mkdir,
    .symlink = pf_symlink,
    .link = pf_link,
    .unlink = pf_unlink,
    .rmdir = pf_rmdir,
    .rename = pf_rename,
    .create = pf_create,
    .open = pf_open,
    .read = pf_read,
    .write_buf = pf_write_buf,
    .flush = pf_flush,
    .release = pf_release,
    .fsync = pf_fsync,
    .fallocate = pf_fallocate,
    .lseek = pf_lseek,
    .copy_file_range = pf_copy_file_range,
    .opendir = pf_opendir,
    .readdir = pf_readdir,
    .releasedir = pf_releasedir,
    .fsyncdir = pf_fsyncdir,
    .statfs = pf_statfs,
    .getxattr = pf_getxattr,
    .listxattr = pf_listxattr,
    .setxattr = pf_setxattr,
    .removexattr = pf_removexattr,
};

/* ---------------------------------------------------------------- control requests */

int ops_control(void *ctx, const control_request *rq, char *reply, size_t replylen)
{
    pf_fs *fs = ctx;
    bool approve = strcmp(rq->verb, "approve") == 0;
    if (!approve && strcmp(rq->verb, "revoke") != 0) {
        snprintf(reply, replylen, "unknown request");
        return EINVAL;
    }
    if (!admin_creds(fs, rq->uid, rq->gid, rq->groups, rq->n_groups)) {
        snprintf(reply, replylen, "permission denied: only admins %s", approve ? "approve" : "revoke");
        return EPERM;
    }
    size_t ml = fs->mountpoint ? strlen(fs->mountpoint) : 0;
    const char *rel = rq->path + ml;
    if (!fs->u.st || !ml || strncmp(rq->path, fs->mountpoint, ml) != 0 ||
        (*rel != '/' && *rel != '\0') || strstr(rel, "/..") || strstr(rel, "/./") ||
        strstr(rel, "//")) {
        snprintf(reply, replylen, "not a path in this store");
        return EINVAL;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", *rel ? rel : "/");
    struct stat sb;
    if (fstatat(fs->root.fd, strcmp(dir, "/") == 0 ? "." : dir + 1, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
        snprintf(reply, replylen, "%s", strerror(errno));
        return ENOENT;
    }
    const char *file = NULL;
    if (S_ISREG(sb.st_mode)) {
        if (units_known(&fs->u, dir))
            file = strrchr(dir, '/') + 1; /* a file unit: it describes itself */
        else
            file = units_split_path(dir);
    } else if (!S_ISDIR(sb.st_mode)) {
        snprintf(reply, replylen, "not a model unit");
        return EINVAL;
    }
    int err = -xattr_set(fs->u.st, fs->u.q, dir, file,
                         approve ? XATTR_PREFIX "approve" : XATTR_PREFIX "revoke", rq->note,
                         strlen(rq->note), true, rq->uid, rq->pid);
    snprintf(reply, replylen, "%s",
             err == 0        ? (approve ? "approved" : "revoked")
             : err == ENODATA ? "not a model unit"
             : err == EBUSY   ? "not analysed yet (pending): try again when it is ready"
             : err == EINVAL  ? "bad note"
                              : strerror(err));
    return err;
}

void ops_fs_set_mountpoint(pf_fs *fs, const char *mountpoint_abs)
{
    free(fs->mountpoint);
    fs->mountpoint = mountpoint_abs ? strdup(mountpoint_abs) : NULL;
}

void ops_fs_set_shared_backing(pf_fs *fs, bool shared)
{
    fs->shared_backing = shared;
}

const struct fuse_lowlevel_ops *ops_table(void)
{
    return &pf_ops;
}

pf_fs *ops_fs_new(const char *backing_abs, double timeout, size_t inode_fds)
{
    pf_fs *fs = calloc(1, sizeof *fs);
    if (!fs)
        return NULL;
    fs->backing = strdup(backing_abs);
    fs->n_buckets = 4096;
    fs->table = calloc(fs->n_buckets, sizeof *fs->table);
    fs->mount_fd = -1;
    fs->root.fd = open(backing_abs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (!fs->backing || !fs->table || fs->root.fd < 0 ||
        inode_fds_init(fs, inode_fds ? inode_fds : 1) != 0) {
        if (fs->mount_fd >= 0)
            close(fs->mount_fd);
        if (fs->root.fd >= 0)
            close(fs->root.fd);
        free(fs->table);
        free(fs->backing);
        free(fs);
        return NULL;
    }
    fs->n_groups = getgroups(PF_MAX_GROUPS, fs->groups);
    if (fs->n_groups < 0)
        fs->n_groups = 0;
    fs->u.backing = fs->backing;
    fs->u.backing_len = strcmp(backing_abs, "/") == 0 ? 0 : strlen(backing_abs);
    fs->u.root_fd = fs->root.fd;
    fs->timeout = timeout;
    fs->root.type = S_IFDIR;
    fs->root.nlookup = 2;
    struct stat st;
    if (fstat(fs->root.fd, &st) == 0) {
        fs->root.dev = st.st_dev;
        fs->root.ino = st.st_ino;
    }
    pthread_mutex_init(&fs->inode_lock, NULL);
    pthread_mutex_init(&fs->notify_lock, NULL);
    pthread_mutex_init(&fs->pt_lock, NULL);
    pthread_cond_init(&fs->pt_cond, NULL);
    fs->pt_dev_fd = -1;
    pthread_cond_init(&fs->notify_cond, NULL);
    return fs;
}

void ops_fs_attach(pf_fs *fs, store_handle *st, queue *q, gate *g, gid_t admin_gid)
{
    fs->u.st = st;
    fs->u.q = q;
    fs->gate = g;
    fs->admin_gid = admin_gid;
}

void ops_fs_free(pf_fs *fs)
{
    if (!fs)
        return;
    ops_fs_set_session(fs, NULL);
    inode_table_free(fs);
    free(fs->root.vfile);
    close(fs->root.fd);
    pthread_mutex_destroy(&fs->inode_lock);
    pthread_mutex_destroy(&fs->notify_lock);
    pthread_mutex_destroy(&fs->pt_lock);
    pthread_cond_destroy(&fs->pt_cond);
    pthread_cond_destroy(&fs->notify_cond);
    free(fs->mountpoint);
    free(fs->backing);
    free(fs);
}
