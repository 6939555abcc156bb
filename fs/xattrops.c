/* The xattr callbacks: user.provenance.* answered from the store (fs/xattr.c renders them),
 * every other name passed through to BACKING. */
#include "ops_int.h"

#include "xattr.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/xattr.h>

/* Never ENOSYS: the kernel would switch xattrs off for the whole mount. */
static int xattr_errno(int err)
{
    return err == ENOSYS ? EOPNOTSUPP : err;
}

/* The unit directory and file name an inode's provenance xattrs describe; false when none. */
static bool provenance_target(pf_fs *fs, pf_inode *in, char *dir, size_t dirlen,
                              const char **file)
{
    if (!fs->u.st || in->vdir || (in->type != S_IFDIR && in->type != S_IFREG))
        return false;
    if (inode_path(fs, in, dir, dirlen) != 0)
        return false;
    if (in->type == S_IFREG && units_known(&fs->u, dir)) {
        /* A GGUF file is a unit of its own: its xattrs describe it, not its directory. */
        *file = strrchr(dir, '/') + 1;
        return true;
    }
    *file = in->type == S_IFDIR ? NULL : units_split_path(dir);
    return true;
}

void pf_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    pf_fs *fs = fs_of(req);
    pf_inode *in = inode_of(req, ino);
    char *value = NULL;
    int err = 0;
    ssize_t len;
    if (in->vdir) {
        err = ENODATA;
        goto out;
    }
    if (xattr_is_provenance(name)) {
        char dir[PATH_MAX];
        const char *file = NULL;
        if (!provenance_target(fs, in, dir, sizeof dir, &file)) {
            err = ENODATA;
            goto out;
        }
        value = size ? malloc(size) : NULL;
        if (size && !value) {
            err = ENOMEM;
            goto out;
        }
        len = xattr_get(fs->u.st, fs->u.q, fs->gate, dir, file, name, value, size);
    } else {
        /* Every other name passes through, also security.capability and the xattrs of symlinks
         * (the magic link of an O_PATH fd names the symlink itself, never its target). */
        value = size ? malloc(size) : NULL;
        if (size && !value) {
            err = ENOMEM;
            goto out;
        }
        int fd;
        if ((err = inode_pin_err(fs, in, &fd)) != 0)
            goto out;
        char proc[64];
        proc_path(fd, proc);
        len = getxattr(proc, name, value, size);
        if (len < 0)
            len = -errno;
        inode_unpin(fs, in);
    }
    if (len < 0)
        err = (int)-len;
    else if (size == 0)
        fuse_reply_xattr(req, (size_t)len);
    else
        fuse_reply_buf(req, value, (size_t)len);
out:
    if (err)
        fuse_reply_err(req, xattr_errno(err));
    free(value);
}

void pf_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    pf_fs *fs = fs_of(req);
    pf_inode *in = inode_of(req, ino);
    char *list = NULL;
    int err = 0;
    ssize_t used = 0;
    if (in->vdir) {
        fuse_reply_xattr(req, 0);
        return;
    }
    int fd;
    if ((err = inode_pin_err(fs, in, &fd)) != 0)
        goto out;
    char proc[64];
    proc_path(fd, proc);
    ssize_t native = listxattr(proc, NULL, 0);
    if (native < 0) {
        if (errno != ENOTSUP) {
            err = errno;
            goto out;
        }
        native = 0;
    }
    char dir[PATH_MAX];
    const char *file = NULL;
    bool ours = provenance_target(fs, in, dir, sizeof dir, &file);
    int extra = ours ? xattr_list(fs->u.st, fs->u.q, fs->gate, dir, file, NULL, 0) : 0;
    if (extra < 0)
        extra = 0;
    size_t cap = (size_t)native + (size_t)extra + 256; /* room for a name added meanwhile */
    list = malloc(cap);
    if (!list) {
        err = ENOMEM;
        goto out;
    }
    if (native > 0) {
        used = listxattr(proc, list, cap);
        if (used < 0) {
            err = errno == ERANGE ? EAGAIN : errno;
            goto out;
        }
    }
    if (ours) {
        int n = xattr_list(fs->u.st, fs->u.q, fs->gate, dir, file, list + used,
                           cap - (size_t)used);
        if (n > 0)
            used += n;
    }
    if (size == 0)
        fuse_reply_xattr(req, (size_t)used);
    else if ((size_t)used > size)
        err = ERANGE;
    else
        fuse_reply_buf(req, list, (size_t)used);
out:
    inode_unpin_fd(fs, in, fd);
    if (err)
        fuse_reply_err(req, xattr_errno(err));
    free(list);
}

void pf_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                 size_t size, int flags)
{
    pf_fs *fs = fs_of(req);
    pf_inode *in = inode_of(req, ino);
    int err = 0;
    char dir[PATH_MAX];
    const char *file = NULL;
    if (in->vdir)
        err = EACCES;
    else if (xattr_is_provenance(name) &&
             !provenance_target(fs, in, dir, sizeof dir, &file))
        err = EPERM;
    else if (xattr_is_provenance(name)) {
        /* Only the approve/revoke controls, only for admins (xattr_set says which). */
        pf_caller who = caller_of(req);
        err = -xattr_set(fs->u.st, fs->u.q, dir, file, name, value, size, caller_is_admin(req, fs),
                         who.uid, who.pid);
    }
    else {
        int fd;
        if ((err = inode_pin_err(fs, in, &fd)) == 0) {
            char proc[64];
            proc_path(fd, proc);
            pf_follow follow;
            follow_begin(fs, in, fd, &follow);
            if (setxattr(proc, name, value, size, flags) != 0)
                err = errno;
            else
                follow_end(fs, in, fd, &follow);
            inode_unpin(fs, in);
        }
    }
    fuse_reply_err(req, xattr_errno(err));
}

void pf_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    pf_fs *fs = fs_of(req);
    pf_inode *in = inode_of(req, ino);
    int err = 0;
    if (in->vdir)
        err = EACCES;
    else if (xattr_is_provenance(name))
        err = EPERM;
    else {
        int fd;
        if ((err = inode_pin_err(fs, in, &fd)) == 0) {
            char proc[64];
            proc_path(fd, proc);
            pf_follow follow;
            follow_begin(fs, in, fd, &follow);
            if (removexattr(proc, name) != 0)
                err = errno;
            else
                follow_end(fs, in, fd, &follow);
            inode_unpin(fs, in);
        }
    }
    fuse_reply_err(req, xattr_errno(err));
}

