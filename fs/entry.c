/* Names: lookup, and the callbacks that make, link, remove and rename entries, each acting on
 * the directory fds of the inode table (no name is ever resolved from the root). New entries are
 * made with the caller's credentials (creds_enter). The store's and the queue's records follow a
 * change before its reply (units.c). */
#include "ops_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static void mark_inode_dir(pf_fs *fs, pf_caller who, pf_inode *dir)
{
    char path[PATH_MAX];
    if (inode_path(fs, dir, path, sizeof path) == 0)
        units_mark_dir(&fs->u, who, path, false);
}

void pf_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    pf_fs *fs = fs_of(req);
    pf_inode *dir = inode_of(req, parent);
    struct fuse_entry_param e;
    int err;
    if (dir->vdir)
        err = ENOTDIR;
    else if (is_hidden_name(fs, dir, name))
        err = ENOENT;
    else if (is_vfile_name(name))
        err = vfile_lookup(fs, dir, &e);
    else
        err = do_lookup(fs, dir, name, &e);
    if (err)
        fuse_reply_err(req, err);
    else
        fuse_reply_entry(req, &e);
}

/* ---------------------------------------------------------------- acting as the caller */

/* New entries are made with the caller's credentials, not made as root and handed over: the
 * filesystem user and group and the supplementary groups of this thread are switched to the
 * caller's for the one system call (raw syscalls: glibc's wrappers would switch every thread).
 * Nothing is ever owned by root on the way, so no name a user controls (a symlink or FIFO swapped
 * in by another path into BACKING) can be chowned, chmodded or opened as root, and the kernel
 * applies set-gid directories, the umask the caller sent and default ACLs itself. Switching the
 * fsuid away from 0 drops the filesystem capabilities of this thread until it is switched back. */
int creds_enter(fuse_req_t req, pf_creds *saved)
{
    saved->switched = false;
    saved->masked = false;
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    /* The umask is per process unless a thread has its own fs_struct: give each FUSE thread
     * one, once, then set the caller's umask around the call (FUSE_CAP_DONT_MASK). */
    static _Thread_local bool own_fs;
    if (!own_fs && unshare(CLONE_FS) == 0)
        own_fs = true;
    if (!own_fs)
        return EIO; /* the caller's umask cannot be applied: create nothing */
    umask(ctx->umask);
    saved->masked = true;
    if (ctx->uid == 0 && ctx->gid == 0)
        return 0;
    gid_t groups[PF_MAX_GROUPS];
    int n = fuse_req_getgroups(req, PF_MAX_GROUPS, groups);
    if (n < 0)
        n = 0; /* the caller is gone or the groups unreadable: its primary group only */
    if (n > PF_MAX_GROUPS)
        n = PF_MAX_GROUPS; /* beyond that the kernel's own check has seen more than BACKING will */
    if (syscall(SYS_setgroups, (size_t)n, groups) != 0)
        return errno;
    syscall(SYS_setfsgid, ctx->gid);
    syscall(SYS_setfsuid, ctx->uid);
    saved->switched = true;
    /* setfsuid/setfsgid report no error: check that the switch took. */
    if ((uid_t)syscall(SYS_setfsuid, (uid_t)-1) != ctx->uid ||
        (gid_t)syscall(SYS_setfsgid, (gid_t)-1) != ctx->gid)
        return EPERM;
    return 0;
}

void creds_leave(pf_fs *fs, pf_creds *saved)
{
    if (saved->masked)
        umask(0);
    saved->masked = false;
    if (!saved->switched)
        return;
    syscall(SYS_setfsuid, 0);
    syscall(SYS_setfsgid, 0);
    if (syscall(SYS_setgroups, (size_t)fs->n_groups, fs->groups) != 0 ||
        (uid_t)syscall(SYS_setfsuid, (uid_t)-1) != 0) {
        /* A worker thread left with a user's identity would act as that user for the next
         * caller: never go on. */
        fprintf(stderr, "provfs: cannot restore the daemon's credentials: %s\n", strerror(errno));
        abort();
    }
    saved->switched = false;
}

/* ---------------------------------------------------------------- creating names */

/* Refuses names that are not the user's to create. 0 or errno. */
int check_new_name(pf_fs *fs, pf_inode *dir, const char *name)
{
    if (dir->vdir)
        return ENOTDIR;
    if (is_vfile_name(name) || is_hidden_name(fs, dir, name))
        return EACCES;
    return 0;
}

static void reply_new_entry(fuse_req_t req, pf_fs *fs, pf_inode *dir, const char *name, int err)
{
    struct fuse_entry_param e;
    if (!err)
        err = do_lookup(fs, dir, name, &e);
    if (err)
        fuse_reply_err(req, err);
    else
        fuse_reply_entry(req, &e);
}

void pf_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    pf_fs *fs = fs_of(req);
    pf_inode *dir = inode_of(req, parent);
    int dfd = -1;
    int err = check_new_name(fs, dir, name);
    pf_creds cr = {0};
    if (!err)
        err = inode_pin_err(fs, dir, &dfd);
    if (!err && !(err = creds_enter(req, &cr))) {
        int rc = S_ISFIFO(mode) ? mkfifoat(dfd, name, mode) : mknodat(dfd, name, mode, rdev);
        err = rc != 0 ? errno : 0;
    }
    creds_leave(fs, &cr);
    inode_unpin_fd(fs, dir, dfd);
    pf_caller who = caller_of(req);
    if (!err) /* a special file under a unit's name fails the unit */
        mark_inode_dir(fs, who, dir);
    reply_new_entry(req, fs, dir, name, err);
}

void pf_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    pf_fs *fs = fs_of(req);
    pf_inode *dir = inode_of(req, parent);
    int dfd = -1;
    int err = check_new_name(fs, dir, name);
    pf_creds cr = {0};
    if (!err)
        err = inode_pin_err(fs, dir, &dfd);
    if (!err && !(err = creds_enter(req, &cr)))
        err = mkdirat(dfd, name, mode) != 0 ? errno : 0;
    creds_leave(fs, &cr);
    inode_unpin_fd(fs, dir, dfd);
    reply_new_entry(req, fs, dir, name, err);
}

void pf_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    pf_fs *fs = fs_of(req);
    pf_inode *dir = inode_of(req, parent);
    pf_caller who = caller_of(req);
    int dfd = -1;
    int err = check_new_name(fs, dir, name);
    pf_creds cr = {0};
    if (!err)
        err = inode_pin_err(fs, dir, &dfd);
    if (!err && !(err = creds_enter(req, &cr)))
        err = symlinkat(link, dfd, name) != 0 ? errno : 0;
    creds_leave(fs, &cr);
    inode_unpin_fd(fs, dir, dfd);
    if (!err) /* before the reply: the kernel may forget dir once it has it */
        mark_inode_dir(fs, who, dir);
    reply_new_entry(req, fs, dir, name, err);
}

void pf_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char *name)
{
    pf_fs *fs = fs_of(req);
    atomic_fetch_add(&fs->ns_epoch, 1);
    pf_inode *in = inode_of(req, ino);
    pf_inode *dir = inode_of(req, parent);
    pf_caller who = caller_of(req);
    gate_open log = {0};
    char from[PATH_MAX] = "";
    int err = in->vdir ? EACCES : check_new_name(fs, dir, name);
    if (!err)
        err = gate_move(req, fs, NULL, NULL, in, dir, &log, from, sizeof from);
    int fd = -1, dfd = -1;
    if (!err)
        err = inode_pin_err(fs, in, &fd);
    if (!err)
        err = inode_pin_err(fs, dir, &dfd);
    if (!err) {
        char proc[64];
        proc_path(fd, proc);
        pf_follow follow;
        follow_begin(fs, in, fd, &follow);
        if (linkat(AT_FDCWD, proc, dfd, name, AT_SYMLINK_FOLLOW) != 0)
            err = errno;
        else
            follow_end(fs, in, fd, &follow); /* the link count moved the file's ctime */
    }
    inode_unpin_fd(fs, dir, dfd);
    inode_unpin_fd(fs, in, fd);
    char path[PATH_MAX];
    bool have_path = !err && child_path(fs, dir, name, path, sizeof path) == 0;
    if (!err)
        mark_inode_dir(fs, who, dir);
    if (have_path)
        units_mark_file(&fs->u, who, path, false);
    reply_new_entry(req, fs, dir, name, err);
    policy_log(fs, &log, from, who);
}

void pf_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    pf_fs *fs = fs_of(req);
    atomic_fetch_add(&fs->ns_epoch, 1);
    pf_inode *dir = inode_of(req, parent);
    pf_caller who = caller_of(req);
    char dpath[PATH_MAX], path[PATH_MAX];
    bool have_path = inode_path(fs, dir, dpath, sizeof dpath) == 0 &&
                     snprintf(path, sizeof path, "%s%s%s", dpath, strcmp(dpath, "/") ? "/" : "",
                              name) < (int)sizeof path;
    int dfd = -1;
    int err = check_new_name(fs, dir, name);
    if (!err)
        err = inode_pin_err(fs, dir, &dfd);
    if (!err && unlinkat(dfd, name, 0) != 0)
        err = errno;
    inode_unpin_fd(fs, dir, dfd);
    /* The records follow before the reply (a name made again at once is a new file). */
    if (!err && have_path) {
        units_removed(&fs->u, path, false);
        units_mark_dir(&fs->u, who, dpath, false);
    } else if (!err) {
        mark_inode_dir(fs, who, dir);
    }
    fuse_reply_err(req, err);
}

void pf_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    pf_fs *fs = fs_of(req);
    pf_inode *dir = inode_of(req, parent);
    char path[PATH_MAX];
    bool have_path = child_path(fs, dir, name, path, sizeof path) == 0;
    int dfd = -1;
    int err = check_new_name(fs, dir, name);
    if (!err)
        err = inode_pin_err(fs, dir, &dfd);
    if (!err && unlinkat(dfd, name, AT_REMOVEDIR) != 0)
        err = errno;
    inode_unpin_fd(fs, dir, dfd);
    if (!err && have_path)
        units_removed(&fs->u, path, true);
    fuse_reply_err(req, err);
}

void pf_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
               const char *newname, unsigned int flags)
{
    pf_fs *fs = fs_of(req);
    atomic_fetch_add(&fs->ns_epoch, 1);
    pf_inode *dir = inode_of(req, parent);
    pf_inode *newdir = inode_of(req, newparent);
    char from[PATH_MAX], to[PATH_MAX];
    bool have_paths = child_path(fs, dir, name, from, sizeof from) == 0 &&
                      child_path(fs, newdir, newname, to, sizeof to) == 0;
    pf_caller who = caller_of(req);
    gate_open log = {0}, log_back = {0};
    char gated_from[PATH_MAX], gated_back[PATH_MAX];
    int err = check_new_name(fs, dir, name);
    if (!err)
        err = check_new_name(fs, newdir, newname);
    /* The bytes that move: the source to newdir, and with an exchange the target back to dir. */
    if (!err)
        err = gate_move(req, fs, dir, name, NULL, newdir, &log, gated_from, sizeof gated_from);
    if (!err && (flags & RENAME_EXCHANGE))
        err = gate_move(req, fs, newdir, newname, NULL, dir, &log_back, gated_back,
                        sizeof gated_back);
    int dfd = -1, ndfd = -1;
    if (!err)
        err = inode_pin_err(fs, dir, &dfd);
    if (!err)
        err = inode_pin_err(fs, newdir, &ndfd);
    /* a renamed file's ctime moves: its recorded identity follows (not an exchange's) */
    pf_follow follow = {0};
    if (!err && !(flags & RENAME_EXCHANGE))
        follow_begin_name(fs, dfd, name, &follow);
    if (!err && renameat2(dfd, name, ndfd, newname, flags) != 0)
        err = errno;
    /* The queue and the store follow before the reply: an open of the new name that the caller
     * makes after rename() returns finds the unit (and its decision) already there. */
    if (!err && have_paths) {
        units_renamed(&fs->u, who, ndfd, newname, from, to, flags);
        follow_end_name(fs, ndfd, newname, to, &follow);
    }
    inode_unpin_fd(fs, newdir, ndfd);
    inode_unpin_fd(fs, dir, dfd);
    fuse_reply_err(req, err);
    policy_log(fs, &log, gated_from, who);
    policy_log(fs, &log_back, gated_back, who);
}

