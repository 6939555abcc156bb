/* Privilege separation for parsing: every unit is fingerprinted in a fresh worker process (the
 * provfs binary run as `provfs --analyzer-worker FD ...`) that holds no privilege: an unprivileged
 * uid/gid without supplementary groups, no_new_privs, RLIMIT_AS, a CPU limit and a seccomp filter
 * that leaves it nothing but reading the fds it was given, memory, threads and its socket. The
 * daemon discovers and opens the unit's files itself (beneath BACKING, pa_unit_files_open) and
 * passes them over a socketpair (SCM_RIGHTS); the worker answers with the fingerprint JSON or a
 * pa_error. Plain module (no FUSE, no SQLite). */
#ifndef PROVFS_WORKER_H
#define PROVFS_WORKER_H

#include "provfs/analyzer.h"

#include <sys/types.h>

typedef struct worker_cfg {
    const char *exe;    /* binary with the --analyzer-worker mode ("/proc/self/exe") */
    unsigned mem_mb;    /* RLIMIT_AS of a worker in MiB; 0 = none */
    unsigned timeout_s; /* wall-clock limit of one unit; 0 = none */
    int threads;        /* analyzer threads (0 = online CPUs, max 16) */
    uid_t uid;          /* the worker's uid and gid when the daemon runs as root */
    gid_t gid;
} worker_cfg;

/* Fills uid/gid: the system user provfs-analyzer when it exists, else nobody/nogroup. A name for
 * the log in user (size n). -1 when none of them exists. */
int worker_resolve_user(worker_cfg *cfg, char *user, size_t n);

/* Fingerprints the unit at path (BACKING path; it names the unit in messages) from files in a
 * new worker. known[i] is the SHA-256 of files->files[i] the daemon already has, or "". Returns
 * the analyzer's status and error, or the worker's end: "analyzer crashed: signal N (...)",
 * "analyzer took longer than N s", "analyzer ran out of memory (limit N MiB): ...";
 * PA_E_CANCELLED as soon as *cancel is set (the worker is killed). */
pa_status worker_fingerprint(const worker_cfg *cfg, const char *path, const pa_unit_files *files,
                             const char (*known)[65], volatile const int *cancel,
                             pa_fingerprint **out, pa_error *err);

/* main() of `provfs --analyzer-worker FD MEM_MB TIMEOUT_S THREADS UID GID`: one unit, then exit. */
int worker_main(int argc, char **argv);

#endif
