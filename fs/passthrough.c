/* FUSE passthrough: reads (and mmap) of an open file served by the kernel from the BACKING file
 * itself, without a request to the daemon and without FUSE's own page cache.
 *
 * The kernel (6.9 and later, CONFIG_FUSE_PASSTHROUGH) offers it in INIT; the daemon accepts by
 * setting FUSE_PASSTHROUGH in the reply's flags2 and a stack depth of 1, registers an open fd
 * of the BACKING file with the ioctl FUSE_DEV_IOC_BACKING_OPEN, and names the id it gets in the
 * open reply (FOPEN_PASSTHROUGH, backing_id). libfuse 3.14 knows none of this, so the two
 * replies are amended on their way to /dev/fuse, through libfuse's documented custom I/O
 * (fuse_session_custom_io): the read hook notes the INIT request, the writev hook adds the
 * flag to its reply, and adds the backing id to the one open reply this thread is sending.
 * Everything else passes unchanged. Without the kernel's offer, or when the ioctl is refused
 * (not root, BACKING stacked too deep), every open is served as before.
 *
 * The kernel's rule: all opens of an inode that has a passthrough open must be passthrough
 * with the same backing file, and an inode opened through FUSE's page cache takes no
 * passthrough open (either mistake fails the open with EIO). pt_choose keeps that rule with
 * counts that are never below the kernel's (raised before the reply, lowered at release,
 * which the kernel sends after lowering its own).
 *
 * The same hooks take FUSE_HANDLE_KILLPRIV_V2 (protocol 7.33), which libfuse 3.14 does not
 * know either: the daemon, not the kernel, drops set-user-ID and set-group-ID bits when a write,
 * a truncate or an O_TRUNC open by a caller without CAP_FSETID changes a file (setid_begin in
 * file.c), as the kernel tells it in the request (FUSE_WRITE_KILL_SUIDGID, FATTR_KILL_SUIDGID,
 * FUSE_OPEN_KILL_SUIDGID: req_kill_suidgid below). In exchange the kernel stops asking for
 * security.capability before every write (a round trip per write; BACKING's own kernel removes
 * that attribute when the daemon writes). The hooks are installed with passthrough off too. */
#include "ops_int.h"

#include "provfs/analyzer.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* The kernel's ABI (include/uapi/linux/fuse.h, protocol 7.40); Debian's headers predate it. */
#define PT_FUSE_INIT 26
#define PT_INIT_EXT (1u << 30)
#define PT_FLAGS2_PASSTHROUGH (1u << 5) /* FUSE_PASSTHROUGH, 1 << 37, in flags2 */
#define PT_FOPEN_PASSTHROUGH (1u << 7)
#define PT_HANDLE_KILLPRIV_V2 (1u << 28)
#define PT_FUSE_SETATTR 4
#define PT_FUSE_OPEN 14
#define PT_FUSE_WRITE 16
#define PT_FUSE_CREATE 35
#define PT_FATTR_KILL_SUIDGID (1u << 11)
#define PT_OPEN_KILL_SUIDGID (1u << 0)
#define PT_WRITE_KILL_SUIDGID (1u << 2)
struct pt_backing_map {
    int32_t fd;
    uint32_t flags;
    uint64_t padding;
};
#define PT_IOC_BACKING_OPEN _IOW(229, 1, struct pt_backing_map)
#define PT_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)

enum { IN_HDR = 40, OUT_HDR = 16, INIT_OUT = 64, OPEN_OUT = 16 };
#define PT_WAIT_MS 100

/* The open reply this thread is sending: the handle it names and the backing id to add. */
static __thread uint64_t reply_fh;
static __thread int32_t reply_id;

/* Whether the request this thread read last asks the daemon to drop set-ID bits: libfuse 3.14
 * passes none of the three flags on, and each request is served by the thread that read it. */
_Thread_local bool req_kill_suidgid;

/* The 32-bit word at offset off of the request's argument (after the header), or 0. */
static uint32_t arg_word(const unsigned char *p, ssize_t n, size_t off)
{
    uint32_t w = 0;
    if (n >= 0 && (size_t)n >= IN_HDR + off + 4)
        memcpy(&w, p + IN_HDR + off, 4);
    return w;
}

static ssize_t io_read(int fd, void *buf, size_t len, void *userdata)
{
    pf_fs *fs = userdata;
    ssize_t n = read(fd, buf, len);
    const unsigned char *p = buf;
    uint32_t opcode = 0;
    if (n >= IN_HDR)
        memcpy(&opcode, p + 4, 4);
    /* where each request that can carry it has the flag (include/uapi/linux/fuse.h) */
    static const struct {
        uint32_t opcode, off, flag;
    } kill[] = {
        {PT_FUSE_WRITE, 20, PT_WRITE_KILL_SUIDGID},   /* fuse_write_in.write_flags */
        {PT_FUSE_SETATTR, 0, PT_FATTR_KILL_SUIDGID},  /* fuse_setattr_in.valid */
        {PT_FUSE_OPEN, 4, PT_OPEN_KILL_SUIDGID},      /* fuse_open_in.open_flags */
        {PT_FUSE_CREATE, 12, PT_OPEN_KILL_SUIDGID},   /* fuse_create_in.open_flags */
    };
    req_kill_suidgid = false;
    for (size_t i = 0; i < sizeof kill / sizeof kill[0]; i++)
        if (opcode == kill[i].opcode)
            req_kill_suidgid = arg_word(p, n, kill[i].off) & kill[i].flag;
    if (opcode == PT_FUSE_INIT && n >= IN_HDR + 20 && !fs->pt_init_done) {
        uint32_t flags = arg_word(p, n, 12), flags2 = arg_word(p, n, 16);
        memcpy(&fs->pt_init_unique, p + 8, 8);
        fs->pt_offered = fs->pt_wanted && (flags & PT_INIT_EXT) && (flags2 & PT_FLAGS2_PASSTHROUGH);
        fs->killpriv_offered = flags & PT_HANDLE_KILLPRIV_V2;
    }
    return n;
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
    pf_fs *fs = userdata;
    if (count < 2 || count > 16 || iov[0].iov_len != OUT_HDR)
        return writev(fd, iov, count);
    int32_t error;
    uint64_t unique;
    memcpy(&error, (const char *)iov[0].iov_base + 4, 4);
    memcpy(&unique, (const char *)iov[0].iov_base + 8, 8);
    const struct iovec *last = &iov[count - 1];
    unsigned char copy[INIT_OUT + 256];
    struct iovec amended[16];
    if (error == 0 && (fs->pt_offered || fs->killpriv_offered) && !fs->pt_init_done &&
        unique == fs->pt_init_unique && count == 2 && last->iov_len == INIT_OUT) {
        fs->pt_init_done = true;
        memcpy(copy, last->iov_base, INIT_OUT);
        uint32_t flags, flags2, depth = 1;
        memcpy(&flags, copy + 12, 4);
        memcpy(&flags2, copy + 32, 4);
        if (fs->killpriv_offered) {
            flags |= PT_HANDLE_KILLPRIV_V2;
            memcpy(copy + 12, &flags, 4);
            fs->killpriv_on = true;
        }
        /* INIT: accept passthrough, one level of stacking (BACKING's own file system). */
        if (fs->pt_offered && (flags & PT_INIT_EXT)) {
            flags2 |= PT_FLAGS2_PASSTHROUGH;
            memcpy(copy + 32, &flags2, 4);
            memcpy(copy + 36, &depth, 4);
            atomic_store(&fs->pt_on, true);
        }
    } else if (error == 0 && reply_id > 0 && last->iov_len >= OPEN_OUT &&
               last->iov_len <= sizeof copy) {
        /* The open (or create) reply ends with struct fuse_open_out. */
        memcpy(copy, last->iov_base, last->iov_len);
        unsigned char *out = copy + last->iov_len - OPEN_OUT;
        uint64_t fh;
        uint32_t open_flags;
        memcpy(&fh, out, 8);
        if (fh != reply_fh)
            return writev(fd, iov, count);
        memcpy(&open_flags, out + 8, 4);
        open_flags |= PT_FOPEN_PASSTHROUGH;
        memcpy(out + 8, &open_flags, 4);
        memcpy(out + 12, &reply_id, 4);
    } else {
        return writev(fd, iov, count);
    }
    memcpy(amended, iov, (size_t)count * sizeof *iov);
    amended[count - 1].iov_base = copy;
    return writev(fd, amended, count);
}

static ssize_t io_splice(int fdin, off_t *offin, int fdout, off_t *offout, size_t len,
                         unsigned int flags, void *userdata)
{
    (void)userdata;
    return splice(fdin, offin, fdout, offout, len, flags);
}

int pt_install(pf_fs *fs, struct fuse_session *se, bool wanted)
{
    static const struct fuse_custom_io io = {
        .read = io_read, .writev = io_writev, .splice_receive = io_splice, .splice_send = io_splice};
    fs->pt_wanted = wanted;
    fs->pt_dev_fd = fuse_session_fd(se);
    return fuse_session_custom_io(se, &io, fs->pt_dev_fd);
}

/* Only files whose first bytes announce a model format are read by passthrough: they are what
 * loaders read again and again, and a passthrough reader makes in-place writes wait (ETXTBSY),
 * which notes, logs and configs should not. */
static bool model_bytes(int fd)
{
    uint8_t head[PA_SNIFF_BYTES];
    ssize_t n = pread(fd, head, sizeof head, 0);
    return n > 0 && pa_sniff_format(head, (size_t)n) != NULL;
}

/* Decides how an open of in is served and counts it (pf_handle.io, released by pt_leave).
 * fd: the daemon's open of the file; direct: the caller asked O_DIRECT; may_start: a new
 * passthrough may begin (read-only open of a regular file the gate allowed); write: the open
 * may write. PF_IO_BUSY (nothing counted): refuse the open, ETXTBSY. */
pf_io pt_choose(pf_fs *fs, pf_inode *in, int fd, bool direct, bool may_start, bool write,
                int32_t *id)
{
    *id = 0;
    if (!fs->pt_wanted || in->vdir)
        return direct ? PF_IO_DIRECT : PF_IO_CACHED;
    pf_io io;
    pthread_mutex_lock(&fs->pt_lock);
    if (in->pt_opens > 0 && write) {
        /* A reader's release is sent after its close() returned: one that closed a moment ago
         * (read, then rewrite, in one program) is waited for, up to PT_WAIT_MS. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += PT_WAIT_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (in->pt_opens > 0 &&
               pthread_cond_timedwait(&fs->pt_cond, &fs->pt_lock, &until) == 0)
            ;
    }
    if (in->pt_opens > 0 && write) {
        /* The kernel would serve it by passthrough too (it takes no other kind of open while
         * one is), and writes so served, and those through a shared mapping of it that
         * outlives its release, would never reach the daemon: refused while readers have it. */
        io = PF_IO_BUSY;
    } else if (in->pt_opens > 0) {
        in->pt_opens++;
        *id = in->pt_id;
        io = PF_IO_PASSTHROUGH;
    } else if (atomic_load(&fs->pt_on) && may_start && !write && !direct &&
               in->cached_opens == 0 && model_bytes(fd)) {
        struct pt_backing_map map = {.fd = fd};
        int r = ioctl(fs->pt_dev_fd, PT_IOC_BACKING_OPEN, &map);
        if (r > 0) {
            in->pt_id = r;
            in->pt_opens = 1;
            *id = r;
            io = PF_IO_PASSTHROUGH;
        } else {
            if ((errno == EPERM || errno == ENOTTY || errno == EINVAL) &&
                atomic_exchange(&fs->pt_on, false))
                fprintf(stderr, "provfs: passthrough refused (%s): reads go through the daemon\n",
                        strerror(errno));
            in->cached_opens++;
            io = PF_IO_CACHED;
        }
    } else {
        /* A direct_io open counts too, to be safe: a kernel that lets it be mapped shared
         * (FUSE_DIRECT_IO_ALLOW_MMAP) puts the inode in the page-cache mode at that mmap, and a
         * passthrough open begun meanwhile would then fail with EIO. */
        in->cached_opens++;
        io = direct ? PF_IO_DIRECT : PF_IO_CACHED;
    }
    pthread_mutex_unlock(&fs->pt_lock);
    return io;
}

void pt_leave(pf_fs *fs, pf_inode *in, pf_io io)
{
    if (!in || io == PF_IO_NONE || io == PF_IO_BUSY || !fs->pt_wanted)
        return;
    pthread_mutex_lock(&fs->pt_lock);
    if (io == PF_IO_PASSTHROUGH && in->pt_opens > 0 && --in->pt_opens == 0) {
        uint32_t id = (uint32_t)in->pt_id;
        in->pt_id = 0;
        ioctl(fs->pt_dev_fd, PT_IOC_BACKING_CLOSE, &id);
        pthread_cond_broadcast(&fs->pt_cond);
    } else if (io != PF_IO_PASSTHROUGH && in->cached_opens > 0) {
        in->cached_opens--;
    }
    pthread_mutex_unlock(&fs->pt_lock);
}

int pt_reply_open(fuse_req_t req, struct fuse_file_info *fi, int32_t id)
{
    reply_fh = fi->fh;
    reply_id = id;
    int r = fuse_reply_open(req, fi);
    reply_id = 0;
    return r;
}

int pt_reply_create(fuse_req_t req, const struct fuse_entry_param *e, struct fuse_file_info *fi,
                    int32_t id)
{
    reply_fh = fi->fh;
    reply_id = id;
    int r = fuse_reply_create(req, e, fi);
    reply_id = 0;
    return r;
}
