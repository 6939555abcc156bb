/* Discovery of a model unit: the files of a Hugging Face directory and the headers of its shards. */
#include "model.h"
#include "jsonutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static char *join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static bool has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

void pa_unit_free(pa_unit *u)
{
    if (!u)
        return;
    free(u->path);
    free(u->config_path);
    free(u->tok_path);
    free(u->tokcfg_path);
    free(u->spm_path);
    free(u->adapter_path);
    free(u->index_path);
    for (size_t i = 0; i < u->n_shards; i++) {
        free(u->shards[i].name);
        free(u->shards[i].path);
        pa_st_header_free(&u->shards[i].hdr);
    }
    free(u->shards);
    for (size_t i = 0; i < u->n_files; i++) {
        free(u->files[i].name);
        free(u->file_paths[i]);
    }
    if (u->is_gguf)
        pa_gguf_free(&u->gguf);
    free(u->files);
    free(u->file_paths);
    if (u->root_path && u->root_fd >= 0)
        close(u->root_fd);
    free(u->root_path);
    free(u->private_path);
    free(u->given_idx);
    memset(u, 0, sizeof *u);
    u->root_fd = -1;
}

/* ---------------------------------------------------------------- opening files safely */

/* Marks a resolution that reached the confinement's private directory. */
#define PRIVATE_ERRNO EPERM

static bool is_significant(const char *name);

/* An O_PATH fd for path, resolved as the unit's confinement allows; -errno on failure (-EXDEV:
 * it leads out of the root; -PRIVATE_ERRNO: into the private directory). self: path is the unit
 * itself, which must contain no symlink at all (the daemon names units by their real path). */
static int resolve(const pa_unit *u, const char *path, bool self)
{
    if (!u->root_path) {
        int fd = open(path, O_PATH | O_CLOEXEC);
        return fd >= 0 ? fd : -errno;
    }
    size_t rl = strlen(u->root_path);
    if (strncmp(path, u->root_path, rl) != 0 || (path[rl] != '/' && path[rl] != '\0'))
        return -EXDEV;
    const char *rel = path + rl;
    while (*rel == '/')
        rel++;
    struct open_how how = {
        .flags = O_PATH | O_CLOEXEC,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | (self ? RESOLVE_NO_SYMLINKS : 0),
    };
    int fd = (int)syscall(SYS_openat2, u->root_fd, *rel ? rel : ".", &how, sizeof how);
    if (fd < 0)
        return -errno;
    if (u->private_path) {
        char proc[64], real[PATH_MAX];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(proc, real, sizeof real - 1);
        size_t pl = strlen(u->private_path);
        if (n < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
        real[n] = '\0';
        if (strncmp(real, u->private_path, pl) == 0 && (real[pl] == '/' || real[pl] == '\0')) {
            close(fd);
            return -PRIVATE_ERRNO;
        }
    }
    return fd;
}

/* The error of a failed resolve(), naming the file. */
static pa_status resolve_error(const pa_unit *u, const char *path, int e, pa_error *err)
{
    if (u->root_path && e == EXDEV)
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: a symlink leads out of the store (not followed)", path);
    if (u->root_path && e == PRIVATE_ERRNO)
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: a symlink leads into the store's private directory (not followed)",
                            path);
    if (u->root_path && e == ELOOP)
        return pa_error_set(err, PA_E_FORMAT, "%s: a symlink where none may be", path);
    return pa_error_set(err, PA_E_IO, "%s: cannot open: %s", path, strerror(e));
}

/* Reopens an O_PATH fd of a regular file for reading (closes pfd). */
static int reopen_regular(int pfd, const char *path, pa_error *err)
{
    struct stat sb;
    if (fstat(pfd, &sb) != 0) {
        int e = errno;
        close(pfd);
        pa_error_set(err, PA_E_IO, "%s: cannot stat: %s", path, strerror(e));
        return -1;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(pfd);
        pa_error_set(err, PA_E_FORMAT, "%s: not a regular file", path);
        return -1;
    }
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", pfd);
    int fd = open(proc, O_RDONLY | O_CLOEXEC);
    int e = errno;
    close(pfd);
    if (fd < 0)
        pa_error_set(err, PA_E_IO, "%s: cannot open: %s", path, strerror(e));
    return fd;
}

/* pa_unit_open_file, with the errno of a failed resolution in *eno (0 otherwise). */
static int open_file(const pa_unit *u, const char *path, int *eno, pa_error *err)
{
    if (u->given) {
        /* The caller opened the unit's files: a copy of the matching fd, never a path. */
        for (size_t i = 0; i < u->n_files; i++)
            if (strcmp(u->file_paths[i], path) == 0) {
                int fd = fcntl(u->given->files[u->given_idx[i]].fd, F_DUPFD_CLOEXEC, 0);
                *eno = fd < 0 ? errno : 0;
                if (fd < 0)
                    pa_error_set(err, PA_E_IO, "%s: cannot open: %s", path, strerror(*eno));
                return fd;
            }
        *eno = ENOENT;
        pa_error_set(err, PA_E_IO, "%s: cannot open: %s", path, strerror(ENOENT));
        return -1;
    }
    int pfd = resolve(u, path, false);
    *eno = pfd < 0 ? -pfd : 0;
    if (pfd < 0) {
        resolve_error(u, path, -pfd, err);
        return -1;
    }
    return reopen_regular(pfd, path, err);
}

int pa_unit_open_file(const pa_unit *u, const char *path, pa_error *err)
{
    int eno;
    return open_file(u, path, &eno, err);
}

pa_status pa_unit_read_file(const pa_unit *u, const char *path, size_t limit, char **out,
                            size_t *len, pa_error *err)
{
    *out = NULL;
    *len = 0;
    int fd = pa_unit_open_file(u, path, err);
    if (fd < 0)
        return err->status;
    pa_status st = pa_read_fd(fd, path, limit, out, len, err);
    close(fd);
    return st;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static pa_status add_shard(pa_unit *u, const char *name, pa_error *err)
{
    pa_shard *s = realloc(u->shards, (u->n_shards + 1) * sizeof *s);
    if (!s)
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", u->path);
    u->shards = s;
    s = &u->shards[u->n_shards];
    memset(s, 0, sizeof *s);
    s->name = strdup(name);
    s->path = u->is_dir ? join(u->path, name) : strdup(u->path);
    if (!s->name || !s->path) {
        free(s->name);
        free(s->path);
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", u->path);
    }
    u->n_shards++;
    return PA_OK;
}

/* Index shard names must stay inside the directory. */
static bool safe_name(const char *n)
{
    return n[0] && !strchr(n, '/') && strcmp(n, ".") != 0 && strcmp(n, "..") != 0;
}

/* total_size: metadata.total_size of the index (tensor bytes of all shards), 0 when absent. */
static pa_status read_index(pa_unit *u, uint64_t *total_size, pa_error *err)
{
    char *text = NULL;
    size_t len = 0;
    pa_status st = pa_unit_read_file(u, u->index_path, PA_JSON_MAX_FILE, &text, &len, err);
    if (st)
        return st;
    cJSON *root = pa_json_parse(text, len, u->index_path, err);
    free(text);
    if (!root)
        return err->status;
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    int64_t ts = 0;
    *total_size = cJSON_IsObject(meta) && pa_json_int(meta, "total_size", &ts) && ts > 0 ? (uint64_t)ts : 0;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(root);
        return pa_error_set(err, PA_E_FORMAT, "%s: no \"weight_map\" object", u->index_path);
    }
    size_t n = 0;
    for (const cJSON *e = map->child; e; e = e->next)
        n++;
    if (n == 0 || n > PA_ST_MAX_TENSORS) {
        cJSON_Delete(root);
        return pa_error_set(err, PA_E_FORMAT, "%s: weight_map has %zu entries", u->index_path, n);
    }
    char **names = malloc(n * sizeof *names);
    if (!names) {
        cJSON_Delete(root);
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", u->index_path);
    }
    size_t k = 0;
    for (const cJSON *e = map->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !safe_name(e->valuestring)) {
            /* the message is formatted while the tree (and e->string) still exists */
            pa_error_set(err, PA_E_FORMAT, "%s: weight_map entry '%s' names no shard file",
                         u->index_path, e->string ? e->string : "?");
            free(names);
            cJSON_Delete(root);
            return err->status;
        }
        names[k++] = e->valuestring;
    }
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n && !st; i++)
        if (i == 0 || strcmp(names[i], names[i - 1]) != 0)
            st = add_shard(u, names[i], err);
    free(names);
    cJSON_Delete(root);
    return st;
}

/* Files a unit is read from: anything else in the directory is hashed when regular, skipped
 * when not. */
static bool is_significant(const char *name)
{
    return strcmp(name, "config.json") == 0 || strcmp(name, "tokenizer.json") == 0 ||
           strcmp(name, "tokenizer_config.json") == 0 || strcmp(name, "tokenizer.model") == 0 ||
           strcmp(name, "adapter_config.json") == 0 || strcmp(name, "adapter_model.bin") == 0 ||
           pa_unit_weights_name(name);
}

static DIR *open_unit_dir(pa_unit *u, pa_error *err)
{
    DIR *d = NULL;
    if (!u->root_path) {
        d = opendir(u->path);
        if (!d)
            pa_error_set(err, PA_E_IO, "%s: cannot open directory: %s", u->path, strerror(errno));
        return d;
    }
    int pfd = resolve(u, u->path, true);
    if (pfd < 0) {
        resolve_error(u, u->path, -pfd, err);
        return NULL;
    }
    int fd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int e = errno;
    close(pfd);
    d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        e = fd >= 0 ? errno : e;
        if (fd >= 0)
            close(fd);
        pa_error_set(err, PA_E_IO, "%s: cannot open directory: %s", u->path, strerror(e));
    }
    return d;
}

/* Sorts the files by name (paths and given indexes in step). */
static void sort_files(pa_unit *u)
{
    for (size_t i = 1; i < u->n_files; i++)
        for (size_t j = i; j > 0 && strcmp(u->files[j - 1].name, u->files[j].name) > 0; j--) {
            pa_file_fp t = u->files[j];
            u->files[j] = u->files[j - 1];
            u->files[j - 1] = t;
            char *tp = u->file_paths[j];
            u->file_paths[j] = u->file_paths[j - 1];
            u->file_paths[j - 1] = tp;
            if (u->given_idx) {
                size_t gi = u->given_idx[j];
                u->given_idx[j] = u->given_idx[j - 1];
                u->given_idx[j - 1] = gi;
            }
        }
}

static pa_status scan_dir(pa_unit *u, pa_error *err)
{
    DIR *d = open_unit_dir(u, err);
    if (!d)
        return err->status;
    pa_status st = PA_OK;
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0 || strcmp(n, ".provenance") == 0)
            continue;
        /* a GGUF file is a model unit of its own, not a file of the directory's unit */
        if (has_suffix(n, ".gguf"))
            continue;
        char *p = join(u->path, n);
        if (!p) {
            st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", u->path);
            break;
        }
        /* Symlinks are followed (Hugging Face caches are symlink farms into blobs/), within the
         * confinement: one that leads out of it fails the unit, never read. A dangling one is
         * skipped; a weights, config, index or tokenizer name that is not a regular file fails
         * the unit, any other such entry (subdirectories, sockets) is skipped. */
        int pfd = resolve(u, p, false);
        struct stat sb;
        bool have = pfd >= 0 && fstat(pfd, &sb) == 0;
        if (pfd >= 0)
            close(pfd);
        if (pfd == -EXDEV || pfd == -PRIVATE_ERRNO) {
            st = resolve_error(u, p, -pfd, err);
            free(p);
            break;
        }
        if (have && !S_ISREG(sb.st_mode) && !S_ISDIR(sb.st_mode) && is_significant(n)) {
            st = pa_error_set(err, PA_E_FORMAT, "%s: not a regular file", p);
            free(p);
            break;
        }
        if (!have || !S_ISREG(sb.st_mode)) {
            free(p);
            continue;
        }
        if (u->n_files >= PA_UNIT_MAX_FILES) {
            free(p);
            st = pa_error_set(err, PA_E_LIMIT, "%s: more than %u files in one model directory",
                              u->path, PA_UNIT_MAX_FILES);
            break;
        }
        if (u->n_files == cap) {
            cap = cap ? cap * 2 : 16;
            pa_file_fp *f = realloc(u->files, cap * sizeof *f);
            char **fp = f ? realloc(u->file_paths, cap * sizeof *fp) : NULL;
            if (f)
                u->files = f;
            if (!f || !fp) {
                free(p);
                st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", u->path);
                break;
            }
            u->file_paths = fp;
        }
        pa_file_fp *f = &u->files[u->n_files];
        memset(f, 0, sizeof *f);
        f->name = strdup(n);
        if (!f->name) {
            free(p);
            st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", u->path);
            break;
        }
        f->size = (uint64_t)sb.st_size;
        f->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
        u->file_paths[u->n_files++] = p;
    }
    closedir(d);
    if (st)
        return st;
    sort_files(u);
    return PA_OK;
}

static const pa_file_fp *find_file(const pa_unit *u, const char *name, size_t *idx)
{
    for (size_t i = 0; i < u->n_files; i++)
        if (strcmp(u->files[i].name, name) == 0) {
            if (idx)
                *idx = i;
            return &u->files[i];
        }
    return NULL;
}

static pa_status set_path(pa_unit *u, const char *name, char **slot, pa_error *err)
{
    size_t i;
    if (!find_file(u, name, &i))
        return PA_OK;
    *slot = strdup(u->file_paths[i]);
    return *slot ? PA_OK : pa_error_set(err, PA_E_NOMEM, "%s: out of memory", u->path);
}

static pa_status parse_shard(pa_unit *u, pa_shard *s, bool indexed, uint64_t *bytes_seen,
                             pa_error *err)
{
    int eno;
    pa_error sub = {0};
    int fd = open_file(u, s->path, &eno, &sub);
    if (fd < 0) {
        if (eno == ENOENT && indexed)
            return pa_error_set(err, PA_E_INCOMPLETE, "%s: shard %s listed in the index is missing",
                                u->path, s->name);
        return pa_error_set(err, sub.status, "%s", sub.msg);
    }
    struct stat sb;
    if (fstat(fd, &sb) == 0)
        s->size = (uint64_t)sb.st_size;
    *bytes_seen += s->size;
    /* the format from the bytes: a torch.save zip, a pickle (refused), else safetensors */
    uint8_t magic[16];
    ssize_t got = pread(fd, magic, sizeof magic, 0);
    const char *why = got > 0 && !pa_st_sniff(magic, (size_t)got)
                          ? pa_torch_legacy(magic, (size_t)got)
                          : NULL;
    pa_status st;
    if (got >= 4 && memcmp(magic, "PK\x03\x04", 4) == 0) {
        s->torch = true;
        st = pa_torch_read(fd, s->path, &s->hdr, err);
    } else if (why) {
        st = pa_error_set(err, PA_E_UNSUPPORTED, "%s: %s", s->path, why);
    } else {
        st = pa_st_read(fd, s->path, &s->hdr, err);
    }
    close(fd);
    return st;
}

/* Sets up the unit's confinement from opt (none when opt or its root is NULL). */
static pa_status confine(pa_unit *u, const pa_fp_options *opt, const char *path, pa_error *err)
{
    if (!opt || !opt->confine_root)
        return PA_OK;
    const char *root = opt->confine_root;
    size_t rl = strlen(root);
    while (rl > 0 && root[rl - 1] == '/')
        rl--;
    u->root_path = strndup(root, rl);
    if (!u->root_path)
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", path);
    u->root_fd = open(rl ? u->root_path : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (u->root_fd < 0)
        return pa_error_set(err, PA_E_IO, "%s: cannot open: %s", root, strerror(errno));
    if (opt->confine_private && opt->confine_private[0]) {
        size_t n = rl + strlen(opt->confine_private) + 2;
        u->private_path = malloc(n);
        if (!u->private_path)
            return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", path);
        snprintf(u->private_path, n, "%s/%s", u->root_path, opt->confine_private);
    }
    return PA_OK;
}

static void unit_init(pa_unit *u)
{
    memset(u, 0, sizeof *u);
    u->root_fd = -1;
}

static pa_status set_unit_path(pa_unit *u, const char *path, pa_error *err)
{
    u->path = strdup(path);
    if (!u->path)
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", path);
    size_t plen = strlen(u->path);
    while (plen > 1 && u->path[plen - 1] == '/')
        u->path[--plen] = '\0';
    return PA_OK;
}

/* The files a variant's weights are read with: its directory's config and tokenizer. */
static const char *const variant_siblings[] = {"config.json", "tokenizer.json",
                                               "tokenizer_config.json", "tokenizer.model"};
#define N_VARIANT_SIBLINGS (sizeof variant_siblings / sizeof *variant_siblings)

/* A single-file variant (model.fp16.safetensors) is a model of its own, read like transformers
 * reads it: with the config and tokenizer of its directory, which become files of the unit (in
 * its digest) when they are regular files. */
static pa_status add_variant_siblings(pa_unit *u, const char *base, pa_error *err)
{
    const char *v;
    if (pa_weights_name(base, &v, NULL) != PA_WN_SINGLE || !v || base == u->path)
        return PA_OK;
    char *dir = strndup(u->path, (size_t)(base - 1 - u->path));
    pa_file_fp *f = realloc(u->files, (1 + N_VARIANT_SIBLINGS) * sizeof *f);
    if (f)
        u->files = f;
    char **fp = f ? realloc(u->file_paths, (1 + N_VARIANT_SIBLINGS) * sizeof *fp) : NULL;
    if (fp)
        u->file_paths = fp;
    if (!dir || !f || !fp) {
        free(dir);
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", u->path);
    }
    pa_status st = PA_OK;
    for (size_t i = 0; i < N_VARIANT_SIBLINGS && !st; i++) {
        char *p = join(*dir ? dir : "", variant_siblings[i]);
        if (!p) {
            st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", u->path);
            break;
        }
        int pfd = resolve(u, p, false);
        struct stat sb;
        bool reg = pfd >= 0 && fstat(pfd, &sb) == 0 && S_ISREG(sb.st_mode);
        if (pfd >= 0)
            close(pfd);
        if (!reg) {
            free(p);
            continue;
        }
        pa_file_fp *x = &u->files[u->n_files];
        memset(x, 0, sizeof *x);
        x->name = strdup(variant_siblings[i]);
        if (!x->name) {
            free(p);
            st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", u->path);
            break;
        }
        x->size = (uint64_t)sb.st_size;
        x->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
        u->file_paths[u->n_files++] = p;
    }
    free(dir);
    if (!st)
        sort_files(u);
    return st;
}

/* Which files make up the unit at path, as opt's confinement allows: a directory's regular files
 * (scan_dir) or the one file. Fills is_dir, files and file_paths; the caller frees u on error. */
static pa_status discover(pa_unit *u, const char *path, const pa_fp_options *opt, pa_error *err)
{
    unit_init(u);
    pa_status st = confine(u, opt, path, err);
    if (!st)
        st = set_unit_path(u, path, err);
    if (st)
        return st;
    struct stat sb;
    int pfd = resolve(u, u->path, true);
    if (pfd < 0 || fstat(pfd, &sb) != 0) {
        if (pfd < 0)
            return resolve_error(u, u->path, -pfd, err);
        st = pa_error_set(err, PA_E_IO, "%s: %s", path, strerror(errno));
        close(pfd);
        return st;
    }
    close(pfd);
    if (S_ISREG(sb.st_mode)) {
        /* A single weights file is a unit of its own. */
        u->is_dir = false;
        const char *base = strrchr(u->path, '/');
        base = base ? base + 1 : u->path;
        u->files = calloc(1, sizeof *u->files);
        u->file_paths = calloc(1, sizeof *u->file_paths);
        if (!u->files || !u->file_paths)
            return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", path);
        u->n_files = 1;
        u->files[0].name = strdup(base);
        u->file_paths[0] = strdup(u->path);
        if (!u->files[0].name || !u->file_paths[0])
            return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", path);
        u->files[0].size = (uint64_t)sb.st_size;
        u->files[0].mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
        return add_variant_siblings(u, base, err);
    }
    if (!S_ISDIR(sb.st_mode))
        return pa_error_set(err, PA_E_FORMAT, "%s: neither a model directory nor a weights file",
                            path);
    u->is_dir = true;
    return scan_dir(u, err);
}

static pa_status load_single(pa_unit *u, pa_error *err)
{
    /* the format comes from the bytes, never from the name */
    pa_status st = PA_OK;
    uint8_t magic[8] = {0};
    int fd = pa_unit_open_file(u, u->path, err);
    if (fd < 0) {
        st = err->status;
    } else {
        ssize_t got = pread(fd, magic, sizeof magic, 0);
        if (got >= 4 && pa_gguf_sniff(magic, (size_t)got)) {
            u->is_gguf = true;
            st = pa_gguf_read(fd, u->path, &u->gguf, err);
            if (st)
                u->is_gguf = false; /* nothing to free */
        }
        close(fd);
    }
    uint64_t seen = 0;
    /* the weights file is the unit's own path; a variant's config and tokenizer come with it */
    size_t w = 0;
    for (size_t i = 0; i < u->n_files; i++)
        if (strcmp(u->file_paths[i], u->path) == 0)
            w = i;
    if (!st && !u->is_gguf) {
        st = add_shard(u, u->files[w].name, err);
        if (!st)
            st = parse_shard(u, &u->shards[0], false, &seen, err);
    }
    for (size_t i = 0; i < u->n_files && !st && u->n_files > 1 && !u->is_gguf; i++) {
        char **slot = strcmp(u->files[i].name, "config.json") == 0            ? &u->config_path
                      : strcmp(u->files[i].name, "tokenizer.json") == 0       ? &u->tok_path
                      : strcmp(u->files[i].name, "tokenizer_config.json") == 0 ? &u->tokcfg_path
                      : strcmp(u->files[i].name, "tokenizer.model") == 0      ? &u->spm_path
                                                                              : NULL;
        if (i != w && slot && !*slot && !(*slot = strdup(u->file_paths[i])))
            st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", u->path);
    }
    return st;
}

/* Parses what the unit's files say: a single file's format (from its bytes) and header, a
 * directory's config, tokenizer and index names and every shard's header. */
static pa_status load(pa_unit *u, pa_error *err)
{
    if (!u->is_dir)
        return load_single(u, err);
    pa_status st = set_path(u, "config.json", &u->config_path, err);
    if (!st)
        st = set_path(u, "tokenizer.json", &u->tok_path, err);
    if (!st)
        st = set_path(u, "tokenizer_config.json", &u->tokcfg_path, err);
    if (!st)
        st = set_path(u, "tokenizer.model", &u->spm_path, err);
    if (st)
        return st;
    /* The weights transformers loads (pa_weights_choose): model.safetensors before its index
     * (a stale one), safetensors before pytorch_model.bin, no variant before variants. The other
     * files stay in the unit's digest. */
    const char **names = malloc((u->n_files ? u->n_files : 1) * sizeof *names);
    if (!names)
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", u->path);
    for (size_t i = 0; i < u->n_files; i++)
        names[i] = u->files[i].name;
    pa_weights_choice c;
    pa_weights_choose(names, u->n_files, &c);
    /* A PEFT adapter (adapter_config.json): its adapter_model.safetensors, else .bin. */
    if (!st)
        st = set_path(u, "adapter_config.json", &u->adapter_path, err);
    if (!st && u->adapter_path && (find_file(u, "adapter_model.safetensors", NULL) ||
                                   find_file(u, "adapter_model.bin", NULL))) {
        c.kind = PA_WK_SINGLE;
        c.name = find_file(u, "adapter_model.safetensors", NULL) ? "adapter_model.safetensors"
                                                                : "adapter_model.bin";
    }
    bool indexed = c.kind == PA_WK_INDEX;
    uint64_t total_size = 0;
    if (indexed) {
        st = set_path(u, c.name, &u->index_path, err);
        if (!st)
            st = read_index(u, &total_size, err);
    } else if (c.kind == PA_WK_SINGLE) {
        st = add_shard(u, c.name, err);
        /* safetensors files without a transformers name are read with it, as they always were */
        for (size_t i = 0; i < u->n_files && !st && has_suffix(c.name, ".safetensors"); i++)
            if (has_suffix(names[i], ".safetensors") && strcmp(names[i], c.name) != 0 &&
                pa_weights_name(names[i], NULL, NULL) == PA_WN_OTHER)
                st = add_shard(u, names[i], err);
        /* shards are sorted by name */
        for (size_t i = 1; i < u->n_shards; i++)
            for (size_t j = i; j > 0 && strcmp(u->shards[j - 1].name, u->shards[j].name) > 0; j--) {
                pa_shard t = u->shards[j];
                u->shards[j] = u->shards[j - 1];
                u->shards[j - 1] = t;
            }
    } else {
        for (size_t i = 0; i < u->n_files && !st; i++)
            if (c.kind == PA_WK_ALL_ST ? has_suffix(names[i], ".safetensors")
                                       : c.kind == PA_WK_ALL_BIN && pa_unit_weights_name(names[i]))
                st = add_shard(u, names[i], err);
    }
    free(names);
    uint64_t seen = 0;
    for (size_t i = 0; i < u->n_shards && !st; i++) {
        pa_error sub = {0};
        st = parse_shard(u, &u->shards[i], indexed, &seen, &sub);
        if (st == PA_E_FORMAT && indexed) {
            /* A shard still being copied is short: its header or data runs past the end of the
             * file. With the index's total_size we know: the shards together must hold at least
             * that many bytes. Without it, the parser's reason tells. */
            const char *m = sub.msg;
            uint64_t have = 0; /* data bytes present: file size past each shard's header */
            for (size_t k = 0; k < u->n_shards; k++) {
                uint8_t pre[8];
                pa_error ignored = {0};
                int sfd = pa_unit_open_file(u, u->shards[k].path, &ignored);
                struct stat ss;
                if (sfd < 0)
                    continue;
                if (fstat(sfd, &ss) != 0 || pa_pread_exact(sfd, pre, 8, 0) != 0) {
                    /* nothing present */
                } else if (memcmp(pre, "PK\x03\x04", 4) == 0) {
                    have += (uint64_t)ss.st_size; /* a torch zip: members and directory */
                } else {
                    uint64_t hl = 0;
                    for (int b = 7; b >= 0; b--)
                        hl = hl << 8 | pre[b];
                    if (hl < (uint64_t)ss.st_size - 8)
                        have += (uint64_t)ss.st_size - 8 - hl;
                }
                close(sfd);
            }
            bool short_file =
                total_size ? have < total_size
                           : (strstr(m, "end of file") || strstr(m, "past the data") ||
                              strstr(m, "shorter than") || strstr(m, "truncated archive"));
            if (short_file)
                st = pa_error_set(err, PA_E_INCOMPLETE, "%s: shard %s is short (%s)", u->path,
                                  u->shards[i].name, m);
            else
                pa_error_set(err, st, "%s", m);
        } else if (st) {
            pa_error_set(err, st, "%s", sub.msg);
        }
    }
    return st;
}

pa_status pa_unit_open(const char *path, const pa_fp_options *opt, pa_unit *u, pa_error *err)
{
    pa_status st = discover(u, path, opt, err);
    if (!st)
        st = load(u, err);
    if (st)
        pa_unit_free(u);
    return st;
}

pa_status pa_unit_open_given(const char *path, const pa_unit_files *given, pa_unit *u,
                             pa_error *err)
{
    unit_init(u);
    u->given = given;
    pa_status st = set_unit_path(u, path, err);
    size_t n = given->n;
    /* a single file, or a variant with its directory's config and tokenizer */
    if (!st && (given->is_dir ? n > PA_UNIT_MAX_FILES : n < 1 || n > 1 + N_VARIANT_SIBLINGS))
        st = pa_error_set(err, n > PA_UNIT_MAX_FILES ? PA_E_LIMIT : PA_E_ARG,
                          "%s: %zu files given", path, n);
    if (!st) {
        u->is_dir = given->is_dir;
        u->files = calloc(n ? n : 1, sizeof *u->files);
        u->file_paths = calloc(n ? n : 1, sizeof *u->file_paths);
        u->given_idx = calloc(n ? n : 1, sizeof *u->given_idx);
        if (!u->files || !u->file_paths || !u->given_idx)
            st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", path);
    }
    for (size_t i = 0; i < n && !st; i++) {
        const pa_unit_file *g = &given->files[i];
        if (u->is_dir && !safe_name(g->name)) {
            st = pa_error_set(err, PA_E_ARG, "%s: bad file name given", path);
            break;
        }
        const char *base = strrchr(u->path, '/');
        base = base ? base + 1 : u->path;
        bool own = !u->is_dir && strcmp(g->name, base) == 0;
        bool sibling = false;
        for (size_t k = 0; k < N_VARIANT_SIBLINGS && !u->is_dir && !own; k++)
            sibling = sibling || strcmp(g->name, variant_siblings[k]) == 0;
        if (!u->is_dir && !own && (!sibling || n == 1 || base == u->path)) {
            st = pa_error_set(err, PA_E_ARG, "%s: bad file name given", path);
            break;
        }
        u->files[i].name = strdup(g->name);
        if (u->is_dir || own) {
            u->file_paths[i] = u->is_dir ? join(u->path, g->name) : strdup(u->path);
        } else {
            char *dir = strndup(u->path, (size_t)(base - 1 - u->path));
            u->file_paths[i] = dir ? join(dir, g->name) : NULL;
            free(dir);
        }
        u->n_files = i + 1;
        if (!u->files[i].name || !u->file_paths[i])
            st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", path);
        u->files[i].size = g->size;
        u->files[i].mtime_ns = g->mtime_ns;
        u->given_idx[i] = i;
    }
    if (!st) {
        sort_files(u);
        st = load(u, err);
    }
    if (st)
        pa_unit_free(u);
    return st;
}

pa_status pa_unit_files_open(const char *path, const pa_fp_options *opt, pa_unit_files *out,
                             pa_error *err)
{
    memset(out, 0, sizeof *out);
    pa_unit u;
    pa_status st = discover(&u, path, opt, err);
    if (!st) {
        out->is_dir = u.is_dir;
        out->files = calloc(u.n_files ? u.n_files : 1, sizeof *out->files);
        if (!out->files)
            st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", path);
    }
    for (size_t i = 0; !st && i < u.n_files; i++) {
        pa_unit_file *f = &out->files[i];
        f->fd = -1;
        out->n = i + 1;
        f->name = strdup(u.files[i].name);
        f->size = u.files[i].size;
        f->mtime_ns = u.files[i].mtime_ns;
        if (!f->name) {
            st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", path);
            break;
        }
        int eno;
        f->fd = open_file(&u, u.file_paths[i], &eno, err);
        struct stat sb;
        if (f->fd < 0) {
            st = err->status;
        } else if (fstat(f->fd, &sb) != 0) {
            st = pa_error_set(err, PA_E_IO, "%s: %s", u.file_paths[i], strerror(errno));
        } else {
            f->ctime_ns = (int64_t)sb.st_ctim.tv_sec * 1000000000LL + sb.st_ctim.tv_nsec;
            f->ino = (uint64_t)sb.st_ino;
        }
    }
    pa_unit_free(&u);
    if (st)
        pa_unit_files_close(out);
    return st;
}

void pa_unit_files_close(pa_unit_files *files)
{
    for (size_t i = 0; i < files->n; i++) {
        free(files->files[i].name);
        if (files->files[i].fd >= 0)
            close(files->files[i].fd);
    }
    free(files->files);
    memset(files, 0, sizeof *files);
}
