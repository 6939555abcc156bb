/* provfs [--db FILE] [--policy FILE] [--workers N] [--admin-gid GID] [--quiet-ms N]
 *        [--analyzer-mem MB] [--analyzer-timeout S] [--analyzer-worker=off] [-f] [-d]
 *        [-o OPT[=VALUE],...] BACKING MOUNTPOINT   (each --long option also as -o long=VALUE)
 * provfs --analyzer-worker FD ...: one analysis worker (started by the daemon, fs/worker.h) */
#include "analyze.h"
#include "db.h"
#include "gate.h"
#include "loop.h"
#include "ops.h"
#include "policy.h"
#include "queue.h"
#include "shared.h"
#include "store.h"
#include "worker.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#ifndef PROVFS_REFDB_DIR
#define PROVFS_REFDB_DIR "/usr/share/provfs/refdb"
#endif

typedef struct options {
    const char *backing;
    const char *mountpoint;
    const char *db;
    const char *policy;
    const char *refdb; /* reference set directory; "none" = no reference set */
    unsigned workers;
    long admin_gid;
    unsigned quiet_ms;
    unsigned claim_lease_ms; /* shared database: a claim's life without renewal (0: default) */
    unsigned max_delay_ms;
    int foreground;
    int debug;
    int single_thread;
    int allow_shared_backing; /* -o allow_shared_backing: skip the enforce check of BACKING */
    unsigned analyzer_mem;     /* MiB, 0 = no limit */
    unsigned analyzer_timeout; /* s, 0 = no limit */
    unsigned fp_cache_mb;      /* MiB of parsed stored fingerprints kept for lineage work */
    int analyzer_inprocess;    /* --analyzer-worker=off */
    unsigned long inode_fds;   /* --inode-fds */
    long cache_timeout;        /* --cache-timeout s; -1: by the kind of database */
    int passthrough_off;       /* --passthrough=off */
    unsigned spin_us;          /* --spin-us */
} options;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: provfs [options] BACKING MOUNTPOINT\n"
            "  --db FILE|URI     lineage database: a SQLite file (default\n"
            "                    BACKING/.provfs/lineage.db) or a postgresql:// URI\n"
            "  --policy FILE     policy file (default BACKING/.provfs/policy.json)\n"
            "  --refdb DIR       reference set(s) for models without a parent in the store\n"
            "                    (default " PROVFS_REFDB_DIR " when present; none: no reference set)\n"
            "  --workers N       analysis worker threads (default 2)\n"
            "  --admin-gid GID   group whose members may approve (default 0)\n"
            "  --quiet-ms N      quiet period before a written unit is analysed (default 500)\n"
            "  --claim-lease-ms N  with a PostgreSQL --db shared by several daemons: how long\n"
            "                    another daemon waits before taking over a unit this one\n"
            "                    claimed and stopped renewing (default 30000)\n"
            "  --max-delay-ms N  analyse a unit at most N ms after its first change, even while\n"
            "                    changes keep coming (default 10000; 0: no bound)\n"
            "  --analyzer-mem MB address space of an analysis worker process (default 4096;\n"
            "                    0: no limit)\n"
            "  --analyzer-timeout S  time one unit may take to analyse (default 600; 0: none)\n"
            "  --fp-cache-mb N   memory for parsed fingerprints of stored models, least\n"
            "                    recently used out (default 64; 0: none kept)\n"
            "  --analyzer-worker=off parse models in the daemon itself, as root (default: in\n"
            "                    an unprivileged, seccomp-filtered worker process per unit)\n"
            "  --inode-fds N     at most N O_PATH fds of inodes the kernel remembers stay open;\n"
            "                    others are reopened from file handles (default 65536, at least 16)\n"
            "  --passthrough=off serve every read through the daemon (default: reads of files\n"
            "                    opened read-only go straight to BACKING where the kernel\n"
            "                    offers FUSE passthrough)\n"
            "  --cache-timeout S how long the kernel keeps names and attributes without asking\n"
            "                    (default 60; 1 with a postgresql:// --db, whose other daemons\n"
            "                    change BACKING behind this mount, or allow_shared_backing);\n"
            "                    contents are checked at every open whatever S is\n"
            "  --spin-us N       for N microseconds after a request, the FUSE thread that\n"
            "                    served it checks for the next one without sleeping (default\n"
            "                    50; 0: libfuse's own loop): up to one CPU while requests\n"
            "                    come, none once they stop\n"
            "  -f                stay in the foreground\n"
            "  -d                FUSE debug output (implies -f)\n"
            "  -s                single-threaded FUSE loop\n"
            "  -o OPT[,OPT...]   mount options: FUSE's, and every option above as name=VALUE\n"
            "                    (db=, policy=, refdb=, workers=, admin_gid=, quiet_ms=,\n"
            "                    max_delay_ms=, analyzer_mem=, analyzer_timeout=, inode_fds=,\n"
            "                    fp_cache_mb=, cache_timeout=, spin_us=, passthrough=off,\n"
            "                    analyzer_worker=off), so fstab and mount -t\n"
            "                    fuse.provfs work;\n"
            "                    allow_shared_backing: mount under enforce although users other\n"
            "                    than root can reach BACKING directly\n");
}

static bool parse_uint(const char *text, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno || end == text || *end || v > max || text[0] == '-')
        return false;
    *out = v;
    return true;
}

/* Our options, each as `--name VALUE` (or `--name=VALUE`) and as `-o name=VALUE` (the form
 * mount(8), fstab and mount.fuse3 use; '-' and '_' are the same in a name). Returns 1 when name
 * is one of ours and value is valid, 0 when it is not ours, -1 when ours with a bad value. */
static int set_option(options *opt, const char *name, const char *val)
{
    char key[32];
    size_t n = strlen(name);
    if (n >= sizeof key)
        return 0;
    for (size_t i = 0; i <= n; i++)
        key[i] = name[i] == '-' ? '_' : name[i];
    unsigned long u;
    struct {
        const char *key;
        unsigned long max;
        unsigned *dst;
    } const nums[] = {
        {"quiet_ms", 3600000, &opt->quiet_ms},
        {"max_delay_ms", 86400000, &opt->max_delay_ms},
        {"analyzer_mem", 1u << 30, &opt->analyzer_mem},
        {"analyzer_timeout", 1u << 30, &opt->analyzer_timeout},
        {"fp_cache_mb", 1u << 20, &opt->fp_cache_mb},
        {"claim_lease_ms", 86400000, &opt->claim_lease_ms},
        {"spin_us", 10000, &opt->spin_us},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        if (strcmp(key, nums[i].key) == 0) {
            if (!val || !parse_uint(val, nums[i].max, &u))
                return -1;
            *nums[i].dst = (unsigned)u;
            return 1;
        }
    }
    if (strcmp(key, "db") == 0 || strcmp(key, "policy") == 0 || strcmp(key, "refdb") == 0) {
        if (!val || !val[0])
            return -1;
        *(key[0] == 'd' ? &opt->db : key[0] == 'p' ? &opt->policy : &opt->refdb) = val;
        return 1;
    }
    if (strcmp(key, "inode_fds") == 0) {
        if (!val || !parse_uint(val, 1ul << 24, &u) || u < 16)
            return -1;
        opt->inode_fds = u;
        return 1;
    }
    if (strcmp(key, "cache_timeout") == 0) {
        if (!val || !parse_uint(val, 86400, &u))
            return -1;
        opt->cache_timeout = (long)u;
        return 1;
    }
    if (strcmp(key, "workers") == 0) {
        if (!val || !parse_uint(val, 64, &u) || u == 0)
            return -1;
        opt->workers = (unsigned)u;
        return 1;
    }
    if (strcmp(key, "admin_gid") == 0) {
        if (!val || !parse_uint(val, UINT32_MAX - 1, &u))
            return -1;
        opt->admin_gid = (long)u;
        return 1;
    }
    if (strcmp(key, "analyzer_worker") == 0) {
        if (!val || (strcmp(val, "off") != 0 && strcmp(val, "on") != 0))
            return -1;
        opt->analyzer_inprocess = strcmp(val, "off") == 0;
        return 1;
    }
    if (strcmp(key, "passthrough") == 0) {
        if (!val || (strcmp(val, "off") != 0 && strcmp(val, "on") != 0))
            return -1;
        opt->passthrough_off = strcmp(val, "off") == 0;
        return 1;
    }
    if (strcmp(key, "allow_shared_backing") == 0) {
        if (val)
            return -1;
        opt->allow_shared_backing = 1;
        return 1;
    }
    return 0;
}

/* mount(8) and fstab words that mean nothing to FUSE (mount.fuse3 drops most of them, a direct
 * `provfs -o` call may still carry them). */
static bool mount_noise(const char *tok)
{
    static const char *const words[] = {"defaults", "auto", "noauto", "nofail", "_netdev",
                                        "user", "nouser", "users"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strcmp(tok, words[i]) == 0)
            return true;
    return strncmp(tok, "x-", 2) == 0 || strncmp(tok, "comment=", 8) == 0;
}

/* Takes our options out of a -o list (the values are kept in opt, so the list must outlive it)
 * and passes the rest to FUSE. Returns 0, or -1 after a message. */
static int add_mount_options(options *opt, struct fuse_args *fargs, char *list)
{
    char *kept = calloc(1, strlen(list) + 1), *rest = list, *tok;
    if (!kept) {
        fprintf(stderr, "provfs: out of memory\n");
        return -1;
    }
    while ((tok = strsep(&rest, ",")) != NULL) {
        if (!tok[0] || mount_noise(tok))
            continue;
        char *eq = strchr(tok, '=');
        if (eq)
            *eq = '\0';
        int r = set_option(opt, tok, eq ? eq + 1 : NULL);
        if (r < 0) {
            fprintf(stderr, "provfs: bad value for -o %s\n", tok);
            free(kept);
            return -1;
        }
        if (eq)
            *eq = '=';
        if (r == 0) {
            if (kept[0])
                strcat(kept, ",");
            strcat(kept, tok);
        }
    }
    if (kept[0]) {
        fuse_opt_add_arg(fargs, "-o");
        fuse_opt_add_arg(fargs, kept);
    }
    free(kept);
    return 0;
}

/* Under enforce, the gate holds only if users cannot read BACKING directly: some directory on
 * the way from / to BACKING (BACKING included) must be root's and closed to group and others.
 * Returns 0 when so; otherwise fills why (the most private directory found) and returns -1. ACLs
 * and other mounts of the same filesystem are not looked at (fs/SECURITY.md). */
static int backing_private(const char *backing, char *why, size_t whylen)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", backing);
    for (;;) {
        struct stat sb;
        if (stat(path, &sb) != 0) {
            int n = snprintf(why, whylen, "%.300s: %s", path, strerror(errno));
            (void)n;
            return -1;
        }
        if (sb.st_uid == 0 && (sb.st_mode & 0011) == 0)
            return 0;
        char *slash = strrchr(path, '/');
        if (!slash || (slash == path && path[1] == '\0'))
            break;
        if (slash == path)
            slash[1] = '\0';
        else
            *slash = '\0';
    }
    int n = snprintf(why, whylen,
             "%.200s can be reached by users other than root (every directory from / to it is "
             "searchable by them), so they could read blocked weights there: put it inside a "
             "root-only directory (chmod 700 PARENT) or mount with -o allow_shared_backing",
             backing);
    (void)n;
    return -1;
}

/* Splits argv into our options and FUSE's; returns 0, or an exit code. */
static int parse_args(int argc, char **argv, options *opt, struct fuse_args *fargs)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 1;
        } else if (strcmp(a, "-f") == 0) {
            opt->foreground = 1;
        } else if (strcmp(a, "-d") == 0) {
            opt->debug = 1;
            opt->foreground = 1;
        } else if (strcmp(a, "-s") == 0) {
            opt->single_thread = 1;
        } else if ((strcmp(a, "-o") == 0 && val) || (strncmp(a, "-o", 2) == 0 && a[2])) {
            if (!a[2])
                i++;
            if (add_mount_options(opt, fargs, a[2] ? argv[i] + 2 : argv[i]) != 0)
                return 2;
        } else if (strncmp(a, "--", 2) == 0 && a[2]) {
            /* --name VALUE, --name=VALUE, or a flag (--allow-shared-backing) */
            char name[32];
            const char *eq = strchr(a + 2, '=');
            size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
            int r = 0;
            if (len < sizeof name) {
                memcpy(name, a + 2, len);
                name[len] = '\0';
                if (eq)
                    r = set_option(opt, name, eq + 1);
                else if ((r = set_option(opt, name, NULL)) < 0 && val) {
                    r = set_option(opt, name, val);
                    i += r > 0;
                }
            }
            if (r <= 0) {
                fprintf(stderr, "provfs: bad option or value: %s\n", a);
                usage(stderr);
                return 2;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "provfs: bad option or value: %s\n", a);
            usage(stderr);
            return 2;
        } else if (!opt->backing) {
            opt->backing = a;
        } else if (!opt->mountpoint) {
            opt->mountpoint = a;
        } else {
            fprintf(stderr, "provfs: unexpected argument: %s\n", a);
            return 2;
        }
    }
    if (!opt->backing || !opt->mountpoint) {
        usage(stderr);
        return 2;
    }
    return 0;
}

/* SIGHUP reloads the policy: one thread sigwaits for it (SIGHUP is blocked everywhere, so
 * libfuse's handler, which would end the session, never runs). */
typedef struct reloader {
    pthread_t thread;
    atomic_bool stop;
    policy_slot *slot;
    const char *path;
    store_handle *st;
} reloader;

static void *reload_main(void *arg)
{
    reloader *r = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (atomic_load(&r->stop))
            break;
        char err[512], detail[640];
        if (policy_slot_reload(r->slot, r->path, err, sizeof err) == 0) {
            fprintf(stderr, "provfs: policy reloaded from %s\n", r->path);
            snprintf(detail, sizeof detail, "loaded %s", r->path);
        } else {
            fprintf(stderr, "provfs: %s; keeping the previous policy\n", err);
            snprintf(detail, sizeof detail, "kept the old policy: %s", err);
        }
        store_event(r->st, 0, 0, r->path, 0, "policy-reload", detail);
    }
    return NULL;
}

/* The reference set: --refdb DIR must load; the built-in default is used when it is there. */
static bool load_refdb(analyze_ctx *an, const char *dir)
{
    bool explicit_dir = dir != NULL;
    if (dir && strcmp(dir, "none") == 0)
        return true;
    struct stat sb;
    if (!dir) {
        dir = PROVFS_REFDB_DIR;
        if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
            return true;
    }
    char err[600];
    size_t n = 0;
    if (analyze_load_refdb(an, dir, &n, err, sizeof err) != 0) {
        fprintf(stderr, "provfs: reference set %s: %s\n", dir, err);
        return !explicit_dir; /* a broken built-in set does not stop the mount */
    }
    fprintf(stderr, "provfs: reference set %s: %zu entries\n", dir, n);
    return true;
}

static void *reconcile_main(void *arg)
{
    analyze_reconcile(arg);
    return NULL;
}

int main(int argc, char **argv)
{
    /* The daemon runs itself as a worker: nothing of the daemon's set-up happens there. */
    if (argc >= 2 && strcmp(argv[1], "--analyzer-worker") == 0)
        return worker_main(argc, argv);
    options opt = {.workers = 2, .admin_gid = 0, .quiet_ms = 500, .analyzer_mem = 4096,
                   .fp_cache_mb = ANALYZE_FP_CACHE_MB,
                   .analyzer_timeout = 600,
                   .inode_fds = 65536,
                   .cache_timeout = -1,
                   .spin_us = 50,
                   .max_delay_ms = QUEUE_MAX_DELAY_MS};
    worker_cfg wcfg = {0};
    struct fuse_args fargs = FUSE_ARGS_INIT(0, NULL);
    char backing[PATH_MAX], db_default[PATH_MAX + 64], policy_default[PATH_MAX + 128];
    char mountpoint[PATH_MAX], control_path[PATH_MAX + 64];
    control *ctl = NULL;
    char err[512];
    int ret = 1;
    pf_fs *fs = NULL;
    struct fuse_session *se = NULL;
    store_handle *st = NULL;
    analyze_ctx *an = NULL;
    queue *q = NULL;
    shared *sharing = NULL;
    policy_slot *slot = NULL;
    gate *gatekeeper = NULL;
    reloader reload = {0};
    bool reloading = false;
    pthread_t reconciler;
    bool reconciling = false;

    /* Before any thread exists, so every thread (FUSE loop, workers) inherits the mask. */
    sigset_t hup;
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &hup, NULL);

    fuse_opt_add_arg(&fargs, argv[0]);
    int rc = parse_args(argc, argv, &opt, &fargs);
    if (rc != 0) {
        fuse_opt_free_args(&fargs);
        return rc == 1 ? 0 : 2;
    }
    if (!realpath(opt.backing, backing)) {
        fprintf(stderr, "provfs: %s: %s\n", opt.backing, strerror(errno));
        ret = 2;
        goto out_args;
    }
    struct stat sb;
    if (stat(backing, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "provfs: %s: not a directory\n", backing);
        ret = 2;
        goto out_args;
    }
    snprintf(db_default, sizeof db_default, "%s/.provfs", strcmp(backing, "/") ? backing : "");
    if (mkdir(db_default, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "provfs: %s: %s\n", db_default, strerror(errno));
        goto out_args;
    }
    char provfs_dir[PATH_MAX + 64];
    snprintf(provfs_dir, sizeof provfs_dir, "%s", db_default);
    snprintf(policy_default, sizeof policy_default, "%s/policy.json", db_default);
    strncat(db_default, "/lineage.db", sizeof db_default - strlen(db_default) - 1);
    if (!opt.db)
        opt.db = db_default;
    if (!opt.policy)
        opt.policy = policy_default;
    /* .provfs 0700 and its files 0600, whatever modes an earlier version or an admin left
     * (store_open does the same for a --db elsewhere); again after policy.json is created. */
    if (store_protect_dir(provfs_dir, err, sizeof err) != 0) {
        fprintf(stderr, "provfs: %s\n", err);
        goto out_args;
    }
    /* An invalid policy refuses the mount: nothing is served under rules nobody wrote. */
    policy *pol = NULL;
    int written = policy_write_default(opt.policy, err, sizeof err);
    if (written < 0 || policy_load(opt.policy, &pol, err, sizeof err) != 0) {
        fprintf(stderr, "provfs: %s\n", err);
        ret = 2;
        goto out_args;
    }
    if (written == 0 && store_protect_dir(provfs_dir, err, sizeof err) != 0) {
        fprintf(stderr, "provfs: %s\n", err);
        policy_unref(pol);
        goto out_args;
    }
    if (policy_get_mode(pol) == POLICY_ENFORCE && !opt.allow_shared_backing &&
        backing_private(backing, err, sizeof err) != 0) {
        fprintf(stderr, "provfs: %s\n", err);
        policy_unref(pol);
        ret = 2;
        goto out_args;
    }
    /* At most --inode-fds O_PATH fds of inodes (fs/inode.c), plus open files and directory
     * streams: use what the system allows (root may raise the hard limit up to fs.nr_open). */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
        FILE *nr = fopen("/proc/sys/fs/nr_open", "re");
        unsigned long long max = 0;
        if (nr && fscanf(nr, "%llu", &max) == 1 && max > nofile.rlim_max && geteuid() == 0) {
            struct rlimit raised = {.rlim_cur = (rlim_t)max, .rlim_max = (rlim_t)max};
            if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
                nofile = raised;
        }
        if (nr)
            fclose(nr);
        if (nofile.rlim_cur < nofile.rlim_max) {
            nofile.rlim_cur = nofile.rlim_max;
            if (setrlimit(RLIMIT_NOFILE, &nofile) != 0)
                getrlimit(RLIMIT_NOFILE, &nofile);
        }
        /* The budget never takes more than half of what the process may open: the rest is for
         * open files, directory streams, the database, FUSE's pipes and the workers' sockets
         * (where the hard limit cannot be raised, e.g. in a container, 65536 would not fit). */
        if (nofile.rlim_cur != RLIM_INFINITY && opt.inode_fds > nofile.rlim_cur / 2) {
            unsigned long fit = nofile.rlim_cur / 2 < 16 ? 16 : (unsigned long)nofile.rlim_cur / 2;
            fprintf(stderr, "provfs: inode fd budget %lu (half of the open-file limit %llu)\n",
                    fit, (unsigned long long)nofile.rlim_cur);
            opt.inode_fds = fit;
        }
    }
    if (!opt.analyzer_inprocess) {
        char user[32];
        wcfg = (worker_cfg){.exe = "/proc/self/exe", .mem_mb = opt.analyzer_mem,
                            .timeout_s = opt.analyzer_timeout};
        if (geteuid() == 0 && worker_resolve_user(&wcfg, user, sizeof user) != 0) {
            fprintf(stderr, "provfs: no unprivileged user for the analysis workers (create the "
                            "system user provfs-analyzer, or have nobody/nogroup)\n");
            policy_unref(pol);
            ret = 2;
            goto out_args;
        }
    }
    slot = policy_slot_create(pol);
    if (!slot) {
        policy_unref(pol);
        fprintf(stderr, "provfs: out of memory\n");
        goto out_args;
    }

    if (geteuid() == 0) {
        fuse_opt_add_arg(&fargs, "-o");
        fuse_opt_add_arg(&fargs, "allow_other,default_permissions");
    } else {
        fuse_opt_add_arg(&fargs, "-o");
        fuse_opt_add_arg(&fargs, "default_permissions");
    }
    char fsname[PATH_MAX + 64];
    snprintf(fsname, sizeof fsname, "fsname=%s,subtype=provfs", backing);
    fuse_opt_add_arg(&fargs, "-o");
    fuse_opt_add_arg(&fargs, fsname);
    if (opt.debug)
        fuse_opt_add_arg(&fargs, "-d");

    /* New files get exactly the mode the caller's kernel computed (umask already applied). */
    umask(0);
    /* One daemon owns BACKING: the kernel's names and attributes are only ever changed through
     * it, so they may be kept long (fs/README.md, "Names and attributes"). A shared database
     * means other daemons, and allow_shared_backing other users, change BACKING where this
     * kernel does not see it. */
    if (opt.cache_timeout < 0)
        opt.cache_timeout = db_target_is_pg(opt.db) || opt.allow_shared_backing ? 1 : 60;
    fs = ops_fs_new(backing, (double)opt.cache_timeout, opt.inode_fds);
    if (!fs) {
        fprintf(stderr, "provfs: %s: cannot open\n", backing);
        goto out_args;
    }
    ops_fs_set_shared_backing(fs, opt.allow_shared_backing);
    se = fuse_session_new(&fargs, ops_table(), sizeof *ops_table(), fs);
    if (!se)
        goto out_fs;
    if (fuse_set_signal_handlers(se) != 0)
        goto out_session;
    if (!realpath(opt.mountpoint, mountpoint)) {
        fprintf(stderr, "provfs: %s: %s\n", opt.mountpoint, strerror(errno));
        ret = 2;
        goto out_signals;
    }
    if (fuse_session_mount(se, opt.mountpoint) != 0)
        goto out_signals;
    if (pt_install(fs, se, !opt.passthrough_off) != 0) {
        fprintf(stderr, "provfs: out of memory\n");
        goto out_unmount;
    }
    if (fuse_daemonize(opt.foreground) != 0)
        goto out_unmount;

    /* Refusals go to syslog (once daemonized, stderr goes nowhere). */
    openlog("provfs", LOG_PID, LOG_DAEMON);
    /* SQLite and threads only after the fork of fuse_daemonize. */
    if (store_open(opt.db, STORE_PATH_FILTER, &st, err, sizeof err) != 0) {
        fprintf(stderr, "provfs: %s\n", err);
        goto out_unmount;
    }
    an = analyze_create(backing, st, 0);
    if (an && !load_refdb(an, opt.refdb)) {
        ret = 2;
        goto out_store;
    }
    if (an && analyze_set_fp_cache(an, (size_t)opt.fp_cache_mb << 20) != 0) {
        fprintf(stderr, "provfs: out of memory\n");
        goto out_store;
    }
    if (an)
        analyze_set_worker(an, opt.analyzer_inprocess ? NULL : &wcfg);
    q = an ? queue_create(opt.workers, opt.quiet_ms, analyze_job, an) : NULL;
    if (!q) {
        fprintf(stderr, "provfs: cannot start analysis workers\n");
        goto out_store;
    }
    queue_set_max_delay(q, opt.max_delay_ms);
    queue_known_set_strict(q, store_shared(st) || opt.allow_shared_backing);
    analyze_set_queue(an, q);
    /* several daemons on one database: claims, and the units other daemons left */
    if (store_shared(st)) {
        sharing = shared_start(st, q, opt.claim_lease_ms);
        if (!sharing) {
            fprintf(stderr, "provfs: cannot start sharing the analysis queue\n");
            goto out_store;
        }
        analyze_set_shared(an, shared_owner(sharing), shared_lease_ns(sharing));
    }
    gatekeeper = gate_create(st, q, slot);
    if (!gatekeeper) {
        fprintf(stderr, "provfs: out of memory\n");
        goto out_store;
    }
    gate_set_mountpoint(gatekeeper, mountpoint);
    ops_fs_attach(fs, st, q, gatekeeper, (gid_t)opt.admin_gid);
    /* Approvals by admins who may not write the unit (provctl approve|revoke). */
    ops_fs_set_mountpoint(fs, mountpoint);
    snprintf(control_path, sizeof control_path, "%s/.provfs/control.sock",
             strcmp(backing, "/") ? backing : "");
    ctl = control_start(mountpoint, control_path, ops_control, fs);
    if (!ctl)
        fprintf(stderr, "provfs: control socket: %s (approve with setfattr as root)\n",
                strerror(errno));
    reload = (reloader){.slot = slot, .path = opt.policy, .st = st};
    reloading = pthread_create(&reload.thread, NULL, reload_main, &reload) == 0;
    reconciling = pthread_create(&reconciler, NULL, reconcile_main, an) == 0;

    ops_fs_set_session(fs, se);
    if (opt.single_thread) {
        rc = fuse_session_loop(se);
    } else if (opt.spin_us) {
        rc = loop_run(se, opt.spin_us, 10); /* libfuse's default of workers */
    } else {
        struct fuse_loop_config cfg = {.clone_fd = 0, .max_idle_threads = 16};
        rc = fuse_session_loop_mt(se, &cfg);
    }
    ret = rc == 0 ? 0 : 1;
    ops_fs_set_session(fs, NULL);

    control_stop(ctl);
    if (reconciling)
        pthread_join(reconciler, NULL);
    if (reloading) {
        atomic_store(&reload.stop, true);
        pthread_kill(reload.thread, SIGHUP);
        pthread_join(reload.thread, NULL);
    }
    ops_fs_attach(fs, NULL, NULL, NULL, 0);
out_store:
    shared_stop(sharing); /* before the queue it marks */
    queue_destroy(q);
    gate_destroy(gatekeeper);
    analyze_destroy(an);
    store_close(st);
out_unmount:
    fuse_session_unmount(se);
out_signals:
    fuse_remove_signal_handlers(se);
out_session:
    fuse_session_destroy(se);
out_fs:
    ops_fs_free(fs);
out_args:
    policy_slot_destroy(slot);
    fuse_opt_free_args(&fargs);
    return ret;
}
