/* Discovery of a model unit: the files of a Hugging Face directory and the headers of its shards. */
#include "model.h"
#include "jsonutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
    memset(u, 0, sizeof *u);
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
    pa_status st = pa_read_file(u->index_path, PA_JSON_MAX_FILE, &text, &len, err);
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

static pa_status scan_dir(pa_unit *u, pa_error *err)
{
    DIR *d = opendir(u->path);
    if (!d)
        return pa_error_set(err, PA_E_IO, "%s: cannot open directory: %s", u->path, strerror(errno));
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
        struct stat sb;
        /* stat follows symlinks: Hugging Face caches are symlink farms into blobs/. */
        if (stat(p, &sb) != 0 || !S_ISREG(sb.st_mode)) {
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
    /* Sort files by name (paths in step). */
    for (size_t i = 1; i < u->n_files; i++)
        for (size_t j = i; j > 0 && strcmp(u->files[j - 1].name, u->files[j].name) > 0; j--) {
            pa_file_fp t = u->files[j];
            u->files[j] = u->files[j - 1];
            u->files[j - 1] = t;
            char *tp = u->file_paths[j];
            u->file_paths[j] = u->file_paths[j - 1];
            u->file_paths[j - 1] = tp;
        }
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
    int fd = open(s->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT && indexed)
            return pa_error_set(err, PA_E_INCOMPLETE, "%s: shard %s listed in the index is missing",
                                u->path, s->name);
        return pa_error_set(err, PA_E_IO, "%s: cannot open: %s", s->path, strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) == 0)
        s->size = (uint64_t)sb.st_size;
    *bytes_seen += s->size;
    pa_status st = pa_st_read(fd, s->path, &s->hdr, err);
    close(fd);
    return st;
}

pa_status pa_unit_open(const char *path, pa_unit *u, pa_error *err)
{
    memset(u, 0, sizeof *u);
    struct stat sb;
    if (stat(path, &sb) != 0)
        return pa_error_set(err, PA_E_IO, "%s: %s", path, strerror(errno));
    u->path = strdup(path);
    if (!u->path)
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", path);
    size_t plen = strlen(u->path);
    while (plen > 1 && u->path[plen - 1] == '/')
        u->path[--plen] = '\0';
    pa_status st = PA_OK;
    if (S_ISREG(sb.st_mode)) {
        /* A single weights file is a unit of its own. */
        u->is_dir = false;
        const char *base = strrchr(u->path, '/');
        base = base ? base + 1 : u->path;
        u->files = calloc(1, sizeof *u->files);
        u->file_paths = calloc(1, sizeof *u->file_paths);
        if (!u->files || !u->file_paths || !(u->files[0].name = strdup(base)) ||
            !(u->file_paths[0] = strdup(u->path))) {
            if (u->files && u->files[0].name)
                u->n_files = 1;
            pa_unit_free(u);
            return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", path);
        }
        u->n_files = 1;
        u->files[0].size = (uint64_t)sb.st_size;
        u->files[0].mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
        /* the format comes from the bytes, never from the name */
        uint8_t magic[8] = {0};
        int fd = open(u->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            st = pa_error_set(err, PA_E_IO, "%s: cannot open: %s", u->path, strerror(errno));
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
        if (!st && !u->is_gguf) {
            st = add_shard(u, base, err);
            if (!st)
                st = parse_shard(u, &u->shards[0], false, &seen, err);
        }
        if (st)
            pa_unit_free(u);
        return st;
    }
    if (!S_ISDIR(sb.st_mode)) {
        pa_unit_free(u);
        return pa_error_set(err, PA_E_FORMAT, "%s: neither a model directory nor a weights file",
                            path);
    }
    u->is_dir = true;
    st = scan_dir(u, err);
    if (!st)
        st = set_path(u, "config.json", &u->config_path, err);
    if (!st)
        st = set_path(u, "tokenizer.json", &u->tok_path, err);
    if (!st)
        st = set_path(u, "tokenizer_config.json", &u->tokcfg_path, err);
    if (!st)
        st = set_path(u, "model.safetensors.index.json", &u->index_path, err);
    if (st) {
        pa_unit_free(u);
        return st;
    }
    bool indexed = u->index_path != NULL;
    uint64_t total_size = 0;
    if (indexed) {
        st = read_index(u, &total_size, err);
    } else {
        for (size_t i = 0; i < u->n_files && !st; i++)
            if (has_suffix(u->files[i].name, ".safetensors"))
                st = add_shard(u, u->files[i].name, err);
    }
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
                int sfd = open(u->shards[k].path, O_RDONLY | O_CLOEXEC);
                struct stat ss;
                if (sfd < 0)
                    continue;
                if (fstat(sfd, &ss) == 0 && pa_pread_exact(sfd, pre, 8, 0) == 0) {
                    uint64_t hl = 0;
                    for (int b = 7; b >= 0; b--)
                        hl = hl << 8 | pre[b];
                    if (hl < (uint64_t)ss.st_size - 8)
                        have += (uint64_t)ss.st_size - 8 - hl;
                }
                close(sfd);
            }
            bool short_file = total_size ? have < total_size
                                         : (strstr(m, "end of file") || strstr(m, "past the data") ||
                                            strstr(m, "shorter than"));
            if (short_file)
                st = pa_error_set(err, PA_E_INCOMPLETE, "%s: shard %s is short (%s)", u->path,
                                  u->shards[i].name, m);
            else
                pa_error_set(err, st, "%s", m);
        } else if (st) {
            pa_error_set(err, st, "%s", sub.msg);
        }
    }
    if (st) {
        pa_unit_free(u);
        return st;
    }
    return PA_OK;
}
