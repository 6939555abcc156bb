/* Shared between the FUSE callbacks of the daemon (ops.c, inode.c, entry.c, file.c, dir.c,
 * xattrops.c); not a public interface.
 *
 * Inodes are kept in a table keyed by (st_dev, st_ino); the fuse_ino_t is the pointer. Each has
 * an O_PATH fd on BACKING while it is in use or recently used, and a file handle to open it again
 * once that fd was closed to keep within --inode-fds (inode.c). A callback pins the fd of every
 * inode it acts on (inode_pin / inode_unpin): a pinned fd is never closed, so its number is never
 * reused for another file while a thread acts on it. Opened files keep their own fd in a
 * pf_handle, outside that budget. Every handler has one reply site.
 * Analysis is only ever queued from the callbacks (release of a written file, rename, link,
 * unlink, truncate), never waited for.
 *
 * Locks: pf_fs.inode_lock protects the inode table, the fd budget's list and counters and every
 * fd / pins / nlookup / vfile / gate cache field of a pf_inode. It is never held across a reply,
 * a store call, a queue call or an open_by_handle_at. */
#ifndef PROVFS_OPS_INT_H
#define PROVFS_OPS_INT_H

#include "ops.h"
#include "units.h"
#include "vfile.h"
#include "writehash.h"

#include <fcntl.h>
#include <linux/capability.h>
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
    int fd;                 /* O_PATH, -1 while closed (or a virtual file); inode_lock: read it
                             * only through inode_pin() */
    unsigned pins;          /* uses of fd under way (fd stays open while > 0); inode_lock */
    bool fd_for_life;       /* no file handle: fd stays open until forgotten; immutable */
    bool in_lru;            /* on pf_fs's list of unpinned fds; inode_lock */
    struct pf_inode *lru_prev, *lru_next; /* inode_lock */
    struct file_handle *fh; /* to open it again once fd was closed; NULL for life fds; immutable */
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
    struct timespec gate_ctime; /* the file's ctime when that answer was given (file.c) */
    /* The file as the last open saw it (size, mtime, ctime of its fd): an open that finds it
     * the same lets the kernel keep the pages it cached (keep_cache). Dropped by every change
     * the daemon makes to the file (cache_changed); inode_lock. */
    bool cache_valid;
    /* Opens the kernel serves by passthrough (sharing one backing id) and the others (through
     * its page cache or direct_io); never both at once (fs/passthrough.c); pf_fs.pt_lock. */
    unsigned pt_opens, cached_opens;
    int32_t pt_id;
    off_t cache_size;
    struct timespec cache_mtime, cache_ctime;
} pf_inode;

/* How the kernel serves an open file: through its page cache, direct_io, or passthrough. */
typedef enum { PF_IO_NONE, PF_IO_CACHED, PF_IO_DIRECT, PF_IO_PASSTHROUGH, PF_IO_BUSY } pf_io;

typedef struct pf_handle {
    int fd;
    pf_io io;        /* counted in io_in's opens until released (pt_leave) */
    pf_inode *io_in;
    atomic_int written; /* changed through this handle, creating or truncating it included */
    atomic_int wrote;   /* bytes written, truncated or copied after the open */
    atomic_bool marked; /* the first change found a unit to mark (or could not tell) */
    /* changes counts every change, once before it and once after; closed_at is its value when
     * the last close marked the unit (handle_closed): they differ while a change is unmarked */
    atomic_uint changes;
    atomic_uint closed_at;
    /* when it marked last: the queue's count of analyses begun (queue_started) and the time;
     * a change after an analysis began marks again (handle_changed) */
    _Atomic uint64_t mark_started;
    _Atomic int64_t mark_ms;
    pf_inode *in;       /* open for writing: its inode (kept by the kernel while open) */
    unsigned write_gen; /* in->write_gen when opened */
    uint64_t known_clock; /* queue_known_clock at the release, for a kept hash */
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
    bool shared_backing; /* allow_shared_backing; set before the loop */
    pf_inode root;       /* fd immutable, never closed nor counted; nlookup unused */
    int mount_fd;        /* BACKING opened for reading: open_by_handle_at's mount; -1: no handles */
    int mnt_id;          /* BACKING's mount: handles of other mounts are not kept */
    size_t fd_budget;    /* --inode-fds; immutable */
    size_t n_fds;        /* open fds of inodes with a handle (pinned or not); inode_lock */
    size_t n_fds_for_life; /* open fds of inodes without one; inode_lock */
    pf_inode *lru_head, *lru_tail; /* unpinned fds with a handle, most recent first; inode_lock */
    atomic_bool warned_no_handle;
    pthread_mutex_t inode_lock;
    pf_inode **table;    /* inode_lock */
    size_t n_buckets;    /* inode_lock */
    size_t n_inodes;     /* inode_lock */
    gate *gate;          /* set before the loop; thread-safe (policy decisions) */
    atomic_uint_fast64_t ns_epoch; /* bumped by rename, link, unlink: paths cached per inode */
    gid_t admin_gid;     /* set before the loop */
    gid_t groups[PF_MAX_GROUPS]; /* the daemon's own supplementary groups; immutable */
    char *mountpoint;            /* absolute; set before the loop (control requests) */
    /* Invalidations of the kernel's cached pages, sent by a thread of their own (a notify can
     * block on the kernel, which may wait for a request of this daemon): cache_notify. */
    struct fuse_session *se;     /* set before the loop, NULL after it */
    pthread_t notifier;
    bool notifier_running;
    bool notify_stop;            /* notify_lock */
    pthread_mutex_t notify_lock;
    pthread_cond_t notify_cond;
    fuse_ino_t notify_q[256];    /* pending inodes; notify_lock */
    size_t notify_n;             /* notify_lock */
    int n_groups;              /* immutable */
    /* passthrough (fs/passthrough.c) */
    bool pt_wanted;              /* set before the loop */
    bool pt_offered;             /* the kernel offered it in INIT, and it is wanted */
    bool killpriv_offered;       /* FUSE_HANDLE_KILLPRIV_V2 offered in INIT */
    bool killpriv_on;            /* and taken in the INIT reply */
    bool pt_init_done;           /* INIT replied: no later message is taken for it */
    atomic_bool pt_on;           /* accepted in INIT and not refused since */
    uint64_t pt_init_unique;     /* the INIT request's id */
    int pt_dev_fd;               /* the session's /dev/fuse */
    pthread_mutex_t pt_lock;     /* pt_opens, cached_opens, pt_id of every inode */
    pthread_cond_t pt_cond;      /* an inode's last passthrough open was released */
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

/* ---- passthrough.c */

/* The request this thread read last asks to drop set-ID bits (FUSE_HANDLE_KILLPRIV_V2). */
extern _Thread_local bool req_kill_suidgid;

pf_io pt_choose(pf_fs *fs, pf_inode *in, int fd, bool direct, bool may_start, bool write,
                int32_t *id);
void pt_leave(pf_fs *fs, pf_inode *in, pf_io io);
/* fuse_reply_open / fuse_reply_create naming backing id (0: served as before). */
int pt_reply_open(fuse_req_t req, struct fuse_file_info *fi, int32_t id);
int pt_reply_create(fuse_req_t req, const struct fuse_entry_param *e, struct fuse_file_info *fi,
                    int32_t id);

/* ---- inode.c: the inode table and the paths of inodes */

/* Mount-relative path of an fd below BACKING ("/" for BACKING); -1 when outside or deleted. */
int fd_path(pf_fs *fs, int fd, char *out, size_t outlen);
int inode_path(pf_fs *fs, pf_inode *in, char *out, size_t outlen);
/* The inode of (dev, ino) in the table, or NULL (inode_lock held). */
pf_inode *inode_find_locked(pf_fs *fs, dev_t dev, ino_t ino);
int child_path(pf_fs *fs, pf_inode *dir, const char *name, char *out, size_t outlen);
/* Drops n lookup references (inode_lock held); frees the inode at 0. */
void unref_locked(pf_fs *fs, pf_inode *in, uint64_t n);
/* Looks name up under parent on BACKING; fills e and takes one lookup reference. 0 or errno. */
int do_lookup(pf_fs *fs, pf_inode *parent, const char *name, struct fuse_entry_param *e);
/* The entry of the file open on fd (any kind of fd): the file this call made, whatever its name
 * (name in dirfd, the name it was opened by; -1 and NULL: unknown) names by now. 0 or errno. */
int lookup_open_file(pf_fs *fs, int fd, int dirfd, const char *name, struct fuse_entry_param *e);
/* Attributes of a directory's .provenance file: size 0 (the JSON is rendered at open only,
 * which is direct_io). */
void vfile_attr(pf_fs *fs, pf_inode *vf, struct stat *st);
int vfile_lookup(pf_fs *fs, pf_inode *dir, struct fuse_entry_param *e);
void inode_table_free(pf_fs *fs);
/* The O_PATH fd of in, pinned: open (and that very file) until inode_unpin(in). For the root,
 * its fd. Reopened from the file handle when it was closed; -errno when the file is gone
 * (-ENOENT) or cannot be opened. Never for a virtual file. Pin before creds_enter (reopening
 * needs the daemon's capabilities). */
int inode_pin(pf_fs *fs, pf_inode *in);
void inode_unpin(pf_fs *fs, pf_inode *in);
/* inode_pin in a callback's error flow: 0 with *fd set, or errno with *fd < 0. */
static inline int inode_pin_err(pf_fs *fs, pf_inode *in, int *fd)
{
    *fd = inode_pin(fs, in);
    return *fd < 0 ? -*fd : 0;
}
/* Unpins in when fd came from a successful inode_pin (fd < 0: nothing was pinned). */
static inline void inode_unpin_fd(pf_fs *fs, pf_inode *in, int fd)
{
    if (fd >= 0)
        inode_unpin(fs, in);
}
/* Sets up the fd budget and the mount fd (ops_fs_new). 0 or errno. */
int inode_fds_init(pf_fs *fs, size_t budget);
void pf_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);

/* ---- inode.c: the kernel's page cache of regular files
 *
 * An open sets keep_cache when the file (fstat of the new fd: size, mtime, ctime) is the same as
 * at the inode's last open: the pages the kernel cached then are still the file's. A file changed
 * in BACKING behind the daemon's back differs, so its pages are dropped at that open. */

/* Records the stamp of the file open on fd; true when it is the one recorded before. */
bool cache_keep(pf_fs *fs, pf_inode *in, int fd);
/* A change the daemon makes to in's bytes or size: the next open drops the cached pages. */
void cache_changed(pf_fs *fs, pf_inode *in);

/* A change of metadata only (mode, owner, times, xattrs, a new link) through the mount moves the
 * file's ctime, which the gate compares with what the analysis recorded (fs/README.md, "Policy
 * enforcement"): the recorded identity follows such a change when nothing could have written the
 * file meanwhile (no handle open for writing, before or after; none opened between), so it costs
 * no analysis. follow_begin before the change (fd: the inode's, pinned), follow_end after. */
typedef struct pf_follow {
    bool on;
    unsigned gen;
    struct stat was;
} pf_follow;
void follow_begin(pf_fs *fs, pf_inode *in, int fd, pf_follow *f);
void follow_end(pf_fs *fs, pf_inode *in, int fd, const pf_follow *f);
/* The same for the file name in dfd (a rename: the file's new name and mount path after it). */
void follow_begin_name(pf_fs *fs, int dfd, const char *name, pf_follow *f);
void follow_end_name(pf_fs *fs, int dfd, const char *name, const char *path, const pf_follow *f);
/* Asks the kernel to drop its cached pages and attributes of ino (after the reply, from any
 * handler: queued for the notifier thread, never blocking). */
void cache_notify(pf_fs *fs, fuse_ino_t ino);
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

/* A change that must drop set-ID bits as the caller's own would (file.c): made between
 * setid_begin (0 or the errno refusing it) and setid_end, on ino's fd, open or O_PATH.
 * ask_caps: the kernel did not say whether the caller may keep them (fallocate,
 * copy_file_range): /proc tells. */
typedef struct pf_setid {
    fuse_ino_t ino;
    bool active;
    bool capped;
    pf_creds cr;
    struct __user_cap_data_struct caps[2];
} pf_setid;
int setid_begin(fuse_req_t req, fuse_ino_t ino, int fd, bool ask_caps, pf_setid *s);
void setid_end(pf_fs *fs, pf_setid *s);

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
void handle_changed(fuse_req_t req, pf_handle *h, bool bytes);
/* After the change handle_changed announced (see handle_closed in file.c). */
void handle_changed_after(pf_handle *h);
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
