/* Shared between the FUSE callbacks of the daemon (ops.c, inode.c, entry.c, file.c, dir.c,
 * xattrops.c); not a public interface.
 *
 * Inodes are kept in a table keyed by (st_dev, st_ino) with an O_PATH fd each; the fuse_ino_t is
 * the pointer. Opened files keep their fd in a pf_handle. Every handler has one reply site.
 * Analysis is only ever queued from the callbacks (release of a written file, rename, link,
 * unlink, truncate), never waited for.
 *
 * Locks: pf_fs.inode_lock protects the inode table and every nlookup / vfile / gate cache field
 * of a pf_inode. It is never held across a reply, a store call or a queue call. */
#ifndef PROVFS_OPS_INT_H
#define PROVFS_OPS_INT_H

#include "ops.h"
#include "units.h"
#include "vfile.h"
#include "writehash.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define PROVFS_DIR ".provfs"
#define VFILE_INO_BIT (1ull << 63)
#define PF_MAX_GROUPS 1024

typedef struct pf_inode {
    struct pf_inode *hnext; /* hash chain; inode_lock */
    int fd;                 /* O_PATH; -1 for a virtual file; immutable */
    dev_t dev;              /* immutable */
    ino_t ino;              /* immutable */
    mode_t type;            /* S_IFMT bits; immutable */
    uint64_t nlookup;       /* inode_lock */
    atomic_int writers;     /* handles open for writing */
    atomic_uint write_gen;  /* bumped by every open for writing and truncate by path */
    struct pf_inode *vfile; /* this directory's .provenance inode; inode_lock */
    struct pf_inode *vdir;  /* virtual file: the directory it describes (holds one lookup) */
    /* A cached "policy: nothing to do" for opens of this file (pf_open), valid while the
     * stamp and the namespace epoch are unchanged and the path stays settled; inode_lock. */
    char *gate_path;
    gate_stamp gate_stamp;
    uint64_t gate_epoch;
} pf_inode;

typedef struct pf_handle {
    int fd;
    atomic_int written;
    pf_inode *in;       /* open for writing: its inode (kept by the kernel while open) */
    unsigned write_gen; /* in->write_gen when opened */
    writehash *wh;      /* hash while writing (fs/writehash.h), NULL when not hashed */
    uint32_t uid;       /* who opened it: the writer named in the analysis's audit row */
    int32_t pid;
    char *vdata; /* virtual file: the rendered JSON */
    size_t vlen;
} pf_handle;

struct pf_fs {
    units u;             /* backing, root fd, store and queue for the bookkeeping (units.h) */
    char *backing;       /* immutable (u.backing points here) */
    double timeout;      /* immutable */
    pf_inode root;       /* fd immutable; nlookup unused */
    pthread_mutex_t inode_lock;
    pf_inode **table;    /* inode_lock */
    size_t n_buckets;    /* inode_lock */
    size_t n_inodes;     /* inode_lock */
    gate *gate;          /* set before the loop; thread-safe (policy decisions) */
    atomic_uint_fast64_t ns_epoch; /* bumped by rename, link, unlink: paths cached per inode */
    gid_t admin_gid;     /* set before the loop */
    gid_t groups[PF_MAX_GROUPS]; /* the daemon's own supplementary groups; immutable */
    char *mountpoint;            /* absolute; set before the loop (control requests) */
    int n_groups;              /* immutable */
};

static inline pf_fs *fs_of(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

static inline pf_inode *inode_of(fuse_req_t req, fuse_ino_t ino)
{
    return ino == FUSE_ROOT_ID ? &fs_of(req)->root : (pf_inode *)(uintptr_t)ino;
}

static inline bool is_vfile_name(const char *name)
{
    return strcmp(name, VFILE_NAME) == 0;
}

static inline bool is_hidden_name(pf_fs *fs, const pf_inode *parent, const char *name)
{
    return parent == &fs->root && strcmp(name, PROVFS_DIR) == 0;
}

static inline void proc_path(int fd, char out[64])
{
    snprintf(out, 64, "/proc/self/fd/%d", fd);
}

static inline pf_caller caller_of(fuse_req_t req)
{
    const struct fuse_ctx *ctx = req ? fuse_req_ctx(req) : NULL;
    return (pf_caller){.uid = ctx ? ctx->uid : 0, .pid = ctx ? ctx->pid : 0};
}

/* ---- inode.c: the inode table and the paths of inodes */

/* Mount-relative path of an fd below BACKING ("/" for BACKING); -1 when outside or deleted. */
int fd_path(pf_fs *fs, int fd, char *out, size_t outlen);
int inode_path(pf_fs *fs, pf_inode *in, char *out, size_t outlen);
int child_path(pf_fs *fs, pf_inode *dir, const char *name, char *out, size_t outlen);
/* Drops n lookup references (inode_lock held); frees the inode at 0. */
void unref_locked(pf_fs *fs, pf_inode *in, uint64_t n);
/* Looks name up under parent on BACKING; fills e and takes one lookup reference. 0 or errno. */
int do_lookup(pf_fs *fs, pf_inode *parent, const char *name, struct fuse_entry_param *e);
/* The entry of the file open on fd (any kind of fd): the file this call made, whatever its name
 * names by now. 0 or errno. */
int lookup_open_file(pf_fs *fs, int fd, struct fuse_entry_param *e);
/* Attributes of a directory's .provenance file: its size is that of the JSON right now. */
void vfile_attr(pf_fs *fs, pf_inode *vf, struct stat *st);
int vfile_lookup(pf_fs *fs, pf_inode *dir, struct fuse_entry_param *e);
void inode_table_free(pf_fs *fs);
void pf_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void pf_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets);

/* ---- ops.c: attributes, identity */

/* uid 0, or a member of --admin-gid (primary or supplementary group). */
bool admin_creds(pf_fs *fs, uid_t uid, gid_t gid, const gid_t *groups, int n);
bool caller_is_admin(fuse_req_t req, pf_fs *fs);
void pf_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);

/* ---- entry.c: names */

/* New entries are made with the caller's credentials (entry.c says how). */
typedef struct pf_creds {
    bool switched;
    bool masked; /* this thread's umask was set to the caller's */
} pf_creds;

int creds_enter(fuse_req_t req, pf_creds *saved);
void creds_leave(pf_fs *fs, pf_creds *saved);
/* Refuses names that are not the user's to create. 0 or errno. */
int check_new_name(pf_fs *fs, pf_inode *dir, const char *name);
void pf_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void pf_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev);
void pf_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void pf_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name);
void pf_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char *name);
void pf_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void pf_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void pf_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
               const char *newname, unsigned int flags);

/* ---- file.c: open files and the policy gate */

int gate_read_fd(fuse_req_t req, pf_fs *fs, const char *path, int fd, int flags, gate_open *log);
void policy_log(pf_fs *fs, const gate_open *log, const char *path, pf_caller who);
int gate_move(fuse_req_t req, pf_fs *fs, pf_inode *dir, const char *name, pf_inode *in,
              pf_inode *newdir, gate_open *log, char *from, size_t fromlen);
/* The first change through a handle makes the file's unit pending at once (file.c). */
void handle_changed(fuse_req_t req, pf_handle *h);
void pf_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
               struct fuse_file_info *fi);
void pf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void pf_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void pf_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in_buf, off_t off,
                  struct fuse_file_info *fi);
void pf_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void pf_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void pf_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void pf_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                  struct fuse_file_info *fi);
void pf_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi);
void pf_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
                        struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
                        struct fuse_file_info *fi_out, size_t len, int flags);

/* ---- dir.c */

void pf_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void pf_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
                struct fuse_file_info *fi);
void pf_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void pf_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void pf_statfs(fuse_req_t req, fuse_ino_t ino);

/* ---- xattrops.c */

void pf_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void pf_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void pf_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                 size_t size, int flags);
void pf_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

#endif
