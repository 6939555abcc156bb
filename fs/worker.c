/* The analysis worker process: spawned per unit by the daemon, sandboxed, speaks a small framed
 * protocol over a socketpair. */
#include "worker.h"
#include "clock.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <seccomp.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/sched.h> /* CLONE_THREAD */

extern char **environ;

/* AddressSanitizer (gcc or clang): its shadow memory rules out RLIMIT_AS, its reports go to fd 2 */
#if defined(__SANITIZE_ADDRESS__)
#define WORKER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WORKER_ASAN 1
#endif
#endif

/* The worker's end of the socketpair. */
#define WORKER_FD 3
/* Largest fingerprint a worker may return: its binary form (analyzer/fpbin.c), ~120 KB for a
 * 7B model; its file list's JSON part may reach 32 MiB. */
#define MAX_RESULT (64u << 20)
#define MAX_NAME 4096u

/* ---------------------------------------------------------------- protocol */

enum { MSG_JOB = 1, MSG_FILE = 2, MSG_RESULT = 3 };

/* Every frame: a header, a fixed part (by type), then len bytes (path, name or fingerprint). */
typedef struct msg_hdr {
    uint32_t type;
    uint32_t fixed; /* size of the fixed part */
    uint64_t len;
} msg_hdr;

typedef struct msg_job {
    uint64_t n_files;
    uint32_t is_dir;
    uint32_t pad;
} msg_job;

/* Sent with the file's fd attached. */
typedef struct msg_file {
    uint64_t size;
    int64_t mtime_ns;
    char sha256[72]; /* known SHA-256 (hex) or "" */
} msg_file;

typedef struct msg_result {
    uint32_t status;
    uint32_t pad;
    char msg[512];
} msg_result;

/* Sends one frame (all of it), with fd attached when >= 0. 0 or -1 (errno). */
static int send_frame(int sock, uint32_t type, const void *fixed, uint32_t fixed_len,
                      const void *var, uint64_t len, int fd)
{
    msg_hdr h = {.type = type, .fixed = fixed_len, .len = len};
    struct iovec iov[3] = {{&h, sizeof h}, {(void *)fixed, fixed_len}, {(void *)var, (size_t)len}};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } cm;
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = 3};
    if (fd >= 0) {
        memset(&cm, 0, sizeof cm);
        m.msg_control = cm.buf;
        m.msg_controllen = sizeof cm.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    while (m.msg_iovlen > 0) {
        ssize_t n = sendmsg(sock, &m, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        m.msg_control = NULL; /* the fd went with the first byte */
        m.msg_controllen = 0;
        while (m.msg_iovlen > 0 && (size_t)n >= m.msg_iov[0].iov_len) {
            n -= (ssize_t)m.msg_iov[0].iov_len;
            m.msg_iov++;
            m.msg_iovlen--;
        }
        if (m.msg_iovlen > 0) {
            m.msg_iov[0].iov_base = (char *)m.msg_iov[0].iov_base + n;
            m.msg_iov[0].iov_len -= (size_t)n;
        }
    }
    return 0;
}

/* Reads exactly n bytes; an fd that arrives with them is put in *fd (at most one per call; a
 * second one is closed and fails the read). deadline_ms/cancel: the daemon's side waits with
 * poll (deadline 0: none). 0, or -1 with errno (EPIPE: end of stream, ETIMEDOUT, ECANCELED). */
static int recv_full(int sock, void *buf, size_t n, int *fd, int64_t deadline_ms,
                     volatile const int *cancel)
{
    char *p = buf;
    while (n > 0) {
        if (deadline_ms || cancel) {
            if (cancel && *cancel) {
                errno = ECANCELED;
                return -1;
            }
            int64_t left = deadline_ms ? deadline_ms - mono_ms() : 200;
            if (left <= 0) {
                errno = ETIMEDOUT;
                return -1;
            }
            struct pollfd pfd = {.fd = sock, .events = POLLIN};
            int r = poll(&pfd, 1, left < 200 ? (int)left : 200);
            if (r < 0 && errno != EINTR)
                return -1;
            if (r <= 0)
                continue;
        }
        union {
            char buf[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } cm;
        struct iovec iov = {p, n};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
                           .msg_controllen = sizeof cm.buf};
        ssize_t got = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -1;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < k; i++) {
                int f;
                memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
                if (fd && *fd < 0)
                    *fd = f;
                else
                    close(f);
            }
        }
        if (m.msg_flags & MSG_CTRUNC) {
            errno = EMFILE;
            return -1;
        }
        if (got == 0) {
            errno = EPIPE;
            return -1;
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

/* ---------------------------------------------------------------- the daemon's side */

int worker_resolve_user(worker_cfg *cfg, char *user, size_t n)
{
    struct passwd *pw = getpwnam("provfs-analyzer");
    if (pw && pw->pw_uid != 0) {
        cfg->uid = pw->pw_uid;
        cfg->gid = pw->pw_gid;
        snprintf(user, n, "provfs-analyzer");
        return 0;
    }
    pw = getpwnam("nobody");
    if (!pw || pw->pw_uid == 0)
        return -1;
    cfg->uid = pw->pw_uid;
    struct group *gr = getgrnam("nogroup");
    cfg->gid = gr && gr->gr_gid != 0 ? gr->gr_gid : pw->pw_gid;
    snprintf(user, n, "nobody");
    return cfg->gid == 0 ? -1 : 0;
}

/* Starts a worker with sock as its fd WORKER_FD; its pid, or -1 with errno. */
static pid_t spawn_worker(const worker_cfg *cfg, int sock)
{
    char fd_s[16], mem_s[16], to_s[16], th_s[16], uid_s[16], gid_s[16];
    snprintf(fd_s, sizeof fd_s, "%d", WORKER_FD);
    snprintf(mem_s, sizeof mem_s, "%u", cfg->mem_mb);
    snprintf(to_s, sizeof to_s, "%u", cfg->timeout_s);
    snprintf(th_s, sizeof th_s, "%d", cfg->threads);
    snprintf(uid_s, sizeof uid_s, "%u", (unsigned)cfg->uid);
    snprintf(gid_s, sizeof gid_s, "%u", (unsigned)cfg->gid);
    char *argv[] = {"provfs", "--analyzer-worker", fd_s, mem_s, to_s, th_s, uid_s, gid_s, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    /* the socket lands on WORKER_FD (without close-on-exec), every other fd of the daemon is
     * closed; signals at their defaults, none blocked (the daemon blocks SIGHUP, ignores SIGPIPE) */
    posix_spawn_file_actions_adddup2(&fa, sock, WORKER_FD);
    posix_spawn_file_actions_addclosefrom_np(&fa, WORKER_FD + 1);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    int rc = posix_spawn(&pid, cfg->exe, &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return pid;
}

static pa_status worker_end(const worker_cfg *cfg, int ws, bool timed_out, pa_error *err)
{
    if (timed_out)
        return pa_error_set(err, PA_E_LIMIT, "analyzer took longer than %u s", cfg->timeout_s);
    if (WIFSIGNALED(ws)) {
        int sig = WTERMSIG(ws);
        if (sig == SIGXCPU)
            return pa_error_set(err, PA_E_LIMIT, "analyzer took longer than %u s of CPU time",
                                cfg->timeout_s);
        return pa_error_set(err, PA_E_IO, "analyzer crashed: signal %d (%s)", sig,
                            sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
    }
    if (WIFEXITED(ws) && WEXITSTATUS(ws) != 0)
        return pa_error_set(err, PA_E_IO, "analyzer exited with status %d", WEXITSTATUS(ws));
    return pa_error_set(err, PA_E_IO, "analyzer ended without a result");
}

/* A worker's fingerprint must describe the files it was given. */
static bool same_files(const pa_fingerprint *fp, const pa_unit_files *files,
                       const char (*known)[65])
{
    if (pa_fp_n_files(fp) != files->n)
        return false;
    for (size_t i = 0; i < files->n; i++) {
        const pa_file_fp *f = pa_fp_file(fp, i);
        const pa_unit_file *g = &files->files[i];
        /* (mtimes do not survive JSON's doubles: the daemon keeps its own) */
        if (strcmp(f->name, g->name) != 0 || f->size != g->size ||
            (known && known[i][0] && strcmp(known[i], f->sha256) != 0))
            return false;
    }
    return true;
}

pa_status worker_fingerprint(const worker_cfg *cfg, const char *path, const pa_unit_files *files,
                             const char (*known)[65], volatile const int *cancel,
                             pa_fingerprint **out, pa_error *err)
{
    *out = NULL;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return pa_error_set(err, PA_E_IO, "%s: cannot start the analyzer: %s", path,
                            strerror(errno));
    pid_t pid = spawn_worker(cfg, sv[1]);
    int e = errno;
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        return pa_error_set(err, PA_E_IO, "%s: cannot start the analyzer: %s", path, strerror(e));
    }
    int sock = sv[0];
    /* a worker that stops reading must not hold the daemon's thread */
    struct timeval tv = {.tv_sec = 30};
    setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int64_t deadline = cfg->timeout_s ? mono_ms() + (int64_t)cfg->timeout_s * 1000 : 0;
    bool timed_out = false, cancelled = false;
    pa_status st = PA_OK;
    uint8_t *bin = NULL;

    msg_job job = {.n_files = files->n, .is_dir = files->is_dir};
    int rc = send_frame(sock, MSG_JOB, &job, sizeof job, path, strlen(path), -1);
    for (size_t i = 0; rc == 0 && i < files->n; i++) {
        const pa_unit_file *f = &files->files[i];
        msg_file mf = {.size = f->size, .mtime_ns = f->mtime_ns};
        if (known)
            snprintf(mf.sha256, sizeof mf.sha256, "%s", known[i]);
        rc = send_frame(sock, MSG_FILE, &mf, sizeof mf, f->name, strlen(f->name), f->fd);
    }
    /* (a failed send: the worker died; its end is read below) */
    msg_hdr h;
    msg_result res;
    rc = recv_full(sock, &h, sizeof h, NULL, deadline, cancel);
    if (rc == 0 && (h.type != MSG_RESULT || h.fixed != sizeof res || h.len > MAX_RESULT)) {
        st = pa_error_set(err, PA_E_IO, "%s: the analyzer sent a malformed result", path);
        rc = 1;
    }
    if (rc == 0)
        rc = recv_full(sock, &res, sizeof res, NULL, deadline, cancel);
    if (rc == 0) {
        bin = malloc(h.len + 1);
        if (!bin)
            st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", path);
        rc = bin ? recv_full(sock, bin, h.len, NULL, deadline, cancel) : 1;
    }
    if (rc < 0) {
        timed_out = errno == ETIMEDOUT;
        cancelled = errno == ECANCELED;
    }
    /* one unit per worker: it has nothing more to do */
    close(sock);
    kill(pid, SIGKILL);
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
        ;
    if (cancelled) {
        free(bin);
        return pa_error_set(err, PA_E_CANCELLED, "%s: cancelled", path);
    }
    if (rc < 0) {
        free(bin);
        return worker_end(cfg, ws, timed_out, err);
    }
    if (st) {
        free(bin);
        return st;
    }
    /* The worker is not trusted: its status, message and fingerprint are checked like file bytes
     * (the binary reader bounds every count, fuzz_fpbin). */
    res.msg[sizeof res.msg - 1] = '\0';
    char msg[sizeof res.msg];
    pa_escape_text(res.msg, strlen(res.msg), msg, sizeof msg);
    if (res.status != PA_OK) {
        free(bin);
        pa_status s = res.status <= PA_E_UNSAFE ? (pa_status)res.status : PA_E_IO;
        if (s == PA_E_NOMEM && cfg->mem_mb)
            return pa_error_set(err, s, "analyzer ran out of memory (limit %u MiB): %s",
                                cfg->mem_mb, msg);
        return pa_error_set(err, s, "%s", msg[0] ? msg : pa_status_name(s));
    }
    pa_fingerprint *fp = NULL;
    pa_error jerr = {0};
    if (pa_fp_from_bin(bin, h.len, "analyzer result", &fp, &jerr) != PA_OK) {
        free(bin);
        return pa_error_set(err, PA_E_IO, "%s: the analyzer sent a malformed result (%s)", path,
                            jerr.msg);
    }
    free(bin);
    if (!same_files(fp, files, known)) {
        pa_fingerprint_free(fp);
        return pa_error_set(err, PA_E_IO, "%s: the analyzer's result names other files", path);
    }
    *out = fp;
    return PA_OK;
}

/* ---------------------------------------------------------------- the worker's side */

static int sock_fd = -1;

/* cJSON reports a failed allocation as invalid JSON: under RLIMIT_AS the worker counts them so
 * that such a failure is reported as what it is. */
static atomic_bool alloc_failed;

static void *json_malloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        atomic_store(&alloc_failed, true);
    return p;
}

static void send_result(pa_status status, const char *msg, const uint8_t *bin, size_t len)
{
    msg_result r = {.status = (uint32_t)status};
    snprintf(r.msg, sizeof r.msg, "%s", msg ? msg : "");
    send_frame(sock_fd, MSG_RESULT, &r, sizeof r, bin, bin ? len : 0, -1);
}

static void die(const char *what, int e)
{
    char msg[256];
    snprintf(msg, sizeof msg, "analyzer worker: %s: %s", what, strerror(e));
    send_result(PA_E_IO, msg, NULL, 0);
    _exit(1);
}

static void drop_privileges(uid_t uid, gid_t gid)
{
    if (geteuid() != 0)
        return; /* a daemon run by a user: its workers keep that uid */
    if (uid == 0 || gid == 0)
        die("no unprivileged user", EPERM);
    if (setgroups(0, NULL) != 0)
        die("setgroups", errno);
    if (setresgid(gid, gid, gid) != 0)
        die("setresgid", errno);
    if (setresuid(uid, uid, uid) != 0)
        die("setresuid", errno);
    if (setuid(0) == 0 || geteuid() == 0 || getegid() == 0)
        die("root is still reachable", EPERM);
}

/* Allowed: reading and fstat of the fds it holds, memory, the analyzer's threads, its socket.
 * Everything else fails with EPERM (clone3 with ENOSYS, so glibc falls back to clone, whose
 * flags can be checked); exec and ptrace kill it. */
static void install_filter(int sock)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    if (!ctx)
        die("seccomp_init", ENOMEM);
    static const int plain[] = {
        SCMP_SYS(read), SCMP_SYS(pread64), SCMP_SYS(readv), SCMP_SYS(preadv), SCMP_SYS(lseek),
        SCMP_SYS(fstat), SCMP_SYS(close), SCMP_SYS(dup),
        SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(mprotect), SCMP_SYS(brk),
        SCMP_SYS(madvise), SCMP_SYS(futex), SCMP_SYS(set_robust_list), SCMP_SYS(get_robust_list),
        SCMP_SYS(rseq), SCMP_SYS(exit), SCMP_SYS(exit_group), SCMP_SYS(rt_sigprocmask),
        SCMP_SYS(rt_sigaction), SCMP_SYS(rt_sigreturn), SCMP_SYS(sigaltstack), SCMP_SYS(getpid),
        SCMP_SYS(gettid), SCMP_SYS(sched_yield), SCMP_SYS(sched_getaffinity),
        SCMP_SYS(clock_gettime), SCMP_SYS(clock_nanosleep), SCMP_SYS(nanosleep),
        SCMP_SYS(getrandom), SCMP_SYS(restart_syscall),
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof plain / sizeof plain[0] && rc == 0; i++)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, plain[i], 0);
    /* fstat(fd) is newfstatat(fd, "", AT_EMPTY_PATH) in glibc: only that form */
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(newfstatat), 1,
                              SCMP_A3(SCMP_CMP_EQ, AT_EMPTY_PATH));
    /* fcntl: copies of fds (pa_unit_open_file) and their flags, no locks, owners or leases */
    static const int fcntl_cmds[] = {F_DUPFD_CLOEXEC, F_GETFD, F_SETFD, F_GETFL};
    for (size_t i = 0; i < sizeof fcntl_cmds / sizeof fcntl_cmds[0] && rc == 0; i++)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(fcntl), 1,
                              SCMP_A1(SCMP_CMP_EQ, (scmp_datum_t)fcntl_cmds[i]));
    /* threads only: no new processes */
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    /* signals to itself only (abort) */
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
                              SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid()));
    /* writes to its socket only */
    static const int on_sock[] = {SCMP_SYS(write), SCMP_SYS(sendmsg), SCMP_SYS(sendto),
                                  SCMP_SYS(recvmsg), SCMP_SYS(recvfrom)};
    for (size_t i = 0; i < sizeof on_sock / sizeof on_sock[0] && rc == 0; i++)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, on_sock[i], 1,
                              SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)sock));
#ifdef WORKER_ASAN
    /* a sanitizer build reports on stderr (the daemon's log, where the tests look) */
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(write), 1, SCMP_A0(SCMP_CMP_EQ, 2));
#endif
    static const int fatal[] = {SCMP_SYS(execve), SCMP_SYS(execveat), SCMP_SYS(ptrace)};
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0] && rc == 0; i++)
        rc = seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, fatal[i], 0);
    if (rc == 0)
        rc = seccomp_load(ctx);
    seccomp_release(ctx);
    if (rc != 0)
        die("seccomp", -rc);
}

typedef struct given_known {
    const pa_unit_files *files;
    const char (*sha)[72];
} given_known;

static const char *given_sha(void *ctx, const char *name, uint64_t size, int64_t mtime_ns)
{
    given_known *k = ctx;
    for (size_t i = 0; i < k->files->n; i++)
        if (strcmp(k->files->files[i].name, name) == 0 && k->files->files[i].size == size &&
            k->files->files[i].mtime_ns == mtime_ns && k->sha[i][0])
            return k->sha[i];
    return NULL;
}

static bool parse_num(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v > max || s[0] == '-')
        return false;
    *out = v;
    return true;
}

int worker_main(int argc, char **argv)
{
    unsigned long long fd, mem, timeout, threads, uid, gid;
    if (argc != 8 || !parse_num(argv[2], 1024, &fd) || !parse_num(argv[3], 1ull << 30, &mem) ||
        !parse_num(argv[4], 1ull << 30, &timeout) || !parse_num(argv[5], 1024, &threads) ||
        !parse_num(argv[6], UINT32_MAX, &uid) || !parse_num(argv[7], UINT32_MAX, &gid)) {
        fprintf(stderr, "provfs: --analyzer-worker is started by the daemon only\n");
        return 2;
    }
    sock_fd = (int)fd;
    struct stat sb;
    if (fstat(sock_fd, &sb) != 0 || !S_ISSOCK(sb.st_mode)) {
        fprintf(stderr, "provfs: --analyzer-worker %d: not a socket\n", sock_fd);
        return 2;
    }
    /* What needs files or system calls the filter forbids, done first: the CPU count (it reads
     * /sys), OpenSSL's one-time set-up (it may read its configuration). */
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (unsigned long long)(n < 16 ? n : 16) : 1;
    }
    char sha[65];
    pa_sha256_hex("", 0, sha);
    pid_t parent = getppid();
    drop_privileges((uid_t)uid, (gid_t)gid);
    /* Armed after the change of credentials, which clears it (prctl(2)): the worker dies with
     * the daemon thread that spawned it, also when the daemon is killed while the worker is
     * stopped or stuck. A daemon already gone by now is seen by the parent pid. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        die("parent-death signal", errno);
    if (getppid() != parent)
        return 2;
    prctl(PR_SET_DUMPABLE, 0);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        die("no_new_privs", errno);
#ifdef WORKER_ASAN
    /* AddressSanitizer's shadow takes terabytes of address space: no RLIMIT_AS under it */
    mem = 0;
#endif
    if (mem) {
        struct rlimit rl = {.rlim_cur = (rlim_t)mem << 20, .rlim_max = (rlim_t)mem << 20};
        if (setrlimit(RLIMIT_AS, &rl) != 0)
            die("RLIMIT_AS", errno);
    }
    if (timeout) {
        /* CPU time of all threads: a backstop behind the daemon's wall clock */
        rlim_t cpu = (rlim_t)timeout * (rlim_t)threads;
        struct rlimit rl = {.rlim_cur = cpu, .rlim_max = cpu + 5};
        if (setrlimit(RLIMIT_CPU, &rl) != 0)
            die("RLIMIT_CPU", errno);
    }
    struct rlimit core = {0, 0};
    setrlimit(RLIMIT_CORE, &core);
    cJSON_Hooks hooks = {.malloc_fn = json_malloc, .free_fn = free};
    cJSON_InitHooks(&hooks);
    install_filter(sock_fd);

    /* the unit */
    msg_hdr h;
    msg_job job;
    if (recv_full(sock_fd, &h, sizeof h, NULL, 0, NULL) != 0 || h.type != MSG_JOB ||
        h.fixed != sizeof job || h.len == 0 || h.len > MAX_NAME ||
        recv_full(sock_fd, &job, sizeof job, NULL, 0, NULL) != 0 || job.n_files > 1000000)
        die("bad request", EPROTO);
    char *path = calloc(1, h.len + 1);
    pa_unit_files files = {.is_dir = job.is_dir != 0, .n = 0};
    files.files = calloc(job.n_files ? job.n_files : 1, sizeof *files.files);
    char(*known)[72] = calloc(job.n_files ? job.n_files : 1, sizeof *known);
    if (!path || !files.files || !known)
        die("request", ENOMEM);
    if (recv_full(sock_fd, path, h.len, NULL, 0, NULL) != 0)
        die("bad request", EPROTO);
    for (uint64_t i = 0; i < job.n_files; i++) {
        msg_file mf;
        int ffd = -1;
        if (recv_full(sock_fd, &h, sizeof h, &ffd, 0, NULL) != 0 || h.type != MSG_FILE ||
            h.fixed != sizeof mf || h.len == 0 || h.len > MAX_NAME ||
            recv_full(sock_fd, &mf, sizeof mf, &ffd, 0, NULL) != 0)
            die("bad request", errno == EMFILE ? EMFILE : EPROTO);
        pa_unit_file *f = &files.files[i];
        f->name = calloc(1, h.len + 1);
        if (!f->name)
            die("request", ENOMEM);
        if (recv_full(sock_fd, f->name, h.len, &ffd, 0, NULL) != 0 || ffd < 0)
            die("bad request", EPROTO);
        f->fd = ffd;
        f->size = mf.size;
        f->mtime_ns = mf.mtime_ns;
        mf.sha256[sizeof mf.sha256 - 1] = '\0';
        memcpy(known[i], mf.sha256, sizeof known[i]);
        files.n++;
    }

    given_known gk = {.files = &files, .sha = (const char(*)[72])known};
    pa_fp_options opt = {.threads = (int)threads, .known_sha256 = given_sha, .known_ctx = &gk};
    pa_fingerprint *fp = NULL;
    pa_error err = {0};
    pa_status st = pa_fingerprint_files(path, &files, &opt, &fp, &err);
    uint8_t *bin = NULL;
    size_t len = 0;
    if (st == PA_OK) {
        if (!pa_fp_set_path(fp, NULL))
            st = pa_error_set(&err, PA_E_NOMEM, "%s: out of memory", path);
        else
            st = pa_fp_to_bin(fp, &bin, &len, &err);
    }
    if (st != PA_OK && st != PA_E_NOMEM && atomic_load(&alloc_failed)) {
        char msg[sizeof err.msg];
        snprintf(msg, sizeof msg, "%s", err.msg);
        pa_error_clear(&err);
        pa_error_set(&err, PA_E_NOMEM, "%s (an allocation failed)", msg);
        st = PA_E_NOMEM;
    }
    send_result(st, err.msg, st == PA_OK ? bin : NULL, len);
    _exit(0);
}
