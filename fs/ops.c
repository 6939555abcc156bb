/* FUSE low-level callbacks: a passthrough to BACKING, plus the provenance surface.
 *
 * Inodes are kept in a table keyed by (st_dev, st_ino) with an O_PATH fd each; the fuse_ino_t is
 * the pointer. Opened files keep their fd in a pf_handle. Every handler has one reply site.
 * Analysis is only ever queued from here (release of a written file, rename, link, unlink,
 * truncate), never waited for.
 *
 * Locks: pf_fs.inode_lock protects the inode table and every nlookup / vfile field. It is never
 * held across a reply, a store call or a queue call. */
#include "ops.h"

#include "analyze.h"
#include "provfs/analyzer.h"
#include "vfile.h"
#include "writehash.h"
#include "xattr.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

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

typedef struct pf_dir {
    DIR *dp;
    off_t offset;
    struct dirent *entry;
    bool is_root;
} pf_dir;

struct pf_fs {
    char *backing;       /* immutable */
    size_t backing_len;  /* immutable; 0 when BACKING is "/" */
    double timeout;      /* immutable */
    pf_inode root;       /* fd immutable; nlookup unused */
    pthread_mutex_t inode_lock;
    pf_inode **table;    /* inode_lock */
    size_t n_buckets;    /* inode_lock */
    size_t n_inodes;     /* inode_lock */
    store_handle *st;    /* set before the loop; thread-safe */
    queue *q;            /* set before the loop; thread-safe */
    gate *gate;          /* set before the loop; thread-safe (policy decisions) */
    atomic_uint_fast64_t ns_epoch; /* bumped by rename, link, unlink: paths cached per inode */
    gid_t admin_gid;     /* set before the loop */
    gid_t groups[PF_MAX_GROUPS]; /* the daemon's own supplementary groups; immutable */
    char *mountpoint;            /* absolute; set before the loop (control requests) */
    int n_groups;              /* immutable */
};

static pf_fs *fs_of(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

static pf_inode *inode_of(fuse_req_t req, fuse_ino_t ino)
{
    return ino == FUSE_ROOT_ID ? &fs_of(req)->root : (pf_inode *)(uintptr_t)ino;
}

static bool is_vfile_name(const char *name)
{
    return strcmp(name, VFILE_NAME) == 0;
}

static bool is_hidden_name(pf_fs *fs, const pf_inode *parent, const char *name)
{
    return parent == &fs->root && strcmp(name, PROVFS_DIR) == 0;
}

static void proc_path(int fd, char out[64])
{
    snprintf(out, 64, "/proc/self/fd/%d", fd);
}

/* ---------------------------------------------------------------- paths */

/* Mount-relative path of an fd below BACKING ("/" for BACKING); -1 when outside or deleted. */
static int fd_path(pf_fs *fs, int fd, char *out, size_t outlen)
{
    char proc[64], buf[PATH_MAX];
    proc_path(fd, proc);
    ssize_t n = readlink(proc, buf, sizeof buf - 1);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    if (strncmp(buf, fs->backing, fs->backing_len) != 0)
        return -1;
    const char *rel = buf + fs->backing_len;
    if (*rel == '\0')
        rel = "/";
    else if (*rel != '/')
        return -1;
    /* The kernel marks the name of an unlinked dentry with this suffix, and a user may name a
     * file so too: the path stands only when it still names this very inode. */
    static const char deleted[] = " (deleted)";
    if ((size_t)n > sizeof deleted - 1 && strcmp(buf + n - (sizeof deleted - 1), deleted) == 0) {
        struct stat mine, named;
        if (fstat(fd, &mine) != 0 || fstatat(fs->root.fd, rel + 1, &named, AT_SYMLINK_NOFOLLOW) != 0 ||
            mine.st_dev != named.st_dev || mine.st_ino != named.st_ino)
            return -1;
    }
    if (snprintf(out, outlen, "%s", rel) >= (int)outlen)
        return -1;
    return 0;
}

static int inode_path(pf_fs *fs, pf_inode *in, char *out, size_t outlen)
{
    if (in == &fs->root) {
        snprintf(out, outlen, "/");
        return 0;
    }
    return fd_path(fs, in->fd, out, outlen);
}

static int child_path(pf_fs *fs, pf_inode *dir, const char *name, char *out, size_t outlen)
{
    char base[PATH_MAX];
    if (inode_path(fs, dir, base, sizeof base) != 0)
        return -1;
    int n = snprintf(out, outlen, "%s%s%s", base, strcmp(base, "/") == 0 ? "" : "/", name);
    return n > 0 && (size_t)n < outlen ? 0 : -1;
}

/* Splits "/a/b/c" into dir "/a/b" (in place) and returns "c". */
static const char *split_path(char *path)
{
    char *slash = strrchr(path, '/');
    if (!slash)
        return path;
    *slash = '\0';
    const char *base = slash + 1;
    if (path[0] == '\0') {
        /* "/c": the directory is the root. Keep the root's "/" by shifting base. */
        memmove(path + 2, base, strlen(base) + 1);
        path[0] = '/';
        path[1] = '\0';
        return path + 2;
    }
    return base;
}

/* ---------------------------------------------------------------- analysis triggers */

static bool store_knows(pf_fs *fs, const char *dir)
{
    store_model m;
    if (store_model_by_path(fs->st, dir, &m) != 0)
        return false;
    store_model_clear(&m);
    return true;
}

/* Who caused a change: taken from the request before it is replied (the reply frees it). */
typedef struct pf_caller {
    uint32_t uid;
    int32_t pid;
} pf_caller;

static pf_caller caller_of(fuse_req_t req)
{
    const struct fuse_ctx *ctx = req ? fuse_req_ctx(req) : NULL;
    return (pf_caller){.uid = ctx ? ctx->uid : 0, .pid = ctx ? ctx->pid : 0};
}

/* opening: a write begins (pending now, analysed after the close); else a change is done. */
static void queue_note(pf_fs *fs, const char *path, pf_caller who, bool opening)
{
    (opening ? queue_mark_open : queue_mark)(fs->q, path, who.uid, who.pid);
}

/* Schedules dir for analysis when it is a model unit, or when it was one (the worker then
 * forgets it). */
static void mark_dir(pf_fs *fs, pf_caller who, const char *dir, bool opening)
{
    if (!fs->q)
        return;
    const char *rel = strcmp(dir, "/") == 0 ? "." : dir + 1;
    if (analyze_unit_check(fs->root.fd, rel) != 1 &&
        queue_get_state(fs->q, dir) == QUEUE_NONE && !store_knows(fs, dir))
        return;
    queue_note(fs, dir, who, opening);
}

static void mark_inode_dir(pf_fs *fs, pf_caller who, pf_inode *dir)
{
    char path[PATH_MAX];
    if (inode_path(fs, dir, path, sizeof path) == 0)
        mark_dir(fs, who, path, false);
}

/* Schedules the file at path when it is a unit of its own (GGUF, detected from its bytes), or
 * was one. */
static void mark_file(pf_fs *fs, pf_caller who, const char *path, bool opening)
{
    if (!fs->q)
        return;
    if (analyze_file_unit_check(fs->root.fd, path + 1) != 1 &&
        queue_get_state(fs->q, path) == QUEUE_NONE && !store_knows(fs, path))
        return;
    queue_note(fs, path, who, opening);
}

/* The unit holding the file open on fd (or O_PATH fd) changed: the file's own unit (GGUF) and
 * its directory's. */
static void mark_file_fd(pf_fs *fs, pf_caller who, int fd, bool opening)
{
    char path[PATH_MAX];
    if (fd_path(fs, fd, path, sizeof path) != 0)
        return;
    mark_file(fs, who, path, opening);
    split_path(path);
    mark_dir(fs, who, path, opening);
}

/* ---------------------------------------------------------------- inode table */

static size_t hash_of(dev_t dev, ino_t ino, size_t n_buckets)
{
    uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)dev;
    return (size_t)(h % n_buckets);
}

static void table_grow_locked(pf_fs *fs)
{
    size_t n = fs->n_buckets * 2;
    pf_inode **table = calloc(n, sizeof *table);
    if (!table)
        return; /* keep the old, longer chains */
    for (size_t b = 0; b < fs->n_buckets; b++) {
        pf_inode *in = fs->table[b];
        while (in) {
            pf_inode *next = in->hnext;
            size_t nb = hash_of(in->dev, in->ino, n);
            in->hnext = table[nb];
            table[nb] = in;
            in = next;
        }
    }
    free(fs->table);
    fs->table = table;
    fs->n_buckets = n;
}

static void unref_locked(pf_fs *fs, pf_inode *in, uint64_t n)
{
    if (in == &fs->root)
        return;
    in->nlookup = n > in->nlookup ? 0 : in->nlookup - n;
    if (in->nlookup > 0)
        return;
    if (in->vdir) {
        in->vdir->vfile = NULL;
        unref_locked(fs, in->vdir, 1);
        free(in);
        return;
    }
    for (pf_inode **pp = &fs->table[hash_of(in->dev, in->ino, fs->n_buckets)]; *pp;
         pp = &(*pp)->hnext) {
        if (*pp == in) {
            *pp = in->hnext;
            fs->n_inodes--;
            break;
        }
    }
    close(in->fd);
    free(in->gate_path);
    free(in);
}

static int lookup_fd(pf_fs *fs, int fd, struct fuse_entry_param *e);

/* Looks name up under parent on BACKING; fills e and takes one lookup reference. 0 or errno. */
static int do_lookup(pf_fs *fs, pf_inode *parent, const char *name, struct fuse_entry_param *e)
{
    int fd = openat(parent->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        memset(e, 0, sizeof *e);
        return errno;
    }
    return lookup_fd(fs, fd, e);
}

/* The entry of the file open on fd (any kind of fd): the file this call made, whatever its name
 * names by now. 0 or errno. */
static int lookup_open_file(pf_fs *fs, int fd, struct fuse_entry_param *e)
{
    char proc[64];
    proc_path(fd, proc);
    int pfd = open(proc, O_PATH | O_CLOEXEC);
    if (pfd < 0) {
        memset(e, 0, sizeof *e);
        return errno;
    }
    return lookup_fd(fs, pfd, e);
}

/* Enters the O_PATH fd (taken over) in the inode table; fills e, one lookup reference. */
static int lookup_fd(pf_fs *fs, int fd, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof *e);
    e->attr_timeout = fs->timeout;
    e->entry_timeout = fs->timeout;
    if (fstatat(fd, "", &e->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
        int err = errno;
        close(fd);
        return err;
    }
    pthread_mutex_lock(&fs->inode_lock);
    pf_inode *in = fs->table[hash_of(e->attr.st_dev, e->attr.st_ino, fs->n_buckets)];
    while (in && !(in->dev == e->attr.st_dev && in->ino == e->attr.st_ino))
        in = in->hnext;
    if (in) {
        in->nlookup++;
    } else {
        in = calloc(1, sizeof *in);
        if (!in) {
            pthread_mutex_unlock(&fs->inode_lock);
            close(fd);
            return ENOMEM;
        }
        in->fd = fd;
        fd = -1;
        in->dev = e->attr.st_dev;
        in->ino = e->attr.st_ino;
        in->type = e->attr.st_mode & S_IFMT;
        in->nlookup = 1;
        size_t b = hash_of(in->dev, in->ino, fs->n_buckets);
        in->hnext = fs->table[b];
        fs->table[b] = in;
        if (++fs->n_inodes > fs->n_buckets * 2)
            table_grow_locked(fs);
    }
    pthread_mutex_unlock(&fs->inode_lock);
    if (fd >= 0)
        close(fd);
    e->ino = (uintptr_t)in;
    return 0;
}

/* Attributes of a directory's .provenance file: its size is that of the JSON right now. */
static void vfile_attr(pf_fs *fs, pf_inode *vf, struct stat *st)
{
    memset(st, 0, sizeof *st);
    struct stat dir;
    if (fstatat(vf->vdir->fd, "", &dir, AT_EMPTY_PATH) == 0) {
        st->st_dev = dir.st_dev;
        st->st_ino = dir.st_ino ^ VFILE_INO_BIT;
        st->st_atim = st->st_mtim = st->st_ctim = dir.st_mtim;
    }
    st->st_mode = S_IFREG | 0444;
    st->st_nlink = 1;
    st->st_blksize = 4096;
    char path[PATH_MAX];
    size_t len = 0;
    char *text = NULL;
    if (fs->st && inode_path(fs, vf->vdir, path, sizeof path) == 0)
        text = vfile_render(fs->st, fs->q, fs->gate, path, &len);
    free(text);
    st->st_size = (off_t)len;
}

static int vfile_lookup(pf_fs *fs, pf_inode *dir, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof *e);
    pthread_mutex_lock(&fs->inode_lock);
    pf_inode *vf = dir->vfile;
    if (vf) {
        vf->nlookup++;
    } else {
        vf = calloc(1, sizeof *vf);
        if (!vf) {
            pthread_mutex_unlock(&fs->inode_lock);
            return ENOMEM;
        }
        vf->fd = -1;
        vf->type = S_IFREG;
        vf->nlookup = 1;
        vf->vdir = dir;
        dir->vfile = vf;
        if (dir != &fs->root)
            dir->nlookup++;
    }
    pthread_mutex_unlock(&fs->inode_lock);
    vfile_attr(fs, vf, &e->attr);
    e->ino = (uintptr_t)vf;
    e->attr_timeout = 0;
    e->entry_timeout = fs->timeout;
    return 0;
}

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
    /* POSIX ACLs as on ext4: the kernel enforces them from system.posix_acl_* (passed through to
     * BACKING), and the caller's umask is applied by BACKING's kernel (creds_enter), which
     * ignores it where a default ACL is inherited, instead of being applied here always. */
    if (conn->capable & FUSE_CAP_POSIX_ACL)
        conn->want |= FUSE_CAP_POSIX_ACL;
    if (conn->capable & FUSE_CAP_DONT_MASK)
        conn->want |= FUSE_CAP_DONT_MASK;
    conn->max_write = 1u << 20;
}

static void pf_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
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

static void pf_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    pf_fs *fs = fs_of(req);
    pthread_mutex_lock(&fs->inode_lock);
    unref_locked(fs, inode_of(req, ino), nlookup);
    pthread_mutex_unlock(&fs->inode_lock);
    fuse_reply_none(req);
}

static void pf_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    pf_fs *fs = fs_of(req);
    pthread_mutex_lock(&fs->inode_lock);
    for (size_t i = 0; i < count; i++)
        unref_locked(fs, inode_of(req, forgets[i].ino), forgets[i].nlookup);
    pthread_mutex_unlock(&fs->inode_lock);
    fuse_reply_none(req);
}

static void pf_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    pf_fs *fs = fs_of(req);
    pf_inode *in = inode_of(req, ino);
    struct stat st;
    if (in->vdir) {
        vfile_attr(fs, in, &st);
        fuse_reply_attr(req, &st, 0);
        return;
    }
    if (fstatat(in->fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
        fuse_reply_err(req, errno);
    else
        fuse_reply_attr(req, &st, fs->timeout);
}

static void handle_changed(fuse_req_t req, pf_handle *h);

static void pf_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid,
                       struct fuse_file_info *fi)
{
    pf_fs *fs = fs_of(req);
    pf_inode *in = inode_of(req, ino);
    pf_handle *h = fi ? (pf_handle *)(uintptr_t)fi->fh : NULL;
    char proc[64];
    int err = 0;
    if (in->vdir) {
        err = EACCES;
        goto out;
    }
    proc_path(in->fd, proc);
    /* A symlink has no mode or size of its own (ext4 answers the same); never act through its
     * magic link on anything else. */
    if (in->type == S_IFLNK && (valid & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_SIZE))) {
        err = (valid & FUSE_SET_ATTR_MODE) ? EOPNOTSUPP : EINVAL;
        goto out;
    }
    if (valid & FUSE_SET_ATTR_MODE) {
        if ((h ? fchmod(h->fd, attr->st_mode) : chmod(proc, attr->st_mode)) != 0)
            goto out_errno;
    }
    if (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
        uid_t uid = (valid & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
        gid_t gid = (valid & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;
        if (fchownat(in->fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
            goto out_errno;
    }
    if (valid & FUSE_SET_ATTR_SIZE) {
        if ((h ? ftruncate(h->fd, attr->st_size) : truncate(proc, attr->st_size)) != 0)
            goto out_errno;
        if (h) {
            handle_changed(req, h);
            writehash_invalidate(h->wh);
        } else {
            atomic_fetch_add(&in->write_gen, 1); /* a hash being taken is no longer the file's */
            mark_file_fd(fs, caller_of(req), in->fd, false);
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
            rc = utimensat(in->fd, "", tv, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
        else
            rc = utimensat(AT_FDCWD, proc, tv, 0);
        if (rc != 0)
            goto out_errno;
    }
    pf_getattr(req, ino, fi);
    return;
out_errno:
    err = errno;
out:
    fuse_reply_err(req, err);
}

static void pf_readlink(fuse_req_t req, fuse_ino_t ino)
{
    pf_inode *in = inode_of(req, ino);
    char buf[PATH_MAX + 1];
    ssize_t n = in->vdir ? -1 : readlinkat(in->fd, "", buf, sizeof buf);
    if (n < 0)
        fuse_reply_err(req, in->vdir ? EINVAL : errno);
    else if ((size_t)n >= sizeof buf)
        fuse_reply_err(req, ENAMETOOLONG);
    else {
        buf[n] = '\0';
        fuse_reply_readlink(req, buf);
    }
}

/* ---------------------------------------------------------------- policy enforcement */

/* uid 0, or a member of --admin-gid (primary or supplementary group). The groups come from
 * /proc, so they are read only when a decision would refuse. */
static bool admin_creds(pf_fs *fs, uid_t uid, gid_t gid, const gid_t *groups, int n)
{
    if (uid == 0 || gid == fs->admin_gid)
        return true;
    for (int i = 0; i < n; i++)
        if (groups[i] == fs->admin_gid)
            return true;
    return false;
}

static bool caller_is_admin(fuse_req_t req, pf_fs *fs)
{
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    if (admin_creds(fs, ctx->uid, ctx->gid, NULL, 0))
        return true;
    gid_t groups[256];
    int n = fuse_req_getgroups(req, 256, groups);
    return admin_creds(fs, ctx->uid, ctx->gid, groups, n < 256 ? n : 256);
}

/* The one decision for exposing a file's bytes (fs/POLICY.md), asked by every operation that
 * opens a file for reading (open, create of a name that exists) or moves bytes between names
 * (rename in either direction, exchange, link). path: the file's mount-relative path, NULL when
 * it cannot be resolved (then model bytes are refused: fail closed); fd: the file open for
 * reading (its first bytes tell a model from documentation), -1 when unknown. A store error
 * fails closed too. Decided from stored data (gate.c caches it); never analyses. Returns EACCES
 * to refuse, 0 to go on; *log is set when an events row is due, written after the reply so it
 * never delays the caller. */
static int gate_read_fd(fuse_req_t req, pf_fs *fs, const char *path, int fd, int flags,
                        gate_open *log)
{
    memset(log, 0, sizeof *log);
    if (!fs->gate || (flags & O_ACCMODE) == O_WRONLY)
        return 0;
    gate_open o;
    if (!path || gate_check_open(fs->gate, path, fd, &o) != 0)
        gate_check_unresolved(fs->gate, fd, &o);
    log->cacheable = o.cacheable && path;
    if (!o.applies || caller_is_admin(req, fs))
        return 0;
    *log = o;
    return o.enforced ? EACCES : 0;
}

static void policy_log(pf_fs *fs, const gate_open *log, const char *path, pf_caller who)
{
    if (log->applies)
        gate_log_open(fs->gate, log, path && path[0] ? path : "(unresolved)", who.uid, who.pid);
}

/* True when in's cached "nothing to do" still holds (no readlink of its path needed). */
static bool gate_cache_hit(pf_fs *fs, pf_inode *in, gate_stamp stamp, uint64_t epoch)
{
    char path[PATH_MAX];
    bool hit = false;
    pthread_mutex_lock(&fs->inode_lock);
    if (in->gate_path && in->gate_epoch == epoch && in->gate_stamp.generation == stamp.generation &&
        in->gate_stamp.serial == stamp.serial) {
        snprintf(path, sizeof path, "%s", in->gate_path);
        hit = true;
    }
    pthread_mutex_unlock(&fs->inode_lock);
    return hit && gate_settled(fs->gate, path);
}

static void gate_cache_store(pf_fs *fs, pf_inode *in, const char *path, gate_stamp stamp,
                             uint64_t epoch)
{
    char *copy = strdup(path);
    if (!copy)
        return;
    pthread_mutex_lock(&fs->inode_lock);
    char *old = in->gate_path;
    in->gate_path = copy;
    in->gate_stamp = stamp;
    in->gate_epoch = epoch;
    pthread_mutex_unlock(&fs->inode_lock);
    free(old);
}

/* An fd to read the first bytes of the regular file name in dir (or of in when name is NULL),
 * -1 when it is not a regular file. */
static int sniff_fd(pf_inode *dir, const char *name, pf_inode *in)
{
    int fd;
    if (name) {
        fd = openat(dir->fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    } else {
        char proc[64];
        proc_path(in->fd, proc);
        fd = in->type == S_IFREG ? open(proc, O_RDONLY | O_NONBLOCK | O_CLOEXEC) : -1;
    }
    struct stat sb;
    if (fd >= 0 && (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* Moving the bytes of a file (name in dir, or the inode in for a link) to newdir: refused when
 * they are gated bytes of a blocked unit and leave their directory, as a read of them would be.
 * Moves within one directory keep the file in its unit, under the same decision (a gated name
 * stays gated; a documentation name is exempt only for bytes that are not a model's). 0 or
 * EACCES; *log and from (the source path) filled for policy_log. */
static int gate_move(fuse_req_t req, pf_fs *fs, pf_inode *dir, const char *name, pf_inode *in,
                     pf_inode *newdir, gate_open *log, char *from, size_t fromlen)
{
    memset(log, 0, sizeof *log);
    from[0] = '\0';
    if (!fs->gate || gate_off(fs->gate))
        return 0;
    int fd = sniff_fd(dir, name, in);
    if (fd < 0)
        return 0; /* a directory moves its units whole; links and special files hold no bytes */
    int rc = name ? child_path(fs, dir, name, from, fromlen) : inode_path(fs, in, from, fromlen);
    char from_dir[PATH_MAX], to_dir[PATH_MAX];
    uint8_t head[PA_SNIFF_BYTES];
    ssize_t n = pread(fd, head, sizeof head, 0);
    const char *format = n > 0 ? pa_sniff_format(head, (size_t)n) : NULL;
    /* A GGUF file is a unit of its own: another name for it is another unit, checked. */
    bool file_unit = format && strcmp(format, "gguf") == 0;
    if (rc == 0 && !file_unit && inode_path(fs, newdir, to_dir, sizeof to_dir) == 0) {
        snprintf(from_dir, sizeof from_dir, "%s", from);
        split_path(from_dir);
        if (strcmp(from_dir, to_dir) == 0) {
            close(fd);
            return 0;
        }
    }
    int err = gate_read_fd(req, fs, rc == 0 ? from : NULL, fd, O_RDONLY, log);
    close(fd);
    return err;
}

/* ---------------------------------------------------------------- acting as the caller */

/* New entries are made with the caller's credentials, not made as root and handed over: the
 * filesystem user and group and the supplementary groups of this thread are switched to the
 * caller's for the one system call (raw syscalls: glibc's wrappers would switch every thread).
 * Nothing is ever owned by root on the way, so no name a user controls (a symlink or FIFO swapped
 * in by another path into BACKING) can be chowned, chmodded or opened as root, and the kernel
 * applies set-gid directories, the umask the caller sent and default ACLs itself. Switching the
 * fsuid away from 0 drops the filesystem capabilities of this thread until it is switched back. */
typedef struct pf_creds {
    bool switched;
    bool masked; /* this thread's umask was set to the caller's */
} pf_creds;

static int creds_enter(fuse_req_t req, pf_creds *saved)
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

static void creds_leave(pf_fs *fs, pf_creds *saved)
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
static int check_new_name(pf_fs *fs, pf_inode *dir, const char *name)
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

static void pf_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    pf_fs *fs = fs_of(req);
    pf_inode *dir = inode_of(req, parent);
    int err = check_new_name(fs, dir, name);
    pf_creds cr = {0};
    if (!err && !(err = creds_enter(req, &cr))) {
        int rc = S_ISFIFO(mode) ? mkfifoat(dir->fd, name, mode) : mknodat(dir->fd, name, mode, rdev);
        err = rc != 0 ? errno : 0;
    }
    creds_leave(fs, &cr);
    pf_caller who = caller_of(req);
    if (!err) /* a special file under a unit's name fails the unit */
        mark_inode_dir(fs, who, dir);
    reply_new_entry(req, fs, dir, name, err);
}

static void pf_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    pf_fs *fs = fs_of(req);
    pf_inode *dir = inode_of(req, parent);
    int err = check_new_name(fs, dir, name);
    pf_creds cr = {0};
    if (!err && !(err = creds_enter(req, &cr)))
        err = mkdirat(dir->fd, name, mode) != 0 ? errno : 0;
    creds_leave(fs, &cr);
    reply_new_entry(req, fs, dir, name, err);
}

static void pf_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    pf_fs *fs = fs_of(req);
    pf_inode *dir = inode_of(req, parent);
    pf_caller who = caller_of(req);
    int err = check_new_name(fs, dir, name);
    pf_creds cr = {0};
    if (!err && !(err = creds_enter(req, &cr)))
        err = symlinkat(link, dir->fd, name) != 0 ? errno : 0;
    creds_leave(fs, &cr);
    if (!err) /* before the reply: the kernel may forget dir once it has it */
        mark_inode_dir(fs, who, dir);
    reply_new_entry(req, fs, dir, name, err);
}

static void pf_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char *name)
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
    if (!err) {
        char proc[64];
        proc_path(in->fd, proc);
        if (linkat(AT_FDCWD, proc, dir->fd, name, AT_SYMLINK_FOLLOW) != 0)
            err = errno;
    }
    char path[PATH_MAX];
    bool have_path = !err && child_path(fs, dir, name, path, sizeof path) == 0;
    if (!err)
        mark_inode_dir(fs, who, dir);
    if (have_path)
        mark_file(fs, who, path, false);
    reply_new_entry(req, fs, dir, name, err);
    policy_log(fs, &log, from, who);
}

static void pf_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    pf_fs *fs = fs_of(req);
    atomic_fetch_add(&fs->ns_epoch, 1);
    pf_inode *dir = inode_of(req, parent);
    pf_caller who = caller_of(req);
    char path[PATH_MAX];
    bool have_path = child_path(fs, dir, name, path, sizeof path) == 0;
    int err = check_new_name(fs, dir, name);
    if (!err && unlinkat(dir->fd, name, 0) != 0)
        err = errno;
    /* The records follow before the reply (a name made again at once is a new file). */
    if (!err && have_path && fs->q) {
        /* A GGUF unit goes with its name (another hard link is a path of its own). */
        queue_forget(fs->q, path);
        if (store_knows(fs, path))
            store_remove_path(fs->st, path, false);
    }
    if (!err)
        mark_inode_dir(fs, who, dir);
    fuse_reply_err(req, err);
}

static void pf_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    pf_fs *fs = fs_of(req);
    pf_inode *dir = inode_of(req, parent);
    char path[PATH_MAX];
    bool have_path = child_path(fs, dir, name, path, sizeof path) == 0;
    int err = check_new_name(fs, dir, name);
    if (!err && unlinkat(dir->fd, name, AT_REMOVEDIR) != 0)
        err = errno;
    if (!err && have_path && fs->q) {
        queue_forget(fs->q, path);
        if (store_knows(fs, path))
            store_remove_path(fs->st, path, true);
    }
    fuse_reply_err(req, err);
}

/* Moves the store's and the queue's records after a rename that succeeded. from and to are the
 * mount-relative paths of the source and the target (changed here). */
static void rename_bookkeeping(pf_fs *fs, pf_caller who, pf_inode *newdir, const char *newname,
                               char *from, char *to, unsigned int flags)
{
    struct stat st;
    bool moved = fstatat(newdir->fd, newname, &st, AT_SYMLINK_NOFOLLOW) == 0;
    bool file_unit = moved && S_ISREG(st.st_mode) &&
                     (queue_get_state(fs->q, from) != QUEUE_NONE || store_knows(fs, from) ||
                      analyze_file_unit_check(fs->root.fd, to + 1) == 1);
    if (moved && (S_ISDIR(st.st_mode) || file_unit) && !(flags & RENAME_EXCHANGE)) {
        /* A directory or a GGUF file moved: its models keep their analysis under the new name. */
        queue_rename(fs->q, from, to);
        store_rename(fs->st, from, to);
        if (store_knows(fs, to))
            store_event(fs->st, who.uid, who.pid, to, 0, "renamed", from);
        /* A GGUF unit's one file changed its name (part of the unit's file list and digest). */
        if (file_unit)
            mark_file(fs, who, to, false);
    } else if (moved && S_ISREG(st.st_mode) && !(flags & RENAME_EXCHANGE)) {
        queue_rename(fs->q, from, to); /* its hash taken while written (rsync's temporary name) */
    } else if (moved && S_ISDIR(st.st_mode) && (flags & RENAME_EXCHANGE)) {
        /* Two directories swapped: their records swap through a name no path can have. */
        static const char tmp[] = "//exchange"; /* no path holds "//" */
        queue_rename(fs->q, from, tmp);
        store_rename(fs->st, from, tmp);
        queue_rename(fs->q, to, from);
        store_rename(fs->st, to, from);
        queue_rename(fs->q, tmp, to);
        store_rename(fs->st, tmp, to);
        mark_dir(fs, who, from, false);
        mark_dir(fs, who, to, false);
    } else if (flags & RENAME_EXCHANGE) {
        mark_dir(fs, who, from, false);
        mark_dir(fs, who, to, false);
        mark_file(fs, who, from, false);
        mark_file(fs, who, to, false);
    }
    /* A file moved out of one unit and into another. */
    split_path(from);
    split_path(to);
    mark_dir(fs, who, from, false);
    if (strcmp(from, to) != 0)
        mark_dir(fs, who, to, false);
}

static void pf_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
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
    if (!err && renameat2(dir->fd, name, newdir->fd, newname, flags) != 0)
        err = errno;
    /* The queue and the store follow before the reply: an open of the new name that the caller
     * makes after rename() returns finds the unit (and its decision) already there. */
    if (!err && have_paths && fs->q)
        rename_bookkeeping(fs, who, newdir, newname, from, to, flags);
    fuse_reply_err(req, err);
    policy_log(fs, &log, gated_from, who);
    policy_log(fs, &log_back, gated_back, who);
}

/* ---------------------------------------------------------------- files */

/* A handle opened for writing: counts as a writer of its inode; a file written from its start
 * (fresh: created, truncated or empty) by this handle alone is hashed while written. Another
 * writer opening the file later invalidates the hash (write_gen moves). */
static void handle_start_write(pf_handle *h, pf_inode *in, int flags, bool fresh)
{
    if ((flags & O_ACCMODE) == O_RDONLY || in->vdir)
        return;
    h->in = in;
    bool alone = atomic_fetch_add(&in->writers, 1) == 0;
    h->write_gen = atomic_fetch_add(&in->write_gen, 1) + 1;
    if (alone && fresh)
        h->wh = writehash_new();
}

static pf_handle *handle_new(int fd)
{
    pf_handle *h = calloc(1, sizeof *h);
    if (h)
        h->fd = fd;
    return h;
}

/* The first change through a handle (write, truncate, fallocate, copy into it) makes the file's
 * unit pending at once, before the reply: from then on it carries no earlier decision or
 * approval. Its analysis follows the close (release marks again). */
static void handle_changed(fuse_req_t req, pf_handle *h)
{
    if (!atomic_exchange(&h->written, 1))
        mark_file_fd(fs_of(req), caller_of(req), h->fd, true);
}

/* Leaving a handle, in two steps around the reply: the inode is the kernel's to forget once the
 * release is replied, so the writer count is dropped first (true: this handle wrote alone). */
static bool handle_leave(pf_handle *h)
{
    if (h->vdata || !h->in)
        return false;
    atomic_fetch_sub(&h->in->writers, 1);
    return atomic_load(&h->in->write_gen) == h->write_gen;
}

static void handle_finish(pf_fs *fs, pf_handle *h, pf_caller who, bool alone)
{
    if (h->vdata) {
        free(h->vdata);
    } else {
        if (h->in) {
            struct stat sb;
            char hex[65], path[PATH_MAX];
            /* Recorded before the mark, so the analysis finds it. */
            if (writehash_finish(h->wh, fstat(h->fd, &sb) == 0 ? (uint64_t)sb.st_size : UINT64_MAX,
                                 hex) &&
                alone && fs->q && fd_path(fs, h->fd, path, sizeof path) == 0)
                queue_known_put(fs->q, path, (uint64_t)sb.st_size,
                                (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec, hex);
        }
        if (atomic_load(&h->written))
            mark_file_fd(fs, who, h->fd, false);
        close(h->fd);
    }
    free(h);
}

/* An open or create whose reply did not reach the caller (interrupted): the kernel will send no
 * release for it, so the handle is released here. */
static void handle_unreplied(pf_fs *fs, pf_handle *h, pf_caller who)
{
    handle_finish(fs, h, who, handle_leave(h));
}

static int open_vfile(pf_fs *fs, pf_inode *vf, struct fuse_file_info *fi)
{
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))
        return EACCES;
    char path[PATH_MAX];
    if (!fs->st || inode_path(fs, vf->vdir, path, sizeof path) != 0) {
        char proc[64], buf[PATH_MAX];
        proc_path(vf->vdir->fd, proc);
        ssize_t n = readlink(proc, buf, sizeof buf - 1);
        buf[n > 0 ? n : 0] = 0;
        fprintf(stderr, "provfs: .provenance: directory fd %d resolves to '%s' (%zd, errno %d)\n",
                vf->vdir->fd, buf, n, errno);
        return ENOENT;
    }
    pf_handle *h = handle_new(-1);
    if (!h)
        return ENOMEM;
    h->vdata = vfile_render(fs->st, fs->q, fs->gate, path, &h->vlen);
    if (!h->vdata) {
        free(h);
        return EIO;
    }
    fi->fh = (uintptr_t)h;
    fi->direct_io = 1;
    return 0;
}

static int gate_read_fd(fuse_req_t req, pf_fs *fs, const char *path, int fd, int flags,
                        gate_open *log);

/* The O_TRUNC of an open, applied after the open was allowed. 0 or errno. */
static int truncate_opened(int fd, int flags)
{
    struct stat sb;
    if (!(flags & O_TRUNC) || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        return 0;
    return ftruncate(fd, 0) != 0 ? errno : 0;
}

/* open(O_CREAT): the name is created as the caller with O_EXCL | O_NOFOLLOW, so the daemon never
 * opens, chowns or chmods a name a user swapped in. When the name exists already (made in BACKING
 * by another path since the kernel's lookup) and the caller did not ask for O_EXCL, the existing
 * regular file is opened as the caller — its permissions checked by BACKING's kernel — and
 * through the policy gate like any open; a symlink or special file there is refused. */
static void pf_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
    pf_fs *fs = fs_of(req);
    pf_inode *dir = inode_of(req, parent);
    pf_caller who = caller_of(req);
    struct fuse_entry_param e;
    gate_open log = {0};
    char path[PATH_MAX] = "";
    pf_creds cr = {0};
    bool created = false;
    int fd = -1;
    int err = check_new_name(fs, dir, name);
    if (err)
        goto out;
    int flags = (fi->flags | O_NOFOLLOW | O_CLOEXEC) & ~(O_CREAT | O_EXCL | O_DIRECT | O_TRUNC);
    if (fi->flags & O_DIRECT)
        fi->direct_io = 1;
    if ((err = creds_enter(req, &cr)) != 0)
        goto out;
    fd = openat(dir->fd, name, flags | O_CREAT | O_EXCL, mode);
    if (fd >= 0)
        created = true;
    else if (errno == EEXIST && !(fi->flags & O_EXCL))
        fd = openat(dir->fd, name, flags | O_NONBLOCK, 0);
    err = fd < 0 ? errno : 0;
    creds_leave(fs, &cr);
    if (err)
        goto out;
    if (!created) {
        struct stat sb;
        if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            err = EEXIST;
            goto out;
        }
        if (!(fi->flags & O_NONBLOCK))
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        if (child_path(fs, dir, name, path, sizeof path) != 0)
            path[0] = '\0';
        err = gate_read_fd(req, fs, path[0] ? path : NULL, fd, fi->flags, &log);
        if (!err)
            err = truncate_opened(fd, fi->flags);
        if (err)
            goto out;
    }
    /* The entry is the file opened above, not whatever the name names by now. */
    err = lookup_open_file(fs, fd, &e);
    if (err)
        goto out;
    pf_handle *h = handle_new(fd);
    if (!h) {
        fuse_reply_err(req, ENOMEM);
        pthread_mutex_lock(&fs->inode_lock);
        unref_locked(fs, (pf_inode *)(uintptr_t)e.ino, 1);
        pthread_mutex_unlock(&fs->inode_lock);
        close(fd);
        return;
    }
    h->uid = who.uid;
    h->pid = who.pid;
    /* A new file changes its unit even when nothing is written into it. */
    struct stat sb;
    handle_start_write(h, (pf_inode *)(uintptr_t)e.ino, fi->flags,
                       created || (fi->flags & O_TRUNC) || (fstat(fd, &sb) == 0 && sb.st_size == 0));
    if (created || (fi->flags & O_TRUNC))
        handle_changed(req, h);
    fi->fh = (uintptr_t)h;
    if (fuse_reply_create(req, &e, fi) != 0) {
        pthread_mutex_lock(&fs->inode_lock);
        unref_locked(fs, (pf_inode *)(uintptr_t)e.ino, 1);
        pthread_mutex_unlock(&fs->inode_lock);
        handle_unreplied(fs, h, who);
    }
    if (log.applies)
        policy_log(fs, &log, path, who);
    return;
out:
    if (fd >= 0 && created) {
        /* Undo the entry this call made, when the name still is it. */
        struct stat mine, now;
        if (fstat(fd, &mine) == 0 && fstatat(dir->fd, name, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
            mine.st_dev == now.st_dev && mine.st_ino == now.st_ino)
            unlinkat(dir->fd, name, 0);
    }
    if (fd >= 0)
        close(fd);
    fuse_reply_err(req, err);
    if (log.applies)
        policy_log(fs, &log, path, who);
}

static void pf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    pf_fs *fs = fs_of(req);
    pf_inode *in = inode_of(req, ino);
    pf_caller who = caller_of(req);
    gate_open log = {0};
    char path[PATH_MAX] = "";
    int fd = -1;
    int err = 0;
    if (in->vdir) {
        err = open_vfile(fs, in, fi);
        goto out;
    }
    char proc[64];
    proc_path(in->fd, proc);
    /* O_DIRECT stays the caller's (direct_io: no page cache for this open); BACKING is read
     * and written through libfuse's unaligned buffers, so it must not see the flag. */
    fd = open(proc, (fi->flags | O_CLOEXEC) & ~(O_NOFOLLOW | O_CREAT | O_DIRECT | O_TRUNC));
    if (fi->flags & O_DIRECT)
        fi->direct_io = 1;
    if (fd < 0) {
        err = errno;
        goto out;
    }
    if (fs->gate && (fi->flags & O_ACCMODE) != O_WRONLY) {
        /* Read before deciding: a change meanwhile makes the stored answer stale, never wrong. */
        gate_stamp stamp = gate_current_stamp(fs->gate);
        uint64_t epoch = atomic_load(&fs->ns_epoch);
        if (!stamp.off && !gate_cache_hit(fs, in, stamp, epoch)) {
            bool have = inode_path(fs, in, path, sizeof path) == 0;
            err = gate_read_fd(req, fs, have ? path : NULL, fd, fi->flags, &log);
            if (log.cacheable)
                gate_cache_store(fs, in, path, stamp, epoch);
            if (err)
                goto out;
        }
    }
    /* O_TRUNC only once the open is allowed: a refused open changes nothing. */
    if ((err = truncate_opened(fd, fi->flags)) != 0)
        goto out;
    pf_handle *h = handle_new(fd);
    if (!h) {
        err = ENOMEM;
        goto out;
    }
    h->uid = who.uid;
    h->pid = who.pid;
    fd = -1;
    if (fi->flags & O_TRUNC)
        handle_changed(req, h);
    struct stat sb;
    handle_start_write(h, in, fi->flags,
                       (fi->flags & O_TRUNC) || (fstat(h->fd, &sb) == 0 && sb.st_size == 0));
    fi->fh = (uintptr_t)h;
out:
    if (fd >= 0)
        close(fd);
    if (err)
        fuse_reply_err(req, err);
    else if (fuse_reply_open(req, fi) != 0)
        handle_unreplied(fs, (pf_handle *)(uintptr_t)fi->fh, who);
    policy_log(fs, &log, path, who);
}

static void pf_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    (void)ino;
    pf_handle *h = (pf_handle *)(uintptr_t)fi->fh;
    if (h->vdata) {
        size_t start = (size_t)off < h->vlen ? (size_t)off : h->vlen;
        size_t n = h->vlen - start < size ? h->vlen - start : size;
        /* Replied from a copy: once the kernel has the reply, the reader may close and the
         * release (another thread) frees vdata while this thread is still in fuse_reply_buf. */
        char *copy = malloc(n ? n : 1);
        if (!copy) {
            fuse_reply_err(req, ENOMEM);
            return;
        }
        memcpy(copy, h->vdata + start, n);
        fuse_reply_buf(req, copy, n);
        free(copy);
        return;
    }
    struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
    buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
    buf.buf[0].fd = h->fd;
    buf.buf[0].pos = off;
    fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

static void pf_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in_buf, off_t off,
                         struct fuse_file_info *fi)
{
    (void)ino;
    pf_handle *h = (pf_handle *)(uintptr_t)fi->fh;
    if (h->vdata) {
        fuse_reply_err(req, EACCES);
        return;
    }
    struct fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in_buf));
    out.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
    out.buf[0].fd = h->fd;
    out.buf[0].pos = off;
    /* The data in memory, for the write hash (fuse_buf_copy advances in_buf). */
    const void *data = in_buf->count == 1 && in_buf->idx == 0 && in_buf->off == 0 &&
                               !(in_buf->buf[0].flags & FUSE_BUF_IS_FD)
                           ? in_buf->buf[0].mem
                           : NULL;
    ssize_t res = fuse_buf_copy(&out, in_buf, 0);
    if (res < 0) {
        fuse_reply_err(req, (int)-res);
        writehash_invalidate(h->wh);
        return;
    }
    handle_changed(req, h);
    /* Hashed after the reply: the writer goes on while this thread hashes (in_buf is this
     * thread's buffer until we return). The hold keeps wh (and h) alive past a release that
     * follows the reply at once; h is not touched after the reply. */
    writehash *wh = h->wh;
    if (wh && data)
        writehash_hold(wh);
    else
        writehash_invalidate(wh);
    fuse_reply_write(req, (size_t)res);
    if (wh && data)
        writehash_update(wh, (uint64_t)off, data, (size_t)res);
}

static void pf_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    pf_handle *h = (pf_handle *)(uintptr_t)fi->fh;
    int err = 0;
    if (!h->vdata) {
        /* Same effect as close() on the backing file (POSIX locks, deferred write errors). */
        int dupfd = dup(h->fd);
        if (dupfd < 0 || close(dupfd) != 0)
            err = errno;
    }
    fuse_reply_err(req, err);
}

static void pf_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    pf_fs *fs = fs_of(req);
    pf_handle *h = (pf_handle *)(uintptr_t)fi->fh;
    /* A release carries no caller: the analysis it triggers names the handle's opener. */
    pf_caller who = {.uid = h->uid, .pid = h->pid};
    bool alone = handle_leave(h);
    fuse_reply_err(req, 0);
    handle_finish(fs, h, who, alone);
}

static void pf_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    (void)ino;
    pf_handle *h = (pf_handle *)(uintptr_t)fi->fh;
    int err = 0;
    if (!h->vdata && (datasync ? fdatasync(h->fd) : fsync(h->fd)) != 0)
        err = errno;
    fuse_reply_err(req, err);
}

static void pf_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                         struct fuse_file_info *fi)
{
    (void)ino;
    pf_handle *h = (pf_handle *)(uintptr_t)fi->fh;
    int err = h->vdata ? EACCES : 0;
    if (!err && fallocate(h->fd, mode, offset, length) != 0)
        err = errno;
    if (!err) {
        handle_changed(req, h);
        writehash_invalidate(h->wh);
    }
    fuse_reply_err(req, err == ENOSYS ? EOPNOTSUPP : err);
}

static void pf_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
                     struct fuse_file_info *fi)
{
    (void)ino;
    pf_handle *h = (pf_handle *)(uintptr_t)fi->fh;
    off_t res = h->vdata ? -1 : lseek(h->fd, off, whence);
    if (res < 0)
        fuse_reply_err(req, h->vdata ? ESPIPE : errno);
    else
        fuse_reply_lseek(req, res);
}

static void pf_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
                               struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
                               struct fuse_file_info *fi_out, size_t len, int flags)
{
    (void)ino_in;
    (void)ino_out;
    pf_handle *in = (pf_handle *)(uintptr_t)fi_in->fh;
    pf_handle *out = (pf_handle *)(uintptr_t)fi_out->fh;
    if (in->vdata || out->vdata) {
        fuse_reply_err(req, in->vdata ? EXDEV : EACCES);
        return;
    }
    ssize_t n = copy_file_range(in->fd, &off_in, out->fd, &off_out, len, (unsigned)flags);
    if (n < 0) {
        fuse_reply_err(req, errno == ENOSYS ? EXDEV : errno);
        return;
    }
    handle_changed(req, out);
    writehash_invalidate(out->wh);
    fuse_reply_write(req, (size_t)n);
}

/* ---------------------------------------------------------------- directories */

static void pf_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    pf_fs *fs = fs_of(req);
    pf_inode *in = inode_of(req, ino);
    int err = 0;
    pf_dir *d = calloc(1, sizeof *d);
    if (!d) {
        err = ENOMEM;
        goto out;
    }
    int fd = in->vdir ? -1 : openat(in->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        err = in->vdir ? ENOTDIR : errno;
        goto out;
    }
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

static void pf_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
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

static void pf_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    pf_dir *d = (pf_dir *)(uintptr_t)fi->fh;
    closedir(d->dp);
    free(d);
    fuse_reply_err(req, 0);
}

static void pf_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    (void)ino;
    pf_dir *d = (pf_dir *)(uintptr_t)fi->fh;
    int fd = dirfd(d->dp);
    int err = (datasync ? fdatasync(fd) : fsync(fd)) != 0 ? errno : 0;
    fuse_reply_err(req, err);
}

static void pf_statfs(fuse_req_t req, fuse_ino_t ino)
{
    pf_inode *in = inode_of(req, ino);
    struct statvfs sv;
    int fd = in->vdir ? in->vdir->fd : in->fd;
    if (fstatvfs(fd, &sv) != 0)
        fuse_reply_err(req, errno);
    else
        fuse_reply_statfs(req, &sv);
}

/* ---------------------------------------------------------------- xattrs */

/* Never ENOSYS: the kernel would switch xattrs off for the whole mount. */
static int xattr_errno(int err)
{
    return err == ENOSYS ? EOPNOTSUPP : err;
}

/* The unit directory and file name an inode's provenance xattrs describe; false when none. */
static bool provenance_target(pf_fs *fs, pf_inode *in, char *dir, size_t dirlen,
                              const char **file)
{
    if (!fs->st || in->vdir || (in->type != S_IFDIR && in->type != S_IFREG))
        return false;
    if (inode_path(fs, in, dir, dirlen) != 0)
        return false;
    if (in->type == S_IFREG && fs->q &&
        (queue_get_state(fs->q, dir) != QUEUE_NONE || store_knows(fs, dir))) {
        /* A GGUF file is a unit of its own: its xattrs describe it, not its directory. */
        *file = strrchr(dir, '/') + 1;
        return true;
    }
    *file = in->type == S_IFDIR ? NULL : split_path(dir);
    return true;
}

static void pf_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
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
        len = xattr_get(fs->st, fs->q, fs->gate, dir, file, name, value, size);
    } else {
        /* Every other name passes through, also security.capability and the xattrs of symlinks
         * (the magic link of an O_PATH fd names the symlink itself, never its target). */
        char proc[64];
        proc_path(in->fd, proc);
        value = size ? malloc(size) : NULL;
        if (size && !value) {
            err = ENOMEM;
            goto out;
        }
        len = getxattr(proc, name, value, size);
        if (len < 0)
            len = -errno;
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

static void pf_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
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
    char proc[64];
    proc_path(in->fd, proc);
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
    int extra = ours ? xattr_list(fs->st, fs->q, fs->gate, dir, file, NULL, 0) : 0;
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
        int n = xattr_list(fs->st, fs->q, fs->gate, dir, file, list + used,
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
    if (err)
        fuse_reply_err(req, xattr_errno(err));
    free(list);
}

static void pf_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
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
        err = -xattr_set(fs->st, fs->q, dir, file, name, value, size, caller_is_admin(req, fs),
                         who.uid, who.pid);
    }
    else {
        char proc[64];
        proc_path(in->fd, proc);
        if (setxattr(proc, name, value, size, flags) != 0)
            err = errno;
    }
    fuse_reply_err(req, xattr_errno(err));
}

static void pf_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    pf_inode *in = inode_of(req, ino);
    int err = 0;
    if (in->vdir)
        err = EACCES;
    else if (xattr_is_provenance(name))
        err = EPERM;
    else {
        char proc[64];
        proc_path(in->fd, proc);
        if (removexattr(proc, name) != 0)
            err = errno;
    }
    fuse_reply_err(req, xattr_errno(err));
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
    if (!fs->st || !ml || strncmp(rq->path, fs->mountpoint, ml) != 0 ||
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
        if (fs->q && (queue_get_state(fs->q, dir) != QUEUE_NONE || store_knows(fs, dir)))
            file = strrchr(dir, '/') + 1; /* a file unit: it describes itself */
        else
            file = split_path(dir);
    } else if (!S_ISDIR(sb.st_mode)) {
        snprintf(reply, replylen, "not a model unit");
        return EINVAL;
    }
    int err = -xattr_set(fs->st, fs->q, dir, file,
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

const struct fuse_lowlevel_ops *ops_table(void)
{
    return &pf_ops;
}

pf_fs *ops_fs_new(const char *backing_abs, double timeout)
{
    pf_fs *fs = calloc(1, sizeof *fs);
    if (!fs)
        return NULL;
    fs->backing = strdup(backing_abs);
    fs->n_buckets = 4096;
    fs->table = calloc(fs->n_buckets, sizeof *fs->table);
    fs->root.fd = open(backing_abs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (!fs->backing || !fs->table || fs->root.fd < 0) {
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
    fs->backing_len = strcmp(backing_abs, "/") == 0 ? 0 : strlen(backing_abs);
    fs->timeout = timeout;
    fs->root.type = S_IFDIR;
    fs->root.nlookup = 2;
    struct stat st;
    if (fstat(fs->root.fd, &st) == 0) {
        fs->root.dev = st.st_dev;
        fs->root.ino = st.st_ino;
    }
    pthread_mutex_init(&fs->inode_lock, NULL);
    return fs;
}

void ops_fs_attach(pf_fs *fs, store_handle *st, queue *q, gate *g, gid_t admin_gid)
{
    fs->st = st;
    fs->q = q;
    fs->gate = g;
    fs->admin_gid = admin_gid;
}

void ops_fs_free(pf_fs *fs)
{
    if (!fs)
        return;
    for (size_t b = 0; b < fs->n_buckets; b++) {
        pf_inode *in = fs->table[b];
        while (in) {
            pf_inode *next = in->hnext;
            if (in->vfile)
                free(in->vfile);
            close(in->fd);
            free(in->gate_path);
            free(in);
            in = next;
        }
    }
    free(fs->root.vfile);
    free(fs->table);
    close(fs->root.fd);
    pthread_mutex_destroy(&fs->inode_lock);
    free(fs->mountpoint);
    free(fs->backing);
    free(fs);
}
