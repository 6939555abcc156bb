/* Directory streams (opendir, readdir) and statfs. The root's .provfs and every .provenance
 * name are left out of listings. */
#include "ops_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/statvfs.h>
#include <unistd.h>

typedef struct pf_dir {
    DIR *dp;
    off_t offset;
    struct dirent *entry;
    bool is_root;
} pf_dir;

void pf_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    pf_fs *fs = fs_of(req);
    pf_inode *in = inode_of(req, ino);
    int err = 0;
    pf_dir *d = calloc(1, sizeof *d);
    if (!d) {
        err = ENOMEM;
        goto out;
    }
    int ifd = -1;
    if (in->vdir)
        err = ENOTDIR;
    else
        err = inode_pin_err(fs, in, &ifd);
    if (err)
        goto out;
    /* The stream has an fd of its own: not the inode's, not within --inode-fds. */
    int fd = openat(ifd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        err = errno;
    inode_unpin(fs, in);
    if (fd < 0)
        goto out;
    d->dp = fdopendir(fd);
    if (!d->dp) {
        err = errno;
        close(fd);
        goto out;
    }
    d->is_root = in == &fs->root;
    fi->fh = (uintptr_t)d;
    if (fuse_reply_open(req, fi) != 0) {
        closedir(d->dp);
        free(d);
    }
    return;
out:
    free(d);
    fuse_reply_err(req, err);
}

void pf_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
                struct fuse_file_info *fi)
{
    (void)ino;
    pf_dir *d = (pf_dir *)(uintptr_t)fi->fh;
    char *buf = calloc(1, size);
    size_t used = 0;
    int err = 0;
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    if (offset != d->offset) {
        seekdir(d->dp, offset);
        d->entry = NULL;
        d->offset = offset;
    }
    for (;;) {
        if (!d->entry) {
            errno = 0;
            d->entry = readdir(d->dp);
            if (!d->entry) {
                err = errno;
                break;
            }
        }
        const char *name = d->entry->d_name;
        off_t next = d->entry->d_off;
        bool skip = (d->is_root && strcmp(name, PROVFS_DIR) == 0) || is_vfile_name(name);
        if (!skip) {
            struct stat st = {.st_ino = d->entry->d_ino, .st_mode = d->entry->d_type << 12};
            size_t n = fuse_add_direntry(req, buf + used, size - used, name, &st, next);
            if (n > size - used)
                break;
            used += n;
        }
        d->entry = NULL;
        d->offset = next;
    }
    if (err && used == 0)
        fuse_reply_err(req, err);
    else
        fuse_reply_buf(req, buf, used);
    free(buf);
}

void pf_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    pf_dir *d = (pf_dir *)(uintptr_t)fi->fh;
    closedir(d->dp);
    free(d);
    fuse_reply_err(req, 0);
}

void pf_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    (void)ino;
    pf_dir *d = (pf_dir *)(uintptr_t)fi->fh;
    int fd = dirfd(d->dp);
    int err = (datasync ? fdatasync(fd) : fsync(fd)) != 0 ? errno : 0;
    fuse_reply_err(req, err);
}

void pf_statfs(fuse_req_t req, fuse_ino_t ino)
{
    pf_fs *fs = fs_of(req);
    pf_inode *in = inode_of(req, ino);
    pf_inode *at = in->vdir ? in->vdir : in;
    struct statvfs sv;
    int fd;
    int err = inode_pin_err(fs, at, &fd);
    if (!err && fstatvfs(fd, &sv) != 0)
        err = errno;
    inode_unpin_fd(fs, at, fd);
    if (err)
        fuse_reply_err(req, err);
    else
        fuse_reply_statfs(req, &sv);
}

