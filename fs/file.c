/* Open files: create, open, read, write and the other callbacks on a pf_handle, and the policy
 * gate that every open for reading and every move of a file's bytes passes (fs/POLICY.md). */
#include "ops_int.h"
#include "clock.h"

#include "provfs/analyzer.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---------------------------------------------------------------- policy enforcement */

/* The one decision for exposing a file's bytes (fs/POLICY.md), asked by every operation that
 * opens a file for reading (open, create of a name that exists) or moves bytes between names
 * (rename in either direction, exchange, link). path: the file's mount-relative path, NULL when
 * it cannot be resolved (then model bytes are refused: fail closed); fd: the file open for
 * reading (its first bytes tell a model from documentation), -1 when unknown. A store error
 * fails closed too. Decided from stored data (gate.c caches it); never analyses. Returns EACCES
 * to refuse, 0 to go on; *log is set when an events row is due, written after the reply so it
 * never delays the caller. */
int gate_read_fd(fuse_req_t req, pf_fs *fs, const char *path, int fd, int flags,
                 gate_open *log)
{
    memset(log, 0, sizeof *log);
    if (!fs->gate || (flags & O_ACCMODE) == O_WRONLY)
        return 0;
    gate_open o;
    int rc = path ? gate_check_open(fs->gate, path, fd, &o) : -1;
    if (rc == 0 && o.stale) {
        /* Changed since its analysis by a route no mark followed: analysed again, and this
         * open is decided as pending meanwhile (the unit is no longer settled). */
        pf_caller who = caller_of(req);
        struct stat sb;
        if (fs->u.q && fstat(fd, &sb) == 0)
            queue_known_written(fs->u.q, (uint64_t)sb.st_ino); /* no hash kept holds for it */
        bool marked = units_mark_file(&fs->u, who, o.stale_unit, false) ||
                      units_mark_dir(&fs->u, who, o.stale_unit, false);
        rc = marked ? gate_check_open(fs->gate, path, fd, &o) : -1;
        if (rc == 0 && o.stale)
            rc = -1;
    }
    if (rc != 0)
        gate_check_unresolved(fs->gate, fd, &o);
    log->cacheable = o.cacheable && path;
    if (!o.applies || caller_is_admin(req, fs))
        return 0;
    *log = o;
    return o.enforced ? EACCES : 0;
}

void policy_log(pf_fs *fs, const gate_open *log, const char *path, pf_caller who)
{
    if (log->applies)
        gate_log_open(fs->gate, log, path && path[0] ? path : "(unresolved)", who.uid, who.pid);
}

/* True when in's cached "nothing to do" still holds (no readlink of its path needed): same
 * store, policy and names, and the file on fd unchanged since (ctime moves with any change,
 * made by whatever name, and no user can set it back). */
static bool gate_cache_hit(pf_fs *fs, pf_inode *in, const struct stat *sb, gate_stamp stamp,
                           uint64_t epoch)
{
    char path[PATH_MAX];
    bool hit = false;
    pthread_mutex_lock(&fs->inode_lock);
    if (in->gate_path && in->gate_epoch == epoch && in->gate_stamp.generation == stamp.generation &&
        in->gate_stamp.serial == stamp.serial && in->gate_ctime.tv_sec == sb->st_ctim.tv_sec &&
        in->gate_ctime.tv_nsec == sb->st_ctim.tv_nsec) {
        snprintf(path, sizeof path, "%s", in->gate_path);
        hit = true;
    }
    pthread_mutex_unlock(&fs->inode_lock);
    return hit && gate_settled(fs->gate, path);
}

/* sb: the file as fstat found it before it was decided. */
static void gate_cache_store(pf_fs *fs, pf_inode *in, const struct stat *sb, const char *path,
                             gate_stamp stamp, uint64_t epoch)
{
    if (store_ctime_young(store_ts_ns(sb->st_ctim)))
        return; /* a change to come may share it */
    char *copy = strdup(path);
    if (!copy)
        return;
    pthread_mutex_lock(&fs->inode_lock);
    char *old = in->gate_path;
    in->gate_path = copy;
    in->gate_stamp = stamp;
    in->gate_epoch = epoch;
    in->gate_ctime = sb->st_ctim;
    pthread_mutex_unlock(&fs->inode_lock);
    free(old);
}

/* An fd to read the first bytes of the regular file name in dir (or of in when name is NULL),
 * -1 when it is not a regular file; -1 with *err set when dir (or in) cannot be had. */
static int sniff_fd(pf_fs *fs, pf_inode *dir, const char *name, pf_inode *in, int *err)
{
    pf_inode *at = name ? dir : in;
    int atfd;
    if ((*err = inode_pin_err(fs, at, &atfd)) != 0)
        return -1;
    int fd;
    if (name) {
        fd = openat(atfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    } else {
        char proc[64];
        proc_path(atfd, proc);
        fd = in->type == S_IFREG ? open(proc, O_RDONLY | O_NONBLOCK | O_CLOEXEC) : -1;
    }
    inode_unpin(fs, at);
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
int gate_move(fuse_req_t req, pf_fs *fs, pf_inode *dir, const char *name, pf_inode *in,
              pf_inode *newdir, gate_open *log, char *from, size_t fromlen)
{
    memset(log, 0, sizeof *log);
    from[0] = '\0';
    if (!fs->gate || gate_off(fs->gate))
        return 0;
    int err = 0;
    int fd = sniff_fd(fs, dir, name, in, &err);
    if (fd < 0)
        return err; /* a directory moves its units whole; links and special files hold no bytes */
    int rc = name ? child_path(fs, dir, name, from, fromlen) : inode_path(fs, in, from, fromlen);
    char from_dir[PATH_MAX], to_dir[PATH_MAX];
    uint8_t head[PA_SNIFF_BYTES];
    ssize_t n = pread(fd, head, sizeof head, 0);
    const char *format = n > 0 ? pa_sniff_format(head, (size_t)n) : NULL;
    /* A GGUF file is a unit of its own: another name for it is another unit, checked. */
    bool file_unit = format && strcmp(format, "gguf") == 0;
    if (rc == 0 && !file_unit && inode_path(fs, newdir, to_dir, sizeof to_dir) == 0) {
        snprintf(from_dir, sizeof from_dir, "%s", from);
        units_split_path(from_dir);
        if (strcmp(from_dir, to_dir) == 0) {
            close(fd);
            return 0;
        }
    }
    err = gate_read_fd(req, fs, rc == 0 ? from : NULL, fd, O_RDONLY, log);
    close(fd);
    return err;
}

/* ---------------------------------------------------------------- files */

static bool follow_off(pf_fs *fs)
{
    /* where users change BACKING behind every daemon, any ctime move is analysed; other
     * daemons of a shared database mark what they change, as this one does */
    return !fs->u.st || !fs->u.q || fs->shared_backing;
}

void follow_begin(pf_fs *fs, pf_inode *in, int fd, pf_follow *f)
{
    f->on = false;
    if (!S_ISREG(in->type) || in->vdir || follow_off(fs))
        return;
    f->gen = atomic_load(&in->write_gen);
    if (atomic_load(&in->writers) != 0 ||
        fstatat(fd, "", &f->was, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
        return;
    f->on = true;
}

/* The store's part: the file now at path, unchanged but for its times since f->was. */
static void follow_store(pf_fs *fs, const pf_follow *f, const struct stat *now, const char *path)
{
    if (now->st_ino != f->was.st_ino || now->st_dev != f->was.st_dev ||
        now->st_size != f->was.st_size || !S_ISREG(now->st_mode) ||
        store_ts_ns(now->st_ctim) == store_ts_ns(f->was.st_ctim))
        return;
    store_file was = {.size = (uint64_t)f->was.st_size,
                      .mtime_ns = store_ts_ns(f->was.st_mtim),
                      .ctime_ns = store_ts_ns(f->was.st_ctim),
                      .ino = (uint64_t)f->was.st_ino};
    const char *base = strrchr(path, '/');
    const char *name = base ? base + 1 : path;
    int64_t mtime = store_ts_ns(now->st_mtim), ctime = store_ts_ns(now->st_ctim);
    /* the file's own unit (GGUF, loose weights) and its directory's */
    if (units_store_knows(&fs->u, path))
        store_file_follow(fs->u.st, path, name, &was, mtime, ctime);
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    units_split_path(dir);
    if (units_store_knows(&fs->u, dir))
        store_file_follow(fs->u.st, dir, name, &was, mtime, ctime);
}

void follow_end(pf_fs *fs, pf_inode *in, int fd, const pf_follow *f)
{
    struct stat now;
    char path[PATH_MAX];
    /* the file first, then that nothing could have written it by then */
    if (!f->on || fstatat(fd, "", &now, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0 ||
        atomic_load(&in->writers) != 0 || atomic_load(&in->write_gen) != f->gen ||
        inode_path(fs, in, path, sizeof path) != 0)
        return;
    follow_store(fs, f, &now, path);
}

/* The writers and write generation of the inode (dev, ino) when the daemon has it (a handle
 * needs it: one it does not have has no handle open). */
static bool write_state(pf_fs *fs, dev_t dev, ino_t ino, int *writers, unsigned *gen)
{
    bool found = false;
    pthread_mutex_lock(&fs->inode_lock);
    pf_inode *in = inode_find_locked(fs, dev, ino);
    if (in) {
        *writers = atomic_load(&in->writers);
        *gen = atomic_load(&in->write_gen);
        found = true;
    }
    pthread_mutex_unlock(&fs->inode_lock);
    return found;
}

void follow_begin_name(pf_fs *fs, int dfd, const char *name, pf_follow *f)
{
    int writers;
    f->on = !follow_off(fs) &&
            fstatat(dfd, name, &f->was, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(f->was.st_mode) &&
            write_state(fs, f->was.st_dev, f->was.st_ino, &writers, &f->gen) && writers == 0;
}

void follow_end_name(pf_fs *fs, int dfd, const char *name, const char *path, const pf_follow *f)
{
    struct stat now;
    int writers;
    unsigned gen;
    if (f->on && fstatat(dfd, name, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
        write_state(fs, now.st_dev, now.st_ino, &writers, &gen) && writers == 0 && gen == f->gen)
        follow_store(fs, f, &now, path);
}

/* A handle opened for writing: counts as a writer of its inode; a file written from its start
 * (fresh: created, truncated or empty) by this handle alone is hashed while written. Another
 * writer opening the file later invalidates the hash (write_gen moves). */
static void handle_start_write(pf_fs *fs, pf_handle *h, pf_inode *in, int flags, bool fresh)
{
    if ((flags & O_ACCMODE) == O_RDONLY || in->vdir)
        return;
    h->in = in;
    bool alone = atomic_fetch_add(&in->writers, 1) == 0;
    h->write_gen = atomic_fetch_add(&in->write_gen, 1) + 1;
    /* after write_gen moved: a hashing writer that found it unmoved took its clock before */
    if (fs->u.q)
        queue_known_written(fs->u.q, (uint64_t)in->ino);
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

/* Is a mark due again: an analysis began here since the last one (at most one mark every
 * REMARK_MS: a read open beside this handle marks on its own, so a change between two marks
 * stays pending for new readers), or, with a database other daemons analyse from too,
 * REMARK_SHARED_MS passed. */
#define REMARK_MS 100
#define REMARK_SHARED_MS 1000
static bool remark_due(pf_fs *fs, pf_handle *h)
{
    int64_t since = mono_ms() - atomic_load(&h->mark_ms);
    if (since >= REMARK_MS && queue_started(fs->u.q) != atomic_load(&h->mark_started))
        return true;
    return fs->u.st && store_shared(fs->u.st) && since >= REMARK_SHARED_MS;
}

/* The first change through a handle (write, truncate, fallocate, copy into it) makes the file's
 * unit pending at once, before the reply: from then on it carries no earlier decision or
 * approval. Its analysis follows the close (release marks again). */
void handle_changed(fuse_req_t req, pf_handle *h, bool bytes)
{
    pf_fs *fs = fs_of(req);
    if (bytes && !atomic_load(&h->wrote))
        atomic_store(&h->wrote, 1);
    atomic_fetch_add(&h->changes, 1);
    bool first = !atomic_exchange(&h->written, 1);
    if (first)
        cache_changed(fs, h->in);
    else if (!fs->u.q || !remark_due(fs, h))
        return;
    /* An analysis begun since the last mark may have read the file before this change, and its
     * result would stand (an approval binding again) while the handle stays open and writes
     * on: the change marks the unit again. */
    atomic_store(&h->mark_started, fs->u.q ? queue_started(fs->u.q) : 0);
    atomic_store(&h->mark_ms, mono_ms());
    if (units_mark_file_fd(&fs->u, caller_of(req), h->fd, true))
        atomic_store(&h->marked, true); /* (the file may have moved into a unit since) */
}

/* A read-only handle the kernel serves by passthrough: no page of FUSE's own cache is kept. */
static void handle_passthrough(struct fuse_file_info *fi)
{
    fi->keep_cache = 0;
    fi->direct_io = 0;
}

void handle_changed_after(pf_handle *h)
{
    atomic_fetch_add(&h->changes, 1);
}

/* Is a mark due when the handle goes: it changed the file (bytes, or a create or truncate that
 * found a unit) and some change is not covered by a close's mark. */
static bool handle_unmarked(pf_handle *h)
{
    return atomic_load(&h->written) && (atomic_load(&h->wrote) || atomic_load(&h->marked)) &&
           atomic_load(&h->changes) != atomic_load(&h->closed_at);
}

/* Leaving a handle, in two steps around the reply: the inode is the kernel's to forget once the
 * release is replied, so the writer count is dropped first (true: this handle wrote alone). */
static bool handle_leave(pf_fs *fs, pf_handle *h)
{
    if (h->vdata || !h->in)
        return false;
    atomic_fetch_sub(&h->in->writers, 1);
    /* the kept hash's clock, before the check: a write open after it voids the hash */
    h->known_clock = fs->u.q ? queue_known_clock(fs->u.q) : 0;
    return atomic_load(&h->in->write_gen) == h->write_gen;
}

/* marked: the release marked the unit already (before its reply) */
static void handle_finish(pf_fs *fs, pf_handle *h, pf_caller who, bool alone, bool marked)
{
    if (h->vdata) {
        free(h->vdata);
    } else {
        bool kept = false;
        if (h->in) {
            struct stat sb;
            char hex[65], path[PATH_MAX];
            /* (an empty file's hash saves the analysis nothing) */
            kept = writehash_finish(h->wh, fstat(h->fd, &sb) == 0 ? (uint64_t)sb.st_size
                                                                  : UINT64_MAX,
                                    hex) &&
                   sb.st_size > 0 && alone && fs->u.q &&
                   fd_path(fs, h->fd, path, sizeof path) == 0;
            if (kept)
                queue_known_put(fs->u.q, path,
                                &(queue_file_id){.size = (uint64_t)sb.st_size,
                                                 .ino = (uint64_t)sb.st_ino,
                                                 .mtime_ns = store_ts_ns(sb.st_mtim),
                                                 .ctime_ns = store_ts_ns(sb.st_ctim)},
                                hex, h->known_clock);
        }
        /* A handle that only created or truncated its file, where that found no unit to mark,
         * changed nothing a unit holds: no bytes since, and a file or directory that became a
         * unit meanwhile was marked by the change that made it one. A handle the last close
         * marked (pf_flush) and unchanged since is not marked again. Marked here when the
         * release did not, or again once a hash is kept: the analysis is due a quiet period
         * after this mark and finds the hash. */
        if (handle_unmarked(h) && (!marked || kept))
            units_mark_file_fd(&fs->u, who, h->fd, false);
        close(h->fd);
    }
    free(h);
}

/* An open or create whose reply did not reach the caller (interrupted): the kernel will send no
 * release for it, so the handle is released here. */
static void handle_unreplied(pf_fs *fs, pf_handle *h, pf_caller who)
{
    pt_leave(fs, h->io_in, h->io);
    handle_finish(fs, h, who, handle_leave(fs, h), false);
}

static int open_vfile(pf_fs *fs, pf_inode *vf, struct fuse_file_info *fi)
{
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))
        return EACCES;
    char path[PATH_MAX];
    if (!fs->u.st || inode_path(fs, vf->vdir, path, sizeof path) != 0) {
        char proc[64], buf[PATH_MAX];
        int dfd = inode_pin(fs, vf->vdir);
        proc_path(dfd, proc);
        ssize_t n = dfd >= 0 ? readlink(proc, buf, sizeof buf - 1) : -1;
        int err = errno;
        inode_unpin_fd(fs, vf->vdir, dfd);
        buf[n > 0 ? n : 0] = 0;
        fprintf(stderr, "provfs: .provenance: directory fd %d resolves to '%s' (%zd, errno %d)\n",
                dfd, buf, n, err);
        return ENOENT;
    }
    pf_handle *h = handle_new(-1);
    if (!h)
        return ENOMEM;
    h->vdata = vfile_render(fs->u.st, fs->u.q, fs->gate, path, &h->vlen);
    if (!h->vdata) {
        free(h);
        return EIO;
    }
    fi->fh = (uintptr_t)h;
    fi->direct_io = 1;
    fi->noflush = 1; /* nothing to do at close (pf_flush) */
    return 0;
}

/* ---------------------------------------------------------------- set-ID bits */

/* Whether the caller holds CAP_FSETID in the daemon's user namespace, from /proc. Anything
 * unreadable or odd counts as no: the bits go, as for any user. */
static bool caller_fsetid(fuse_req_t req)
{
    pid_t pid = fuse_req_ctx(req)->pid;
    char path[64], ns[64], own[64];
    snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
    ssize_t a = readlink(path, ns, sizeof ns - 1),
            b = readlink("/proc/self/ns/user", own, sizeof own - 1);
    if (pid <= 0 || a <= 0 || a != b || memcmp(ns, own, (size_t)a) != 0)
        return false;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    char line[256];
    unsigned long long eff = 0;
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = sscanf(line, "CapEff: %llx", &eff) == 1;
    fclose(f);
    return found && (eff & (1ull << 4)); /* CAP_FSETID */
}

/* The daemon changes files as root, which keeps set-user-ID and set-group-ID bits where a user's
 * own write, truncate, fallocate or copy drops them. So a change by a caller who may not keep
 * them is made as that caller: its fsuid, fsgid and groups (creds_enter, which drops the
 * thread's CAP_FSETID with fsuid 0), and without CAP_FSETID for a caller of uid 0 too. BACKING's
 * kernel then drops the bits by its own rule, atomically with the change (a mode set meanwhile
 * is never overwritten), and refuses the change where it would refuse the caller's (an
 * append-only file). Only files that have a set-ID bit pay for the switch; whether they gain
 * one meanwhile is a race the same chmod after the change would win anyway. A
 * security.capability attribute needs nothing: BACKING's kernel removes it at any change.
 * 0, or the errno that refuses the change (nothing is changed then). */
int setid_begin(fuse_req_t req, fuse_ino_t ino, int fd, bool ask_caps, pf_setid *s)
{
    memset(s, 0, sizeof *s);
    s->ino = ino;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || !(sb.st_mode & (S_ISUID | S_ISGID)))
        return 0;
    if (ask_caps && caller_fsetid(req))
        return 0;
    int err = creds_enter(req, &s->cr);
    s->active = true;
    if (err)
        return err;
    if (fuse_req_ctx(req)->uid != 0)
        return 0; /* fsuid not 0: the kernel took CAP_FSETID away with it */
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct now[2];
    if (syscall(SYS_capget, &hdr, s->caps) != 0)
        return EPERM;
    memcpy(now, s->caps, sizeof now);
    now[0].effective &= ~(1u << CAP_FSETID);
    if (syscall(SYS_capset, &hdr, now) != 0)
        return EPERM;
    s->capped = true;
    return 0;
}

void setid_end(pf_fs *fs, pf_setid *s)
{
    if (!s->active)
        return;
    if (s->capped) {
        struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
        if (syscall(SYS_capset, &hdr, s->caps) != 0) {
            /* a worker left without CAP_FSETID would drop bits for root callers: never go on */
            fprintf(stderr, "provfs: cannot restore CAP_FSETID: %s\n", strerror(errno));
            abort();
        }
    }
    creds_leave(fs, &s->cr);
    s->active = false;
    cache_notify(fs, s->ino); /* not every change refreshes the kernel's copy of the mode */
}

/* The O_TRUNC of an open of ino, applied after the open was allowed, dropping set-ID bits as
 * the caller's own would (kill_setid: the request's FUSE_OPEN_KILL_SUIDGID; without
 * FUSE_HANDLE_KILLPRIV_V2 the kernel leaves the bits to the daemon too and does not say
 * whether the caller may keep them: /proc tells). 0 or errno. */
static int truncate_opened(fuse_req_t req, fuse_ino_t ino, int fd, int flags, bool kill_setid)
{
    struct stat sb;
    if (!(flags & O_TRUNC) || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        return 0;
    pf_fs *fs = fs_of(req);
    pf_setid sid = {0};
    int err = kill_setid || !fs->killpriv_on ? setid_begin(req, ino, fd, !kill_setid, &sid) : 0;
    if (!err && ftruncate(fd, 0) != 0)
        err = errno;
    setid_end(fs, &sid);
    return err;
}

/* open(O_CREAT): the name is created as the caller with O_EXCL | O_NOFOLLOW, so the daemon never
 * opens, chowns or chmods a name a user swapped in. When the name exists already (made in BACKING
 * by another path since the kernel's lookup) and the caller did not ask for O_EXCL, the existing
 * regular file is opened as the caller — its permissions checked by BACKING's kernel — and
 * through the policy gate like any open; a symlink or special file there is refused. */
void pf_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
               struct fuse_file_info *fi)
{
    pf_fs *fs = fs_of(req);
    pf_inode *dir = inode_of(req, parent);
    bool kill_setid = req_kill_suidgid; /* first: nothing else may read a request before */
    pf_caller who = caller_of(req);
    struct fuse_entry_param e;
    gate_open log = {0};
    char path[PATH_MAX] = "";
    pf_creds cr = {0};
    bool created = false;
    int fd = -1, dfd = -1;
    int err = check_new_name(fs, dir, name);
    if (!err)
        err = inode_pin_err(fs, dir, &dfd);
    if (err)
        goto out;
    int flags = (fi->flags | O_NOFOLLOW | O_CLOEXEC) & ~(O_CREAT | O_EXCL | O_DIRECT | O_TRUNC);
    /* write-only: direct_io too, as in pf_open */
    if ((fi->flags & O_DIRECT) || (fi->flags & O_ACCMODE) == O_WRONLY)
        fi->direct_io = 1;
    if ((err = creds_enter(req, &cr)) != 0)
        goto out;
    fd = openat(dfd, name, flags | O_CREAT | O_EXCL, mode);
    if (fd >= 0)
        created = true;
    else if (errno == EEXIST && !(fi->flags & O_EXCL))
        fd = openat(dfd, name, flags | O_NONBLOCK, 0);
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
        if (err)
            goto out;
    }
    /* The entry is the file opened above, not whatever the name names by now. */
    err = lookup_open_file(fs, fd, dfd, name, &e);
    if (err)
        goto out;
    /* An existing file others read by passthrough: refused if this open may write, else read
     * so too (the kernel's rule); checked before O_TRUNC changes anything. */
    pf_inode *in = (pf_inode *)(uintptr_t)e.ino;
    int32_t pt_id = 0;
    pf_io io = pt_choose(fs, in, fd, fi->flags & O_DIRECT, false,
                         (fi->flags & O_ACCMODE) != O_RDONLY, &pt_id);
    pf_handle *h = NULL;
    err = io == PF_IO_BUSY ? ETXTBSY
          : !created       ? truncate_opened(req, e.ino, fd, fi->flags, kill_setid)
                           : 0;
    if (err || !(h = handle_new(fd))) {
        fuse_reply_err(req, err ? err : ENOMEM);
        pt_leave(fs, in, io);
        pthread_mutex_lock(&fs->inode_lock);
        unref_locked(fs, in, 1);
        pthread_mutex_unlock(&fs->inode_lock);
        if (created) {
            /* Undo the entry this call made, when the name still is it. */
            struct stat mine, now;
            if (fstat(fd, &mine) == 0 && fstatat(dfd, name, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
                mine.st_dev == now.st_dev && mine.st_ino == now.st_ino)
                unlinkat(dfd, name, 0);
        }
        inode_unpin(fs, dir);
        close(fd);
        if (log.applies)
            policy_log(fs, &log, path, who);
        return;
    }
    inode_unpin(fs, dir);
    dfd = -1;
    h->io = io;
    h->io_in = in;
    h->uid = who.uid;
    h->pid = who.pid;
    /* A new file changes its unit even when nothing is written into it. */
    struct stat sb;
    handle_start_write(fs, h, (pf_inode *)(uintptr_t)e.ino, fi->flags,
                       created || (fi->flags & O_TRUNC) ||
                           (fstat(fd, &sb) == 0 && sb.st_size == 0));
    if (created || (fi->flags & O_TRUNC))
        handle_changed(req, h, false);
    /* An existing file opened unchanged keeps its cached pages, as with open. */
    bool same = cache_keep(fs, (pf_inode *)(uintptr_t)e.ino, fd);
    fi->keep_cache = same && !created && !(fi->flags & (O_TRUNC | O_DIRECT));
    fi->fh = (uintptr_t)h;
    if (h->io == PF_IO_PASSTHROUGH)
        handle_passthrough(fi);
    if (pt_reply_create(req, &e, fi, pt_id) != 0) {
        /* the handle first: it uses the inode, which the unref may free */
        handle_unreplied(fs, h, who);
        pthread_mutex_lock(&fs->inode_lock);
        unref_locked(fs, in, 1);
        pthread_mutex_unlock(&fs->inode_lock);
    }
    if (log.applies)
        policy_log(fs, &log, path, who);
    return;
out:
    if (fd >= 0 && created) {
        /* Undo the entry this call made, when the name still is it. */
        struct stat mine, now;
        if (fstat(fd, &mine) == 0 && fstatat(dfd, name, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
            mine.st_dev == now.st_dev && mine.st_ino == now.st_ino)
            unlinkat(dfd, name, 0);
    }
    inode_unpin_fd(fs, dir, dfd);
    if (fd >= 0)
        close(fd);
    fuse_reply_err(req, err);
    if (log.applies)
        policy_log(fs, &log, path, who);
}

void pf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    bool kill_setid = req_kill_suidgid; /* first: nothing else may read a request before */
    pf_fs *fs = fs_of(req);
    pf_inode *in = inode_of(req, ino);
    pf_caller who = caller_of(req);
    gate_open log = {0};
    char path[PATH_MAX] = "";
    int fd = -1;
    int err = 0;
    int32_t pt_id = 0;
    if (in->vdir) {
        err = open_vfile(fs, in, fi);
        goto out;
    }
    int ifd;
    if ((err = inode_pin_err(fs, in, &ifd)) != 0)
        goto out;
    char proc[64];
    proc_path(ifd, proc);
    /* O_DIRECT stays the caller's (direct_io: no page cache for this open); BACKING is read
     * and written through libfuse's unaligned buffers, so it must not see the flag. */
    fd = open(proc, (fi->flags | O_CLOEXEC) & ~(O_NOFOLLOW | O_CREAT | O_DIRECT | O_TRUNC));
    if (fd < 0)
        err = errno;
    inode_unpin(fs, in);
    /* A write-only open keeps no page: its writes go from the caller's buffer to the daemon
     * (the kernel copies them into no page of its own first), and the kernel asks the daemon
     * for no security.capability before them (fs/README.md, "Writes"). The range written is
     * dropped from the kernel's cache of the file for other opens. */
    if ((fi->flags & O_DIRECT) || (fi->flags & O_ACCMODE) == O_WRONLY)
        fi->direct_io = 1;
    if (fd < 0)
        goto out;
    if (fs->gate && (fi->flags & O_ACCMODE) != O_WRONLY) {
        /* A file another handle has open for writing (or mapped writable past its close) may
         * hold bytes no analysis read: written a moment ago, or in the kernel's dirty pages,
         * which reach the daemon only at writeback. Its unit is marked first, so this open is
         * decided as pending (block_pending refuses it). */
        bool beside_writer = atomic_load(&in->writers) > 0;
        if (beside_writer)
            units_mark_file_fd(&fs->u, who, fd, true);
        /* Read before deciding: a change meanwhile makes the stored answer stale, never wrong. */
        gate_stamp stamp = gate_current_stamp(fs->gate);
        uint64_t epoch = atomic_load(&fs->ns_epoch);
        struct stat pre;
        bool have_pre = fstat(fd, &pre) == 0;
        if (!stamp.off &&
            (beside_writer || !have_pre || !gate_cache_hit(fs, in, &pre, stamp, epoch))) {
            bool have = inode_path(fs, in, path, sizeof path) == 0;
            err = gate_read_fd(req, fs, have ? path : NULL, fd, fi->flags, &log);
            if (log.cacheable && have_pre)
                gate_cache_store(fs, in, &pre, path, stamp, epoch);
            if (err)
                goto out;
        }
    }
    /* A read-only open may be served by the kernel from BACKING itself (passthrough); one that
     * may write is refused while others read the file so (fs/passthrough.c). */
    bool ro = (fi->flags & O_ACCMODE) == O_RDONLY;
    pf_io io = pt_choose(fs, in, fd, fi->flags & O_DIRECT, ro && S_ISREG(in->type), !ro, &pt_id);
    if (io == PF_IO_BUSY) {
        err = ETXTBSY;
        goto out;
    }
    /* O_TRUNC only once the open is allowed: a refused open changes nothing. */
    pf_handle *h = NULL;
    if ((err = truncate_opened(req, ino, fd, fi->flags, kill_setid)) != 0 ||
        !(h = handle_new(fd))) {
        err = err ? err : ENOMEM;
        pt_leave(fs, in, io);
        pt_id = 0;
        goto out;
    }
    h->io = io;
    h->io_in = in;
    h->uid = who.uid;
    h->pid = who.pid;
    fd = -1;
    if (fi->flags & O_TRUNC)
        handle_changed(req, h, false);
    struct stat sb;
    handle_start_write(fs, h, in, fi->flags,
                       (fi->flags & O_TRUNC) || (fstat(h->fd, &sb) == 0 && sb.st_size == 0));
    /* Only an allowed open gets here: the pages it keeps are those an earlier allowed open
     * read, of the very same file (fs/README.md, "Page cache"). */
    bool same = cache_keep(fs, in, h->fd);
    fi->keep_cache = same && !(fi->flags & (O_TRUNC | O_DIRECT));
    /* A read-only handle has nothing to do at close (pf_flush): the kernel skips the round
     * trip. Its POSIX locks are the kernel's own (no lock operation here), released at close. */
    fi->noflush = (fi->flags & O_ACCMODE) == O_RDONLY;
    fi->fh = (uintptr_t)h;
    if (h->io == PF_IO_PASSTHROUGH)
        handle_passthrough(fi);
out:
    if (fd >= 0)
        close(fd);
    if (err)
        fuse_reply_err(req, err);
    else if (pt_reply_open(req, fi, pt_id) != 0)
        handle_unreplied(fs, (pf_handle *)(uintptr_t)fi->fh, who);
    policy_log(fs, &log, path, who);
}

void pf_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
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

void pf_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in_buf, off_t off,
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
    pf_setid sid = {0};
    int err = req_kill_suidgid ? setid_begin(req, ino, h->fd, false, &sid) : 0;
    if (err) {
        setid_end(fs_of(req), &sid);
        fuse_reply_err(req, err);
        return;
    }
    /* Marked before the bytes land: an open meanwhile finds the unit pending. */
    handle_changed(req, h, true);
    ssize_t res = fuse_buf_copy(&out, in_buf, 0);
    handle_changed_after(h);
    setid_end(fs_of(req), &sid);
    if (res < 0) {
        fuse_reply_err(req, (int)-res);
        writehash_invalidate(h->wh);
        return;
    }
    /* Hashed after the reply: the writer goes on while this thread hashes (in_buf is this
     * thread's buffer until we return). The hold keeps wh (and h) alive past a release that
     * follows the reply at once; h is not touched after the reply. */
    writehash *wh = h->wh;
    /* Only a file whose first bytes announce a model format is hashed while written (the
     * hash saves the analysis a pass over big weights; anything else it reads itself). */
    if (wh && data && off == 0 && (size_t)res >= PA_SNIFF_BYTES &&
        !pa_sniff_format(data, PA_SNIFF_BYTES))
        data = NULL;
    if (wh && data)
        writehash_hold(wh);
    else
        writehash_invalidate(wh);
    fuse_reply_write(req, (size_t)res);
    if (wh && data)
        writehash_update(wh, (uint64_t)off, data, (size_t)res);
}

/* A close of a handle that changed a unit's file marks the unit before close() returns (the
 * release comes later, unordered with what the closer does next): whoever waits for the unit
 * to be ready after the close sees it pending until the analysis of what was written. Only
 * handles whose first change found a unit; the release marks the rest, and again any handle
 * changed since this mark. A change counts before and after itself: one racing this mark
 * either landed before the count was read (the analysis the mark schedules reads it) or counts
 * after it (the release marks). Two closes at once both mark. The time of the last change's
 * mark (remark_due) is left as it was: a change soon after the close marks on the spot once an
 * analysis began. */
static void handle_closed(pf_fs *fs, pf_handle *h)
{
    if (!h->in || !fs->u.q || !atomic_load(&h->marked) || !atomic_load(&h->written))
        return;
    unsigned seen = atomic_load(&h->changes);
    if (seen == atomic_load(&h->closed_at))
        return;
    units_mark_file_fd(&fs->u, (pf_caller){.uid = h->uid, .pid = h->pid}, h->fd, false);
    unsigned prev = atomic_load(&h->closed_at);
    /* the latest count marked (another close may have marked a later one meanwhile) */
    while ((int)(seen - prev) > 0 && !atomic_compare_exchange_weak(&h->closed_at, &prev, seen))
        ;
}

void pf_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    pf_handle *h = (pf_handle *)(uintptr_t)fi->fh;
    int err = 0;
    if (!h->vdata) {
        /* Same effect as close() on the backing file (POSIX locks, deferred write errors). */
        int dupfd = dup(h->fd);
        if (dupfd < 0 || close(dupfd) != 0)
            err = errno;
        handle_closed(fs_of(req), h);
    }
    fuse_reply_err(req, err);
}

void pf_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    pf_fs *fs = fs_of(req);
    pf_handle *h = (pf_handle *)(uintptr_t)fi->fh;
    /* A release carries no caller: the analysis it triggers names the handle's opener. */
    pf_caller who = {.uid = h->uid, .pid = h->pid};
    bool written = !h->vdata && atomic_load(&h->written);
    if (written)
        cache_changed(fs, h->in); /* an open meanwhile may have seen the file mid-change */
    /* A handle that only created or truncated its file left no page to drop (the kernel
     * truncates its own pages at an O_TRUNC open): its attributes stay cached. */
    bool wrote = written && atomic_load(&h->wrote);
    pt_leave(fs, h->io_in, h->io);
    bool alone = handle_leave(fs, h);
    /* Marked before the reply: finishing the write hash may wait, and the last holder is
     * gone (handle_finish marks again only once a hash is kept). */
    bool marked = !h->vdata && handle_unmarked(h);
    if (marked)
        units_mark_file_fd(&fs->u, who, h->fd, false);
    fuse_reply_err(req, 0);
    handle_finish(fs, h, who, alone, marked);
    if (wrote)
        cache_notify(fs, ino);
}

void pf_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    (void)ino;
    pf_handle *h = (pf_handle *)(uintptr_t)fi->fh;
    int err = 0;
    if (!h->vdata && (datasync ? fdatasync(h->fd) : fsync(h->fd)) != 0)
        err = errno;
    fuse_reply_err(req, err);
}

void pf_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                  struct fuse_file_info *fi)
{
    pf_fs *fs = fs_of(req); /* req is gone once replied */
    pf_handle *h = (pf_handle *)(uintptr_t)fi->fh;
    int err = h->vdata ? EACCES : 0;
    pf_setid sid = {0};
    if (!err)
        err = setid_begin(req, ino, h->fd, true, &sid);
    if (!err)
        handle_changed(req, h, true); /* before the change: an open meanwhile finds it pending */
    if (!err && fallocate(h->fd, mode, offset, length) != 0)
        err = errno;
    setid_end(fs, &sid);
    if (!h->vdata)
        handle_changed_after(h);
    if (!err)
        writehash_invalidate(h->wh);
    fuse_reply_err(req, err == ENOSYS ? EOPNOTSUPP : err);
    if (!err)
        cache_notify(fs, ino);
}

void pf_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
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

void pf_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
                        struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
                        struct fuse_file_info *fi_out, size_t len, int flags)
{
    (void)ino_in;
    pf_fs *fs = fs_of(req); /* req is gone once replied */
    pf_handle *in = (pf_handle *)(uintptr_t)fi_in->fh;
    pf_handle *out = (pf_handle *)(uintptr_t)fi_out->fh;
    if (in->vdata || out->vdata) {
        fuse_reply_err(req, in->vdata ? EXDEV : EACCES);
        return;
    }
    pf_setid sid;
    int err = setid_begin(req, ino_out, out->fd, true, &sid);
    if (err) {
        setid_end(fs, &sid);
        fuse_reply_err(req, err);
        return;
    }
    handle_changed(req, out, true); /* before the change: an open meanwhile finds it pending */
    ssize_t n = copy_file_range(in->fd, &off_in, out->fd, &off_out, len, (unsigned)flags);
    err = n < 0 ? errno : 0;
    handle_changed_after(out);
    setid_end(fs, &sid);
    if (n < 0) {
        fuse_reply_err(req, err == ENOSYS ? EXDEV : err);
        return;
    }
    writehash_invalidate(out->wh);
    fuse_reply_write(req, (size_t)n);
    cache_notify(fs, ino_out);
}

