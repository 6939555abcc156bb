/* The inode table: one pf_inode per file the kernel holds a lookup of, keyed by
 * (st_dev, st_ino), each with an O_PATH fd on BACKING; the fuse_ino_t is the pointer. Also the
 * .provenance virtual files and the paths of inodes.
 *
 * Locks: pf_fs.inode_lock protects the table, n_inodes and every nlookup / vfile field. */
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
    return fd_path(fs, in->fd, out, outlen);
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
    close(in->fd);
    free(in->gate_path);
    free(in);
}

static int lookup_fd(pf_fs *fs, int fd, struct fuse_entry_param *e);

/* Looks name up under parent on BACKING; fills e and takes one lookup reference. 0 or errno. */
int do_lookup(pf_fs *fs, pf_inode *parent, const char *name, struct fuse_entry_param *e)
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
int lookup_open_file(pf_fs *fs, int fd, struct fuse_entry_param *e)
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
void vfile_attr(pf_fs *fs, pf_inode *vf, struct stat *st)
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
    if (fs->u.st && inode_path(fs, vf->vdir, path, sizeof path) == 0)
        text = vfile_render(fs->u.st, fs->u.q, fs->gate, path, &len);
    free(text);
    st->st_size = (off_t)len;
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
            close(in->fd);
            free(in->gate_path);
            free(in);
            in = next;
        }
    }
    free(fs->table);
    fs->table = NULL;
}
