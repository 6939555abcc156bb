/* The inode table: one pf_inode per file the kernel holds a lookup of, keyed by
 * (st_dev, st_ino); the fuse_ino_t is the pointer. Also the .provenance virtual files and the
 * paths of inodes.
 *
 * The fds of inodes are bounded (--inode-fds): the kernel may hold a lookup of every file a user
 * ever made, and one fd each would let any user exhaust the daemon's descriptors. An inode keeps
 * the kernel's file handle of its file (name_to_handle_at) and an O_PATH fd while it is used; the
 * least recently used unpinned fds are closed once more than the budget are open, and reopened by
 * handle (open_by_handle_at on BACKING's mount) when needed again, checked to be the same file
 * (device, inode number, type): a file that is gone is ENOENT, never another file. Pinned fds are
 * never closed: when every fd is pinned the table goes over the budget for a while instead of
 * failing. Files without handles (a filesystem that has none, or another mount below BACKING)
 * keep their fd while the kernel remembers them, counted apart. The root's fd is outside the
 * budget.
 *
 * Locks: pf_fs.inode_lock protects the table, n_inodes, the fd counters and LRU list, and every
 * fd / pins / nlookup / vfile field. No system call that can block long runs under it (closing an
 * O_PATH fd does not). */
#include "ops_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

/* ---------------------------------------------------------------- paths */

int fd_path(pf_fs *fs, int fd, char *out, size_t outlen)
{
    return units_fd_path(&fs->u, fd, out, outlen);
}

int inode_path(pf_fs *fs, pf_inode *in, char *out, size_t outlen)
{
    if (in == &fs->root) {
        snprintf(out, outlen, "/");
        return 0;
    }
    int fd = inode_pin(fs, in);
    if (fd < 0)
        return -1;
    int rc = fd_path(fs, fd, out, outlen);
    inode_unpin(fs, in);
    return rc;
}

/* ---------------------------------------------------------------- fds of inodes */

static void lru_remove_locked(pf_fs *fs, pf_inode *in)
{
    if (!in->in_lru)
        return;
    if (in->lru_prev)
        in->lru_prev->lru_next = in->lru_next;
    else
        fs->lru_head = in->lru_next;
    if (in->lru_next)
        in->lru_next->lru_prev = in->lru_prev;
    else
        fs->lru_tail = in->lru_prev;
    in->lru_prev = in->lru_next = NULL;
    in->in_lru = false;
}

/* Closes the least recently used unpinned fds while more than the budget are open. */
static void evict_locked(pf_fs *fs)
{
    while (fs->n_fds > fs->fd_budget && fs->lru_tail) {
        pf_inode *victim = fs->lru_tail;
        lru_remove_locked(fs, victim);
        close(victim->fd);
        victim->fd = -1;
        fs->n_fds--;
    }
}

/* An fd that nobody pins any more joins the list of those that may be closed. */
static void settle_locked(pf_fs *fs, pf_inode *in)
{
    if (in->pins > 0 || in->fd < 0 || in->fd_for_life || in->in_lru)
        return;
    in->lru_prev = NULL;
    in->lru_next = fs->lru_head;
    if (fs->lru_head)
        fs->lru_head->lru_prev = in;
    else
        fs->lru_tail = in;
    fs->lru_head = in;
    in->in_lru = true;
    evict_locked(fs);
}

/* The kernel's handle of the file open on fd, when it can be opened again from BACKING's mount;
 * NULL otherwise (the fd is then kept for life). */
static struct file_handle *handle_of(pf_fs *fs, int fd)
{
    if (fs->mount_fd < 0)
        return NULL;
    struct file_handle *fh = malloc(sizeof *fh + MAX_HANDLE_SZ);
    if (!fh)
        return NULL;
    fh->handle_bytes = MAX_HANDLE_SZ;
    int mnt_id = -1;
    int rc = name_to_handle_at(fd, "", fh, &mnt_id, AT_EMPTY_PATH);
    if (rc != 0 || mnt_id != fs->mnt_id) {
        if (!atomic_exchange(&fs->warned_no_handle, true))
            fprintf(stderr, "provfs: a file below BACKING has no file handle (%s): its inode "
                            "keeps an fd while the kernel remembers it (not within --inode-fds)\n",
                    rc == 0 ? "another mount" : strerror(errno));
        free(fh);
        return NULL;
    }
    struct file_handle *exact = realloc(fh, sizeof *fh + fh->handle_bytes);
    return exact ? exact : fh;
}

/* Opens in's file again from its handle: that very file (device, inode, type), or -1 with
 * *err set (ENOENT when it is gone). */
static int reopen(pf_fs *fs, pf_inode *in, int *err)
{
    if (!in->fh) {
        *err = in->vdir ? EINVAL : ENOENT;
        return -1;
    }
    int fd = open_by_handle_at(fs->mount_fd, in->fh, O_PATH | O_CLOEXEC);
    if (fd < 0) {
        *err = errno == ESTALE ? ENOENT : errno;
        return -1;
    }
    struct stat st;
    if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0 || st.st_dev != in->dev ||
        st.st_ino != in->ino || (st.st_mode & S_IFMT) != in->type) {
        close(fd);
        *err = ENOENT;
        return -1;
    }
    return fd;
}

int inode_pin(pf_fs *fs, pf_inode *in)
{
    if (in == &fs->root)
        return fs->root.fd;
    pthread_mutex_lock(&fs->inode_lock);
    in->pins++;
    int fd = in->fd;
    if (fd >= 0)
        lru_remove_locked(fs, in);
    pthread_mutex_unlock(&fs->inode_lock);
    if (fd >= 0)
        return fd;
    int err = 0;
    int mine = reopen(fs, in, &err);
    int extra = -1;
    pthread_mutex_lock(&fs->inode_lock);
    if (mine >= 0 && in->fd >= 0) {
        extra = mine; /* another thread opened it meanwhile: use that one */
    } else if (mine >= 0) {
        in->fd = mine;
        fs->n_fds++;
        evict_locked(fs);
    } else {
        in->pins--;
        settle_locked(fs, in);
    }
    fd = mine >= 0 ? in->fd : -err;
    pthread_mutex_unlock(&fs->inode_lock);
    if (extra >= 0)
        close(extra);
    return fd;
}

void inode_unpin(pf_fs *fs, pf_inode *in)
{
    if (in == &fs->root)
        return;
    pthread_mutex_lock(&fs->inode_lock);
    in->pins--;
    settle_locked(fs, in);
    pthread_mutex_unlock(&fs->inode_lock);
}

int inode_fds_init(pf_fs *fs, size_t budget)
{
    fs->fd_budget = budget;
    fs->mount_fd = openat(fs->root.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fs->mount_fd < 0)
        return errno;
    struct file_handle *fh = malloc(sizeof *fh + MAX_HANDLE_SZ);
    if (!fh)
        return ENOMEM;
    fh->handle_bytes = MAX_HANDLE_SZ;
    if (name_to_handle_at(fs->root.fd, "", fh, &fs->mnt_id, AT_EMPTY_PATH) != 0) {
        fprintf(stderr, "provfs: BACKING has no file handles (%s): every inode keeps an fd while "
                        "the kernel remembers it (not within --inode-fds)\n", strerror(errno));
        atomic_store(&fs->warned_no_handle, true);
        close(fs->mount_fd);
        fs->mount_fd = -1;
    }
    free(fh);
    return 0;
}

int child_path(pf_fs *fs, pf_inode *dir, const char *name, char *out, size_t outlen)
{
    char base[PATH_MAX];
    if (inode_path(fs, dir, base, sizeof base) != 0)
        return -1;
    int n = snprintf(out, outlen, "%s%s%s", base, strcmp(base, "/") == 0 ? "" : "/", name);
    return n > 0 && (size_t)n < outlen ? 0 : -1;
}

/* ---------------------------------------------------------------- inode table */

static size_t hash_of(dev_t dev, ino_t ino, size_t n_buckets)
{
    uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)dev;
    return (size_t)(h % n_buckets);
}

pf_inode *inode_find_locked(pf_fs *fs, dev_t dev, ino_t ino)
{
    pf_inode *in = fs->table[hash_of(dev, ino, fs->n_buckets)];
    while (in && !(in->dev == dev && in->ino == ino))
        in = in->hnext;
    return in;
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

void unref_locked(pf_fs *fs, pf_inode *in, uint64_t n)
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
    if (in->fd >= 0) {
        lru_remove_locked(fs, in);
        if (in->fd_for_life)
            fs->n_fds_for_life--;
        else
            fs->n_fds--;
        close(in->fd);
    }
    free(in->fh);
    free(in->gate_path);
    free(in);
}

static int lookup_fd(pf_fs *fs, int fd, struct fuse_entry_param *e);

/* Looks name up under parent on BACKING; fills e and takes one lookup reference. 0 or errno. */
int do_lookup(pf_fs *fs, pf_inode *parent, const char *name, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof *e);
    int dirfd = inode_pin(fs, parent);
    if (dirfd < 0)
        return -dirfd;
    int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    int err = fd < 0 ? errno : 0;
    inode_unpin(fs, parent);
    return err ? err : lookup_fd(fs, fd, e);
}

/* The entry of the file open on fd (any kind of fd): the file this call made, whatever its name
 * names by now. 0 or errno. */
int lookup_open_file(pf_fs *fs, int fd, int dirfd, const char *name, struct fuse_entry_param *e)
{
    /* Usually the name still names it: that O_PATH fd, checked to be the same inode (fd keeps
     * it alive, so its number is not reused), spares resolving the fd's magic link. */
    if (dirfd >= 0 && name) {
        struct stat mine, named;
        int nfd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (nfd >= 0 && fstat(fd, &mine) == 0 &&
            fstatat(nfd, "", &named, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 &&
            mine.st_dev == named.st_dev && mine.st_ino == named.st_ino)
            return lookup_fd(fs, nfd, e);
        if (nfd >= 0)
            close(nfd);
    }
    char proc[64];
    proc_path(fd, proc);
    int pfd = open(proc, O_PATH | O_CLOEXEC);
    if (pfd < 0) {
        memset(e, 0, sizeof *e);
        return errno;
    }
    return lookup_fd(fs, pfd, e);
}

/* Enters the O_PATH fd (taken over) in the inode table; fills e, one lookup reference. A known
 * inode whose fd was closed takes this one (the same file) instead of opening its handle later. */
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
    struct file_handle *fh = NULL;
    pthread_mutex_lock(&fs->inode_lock);
    pf_inode *in;
    for (;;) {
        in = inode_find_locked(fs, e->attr.st_dev, e->attr.st_ino);
        if (in || fh || fs->mount_fd < 0)
            break;
        /* A new inode: its handle is taken without the lock, then the table looked at again. */
        pthread_mutex_unlock(&fs->inode_lock);
        fh = handle_of(fs, fd);
        pthread_mutex_lock(&fs->inode_lock);
        if (!fh)
            break;
    }
    if (in) {
        in->nlookup++;
        if (in->fd < 0 && !in->vdir) {
            in->fd = fd;
            fd = -1;
            fs->n_fds++;
            settle_locked(fs, in);
        }
    } else {
        in = calloc(1, sizeof *in);
        if (!in) {
            pthread_mutex_unlock(&fs->inode_lock);
            close(fd);
            free(fh);
            return ENOMEM;
        }
        in->fd = fd;
        fd = -1;
        in->fh = fh;
        fh = NULL;
        in->fd_for_life = !in->fh;
        if (in->fd_for_life)
            fs->n_fds_for_life++;
        else
            fs->n_fds++;
        in->dev = e->attr.st_dev;
        in->ino = e->attr.st_ino;
        in->type = e->attr.st_mode & S_IFMT;
        in->nlookup = 1;
        size_t b = hash_of(in->dev, in->ino, fs->n_buckets);
        in->hnext = fs->table[b];
        fs->table[b] = in;
        if (++fs->n_inodes > fs->n_buckets * 2)
            table_grow_locked(fs);
        settle_locked(fs, in);
    }
    pthread_mutex_unlock(&fs->inode_lock);
    free(fh);
    if (fd >= 0)
        close(fd);
    e->ino = (uintptr_t)in;
    return 0;
}

/* Attributes of a directory's .provenance file (size 0: rendered at open). */
void vfile_attr(pf_fs *fs, pf_inode *vf, struct stat *st)
{
    memset(st, 0, sizeof *st);
    struct stat dir;
    int dirfd = inode_pin(fs, vf->vdir);
    if (dirfd >= 0 && fstatat(dirfd, "", &dir, AT_EMPTY_PATH) == 0) {
        st->st_dev = dir.st_dev;
        st->st_ino = dir.st_ino ^ VFILE_INO_BIT;
        st->st_atim = st->st_mtim = st->st_ctim = dir.st_mtim;
    }
    if (dirfd >= 0)
        inode_unpin(fs, vf->vdir);
    st->st_mode = S_IFREG | 0444;
    st->st_nlink = 1;
    st->st_blksize = 4096;
    /* Size 0: the JSON is rendered at open only (never on lookup or getattr), and the file is
     * opened direct_io, so reads go on to the end of the rendered text whatever i_size says. */
    st->st_size = 0;
}

int vfile_lookup(pf_fs *fs, pf_inode *dir, struct fuse_entry_param *e)
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

void pf_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    pf_fs *fs = fs_of(req);
    pthread_mutex_lock(&fs->inode_lock);
    unref_locked(fs, inode_of(req, ino), nlookup);
    pthread_mutex_unlock(&fs->inode_lock);
    fuse_reply_none(req);
}

void pf_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    pf_fs *fs = fs_of(req);
    pthread_mutex_lock(&fs->inode_lock);
    for (size_t i = 0; i < count; i++)
        unref_locked(fs, inode_of(req, forgets[i].ino), forgets[i].nlookup);
    pthread_mutex_unlock(&fs->inode_lock);
    fuse_reply_none(req);
}

/* At unmount, with no request running: every inode and its fd. */
void inode_table_free(pf_fs *fs)
{
    for (size_t b = 0; b < fs->n_buckets; b++) {
        pf_inode *in = fs->table[b];
        while (in) {
            pf_inode *next = in->hnext;
            if (in->vfile)
                free(in->vfile);
            if (in->fd >= 0)
                close(in->fd);
            free(in->fh);
            free(in->gate_path);
            free(in);
            in = next;
        }
    }
    free(fs->table);
    fs->table = NULL;
    if (fs->mount_fd >= 0)
        close(fs->mount_fd);
    fs->mount_fd = -1;
}

/* ---------------------------------------------------------------- page cache */

static bool same_time(struct timespec a, struct timespec b)
{
    return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

bool cache_keep(pf_fs *fs, pf_inode *in, int fd)
{
    struct stat sb;
    if (in == &fs->root || in->vdir || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        cache_changed(fs, in);
        return false;
    }
    pthread_mutex_lock(&fs->inode_lock);
    bool same = in->cache_valid && in->cache_size == sb.st_size &&
                same_time(in->cache_mtime, sb.st_mtim) && same_time(in->cache_ctime, sb.st_ctim);
    in->cache_valid = true;
    in->cache_size = sb.st_size;
    in->cache_mtime = sb.st_mtim;
    in->cache_ctime = sb.st_ctim;
    pthread_mutex_unlock(&fs->inode_lock);
    return same;
}

void cache_changed(pf_fs *fs, pf_inode *in)
{
    if (!in || in == &fs->root)
        return;
    pthread_mutex_lock(&fs->inode_lock);
    in->cache_valid = false;
    pthread_mutex_unlock(&fs->inode_lock);
}

/* The notifier thread: sends the queued invalidations. An inode the kernel has forgotten
 * meanwhile is answered ENOENT by the kernel; nothing else holds its number. */
static void *notifier_main(void *arg)
{
    pf_fs *fs = arg;
    fuse_ino_t batch[256];
    pthread_mutex_lock(&fs->notify_lock);
    for (;;) {
        while (!fs->notify_n && !fs->notify_stop)
            pthread_cond_wait(&fs->notify_cond, &fs->notify_lock);
        if (!fs->notify_n && fs->notify_stop)
            break;
        size_t n = fs->notify_n;
        memcpy(batch, fs->notify_q, n * sizeof *batch);
        fs->notify_n = 0;
        pthread_mutex_unlock(&fs->notify_lock);
        for (size_t i = 0; i < n; i++)
            fuse_lowlevel_notify_inval_inode(fs->se, batch[i], 0, 0);
        pthread_mutex_lock(&fs->notify_lock);
    }
    pthread_mutex_unlock(&fs->notify_lock);
    return NULL;
}

void cache_notify(pf_fs *fs, fuse_ino_t ino)
{
    if (!fs->notifier_running)
        return;
    pthread_mutex_lock(&fs->notify_lock);
    bool queued = false;
    for (size_t i = 0; i < fs->notify_n && !queued; i++)
        queued = fs->notify_q[i] == ino;
    /* A full queue drops the request: every change the daemon makes is one the kernel made its
     * cached pages follow already (write, truncate, fallocate, copy_file_range all go through
     * it), and the next open compares the file's stamp; the notification only hurries that. */
    if (!queued && fs->notify_n < sizeof fs->notify_q / sizeof fs->notify_q[0])
        fs->notify_q[fs->notify_n++] = ino;
    pthread_cond_signal(&fs->notify_cond);
    pthread_mutex_unlock(&fs->notify_lock);
}

void ops_fs_set_session(pf_fs *fs, struct fuse_session *se)
{
    if (se && !fs->notifier_running) {
        fs->se = se;
        fs->notify_stop = false;
        fs->notifier_running = pthread_create(&fs->notifier, NULL, notifier_main, fs) == 0;
    } else if (!se && fs->notifier_running) {
        pthread_mutex_lock(&fs->notify_lock);
        fs->notify_stop = true;
        pthread_cond_signal(&fs->notify_cond);
        pthread_mutex_unlock(&fs->notify_lock);
        pthread_join(fs->notifier, NULL);
        fs->notifier_running = false;
        fs->se = NULL;
    }
}
